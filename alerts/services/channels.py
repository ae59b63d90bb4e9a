"""Notification channels: validation, writes and the test send. TO BE WRITTEN (notifications work, issue 14)."""

from __future__ import annotations


def validate_channel(channel) -> None:
    """Raise ``ValidationError`` when ``channel``'s kind/config is not valid (``NotificationChannel.clean()``)."""
