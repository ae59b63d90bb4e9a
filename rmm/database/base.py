"""``ENGINE = "rmm.database"``: Django's PostgreSQL backend with ``rmm.database.pool.ConnectionPool``.

Django 5.2's own pool support is used as it is (``OPTIONS["pool"]``, ``CONN_MAX_AGE = 0``: "closing" a connection at
the end of a request gives it back to the pool), with two changes:

- ``pool`` builds our pool class (steady reconnection, fast refusal while the database is down, a check without a
  round trip; see ``rmm.database.pool``) instead of psycopg_pool's, with no round-trip ``check``.
- ``close_if_health_check_failed``, which Django runs before every cursor, drops a connection the server has closed
  (``availability.closed_by_server``: a zero-timeout poll) and so lets the next statement run on a fresh one.
  Django's own check is a ``SELECT 1`` round trip once per request, and it skips pooled connections altogether;
  code that holds a connection across requests (the heartbeat's group-commit writer) would keep a dead one.

With no ``DATABASE_URL``, the first connection (and ``dbshell``) starts the embedded PostgreSQL
(``rmm.embedded_pg.ensure_running``), so commands that need no database start nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql import client as postgresql_client

from rmm import embedded_pg
from rmm.database.availability import closed_by_server
from rmm.database.pool import ConnectionPool


class DatabaseClient(postgresql_client.DatabaseClient):
    def runshell(self, parameters):
        # dbshell connects with psql, not through the wrapper: start the embedded cluster (and find psql) first.
        embedded_pg.ensure_running(self.connection.settings_dict)
        super().runshell(parameters)


class DatabaseWrapper(postgresql.DatabaseWrapper):
    client_class = DatabaseClient
    # Django's PostgreSQL backend has these (its pool support), django-stubs does not describe them.
    _connection_pools: dict[str, ConnectionPool]
    _configure_connection: Callable[[psycopg.Connection[Any]], None]

    def get_connection_params(self):
        # Every connection, pooled or not (the pool is built from these), asks here first: the embedded cluster
        # starts when the first one is made, not when the settings are read (rmm/embedded_pg.py).
        embedded_pg.ensure_running(self.settings_dict)
        return super().get_connection_params()

    def close_pool(self):
        # Django's builds a pool just to close it (ensure_timezone calls this before any connection): that would
        # start the embedded cluster for nothing.
        if self.alias in self._connection_pools:
            super().close_pool()  # type: ignore[misc]  # Django 5.2 has it; django-stubs does not describe it

    @property
    def pool(self):
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections (CONN_MAX_AGE must be 0).")
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # Django sets what it wants when it takes the connection
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,  # opened by the first connection Django asks for, after gunicorn's fork
                configure=self._configure_connection,
                name=self.alias,
                **({} if pool_options is True else pool_options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]

    def close_if_health_check_failed(self):
        if self.connection is None or self.in_atomic_block:
            # Inside a transaction a new connection could not continue it: the next statement fails instead (503).
            return
        if closed_by_server(self.connection):
            self.connection.close()  # so the pool discards it rather than taking it back
            self.close()
