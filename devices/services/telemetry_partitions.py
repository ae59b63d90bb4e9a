"""Daily range partitions of ``device_telemetry``: create them ahead of time, drop them past retention.

Partitions are named ``device_telemetry_pYYYYMMDD`` and cover one UTC day. ``device_telemetry_default`` catches
any row outside every daily partition (an agent's backlog from a day whose partition is missing), so a row is
never lost; creating the partition for such a day moves those rows out of the default partition first.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django.db import connection, transaction
from psycopg import sql

PARENT = "device_telemetry"
DEFAULT_PARTITION = "device_telemetry_default"
_NAME = re.compile(r"^device_telemetry_p(\d{8})$")


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    default_rows_deleted: int = 0


def partition_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def existing_partitions() -> dict[dt.date, str]:
    """The daily partitions attached to ``device_telemetry``, by day."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname
              FROM pg_inherits
              JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
              JOIN pg_class child ON child.oid = pg_inherits.inhrelid
             WHERE parent.relname = %s
            """,
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            days[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def create_partition(day: dt.date) -> None:
    """Create and attach the partition for ``day``, moving any of its rows out of the default partition.

    The default partition is locked for the few statements this takes, so no row for ``day`` can slip into it
    between the move and the attach (which would make the attach fail).
    """
    name = sql.Identifier(partition_name(day))
    lower, upper = sql.Literal(_day_start(day)), sql.Literal(_day_start(day + dt.timedelta(days=1)))
    parent, default = sql.Identifier(PARENT), sql.Identifier(DEFAULT_PARTITION)
    statements = [
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(default),
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(name, parent),
        sql.SQL(
            "WITH moved AS (DELETE FROM {} WHERE ts >= {} AND ts < {} RETURNING *) INSERT INTO {} SELECT * FROM moved"
        ).format(default, lower, upper, name),
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(parent, name, lower, upper),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def ensure_partitions(*, first_day: dt.date, last_day: dt.date) -> list[str]:
    """Create every missing daily partition from ``first_day`` to ``last_day`` inclusive; return their names."""
    existing = existing_partitions()
    created = []
    day = first_day
    while day <= last_day:
        if day not in existing:
            create_partition(day)
            created.append(partition_name(day))
        day += dt.timedelta(days=1)
    return created


def drop_expired_partitions(*, keep_from: dt.date) -> tuple[list[str], int]:
    """Drop the daily partitions of days before ``keep_from`` and delete older rows from the default partition."""
    dropped = []
    with transaction.atomic(), connection.cursor() as cursor:
        for day, name in sorted(existing_partitions().items()):
            if day < keep_from:
                cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                dropped.append(name)
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(DEFAULT_PARTITION)),
            [_day_start(keep_from)],
        )
        deleted = cursor.rowcount
    return dropped, deleted


def maintain(*, today: dt.date, ahead_days: int, retention_days: int) -> PartitionReport:
    """Keep partitions for today and ``ahead_days`` after it; drop those older than ``retention_days``."""
    keep_from = today - dt.timedelta(days=retention_days)
    report = PartitionReport()
    report.dropped, report.default_rows_deleted = drop_expired_partitions(keep_from=keep_from)
    report.created = ensure_partitions(first_day=today, last_day=today + dt.timedelta(days=ahead_days))
    # Rows that landed in the default partition (a backlog from a day with no partition) get a proper one.
    for day in _days_in_default_partition(since=keep_from):
        if day not in existing_partitions():
            create_partition(day)
            report.created.append(partition_name(day))
    return report


def _days_in_default_partition(*, since: dt.date) -> list[dt.date]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM {} WHERE ts >= %s ORDER BY 1").format(
                sql.Identifier(DEFAULT_PARTITION)
            ),
            [_day_start(since)],
        )
        return [row[0] for row in cursor.fetchall()]
