"""The macOS collectors' parsers on recorded outputs of sw_vers, ioreg and system_profiler
(agent/tests/recorded/macos/, in the tools' documented formats)."""

from __future__ import annotations

from pathlib import Path

from rmm_agent.collectors import macos

RECORDED = Path(__file__).parent / "recorded" / "macos"


def test_sw_vers_gives_version_and_build():
    assert macos.parse_sw_vers((RECORDED / "sw_vers.txt").read_text()) == ("macOS 14.5", "23F79")
    assert macos.parse_sw_vers("") == ("", "")


def test_ioreg_gives_serial_model_and_manufacturer():
    assert macos.parse_ioreg_platform((RECORDED / "ioreg-platform.txt").read_text()) == {
        "serialNumber": "C02XL0GJGH5",
        "model": "MacBookPro18,1",
        "manufacturer": "Apple Inc.",
    }


def test_applications_skip_nameless_ones_and_convert_dates():
    software = macos.parse_applications((RECORDED / "system_profiler-applications.json").read_text())
    by_name = {item["name"]: item for item in software}

    assert len(software) == 5
    assert "" not in by_name
    assert by_name["Google Chrome"] == {
        "name": "Google Chrome",
        "version": "126.0.6478.127",
        "publisher": "Google LLC",
        "installDate": "2024-06-19",
        "installLocation": "/Applications/Google Chrome.app",
    }
    assert by_name["Safari"]["publisher"] == "Apple Inc."
    assert by_name["Xcode"]["publisher"] == ""  # the App Store's signature hides the developer
    assert by_name["HomebrewTool"]["version"] == "" and by_name["HomebrewTool"]["publisher"] == ""
    assert by_name["Firefox"]["installDate"] == ""  # not a date: none rather than a refused upload
    assert by_name["Firefox"]["publisher"] == "Mozilla Corporation"


def test_output_that_is_not_json_gives_no_software():
    assert macos.parse_applications("system_profiler: error") == []


def test_system_sub_volumes_are_left_out():
    class Partition:
        def __init__(self, mountpoint: str) -> None:
            self.mountpoint = mountpoint

    kept = [
        mount
        for mount in ("/", "/System/Volumes/Data", "/System/Volumes/VM", "/System/Volumes/Preboot", "/Volumes/USB")
        if macos.keep_partition(Partition(mount))
    ]
    assert kept == ["/", "/System/Volumes/Data", "/Volumes/USB"]
