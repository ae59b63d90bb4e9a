"""An answer carrying claimed commands that the server cannot deliver gives them back (issue 10, item 5).

The rule (devices/agent_api/delivery.py, README "Agents"): a command is handed out once per claim; when the answer that
carries it cannot be delivered (the agent is gone), the claim is undone (``pending``, ``sent_at`` NULL, only while
still ``sent`` with that claim's ``sent_at``) and the command is offered at the next check-in. These tests drive the
response object as a WSGI server does: iterate, write each chunk, then ``close()``. The same rule against a real
gunicorn is in test_answers_agree_with_what_is_stored.py.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client, RequestFactory
from django.utils import timezone

from devices.agent_api import sql, views
from devices.agent_api.delivery import CommandsAnswer, commands_answer
from devices.models import DeviceCommand
from devices.services.commands import queue_command, record_result
from tests.agent.conftest import BASE

pytestmark = pytest.mark.django_db


@pytest.fixture
def claimed(db, agent):
    """Two commands claimed for ``agent`` as a heartbeat claims them; (answer data, sent_at)."""
    for kind in ("reboot", "refresh_inventory"):
        queue_command(device=agent.device, type=kind, payload=None)
    now = timezone.now()
    rows = sql.claim_commands(sql.raw_cursor(), device_id=agent.device.pk, now=now)
    data = {"commands": [{"id": str(i), "type": t, "payload": json.loads(p)} for i, t, p in rows]}
    return data, now


@pytest.fixture
def sockets():
    server_side, client_side = socket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


def answer_for(agent, claimed, server_side) -> CommandsAnswer:
    data, sent_at = claimed
    request = RequestFactory().post("/", **{"gunicorn.socket": server_side})
    answer = commands_answer(request, data, device_id=agent.device.pk, sent_at=sent_at, agent_id=agent.agent_id)
    assert isinstance(answer, CommandsAnswer)
    return answer


def closed_by_the_server(answer) -> None:
    """``answer.close()`` as a WSGI server calls it, keeping the test's connection (as Django's test client does)."""
    request_finished.disconnect(close_old_connections)
    try:
        answer.close()
    finally:
        request_finished.connect(close_old_connections)


def statuses(agent) -> set:
    return set(DeviceCommand.objects.filter(device_id=agent.device_id).values_list("status", "sent_at"))


def test_an_answer_the_server_wrote_leaves_the_commands_sent(agent, claimed, sockets):
    answer = answer_for(agent, claimed, sockets[0])
    written = [chunk for chunk in answer]  # the server writes each chunk, then asks for the next
    closed_by_the_server(answer)
    assert json.loads(b"".join(written)) == claimed[0]
    assert statuses(agent) == {(DeviceCommand.Status.SENT, claimed[1])}


def test_an_answer_whose_write_failed_returns_its_commands_to_pending(agent, claimed, sockets):
    answer = answer_for(agent, claimed, sockets[0])
    body = iter(answer)
    next(body)  # handed to the server, whose write then fails (a reset connection): it closes the response
    closed_by_the_server(answer)
    assert statuses(agent) == {(DeviceCommand.Status.PENDING, None)}


def test_an_agent_that_closed_its_connection_gets_no_commands_and_they_stay_pending(agent, claimed, sockets):
    answer = answer_for(agent, claimed, sockets[0])
    sockets[1].close()  # the agent gave up waiting
    written = b"".join(answer)
    closed_by_the_server(answer)
    assert len(written) == len(answer.content)  # what Content-Length announced
    assert json.loads(written) == {"commands": []}
    assert statuses(agent) == {(DeviceCommand.Status.PENDING, None)}


def test_a_pipelined_request_waiting_on_the_connection_is_not_taken_for_a_goodbye(agent, claimed, sockets):
    sockets[1].sendall(b"POST /api/v1/agents/x/heartbeat HTTP/1.1\r\n")
    answer = answer_for(agent, claimed, sockets[0])
    assert json.loads(b"".join(answer)) == claimed[0]
    closed_by_the_server(answer)
    assert statuses(agent) == {(DeviceCommand.Status.SENT, claimed[1])}


def test_a_command_finished_meanwhile_is_not_returned_to_pending(agent, claimed, sockets):
    answer = answer_for(agent, claimed, sockets[0])
    first = claimed[0]["commands"][0]["id"]
    record_result(device_id=agent.device.pk, command_id=uuid.UUID(first), status="completed", result={"exitCode": 0})
    next(iter(answer))
    closed_by_the_server(answer)
    by_id = dict(DeviceCommand.objects.filter(device_id=agent.device_id).values_list("id", "status"))
    assert sorted(by_id.values()) == [DeviceCommand.Status.COMPLETED, DeviceCommand.Status.PENDING]


def test_commands_claimed_with_get_commands_come_back_too_when_the_answer_is_not_delivered(agent, sockets):
    queue_command(device=agent.device, type="reboot", payload=None)
    request = RequestFactory().get(
        f"{BASE}/{agent.agent_id}/commands",
        headers={"authorization": f"Bearer {agent.token}"},
        **{"gunicorn.socket": sockets[0]},
    )
    answer = views.claim_commands(request, agent_id=agent.agent_id)
    assert answer.status_code == 200 and isinstance(answer, CommandsAnswer)
    next(iter(answer))
    closed_by_the_server(answer)  # the write failed
    assert statuses(agent) == {(DeviceCommand.Status.PENDING, None)}
    assert len(Client().get(f"{BASE}/{agent.agent_id}/commands", headers=agent.auth()).json()["commands"]) == 1


def test_an_answer_without_commands_is_a_plain_response(agent):
    response = agent.heartbeat()
    assert response.status_code == 200 and not isinstance(response, CommandsAnswer)
