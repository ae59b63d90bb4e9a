"""The real agent as a process of its own (the ``rmm-agent`` console script of the venv), the technician API over
HTTP as a person's API token uses it, and the step timer the end-to-end test prints."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, Endpoint


def rmm_agent_program() -> str:
    """The ``rmm-agent`` console script installed beside the interpreter running the tests (the venv's)."""
    beside = Path(sys.executable).parent / "rmm-agent"
    found = str(beside) if beside.exists() else shutil.which("rmm-agent")
    if not found:
        pytest.skip("the rmm-agent console script is not installed (pip install -e ./agent)")
    return found


class RealAgent:
    """``rmm-agent --state-dir … --config … <command>`` on this machine, with its log in a file."""

    def __init__(self, home: Path, config: dict[str, Any]) -> None:
        self.program = rmm_agent_program()
        self.state_dir = home / "state"
        self.config_file = home / "agent-config.json"
        self.config_file.write_text(json.dumps(config))
        self.log = home / "agent.log"
        self.process: subprocess.Popen | None = None

    def argv(self, *command: str) -> list[str]:
        return [self.program, "--state-dir", str(self.state_dir), "--config", str(self.config_file), *command]

    def enroll(self, server: str, key: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - the agent under test
            self.argv("enroll", "--server", server, "--key", key),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the agent under test
                self.argv("-v", "run"),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def status(self) -> dict:
        shown = subprocess.run(  # noqa: S603 - the agent under test
            self.argv("status", "--json"), capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, f"the agent exited:\n{self.output()}"

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


class Technician:
    """The technician API over HTTP with a person's API token (a fresh connection per call: the server restarts)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        endpoint = Endpoint(self.port, self.headers)
        try:
            status, _, answer = endpoint.request(method, path, body)
        finally:
            endpoint.close()
        return status, answer


class Steps:
    """Named steps with their durations, printed as they end (``pytest -s`` shows them as they go)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started
        self.timings: list[tuple[str, float]] = []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.timings.append((name, now - self.last))
        print(f"[{now - self.started:6.1f} s] {name}: {now - self.last:.1f} s", flush=True)
        self.last = now


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5, agent=None) -> Any:
    """``condition()``'s first truthy value, looked at every ``every`` s; fails after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if agent is not None:
            agent.assert_running()
        if result := condition():
            return result
        if time.monotonic() > deadline:
            log = f"\nagent log:\n{agent.output()}" if agent is not None else ""
            raise AssertionError(f"not within {timeout:.0f} s: {what}{log}")
        time.sleep(every)
