"""Time series of a device's health metrics, and the one table of the metrics themselves (``METRICS``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class DeviceTelemetry(models.Model):
    """One sample of a device's metrics.

    The table is range-partitioned by ``ts`` into daily partitions (created by the migration and kept ahead by
    ``manage.py telemetry_partitions``) with a default partition so no row is ever lost; retention drops whole
    partitions. Its primary key is (device_id, ts); the composite foreign key (device_id, org_id) → devices
    cascades deletes and keeps ``org_id`` equal to the device's.
    """

    pk = models.CompositePrimaryKey("device_id", "ts")
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, db_constraint=False, related_name="+")
    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )
    ts = models.DateTimeField("time")
    cpu_percent = models.FloatField("CPU (%)", null=True, blank=True)
    ram_percent = models.FloatField("RAM (%)", null=True, blank=True)
    ram_used_mb = models.BigIntegerField("RAM used (MB)", null=True, blank=True)
    disk_percent = models.FloatField("disk (%)", null=True, blank=True)
    disk_used_gb = models.FloatField("disk used (GB)", null=True, blank=True)
    network_in_bytes = models.BigIntegerField("network in (bytes)", null=True, blank=True)
    network_out_bytes = models.BigIntegerField("network out (bytes)", null=True, blank=True)
    process_count = models.IntegerField("processes", null=True, blank=True)

    class Meta:
        db_table = "device_telemetry"
        verbose_name_plural = "device telemetry"
        ordering = ["-ts"]

    def __str__(self) -> str:
        # The device's name (a query unless loaded with the row; the telemetry page selects it).
        return f"{self.device} at {self.ts:%Y-%m-%d %H:%M:%S}"


# 2**31 - 1 and 2**63 - 1: the largest integer and bigint PostgreSQL stores.
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class Metric:
    """One telemetry metric: its name in the agent protocol and the API, its ``device_telemetry`` column and SQL
    type, the range an agent's value must lie in, and how the admin heads and shows it."""

    wire: str
    column: str
    sql_type: str  # float8, int8 or int4: the column's type, which the heartbeat SQL casts to
    minimum: float
    maximum: float | None
    label: str
    unit: str  # percent, MB, GB, bytes or count

    @property
    def whole(self) -> bool:
        return self.sql_type != "float8"


# The one list of metrics: the heartbeat schema (devices.agent_api.schemas), the heartbeat SQL
# (devices.agent_api.sql), the chart series (devices.services.telemetry) and the admin's telemetry table are built
# from it; tests/agent/test_metrics_table.py ties it to DeviceTelemetry's fields. In column order.
METRICS: tuple[Metric, ...] = (
    Metric("cpuPercent", "cpu_percent", "float8", 0, 100, "CPU", "percent"),
    Metric("ramPercent", "ram_percent", "float8", 0, 100, "RAM", "percent"),
    Metric("ramUsedMb", "ram_used_mb", "int8", 0, BIGINT_MAX, "RAM used", "MB"),
    Metric("diskPercent", "disk_percent", "float8", 0, 100, "disk", "percent"),
    Metric("diskUsedGb", "disk_used_gb", "float8", 0, None, "disk used", "GB"),
    Metric("networkInBytes", "network_in_bytes", "int8", 0, BIGINT_MAX, "network in", "bytes"),
    Metric("networkOutBytes", "network_out_bytes", "int8", 0, BIGINT_MAX, "network out", "bytes"),
    Metric("processCount", "process_count", "int4", 0, INT_MAX, "processes", "count"),
)
