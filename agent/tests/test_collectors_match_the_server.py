"""Every body the collectors build on this machine passes the server's own validation (devices/agent_api/schemas.py),
with the same functions the server's views call, so a mismatch between agent and server fails here.

The one agent test that imports server code: it runs under the root pytest, where Django is configured, and is
skipped elsewhere (``cd agent && pytest tests``)."""

from __future__ import annotations

import pytest

from rmm_agent import collectors
from rmm_agent.collectors import macos, windows
from rmm_agent.config import ConfigFile, LocalConfig

pytest.importorskip("django")


@pytest.fixture(scope="module")
def schemas():
    try:
        from devices.agent_api import schemas
    except Exception as exc:  # no server on the path, or Django not configured: not the server's suite
        pytest.skip(f"the server's schemas cannot be imported here: {exc}")
    return schemas


@pytest.fixture(scope="module")
def bodies(tmp_path_factory):
    config_file = tmp_path_factory.mktemp("conf") / "sshd_config"
    config_file.write_text("Port 22\nPermitRootLogin no\nPasswordAuthentication yes\n")
    config = LocalConfig(
        config_files=[ConfigFile(path=str(config_file), keys=["Port", "PermitRootLogin", "PasswordAuthentication"])]
    )
    return collectors.collect_inventory(config)


@pytest.mark.parametrize("kind", ["software", "disks", "network", "connections", "config-state"])
def test_each_list_kind_passes_the_servers_validation(schemas, bodies, kind):
    items = schemas.read_inventory_items(kind, bodies[kind])
    (sent,) = bodies[kind].values()
    assert len(items) == len(sent)
    if kind in ("software", "network", "config-state"):
        assert items  # this machine has packages, an interface and the config file above


def test_hardware_passes_the_servers_validation(schemas, bodies):
    hardware = schemas.validate(schemas.Hardware, bodies["hardware"])
    assert hardware.ram_total_mb == bodies["hardware"]["ramTotalMb"]


def test_the_enrollment_body_passes_the_servers_validation(schemas):
    body = {
        "enrollmentKey": "key",
        "agentVersion": "0.1.0",
        **collectors.facts(),
        "hardwareInfo": collectors.hardware(),
        "networkInfo": collectors.enrollment_interfaces(),
    }
    enrollment = schemas.validate(schemas.Enrollment, body)
    assert len(enrollment.network_info) == len(body["networkInfo"])


def test_a_heartbeat_with_facts_and_metrics_passes_the_servers_validation(schemas):
    sampler = collectors.MetricsSampler()
    body = {"agentVersion": "0.1.0", "status": "ok", **collectors.heartbeat_facts(), "metrics": sampler.sample()}
    heartbeat = schemas.validate(schemas.Heartbeat, body)
    assert heartbeat.metrics is not None


def test_recorded_macos_and_windows_software_passes_the_servers_validation(schemas, recorded):
    mac = macos.parse_applications((recorded / "macos" / "system_profiler-applications.json").read_text())
    win = windows.software_from_uninstall(windows_uninstall_entries(recorded))
    for software in (mac, win):
        assert len(schemas.read_inventory_items("software", {"software": software})) == len(software)


def test_recorded_registry_state_passes_the_servers_validation(schemas, recorded):
    import json

    keys = json.loads((recorded / "windows" / "registry-values.json").read_text())
    entries = []
    for path, values in keys.items():
        entries += windows.registry_entries(path, values, [], "2026-12-06T21:00:00Z")
    assert len(schemas.read_inventory_items("registry-state", {"entries": entries})) == len(entries)


@pytest.fixture
def recorded():
    from pathlib import Path

    return Path(__file__).parent / "recorded"


def windows_uninstall_entries(recorded) -> list[dict]:
    import json

    data = json.loads((recorded / "windows" / "uninstall.json").read_text())
    return [entry for view in data.values() for entry in view]
