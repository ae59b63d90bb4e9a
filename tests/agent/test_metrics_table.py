"""The one table of telemetry metrics (devices.models.telemetry.METRICS) agrees with the table that stores them,
the rollups, the heartbeat schema and the heartbeat's SQL: a metric added to one and not the others fails here."""

from __future__ import annotations

import pytest
from django.db import connection, models

from devices.agent_api import schemas, sql
from devices.models import DeviceTelemetry
from devices.models.telemetry import METRICS
from devices.services import telemetry
from tests.agent.conftest import heartbeat_body

SQL_TYPES = {"float8": models.FloatField, "int8": models.BigIntegerField, "int4": models.IntegerField}


def test_every_metric_is_a_column_of_device_telemetry_of_its_type_and_nothing_else_is():
    fields = {field.column: type(field) for field in DeviceTelemetry._meta.concrete_fields}
    columns = {metric.column: SQL_TYPES[metric.sql_type] for metric in METRICS}
    assert {column: fields[column] for column in fields if column not in {"device_id", "org_id", "ts"}} == columns


def test_the_heartbeat_schema_and_sql_take_every_metric_in_column_order():
    assert [field.alias for field in schemas.Metrics.model_fields.values()] == [metric.wire for metric in METRICS]
    assert tuple(name for name, _type in sql._SAMPLE_TYPES[3:]) == tuple(metric.column for metric in METRICS)
    assert [name for _, name in telemetry.METRICS] == [metric.wire for metric in METRICS]


@pytest.mark.django_db
def test_the_rollups_keep_an_average_of_every_metric_and_a_maximum_of_the_percentages():
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, "device_telemetry_rollups")}
    assert {metric.column for metric in METRICS} <= columns
    assert {f"{column}_max" for column, _ in telemetry.MAXED} <= columns


@pytest.mark.django_db
def test_a_heartbeat_stores_every_metric_it_sends_in_its_column(agent):
    sent = {metric.wire: (7 if metric.whole else 7.5) for metric in METRICS}
    assert agent.heartbeat(metrics=sent).status_code == 200
    stored = DeviceTelemetry.objects.get(device_id=agent.device_id)
    assert {metric.wire: getattr(stored, metric.column) for metric in METRICS} == sent
    assert heartbeat_body()["metrics"].keys() == sent.keys()
