"""Script schedules: their rules, their slots (local wall-clock time, DST-correct), their writes, and firing them.

When a schedule fires
---------------------

``cron`` is a standard five-field expression (minute, hour, day of month, month, day of week; croniter's dialect:
ranges, steps, names, ``L`` and ``#``), read on the *local wall clock* of ``timezone``: ``30 2 * * *`` in
Europe/Berlin is 02:30 on Berlin's clocks, winter or summer. The slots are found by croniter on naive wall-clock
times and each one is turned into an instant here, so the two days a year the clocks change are decided
deliberately rather than by whatever a library does with aware datetimes:

- A slot inside the hour skipped in spring (02:00-03:00 on the last Sunday of March in Berlin) fires at the first
  instant after the gap, 03:00 local summer time: a daily ``30 2 * * *`` runs at 03:00 that day, not a day late and
  not an hour late (03:30). Several slots inside the gap (``*/15 * * * *``) and a slot at 03:00 itself become one
  firing at 03:00.
- A slot inside the hour repeated in autumn (02:00-03:00 on the last Sunday of October) fires once, at its first
  occurrence (summer time, PEP 495's ``fold=0``). An hourly schedule therefore fires once per wall-clock hour that
  night: 01:00, 02:00 (summer time), then 03:00 (winter time, two real hours later), not twice for 02:00.

Firing
------

:func:`fire_due_schedules` (the periodic job ``fire_script_schedules``, every ``SCRIPT_SCHEDULE_SECONDS``) fires
every enabled schedule whose ``next_run_at`` has come: one ``start_run`` on the schedule's target as it is at that
moment (a group's members then), with the script's current version. Each schedule is claimed with
``SELECT … FOR UPDATE SKIP LOCKED`` in a transaction of its own, so several app servers (or a manual run beside the
scheduler) never fire one slot twice, and a slow schedule holds up no other server. A schedule that missed slots
(the server was down) fires once, then ``next_run_at`` is the first slot after the firing: missed slots are not
replayed. A firing that fails (the script archived, its parameters changed so the schedule's values no longer fit,
no device to run on) writes a ``script_schedule.fail`` audit row and moves on to the next slot like a success;
the other schedules of the pass fire regardless.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.models import DeviceGroup
from orgs.models import Organization, Site
from rmm import authz
from rmm.domain_errors import DomainError, Invalid, Refused
from rmm.names import camel
from scripts.models import Script, ScriptRunTrigger, ScriptSchedule
from scripts.services.library import usable_in, validate_parameter_values, validation_fields
from scripts.services.runs import start_run

logger = logging.getLogger("rmm.scripts")

INVALID_MESSAGE = "The script schedule has invalid fields."

CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
# Where validate_cron tries an expression: any fixed moment will do (five fields have no year, so an expression that
# matches once matches every few years); croniter gives up on one that never matches (30 February).
_CRON_PROBE = dt.datetime(2000, 1, 1)

# What an audit row records of a schedule.
_STATE_FIELDS = (
    "name",
    "script_id",
    "parameters",
    "device_group_id",
    "site_id",
    "cron",
    "timezone",
    "enabled",
)


# ---- slots ----


def validate_cron(value: str) -> None:
    """Raise ``ValidationError`` unless ``value`` is a five-field cron expression that has slots (``*/15 * * * *``,
    ``30 2 * * 1-5``). Seconds and years (six or seven fields) and the ``@daily`` shorthands are refused: the
    specification's schedules are five-field cron, and a technician reads them that way."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Enter a cron expression of five fields, e.g. 30 2 * * * (02:30 every day).")
    fields = value.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValidationError(
            f"A cron expression has five fields ({', '.join(CRON_FIELDS)}), e.g. 30 2 * * * (02:30 every day); "
            f"this one has {len(fields)}.",
            code="invalid_cron",
        )
    try:
        croniter(value, _CRON_PROBE).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ValidationError(
            f"The cron expression {value!r} never matches a date (such as 30 February).", code="invalid_cron"
        ) from None
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        detail = str(exc).split("] ", 1)[-1] if isinstance(exc, CroniterBadCronError) else ""
        raise ValidationError(
            f"{value!r} is not a valid cron expression{': ' + detail if detail else ''} "
            f"(five fields: {', '.join(CRON_FIELDS)}).",
            code="invalid_cron",
        ) from None


def next_slot(cron: str, time_zone: str, after: dt.datetime) -> dt.datetime:
    """The first slot of ``cron`` in ``time_zone`` strictly after the instant ``after`` (aware), as an aware UTC
    datetime. Slots are wall-clock times of ``time_zone``; a skipped or repeated one is placed as the module
    docstring says."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_slot takes an aware datetime.")
    zone = ZoneInfo(time_zone)
    after = after.astimezone(dt.UTC)
    wall_after = after.astimezone(zone).replace(tzinfo=None, fold=0)
    slots = croniter(cron, wall_after)
    while True:
        slot = _instant(slots.get_next(dt.datetime), zone)
        # Only a slot of the repeated hour, met again in its second pass (fold=1), can lie before ``after``.
        if slot > after:
            return slot


def _instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant (UTC) a wall-clock time of ``zone`` fires at: its first occurrence when it occurs twice; the end
    of the gap when it does not occur at all."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # A time in a gap. zoneinfo reads it with the offset from before the gap (fold=0: ``first``, past the gap) or
    # after it (fold=1: ``early``, before the gap); the change lies between the two. Search it to the second.
    early = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    low, high = min(early, first), max(early, first)
    gap_offset = high.astimezone(zone).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == gap_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


# ---- rules ----


def clean_schedule(schedule: ScriptSchedule) -> None:
    """Raise ``ValidationError`` keyed by model field when ``schedule`` breaks a rule (``ScriptSchedule.clean()``):
    a five-field cron expression (:func:`validate_cron`); a script usable in the schedule's organization (its own
    or its partner's library) and not archived; parameter values valid for the script's current parameters
    (messages under ``parameters``, each prefixed with its path, ``parameters.days: …``); a site or a device group
    of the organization, not both.

    The time zone, a blank cron, a missing organization or script are their fields' own errors; the checks that
    need them are skipped then."""
    errors: dict[str, list[str]] = {}

    def error(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if schedule.cron:  # a blank one is the field's own error
        try:
            validate_cron(schedule.cron)
        except ValidationError as exc:
            errors.setdefault("cron", []).extend(exc.messages)

    org = Organization.objects.filter(pk=schedule.org_id).first() if schedule.org_id is not None else None
    script = Script.objects.filter(pk=schedule.script_id).first() if schedule.script_id is not None else None
    if org is not None and script is not None:
        if not usable_in(script, org):
            error("script", "The script belongs to another organization's library.")
        elif script.archived_at is not None:
            error("script", "The script is archived; archived scripts cannot be scheduled.")
        else:
            try:
                validate_parameter_values(script.parameters, schedule.parameters)
            except Invalid as exc:
                for path, messages in (exc.fields or {"parameters": [exc.message]}).items():
                    errors.setdefault("parameters", []).extend(f"{path}: {message}" for message in messages)
            except ValidationError as exc:
                errors.setdefault("parameters", []).extend(exc.messages)

    if schedule.site_id is not None and schedule.device_group_id is not None:
        error(
            "device_group",
            "A schedule runs on a site or a device group (or, with neither, the whole organization), not both.",
        )
    if org is not None and schedule.site_id is not None:
        site_org = Site.objects.filter(pk=schedule.site_id).values_list("org_id", flat=True).first()
        if site_org not in (None, org.pk):
            error("site", "The site belongs to another organization than the schedule.")
    if org is not None and schedule.device_group_id is not None:
        group_org = DeviceGroup.objects.filter(pk=schedule.device_group_id).values_list("org_id", flat=True).first()
        if group_org not in (None, org.pk):
            error("device_group", "The device group belongs to another organization than the schedule.")

    if errors:
        raise ValidationError(errors)


def _check_reach(actor, schedule: ScriptSchedule) -> None:
    """The actor may write the schedule (``scripts:write``), run its script (``scripts:execute``) and run commands on
    its whole target (``devices:execute`` on the site, or on the whole organization for a group or the
    organization: a group's members change after the schedule is saved)."""
    if not authz.can(actor, "scripts:write", schedule):
        raise Refused("You may not manage script schedules here (scripts:write).")
    if not authz.can(actor, "scripts:execute", schedule.script):
        raise Refused("You may not run this script (scripts:execute).")
    target: Site | Organization | None = schedule.site if schedule.site_id is not None else schedule.org
    if target is None or not authz.can(actor, "devices:execute", target):
        where = "this site" if isinstance(target, Site) else "the whole organization"
        raise Refused(f"You may not run commands on every device of {where} (devices:execute).")


def _state(schedule: ScriptSchedule) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name in _STATE_FIELDS:
        value = getattr(schedule, name)
        if isinstance(value, uuid.UUID):
            value = str(value)
        state[camel(name)] = value
    return state


# ---- writes ----


def save_schedule(
    *, schedule: ScriptSchedule, actor, ip: str | None = None, now: dt.datetime | None = None
) -> ScriptSchedule:
    """Create or update ``schedule`` (as the caller filled it in) after ``full_clean`` (:func:`clean_schedule`),
    with a ``script_schedule.create`` / ``.update`` audit row. Raises ``Invalid`` (the API's field names:
    ``cron``, ``timezone``, ``scriptId``, ``parameters.<name>``, ``siteId``, ``deviceGroupId``) on bad input and
    ``Refused`` when ``actor`` may not (:func:`_check_reach`, on the schedule as it was and as it will be).
    ``actor=None`` is the server itself (the demo data): no reach check.

    ``next_run_at`` is computed afresh from ``now`` when the schedule is created or its cron, time zone or
    ``enabled`` change (a re-enabled schedule does not fire the slots it missed while disabled); a disabled
    schedule has none."""
    now = now or timezone.now()
    with transaction.atomic():
        before: ScriptSchedule | None = None
        if not schedule._state.adding:
            before = ScriptSchedule.objects.select_for_update().filter(pk=schedule.pk).first()
        try:
            schedule.full_clean()
        except ValidationError as exc:
            raise Invalid(INVALID_MESSAGE, fields=validation_fields(exc)) from None
        if actor is not None:
            if before is not None:
                _check_reach(actor, before)
            _check_reach(actor, schedule)
        if before is None or any(
            getattr(before, name) != getattr(schedule, name) for name in ("cron", "timezone", "enabled")
        ):
            schedule.next_run_at = next_slot(schedule.cron, schedule.timezone, now) if schedule.enabled else None
        if before is None and getattr(actor, "pk", None) and schedule.created_by_id is None:
            schedule.created_by = actor
        schedule.save()
        details: dict[str, Any] = {"name": schedule.name}
        if before is None:
            action = AuditAction.SCRIPT_SCHEDULE_CREATE
            details["schedule"] = _state(schedule)
        else:
            action = AuditAction.SCRIPT_SCHEDULE_UPDATE
            details["changes"] = audit.changes(_state(before), _state(schedule))
        details["nextRunAt"] = schedule.next_run_at.isoformat() if schedule.next_run_at else None
        audit.record(action=action, actor_user=actor, target=schedule, details=details, ip=ip)
    return schedule


def delete_schedule(*, schedule: ScriptSchedule, actor, ip: str | None = None) -> None:
    """Delete ``schedule``, with a ``script_schedule.delete`` audit row saying what it was. Its past runs stay
    (their ``schedule`` becomes null). ``Refused`` when ``actor`` may not write it (``scripts:write``)."""
    with transaction.atomic():
        if actor is not None and not authz.can(actor, "scripts:write", schedule):
            raise Refused("You may not manage script schedules here (scripts:write).")
        audit.record(
            action=AuditAction.SCRIPT_SCHEDULE_DELETE,
            actor_user=actor,
            target=schedule,
            details={"name": schedule.name, "schedule": _state(schedule)},
            ip=ip,
        )
        schedule.delete()


# ---- firing ----


class FiringReport:
    """What one pass of :func:`fire_due_schedules` did: schedules fired, failed (each audited), commands queued."""

    def __init__(self) -> None:
        self.fired = 0
        self.failed = 0
        self.queued = 0

    def __str__(self) -> str:
        return f"schedules fired: {self.fired}, failed: {self.failed}, commands queued: {self.queued}"


def fire_due_schedules(*, now: dt.datetime | None = None) -> str:
    """Fire every enabled schedule due at ``now`` once (module docstring), each in its own transaction, and answer
    what was done in one line (the job's report)."""
    now = now or timezone.now()
    report = FiringReport()
    done: set[uuid.UUID] = set()
    while True:
        with transaction.atomic():
            # The row alone, no joins: planning a join for every claim measured more than running it.
            schedule = (
                ScriptSchedule.objects.select_for_update(skip_locked=True)
                .filter(enabled=True, next_run_at__lte=now)
                .order_by("next_run_at", "id")
                .first()
            )
            # A fired schedule's next_run_at is after ``now`` (or null): meeting one again would be a bug; it must
            # not become a pass that never ends.
            if schedule is None or schedule.pk in done:
                return str(report)
            done.add(schedule.pk)
            _fire(schedule, now=now, report=report)


def _fire(schedule: ScriptSchedule, *, now: dt.datetime, report: FiringReport) -> None:
    """Fire one claimed schedule (inside its claiming transaction) and move it to its next slot."""
    slot = schedule.next_run_at
    failure: str | None = None
    code = ""
    run = None
    try:
        with transaction.atomic():  # a savepoint: a firing that fails leaves nothing behind but its audit row
            target: dict[str, Any]
            if schedule.device_group_id is not None:
                target = {"group": schedule.device_group}
            elif schedule.site_id is not None:
                target = {"site": schedule.site}
            else:
                target = {"org": schedule.org}
            run = start_run(
                script=schedule.script,
                actor=None,
                trigger=ScriptRunTrigger.SCHEDULE,
                parameters=schedule.parameters,
                schedule=schedule,
                **target,
            )
    except DomainError as exc:
        failure, code = _describe(exc), exc.code
    except Exception as exc:  # one broken schedule must not stop the others, nor be claimed again and again
        logger.exception("script schedule %s: firing failed", schedule.pk)
        failure, code = f"{type(exc).__name__}: {exc}", "error"

    schedule.last_run_at = now
    try:
        schedule.next_run_at = next_slot(schedule.cron, schedule.timezone, now)
    except (CroniterError, ZoneInfoNotFoundError, ValueError, KeyError) as exc:
        # Only a row written around the validation can get here; it cannot fire again until it is corrected.
        schedule.next_run_at = None
        failure = (failure + "; " if failure else "") + f"no next slot: {exc}"
        code = code or "no_next_slot"
    schedule.save(update_fields=["last_run_at", "next_run_at", "updated_at"])

    if failure is None and run is not None:
        report.fired += 1
        report.queued += run.queued
        return
    report.failed += 1
    audit.record(
        action=AuditAction.SCRIPT_SCHEDULE_FAIL,
        target=schedule,
        details={
            "name": schedule.name,
            "scriptId": str(schedule.script_id),
            "slot": slot.isoformat() if slot else None,
            "error": code,
            "message": failure,
            "nextRunAt": schedule.next_run_at.isoformat() if schedule.next_run_at else None,
        },
    )


def _describe(error: DomainError) -> str:
    problems = [f"{field}: {message}" for field, messages in error.fields.items() for message in messages]
    return f"{error.message} ({'; '.join(problems)})" if problems else error.message
