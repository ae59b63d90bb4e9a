"""Index study for the dynamic-group rule compiler (issue 6): how fast one organization's rule queries run with
today's indexes and with candidate indexes, and what each candidate costs (size, build time, software upload).

Needs the database bench/groups_seed.sh builds (rmm_bench_groups: 100,000 devices, ~15 million software rows):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/rmm_bench_groups .venv/bin/python bench/groups_index_study.py

It builds every candidate index once (names start with ``study_``), then, for each index set, drops in one
transaction the candidates that are not in the set, measures, and rolls back: each set is measured against the
same table without rebuilding anything. Per query: one warm-up run, then ``--runs`` EXPLAIN (ANALYZE, BUFFERS) runs
(median of their "Execution Time") and ``--runs`` plain runs (median wall time at the client, rows fetched); queries
go out with the values inlined, as Django sends them (``--compiled`` adds the rules as devices/rules.py compiles
them; it needs the server's environment, SECRET_KEY included). Then, per set, ``--upload-rounds`` x ``--uploads``
software uploads of ~150 rows as devices.services.ingest.replace_inventory writes them (DELETE the device's rows +
COPY), timed without their commit, the sets interleaved. At the end the candidates are dropped, leaving the schema as
migrations made it (``--keep`` keeps them), and device_software is reindexed and vacuumed (the rolled-back uploads
leave dead rows and index entries). Plans of the last EXPLAIN run go to ``--plans`` (default
var/bench/groups-explain/). Refuses any database not named rmm_bench_groups. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rmm.ids import uuid7

# name → CREATE INDEX. Built once; sets below pick among them.
CANDIDATES = {
    "study_sw_device_uname": "CREATE INDEX study_sw_device_uname ON device_software (device_id, UPPER(name::text))",
    "study_sw_org_uname": "CREATE INDEX study_sw_org_uname ON device_software (org_id, UPPER(name::text))",
    "study_sw_uname_device": "CREATE INDEX study_sw_uname_device ON device_software (UPPER(name::text), device_id)",
    "study_sw_uname_trgm": (
        "CREATE INDEX study_sw_uname_trgm ON device_software USING gin (UPPER(name::text) gin_trgm_ops)"
    ),
    # btree_gin lets a GIN index start with org_id (uuid), so a contains search reads one organization's entries.
    "study_sw_org_uname_trgm": (
        "CREATE INDEX study_sw_org_uname_trgm ON device_software USING gin (org_id, UPPER(name::text) gin_trgm_ops)"
    ),
    # Statistics on the expression (without them the planner guesses 0.5 % of the fleet is Dell; it is 29 %) and an
    # org-scoped path to one organization's machines of a manufacturer.
    "study_hw_org_umanufacturer": (
        "CREATE INDEX study_hw_org_umanufacturer ON device_hardware (org_id, UPPER(manufacturer::text))"
    ),
}
# The existing indexes a set may drop: the plain (device_id) one, which (device_id, UPPER(name)) makes redundant, and
# (org_id, name), which no query uses once rules compare UPPER(name).
DEVICE_ID_INDEX, ORG_NAME_INDEX = "@device_id", "device_software_org_name"
# set name → (candidates in it, existing indexes dropped for it[, statements run after]); "B" is the recommendation.
SETS = {
    "today": ([], []),
    "+(device_id, UPPER(name))": (["study_sw_device_uname"], []),
    "(device_id, UPPER(name)) instead of (device_id)": (["study_sw_device_uname"], [DEVICE_ID_INDEX]),
    "+(org_id, UPPER(name))": (["study_sw_org_uname"], []),
    "+(UPPER(name), device_id)": (["study_sw_uname_device"], []),
    "+trgm GIN UPPER(name)": (["study_sw_uname_trgm"], []),
    "+btree_gin (org_id, UPPER(name) trgm)": (["study_sw_org_uname_trgm"], []),
    "+(device_id, UPPER(name)) +trgm GIN": (["study_sw_device_uname", "study_sw_uname_trgm"], []),
    "+hw (org_id, UPPER(manufacturer))": (["study_hw_org_umanufacturer"], []),
    "A: (org_id, UPPER(name)) instead of (org_id, name), +hw": (
        ["study_sw_org_uname", "study_hw_org_umanufacturer"],
        [ORG_NAME_INDEX],
    ),
    "B: A +btree_gin trgm": (
        ["study_sw_org_uname", "study_sw_org_uname_trgm", "study_hw_org_umanufacturer"],
        [ORG_NAME_INDEX],
    ),
    "B with the GIN's fastupdate off": (
        ["study_sw_org_uname", "study_sw_org_uname_trgm", "study_hw_org_umanufacturer"],
        [ORG_NAME_INDEX],
        ["ALTER INDEX study_sw_org_uname_trgm SET (fastupdate = off)"],
    ),
    # After migration devices/0007 (which replaced (org_id, name) by (org_id, UPPER(name))), B is these two on top.
    "B on 0007: +btree_gin trgm +hw": (["study_sw_org_uname_trgm", "study_hw_org_umanufacturer"], []),
    "C: B +(device_id, UPPER(name)) instead of (device_id)": (
        ["study_sw_org_uname", "study_sw_org_uname_trgm", "study_hw_org_umanufacturer", "study_sw_device_uname"],
        [ORG_NAME_INDEX, DEVICE_ID_INDEX],
    ),
}

EQUALS = "UPPER(s.name::text) = UPPER(%(package)s)"
EQUALS_RARE = "UPPER(s.name::text) = UPPER(%(rare)s)"
CONTAINS = "UPPER(s.name::text) LIKE UPPER(%(contains)s)"
CONTAINS_SHORT = "UPPER(s.name::text) LIKE UPPER(%(short)s)"  # too short for trigrams
# The same test as strpos(), which no trigram index answers: with a GIN on the column, a LIKE without a trigram
# makes PostgreSQL read the whole GIN index (the planner underrates that), so short fragments are better sent so.
CONTAINS_SHORT_STRPOS = "strpos(UPPER(s.name::text), UPPER(%(short_raw)s)) > 0"
DELL = "UPPER(h.manufacturer::text) = UPPER(%(dell)s)"
RECENT = "d.last_seen_at >= now() - interval '7 days'"
FULL_DISK = "k.used_percent > 80"
ALIASES = {"device_software": "s", "device_hardware": "h", "device_disks": "k"}


def child(table: str, match: str, *, org_scoped: bool) -> str:
    """EXISTS on a device's rows of ``table``. org_scoped: the subquery also says x.org_id = d.org_id (true of every
    row: the composite foreign key), which lets an index that starts with org_id serve it."""
    alias = ALIASES[table]
    org = f" AND {alias}.org_id = d.org_id" if org_scoped else ""
    return f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.device_id = d.id{org} AND {match})"  # noqa: S608


def software(match: str, *, org_scoped: bool) -> str:
    return child("device_software", match, org_scoped=org_scoped)


def rule(*conditions: str, ids: bool = False) -> str:
    where = ["d.org_id = %(org)s", *conditions]
    if ids:
        where.append("d.id = ANY(%(ids)s)")
    return "SELECT d.id FROM devices d WHERE " + " AND ".join(where)  # noqa: S608 -- this script's constants


def queries(org_scoped: bool) -> dict[str, str]:
    def sw(match: str) -> str:
        return software(match, org_scoped=org_scoped)

    suffix = " (org-scoped EXISTS)" if org_scoped else ""
    dell = child("device_hardware", DELL, org_scoped=org_scoped)
    full_disk = child("device_disks", FULL_DISK, org_scoped=org_scoped)
    four = ["d.os_type = 'windows'", dell]
    broad = ["d.os_type = 'windows'", "d.status = 'online'"]
    return {
        f"a equals popular{suffix}": rule(sw(EQUALS)),
        f"b equals rare{suffix}": rule(sw(EQUALS_RARE)),
        f"c contains{suffix}": rule(sw(CONTAINS)),
        f"c contains 2 characters{suffix}": rule(sw(CONTAINS_SHORT)),
        f"c contains 2 characters as strpos(){suffix}": rule(sw(CONTAINS_SHORT_STRPOS)),
        f"d 4 conditions, equals{suffix}": rule(*four, sw(EQUALS), RECENT),
        f"d 4 conditions, contains{suffix}": rule(*four, sw(CONTAINS), RECENT),
        f"d 4 conditions, equals, disks > 80{suffix}": rule(*four, sw(EQUALS), full_disk),
        f"f 4 broad conditions, equals rare{suffix}": rule(*broad, sw(EQUALS_RARE), RECENT),
        f"g 4 broad conditions, contains{suffix}": rule(*broad, sw(CONTAINS), RECENT),
        f"e d on 1,000 ids, equals{suffix}": rule(*four, sw(EQUALS), RECENT, ids=True),
        f"e d on 1,000 ids, contains{suffix}": rule(*four, sw(CONTAINS), RECENT, ids=True),
    }


def compiled_queries(params: dict) -> dict[str, tuple[str, tuple]]:
    """The 4-condition rules and the single software conditions as devices/rules.py compiles them and
    devices/services/groups.py runs them (``Device.objects.filter(compile_rule(...), org_id=...)``, ids, no order)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
    import django

    django.setup()
    from django.utils import timezone

    from devices.models import Device
    from devices.rules import compile_rule

    def condition(field: str, operator: str, value) -> dict:
        return {"field": field, "operator": operator, "value": value}

    windows, online = condition("osType", "equals", "windows"), condition("status", "equals", "online")
    dell = condition("hardware.manufacturer", "equals", params["dell"])
    recent = condition("lastSeenAt", "withinLast", {"amount": 7, "unit": "days"})
    full_disk = condition("disks.usedPercent", "greaterThan", 80)
    popular = condition("software.installed", "equals", params["package"])
    rare = condition("software.installed", "equals", params["rare"])
    contains = condition("software.installed", "contains", params["contains"].strip("%"))
    short = condition("software.installed", "contains", params["short_raw"])
    rules = {
        "a equals popular": [popular],
        "b equals rare": [rare],
        "c contains": [contains],
        "c contains 2 characters": [short],
        "d 4 conditions, equals": [windows, dell, popular, recent],
        "d 4 conditions, contains": [windows, dell, contains, recent],
        "d 4 conditions, equals, disks > 80": [windows, dell, popular, full_disk],
        "f 4 broad conditions, equals rare": [windows, online, rare, recent],
        "g 4 broad conditions, contains": [windows, online, contains, recent],
    }
    now = timezone.now()
    compiled = {}
    for label, conditions in rules.items():
        devices = Device.objects.filter(
            compile_rule({"operator": "AND", "conditions": conditions}, now=now), org_id=params["org"]
        )
        compiled[f"{label} (rules.py)"] = devices.order_by().values("id").query.sql_with_params()
    return compiled


EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")
PLANNING = re.compile(r"Planning Time: ([\d.]+) ms")
JIT = re.compile(r"Timing: Generation .* Total ([\d.]+) ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--org", default="Acme Corp", help="The organization whose rules are measured (the largest).")
    parser.add_argument("--package", default="Google Chrome", help="A popular package (equals).")
    parser.add_argument("--contains", default="chrome", help="A fragment (contains).")
    parser.add_argument("--short", default="vl", help="A fragment shorter than a trigram (contains).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--uploads", type=int, default=200, help="Uploads per set and round.")
    parser.add_argument("--upload-rounds", type=int, default=3, help="Rounds over all sets, in rotating order.")
    parser.add_argument("--set", action="append", dest="sets", metavar="NAME", help="A set to measure (default: all).")
    parser.add_argument("--plans", type=Path, default=Path("var/bench/groups-explain"))
    parser.add_argument("--keep", action="store_true", help="Leave the candidate indexes in place.")
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="Also measure the rules as devices/rules.py compiles them (needs the server's environment: SECRET_KEY).",
    )
    parser.add_argument("--no-handwritten", action="store_true", help="Only the compiled rules (with --compiled).")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    if not url.rstrip("/").endswith("/rmm_bench_groups"):
        sys.exit("DATABASE_URL must name the database rmm_bench_groups (this script creates and drops indexes).")
    args.plans.mkdir(parents=True, exist_ok=True)
    sets = {name: SETS[name] for name in args.sets} if args.sets else SETS

    # ClientCursor: values inlined into the SQL, as Django sends them (no server-side binding, no generic plans).
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")  # this session's index builds only
        params = pick_parameters(conn, args)
        print_dataset(conn, params, args)
        workload = {} if args.no_handwritten else {**queries(False), **queries(True)}
        workload = {label: (query, params) for label, query in workload.items()}
        if args.compiled:
            workload.update(compiled_queries(params))
        created_btree_gin = build_candidates(conn, {name for members, *_ in sets.values() for name in members})
        device_id_index = conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'device_software'::regclass AND indkey::text = %s",
            [str(column_number(conn, "device_software", "device_id"))],
        ).fetchone()
        upload_devices = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM devices WHERE org_id = %s ORDER BY hostname LIMIT %s", [params["org"], args.uploads]
            )
        ]
        results: dict[str, dict[str, tuple[float, float, int]]] = {}
        for set_name, spec in sets.items():
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(f"\n== {set_name} (load {load})", flush=True)
            with index_set(conn, spec, device_id_index[0]):
                results[set_name] = measure_queries(conn, workload, set_name, args)
        # Uploads after the queries, interleaved over the sets in rotating order so drift in the machine's load
        # spreads over all of them.
        uploads: dict[str, list[float]] = {name: [] for name in sets}
        names = list(sets)
        for round_number in range(args.upload_rounds):
            for set_name in names[round_number % len(names) :] + names[: round_number % len(names)]:
                with index_set(conn, sets[set_name], device_id_index[0]):
                    uploads[set_name] += measure_uploads(conn, upload_devices)
        print(f"\n== uploads of ~150 rows (DELETE + COPY, no commit), {args.upload_rounds} x {args.uploads} per set")
        for set_name, upload in uploads.items() if args.upload_rounds else ():
            print(
                f"  {set_name:56} median {median(upload):.2f} ms, p95 {percentile(upload, 95):.2f} ms,"
                f" p99 {percentile(upload, 99):.2f} ms, max {max(upload):.2f} ms",
                flush=True,
            )
        print_tables(results, uploads)
        if not args.keep:
            for name in CANDIDATES:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
            if created_btree_gin:
                conn.execute("DROP EXTENSION btree_gin")
            print("\nCandidate indexes dropped.")
        # The rolled-back uploads left dead rows and index entries (the primary key grew 570 → 630 MB over a run);
        # a rebuild leaves the table as a fresh seed would, and ANALYZE forgets the candidates' expression statistics.
        conn.execute("REINDEX TABLE device_software")
        conn.execute("VACUUM ANALYZE device_software, device_hardware")


@contextlib.contextmanager
def index_set(conn: psycopg.Connection, spec: tuple, device_id_index: str):
    """A transaction in which only the set's candidates exist (and its dropped indexes do not); rolled back."""
    members, dropped, *statements = spec
    conn.autocommit = False
    try:
        for name in CANDIDATES:
            if name not in members and index_exists(conn, name):
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        for name in dropped:  # DEVICE_ID_INDEX: the plain (device_id) index, whatever its generated name
            target = device_id_index if name == DEVICE_ID_INDEX else name
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(target)))  # gone after 0007
        for statement in statements[0] if statements else []:
            conn.execute(statement)
        yield
    finally:
        conn.rollback()
        conn.autocommit = True


def pick_parameters(conn: psycopg.Connection, args: argparse.Namespace) -> dict:
    org = conn.execute("SELECT id FROM organizations WHERE name = %s", [args.org]).fetchone()[0]
    # A rare package: the one on the fewest of this organization's Windows devices (the 4,000th synthetic one is on
    # about 1 in 300), the first by name among those.
    rare = conn.execute(
        "SELECT s.name FROM device_software s JOIN devices d ON d.id = s.device_id"
        " WHERE s.org_id = %s AND d.os_type = 'windows' GROUP BY s.name ORDER BY count(*), s.name LIMIT 1",
        [org],
    ).fetchone()[0]
    ids = [
        row[0]
        for row in conn.execute("SELECT id FROM devices WHERE org_id = %s ORDER BY md5(id::text) LIMIT 1000", [org])
    ]
    return {
        "org": org,
        "package": args.package,
        "rare": rare,
        "contains": f"%{args.contains}%",
        "short": f"%{args.short}%",
        "short_raw": args.short,
        "dell": "Dell Inc.",  # what the demo's Dell machines report (an equals rule names the whole value)
        "ids": ids,
    }


def print_dataset(conn: psycopg.Connection, params: dict, args: argparse.Namespace) -> None:
    device_count, software_rows = conn.execute(
        "SELECT (SELECT count(*) FROM devices),"
        " (SELECT reltuples::bigint FROM pg_class WHERE relname = 'device_software')"
    ).fetchone()
    org_devices, windows, dell = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE os_type = 'windows'), count(*) FILTER (WHERE os_type = 'windows'"
        " AND EXISTS (SELECT 1 FROM device_hardware h WHERE h.device_id = d.id AND h.manufacturer = %(dell)s))"
        " FROM devices d WHERE org_id = %(org)s",
        params,
    ).fetchone()
    print(f"== data: {device_count:,} devices, ~{software_rows:,} software rows; {args.org}: {org_devices:,} devices,")
    print(f"   {windows:,} Windows, {dell:,} of them Dell")
    for label, match in (("package", EQUALS), ("rare", EQUALS_RARE), ("contains", CONTAINS), ("short", CONTAINS_SHORT)):
        count = conn.execute(
            f"SELECT count(*) FROM devices d WHERE d.org_id = %(org)s AND {software(match, org_scoped=False)}",  # noqa: S608
            params,
        ).fetchone()[0]
        print(f"   software {label} {params[label]!r}: {count:,} devices of the organization")
    print(f"   machine load: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)


def build_candidates(conn: psycopg.Connection, names: set[str]) -> bool:
    """Build the candidates in ``names``; True when it had to create the btree_gin extension for them."""
    created_btree_gin = False
    if "study_sw_org_uname_trgm" in names:
        created_btree_gin = not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'btree_gin'").fetchone()
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    print("\n== candidate indexes (built once)")
    for name, statement in CANDIDATES.items():
        if name not in names:
            continue
        if index_exists(conn, name):
            took = "existed"
        else:
            started = time.perf_counter()
            conn.execute(statement)
            took = f"built in {time.perf_counter() - started:.0f} s"
        size = conn.execute("SELECT pg_size_pretty(pg_relation_size(%s::regclass))", [name]).fetchone()[0]
        print(f"  {name}: {size}, {took}: {statement}", flush=True)
    conn.execute("ANALYZE device_software")  # statistics of the indexed expressions
    conn.execute("ANALYZE device_hardware")
    for table, name, size in conn.execute(
        "SELECT indrelid::regclass::text, indexrelid::regclass::text, pg_size_pretty(pg_relation_size(indexrelid))"
        " FROM pg_index WHERE indrelid IN ('device_software'::regclass, 'device_hardware'::regclass) ORDER BY 1, 2"
    ):
        print(f"  {table} index {name}: {size}")
    return created_btree_gin


def index_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


def column_number(conn: psycopg.Connection, table: str, column: str) -> int:
    return conn.execute(
        "SELECT attnum FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s", [table, column]
    ).fetchone()[0]


def measure_queries(conn: psycopg.Connection, workload: dict, set_name: str, args) -> dict[str, tuple]:
    """label → (median EXPLAIN ANALYZE execution ms, median plain wall ms, rows) for each (query, params) of
    ``workload``; the last plan of each goes to ``args.plans``."""
    figures = {}
    for label, (query, params) in workload.items():
        conn.execute(query, params).fetchall()  # warm-up
        explained, planned, jitted, plan = [], [], [], ""
        for _ in range(args.runs):
            plan = "\n".join(row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params))
            explained.append(float(EXECUTION.search(plan).group(1)))
            planned.append(float(PLANNING.search(plan).group(1)))
            jit = JIT.search(plan)
            jitted.append(float(jit.group(1)) if jit else 0.0)
        wall, rows = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            rows = len(conn.execute(query, params).fetchall())
            wall.append((time.perf_counter() - started) * 1000)
        figures[label] = (median(explained), median(wall), rows)
        slug = re.sub(r"[^a-z0-9]+", "-", f"{set_name}--{label}".lower()).strip("-")
        shown = "" if isinstance(params, dict) else f"{params!r}\n"  # the compiled rules' values
        (args.plans / f"{slug}.txt").write_text(f"-- {set_name}: {label}\n{query}\n{shown}\n{plan}\n")
        print(
            f"  {label:48} explain {median(explained):8.1f} ms (planning {median(planned):.1f},"
            f" JIT {median(jitted):.0f}), plain {median(wall):8.1f} ms, {rows:,} rows",
            flush=True,
        )
    return figures


def measure_uploads(conn: psycopg.Connection, devices: list) -> list[float]:
    """Replace each device's software with the same ~150 rows, as replace_inventory does; ms per upload."""
    columns = ("id", "device_id", "org_id", "name", "version", "publisher", "install_date", "install_location")
    copy = sql.SQL("COPY device_software ({}, updated_at) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    now = dt.datetime.now(dt.UTC)
    timings = []
    with conn.cursor() as cursor:
        for device_id in devices:
            rows = cursor.execute(
                "SELECT device_id, org_id, name, version, publisher, install_date, install_location"
                " FROM device_software WHERE device_id = %s",
                [device_id],
            ).fetchall()
            started = time.perf_counter()
            cursor.execute("DELETE FROM device_software WHERE device_id = %s", [device_id])
            with cursor.copy(copy) as stream:
                for row in rows:
                    stream.write_row((uuid7(), *row, now))
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def print_tables(results: dict[str, dict[str, tuple]], uploads: dict[str, list[float]]) -> None:
    labels = list(next(iter(results.values())))
    names = list(results)
    print("\n== EXPLAIN (ANALYZE, BUFFERS) execution time, median ms (plain query wall time at the client)\n")
    print("| query | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label in labels:
        cells = [f"{results[name][label][0]:,.1f} ({results[name][label][1]:,.1f})" for name in names]
        print(f"| {label} ({results[names[0]][label][2]:,} rows) | " + " | ".join(cells) + " |")
    if all(uploads.values()):
        cells = [
            f"{median(uploads[name]):.2f} / {percentile(uploads[name], 99):.2f} / {max(uploads[name]):.0f}"
            for name in names
        ]
        print("| upload of ~150 rows, median / p99 / max ms | " + " | ".join(cells) + " |")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
