"""Telemetry for charts: rollups kept by a periodic job, and the series a chart asks for.

All of it is plain SQL in this one module: the rollups are derived data, not a Django model, and the series
queries group thousands of samples in PostgreSQL rather than in Python.

Rollups (``device_telemetry_rollups``) hold, per device and 5-minute or hourly bucket, the sample count, the
average of every metric and the maximum of cpu/ram/disk. ``roll_up`` recomputes the buckets from a little before
where it stopped (``ROLLUP_LOOKBACK``) to the last complete bucket, with upserts, so samples that arrive late (an
agent's backlog) within the lookback are folded in. ``series`` reads rollups for the buckets already rolled and
computes the rest from raw samples, so the recent end of a chart is never stale.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from devices.models.telemetry import METRICS as TELEMETRY_METRICS

BUCKETS = {"5m": 300, "1h": 3600}
ROLLUP_LOOKBACK = dt.timedelta(hours=2)
# "auto" keeps a chart at about 1,000 points or fewer: raw samples (one a minute) up to ~16 hours, 5-minute
# buckets up to ~3.5 days, hourly beyond (30 days = 720 points).
AUTO_RAW_UNTIL = dt.timedelta(hours=16)
AUTO_5M_UNTIL = dt.timedelta(hours=83)

# (column, name in the API) of every metric, from the one table of metrics; the percentages also get their maximum
# per bucket (the rollup table's *_max columns).
METRICS = [(metric.column, metric.wire) for metric in TELEMETRY_METRICS]
MAXED = [(metric.column, f"{metric.wire}Max") for metric in TELEMETRY_METRICS if metric.unit == "percent"]

_AGGREGATES = ", ".join(
    [f"avg({column})" for column, _ in METRICS] + [f"max({column})" for column, _ in MAXED]
)  # constant column names only; every value is a bound parameter


def choose_bucket(start: dt.datetime, end: dt.datetime) -> str:
    span = end - start
    if span <= AUTO_RAW_UNTIL:
        return "raw"
    return "5m" if span <= AUTO_5M_UNTIL else "1h"


def _rolled_until(cursor, seconds: int) -> dt.datetime | None:
    cursor.execute("SELECT rolled_until FROM device_telemetry_rollup_state WHERE bucket_seconds = %s", [seconds])
    row = cursor.fetchone()
    return row[0] if row else None


@dataclass
class RollupReport:
    buckets_written: dict[str, int]
    rows_expired: int


def roll_up(*, now: dt.datetime | None = None) -> RollupReport:
    """Bring both rollups up to the last complete bucket and drop rollups older than the telemetry retention."""
    now = now or dt.datetime.now(dt.UTC)
    keep_from = now - dt.timedelta(days=settings.TELEMETRY_RETENTION_DAYS)
    written = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for name, seconds in BUCKETS.items():
            cursor.execute("SELECT date_bin(make_interval(secs => %s), %s, 'epoch')", [seconds, now])
            upto = cursor.fetchone()[0]  # start of the current, incomplete bucket
            done = _rolled_until(cursor, seconds)
            since = max(done - ROLLUP_LOOKBACK, keep_from) if done else keep_from
            cursor.execute(
                f"""
                INSERT INTO device_telemetry_rollups AS r
                       (device_id, org_id, bucket_seconds, bucket, samples,
                        {", ".join(column for column, _ in METRICS)}, {", ".join(f"{c}_max" for c, _ in MAXED)})
                SELECT device_id, org_id, %(seconds)s, date_bin(make_interval(secs => %(seconds)s), ts, 'epoch'),
                       count(*), {_AGGREGATES}
                  FROM device_telemetry
                 WHERE ts >= %(since)s AND ts < %(upto)s
                 GROUP BY 1, 2, 4
                ON CONFLICT (device_id, bucket_seconds, bucket) DO UPDATE SET
                       samples = EXCLUDED.samples,
                       {", ".join(f"{c} = EXCLUDED.{c}" for c, _ in METRICS)},
                       {", ".join(f"{c}_max = EXCLUDED.{c}_max" for c, _ in MAXED)}
                """,  # noqa: S608 (column names are this module's constants; values are bound)
                {"seconds": seconds, "since": since, "upto": upto},
            )
            written[name] = cursor.rowcount
            cursor.execute(
                """
                INSERT INTO device_telemetry_rollup_state (bucket_seconds, rolled_until) VALUES (%s, %s)
                ON CONFLICT (bucket_seconds) DO UPDATE SET rolled_until = EXCLUDED.rolled_until
                """,
                [seconds, upto],
            )
        cursor.execute("DELETE FROM device_telemetry_rollups WHERE bucket < %s", [keep_from])
        expired = cursor.rowcount
    return RollupReport(buckets_written=written, rows_expired=expired)


def _point(row) -> dict:
    """(ts, samples, every metric's average, cpu/ram/disk maximum) → a chart point."""
    ts, samples, *values = row
    names = [name for _, name in METRICS] + [name for _, name in MAXED]
    return {"ts": ts, "samples": samples, **dict(zip(names, values, strict=True))}


def series(*, device_id, start: dt.datetime, end: dt.datetime, bucket: str) -> list[dict]:
    """Points of one device in [start, end): raw samples, or 5-minute / hourly buckets (avg of every metric,
    max of cpu/ram/disk, sample count), oldest first."""
    with connection.cursor() as cursor:
        if bucket == "raw":
            cursor.execute(
                f"""SELECT ts, 1, {", ".join(column for column, _ in METRICS)}, {", ".join(c for c, _ in MAXED)}
                      FROM device_telemetry
                     WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY ts""",  # noqa: S608 (constant columns)
                [device_id, start, end],
            )
            return [_point(row) for row in cursor.fetchall()]

        seconds = BUCKETS[bucket]
        rolled = _rolled_until(cursor, seconds) or start
        split = min(max(rolled, start), end)
        cursor.execute(
            f"""
            SELECT bucket, samples, {", ".join(column for column, _ in METRICS)},
                   {", ".join(f"{c}_max" for c, _ in MAXED)}
              FROM device_telemetry_rollups
             WHERE device_id = %(device)s AND bucket_seconds = %(seconds)s
               AND bucket >= date_bin(make_interval(secs => %(seconds)s), %(start)s, 'epoch') AND bucket < %(split)s
            UNION ALL
            SELECT date_bin(make_interval(secs => %(seconds)s), ts, 'epoch'), count(*), {_AGGREGATES}
              FROM device_telemetry
             WHERE device_id = %(device)s AND ts >= %(split)s AND ts < %(end)s
             GROUP BY 1
             ORDER BY 1
            """,  # noqa: S608 (constant columns; values bound)
            {"device": device_id, "seconds": seconds, "start": start, "split": split, "end": end},
        )
        return [_point(row) for row in cursor.fetchall()]
