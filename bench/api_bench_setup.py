"""Tokens and sample values for bench/api_bench.py, as JSON on stdout. Run with the server's environment:

    .venv/bin/python bench/api_bench_setup.py > var/bench/api-bench-setup.json

Issues a one-day API token for the demo technician (tech@example.com) and for the demo superuser, and picks a
device with telemetry, a hostname fragment and an exact serial number to search for.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from accounts.auth import issue_api_token  # noqa: E402
from devices.models import Device, DeviceHardware, DeviceTelemetry  # noqa: E402

User = get_user_model()
tokens = {}
for who, user in (
    ("technician", User.objects.get(email="tech@example.com")),
    ("superuser", User.objects.filter(is_superuser=True).order_by("date_joined").first()),
):
    tokens[who], _ = issue_api_token(user=user, name="api-bench", lifetime=dt.timedelta(days=1))

with_telemetry = DeviceTelemetry.objects.order_by("-ts").values_list("device_id", flat=True).first()
# A device late in the hostname order: its hostname minus the last character is a fragment that matches a few.
sample = Device.objects.order_by("-hostname").values("hostname").first()
serial = DeviceHardware.objects.exclude(serial_number="").order_by("device_id").values_list("serial_number", flat=True)
print(
    json.dumps(
        {
            "tokens": tokens,
            "telemetryDevice": str(with_telemetry),
            "searchFragment": sample["hostname"][1:-1],
            "searchSerial": serial.first(),
            "database": os.environ["DATABASE_URL"],
        }
    )
)
