"""A fleet simulator and load generator for the agent API: ``python bench/sim.py --help``.

It enrolls N agents through the real ``POST /api/v1/agents/enroll``, then drives heartbeats with realistic metrics
at a fixed rate (an open loop: request k of the run is due at ``k / rate`` seconds, so a slow server shows up as
latency instead of silently lowering the offered load), answers every command a heartbeat hands out with a
result, and uploads software inventories. It prints throughput and p50/p95/p99 latency per endpoint, and errors.

It needs nothing but the standard library: raw HTTP/1.1 over keep-alive connections on one asyncio loop, because
it shares the machine's cores with the server it measures (no Django, no HTTP library, no JSON parsing of
answers unless they carry commands). It only ever connects to 127.0.0.1 and is bounded in time and requests.

    python bench/sim.py --key "$KEY" --agents 2000 --rate 2000 --seconds 60

Enrolled agents are kept in ``--state`` (JSON) so later runs reuse them instead of enrolling again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HOST = "127.0.0.1"
MAX_SECONDS_PER_PHASE = 600
HARD_MAX_REQUESTS = 3_000_000
API = "/api/v1/agents"


# ---- a minimal HTTP/1.1 client ----


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._parse()

    def _parse(self) -> None:
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        start = head_end + 4
        if chunked:
            body, position = bytearray(), start
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return
                size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
                if size == 0:
                    if len(buffer) < line_end + 4:
                        return
                    end = line_end + 4
                    break
                if len(buffer) < line_end + 2 + size + 2:
                    return
                body += buffer[line_end + 2 : line_end + 2 + size]
                position = line_end + 2 + size + 2
            body = bytes(body)
        else:
            if len(buffer) < start + length:
                return
            body, end = bytes(buffer[start : start + length]), start + length
        del buffer[:end]
        self.waiter.set_result((status, body, close))

    async def request(self, data: bytes, timeout: float) -> tuple[int, bytes, bool]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        finally:
            self.waiter = None


class Client:
    """A connection that reconnects after the server closes it."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.connection: HttpConnection | None = None

    async def send(self, method: str, path: str, body: bytes | None = None, token: str | None = None):
        if self.connection is None or self.connection.closed:
            loop = asyncio.get_running_loop()
            _, self.connection = await loop.create_connection(HttpConnection, HOST, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head.append("Content-Type: application/json")
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        try:
            status, answer, close = await self.connection.request(data, self.timeout)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()
        self.connection = None


def simulated_result(agent: SimAgent, command: dict) -> dict:
    """What a simulated agent reports for a command: a script "runs" (nothing is executed) and prints the
    parameters it received as environment variables, so a demo shows them arriving; other commands just succeed."""
    stdout = f"ran {command['type']}\n"
    if command["type"] == "script":
        payload = command.get("payload") or {}
        env = payload.get("env") or {}
        lines = [f"simulated {payload.get('language', '?')} script on {agent.hostname}"]
        lines += [f"{name}={value}" for name, value in sorted(env.items())]
        stdout = "\n".join(lines) + "\n"
    return {
        "status": "completed",
        "exitCode": 0,
        "stdout": stdout,
        "stderr": "",
        "durationMs": random.randrange(50, 3000),  # noqa: S311
        "error": None,
    }


# ---- what is measured ----


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    durations: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    samples_acknowledged: int = 0

    def record(self, endpoint: str, seconds: float, status: int | str, ok: bool) -> None:
        self.requests += 1
        self.latencies[endpoint].append(seconds)
        if not ok:
            self.errors[endpoint][status] += 1

    def summary(self) -> list[dict]:
        rows = []
        for endpoint, values in self.latencies.items():
            ordered = sorted(values)
            duration = self.durations.get(endpoint.split(" ")[0]) or self.durations.get(endpoint)

            def pct(p: float, ordered=ordered) -> float:
                return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

            rows.append(
                {
                    "endpoint": endpoint,
                    "requests": len(values),
                    "errors": sum(self.errors[endpoint].values()),
                    "errorsByStatus": {str(k): v for k, v in self.errors[endpoint].items()},
                    "perSecond": round(len(values) / duration, 1) if duration else None,
                    "p50Ms": round(pct(0.50), 1),
                    "p95Ms": round(pct(0.95), 1),
                    "p99Ms": round(pct(0.99), 1),
                    "maxMs": round(ordered[-1] * 1000, 1),
                }
            )
        return rows


def print_summary(stats: Stats, out=sys.stdout) -> None:
    header = f"{'endpoint':<28}{'requests':>10}{'errors':>8}{'req/s':>10}"
    header += "".join(f"{name:>9}" for name in ("p50 ms", "p95 ms", "p99 ms", "max ms"))
    print(header, file=out)
    for row in stats.summary():
        print(
            f"{row['endpoint']:<28}{row['requests']:>10}{row['errors']:>8}{row['perSecond'] or 0:>10.1f}"
            f"{row['p50Ms']:>9.1f}{row['p95Ms']:>9.1f}{row['p99Ms']:>9.1f}{row['maxMs']:>9.1f}",
            file=out,
        )
        if row["errorsByStatus"]:
            print(f"{'':<28}errors by status: {row['errorsByStatus']}", file=out)


# ---- simulated agents ----

PROGRAMS = [
    ("Google Chrome", "Google LLC"),
    ("Mozilla Firefox", "Mozilla"),
    ("Microsoft Edge", "Microsoft Corporation"),
    ("7-Zip", "Igor Pavlov"),
    ("Notepad++", "Notepad++ Team"),
    ("Microsoft Office Professional Plus", "Microsoft Corporation"),
    ("Adobe Acrobat Reader", "Adobe Inc."),
    ("Zoom Workplace", "Zoom Video Communications"),
    ("Slack", "Slack Technologies"),
    ("Visual Studio Code", "Microsoft Corporation"),
    ("Python", "Python Software Foundation"),
    ("Git", "The Git Development Community"),
    ("VLC media player", "VideoLAN"),
    ("Microsoft Visual C++ Redistributable", "Microsoft Corporation"),
    (".NET Runtime", "Microsoft Corporation"),
    ("Java Runtime Environment", "Oracle Corporation"),
]


@dataclass
class SimAgent:
    agent_id: str
    token: str
    hostname: str
    rng: random.Random
    cpu: float = 10.0
    ram: float = 40.0
    disk: float = 55.0
    net_in: int = 0
    net_out: int = 0
    # Backlog timestamps of the last body, and those the server acknowledged. Two backlog heartbeats sent exactly 60 s
    # apart to the microsecond (which happens: 1,500/s over 10,000 agents sends each agent's slots exactly 60 s
    # apart, and the sleep's jitter is a few hundred microseconds) carry the same (device, timestamp) samples; the
    # server stores such a sample once, so the durability check counts each once.
    last_backlog: list[str] = field(default_factory=list)
    acknowledged_backlog: set[str] = field(default_factory=set)

    def acknowledge(self) -> int:
        """The samples a 200 for the last body made durable that no earlier 200 did: its own plus new backlog."""
        new = set(self.last_backlog) - self.acknowledged_backlog
        self.acknowledged_backlog |= new
        return 1 + len(new)

    def heartbeat(self, backlog: int = 0, backlog_offset: float = 0.0) -> bytes:
        rng = self.rng
        self.cpu = min(100.0, max(0.5, self.cpu + rng.gauss(0, 6)))
        self.ram = min(99.0, max(5.0, self.ram + rng.gauss(0, 1.5)))
        self.disk = min(99.0, self.disk + rng.random() * 0.01)
        # Bytes since the previous sample, as agents send them (docs/agent-protocol.md).
        self.net_in = rng.randrange(10_000, 2_000_000)
        self.net_out = rng.randrange(5_000, 500_000)
        body = {
            "agentVersion": "1.4.2",
            "status": "ok",
            "metrics": self._metrics(),
            "hostname": self.hostname,
            "osVersion": "10.0.22631",
            "osBuild": "22631",
            "uptime": rng.randrange(600, 3_000_000),
            "lastUser": "user",
            "pendingReboot": False,
        }
        self.last_backlog = []
        if backlog:
            now = dt.datetime.now(dt.UTC)
            self.last_backlog = [
                (now - dt.timedelta(seconds=60 * (i + 1) + backlog_offset)).isoformat() for i in range(backlog)
            ]
            body["metricsBacklog"] = [{"timestamp": ts, **self._metrics()} for ts in self.last_backlog]
        return json.dumps(body).encode()

    def _metrics(self) -> dict:
        return {
            "cpuPercent": round(self.cpu, 1),
            "ramPercent": round(self.ram, 1),
            "ramUsedMb": int(self.ram * 163.84),
            "diskPercent": round(self.disk, 1),
            "diskUsedGb": round(self.disk * 5.12, 1),
            "networkInBytes": self.net_in,
            "networkOutBytes": self.net_out,
            "processCount": self.rng.randrange(150, 320),
        }

    def software(self, items: int) -> bytes:
        rng = self.rng
        software = []
        for i in range(items):
            name, publisher = PROGRAMS[i % len(PROGRAMS)]
            software.append(
                {
                    "name": f"{name} {i // len(PROGRAMS)}" if i >= len(PROGRAMS) else name,
                    "version": f"{rng.randrange(1, 130)}.{rng.randrange(0, 10)}.{rng.randrange(0, 9999)}",
                    "publisher": publisher,
                    "installDate": f"202{rng.randrange(0, 6)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
                    "installLocation": f"C:\\Program Files\\{name}",
                }
            )
        return json.dumps({"software": software}).encode()


def enrollment_body(key: str, n: int, rng: random.Random) -> bytes:
    return json.dumps(
        {
            "enrollmentKey": key,
            "hostname": f"sim-{n:06d}",
            "osType": rng.choice(["windows", "windows", "windows", "macos", "linux"]),
            "osVersion": "10.0.22631",
            "osBuild": "22631",
            "architecture": "amd64",
            "agentVersion": "1.4.2",
            "hardwareInfo": {
                "cpuModel": "Intel(R) Core(TM) i7-1265U",
                "cpuCores": 10,
                "cpuThreads": 12,
                "ramTotalMb": 16384,
                "diskTotalGb": 512,
                "gpuModel": "Intel Iris Xe",
                "serialNumber": f"SIM{n:08d}",
                "manufacturer": "Dell Inc.",
                "model": "Latitude 5440",
                "biosVersion": "1.14.0",
            },
            "networkInfo": [
                {
                    "name": "Ethernet",
                    "mac": f"00:1a:2b:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
                    "ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                    "isPrimary": True,
                },
                {"name": "Wi-Fi", "mac": "", "ip": "", "isPrimary": False},
            ],
        }
    ).encode()


# ---- phases ----


class Budget:
    """The run's bound on requests."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def enroll_phase(args, stats: Stats, budget: Budget, have: int) -> list[dict]:
    rng = random.Random(args.seed)  # noqa: S311 - simulated machines, not secrets
    todo = list(range(have, args.agents))
    enrolled: list[dict] = []
    deadline = time.monotonic() + args.max_phase_seconds

    async def worker():
        client = Client(args.port, args.timeout)
        while todo and time.monotonic() < deadline and budget.take():
            n = todo.pop()
            body = enrollment_body(args.key, n, rng)
            started = time.perf_counter()
            try:
                status, answer = await client.send("POST", f"{API}/enroll", body)
            except (OSError, TimeoutError, ConnectionError) as exc:
                stats.record("enroll", time.perf_counter() - started, type(exc).__name__, False)
                continue
            stats.record("enroll", time.perf_counter() - started, status, status == 201)
            if status == 201:
                data = json.loads(answer)
                enrolled.append(
                    {"agentId": data["agentId"], "authToken": data["authToken"], "hostname": f"sim-{n:06d}"}
                )
        client.close()

    if todo:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.enroll_concurrency)))
        stats.durations["enroll"] = time.perf_counter() - started
    return enrolled


async def heartbeat_phase(args, agents: list[SimAgent], stats: Stats, budget: Budget) -> None:
    loop = asyncio.get_running_loop()
    workers = args.connections
    rate = args.rate
    started = loop.time() + 0.05
    deadline = started + args.seconds
    counter = {"late": 0, "commands": 0, "samples": 0}
    backlog_every = round(100 / args.backlog_percent) if args.backlog_percent else 0
    # A backlog's samples are a minute apart, older by half an agent's heartbeat period: at a rate that makes the
    # period divide a minute (1,500/s over 10,000 agents: 6.67 s), samples exactly a minute old would land on the
    # agent's earlier heartbeats, and now and then on the very microsecond the server stamped one of them with.
    backlog_offset = len(agents) / args.rate / 2 if args.rate else 0.0
    # --noop: the same requests with a malformed token, answered 401 before any database access: the ceiling of
    # the HTTP stack itself, against which the heartbeat's own cost is judged (a ratio survives a slower day).
    endpoint, expected = ("heartbeat (no-op 401)", 401) if args.noop else ("heartbeat", 200)

    async def worker(index: int):
        client = Client(args.port, args.timeout)
        k = 0
        while True:
            slot = k * workers + index
            due = started + slot / rate if rate else loop.time()
            if due >= deadline or not budget.take():
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.010:
                counter["late"] += 1
            agent = agents[slot % len(agents)]
            backlog = args.backlog_size if backlog_every and slot % backlog_every == 0 else 0
            body = agent.heartbeat(backlog, backlog_offset)
            sent = loop.time()
            try:
                token = "rmm_malformed" if args.noop else agent.token
                status, answer = await client.send("POST", f"{API}/{agent.agent_id}/heartbeat", body, token)
            except (OSError, TimeoutError, ConnectionError) as exc:
                stats.record(endpoint, loop.time() - due, type(exc).__name__, False)
                k += 1
                continue
            finished = loop.time()
            # From when it was due (not when it was sent): a client that fell behind counts as latency.
            stats.record(endpoint, finished - due, status, status == expected)
            if status == 200:
                counter["samples"] += agent.acknowledge()  # a 200 means these are durable
            stats.latencies[f"{endpoint} (service time)"].append(finished - sent)
            if status == 200 and b'"commands": []' not in answer:
                for command in json.loads(answer)["commands"]:
                    if not budget.take():
                        break
                    counter["commands"] += 1
                    result = json.dumps(simulated_result(agent, command)).encode()
                    t0 = loop.time()
                    try:
                        status, _ = await client.send(
                            "POST", f"{API}/{agent.agent_id}/commands/{command['id']}/result", result, agent.token
                        )
                    except (OSError, TimeoutError, ConnectionError) as exc:
                        status = type(exc).__name__
                    stats.record("command result", loop.time() - t0, status, status == 200)
            k += 1
        client.close()

    async def progress():
        seen = 0
        while loop.time() < deadline:
            await asyncio.sleep(args.progress)
            window = stats.latencies[endpoint][seen:]
            seen += len(window)
            if window:
                window.sort()
                p50, p99 = window[len(window) // 2] * 1000, window[int(len(window) * 0.99)] * 1000
                print(
                    f"  t={loop.time() - started:5.1f}s {dt.datetime.now(dt.UTC):%H:%M:%S} "
                    f"{len(window) / args.progress:7.1f}/s "
                    f"p50 {p50:6.1f} ms p99 {p99:7.1f} ms",
                    file=sys.stderr,
                )

    reporter = asyncio.ensure_future(progress()) if args.progress else None
    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = loop.time() - started
    if reporter is not None:
        reporter.cancel()
    stats.durations["heartbeat"] = elapsed
    stats.durations["command result"] = elapsed
    stats.samples_acknowledged = counter["samples"]
    print(
        f"heartbeat phase: {elapsed:.1f} s, {counter['late']} sends more than 10 ms behind schedule, "
        f"{counter['commands']} commands received and answered, "
        f"{counter['samples']} telemetry samples acknowledged with a 200",
        file=sys.stderr,
    )


async def inventory_phase(args, agents: list[SimAgent], stats: Stats, budget: Budget) -> None:
    bodies = [agent.software(args.software_items) for agent in agents[: min(len(agents), 50)]]
    count = {"n": 0}
    deadline = time.monotonic() + min(args.inventory_seconds, args.max_phase_seconds)

    async def worker():
        client = Client(args.port, args.timeout)
        while count["n"] < args.inventory_uploads and time.monotonic() < deadline and budget.take():
            n = count["n"]
            count["n"] += 1
            agent = agents[n % len(agents)]
            started = time.perf_counter()
            try:
                status, _ = await client.send(
                    "PUT", f"{API}/{agent.agent_id}/software", bodies[n % len(bodies)], agent.token
                )
            except (OSError, TimeoutError, ConnectionError) as exc:
                status = type(exc).__name__
            stats.record(
                f"software ({args.software_items} items)", time.perf_counter() - started, status, status == 204
            )
        client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.inventory_concurrency)))
    stats.durations[f"software ({args.software_items} items)"] = time.perf_counter() - started


async def main_async(args) -> Stats:
    stats = Stats()
    budget = Budget(args.max_requests)
    saved = []
    if args.state and os.path.exists(args.state):
        with open(args.state) as handle:
            saved = json.load(handle)
    saved = saved[: args.agents]
    if len(saved) < args.agents:
        if not args.key:
            raise SystemExit(f"{len(saved)} agents in {args.state or 'no state file'}; give --key to enroll the rest.")
        saved += await enroll_phase(args, stats, budget, len(saved))
        if args.state:
            with open(args.state, "w") as handle:
                json.dump(saved, handle)
    if not saved:
        raise SystemExit("no agents enrolled")
    agents = [
        SimAgent(a["agentId"], a["authToken"], a["hostname"], random.Random(f"{args.seed}-{a['agentId']}"))  # noqa: S311
        for a in saved
    ]
    if args.seconds > 0:
        await heartbeat_phase(args, agents, stats, budget)
    if args.inventory_uploads > 0:
        await inventory_phase(args, agents, stats, budget)
    return stats


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/sim.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=f"http://{HOST}:8000", help="The server; its host must be 127.0.0.1.")
    parser.add_argument("--key", help="An enrollment key (manage.py create_enrollment_key), to enroll agents.")
    parser.add_argument("--agents", type=int, default=1000, help="Simulated agents (enrolled if not in --state).")
    parser.add_argument("--state", help="JSON file keeping enrolled agents between runs.")
    parser.add_argument("--enroll-concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60, help="Length of the heartbeat phase (0 skips it).")
    parser.add_argument(
        "--rate", type=float, default=2000, help="Heartbeats per second offered (0: as fast as possible)."
    )
    parser.add_argument(
        "--connections", type=int, default=128, help="Concurrent keep-alive connections for heartbeats."
    )
    parser.add_argument(
        "--noop", action="store_true", help="Heartbeats with a malformed token (401 before any database access)."
    )
    parser.add_argument("--backlog-percent", type=float, default=0, help="Share of heartbeats carrying a backlog.")
    parser.add_argument("--backlog-size", type=int, default=10, help="Samples in such a backlog.")
    parser.add_argument("--inventory-uploads", type=int, default=0, help="Software uploads after the heartbeats.")
    parser.add_argument("--inventory-seconds", type=float, default=60, help="Bound on the inventory phase.")
    parser.add_argument("--inventory-concurrency", type=int, default=4)
    parser.add_argument("--software-items", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=30, help="Seconds before a request counts as failed.")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="Bound on the requests of the run.")
    parser.add_argument("--max-phase-seconds", type=float, default=MAX_SECONDS_PER_PHASE)
    parser.add_argument("--progress", type=float, default=0, help="Print heartbeat figures every this many seconds.")
    parser.add_argument("--seed", default="rmm-sim")
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname != HOST:
        parser.error(f"--url must be http://{HOST}:PORT; the simulator only loads the local machine.")
    args.port = url.port or 80
    if not 0 < args.max_requests <= HARD_MAX_REQUESTS:
        parser.error(f"--max-requests must be between 1 and {HARD_MAX_REQUESTS:,}.")
    if not 0 <= args.seconds <= MAX_SECONDS_PER_PHASE or not 0 < args.max_phase_seconds <= MAX_SECONDS_PER_PHASE:
        parser.error(f"a phase lasts at most {MAX_SECONDS_PER_PHASE} seconds.")
    if args.agents < 1 or args.connections < 1 or args.rate < 0:
        parser.error("--agents and --connections must be at least 1, --rate at least 0.")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    stats = asyncio.run(main_async(args))
    print_summary(stats)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "arguments": {k: v for k, v in vars(args).items() if k != "key"},
                    "results": stats.summary(),
                    "telemetrySamplesAcknowledged": stats.samples_acknowledged,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
