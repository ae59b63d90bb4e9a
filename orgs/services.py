"""Tenancy operations: making and revoking enrollment keys.

An enrollment key is shown once, when it is made; the database keeps only ``key_prefix`` (its first 8 characters,
to tell keys apart in lists) and ``key_hash`` (see ``devices.services.credentials``, which mints and hashes them).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.services import credentials
from orgs.models import EnrollmentKey, Site


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
                action=AuditAction.ENROLLMENT_KEY_REVOKE,
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
    minted = credentials.mint_enrollment_key()
    with transaction.atomic():
        key = EnrollmentKey.objects.create(
            org_id=site.org_id,
            site=site,
            name=name,
            key_prefix=minted.prefix,
            key_hash=minted.hash,
            max_usage=max_usage,
            expires_at=expires_at,
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
        audit.record(
            action=AuditAction.ENROLLMENT_KEY_CREATE,
            actor_user=created_by,
            target=key,
            details={"keyPrefix": minted.prefix, "siteId": str(site.pk), "maxUsage": max_usage, "via": via},
            ip=ip,
        )
    return minted.raw, key
