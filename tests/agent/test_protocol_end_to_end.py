"""The whole agent protocol through the HTTP layer, as an installed agent speaks it: enroll, check in, upload every
kind of inventory, receive a queued command with a heartbeat, report its result."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from devices.models import (
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.services.commands import queue_command
from tests import factories
from tests.agent.conftest import Agent, enroll, make_key
from tests.agent.test_inventory import ADAPTERS, CONFIG, CONNECTIONS, DISKS, REGISTRY, SOFTWARE


def speak_the_protocol(client: Client, raw_key: str) -> None:
    response = enroll(client, raw_key, hardwareInfo={"cpuModel": "EPYC", "cpuCores": 2})
    assert response.status_code == 201
    body = response.json()
    agent = Agent(client=client, agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"])

    assert agent.heartbeat().json() == {"commands": [], "configUpdate": None, "rotateToken": False}

    uploads = {
        "hardware": ({"cpuModel": "EPYC 9124", "cpuCores": 16, "ramTotalMb": 65536}, DeviceHardware, 1),
        "software": ({"software": SOFTWARE}, DeviceSoftware, 3),
        "disks": ({"disks": DISKS}, DeviceDisk, 2),
        "network": ({"adapters": ADAPTERS}, DeviceNetworkInterface, 2),
        "connections": ({"connections": CONNECTIONS}, DeviceNetworkConnection, 2),
        "registry-state": ({"entries": REGISTRY}, DeviceRegistryEntry, 2),
        "config-state": ({"entries": CONFIG}, DeviceConfigEntry, 2),
    }
    for kind, (upload, model, count) in uploads.items():
        assert agent.put(kind, upload).status_code == 204, kind
        assert model.objects.filter(device_id=agent.device_id).count() == count, kind
    assert DeviceHardware.objects.get(device_id=agent.device_id).cpu_model == "EPYC 9124"

    script = {"language": "powershell", "content": "Get-Service wuauserv", "timeoutSeconds": 120}
    command = queue_command(device=agent.device, type="script", payload=script)
    handed_out = agent.heartbeat().json()["commands"]
    assert handed_out == [{"id": str(command.pk), "type": "script", "payload": script}]
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.SENT

    result = {"status": "completed", "exitCode": 0, "stdout": "Running  wuauserv", "stderr": "", "durationMs": 640}
    assert agent.post(f"commands/{command.pk}/result", result).status_code == 200

    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.COMPLETED
    assert command.result == {
        "exitCode": 0,
        "stdout": "Running  wuauserv",
        "stderr": "",
        "durationMs": 640,
        "error": None,
    }
    assert DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 2

    new_token = agent.post("rotate-token").json()["authToken"]
    assert agent.get("config", token=new_token).json()["heartbeatIntervalSeconds"] == 60


@pytest.mark.django_db
def test_an_agent_speaks_the_whole_protocol(client):
    raw, _ = make_key(factories.site())
    speak_the_protocol(client, raw)


@pytest.mark.django_db(transaction=True)
def test_the_whole_protocol_works_through_the_group_commit_writer():
    """Outside a test transaction heartbeats go through the writer thread and its own connection."""
    raw, _ = make_key(factories.site())
    try:
        speak_the_protocol(Client(), raw)
    finally:
        connection.close()
