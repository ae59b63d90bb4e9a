"""The scripts' periodic job (run by the scheduler, jobs/; ``manage.py jobs`` lists it)."""

from __future__ import annotations

from django.conf import settings

from jobs.registry import register
from scripts.services.schedules import fire_due_schedules


@register(
    "fire_script_schedules",
    every=lambda: settings.SCRIPT_SCHEDULE_SECONDS,
    description="Every enabled script schedule whose slot has come runs its script once (missed slots: once).",
)
def fire_script_schedules() -> str:
    return fire_due_schedules()
