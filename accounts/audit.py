"""Writing the audit log: one row per state-changing action, by a person or an agent.

Action names come from one vocabulary, ``accounts.models.AuditAction``: ``record`` refuses anything else, so a
misspelt name fails in the tests instead of writing a row no filter finds. The noun of a model's actions is
:func:`noun_of` (``DeviceGroup`` → ``device_group``) whichever door wrote the row: the API's viewsets, the
admin and the services all name an action through :func:`action_for`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Model

from accounts.models import AuditAction, AuditLog
from rmm.names import snake


def noun_of(model: type[Model] | Model) -> str:
    """The noun of a model's audit actions: its class name in snake_case (``EnrollmentKey`` → ``enrollment_key``,
    ``PartnerUser`` → ``partner_user``)."""
    return snake(model._meta.model.__name__)


def action_for(model: type[Model] | Model, verb: str) -> AuditAction:
    """The action ``<noun>.<verb>`` of ``model`` (a class or an instance); ValueError when the vocabulary has no
    such action (add it to ``AuditAction``)."""
    name = f"{noun_of(model)}.{verb}"
    try:
        return AuditAction(name)
    except ValueError:
        raise ValueError(f"{name!r} is not an audit action: add it to accounts.models.AuditAction.") from None


def record(
    *,
    action: AuditAction,
    actor_user=None,
    actor_device=None,
    org_id=None,
    target=None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Append one audit row. ``target`` may be a model instance (its model name and pk are recorded, and its
    organization: ``org_id``, or the organization itself)."""
    if not isinstance(action, AuditAction):
        raise TypeError(f"audit.record takes an AuditAction, not {action!r} (accounts.models.AuditAction).")
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or str(target.pk)
        if org_id is None:
            org_id = target.pk if target._meta.label == "orgs.Organization" else getattr(target, "org_id", None)
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
