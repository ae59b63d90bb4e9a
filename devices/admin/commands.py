"""Commands queued to devices: the fleet-wide list, cancel."""

from __future__ import annotations

from django.contrib import admin

from devices.admin.common import (
    COMMAND_PERMISSION,
    DeviceRowAdmin,
)
from devices.models import (
    DeviceCommand,
)
from devices.services import commands as command_service
from rmm import authz
from rmm.admin import (
    DomainErrorsAsMessagesMixin,
    refuse_unless_allowed,
)
from rmm.net import client_ip


@admin.register(DeviceCommand)
class DeviceCommandAdmin(DomainErrorsAsMessagesMixin, DeviceRowAdmin):
    """Commands queued for agents and what they reported back. Commands are queued through the API; pending ones
    can be cancelled here as there (``devices.services.commands.cancel_command``, ``devices:execute``)."""

    actions = ("cancel",)

    def has_cancel_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, COMMAND_PERMISSION)

    @admin.action(description="Cancel selected pending commands", permissions=["cancel"])
    def cancel(self, request, queryset):
        commands = list(queryset)
        refuse_unless_allowed(request, COMMAND_PERMISSION, commands)
        for command in commands:
            command_service.cancel_command(command=command, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{len(commands)} commands cancelled.")

    list_display = ("created_at", "type", "status", "device", "org", "created_by", "sent_at", "completed_at")
    list_filter = ("status", "type", *DeviceRowAdmin.list_filter)
    list_select_related = ("device", "org", "created_by")
    search_fields = ("device__hostname", "=device__agent_id")
    # Newest first by primary key (a time-ordered UUIDv7): an index scan. No index serves "-created_at" across
    # organizations, so that order would sort the whole table.
    ordering = ("-pk",)
    fields = (
        "device",
        "org",
        "type",
        "status",
        "payload",
        "result",
        "created_by",
        "created_at",
        "sent_at",
        "completed_at",
        "expires_at",
        "updated_at",
    )
