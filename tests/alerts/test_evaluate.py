"""The evaluator: every condition kind against a device that matches, one that does not and one without data; the
clock (for_minutes, hysteresis, cooldown) driven through ``now=``; suppression by status and windows; scope;
idempotence; and the preview."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert, AlertState, MaintenanceWindow, Notification, NotificationChannel
from alerts.services.evaluate import evaluate_all, preview
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership, DeviceSoftware
from tests import factories

MIN = dt.timedelta(minutes=1)
CPU_90 = {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10}


def active(rule=None, **filters):
    alerts = Alert.objects.filter(status__in=["open", "acknowledged"], **filters)
    return alerts.filter(rule=rule) if rule is not None else alerts


@pytest.fixture
def site(db):
    return factories.site()


@pytest.fixture
def two(site, now):
    """Two devices of one site, both seen just now."""
    return [factories.device(site, hostname=name, last_seen_at=now) for name in ("srv-sql-01", "srv-web-01")]


# --- metric ---------------------------------------------------------------------------------------------------


def test_a_metric_rule_opens_for_the_device_whose_average_is_above_and_not_for_the_other(
    site, two, now, make_rule, add_samples
):
    hot, cool = two
    add_samples(hot, now, minutes=10, cpuPercent=96.4)
    add_samples(cool, now, minutes=10, cpuPercent=50)
    rule = make_rule(site.org, CPU_90)

    report = evaluate_all(now=now)

    assert report.opened == 1
    alert = active(rule).get()
    assert alert.device == hot
    assert alert.title == "CPU above 90 % (avg 96.4 % over 10 min) on srv-sql-01"
    assert alert.value == pytest.approx(96.4)
    assert alert.severity == rule.severity
    assert (alert.org_id, alert.site_id, alert.subject, alert.opened_at) == (site.org_id, site.pk, "", now)


def test_rules_sharing_an_aggregate_read_it_once_and_each_alerts_only_in_its_own_scope(
    site, two, now, make_rule, add_samples
):
    other_site = factories.site(site.org, name="Branch")
    hot, cool = two
    far = factories.device(other_site, hostname="srv-far-01", last_seen_at=now)
    silent = factories.device(other_site, hostname="srv-silent-01", last_seen_at=now)  # no sample: no data
    add_samples(hot, now, minutes=10, cpuPercent=96.4)
    add_samples(cool, now, minutes=10, cpuPercent=50)
    add_samples(far, now, minutes=10, cpuPercent=99)
    here = make_rule(site.org, CPU_90, site=site)
    there = make_rule(site.org, {**CPU_90, "value": 98}, site=other_site)  # same aggregate, another threshold
    everywhere = make_rule(site.org, {**CPU_90, "op": "<", "value": 60})

    with CaptureQueriesContext(connection) as queries:
        report = evaluate_all(now=now)

    shared = [q["sql"] for q in queries.captured_queries if "alert_pass_metric_0" in q["sql"]]
    assert sum("CREATE TEMPORARY TABLE" in sql for sql in shared) == 1
    assert report.opened == 3
    assert [a.device for a in active(here)] == [hot]
    assert [a.device for a in active(there)] == [far]
    assert [a.device for a in active(everywhere)] == [cool]
    assert active(here).get().value == pytest.approx(96.4)
    assert not active(device=silent).exists()
    assert AlertState.objects.filter(device=silent).count() == 0
    # The same answers as each rule evaluated alone, from the samples (no shared table: one metric rule).
    Alert.objects.all().delete()
    AlertState.objects.all().delete()
    for rule in (here, there, everywhere):
        type(rule).objects.exclude(pk=rule.pk).update(enabled=False)
        type(rule).objects.filter(pk=rule.pk).update(enabled=True)
        evaluate_all(now=now)
    assert sorted(a.device.hostname for a in active()) == ["srv-far-01", "srv-sql-01", "srv-web-01"]


def test_an_average_is_not_every_sample_a_spike_opens_a_max_rule_only(site, two, now, make_rule, add_samples):
    device, _ = two
    add_samples(device, now, minutes=10, cpuPercent=40)
    add_samples(device, now - dt.timedelta(seconds=20), ramPercent=1)  # a sample without cpu counts for nothing
    add_samples(device, now - dt.timedelta(seconds=30), cpuPercent=99)  # the one spike
    avg_rule = make_rule(site.org, CPU_90)
    max_rule = make_rule(site.org, {**CPU_90, "aggregate": "max"})
    min_rule = make_rule(site.org, {**CPU_90, "aggregate": "min", "op": "<", "value": 41})

    evaluate_all(now=now)

    assert not active(avg_rule).exists()
    assert active(max_rule).get().value == 99
    assert active(min_rule).get().value == 40


def test_samples_outside_the_window_do_not_count(site, two, now, make_rule, add_samples):
    device, _ = two
    add_samples(device, now - 11 * MIN, minutes=30, cpuPercent=99)  # all older than the 10-minute window
    add_samples(device, now + MIN, cpuPercent=99)  # after "now": not yet
    rule = make_rule(site.org, CPU_90)

    evaluate_all(now=now)

    assert not active(rule).exists()
    assert not AlertState.objects.filter(rule=rule).exists()


def test_no_sample_is_no_data_it_neither_opens_nor_resolves(site, two, now, make_rule, add_samples):
    device, silent = two
    add_samples(device, now, minutes=10, cpuPercent=95)
    add_samples(silent, now, minutes=10, ramPercent=10)  # samples, but none of this metric (NULL)
    rule = make_rule(site.org, CPU_90)
    evaluate_all(now=now)
    assert list(active(rule).values_list("device", flat=True)) == [device.pk]

    later = now + 30 * MIN  # the device stopped sending: no sample in the window
    evaluate_all(now=later)

    alert = active(rule).get()
    assert alert.device == device
    assert alert.status == "open"
    assert not active(rule, device=silent).exists()


def test_a_long_window_reads_the_rollups_where_they_are_complete(site, two, now, make_rule, add_samples):
    from devices.services.telemetry import roll_up

    device, other = two
    add_samples(device, now, minutes=180, every=1, cpuPercent=95)
    add_samples(other, now, minutes=180, every=1, cpuPercent=50)
    roll_up(now=now)
    rule = make_rule(site.org, {**CPU_90, "windowMinutes": 120})

    evaluate_all(now=now)

    alert = active(rule).get()
    assert alert.device == device
    assert alert.value == pytest.approx(95)


# --- offline --------------------------------------------------------------------------------------------------


def test_an_offline_rule_opens_for_a_device_silent_past_its_minutes(site, now, make_rule):
    silent = factories.device(site, hostname="silent", last_seen_at=now - 20 * MIN)
    factories.device(site, hostname="chatty", last_seen_at=now - 5 * MIN)
    never = factories.device(site, hostname="never-seen", last_seen_at=None)
    Device.objects.filter(pk=never.pk).update(created_at=now - 60 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})

    evaluate_all(now=now)

    assert set(active(rule).values_list("device__hostname", flat=True)) == {"silent", "never-seen"}
    assert active(rule, device=silent).get().title == "Offline for more than 15 min (silent for 20 min) on silent"


def test_a_device_back_online_resolves_its_offline_alert(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    evaluate_all(now=now)
    alert = active(rule).get()

    Device.objects.filter(pk=device.pk).update(last_seen_at=now + MIN)
    evaluate_all(now=now + 2 * MIN)

    alert.refresh_from_db()
    assert (alert.status, alert.resolve_reason, alert.resolved_at, alert.resolved_by) == (
        "resolved",
        "condition_cleared",
        now + 2 * MIN,
        None,
    )
    assert not AlertState.objects.filter(rule=rule).exists()


def test_an_offline_alert_is_rewritten_every_five_minutes_not_every_pass_for_its_growing_silence(site, now, make_rule):
    """Its value (minutes of silence) moves with the clock alone: rewriting 26,000 offline alerts every pass was
    most of a pass at 100,000 devices."""
    factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    evaluate_all(now=now)

    evaluate_all(now=now + MIN)

    alert = active(rule).get()
    assert (alert.value, alert.last_evaluated_at) == (pytest.approx(20), now)

    evaluate_all(now=now + 5 * MIN)

    alert.refresh_from_db()
    assert (alert.value, alert.last_evaluated_at) == (pytest.approx(25), now + 5 * MIN)


# --- disk -----------------------------------------------------------------------------------------------------


def test_a_disk_rule_opens_one_alert_per_disk_below_the_limit(site, two, now, make_rule, add_disk):
    device, other = two
    add_disk(device, "C:", 100, 5)
    add_disk(device, "D:", 100, 4)
    add_disk(device, "E:", 100, 50)
    add_disk(other, "C:", 100, 50)
    add_disk(other, "D:", None, None)  # sizes unknown: no data
    rule = make_rule(site.org, {"kind": "disk", "freePercentBelow": 10})

    evaluate_all(now=now)

    assert sorted(active(rule).values_list("device__hostname", "subject")) == [
        ("srv-sql-01", "C:"),
        ("srv-sql-01", "D:"),
    ]
    assert active(rule, subject="C:").get().title == "Disk C: below 10 % free (5.0 % free) on srv-sql-01"


def test_a_disk_rule_with_a_mount_watches_that_mount_only_ignoring_case(site, two, now, make_rule, add_disk):
    device, _ = two
    add_disk(device, "/VAR", 100, 1)
    add_disk(device, "/", 100, 1)
    rule = make_rule(site.org, {"kind": "disk", "freeGbBelow": 2, "mount": "/var"})

    evaluate_all(now=now)

    assert list(active(rule).values_list("subject", flat=True)) == ["/VAR"]


def test_a_disk_no_longer_reported_resolves_but_one_without_sizes_keeps_its_alert(site, two, now, make_rule, add_disk):
    device, _ = two
    gone = add_disk(device, "E:", 100, 1)
    unknown = add_disk(device, "F:", 100, 1)
    rule = make_rule(site.org, {"kind": "disk", "freePercentBelow": 10})
    evaluate_all(now=now)
    assert active(rule).count() == 2

    gone.delete()
    unknown.free_gb = unknown.total_gb = unknown.used_gb = unknown.used_percent = None
    unknown.save()
    evaluate_all(now=now + MIN)

    assert list(active(rule).values_list("subject", flat=True)) == ["F:"]
    assert Alert.objects.get(rule=rule, subject="E:").resolve_reason == "condition_cleared"


# --- filter rule ----------------------------------------------------------------------------------------------


def test_a_filter_rule_opens_for_devices_without_an_antivirus(site, two, now, make_rule):
    protected, bare = two
    DeviceSoftware.objects.create(device=protected, org_id=protected.org_id, name="Windows Defender Antivirus")
    rule = make_rule(
        site.org,
        {
            "kind": "rule",
            "filterRules": {"field": "software.notInstalled", "operator": "contains", "value": "antivirus"},
        },
        name="Antivirus missing",
    )

    evaluate_all(now=now)

    alert = active(rule).get()
    assert alert.device == bare
    assert alert.title == "Antivirus missing on srv-web-01"
    assert alert.value is None


# --- failed commands ------------------------------------------------------------------------------------------


def _command(device, status, completed_at, type_="script"):
    return DeviceCommand.objects.create(
        device=device, org_id=device.org_id, type=type_, status=status, completed_at=completed_at
    )


def test_a_command_failed_rule_counts_failures_and_timeouts_within_its_minutes(site, two, now, make_rule):
    failing, fine = two
    _command(failing, "failed", now - 5 * MIN)
    _command(failing, "timeout", now - 10 * MIN)
    _command(failing, "failed", now - 2 * dt.timedelta(hours=2))  # too old
    _command(fine, "completed", now - 5 * MIN)
    _command(fine, "failed", now - 5 * MIN, type_="reboot")  # another type
    rule = make_rule(site.org, {"kind": "commandFailed", "types": ["script"], "withinMinutes": 60})

    evaluate_all(now=now)

    alert = active(rule).get()
    assert alert.device == failing
    assert alert.value == 2


# --- the clock --------------------------------------------------------------------------------------------------


def test_an_alert_opens_only_once_the_condition_has_held_for_minutes(site, two, now, make_rule, add_samples):
    device, _ = two
    add_samples(device, now + 10 * MIN, minutes=30, cpuPercent=95)
    rule = make_rule(site.org, CPU_90, for_minutes=5)

    evaluate_all(now=now)
    assert not active(rule).exists()
    assert AlertState.objects.get(rule=rule).holding_since == now
    evaluate_all(now=now + 4 * MIN)
    assert not active(rule).exists()

    evaluate_all(now=now + 5 * MIN)

    assert active(rule).get().opened_at == now + 5 * MIN


def test_a_condition_that_stops_before_for_minutes_starts_counting_afresh(site, two, now, make_rule, add_samples):
    device, _ = two
    add_samples(device, now, minutes=10, cpuPercent=95)
    rule = make_rule(site.org, CPU_90, for_minutes=5)
    evaluate_all(now=now)
    add_samples(device, now + 10 * MIN, minutes=10, cpuPercent=10)
    evaluate_all(now=now + 10 * MIN)  # clear: the pending state goes
    assert not AlertState.objects.filter(rule=rule).exists()
    add_samples(device, now + 20 * MIN, minutes=10, cpuPercent=99)

    evaluate_all(now=now + 20 * MIN)
    evaluate_all(now=now + 24 * MIN)

    assert not active(rule).exists()
    assert AlertState.objects.get(rule=rule).holding_since == now + 20 * MIN


def test_an_alert_resolves_only_after_resolve_after_minutes_without_the_condition(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15}, resolve_after_minutes=10)
    evaluate_all(now=now)
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)

    evaluate_all(now=now + MIN)
    evaluate_all(now=now + 10 * MIN)
    assert active(rule).exists()
    assert AlertState.objects.get(rule=rule).clear_since == now + MIN

    evaluate_all(now=now + 11 * MIN)

    assert not active(rule).exists()
    assert Alert.objects.get(rule=rule).resolved_at == now + 11 * MIN


def test_the_condition_returning_while_resolving_keeps_the_alert_open(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15}, resolve_after_minutes=10)
    evaluate_all(now=now)
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    evaluate_all(now=now + MIN)  # clear since now + 1
    evaluate_all(now=now + 16 * MIN)  # silent again past 15 minutes: holds, clear_since forgotten

    evaluate_all(now=now + 30 * MIN)

    alert = active(rule).get()
    assert alert.status == "open"
    assert Alert.objects.filter(rule=rule).count() == 1
    assert AlertState.objects.get(rule=rule).clear_since is None


def test_without_auto_resolve_an_alert_stays_open_until_a_person_resolves_it(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15}, auto_resolve=False)
    evaluate_all(now=now)
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)

    evaluate_all(now=now + 60 * MIN)

    assert active(rule).exists()


def test_cooldown_holds_back_a_reopen_until_it_has_passed(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 1}, cooldown_minutes=10)
    evaluate_all(now=now)
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    evaluate_all(now=now)  # resolved at now
    assert not active(rule).exists()

    evaluate_all(now=now + 5 * MIN)  # silent past a minute again: held back by the cooldown
    assert not active(rule).exists()
    evaluate_all(now=now + 9 * MIN)
    assert not active(rule).exists()

    evaluate_all(now=now + 10 * MIN)

    assert active(rule).count() == 1
    assert Alert.objects.filter(rule=rule).count() == 2


# --- suppression and scope ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["maintenance", "decommissioned", "quarantined"])
def test_a_device_in_maintenance_decommissioned_or_quarantined_raises_nothing(site, now, make_rule, status):
    device = factories.device(site, last_seen_at=now - 60 * MIN, status=status)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})

    evaluate_all(now=now)

    assert not Alert.objects.filter(device=device).exists()
    assert not AlertState.objects.filter(rule=rule).exists()


def test_a_device_put_in_maintenance_keeps_its_alert_and_loses_its_pending_state(site, now, make_rule):
    open_one = factories.device(site, last_seen_at=now - 60 * MIN)
    pending = factories.device(site, last_seen_at=now - 20 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15}, for_minutes=0)
    evaluate_all(now=now)
    rule.for_minutes = 30  # (a direct edit: no rule_changed resolve in this test)
    rule.save()
    Alert.objects.filter(device=pending).delete()
    AlertState.objects.filter(device=pending).update(holding_since=now)
    Device.objects.filter(pk__in=[open_one.pk, pending.pk]).update(status="maintenance")

    evaluate_all(now=now + 60 * MIN)

    assert active(rule).get().device == open_one
    assert not AlertState.objects.filter(rule=rule).exists()


def _window(org, starts_at, ends_at, **fields):
    return MaintenanceWindow.objects.create(
        org=org, name="patching", starts_at=starts_at, ends_at=ends_at, timezone="UTC", **fields
    )


def test_a_window_suppressing_alerts_opens_nothing_and_nothing_is_replayed_after_it(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 60 * MIN)
    _window(site.org, now - 10 * MIN, now + 30 * MIN, site=site)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15}, for_minutes=5)

    for minute in range(0, 30, 5):
        evaluate_all(now=now + minute * MIN)
    assert not Alert.objects.filter(device=device).exists()
    assert not AlertState.objects.filter(rule=rule).exists()

    evaluate_all(now=now + 30 * MIN)  # the window ended: for_minutes counts from here
    evaluate_all(now=now + 34 * MIN)
    assert not active(rule).exists()
    evaluate_all(now=now + 35 * MIN)

    assert Alert.objects.filter(rule=rule).count() == 1
    assert active(rule).get().opened_at == now + 35 * MIN


def test_a_window_that_does_not_suppress_alerts_changes_nothing(site, now, make_rule):
    factories.device(site, last_seen_at=now - 60 * MIN)
    _window(site.org, now - 10 * MIN, now + 30 * MIN, suppress_alerts=False, suppress_commands=True)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})

    evaluate_all(now=now)

    assert active(rule).count() == 1


def test_an_alert_open_when_a_window_starts_stays_open_through_it(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 60 * MIN)
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    evaluate_all(now=now)
    _window(site.org, now + MIN, now + 60 * MIN)
    Device.objects.filter(pk=device.pk).update(last_seen_at=now + 2 * MIN)  # back, but inside the window

    evaluate_all(now=now + 5 * MIN)

    assert active(rule).get().device == device


def test_a_rule_watches_only_its_site_and_group(site, now, make_rule):
    in_group = factories.device(site, last_seen_at=now - 60 * MIN)
    factories.device(site, last_seen_at=now - 60 * MIN)
    elsewhere = factories.device(factories.site(site.org), last_seen_at=now - 60 * MIN)
    group = DeviceGroup.objects.create(org=site.org, name="servers")
    DeviceGroupMembership.objects.create(group=group, device=in_group, org_id=site.org_id)
    by_group = make_rule(site.org, {"kind": "offline", "minutes": 15}, device_group=group)
    by_site = make_rule(site.org, {"kind": "offline", "minutes": 15}, site=elsewhere.site)

    evaluate_all(now=now)

    assert list(active(by_group).values_list("device", flat=True)) == [in_group.pk]
    assert list(active(by_site).values_list("device", flat=True)) == [elsewhere.pk]


def test_a_partner_rule_watches_every_organization_of_its_partner_and_no_other(now, make_rule):
    partner = factories.partner()
    mine = [
        factories.device(factories.site(factories.organization(partner)), last_seen_at=now - 60 * MIN) for _ in "ab"
    ]
    factories.device(factories.site(), last_seen_at=now - 60 * MIN)  # another partner's
    rule = make_rule(partner, {"kind": "offline", "minutes": 15})

    evaluate_all(now=now)

    assert set(active(rule).values_list("device", flat=True)) == {device.pk for device in mine}
    assert {alert.org_id for alert in active(rule)} == {device.org_id for device in mine}


def test_a_disabled_rule_is_not_evaluated(site, now, make_rule):
    factories.device(site, last_seen_at=now - 60 * MIN)
    make_rule(site.org, {"kind": "offline", "minutes": 15}, enabled=False)

    assert evaluate_all(now=now).rules == 0
    assert not Alert.objects.exists()


def test_a_pass_with_no_enabled_rule_reads_two_rows_and_writes_nothing(site, now, make_rule, django_assert_num_queries):
    factories.device(site, last_seen_at=now - 60 * MIN)
    make_rule(site.org, {"kind": "offline", "minutes": 15}, enabled=False)

    with django_assert_num_queries(2):  # the rules, and whether a site alert is open: no table of every device
        assert evaluate_all(now=now).rules == 0


def test_a_site_alert_left_open_is_still_resolved_when_its_rule_is_disabled(site, now, make_rule):
    devices = [factories.device(site, last_seen_at=now - 60 * MIN, status="offline") for _ in range(6)]
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    evaluate_all(now=now)
    assert Alert.objects.filter(rule__isnull=True, status="open").count() == 1
    type(rule).objects.filter(pk=rule.pk).update(enabled=False)
    Device.objects.filter(pk__in=[d.pk for d in devices]).update(last_seen_at=now, status="online")

    evaluate_all(now=now + 2 * MIN)

    assert not Alert.objects.filter(rule__isnull=True, status="open").exists()


# --- idempotence and announcements --------------------------------------------------------------------------------


def _snapshot():
    return (
        sorted(Alert.objects.values_list("id", "status", "value", "last_evaluated_at", "resolved_at")),
        sorted(AlertState.objects.values_list("rule", "device", "subject", "holding_since", "clear_since", "value")),
        Notification.objects.count(),
    )


def test_running_a_pass_twice_changes_nothing_the_second_time(site, two, now, make_rule, add_samples, add_disk):
    hot, cool = two
    add_samples(hot, now, minutes=10, cpuPercent=96)
    add_disk(cool, "C:", 100, 1)
    Device.objects.filter(pk=cool.pk).update(last_seen_at=now - 20 * MIN)
    make_rule(site.org, CPU_90)
    make_rule(site.org, {"kind": "disk", "freePercentBelow": 5})
    make_rule(site.org, {"kind": "offline", "minutes": 15}, for_minutes=10)
    first = evaluate_all(now=now)
    assert first.opened == 2
    before = _snapshot()

    second = evaluate_all(now=now)

    assert (second.opened, second.resolved) == (0, 0)
    assert _snapshot() == before


def test_an_opening_and_a_resolve_are_announced_to_the_rules_channels(site, now, make_rule):
    device = factories.device(site, last_seen_at=now - 60 * MIN)
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    rule = make_rule(site.org, {"kind": "offline", "minutes": 15})
    rule.channels.set([channel])
    evaluate_all(now=now)
    alert = active(rule).get()
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)

    evaluate_all(now=now + MIN)

    assert sorted(Notification.objects.filter(alert=alert).values_list("event", flat=True)) == [
        "alert.opened",
        "alert.resolved",
    ]


def test_an_opened_alert_counts_its_renotification_from_the_pass_that_opened_it_with_or_without_channels(
    site, now, make_rule
):
    factories.device(site, last_seen_at=now - 60 * MIN)
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    told = make_rule(site.org, {"kind": "offline", "minutes": 15}, name="told")
    told.channels.set([channel])
    silent = make_rule(site.org, {"kind": "offline", "minutes": 15}, name="silent")

    evaluate_all(now=now)

    assert active(told).get().last_notified_at == now
    assert active(silent).get().last_notified_at == now
    assert list(Notification.objects.values_list("alert__rule__name", flat=True)) == ["told"]


def test_a_rule_that_fails_does_not_stop_the_others(site, now, make_rule):
    factories.device(site, last_seen_at=now - 60 * MIN)
    broken = make_rule(site.org, {"kind": "offline", "minutes": 15})
    type(broken).objects.filter(pk=broken.pk).update(condition={"kind": "metric", "metric": "nope"})
    fine = make_rule(site.org, {"kind": "offline", "minutes": 20})

    report = evaluate_all(now=now)

    assert report.failed_rules == [broken.pk]
    assert active(fine).count() == 1


# --- preview ----------------------------------------------------------------------------------------------------


def test_the_preview_counts_the_devices_the_condition_holds_for_with_their_values(site, two, now, add_samples):
    hot, cool = two
    add_samples(hot, now, minutes=10, cpuPercent=96)
    add_samples(cool, now, minutes=10, cpuPercent=91)
    Device.objects.filter(pk=cool.pk).update(status="maintenance")
    add_samples(factories.device(site, hostname="aaa-cold"), now, minutes=10, cpuPercent=10)

    result = preview(org=site.org, condition=CPU_90, now=now)

    assert result.count == 1
    [(device, value)] = result.sample
    assert device == hot
    assert value == pytest.approx(96)
    assert not Alert.objects.exists()


def test_the_preview_refuses_a_bad_condition_with_its_path(site, now):
    with pytest.raises(ValidationError) as caught:
        preview(org=site.org, condition={**CPU_90, "windowMinutes": 0}, now=now)

    assert caught.value.message_dict == {
        "condition": ["condition.windowMinutes: must be a whole number from 1 to 1440"]
    }


def test_the_preview_refuses_a_site_of_another_organization(site, now):
    with pytest.raises(ValidationError) as caught:
        preview(org=site.org, site=factories.site(), condition=CPU_90, now=now)

    assert list(caught.value.message_dict) == ["site"]
