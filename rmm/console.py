"""What every page of the console (the admin) shows the same way: a device's status as a coloured badge, a moment as
"3 min ago" with the exact time on hover, a severity in its colour.

The words of ``time_ago`` are those of ``rmm/static/console/console.js``, which keeps them fresh while a page stays
open and puts the exact time in the browser's time zone in the tooltip; without the script the tooltip shows UTC.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

# Shown where there is no value (never seen, no sample).
MISSING = "\N{EN DASH}"

_UNITS = (
    (86400 * 365, "year"),
    (86400 * 30, "month"),
    (86400 * 7, "week"),
    (86400, "day"),
    (3600, "h"),
    (60, "min"),
)


def ago_words(seconds: float) -> str:
    """``125`` → ``"2 min ago"``, ``-90`` → ``"in 1 min"``: the largest whole unit, as console.js words it."""
    future = seconds < 0
    left = abs(seconds)
    for size, unit in _UNITS:
        count = int(left // size)
        if count >= 1:
            plural = "s" if count > 1 and unit not in ("h", "min") else ""
            words = f"{count} {unit}{plural}"
            return f"in {words}" if future else f"{words} ago"
    if left >= 1:
        return f"in {int(left)} s" if future else f"{int(left)} s ago"
    return "just now"


def time_ago(moment: dt.datetime | None, *, now: dt.datetime | None = None) -> SafeString | str:
    """A ``<time class="ago">`` element: relative words, the exact moment (UTC, ISO 8601) for the script and the
    tooltip."""
    if moment is None:
        return MISSING
    now = now or timezone.now()
    exact = moment.astimezone(dt.UTC)
    return format_html(
        '<time class="ago" datetime="{}" title="{}">{}</time>',
        exact.isoformat(timespec="seconds"),
        exact.strftime("%Y-%m-%d %H:%M:%S UTC"),
        ago_words((now - moment).total_seconds()),
    )


def status_badge(status: str, label: str | None = None) -> SafeString:
    """A device's status as a coloured badge (``.status-<status>`` in console.css)."""
    return format_html('<span class="status status-{}">{}</span>', status, label or status)


def severity_label(severity: str, label: str | None = None) -> SafeString:
    """An alert's severity in its colour (``.severity-<severity>`` in console.css)."""
    return format_html('<span class="severity severity-{}">{}</span>', severity, label or severity)
