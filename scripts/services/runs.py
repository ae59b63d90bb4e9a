"""Script runs: one script version sent to many devices as ordinary ``script`` commands, and what came back.

``start_run`` is the one way a run starts (the API, the admin's "run on…" and the schedules call it): it decides the
target's devices, refuses the whole run when any of them is out of the caller's reach, skips the devices that would
never run the script (wrong OS, decommissioned, quarantined: counted in ``ScriptRun.skipped``) and queues one
command per remaining device in one transaction with one ``INSERT … SELECT``. The parameters travel in the command's
``env`` (``RMM_PARAM_<NAME>``), never in its script text.

A run's progress and results are read from its commands (``device_commands.script_run_id``), never copied:
``run_progress`` counts them for any number of runs in one query, judging a completed command by the success exit
codes of the version the run ran.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.models import Device, DeviceCommand, DeviceGroup
from devices.services.commands import check_command
from orgs.models import Organization, Site
from rmm import authz
from rmm.domain_errors import Conflict, Invalid, Refused
from scripts.models import MAX_RUN_DEVICES, Script, ScriptRun, ScriptSchedule, ScriptVersion
from scripts.services.library import parameter_env, usable_in, validate_parameter_values

SKIP_OS_NOT_SUPPORTED = "os_not_supported"
SKIP_DECOMMISSIONED = "decommissioned"
SKIP_QUARANTINED = "quarantined"

# The per-device statuses of a run's results, and the counts of its progress.
PROGRESS_KEYS = ("pending", "sent", "succeeded", "failed", "timedOut", "cancelled", "expired", "skipped", "total")
_LISTED_IDS = 20  # ids named in an error message; the rest are counted


def _ids_text(ids: list[str]) -> str:
    shown = ", ".join(ids[:_LISTED_IDS])
    return shown if len(ids) <= _LISTED_IDS else f"{shown} and {len(ids) - _LISTED_IDS} more"


def _device_ids_target(device_ids: list, actor) -> tuple[Organization, list[tuple[uuid.UUID, str, str]]]:
    """The devices named by id: each known, in the caller's reach (``devices:execute``) and of one organization."""
    if not isinstance(device_ids, list | tuple) or not device_ids:
        raise Invalid.field("deviceIds", "Name at least one device to run the script on.")
    if len(device_ids) > MAX_RUN_DEVICES:
        raise Invalid(
            f"A run targets at most {MAX_RUN_DEVICES:,} devices.",
            code="too_many_devices",
            fields={"deviceIds": [f"At most {MAX_RUN_DEVICES:,} devices in one run."]},
        )
    wanted: dict[uuid.UUID, None] = {}
    malformed = []
    for value in device_ids:
        try:
            wanted[value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))] = None
        except ValueError:
            malformed.append(str(value)[:64])
    if malformed:
        raise Invalid.field("deviceIds", f"Not device ids: {_ids_text(malformed)}.")
    devices = Device.objects.filter(pk__in=list(wanted))
    if actor is not None:
        devices = authz.visible(actor, "devices:execute", devices)
    rows = list(devices.order_by().values_list("id", "os_type", "status", "org_id"))
    found = {row[0] for row in rows}
    missing = [str(pk) for pk in wanted if pk not in found]
    if missing:
        raise Invalid.field(
            "deviceIds",
            f"Unknown devices, or devices you may not run commands on: {_ids_text(missing)}. Nothing was queued.",
        )
    org_ids = {row[3] for row in rows}
    if len(org_ids) > 1:
        raise Invalid.field("deviceIds", "A run targets the devices of one organization; these span several.")
    org = Organization.objects.get(pk=org_ids.pop())
    by_id = {row[0]: row[:3] for row in rows}
    return org, [by_id[pk] for pk in wanted]


def _members_target(members: QuerySet, actor, field: str, what: str) -> list[tuple[uuid.UUID, str, str]]:
    """Every device of a group, site or organization, all in the caller's reach; at most MAX_RUN_DEVICES."""
    rows = list(members.order_by("id").values_list("id", "os_type", "status")[: MAX_RUN_DEVICES + 1])
    if len(rows) > MAX_RUN_DEVICES:
        raise Invalid(
            f"A run targets at most {MAX_RUN_DEVICES:,} devices; this {what} has more.",
            code="too_many_devices",
            fields={field: [f"This {what} has more than {MAX_RUN_DEVICES:,} devices."]},
        )
    if not rows:
        raise Conflict(f"This {what} has no devices to run the script on.", code="no_devices")
    if actor is not None and not authz.reach(actor).is_superuser:
        reached = set(authz.visible(actor, "devices:execute", members).order_by().values_list("id", flat=True))
        out_of_reach = [str(row[0]) for row in rows if row[0] not in reached]
        if out_of_reach:
            raise Invalid.field(
                field,
                f"This {what} holds devices you may not run commands on ({len(out_of_reach)}: "
                f"{_ids_text(out_of_reach)}). Nothing was queued.",
            )
    return rows


def _skip_reason(os_type: str, status: str, os_types: list[str]) -> str | None:
    if status == Device.Status.DECOMMISSIONED:
        return SKIP_DECOMMISSIONED
    if status == Device.Status.QUARANTINED:
        return SKIP_QUARANTINED
    if os_type not in os_types:
        return SKIP_OS_NOT_SUPPORTED
    return None


_QUEUE_RUN = """
INSERT INTO device_commands (id, device_id, org_id, type, payload, status, created_by_id, created_at, updated_at,
                             expires_at, script_run_id)
SELECT rmm_uuid7(), d.id, d.org_id, 'script', %s::jsonb, 'pending', %s, %s, %s, %s, %s
  FROM devices d
 WHERE d.id = ANY(%s)
"""


def start_run(
    *,
    script: Script,
    actor,
    trigger: str,
    parameters: dict | None = None,
    device_ids: list | None = None,
    group: DeviceGroup | None = None,
    site: Site | None = None,
    org: Organization | None = None,
    schedule: ScriptSchedule | None = None,
    ip: str | None = None,
) -> ScriptRun:
    """Run the current version of ``script`` on exactly one target: ``device_ids``, ``group`` (its members now),
    ``site`` or ``org`` (every device of the organization).

    ``actor`` None is the server (a schedule firing): no reach check. Otherwise the actor needs ``scripts:execute``
    on the script (else ``Refused``) and ``devices:execute`` on every targeted device: an unknown id, one out of
    reach or of another organization refuses the whole run (``Invalid`` naming ``deviceIds`` / ``groupId``) with
    nothing queued. Also refused: an archived script (``Conflict`` ``script_archived``), a script of another
    library than the target's organization's, more than MAX_RUN_DEVICES devices (``too_many_devices``), a target
    without devices (``Conflict`` ``no_devices``) and parameters the version does not accept (``Invalid``
    ``parameters.<name>``). Writes one ``script.run`` audit row.
    """
    if trigger not in ScriptRun.Trigger.values:
        raise ValueError(f"Unknown trigger {trigger!r}.")
    given = [
        name
        for name, value in (("deviceIds", device_ids), ("groupId", group), ("siteId", site), ("orgId", org))
        if value is not None
    ]
    if len(given) != 1:
        raise Invalid.field("deviceIds", "Name exactly one target: a list of devices (deviceIds) or a group (groupId).")
    if actor is not None and not authz.can(actor, "scripts:execute", script):
        raise Refused("You may not run this script (scripts:execute).")
    with transaction.atomic():
        current = Script.objects.filter(pk=script.pk).values("version", "archived_at", "os_types").first()
        if current is None or current["archived_at"] is not None:
            raise Conflict("This script is archived; it can no longer run.", code="script_archived")
        version = ScriptVersion.objects.get(script_id=script.pk, version=current["version"])
        values = validate_parameter_values(version.parameters, parameters)

        target: dict[str, Any]
        if device_ids is not None:
            target_org, rows = _device_ids_target(device_ids, actor)
            target = {"deviceIds": [str(row[0]) for row in rows]}
            if not usable_in(script, target_org):
                raise Invalid.field(
                    "deviceIds", "These devices are in an organization that cannot use this script's library."
                )
        else:
            if group is not None:
                if actor is not None and not authz.can(actor, "devices:read", group):
                    raise Invalid.field("groupId", "Unknown group.")
                target_org, target, field, what = group.org, {"groupId": str(group.pk)}, "groupId", "group"
                members = Device.objects.filter(group_memberships__group_id=group.pk, org_id=group.org_id)
            elif site is not None:
                target_org, target, field, what = site.org, {"siteId": str(site.pk)}, "siteId", "site"
                members = Device.objects.filter(site_id=site.pk, org_id=site.org_id)
            else:
                assert org is not None
                target_org, target, field, what = org, {"orgId": str(org.pk)}, "orgId", "organization"
                members = Device.objects.filter(org_id=org.pk)
            if not usable_in(script, target_org):
                raise Invalid.field(field, "This script's library is not available in that organization.")
            rows = _members_target(members, actor, field, what)

        os_types = list(current["os_types"])
        queue_ids: list[uuid.UUID] = []
        skipped: list[dict[str, str]] = []
        for device_id, os_type, status in rows:
            reason = _skip_reason(os_type, status, os_types)
            if reason is None:
                queue_ids.append(device_id)
            else:
                skipped.append({"deviceId": str(device_id), "reason": reason})

        now = timezone.now()
        run = ScriptRun.objects.create(
            org=target_org,
            script_id=script.pk,
            version=version.version,
            parameters=values,
            target=target,
            trigger=trigger,
            schedule=schedule,
            requested_by=actor if getattr(actor, "pk", None) else None,
            queued=len(queue_ids),
            skipped=skipped,
            created_at=now,
        )
        payload: dict[str, Any] = {
            "language": version.language,
            "content": version.content,
            "timeoutSeconds": version.timeout_seconds,
            "env": parameter_env(version.parameters, values),
        }
        expires_in = check_command(type=DeviceCommand.Type.SCRIPT, payload=payload, expires_in_seconds=None)
        payload["scriptRunId"] = str(run.pk)
        if queue_ids:
            with connection.cursor() as cursor:
                cursor.execute(
                    _QUEUE_RUN,
                    [
                        json.dumps(payload),
                        run.requested_by_id,
                        now,
                        now,
                        now + dt.timedelta(seconds=expires_in),
                        run.pk,
                        queue_ids,
                    ],
                )
        audit.record(
            action=AuditAction.SCRIPT_RUN,
            actor_user=actor,
            org_id=target_org.pk,
            target=run,
            ip=ip,
            details={
                "scriptId": str(script.pk),
                "name": script.name,
                "version": version.version,
                "trigger": trigger,
                "target": {key: value for key, value in target.items() if key != "deviceIds"}
                | ({"deviceCount": len(target["deviceIds"])} if "deviceIds" in target else {}),
                "scheduleId": str(schedule.pk) if schedule is not None else None,
                "queued": len(queue_ids),
                "skipped": len(skipped),
            },
        )
    return run


# --- progress and results ---------------------------------------------------------------------------------------

# ``ok``: a completed command's exit code is one of the success exit codes of the version its run ran. One
# expression for the progress counts and the results' status filter, so the two never disagree.
_OK = (
    "coalesce(jsonb_typeof({result} -> 'exitCode') = 'number'"
    " AND ({result} ->> 'exitCode')::numeric = ANY({codes}::numeric[]), false)"
)
_PROGRESS = """
SELECT script_run_id,
       count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'sent'),
       count(*) FILTER (WHERE status = 'completed' AND ok),
       count(*) FILTER (WHERE status = 'failed' OR (status = 'completed' AND NOT ok)),
       count(*) FILTER (WHERE status = 'timeout'),
       count(*) FILTER (WHERE status = 'cancelled'),
       count(*) FILTER (WHERE status = 'expired')
  FROM (SELECT c.script_run_id, c.status, {ok} AS ok
          FROM device_commands c
          JOIN script_runs r ON r.id = c.script_run_id
          JOIN script_versions v ON v.script_id = r.script_id AND v.version = r.version
         WHERE c.script_run_id = ANY(%s)) AS commands
 GROUP BY script_run_id
""".format(ok=_OK.format(result="c.result", codes="v.success_exit_codes"))  # noqa: S608 (constants; values bound)

# A run's per-device statuses (``result_status``), skipped included: what ``run_results`` filters on.
RESULT_STATUSES = PROGRESS_KEYS[:-1]
# The command statuses behind each per-device status; succeeded and failed also look at the exit code.
_COMMAND_STATUSES = {
    "pending": ["pending"],
    "sent": ["sent"],
    "succeeded": ["completed"],
    "failed": ["completed", "failed"],
    "timedOut": ["timeout"],
    "cancelled": ["cancelled"],
    "expired": ["expired"],
    "skipped": [],
}


def run_progress(runs: Iterable[ScriptRun]) -> dict[uuid.UUID, dict[str, int]]:
    """Each run's counts (``PROGRESS_KEYS``), read from its commands in ONE query however many runs: a completed
    command is ``succeeded`` when its exit code is one of the run's version's success exit codes, else ``failed``;
    ``skipped`` comes from the run itself and ``total`` is queued + skipped."""
    runs = list(runs)
    progress = {
        run.pk: dict.fromkeys(PROGRESS_KEYS, 0) | {"skipped": len(run.skipped), "total": run.queued + len(run.skipped)}
        for run in runs
    }
    if not runs:
        return progress
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS, [[run.pk for run in runs]])
        for run_id, *counts in cursor.fetchall():
            progress[run_id].update(zip(PROGRESS_KEYS[:7], counts, strict=True))
    return progress


def run_results(
    run: ScriptRun, *, status: str | None = None, success_exit_codes: Iterable[int] = (0,)
) -> QuerySet[DeviceCommand]:
    """The run's commands with their devices, in the order they were queued (by id, for keyset pagination); with
    ``status`` (one of ``RESULT_STATUSES``; ``skipped`` devices have no command, so none), only the commands whose
    ``result_status`` it is, judged by ``success_exit_codes`` (the version's).

    Sorted by (script_run_id, id), the index's order, not by id alone: that let PostgreSQL walk the primary key and
    filter, skipping every older run's commands first once ANALYZE had seen a large run (32 ms instead of 0.05 ms a
    page of 100, measured with bench/scripts_bench.py)."""
    commands = DeviceCommand.objects.filter(script_run_id=run.pk)
    if status is not None:
        if status not in RESULT_STATUSES:
            raise Invalid.field("status", f"One of: {', '.join(RESULT_STATUSES)}.")
        commands = commands.filter(status__in=_COMMAND_STATUSES[status])
        if status in ("succeeded", "failed"):
            expression = _OK.format(result='"device_commands"."result"', codes="%s")  # the codes are bound
            ok = RawSQL(expression, [list(success_exit_codes)])  # noqa: S611
            commands = commands.alias(ok=ExpressionWrapper(ok, output_field=BooleanField()))
            commands = (
                commands.filter(ok=True) if status == "succeeded" else commands.exclude(ok=True, status="completed")
            )
    return commands.select_related("device").order_by("script_run_id", "id")


def success_exit_codes(run: ScriptRun) -> list[int]:
    """The success exit codes of the version ``run`` ran (``[0]`` if that version is gone)."""
    codes = (
        ScriptVersion.objects.filter(script_id=run.script_id, version=run.version)
        .values_list("success_exit_codes", flat=True)
        .first()
    )
    return list(codes) if codes is not None else [0]


def result_status(command: DeviceCommand, success_exit_codes: Iterable[int]) -> str:
    """One device's status in a run: pending, sent, succeeded, failed, timedOut, cancelled or expired (a completed
    command succeeded when its exit code is a success exit code of the version that ran)."""
    status = command.status
    if status == DeviceCommand.Status.COMPLETED:
        exit_code = (command.result or {}).get("exitCode")
        ok = (
            isinstance(exit_code, int | float)
            and not isinstance(exit_code, bool)
            and exit_code in set(success_exit_codes)
        )
        return "succeeded" if ok else "failed"
    if status == DeviceCommand.Status.TIMEOUT:
        return "timedOut"
    return str(status)


def cancel_run(*, run: ScriptRun, actor, ip: str | None = None) -> int:
    """Cancel the run's commands that no agent has fetched yet (``pending`` → ``cancelled``); those already sent
    run to their end. Writes ``script_run.cancel``; answers how many were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = DeviceCommand.objects.filter(script_run_id=run.pk, status=DeviceCommand.Status.PENDING).update(
            status=DeviceCommand.Status.CANCELLED, completed_at=now, updated_at=now
        )
        audit.record(
            action=AuditAction.SCRIPT_RUN_CANCEL,
            actor_user=actor,
            org_id=run.org_id,
            target=run,
            ip=ip,
            details={"scriptId": str(run.script_id), "version": run.version, "cancelled": cancelled},
        )
    return cancelled
