"""Hand-written reading of agent request bodies.

The agent endpoints do not use DRF serializers: on the heartbeat path a serializer costs more than the whole rest
of the request (see ``devices.agent_api.sql``). These readers check one value each and record problems under the
field's path as the agent wrote it (``metrics.cpuPercent``, ``software[12].name``), so a 400 names every bad field
at once.

Everything PostgreSQL would refuse is refused here, with a 400, before a value reaches a statement: on the heartbeat
path one value the database refuses would otherwise fail the whole group-commit batch, other agents' heartbeats
included (issue 10). The checks themselves live in ``rmm.parsing`` (shared with the technician API):

- the whole body (``read_json_object``): nesting deeper than ``MAX_JSON_DEPTH`` is refused on the raw bytes before
  ``json.loads`` recurses; NUL characters and lone surrogates in any string or key, read or not;
- datetimes (``timestamp``): ``parse_datetime``, which refuses offsets beyond ±15:59 and moments outside years
  1-9999 as well as impossible dates;
- numbers: the range of their column (``integer`` / ``number`` with the column's bounds);
- the agent id in the path (``agent_id_is_well_formed``): one that no device can have is answered like an unknown
  agent, without a query.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import time
from typing import Any

from django.core.exceptions import RequestDataTooBig

from devices.agent_api.errors import AgentError, invalid_fields, too_many_items
from rmm.parsing import MAX_JSON_DEPTH, json_depth_exceeds, json_problem, parse_datetime, text_problem

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

_MISSING = object()


class Problems:
    """The problems found in one body: field path → messages."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def raise_if_any(self) -> None:
        if self.fields:
            raise invalid_fields(self.fields)


# Under gevent workers one long loop holds up every other request of the process; long loops call cooperate()
# every this many items so heartbeats keep flowing while a 10,000-item inventory is read and written.
COOPERATE_EVERY = 1000


def cooperate() -> None:
    """Let other requests run: a gevent yield under gevent workers (time.sleep is patched), a GIL release otherwise."""
    time.sleep(0)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# JSON can carry a NUL only as the escape \u0000, and a lone surrogate only as an escape \ud800-\udfff or as the
# bytes ED A0-BF (json.loads decodes with "surrogatepass"). A body without any of these (nearly every heartbeat) is
# not walked at all; one with them is walked, and the walk decides.
_MAY_HOLD_UNSTORABLE_TEXT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")
# Problems named in one 400 at most: a 10,000-item upload with NUL in every name does not get a 10,000-line answer.
MAX_TEXT_PROBLEMS = 100


def read_json_object(request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 / 413 in the shared error shape.

    Refused here for every agent body alike: nesting deeper than ``MAX_JSON_DEPTH`` (on the raw bytes, before
    ``json.loads`` would recurse into it), and text PostgreSQL cannot store (NUL, lone surrogates) in any string or
    key, whether or not the endpoint reads that field.
    """
    try:
        raw = request.body
    except RequestDataTooBig:
        raise AgentError(413, "payload_too_large", "The request body is too large.") from None
    if not raw:
        raise AgentError(400, "invalid_json", "The request body is empty; send a JSON object.")
    # Nesting needs at least as many opening brackets as levels: counting them (in C) spares nearly every body the
    # byte-by-byte walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_exceeds(raw):
        raise AgentError(400, "invalid_json", f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise AgentError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise AgentError(400, "invalid_json", "The request body must be a JSON object.")
    if _MAY_HOLD_UNSTORABLE_TEXT.search(raw):
        problems = unstorable_text(data)
        if problems:
            raise invalid_fields(problems)
    return data


def unstorable_text(body: dict) -> dict[str, list[str]]:
    """Where ``body`` holds text PostgreSQL cannot store (``rmm.parsing.json_problem``), by field path: the first
    problem of each top-level field and of each item of a top-level list, so an upload's bad rows are all named."""
    problems: dict[str, list[str]] = {}
    for key, value in body.items():
        problem = text_problem(key)
        if problem:
            problems.setdefault("", []).append(f"The key {key[:40]!a}: {problem[0].lower()}{problem[1:]}")
            continue
        parts = enumerate(value) if isinstance(value, list) else ((None, value),)
        for index, part in parts:
            found = json_problem(part)
            if found is None:
                continue
            prefix = key if index is None else f"{key}[{index}]"
            path, message = found
            path = f"{prefix}{path}" if not path or path.startswith("[") else f"{prefix}.{path}"
            problems.setdefault(path, []).append(message)
            if len(problems) >= MAX_TEXT_PROBLEMS:
                return problems
    return problems


AGENT_ID_MAX_LENGTH = 64  # devices.agent_id


def agent_id_is_well_formed(agent_id: str) -> bool:
    """Whether ``agent_id`` could be a device's agent id: 1 to 64 printable ASCII characters (enrollment mints 64
    hex digits). Anything else (a NUL, a lone surrogate, a control character, 65 characters) is no device's, so it
    is answered 401 ``invalid_token`` like an unknown agent without asking the database, which would refuse a NUL
    with an error instead of finding nothing."""
    return 0 < len(agent_id) <= AGENT_ID_MAX_LENGTH and agent_id.isascii() and agent_id.isprintable()


def path_of(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def clean_string(value: str) -> str | None:
    """The problem with a string PostgreSQL would refuse, or None (``rmm.parsing.text_problem``)."""
    return text_problem(value)


def text(
    obj: dict,
    key: str,
    prefix: str,
    problems: Problems,
    *,
    max_length: int | None,
    required: bool = False,
    blank: bool = True,
) -> str:
    """A string field; missing or null is ``""`` (the columns are NOT NULL with blank meaning unknown)."""
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            problems.add(path_of(prefix, key), "This field is required.")
        return ""
    if not isinstance(value, str):
        problems.add(path_of(prefix, key), "Must be a string.")
        return ""
    problem = clean_string(value)
    if problem:
        problems.add(path_of(prefix, key), problem)
        return ""
    if max_length is not None and len(value) > max_length:
        problems.add(path_of(prefix, key), f"At most {max_length} characters.")
    elif not blank and not value.strip():
        problems.add(path_of(prefix, key), "Must not be blank.")
    return value


def optional_text(obj: dict, key: str, prefix: str, problems: Problems, *, max_length: int) -> str | None:
    """A string field whose absence means "unchanged" (None), e.g. the heartbeat's hostname."""
    if obj.get(key) is None:
        return None
    value = text(obj, key, prefix, problems, max_length=max_length, blank=False)
    return value or None


def integer(
    obj: dict,
    key: str,
    prefix: str,
    problems: Problems,
    *,
    minimum: int | None = 0,
    maximum: int = BIGINT_MAX,
    required: bool = False,
) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(path_of(prefix, key), "This field is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(path_of(prefix, key), "Must be a whole number.")
        return None
    if isinstance(value, float):
        # Agents written in languages with one number type send 12.0 for 12.
        if not value.is_integer():
            problems.add(path_of(prefix, key), "Must be a whole number.")
            return None
        value = int(value)
    if (minimum is not None and value < minimum) or value > maximum:
        problems.add(path_of(prefix, key), _range_message(minimum, maximum))
        return None
    return value


def number(
    obj: dict,
    key: str,
    prefix: str,
    problems: Problems,
    *,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(path_of(prefix, key), "Must be a number.")
        return None
    value = float(value)
    if not math.isfinite(value):
        problems.add(path_of(prefix, key), "Must be a finite number.")
        return None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        problems.add(path_of(prefix, key), _range_message(minimum, maximum))
        return None
    return value


def _range_message(minimum, maximum) -> str:
    if minimum is None:
        return f"Must be at most {maximum}."
    if maximum is None or maximum in (BIGINT_MAX, INT_MAX):
        return f"Must be at least {minimum}."
    return f"Must be between {minimum} and {maximum}."


def boolean(obj: dict, key: str, prefix: str, problems: Problems, *, default: bool = False) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.add(path_of(prefix, key), "Must be true or false.")
        return default
    return value


def choice(
    obj: dict, key: str, prefix: str, problems: Problems, *, choices, required: bool = False, default: str = ""
) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(path_of(prefix, key), "This field is required.")
        return default
    if not isinstance(value, str) or value not in choices:
        problems.add(path_of(prefix, key), f"Must be one of: {', '.join(choices)}.")
        return default
    return value


def timestamp(obj: dict, key: str, prefix: str, problems: Problems, *, required: bool = False) -> dt.datetime | None:
    """An ISO 8601 timestamp with a time zone (``2026-11-25T10:00:00Z``) that PostgreSQL can store
    (``rmm.parsing.parse_datetime``: no offset beyond ±15:59, nothing outside years 1-9999)."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(path_of(prefix, key), "This field is required.")
        return None
    try:
        return parse_datetime(value, assume_utc=False)
    except ValueError as exc:
        problems.add(path_of(prefix, key), str(exc))
        return None


def date(obj: dict, key: str, prefix: str, problems: Problems) -> dt.date | None:
    """A calendar date: ``2024-03-01``, ``20240301`` (the Windows registry's InstallDate) or a full timestamp."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        candidate = value.strip()
        try:
            if len(candidate) == 8 and candidate.isdigit():
                return dt.date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
            if len(candidate) == 10:
                return dt.date.fromisoformat(candidate)
            if 10 < len(candidate) <= 40:
                return dt.datetime.fromisoformat(candidate).date()
        except ValueError:
            pass
    problems.add(path_of(prefix, key), "Must be a date (YYYY-MM-DD).")
    return None


def ip_address(obj: dict, key: str, prefix: str, problems: Problems, *, required: bool = False) -> str:
    value = text(obj, key, prefix, problems, max_length=45, required=required)
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            problems.add(path_of(prefix, key), "Must be an IPv4 or IPv6 address.")
            return ""
    return value


def ip_version(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def item_list(body: dict, key: str, problems: Problems, *, limit: int, required: bool = True) -> list[tuple[int, dict]]:
    """The objects under ``key`` with their indexes: 413 ``too_many_items`` over ``limit`` (checked before anything
    else); an item that is not an object is a problem, and the others are still read so all problems are named."""
    items = body.get(key)
    if items is None:
        if required:
            problems.add(key, "This field is required.")
        return []
    if not isinstance(items, list):
        problems.add(key, "Must be a list.")
        return []
    if len(items) > limit:
        raise too_many_items(key, limit)
    good = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            good.append((index, item))
        else:
            problems.add(f"{key}[{index}]", "Must be an object.")
    return good


def sub_object(body: dict, key: str, problems: Problems, *, required: bool = False) -> dict | None:
    value = body.get(key)
    if value is None:
        if required:
            problems.add(key, "This field is required.")
        return None
    if not isinstance(value, dict):
        problems.add(key, "Must be an object.")
        return None
    return value


# Telemetry metrics: (JSON name, is integer, minimum, maximum). The order is that of the device_telemetry columns.
METRICS = (
    ("cpuPercent", False, 0, 100),
    ("ramPercent", False, 0, 100),
    ("ramUsedMb", True, 0, BIGINT_MAX),
    ("diskPercent", False, 0, 100),
    ("diskUsedGb", False, 0, None),
    ("networkInBytes", True, 0, BIGINT_MAX),
    ("networkOutBytes", True, 0, BIGINT_MAX),
    ("processCount", True, 0, INT_MAX),
)


def metrics(obj: dict, prefix: str, problems: Problems) -> tuple:
    """The eight metric values of a sample, in column order (None where the agent sent none)."""
    values = []
    for name, whole, minimum, maximum in METRICS:
        if obj.get(name) is None:
            values.append(None)
        elif whole:
            values.append(integer(obj, name, prefix, problems, minimum=minimum, maximum=maximum))
        else:
            values.append(number(obj, name, prefix, problems, minimum=minimum, maximum=maximum))
    return tuple(values)
