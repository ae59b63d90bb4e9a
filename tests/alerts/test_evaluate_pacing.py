"""The scheduler's pass pauses after each of its steps (alerts.services.evaluate._Pacer): the table of watched
devices, each shared aggregate, the site outages and each rule. A pause is a share of the step's own time, never
past a third of the interval, none after the last step, none when turned off. A paced pass runs on one core (no
parallel workers) and leaves the connection as it found it. The pauses are recorded, not slept, so nothing here is
timed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert
from alerts.services import evaluate
from tests import factories

CPU_90 = {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10}


def _parallel_workers() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_parallel_workers_per_gather")
        return cursor.fetchone()[0]


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(evaluate.time, "sleep", slept.append)
    return slept


def test_a_step_is_followed_by_a_pause_of_its_share_of_the_time(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    pacer = evaluate._Pacer(3)

    pacer.after_step(0.02)

    assert pauses == [pytest.approx(0.06)]


def test_the_pauses_stop_at_a_third_of_the_interval(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    settings.ALERT_EVALUATION_SECONDS = 60
    pacer = evaluate._Pacer(3)

    pacer.after_step(100.0)  # far beyond the 20 s budget: at most the budget shared by the two steps left

    assert len(pauses) == 1
    assert 0 < pauses[0] <= 10.0


def test_no_pause_after_the_last_step_nor_when_turned_off(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    evaluate._Pacer(1).after_step(0.5)
    evaluate._Pacer(5, enabled=False).after_step(0.5)
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 0
    evaluate._Pacer(5).after_step(0.5)

    assert pauses == []


def test_a_step_that_raises_is_still_followed_by_its_pause(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    pacer = evaluate._Pacer(2)

    with pytest.raises(RuntimeError), pacer.step():
        raise RuntimeError("a rule that fails")

    assert len(pauses) == 1


def test_a_paced_pass_pauses_after_every_step_and_runs_on_one_core(db, settings, monkeypatch, make_rule, now):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    device = factories.device(last_seen_at=now)
    org = device.org
    make_rule(org, CPU_90)
    make_rule(org, {**CPU_90, "value": 95})  # the same aggregate: one shared table
    make_rule(org, {"kind": "offline", "minutes": 15})
    with connection.cursor() as cursor:
        cursor.execute("SET max_parallel_workers_per_gather = 3")  # not the default: the pass puts back what it found
    workers_at_pauses: list[str] = []
    monkeypatch.setattr(evaluate.time, "sleep", lambda seconds: workers_at_pauses.append(_parallel_workers()))

    report = evaluate.evaluate_all(now=now, pace=True)

    # watched devices, one shared aggregate, site outages, three rules: six steps, a pause after each but the last
    assert report.rules == 3
    assert workers_at_pauses == ["0"] * 5
    assert _parallel_workers() == "3"
    assert not Alert.objects.exists()


def test_an_unpaced_pass_never_pauses_nor_touches_the_parallel_workers(db, pauses, make_rule, now):
    device = factories.device(last_seen_at=now)
    make_rule(device.org, CPU_90)
    make_rule(device.org, {**CPU_90, "value": 95})

    with CaptureQueriesContext(connection) as queries:
        report = evaluate.evaluate_all(now=now)

    assert report.rules == 2
    assert pauses == []
    assert not [query for query in queries.captured_queries if "max_parallel_workers" in query["sql"]]
