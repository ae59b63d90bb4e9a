"""The real agent's own cost on this machine (issue 17): CPU share and resident memory of ``rmm-agent run`` over a
window at the server's heartbeat interval, and the time of a full inventory collection.

    .venv/bin/python bench/agent_cost.py --state-dir DIR [--seconds 600] [--json OUT]   # DIR: an enrolled agent's
    .venv/bin/python bench/agent_cost.py --inventory-runs 5                              # collection times only

bench/agent_bench.sh makes the server, the enrollment and the state directory, then runs this. The agent's CPU is
its own process's user + system time (the scripts it runs are children and are not its cost; none run here),
sampled every few seconds from /proc through psutil; resident memory is RSS (and USS, the memory only it holds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

AGENT = Path(sys.executable).with_name("rmm-agent")

COLLECT = """
import json, time
t0 = time.perf_counter()
from rmm_agent.collectors import collect_inventory
from rmm_agent.config import LocalConfig
t1 = time.perf_counter()
bodies = collect_inventory(LocalConfig())
t2 = time.perf_counter()
again = collect_inventory(LocalConfig())
t3 = time.perf_counter()
sizes = {kind: len(json.dumps(body)) for kind, body in bodies.items()}
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2, "bytes": sizes}))
"""


def inventory_times(runs: int) -> dict:
    """Each run is a fresh process (a cold collection, as at the agent's start) followed by a warm one."""
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLLECT], capture_output=True, text=True, check=True)  # noqa: S603
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = [r["first"] for r in results]
    second = [r["second"] for r in results]
    return {
        "runs": runs,
        "cold_median_s": round(statistics.median(first), 3),
        "cold_max_s": round(max(first), 3),
        "warm_median_s": round(statistics.median(second), 3),
        "import_median_s": round(statistics.median(r["import"] for r in results), 3),
        "body_bytes": results[-1]["bytes"],
    }


def agent_cost(state_dir: str, seconds: float, every: float) -> dict:
    """Start ``rmm-agent run``, sample it every ``every`` seconds for ``seconds``, stop it; the figures."""
    process = subprocess.Popen(  # noqa: S603 - the project's own agent
        [str(AGENT), "--state-dir", state_dir, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    agent = psutil.Process(process.pid)
    started = time.monotonic()
    samples = []
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(every, max(0.0, seconds - elapsed)))
            if process.poll() is not None:
                tail = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
                raise SystemExit(f"the agent exited with {process.returncode}: {tail}")
            with agent.oneshot():
                cpu = agent.cpu_times()
                memory = agent.memory_full_info()
            samples.append(
                {"t": time.monotonic() - started, "cpu": cpu.user + cpu.system, "rss": memory.rss, "uss": memory.uss}
            )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    # Steady state: from the first sample after the first minute (start-up imports and the first inventory upload
    # are a one-off cost, reported separately).
    steady = [s for s in samples if s["t"] >= 60] or samples
    whole = samples[-1]
    return {
        "seconds": round(whole["t"], 1),
        "cpu_seconds": round(whole["cpu"], 3),
        "cpu_percent_of_one_core": round(100 * whole["cpu"] / whole["t"], 3),
        "steady_cpu_percent_of_one_core": round(
            100 * (steady[-1]["cpu"] - steady[0]["cpu"]) / max(1e-9, steady[-1]["t"] - steady[0]["t"]), 3
        ),
        "startup_cpu_seconds": round(steady[0]["cpu"], 3),
        "rss_max_mb": round(max(s["rss"] for s in samples) / 2**20, 1),
        "rss_last_mb": round(whole["rss"] / 2**20, 1),
        "uss_max_mb": round(max(s["uss"] for s in samples) / 2**20, 1),
        "agent_stderr_tail": process.stderr.read().decode(errors="replace")[-1500:] if process.stderr else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", help="an enrolled agent's state directory (measures `rmm-agent run`)")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--inventory-runs", type=int, default=5)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    figures: dict = {"inventory": inventory_times(args.inventory_runs)}
    print(json.dumps(figures["inventory"], indent=2), flush=True)
    if args.state_dir:
        figures["agent"] = agent_cost(args.state_dir, args.seconds, args.every)
        print(json.dumps(figures["agent"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
