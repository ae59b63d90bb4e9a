"""The managed endpoint."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper

from rmm.model_base import TimeStampedModel, choices_check


class DeviceStatus(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    DECOMMISSIONED = "decommissioned"
    QUARANTINED = "quarantined"


class DeviceOsType(models.TextChoices):
    WINDOWS = "windows", "Windows"
    MACOS = "macos", "macOS"
    LINUX = "linux", "Linux"


class Device(TimeStampedModel):
    """An endpoint running our agent, enrolled into one site of one organization.

    ``site`` must belong to ``org``: a composite foreign key (site_id, org_id) → sites(id, org_id) makes the
    database refuse anything else. Only SHA-256 hashes of agent tokens are stored.
    """

    OsType = DeviceOsType
    Status = DeviceStatus

    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.PROTECT,
        related_name="devices",
        db_index=False,
        verbose_name="organization",
    )
    site = models.ForeignKey("orgs.Site", on_delete=models.PROTECT, related_name="devices")
    agent_id = models.CharField("agent ID", max_length=64, unique=True)
    # NULL (not "") for devices created before tokens existed, as the spec says.
    agent_token_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    agent_token_issued_at = models.DateTimeField("agent token issued at", null=True, blank=True, editable=False)
    previous_token_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    previous_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    hostname = models.CharField(max_length=255)
    display_name = models.CharField(max_length=255, blank=True)
    os_type = models.CharField("OS type", max_length=10, choices=OsType.choices)
    os_version = models.CharField("OS version", max_length=100, blank=True)
    os_build = models.CharField("OS build", max_length=100, blank=True)
    architecture = models.CharField(max_length=20, blank=True)
    agent_version = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONLINE)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_ip = models.CharField("last seen IP", max_length=45, blank=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    enrolled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the device enrolled itself with an enrollment key.",
    )
    tags = ArrayField(models.TextField(), default=list, blank=True)
    mtls_cert_serial_number = models.CharField("client cert serial number (mTLS)", max_length=128, blank=True)
    mtls_cert_expires_at = models.DateTimeField("client cert expires at (mTLS)", null=True, blank=True)
    mtls_cert_issued_at = models.DateTimeField("client cert issued at (mTLS)", null=True, blank=True)
    mtls_cert_cf_id = models.CharField("client cert ID at Cloudflare (mTLS)", max_length=128, blank=True)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantined_reason = models.CharField("quarantine reason", max_length=255, blank=True)

    class Meta:
        db_table = "devices"
        ordering = ["hostname", "id"]
        constraints = [
            choices_check("os_type", DeviceOsType),
            choices_check("status", DeviceStatus),
            # Target of the composite foreign keys (device_id, org_id) from every child table, which keep a
            # child row's denormalised org_id equal to its device's.
            models.UniqueConstraint(fields=["id", "org"], name="%(app_label)s_%(class)s_id_org"),
        ]
        indexes = [
            models.Index(fields=["org", "status"], name="devices_org_status"),
            models.Index(fields=["org", "-last_seen_at"], name="devices_org_last_seen"),
            GinIndex(fields=["tags"], name="devices_tags_gin"),
            # Keyset pagination of the device list in its default order.
            models.Index(fields=["hostname", "id"], name="devices_hostname_id"),
            models.Index(fields=["org", "hostname", "id"], name="devices_org_hostname_id"),
            # The -lastSeenAt list order (DESC NULLS LAST, then id): without it that page sorted the whole fleet,
            # p95 84 ms at 100,000 devices (bench/RESULTS.md).
            models.Index(F("last_seen_at").desc(nulls_last=True), F("id").desc(), name="devices_last_seen_id"),
            # search: trigram GIN on UPPER(...), the expression Django's icontains compares (filter_search).
            GinIndex(OpClass(Upper("hostname"), name="gin_trgm_ops"), name="devices_hostname_trgm"),
            GinIndex(OpClass(Upper("display_name"), name="gin_trgm_ops"), name="devices_display_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.hostname
