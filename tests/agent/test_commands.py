"""Commands: queueing through the service, claiming (GET .../commands), results, and the sweeps that finish the
commands nobody will finish."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from devices.models import Device, DeviceCommand
from devices.services.commands import (
    CommandRejected,
    expire_pending_commands,
    queue_command,
    time_out_sent_commands,
)
from rmm.domain_errors import Conflict
from rmm.errors import domain_error_status
from tests import factories
from tests.agent.conftest import Agent, assert_error, enroll, make_key

pytestmark = pytest.mark.django_db

RESULT = {"status": "completed", "exitCode": 0, "stdout": "done\n", "stderr": "", "durationMs": 812, "error": None}


def claimed(agent) -> list[dict]:
    response = agent.get("commands")
    assert response.status_code == 200
    return response.json()["commands"]


# ---- queueing ----


def test_a_queued_command_is_pending_with_its_expiry(agent, settings):
    command = queue_command(device=agent.device, type="update", payload={"version": "1.5.0"}, created_by=None)
    assert command.status == DeviceCommand.Status.PENDING
    assert command.org_id == agent.device.org_id
    lifetime = command.expires_at - command.created_at
    assert lifetime == dt.timedelta(seconds=settings.COMMAND_DEFAULT_EXPIRY_SECONDS)
    command = queue_command(device=agent.device, type="reboot", payload=None, expires_in_seconds=60)
    assert command.expires_at - command.created_at == dt.timedelta(seconds=60) and command.payload == {}


@pytest.mark.parametrize(
    ("type_", "payload", "fields"),
    [
        ("format_disk", {}, {"type"}),
        ("script", {}, {"payload.language", "payload.content"}),
        ("script", {"language": "cobol", "content": "x"}, {"payload.language"}),
        ("script", {"language": "bash", "content": "  "}, {"payload.content"}),
        ("script", {"language": "bash", "content": "ls", "timeoutSeconds": 0}, {"payload.timeoutSeconds"}),
        ("script", {"language": "bash", "content": "ls", "timeoutSeconds": "60"}, {"payload.timeoutSeconds"}),
        ("update", {}, {"payload.version"}),
        ("reboot", {"force": True}, {"payload.force"}),
        ("refresh_inventory", [], {"payload"}),
    ],
)
def test_a_command_that_is_not_valid_is_refused_with_400(agent, type_, payload, fields):
    with pytest.raises(CommandRejected) as refused:
        queue_command(device=agent.device, type=type_, payload=payload)
    assert domain_error_status(refused.value) == 400 and refused.value.code == "validation_error"
    assert set(refused.value.fields) == fields
    assert not DeviceCommand.objects.exists()


def test_a_bad_expiry_is_refused(agent):
    with pytest.raises(CommandRejected) as refused:
        queue_command(device=agent.device, type="reboot", payload={}, expires_in_seconds=0)
    assert set(refused.value.fields) == {"expiresInSeconds"}


def test_a_decommissioned_device_cannot_be_given_commands(agent):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.DECOMMISSIONED)
    with pytest.raises(Conflict) as refused:
        queue_command(device=agent.device, type="reboot", payload={})
    assert (domain_error_status(refused.value), refused.value.code) == (409, "device_decommissioned")


# ---- claiming ----


def test_get_commands_claims_pending_commands_like_the_heartbeat(agent):
    command = queue_command(device=agent.device, type="shutdown", payload={})
    assert claimed(agent) == [{"id": str(command.pk), "type": "shutdown", "payload": {}}]
    assert claimed(agent) == []
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.SENT and command.sent_at is not None


# ---- results ----


def test_a_result_finishes_a_sent_command(agent):
    command = queue_command(device=agent.device, type="script", payload={"language": "bash", "content": "ls"})
    claimed(agent)

    response = agent.post(f"commands/{command.pk}/result", RESULT)

    assert response.status_code == 200
    assert response.json() == {"id": str(command.pk), "status": "completed"}
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.COMPLETED and command.completed_at is not None
    assert command.result == {"exitCode": 0, "stdout": "done\n", "stderr": "", "durationMs": 812, "error": None}


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_failed_and_timed_out_results_are_recorded(agent, status):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    body = {"status": status, "exitCode": 1, "error": "it broke"}
    assert agent.post(f"commands/{command.pk}/result", body).status_code == 200
    command.refresh_from_db()
    assert command.status == status and command.result["error"] == "it broke" and command.result["stdout"] is None


def test_the_same_result_twice_answers_200_and_changes_nothing(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    assert agent.post(f"commands/{command.pk}/result", RESULT).status_code == 200
    command.refresh_from_db()
    first = (command.completed_at, command.updated_at)

    response = agent.post(f"commands/{command.pk}/result", RESULT)

    assert response.status_code == 200 and response.json()["status"] == "completed"
    command.refresh_from_db()
    assert (command.completed_at, command.updated_at) == first


def test_a_different_result_for_a_finished_command_gets_409(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    assert agent.post(f"commands/{command.pk}/result", RESULT).status_code == 200
    assert_error(
        agent.post(f"commands/{command.pk}/result", {**RESULT, "exitCode": 3}), 409, "command_already_finished"
    )
    assert_error(
        agent.post(f"commands/{command.pk}/result", {**RESULT, "status": "failed"}), 409, "command_already_finished"
    )
    command.refresh_from_db()
    assert command.result["exitCode"] == 0 and command.status == "completed"


def test_a_result_for_a_command_the_server_timed_out_gets_409(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    DeviceCommand.objects.filter(pk=command.pk).update(sent_at=timezone.now() - dt.timedelta(days=1))
    assert time_out_sent_commands() == 1
    assert_error(agent.post(f"commands/{command.pk}/result", RESULT), 409, "command_already_finished")


def test_a_command_of_another_device_or_unknown_gets_404(agent, make_agent):
    other = make_agent()
    theirs = queue_command(device=other.device, type="reboot", payload={})
    claimed(other)
    pending = queue_command(device=agent.device, type="reboot", payload={})

    assert_error(agent.post(f"commands/{theirs.pk}/result", RESULT), 404, "command_not_found")
    assert_error(agent.post("commands/01934c1e-0000-7000-8000-000000000000/result", RESULT), 404, "command_not_found")
    assert_error(agent.post("commands/not-a-uuid/result", RESULT), 404, "command_not_found")
    assert_error(agent.post(f"commands/{pending.pk}/result", RESULT), 404, "command_not_found")  # never sent
    theirs.refresh_from_db()
    assert theirs.status == DeviceCommand.Status.SENT


def test_a_result_needs_a_final_status_and_sane_fields(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    body = {"status": "running", "exitCode": "0", "stdout": 5, "durationMs": -1}
    answer = assert_error(agent.post(f"commands/{command.pk}/result", body), 400, "validation_error")
    assert set(answer["fields"]) == {"status", "exitCode", "stdout", "durationMs"}


def test_stdout_and_stderr_are_limited_to_one_mebibyte_each(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    claimed(agent)
    too_long = {**RESULT, "stdout": "é" * (512 * 1024 + 1), "stderr": "x" * (1024 * 1024 + 1)}
    answer = assert_error(agent.post(f"commands/{command.pk}/result", too_long), 400, "validation_error")
    assert set(answer["fields"]) == {"stdout", "stderr"}
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.SENT

    exactly = {**RESULT, "stdout": "x" * (1024 * 1024), "stderr": "y" * (1024 * 1024)}
    assert agent.post(f"commands/{command.pk}/result", exactly).status_code == 200


# ---- the sweeps ----


def test_the_expiry_sweep_expires_exactly_the_pending_commands_past_expires_at(agent):
    device, now = agent.device, timezone.now()
    past = queue_command(device=device, type="reboot", payload={})
    future = queue_command(device=device, type="reboot", payload={})
    sent_past = queue_command(device=device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk__in=[past.pk, sent_past.pk]).update(expires_at=now - dt.timedelta(seconds=1))
    DeviceCommand.objects.filter(pk=sent_past.pk).update(status=DeviceCommand.Status.SENT, sent_at=now)

    assert expire_pending_commands() == 1

    statuses = dict(DeviceCommand.objects.values_list("pk", "status"))
    assert statuses == {past.pk: "expired", future.pk: "pending", sent_past.pk: "sent"}
    assert claimed(agent) == [{"id": str(future.pk), "type": "reboot", "payload": {}}]


def test_the_timeout_sweep_times_out_exactly_the_sent_commands_past_their_timeout(agent, settings):
    settings.COMMAND_SENT_TIMEOUT_SECONDS = 3600
    settings.COMMAND_TIMEOUT_GRACE_SECONDS = 300
    device, now = agent.device, timezone.now()
    script = {"language": "bash", "content": "sleep 10", "timeoutSeconds": 60}
    cases = {
        "script past its 60 s + 300 s grace": ("script", script, now - dt.timedelta(seconds=361), "timeout"),
        "script within its timeout": ("script", script, now - dt.timedelta(seconds=300), "sent"),
        "reboot past the default hour": ("reboot", {}, now - dt.timedelta(seconds=3601), "timeout"),
        "reboot within the default hour": ("reboot", {}, now - dt.timedelta(seconds=3000), "sent"),
    }
    ids = {}
    for name, (type_, payload, sent_at, _) in cases.items():
        command = queue_command(device=device, type=type_, payload=payload)
        DeviceCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=sent_at)
        ids[name] = command.pk
    finished = queue_command(device=device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk=finished.pk).update(status="completed", sent_at=now - dt.timedelta(days=2))

    assert time_out_sent_commands() == 2

    for name, (*_, expected) in cases.items():
        command = DeviceCommand.objects.get(pk=ids[name])
        assert command.status == expected, name
        if expected == "timeout":
            assert command.completed_at is not None and command.result["error"]
    assert DeviceCommand.objects.get(pk=finished.pk).status == "completed"


def test_the_management_command_runs_both_sweeps(agent, capsys):
    command = queue_command(device=agent.device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk=command.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    call_command("expire_commands")
    assert "commands expired: 1; timed out: 0" in capsys.readouterr().out
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.EXPIRED


# ---- races ----


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_claims_never_return_the_same_command():
    site = factories.site()
    raw, _ = make_key(site)
    body = enroll(Client(), raw).json()
    device = Device.objects.get(pk=body["deviceId"])
    queued = {str(queue_command(device=device, type="refresh_inventory", payload={}).pk) for _ in range(15)}

    barrier = threading.Barrier(4)
    seen: list[list[str]] = []

    def claim(use_heartbeat: bool) -> None:
        agent = Agent(client=Client(), agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"])
        try:
            barrier.wait(timeout=10)
            response = agent.heartbeat() if use_heartbeat else agent.get("commands")
            seen.append([command["id"] for command in response.json()["commands"]])
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(n % 2 == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    handed_out = [command_id for batch in seen for command_id in batch]
    assert len(handed_out) == len(set(handed_out)) == 15
    assert set(handed_out) == queued
    assert all(len(batch) <= 10 for batch in seen)
    assert DeviceCommand.objects.filter(status="sent").count() == 15
