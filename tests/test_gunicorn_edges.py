"""The server as deployed: a real gunicorn (rmm/gunicorn.conf.py, one gevent worker) spoken to in raw bytes.

- Requests gunicorn refuses before Django runs (a request line too long, headers too large, an unparsable request
  line) answer the API's error shape under /api/ and gunicorn's own page elsewhere (rmm/gunicorn_worker.py); so do
  paths under /api/ written with doubled slashes (rmm/errors.py).
- A body sent with ``Transfer-Encoding: chunked`` reaches Django whole (rmm/wsgi.py), up to
  DATA_UPLOAD_MAX_MEMORY_SIZE; beyond it, 413 in the error shape.
- No instance opens gunicorn's per-user control socket ($HOME/.gunicorn/gunicorn.ctl) unless told a path of its own.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from accounts.models import User
from devices.models import Device
from devices.services import credentials
from tests import factories
from tests.servers import Gunicorn, url_of_test_database

pytestmark = pytest.mark.servers

UPLOAD_LIMIT = 4096  # DATA_UPLOAD_MAX_MEMORY_SIZE of the server under test


def start_gunicorn(workdir: Path, home: Path, **env: str) -> Gunicorn:
    """The production configuration (tests/servers.py), with HOME (where gunicorn >= 25 would put its control
    socket by default) and XDG_RUNTIME_DIR (where it would prefer to) under the test's control."""
    workdir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": "",
        "DATA_UPLOAD_MAX_MEMORY_SIZE": str(UPLOAD_LIMIT),
        "SECRET_KEY": settings.SECRET_KEY,  # enrollment keys made here are HMACs keyed with it
        **env,
    }
    return Gunicorn(url_of_test_database(), workdir / "gunicorn.log", **env).__enter__()


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one answer: (status, headers with lower-case names, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                head = data[:head_end].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}
                body = data[head_end + 4 :]
                status = int(head[0].split(" ")[1])
                if headers.get("transfer-encoding") == "chunked":
                    if body.endswith(b"0\r\n\r\n"):
                        return status, headers, unchunked(body)
                elif 0 <= int(headers.get("content-length", "-1")) <= len(body):
                    return status, headers, body[: int(headers["content-length"])]
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the connection closed before a whole answer: {data[:300]!r}")
            data += chunk


def unchunked(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def assert_error_shape(status: int, headers: dict, body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    document = json.loads(body)
    assert set(document) == {"error", "message", "fields"}
    assert document["error"] == code
    assert document["message"]
    assert document["fields"] == {}


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Gunicorn]:
    workdir = tmp_path_factory.mktemp("gunicorn")
    with django_db_blocker.unblock():
        started = start_gunicorn(workdir, workdir / "home")
    yield started
    started.__exit__(None, None, None)


# --- requests gunicorn refuses ----------------------------------------------------------------------------------

LONG_QUERY = b"q=" + b"a" * 5000  # gunicorn's limit_request_line is 4094; one socket read still takes it all


@pytest.mark.parametrize("path", [b"/api/v1/devices", b"//api//v1/devices", b"/%61pi/v1/devices", b"/api"])
def test_a_request_line_too_long_under_api_gets_414_in_the_error_shape(server, path):
    status, headers, body = exchange(server.port, b"GET %s?%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % (path, LONG_QUERY))
    assert_error_shape(status, headers, body, 414, "request_line_too_long")


def test_a_request_line_too_long_elsewhere_keeps_gunicorns_page(server):
    status, headers, _ = exchange(server.port, b"GET /admin/?%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % LONG_QUERY)
    assert status == 414
    assert headers["content-type"].startswith("text/html")


def test_a_header_too_large_under_api_gets_431_in_the_error_shape(server):
    raw = b"GET /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nX-Padding: %s\r\n\r\n" % (b"p" * 9000)
    assert_error_shape(*exchange(server.port, raw), 431, "header_too_large")


def test_too_many_headers_under_api_get_431_in_the_error_shape(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(120))  # limit_request_fields is 100
    raw = b"POST /api/v1/agents/heartbeat HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % headers
    assert_error_shape(*exchange(server.port, raw), 431, "header_too_large")


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /api/v1/devices\x01 HTTP/1.1",
        b"GET /api/v1/devices HTTP/1.1 extra",
        b"GET /api/v1/devices HTTP/9.9",
        b"G(T /api/v1/devices HTTP/1.1",
    ],
)
def test_an_invalid_request_line_under_api_gets_400_in_the_error_shape(server, request_line):
    status, headers, body = exchange(server.port, request_line + b"\r\nHost: localhost\r\n\r\n")
    assert_error_shape(status, headers, body, 400, "bad_request")


def test_an_invalid_request_line_elsewhere_keeps_gunicorns_page(server):
    status, headers, _ = exchange(server.port, b"GET /admin/\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == 400
    assert headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", [b"//api/v1/devices", b"/api//v1/nothing-here", b"//api//"])
def test_an_unknown_path_under_api_written_with_double_slashes_gets_404_in_the_error_shape(server, path):
    raw = b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path
    assert_error_shape(*exchange(server.port, raw), 404, "not_found")


def test_an_unknown_host_under_api_gets_400_in_the_error_shape(server):
    raw = b"GET /api/v1/devices HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    assert_error_shape(*exchange(server.port, raw), 400, "bad_request")


# --- chunked request bodies -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_chunked_agent_enrollment_is_read_whole(server):
    site = factories.site()
    minted = credentials.mint_enrollment_key()
    raw_key, prefix, key_hash = minted.raw, minted.prefix, minted.hash
    site.enrollment_keys.create(org=site.org, name="chunked", key_prefix=prefix, key_hash=key_hash)
    body = json.dumps(
        {
            "enrollmentKey": raw_key,
            "hostname": "chunky-01",
            "osType": "linux",
            "osVersion": "12",
            "osBuild": "bookworm",
            "architecture": "amd64",
            "agentVersion": "1.4.2",
        }
    ).encode()
    raw = (
        b"POST /api/v1/agents/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, size=37)
    )
    status, _, answer = exchange(server.port, raw)
    assert status == 201, answer
    assert Device.objects.filter(hostname="chunky-01", site=site).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_chunked_api_body_is_read_whole(server):
    user = User.objects.create_user("chunked@example.com", is_staff=True)
    # The server runs the production settings (Argon2, PBKDF2); the test process hashes with MD5 for speed.
    user.password = PBKDF2PasswordHasher().encode("a long enough password", PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    body = json.dumps({"email": "chunked@example.com", "password": "a long enough password"}).encode()
    raw = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, size=10)
    )
    status, _, answer = exchange(server.port, raw)
    assert status == 200, answer
    assert json.loads(answer)["token"].startswith("rmmu_")


def test_a_chunked_body_over_the_upload_limit_gets_413_in_the_error_shape(server):
    body = json.dumps({"hostname": "x" * (UPLOAD_LIMIT + 10)}).encode()
    raw = (
        b"POST /api/v1/agents/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    )
    assert_error_shape(*exchange(server.port, raw), 413, "payload_too_large")


def test_a_chunked_body_at_the_upload_limit_reaches_the_view(server):
    body = b'{"enrollmentKey": "' + b"k" * (UPLOAD_LIMIT - 21) + b'"}'
    assert len(body) == UPLOAD_LIMIT
    raw = (
        b"POST /api/v1/agents/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    )
    status, _, answer = exchange(server.port, raw)
    assert status == 400, answer  # the view read it: the other fields are missing
    assert json.loads(answer)["error"] == "validation_error"


# --- gunicorn's control socket ----------------------------------------------------------------------------------


def test_two_instances_side_by_side_open_no_shared_control_socket(django_db_setup, django_db_blocker, tmp_path):
    # One user, two servers: gunicorn's default would be $HOME/.gunicorn/gunicorn.ctl (or $XDG_RUNTIME_DIR/…) for
    # both, the second taking the socket over. Looked at while both run: stopping removes the file.
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    runtime.mkdir()
    with django_db_blocker.unblock():
        first = start_gunicorn(tmp_path / "first", home)
        try:
            second = start_gunicorn(tmp_path / "second", home, XDG_RUNTIME_DIR=str(runtime))
            try:
                assert first.process.poll() is None and second.process.poll() is None
                assert not (home / ".gunicorn").exists()
                assert not list(runtime.iterdir())
            finally:
                second.__exit__(None, None, None)
        finally:
            first.__exit__(None, None, None)


def test_a_control_socket_is_opened_only_at_the_path_an_instance_is_given(django_db_setup, django_db_blocker, tmp_path):
    own = tmp_path / "own.ctl"
    with django_db_blocker.unblock():
        server = start_gunicorn(tmp_path / "ctl", tmp_path / "home", GUNICORN_CONTROL_SOCKET=str(own))
    try:
        deadline = time.monotonic() + 10
        while not own.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert own.is_socket()
        assert not (tmp_path / "home" / ".gunicorn").exists()
    finally:
        server.__exit__(None, None, None)
