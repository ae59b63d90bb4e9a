"""The device page a technician works from (issue 16, point 3), mixed into ``DeviceAdmin``.

Above the device's form: a header (name, status, last seen, OS, agent, organization / site, tags, open alerts),
the actions the person may take on this device, telemetry charts (CPU, RAM, disk, network over 24 h / 7 d / 30 d,
``?range=``, from the rollups through ``devices.services.telemetry.series``, drawn as SVG by
``devices.admin.charts``), the recent commands with their results, and when each inventory section was last
reported.

Each action is a small confirmation page under the device's admin URL (``<id>/actions/<name>/``: GET shows it, POST
does it) that calls the service the API calls, which checks the rule and writes the audit row. An action is
offered, and done, only when ``authz.can`` grants this device the permission the API route needs (``ACTIONS``).
The recent commands are also served alone (``<id>/commands/``) for ``rmm/static/console/device_page.js``, which
refreshes them every few seconds while one is pending or sent; each command can be cancelled or run again
(``<id>/commands/<command id>/cancel|rerun/``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, JSONField, Window
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.db.models.functions import Left, Length
from django.http import Http404, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from alerts.models import Alert, AlertStatus
from devices.admin.charts import Series, legend, line_chart
from devices.admin.command_results import command_output
from devices.admin.commands import PROBLEM_FIELDS, CommandFields
from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from devices.services import commands as command_service
from devices.services import status as device_status
from devices.services import telemetry
from rmm import authz
from rmm.admin import ModelAdminMixinBase, add_domain_error, domain_error_message
from rmm.console import MISSING, severity_label, status_badge, time_ago
from rmm.domain_errors import DomainError
from rmm.net import client_ip
from scripts.admin import RunForm
from scripts.models import Script, ScriptRun
from scripts.services import library

EXECUTE = "devices:execute"
WRITE = "devices:write"
DELETE = "devices:delete"  # decommissioning is DELETE devices/{id} in the API
SCRIPTS_EXECUTE = "scripts:execute"
ALERTS_READ = "alerts:read"

RANGES = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
DEFAULT_RANGE = "24h"
RECENT_COMMANDS = 15
OPEN_ALERTS_SHOWN = 5
# Characters of each output stream shown per command on the page; the command's own page shows everything.
OUTPUT_SHOWN = 4000
# How often device_page.js asks for the recent commands while one is pending or sent.
REFRESH_SECONDS = 4

Status = Device.Status


# --- Actions --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceAction:
    """One action of the device page: its name (console contract), its button, the permission it needs on the
    device (the API route's), and when the button is offered (the service decides again when it is done)."""

    name: str
    label: str
    permission: str
    offered_when: Callable[[Device], bool]
    question: str  # the confirmation page's question, with {device}
    danger: bool = False


def _runs_commands(device: Device) -> bool:
    return device.status != Status.DECOMMISSIONED


ACTIONS: dict[str, DeviceAction] = {
    action.name: action
    for action in (
        DeviceAction("run_script", "Run a script…", EXECUTE, _runs_commands, "Run a library script on {device}"),
        DeviceAction("run_command", "Run a command…", EXECUTE, _runs_commands, "Run a command on {device}"),
        DeviceAction("reboot", "Reboot…", EXECUTE, _runs_commands, "Reboot {device}?", danger=True),
        DeviceAction(
            "quarantine",
            "Quarantine…",
            WRITE,
            lambda d: d.status in device_status.QUARANTINABLE,
            "Quarantine {device}? Its agent is refused (heartbeats excepted) until the device is approved.",
            danger=True,
        ),
        DeviceAction(
            "approve",
            "Approve…",
            WRITE,
            lambda d: d.status == Status.QUARANTINED,
            "Approve {device}? It leaves quarantine and is back in service.",
        ),
        DeviceAction(
            "start_maintenance",
            "Start maintenance…",
            WRITE,
            lambda d: (
                d.status != Status.MAINTENANCE
                and device_status.status_by_hand_problem(current=d.status, new=Status.MAINTENANCE) is None
            ),
            "Put {device} in maintenance?",
        ),
        DeviceAction(
            "end_maintenance",
            "End maintenance…",
            WRITE,
            lambda d: d.status == Status.MAINTENANCE,
            "Take {device} out of maintenance?",
        ),
        DeviceAction(
            "request_token_rotation",
            "Rotate token…",
            WRITE,
            _runs_commands,
            "Ask the agent of {device} to rotate its token at its next heartbeat?",
        ),
        DeviceAction(
            "decommission",
            "Decommission…",
            DELETE,
            _runs_commands,
            "Decommission {device}? This is final: its agent is refused from now on and the device never changes "
            "again (its history stays).",
            danger=True,
        ),
    )
}


def may(user, action: DeviceAction, device: Device) -> bool:
    """May ``user`` take ``action`` on ``device``: the API route's permission on it (and, to run a library script,
    ``scripts:execute`` somewhere: which scripts is the picker's question)."""
    if not authz.can(user, action.permission, device):
        return False
    return action.name != "run_script" or authz.holds_anywhere(user, SCRIPTS_EXECUTE)


def offered_actions(user, device: Device) -> list[DeviceAction]:
    return [action for action in ACTIONS.values() if action.offered_when(device) and may(user, action, device)]


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Recorded with the quarantine and in the audit log.")


DEFAULT_LANGUAGE = {Device.OsType.WINDOWS: "powershell", Device.OsType.MACOS: "zsh", Device.OsType.LINUX: "bash"}


class DeviceScriptRunForm(RunForm):
    """The parameter form of a script's "Run on…" page (``scripts.admin.RunForm``) with its target fixed to one
    device: no organization, group or device list to pick."""

    def __init__(self, *args, device: Device, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = device
        for name in ("org", "group", "devices"):
            del self.fields[name]

    def clean(self):
        cleaned = forms.Form.clean(self) or {}
        cleaned["device_ids"] = [self.device.pk]
        return cleaned


def runnable_scripts(user, device: Device):
    """The library scripts ``user`` may run on ``device``: of its organization or its partner's library, for its
    OS."""
    scripts = library.runnable_scripts(user, orgs=[device.org]).filter(os_types__contains=[device.os_type])
    return scripts.order_by("name", "id")


def _run_summary(run: ScriptRun, script: Script) -> str:
    if run.queued:
        return f"“{script.name}” queued on this device; its result appears under Recent commands."
    return f"“{script.name}” was not queued: the device was skipped ({', '.join(_skip_reasons(run))})."


def _skip_reasons(run: ScriptRun) -> list[str]:
    skipped = run.skipped if isinstance(run.skipped, list) else []
    return [str(entry.get("reason")) for entry in skipped if isinstance(entry, dict)] or ["no reason given"]


# --- What the page shows --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    metric: str
    title: str
    lines: tuple[tuple[str, str, str], ...]  # (name, key of the series' points, CSS class)
    shown_as: Callable[[float], str]
    top: float | None = None


def _percent(value: float) -> str:
    return f"{value:.0f} %"


def _bytes(value: float) -> str:
    return str(filesizeformat(int(value)))


CPU_LINES = (("average", "cpuPercent", "line-average"), ("peak", "cpuPercentMax", "line-peak"))
RAM_LINES = (("average", "ramPercent", "line-average"), ("peak", "ramPercentMax", "line-peak"))
DISK_LINES = (("used", "diskPercent", "line-average"),)
NETWORK_LINES = (("in", "networkInBytes", "line-in"), ("out", "networkOutBytes", "line-out"))
CHARTS = (
    Chart("cpu", "CPU", CPU_LINES, _percent, 100),
    Chart("ram", "RAM", RAM_LINES, _percent, 100),
    Chart("disk", "Disk", DISK_LINES, _percent, 100),
    Chart("network", "Network", NETWORK_LINES, _bytes),
)


def telemetry_charts(device: Device, range_name: str, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The four charts of ``device`` over the range: one query for every metric (``telemetry.series``)."""
    end = now or timezone.now()
    start = end - RANGES[range_name]
    points = telemetry.series(device_id=device.pk, start=start, end=end, bucket=telemetry.choose_bucket(start, end))
    charts = []
    for chart in CHARTS:
        series = [Series(name, css, [(point["ts"], point[key]) for point in points]) for name, key, css in chart.lines]
        charts.append(
            {
                "metric": chart.metric,
                "title": chart.title,
                "svg": line_chart(
                    metric=chart.metric,
                    title=f"{chart.title}, last {range_name}",
                    series=series,
                    start=start,
                    end=end,
                    shown_as=chart.shown_as,
                    top=chart.top,
                ),
                "legend": legend(series),
            }
        )
    return charts


def open_alerts(user, device: Device) -> tuple[int, list[Alert]]:
    """How many alerts of ``device`` are open or acknowledged, and the newest few: one query (the count is a window
    over the same rows). Nothing for a person without ``alerts:read`` there."""
    active = Alert.objects.filter(device_id=device.pk, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED])
    newest = list(
        authz.visible(user, ALERTS_READ, active)
        .annotate(total=Window(Count("id")))
        .order_by("-opened_at", "-id")[:OPEN_ALERTS_SHOWN]
    )
    return (newest[0].total if newest else 0), newest


# (heading, model, column): the sections of the inventory, and the column that says when a row was reported.
# Hardware is rewritten on every upload, so its updated_at is its last report; a kept row of a list keeps the time
# it was first reported as it is (devices.services.ingest), so the newest of them is the list's last change.
INVENTORY_SECTIONS = (
    ("Hardware", DeviceHardware, "updated_at"),
    ("Network interfaces", DeviceNetworkInterface, "updated_at"),
    ("Disks", DeviceDisk, "updated_at"),
    ("Software", DeviceSoftware, "updated_at"),
    ("Registry entries", DeviceRegistryEntry, "collected_at"),
    ("Config entries", DeviceConfigEntry, "collected_at"),
    ("Network connections", DeviceNetworkConnection, "updated_at"),
)


def inventory_reported(device: Device) -> dict[type, dt.datetime | None]:
    """When each inventory section of ``device`` last changed, in one query (each a max over the device's rows)."""
    columns = ", ".join(
        f"(SELECT max({column}) FROM {model._meta.db_table} WHERE device_id = %(device)s)"  # noqa: S608 (constants)
        for _, model, column in INVENTORY_SECTIONS
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}", {"device": device.pk})
        row = cursor.fetchone()
    return {model: moment for (_, model, _), moment in zip(INVENTORY_SECTIONS, row, strict=True)}


def _command_what(command: DeviceCommand) -> str:
    payload = command.payload if isinstance(command.payload, dict) else {}
    if command.type == DeviceCommand.Type.SCRIPT:
        first = next((line.strip() for line in str(payload.get("content") or "").splitlines() if line.strip()), "")
        first = first if len(first) <= 80 else first[:79] + "…"
        return f"{payload.get('language') or 'script'}: {first}" if first else str(payload.get("language") or "")
    if command.type == DeviceCommand.Type.UPDATE:
        return f"to {payload.get('version') or MISSING}"
    return ""


# The streams a script's result may hold megabytes of: read only their first OUTPUT_SHOWN characters and their
# length from the database, never the whole of fifteen results (a page would carry up to 30 MB).
STREAMS = ("stdout", "stderr")
_RESULT_WITHOUT_STREAMS = RawSQL(
    "CASE WHEN jsonb_typeof(device_commands.result) = 'object' "
    "THEN device_commands.result - 'stdout' - 'stderr' ELSE device_commands.result END",
    (),
    output_field=JSONField(),
)


def _with_shown_result(commands):
    """``commands`` (a queryset) reading each result without its streams and the streams' beginnings and lengths."""
    heads = {f"{stream}_head": Left(KT(f"result__{stream}"), OUTPUT_SHOWN) for stream in STREAMS}
    lengths = {f"{stream}_length": Length(KT(f"result__{stream}")) for stream in STREAMS}
    return commands.defer("result").annotate(result_rest=_RESULT_WITHOUT_STREAMS, **heads, **lengths)


def _shown_output(command: DeviceCommand) -> SafeString:
    """The command's result as ``command_results.command_output`` renders it, from the beginnings of its streams,
    saying where they were cut (the command's own page shows them whole)."""
    rest = command.result_rest  # type: ignore[attr-defined]  # annotated by _with_shown_result
    if isinstance(rest, dict):
        for stream in STREAMS:
            head = getattr(command, f"{stream}_head")
            if head is not None:
                rest[stream] = head
    command.result = rest
    cut = [
        (stream, f"{getattr(command, f'{stream}_length'):,}")
        for stream in STREAMS
        if (getattr(command, f"{stream}_length") or 0) > OUTPUT_SHOWN
    ]
    output = command_output(command)
    if not cut:
        return output
    return format_html(
        '{}<p class="command-truncated">Showing the first {} characters of {}. <a href="{}">The whole result</a></p>',
        output,
        f"{OUTPUT_SHOWN:,}",
        " and ".join(f"{length} of {stream}" for stream, length in cut),
        reverse("admin:devices_devicecommand_change", args=[command.pk]),
    )


def recent_commands(user, device: Device) -> list[dict[str, Any]]:
    """The device's newest commands with their results, and what ``user`` may do with each."""
    commands = list(
        _with_shown_result(
            authz.visible(user, "devices:read", DeviceCommand.objects.filter(device_id=device.pk, org_id=device.org_id))
        )
        .select_related("created_by")
        .order_by("-created_at", "-id")[:RECENT_COMMANDS]
    )
    executes = authz.can(user, EXECUTE, device)
    rows = []
    for command in commands:
        urls = {
            verb: reverse("admin:devices_device_command_action", args=[device.pk, command.pk, verb])
            for verb in ("cancel", "rerun")
        }
        rows.append(
            {
                "command": command,
                "what": _command_what(command),
                "queued": time_ago(command.created_at),
                "by": str(command.created_by) if command.created_by_id else "the server",
                "output": _shown_output(command),
                "url": reverse("admin:devices_devicecommand_change", args=[command.pk]),
                "cancel_url": urls["cancel"] if executes and command.status == DeviceCommand.Status.PENDING else None,
                "rerun_url": urls["rerun"] if executes and device.status != Status.DECOMMISSIONED else None,
                "run_url": reverse("admin:scripts_scriptrun_change", args=[command.script_run_id])
                if command.script_run_id
                else None,
            }
        )
    return rows


def commands_context(user, device: Device) -> dict[str, Any]:
    rows = recent_commands(user, device)
    return {
        "device": device,
        "command_rows": rows,
        "commands_active": any(
            row["command"].status in (DeviceCommand.Status.PENDING, DeviceCommand.Status.SENT) for row in rows
        ),
        "all_commands_url": reverse("admin:devices_devicecommand_changelist") + f"?device={device.pk}",
    }


def _header(device: Device) -> dict[str, Any]:
    os_words = " ".join(part for part in (device.get_os_type_display(), device.os_version, device.os_build) if part)
    return {
        "name": str(device),
        "hostname": device.hostname,
        "status": status_badge(device.status, device.get_status_display()),
        "last_seen": time_ago(device.last_seen_at),
        "last_seen_ip": device.last_seen_ip,
        "os": os_words + (f" ({device.architecture})" if device.architecture else ""),
        "agent_version": device.agent_version or MISSING,
        "org": device.org.name,
        "site": device.site.name,
        "tags": device.tags,
    }


def _alert_rows(alerts: list[Alert]) -> list[dict[str, Any]]:
    return [
        {
            "alert": alert,
            "severity": severity_label(alert.severity, alert.get_severity_display()),
            "opened": time_ago(alert.opened_at),
            "url": reverse("admin:alerts_alert_change", args=[alert.pk]),
        }
        for alert in alerts
    ]


# --- The mixin ------------------------------------------------------------------------------------------------------


class DevicePageMixin(ModelAdminMixinBase):
    """The device page: what ``render_change_form`` adds above the form, its fieldsets, and the views of its actions
    and recent commands."""

    change_form_template = "admin/devices/device/change_form.html"

    # The header shows status, OS, agent, contact and tags; the form keeps what a person edits, the rest folded.
    fieldsets = (
        (None, {"fields": ("display_name", "site", "tags")}),
        (
            "Device",
            {
                "classes": ("collapse",),
                "fields": (
                    ("hostname", "agent_id"),
                    ("org", "status"),
                    ("os_type", "os_version", "os_build", "architecture"),
                    "agent_version",
                    ("last_seen_at", "last_seen_ip"),
                ),
            },
        ),
        ("Latest samples", {"classes": ("collapse",), "fields": ("recent_telemetry",)}),
        (
            "Enrollment and credentials",
            {
                "classes": ("collapse",),
                "fields": (
                    "enrolled_at",
                    "enrolled_by",
                    "agent_token_issued_at",
                    "previous_token_expires_at",
                    "mtls_cert_serial_number",
                    "mtls_cert_issued_at",
                    "mtls_cert_expires_at",
                    "mtls_cert_cf_id",
                ),
            },
        ),
        ("Quarantine", {"classes": ("collapse",), "fields": ("quarantined_at", "quarantined_reason")}),
        ("Record", {"classes": ("collapse",), "fields": ("id", "created_at", "updated_at")}),
    )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:object_id>/actions/<str:name>/", view(self.device_action_view), name="devices_device_action"),
            path(
                "<uuid:object_id>/commands/<uuid:command_id>/<str:verb>/",
                view(self.command_action_view),
                name="devices_device_command_action",
            ),
            path("<uuid:object_id>/commands/", view(self.recent_commands_view), name="devices_device_recent_commands"),
            *super().get_urls(),
        ]

    # The page ------------------------------------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            context |= self.device_page_context(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def device_page_context(self, request, device: Device) -> dict[str, Any]:
        user = request.user
        range_name = request.GET.get("range")
        if range_name not in RANGES:
            range_name = DEFAULT_RANGE
        count, alerts = open_alerts(user, device)
        reported = inventory_reported(device)
        page_url = reverse("admin:devices_device_change", args=[device.pk])
        return {
            # Titles and breadcrumbs name the device, never its id.
            "title": str(device),
            "subtitle": device.hostname if device.display_name and device.display_name != device.hostname else None,
            "device_page": {
                "header": _header(device),
                "hardware_reported": reported_words(reported[DeviceHardware]),
                "actions": [
                    {"action": action, "url": reverse("admin:devices_device_action", args=[device.pk, action.name])}
                    for action in offered_actions(user, device)
                ],
                "alert_count": count,
                "alerts": _alert_rows(alerts),
                "alerts_url": reverse("admin:alerts_alert_changelist") + f"?device={device.pk}",
                "range": range_name,
                "ranges": [(name, f"{page_url}?range={name}") for name in RANGES],
                "charts": telemetry_charts(device, range_name),
                "inventory": [
                    {
                        "heading": heading,
                        "reported": reported_words(reported[model]),
                        "anchor": f"{model._meta.model_name}_set-group"
                        if model is not DeviceHardware
                        else "hardware-group",
                    }
                    for heading, model, _ in INVENTORY_SECTIONS
                ],
                "commands_url": reverse("admin:devices_device_recent_commands", args=[device.pk]),
                "refresh_seconds": REFRESH_SECONDS,
            },
            **commands_context(user, device),
        }

    # Views ---------------------------------------------------------------------------------------------------------

    def _device_or_404(self, request, object_id: uuid.UUID) -> Device:
        device = self.get_object(request, str(object_id))  # within the person's devices:read reach
        if device is None:
            raise Http404("No such device.")
        return device

    def _page_context(self, request, device: Device, title: str) -> dict[str, Any]:
        opts = self.model._meta
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "device": device,
            "device_url": reverse("admin:devices_device_change", args=[device.pk]),
        }

    def recent_commands_view(self, request, object_id: uuid.UUID):
        """The recent commands alone, for device_page.js to replace the list with while a command is under way."""
        device = self._device_or_404(request, object_id)
        response = TemplateResponse(
            request, "admin/devices/device/recent_commands.html", commands_context(request.user, device)
        )
        response["Cache-Control"] = "no-store"
        return response

    def device_action_view(self, request, object_id: uuid.UUID, name: str):
        """A confirmation page for one action of the device page: GET shows it, POST does it through the service."""
        device = self._device_or_404(request, object_id)
        action = ACTIONS.get(name)
        if action is None:
            raise Http404("No such action.")
        if not may(request.user, action, device):
            raise PermissionDenied
        context = self._page_context(request, device, action.question.format(device=device))
        context["action"] = action
        done = getattr(self, f"_do_{name}")
        response = done(request, device, context)
        if response is not None:
            return response
        request.current_app = self.admin_site.name
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(request, "admin/devices/device/action.html", context, status=status)

    def _finish(self, request, device: Device, work: Callable[[], str], form=None, field_names=None):
        """Run ``work`` (a service call) in a transaction; its message on success, its refusal on ``form`` when
        there is one (the page is shown again), else as an error message. Answers the redirect, or None."""
        try:
            with transaction.atomic():
                message = work()
        except DomainError as error:
            if form is not None and (error.fields or field_names is not None):
                add_domain_error(form, error, field_names=field_names)
                return None
            self.message_user(request, domain_error_message(error), messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:devices_device_change", args=[device.pk]))

    def _confirm(self, request, device: Device, context, work: Callable[[], str]):
        if request.method != "POST":
            return None
        return self._finish(request, device, work)

    def _do_reboot(self, request, device, context):
        def work() -> str:
            command_service.queue_command(
                device=device,
                type=DeviceCommand.Type.REBOOT,
                payload={},
                created_by=request.user,
                ip=client_ip(request),
            )
            return f"Reboot queued for {device}: its agent picks it up at its next heartbeat."

        return self._confirm(request, device, context, work)

    def _do_approve(self, request, device, context):
        def work() -> str:
            device_status.approve(device=device, actor=request.user, ip=client_ip(request))
            return f"{device} approved: it is back in service."

        return self._confirm(request, device, context, work)

    def _do_start_maintenance(self, request, device, context):
        def work() -> str:
            device_status.update_device(
                device=device, actor=request.user, status=Status.MAINTENANCE, ip=client_ip(request)
            )
            return f"{device} is in maintenance."

        return self._confirm(request, device, context, work)

    def _do_end_maintenance(self, request, device, context):
        def work() -> str:
            device_status.update_device(device=device, actor=request.user, status=Status.ONLINE, ip=client_ip(request))
            return f"{device} is out of maintenance."

        return self._confirm(request, device, context, work)

    def _do_request_token_rotation(self, request, device, context):
        def work() -> str:
            device_status.request_token_rotation(device=device, actor=request.user, ip=client_ip(request))
            return f"The agent of {device} rotates its token at its next heartbeat."

        return self._confirm(request, device, context, work)

    def _do_decommission(self, request, device, context):
        def work() -> str:
            device_status.decommission(device=device, actor=request.user, ip=client_ip(request))
            return f"{device} is decommissioned."

        return self._confirm(request, device, context, work)

    def _do_quarantine(self, request, device, context):
        form = ReasonForm(request.POST if request.method == "POST" else None)
        context["form"] = form
        if request.method != "POST" or not form.is_valid():
            return None

        def work() -> str:
            reason = form.cleaned_data["reason"]
            device_status.quarantine(device=device, reason=reason, actor=request.user, ip=client_ip(request))
            return f"{device} is quarantined."

        return self._finish(request, device, work, form=form)

    def _do_run_command(self, request, device, context):
        if request.method == "POST":
            form = CommandFields(request.POST)
        else:
            form = CommandFields(
                initial={"type": DeviceCommand.Type.SCRIPT, "language": DEFAULT_LANGUAGE.get(device.os_type)}
            )
        context["form"] = form
        if request.method != "POST" or not form.is_valid():
            return None

        def work() -> str:
            command = command_service.queue_command(
                device=device,
                type=form.cleaned_data["type"],
                payload=form.payload(),
                created_by=request.user,
                expires_in_seconds=form.expires_in_seconds(),
                ip=client_ip(request),
            )
            return f"{command.get_type_display()} queued for {device}; its result appears under Recent commands."

        return self._finish(request, device, work, form=form, field_names=PROBLEM_FIELDS)

    def _do_run_script(self, request, device, context):
        scripts = runnable_scripts(request.user, device)
        picked = request.GET.get("script")
        script = scripts.filter(pk=picked).first() if picked and _is_uuid(picked) else None
        if script is None:
            if request.method == "POST":
                raise PermissionDenied  # a script this person may not run here, or none picked
            context["scripts"] = [
                {"script": s, "url": f"{request.path}?script={s.pk}"} for s in scripts.select_related("org", "partner")
            ]
            return None
        form = DeviceScriptRunForm(
            request.POST if request.method == "POST" else None, script=script, user=request.user, device=device
        )
        context |= {"script": script, "form": form, "title": f"Run “{script.name}” (v{script.version}) on {device}"}
        if request.method != "POST" or not form.is_valid():
            return None

        def work() -> str:
            from scripts.services.runs import start_run

            run = start_run(
                script=script,
                actor=request.user,
                trigger=ScriptRun.Trigger.MANUAL,
                parameters=form.parameter_values(),
                device_ids=[device.pk],
                ip=client_ip(request),
            )
            return _run_summary(run, script)

        return self._finish(request, device, work, form=form, field_names=form.error_field_names())

    def command_action_view(self, request, object_id: uuid.UUID, command_id: uuid.UUID, verb: str):
        """Cancel or re-run one of the device's commands: GET asks, POST does it (``devices:execute``)."""
        device = self._device_or_404(request, object_id)
        if verb not in ("cancel", "rerun"):
            raise Http404("No such action.")
        command = (
            authz.visible(request.user, "devices:read", DeviceCommand.objects.filter(device_id=device.pk))
            .filter(pk=command_id)
            .first()
        )
        if command is None:
            raise Http404("No such command.")
        if not authz.can(request.user, EXECUTE, device):
            raise PermissionDenied
        if request.method == "POST":

            def work() -> str:
                if verb == "cancel":
                    command_service.cancel_command(command=command, actor=request.user, ip=client_ip(request))
                    return f"The {command.get_type_display().lower()} command is cancelled."
                again = command_service.rerun_command(command=command, actor=request.user, ip=client_ip(request))
                return f"{again.get_type_display()} queued again for {device}."

            return self._finish(request, device, work)
        question = "Cancel this command?" if verb == "cancel" else "Run this command again?"
        context = self._page_context(request, device, question)
        context |= {
            "command": command,
            "command_verb": verb,
            "command_what": _command_what(command),
            "command_output": command_output(command, limit=OUTPUT_SHOWN),
            "console_action": "cancel_command" if verb == "cancel" else "rerun_command",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/devices/device/command_action.html", context)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def reported_words(moment: dt.datetime | None) -> SafeString | str:
    """``reported 2 h ago`` (with the exact time on hover), or ``never reported``."""
    return format_html("reported {}", time_ago(moment)) if moment else "never reported"
