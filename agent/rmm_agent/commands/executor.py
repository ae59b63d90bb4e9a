"""CommandExecutor: runs the commands the server hands out and keeps their results until the server has them.

A command is marked running in the state directory as soon as it is accepted, and its result is put in the outbox
before the mark is cleared: an agent stopped at any point reports every accepted command once (``recover``), and
never runs one twice (an id already running or already in the outbox is ignored).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rmm_agent import __version__
from rmm_agent.commands.process import ProcessOutcome, ProcessStartError, run_process
from rmm_agent.commands.scripts import (
    MissingInterpreter,
    PayloadError,
    interpreter_command,
    parse_script_payload,
    write_script,
)

if TYPE_CHECKING:
    from rmm_agent.config import LocalConfig
    from rmm_agent.state import StateDir

logger = logging.getLogger(__name__)

# The OS commands that schedule a reboot or a shutdown, a minute ahead so the result is posted first. Tests point
# them at a harmless program (this is the one place the agent asks the OS to power off).
if sys.platform == "win32":
    POWER_COMMANDS = {"reboot": ["shutdown", "/r", "/t", "60"], "shutdown": ["shutdown", "/s", "/t", "60"]}
else:
    POWER_COMMANDS = {"reboot": ["shutdown", "-r", "+1"], "shutdown": ["shutdown", "-h", "+1"]}
POWER_COMMAND_TIMEOUT_SECONDS = 60
UPDATE_TIMEOUT_SECONDS = 15 * 60

POWER_ACTIONS_DISABLED = "power actions are disabled in this agent's configuration (allowPowerActions)"
UPDATES_DISABLED = "updates are installed by the package manager on this machine (no updateCommand configured)"
STOPPED_WHILE_RUNNING = "the agent stopped while the command ran"
STOPPED_BEFORE_START = "the agent stopped before the command started"

# A command id names files in the state directory (the outbox, the running marks): the server's ids are UUIDs, and
# the state directory takes nothing else.
_COMMAND_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The version an `update` command installs reaches the configured command's argv, which may be a shell's: only the
# characters of version numbers (PEP 440, Debian, RPM) get there.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_-]{0,63}")
# How long shutdown() waits for killed commands to write their results.
_KILLED_RESULT_SECONDS = 5.0


def command_result(
    status: str,
    *,
    duration_ms: int,
    exit_code: int | None = None,
    stdout: str = "",
    stderr: str = "",
    error: str | None = None,
) -> dict:
    """A result body as agent-api.md writes it."""
    return {
        "status": status,
        "exitCode": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "durationMs": duration_ms,
        "error": error,
    }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def outcome_result(outcome: ProcessOutcome, *, timeout_seconds: float) -> dict:
    """The result of a program that ran: ``completed`` whatever its exit code (the server judges success by the
    script's success exit codes), ``timeout`` when it was killed at its timeout, ``failed`` when the agent stopped."""
    status, exit_code, error = "completed", outcome.exit_code, None
    if outcome.timed_out:
        status, error = "timeout", f"killed after {timeout_seconds:g} s"
    elif outcome.aborted:
        status, error = "failed", f"{STOPPED_WHILE_RUNNING} (killed after {outcome.duration_ms / 1000:.0f} s)"
    elif exit_code is not None and exit_code < 0:
        # POSIX: killed by a signal from outside the agent (an OOM kill, a technician's kill -9).
        error = f"terminated by {_signal_name(-exit_code)}"
    return command_result(
        status,
        duration_ms=outcome.duration_ms,
        exit_code=exit_code,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        error=error,
    )


class CommandExecutor:
    """Runs commands in a bounded pool of threads and puts their results in the state's outbox.

    ``refresh_inventory`` collects and uploads every inventory kind (raising on failure); ``on_result`` is called
    after each result is in the outbox, to wake the loop that posts results.
    """

    def __init__(
        self,
        *,
        state: StateDir,
        config: LocalConfig,
        refresh_inventory: Callable[[], None],
        on_result: Callable[[], None],
    ) -> None:
        self._state = state
        self._config = config
        self._refresh_inventory = refresh_inventory
        self._on_result = on_result
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, config.max_concurrent_commands), thread_name_prefix="rmm-command"
        )
        self._lock = threading.Lock()
        self._accepted: dict[str, Future] = {}
        self._closed = False
        # Set by shutdown() when its time is up: the commands still running are killed.
        self._abort = threading.Event()

    # ---- the loop's side ----------------------------------------------------------------------------------------

    def submit(self, command: dict) -> None:
        """Accept a command ``{"id", "type", "payload"}`` from the server and return at once.

        An id already accepted and not finished, or whose result is still in the outbox, is ignored, so a command
        handed over twice (by a heartbeat and a claim, or by a server that did not see the result) runs once.
        """
        command_id = command.get("id") if isinstance(command, dict) else None
        if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
            logger.warning("ignored a command with an unusable id: %.40r", command_id)
            return
        with self._lock:
            if self._closed:
                logger.info("command %s not taken: the agent is stopping", command_id)
                return
            if command_id in self._accepted or command_id in self._state.outbox:
                logger.info("command %s ignored: it was received before", command_id)
                return
            try:
                self._state.mark_running(command_id, command)
            except OSError:
                # Not run: a command that could not be marked would be lost to a restart without a trace. The
                # server times it out instead.
                logger.exception("command %s not taken: its running mark could not be written", command_id)
                return
            self._accepted[command_id] = self._pool.submit(self._run, command_id, command)
        logger.info("command %s accepted: %s", command_id, command.get("type"))

    def recover(self) -> None:
        """At start: a command marked running whose result never reached the outbox gets a ``failed`` result.

        An ``update`` to the version now running is the exception: installing it restarted the agent, so it
        succeeded.
        """
        recovered = 0
        for command_id, command in self._state.running().items():
            if command_id not in self._state.outbox:
                self._state.outbox.put(command_id, _recovered_result(command))
                recovered += 1
            self._state.clear_running(command_id)
        if recovered:
            logger.warning("%d command(s) were running when the agent stopped: their results are queued", recovered)
            self._notify()

    def running_count(self) -> int:
        """How many commands were accepted and have no result yet (queued for a free slot included)."""
        with self._lock:
            return len(self._accepted)

    def shutdown(self, timeout: float) -> None:
        """Take no more commands, report the queued ones as not run, and wait up to ``timeout`` seconds for the
        running ones; those still running then are killed and reported as stopped."""
        with self._lock:
            self._closed = True
            accepted = dict(self._accepted)
        cancelled = 0
        for command_id, future in accepted.items():
            if future.cancel():
                self._finish(command_id, command_result("failed", duration_ms=0, error=STOPPED_BEFORE_START))
                with self._lock:
                    self._accepted.pop(command_id, None)
                cancelled += 1
        running = [future for future in accepted.values() if not future.cancelled()]
        _, still_running = wait(running, timeout=max(0.0, timeout))
        if still_running:
            logger.warning("killing %d command(s) still running at the agent's stop", len(still_running))
            self._abort.set()
            wait(still_running, timeout=_KILLED_RESULT_SECONDS)
        self._pool.shutdown(wait=False)
        if cancelled:
            self._notify()

    # ---- running one command ------------------------------------------------------------------------------------

    def _run(self, command_id: str, command: dict) -> None:
        started = time.monotonic()
        try:
            result = self._execute(command)
        except Exception as exc:
            logger.exception("command %s failed in the agent", command_id)
            duration_ms = int((time.monotonic() - started) * 1000)
            result = command_result("failed", duration_ms=duration_ms, error=f"the agent could not run it: {exc}")
        status, exit_code, duration_ms = result["status"], result["exitCode"], result["durationMs"]
        logger.info("command %s %s (exit code %s, %d ms)", command_id, status, exit_code, duration_ms)
        try:
            self._finish(command_id, result)
            self._notify()
        finally:
            # Counted as running until the loop was woken: running_count() == 0 means every result was announced.
            with self._lock:
                self._accepted.pop(command_id, None)

    def _finish(self, command_id: str, result: dict) -> None:
        try:
            # The result goes in before the mark comes off: a stop between the two leaves a result, not a loss.
            self._state.outbox.put(command_id, result)
            self._state.clear_running(command_id)
        except Exception:
            # Left marked running: the next start reports it as failed.
            logger.exception("the result of command %s could not be stored", command_id)

    def _notify(self) -> None:
        try:
            self._on_result()
        except Exception:
            logger.exception("on_result raised")

    def _execute(self, command: dict) -> dict:
        command_type = command.get("type")
        payload = command.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            return command_result("failed", duration_ms=0, error="the command's payload is not an object")
        if command_type == "script":
            return self._run_script(payload)
        if command_type in ("reboot", "shutdown"):
            return self._run_power_action(command_type)
        if command_type == "update":
            return self._run_update(payload)
        if command_type == "refresh_inventory":
            return self._run_refresh_inventory()
        return command_result("failed", duration_ms=0, error=f"unknown command type: {command_type}")

    def _workdir(self) -> Path:
        configured = self._config.command_workdir
        return Path(configured) if configured else self._state.path / "work"

    def _run_program(self, argv: list[str], *, env: dict[str, str], timeout_seconds: float) -> dict:
        workdir = self._workdir()
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            outcome = run_process(argv, cwd=str(workdir), env=env, timeout_seconds=timeout_seconds, abort=self._abort)
        except ProcessStartError as exc:
            return command_result("failed", duration_ms=0, error=str(exc))
        return outcome_result(outcome, timeout_seconds=timeout_seconds)

    def _run_script(self, payload: dict) -> dict:
        try:
            script = parse_script_payload(payload)
            interpreter = interpreter_command(script.language)
        except (PayloadError, MissingInterpreter) as exc:
            return command_result("failed", duration_ms=0, error=str(exc))
        path = write_script(self._workdir(), script.language, script.content)
        try:
            env = dict(os.environ)
            env.update(script.env)
            return self._run_program([*interpreter, str(path)], env=env, timeout_seconds=script.timeout_seconds)
        finally:
            try:
                path.unlink()
            except OSError as exc:  # Windows: a process the script started may still hold the file open
                logger.warning("could not remove the script file %s: %s", path, exc)

    def _run_power_action(self, action: str) -> dict:
        if not self._config.allow_power_actions:
            return command_result("failed", duration_ms=0, error=POWER_ACTIONS_DISABLED)
        result = self._run_program(
            list(POWER_COMMANDS[action]), env=dict(os.environ), timeout_seconds=POWER_COMMAND_TIMEOUT_SECONDS
        )
        return _judged_by_exit_code(result, f"scheduling the {action}")

    def _run_update(self, payload: dict) -> dict:
        update_command = self._config.update_command
        if not update_command:
            return command_result("failed", duration_ms=0, error=UPDATES_DISABLED)
        version = payload.get("version")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            return command_result("failed", duration_ms=0, error=f"not a version this agent installs: {version!r}")
        argv = [part.replace("{version}", version) for part in update_command]
        result = self._run_program(argv, env=dict(os.environ), timeout_seconds=UPDATE_TIMEOUT_SECONDS)
        return _judged_by_exit_code(result, f"the update to {version}")

    def _run_refresh_inventory(self) -> dict:
        started = time.monotonic()
        try:
            self._refresh_inventory()
        except Exception as exc:
            duration_ms = int((time.monotonic() - started) * 1000)
            return command_result("failed", duration_ms=duration_ms, error=str(exc) or type(exc).__name__)
        duration_ms = int((time.monotonic() - started) * 1000)
        return command_result("completed", duration_ms=duration_ms, stdout="inventory collected and uploaded\n")


def _judged_by_exit_code(result: dict, what: str) -> dict:
    """A power action or an update has no success exit codes on the server: the agent judges it, and a non-zero
    exit is a failure the technician sees as one."""
    if result["status"] == "completed" and result["exitCode"] != 0:
        result["status"] = "failed"
        result["error"] = result["error"] or f"{what} failed: exit code {result['exitCode']}"
    return result


def _recovered_result(command: dict) -> dict:
    payload = command.get("payload") if isinstance(command, dict) else None
    if (
        isinstance(command, dict)
        and command.get("type") == "update"
        and isinstance(payload, dict)
        and payload.get("version") == __version__
    ):
        return command_result("completed", duration_ms=0, stdout=f"the agent restarted at version {__version__}\n")
    return command_result("failed", duration_ms=0, error=STOPPED_WHILE_RUNNING)
