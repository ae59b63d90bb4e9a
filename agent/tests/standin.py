"""A stand-in for the RMM server in the agent's tests: a real HTTP(S) server in a thread that answers as each test
scripts it and records what it was sent; a throwaway CA and certificates for its TLS; a port nothing listens on.

Test modules import it as ``from standin import ...``: agent/tests has no __init__.py, so pytest puts the directory
on sys.path, from /work/main and from agent/ alike.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

# What the stand-in answers: (status, body, headers). A body of None is sent empty, bytes as they are, anything else
# as JSON with Content-Type application/json.
Answer = tuple[int, Any, dict[str, str]]
AnswerScript = Callable[["Request"], Optional[Answer]]

# A reserved name no resolver knows, in the server certificate's names: test_proxy's proxy maps it to the stand-in,
# so an answer to it can only have come through the proxy.
SERVER_NAME = "rmm.example.test"

NOT_FOUND: Answer = (404, {"error": "not_found", "message": "No route in the stand-in.", "fields": {}}, {})


class Request:
    """One request the stand-in received: headers are looked up case-insensitively, as HTTP's are; the body is the
    parsed JSON (None when empty); `at` is time.monotonic() and `received_at` the UTC time when it arrived."""

    def __init__(self, method: str, path: str, headers: Message, body: Any) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = time.monotonic()
        self.received_at = dt.datetime.now(dt.timezone.utc)

    @property
    def kind(self) -> str:
        """The last segment of the path: an inventory upload's kind, "heartbeat", "result"."""
        return self.path.rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


def agent_api_when_all_is_well(request: Request) -> Answer | None:
    """What the server answers a heartbeat, a command result and an inventory upload when all is well."""
    if request.method == "POST" and request.path.endswith("/heartbeat"):
        return 200, {"commands": [], "configUpdate": None, "rotateToken": False}, {}
    if request.method == "POST" and request.path.endswith("/result"):
        return 200, {"status": "ok"}, {}
    if request.method == "PUT":
        return 204, None, {}
    return None


class StandInServer:
    """An HTTP/1.1 (keep-alive) server on 127.0.0.1 in a thread, TLS with `ssl_context`. Each request is answered by
    the first of: `answer(request)` (the test's script; answers nothing unless set), `routes[(method, path)]`,
    `fallback(request)`, else 404 in the API's error shape. It records every request in `requests`, counts the TCP
    connections it accepted in `connections`, and dates its answers `clock_skew` seconds off this machine's clock.
    Use it as a context manager, or call stop()."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, port: int = 0, fallback: AnswerScript | None = None
    ) -> None:
        self.routes: dict[tuple[str, str], Answer] = {}
        self.answer: AnswerScript = lambda request: None
        self.fallback = fallback
        self.requests: list[Request] = []
        self.connections = 0
        self.clock_skew = 0.0
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the agent's connection pool expects

            def setup(self) -> None:
                with stand_in._lock:
                    stand_in.connections += 1
                super().setup()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(time.time() + stand_in.clock_skew, usegmt=True)

            def answer_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers, json.loads(raw) if raw else None)
                with stand_in._lock:
                    stand_in.requests.append(request)
                status, body, headers = stand_in.answer_for(request)
                if body is None:
                    payload = b""
                elif isinstance(body, bytes):
                    payload = body
                else:
                    payload = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **headers}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = answer_request

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that rejects the certificate aborts the handshake: expected in the TLS tests.
                if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", port), Handler)
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def route(self, method: str, path: str, status: int, body: Any = None, headers: dict | None = None) -> None:
        """Answer `method` `path` with `status`, `body` and `headers` (see Answer) from now on."""
        self.routes[(method, path)] = (status, body, headers or {})

    def answer_for(self, request: Request) -> Answer:
        """The answer to `request`, in the order the class describes."""
        return (
            self.answer(request)
            or self.routes.get((request.method, request.path))
            or (self.fallback(request) if self.fallback else None)
            or NOT_FOUND
        )

    def of(self, suffix: str, method: str = "POST") -> list[Request]:
        """The requests so far with this method whose path ends with `suffix`."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    @property
    def heartbeats(self) -> list[Request]:
        return self.of("/heartbeat")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StandInServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tls_server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context presenting `certificate`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA ("ca") and, signed by it, a server certificate ("cert", "key") for 127.0.0.1, localhost and
    SERVER_NAME, and one for another name ("elsewhere-cert", "elsewhere-key": elsewhere.example); also a second CA
    ("other-ca") that signed nothing. Made in `directory` with openssl; skips the test when openssl is missing."""
    openssl_path = shutil.which("openssl")
    if openssl_path is None:
        pytest.skip("the openssl command is not installed: the TLS tests need it to make a CA")
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*arguments: str) -> None:
        # The test's own fixed arguments, no shell.
        subprocess.run([openssl_path, *arguments], cwd=directory, check=True, capture_output=True)  # noqa: S603

    for ca in ("ca", "other-ca"):
        openssl(
            "req", "-x509", *ec_key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=Test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    for name, alt_names in (
        ("server", f"DNS:{SERVER_NAME},IP:127.0.0.1,DNS:localhost"),
        ("elsewhere", "DNS:elsewhere.example"),
    ):
        openssl("req", *ec_key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (directory / f"{name}.ext").write_text(
            f"subjectAltName={alt_names}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {
        "ca": directory / "ca.pem",
        "other-ca": directory / "other-ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
        "elsewhere-cert": directory / "elsewhere.pem",
        "elsewhere-key": directory / "elsewhere.key",
    }
