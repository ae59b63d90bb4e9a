"""A missing or wrong setting ends in one line on stderr and a non-zero exit, never a traceback: from manage.py, from
the WSGI module and from gunicorn's start. manage.py reads the development environment file (``.env`` that
``make run`` writes, or RMM_ENV_FILE); the real environment wins over it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY_MISSING = "ImproperlyConfigured: SECRET_KEY is not set."


def production_like(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """An environment with no secret key and DEBUG off, a database that is never connected to, and manage.py
    reading the environment file ``tmp_path/.env`` (PYTEST_CURRENT_TEST would make it read none)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "DEBUG", "PYTEST_CURRENT_TEST", "RMM_ENV_FILE"} and not key.startswith("DJANGO_")
    }
    env.update(
        DATABASE_URL="postgresql://rmm@db.invalid:5432/rmm",
        RMM_ENV_FILE=str(tmp_path / ".env"),
        PYTHONPATH=str(ROOT),
        GUNICORN_BIND="127.0.0.1:0",
        WEB_CONCURRENCY="1",
        SCHEDULER_ENABLED="0",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    env.update(overrides)
    return env


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603


def assert_one_line(stderr: str, starts_with: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ImproperlyConfigured")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(starts_with), stderr


def test_manage_py_without_a_secret_key_says_so_in_one_line(tmp_path):
    result = run(production_like(tmp_path), sys.executable, "manage.py", "check")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert_one_line(result.stderr, SECRET_KEY_MISSING)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DEBUG", "maybe"), ("DATABASE_URL", "mysql://root@localhost/rmm"), ("SECRET_KEY", "short"), ("LOG_LEVEL", "x")],
)
def test_manage_py_names_a_wrong_setting_in_one_line(tmp_path, variable, value):
    env = production_like(tmp_path, **{"SECRET_KEY": "s" * 40, variable: value})
    result = run(env, sys.executable, "manage.py", "grant_access", "--help")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert_one_line(result.stderr, "ImproperlyConfigured: ")
    assert variable in result.stderr


def test_traceback_flag_still_shows_the_traceback(tmp_path):
    result = run(production_like(tmp_path), sys.executable, "manage.py", "check", "--traceback")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_manage_py_reads_the_development_environment_file(tmp_path):
    (tmp_path / ".env").write_text("# written by make run\nDEBUG=1\n")
    result = run(production_like(tmp_path), sys.executable, "manage.py", "check")
    assert result.returncode == 0, result.stderr


def test_the_real_environment_wins_over_the_file(tmp_path):
    (tmp_path / ".env").write_text("DEBUG=1\n")
    result = run(production_like(tmp_path, DEBUG="0"), sys.executable, "manage.py", "check")
    assert result.returncode == 1
    assert_one_line(result.stderr, SECRET_KEY_MISSING)


def test_quotes_comments_and_export_are_read_as_in_a_systemd_environment_file(tmp_path):
    (tmp_path / ".env").write_text(
        "\n# a comment\nexport DEBUG='1'\nALLOWED_HOSTS=\"rmm.example.com\"\n",
    )
    probe = "from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)"
    result = run(production_like(tmp_path), sys.executable, "manage.py", "shell", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True ['rmm.example.com']"


def test_a_malformed_line_of_the_file_is_named_in_one_line(tmp_path):
    (tmp_path / ".env").write_text("DEBUG=1\nthis is not a setting\n")
    result = run(production_like(tmp_path), sys.executable, "manage.py", "check")
    assert result.returncode == 1
    assert_one_line(result.stderr, f"ImproperlyConfigured: {tmp_path / '.env'}, line 2:")


def test_the_test_suite_s_processes_read_no_file(tmp_path):
    (tmp_path / ".env").write_text("DEBUG=1\n")
    env = production_like(tmp_path, PYTEST_CURRENT_TEST="tests/x.py::y (call)")
    result = run(env, sys.executable, "manage.py", "check")
    assert result.returncode == 1
    assert_one_line(result.stderr, SECRET_KEY_MISSING)


def test_the_wsgi_module_stops_with_one_line_and_gunicorns_boot_error_status(tmp_path):
    result = run(production_like(tmp_path), sys.executable, "-c", "import rmm.wsgi")
    assert result.returncode == 3  # gunicorn's arbiter stops instead of booting the worker again and again
    assert result.stderr.count("\n") == 1
    assert_one_line(result.stderr, SECRET_KEY_MISSING)


@pytest.mark.servers
def test_gunicorn_refuses_to_start_with_one_line(tmp_path):
    # gunicorn ignores the environment file: it is refused even though the file would say DEBUG=1.
    (tmp_path / ".env").write_text("DEBUG=1\n")
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "rmm" / "gunicorn.conf.py"), "rmm.wsgi"]
    result = run(production_like(tmp_path), *command)
    assert result.returncode == 1
    assert_one_line(result.stderr, SECRET_KEY_MISSING)
    assert "Listening at" not in result.stderr  # refused before binding, not by a worker that failed to boot
