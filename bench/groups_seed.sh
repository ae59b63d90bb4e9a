#!/usr/bin/env bash
# The dynamic-groups benchmark's data (issue 6): 100,000 devices over 10 organizations, each with hardware, disks,
# network interfaces and ~150 software rows (~15 million), in a database called rmm_bench_groups that the groups
# benchmark and bench/groups_index_study.py reuse. See bench/README.md; figures in bench/RESULTS.md.
#
#   bench/groups_seed.sh                                  # drop and re-create rmm_bench_groups, migrate, seed
#   DEVICES=20000 ORGANIZATIONS=4 bench/groups_seed.sh    # a smaller fleet
#
# It drops and re-creates only the database named in BENCH_DATABASE_URL, which must be called rmm_bench_groups.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_bench_groups}
DEVICES=${DEVICES:-100000}
ORGANIZATIONS=${ORGANIZATIONS:-10}
SOFTWARE_PER_DEVICE=${SOFTWARE_PER_DEVICE:-150}
TELEMETRY_DEVICES=${TELEMETRY_DEVICES:-0}  # rules on metrics.* need some; the targets name only inventory
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_bench_groups
recreate_database rmm_bench_groups
$PY manage.py loaddata default_roles -v 0

echo "== seed_demo --devices $DEVICES --organizations $ORGANIZATIONS --software-per-device $SOFTWARE_PER_DEVICE"
time $PY manage.py seed_demo --devices "$DEVICES" --organizations "$ORGANIZATIONS" \
  --software-per-device "$SOFTWARE_PER_DEVICE" --telemetry-hours 24 --telemetry-devices "$TELEMETRY_DEVICES" \
  --credentials-file "$OUT/groups-bench-credentials.txt"

echo "== VACUUM ANALYZE (statistics, and the visibility map index-only scans need)"
time $PY - <<'PYEOF'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    # Every seeded device is queued for a group refresh by the triggers of migration 0006 (if it is applied); the
    # seed writes the demo groups' memberships itself, so a benchmark starts from an empty queue instead.
    if conn.execute("SELECT to_regclass('device_group_refresh_queue')").fetchone()[0]:
        conn.execute("TRUNCATE device_group_refresh_queue")
    conn.execute("VACUUM ANALYZE")
    for table, rows, size in conn.execute(
        "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class"
        " WHERE relname IN ('devices', 'device_hardware', 'device_disks', 'device_network_interfaces',"
        " 'device_software') ORDER BY pg_total_relation_size(oid) DESC"
    ):
        print(f"  {table:28} {rows:>12,} rows  {size:>8} with indexes")
PYEOF
