"""Enrolling a device with an enrollment key, and the agent credentials that come with it (token rotation).

The key is found by its HMAC (``credentials.hash_enrollment_key``). Its ``usage_count`` is taken with a
compare-and-set UPDATE in the same statement as the device insert (see "the enrollment statement" below), so a key
with ``max_usage = N`` enrolls exactly N devices however many agents race for it, and a refused key stores nothing.
Device limits (organization and partner ``max_devices``) are checked with the limited row locked (FOR NO KEY
UPDATE) before that statement, in its transaction, which serializes the enrollments it governs and so keeps the
count exact too; with no limit nothing but the key row is locked, and only while PostgreSQL runs the statement and
commits.

A key refused (unknown, revoked, expired, exhausted) is counted against the caller's address
(``accounts.throttle``); past ENROLLMENT_MAX_FAILURES_PER_ADDRESS refusals in the window, the refusal becomes
``rmm.errors.TooManyAttempts`` (429). A valid key is never held back by it.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import cast

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from accounts import audit, throttle
from accounts.models import AuditAction, AuditLog
from devices.agent_api.authentication import PREVIOUS_TOKEN_GRACE
from devices.agent_api.sql import raw_cursor
from devices.models import Device, DeviceHardware, DeviceNetworkInterface
from devices.services import credentials, ingest
from orgs.models import EnrollmentKey, Organization, Partner
from rmm.domain_errors import DomainError, LimitReached, Refused, Unauthenticated
from rmm.ids import uuid7


@dataclass(frozen=True)
class EnrollFacts:
    """What an agent says about its machine when it enrolls (already validated)."""

    hostname: str
    os_type: str
    os_version: str
    architecture: str
    agent_version: str
    os_build: str = ""
    # The hardware row and the network interfaces, as objects whose attributes are the columns of
    # ingest.HARDWARE_COLUMNS and ingest.KINDS["network"] (devices.agent_api.schemas.Hardware / NetworkAdapter).
    hardware: object | None = None
    interfaces: list = field(default_factory=list)


@dataclass(frozen=True)
class Enrollment:
    device: Device
    token: str  # shown to the agent once; only its sha256 is stored


def agent_config() -> dict:
    """The configuration object of the agent protocol (enrollment answer and GET .../config)."""
    return {
        "heartbeatIntervalSeconds": settings.AGENT_HEARTBEAT_INTERVAL_SECONDS,
        "metricsCollectionIntervalSeconds": settings.AGENT_METRICS_INTERVAL_SECONDS,
    }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_refusal(key: EnrollmentKey, now: dt.datetime) -> DomainError | None:
    """Why ``key`` cannot enroll a device now, or None."""
    if key.revoked_at is not None:
        return Unauthenticated(
            f"This enrollment key was revoked at {_iso(key.revoked_at)}.", code="enrollment_key_revoked"
        )
    if key.expires_at is not None and key.expires_at <= now:
        return Unauthenticated(f"This enrollment key expired at {_iso(key.expires_at)}.", code="enrollment_key_expired")
    if key.max_usage is not None and key.usage_count >= key.max_usage:
        return Unauthenticated(
            f"This enrollment key has enrolled its {key.max_usage} devices already.", code="enrollment_key_exhausted"
        )
    return None


def _tenant_refusal(org: Organization) -> DomainError | None:
    if org.status in Organization.INACTIVE_STATUSES or org.partner.status in Partner.INACTIVE_STATUSES:
        return Refused("This organization is not active; it cannot enroll devices.", code="tenant_inactive")
    return None


def _check_device_limits(org: Organization) -> None:
    """Refuse when the organization or its partner is at its ``max_devices`` (decommissioned devices don't count).

    The limited row is locked first (until the commit), so two enrollments can never both see room for one more
    device: the count runs after the lock, so it sees every device of the enrollments that held it before.
    """
    active = Device.objects.exclude(status=Device.Status.DECOMMISSIONED)
    if org.max_devices is not None:
        limit = Organization.objects.select_for_update(no_key=True).values_list("max_devices", flat=True).get(pk=org.pk)
        if limit is not None and active.filter(org_id=org.pk).count() >= limit:
            raise LimitReached(
                f"This organization has reached its limit of {limit} devices.", code="device_limit_reached"
            )
    if org.partner.max_devices is not None:
        limit = (
            Partner.objects.select_for_update(no_key=True).values_list("max_devices", flat=True).get(pk=org.partner_id)
        )
        if limit is not None and active.filter(org__partner_id=org.partner_id).count() >= limit:
            raise LimitReached(f"This partner has reached its limit of {limit} devices.", code="device_limit_reached")


# ---- the enrollment statement ----------------------------------------------------------------------------------
#
# An enrollment is written by one SQL statement whose CTEs consume a use of the key (compare-and-set: never past
# max_usage, never a revoked or expired key) and, only if that took, insert the device, its hardware row, its
# network interfaces and the audit row. On its own (autocommit) it is its own transaction: one round trip, and the
# key row, which every enrollment of the key must update, is locked only while PostgreSQL runs the statement and
# commits. Written with the ORM and ingest's writers it was 11 round trips of which the key lock spanned 8 (or, the
# lock taken last, 2): with 16 enrollments of one key at a time, the lock waits and the per-statement CPU of
# Django and psycopg under gevent held the server to 111-160 enrollments/s (bench/enroll_bench.sh, issue 13).
#
# The rows are built from model instances, column by column as Django itself inserts them (defaults, auto_now,
# get_db_prep_save), so a column added to a model is written here too; the values the database computes (the
# key's organization and site, the new device's id) are SQL expressions over the CTEs.

_KEY_USABLE = """(k.max_usage IS NULL OR k.usage_count < k.max_usage)
           AND k.revoked_at IS NULL
           AND (k.expires_at IS NULL OR k.expires_at > now())"""

# The fast path: the key by its HMAC, if its organization and partner are active and neither has a device limit
# (a limit needs its row locked before counting: enroll_device's second path).
_KEY_BY_HASH = f"""k.key_hash = %s
           AND EXISTS (SELECT 1
                         FROM {Organization._meta.db_table} o
                         JOIN {Partner._meta.db_table} p ON p.id = o.partner_id
                        WHERE o.id = k.org_id AND o.max_devices IS NULL AND p.max_devices IS NULL
                          AND o.status <> ALL (%s) AND p.status <> ALL (%s))"""  # noqa: S608 (table names of our models)
_KEY_BY_ID = "k.id = %s"


# Computed columns: SQL expressions over the CTEs instead of bound values.
_FROM_KEY = (("org_id", "consumed.org_id"), ("site_id", "consumed.site_id"))
_OF_DEVICE = (("device_id", "device.id"), ("org_id", "device.org_id"))
_AUDIT_FROM_KEY = (
    ("org_id", "consumed.org_id"),
    ("details", "jsonb_build_object('enrollmentKeyId', consumed.id::text, 'keyPrefix', consumed.key_prefix)"),
)


def _field(model: type[Model], name: str) -> Field:
    return cast(Field, model._meta.get_field(name))


@functools.cache
def _insert_parts(model: type[Model], computed: tuple[tuple[str, str], ...]) -> tuple[str, str, tuple[Field, ...]]:
    """The column list of ``model``'s INSERT, its value list (a placeholder cast to the column's type, or the SQL
    expression ``computed`` gives for the column) and the fields whose values are bound, in order."""
    expressions = dict(computed)
    columns, values, bound = [], [], []
    for model_field in model._meta.local_concrete_fields:
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.column in expressions:
            values.append(expressions[model_field.column])
        else:
            values.append(f"%s::{model_field.db_type(connection)}")
            bound.append(model_field)
    return ", ".join(columns), ", ".join(values), tuple(bound)


def _bound_values(instance: Model, computed: tuple[tuple[str, str], ...]) -> list:
    """``instance``'s values for ``_insert_parts``, as Django would insert the instance (defaults, auto_now)."""
    fields = _insert_parts(type(instance), computed)[2]
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]


def _interface_fields() -> list[Field]:
    spec = ingest.KINDS["network"]
    return [_field(DeviceNetworkInterface, column) for column in ("id", *spec.columns, spec.stamp)]


@functools.lru_cache(maxsize=512)
def _statement(key_match: str, with_hardware: bool, interfaces: int) -> str:
    """The enrollment statement for the key ``key_match`` selects (an SQL condition on ``k``)."""
    columns, values, _ = _insert_parts(Device, _FROM_KEY)
    parts = [
        f"""WITH consumed AS (
        UPDATE {EnrollmentKey._meta.db_table} k
           SET usage_count = k.usage_count + 1, updated_at = now()
         WHERE {key_match}
           AND {_KEY_USABLE}
     RETURNING k.id, k.org_id, k.site_id, k.key_prefix
), device AS (
        INSERT INTO {Device._meta.db_table} ({columns}) SELECT {values} FROM consumed RETURNING id, org_id
)"""  # noqa: S608 (table and column names of our models; every value is bound)
    ]
    if with_hardware:
        columns, values, _ = _insert_parts(DeviceHardware, _OF_DEVICE)
        table = DeviceHardware._meta.db_table
        parts.append(f", hardware AS (INSERT INTO {table} ({columns}) SELECT {values} FROM device)")  # noqa: S608
    if interfaces:
        fields = _interface_fields()
        row = "(" + ", ".join(f"%s::{field.db_type(connection)}" for field in fields) + ")"
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        names = ", ".join(f"c{n}" for n in range(len(fields)))
        rows = ", ".join([row] * interfaces)
        parts.append(
            f""", interfaces AS (
        INSERT INTO {DeviceNetworkInterface._meta.db_table} (device_id, org_id, {columns})
        SELECT device.id, device.org_id, item.* FROM device CROSS JOIN (VALUES {rows}) AS item ({names})
)"""  # noqa: S608
        )
    columns, values, _ = _insert_parts(AuditLog, _AUDIT_FROM_KEY)
    parts.append(f", audit AS (INSERT INTO {AuditLog._meta.db_table} ({columns}) SELECT {values} FROM consumed)")  # noqa: S608
    parts.append("\nSELECT org_id, site_id FROM consumed")
    # Numbered placeholders, sent as they are (psycopg.RawCursor): psycopg parses a %s query again on every
    # execution when it has more than 50 parameters (this one has ~70), ~0.3 ms of the worker's CPU each time.
    pieces = "".join(parts).split("%s")
    return "".join(f"{piece}${n}" for n, piece in enumerate(pieces[:-1], start=1)) + pieces[-1]


def _hardware_row(hardware: object, now: dt.datetime) -> DeviceHardware:
    values = {}
    for column in ingest.HARDWARE_COLUMNS:
        field = _field(DeviceHardware, column)
        value = getattr(hardware, column)
        # A text column the agent left out is stored empty (its default), as ingest.upsert_hardware does.
        values[column] = field.get_default() if value is None and not field.null else value
    return DeviceHardware(updated_at=now, **values)


def _insert_enrollment(
    *, key_match: str, key_params: list, facts: EnrollFacts, ip: str | None, now: dt.datetime
) -> Enrollment | None:
    """Run the enrollment statement for the key ``key_match`` selects; None when it consumed no use of the key
    (then nothing is written)."""
    token = credentials.mint_agent_token()
    device = Device(
        agent_id=credentials.new_agent_id(),
        agent_token_hash=token.hash,
        agent_token_issued_at=now,
        hostname=facts.hostname,
        os_type=facts.os_type,
        os_version=facts.os_version,
        os_build=facts.os_build,
        architecture=facts.architecture,
        agent_version=facts.agent_version,
        status=Device.Status.ONLINE,
        enrolled_at=now,
        last_seen_at=now,
        last_seen_ip=ip or "",
    )
    params = [*key_params, *_bound_values(device, _FROM_KEY)]
    if facts.hardware is not None:
        params += _bound_values(_hardware_row(facts.hardware, now), _OF_DEVICE)
    if facts.interfaces:
        fields = _interface_fields()
        for row in ingest.inventory_rows("network", facts.interfaces):
            values = (uuid7(), *row, now)
            params += [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    entry = AuditLog(
        action=AuditAction.DEVICE_ENROLL,
        actor_device_id=device.pk,
        target_type="device",  # Device's model name, as audit.record writes it
        target_id=str(device.pk),
        ip=ip,
    )
    params += _bound_values(entry, _AUDIT_FROM_KEY)
    statement = _statement(key_match, facts.hardware is not None, len(facts.interfaces))
    # Prepared (server-side binding): PostgreSQL parses and plans the statement once per connection.
    cursor = psycopg.RawCursor(raw_cursor().connection)
    cursor.execute(statement, params, prepare=True)
    placed = cursor.fetchone()
    if placed is None:
        return None
    device.org_id, device.site_id = placed
    device._state.adding = False
    device._state.db = connection.alias
    return Enrollment(device=device, token=token.raw)


def enroll_device(*, key: str, facts: EnrollFacts, ip: str | None = None) -> Enrollment:
    """Create the device of ``facts`` in the key's site and return it with its new agent token.

    Raises ``Unauthenticated`` for the key, ``Refused`` for an inactive tenant, ``LimitReached`` for a device limit,
    or ``TooManyAttempts`` instead of ``Unauthenticated`` once ``ip`` is past its limit of refused keys; then nothing
    is stored.
    """
    try:
        return _enroll_device(key=key, facts=facts, ip=ip)
    except Unauthenticated:  # the key, not the tenant nor a device limit
        throttle.count_refusal(throttle.Scope.ENROLLMENT, ip)
        raise


def _enroll_device(*, key: str, facts: EnrollFacts, ip: str | None) -> Enrollment:
    now = timezone.now()
    key_hash = credentials.hash_enrollment_key(key)
    # Most enrollments: a usable key of an active tenant without device limits, in one statement.
    inactive = [list(Organization.INACTIVE_STATUSES), list(Partner.INACTIVE_STATUSES)]
    enrolled = _insert_enrollment(key_match=_KEY_BY_HASH, key_params=[key_hash, *inactive], facts=facts, ip=ip, now=now)
    if enrolled is not None:
        return enrolled

    # Anything else: say why the key or the tenant is refused, or lock the limited rows and count first.
    enrollment_key = EnrollmentKey.objects.select_related("org__partner").filter(key_hash=key_hash).first()
    if enrollment_key is None:
        raise Unauthenticated("No enrollment key matches the one presented.", code="enrollment_key_not_found")
    refused = _key_refusal(enrollment_key, now) or _tenant_refusal(enrollment_key.org)
    if refused:
        raise refused
    with transaction.atomic():
        _check_device_limits(enrollment_key.org)
        enrolled = _insert_enrollment(
            key_match=_KEY_BY_ID, key_params=[enrollment_key.pk], facts=facts, ip=ip, now=timezone.now()
        )
    if enrolled is None:
        # Another enrollment took the last use, or the key was revoked meanwhile: say which.
        enrollment_key.refresh_from_db()
        raise _key_refusal(enrollment_key, timezone.now()) or Unauthenticated(
            "This enrollment key cannot enroll more devices.", code="enrollment_key_exhausted"
        )
    return enrolled


def rotate_agent_token(*, device_id, org_id, presented_token_hash: str | None = None, ip: str | None = None) -> str:
    """Give the device a new token; the token the agent called with (``presented_token_hash``; by default the
    current one) keeps working for ``PREVIOUS_TOKEN_GRACE`` (5 minutes).

    An agent that rotates again with its rotated-out token (the first rotation's answer never reached it) keeps that
    token as the previous one: replacing it with the token it never received would lock it out when both fail."""
    now = timezone.now()
    token = credentials.mint_agent_token()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE devices
                   SET previous_token_hash = coalesce(%s, agent_token_hash), previous_token_expires_at = %s,
                       agent_token_hash = %s, agent_token_issued_at = %s, updated_at = %s
                 WHERE id = %s
                """,
                [presented_token_hash, now + PREVIOUS_TOKEN_GRACE, token.hash, now, now, device_id],
            )
        audit.record(
            action=AuditAction.DEVICE_ROTATE_TOKEN,
            actor_device=Device(id=device_id, org_id=org_id),
            org_id=org_id,
            target_type="device",
            target_id=str(device_id),
            details={"previousTokenExpiresAt": _iso(now + PREVIOUS_TOKEN_GRACE)},
            ip=ip,
        )
    return token.raw
