"""Writing the audit log: one row per state-changing action, by a person or an agent."""

from __future__ import annotations

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
