#!/usr/bin/env bash
# The real agent's own cost (issue 17): a fresh database, gunicorn with the production config, this machine enrolled
# with `rmm-agent enroll`, then `rmm-agent run` measured by bench/agent_cost.py for SECONDS (default 600) at the
# server's default heartbeat interval (60 s), and a full inventory collection timed in fresh processes.
#
#   bench/agent_bench.sh                      # about 11 minutes
#   SECONDS_RUN=120 bench/agent_bench.sh      # a quick look
#
# It drops and re-creates the database named in BENCH_DATABASE_URL and only ever talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_agentbench}
SECONDS_RUN=${SECONDS_RUN:-600}
PORT=${PORT:-8791}
OUT=${OUT:-/tmp/agent-bench}
PY=.venv/bin/python
export SCHEDULER_ENABLED=0 WEB_CONCURRENCY=${WEB_CONCURRENCY:-1}

. bench/_common.sh
bench_environment rmm_agentbench
echo "tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- agent || echo ', agent/ modified')"

recreate_database rmm_agentbench
KEY=$($PY bench/setup_tenant.py | tail -n 1)
start_gunicorn "$PORT" "$OUT/gunicorn.log"

STATE=$OUT/state
rm -rf "$STATE"
echo "== rmm-agent enroll"
.venv/bin/rmm-agent --state-dir "$STATE" enroll --server "http://127.0.0.1:$PORT" --key - <<<"$KEY"

echo "== rmm-agent run for ${SECONDS_RUN} s, and inventory collections"
$PY bench/agent_cost.py --state-dir "$STATE" --seconds "$SECONDS_RUN" --json "$OUT/agent.json"

$PY - "$BENCH_DATABASE_URL" <<'PYEOF'
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    rows = conn.execute("SELECT count(*), min(ts), max(ts) FROM device_telemetry").fetchone()
    software = conn.execute("SELECT count(*) FROM device_software").fetchone()[0]
print(f"server side: {rows[0]} telemetry rows from {rows[1]} to {rows[2]}; {software} software rows")
PYEOF
