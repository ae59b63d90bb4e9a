"""The run loop (rmm_agent.agent.Agent) against a local stand-in of the server: a real HTTP server in a thread whose
answers each test scripts, and a real state directory. The identity's heartbeat interval is one second, so a test
sees several heartbeats, a backoff and a drained backlog within a few seconds."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from standin import Answer, StandInServer, agent_api_when_all_is_well, closed_port

from rmm_agent.agent import Agent
from rmm_agent.config import LocalConfig
from rmm_agent.state import Identity, StateDir

AGENT_ID = "a" * 64
TOKEN = "rmm_" + "1" * 64
NEW_TOKEN = "rmm_" + "2" * 64
INTERVAL = 1.0


def agent_api(port: int = 0) -> StandInServer:
    """The server's agent API as a test scripts it (its `answer`), otherwise what the real server answers when all
    is well, a rotated token included."""
    server = StandInServer(port=port, fallback=agent_api_when_all_is_well)
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/rotate-token", 200, {"authToken": NEW_TOKEN})
    return server


def error(status: int, code: str, headers: dict | None = None) -> Answer:
    return status, {"error": code, "message": code.replace("_", " "), "fields": {}}, headers or {}


@pytest.fixture
def stand_in():
    with agent_api() as server:
        yield server


def enrolled_state(path: Path, port: int) -> StateDir:
    state = StateDir(path)
    state.save_identity(
        Identity(
            server=f"http://127.0.0.1:{port}",
            agent_id=AGENT_ID,
            device_id=str(uuid.uuid4()),
            org_id=str(uuid.uuid4()),
            site_id=str(uuid.uuid4()),
            auth_token=TOKEN,
            ca_file=None,
            config={"heartbeatIntervalSeconds": INTERVAL, "metricsCollectionIntervalSeconds": INTERVAL},
            enrolled_at="2026-12-06T20:00:00Z",
        )
    )
    return state


class Running:
    """An Agent's run() on a thread of its own, stopped (and its exit code kept) at the end."""

    def __init__(self, state: StateDir, config: LocalConfig | None = None) -> None:
        self.agent = Agent(state=state, config=config or LocalConfig(max_backoff_seconds=1))
        self.stop = threading.Event()
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.agent.run(self.stop)

    def finish(self, timeout: float = 15) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"
        return self.exit_code


@pytest.fixture
def running():
    started: list[Running] = []

    def start(state: StateDir, config: LocalConfig | None = None) -> Running:
        started.append(Running(state, config))
        return started[-1]

    yield start
    for run in started:
        run.finish()


def wait_for(condition: Callable[[], Any], timeout: float = 5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def parse(stamp: str) -> dt.datetime:
    assert stamp.endswith("Z"), stamp
    return dt.datetime.fromisoformat(stamp[:-1] + "+00:00")


# ---- heartbeats and the backlog ----


def test_the_first_heartbeat_goes_at_once_with_metrics_and_facts(tmp_path, stand_in, running):
    started = time.monotonic()
    running(enrolled_state(tmp_path, stand_in.port))
    first = wait_for(lambda: stand_in.heartbeats, what="a heartbeat")[0]
    assert first.at - started < 1.0
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.path == f"/api/v1/agents/{AGENT_ID}/heartbeat"
    assert first.body["status"] == "ok"
    assert first.body["agentVersion"]
    assert {"cpuPercent", "ramPercent", "processCount"} <= set(first.body["metrics"])
    assert "timestamp" not in first.body["metrics"]
    assert "metricsBacklog" not in first.body
    assert first.body["hostname"] == socket.gethostname()


def test_samples_taken_while_the_server_answers_503_arrive_as_backlog_with_the_times_they_were_taken(
    tmp_path, stand_in, running
):
    failing_until = time.monotonic() + 2.5
    stand_in.answer = lambda request: (
        error(503, "service_unavailable") if time.monotonic() < failing_until and "heartbeat" in request.path else None
    )
    state = enrolled_state(tmp_path, stand_in.port)
    began = dt.datetime.now(dt.timezone.utc)
    running(state)
    drained = wait_for(
        lambda: [r for r in stand_in.heartbeats if r.body.get("metricsBacklog") and r.at > failing_until],
        what="a heartbeat with the backlog",
    )[0]
    backlog = drained.body["metricsBacklog"]
    stamps = [parse(sample["timestamp"]) for sample in backlog]
    refused = [r.body["metrics"] for r in stand_in.heartbeats if r.at < drained.at and "metrics" in r.body]
    # Every sample the server refused is in the backlog, as are those taken during the backoff (never sent), each
    # once, in order, about an interval after the one before.
    without_times = [{k: v for k, v in sample.items() if k != "timestamp"} for sample in backlog]
    assert refused and all(metrics in without_times for metrics in refused)
    assert 2 <= len(backlog) <= 4
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(began <= stamp < drained.received_at for stamp in stamps), (began, stamps, drained.received_at)
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    assert all(0.85 * INTERVAL <= gap <= 1.15 * INTERVAL for gap in gaps), gaps
    assert {"cpuPercent", "ramPercent"} <= set(backlog[0])
    wait_for(lambda: len(state.backlog) == 0 and state.status().get("backlogSize") == 0, what="the backlog emptied")


def test_samples_are_stamped_by_the_servers_clock_when_this_machines_is_off(tmp_path, stand_in, running):
    stand_in.clock_skew = -3600.0  # this machine's clock an hour ahead: its own times would be "in the future"
    failing = threading.Event()
    stand_in.answer = lambda request: (
        error(503, "service_unavailable") if failing.is_set() and "heartbeat" in request.path else None
    )
    running(enrolled_state(tmp_path, stand_in.port))
    wait_for(lambda: stand_in.heartbeats, what="a first heartbeat, whose answer tells the server's time")
    failing.set()
    wait_for(lambda: len(stand_in.heartbeats) >= 3, what="heartbeats refused")
    failing.clear()
    drained = wait_for(
        lambda: [r for r in stand_in.heartbeats if r.body.get("metricsBacklog")], what="the backlog sent"
    )[0]

    stamps = [parse(sample["timestamp"]) for sample in drained.body["metricsBacklog"]]
    server_now = drained.received_at - dt.timedelta(hours=1)
    assert all(
        server_now - dt.timedelta(seconds=30) < stamp <= server_now + dt.timedelta(seconds=2) for stamp in stamps
    )


def test_samples_taken_while_nothing_listens_are_sent_when_the_server_is_back(tmp_path, running):
    port = closed_port()
    state = enrolled_state(tmp_path, port)
    run = running(state)
    status = wait_for(
        lambda: (status := state.status()).get("backlogSize", 0) >= 2 and status, what="samples kept meanwhile"
    )
    assert status["lastError"] and "reach" in status["lastError"]
    assert status["lastContactAt"] is None
    assert status["pid"] == os.getpid()
    kept = [sample["timestamp"] for sample in state.backlog.peek()]
    stand_in = agent_api(port)
    try:
        # The backoff's ceiling is max_backoff_seconds (1 s here): back within about a second.
        first = wait_for(lambda: stand_in.heartbeats, timeout=3, what="a heartbeat once the server is back")[0]
        sent = [sample["timestamp"] for sample in first.body.get("metricsBacklog", [])]
        assert sent[: len(kept)] == kept
        wait_for(lambda: len(state.backlog) == 0, what="the backlog emptied")
        wait_for(lambda: state.status().get("lastContactAt"), what="the contact in the status")
    finally:
        run.finish()
        stand_in.stop()


def test_a_day_of_backlog_drains_in_two_heartbeats(tmp_path, stand_in, running):
    state = enrolled_state(tmp_path, stand_in.port)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    for minute in range(1440):
        at = (start + dt.timedelta(minutes=minute)).isoformat(timespec="seconds").replace("+00:00", "Z")
        state.backlog.append({"timestamp": at, "cpuPercent": 1.0})
    running(state)
    wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=4, what="two heartbeats")
    first, second = stand_in.heartbeats[:2]
    assert len(first.body["metricsBacklog"]) == 1000
    assert len(second.body["metricsBacklog"]) >= 440
    assert second.at - first.at < INTERVAL * 1.5 + 0.5  # sent soon, not a full interval later
    wait_for(lambda: len(state.backlog) == 0, what="drained")


def test_retry_after_of_a_429_is_obeyed_and_its_sample_kept(tmp_path, stand_in, running):
    stand_in.answer = lambda request: (
        error(429, "too_many_attempts", {"Retry-After": "2"}) if len(stand_in.heartbeats) == 1 else None
    )
    running(enrolled_state(tmp_path, stand_in.port))
    wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=4, what="a heartbeat after the 429")
    refused, next_one = stand_in.heartbeats[:2]
    assert next_one.at - refused.at >= 2.0
    assert len(next_one.body["metricsBacklog"]) >= 1
    assert next_one.body["metricsBacklog"][0].get("cpuPercent") == refused.body["metrics"].get("cpuPercent")


def test_an_unreachable_server_is_tried_again_with_backoff_not_at_every_sample(tmp_path, stand_in, running):
    stand_in.answer = lambda request: error(502, "bad_gateway") if "heartbeat" in request.path else None
    config = LocalConfig(max_backoff_seconds=3)
    state = enrolled_state(tmp_path, stand_in.port)
    running(state, config)
    time.sleep(4.2)
    attempts = stand_in.heartbeats
    # Backoff ceilings 1, 2, 3, 3 s with full jitter (0.5 to 1 of it): at most 5 attempts in 4.2 s, at least 2.
    assert 2 <= len(attempts) <= 5, [r.at for r in attempts]
    # Samples keep being taken every interval during the backoff, into the backlog.
    assert len(state.backlog) >= 3


@pytest.mark.parametrize(
    ("status", "code", "said"),
    [(401, "invalid_token", "re-enroll with --force"), (403, "tenant_inactive", "tenant is inactive")],
)
def test_a_refusal_that_may_be_lifted_is_logged_and_tried_again_slowly(
    tmp_path, stand_in, running, caplog, status, code, said
):
    stand_in.answer = lambda request: error(status, code) if "heartbeat" in request.path else None
    state = enrolled_state(tmp_path, stand_in.port)
    with caplog.at_level("ERROR"):
        running(state, LocalConfig(max_backoff_seconds=2))
        wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=4, what="a second attempt")
    first, second = stand_in.heartbeats[:2]
    assert second.at - first.at >= 1.9  # the backoff's ceiling, without jitter
    assert said in caplog.text
    assert TOKEN not in caplog.text
    assert said in state.status()["lastError"]


# ---- token, configuration, decommissioning ----


def test_a_rotated_token_is_saved_before_it_is_used(tmp_path, stand_in, running):
    stand_in.answer = lambda request: (
        (200, {"commands": [], "configUpdate": None, "rotateToken": True}, {})
        if "heartbeat" in request.path and len(stand_in.heartbeats) == 1
        else None
    )
    state = enrolled_state(tmp_path, stand_in.port)
    running(state)
    wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=4, what="a heartbeat after the rotation")
    rotations = stand_in.of("/rotate-token")
    assert len(rotations) == 1
    assert rotations[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert state.identity().auth_token == NEW_TOKEN
    assert TOKEN not in "".join(p.read_text() for p in tmp_path.glob("*.json"))
    assert stand_in.heartbeats[1].headers["authorization"] == f"Bearer {NEW_TOKEN}"


def test_a_config_update_changes_the_interval_and_is_saved(tmp_path, stand_in, running):
    stand_in.answer = lambda request: (
        (200, {"commands": [], "configUpdate": {"heartbeatIntervalSeconds": 3}, "rotateToken": False}, {})
        if "heartbeat" in request.path and len(stand_in.heartbeats) == 1
        else None
    )
    state = enrolled_state(tmp_path, stand_in.port)
    running(state)
    wait_for(lambda: state.identity().config["heartbeatIntervalSeconds"] == 3, what="the new config saved")
    wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=4, what="a second heartbeat")
    first, second = stand_in.heartbeats[:2]
    assert second.at - first.at >= 3 * 0.9 - 0.05


def test_a_decommissioned_device_stops_the_agent_with_exit_code_4(tmp_path, stand_in):
    stand_in.answer = lambda request: error(403, "device_decommissioned")
    state = enrolled_state(tmp_path, stand_in.port)
    run = Running(state)
    run.thread.join(5)
    assert not run.thread.is_alive()
    assert run.exit_code == 4
    assert "decommissioned" in state.status()["lastError"]


def test_a_quarantined_device_keeps_heartbeating_without_keeping_samples(tmp_path, stand_in, running):
    stand_in.answer = lambda request: error(403, "device_quarantined")
    state = enrolled_state(tmp_path, stand_in.port)
    running(state)
    wait_for(lambda: len(stand_in.heartbeats) >= 2, timeout=3, what="heartbeats go on")
    assert len(state.backlog) == 0
    assert "quarantined" in state.status()["lastError"]


def test_without_an_identity_the_loop_exits_with_3(tmp_path):
    assert Agent(state=StateDir(tmp_path), config=LocalConfig()).run(threading.Event()) == 3


# ---- commands and their results ----


def test_a_command_from_a_heartbeat_runs_and_its_result_is_posted_until_acknowledged(tmp_path, stand_in, running):
    command_id = str(uuid.uuid4())
    script = {"language": "sh", "content": "echo from the loop", "timeoutSeconds": 10}
    attempts = []

    def answer(request):
        if "heartbeat" in request.path and len(stand_in.heartbeats) == 1:
            return (
                200,
                {"commands": [{"id": command_id, "type": "script", "payload": script}], "rotateToken": False},
                {},
            )
        if request.path.endswith("/result"):
            attempts.append(request)
            if len(attempts) == 1:
                return error(503, "service_unavailable")
        return None

    stand_in.answer = answer
    state = enrolled_state(tmp_path, stand_in.port)
    running(state)
    wait_for(lambda: len(attempts) >= 2, timeout=4.5, what="the result posted again after a 503")
    assert {a.path for a in attempts} == {f"/api/v1/agents/{AGENT_ID}/commands/{command_id}/result"}
    assert attempts[0].body == attempts[1].body
    assert attempts[1].body["stdout"] == "from the loop\n"
    assert attempts[1].body["exitCode"] == 0
    wait_for(lambda: len(state.outbox) == 0, what="the acknowledged result removed")
    time.sleep(INTERVAL * 1.2)  # a further heartbeat posts nothing more
    assert len(attempts) == 2


def test_a_refresh_inventory_command_uploads_every_kind_again_even_unchanged(tmp_path, stand_in, running):
    command_id = str(uuid.uuid4())
    uploaded_once = threading.Event()

    def answer(request):
        if "heartbeat" in request.path and uploaded_once.is_set():
            uploaded_once.clear()
            return 200, {"commands": [{"id": command_id, "type": "refresh_inventory", "payload": None}]}, {}
        return None

    stand_in.answer = answer
    state = enrolled_state(tmp_path, stand_in.port)
    run = running(state)
    wait_for(lambda: run.agent._inventory_thread and not run.agent._inventory_thread.is_alive(), what="first upload")
    first = {r.kind for r in stand_in.requests if r.method == "PUT"}
    uploaded_once.set()
    result = wait_for(lambda: stand_in.of(f"/{command_id}/result"), what="the refresh's result")[0]
    assert result.body["status"] == "completed", result.body
    again = [r.kind for r in stand_in.requests if r.method == "PUT"][len(first) :]
    assert set(again) == first  # every kind, though nothing changed
    assert run.finish() == 0


def test_results_the_server_has_settled_are_dropped_not_retried(tmp_path, stand_in, running):
    finished, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    state = enrolled_state(tmp_path, stand_in.port)
    body = {"status": "completed", "exitCode": 0, "stdout": "", "stderr": "", "durationMs": 5, "error": None}
    state.outbox.put(finished, body)
    state.outbox.put(unknown, body)
    stand_in.answer = lambda request: (
        error(409, "command_already_finished")
        if finished in request.path
        else error(404, "command_not_found")
        if unknown in request.path
        else None
    )
    running(state)
    wait_for(lambda: len(state.outbox) == 0, what="the outbox emptied")
    assert len(stand_in.of("/result")) == 2


# ---- inventory ----


def test_inventory_is_uploaded_after_the_first_heartbeat_and_not_again_unchanged(tmp_path, stand_in, running):
    state = enrolled_state(tmp_path, stand_in.port)
    run = running(state)
    wait_for(lambda: stand_in.of("/software", "PUT"), timeout=5, what="the software inventory")
    wait_for(lambda: not run.agent._inventory_thread.is_alive(), what="the first check done")
    first_heartbeat = stand_in.heartbeats[0]
    uploads = [r for r in stand_in.requests if r.method == "PUT"]
    assert all(upload.at > first_heartbeat.at for upload in uploads)
    kinds = [upload.kind for upload in uploads]
    assert {"hardware", "software", "disks", "network"} <= set(kinds)
    assert len(kinds) == len(set(kinds))
    assert state.inventory_hashes().keys() == set(kinds)
    run.finish()

    # Started again on the same state: what has not changed is not uploaded again.
    again = running(state)
    wait_for(lambda: len(stand_in.heartbeats) >= 2, what="the second run's heartbeat")
    wait_for(lambda: again.agent._inventory_thread is not None, what="the second run's check begins")
    wait_for(lambda: not again.agent._inventory_thread.is_alive(), what="the second run's check done")
    stable = [r.kind for r in stand_in.requests if r.method == "PUT" and r.kind in ("hardware", "software")]
    assert sorted(stable) == ["hardware", "software"]  # the first run's uploads only


def test_a_failed_upload_is_retried_and_the_heartbeat_says_warning_meanwhile(tmp_path, stand_in, running):
    stand_in.answer = lambda request: error(500, "server_error") if request.method == "PUT" else None
    state = enrolled_state(tmp_path, stand_in.port)
    run = running(state)
    wait_for(lambda: stand_in.of("/hardware", "PUT") or stand_in.of("/software", "PUT"), what="an upload tried")
    wait_for(lambda: not run.agent._inventory_thread.is_alive(), what="the check done")
    wait_for(
        lambda: any(r.body["status"] == "warning" for r in stand_in.heartbeats), timeout=3, what="a warning heartbeat"
    )
    assert state.inventory_hashes() == {}
