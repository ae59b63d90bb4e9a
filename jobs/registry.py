"""The periodic jobs: each app declares its own in ``<app>/periodic.py`` with :func:`register`; the scheduler runs them.

A job is a plain function that does one round of work and returns a one-line report ("offline: 3"). It must be
safe to run at any moment and idempotent per round: the scheduler runs it once per tick across every server on the
database, but after a crash a round may be run again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: Callable[[], str]
    every: Callable[[], int] = field(repr=False)  # its default cadence in seconds (read when needed: settings)
    description: str
    lane: str = ""  # jobs of one lane never run at the same time; the default is a lane of the job's own

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"A job's name is snake_case, at most 100 characters: {self.name!r}")
        if not self.lane:
            object.__setattr__(self, "lane", self.name)

    @property
    def interval_seconds(self) -> int:
        """Its cadence: ``SCHEDULER_INTERVALS`` when that names the job, else its own default."""
        return settings.SCHEDULER_INTERVALS.get(self.name) or self.every()


_jobs: dict[str, PeriodicJob] = {}


def register(
    name: str,
    *,
    every: int | Callable[[], int],
    description: str,
    lane: str = "",
) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Decorate a job's function: ``@register("mark_offline", every=60, description="…")``. ``every`` may be a
    function of the settings (``lambda: settings.GROUP_TIME_SWEEP_SECONDS``)."""

    def decorate(run: Callable[[], str]) -> Callable[[], str]:
        cadence = every if callable(every) else (lambda: every)
        job = PeriodicJob(name=name, run=run, every=cadence, description=description, lane=lane)
        if name in _jobs and _jobs[name].run is not run:
            raise ImproperlyConfigured(f"Two periodic jobs are named {name!r}.")
        _jobs[name] = job
        return run

    return decorate


def all_jobs() -> list[PeriodicJob]:
    """Every registered job, by name (each installed app's ``periodic`` module is imported first)."""
    autodiscover_modules("periodic")
    unknown = sorted(set(settings.SCHEDULER_INTERVALS) - set(_jobs))
    if unknown:
        raise ImproperlyConfigured(
            f"SCHEDULER_INTERVALS names no such job: {', '.join(unknown)} (the jobs: {', '.join(sorted(_jobs))})."
        )
    return [_jobs[name] for name in sorted(_jobs)]
