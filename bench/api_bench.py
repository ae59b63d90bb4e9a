"""Latency of the technician API's read paths over HTTP (standard library only; bench/api_bench.sh runs it).

    python bench/api_bench.py --url http://127.0.0.1:8766 --setup var/bench/api-bench-setup.json --requests 300

For each principal (the demo technician, whose queries carry the org scoping, and the superuser) and each case,
sends --requests GETs over keep-alive connections (--clients at a time, each its own connection) and prints
p50/p95/p99/max in ms. Deep cursor pages are found first by walking the list --deep-pages pages (limit 100); the
walk's own latencies are reported as well. Every answer must be a 200, or the run fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

TARGETS_MS = {"list": 50.0, "telemetry": 20.0}


class Client:
    def __init__(self, url: str, token: str):
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname != "127.0.0.1":
            raise SystemExit("--url must be http://127.0.0.1:PORT")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def get(self, path: str) -> tuple[float, dict]:
        started = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
            body = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed, json.loads(body)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": round(pct(values, 95), 1),
        "p99": round(pct(values, 99), 1),
        "max": round(max(values), 1),
    }


def walk(client: Client, base: str, pages: int) -> tuple[str, list[float], int]:
    """Follow ``next`` from the first page; return the cursor of page ``pages`` (or the last full one)."""
    cursor, latencies, walked = None, [], 0
    sep = "&" if "?" in base else "?"
    for _ in range(pages):
        path = base if cursor is None else f"{base}{sep}cursor={urllib.parse.quote(cursor)}"
        elapsed, body = client.get(path)
        latencies.append(elapsed)
        if not body["next"]:
            break
        cursor, walked = body["next"], walked + 1
    if cursor is None:
        raise SystemExit(f"{base}: a single page, no deep cursor")
    return f"{base}{sep}cursor={urllib.parse.quote(cursor)}", latencies, walked


def measure(url: str, token: str, path: str, requests: int, clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def run(n: int) -> None:
        client = Client(url, token)
        client.get(path)  # warm the connection (and this worker's caches); not counted
        mine = [client.get(path)[0] for _ in range(n)]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in per_client]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(latencies) != requests:
        raise SystemExit(f"{path}: {len(latencies)} of {requests} answered")
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--setup", required=True, help="JSON from bench/api_bench_setup.py")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--deep-pages", type=int, default=500)
    parser.add_argument("--principals", default="technician,superuser")
    parser.add_argument("--only", default="", help="comma-separated case names to run (default: all)")
    parser.add_argument("--json", help="write the figures (and the case URLs) here")
    parser.add_argument("--explain-dir", help="unused here; kept for symmetry with api_bench.sh")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.clients <= 64:
        raise SystemExit("--requests 1..100000, --clients 1..64")
    setup = json.loads(Path(args.setup).read_text())
    only = set(filter(None, args.only.split(",")))
    fragment = urllib.parse.quote(setup["searchFragment"])
    serial = urllib.parse.quote(setup["searchSerial"])
    results: dict = {"cases": {}, "requests": args.requests, "clients": args.clients}

    print(f"{'principal':<11} {'case':<34} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  target")
    for principal in args.principals.split(","):
        token = setup["tokens"][principal]
        walker = Client(args.url, token)
        cases: list[tuple[str, str, str]] = [
            ("list first page", "/api/v1/devices?limit=100", "list"),
            ("list status+os first page", "/api/v1/devices?limit=100&status=online&osType=windows", "list"),
            ("list search hostname fragment", f"/api/v1/devices?limit=100&search={fragment}", "list"),
            ("list search exact serial", f"/api/v1/devices?limit=100&search={serial}", "list"),
            ("list -lastSeenAt first page", "/api/v1/devices?limit=100&ordering=-lastSeenAt", "list"),
        ]
        deep = [
            ("list deep page", "/api/v1/devices?limit=100"),
            ("list status+os deep page", "/api/v1/devices?limit=100&status=online&osType=windows"),
            ("list -lastSeenAt deep page", "/api/v1/devices?limit=100&ordering=-lastSeenAt"),
        ]
        for name, base in deep:
            if only and name not in only:
                continue
            path, walk_latencies, walked = walk(walker, base, args.deep_pages)
            cases.append((f"{name} ({walked + 1})", path, "list"))
            row = summary(walk_latencies)
            results["cases"][f"{principal}: walk to {name}"] = {**row, "path": base}
            print(
                f"{principal:<11} {'walk: ' + name:<34} {row['n']:>5} {row['p50']:>7} {row['p95']:>7} "
                f"{row['p99']:>7} {row['max']:>7}  (walk, page 1..{walked + 1})"
            )
        cases += [
            ("telemetry 24h (auto bucket)", f"/api/v1/devices/{setup['telemetryDevice']}/telemetry", "telemetry"),
            ("summary", "/api/v1/devices/summary", None),
        ]
        for name, path, target_kind in cases:
            if only and name.split(" (")[0] not in only:
                continue
            row = summary(measure(args.url, token, path, args.requests, args.clients))
            target = TARGETS_MS.get(target_kind)
            verdict = "" if target is None else f"p95 ≤ {target:g}: {'met' if row['p95'] <= target else 'MISSED'}"
            results["cases"][f"{principal}: {name}"] = {**row, "path": path, "targetP95": target}
            print(
                f"{principal:<11} {name:<34} {row['n']:>5} {row['p50']:>7} {row['p95']:>7} {row['p99']:>7} "
                f"{row['max']:>7}  {verdict}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
