"""The alerts' periodic jobs (run by the scheduler, jobs/; ``manage.py jobs`` lists them).

The registry discovers ``<app>/periodic.py`` only, so the outbox's jobs, kept in ``alerts/periodic_notify.py``, are
imported at the end.
"""

from __future__ import annotations

from django.conf import settings

from alerts.services.evaluate import evaluate_all
from jobs.registry import register


@register(
    "evaluate_alerts",
    every=lambda: settings.ALERT_EVALUATION_SECONDS,
    lane="alerts",
    description="Every enabled alert rule against the devices in its scope: alerts open and resolve, site outages.",
)
def evaluate_alerts() -> str:
    return str(evaluate_all(pace=True))


from alerts import periodic_notify  # noqa: F401,E402
