"""GET devices/{id}/telemetry: raw samples or 5-minute/hourly buckets with the right averages and maxima,
the same whether the buckets come from rollups or straight from raw samples, across partition boundaries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from rest_framework.test import APIClient

from devices.services import telemetry, telemetry_partitions

pytestmark = pytest.mark.django_db

TODAY = dt.datetime.now(dt.UTC).date()
MIDNIGHT = dt.datetime.combine(TODAY, dt.time.min, tzinfo=dt.UTC)  # the boundary of two daily partitions
# (minutes from midnight, cpu, ram): two samples in yesterday's 23:00 hour, two in today's 00:00 hour.
SAMPLES = [(-50, 10.0, 40.0), (-40, 30.0, 60.0), (10, 50.0, 20.0), (40, 70.0, 80.0)]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def device(world):
    device = world.devices[world.site_a1][0]
    telemetry_partitions.ensure_partitions(first_day=TODAY - dt.timedelta(days=1), last_day=TODAY)
    with connection.cursor() as cursor:
        for minutes, cpu, ram in SAMPLES:
            cursor.execute(
                "INSERT INTO device_telemetry (device_id, org_id, ts, cpu_percent, ram_percent)"
                " VALUES (%s, %s, %s, %s, %s)",
                [device.pk, device.org_id, MIDNIGHT + dt.timedelta(minutes=minutes), cpu, ram],
            )
    return device


def chart(client, device, **params):
    window = {
        "from": (MIDNIGHT - dt.timedelta(hours=1)).isoformat(),
        "to": (MIDNIGHT + dt.timedelta(hours=1)).isoformat(),
    }
    response = client.get(f"/api/v1/devices/{device.pk}/telemetry", {**window, **params})
    assert response.status_code == 200, response.content
    return response.json()


def summary(points):
    return [
        (p["ts"], p["samples"], p["cpuPercent"], p["cpuPercentMax"], p["ramPercent"], p["ramPercentMax"])
        for p in points
    ]


HOURLY = [
    ((MIDNIGHT - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"), 2, 20.0, 30.0, 50.0, 60.0),
    (MIDNIGHT.isoformat().replace("+00:00", "Z"), 2, 60.0, 70.0, 50.0, 80.0),
]


def test_hourly_buckets_average_and_maximise_across_a_partition_boundary(device, tech):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT tableoid) FROM device_telemetry WHERE device_id = %s", [device.pk])
        assert cursor.fetchone() == (2,)
    body = chart(tech, device, bucket="1h")
    assert body["bucket"] == "1h"
    assert summary(body["points"]) == HOURLY


def test_raw_samples_come_back_as_they_were_stored(device, tech):
    points = chart(tech, device, bucket="raw")["points"]
    assert [(p["cpuPercent"], p["cpuPercentMax"], p["samples"]) for p in points] == [
        (10.0, 10.0, 1),
        (30.0, 30.0, 1),
        (50.0, 50.0, 1),
        (70.0, 70.0, 1),
    ]


def test_five_minute_buckets(device, tech):
    points = chart(tech, device, bucket="5m")["points"]
    assert [(p["ts"][11:16], p["cpuPercent"]) for p in points] == [
        ("23:10", 10.0),
        ("23:20", 30.0),
        ("00:10", 50.0),
        ("00:40", 70.0),
    ]


@pytest.mark.parametrize("rolled_at_minutes", [120, 30])  # everything rolled up; only the first hour rolled up
def test_rollups_answer_exactly_what_raw_samples_answer(device, tech, rolled_at_minutes):
    telemetry.roll_up(now=MIDNIGHT + dt.timedelta(minutes=rolled_at_minutes))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM device_telemetry_rollups WHERE device_id = %s", [device.pk])
        assert cursor.fetchone()[0] > 0
    assert summary(chart(tech, device, bucket="1h")["points"]) == HOURLY
    assert len(chart(tech, device, bucket="5m")["points"]) == 4


def test_a_late_sample_is_folded_into_the_rollups_on_the_next_run(device, tech):
    telemetry.roll_up(now=MIDNIGHT + dt.timedelta(hours=2))
    with connection.cursor() as cursor:  # an agent's backlog arrives for a bucket already rolled up
        cursor.execute(
            "INSERT INTO device_telemetry (device_id, org_id, ts, cpu_percent) VALUES (%s, %s, %s, 100)",
            [device.pk, device.org_id, MIDNIGHT + dt.timedelta(minutes=20)],
        )
    telemetry.roll_up(now=MIDNIGHT + dt.timedelta(hours=2, minutes=5))
    midnight_hour = chart(tech, device, bucket="1h")["points"][1]
    assert (midnight_hour["samples"], midnight_hour["cpuPercentMax"]) == (3, 100.0)


@pytest.mark.parametrize(("hours", "expected"), [(12, "raw"), (24, "5m"), (24 * 7, "1h"), (24 * 30, "1h")])
def test_auto_keeps_a_chart_near_a_thousand_points(device, tech, hours, expected):
    body = tech.get(
        f"/api/v1/devices/{device.pk}/telemetry",
        {"from": (MIDNIGHT - dt.timedelta(hours=hours)).isoformat(), "to": MIDNIGHT.isoformat()},
    ).json()
    assert body["bucket"] == expected
    assert hours * 3600 / {"raw": 60, "5m": 300, "1h": 3600}[expected] <= 1000


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "2m"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"bucket": "raw", "from": "2026-01-01T00:00:00Z"}, "from"),
    ],
)
def test_bad_parameters_get_400_naming_the_field(device, tech, params, field):
    response = tech.get(f"/api/v1/devices/{device.pk}/telemetry", params)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_telemetry_of_a_device_out_of_reach_is_404(device, outsider):
    assert client_for(outsider).get(f"/api/v1/devices/{device.pk}/telemetry").status_code == 404


@pytest.fixture
def tech(partner_technician):
    return client_for(partner_technician)


def test_deleting_a_device_deletes_its_rollups(device):
    telemetry.roll_up(now=MIDNIGHT + dt.timedelta(hours=2))
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM devices WHERE id = %s", [device.pk])
        cursor.execute("SELECT count(*) FROM device_telemetry_rollups WHERE device_id = %s", [device.pk])
        assert cursor.fetchone() == (0,)
