"""The Windows collectors' pure functions on recorded registry and CIM data (agent/tests/recorded/windows/): what
the winreg readers return on a Windows 11 laptop, as plain data."""

from __future__ import annotations

import json
from pathlib import Path

from rmm_agent.collectors import windows

RECORDED = Path(__file__).parent / "recorded" / "windows"


def recorded(name: str):
    return json.loads((RECORDED / name).read_text())


def uninstall_entries() -> list[dict]:
    return [entry for view in recorded("uninstall.json").values() for entry in view]


def registry_values() -> dict[str, list[dict]]:
    """As the reader returns them: REG_BINARY data is bytes (recorded as hex)."""
    keys = recorded("registry-values.json")
    for values in keys.values():
        for value in values:
            if value["type"] == 3:
                value["data"] = bytes.fromhex(value["data"])
    return keys


def test_software_skips_system_components_and_entries_without_a_name_and_reports_each_once():
    software = windows.software_from_uninstall(uninstall_entries())
    names = [item["name"] for item in software]

    assert len(software) == 8
    assert "Microsoft Visual C++ 2022 X64 Minimum Runtime - 14.40.33810" not in names  # SystemComponent = 1
    assert "Adobe Acrobat Reader - English" in names  # SystemComponent = 0 is shown
    assert names.count("Microsoft Edge") == 1  # in the 64- and the 32-bit view
    assert "" not in names


def test_a_known_entry_has_its_fields_and_a_converted_install_date():
    software = {item["name"]: item for item in windows.software_from_uninstall(uninstall_entries())}

    assert software["Git"] == {
        "name": "Git",
        "version": "2.45.2",
        "publisher": "The Git Development Community",
        "installDate": "2024-07-03",
        "installLocation": "C:\\Program Files\\Git\\",
    }
    assert software["Mozilla Firefox (x64 en-US)"]["installDate"] == ""  # none recorded
    assert software["Legacy Tool"]["installDate"] == ""  # 20241341 is no date
    assert software["Zoom Workplace"]["installDate"] == "2024-06-20"
    assert software["Adobe Acrobat Reader - English"]["installLocation"] == (
        "C:\\Program Files (x86)\\Adobe\\Acrobat Reader DC\\"
    )  # the quotes some installers write are not part of the path


def test_install_dates():
    assert windows.install_date("20240229") == "2024-02-29"
    assert windows.install_date("20230229") == ""
    assert windows.install_date(20240612) == "2024-06-12"
    assert windows.install_date("12/06/2024") == ""
    assert windows.install_date(None) == ""


def test_os_version_says_windows_11_for_a_build_from_22000_on():
    values = recorded("currentversion.json")
    assert windows.os_version_build_from(values) == ("Windows 11 Pro 23H2", "22631.3880")
    windows_10 = {**values, "CurrentBuildNumber": "19045", "CurrentBuild": "19045", "DisplayVersion": "22H2"}
    assert windows.os_version_build_from(windows_10) == ("Windows 10 Pro 22H2", "19045.3880")


def test_hardware_identity_from_the_bios_key_and_the_cim_query():
    cim = (RECORDED / "cim-bios-video.json").read_text()
    assert windows.identity_from(recorded("bios.json"), cim) == {
        "manufacturer": "LENOVO",
        "model": "21F6003NUS",
        "biosVersion": "N3XET58W (1.33 )",
        "serialNumber": "PF4ABCDE",
        "gpuModel": "Intel(R) Iris(R) Xe Graphics",  # the remote display adapter is no GPU
    }
    without_powershell = windows.identity_from(recorded("bios.json"), None)
    assert without_powershell["serialNumber"] == "" and without_powershell["manufacturer"] == "LENOVO"
    one_controller = windows.identity_from({}, '{"SerialNumber":"X1","VideoControllers":"NVIDIA RTX A2000"}')
    assert one_controller["gpuModel"] == "NVIDIA RTX A2000"  # ConvertTo-Json unwraps a one-item array


def test_registry_entries_of_chosen_values_case_insensitively():
    keys = registry_values()
    path = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU"
    entries = windows.registry_entries(
        path, keys[path], ["noautoupdate", "AUOptions", "Absent"], "2026-12-06T21:00:00Z"
    )

    assert entries == [
        {
            "registryPath": path,
            "valueName": "NoAutoUpdate",
            "valueData": 0,
            "valueType": "REG_DWORD",
            "collectedAt": "2026-12-06T21:00:00Z",
        },
        {
            "registryPath": path,
            "valueName": "AUOptions",
            "valueData": 4,
            "valueType": "REG_DWORD",
            "collectedAt": "2026-12-06T21:00:00Z",
        },
    ]


def test_registry_entries_of_every_value_convert_multi_strings_and_binary():
    keys = registry_values()
    path = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa"
    entries = {entry["valueName"]: entry for entry in windows.registry_entries(path, keys[path], [], "now")}

    assert len(entries) == 8
    assert entries["Security Packages"]["valueData"] == "kerberos\nmsv1_0\nschannel\nwdigest\ntspkg\npku2u"
    assert entries["Security Packages"]["valueType"] == "REG_MULTI_SZ"
    assert entries["Bounds"]["valueData"] == "0030000000200000"
    assert entries["Bounds"]["valueType"] == "REG_BINARY"
    assert entries[""]["valueData"] == ""  # the key's empty default value
    assert entries["MachineIdentifier"]["valueType"] == "REG_QWORD"


def test_registry_paths_name_their_hive():
    assert windows.split_registry_path("HKLM\\SOFTWARE\\X\\") == ("HKEY_LOCAL_MACHINE", "SOFTWARE\\X")
    assert windows.split_registry_path("HKEY_CURRENT_USER\\Console") == ("HKEY_CURRENT_USER", "Console")
    try:
        windows.split_registry_path("HKXX\\Software")
    except ValueError as exc:
        assert "HKXX" in str(exc)
    else:
        raise AssertionError("an unknown hive was accepted")


def test_windows_filters_and_volume():
    class Partition:
        def __init__(self, fstype: str) -> None:
            self.fstype = fstype

    assert windows.keep_partition(Partition("NTFS"))
    assert not windows.keep_partition(Partition(""))  # an empty CD drive
