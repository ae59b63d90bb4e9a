"""The embedded PostgreSQL starts on demand inside the project and stops when its last user exits — also on
SIGTERM, and even when an earlier user died without saying so. It starts when a process first connects, not when
the settings are read: ``manage.py check`` and ``--help`` start nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

START_AND_WAIT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from rmm import embedded_pg
print(embedded_pg.start(Path({base!r}) / "var" / "postgres"), flush=True)
time.sleep({sleep})
"""


def servers_for(base: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and f"-D {base}/var/postgres" in cmdline:
            found.append(proc)
    return found


def wait_until(condition, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def run_user(base: Path, sleep: float) -> subprocess.Popen:
    code = START_AND_WAIT.format(root=str(ROOT), base=str(base), sleep=sleep)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)  # noqa: S603


@pytest.fixture
def base(tmp_path_factory):
    # A short path: Unix socket paths are limited to about 100 characters.
    return tmp_path_factory.mktemp("epg")


def test_it_starts_on_demand_answers_and_stops_when_its_user_exits(base):
    user = run_user(base, sleep=0)
    url = user.stdout.readline().strip()
    assert user.wait(timeout=120) == 0
    assert url.startswith("postgresql://") and url.split("?")[0].endswith("/rmm")
    assert (base / "var" / "postgres" / "PG_VERSION").read_text().strip() == "18"
    assert wait_until(lambda: not servers_for(base))


def test_sigterm_stops_it_too(base):
    user = run_user(base, sleep=60)
    assert user.stdout.readline().startswith("postgresql://")
    assert servers_for(base)
    user.send_signal(signal.SIGTERM)
    user.wait(timeout=60)
    assert wait_until(lambda: not servers_for(base))


def test_a_user_that_died_without_cleaning_up_does_not_keep_it_running(base):
    first = run_user(base, sleep=60)
    assert first.stdout.readline().startswith("postgresql://")
    first.kill()  # SIGKILL: no atexit, its pid stays on the holders' list
    first.wait(timeout=30)
    holders = base / "var" / "postgres" / ".handle_pids.json"
    assert first.pid in json.loads(holders.read_text())

    second = run_user(base, sleep=0)
    assert second.stdout.readline().startswith("postgresql://")
    assert second.wait(timeout=120) == 0
    assert wait_until(lambda: not servers_for(base))


def manage(base: Path, *args: str) -> subprocess.CompletedProcess:
    """``manage.py`` as a developer runs it (no DATABASE_URL), with the embedded cluster in ``base``."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "RMM_ENV_FILE"}}
    env.update(DJANGO_SETTINGS_MODULE="rmm.settings", DEBUG="1", EMBEDDED_POSTGRES_DIR=str(base / "var" / "postgres"))
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("args", [("check",), ("--help",), ("help", "migrate")])
def test_commands_that_need_no_database_do_not_start_it(base, args):
    result = manage(base, *args)
    assert result.returncode == 0, result.stderr
    assert not (base / "var" / "postgres").exists()
    assert not servers_for(base)


def test_the_first_query_starts_it_and_the_last_user_stops_it(base):
    probe = "from django.db import connection; c = connection.cursor(); c.execute('SELECT 6 * 7'); print(c.fetchone())"
    result = manage(base, "shell", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert "(42,)" in result.stdout
    assert (base / "var" / "postgres" / "PG_VERSION").exists()
    assert wait_until(lambda: not servers_for(base))
