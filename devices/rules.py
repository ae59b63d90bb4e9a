"""Filter rules of dynamic device groups, saved filters, previews and bulk targeting (spec: filter-rules.md).

``validate_rule`` checks a rule as a technician wrote it and reports every mistake with the path of the node at fault;
``compile_rule`` turns a valid rule into one ``Q`` over ``Device`` for the caller to scope:
``Device.objects.filter(org_id=..., [site_id=...], compile_rule(rule, now=now))``, one SQL query with every value
bound as a parameter.

What a rule means
=================

A rule is a condition ``{"field", "operator", "value"}`` or a group ``{"operator": "AND" | "OR", "conditions": [...]}``
of 1 to 100 rules; groups nest at most 5 levels deep (the root group is level 1) and a rule holds at most 1,000
conditions in all.

Text (string fields, ``in`` lists, software names)
    ``equals``, ``contains``, ``startsWith``, ``endsWith`` and ``in`` ignore case and take the value literally:
    ``%``, ``_`` and ``\\`` are ordinary characters. ``matches`` is a PostgreSQL regular expression (its "ARE"
    dialect, not Python's), case-sensitive unless it starts with ``(?i)``, and at most 250 characters. A value is
    never empty: to find devices without a value use ``isNull``.
Unknown values
    An empty text ('') counts as no value, like NULL: ``isNull`` finds both, ``isNotNull`` neither, and ``matches``
    (the one operator that could match '') never matches them.
Negative operators
    ``notEquals``, ``notContains``, ``notIn``, ``notWithinLast`` and ``software.notInstalled`` match exactly the
    devices their positive counterpart does not match, including devices with no value at all: a device whose
    last-seen time is unknown is "not seen within the last hour", a device without interfaces has "no IP address
    equal to 10.0.0.1".
Hardware (``hardware.*``)
    The device's hardware summary. A device without one has no value in any hardware field.
Interfaces and disks (``network.ipAddress``, ``network.macAddress``, ``disks.usedPercent``)
    A condition holds when at least one of the device's interfaces (disks) satisfies it: ``disks.usedPercent
    greaterThan 90`` is "some disk is more than 90 % full", ``between`` needs one disk inside the range. A negative
    operator holds when no interface satisfies the positive one: ``network.ipAddress notEquals 10.0.0.1`` is "no
    interface has 10.0.0.1". ``isNull`` holds when no interface (disk) has a value, including a device with none.
Metrics (``metrics.*``)
    The device's most recent telemetry sample; a device that never sent one, or whose latest sample lacks the
    metric, has no value.
Software
    ``software.installed`` holds when some installed program's name satisfies the condition (``equals``, ``contains``
    or ``in``); ``software.notInstalled`` when none does.
Tags
    ``hasAny`` / ``hasAll`` compare tags exactly, case included; ``isEmpty`` holds for a device without tags.
Times (``lastSeenAt``, ``enrolledAt``)
    ISO-8601 date-times; without an offset they are UTC, and a bare date means its midnight UTC. ``before`` and
    ``after`` are strict, ``between`` includes both ends, ``withinLast {"amount": n, "unit": "minutes" | "hours" |
    "days" | "weeks"}`` means at or after now minus that long.
``daysSinceLastSeen``
    Whole days elapsed since the device was last seen, rounded down (seen 36 hours ago: 1); a device never seen has
    no value. A number condition on it holds as it would on that number.
Numbers
    ``between`` includes both ends. ``notEquals`` also matches devices without a value.
Enums (``status``, ``osType``, ``siteId``)
    Exact values: the model's choices, or site UUIDs (whether the site belongs to the organization is the caller's
    check).
"""

from __future__ import annotations

import functools
import math
import operator as operators
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DataError, connection, models, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import StrIndex, Upper
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Range,
)

from devices.models import (
    Device,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkInterface,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.models.device import DeviceOsType, DeviceStatus
from rmm.parsing import OutOfRange, parse_datetime, text_problem

MAX_DEPTH = 5
MAX_REGEX_LENGTH = 250
MAX_GROUP_SIZE = 100
# A rule compiles to one statement; past this its plan grows faster than any real group needs.
MAX_CONDITIONS = 1_000
MAX_TEXT_LENGTH = 1_000
MAX_LIST_LENGTH = 1_000
MAX_AMOUNT = 100_000  # withinLast amounts and daysSinceLastSeen: keeps "now minus that" inside the calendar
MAX_NUMBER = 10**15  # float(x) of a larger int can overflow, and no field holds anything near it

STRING, NUMBER, BOOLEAN, DATETIME, ENUM, ARRAY = "string", "number", "boolean", "datetime", "enum", "array"

OPERATORS_BY_TYPE: dict[str, tuple[str, ...]] = {
    STRING: (
        "equals",
        "notEquals",
        "contains",
        "notContains",
        "startsWith",
        "endsWith",
        "matches",
        "in",
        "notIn",
        "isNull",
        "isNotNull",
    ),
    NUMBER: (
        "equals",
        "notEquals",
        "greaterThan",
        "greaterThanOrEquals",
        "lessThan",
        "lessThanOrEquals",
        "between",
        "isNull",
        "isNotNull",
    ),
    BOOLEAN: ("equals", "notEquals"),
    DATETIME: ("before", "after", "between", "withinLast", "notWithinLast", "isNull", "isNotNull"),
    ENUM: ("equals", "notEquals", "in", "notIn"),
    ARRAY: ("hasAny", "hasAll", "isEmpty", "isNotEmpty"),
}
SOFTWARE_OPERATORS = ("equals", "contains", "in")
_KNOWN_OPERATORS = frozenset(op for ops in OPERATORS_BY_TYPE.values() for op in ops)
VALUELESS_OPERATORS = frozenset({"isNull", "isNotNull", "isEmpty", "isNotEmpty"})
LIST_OPERATORS = frozenset({"in", "notIn", "hasAny", "hasAll"})
# Each negative operator is the complement of this positive one.
_COMPLEMENT_OF = {"notEquals": "equals", "notContains": "contains", "notIn": "in", "notWithinLast": "withinLast"}
_GROUP_OPERATORS = ("AND", "OR")
DURATION_UNITS = ("minutes", "hours", "days", "weeks")

# Where a field's value is read.
DEVICE, HARDWARE, INTERFACES, DISKS, LATEST_SAMPLE, SOFTWARE, COMPUTED = (
    "device",
    "hardware",
    "interfaces",
    "disks",
    "latest_sample",
    "software",
    "computed",
)


@dataclass(frozen=True)
class Field:
    """A field a condition can test. Its type decides the operators and value shapes; its source and column say
    where the value is read (``column`` is a model field of the source's model)."""

    name: str
    type: str
    source: str
    column: str
    operators: tuple[str, ...]
    choices: tuple[str, ...] = ()  # an enum's values; empty for siteId, whose values are UUIDs
    whole_days: bool = False  # daysSinceLastSeen: a whole number, 0 or more


def _field(name: str, type_: str, source: str, column: str, **extra: Any) -> Field:
    extra.setdefault("operators", OPERATORS_BY_TYPE[type_])
    return Field(name=name, type=type_, source=source, column=column, **extra)


FIELDS: dict[str, Field] = {
    field.name: field
    for field in [
        _field("hostname", STRING, DEVICE, "hostname"),
        _field("displayName", STRING, DEVICE, "display_name"),
        _field("osVersion", STRING, DEVICE, "os_version"),
        _field("osBuild", STRING, DEVICE, "os_build"),
        _field("agentVersion", STRING, DEVICE, "agent_version"),
        _field("lastSeenIp", STRING, DEVICE, "last_seen_ip"),
        _field("architecture", STRING, DEVICE, "architecture"),
        _field("status", ENUM, DEVICE, "status", choices=tuple(DeviceStatus.values)),
        _field("osType", ENUM, DEVICE, "os_type", choices=tuple(DeviceOsType.values)),
        _field("siteId", ENUM, DEVICE, "site_id"),
        _field("tags", ARRAY, DEVICE, "tags"),
        _field("lastSeenAt", DATETIME, DEVICE, "last_seen_at"),
        _field("enrolledAt", DATETIME, DEVICE, "enrolled_at"),
        _field("hardware.manufacturer", STRING, HARDWARE, "manufacturer"),
        _field("hardware.model", STRING, HARDWARE, "model"),
        _field("hardware.serialNumber", STRING, HARDWARE, "serial_number"),
        _field("hardware.cpuModel", STRING, HARDWARE, "cpu_model"),
        _field("hardware.gpuModel", STRING, HARDWARE, "gpu_model"),
        _field("hardware.cpuCores", NUMBER, HARDWARE, "cpu_cores"),
        _field("hardware.ramTotalMb", NUMBER, HARDWARE, "ram_total_mb"),
        _field("hardware.diskTotalGb", NUMBER, HARDWARE, "disk_total_gb"),
        _field("network.ipAddress", STRING, INTERFACES, "ip_address"),
        _field("network.macAddress", STRING, INTERFACES, "mac_address"),
        _field("disks.usedPercent", NUMBER, DISKS, "used_percent"),
        _field("metrics.cpuPercent", NUMBER, LATEST_SAMPLE, "cpu_percent"),
        _field("metrics.ramPercent", NUMBER, LATEST_SAMPLE, "ram_percent"),
        _field("metrics.diskPercent", NUMBER, LATEST_SAMPLE, "disk_percent"),
        _field("software.installed", STRING, SOFTWARE, "name", operators=SOFTWARE_OPERATORS),
        _field("software.notInstalled", STRING, SOFTWARE, "name", operators=SOFTWARE_OPERATORS),
        _field("daysSinceLastSeen", NUMBER, COMPUTED, "last_seen_at", whole_days=True),
    ]
}

# Conditions on these can change truth with the clock or with every heartbeat, so a periodic sweep re-evaluates them.
TIME_BASED_FIELDS = frozenset(
    {"lastSeenAt", "enrolledAt", "daysSinceLastSeen", "metrics.cpuPercent", "metrics.ramPercent", "metrics.diskPercent"}
)

_MODELS: dict[str, type[models.Model]] = {
    DEVICE: Device,
    HARDWARE: DeviceHardware,
    INTERFACES: DeviceNetworkInterface,
    DISKS: DeviceDisk,
    SOFTWARE: DeviceSoftware,
}


class RuleError(Exception):
    """A rule that cannot be used. ``errors`` maps the path of each offending node (relative to the rule's root,
    e.g. ``conditions[1].value``; ``""`` is the root itself) to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(
            "; ".join(f"{path or 'rule'}: {message}" for path, messages in errors.items() for message in messages)
        )


def validate_rule(rule: object) -> None:
    """Raise :class:`RuleError` with every mistake in ``rule``; regular expressions are checked by PostgreSQL."""
    parser = _Parser()
    parser.parse(rule)
    if parser.conditions <= MAX_CONDITIONS:
        _check_regexes(parser.regexes, parser)
    if parser.errors:
        raise RuleError(parser.errors)


def fields_used(rule: dict) -> list[str]:
    """The sorted, unique field names a valid rule tests."""
    names: set[str] = set()

    def collect(node: _Node) -> None:
        if isinstance(node, _Group):
            for child in node.children:
                collect(child)
        else:
            names.add(node.field.name)

    collect(_parsed(rule))
    return sorted(names)


def compile_rule(rule: dict, *, now: datetime) -> Q:
    """A ``Q`` over ``Device`` matching the devices the rule selects at the moment ``now`` (bound as a parameter;
    the database clock is never read, so a preview and the sweep that follows agree)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("compile_rule needs a timezone-aware 'now'")
    return _compile(_parsed(rule), now)


# Parsing: one walk that validates and normalises, shared by the validator and the compiler.


@dataclass(frozen=True)
class _Condition:
    field: Field
    operator: str
    value: Any  # normalised: str, list[str], int | float, bool, datetime, timedelta, uuid.UUID, or a (from, to) pair


@dataclass(frozen=True)
class _Group:
    operator: str
    children: tuple[_Node, ...]


_Node = _Condition | _Group
_INVALID = object()


def _parsed(rule: object) -> _Node:
    """The parsed rule; raises RuleError if it is not valid. Regular expressions are not sent to the database here:
    a stored rule was checked when saved, and PostgreSQL refuses a bad one when the query runs anyway."""
    parser = _Parser()
    node = parser.parse(rule)
    if parser.errors or node is None:
        raise RuleError(parser.errors or {"": ["not a valid rule"]})
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


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


def _quote(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class _Parser:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.regexes: list[tuple[str, str]] = []  # (path, pattern), checked by PostgreSQL after the walk
        self.conditions = 0

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def parse(self, rule: object) -> _Node | None:
        node = self.node(rule, "", level=0)
        if self.conditions > MAX_CONDITIONS:
            self.error("", f"a rule holds at most {MAX_CONDITIONS:,} conditions")
        return node

    def node(self, raw: object, path: str, level: int) -> _Node | None:
        """``level`` is the number of groups around this node."""
        if not isinstance(raw, dict):
            self.error(
                path,
                "a rule is an object: a condition {field, operator, value} or a group {operator, conditions}",
            )
            return None
        if "field" in raw and "conditions" in raw:
            self.error(path, "a node is either a condition (field) or a group (conditions), not both")
            return None
        if "conditions" in raw or (raw.get("operator") in _GROUP_OPERATORS and "field" not in raw):
            return self.group(raw, path, level + 1)
        if not {"field", "operator"} & raw.keys():
            self.unknown_keys(raw, path, {"field", "operator", "value", "conditions"})
            self.error(path, "expected a condition {field, operator, value} or a group {operator, conditions}")
            return None
        return self.condition(raw, path)

    def unknown_keys(self, raw: dict, path: str, allowed: set[str]) -> bool:
        unknown = [key for key in raw if key not in allowed]
        for key in unknown:
            self.error(_join(path, str(key)), f"unknown key {_quote(str(key))}")
        return bool(unknown)

    def group(self, raw: dict, path: str, level: int) -> _Group | None:
        ok = not self.unknown_keys(raw, path, {"operator", "conditions"})
        if level > MAX_DEPTH:
            # Not walked further: its contents would only repeat this error, and a deep enough rule would exhaust
            # the stack.
            self.error(path, f"groups nest at most {MAX_DEPTH} levels deep")
            return None
        group_operator = raw.get("operator")
        if group_operator not in _GROUP_OPERATORS:
            ok = False
            if group_operator is None:
                self.error(_join(path, "operator"), "a group needs an operator: AND or OR")
            else:
                shown = _quote(group_operator) if isinstance(group_operator, str) else _describe(group_operator)
                self.error(_join(path, "operator"), f"a group's operator is AND or OR, not {shown}")
        conditions = raw.get("conditions")
        conditions_path = _join(path, "conditions")
        if not isinstance(conditions, list):
            self.error(conditions_path, "a group needs a list of conditions")
            return None
        if not conditions:
            self.error(conditions_path, "a group needs at least one condition")
            return None
        if len(conditions) > MAX_GROUP_SIZE:
            self.error(conditions_path, f"a group holds at most {MAX_GROUP_SIZE} conditions")
            return None
        children = [self.node(child, f"{conditions_path}[{i}]", level) for i, child in enumerate(conditions)]
        valid = [child for child in children if child is not None]
        if not ok or not isinstance(group_operator, str) or len(valid) < len(children):
            return None
        return _Group(group_operator, tuple(valid))

    def condition(self, raw: dict, path: str) -> _Condition | None:
        self.conditions += 1
        ok = not self.unknown_keys(raw, path, {"field", "operator", "value"})
        field = self.field(raw.get("field"), _join(path, "field"))
        operator_ = self.operator(raw.get("operator"), field, _join(path, "operator"))
        if not field or not operator_:
            return None
        value = self.value(field, operator_, raw.get("value"), _join(path, "value"))
        if not ok or value is _INVALID:
            return None
        return _Condition(field, operator_, value)

    def field(self, name: object, path: str) -> Field | None:
        if name is None:
            self.error(path, "a condition needs a field")
        elif not isinstance(name, str):
            self.error(path, f"a field name is text, not {_describe(name)}")
        elif name not in FIELDS:
            self.error(path, f"unknown field {_quote(name)}")
        else:
            return FIELDS[name]
        return None

    def operator(self, name: object, field: Field | None, path: str) -> str | None:
        if name is None:
            self.error(path, "a condition needs an operator")
        elif not isinstance(name, str):
            self.error(path, f"an operator is text, not {_describe(name)}")
        elif name not in _KNOWN_OPERATORS:
            self.error(path, f"unknown operator {_quote(name)}")
        elif field and name not in field.operators:
            if field.source == SOFTWARE:
                self.error(path, f"{name!r} does not apply to {field.name}; use equals, contains or in")
            else:
                self.error(path, f"{name!r} does not apply to {_article(field.type)} field")
        else:
            return name
        return None

    # Values. Each returns the normalised value, or _INVALID after recording why.

    def value(self, field: Field, operator_: str, raw: object, path: str) -> Any:
        if operator_ in VALUELESS_OPERATORS:
            if raw is not None:
                self.error(path, f"{operator_!r} takes no value")
                return _INVALID
            return None
        if raw is None:
            self.error(path, f"{operator_!r} needs a value")
            return _INVALID
        if operator_ in LIST_OPERATORS:
            return self.list_of(field, operator_, raw, path)
        if operator_ == "between":
            return self.between(field, raw, path)
        if operator_ in ("withinLast", "notWithinLast"):
            return self.duration(operator_, raw, path)
        if field.type == STRING:
            return self.regex(raw, path) if operator_ == "matches" else self.text(raw, path)
        if field.type == NUMBER:
            return self.number(field, raw, path)
        if field.type == DATETIME:
            return self.moment(raw, path)
        if field.type == ENUM:
            return self.enum(field, raw, path)
        if field.type == BOOLEAN:
            if isinstance(raw, bool):
                return raw
            self.error(path, f"expected true or false, got {_describe(raw)}")
            return _INVALID
        raise AssertionError(f"no value parser for {field.type} {operator_}")  # pragma: no cover

    def text(self, raw: object, path: str, max_length: int = MAX_TEXT_LENGTH, what: str = "text") -> Any:
        if not isinstance(raw, str):
            self.error(path, f"expected text, got {_describe(raw)}")
        elif not raw:
            self.error(path, "the value must not be empty (isNull finds devices without a value)")
        elif len(raw) > max_length:
            self.error(path, f"{what} is at most {max_length:,} characters")
        elif "\x00" in raw:
            self.error(path, "text must not contain the NUL character")
        elif text_problem(raw):  # a lone surrogate, which cannot be stored or even sent to PostgreSQL
            self.error(path, "text must not contain lone surrogate characters")
        else:
            return raw
        return _INVALID

    def regex(self, raw: object, path: str) -> Any:
        pattern = self.text(raw, path, max_length=MAX_REGEX_LENGTH, what="a regular expression")
        if pattern is not _INVALID:
            self.regexes.append((path, pattern))
        return pattern

    def list_of(self, field: Field, operator_: str, raw: object, path: str) -> Any:
        if not isinstance(raw, list):
            self.error(path, f"{operator_!r} needs a list of values, got {_describe(raw)}")
            return _INVALID
        if not raw:
            self.error(path, f"{operator_!r} needs at least one value")
            return _INVALID
        if len(raw) > MAX_LIST_LENGTH:
            self.error(path, f"a list holds at most {MAX_LIST_LENGTH:,} values")
            return _INVALID
        parse_item = self.enum if field.type == ENUM else (lambda _field, item, item_path: self.text(item, item_path))
        items = [parse_item(field, item, f"{path}[{i}]") for i, item in enumerate(raw)]
        return _INVALID if _INVALID in items else items

    def number(self, field: Field, raw: object, path: str) -> Any:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.error(path, f"expected a number, got {_describe(raw)}")
        elif not math.isfinite(raw) or abs(raw) > MAX_NUMBER:
            self.error(path, f"a number lies between -{MAX_NUMBER:,} and {MAX_NUMBER:,}")
        elif field.whole_days and (raw < 0 or raw > MAX_AMOUNT or raw != int(raw)):
            self.error(path, f"{field.name} is a whole number of days from 0 to {MAX_AMOUNT:,}")
        else:
            return int(raw) if field.whole_days else raw
        return _INVALID

    def moment(self, raw: object, path: str) -> Any:
        """A date (midnight UTC) or a date and time, without an offset in UTC (rmm.parsing.parse_datetime)."""
        shown = _quote(raw) if isinstance(raw, str) else _describe(raw)
        try:
            return parse_datetime(raw)
        except OutOfRange as exc:
            self.error(path, f"{shown} is out of range: {str(exc)[0].lower()}{str(exc)[1:-1]}")
        except ValueError:
            self.error(path, f"expected an ISO-8601 date and time such as 2025-05-01T08:00:00Z, got {shown}")
        return _INVALID

    def enum(self, field: Field, raw: object, path: str) -> Any:
        if not isinstance(raw, str):
            self.error(path, f"expected text, got {_describe(raw)}")
            return _INVALID
        if not field.choices:  # siteId
            try:
                return uuid.UUID(raw)
            except ValueError:
                self.error(path, f"{_quote(raw)} is not a site id (a UUID)")
                return _INVALID
        if raw not in field.choices:
            self.error(path, f"{_quote(raw)} is not a valid {field.name}; expected one of: {', '.join(field.choices)}")
            return _INVALID
        return raw

    def between(self, field: Field, raw: object, path: str) -> Any:
        if not isinstance(raw, dict):
            self.error(path, f'\'between\' needs an object {{"from": ..., "to": ...}}, got {_describe(raw)}')
            return _INVALID
        ok = not self.unknown_keys(raw, path, {"from", "to"})
        bounds: list[Any] = []
        for end in ("from", "to"):
            end_path = _join(path, end)
            if raw.get(end) is None:
                self.error(end_path, f"'between' needs a '{end}'")
                bounds.append(_INVALID)
            else:
                parse = self.moment if field.type == DATETIME else functools.partial(self.number, field)
                bounds.append(parse(raw[end], end_path))
        if not ok or _INVALID in bounds:
            return _INVALID
        low, high = bounds
        if low > high:
            self.error(
                path,
                "'from' must not be after 'to'" if field.type == DATETIME else "'from' must not be greater than 'to'",
            )
            return _INVALID
        return (low, high)

    def duration(self, operator_: str, raw: object, path: str) -> Any:
        if not isinstance(raw, dict):
            self.error(
                path,
                f'{operator_!r} needs an object {{amount, unit}} such as {{"amount": 2, "unit": "hours"}}, '
                f"got {_describe(raw)}",
            )
            return _INVALID
        ok = not self.unknown_keys(raw, path, {"amount", "unit"})
        amount: Any = raw.get("amount")
        unit: Any = raw.get("unit")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
            self.error(_join(path, "amount"), f"the amount is a whole number from 1 to {MAX_AMOUNT:,}")
            ok = False
        if unit not in DURATION_UNITS:
            shown = f", not {_quote(unit)}" if isinstance(unit, str) else ""
            self.error(_join(path, "unit"), f"the unit is one of {', '.join(DURATION_UNITS)}{shown}")
            ok = False
        return timedelta(**{unit: amount}) if ok else _INVALID


def _check_regexes(regexes: list[tuple[str, str]], parser: _Parser) -> None:
    """Ask PostgreSQL whether it accepts each pattern: its regular expressions (ARE) are not Python's."""
    for path, pattern in regexes:
        try:
            # A savepoint, so the error does not break the caller's transaction.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT '' ~ %s", [pattern])
        except DataError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused by PostgreSQL"
            reason = reason.removeprefix("invalid regular expression: ")
            parser.error(path, f"not a valid regular expression: {reason}")


# Compilation.


def _compile(node: _Node, now: datetime) -> Q:
    if isinstance(node, _Group):
        combine = operators.and_ if node.operator == "AND" else operators.or_
        return functools.reduce(combine, (_compile(child, now) for child in node.children))
    source = node.field.source
    if source == DEVICE:
        return _on_device(node, now)
    if source == LATEST_SAMPLE:
        return _on_latest_sample(node)
    if source == COMPUTED:
        return _on_days_since_last_seen(node, now)
    return _on_related_rows(node, now)


def _empty_value(field: Field) -> object:
    """The value that stands for "unknown" besides NULL: '' in NOT NULL text columns, {} for tags."""
    return {STRING: "", ARRAY: []}.get(field.type)


def _nullable(model: type[models.Model], column: str) -> bool:
    found = model._meta.get_field(column)
    return isinstance(found, models.Field) and found.null


def _without_value(model: type[models.Model], field: Field) -> Q:
    column = field.column
    missing = Q(**{f"{column}__isnull": True}) if _nullable(model, column) else Q()
    if (empty := _empty_value(field)) is not None:
        missing |= Q(**{column: empty})
    return missing or Q(pk__in=[])  # a NOT NULL column without an "unknown" value: never missing


def _with_value(model: type[models.Model], field: Field) -> Q:
    column = field.column
    present = Q(**{f"{column}__isnull": False}) if _nullable(model, column) else Q()
    if (empty := _empty_value(field)) is not None:
        present &= ~Q(**{column: empty})
    return present


_NUMBER_LOOKUPS = {
    "equals": Exact,
    "greaterThan": GreaterThan,
    "greaterThanOrEquals": GreaterThanOrEqual,
    "lessThan": LessThan,
    "lessThanOrEquals": LessThanOrEqual,
}


def _compare(lhs: Any, operator_: str, value: Any) -> Q:
    """A number comparison built from lookup classes rather than ``column__lt=...`` keywords: those coerce the bound to
    the column's type, so on an integer column ``equals 3.5`` became ``= 3`` and ``between 4.5..8`` ``BETWEEN 4 AND 8``.
    The same code serves a column (``F``) and the latest-sample subquery."""
    if operator_ == "between":
        low, high = value
        return Q(Range(lhs, (Value(low), Value(high))))
    return Q(_NUMBER_LOOKUPS[operator_](lhs, Value(value)))


def _positive(field: Field, operator_: str, value: Any, now: datetime) -> Q:
    """The rows (of the field's source model) whose column satisfies a positive operator."""
    column = field.column
    if field.type == STRING:
        if operator_ == "in":
            return Q(In(Upper(column), [Upper(Value(item)) for item in value]))
        if operator_ == "matches":
            return Q(**{f"{column}__regex": value}) & ~Q(**{column: ""})
        if operator_ == "contains" and len(value) < 3:
            # LIKE '%ab%' gives pg_trgm no trigram to look up, and the planner then reads a whole trigram index
            # (software names: 4-5 s at 15 million rows, bench/RESULTS.md); strpos() never tempts it.
            return Q(GreaterThan(StrIndex(Upper(column), Upper(Value(value))), 0))
        lookup = {"equals": "iexact", "contains": "icontains", "startsWith": "istartswith", "endsWith": "iendswith"}
        return Q(**{f"{column}__{lookup[operator_]}": value})
    if field.type == NUMBER:
        return _compare(F(column), operator_, value)
    if field.type == DATETIME:
        if operator_ == "between":
            return Q(**{f"{column}__range": value})
        if operator_ == "withinLast":
            return Q(**{f"{column}__gte": now - value})
        return Q(**{f"{column}__{'lt' if operator_ == 'before' else 'gt'}": value})
    if field.type == ARRAY:
        # && and @> : what the GIN index on tags serves.
        return Q(**{f"{column}__{'overlap' if operator_ == 'hasAny' else 'contains'}": value})
    if operator_ == "in":  # enum
        return Q(**{f"{column}__in": value})
    return Q(**{column: value})  # enum or boolean equals


def _on_device(condition: _Condition, now: datetime) -> Q:
    field, operator_ = condition.field, condition.operator
    if operator_ in ("isNull", "isEmpty"):
        return _without_value(Device, field)
    if operator_ in ("isNotNull", "isNotEmpty"):
        return _with_value(Device, field)
    if operator_ == "notWithinLast":
        return Q(**{f"{field.column}__lt": now - condition.value}) | Q(**{f"{field.column}__isnull": True})
    if operator_ in _COMPLEMENT_OF:
        positive = _positive(field, _COMPLEMENT_OF[operator_], condition.value, now)
        complement = ~positive
        # No nullable device column has a negative operator today (notWithinLast is above); a future one must still
        # match when NULL, and expression lookups such as the IN of UPPER()s get no NULL handling from Django.
        if _nullable(Device, field.column):
            complement |= Q(**{f"{field.column}__isnull": True})
        return complement
    return _positive(field, operator_, condition.value, now)


def _on_related_rows(condition: _Condition, now: datetime) -> Q:
    """Hardware, interfaces, disks, software: EXISTS of a row of the device satisfying the positive operator, NOT
    EXISTS for its complement. A device without rows thus has no value, and fails every positive operator."""
    field, operator_ = condition.field, condition.operator
    model = _MODELS[field.source]

    def rows(where: Q) -> Exists:
        # org_id = the device's org_id is implied by the composite foreign key, but saying it lets PostgreSQL carry
        # the caller's org_id = X into the subquery and use the (org_id, ...) indexes: without it a software
        # condition scanned every organization's rows (bench/RESULTS.md, dynamic groups).
        return Exists(model._default_manager.filter(where, device_id=OuterRef("pk"), org_id=OuterRef("org_id")))

    if operator_ == "isNull":
        return Q(~rows(_with_value(model, field)))
    if operator_ == "isNotNull":
        return Q(rows(_with_value(model, field)))
    if field.source == SOFTWARE:
        negative, positive_operator = field.name == "software.notInstalled", operator_
    else:
        negative, positive_operator = operator_ in _COMPLEMENT_OF, _COMPLEMENT_OF.get(operator_, operator_)
    exists = rows(_positive(field, positive_operator, condition.value, now))
    return Q(~exists) if negative else Q(exists)


def _on_latest_sample(condition: _Condition) -> Q:
    sample = Subquery(
        DeviceTelemetry.objects.filter(device_id=OuterRef("pk")).order_by("-ts").values(condition.field.column)[:1]
    )
    operator_ = condition.operator
    if operator_ in ("isNull", "isNotNull"):
        return Q(IsNull(sample, operator_ == "isNull"))
    if operator_ == "notEquals":
        return Q(IsNull(sample, True)) | ~_compare(sample, "equals", condition.value)
    return _compare(sample, operator_, condition.value)


def _on_days_since_last_seen(condition: _Condition, now: datetime) -> Q:
    """floor((now - last_seen_at) / 1 day) compared with whole numbers, written as ranges of last_seen_at so the
    (org_id, last_seen_at) index serves them: days ≥ n ⇔ last_seen_at ≤ now - n days."""

    def at_least(days: int) -> Q:
        return Q(last_seen_at__lte=now - timedelta(days=days))

    def fewer_than(days: int) -> Q:
        return Q(last_seen_at__gt=now - timedelta(days=days))

    operator_, n = condition.operator, condition.value
    match operator_:
        case "isNull":
            return Q(last_seen_at__isnull=True)
        case "isNotNull":
            return Q(last_seen_at__isnull=False)
        case "greaterThanOrEquals":
            return at_least(n)
        case "greaterThan":
            return at_least(n + 1)
        case "lessThan":
            return fewer_than(n)
        case "lessThanOrEquals":
            return fewer_than(n + 1)
        case "equals":
            return at_least(n) & fewer_than(n + 1)
        case "notEquals":
            return Q(last_seen_at__isnull=True) | fewer_than(n) | at_least(n + 1)
        case "between":
            low, high = n
            return at_least(low) & fewer_than(high + 1)
    raise AssertionError(f"daysSinceLastSeen has no operator {operator_}")  # pragma: no cover
