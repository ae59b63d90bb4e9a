"""Alert rules over the technician API: CRUD through alerts.services.rules, path-addressed errors, partner scope
for partner-wide rules, and the preview (scoped like reading a rule)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog, PartnerUser
from alerts.models import Alert, AlertRule, NotificationChannel

pytestmark = pytest.mark.django_db

OFFLINE = {"kind": "offline", "minutes": 15}
CPU = {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10}


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


def test_an_org_admin_creates_a_rule_with_channels_and_an_audit_row(world, org_admin):
    channel = NotificationChannel.objects.create(org=world.org_a, name="Ops", kind="email", config={"to": ["o@a.io"]})

    response = client_for(org_admin).post(
        "/api/v1/alert-rules",
        {
            "orgId": str(world.org_a.pk),
            "name": "CPU hot",
            "condition": CPU,
            "forMinutes": 10,
            "channels": [str(channel.pk)],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["orgId"] == str(world.org_a.pk) and body["partnerId"] is None
    assert (
        body["channels"] == [str(channel.pk)] and body["forMinutes"] == 10 and body["createdById"] == str(org_admin.pk)
    )
    rule = AlertRule.objects.get(pk=body["id"])
    assert list(rule.channels.all()) == [channel] and rule.condition == CPU
    assert AuditLog.objects.filter(action="alert_rule.create", target_id=str(rule.pk), actor_user=org_admin).exists()


def test_a_bad_condition_gets_400_naming_the_path_inside_it(world, org_admin):
    response = client_for(org_admin).post(
        "/api/v1/alert-rules",
        {"orgId": str(world.org_a.pk), "name": "CPU", "condition": {**CPU, "windowMinutes": 0}},
        format="json",
    )

    fields = assert_error_shape(response, 400)
    assert list(fields) == ["condition.windowMinutes"]
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "condition": "offline"},
        {"name": "x", "condition": []},
        {"name": "", "condition": OFFLINE},
        {"name": "x", "condition": OFFLINE, "forMinutes": 1441},
        {"name": "x", "condition": OFFLINE, "severity": "apocalyptic"},
        {"name": "x", "condition": OFFLINE, "channels": "not a list"},
        {"name": "x", "condition": OFFLINE, "channels": ["not-a-uuid"]},
        {"name": ["x"], "condition": {"kind": "metric"}},
    ],
)
def test_a_bad_body_gets_400_in_the_error_shape(world, org_admin, body):
    response = client_for(org_admin).post("/api/v1/alert-rules", {"orgId": str(world.org_a.pk), **body}, format="json")

    assert_error_shape(response, 400)
    assert not AlertRule.objects.exists()


def test_a_rule_with_no_owner_or_two_gets_400(world, partner_admin):
    client = client_for(partner_admin)
    neither = client.post("/api/v1/alert-rules", {"name": "x", "condition": OFFLINE}, format="json")
    both = client.post(
        "/api/v1/alert-rules",
        {"name": "x", "condition": OFFLINE, "orgId": str(world.org_a.pk), "partnerId": str(world.partner_a.pk)},
        format="json",
    )

    assert "orgId" in assert_error_shape(neither, 400)
    assert "orgId" in assert_error_shape(both, 400)
    assert not AlertRule.objects.exists()


def test_a_site_of_another_organization_gets_400_naming_site_id(world, partner_admin):
    response = client_for(partner_admin).post(
        "/api/v1/alert-rules",
        {"orgId": str(world.org_a.pk), "siteId": str(world.site_a2_main.pk), "name": "x", "condition": OFFLINE},
        format="json",
    )

    assert list(assert_error_shape(response, 400)) == ["siteId"]


def test_a_channel_out_of_reach_does_not_exist(world, org_admin):
    foreign = NotificationChannel.objects.create(org=world.org_b, name="B", kind="email", config={"to": ["b@b.io"]})

    response = client_for(org_admin).post(
        "/api/v1/alert-rules",
        {"orgId": str(world.org_a.pk), "name": "x", "condition": OFFLINE, "channels": [str(foreign.pk)]},
        format="json",
    )

    assert list(assert_error_shape(response, 400)) == ["channels"]


def test_the_owner_of_a_rule_does_not_change(world, partner_admin, make_rule):
    rule = make_rule(world.org_a, OFFLINE)

    response = client_for(partner_admin).patch(
        f"/api/v1/alert-rules/{rule.pk}", {"orgId": str(world.org_a2.pk)}, format="json"
    )

    assert list(assert_error_shape(response, 400)) == ["orgId"]
    rule.refresh_from_db()
    assert rule.org_id == world.org_a.pk


@pytest.fixture
def org_admin_and_partner_viewer(world, roles, make_org_member):
    """Org Admin of org A (alerts:write there) who is also a Partner Viewer of partner A (reads at partner level)."""
    user = make_org_member("both@a.example", world.org_a, "Org Admin")
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=roles["Partner Viewer"], org_access="all")
    return user


def test_a_partner_wide_rule_needs_partner_scope_to_write(world, org_admin_and_partner_viewer, make_rule):
    client = client_for(org_admin_and_partner_viewer)
    partner_rule = make_rule(world.partner_a, OFFLINE, name="Partner offline")

    created = client.post(
        "/api/v1/alert-rules",
        {"partnerId": str(world.partner_a.pk), "name": "Mine", "condition": OFFLINE},
        format="json",
    )
    changed = client.patch(f"/api/v1/alert-rules/{partner_rule.pk}", {"name": "Changed"}, format="json")
    deleted = client.delete(f"/api/v1/alert-rules/{partner_rule.pk}")
    seen = client.get(f"/api/v1/alert-rules/{partner_rule.pk}")
    own = client.post(
        "/api/v1/alert-rules", {"orgId": str(world.org_a.pk), "name": "Mine", "condition": OFFLINE}, format="json"
    )

    assert_error_shape(created, 403, "permission_denied")
    assert_error_shape(changed, 403, "permission_denied")
    assert_error_shape(deleted, 403, "permission_denied")
    assert seen.status_code == 200
    assert own.status_code == 201, own.content  # an organization's rule is theirs to write
    assert list(AlertRule.objects.filter(partner=world.partner_a).values_list("name", flat=True)) == ["Partner offline"]


def test_a_partner_admin_writes_a_partner_wide_rule(world, partner_admin):
    response = client_for(partner_admin).post(
        "/api/v1/alert-rules",
        {"partnerId": str(world.partner_a.pk), "name": "Everyone offline", "condition": OFFLINE},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert AlertRule.objects.get(pk=response.json()["id"]).partner_id == world.partner_a.pk


def test_changing_the_condition_resolves_the_rules_open_alerts_and_is_audited(world, org_admin, make_rule):
    rule = make_rule(world.org_a, OFFLINE)
    device = world.devices[world.site_a1][0]
    alert = Alert.objects.create(
        org=world.org_a, site=world.site_a1, device=device, rule=rule, severity="warning", title="offline"
    )

    response = client_for(org_admin).patch(
        f"/api/v1/alert-rules/{rule.pk}", {"condition": {"kind": "offline", "minutes": 30}}, format="json"
    )

    assert response.status_code == 200, response.content
    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason) == ("resolved", "rule_changed")
    assert AuditLog.objects.filter(action="alert_rule.update", target_id=str(rule.pk)).exists()


def test_deleting_a_rule_is_audited(world, org_admin, make_rule):
    rule = make_rule(world.org_a, OFFLINE)

    response = client_for(org_admin).delete(f"/api/v1/alert-rules/{rule.pk}")

    assert response.status_code == 204, response.content
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert AuditLog.objects.filter(action="alert_rule.delete", target_id=str(rule.pk)).exists()


# --- preview ---------------------------------------------------------------------------------------------------------


def test_the_preview_counts_the_devices_and_gives_each_ones_observed_value(world, partner_technician, add_disk):
    a1_1, a1_2 = world.devices[world.site_a1]
    add_disk(a1_1, "/", 100, 4)  # 4 % free
    add_disk(a1_2, "/", 100, 50)

    response = client_for(partner_technician).post(
        "/api/v1/alert-rules/preview",
        {"orgId": str(world.org_a.pk), "condition": {"kind": "disk", "freePercentBelow": 10}},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    assert [(row["device"]["hostname"], row["value"]) for row in body["sample"]] == [("a1-1", 4.0)]


def test_a_technician_of_organization_a_cannot_preview_organization_b(world, make_org_member):
    technician = make_org_member("tech@a.example", world.org_a, "Org Admin")

    response = client_for(technician).post(
        "/api/v1/alert-rules/preview", {"orgId": str(world.org_b.pk), "condition": OFFLINE}, format="json"
    )

    assert list(assert_error_shape(response, 400)) == ["orgId"]


def test_a_member_restricted_to_one_site_gets_403_on_a_preview(world, org_user):
    response = client_for(org_user).post(
        "/api/v1/alert-rules/preview", {"orgId": str(world.org_a.pk), "condition": OFFLINE}, format="json"
    )

    assert_error_shape(response, 403, "permission_denied")


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"kind": "disk"}, "condition"),
        ({**CPU, "metric": "coffeeLevel"}, "condition.metric"),
        (
            {"kind": "rule", "filterRules": {"field": "osType", "operator": "before", "value": 1}},
            "condition.filterRules",
        ),
        ("offline", "condition"),
    ],
)
def test_a_bad_condition_in_a_preview_gets_400_naming_its_path(world, partner_admin, condition, field):
    response = client_for(partner_admin).post(
        "/api/v1/alert-rules/preview", {"orgId": str(world.org_a.pk), "condition": condition}, format="json"
    )

    fields = assert_error_shape(response, 400)
    assert fields and all(key.startswith(field) for key in fields), fields
