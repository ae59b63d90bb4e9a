"""Run the scheduler in the foreground: every periodic job on its cadence until SIGTERM or Ctrl-C.

The server starts one by itself (``SCHEDULER_ENABLED``, on by default). Run this instead as a service of its own
when the web servers have ``SCHEDULER_ENABLED=0``; any number may run against one database, each tick runs once.
"""

from __future__ import annotations

import os
import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.scheduler import Scheduler


class Command(BaseCommand):
    help = "Run every periodic job on its cadence, in the foreground, until stopped (SIGTERM, Ctrl-C)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--parent",
            type=int,
            metavar="PID",
            help="Stop when this process is no longer the parent (how the server's own scheduler follows it).",
        )

    def handle(self, *args, parent: int | None, **options) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        try:
            scheduler = Scheduler()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        scheduler.run_forever(stop, keep_going=(lambda: os.getppid() == parent) if parent else (lambda: True))
