"""The device list and device pages of the technician API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditLog
from devices.models import Device, DeviceGroupMembership, DeviceNetworkInterface, DeviceSoftware

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def hostnames(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["hostname"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("superuser", {"a1-1", "a1-2", "a2-1", "a2-2", "a2m-1", "a2m-2", "b1-1", "b1-2"}),
        ("partner_technician", {"a1-1", "a1-2", "a2-1", "a2-2", "a2m-1", "a2m-2"}),
        ("org_admin", {"a1-1", "a1-2", "a2-1", "a2-2"}),
        ("org_user", {"a1-1", "a1-2"}),
        ("outsider", {"b1-1", "b1-2"}),
    ],
)
def test_it_lists_only_devices_in_reach(request, persona, expected):
    assert set(hostnames(client_for(request.getfixturevalue(persona)).get("/api/v1/devices"))) == expected


@pytest.fixture
def tech(partner_technician):
    return client_for(partner_technician)


def test_filter_by_org_and_site(world, tech):
    assert set(hostnames(tech.get("/api/v1/devices", {"orgId": world.org_a2.pk}))) == {"a2m-1", "a2m-2"}
    assert set(hostnames(tech.get("/api/v1/devices", {"siteId": world.site_a1.pk}))) == {"a1-1", "a1-2"}


def test_filter_by_status_and_os_type(world, tech):
    Device.objects.filter(hostname="a1-1").update(status="maintenance")
    assert hostnames(tech.get("/api/v1/devices", {"status": "maintenance"})) == ["a1-1"]
    both = tech.get("/api/v1/devices?status=maintenance&status=online&osType=linux")
    assert set(hostnames(both)) == {"a1-1", "a2-1", "a2m-1"}  # the *-1 devices are linux
    assert tech.get("/api/v1/devices", {"status": "sleeping"}).status_code == 400


def test_filter_by_tag(world, tech):
    Device.objects.filter(hostname="a2-2").update(tags=["finance", "laptop"])
    assert hostnames(tech.get("/api/v1/devices", {"tag": "finance"})) == ["a2-2"]
    assert hostnames(tech.get("/api/v1/devices", {"tag": "fin"})) == []


def test_filter_by_group(world, tech):
    group = world.groups["A1 servers"]
    device = world.devices[world.site_a1][0]
    DeviceGroupMembership.objects.create(device=device, group=group, org_id=device.org_id)
    assert hostnames(tech.get("/api/v1/devices", {"groupId": group.pk})) == [device.hostname]


@pytest.mark.parametrize(
    ("term", "expected"),
    [("A2M", {"a2m-1", "a2m-2"}), ("serial", set()), ("front desk", {"a1-2"}), ("10.9.8.7", {"a2-1"})],
)
def test_search_by_hostname_display_name_and_ip(world, tech, term, expected):
    Device.objects.filter(hostname="a1-2").update(display_name="Front Desk PC")
    a21 = Device.objects.get(hostname="a2-1")
    DeviceNetworkInterface.objects.create(device=a21, org_id=a21.org_id, interface_name="eth0", ip_address="10.9.8.7")
    assert set(hostnames(tech.get("/api/v1/devices", {"search": term}))) == expected


def test_search_by_agent_id_serial_and_last_seen_ip(world, tech):
    device = Device.objects.get(hostname="a2-2")
    Device.objects.filter(pk=device.pk).update(last_seen_ip="203.0.113.9")
    assert hostnames(tech.get("/api/v1/devices", {"search": device.agent_id.upper()})) == ["a2-2"]
    assert hostnames(tech.get("/api/v1/devices", {"search": "a2m-1"})) == ["a2m-1"]  # the world's serial = hostname
    assert hostnames(tech.get("/api/v1/devices", {"search": "203.0.113.9"})) == ["a2-2"]


def test_search_treats_wildcards_literally(world, tech):
    assert hostnames(tech.get("/api/v1/devices", {"search": "%"})) == []
    assert hostnames(tech.get("/api/v1/devices", {"search": "a_-1"})) == []


def test_filter_by_last_seen(world, tech):
    now = timezone.now()
    Device.objects.filter(hostname="a1-1").update(last_seen_at=now - dt.timedelta(hours=3))
    Device.objects.filter(hostname="a1-2").update(last_seen_at=now)
    cut = (now - dt.timedelta(hours=1)).isoformat()
    assert hostnames(tech.get("/api/v1/devices", {"lastSeenBefore": cut})) == ["a1-1"]
    assert hostnames(tech.get("/api/v1/devices", {"lastSeenAfter": cut})) == ["a1-2"]


def walk(client, **params) -> list[str]:
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/devices", {**params, **({"cursor": cursor} if cursor else {})})
        seen += hostnames(page)
        cursor = page.json()["next"]
        if cursor is None:
            return seen


def test_pages_walk_the_whole_list_without_duplicates_or_gaps_while_devices_arrive(world, superuser):
    client = client_for(superuser)
    for n in range(25):
        Device.objects.create(
            org=world.org_a, site=world.site_a1, agent_id=f"{n:064x}", hostname=f"m-{n:02d}", os_type="linux"
        )
    first = client.get("/api/v1/devices", {"limit": 7})
    seen = hostnames(first)
    cursor = first.json()["next"]
    added = 0
    while cursor:
        # A device that sorts before the cursor and one after it arrive between pages.
        Device.objects.create(
            org=world.org_a,
            site=world.site_a1,
            agent_id=f"{1000 + added:064x}",
            hostname=f"a0-{added}",
            os_type="linux",
        )
        Device.objects.create(
            org=world.org_a,
            site=world.site_a1,
            agent_id=f"{2000 + added:064x}",
            hostname=f"zz-{added}",
            os_type="linux",
        )
        added += 1
        page = client.get("/api/v1/devices", {"limit": 7, "cursor": cursor})
        seen += hostnames(page)
        cursor = page.json()["next"]
    original = {"a1-1", "a1-2", "a2-1", "a2-2", "a2m-1", "a2m-2", "b1-1", "b1-2"} | {f"m-{n:02d}" for n in range(25)}
    assert len(seen) == len(set(seen))
    assert original <= set(seen)
    assert seen == sorted(seen)


def test_every_ordering_pages_correctly_with_nulls_last(world, superuser):
    now = timezone.now()
    for n, device in enumerate(Device.objects.order_by("hostname")):
        seen_at = None if n % 3 == 0 else now - dt.timedelta(minutes=n % 4)  # ties and NULLs
        Device.objects.filter(pk=device.pk).update(last_seen_at=seen_at, enrolled_at=seen_at)
    client = client_for(superuser)
    for ordering, field, descending in [("-lastSeenAt", "last_seen_at", True), ("enrolledAt", "enrolled_at", False)]:
        expected = list(
            Device.objects.order_by(*([f"-{field}", "-id"] if descending else [field, "id"])).values_list(
                "hostname", flat=True
            )
        )
        nulls = [h for h in expected if getattr(Device.objects.get(hostname=h), field) is None]
        expected = [h for h in expected if h not in nulls] + (
            sorted(nulls, key=lambda h: Device.objects.get(hostname=h).pk, reverse=descending)
        )
        assert walk(client, ordering=ordering, limit=2) == expected


def test_bad_paging_parameters_get_400(world, tech):
    for params in ({"limit": 501}, {"limit": 0}, {"cursor": "garbage"}, {"ordering": "agentId"}):
        response = tech.get("/api/v1/devices", params)
        assert response.status_code == 400, params
        assert set(response.json()["fields"]) <= {"limit", "cursor", "ordering"}


def test_a_cursor_of_another_ordering_is_refused(world, superuser):
    cursor = client_for(superuser).get("/api/v1/devices", {"limit": 1}).json()["next"]
    response = client_for(superuser).get("/api/v1/devices", {"limit": 1, "cursor": cursor, "ordering": "enrolledAt"})
    assert response.status_code == 400


def test_the_list_runs_a_constant_number_of_queries(world, partner_technician, django_assert_max_num_queries):
    client = client_for(partner_technician)
    for n in range(60):
        Device.objects.create(
            org=world.org_a, site=world.site_a2, agent_id=f"{n:064x}", hostname=f"x-{n}", os_type="linux"
        )
    with django_assert_max_num_queries(7):
        assert len(client.get("/api/v1/devices", {"limit": 500, "search": "x"}).json()["results"]) == 60


def test_patch_changes_display_name_tags_and_site(world, org_admin):
    device = world.devices[world.site_a1][0]
    response = client_for(org_admin).patch(
        f"/api/v1/devices/{device.pk}",
        {"displayName": "Reception", "tags": ["front", "front ", "desk"], "siteId": str(world.site_a2.pk)},
        format="json",
    )
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert (device.display_name, device.tags, device.site_id) == ("Reception", ["desk", "front"], world.site_a2.pk)
    assert AuditLog.objects.filter(action="device.update", target_id=str(device.pk)).exists()


def test_a_device_cannot_move_to_a_site_of_another_organization(world, partner_admin):
    device = world.devices[world.site_a1][0]
    response = client_for(partner_admin).patch(
        f"/api/v1/devices/{device.pk}", {"siteId": str(world.site_a2_main.pk)}, format="json"
    )
    assert response.status_code == 400
    assert "siteId" in response.json()["fields"]
    device.refresh_from_db()
    assert device.site_id == world.site_a1.pk


def test_a_site_restricted_user_cannot_move_a_device_out_of_their_reach(world, org_user):
    device = world.devices[world.site_a1][0]
    response = client_for(org_user).patch(
        f"/api/v1/devices/{device.pk}", {"siteId": str(world.site_a2.pk)}, format="json"
    )
    assert response.status_code == 400  # site A2 does not exist for them
    device.refresh_from_db()
    assert device.site_id == world.site_a1.pk


def test_maintenance_is_set_and_lifted_by_hand_but_quarantine_is_not(world, org_admin):
    client = client_for(org_admin)
    url = f"/api/v1/devices/{world.devices[world.site_a1][0].pk}"
    assert client.patch(url, {"status": "maintenance"}, format="json").json()["status"] == "maintenance"
    assert client.patch(url, {"status": "online"}, format="json").json()["status"] == "online"
    refused = client.patch(url, {"status": "quarantined"}, format="json")
    assert refused.status_code == 400 and "status" in refused.json()["fields"]


def test_delete_decommissions_and_is_audited(world, org_admin):
    device = world.devices[world.site_a1][0]
    client = client_for(org_admin)
    assert client.delete(f"/api/v1/devices/{device.pk}").status_code == 204
    device.refresh_from_db()
    assert device.status == "decommissioned"
    assert client.delete(f"/api/v1/devices/{device.pk}").status_code == 204
    assert AuditLog.objects.filter(action="device.decommission", target_id=str(device.pk)).count() == 1
    assert client.patch(f"/api/v1/devices/{device.pk}", {"displayName": "x"}, format="json").status_code == 409


def test_summary_counts_only_devices_in_reach(world, org_user):
    Device.objects.filter(hostname="a1-1").update(status="offline")
    body = client_for(org_user).get("/api/v1/devices/summary").json()
    assert body["total"] == 2
    assert body["byStatus"]["offline"] == 1 and body["byStatus"]["online"] == 1
    assert body["byOsType"] == {"windows": 1, "macos": 0, "linux": 1}


def test_software_pages_through_ten_thousand_rows(world, tech):
    device = world.devices[world.site_a1][0]
    DeviceSoftware.objects.bulk_create(
        DeviceSoftware(device=device, org_id=device.org_id, name=f"pkg-{n:05d}") for n in range(1200)
    )
    first = tech.get(f"/api/v1/devices/{device.pk}/software", {"limit": 500})
    assert first.status_code == 200
    names = [row["name"] for row in first.json()["results"]]
    cursor = first.json()["next"]
    while cursor:
        page = tech.get(f"/api/v1/devices/{device.pk}/software", {"limit": 500, "cursor": cursor}).json()
        names += [row["name"] for row in page["results"]]
        cursor = page["next"]
    assert names == [f"pkg-{n:05d}" for n in range(1200)]


def test_hardware_of_a_device(world, tech):
    device = world.devices[world.site_a1][0]
    body = tech.get(f"/api/v1/devices/{device.pk}/hardware").json()
    assert body["serialNumber"] == device.hostname


@pytest.mark.parametrize(
    "kind", ["hardware", "disks", "network-interfaces", "software", "registry-entries", "config-entries", "connections"]
)
def test_inventory_of_a_device_out_of_reach_is_404(world, outsider, kind):
    device = world.devices[world.site_a1][0]
    response = client_for(outsider).get(f"/api/v1/devices/{device.pk}/{kind}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_quarantine_and_approve_are_audited(world, org_admin):
    device = world.devices[world.site_a1][0]
    client = client_for(org_admin)
    response = client.post(f"/api/v1/devices/{device.pk}/quarantine", {"reason": "ransomware alert"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "quarantined" and response.json()["quarantinedReason"] == "ransomware alert"
    approved = client.post(f"/api/v1/devices/{device.pk}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "online"
    device.refresh_from_db()
    assert device.quarantined_at is None and device.quarantined_reason == ""
    actions = list(
        AuditLog.objects.filter(target_id=str(device.pk)).order_by("created_at").values_list("action", flat=True)
    )
    assert actions == ["device.quarantine", "device.approve"]


def test_quarantine_needs_a_reason_and_approve_needs_a_quarantine(world, org_admin):
    device = world.devices[world.site_a1][0]
    client = client_for(org_admin)
    assert "reason" in client.post(f"/api/v1/devices/{device.pk}/quarantine", {}, format="json").json()["fields"]
    refused = client.post(f"/api/v1/devices/{device.pk}/approve")
    assert refused.status_code == 409 and refused.json()["error"] == "invalid_status"


def test_a_decommissioned_device_cannot_be_quarantined(world, org_admin):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(status="decommissioned")
    response = client_for(org_admin).post(f"/api/v1/devices/{device.pk}/quarantine", {"reason": "x"}, format="json")
    assert response.status_code == 409


def test_rotate_token_marks_the_token_due_for_the_next_heartbeat(world, org_admin):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(agent_token_issued_at=timezone.now())
    response = client_for(org_admin).post(f"/api/v1/devices/{device.pk}/rotate-token")
    assert response.status_code == 202
    device.refresh_from_db()
    assert device.agent_token_issued_at is None
    assert AuditLog.objects.filter(action="device.request_token_rotation", target_id=str(device.pk)).exists()
