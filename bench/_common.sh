# What bench/run_bench.sh and bench/api_bench.sh share. Sourced, not run; expects PY, OUT and BENCH_DATABASE_URL.

# bench_environment DBNAME: refuse any database but DBNAME (it is dropped and re-created), export the settings.
bench_environment() {
  case "$BENCH_DATABASE_URL" in
    */"$1") ;;
    *) echo "BENCH_DATABASE_URL must name a database called $1 (it is dropped and re-created)" >&2; exit 2 ;;
  esac
  export DATABASE_URL=$BENCH_DATABASE_URL
  export SECRET_KEY=${SECRET_KEY:-bench-secret-key-not-for-production-0123456789abcdef}
  export DEBUG=0 LOG_LEVEL=${LOG_LEVEL:-WARNING}
  mkdir -p "$OUT"
  echo "== machine"
  echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ram: $(free -g | awk '/Mem:/ {print $2}') GB"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# recreate_database DBNAME: drop and create it on the server of BENCH_DATABASE_URL, then migrate.
recreate_database() {
  echo "== fresh database"
  $PY - "${BENCH_DATABASE_URL%/*}/postgres" "$1" <<'PYEOF'
import sys, psycopg
from psycopg import sql
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(sys.argv[2])))
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(sys.argv[2])))
PYEOF
  $PY manage.py migrate --no-input -v 0
  # BENCH_AFTER_MIGRATE_SQL: SQL run on the fresh database before the benchmark, to measure a schema variant on the
  # same day (e.g. "DROP INDEX device_netif_ip" for the cost of one index).
  if [ -n "${BENCH_AFTER_MIGRATE_SQL:-}" ]; then
    echo "== after migrate: $BENCH_AFTER_MIGRATE_SQL"
    $PY - "$BENCH_DATABASE_URL" "$BENCH_AFTER_MIGRATE_SQL" <<'PYEOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PYEOF
  fi
}

# start_gunicorn PORT LOGFILE: gunicorn with the production config on 127.0.0.1:PORT, stopped when the script exits.
start_gunicorn() {
  echo "== gunicorn -c rmm/gunicorn.conf.py (${WEB_CONCURRENCY:-default} workers, ${GUNICORN_WORKER_CLASS:-default} class)"
  GUNICORN_BIND=127.0.0.1:$1 GUNICORN_ACCESS_LOG=off .venv/bin/gunicorn -c rmm/gunicorn.conf.py rmm.wsgi > "$2" 2>&1 &
  GUNICORN_PID=$!
  trap 'kill $GUNICORN_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    if $PY -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; then break; fi
    sleep 0.2
  done
  sleep 2  # let every worker finish loading Django
}
