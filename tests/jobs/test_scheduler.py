"""The scheduler's rules (jobs/scheduler.py), driven in this process: each tick once, a lane at a time, failures
recorded and retried, a dead runner's run taken over, cadences from the settings."""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from jobs.models import JobRun, Outcome, ScheduledJob
from jobs.registry import PeriodicJob, all_jobs
from jobs.scheduler import LOCK_NAMESPACE, Scheduler
from tests.servers import url_of_test_database

pytestmark = pytest.mark.django_db(transaction=True)  # the scheduler's own connection must see committed rows


class Counter:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self) -> str:
        self.calls += 1
        if self.fail:
            raise RuntimeError(f"broken on call {self.calls}")
        return f"call {self.calls}"


def job(name: str, run, *, every: int = 60, lane: str = "") -> PeriodicJob:
    return PeriodicJob(name=name, run=run, every=lambda: every, description=name, lane=lane)


def overdue(name: str) -> None:
    ScheduledJob.objects.filter(name=name).update(next_run_at=timezone.now() - dt.timedelta(seconds=1))


def test_a_job_runs_once_per_tick_and_again_when_the_next_is_due():
    counter = Counter()
    scheduler = Scheduler([job("count", counter)], runner="test:1")

    first = scheduler.run_all_due()
    assert [(r.job, r.outcome, r.report) for r in first] == [("count", "ok", "call 1")]
    assert scheduler.run_all_due() == [] and counter.calls == 1  # not due again for 60 s

    row = ScheduledJob.objects.get(name="count")
    assert row.interval_seconds == 60 and row.runs == 1 and row.last_outcome == "ok" and row.running_since is None
    assert 59 <= (row.next_run_at - row.last_started_at).total_seconds() <= 61
    assert row.last_report == "call 1" and row.runner == "test:1"

    overdue("count")
    assert [r.report for r in scheduler.run_all_due()] == ["call 2"]
    runs = list(JobRun.objects.filter(job_id="count").order_by("started_at"))
    assert [(r.outcome, r.report, r.runner) for r in runs] == [("ok", "call 1", "test:1"), ("ok", "call 2", "test:1")]
    assert len({r.scheduled_for for r in runs}) == 2 and all(r.duration_ms is not None for r in runs)


def test_two_schedulers_on_one_database_run_each_tick_once():
    counter = Counter()
    one, two = (Scheduler([job("count", counter)], runner=f"test:{n}") for n in (1, 2))
    for _ in range(3):
        one.run_all_due()
        two.run_all_due()
    assert counter.calls == 1
    overdue("count")
    two.run_all_due()
    one.run_all_due()
    assert counter.calls == 2
    assert list(JobRun.objects.order_by("started_at").values_list("runner", flat=True)) == ["test:1", "test:2"]


def test_a_tick_is_never_recorded_twice():
    Scheduler([job("count", Counter())]).run_all_due()
    run = JobRun.objects.get()
    with pytest.raises(Exception, match="job_runs_one_run_per_tick"):
        JobRun.objects.create(job_id="count", scheduled_for=run.scheduled_for, started_at=timezone.now(), runner="x")


def test_a_lane_another_process_holds_is_not_run():
    counter = Counter()
    scheduler = Scheduler([job("count", counter, lane="shared")])
    try:
        with psycopg.connect(url_of_test_database(), autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s, hashtext('shared'))", [LOCK_NAMESPACE])
            results, wait = scheduler.run_due("shared")
            assert results == [] and counter.calls == 0 and wait == 1.0
            other.execute("SELECT pg_advisory_unlock(%s, hashtext('shared'))", [LOCK_NAMESPACE])
        assert [r.job for r in scheduler.run_due("shared")[0]] == ["count"]
    finally:
        scheduler.close()


def test_a_failing_job_is_logged_recorded_and_retried_at_its_next_tick(caplog):
    broken = Counter(fail=True)
    scheduler = Scheduler([job("broken", broken), job("fine", Counter())], runner="test:1")
    with caplog.at_level(logging.ERROR, logger="rmm.jobs"):
        results = {r.job: r for r in scheduler.run_all_due()}
    assert results["broken"].outcome == "failed" and results["broken"].report == "RuntimeError: broken on call 1"
    assert results["fine"].outcome == "ok"  # one job's failure is its own
    assert "periodic job broken failed" in caplog.text and "RuntimeError: broken on call 1" in caplog.text

    overdue("broken")
    scheduler.run_all_due()
    row = ScheduledJob.objects.get(name="broken")
    assert (row.last_outcome, row.consecutive_failures, row.failures, row.runs) == ("failed", 2, 2, 2)
    assert row.last_succeeded_at is None and row.running_since is None

    broken.fail = False
    overdue("broken")
    scheduler.run_all_due()
    row.refresh_from_db()
    assert (row.last_outcome, row.consecutive_failures, row.failures, row.runs) == ("ok", 0, 2, 3)
    assert row.last_succeeded_at is not None


def test_the_run_of_a_process_that_died_is_marked_interrupted_and_run_again_at_once():
    counter = Counter()
    scheduler = Scheduler([job("count", counter, every=3600)])
    scheduler.run_all_due()
    # A process claimed the next tick and died in the middle of the run: its lock is gone, its marks are not.
    row = ScheduledJob.objects.get(name="count")
    ScheduledJob.objects.filter(name="count").update(running_since=timezone.now(), runner="dead:1")
    JobRun.objects.create(
        job_id="count", scheduled_for=row.next_run_at, started_at=timezone.now(), runner="dead:1", outcome="running"
    )

    assert [r.job for r in scheduler.run_all_due()] == ["count"]  # not due for an hour, yet run now
    assert counter.calls == 2
    dead = JobRun.objects.get(runner="dead:1")
    assert dead.outcome == Outcome.INTERRUPTED and dead.finished_at is not None


def test_a_changed_cadence_takes_effect_at_once(settings):
    counter = Counter()
    Scheduler([job("count", counter, every=3600)]).run_all_due()
    settings.SCHEDULER_INTERVALS = {"count": 1}
    ScheduledJob.objects.filter(name="count").update(last_started_at=timezone.now() - dt.timedelta(seconds=5))
    results = Scheduler([job("count", counter, every=3600)]).run_all_due()
    assert [r.job for r in results] == ["count"]
    assert ScheduledJob.objects.get(name="count").interval_seconds == 1


def test_the_registry_holds_the_periodic_work_and_refuses_unknown_names_in_the_settings(settings):
    names = {j.name for j in all_jobs()}
    assert {
        "mark_offline",
        "expire_commands",
        "refresh_groups",
        "refresh_time_based_groups",
        "reconcile_groups",
        "rollup_telemetry",
        "telemetry_partitions",
        "purge_throttles",
    } <= names
    assert {j.lane for j in all_jobs() if "groups" in j.name} == {"groups"}  # never two group refreshes at once
    settings.SCHEDULER_INTERVALS = {"mark_ofline": 10}
    with pytest.raises(ImproperlyConfigured, match="SCHEDULER_INTERVALS names no such job: mark_ofline"):
        all_jobs()


def test_manage_jobs_lists_every_job_and_runs_one_on_request(capsys):
    call_command("jobs")
    listing = capsys.readouterr().out
    assert all(j.name in listing for j in all_jobs()) and "never" in listing

    call_command("jobs", "--run", "mark_offline")
    assert "mark_offline: ok, devices marked offline: 0" in capsys.readouterr().out
    call_command("jobs")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mark_offline"))
    assert " ok " in line and "devices marked offline: 0" in line and "s ago" in line

    with pytest.raises(CommandError, match="No such job: nope"):
        call_command("jobs", "--run", "nope")


def test_run_periodic_runs_what_is_due_and_says_when_nothing_is(capsys):
    call_command("run_periodic")
    first = capsys.readouterr().out
    assert "mark_offline: ok" in first and "telemetry_partitions: ok" in first
    call_command("run_periodic")
    assert "no job is due" in capsys.readouterr().out


def test_manage_check_and_the_scheduler_refuse_an_interval_for_no_job(settings):
    settings.SCHEDULER_INTERVALS = {"mark_ofline": 10}
    with pytest.raises(SystemCheckError, match=r"jobs\.E001.*names no such job: mark_ofline"):
        call_command("check")
    with pytest.raises(CommandError, match="names no such job: mark_ofline"):
        call_command("run_scheduler")
