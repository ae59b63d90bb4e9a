"""The DRF base of the agent's views (devices.agent_api.views.AgentView) answers as the plain views did: JSON
whatever the Accept header, no browsable API, no CSRF check (bearer tokens, no cookies), 405 for methods a view
does not have (OPTIONS included) before the token is looked at."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from devices.models import Device, DeviceCommand
from devices.services.commands import queue_command
from tests.agent.conftest import BASE, assert_error, enrollment_body

pytestmark = pytest.mark.django_db


def test_a_client_that_enforces_csrf_can_enroll_and_call_the_agent_views(key):
    client = Client(enforce_csrf_checks=True)
    enrolled = client.post(f"{BASE}/enroll", data=json.dumps(enrollment_body(key[0])), content_type="application/json")
    assert enrolled.status_code == 201, enrolled.content
    body = enrolled.json()
    rotated = client.post(
        f"{BASE}/{body['agentId']}/rotate-token", headers={"authorization": f"Bearer {body['authToken']}"}
    )
    assert rotated.status_code == 200
    assert Device.objects.get(agent_id=body["agentId"]).agent_token_hash is not None


def test_an_agent_view_answers_json_whatever_the_accept_header(agent):
    for accept in ("text/html", "application/xml", "*/*"):
        response = agent.get("config", accept=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"heartbeatIntervalSeconds", "metricsCollectionIntervalSeconds"}


@pytest.mark.parametrize("method", ["options", "head", "put", "delete"])
def test_a_method_the_view_does_not_have_gets_405_before_the_token_is_checked(client, agent, method):
    response = getattr(client, method)(f"{BASE}/{agent.agent_id}/config", headers=agent.auth("rmm_" + "0" * 64))
    assert response.status_code == 405
    if method != "head":
        assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_a_head_of_the_command_claim_claims_nothing(client, agent):
    queue_command(device=agent.device, type="reboot", payload=None)
    assert client.head(f"{BASE}/{agent.agent_id}/commands", headers=agent.auth()).status_code == 405
    assert DeviceCommand.objects.get(device_id=agent.device_id).status == DeviceCommand.Status.PENDING
