#!/usr/bin/env bash
# Software uploads alone, in three passes over the same devices (issue 13): a fresh database, gunicorn with
# rmm/gunicorn.conf.py, AGENTS agents enrolled, then UPLOADS uploads of ITEMS items, 8 at a time, three times:
#
#   first    every device's first upload (AGENTS >= UPLOADS): what bench/run_bench.sh measures (agent n % AGENTS)
#   repeat   the same lists again, as an agent sends them after each scan when nothing was installed
#   changed  new lists (another --seed): the same program names, every version and install date different
#
#   bench/uploads_bench.sh                          # this tree
#   PASSES=first bench/uploads_bench.sh             # some passes (repeat and changed need first before them)
#   BENCH_AFTER_MIGRATE_SQL="DROP INDEX device_software_org_name_trgm" bench/uploads_bench.sh  # a schema variant
#   TREE=/tmp/uploads-before bench/uploads_bench.sh  # another checkout (a git worktree), with this venv
#
# Besides throughput and latency, each pass prints the CPU milliseconds per upload of the gunicorn workers and of the
# PostgreSQL backends serving this database: on a machine shared with other work, the figure that moves least.
#
# It drops and re-creates the database named in BENCH_DATABASE_URL and only ever loads 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$(pwd)
TREE=${TREE:-$HERE}
BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_uploadsbench}
AGENTS=${AGENTS:-3000}
UPLOADS=${UPLOADS:-3000}
ITEMS=${ITEMS:-300}
PORT=${PORT:-8791}
OUT=${OUT:-$HERE/var/uploads-bench}
PY=$HERE/.venv/bin/python

. bench/_common.sh
bench_environment rmm_uploadsbench
export SCHEDULER_ENABLED=0
SIM="$PY $HERE/bench/sim.py --url http://127.0.0.1:$PORT --state $OUT/agents.json --agents $AGENTS"

cd "$TREE"
echo "== code: $TREE at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- devices || echo ' (devices/ modified)')"
recreate_database rmm_uploadsbench
KEY=$($PY bench/setup_tenant.py | tail -n 1)
rm -f "$OUT/agents.json"
GUNICORN=$HERE/.venv/bin/gunicorn
echo "== gunicorn -c rmm/gunicorn.conf.py"
GUNICORN_BIND=127.0.0.1:$PORT GUNICORN_ACCESS_LOG=off $GUNICORN -c rmm/gunicorn.conf.py rmm.wsgi > "$OUT/gunicorn.log" 2>&1 &
GUNICORN_PID=$!
trap 'kill $GUNICORN_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  if $PY -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null; then break; fi
  sleep 0.2
done
sleep 2

echo "== enrollment: $AGENTS agents"
$SIM --key "$KEY" --enroll-concurrency 16 --seconds 0 > "$OUT/enroll.txt"
tail -n 1 "$OUT/enroll.txt"
# cpu_seconds: CPU seconds so far of the gunicorn workers and of the PostgreSQL backends connected to this database.
cpu_seconds() {
  $PY - "$GUNICORN_PID" <<'EOF'
import os, sys, psutil, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    pids = [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
def cpu(processes):
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
server = cpu(psutil.Process(int(sys.argv[1])).children(recursive=True))
print(f"{server:.3f} {cpu(psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)):.3f}")
EOF
}
for pass in ${PASSES:-first repeat changed}; do
  seed=rmm-sim
  [ "$pass" = changed ] && seed=rmm-sim-changed
  echo "== $pass: $UPLOADS uploads of $ITEMS items (load $(cut -d' ' -f1 /proc/loadavg))"
  read -r server_before pg_before <<< "$(cpu_seconds)"
  $SIM --seed "$seed" --seconds 0 --inventory-uploads "$UPLOADS" --software-items "$ITEMS" \
    --inventory-concurrency 8 --json "$OUT/$pass.json" | tail -n +2
  read -r server_after pg_after <<< "$(cpu_seconds)"
  $PY - "$OUT/$pass.json" "$server_before" "$server_after" "$pg_before" "$pg_after" <<'EOF'
import json, sys
done = sum(r["requests"] for r in json.load(open(sys.argv[1]))["results"])
server, pg = (float(sys.argv[3]) - float(sys.argv[2])) * 1000, (float(sys.argv[5]) - float(sys.argv[4])) * 1000
print(f"CPU per upload: gunicorn {server / done:.2f} ms, PostgreSQL backends {pg / done:.2f} ms ({done} uploads)")
EOF
done
$PY - <<'EOF'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    rows, devices = conn.execute("SELECT count(*), count(DISTINCT device_id) FROM device_software").fetchone()
print(f"== stored: {rows} software rows on {devices} devices")
EOF
echo "== server log (errors only)"
grep -E "ERROR|Traceback|Exception" "$OUT/gunicorn.log" | head -20 || echo "none"
