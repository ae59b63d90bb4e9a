"""device_telemetry is partitioned by day: rows land in their day's partition, a row with no partition is
kept in the default one, and retention drops whole old partitions while keeping recent ones."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection

from devices.services import telemetry_partitions as partitions
from tests import factories

pytestmark = pytest.mark.django_db

TODAY = dt.datetime.now(dt.UTC).date()


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def insert_sample(device, ts: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO device_telemetry (device_id, org_id, ts, cpu_percent) VALUES (%s, %s, %s, 12.5)",
            [device.pk, device.org_id, ts],
        )


def partition_of(device, ts: dt.datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM device_telemetry WHERE device_id = %s AND ts = %s", [device.pk, ts]
        )
        return cursor.fetchone()[0]


def test_migrate_leaves_partitions_for_today_and_the_next_seven_days():
    days = set(partitions.existing_partitions())
    assert {TODAY + dt.timedelta(days=n) for n in range(8)} <= days


def test_rows_land_in_their_days_partition():
    device = factories.device()
    for offset in (0, 1, 7):
        ts = at(TODAY + dt.timedelta(days=offset))
        insert_sample(device, ts)
        assert partition_of(device, ts) == partitions.partition_name(TODAY + dt.timedelta(days=offset))


def test_a_day_boundary_belongs_to_the_day_it_starts():
    device = factories.device()
    midnight = at(TODAY + dt.timedelta(days=1), hour=0)
    insert_sample(device, midnight)
    insert_sample(device, midnight - dt.timedelta(microseconds=1))
    assert partition_of(device, midnight) == partitions.partition_name(TODAY + dt.timedelta(days=1))
    assert partition_of(device, midnight - dt.timedelta(microseconds=1)) == partitions.partition_name(TODAY)


def test_a_row_outside_every_partition_is_kept_and_later_moved_into_its_own_partition():
    device = factories.device()
    backlog_day = TODAY - dt.timedelta(days=3)
    assert backlog_day not in partitions.existing_partitions()
    insert_sample(device, at(backlog_day))
    assert partition_of(device, at(backlog_day)) == partitions.DEFAULT_PARTITION

    report = partitions.maintain(today=TODAY, ahead_days=7, retention_days=30)

    assert partitions.partition_name(backlog_day) in report.created
    assert partition_of(device, at(backlog_day)) == partitions.partition_name(backlog_day)


def test_retention_drops_old_partitions_and_keeps_recent_ones():
    device = factories.device()
    old, edge, recent = (TODAY - dt.timedelta(days=n) for n in (31, 30, 29))
    partitions.ensure_partitions(first_day=old, last_day=recent)
    for day in (old, edge, recent):
        insert_sample(device, at(day))

    report = partitions.maintain(today=TODAY, ahead_days=7, retention_days=30)

    assert report.dropped == [partitions.partition_name(old)]
    remaining = partitions.existing_partitions()
    assert old not in remaining
    assert edge in remaining and recent in remaining
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts FROM device_telemetry WHERE device_id = %s ORDER BY ts", [device.pk])
        assert [row[0] for row in cursor.fetchall()] == [at(edge), at(recent)]


def test_retention_deletes_expired_rows_from_the_default_partition():
    device = factories.device()
    with connection.cursor() as cursor:
        # A row older than retention, in the default partition, as if its partition had never existed.
        cursor.execute(
            "INSERT INTO device_telemetry_default (device_id, org_id, ts) VALUES (%s, %s, %s)",
            [device.pk, device.org_id, at(TODAY - dt.timedelta(days=60))],
        )
    report = partitions.maintain(today=TODAY, ahead_days=7, retention_days=30)
    assert report.default_rows_deleted == 1


def test_the_command_creates_partitions_further_ahead(capsys):
    call_command("telemetry_partitions", "--ahead-days", "10")
    assert TODAY + dt.timedelta(days=10) in partitions.existing_partitions()
    assert partitions.partition_name(TODAY + dt.timedelta(days=10)) in capsys.readouterr().out


def test_the_command_is_idempotent(capsys):
    call_command("telemetry_partitions")
    call_command("telemetry_partitions")
    assert "created 0;" in capsys.readouterr().out.splitlines()[-1]
