"""What serving the heartbeat through a DRF ``APIView`` would cost, in process CPU per request (issue 11).

Builds Django's WSGI handler and sends the same heartbeat through two routes in one process: the plain view the
server uses (``devices.agent_api.views.heartbeat``) and a variant on the agent's DRF base (``AgentView``) that does
exactly the same work. Rounds alternate the order of the two; each round times N requests per route with
``time.process_time`` (this process's CPU: the Python side, the heartbeat's own SQL included, PostgreSQL's not).
Group commit is off, so each heartbeat is written inline in the request's thread and its CPU is counted; the
database connection is kept from one request to the next. ``--no-write`` answers without writing: the two views'
own costs without the database's noise.

Run (it creates and drops its own database, ``<DATABASE_URL's name>_viewbench``):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/rmm_h1 PYTHONPATH=. .venv/bin/python \
        bench/agent_view_overhead.py [--rounds 20] [--requests 200] [--no-write]

The difference is set against the ~475 µs of worker CPU per heartbeat of the closed-loop benchmark
(bench/RESULTS.md): the issue allowed DRF for the heartbeat only below 5 % of that.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import types

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
from django.conf import settings

WORKER_CPU_PER_HEARTBEAT_US = 475  # bench/RESULTS.md: worker CPU per heartbeat at the closed-loop ceiling


def urlconf():
    """The server's routes plus the DRF variant of the heartbeat at /bench/agents/{agentId}/heartbeat."""
    from django.urls import path, re_path
    from rest_framework.response import Response

    from devices.agent_api import views
    from devices.agent_api.authentication import OK, presented_certificate, presented_token_hash, refusal
    from devices.agent_api.delivery import commands_answer
    from devices.agent_api.errors import AgentError
    from devices.agent_api.group_commit import WriterUnavailable
    from devices.agent_api.heartbeat import read_heartbeat
    from devices.agent_api.schemas import read_json_object
    from rmm import urls
    from rmm.net import client_ip

    class HeartbeatView(views.AgentView):
        """The plain heartbeat's body on the DRF base; the token is judged in the batch, as the plain view does."""

        authentication_classes: list = []

        def post(self, request, agent_id: str):
            token_hash = presented_token_hash(request)
            if token_hash is None:
                raise refusal("invalid_token")
            try:
                job = read_heartbeat(
                    read_json_object(request),
                    agent_id=agent_id,
                    token_hash=token_hash,
                    certificate=presented_certificate(request),
                    ip=client_ip(request),
                    now=django.utils.timezone.now(),
                )
            except AgentError:
                views.authenticate(request, agent_id)
                raise
            views.write_heartbeat(job)
            if job.verdict == "busy":
                raise WriterUnavailable("the device kept changing under its heartbeat")
            if job.verdict != OK:
                raise refusal(job.verdict)
            answer = {"commands": job.commands, "configUpdate": None, "rotateToken": job.rotate_token}
            if not job.commands:
                return Response(answer)
            return commands_answer(
                request, answer, device_id=job.identity.device_id, sent_at=job.claimed_at, agent_id=agent_id
            )

    module = types.ModuleType("bench_agent_view_urls")
    module.urlpatterns = [
        re_path(r"^bench/agents/(?P<agent_id>[^/]+)/heartbeat$", HeartbeatView.as_view()),
        path("", django.urls.include(urls)),
    ]
    sys.modules[module.__name__] = module
    return module.__name__


def environ(path: str, body: bytes, token: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="answer every heartbeat as written without writing it: the view machinery alone, with far less noise",
    )
    args = parser.parse_args()

    django.setup()
    settings.DEBUG = False
    settings.AGENT_GROUP_COMMIT = False
    settings.ROOT_URLCONF = urlconf()
    database = settings.DATABASES["default"]
    database["TEST"] = {**database.get("TEST", {}), "NAME": f"{database['NAME']}_viewbench"}

    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tests import factories
    from tests.agent.conftest import enrollment_body, heartbeat_body, make_key

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        raw_key, _ = make_key(factories.site())
        enrolled = (
            Client()
            .post("/api/v1/agents/enroll", data=json.dumps(enrollment_body(raw_key)), content_type="application/json")
            .json()
        )
        agent_id, token = enrolled["agentId"], enrolled["authToken"]
        body = json.dumps(heartbeat_body()).encode()
        handler = WSGIHandler()
        if args.no_write:
            from devices.agent_api import views
            from devices.agent_api.authentication import OK, AgentIdentity

            identity = AgentIdentity(agent_id, *(None,) * 13)

            def written(job) -> None:
                job.verdict, job.identity, job.commands, job.settled = OK, identity, [], True

            views.write_heartbeat = written
        # The request's database connection stays open between requests instead of going back to the pool: the same
        # for both routes, and it takes the pool's per-request work (and its noise) out of the comparison.
        request_finished.disconnect(close_old_connections)
        routes = {
            "plain": f"/api/v1/agents/{agent_id}/heartbeat",
            "drf": f"/bench/agents/{agent_id}/heartbeat",
        }

        def send(path: str) -> None:
            statuses: list[str] = []
            answer = handler(environ(path, body, token), lambda status, headers: statuses.append(status))
            b"".join(answer)
            answer.close()
            assert statuses[0].startswith("200"), statuses

        for path in routes.values():  # warm up: imports, prepared statements, the pool
            for _ in range(50):
                send(path)
        per_request: dict[str, list[float]] = {name: [] for name in routes}
        for _round in range(args.rounds):
            order = list(routes)
            random.shuffle(order)
            for name in order:
                started = time.process_time()
                for _ in range(args.requests):
                    send(routes[name])
                per_request[name].append((time.process_time() - started) / args.requests * 1e6)
        differences = [drf - plain for plain, drf in zip(per_request["plain"], per_request["drf"], strict=True)]
        for name, values in per_request.items():
            print(f"{name}: median {statistics.median(values):.1f} µs CPU per request (min {min(values):.1f})")
        extra = statistics.median(differences)
        low, _, high = statistics.quantiles(differences, n=4)
        print(
            f"DRF - plain: median {extra:.1f} µs per heartbeat over {args.rounds} rounds of {args.requests} "
            f"(quartiles {low:.1f} .. {high:.1f}) = {100 * extra / WORKER_CPU_PER_HEARTBEAT_US:.1f} % of "
            f"{WORKER_CPU_PER_HEARTBEAT_US} µs"
        )
    finally:
        connection.creation.destroy_test_db(database["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
