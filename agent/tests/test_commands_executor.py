"""The command executor (rmm_agent.commands.CommandExecutor) over a real state directory: each command runs once,
its result reaches the outbox, running marks survive a stop and become results at the next start, the pool bounds
how many run at once, and power actions and updates run only when the local configuration allows them."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from rmm_agent import __version__
from rmm_agent.commands import (
    POWER_ACTIONS_DISABLED,
    UPDATES_DISABLED,
    CommandExecutor,
)
from rmm_agent.commands import executor as executor_module
from rmm_agent.config import LocalConfig
from rmm_agent.state import StateDir

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the scripts here are POSIX shell")


class Agent:
    """A CommandExecutor over a real state directory, driven the way the run loop drives it."""

    def __init__(self, tmp_path: Path, refresh_inventory=lambda: None, **config) -> None:
        self.state = StateDir(tmp_path / "state")
        self.woken = threading.Event()
        self.notified = 0
        self.executor = CommandExecutor(
            state=self.state,
            config=LocalConfig(**config),
            refresh_inventory=refresh_inventory,
            on_result=self.on_result,
        )

    def on_result(self) -> None:
        self.notified += 1
        self.woken.set()

    def submit(self, command_type: str, payload: dict | None = None, command_id: str | None = None) -> str:
        command_id = command_id or str(uuid.uuid4())
        self.executor.submit({"id": command_id, "type": command_type, "payload": payload or {}})
        return command_id

    def result(self, command_id: str, wait: float = 10.0) -> dict:
        deadline = time.monotonic() + wait
        while command_id not in self.state.outbox:
            assert time.monotonic() < deadline, "no result in time"
            self.woken.wait(0.05)
            self.woken.clear()
        return self.state.outbox.pending()[command_id]

    def settle(self, wait: float = 5.0) -> None:
        """Wait until every accepted command has finished (its result stored, its mark off, the loop woken)."""
        deadline = time.monotonic() + wait
        while self.executor.running_count() and time.monotonic() < deadline:
            time.sleep(0.01)

    def run(self, command_type: str, payload: dict | None = None) -> dict:
        return self.result(self.submit(command_type, payload))


def sh(content: str, timeout: int = 10) -> dict:
    return {"language": "sh", "content": content, "timeoutSeconds": timeout}


@pytest.fixture
def agent(tmp_path):
    agent = Agent(tmp_path)
    yield agent
    agent.executor.shutdown(timeout=5)


# once and only once -------------------------------------------------------------------------------------------------


def test_the_same_command_submitted_twice_runs_once(agent, tmp_path):
    ran = tmp_path / "ran"
    command_id = str(uuid.uuid4())
    payload = sh(f"sleep 0.3; echo x >> '{ran}'")

    agent.submit("script", payload, command_id)
    agent.submit("script", payload, command_id)  # while it runs
    result = agent.result(command_id)
    agent.submit("script", payload, command_id)  # while its result waits in the outbox
    time.sleep(0.5)

    assert result["status"] == "completed"
    assert ran.read_text() == "x\n"
    assert agent.executor.running_count() == 0


def test_a_result_goes_to_the_outbox_and_the_running_mark_is_set_meanwhile(agent):
    command_id = agent.submit("script", sh("sleep 1"))

    assert agent.executor.running_count() == 1
    assert agent.state.running()[command_id]["type"] == "script"
    assert command_id not in agent.state.outbox

    result = agent.result(command_id)
    # The result is in the outbox before the mark comes off and the loop is woken: wait for those two.
    agent.settle()

    assert result["status"] == "completed"
    assert result["exitCode"] == 0
    assert agent.state.running() == {}
    assert agent.executor.running_count() == 0
    assert agent.notified == 1


def test_a_command_without_a_uuid_is_not_taken(agent):
    agent.executor.submit({"id": "../../etc/passwd", "type": "script", "payload": sh("echo")})
    agent.executor.submit({"type": "script", "payload": sh("echo")})

    assert agent.executor.running_count() == 0
    assert agent.state.running() == {}
    assert len(agent.state.outbox) == 0


def test_max_concurrent_commands_bounds_how_many_run_at_once(tmp_path):
    agent = Agent(tmp_path, max_concurrent_commands=2)
    started_at = tmp_path / "started"
    try:
        ids = [
            agent.submit("script", sh(f"date +%s.%N >> '{started_at}'; sleep 1; date +%s.%N >> '{started_at}.end'"))
            for _ in range(3)
        ]
        assert agent.executor.running_count() == 3  # accepted: two running, one waiting for a slot
        results = [agent.result(command_id) for command_id in ids]
    finally:
        agent.executor.shutdown(timeout=5)

    assert [result["status"] for result in results] == ["completed"] * 3
    starts = sorted(float(line) for line in started_at.read_text().split())
    ends = sorted(float(line) for line in Path(f"{started_at}.end").read_text().split())
    assert starts[1] - starts[0] < 0.8  # the first two together (one after the other, they would be 1 s apart)
    assert starts[2] >= ends[0] - 0.05  # the third once one of them ended


def test_a_failing_on_result_does_not_lose_the_result(tmp_path):
    state = StateDir(tmp_path / "state")

    def on_result():
        raise RuntimeError("the loop is gone")

    executor = CommandExecutor(state=state, config=LocalConfig(), refresh_inventory=lambda: None, on_result=on_result)
    command_id = str(uuid.uuid4())
    executor.submit({"id": command_id, "type": "script", "payload": sh("echo kept")})
    executor.shutdown(timeout=5)

    assert state.outbox.pending()[command_id]["stdout"] == "kept\n"
    assert state.running() == {}


# after a stop -----------------------------------------------------------------------------------------------------


def test_recover_reports_a_command_that_was_running_when_the_agent_stopped(tmp_path):
    state = StateDir(tmp_path / "state")
    interrupted, finished = str(uuid.uuid4()), str(uuid.uuid4())
    state.mark_running(interrupted, {"id": interrupted, "type": "script", "payload": sh("sleep 60")})
    # Stopped after the result was stored and before the mark came off: the stored result stands.
    state.mark_running(finished, {"id": finished, "type": "script", "payload": sh("echo")})
    state.outbox.put(
        finished, {"status": "completed", "exitCode": 0, "stdout": "\n", "stderr": "", "durationMs": 5, "error": None}
    )

    agent = Agent(tmp_path)
    agent.executor.recover()

    pending = agent.state.outbox.pending()
    assert pending[interrupted]["status"] == "failed"
    assert pending[interrupted]["exitCode"] is None
    assert pending[interrupted]["error"] == "the agent stopped while the command ran"
    assert pending[finished]["status"] == "completed"
    assert agent.state.running() == {}
    assert agent.notified == 1

    # The server may hand out the interrupted command again: its result is waiting, it is not run again.
    agent.submit("script", sh("sleep 60"), interrupted)
    assert agent.executor.running_count() == 0


def test_recover_reports_an_update_to_the_running_version_as_done(tmp_path):
    state = StateDir(tmp_path / "state")
    command_id = str(uuid.uuid4())
    state.mark_running(command_id, {"id": command_id, "type": "update", "payload": {"version": __version__}})

    agent = Agent(tmp_path)
    agent.executor.recover()

    result = agent.state.outbox.pending()[command_id]
    assert result["status"] == "completed"
    assert __version__ in result["stdout"]


def test_shutdown_kills_running_commands_and_reports_queued_ones_as_not_started(tmp_path):
    agent = Agent(tmp_path, max_concurrent_commands=1)
    begun = tmp_path / "begun"
    running = agent.submit("script", sh(f"echo begun; touch '{begun}'; sleep 30"))
    queued = agent.submit("script", sh("echo never"))
    deadline = time.monotonic() + 5
    while not begun.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)

    started = time.monotonic()
    agent.executor.shutdown(timeout=0.5)
    elapsed = time.monotonic() - started

    assert elapsed < 3
    pending = agent.state.outbox.pending()
    assert pending[queued]["status"] == "failed"
    assert pending[queued]["error"] == "the agent stopped before the command started"
    assert pending[running]["status"] == "failed"
    assert pending[running]["error"].startswith("the agent stopped while the command ran (killed after")
    assert pending[running]["stdout"] == "begun\n"
    assert agent.state.running() == {}
    # Stopped: nothing more is taken.
    agent.submit("script", sh("echo"))
    assert len(agent.state.outbox) == 2


# the script's end -------------------------------------------------------------------------------------------------


def test_a_script_past_its_timeout_is_reported_as_timeout(agent):
    result = agent.run("script", sh("echo before; sleep 30", timeout=1))

    assert result["status"] == "timeout"
    assert result["exitCode"] is None
    assert result["error"] == "killed after 1 s"
    assert result["stdout"] == "before\n"
    assert 900 <= result["durationMs"] < 3000


def test_a_script_killed_by_a_signal_is_completed_with_the_signal_named(agent):
    result = agent.run("script", sh("kill -KILL $$"))

    assert result["status"] == "completed"
    assert result["exitCode"] == -9
    assert result["error"] == "terminated by SIGKILL"


# the other command types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["reboot", "shutdown"])
def test_power_actions_are_refused_by_default(agent, action, monkeypatch, tmp_path):
    witness = tmp_path / "powered"
    monkeypatch.setitem(executor_module.POWER_COMMANDS, action, ["touch", str(witness)])

    result = agent.run(action)

    assert result["status"] == "failed"
    assert result["error"] == POWER_ACTIONS_DISABLED
    assert not witness.exists()


@pytest.mark.parametrize("action", ["reboot", "shutdown"])
def test_power_actions_run_the_scheduling_command_when_allowed(tmp_path, monkeypatch, action):
    # The harmless stand-in for `shutdown -r +1`: a program that says what it was asked and succeeds.
    monkeypatch.setitem(executor_module.POWER_COMMANDS, action, ["sh", "-c", f"echo {action} scheduled"])
    agent = Agent(tmp_path, allow_power_actions=True)
    try:
        result = agent.run(action)
    finally:
        agent.executor.shutdown(timeout=5)

    assert result["status"] == "completed"
    assert result["exitCode"] == 0
    assert result["stdout"] == f"{action} scheduled\n"


def test_a_power_action_the_os_refused_is_failed(tmp_path, monkeypatch):
    monkeypatch.setitem(executor_module.POWER_COMMANDS, "reboot", ["sh", "-c", "echo must be root >&2; exit 1"])
    agent = Agent(tmp_path, allow_power_actions=True)
    try:
        result = agent.run("reboot")
    finally:
        agent.executor.shutdown(timeout=5)

    assert result["status"] == "failed"
    assert result["exitCode"] == 1
    assert result["stderr"] == "must be root\n"
    assert result["error"] == "scheduling the reboot failed: exit code 1"


def test_the_real_power_commands_schedule_a_minute_ahead():
    commands = executor_module.POWER_COMMANDS
    assert commands["reboot"] == ["shutdown", "-r", "+1"]
    assert commands["shutdown"] == ["shutdown", "-h", "+1"]


def test_an_update_is_refused_without_an_update_command(agent):
    result = agent.run("update", {"version": "1.2.3"})

    assert result["status"] == "failed"
    assert result["error"] == UPDATES_DISABLED


def test_an_update_runs_the_configured_command_with_the_version(tmp_path):
    agent = Agent(tmp_path, update_command=["sh", "-c", 'echo "installing $0"', "rmm-agent=={version}"])
    try:
        result = agent.run("update", {"version": "1.2.3"})
        refused = agent.run("update", {"version": "1.2.3; rm -rf /"})
    finally:
        agent.executor.shutdown(timeout=5)

    assert result["status"] == "completed"
    assert result["exitCode"] == 0
    assert result["stdout"] == "installing rmm-agent==1.2.3\n"
    assert refused["status"] == "failed"
    assert refused["error"].startswith("not a version this agent installs")


def test_refresh_inventory_calls_the_callback(tmp_path):
    calls = []
    agent = Agent(tmp_path, refresh_inventory=lambda: calls.append(1))
    try:
        result = agent.run("refresh_inventory")
    finally:
        agent.executor.shutdown(timeout=5)

    assert calls == [1]
    assert result["status"] == "completed"


def test_a_failed_inventory_refresh_reports_the_reason(tmp_path):
    def refresh():
        raise RuntimeError("the server answered 503")

    agent = Agent(tmp_path, refresh_inventory=refresh)
    try:
        result = agent.run("refresh_inventory")
    finally:
        agent.executor.shutdown(timeout=5)

    assert result["status"] == "failed"
    assert result["error"] == "the server answered 503"


def test_an_unknown_command_type_is_failed(agent):
    result = agent.run("frobnicate", {})

    assert result["status"] == "failed"
    assert result["exitCode"] is None
    assert result["error"] == "unknown command type: frobnicate"
