#!/usr/bin/env bash
# Enrollment throughput alone: a fresh database, gunicorn started with rmm/gunicorn.conf.py from TREE (a checkout of
# the server, by default this one), then bench/sim.py (always this checkout's) enrolls AGENTS agents with one key over
# CONCURRENCY connections, as bench/run_bench.sh's enrollment phase does. For before/after figures of one change,
# alternate it between two checkouts within minutes:
#
#   git worktree add /tmp/enroll-before <old revision> && ln -s "$PWD/.venv" /tmp/enroll-before/.venv
#   bench/enroll_bench.sh /tmp/enroll-before; bench/enroll_bench.sh; bench/enroll_bench.sh /tmp/enroll-before; ...
#
# It drops and re-creates the database named in BENCH_DATABASE_URL and only ever loads 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "${1:-$HERE}" && pwd)
cd "$TREE"

BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rmm_enrollbench}
AGENTS=${AGENTS:-3000}
CONCURRENCY=${CONCURRENCY:-16}
PORT=${PORT:-8790}
OUT=${OUT:-/tmp/enroll-bench}
PY=.venv/bin/python
export SCHEDULER_ENABLED=0  # no periodic jobs competing for the two cores

. "$HERE/bench/_common.sh"
bench_environment rmm_enrollbench
echo "tree: $TREE ($(git -C "$TREE" rev-parse --short HEAD)$(git -C "$TREE" diff --quiet HEAD -- devices || echo ', devices/ modified'))"

recreate_database rmm_enrollbench
KEY=$($PY bench/setup_tenant.py | tail -n 1)
rm -f "$OUT/agents.json"

start_gunicorn "$PORT" "$OUT/gunicorn.log"

# CPU seconds of this server's workers and of PostgreSQL's backends for this database (the machine may be shared:
# the figure per enrollment survives other load better than the rate does).
cpu_seconds() {
  $PY - "$GUNICORN_PID" <<'PYEOF'
import sys, psutil
def cpu(p):
    t = p.cpu_times()
    return t.user + t.system
workers = sum(cpu(c) for c in psutil.Process(int(sys.argv[1])).children())
def cmdline(p):
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie nobody reaped (some containers' PID 1 does not)
        return ""
backends = sum(cpu(p) for p in psutil.process_iter() if "rmm_enrollbench" in cmdline(p))
print(f"{workers:.2f} {backends:.2f}")
PYEOF
}
CPU_BEFORE=$(cpu_seconds)

echo "== enrollment: $AGENTS agents, $CONCURRENCY at a time"
$PY "$HERE/bench/sim.py" --url "http://127.0.0.1:$PORT" --key "$KEY" --agents "$AGENTS" \
  --enroll-concurrency "$CONCURRENCY" --seconds 0 --state "$OUT/agents.json" --json "$OUT/enroll.json"

CPU_AFTER=$(cpu_seconds)
$PY - "$AGENTS" $CPU_BEFORE $CPU_AFTER <<'PYEOF'
import sys
n, w0, b0, w1, b1 = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"cpu per enrollment: gunicorn {1000 * (w1 - w0) / n:.2f} ms, postgresql {1000 * (b1 - b0) / n:.2f} ms")
PYEOF
