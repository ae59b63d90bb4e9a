"""A device's lifecycle (devices/services/status.py), and the one transition kept outside it: a heartbeat brings an
offline device online in the heartbeat's own SQL (devices/agent_api/sql.py). These tests tie that SQL to the
lifecycle: a heartbeat changes only what the lifecycle lets it change."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import Device
from devices.services import status
from rmm.domain_errors import Conflict, Invalid
from rmm.errors import domain_error_status
from tests import factories
from tests.agent.conftest import Agent, enroll, make_key

pytestmark = pytest.mark.django_db

Status = Device.Status


@pytest.fixture
def agent(client: Client) -> Agent:
    raw, _ = make_key(factories.site())
    response = enroll(client, raw)
    assert response.status_code == 201, response.content
    body = response.json()
    return Agent(client=client, agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"])


@pytest.fixture(autouse=True)
def _stop_the_heartbeat_writer():
    yield
    from devices.agent_api.heartbeat import heartbeat_writer

    heartbeat_writer.stop()


# What a heartbeat answers, and the status it leaves, for each status a device can have.
HEARTBEAT_OUTCOMES = {
    Status.ONLINE: (200, Status.ONLINE),
    Status.OFFLINE: (200, Status.ONLINE),
    Status.MAINTENANCE: (200, Status.MAINTENANCE),
    Status.QUARANTINED: (403, Status.QUARANTINED),
    Status.DECOMMISSIONED: (403, Status.DECOMMISSIONED),
}


def test_every_status_has_a_heartbeat_outcome():
    assert set(HEARTBEAT_OUTCOMES) == set(Status)


@pytest.mark.parametrize("before", list(HEARTBEAT_OUTCOMES))
def test_a_heartbeat_changes_only_what_the_lifecycle_lets_it(agent, before):
    Device.objects.filter(pk=agent.device_id).update(status=before)
    answer, after = HEARTBEAT_OUTCOMES[before]

    response = agent.heartbeat()

    assert response.status_code == answer
    assert agent.device.status == after


def test_the_offline_sweep_and_a_heartbeat_agree(agent):
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=timezone.now() - dt.timedelta(hours=1))

    assert status.mark_offline() == 1
    assert agent.device.status == Status.OFFLINE
    assert agent.heartbeat().status_code == 200

    assert agent.device.status == Status.ONLINE
    assert status.mark_offline() == 0


# --- the service's own rules -----------------------------------------------------------------------------------


@pytest.fixture
def device(db) -> Device:
    return factories.device(factories.site())


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (Status.ONLINE, Status.MAINTENANCE, True),
        (Status.OFFLINE, Status.MAINTENANCE, True),
        (Status.MAINTENANCE, Status.ONLINE, True),
        (Status.MAINTENANCE, Status.OFFLINE, True),
        (Status.ONLINE, Status.ONLINE, True),
        (Status.ONLINE, Status.OFFLINE, False),
        (Status.ONLINE, Status.QUARANTINED, False),
        (Status.QUARANTINED, Status.MAINTENANCE, False),
        (Status.MAINTENANCE, Status.DECOMMISSIONED, False),
    ],
)
def test_status_moves_by_hand_only_into_or_out_of_maintenance(device, current, new, allowed):
    Device.objects.filter(pk=device.pk).update(status=current)
    if allowed:
        assert status.update_device(device=device, actor=None, status=new).status == new
        return
    with pytest.raises(Invalid) as refused:
        status.update_device(device=device, actor=None, status=new)
    assert set(refused.value.fields) == {"status"}
    device.refresh_from_db()
    assert device.status == current


def test_a_maintenance_change_is_audited_with_its_from_and_to(device):
    status.update_device(device=device, actor=None, status=Status.MAINTENANCE)

    row = AuditLog.objects.get(action="device.update", target_id=str(device.pk))
    assert row.details == {"changed": ["status"], "status": {"from": "online", "to": "maintenance"}}


@pytest.mark.parametrize(
    "transition",
    [
        lambda device: status.update_device(device=device, actor=None, display_name="x"),
        lambda device: status.quarantine(device=device, reason="x", actor=None),
        lambda device: status.request_token_rotation(device=device, actor=None),
    ],
    ids=["edit", "quarantine", "rotate-token"],
)
def test_a_decommissioned_device_never_changes_again(device, transition):
    status.decommission(device=device, actor=None)
    device.refresh_from_db()
    before = (device.status, device.display_name, device.updated_at, device.agent_token_issued_at)

    with pytest.raises(Conflict) as refused:
        transition(device)

    assert domain_error_status(refused.value) == 409
    device.refresh_from_db()
    assert (device.status, device.display_name, device.updated_at, device.agent_token_issued_at) == before


def test_quarantine_then_approve_sets_updated_at_each_time(device):
    Device.objects.filter(pk=device.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    device.refresh_from_db()
    stamps = [device.updated_at]

    stamps.append(status.quarantine(device=device, reason="alert", actor=None).updated_at)
    stamps.append(status.approve(device=device, actor=None).updated_at)

    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    actions = AuditLog.objects.filter(target_id=str(device.pk)).order_by("created_at").values_list("action", flat=True)
    assert list(actions) == ["device.quarantine", "device.approve"]
