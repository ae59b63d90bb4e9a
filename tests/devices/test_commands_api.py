"""Technicians queue, list, read and cancel commands; agents claim and answer them."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditLog
from devices.models import Device, DeviceCommand
from devices.services.commands import CommandRejected, check_command

pytestmark = pytest.mark.django_db

SCRIPT = {"type": "script", "payload": {"language": "bash", "content": "uptime", "timeoutSeconds": 60}}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def device(world):
    return world.devices[world.site_a1][0]


def test_a_technician_queues_a_script_and_reads_it_back(device, partner_technician):
    client = client_for(partner_technician)
    response = client.post(f"/api/v1/devices/{device.pk}/commands", {**SCRIPT, "expiresInSeconds": 600}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["type"], body["payload"]) == ("pending", "script", SCRIPT["payload"])
    command = DeviceCommand.objects.get(pk=body["id"])
    assert command.created_by == partner_technician and command.org_id == device.org_id
    assert 590 <= (command.expires_at - timezone.now()).total_seconds() <= 600
    assert AuditLog.objects.filter(action="command.queue", target_id=body["id"]).exists()
    listed = client.get(f"/api/v1/devices/{device.pk}/commands").json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]
    assert client.get(f"/api/v1/commands/{body['id']}").json()["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "format_disk"}, "type"),
        ({"type": "script", "payload": {"language": "cobol", "content": "x"}}, "payload.language"),
        ({"type": "update", "payload": {}}, "payload.version"),
        ({**SCRIPT, "expiresInSeconds": 0}, "expiresInSeconds"),
    ],
)
def test_a_bad_command_is_refused_naming_the_field_and_nothing_is_queued(device, partner_technician, body, field):
    response = client_for(partner_technician).post(f"/api/v1/devices/{device.pk}/commands", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not DeviceCommand.objects.exists()


def test_a_script_carries_its_env_to_the_agent_as_given(device, partner_technician):
    env = {"RMM_PARAM_PATH": '"; rm -rf / #', "_private": "", "LANG": "C.UTF-8  \n"}
    body = {"type": "script", "payload": {**SCRIPT["payload"], "env": env}}
    response = client_for(partner_technician).post(f"/api/v1/devices/{device.pk}/commands", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["payload"]["env"] == env
    assert DeviceCommand.objects.get().payload["env"] == env


@pytest.mark.parametrize(
    ("env", "field"),
    [
        (["A=1"], "payload.env"),
        ({"1ST": "x"}, "payload.env.1ST"),
        ({"A-B": "x"}, "payload.env.A-B"),
        ({"A" * 129: "x"}, "payload.env." + "A" * 129),
        ({"A": 1}, "payload.env.A"),
        ({"A": None}, "payload.env.A"),
        ({f"V{n}": "" for n in range(65)}, "payload.env"),
        ({f"V{n}": "x" * 8192 for n in range(9)}, "payload.env"),
    ],
)
def test_a_bad_env_is_refused_naming_the_variable(device, partner_technician, env, field):
    body = {"type": "script", "payload": {**SCRIPT["payload"], "env": env}}
    response = client_for(partner_technician).post(f"/api/v1/devices/{device.pk}/commands", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not DeviceCommand.objects.exists()


def test_an_env_value_with_nul_is_refused_by_the_service_too():
    with pytest.raises(CommandRejected) as refused:
        check_command(type="script", payload={**SCRIPT["payload"], "env": {"A": "x\x00y"}}, expires_in_seconds=None)
    assert set(refused.value.fields) == {"payload.env.A"}


def test_a_technicians_command_cannot_claim_to_belong_to_a_script_run(device, partner_technician):
    body = {"type": "script", "payload": {**SCRIPT["payload"], "scriptRunId": "01934c1e-0000-7000-8000-000000000000"}}
    response = client_for(partner_technician).post(f"/api/v1/devices/{device.pk}/commands", body, format="json")
    assert response.status_code == 400
    assert "payload.scriptRunId" in response.json()["fields"]
    assert not DeviceCommand.objects.exists()


def test_queueing_needs_execute_reading_needs_read(device, org_user, outsider):
    client = client_for(org_user)  # devices read + write, no execute
    assert client.post(f"/api/v1/devices/{device.pk}/commands", SCRIPT, format="json").status_code == 403
    assert client.get(f"/api/v1/devices/{device.pk}/commands").status_code == 200
    assert client_for(outsider).post(f"/api/v1/devices/{device.pk}/commands", SCRIPT, format="json").status_code == 404
    assert not DeviceCommand.objects.exists()


def test_only_a_pending_command_can_be_cancelled(device, partner_technician):
    client = client_for(partner_technician)
    command_id = client.post(f"/api/v1/devices/{device.pk}/commands", {"type": "reboot"}, format="json").json()["id"]
    cancelled = client.post(f"/api/v1/commands/{command_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/commands/{command_id}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "command_not_pending"
    assert AuditLog.objects.filter(action="command.cancel", target_id=command_id).count() == 1


def test_a_command_of_a_device_out_of_reach_is_404(device, partner_technician, outsider):
    command_id = (
        client_for(partner_technician)
        .post(f"/api/v1/devices/{device.pk}/commands", {"type": "reboot"}, format="json")
        .json()["id"]
    )
    assert client_for(outsider).get(f"/api/v1/commands/{command_id}").status_code == 404
    assert client_for(outsider).post(f"/api/v1/commands/{command_id}/cancel").status_code == 404


def test_a_queued_command_goes_to_the_agent_and_its_result_comes_back(device, partner_technician):
    token = "rmm_" + "ab" * 32
    Device.objects.filter(pk=device.pk).update(agent_token_hash=hashlib.sha256(token.encode()).hexdigest())
    tech = client_for(partner_technician)
    command_id = tech.post(f"/api/v1/devices/{device.pk}/commands", SCRIPT, format="json").json()["id"]

    agent = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    beat = agent.post(
        f"/api/v1/agents/{device.agent_id}/heartbeat", {"agentVersion": "1.4.2"}, content_type="application/json"
    )
    assert beat.status_code == 200, beat.content
    assert [c["id"] for c in beat.json()["commands"]] == [command_id]
    assert tech.get(f"/api/v1/commands/{command_id}").json()["status"] == "sent"

    result = {
        "status": "completed",
        "exitCode": 0,
        "stdout": "up 3 days",
        "stderr": "",
        "durationMs": 40,
        "error": None,
    }
    posted = agent.post(
        f"/api/v1/agents/{device.agent_id}/commands/{command_id}/result", result, content_type="application/json"
    )
    assert posted.status_code == 200, posted.content
    seen = tech.get(f"/api/v1/commands/{command_id}").json()
    assert seen["status"] == "completed" and seen["result"]["stdout"] == "up 3 days"
    assert tech.post(f"/api/v1/commands/{command_id}/cancel").status_code == 409
