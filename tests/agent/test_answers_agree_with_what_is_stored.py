"""An answer never contradicts what was stored (issue 10, item 5).

- A heartbeat the writer has taken is answered with the outcome of its batch, however long the batch waits (within
  the writer's own lock and statement timeouts, AGENT_GROUP_COMMIT_TIMEOUT_MS): 503 means nothing of it was stored,
  200 carries the commands its claim marked ``sent``. Before, the request gave up after 20 s with 503 while the
  batch went on to commit, and its command became ``sent`` without ever being delivered.
- A command is handed out once per claim; when the answer carrying it cannot be delivered (the agent is gone), the
  claim is undone and the command is offered at the next check-in (devices/agent_api/delivery.py). Tested here against
  a real gunicorn with an agent that gives up waiting; test_undelivered_answers.py drives the response object.

After each answer the stored state is watched for a second with the row lock gone: a batch that went on to commit
after its answer (the old behaviour) shows up there.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client

from devices.agent_api.group_commit import GroupCommitter
from devices.models import Device, DeviceCommand, DeviceTelemetry
from devices.services.commands import queue_command
from tests import factories
from tests.agent.conftest import BASE, Agent, enroll, heartbeat_body, make_key


def enrolled() -> Agent:
    raw, _ = make_key(factories.site())
    body = enroll(Client(), raw).json()
    return Agent(Client(), body["agentId"], body["authToken"], body["deviceId"])


@contextlib.contextmanager
def device_row_locked(device_id: str, *, hold_for: float = 30):
    """Another transaction holds ``SELECT … FOR UPDATE`` on the device row (until released, or ``hold_for`` s)."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(Device.objects.select_for_update().filter(pk=device_id))
                locked.set()
                release.wait(hold_for)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join(30)


def stays_true(check, seconds: float = 1.0) -> bool:
    """Whether ``check()`` holds now and for ``seconds`` after (each look in a fresh query)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(0.05)
    return check()


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


@pytest.fixture
def short_queue_wait(monkeypatch):
    """Requests give up waiting in the queue after 0.2 s (QUEUE_WAIT_SECONDS is 10 s)."""
    monkeypatch.setattr(GroupCommitter.submit, "__kwdefaults__", {"timeout": 0.2})


# ---- a row lock delays the batch past the request's wait ----


@pytest.mark.django_db(transaction=True)
def test_a_batch_held_past_the_writers_timeout_is_answered_503_and_stores_nothing(settings, short_queue_wait):
    settings.AGENT_GROUP_COMMIT_TIMEOUT_MS = 500
    agent = enrolled()
    command = queue_command(device=agent.device, type="reboot", payload=None)
    seen = agent.device.last_seen_at
    with device_row_locked(agent.device_id):
        started = time.monotonic()
        response = agent.heartbeat()
        waited = time.monotonic() - started

    assert response.status_code == 503, response.content
    assert response.json()["error"] == "service_unavailable"
    assert 0.4 < waited < 5  # answered when the batch hit the writer's lock timeout, not at the queue wait

    def nothing_stored():
        command.refresh_from_db()
        return (
            (command.status, command.sent_at) == (DeviceCommand.Status.PENDING, None)
            and not DeviceTelemetry.objects.filter(device_id=agent.device_id).exists()
            and Device.objects.get(pk=agent.device_id).last_seen_at == seen
        )

    assert stays_true(nothing_stored)


@pytest.mark.django_db(transaction=True)
def test_a_batch_held_past_the_queue_wait_but_within_the_timeout_is_answered_with_its_commands(short_queue_wait):
    agent = enrolled()
    command = queue_command(device=agent.device, type="reboot", payload=None)
    with device_row_locked(agent.device_id, hold_for=1.0):
        response = agent.heartbeat()

    assert response.status_code == 200, response.content
    assert [c["id"] for c in response.json()["commands"]] == [str(command.pk)]

    def stored_as_answered():
        command.refresh_from_db()
        return (
            command.status == DeviceCommand.Status.SENT
            and DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 1
        )

    assert stays_true(stored_as_answered)


@pytest.mark.django_db(transaction=True)
def test_the_writers_statements_run_with_its_timeouts_and_no_one_elses_do(settings):
    settings.AGENT_GROUP_COMMIT_TIMEOUT_MS = 1234
    seen: list = []

    def show(jobs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
            seen.append(cursor.fetchone())

    writer = GroupCommitter(show, name="test-writer", timeout_ms=lambda: settings.AGENT_GROUP_COMMIT_TIMEOUT_MS)
    writer.submit("job")
    writer.stop()
    assert seen == [("1234ms", "1234ms")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        assert cursor.fetchone() == ("0", "0")  # a request's connection is not bounded


# ---- the whole rule against a real gunicorn ----


@pytest.mark.django_db(transaction=True)
def test_an_agent_that_gives_up_before_its_delayed_answer_gets_its_command_at_the_next_check_in(tmp_path):
    from tests.servers import Endpoint, Gunicorn, url_of_test_database

    database = url_of_test_database()
    agent = enrolled()
    command = queue_command(device=agent.device, type="reboot", payload=None)
    body = json.dumps(heartbeat_body()).encode()
    request = (
        f"POST {BASE}/{agent.agent_id}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {agent.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    with Gunicorn(database, tmp_path / "gunicorn.log") as server:
        with device_row_locked(agent.device_id):
            impatient = socket.create_connection(("127.0.0.1", server.port))
            impatient.sendall(request)
            deadline = time.monotonic() + 10
            while not waiting_for_a_lock():  # the batch with this heartbeat waits for the row
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.05)
            impatient.close()  # the agent's timeout: it hangs up before the answer
        deadline = time.monotonic() + 10
        # The batch commits (the check-in itself counts), the answer finds the agent gone, the claim is undone.
        while True:
            command.refresh_from_db()
            committed = DeviceTelemetry.objects.filter(device_id=agent.device_id).exists()
            if committed and command.status == DeviceCommand.Status.PENDING and command.updated_at > command.created_at:
                break
            assert time.monotonic() < deadline, (committed, command.status, server.output())
            time.sleep(0.05)
        assert command.sent_at is None

        endpoint = Endpoint(server.port, headers={"Authorization": f"Bearer {agent.token}"})
        status, _, answer = endpoint.request("POST", f"{BASE}/{agent.agent_id}/heartbeat", heartbeat_body())
        endpoint.close()
        assert (status, [c["id"] for c in answer["commands"]]) == (200, [str(command.pk)])
        command.refresh_from_db()
        assert command.status == DeviceCommand.Status.SENT  # delivered this time: it stays sent
        assert "pending again" in server.output()
