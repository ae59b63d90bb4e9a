"""Migrations apply to an empty database and match the models; settings fail loudly on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from rmm.env import parse_database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_makemigrations_finds_nothing_missing():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def _url_for(dbname: str) -> str:
    params = connection.settings_dict
    host = params["HOST"]
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{dbname}?host={host}"
    return f"postgresql://{auth}@{host}:{params['PORT'] or 5432}/{dbname}"


def _run(env_overrides: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rmm.settings", **env_overrides}
    return subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.django_db(transaction=True)
def test_migrations_apply_to_an_empty_database():
    dbname = "rmm_empty_migrate_check"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {dbname}")
        cursor.execute(f"CREATE DATABASE {dbname}")
    try:
        env = {"DATABASE_URL": _url_for(dbname), "SECRET_KEY": "x" * 40}
        result = _run(env, "migrate", "--no-input")
        assert result.returncode == 0, result.stderr
        with psycopg.connect(_url_for(dbname).replace("postgresql://", "postgresql://", 1)) as conn:
            assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)
            partitions = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'device_telemetry'::regclass"
            ).fetchone()[0]
            assert partitions == 9  # today, the next 7 days, and the default partition
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("TELEMETRY_RETENTION_DAYS", "thirty"),
        ("DEVICE_OFFLINE_AFTER_SECONDS", "5"),
        ("DATABASE_URL", "mysql://root@localhost/rmm"),
        ("SECRET_KEY", "short"),
    ],
)
def test_a_wrong_setting_fails_at_start_up_naming_the_variable(variable, value):
    result = _run({"SECRET_KEY": "x" * 40, "DATABASE_URL": "postgresql://u@localhost/rmm", variable: value}, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env["DATABASE_URL"] = "postgresql://u@localhost/rmm"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "rmm.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_database_urls_parse_hosts_ports_sockets_and_options():
    tcp = parse_database_url("DATABASE_URL", "postgres://rmm:p%40ss@db.internal:6432/rmm?sslmode=require")
    assert (tcp["HOST"], tcp["PORT"], tcp["USER"], tcp["PASSWORD"], tcp["NAME"]) == (
        "db.internal",
        "6432",
        "rmm",
        "p@ss",
        "rmm",
    )
    assert tcp["OPTIONS"] == {"sslmode": "require"}
    socket = parse_database_url("DATABASE_URL", "postgresql://postgres:@/rmm?host=/srv/var/postgres")
    assert (socket["HOST"], socket["PORT"], socket["OPTIONS"]) == ("/srv/var/postgres", "", {})


def test_a_database_url_without_a_name_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL has no database name"):
        parse_database_url("DATABASE_URL", "postgresql://postgres@localhost:5432")
