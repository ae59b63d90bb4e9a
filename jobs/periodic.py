"""The scheduler's own periodic job: its record of runs does not grow for ever."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from jobs.models import JobRun
from jobs.registry import register

JOB_RUNS_KEPT_DAYS = 7


@register("prune_job_runs", every=3600, description=f"Forget the runs of jobs older than {JOB_RUNS_KEPT_DAYS} days.")
def prune_job_runs() -> str:
    cutoff = timezone.now() - dt.timedelta(days=JOB_RUNS_KEPT_DAYS)
    deleted, _ = JobRun.objects.filter(started_at__lt=cutoff).exclude(outcome="running").delete()
    return f"job runs forgotten: {deleted}"
