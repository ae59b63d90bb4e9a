"""gunicorn's production configuration: ``gunicorn -c rmm/gunicorn.conf.py rmm.wsgi``.

Every value can be overridden from the environment (gunicorn also reads GUNICORN_CMD_ARGS).

The worker model was chosen by measurement (bench/RESULTS.md, 2 cores, server + PostgreSQL + load generator on
the same machine): gevent workers, one per core plus one. Against gthread (the same Django, the same group
commit) a request costs ~30 % less CPU (no thread pool hand-off, no GIL convoy between the poller and the request
threads), and the heartbeat's group commit gets larger batches from thousands of cheap waiting greenlets:
2,000 heartbeats/s held at p99 ≈ 30 ms where gthread (2-4 workers x 8-16 threads) saturated at 1,600-2,100/s
with p99 in the hundreds of milliseconds; sync workers cannot batch (one request per process) and close every
connection. psycopg 3 cooperates with gevent by itself (since 3.1.14).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# gunicorn's gevent, gthread and sync workers, each answering the API's error shape for the requests gunicorn itself
# refuses under /api/ (rmm/gunicorn_worker.py); any other GUNICORN_WORKER_CLASS is taken as gunicorn would take it.
_OUR_WORKERS = {
    "gevent": "rmm.gunicorn_worker.GeventWorker",
    "gthread": "rmm.gunicorn_worker.ThreadWorker",
    "sync": "rmm.gunicorn_worker.SyncWorker",
}
_requested_worker = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
worker_class = _OUR_WORKERS.get(_requested_worker, _requested_worker)
# Concurrent client connections per gevent worker (idle keep-alive agent connections cost a greenlet each).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# "auto" parses requests with gunicorn_h1c (C, a dependency) and falls back to gunicorn's Python parser without it;
# GUNICORN_HTTP_PARSER=python measures the difference (bench/RESULTS.md, issue 13).
http_parser = os.environ.get("GUNICORN_HTTP_PARSER", "auto")
graceful_timeout = 30
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so a slow leak in any dependency can never take the server down; rarely, because a
# restart drops the worker's connections and costs a second of CPU loading Django again.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "250000"))
max_requests_jitter = 25000
# GUNICORN_ACCESS_LOG=off turns the access log off (it costs CPU on every request; a proxy in front logs too).
_access_log = os.environ.get("GUNICORN_ACCESS_LOG", "-")
accesslog = None if _access_log.lower() in ("off", "none", "") else _access_log
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn >= 25 opens a control socket for gunicornc at $XDG_RUNTIME_DIR/gunicorn.ctl or $HOME/.gunicorn/gunicorn.ctl:
# one path for every instance of the user, so a second server (a test, a blue/green deploy) takes it over and
# gunicornc then talks to the wrong one, and stopping either removes the other's socket. Off unless
# GUNICORN_CONTROL_SOCKET names a path of this instance's own.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]


def post_worker_init(worker):
    # Django and every module are loaded by now: move those objects out of the garbage collector's sight, so a
    # full collection walks only what requests allocate instead of pausing the worker for tens of milliseconds.
    import gc

    gc.freeze()


def on_starting(server):
    # Before binding: refuse to start on a wrong setting, and collect the static files if they are missing or older
    # than the sources, each said in one line (rmm/static_check.py); never a 500 on every admin page.
    from rmm.static_check import collect_before_start

    collect_before_start()


def when_ready(server):
    # The periodic jobs run beside the server, in a process the master starts and restarts (jobs/supervisor.py).
    from jobs import gunicorn_hooks

    gunicorn_hooks.when_ready(server)


def on_exit(server):
    from jobs import gunicorn_hooks

    gunicorn_hooks.on_exit(server)
