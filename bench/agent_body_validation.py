"""Microseconds per agent request body read: the heartbeat and a 1,000-item software upload (issue 11).

Run: ``DEBUG=1 PYTHONPATH=. .venv/bin/python bench/agent_body_validation.py`` (no database needed). Prints the best
of 50 timeit repeats per case (the minimum: the machine is shared). ``--json`` also times ``model_validate_json`` on
the raw bytes for comparison; the server does not use it: json.loads comes first, to refuse NaN and to walk unread
keys for NUL and lone surrogates.
"""

import datetime as dt
import json
import os
import sys
import timeit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.test import RequestFactory  # noqa: E402

from devices.agent_api import schemas  # noqa: E402
from devices.agent_api.heartbeat import read_heartbeat  # noqa: E402
from tests.agent.conftest import heartbeat_body  # noqa: E402

NOW = dt.datetime.now(dt.UTC)
TOKEN_HASH = "0" * 64  # not looked at: reading a body checks no token
HEARTBEAT = heartbeat_body()
HEARTBEAT_RAW = json.dumps(HEARTBEAT).encode()
SOFTWARE = {
    "software": [
        {"name": f"pkg{i}", "version": "1.2", "publisher": "ACME", "installDate": "2024-03-01", "installLocation": "/"}
        for i in range(1000)
    ]
}


def heartbeat_job():
    return read_heartbeat(HEARTBEAT, agent_id="a", token_hash=TOKEN_HASH, certificate=None, ip=None, now=NOW)


_request = RequestFactory().post("/", data=HEARTBEAT_RAW, content_type="application/json")


def heartbeat_job_from_bytes():
    return read_heartbeat(
        schemas.read_json_object(_request), agent_id="a", token_hash=TOKEN_HASH, certificate=None, ip=None, now=NOW
    )


CASES = {
    "heartbeat body → job (dict)": (heartbeat_job, 100_000),
    "heartbeat body → job (bytes, json.loads included)": (heartbeat_job_from_bytes, 100_000),
    "1,000-item software upload": (lambda: schemas.read_inventory_items("software", SOFTWARE), 200),
}
if "--json" in sys.argv:
    CASES["heartbeat model_validate_json(bytes), schema only"] = (
        lambda: schemas.Heartbeat.model_validate_json(HEARTBEAT_RAW),
        100_000,
    )
    CASES["heartbeat model_validate(dict), schema only"] = (
        lambda: schemas.Heartbeat.model_validate(HEARTBEAT),
        100_000,
    )


def best_us(function, number: int) -> float:
    return min(timeit.repeat(function, number=max(number // 10, 1), repeat=50)) / max(number // 10, 1) * 1e6


if __name__ == "__main__":
    for name, (function, number) in CASES.items():
        print(f"{name}: {best_us(function, number):.2f} µs")
