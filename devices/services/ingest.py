"""Writing inventory uploads: each replaces the device's rows of one kind in one transaction.

Items arrive validated (``devices.agent_api.schemas``), with the columns of their kind as attributes;
``inventory_rows`` puts them in the column order of ``KINDS``. They are written
with ``COPY ... FROM STDIN`` (psycopg's ``cursor.copy``): a 10,000-row software list is one statement streaming
rows instead of 10,000 INSERTs, and COPY is also cheaper per row than a multi-row INSERT. Every row carries the
device's ``org_id``; the composite foreign key (device_id, org_id) → devices makes the database refuse a mismatch.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from psycopg import sql

from rmm.ids import uuid7


@dataclass(frozen=True)
class InventoryKind:
    """One kind of inventory upload: its table, its columns (after id, device_id, org_id) and its time column."""

    table: str
    columns: tuple[str, ...]
    stamp: str  # updated_at or collected_at: set to the upload's time unless the row brings its own


KINDS: dict[str, InventoryKind] = {
    "software": InventoryKind(
        "device_software", ("name", "version", "publisher", "install_date", "install_location"), "updated_at"
    ),
    "disks": InventoryKind(
        "device_disks",
        ("mount_point", "device", "fs_type", "total_gb", "used_gb", "free_gb", "used_percent", "health"),
        "updated_at",
    ),
    "network": InventoryKind(
        "device_network_interfaces",
        ("interface_name", "mac_address", "ip_address", "ip_type", "is_primary", "public_ip"),
        "updated_at",
    ),
    "connections": InventoryKind(
        "device_network_connections",
        ("protocol", "local_addr", "local_port", "remote_addr", "remote_port", "state", "pid", "process_name"),
        "updated_at",
    ),
    # The last column of these two is collected_at itself (the agent's time, or the upload's when it sent none).
    "registry-state": InventoryKind(
        "device_registry_entries", ("registry_path", "value_name", "value_data", "value_type"), "collected_at"
    ),
    "config-state": InventoryKind("device_config_entries", ("file_path", "config_key", "config_value"), "collected_at"),
}

HARDWARE_COLUMNS = (
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "ram_total_mb",
    "disk_total_gb",
    "gpu_model",
    "serial_number",
    "manufacturer",
    "model",
    "bios_version",
)


def inventory_rows(kind: str, items) -> list[tuple]:
    """``items`` (objects with the columns of ``kind`` as attributes) as rows for ``replace_inventory``."""
    spec = KINDS[kind]
    columns = (*spec.columns, "collected_at") if spec.stamp == "collected_at" else spec.columns
    return [tuple(getattr(item, column) for column in columns) for item in items]


def replace_inventory(
    *, device_id: uuid.UUID, org_id: uuid.UUID, kind: str, rows: list[tuple], now: dt.datetime
) -> int:
    """Replace the device's rows of ``kind`` with ``rows``; returns how many were written.

    For ``registry-state`` and ``config-state`` each row ends with its ``collected_at`` (None → ``now``).
    """
    spec = KINDS[kind]
    own_stamp = spec.stamp == "collected_at"
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(spec.table),
        sql.SQL(", ").join(map(sql.Identifier, ("id", "device_id", "org_id", *spec.columns, spec.stamp))),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql.SQL("DELETE FROM {} WHERE device_id = %s").format(sql.Identifier(spec.table)), [device_id])
        if rows:
            with cursor.copy(copy) as stream:
                for index, row in enumerate(rows):
                    if index and index % 1000 == 0:
                        time.sleep(0)  # let other requests run (a gevent yield under gevent workers)
                    if own_stamp:
                        stream.write_row((uuid7(), device_id, org_id, *row[:-1], row[-1] or now))
                    else:
                        stream.write_row((uuid7(), device_id, org_id, *row, now))
    return len(rows)


def upsert_hardware(*, device_id: uuid.UUID, org_id: uuid.UUID, hardware: object, now: dt.datetime) -> None:
    """Write the device's one hardware row (``hardware`` has HARDWARE_COLUMNS as attributes; None → empty)."""
    values = [getattr(hardware, column) for column in HARDWARE_COLUMNS]
    text_columns = {"cpu_model", "gpu_model", "serial_number", "manufacturer", "model", "bios_version"}
    values = [
        ("" if value is None else value) if column in text_columns else value
        for column, value in zip(HARDWARE_COLUMNS, values, strict=True)
    ]
    columns = ("id", "device_id", "org_id", *HARDWARE_COLUMNS, "updated_at")
    statement = sql.SQL(
        "INSERT INTO device_hardware ({columns}) VALUES ({values}) ON CONFLICT (device_id) DO UPDATE SET {updates}"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in (*HARDWARE_COLUMNS, "updated_at")
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [uuid7(), device_id, org_id, *values, now])
