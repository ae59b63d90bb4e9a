"""An alert's lifecycle: acknowledge, resolve by hand, resolve on a rule change and on decommissioning."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import AuditLog
from alerts.models import Alert, AlertState, Notification, NotificationChannel
from alerts.services import lifecycle
from alerts.services.evaluate import evaluate_all
from devices.services import status
from rmm.domain_errors import Conflict
from tests import factories

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def opened(db, now, make_rule, make_user):
    """An open offline alert of a rule with one channel, and the person acting on it."""
    site = factories.site()
    factories.device(site, last_seen_at=now - 20 * MIN)
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    rule.channels.set([channel])
    evaluate_all(now=now)
    return Alert.objects.get(rule=rule), make_user("tech@example.com")


def test_acknowledging_records_who_and_when_and_writes_an_audit_row(opened):
    alert, person = opened

    result = lifecycle.acknowledge(alert=alert, actor=person, note=" on it ", ip="10.0.0.9")

    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", person)
    assert alert.acknowledged_at is not None
    assert result == alert
    row = AuditLog.objects.get(action="alert.acknowledge")
    assert (row.actor_user, row.target_id, row.details["note"], row.ip) == (person, str(alert.pk), "on it", "10.0.0.9")


def test_acknowledging_twice_changes_nothing_the_second_time(opened):
    alert, person = opened
    first = lifecycle.acknowledge(alert=alert, actor=person)

    second = lifecycle.acknowledge(alert=alert, actor=person)

    assert second.acknowledged_at == first.acknowledged_at
    assert AuditLog.objects.filter(action="alert.acknowledge").count() == 1


def test_a_resolved_alert_cannot_be_acknowledged_or_resolved_again(opened):
    alert, person = opened
    lifecycle.resolve(alert=alert, actor=person)

    with pytest.raises(Conflict) as acknowledging:
        lifecycle.acknowledge(alert=alert, actor=person)
    with pytest.raises(Conflict) as resolving:
        lifecycle.resolve(alert=alert, actor=person)

    assert acknowledging.value.code == resolving.value.code == "alert_resolved"
    assert AuditLog.objects.filter(action="alert.resolve").count() == 1


def test_resolving_by_hand_records_the_person_announces_it_and_forgets_the_pending_state(opened, now):
    alert, person = opened
    assert AlertState.objects.filter(rule=alert.rule).exists()

    lifecycle.resolve(alert=alert, actor=person, note="rebooted")

    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason, alert.resolved_by) == ("resolved", "manual", person)
    assert AuditLog.objects.get(action="alert.resolve").details["note"] == "rebooted"
    assert Notification.objects.filter(alert=alert, event="alert.resolved").count() == 1
    assert not AlertState.objects.filter(rule=alert.rule).exists()


def test_an_acknowledged_alert_still_resolves_by_itself_when_the_condition_clears(opened, now):
    alert, person = opened
    lifecycle.acknowledge(alert=alert, actor=person)
    type(alert.device).objects.filter(pk=alert.device_id).update(last_seen_at=now)

    evaluate_all(now=now + MIN)

    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason) == ("resolved", "condition_cleared")


def test_decommissioning_a_device_resolves_its_alerts(opened, now):
    alert, person = opened

    status.decommission(device=alert.device, actor=person)

    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason, alert.resolved_by) == ("resolved", "device_decommissioned", None)
    assert Notification.objects.filter(alert=alert, event="alert.resolved").count() == 1
    assert not AlertState.objects.filter(device=alert.device).exists()
    evaluate_all(now=now + MIN)
    assert not Alert.objects.filter(status="open").exists()


def test_a_rule_change_resolves_the_rules_alerts_and_forgets_its_states(opened):
    alert, _person = opened

    resolved = lifecycle.resolve_for_rule_change(rule=alert.rule)

    assert resolved == [alert]
    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason) == ("resolved", "rule_changed")
    assert not AlertState.objects.filter(rule=alert.rule).exists()
