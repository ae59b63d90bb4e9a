"""The commands list in the console: queueing a command ("Add"), a command's readable page, cancel and run again,
offered to the people the API lets run commands (devices:execute) and to nobody else."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import Device, DeviceCommand
from devices.services.commands import queue_command
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

ADD = admin_url(DeviceCommand, "add")
LIST = admin_url(DeviceCommand, "changelist")


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


@pytest.fixture
def device(world) -> Device:
    return world.devices[world.site_a1][0]


def finished(command: DeviceCommand, *, status="failed", result=None) -> DeviceCommand:
    now = timezone.now()
    DeviceCommand.objects.filter(pk=command.pk).update(
        status=status,
        sent_at=now - dt.timedelta(seconds=4),
        completed_at=now,
        result=result or {"exitCode": 1, "stdout": "disk full\n", "stderr": "<b>no space</b>", "durationMs": 3800},
    )
    command.refresh_from_db()
    return command


# --- Queueing a command ---------------------------------------------------------------------------------------------


def test_a_partner_technician_queues_a_script_from_the_add_page(device, partner_technician):
    client = admin_as(partner_technician)
    assert client.get(ADD).status_code == 200

    response = client.post(
        ADD,
        {"device": device.pk, "type": "script", "language": "bash", "content": "df -h\n", "timeout_seconds": "120"},
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    command = DeviceCommand.objects.get()
    assert response["Location"] == admin_url(DeviceCommand, "change", command.pk)
    assert (command.device, command.type, command.status, command.created_by) == (
        device,
        "script",
        "pending",
        partner_technician,
    )
    assert command.payload == {"language": "bash", "content": "df -h\n", "timeoutSeconds": 120}
    assert AuditLog.objects.filter(action="command.queue", target_id=str(command.pk)).count() == 1


def test_a_reboot_takes_no_payload_whatever_the_script_fields_hold(device, partner_technician):
    response = admin_as(partner_technician).post(
        ADD, {"device": device.pk, "type": "reboot", "language": "bash", "content": "ignored", "expires_in_minutes": 5}
    )

    assert response.status_code == 302
    command = DeviceCommand.objects.get()
    assert (command.type, command.payload) == ("reboot", {})
    assert 290 <= (command.expires_at - command.created_at).total_seconds() <= 300


def test_a_bad_payload_is_shown_on_its_field_and_nothing_is_queued(device, partner_technician):
    response = admin_as(partner_technician).post(ADD, {"device": device.pk, "type": "script", "language": "bash"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["content"] == ["The script to run is required."]
    assert not DeviceCommand.objects.exists()


def test_an_update_needs_its_version(device, partner_admin):
    response = admin_as(partner_admin).post(ADD, {"device": device.pk, "type": "update"})

    assert response.status_code == 200
    assert "version" in response.context["adminform"].form.errors
    assert not DeviceCommand.objects.exists()


@pytest.mark.parametrize("persona", ["viewer", "org_user"])
def test_people_who_may_not_run_commands_get_no_add_page(request, device, persona):
    client = admin_as(request.getfixturevalue(persona))

    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"device": device.pk, "type": "reboot"}).status_code == 403
    assert ADD not in client.get(LIST).content.decode()
    assert not DeviceCommand.objects.exists()


def test_the_add_link_is_on_the_list_for_a_technician(partner_technician):
    assert ADD in admin_as(partner_technician).get(LIST).content.decode()


def test_a_device_out_of_reach_cannot_be_picked(world, outsider, partner_technician):
    foreign = world.devices[world.site_b1][0]

    response = admin_as(partner_technician).post(ADD, {"device": foreign.pk, "type": "reboot"})

    assert response.status_code == 200
    assert "device" in response.context["adminform"].form.errors
    assert not DeviceCommand.objects.exists()


def test_a_site_restricted_org_admin_picks_only_devices_they_may_run_commands_on(world, make_org_member):
    member = make_org_member("a1.admin@a.example", world.org_a, "Org Admin", sites=[world.site_a1])
    other_site = world.devices[world.site_a2][0]

    response = admin_as(member).post(ADD, {"device": other_site.pk, "type": "reboot"})

    assert response.status_code == 200
    assert "device" in response.context["adminform"].form.errors
    assert not DeviceCommand.objects.exists()


def test_the_device_autocomplete_offers_devices_in_reach_by_hostname_and_no_decommissioned_one(
    world, partner_technician
):
    a1_2 = world.devices[world.site_a1][1]
    Device.objects.filter(pk=a1_2.pk).update(status=Device.Status.DECOMMISSIONED)
    client = admin_as(partner_technician)
    url = admin_url(Device, "changelist").replace("devices/device/", "autocomplete/")

    def found(term: str) -> set[str]:
        response = client.get(
            url, {"term": term, "app_label": "devices", "model_name": "devicecommand", "field_name": "device"}
        )
        assert response.status_code == 200
        return {row["text"] for row in response.json()["results"]}

    assert found("a1-") == {"a1-1"}
    assert found("b1-") == set()


def test_the_device_can_be_filled_in_from_a_link(device, partner_technician):
    response = admin_as(partner_technician).get(ADD, {"device": device.pk, "type": "reboot"})

    assert response.status_code == 200
    assert response.context["adminform"].form.initial["device"] == str(device.pk)


# --- A command's page -----------------------------------------------------------------------------------------------


def test_a_commands_page_reads_as_what_ran_where_with_its_output(device, partner_technician):
    command = finished(queue_command(device=device, type="script", payload={"language": "bash", "content": "df"}))

    response = admin_as(partner_technician).get(admin_url(DeviceCommand, "change", command.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>script on a1-1</h1>" in html
    assert str(command.pk) not in html.split('<div class="breadcrumbs">')[1].split("</div>")[0]
    assert '<pre class="command-stream command-stdout">disk full\n</pre>' in html
    assert "&lt;b&gt;no space&lt;/b&gt;" in html
    assert '<pre class="command-stream command-script">df</pre>' in html
    assert 'http-equiv="refresh"' not in html  # finished: nothing to wait for


def test_a_pending_commands_page_reloads_itself_and_offers_cancel_and_rerun(device, partner_technician):
    command = queue_command(device=device, type="reboot", payload={})

    html = admin_as(partner_technician).get(admin_url(DeviceCommand, "change", command.pk)).content.decode()

    assert 'http-equiv="refresh"' in html
    assert 'data-console-action="cancel_command"' in html
    assert 'data-console-action="rerun_command"' in html


def test_a_viewer_reads_a_command_but_is_offered_neither_cancel_nor_rerun(device, viewer):
    command = queue_command(device=device, type="reboot", payload={})

    response = admin_as(viewer).get(admin_url(DeviceCommand, "change", command.pk))

    assert response.status_code == 200
    assert "data-console-action" not in response.content.decode()


def test_an_outsider_cannot_open_a_command_of_partner_a(device, outsider):
    command = queue_command(device=device, type="reboot", payload={})

    response = admin_as(outsider).get(admin_url(DeviceCommand, "change", command.pk))

    assert response.status_code == 302  # Django's "not found" redirect to the index
    assert str(command.pk) not in response.get("Location", "")


# --- Cancel and run again -------------------------------------------------------------------------------------------


def rerun_url(command: DeviceCommand) -> str:
    return admin_url(DeviceCommand, "rerun", command.pk)


def cancel_url(command: DeviceCommand) -> str:
    return admin_url(DeviceCommand, "cancel", command.pk)


def test_run_again_from_the_page_queues_a_new_command_and_shows_it(device, partner_technician):
    command = finished(queue_command(device=device, type="script", payload={"language": "sh", "content": "ls"}))

    response = admin_as(partner_technician).post(rerun_url(command))

    assert response.status_code == 302
    again = DeviceCommand.objects.exclude(pk=command.pk).get()
    assert response["Location"] == admin_url(DeviceCommand, "change", again.pk)
    assert (again.status, again.payload, again.created_by) == ("pending", command.payload, partner_technician)
    assert AuditLog.objects.filter(action="command.queue", target_id=str(again.pk), actor_user=partner_technician)


def test_run_again_goes_back_to_a_page_of_this_site_only(device, partner_technician):
    command = queue_command(device=device, type="reboot", payload={})
    client = admin_as(partner_technician)
    device_page = admin_url(Device, "change", device.pk)

    assert client.post(rerun_url(command), {"next": device_page})["Location"] == device_page
    assert client.post(rerun_url(command), {"next": "https://evil.example/"})["Location"] != "https://evil.example/"
    assert DeviceCommand.objects.count() == 3


def test_cancel_from_the_page_cancels_a_pending_command(device, partner_technician):
    command = queue_command(device=device, type="reboot", payload={})

    response = admin_as(partner_technician).post(cancel_url(command))

    assert response.status_code == 302
    command.refresh_from_db()
    assert command.status == "cancelled"
    assert AuditLog.objects.filter(action="command.cancel", target_id=str(command.pk)).exists()


def test_cancelling_a_finished_command_says_why_and_changes_nothing(device, partner_technician):
    command = finished(queue_command(device=device, type="reboot", payload={}))

    response = admin_as(partner_technician).post(cancel_url(command), follow=True)

    assert response.status_code == 200
    assert any("Only pending commands can be cancelled" in message for message in messages_of(response))
    command.refresh_from_db()
    assert command.status == "failed"


@pytest.mark.parametrize("persona", ["viewer", "org_user"])
def test_people_who_may_not_run_commands_are_refused_cancel_and_rerun(request, device, persona):
    command = queue_command(device=device, type="reboot", payload={})
    client = admin_as(request.getfixturevalue(persona))

    assert client.post(rerun_url(command)).status_code == 403
    assert client.post(cancel_url(command)).status_code == 403
    assert client.get(rerun_url(command)).status_code == 405
    command.refresh_from_db()
    assert command.status == "pending" and DeviceCommand.objects.count() == 1


def test_an_outsider_posting_a_commands_id_gets_404(device, outsider):
    command = queue_command(device=device, type="reboot", payload={})

    assert admin_as(outsider).post(rerun_url(command)).status_code == 404
    assert DeviceCommand.objects.count() == 1


def act(client, action: str, *commands: DeviceCommand):
    return client.post(LIST, {"action": action, "_selected_action": [c.pk for c in commands]}, follow=True)


def test_the_rerun_action_queues_each_selected_command_again_and_reports_refusals(world, device, partner_admin):
    other = world.devices[world.site_a1][1]
    first = finished(queue_command(device=device, type="reboot", payload={}))
    second = finished(queue_command(device=other, type="refresh_inventory", payload={}))
    Device.objects.filter(pk=other.pk).update(status=Device.Status.DECOMMISSIONED)

    response = act(admin_as(partner_admin), "rerun", first, second)

    assert response.status_code == 200
    shown = messages_of(response)
    assert "1 command queued again." in shown
    assert any(m.startswith("Not queued: refresh inventory on a1-2") for m in shown)
    assert DeviceCommand.objects.filter(status="pending").get().device_id == device.pk


def test_the_list_offers_cancel_and_rerun_only_to_people_who_may_run_commands(device, partner_technician, viewer):
    queue_command(device=device, type="reboot", payload={})

    technician = admin_as(partner_technician).get(LIST).content.decode()
    assert 'value="cancel"' in technician and 'value="rerun"' in technician
    reader = admin_as(viewer).get(LIST)
    assert reader.status_code == 200
    assert 'value="rerun"' not in reader.content.decode()


def test_the_list_shows_hostname_status_age_and_exit_code(device, partner_technician):
    finished(queue_command(device=device, type="script", payload={"language": "sh", "content": "ls"}))

    html = admin_as(partner_technician).get(LIST).content.decode()

    assert ">a1-1</a>" in html
    assert '<span class="status status-failed">Failed</span>' in html
    assert '<time class="ago"' in html
    assert '<td class="field-exit_code">1</td>' in html


def test_the_list_costs_the_same_queries_for_more_commands(
    world, device, partner_technician, django_assert_max_num_queries
):
    client = admin_as(partner_technician)
    for _ in range(2):
        finished(queue_command(device=device, type="reboot", payload={}))
    client.get(LIST)  # warm: the session and the user's reach
    with django_assert_max_num_queries(20) as few:
        assert client.get(LIST).status_code == 200
    others = [d for site in (world.site_a1, world.site_a2, world.site_a2_main) for d in world.devices[site]]
    for n in range(30):
        finished(queue_command(device=others[n % len(others)], type="reboot", payload={}))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(LIST).status_code == 200
