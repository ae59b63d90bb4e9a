"""5-minute and hourly rollups of device_telemetry, so a chart of days or weeks reads hundreds of rows instead of
tens of thousands (a 30-day chart of one device: 720 hourly rows instead of 43,200 raw samples).

Derived data, kept by devices.services.telemetry (plain SQL in that one module): not a Django model."""

from django.db import migrations

FORWARD = """
CREATE TABLE device_telemetry_rollups (
    device_id uuid NOT NULL,
    org_id uuid NOT NULL,
    bucket_seconds integer NOT NULL CHECK (bucket_seconds IN (300, 3600)),
    bucket timestamptz NOT NULL,
    samples integer NOT NULL,
    cpu_percent double precision, cpu_percent_max double precision,
    ram_percent double precision, ram_percent_max double precision,
    disk_percent double precision, disk_percent_max double precision,
    ram_used_mb double precision, disk_used_gb double precision,
    network_in_bytes double precision, network_out_bytes double precision, process_count double precision,
    PRIMARY KEY (device_id, bucket_seconds, bucket),
    CONSTRAINT devices_telemetryrollup_device_in_org FOREIGN KEY (device_id, org_id)
        REFERENCES devices (id, org_id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX device_telemetry_rollups_bucket_brin ON device_telemetry_rollups USING brin (bucket);
CREATE TABLE device_telemetry_rollup_state (
    bucket_seconds integer PRIMARY KEY CHECK (bucket_seconds IN (300, 3600)),
    rolled_until timestamptz NOT NULL
);
"""

REVERSE = "DROP TABLE device_telemetry_rollup_state; DROP TABLE device_telemetry_rollups;"


class Migration(migrations.Migration):
    dependencies = [("devices", "0003_readable_labels")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
