"""Tenancy: partner → organization → site, and the enrollment keys agents use to join a site."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from rmm.model_base import TimeStampedModel, choices_check, time_zone_field


class PartnerStatus(models.TextChoices):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CHURNED = "churned"
    OFFBOARDING = "offboarding"


class PartnerType(models.TextChoices):
    MSP = "msp", "MSP"
    ENTERPRISE = "enterprise"
    INTERNAL = "internal"


class Partner(TimeStampedModel):
    """An MSP, an enterprise IT department, or the installation's own internal tenant: the top of the tree."""

    Type = PartnerType
    Status = PartnerStatus

    INACTIVE_STATUSES = (Status.SUSPENDED, Status.CHURNED, Status.OFFBOARDING)

    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=100, unique=True)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.MSP)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    max_organizations = models.PositiveIntegerField(null=True, blank=True, help_text="Empty means unlimited.")
    max_devices = models.PositiveIntegerField(null=True, blank=True, help_text="Empty means unlimited.")
    timezone = time_zone_field()
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "partners"
        ordering = ["name"]
        constraints = [choices_check("type", PartnerType), choices_check("status", PartnerStatus)]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status not in self.INACTIVE_STATUSES


class OrganizationStatus(models.TextChoices):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TRIAL = "trial"
    CHURNED = "churned"
    OFFBOARDING = "offboarding"


class OrganizationType(models.TextChoices):
    CUSTOMER = "customer"
    INTERNAL = "internal"


class Organization(TimeStampedModel):
    """A partner's customer (or the partner's own internal IT): the unit every device and scope belongs to."""

    Type = OrganizationType
    Status = OrganizationStatus

    INACTIVE_STATUSES = (Status.SUSPENDED, Status.CHURNED, Status.OFFBOARDING)

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="organizations")
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=100)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.CUSTOMER)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    max_devices = models.PositiveIntegerField(null=True, blank=True, help_text="Empty means unlimited.")
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "organizations"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "slug"], name="%(app_label)s_%(class)s_slug_per_partner"),
            choices_check("type", OrganizationType),
            choices_check("status", OrganizationStatus),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        """False when this organization or its partner is suspended, churned or offboarding."""
        return self.status not in self.INACTIVE_STATUSES and self.partner.is_active


class Site(TimeStampedModel):
    """A location or network of one organization; every device sits in exactly one site."""

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites", verbose_name="organization")
    name = models.CharField(max_length=255)
    timezone = time_zone_field()
    address = models.JSONField(default=dict, blank=True)
    contact = models.JSONField(default=dict, blank=True)
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "sites"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="%(app_label)s_%(class)s_name_per_org"),
            # The target of the composite foreign keys (site_id, org_id) that keep a device, a key or a group
            # from pointing at a site of another organization (see the migration that adds them).
            models.UniqueConstraint(fields=["id", "org"], name="%(app_label)s_%(class)s_id_org"),
        ]

    def __str__(self) -> str:
        return f"{self.org} / {self.name}"


class EnrollmentKey(TimeStampedModel):
    """A shared secret an agent presents once to enroll into a site.

    Only an HMAC-SHA-256 of the raw key (keyed with the server secret) is stored; ``key_prefix`` (the first 8
    characters) is for display and lookup.
    """

    org = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="enrollment_keys", verbose_name="organization"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="enrollment_keys")
    name = models.CharField(max_length=255)
    key_prefix = models.CharField(max_length=8, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    usage_count = models.PositiveIntegerField("uses", default=0)
    max_usage = models.PositiveIntegerField("maximum uses", null=True, blank=True, help_text="Empty means unlimited.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty means never.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "enrollment_keys"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_usage__isnull=True) | models.Q(usage_count__lte=models.F("max_usage")),
                name="%(app_label)s_%(class)s_usage_within_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"
