"""The scheduler beside the server: a child process of the gunicorn master (``rmm/gunicorn.conf.py``) or of
``manage.py runserver``, started again whenever it dies.

The scheduler runs in a process of its own rather than in the web workers: its jobs (a full group reconcile, the
rollups) would hold up the requests of a gevent worker, and a worker recycled by ``max_requests`` would take a
running job with it. The child watches its parent and stops within a second of the parent's death, however the
parent died; the gunicorn master's own death is left to the service manager (docs/deployment.md).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

logger = logging.getLogger("rmm.jobs")

# A child that lived at least this long and died is started again after a second; one that keeps dying sooner waits
# twice as long each time, up to a minute (a replacement is never further away than that).
STEADY_SECONDS = 60.0
LONGEST_BACKOFF_SECONDS = 60.0


class SchedulerProcess:
    """``start()`` runs ``python -m jobs --parent <this pid>`` and keeps it running until ``stop()``."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._process: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self.starts = 0

    def start(self, *, enabled: bool | None = None) -> bool:
        """Start the scheduler unless ``enabled`` (by default ``SCHEDULER_ENABLED``) is off; answers whether it
        was started. The process is running when this returns."""
        if enabled is None:
            from django.conf import settings  # not at import: the gunicorn master does not load Django at all

            enabled = settings.SCHEDULER_ENABLED
        if not enabled:
            return False
        if self._watcher is None:
            self._process = self._spawn()
            self._watcher = threading.Thread(target=self._keep_running, name="scheduler supervisor", daemon=True)
            self._watcher.start()
        return True

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "rmm.settings")}
        self.starts += 1
        return subprocess.Popen(  # noqa: S603 - this interpreter running our own module
            [sys.executable, "-m", "jobs", "--parent", str(os.getpid())], env=env
        )

    def _keep_running(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            process = self._process = self._process or self._spawn()
            # Polled rather than waited for: the gunicorn master reaps every child of its own (its SIGCHLD handler),
            # ours included, and then a wait() would answer 0 for a child that died of a signal.
            while process.poll() is None and not self._stopping.wait(1.0):
                pass
            if self._stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - started >= STEADY_SECONDS else min(backoff * 2, LONGEST_BACKOFF_SECONDS)
            logger.error(
                "scheduler: its process (pid %d) stopped (exit status %s); starting another in %.0f s",
                process.pid,
                process.returncode,
                backoff,
            )
            self._process = None
            self._stopping.wait(backoff)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child (SIGTERM: it finishes the jobs it is running, then exits) and stop restarting it."""
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
