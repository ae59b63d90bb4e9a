"""Maintenance windows: validation, occurrences in local time (DST-correct), and which devices are covered now.
TO BE WRITTEN (windows work, issue 14)."""

from __future__ import annotations


def validate_window(window) -> None:
    """Raise ``ValidationError`` when ``window`` is not valid (``MaintenanceWindow.clean()``)."""
