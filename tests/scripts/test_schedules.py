"""Script schedules: slots on local wall clocks across DST, firing once across racing schedulers and downtime, a
group's members at firing time, failures that move on, and the rules a schedule is saved by.

The clock is controlled: every service takes ``now=``. Berlin changes its clocks on 2026-03-29 (02:00 CET →
03:00 CEST) and 2026-10-25 (03:00 CEST → 02:00 CET).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from accounts.models import AuditLog
from devices.models import DeviceCommand, DeviceGroupMembership
from rmm.domain_errors import Invalid, Refused
from scripts.models import Script, ScriptRun, ScriptSchedule
from scripts.services.schedules import (
    delete_schedule,
    fire_due_schedules,
    next_slot,
    save_schedule,
    validate_cron,
)
from tests.concurrency import run_concurrently

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Berlin


def berlin(*args: int, fold: int = 0) -> dt.datetime:
    """A wall-clock time in Berlin as an instant in UTC."""
    return dt.datetime(*args, tzinfo=BERLIN, fold=fold).astimezone(UTC)


def slots(cron: str, after: dt.datetime, count: int, zone: str = "Europe/Berlin") -> list[dt.datetime]:
    found = []
    for _ in range(count):
        after = next_slot(cron, zone, after)
        found.append(after)
    return found


@pytest.fixture
def script(world, make_script) -> Script:
    """A bash script of org A's library (runs on linux and macos) with a defaulted int parameter."""
    return make_script(
        world.org_a,
        name="Clean temp files",
        parameters=[{"name": "days", "type": "int", "required": False, "default": 7}],
    )


@pytest.fixture
def make_schedule(world, script):
    """``make_schedule(now=NOW, **fields)`` → a schedule of org A saved through ``save_schedule`` by the server
    (``actor=None``): the whole organization, every hour, in Berlin, unless given."""

    def make(*, now: dt.datetime = NOW, **fields) -> ScriptSchedule:
        fields.setdefault("org", world.org_a)
        fields.setdefault("script", script)
        fields.setdefault("cron", "0 * * * *")
        fields.setdefault("timezone", "Europe/Berlin")
        return save_schedule(schedule=ScriptSchedule(**fields), actor=None, now=now)

    return make


def tick_through(start: dt.datetime, end: dt.datetime, every: dt.timedelta, schedule: ScriptSchedule):
    """Run the scheduler every ``every`` from ``start`` to ``end`` on the controllable clock; answer the moments at
    which ``schedule`` fired."""
    fired = []
    moment = start
    while moment <= end:
        fire_due_schedules(now=moment)
        schedule.refresh_from_db()
        if schedule.last_run_at == moment:
            fired.append(moment)
        moment += every
    return fired


# ---- slots on the wall clock ----


def test_a_daily_0230_slot_fires_at_0300_summer_time_on_the_night_the_clocks_spring_forward():
    assert slots("30 2 * * *", berlin(2026, 3, 27, 12, 0), 3) == [
        berlin(2026, 3, 28, 2, 30),  # 01:30 UTC, winter time
        berlin(2026, 3, 29, 3, 0),  # 02:30 does not exist: the first instant after the gap
        berlin(2026, 3, 30, 2, 30),  # 00:30 UTC, summer time
    ]
    assert berlin(2026, 3, 29, 3, 0) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_a_daily_0900_slot_stays_at_0900_on_berlins_clocks_across_both_changes():
    assert [s.astimezone(BERLIN).hour for s in slots("0 9 * * *", berlin(2026, 3, 27, 12, 0), 4)] == [9, 9, 9, 9]
    assert slots("0 9 * * *", berlin(2026, 3, 28, 12, 0), 2) == [
        dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        dt.datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ]
    assert slots("0 9 * * *", berlin(2026, 10, 24, 12, 0), 2) == [
        dt.datetime(2026, 10, 25, 8, 0, tzinfo=UTC),
        dt.datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
    ]


def test_a_daily_0230_slot_fires_once_in_the_repeated_hour_at_its_first_occurrence():
    assert slots("30 2 * * *", berlin(2026, 10, 24, 12, 0), 2) == [
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 summer time (fold=0)
        dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # the next day, winter time
    ]
    # Asked during the second 02:xx (winter time), the slot already passed: the next is the next day's.
    assert next_slot("30 2 * * *", "Europe/Berlin", berlin(2026, 10, 25, 2, 10, fold=1)) == berlin(2026, 10, 26, 2, 30)


def test_an_hourly_schedule_fires_once_per_wall_clock_hour_through_the_fall_back_night():
    found = slots("0 * * * *", berlin(2026, 10, 25, 0, 30), 5)

    assert found == [
        berlin(2026, 10, 25, 1, 0),
        berlin(2026, 10, 25, 2, 0),  # 02:00 summer time, 00:00 UTC
        berlin(2026, 10, 25, 3, 0),  # 03:00 winter time, 02:00 UTC: two real hours later, no second 02:00
        berlin(2026, 10, 25, 4, 0),
        berlin(2026, 10, 25, 5, 0),
    ]
    assert [s.astimezone(BERLIN).strftime("%H:%M") for s in found] == ["01:00", "02:00", "03:00", "04:00", "05:00"]


def test_slots_inside_the_skipped_hour_fire_once_at_the_end_of_the_gap():
    found = slots("*/20 * * * *", berlin(2026, 3, 29, 1, 30), 3)

    assert found == [berlin(2026, 3, 29, 1, 40), berlin(2026, 3, 29, 3, 0), berlin(2026, 3, 29, 3, 20)]


def test_a_slot_is_strictly_after_the_moment_asked_about():
    slot = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert next_slot("0 * * * *", "UTC", slot) == slot + HOUR
    assert next_slot("0 * * * *", "UTC", slot - dt.timedelta(seconds=1)) == slot


def test_other_time_zones_follow_their_own_clocks():
    # New York springs forward on 2026-03-08 at 02:00 EST → 03:00 EDT, and falls back on 2026-11-01.
    assert slots("30 2 * * *", dt.datetime(2026, 3, 6, 12, 0, tzinfo=UTC), 3, zone="America/New_York") == [
        dt.datetime(2026, 3, 7, 7, 30, tzinfo=UTC),  # 02:30 EST
        dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the end of the gap
        dt.datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
    ]
    assert slots("30 1 * * *", dt.datetime(2026, 10, 31, 12, 0, tzinfo=UTC), 2, zone="America/New_York") == [
        dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first of the two
        dt.datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST
    ]


def test_next_slot_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="aware"):
        next_slot("0 * * * *", "UTC", dt.datetime(2026, 3, 2, 12, 0))


@pytest.mark.parametrize("cron", ["* * * * *", "*/15 * * * *", "30 2 * * 1-5", "0 0 L * *", "0 9 * * MON#1"])
def test_five_field_cron_expressions_are_accepted(cron):
    validate_cron(cron)


# ---- firing across DST on a controllable clock ----


@pytest.mark.parametrize(
    ("cron", "start", "expected"),
    [
        (
            "30 2 * * *",
            berlin(2026, 3, 28, 0, 0),
            [berlin(2026, 3, 28, 2, 30), berlin(2026, 3, 29, 3, 0), berlin(2026, 3, 30, 2, 30)],
        ),
        (
            "0 9 * * *",
            berlin(2026, 3, 28, 0, 0),
            [berlin(2026, 3, 28, 9, 0), berlin(2026, 3, 29, 9, 0), berlin(2026, 3, 30, 9, 0)],
        ),
        (
            "30 2 * * *",
            berlin(2026, 10, 24, 0, 0),
            [berlin(2026, 10, 24, 2, 30), berlin(2026, 10, 25, 2, 30), berlin(2026, 10, 26, 2, 30)],
        ),
        (
            "0 9 * * *",
            berlin(2026, 10, 24, 0, 0),
            [berlin(2026, 10, 24, 9, 0), berlin(2026, 10, 25, 9, 0), berlin(2026, 10, 26, 9, 0)],
        ),
    ],
    ids=["0230-march", "0900-march", "0230-october", "0900-october"],
)
def test_daily_schedules_fire_once_a_day_across_a_dst_change(make_schedule, cron, start, expected):
    schedule = make_schedule(cron=cron, now=start)

    fired = tick_through(start, start + 3 * 24 * HOUR - MIN, 15 * MIN, schedule)

    assert fired == expected
    assert ScriptRun.objects.filter(schedule=schedule, trigger="schedule").count() == 3


def test_an_hourly_schedule_fires_once_per_wall_clock_hour_on_the_fall_back_night(make_schedule):
    start = berlin(2026, 10, 25, 0, 30)
    schedule = make_schedule(cron="0 * * * *", now=start)

    fired = tick_through(start, berlin(2026, 10, 25, 4, 30), 5 * MIN, schedule)

    assert [moment.astimezone(BERLIN).strftime("%H:%M%z") for moment in fired] == [
        "01:00+0200",
        "02:00+0200",
        "03:00+0100",
        "04:00+0100",
    ]
    assert ScriptRun.objects.filter(schedule=schedule).count() == 4


# ---- once, however many servers and however long the downtime ----


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_fire_a_due_schedule_once(world, make_script):
    script = make_script(world.org_a, name="Restart the spooler")
    schedule = save_schedule(
        schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 * * * *", timezone="UTC"),
        actor=None,
        now=NOW,
    )
    due = NOW + HOUR
    first_claimed = threading.Event()

    def scheduler(n: int) -> str:
        if n == 0:
            with transaction.atomic():
                report = fire_due_schedules(now=due)
                first_claimed.set()
                time.sleep(1)  # the first firing stays uncommitted, its row locked, while the second pass runs
            return report
        assert first_claimed.wait(10)
        return fire_due_schedules(now=due)

    reports = run_concurrently(2, scheduler)

    assert sorted(reports) == [
        "schedules fired: 0, failed: 0, commands queued: 0",
        "schedules fired: 1, failed: 0, commands queued: 2",
    ]
    assert ScriptRun.objects.filter(schedule=schedule).count() == 1
    assert DeviceCommand.objects.filter(script_run__schedule=schedule).count() == 2  # org A's linux devices
    schedule.refresh_from_db()
    assert schedule.next_run_at == due + HOUR


@pytest.mark.django_db(transaction=True)
def test_a_pass_after_the_racing_one_committed_finds_nothing_due(world, make_script):
    script = make_script(world.org_a)
    schedule = save_schedule(
        schedule=ScriptSchedule(org=world.org_a, script=script, cron="*/5 * * * *", timezone="UTC"),
        actor=None,
        now=NOW,
    )

    reports = run_concurrently(4, lambda n: fire_due_schedules(now=NOW + 5 * MIN))

    assert sorted(report.split(",")[0] for report in reports) == ["schedules fired: 0"] * 3 + ["schedules fired: 1"]
    assert ScriptRun.objects.filter(schedule=schedule).count() == 1


def test_a_downtime_of_three_slots_fires_once_and_moves_to_the_next_future_slot(make_schedule):
    schedule = make_schedule(cron="0 * * * *", timezone="UTC", now=NOW)
    assert schedule.next_run_at == NOW + HOUR
    back = NOW + 3 * HOUR + 10 * MIN  # the slots of 13:00, 14:00 and 15:00 were missed

    report = fire_due_schedules(now=back)
    again = fire_due_schedules(now=back + MIN)

    assert report.startswith("schedules fired: 1,")
    assert again.startswith("schedules fired: 0,")
    assert ScriptRun.objects.filter(schedule=schedule).count() == 1
    schedule.refresh_from_db()
    assert schedule.last_run_at == back
    assert schedule.next_run_at == NOW + 4 * HOUR


def test_a_disabled_schedule_does_not_fire(make_schedule):
    schedule = make_schedule(enabled=False)

    assert schedule.next_run_at is None
    assert fire_due_schedules(now=NOW + 24 * HOUR).startswith("schedules fired: 0,")
    assert not ScriptRun.objects.filter(schedule=schedule).exists()


# ---- targets at firing time ----


def test_a_group_target_runs_on_the_groups_members_at_firing_time(world, make_schedule):
    group = world.groups["All of A"]
    a1_linux, a2_linux = world.devices[world.site_a1][0], world.devices[world.site_a2][0]
    DeviceGroupMembership.objects.create(group=group, device=a1_linux, org=world.org_a)
    schedule = make_schedule(device_group=group, cron="0 * * * *", timezone="UTC")

    fire_due_schedules(now=NOW + HOUR)
    DeviceGroupMembership.objects.create(group=group, device=a2_linux, org=world.org_a)
    fire_due_schedules(now=NOW + 2 * HOUR)

    first, second = ScriptRun.objects.filter(schedule=schedule).order_by("created_at", "id")
    assert set(DeviceCommand.objects.filter(script_run=first).values_list("device_id", flat=True)) == {a1_linux.pk}
    assert set(DeviceCommand.objects.filter(script_run=second).values_list("device_id", flat=True)) == {
        a1_linux.pk,
        a2_linux.pk,
    }
    assert second.parameters == {"days": 7}


def test_a_site_target_runs_on_the_sites_devices_only(world, make_schedule):
    schedule = make_schedule(site=world.site_a2, cron="0 * * * *", timezone="UTC")

    fire_due_schedules(now=NOW + HOUR)

    run = ScriptRun.objects.get(schedule=schedule)
    assert set(DeviceCommand.objects.filter(script_run=run).values_list("device_id", flat=True)) == {
        world.devices[world.site_a2][0].pk
    }
    assert [skip["reason"] for skip in run.skipped] == ["os_not_supported"]


# ---- failures move on ----


def test_a_failing_firing_is_audited_moves_on_and_does_not_stop_the_others(world, make_script, make_schedule):
    archived = make_script(world.org_a, name="Old cleanup")
    failing = make_schedule(script=archived, cron="0 * * * *", timezone="UTC", name="old")
    healthy = make_schedule(cron="30 * * * *", timezone="UTC", name="healthy")
    # Archived behind the schedule's back (archive_script would have disabled it): the firing finds it archived.
    Script.objects.filter(pk=archived.pk).update(archived_at=NOW)
    now = NOW + 2 * HOUR

    report = fire_due_schedules(now=now)

    assert report == "schedules fired: 1, failed: 1, commands queued: 2"
    assert not ScriptRun.objects.filter(schedule=failing).exists()
    assert ScriptRun.objects.filter(schedule=healthy).count() == 1
    failing.refresh_from_db()
    assert failing.last_run_at == now
    assert failing.next_run_at == now + HOUR
    row = AuditLog.objects.get(action="script_schedule.fail")
    assert row.target_id == str(failing.pk)
    assert row.org_id == world.org_a.pk
    assert row.actor_user_id is None
    assert row.details["error"] == "script_archived"
    assert row.details["slot"] == (NOW + HOUR).isoformat()
    assert row.details["nextRunAt"] == (now + HOUR).isoformat()
    assert fire_due_schedules(now=now + MIN).startswith("schedules fired: 0, failed: 0")


def test_a_firing_whose_parameters_no_longer_fit_the_script_fails_with_the_parameters_named(
    world, script, make_schedule
):
    from scripts.services.library import save_script

    schedule = make_schedule(parameters={"days": 3}, cron="0 * * * *", timezone="UTC")
    script.parameters = [{"name": "hours", "type": "int", "required": True}]
    save_script(script=script, actor=None)

    report = fire_due_schedules(now=NOW + HOUR)

    assert report.startswith("schedules fired: 0, failed: 1")
    row = AuditLog.objects.get(action="script_schedule.fail", target_id=str(schedule.pk))
    assert "parameters.days" in row.details["message"]
    assert "parameters.hours" in row.details["message"]
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + 2 * HOUR


def test_an_unexpected_error_in_one_firing_is_logged_audited_and_the_pass_goes_on(
    world, make_script, make_schedule, monkeypatch, caplog
):
    from scripts.services import schedules as service

    broken = make_schedule(script=make_script(world.org_a, name="Broken"), timezone="UTC", name="broken")
    healthy = make_schedule(timezone="UTC", name="healthy")
    real_start_run = service.start_run

    def start_run(**kwargs):
        if kwargs["schedule"].pk == broken.pk:
            raise RuntimeError("a bug")
        return real_start_run(**kwargs)

    monkeypatch.setattr(service, "start_run", start_run)

    report = fire_due_schedules(now=NOW + HOUR)

    assert report == "schedules fired: 1, failed: 1, commands queued: 2"
    assert ScriptRun.objects.filter(schedule=healthy).count() == 1
    row = AuditLog.objects.get(action="script_schedule.fail")
    assert row.target_id == str(broken.pk)
    assert row.details["message"] == "RuntimeError: a bug"
    assert "firing failed" in caplog.text
    broken.refresh_from_db()
    assert broken.next_run_at == NOW + 2 * HOUR


# ---- saving: the rules and who may ----


def _invalid_fields(excinfo) -> dict[str, list[str]]:
    return excinfo.value.fields


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 30 2 * * *", "five fields"),
        ("0 0 1 1 * 2026", "five fields"),
        ("every day at noon", "five fields"),
        ("garbage", "five fields"),
        ("", "cannot be blank"),
        ("61 * * * *", "not a valid cron expression"),
        ("a b c d e", "not a valid cron expression"),
        ("0 0 30 2 *", "never matches"),
    ],
)
def test_a_bad_cron_expression_is_a_field_error(make_schedule, cron, says):
    with pytest.raises(Invalid) as excinfo:
        make_schedule(cron=cron)

    assert list(_invalid_fields(excinfo)) == ["cron"]
    [message] = _invalid_fields(excinfo)["cron"]
    assert says in message
    assert not ScriptSchedule.objects.exists()


def test_a_bad_time_zone_is_a_field_error(make_schedule):
    with pytest.raises(Invalid) as excinfo:
        make_schedule(timezone="Mars/Olympus_Mons")

    assert list(_invalid_fields(excinfo)) == ["timezone"]
    assert not ScriptSchedule.objects.exists()


def test_bad_parameters_are_field_errors_named_by_their_paths(make_schedule):
    with pytest.raises(Invalid) as excinfo:
        make_schedule(parameters={"days": "many", "colour": "red"})

    assert set(_invalid_fields(excinfo)) == {"parameters.days", "parameters.colour"}
    assert not ScriptSchedule.objects.exists()


def test_a_group_site_or_script_of_another_organization_is_a_field_error(world, make_schedule, make_script):
    other_script = make_script(world.org_b, name="B's script")
    for fields, name in [
        ({"device_group": world.groups["B1 servers"]}, "deviceGroupId"),
        ({"site": world.site_b1}, "siteId"),
        ({"script": other_script}, "scriptId"),
    ]:
        with pytest.raises(Invalid) as excinfo:
            make_schedule(**fields)
        assert list(_invalid_fields(excinfo)) == [name]
    assert not ScriptSchedule.objects.exists()


def test_a_group_and_a_site_together_are_refused(world, make_schedule):
    with pytest.raises(Invalid) as excinfo:
        make_schedule(site=world.site_a1, device_group=world.groups["A1 servers"])

    assert "deviceGroupId" in _invalid_fields(excinfo)


def test_an_archived_script_cannot_be_scheduled(world, make_script, make_schedule):
    from scripts.services.library import archive_script

    archived = archive_script(script=make_script(world.org_a), actor=None)

    with pytest.raises(Invalid) as excinfo:
        make_schedule(script=archived)

    assert list(_invalid_fields(excinfo)) == ["scriptId"]


def test_a_partner_library_script_can_be_scheduled_in_the_partners_organizations(world, make_script, make_schedule):
    shared = make_script(world.partner_a, name="Partner-wide cleanup")

    schedule = make_schedule(org=world.org_a2, script=shared)

    assert schedule.pk is not None
    with pytest.raises(Invalid):
        make_schedule(org=world.org_b, script=shared)


def test_saving_writes_audit_rows_and_recomputes_the_next_slot_only_when_the_timing_changes(org_admin, world, script):
    schedule = save_schedule(
        schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 3 * * *", timezone="Europe/Berlin"),
        actor=org_admin,
        now=NOW,
    )
    assert schedule.next_run_at == berlin(2026, 3, 3, 3, 0)
    assert schedule.created_by == org_admin
    created = AuditLog.objects.get(action="script_schedule.create")
    assert created.actor_user == org_admin
    assert created.details["schedule"]["cron"] == "0 3 * * *"

    schedule.name = "Nightly"
    save_schedule(schedule=schedule, actor=org_admin, now=NOW + 48 * HOUR)
    assert ScriptSchedule.objects.get(pk=schedule.pk).next_run_at == berlin(2026, 3, 3, 3, 0)

    schedule.timezone = "UTC"
    save_schedule(schedule=schedule, actor=org_admin, now=NOW)
    assert ScriptSchedule.objects.get(pk=schedule.pk).next_run_at == dt.datetime(2026, 3, 3, 3, 0, tzinfo=UTC)

    schedule.enabled = False
    save_schedule(schedule=schedule, actor=org_admin, now=NOW)
    assert ScriptSchedule.objects.get(pk=schedule.pk).next_run_at is None
    updates = AuditLog.objects.filter(action="script_schedule.update").order_by("id")
    assert [list(row.details["changes"]) for row in updates] == [["name"], ["timezone"], ["enabled"]]


def test_a_technician_without_scripts_write_may_not_schedule(partner_technician, world, script):
    with pytest.raises(Refused):
        save_schedule(
            schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 3 * * *"), actor=partner_technician
        )
    assert not ScriptSchedule.objects.exists()


def test_an_org_user_restricted_to_a_site_may_not_schedule(org_user, world, script):
    with pytest.raises(Refused):
        save_schedule(
            schedule=ScriptSchedule(org=world.org_a, script=script, site=world.site_a1, cron="0 3 * * *"),
            actor=org_user,
        )
    assert not ScriptSchedule.objects.exists()


def test_an_outsider_may_not_schedule_in_another_partners_organization(outsider, world, script):
    with pytest.raises(Refused):
        save_schedule(schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 3 * * *"), actor=outsider)
    assert not ScriptSchedule.objects.exists()


def test_a_member_who_may_run_scripts_but_not_commands_on_devices_may_not_schedule(
    world, script, make_org_member, roles
):
    from accounts.models import Permission, Role, RolePermission

    role = Role.objects.create(name="Scripter", scope=Role.Scope.ORGANIZATION)
    for resource, action in [("scripts", "write"), ("scripts", "execute"), ("devices", "read")]:
        RolePermission.objects.create(
            role=role, permission=Permission.objects.get_or_create(resource=resource, action=action)[0]
        )
    roles[role.name] = role
    member = make_org_member("scripter@a.example", world.org_a, role.name)

    for target in [{}, {"site": world.site_a1}, {"device_group": world.groups["A1 servers"]}]:
        with pytest.raises(Refused, match="devices:execute"):
            save_schedule(
                schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 3 * * *", **target), actor=member
            )
    assert not ScriptSchedule.objects.exists()


def test_an_org_admin_may_schedule_on_a_group_a_site_or_the_organization(org_admin, world, script):
    for target in [{}, {"site": world.site_a1}, {"device_group": world.groups["A1 servers"]}]:
        save_schedule(
            schedule=ScriptSchedule(org=world.org_a, script=script, cron="0 3 * * *", **target), actor=org_admin
        )

    assert ScriptSchedule.objects.count() == 3


def test_deleting_a_schedule_keeps_its_runs_and_writes_an_audit_row(org_admin, make_schedule):
    schedule = make_schedule(timezone="UTC")
    fire_due_schedules(now=NOW + HOUR)
    run = ScriptRun.objects.get(schedule=schedule)

    delete_schedule(schedule=schedule, actor=org_admin)

    assert not ScriptSchedule.objects.exists()
    run.refresh_from_db()
    assert run.schedule_id is None
    row = AuditLog.objects.get(action="script_schedule.delete")
    assert row.actor_user == org_admin
    assert row.details["schedule"]["cron"] == "0 * * * *"


def test_a_viewer_may_not_delete_a_schedule(viewer, make_schedule):
    schedule = make_schedule()

    with pytest.raises(Refused):
        delete_schedule(schedule=schedule, actor=viewer)

    assert ScriptSchedule.objects.filter(pk=schedule.pk).exists()


def test_the_periodic_job_is_registered_on_its_setting(db, settings):
    from jobs.registry import all_jobs

    settings.SCRIPT_SCHEDULE_SECONDS = 20
    job = next(job for job in all_jobs() if job.name == "fire_script_schedules")

    assert job.interval_seconds == 20
    assert job.run().startswith("schedules fired: 0,")
