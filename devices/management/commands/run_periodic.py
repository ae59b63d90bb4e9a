"""Run every periodic job that is due, once (cron every minute), or again every ``--loop SECONDS``.

The server runs these jobs itself (jobs/, ``SCHEDULER_ENABLED``); this command is for operators who turn that off
and prefer cron. It shares the scheduler's bookkeeping, so it never runs a job the server's scheduler is running,
and ``manage.py jobs`` shows its runs too.
"""

from __future__ import annotations

from devices.management.commands._periodic import PeriodicCommand
from jobs.scheduler import Scheduler


class Command(PeriodicCommand):
    help = "Run every periodic job that is due now (all of them the first time); see manage.py jobs."

    scheduler: Scheduler | None = None

    def run_once(self) -> str:
        self.scheduler = self.scheduler or Scheduler()
        results = self.scheduler.run_all_due()
        if not results:
            return "no job is due"
        return "\n".join(map(str, results))
