"""A server process holds at most DATABASE_POOL_MAX_SIZE PostgreSQL connections, whatever the load (issue 10,
item 4): under gevent every concurrent request used to open a connection of its own and keep it, until PostgreSQL
answered "too many clients" and the API 500.

The end-to-end test runs the project's gunicorn (gevent, one worker, a pool of 4) against the test database and
fires 40 technician-API calls, 20 sign-ins and 10 heartbeats at once, while a sampler counts the server's
connections in ``pg_stat_activity``. The others check the pieces in-process: a connection PostgreSQL closed is
never handed out again, and "the database is unavailable" is answered 503 in the error shape, never 500.
"""

from __future__ import annotations

import hashlib
import secrets
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import psycopg_pool
import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.db import DatabaseError, connection
from django.db.utils import OperationalError as DjangoOperationalError

from accounts.auth import issue_api_token
from devices.agent_api import sql
from rmm.database import pool as database_pool
from rmm.database.availability import is_database_unavailable
from tests import factories
from tests.servers import Endpoint, Gunicorn, database_url, free_port, url_of_test_database

POOL_SIZE = 4
APPLICATION = "rmm-pool-test"  # the server's connections carry this name in pg_stat_activity
PASSWORD = "correct horse battery staple"


class ConnectionSampler(threading.Thread):
    """Counts the server's connections (by application_name) every few milliseconds; keeps the highest count."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.highest = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as sampler:
            while not self.stopping.is_set():
                count = sampler.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION]
                ).fetchone()[0]
                self.highest = max(self.highest, count)
                self.samples += 1
                time.sleep(0.005)


def _assert_ok_or_unavailable(status: int, headers: dict, body: dict, ok: int) -> None:
    assert status in (ok, 503), (status, body)
    if status == 503:
        assert set(body) == {"error", "message", "fields"}, body
        assert body["error"] == "service_unavailable", body
        if "retry-after" not in headers:  # the heartbeat's own 503 (its writer could not store it) has none
            assert body["message"].startswith("The server could not store this"), body


@pytest.mark.servers
@pytest.mark.django_db(transaction=True)
def test_the_server_holds_at_most_its_pool_of_connections_and_answers_503_never_500_beyond_it(
    world, partner_technician, tmp_path
):
    token, _ = issue_api_token(user=partner_technician, name="load", lifetime=None)
    # The server runs the production settings (Argon2); the test settings hash with MD5, which it would refuse.
    hasher = Argon2PasswordHasher()
    partner_technician.password = hasher.encode(PASSWORD, hasher.salt())
    partner_technician.save(update_fields=["password"])
    agent_tokens = {}
    for _ in range(10):
        agent_token = f"rmm_{secrets.token_hex(32)}"
        device = factories.device(world.site_a1, agent_token_hash=hashlib.sha256(agent_token.encode()).hexdigest())
        agent_tokens[device.agent_id] = agent_token

    sampler = ConnectionSampler(url_of_test_database())
    server = Gunicorn(
        url_of_test_database(application_name=APPLICATION),
        tmp_path / "gunicorn.log",
        DATABASE_POOL_MAX_SIZE=str(POOL_SIZE),
        DATABASE_POOL_TIMEOUT_SECONDS="3",
    )
    with server:
        sampler.start()

        def list_devices(_):
            endpoint = Endpoint(server.port, {"Authorization": f"Bearer {token}"})
            return (*endpoint.request("GET", "/api/v1/devices?limit=5"), 200)

        def sign_in(_):
            body = {"email": partner_technician.email, "password": PASSWORD}
            return (*Endpoint(server.port).request("POST", "/api/v1/auth/login", body), 200)

        def heartbeat(agent_id):
            endpoint = Endpoint(server.port, {"Authorization": f"Bearer {agent_tokens[agent_id]}"})
            return (*endpoint.request("POST", f"/api/v1/agents/{agent_id}/heartbeat", {"agentVersion": "1.0"}), 200)

        calls = [(list_devices, n) for n in range(40)] + [(sign_in, n) for n in range(20)]
        calls += [(heartbeat, agent_id) for agent_id in agent_tokens]
        with ThreadPoolExecutor(max_workers=len(calls)) as executor:
            answers = list(executor.map(lambda call: call[0](call[1]), calls))
        sampler.stopping.set()
        sampler.join(timeout=5)

    statuses = [status for status, *_ in answers]
    for status, headers, body, ok in answers:
        _assert_ok_or_unavailable(status, headers, body, ok)
    assert statuses.count(200) >= len(calls) // 4, statuses  # the server did serve, not only refuse
    assert sampler.samples > 10
    assert 1 <= sampler.highest <= POOL_SIZE, f"{sampler.highest} connections at once for a pool of {POOL_SIZE}"


def _wait_until_closed_by_server(pg_connection: psycopg.Connection) -> None:
    poller = select.poll()
    poller.register(pg_connection.pgconn.socket, select.POLLIN)
    assert poller.poll(5000), "the server's close did not arrive"


@pytest.mark.django_db(transaction=True)
def test_a_connection_postgresql_closed_is_replaced_before_the_next_orm_statement():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        first_pid = cursor.fetchone()[0]
    with psycopg.connect(url_of_test_database(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first_pid])
    _wait_until_closed_by_server(connection.connection)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != first_pid


@pytest.mark.django_db(transaction=True)
def test_the_agent_hot_path_cursor_replaces_a_connection_postgresql_closed():
    # The agent endpoints' own cursor skipped Django's check: after a restart every call failed until the kept
    # connection aged out (issue 10, item 7).
    cursor = sql.raw_cursor()
    first_pid = cursor.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(url_of_test_database(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first_pid])
    _wait_until_closed_by_server(connection.connection)

    cursor = sql.raw_cursor()
    assert cursor.execute("SELECT pg_backend_pid()").fetchone()[0] != first_pid
    assert sql.fetch_identity(cursor, "no-such-agent") is None  # prepared statements work on the new connection


def test_a_refused_or_lost_connection_means_the_database_is_unavailable():
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(database_url(name="x", host="127.0.0.1", port=free_port(), user="postgres"))
    assert is_database_unavailable(refused.value)
    wrapped = DjangoOperationalError("wrapped")
    wrapped.__cause__ = refused.value
    assert is_database_unavailable(wrapped)  # as Django raises it, with psycopg's error as the cause
    assert is_database_unavailable(database_pool.DatabaseUnreachable("down"))
    assert is_database_unavailable(psycopg_pool.PoolTimeout("no connection in time"))


@pytest.mark.django_db
def test_a_wrong_statement_is_not_an_unavailable_database():
    with pytest.raises(DatabaseError) as wrong, connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM devices")
    assert not is_database_unavailable(wrong.value)
    with (
        pytest.raises(psycopg.OperationalError) as cancelled,
        psycopg.connect(url_of_test_database(), autocommit=True) as own,
    ):
        own.execute("SET statement_timeout = 1")
        own.execute("SELECT pg_sleep(1)")
    assert cancelled.value.sqlstate == "57014"
    assert not is_database_unavailable(cancelled.value)  # a statement timeout is the statement's own problem
