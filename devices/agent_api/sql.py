"""The plain SQL of the agent path: authentication lookups, the heartbeat write and the command claim.

Plain SQL because a DRF view + serializer + ORM check-in measured under 400 heartbeats/s on the benchmark machine,
a fifth of what this path does (bench/RESULTS.md, "How the hot path got there"). A heartbeat is a handful of Python
checks plus two statements per *batch* of heartbeats (``devices.agent_api.group_commit`` batches one process's):

1. ``IDENTITIES``: the batch's devices with their tenant's status, one indexed read. The token check itself is
   done in Python with ``hmac.compare_digest`` (the spec asks for a constant-time comparison).
2. ``HEARTBEAT_WRITE``: one statement with data-modifying CTEs that updates every device, inserts every telemetry
   sample (metrics and backlogs) and claims every device's pending commands (``_claim``), taking the whole batch as
   two JSON arrays of rows. One statement is atomic and, in autocommit, durable when it returns.

No lock is held between the two: the write re-checks the token hash and status the judgement saw and skips a
device that changed in between (its heartbeat is judged again), because a transaction held open across them sits
idle while the event loop serves other requests, holding row locks (RESULTS.md has what that did to p99).

The statements are prepared (``raw_cursor``): re-planning these CTE statements for every batch doubled
PostgreSQL's CPU per heartbeat. A prepared statement soon runs a generic plan, chosen on estimates alone, so both
take their batch's rows through ``unnest()``, which PostgreSQL estimates at 10 rows and joins to ``devices`` through
an index whatever the table's statistics say. A set-returning function (estimated at 100 rows) or ``= ANY(array)``
tipped to a sequential scan of every device per batch on a freshly enrolled, never analyzed table: in the benchmark
PostgreSQL went from 0.29 to 0.47-0.51 cores (issue 13, bench/RESULTS.md).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable

import psycopg
from django.db import connection

from devices.models.telemetry import METRICS

_IDENTITY = """
SELECT d.agent_id, d.id, d.org_id, d.site_id, d.agent_token_hash, d.previous_token_hash,
       d.previous_token_expires_at, d.agent_token_issued_at, d.status, o.status, p.status,
       d.mtls_cert_serial_number, d.mtls_cert_expires_at, o.settings ->> 'mtlsExpiredCertPolicy',
       -- Whether a maintenance window may be holding the device's commands (suppress_commands): only then does the
       -- claim ask alerts.services.windows, so an organization without such windows pays this index probe alone.
       EXISTS (SELECT 1 FROM maintenance_windows w
                WHERE w.org_id = d.org_id AND w.suppress_commands AND (w.recurrence <> 'none' OR w.ends_at > now()))
  FROM devices d
  JOIN organizations o ON o.id = d.org_id
  JOIN partners p ON p.id = o.partner_id
"""

IDENTITY = _IDENTITY + " WHERE d.agent_id = %s"
# The batch's agent ids joined as a table, not ``agent_id = ANY(%s)``: see the module docstring on generic plans.
IDENTITIES = _IDENTITY.replace(
    "  FROM devices d\n",
    "  FROM unnest(%s::text[]) AS wanted(agent_id)\n  JOIN devices d ON d.agent_id = wanted.agent_id\n",
)


def _claim(devices: str) -> str:
    """The claim of commands, written once for the heartbeat and GET .../commands: the CTEs ``claimable`` and
    ``claimed`` that mark ``sent`` up to 10 pending, unexpired commands of each device ``devices`` selects, oldest
    first, skipping commands another claim holds locked, and return them as (device_id, id, type, payload text,
    created_at)."""
    return f"""claimable AS (
    SELECT c.id
      FROM ({devices}) AS x(id)
     CROSS JOIN LATERAL (
            SELECT id FROM device_commands
             WHERE device_id = x.id AND status = 'pending' AND (expires_at IS NULL OR expires_at > %(now)s)
             ORDER BY created_at, id
             LIMIT 10
               FOR UPDATE SKIP LOCKED
           ) c
), claimed AS (
    UPDATE device_commands c
       SET status = 'sent', sent_at = %(now)s, updated_at = %(now)s
      FROM claimable
     WHERE c.id = claimable.id
    RETURNING c.device_id, c.id, c.type, c.payload::text, c.created_at
)"""  # noqa: S608 (``devices`` is one of this module's constants)


# The batch arrives as two JSON arrays of rows, touches and samples (``write_heartbeats``); these select lists turn
# each row back into typed columns. JSON because psycopg binds a Python list element by element in Python: the 20
# arrays of a 40-heartbeat batch took 0.76 ms of the writer's CPU to bind, the two JSON texts (json's C encoder)
# 0.29 ms (issue 13; a micro-benchmark of psycopg's PostgresQuery.convert on the benchmark's values).
_TOUCH_TYPES = (
    ("device_id", "uuid"),
    ("expected_token_hash", "text"),
    ("expected_status", "text"),
    ("mode", "text"),
    ("seen_at", "timestamptz"),
    ("ip", "text"),
    ("hostname", "text"),
    ("os_version", "text"),
    ("os_build", "text"),
    ("agent_version", "text"),
)
_SAMPLE_TYPES = (
    ("device_id", "uuid"),
    ("org_id", "uuid"),
    ("ts", "timestamptz"),
    *((metric.column, metric.sql_type) for metric in METRICS),
)


def _row_columns(types: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"(r ->> {index})::{sql_type} AS {name}" for index, (name, sql_type) in enumerate(types))


def _rows_of(parameter: str) -> str:
    """The rows of a JSON parameter as a table ``rows(r)``: through unnest(ARRAY(...)), not jsonb_array_elements()
    alone, for the generic plan's estimate (module docstring)."""
    return f"unnest(ARRAY(SELECT jsonb_array_elements(%({parameter})s::jsonb))) AS rows(r)"


_TOUCH_COLUMNS = _row_columns(_TOUCH_TYPES)
_SAMPLE_COLUMNS = _row_columns(_SAMPLE_TYPES)
_METRIC_COLUMNS = ", ".join(metric.column for metric in METRICS)

# mode: "ok" (a normal heartbeat), "seen" (a quarantined device: only last_seen_* is recorded),
# "quarantine" (a device whose client certificate expired under a quarantine policy: quarantined now).
# Unchanged facts arrive as NULL. updated_at moves only when something other than last_seen_* changed.
HEARTBEAT_WRITE = f"""
WITH seen AS (
    SELECT {_TOUCH_COLUMNS} FROM {_rows_of("touches")}
), touched AS (
    UPDATE devices d
       SET last_seen_at = s.seen_at,
           last_seen_ip = COALESCE(s.ip, d.last_seen_ip),
           status = CASE WHEN s.mode = 'quarantine' THEN 'quarantined'
                         WHEN s.mode = 'ok' AND d.status = 'offline' THEN 'online'
                         ELSE d.status END,
           quarantined_at = CASE WHEN s.mode = 'quarantine' THEN s.seen_at ELSE d.quarantined_at END,
           quarantined_reason = CASE WHEN s.mode = 'quarantine' THEN 'mtls_cert_expired'
                                     ELSE d.quarantined_reason END,
           hostname = COALESCE(s.hostname, d.hostname),
           os_version = COALESCE(s.os_version, d.os_version),
           os_build = COALESCE(s.os_build, d.os_build),
           agent_version = COALESCE(s.agent_version, d.agent_version),
           updated_at = CASE WHEN s.mode = 'quarantine'
                               OR (s.mode = 'ok' AND d.status = 'offline')
                               OR COALESCE(s.hostname, d.hostname) <> d.hostname
                               OR COALESCE(s.os_version, d.os_version) <> d.os_version
                               OR COALESCE(s.os_build, d.os_build) <> d.os_build
                               OR COALESCE(s.agent_version, d.agent_version) <> d.agent_version
                             THEN s.seen_at ELSE d.updated_at END
      FROM seen s
     WHERE d.id = s.device_id
       -- What the token check in Python saw must still hold (see the module docstring): otherwise the row is
       -- left alone, does not come back in RETURNING, and its heartbeat is judged again in the next batch.
       AND d.agent_token_hash IS NOT DISTINCT FROM s.expected_token_hash
       AND d.status = s.expected_status
    RETURNING d.id, s.mode
), samples AS (
    INSERT INTO device_telemetry (device_id, org_id, ts, {_METRIC_COLUMNS})
    SELECT t.* FROM (SELECT {_SAMPLE_COLUMNS} FROM {_rows_of("samples")}) AS t
     WHERE t.device_id IN (SELECT id FROM touched WHERE mode = 'ok')
    -- A sample the agent sends again (a backlog re-sent after a lost answer) is the same row: keep the first.
    ON CONFLICT DO NOTHING
), {_claim("SELECT id FROM touched WHERE mode = 'ok' AND id <> ALL(%(held)s::uuid[])")}
SELECT id, NULL::uuid, NULL, NULL, NULL::timestamptz FROM touched
UNION ALL
SELECT device_id, id, type, payload, created_at FROM claimed
"""  # noqa: S608 (column names from the metrics table; every value is bound)

CLAIM_COMMANDS = f"""
WITH {_claim("SELECT %(device_id)s::uuid")}
SELECT id, type, payload FROM claimed ORDER BY created_at, id
"""  # noqa: S608 (constant SQL)

# An answer carrying claimed commands could not be delivered (devices.agent_api.delivery): the claim is undone, but only
# while it is still exactly that claim (status sent, the same sent_at): a result the agent posted meanwhile, or a
# sweep that timed the command out, is left alone.
RELEASE_UNDELIVERED_COMMANDS = """
UPDATE device_commands
   SET status = 'pending', sent_at = NULL, updated_at = %(now)s
 WHERE device_id = %(device_id)s AND id = ANY(%(command_ids)s) AND status = 'sent' AND sent_at = %(sent_at)s
"""

QUARANTINE_EXPIRED_CERTIFICATE = """
UPDATE devices
   SET status = 'quarantined', quarantined_at = %(now)s, quarantined_reason = 'mtls_cert_expired',
       updated_at = %(now)s
 WHERE id = %(device_id)s AND status NOT IN ('quarantined', 'decommissioned')
"""


def raw_cursor() -> psycopg.Cursor:
    """A server-side-binding cursor on the thread's Django connection (same transaction as the ORM).

    Django's own cursors bind parameters client-side, which means PostgreSQL parses and plans every statement
    again; these statements are prepared after a few executions instead. Prepared statements live in the
    connection, and pooled connections keep them from one request to the next.

    Like Django's own cursors, it first drops a connection the server has closed (a PostgreSQL restart): without
    that, a connection kept across requests failed every call until it aged out. The check is a zero-timeout poll,
    not a round trip (``rmm.database.availability``), so the heartbeat batch pays nothing for it.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django turns automatic preparation off (None); psycopg then ignores prepare=True too. A threshold no query
        # reaches keeps Django's behaviour for every other statement while ours ask for it with prepare=True.
        raw.prepare_threshold = 2**31
    return psycopg.Cursor(raw)


def fetch_identity(cursor, agent_id: str) -> tuple | None:
    cursor.execute(IDENTITY, [agent_id], prepare=True)
    return cursor.fetchone()


def fetch_identities(cursor, agent_ids: Iterable[str]) -> list[tuple]:
    cursor.execute(IDENTITIES, [list(agent_ids)], prepare=True)
    return cursor.fetchall()


def write_heartbeats(
    cursor,
    *,
    now: dt.datetime,
    touches: Iterable[tuple],
    samples: Iterable[tuple],
    held: Iterable[uuid.UUID] = (),
) -> tuple[set[uuid.UUID], list[tuple]]:
    """Apply a batch in one statement (atomic on its own).

    ``touches`` are (device_id, expected token hash, expected status, mode, seen_at, ip, hostname, os_version,
    os_build, agent_version); ``samples`` are (device_id, org_id, ts, eight metrics). Answers the ids of the devices
    written (a device whose token or status changed since it was judged is not) and the commands claimed for them
    as (device_id, id, type, payload JSON text, created_at), oldest first. Devices in ``held`` (inside a maintenance
    window that suppresses commands) are written but claim nothing: their commands stay pending.
    """
    params = {
        "now": now,
        "held": list(held),
        "touches": _json_rows(touches),
        "samples": _json_rows(samples),
    }
    cursor.execute(HEARTBEAT_WRITE, params, prepare=True)
    written, claimed = set(), []
    for row in cursor.fetchall():
        if row[1] is None:
            written.add(row[0])
        else:
            claimed.append(row)
    claimed.sort(key=lambda row: (row[4], row[1]))
    return written, claimed


def _json_rows(rows: Iterable[tuple]) -> str:
    """Rows as one JSON array of arrays, as HEARTBEAT_WRITE reads them: uuids and times as text (times in ISO 8601
    with their offset, to the microsecond), numbers as numbers, None as null. Validation has refused what JSON or
    PostgreSQL could not carry (NaN, NUL characters, lone surrogates)."""
    return json.dumps(list(rows), separators=(",", ":"), default=_json_text)


def _json_text(value: object) -> str:
    # Called by the encoder for the values JSON has no type for: only these two occur in a batch. Not Django's
    # DjangoJSONEncoder: it cuts times to the millisecond, and a sample is keyed on its microsecond.
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"a heartbeat batch cannot carry {type(value).__name__}")


def claim_commands(cursor, *, device_id: uuid.UUID, now: dt.datetime) -> list[tuple]:  # see _claim
    """Claim up to 10 of the device's pending, unexpired commands, oldest first: (id, type, payload JSON text)."""
    cursor.execute(CLAIM_COMMANDS, {"device_id": device_id, "now": now}, prepare=True)
    return cursor.fetchall()


def release_undelivered_commands(
    cursor, *, device_id: uuid.UUID, command_ids: list[uuid.UUID], sent_at: dt.datetime, now: dt.datetime
) -> int:
    """Return the commands of one claim to ``pending`` (see RELEASE_UNDELIVERED_COMMANDS); answers how many."""
    cursor.execute(
        RELEASE_UNDELIVERED_COMMANDS,
        {"device_id": device_id, "command_ids": command_ids, "sent_at": sent_at, "now": now},
    )
    return cursor.rowcount


def quarantine_expired_certificate(cursor, *, device_id: uuid.UUID, now: dt.datetime) -> bool:
    cursor.execute(QUARANTINE_EXPIRED_CERTIFICATE, {"device_id": device_id, "now": now})
    return cursor.rowcount == 1
