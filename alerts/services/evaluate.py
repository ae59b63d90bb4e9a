"""The evaluator: every enabled rule against the devices in its scope, set-wise, every ALERT_EVALUATION_SECONDS.

One pass (:func:`evaluate_all`, the ``evaluate_alerts`` job) does, per rule and in one transaction per rule:

1. the *scope*: the devices of the rule's organization (every organization of its partner for a partner rule),
   narrowed to its site and device group, without devices decommissioned, quarantined, in maintenance or inside a
   window that suppresses alerts (``alerts.services.windows.covered_devices_q``);
2. the *observations*: the condition compiled to SQL (``alerts.conditions.compile_condition``): rows of (device,
   subject, value, holds), holds NULL meaning no data;
3. one statement that, from those and the rule's memory (``alert_states``) and active alerts, decides and writes
   every transition at once: pending states start (``holding_since``), alerts open once the condition has held
   ``for_minutes`` (``INSERT … ON CONFLICT DO NOTHING`` on the partial unique index, so two evaluators racing open
   one), outside the cooldown after the last resolve; open alerts get their latest value; a condition that stops
   holding starts ``clear_since`` and, with ``auto_resolve``, resolves the alert (``condition_cleared``) once it
   has not held for ``resolve_after_minutes``; devices that left the scope or are suppressed lose their state, so
   after a window ``for_minutes`` counts afresh and nothing is replayed (their alerts stay as they were);
4. ``alerts.services.notify.announce`` once for the alerts the statement opened and once for those it resolved, in
   the same transaction.

The scheduler's pass (``pace=True``) spares the agents' requests: it pauses after each step (:class:`_Pacer`), runs on
one core, writes the aggregates several rules share in slices of devices, and opens a rule's alerts in statements of
about OPENINGS_PER_STATEMENT, whole sites at a time, each in its own transaction with its announcements (so a site's
openings still make one digest). A rule's first pass at 100,000 devices opens tens of thousands of alerts at once.

Storm control, **site outage**: before the rules, each ``offline`` rule counts per site the watched devices that are
(or by the next pass will be) silent long enough to alert; when that is at least 80 % of the site's watched devices
and at least 5, one site-level alert opens (no device, no rule, subject ``site:<id>``) and the per-device offline
alerts of that site neither open nor notify while it is open. It resolves when no offline rule sees the outage.

Every moment is ``now`` bound as a parameter (the database clock is never read), so tests drive the clock, and a
second pass at the same ``now`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from alerts import conditions
from alerts.models import (
    Alert,
    AlertRule,
    AlertStatus,
    NotificationChannel,
    NotificationEvent,
    ResolveReason,
    Severity,
)
from alerts.services import notify
from devices.models import Device, DeviceGroupMembership
from orgs.models import Organization, Site

logger = logging.getLogger(__name__)

PREVIEW_SAMPLE = 50
SITE_OUTAGE_SHARE = 0.8  # of a site's watched devices
SITE_OUTAGE_MINIMUM = 5  # devices
SITE_SUBJECT = "site:{}"
# A paced pass writes each shared aggregate in statements of this many watched devices, each a step of its pacer:
# over the 1,500/s benchmark's 10,000 agents, one statement for all of them held a core for 0.2-0.3 s, 2,500 of
# them about 0.1 s (EXPLAIN ANALYZE, PostgreSQL reading that range of the samples' primary key).
AGGREGATE_SLICE_DEVICES = 2_500
# A paced pass opens a rule's alerts in statements of about this many, whole sites at a time, each a step of its
# pacer: the first pass after the 1,500/s benchmark's 50 rules were created opened 5,000-6,000 alerts in one
# statement of 0.18-0.37 s, and its COMMIT took another 0.09-0.28 s (bench/RESULTS.md).
OPENINGS_PER_STATEMENT = 1_000
_UNWATCHED = (Device.Status.DECOMMISSIONED, Device.Status.QUARANTINED, Device.Status.MAINTENANCE)
_ACTIVE = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass
class EvaluationReport:
    """What one pass did; ``str()`` is the job's one-line report."""

    rules: int = 0
    opened: int = 0
    resolved: int = 0
    site_alerts_opened: int = 0
    site_alerts_resolved: int = 0
    failed_rules: list[uuid.UUID] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"rules: {self.rules}; opened: {self.opened}; resolved: {self.resolved}; "
            f"site outages opened: {self.site_alerts_opened}, resolved: {self.site_alerts_resolved}"
        )
        return text + (f"; failed rules: {len(self.failed_rules)}" if self.failed_rules else "")


# --- scope -----------------------------------------------------------------------------------------------------------


def _suppressed_q(now: dt.datetime) -> Q:
    """Devices inside a window that suppresses alerts now, or in maintenance."""
    from alerts.services.windows import covered_devices_q

    return covered_devices_q(now=now, purpose="alerts")


def _org_ids(*, org_id: Any = None, partner_id: Any = None) -> list[Any]:
    if org_id is not None:
        return [org_id]
    return list(Organization.objects.filter(partner_id=partner_id).values_list("pk", flat=True))


_SCOPE_COLUMNS = ("id", "org_id", "site_id", "last_seen_at", "created_at")


def _scope(*, org_ids: list[Any], site_id: Any, device_group_id: Any, suppressed: Q) -> tuple[str, list[Any]]:
    """The SQL (and parameters) of the devices a rule watches, read from ``devices`` (the preview's scope; a pass
    reads :class:`WatchedDevices`): ``id, org_id, site_id, last_seen_at, created_at``."""
    devices = Device.objects.filter(org_id__in=org_ids).exclude(status__in=_UNWATCHED)
    if site_id is not None:
        devices = devices.filter(site_id=site_id)
    if device_group_id is not None:
        devices = devices.filter(
            Exists(DeviceGroupMembership.objects.filter(group_id=device_group_id, device_id=OuterRef("pk")))
        )
    devices = devices.exclude(suppressed)
    sql, params = devices.order_by().values(*_SCOPE_COLUMNS).query.sql_with_params()
    return sql, list(params)


@dataclass(frozen=True)
class WatchedDevices:
    """The devices a pass watches (not decommissioned, quarantined, in maintenance or inside a window that
    suppresses alerts), with the columns every rule's scope needs, written once per pass into a temporary table of
    the pass's connection. Reading each rule's scope from ``devices`` (a wide table: 5,000 heap pages per
    organization of 10,000 devices) cost 20 to 30 ms a rule and the offline rules another 50 ms to join ``devices``
    again; 90 rules at 100,000 devices, measured."""

    table: str = "alert_pass_watched_devices"
    # metric_key → a temporary table of (device_id, value) over every watched device, for the metric aggregates
    # that two rules or more of the pass share (:meth:`share_metric_aggregate`).
    metric_tables: dict[tuple, str] = field(default_factory=dict)

    def slices(self, size: int) -> list[tuple[Any, Any]]:
        """The watched devices cut into ranges of ``size`` device ids in order: ``(first, end)`` pairs, the first
        id inclusive and the end exclusive, ``None`` for no bound. Together they cover every id, so a device that
        is not (or no longer) watched falls in one range too."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM {self.table}) numbered
                     WHERE n > 1 AND (n - 1) %% %s = 0 ORDER BY id""",  # noqa: S608
                [size],
            )
            bounds = [row[0] for row in cursor.fetchall()]
        return list(zip([None, *bounds], [*bounds, None], strict=True))

    def share_metric_aggregate(
        self,
        key: tuple,
        condition: dict,
        *,
        now: dt.datetime,
        slices: Sequence[tuple[Any, Any]],
        pacer: _Pacer,
    ) -> None:
        """Write one shared aggregate (:func:`_metric_aggregates_to_share`) to a temporary table of the pass, one
        statement per slice of the devices (:meth:`slices`), each a step of ``pacer``. On failure its rules compute
        the aggregate themselves, and fail alone if they must."""
        name = f"alert_pass_metric_{len(self.metric_tables)}"
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
            for number, devices in enumerate(slices):
                with pacer.step(), transaction.atomic(), connection.cursor() as cursor:
                    sql, params = conditions.metric_aggregate_sql(condition, now, devices=devices)
                    in_range, range_params = conditions.id_range_sql("id", devices)
                    write = f"CREATE TEMPORARY TABLE {name} AS" if number == 0 else f"INSERT INTO {name}"
                    cursor.execute(
                        f"{write} WITH scope AS (SELECT id FROM {self.table} WHERE true{in_range}) {sql}",  # noqa: S608
                        [*range_params, *params],
                    )
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {name}")
        except Exception:
            logger.exception("the shared aggregate %s could not be computed", key)
            with suppress(DatabaseError), connection.cursor() as cursor:  # the next pass drops it otherwise
                cursor.execute(f"DROP TABLE IF EXISTS {name}")  # the slices written before the failure
            return
        self.metric_tables[key] = name

    def scope(self, *, org_ids: list[Any], site_id: Any, device_group_id: Any) -> tuple[str, list[Any]]:
        """The SQL (and parameters) of the devices a rule watches: ``id, org_id, site_id, last_seen_at,
        created_at``."""
        sql = f"SELECT {', '.join(_SCOPE_COLUMNS)} FROM {self.table} WHERE org_id = ANY(%s::uuid[])"  # noqa: S608
        params: list[Any] = [list(org_ids)]
        if site_id is not None:
            sql += " AND site_id = %s::uuid"
            params.append(site_id)
        if device_group_id is not None:
            sql += " AND id IN (SELECT device_id FROM device_group_memberships WHERE group_id = %s::uuid)"
            params.append(device_group_id)
        return sql, params


def _metric_aggregates_to_share(rules: Sequence[AlertRule]) -> list[tuple[tuple, dict]]:
    """The aggregates (metric, aggregate, window) that several metric rules of the pass watch, each with one of
    those rules' conditions. :meth:`WatchedDevices.share_metric_aggregate` computes each once, over every watched
    device, and each of those rules then reads its scope's devices from that table instead of aggregating the
    samples again. The same CPU rule per organization is common; in bench/alerts_bench.py five rules share each of
    four aggregates, which cost 0.22-0.33 s each before (see bench/RESULTS.md)."""
    by_key: dict[tuple, list[dict]] = {}
    for rule in rules:
        condition = rule.condition
        if isinstance(condition, dict) and condition.get("kind") == "metric":
            try:
                by_key.setdefault(conditions.metric_key(condition), []).append(condition)
            except (KeyError, TypeError):  # a stored condition the validator would refuse: its rule fails alone
                continue
    return [(key, found[0]) for key, found in by_key.items() if len(found) > 1]


@contextmanager
def watched_devices(*, now: dt.datetime) -> Iterator[WatchedDevices]:
    """The pass's :class:`WatchedDevices`, dropped when the pass ends. A temporary table belongs to its session,
    so two evaluators on two connections each have their own."""
    watched = WatchedDevices()
    devices = Device.objects.exclude(status__in=_UNWATCHED).exclude(_suppressed_q(now))
    sql, params = devices.order_by().values(*_SCOPE_COLUMNS).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {watched.table}")
        cursor.execute(f"CREATE TEMPORARY TABLE {watched.table} AS {sql}", params)
        cursor.execute(f"CREATE INDEX ON {watched.table} (org_id, site_id)")
        cursor.execute(f"ANALYZE {watched.table}")
    try:
        yield watched
    finally:
        with connection.cursor() as cursor:
            for table in [watched.table, *watched.metric_tables.values()]:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")


# --- one rule ----------------------------------------------------------------------------------------------------

# The state machine of one rule, as one statement. Every CTE reads the same snapshot, so the plan is computed from
# the state before the pass and each row is written at most once. Two evaluators racing: the second's INSERT of an
# alert meets the first's on the partial unique index (DO NOTHING: it returns no row, so it announces nothing); its
# UPDATEs re-check the status on the row the first committed; its state upsert keeps the earliest holding_since.
_RULE_STATEMENT = """
WITH scope AS MATERIALIZED ({scope}),
observed (device_id, subject, value, holds) AS MATERIALIZED ({observed}),
keys AS (
    SELECT device_id, subject FROM observed
    UNION SELECT device_id, subject FROM alert_states WHERE rule_id = %(rule_id)s::uuid
    UNION SELECT device_id, subject FROM alerts
           WHERE rule_id = %(rule_id)s::uuid AND status IN ('open', 'acknowledged')
),
plan AS (
    SELECT k.device_id, k.subject, sc.id IS NOT NULL AS in_scope, sc.org_id, sc.site_id,
           CASE WHEN sc.id IS NULL THEN NULL
                WHEN o.device_id IS NOT NULL THEN o.holds
                WHEN %(absent_is_clear)s::bool THEN false END AS holds,
           o.value, st.device_id IS NOT NULL AS has_state, st.holding_since, st.clear_since, st.value AS state_value,
           a.id AS alert_id, a.value AS alert_value, a.last_evaluated_at AS alert_evaluated_at
      FROM keys k
      LEFT JOIN scope sc ON sc.id = k.device_id
      LEFT JOIN observed o ON o.device_id = k.device_id AND o.subject = k.subject
      LEFT JOIN alert_states st ON st.rule_id = %(rule_id)s::uuid AND st.device_id = k.device_id
                               AND st.subject = k.subject
      LEFT JOIN alerts a ON a.rule_id = %(rule_id)s::uuid AND a.device_id = k.device_id AND a.subject = k.subject
                        AND a.status IN ('open', 'acknowledged')
),
next AS (
    SELECT plan.*,
           CASE WHEN holds THEN COALESCE(holding_since, %(now)s::timestamptz) WHEN NOT holds THEN NULL
                ELSE holding_since END AS new_holding,
           CASE WHEN holds THEN NULL WHEN NOT holds THEN COALESCE(clear_since, %(now)s::timestamptz)
                ELSE clear_since END AS new_clear,
           COALESCE(value, state_value) AS new_value
      FROM plan
),
decided AS (
    SELECT next.*,
           COALESCE(holds AND alert_id IS NULL AND new_holding <= %(open_before)s::timestamptz
                    AND NOT site_id = ANY(%(blocked_sites)s::uuid[]), false) AS may_open,
           COALESCE(alert_id IS NOT NULL AND NOT holds AND %(auto_resolve)s::bool
                    AND new_clear <= %(resolve_before)s::timestamptz, false) AS resolves
      FROM next
),
refreshing AS (
    -- Decided here, from the alert's row already joined, so that a pass with nothing to refresh never hashes the
    -- whole alerts table for the UPDATE below (nested loops are off).
    SELECT alert_id, new_value FROM decided
     WHERE holds IS NOT NULL AND NOT resolves AND alert_id IS NOT NULL
       AND ((NOT %(value_follows_clock)s::bool AND alert_value IS DISTINCT FROM new_value)
            OR alert_evaluated_at <= %(refresh_before)s::timestamptz)
),
wanted AS (
    SELECT d.* FROM decided d
     WHERE d.may_open
       AND NOT EXISTS (SELECT 1 FROM alerts r
                        WHERE r.device_id = d.device_id AND r.rule_id = %(rule_id)s::uuid AND r.subject = d.subject
                          AND r.status = 'resolved' AND r.resolved_at > %(cooldown_after)s::timestamptz)
),
wanted_sites AS (
    -- With an open_limit (a paced pass), the sites in order until about that many openings: whole sites, so that
    -- a site's openings are announced together (one digest). The others wait for the rule's next statement; their
    -- states are written below as for any device still holding, so that statement opens them.
    SELECT site_id, sum(count(*)) OVER (ORDER BY site_id) - count(*) < %(open_limit)s::int AS this_statement
      FROM wanted GROUP BY site_id
),
opening AS (
    SELECT * FROM wanted
     WHERE %(open_limit)s::int IS NULL OR site_id IN (SELECT site_id FROM wanted_sites WHERE this_statement)
),
opened AS (
    -- last_notified_at (renotify_minutes count from it) is written here, not by a second UPDATE of every row
    -- opened: 26,000 openings of a first pass at 100,000 devices, most of rules without channels.
    INSERT INTO alerts (id, org_id, site_id, device_id, rule_id, subject, severity, status, title, message, value,
                        opened_at, last_evaluated_at, last_notified_at)
    SELECT gen_random_uuid(), o.org_id, o.site_id, o.device_id, %(rule_id)s::uuid, o.subject, %(severity)s, 'open',
           left(replace(replace(replace(%(title)s::text, '{value}', t.value_text), '{subject}', o.subject),
                        '{device}', t.label), 255),
           replace(replace(replace(%(message)s::text, '{value}', t.value_text), '{subject}', o.subject),
                   '{device}', t.label),
           o.value, %(now)s::timestamptz, %(now)s::timestamptz, %(now)s::timestamptz
      FROM opening o JOIN devices dv ON dv.id = o.device_id
     CROSS JOIN LATERAL (SELECT COALESCE(NULLIF(dv.display_name, ''), dv.hostname) AS label,
                                COALESCE(round(o.value::numeric, %(decimals)s::int)::text, 'no value') AS value_text) t
     ORDER BY o.device_id, o.subject
    ON CONFLICT DO NOTHING
    RETURNING id
),
resolved AS (
    UPDATE alerts a SET status = 'resolved', resolved_at = %(now)s::timestamptz, resolved_by_id = NULL,
                        resolve_reason = 'condition_cleared', last_evaluated_at = %(now)s::timestamptz
      FROM decided d
     WHERE d.resolves AND a.id = d.alert_id AND a.status IN ('open', 'acknowledged')
    RETURNING a.id
),
refreshed AS (
    -- Every open alert rewritten every pass only to move last_evaluated_at cost 1.4 s per 20,000 alerts of one
    -- rule (measured): it moves when the value changes, or at most every REFRESH_MINUTES. An offline alert's value
    -- (minutes of silence) changes with the clock alone, so it moves only every REFRESH_MINUTES: rewriting 26,000
    -- offline alerts every pass was 10 of the 14 s of a pass at 100,000 devices (measured).
    UPDATE alerts a SET value = r.new_value, last_evaluated_at = %(now)s::timestamptz
      FROM refreshing r
     WHERE a.id = r.alert_id AND a.status IN ('open', 'acknowledged')
    RETURNING a.id
),
dropped AS (
    DELETE FROM alert_states st USING decided d
     WHERE st.rule_id = %(rule_id)s::uuid AND st.device_id = d.device_id AND st.subject = d.subject AND d.has_state
       AND (NOT d.in_scope OR (NOT d.holds AND (d.alert_id IS NULL OR d.resolves)))
    RETURNING 1
),
kept AS (
    -- Written when it starts or turns (holding / clear), not for every new value: the value is only a fallback.
    INSERT INTO alert_states AS st (rule_id, device_id, subject, holding_since, clear_since, value, updated_at)
    SELECT %(rule_id)s::uuid, d.device_id, d.subject, d.new_holding, d.new_clear, d.new_value, %(now)s::timestamptz
      FROM decided d
     WHERE d.in_scope AND (d.holds OR (NOT d.holds AND d.alert_id IS NOT NULL AND NOT d.resolves))
       AND (NOT d.has_state OR d.new_holding IS DISTINCT FROM d.holding_since
            OR d.new_clear IS DISTINCT FROM d.clear_since)
     ORDER BY d.device_id, d.subject
    ON CONFLICT (rule_id, device_id, subject) DO UPDATE SET
        holding_since = CASE WHEN EXCLUDED.holding_since IS NULL THEN NULL
                             ELSE LEAST(st.holding_since, EXCLUDED.holding_since) END,
        clear_since = CASE WHEN EXCLUDED.clear_since IS NULL THEN NULL
                           ELSE LEAST(st.clear_since, EXCLUDED.clear_since) END,
        value = EXCLUDED.value,
        updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT ARRAY(SELECT id FROM opened), ARRAY(SELECT id FROM resolved),
       (SELECT count(*) FROM wanted) - (SELECT count(*) FROM opening),
       (SELECT count(*) FROM refreshed), (SELECT count(*) FROM dropped), (SELECT count(*) FROM kept)
"""
REFRESH_MINUTES = 5
_MARKER = re.compile(r"%\((\w+)\)s|\{(scope|observed)\}")


def _bind(template: str, values: dict[str, Any], fragments: dict[str, tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """The template's ``%(name)s`` values and ``{fragment}`` SQL (with its own ``%s`` parameters) as one statement
    with positional parameters in order: the values are bound right where the planner needs them as constants
    (a rule id read from a CTE made it join 20,000 alerts with 20,000 keys by a nested loop, 48 s, measured)."""
    sql: list[str] = []
    params: list[Any] = []
    position = 0
    for match in _MARKER.finditer(template):
        sql.append(template[position : match.start()])
        if match.group(1):
            sql.append("%s")
            params.append(values[match.group(1)])
        else:
            fragment_sql, fragment_params = fragments[match.group(2)]
            sql.append(fragment_sql)
            params.extend(fragment_params)
        position = match.end()
    sql.append(template[position:])
    return "".join(sql), params


@dataclass(frozen=True)
class RulePass:
    """What one rule's statement wrote: the ids of the alerts it opened and resolved, and how many openings it left
    to the rule's next statement (``open_limit``)."""

    opened: list[uuid.UUID]
    resolved: list[uuid.UUID]
    deferred: int = 0


def _alerts(ids: Sequence[uuid.UUID]) -> list[Alert]:
    return list(Alert.objects.filter(pk__in=ids).select_related("device", "site", "org").order_by("opened_at", "id"))


def evaluate_rule(
    rule: AlertRule,
    *,
    now: dt.datetime,
    watched: WatchedDevices,
    blocked_sites: Sequence[Any] = (),
    org_ids: list[Any] | None = None,
    open_limit: int | None = None,
) -> RulePass:
    """One rule's pass in one transaction (see the module docstring); announces what it opened and resolved.
    ``org_ids``: the rule's organizations, when the pass already knows them (a partner rule's are read once).
    ``open_limit``: open the alerts of whole sites, in order, until about this many, and leave the rest to the next
    call (:attr:`RulePass.deferred`); ``None``, every alert due."""
    if org_ids is None:
        org_ids = _org_ids(org_id=rule.org_id, partner_id=rule.partner_id)
    scope_sql, scope_params = watched.scope(org_ids=org_ids, site_id=rule.site_id, device_group_id=rule.device_group_id)
    compiled = conditions.compile_condition(
        rule.condition, now=now, org_ids=org_ids, metric_tables=watched.metric_tables
    )
    text = conditions.describe(rule.condition, rule_name=rule.name)
    sql, params = _bind(
        _RULE_STATEMENT,
        {
            "rule_id": rule.pk,
            "now": now,
            "absent_is_clear": compiled.absent_is_clear,
            "auto_resolve": rule.auto_resolve,
            "open_before": now - dt.timedelta(minutes=rule.for_minutes),
            "resolve_before": now - dt.timedelta(minutes=rule.resolve_after_minutes),
            "cooldown_after": now - dt.timedelta(minutes=rule.cooldown_minutes),
            "refresh_before": now - dt.timedelta(minutes=REFRESH_MINUTES),
            "value_follows_clock": compiled.value_follows_clock,
            "blocked_sites": list(blocked_sites),
            "severity": rule.severity,
            "title": text.title,
            "message": text.message,
            "decimals": text.decimals,
            "open_limit": open_limit,
        },
        {"scope": (scope_sql, scope_params), "observed": (compiled.sql, compiled.params)},
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Measured at 20,000 devices: the planner's row estimates through the CTEs run into millions, so
            # PostgreSQL JIT-compiled the statement (2.1 s of compiling for 0.4 s of work); and right after a mass
            # opening, before autovacuum analyzes alerts, it believed a rule had one active alert and joined 20,000
            # keys to 20,000 alerts by a nested loop (48 s). Every input here is a set: hash and merge joins.
            # Both in one round trip (no parameters: the simple protocol takes two statements).
            cursor.execute("SET LOCAL jit = off; SET LOCAL enable_nestloop = off")
            cursor.execute(sql, params)
            opened_ids, resolved_ids, deferred, *_counts = cursor.fetchone()
        # A rule without an enabled channel has nothing to write (the opening statement already set
        # last_notified_at): loading its 26,000 openings of a first pass only to find no channel cost seconds.
        if (opened_ids or resolved_ids) and rule.channels.filter(enabled=True).exists():
            if opened_ids:
                notify.announce(event=NotificationEvent.OPENED, rule=rule, alerts=_alerts(opened_ids))
            if resolved_ids:
                notify.announce(event=NotificationEvent.RESOLVED, rule=rule, alerts=_alerts(resolved_ids))
    return RulePass(opened=list(opened_ids), resolved=list(resolved_ids), deferred=deferred)


# --- site outages ------------------------------------------------------------------------------------------------


@dataclass
class _SiteCount:
    watched: int
    silent: int
    rule: AlertRule


def _site_counts(rule: AlertRule, *, now: dt.datetime, watched: WatchedDevices) -> dict[Any, _SiteCount]:
    """Per site the offline rule watches: its watched devices, and those silent long enough to alert by the next
    pass. Counting one pass ahead matters: heartbeats are spread over a minute, so when a site goes dark its
    devices cross the limit over two passes, and counting only those past it would let the first half open (and
    announce) per-device alerts before the outage is seen. At least one device must be past the limit itself."""
    org_ids = _org_ids(org_id=rule.org_id, partner_id=rule.partner_id)
    scope_sql, scope_params = watched.scope(org_ids=org_ids, site_id=rule.site_id, device_group_id=rule.device_group_id)
    alerting = now - dt.timedelta(minutes=rule.condition["minutes"] + rule.for_minutes)
    ahead = alerting + dt.timedelta(seconds=settings.ALERT_EVALUATION_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.site_id, count(*),
                   count(*) FILTER (WHERE COALESCE(s.last_seen_at, s.created_at) < %s),
                   count(*) FILTER (WHERE COALESCE(s.last_seen_at, s.created_at) < %s)
              FROM ({scope_sql}) s
             GROUP BY s.site_id
            """,  # noqa: S608 (the scope is SQL Django compiled; values are bound)
            [ahead, alerting, *scope_params],
        )
        return {
            site_id: _SiteCount(watched=watched, silent=silent if past else 0, rule=rule)
            for site_id, watched, silent, past in cursor.fetchall()
        }


def _is_outage(count: _SiteCount) -> bool:
    return count.silent >= SITE_OUTAGE_MINIMUM and count.silent >= SITE_OUTAGE_SHARE * count.watched


@dataclass
class _SiteOutcome:
    opened: int = 0
    resolved: int = 0
    blocked_sites: list[Any] = field(default_factory=list)


def _evaluate_site_outages(
    offline_rules: list[AlertRule], *, now: dt.datetime, watched: WatchedDevices
) -> _SiteOutcome:
    """Open a site-level alert for every site in outage under some offline rule; resolve those no rule sees any
    more. Answers the sites with an open site alert, whose per-device offline alerts must not open."""
    outages: dict[Any, _SiteCount] = {}  # the outage as the highest-severity rule that sees it counts it
    seeing: dict[Any, list[AlertRule]] = {}  # every rule that sees it: its opening goes to all their channels
    watching: dict[Any, AlertRule] = {}  # a rule that watches the site, named in the payload of a resolve
    for rule in offline_rules:
        for site_id, count in _site_counts(rule, now=now, watched=watched).items():
            watching.setdefault(site_id, rule)
            if _is_outage(count):
                seeing.setdefault(site_id, []).append(rule)
                known = outages.get(site_id)
                if (
                    known is None
                    or _SEVERITY_RANK[Severity(rule.severity)] > _SEVERITY_RANK[Severity(known.rule.severity)]
                ):
                    outages[site_id] = count
    outcome = _SiteOutcome()
    with transaction.atomic():
        active = {
            alert.site_id: alert
            for alert in Alert.objects.select_for_update()
            .filter(rule__isnull=True, device__isnull=True, subject__startswith="site:", status__in=_ACTIVE)
            .select_related("site", "org")
        }
        sites = {site.pk: site for site in Site.objects.filter(pk__in=set(outages)).select_related("org")}
        for site_id, count in outages.items():
            share = 100.0 * count.silent / count.watched
            if site_id in active:
                Alert.objects.filter(pk=active[site_id].pk).exclude(value=share, last_evaluated_at=now).update(
                    value=share, last_evaluated_at=now
                )
                continue
            if _site_in_cooldown(site_id, count.rule, now):
                continue
            alert = _open_site_alert(sites[site_id], count, now=now)
            if alert is not None:
                outcome.opened += 1
                active[site_id] = alert
                notify.announce(
                    event=NotificationEvent.OPENED,
                    rule=count.rule,
                    alerts=[alert],
                    channels=_channels_of(seeing[site_id]),
                )
        for site_id, alert in list(active.items()):
            if site_id in outages:
                continue
            updated = Alert.objects.filter(pk=alert.pk, status__in=_ACTIVE).update(
                status=AlertStatus.RESOLVED,
                resolved_at=now,
                resolved_by=None,
                resolve_reason=ResolveReason.CONDITION_CLEARED,
                last_evaluated_at=now,
            )
            del active[site_id]
            if updated:
                outcome.resolved += 1
                alert.refresh_from_db()
                notify.announce(
                    event=NotificationEvent.RESOLVED,
                    rule=watching.get(site_id),
                    alerts=[alert],
                    channels=_channels_told_of_opening(alert),
                )
    outcome.blocked_sites = list(active)
    return outcome


def _channels_of(rules: list[AlertRule]) -> list[NotificationChannel]:
    """The enabled channels of ``rules``, each once (the spec: a dark site is one notification per channel)."""
    return list(NotificationChannel.objects.filter(enabled=True, rules__in=rules).distinct().order_by("id"))


def _channels_told_of_opening(alert: Alert) -> list[NotificationChannel]:
    """A site alert's resolve goes where its opening went (no rule may see the outage any more to ask)."""
    return list(
        NotificationChannel.objects.filter(
            enabled=True, notifications__alert=alert, notifications__event=NotificationEvent.OPENED
        )
        .distinct()
        .order_by("id")
    )


def _site_in_cooldown(site_id: Any, rule: AlertRule, now: dt.datetime) -> bool:
    return Alert.objects.filter(
        rule__isnull=True,
        device__isnull=True,
        subject=SITE_SUBJECT.format(site_id),
        status=AlertStatus.RESOLVED,
        resolved_at__gt=now - dt.timedelta(minutes=rule.cooldown_minutes),
    ).exists()


def _open_site_alert(site: Site, count: _SiteCount, *, now: dt.datetime) -> Alert | None:
    """INSERT … ON CONFLICT DO NOTHING: a racing evaluator that opened it first wins, and this one announces
    nothing."""
    minutes = count.rule.condition["minutes"]
    share = 100.0 * count.silent / count.watched
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO alerts (id, org_id, site_id, device_id, rule_id, subject, severity, status, title, message,
                                value, opened_at, last_evaluated_at, last_notified_at)
            VALUES (gen_random_uuid(), %s, %s, NULL, NULL, %s, %s, 'open', %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            [
                site.org_id,
                site.pk,
                SITE_SUBJECT.format(site.pk),
                count.rule.severity,
                f"Site unreachable: {site.name} ({site.org.name})"[:255],
                f"{count.silent} of the {count.watched} watched devices of site {site.name} ({site.org.name}) have "
                f"been silent for more than {minutes} minutes. Their own offline alerts are held back while this "
                "alert is open.",
                share,
                now,
                now,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Alert.objects.select_related("site", "org").get(pk=row[0])


# --- the pass ----------------------------------------------------------------------------------------------------


class _Pacer:
    """Spreads a pass so the agents' requests keep their latency: after each step of the pass (the table of watched
    devices, each slice of a shared aggregate, the site outages, each statement of a rule), a pause of
    ALERT_EVALUATION_PAUSE_PERCENT of the time the step took, as PostgreSQL's vacuum_cost_delay spreads vacuuming. A
    pass run flat out takes most of a core for seconds, and on a small box every heartbeat waits behind it
    (bench/RESULTS.md: the 1,500/s benchmark's p99 went to 0.9-1.8 s in the ten seconds holding a pass; later, with
    pauses after the rules only, the four shared aggregates run back to back still put p50 at 200-440 ms for three
    seconds). The pauses stop once the pass has used a third of ALERT_EVALUATION_SECONDS, so an alert still opens within
    one interval and a half of its condition holding (the spec's for_minutes + 90 s at the default 60 s).
    ``enabled=False``: no pause at all."""

    def __init__(self, steps: int, *, enabled: bool = True) -> None:
        self.share = settings.ALERT_EVALUATION_PAUSE_PERCENT / 100 if enabled else 0
        self.deadline = time.monotonic() + settings.ALERT_EVALUATION_SECONDS / 3
        self.steps_left = steps

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time the block as one step, and pause after it (also when it raised)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.after_step(time.monotonic() - started)

    def after_step(self, took: float) -> None:
        self.steps_left -= 1
        if not self.share or self.steps_left <= 0:
            return
        spare = self.deadline - time.monotonic()
        pause = min(took * self.share, spare / self.steps_left)
        if pause > 0:
            time.sleep(pause)


@contextmanager
def _one_core(enabled: bool) -> Iterator[None]:
    """A paced pass never runs its statements on parallel workers: a shared aggregate's scan of the telemetry took
    the leader and two workers, the whole of a two-core server, for a fifth of a second at a time (EXPLAIN ANALYZE
    on the 1,500/s benchmark's database). One backend at a time is slower alone (0.33 s against 0.27 s for that
    scan) and leaves the other core to the agents."""
    if not enabled:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather')")
        (before,) = cursor.fetchone()
        cursor.execute("SET max_parallel_workers_per_gather = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('max_parallel_workers_per_gather', %s, false)", [before])


def evaluate_all(*, now: dt.datetime | None = None, pace: bool = False) -> EvaluationReport:
    """Evaluate every enabled rule (see the module docstring). A rule whose evaluation fails is logged and
    reported, and the others still run. ``pace``: pause after each step (:class:`_Pacer`) and use one core
    (:func:`_one_core`), as the scheduler's job does; tests and benchmarks of the pass itself run flat out."""
    now = now or timezone.now()
    report = EvaluationReport()
    rules = list(AlertRule.objects.filter(enabled=True).order_by("created_at", "id"))
    if not rules and not Alert.objects.filter(rule__isnull=True, status__in=_ACTIVE).exists():
        # Nothing to watch and no site alert to resolve: no table of every watched device every minute.
        return report
    offline_rules = [rule for rule in rules if rule.condition.get("kind") == "offline"]
    partner_orgs: dict[Any, list[Any]] = {}
    for org_id, partner_id in Organization.objects.filter(
        partner_id__in={rule.partner_id for rule in rules if rule.partner_id is not None}
    ).values_list("pk", "partner_id"):
        partner_orgs.setdefault(partner_id, []).append(org_id)
    to_share = _metric_aggregates_to_share(rules)
    pacer = _Pacer(1 + len(to_share) + 1 + len(rules), enabled=pace)
    started = time.monotonic()
    with _one_core(pace), watched_devices(now=now) as watched:
        pacer.after_step(time.monotonic() - started)  # the table of watched devices is the pass's first step
        slices = watched.slices(AGGREGATE_SLICE_DEVICES) if pace and to_share else [(None, None)]
        pacer.steps_left += len(to_share) * (len(slices) - 1)
        for key, condition in to_share:
            watched.share_metric_aggregate(key, condition, now=now, slices=slices, pacer=pacer)
        with pacer.step():
            sites = _evaluate_site_outages(offline_rules, now=now, watched=watched)
        report.site_alerts_opened, report.site_alerts_resolved = sites.opened, sites.resolved
        for rule in rules:
            _evaluate_rule_in_steps(
                rule,
                pacer=pacer,
                report=report,
                now=now,
                watched=watched,
                blocked_sites=sites.blocked_sites if rule.condition.get("kind") == "offline" else [],
                org_ids=[rule.org_id] if rule.org_id is not None else partner_orgs.get(rule.partner_id, []),
                open_limit=OPENINGS_PER_STATEMENT if pace else None,
            )
    return report


def _evaluate_rule_in_steps(
    rule: AlertRule,
    *,
    pacer: _Pacer,
    report: EvaluationReport,
    now: dt.datetime,
    watched: WatchedDevices,
    blocked_sites: Sequence[Any],
    org_ids: list[Any],
    open_limit: int | None,
) -> None:
    """One rule of the pass: :func:`evaluate_rule` until it leaves no opening for later (with an ``open_limit``),
    each statement a step of ``pacer``. A rule whose evaluation fails is logged and reported, and the pass goes
    on."""
    more = True
    while more:
        with pacer.step():
            try:
                outcome = evaluate_rule(
                    rule, now=now, watched=watched, blocked_sites=blocked_sites, org_ids=org_ids, open_limit=open_limit
                )
            except Exception:
                logger.exception("alert rule %s could not be evaluated", rule.pk)
                report.failed_rules.append(rule.pk)
                return
            # Each statement opens at least its first site's alerts, so the next one has fewer left. One that
            # opened nothing (a racing evaluator had opened them) leaves the rest to the next pass rather than risk
            # spinning. Counted before this step ends, so that the step is followed by its pause.
            more = bool(outcome.deferred and outcome.opened)
            if more:
                pacer.steps_left += 1
        report.opened += len(outcome.opened)
        report.resolved += len(outcome.resolved)
    report.rules += 1


# --- preview -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """The devices a condition holds for now: how many, and the first ``PREVIEW_SAMPLE`` with the value observed
    (the worst subject's, for disks)."""

    count: int
    sample: list[tuple[Device, float | None]]


def preview(
    *,
    org: Organization,
    site: Site | None = None,
    device_group=None,
    condition: dict,
    now: dt.datetime | None = None,
) -> Preview:
    """What a rule with ``condition`` would alert on now, ``for_minutes`` aside: the same scope and the same SQL
    as the evaluator. Raises ``ValidationError`` (``{"condition": [...]}``, or ``site`` / ``device_group`` of
    another organization) on a bad input."""
    # The rule's own validation: the condition, the site and group of this organization, siteId values of it.
    conditions.validate_rule(AlertRule(org=org, site=site, device_group=device_group, condition=condition))
    now = now or timezone.now()
    scope_sql, scope_params = _scope(
        org_ids=[org.pk],
        site_id=site.pk if site else None,
        device_group_id=device_group.pk if device_group else None,
        suppressed=_suppressed_q(now),
    )
    compiled = conditions.compile_condition(condition, now=now, org_ids=[org.pk])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # as in evaluate_rule
        cursor.execute(
            f"""
            WITH scope AS MATERIALIZED ({scope_sql}),
            observed (device_id, subject, value, holds) AS ({compiled.sql}),
            holding AS (SELECT DISTINCT ON (device_id) device_id, value FROM observed WHERE holds
                         ORDER BY device_id, value)
            SELECT (SELECT count(*) FROM holding),
                   ARRAY(SELECT ARRAY[h.device_id::text, h.value::text]
                           FROM holding h JOIN devices d ON d.id = h.device_id
                          ORDER BY d.hostname, d.id LIMIT %s)
            """,  # noqa: S608 (compiled SQL; values are bound)
            [*scope_params, *compiled.params, PREVIEW_SAMPLE],
        )
        count, rows = cursor.fetchone()
    devices = Device.objects.in_bulk([uuid.UUID(device_id) for device_id, _value in rows])
    sample = [
        (devices[uuid.UUID(device_id)], None if value is None else float(value))
        for device_id, value in rows
        if uuid.UUID(device_id) in devices
    ]
    return Preview(count=count, sample=sample)
