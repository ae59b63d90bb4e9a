"""Running scripts over the technician API: POST scripts/{id}/run (scripts:execute and devices:execute on every
target; 400 and nothing queued otherwise), the runs with their progress, per-device results (skipped devices
included) in keyset pages, and cancelling a run."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditLog
from devices.models import DeviceCommand, DeviceGroupMembership
from scripts.models import ScriptRun

pytestmark = pytest.mark.django_db

INT_PARAMETER = [{"name": "days", "type": "int", "required": True}]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_error_shape(response, status: int, code: str = "validation_error") -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "message", "fields"}
    assert body["error"] == code
    return body["fields"]


def run(client, script, **body):
    return client.post(f"/api/v1/scripts/{script.pk}/run", body, format="json")


def test_a_technician_runs_a_script_on_devices_and_gets_the_run_with_its_counts(world, partner_technician, make_script):
    script = make_script(world.org_a, language="bash", parameters=INT_PARAMETER)  # linux and macOS
    linux, windows = world.devices[world.site_a1]

    response = run(
        client_for(partner_technician), script, deviceIds=[str(linux.pk), str(windows.pk)], parameters={"days": 7}
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scriptId"] == str(script.pk) and body["scriptName"] == script.name and body["version"] == 1
    assert body["trigger"] == "api" and body["requestedById"] == str(partner_technician.pk)
    assert body["queued"] == 1 and body["parameters"] == {"days": 7}
    assert body["skippedByReason"] == {"osNotSupported": 1, "decommissioned": 0, "quarantined": 0}
    assert body["progress"] == {
        "pending": 1, "sent": 0, "succeeded": 0, "failed": 0, "timedOut": 0, "cancelled": 0, "expired": 0,
        "skipped": 1, "total": 2,
    }  # fmt: skip
    command = DeviceCommand.objects.get(script_run_id=body["id"])
    assert command.device_id == linux.pk and command.type == "script"
    assert command.payload["env"] == {"RMM_PARAM_DAYS": "7"}
    assert AuditLog.objects.filter(action="script.run", target_id=body["id"], actor_user=partner_technician).exists()


def test_a_device_out_of_reach_refuses_the_whole_run_and_queues_nothing(world, make_partner_member, make_script):
    technician = make_partner_member(
        "selected@a.example", world.partner_a, "Partner Technician", org_access="selected", selected=[world.org_a]
    )
    script = make_script(world.org_a)
    mine = world.devices[world.site_a1][0]
    foreign = world.devices[world.site_b1][0]

    response = run(client_for(technician), script, deviceIds=[str(mine.pk), str(foreign.pk)])

    assert list(assert_error_shape(response, 400)) == ["deviceIds"]
    assert not ScriptRun.objects.exists()
    assert not DeviceCommand.objects.exists()


def test_a_role_without_execute_gets_403_and_nothing_is_queued(world, make_org_member, make_script):
    reader = make_org_member("reader@a.example", world.org_a, "Org User")  # every site; scripts:read only
    script = make_script(world.org_a)

    response = run(client_for(reader), script, deviceIds=[str(world.devices[world.site_a1][0].pk)])

    assert_error_shape(response, 403, "permission_denied")
    assert not DeviceCommand.objects.exists()


def test_bad_parameter_values_get_400_naming_each_parameter(world, org_admin, make_script):
    script = make_script(world.org_a, parameters=INT_PARAMETER)
    device = world.devices[world.site_a1][0]
    client = client_for(org_admin)

    wrong_type = run(client, script, deviceIds=[str(device.pk)], parameters={"days": "seven"})
    unknown = run(client, script, deviceIds=[str(device.pk)], parameters={"days": 1, "path": "/"})
    missing = run(client, script, deviceIds=[str(device.pk)])

    assert list(assert_error_shape(wrong_type, 400)) == ["parameters.days"]
    assert list(assert_error_shape(unknown, 400)) == ["parameters.path"]
    assert list(assert_error_shape(missing, 400)) == ["parameters.days"]
    assert not DeviceCommand.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"deviceIds": []},
        {"deviceIds": "all"},
        {"deviceIds": ["not-a-uuid"]},
        {"groupId": "not-a-uuid"},
        {"deviceIds": [], "groupId": None, "parameters": []},
    ],
)
def test_a_bad_target_gets_400_in_the_error_shape(world, org_admin, make_script, body):
    script = make_script(world.org_a)

    response = run(client_for(org_admin), script, **body)

    assert_error_shape(response, 400)
    assert not ScriptRun.objects.exists()


def test_a_run_on_a_group_queues_one_command_per_member(world, org_admin, make_script):
    script = make_script(world.org_a, language="python")  # every OS
    group = world.groups["A1 servers"]
    DeviceGroupMembership.objects.bulk_create(
        DeviceGroupMembership(group=group, device=device, org=world.org_a) for device in world.devices[world.site_a1]
    )

    response = run(client_for(org_admin), script, groupId=str(group.pk))

    assert response.status_code == 201, response.content
    assert response.json()["target"] == {"groupId": str(group.pk)} and response.json()["queued"] == 2
    assert DeviceCommand.objects.filter(script_run_id=response.json()["id"]).count() == 2


def test_a_group_out_of_reach_does_not_exist(world, org_admin, make_script):
    script = make_script(world.org_a)

    response = run(client_for(org_admin), script, groupId=str(world.groups["B1 servers"].pk))

    assert list(assert_error_shape(response, 400)) == ["groupId"]
    assert not ScriptRun.objects.exists()


def test_an_archived_script_does_not_run(world, org_admin, make_script):
    script = make_script(world.org_a)
    client = client_for(org_admin)
    client.delete(f"/api/v1/scripts/{script.pk}")

    response = run(client, script, deviceIds=[str(world.devices[world.site_a1][0].pk)])

    assert_error_shape(response, 409, "script_archived")
    assert not DeviceCommand.objects.exists()


def _finish(command: DeviceCommand, status: str, **result) -> None:
    now = timezone.now()
    DeviceCommand.objects.filter(pk=command.pk).update(
        status=status, sent_at=now, completed_at=now, result={"stdout": "", "stderr": "", "error": None, **result}
    )


def test_results_list_every_device_with_its_outcome_then_the_skipped_ones_in_keyset_pages(
    world, org_admin, make_script
):
    script = make_script(world.org_a, language="bash", success_exit_codes=[0, 3010])
    linux = [device for devices in world.devices.values() for device in devices if device.org_id == world.org_a.pk]
    client = client_for(org_admin)
    created = run(client, script, deviceIds=[str(device.pk) for device in linux]).json()
    commands = list(DeviceCommand.objects.filter(script_run_id=created["id"]).order_by("id"))
    _finish(commands[0], "completed", exitCode=3010, stdout="freed 2 GB\n", durationMs=812)
    _finish(commands[1], "completed", exitCode=1, stderr="disk busy")

    pages, cursor = [], None
    while True:
        response = client.get(
            f"/api/v1/script-runs/{created['id']}/results?limit=1" + (f"&cursor={cursor}" if cursor else "")
        )
        assert response.status_code == 200, response.content
        pages.append(response.json()["results"])
        cursor = response.json()["next"]
        if cursor is None:
            break

    rows = [row for page in pages for row in page]
    assert [len(page) for page in pages] == [1, 1, 1, 1]
    assert [row["status"] for row in rows] == ["succeeded", "failed", "skipped", "skipped"]
    assert rows[0]["exitCode"] == 3010 and rows[0]["stdout"] == "freed 2 GB\n" and rows[0]["durationMs"] == 812
    assert rows[0]["deviceName"] == commands[0].device.hostname and rows[0]["sentAt"] is not None
    assert rows[1]["stderr"] == "disk busy"
    assert {row["skipReason"] for row in rows[2:]} == {"os_not_supported"}
    assert {row["deviceName"] for row in rows[2:]} == {"a1-2", "a2-2"}  # the Windows devices
    assert all(row["commandId"] is None for row in rows[2:])
    whole = client.get(f"/api/v1/script-runs/{created['id']}/results").json()
    assert whole["results"] == rows and whole["next"] is None
    detail = client.get(f"/api/v1/script-runs/{created['id']}").json()
    assert detail["progress"]["succeeded"] == 1 and detail["progress"]["failed"] == 1
    assert detail["progress"]["skipped"] == 2 and detail["progress"]["total"] == 4


def test_results_filtered_by_status_are_exactly_the_rows_of_that_status(world, org_admin, make_script):
    # bash: the org's Windows devices are skipped; each linux/macOS command gets another outcome.
    script = make_script(world.org_a, language="bash", success_exit_codes=[0, 3])
    devices = [device for devices in world.devices.values() for device in devices if device.org_id == world.org_a.pk]
    client = client_for(org_admin)
    created = run(client, script, deviceIds=[str(device.pk) for device in devices]).json()
    commands = list(DeviceCommand.objects.filter(script_run_id=created["id"]).order_by("id"))
    assert len(commands) == 2
    _finish(commands[0], "completed", exitCode=3)  # a success code
    _finish(commands[1], "completed", exitCode=True)  # not a number: failed, as result_status says
    url = f"/api/v1/script-runs/{created['id']}/results"
    everything = client.get(url).json()["results"]

    for status in ("pending", "sent", "succeeded", "failed", "timedOut", "cancelled", "expired", "skipped"):
        response = client.get(url, {"status": status})
        assert response.status_code == 200, response.content
        assert response.json()["results"] == [row for row in everything if row["status"] == status], status
    assert {row["status"] for row in everything} == {"succeeded", "failed", "skipped"}
    assert list(assert_error_shape(client.get(url, {"status": "done"}), 400)) == ["status"]


def test_a_cursor_this_api_did_not_give_out_gets_400(world, org_admin, make_script):
    script = make_script(world.org_a)
    created = run(client_for(org_admin), script, deviceIds=[str(world.devices[world.site_a1][0].pk)]).json()

    response = client_for(org_admin).get(f"/api/v1/script-runs/{created['id']}/results?cursor=WyJza2lwcGVkIiw5OV0")

    assert "cursor" in assert_error_shape(response, 400)


def test_cancel_withdraws_the_pending_commands_with_an_audit_row(world, org_admin, make_script):
    script = make_script(world.org_a, language="python")
    client = client_for(org_admin)
    created = run(client, script, deviceIds=[str(device.pk) for device in world.devices[world.site_a1]]).json()
    sent = DeviceCommand.objects.filter(script_run_id=created["id"]).order_by("id").first()
    DeviceCommand.objects.filter(pk=sent.pk).update(status="sent", sent_at=timezone.now())

    response = client.post(f"/api/v1/script-runs/{created['id']}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["cancelledCommands"] == 1
    assert response.json()["progress"]["cancelled"] == 1 and response.json()["progress"]["sent"] == 1
    assert list(DeviceCommand.objects.filter(script_run_id=created["id"]).order_by("id").values_list("status",
                flat=True)) == ["sent", "cancelled"]  # fmt: skip
    assert AuditLog.objects.filter(action="script_run.cancel", target_id=created["id"]).exists()


def test_a_viewer_reads_runs_but_cannot_cancel_them(world, org_admin, viewer, make_script):
    script = make_script(world.org_a)
    created = run(client_for(org_admin), script, deviceIds=[str(world.devices[world.site_a1][0].pk)]).json()
    client = client_for(viewer)

    assert client.get(f"/api/v1/script-runs/{created['id']}").status_code == 200
    assert_error_shape(client.post(f"/api/v1/script-runs/{created['id']}/cancel"), 403, "permission_denied")
    assert DeviceCommand.objects.get(script_run_id=created["id"]).status == "pending"


def test_the_run_list_filters_by_script_and_trigger_newest_first(world, org_admin, make_script):
    first, second = make_script(world.org_a), make_script(world.org_a)
    device = str(world.devices[world.site_a1][0].pk)
    client = client_for(org_admin)
    a = run(client, first, deviceIds=[device]).json()["id"]
    b = run(client, second, deviceIds=[device]).json()["id"]
    c = run(client, first, deviceIds=[device]).json()["id"]

    def ids(query: str = "") -> list[str]:
        response = client.get(f"/api/v1/script-runs{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [c, b, a]
    assert ids(f"?scriptId={first.pk}") == [c, a]
    assert ids("?trigger=api") == [c, b, a]
    assert ids("?trigger=schedule") == []
    assert ids("?limit=2") == [c, b]


def test_an_outsider_gets_404_for_a_run_and_its_results(world, org_admin, outsider, make_script):
    script = make_script(world.org_a)
    created = run(client_for(org_admin), script, deviceIds=[str(world.devices[world.site_a1][0].pk)]).json()
    client = client_for(outsider)

    assert_error_shape(client.get(f"/api/v1/script-runs/{created['id']}"), 404, "not_found")
    assert_error_shape(client.get(f"/api/v1/script-runs/{created['id']}/results"), 404, "not_found")
    assert_error_shape(client.post(f"/api/v1/script-runs/{created['id']}/cancel"), 404, "not_found")
