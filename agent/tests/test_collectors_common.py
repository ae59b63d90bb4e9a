"""The collectors every platform shares: config-file keys, connections, metrics, the inventory and its hash."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import psutil
import pytest

from rmm_agent import collectors
from rmm_agent.collectors import common
from rmm_agent.config import ConfigFile, LocalConfig


def config_of(*files: tuple[str, list[str]]) -> LocalConfig:
    return LocalConfig(config_files=[ConfigFile(path=path, keys=keys) for path, keys in files])


# ---- config-state -----------------------------------------------------------------------------------------------


def entries_of(config: LocalConfig) -> dict[tuple[str, str], str]:
    body = collectors.collect_inventory(config, ["config-state"])["config-state"]
    return {(entry["filePath"], entry["configKey"]): entry["configValue"] for entry in body["entries"]}


def test_config_state_reads_sshd_style_keys_case_insensitively_and_the_first_occurrence_wins(tmp_path):
    sshd = tmp_path / "sshd_config"
    sshd.write_text(
        "# PermitRootLogin yes\n"
        "Port 2222\n"
        "permitrootlogin prohibit-password\n"
        "PermitRootLogin yes\n"
        "PasswordAuthentication=no\n"
        "Match User backup\n"
        "    X11Forwarding yes\n"
    )
    found = entries_of(config_of((str(sshd), ["PermitRootLogin", "PasswordAuthentication", "X11Forwarding", "Port"])))

    assert found == {
        (str(sshd), "PermitRootLogin"): "prohibit-password",
        (str(sshd), "PasswordAuthentication"): "no",
        (str(sshd), "Port"): "2222",
    }  # X11Forwarding is set only inside a Match block: not the global value


def test_config_state_reads_ini_and_shell_files_and_reports_only_configured_keys(tmp_path):
    ini = tmp_path / "app.conf"
    ini.write_text("; a comment\n[main]\nlisten = 0.0.0.0:8080\nworkers=4\nsecret = s3cr3t\n")
    shell = tmp_path / "defaults"
    shell.write_text('# shell\nENABLED=1\nOPTIONS="-a -b"\nexport_ignored\n')
    found = entries_of(config_of((str(ini), ["listen", "workers", "absent"]), (str(shell), ["OPTIONS", "ENABLED"])))

    assert found == {
        (str(ini), "listen"): "0.0.0.0:8080",
        (str(ini), "workers"): "4",
        (str(shell), "OPTIONS"): "-a -b",
        (str(shell), "ENABLED"): "1",
    }
    # Keys outside ssh files are compared as written.
    assert entries_of(config_of((str(shell), ["enabled"]))) == {}


def test_config_state_skips_an_unreadable_file_with_a_warning_and_keeps_the_others(tmp_path, caplog):
    readable = tmp_path / "ok.conf"
    readable.write_text("a = 1\n")
    unreadable = tmp_path / "a-directory.conf"  # root reads any file; a directory it cannot read as one
    unreadable.mkdir()
    caplog.set_level(logging.INFO)
    config = config_of((str(tmp_path / "missing.conf"), ["a"]), (str(unreadable), ["a"]), (str(readable), ["a"]))
    body = collectors.collect_inventory(config, ["config-state"])["config-state"]

    assert [(entry["filePath"], entry["configValue"]) for entry in body["entries"]] == [(str(readable), "1")]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "a-directory.conf" in warnings[0]
    assert "missing.conf" in caplog.text  # said, but not as a warning: many machines have no sshd_config
    collected_at = body["entries"][0]["collectedAt"]
    assert collected_at.endswith("Z") and len(collected_at) == 20


# ---- connections ------------------------------------------------------------------------------------------------


def test_a_listening_socket_is_in_the_connections_with_its_pid_and_process_name():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connections = collectors.collect_inventory(LocalConfig(), ["connections"])["connections"]["connections"]

    mine = [row for row in connections if row["localPort"] == port and row["localAddr"] == "127.0.0.1"]
    assert mine == [
        {
            "protocol": "tcp",
            "localAddr": "127.0.0.1",
            "localPort": port,
            "remoteAddr": "",
            "remotePort": None,
            "state": "LISTEN",
            "pid": os.getpid(),
            "processName": psutil.Process().name(),
        }
    ]
    assert connections == sorted(
        connections,
        key=lambda row: (
            row["protocol"],
            row["localAddr"],
            row["localPort"],
            row["remoteAddr"],
            row["remotePort"] or 0,
            row["pid"] or 0,
        ),
    )


def test_a_zone_is_stripped_from_an_ipv6_address():
    assert common.strip_zone("fe80::1:2:3:4%enp0s31f6-with-a-long-name") == "fe80::1:2:3:4"
    assert common.strip_zone("192.0.2.1") == "192.0.2.1"


def test_text_the_server_cannot_store_is_made_storable():
    assert common.cut("Tool\x00\x00", 255) == "Tool"
    assert common.cut("caf\u00e9 \ud800x", 255) == "caf\u00e9 ?x"  # a lone surrogate from a broken registry value
    assert common.cut("x" * 300, 255) == "x" * 255
    assert common.cut(None) == ""


def test_macs_are_normalized_and_unusable_ones_dropped():
    assert common.normalized_mac("AA-BB-CC-DD-EE-0F") == "aa:bb:cc:dd:ee:0f"
    assert common.normalized_mac("00:00:00:00:00:00") == ""
    assert common.normalized_mac("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:de") == ""  # InfiniBand
    assert common.normalized_mac(None) == ""


# ---- metrics ----------------------------------------------------------------------------------------------------


def test_a_metrics_sample_is_cheap_and_within_the_servers_ranges():
    sampler = collectors.MetricsSampler()
    time.sleep(0.1)
    started = time.perf_counter()
    sample = sampler.sample()
    elapsed = time.perf_counter() - started

    assert elapsed < 0.05
    assert set(sample) == {
        "cpuPercent",
        "ramPercent",
        "ramUsedMb",
        "diskPercent",
        "diskUsedGb",
        "networkInBytes",
        "networkOutBytes",
        "processCount",
    }
    assert 0 <= sample["cpuPercent"] <= 100 and 0 <= sample["ramPercent"] <= 100 and 0 <= sample["diskPercent"] <= 100
    assert sample["ramUsedMb"] <= psutil.virtual_memory().total // 2**20
    assert abs(sample["processCount"] - len(psutil.pids())) < 20
    assert abs(sample["diskUsedGb"] - psutil.disk_usage("/").used / 2**30) < 0.5
    assert sample["networkInBytes"] >= 0 and sample["networkOutBytes"] >= 0


def test_network_bytes_are_the_traffic_since_the_previous_sample_not_the_counters_since_boot():
    interfaces = [name for name, stats in psutil.net_if_stats().items() if name not in common.loopback_interfaces()]
    if not interfaces:
        pytest.skip("no network interface but loopback on this machine")

    def totals() -> tuple[int, int]:
        counters = psutil.net_io_counters(pernic=True)
        return (
            sum(c.bytes_recv for name, c in counters.items() if name not in common.loopback_interfaces()),
            sum(c.bytes_sent for name, c in counters.items() if name not in common.loopback_interfaces()),
        )

    sampler = collectors.MetricsSampler()
    first = sampler.sample()
    before = totals()
    time.sleep(0.2)
    after = totals()
    second = sampler.sample()
    since_boot = totals()

    # Whatever moved between the two samples, and no more than what the counters moved around them.
    assert after[0] - before[0] <= second["networkInBytes"] <= since_boot[0] - before[0] + first["networkInBytes"]
    assert after[1] - before[1] <= second["networkOutBytes"] <= since_boot[1] - before[1] + first["networkOutBytes"]
    assert second["networkInBytes"] < since_boot[0] or since_boot[0] == 0


def test_a_counter_that_went_down_counts_from_zero():
    sampler = collectors.MetricsSampler()
    sampler._net_counters = {"eth-gone": (10**12, 10**12), **{n: (10**15, 10**15) for n in sampler._net_counters}}

    counters = psutil.net_io_counters(pernic=True)
    sample = sampler.sample()

    current = [c for name, c in counters.items() if name not in common.loopback_interfaces()]
    assert sample["networkInBytes"] >= sum(c.bytes_recv for c in current)  # the restarted counters' whole values
    assert sample["networkInBytes"] < 10**12  # never a negative delta turned into a huge number


def test_cpu_percent_is_the_average_since_the_previous_sample_whichever_thread_samples():
    sampler = collectors.MetricsSampler()
    psutil.cpu_percent(interval=None)
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:  # one core busy for the whole interval
        pass
    samples: list[dict] = []
    sampling = threading.Thread(target=lambda: samples.append(sampler.sample()))
    sampling.start()
    sampling.join()
    psutil_says = psutil.cpu_percent(interval=None)

    assert samples[0]["cpuPercent"] >= 100 / psutil.cpu_count() * 0.5
    assert abs(samples[0]["cpuPercent"] - psutil_says) < 10  # psutil's own figure over the same interval


def test_busy_percent_counts_idle_and_iowait_as_idle():
    times = psutil.cpu_times()
    later = times._replace(user=times.user + 3, idle=times.idle + 5, iowait=getattr(times, "iowait", 0) + 2)
    expected = 30.0 if hasattr(times, "iowait") else 3 / 8 * 100
    assert common.busy_percent(times, later) == round(expected, 1)
    assert common.busy_percent(times, times) == 0.0


# ---- the inventory and its hash ---------------------------------------------------------------------------------


def test_collect_inventory_gives_the_kinds_that_apply_here_in_order():
    bodies = collectors.collect_inventory(LocalConfig(config_files=[]))
    assert list(bodies) == [kind for kind in collectors.INVENTORY_KINDS if kind != "registry-state"]
    json.dumps(bodies, allow_nan=False)  # all of it JSON as sent


def test_a_failing_collector_leaves_only_its_kind_out(monkeypatch, caplog):
    def broken() -> list[dict]:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(common, "disks", broken)
    bodies = collectors.collect_inventory(LocalConfig(config_files=[]), ["disks", "network"])
    assert list(bodies) == ["network"]
    assert "disks" in caplog.text


def test_the_content_hash_changes_with_the_content_and_not_with_collected_at():
    body = {
        "entries": [{"filePath": "/etc/x", "configKey": "a", "configValue": "1", "collectedAt": "2026-12-06T10:00:00Z"}]
    }
    later = {"entries": [{**body["entries"][0], "collectedAt": "2026-12-06T14:00:00Z"}]}
    changed = {"entries": [{**body["entries"][0], "configValue": "2"}]}
    reordered_keys = {"entries": [dict(reversed(list(body["entries"][0].items())))]}

    assert collectors.content_hash("config-state", body) == collectors.content_hash("config-state", later)
    assert collectors.content_hash("config-state", body) == collectors.content_hash("config-state", reordered_keys)
    assert collectors.content_hash("config-state", body) != collectors.content_hash("config-state", changed)
    assert len(collectors.content_hash("config-state", body)) == 64


def test_an_unchanged_inventory_hashes_the_same_when_collected_again():
    config = LocalConfig(config_files=[])
    first = collectors.collect_inventory(config, ["hardware", "software", "network"])
    second = collectors.collect_inventory(config, ["hardware", "software", "network"])
    for kind in first:
        assert collectors.content_hash(kind, first[kind]) == collectors.content_hash(kind, second[kind])


def test_a_full_inventory_takes_at_most_two_seconds():
    started = time.perf_counter()
    collectors.collect_inventory(LocalConfig())
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("kind", ["software", "connections"])
def test_lists_are_sorted_for_a_stable_order(kind):
    body = collectors.collect_inventory(LocalConfig(config_files=[]), [kind])[kind]
    (items,) = body.values()
    assert len(items) <= 10_000
    if kind == "software":
        keys = [(item["name"].lower(), item["name"], item["version"]) for item in items]
        assert keys == sorted(keys)
