"""The console's dashboard (the admin's landing page): what needs a technician's attention, within their reach.

``build_dashboard(user, site)`` reads every section with a few aggregate or LIMITed queries, so the page costs the
same number of queries, and about the same time, for ten devices as for 100,000 (tests/console/test_dashboard.py
counts them; bench/console_bench.py times them). Nothing is counted or sorted in Python.

Each section is shown only to a person who may open the list it links to: its permission is the one that list's
admin asks for viewing (``ScopedAdminMixin.permission("view")``: devices:read for devices and their commands,
alerts:read, scripts:read, devices:write for enrollment keys), and every query starts from ``authz.visible`` with
it. The scheduler's jobs are for operators only, as their admin is.

The device counts come from ``devices.services.fleet.device_summary``, the function behind
``GET /api/v1/devices/summary``: the dashboard and the API agree for the same person.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.db.models import Count, F, Q, Subquery, Window
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, Severity
from devices.models import Device, DeviceCommand
from devices.services.fleet import device_summary
from jobs.models import Outcome, ScheduledJob
from jobs.registry import all_jobs
from orgs.models import EnrollmentKey
from rmm import authz
from rmm.admin import is_operator
from rmm.console import MISSING, severity_label, time_ago
from scripts.models import ScriptRun
from scripts.services.runs import run_progress

ROWS = 10  # rows of each "newest" / "longest" table
RECENT = dt.timedelta(hours=24)  # failed commands and script runs: queued within this
KEY_EXPIRY_SOON = dt.timedelta(days=7)
KEY_USAGE_PERCENT = 80  # a key used this much of its max_usage is near exhaustion
# A job whose tick is this late (or its own interval, if longer) is overdue: the scheduler naps at most 5 s
# between looks at its table (jobs.scheduler.LONGEST_NAP_SECONDS), so a minute means it is not running it.
JOB_OVERDUE_GRACE = dt.timedelta(minutes=1)

SEVERITY_ORDER = ("critical", "warning", "info")  # most urgent first
FAILED_COMMAND_STATUSES = (DeviceCommand.Status.FAILED, DeviceCommand.Status.TIMEOUT)


@dataclass(frozen=True)
class Figure:
    """One number of the dashboard: ``key`` is its ``data-count`` (contract.md), ``url`` the list it stands for."""

    key: str
    label: str
    value: int
    url: str
    css: str = ""  # the value's own class (a status badge colour, a severity colour)


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    url: str
    last_seen: str  # rmm.console.time_ago, or "never seen"


@dataclass(frozen=True)
class FleetSection:
    total: Figure
    by_status: list[Figure]
    by_os: list[Figure]
    offline_longest: list[DeviceRow]
    offline: Figure


@dataclass(frozen=True)
class AlertRow:
    alert: Alert
    url: str
    device_url: str | None
    severity: str  # rmm.console.severity_label
    opened: str  # rmm.console.time_ago


@dataclass(frozen=True)
class AlertsSection:
    by_severity: list[Figure]
    acknowledged: Figure
    newest: list[AlertRow]
    open_url: str


@dataclass(frozen=True)
class CommandRow:
    command: DeviceCommand
    url: str
    device_url: str
    created: str
    summary: str  # what ran, in a few words


@dataclass(frozen=True)
class CommandsSection:
    failed: Figure
    newest: list[CommandRow]


@dataclass(frozen=True)
class RunRow:
    run: ScriptRun
    url: str
    created: str
    progress: dict[str, int]

    @property
    def failures(self) -> int:
        return self.progress["failed"] + self.progress["timedOut"]

    @property
    def unfinished(self) -> int:
        return self.progress["pending"] + self.progress["sent"]


@dataclass(frozen=True)
class RunsSection:
    recent: Figure
    newest: list[RunRow]


@dataclass(frozen=True)
class KeyRow:
    key: EnrollmentKey
    url: str
    usage_percent: int | None
    exhausted: bool
    expires: str  # time_ago of its expiry, or MISSING
    expires_soon: bool


@dataclass(frozen=True)
class KeysSection:
    attention: Figure
    keys: list[KeyRow]


@dataclass(frozen=True)
class JobRow:
    name: str
    url: str | None
    interval_seconds: int
    row: ScheduledJob | None  # None: the scheduler has not run it yet
    last_finished: str
    next_run: str
    overdue: bool

    @property
    def failing(self) -> bool:
        return self.row is not None and self.row.last_outcome in (Outcome.FAILED, Outcome.INTERRUPTED)

    @property
    def healthy(self) -> bool:
        return not (self.failing or self.overdue)


@dataclass(frozen=True)
class JobsSection:
    unhealthy: Figure
    jobs: list[JobRow]


@dataclass
class Dashboard:
    """What the landing page shows; a section is None when the person may not read its list."""

    now: dt.datetime
    fleet: FleetSection | None = None
    alerts: AlertsSection | None = None
    commands: CommandsSection | None = None
    runs: RunsSection | None = None
    keys: KeysSection | None = None
    jobs: JobsSection | None = None
    sections: list[str] = field(default_factory=list)


def build_dashboard(user, site: AdminSite, *, now: dt.datetime | None = None) -> Dashboard:
    """The dashboard of ``user``: each section they may read, within their reach."""
    now = now or timezone.now()
    dashboard = Dashboard(now=now)
    for name, model, build in (
        ("fleet", Device, _fleet),
        ("alerts", Alert, _alerts),
        ("commands", DeviceCommand, _commands),
        ("runs", ScriptRun, _runs),
        ("keys", EnrollmentKey, _keys),
    ):
        permission = list_permission(site, model)
        if permission is not None and authz.holds_anywhere(user, permission):
            setattr(dashboard, name, build(user, permission, now))
            dashboard.sections.append(name)
    if is_operator(user) and site.is_registered(ScheduledJob):
        dashboard.jobs = _jobs(now)
        dashboard.sections.append("jobs")
    return dashboard


def list_permission(site: AdminSite, model) -> str | None:
    """The permission the admin of ``model`` asks for viewing its list (None: the model has no scoped list)."""
    if not site.is_registered(model):
        return None
    model_admin: Any = site.get_model_admin(model)
    return model_admin.permission("view") if hasattr(model_admin, "permission") else None


def _changelist(model, **params) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _change(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


# --- sections ---------------------------------------------------------------------------------------------------


def _fleet(user, permission: str, now: dt.datetime) -> FleetSection:
    devices = authz.visible(user, permission, Device.objects.all())
    summary = device_summary(devices)
    offline = Device.Status.OFFLINE
    # Oldest contact first, then id: devices_last_seen_id (last_seen_at DESC NULLS LAST, id DESC) read backwards,
    # stopping at the tenth offline device, instead of sorting every offline device of the fleet.
    longest = (
        devices.filter(status=offline)
        .select_related("org", "site")
        .order_by(F("last_seen_at").asc(nulls_first=True), "id")[:ROWS]
    )
    return FleetSection(
        total=Figure("devices:total", "Devices", summary.total, _changelist(Device)),
        by_status=[
            Figure(f"status:{value}", label, summary.by_status[value], _changelist(Device, status__exact=value), value)
            for value, label in Device.Status.choices
        ],
        by_os=[
            Figure(f"os:{value}", label, summary.by_os_type[value], _changelist(Device, os_type__exact=value))
            for value, label in Device.OsType.choices
        ],
        offline_longest=[
            DeviceRow(
                device=device,
                url=_change(device),
                last_seen=time_ago(device.last_seen_at, now=now) if device.last_seen_at else "never seen",
            )
            for device in longest
        ],
        offline=Figure(
            f"status:{offline}", "Offline", summary.by_status[offline], _changelist(Device, status__exact=offline)
        ),
    )


def _alerts(user, permission: str, now: dt.datetime) -> AlertsSection:
    alerts = authz.visible(user, permission, Alert.objects.all())
    is_open = Q(status=Alert.Status.OPEN)
    counts = (
        alerts.filter(status__in=(Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED))
        .order_by()
        .aggregate(
            acknowledged=Count("pk", filter=Q(status=Alert.Status.ACKNOWLEDGED)),
            **{value: Count("pk", filter=is_open & Q(severity=value)) for value in Severity.values},
        )
    )
    labels = dict(Severity.choices)
    # The ten newest open alerts picked from the alerts table alone, then joined to their devices: joining first
    # made PostgreSQL join every open alert of the installation to its device before sorting (120 ms for an
    # operator at 100,000 devices and 23,000 open alerts; ~10 ms this way).
    newest_ids = alerts.filter(is_open).order_by("-opened_at", "-id").values("pk")[:ROWS]
    newest = (
        Alert.objects.filter(pk__in=Subquery(newest_ids))
        .select_related("device", "org", "site")
        .order_by("-opened_at", "-id")
    )
    return AlertsSection(
        by_severity=[
            Figure(
                f"alerts:{value}",
                str(labels[value]).capitalize(),
                counts[value],
                _changelist(Alert, status__exact=Alert.Status.OPEN, severity__exact=value),
                f"severity-{value}",
            )
            for value in SEVERITY_ORDER
        ],
        acknowledged=Figure(
            "alerts:acknowledged",
            "Acknowledged",
            counts["acknowledged"],
            _changelist(Alert, status__exact=Alert.Status.ACKNOWLEDGED),
        ),
        newest=[
            AlertRow(
                alert=alert,
                url=_change(alert),
                device_url=_change(alert.device) if alert.device is not None else None,
                severity=severity_label(alert.severity),
                opened=time_ago(alert.opened_at, now=now),
            )
            for alert in newest
        ],
        open_url=_changelist(Alert, status__exact=Alert.Status.OPEN),
    )


def _command_summary(command: DeviceCommand) -> str:
    result = command.result or {}
    if result.get("error"):
        return str(result["error"])[:120]
    if result.get("exitCode") is not None:
        return f"exit code {result['exitCode']}"
    return command.get_status_display()


def _commands(user, permission: str, now: dt.datetime) -> CommandsSection:
    since = now - RECENT
    failed = authz.visible(user, permission, DeviceCommand.objects.all()).filter(
        status__in=FAILED_COMMAND_STATUSES, created_at__gte=since
    )
    # The count rides along with the ten rows (COUNT(*) OVER ()): one pass over the day's commands, not two.
    newest = list(
        failed.select_related("device", "org")
        .annotate(matching=Window(Count("pk")))
        .order_by("-created_at", "-id")[:ROWS]
    )
    return CommandsSection(
        failed=Figure(
            "commands:failed",
            "Failed or timed out",
            newest[0].matching if newest else 0,
            _changelist(
                DeviceCommand,
                status__in=",".join(FAILED_COMMAND_STATUSES),
                created_at__gte=since.isoformat(timespec="seconds"),
            ),
        ),
        newest=[
            CommandRow(
                command=command,
                url=_change(command),
                device_url=_change(command.device),
                created=time_ago(command.created_at, now=now),
                summary=_command_summary(command),
            )
            for command in newest
        ],
    )


def _runs(user, permission: str, now: dt.datetime) -> RunsSection:
    since = now - RECENT
    runs = authz.visible(user, permission, ScriptRun.objects.all()).filter(created_at__gte=since)
    newest = list(
        runs.select_related("script", "org")
        .annotate(matching=Window(Count("pk")))  # the day's count, with the rows (one query)
        .order_by("-created_at", "-id")[:ROWS]
    )
    progress = run_progress(newest)  # one query for all of them
    return RunsSection(
        recent=Figure(
            "runs:recent",
            "Script runs",
            newest[0].matching if newest else 0,
            _changelist(ScriptRun, created_at__gte=since.isoformat(timespec="seconds")),
        ),
        newest=[RunRow(run, _change(run), time_ago(run.created_at, now=now), progress[run.pk]) for run in newest],
    )


def _keys(user, permission: str, now: dt.datetime) -> KeysSection:
    soon = now + KEY_EXPIRY_SOON
    keys = (
        authz.visible(user, permission, EnrollmentKey.objects.all())
        .filter(revoked_at__isnull=True)
        .exclude(expires_at__lte=now)
        .alias(usage_x100=F("usage_count") * 100)
        .filter(
            Q(max_usage__isnull=False, usage_x100__gte=F("max_usage") * KEY_USAGE_PERCENT) | Q(expires_at__lte=soon)
        )
    )
    listed = list(
        keys.select_related("org", "site")
        .annotate(matching=Window(Count("pk")))  # how many in all, with the rows (one query)
        .order_by(F("expires_at").asc(nulls_last=True), "name", "id")[:ROWS]
    )
    return KeysSection(
        attention=Figure(
            "keys:attention",
            "Enrollment keys to renew",
            listed[0].matching if listed else 0,
            _changelist(EnrollmentKey, revoked_at__isnull="True"),
        ),
        keys=[
            KeyRow(
                key=key,
                url=_change(key),
                usage_percent=None if not key.max_usage else min(100, key.usage_count * 100 // key.max_usage),
                exhausted=key.max_usage is not None and key.usage_count >= key.max_usage,
                expires=time_ago(key.expires_at, now=now),
                expires_soon=key.expires_at is not None and key.expires_at <= soon,
            )
            for key in listed
        ],
    )


def _jobs(now: dt.datetime) -> JobsSection:
    stored = {job.name: job for job in ScheduledJob.objects.all()}  # one row per job of the registry: a handful
    rows = []

    def row_of(name: str, interval: int, job: ScheduledJob | None, overdue: bool) -> JobRow:
        return JobRow(
            name=name,
            url=_change(job) if job is not None else None,
            interval_seconds=interval,
            row=job,
            last_finished=time_ago(job.last_finished_at, now=now) if job is not None else MISSING,
            next_run=time_ago(job.next_run_at, now=now) if job is not None else MISSING,
            overdue=overdue,
        )

    for job in all_jobs():
        row = stored.pop(job.name, None)
        grace = max(JOB_OVERDUE_GRACE, dt.timedelta(seconds=job.interval_seconds))
        overdue = row is not None and row.running_since is None and row.next_run_at < now - grace
        rows.append(row_of(job.name, job.interval_seconds, row, overdue))
    # Rows of jobs no longer in the registry (renamed or removed): shown, never overdue.
    rows.extend(row_of(name, row.interval_seconds, row, False) for name, row in sorted(stored.items()))
    rows.sort(key=lambda job: (job.healthy, job.name))
    return JobsSection(
        unhealthy=Figure(
            "jobs:unhealthy", "Failing or overdue", sum(1 for job in rows if not job.healthy), _changelist(ScheduledJob)
        ),
        jobs=rows,
    )
