"""The console's dashboard (issue 16, point 1): the admin's landing page shows, within the person's reach, the devices
by status and OS (the same counts as GET /api/v1/devices/summary, each linking to the filtered device list), the
devices offline longest, open alerts, the day's failed commands and script runs, enrollment keys to renew and, for
operators, the scheduler's jobs; each section only to people who may read its list; as many queries for many rows
as for few."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import Alert
from devices.models import Device, DeviceCommand
from jobs.models import ScheduledJob
from jobs.registry import all_jobs
from orgs.models import EnrollmentKey
from scripts.models import Script, ScriptRun
from scripts.services.library import save_script
from scripts.services.runs import start_run
from tests.doors import admin_as, admin_url, api_as
from tests.test_list_query_counts import FEW, MORE, Case, Grower, make_grower

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


def figures(response) -> dict[str, int]:
    """Every ``data-count`` of the page: key → the number shown."""
    assert response.status_code == 200
    found = re.findall(r'data-count="([^"]+)"[^>]*>\s*([\d,]+)\s*<', response.content.decode())
    keys = [key for key, _ in found]
    assert len(keys) == len(set(keys)), f"a count is shown twice: {keys}"
    return {key: int(value.replace(",", "")) for key, value in found}


def figure_link(response, key: str) -> str:
    match = re.search(rf'<a href="([^"]+)"[^>]*data-count="{re.escape(key)}"', response.content.decode())
    assert match is not None, f"no link carries data-count={key!r}"
    return html.unescape(match.group(1))


def listed(response) -> set[str]:
    """The objects of an admin list page, as their str()."""
    assert response.status_code == 200, response.content[:300]
    return {str(obj) for obj in response.context["cl"].result_list}


def set_status(*hostnames: str, status: str, last_seen_at=None) -> None:
    Device.objects.filter(hostname__in=hostnames).update(status=status, last_seen_at=last_seen_at)


def device(hostname: str) -> Device:
    return Device.objects.get(hostname=hostname)


# --- devices by status and OS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "total"),
    [
        ("superuser", 8),
        ("partner_admin", 6),
        ("partner_technician", 6),
        ("viewer", 6),
        ("org_admin", 4),
        ("org_user", 2),
        ("outsider", 2),
    ],
)
def test_the_device_counts_equal_the_summary_api_for_the_same_person(request, world, persona, total):
    set_status("a1-2", status=Device.Status.OFFLINE)
    set_status("a2-1", status=Device.Status.MAINTENANCE)
    set_status("a2m-1", status=Device.Status.QUARANTINED)
    set_status("b1-1", status=Device.Status.DECOMMISSIONED)
    user = request.getfixturevalue(persona)

    shown = figures(admin_as(user).get(INDEX))
    summary = api_as(user).get("/api/v1/devices/summary")

    assert summary.status_code == 200
    assert {
        "byStatus": {status: shown[f"status:{status}"] for status in Device.Status.values},
        "byOsType": {os_type: shown[f"os:{os_type}"] for os_type in Device.OsType.values},
        "total": shown["devices:total"],
    } == summary.json()
    assert shown["devices:total"] == total  # the person's devices, not the installation's


def test_each_status_and_os_count_links_to_the_device_list_filtered_by_it(world, partner_technician):
    set_status("a2-1", "a2m-2", status=Device.Status.OFFLINE)
    set_status("b1-1", status=Device.Status.OFFLINE)  # partner B: out of reach
    client = admin_as(partner_technician)
    page = client.get(INDEX)

    expected = {
        "status:offline": {"a2-1", "a2m-2"},
        "status:online": {"a1-1", "a1-2", "a2-2", "a2m-1"},
        "status:quarantined": set(),
        "os:linux": {"a1-1", "a2-1", "a2m-1"},
        "os:windows": {"a1-2", "a2-2", "a2m-2"},
        "os:macos": set(),
    }
    for key, hostnames in expected.items():
        url = figure_link(page, key)
        assert url.startswith(admin_url(Device, "changelist") + "?"), url
        assert listed(client.get(url)) == hostnames, key
        assert figures(page)[key] == len(hostnames)


def test_the_devices_offline_longest_come_first_with_where_they_are_and_when_they_were_seen(world, partner_technician):
    now = timezone.now()
    set_status("a1-1", status=Device.Status.OFFLINE, last_seen_at=now - dt.timedelta(days=3, minutes=5))
    set_status("a2-1", status=Device.Status.OFFLINE, last_seen_at=now - dt.timedelta(hours=1, minutes=5))
    set_status("a2m-1", status=Device.Status.OFFLINE, last_seen_at=None)  # never seen: longest of all
    set_status("a1-2", status=Device.Status.ONLINE, last_seen_at=now - dt.timedelta(days=30))  # online: not listed
    set_status("b1-1", status=Device.Status.OFFLINE, last_seen_at=now - dt.timedelta(days=60))  # out of reach

    page = admin_as(partner_technician).get(INDEX)

    assert page.status_code == 200
    rows = page.context["dashboard"].fleet.offline_longest
    assert [row.device.hostname for row in rows] == ["a2m-1", "a1-1", "a2-1"]
    body = page.content.decode()
    assert "3 days ago" in body
    assert "never seen" in body
    assert "Org A / A1" in body
    assert f'href="{admin_url(Device, "change", device("a1-1").pk)}"' in body
    assert "b1-1" not in body


def test_the_offline_list_stops_at_ten_devices(world, superuser):
    now = timezone.now()
    for n in range(12):
        Device.objects.create(
            org=world.org_a,
            site=world.site_a1,
            agent_id=f"agent-{n}",
            hostname=f"old-{n:02}",
            os_type=Device.OsType.LINUX,
            status=Device.Status.OFFLINE,
            last_seen_at=now - dt.timedelta(days=n + 1),
        )

    rows = admin_as(superuser).get(INDEX).context["dashboard"].fleet.offline_longest

    assert [row.device.hostname for row in rows] == [f"old-{n:02}" for n in range(11, 1, -1)]


# --- alerts -------------------------------------------------------------------------------------------------------


def make_alert(dev: Device, severity: str, *, status: str = Alert.Status.OPEN, minutes_ago: int = 0, title: str = ""):
    return Alert.objects.create(
        org_id=dev.org_id,
        site_id=dev.site_id,
        device=dev,
        subject=f"{severity}-{minutes_ago}-{status}",
        severity=severity,
        status=status,
        title=title or f"{severity} on {dev.hostname}",
        opened_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )


def test_open_alerts_are_counted_by_severity_and_the_newest_listed_within_reach(world, org_user):
    a1 = device("a1-1")
    make_alert(a1, "critical", minutes_ago=30, title="Disk full")
    make_alert(a1, "warning", minutes_ago=10, title="CPU high")
    make_alert(device("a1-2"), "warning", minutes_ago=20, title="RAM high")
    make_alert(a1, "info", status=Alert.Status.ACKNOWLEDGED, title="Seen it")
    make_alert(a1, "info", status=Alert.Status.RESOLVED, title="Gone")
    make_alert(device("a2-1"), "critical", title="Other site")  # site A2: not the org user's
    make_alert(device("b1-1"), "critical", title="Other partner")
    client = admin_as(org_user)

    page = client.get(INDEX)

    shown = figures(page)
    assert (shown["alerts:critical"], shown["alerts:warning"], shown["alerts:info"]) == (1, 2, 0)
    assert shown["alerts:acknowledged"] == 1
    rows = page.context["dashboard"].alerts.newest
    assert [row.alert.title for row in rows] == ["CPU high", "RAM high", "Disk full"]
    body = page.content.decode()
    assert "Other site" not in body
    assert "Other partner" not in body
    assert listed(client.get(figure_link(page, "alerts:warning"))) == {
        str(alert) for alert in Alert.objects.filter(title__in=["CPU high", "RAM high"])
    }


def test_the_newest_open_alerts_are_at_most_ten(world, superuser):
    a1 = device("a1-1")
    for n in range(12):
        make_alert(a1, "warning", minutes_ago=n, title=f"alert {n}")

    rows = admin_as(superuser).get(INDEX).context["dashboard"].alerts.newest

    assert [row.alert.title for row in rows] == [f"alert {n}" for n in range(10)]


# --- commands and script runs ---------------------------------------------------------------------------------------


def make_command(dev: Device, status: str, *, hours_ago: float, result=None) -> DeviceCommand:
    return DeviceCommand.objects.create(
        device=dev,
        org_id=dev.org_id,
        type=DeviceCommand.Type.REBOOT,
        status=status,
        result=result,
        created_at=timezone.now() - dt.timedelta(hours=hours_ago),
    )


def test_failed_and_timed_out_commands_of_the_last_day_are_counted_and_the_newest_listed(world, partner_technician):
    failed = make_command(device("a1-1"), "failed", hours_ago=1, result={"exitCode": 3, "error": "disk is full"})
    timed_out = make_command(device("a2m-1"), "timeout", hours_ago=2)
    make_command(device("a1-1"), "completed", hours_ago=1, result={"exitCode": 0})
    make_command(device("a1-1"), "pending", hours_ago=1)
    make_command(device("a1-1"), "failed", hours_ago=30)  # older than a day
    make_command(device("b1-1"), "failed", hours_ago=1)  # partner B
    client = admin_as(partner_technician)

    page = client.get(INDEX)

    assert figures(page)["commands:failed"] == 2
    rows = page.context["dashboard"].commands.newest
    assert [row.command.pk for row in rows] == [failed.pk, timed_out.pk]
    body = page.content.decode()
    assert "disk is full" in body
    assert f'data-command-id="{failed.pk}" data-command-status="failed"' in body
    assert listed(client.get(figure_link(page, "commands:failed"))) == {str(failed), str(timed_out)}


def test_no_failed_commands_shows_zero(world, partner_technician):
    make_command(device("a1-1"), "completed", hours_ago=1)

    page = admin_as(partner_technician).get(INDEX)

    assert figures(page)["commands:failed"] == 0
    assert page.context["dashboard"].commands.newest == []


def test_the_days_script_runs_are_listed_with_their_failures(world, org_admin):
    script = save_script(
        script=Script(org=world.org_a, name="Cleanup", language="bash", content="echo hi\n"), actor=None
    )
    old = start_run(script=script, actor=None, trigger="api", device_ids=[device("a1-1").pk])
    ScriptRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=2))
    run = start_run(script=script, actor=None, trigger="api", device_ids=[device("a1-1").pk, device("a2-1").pk])
    DeviceCommand.objects.filter(script_run=run, device__hostname="a1-1").update(status="failed")
    client = admin_as(org_admin)

    page = client.get(INDEX)

    assert figures(page)["runs:recent"] == 1
    rows = page.context["dashboard"].runs.newest
    assert [(row.run.pk, row.failures, row.unfinished) for row in rows] == [(run.pk, 1, 1)]
    body = page.content.decode()
    assert f'data-run-id="{run.pk}" class="dash-failing"' in body
    assert client.get(figure_link(page, "runs:recent")).status_code == 200


# --- enrollment keys ------------------------------------------------------------------------------------------------


def make_key(site, name: str, **fields) -> EnrollmentKey:
    return EnrollmentKey.objects.create(
        org=site.org, site=site, name=name, key_prefix=name[:8], key_hash=f"{name:x<64}"[:64], **fields
    )


def test_enrollment_keys_near_their_limit_or_expiry_are_listed_to_who_manages_keys(world, org_admin):
    now = timezone.now()
    make_key(world.site_a1, "eighty percent", usage_count=8, max_usage=10)
    make_key(world.site_a1, "used up", usage_count=5, max_usage=5)
    make_key(world.site_a2, "expires in three days", expires_at=now + dt.timedelta(days=3))
    make_key(world.site_a1, "seventy percent", usage_count=7, max_usage=10)
    make_key(world.site_a1, "expires in a month", expires_at=now + dt.timedelta(days=30))
    make_key(world.site_a1, "expired", usage_count=9, max_usage=10, expires_at=now - dt.timedelta(hours=1))
    make_key(world.site_a1, "revoked", usage_count=9, max_usage=10, revoked_at=now)
    make_key(world.site_b1, "partner b", usage_count=9, max_usage=10)

    client = admin_as(org_admin)
    page = client.get(INDEX)

    assert figures(page)["keys:attention"] == 3
    rows = page.context["dashboard"].keys.keys
    assert [row.key.name for row in rows] == ["expires in three days", "eighty percent", "used up"]
    assert [(row.usage_percent, row.exhausted, row.expires_soon) for row in rows] == [
        (None, False, True),
        (80, False, False),
        (100, True, False),
    ]
    unrevoked = listed(client.get(figure_link(page, "keys:attention")))  # the keys list, less the revoked keys
    assert {str(row.key) for row in rows} <= unrevoked
    assert not any(key.startswith("revoked") for key in unrevoked)


# --- who sees which section ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "sections"),
    [
        ("superuser", ["fleet", "alerts", "commands", "runs", "keys", "jobs"]),
        ("partner_admin", ["fleet", "alerts", "commands", "runs", "keys"]),
        # No devices:write: enrollment keys are managed (and listed) with it.
        ("partner_technician", ["fleet", "alerts", "commands", "runs"]),
        ("viewer", ["fleet", "alerts", "commands", "runs"]),
        ("org_user", ["fleet", "alerts", "commands", "runs", "keys"]),
    ],
)
def test_each_section_is_shown_to_who_may_read_its_list(request, world, persona, sections):
    user = request.getfixturevalue(persona)

    page = admin_as(user).get(INDEX)

    assert page.status_code == 200
    assert page.context["dashboard"].sections == sections
    shown = figures(page)
    assert ("keys:attention" in shown) == ("keys" in sections)
    assert ("jobs:unhealthy" in shown) == ("jobs" in sections)


def test_a_staff_user_reaching_nothing_gets_a_dashboard_that_says_so(make_user):
    staff = make_user("staff@example.com", is_staff=True)

    page = admin_as(staff).get(INDEX)

    assert page.status_code == 200
    assert page.context["dashboard"].sections == []
    assert figures(page) == {}
    assert "Nothing is in your reach yet" in page.content.decode()


def test_the_scheduler_jobs_failing_or_overdue_are_shown_to_operators_first(world, superuser, partner_admin):
    now = timezone.now()
    first, second, third = (job.name for job in all_jobs()[:3])
    ScheduledJob.objects.create(
        name=first,
        interval_seconds=60,
        next_run_at=now + dt.timedelta(seconds=30),
        last_outcome="failed",
        last_finished_at=now,
        consecutive_failures=3,
    )
    ScheduledJob.objects.create(name=second, interval_seconds=60, next_run_at=now - dt.timedelta(hours=2))
    ScheduledJob.objects.create(
        name=third, interval_seconds=60, next_run_at=now + dt.timedelta(seconds=30), last_outcome="ok"
    )

    page = admin_as(superuser).get(INDEX)

    assert figures(page)["jobs:unhealthy"] == 2
    jobs = page.context["dashboard"].jobs.jobs
    assert [(job.name, job.failing, job.overdue) for job in jobs[:2]] == sorted(
        [(first, True, False), (second, False, True)]
    )
    assert {job.name for job in jobs} == {job.name for job in all_jobs()}
    assert "(overdue)" in page.content.decode()
    assert "jobs:unhealthy" not in figures(admin_as(partner_admin).get(INDEX))


# --- cost ---------------------------------------------------------------------------------------------------------


def _grow(g: Grower, n: int) -> None:
    """One more of everything the dashboard reads, in the persona's reach: an offline device with an open alert
    and a failed command, a script run with a failure, an enrollment key near its limit."""
    dev = Device.objects.create(
        org=g.world.org_a,
        site=g.world.site_a1,
        agent_id=f"grown-{n}",
        hostname=f"grown-{n}",
        os_type=Device.OsType.LINUX,
        status=Device.Status.OFFLINE,
        last_seen_at=timezone.now() - dt.timedelta(hours=n + 1),
    )
    make_alert(dev, ("critical", "warning", "info")[n % 3], minutes_ago=n)
    make_command(dev, "failed", hours_ago=0.1 * n)
    if g.script is None:
        g.script = save_script(
            script=Script(org=g.world.org_a, name="Cleanup", language="bash", content="echo hi\n"), actor=None
        )
    run = start_run(script=g.script, actor=None, trigger="api", device_ids=[dev.pk])
    DeviceCommand.objects.filter(script_run=run).update(status="failed")
    make_key(g.world.site_a1, f"grown key {n}", usage_count=9, max_usage=10)


QUERIES = 15  # per request: session, user, the reach (5), then ONE query for each figure or table (8)


@pytest.mark.parametrize("persona", ["partner_technician", "partner_admin", "superuser"])
def test_the_dashboard_runs_as_many_queries_for_many_rows_as_for_few(
    request, world, persona, django_assert_max_num_queries
):
    grower = make_grower(request, world, Case(INDEX, persona, _grow, queries=QUERIES))
    client = admin_as(grower.user)
    for n in range(FEW):
        _grow(grower, n)
    client.get(INDEX)

    with CaptureQueriesContext(connection) as few, django_assert_max_num_queries(QUERIES):
        few_figures = figures(client.get(INDEX))
    for n in range(FEW, FEW + MORE):
        _grow(grower, n)
    with CaptureQueriesContext(connection) as many, django_assert_max_num_queries(QUERIES):
        many_figures = figures(client.get(INDEX))

    assert len(many) == len(few)
    assert many_figures["status:offline"] == few_figures["status:offline"] + MORE
    assert many_figures["commands:failed"] == few_figures["commands:failed"] + 2 * MORE  # one alone, one in its run
    assert many_figures["runs:recent"] == few_figures["runs:recent"] + MORE
    if "keys:attention" in few_figures:  # not for the technician: keys need devices:write
        assert many_figures["keys:attention"] == few_figures["keys:attention"] + MORE
    assert sum(many_figures[f"alerts:{s}"] for s in ("critical", "warning", "info")) == FEW + MORE
