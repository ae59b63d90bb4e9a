"""Group commit: one writer per server process writes the heartbeats of many concurrent requests at once.

A request validates its heartbeat, hands it to the writer and waits. The writer waits AGENT_GROUP_COMMIT_LINGER_MS
for more to arrive, takes every heartbeat that is waiting (up to AGENT_GROUP_COMMIT_MAX_BATCH), writes them with
two statements (``devices.agent_api.heartbeat.process_heartbeats``), and only after the write is committed releases
the waiting requests, so a 200 still means the telemetry is durable. What arrives while one batch is written is
the next batch.

Why: per heartbeat, a batch of ten costs PostgreSQL and Python a fifth or less of what a batch of one does, and a
few milliseconds of linger to fill batches is the cheapest way to get there (bench/RESULTS.md, "How the hot path
got there", has the figures).

An answer never contradicts what was stored (issue 10, item 5):

- A request that waited ``QUEUE_WAIT_SECONDS`` without the writer taking its job withdraws it, and the decision
  "withdrawn or taken" is made under the queue's lock, so a withdrawn job is never written (503, nothing stored).
  A job the writer has taken is waited for until its outcome is known, whatever the wait.
- That wait is bounded because the writer's own work is: its connection runs with ``lock_timeout`` and
  ``statement_timeout`` of AGENT_GROUP_COMMIT_TIMEOUT_MS (default 5 s, set once per connection, no round trip per
  batch). A batch that hits the bound (a row lock held by someone else, a stuck statement) fails as a whole,
  nothing of it is committed, and each of its requests is answered 503. Worst case for a request: the queue wait
  (10 s) plus two bounded statements, under the 30 s an agent waits for an answer (``bench/sim.py --timeout``).

One job never fails the others (issue 10, item 2): validation refuses what PostgreSQL would refuse, but when a batch
still fails for something other than the database being unreachable or slow (an error of the data: a value
PostgreSQL refused), each of its jobs that is not settled yet is written again alone, in a fresh statement, so
only the job at fault fails: ``JobRefused`` (400) when the database refused its own data, 503 otherwise. A job the
failed call had already committed (``settled``) is answered as usual and never written twice. The retry runs only
after a failure, within one more AGENT_GROUP_COMMIT_TIMEOUT_MS; jobs it has not reached by then get 503.

Under gunicorn's gevent workers the writer is a greenlet (threading is monkey-patched); elsewhere a thread. It is
only used when the request's thread has no transaction open: inside one (a test's transaction, ATOMIC_REQUESTS)
the writer's own connection could not see that transaction's rows, so the heartbeat is then written inline, by
the same code, as a batch of one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.utils import InterfaceError as DjangoInterfaceError
from django.db.utils import OperationalError as DjangoOperationalError

logger = logging.getLogger("devices.agent_api")

# How long a request waits for the writer to take its job before withdrawing it (503, nothing stored).
QUEUE_WAIT_SECONDS = 10.0

# Set once on the writer's connection, and reset before the connection goes back to the pool.
_BOUND_WRITER = "SELECT set_config('lock_timeout', %(bound)s, false), set_config('statement_timeout', %(bound)s, false)"
_UNBOUND_WRITER = "RESET lock_timeout; RESET statement_timeout"


class WriterUnavailable(Exception):
    """The job could not be written (database down or slow, no answer in time); nothing of it was committed."""


class JobRefused(Exception):
    """The job failed alone with an error of its own data (the database refused a value); nothing of it was
    committed, and sending it again would fail again."""


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the database (or the driver, before sending) refusing a value: the job's own fault."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError | UnicodeError):
        return True
    cause = exc.__cause__
    return isinstance(exc, DatabaseError) and cause is not None and cause is not exc and is_data_error(cause)


def _is_about_the_database(exc: BaseException) -> bool:
    """Unreachable, lost, too slow (lock or statement timeout), shutting down: retrying each job alone would only
    wait again, once per job."""
    unreachable = (psycopg.OperationalError, psycopg.InterfaceError, DjangoOperationalError, DjangoInterfaceError)
    return isinstance(exc, unreachable)


class _Ticket:
    __slots__ = ("done", "error", "job", "taken")

    def __init__(self, job) -> None:
        self.job = job
        self.done = threading.Lock()
        self.done.acquire()
        self.error: BaseException | None = None
        self.taken = False  # set by the writer, under the queue's lock, when it takes the job into a batch


JobT = TypeVar("JobT")


class GroupCommitter(Generic[JobT]):
    """A queue and the thread that drains it in batches; started lazily in each (forked) process.

    ``process_batch(jobs)`` writes jobs; when it raises, ``settled(job)`` tells which of them it had committed
    before the error (answered as usual, never written again), and ``describe(job)`` names a job in the log.
    ``timeout_ms()``, when given, is the lock and statement timeout of the writer's database connection, and also
    how long writing a failed batch's jobs one by one may take.
    """

    def __init__(
        self,
        process_batch: Callable[[list[JobT]], None],
        *,
        name: str,
        settled: Callable[[JobT], bool] = lambda job: False,
        describe: Callable[[JobT], str] = repr,
        timeout_ms: Callable[[], int] | None = None,
    ) -> None:
        self._process_batch = process_batch
        self._timeout_ms = timeout_ms
        self._settled = settled
        self._describe = describe
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Ticket] = []
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        # The psycopg connection the writer's timeouts were set on.
        self._bounded_connection: psycopg.Connection | None = None
        self._batches, self._jobs, self._seconds, self._slowest, self._reported_at = 0, 0, 0.0, 0.0, time.monotonic()

    def _ensure_writer(self) -> None:
        # Called with self._cond held. A forked worker inherits the object but not the thread.
        if self._pid != os.getpid() or self._thread is None:
            self._pid = os.getpid()
            self._queue = []
            self._stopping = False
            self._bounded_connection = None
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer and give back its connection (a worker's exit, a test's end)."""
        with self._cond:
            thread = self._thread if self._pid == os.getpid() else None
            if thread is None:
                return
            self._stopping = True
            self._cond.notify()
        thread.join(timeout)
        with self._cond:
            self._thread = None

    def submit(self, job, *, timeout: float = QUEUE_WAIT_SECONDS) -> None:
        """Queue ``job`` and wait until it is committed; raise ``WriterUnavailable`` (nothing of it stored) or
        ``JobRefused``.

        ``timeout`` bounds the wait in the queue only: a job the writer has taken is waited for until its outcome
        is known (bounded by the writer's statement and lock timeouts), so the answer always agrees with what was
        stored.
        """
        ticket = _Ticket(job)
        with self._cond:
            self._ensure_writer()
            self._queue.append(ticket)
            self._cond.notify()
        if not ticket.done.acquire(timeout=timeout):
            with self._cond:
                if not ticket.taken:  # withdrawn: the writer will never see it
                    self._queue.remove(ticket)
                    raise WriterUnavailable("the heartbeat writer did not take it in time; nothing was stored")
            ticket.done.acquire()
        if ticket.error is not None:
            if isinstance(ticket.error, JobRefused):
                raise ticket.error
            raise WriterUnavailable(str(ticket.error)) from ticket.error

    def _count(self, size: int, seconds: float) -> None:
        # Batch sizes and times, logged at DEBUG every 10 s: what to look at when tuning workers and threads.
        self._batches += 1
        self._jobs += size
        self._seconds += seconds
        self._slowest = max(self._slowest, seconds)
        now = time.monotonic()
        if now - self._reported_at >= 10 and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "group commit (pid %d): %d batches, %.1f heartbeats per batch, %.1f ms per batch, slowest %.1f ms",
                os.getpid(),
                self._batches,
                self._jobs / self._batches,
                1000 * self._seconds / self._batches,
                1000 * self._slowest,
            )
            self._batches, self._jobs, self._seconds, self._slowest, self._reported_at = 0, 0, 0.0, 0.0, now

    def _run(self) -> None:
        max_batch = settings.AGENT_GROUP_COMMIT_MAX_BATCH
        linger = settings.AGENT_GROUP_COMMIT_LINGER_MS / 1000
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:  # stopping, and nothing left to write
                    self._release_connection()
                    return
            if linger and not self._stopping:
                # Let more heartbeats join the batch: per heartbeat, a batch of 10 costs PostgreSQL and Python a
                # fifth of what a batch of 1-3 does (bench/RESULTS.md), for a few milliseconds of latency.
                time.sleep(linger)
            with self._cond:
                batch = self._queue[:max_batch]
                del self._queue[:max_batch]
                for ticket in batch:
                    ticket.taken = True
            try:
                self._write(batch)
            finally:
                for ticket in batch:
                    ticket.done.release()

    def _write(self, batch: list[_Ticket]) -> None:
        started = time.perf_counter()
        try:
            self._bound_connection()
            self._process_batch([ticket.job for ticket in batch])
        except Exception as exc:
            self._after_failure(exc)
            unsettled = [ticket for ticket in batch if not self._settled(ticket.job)]
            if len(unsettled) > 1 and not _is_about_the_database(exc):
                logger.warning(
                    "group commit: a batch of %d failed (%s: %s); writing its %d unsettled jobs one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                    len(unsettled),
                )
                self._write_one_by_one(unsettled)
            else:
                logger.error(
                    "group commit: a batch of %d failed; %d of its jobs were not committed",
                    len(batch),
                    len(unsettled),
                    exc_info=exc,
                )
                # One unsettled job: the failed statement was its alone, so a refused value is its own fault.
                refused = len(unsettled) == 1 and is_data_error(exc)
                for ticket in unsettled:
                    ticket.error = JobRefused(str(exc)) if refused else exc
        else:
            self._count(len(batch), time.perf_counter() - started)

    def _write_one_by_one(self, tickets: list[_Ticket]) -> None:
        """After a failed batch: each job alone, so only the one at fault fails (module docstring)."""
        deadline = time.monotonic() + (self._timeout_ms() / 1000 if self._timeout_ms else QUEUE_WAIT_SECONDS)
        gave_up: BaseException | None = None
        for ticket in tickets:
            if self._settled(ticket.job):
                continue
            if gave_up is None and time.monotonic() > deadline:
                gave_up = WriterUnavailable("a failed batch could not be written again in time")
            if gave_up is not None:
                ticket.error = gave_up
                continue
            try:
                self._bound_connection()
                self._process_batch([ticket.job])
            except Exception as exc:
                self._after_failure(exc)
                refused = is_data_error(exc)
                logger.error(
                    "group commit: %s failed on its own (%s); answered %s",
                    self._describe(ticket.job),
                    type(exc).__name__,
                    400 if refused else 503,
                    exc_info=exc,
                )
                ticket.error = JobRefused(str(exc)) if refused else exc
                if _is_about_the_database(exc):
                    gave_up = exc  # the database itself is the problem now: the others would only wait for it

    def _bound_connection(self) -> None:
        """Give the writer's connection its lock and statement timeouts, once per connection."""
        if self._timeout_ms is None:
            return
        connection.close_if_health_check_failed()  # a connection the server closed is replaced, as raw_cursor does
        connection.ensure_connection()
        raw = connection.connection
        if raw is not self._bounded_connection:
            bound = f"{self._timeout_ms()}ms"
            raw.execute(_BOUND_WRITER, {"bound": bound})
            self._bounded_connection = raw

    def _after_failure(self, exc: BaseException) -> None:
        """Keep a connection that is still fine (a refused value, a timeout: it is idle again); replace any other."""
        raw = connection.connection
        if raw is None or raw.closed or raw.broken:
            self._bounded_connection = None
            try:
                connection.close()
            except Exception:
                logger.exception("group commit: closing the connection failed")
            return
        if connection.in_atomic_block or raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._release_connection()

    def _release_connection(self) -> None:
        """Give the connection back (to the pool) without the writer's timeouts, which are for the writer only."""
        raw = connection.connection
        try:
            if raw is not None and raw is self._bounded_connection and not (raw.closed or raw.broken):
                if raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    raw.execute(_UNBOUND_WRITER)
                else:
                    raw.close()  # in a transaction it could not be reset: the pool discards a closed connection
        except Exception:
            logger.exception("group commit: resetting the connection's timeouts failed")
        self._bounded_connection = None
        try:
            connection.close()
        except Exception:
            logger.exception("group commit: closing the connection failed")
