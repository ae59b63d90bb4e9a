"""Line charts of a device's telemetry as server-rendered SVG: no chart library, no script, no network.

A chart is ``<svg class="chart" data-metric="cpu">`` holding one ``<polyline data-points="N">`` per series, the
value axis labelled with its minimum and maximum, and the time axis with a few ticks chosen for the span (hours
for a day, days for a week or a month). Points without a value (the agent did not report the metric) are left
out of their line. Without any point the chart says so instead of drawing empty axes. Colours and sizes are in
``rmm/static/console/device_page.css``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 26
# A line with at most this many points also gets a dot on each (see line_chart).
MARKED_POINTS = 12
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM

# Tick spacings tried in order: the first that puts at most MAX_TICKS ticks on the time axis is used.
TICK_STEPS = (
    dt.timedelta(hours=1),
    dt.timedelta(hours=3),
    dt.timedelta(hours=6),
    dt.timedelta(hours=12),
    dt.timedelta(days=1),
    dt.timedelta(days=2),
    dt.timedelta(days=7),
)
MAX_TICKS = 8


@dataclass(frozen=True)
class Series:
    """One line of a chart: its name in the legend, its CSS class (its colour) and its (time, value) points."""

    name: str
    css_class: str
    points: Sequence[tuple[dt.datetime, float | None]]


def time_ticks(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, str]]:
    """The moments to mark on a time axis from ``start`` to ``end`` (UTC), with their labels: on whole hours for
    spans under two days ("18:00"), on midnights beyond ("Dec 06")."""
    span = end - start
    step = next((step for step in TICK_STEPS if span / step <= MAX_TICKS), TICK_STEPS[-1])
    start_utc = start.astimezone(dt.UTC)
    if step < dt.timedelta(days=1):
        first = start_utc.replace(minute=0, second=0, microsecond=0)
        hours = int(step.total_seconds() // 3600)
        first += dt.timedelta(hours=(-first.hour) % hours)
        label = "%H:%M"
    else:
        first = start_utc.replace(hour=0, minute=0, second=0, microsecond=0)
        label = "%b %d"
    while first < start_utc:
        first += step
    ticks = []
    moment = first
    while moment <= end:
        ticks.append((moment, moment.strftime(label)))
        moment += step
    return ticks


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (so the top label reads well)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power


def line_chart(
    *,
    metric: str,
    title: str,
    series: Sequence[Series],
    start: dt.datetime,
    end: dt.datetime,
    shown_as: Callable[[float], str],
    top: float | None = None,
) -> SafeString:
    """An SVG line chart of ``series`` over [start, end]. The value axis runs from 0 to ``top`` (percentages: 100)
    or to a round number above the largest value; ``shown_as`` words a value for the axis labels."""
    values = [value for line in series for _, value in line.points if value is not None]
    if not values:
        return format_html(
            '<svg class="chart chart-empty" data-metric="{}" viewBox="0 0 {} {}" role="img" aria-label="{}: no data">'
            '<title>{}: no data</title><rect class="chart-frame" x="{}" y="{}" width="{}" height="{}"></rect>'
            '<text class="chart-empty-text" x="{}" y="{}" text-anchor="middle">No data for this period</text></svg>',
            metric,
            WIDTH,
            HEIGHT,
            title,
            title,
            LEFT,
            TOP,
            PLOT_WIDTH,
            PLOT_HEIGHT,
            LEFT + PLOT_WIDTH / 2,
            TOP + PLOT_HEIGHT / 2,
        )
    lowest = min(0.0, min(values))
    highest = top if top is not None else _nice_ceiling(max(values))
    if highest <= lowest:
        highest = lowest + 1
    seconds = max((end - start).total_seconds(), 1.0)

    def x_of(moment: dt.datetime) -> float:
        return LEFT + PLOT_WIDTH * min(max((moment - start).total_seconds() / seconds, 0.0), 1.0)

    def y_of(value: float) -> float:
        return TOP + PLOT_HEIGHT * (1 - (value - lowest) / (highest - lowest))

    lines: list[tuple[str, int, str, str]] = []
    markers: list[tuple[str, str, str]] = []
    for line in series:
        kept = [(moment, value) for moment, value in line.points if value is not None]
        coordinates = " ".join(f"{x_of(moment):.1f},{y_of(value):.1f}" for moment, value in kept)
        lines.append((line.css_class, len(kept), line.name, coordinates))
        # A line of one point draws nothing, and a few points over a whole range are specks: a newly enrolled
        # device's first samples (one 5-minute bucket in the 24 h view) would look like no data at all.
        if len(kept) <= MARKED_POINTS:
            markers.extend((line.css_class, f"{x_of(moment):.1f}", f"{y_of(value):.1f}") for moment, value in kept)
    ticks = [(x_of(moment), label) for moment, label in time_ticks(start, end)]
    bottom = TOP + PLOT_HEIGHT
    return format_html(
        '<svg class="chart" data-metric="{metric}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        "<title>{title}</title>"
        '<rect class="chart-frame" x="{left}" y="{top}" width="{plot_width}" height="{plot_height}"></rect>'
        '<line class="chart-grid" x1="{left}" x2="{right}" y1="{middle}" y2="{middle}"></line>'
        '<text class="chart-label" x="{label_x}" y="{top_label_y}" text-anchor="end">{highest}</text>'
        '<text class="chart-label" x="{label_x}" y="{bottom}" text-anchor="end">{lowest}</text>'
        "{ticks}{lines}{markers}</svg>",
        metric=metric,
        width=WIDTH,
        height=HEIGHT,
        title=title,
        left=LEFT,
        top=TOP,
        right=LEFT + PLOT_WIDTH,
        plot_width=PLOT_WIDTH,
        plot_height=PLOT_HEIGHT,
        middle=f"{TOP + PLOT_HEIGHT / 2:.1f}",
        label_x=LEFT - 6,
        top_label_y=TOP + 10,
        bottom=bottom,
        highest=shown_as(highest),
        lowest=shown_as(lowest),
        ticks=format_html_join(
            "",
            '<line class="chart-tick" x1="{0}" x2="{0}" y1="{1}" y2="{2}"></line>'
            '<text class="chart-label" x="{0}" y="{3}" text-anchor="middle">{4}</text>',
            ((f"{x:.1f}", bottom, bottom + 4, bottom + 16, label) for x, label in ticks),
        ),
        lines=format_html_join(
            "",
            '<polyline class="chart-line {}" data-points="{}" points="{}"><title>{}</title></polyline>',
            # The first series is drawn last, on top of the others (an average over its peak).
            ((css, count, coordinates, name) for css, count, name, coordinates in reversed(lines)),
        ),
        markers=format_html_join(
            "", '<circle class="chart-point {}" cx="{}" cy="{}" r="2.5"></circle>', reversed(markers)
        ),
    )


def legend(series: Sequence[Series]) -> SafeString:
    """The names of a chart's lines in their colours."""
    return format_html(
        '<ul class="chart-legend">{}</ul>',
        format_html_join("", '<li><span class="chart-key {}"></span>{}</li>', ((s.css_class, s.name) for s in series)),
    )
