"""Is the database there? Two questions, each answered in one place.

``closed_by_server(conn)``: has PostgreSQL closed this idle connection (a restart, ``pg_terminate_backend``, an
idle-session timeout)? A server that ends a session sends a FATAL message and closes the socket, so an idle
connection whose socket has something to read is suspect. Reading it (libpq's ``PQconsumeInput``) reports the
close if it has arrived; if only the FATAL message has (the close can follow a moment later), or a harmless message
(a parameter change after a configuration reload, a notice), one empty statement tells which. The common case, a
socket with nothing to read, costs a zero-timeout ``poll`` (a system call, not a round trip), which is why it can
run before every cursor (``rmm.database.base``) and before every heartbeat batch (``devices.agent_api.sql.raw_cursor``)
without touching the heartbeat's throughput.

What it cannot see is a peer that vanished without closing (a host powered off, a dropped route): the first statement
on such a connection fails instead (503), and the broken connection is discarded when it is given back — a
``SELECT 1`` before every use would not help there either, as it would hang on the same dead socket.

``is_database_unavailable(exc)``: does this exception mean "no database now" (connection refused or lost, the pool
had no connection to give in time, the server is shutting down or full)? ``rmm.errors.handler500`` answers those
503 ``service_unavailable`` under ``/api/``. An error in the SQL itself (a constraint, a statement timeout, a
lock timeout) is not one: those remain what they are.
"""

from __future__ import annotations

import select

import psycopg
from django.db.utils import InterfaceError as DjangoInterfaceError
from django.db.utils import OperationalError as DjangoOperationalError
from psycopg.pq import ConnStatus, TransactionStatus

try:
    # A zero-timeout poll never blocks, so gevent's cooperative version (a trip through its hub) is not needed.
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a dependency; this keeps the module usable without it
    _poll = select.poll

# SQLSTATEs of a server that is going away, starting or full: admin shutdown, crash shutdown, cannot connect now,
# too many connections (class 08 "connection exception" is matched whole).
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# libpq reads what has arrived; a close that has arrived is reported by the second read at the latest (the FATAL
# message, then the end of the stream).
_MAX_READS = 4


def closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether ``conn`` (idle, between statements) was closed by the server; no round trip (see module docstring)."""
    if conn.closed or conn.broken:
        return True
    pgconn = conn.pgconn
    if pgconn.status != ConnStatus.OK:
        return True
    if pgconn.transaction_status != TransactionStatus.IDLE:
        return False  # inside a transaction or a statement: what arrives belongs to it; the statement will tell
    poller = _poll()
    poller.register(pgconn.socket, select.POLLIN)
    if not poller.poll(0):
        return False  # nothing arrived unasked: the usual case
    try:
        for _ in range(_MAX_READS):
            pgconn.consume_input()
            if not poller.poll(0):
                break
        # Still open after reading what arrived: the server's goodbye without its close yet, or a harmless message.
        if not conn.autocommit:
            return True  # an empty statement would open a transaction here; a new connection is the safe answer
        conn.execute("")
    except psycopg.Error:
        return True
    return False


def is_database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (a Django database error or psycopg's own, e.g. from a raw cursor) means the database
    cannot be reached now, rather than that a statement was wrong."""
    seen = 0
    while exc is not None and seen < 5:  # Django wraps psycopg's error: look at the cause too
        if isinstance(exc, psycopg.InterfaceError | DjangoInterfaceError):
            return True  # "the connection is closed"
        if isinstance(exc, psycopg.OperationalError):
            state = exc.sqlstate
            # No SQLSTATE: the client's own verdict (connection refused or lost, the pool's timeout).
            return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES
        if not isinstance(exc, DjangoOperationalError):
            return False
        exc = exc.__cause__
        seen += 1
    return False
