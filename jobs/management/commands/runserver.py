"""``manage.py runserver`` (Django's, with the static files of ``django.contrib.staticfiles``) that also runs the
scheduler beside the development server, as the production server does (``jobs.supervisor``).

With the autoreloader, the scheduler belongs to the outer process, which lives as long as the command: it is not
restarted on every code change (restart the command to run changed job code).
"""

from __future__ import annotations

import os

from django.contrib.staticfiles.management.commands.runserver import Command as StaticFilesRunserver
from django.core.management.base import CommandParser
from django.utils import autoreload

from jobs.supervisor import SchedulerProcess


class Command(StaticFilesRunserver):
    help = StaticFilesRunserver.help + " Runs the periodic jobs beside it (SCHEDULER_ENABLED; --no-scheduler)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-scheduler",
            action="store_false",
            dest="use_scheduler",
            help="Do not run the periodic jobs beside the server.",
        )

    def run(self, **options) -> None:
        reloaded_child = options["use_reloader"] and os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"
        if reloaded_child or not options["use_scheduler"]:
            super().run(**options)
            return
        scheduler = SchedulerProcess()
        if scheduler.start():
            self.stdout.write(f"The periodic jobs run beside the server (scheduler pid {scheduler.pid}).")
        try:
            super().run(**options)
        finally:
            scheduler.stop()
