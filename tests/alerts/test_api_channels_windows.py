"""Notification channels (secret write-only, test send), the outbox list, and maintenance windows over the
technician API; every write through its service, audited."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditLog, PartnerUser
from alerts.models import Alert, MaintenanceWindow, Notification, NotificationChannel

pytestmark = pytest.mark.django_db

SECRET = "s3cret-signing-key-of-the-receiver"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_no_secret(response, secret: str = SECRET) -> None:
    assert secret not in response.content.decode()
    rows = response.json().get("results", [response.json()])
    for row in rows:
        assert "secret" not in row and row["hasSecret"] is True


@pytest.fixture
def org_admin_and_partner_viewer(world, roles, make_org_member):
    """Org Admin of org A (alerts:write there) who is also a Partner Viewer of partner A (reads at partner level)."""
    user = make_org_member("both@a.example", world.org_a, "Org Admin")
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=roles["Partner Viewer"], org_access="all")
    return user


# --- channels -------------------------------------------------------------------------------------------------------


def test_the_secret_of_a_webhook_is_never_returned(world, org_admin):
    client = client_for(org_admin)
    created = client.post(
        "/api/v1/notification-channels",
        {
            "orgId": str(world.org_a.pk),
            "name": "Hook",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/rmm"},
            "secret": SECRET,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    channel_id = created.json()["id"]

    one = client.get(f"/api/v1/notification-channels/{channel_id}")
    listed = client.get("/api/v1/notification-channels")
    renamed = client.patch(f"/api/v1/notification-channels/{channel_id}", {"name": "Renamed"}, format="json")

    for response in (created, one, listed, renamed):
        assert response.status_code == 200 or response is created
        assert_no_secret(response)
    channel = NotificationChannel.objects.get(pk=channel_id)
    assert (channel.name, channel.secret) == ("Renamed", SECRET)  # PATCH without a secret keeps it
    assert SECRET not in json.dumps(list(AuditLog.objects.values_list("details", flat=True)))


def test_a_webhook_created_without_a_secret_gets_one_shown_in_the_creating_answer_only(world, org_admin):
    client = client_for(org_admin)
    response = client.post(
        "/api/v1/notification-channels",
        {"orgId": str(world.org_a.pk), "name": "Hook", "kind": "webhook", "config": {"url": "https://h.example"}},
        format="json",
    )

    assert response.status_code == 201, response.content
    channel = NotificationChannel.objects.get(pk=response.json()["id"])
    assert len(channel.secret) >= 32
    assert response.json()["secret"] == channel.secret  # the receiver needs it to verify signatures
    assert_no_secret(client.get(f"/api/v1/notification-channels/{channel.pk}"), channel.secret)
    assert_no_secret(client.get("/api/v1/notification-channels"), channel.secret)
    assert channel.secret not in json.dumps(list(AuditLog.objects.values_list("details", flat=True)))
    assert AuditLog.objects.filter(action="notification_channel.create", target_id=str(channel.pk)).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "email", "config": {"to": ["not an address"]}}, "config"),
        ({"kind": "webhook", "config": {"url": "ftp://h.example"}}, "config"),
        ({"kind": "pigeon", "config": {}}, "kind"),
        ({"kind": "email", "config": "ops@a.example"}, "config"),
        ({"kind": "email", "config": {"to": ["o@a.example"]}, "secret": SECRET}, "secret"),
    ],
)
def test_a_bad_channel_gets_400_naming_the_field(world, org_admin, body, field):
    response = client_for(org_admin).post(
        "/api/v1/notification-channels", {"orgId": str(world.org_a.pk), "name": "Bad", **body}, format="json"
    )

    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error", "message", "fields"}
    assert all(key.startswith(field) for key in response.json()["fields"]), response.json()
    assert not NotificationChannel.objects.exists()


def test_a_partner_wide_channel_needs_partner_scope_to_write(world, org_admin_and_partner_viewer):
    response = client_for(org_admin_and_partner_viewer).post(
        "/api/v1/notification-channels",
        {"partnerId": str(world.partner_a.pk), "name": "NOC", "kind": "email", "config": {"to": ["noc@a.example"]}},
        format="json",
    )

    assert response.status_code == 403, response.content
    assert not NotificationChannel.objects.exists()


def test_a_test_send_is_delivered_at_once_and_answered_with_its_outcome(world, org_admin):
    channel = NotificationChannel.objects.create(
        org=world.org_a, name="Ops", kind="email", config={"to": ["ops@a.example"]}
    )

    response = client_for(org_admin).post(f"/api/v1/notification-channels/{channel.pk}/test")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["event"], body["status"], body["channelId"]) == ("channel.test", "sent", str(channel.pk))
    assert [message.to for message in mail.outbox] == [["ops@a.example"]]
    assert Notification.objects.filter(pk=body["id"], status="sent").exists()
    assert AuditLog.objects.filter(action="notification_channel.test", target_id=str(channel.pk)).exists()


def test_deleting_a_channel_is_audited(world, org_admin):
    channel = NotificationChannel.objects.create(org=world.org_a, name="Ops", kind="email", config={"to": ["o@a.io"]})

    response = client_for(org_admin).delete(f"/api/v1/notification-channels/{channel.pk}")

    assert response.status_code == 204, response.content
    assert not NotificationChannel.objects.filter(pk=channel.pk).exists()
    assert AuditLog.objects.filter(action="notification_channel.delete", target_id=str(channel.pk)).exists()


# --- the outbox -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channelId", {"ops_sent"}),
        ("status=dead", {"noc_dead"}),
        ("alertId", {"ops_sent"}),
        ("", {"ops_sent", "noc_dead"}),
    ],
)
def test_the_outbox_filters_by_channel_status_and_alert(world, partner_admin, query, expected):
    ops = NotificationChannel.objects.create(org=world.org_a, name="Ops", kind="email", config={"to": ["o@a.io"]})
    noc = NotificationChannel.objects.create(org=world.org_a, name="NOC", kind="email", config={"to": ["n@a.io"]})
    device = world.devices[world.site_a1][0]
    alert = Alert.objects.create(org=world.org_a, site=world.site_a1, device=device, severity="info", title="t")
    rows = {
        "ops_sent": Notification.objects.create(
            channel=ops, org=world.org_a, alert=alert, event="alert.opened", payload={}, status="sent"
        ),
        "noc_dead": Notification.objects.create(
            channel=noc, org=world.org_a, event="alert.digest", payload={}, status="dead"
        ),
    }
    query = {"channelId": f"channelId={ops.pk}", "alertId": f"alertId={alert.pk}"}.get(query, query)

    response = client_for(partner_admin).get(f"/api/v1/notifications?{query}")

    assert response.status_code == 200, response.content
    assert {row["id"] for row in response.json()["results"]} == {str(rows[name].pk) for name in expected}


# --- maintenance windows --------------------------------------------------------------------------------------------


def test_a_site_restricted_member_creates_a_window_of_their_site_without_naming_the_organization(world, org_user):
    now = timezone.now()
    response = client_for(org_user).post(
        "/api/v1/maintenance-windows",
        {
            "siteId": str(world.site_a1.pk),
            "name": "Patch night",
            "startsAt": (now - dt.timedelta(hours=1)).isoformat(),
            "endsAt": (now + dt.timedelta(hours=1)).isoformat(),
            "suppressCommands": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["orgId"], body["activeNow"], body["suppressAlerts"]) == (str(world.org_a.pk), True, True)
    assert MaintenanceWindow.objects.get(pk=body["id"]).site_id == world.site_a1.pk
    assert AuditLog.objects.filter(action="maintenance_window.create", target_id=body["id"]).exists()


def test_a_window_of_a_site_out_of_reach_does_not_exist(world, org_user):
    response = client_for(org_user).post(
        "/api/v1/maintenance-windows",
        {
            "siteId": str(world.site_a2.pk),
            "name": "x",
            "startsAt": "2030-01-01T00:00:00Z",
            "endsAt": "2030-01-01T01:00:00Z",
        },
        format="json",
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["siteId"]
    assert not MaintenanceWindow.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"endsAt": "2029-12-31T00:00:00Z"}, "endsAt"),
        ({"recurrence": "weekly"}, "weekdays"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"startsAt": "not a moment"}, "startsAt"),
        ({"weekdays": "monday"}, "weekdays"),
        ({"orgId": None, "siteId": None}, "orgId"),
    ],
)
def test_a_bad_window_gets_400_naming_the_field(world, org_admin, changes, field):
    body = {
        "orgId": str(world.org_a.pk),
        "name": "x",
        "startsAt": "2030-01-01T00:00:00Z",
        "endsAt": "2030-01-01T01:00:00Z",
        **changes,
    }

    response = client_for(org_admin).post("/api/v1/maintenance-windows", body, format="json")

    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error", "message", "fields"}
    assert field in response.json()["fields"], response.json()
    assert not MaintenanceWindow.objects.exists()


def test_changing_and_deleting_a_window_are_audited(world, org_admin):
    start = timezone.now() + dt.timedelta(days=1)
    window = MaintenanceWindow.objects.create(
        org=world.org_a, name="Night", starts_at=start, ends_at=start + dt.timedelta(hours=2)
    )
    client = client_for(org_admin)

    changed = client.patch(f"/api/v1/maintenance-windows/{window.pk}", {"name": "Late night"}, format="json")
    moved = client.patch(f"/api/v1/maintenance-windows/{window.pk}", {"orgId": str(world.org_a2.pk)}, format="json")
    deleted = client.delete(f"/api/v1/maintenance-windows/{window.pk}")

    assert (changed.status_code, moved.status_code, deleted.status_code) == (200, 400, 204)
    assert changed.json()["name"] == "Late night"
    assert not MaintenanceWindow.objects.filter(pk=window.pk).exists()
    actions = set(AuditLog.objects.filter(target_id=str(window.pk)).values_list("action", flat=True))
    assert actions == {"maintenance_window.update", "maintenance_window.delete"}
