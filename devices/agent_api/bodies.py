"""Readers of the agent request bodies other than the heartbeat's (``devices.agent_api.heartbeat``).

Each takes the parsed JSON object and returns clean values (rows for ``devices.services.ingest``, facts for
``devices.services.enrollment``), or raises the 400 naming every bad field / the 413 of a list over its limit.
"""

from __future__ import annotations

from devices.agent_api.validation import (
    COOPERATE_EVERY,
    INT_MAX,
    Problems,
    boolean,
    choice,
    clean_string,
    cooperate,
    date,
    integer,
    ip_address,
    ip_version,
    item_list,
    number,
    sub_object,
    text,
    timestamp,
)
from devices.models import Device
from devices.models.inventory import DeviceDiskHealth, DeviceNetworkConnectionProtocol
from devices.services.enrollment import EnrollFacts

NETWORK_LIMIT = 100
STREAM_LIMIT_BYTES = 1024 * 1024  # stdout / stderr of a command result
RESULT_STATUSES = ("completed", "failed", "timeout")


# ---- hardware (enrollment's hardwareInfo and PUT .../hardware) ----


def hardware_columns(obj: dict, prefix: str, problems: Problems) -> dict:
    """``hardwareInfo`` → device_hardware columns."""
    return {
        "cpu_model": text(obj, "cpuModel", prefix, problems, max_length=255),
        "cpu_cores": integer(obj, "cpuCores", prefix, problems, maximum=INT_MAX),
        "cpu_threads": integer(obj, "cpuThreads", prefix, problems, maximum=INT_MAX),
        "ram_total_mb": integer(obj, "ramTotalMb", prefix, problems),
        "disk_total_gb": number(obj, "diskTotalGb", prefix, problems),
        "gpu_model": text(obj, "gpuModel", prefix, problems, max_length=255),
        "serial_number": text(obj, "serialNumber", prefix, problems, max_length=255),
        "manufacturer": text(obj, "manufacturer", prefix, problems, max_length=255),
        "model": text(obj, "model", prefix, problems, max_length=255),
        "bios_version": text(obj, "biosVersion", prefix, problems, max_length=255),
    }


def read_hardware(body: dict) -> dict:
    problems = Problems()
    columns = hardware_columns(body, "", problems)
    problems.raise_if_any()
    return columns


# ---- enrollment ----


def read_enrollment(body: dict) -> tuple[str, EnrollFacts]:
    """The enrollment key and the machine's facts of POST /enroll."""
    problems = Problems()
    key = text(body, "enrollmentKey", "", problems, max_length=256, required=True, blank=False)
    hostname = text(body, "hostname", "", problems, max_length=255, required=True, blank=False)
    os_type = choice(body, "osType", "", problems, choices=Device.OsType.values, required=True)
    os_version = text(body, "osVersion", "", problems, max_length=100, required=True)
    os_build = text(body, "osBuild", "", problems, max_length=100)
    architecture = text(body, "architecture", "", problems, max_length=20, required=True)
    agent_version = text(body, "agentVersion", "", problems, max_length=20, required=True, blank=False)
    hardware_info = sub_object(body, "hardwareInfo", problems)
    hardware = hardware_columns(hardware_info, "hardwareInfo", problems) if hardware_info is not None else None
    interfaces = []
    for index, item in item_list(body, "networkInfo", problems, limit=NETWORK_LIMIT, required=False):
        prefix = f"networkInfo[{index}]"
        ip = ip_address(item, "ip", prefix, problems)
        interfaces.append(
            (
                text(item, "name", prefix, problems, max_length=255, required=True, blank=False),
                text(item, "mac", prefix, problems, max_length=17),
                ip,
                ip_version(ip),
                boolean(item, "isPrimary", prefix, problems),
                "",
            )
        )
    problems.raise_if_any()
    facts = EnrollFacts(
        hostname=hostname,
        os_type=os_type,
        os_version=os_version,
        os_build=os_build,
        architecture=architecture,
        agent_version=agent_version,
        hardware=hardware,
        interfaces=interfaces,
    )
    return key, facts


# ---- inventory lists ----


def _software(item: dict, prefix: str, problems: Problems) -> tuple:
    return (
        text(item, "name", prefix, problems, max_length=512, required=True, blank=False),
        text(item, "version", prefix, problems, max_length=255),
        text(item, "publisher", prefix, problems, max_length=512),
        date(item, "installDate", prefix, problems),
        text(item, "installLocation", prefix, problems, max_length=None),
    )


def _disk(item: dict, prefix: str, problems: Problems) -> tuple:
    return (
        text(item, "mountPoint", prefix, problems, max_length=1024, required=True, blank=False),
        text(item, "device", prefix, problems, max_length=1024),
        text(item, "fsType", prefix, problems, max_length=50),
        number(item, "totalGb", prefix, problems),
        number(item, "usedGb", prefix, problems),
        number(item, "freeGb", prefix, problems),
        number(item, "usedPercent", prefix, problems, maximum=100),
        choice(item, "health", prefix, problems, choices=DeviceDiskHealth.values, default=DeviceDiskHealth.UNKNOWN),
    )


def _adapter(item: dict, prefix: str, problems: Problems) -> tuple:
    ip = ip_address(item, "ipAddress", prefix, problems)
    return (
        text(item, "interfaceName", prefix, problems, max_length=255, required=True, blank=False),
        text(item, "macAddress", prefix, problems, max_length=17),
        ip,
        choice(item, "ipType", prefix, problems, choices=("ipv4", "ipv6"), default=ip_version(ip)),
        boolean(item, "isPrimary", prefix, problems),
        ip_address(item, "publicIp", prefix, problems),
    )


def _connection(item: dict, prefix: str, problems: Problems) -> tuple:
    return (
        choice(item, "protocol", prefix, problems, choices=DeviceNetworkConnectionProtocol.values, required=True),
        text(item, "localAddr", prefix, problems, max_length=45, required=True, blank=False),
        integer(item, "localPort", prefix, problems, maximum=65535, required=True),
        text(item, "remoteAddr", prefix, problems, max_length=45),
        integer(item, "remotePort", prefix, problems, maximum=65535),
        text(item, "state", prefix, problems, max_length=20),
        integer(item, "pid", prefix, problems, maximum=INT_MAX),
        text(item, "processName", prefix, problems, max_length=255),
    )


def _value_text(item: dict, key: str, prefix: str, problems: Problems) -> str:
    """A collected value: a string, or a number / boolean kept as its JSON text (registry DWORDs arrive so)."""
    value = item.get(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return text(item, key, prefix, problems, max_length=None)


def _registry_entry(item: dict, prefix: str, problems: Problems) -> tuple:
    return (
        text(item, "registryPath", prefix, problems, max_length=1024, required=True, blank=False),
        # "" is the registry's default value of a key, so a blank name is a real one.
        text(item, "valueName", prefix, problems, max_length=512, required=True),
        _value_text(item, "valueData", prefix, problems),
        text(item, "valueType", prefix, problems, max_length=50),
        timestamp(item, "collectedAt", prefix, problems),
    )


def _config_entry(item: dict, prefix: str, problems: Problems) -> tuple:
    return (
        text(item, "filePath", prefix, problems, max_length=1024, required=True, blank=False),
        text(item, "configKey", prefix, problems, max_length=512, required=True, blank=False),
        _value_text(item, "configValue", prefix, problems),
        timestamp(item, "collectedAt", prefix, problems),
    )


# kind → (list key in the body, limit, row reader, how many leading columns must be unique per device)
INVENTORY_LISTS = {
    "software": ("software", 10_000, _software, 0),
    "disks": ("disks", 100, _disk, 0),
    "network": ("adapters", NETWORK_LIMIT, _adapter, 0),
    "connections": ("connections", 10_000, _connection, 0),
    "registry-state": ("entries", 5_000, _registry_entry, 2),
    "config-state": ("entries", 5_000, _config_entry, 2),
}
INVENTORY_KINDS = ("hardware", *INVENTORY_LISTS)


def read_inventory(kind: str, body: dict) -> list[tuple]:
    """The rows of an inventory upload of ``kind`` (not hardware), in ``ingest.KINDS`` column order."""
    key, limit, read_row, unique_width = INVENTORY_LISTS[kind]
    problems = Problems()
    items = item_list(body, key, problems, limit=limit)
    rows = []
    seen: dict[tuple, int] = {}
    for index, item in items:
        if index and index % COOPERATE_EVERY == 0:
            cooperate()
        prefix = f"{key}[{index}]"
        row = read_row(item, prefix, problems)
        if unique_width:
            identity = row[:unique_width]
            first = seen.setdefault(identity, index)
            if first != index:
                problems.add(prefix, f"Repeats {key}[{first}] (the same path and name).")
        rows.append(row)
    problems.raise_if_any()
    return rows


# ---- command results ----


def _stream(body: dict, key: str, problems: Problems) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(key, "Must be a string.")
        return None
    problem = clean_string(value)
    if problem:
        problems.add(key, problem)
    elif len(value) > STREAM_LIMIT_BYTES // 4 and len(value.encode()) > STREAM_LIMIT_BYTES:
        problems.add(key, "At most 1 MiB.")
    return value


def read_command_result(body: dict) -> tuple[str, dict]:
    """(final status, result) of POST .../commands/{id}/result; result is ``{exitCode, stdout, stderr,
    durationMs, error}``."""
    problems = Problems()
    status = choice(body, "status", "", problems, choices=RESULT_STATUSES, required=True)
    result = {
        "exitCode": integer(body, "exitCode", "", problems, minimum=-(2**63), maximum=2**63 - 1),
        "stdout": _stream(body, "stdout", problems),
        "stderr": _stream(body, "stderr", problems),
        "durationMs": integer(body, "durationMs", "", problems),
        "error": _stream(body, "error", problems),
    }
    problems.raise_if_any()
    return status, result
