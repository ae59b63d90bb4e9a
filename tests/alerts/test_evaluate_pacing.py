"""The scheduler's pass pauses after each of its steps (alerts.services.evaluate._Pacer): the table of watched
devices, each slice of a shared aggregate, the site outages and each statement of a rule (a paced pass opens a
rule's alerts a few whole sites per statement). A pause is a share of the step's own time, never
past a third of the interval, none after the last step, none when turned off. A paced pass runs on one core (no
parallel workers) and leaves the connection as it found it. The pauses are recorded, not slept, so nothing here is
timed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert, AlertState, Notification, NotificationChannel
from alerts.services import evaluate
from tests import factories

OFFLINE = {"kind": "offline", "minutes": 15}
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


def test_a_paced_pass_writes_a_shared_aggregate_slice_by_slice_and_alerts_as_a_flat_out_pass(
    db, settings, monkeypatch, pauses, make_rule, add_samples, now, caplog
):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    monkeypatch.setattr(evaluate, "AGGREGATE_SLICE_DEVICES", 2)
    site = factories.site()
    devices = [factories.device(site, last_seen_at=now) for _ in range(5)]
    for number, device in enumerate(devices):
        add_samples(device, now, minutes=10, cpuPercent=91 + number)  # 91 … 95 % over the window
    above_92 = make_rule(site.org, {**CPU_90, "value": 92})
    above_94 = make_rule(site.org, {**CPU_90, "value": 94})

    with CaptureQueriesContext(connection) as queries:
        evaluate.evaluate_all(now=now, pace=True)
    paced = {
        rule.pk: sorted(a.device.hostname for a in Alert.objects.filter(rule=rule)) for rule in (above_92, above_94)
    }
    Alert.objects.all().delete()
    AlertState.objects.all().delete()
    evaluate.evaluate_all(now=now)
    flat_out = {
        rule.pk: sorted(a.device.hostname for a in Alert.objects.filter(rule=rule)) for rule in (above_92, above_94)
    }

    writes = [query["sql"] for query in queries.captured_queries]
    assert sum(sql.startswith("CREATE TEMPORARY TABLE alert_pass_metric_0") for sql in writes) == 1
    assert sum(sql.startswith("INSERT INTO alert_pass_metric_0") for sql in writes) == 2  # 5 devices, slices of 2
    assert not [r for r in caplog.records if "could not be computed" in r.getMessage()]  # no rule fell back
    assert paced == flat_out
    assert paced[above_92.pk] == sorted(d.hostname for d in devices[2:])
    assert paced[above_94.pk] == sorted(d.hostname for d in devices[4:])
    # watched devices, three slices, site outages, two rules: seven steps, a pause after each but the last
    assert len(pauses) == 6


def test_the_slices_cover_every_device_id_once(db, now):
    devices = sorted((factories.device(last_seen_at=now) for _ in range(5)), key=lambda device: device.pk)
    with evaluate.watched_devices(now=now) as watched:
        slices = watched.slices(2)

    assert slices == [(None, devices[2].pk), (devices[2].pk, devices[4].pk), (devices[4].pk, None)]
    with evaluate.watched_devices(now=now) as watched:
        assert watched.slices(5) == [(None, None)]
        assert [first for first, _ in watched.slices(1)] == [None, *(device.pk for device in devices[1:])]


def test_a_sliced_aggregate_over_the_rollups_has_the_values_of_a_whole_one(
    db, settings, monkeypatch, pauses, make_rule, add_samples, now, caplog
):
    from devices.services.telemetry import roll_up

    monkeypatch.setattr(evaluate, "AGGREGATE_SLICE_DEVICES", 1)
    site = factories.site()
    devices = [factories.device(site, last_seen_at=now) for _ in range(3)]
    for number, device in enumerate(devices):
        add_samples(device, now, minutes=180, every=1, cpuPercent=80 + number)  # older, rolled up
        add_samples(device, now - dt.timedelta(seconds=30), minutes=20, every=2, cpuPercent=99 - number)  # recent
    roll_up(now=now)
    window = {**CPU_90, "windowMinutes": 120, "value": 10}
    rules = [make_rule(site.org, window), make_rule(site.org, {**window, "value": 20})]

    def values() -> dict:
        return {(a.rule_id, a.device_id): a.value for a in Alert.objects.filter(rule__in=rules)}

    evaluate.evaluate_all(now=now, pace=True)
    paced = values()
    Alert.objects.all().delete()
    AlertState.objects.all().delete()
    evaluate.evaluate_all(now=now)

    assert not [r for r in caplog.records if "could not be computed" in r.getMessage()]  # no rule fell back
    assert len(paced) == 6
    assert paced == pytest.approx(values())
    assert len(set(paced.values())) == 3  # each device its own average


def test_a_slice_that_fails_leaves_its_rules_to_aggregate_for_themselves(
    db, settings, monkeypatch, pauses, make_rule, add_samples, now, caplog
):
    monkeypatch.setattr(evaluate, "AGGREGATE_SLICE_DEVICES", 1)
    site = factories.site()
    hot, cool = (factories.device(site, last_seen_at=now) for _ in range(2))
    add_samples(hot, now, minutes=10, cpuPercent=95)
    add_samples(cool, now, minutes=10, cpuPercent=50)
    rules = [make_rule(site.org, CPU_90), make_rule(site.org, {**CPU_90, "value": 80})]
    whole = evaluate.conditions.metric_aggregate_sql

    def second_slice_fails(condition, now, *, devices=None):
        if devices is not None and devices[0] is not None:
            raise RuntimeError("a slice that cannot be read")
        return whole(condition, now, devices=devices)

    monkeypatch.setattr(evaluate.conditions, "metric_aggregate_sql", second_slice_fails)

    report = evaluate.evaluate_all(now=now, pace=True)

    assert [r for r in caplog.records if "could not be computed" in r.getMessage()]
    assert report.rules == 2 and not report.failed_rules
    assert {a.device_id for a in Alert.objects.filter(rule__in=rules)} == {hot.pk}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'alert_pass_%%' AND relpersistence = 't'")
        assert cursor.fetchone()[0] == 0


def _silent_devices(site, count: int, now: dt.datetime) -> list:
    return [factories.device(site, last_seen_at=now - dt.timedelta(hours=1)) for _ in range(count)]


def _rule_statements(queries: CaptureQueriesContext) -> int:
    return sum("wanted_sites" in query["sql"] for query in queries.captured_queries)


def test_a_statement_opens_whole_sites_up_to_its_limit_and_leaves_the_others_holding_for_the_next(db, make_rule, now):
    big = factories.site()
    small = factories.site(big.org)
    devices = {big.pk: _silent_devices(big, 3, now), small.pk: _silent_devices(small, 2, now)}
    rule = make_rule(big.org, OFFLINE)

    with evaluate.watched_devices(now=now) as watched:
        first = evaluate.evaluate_rule(rule, now=now, watched=watched, open_limit=1)
        (first_site,) = {alert.site_id for alert in Alert.objects.filter(pk__in=first.opened)}  # one site, whole
        (later_site,) = set(devices) - {first_site}
        holding = AlertState.objects.filter(rule=rule, device__site_id=later_site)
        holding_since = sorted(state.holding_since for state in holding)
        second = evaluate.evaluate_rule(rule, now=now, watched=watched, open_limit=1)
        third = evaluate.evaluate_rule(rule, now=now, watched=watched, open_limit=1)

    assert len(first.opened) == len(devices[first_site])
    assert first.deferred == len(devices[later_site])
    assert holding_since == [now] * len(devices[later_site])
    assert {alert.device_id for alert in Alert.objects.filter(pk__in=second.opened)} == {
        device.pk for device in devices[later_site]
    }
    assert second.deferred == 0
    assert (third.opened, third.resolved, third.deferred) == ([], [], 0)


def test_a_paced_pass_opens_a_rules_alerts_in_statements_of_whole_sites_each_announced_as_a_flat_out_pass(
    db, settings, monkeypatch, pauses, make_rule, now
):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    settings.ALERT_DIGEST_THRESHOLD = 2
    monkeypatch.setattr(evaluate, "OPENINGS_PER_STATEMENT", 3)
    first = factories.site()
    for site, count in ((first, 2), (factories.site(first.org), 3), (factories.site(first.org), 2)):
        _silent_devices(site, count, now)
    rule = make_rule(first.org, OFFLINE)
    rule.channels.set(
        [NotificationChannel.objects.create(org=first.org, name="Mail", kind="email", config={"to": ["a@b.co"]})]
    )

    with CaptureQueriesContext(connection) as queries:
        report = evaluate.evaluate_all(now=now, pace=True)
    paused = len(pauses)
    again = evaluate.evaluate_all(now=now, pace=True)

    # 7 openings at most 3 a statement, whole sites: two statements, whatever the order of the sites (2+3 | 2,
    # 3 | 2+2, 2+2 | 3)
    assert _rule_statements(queries) == 2
    assert (report.rules, report.opened, Alert.objects.count()) == (1, 7, 7)
    # the site of 3 (above the threshold of 2) has a digest, the others an opening each: as one statement announces
    assert sorted(Notification.objects.values_list("event", flat=True)) == ["alert.digest"] + ["alert.opened"] * 4
    # watched devices, site outages, two statements of the rule: four steps, a pause after each but the last
    assert paused == 3
    assert (again.opened, again.resolved) == (0, 0)


def test_an_unpaced_pass_opens_every_alert_of_a_rule_in_one_statement(db, monkeypatch, make_rule, now):
    monkeypatch.setattr(evaluate, "OPENINGS_PER_STATEMENT", 1)
    first = factories.site()
    for site in (first, factories.site(first.org)):
        _silent_devices(site, 2, now)
    make_rule(first.org, OFFLINE)

    with CaptureQueriesContext(connection) as queries:
        report = evaluate.evaluate_all(now=now)

    assert _rule_statements(queries) == 1
    assert report.opened == 4
