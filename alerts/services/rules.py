"""Writing alert rules: the one place the API and the admin save and delete them.

``save_rule`` validates (``AlertRule.full_clean()``: the condition, the owner, the narrowing; here: the channels
belong to the rule's owner), saves, sets the channels and writes the audit row. When an existing rule's condition,
scope or ``enabled`` changes, its active alerts resolve (``rule_changed``) and its pending states are forgotten:
they were decided by a rule that no longer exists in that form. ``delete_rule`` resolves them the same way first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts import audit
from accounts.models import AuditAction
from alerts.models import AlertRule, NotificationChannel
from alerts.services import lifecycle
from rmm.domain_errors import Invalid
from rmm.names import camel

INVALID_MESSAGE = "The alert rule has invalid fields."

# What the rule is: a change to any of these makes its alerts and pending states stale.
_IDENTITY_FIELDS = ("partner_id", "org_id", "site_id", "device_group_id", "condition", "enabled")
# What an audit row records of a rule.
_STATE_FIELDS = (
    "name",
    "partner_id",
    "org_id",
    "site_id",
    "device_group_id",
    "enabled",
    "severity",
    "condition",
    "for_minutes",
    "resolve_after_minutes",
    "auto_resolve",
    "cooldown_minutes",
    "renotify_minutes",
)
_API_NAMES = {"__all__": "nonFieldErrors", "org": "orgId", "partner": "partnerId", "site": "siteId"}
_API_NAMES["device_group"] = "deviceGroupId"


def _state(rule: AlertRule, channel_ids: list[str] | None = None) -> dict[str, Any]:
    state = {name: getattr(rule, name) for name in _STATE_FIELDS}
    state = {name: str(value) if name.endswith("_id") and value is not None else value for name, value in state.items()}
    if channel_ids is not None:
        state["channels"] = sorted(channel_ids)
    return state


def _fields_of(error: ValidationError) -> dict[str, list[str]]:
    """A model's ValidationError → the API's field names; a condition's messages ("condition.windowMinutes: must
    be …") are keyed by their own path."""
    fields: dict[str, list[str]] = {}
    for name, messages in error.message_dict.items():
        for message in messages:
            if name == "condition" and message.startswith("condition") and ": " in message:
                path, text = message.split(": ", 1)
                fields.setdefault(path, []).append(text)
            else:
                fields.setdefault(_API_NAMES.get(name, camel(name)), []).append(message)
    return fields


def _check_channels(rule: AlertRule, channels: list[NotificationChannel]) -> None:
    """A rule's channels belong to its owner: the organization's own or its partner's; a partner rule's, the
    partner's."""
    partner_id = rule.partner_id
    if rule.org is not None:
        partner_id = rule.org.partner_id
    foreign = [
        channel
        for channel in channels
        if not (channel.partner_id == partner_id or (rule.org_id is not None and channel.org_id == rule.org_id))
    ]
    if foreign:
        names = ", ".join(sorted(channel.name for channel in foreign))
        raise Invalid.field("channelIds", f"Channels of another owner cannot notify for this rule: {names}.")


def save_rule(
    *,
    rule: AlertRule,
    actor,
    channels: Iterable[NotificationChannel] | None = None,
    ip: str | None = None,
) -> AlertRule:
    """Create or update ``rule`` (as the caller filled it in) and, when given, set its channels. Raises ``Invalid``
    with the API's field names (``condition.windowMinutes``, ``siteId``, ``channelIds``) on bad input."""
    channel_list = None if channels is None else list(channels)
    with transaction.atomic():
        before = None
        if not rule._state.adding:
            stored = AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
            if stored is not None:
                before = _state(stored, [str(pk) for pk in stored.channels.values_list("pk", flat=True)])
        try:
            rule.full_clean()
        except ValidationError as exc:
            raise Invalid(INVALID_MESSAGE, fields=_fields_of(exc)) from None
        if channel_list is not None:
            _check_channels(rule, channel_list)
        if before is None and actor is not None and getattr(actor, "pk", None) and rule.created_by_id is None:
            rule.created_by = actor
        rule.save()
        if channel_list is not None:
            rule.channels.set(channel_list)
        after = _state(rule, [str(pk) for pk in rule.channels.values_list("pk", flat=True)])
        details: dict[str, Any] = {"name": rule.name}
        if before is None:
            action = AuditAction.ALERT_RULE_CREATE
            details["rule"] = after
        else:
            action = AuditAction.ALERT_RULE_UPDATE
            details["changes"] = audit.changes(before, after)
            if any(before[name] != after[name] for name in _IDENTITY_FIELDS):
                resolved = lifecycle.resolve_for_rule_change(rule=rule)
                details["alertsResolved"] = len(resolved)
        audit.record(action=action, actor_user=actor, org_id=rule.org_id, target=rule, details=details, ip=ip)
    return rule


def delete_rule(*, rule: AlertRule, actor, ip: str | None = None) -> None:
    """Delete ``rule``: its active alerts resolve first (``rule_changed``, announced to its channels), then the
    rule goes (its alerts stay, without a rule)."""
    with transaction.atomic():
        resolved = lifecycle.resolve_for_rule_change(rule=rule)
        state = _state(rule)
        audit.record(
            action=AuditAction.ALERT_RULE_DELETE,
            actor_user=actor,
            org_id=rule.org_id,
            target=rule,
            details={"name": rule.name, "rule": state, "alertsResolved": len(resolved)},
            ip=ip,
        )
        rule.delete()
