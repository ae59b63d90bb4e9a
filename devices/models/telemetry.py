"""Time series of a device's health metrics."""

from __future__ import annotations

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
        "orgs.Organization", on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+"
    )
    ts = models.DateTimeField()
    cpu_percent = models.FloatField(null=True, blank=True)
    ram_percent = models.FloatField(null=True, blank=True)
    ram_used_mb = models.BigIntegerField(null=True, blank=True)
    disk_percent = models.FloatField(null=True, blank=True)
    disk_used_gb = models.FloatField(null=True, blank=True)
    network_in_bytes = models.BigIntegerField(null=True, blank=True)
    network_out_bytes = models.BigIntegerField(null=True, blank=True)
    process_count = models.IntegerField(null=True, blank=True)

    class Meta:
        db_table = "device_telemetry"
        verbose_name_plural = "device telemetry"
        ordering = ["-ts"]

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.ts:%Y-%m-%d %H:%M:%S}"
