"""Writing the audit log: one row per state-changing action, by a person or an agent.

Action names come from one vocabulary, ``accounts.models.AuditAction``: ``record`` refuses anything else, so a
misspelt name fails in the tests instead of writing a row no filter finds. The noun of a model's actions is
:func:`noun_of` (``DeviceGroup`` → ``device_group``) whichever door wrote the row: the API's viewsets, the
admin and the services all name an action through :func:`action_for`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import CompositePrimaryKey, Model

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


# Keys of an audit row's details that name its target, for a target that no longer exists (the log outlives it).
_NAME_KEYS = ("hostname", "name", "email", "title")


@functools.cache
def _models_by_target_type() -> dict[str, type[Model]]:
    from django.apps import apps
    from django.conf import settings

    return {
        str(model._meta.model_name): model
        for label in ("jobs", *settings.DOMAIN_APPS)
        for model in apps.get_app_config(label).get_models()
        if not isinstance(model._meta.pk, CompositePrimaryKey)  # telemetry samples are no audit target
    }


def _target_model(target_type: str) -> type[Model] | None:
    # record() writes a model's model_name ("devicecommand"); rows written elsewhere use the snake-case noun
    # ("device_command"): both name the same model.
    return _models_by_target_type().get(target_type.replace("_", "").lower())


def target_labels(entries: Iterable[AuditLog]) -> dict[Any, str]:
    """What a person reads as each audit row's target ("device command: reboot on host-01"), never a bare id: the
    row's pk → its label ("" for a row without a target).

    The rows store only the target's type and id, so the targets are read: one query per target type among
    ``entries`` (not per row), each with its non-null foreign keys joined (``select_related()``), which is what the
    models' ``__str__`` read. A target that no longer exists is named from the row's details when they hold a
    name, else by its type and the start of its id.
    """
    entries = list(entries)
    wanted: dict[type[Model], set[str]] = defaultdict(set)
    for entry in entries:
        model = _target_model(entry.target_type) if entry.target_id else None
        if model is not None:
            wanted[model].add(entry.target_id)
    found: dict[tuple[type[Model], str], str] = {}
    for model, ids in wanted.items():
        pk = model._meta.pk
        valid = []
        for raw in ids:
            try:
                valid.append(pk.to_python(raw))
            except ValidationError:
                continue  # not an id of this model: left to the fallback
        for target in model._default_manager.filter(pk__in=valid).select_related():
            found[(model, str(target.pk))] = str(target)
    return {entry.pk: _label(entry, found) for entry in entries}


def _label(entry: AuditLog, found: Mapping[tuple[type[Model], str], str]) -> str:
    if not entry.target_type and not entry.target_id:
        return ""
    model = _target_model(entry.target_type)
    noun = str(model._meta.verbose_name) if model is not None else entry.target_type.replace("_", " ")
    if model is not None and (model, entry.target_id) in found:
        return f"{noun}: {found[(model, entry.target_id)]}"
    details = entry.details if isinstance(entry.details, dict) else {}
    name = next((details[key] for key in _NAME_KEYS if isinstance(details.get(key), str) and details[key]), None)
    if name is not None:
        return f"{noun}: {name}"
    return f"{noun} {entry.target_id[:8]}… (deleted)" if entry.target_id else noun
