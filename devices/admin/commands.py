"""Commands queued to devices: the fleet-wide list, queueing one ("Add"), a command's page with its readable result,
cancel and run again.

Everything a person does here goes through ``devices.services.commands`` as the API does (``queue_command``,
``cancel_command``, ``rerun_command``: the same checks, the same audit rows) and needs ``devices:execute`` on the
device, the permission of ``POST /api/v1/devices/{id}/commands`` and ``POST /api/v1/commands/{id}/cancel``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import IntegerField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from devices.admin.command_results import command_output, command_payload, command_title
from devices.admin.common import (
    COMMAND_PERMISSION,
    DeviceRowAdmin,
)
from devices.models import (
    Device,
    DeviceCommand,
)
from devices.services import commands as command_service
from rmm import authz
from rmm.admin import (
    DomainErrorsAsMessagesMixin,
    InputCheckingChangeList,
    add_domain_error,
    domain_error_message,
    refuse_unless_allowed,
)
from rmm.console import MISSING, status_badge, time_ago
from rmm.domain_errors import DomainError
from rmm.net import client_ip

# The add form's fields that carry a payload or the expiry, by the name check_command gives their problems.
PROBLEM_FIELDS = {
    "payload.language": "language",
    "payload.content": "content",
    "payload.timeoutSeconds": "timeout_seconds",
    "payload.env": "content",
    "payload.version": "version",
    "expiresInSeconds": "expires_in_minutes",
}
# Shown with the command page while the agent has not answered: it reloads itself (no script needed).
REFRESH_SECONDS_WHILE_WAITING = 10


class CommandFields(forms.Form):
    """A command's type and, for the types that take one, its payload and expiry: the fields shared by queueing one
    command ("Add" on the commands list) and a command for a whole group ("Run on group"). The payload is checked
    by ``command_service.check_command``, the check ``queue_command``, ``queue_group_commands`` and the API run;
    its problems are shown on the fields they concern."""

    type = forms.ChoiceField(choices=[("", "---------"), *DeviceCommand.Type.choices])
    language = forms.ChoiceField(
        required=False,
        choices=[("", "—"), *((language, language) for language in command_service.SCRIPT_LANGUAGES)],
        help_text="Script commands: the interpreter the agent runs the text with.",
    )
    content = forms.CharField(
        required=False,
        strip=False,
        label="Script",
        widget=forms.Textarea(attrs={"rows": 14, "cols": 100, "spellcheck": "false", "class": "command-script"}),
        help_text="Script commands: the text to run. For a script of the library, use its “Run on…” instead.",
    )
    timeout_seconds = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=command_service.MAX_SCRIPT_TIMEOUT_SECONDS,
        label="Timeout (seconds)",
        help_text="Script commands: how long the agent lets it run (default: the agent's).",
    )
    version = forms.CharField(
        required=False, max_length=20, label="Agent version", help_text="Update commands: the version to install."
    )
    expires_in_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        label="Expires after (minutes)",
        help_text="A command the agent has not fetched by then expires unrun (default: the server's).",
    )

    def payload(self) -> dict[str, Any]:
        """The payload of the chosen type from the fields filled in (the other types' fields are ignored)."""
        data = self.cleaned_data
        if data.get("type") == DeviceCommand.Type.SCRIPT:
            payload: dict[str, Any] = {"language": data.get("language") or None, "content": data.get("content") or ""}
            if data.get("timeout_seconds") is not None:
                payload["timeoutSeconds"] = data["timeout_seconds"]
            return payload
        if data.get("type") == DeviceCommand.Type.UPDATE:
            return {"version": data.get("version") or ""}
        return {}

    def expires_in_seconds(self) -> int | None:
        minutes = self.cleaned_data.get("expires_in_minutes")
        return None if minutes is None else minutes * 60

    def clean(self):
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            command_service.check_command(
                type=cleaned["type"], payload=self.payload(), expires_in_seconds=self.expires_in_seconds()
            )
        except DomainError as error:
            add_domain_error(self, error, field_names=PROBLEM_FIELDS)
        return cleaned


class QueueCommandForm(CommandFields, forms.ModelForm):
    """Queue one command: the device (its autocomplete offers the devices the person may run commands on), then
    the command's fields."""

    class Meta:
        model = DeviceCommand
        fields = ("device", "type")


class CommandChangeList(InputCheckingChangeList):
    """The list reads neither payloads (a script's text, up to 1 MiB) nor results: only the exit code."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer("payload", "result").annotate(
            exit_code_reported=Cast(KT("result__exitCode"), IntegerField())
        )


@admin.register(DeviceCommand)
class DeviceCommandAdmin(DomainErrorsAsMessagesMixin, DeviceRowAdmin):
    """Commands queued for agents and what they reported back. People who may run commands (``devices:execute``
    somewhere) queue one here ("Add"), cancel pending ones and run any again, as in the API."""

    actions = ("cancel", "rerun")
    choice_permissions = {"device": COMMAND_PERMISSION}
    autocomplete_fields = ("device",)
    list_display = ("command", "hostname", "status_label", "created", "exit_code", "created_by", "org")
    list_display_links = ("command",)
    list_filter = ("status", "type", *DeviceRowAdmin.list_filter)
    list_select_related = ("device", "org", "created_by")
    search_fields = ("device__hostname", "=device__agent_id")
    # Newest first by primary key (a time-ordered UUIDv7): an index scan. No index serves "-created_at" across
    # organizations, so that order would sort the whole table.
    ordering = ("-pk",)
    fields = (
        "device_link",
        "org",
        "type",
        "output",
        "what_ran",
        "script_run_link",
        "created_by",
        "created_at",
        "sent_at",
        "completed_at",
        "expires_at",
        "updated_at",
    )
    add_fieldsets = (
        (None, {"fields": ("device", "type", "expires_in_minutes")}),
        ("Script", {"classes": ("command-fields-script",), "fields": ("language", "content", "timeout_seconds")}),
        ("Update", {"classes": ("command-fields-update",), "fields": ("version",)}),
    )

    # Who may do what ---------------------------------------------------------------------------------------------

    def has_add_permission(self, request, obj=None):
        return authz.holds_anywhere(request.user, COMMAND_PERMISSION)

    def has_cancel_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, COMMAND_PERMISSION)

    def has_rerun_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, COMMAND_PERMISSION)

    def field_choices(self, request, db_field, queryset=None):
        choices = super().field_choices(request, db_field, queryset)
        if db_field.name == "device":
            # A decommissioned device runs nothing (queue_command refuses it): not offered.
            choices = choices.exclude(status=Device.Status.DECOMMISSIONED)
        return choices

    # Pages -------------------------------------------------------------------------------------------------------

    def get_changelist(self, request, **kwargs):
        return CommandChangeList

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device", "org", "created_by")

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = QueueCommandForm
            kwargs["fields"] = ("device", "type")
        return super().get_form(request, obj, change, **kwargs)

    def get_urls(self):
        cancel = self.admin_site.admin_view(self.cancel_view)
        rerun = self.admin_site.admin_view(self.rerun_view)
        return [
            path("<uuid:object_id>/cancel/", cancel, name="devices_devicecommand_cancel"),
            path("<uuid:object_id>/rerun/", rerun, name="devices_devicecommand_rerun"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "title": "Queue a command",
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        command = self.get_object(request, object_id)
        context: dict[str, Any] = {**(extra_context or {})}
        if command is not None:
            may_execute = authz.can(request.user, COMMAND_PERMISSION, command)
            context = {
                **context,
                "title": command_title(command),
                "subtitle": None,
                "command_title": command_title(command),
                "may_cancel": may_execute and command.status == DeviceCommand.Status.PENDING,
                "may_rerun": may_execute and command.device.status != Device.Status.DECOMMISSIONED,
                "refresh_seconds": (
                    REFRESH_SECONDS_WHILE_WAITING
                    if command.status in (DeviceCommand.Status.PENDING, DeviceCommand.Status.SENT)
                    else None
                ),
            }
        return super().change_view(request, object_id, form_url, context)

    # Writes ------------------------------------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        if change:
            raise PermissionDenied("A command is never edited: cancel it, or run it again.")
        device = form.cleaned_data["device"]
        if not authz.can(request.user, COMMAND_PERMISSION, device):
            raise PermissionDenied
        command = command_service.queue_command(
            device=device,
            type=form.cleaned_data["type"],
            payload=form.payload(),
            created_by=request.user,
            expires_in_seconds=form.expires_in_seconds(),
            ip=client_ip(request),
        )
        obj.pk = command.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # a command has no related rows to save; queue_command wrote everything

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"Queued: {command_title(obj)}. Its agent picks it up at its next heartbeat.")
        return HttpResponseRedirect(reverse("admin:devices_devicecommand_change", args=[obj.pk]))

    @admin.action(description="Cancel selected pending commands", permissions=["cancel"])
    def cancel(self, request, queryset):
        commands = list(queryset)
        refuse_unless_allowed(request, COMMAND_PERMISSION, commands)
        for command in commands:
            command_service.cancel_command(command=command, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{len(commands)} commands cancelled.")

    @admin.action(description="Run selected commands again", permissions=["rerun"])
    def rerun(self, request, queryset):
        """Queue each selected command again (``rerun_command``); one refused (a decommissioned device) does not
        undo the others, and every refusal is reported."""
        commands = list(queryset.select_related("device"))
        refuse_unless_allowed(request, COMMAND_PERMISSION, commands)
        queued, refused = 0, []
        for command in commands:
            try:
                with transaction.atomic():
                    command_service.rerun_command(command=command, actor=request.user, ip=client_ip(request))
            except DomainError as error:
                refused.append(f"{command_title(command)}: {domain_error_message(error)}")
            else:
                queued += 1
        if queued:
            self.message_user(request, f"{queued} command{'' if queued == 1 else 's'} queued again.", messages.SUCCESS)
        for problem in refused:
            self.message_user(request, f"Not queued: {problem}", messages.WARNING)

    def cancel_view(self, request, object_id):
        """POST: cancel this pending command (the command page's and the device page's "Cancel" button)."""
        return self._one_command_view(request, object_id, "cancel")

    def rerun_view(self, request, object_id):
        """POST: queue this command again, then show the new one (or go back to ``next``)."""
        return self._one_command_view(request, object_id, "rerun")

    def _one_command_view(self, request, object_id, verb: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        command = self.get_object(request, str(object_id))
        if command is None:
            raise Http404("No such command in your reach.")
        if not authz.can(request.user, COMMAND_PERMISSION, command):
            raise PermissionDenied
        try:
            with transaction.atomic():
                if verb == "cancel":
                    done = command_service.cancel_command(command=command, actor=request.user, ip=client_ip(request))
                    self.message_user(request, f"Cancelled: {command_title(command)}.", messages.SUCCESS)
                else:
                    done = command_service.rerun_command(command=command, actor=request.user, ip=client_ip(request))
                    self.message_user(request, f"Queued again: {command_title(command)}.", messages.SUCCESS)
        except DomainError as error:
            self.message_user(request, f"Not done: {domain_error_message(error)}", messages.WARNING)
            done = command
        after = request.POST.get("next", "")
        if after and url_has_allowed_host_and_scheme(after, {request.get_host()}, request.is_secure()):
            return HttpResponseRedirect(after)
        return HttpResponseRedirect(reverse("admin:devices_devicecommand_change", args=[done.pk]))

    # Columns and fields ------------------------------------------------------------------------------------------

    @admin.display(description="command", ordering="type")
    def command(self, obj: DeviceCommand) -> str:
        return obj.get_type_display()

    @admin.display(description="device", ordering="device__hostname")
    def hostname(self, obj: DeviceCommand):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:devices_device_change", args=[obj.device_id]), obj.device.hostname
        )

    @admin.display(description="device")
    def device_link(self, obj: DeviceCommand):
        return self.hostname(obj)

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: DeviceCommand):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="queued", ordering="pk")
    def created(self, obj: DeviceCommand):
        return time_ago(obj.created_at)

    @admin.display(description="exit code")
    def exit_code(self, obj: DeviceCommand):
        code = getattr(obj, "exit_code_reported", None)
        return MISSING if code is None else code

    @admin.display(description="result")
    def output(self, obj: DeviceCommand):
        return command_output(obj)

    @admin.display(description="what ran")
    def what_ran(self, obj: DeviceCommand):
        return command_payload(obj)

    @admin.display(description="script run")
    def script_run_link(self, obj: DeviceCommand):
        if obj.script_run_id is None:
            return MISSING
        url = reverse("admin:scripts_scriptrun_change", args=[obj.script_run_id])
        return format_html('<a href="{}">the run this command belongs to</a>', url)
