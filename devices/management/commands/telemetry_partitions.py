"""Keep device_telemetry's daily partitions ahead of time and drop those past retention.

Run it from cron or a systemd timer (once a day is enough; hourly is harmless), or with ``--loop`` as a
long-running process.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from devices.services.telemetry_partitions import maintain


class Command(BaseCommand):
    help = "Create upcoming daily telemetry partitions and drop those older than the retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ahead-days",
            type=int,
            default=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS,
            help="Days after today to create partitions for (default: TELEMETRY_PARTITIONS_AHEAD_DAYS, 7).",
        )
        parser.add_argument(
            "--retention-days",
            type=int,
            default=settings.TELEMETRY_RETENTION_DAYS,
            help="Drop partitions of days older than this (default: TELEMETRY_RETENTION_DAYS, 30).",
        )
        parser.add_argument(
            "--loop",
            type=int,
            metavar="SECONDS",
            default=0,
            help="Run again every SECONDS instead of once (for a process supervisor instead of cron).",
        )

    def handle(self, *args, ahead_days: int, retention_days: int, loop: int, **options) -> None:
        if ahead_days < 1 or retention_days < 1:
            self.stderr.write("--ahead-days and --retention-days must be at least 1.")
            raise SystemExit(2)
        while True:
            today = dt.datetime.now(dt.UTC).date()
            report = maintain(today=today, ahead_days=ahead_days, retention_days=retention_days)
            self.stdout.write(
                f"telemetry partitions: created {_names(report.created)}; dropped {_names(report.dropped)}; "
                f"{report.default_rows_deleted} expired rows deleted from the default partition"
            )
            if not loop:
                return
            time.sleep(loop)


def _names(names: list[str]) -> str:
    return f"{len(names)} ({', '.join(names)})" if names else "0"
