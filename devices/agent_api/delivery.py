"""Answers that hand out claimed commands, and what happens when one cannot be delivered.

The rule (README, "Agents"): a command is handed out once per claim. An answer is never an error when its claim
was stored. If the server cannot deliver the answer that carries claimed commands (the response could not be
written: the client is gone), those commands return to ``pending`` at once (``sent_at`` NULL, only while they are
still ``sent`` with that claim's ``sent_at``) and are offered at the next check-in.

How "could not be delivered" is seen, in the WSGI layer (``CommandsAnswer``): the body is produced by a generator
that the server iterates. gunicorn (its sync, gthread and gevent workers alike: ``handle_request`` in
``gunicorn/workers/``) writes each item before it asks for the next, and calls the response's ``close()`` in a
``finally`` whether writing failed or not. So:

- before the body is handed over, a zero-timeout check of the client socket (``gunicorn.socket``) looks for an end
  of stream: an agent that gave up waiting (its timeout) has closed its connection, and a write to such a socket
  still "succeeds" into the kernel's buffer. Then the claim is undone and the answer written carries no commands
  (padded to the announced Content-Length with JSON whitespace), so it agrees with what is stored;
- the code after the final ``yield`` runs only once the server has written the body: the answer is delivered;
- ``close()`` without that (the write failed: the peer reset the connection) undoes the claim.

What no server can see: a client that vanishes after the bytes left (or a proxy that read the answer and then lost
its client). Such a command stays ``sent`` until the sent-command timeout marks it ``timeout``
(``devices.services.commands``). Django's test client never iterates a response, so there every answer counts as
delivered. The check costs nothing on the common heartbeat: an answer without commands is a plain JsonResponse.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import select
import socket
import uuid

from django.http import JsonResponse
from django.utils import timezone

from devices.agent_api import sql

logger = logging.getLogger("devices.agent_api")

try:
    # A zero-timeout select never blocks, so gevent's cooperative version (a trip through its hub) is not needed.
    from gevent.monkey import get_original

    _select = get_original("select", "select")
except ImportError:  # pragma: no cover - gevent is a dependency
    _select = select.select


def client_has_gone(sock) -> bool:
    """Whether the client has closed its side of the connection (an end of stream is waiting to be read), or reset
    it. A pipelined next request is data, not an end. Unknown (no socket, TLS in gunicorn itself) counts as there."""
    if sock is None:
        return False
    try:
        readable, _, _ = _select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (ValueError, TypeError):  # TLS sockets refuse recv flags; not a socket at all
        return False
    except OSError:  # reset by the peer, or already closed
        return True


class CommandsAnswer(JsonResponse):
    """A 200 that carries claimed commands: undoes the claim when the server cannot deliver it (module docstring)."""

    def __init__(self, data: dict, *, device_id: uuid.UUID, sent_at: dt.datetime, client_socket, agent_id: str) -> None:
        super().__init__(data)
        self._data = data
        self._device_id = device_id
        self._sent_at = sent_at
        self._socket = client_socket
        self._agent_id = agent_id
        self._body = None
        self._released = False

    def __iter__(self):
        if self._body is None:
            self._body = self._deliver()
        return self._body

    def _deliver(self):
        delivered = False
        try:
            if client_has_gone(self._socket):
                self._release("the agent closed its connection before the answer was written")
                yield self._without_commands()
                return
            yield self.content
            delivered = True  # reached only after the server wrote the body and asked for more
        finally:
            if not delivered and not self._released:
                self._release("the answer could not be written")

    def _without_commands(self) -> bytes:
        body = json.dumps({**self._data, "commands": []}).encode()
        return body.ljust(len(self.content))  # the same length as announced; trailing whitespace is valid JSON

    def close(self):
        try:
            if self._body is not None:
                self._body.close()
        finally:
            super().close()

    def _release(self, why: str) -> None:
        self._released = True
        command_ids = [uuid.UUID(command["id"]) for command in self._data["commands"]]
        try:
            released = sql.release_undelivered_commands(
                sql.raw_cursor(),
                device_id=self._device_id,
                command_ids=command_ids,
                sent_at=self._sent_at,
                now=timezone.now(),
            )
        except Exception:
            logger.exception(
                "agent %s: %s, and its %d claimed commands could not be returned to pending; they stay sent",
                self._agent_id,
                why,
                len(command_ids),
            )
            return
        logger.warning(
            "agent %s: %s; %d of its %d claimed commands are pending again",
            self._agent_id,
            why,
            released,
            len(command_ids),
        )


def commands_answer(request, data: dict, *, device_id: uuid.UUID, sent_at: dt.datetime | None, agent_id: str):
    """The 200 of a call that claimed ``data["commands"]`` (heartbeat, GET .../commands): a ``CommandsAnswer`` when
    it carries any, a plain JsonResponse otherwise."""
    if not data["commands"] or sent_at is None:
        return JsonResponse(data)
    return CommandsAnswer(
        data,
        device_id=device_id,
        sent_at=sent_at,
        client_socket=request.META.get("gunicorn.socket"),
        agent_id=agent_id,
    )
