"""Writing the audit log: one row per state-changing action, by a person or an agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accounts.models import AuditLog


def record(
    *,
    action: str,
    actor_user=None,
    actor_device=None,
    org_id=None,
    target=None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Append one audit row. ``target`` may be a model instance (its model name and pk are recorded)."""
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or str(target.pk)
        if org_id is None:
            org_id = getattr(target, "org_id", None)
    return AuditLog.objects.create(
        action=action,
        actor_user=actor_user if getattr(actor_user, "pk", None) else None,
        actor_device=actor_device,
        org_id=org_id,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        ip=ip,
    )


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """What changed between two states of one object (``services.membership_state``, ``services.user_state``),
    for an audit row's details: a list (of ids) as ``{"added": [...], "removed": [...]}``, anything else as
    ``{"from": ..., "to": ...}``; unchanged entries are left out. ``before`` None: the object was created;
    ``after`` None: it was deleted (every entry then says what it was)."""
    before, after = before or {}, after or {}
    changed: dict[str, Any] = {}
    for key in [*before, *(key for key in after if key not in before)]:
        old, new = before.get(key), after.get(key)
        if isinstance(old, list) or isinstance(new, list):
            old_items, new_items = old or [], new or []
            added = [item for item in new_items if item not in old_items]
            removed = [item for item in old_items if item not in new_items]
            if added or removed:
                changed[key] = {"added": added, "removed": removed}
        elif old != new or key not in before or key not in after:
            changed[key] = {"from": old, "to": new}
    return changed
