"""The console benchmark (issue 16), against the database bench/console_bench.sh builds (seed_demo with 100,000
devices over 4 organizations, 24 h of telemetry for 1,000 of them, rolled up). Run with the server's environment
(the script sets it up):

    bench/console_bench.py --prepare               # the two-organization technician, VACUUM ANALYZE
    bench/console_bench.py [--requests 100]        # measure; --json FILE keeps the figures
    bench/console_bench.py --only technician:list   # one person, or person:page (repeatable)
    bench/console_bench.py --profile operator:device # cProfile of that case's requests too (when SQL is not why)

"Server time" is the time Django takes to produce a response: each request goes through the whole WSGI stack of
``django.test.Client`` in this process (middleware, session, the admin view, the template), signed in with
``force_login``, timed with ``time.perf_counter``; there is no network, no gunicorn and no browser. Each case is
requested ``--warmup`` times first, then ``--requests`` times; p50/p95/max are of those. One more request per case
runs under ``CaptureQueriesContext`` for the number of SQL statements and their summed time (the rest of a page's
time is Python: view and template), and the slowest statements of that request get ``EXPLAIN (ANALYZE, BUFFERS)``
into ``--explain-dir``.

The persons: the superuser of seed_demo (an operator: no scoping), and ``console-tech@example.com``, a Partner
Technician of the demo partner whose membership selects two organizations (``org_access=selected``), the two that
hold the most devices: every query of the pages carries the scoping of those two organizations.

The pages and their targets (issue 16, "Performance"): the dashboard (``admin:index``) 150 ms; the device list's
first page, filtered (``?status__exact=offline`` and one organization) and searched (a hostname fragment, a LAN IP)
150 ms; the device page of a device with telemetry (``admin:devices_device_change``, the default 24 h range) 200 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from accounts.models import PartnerUser, Role, User  # noqa: E402
from devices.models import Device, DeviceNetworkInterface, DeviceTelemetry  # noqa: E402
from orgs.models import Organization, Partner  # noqa: E402

TECHNICIAN_EMAIL = "console-tech@example.com"
OPERATOR_EMAIL = "admin@example.com"
DEMO_PARTNER_SLUG = "demo-msp"
TARGET_MS = {"dashboard": 150, "list": 150, "list-filtered": 150, "search-host": 150, "search-ip": 150, "device": 200}


def _technician_orgs() -> list[Organization]:
    """The two organizations of the demo partner that hold the most devices."""
    partner = Partner.objects.get(slug=DEMO_PARTNER_SLUG)
    return list(
        Organization.objects.filter(partner=partner)
        .annotate(device_count=Count("devices"))
        .order_by("-device_count", "name")[:2]
    )


def prepare() -> None:
    """The two-organization technician (made once; its organizations set again), then VACUUM ANALYZE."""
    partner = Partner.objects.get(slug=DEMO_PARTNER_SLUG)
    role = Role.objects.get(name="Partner Technician", partner__isnull=True)
    user = User.objects.filter(email__iexact=TECHNICIAN_EMAIL).first()
    if user is None:
        # No password: the benchmark signs in with force_login.
        user = User.objects.create_user(TECHNICIAN_EMAIL, None, name="Bench Technician", is_staff=True)
    membership, _ = PartnerUser.objects.update_or_create(
        partner=partner, user=user, defaults={"role": role, "org_access": PartnerUser.OrgAccess.SELECTED}
    )
    orgs = _technician_orgs()
    membership.selected_organizations.set(orgs)
    total = Device.objects.count()
    reached = Device.objects.filter(org__in=orgs).count()
    print(
        f"  {TECHNICIAN_EMAIL}: Partner Technician of {partner.name}, organizations "
        f"{', '.join(o.name for o in orgs)}: {reached:,} of {total:,} devices"
    )
    connection.ensure_connection()
    connection.connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def _sample_values(orgs: list[Organization], hostname_fragment: str) -> dict[str, Any]:
    """A device with telemetry in the technician's reach, its hostname and LAN IP, and an organization to filter
    by: the same for both persons, so their figures compare."""
    with_telemetry = DeviceTelemetry.objects.filter(org__in=orgs).values("device_id")
    device = Device.objects.filter(org__in=orgs, id__in=with_telemetry).order_by("hostname", "id").first()
    if device is None:
        raise SystemExit("no device with telemetry in the technician's organizations: seed with telemetry")
    interface = DeviceNetworkInterface.objects.filter(device=device, ip_type="ipv4", is_primary=True).first()
    if interface is None:
        raise SystemExit(f"{device.hostname} has no primary IPv4 interface")
    return {
        "device": device,
        "hostname_fragment": hostname_fragment,
        "lan_ip": interface.ip_address,
        "org": orgs[0],
    }


def _cases(sample: dict[str, Any], filtered: str) -> list[tuple[str, str]]:
    changelist = reverse("admin:devices_device_changelist")
    return [
        ("dashboard", reverse("admin:index")),
        ("list", changelist),
        ("list-filtered", f"{changelist}?{filtered.format(org=sample['org'].pk)}"),
        ("search-host", f"{changelist}?{urlencode({'q': sample['hostname_fragment']})}"),
        ("search-ip", f"{changelist}?{urlencode({'q': sample['lan_ip']})}"),
        ("device", reverse("admin:devices_device_change", args=[sample["device"].pk])),
    ]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _explain(statements: list[dict[str, str]], path: Path, *, top: int) -> list[float]:
    """EXPLAIN (ANALYZE, BUFFERS) of the ``top`` slowest statements into ``path``; their times (ms) as captured."""
    slowest = sorted(statements, key=lambda s: float(s["time"]), reverse=True)[:top]
    lines = []
    with connection.cursor() as cursor:
        for statement in slowest:
            sql = statement["sql"]
            lines.append(f"-- {float(statement['time']) * 1000:.1f} ms when captured\n{sql}\n")
            if not sql.lstrip().upper().startswith(("SELECT", "WITH", "(SELECT")):
                lines.append("(not a SELECT: not explained)\n")
                continue
            try:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                lines.extend(row[0] + "\n" for row in cursor.fetchall())
            except Exception as error:  # a statement EXPLAIN cannot take, e.g. with literal %: say so, go on
                lines.append(f"(EXPLAIN failed: {error})\n")
            lines.append("\n")
    path.write_text("".join(lines))
    return [float(s["time"]) * 1000 for s in slowest]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    orgs = list(
        Organization.objects.filter(
            selected_by__user__email__iexact=TECHNICIAN_EMAIL, selected_by__partner__slug=DEMO_PARTNER_SLUG
        ).order_by("name")
    )
    if len(orgs) != 2:
        raise SystemExit(f"{TECHNICIAN_EMAIL} does not select two organizations: run --prepare first")
    sample = _sample_values(orgs, args.search_host)
    cases = _cases(sample, args.filtered)
    persons = {
        "technician": User.objects.get(email__iexact=TECHNICIAN_EMAIL),
        "operator": User.objects.get(email__iexact=OPERATOR_EMAIL),
    }
    explain_dir = Path(args.explain_dir)
    explain_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"device page: {sample['device'].hostname} ({sample['device'].pk}); search: {sample['hostname_fragment']!r}"
        f" and {sample['lan_ip']!r}; filter organization: {sample['org'].name}"
    )
    results = []
    for person, user in persons.items():
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        for name, url in cases:
            if args.only and person not in args.only and f"{person}:{name}" not in args.only:
                continue
            if f"{person}:{name}" in args.profile:
                _profile(client, url, explain_dir / f"console-profile-{person}-{name}.txt", runs=args.warmup + 10)
            for _ in range(args.warmup):
                response = client.get(url)
            elapsed = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.get(url)
                elapsed.append((time.perf_counter() - started) * 1000)
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url)
            slow = _explain(captured.captured_queries, explain_dir / f"console-explain-{person}-{name}.txt", top=3)
            row = {
                "person": person,
                "page": name,
                "url": url,
                "status": response.status_code,
                "location": response.get("Location", ""),
                "bytes": len(response.content),
                # Rows of the list's result table (its selection checkboxes): a filter or search that found nothing
                # would measure an empty page.
                "rows": response.content.count(b'name="_selected_action"'),
                "p50_ms": statistics.median(elapsed),
                "p95_ms": _percentile(elapsed, 0.95),
                "max_ms": max(elapsed),
                "queries": len(captured.captured_queries),
                "sql_ms": sum(float(q["time"]) for q in captured.captured_queries) * 1000,
                "slowest_query_ms": slow[0] if slow else 0.0,
                "target_ms": TARGET_MS[name],
            }
            row["met"] = row["status"] == 200 and row["p95_ms"] <= row["target_ms"]
            results.append(row)
            _print_row(row)
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "code": _code_version(),
        "devices": Device.objects.count(),
        "technician_devices": Device.objects.filter(org__in=orgs).count(),
        "requests": args.requests,
        "warmup": args.warmup,
        "results": results,
    }


def _profile(client: Client, url: str, path: Path, *, runs: int) -> None:
    """cProfile of ``runs`` requests (after one untimed), the 40 costliest functions by cumulative time, into
    ``path``: where a page's time goes when its SQL is not the cause."""
    client.get(url)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(url)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    path.write_text(out.getvalue())
    print(f"  profile of {runs} requests of {url}: {path}")


HEADER = (
    f"{'person':<11} {'page':<14} {'status':>6} {'rows':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>7} "
    f"{'SQL ms':>6} {'slowest':>7} {'target':>6}  met"
)


def _print_row(row: dict[str, Any]) -> None:
    if not getattr(_print_row, "header_printed", False):
        print(HEADER)
        _print_row.header_printed = True  # type: ignore[attr-defined]
    status = f"{row['status']}" + (f" → {row['location']}" if row["location"] else "")
    print(
        f"{row['person']:<11} {row['page']:<14} {status:>6} {row['rows']:>4} "
        f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['max_ms']:>8.1f} {row['queries']:>7} "
        f"{row['sql_ms']:>6.0f} {row['slowest_query_ms']:>7.0f} {row['target_ms']:>6}  {'yes' if row['met'] else 'NO'}",
        flush=True,
    )


def _machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "postgres": postgres,
    }


def _code_version() -> dict[str, Any]:
    """The commit, and how many files of the console differ from it (the benchmark runs on what is on disk)."""

    executable = shutil.which("git")
    if executable is None:
        return {}

    def git(*args: str) -> str:
        completed = subprocess.run(  # noqa: S603 (fixed arguments, git found on PATH)
            [executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return completed.stdout.strip()

    changed = git("status", "--short", "--", "devices", "rmm", "templates", "alerts", "scripts", "orgs")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_files": len(changed.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="make the two-organization technician, ANALYZE")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per case (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per case first (default 5)")
    parser.add_argument(
        "--filtered",
        default="status__exact=offline&org__id__exact={org}",
        help="the filtered list's query string; {org} is the organization's id (default: %(default)s)",
    )
    parser.add_argument(
        "--search-host",
        default="ws-12",
        help="the hostname fragment searched (default %(default)s: seed_demo's ws-12, ws-120…, ws-1200…, ws-12000…)",
    )
    parser.add_argument("--only", action="append", default=[], help="person or person:page (repeatable)")
    parser.add_argument(
        "--profile", action="append", default=[], help="person:page to run under cProfile first (repeatable)"
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--explain-dir", default="var/bench", help="where EXPLAIN of the slowest statements go")
    args = parser.parse_args()
    if args.prepare:
        prepare()
        return
    if not 1 <= args.requests <= 10_000:
        parser.error("--requests must be between 1 and 10,000")
    report = measure(args)
    machine = report["machine"]
    print(
        f"{report['devices']:,} devices ({report['technician_devices']:,} in the technician's reach); "
        f"{machine['cpus']} CPUs ({machine['cpu']}), load {' '.join(machine['load'])} at the end; "
        f"commit {report['code']['commit']} + {report['code']['uncommitted_files']} uncommitted file(s); "
        f"{report['when']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if not all(row["met"] for row in report["results"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
