"""``manage.py check`` (and runserver, migrate …) refuse a ``SCHEDULER_INTERVALS`` that names no job."""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def scheduler_intervals_name_jobs(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from jobs.registry import all_jobs

    try:
        all_jobs()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="jobs.E001")]
    return []
