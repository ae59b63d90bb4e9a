"""The outbox: what an alert change announces (rows per enabled channel, the payload exactly as sent), grouping into
digests, the transaction it shares with the alert change, and re-notification."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from alerts.models import Alert, MaintenanceWindow, Notification, NotificationChannel
from alerts.services.notify import announce, email_text, renotify_due
from devices.models import Device
from tests import factories

OFFLINE = {"kind": "offline", "minutes": 15}


@pytest.fixture
def site(db):
    return factories.site()


@pytest.fixture
def hook(site):
    return NotificationChannel.objects.create(
        org=site.org, name="Hook", kind="webhook", config={"url": "https://hooks.example.com/x"}, secret="s" * 20
    )


@pytest.fixture
def mail(site):
    return NotificationChannel.objects.create(org=site.org, name="Mail", kind="email", config={"to": ["a@b.co"]})


@pytest.fixture
def rule(site, make_rule, hook, mail):
    rule = make_rule(site.org, OFFLINE, name="Offline 15 min", severity="critical")
    rule.channels.set([hook, mail])
    return rule


def open_alert(rule, device: Device, **fields) -> Alert:
    fields.setdefault("opened_at", dt.datetime(2026, 3, 2, 11, 0, tzinfo=dt.UTC))
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        rule=rule,
        severity=rule.severity if rule else "critical",
        title=f"Offline for more than 15 min: {device.hostname}",
        value=17.0,
        **fields,
    )


def test_an_opened_alert_writes_one_row_per_enabled_channel_with_the_payload_sent(site, rule, hook, mail):
    mail.enabled = False
    mail.save()
    device = factories.device(site, hostname="srv-sql-01")
    alert = open_alert(rule, device)

    assert announce(event="alert.opened", rule=rule, alerts=[alert]) == 1

    row = Notification.objects.get()
    assert (row.channel, row.alert, row.event, row.status) == (hook, alert, "alert.opened", "pending")
    assert row.org_id == site.org_id
    payload = row.payload
    assert payload["deliveryId"] == str(row.pk)
    assert payload["event"] == "alert.opened"
    assert payload["alert"]["id"] == str(alert.pk)
    assert payload["alert"]["severity"] == "critical"
    assert payload["alert"]["value"] == 17.0
    assert payload["device"]["hostname"] == "srv-sql-01"
    assert payload["device"]["url"] == f"http://localhost:8000/admin/devices/device/{device.pk}/change/"
    assert payload["rule"] == {"id": str(rule.pk), "name": "Offline 15 min"}
    assert payload["site"]["name"] == site.name


def test_announcing_an_opening_leaves_last_notified_at_to_the_statement_that_opened_the_alert(site, rule):
    alert = open_alert(rule, factories.device(site))

    assert announce(event="alert.opened", rule=rule, alerts=[alert]) == 2

    alert.refresh_from_db()
    assert alert.last_notified_at is None


def test_a_rule_without_channels_writes_nothing(site, make_rule):
    rule = make_rule(site.org, OFFLINE)
    alert = open_alert(rule, factories.device(site))
    assert announce(event="alert.opened", rule=rule, alerts=[alert]) == 0
    assert not Notification.objects.exists()


def test_fifty_alerts_of_one_rule_in_one_site_make_one_digest_per_channel(site, rule, hook, mail):
    alerts = [open_alert(rule, factories.device(site)) for _ in range(50)]

    assert announce(event="alert.opened", rule=rule, alerts=alerts) == 2

    digests = Notification.objects.order_by("channel__name")
    assert [(row.channel, row.event, row.alert) for row in digests] == [
        (hook, "alert.digest", None),
        (mail, "alert.digest", None),
    ]
    payload = digests[0].payload
    assert payload["count"] == 50
    assert payload["of"] == "alert.opened"
    assert len(payload["devices"]) == 20
    assert payload["rule"]["name"] == "Offline 15 min"


def test_alerts_are_grouped_per_site_at_the_threshold(settings, site, rule, hook):
    settings.ALERT_DIGEST_THRESHOLD = 3
    rule.channels.set([hook])
    other_site = factories.site(site.org)
    alerts = [open_alert(rule, factories.device(site)) for _ in range(4)]
    alerts += [open_alert(rule, factories.device(other_site)) for _ in range(3)]

    assert announce(event="alert.opened", rule=rule, alerts=alerts) == 4

    assert sorted(Notification.objects.values_list("event", flat=True)) == ["alert.digest"] + ["alert.opened"] * 3


def test_a_rolled_back_alert_change_leaves_no_outbox_row(site, rule):
    device = factories.device(site)
    with pytest.raises(RuntimeError), transaction.atomic():
        alert = open_alert(rule, device)
        assert announce(event="alert.opened", rule=rule, alerts=[alert]) == 2
        raise RuntimeError("the evaluator's transaction fails after announcing")
    assert not Alert.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_announcing_outside_a_transaction_is_refused(site, rule):
    alert = open_alert(rule, factories.device(site))
    with pytest.raises(RuntimeError, match="inside the transaction"):
        announce(event="alert.opened", rule=rule, alerts=[alert])
    assert not Notification.objects.exists()


def test_only_alert_events_are_announced(site, rule):
    alert = open_alert(rule, factories.device(site))
    with pytest.raises(ValueError, match="alert event"):
        announce(event="channel.test", rule=rule, alerts=[alert])


def test_the_email_text_names_the_device_the_rule_the_value_and_the_device_page(site, rule, mail):
    device = factories.device(site, hostname="srv-sql-01")
    announce(event="alert.opened", rule=rule, alerts=[open_alert(rule, device)])
    subject, body = email_text(Notification.objects.get(channel=mail).payload)
    assert subject == "[RMM] Alert (critical): Offline for more than 15 min: srv-sql-01"
    assert "Device:         srv-sql-01" in body
    assert "Rule:           Offline 15 min" in body
    assert "Observed value: 17" in body
    assert f"/admin/devices/device/{device.pk}/change/" in body


class TestRenotify:
    def rule(self, rule, minutes=30):
        rule.renotify_minutes = minutes
        rule.save()
        return rule

    def test_an_open_alert_is_announced_again_after_renotify_minutes(self, site, rule):
        rule = self.rule(rule)
        opened = dt.datetime(2026, 3, 2, 11, 0, tzinfo=dt.UTC)
        alert = open_alert(rule, factories.device(site), opened_at=opened)

        assert renotify_due(now=opened + dt.timedelta(minutes=29)) == 0
        assert renotify_due(now=opened + dt.timedelta(minutes=30)) == 1

        assert sorted(Notification.objects.values_list("event", flat=True)) == ["alert.renotify"] * 2
        alert.refresh_from_db()
        assert alert.last_notified_at is not None
        # Counted again from that notification: not due a second time at once.
        assert renotify_due(now=alert.last_notified_at + dt.timedelta(minutes=29)) == 0

    def test_acknowledged_and_ruleless_alerts_are_not_renotified(self, site, rule):
        rule = self.rule(rule)
        open_alert(rule, factories.device(site), status="acknowledged")
        never = rule.__class__.objects.create(org=site.org, name="quiet", condition=OFFLINE)
        open_alert(never, factories.device(site))
        assert renotify_due(now=dt.datetime(2026, 3, 3, tzinfo=dt.UTC)) == 0

    def test_a_device_in_a_maintenance_window_is_not_renotified(self, site, rule):
        rule = self.rule(rule)
        now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
        open_alert(rule, factories.device(site))
        MaintenanceWindow.objects.create(
            org=site.org,
            site=site,
            name="Patch night",
            starts_at=now - dt.timedelta(hours=1),
            ends_at=now + dt.timedelta(hours=1),
            timezone="UTC",
            suppress_alerts=True,
        )
        assert renotify_due(now=now) == 0
        assert renotify_due(now=now + dt.timedelta(hours=2)) == 1
