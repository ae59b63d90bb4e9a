"""The notification outbox: what an alert change announces, to which channels, and what each message says.

The evaluator and the alert lifecycle call :func:`announce` inside the transaction that made the change, so the
outbox rows commit with it or not at all (the spec: nothing goes unannounced, nothing is announced for a change
that rolled back). ``alerts.services.delivery`` sends the rows later, from the scheduler.

A row's ``payload`` is exactly the JSON body a webhook receives (its ``deliveryId`` is the row's id, also sent as
``X-RMM-Delivery``); an e-mail's plain-text subject and body are rendered from it by :func:`email_text`.

Storm control here: when one call brings more than ``ALERT_DIGEST_THRESHOLD`` alerts of one rule in one site, each
channel gets one ``alert.digest`` (the count and the first 20 devices) instead of one row per alert. The spec asks
it for openings; resolutions and re-notifications are grouped the same way, since a rule edited or a site back
from an outage would otherwise send as many "resolved" messages as the opening saved. The per-channel rate limit
is applied at delivery.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Value
from django.db.models.functions import Coalesce
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.models import (
    Alert,
    AlertRule,
    AlertStatus,
    Notification,
    NotificationChannel,
    NotificationEvent,
)
from devices.models import Device
from orgs.models import Organization, Site

DIGEST_SAMPLE = 20  # devices listed in a digest
_ALERT_EVENTS = {NotificationEvent.OPENED, NotificationEvent.RESOLVED, NotificationEvent.RENOTIFY}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _admin_url(name: str, pk: Any) -> str | None:
    """A link to an object's admin page, or None when the admin has no such page (yet)."""
    try:
        return settings.RMM_BASE_URL + reverse(f"admin:{name}", args=[pk])
    except NoReverseMatch:
        return None


def device_url(device_id: Any) -> str | None:
    return _admin_url("devices_device_change", device_id)


@dataclass
class _Names:
    """Host names, site and organization names of a batch of alerts, read in three queries."""

    devices: dict[Any, str]
    sites: dict[Any, str]
    orgs: dict[Any, str]

    @classmethod
    def of(cls, alerts: Sequence[Alert]) -> _Names:
        device_ids = {alert.device_id for alert in alerts if alert.device_id}
        return cls(
            devices=dict(Device.objects.filter(pk__in=device_ids).values_list("pk", "hostname")) if device_ids else {},
            sites=dict(Site.objects.filter(pk__in={alert.site_id for alert in alerts}).values_list("pk", "name")),
            orgs=dict(Organization.objects.filter(pk__in={alert.org_id for alert in alerts}).values_list("pk", "name")),
        )


def _device(alert: Alert, names: _Names) -> dict[str, Any] | None:
    if alert.device_id is None:
        return None
    return {
        "id": str(alert.device_id),
        "hostname": names.devices.get(alert.device_id, ""),
        "url": device_url(alert.device_id),
    }


def _rule(rule: AlertRule | None) -> dict[str, Any] | None:
    return {"id": str(rule.pk), "name": rule.name} if rule else None


def _alert_body(event: str, alert: Alert, rule: AlertRule | None, names: _Names) -> dict[str, Any]:
    """The payload of one alert's notification, without its delivery id."""
    return {
        "event": event,
        "alert": {
            "id": str(alert.pk),
            "status": alert.status,
            "severity": alert.severity,
            "title": alert.title,
            "message": alert.message,
            "subject": alert.subject,
            "value": alert.value,
            "openedAt": _iso(alert.opened_at),
            "acknowledgedAt": _iso(alert.acknowledged_at),
            "resolvedAt": _iso(alert.resolved_at),
            "resolveReason": alert.resolve_reason,
            "url": _admin_url("alerts_alert_change", alert.pk),
        },
        "device": _device(alert, names),
        "site": {"id": str(alert.site_id), "name": names.sites.get(alert.site_id, "")},
        "organization": {"id": str(alert.org_id), "name": names.orgs.get(alert.org_id, "")},
        "rule": _rule(rule),
    }


def _grouped_digest_body(event: str, alerts: Sequence[Alert], rule: AlertRule | None, names: _Names) -> dict:
    """One digest standing for ``alerts`` (all of one rule and one site)."""
    first = alerts[0]
    site_name = names.sites.get(first.site_id, "")
    what = {
        NotificationEvent.OPENED: "opened",
        NotificationEvent.RESOLVED: "resolved",
        NotificationEvent.RENOTIFY: "still open",
    }[NotificationEvent(event)]
    return {
        "event": NotificationEvent.DIGEST.value,
        "reason": "grouped",
        "of": event,
        "title": f"{len(alerts)} alerts {what}: {rule.name if rule else first.title} at {site_name}",
        "severity": first.severity,
        "count": len(alerts),
        "devices": [
            {
                "alertId": str(alert.pk),
                "hostname": names.devices.get(alert.device_id, ""),
                "id": str(alert.device_id) if alert.device_id else None,
                "subject": alert.subject,
                "value": alert.value,
                "url": device_url(alert.device_id) if alert.device_id else None,
            }
            for alert in alerts[:DIGEST_SAMPLE]
        ],
        "site": {"id": str(first.site_id), "name": site_name},
        "organization": {"id": str(first.org_id), "name": names.orgs.get(first.org_id, "")},
        "rule": _rule(rule),
    }


def outbox_row(
    *, channel: NotificationChannel, event: str, body: dict[str, Any], alert: Alert | None, now: dt.datetime
) -> Notification:
    """An unsaved outbox row for ``channel`` whose payload is ``body`` with its delivery id and time."""
    pk = uuid.uuid4()
    payload = {"event": body["event"], "deliveryId": str(pk), "createdAt": _iso(now), **body}
    return Notification(
        id=pk,
        channel=channel,
        partner_id=channel.partner_id,
        org_id=channel.org_id,
        alert=alert,
        event=event,
        payload=payload,
        next_attempt_at=now,
        created_at=now,
    )


def announce(
    *,
    event: NotificationEvent,
    rule: AlertRule | None,
    alerts: Sequence[Alert],
    channels: Sequence[NotificationChannel] | None = None,
) -> int:
    """Write the outbox rows for ``alerts`` (all of ``rule``; a site-level alert passes the offline rule that
    raised it) to the rule's enabled channels, applying the spec's storm control (digest when one pass opens more
    than ALERT_DIGEST_THRESHOLD alerts of one rule in one site). Must be called inside the caller's transaction.

    ``channels``, when given, replaces the rule's: a site-level alert goes to every channel of every offline rule
    that sees the outage. The enabled ones among them get one row each, however often one is listed.

    Returns the number of rows written. A re-notification also sets the alerts' ``last_notified_at`` (from which
    ``renotify_minutes`` count), whether or not the rule has channels; an opening does not: the statement that
    opens an alert writes it (the evaluator's, at 26,000 openings a pass, spares a second UPDATE of every row, and
    skips this call altogether for a rule without enabled channels)."""
    event = NotificationEvent(event)
    if event not in _ALERT_EVENTS:
        raise ValueError(f"announce() takes an alert event, not {event!r}.")
    alerts = list(alerts)
    if not alerts:
        return 0
    if not connection.in_atomic_block:
        raise RuntimeError("announce() runs inside the transaction of the alert change it announces.")
    now = timezone.now()
    if event == NotificationEvent.RENOTIFY:
        Alert.objects.filter(pk__in=[alert.pk for alert in alerts]).update(last_notified_at=now)
        for alert in alerts:
            alert.last_notified_at = now
    if channels is not None:
        channels = list({channel.pk: channel for channel in channels if channel.enabled}.values())
    else:
        channels = list(rule.channels.filter(enabled=True)) if rule is not None else []
    if not channels:
        return 0
    names = _Names.of(alerts)
    by_site: dict[Any, list[Alert]] = {}
    for alert in alerts:
        by_site.setdefault(alert.site_id, []).append(alert)
    rows = []
    for site_alerts in by_site.values():
        if len(site_alerts) > settings.ALERT_DIGEST_THRESHOLD:
            digest = _grouped_digest_body(event, site_alerts, rule, names)
            rows += [
                outbox_row(channel=channel, event=NotificationEvent.DIGEST, body=digest, alert=None, now=now)
                for channel in channels
            ]
            continue
        for alert in site_alerts:
            body = _alert_body(event, alert, rule, names)
            rows += [outbox_row(channel=channel, event=event, body=body, alert=alert, now=now) for channel in channels]
    Notification.objects.bulk_create(rows)
    return len(rows)


def renotify_due(*, now: dt.datetime | None = None) -> int:
    """Announce again (``alert.renotify``) the open, unacknowledged alerts whose rule's ``renotify_minutes`` have
    passed since they were last notified, except on devices inside a window that suppresses alerts. Returns the
    number of alerts re-announced."""
    from alerts.services import windows

    now = now or timezone.now()
    last = Coalesce(F("last_notified_at"), F("opened_at"))
    every = ExpressionWrapper(
        F("rule__renotify_minutes") * Value(dt.timedelta(minutes=1)), output_field=DurationField()
    )
    due_at = ExpressionWrapper(last + every, output_field=DateTimeField())
    count = 0
    with transaction.atomic():
        due = list(
            Alert.objects.filter(
                status=AlertStatus.OPEN, rule__enabled=True, rule__renotify_minutes__isnull=False, device__isnull=False
            )
            .alias(due_at=due_at)
            .filter(due_at__lte=now)
            .exclude(device__in=Device.objects.filter(windows.covered_devices_q(now=now, purpose="alerts")))
            .select_related("rule")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("rule_id", "opened_at")
        )
        by_rule: dict[Any, list[Alert]] = {}
        for alert in due:
            by_rule.setdefault(alert.rule_id, []).append(alert)
        for rule_alerts in by_rule.values():
            announce(event=NotificationEvent.RENOTIFY, rule=rule_alerts[0].rule, alerts=rule_alerts)
            count += len(rule_alerts)
    return count


def write_test(*, channel: NotificationChannel, actor) -> Notification:
    """Write the ``channel.test`` outbox row of ``channel`` (``channels.send_test`` delivers it at once)."""
    now = timezone.now()
    body = {
        "event": NotificationEvent.TEST.value,
        "title": f"Test notification of channel {channel.name}",
        "message": "A test from the RMM server: this channel works.",
        "channel": {"id": str(channel.pk), "name": channel.name, "kind": channel.kind},
        "requestedBy": getattr(actor, "email", None),
    }
    row = outbox_row(channel=channel, event=NotificationEvent.TEST, body=body, alert=None, now=now)
    row.save(force_insert=True)
    return row


# --- e-mail text ------------------------------------------------------------------------------------------------


def email_text(payload: dict[str, Any]) -> tuple[str, str]:
    """The plain-text subject and body of an e-mail notification, from its payload."""
    event = str(payload.get("event"))
    footer = f"\n\nDelivery id: {payload.get('deliveryId')}\n"
    if event == NotificationEvent.TEST:
        return f"[RMM] {payload['title']}", f"{payload['message']}\n{footer}"
    if event == NotificationEvent.DIGEST:
        return _digest_email(payload, footer)
    alert, device, rule = payload["alert"], payload.get("device") or {}, payload.get("rule") or {}
    state = {"alert.opened": "Alert", "alert.resolved": "Resolved", "alert.renotify": "Still open"}.get(event, "Alert")
    subject = f"[RMM] {state} ({alert['severity']}): {alert['title']}"
    lines = [
        f"{state}: {alert['title']}",
        "",
        f"Device:         {device.get('hostname') or '(site-level alert)'}",
        f"Site:           {payload['organization']['name']} / {payload['site']['name']}",
        f"Rule:           {rule.get('name') or '-'}",
        f"Severity:       {alert['severity']}",
        f"Observed value: {_value(alert.get('value'))}",
        f"Opened at:      {alert['openedAt']}",
    ]
    if alert.get("resolvedAt"):
        lines.append(f"Resolved at:    {alert['resolvedAt']} ({alert.get('resolveReason') or ''})")
    if alert.get("message"):
        lines += ["", alert["message"]]
    if device.get("url"):
        lines += ["", f"Device page: {device['url']}"]
    if alert.get("url"):
        lines.append(f"Alert page:  {alert['url']}")
    return subject, "\n".join(lines) + footer


def _digest_email(payload: dict[str, Any], footer: str) -> tuple[str, str]:
    subject = f"[RMM] {payload['title']}"
    lines = [payload["title"], ""]
    if payload.get("reason") == "rate_limit":
        lines.append("These notifications were held back by the channel's rate limit:")
        lines += [f"- {item.get('title')}" for item in payload.get("notifications", [])]
    else:
        rule = payload.get("rule") or {}
        lines.append(f"Rule: {rule.get('name') or '-'}   Severity: {payload.get('severity')}")
        lines.append(f"Site: {payload['organization']['name']} / {payload['site']['name']}")
        lines.append("")
        lines += [
            f"- {item['hostname'] or '(site)'}{' ' + item['subject'] if item.get('subject') else ''}: "
            f"{_value(item.get('value'))}  {item.get('url') or ''}".rstrip()
            for item in payload.get("devices", [])
        ]
    shown = len(payload.get("devices") or payload.get("notifications") or [])
    if payload.get("count", 0) > shown:
        lines.append(f"… and {payload['count'] - shown} more.")
    return subject, "\n".join(lines) + footer


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
