"""Enrolling a device with an enrollment key, and the agent credentials that come with it (token rotation).

The key is found by its HMAC (``credentials.hash_enrollment_key``). Its ``usage_count`` is taken with a
compare-and-set UPDATE in the same transaction as the device insert, so a key with ``max_usage = N`` enrolls
exactly N devices however many agents race for it. Device limits (organization and partner ``max_devices``) are
checked with the limited row locked (FOR NO KEY UPDATE), which serializes the enrollments it governs and so keeps
the count exact too; with no limit nothing is locked and enrollments run in parallel. Both locks are taken at the
end of the transaction, after the device and its rows are written, so enrollments of one key wait for each other
only for the last statements and the commit; a refusal there rolls everything back.

A key refused (unknown, revoked, expired, exhausted) is counted against the caller's address
(``accounts.throttle``); past ENROLLMENT_MAX_FAILURES_PER_ADDRESS refusals in the window, the refusal becomes
``rmm.errors.TooManyAttempts`` (429). A valid key is never held back by it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from accounts import audit, throttle
from accounts.models import AuditAction, AuditLog
from devices.agent_api.authentication import PREVIOUS_TOKEN_GRACE
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


def _columns(instance: Model, computed: dict[str, str]) -> tuple[str, str, list]:
    """``instance``'s columns, their values (each a placeholder cast to the column's type, or the SQL expression
    ``computed`` gives for the column) and the parameters, as Django would insert the instance."""
    columns, values, params = [], [], []
    for model_field in instance._meta.local_concrete_fields:
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.column in computed:
            values.append(computed[model_field.column])
        else:
            values.append(f"%s::{model_field.db_type(connection)}")
            params.append(model_field.get_db_prep_save(model_field.pre_save(instance, True), connection))
    return ", ".join(columns), ", ".join(values), params


def _field(model: type[Model], name: str) -> Field:
    return cast(Field, model._meta.get_field(name))


def _hardware_row(hardware: object, now: dt.datetime) -> DeviceHardware:
    values = {}
    for column in ingest.HARDWARE_COLUMNS:
        field = _field(DeviceHardware, column)
        value = getattr(hardware, column)
        # A text column the agent left out is stored empty (its default), as ingest.upsert_hardware does.
        values[column] = field.get_default() if value is None and not field.null else value
    return DeviceHardware(updated_at=now, **values)


def _interfaces_values(interfaces: list, now: dt.datetime) -> tuple[str, str, list]:
    """The network interfaces as a VALUES list of typed rows, with its column list."""
    spec = ingest.KINDS["network"]
    names = ("id", *spec.columns, spec.stamp)
    fields = [_field(DeviceNetworkInterface, column) for column in names]
    row_sql = "(" + ", ".join(f"%s::{field.db_type(connection)}" for field in fields) + ")"
    params: list = []
    for row in ingest.inventory_rows("network", interfaces):
        values = (uuid7(), *row, now)
        params += [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    columns = ", ".join(connection.ops.quote_name(column) for column in names)
    return columns, ", ".join([row_sql] * (len(params) // len(fields))), params


def _insert_enrollment(
    *, key_match: str, key_params: list, facts: EnrollFacts, ip: str | None, now: dt.datetime
) -> Enrollment | None:
    """Run the enrollment statement for the key ``key_match`` selects (an SQL condition on ``k``); None when it
    consumed no use of the key (then nothing is written)."""
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
    from_key = {"org_id": "consumed.org_id", "site_id": "consumed.site_id"}
    of_device = {"device_id": "device.id", "org_id": "device.org_id"}
    device_columns, device_values, params = _columns(device, from_key)
    statement = [
        f"""WITH consumed AS (
        UPDATE {EnrollmentKey._meta.db_table} k
           SET usage_count = k.usage_count + 1, updated_at = now()
         WHERE {key_match}
           AND {_KEY_USABLE}
     RETURNING k.id, k.org_id, k.site_id, k.key_prefix
), device AS (
        INSERT INTO {Device._meta.db_table} ({device_columns}) SELECT {device_values} FROM consumed RETURNING id, org_id
)""",  # noqa: S608 (table and column names of our models; every value is bound)
    ]
    params = [*key_params, *params]
    if facts.hardware is not None:
        columns, values, more = _columns(_hardware_row(facts.hardware, now), of_device)
        statement.append(
            f", hardware AS (INSERT INTO {DeviceHardware._meta.db_table} ({columns}) SELECT {values} FROM device)"  # noqa: S608
        )
        params += more
    if facts.interfaces:
        columns, rows, more = _interfaces_values(facts.interfaces, now)
        names = ", ".join(f"c{n}" for n in range(columns.count(",") + 1))
        statement.append(
            f""", interfaces AS (
        INSERT INTO {DeviceNetworkInterface._meta.db_table} (device_id, org_id, {columns})
        SELECT device.id, device.org_id, item.* FROM device CROSS JOIN (VALUES {rows}) AS item ({names})
)"""  # noqa: S608
        )
        params += more
    entry = AuditLog(
        action=AuditAction.DEVICE_ENROLL,
        actor_device_id=device.pk,
        target_type="device",  # Device's model name, as audit.record writes it
        target_id=str(device.pk),
        ip=ip,
    )
    details = "jsonb_build_object('enrollmentKeyId', consumed.id::text, 'keyPrefix', consumed.key_prefix)"
    columns, values, more = _columns(entry, {"org_id": "consumed.org_id", "details": details})
    statement.append(f", audit AS (INSERT INTO {AuditLog._meta.db_table} ({columns}) SELECT {values} FROM consumed)")  # noqa: S608
    params += more
    statement.append("\nSELECT org_id, site_id FROM consumed")
    with connection.cursor() as cursor:
        cursor.execute("".join(statement), params)
        row = cursor.fetchone()
    if row is None:
        return None
    device.org_id, device.site_id = row
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


def rotate_agent_token(*, device_id, org_id, ip: str | None = None) -> str:
    """Give the device a new token; the current one keeps working for ``PREVIOUS_TOKEN_GRACE`` (5 minutes)."""
    now = timezone.now()
    token = credentials.mint_agent_token()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE devices
                   SET previous_token_hash = agent_token_hash, previous_token_expires_at = %s,
                       agent_token_hash = %s, agent_token_issued_at = %s, updated_at = %s
                 WHERE id = %s
                """,
                [now + PREVIOUS_TOKEN_GRACE, token.hash, now, now, device_id],
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
