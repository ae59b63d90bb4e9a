#!/usr/bin/env bash
# The console benchmark (issue 16): 100,000 demo devices over 4 organizations (interfaces with LAN IPs, tags, open
# alerts, commands, a few script runs, enrollment keys), 24 h of telemetry for 1,000 of them rolled up, then the
# server time (in-process, django.test.Client) of the dashboard, the device list (first page, filtered, searched)
# and the device page with its charts, for a technician reaching two organizations and for the superuser. See
# bench/README.md; figures in bench/RESULTS.md.
#
#   bench/console_bench.sh                  # drop and re-create rmm_console_bench, seed (~4 min), measure (~2 min)
#   SKIP_SEED=1 bench/console_bench.sh      # measure again on the seeded database (after migrate)
#   REQUESTS=200 DEVICES=20000 bench/console_bench.sh
#
# It drops and re-creates only the database named in BENCH_DATABASE_URL, which must be called rmm_console_bench.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_console_bench}
DEVICES=${DEVICES:-100000}
ORGANIZATIONS=${ORGANIZATIONS:-4}
TELEMETRY_DEVICES=${TELEMETRY_DEVICES:-1000}
REQUESTS=${REQUESTS:-100}
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_console_bench
export SCHEDULER_ENABLED=0
# Its own collected static files: the pages link the console's CSS and JS through the manifest storage, and the
# shared var/static may lag behind files other work adds.
export STATIC_ROOT=${STATIC_ROOT:-$OUT/console-static}

if [ "${SKIP_SEED:-0}" != 1 ]; then
  recreate_database rmm_console_bench
  $PY manage.py loaddata default_roles -v 0
  echo "== seed_demo --devices $DEVICES --organizations $ORGANIZATIONS --telemetry-devices $TELEMETRY_DEVICES"
  time $PY manage.py seed_demo --devices "$DEVICES" --organizations "$ORGANIZATIONS" --telemetry-hours 24 \
    --telemetry-devices "$TELEMETRY_DEVICES" --credentials-file "$OUT/console-bench-credentials.txt" > /dev/null
else
  $PY manage.py migrate --no-input -v 0
fi
echo "== rollups (devices.services.telemetry.roll_up), the two-organization technician, VACUUM ANALYZE"
$PY manage.py rollup_telemetry
$PY bench/console_bench.py --prepare
$PY manage.py collectstatic --no-input -v 0

echo "== measuring: $REQUESTS requests per page and person, in-process"
$PY bench/console_bench.py --requests "$REQUESTS" --json "$OUT/console-bench.json" ${BENCH_ARGS:-}
