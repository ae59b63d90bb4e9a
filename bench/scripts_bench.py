"""Issue 15's three targets on a seeded database (bench/scripts_bench.sh runs it; see bench/README.md):

1. a run on a 10,000-device group is queued in ≤ 2 s (``scripts.services.runs.start_run``, the function the API
   and the admin call, with the technician's reach checks);
2. a run's results for 10,000 devices answer in ≤ 100 ms p95 over the API (``GET script-runs/{id}/results``, the
   first page and a page deep into the keyset), through gunicorn;
3. 500 schedules due in the same minute all fire within that minute (``fire_due_schedules``, the scheduler's job).

    python bench/scripts_bench.py --prepare            # group, script, a finished run, 500 schedules: JSON on stdout
    python bench/scripts_bench.py --queue-runs 5       # time start_run on the 10,000-device group
    python bench/scripts_bench.py --results URL SETUP  # the results pages over HTTP
    python bench/scripts_bench.py --fire-schedules     # 500 due schedules, one pass of the scheduler's job

Run with the server's environment (DATABASE_URL, SECRET_KEY); it only writes to that database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.auth import issue_api_token  # noqa: E402
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership  # noqa: E402
from orgs.models import Organization  # noqa: E402
from rmm.domain_errors import Invalid  # noqa: E402
from scripts.models import Script, ScriptRun, ScriptSchedule  # noqa: E402
from scripts.services import library, runs, schedules  # noqa: E402

User = get_user_model()
GROUP = "bench: 10,000 devices"
SCRIPT = "bench: inventory report"
SCHEDULES = 500
SCHEDULE_GROUP_SIZE = 5


def _org() -> Organization:
    """The organization with the most devices (seed_demo --organizations 1 puts them all in one)."""
    counts = Device.objects.values("org_id").order_by().annotate(n=django.db.models.Count("id")).order_by("-n")
    return Organization.objects.get(pk=counts[0]["org_id"])


def _technician():
    return User.objects.get(email="tech@example.com")


def prepare() -> None:
    org = _org()
    tech = _technician()
    device_ids = list(
        Device.objects.filter(org=org)
        .exclude(status__in=["decommissioned", "quarantined"])
        .order_by("id")
        .values_list("id", flat=True)[:10_000]
    )
    if len(device_ids) < 10_000:
        raise SystemExit(f"{org} has {len(device_ids)} runnable devices; seed at least 10,000")
    with transaction.atomic():
        ScriptSchedule.objects.filter(org=org, name__startswith="bench:").delete()
        DeviceGroup.objects.filter(org=org, name__startswith="bench:").delete()
        big = DeviceGroup.objects.create(org=org, name=GROUP, type=DeviceGroup.Type.STATIC)
        DeviceGroupMembership.objects.bulk_create(
            DeviceGroupMembership(group=big, device_id=device_id, org=org) for device_id in device_ids
        )
        script = Script.objects.filter(org=org, name=SCRIPT).first() or Script(org=org, name=SCRIPT)
        if script._state.adding:
            script.language = Script.Language.PYTHON
            script.os_types = list(Script.OsType.values)
            script.content = "import platform\nprint(platform.platform())\n"
            script.parameters = [{"name": "detail", "type": "bool", "required": False, "default": False}]
            script = library.save_script(script=script, actor=tech)
        small_groups = []
        for n in range(SCHEDULES):
            group = DeviceGroup.objects.create(org=org, name=f"bench: schedule group {n}", type=DeviceGroup.Type.STATIC)
            members = device_ids[n * SCHEDULE_GROUP_SIZE : (n + 1) * SCHEDULE_GROUP_SIZE]
            small_groups.append(group)
            DeviceGroupMembership.objects.bulk_create(
                DeviceGroupMembership(group=group, device_id=device_id, org=org) for device_id in members
            )
        for n, group in enumerate(small_groups):
            schedule = ScriptSchedule(
                org=org,
                script=script,
                name=f"bench: schedule {n}",
                device_group=group,
                cron="*/5 * * * *",
                timezone="Europe/Berlin",
                parameters={"detail": True},
            )
            try:
                schedules.save_schedule(schedule=schedule, actor=None)  # the technician may not write schedules
            except Invalid as refused:
                raise SystemExit(f"schedule refused: {refused.fields}") from None
    # A finished run for the results pages: every command answered as an agent would (completed, some failed).
    run = runs.start_run(script=script, actor=tech, trigger=ScriptRun.Trigger.API, group=big)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE device_commands
               SET status = CASE WHEN right(id::text, 1) IN ('0', '1') THEN 'failed' ELSE 'completed' END,
                   sent_at = %(now)s, completed_at = %(now)s, updated_at = %(now)s,
                   result = jsonb_build_object(
                       'exitCode', CASE WHEN right(id::text, 1) IN ('0', '1') THEN 1 ELSE 0 END,
                       'stdout', 'Linux-6.1.0-amd64-x86_64-with-glibc2.36' || repeat(' ', 40) || E'\\n',
                       'stderr', '', 'durationMs', 120, 'error', NULL)
             WHERE script_run_id = %(run)s
            """,
            {"now": now, "run": run.pk},
        )
    token, _ = issue_api_token(user=tech, name="scripts-bench", lifetime=dt.timedelta(days=1))
    print(json.dumps({"runId": str(run.pk), "token": token, "groupId": str(big.pk), "scriptId": str(script.pk)}))


def queue_runs(times: int) -> None:
    tech = _technician()
    group = DeviceGroup.objects.get(name=GROUP)
    script = Script.objects.get(org_id=group.org_id, name=SCRIPT)
    elapsed = []
    for _ in range(times):
        started = time.perf_counter()
        run = runs.start_run(script=script, actor=tech, trigger=ScriptRun.Trigger.API, group=group)
        elapsed.append(time.perf_counter() - started)
        queued = DeviceCommand.objects.filter(script_run=run).count()
        print(f"run {run.pk}: {queued} commands queued in {elapsed[-1]:.3f} s")
    print(
        f"queueing a 10,000-device run: median {statistics.median(elapsed):.3f} s, max {max(elapsed):.3f} s "
        f"(target ≤ 2 s)"
    )


def results(url: str, setup_path: str, requests: int) -> None:
    from api_bench import Client, measure, summary, walk

    setup = json.loads(Path(setup_path).read_text())
    base = f"/api/v1/script-runs/{setup['runId']}/results?limit=100"
    deep, _, walked = walk(Client(url, setup["token"]), base, 60)
    for name, path in (
        ("first page", base),
        (f"page {walked + 1}", deep),
        ("the run with progress", f"/api/v1/script-runs/{setup['runId']}"),
    ):
        figures = summary(measure(url, setup["token"], path, requests, 1))
        print(
            f"results {name:<24} n={figures['n']} p50 {figures['p50']} ms p95 {figures['p95']} ms "
            f"p99 {figures['p99']} ms max {figures['max']} ms (target p95 ≤ 100 ms)"
        )


def fire_schedules() -> None:
    due = ScriptSchedule.objects.filter(name__startswith="bench: schedule ")
    now = timezone.now()
    due.update(enabled=True, next_run_at=now - dt.timedelta(seconds=1))
    before = ScriptRun.objects.filter(trigger=ScriptRun.Trigger.SCHEDULE).count()
    started = time.perf_counter()
    passes = 0
    while ScriptSchedule.objects.filter(enabled=True, next_run_at__lte=now).exists():
        report = schedules.fire_due_schedules(now=now)
        passes += 1
        if passes > 100:
            raise SystemExit(f"still due after 100 passes: {report}")
    elapsed = time.perf_counter() - started
    fired = ScriptRun.objects.filter(trigger=ScriptRun.Trigger.SCHEDULE).count() - before
    print(
        f"{due.count()} schedules due: {fired} runs fired in {elapsed:.2f} s over {passes} pass(es) "
        f"(target: all within the minute)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--queue-runs", type=int, default=0, metavar="N")
    parser.add_argument("--results", nargs=2, metavar=("URL", "SETUP_JSON"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--fire-schedules", action="store_true")
    args = parser.parse_args()
    if args.prepare:
        prepare()
    if args.queue_runs:
        queue_runs(args.queue_runs)
    if args.results:
        results(*args.results, args.requests)
    if args.fire_schedules:
        fire_schedules()


if __name__ == "__main__":
    main()
