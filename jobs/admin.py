"""The periodic jobs in the admin, for operators: when each ran, how long it took, how it went, and its runs."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from jobs.models import JobRun, ScheduledJob
from jobs.scheduler import LONGEST_NAP_SECONDS, run_soon
from rmm.admin import ReadOnlyAdminMixin, SuperuserOnlyAdminMixin


@admin.register(ScheduledJob)
class ScheduledJobAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """One row per periodic job (jobs/): its cadence, latest run and next tick; "run now" asks for a run at once."""

    list_display = (
        "name",
        "interval_seconds",
        "last_started_at",
        "last_duration_ms",
        "last_outcome",
        "consecutive_failures",
        "next_run_at",
        "running_since",
        "last_report",
    )
    list_filter = ("last_outcome",)
    fields = (
        "name",
        "interval_seconds",
        "next_run_at",
        "running_since",
        "runner",
        "last_started_at",
        "last_finished_at",
        "last_duration_ms",
        "last_outcome",
        "last_report",
        "last_succeeded_at",
        "consecutive_failures",
        "runs",
        "failures",
    )
    readonly_fields = fields
    actions = ["run_now"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        runs = reverse("admin:jobs_jobrun_changelist") + "?" + urlencode({"job__name__exact": object_id})
        extra_context = {**(extra_context or {}), "subtitle": format_html('<a href="{}">Its runs</a>', runs)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Run the selected jobs now")
    def run_now(self, request, queryset):
        count = run_soon(names=queryset.values_list("name", flat=True))
        self.message_user(
            request,
            f"{count} jobs are due now: the scheduler runs them within {LONGEST_NAP_SECONDS:.0f} seconds.",
            messages.SUCCESS,
        )


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Every run of every job, kept a week (``jobs.periodic.prune_job_runs``)."""

    list_display = ("job", "started_at", "duration_ms", "outcome", "runner", "report")
    list_filter = ("outcome", "job")
    ordering = ("-started_at",)
    fields = ("job", "scheduled_for", "started_at", "finished_at", "duration_ms", "outcome", "runner", "report")
    readonly_fields = fields
