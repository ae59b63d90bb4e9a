"""Delivering the notification outbox. BEING WRITTEN (notifications work, issue 14)."""

from __future__ import annotations

import datetime as dt


def deliver_due(*, now: dt.datetime | None = None) -> str:
    """Send the due outbox rows; a one-line report."""
    return "delivered: 0"
