"""Dynamic groups kept fresh: the membership log, the refresh queue its triggers fill, and tenant rules for both.

The refresh queue (plain SQL, not a Django model) lists devices whose rule-relevant facts changed, with which facts
(in the rule language's names: ``osVersion``, ``tags``, ``software``, ``hardware`` …). Triggers fill it, so every
writer (the heartbeat's SQL, inventory COPY, the API, the admin, a shell) is covered without remembering to; the
``devices`` trigger has a WHEN clause, so a heartbeat that changes only last_seen_* never calls it.
``devices.services.groups.process_refresh_queue`` drains it and re-evaluates, for those devices only, the dynamic
groups whose ``fields_used`` the change can affect.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import rmm.ids
from rmm.migration_ops import composite_foreign_key

# The device columns a rule can name, with the rule field each one is (see devices/rules.py).
DEVICE_FIELDS = {
    "hostname": "hostname",
    "display_name": "displayName",
    "os_version": "osVersion",
    "os_build": "osBuild",
    "agent_version": "agentVersion",
    "last_seen_ip": "lastSeenIp",
    "status": "status",
    "os_type": "osType",
    "architecture": "architecture",
    "tags": "tags",
    "site_id": "siteId",
    "enrolled_at": "enrolledAt",
}
INVENTORY_TABLES = {"device_software": "software", "device_disks": "disks", "device_network_interfaces": "network"}

_changed = "\n".join(
    f"    IF NEW.{column} IS DISTINCT FROM OLD.{column} THEN changed := changed || '{field}'::text; END IF;"
    for column, field in DEVICE_FIELDS.items()
)
_when = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in DEVICE_FIELDS)

FORWARD = (
    f"""
-- A version-7 (time-ordered) UUID made in SQL, for rows the membership statements insert in bulk (rmm/ids.py
-- makes the same in Python): the millisecond clock over the first 48 bits of a random UUID, version bits 0111.
CREATE FUNCTION rmm_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                  PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                  FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

CREATE TABLE device_group_refresh_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id uuid NOT NULL,
    org_id uuid NOT NULL,
    changed text[] NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
-- No foreign key to devices, for the reason given in 0004 (test flushes truncate only tables Django knows); a
-- queued device that is gone by the time the queue is drained matches nothing and is skipped.

CREATE FUNCTION device_group_queue_new_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_group_refresh_queue (device_id, org_id, changed) VALUES (NEW.id, NEW.org_id, '{{*}}');
    RETURN NULL;
END $$;
CREATE TRIGGER devices_queue_group_refresh_insert AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION device_group_queue_new_device();

CREATE FUNCTION device_group_queue_device_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text[] := '{{}}';
BEGIN
{_changed}
    INSERT INTO device_group_refresh_queue (device_id, org_id, changed) VALUES (NEW.id, NEW.org_id, changed);
    RETURN NULL;
END $$;
CREATE TRIGGER devices_queue_group_refresh_update AFTER UPDATE ON devices
    FOR EACH ROW WHEN ({_when})
    EXECUTE FUNCTION device_group_queue_device_change();

CREATE FUNCTION device_group_queue_hardware_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO device_group_refresh_queue (device_id, org_id, changed) VALUES (OLD.device_id, OLD.org_id, '{{hardware}}');
    ELSE
        INSERT INTO device_group_refresh_queue (device_id, org_id, changed) VALUES (NEW.device_id, NEW.org_id, '{{hardware}}');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER device_hardware_queue_group_refresh AFTER INSERT OR UPDATE OR DELETE ON device_hardware
    FOR EACH ROW EXECUTE FUNCTION device_group_queue_hardware_change();

-- Inventory uploads replace a device's rows with one DELETE and one COPY: statement-level triggers with transition
-- tables queue each device once per statement instead of once per row (a 150-program upload: two queue rows).
CREATE FUNCTION device_group_queue_inventory_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO device_group_refresh_queue (device_id, org_id, changed)
        SELECT DISTINCT device_id, org_id, ARRAY[TG_ARGV[0]] FROM old_rows;
    ELSE
        INSERT INTO device_group_refresh_queue (device_id, org_id, changed)
        SELECT DISTINCT device_id, org_id, ARRAY[TG_ARGV[0]] FROM new_rows;
    END IF;
    RETURN NULL;
END $$;
"""
    + "".join(
        f"""
CREATE TRIGGER {table}_queue_group_refresh_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION device_group_queue_inventory_change('{kind}');
CREATE TRIGGER {table}_queue_group_refresh_update AFTER UPDATE ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION device_group_queue_inventory_change('{kind}');
CREATE TRIGGER {table}_queue_group_refresh_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION device_group_queue_inventory_change('{kind}');
"""
        for table, kind in INVENTORY_TABLES.items()
    )
    + """
-- A group's parent is a group of the same organization. SET NULL (parent_id) only: org_id stays.
ALTER TABLE device_groups ADD CONSTRAINT devices_devicegroup_parent_in_org FOREIGN KEY (parent_id, org_id)
    REFERENCES device_groups (id, org_id) ON DELETE SET NULL (parent_id);
"""
)

REVERSE = (
    "".join(
        f"DROP TRIGGER {table}_queue_group_refresh_{event} ON {table};\n"
        for table in INVENTORY_TABLES
        for event in ("insert", "update", "delete")
    )
    + """
ALTER TABLE device_groups DROP CONSTRAINT devices_devicegroup_parent_in_org;
DROP FUNCTION device_group_queue_inventory_change();
DROP TRIGGER device_hardware_queue_group_refresh ON device_hardware;
DROP FUNCTION device_group_queue_hardware_change();
DROP TRIGGER devices_queue_group_refresh_update ON devices;
DROP FUNCTION device_group_queue_device_change();
DROP TRIGGER devices_queue_group_refresh_insert ON devices;
DROP FUNCTION device_group_queue_new_device();
DROP TABLE device_group_refresh_queue;
DROP FUNCTION rmm_uuid7();
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0005_device_list_indexes"),
        ("orgs", "0002_enrollment_key_site_in_org"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="DeviceGroupMembershipLog",
            fields=[
                ("id", models.UUIDField(default=rmm.ids.uuid7, editable=False, primary_key=True, serialize=False)),
                (
                    "change",
                    models.CharField(
                        choices=[
                            ("added", "Added"),
                            ("removed", "Removed"),
                            ("pinned", "Pinned"),
                            ("unpinned", "Unpinned"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "reason",
                    models.CharField(choices=[("rule", "the group's rule"), ("manual", "a person")], max_length=10),
                ),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "actor_user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "device",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="devices.device",
                    ),
                ),
                (
                    "group",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="membership_log",
                        to="devices.devicegroup",
                    ),
                ),
                (
                    "org",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="orgs.organization",
                    ),
                ),
            ],
            options={
                "verbose_name": "group membership change",
                "db_table": "device_group_membership_log",
                "ordering": ["-at"],
                "indexes": [
                    models.Index(fields=["group", "-at"], name="device_group_log_group_at"),
                    models.Index(fields=["device", "-at"], name="device_group_log_device_at"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("change__in", ["added", "removed", "pinned", "unpinned"])),
                        name="devices_devicegroupmembershiplog_change_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("reason__in", ["rule", "manual"])),
                        name="devices_devicegroupmembershiplog_reason_valid",
                    ),
                ],
            },
        ),
        composite_foreign_key(
            table="device_group_membership_log",
            name="devices_devicegroupmembershiplog_device_in_org",
            columns=("device_id", "org_id"),
            references="devices",
            ref_columns=("id", "org_id"),
        ),
        composite_foreign_key(
            table="device_group_membership_log",
            name="devices_devicegroupmembershiplog_group_in_org",
            columns=("group_id", "org_id"),
            references="device_groups",
            ref_columns=("id", "org_id"),
        ),
        migrations.RunSQL(FORWARD, REVERSE),
    ]
