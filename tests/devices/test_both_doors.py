"""The same change sent through the API and through the admin meets the same rule: the same refusal (the API's
status and code, the admin's form error, with the same words) and, when allowed, the same audit action.

The rules live in devices.services (status.py for devices, groups.py for groups); these tests are what keeps the
two doors from deciding them twice again (issue 11: the admin saved a group cycle and an edit of a decommissioned
device that the API refused)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from accounts.models import AuditLog, User
from devices.models import Device, DeviceCommand, DeviceGroup
from devices.services.commands import queue_command
from devices.services.groups import CYCLE_MESSAGE
from devices.services.status import DECOMMISSIONED_MESSAGE
from tests.doors import admin_as, admin_url, api_as, form_errors, post_change_form

pytestmark = pytest.mark.django_db

DOORS = ("api", "admin")


# --- a group may not be its own ancestor --------------------------------------------------------------------------


@pytest.fixture
def chain(world) -> tuple[DeviceGroup, DeviceGroup]:
    """A1 ← A2: A2 sits under A1."""
    a1 = DeviceGroup.objects.create(org=world.org_a, name="A1")
    a2 = DeviceGroup.objects.create(org=world.org_a, name="A2", parent=a1)
    return a1, a2


def group_fields(group: DeviceGroup, **changes) -> dict:
    """A static group's change form (organization and type are read-only there)."""
    fields = {"site": group.site_id or "", "name": group.name, "parent": group.parent_id or "", "filter_rules": ""}
    return fields | changes


def test_a_group_under_its_own_subgroup_is_refused_with_400_through_the_api(chain, partner_admin):
    a1, a2 = chain

    response = api_as(partner_admin).patch(f"/api/v1/groups/{a1.pk}", {"parentId": str(a2.pk)}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert response.json()["fields"] == {"parentId": [CYCLE_MESSAGE]}
    a1.refresh_from_db()
    assert a1.parent_id is None
    assert not AuditLog.objects.filter(action__startswith="device_group.").exists()


def test_a_group_under_its_own_subgroup_is_a_form_error_in_the_admin_and_nothing_is_saved(client, chain, partner_admin):
    a1, a2 = chain

    response = post_change_form(admin_as(partner_admin, client), a1, group_fields(a1, parent=a2.pk))

    assert form_errors(response)["parent"] == [CYCLE_MESSAGE]
    a1.refresh_from_db()
    assert a1.parent_id is None
    assert not AuditLog.objects.filter(action__startswith="device_group.").exists()


def test_a_longer_cycle_is_refused_too(world, chain, partner_admin):
    a1, a2 = chain
    a3 = DeviceGroup.objects.create(org=world.org_a, name="A3", parent=a2)

    response = api_as(partner_admin).patch(f"/api/v1/groups/{a1.pk}", {"parentId": str(a3.pk)}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"parentId": [CYCLE_MESSAGE]}


@pytest.mark.parametrize("door", DOORS)
def test_a_group_moved_under_another_is_saved_and_audited_as_device_group_update(
    client, world, chain, partner_admin, door
):
    _a1, a2 = chain
    a3 = DeviceGroup.objects.create(org=world.org_a, name="A3")

    if door == "api":
        response = api_as(partner_admin).patch(f"/api/v1/groups/{a3.pk}", {"parentId": str(a2.pk)}, format="json")
        assert response.status_code == 200, response.content
    else:
        response = post_change_form(admin_as(partner_admin, client), a3, group_fields(a3, parent=a2.pk))
        assert response.status_code == 302, form_errors(response)

    a3.refresh_from_db()
    assert a3.parent_id == a2.pk
    rows = AuditLog.objects.filter(target_id=str(a3.pk))
    assert list(rows.values_list("action", "actor_user")) == [("device_group.update", partner_admin.pk)]
    assert "parent" in rows.get().details["changed"]


@pytest.mark.parametrize("door", DOORS)
def test_a_group_is_created_with_one_device_group_create_row(client, world, partner_admin, door):
    if door == "api":
        response = api_as(partner_admin).post(
            "/api/v1/groups", {"orgId": str(world.org_a.pk), "name": "New"}, format="json"
        )
        assert response.status_code == 201, response.content
    else:
        response = admin_as(partner_admin, client).post(
            admin_url(DeviceGroup, "add"),
            {"org": world.org_a.pk, "name": "New", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
        )
        assert response.status_code == 302, form_errors(response)

    group = DeviceGroup.objects.get(org=world.org_a, name="New")
    assert list(AuditLog.objects.filter(target_id=str(group.pk)).values_list("action", flat=True)) == [
        "device_group.create"
    ]


@pytest.mark.parametrize("door", DOORS)
def test_a_group_is_deleted_with_one_device_group_delete_row(client, world, partner_admin, door):
    group = DeviceGroup.objects.create(org=world.org_a, name="Doomed")

    if door == "api":
        assert api_as(partner_admin).delete(f"/api/v1/groups/{group.pk}").status_code == 204
    else:
        response = admin_as(partner_admin, client).post(admin_url(DeviceGroup, "delete", group.pk), {"post": "yes"})
        assert response.status_code == 302

    assert not DeviceGroup.objects.filter(pk=group.pk).exists()
    assert list(AuditLog.objects.filter(target_id=str(group.pk)).values_list("action", flat=True)) == [
        "device_group.delete"
    ]


# --- a decommissioned device cannot change ------------------------------------------------------------------------


def device_fields(device: Device, **changes) -> dict:
    return {"display_name": device.display_name, "tags": ",".join(device.tags), "site": str(device.site_id)} | changes


def test_an_edit_of_a_decommissioned_device_is_refused_with_409_through_the_api(world, partner_admin):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(status=Device.Status.DECOMMISSIONED)

    response = api_as(partner_admin).patch(f"/api/v1/devices/{device.pk}", {"displayName": "x"}, format="json")

    assert response.status_code == 409
    assert (response.json()["error"], response.json()["message"]) == ("device_decommissioned", DECOMMISSIONED_MESSAGE)
    device.refresh_from_db()
    assert device.display_name != "x"
    assert not AuditLog.objects.filter(action="device.update").exists()


def test_an_edit_of_a_decommissioned_device_is_a_form_error_in_the_admin_and_nothing_is_saved(
    client, world, partner_admin
):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(status=Device.Status.DECOMMISSIONED)
    device.refresh_from_db()

    response = post_change_form(admin_as(partner_admin, client), device, device_fields(device, display_name="x"))

    assert form_errors(response)["__all__"] == [DECOMMISSIONED_MESSAGE]
    device.refresh_from_db()
    assert device.display_name != "x"
    assert not AuditLog.objects.filter(action="device.update").exists()


@pytest.mark.parametrize("door", DOORS)
def test_a_device_edit_is_saved_and_audited_as_device_update(client, world, partner_admin, door):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    device.refresh_from_db()
    before = device.updated_at

    if door == "api":
        response = api_as(partner_admin).patch(
            f"/api/v1/devices/{device.pk}", {"displayName": "Reception", "tags": ["b", " a "]}, format="json"
        )
        assert response.status_code == 200, response.content
    else:
        fields = device_fields(device, display_name="Reception", tags="b, a ")
        response = post_change_form(admin_as(partner_admin, client), device, fields)
        assert response.status_code == 302, form_errors(response)

    device.refresh_from_db()
    assert (device.display_name, device.tags) == ("Reception", ["a", "b"])
    assert device.updated_at > before
    rows = AuditLog.objects.filter(target_id=str(device.pk))
    assert list(rows.values_list("action", "actor_user")) == [("device.update", partner_admin.pk)]


# --- decommissioning ----------------------------------------------------------------------------------------------


def decommission(door: str, client, user: User, device: Device):
    if door == "api":
        return api_as(user).delete(f"/api/v1/devices/{device.pk}")
    return admin_as(user, client).post(
        admin_url(Device, "changelist"),
        {"action": "decommission", "_selected_action": [str(device.pk)], "confirm": "yes"},  # past its confirmation
    )


@pytest.mark.parametrize("door", DOORS)
def test_decommissioning_bumps_updated_at_and_writes_one_device_decommission_row(client, world, partner_admin, door):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    device.refresh_from_db()
    before = device.updated_at

    first = decommission(door, client, partner_admin, device)
    again = decommission(door, client, partner_admin, device)

    assert (first.status_code, again.status_code) == ((204, 204) if door == "api" else (302, 302))
    device.refresh_from_db()
    assert device.status == Device.Status.DECOMMISSIONED
    assert device.updated_at > before
    rows = AuditLog.objects.filter(target_id=str(device.pk))
    assert list(rows.values_list("action", "actor_user")) == [("device.decommission", partner_admin.pk)]


def test_the_admin_offers_decommissioning_only_to_those_who_may_delete_devices(client, world, viewer):
    device = world.devices[world.site_a1][0]

    response = decommission("admin", client, viewer, device)

    assert response.status_code in (200, 302, 403)
    device.refresh_from_db()
    assert device.status == Device.Status.ONLINE
    assert not AuditLog.objects.filter(action="device.decommission").exists()


# --- cancelling a command -----------------------------------------------------------------------------------------


def cancel(door: str, client, user: User, command: DeviceCommand):
    if door == "api":
        return api_as(user).post(f"/api/v1/commands/{command.pk}/cancel")
    return admin_as(user, client).post(
        admin_url(DeviceCommand, "changelist"), {"action": "cancel", "_selected_action": [str(command.pk)]}
    )


@pytest.mark.parametrize("door", DOORS)
def test_a_pending_command_is_cancelled_with_one_command_cancel_row(client, world, partner_admin, door):
    command = queue_command(device=world.devices[world.site_a1][0], type="reboot", payload={})

    response = cancel(door, client, partner_admin, command)

    assert response.status_code == (200 if door == "api" else 302)
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.CANCELLED
    rows = AuditLog.objects.filter(action="command.cancel", target_id=str(command.pk))
    assert list(rows.values_list("actor_user", flat=True)) == [partner_admin.pk]


@pytest.mark.parametrize("door", DOORS)
def test_a_command_already_sent_is_not_cancelled(client, world, partner_admin, door):
    command = queue_command(device=world.devices[world.site_a1][0], type="reboot", payload={})
    DeviceCommand.objects.filter(pk=command.pk).update(status=DeviceCommand.Status.SENT)
    message = "Only pending commands can be cancelled (this one is sent)."

    response = cancel(door, client, partner_admin, command)

    if door == "api":
        assert response.status_code == 409
        assert (response.json()["error"], response.json()["message"]) == ("command_not_pending", message)
    else:
        assert response.status_code == 302
        assert [str(m) for m in get_messages(response.wsgi_request)] == [message]
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.SENT
    assert not AuditLog.objects.filter(action="command.cancel").exists()


# --- maintenance --------------------------------------------------------------------------------------------------


def set_status(door: str, client, user: User, device: Device, action: str, status: str):
    if door == "api":
        return api_as(user).patch(f"/api/v1/devices/{device.pk}", {"status": status}, format="json")
    return admin_as(user, client).post(
        admin_url(Device, "changelist"),
        {"action": action, "_selected_action": [str(device.pk)], "confirm": "yes"},  # past its confirmation page
    )


@pytest.mark.parametrize("door", DOORS)
def test_maintenance_starts_and_ends_through_either_door_with_device_update_rows(client, world, partner_admin, door):
    device = world.devices[world.site_a1][0]

    started = set_status(door, client, partner_admin, device, "start_maintenance", "maintenance")
    device.refresh_from_db()
    during = device.status
    ended = set_status(door, client, partner_admin, device, "end_maintenance", "online")

    assert (started.status_code, ended.status_code) == ((200, 200) if door == "api" else (302, 302))
    device.refresh_from_db()
    assert (during, device.status) == (Device.Status.MAINTENANCE, Device.Status.ONLINE)
    rows = AuditLog.objects.filter(target_id=str(device.pk)).order_by("created_at")
    assert [(row.action, row.details.get("status")) for row in rows] == [
        ("device.update", {"from": "online", "to": "maintenance"}),
        ("device.update", {"from": "maintenance", "to": "online"}),
    ]


@pytest.mark.parametrize("door", DOORS)
def test_a_quarantined_device_is_not_put_in_maintenance(client, world, partner_admin, door):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(status=Device.Status.QUARANTINED)

    response = set_status(door, client, partner_admin, device, "start_maintenance", "maintenance")

    if door == "api":
        assert response.status_code == 400
        assert list(response.json()["fields"]) == ["status"]
        problem = response.json()["fields"]["status"][0]
    else:
        assert response.status_code == 302
        [problem] = [str(m) for m in get_messages(response.wsgi_request)]
    assert problem.startswith("Status moves by hand only into or out of maintenance (now quarantined)")
    device.refresh_from_db()
    assert device.status == Device.Status.QUARANTINED
    assert not AuditLog.objects.filter(action="device.update").exists()
