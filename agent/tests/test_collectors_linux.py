"""The Linux collectors against the truth of this machine: dpkg-query, psutil, /proc and /sys."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rmm_agent import collectors
from rmm_agent.collectors import common, linux

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Linux collectors")

RECORDED = Path(__file__).parent / "recorded" / "linux"


def run(*argv: str) -> str:
    """The stdout of a system tool found on PATH (the truth the collectors are compared with)."""
    executable = shutil.which(argv[0])
    if executable is None:
        pytest.skip(f"{argv[0]} is not on this machine")
    return subprocess.run([executable, *argv[1:]], capture_output=True, text=True, check=True).stdout  # noqa: S603


def dpkg_query(fields: str) -> list[list[str]]:
    output = run("dpkg-query", "-W", "-f", fields + "\n")
    return [line.split("\t") for line in output.splitlines() if line]


# ---- software -----------------------------------------------------------------------------------------------------


def test_software_counts_the_installed_packages_dpkg_query_lists():
    rows = dpkg_query("${binary:Package}\t${Version}\t${db:Status-Status}")
    installed = {(name, version) for name, version, status in rows if status == "installed"}
    not_installed = [name for name, _, status in rows if status != "installed"]
    software = collectors.collect_inventory(_config([]), ["software"])["software"]["software"]
    dpkg_items = {(item["name"], item["version"]) for item in software if item["installLocation"] == ""}

    assert dpkg_items == installed
    assert len(software) == len(installed)  # no rpm database on this machine
    # `dpkg-query -W | wc -l` counts every package dpkg knows; the difference is exactly the ones not installed.
    assert len(rows) - len(software) == len(not_installed)


def test_a_known_package_has_the_version_and_maintainer_dpkg_reports():
    (row,) = [line for line in dpkg_query("${binary:Package}\t${Version}\t${Maintainer}") if line[0] == "dpkg"]
    software = {item["name"]: item for item in linux.software()}
    assert software["dpkg"]["version"] == row[1]
    assert software["dpkg"]["publisher"] == row[2].split("<")[0].strip()
    mtime = os.stat("/var/lib/dpkg/info/dpkg.list").st_mtime
    assert software["dpkg"]["installDate"] == common.date_of_timestamp(mtime)


def test_dpkg_status_keeps_only_installed_packages_and_qualifies_multi_arch_ones(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    (info / "libc6:amd64.list").write_text("")
    os.utime(info / "libc6:amd64.list", (1_700_000_000, 1_700_000_000))
    software = linux.dpkg_software((RECORDED / "dpkg-status").read_text(), str(info))

    assert [item["name"] for item in software] == ["libc6:amd64", "google-chrome-stable", "vim"]
    libc, chrome, vim = software
    assert libc["installDate"] == "2023-11-14"
    assert libc["publisher"] == "GNU Libc Maintainers"
    assert chrome["publisher"] == "Google"  # Origin wins over the Maintainer
    assert vim["installDate"] == ""  # no file list: no date rather than a wrong one
    assert vim["version"] == "2:9.0.1378-2"


def test_rpm_query_output_gives_name_version_release_vendor_and_install_date():
    software = linux.parse_rpm_query((RECORDED / "rpm-qa.txt").read_text())

    assert len(software) == 5
    bash = next(item for item in software if item["name"] == "bash")
    assert bash == {
        "name": "bash",
        "version": "5.1.8-9.el9",
        "publisher": "Rocky Enterprise Software Foundation",
        "installDate": "2024-05-28",
        "installLocation": "",
    }
    openssl = next(item for item in software if item["name"] == "openssl")
    assert openssl["version"] == "1:3.0.7-27.el9"  # the epoch kept when set
    key = next(item for item in software if item["name"] == "gpg-pubkey")
    assert key["publisher"] == ""  # rpm's "(none)"


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not on this machine")
def test_rpm_live_query_matches_rpm_qa():
    rpm_items = linux.parse_rpm_query(run("rpm", "-qa", "--queryformat", linux.RPM_QUERY_FORMAT))
    assert len(rpm_items) == len(run("rpm", "-qa").splitlines())
    software = linux.software()
    assert all(item in software for item in rpm_items)


# ---- facts and hardware ---------------------------------------------------------------------------------------


def test_facts_are_this_machines():
    facts = collectors.facts()
    release = linux.parse_os_release(Path("/etc/os-release").read_text())

    assert facts["hostname"] == socket.gethostname()
    assert facts["osType"] == "linux"
    assert facts["osBuild"] == platform.release()
    assert facts["osVersion"] == release["PRETTY_NAME"]
    assert facts["architecture"] == platform.machine()


def test_hardware_is_this_machines():
    hardware = collectors.hardware()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model_names = {line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")}
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())

    if model_names:
        assert hardware["cpuModel"] in model_names
    assert hardware["ramTotalMb"] == int(meminfo["MemTotal"].split()[0]) // 1024
    assert hardware["cpuThreads"] == os.cpu_count()
    assert hardware["cpuCores"] == psutil.cpu_count(logical=False)
    assert hardware["diskTotalGb"] > 0
    serial = Path("/sys/class/dmi/id/product_serial")
    if not os.access(serial, os.R_OK):
        assert "serialNumber" not in hardware


def test_cpu_model_of_arm_and_x86_cpuinfo():
    assert linux.parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert linux.parse_cpu_model("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 4 Model B\n") == (
        "Raspberry Pi 4 Model B"
    )
    assert linux.parse_cpu_model("processor\t: 0\nBogoMIPS: 50\n") == ""


def test_gpu_name_from_pci_ids():
    text = "# comment\n10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n1002  AMD\n\t73bf  Navi 21\n"
    assert linux.pci_name(text, "10de", "2204") == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert linux.pci_name(text, "1002", "ffff") == "AMD"
    assert linux.pci_name(text, "8086", "0001") == ""


# ---- disks ------------------------------------------------------------------------------------------------------


def test_disks_are_psutils_partitions_after_the_documented_filtering():
    expected = {}
    for part in sorted(psutil.disk_partitions(all=False), key=lambda part: (len(part.mountpoint), part.mountpoint)):
        if part.fstype == "squashfs" or part.device.startswith("/dev/loop") or not os.path.isdir(part.mountpoint):
            continue
        if part.mountpoint in expected or part.device in {row[0] for row in expected.values()}:
            continue
        expected[part.mountpoint] = (part.device, part.fstype)
    disks = collectors.collect_inventory(_config([]), ["disks"])["disks"]["disks"]

    assert {disk["mountPoint"]: (disk["device"], disk["fsType"]) for disk in disks} == expected
    root = next(disk for disk in disks if disk["mountPoint"] == "/")
    usage = psutil.disk_usage("/")
    assert root["totalGb"] == round(usage.total / 2**30, 2)
    assert abs(root["usedGb"] - usage.used / 2**30) < 0.5  # files come and go between the two reads
    assert root["health"] == "unknown"


# ---- network ----------------------------------------------------------------------------------------------------


def default_route_interface() -> str | None:
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def test_interfaces_are_psutils_less_loopback_with_sysfs_macs_and_the_default_routes_primary():
    adapters = collectors.collect_inventory(_config([]), ["network"])["network"]["adapters"]
    names = {row["interfaceName"] for row in adapters}

    assert names == set(psutil.net_if_addrs()) - {"lo"}
    for row in adapters:
        sysfs = Path(f"/sys/class/net/{row['interfaceName']}/address")
        if sysfs.exists() and sysfs.read_text().strip().strip("0:"):
            assert row["macAddress"] == sysfs.read_text().strip()
    primary = {row["interfaceName"] for row in adapters if row["isPrimary"]}
    route = default_route_interface()
    assert primary == ({route} if route else primary)
    if route:
        assert adapters[0]["interfaceName"] == route  # the primary comes first, so a cut keeps it


def test_every_non_link_local_address_is_a_row():
    adapters = collectors.collect_inventory(_config([]), ["network"])["network"]["adapters"]
    rows = {(row["interfaceName"], row["ipAddress"]) for row in adapters}
    for name, entries in psutil.net_if_addrs().items():
        if name == "lo":
            continue
        for entry in entries:
            if entry.family == socket.AF_INET or (
                entry.family == socket.AF_INET6 and not entry.address.lower().startswith("fe80")
            ):
                assert (name, entry.address) in rows


def test_enrollment_interfaces_are_the_network_rows_under_enrollments_names():
    interfaces = collectors.enrollment_interfaces()
    adapters = common.adapters()
    assert interfaces == [
        {"name": row["interfaceName"], "mac": row["macAddress"], "ip": row["ipAddress"], "isPrimary": row["isPrimary"]}
        for row in adapters
    ]


def test_default_route_parsers():
    routes = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    )
    assert linux.parse_routes(routes) == "eth0"  # the lower metric
    assert linux.parse_routes(routes.splitlines()[0]) is None
    ipv6 = (
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n"
    )
    assert linux.parse_ipv6_routes(ipv6) == "wlan0"


# ---- heartbeat and metrics --------------------------------------------------------------------------------------


def test_heartbeat_facts_are_this_machines():
    facts = collectors.heartbeat_facts()
    assert facts["hostname"] == socket.gethostname()
    assert facts["osBuild"] == platform.release()
    assert facts["pendingReboot"] == os.path.exists("/var/run/reboot-required")
    assert abs(facts["uptime"] - (time.time() - psutil.boot_time())) < 2
    sessions = psutil.users()
    assert facts["lastUser"] == (max(sessions, key=lambda s: s.started).name if sessions else "")


def _config(config_files):
    from rmm_agent.config import ConfigFile, LocalConfig

    return LocalConfig(config_files=[ConfigFile(path=path, keys=keys) for path, keys in config_files])
