"""Real receivers for the notification tests: an HTTP server for webhooks and an SMTP server for e-mail, both on
loopback, started and stopped by the test.

``WebhookReceiver`` records every request (method, path, headers, raw body) and answers with the statuses it is
told, in turn (the last one repeats): ``WebhookReceiver(statuses=[500, 500, 200])``. ``SmtpReceiver`` is an
aiosmtpd server keeping every message it accepts; ``smtp_settings()`` are the Django settings that send to it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A loopback HTTP server that records requests; use as a context manager. ``url`` is its address."""

    def __init__(self, statuses: list[int] | None = None, *, delay: float = 0.0):
        self.statuses = list(statuses or [200])
        self.delay = delay
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        ReceivedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                answer = b'{"ok": true}' if status < 300 else b"nope"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/rmm"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Keep:
    def __init__(self, messages: list[tuple[str, list[str], Message]]):
        self.messages = messages

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """An aiosmtpd SMTP server on loopback keeping every accepted message as ``(from, [to], Message)``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.port = free_port()
        self.controller = Controller(_Keep(self.messages), hostname="127.0.0.1", port=self.port)

    def smtp_settings(self) -> dict:
        """Django settings that send e-mail to this server (pytest-django's locmem backend replaced)."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
        }

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
