"""What one heartbeat costs the server process, in CPU time and (under valgrind) in instructions.

Throughput benchmarks on a shared 2-core machine move by tens of percent from one run to the next (see
bench/RESULTS.md), which hides a change of a few percent in the server's own path. This script sends heartbeats
through the server's WSGI application in-process, one after another, with group commit off (each heartbeat is
written inline), so what it measures is the request path of one worker: WSGI, middleware, authentication,
validation, the SQL round trips and the answer. PostgreSQL's own work is not counted.

    # once: a fresh database with AGENTS enrolled agents (through POST /api/v1/agents/enroll)
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/rmm_cost python bench/heartbeat_cost.py prepare --agents 200
    # CPU time per heartbeat (time.process_time), several rounds
    DATABASE_URL=... python bench/heartbeat_cost.py run --requests 3000 --rounds 5
    # instructions per heartbeat: the difference of two valgrind runs cancels the start-up
    DATABASE_URL=... bench/heartbeat_instructions.sh 1000

It works on any revision of the server that speaks the agent protocol (only HTTP is used), so a before/after pair
runs the same script in two worktrees against two databases.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path.cwd()  # the worktree whose server is measured (run from its root)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
os.environ.setdefault("AGENT_GROUP_COMMIT", "0")
os.environ.setdefault("SECRET_KEY", "heartbeat-cost-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

_sim_spec = importlib.util.spec_from_file_location("bench_sim", Path(__file__).resolve().parent / "sim.py")
assert _sim_spec and _sim_spec.loader
sim = importlib.util.module_from_spec(_sim_spec)
sys.modules["bench_sim"] = sim
_sim_spec.loader.exec_module(sim)

STATE = ROOT / "var" / "heartbeat-cost-agents.json"


def _environ(method: str, path: str, body: bytes = b"", token: str | None = None) -> dict:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return environ


def _call(app, environ: dict) -> tuple[int, bytes]:
    status: list[str] = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return int(status[0].split()[0]), body


def _application():
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    try:
        from rmm.wsgi import application  # ours wraps Django's (chunked bodies), as gunicorn serves it
    except ImportError:
        application = get_wsgi_application()
    return application


def prepare(agents: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from orgs.models import Organization, Partner, Site

    partner, _ = Partner.objects.get_or_create(slug="bench", defaults={"name": "Benchmark partner"})
    org, _ = Organization.objects.get_or_create(partner=partner, slug="bench", defaults={"name": "Benchmark org"})
    Site.objects.get_or_create(org=org, name="HQ")
    out = io.StringIO()
    call_command("create_enrollment_key", org="bench", partner="bench", site="HQ", name="cost", stdout=out)
    key = out.getvalue().rstrip().splitlines()[-1]
    app = _application()
    rng = random.Random("heartbeat-cost")  # noqa: S311 - load data, not secrets
    enrolled = []
    for n in range(agents):
        status, body = _call(app, _environ("POST", "/api/v1/agents/enroll", sim.enrollment_body(key, n, rng)))
        if status != 201:
            raise SystemExit(f"enroll answered {status}: {body[:300]!r}")
        data = json.loads(body)
        enrolled.append({"agentId": data["agentId"], "authToken": data["authToken"], "hostname": f"sim-{n:06d}"})
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(enrolled))
    print(f"enrolled {len(enrolled)} agents into {os.environ.get('DATABASE_URL', '(default database)')}")


def run(requests: int, rounds: int, warmup: int) -> None:
    app = _application()
    agents = [
        sim.SimAgent(a["agentId"], a["authToken"], a["hostname"], random.Random(a["agentId"]))  # noqa: S311
        for a in json.loads(STATE.read_text())
    ]

    def heartbeats(count: int) -> None:
        for i in range(count):
            agent = agents[i % len(agents)]
            path = f"/api/v1/agents/{agent.agent_id}/heartbeat"
            status, body = _call(app, _environ("POST", path, agent.heartbeat(), agent.token))
            if status != 200:
                raise SystemExit(f"heartbeat answered {status}: {body[:300]!r}")

    heartbeats(warmup)  # imports, prepared statements, caches
    per_request = []
    for _ in range(rounds):
        started = time.process_time()
        heartbeats(requests)
        per_request.append((time.process_time() - started) / max(requests, 1) * 1e6)
    if rounds:
        print(
            f"{requests} heartbeats x {rounds} rounds: CPU µs per heartbeat "
            + ", ".join(f"{value:.0f}" for value in per_request)
            + f"; median {statistics.median(per_request):.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--agents", type=int, default=200)
    r = sub.add_parser("run")
    r.add_argument("--requests", type=int, default=2000)
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.agents)
    else:
        run(args.requests, args.rounds, args.warmup)


if __name__ == "__main__":
    main()
