"""Writing alert rules: validation in the API's terms, channels of the owner, audit rows, and the alerts of a rule
that changes what it watches."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import AuditLog
from alerts.models import Alert, AlertRule, AlertState, NotificationChannel
from alerts.services.evaluate import evaluate_all
from alerts.services.rules import delete_rule, save_rule
from rmm.domain_errors import Invalid
from tests import factories

MIN = dt.timedelta(minutes=1)
OFFLINE = {"kind": "offline", "minutes": 15}


@pytest.fixture
def person(make_user):
    return make_user("tech@example.com")


@pytest.fixture
def site(db):
    return factories.site()


@pytest.fixture
def watched(site, now, person):
    """A saved offline rule with one open alert and one pending state."""
    factories.device(site, last_seen_at=now - 60 * MIN)
    factories.device(site, last_seen_at=now - 10 * MIN)
    rule = save_rule(rule=AlertRule(org=site.org, name="Offline", condition=OFFLINE, for_minutes=30), actor=person)
    evaluate_all(now=now)
    evaluate_all(now=now + 30 * MIN)  # the first device held from now: it opens; the second is pending from here
    return rule


def test_creating_a_rule_saves_it_with_its_channels_and_writes_an_audit_row(site, person):
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    shared = NotificationChannel.objects.create(partner=site.org.partner, name="noc", kind="email", config={"to": []})

    rule = save_rule(
        rule=AlertRule(org=site.org, name="Offline", condition=OFFLINE), actor=person, channels=[channel, shared]
    )

    assert set(rule.channels.all()) == {channel, shared}
    assert rule.created_by == person
    row = AuditLog.objects.get(action="alert_rule.create")
    assert (row.actor_user, row.org_id, row.target_id) == (person, site.org_id, str(rule.pk))
    assert row.details["rule"]["condition"] == OFFLINE


def test_a_bad_condition_is_refused_with_the_path_of_each_mistake(site, person):
    rule = AlertRule(org=site.org, name="CPU", condition={"kind": "metric", "metric": "cpuPercent", "windowMinutes": 0})

    with pytest.raises(Invalid) as caught:
        save_rule(rule=rule, actor=person)

    assert caught.value.fields == {
        "condition.aggregate": ["required: one of avg, max, min"],
        "condition.op": ["required: one of >, >=, <, <="],
        "condition.value": ["must be a number, not null"],
        "condition.windowMinutes": ["must be a whole number from 1 to 1440"],
    }
    assert not AlertRule.objects.exists()


def test_a_site_of_another_organization_and_a_foreign_channel_are_refused(site, person):
    with pytest.raises(Invalid) as by_site:
        save_rule(rule=AlertRule(org=site.org, site=factories.site(), name="x", condition=OFFLINE), actor=person)
    foreign = NotificationChannel.objects.create(org=factories.organization(), name="theirs", kind="email")
    with pytest.raises(Invalid) as by_channel:
        save_rule(rule=AlertRule(org=site.org, name="x", condition=OFFLINE), actor=person, channels=[foreign])

    assert list(by_site.value.fields) == ["siteId"]
    assert by_channel.value.fields == {"channelIds": ["Channels of another owner cannot notify for this rule: theirs."]}
    assert not AlertRule.objects.exists()


def test_renaming_a_rule_leaves_its_alerts_alone(watched, person):
    watched.name = "Offline servers"
    watched.severity = "critical"

    save_rule(rule=watched, actor=person)

    assert Alert.objects.filter(rule=watched, status="open").count() == 1
    assert AlertState.objects.filter(rule=watched).count() == 2
    changes = AuditLog.objects.get(action="alert_rule.update").details["changes"]
    assert changes == {
        "name": {"from": "Offline", "to": "Offline servers"},
        "severity": {"from": "warning", "to": "critical"},
    }


@pytest.mark.parametrize(
    "change",
    [
        {"condition": {"kind": "offline", "minutes": 30}},
        {"enabled": False},
        {"site": "other"},
    ],
    ids=["condition", "disabled", "scope"],
)
def test_changing_what_a_rule_watches_resolves_its_alerts_and_forgets_its_states(watched, person, site, change):
    if change.get("site"):
        change = {"site": factories.site(site.org)}
    for name, value in change.items():
        setattr(watched, name, value)

    save_rule(rule=watched, actor=person)

    alert = Alert.objects.get(rule=watched)
    assert (alert.status, alert.resolve_reason) == ("resolved", "rule_changed")
    assert not AlertState.objects.filter(rule=watched).exists()
    assert AuditLog.objects.get(action="alert_rule.update").details["alertsResolved"] == 1


def test_deleting_a_rule_resolves_its_alerts_first_and_keeps_them(watched, person):
    delete_rule(rule=watched, actor=person)

    alert = Alert.objects.get()
    assert (alert.status, alert.resolve_reason, alert.rule_id) == ("resolved", "rule_changed", None)
    assert not AlertRule.objects.exists()
    row = AuditLog.objects.get(action="alert_rule.delete")
    assert (row.details["name"], row.details["alertsResolved"]) == ("Offline", 1)
