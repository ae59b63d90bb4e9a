"""Notification channels: what a valid channel is (path-addressed errors), the write-only secret, the audit rows
of every write, and the test send to a real receiver."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AuditAction, AuditLog
from alerts.models import Notification, NotificationChannel
from alerts.services import channels
from tests import factories
from tests.receivers import WebhookReceiver


@pytest.fixture
def org(db):
    return factories.organization()


@pytest.fixture
def loopback_webhooks(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


def email_channel(org, to) -> NotificationChannel:
    return NotificationChannel(org=org, name="Mail", kind="email", config={"to": to})


def webhook_channel(org, url) -> NotificationChannel:
    return NotificationChannel(org=org, name="Hook", kind="webhook", config={"url": url})


def errors_of(channel: NotificationChannel) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        channel.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ([], "to: From 1 to 50 addresses."),
        (["ops@example.com", "not an address"], "to[1]: 'not an address' is not a valid e-mail address."),
        (["ops@example.com", "OPS@example.com"], "to[1]: 'OPS@example.com' is listed twice."),
        ([f"ops{n}@example.com" for n in range(51)], "to: From 1 to 50 addresses."),
        ("ops@example.com", "to: A list of e-mail addresses."),
        ([42], "to[0]: An e-mail address is text."),
    ],
)
def test_an_email_channel_needs_one_to_fifty_valid_addresses(org, to, message):
    assert errors_of(email_channel(org, to))["config"] == [message]


def test_a_valid_email_channel_passes(org):
    email_channel(org, ["ops@example.com", "oncall@example.org"]).full_clean()


def test_unknown_keys_in_the_config_are_refused_by_their_path(org):
    channel = NotificationChannel(org=org, name="x", kind="email", config={"to": ["a@example.com"], "cc": []})
    assert errors_of(channel)["config"] == ["cc: Unknown key 'cc' for a email channel."]


def test_a_config_that_is_not_an_object_is_refused(org):
    channel = NotificationChannel(org=org, name="x", kind="webhook", config=["https://example.com"])
    assert "The config is an object" in errors_of(channel)["config"][0]


def test_a_webhook_url_must_be_https(org):
    assert errors_of(webhook_channel(org, "http://hooks.example.com/x"))["config"] == [
        "url: Only https:// URLs (plain http:// needs WEBHOOK_ALLOW_HTTP=1 on the server)."
    ]
    assert errors_of(webhook_channel(org, "ftp://hooks.example.com/x"))["config"] == ["url: An https:// URL."]
    webhook_channel(org, "https://hooks.example.com/x").full_clean()


def test_a_plain_http_webhook_is_allowed_with_the_setting(org, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    webhook_channel(org, "http://hooks.example.com/x").full_clean()


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://[::1]/x",
        "https://169.254.169.254/x",
        "https://localhost/x",
    ],
)
def test_a_webhook_to_a_private_address_is_refused_unless_allowed(org, settings, url):
    (message,) = errors_of(webhook_channel(org, url))["config"]
    assert "loopback, private or reserved address" in message
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    webhook_channel(org, url).full_clean()


def test_a_webhook_url_with_credentials_is_refused(org):
    assert errors_of(webhook_channel(org, "https://me:pw@hooks.example.com/x"))["config"] == [
        "url: No user or password in the URL: the receiver checks the signature instead."
    ]


def test_a_webhook_needs_a_url(org):
    channel = NotificationChannel(org=org, name="x", kind="webhook", config={})
    assert errors_of(channel)["config"] == ["url: A webhook channel needs the URL to POST to."]


def test_a_channel_has_exactly_one_owner(org):
    channel = NotificationChannel(org=org, partner=org.partner, name="x", kind="email", config={"to": ["a@b.co"]})
    assert "exactly one owner" in errors_of(channel)["org"][0]


def test_a_new_webhook_gets_a_generated_secret_and_its_audit_row_never_holds_it(org, partner_admin):
    channel = channels.save_channel(channel=webhook_channel(org, "https://hooks.example.com/x"), actor=partner_admin)
    assert len(channel.secret) >= 40
    row = AuditLog.objects.get(action=AuditAction.NOTIFICATION_CHANNEL_CREATE, target_id=str(channel.pk))
    assert row.actor_user == partner_admin
    assert channel.secret not in str(row.details)
    assert row.details["config"] == {"from": None, "to": {"url": "https://hooks.example.com/x"}}


def test_a_given_secret_is_kept_and_its_replacement_is_audited_without_its_value(org, partner_admin):
    channel = channels.save_channel(
        channel=webhook_channel(org, "https://hooks.example.com/x"), actor=partner_admin, secret="s" * 20
    )
    assert NotificationChannel.objects.get(pk=channel.pk).secret == "s" * 20
    channels.save_channel(channel=channel, actor=partner_admin, secret="t" * 20)
    row = AuditLog.objects.get(action=AuditAction.NOTIFICATION_CHANNEL_UPDATE)
    assert row.details == {"secretReplaced": True}
    assert "t" * 20 not in str(row.details)


def test_a_short_secret_and_a_secret_for_an_email_channel_are_refused(org, partner_admin):
    with pytest.raises(ValidationError) as caught:
        channels.save_channel(channel=webhook_channel(org, "https://h.example.com/"), actor=partner_admin, secret="x")
    assert "secret" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        channels.save_channel(channel=email_channel(org, ["a@example.com"]), actor=partner_admin, secret="x" * 20)
    assert caught.value.message_dict == {"secret": ["Only webhook channels have a signing secret."]}
    assert not NotificationChannel.objects.exists()


def test_an_update_is_audited_with_what_changed(org, partner_admin):
    channel = channels.save_channel(channel=email_channel(org, ["a@example.com"]), actor=partner_admin)
    channel.enabled = False
    channels.save_channel(channel=channel, actor=partner_admin, ip="198.51.100.1")
    row = AuditLog.objects.get(action=AuditAction.NOTIFICATION_CHANNEL_UPDATE)
    assert row.details == {"enabled": {"from": True, "to": False}}
    assert row.ip == "198.51.100.1"


def test_deleting_a_channel_writes_an_audit_row(org, partner_admin):
    channel = channels.save_channel(channel=email_channel(org, ["a@example.com"]), actor=partner_admin)
    channels.delete_channel(channel=channel, actor=partner_admin)
    assert not NotificationChannel.objects.exists()
    row = AuditLog.objects.get(action=AuditAction.NOTIFICATION_CHANNEL_DELETE)
    assert row.details["name"] == {"from": "Mail", "to": None}


def test_a_test_send_reaches_a_real_receiver_signed_and_is_recorded(org, partner_admin, loopback_webhooks):
    with WebhookReceiver([204]) as receiver:
        channel = channels.save_channel(channel=webhook_channel(org, receiver.url), actor=partner_admin)
        notification = channels.send_test(channel=channel, actor=partner_admin)
    assert notification.status == Notification.Status.SENT
    assert notification.event == "channel.test"
    (request,) = receiver.requests
    assert request.headers["x-rmm-event"] == "channel.test"
    assert request.headers["x-rmm-delivery"] == str(notification.pk)
    expected = "sha256=" + hmac.new(channel.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-rmm-signature"] == expected
    row = AuditLog.objects.get(action=AuditAction.NOTIFICATION_CHANNEL_TEST)
    assert row.details["status"] == "sent"


def test_a_failing_test_send_is_dead_at_once_with_its_error(org, partner_admin, loopback_webhooks):
    with WebhookReceiver([503]) as receiver:
        channel = channels.save_channel(channel=webhook_channel(org, receiver.url), actor=partner_admin)
        notification = channels.send_test(channel=channel, actor=partner_admin)
    assert notification.status == Notification.Status.DEAD
    assert notification.attempts == 1
    assert notification.last_error.startswith("HTTP 503")
    assert len(receiver.requests) == 1
