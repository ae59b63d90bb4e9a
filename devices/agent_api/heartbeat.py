"""The heartbeat: read one check-in, then judge and write a batch of them in one transaction.

``read_heartbeat`` runs in the request's thread and turns a body into a ``HeartbeatJob`` (or a 400 / 413 before
anything is stored): it refuses everything PostgreSQL would refuse, because one value the database refuses fails the
batch it is written in. ``write_heartbeat`` hands the job to the process's group-commit writer
(``devices.agent_api.group_commit``), or writes it inline inside a transaction (tests) or with group commit off.
``process_heartbeats`` takes any number of jobs, in the calling thread's transaction: the writer's, with every
heartbeat that arrived while the previous batch was being committed, or the request's own.

Commands are handed out once per claim. A job's claimed commands are in its answer only if its write committed
(``settled``); when the answer carrying them cannot be delivered, ``devices.agent_api.delivery`` returns them to
``pending`` (README, "Agents"). A device inside a maintenance window that suppresses commands claims nothing
(``commands_held``); its commands stay pending until the window is over.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from alerts.services import windows
from devices.agent_api import schemas, sql
from devices.agent_api.authentication import (
    OK,
    QUARANTINE_NOW,
    AgentIdentity,
    PresentedCertificate,
    identity_from_row,
    judge,
    record_certificate_quarantine,
)
from devices.agent_api.errors import AgentError
from devices.agent_api.group_commit import GroupCommitter, JobRefused, is_data_error
from devices.agent_api.schemas import metric_values


@dataclass(slots=True, eq=False)
class HeartbeatJob:
    """One validated check-in waiting to be written, and (once written) what to answer."""

    agent_id: str
    token_hash: str
    certificate: PresentedCertificate | None
    received_at: dt.datetime
    ip: str | None
    agent_version: str
    hostname: str | None = None
    os_version: str | None = None
    os_build: str | None = None
    metrics: schemas.Metrics | None = None
    backlog: list[schemas.BacklogSample] = field(default_factory=list)
    # The outcome, filled in by process_heartbeats.
    verdict: str = ""
    identity: AgentIdentity | None = None
    commands: list[dict] = field(default_factory=list)
    rotate_token: bool = False
    # Set once the outcome is final and committed: a job written again after a failed batch is skipped then.
    settled: bool = False
    # The sent_at its commands were claimed with: an undelivered answer returns exactly that claim to pending.
    claimed_at: dt.datetime | None = None

    def __str__(self) -> str:
        return f"the heartbeat of agent {self.agent_id!a}"


def read_heartbeat(
    body: dict,
    *,
    agent_id: str,
    token_hash: str,
    certificate: PresentedCertificate | None,
    ip: str | None,
    now: dt.datetime,
) -> HeartbeatJob:
    """Validate a heartbeat body (``schemas.Heartbeat``) into a job; raises the 400 / 413 ``AgentError``."""
    beat = schemas.read_heartbeat_body(body, now=now, retention_days=settings.TELEMETRY_RETENTION_DAYS)
    return HeartbeatJob(
        agent_id=agent_id,
        token_hash=token_hash,
        certificate=certificate,
        received_at=now,
        ip=ip,
        agent_version=beat.agent_version,
        hostname=beat.hostname,
        os_version=beat.os_version,
        os_build=beat.os_build,
        metrics=beat.metrics,
        backlog=beat.metrics_backlog or [],
    )


# A heartbeat whose device changed between its judgement and the write (a rotation, a quarantine, in the same
# millisecond) is judged again; this bounds how often, so a device changed on every attempt still gets an answer.
MAX_ATTEMPTS = 3


def process_heartbeats(jobs: list[HeartbeatJob], *, now: dt.datetime | None = None) -> None:
    """Judge and write ``jobs``; each job gets its ``verdict`` (and, when OK, its commands and rotateToken).

    Two statements per batch, neither inside an explicit transaction: the identity lookup (a read), then the write,
    which is one statement and so atomic and durable on its own when it returns. Nothing holds a lock between them;
    the write re-checks what the judgement relied on instead (``sql.HEARTBEAT_WRITE``). Only a batch that
    quarantines a device for an expired client certificate opens a transaction, to write the audit row with it.
    """
    pending = [job for job in jobs if not job.settled]
    for _attempt in range(MAX_ATTEMPTS):
        if not pending:
            return
        retry = _attempt_batch(pending, now or timezone.now())
        again = set(map(id, retry))
        for job in pending:
            if id(job) not in again:
                job.settled = True  # committed (or nothing to write): an error in a later attempt cannot undo it
        pending = retry
    for job in pending:
        job.verdict = "busy"
        job.settled = True


def _attempt_batch(jobs: list[HeartbeatJob], now: dt.datetime) -> list[HeartbeatJob]:
    """One attempt at ``jobs``: answers the jobs to try again (their device changed under them)."""
    cursor = sql.raw_cursor()
    identities = {row[0]: identity_from_row(row) for row in sql.fetch_identities(cursor, {j.agent_id for j in jobs})}

    touches: dict[uuid.UUID, tuple] = {}
    samples: list[tuple] = []
    written_jobs: dict[uuid.UUID, list[HeartbeatJob]] = {}
    quarantined_now: dict[uuid.UUID, HeartbeatJob] = {}
    for job in jobs:
        identity = identities.get(job.agent_id)
        verdict = judge(identity, job.token_hash, job.certificate, now)
        job.identity, job.verdict, job.commands = identity, verdict, []
        if identity is None:  # judged "invalid_token": nothing to write
            continue
        if verdict == OK:
            device_id = identity.device_id
            facts = (job.ip, job.hostname, job.os_version, job.os_build, job.agent_version)
            touches[device_id] = (device_id, identity.token_hash, identity.status, "ok", job.received_at, *facts)
            if job.metrics is not None:
                samples.append((device_id, identity.org_id, job.received_at, *metric_values(job.metrics)))
            samples.extend((device_id, identity.org_id, s.timestamp, *metric_values(s)) for s in job.backlog)
            job.rotate_token = identity.token_is_old(now) or identity.holds_rotated_out_token(job.token_hash)
        elif verdict in (QUARANTINE_NOW, "device_quarantined"):
            # A quarantined device answers 403 but its last_seen_at is still recorded (agent-api.md).
            device_id = identity.device_id
            mode = "quarantine" if verdict == QUARANTINE_NOW else "seen"
            if mode == "quarantine":
                quarantined_now[device_id] = job
            touches[device_id] = (device_id, identity.token_hash, identity.status, mode, job.received_at, job.ip)
            touches[device_id] += (None,) * 4
            job.verdict = "device_quarantined"
        else:
            continue
        written_jobs.setdefault(identity.device_id, []).append(job)
    if not touches:
        return []

    # In id order, so two server processes writing overlapping batches lock the same rows in the same order.
    ordered = [touches[device_id] for device_id in sorted(touches)]
    held = commands_held([job.identity for job in jobs if job.verdict == OK], now=now)
    try:
        if quarantined_now:
            with transaction.atomic():
                written, claimed = sql.write_heartbeats(cursor, now=now, touches=ordered, samples=samples, held=held)
                for device_id, job in quarantined_now.items():
                    if device_id in written and job.identity is not None:  # always set on a quarantined job
                        record_certificate_quarantine(job.identity, ip=job.ip)
        else:
            written, claimed = sql.write_heartbeats(cursor, now=now, touches=ordered, samples=samples, held=held)
    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
        if connection.in_atomic_block:
            raise  # inside someone else's transaction (a test): nothing can be retried here
        # The statement is atomic: nothing of it was written. Judge and write the whole batch again.
        return [job for batch in written_jobs.values() for job in batch]

    for device_id, command_id, command_type, payload, _created in claimed:
        # Several heartbeats of one device in one batch: the commands go to the first.
        first = written_jobs[device_id][0]
        first.claimed_at = now
        first.commands.append({"id": str(command_id), "type": command_type, "payload": json.loads(payload)})
    return [job for device_id, batch in written_jobs.items() if device_id not in written for job in batch]


def commands_held(identities: list[AgentIdentity | None], *, now: dt.datetime) -> list[uuid.UUID]:
    """The devices among ``identities`` that are inside a maintenance window suppressing commands at ``now``: they
    claim nothing (their commands stay pending). Asks the windows only for devices whose organization has such a
    window (``AgentIdentity.org_holds_commands``, from the identity lookup), so a heartbeat otherwise pays nothing."""
    candidates = [(i.device_id, i.org_id, i.site_id) for i in identities if i is not None and i.org_holds_commands]
    if not candidates:
        return []
    return windows.held_command_devices(devices=candidates, now=now)


heartbeat_writer = GroupCommitter(
    process_heartbeats,
    name="heartbeat-group-commit",
    settled=lambda job: job.settled,
    describe=str,
    timeout_ms=lambda: settings.AGENT_GROUP_COMMIT_TIMEOUT_MS,
)


def write_heartbeat(job: HeartbeatJob) -> None:
    """Write ``job`` and fill in its outcome: through the group-commit writer, or inline inside a transaction (the
    writer's connection could not see its rows) or with AGENT_GROUP_COMMIT off.

    Raises ``group_commit.WriterUnavailable`` (503: nothing of it stored, send it again) or the 400 ``AgentError``
    when the database refused a value of this heartbeat alone, which validation should have refused and sending it
    again would not change.
    """
    try:
        if settings.AGENT_GROUP_COMMIT and not connection.in_atomic_block:
            heartbeat_writer.submit(job)
        else:
            try:
                process_heartbeats([job])
            except Exception as exc:
                if is_data_error(exc):
                    raise JobRefused(str(exc)) from exc
                raise  # the database unavailable: 503 by rmm.errors; anything else is a bug (500)
    except JobRefused:
        raise AgentError(
            400, "validation_error", "The database refused a value of this heartbeat; nothing of it was stored."
        ) from None
