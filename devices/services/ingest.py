"""Writing inventory uploads: each replaces the device's rows of one kind in one transaction.

Items arrive validated (``devices.agent_api.schemas``), with the columns of their kind as attributes;
``inventory_rows`` puts them in the column order of ``KINDS``. Every row carries the device's ``org_id``; the
composite foreign key (device_id, org_id) → devices makes the database refuse a mismatch.

An upload is written as the difference from what is stored (``replace_inventory``). An agent sends the same list
after every scan, and the measured cost of an upload was almost all in deleting and re-inserting every row (issue
13, bench/uploads_bench.sh: for 300 software rows, 300 foreign-key checks and 300 entries in each of four indexes,
a trigram GIN among them, ~7 ms of PostgreSQL CPU against under 1 ms to read the rows back). So:

- the device's rows are read first, in one statement outside any transaction: when they are the upload (counted
  with their repeats, in any order), nothing is written and the group-refresh triggers (migration 0006) queue
  nothing;
- otherwise, under a per-device advisory lock, the rows are read again, stored rows the upload no longer has are
  deleted by id, rows it has that are not stored are written with ``COPY ... FROM STDIN`` (psycopg's
  ``cursor.copy``: one statement streaming rows instead of one INSERT each), and the rest stay as they are. The
  triggers queue the device once for the DELETE and once for the COPY.

A kept row keeps its id and ``updated_at``: the time the agent first reported it as it is.

Before all that, the upload's bytes: most agents re-send the very same body, and the view asks
:func:`upload_is_stored` first (one indexed read of ``device_inventory_digests``, migration 0009) and answers at
once when the digest of the body equals the digest stored with the device's last written upload of that kind. That
spares a re-sent 300-item software upload the JSON parse, the validation of every item and the read-back of 300
rows (issue 13, bench/uploads_bench.sh; figures in bench/RESULTS.md). ``replace_inventory`` keeps the digest in step
with the rows, in the same transaction as any change to them; any other writer of these tables must delete the
device's digest row.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import operator
import os
import time
import uuid
from collections import Counter
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
    return list(map(operator.attrgetter(*columns), items))  # every kind has several columns: each a tuple


def uuid7_texts(count: int) -> list[str]:
    """``count`` version-7 UUIDs (``rmm.ids.uuid7``, one clock reading) as 32 hex digits, which COPY reads as uuid.

    ``uuid7()`` costs ~3.4 µs (most of it building a ``uuid.UUID``), 1 ms of a 300-row upload; this ~0.6 µs each.
    """
    prefix = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}7"  # 48-bit milliseconds, version 7
    random = os.urandom(10 * count)
    texts = []
    for start in range(0, 10 * count, 10):
        bits = int.from_bytes(random[start : start + 10])
        # rand_a (12 bits), then the variant (0b10) over rand_b (62 bits)
        texts.append(f"{prefix}{bits >> 68:03x}{(bits & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000:016x}")
    return texts


# The first key of the advisory lock an upload takes for its (kind, device): "RMMI". The second is hashtext() of the
# table and device; two devices that share it only wait for each other.
_UPLOAD_LOCK_NAMESPACE = 0x524D4D49


@dataclass(frozen=True)
class _Statements:
    """The statements ``replace_inventory`` runs for one kind, composed once."""

    own_stamp: bool  # the rows end with their collected_at
    values: sql.Composed  # the device's rows, compared columns only
    rows: sql.Composed  # the same with each row's id first
    delete: sql.Composed
    copy: sql.Composed


@functools.cache
def _statements(kind: str) -> _Statements:
    spec = KINDS[kind]
    table = sql.Identifier(spec.table)
    own_stamp = spec.stamp == "collected_at"
    # The columns compared (collected_at is one), written after id, device_id and org_id (then updated_at, if not).
    compared = sql.SQL(", ").join(map(sql.Identifier, (*spec.columns, "collected_at") if own_stamp else spec.columns))
    written = ("id", "device_id", "org_id", *spec.columns, spec.stamp)
    return _Statements(
        own_stamp=own_stamp,
        values=sql.SQL("SELECT {} FROM {} WHERE device_id = %s").format(compared, table),
        rows=sql.SQL("SELECT id, {} FROM {} WHERE device_id = %s").format(compared, table),
        delete=sql.SQL("DELETE FROM {} WHERE device_id = %s AND id = ANY(%s::uuid[])").format(table),
        copy=sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(map(sql.Identifier, written))),
    )


# Bumped whenever what an upload's bytes are turned into changes (validation, the columns of a kind), so a body
# stored by an older version is read again rather than trusted.
_DIGEST_VERSION = b"rmm-inventory-1"


def upload_digest(kind: str, body: bytes) -> bytes:
    """The digest that identifies an upload of ``kind`` with exactly these bytes (SHA-256)."""
    digest = hashlib.sha256(b"%s\0%s\0" % (_DIGEST_VERSION, kind.encode()))
    digest.update(body)
    return digest.digest()


def upload_is_stored(*, device_id: uuid.UUID, kind: str, digest: bytes) -> bool:
    """Whether the device's last written upload of ``kind`` had exactly this digest, so its rows are stored as
    this upload would write them. Read without a lock, like the unchanged-rows check of ``replace_inventory``: an
    upload of the same device committed after this read comes after this one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM device_inventory_digests WHERE device_id = %s AND kind = %s AND digest = %s",
            [device_id, kind, digest],
        )
        return cursor.fetchone() is not None


def _remember_digest(cursor, *, device_id: uuid.UUID, kind: str, digest: bytes | None) -> None:
    if digest is None:
        cursor.execute("DELETE FROM device_inventory_digests WHERE device_id = %s AND kind = %s", [device_id, kind])
    else:
        cursor.execute(
            "INSERT INTO device_inventory_digests (device_id, kind, digest) VALUES (%s, %s, %s) "
            "ON CONFLICT (device_id, kind) DO UPDATE SET digest = EXCLUDED.digest "
            "WHERE device_inventory_digests.digest <> EXCLUDED.digest",
            [device_id, kind, digest],
        )


def replace_inventory(
    *,
    device_id: uuid.UUID,
    org_id: uuid.UUID,
    kind: str,
    rows: list[tuple],
    now: dt.datetime,
    digest: bytes | None = None,
) -> int:
    """Replace the device's rows of ``kind`` with ``rows``; returns how many rows were written (inserted or deleted).

    For ``registry-state`` and ``config-state`` each row ends with its ``collected_at`` (None → ``now``), which is
    compared like the other columns: an entry sent without its own time is always written again, so such an upload
    is never remembered by its digest.

    ``digest`` (:func:`upload_digest` of the body the rows came from) is stored with the rows, so the same bytes sent
    again are answered by :func:`upload_is_stored`.
    """
    statements = _statements(kind)
    if statements.own_stamp:
        if any(row[-1] is None for row in rows):
            digest = None
        wanted = [(*row[:-1], row[-1] or now) for row in rows]
    else:
        wanted = rows
    # The common case first, in one statement and without a transaction: the upload is what is stored. Without a
    # lock this is still exact: an upload of the same device committed after this read comes after this one.
    with connection.cursor() as cursor:
        cursor.execute(statements.values, [device_id])
        if Counter(cursor.fetchall()) == Counter(wanted):
            # A digest stored before still names these rows; this upload's names them too.
            if digest is not None:
                _remember_digest(cursor, device_id=device_id, kind=kind, digest=digest)
            return 0
    with transaction.atomic(), connection.cursor() as cursor:
        # Two uploads of one device at once would both read the same stored rows and both add theirs: the second
        # waits for the first, then reads what the first stored.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            [_UPLOAD_LOCK_NAMESPACE, f"{KINDS[kind].table} {device_id}"],
        )
        cursor.execute(statements.rows, [device_id])
        stored: dict[tuple, list[uuid.UUID]] = {}
        for id_, *values in cursor.fetchall():
            stored.setdefault(tuple(values), []).append(id_)
        new_rows = []
        for row in wanted:
            ids = stored.get(row)
            if ids:
                ids.pop()
                if not ids:
                    del stored[row]
            else:
                new_rows.append(row)
        gone = [id_ for ids in stored.values() for id_ in ids]
        if gone:
            # One array literal: the client-side binding would quote each of hundreds of ids on its own.
            cursor.execute(statements.delete, [device_id, "{" + ",".join(map(str, gone)) + "}"])
        if new_rows:
            tail = () if statements.own_stamp else (now,)
            with cursor.copy(statements.copy) as stream:
                for index, (id_, row) in enumerate(zip(uuid7_texts(len(new_rows)), new_rows, strict=True)):
                    if index and index % 1000 == 0:
                        time.sleep(0)  # let other requests run (a gevent yield under gevent workers)
                    stream.write_row((id_, device_id, org_id, *row, *tail))
        _remember_digest(cursor, device_id=device_id, kind=kind, digest=digest)
    return len(gone) + len(new_rows)


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
