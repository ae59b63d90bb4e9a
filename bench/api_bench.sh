#!/usr/bin/env bash
# The technician API benchmark (issue 5): 100,000 demo devices, then p50/p95/p99/max over HTTP of the device list
# (first page, a deep cursor page, filters, search, -lastSeenAt), a device's 24-hour telemetry and the summary,
# for the demo technician (tech@example.com, scoped by org) and the superuser; EXPLAIN (ANALYZE, BUFFERS) of the
# list queries go to $OUT/explain-*.txt. See bench/README.md; figures in bench/RESULTS.md.
#
#   bench/api_bench.sh                      # fresh database, seed, measure
#   REUSE_DB=1 bench/api_bench.sh           # keep the seeded database (only migrate), measure again
#   REQUESTS=500 DEVICES=20000 bench/api_bench.sh
#
# It drops and re-creates the database named in BENCH_DATABASE_URL (never the development database) and only
# ever loads 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_api_bench}
DEVICES=${DEVICES:-100000}
TELEMETRY_DEVICES=${TELEMETRY_DEVICES:-1000}
REQUESTS=${REQUESTS:-300}
CLIENTS=${CLIENTS:-1}
DEEP_PAGES=${DEEP_PAGES:-500}
PORT=${PORT:-8766}
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_api_bench
# The server's scheduler would mark the seeded devices offline five minutes after their last_seen_at while the cases
# run (the seed takes about three), so the status filters would measure a different fleet from case to case; the
# jobs have their own benchmarks. SCHEDULER_ENABLED=1 keeps them on.
export SCHEDULER_ENABLED=${SCHEDULER_ENABLED:-0}

if [ "${REUSE_DB:-0}" != 1 ]; then
  recreate_database rmm_api_bench
  $PY manage.py loaddata default_roles -v 0
  echo "== seed_demo --devices $DEVICES"
  time $PY manage.py seed_demo --devices "$DEVICES" --telemetry-hours 24 --telemetry-devices "$TELEMETRY_DEVICES" \
    --credentials-file "$OUT/api-bench-credentials.txt"
  $PY manage.py rollup_telemetry
else
  $PY manage.py migrate --no-input -v 0
fi
$PY - <<'PYEOF'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("VACUUM ANALYZE")
PYEOF

echo "== tokens and sample values"
$PY bench/api_bench_setup.py > "$OUT/api-bench-setup.json"

start_gunicorn "$PORT" "$OUT/api-gunicorn.log"

echo "== measuring: $REQUESTS requests per case, $CLIENTS client(s)"
$PY bench/api_bench.py --url "http://127.0.0.1:$PORT" --setup "$OUT/api-bench-setup.json" --requests "$REQUESTS" \
  --clients "$CLIENTS" --deep-pages "$DEEP_PAGES" --json "$OUT/api-bench.json" --explain-dir "$OUT"

echo "== queries per request, EXPLAIN (ANALYZE, BUFFERS) into $OUT/explain-*.txt"
$PY bench/api_bench_explain.py "$OUT/api-bench-setup.json" "$OUT/api-bench.json" "$OUT"

echo "== server log (errors only)"
grep -E "ERROR|Traceback|Exception" "$OUT/api-gunicorn.log" | head -20 || echo "none"
