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

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts import audit, throttle
from accounts.models import AuditAction
from devices.agent_api.authentication import PREVIOUS_TOKEN_GRACE
from devices.models import Device
from devices.services import credentials, ingest
from orgs.models import EnrollmentKey, Organization, Partner
from rmm.domain_errors import DomainError, LimitReached, Refused, Unauthenticated


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
    """Refuse when the organization or its partner would pass its ``max_devices`` with the device just inserted
    (uncommitted, so counted) by this transaction; decommissioned devices don't count.

    The limited row is locked before counting, so two enrollments can never both see room for one more device.
    """
    active = Device.objects.exclude(status=Device.Status.DECOMMISSIONED)
    if org.max_devices is not None:
        limit = Organization.objects.select_for_update(no_key=True).values_list("max_devices", flat=True).get(pk=org.pk)
        if limit is not None and active.filter(org_id=org.pk).count() > limit:
            raise LimitReached(
                f"This organization has reached its limit of {limit} devices.", code="device_limit_reached"
            )
    if org.partner.max_devices is not None:
        limit = (
            Partner.objects.select_for_update(no_key=True).values_list("max_devices", flat=True).get(pk=org.partner_id)
        )
        if limit is not None and active.filter(org__partner_id=org.partner_id).count() > limit:
            raise LimitReached(f"This partner has reached its limit of {limit} devices.", code="device_limit_reached")


_CONSUME_KEY = """
UPDATE enrollment_keys
   SET usage_count = usage_count + 1, updated_at = now()
 WHERE id = %s
   AND (max_usage IS NULL OR usage_count < max_usage)
   AND revoked_at IS NULL
   AND (expires_at IS NULL OR expires_at > now())
"""


def _consume_key(key: EnrollmentKey) -> None:
    """Count one use of ``key`` (compare-and-set, so never past ``max_usage``), or raise why it cannot be used."""
    with connection.cursor() as cursor:
        cursor.execute(_CONSUME_KEY, [key.pk])
        consumed = cursor.rowcount == 1
    if not consumed:
        # Another enrollment took the last use, or the key was revoked meanwhile: say which.
        key.refresh_from_db()
        raise _key_refusal(key, timezone.now()) or Unauthenticated(
            "This enrollment key cannot enroll more devices.", code="enrollment_key_exhausted"
        )


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
    enrollment_key = (
        EnrollmentKey.objects.select_related("org__partner")
        .filter(key_hash=credentials.hash_enrollment_key(key))
        .first()
    )
    if enrollment_key is None:
        raise Unauthenticated("No enrollment key matches the one presented.", code="enrollment_key_not_found")
    refused = _key_refusal(enrollment_key, now) or _tenant_refusal(enrollment_key.org)
    if refused:
        raise refused

    with transaction.atomic():
        token = credentials.mint_agent_token()
        device = Device.objects.create(
            org_id=enrollment_key.org_id,
            site_id=enrollment_key.site_id,
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
        if facts.hardware is not None:
            ingest.upsert_hardware(device_id=device.pk, org_id=device.org_id, hardware=facts.hardware, now=now)
        if facts.interfaces:
            rows = ingest.inventory_rows("network", facts.interfaces)
            ingest.replace_inventory(device_id=device.pk, org_id=device.org_id, kind="network", rows=rows, now=now)
        audit.record(
            action=AuditAction.DEVICE_ENROLL,
            actor_device=device,
            target=device,
            details={"enrollmentKeyId": str(enrollment_key.pk), "keyPrefix": enrollment_key.key_prefix},
            ip=ip,
        )
        # The rows every enrollment of this key (and of a limited organization or partner) must lock are locked
        # last: a lock is held until the commit, so taken first it made concurrent enrollments wait for each
        # other's whole transaction (8 round trips; 16 enrollments of one key measured 111-133/s, see
        # bench/enroll_bench.sh). A refusal here rolls back everything written above.
        _check_device_limits(enrollment_key.org)
        _consume_key(enrollment_key)
    return Enrollment(device=device, token=token.raw)


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
