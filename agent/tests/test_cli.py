"""The `rmm-agent` command line, run as a real process against a local stand-in for the server's enroll endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standin import Request, StandInServer, agent_api_when_all_is_well, closed_port

from rmm_agent import __version__

TOKEN = "rmm_" + "3f" * 32
AGENT_ID = "7d0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
DEVICE_ID = "1e2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0"


def console_script() -> list[str]:
    """The installed `rmm-agent` next to this interpreter, else the module run by this interpreter."""
    script = Path(sys.executable).with_name("rmm-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rmm_agent.cli"]


def rmm_agent(*arguments: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "RMM_ENROLLMENT_KEY"}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - the agent's own console script with the test's arguments
        [*console_script(), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


ENROLL_PATH = "/api/v1/agents/enroll"
ENROLLED = {
    "agentId": AGENT_ID,
    "deviceId": DEVICE_ID,
    "authToken": TOKEN,
    "orgId": "org-1",
    "siteId": "site-1",
    "config": {"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30},
}


@pytest.fixture
def server():
    """Answers enrollment with ENROLLED, heartbeats with no commands and inventory uploads with 204."""
    with StandInServer(fallback=agent_api_when_all_is_well) as stand_in:
        stand_in.route("POST", ENROLL_PATH, 201, ENROLLED)
        yield stand_in


def enrollment_bodies(server: StandInServer) -> list[dict]:
    """The bodies of the enrollment requests the server received, in order."""
    return [request.body for request in server.of(ENROLL_PATH)]


def heartbeats(server: StandInServer) -> list[Request]:
    """The heartbeats of the enrolled agent (AGENT_ID) the server received."""
    return server.of(f"/api/v1/agents/{AGENT_ID}/heartbeat")


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


def enroll(server: StandInServer, state_dir: Path, *extra: str, key: str = "key-1") -> subprocess.CompletedProcess:
    return rmm_agent("--state-dir", str(state_dir), "enroll", "--server", server.url + "/", "--key", key, *extra)


def test_version_prints_the_version():
    completed = rmm_agent("version")

    assert completed.returncode == 0
    assert completed.stdout.startswith(f"rmm-agent {__version__} ")


def test_help_documents_the_exit_codes():
    completed = rmm_agent("--help")

    assert completed.returncode == 0
    assert "3  not enrolled" in completed.stdout
    assert "4  the server says this device is decommissioned" in completed.stdout


def test_status_before_enrollment_exits_3(state_dir):
    completed = rmm_agent("status", "--state-dir", str(state_dir))

    assert completed.returncode == 3
    assert "not enrolled" in completed.stdout
    assert not state_dir.exists()  # looking does not create the state directory


def test_status_json_before_enrollment_says_not_enrolled(state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "status", "--json")

    assert completed.returncode == 3
    assert json.loads(completed.stdout) == {"enrolled": False, "stateDir": str(state_dir)}


def test_enroll_sends_the_machines_facts_and_saves_the_identity_privately(server, state_dir):
    completed = enroll(server, state_dir)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"enrolled as device {DEVICE_ID} (agent {AGENT_ID}) at {server.url}"
    (body,) = enrollment_bodies(server)
    assert body["enrollmentKey"] == "key-1"
    assert body["hostname"] == socket.gethostname()
    assert body["osType"] == "linux"
    assert body["agentVersion"] == __version__
    assert body["architecture"]
    assert isinstance(body["hardwareInfo"], dict)
    assert isinstance(body["networkInfo"], list)

    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    identity_file = state_dir / "identity.json"
    assert stat.S_IMODE(identity_file.stat().st_mode) == 0o600
    identity = json.loads(identity_file.read_text())
    assert identity["server"] == server.url  # without the trailing slash it was given with
    assert identity["auth_token"] == TOKEN
    assert identity["config"] == {"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30}
    files = [path for path in state_dir.rglob("*") if path.is_file()]
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}


def test_status_after_enrollment_shows_the_device_and_not_the_token(server, state_dir):
    assert enroll(server, state_dir).returncode == 0

    text = rmm_agent("--state-dir", str(state_dir), "status")
    as_json = rmm_agent("--state-dir", str(state_dir), "status", "--json")

    assert text.returncode == 0
    assert DEVICE_ID in text.stdout
    assert AGENT_ID in text.stdout
    assert "last contact:" in text.stdout
    assert "rmm_3f3f…" in text.stdout
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert (report["deviceId"], report["server"], report["backlogSize"]) == (DEVICE_ID, server.url, 0)
    assert report["agentRunning"] is False
    for output in (text.stdout, text.stderr, as_json.stdout):
        assert TOKEN not in output
        assert TOKEN[4:24] not in output


def test_enrolling_again_needs_force(server, state_dir):
    assert enroll(server, state_dir).returncode == 0

    again = enroll(server, state_dir)

    assert again.returncode == 1
    assert f"already enrolled as device {DEVICE_ID}" in again.stderr
    assert "--force" in again.stderr
    assert len(enrollment_bodies(server)) == 1  # refused before asking the server

    server.route("POST", ENROLL_PATH, 201, {**ENROLLED, "deviceId": "another-device"})
    forced = enroll(server, state_dir, "--force")

    assert forced.returncode == 0, forced.stderr
    assert json.loads((state_dir / "identity.json").read_text())["device_id"] == "another-device"


def test_a_refused_key_exits_1_with_the_servers_message(server, state_dir):
    server.route(
        "POST",
        ENROLL_PATH,
        401,
        {
            "error": "enrollment_key_expired",
            "message": "This enrollment key expired at 2026-11-20T10:00:00Z.",
            "fields": {},
        },
    )

    completed = enroll(server, state_dir, key="old-key")

    assert completed.returncode == 1
    assert "This enrollment key expired at 2026-11-20T10:00:00Z." in completed.stderr
    assert "enrollment_key_expired" in completed.stderr
    assert not (state_dir / "identity.json").exists()


def test_the_key_can_come_from_stdin(server, state_dir):
    completed = rmm_agent(
        "--state-dir", str(state_dir), "enroll", "--server", server.url, "--key", "-", stdin="secret-key-from-stdin\n"
    )

    assert completed.returncode == 0, completed.stderr
    assert enrollment_bodies(server)[0]["enrollmentKey"] == "secret-key-from-stdin"


def test_the_key_can_come_from_the_environment(server, state_dir):
    completed = rmm_agent(
        "--state-dir", str(state_dir), "enroll", "--server", server.url, env={"RMM_ENROLLMENT_KEY": "key-from-env"}
    )

    assert completed.returncode == 0, completed.stderr
    assert enrollment_bodies(server)[0]["enrollmentKey"] == "key-from-env"


def test_enroll_without_a_key_is_a_usage_error(server, state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "enroll", "--server", server.url)

    assert completed.returncode == 2
    assert "an enrollment key is needed" in completed.stderr
    assert enrollment_bodies(server) == []


def test_plain_http_to_another_machine_is_refused(state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "enroll", "--server", "http://example.com", "--key", "k")

    assert completed.returncode == 2
    assert "plain http is allowed only to this machine" in completed.stderr


def test_an_unreachable_server_exits_1_saying_why(state_dir):
    completed = rmm_agent(
        "--state-dir", str(state_dir), "enroll", "--server", f"http://127.0.0.1:{closed_port()}", "--key", "k"
    )

    assert completed.returncode == 1
    assert "cannot reach" in completed.stderr
    assert "refused" in completed.stderr.lower()


def test_run_before_enrollment_exits_3(state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "run")

    assert completed.returncode == 3
    assert "not enrolled" in completed.stderr


def test_run_heartbeats_refuses_a_second_agent_and_stops_cleanly_on_sigterm(server, state_dir):
    assert enroll(server, state_dir).returncode == 0
    agent = subprocess.Popen(  # noqa: S603 - the agent's own console script
        [*console_script(), "--state-dir", str(state_dir), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not heartbeats(server) and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(heartbeats(server)) >= 1, agent.stderr.read() if agent.poll() is not None else "no heartbeat in 10 s"

        second = rmm_agent("--state-dir", str(state_dir), "run")

        assert second.returncode == 1
        assert "another rmm-agent is already running" in second.stderr

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    log = agent.stderr.read()
    assert "INFO " in log  # the log format: "LEVEL logger: message"
    assert TOKEN not in log
    assert TOKEN[4:24] not in log


def test_run_with_an_invalid_config_exits_2_naming_the_key(state_dir, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"allowPowerActions": "yes"}')

    completed = rmm_agent("--state-dir", str(state_dir), "--config", str(config), "run")

    assert completed.returncode == 2
    assert f"{config}: allowPowerActions must be true or false" in completed.stderr


def test_inventory_print_kind_disks_prints_the_disks_json(state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "inventory", "--print", "--kind", "disks")

    assert completed.returncode == 0, completed.stderr
    bodies = json.loads(completed.stdout)
    assert list(bodies) == ["disks"]
    assert isinstance(bodies["disks"]["disks"], list)
    assert any(disk["mountPoint"] == "/" for disk in bodies["disks"]["disks"])


def test_inventory_refuses_an_unknown_kind(state_dir):
    completed = rmm_agent("--state-dir", str(state_dir), "inventory", "--print", "--kind", "printers")

    assert completed.returncode == 2
    assert "'printers' is not one of" in completed.stderr
