"""Queue commands for the benchmark's simulated agents while it runs, through the service technicians will use
(``devices.services.commands.queue_command``), so the simulator can measure command round trips.

    .venv/bin/python bench/queue_commands.py --per-second 20 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django

django.setup()

from devices.models import Device  # noqa: E402
from devices.services.commands import queue_command  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--per-second", type=float, default=20)
parser.add_argument("--seconds", type=float, default=60)
args = parser.parse_args()
if not 0 < args.seconds <= 600 or not 0 < args.per_second <= 1000:
    parser.error("--seconds must be in (0, 600] and --per-second in (0, 1000].")

devices = list(Device.objects.filter(org__slug="bench", org__partner__slug="bench").only("id", "org_id", "status"))
if not devices:
    sys.exit("no benchmark devices; run the simulator's enrollment first")
rng = random.Random(7)  # noqa: S311 - picks devices, not secrets
kinds = [
    ("script", {"language": "powershell", "content": "Get-Service | Select -First 3", "timeoutSeconds": 60}),
    ("refresh_inventory", {}),
    ("reboot", {}),
]
queued, started = 0, time.monotonic()
while (elapsed := time.monotonic() - started) < args.seconds:
    due = int(elapsed * args.per_second)
    while queued < due:
        kind, payload = rng.choice(kinds)
        queue_command(device=rng.choice(devices), type=kind, payload=payload, expires_in_seconds=600)
        queued += 1
    time.sleep(0.05)
print(f"queued {queued} commands in {time.monotonic() - started:.0f} s")
