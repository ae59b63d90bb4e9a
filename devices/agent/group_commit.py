"""Group commit: one writer per server process writes the heartbeats of many concurrent requests at once.

A request validates its heartbeat, hands it to the writer and waits. The writer waits AGENT_GROUP_COMMIT_LINGER_MS
for more to arrive, takes every heartbeat that is waiting (up to AGENT_GROUP_COMMIT_MAX_BATCH), writes them with
two statements (``devices.agent.heartbeat.process_heartbeats``), and only after the write is committed releases
the waiting requests, so a 200 still means the telemetry is durable. What arrives while one batch is written is
the next batch.

Measured reason (bench/RESULTS.md): per heartbeat, a batch of one costs PostgreSQL ~500 µs of CPU and Python
~200 µs (round trips, commit, psycopg); a batch of ten ~70 µs and ~40 µs. Waiting 5 ms for the batch to fill took
the whole machine from 1.88 to 1.30 busy cores at 2,000 heartbeats/s, with p99 going from 40 to 27 ms.

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

from django.conf import settings
from django.db import connection

logger = logging.getLogger("devices.agent")


class WriterUnavailable(Exception):
    """The batch could not be written (database down, or no answer in time); nothing of it was committed."""


class _Ticket:
    __slots__ = ("abandoned", "done", "error", "job")

    def __init__(self, job) -> None:
        self.job = job
        self.done = threading.Lock()
        self.done.acquire()
        self.error: BaseException | None = None
        self.abandoned = False


class GroupCommitter:
    """A queue and the thread that drains it in batches; started lazily in each (forked) process."""

    def __init__(self, process_batch: Callable[[list], None], *, name: str) -> None:
        self._process_batch = process_batch
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Ticket] = []
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._batches, self._jobs, self._seconds, self._slowest, self._reported_at = 0, 0, 0.0, 0.0, time.monotonic()

    def _ensure_writer(self) -> None:
        # Called with self._cond held. A forked worker inherits the object but not the thread.
        if self._pid != os.getpid() or self._thread is None:
            self._pid = os.getpid()
            self._queue = []
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer and close its connection (a worker's exit, a test's end)."""
        with self._cond:
            thread = self._thread if self._pid == os.getpid() else None
            if thread is None:
                return
            self._stopping = True
            self._cond.notify()
        thread.join(timeout)
        with self._cond:
            self._thread = None

    def submit(self, job, *, timeout: float = 20.0) -> None:
        """Queue ``job`` and wait until the batch holding it is committed; raise ``WriterUnavailable`` if not."""
        ticket = _Ticket(job)
        with self._cond:
            self._ensure_writer()
            self._queue.append(ticket)
            self._cond.notify()
        if not ticket.done.acquire(timeout=timeout):
            ticket.abandoned = True  # the writer skips it if it has not taken it yet
            raise WriterUnavailable("the heartbeat writer did not answer in time")
        if ticket.error is not None:
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
                    connection.close()
                    return
            if linger and not self._stopping:
                # Let more heartbeats join the batch: per heartbeat, a batch of 10 costs PostgreSQL and Python a
                # fifth of what a batch of 1-3 does (bench/RESULTS.md), for a few milliseconds of latency.
                time.sleep(linger)
            with self._cond:
                batch = self._queue[:max_batch]
                del self._queue[:max_batch]
            batch = [ticket for ticket in batch if not ticket.abandoned]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                self._process_batch([ticket.job for ticket in batch])
                self._count(len(batch), time.perf_counter() - started)
            except Exception as exc:
                logger.exception("group commit: a batch of %d failed; none of it was committed", len(batch))
                for ticket in batch:
                    ticket.error = exc
                # A broken connection is replaced on the next batch rather than failing every batch after it.
                try:
                    connection.close()
                except Exception:
                    logger.exception("group commit: closing the connection failed")
            finally:
                for ticket in batch:
                    ticket.done.release()
