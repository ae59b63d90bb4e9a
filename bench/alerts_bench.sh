#!/usr/bin/env bash
# The alerts benchmark (issue 14): 100,000 devices over 10 organizations, a day of telemetry (every 5 minutes, plus
# every minute over the last hour) for 10,000 of them, and 50 alert rules of every kind; then bench/alerts_bench.py
# times full evaluation passes, the latency of an alert after its condition starts, and a 5,000-device site going
# offline at once. Figures in bench/RESULTS.md.
#
#   bench/alerts_bench.sh                    # drop and re-create rmm_bench_alerts, seed, measure
#   SKIP_SEED=1 bench/alerts_bench.sh        # measure again on the seeded database
#   DEVICES=20000 bench/alerts_bench.sh      # a smaller fleet
#   SKIP_SEED=1 BENCH_ARGS=--only-bench-rules bench/alerts_bench.sh   # the 50 rules alone (seed_demo's off)
#   SKIP_SEED=1 BENCH_ARGS="--only-bench-rules --paced" ALERT_EVALUATION_PAUSE_PERCENT=0 bench/alerts_bench.sh
#                                            # the passes as the scheduler runs them (one core, sliced), less pauses
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_bench_alerts}
DEVICES=${DEVICES:-100000}
ORGANIZATIONS=${ORGANIZATIONS:-10}
TELEMETRY_DEVICES=${TELEMETRY_DEVICES:-10000}
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_bench_alerts
export SCHEDULER_ENABLED=0

if [ "${SKIP_SEED:-0}" != 1 ]; then
  recreate_database rmm_bench_alerts
  $PY manage.py loaddata default_roles -v 0
  echo "== seed_demo --devices $DEVICES --organizations $ORGANIZATIONS --telemetry-devices $TELEMETRY_DEVICES"
  time $PY manage.py seed_demo --devices "$DEVICES" --organizations "$ORGANIZATIONS" --software-per-device 40 \
    --telemetry-hours 24 --telemetry-devices "$TELEMETRY_DEVICES" --credentials-file "$OUT/alerts-bench-credentials.txt"
fi
# Also on a database seeded earlier: the short metric windows (5-30 minutes) must hold samples up to the clock the
# passes run at, or those rules cost nothing because they read nothing.
echo "== one-minute samples over the last hour (up to now) for the telemetry devices, rollups, VACUUM ANALYZE"
time $PY bench/alerts_bench.py --prepare
$PY manage.py rollup_telemetry

echo "== measure"
$PY bench/alerts_bench.py --passes "${PASSES:-5}" ${BENCH_ARGS:-}
