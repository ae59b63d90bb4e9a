"""The notification outbox: what an alert change announces, to which channels. TO BE WRITTEN (notifications work).

The one entry point the evaluator and the alert lifecycle call, inside the transaction that made the change:

    announce(event=NotificationEvent.OPENED, rule=rule, alerts=[...]) -> int  (rows written)
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.models import Alert, AlertRule, NotificationEvent


def announce(*, event: NotificationEvent, rule: AlertRule | None, alerts: Sequence[Alert]) -> int:
    """Write the outbox rows for ``alerts`` (all of ``rule``; a site-level alert passes the offline rule that
    raised it) to the rule's enabled channels, applying the spec's storm control (digest when one pass opens more
    than ALERT_DIGEST_THRESHOLD alerts of one rule in one site). Must be called inside the caller's transaction."""
    return 0


def renotify_due(*, now=None) -> int:
    """Announce again the open, unacknowledged alerts whose rule's ``renotify_minutes`` have passed."""
    return 0
