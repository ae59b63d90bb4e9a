"""Every periodic job in one process: the offline sweep, command expiry and timeouts, telemetry rollups, dynamic
group refreshes (see refresh_groups), the purge of the throttles' old rows (accounts.throttle) and (at most once an
hour) telemetry partition maintenance.
``--loop 60`` under a supervisor replaces the cron lines; with ``--loop 15`` group membership stays within a minute
of the devices' changes."""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings

from accounts import throttle
from devices.management.commands._periodic import PeriodicCommand
from devices.services import telemetry, telemetry_partitions
from devices.services.commands import expire_pending_commands, time_out_sent_commands
from devices.services.groups import GroupRefresher
from devices.services.status import mark_offline

PARTITIONS_EVERY_SECONDS = 3600


class Command(PeriodicCommand):
    help = "Run the offline sweep, command expiry/timeouts and telemetry partition maintenance."

    _partitions_done_at: float | None = None
    _groups: GroupRefresher | None = None

    def run_once(self) -> str:
        report = [
            f"offline: {mark_offline()}",
            f"commands expired: {expire_pending_commands()}",
            f"commands timed out: {time_out_sent_commands()}",
            f"telemetry rollups: {telemetry.roll_up().buckets_written}",
            f"throttle rows purged: {throttle.purge()}",
        ]
        self._groups = self._groups or GroupRefresher()
        report.append(self._groups.run())
        if self._partitions_done_at is None or time.monotonic() - self._partitions_done_at >= PARTITIONS_EVERY_SECONDS:
            partitions = telemetry_partitions.maintain(
                today=dt.datetime.now(dt.UTC).date(),
                ahead_days=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS,
                retention_days=settings.TELEMETRY_RETENTION_DAYS,
            )
            self._partitions_done_at = time.monotonic()
            report.append(f"partitions created: {len(partitions.created)}, dropped: {len(partitions.dropped)}")
        return "; ".join(report)
