"""Who is calling: an agent's bearer token checked against the device named in the path.

``AgentTokenAuthentication`` is the DRF authentication class of the agent views (``devices.agent_api.views``); the
plain heartbeat and inventory views call the same checks (``authenticate``, and ``judge`` for a heartbeat batch).

Only ``sha256(token)`` is stored. The presented token's hash is compared with the current hash and, during the
five minutes after a rotation, with the previous one, always both and always with ``hmac.compare_digest``.
Unknown agent, wrong token and malformed header get the same 401 ``invalid_token``.

Nothing is cached between requests: a fleet checks in once a minute per device, so a per-process cache of a few
seconds would almost never hit in production, and the heartbeat's identity lookup is one indexed statement per
batch anyway (``devices.agent_api.sql``). A revoked or rotated-out token is therefore refused from the next request.

A refused token is counted against the caller's address (``accounts.throttle``, ``refusal_answer``), on this
failure path only: a valid token costs nothing more, and valid agents behind a limited address keep being served;
past AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS refusals in the window, the refusals are 429 with ``Retry-After``.

The checks, in order: the token (401), the client certificate when ``AGENT_MTLS_MODE`` is ``enforce`` (403
``mtls_required``), the tenant (403 ``tenant_inactive``), the device's status (403 ``device_decommissioned`` /
``device_quarantined``), and last an expired client certificate under an organization whose
``settings["mtlsExpiredCertPolicy"]`` is ``"quarantine"``, which quarantines the device there and then.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from accounts import audit, throttle
from accounts.models import AuditAction
from devices.agent_api import sql
from devices.agent_api.errors import AgentError
from devices.models import Device
from devices.services import credentials
from orgs.models import Organization, Partner
from rmm.errors import TooManyAttempts
from rmm.net import client_ip, request_is_from_trusted_proxy

logger = logging.getLogger("devices.agent_api")

# How long the token replaced by a rotation keeps working (agent-api.md, "Token rotation").
PREVIOUS_TOKEN_GRACE = dt.timedelta(minutes=5)
MTLS_EXPIRED_POLICY_KEY = "mtlsExpiredCertPolicy"
MTLS_EXPIRED_REASON = "mtls_cert_expired"

# Verdicts: "ok", an error code, or QUARANTINE_NOW (quarantine the device, then answer device_quarantined).
OK = "ok"
QUARANTINE_NOW = "quarantine_now"

_INACTIVE_ORG = frozenset(Organization.INACTIVE_STATUSES)
_INACTIVE_PARTNER = frozenset(Partner.INACTIVE_STATUSES)
_NEVER_MATCHES = "0" * 64

MESSAGES = {
    "invalid_token": "The agent token is missing, malformed or not valid for this agent.",
    "mtls_required": "A verified client certificate matching this device is required.",
    "tenant_inactive": "This device's organization is not active.",
    "device_decommissioned": "This device has been decommissioned.",
    "device_quarantined": "This device is quarantined until a technician approves it.",
}
STATUSES = {
    "invalid_token": 401,
    "mtls_required": 403,
    "tenant_inactive": 403,
    "device_decommissioned": 403,
    "device_quarantined": 403,
}


def refusal(code: str) -> AgentError:
    return AgentError(STATUSES[code], code, MESSAGES[code])


def refusal_answer(request, error: AgentError):
    """The answer to a refused agent call: ``error``'s, except that a refused token is counted against the
    caller's address and, once the address is past its limit, answered 429 ``too_many_attempts`` instead.

    Only a well-formed token that was looked up and refused counts. A malformed header is refused before any
    database access: counting it would turn a free refusal into a database write (an amplifier for whoever sends
    them), and it is the request the benchmark's no-op ceiling measures (bench/run_bench.sh)."""
    if error.code == "invalid_token" and presented_token_hash(request) is not None:
        try:
            throttle.count_refusal(throttle.Scope.AGENT_TOKEN, client_ip(request))
        except TooManyAttempts as refused:
            return refused.response()
    return error.response()


@dataclass(slots=True)
class AgentIdentity:
    """The device an agent call authenticated as, with what the checks need (one row of ``sql.IDENTITY``)."""

    agent_id: str
    device_id: uuid.UUID
    org_id: uuid.UUID
    site_id: uuid.UUID
    token_hash: str | None
    previous_token_hash: str | None
    previous_token_expires_at: dt.datetime | None
    token_issued_at: dt.datetime | None
    status: str
    org_status: str
    partner_status: str
    mtls_serial: str
    mtls_expires_at: dt.datetime | None
    mtls_expired_policy: str | None
    # The organization has a maintenance window that suppresses commands (occurring now or not): the command claim
    # asks alerts.services.windows.held_command_devices whether this device is inside it.
    org_holds_commands: bool = False

    # What DRF asks of request.user: the device is who is signed in.
    is_authenticated = True

    def token_is_old(self, now: dt.datetime) -> bool:
        """Whether the heartbeat should tell the agent to rotate (``rotateToken``)."""
        issued = self.token_issued_at
        return issued is None or issued < now - dt.timedelta(days=settings.AGENT_TOKEN_MAX_AGE_DAYS)

    def holds_rotated_out_token(self, token_hash: str) -> bool:
        """Whether the caller authenticated with the token a rotation replaced (in its grace period): the agent never
        received or never kept the new one (the rotation's answer was lost, its disk was full), so it must rotate
        again before the grace ends, or be locked out."""
        return hmac.compare_digest(self.previous_token_hash or _NEVER_MATCHES, token_hash)


def presented_token_hash(request) -> str | None:
    """sha256 of the bearer token of the Authorization header, or None when the header is missing or malformed."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not credentials.agent_token_is_well_formed(token):
        return None
    return credentials.hash_agent_token(token)


@dataclass(slots=True, frozen=True)
class PresentedCertificate:
    """What a trusted TLS-terminating proxy said about the client certificate."""

    verified: bool
    serial: str


def presented_certificate(request) -> PresentedCertificate | None:
    """The client-certificate headers, believed only from TRUSTED_PROXIES; None when mTLS is off."""
    if settings.AGENT_MTLS_MODE == "off":
        return None
    if not request_is_from_trusted_proxy(request):
        return PresentedCertificate(verified=False, serial="")
    return PresentedCertificate(
        verified=request.META.get("HTTP_X_CLIENT_CERT_VERIFIED", "").strip().upper() == "SUCCESS",
        serial=request.META.get("HTTP_X_CLIENT_CERT_SERIAL", ""),
    )


def _normal_serial(serial: str) -> str:
    return serial.replace(":", "").replace(" ", "").strip().upper().lstrip("0")


def _certificate_mismatch(identity: AgentIdentity, certificate: PresentedCertificate) -> str | None:
    # Strict on purpose: a device with no serial on file has nothing a certificate could match, so under
    # "enforce" it is refused until its certificate is recorded.
    if not certificate.verified:
        return "no verified client certificate"
    presented = _normal_serial(certificate.serial)
    if not presented or presented != _normal_serial(identity.mtls_serial):
        return f"client certificate serial {certificate.serial!r} is not the device's {identity.mtls_serial!r}"
    return None


def token_matches(identity: AgentIdentity, token_hash: str, now: dt.datetime) -> bool:
    current = hmac.compare_digest(identity.token_hash or _NEVER_MATCHES, token_hash)
    previous = hmac.compare_digest(identity.previous_token_hash or _NEVER_MATCHES, token_hash)
    in_grace = identity.previous_token_expires_at is not None and identity.previous_token_expires_at > now
    return current or (previous and in_grace)


def judge(
    identity: AgentIdentity | None,
    token_hash: str | None,
    certificate: PresentedCertificate | None,
    now: dt.datetime,
) -> str:
    """The verdict on one call: ``OK``, ``QUARANTINE_NOW`` or an error code (see the module docstring)."""
    if identity is None or token_hash is None:
        if token_hash is not None:
            hmac.compare_digest(_NEVER_MATCHES, token_hash)  # same work as for a known agent
        return "invalid_token"
    if not token_matches(identity, token_hash, now):
        return "invalid_token"
    if certificate is not None:
        mismatch = _certificate_mismatch(identity, certificate)
        if mismatch:
            if settings.AGENT_MTLS_MODE == "enforce":
                return "mtls_required"
            logger.warning("mTLS audit: agent %s: %s", identity.agent_id, mismatch)
    if identity.org_status in _INACTIVE_ORG or identity.partner_status in _INACTIVE_PARTNER:
        return "tenant_inactive"
    if identity.status == Device.Status.DECOMMISSIONED:
        return "device_decommissioned"
    if identity.status == Device.Status.QUARANTINED:
        return "device_quarantined"
    if (
        identity.mtls_expires_at is not None
        and identity.mtls_expires_at <= now
        and identity.mtls_expired_policy == "quarantine"
    ):
        return QUARANTINE_NOW
    return OK


def identity_from_row(row: tuple) -> AgentIdentity:
    return AgentIdentity(*row)


def record_certificate_quarantine(identity: AgentIdentity, *, ip: str | None) -> None:
    """The audit row of a quarantine for an expired client certificate (in the caller's transaction)."""
    audit.record(
        action=AuditAction.DEVICE_QUARANTINE,
        actor_device=Device(id=identity.device_id, org_id=identity.org_id),
        org_id=identity.org_id,
        target_type="device",
        target_id=str(identity.device_id),
        details={
            "reason": MTLS_EXPIRED_REASON,
            # Always set: judge() quarantines only for an expiry that has passed.
            "certificateExpiresAt": identity.mtls_expires_at.isoformat() if identity.mtls_expires_at else None,
        },
        ip=ip,
    )


def authenticate(request, agent_id: str) -> AgentIdentity:
    """The device of ``agent_id`` if the request's token is its token and it may call; else raise the refusal.

    Used by every agent endpoint except the heartbeat, which judges a whole batch in ``devices.agent_api.heartbeat``.
    """
    token_hash = presented_token_hash(request)
    if token_hash is None:
        raise refusal("invalid_token")
    row = sql.fetch_identity(sql.raw_cursor(), agent_id)
    identity = identity_from_row(row) if row else None
    now = timezone.now()
    verdict = judge(identity, token_hash, presented_certificate(request), now)
    if identity is None:  # judged "invalid_token"
        raise refusal(verdict)
    if verdict == OK:
        return identity
    if verdict == QUARANTINE_NOW:
        with transaction.atomic():
            if sql.quarantine_expired_certificate(sql.raw_cursor(), device_id=identity.device_id, now=now):
                record_certificate_quarantine(identity, ip=client_ip(request))
        verdict = "device_quarantined"
    raise refusal(verdict)


class AgentTokenAuthentication(BaseAuthentication):
    """DRF authentication for the agent endpoints: ``request.user`` is the ``AgentIdentity`` of the path's agent.

    Every agent endpoint needs the token, so a missing one is refused like a wrong one (401 ``invalid_token``,
    never an anonymous request). Refusals are ``AgentError``s: ``views.AgentView`` answers them through
    ``refusal_answer``, which counts refused tokens against the address.
    """

    def authenticate(self, request):
        agent_id = request.parser_context["kwargs"].get("agent_id")
        return authenticate(request._request, agent_id), None

    def authenticate_header(self, request) -> str:
        return "Bearer"
