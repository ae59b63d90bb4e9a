"""An alert's lifecycle: every change of ``Alert.status`` a person or another domain event makes, in one module.

::

    open → acknowledged            acknowledge (a person)
    open, acknowledged → resolved  resolve (a person: ``manual``), resolve_for_rule_change (``rule_changed``),
                                   resolve_for_decommission (``device_decommissioned``)

The evaluator's pass (``alerts.services.evaluate``) opens alerts and resolves them with ``condition_cleared`` in
its own set-wise statement, for the same reason the heartbeat writes a device's status in its own SQL: one
statement per rule over every device in scope, not an ORM round trip per alert. The statuses, timestamps and
reasons it writes are the ones below.

A resolve also drops the evaluator's memory of that rule/device/subject (``alert_states``), so a condition still
true counts ``for_minutes`` afresh (after the rule's cooldown) instead of reopening at once. Every change here is
announced through ``alerts.services.notify.announce`` inside its transaction; people's changes write an audit row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from alerts.models import Alert, AlertRule, AlertState, AlertStatus, NotificationEvent, ResolveReason
from alerts.services import notify
from rmm.domain_errors import Conflict

ACTIVE = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
MAX_NOTE_LENGTH = 2000


def _locked(alert: Alert) -> Alert:
    return Alert.objects.select_for_update().get(pk=alert.pk)


def _note(note: str) -> str:
    return (note or "").strip()[:MAX_NOTE_LENGTH]


def _forget_states(alerts: Iterable[Alert]) -> None:
    keys = Q(pk__in=[])
    for alert in alerts:
        if alert.rule_id is not None and alert.device_id is not None:
            keys |= Q(rule_id=alert.rule_id, device_id=alert.device_id, subject=alert.subject)
    AlertState.objects.filter(keys).delete()


def acknowledge(*, alert: Alert, actor, note: str = "", ip: str | None = None) -> Alert:
    """A person takes the alert on: it stays active (and deduplicates) but re-notification stops. Acknowledging an
    acknowledged alert changes nothing (and writes no audit row); a resolved one is a Conflict
    (``alert_resolved``). No message is sent: the spec's events are openings, resolves and reminders."""
    with transaction.atomic():
        locked = _locked(alert)
        if locked.status == AlertStatus.RESOLVED:
            raise Conflict("A resolved alert cannot be acknowledged.", code="alert_resolved")
        if locked.status == AlertStatus.ACKNOWLEDGED:
            return locked
        locked.status = AlertStatus.ACKNOWLEDGED
        locked.acknowledged_at = timezone.now()
        locked.acknowledged_by = actor if getattr(actor, "pk", None) else None
        locked.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        audit.record(
            action=AuditAction.ALERT_ACKNOWLEDGE,
            actor_user=actor,
            target=locked,
            details={"note": _note(note), "title": locked.title},
            ip=ip,
        )
    return locked


def resolve(*, alert: Alert, actor, note: str = "", ip: str | None = None) -> Alert:
    """A person resolves the alert (``manual``); announced as ``alert.resolved``. An alert already resolved is a
    Conflict (``alert_resolved``)."""
    with transaction.atomic():
        locked = _locked(alert)
        if locked.status == AlertStatus.RESOLVED:
            raise Conflict("The alert is already resolved.", code="alert_resolved")
        locked.status = AlertStatus.RESOLVED
        locked.resolved_at = timezone.now()
        locked.resolved_by = actor if getattr(actor, "pk", None) else None
        locked.resolve_reason = ResolveReason.MANUAL
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "resolve_reason"])
        _forget_states([locked])
        audit.record(
            action=AuditAction.ALERT_RESOLVE,
            actor_user=actor,
            target=locked,
            details={"note": _note(note), "title": locked.title},
            ip=ip,
        )
        notify.announce(event=NotificationEvent.RESOLVED, rule=locked.rule, alerts=[locked])
    return locked


def _resolve_active(
    alerts: QuerySet[Alert], *, reason: ResolveReason, rule_of: Any = None, now: dt.datetime | None = None
) -> list[Alert]:
    """Resolve every active alert of ``alerts`` (no person: ``resolved_by`` empty) and announce them per rule.
    Must run inside a transaction."""
    now = now or timezone.now()
    locked = list(alerts.filter(status__in=ACTIVE).select_for_update().order_by("id"))
    if not locked:
        return []
    Alert.objects.filter(pk__in=[alert.pk for alert in locked], status__in=ACTIVE).update(
        status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=None, resolve_reason=reason
    )
    resolved = list(
        Alert.objects.filter(pk__in=[alert.pk for alert in locked]).select_related("device", "site", "org", "rule")
    )
    _forget_states(resolved)
    by_rule: dict[Any, list[Alert]] = {}
    for alert in resolved:
        by_rule.setdefault(alert.rule_id, []).append(alert)
    for alerts_of_rule in by_rule.values():
        rule = rule_of if rule_of is not None else alerts_of_rule[0].rule
        notify.announce(event=NotificationEvent.RESOLVED, rule=rule, alerts=alerts_of_rule)
    return resolved


def resolve_for_rule_change(*, rule: AlertRule, now: dt.datetime | None = None) -> list[Alert]:
    """The rule was disabled, deleted or its condition or scope changed: its active alerts resolve
    (``rule_changed``) and the evaluator forgets every pending state of the rule, so the new rule starts afresh."""
    with transaction.atomic():
        resolved = _resolve_active(
            Alert.objects.filter(rule_id=rule.pk), reason=ResolveReason.RULE_CHANGED, rule_of=rule, now=now
        )
        AlertState.objects.filter(rule_id=rule.pk).delete()
    return resolved


def resolve_for_decommission(*, device_ids: Sequence[Any], now: dt.datetime | None = None) -> list[Alert]:
    """The devices were decommissioned: their active alerts resolve (``device_decommissioned``) and the evaluator
    forgets them. Called inside ``devices.services.status.decommission``'s transaction."""
    with transaction.atomic():
        resolved = _resolve_active(
            Alert.objects.filter(device_id__in=list(device_ids)), reason=ResolveReason.DEVICE_DECOMMISSIONED, now=now
        )
        AlertState.objects.filter(device_id__in=list(device_ids)).delete()
    return resolved
