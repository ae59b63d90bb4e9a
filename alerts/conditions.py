"""Alert conditions (spec: alerts.md, "Conditions"): validation with path-addressed errors, the human text of an
alert, and compilation of a condition to one set-wise SQL statement over the devices in a rule's scope.

``AlertRule.clean()`` calls :func:`validate_rule`; the evaluator (``alerts.services.evaluate``) calls
:func:`compile_condition`.

The kinds
=========

``metric``
    ``{"kind": "metric", "metric": M, "aggregate": "avg"|"max"|"min", "op": ">"|">="|"<"|"<=", "value": N,
    "windowMinutes": W}``: the aggregate of the device's samples of M over the last W minutes (1 to 1440) compares
    true. A device without a sample of M in the window has *no data*: it neither opens nor resolves an alert.
``offline``
    ``{"kind": "offline", "minutes": N}`` (1 to 10080): last seen more than N minutes ago. A device never seen counts
    from its creation, as the offline sweep does (``devices.services.status.mark_offline``).
``disk``
    ``{"kind": "disk", "freePercentBelow": P}`` or ``{"kind": "disk", "freeGbBelow": G}``, optional ``"mount"``
    (exact, case-insensitive): one alert per disk (the subject is its mount point). A disk whose sizes are unknown
    has no data; a disk no longer reported no longer holds.
``rule``
    ``{"kind": "rule", "filterRules": {...}}``: the device matches the filter rule (``devices.rules``).
``commandFailed``
    ``{"kind": "commandFailed", "types": [...]?, "withinMinutes": N}`` (1 to 10080): a command of the device (of one
    of those types) ended ``failed`` or ``timeout`` within the last N minutes.

Errors name the offending key by its path from the rule's field: ``condition.windowMinutes: must be a whole
number from 1 to 1440``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from devices import rules as filter_rules
from devices.models.commands import DeviceCommandStatus, DeviceCommandType
from devices.models.telemetry import METRICS, Metric

KINDS = ("metric", "offline", "disk", "rule", "commandFailed")
AGGREGATES = ("avg", "max", "min")
OPERATORS = (">", ">=", "<", "<=")
MAX_WINDOW_MINUTES = 1440
MAX_OFFLINE_MINUTES = 10080
MAX_COMMAND_MINUTES = 10080
MAX_MOUNT_LENGTH = 1024  # device_disks.mount_point
MAX_NUMBER = 10**15  # as devices.rules: larger numbers only overflow, no metric comes near them

METRICS_BY_NAME: dict[str, Metric] = {metric.wire: metric for metric in METRICS}
FAILED_STATUSES = (DeviceCommandStatus.FAILED, DeviceCommandStatus.TIMEOUT)

_KEYS = {
    "metric": {"kind", "metric", "aggregate", "op", "value", "windowMinutes"},
    "offline": {"kind", "minutes"},
    "disk": {"kind", "freePercentBelow", "freeGbBelow", "mount"},
    "rule": {"kind", "filterRules"},
    "commandFailed": {"kind", "types", "withinMinutes"},
}
ROOT = "condition"


class ConditionError(Exception):
    """A condition that cannot be used. ``errors`` maps each offending key's path (``condition.windowMinutes``,
    ``condition.filterRules.conditions[1].value``; ``condition`` itself for the whole) to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, messages in errors.items() for message in messages))

    def as_validation_error(self) -> ValidationError:
        """The form a model's ``clean()`` raises: every message under the ``condition`` field, its path in front."""
        return ValidationError(
            {"condition": [f"{path}: {message}" for path, messages in self.errors.items() for message in messages]}
        )


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Checker:
    def __init__(self, condition: dict):
        self.condition = condition
        self.errors: dict[str, list[str]] = {}

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(f"{ROOT}.{key}" if key else ROOT, []).append(message)

    def choice(self, key: str, choices: tuple[str, ...]) -> None:
        value = self.condition.get(key)
        if value is None:
            self.error(key, f"required: one of {', '.join(choices)}")
        elif value not in choices:
            shown = repr(value) if isinstance(value, str) else _describe(value)
            self.error(key, f"must be one of {', '.join(choices)}, not {shown}")

    def whole(self, key: str, low: int, high: int, *, required: bool = True) -> None:
        value = self.condition.get(key)
        if value is None:
            if required:
                self.error(key, f"required: a whole number from {low} to {high}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            self.error(key, f"must be a whole number from {low} to {high}, not {_describe(value)}")
        elif not low <= value <= high:
            self.error(key, f"must be a whole number from {low} to {high}")

    def number(self, key: str, *, above: float | None = None, at_most: float | None = None) -> bool:
        value = self.condition.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, f"must be a number, not {_describe(value)}")
        elif not math.isfinite(value) or abs(value) > MAX_NUMBER:
            self.error(key, f"must lie between -{MAX_NUMBER:,} and {MAX_NUMBER:,}")
        elif above is not None and value <= above:
            self.error(key, f"must be more than {above:g}")
        elif at_most is not None and value > at_most:
            self.error(key, f"must be at most {at_most:g}")
        else:
            return True
        return False


def check_condition(condition: object) -> None:
    """Raise :class:`ConditionError` listing every mistake in ``condition``."""
    if not isinstance(condition, dict):
        raise ConditionError(
            {ROOT: [f"must be an object with a kind ({', '.join(KINDS)}), not {_describe(condition)}"]}
        )
    checker = _Checker(condition)
    kind = condition.get("kind")
    if kind not in KINDS:
        checker.choice("kind", KINDS)
        raise ConditionError(checker.errors)
    for key in condition:
        if key not in _KEYS[kind]:
            article = "an" if kind[0] in "aeiou" else "a"
            checker.error(str(key), f"unknown key: {article} {kind} condition takes {', '.join(sorted(_KEYS[kind]))}")
    {
        "metric": _check_metric,
        "offline": _check_offline,
        "disk": _check_disk,
        "rule": _check_rule,
        "commandFailed": _check_command_failed,
    }[kind](checker)
    if checker.errors:
        raise ConditionError(checker.errors)


def _check_metric(checker: _Checker) -> None:
    checker.choice("metric", tuple(METRICS_BY_NAME))
    checker.choice("aggregate", AGGREGATES)
    checker.choice("op", OPERATORS)
    checker.number("value")
    checker.whole("windowMinutes", 1, MAX_WINDOW_MINUTES)


def _check_offline(checker: _Checker) -> None:
    checker.whole("minutes", 1, MAX_OFFLINE_MINUTES)


def _check_disk(checker: _Checker) -> None:
    condition = checker.condition
    given = [key for key in ("freePercentBelow", "freeGbBelow") if key in condition]
    if len(given) != 1:
        checker.error("", "a disk condition needs exactly one of freePercentBelow or freeGbBelow")
    if "freePercentBelow" in condition:
        checker.number("freePercentBelow", above=0, at_most=100)
    if "freeGbBelow" in condition:
        checker.number("freeGbBelow", above=0)
    if "mount" in condition:
        mount = condition["mount"]
        if not isinstance(mount, str) or not mount.strip():
            checker.error("mount", f"must be a mount point such as C: or /var, not {_describe(mount)}")
        elif len(mount) > MAX_MOUNT_LENGTH or "\x00" in mount:
            checker.error("mount", f"must be at most {MAX_MOUNT_LENGTH} characters, without NUL")


def _check_rule(checker: _Checker) -> None:
    if "filterRules" not in checker.condition:
        checker.error("filterRules", "required: a filter rule (filter-rules.md)")
        return
    try:
        filter_rules.validate_rule(checker.condition["filterRules"])
    except filter_rules.RuleError as exc:
        for path, messages in exc.errors.items():
            for message in messages:
                checker.error(f"filterRules.{path}" if path else "filterRules", message)


def _check_command_failed(checker: _Checker) -> None:
    checker.whole("withinMinutes", 1, MAX_COMMAND_MINUTES)
    if "types" in checker.condition:
        types = checker.condition["types"]
        if not isinstance(types, list) or not types:
            checker.error("types", f"must be a non-empty list of command types ({', '.join(DeviceCommandType.values)})")
            return
        for index, value in enumerate(types):
            if value not in DeviceCommandType.values:
                shown = repr(value) if isinstance(value, str) else _describe(value)
                checker.error(
                    f"types[{index}]",
                    f"must be one of {', '.join(DeviceCommandType.values)}, not {shown}",
                )


def validate_condition(condition: object) -> None:
    """``check_condition`` for a model's ``clean()``: raises ``ValidationError({"condition": [...]})``."""
    try:
        check_condition(condition)
    except ConditionError as exc:
        raise exc.as_validation_error() from None


def validate_rule(rule) -> None:
    """Raise ``ValidationError`` keyed by field when ``rule`` (an ``AlertRule``) breaks a rule of the spec:
    exactly one owner; a site or device group only on an organization's rule, and of that organization; a valid
    condition (path-addressed messages under ``condition``); a filter rule's siteId values of the organization."""
    errors: dict[str, list[str]] = {}
    if (rule.org_id is None) == (rule.partner_id is None):
        errors.setdefault("org", []).append("A rule belongs to exactly one of an organization or a partner.")
    for field, what in (("site", "site"), ("device_group", "device group")):
        narrowing = getattr(rule, field) if getattr(rule, f"{field}_id") else None
        if narrowing is None:
            continue
        if rule.org_id is None:
            errors.setdefault(field, []).append(f"Only an organization's rule can be narrowed to a {what}.")
        elif narrowing.org_id != rule.org_id:
            errors.setdefault(field, []).append(f"The {what} must belong to the rule's organization.")
    try:
        check_condition(rule.condition)
        if rule.condition.get("kind") == "rule" and rule.org_id is not None:
            _check_rule_sites(rule.condition["filterRules"], org_id=rule.org_id)
    except ConditionError as exc:
        errors.update(exc.as_validation_error().message_dict)
    if errors:
        raise ValidationError(errors)


def _check_rule_sites(filter_rule: dict, *, org_id) -> None:
    from devices.services.groups import InvalidRule, check_rule

    try:
        check_rule(filter_rule, org_id=org_id)
    except InvalidRule as exc:
        raise ConditionError(
            {f"{ROOT}.filterRules.{path}": messages for path, messages in exc.fields.items()}
        ) from None


# --- human text --------------------------------------------------------------------------------------------------

_OP_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
_UNIT_TEXT = {"percent": " %", "MB": " MB", "GB": " GB", "bytes": " bytes", "count": ""}


def _number(value: float) -> str:
    return f"{value:,.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


@dataclass(frozen=True)
class Text:
    """An alert's title and message with placeholders the evaluator fills in SQL for each row: ``{value}`` (the
    observed value, rounded to ``decimals``), ``{device}`` (display name or hostname) and ``{subject}``."""

    title: str
    message: str
    decimals: int = 1


def describe(condition: dict, *, rule_name: str = "") -> Text:
    """The human text of an alert of a valid ``condition``, e.g. "CPU above 90 % (avg {value} % over 10 min) on
    {device}"."""
    kind = condition["kind"]
    if kind == "metric":
        metric = METRICS_BY_NAME[condition["metric"]]
        unit = _UNIT_TEXT.get(metric.unit, f" {metric.unit}")
        op, threshold, window = condition["op"], _number(condition["value"]), condition["windowMinutes"]
        return Text(
            title=f"{metric.label} {_OP_WORDS[op]} {threshold}{unit} "
            f"({condition['aggregate']} {{value}}{unit} over {window} min) on {{device}}",
            message=f"The {condition['aggregate']} of {metric.label} ({metric.wire}) over the last {window} minutes "
            f"was {{value}}{unit} on {{device}}; the rule alerts when it is {op} {threshold}{unit}.",
            decimals=1 if metric.unit in ("percent", "GB") else 0,
        )
    if kind == "offline":
        minutes = condition["minutes"]
        return Text(
            title=f"Offline for more than {minutes} min (silent for {{value}} min) on {{device}}",
            message=f"{{device}} has been silent for {{value}} minutes (since it was last seen, or enrolled if "
            f"never seen); the rule alerts after {minutes} minutes of silence.",
            decimals=0,
        )
    if kind == "disk":
        if "freePercentBelow" in condition:
            limit, unit = _number(condition["freePercentBelow"]), " %"
        else:
            limit, unit = _number(condition["freeGbBelow"]), " GB"
        return Text(
            title=f"Disk {{subject}} below {limit}{unit} free ({{value}}{unit} free) on {{device}}",
            message=f"The disk {{subject}} of {{device}} has {{value}}{unit} free; the rule alerts below "
            f"{limit}{unit}.",
        )
    if kind == "rule":
        name = rule_name or "Filter rule"
        return Text(
            title=f"{name} on {{device}}",
            message=f"{{device}} matches the filter rule of the alert rule {name!r}.",
            decimals=0,
        )
    minutes = condition["withinMinutes"]
    types = ", ".join(condition.get("types") or []) or "any type"
    return Text(
        title=f"{{value}} failed command(s) in the last {minutes} min on {{device}}",
        message=f"{{value}} command(s) of {{device}} ({types}) ended failed or timed out in the last {minutes} "
        "minutes.",
        decimals=0,
    )


# --- compilation ---------------------------------------------------------------------------------------------------

# The 5-minute and hourly rollups of devices.services.telemetry: average of every metric, maximum of the
# percentages; no minimum. A window reads them only where they hold what its aggregate needs.
ROLLUP_AFTER_MINUTES = 60
_ROLLUP_TABLE = "device_telemetry_rollups"
_ROLLUP_STATE_TABLE = "device_telemetry_rollup_state"


@dataclass(frozen=True)
class Compiled:
    """One condition as SQL over a relation named ``scope`` (the devices in a rule's scope: ``id``, ``org_id``,
    ``site_id``, ``last_seen_at``, ``created_at``):
    it yields ``(device_id, subject, value, holds)`` rows, ``holds`` NULL meaning *no data*.

    ``absent_is_clear``: whether a device (subject) of the scope missing from the rows no longer holds (offline,
    disk, rule, commandFailed: the rows are the holding ones, plus no-data disks) or has no data (metric: the rows
    are every device with a sample).

    ``value_follows_clock``: whether the value changes with the moment alone (offline: minutes of silence), so
    that a new value is no news."""

    sql: str
    params: list[Any]
    absent_is_clear: bool
    value_follows_clock: bool = False


def compile_condition(
    condition: dict, *, now: dt.datetime, org_ids: list, metric_tables: Mapping[tuple, str] | None = None
) -> Compiled:
    """The SQL of a valid ``condition`` at the moment ``now`` (bound; the database clock is never read, so a
    preview and the pass that follows agree, and tests control time) for devices of the organizations
    ``org_ids`` (the rule's, or every one of its partner's). ``metric_tables``: :func:`metric_key` → a table of
    ``(device_id, value)`` that a pass computed once for every watched device, read instead of the samples."""
    kind = condition["kind"]
    if kind == "metric":
        table = (metric_tables or {}).get(metric_key(condition))
        if table is not None:
            op = _comparison(condition["op"])
            return Compiled(
                sql=f"""SELECT a.device_id, ''::text, a.value, a.value {op} %s
                          FROM {table} a JOIN scope s ON s.id = a.device_id""",  # noqa: S608 (names are ours)
                params=[condition["value"]],
                absent_is_clear=False,
            )
        return _compile_metric(condition, now)
    if kind == "offline":
        cutoff = now - dt.timedelta(minutes=condition["minutes"])
        return Compiled(
            sql="""SELECT s.id, ''::text,
                          extract(epoch FROM %s::timestamptz - COALESCE(s.last_seen_at, s.created_at)) / 60, true
                     FROM scope s
                    WHERE s.last_seen_at < %s OR (s.last_seen_at IS NULL AND s.created_at < %s)""",
            params=[now, cutoff, cutoff],
            absent_is_clear=True,
            value_follows_clock=True,
        )
    if kind == "disk":
        return _compile_disk(condition)
    if kind == "rule":
        return _compile_filter_rule(condition, now, org_ids)
    types = condition.get("types") or list(DeviceCommandType.values)
    return Compiled(
        sql="""SELECT c.device_id, ''::text, count(*)::float8, true
                 FROM device_commands c JOIN scope s ON s.id = c.device_id AND s.org_id = c.org_id
                WHERE c.status = ANY(%s) AND c.type = ANY(%s) AND c.completed_at > %s AND c.completed_at <= %s
                GROUP BY c.device_id""",
        params=[
            [str(status) for status in FAILED_STATUSES],
            types,
            now - dt.timedelta(minutes=condition["withinMinutes"]),
            now,
        ],
        absent_is_clear=True,
    )


def _comparison(op: str) -> str:
    if op not in OPERATORS:  # the operator is written into the SQL: only the four of the grammar
        raise ValueError(f"not an operator: {op!r}")
    return op


def metric_key(condition: dict) -> tuple[str, str, int]:
    """What a metric condition aggregates: rules with the same key observe the same value on every device."""
    return (condition["metric"], condition["aggregate"], condition["windowMinutes"])


def _compile_metric(condition: dict, now: dt.datetime) -> Compiled:
    sql, params = metric_aggregate_sql(condition, now)
    op = _comparison(condition["op"])
    return Compiled(
        sql=f"SELECT device_id, ''::text, value, value {op} %s FROM ({sql}) observed",  # noqa: S608 (a constant op)
        params=[condition["value"], *params],
        absent_is_clear=False,
    )


def metric_aggregate_sql(
    condition: dict, now: dt.datetime, *, devices: tuple[Any, Any] | None = None
) -> tuple[str, list[Any]]:
    """``(device_id, value)``: the condition's aggregate of its metric over its window, for every device of
    ``scope`` with a sample in the window. ``devices``: only the device ids from the first (inclusive) to the second
    (exclusive), either ``None`` for no bound, written into each read of the samples so that PostgreSQL reads that
    range of the primary key (device_id, ts) instead of every sample of the window."""
    metric = METRICS_BY_NAME[condition["metric"]]  # the column comes from the one table of metrics, never the input
    column, aggregate = metric.column, condition["aggregate"]
    window = condition["windowMinutes"]
    start = now - dt.timedelta(minutes=window)
    value_sql = {"avg": "sum(v * n) / sum(n)", "max": "max(v)", "min": "min(v)"}[aggregate]
    raw_range, range_params = id_range_sql("t.device_id", devices)
    rolled_range, _ = id_range_sql("r.device_id", devices)

    def raw(low_op: str) -> str:
        return f"""SELECT t.device_id, t.{column} AS v, 1 AS n
                     FROM device_telemetry t JOIN scope s ON s.id = t.device_id
                    WHERE t.ts {low_op} %s AND t.ts <= %s AND t.{column} IS NOT NULL{raw_range}"""  # noqa: S608

    # Long windows read the 5-minute or hourly rollups where they are complete, and raw samples at both ends (before
    # the first whole bucket, after the last rolled one). A bucket's average weighs as many samples as it holds. The
    # rollups keep averages of every metric and maxima of the percentages only, so other aggregates read raw samples.
    rolled = {"avg": column, "max": f"{column}_max" if metric.unit == "percent" else None}.get(aggregate)
    bounds = _rollup_bounds(window, start, now) if window > ROLLUP_AFTER_MINUTES and rolled else None
    params: list[Any]
    if bounds is None:
        samples_sql, params = raw(">"), [start, now, *range_params]
    else:
        seconds, first, last = bounds
        samples_sql = f"""{raw(">")} AND t.ts < %s
            UNION ALL
            SELECT r.device_id, r.{rolled}, r.samples
              FROM {_ROLLUP_TABLE} r JOIN scope s ON s.id = r.device_id
             WHERE r.bucket_seconds = %s AND r.bucket >= %s AND r.bucket < %s AND r.{rolled} IS NOT NULL{rolled_range}
            UNION ALL
            {raw(">=")}"""  # noqa: S608 (table and column names are constants)
        params = [start, now, *range_params, first]
        params += [seconds, first, last, *range_params]
        params += [last, now, *range_params]
    sql = f"""SELECT device_id, ({value_sql})::float8 AS value FROM ({samples_sql}) samples
               GROUP BY device_id"""  # noqa: S608 (the aggregate from constants)
    return sql, params


def id_range_sql(column: str, ids: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
    """`` AND column >= first AND column < end`` (and its parameters) for a range of uuids ``(first, end)``, either
    ``None`` for no bound; nothing for ``None``."""
    first, end = ids or (None, None)
    sql, params = "", []
    if first is not None:
        sql, params = f" AND {column} >= %s::uuid", [first]
    if end is not None:
        sql, params = f"{sql} AND {column} < %s::uuid", [*params, end]
    return sql, params


def _rollup_bounds(window: int, start: dt.datetime, now: dt.datetime) -> tuple[int, dt.datetime, dt.datetime] | None:
    """(bucket seconds, first whole bucket, end of the rolled buckets) for a window, or None when no whole rolled
    bucket lies inside it."""
    from django.db import connection

    seconds = 3600 if window >= 6 * 60 else 300
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    low = epoch + dt.timedelta(seconds=-(-(start - epoch).total_seconds() // seconds) * seconds)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rolled_until FROM {_ROLLUP_STATE_TABLE} WHERE bucket_seconds = %s", [seconds])  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        return None
    now_bucket = epoch + dt.timedelta(seconds=((now - epoch).total_seconds() // seconds) * seconds)
    high = min(row[0], now_bucket)
    return (seconds, low, high) if high > low else None


def _compile_disk(condition: dict) -> Compiled:
    if "freePercentBelow" in condition:
        free = """CASE WHEN k.total_gb > 0 AND k.free_gb IS NOT NULL THEN 100 * k.free_gb / k.total_gb
                       WHEN k.used_percent IS NOT NULL THEN 100 - k.used_percent END"""
        limit = condition["freePercentBelow"]
    else:
        free = """COALESCE(k.free_gb, k.total_gb - k.used_gb)"""
        limit = condition["freeGbBelow"]
    mount = condition.get("mount")
    # A device may report one mount point twice (two volumes, one letter): the least free space speaks for it.
    sql = f"""SELECT device_id, subject, min(free), bool_or(free < %s) FILTER (WHERE free IS NOT NULL)
                FROM (SELECT k.device_id, k.mount_point AS subject, ({free})::float8 AS free
                        FROM device_disks k JOIN scope s ON s.id = k.device_id AND s.org_id = k.org_id
                       {"WHERE upper(k.mount_point) = upper(%s)" if mount else ""}) disks
               GROUP BY device_id, subject
              HAVING bool_or(free < %s) OR bool_and(free IS NULL)"""  # noqa: S608 (fixed fragments)
    params: list[Any] = [limit, *([mount] if mount else []), limit]
    return Compiled(sql=sql, params=params, absent_is_clear=True)


def _compile_filter_rule(condition: dict, now: dt.datetime, org_ids: list) -> Compiled:
    from devices.models import Device

    # The filter-rule compiler gives a Q over Device, scoped here to the rule's organizations as devices.rules asks
    # (its related-row subqueries then use the (org_id, ...) indexes); the scope relation narrows it further.
    matching = Device.objects.filter(filter_rules.compile_rule(condition["filterRules"], now=now), org_id__in=org_ids)
    inner, params = matching.values("pk").query.sql_with_params()
    return Compiled(
        sql=f"""SELECT s.id, ''::text, NULL::float8, true FROM scope s WHERE s.id IN ({inner})""",  # noqa: S608
        params=list(params),
        absent_is_clear=True,
    )
