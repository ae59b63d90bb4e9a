"""The accounts' periodic jobs (run by the scheduler, jobs/)."""

from __future__ import annotations

from accounts import throttle
from jobs.registry import register


@register("purge_throttles", every=300, description="Forget the throttles' failures older than their window.")
def purge_throttle_rows() -> str:
    return f"throttle rows purged: {throttle.purge()}"
