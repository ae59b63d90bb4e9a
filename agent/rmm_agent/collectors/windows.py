"""What Windows gives that psutil does not, from the registry (winreg, read by thin readers that return plain data)
and, for what the registry does not hold (the serial number, the GPU), one PowerShell CIM query. The logic is in
pure functions of that data, tested on recorded data (agent/tests/recorded/windows/).

winreg exists only on Windows: it is imported inside the readers, which run only there."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from rmm_agent.collectors.common import cut, outbound_interface, run_command, utc_now

if TYPE_CHECKING:
    from rmm_agent.config import LocalConfig

log = logging.getLogger(__name__)

OS_TYPE = "windows"

UNINSTALL = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
CURRENT_VERSION = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
BIOS = r"HARDWARE\DESCRIPTION\System\BIOS"
CPU = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
# Where Windows (servicing, Windows Update, file renames at boot) records that a reboot is due.
REBOOT_KEYS = (
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
)
SESSION_MANAGER = r"SYSTEM\CurrentControlSet\Control\Session Manager"
CIM_QUERY = (
    "$b = Get-CimInstance Win32_BIOS; $v = Get-CimInstance Win32_VideoController; "
    "[pscustomobject]@{SerialNumber = $b.SerialNumber; VideoControllers = @($v | ForEach-Object { $_.Name })} "
    "| ConvertTo-Json -Compress"
)

# winreg's value types by number (winreg.REG_*), as the registry-state inventory names them.
VALUE_TYPES = {
    0: "REG_NONE",
    1: "REG_SZ",
    2: "REG_EXPAND_SZ",
    3: "REG_BINARY",
    4: "REG_DWORD",
    5: "REG_DWORD_BIG_ENDIAN",
    6: "REG_LINK",
    7: "REG_MULTI_SZ",
    8: "REG_RESOURCE_LIST",
    11: "REG_QWORD",
}
HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKEY_LOCAL_MACHINE": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKEY_CURRENT_USER": "HKEY_CURRENT_USER",
    "HKU": "HKEY_USERS",
    "HKEY_USERS": "HKEY_USERS",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKEY_CLASSES_ROOT": "HKEY_CLASSES_ROOT",
}


# ---- pure functions ---------------------------------------------------------------------------------------------


def install_date(value: object) -> str:
    """The registry's InstallDate (YYYYMMDD by convention, YYYY-MM-DD from some installers) as YYYY-MM-DD; "" when
    it is not a real date (the server would refuse the whole upload for one bad date)."""
    text = str(value or "").strip()
    try:
        if len(text) == 8 and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    return ""


def software_from_uninstall(entries: list[dict[str, Any]]) -> list[dict]:
    """The software inventory from the Uninstall keys' subkeys (each a dict of value name → data): entries without
    a DisplayName, and system components (SystemComponent = 1, hidden by Programs and Features too) are skipped; an
    entry seen in two views (64- and 32-bit, machine and user) is reported once."""
    software = []
    seen = set()
    for entry in entries:
        name = str(entry.get("DisplayName") or "").strip()
        if not name or entry.get("SystemComponent") in (1, "1"):
            continue
        item = {
            "name": cut(name, 512),
            "version": cut(str(entry.get("DisplayVersion") or "").strip(), 255),
            "publisher": cut(str(entry.get("Publisher") or "").strip(), 512),
            "installDate": install_date(entry.get("InstallDate")),
            "installLocation": cut(str(entry.get("InstallLocation") or "").strip().strip('"')),
        }
        identity = (item["name"], item["version"], item["publisher"])
        if identity not in seen:
            seen.add(identity)
            software.append(item)
    return software


def os_version_build_from(values: dict[str, Any]) -> tuple[str, str]:
    """osVersion "Windows 11 Pro 23H2" and osBuild "22631.3880" from the CurrentVersion key. Windows 11 still
    writes "Windows 10" in ProductName: a build from 22000 on is Windows 11."""
    product = str(values.get("ProductName") or "Windows").strip()
    build = str(values.get("CurrentBuildNumber") or values.get("CurrentBuild") or "").strip()
    if build.isdigit() and int(build) >= 22000 and product.startswith("Windows 10"):
        product = "Windows 11" + product[len("Windows 10") :]
    release = str(values.get("DisplayVersion") or values.get("ReleaseId") or "").strip()
    version = f"{product} {release}".strip()
    ubr = values.get("UBR")
    os_build = f"{build}.{ubr}" if build and isinstance(ubr, int) else build
    return version, os_build


def identity_from(bios: dict[str, Any], cim_json: str | None) -> dict[str, str]:
    """manufacturer, model and biosVersion from the BIOS key; serialNumber and gpuModel from the CIM query's JSON
    (``CIM_QUERY``)."""
    found = {
        "manufacturer": str(bios.get("SystemManufacturer") or "").strip(),
        "model": str(bios.get("SystemProductName") or "").strip(),
        "biosVersion": str(bios.get("BIOSVersion") or "").strip(),
        "serialNumber": "",
        "gpuModel": "",
    }
    if cim_json:
        try:
            cim = json.loads(cim_json)
        except ValueError:
            cim = {}
        if isinstance(cim, dict):
            serial = str(cim.get("SerialNumber") or "").strip()
            found["serialNumber"] = "" if serial.lower() in {"to be filled by o.e.m.", "default string"} else serial
            controllers = cim.get("VideoControllers") or []
            if isinstance(controllers, str):
                controllers = [controllers]
            # The Microsoft Basic Display Adapter is the fallback driver, not a GPU: a real one is preferred.
            named = [str(name) for name in controllers if name]
            real = [name for name in named if "Microsoft Basic" not in name and "Remote Display" not in name]
            found["gpuModel"] = (real or named or [""])[0]
    return found


def registry_value_data(data: object, value_type: int) -> object:
    """A registry value as the registry-state inventory sends it: numbers as numbers, multi-strings one a line,
    binary data as hex."""
    if isinstance(data, bytes):
        return data.hex()
    if isinstance(data, list):
        return cut("\n".join(str(item) for item in data))
    if data is None:
        return ""
    return cut(data) if isinstance(data, str) else data


def split_registry_path(path: str) -> tuple[str, str]:
    """``HKLM\\SOFTWARE\\X`` → ("HKEY_LOCAL_MACHINE", "SOFTWARE\\X"); an unknown hive raises ValueError."""
    hive, _, subkey = path.replace("/", "\\").partition("\\")
    if hive.upper() not in HIVES:
        raise ValueError(f"unknown registry hive in {path!r}")
    return HIVES[hive.upper()], subkey.strip("\\")


def registry_entries(path: str, values: list[dict], wanted: list[str], collected_at: str) -> list[dict]:
    """registry-state entries of one key from its values (each {"name", "data", "type"}): the ``wanted`` value
    names (matched case-insensitively, as the registry does), or every value when ``wanted`` is empty."""
    by_name = {value["name"].lower(): value for value in values}
    chosen = list(values) if not wanted else [by_name[name.lower()] for name in wanted if name.lower() in by_name]
    return [
        {
            "registryPath": cut(path, 1024),
            "valueName": cut(value["name"], 512),
            "valueData": registry_value_data(value["data"], value["type"]),
            "valueType": VALUE_TYPES.get(value["type"], str(value["type"])),
            "collectedAt": collected_at,
        }
        for value in chosen
    ]


# ---- readers (Windows only) -------------------------------------------------------------------------------------

if sys.platform == "win32":
    import winreg

    def _hive(name: str) -> Any:
        return getattr(winreg, name)

    def read_values(hive: str, subkey: str, view: int = 0) -> list[dict]:
        """Every value of a key as {"name", "data", "type"}; [] when the key does not exist."""
        try:
            key = winreg.OpenKey(_hive(hive), subkey, 0, winreg.KEY_READ | view)
        except OSError:
            return []
        values = []
        with key:
            index = 0
            while True:
                try:
                    name, data, value_type = winreg.EnumValue(key, index)
                except OSError:
                    break
                values.append({"name": name, "data": data, "type": value_type})
                index += 1
        return values

    def read_subkeys(hive: str, subkey: str, view: int = 0) -> list[dict[str, Any]]:
        """Each subkey of a key as a dict of value name → data."""
        try:
            key = winreg.OpenKey(_hive(hive), subkey, 0, winreg.KEY_READ | view)
        except OSError:
            return []
        found = []
        with key:
            index = 0
            while True:
                try:
                    child = winreg.EnumKey(key, index)
                except OSError:
                    break
                index += 1
                values = read_values(hive, f"{subkey}\\{child}", view)
                found.append({value["name"]: value["data"] for value in values})
        return found

    def key_exists(hive: str, subkey: str) -> bool:
        try:
            winreg.CloseKey(winreg.OpenKey(_hive(hive), subkey, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY))
        except OSError:
            return False
        return True

    def _as_dict(values: list[dict]) -> dict[str, Any]:
        return {value["name"]: value["data"] for value in values}

    def os_version_build() -> tuple[str, str]:
        return os_version_build_from(_as_dict(read_values("HKEY_LOCAL_MACHINE", CURRENT_VERSION)))

    def cpu_model() -> str:
        return str(_as_dict(read_values("HKEY_LOCAL_MACHINE", CPU)).get("ProcessorNameString") or "").strip()

    def hardware_identity() -> dict[str, str]:
        bios = _as_dict(read_values("HKEY_LOCAL_MACHINE", BIOS))
        cim = run_command(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", CIM_QUERY], timeout=60)
        return identity_from(bios, cim)

    def user_hives() -> list[str]:
        """The SIDs of the users whose hives are loaded (logged on): a service runs as LocalSystem, whose
        HKEY_CURRENT_USER holds none of the per-user installs (VS Code, Zoom, Teams)."""
        try:
            key = winreg.OpenKey(winreg.HKEY_USERS, "", 0, winreg.KEY_READ)
        except OSError:
            return []
        sids = []
        with key:
            index = 0
            while True:
                try:
                    name = winreg.EnumKey(key, index)
                except OSError:
                    break
                index += 1
                if name.startswith("S-1-5-21-") and not name.endswith("_Classes"):
                    sids.append(name)
        return sids

    def software() -> list[dict]:
        entries = read_subkeys("HKEY_LOCAL_MACHINE", UNINSTALL, winreg.KEY_WOW64_64KEY)
        entries += read_subkeys("HKEY_LOCAL_MACHINE", UNINSTALL, winreg.KEY_WOW64_32KEY)
        entries += read_subkeys("HKEY_CURRENT_USER", UNINSTALL)
        for sid in user_hives():
            entries += read_subkeys("HKEY_USERS", f"{sid}\\{UNINSTALL}")
        return software_from_uninstall(entries)

    def pending_reboot() -> bool:
        if any(key_exists("HKEY_LOCAL_MACHINE", key) for key in REBOOT_KEYS):
            return True
        session = _as_dict(read_values("HKEY_LOCAL_MACHINE", SESSION_MANAGER, winreg.KEY_WOW64_64KEY))
        return bool(session.get("PendingFileRenameOperations"))

    def registry_state(config: LocalConfig) -> list[dict]:
        collected_at = utc_now()
        entries: list[dict] = []
        seen: set[tuple[str, str]] = set()
        for configured in config.registry_keys:
            try:
                hive, subkey = split_registry_path(configured.path)
            except ValueError as exc:
                log.warning("registry-state: %s", exc)
                continue
            values = read_values(hive, subkey, winreg.KEY_WOW64_64KEY)
            for entry in registry_entries(configured.path, values, configured.values, collected_at):
                identity = (entry["registryPath"], entry["valueName"])
                if identity not in seen:
                    seen.add(identity)
                    entries.append(entry)
        entries.sort(key=lambda entry: (entry["registryPath"], entry["valueName"]))
        return entries


def disk_total_bytes() -> int | None:
    return None  # the mounted volumes' sum (common.hardware)


def keep_partition(part: Any) -> bool:
    """An empty CD drive has no file system type; its usage cannot be read."""
    return bool(part.fstype)


def system_volume() -> str:
    return os.environ.get("SYSTEMDRIVE", "C:") + "\\"  # Windows' environment ignores case


def primary_interface(addresses: dict[str, list]) -> str | None:
    return outbound_interface(addresses)
