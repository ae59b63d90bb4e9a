#!/usr/bin/env bash
# Issue 15's benchmark (bench/scripts_bench.py): a fresh database seeded with DEVICES devices in one organization,
# then: a run queued on a 10,000-device group (5 times), the results pages of a finished 10,000-device run over
# HTTP through gunicorn, and 500 schedules due in the same minute fired by the scheduler's job.
#
#   bench/scripts_bench.sh                 # DEVICES=12000
#   SKIP_SEED=1 bench/scripts_bench.sh     # reuse the seeded database
#
# It drops and re-creates the database named in BENCH_DATABASE_URL (never the development database).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_bench_scripts}
DEVICES=${DEVICES:-12000}
REQUESTS=${REQUESTS:-200}
PORT=${PORT:-8767}
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_bench_scripts

if [ "${SKIP_SEED:-0}" != 1 ]; then
  recreate_database rmm_bench_scripts
  $PY manage.py loaddata default_roles -v 0
  echo "== seed_demo --devices $DEVICES --organizations 1"
  time $PY manage.py seed_demo --devices "$DEVICES" --organizations 1 --telemetry-hours 0 \
    --credentials-file "$OUT/scripts-bench-credentials.txt" > /dev/null
else
  $PY manage.py migrate --no-input -v 0
fi
echo "== prepare: a 10,000-device group, a script, a finished run, $((500)) schedules on 5-device groups"
$PY bench/scripts_bench.py --prepare > "$OUT/scripts-bench-setup.json"
$PY - <<'PYEOF'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("VACUUM ANALYZE")
PYEOF

echo "== queueing: start_run on the 10,000-device group"
$PY bench/scripts_bench.py --queue-runs 5

echo "== results pages over HTTP ($REQUESTS requests each)"
SCHEDULER_ENABLED=0 start_gunicorn "$PORT" "$OUT/scripts-gunicorn.log"
$PY bench/scripts_bench.py --results "http://127.0.0.1:$PORT" "$OUT/scripts-bench-setup.json" --requests "$REQUESTS"

echo "== schedules: 500 due in the same minute"
$PY bench/scripts_bench.py --fire-schedules

echo "== server log (errors only)"
grep -E "ERROR|Traceback|Exception" "$OUT/scripts-gunicorn.log" | head -20 || echo "none"
