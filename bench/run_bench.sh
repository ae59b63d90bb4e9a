#!/usr/bin/env bash
# The agent API benchmark: a fresh database, gunicorn started with rmm/gunicorn.conf.py, then the fleet simulator
# (python bench/sim.py) enrolls AGENTS agents, drives RATE heartbeats/s for SECONDS (with commands queued meanwhile
# and answered by the simulated agents), then software uploads of ITEMS items, twice (first uploads, then the same
# lists again). See bench/README.md.
#
#   bench/run_bench.sh                     # defaults below
#   AGENTS=2000 RATE=1000 SECONDS=30 bench/run_bench.sh
#   ALERT_RULES=1 bench/run_bench.sh       # with the 50 rules of bench/alerts_bench.py evaluated every 60 s meanwhile
#
# It drops and re-creates the database named in BENCH_DATABASE_URL (never the development database) and only
# ever loads 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_bench}
AGENTS=${AGENTS:-10000}
RATE=${RATE:-2000}
SECONDS_=${SECONDS_HEARTBEATS:-60}
CONNECTIONS=${CONNECTIONS:-256}
COMMANDS_PER_SECOND=${COMMANDS_PER_SECOND:-20}
BACKLOG_PERCENT=${BACKLOG_PERCENT:-1}
STEADY_RATE=${STEADY_RATE:-1500}
SECONDS_PHASE=${SECONDS_PHASE:-30}
CEILING_CONNECTIONS=${CEILING_CONNECTIONS:-128}
UPLOADS=${UPLOADS:-3000}
ITEMS=${ITEMS:-300}
PORT=${PORT:-8765}
PROGRESS=${PROGRESS:-10}  # seconds per progress line of the heartbeat phases (rate, p50, p99 of those seconds)
OUT=${OUT:-var/bench}
PY=.venv/bin/python

. bench/_common.sh
bench_environment rmm_bench

recreate_database rmm_bench
KEY=$($PY bench/setup_tenant.py | tail -n 1)
rm -f "$OUT/agents.json"

start_gunicorn "$PORT" "$OUT/gunicorn.log"

SIM="$PY bench/sim.py --url http://127.0.0.1:$PORT --state $OUT/agents.json --agents $AGENTS"

echo "== enrollment: $AGENTS agents through POST /api/v1/agents/enroll"
$SIM --key "$KEY" --enroll-concurrency 16 --seconds 0 --json "$OUT/enroll.json"

if [ "${ALERT_RULES:-0}" = 1 ]; then
  echo "== alert rules: the server's scheduler evaluates them every ${ALERT_EVALUATION_SECONDS:-60} s from now on"
  $PY bench/alerts_bench.py --rules-only
fi

echo "== heartbeats: $RATE/s for ${SECONDS_} s over $CONNECTIONS connections, $COMMANDS_PER_SECOND commands/s queued"
$PY bench/queue_commands.py --per-second "$COMMANDS_PER_SECOND" --seconds "$SECONDS_" > "$OUT/queue_commands.log" 2>&1 &
QUEUE_PID=$!
BENCH_PG_MARK=${BENCH_PG_MARK:-} $PY bench/cpu_share.py --delay 5 --seconds $((SECONDS_ - 10)) > "$OUT/cpu.txt" &
CPU_PID=$!
$SIM --seconds "$SECONDS_" --rate "$RATE" --connections "$CONNECTIONS" --backlog-percent "$BACKLOG_PERCENT" \
  --progress "$PROGRESS" --json "$OUT/heartbeat.json"
wait $QUEUE_PID $CPU_PID
cat "$OUT/queue_commands.log" "$OUT/cpu.txt"

echo "== durability: every sample acknowledged with a 200 is in the database"
$PY - "$OUT/heartbeat.json" <<'EOF'
import json, os, sys
import psycopg
acknowledged = json.load(open(sys.argv[1]))["telemetrySamplesAcknowledged"]
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    stored = conn.execute("SELECT count(*) FROM device_telemetry").fetchone()[0]
print(f"acknowledged {acknowledged}, stored {stored}: {'OK' if stored >= acknowledged else 'MISSING ROWS'}")
sys.exit(0 if stored >= acknowledged else 1)
EOF

echo "== heartbeats: $STEADY_RATE/s for ${SECONDS_PHASE} s over $CONNECTIONS connections (the p99 to compare runs by)"
$SIM --seconds "$SECONDS_PHASE" --rate "$STEADY_RATE" --connections "$CONNECTIONS" --backlog-percent "$BACKLOG_PERCENT" \
  --progress "$PROGRESS" --json "$OUT/steady.json"

echo "== ceilings: closed loops over $CEILING_CONNECTIONS connections, ${SECONDS_PHASE} s each"
echo "-- heartbeats as fast as they are answered"
$SIM --seconds "$SECONDS_PHASE" --rate 0 --connections "$CEILING_CONNECTIONS" --json "$OUT/ceiling.json"
echo "-- no-op: the same requests with a malformed token, answered 401 before any database access"
$SIM --seconds "$SECONDS_PHASE" --rate 0 --connections "$CEILING_CONNECTIONS" --noop --json "$OUT/noop.json"
$PY - "$OUT" <<'EOF'
import json, sys
def row(name, endpoint):
    results = json.load(open(f"{sys.argv[1]}/{name}.json"))["results"]
    return next(r for r in results if r["endpoint"] == endpoint)
steady, ceiling, noop = row("steady", "heartbeat"), row("ceiling", "heartbeat"), row("noop", "heartbeat (no-op 401)")
print(f"steady {steady['perSecond']}/s: p50 {steady['p50Ms']} ms, p99 {steady['p99Ms']} ms, errors {steady['errors']}")
print(f"heartbeat ceiling {ceiling['perSecond']}/s (errors {ceiling['errors']}); "
      f"no-op ceiling {noop['perSecond']}/s (errors {noop['errors']}); "
      f"ratio {ceiling['perSecond'] / noop['perSecond']:.2f}")
EOF

echo "== inventory: $UPLOADS software uploads of $ITEMS items"
$SIM --seconds 0 --inventory-uploads "$UPLOADS" --software-items "$ITEMS" --inventory-concurrency 8 \
  --json "$OUT/inventory.json"
echo "-- again: the same uploads, each device re-sending the list it sent (what agents do most of the time)"
$SIM --seconds 0 --inventory-uploads "$UPLOADS" --software-items "$ITEMS" --inventory-concurrency 8 \
  --json "$OUT/inventory-repeat.json"

echo "== scheduled jobs that ran (all in $OUT/job_runs.txt: the next run drops this database)"
$PY - > "$OUT/job_runs.txt" <<'EOF'
import os
import psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    for row in conn.execute(
        "SELECT job_name, started_at, duration_ms, outcome, report FROM job_runs ORDER BY started_at"
    ):
        print(f"{row[0]}  {row[1]:%H:%M:%S.%f}  {row[2]} ms  {row[3]}  {row[4]}")
EOF
grep "^evaluate_alerts" "$OUT/job_runs.txt" || echo "no alert evaluation ran"

echo "== server log (errors only)"
grep -E "ERROR|Traceback|Exception" "$OUT/gunicorn.log" | head -20 || echo "none"
