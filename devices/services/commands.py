"""A command's life: queueing and cancelling (technicians), recording results (agents), and the sweeps that
finish the commands nobody will finish (expired while pending, timed out while sent). Commands to a whole group are
queued by ``devices.services.groups.queue_group_commands`` with the same checks (``check_command``).

A command moves ``pending`` → ``sent`` (claimed by the agent's heartbeat or GET .../commands, see
``devices.agent_api.sql``: the claim is the agent path's plain SQL) → ``completed`` / ``failed`` / ``timeout``; or
``pending`` → ``expired`` / ``cancelled``. A person's queue and cancel write an audit row (``command.queue``,
``command.cancel``); the sweeps and the agent's results do not (no person acted, and they run for every command).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.models import Device, DeviceCommand
from rmm.domain_errors import Conflict, Invalid, NotFound

SCRIPT_LANGUAGES = ("powershell", "cmd", "bash", "sh", "zsh", "python", "applescript")
MAX_SCRIPT_TIMEOUT_SECONDS = 24 * 3600
MAX_SCRIPT_BYTES = 1024 * 1024
# A script command's ``env``: the environment variables its agent sets for the process (script parameters arrive
# as RMM_PARAM_<NAME>, see scripts.services.library). Bounded so a payload stays small beside its script.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_VARIABLES = 64
MAX_ENV_BYTES = 64 * 1024


class CommandRejected(Invalid):
    """A command that cannot be queued as given: 400 ``validation_error`` naming the bad fields."""

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("The command is not valid.", fields=fields)


def _payload_problems(command_type: str, payload) -> dict[str, list[str]]:
    if not isinstance(payload, dict):
        return {"payload": ["Must be an object."]}
    allowed: tuple[str, ...]
    problems: dict[str, list[str]] = {}
    if command_type == DeviceCommand.Type.SCRIPT:
        # A run of the script library (scripts.services.runs) adds "scriptRunId" to what it checked here; a
        # technician's own command cannot claim to belong to a run.
        allowed = ("language", "content", "timeoutSeconds", "env")
        if payload.get("language") not in SCRIPT_LANGUAGES:
            problems["payload.language"] = [f"Must be one of: {', '.join(SCRIPT_LANGUAGES)}."]
        content = payload.get("content")
        if not isinstance(content, str) or not content.strip():
            problems["payload.content"] = ["The script to run is required."]
        elif "\x00" in content or len(content.encode("utf-8", "surrogatepass")) > MAX_SCRIPT_BYTES:
            problems["payload.content"] = ["At most 1 MiB of text without NUL characters."]
        timeout = payload.get("timeoutSeconds")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_SCRIPT_TIMEOUT_SECONDS
        ):
            problems["payload.timeoutSeconds"] = [f"Must be a whole number from 1 to {MAX_SCRIPT_TIMEOUT_SECONDS}."]
        if "env" in payload:
            problems.update(_env_problems(payload["env"]))
    elif command_type == DeviceCommand.Type.UPDATE:
        allowed = ("version",)
        version = payload.get("version")
        if not isinstance(version, str) or not version.strip() or len(version) > 20:
            problems["payload.version"] = ["The agent version to install is required (at most 20 characters)."]
    else:  # reboot, shutdown, refresh_inventory
        allowed = ()
    for key in payload:
        if key not in allowed:
            problems[f"payload.{key}"] = [f"Not a field of a {command_type} command."]
    return problems


def _env_problems(env) -> dict[str, list[str]]:
    """A script's ``env``: an object of at most MAX_ENV_VARIABLES names (letters, digits, underscores, not starting
    with a digit) to text without NUL, at most MAX_ENV_BYTES of names and values together."""
    if not isinstance(env, dict):
        return {"payload.env": ["Must be an object of environment variable names and text values."]}
    problems: dict[str, list[str]] = {}
    if len(env) > MAX_ENV_VARIABLES:
        problems["payload.env"] = [f"At most {MAX_ENV_VARIABLES} variables."]
    size = 0
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            problems[f"payload.env.{name[:130]}"] = [
                "A variable name holds letters, digits and underscores, does not start with a digit, and has at "
                "most 128 characters."
            ]
        elif not isinstance(value, str) or "\x00" in value:
            problems[f"payload.env.{name}"] = ["Must be text without NUL characters."]
        else:
            size += len(name.encode()) + len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ENV_BYTES and "payload.env" not in problems:
        problems["payload.env"] = [f"At most {MAX_ENV_BYTES // 1024} KiB of names and values together."]
    return problems


def queue_command(
    *,
    device: Device,
    type: str,  # the field's name in the protocol and the model
    payload: dict | None,
    created_by=None,
    expires_in_seconds: int | None = None,
    ip: str | None = None,
) -> DeviceCommand:
    """Queue a command for ``device``; its agent picks it up at its next heartbeat. Writes a ``command.queue``
    audit row (``created_by`` is the actor; None for the server itself).

    Raises ``CommandRejected`` (400) for an unknown type, a bad payload or a bad expiry, and ``Conflict`` (409
    ``device_decommissioned``) for a device that will never call again.
    """
    payload = {} if payload is None else payload
    expires_in_seconds = check_command(type=type, payload=payload, expires_in_seconds=expires_in_seconds)
    if device.status == Device.Status.DECOMMISSIONED:
        raise Conflict("This device is decommissioned; it runs nothing.", code="device_decommissioned")
    now = timezone.now()
    with transaction.atomic():
        command = DeviceCommand.objects.create(
            device=device,
            org_id=device.org_id,
            type=type,
            payload=payload,
            status=DeviceCommand.Status.PENDING,
            created_by=created_by if getattr(created_by, "pk", None) else None,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=expires_in_seconds),
        )
        audit.record(
            action=AuditAction.COMMAND_QUEUE,
            actor_user=created_by,
            target=command,
            ip=ip,
            details={"type": command.type, "deviceId": str(device.pk)},
        )
    return command


def cancel_command(*, command: DeviceCommand, actor, ip: str | None = None) -> DeviceCommand:
    """Withdraw a command its agent has not fetched yet: ``pending`` → ``cancelled``, with a ``command.cancel``
    audit row. Any other status is final or on its way to the agent: ``Conflict`` (409 ``command_not_pending``).
    Answers the command as saved."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = DeviceCommand.objects.filter(pk=command.pk, status=DeviceCommand.Status.PENDING).update(
            status=DeviceCommand.Status.CANCELLED, completed_at=now, updated_at=now
        )
        current = DeviceCommand.objects.get(pk=command.pk)
        if not cancelled:
            raise Conflict(
                f"Only pending commands can be cancelled (this one is {current.status}).", code="command_not_pending"
            )
        audit.record(action=AuditAction.COMMAND_CANCEL, actor_user=actor, target=current, ip=ip)
    return current


def rerun_command(*, command: DeviceCommand, actor, ip: str | None = None) -> DeviceCommand:
    """Queue ``command`` again: a new command for the same device with the same type and payload, through
    ``queue_command`` (the same checks, the same ``command.queue`` audit row, ``actor`` as its creator). The new
    command gets the default expiry, as a command queued by hand does. Any command may be run again, whatever its
    status: a technician re-runs a failed script as readily as a completed one.

    A command of a script run (``script_run`` set, ``scriptRunId`` in its payload) is re-run as a command of its
    own, not attached to that run: the run's progress and results are what the run queued, and a run's commands are
    only ever queued by ``scripts.services.runs``. The payload is the same minus ``scriptRunId`` (the script text,
    timeout and parameters as ``env`` stay), so the agent runs the same script with the same parameters.

    Permission (``devices:execute`` on the device) is the caller's job, as for ``queue_command``. Raises
    ``Conflict`` (``device_decommissioned``) for a device that will never call again, and ``CommandRejected``
    for a payload today's checks refuse.
    """
    payload = {key: value for key, value in (command.payload or {}).items() if key != "scriptRunId"}
    device = Device.objects.get(pk=command.device_id)  # its current status, not one cached with the command
    return queue_command(device=device, type=command.type, payload=payload, created_by=actor, ip=ip)


def check_command(*, type: str, payload, expires_in_seconds: int | None) -> int:
    """Validate a command before it is queued for one device or many; answers its expiry in seconds.

    Raises ``CommandRejected`` (400) for an unknown type, a bad payload or a bad expiry.
    """
    if type not in DeviceCommand.Type.values:
        raise CommandRejected({"type": [f"Unknown command type; use one of: {', '.join(DeviceCommand.Type.values)}."]})
    problems = _payload_problems(type, payload)
    if expires_in_seconds is None:
        expires_in_seconds = settings.COMMAND_DEFAULT_EXPIRY_SECONDS
    elif isinstance(expires_in_seconds, bool) or not isinstance(expires_in_seconds, int) or expires_in_seconds < 1:
        problems["expiresInSeconds"] = ["Must be a whole number of seconds, at least 1."]
    if problems:
        raise CommandRejected(problems)
    return expires_in_seconds


class CommandNotFound(NotFound):
    """No command of this device has that id (or it was never sent to the agent)."""

    def __init__(self):
        super().__init__("This agent has no such command.", code="command_not_found")


class CommandAlreadyFinished(Conflict):
    """The command is final with a different result."""

    def __init__(self, status: str):
        super().__init__(f"This command already finished with status {status}.", code="command_already_finished")
        self.status = status


@dataclass(frozen=True)
class RecordedResult:
    command_id: uuid.UUID
    status: str
    changed: bool


_FINISH = """
UPDATE device_commands
   SET status = %s, result = %s::jsonb, completed_at = %s, updated_at = %s
 WHERE id = %s AND device_id = %s AND status = 'sent'
"""


def record_result(*, device_id: uuid.UUID, command_id: uuid.UUID, status: str, result: dict) -> RecordedResult:
    """Move a sent command to its final ``status`` with ``result``. Idempotent: the same result again changes
    nothing; a different one for a finished command raises ``CommandAlreadyFinished``."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_FINISH, [status, json.dumps(result), now, now, command_id, device_id])
            if cursor.rowcount == 1:
                return RecordedResult(command_id, status, changed=True)
        command = DeviceCommand.objects.filter(pk=command_id, device_id=device_id).only("status", "result").first()
    if command is None or command.status in (DeviceCommand.Status.PENDING,):
        raise CommandNotFound
    if command.status == status and command.result == result:
        return RecordedResult(command_id, status, changed=False)
    raise CommandAlreadyFinished(command.status)


def expire_pending_commands(*, now: dt.datetime | None = None) -> int:
    """Pending commands past their ``expires_at`` become ``expired`` (never delivered). Returns how many."""
    now = now or timezone.now()
    return DeviceCommand.objects.filter(status=DeviceCommand.Status.PENDING, expires_at__lte=now).update(
        status=DeviceCommand.Status.EXPIRED, completed_at=now, updated_at=now
    )


_TIME_OUT = """
UPDATE device_commands
   SET status = 'timeout', completed_at = %(now)s, updated_at = %(now)s,
       result = jsonb_build_object('exitCode', NULL, 'stdout', NULL, 'stderr', NULL, 'durationMs', NULL,
                                   'error', 'The agent sent no result in time.')
 WHERE status = 'sent'
   AND sent_at < %(now)s - make_interval(secs => CASE
           WHEN jsonb_typeof(payload -> 'timeoutSeconds') = 'number'
           THEN (payload ->> 'timeoutSeconds')::float8 + %(grace)s
           ELSE %(default)s END)
"""


def time_out_sent_commands(*, now: dt.datetime | None = None) -> int:
    """Sent commands with no result after their timeout become ``timeout``. Returns how many.

    The timeout is the script's own ``timeoutSeconds`` plus COMMAND_TIMEOUT_GRACE_SECONDS (the agent needs time to
    report), or COMMAND_SENT_TIMEOUT_SECONDS for commands without one.
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _TIME_OUT,
            {
                "now": now,
                "grace": float(settings.COMMAND_TIMEOUT_GRACE_SECONDS),
                "default": float(settings.COMMAND_SENT_TIMEOUT_SECONDS),
            },
        )
        return cursor.rowcount
