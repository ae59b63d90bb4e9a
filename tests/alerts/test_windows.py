"""Maintenance windows (alerts.services.windows): when they occur in local time across DST changes, which devices
they cover, the rules they must keep, and the audited writes.

Europe/Berlin in 2027: clocks go forward on Sunday 28 March at 02:00 CET (to 03:00 CEST) and back on Sunday
31 October at 03:00 CEST (to 02:00 CET).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Q

from accounts.models import AuditAction, AuditLog
from alerts.models import MaintenanceWindow
from alerts.services import windows
from devices.models import Device, DeviceGroupMembership
from rmm.domain_errors import Invalid

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def window(starts_at, ends_at, recurrence="none", weekdays=(), tz="Europe/Berlin", **fields) -> MaintenanceWindow:
    return MaintenanceWindow(
        name=fields.pop("name", "patch night"),
        starts_at=starts_at,
        ends_at=ends_at,
        recurrence=recurrence,
        weekdays=list(weekdays),
        timezone=tz,
        **fields,
    )


def occurring_at(w: MaintenanceWindow, *moments: dt.datetime) -> list[bool]:
    return [windows.is_occurring(w, moment) for moment in moments]


# ---- occurrences ----


def test_a_one_off_window_covers_its_start_up_to_but_not_including_its_end():
    w = window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2))
    assert occurring_at(w, utc(2027, 6, 1, 21, 59), utc(2027, 6, 1, 22), utc(2027, 6, 2, 1, 59)) == [False, True, True]
    assert occurring_at(w, utc(2027, 6, 2, 2), utc(2027, 6, 2, 22, 30), utc(2027, 6, 8, 23)) == [False, False, False]


def test_a_one_off_window_across_the_spring_change_lasts_its_real_length():
    # 01:00 CET to 04:00 CEST is two real hours: 00:00 to 02:00 UTC.
    w = window(berlin(2027, 3, 28, 1), berlin(2027, 3, 28, 4))
    assert occurring_at(w, utc(2027, 3, 27, 23, 59), utc(2027, 3, 28, 0), utc(2027, 3, 28, 1, 59)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 28, 2)) == [False]


def test_a_daily_window_keeps_its_local_hours_across_the_spring_forward_change_in_berlin():
    w = window(berlin(2027, 3, 20, 1, 30), berlin(2027, 3, 20, 3, 30), "daily")
    # The day before, in winter time: 01:30-03:30 CET is 00:30-02:30 UTC.
    assert occurring_at(w, utc(2027, 3, 27, 0, 29), utc(2027, 3, 27, 0, 30), utc(2027, 3, 27, 2, 29)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 27, 2, 30)) == [False]
    # The change: 01:30 CET to 03:30 CEST, one real hour (00:30-01:30 UTC).
    assert occurring_at(w, utc(2027, 3, 28, 0, 29), utc(2027, 3, 28, 0, 30), utc(2027, 3, 28, 1, 29)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 28, 1, 30)) == [False]
    # The day after, in summer time: 01:30-03:30 CEST is 23:30 (the day before) to 01:30 UTC.
    assert occurring_at(w, utc(2027, 3, 28, 23, 29), utc(2027, 3, 28, 23, 30), utc(2027, 3, 29, 1, 29)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 29, 1, 30)) == [False]


def test_a_daily_window_keeps_its_local_hours_across_the_fall_back_change_in_berlin():
    w = window(berlin(2027, 10, 20, 1, 30), berlin(2027, 10, 20, 3, 30), "daily")
    # The change: 01:30 CEST (23:30 UTC the day before) to 03:30 CET (02:30 UTC), three real hours.
    assert occurring_at(w, utc(2027, 10, 30, 23, 29), utc(2027, 10, 30, 23, 30), utc(2027, 10, 31, 2, 29)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 10, 31, 2, 30)) == [False]
    # Both 02:30s of that night are inside it.
    assert occurring_at(w, berlin(2027, 10, 31, 2, 30), berlin(2027, 10, 31, 2, 30, fold=1)) == [True, True]
    # The day after, in winter time: 00:30-02:30 UTC.
    assert occurring_at(w, utc(2027, 11, 1, 0, 29), utc(2027, 11, 1, 0, 30), utc(2027, 11, 1, 2, 29)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 11, 1, 2, 30)) == [False]


def test_a_daily_window_first_held_on_the_change_day_keeps_its_clock_hours_not_its_real_length():
    # First occurrence 01:30 CET to 03:30 CEST on 28 March: one real hour, two on the clocks. The next day it is
    # 01:30-03:30 CEST again: two real hours (23:30 to 01:30 UTC).
    w = window(berlin(2027, 3, 28, 1, 30), berlin(2027, 3, 28, 3, 30), "daily")
    assert occurring_at(w, utc(2027, 3, 28, 23, 30), utc(2027, 3, 29, 0, 30), utc(2027, 3, 29, 1, 29)) == [
        True,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 29, 1, 30)) == [False]


def test_a_weekly_sunday_window_starting_in_the_skipped_hour_starts_when_the_clocks_have_jumped():
    # Sundays 02:00-05:00. On 28 March 02:00 does not exist: it is read as 02:00 CET (01:00 UTC, 03:00 CEST).
    w = window(berlin(2027, 3, 21, 2), berlin(2027, 3, 21, 5), "weekly", [6])
    assert occurring_at(w, utc(2027, 3, 28, 0, 59), utc(2027, 3, 28, 1), utc(2027, 3, 28, 2, 59)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 3, 28, 3)) == [False]  # 05:00 CEST
    # The Saturday before and the Monday after, at the same local hours: no.
    assert occurring_at(w, berlin(2027, 3, 27, 3), berlin(2027, 3, 29, 3)) == [False, False]
    # The next Sunday, in summer time: 02:00-05:00 CEST.
    assert occurring_at(w, berlin(2027, 4, 4, 1, 59), berlin(2027, 4, 4, 2), berlin(2027, 4, 4, 4, 59)) == [
        False,
        True,
        True,
    ]


def test_a_weekly_sunday_window_on_the_fall_back_sunday_starts_at_the_first_of_the_two_times():
    # Sundays 02:30-04:00. On 31 October 02:30 happens twice: the window starts at the first (CEST, 00:30 UTC) and
    # ends at 04:00 CET (03:00 UTC).
    w = window(berlin(2027, 10, 24, 2, 30), berlin(2027, 10, 24, 4), "weekly", [6])
    assert occurring_at(w, utc(2027, 10, 31, 0, 29), utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, utc(2027, 10, 31, 2, 59), utc(2027, 10, 31, 3)) == [True, False]


def test_a_daily_window_crossing_midnight_runs_into_the_next_morning_but_not_before_its_first_start():
    w = window(berlin(2027, 6, 1, 22), berlin(2027, 6, 2, 2), "daily")
    # The night before the first occurrence is not covered: nothing recurs before starts_at.
    assert occurring_at(w, berlin(2027, 5, 31, 23), berlin(2027, 6, 1, 1)) == [False, False]
    assert occurring_at(w, berlin(2027, 6, 1, 23), berlin(2027, 6, 2, 1, 59)) == [True, True]
    assert occurring_at(w, berlin(2027, 6, 5, 21, 59), berlin(2027, 6, 5, 22), berlin(2027, 6, 5, 23, 59)) == [
        False,
        True,
        True,
    ]
    assert occurring_at(w, berlin(2027, 6, 6, 0), berlin(2027, 6, 6, 1, 59), berlin(2027, 6, 6, 2)) == [
        True,
        True,
        False,
    ]
    assert occurring_at(w, berlin(2027, 6, 6, 12)) == [False]


def test_a_weekly_window_occurs_on_its_weekdays_only_and_an_occurrence_belongs_to_the_day_it_starts():
    # Saturdays and Sundays, 22:00-02:00; 5 June 2027 is a Saturday.
    w = window(berlin(2027, 6, 5, 22), berlin(2027, 6, 6, 2), "weekly", [5, 6])
    assert occurring_at(w, berlin(2027, 6, 6, 23), berlin(2027, 6, 7, 1)) == [True, True]  # Sunday's, into Monday
    assert occurring_at(w, berlin(2027, 6, 7, 22, 30), berlin(2027, 6, 8, 1)) == [False, False]  # Monday's: none
    assert occurring_at(w, berlin(2027, 6, 11, 23), berlin(2027, 6, 12, 1)) == [False, False]  # Friday's: none
    assert occurring_at(w, berlin(2027, 6, 12, 22, 30), berlin(2027, 6, 13, 1, 30)) == [True, True]


def test_a_weekly_window_of_several_days_is_found_from_any_of_its_days():
    # Friday 18:00 to Monday 06:00, weekly; 4 June 2027 is a Friday.
    w = window(berlin(2027, 6, 4, 18), berlin(2027, 6, 7, 6), "weekly", [4])
    assert occurring_at(w, berlin(2027, 6, 13, 12), berlin(2027, 6, 14, 5, 59), berlin(2027, 6, 14, 6)) == [
        True,
        True,
        False,
    ]
    assert occurring_at(w, berlin(2027, 6, 16, 12)) == [False]


def test_a_window_in_another_time_zone_follows_that_zones_clocks():
    # 09:00-10:00 in New York; the US changes clocks on 14 March 2027, two weeks before Europe.
    w = window(
        dt.datetime(2027, 3, 1, 9, tzinfo=ZoneInfo("America/New_York")),
        dt.datetime(2027, 3, 1, 10, tzinfo=ZoneInfo("America/New_York")),
        "daily",
        tz="America/New_York",
    )
    assert occurring_at(w, utc(2027, 3, 13, 14, 30), utc(2027, 3, 14, 14, 30)) == [True, False]  # EST, then EDT
    assert occurring_at(w, utc(2027, 3, 14, 13, 30)) == [True]


# ---- validation ----


def errors_of(w: MaintenanceWindow) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        w.full_clean()
    return refused.value.message_dict


@pytest.fixture
def org_a(world):
    return world.org_a


def test_a_valid_weekly_window_passes(org_a):
    window(berlin(2027, 6, 5, 22), berlin(2027, 6, 6, 2), "weekly", [6, 5], org=org_a).full_clean()


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "recurrence", "weekdays", "field", "says"),
    [
        (berlin(2027, 6, 1, 4), berlin(2027, 6, 1, 2), "none", [], "ends_at", "ends after it starts"),
        (berlin(2027, 6, 1, 4), berlin(2027, 6, 1, 4), "none", [], "ends_at", "ends after it starts"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "none", [1], "weekdays", "Only weekly windows"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "daily", [1], "weekdays", "Only weekly windows"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "weekly", [], "weekdays", "at least one weekday"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "weekly", [1, 7], "weekdays", "weekdays[1]: 7 is not"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "weekly", [1, 3, 1], "weekdays", "weekdays[2]: Tuesday"),
        # 1 June 2027 is a Tuesday (1): a Monday-only window cannot start then.
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 1, 4), "weekly", [0], "weekdays", "is a Tuesday in Europe/Berlin"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 2, 2), "daily", [], "ends_at", "shorter than a day"),
        (berlin(2027, 6, 1, 2), berlin(2027, 6, 8, 2), "weekly", [1], "ends_at", "shorter than a week"),
        # 40 real minutes, but on the clocks it ends 20 minutes before it starts (02:30 CEST to 02:10 CET).
        (
            berlin(2027, 10, 31, 2, 30),
            berlin(2027, 10, 31, 2, 10, fold=1),
            "daily",
            [],
            "ends_at",
            "on the clocks of Europe/Berlin",
        ),
    ],
)
def test_a_window_that_breaks_a_rule_is_refused_with_the_field_at_fault(
    org_a, starts_at, ends_at, recurrence, weekdays, field, says
):
    errors = errors_of(window(starts_at, ends_at, recurrence, weekdays, org=org_a))
    assert set(errors) == {field}, errors
    assert any(says in message for message in errors[field]), errors


def test_a_daily_window_of_just_under_a_day_on_the_clocks_is_accepted_even_when_it_spans_a_change(org_a):
    # 04:00 on 27 March to 03:30 on 28 March: 23 h 30 on the clocks, 22 h 30 in real time.
    window(berlin(2027, 3, 27, 4), berlin(2027, 3, 28, 3, 30), "daily", org=org_a).full_clean()


def test_a_site_or_group_of_another_organization_is_refused(world):
    foreign_site = window(utc(2027, 6, 1), utc(2027, 6, 2), org=world.org_a, site=world.site_b1)
    assert list(errors_of(foreign_site)) == ["site"]
    foreign_group = window(utc(2027, 6, 1), utc(2027, 6, 2), org=world.org_a, device_group=world.groups["B1 servers"])
    assert list(errors_of(foreign_group)) == ["device_group"]


def test_a_window_covers_a_site_or_a_group_not_both(world):
    both = window(
        utc(2027, 6, 1), utc(2027, 6, 2), org=world.org_a, site=world.site_a1, device_group=world.groups["A1 servers"]
    )
    assert list(errors_of(both)) == ["device_group"]


def test_a_time_zone_that_is_not_iana_is_the_fields_own_error_and_nothing_crashes(org_a):
    errors = errors_of(window(utc(2027, 6, 1), utc(2027, 6, 1, 2), "daily", tz="Mars/Olympus", org=org_a))
    assert list(errors) == ["timezone"]
    assert len(errors["timezone"]) == 1


# ---- covered devices ----


def covered(world, now, purpose="alerts") -> set[str]:
    q = windows.covered_devices_q(now=now, purpose=purpose)
    return set(Device.objects.filter(q).values_list("hostname", flat=True))


NOW = utc(2027, 6, 2, 0)


def hostnames(world, *sites) -> set[str]:
    return {device.hostname for device in world.devices_in(*sites)}


def save(w: MaintenanceWindow) -> MaintenanceWindow:
    w.full_clean()
    w.save()
    return w


def test_no_window_covers_no_device(world):
    assert covered(world, NOW) == set()
    assert covered(world, NOW, "commands") == set()


def test_an_organization_window_covers_every_device_of_that_organization_only(world):
    save(window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2), org=world.org_a))
    assert covered(world, NOW) == hostnames(world, world.site_a1, world.site_a2)


def test_a_site_window_covers_the_devices_of_that_site_only(world):
    save(window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2), org=world.org_a, site=world.site_a2))
    assert covered(world, NOW) == hostnames(world, world.site_a2)


def test_a_group_window_covers_the_members_of_that_group_only(world):
    group = world.groups["All of A"]
    a1, a2 = world.devices[world.site_a1][0], world.devices[world.site_a2][1]
    DeviceGroupMembership.objects.bulk_create(
        DeviceGroupMembership(device=device, group=group, org=world.org_a) for device in (a1, a2)
    )
    save(window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2), org=world.org_a, device_group=group))
    assert covered(world, NOW) == {a1.hostname, a2.hostname}


def test_windows_that_are_not_occurring_or_do_not_suppress_that_purpose_cover_nothing(world):
    save(window(utc(2027, 6, 1, 20), utc(2027, 6, 1, 22), org=world.org_a))  # over
    save(window(utc(2027, 6, 2, 1), utc(2027, 6, 2, 3), org=world.org_a, site=world.site_a1))  # not begun
    save(window(utc(2027, 5, 30, 4), utc(2027, 5, 30, 6), "daily", org=world.org_a2))  # recurs, not at midnight UTC
    save(window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2), org=world.org_b, suppress_alerts=False))
    assert covered(world, NOW) == set()
    assert covered(world, NOW, "commands") == set()


def test_suppress_commands_and_suppress_alerts_are_asked_separately(world):
    night = (utc(2027, 6, 1, 22), utc(2027, 6, 2, 2))
    save(window(*night, org=world.org_a, site=world.site_a1, suppress_commands=True))
    save(window(*night, org=world.org_b, suppress_alerts=False, suppress_commands=True))
    assert covered(world, NOW, "alerts") == hostnames(world, world.site_a1)
    assert covered(world, NOW, "commands") == hostnames(world, world.site_a1, world.site_b1)
    assert [w.org_id for w in windows.active_windows(now=NOW, purpose="commands", org_ids=[world.org_b.pk])] == [
        world.org_b.pk
    ]


def test_a_device_in_maintenance_counts_as_covered_for_alerts_but_not_for_commands(world):
    b1 = world.devices[world.site_b1][0]
    Device.objects.filter(pk=b1.pk).update(status=Device.Status.MAINTENANCE)
    assert covered(world, NOW, "alerts") == {b1.hostname}
    assert covered(world, NOW, "commands") == set()


def test_a_recurring_window_covers_its_devices_in_each_occurrence(world):
    save(window(berlin(2027, 3, 20, 1, 30), berlin(2027, 3, 20, 3, 30), "daily", org=world.org_a2))
    assert covered(world, utc(2027, 3, 28, 1, 29)) == hostnames(world, world.site_a2_main)
    assert covered(world, utc(2027, 3, 28, 1, 30)) == set()


def test_the_covered_devices_cost_one_query_to_find_and_one_to_use(world, django_assert_num_queries):
    group = world.groups["A1 servers"]
    DeviceGroupMembership.objects.create(device=world.devices[world.site_a1][0], group=group, org=world.org_a)
    for fields in ({"org": world.org_b}, {"org": world.org_a2}, {"org": world.org_a, "device_group": group}):
        save(window(utc(2027, 6, 1, 22), utc(2027, 6, 2, 2), "daily", **fields))
    with django_assert_num_queries(1):
        q = windows.covered_devices_q(now=NOW, purpose="alerts")
    with django_assert_num_queries(1):
        assert Device.objects.filter(q).count() == 5


def test_the_empty_coverage_excludes_nothing(world):
    assert Device.objects.exclude(windows.covered_devices_q(now=NOW, purpose="commands")).count() == 8
    assert Device.objects.filter(Q(pk__in=[]) | windows.covered_devices_q(now=NOW, purpose="commands")).count() == 0


# ---- writes ----


def test_saving_a_new_window_writes_it_with_its_weekdays_in_order_and_a_create_audit_row(world, org_admin):
    w = window(berlin(2027, 6, 5, 22), berlin(2027, 6, 6, 2), "weekly", [6, 5], org=world.org_a, site=world.site_a1)
    saved = windows.save_window(window=w, actor=org_admin, ip="192.0.2.7")
    stored = MaintenanceWindow.objects.get(pk=saved.pk)
    assert stored.weekdays == [5, 6] and stored.site_id == world.site_a1.pk
    row = AuditLog.objects.get(action=AuditAction.MAINTENANCE_WINDOW_CREATE)
    assert (row.actor_user, row.org_id, row.target_id) == (org_admin, world.org_a.pk, str(saved.pk))
    assert row.ip == "192.0.2.7"
    assert row.details["recurrence"] == "weekly" and row.details["siteId"] == str(world.site_a1.pk)


def test_updating_a_window_audits_what_changed(world, org_admin):
    w = windows.save_window(window=window(utc(2027, 6, 1), utc(2027, 6, 2), org=world.org_a), actor=org_admin)
    w.name, w.suppress_commands = "longer night", True
    windows.save_window(window=w, actor=org_admin)
    assert MaintenanceWindow.objects.get(pk=w.pk).name == "longer night"
    row = AuditLog.objects.get(action=AuditAction.MAINTENANCE_WINDOW_UPDATE)
    assert row.details == {
        "changed": {
            "name": {"from": "patch night", "to": "longer night"},
            "suppressCommands": {"from": False, "to": True},
        }
    }


def test_an_invalid_window_is_refused_with_the_apis_field_names_and_nothing_is_written(world, org_admin):
    w = window(utc(2027, 6, 2), utc(2027, 6, 1), "weekly", [9], org=world.org_a, site=world.site_b1)
    with pytest.raises(Invalid) as refused:
        windows.save_window(window=w, actor=org_admin)
    assert refused.value.code == "validation_error"
    assert set(refused.value.fields) == {"endsAt", "weekdays", "siteId"}
    assert not MaintenanceWindow.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="maintenance_window.").exists()


def test_deleting_a_window_removes_it_with_a_delete_audit_row(world, org_admin):
    w = windows.save_window(window=window(utc(2027, 6, 1), utc(2027, 6, 2), org=world.org_a), actor=org_admin)
    pk = w.pk
    windows.delete_window(window=w, actor=org_admin)
    assert not MaintenanceWindow.objects.filter(pk=pk).exists()
    row = AuditLog.objects.get(action=AuditAction.MAINTENANCE_WINDOW_DELETE)
    assert row.target_id == str(pk) and row.details["name"] == "patch night"
