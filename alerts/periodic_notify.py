"""The notification outbox's periodic jobs, imported by ``alerts/periodic.py`` (the registry discovers only
``<app>/periodic.py``).

Delivery has a lane of its own, so a slow webhook never holds up alert evaluation, and evaluation never delays a
delivery.
"""

from __future__ import annotations

from alerts.services import delivery, notify
from jobs.registry import register


@register(
    "deliver_notifications",
    every=5,
    lane="notifications",
    description="The notification outbox: send due webhooks and e-mails, with retries and per-channel rate limits.",
)
def deliver_notifications() -> str:
    return str(delivery.deliver_due())


@register(
    "renotify_alerts",
    every=60,
    lane="notifications",
    description="Open, unacknowledged alerts whose rule's renotify_minutes have passed are announced again.",
)
def renotify_alerts() -> str:
    return f"alerts re-notified: {notify.renotify_due()}"
