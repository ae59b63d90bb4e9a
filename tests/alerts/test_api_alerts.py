"""Alerts over the technician API: the list and its filters, one alert, acknowledge / resolve through
alerts.services.lifecycle (audited), and the summary. Scoping: a technician of organization A never sees or
acknowledges an alert of organization B."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog
from alerts.models import Alert, AlertRule

pytestmark = pytest.mark.django_db

OFFLINE = {"kind": "offline", "minutes": 15}
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def alerts(world):
    """Alerts of org A (a1-1 critical open, a1-2 warning acknowledged, a2-1 info resolved) and of org B."""
    rule_a = AlertRule.objects.create(org=world.org_a, name="A", condition=OFFLINE)
    rule_b = AlertRule.objects.create(org=world.org_b, name="B", condition=OFFLINE)
    (a1_1, a1_2), (a2_1, _) = world.devices[world.site_a1], world.devices[world.site_a2]

    def alert(name, device, rule, severity, status, minutes_ago):
        return name, Alert.objects.create(
            org_id=device.org_id,
            site_id=device.site_id,
            device=device,
            rule=rule,
            severity=severity,
            status=status,
            title=f"{name} offline",
            opened_at=T0 - dt.timedelta(minutes=minutes_ago),
        )

    return dict(
        [
            alert("a1_1", a1_1, rule_a, "critical", "open", 10),
            alert("a1_2", a1_2, rule_a, "warning", "acknowledged", 20),
            alert("a2_1", a2_1, rule_a, "info", "resolved", 30),
            alert("b1_1", world.devices[world.site_b1][0], rule_b, "critical", "open", 5),
        ]
    )


def test_the_list_is_newest_first_with_the_device_and_rule_named(world, alerts, partner_admin):
    response = client_for(partner_admin).get("/api/v1/alerts")

    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [str(alerts[name].pk) for name in ("a1_1", "a1_2", "a2_1")]
    assert (rows[0]["deviceHostname"], rows[0]["ruleName"], rows[0]["status"]) == ("a1-1", "A", "open")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", {"a1_1"}),
        ("status=open&status=acknowledged", {"a1_1", "a1_2"}),
        ("severity=critical", {"a1_1"}),
        ("siteId={site_a2}", {"a2_1"}),
        ("deviceId={a1_2}", {"a1_2"}),
        ("ruleId={rule_a}", {"a1_1", "a1_2", "a2_1"}),
        ("orgId={org_b}", set()),
        ("openedAfter=2026-03-02T11:45:00Z", {"a1_1"}),
        ("openedBefore=2026-03-02T11:45:00Z", {"a1_2", "a2_1"}),
    ],
)
def test_each_filter_narrows_the_list(world, alerts, partner_admin, query, expected):
    values = {
        "site_a2": world.site_a2.pk,
        "a1_2": alerts["a1_2"].device_id,
        "rule_a": alerts["a1_1"].rule_id,
        "org_b": world.org_b.pk,
    }

    response = client_for(partner_admin).get(f"/api/v1/alerts?{query.format(**values)}")

    assert ids(response) == {str(alerts[name].pk) for name in expected}


@pytest.mark.parametrize(
    "query", ["status=burning", "severity=loud", "openedAfter=yesterday", "deviceId=nope", "ordering=title"]
)
def test_a_bad_filter_gets_400_in_the_error_shape(alerts, partner_admin, query):
    response = client_for(partner_admin).get(f"/api/v1/alerts?{query}")

    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error", "message", "fields"}


def test_a_technician_of_organization_a_never_sees_or_acknowledges_an_alert_of_b(world, alerts, make_org_member):
    technician = make_org_member("tech@a.example", world.org_a, "Org User")
    client = client_for(technician)
    alert_b = alerts["b1_1"]

    listed = client.get("/api/v1/alerts")
    filtered = client.get(f"/api/v1/alerts?orgId={world.org_b.pk}")
    one = client.get(f"/api/v1/alerts/{alert_b.pk}")
    acknowledged = client.post(f"/api/v1/alerts/{alert_b.pk}/acknowledge", {}, format="json")
    resolved = client.post(f"/api/v1/alerts/{alert_b.pk}/resolve", {}, format="json")
    summary = client.get("/api/v1/alerts/summary")

    assert ids(listed) == {str(alerts[name].pk) for name in ("a1_1", "a1_2", "a2_1")}
    assert ids(filtered) == set()
    assert (one.status_code, acknowledged.status_code, resolved.status_code) == (404, 404, 404)
    assert acknowledged.json()["error"] == "not_found"
    assert summary.json()["total"] == 3
    alert_b.refresh_from_db()
    assert alert_b.status == "open" and not AuditLog.objects.filter(target_id=str(alert_b.pk)).exists()


def test_acknowledging_records_who_and_writes_an_audit_row(alerts, org_user):
    alert = alerts["a1_1"]

    response = client_for(org_user).post(f"/api/v1/alerts/{alert.pk}/acknowledge", {"note": "On it"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "acknowledged"
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by_id) == ("acknowledged", org_user.pk)
    row = AuditLog.objects.get(action="alert.acknowledge", target_id=str(alert.pk))
    assert row.actor_user_id == org_user.pk and row.details["note"] == "On it"


def test_resolving_by_hand_is_manual_and_audited(alerts, partner_technician):
    alert = alerts["a1_2"]

    response = client_for(partner_technician).post(f"/api/v1/alerts/{alert.pk}/resolve")

    assert response.status_code == 200, response.content
    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason, alert.resolved_by_id) == ("resolved", "manual", partner_technician.pk)
    assert AuditLog.objects.filter(action="alert.resolve", target_id=str(alert.pk)).exists()


@pytest.mark.parametrize("verb", ["acknowledge", "resolve"])
def test_a_resolved_alert_answers_409(alerts, partner_admin, verb):
    alert = alerts["a2_1"]

    response = client_for(partner_admin).post(f"/api/v1/alerts/{alert.pk}/{verb}", {"note": "late"}, format="json")

    assert response.status_code == 409, response.content
    assert response.json()["error"] == "alert_resolved"
    assert not AuditLog.objects.filter(target_id=str(alert.pk)).exists()


def test_a_note_that_is_not_text_gets_400(alerts, partner_admin):
    response = client_for(partner_admin).post(
        f"/api/v1/alerts/{alerts['a1_1'].pk}/acknowledge", {"note": {"x": 1}}, format="json"
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["note"]


def test_a_viewer_gets_403_on_acknowledge(alerts, viewer):
    response = client_for(viewer).post(f"/api/v1/alerts/{alerts['a1_1'].pk}/acknowledge")

    assert response.status_code == 403, response.content
    assert Alert.objects.get(pk=alerts["a1_1"].pk).status == "open"


def test_the_summary_counts_by_status_and_severity_within_reach_in_one_query(
    alerts, org_user, django_assert_num_queries
):
    client = client_for(org_user)
    client.get("/api/v1/alerts/summary")  # the user's reach is computed once and kept on the (forced) user

    with django_assert_num_queries(1):
        response = client.get("/api/v1/alerts/summary?siteId=" + str(alerts["a1_1"].site_id))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "byStatus": {"open": 1, "acknowledged": 1, "resolved": 0},
        "bySeverity": {"info": 0, "warning": 1, "critical": 1},
        "activeBySeverity": {"info": 0, "warning": 1, "critical": 1},
        "total": 2,
    }
