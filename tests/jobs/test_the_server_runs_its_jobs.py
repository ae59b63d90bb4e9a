"""With only the server running (gunicorn as documented, no cron, no extra process), the periodic work happens:
groups follow a heartbeat, silent devices go offline, commands expire (issue 12). Two servers on one database run
each tick once; a scheduler process that dies is replaced, and one whose server dies stops."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.utils import timezone

from devices import rules
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership
from devices.services import credentials, groups
from jobs.models import JobRun
from tests import factories
from tests.agent.conftest import heartbeat_body
from tests.servers import ROOT, Endpoint, Gunicorn, free_port, server_environment, url_of_test_database

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "mark_offline=1,expire_commands=1"  # the defaults (30 s) would only make the test wait


def wait_for(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def scheduler_pid(server: Gunicorn) -> int:
    """The scheduler child of the server's master (its other children are the workers)."""

    def find():
        for pid in children_of(server.process.pid):
            try:
                if b"jobs" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return pid
            except OSError:
                continue
        return None

    return wait_for(find, timeout=30, what="the server starts its scheduler")


def test_with_only_the_server_running_groups_stay_fresh_devices_go_offline_and_commands_expire(tmp_path):
    site = factories.site()
    token = credentials.mint_agent_token()
    reporting = factories.device(site, status="online", os_version="11", agent_token_hash=token.hash)
    silent = factories.device(site, status="online", last_seen_at=timezone.now() - dt.timedelta(hours=1))
    rule = {"operator": "AND", "conditions": [{"field": "osVersion", "operator": "equals", "value": "12"}]}
    on_12 = DeviceGroup.objects.create(
        org=site.org, name="On 12", type="dynamic", filter_rules=rule, fields_used=rules.fields_used(rule)
    )
    groups.refresh_group(on_12)
    command = DeviceCommand.objects.create(
        device=silent, org_id=silent.org_id, type="reboot", payload={}, expires_at=timezone.now() - dt.timedelta(1)
    )

    with Gunicorn(url_of_test_database(), tmp_path / "gunicorn.log", SCHEDULER_ENABLED="1") as server:
        agent = Endpoint(server.port, {"Authorization": f"Bearer {token.raw}"})
        status, _, _ = agent.request(
            "POST", f"/api/v1/agents/{reporting.agent_id}/heartbeat", heartbeat_body(osVersion="12")
        )
        assert status == 200
        changed_at = time.monotonic()
        wait_for(
            lambda: DeviceGroupMembership.objects.filter(group=on_12, device=reporting).exists(),
            timeout=60,
            what="the heartbeat's new osVersion moves the device into the group",
        )
        assert time.monotonic() - changed_at <= 15  # the queue is drained every 5 s
        wait_for(lambda: Device.objects.get(pk=silent.pk).status == "offline", timeout=60, what="offline")
        wait_for(lambda: DeviceCommand.objects.get(pk=command.pk).status == "expired", timeout=60, what="expired")
    assert Device.objects.get(pk=reporting.pk).status == "online"


def test_two_servers_on_one_database_run_each_tick_once_and_replace_a_dead_scheduler(tmp_path):
    env = {"SCHEDULER_ENABLED": "1", "SCHEDULER_INTERVALS": FAST}
    with (
        Gunicorn(url_of_test_database(), tmp_path / "one.log", **env) as one,
        Gunicorn(url_of_test_database(), tmp_path / "two.log", **env) as two,
    ):
        schedulers = {scheduler_pid(one), scheduler_pid(two)}
        wait_for(lambda: JobRun.objects.filter(job_id="mark_offline").count() >= 6, timeout=60, what="six runs")

        # A scheduler that dies is replaced by its server, and the other server's goes on meanwhile.
        dead = scheduler_pid(one)
        os.kill(dead, signal.SIGKILL)
        replacement = wait_for(
            lambda: (pid := scheduler_pid(one)) != dead and pid, timeout=60, what="a new scheduler for the server"
        )
        wait_for(
            lambda: JobRun.objects.filter(runner__endswith=f":{replacement}").exists(),
            timeout=60,
            what="the replacement runs jobs",
        )
        schedulers.add(replacement)

        # Its own server killed outright (no chance to stop it), a scheduler stops by itself.
        os.kill(two.process.pid, signal.SIGKILL)
        orphan = next(pid for pid in schedulers if pid not in (dead, replacement))
        wait_for(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), timeout=15, what="orphan stops")

    runs = list(JobRun.objects.filter(job_id="mark_offline").order_by("started_at"))
    runners = {run.runner.rsplit(":", 1)[1] for run in runs}
    assert runners <= {str(pid) for pid in schedulers}
    # Once per tick: however many schedulers were running, a second at least between two runs of the job.
    gaps = [(after.started_at - before.started_at).total_seconds() for before, after in itertools.pairwise(runs)]
    assert len(runs) >= 6 and min(gaps) >= 0.9, gaps
    assert len({run.scheduled_for for run in runs}) == len(runs)
    # One lane at a time: no two runs of one lane overlap.
    by_lane = defaultdict(list)
    for run in JobRun.objects.exclude(finished_at=None).order_by("started_at"):
        by_lane["groups" if "groups" in run.job_id else run.job_id].append(run)
    for lane_runs in by_lane.values():
        for before, after in itertools.pairwise(lane_runs):
            assert after.started_at >= before.finished_at, (before, after)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_development_server_runs_the_jobs_too(tmp_path):
    """``make run`` serves with ``manage.py runserver`` (and its autoreloader): the scheduler runs beside it."""
    env = server_environment(url_of_test_database(), DEBUG="1", SCHEDULER_ENABLED="1", SCHEDULER_INTERVALS=FAST)
    with (tmp_path / "runserver.log").open("wb") as log:
        server = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{free_port()}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        runs = wait_for(
            lambda: list(JobRun.objects.filter(job_id="mark_offline")[:1]), timeout=60, what="a run beside runserver"
        )
        scheduler = int(runs[0].runner.rsplit(":", 1)[1])
        assert scheduler in children_of(server.pid)  # the outer process's child: it outlives code reloads
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    wait_for(lambda: not Path(f"/proc/{scheduler}").exists() or _zombie(scheduler), timeout=15, what="it stops too")
