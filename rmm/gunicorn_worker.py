"""gunicorn workers that answer the API's error shape for the requests gunicorn itself refuses.

A request line longer than ``limit_request_line``, headers beyond ``limit_request_field_size`` or an unparsable
request line never reach Django: the worker's ``handle_error`` writes gunicorn's HTML page. Under ``/api/`` a client
must get ``{"error", "message", "fields"}`` like from every other refusal (rmm/errors.py), so these workers keep
gunicorn's decision (status, logging, the access-log line) and only change what is written: the same status as JSON
when the path of the raw request line is under ``/api/``, gunicorn's own page otherwise.

gunicorn has parsed no request when it refuses its first line, so the path is read from the bytes the parser had
buffered (the ``buf`` of ``Request.parse``, found on the exception's traceback). This costs nothing on requests
that parse; a refusal whose bytes cannot be found keeps gunicorn's page.

rmm/gunicorn.conf.py picks these classes for ``gevent`` (the default), ``gthread`` and ``sync``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote, urlsplit

from gunicorn import util
from gunicorn.http.message import Message
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

if TYPE_CHECKING:
    import socket

    # What ApiErrorPages is mixed into: the type checker sees the worker's handle_error and log through it.
    from gunicorn.workers.base import Worker as _Worker
else:
    _Worker = object

# gunicorn's status → the error code of our shape (its reasons are for people and vary between versions).
_CODES = {
    400: ("bad_request", "The request could not be parsed."),
    403: ("forbidden", "The request was refused."),
    414: ("request_line_too_long", "The request line (method, path and query) is longer than the server accepts."),
    417: ("expectation_failed", "The Expect header cannot be met."),
    431: ("header_too_large", "The request's headers are larger than the server accepts."),
    500: ("server_error", "The server failed to answer; the error has been logged."),
    501: ("not_implemented", "The request uses a transfer coding the server does not support."),
}


class _PageCatcher:
    """Stands in for the client socket while gunicorn writes its error page: keeps the bytes, so the status
    gunicorn decided on can be read back. Anything else (addresses for the access log) comes from the socket."""

    def __init__(self, sock):
        self._sock = sock
        self.written = bytearray()

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def gettimeout(self):
        return 0.0  # write_nonblock then writes at once, without toggling the real socket

    def sendall(self, data):
        self.written.extend(data)

    def status(self) -> tuple[int, str]:
        line = bytes(self.written).split(b"\r\n", 1)[0].decode("latin-1")
        try:
            _, code, reason = line.split(" ", 2)
            return int(code), reason
        except ValueError:
            return 400, "Bad Request"


def _target_in(request_bytes: bytes) -> str | None:
    """The request target of a raw request line (``GET /api/v1/x?y HTTP/1.1`` → ``/api/v1/x?y``), or None."""
    line = request_bytes.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) < 2 or not parts[1]:
        return None
    return parts[1].decode("latin-1")


def request_path(req, exc: BaseException) -> str | None:
    """The path a refused request asked for, decoded, as far as gunicorn read it."""
    for candidate in (req, getattr(exc, "req", None)):
        uri = getattr(candidate, "uri", None) if isinstance(candidate, Message) else None
        if uri:
            target = uri
            break
    else:
        target = None
        tb = exc.__traceback__
        while tb is not None and target is None:
            frame_locals = tb.tb_frame.f_locals
            if isinstance(frame_locals.get("self"), Message) and isinstance(frame_locals.get("buf"), bytearray):
                target = _target_in(bytes(frame_locals["buf"]))
            tb = tb.tb_next
    if not target:
        return None
    if "://" in target.split("?", 1)[0]:  # absolute form: GET http://host/api/v1/x HTTP/1.1
        target = urlsplit(target).path
    return unquote(target.split("?", 1)[0])


class ApiErrorPages(_Worker):
    """The ``handle_error`` of every worker class below (see the module docstring)."""

    def handle_error(self, req, client, addr, exc):
        path = request_path(req, exc)
        from rmm.errors import error_body, is_api_path  # the worker has loaded Django by the time a request fails

        if path is None or not is_api_path(path):
            return super().handle_error(req, client, addr, exc)
        catcher = _PageCatcher(client)
        # Logs, writes the access-log line, decides the status; the catcher passes for the socket.
        super().handle_error(req, cast("socket.socket", catcher), addr, exc)
        status, reason = catcher.status()
        code, message = _CODES.get(status) or (
            ("bad_request", "The request was refused.") if status < 500 else ("server_error", _CODES[500][1])
        )
        body = json.dumps(error_body(code, message)).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:
            self.log.debug("Failed to send error message.")


class GeventWorker(ApiErrorPages, _GeventWorker):
    pass


class ThreadWorker(ApiErrorPages, _ThreadWorker):
    pass


class SyncWorker(ApiErrorPages, _SyncWorker):
    pass
