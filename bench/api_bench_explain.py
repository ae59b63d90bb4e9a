"""Queries per request and EXPLAIN (ANALYZE, BUFFERS) of each case bench/api_bench.py measured. Run with the
server's environment after api_bench.py wrote its JSON:

    .venv/bin/python bench/api_bench_explain.py var/bench/api-bench-setup.json var/bench/api-bench.json var/bench

Each case's URL goes through Django's test client (in-process, same settings) with the case's token; the number
of SQL statements is printed, and so is the same list at limit=10 and limit=500 (a constant count per page means
the two are equal). The slowest statement of each case is re-run under EXPLAIN (ANALYZE, BUFFERS) and written to
DIR/explain-<principal>-<case>.txt.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

setup = json.loads(Path(sys.argv[1]).read_text())
measured = json.loads(Path(sys.argv[2]).read_text())
out = Path(sys.argv[3])
client = Client(SERVER_NAME="127.0.0.1")


def run(principal: str, path: str):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {setup['tokens'][principal]}")
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return ctx.captured_queries


print(f"{'case':<62} {'queries':>7} {'@limit=10':>9} {'@limit=500':>10}  slowest statement (ms)")
for key, row in measured["cases"].items():
    if "walk to" in key:
        continue
    principal, name = key.split(": ", 1)
    path = row["path"]
    run(principal, path)  # warm
    queries = run(principal, path)
    counts = ""
    if "limit=100" in path:
        small = len(run(principal, path.replace("limit=100", "limit=10")))
        large = len(run(principal, path.replace("limit=100", "limit=500")))
        counts = f"{small:>9} {large:>10}"
    else:
        counts = f"{'':>9} {'':>10}"
    slowest = max(queries, key=lambda q: float(q["time"]))
    print(f"{key:<62} {len(queries):>7} {counts}  {float(slowest['time']) * 1000:.1f}")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
        plan = "\n".join(r[0] for r in cursor.fetchall())
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    (out / f"explain-{slug}.txt").write_text(f"{path}\n\n{slowest['sql']}\n\n{plan}\n")
