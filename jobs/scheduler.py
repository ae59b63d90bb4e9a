"""The scheduler: every periodic job (``jobs.registry``) on its cadence, once per tick across every server process
on the database, one run of a lane at a time.

How a run is decided, all in PostgreSQL so that any number of servers can run a scheduler against one database:

- Each job has a row in ``scheduled_jobs`` whose ``next_run_at`` is its next tick.
- Jobs are grouped in lanes (a lane of its own by default; the dynamic-group jobs share one). A runner takes the
  lane's session-level advisory lock (``pg_try_advisory_lock``) before it runs any job of the lane, and gives it
  back after: a lane never runs twice at once. The lock is held by the scheduler's own connection
  (:class:`Coordinator`), not by the connections the jobs use, so a job that closes or breaks its connection
  cannot drop it; a process that dies drops it with its connection, and the next runner takes over at once.
- Holding the lock, the runner claims the tick by moving ``next_run_at`` forward (to now + the interval) and
  records the run in ``job_runs``, where ``(job, scheduled_for)`` is unique: a tick is never run twice.
- ``running_since`` is set for the length of a run. A runner that holds the lane's lock and still finds it set
  knows the process of that run died: it marks the run ``interrupted`` and runs the job again at once.
- A job that raises is logged with its traceback, recorded as ``failed`` (``consecutive_failures`` counts them)
  and runs again at its next tick: a failure never stops a job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections
from django.db.models.functions import Now

from jobs.models import Outcome, ScheduledJob
from jobs.registry import PeriodicJob, all_jobs

logger = logging.getLogger("rmm.jobs")

# The first key of every lane's advisory lock (the second is hashtext(lane)): "RMMJ", so that our locks cannot be
# mistaken for another application's on a shared database.
LOCK_NAMESPACE = 0x524D4D4A
# How long a lane sleeps at most before it looks at the table again (another server may have run its jobs, an
# operator may have asked for a run now). Also bounds how late a stale run is noticed.
LONGEST_NAP_SECONDS = 5.0
# How long a lane whose lock another process holds waits before trying again.
BUSY_NAP_SECONDS = 1.0
REPORT_MAX_CHARS = 2000


def runner_name() -> str:
    """This process, as ``host:pid`` (``scheduled_jobs.runner``, ``job_runs.runner``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Coordinator:
    """The scheduler's own connection: the lanes' advisory locks and the bookkeeping of runs.

    Opened with the parameters of Django's ``default`` database, in autocommit mode, and shared by the lanes of one
    process (one short statement at a time, under a lock). If it breaks, the next statement opens a new one.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        database = connections["default"]
        database.ensure_connection()  # starts the embedded PostgreSQL when that is the database
        params = database.get_connection_params()
        database.close()
        params.pop("autocommit", None)
        return psycopg.connect(**params, autocommit=True, application_name="rmm scheduler")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        with self._mutex:
            if self._connection is None or self._connection.closed:
                self._connection = self._connect()
            try:
                cursor = self._connection.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                self._connection.close()  # locks it held are gone with it; the next statement reconnects
                raise

    def close(self) -> None:
        with self._mutex:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


@dataclass(frozen=True)
class RunResult:
    job: str
    outcome: str
    report: str
    duration_ms: int

    def __str__(self) -> str:
        return f"{self.job}: {self.outcome}, {self.report} ({self.duration_ms} ms)"


# Every job has its row; a job whose cadence was changed (SCHEDULER_INTERVALS) is due by the new one at once.
_KNOW_JOBS = """
INSERT INTO scheduled_jobs (name, interval_seconds, next_run_at, runner, last_outcome, last_report,
                            consecutive_failures, runs, failures)
SELECT name, interval, clock_timestamp(), '', '', '', 0, 0, 0
  FROM unnest(%s::text[], %s::int[]) AS new (name, interval)
ON CONFLICT (name) DO UPDATE
   SET interval_seconds = excluded.interval_seconds,
       next_run_at = least(scheduled_jobs.next_run_at,
                           coalesce(scheduled_jobs.last_started_at, clock_timestamp())
                           + make_interval(secs => excluded.interval_seconds))
 WHERE scheduled_jobs.interval_seconds <> excluded.interval_seconds
"""

_DUE = """
SELECT name, next_run_at <= clock_timestamp() OR running_since IS NOT NULL,
       greatest(extract(epoch FROM next_run_at - clock_timestamp()), 0)
  FROM scheduled_jobs
 WHERE name = ANY(%s)
"""

# Holding the lane's lock: claim the tick, moving next_run_at on. A run a dead process left unfinished is run again
# at once, as a tick of its own (now).
_CLAIM = """
WITH due AS (
    SELECT name, next_run_at AS tick, running_since IS NOT NULL AS stale
      FROM scheduled_jobs
     WHERE name = %(name)s AND (next_run_at <= clock_timestamp() OR running_since IS NOT NULL)
       FOR UPDATE
)
UPDATE scheduled_jobs AS job
   SET next_run_at = clock_timestamp() + make_interval(secs => %(interval)s),
       interval_seconds = %(interval)s,
       running_since = clock_timestamp(),
       last_started_at = clock_timestamp(),
       runner = %(runner)s
  FROM due
 WHERE job.name = due.name
RETURNING CASE WHEN due.stale THEN clock_timestamp() ELSE due.tick END, due.stale
"""

_INTERRUPTED = """
UPDATE job_runs
   SET outcome = 'interrupted', finished_at = clock_timestamp(),
       report = 'The process running it stopped before the run finished.'
 WHERE job_name = %s AND outcome = 'running'
"""

_START = """
INSERT INTO job_runs (job_name, scheduled_for, started_at, outcome, report, runner)
VALUES (%s, %s, clock_timestamp(), 'running', '', %s)
RETURNING id
"""

_FINISH_RUN = """
UPDATE job_runs SET finished_at = clock_timestamp(), duration_ms = %s, outcome = %s, report = %s WHERE id = %s
"""

_FINISH_JOB = """
UPDATE scheduled_jobs
   SET running_since = NULL,
       last_finished_at = clock_timestamp(),
       last_duration_ms = %(duration_ms)s,
       last_outcome = %(outcome)s,
       last_report = %(report)s,
       last_succeeded_at = CASE WHEN %(ok)s THEN clock_timestamp() ELSE last_succeeded_at END,
       consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE consecutive_failures + 1 END,
       runs = runs + 1,
       failures = failures + CASE WHEN %(ok)s THEN 0 ELSE 1 END
 WHERE name = %(name)s
"""

_RUN_NOW = "UPDATE scheduled_jobs SET next_run_at = clock_timestamp() WHERE name = %s"


def run_soon(*, names: Iterable[str]) -> int:
    """Make these jobs due now: a running scheduler runs them within ``LONGEST_NAP_SECONDS`` (the admin's "run
    now"). Answers how many there were."""
    return ScheduledJob.objects.filter(name__in=list(names)).update(next_run_at=Now())


def _release_connections() -> None:
    """After a job: this thread's connections back to the pool, with no transaction or broken connection left
    behind for the next job (unless a caller's transaction holds them: a management command run inside one)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


class Scheduler:
    """Runs the jobs it is given (every registered job by default), lane by lane."""

    def __init__(self, jobs: Iterable[PeriodicJob] | None = None, *, runner: str | None = None) -> None:
        self.jobs = list(all_jobs() if jobs is None else jobs)
        self.runner = runner or runner_name()
        self.coordinator = Coordinator()
        self.lanes: dict[str, list[PeriodicJob]] = defaultdict(list)
        for job in self.jobs:
            self.lanes[job.lane].append(job)
        self._known = False

    # --- one pass ----------------------------------------------------------------------------------------------

    def run_due(self, lane: str, *, force: Iterable[str] = ()) -> tuple[list[RunResult], float]:
        """Run the jobs of ``lane`` that are due (and those named in ``force``, due or not) if this process can take
        the lane's lock. Answers what ran and the seconds until the lane's next tick."""
        jobs = {job.name: job for job in self.lanes[lane]}
        self._know_jobs()
        force = set(force)
        if force:
            for name in force & jobs.keys():
                self.coordinator.query(_RUN_NOW, [name])
        rows = self.coordinator.query(_DUE, [list(jobs)])
        due = sorted(name for name, is_due, _ in rows if is_due)
        if not due:
            return [], min((float(wait) for _, _, wait in rows), default=LONGEST_NAP_SECONDS)
        if not self.coordinator.query("SELECT pg_try_advisory_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, lane])[0][0]:
            return [], BUSY_NAP_SECONDS  # another process runs this lane now
        try:
            results = [result for name in due if (result := self._run_one(jobs[name])) is not None]
        finally:
            self.coordinator.query("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_NAMESPACE, lane])
        return results, 0.0

    def run_all_due(self, *, force: Iterable[str] = ()) -> list[RunResult]:
        """One pass over every lane in this thread (``manage.py run_periodic``, ``manage.py jobs --run``); the
        scheduler's connection is closed after it."""
        results: list[RunResult] = []
        try:
            for lane in sorted(self.lanes):
                results.extend(self.run_due(lane, force=force)[0])
        finally:
            self.close()
        return results

    def close(self) -> None:
        self.coordinator.close()
        self._known = False

    def _know_jobs(self) -> None:
        if not self._known:
            self.coordinator.query(
                _KNOW_JOBS, [[job.name for job in self.jobs], [job.interval_seconds for job in self.jobs]]
            )
            self._known = True

    def _run_one(self, job: PeriodicJob) -> RunResult | None:
        interval = job.interval_seconds
        claimed = self.coordinator.query(_CLAIM, {"name": job.name, "interval": interval, "runner": self.runner})
        if not claimed:
            return None  # another process ran it since we looked
        tick, stale = claimed[0]
        if stale:
            self.coordinator.query(_INTERRUPTED, [job.name])
            logger.warning("periodic job %s: the process of its last run died; running it again now", job.name)
        run_id = self.coordinator.query(_START, [job.name, tick, self.runner])[0][0]

        started = time.monotonic()
        outcome = Outcome.OK
        try:
            report = job.run()
        except Exception as error:
            outcome = Outcome.FAILED
            report = f"{type(error).__name__}: {error}"
            logger.exception("periodic job %s failed; it runs again at its next tick", job.name)
        finally:
            _release_connections()
        duration_ms = round((time.monotonic() - started) * 1000)
        report = str(report)[:REPORT_MAX_CHARS]

        self.coordinator.query(_FINISH_RUN, [duration_ms, outcome, report, run_id])
        self.coordinator.query(
            _FINISH_JOB,
            {
                "name": job.name,
                "duration_ms": duration_ms,
                "outcome": outcome,
                "report": report,
                "ok": outcome == Outcome.OK,
            },
        )
        logger.debug("periodic job %s: %s (%d ms)", job.name, report, duration_ms)
        return RunResult(job.name, outcome, report, duration_ms)

    # --- running for good ----------------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, *, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Run every lane in a thread of its own until ``stop`` is set or ``keep_going()`` is false (checked every
        second: the parent process is gone). A lane's thread never dies of a job's error nor of the database
        being away: it logs, waits and tries again."""
        threads = [
            threading.Thread(target=self._lane_loop, args=(lane, stop), name=f"scheduler {lane}", daemon=True)
            for lane in sorted(self.lanes)
        ]
        for thread in threads:
            thread.start()
        logger.info("scheduler %s: %d jobs in %d lanes", self.runner, len(self.jobs), len(threads))
        try:
            while not stop.wait(1.0):
                if not keep_going():
                    logger.info("scheduler %s: stopping", self.runner)
                    stop.set()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            self.close()

    def _lane_loop(self, lane: str, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                _, wait = self.run_due(lane)
                failures = 0
            except Exception:
                failures += 1
                wait = min(2.0**failures, 60.0)
                if failures == 1 or failures % 10 == 0:
                    logger.exception("scheduler lane %s cannot reach the database; trying again in %.0f s", lane, wait)
                self._known = False
            stop.wait(min(max(wait, 0.05), LONGEST_NAP_SECONDS))
