"""What macOS gives that psutil does not, from its documented tools: ``sw_vers`` (version and build), ``sysctl -n
machdep.cpu.brand_string`` (CPU), ``ioreg -rd1 -c IOPlatformExpertDevice`` (serial, model, manufacturer) and
``system_profiler SPApplicationsDataType -json`` (applications). Each parser is a pure function of the tool's
text, tested on recorded outputs (agent/tests/recorded/macos/)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from rmm_agent.collectors.common import cut, outbound_interface, run_command

if TYPE_CHECKING:
    from rmm_agent.config import LocalConfig

log = logging.getLogger(__name__)

OS_TYPE = "macos"


def parse_sw_vers(text: str) -> tuple[str, str]:
    """osVersion "macOS 14.5" (the product's name and version, as Linux's and Windows' read) and osBuild
    "23F79" from ``sw_vers``' "Key:<tabs>value" lines."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    version = " ".join(part for part in (fields.get("ProductName", ""), fields.get("ProductVersion", "")) if part)
    return version, fields.get("BuildVersion", "")


def os_version_build() -> tuple[str, str]:
    return parse_sw_vers(run_command(["/usr/bin/sw_vers"]) or "")


def cpu_model() -> str:
    return (run_command(["/usr/sbin/sysctl", "-n", "machdep.cpu.brand_string"]) or "").strip()


_IOREG_PROPERTY = re.compile(r'^\s*"([^"]+)" = (.*)$')


def parse_ioreg_platform(text: str) -> dict[str, str]:
    """serialNumber, model and manufacturer from ``ioreg -rd1 -c IOPlatformExpertDevice``: strings are written
    "text", data holding a string <"text"> (a list of them <"a","b">: the first is taken); other data is hex."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        match = _IOREG_PROPERTY.match(line)
        if not match:
            continue
        name, raw = match.groups()
        raw = raw.strip()
        if raw.startswith('<"'):
            properties[name] = raw[2:].split('"', 1)[0]
        elif raw.startswith('"'):
            properties[name] = raw[1:].split('"', 1)[0]
    return {
        "serialNumber": properties.get("IOPlatformSerialNumber", ""),
        "model": properties.get("model", ""),
        "manufacturer": properties.get("manufacturer", ""),
    }


def hardware_identity() -> dict[str, str]:
    return parse_ioreg_platform(run_command(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"]) or "")


def disk_total_bytes() -> int | None:
    return None  # the mounted volumes' sum (common.hardware)


def keep_partition(part: Any) -> bool:
    """/System/Volumes/* are APFS volumes of the system's own container (Preboot, VM, Update…) except Data, where
    the user's files are; the root volume is kept too."""
    mount = part.mountpoint
    return not mount.startswith("/System/Volumes/") or mount == "/System/Volumes/Data"


def system_volume() -> str:
    return "/"


def primary_interface(addresses: dict[str, list]) -> str | None:
    return outbound_interface(addresses)


def pending_reboot() -> bool:
    """macOS has no documented marker of a pending reboot (softwareupdate restarts by itself)."""
    return False


def registry_state(config: LocalConfig) -> list[dict]:
    return []


def _date(value: object) -> str:
    """system_profiler's dates ("2024-05-20T08:12:34Z") as the UTC calendar date; anything else as ""."""
    if not isinstance(value, str):
        return ""
    try:
        moment = dt.datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return ""
    return moment.strftime("%Y-%m-%d")


_DEVELOPER_ID = re.compile(r"^Developer ID Application: (.+?)(?: \([A-Z0-9]{10}\))?$")
_OBTAINED_FROM = {"apple": "Apple Inc."}


def app_publisher(app: dict) -> str:
    """Who published an application: the developer named in its Developer ID signing certificate ("Developer ID
    Application: Google LLC (EQHXZ8M8AV)" → "Google LLC"), Apple for Apple's own; "" when the signature does not
    say (the Mac App Store re-signs apps with Apple's certificate, hiding the developer)."""
    signers = app.get("signed_by") or []
    if signers and isinstance(signers[0], str):
        match = _DEVELOPER_ID.match(signers[0])
        if match:
            return match.group(1)
    return _OBTAINED_FROM.get(str(app.get("obtained_from", "")), "")


def parse_applications(text: str) -> list[dict]:
    """The software inventory from ``system_profiler SPApplicationsDataType -json``; items without a name are
    skipped."""
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("system_profiler's output is not JSON")
        return []
    software = []
    for app in data.get("SPApplicationsDataType", []):
        if not isinstance(app, dict) or not str(app.get("_name", "")).strip():
            continue
        software.append(
            {
                "name": cut(app["_name"], 512),
                "version": cut(app.get("version", ""), 255),
                "publisher": cut(app_publisher(app), 512),
                "installDate": _date(app.get("lastModified")),
                "installLocation": cut(app.get("path", "")),
            }
        )
    return software


def software() -> list[dict]:
    """system_profiler walks every application bundle on the disks (seconds, not milliseconds): it runs only when
    the inventory is collected, every few hours."""
    output = run_command(["/usr/sbin/system_profiler", "SPApplicationsDataType", "-json"], timeout=300)
    return parse_applications(output) if output else []
