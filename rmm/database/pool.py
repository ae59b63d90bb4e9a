"""psycopg's connection pool, tuned for a server that must come back within a second of PostgreSQL.

Three changes to ``psycopg_pool.ConnectionPool``, each for a measured or observed reason (issue 10, items 4 and 7):

- **Steady reconnection.** psycopg_pool replaces a lost connection in the background, retrying with exponential
  backoff (1, 2, 4, 8 … s, giving up after five minutes). After an outage of a minute the pool then noticed
  PostgreSQL's return up to ~30 s late, and after five minutes never (then only a request's demand grew it again).
  Here a lost connection is retried every RECONNECT_INTERVAL seconds for as long as it takes: at most
  ``max_size`` cheap attempts per interval per process while the database is down, a working pool within
  RECONNECT_INTERVAL of its return.
- **No waiting for a database that is known to be down.** When an attempt to connect fails, the requests waiting
  for a connection are refused at once, and while no attempt has succeeded since and no idle connection is left,
  so is every new one (``DatabaseUnreachable``, answered 503, with the connection error's own words: a wrong
  password or database name reads as such, not as a timeout). The pool timeout stays for what it is for, a pool
  busy with other requests.
- **A check without a round trip.** psycopg_pool's ``check`` runs ``execute("")`` on every ``getconn`` and, when it
  fails, waits with the same backoff before trying the next idle connection, so after a restart a request could
  sleep 1 + 2 + 4 s walking past dead connections. Here ``getconn`` drops an idle connection the server has closed
  (``availability.closed_by_server``: a zero-timeout poll, no round trip) and takes the next one at once.
"""

from __future__ import annotations

from time import monotonic

import psycopg
import psycopg_pool
from psycopg_pool.base import AttemptWithBackoff

from rmm.database.availability import closed_by_server

# Seconds between attempts to replace a lost connection while the database is away (and the most by which the
# pool notices its return).
RECONNECT_INTERVAL = 0.5
# How long the pool keeps replacing a lost connection: as long as the outage lasts (psycopg_pool's default gives
# up after five minutes).
RECONNECT_FOREVER = 10 * 365 * 24 * 3600.0


class DatabaseUnreachable(psycopg.OperationalError):
    """The pool's latest attempt to connect failed and it has no connection left: the database is down. (Not a
    ``PoolTimeout``: psycopg_pool would replace it, and its message, with a generic one.)"""


class _SteadyRetry(AttemptWithBackoff):
    INITIAL_DELAY = RECONNECT_INTERVAL
    DELAY_BACKOFF = 1.0


class ConnectionPool(psycopg_pool.ConnectionPool):
    """``psycopg_pool.ConnectionPool`` with steady reconnection, fast refusal while the database is down, and a
    check without a round trip (module docstring). Built by ``rmm.database.base.DatabaseWrapper.pool``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("reconnect_timeout", RECONNECT_FOREVER)
        super().__init__(*args, **kwargs)
        # Why the latest attempt to open a connection failed, while none has succeeded since.
        self.connect_error: Exception | None = None

    def _unreachable(self) -> DatabaseUnreachable:
        return DatabaseUnreachable(f"the database cannot be reached: {self.connect_error}")

    def getconn(self, timeout: float | None = None):
        deadline = monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.connect_error is not None and not self._pool:
                raise self._unreachable()
            conn = super().getconn(deadline - monotonic())
            if not closed_by_server(conn):
                return conn
            # Closed, so putconn discards it and schedules a replacement; the next idle connection is tried at once.
            conn.close()
            self.putconn(conn)

    def _connect(self, timeout: float | None = None):
        try:
            conn = super()._connect(timeout)
        except Exception as error:
            self.connect_error = error
            with self._lock:
                while self._waiting:
                    self._waiting.popleft().fail(self._unreachable())
            raise
        self.connect_error = None
        return conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _SteadyRetry(timeout=self.reconnect_timeout), growing)
