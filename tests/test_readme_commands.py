"""The README's management-command examples work as written after ``make run``.

Every ``.venv/bin/python manage.py …`` command of a ```` ```sh ```` block of README.md is run by bash, word for word
(continuation lines, quotes and trailing comments included), from the project directory, in the environment of a
developer's second shell: no DEBUG, no SECRET_KEY, no DJANGO_SETTINGS_MODULE, and the development environment file
written by the Makefile's own recipe for it. Two things differ, so that the test leaves the developer's checkout
alone: the file is a temporary one (RMM_ENV_FILE) and the database is a fresh one on the test server (DATABASE_URL)
that ``migrate``, ``loaddata default_roles`` and ``seed_demo`` fill first, as ``make run`` does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import psycopg
import pytest
from django.db import connection

from tests.servers import ROOT, SECRET_KEY, Gunicorn, database_url

pytestmark = pytest.mark.servers

README = ROOT / "README.md"
DEV_PYTHON = ".venv/bin/python"


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def logical_lines(block: str) -> list[str]:
    """The block's commands, a line ending in a backslash joined with the next (the text kept as written)."""
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending += line + "\n"
        if not line.rstrip().endswith("\\"):
            commands.append(pending.rstrip("\n"))
            pending = ""
    if pending:
        commands.append(pending.rstrip("\n"))
    return [command for command in commands if command.strip()]


def readme_manage_commands() -> list[str]:
    return [
        command
        for block in shell_blocks(README.read_text())
        for command in logical_lines(block)
        if command.lstrip().startswith(f"{DEV_PYTHON} manage.py ")
    ]


def subcommand(command: str) -> str:
    return shlex.split(command, comments=True)[2]


@dataclass
class DevelopmentShell:
    env: dict[str, str]
    database: str

    def run(self, command: str) -> subprocess.CompletedProcess:
        if not (ROOT / DEV_PYTHON).exists():  # a suite run by another interpreter than the project's venv
            command = command.replace(DEV_PYTHON, shlex.quote(sys.executable), 1)
        bash = ["bash", "-c", command]  # the README's own commands, run by bash as a developer would
        return subprocess.run(bash, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)  # noqa: S603

    def query(self, sql: str, *params) -> tuple:
        with psycopg.connect(self.database) as conn:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return row


@pytest.fixture(scope="module")
def shell(django_db_setup, django_db_blocker, tmp_path_factory):
    if shutil.which("make") is None or shutil.which("bash") is None:
        pytest.skip("needs make and bash, as the README does")
    home = tmp_path_factory.mktemp("readme")
    env_file = home / ".env"
    make_env_file = ["make", "-s", f"ENV_FILE={env_file}", str(env_file)]  # the Makefile's own recipe
    subprocess.run(make_env_file, cwd=ROOT, check=True, timeout=60)  # noqa: S603
    assert "DEBUG=1" in env_file.read_text().splitlines()

    name = f"{connection.settings_dict['NAME']}_readme"
    params = connection.settings_dict
    url = database_url(
        name=name,
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"],
        password=params["PASSWORD"],
    )
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "SECRET_KEY", "PYTEST_CURRENT_TEST", "PYTHONPATH"} and not key.startswith("DJANGO_")
    }
    env.update(DATABASE_URL=url, RMM_ENV_FILE=str(env_file), SCHEDULER_ENABLED="0")
    development = DevelopmentShell(env=env, database=url)
    for setup in (  # what `make run` does before serving; a small demo fleet, its passwords kept out of var/
        "migrate --no-input",
        "loaddata default_roles",
        f"seed_demo --devices 4 --telemetry-hours 0 --credentials-file {shlex.quote(str(home / 'demo.txt'))}",
    ):
        result = development.run(f"{DEV_PYTHON} manage.py {setup}")
        assert result.returncode == 0, f"{setup}:\n{result.stderr[-3000:]}"
    yield development
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_readme_shows_management_commands_and_the_two_make_commands():
    commands = readme_manage_commands()
    assert {"create_enrollment_key", "grant_access"} <= {subcommand(command) for command in commands}, commands
    quick_start = logical_lines(shell_blocks(README.read_text())[0])
    assert [command.split("#")[0].strip() for command in quick_start] == ["make run", "make test"]


def test_every_make_command_of_the_readme_is_a_target_of_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    named = {
        shlex.split(command, comments=True)[1]
        for block in shell_blocks(README.read_text())
        for command in logical_lines(block)
        if command.startswith("make ")
    }
    assert "agent" in named  # "Manage this machine": enroll this machine into the demo, in one command
    assert named <= targets, named - targets


@pytest.mark.parametrize("command", readme_manage_commands(), ids=subcommand)
def test_a_readme_command_works_as_written(shell, command):
    before = shell.query("SELECT (SELECT count(*) FROM enrollment_keys), (SELECT count(*) FROM partner_users)")
    result = shell.run(command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    after = shell.query("SELECT (SELECT count(*) FROM enrollment_keys), (SELECT count(*) FROM partner_users)")
    words = shlex.split(command, comments=True)
    if subcommand(command) == "create_enrollment_key":
        assert after[0] == before[0] + 1
        assert result.stdout.strip().splitlines()[-1].strip()  # the raw key, alone on the last line
    if subcommand(command) == "grant_access":
        email = words[3]
        assert shell.query("SELECT count(*) FROM users WHERE email = %s", email) == (1,)
        assert after[1] == before[1] + 1


def test_make_agent_enrolls_this_machine_into_the_demo_once_and_runs_its_agent(shell, tmp_path):
    """ "Manage this machine": after `make run`, `make agent` makes a key for the demo's first site, enrolls this
    machine, runs the agent in the foreground; run again, it only runs the agent. Here the server is a gunicorn on
    the seeded database (the same SECRET_KEY for it and manage.py, as `make run` has) and the state is kept apart."""
    if not (ROOT / ".venv" / "bin" / "rmm-agent").exists():
        pytest.skip("needs the project's venv with the agent installed, as make agent does")
    state = tmp_path / "agent"
    env = {**shell.env, "SECRET_KEY": SECRET_KEY}

    def make_agent(server: Gunicorn) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603 - the README's command
            [  # noqa: S607 - make from the PATH, as the README's reader runs it
                "make",
                "-s",
                "-o",
                "install",  # the venv is there already; never reinstalled by a test
                f"ENV_FILE={shell.env['RMM_ENV_FILE']}",
                f"AGENT_SERVER=http://127.0.0.1:{server.port}",
                f"AGENT_STATE={state}",
                "agent",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # make and the agent it runs, stopped together as Ctrl-C would
        )

    def stop(process: subprocess.Popen) -> str:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        return output

    def wait_until(condition, what: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what}:\n{stop(process)}")
            time.sleep(0.5)

    hostname = socket.gethostname()
    devices_here = (
        "SELECT count(*) FROM devices d JOIN sites s ON s.id = d.site_id JOIN organizations o ON o.id = d.org_id "
        "WHERE d.hostname = %s AND o.slug = 'acme-corp' AND s.name = 'Headquarters'"
    )
    software_here = (
        "SELECT count(*) FROM device_software ds JOIN devices d ON d.id = ds.device_id WHERE d.hostname = %s"
    )
    with Gunicorn(shell.database, tmp_path / "gunicorn.log", SECRET_KEY=SECRET_KEY) as server:
        keys_before = shell.query("SELECT count(*) FROM enrollment_keys")[0]
        first = make_agent(server)
        try:
            wait_until(lambda: shell.query(devices_here, hostname) == (1,), "the machine is enrolled", first)
            wait_until(lambda: shell.query(software_here, hostname)[0] > 0, "its inventory arrives", first)
        finally:
            output = stop(first)
        assert shell.query("SELECT count(*) FROM enrollment_keys")[0] == keys_before + 1
        assert shell.query("SELECT max_usage FROM enrollment_keys ORDER BY created_at DESC LIMIT 1") == (1,)

        again = make_agent(server)
        try:
            wait_until(lambda: (state / "status.json").exists(), "the agent runs again", again)
            time.sleep(1)
        finally:
            output = stop(again)
        assert "already enrolled" in output, output
        assert shell.query("SELECT count(*) FROM enrollment_keys")[0] == keys_before + 1
        assert shell.query(devices_here, hostname) == (1,)
