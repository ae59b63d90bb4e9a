"""Keep dynamic groups current: drain the refresh queue (devices whose facts changed), re-evaluate time-based
groups every GROUP_TIME_SWEEP_SECONDS and every group every GROUP_RECONCILE_SECONDS.

A device's membership reflects a change within the loop's period plus one evaluation, so run it under a supervisor
with ``--loop 10`` (run_periodic also does it, at its own period)."""

from __future__ import annotations

from devices.management.commands._periodic import PeriodicCommand
from devices.services.groups import GroupRefresher


class Command(PeriodicCommand):
    help = "Re-evaluate dynamic device groups for changed devices, time-based conditions and (hourly) everything."

    refresher: GroupRefresher | None = None

    def run_once(self) -> str:
        self.refresher = self.refresher or GroupRefresher()
        return self.refresher.run()
