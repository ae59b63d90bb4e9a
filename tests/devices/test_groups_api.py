"""Device groups over the technician API: CRUD with rule validation, members, pinning, previews, bulk commands,
and scoping (a rule never reaches another organization; previews and commands stay inside the caller's reach)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership, DeviceGroupMembershipLog
from devices.services import groups

WINDOWS = {"field": "osType", "operator": "equals", "value": "windows"}


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _members(group_id) -> set[str]:
    memberships = DeviceGroupMembership.objects.filter(group_id=group_id)
    return {str(pk) for pk in memberships.values_list("device_id", flat=True)}


def _ids(devices) -> set[str]:
    return {str(device.pk) for device in devices}


def _windows_of(world, *sites) -> set[str]:
    return {str(d.pk) for d in world.devices_in(*sites) if d.os_type == "windows"}


def _create(client, **body):
    return client.post("/api/v1/groups", body, format="json")


# --- creating and changing groups --------------------------------------------------------------------------------


def test_saving_a_dynamic_group_evaluates_its_rule_at_once(world, partner_admin):
    response = _create(
        _client(partner_admin), orgId=str(world.org_a.pk), name="Windows", type="dynamic", filterRules=WINDOWS
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["fieldsUsed"] == ["osType"]
    assert body["memberCount"] == 2
    assert _members(body["id"]) == _windows_of(world, world.site_a1, world.site_a2)
    assert set(DeviceGroupMembership.objects.filter(group_id=body["id"]).values_list("added_by", flat=True)) == {
        "dynamic_rule"
    }
    assert DeviceGroupMembershipLog.objects.filter(group_id=body["id"], change="added", reason="rule").count() == 2


def test_a_rule_never_matches_devices_of_another_organization(world, partner_admin):
    linux = {"field": "osType", "operator": "equals", "value": "linux"}
    everything = {"operator": "OR", "conditions": [WINDOWS, linux]}
    response = _create(
        _client(partner_admin), orgId=str(world.org_a.pk), name="All", type="dynamic", filterRules=everything
    )
    assert response.status_code == 201
    assert _members(response.json()["id"]) == _ids(world.devices_in(world.site_a1, world.site_a2))


def test_a_site_bound_rule_matches_only_that_sites_devices(world, partner_admin):
    response = _create(
        _client(partner_admin), siteId=str(world.site_a1.pk), name="A1 Windows", type="dynamic", filterRules=WINDOWS
    )
    assert response.status_code == 201, response.content
    assert response.json()["orgId"] == str(world.org_a.pk)
    assert _members(response.json()["id"]) == _windows_of(world, world.site_a1)


def test_a_bad_rule_gets_400_with_the_path_of_the_offending_node_and_saves_nothing(world, partner_admin):
    rule = {
        "operator": "AND",
        "conditions": [
            WINDOWS,
            {"operator": "OR", "conditions": [{"field": "hardware.cpuCores", "operator": "before", "value": 4}]},
        ],
    }
    response = _create(_client(partner_admin), orgId=str(world.org_a.pk), name="Bad", type="dynamic", filterRules=rule)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert list(body["fields"]) == ["conditions[1].conditions[0].operator"]
    assert "before" in body["fields"]["conditions[1].conditions[0].operator"][0]
    assert not DeviceGroup.objects.filter(name="Bad").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "dynamic"}, "filterRules"),
        ({"type": "static", "filterRules": WINDOWS}, "filterRules"),
        ({"type": "dynamic", "filterRules": "osType = windows"}, "filterRules"),
        ({"type": "dynamic", "filterRules": {"field": "hostname", "operator": "matches", "value": "(" * 3}}, "value"),
        ({"type": "dynamic", "filterRules": {"field": "osType", "operator": "equals", "value": "beos"}}, "value"),
        ({"name": "All of A"}, "name"),
    ],
)
def test_invalid_groups_get_400_naming_the_field(world, partner_admin, body, field):
    response = _create(_client(partner_admin), **{"orgId": str(world.org_a.pk), "name": "New", **body})
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_a_site_condition_naming_another_organizations_site_is_refused(world, partner_admin):
    rule = {"field": "siteId", "operator": "in", "value": [str(world.site_a1.pk), str(world.site_b1.pk)]}
    client = _client(partner_admin)
    response = _create(client, orgId=str(world.org_a.pk), name="Sites", type="dynamic", filterRules=rule)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["value"]
    assert str(world.site_b1.pk) in response.json()["fields"]["value"][0]


def test_changing_the_rule_re_evaluates_and_logs_removals(world, partner_admin):
    client = _client(partner_admin)
    group_id = _create(client, orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS).json()["id"]
    linux = {"field": "osType", "operator": "equals", "value": "linux"}
    response = client.patch(f"/api/v1/groups/{group_id}", {"filterRules": linux}, format="json")
    assert response.status_code == 200
    assert response.json()["memberCount"] == 2
    linux_devices = {str(d.pk) for d in world.devices_in(world.site_a1, world.site_a2) if d.os_type == "linux"}
    assert _members(group_id) == linux_devices
    assert DeviceGroupMembershipLog.objects.filter(group_id=group_id, change="removed").count() == 2


def test_neither_type_nor_organization_changes(world, partner_admin):
    client = _client(partner_admin)
    group = world.groups["All of A"]
    assert client.patch(f"/api/v1/groups/{group.pk}", {"type": "dynamic"}, format="json").status_code == 400
    response = client.patch(f"/api/v1/groups/{group.pk}", {"orgId": str(world.org_a2.pk)}, format="json")
    assert response.status_code == 400
    group.refresh_from_db()
    assert (group.type, group.org_id) == ("static", world.org_a.pk)


def test_a_group_cannot_nest_under_its_own_subgroup_or_another_organizations_group(world, partner_admin):
    client = _client(partner_admin)
    parent, child = world.groups["All of A"], world.groups["A1 servers"]
    assert client.patch(f"/api/v1/groups/{child.pk}", {"parentId": str(parent.pk)}, format="json").status_code == 200
    response = client.patch(f"/api/v1/groups/{parent.pk}", {"parentId": str(child.pk)}, format="json")
    assert response.status_code == 400
    assert "parentId" in response.json()["fields"]
    foreign = world.groups["A2 main"]
    response = client.patch(f"/api/v1/groups/{child.pk}", {"parentId": str(foreign.pk)}, format="json")
    assert response.status_code == 400


def test_the_list_filters_by_organization_type_and_name(world, partner_admin):
    client = _client(partner_admin)
    _create(client, orgId=str(world.org_a.pk), name="Windows", type="dynamic", filterRules=WINDOWS)
    names = lambda query: {g["name"] for g in client.get(f"/api/v1/groups?{query}").json()["results"]}  # noqa: E731
    assert names(f"orgId={world.org_a.pk}") == {"A1 servers", "A2 servers", "All of A", "Windows"}
    assert names("type=dynamic") == {"Windows"}
    assert names("search=servers") == {"A1 servers", "A2 servers"}
    assert names(f"siteId={world.site_a1.pk}") == {"A1 servers"}


def test_the_list_runs_a_constant_number_of_queries(world, partner_admin, django_assert_max_num_queries):
    client = _client(partner_admin)
    with django_assert_max_num_queries(6) as first:
        assert client.get("/api/v1/groups").status_code == 200
    for n in range(20):
        group = DeviceGroup.objects.create(org=world.org_a, name=f"Extra {n}")
        groups.add_members(group=group, devices=list(world.devices_in(world.site_a1)), actor=None)
    with django_assert_max_num_queries(len(first.captured_queries)):
        assert len(client.get("/api/v1/groups").json()["results"]) == 24  # partner A's 4 and the 20 new


# --- members --------------------------------------------------------------------------------------------------


def test_static_members_are_added_and_removed_by_hand(world, partner_admin):
    client = _client(partner_admin)
    group = world.groups["All of A"]
    a1 = world.devices[world.site_a1]
    response = client.post(f"/api/v1/groups/{group.pk}/devices", {"deviceIds": [str(a1[0].pk)]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"deviceIds": [str(a1[0].pk)]}
    assert _members(group.pk) == {str(a1[0].pk)}
    listed = client.get(f"/api/v1/groups/{group.pk}/devices").json()["results"]
    assert [(m["device"]["hostname"], m["addedBy"], m["isPinned"]) for m in listed] == [("a1-1", "manual", False)]
    response = client.delete(f"/api/v1/groups/{group.pk}/devices", {"deviceIds": [str(a1[0].pk)]}, format="json")
    assert response.status_code == 200
    assert _members(group.pk) == set()
    changes = DeviceGroupMembershipLog.objects.filter(group=group).values_list("change", "reason", "actor_user")
    assert set(changes) == {("added", "manual", partner_admin.pk), ("removed", "manual", partner_admin.pk)}


def test_a_device_of_another_organization_or_site_cannot_join_a_static_group(world, partner_admin):
    client = _client(partner_admin)
    foreign = world.devices[world.site_a2_main][0]  # org A2: in the partner admin's reach, not the group's org
    response = client.post(
        f"/api/v1/groups/{world.groups['All of A'].pk}/devices", {"deviceIds": [str(foreign.pk)]}, format="json"
    )
    assert response.status_code == 400
    assert "deviceIds" in response.json()["fields"]
    other_site = world.devices[world.site_a2][0]
    response = client.post(
        f"/api/v1/groups/{world.groups['A1 servers'].pk}/devices", {"deviceIds": [str(other_site.pk)]}, format="json"
    )
    assert response.status_code == 400
    assert not DeviceGroupMembership.objects.exists()


def test_a_device_out_of_reach_does_not_exist(world, org_user):
    a2 = world.devices[world.site_a2][0]
    response = _client(org_user).post(
        f"/api/v1/groups/{world.groups['A1 servers'].pk}/devices", {"deviceIds": [str(a2.pk)]}, format="json"
    )
    assert response.status_code == 400
    assert "No such device" in response.json()["fields"]["deviceIds"][0]


def test_manual_adds_to_a_dynamic_group_are_refused(world, partner_admin):
    client = _client(partner_admin)
    group_id = _create(client, orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS).json()["id"]
    linux = next(d for d in world.devices[world.site_a1] if d.os_type == "linux")
    response = client.post(f"/api/v1/groups/{group_id}/devices", {"deviceIds": [str(linux.pk)]}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "dynamic_group"
    assert str(linux.pk) not in _members(group_id)


def test_pinning_keeps_a_member_that_stops_matching(world, partner_admin):
    client = _client(partner_admin)
    group_id = _create(client, orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS).json()["id"]
    windows = next(d for d in world.devices[world.site_a1] if d.os_type == "windows")
    response = client.post(f"/api/v1/groups/{group_id}/devices/pin", {"deviceIds": [str(windows.pk)]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"deviceIds": [str(windows.pk)]}
    Device.objects.filter(pk=windows.pk).update(os_type="linux")
    groups.process_refresh_queue()
    assert str(windows.pk) in _members(group_id)
    response = client.post(f"/api/v1/groups/{group_id}/devices/unpin", {"deviceIds": [str(windows.pk)]}, format="json")
    assert response.status_code == 200
    assert str(windows.pk) not in _members(group_id)


def test_only_members_can_be_pinned_and_only_in_dynamic_groups(world, partner_admin):
    client = _client(partner_admin)
    group_id = _create(client, orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS).json()["id"]
    linux = next(d for d in world.devices[world.site_a1] if d.os_type == "linux")
    response = client.post(f"/api/v1/groups/{group_id}/devices/pin", {"deviceIds": [str(linux.pk)]}, format="json")
    assert response.status_code == 400
    static = world.groups["All of A"]
    response = client.post(f"/api/v1/groups/{static.pk}/devices/pin", {"deviceIds": [str(linux.pk)]}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "static_group"


def test_members_and_log_list_only_devices_in_reach(world, partner_admin, org_admin, org_user):
    group_id = _create(
        _client(partner_admin), orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS
    ).json()["id"]
    listed = _client(org_admin).get(f"/api/v1/groups/{group_id}/devices").json()["results"]
    assert {m["device"]["id"] for m in listed} == _windows_of(world, world.site_a1, world.site_a2)
    log = _client(org_admin).get(f"/api/v1/groups/{group_id}/membership-log").json()["results"]
    assert {(row["deviceId"], row["change"], row["reason"]) for row in log} == {
        (device, "added", "rule") for device in _windows_of(world, world.site_a1, world.site_a2)
    }
    # An org-wide group needs whole-organization reach: the site-restricted user does not see it at all.
    assert _client(org_user).get(f"/api/v1/groups/{group_id}/devices").status_code == 404


def test_the_device_list_filters_by_group(world, partner_admin):
    client = _client(partner_admin)
    group_id = _create(client, orgId=str(world.org_a.pk), name="W", type="dynamic", filterRules=WINDOWS).json()["id"]
    listed = client.get(f"/api/v1/devices?groupId={group_id}").json()["results"]
    assert {d["id"] for d in listed} == _windows_of(world, world.site_a1, world.site_a2)


# --- previews -------------------------------------------------------------------------------------------------


def test_a_preview_counts_and_samples_matching_devices_without_saving(world, partner_admin):
    response = _client(partner_admin).post(
        "/api/v1/groups/preview", {"orgId": str(world.org_a.pk), "filterRules": WINDOWS}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {d["id"] for d in body["sample"]} == _windows_of(world, world.site_a1, world.site_a2)
    assert not DeviceGroup.objects.filter(type="dynamic").exists()


def test_a_preview_counts_only_devices_the_caller_may_see(world, org_user):
    response = _client(org_user).post(
        "/api/v1/groups/preview", {"orgId": str(world.org_a.pk), "filterRules": WINDOWS}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert {d["id"] for d in response.json()["sample"]} == _windows_of(world, world.site_a1)


def test_a_preview_of_another_tenants_organization_is_refused(world, outsider):
    response = _client(outsider).post(
        "/api/v1/groups/preview", {"orgId": str(world.org_a.pk), "filterRules": WINDOWS}, format="json"
    )
    assert response.status_code == 400
    assert "orgId" in response.json()["fields"]


def test_a_preview_of_a_bad_rule_gets_the_path(world, partner_admin):
    rule = {"operator": "AND", "conditions": [{"field": "hostnme", "operator": "equals", "value": "x"}]}
    response = _client(partner_admin).post(
        "/api/v1/groups/preview", {"orgId": str(world.org_a.pk), "filterRules": rule}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["conditions[0].field"]


# --- commands to a group --------------------------------------------------------------------------------------


def test_a_group_command_queues_one_command_per_member_in_one_go(world, partner_technician):
    group = world.groups["All of A"]
    members = list(world.devices_in(world.site_a1, world.site_a2))
    groups.add_members(group=group, devices=members, actor=None)
    response = _client(partner_technician).post(
        f"/api/v1/groups/{group.pk}/commands", {"type": "reboot", "expiresInSeconds": 600}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["queued"], body["skipped"]) == (4, 0)
    commands = DeviceCommand.objects.filter(type="reboot", status="pending")
    assert _ids(members) == {str(pk) for pk in commands.values_list("device_id", flat=True)}
    assert {c["id"] for c in body["commands"]} == {str(pk) for pk in commands.values_list("id", flat=True)}
    assert AuditLog.objects.filter(action="device_group.commands", target_id=str(group.pk)).count() == 1


def test_a_group_command_skips_decommissioned_members(world, partner_admin):
    group = world.groups["A1 servers"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1)), actor=None)
    Device.objects.filter(pk=world.devices[world.site_a1][0].pk).update(status="decommissioned")
    response = _client(partner_admin).post(f"/api/v1/groups/{group.pk}/commands", {"type": "reboot"}, format="json")
    assert response.status_code == 201
    assert (response.json()["queued"], response.json()["skipped"]) == (1, 1)


def test_a_group_command_with_a_bad_payload_queues_nothing(world, partner_admin):
    group = world.groups["A1 servers"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1)), actor=None)
    response = _client(partner_admin).post(
        f"/api/v1/groups/{group.pk}/commands", {"type": "script", "payload": {"language": "cobol"}}, format="json"
    )
    assert response.status_code == 400
    assert "payload.language" in response.json()["fields"]
    assert not DeviceCommand.objects.exists()


def test_a_group_bigger_than_the_limit_is_refused_whole(world, partner_admin, monkeypatch):
    monkeypatch.setattr(groups, "MAX_GROUP_COMMANDS", 3)
    group = world.groups["All of A"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1, world.site_a2)), actor=None)
    response = _client(partner_admin).post(f"/api/v1/groups/{group.pk}/commands", {"type": "reboot"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "too_many_devices"
    assert not DeviceCommand.objects.exists()


def test_viewer_gets_403_on_group_commands(world, viewer):
    group = world.groups["A1 servers"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1)), actor=None)
    response = _client(viewer).post(f"/api/v1/groups/{group.pk}/commands", {"type": "reboot"}, format="json")
    assert response.status_code == 403
    assert not DeviceCommand.objects.exists()


def test_an_empty_group_gets_409_for_commands(world, partner_admin):
    response = _client(partner_admin).post(
        f"/api/v1/groups/{world.groups['A1 servers'].pk}/commands", {"type": "reboot"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "no_devices"


def test_a_group_command_reaches_only_the_members_the_caller_may_run_commands_on(world, make_org_member):
    """A group shared with a site-restricted technician (a guardian grant) holds devices of other sites: the command
    goes to the members of the technician's site only, and the answer says how many were left out."""
    from django.contrib.auth.models import Permission as AuthPermission
    from django.contrib.contenttypes.models import ContentType
    from guardian.shortcuts import assign_perm

    user = make_org_member("site.tech@a.example", world.org_a, "Org Admin", sites=[world.site_a1])
    group = world.groups["All of A"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1, world.site_a2)), actor=None)
    execute = AuthPermission.objects.create(
        codename="devices:execute", name="Run commands", content_type=ContentType.objects.get_for_model(DeviceGroup)
    )
    assign_perm("view_devicegroup", user, group)
    assign_perm(execute, user, group)

    response = _client(user).post(f"/api/v1/groups/{group.pk}/commands", {"type": "reboot"}, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["queued"], response.json()["skipped"]) == (2, 2)
    targeted = {str(pk) for pk in DeviceCommand.objects.values_list("device_id", flat=True)}
    assert targeted == _ids(world.devices_in(world.site_a1))
