"""Notification channels: what a valid channel is, their writes (with audit rows), and the test send.

A channel is an e-mail list (``{"to": [addresses]}``) or a signed webhook (``{"url": "https://…"}``). A webhook's
``secret`` keys the HMAC of every body it is sent (``X-RMM-Signature``). It is write-only: given on create or
update, or generated on create when none is given (a webhook is never unsigned); :func:`save_channel` leaves the
new value on the instance so the creating answer can show it once, and nothing ever shows it again.

Where a webhook may point is checked twice: here, on the URL as written (scheme, and an address written as a
literal), and by ``alerts.services.delivery`` on the address the host name resolves to at each delivery, which is
the check that counts (DNS can change after the channel is saved).
"""

from __future__ import annotations

import ipaddress
import secrets as secrets_module
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from accounts import audit
from accounts.models import AuditAction
from alerts.models import ChannelKind, Notification, NotificationChannel

MAX_RECIPIENTS = 50
MAX_URL_LENGTH = 2000
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200  # the column's length


def config_errors(kind: str, config: object) -> dict[str, list[str]]:
    """Every mistake of ``config`` for a channel of ``kind``, by path inside the config (``to[2]``, ``url``; ``""``
    is the config itself). Empty when it is valid."""
    errors: dict[str, list[str]] = {}

    def error(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    if not isinstance(config, dict):
        error("", 'The config is an object: {"to": [addresses]} or {"url": "https://…"}.')
        return errors
    if kind == ChannelKind.EMAIL:
        allowed = {"to"}
    elif kind == ChannelKind.WEBHOOK:
        allowed = {"url"}
    else:
        return errors  # the kind's own error says it; nothing to check the config against
    for key in config:
        if key not in allowed:
            error(str(key), f"Unknown key {key!r} for a {kind} channel.")
    if kind == ChannelKind.EMAIL:
        _email_errors(config.get("to"), error)
    else:
        _webhook_errors(config.get("url"), error)
    return errors


def _email_errors(to: object, error) -> None:
    if to is None:
        error("to", "An e-mail channel needs a list of addresses to send to.")
        return
    if not isinstance(to, list):
        error("to", "A list of e-mail addresses.")
        return
    if not 1 <= len(to) <= MAX_RECIPIENTS:
        error("to", f"From 1 to {MAX_RECIPIENTS} addresses.")
    seen: set[str] = set()
    for index, address in enumerate(to):
        path = f"to[{index}]"
        if not isinstance(address, str):
            error(path, "An e-mail address is text.")
            continue
        try:
            validate_email(address)
        except ValidationError:
            error(path, f"{address!r} is not a valid e-mail address.")
            continue
        if address.lower() in seen:
            error(path, f"{address!r} is listed twice.")
        seen.add(address.lower())


def _webhook_errors(url: object, error) -> None:
    if url is None:
        error("url", "A webhook channel needs the URL to POST to.")
        return
    if not isinstance(url, str) or not url.strip():
        error("url", "The URL is text: https://…")
        return
    if len(url) > MAX_URL_LENGTH:
        error("url", f"At most {MAX_URL_LENGTH} characters.")
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        error("url", "Not a valid URL.")
        return
    schemes = {"https", "http"} if settings.WEBHOOK_ALLOW_HTTP else {"https"}
    if parts.scheme not in schemes:
        error(
            "url",
            "Only https:// URLs (plain http:// needs WEBHOOK_ALLOW_HTTP=1 on the server)."
            if parts.scheme == "http"
            else "An https:// URL.",
        )
        return
    if not parts.hostname:
        error("url", "The URL has no host.")
        return
    if parts.username or parts.password:
        error("url", "No user or password in the URL: the receiver checks the signature instead.")
    if parts.fragment:
        error("url", "No #fragment: it is never sent.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES and _is_private_literal(parts.hostname):
        error(
            "url",
            f"{parts.hostname} is a loopback, private or reserved address "
            "(allowed only with WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1 on the server).",
        )


def _is_private_literal(host: str) -> bool:
    """A host written as an address (or ``localhost``) that delivery would refuse. Names are resolved at delivery."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not is_public_address(address)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether webhooks may be delivered to ``address`` without WEBHOOK_ALLOW_PRIVATE_ADDRESSES: not loopback,
    link-local, private, reserved, multicast or unspecified (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def validate_channel(channel: NotificationChannel) -> None:
    """Raise ``ValidationError`` keyed by field when ``channel`` is not valid (``NotificationChannel.clean()``).
    Mistakes inside ``config`` are listed under ``config`` as ``"<path>: <message>"`` (``to[2]: 'x' is not a valid
    e-mail address.``); :func:`config_errors` gives them by path."""
    errors: dict[str, list[str]] = {}
    if (channel.partner_id is None) == (channel.org_id is None):
        errors["org"] = ["A channel belongs to exactly one owner: an organization or (partner-wide) a partner."]
    if channel.kind in ChannelKind.values:
        messages = [
            f"{path}: {message}" if path else message
            for path, path_messages in config_errors(channel.kind, channel.config).items()
            for message in path_messages
        ]
        if messages:
            errors["config"] = messages
    if errors:
        raise ValidationError(errors)


def _state(channel: NotificationChannel) -> dict[str, Any]:
    """What an audit row tells of a channel (never its secret)."""
    return {"name": channel.name, "kind": channel.kind, "config": channel.config, "enabled": channel.enabled}


@transaction.atomic
def save_channel(
    *, channel: NotificationChannel, actor, secret: str | None = None, ip: str | None = None
) -> NotificationChannel:
    """Validate and save ``channel`` (new or changed), with its audit row.

    ``secret`` replaces the webhook's signing key; a new webhook without one gets a generated key (48 URL-safe
    characters), left on ``channel.secret`` for the creating answer to show once. An e-mail channel has no secret
    (one given is refused); a channel that stops being a webhook loses its key.
    """
    creating = channel._state.adding
    before = None
    if not creating:
        stored = NotificationChannel.objects.filter(pk=channel.pk).first()
        before = _state(stored) if stored else None
    if secret is not None:
        if channel.kind != ChannelKind.WEBHOOK:
            raise ValidationError({"secret": ["Only webhook channels have a signing secret."]})
        if not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
            raise ValidationError(
                {
                    "secret": [
                        f"From {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters; or leave it out to have one "
                        "generated."
                    ]
                }
            )
        channel.secret = secret
    elif channel.kind == ChannelKind.WEBHOOK and not channel.secret:
        channel.secret = secrets_module.token_urlsafe(36)
    elif channel.kind != ChannelKind.WEBHOOK:
        channel.secret = ""
    channel.full_clean()
    channel.save()
    details: dict[str, Any] = audit.changes(before, _state(channel))
    if secret is not None and not creating:
        details["secretReplaced"] = True
    audit.record(
        action=AuditAction.NOTIFICATION_CHANNEL_CREATE if creating else AuditAction.NOTIFICATION_CHANNEL_UPDATE,
        actor_user=actor,
        target=channel,
        details=details,
        ip=ip,
    )
    return channel


@transaction.atomic
def delete_channel(*, channel: NotificationChannel, actor, ip: str | None = None) -> None:
    """Delete ``channel`` and its delivery log (rules that sent to it no longer do), with its audit row."""
    audit.record(
        action=AuditAction.NOTIFICATION_CHANNEL_DELETE,
        actor_user=actor,
        target=channel,
        details=audit.changes(_state(channel), None),
        ip=ip,
    )
    channel.delete()


def send_test(*, channel: NotificationChannel, actor, ip: str | None = None) -> Notification:
    """Write a ``channel.test`` outbox row and deliver it at once, returning it with its outcome: ``sent``, or
    ``dead`` with ``last_error`` saying why. A test is tried once, never retried: the person who asked sees the
    outcome now, and a test that fails must not arrive an hour later. A disabled channel can be tested (before it
    is enabled); the rate limit does not apply."""
    from alerts.services import delivery, notify

    with transaction.atomic():
        notification = notify.write_test(channel=channel, actor=actor)
        # Locked until this transaction ends, so the scheduler's deliverer (SKIP LOCKED) never sends it too.
        notification = Notification.objects.select_for_update().get(pk=notification.pk)
        delivery.deliver_now(notification, final=True)
        audit.record(
            action=AuditAction.NOTIFICATION_CHANNEL_TEST,
            actor_user=actor,
            target=channel,
            details={
                "notification": str(notification.pk),
                "status": notification.status,
                "error": notification.last_error,
            },
            ip=ip,
        )
    return notification
