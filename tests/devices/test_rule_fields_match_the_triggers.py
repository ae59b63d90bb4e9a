"""The rule fields a dynamic group can use (devices.rules.FIELDS) and the facts the refresh-queue triggers of
migration 0006 watch are two lists that must agree: a rule field no trigger watches would leave groups stale after
a change, and a trigger word no rule field uses is a column watched for nothing."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

from devices import rules
from devices.services import groups

TRIGGERS = importlib.import_module("devices.migrations.0006_group_membership_log_and_refresh_queue")


def change_key(field: rules.Field) -> str:
    """The word the refresh queue uses for a change that can affect ``field`` (groups._change_keys)."""
    return next(iter(groups._change_keys([field.name], site_bound=False)))


# Device columns no trigger watches, on purpose: every heartbeat changes last_seen_at, so the devices trigger's WHEN
# clause leaves it out and the periodic sweep re-evaluates conditions on it (rules.TIME_BASED_FIELDS).
NOT_WATCHED = {"lastSeenAt"}


def test_every_device_column_a_rule_can_name_is_watched_by_the_devices_trigger_under_its_rule_name():
    assert rules.TIME_BASED_FIELDS >= NOT_WATCHED
    watched = {
        field.column: field.name
        for field in rules.FIELDS.values()
        if field.source == rules.DEVICE and field.name not in NOT_WATCHED
    }
    assert watched == TRIGGERS.DEVICE_FIELDS


def test_every_inventory_source_a_rule_can_name_has_a_trigger_on_its_table_under_its_change_word():
    inventory = {
        rules._MODELS[field.source]._meta.db_table: change_key(field)
        for field in rules.FIELDS.values()
        if field.source in (rules.INTERFACES, rules.DISKS, rules.SOFTWARE)
    }
    assert inventory == TRIGGERS.INVENTORY_TABLES


def test_every_rule_field_is_either_queued_by_a_trigger_or_swept_for_the_clock():
    queued = set(TRIGGERS.DEVICE_FIELDS.values()) | set(TRIGGERS.INVENTORY_TABLES.values()) | {"hardware"}
    unwatched = {
        name for name, field in rules.FIELDS.items() if change_key(field) not in queued
    } - rules.TIME_BASED_FIELDS
    assert unwatched == set()


@pytest.mark.django_db
def test_the_triggers_in_the_database_are_the_migrations():
    """A later migration that replaced a trigger function without the lists above would fail here."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('device_group_queue_device_change'::regproc)")
        device_function = cursor.fetchone()[0]
        cursor.execute(
            "SELECT DISTINCT event_object_table FROM information_schema.triggers WHERE trigger_name LIKE %s",
            ["%queue_group_refresh%"],
        )
        tables = {row[0] for row in cursor.fetchall()}
    for column, name in TRIGGERS.DEVICE_FIELDS.items():
        assert f"NEW.{column} IS DISTINCT FROM OLD.{column}" in device_function
        assert f"'{name}'" in device_function
    assert tables == {*TRIGGERS.INVENTORY_TABLES, "devices", "device_hardware"}
