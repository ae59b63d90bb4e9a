"""Tenancy operations: organizations within their partner's limit, and the life of enrollment keys.

These functions are the only writers of what they do, for every door (the API, the admin, management commands,
the demo data): each checks its rules, writes, and records its audit row. Refusals are ``rmm.domain_errors``.

The partner's organization limit holds for everyone, operators included: the limit is the partner's contract, and
an operator who means to exceed it raises ``max_organizations`` first (an audited ``partner.update``), instead of
the admin silently creating one organization more than the partner's page says it may have.

An enrollment key is shown once, when it is made; the database keeps only ``key_prefix`` (its first 8 characters,
to tell keys apart in lists) and ``key_hash`` (see ``devices.services.credentials``, which mints and hashes them).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.services import credentials
from orgs.models import EnrollmentKey, Organization, Partner, Site
from rmm.domain_errors import Conflict, LimitReached


def check_organization_limit(partner: Partner) -> None:
    """``LimitReached`` (``organization_limit_reached``) when ``partner`` already has its maximum of organizations.
    Without a lock: for a form's early answer; :func:`create_organization` checks again under the partner's lock."""
    limit = partner.max_organizations
    if limit is not None and Organization.objects.filter(partner=partner).count() >= limit:
        raise LimitReached(
            f"Partner {partner.name} already has its maximum of {limit} organizations.",
            code="organization_limit_reached",
        )


def create_organization(
    *,
    partner: Partner,
    name: str,
    slug: str,
    type: str = Organization.Type.CUSTOMER,
    status: str = Organization.Status.ACTIVE,
    max_devices: int | None = None,
    settings: dict[str, Any] | None = None,
    actor=None,
    ip: str | None = None,
    via: str = "api",
) -> Organization:
    """A new organization of ``partner``, within the partner's ``max_organizations``.

    The partner's row is locked while its organizations are counted and the new one is inserted, so two creations
    racing at the limit make one organization, not two (the loser gets ``LimitReached``)."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        check_organization_limit(locked)
        organization = Organization.objects.create(
            partner=locked,
            name=name,
            slug=slug,
            type=type,
            status=status,
            max_devices=max_devices,
            settings={} if settings is None else settings,
        )
        audit.record(
            action=AuditAction.ORGANIZATION_CREATE,
            actor_user=actor,
            target=organization,
            details={"partnerId": str(locked.pk), "via": via},
            ip=ip,
        )
    return organization


def delete_organization(*, organization: Organization, actor=None, ip: str | None = None, via: str = "api") -> None:
    """Delete an empty organization; ``Conflict`` (``organization_not_empty``) while it has devices or sites."""
    with transaction.atomic():
        locked = Organization.objects.select_for_update().get(pk=organization.pk)
        if locked.devices.exists() or locked.sites.exists():
            raise Conflict("Remove the organization's devices and sites first.", code="organization_not_empty")
        audit.record(
            action=AuditAction.ORGANIZATION_DELETE,
            actor_user=actor,
            target=locked,
            details={"object": str(locked), "via": via},
            ip=ip,
        )
        locked.delete()


def delete_site(*, site: Site, actor=None, ip: str | None = None, via: str = "api") -> None:
    """Delete a site without devices; ``Conflict`` (``site_not_empty``) while devices sit in it. Its enrollment keys
    and groups go with it."""
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.devices.exists():
            raise Conflict("Move or decommission the site's devices first.", code="site_not_empty")
        audit.record(
            action=AuditAction.SITE_DELETE,
            actor_user=actor,
            target=locked,
            details={"object": str(locked), "via": via},
            ip=ip,
        )
        locked.delete()


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
