"""Make the benchmark's tenant (partner "bench", organization "bench", site "HQ") if missing, then print a fresh
enrollment key on the last line. Run with the server's environment (DATABASE_URL, SECRET_KEY):

    .venv/bin/python bench/setup_tenant.py | tail -n 1
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from orgs.models import Organization, Partner, Site  # noqa: E402

partner, _ = Partner.objects.get_or_create(slug="bench", defaults={"name": "Benchmark partner"})
org, _ = Organization.objects.get_or_create(partner=partner, slug="bench", defaults={"name": "Benchmark org"})
Site.objects.get_or_create(org=org, name="HQ")
out = io.StringIO()
call_command("create_enrollment_key", org="bench", partner="bench", site="HQ", name="benchmark", stdout=out)
print(out.getvalue().rstrip().splitlines()[-1])
