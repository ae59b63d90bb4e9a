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
    PRIMARY KEY (device_id, bucket_seconds, bucket)
);
-- Derived from device_telemetry (whose rows the composite foreign key keeps in their tenant), so no foreign key
-- here: Django's test and flush machinery truncates only the tables it knows, and PostgreSQL refuses to truncate
-- devices while an unknown table references it. A deleted device's rollups go by trigger instead.
CREATE FUNCTION devices_delete_telemetry_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM device_telemetry_rollups WHERE device_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER devices_delete_telemetry_rollups AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_delete_telemetry_rollups();
CREATE INDEX device_telemetry_rollups_bucket_brin ON device_telemetry_rollups USING brin (bucket);
CREATE TABLE device_telemetry_rollup_state (
    bucket_seconds integer PRIMARY KEY CHECK (bucket_seconds IN (300, 3600)),
    rolled_until timestamptz NOT NULL
);
"""

REVERSE = """
DROP TRIGGER devices_delete_telemetry_rollups ON devices;
DROP FUNCTION devices_delete_telemetry_rollups();
DROP TABLE device_telemetry_rollup_state;
DROP TABLE device_telemetry_rollups;
"""


class Migration(migrations.Migration):
    dependencies = [("devices", "0003_readable_labels")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
