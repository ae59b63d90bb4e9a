"""The devices' periodic jobs (run by the scheduler, jobs/; ``manage.py jobs`` lists them).

The three group jobs share one lane, so they never evaluate memberships at the same time.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings

from devices.services import groups, telemetry, telemetry_partitions
from devices.services.commands import expire_pending_commands, time_out_sent_commands
from devices.services.status import mark_offline
from jobs.registry import register


@register("mark_offline", every=30, description="Online devices silent for DEVICE_OFFLINE_AFTER_SECONDS go offline.")
def mark_silent_devices_offline() -> str:
    return f"devices marked offline: {mark_offline()}"


@register(
    "expire_commands",
    every=30,
    description="Pending commands past their expiry become expired; sent ones without a result past their timeout, "
    "timeout.",
)
def finish_abandoned_commands() -> str:
    return f"commands expired: {expire_pending_commands()}; timed out: {time_out_sent_commands()}"


@register(
    "refresh_groups",
    every=5,
    lane="groups",
    description="Dynamic groups: re-evaluate the rules a device's change can affect (queued by triggers).",
)
def refresh_groups_of_changed_devices() -> str:
    return f"groups: {groups.process_refresh_queue()}"


@register(
    "refresh_time_based_groups",
    every=lambda: settings.GROUP_TIME_SWEEP_SECONDS,
    lane="groups",
    description="Dynamic groups whose rules use the clock or the latest metrics (lastSeenAt, metrics.*).",
)
def refresh_time_based_groups() -> str:
    return f"time-based groups: {groups.sweep_time_based_groups()}"


@register(
    "reconcile_groups",
    every=lambda: settings.GROUP_RECONCILE_SECONDS,
    lane="groups",
    description="Every dynamic group re-evaluated from scratch: the safety net behind the other two.",
)
def reconcile_all_groups() -> str:
    return f"all groups: {groups.refresh_all_groups()}"


@register("rollup_telemetry", every=300, description="5-minute and hourly telemetry rollups for the charts.")
def roll_up_telemetry() -> str:
    report = telemetry.roll_up()
    written = ", ".join(f"{size}: {count}" for size, count in report.buckets_written.items())
    return f"telemetry rollups written: {written}; expired: {report.rows_expired}"


@register(
    "telemetry_partitions",
    every=3600,
    description="Daily telemetry partitions ahead of today; those past TELEMETRY_RETENTION_DAYS dropped.",
)
def maintain_telemetry_partitions() -> str:
    report = telemetry_partitions.maintain(
        today=dt.datetime.now(dt.UTC).date(),
        ahead_days=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS,
        retention_days=settings.TELEMETRY_RETENTION_DAYS,
    )
    return f"telemetry partitions created: {len(report.created)}; dropped: {len(report.dropped)}"
