"""Several app servers may run the evaluator: two passes racing still open (and announce) one alert."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import transaction

from alerts.models import Alert, AlertState, Notification, NotificationChannel
from alerts.services.evaluate import evaluate_all
from tests import factories
from tests.concurrency import run_concurrently

MIN = dt.timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_racing_open_one_alert_and_announce_it_once(now, make_rule):
    site = factories.site()
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    rule.channels.set([channel])
    first_wrote = threading.Event()

    def evaluator(n: int):
        if n == 0:
            with transaction.atomic():
                report = evaluate_all(now=now)
                first_wrote.set()
                time.sleep(1)  # the first pass's writes stay uncommitted while the second runs its statement
            return report
        assert first_wrote.wait(10)
        return evaluate_all(now=now)

    reports = run_concurrently(2, evaluator)

    assert sorted(report.opened for report in reports) == [0, 1]
    assert not any(report.failed_rules for report in reports)
    assert Alert.objects.filter(rule=rule, device=device).count() == 1
    assert AlertState.objects.filter(rule=rule).get().holding_since == now
    assert Notification.objects.filter(event="alert.opened").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_racing_resolve_an_alert_once(now, make_rule):
    site = factories.site()
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    evaluate_all(now=now)
    type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
    first_wrote = threading.Event()

    def evaluator(n: int):
        if n == 0:
            with transaction.atomic():
                report = evaluate_all(now=now + MIN)
                first_wrote.set()
                time.sleep(1)
            return report
        assert first_wrote.wait(10)
        return evaluate_all(now=now + MIN)

    reports = run_concurrently(2, evaluator)

    assert sorted(report.resolved for report in reports) == [0, 1]
    assert not any(report.failed_rules for report in reports)
    assert Alert.objects.get(rule=rule).status == "resolved"
