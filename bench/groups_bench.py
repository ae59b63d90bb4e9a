"""The dynamic-groups benchmark (issue 6), against the database bench/groups_seed.sh builds (100,000 devices over
10 organizations, each with hardware, disks, interfaces and ~150 software rows). Run with the server's environment:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/rmm_bench_groups SECRET_KEY=... \\
        .venv/bin/python bench/groups_bench.py [--runs 20] [--freshness-trials 5]

It measures, in the biggest organization:

1. one 4-condition rule (osType, software.installed, hardware.ramTotalMb, lastSeenAt) evaluated from scratch: the
   rule's query alone, and the whole materialisation (a new group: query + membership rows + log), p50/p95/max;
2. 100 dynamic groups of that organization: their first evaluation, then the refresh after 1,000 devices changed
   (400 OS version changes, 300 tag edits, 300 software uploads adding a package), drained the way
   ``refresh_groups`` drains it, and a from-scratch re-evaluation of all 100 for comparison;
3. freshness: with ``manage.py refresh_groups --loop 10`` running, how long after a device's change its membership
   shows it.

Everything it creates (groups, tags, the added package) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.utils import timezone  # noqa: E402

from devices import rules  # noqa: E402
from devices.models import Device, DeviceGroup, DeviceGroupMembership, DeviceSoftware  # noqa: E402
from devices.services import groups  # noqa: E402
from devices.services.ingest import replace_inventory  # noqa: E402

PREFIX = "bench: "
BENCH_TAGS = [f"bench-tag-{n}" for n in range(7)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {ms(statistics.median(ordered))}, p95 {ms(p95)}, max {ms(ordered[-1])} (n={len(ordered)})"


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cond(field: str, operator: str, value=None) -> dict:
    node = {"field": field, "operator": operator}
    if value is not None:
        node["value"] = value
    return node


def make_group(org_id, name: str, rule: dict) -> DeviceGroup:
    return DeviceGroup.objects.create(
        org_id=org_id, name=PREFIX + name, type="dynamic", filter_rules=rule, fields_used=rules.fields_used(rule)
    )


def popular_software(org_id, rank: int) -> str:
    names = (
        DeviceSoftware.objects.filter(org_id=org_id)
        .values("name")
        .annotate(n=Count("id"))
        .order_by("-n", "name")[rank : rank + 1]
    )
    return names[0]["name"]


def hundred_rules(org_id) -> list[dict]:
    """100 rules of the kinds people write: OS, versions, tags, hardware, software present/absent, disks, network,
    last seen; about half of them with a software condition."""
    software = [popular_software(org_id, rank) for rank in (0, 3, 10, 30, 100)]
    os_versions = list(
        Device.objects.filter(org_id=org_id).values_list("os_version", flat=True).distinct().order_by("os_version")[:5]
    )
    shapes = [
        lambda i: cond("osType", "equals", ["windows", "macos", "linux"][i % 3]),
        lambda i: cond("software.installed", "equals", software[i % len(software)]),
        lambda i: {
            "operator": "AND",
            "conditions": [
                cond("osType", "equals", "windows"),
                cond("software.notInstalled", "contains", software[i % len(software)][:6]),
            ],
        },
        lambda i: cond("osVersion", "startsWith", os_versions[i % len(os_versions)]),
        lambda i: cond("tags", "hasAny", [f"bench-tag-{i % 7}"]),
        lambda i: cond("hardware.ramTotalMb", "greaterThanOrEquals", 4096 * (1 + i % 4)),
        lambda i: cond("disks.usedPercent", "greaterThan", 60 + i % 30),
        lambda i: {
            "operator": "OR",
            "conditions": [
                cond("hardware.manufacturer", "contains", "dell"),
                cond("network.ipAddress", "startsWith", "10."),
            ],
        },
        lambda i: {
            "operator": "AND",
            "conditions": [
                cond("status", "in", ["online", "offline"]),
                cond("software.installed", "contains", software[i % len(software)][:5]),
                cond("daysSinceLastSeen", "lessThan", 30),
            ],
        },
        lambda i: cond("hostname", "contains", f"{i % 10}"),
    ]
    return [shapes[i % len(shapes)](i) for i in range(100)]


def cleanup(org_id) -> None:
    DeviceGroup.objects.filter(org_id=org_id, name__startswith=PREFIX).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE devices SET tags = ARRAY(SELECT t FROM unnest(tags) t WHERE t <> ALL(%s::text[]))"
            " WHERE org_id = %s AND tags && %s::text[]",
            [BENCH_TAGS, org_id, BENCH_TAGS],
        )
        cursor.execute("DELETE FROM device_software WHERE org_id = %s AND name = %s", [org_id, "Bench Added Package"])
        cursor.execute("TRUNCATE device_group_refresh_queue")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--freshness-trials", type=int, default=5)
    args = parser.parse_args()

    org_id, fleet = Device.objects.values_list("org_id").annotate(n=Count("id")).order_by("-n").first()
    total = Device.objects.count()
    software_rows = DeviceSoftware.objects.filter(org_id=org_id).count()
    print(
        f"== data: {total:,} devices; the organization measured has {fleet:,} devices, {software_rows:,} software rows"
    )
    cleanup(org_id)

    # 1. One 4-condition rule from scratch.
    package = popular_software(org_id, 3)
    rule = {
        "operator": "AND",
        "conditions": [
            cond("osType", "equals", "windows"),
            cond("software.installed", "equals", package),
            cond("hardware.ramTotalMb", "greaterThanOrEquals", 8192),
            cond("lastSeenAt", "withinLast", {"amount": 30, "unit": "days"}),
        ],
    }
    print(f"== 1. one 4-condition rule (software.installed equals {package!r})")
    query_times, matched = [], 0
    for _ in range(args.runs):
        seconds, ids = timed(
            lambda: list(groups.matching_devices(org_id=org_id, rule=rule).order_by().values_list("id", flat=True))
        )
        query_times.append(seconds)
        matched = len(ids)
    print(f"rule query ({matched:,} devices match): {summary(query_times)}")
    contains_rule = {
        **rule,
        "conditions": [
            *rule["conditions"][:1],
            cond("software.installed", "contains", package[:5].lower()),
            *rule["conditions"][2:],
        ],
    }
    contains_times = []
    for _ in range(args.runs):
        seconds, ids = timed(
            lambda: list(
                groups.matching_devices(org_id=org_id, rule=contains_rule).order_by().values_list("id", flat=True)
            )
        )
        contains_times.append(seconds)
    print(
        f"same with software.installed contains {package[:5].lower()!r} ({len(ids):,} match): {summary(contains_times)}"
    )
    materialise_times = []
    for n in range(args.runs):
        with transaction.atomic():
            group = make_group(org_id, f"from scratch {n}", rule)
            seconds, _ = timed(lambda group=group: groups.refresh_group(group))
            materialise_times.append(seconds)
            transaction.set_rollback(True)
    print(f"new group materialised (query + {matched:,} membership rows + log rows): {summary(materialise_times)}")

    # 2. 100 groups, 1,000 devices change.
    print("== 2. 100 dynamic groups of the organization")
    made = [make_group(org_id, f"group {i:03d}", r) for i, r in enumerate(hundred_rules(org_id))]
    seconds, report = timed(lambda: groups.refresh_all_groups())
    members = DeviceGroupMembership.objects.filter(group__in=made).count()
    print(f"first evaluation of all 100: {seconds:.2f} s ({report.added:,} memberships)")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE device_group_refresh_queue")

    changed = list(Device.objects.filter(org_id=org_id).order_by("?").values_list("id", "os_version", "tags")[:1000])
    now = timezone.now()
    with transaction.atomic():
        for device_id, os_version, _tags in changed[:400]:
            Device.objects.filter(pk=device_id).update(os_version=(os_version or "10") + ".1")
        for n, (device_id, _os, tags) in enumerate(changed[400:700]):
            Device.objects.filter(pk=device_id).update(tags=sorted({*tags, f"bench-tag-{n % 7}"}))
    for device_id, *_ in changed[700:]:
        rows = list(
            DeviceSoftware.objects.filter(device_id=device_id).values_list(
                "name", "version", "publisher", "install_date", "install_location"
            )
        )
        rows.append(("Bench Added Package", "1.0", "Bench", None, ""))
        replace_inventory(device_id=device_id, org_id=org_id, kind="software", rows=rows, now=now)
    seconds, report = timed(lambda: groups.process_refresh_queue())
    print(
        f"refresh after 1,000 devices changed (400 OS versions, 300 tag edits, 300 software uploads): {seconds:.2f} s "
        f"— {report.devices:,} devices, {report.evaluations} group evaluations, +{report.added:,} -{report.removed:,}"
    )
    seconds, report = timed(lambda: groups.refresh_all_groups())
    print(
        f"for comparison, all 100 re-evaluated from scratch: {seconds:.2f} s (+{report.added} -{report.removed}: "
        "0 and 0 mean the queue missed nothing)"
    )
    print(f"memberships of the 100 groups before the changes: {members:,}")
    with transaction.atomic():
        for device_id, os_version, _tags in changed[:400]:
            Device.objects.filter(pk=device_id).update(os_version=os_version)

    # 3. Freshness with refresh_groups --loop 10 running.
    print("== 3. freshness with `manage.py refresh_groups --loop 10` running")
    target = make_group(org_id, "freshness", cond("osVersion", "equals", "bench-fresh"))
    groups.refresh_group(target)
    refresher = subprocess.Popen(
        [sys.executable, "manage.py", "refresh_groups", "--loop", "10"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        time.sleep(5)
        devices = list(
            Device.objects.filter(org_id=org_id).order_by("?").values_list("id", "os_version")[: args.freshness_trials]
        )
        for device_id, os_version in devices:
            Device.objects.filter(pk=device_id).update(os_version="bench-fresh")
            started = time.perf_counter()
            while not DeviceGroupMembership.objects.filter(group=target, device_id=device_id).exists():
                time.sleep(0.1)
                if time.perf_counter() - started > 120:
                    break
            latencies.append(time.perf_counter() - started)
            Device.objects.filter(pk=device_id).update(os_version=os_version)
            time.sleep(3)  # a change lands at a random point of the loop
    finally:
        refresher.terminate()
        refresher.wait(10)
    print(f"change → membership: {', '.join(f'{s:.1f} s' for s in latencies)} (max {max(latencies):.1f} s)")

    cleanup(org_id)


if __name__ == "__main__":
    main()
