"""Maintenance windows: their rules, when they occur (in local time, DST-correct), which devices they cover now,
and the writes of the API and the admin (``save_window``, ``delete_window``).

When a window occurs
--------------------

A one-off window (``recurrence`` ``none``) is the period ``starts_at`` ≤ t < ``ends_at``.

A recurring window's first occurrence is ``starts_at`` … ``ends_at``. It then recurs on every later day (``daily``)
or on every listed weekday (``weekly``, 0 = Monday … 6 = Sunday) at the same *local wall-clock* time, for the same
*wall-clock* length, both read in the window's ``timezone``: a daily 02:00-04:00 window in Europe/Berlin is
02:00-04:00 on Berlin's clocks every day, winter or summer. An occurrence may cross midnight (22:00-02:00); it
belongs to the day it starts on, so a weekly Sunday 22:00-02:00 window runs into Monday morning.

On the days the clocks change, a wall-clock time is turned into an instant the way Python's ``zoneinfo`` does with
``fold=0`` (PEP 495):

- a time that does not exist (the hour skipped in spring: 02:00-03:00 on the last Sunday of March in Berlin) is
  read with the offset from *before* the change, so it lands that much later: 02:30 is taken as 02:30 CET, which is
  03:30 CEST. A 01:30-03:30 window on that Sunday lasts one real hour (01:30 CET to 03:30 CEST);
- a time that occurs twice (02:00-03:00 on the last Sunday of October) is the *first* of the two, in summer time.
  A 01:30-03:30 window on that Sunday lasts three real hours (01:30 CEST to 03:30 CET).

A weekly window's first occurrence must fall on one of its weekdays (``validate_window``), so ``starts_at`` really
is its first occurrence, as the specification says.

Which devices a window covers
-----------------------------

A site (``site``), the members of a device group (``device_group``), or, with neither, the whole organization.
Windows are few: the ones occurring now are found in Python (:func:`active_windows`) and turned into one ``Q`` on
``Device`` (:func:`covered_devices_q`). For alerts, a device whose status is ``maintenance`` counts as covered too.

The agent's command claim (``devices.agent_api``) asks :func:`held_command_devices` which devices of a batch must not
be handed commands, and only for devices whose organization has a window that suppresses commands at all (the
identity lookup tells it, with one EXISTS), so the heartbeat pays nothing in the common case.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q

from accounts import audit
from accounts.models import AuditAction
from alerts.models import MaintenanceWindow, Recurrence
from devices.models import Device, DeviceGroup, DeviceGroupMembership
from orgs.models import Site
from rmm.domain_errors import Invalid
from rmm.names import camel

Purpose = Literal["alerts", "commands"]

# The flag of the window that a purpose asks about.
_SUPPRESSES: dict[str, str] = {"alerts": "suppress_alerts", "commands": "suppress_commands"}

# The longest occurrence a recurrence allows, in wall-clock terms: shorter than the period, or occurrences overlap.
_LONGEST: dict[str, dt.timedelta] = {Recurrence.DAILY: dt.timedelta(days=1), Recurrence.WEEKLY: dt.timedelta(days=7)}

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# ---- rules ----


def validate_window(window: MaintenanceWindow) -> None:
    """Raise ``ValidationError`` keyed by model field when ``window`` breaks a rule (``MaintenanceWindow.clean()``):
    it ends after it starts; ``weekdays`` only for weekly windows, then at least one, each 0-6, none twice, and the
    first occurrence on one of them; an occurrence of a daily window is shorter than a day, of a weekly window
    shorter than a week (in local wall-clock time); it covers a site *or* a device group of its own organization.

    A time zone that is not an IANA name is reported by the field's own validator; the checks that need it are
    skipped then. So are the ones that need a field that is missing (its own error says so)."""
    errors: dict[str, list[str]] = {}

    def error(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    recurrence = window.recurrence
    weekdays = window.weekdays if window.weekdays is not None else []
    if recurrence == Recurrence.WEEKLY:
        if not weekdays:
            error("weekdays", "A weekly window needs at least one weekday (0 = Monday … 6 = Sunday).")
        seen: set[int] = set()
        for index, day in enumerate(weekdays):
            if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                error("weekdays", f"weekdays[{index}]: {day!r} is not a weekday (0 = Monday … 6 = Sunday).")
            elif day in seen:
                error("weekdays", f"weekdays[{index}]: {WEEKDAY_NAMES[day]} ({day}) is listed twice.")
            else:
                seen.add(day)
    elif weekdays:
        error("weekdays", "Only weekly windows have weekdays; leave them empty for a one-off or daily window.")

    starts_at, ends_at = window.starts_at, window.ends_at
    if starts_at is not None and ends_at is not None:
        if ends_at.astimezone(dt.UTC) <= starts_at.astimezone(dt.UTC):  # not by wall clocks (occurrence_at)
            error("ends_at", "A window ends after it starts.")
        elif recurrence in _LONGEST and (zone := _zone(window.timezone)) is not None:
            first_start, first_end = starts_at.astimezone(zone), ends_at.astimezone(zone)
            length = _wall(first_end) - _wall(first_start)
            if length <= dt.timedelta(0):
                error("ends_at", f"A window ends after it starts on the clocks of {window.timezone}.")
            elif length >= _LONGEST[recurrence]:
                period = "a day" if recurrence == Recurrence.DAILY else "a week"
                error(
                    "ends_at",
                    f"An occurrence of a {recurrence} window is shorter than {period} (this one lasts "
                    f"{_describe(length)} on the clocks of {window.timezone}).",
                )
            day = first_start.weekday()
            if recurrence == Recurrence.WEEKLY and weekdays and "weekdays" not in errors and day not in weekdays:
                error(
                    "weekdays",
                    f"The first occurrence (startsAt) is a {WEEKDAY_NAMES[day]} in {window.timezone}; list {day} "
                    "among the weekdays or start on one of the listed days.",
                )

    if window.site_id is not None and window.device_group_id is not None:
        error(
            "device_group",
            "A window covers a site or a device group (or, with neither, the whole organization), not both.",
        )
    # A site or group that does not exist is the field's own error (its foreign key's validation).
    if window.org_id is not None and window.site_id is not None:
        site_org = Site.objects.filter(pk=window.site_id).values_list("org_id", flat=True).first()
        if site_org not in (None, window.org_id):
            error("site", "The site belongs to another organization than the window.")
    if window.org_id is not None and window.device_group_id is not None:
        group_org = DeviceGroup.objects.filter(pk=window.device_group_id).values_list("org_id", flat=True).first()
        if group_org not in (None, window.org_id):
            error("device_group", "The device group belongs to another organization than the window.")

    if errors:
        raise ValidationError(errors)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _wall(moment: dt.datetime) -> dt.datetime:
    """The local wall-clock time of an aware ``moment`` already in its zone, as a naive datetime (arithmetic on it
    is wall-clock arithmetic)."""
    return moment.replace(tzinfo=None, fold=0)


def _describe(length: dt.timedelta) -> str:
    hours, rest = divmod(int(length.total_seconds()), 3600)
    return f"{hours} h {rest // 60:02d} min"


# ---- occurrences ----


def occurrence_at(window: MaintenanceWindow, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The occurrence of ``window`` that ``now`` falls in, as (start, end) instants, or None (module docstring)."""
    # In UTC: Python compares two datetimes of the same tzinfo by their wall clocks, ignoring fold.
    now, starts_at, ends_at = (moment.astimezone(dt.UTC) for moment in (now, window.starts_at, window.ends_at))
    if now < starts_at:
        return None
    if now < ends_at:
        return starts_at, ends_at
    if window.recurrence not in _LONGEST:
        return None
    zone = ZoneInfo(window.timezone)
    first_start = starts_at.astimezone(zone)
    start_wall = _wall(first_start)
    length = _wall(ends_at.astimezone(zone)) - start_wall
    weekly = window.recurrence == Recurrence.WEEKLY
    today = now.astimezone(zone).date()
    # The occurrence covering now began at most ``length`` of wall-clock time before now: on today's date or one of
    # the ``length.days + 1`` before it. The first date's occurrence is starts_at … ends_at itself (checked above).
    for back in range(length.days + 2):
        day = today - dt.timedelta(days=back)
        if day <= first_start.date():
            break
        if weekly and day.weekday() not in window.weekdays:
            continue
        begins = dt.datetime.combine(day, start_wall.time())
        start = begins.replace(tzinfo=zone).astimezone(dt.UTC)
        end = (begins + length).replace(tzinfo=zone).astimezone(dt.UTC)
        if start <= now < end:
            return start, end
    return None


def is_occurring(window: MaintenanceWindow, now: dt.datetime) -> bool:
    """Whether ``now`` falls in one of ``window``'s occurrences (module docstring)."""
    return occurrence_at(window, now) is not None


def active_windows(
    *, now: dt.datetime, purpose: Purpose, org_ids: Iterable[uuid.UUID] | None = None
) -> list[MaintenanceWindow]:
    """The windows occurring at ``now`` that suppress ``purpose`` (``alerts`` or ``commands``), of every
    organization or of ``org_ids``. Windows are few: the candidates are read, their occurrences found in Python."""
    columns = [field.column for field in MaintenanceWindow._meta.concrete_fields]
    names = [field.attname for field in MaintenanceWindow._meta.concrete_fields]
    statement = _CANDIDATES.format(
        columns=", ".join(columns),
        flag=_SUPPRESSES[purpose],
        orgs="" if org_ids is None else "AND org_id = ANY(%(org_ids)s)",
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, {"now": now, "org_ids": None if org_ids is None else list(org_ids)})
        rows = cursor.fetchall()
    candidates = [MaintenanceWindow.from_db(connection.alias, names, row) for row in rows]
    return [window for window in candidates if is_occurring(window, now)]


# The candidates of ``active_windows`` (what may be occurring: begun, and recurring or not over yet) in plain SQL: on
# the agent's hot path (``held_command_devices``, once per heartbeat batch holding a device of an organization with a
# window that suppresses commands) the ORM's compilation of the same query measured 2.4 ms a batch on the benchmark
# machine, this 0.6 ms. ``flag`` and ``orgs`` are this module's constants.
_CANDIDATES = """
SELECT {columns} FROM maintenance_windows
 WHERE {flag} AND starts_at <= %(now)s AND (recurrence <> 'none' OR ends_at > %(now)s) {orgs}
 ORDER BY starts_at, id
"""


@dataclass(frozen=True)
class Coverage:
    """What a set of windows covers: whole organizations, sites, and device groups' members. The one place that
    reads a window's scope; ``covering_q`` and ``held_command_devices`` ask it."""

    org_ids: frozenset[uuid.UUID]
    site_ids: frozenset[uuid.UUID]
    group_ids: frozenset[uuid.UUID]

    @classmethod
    def of(cls, windows: Iterable[MaintenanceWindow]) -> Coverage:
        org_ids, site_ids, group_ids = set(), set(), set()
        for window in windows:
            if window.device_group_id is not None:
                group_ids.add(window.device_group_id)
            elif window.site_id is not None:
                site_ids.add(window.site_id)
            else:
                org_ids.add(window.org_id)
        return cls(frozenset(org_ids), frozenset(site_ids), frozenset(group_ids))


def covering_q(windows: Iterable[MaintenanceWindow]) -> Q:
    """A ``Q`` on ``Device``: the devices ``windows`` cover (their organizations, sites, or groups' members). One
    that matches nothing when there are no windows."""
    coverage = Coverage.of(windows)
    covered = Q(pk__in=[])
    if coverage.org_ids:
        covered |= Q(org_id__in=sorted(coverage.org_ids))
    if coverage.site_ids:
        covered |= Q(site_id__in=sorted(coverage.site_ids))
    if coverage.group_ids:
        members = DeviceGroupMembership.objects.filter(group_id__in=sorted(coverage.group_ids)).values("device_id")
        covered |= Q(pk__in=members)
    return covered


def covered_devices_q(*, now: dt.datetime, purpose: Purpose) -> Q:
    """A ``Q`` on ``Device``: the devices inside a window occurring at ``now`` that suppresses ``purpose``; for
    ``alerts`` also every device whose status is ``maintenance``. Matches nothing when no window applies (and, for
    alerts, no device is in maintenance)."""
    covered = covering_q(active_windows(now=now, purpose=purpose))
    if purpose == "alerts":
        covered |= Q(status=Device.Status.MAINTENANCE)
    return covered


_MEMBERS = "SELECT DISTINCT device_id FROM device_group_memberships WHERE group_id = ANY(%s) AND device_id = ANY(%s)"


class HeldDevice(NamedTuple):
    """A device of the agent's claim, as ``held_command_devices`` takes it."""

    device_id: uuid.UUID
    org_id: uuid.UUID
    site_id: uuid.UUID


def held_command_devices(*, devices: Iterable[HeldDevice | tuple], now: dt.datetime) -> list[uuid.UUID]:
    """Of ``devices`` ((device id, organization id, site id) triples), those inside a window that suppresses
    commands at ``now``: the agent's command claim hands them nothing (their commands stay pending).

    On the agent's hot path, for the devices whose organization has such a window at all: one statement for the
    windows, and one more for group memberships only while a group's window is occurring. Plain SQL, no ORM query
    (see ``_CANDIDATES``)."""
    batch = [HeldDevice(*device) for device in devices]
    windows = active_windows(now=now, purpose="commands", org_ids={device.org_id for device in batch})
    if not windows:
        return []
    coverage = Coverage.of(windows)
    held = [d.device_id for d in batch if d.org_id in coverage.org_ids or d.site_id in coverage.site_ids]
    rest = list({d.device_id for d in batch} - set(held))
    if coverage.group_ids and rest:
        with connection.cursor() as cursor:
            cursor.execute(_MEMBERS, [list(coverage.group_ids), rest])
            held.extend(device_id for (device_id,) in cursor.fetchall())
    return held


# ---- writes ----

# The fields of a window a person sets, as audit rows record them.
_STATE_FIELDS = (
    "name",
    "site_id",
    "device_group_id",
    "starts_at",
    "ends_at",
    "recurrence",
    "weekdays",
    "timezone",
    "suppress_alerts",
    "suppress_commands",
)


def _state(window: MaintenanceWindow) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name in _STATE_FIELDS:
        value = getattr(window, name)
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        state[camel(name)] = value
    return state


def _api_name(field: str) -> str:
    """A model field's name in the API (``device_group`` → ``deviceGroupId``): domain errors speak the API's names,
    and the admin maps them back to its form fields (``rmm.admin``)."""
    if field == "__all__":
        return "nonFieldErrors"
    if field in ("org", "site", "device_group"):
        return camel(field) + "Id"
    return camel(field)


def save_window(*, window: MaintenanceWindow, actor, ip: str | None = None) -> MaintenanceWindow:
    """Create or update ``window`` after ``full_clean`` (field validators and :func:`validate_window`), with a
    ``maintenance_window.create`` / ``.update`` audit row (an update's row says what changed). Raises ``Invalid``
    (400, fields by their API names) when the window is not valid. Weekdays are stored in order."""
    if window.weekdays and all(isinstance(day, int) for day in window.weekdays):
        window.weekdays = sorted(window.weekdays)
    try:
        window.full_clean()
    except ValidationError as exc:
        fields = {_api_name(field): list(messages) for field, messages in exc.message_dict.items()}
        raise Invalid("The maintenance window is not valid.", fields=fields) from None
    with transaction.atomic():
        if window._state.adding:
            window.save()
            audit.record(
                action=AuditAction.MAINTENANCE_WINDOW_CREATE,
                actor_user=actor,
                target=window,
                details=_state(window),
                ip=ip,
            )
        else:
            before = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
            window.save()
            audit.record(
                action=AuditAction.MAINTENANCE_WINDOW_UPDATE,
                actor_user=actor,
                target=window,
                details={"changed": audit.changes(_state(before), _state(window))},
                ip=ip,
            )
    return window


def delete_window(*, window: MaintenanceWindow, actor, ip: str | None = None) -> None:
    """Delete ``window``, with a ``maintenance_window.delete`` audit row saying what it was. Devices it covered are
    evaluated afresh at the next pass: nothing is replayed (the evaluator's rule)."""
    with transaction.atomic():
        audit.record(
            action=AuditAction.MAINTENANCE_WINDOW_DELETE,
            actor_user=actor,
            target=window,
            details=_state(window),
            ip=ip,
        )
        window.delete()
