"""``manage.py jobs``: every periodic job, its cadence, when it last ran, how long it took and how it went.
``manage.py jobs --run NAME …`` runs jobs now, in this process, under the same locks as the scheduler."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from jobs.models import ScheduledJob
from jobs.registry import all_jobs
from jobs.scheduler import Scheduler


def _ago(moment, now) -> str:
    if moment is None:
        return "never"
    seconds = round((now - moment).total_seconds())
    return f"{seconds} s ago" if seconds >= 0 else f"in {-seconds} s"


class Command(BaseCommand):
    help = "List the periodic jobs (last run, duration, outcome), or run some now with --run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", nargs="+", metavar="NAME", help="Run these jobs now (whether due or not).")

    def handle(self, *args, run: list[str] | None, **options) -> None:
        jobs = all_jobs()
        if run:
            self._run(run, known={job.name for job in jobs})
            return
        rows = {row.name: row for row in ScheduledJob.objects.all()}
        now = timezone.now()
        table = [("job", "every", "last run", "took", "outcome", "next run", "report")]
        for job in jobs:
            row = rows.get(job.name)
            if row is None:
                table.append((job.name, f"{job.interval_seconds} s", "never", "", "", "at the scheduler's start", ""))
                continue
            outcome = row.last_outcome or ""
            if row.running_since is not None:
                outcome = f"running since {_ago(row.running_since, now)}"
            elif row.consecutive_failures > 1:
                outcome += f" ({row.consecutive_failures} times in a row)"
            table.append(
                (
                    job.name,
                    f"{job.interval_seconds} s",
                    _ago(row.last_started_at, now),
                    "" if row.last_duration_ms is None else f"{row.last_duration_ms} ms",
                    outcome,
                    _ago(row.next_run_at, now),
                    row.last_report,
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
        for line in table:
            cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
            self.stdout.write("  ".join([*cells, line[-1]]))

    def _run(self, names: list[str], *, known: set[str]) -> None:
        unknown = sorted(set(names) - known)
        if unknown:
            raise CommandError(f"No such job: {', '.join(unknown)}. The jobs: {', '.join(sorted(known))}.")
        results = Scheduler().run_all_due(force=names)
        ran = {result.job for result in results}
        for result in results:
            self.stdout.write(str(result))
        for name in sorted(set(names) - ran):
            self.stdout.write(f"{name}: not run, another process is running it now")
        if any(result.outcome != "ok" for result in results):
            raise CommandError("A job failed; its error is above and in `manage.py jobs`.")
