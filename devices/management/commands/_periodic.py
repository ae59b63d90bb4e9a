"""What the periodic commands share: run once (cron, a systemd timer) or ``--loop SECONDS`` (a supervisor)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections


class PeriodicCommand(BaseCommand):
    """Subclasses implement ``run_once()`` returning a one-line report."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop",
            type=int,
            metavar="SECONDS",
            default=0,
            help="Run again every SECONDS instead of once (for a process supervisor instead of cron).",
        )
        parser.add_argument("--once", action="store_true", help="Run once and exit (the default).")

    def run_once(self) -> str:
        raise NotImplementedError

    def handle(self, *args, loop: int, once: bool, **options) -> None:
        if loop < 0:
            self.stderr.write("--loop must be a number of seconds, at least 1.")
            raise SystemExit(2)
        while True:
            self.stdout.write(self.run_once())
            if once or not loop:
                return
            close_old_connections()  # a long-lived loop must not hold a dead connection forever
            time.sleep(loop)
