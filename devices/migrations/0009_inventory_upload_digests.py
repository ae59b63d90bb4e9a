"""The digest of each device's last stored list upload per kind (devices.services.ingest): an agent re-sends the
same bytes after most scans, and a re-sent upload is then answered after one indexed read, without parsing,
validating or reading back the device's rows.

A plain table, not a model: it is the ingest's private memory, like the group refresh queue (0006). No foreign key
to devices, for the reason given in 0004 (test flushes truncate only tables Django knows); device ids are never
reused, so a digest of a deleted device is never matched again."""

from django.db import migrations

SQL = """
CREATE TABLE device_inventory_digests (
    device_id uuid NOT NULL,
    kind text NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (device_id, kind)
);
"""


class Migration(migrations.Migration):
    dependencies = [("devices", "0008_contains_and_manufacturer_indexes_for_rules")]

    operations = [migrations.RunSQL(SQL, "DROP TABLE device_inventory_digests")]
