"""Work queued by technicians for an agent to run."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from rmm.model_base import UUIDModel, choices_check


class DeviceCommandStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class DeviceCommandType(models.TextChoices):
    SCRIPT = "script"
    REBOOT = "reboot"
    SHUTDOWN = "shutdown"
    UPDATE = "update"
    REFRESH_INVENTORY = "refresh_inventory", "Refresh inventory"


class DeviceCommand(UUIDModel):
    """One command for one device: queued ``pending``, claimed ``sent`` by the agent, then finished.

    ``result`` holds what the agent reported: ``{exitCode, stdout, stderr, durationMs, error}``.
    """

    Type = DeviceCommandType
    Status = DeviceCommandStatus

    FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED, Status.EXPIRED)

    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, db_constraint=False, related_name="commands")
    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )
    type = models.CharField(max_length=30, choices=Type.choices)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    # The script run this command belongs to (scripts/): a run's progress and results are read from its commands.
    script_run = models.ForeignKey(
        "scripts.ScriptRun",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="commands",
    )

    class Meta:
        db_table = "device_commands"
        ordering = ["-created_at"]
        constraints = [choices_check("type", DeviceCommandType), choices_check("status", DeviceCommandStatus)]
        indexes = [
            # The agent's claim: its oldest pending commands. Partial, so it stays as small as the queue.
            models.Index(
                fields=["device", "created_at"],
                condition=models.Q(status="pending"),
                name="device_commands_pending",
            ),
            models.Index(fields=["org", "-created_at"], name="device_commands_org_created"),
            models.Index(fields=["status", "sent_at"], condition=models.Q(status="sent"), name="device_commands_sent"),
            # A script run's results, in the order they were queued (keyset on id).
            models.Index(
                fields=["script_run", "id"],
                condition=models.Q(script_run__isnull=False),
                name="device_commands_script_run",
            ),
        ]

    def __str__(self) -> str:
        # "reboot on host-01": the device's name, never its id (admin titles and breadcrumbs read this). It costs a
        # query unless the device is loaded with the row; lists that show it select it.
        return f"{self.get_type_display().lower()} on {self.device}"
