"""The scheduler in the production server: ``rmm/gunicorn.conf.py`` calls these in gunicorn's master process.

``when_ready`` starts the scheduler's process (``jobs.supervisor``) once the master listens, ``on_exit`` stops it
with the master. The master does not set Django up (its workers load the application after the fork, as before, and
a gevent worker must import Django after its monkey-patching): it reads ``SCHEDULER_ENABLED`` from the settings
module itself, a plain module.
"""

from __future__ import annotations

import importlib
import os

from jobs.supervisor import SchedulerProcess

_scheduler: SchedulerProcess | None = None


def when_ready(server) -> None:
    global _scheduler
    settings = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "rmm.settings"))
    _scheduler = SchedulerProcess()
    if _scheduler.start(enabled=settings.SCHEDULER_ENABLED):
        server.log.info(
            "scheduler: started beside the server, pid %s (SCHEDULER_ENABLED=0 turns it off)", _scheduler.pid
        )
    else:
        server.log.info("scheduler: off (SCHEDULER_ENABLED=0); run the periodic commands from cron instead")


def on_exit(server) -> None:
    if _scheduler is not None:
        _scheduler.stop()
