"""What psutil gives on every platform, in the wire form of agent-api.md: facts, hardware, interfaces, disks,
connections, config-file keys, metrics, and the inventory as a whole with its content hash.

What differs between platforms (OS name, CPU model, DMI, software databases, the default route, pending reboots)
is asked of the platform module (``linux``, ``macos``, ``windows``), which ``rmm_agent.collectors`` picks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from rmm_agent.config import LocalConfig

log = logging.getLogger(__name__)

INVENTORY_KINDS = ("hardware", "software", "disks", "network", "connections", "registry-state", "config-state")

# The protocol's limits (agent-api.md, devices/agent_api/schemas.py): a list over its limit is refused whole (413),
# a string over its column's length is refused (400), so everything is cut here, before it is sent.
LIMITS = {"software": 10_000, "disks": 100, "network": 100, "connections": 10_000}
CONFIG_ENTRIES_LIMIT = 5_000
REGISTRY_ENTRIES_LIMIT = 5_000
ADDRESS_MAX_LENGTH = 45
MAC_MAX_LENGTH = 17

MIB = 1024 * 1024
GIB = 1024 * 1024 * 1024


def platform_module() -> ModuleType:
    """The module that knows this platform (imported lazily: windows.py's readers need winreg)."""
    if sys.platform == "win32":
        from rmm_agent.collectors import windows

        return windows
    if sys.platform == "darwin":
        from rmm_agent.collectors import macos

        return macos
    from rmm_agent.collectors import linux

    return linux


def storable(text: object) -> str:
    """``text`` as a string PostgreSQL can store: without NUL characters and lone surrogates, which the server
    refuses with a 400 for the whole upload (a registry value or a file name may hold either)."""
    value = "" if text is None else str(text)
    if value.isascii():
        return value.replace("\x00", "") if "\x00" in value else value
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def cut(text: object, length: int | None = None) -> str:
    """``text`` as a storable string of at most ``length`` characters (the server refuses a longer one with a 400)."""
    value = storable(text)
    return value if length is None else value[:length]


def utc_now() -> str:
    """Now, ISO 8601 UTC with a Z, to the second."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_of_timestamp(seconds: float) -> str:
    """A POSIX time as a UTC calendar date (YYYY-MM-DD), the form every installDate is sent in."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d")


def run_command(argv: list[str], *, timeout: float = 30.0) -> str | None:
    """The stdout of ``argv``, or None (logged) when it is missing, fails or runs past ``timeout``."""
    try:
        completed = subprocess.run(  # noqa: S603  # a fixed argv of a system tool, no shell
            argv, capture_output=True, text=True, timeout=timeout, check=False, errors="replace"
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not run %s: %s", argv[0], exc)
        return None
    if completed.returncode != 0:
        log.warning("%s exited with %s: %s", argv[0], completed.returncode, completed.stderr.strip()[:200])
        return None
    return completed.stdout


def strip_zone(address: str) -> str:
    """An IPv6 address without its zone (``fe80::1%eth0`` → ``fe80::1``): the zone names a local interface, and
    with it a link-local address can pass the server's 45 characters."""
    return address.split("%", 1)[0]


# ---- facts ------------------------------------------------------------------------------------------------------


def facts() -> dict:
    """The enrollment facts: hostname, osType, osVersion, osBuild, architecture."""
    system = platform_module()
    os_version, os_build = system.os_version_build()
    return {
        "hostname": cut(socket.gethostname(), 255),
        "osType": system.OS_TYPE,
        "osVersion": cut(os_version, 100),
        "osBuild": cut(os_build, 100),
        "architecture": cut(platform.machine(), 20),
    }


def heartbeat_facts() -> dict:
    """What the heartbeat reports besides metrics. Empty hostname / osVersion / osBuild are left out: the server
    refuses a blank one, and an absent one means "unchanged"."""
    system = platform_module()
    os_version, os_build = system.os_version_build()
    found: dict[str, Any] = {
        "hostname": cut(socket.gethostname(), 255),
        "osVersion": cut(os_version, 100),
        "osBuild": cut(os_build, 100),
    }
    found = {key: value for key, value in found.items() if value.strip()}
    found["uptime"] = max(0, int(time.time() - psutil.boot_time()))
    found["lastUser"] = last_user()
    try:
        found["pendingReboot"] = bool(system.pending_reboot())
    except OSError as exc:
        log.warning("could not tell whether a reboot is pending: %s", exc)
    return found


def last_user() -> str:
    """The user of the most recent login session, or "" when nobody is logged in."""
    try:
        sessions = psutil.users()
    except OSError:
        return ""
    if not sessions:
        return ""
    return max(sessions, key=lambda session: session.started).name or ""


# ---- hardware ---------------------------------------------------------------------------------------------------


def hardware() -> dict:
    """The hardwareInfo object; a value that cannot be read is left out."""
    system = platform_module()
    found: dict[str, Any] = {}
    cpu_model = system.cpu_model()
    if cpu_model:
        found["cpuModel"] = cut(cpu_model, 255)
    cores = psutil.cpu_count(logical=False)
    threads = psutil.cpu_count(logical=True)
    if cores:
        found["cpuCores"] = cores
    if threads:
        found["cpuThreads"] = threads
    found["ramTotalMb"] = psutil.virtual_memory().total // MIB
    total_bytes = system.disk_total_bytes()
    if total_bytes is None:
        total_bytes = sum(disk["totalGb"] for disk in disks()) * GIB
    found["diskTotalGb"] = round(total_bytes / GIB, 2)
    for key, value in system.hardware_identity().items():
        if value:
            found[key] = cut(value, 255)
    return found


# ---- network ----------------------------------------------------------------------------------------------------


def normalized_mac(address: str | None) -> str:
    """A MAC as lowercase colon-separated hex (Windows writes AA-BB-…), or "" for none, all zeros (tunnels) or a
    hardware address longer than the server's 17 characters (InfiniBand's 20 bytes)."""
    if not address:
        return ""
    mac = address.replace("-", ":").lower()
    if len(mac) > MAC_MAX_LENGTH or not mac.strip("0:"):
        return ""
    return mac


def loopback_interfaces(addresses: dict[str, list] | None = None) -> set[str]:
    """The names of the loopback interfaces: flagged so by the OS, or holding 127.0.0.0/8 or ::1."""
    addresses = psutil.net_if_addrs() if addresses is None else addresses
    names = set()
    try:
        stats = psutil.net_if_stats()
    except OSError:
        stats = {}
    for name, entries in addresses.items():
        flags = getattr(stats.get(name), "flags", "")
        holds_loopback = any(entry.address.startswith("127.") or entry.address == "::1" for entry in entries)
        if "loopback" in flags.split(",") or holds_loopback:
            names.add(name)
    return names


def outbound_interface(addresses: dict[str, list]) -> str | None:
    """The interface whose address the system would use towards the Internet: a UDP socket connect()ed to a
    public address (no packet is sent) shows the chosen source address."""
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 53))
                source = strip_zone(probe.getsockname()[0])
        except OSError:
            continue
        for name, entries in addresses.items():
            if any(strip_zone(entry.address) == source for entry in entries):
                return name
    return None


def _is_link_local_v6(address: str) -> bool:
    return address.lower().startswith(("fe8", "fe9", "fea", "feb"))


def adapters() -> list[dict]:
    """The network inventory: one row per (interface, IPv4 or IPv6 address), an interface without any address as
    one row with ipAddress "" (its MAC still identifies it); loopback left out.

    IPv6 link-local addresses (fe80::/10) are left out: every IPv6 interface has one, no other machine can reach it
    by it, and with its zone it can pass the server's 45 characters. IPv4 link-local (169.254/16) is kept: it is
    what a technician looks for when DHCP failed. ``isPrimary`` marks the rows of the default route's interface.
    """
    addresses = psutil.net_if_addrs()
    loopback = loopback_interfaces(addresses)
    primary = platform_module().primary_interface(addresses)
    rows = []
    for name, entries in addresses.items():
        if name in loopback:
            continue
        mac = ""
        ips: list[tuple[str, str]] = []
        for entry in entries:
            if entry.family == psutil.AF_LINK:
                mac = mac or normalized_mac(entry.address)
            elif entry.family == socket.AF_INET:
                ips.append((entry.address, "ipv4"))
            elif entry.family == socket.AF_INET6:
                address = strip_zone(entry.address)
                if not _is_link_local_v6(address):
                    ips.append((address, "ipv6"))
        base = {"interfaceName": cut(name, 255), "macAddress": mac, "isPrimary": name == primary, "publicIp": ""}
        if not ips:
            rows.append({**base, "ipAddress": "", "ipType": "ipv4"})
        for address, ip_type in ips:
            rows.append({**base, "ipAddress": address, "ipType": ip_type})
    # The primary interface first, so a cut at the limit keeps it.
    rows.sort(key=lambda row: (not row["isPrimary"], row["interfaceName"], row["ipType"], row["ipAddress"]))
    return rows[: LIMITS["network"]]


def enrollment_interfaces() -> list[dict]:
    """Enrollment's networkInfo: the network inventory's rows under enrollment's names (at most 100)."""
    return [
        {"name": row["interfaceName"], "mac": row["macAddress"], "ip": row["ipAddress"], "isPrimary": row["isPrimary"]}
        for row in adapters()
    ]


# ---- disks ------------------------------------------------------------------------------------------------------


def disks() -> list[dict]:
    """The mounted volumes: psutil's partitions (all=False: real file systems) less what the platform module
    filters out (``keep_partition``: snap loops, bind-mounted files, system sub-volumes), each mount point once and
    each device once (a bind mount of a directory shows the same device again: the shortest mount point is kept).
    Health is "unknown": nothing here reads SMART."""
    system = platform_module()
    candidates = sorted(
        (part for part in psutil.disk_partitions(all=False) if system.keep_partition(part)),
        key=lambda part: (len(part.mountpoint), part.mountpoint),
    )
    seen_devices: set[str] = set()
    seen_mounts: set[str] = set()
    rows: list[dict[str, Any]] = []
    for part in candidates:
        if part.mountpoint in seen_mounts or (part.device and part.device in seen_devices):
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue  # an empty CD drive, a mount gone meanwhile, a mount we may not read
        seen_mounts.add(part.mountpoint)
        seen_devices.add(part.device)
        rows.append(
            {
                "mountPoint": cut(part.mountpoint, 1024),
                "device": cut(part.device, 1024),
                "fsType": cut(part.fstype, 50),
                "totalGb": round(usage.total / GIB, 2),
                "usedGb": round(usage.used / GIB, 2),
                "freeGb": round(usage.free / GIB, 2),
                "usedPercent": min(100.0, max(0.0, float(usage.percent))),
                "health": "unknown",
            }
        )
    rows.sort(key=lambda row: row["mountPoint"])
    return rows[: LIMITS["disks"]]


# ---- connections ------------------------------------------------------------------------------------------------

_PROTOCOLS = {
    (socket.AF_INET, socket.SOCK_STREAM): "tcp",
    (socket.AF_INET6, socket.SOCK_STREAM): "tcp6",
    (socket.AF_INET, socket.SOCK_DGRAM): "udp",
    (socket.AF_INET6, socket.SOCK_DGRAM): "udp6",
}


def connections() -> list[dict]:
    """The open inet sockets (psutil.net_connections), with the name of the process that holds each ("" when it
    may not be read); zones stripped from IPv6 addresses; at most 10,000."""
    names: dict[int, str] = {}

    def process_name(pid: int | None) -> str:
        if pid is None:
            return ""
        if pid not in names:
            try:
                names[pid] = psutil.Process(pid).name()
            except (psutil.Error, OSError):
                names[pid] = ""
        return names[pid]

    rows: list[dict[str, Any]] = []
    for conn in psutil.net_connections(kind="inet"):
        protocol = _PROTOCOLS.get((conn.family, conn.type))
        if protocol is None or not conn.laddr:
            continue
        remote = conn.raddr
        rows.append(
            {
                "protocol": protocol,
                "localAddr": cut(strip_zone(conn.laddr.ip), ADDRESS_MAX_LENGTH),
                "localPort": conn.laddr.port,
                "remoteAddr": cut(strip_zone(remote.ip), ADDRESS_MAX_LENGTH) if remote else "",
                "remotePort": remote.port if remote else None,
                "state": cut(conn.status, 20),
                "pid": conn.pid,
                "processName": cut(process_name(conn.pid), 255),
            }
        )
    rows.sort(
        key=lambda row: (
            row["protocol"],
            row["localAddr"],
            row["localPort"],
            row["remoteAddr"],
            row["remotePort"] or 0,
            row["pid"] or 0,
        )
    )
    return rows[: LIMITS["connections"]]


# ---- config files -----------------------------------------------------------------------------------------------

# "Key value" (sshd_config), "key = value" (ini, conf), "KEY=value" (shell, and sshd's own Key=value).
_KEY_VALUE = re.compile(r"^([^\s=]+)(?:\s*=\s*|\s+)(.*?)\s*$")


def _is_ssh_config(path: str) -> bool:
    name = os.path.basename(path).lower()
    return (
        "sshd_config" in name or "ssh_config" in name or os.path.dirname(path).replace("\\", "/").startswith("/etc/ssh")
    )


def parse_config_text(text: str, *, ssh_style: bool = False) -> dict[str, str]:
    """The key/value lines of a config file, key → value, the first occurrence of a key winning (as sshd reads
    it). Comment lines start with # or ; and [section] headers are skipped (keys are not qualified by section).
    With ``ssh_style`` keys are lowercased (sshd compares them case-insensitively) and reading stops at the first
    Match block, whose settings apply only to some connections."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        match = _KEY_VALUE.match(line)
        if match is None:
            continue
        key, value = match.groups()
        if ssh_style:
            key = key.lower()
            if key == "match":
                break
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]  # shell quoting
        found.setdefault(key, value)
    return found


def config_state(config: LocalConfig) -> list[dict]:
    """config-state: for each configured file, one entry per configured key present in it. An unreadable file is
    skipped with a warning (a missing one with an info line); a key listed twice is reported once."""
    collected_at = utc_now()
    entries: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for config_file in config.config_files:
        try:
            with open(config_file.path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            # Not a fault: the default list names sshd_config, and many machines run no SSH server.
            log.info("config-state: %s does not exist", config_file.path)
            continue
        except OSError as exc:
            log.warning("config-state: cannot read %s: %s", config_file.path, exc)
            continue
        ssh_style = _is_ssh_config(config_file.path)
        values = parse_config_text(text, ssh_style=ssh_style)
        for key in config_file.keys:
            value = values.get(key.lower() if ssh_style else key)
            identity = (config_file.path, key)
            if value is None or identity in seen:
                continue
            seen.add(identity)
            entries.append(
                {
                    "filePath": cut(config_file.path, 1024),
                    "configKey": cut(key, 512),
                    "configValue": cut(value),
                    "collectedAt": collected_at,
                }
            )
    entries.sort(key=lambda entry: (entry["filePath"], entry["configKey"]))
    return entries[:CONFIG_ENTRIES_LIMIT]


# ---- metrics ----------------------------------------------------------------------------------------------------


def busy_percent(before: Any, after: Any) -> float:
    """The CPU's busy share between two psutil.cpu_times() readings, as psutil.cpu_percent computes it: idle and
    I/O wait are idle; guest time is already counted in user time on Linux, so it is not counted twice."""
    fields = after._fields
    total = sum(getattr(after, f) - getattr(before, f) for f in fields if f not in ("guest", "guest_nice"))
    idle = sum(getattr(after, f) - getattr(before, f) for f in fields if f in ("idle", "iowait"))
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * (total - idle) / total)), 1)


class MetricsSampler:
    """The heartbeat's metrics. CPU is the average since the previous sample, and network bytes the traffic since
    then (the counters are read here first), so a sample taken every interval says how busy the machine was over
    that interval, not in one instant.

    The sampler keeps its own previous reading of psutil.cpu_times() rather than priming psutil.cpu_percent: before
    psutil 5.9.6 that one kept a single process-wide previous reading, which any other caller would move, and since
    then one per thread, so a sampler made in one thread and sampled in another would start from nothing."""

    def __init__(self) -> None:
        self._cpu_times = psutil.cpu_times()
        self.system_volume = platform_module().system_volume()
        self.loopback = loopback_interfaces()
        self._net_counters = self._read_net_counters()

    def _read_net_counters(self) -> dict[str, tuple[int, int]]:
        counters = psutil.net_io_counters(pernic=True)
        return {name: (c.bytes_recv, c.bytes_sent) for name, c in counters.items() if name not in self.loopback}

    def _network_since_previous(self) -> tuple[int, int]:
        """Bytes received and sent over the non-loopback interfaces since the previous sample.

        The server stores, charts, averages and alerts on each sample's value, so it must be the traffic of the
        interval: a counter since boot would only ever grow. A counter that went down (an interface re-created, a
        32-bit counter wrapped) restarted from zero, so its current value is what it counted since; an interface
        that appeared since the previous sample counts from zero too."""
        previous, self._net_counters = self._net_counters, self._read_net_counters()
        received = sent = 0
        for name, (now_in, now_out) in self._net_counters.items():
            before_in, before_out = previous.get(name, (0, 0))
            received += now_in - before_in if now_in >= before_in else now_in
            sent += now_out - before_out if now_out >= before_out else now_out
        return received, sent

    def sample(self) -> dict:
        """One sample in wire form (agent-api.md's metrics); a metric that cannot be read is left out."""
        previous_cpu_times, self._cpu_times = self._cpu_times, psutil.cpu_times()
        memory = psutil.virtual_memory()
        found: dict[str, Any] = {
            "cpuPercent": busy_percent(previous_cpu_times, self._cpu_times),
            "ramPercent": round(min(100.0, max(0.0, memory.percent)), 1),
            "ramUsedMb": max(0, memory.total - memory.available) // MIB,
        }
        try:
            usage = psutil.disk_usage(self.system_volume)
            found["diskPercent"] = round(min(100.0, max(0.0, usage.percent)), 1)
            found["diskUsedGb"] = round(usage.used / GIB, 2)
        except OSError as exc:
            log.debug("no usage of %s: %s", self.system_volume, exc)
        found["networkInBytes"], found["networkOutBytes"] = self._network_since_previous()
        found["processCount"] = len(psutil.pids())
        return found


# ---- the inventory ----------------------------------------------------------------------------------------------


def _software() -> dict:
    items = platform_module().software()
    items.sort(key=lambda item: (item["name"].lower(), item["name"], item["version"], item["installLocation"]))
    return {"software": items[: LIMITS["software"]]}


def _registry_state(config: LocalConfig) -> dict:
    return {"entries": platform_module().registry_state(config)[:REGISTRY_ENTRIES_LIMIT]}


def collectors_for(config: LocalConfig) -> dict[str, Callable[[], dict]]:
    """kind → the function that collects its PUT body, for the kinds that apply to this platform."""
    kinds: dict[str, Callable[[], dict]] = {
        "hardware": hardware,
        "software": _software,
        "disks": lambda: {"disks": disks()},
        "network": lambda: {"adapters": adapters()},
        "connections": lambda: {"connections": connections()},
        "config-state": lambda: {"entries": config_state(config)},
    }
    if platform_module().OS_TYPE == "windows":
        kinds["registry-state"] = lambda: _registry_state(config)
    return kinds


def collect_inventory(config: LocalConfig, kinds: Iterable[str] | None = None) -> dict[str, dict]:
    """kind → its PUT body for ``kinds`` (all that apply to this platform when None), in INVENTORY_KINDS' order.
    A collector that fails is logged and its kind left out; the others still go."""
    available = collectors_for(config)
    wanted = set(INVENTORY_KINDS if kinds is None else kinds)
    bodies: dict[str, dict] = {}
    for kind in INVENTORY_KINDS:
        if kind not in wanted or kind not in available:
            continue
        try:
            bodies[kind] = available[kind]()
        except Exception:  # one broken collector must not cost the other kinds
            log.warning("inventory: collecting %s failed", kind, exc_info=True)
    return bodies


VOLATILE_FIELDS = frozenset({"collectedAt"})


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_volatile(item) for key, item in value.items() if key not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_without_volatile(item) for item in value]
    return value


def content_hash(kind: str, body: dict) -> str:
    """sha256 hex of ``kind`` and the canonical JSON of ``body`` without its volatile fields (collectedAt), so an
    inventory whose content did not change hashes the same however often it is collected."""
    canonical = json.dumps(
        _without_volatile(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(f"{kind}\n{canonical}".encode()).hexdigest()
