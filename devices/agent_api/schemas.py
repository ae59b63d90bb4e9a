"""The request bodies of the agent protocol (agent-api.md), declared as pydantic models.

Why pydantic: it validates a heartbeat body in a few microseconds, far less than a DRF serializer would cost on the
hot path (bench/RESULTS.md, "Issue 11"), names every bad field at once by its path as the agent wrote it
(``metrics.cpuPercent``, ``software[12].name``), gives named fields, and gives the JSON Schema the OpenAPI document
shows (``rmm.openapi``).

Everything PostgreSQL would refuse is refused here, with a 400, before a value reaches a statement: on the heartbeat
path one value the database refuses would fail the whole group-commit batch, other agents' heartbeats included
(issue 10). So:

- the whole body (``read_json_object``): nesting deeper than ``MAX_JSON_DEPTH`` is refused on the raw bytes before
  ``json.loads`` recurses; NaN and Infinity are not JSON; NUL characters and lone surrogates are refused in any
  string or key, read or not (``unstorable_text``);
- datetimes (``Timestamp``): ``rmm.parsing.parse_datetime``, which refuses offsets beyond ±15:59, moments outside
  years 1-9999 and impossible dates;
- numbers (``WholeNumber``, ``Number``): the range of their column; strings: the length of theirs;
- lists: over their limit, 413 ``too_many_items`` and nothing stored;
- the agent id in the path (``agent_id_is_well_formed``): one no device can have is answered like an unknown agent.

A JSON ``null`` means the same as an absent field everywhere (``AgentBody``): a required field that is null is
missing, an optional one takes its default. Validation errors become the shared error shape in ``validate``, with
this protocol's messages (``MESSAGES``), not pydantic's.
"""

import datetime as dt
import ipaddress
import json
import re
import time
from typing import Annotated, Any, ClassVar, Literal

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.plumbing import list_hash
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from devices.agent_api.errors import AgentError, invalid_fields, too_many_items
from devices.models import Device
from devices.models.inventory import DeviceDiskHealth, DeviceNetworkConnectionProtocol
from devices.models.telemetry import BIGINT_MAX, INT_MAX, METRICS
from rmm.parsing import (
    MAX_JSON_DEPTH,
    json_depth_exceeds,
    json_problem,
    parse_datetime,
    text_problem,
    value_nests_deeper_than,
)

# ---- the body as a whole ----------------------------------------------------------------------------------------

# Under gevent workers one long loop holds up every other request of the process: long lists are validated this
# many items at a time, with a yield between (``cooperate``), so heartbeats keep flowing during a 10,000-item upload.
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


def read_body(request) -> bytes:
    """The request's raw body, or a 413 in the shared error shape when it is over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        return request.body
    except RequestDataTooBig:
        raise AgentError(413, "payload_too_large", "The request body is too large.") from None


def _may_nest_too_deep(raw: bytes) -> bool:
    # Nesting needs at least as many opening brackets as levels: counting them (in C) spares nearly every body the
    # count of its levels.
    return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH


def _too_deep() -> AgentError:
    return AgentError(400, "invalid_json", f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")


def read_json_object(request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 / 413 in the shared error shape.

    Refused here for every agent body alike: nesting deeper than ``MAX_JSON_DEPTH`` (counted on the decoded value;
    ``json.loads`` itself refuses what nests deeper than Python's recursion limit), and text PostgreSQL cannot store
    (NUL, lone surrogates) in any string or key, whether or not the endpoint reads that field.
    """
    raw = read_body(request)
    if not raw:
        raise AgentError(400, "invalid_json", "The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:  # deeper than Python's recursion limit
        raise _too_deep() from None
    except ValueError:
        # Too deep is said first, as it always was, of a body that is also malformed.
        if _may_nest_too_deep(raw) and json_depth_exceeds(raw):
            raise _too_deep() from None
        raise AgentError(400, "invalid_json", "The request body is not valid JSON.") from None
    if _may_nest_too_deep(raw) and value_nests_deeper_than(data):
        raise _too_deep()
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


# ---- value types ------------------------------------------------------------------------------------------------
# Each checks in pydantic-core (Rust) where it can; the few Python validators run only for fields that are present.


def Text(max_length: int | None = None, *, blank: bool = True) -> StringConstraints:
    """``Annotated[str, Text(255)]``: a string of at most ``max_length`` characters; ``blank=False`` refuses one that
    is empty or all spaces."""
    return StringConstraints(strict=True, max_length=max_length, pattern=None if blank else r"\S")


def _range_message(minimum, maximum) -> str:
    if minimum is None:
        return f"Must be at most {maximum}."
    if maximum is None:
        return f"Must be at least {minimum}."
    return f"Must be between {minimum} and {maximum}."


class _InRange:
    """A JSON number in [minimum, maximum] (``Annotated[int, WholeNumber()]``, ``Annotated[float, Number()]``), as a
    chain of pydantic-core steps, each with this protocol's message: the type (never a bool or a string), then (whole
    numbers) 12.0 taken as 12 for agents whose language has one number type, then the range."""

    def __init__(self, *, whole: bool, minimum, maximum, message: str | None) -> None:
        self.whole, self.minimum, self.maximum, self.message = whole, minimum, maximum, message

    def _refused_as(self, schema, kind: str, default: str):
        return core_schema.custom_error_schema(
            schema, custom_error_type=kind, custom_error_message=self.message or default
        )

    def __get_pydantic_core_schema__(self, source, handler):
        if self.whole:
            typed = core_schema.union_schema(
                [core_schema.int_schema(strict=True), core_schema.float_schema(strict=True, allow_inf_nan=False)]
            )
            steps = [
                self._refused_as(typed, "whole_number", "Must be a whole number."),
                self._refused_as(core_schema.int_schema(), "whole_number", "Must be a whole number."),
            ]
            in_range: core_schema.CoreSchema = core_schema.int_schema(ge=self.minimum, le=self.maximum)
        else:
            steps = [
                self._refused_as(core_schema.float_schema(strict=True), "number", "Must be a number."),
                self._refused_as(
                    core_schema.float_schema(allow_inf_nan=False), "not_finite", "Must be a finite number."
                ),
            ]
            in_range = core_schema.float_schema(ge=self.minimum, le=self.maximum)
        steps.append(self._refused_as(in_range, "out_of_range", _range_message(self.minimum, self.maximum)))
        return core_schema.chain_schema(steps)

    def __get_pydantic_json_schema__(self, schema, handler) -> dict[str, Any]:
        json_schema: dict[str, Any] = {"type": "integer" if self.whole else "number"}
        if self.minimum is not None:
            json_schema["minimum"] = self.minimum
        if self.maximum is not None:
            json_schema["maximum"] = self.maximum
        return json_schema


def WholeNumber(minimum: int | None = 0, maximum: int = BIGINT_MAX, *, message: str | None = None) -> _InRange:
    """``Annotated[int, WholeNumber()]``: an integer in [minimum, maximum] (by default a bigint's non-negative
    range); 12.0 is taken as 12."""
    return _InRange(whole=True, minimum=minimum, maximum=maximum, message=message)


def Number(minimum: float | None = 0, maximum: float | None = None, *, message: str | None = None) -> _InRange:
    """``Annotated[float, Number()]``: a finite number in [minimum, maximum]."""
    return _InRange(whole=False, minimum=minimum, maximum=maximum, message=message)


Bool = Annotated[bool, Strict()]


def _timestamp(value: object, info: ValidationInfo) -> dt.datetime:
    try:
        moment = parse_datetime(value, assume_utc=False)
    except ValueError as exc:
        raise PydanticCustomError("timestamp", str(exc)) from None
    window = info.context and info.context.get("backlog_window")
    if window and info.field_name == "timestamp":
        oldest, now, retention_days = window
        if moment > now:
            raise PydanticCustomError("timestamp", "Must not be in the future.")
        if moment < oldest:
            raise PydanticCustomError("timestamp", f"Is older than the telemetry retention of {retention_days} days.")
    return moment


# An ISO 8601 timestamp with a time zone (``2026-11-25T10:00:00Z``) that PostgreSQL can store.
Timestamp = Annotated[
    dt.datetime, PlainValidator(_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})
]


def _date(value: object) -> dt.date | None:
    if value == "":
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
    raise PydanticCustomError("date", "Must be a date (YYYY-MM-DD).")


# A calendar date: ``2024-03-01``, ``20240301`` (the Windows registry's InstallDate) or a full timestamp.
Date = Annotated[dt.date | None, PlainValidator(_date), WithJsonSchema({"type": "string", "examples": ["2024-03-01"]})]


def _ip(value: str) -> str:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise PydanticCustomError("ip_address", "Must be an IPv4 or IPv6 address.") from None
    return value


def _without_zone(value: object) -> object:
    """An IPv6 address without its zone id: operating systems list link-local addresses with the interface they are
    reached through (``fe80::1%eth0``, ``fe80::1%12`` on Windows), which means nothing off the machine, makes the
    console's address search miss it, and with a long interface name runs past the columns' 45 characters — one
    such address refused the agent's whole upload. Anything else is left for the validators to judge."""
    if isinstance(value, str) and "%" in value and ":" in value:
        return value.partition("%")[0]
    return value


# An IPv4 or IPv6 address (an IPv6 zone id dropped), or "" (unknown).
IpAddress = Annotated[
    str, Strict(), StringConstraints(max_length=45), AfterValidator(_ip), BeforeValidator(_without_zone)
]
# A connection's address as the OS lists it (not always an IP: "*" on some systems), an IPv6 zone id dropped.
SocketAddress = Annotated[str, Text(45), BeforeValidator(_without_zone)]


def ip_version(address: str) -> Literal["ipv4", "ipv6"]:
    return "ipv6" if ":" in address else "ipv4"


def _as_text(value: object) -> object:
    """A collected value: a number or boolean is kept as its JSON text (registry DWORDs arrive so)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return value


CollectedValue = Annotated[
    str, Strict(), BeforeValidator(_as_text), WithJsonSchema({"type": ["string", "number", "boolean"]})
]

STREAM_LIMIT_BYTES = 1024 * 1024  # stdout / stderr of a command result


def _stream(value: str) -> str:
    if len(value) > STREAM_LIMIT_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > STREAM_LIMIT_BYTES:
        raise PydanticCustomError("stream_too_long", "At most 1 MiB.")
    return value


Stream = Annotated[str, Strict(), AfterValidator(_stream)]


# ---- bodies -----------------------------------------------------------------------------------------------------


class AgentBody(BaseModel):
    """A body of the agent protocol: camelCase on the wire, snake_case here (the name of the column it is written
    to, where there is one); unknown fields ignored (agents newer than the server send more).

    A null is an absent field: a required field that is null is missing (``message_of``), and an optional field's
    type allows None. A body whose optional fields default to something else ("" for a text column) is a
    ``NullIsAbsent`` body instead.
    """

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore")


class NullIsAbsent(AgentBody):
    """A body where null takes the field's default (one Python call per object: not on the heartbeat's path)."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data


def _metric_type(metric):
    if metric.whole:
        return Annotated[int, WholeNumber(metric.minimum, metric.maximum)]
    return Annotated[float, Number(metric.minimum, metric.maximum)]


# One sample's metrics, built from the one table of metrics (devices.models.telemetry.METRICS).
Metrics = create_model(  # type: ignore[call-overload]  # fields from a table: mypy cannot see them
    "Metrics",
    __base__=AgentBody,
    __doc__="One sample of the device's metrics; a metric the agent does not collect is left out.",
    **{metric.column: (_metric_type(metric) | None, Field(None, alias=metric.wire)) for metric in METRICS},
)


class BacklogSample(Metrics):
    """A sample the agent could not send when it was taken, with its own time."""

    timestamp: Timestamp


def metric_values(sample: BaseModel) -> tuple:
    """A sample's metrics in column order (None where the agent sent none), as the heartbeat SQL takes them."""
    return tuple(getattr(sample, metric.column) for metric in METRICS)


BACKLOG_LIMIT = 1000


class Heartbeat(AgentBody):
    """POST /{agentId}/heartbeat. ``hostname``, ``osVersion`` and ``osBuild`` left out mean "unchanged"."""

    agent_version: Annotated[str, Text(20, blank=False)]
    status: Literal["ok", "warning", "error"] | None = None  # the agent's own health: checked, not stored
    hostname: Annotated[str, Text(255, blank=False)] | None = None
    os_version: Annotated[str, Text(100, blank=False)] | None = None
    os_build: Annotated[str, Text(100, blank=False)] | None = None
    # Reported but not stored (no column): checked so an agent learns about a malformed value.
    uptime: Annotated[float, Number(0, message="Must be a number of seconds, at least 0.")] | None = None
    last_user: Annotated[str, Strict()] | None = None
    pending_reboot: Bool | None = None
    metrics: Metrics | None = None
    metrics_backlog: Annotated[list[BacklogSample], Field(max_length=BACKLOG_LIMIT)] | None = None


class Hardware(NullIsAbsent):
    """PUT /{agentId}/hardware, and enrollment's ``hardwareInfo``: the device_hardware columns."""

    cpu_model: Annotated[str, Text(255)] = ""
    cpu_cores: Annotated[int, WholeNumber(maximum=INT_MAX)] | None = None
    cpu_threads: Annotated[int, WholeNumber(maximum=INT_MAX)] | None = None
    ram_total_mb: Annotated[int, WholeNumber()] | None = None
    disk_total_gb: Annotated[float, Number()] | None = None
    gpu_model: Annotated[str, Text(255)] = ""
    serial_number: Annotated[str, Text(255)] = ""
    manufacturer: Annotated[str, Text(255)] = ""
    model: Annotated[str, Text(255)] = ""
    bios_version: Annotated[str, Text(255)] = ""


NETWORK_LIMIT = 100


class NetworkAdapter(NullIsAbsent):
    """One network adapter (PUT /{agentId}/network); ``ipType`` is worked out from the address when left out."""

    interface_name: Annotated[str, Text(255, blank=False)]
    mac_address: Annotated[str, Text(17)] = ""
    ip_address: IpAddress = ""
    ip_type: Literal["ipv4", "ipv6"] | None = None
    is_primary: Bool = False
    public_ip: IpAddress = ""

    @model_validator(mode="after")
    def _ip_type_from_address(self):
        if self.ip_type is None:
            self.ip_type = ip_version(self.ip_address)
        return self


class EnrollmentInterface(NullIsAbsent):
    """One interface of enrollment's ``networkInfo``."""

    name: Annotated[str, Text(255, blank=False)]
    mac: Annotated[str, Text(17)] = ""
    ip: IpAddress = ""
    is_primary: Bool = False

    def adapter(self) -> NetworkAdapter:
        """As the network inventory stores it."""
        return NetworkAdapter.model_construct(
            interface_name=self.name,
            mac_address=self.mac,
            ip_address=self.ip,
            ip_type=ip_version(self.ip),
            is_primary=self.is_primary,
            public_ip="",
        )


class Enrollment(NullIsAbsent):
    """POST /enroll: the enrollment key and what the agent says about its machine."""

    enrollment_key: Annotated[str, Text(256, blank=False)]
    hostname: Annotated[str, Text(255, blank=False)]
    # The technician API's osType enum in the OpenAPI document (drf-spectacular merges enums by this id).
    os_type: Annotated[  # type: ignore[valid-type]
        Literal[tuple(Device.OsType.values)],
        Field(json_schema_extra={"x-spec-enum-id": list_hash(Device.OsType.choices)}),
    ]
    os_version: Annotated[str, Text(100)]
    os_build: Annotated[str, Text(100)] = ""
    architecture: Annotated[str, Text(20)]
    agent_version: Annotated[str, Text(20, blank=False)]
    hardware_info: Hardware | None = None
    network_info: Annotated[list[EnrollmentInterface], Field(max_length=NETWORK_LIMIT)] = []


class Software(NullIsAbsent):
    name: Annotated[str, Text(512, blank=False)]
    version: Annotated[str, Text(255)] = ""
    publisher: Annotated[str, Text(512)] = ""
    install_date: Date = None
    install_location: Annotated[str, Text()] = ""


class Disk(NullIsAbsent):
    mount_point: Annotated[str, Text(1024, blank=False)]
    device: Annotated[str, Text(1024)] = ""
    fs_type: Annotated[str, Text(50)] = ""
    total_gb: Annotated[float, Number()] | None = None
    used_gb: Annotated[float, Number()] | None = None
    free_gb: Annotated[float, Number()] | None = None
    used_percent: Annotated[float, Number(0, 100)] | None = None
    health: Literal[tuple(DeviceDiskHealth.values)] = DeviceDiskHealth.UNKNOWN.value  # type: ignore[valid-type]


class Connection(NullIsAbsent):
    protocol: Literal[tuple(DeviceNetworkConnectionProtocol.values)]  # type: ignore[valid-type]
    local_addr: Annotated[SocketAddress, Text(45, blank=False)]
    local_port: Annotated[int, WholeNumber(maximum=65535)]
    remote_addr: SocketAddress = ""
    remote_port: Annotated[int, WholeNumber(maximum=65535)] | None = None
    state: Annotated[str, Text(20)] = ""
    pid: Annotated[int, WholeNumber(maximum=INT_MAX)] | None = None
    process_name: Annotated[str, Text(255)] = ""


class RegistryEntry(NullIsAbsent):
    registry_path: Annotated[str, Text(1024, blank=False)]
    value_name: Annotated[str, Text(512)]  # "" is the registry's default value of a key, so a blank name is a real one
    value_data: CollectedValue = ""
    value_type: Annotated[str, Text(50)] = ""
    collected_at: Timestamp | None = None  # the upload's time when left out

    identity: ClassVar[tuple[str, str]] = ("registry_path", "value_name")


class ConfigEntry(NullIsAbsent):
    file_path: Annotated[str, Text(1024, blank=False)]
    config_key: Annotated[str, Text(512, blank=False)]
    config_value: CollectedValue = ""
    collected_at: Timestamp | None = None

    identity: ClassVar[tuple[str, str]] = ("file_path", "config_key")


class InventoryList:
    """One list upload: the key of its list in the body, the item schema and the most items it may hold."""

    def __init__(self, key: str, item: type[AgentBody], limit: int) -> None:
        self.key, self.item, self.limit = key, item, limit
        self.items = TypeAdapter(list[item])  # type: ignore[valid-type]
        self.body = create_model(  # type: ignore[call-overload]
            f"{item.__name__}Upload",
            __base__=NullIsAbsent,
            **{key: (Annotated[list[item], Field(max_length=limit)], ...)},  # type: ignore[valid-type]
        )


# kind (the path segment) → its list; "hardware" is the one upload that is not a list.
INVENTORY_LISTS = {
    "software": InventoryList("software", Software, 10_000),
    "disks": InventoryList("disks", Disk, 100),
    "network": InventoryList("adapters", NetworkAdapter, NETWORK_LIMIT),
    "connections": InventoryList("connections", Connection, 10_000),
    "registry-state": InventoryList("entries", RegistryEntry, 5_000),
    "config-state": InventoryList("entries", ConfigEntry, 5_000),
}
INVENTORY_KINDS = ("hardware", *INVENTORY_LISTS)


class CommandResult(NullIsAbsent):
    """POST /{agentId}/commands/{commandId}/result."""

    status: Literal["completed", "failed", "timeout"]
    exit_code: Annotated[int, WholeNumber(-(2**63), BIGINT_MAX)] | None = None
    stdout: Stream | None = None
    stderr: Stream | None = None
    duration_ms: Annotated[int, WholeNumber()] | None = None
    error: Stream | None = None

    def result(self) -> dict:
        """The result as stored with the command (camelCase keys, as agent-api.md writes them)."""
        return self.model_dump(by_alias=True, exclude={"status"})


# ---- validation and its errors ----------------------------------------------------------------------------------

MESSAGES = {
    "missing": "This field is required.",
    "string_type": "Must be a string.",
    "string_pattern_mismatch": "Must not be blank.",
    "bool_type": "Must be true or false.",
    "model_type": "Must be an object.",
    "model_attributes_type": "Must be an object.",
    "dict_type": "Must be an object.",
    "list_type": "Must be a list.",
}


def path_of(loc: tuple) -> str:
    """pydantic's location → the field's path as the agent wrote it: ``("software", 12, "name")`` →
    ``software[12].name``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def message_of(error: ErrorDetails) -> str:
    kind = error["type"]
    if error["input"] is None and error["loc"] and isinstance(error["loc"][-1], str):
        return MESSAGES["missing"]  # null in a field that needs a value (a null list item is not an object)
    if kind in MESSAGES:
        return MESSAGES[kind]
    if kind == "string_too_long":
        return f"At most {error['ctx']['max_length']} characters."
    if kind == "literal_error":
        choices = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"Must be one of: {choices}."
    return error["msg"]  # this protocol's own (the custom errors above)


def problems_of(error: ValidationError, *, offset: tuple = (), shift: int = 0) -> dict[str, list[str]]:
    """The errors of ``error`` as field path → messages; a list over its limit is the 413 ``too_many_items``.

    ``offset`` is prefixed to every location, and ``shift`` added to its first index (a chunk of a long list).
    """
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        loc = item["loc"]
        if item["type"] == "too_long":  # a list over its limit
            raise too_many_items(path_of(offset + loc), item["ctx"]["max_length"])
        if shift and loc and isinstance(loc[0], int):
            loc = (loc[0] + shift, *loc[1:])
        problems.setdefault(path_of(offset + loc), []).append(message_of(item))
    return problems


def validate(schema: type[AgentBody], data: dict, *, context: dict | None = None):
    """``data`` as ``schema``, or the 400 naming every bad field (413 for a list over its limit)."""
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as error:
        raise invalid_fields(problems_of(error)) from None


def read_heartbeat_body(data: dict, *, now: dt.datetime, retention_days: int) -> Heartbeat:
    """A heartbeat body; backlog samples must lie within the telemetry retention and not in the future."""
    if not data.get("metricsBacklog"):
        return validate(Heartbeat, data)  # no context: validating with one costs a few µs more
    window = (now - dt.timedelta(days=retention_days), now, retention_days)
    return validate(Heartbeat, data, context={"backlog_window": window})


def read_inventory_items(kind: str, data: dict) -> list[AgentBody]:
    """The items of a list upload of ``kind``: long lists a chunk at a time (``COOPERATE_EVERY``); items that
    repeat the identity of an earlier one (registry and config entries: the same path and name) are refused."""
    upload = INVENTORY_LISTS[kind]
    items = data.get(upload.key)
    validated: list[AgentBody] = []
    problems: dict[str, list[str]] = {}
    if not isinstance(items, list) or len(items) <= COOPERATE_EVERY:
        try:
            validated = getattr(upload.body.model_validate(data), upload.key)
        except ValidationError as error:
            problems = problems_of(error)
    else:
        if len(items) > upload.limit:
            raise too_many_items(upload.key, upload.limit)
        for start in range(0, len(items), COOPERATE_EVERY):
            if start:
                cooperate()
            try:
                validated += upload.items.validate_python(items[start : start + COOPERATE_EVERY])
            except ValidationError as error:
                for path, messages in problems_of(error, offset=(upload.key,), shift=start).items():
                    problems.setdefault(path, []).extend(messages)
    identity = getattr(upload.item, "identity", None)
    if identity and isinstance(items, list):
        seen: dict[tuple, int] = {}
        for index, item in enumerate(items):
            if isinstance(item, dict):
                first = seen.setdefault((item.get(to_camel(identity[0])), item.get(to_camel(identity[1]))), index)
                if first != index:
                    problems.setdefault(f"{upload.key}[{index}]", []).append(
                        f"Repeats {upload.key}[{first}] (the same path and name)."
                    )
    if problems:
        raise invalid_fields(problems)
    return validated


# ---- answers ----------------------------------------------------------------------------------------------------
# What the agent receives: built as plain dicts by the views, declared here for the OpenAPI document, against which
# the tests validate real answers (tests/agent/test_answers_match_the_document.py).


class Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


class Configuration(Answer):
    """The agent's configuration (the enrollment answer's ``config``, and GET /{agentId}/config)."""

    heartbeat_interval_seconds: int
    metrics_collection_interval_seconds: int


class EnrollmentAnswer(Answer):
    """201 of POST /enroll: the token is shown this once; only its hash is stored."""

    agent_id: str
    device_id: str = Field(json_schema_extra={"format": "uuid"})
    auth_token: str
    org_id: str = Field(json_schema_extra={"format": "uuid"})
    site_id: str = Field(json_schema_extra={"format": "uuid"})
    config: Configuration


class Command(Answer):
    """A command handed out to the agent (now ``sent``); ``payload`` depends on ``type`` (agent-api.md)."""

    id: str = Field(json_schema_extra={"format": "uuid"})
    type: str
    payload: dict[str, Any] | None


class CommandsAnswer(Answer):
    """200 of GET /{agentId}/commands: up to 10 pending commands, oldest first."""

    commands: list[Command]


class HeartbeatAnswer(CommandsAnswer):
    """200 of POST /{agentId}/heartbeat: the commands claimed by this check-in, and whether to rotate the token."""

    config_update: Configuration | None
    rotate_token: bool


class CommandResultAnswer(Answer):
    """200 of POST /{agentId}/commands/{commandId}/result: the command's final status."""

    id: str = Field(json_schema_extra={"format": "uuid"})
    status: str


class TokenAnswer(Answer):
    """200 of POST /{agentId}/rotate-token: the new token; the old one keeps working for 5 minutes."""

    auth_token: str
