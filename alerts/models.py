"""Alerting: rules that watch stored data, the alerts they open, maintenance windows, and the notification outbox.

The contract is the alerts section of the specification; what users read is ``docs/alerts.md``. Rules, channels
and windows are owned by an organization (or, for rules and channels, by a partner: then they apply to every
organization of the partner and need partner scope to write).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from rmm.model_base import TimeStampedModel, UUIDModel, choices_check, time_zone_field

MINUTES_IN_A_DAY = 1440


def _minutes(**kwargs) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(validators=[MinValueValidator(0), MaxValueValidator(MINUTES_IN_A_DAY)], **kwargs)


def _one_owner(name: str) -> models.CheckConstraint:
    """Exactly one of ``partner_id`` / ``org_id`` is set."""
    return models.CheckConstraint(
        condition=models.Q(partner__isnull=False, org__isnull=True) | models.Q(partner__isnull=True, org__isnull=False),
        name=f"%(app_label)s_%(class)s_{name}",
    )


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ChannelKind(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"


class NotificationChannel(TimeStampedModel):
    """Where notifications go: a list of e-mail addresses or a signed webhook.

    ``secret`` signs webhook bodies (HMAC-SHA256). It is write-only: the API and the admin never show it again.
    """

    Kind = ChannelKind

    partner = models.ForeignKey(
        "orgs.Partner", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    org = models.ForeignKey(
        "orgs.Organization",
        verbose_name="organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True, help_text='email: {"to": [addresses]}; webhook: {"url": …}')
    secret = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "notification_channels"
        ordering = ["name", "id"]
        constraints = [
            _one_owner("one_owner"),
            choices_check("kind", ChannelKind),
            models.UniqueConstraint(fields=["org", "name"], name="%(app_label)s_%(class)s_name_per_org"),
            models.UniqueConstraint(fields=["partner", "name"], name="%(app_label)s_%(class)s_name_per_partner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        from alerts.services.channels import validate_channel

        validate_channel(self)


class AlertRule(TimeStampedModel):
    """A condition watched on every device in the rule's scope; the alert opens after ``for_minutes``.

    ``condition`` is one condition of the specification (``metric``, ``offline``, ``disk``, ``rule``,
    ``commandFailed``), validated by ``alerts.conditions``.
    """

    partner = models.ForeignKey(
        "orgs.Partner", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    org = models.ForeignKey(
        "orgs.Organization",
        verbose_name="organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    site = models.ForeignKey("orgs.Site", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    device_group = models.ForeignKey(
        "devices.DeviceGroup", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    condition = models.JSONField()
    for_minutes = _minutes(default=0, verbose_name="for (minutes)")
    resolve_after_minutes = _minutes(default=0, verbose_name="resolve after (minutes)")
    auto_resolve = models.BooleanField(default=True)
    cooldown_minutes = _minutes(default=5, verbose_name="cooldown (minutes)")
    renotify_minutes = models.PositiveIntegerField(
        "re-notify every (minutes)", null=True, blank=True, validators=[MinValueValidator(1)]
    )
    channels = models.ManyToManyField(
        NotificationChannel, blank=True, related_name="rules", db_table="alert_rule_channels"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "alert_rules"
        ordering = ["name", "id"]
        constraints = [
            _one_owner("one_owner"),
            choices_check("severity", Severity),
            models.UniqueConstraint(fields=["org", "name"], name="%(app_label)s_%(class)s_name_per_org"),
            models.UniqueConstraint(fields=["partner", "name"], name="%(app_label)s_%(class)s_name_per_partner"),
            models.CheckConstraint(
                condition=models.Q(org__isnull=False) | models.Q(site__isnull=True, device_group__isnull=True),
                name="%(app_label)s_%(class)s_narrowing_needs_org",
            ),
            models.CheckConstraint(
                condition=models.Q(for_minutes__lte=MINUTES_IN_A_DAY)
                & models.Q(resolve_after_minutes__lte=MINUTES_IN_A_DAY)
                & models.Q(cooldown_minutes__lte=MINUTES_IN_A_DAY),
                name="%(app_label)s_%(class)s_minutes_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from alerts.conditions import validate_rule

        validate_rule(self)


class AlertStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ResolveReason(models.TextChoices):
    CONDITION_CLEARED = "condition_cleared", "Condition cleared"
    MANUAL = "manual", "Manual"
    RULE_CHANGED = "rule_changed", "Rule changed"
    DEVICE_DECOMMISSIONED = "device_decommissioned", "Device decommissioned"


class Alert(UUIDModel):
    """One occurrence of a rule's condition on one device (and subject: a disk's mount point), or a site-level
    "site unreachable" alert (``device`` and ``rule`` empty).

    At most one alert per (rule, device, subject) is open or acknowledged: the partial unique index below, so two
    evaluators racing cannot open it twice.
    """

    Status = AlertStatus
    ResolveReason = ResolveReason

    org = models.ForeignKey(
        "orgs.Organization", verbose_name="organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    site = models.ForeignKey("orgs.Site", on_delete=models.CASCADE, related_name="+", db_index=False)
    device = models.ForeignKey(
        "devices.Device", null=True, blank=True, on_delete=models.CASCADE, db_constraint=False, related_name="alerts"
    )
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    subject = models.CharField(max_length=255, blank=True, default="")
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=255)
    message = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_evaluated_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(null=True, blank=True, help_text="For re-notification.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolve_reason = models.CharField(max_length=30, choices=ResolveReason.choices, null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "alerts"
        ordering = ["-opened_at", "-id"]
        constraints = [
            choices_check("severity", Severity),
            choices_check("status", AlertStatus),
            choices_check("resolve_reason", ResolveReason, nullable=True),
            # Site-level alerts have no rule and no device: NULLS NOT DISTINCT makes (NULL, NULL, site subject)
            # unique too. The subject of a site alert names the site, so one per site.
            models.UniqueConstraint(
                fields=["rule", "device", "subject"],
                condition=models.Q(status__in=["open", "acknowledged"]),
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_one_active",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-opened_at", "-id"], name="alerts_org_opened"),
            models.Index(
                fields=["rule", "status"], condition=models.Q(status__in=["open", "acknowledged"]), name="alerts_active"
            ),
            models.Index(fields=["device", "-opened_at"], name="alerts_device_opened"),
        ]

    def __str__(self) -> str:
        return self.title


class AlertState(models.Model):
    """The evaluator's memory between passes for one (rule, device, subject): since when the condition has held
    (pending, before ``for_minutes``) or has not held (resolving, before ``resolve_after_minutes``). Not an alert;
    owned by ``alerts.services.evaluate`` alone."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, db_constraint=False, related_name="+")
    subject = models.CharField(max_length=255, blank=True, default="")
    holding_since = models.DateTimeField(null=True, blank=True)
    clear_since = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "alert_states"
        constraints = [
            models.UniqueConstraint(fields=["rule", "device", "subject"], name="%(app_label)s_%(class)s_unique"),
        ]

    def __str__(self) -> str:
        # The rule's and the device's names (a query each unless loaded with the row, as the admin's list does).
        return " / ".join(filter(None, [str(self.rule), str(self.device), self.subject]))


class Recurrence(models.TextChoices):
    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"


class MaintenanceWindow(TimeStampedModel):
    """A period (one-off or recurring in local time) when covered devices raise no alerts and/or receive no
    commands. Covers a site, a device group, or (neither) the whole organization."""

    Recurrence = Recurrence

    org = models.ForeignKey(
        "orgs.Organization", verbose_name="organization", on_delete=models.CASCADE, related_name="+"
    )
    site = models.ForeignKey("orgs.Site", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    device_group = models.ForeignKey(
        "devices.DeviceGroup", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=200)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    recurrence = models.CharField(max_length=10, choices=Recurrence.choices, default=Recurrence.NONE)
    weekdays = ArrayField(models.PositiveSmallIntegerField(), default=list, blank=True, help_text="0 = Monday … 6")
    timezone = time_zone_field()
    suppress_alerts = models.BooleanField(default=True)
    suppress_commands = models.BooleanField(default=False)

    class Meta:
        db_table = "maintenance_windows"
        ordering = ["starts_at", "id"]
        constraints = [
            choices_check("recurrence", Recurrence),
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="%(app_label)s_%(class)s_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from alerts.services.windows import validate_window

        validate_window(self)


class NotificationEvent(models.TextChoices):
    OPENED = "alert.opened"
    RESOLVED = "alert.resolved"
    RENOTIFY = "alert.renotify"
    DIGEST = "alert.digest"
    TEST = "channel.test"


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class Notification(UUIDModel):
    """One message in the outbox, written in the same transaction as the alert change that causes it; its id is
    the delivery id the receiver sees (``X-RMM-Delivery``)."""

    Event = NotificationEvent
    Status = NotificationStatus

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    # The channel's owner, copied so the outbox is scoped like its channel without a join.
    partner = models.ForeignKey(
        "orgs.Partner", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    org = models.ForeignKey(
        "orgs.Organization",
        verbose_name="organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications")
    event = models.CharField(max_length=20, choices=Event.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "notifications"
        ordering = ["-created_at", "-id"]
        constraints = [choices_check("event", NotificationEvent), choices_check("status", NotificationStatus)]
        indexes = [
            # The deliverer's queue: due rows, oldest first per channel. Partial, so it stays as small as the queue.
            models.Index(
                fields=["channel", "created_at"],
                condition=models.Q(status__in=["pending", "failed"]),
                name="notifications_due",
            ),
            models.Index(fields=["channel", "-created_at", "-id"], name="notifications_channel_created"),
            models.Index(fields=["alert"], name="notifications_alert"),
        ]

    def __str__(self) -> str:
        # The channel's name (a query unless loaded with the row, as the admin's list does).
        return f"{self.event} → {self.channel.name} ({self.status})"
