"""The script library: scripts with immutable versions, the runs that send them to devices, and their schedules.

The contract is the scripts section of the specification; what users read is ``docs/scripts.md``. A script belongs
to an organization or (a partner's library, usable in all its organizations) to a partner. A run is a batch of
ordinary ``script`` commands (``device_commands.script_run_id`` points back at it): its progress and per-device
results are read from those commands, never copied.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from rmm.model_base import TimeStampedModel, UUIDModel, choices_check, time_zone_field

MAX_SCRIPT_BYTES = 256 * 1024
MAX_TIMEOUT_SECONDS = 86400
MAX_RUN_DEVICES = 10_000


class ScriptLanguage(models.TextChoices):
    POWERSHELL = "powershell", "PowerShell"
    CMD = "cmd", "cmd"
    BASH = "bash", "bash"
    SH = "sh", "sh"
    PYTHON = "python", "Python"


class ScriptOsType(models.TextChoices):
    """The OS types of ``devices.Device.os_type``."""

    WINDOWS = "windows", "Windows"
    MACOS = "macos", "macOS"
    LINUX = "linux", "Linux"


def _default_exit_codes() -> list[int]:
    return [0]


def _default_os_types() -> list[str]:
    return []


class Script(TimeStampedModel):
    """A script of the library. ``version`` is bumped (and a ``ScriptVersion`` written) on every change of what
    runs: content, parameters, language, timeout or success exit codes. Scripts are archived, never deleted."""

    Language = ScriptLanguage
    OsType = ScriptOsType

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
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=20, choices=Language.choices)
    os_types = ArrayField(
        models.CharField(max_length=10, choices=OsType.choices), default=_default_os_types, verbose_name="OS types"
    )
    content = models.TextField()
    parameters = models.JSONField(default=list, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        "timeout (seconds)", default=300, validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)]
    )
    success_exit_codes = ArrayField(models.IntegerField(), default=_default_exit_codes)
    version = models.PositiveIntegerField(default=1)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "scripts"
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(partner__isnull=False, org__isnull=True)
                | models.Q(partner__isnull=True, org__isnull=False),
                name="%(app_label)s_%(class)s_one_owner",
            ),
            choices_check("language", ScriptLanguage),
            models.CheckConstraint(
                condition=models.Q(os_types__contained_by=ScriptOsType.values),
                name="%(app_label)s_%(class)s_os_types_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=MAX_TIMEOUT_SECONDS),
                name="%(app_label)s_%(class)s_timeout_range",
            ),
            models.UniqueConstraint(fields=["org", "name"], name="%(app_label)s_%(class)s_name_per_org"),
            models.UniqueConstraint(fields=["partner", "name"], name="%(app_label)s_%(class)s_name_per_partner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    def clean(self) -> None:
        from scripts.services.library import clean_script

        clean_script(self)


class ScriptVersion(UUIDModel):
    """What a script was at one version; never changed once written. Every run names the version it ran."""

    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="versions", db_index=False)
    version = models.PositiveIntegerField()
    content = models.TextField()
    language = models.CharField(max_length=20, choices=ScriptLanguage.choices)
    parameters = models.JSONField(default=list, blank=True)
    timeout_seconds = models.PositiveIntegerField("timeout (seconds)")
    success_exit_codes = ArrayField(models.IntegerField(), default=_default_exit_codes)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "script_versions"
        ordering = ["script", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["script", "version"], name="%(app_label)s_%(class)s_one_per_number"),
            choices_check("language", ScriptLanguage),
        ]

    def __str__(self) -> str:
        # The script's name (a query unless loaded with the row, as the admin's lists and inline do).
        return f"{self.script.name} v{self.version}"


class ScriptRunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"  # from the admin
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API"


class ScriptRun(UUIDModel):
    """One run of one script version on one organization's devices: a ``script`` command per targeted device.

    ``skipped`` lists the targeted devices that got no command, ``[{"deviceId", "reason"}]`` with reason
    ``os_not_supported``, ``decommissioned`` or ``quarantined``; ``queued`` counts the commands.
    """

    Trigger = ScriptRunTrigger

    org = models.ForeignKey(
        "orgs.Organization", verbose_name="organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="runs")
    version = models.PositiveIntegerField()
    parameters = models.JSONField(default=dict, blank=True)
    target = models.JSONField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    schedule = models.ForeignKey(
        "scripts.ScriptSchedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queued = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "script_runs"
        ordering = ["-created_at", "-id"]
        constraints = [choices_check("trigger", ScriptRunTrigger)]
        indexes = [
            models.Index(fields=["org", "-created_at", "-id"], name="script_runs_org_created"),
            models.Index(fields=["schedule", "-created_at"], name="script_runs_schedule"),
        ]

    def __str__(self) -> str:
        # The script's name (a query unless loaded with the row, as the admin's lists do).
        return f"{self.script.name} v{self.version} ({self.created_at:%Y-%m-%d %H:%M})"


class ScriptSchedule(TimeStampedModel):
    """Runs a script's current version at every slot of ``cron`` in ``timezone``, on a group's members at firing
    time, a site, or (neither set) the whole organization. ``next_run_at`` is the next slot to fire; the scheduler
    fires a due schedule once (a missed slot after downtime fires once, then it moves to the next future slot)."""

    org = models.ForeignKey(
        "orgs.Organization", verbose_name="organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    device_group = models.ForeignKey(
        "devices.DeviceGroup", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    site = models.ForeignKey("orgs.Site", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    cron = models.CharField(max_length=100)
    timezone = time_zone_field()
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "script_schedules"
        ordering = ["org", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(device_group__isnull=True) | models.Q(site__isnull=True),
                name="%(app_label)s_%(class)s_one_target",
            ),
        ]
        indexes = [
            # The scheduler's question every tick: which enabled schedules are due.
            models.Index(fields=["next_run_at"], condition=models.Q(enabled=True), name="script_schedules_due"),
            models.Index(fields=["org", "name", "id"], name="script_schedules_org_name"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.cron} ({self.timezone})"

    def clean(self) -> None:
        from scripts.services.schedules import clean_schedule

        clean_schedule(self)
