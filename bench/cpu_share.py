"""Where the CPU went during a benchmark: CPU seconds used by the server, PostgreSQL, the simulator and everything
else, sampled from /proc (via psutil) over ``--seconds``.

    .venv/bin/python bench/cpu_share.py --seconds 20 &
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import psutil


def classify(process: psutil.Process) -> str:
    try:
        cmdline = " ".join(process.cmdline())
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if "gunicorn" in cmdline:
        return "gunicorn"
    if "bench/sim.py" in cmdline:
        return "simulator"
    if name.startswith("postgres") or "postgres:" in cmdline:
        # Only the cluster the benchmark uses (a second cluster on the machine, e.g. the embedded one of a test
        # run, is "other"): set BENCH_PG_MARK to a string of its process titles, e.g. "15/main".
        return "postgresql" if os.environ.get("BENCH_PG_MARK", "") in cmdline else "other"
    return "other"


def snapshot() -> dict[int, tuple[str, float, str]]:
    seen = {}
    for process in psutil.process_iter():
        try:
            times = process.cpu_times()
            label = " ".join(process.cmdline())[:80] or process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seen[process.pid] = (classify(process), times.user + times.system, label)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--delay", type=float, default=0, help="Wait this long before sampling (warm-up).")
    args = parser.parse_args()
    time.sleep(args.delay)
    before, started, total_before = snapshot(), time.monotonic(), psutil.cpu_times()
    time.sleep(args.seconds)
    after, elapsed, total_after = snapshot(), time.monotonic() - started, psutil.cpu_times()
    used: Counter = Counter()
    others: Counter = Counter()
    for pid, (kind, cpu, label) in after.items():
        spent = cpu - before.get(pid, (kind, 0.0, label))[1]
        used[kind] += spent
        if kind == "other":
            others[label] += spent
    busy = sum(getattr(total_after, f) - getattr(total_before, f) for f in ("user", "system", "irq", "softirq"))
    parts = ", ".join(
        f"{f} {(getattr(total_after, f) - getattr(total_before, f)) / elapsed:.2f}"
        for f in ("user", "system", "softirq", "steal")
        if hasattr(total_after, f)
    )
    print(f"over {elapsed:.1f} s ({psutil.cpu_count()} cores): machine busy {busy / elapsed:.2f} cores ({parts})")
    for kind, seconds in used.most_common():
        print(f"  {kind:<11} {seconds / elapsed:5.2f} cores")
    for label, seconds in others.most_common(3):
        if seconds / elapsed >= 0.05:
            print(f"    other: {seconds / elapsed:5.2f} cores  {label}")


if __name__ == "__main__":
    main()
