"""Composite foreign keys that keep every device-owned row inside its device's organization, and the
range-partitioned telemetry table with its first daily partitions."""

import datetime as dt

from django.conf import settings
from django.db import migrations

from rmm.migration_ops import composite_foreign_key

DEVICE_CHILD_TABLES = [
    ("device_hardware", "devicehardware"),
    ("device_network_interfaces", "devicenetworkinterface"),
    ("device_disks", "devicedisk"),
    ("device_software", "devicesoftware"),
    ("device_registry_entries", "deviceregistryentry"),
    ("device_config_entries", "deviceconfigentry"),
    ("device_network_connections", "devicenetworkconnection"),
    ("device_commands", "devicecommand"),
    ("device_group_memberships", "devicegroupmembership"),
]

CREATE_TELEMETRY = """
CREATE TABLE device_telemetry (
    device_id uuid NOT NULL,
    org_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    cpu_percent double precision NULL,
    ram_percent double precision NULL,
    ram_used_mb bigint NULL,
    disk_percent double precision NULL,
    disk_used_gb double precision NULL,
    network_in_bytes bigint NULL,
    network_out_bytes bigint NULL,
    process_count integer NULL,
    CONSTRAINT device_telemetry_pkey PRIMARY KEY (device_id, ts),
    CONSTRAINT devices_devicetelemetry_device_in_org FOREIGN KEY (device_id, org_id)
        REFERENCES devices (id, org_id) ON DELETE CASCADE ON UPDATE CASCADE
) PARTITION BY RANGE (ts);
CREATE INDEX device_telemetry_ts_brin ON device_telemetry USING brin (ts);
CREATE TABLE device_telemetry_default PARTITION OF device_telemetry DEFAULT;
"""


def create_first_partitions(apps, schema_editor):
    from devices.services.telemetry_partitions import ensure_partitions

    today = dt.datetime.now(dt.UTC).date()
    ensure_partitions(first_day=today, last_day=today + dt.timedelta(days=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS))


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0001_initial"),
        ("orgs", "0001_initial"),
    ]

    operations = [
        composite_foreign_key(
            table="devices",
            name="devices_device_site_in_org",
            columns=("site_id", "org_id"),
            references="sites",
            ref_columns=("id", "org_id"),
            on_delete="NO ACTION",
        ),
        composite_foreign_key(
            table="device_groups",
            name="devices_devicegroup_site_in_org",
            columns=("site_id", "org_id"),
            references="sites",
            ref_columns=("id", "org_id"),
        ),
        *[
            composite_foreign_key(
                table=table,
                name=f"devices_{cls}_device_in_org",
                columns=("device_id", "org_id"),
                references="devices",
                ref_columns=("id", "org_id"),
            )
            for table, cls in DEVICE_CHILD_TABLES
        ],
        composite_foreign_key(
            table="device_group_memberships",
            name="devices_devicegroupmembership_group_in_org",
            columns=("group_id", "org_id"),
            references="device_groups",
            ref_columns=("id", "org_id"),
        ),
        migrations.RunSQL(sql=CREATE_TELEMETRY, reverse_sql="DROP TABLE device_telemetry CASCADE"),
        migrations.RunPython(create_first_partitions, migrations.RunPython.noop),
    ]
