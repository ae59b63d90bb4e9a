"""What the scheduler knows about each periodic job (``ScheduledJob``) and the record of its runs (``JobRun``).

Both are written by the scheduler alone (``jobs.scheduler``); people read them with ``manage.py jobs`` and, as
operators, in the admin.
"""

from __future__ import annotations

from django.db import models

from rmm.model_base import choices_check


class Outcome(models.TextChoices):
    RUNNING = "running", "running"
    OK = "ok", "ok"
    FAILED = "failed", "failed"
    INTERRUPTED = "interrupted", "interrupted (its process died)"


class ScheduledJob(models.Model):
    """One row per job of the registry (``jobs.registry``): when it is next due and how its last run went.

    ``next_run_at`` is the tick: a runner claims a run by moving it forward, so each tick is run once however many
    servers share the database. ``running_since`` is set while a run is in progress; a runner that finds it set
    while holding the job's lock knows the process that set it died.
    """

    name = models.CharField(primary_key=True, max_length=100)
    interval_seconds = models.PositiveIntegerField(
        "interval (seconds)", help_text="The cadence the last runner used (settings may differ)."
    )
    next_run_at = models.DateTimeField()
    running_since = models.DateTimeField(null=True, blank=True)
    runner = models.CharField(max_length=200, blank=True, help_text="host:pid of the process of the latest run.")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField("last duration (ms)", null=True, blank=True)
    last_outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    last_report = models.TextField(blank=True, help_text="The run's one-line report, or its error.")
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    runs = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "scheduled_jobs"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(  # an outcome, or '' before the first run
                condition=models.Q(last_outcome__in=[*Outcome.values, ""]), name="jobs_scheduledjob_last_outcome_valid"
            )
        ]
        verbose_name = "periodic job"

    def __str__(self) -> str:
        return self.name


class JobRun(models.Model):
    """One run of a job, kept a week (``jobs.periodic.prune_job_runs``). ``(job, scheduled_for)`` is unique:
    the database itself refuses a second run of the same tick."""

    id = models.BigAutoField("ID", primary_key=True)
    job = models.ForeignKey(ScheduledJob, on_delete=models.CASCADE, related_name="run_log", db_column="job_name")
    scheduled_for = models.DateTimeField(help_text="The tick this run was for (the job's next_run_at it claimed).")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField("duration (ms)", null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    report = models.TextField(blank=True)
    runner = models.CharField(max_length=200)

    class Meta:
        db_table = "job_runs"
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "scheduled_for"], name="job_runs_one_run_per_tick"),
            choices_check("outcome", Outcome),
        ]
        indexes = [models.Index(fields=["job", "-started_at"], name="job_runs_job_started")]

    def __str__(self) -> str:
        return f"{self.job_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"
