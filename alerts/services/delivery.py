"""Delivering the notification outbox: signed webhooks and e-mails, with retries and per-channel rate limits.

``deliver_due`` is the scheduler's job (``deliver_notifications``, every 5 s). Per channel with due rows it plans,
then sends one row per transaction:

- **One sender per channel, in order.** Every step locks the channel's row with ``FOR NO KEY UPDATE SKIP LOCKED``: a
  second server finds it locked and moves on to other channels, so a row is never sent twice and a channel's rows
  go out in the order planned. A row is marked in the transaction that sent it; a crash between the receiver's
  answer and the commit sends it again, with the same ``X-RMM-Delivery`` for the receiver to drop.
- **Retries** (spec): after attempt 1…5 fails, wait 30 s, 2 min, 10 min, 30 min, 1 h; then hourly; the 8th failure
  is ``dead``. A webhook's 2xx is ``sent``; a 4xx other than 408/429 is ``dead`` at once (the receiver refuses the
  message itself; sending it again changes nothing). After a failure the channel's other rows wait for the next
  pass, so a receiver that is down costs one timeout per pass, not one per row.
- **Rate limit** (spec: at most ``NOTIFY_MAX_PER_CHANNEL_PER_MINUTE`` per channel; the overflow as one digest the
  next minute; one noisy device must not delay the others). Due rows are taken *round-robin by device*: every
  device's oldest row before any device's second (``ROW_NUMBER() OVER (PARTITION BY device)``), and one device may
  use at most a tenth of the channel's minute (``DEVICE_SHARE``). So a device raising a thousand alerts gets its
  tenth, and a quiet device's single alert still finds room in this minute instead of queueing behind the
  thousand. The new rows that do not fit are folded into one pending ``alert.digest`` (reason ``rate_limit``) due
  a minute later; rows folded while it waits join it. A folded row is marked ``sent`` without an attempt
  (``attempts`` 0), ``last_error`` naming its digest; only attempted rows count against the limit.
- **Where webhooks go**: https only unless ``WEBHOOK_ALLOW_HTTP``; the host name is resolved here, every address
  must be public unless ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES``, and the connection is made to the address that was
  checked (SNI and the certificate still use the name), so DNS cannot answer differently between check and
  connect. Redirects are not followed (a 3xx is a failure): a redirect could point anywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from alerts.models import ChannelKind, Notification, NotificationChannel, NotificationEvent, NotificationStatus
from alerts.services.channels import is_public_address
from alerts.services.notify import DIGEST_SAMPLE, email_text, outbox_row

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = (30, 120, 600, 1800, 3600)  # after failed attempt 1, 2, …; hourly after the last
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 5
DEVICE_SHARE = 10  # one device may use at most 1/DEVICE_SHARE of a channel's notifications per minute
RATE_WINDOW = dt.timedelta(minutes=1)
PLAN_LIMIT = 5000  # due rows one pass looks at per channel (the rest of a flood is folded without being read)
USER_AGENT = "rmm-server (+webhook)"
RATE_LIMIT_MARK = {"reason": "rate_limit"}  # in the payload of the digest the rate limit writes
_DUE = (NotificationStatus.PENDING, NotificationStatus.FAILED)


@dataclass
class DeliveryReport:
    """What one pass did, for the job's one-line report."""

    sent: int = 0
    retrying: int = 0
    dead: int = 0
    folded: int = 0
    busy_channels: int = 0

    def __str__(self) -> str:
        return (
            f"sent: {self.sent}; failed (will retry): {self.retrying}; dead: {self.dead}; "
            f"folded into digests: {self.folded}; channels busy elsewhere: {self.busy_channels}"
        )


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: ``ok``, or an error that is ``permanent`` (dead at once) or worth retrying."""

    ok: bool
    error: str = ""
    permanent: bool = False


class Refused(Exception):
    """The webhook may not be sent where it points (scheme, address): dead at once."""


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    return dt.timedelta(seconds=BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1])


# --- the pass ----------------------------------------------------------------------------------------------------


def deliver_due(*, now: dt.datetime | None = None) -> DeliveryReport:
    """Send every due outbox row (pending or failed, ``next_attempt_at`` ≤ now) the rate limits allow, channel by
    channel. ``now`` fixes the clock (tests); otherwise each step reads the time itself."""
    report = DeliveryReport()
    clock = now or timezone.now()
    channel_ids = list(
        Notification.objects.filter(status__in=_DUE, next_attempt_at__lte=clock)
        .order_by()
        .values_list("channel_id", flat=True)
        .distinct()
    )
    for channel_id in channel_ids:
        planned = _plan(channel_id, now=now, report=report)
        for notification_id in planned:
            if not _send_planned(channel_id, notification_id, now=now, report=report):
                break
    return report


def _lock_channel(channel_id: Any) -> NotificationChannel | None:
    """The channel, locked for this deliverer; None when another holds it. FOR NO KEY UPDATE: it excludes other
    deliverers but not the FK checks of new outbox rows (FOR KEY SHARE), so an evaluator announcing to a channel
    never waits for a webhook call in flight."""
    return NotificationChannel.objects.select_for_update(skip_locked=True, no_key=True).filter(pk=channel_id).first()


def _plan(channel_id: Any, *, now: dt.datetime | None, report: DeliveryReport) -> list[Any]:
    """The rows of one channel to send in this pass, in order; folds the new rows that exceed the rate limits into
    the channel's rate-limit digest."""
    with transaction.atomic():
        channel = _lock_channel(channel_id)
        if channel is None:
            report.busy_channels += 1
            return []
        clock = now or timezone.now()
        due = Notification.objects.filter(channel_id=channel_id, status__in=_DUE, next_attempt_at__lte=clock)
        if not channel.enabled:
            report.dead += due.update(
                status=NotificationStatus.DEAD, last_error="The channel was disabled before delivery."
            )
            return []
        budget = settings.NOTIFY_MAX_PER_CHANNEL_PER_MINUTE
        device_budget = max(1, budget // DEVICE_SHARE)
        # Rows sent in the last minute: created within the retries' whole span (~4 h) so the index on
        # (channel, created_at) bounds the scan.
        recent = (
            Notification.objects.filter(
                channel_id=channel_id,
                created_at__gte=clock - dt.timedelta(days=1),
                sent_at__gt=clock - RATE_WINDOW,
                attempts__gt=0,
            )
            .order_by()
            .values_list("alert__device_id")
            .annotate(n=Count("id"))
        )
        used_by_device = dict(recent)
        budget -= sum(used_by_device.values())
        rows = list(
            due.annotate(
                device_id=F("alert__device_id"),
                turn=Window(RowNumber(), partition_by=[F("alert__device_id")], order_by=[F("created_at"), F("id")]),
            )
            .order_by("turn", "created_at", "id")
            .values_list("id", "device_id", "attempts", "payload__reason")[:PLAN_LIMIT]
        )
        # The rate-limit digest that came due goes first: it is what the limit held back.
        rows.sort(key=lambda row: row[3] != "rate_limit")
        chosen: list[Any] = []
        for pk, device_id, _attempts, _reason in rows:
            if budget <= 0:
                break
            if device_id is not None:
                if used_by_device.get(device_id, 0) >= device_budget:
                    continue
                used_by_device[device_id] = used_by_device.get(device_id, 0) + 1
            chosen.append(pk)
            budget -= 1
        overflow = (
            due.filter(attempts=0)
            .exclude(pk__in=chosen)
            # Containment, not payload->'reason' <> …, which is NULL for rows without the key and would drop them.
            .exclude(payload__contains=RATE_LIMIT_MARK)
            .order_by("created_at", "id")
        )
        report.folded += _fold(channel, overflow, now=clock)
        return chosen


def _fold(channel: NotificationChannel, overflow, *, now: dt.datetime) -> int:
    """Fold the ``overflow`` rows into the channel's pending rate-limit digest (one is written, due a minute from
    now, when none is waiting). Returns how many were folded."""
    items = [
        {
            "event": row.payload.get("event"),
            "deliveryId": str(row.pk),
            "title": row.payload.get("title") or (row.payload.get("alert") or {}).get("title"),
            "severity": row.payload.get("severity") or (row.payload.get("alert") or {}).get("severity"),
            "hostname": (row.payload.get("device") or {}).get("hostname"),
        }
        for row in overflow[:DIGEST_SAMPLE]
    ]
    if not items:
        return 0
    digest = (
        Notification.objects.filter(
            channel=channel,
            event=NotificationEvent.DIGEST,
            status=NotificationStatus.PENDING,
            attempts=0,
            payload__contains=RATE_LIMIT_MARK,
        )
        .order_by("created_at")
        .first()
    )
    if digest is None:
        digest = outbox_row(
            channel=channel,
            event=NotificationEvent.DIGEST,
            body={"event": NotificationEvent.DIGEST.value, "reason": "rate_limit", "count": 0, "notifications": []},
            alert=None,
            now=now,
        )
        digest.next_attempt_at = now + RATE_WINDOW
    folded = overflow.update(
        status=NotificationStatus.SENT,
        sent_at=now,
        last_error=f"Not sent on its own: folded into digest {digest.pk} by the rate limit.",
    )
    payload = digest.payload
    payload["count"] += folded
    payload["notifications"] = (payload["notifications"] + items)[:DIGEST_SAMPLE]
    payload["title"] = f"{payload['count']} notifications held back by the rate limit"
    digest.save()
    return folded


def _send_planned(channel_id: Any, notification_id: Any, *, now: dt.datetime | None, report: DeliveryReport) -> bool:
    """Send one planned row in its own transaction. False: stop this channel for this pass (it failed, or another
    server holds the channel)."""
    with transaction.atomic():
        if _lock_channel(channel_id) is None:
            report.busy_channels += 1
            return False
        clock = now or timezone.now()
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("channel")
            .filter(pk=notification_id, status__in=_DUE, next_attempt_at__lte=clock)
            .first()
        )
        if notification is None:
            return True  # sent or folded meanwhile
        deliver_now(notification, now=now)
    if notification.status == NotificationStatus.SENT:
        report.sent += 1
        return True
    if notification.status == NotificationStatus.DEAD:
        report.dead += 1
    else:
        report.retrying += 1
    return False


def deliver_now(notification: Notification, *, now: dt.datetime | None = None, final: bool = False) -> Notification:
    """Attempt ``notification`` once and record the outcome on it (the caller holds its row lock). ``final``: a
    failure is ``dead`` at once (a test send is never retried)."""
    outcome = attempt(notification)
    clock = now or timezone.now()
    notification.attempts += 1
    if outcome.ok:
        notification.status = NotificationStatus.SENT
        notification.sent_at = clock
        notification.last_error = ""
    elif outcome.permanent or final or notification.attempts >= MAX_ATTEMPTS:
        notification.status = NotificationStatus.DEAD
        notification.last_error = outcome.error
    else:
        notification.status = NotificationStatus.FAILED
        notification.next_attempt_at = clock + backoff(notification.attempts)
        notification.last_error = outcome.error
    notification.save(update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at"])
    if not outcome.ok:
        logger.info("notification %s to channel %s: %s", notification.pk, notification.channel_id, outcome.error)
    return notification


def attempt(notification: Notification) -> Outcome:
    """Send ``notification`` through its channel once."""
    channel = notification.channel
    if channel.kind == ChannelKind.WEBHOOK:
        return send_webhook(
            url=channel.config.get("url", ""),
            secret=channel.secret,
            event=notification.event,
            delivery_id=str(notification.pk),
            payload=notification.payload,
        )
    return send_email(to=channel.config.get("to", []), notification=notification)


# --- webhooks ----------------------------------------------------------------------------------------------------


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes a webhook receives (and its signature covers)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """``X-RMM-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the raw body keyed with the channel's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def resolve_webhook_address(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, address)``: where a webhook to ``url`` connects, after the checks of the settings.
    Raises :class:`Refused` (a URL delivery may not use) or ``OSError`` (the name does not resolve)."""
    parts = urlsplit(url)
    allowed = {"https", "http"} if settings.WEBHOOK_ALLOW_HTTP else {"https"}
    if parts.scheme not in allowed:
        raise Refused(f"{parts.scheme or 'no'} scheme refused: https only (plain http needs WEBHOOK_ALLOW_HTTP=1).")
    host = parts.hostname
    if not host:
        raise Refused("The URL has no host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        private = [address for address in addresses if not is_public_address(ipaddress.ip_address(address))]
        if private:
            raise Refused(
                f"{host} resolves to {private[0]}, a loopback, private or reserved address "
                "(allowed only with WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1)."
            )
    return parts.scheme, host, port, addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, whatever the host name would resolve to now."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is verified against the host name (and SNI)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        self.pinned_context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.pinned_context)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.pinned_context.wrap_socket(raw, server_hostname=self.host)


def send_webhook(*, url: str, secret: str, event: str, delivery_id: str, payload: dict[str, Any]) -> Outcome:
    """POST ``payload`` to ``url``, signed; the outcome by the spec's rules (2xx sent; 4xx but 408/429 dead)."""
    try:
        scheme, host, port, address = resolve_webhook_address(url)
    except Refused as exc:
        return Outcome(ok=False, error=str(exc), permanent=True)
    except (OSError, UnicodeError) as exc:
        return Outcome(ok=False, error=f"The host does not resolve: {exc}")
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = body_of(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-RMM-Event": event,
        "X-RMM-Delivery": delivery_id,
        "X-RMM-Signature": signature(secret, body),
    }
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address=address, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(2048)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        connection.close()
    status = response.status
    if 200 <= status < 300:
        return Outcome(ok=True)
    error = f"HTTP {status} {response.reason}: {answer.decode(errors='replace')[:500]}".strip()
    return Outcome(ok=False, error=error, permanent=400 <= status < 500 and status not in (408, 429))


# --- e-mail ------------------------------------------------------------------------------------------------------


def send_email(*, to: list[str], notification: Notification) -> Outcome:
    """Send the notification's plain-text e-mail through Django's mail framework (EMAIL_URL). An SMTP server's
    permanent refusal (5xx) is dead at once; anything else is retried."""
    subject, text = email_text(notification.payload)
    message = EmailMessage(
        subject=subject[:250],
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(to),
        headers={"X-RMM-Event": notification.event, "X-RMM-Delivery": str(notification.pk)},
    )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return Outcome(ok=False, error=f"Recipients refused: {exc.recipients}"[:1000], permanent=min(codes) >= 500)
    except smtplib.SMTPResponseException as exc:
        return Outcome(
            ok=False, error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:1000], permanent=exc.smtp_code >= 500
        )
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    return Outcome(ok=True)
