"""Dynamic groups stay current: what an agent reports (a heartbeat, an inventory upload) or a technician edits moves
the device in or out of exactly the groups whose rules depend on it, once the refresh queue is drained."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device, DeviceGroup, DeviceGroupMembership, DeviceGroupMembershipLog
from devices.services import groups
from tests import factories


def _dynamic(org, name: str, rule: dict, site=None) -> DeviceGroup:
    from devices import rules

    group = DeviceGroup.objects.create(
        org=org, site=site, name=name, type="dynamic", filter_rules=rule, fields_used=rules.fields_used(rule)
    )
    groups.refresh_group(group)
    return group


def _members(group: DeviceGroup) -> set[str]:
    return {str(pk) for pk in DeviceGroupMembership.objects.filter(group=group).values_list("device_id", flat=True)}


def _cond(field: str, operator: str, value=None) -> dict:
    condition = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    return condition


@pytest.fixture
def drained(db):
    """Drain what earlier set-up queued, so a test sees only the refreshes its own change causes."""
    groups.process_refresh_queue()


def test_a_heartbeat_changing_os_version_moves_the_device_between_groups(agent, drained):
    org = agent.device.org
    on_11 = _dynamic(org, "Windows 11", _cond("osVersion", "equals", "11"))
    on_12 = _dynamic(org, "Windows 12", _cond("osVersion", "startsWith", "12"))
    by_tag = _dynamic(org, "Tagged", _cond("tags", "isEmpty"))
    assert agent.device_id in _members(on_11) and agent.device_id in _members(by_tag)
    assert agent.device_id not in _members(on_12)
    # Make the tag group's membership stale behind its back: a refresh of that group would repair it, so it staying
    # stale proves the heartbeat did not re-run a rule that does not use osVersion.
    DeviceGroupMembership.objects.filter(group=by_tag).delete()

    assert agent.heartbeat(osVersion="12.1").status_code == 200
    report = groups.process_refresh_queue()

    assert agent.device_id not in _members(on_11)
    assert agent.device_id in _members(on_12)
    assert agent.device_id not in _members(by_tag)
    assert report.evaluations == 2
    log = DeviceGroupMembershipLog.objects.filter(device_id=agent.device_id, reason="rule")
    assert set(log.values_list("group_id", "change")) >= {(on_11.pk, "removed"), (on_12.pk, "added")}


def test_a_heartbeat_that_changes_nothing_queues_nothing(agent, drained):
    _dynamic(agent.device.org, "Windows 11", _cond("osVersion", "equals", "11"))
    assert agent.heartbeat().status_code == 200
    assert agent.heartbeat().status_code == 200
    assert groups.process_refresh_queue().queued_rows == 0


def test_a_software_upload_adding_a_package_moves_the_device_in(agent, drained):
    org = agent.device.org
    has_7zip = _dynamic(org, "7-Zip", _cond("software.installed", "equals", "7-Zip"))
    lacks_7zip = _dynamic(org, "No 7-Zip", _cond("software.notInstalled", "equals", "7-Zip"))
    on_11 = _dynamic(org, "Windows 11", _cond("osVersion", "equals", "11"))
    DeviceGroupMembership.objects.filter(group=on_11).delete()  # stale on purpose: must stay so
    assert agent.device_id in _members(lacks_7zip) and agent.device_id not in _members(has_7zip)

    package = {"name": "7-Zip 23.01 (x64)", "version": "23.01", "publisher": "Igor Pavlov"}
    assert agent.put("software", {"software": [package | {"name": "7-zip"}]}).status_code == 204
    groups.process_refresh_queue()

    assert agent.device_id in _members(has_7zip)  # names compare case-insensitively
    assert agent.device_id not in _members(lacks_7zip)
    assert agent.device_id not in _members(on_11)

    assert agent.put("software", {"software": []}).status_code == 204
    groups.process_refresh_queue()
    assert agent.device_id not in _members(has_7zip)
    assert agent.device_id in _members(lacks_7zip)


def test_a_hardware_upload_refreshes_hardware_rules(agent, drained):
    dell = _dynamic(agent.device.org, "Dell", _cond("hardware.manufacturer", "equals", "Dell Inc."))
    assert agent.device_id not in _members(dell)
    assert agent.put("hardware", {"manufacturer": "Dell Inc.", "model": "OptiPlex"}).status_code == 204
    groups.process_refresh_queue()
    assert agent.device_id in _members(dell)


def test_a_tag_edit_through_the_api_moves_the_device_in_and_out(agent, drained, superuser):
    org = agent.device.org
    kiosks = _dynamic(org, "Kiosks", _cond("tags", "hasAny", ["kiosk"]))
    on_11 = _dynamic(org, "Windows 11", _cond("osVersion", "equals", "11"))
    DeviceGroupMembership.objects.filter(group=on_11).delete()  # stale on purpose: must stay so
    client = APIClient()
    client.force_authenticate(superuser)

    response = client.patch(f"/api/v1/devices/{agent.device_id}", {"tags": ["kiosk", "lobby"]}, format="json")
    assert response.status_code == 200
    groups.process_refresh_queue()
    assert agent.device_id in _members(kiosks)
    assert agent.device_id not in _members(on_11)

    response = client.patch(f"/api/v1/devices/{agent.device_id}", {"tags": ["lobby"]}, format="json")
    assert response.status_code == 200
    groups.process_refresh_queue()
    assert agent.device_id not in _members(kiosks)


def test_a_pinned_member_stays_when_it_stops_matching_and_leaves_when_unpinned(agent, drained, superuser):
    kiosks = _dynamic(agent.device.org, "Kiosks", _cond("osVersion", "equals", "11"))
    groups.pin_members(group=kiosks, device_ids=[agent.device.pk], actor=superuser)
    assert agent.heartbeat(osVersion="12").status_code == 200
    groups.process_refresh_queue()
    assert agent.device_id in _members(kiosks)

    groups.unpin_members(group=kiosks, device_ids=[agent.device.pk], actor=superuser)
    assert agent.device_id not in _members(kiosks)
    changes = list(
        DeviceGroupMembershipLog.objects.filter(group=kiosks, device_id=agent.device_id)
        .order_by("at", "id")
        .values_list("change", "reason")
    )
    assert changes == [("added", "rule"), ("pinned", "manual"), ("unpinned", "manual"), ("removed", "rule")]


def test_a_newly_enrolled_device_joins_the_groups_it_matches(make_agent, site, drained):
    windows = _dynamic(site.org, "Windows", _cond("osType", "equals", "windows"))
    linux = _dynamic(site.org, "Linux", _cond("osType", "equals", "linux"))
    newcomer = make_agent(hostname="new-1", osType="linux")
    assert newcomer.device_id not in _members(linux)  # not before the queue is drained
    groups.process_refresh_queue()
    assert newcomer.device_id in _members(linux)
    assert newcomer.device_id not in _members(windows)


def test_a_device_moved_out_of_the_groups_site_leaves_the_site_group(agent, drained):
    device = agent.device
    other_site = factories.site(device.org)
    on_site = _dynamic(device.org, "Site Windows", _cond("osType", "equals", "windows"), site=device.site)
    assert agent.device_id in _members(on_site)
    Device.objects.filter(pk=device.pk).update(site=other_site)
    groups.process_refresh_queue()
    assert agent.device_id not in _members(on_site)


def test_the_time_sweep_catches_devices_that_stopped_calling(agent, drained):
    within_an_hour = _cond("lastSeenAt", "withinLast", {"amount": 1, "unit": "hours"})
    recent = _dynamic(agent.device.org, "Seen this hour", within_an_hour)
    stale = _dynamic(agent.device.org, "Silent 2 days", _cond("daysSinceLastSeen", "greaterThanOrEquals", 2))
    assert agent.heartbeat().status_code == 200
    groups.sweep_time_based_groups()
    assert agent.device_id in _members(recent) and agent.device_id not in _members(stale)

    report = groups.sweep_time_based_groups(now=timezone.now() + dt.timedelta(days=3))
    assert report.evaluations == 2
    assert agent.device_id not in _members(recent)
    assert agent.device_id in _members(stale)


def test_refresh_groups_command_drains_the_queue(agent, drained, capsys):
    from django.core.management import call_command

    on_12 = _dynamic(agent.device.org, "Windows 12", _cond("osVersion", "equals", "12"))
    assert agent.heartbeat(osVersion="12").status_code == 200
    call_command("refresh_groups")
    assert agent.device_id in _members(on_12)
    assert "group evaluations" in capsys.readouterr().out
