"""Delivering the outbox to real receivers: a webhook server on loopback (signature, retries with the spec's
backoff, dead rows, refused addresses) and an aiosmtpd SMTP server; the per-channel rate limit and its fairness
between devices."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import override_settings

from alerts.models import Alert, Notification, NotificationChannel
from alerts.services.delivery import deliver_due
from alerts.services.notify import announce
from tests import factories
from tests.concurrency import run_concurrently
from tests.receivers import SmtpReceiver, WebhookReceiver

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SECRET = "webhook-secret-0123456789"


@pytest.fixture
def loopback(settings):
    """The receivers of these tests listen on 127.0.0.1 over plain HTTP."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


@pytest.fixture
def site(db):
    return factories.site()


@pytest.fixture
def rule(site, make_rule):
    return make_rule(site.org, {"kind": "offline", "minutes": 15}, name="Offline 15 min", severity="critical")


def webhook(site, url: str) -> NotificationChannel:
    return NotificationChannel.objects.create(
        org=site.org, name=f"Hook {url}", kind="webhook", config={"url": url}, secret=SECRET
    )


def opened(rule, channel, device, *, at=T0) -> Alert:
    """An alert of ``rule`` opened on ``device`` and announced to ``channel``; its outbox rows due at ``at``."""
    rule.channels.set([channel])
    alert = Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        rule=rule,
        severity="critical",
        title=f"Offline: {device.hostname}",
        value=20.0,
    )
    with transaction.atomic():
        announce(event="alert.opened", rule=rule, alerts=[alert])
    Notification.objects.filter(alert=alert).update(next_attempt_at=at, created_at=at)
    return alert


def test_a_webhook_is_delivered_signed_with_the_headers_of_the_spec(loopback, site, rule):
    with WebhookReceiver([200]) as receiver:
        alert = opened(rule, webhook(site, receiver.url), factories.device(site, hostname="srv-01"))
        report = deliver_due(now=T0)
    assert report.sent == 1
    row = Notification.objects.get()
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, T0, "")
    (request,) = receiver.requests
    assert request.path == "/hooks/rmm"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-rmm-event"] == "alert.opened"
    assert request.headers["x-rmm-delivery"] == str(row.pk)
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-rmm-signature"], expected)
    body = json.loads(request.body)
    assert body == row.payload
    assert body["deliveryId"] == str(row.pk)
    assert body["alert"]["id"] == str(alert.pk)
    assert body["device"]["hostname"] == "srv-01"


def test_a_500_is_retried_with_the_spec_backoff_and_the_same_delivery_id(loopback, site, rule):
    with WebhookReceiver([500, 500, 502, 200]) as receiver:
        opened(rule, webhook(site, receiver.url), factories.device(site))
        row = Notification.objects.get()
        clock = T0
        for wait in (30, 120, 600):
            deliver_due(now=clock)
            row.refresh_from_db()
            assert (row.status, row.next_attempt_at) == ("failed", clock + dt.timedelta(seconds=wait))
            assert row.last_error.startswith("HTTP 5")
            # Not due a second earlier.
            deliver_due(now=clock + dt.timedelta(seconds=wait - 1))
            clock += dt.timedelta(seconds=wait)
        deliver_due(now=clock)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_at) == ("sent", 4, clock)
    assert len(receiver.requests) == 4
    assert {request.headers["x-rmm-delivery"] for request in receiver.requests} == {str(row.pk)}
    assert len({request.body for request in receiver.requests}) == 1


def test_a_row_is_dead_after_eight_failed_attempts(loopback, site, rule):
    with WebhookReceiver([503]) as receiver:
        opened(rule, webhook(site, receiver.url), factories.device(site))
        row = Notification.objects.get()
        waits = []
        clock = T0
        while row.status != "dead":
            deliver_due(now=clock)
            row.refresh_from_db()
            if row.status == "failed":
                waits.append((row.next_attempt_at - clock).total_seconds())
                clock = row.next_attempt_at
    assert waits == [30, 120, 600, 1800, 3600, 3600, 3600]
    assert row.attempts == 8
    assert len(receiver.requests) == 8
    assert deliver_due(now=clock + dt.timedelta(days=1)).sent == 0
    assert len(receiver.requests) == 8


@pytest.mark.parametrize(("status", "outcome"), [(404, "dead"), (410, "dead"), (408, "failed"), (429, "failed")])
def test_a_4xx_is_dead_at_once_except_408_and_429(loopback, site, rule, status, outcome):
    with WebhookReceiver([status]) as receiver:
        opened(rule, webhook(site, receiver.url), factories.device(site))
        deliver_due(now=T0)
    row = Notification.objects.get()
    assert (row.status, row.attempts) == (outcome, 1)
    assert row.last_error.startswith(f"HTTP {status}")


def test_a_receiver_that_is_down_is_retried(loopback, site, rule):
    with WebhookReceiver([200]) as receiver:
        url = receiver.url
    opened(rule, webhook(site, url), factories.device(site))
    deliver_due(now=T0)
    row = Notification.objects.get()
    assert (row.status, row.next_attempt_at) == ("failed", T0 + dt.timedelta(seconds=30))
    assert "Connection" in row.last_error or "refused" in row.last_error.lower()


def test_a_loopback_address_is_refused_at_delivery_without_the_setting(settings, site, rule):
    settings.WEBHOOK_ALLOW_HTTP = True
    with WebhookReceiver([200]) as receiver:
        # Saved while allowed (or pointing at a name that later resolved to loopback): delivery checks again.
        opened(rule, webhook(site, receiver.url.replace("127.0.0.1", "localhost")), factories.device(site))
        deliver_due(now=T0)
    row = Notification.objects.get()
    assert row.status == "dead"
    assert "resolves to 127.0.0.1" in row.last_error or "resolves to ::1" in row.last_error
    assert receiver.requests == []


def test_plain_http_is_refused_at_delivery_without_the_setting(settings, site, rule):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    with WebhookReceiver([200]) as receiver:
        opened(rule, webhook(site, receiver.url), factories.device(site))
        deliver_due(now=T0)
    row = Notification.objects.get()
    assert row.status == "dead"
    assert "https only" in row.last_error
    assert receiver.requests == []


def test_rows_of_a_disabled_channel_are_not_sent(loopback, site, rule):
    with WebhookReceiver([200]) as receiver:
        channel = webhook(site, receiver.url)
        opened(rule, channel, factories.device(site))
        channel.enabled = False
        channel.save()
        deliver_due(now=T0)
    assert Notification.objects.get().status == "dead"
    assert receiver.requests == []


class TestEmail:
    def channel(self, site, to=("ops@example.com", "oncall@example.com")):
        return NotificationChannel.objects.create(org=site.org, name="Mail", kind="email", config={"to": list(to)})

    def test_an_alert_is_mailed_through_a_real_smtp_server(self, site, rule):
        device = factories.device(site, hostname="srv-sql-01")
        with SmtpReceiver() as smtp, override_settings(**smtp.smtp_settings(), DEFAULT_FROM_EMAIL="rmm@example.com"):
            opened(rule, self.channel(site), device)
            report = deliver_due(now=T0)
        assert report.sent == 1
        row = Notification.objects.get()
        assert row.status == "sent"
        ((sender, recipients, message),) = smtp.messages
        assert sender == "rmm@example.com"
        assert recipients == ["ops@example.com", "oncall@example.com"]
        assert message["Subject"] == "[RMM] Alert (critical): Offline: srv-sql-01"
        assert message["X-RMM-Delivery"] == str(row.pk)
        text = message.get_payload(decode=True).decode()
        assert "Device:         srv-sql-01" in text
        assert "Rule:           Offline 15 min" in text
        assert "Observed value: 20" in text
        assert f"http://localhost:8000/admin/devices/device/{device.pk}/change/" in text

    def test_an_smtp_server_that_is_down_is_retried(self, site, rule):
        with SmtpReceiver() as smtp:
            unreachable = smtp.smtp_settings()
        with override_settings(**unreachable):
            opened(rule, self.channel(site), factories.device(site))
            deliver_due(now=T0)
        row = Notification.objects.get()
        assert (row.status, row.next_attempt_at) == ("failed", T0 + dt.timedelta(seconds=30))


class TestRateLimit:
    def test_one_noisy_device_does_not_delay_another_devices_notification(self, loopback, settings, site, rule):
        settings.NOTIFY_MAX_PER_CHANNEL_PER_MINUTE = 20  # a device may use 2 of them per minute
        noisy, quiet = factories.device(site, hostname="noisy"), factories.device(site, hostname="quiet")
        with WebhookReceiver([200]) as receiver:
            channel = webhook(site, receiver.url)
            for n in range(30):
                opened(rule, channel, noisy, at=T0 - dt.timedelta(seconds=60 - n))
                Alert.objects.filter(device=noisy).update(status="resolved")  # one open alert per device at a time
            opened(rule, channel, quiet, at=T0)  # after all thirty of the noisy device's

            first = deliver_due(now=T0)
            hosts = [json.loads(request.body)["device"]["hostname"] for request in receiver.requests]
            assert "quiet" in hosts
            assert hosts.count("noisy") == 2
            assert (first.sent, first.folded) == (3, 28)

            # The noisy device's overflow is one digest, sent the next minute.
            assert deliver_due(now=T0 + dt.timedelta(seconds=59)).sent == 0
            assert deliver_due(now=T0 + dt.timedelta(seconds=60)).sent == 1
        digest = json.loads(receiver.requests[-1].body)
        assert digest["event"] == "alert.digest"
        assert digest["reason"] == "rate_limit"
        assert digest["count"] == 28
        assert len(digest["notifications"]) == 20
        folded = Notification.objects.filter(attempts=0, status="sent")
        assert folded.count() == 28
        assert all(str(receiver.requests[-1].headers["x-rmm-delivery"]) in row.last_error for row in folded)

    def test_more_than_the_channel_limit_in_a_minute_is_one_digest_the_next_minute(
        self, loopback, settings, site, rule
    ):
        settings.NOTIFY_MAX_PER_CHANNEL_PER_MINUTE = 5
        with WebhookReceiver([200]) as receiver:
            channel = webhook(site, receiver.url)
            for _ in range(8):
                opened(rule, channel, factories.device(site), at=T0)
            assert deliver_due(now=T0).sent == 5
            # Later rows of the same minute join the waiting digest instead of a second one.
            opened(rule, channel, factories.device(site), at=T0 + dt.timedelta(seconds=10))
            assert deliver_due(now=T0 + dt.timedelta(seconds=10)).sent == 0
            assert deliver_due(now=T0 + dt.timedelta(seconds=60)).sent == 1
        assert len(receiver.requests) == 6
        digest = json.loads(receiver.requests[-1].body)
        assert (digest["event"], digest["count"]) == ("alert.digest", 4)
        assert Notification.objects.filter(event="alert.digest").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_deliverers_racing_never_send_a_row_twice(loopback, site, rule):
    with WebhookReceiver([200], delay=0.05) as receiver:
        channel = webhook(site, receiver.url)
        for _ in range(10):
            opened(rule, channel, factories.device(site))
        reports = run_concurrently(2, lambda n: deliver_due())
    assert sum(report.sent for report in reports) == 10
    assert Notification.objects.filter(status="sent", attempts=1).count() == 10
    delivered = [request.headers["x-rmm-delivery"] for request in receiver.requests]
    assert sorted(delivered) == sorted(str(pk) for pk in Notification.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_announcing_to_a_channel_never_waits_for_a_webhook_call_in_flight(loopback, site, rule):
    with WebhookReceiver([200], delay=1.5) as receiver:
        channel = webhook(site, receiver.url)
        opened(rule, channel, factories.device(site))
        sending = threading.Thread(target=lambda: (deliver_due(), connection.close()))
        sending.start()
        try:
            for _ in range(100):
                if receiver.requests:
                    break
                time.sleep(0.02)
            assert receiver.requests, "the deliverer never called the receiver"
            # The deliverer holds the channel's row while the receiver answers; the new outbox row's foreign-key
            # check must not wait for it.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '300ms'")
                opened(rule, channel, factories.device(site))
        finally:
            sending.join(10)
    assert Notification.objects.count() == 2
