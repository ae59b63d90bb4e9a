"""Re-running a command queues a new one like it through queue_command (devices.services.commands.rerun_command)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import Device, DeviceCommand
from devices.services.commands import CommandRejected, queue_command, rerun_command
from rmm.domain_errors import Conflict
from scripts.models import Script
from scripts.services.library import save_script
from scripts.services.runs import start_run

pytestmark = pytest.mark.django_db

PAYLOAD = {"language": "bash", "content": "uptime", "timeoutSeconds": 60, "env": {"LANG": "C"}}


@pytest.fixture
def device(world):
    return world.devices[world.site_a1][0]


def finished(command: DeviceCommand, status: str = "failed") -> DeviceCommand:
    now = timezone.now()
    DeviceCommand.objects.filter(pk=command.pk).update(
        status=status, sent_at=now, completed_at=now, result={"exitCode": 2, "stdout": "", "stderr": "boom"}
    )
    command.refresh_from_db()
    return command


def test_a_rerun_queues_a_new_pending_command_with_the_same_device_type_and_payload(device, org_admin, viewer):
    original = finished(queue_command(device=device, type="script", payload=PAYLOAD, created_by=viewer))

    again = rerun_command(command=original, actor=org_admin, ip="192.0.2.7")

    assert again.pk != original.pk
    again.refresh_from_db()
    assert (again.device_id, again.org_id, again.type, again.payload) == (device.pk, device.org_id, "script", PAYLOAD)
    assert (again.status, again.created_by, again.result, again.sent_at) == ("pending", org_admin, None, None)
    assert again.expires_at > timezone.now()
    original.refresh_from_db()
    assert (original.status, original.result["stderr"]) == ("failed", "boom")  # the old one is untouched


def test_a_rerun_writes_the_queue_audit_row_with_its_actor(device, org_admin):
    original = queue_command(device=device, type="reboot", payload={}, created_by=None)

    again = rerun_command(command=original, actor=org_admin, ip="192.0.2.7")

    row = AuditLog.objects.get(action="command.queue", target_id=str(again.pk))
    assert (row.actor_user, row.ip, row.details["type"]) == (org_admin, "192.0.2.7", "reboot")


def test_a_pending_command_can_be_run_again_beside_itself(device, org_admin):
    original = queue_command(device=device, type="refresh_inventory", payload={})

    rerun_command(command=original, actor=org_admin)

    assert DeviceCommand.objects.filter(device=device, type="refresh_inventory", status="pending").count() == 2


def test_a_decommissioned_device_refuses_a_rerun_and_nothing_is_queued(device, org_admin):
    original = finished(queue_command(device=device, type="reboot", payload={}), status="completed")
    Device.objects.filter(pk=device.pk).update(status=Device.Status.DECOMMISSIONED)

    with pytest.raises(Conflict) as refused:
        rerun_command(command=original, actor=org_admin)

    assert refused.value.code == "device_decommissioned"
    assert DeviceCommand.objects.count() == 1


def test_a_payload_todays_checks_refuse_is_not_queued_again(device, org_admin):
    original = queue_command(device=device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk=original.pk).update(payload={"force": True})
    original.refresh_from_db()

    with pytest.raises(CommandRejected):
        rerun_command(command=original, actor=org_admin)

    assert DeviceCommand.objects.count() == 1


def test_a_script_runs_command_is_rerun_on_its_own_with_the_same_script_and_parameters(world, device, org_admin):
    script = save_script(
        script=Script(
            org=world.org_a,
            name="Print",
            language="bash",
            content='echo "$RMM_PARAM_WHAT"\n',
            parameters=[{"name": "what", "type": "string", "required": True}],
        ),
        actor=None,
    )
    run = start_run(script=script, actor=org_admin, trigger="api", parameters={"what": "hi"}, device_ids=[device.pk])
    original = finished(DeviceCommand.objects.get(script_run=run))
    assert original.payload["scriptRunId"] == str(run.pk)

    again = rerun_command(command=original, actor=org_admin)

    again.refresh_from_db()
    assert again.script_run_id is None
    assert "scriptRunId" not in again.payload
    assert again.payload == {key: value for key, value in original.payload.items() if key != "scriptRunId"}
    assert again.payload["env"]["RMM_PARAM_WHAT"] == "hi"
    assert DeviceCommand.objects.filter(script_run=run).count() == 1  # the run's results are what the run queued
