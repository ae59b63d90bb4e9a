"""Tenancy operations: making and revoking enrollment keys.

An enrollment key is shown once, when it is made; the database keeps only ``key_prefix`` (its first 8 characters,
to tell keys apart in lists) and ``key_hash``, an HMAC-SHA-256 of the whole key keyed with ``SECRET_KEY``. Enrollment
looks a presented key up by ``hash_enrollment_key(raw)``. Rotating ``SECRET_KEY`` therefore invalidates every
enrollment key, which is intended: a leaked database alone cannot be used to test guessed keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import audit
from orgs.models import EnrollmentKey, Site

# "ek_" marks the string as an enrollment key (for people and secret scanners) while leaving 5 random hex characters
# in the 8-character prefix; a longer marker would make every key's prefix look the same.
ENROLLMENT_KEY_MARKER = "ek_"
ENROLLMENT_KEY_PREFIX_LENGTH = 8


def hash_enrollment_key(raw: str) -> str:
    """The stored form of an enrollment key: HMAC-SHA-256 with the server secret, 64 hex characters."""
    return hmac.new(settings.SECRET_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()


def generate_enrollment_key() -> tuple[str, str, str]:
    """A new random enrollment key as ``(raw, prefix, hash)``: show ``raw`` once, store ``prefix`` and ``hash``."""
    raw = ENROLLMENT_KEY_MARKER + secrets.token_hex(32)
    return raw, raw[:ENROLLMENT_KEY_PREFIX_LENGTH], hash_enrollment_key(raw)


def revoke_enrollment_keys(*, keys: QuerySet[EnrollmentKey], actor_user=None, ip: str | None = None) -> int:
    """Revoke every key of ``keys`` not revoked yet (an earlier revocation time is kept), writing one audit row
    per key revoked; answers how many were revoked."""
    now = timezone.now()
    with transaction.atomic():
        revoked = list(
            EnrollmentKey.objects.filter(pk__in=keys.values("pk"), revoked_at__isnull=True).select_for_update()
        )
        EnrollmentKey.objects.filter(pk__in=[key.pk for key in revoked]).update(revoked_at=now, updated_at=now)
        for key in revoked:
            audit.record(
                action="enrollment_key.revoke",
                actor_user=actor_user,
                target=key,
                details={"keyPrefix": key.key_prefix},
                ip=ip,
            )
    return len(revoked)


def create_enrollment_key(
    *,
    site: Site,
    name: str,
    max_usage: int | None = None,
    expires_at=None,
    created_by=None,
    ip: str | None = None,
    via: str = "api",
) -> tuple[str, EnrollmentKey]:
    """A new key for agents to enroll into ``site``; returns the raw key (to show once) and the stored row."""
    raw, prefix, key_hash = generate_enrollment_key()
    with transaction.atomic():
        key = EnrollmentKey.objects.create(
            org_id=site.org_id,
            site=site,
            name=name,
            key_prefix=prefix,
            key_hash=key_hash,
            max_usage=max_usage,
            expires_at=expires_at,
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
        audit.record(
            action="enrollment_key.create",
            actor_user=created_by,
            target=key,
            details={"keyPrefix": prefix, "siteId": str(site.pk), "maxUsage": max_usage, "via": via},
            ip=ip,
        )
    return raw, key
