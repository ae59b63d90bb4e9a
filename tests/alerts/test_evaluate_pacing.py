"""The scheduler's pass pauses after each rule (alerts.services.evaluate._Pacer): a share of the rule's own time,
never past a third of the interval, none after the last rule, none when turned off. The pauses are recorded, not
slept, so nothing here is timed."""

from __future__ import annotations

import pytest

from alerts.services import evaluate


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(evaluate.time, "sleep", slept.append)
    return slept


def test_a_rule_is_followed_by_a_pause_of_its_share_of_the_time(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    pacer = evaluate._Pacer(rules=3)

    pacer.after_rule(0.02)

    assert pauses == [pytest.approx(0.06)]


def test_the_pauses_stop_at_a_third_of_the_interval(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    settings.ALERT_EVALUATION_SECONDS = 60
    pacer = evaluate._Pacer(rules=3)

    pacer.after_rule(100.0)  # far beyond the 20 s budget: at most the budget shared by the two rules left

    assert len(pauses) == 1
    assert 0 < pauses[0] <= 10.0


def test_no_pause_after_the_last_rule_nor_when_turned_off(settings, pauses):
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 300
    evaluate._Pacer(rules=1).after_rule(0.5)
    settings.ALERT_EVALUATION_PAUSE_PERCENT = 0
    evaluate._Pacer(rules=5).after_rule(0.5)

    assert pauses == []
