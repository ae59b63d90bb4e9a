"""A device's lifecycle (agent-api.md, technician-api.md): every change of ``Device.status``, and the edits a
person makes to a device, in one module. The API, the admin and the management commands call these functions and
nothing else writes a device's status.

::

    online ⇄ offline            the sweep (mark_offline) / a heartbeat (see below)
    online, offline ⇄ maintenance   by hand (update_device with a status)
    online, offline, maintenance → quarantined → online   quarantine / approve
    anything → decommissioned   decommission; final: a decommissioned device never changes again

Each function takes keyword-only arguments, checks its rule under a row lock, writes (always setting
``updated_at``) and records one audit row named from ``accounts.models.AuditAction``. A refusal is a domain error
(``rmm.domain_errors``) with the code the API has always answered.

Two transitions live elsewhere, on purpose, because they run on the agent's hot path (thousands of heartbeats a
second, where an ORM round trip per device costs measurable CPU, bench/RESULTS.md):

- a heartbeat brings an ``offline`` device back ``online`` in the heartbeat's own SQL (``devices.agent_api.sql``),
  and leaves ``maintenance``, ``quarantined`` and ``decommissioned`` as they are. The tests that tie that SQL to
  this module's rules are in tests/agent/test_heartbeat.py (``test_an_offline_device_comes_back_online``,
  ``test_a_device_in_maintenance_stays_in_maintenance``) and tests/devices/test_status.py
  (``test_a_heartbeat_changes_only_what_the_lifecycle_lets_it``);
- an agent whose client certificate expired under the ``quarantine`` policy is quarantined by its request's own
  SQL (``devices.agent_api.authentication``), with the same audit action as ``quarantine``.

Neither of those nor the offline sweep writes audit rows: they are the server's bookkeeping of what agents do, no
person's action, and at fleet scale they would flood the log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.models import Device
from orgs.models import Site
from rmm.domain_errors import Conflict, Invalid

Status = Device.Status

QUARANTINABLE = (Status.ONLINE, Status.OFFLINE, Status.MAINTENANCE)
# The statuses a person may set or leave by editing the device; the others have their own transitions.
_BY_HAND = (Status.ONLINE, Status.OFFLINE, Status.MAINTENANCE)

DECOMMISSIONED_MESSAGE = "A decommissioned device cannot change."
INVALID_FIELDS_MESSAGE = "The request has invalid fields."


def _locked(device: Device) -> Device:
    return Device.objects.select_for_update().get(pk=device.pk)


def _refuse_if_decommissioned(device: Device) -> None:
    if device.status == Status.DECOMMISSIONED:
        raise Conflict(DECOMMISSIONED_MESSAGE, code="device_decommissioned")


# --- the clock ------------------------------------------------------------------------------------------------------


def mark_offline(*, now: dt.datetime | None = None, after_seconds: int | None = None) -> int:
    """Mark ``offline`` every online device not heard from for DEVICE_OFFLINE_AFTER_SECONDS; returns how many.

    A device that was never heard from counts from its creation. A heartbeat racing the sweep wins: the UPDATE
    re-checks ``last_seen_at`` on the row the heartbeat just wrote. Only ``online`` devices are touched, so a
    device in maintenance or quarantine keeps its status however long it is silent.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=after_seconds or settings.DEVICE_OFFLINE_AFTER_SECONDS)
    silent = Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, created_at__lt=cutoff)
    return Device.objects.filter(silent, status=Status.ONLINE).update(status=Status.OFFLINE, updated_at=now)


# --- people's edits, maintenance included -------------------------------------------------------------------------


def status_by_hand_problem(*, current: str, new: str) -> str | None:
    """Why a person may not move a device from ``current`` to ``new`` by editing it (None: they may).

    By hand a device goes only into maintenance (from online or offline) and out of it (to online or offline);
    quarantine, approve and decommission have their own transitions."""
    if new == current:
        return None
    if new == Status.MAINTENANCE and current in (Status.ONLINE, Status.OFFLINE):
        return None
    if current == Status.MAINTENANCE and new in _BY_HAND:
        return None
    return (
        f"Status moves by hand only into or out of maintenance (now {current}); quarantine, approve and "
        "decommission have their own actions."
    )


def check_device_edit(*, device: Device, site: Site | None = None, status: str | None = None) -> None:
    """The rules of a person's edit of ``device`` (as stored): a decommissioned device cannot change (409
    ``device_decommissioned``); a device moves only between sites of its own organization, and its status only
    into or out of maintenance (400 naming ``siteId`` / ``status``). The admin's form calls this from ``clean()``;
    ``update_device`` calls it again under the row lock."""
    _refuse_if_decommissioned(device)
    problems: dict[str, list[str]] = {}
    if site is not None and site.org_id != device.org_id:
        problems["siteId"] = ["A device moves only between sites of its own organization."]
    if status is not None:
        problem = status_by_hand_problem(current=device.status, new=status)
        if problem:
            problems["status"] = [problem]
    if problems:
        raise Invalid(INVALID_FIELDS_MESSAGE, fields=problems)


_UNSET: Any = object()


def update_device(
    *,
    device: Device,
    actor,
    display_name: str = _UNSET,
    tags: Iterable[str] = _UNSET,
    site: Site = _UNSET,
    status: str = _UNSET,
    ip: str | None = None,
) -> Device:
    """A person's edit of a device: its display name, tags (trimmed, deduplicated, sorted), site (within its
    organization) and status into or out of maintenance. Leave out what does not change. Writes one
    ``device.update`` audit row naming the fields given (and the status's from/to when it changed).
    Answers the device as saved."""
    with transaction.atomic():
        locked = _locked(device)
        check_device_edit(
            device=locked,
            site=None if site is _UNSET else site,
            status=None if status is _UNSET else status,
        )
        changed: list[str] = []
        details: dict[str, Any] = {}
        if display_name is not _UNSET:
            locked.display_name = display_name
            changed.append("display_name")
        if tags is not _UNSET:
            locked.tags = sorted({tag.strip() for tag in tags if tag.strip()})
            changed.append("tags")
        if site is not _UNSET:
            locked.site = site
            changed.append("site")
        if status is not _UNSET:
            if status != locked.status:
                details["status"] = {"from": locked.status, "to": status}
            locked.status = status
            changed.append("status")
        locked.save(update_fields=[*changed, "updated_at"])
        audit.record(
            action=AuditAction.DEVICE_UPDATE,
            actor_user=actor,
            target=locked,
            details={"changed": sorted(changed), **details},
            ip=ip,
        )
    return locked


def change_tag(*, device: Device, tag: str, add: bool, actor, ip: str | None = None) -> bool:
    """Add ``tag`` to the device, or remove it, as one person's edit (``update_device``), deciding on the row as it
    is under its lock: two people tagging the same device at once both keep their tag. A device that already has
    it (or lacks it) is left alone and answers False, so no audit row says it changed."""
    with transaction.atomic():
        locked = _locked(device)
        tags = list(locked.tags or [])
        if (tag in tags) == add:
            return False
        update_device(device=locked, tags=[*tags, tag] if add else [t for t in tags if t != tag], actor=actor, ip=ip)
    return True


# --- quarantine, approval, token rotation, decommissioning --------------------------------------------------------


def quarantine(*, device: Device, reason: str, actor, ip: str | None = None) -> Device:
    """Cut the device off: its agent is refused (403 device_quarantined) except that heartbeats still record
    that it is alive. Quarantining a quarantined device changes nothing (and writes no audit row)."""
    with transaction.atomic():
        locked = _locked(device)
        if locked.status == Status.QUARANTINED:
            return locked
        if locked.status not in QUARANTINABLE:
            raise Conflict(f"A {locked.status} device cannot be quarantined.", code="invalid_status")
        locked.status = Status.QUARANTINED
        locked.quarantined_at = timezone.now()
        locked.quarantined_reason = reason[:255]
        locked.save(update_fields=["status", "quarantined_at", "quarantined_reason", "updated_at"])
        audit.record(
            action=AuditAction.DEVICE_QUARANTINE, actor_user=actor, target=locked, details={"reason": reason}, ip=ip
        )
    return locked


def approve(*, device: Device, actor, ip: str | None = None) -> Device:
    """Lift a quarantine: the device is online again (the offline sweep takes it from there)."""
    with transaction.atomic():
        locked = _locked(device)
        if locked.status != Status.QUARANTINED:
            raise Conflict(f"Only a quarantined device can be approved (it is {locked.status}).", code="invalid_status")
        reason = locked.quarantined_reason
        locked.status = Status.ONLINE
        locked.quarantined_at = None
        locked.quarantined_reason = ""
        locked.save(update_fields=["status", "quarantined_at", "quarantined_reason", "updated_at"])
        audit.record(
            action=AuditAction.DEVICE_APPROVE, actor_user=actor, target=locked, details={"reason": reason}, ip=ip
        )
    return locked


def request_token_rotation(*, device: Device, actor, ip: str | None = None) -> Device:
    """Mark the agent's token as due: its next heartbeat answers ``rotateToken: true`` and the agent fetches a
    new one (the old keeps working five minutes after that). The server never sends a token unasked."""
    with transaction.atomic():
        locked = _locked(device)
        if locked.status == Status.DECOMMISSIONED:
            raise Conflict("A decommissioned device has no agent to rotate.", code="device_decommissioned")
        locked.agent_token_issued_at = None
        locked.save(update_fields=["agent_token_issued_at", "updated_at"])
        audit.record(action=AuditAction.DEVICE_REQUEST_TOKEN_ROTATION, actor_user=actor, target=locked, ip=ip)
    return locked


def decommission(*, device: Device, actor, ip: str | None = None) -> Device:
    """Retire the device for good: its agent is refused from now on (403 device_decommissioned) and the device
    never changes again; its row and history stay, and its active alerts resolve (``device_decommissioned``).
    Decommissioning a decommissioned device changes nothing (and writes no audit row), so a repeated DELETE is
    harmless."""
    with transaction.atomic():
        locked = _locked(device)
        if locked.status == Status.DECOMMISSIONED:
            return locked
        previous = locked.status
        locked.status = Status.DECOMMISSIONED
        locked.save(update_fields=["status", "updated_at"])
        # Imported here: alerts depends on devices, not the other way round at import time.
        from alerts.services.lifecycle import resolve_for_decommission

        resolve_for_decommission(device_ids=[locked.pk])
        audit.record(
            action=AuditAction.DEVICE_DECOMMISSION,
            actor_user=actor,
            target=locked,
            details={"status": {"from": previous, "to": Status.DECOMMISSIONED}},
            ip=ip,
        )
    return locked
