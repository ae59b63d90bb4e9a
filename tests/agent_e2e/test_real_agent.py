"""The real agent against the real server, end to end (issue 17): gunicorn started by the test on the test database,
the ``rmm-agent`` console script enrolled and run as a process of its own on this machine.

One long test in steps, since each step needs the agent the previous ones left running: enrollment; the device with
this machine's hostname and real inventory (the software count is dpkg's); telemetry that fills a chart; a script
queued through the technician API with its output and exit code back; a script past its timeout killed with its
children (one of them in a session of its own); a library script's parameter with shell metacharacters arriving
verbatim; token rotation; and the server stopped for three minutes, whose gap arrives as backlog, none of it twice.

It takes about four minutes (most of it the three-minute outage); the step timings are printed (``pytest -s``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from rmm_agent.state import StateDir

from accounts.services import create_api_token
from devices.models import Device, DeviceDisk, DeviceNetworkInterface, DeviceSoftware, DeviceTelemetry
from orgs.services import create_enrollment_key
from tests.agent_e2e.conftest import RealAgent, Steps, Technician, wait_for
from tests.servers import Gunicorn, free_port, url_of_test_database

pytestmark = [pytest.mark.servers, pytest.mark.django_db(transaction=True)]

INTERVAL = 5  # AGENT_HEARTBEAT_INTERVAL_SECONDS' minimum
OUTAGE_SECONDS = 180
MAX_BACKOFF = 10
FINAL = {"completed", "failed", "timeout"}
# Every character a shell would act on, a quote of each kind, a newline and non-ASCII text.
METACHARACTERS = "a'b\"c $(touch /tmp/rmm-e2e-pwned) `id`; ls | cat & > /dev/null < * ? ~ \\ {x,y} #\n— ünïcode"


def installed_packages() -> int:
    """What dpkg (or rpm) says is installed: the truth the agent's software inventory must equal."""
    if shutil.which("dpkg-query"):
        listed = subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True, check=True)  # noqa: S607
    elif shutil.which("rpm"):
        listed = subprocess.run(["rpm", "-qa"], capture_output=True, text=True, check=True)  # noqa: S607
    else:
        pytest.skip("neither dpkg nor rpm on this machine")
    return len(listed.stdout.splitlines())


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def finished_command(technician: Technician, command_id: str):
    def look():
        status, command = technician.call("GET", f"/api/v1/commands/{command_id}")
        assert status == 200, command
        return command if command["status"] in FINAL else None

    return look


def test_a_real_agent_manages_this_machine_end_to_end(tmp_path, world, partner_admin):
    steps = Steps()
    database = url_of_test_database()
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    settings = {
        "AGENT_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL),
        "SECRET_KEY": django_settings.SECRET_KEY,  # enrollment keys and API tokens made here are HMACs keyed with it
    }
    server = Gunicorn(database, tmp_path / "gunicorn.log", port=port, **settings)
    agent = RealAgent(tmp_path, {"maxBackoffSeconds": MAX_BACKOFF})
    stray_pids: list[int] = []
    raw_token, _ = create_api_token(user=partner_admin, name="e2e", lifetime=None)
    technician = Technician(port, raw_token)
    try:
        server.__enter__()
        steps.done("gunicorn started")

        # ---- enrollment ----
        key, _ = create_enrollment_key(site=world.site_a1, name="e2e")
        enrolled = agent.enroll(server_url, key)
        assert enrolled.returncode == 0, enrolled.stderr
        device = Device.objects.get(site=world.site_a1, hostname=socket.gethostname())
        assert device.status == Device.Status.ONLINE
        assert str(device.pk) in enrolled.stdout
        steps.done("enrolled")

        # ---- the device's real inventory and a chart that fills ----
        agent.start()
        packages = installed_packages()
        wait_for(
            lambda: DeviceSoftware.objects.filter(device=device).count() == packages,
            timeout=60,
            what=f"the software inventory holds the {packages} installed packages",
            agent=agent,
        )
        wait_for(lambda: DeviceDisk.objects.filter(device=device).exists(), timeout=30, what="disks", agent=agent)
        wait_for(
            lambda: DeviceNetworkInterface.objects.filter(device=device).exists(),
            timeout=30,
            what="network interfaces",
            agent=agent,
        )
        wait_for(
            lambda: DeviceTelemetry.objects.filter(device_id=device.pk).count() >= 2,
            timeout=4 * INTERVAL,
            what="two telemetry samples",
            agent=agent,
        )
        status, chart = technician.call("GET", f"/api/v1/devices/{device.pk}/telemetry?bucket=raw")
        assert status == 200, chart
        assert len(chart["points"]) >= 2, chart
        steps.done("inventory uploaded, telemetry arriving")

        # ---- a technician's script: its output and exit code come back ----
        status, queued = technician.call(
            "POST",
            f"/api/v1/devices/{device.pk}/commands",
            {"type": "script", "payload": {"language": "bash", "content": "echo hello; exit 3", "timeoutSeconds": 60}},
        )
        assert status == 201, queued
        command = wait_for(
            finished_command(technician, queued["id"]), timeout=4 * INTERVAL, what="the script's result", agent=agent
        )
        assert command["result"]["stdout"] == "hello\n", command
        assert command["result"]["exitCode"] == 3, command
        steps.done("script echo hello; exit 3")

        # ---- output as real programs write it: binary, over the protocol's 1 MiB, and non-ASCII text ----
        noisy = "head -c 3000000 /dev/urandom; printf 'ünïcode ✓ — done' >&2"
        status, queued = technician.call(
            "POST",
            f"/api/v1/devices/{device.pk}/commands",
            {"type": "script", "payload": {"language": "bash", "content": noisy, "timeoutSeconds": 60}},
        )
        assert status == 201, queued
        command = wait_for(
            finished_command(technician, queued["id"]), timeout=6 * INTERVAL, what="the noisy result", agent=agent
        )
        assert command["status"] == "completed", command["status"]
        assert command["result"]["exitCode"] == 0
        assert 256 * 1024 < len(command["result"]["stdout"].encode()) <= 4 * 1024 * 1024
        assert "\x00" not in command["result"]["stdout"]
        assert command["result"]["stderr"] == "ünïcode ✓ — done"
        steps.done("binary output over the limit, truncated and stored")

        # ---- a script past its timeout is killed with its children ----
        pid_file = tmp_path / "children.pids"
        runaway = (
            f"sleep 300 &\necho $! > {pid_file}\n"
            f"setsid sleep 300 &\necho $! >> {pid_file}\n"
            f"echo $$ >> {pid_file}\nsleep 300\n"
        )
        status, queued = technician.call(
            "POST",
            f"/api/v1/devices/{device.pk}/commands",
            {"type": "script", "payload": {"language": "bash", "content": runaway, "timeoutSeconds": 2}},
        )
        assert status == 201, queued
        command = wait_for(
            finished_command(technician, queued["id"]), timeout=6 * INTERVAL, what="the timeout's result", agent=agent
        )
        stray_pids = [int(line) for line in pid_file.read_text().split()]
        assert len(stray_pids) == 3, stray_pids
        assert command["status"] == "timeout", command
        assert 2000 <= command["result"]["durationMs"] < 30_000, command
        assert wait_for(
            lambda: not any(pid_alive(pid) for pid in stray_pids), timeout=5, what=f"processes {stray_pids} gone"
        )
        steps.done("a script past its timeout killed with its children")

        # ---- a library script's parameter arrives verbatim in the environment ----
        status, script = technician.call(
            "POST",
            "/api/v1/scripts",
            {
                "orgId": str(world.org_a.pk),
                "name": "Print X",
                "language": "bash",
                "content": "printf '%s' \"$RMM_PARAM_X\"",
                "parameters": [{"name": "X", "type": "string", "required": True}],
                "timeoutSeconds": 30,
            },
        )
        assert status == 201, script
        status, run = technician.call(
            "POST",
            f"/api/v1/scripts/{script['id']}/run",
            {"deviceIds": [str(device.pk)], "parameters": {"X": METACHARACTERS}},
        )
        assert status in (200, 201), run

        def run_result():
            status, results = technician.call("GET", f"/api/v1/script-runs/{run['id']}/results")
            assert status == 200, results
            rows = results["results"]
            return rows[0] if rows and rows[0]["status"] not in ("pending", "sent") else None

        result = wait_for(run_result, timeout=4 * INTERVAL, what="the library script's result", agent=agent)
        assert result["stdout"] == METACHARACTERS, result
        assert result["exitCode"] == 0, result
        assert not os.path.exists("/tmp/rmm-e2e-pwned")  # noqa: S108 - the file a substituted value would make
        steps.done("a parameter with shell metacharacters arrives verbatim")

        # ---- token rotation ----
        old_token = StateDir(agent.state_dir).identity().auth_token
        Device.objects.filter(pk=device.pk).update(agent_token_issued_at=timezone.now() - dt.timedelta(days=365))
        new_token = wait_for(
            lambda: (token := StateDir(agent.state_dir).identity().auth_token) != old_token and token,
            timeout=4 * INTERVAL,
            what="the agent saves a new token",
            agent=agent,
        )
        device.refresh_from_db()
        assert device.agent_token_hash == hashlib.sha256(new_token.encode()).hexdigest()
        rotated_at = timezone.now()
        wait_for(
            lambda: Device.objects.get(pk=device.pk).last_seen_at > rotated_at + dt.timedelta(seconds=1),
            timeout=4 * INTERVAL,
            what="a heartbeat with the new token",
            agent=agent,
        )
        steps.done("token rotated")

        # ---- three minutes without the server: the gap arrives as backlog, none of it twice ----
        server.__exit__(None, None, None)
        outage_began = timezone.now()
        steps.done("gunicorn stopped")
        time.sleep(OUTAGE_SECONDS)
        agent.assert_running()
        outage_ended = timezone.now()
        assert agent.status()["backlogSize"] >= OUTAGE_SECONDS // INTERVAL * 0.8
        server.__enter__()
        steps.done(f"gunicorn restarted on the same port after {OUTAGE_SECONDS} s")

        def gap_rows():
            return list(
                DeviceTelemetry.objects.filter(device_id=device.pk, ts__gt=outage_began, ts__lt=outage_ended)
                .order_by("ts")
                .values_list("ts", flat=True)
            )

        expected = OUTAGE_SECONDS / INTERVAL  # ±10 % jitter on each interval
        wait_for(
            lambda: len(gap_rows()) >= expected * 0.85 and agent.status()["backlogSize"] == 0,
            timeout=MAX_BACKOFF + 6 * INTERVAL,
            what="the outage's samples arrive as backlog",
            agent=agent,
        )
        in_gap = gap_rows()
        assert expected * 0.85 <= len(in_gap) <= expected * 1.15 + 1, (len(in_gap), expected)
        # About one per interval all through the gap: no hole of more than two intervals.
        edges = [outage_began, *in_gap, outage_ended]
        assert max(later - earlier for earlier, later in itertools.pairwise(edges)).total_seconds() < (
            2 * INTERVAL * 1.1
        )
        # None twice: every row is its own sample, at least 0.8 of an interval after the previous one (a resent
        # sample stored again under another time would sit closer; the primary key already refuses the same time).
        window = list(
            DeviceTelemetry.objects.filter(
                device_id=device.pk,
                ts__gt=outage_began - dt.timedelta(seconds=3 * INTERVAL),
                ts__lt=timezone.now(),
            )
            .order_by("ts")
            .values_list("ts", flat=True)
        )
        spacing = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(window)]
        assert min(spacing) >= INTERVAL * 0.8, spacing
        last_seen = Device.objects.get(pk=device.pk).last_seen_at
        wait_for(
            lambda: Device.objects.get(pk=device.pk).last_seen_at > last_seen,
            timeout=3 * INTERVAL,
            what="heartbeats go on after the outage",
            agent=agent,
        )
        steps.done("the outage's samples arrived as backlog")

        assert agent.stop() == 0, agent.output()
        log = agent.log.read_text(errors="replace")
        assert old_token not in log and new_token not in log
        # Everything the agent collected on this machine was accepted as it was sent.
        assert "inventory upload failed" not in log, log[-3000:]
        refused = re.findall(r".* → 4\d\d .*", log)  # the client's debug line of each call: "PUT /… → 400 (3 ms)"
        assert not refused, refused
        steps.done("agent stopped")
    finally:
        agent.stop()
        server.__exit__(None, None, None)
        for pid in stray_pids:
            if pid_alive(pid):
                os.kill(pid, 9)
