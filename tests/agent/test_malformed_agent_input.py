"""Malformed input on every agent endpoint is a 400 (or the 401 of an unknown agent) in the error shape, never a
500, and stores nothing (issue 10, item 6): what PostgreSQL would refuse is refused before it reaches a statement.

One test per class of input, each over every agent endpoint that can carry it: an agent id no device can have
(``%00``), JSON nested deeper than the limit, NUL and lone surrogates in any string or key, datetimes PostgreSQL
cannot hold (offsets beyond ±15:59, impossible dates, moments outside years 1-9999), numbers beyond their column.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from devices.agent_api import sql
from devices.models import Device, DeviceCommand, DeviceRegistryEntry, DeviceSoftware, DeviceTelemetry
from devices.services.commands import queue_command
from rmm.parsing import MAX_JSON_DEPTH
from tests.agent.conftest import BASE, assert_error, enrollment_body, heartbeat_body

pytestmark = pytest.mark.django_db

UNKNOWN_TOKEN = "rmm_" + "0" * 64
COMMAND_ID = "00000000-0000-0000-0000-000000000000"

# Every route of agent-api.md that names an agent: (method, path after the agent id, body or None).
AGENT_ROUTES = [
    ("post", "heartbeat", heartbeat_body()),
    ("put", "hardware", {"cpuModel": "x"}),
    ("put", "software", {"software": []}),
    ("put", "disks", {"disks": []}),
    ("put", "network", {"adapters": []}),
    ("put", "connections", {"connections": []}),
    ("put", "registry-state", {"entries": []}),
    ("put", "config-state", {"entries": []}),
    ("get", "commands", None),
    ("post", f"commands/{COMMAND_ID}/result", {"status": "completed"}),
    ("post", "rotate-token", None),
    ("get", "config", None),
]
ROUTE_IDS = [f"{method}-{path.split('/')[0]}" for method, path, _ in AGENT_ROUTES]
# The routes with a JSON body, enrollment included (agent None: no agent id in the path).
BODY_ROUTES = [("post", None, "enroll")] + [(m, "agent", p) for m, p, body in AGENT_ROUTES if body is not None]
BODY_ROUTE_IDS = ["enroll"] + [i for i, (_, _, body) in zip(ROUTE_IDS, AGENT_ROUTES, strict=True) if body]


def call(client, method: str, path: str, *, token: str | None, raw: bytes | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if method == "get":
        return client.get(path, headers=headers)
    sender = client.put if method == "put" else client.post
    return sender(path, data=raw if raw is not None else b"{}", content_type="application/json", headers=headers)


def valid_body(path: str, agent_key: str | None) -> dict:
    if path == "enroll":
        return enrollment_body(agent_key)
    return next(body for _, route, body in AGENT_ROUTES if route == path)


def stored_nothing(agent, *, commands_before: int = 0) -> bool:
    device = agent.device
    return (
        not DeviceTelemetry.objects.filter(device_id=device.pk).exists()
        and not DeviceSoftware.objects.filter(device_id=device.pk).exists()
        and not DeviceRegistryEntry.objects.filter(device_id=device.pk).exists()
        and device.last_seen_at == agent.first_seen
        and Device.objects.count() == 1
        and DeviceCommand.objects.filter(status=DeviceCommand.Status.SENT).count() == commands_before
    )


@pytest.fixture
def quiet_agent(agent):
    agent.first_seen = agent.device.last_seen_at
    return agent


# ---- the agent id in the path ----


@pytest.fixture
def identity_lookups(monkeypatch) -> list:
    """The agent ids the agent endpoints look up (a spy on the lookups; the database is the real one)."""
    seen: list = []
    for name in ("fetch_identity", "fetch_identities"):
        lookup = getattr(sql, name)

        def spy(cursor, agent_ids, lookup=lookup):
            seen.append(agent_ids)
            return lookup(cursor, agent_ids)

        monkeypatch.setattr(sql, name, spy)
    return seen


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "agent_id", ["%00", "a%00b", "%01", "x" * 65, "%C3%A9" * 3], ids=["nul", "inner-nul", "control", "65", "non-ascii"]
)
@pytest.mark.parametrize("token", ["unknown", "the-agents-own"])
def test_an_agent_id_no_device_can_have_gets_401_invalid_token_without_a_lookup(
    quiet_agent, client, identity_lookups, method, path, body, agent_id, token
):
    raw = json.dumps(body).encode() if body is not None else None
    response = call(
        client,
        method,
        f"{BASE}/{agent_id}/{path}",
        token=UNKNOWN_TOKEN if token == "unknown" else quiet_agent.token,
        raw=raw,
    )
    assert_error(response, 401, "invalid_token")
    assert identity_lookups == []
    assert stored_nothing(quiet_agent)


# ---- JSON nested too deep ----


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(("method", "named", "path"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 5_000], ids=["just-over-the-limit", "5000-levels"])
@pytest.mark.parametrize("where", ["unread-key", "read-field"])
def test_json_nested_deeper_than_the_limit_gets_400_invalid_json(
    quiet_agent, key, client, method, named, path, levels, where
):
    body = valid_body(path, key[0])
    field = "nested" if where == "unread-key" else next(iter(body))
    text = json.dumps({**body, field: "@"}).replace('"@"', nested(levels))  # the body is one level itself
    url = f"{BASE}/enroll" if named is None else f"{BASE}/{quiet_agent.agent_id}/{path}"
    answer = assert_error(call(client, method, url, token=quiet_agent.token, raw=text.encode()), 400, "invalid_json")
    assert str(MAX_JSON_DEPTH) in answer["message"]
    assert stored_nothing(quiet_agent)


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 5_000], ids=["just-over-the-limit", "5000-levels"])
def test_a_malformed_body_nested_too_deep_is_refused_for_its_depth(quiet_agent, levels):
    text = json.dumps(heartbeat_body())[:-1] + ', "extra": ' + "[" * (levels + 1)  # never closed

    answer = assert_error(quiet_agent.post("heartbeat", raw=text.encode()), 400, "invalid_json")

    assert str(MAX_JSON_DEPTH) in answer["message"]


def test_a_malformed_body_within_the_limit_is_refused_as_malformed(quiet_agent):
    text = json.dumps(heartbeat_body())[:-1] + ', "extra": ' + "[" * (MAX_JSON_DEPTH - 1)

    answer = assert_error(quiet_agent.post("heartbeat", raw=text.encode()), 400, "invalid_json")

    assert answer["message"] == "The request body is not valid JSON."


def test_json_nested_exactly_to_the_limit_is_read(quiet_agent):
    body = {**heartbeat_body(), "extra": "@"}
    text = json.dumps(body).replace('"@"', nested(MAX_JSON_DEPTH - 1))
    assert quiet_agent.post("heartbeat", raw=text.encode()).status_code == 200


# ---- NUL and lone surrogates in any string or key ----

UNSTORABLE = {
    "nul-in-an-unread-value": ({"lastUserDomain": "a\x00b"}, "lastUserDomain"),
    "nul-in-a-key": ({"a\x00b": 1}, ""),
    "surrogate-in-a-key": ({"\ud800": 1}, ""),
    "surrogate-in-a-nested-value": ({"extra": {"list": ["ok", "\udfff"]}}, "extra.list[1]"),
    "nul-in-a-nested-key": ({"extra": {"k\x00": "v"}}, "extra"),
}


@pytest.mark.parametrize(("method", "named", "path"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
@pytest.mark.parametrize("case", list(UNSTORABLE))
def test_nul_or_a_lone_surrogate_anywhere_in_a_body_gets_400_naming_where(
    quiet_agent, key, client, method, named, path, case
):
    extra, field = UNSTORABLE[case]
    raw = json.dumps({**valid_body(path, key[0]), **extra}).encode()  # ensure_ascii: \u0000, \ud800 escapes
    url = f"{BASE}/enroll" if named is None else f"{BASE}/{quiet_agent.agent_id}/{path}"
    answer = assert_error(call(client, method, url, token=quiet_agent.token, raw=raw), 400, "validation_error")
    assert field in answer["fields"], answer
    assert stored_nothing(quiet_agent)


@pytest.mark.parametrize("kind", ["software", "registry-state"])
def test_a_surrogate_sent_as_raw_utf8_bytes_gets_400_too(quiet_agent, kind):
    item = {"name": "x"} if kind == "software" else {"registryPath": "HKLM\\x", "valueName": "v", "valueData": "1"}
    raw = json.dumps({"software" if kind == "software" else "entries": [item]}).encode()
    raw = raw.replace(b'"x"' if kind == "software" else b'"1"', b'"\xed\xa0\x80"')  # U+D800 encoded as UTF-8
    answer = assert_error(quiet_agent.put(kind, raw=raw), 400, "validation_error")
    assert answer["fields"]
    assert stored_nothing(quiet_agent)


# ---- datetimes PostgreSQL cannot hold ----

BAD_MOMENTS = {
    "offset-beyond-15:59": "2026-12-01T00:00:00+19:11",
    "negative-offset-beyond": "2026-12-01T00:00:00-16:00",
    "february-30": "2026-02-30T00:00:00Z",
    "hour-25": "2026-12-01T25:00:00Z",
    "year-1-east-of-utc": "0001-01-01T00:00:00+01:00",
    "year-9999-west-of-utc": "9999-12-31T23:00:00-02:00",
}


def moment_routes(moment: str) -> list[tuple[str, str, dict, str]]:
    """(method, path, body, field) for every datetime an agent body carries."""
    registry = {"registryPath": "HKLM\\Software\\X", "valueName": "v", "valueData": "1", "collectedAt": moment}
    config = {"filePath": "/etc/x.conf", "configKey": "k", "configValue": "v", "collectedAt": moment}
    backlog = {"timestamp": moment, "cpuPercent": 1.0}
    return [
        ("post", "heartbeat", heartbeat_body(metricsBacklog=[backlog]), "metricsBacklog[0].timestamp"),
        ("put", "registry-state", {"entries": [registry]}, "entries[0].collectedAt"),
        ("put", "config-state", {"entries": [config]}, "entries[0].collectedAt"),
    ]


@pytest.mark.parametrize("where", ["heartbeat", "registry-state", "config-state"])
@pytest.mark.parametrize("moment", list(BAD_MOMENTS))
def test_a_datetime_postgresql_cannot_hold_gets_400_naming_the_field(quiet_agent, where, moment):
    method, path, body, field = next(r for r in moment_routes(BAD_MOMENTS[moment]) if r[1] == where)
    sender = quiet_agent.post if method == "post" else quiet_agent.put
    answer = assert_error(sender(path, body), 400, "validation_error")
    assert set(answer["fields"]) == {field}
    assert stored_nothing(quiet_agent)


def test_the_widest_offsets_postgresql_holds_are_stored(quiet_agent):
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).astimezone(
        dt.timezone(dt.timedelta(hours=15, minutes=59))
    )
    backlog = [{"timestamp": moment.isoformat(), "cpuPercent": 3.0}]
    assert quiet_agent.heartbeat(metricsBacklog=backlog).status_code == 200
    assert DeviceTelemetry.objects.filter(device_id=quiet_agent.device_id, cpu_percent=3.0).exists()
    entry = {
        "filePath": "/etc/x.conf",
        "configKey": "k",
        "configValue": "v",
        "collectedAt": "2026-11-25T10:00:00-15:59",
    }
    assert quiet_agent.put("config-state", {"entries": [entry]}).status_code == 204


# ---- numbers beyond their column ----


def connection_row(**fields) -> dict:
    return {"connections": [{"protocol": "tcp", "localAddr": "10.0.0.5", "localPort": 80, **fields}]}


OUT_OF_RANGE = [
    ("post", "heartbeat", heartbeat_body(metrics={"processCount": 2**31}), "metrics.processCount"),
    ("post", "heartbeat", heartbeat_body(metrics={"ramUsedMb": 2**63}), "metrics.ramUsedMb"),
    ("post", "heartbeat", heartbeat_body(metrics={"diskUsedGb": "1e999"}), "metrics.diskUsedGb"),
    ("put", "hardware", {"cpuCores": 2**31}, "cpuCores"),
    ("put", "hardware", {"ramTotalMb": 2**63}, "ramTotalMb"),
    ("put", "connections", connection_row(localPort=70000), "connections[0].localPort"),
    ("put", "connections", connection_row(pid=2**31), "connections[0].pid"),
    ("post", f"commands/{COMMAND_ID}/result", {"status": "completed", "exitCode": 2**63}, "exitCode"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), OUT_OF_RANGE, ids=[row[3] for row in OUT_OF_RANGE])
def test_a_number_beyond_its_column_gets_400(quiet_agent, method, path, body, field):
    raw = json.dumps(body).replace('"1e999"', "1e999").encode()  # a number JSON allows and a float8 cannot hold
    sender = quiet_agent.post if method == "post" else quiet_agent.put
    answer = assert_error(sender(path, raw=raw), 400, "validation_error")
    assert set(answer["fields"]) == {field}
    assert stored_nothing(quiet_agent)


def test_a_heartbeat_refused_for_its_body_claims_no_command(quiet_agent):
    queue_command(device=quiet_agent.device, type="reboot", payload=None)
    raw = json.dumps({**heartbeat_body(), "x\x00": 1}).encode()
    assert_error(quiet_agent.post("heartbeat", raw=raw), 400, "validation_error")
    assert DeviceCommand.objects.get().status == DeviceCommand.Status.PENDING
    assert stored_nothing(quiet_agent)


def test_the_quick_scan_sees_every_way_json_can_spell_nul_or_a_surrogate():
    from devices.agent_api.schemas import _MAY_HOLD_UNSTORABLE_TEXT as scan

    spellings = [json.dumps(chr(code)).encode() for code in [0, *range(0xD800, 0xE000)]]
    spellings += [json.dumps(chr(code)).upper().replace("\\U", "\\u").encode() for code in range(0xD800, 0xE000)]
    spellings += [chr(code).encode("utf-8", "surrogatepass") for code in range(0xD800, 0xE000)]
    assert all(scan.search(spelling) for spelling in spellings)
    assert not scan.search(json.dumps({"name": "Café ✓ 7-Zip", "n": 1}, ensure_ascii=False).encode())
