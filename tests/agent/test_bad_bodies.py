"""Bodies that are not JSON, not an object, too big or of the wrong types: 400 / 413 in the error shape, and
nothing stored, on every agent endpoint."""

from __future__ import annotations

import json

import pytest

from devices.models import Device, DeviceSoftware, DeviceTelemetry
from tests.agent.conftest import BASE, assert_error

pytestmark = pytest.mark.django_db

SIX_MB = b'{"software": [' + b",".join([b'{"name": "' + b"x" * 500 + b'"}'] * 12_000) + b"]}"

BODY_ENDPOINTS = [
    ("post", "heartbeat"),
    ("put", "software"),
    ("put", "hardware"),
    ("post", "commands/00000000-0000-0000-0000-000000000000/result"),
]


def send(agent, method: str, path: str, raw):
    return agent.put(path, raw=raw) if method == "put" else agent.post(path, raw=raw)


def nothing_stored(agent) -> bool:
    device = agent.device
    return (
        not DeviceTelemetry.objects.filter(device_id=device.pk).exists()
        and not DeviceSoftware.objects.filter(device_id=device.pk).exists()
        and device.last_seen_at == agent.first_seen
    )


@pytest.fixture
def quiet_agent(agent):
    agent.first_seen = agent.device.last_seen_at
    return agent


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{'single': 'quotes'}", b'{"a": 1', b"", b"\xff\xfe\x00garbage", b'{"a": NaN}', b"[" * 100_000],
    ids=["text", "single-quotes", "truncated", "empty", "bad-utf8", "nan", "deeply-nested"],
)
def test_a_body_that_is_not_json_gets_400_invalid_json(quiet_agent, method, path, raw):
    assert_error(send(quiet_agent, method, path, raw), 400, "invalid_json")
    assert nothing_stored(quiet_agent)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize("raw", [b"[]", b'[{"agentVersion": "1"}]', b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_gets_400_invalid_json(quiet_agent, method, path, raw):
    assert_error(send(quiet_agent, method, path, raw), 400, "invalid_json")
    assert nothing_stored(quiet_agent)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
def test_a_six_megabyte_body_gets_413_payload_too_large(quiet_agent, method, path):
    assert len(SIX_MB) > 6_000_000
    assert_error(send(quiet_agent, method, path, SIX_MB), 413, "payload_too_large")
    assert nothing_stored(quiet_agent)


def test_a_six_megabyte_enrollment_gets_413(client, key):
    response = client.post(f"{BASE}/enroll", data=SIX_MB, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert not Device.objects.exists()


def test_a_bad_enrollment_body_gets_400(client, key):
    assert_error(client.post(f"{BASE}/enroll", data=b"[]", content_type="application/json"), 400, "invalid_json")
    assert_error(client.post(f"{BASE}/enroll", data=b"{", content_type="application/json"), 400, "invalid_json")
    assert not Device.objects.exists()


def test_an_unauthenticated_bad_body_gets_401_not_400(agent):
    assert_error(agent.post("heartbeat", raw=b"not json", token="rmm_" + "0" * 64), 401, "invalid_token")
    assert_error(agent.put("software", raw=SIX_MB, token="rmm_" + "0" * 64), 401, "invalid_token")


def test_wrong_types_get_400_naming_the_field_path(quiet_agent):
    body = {
        "agentVersion": 142,
        "status": "fine",
        "hostname": ["ws"],
        "metrics": "lots",
        "metricsBacklog": {"timestamp": "now"},
        "pendingReboot": "no",
        "uptime": -5,
    }
    answer = assert_error(quiet_agent.post("heartbeat", body), 400, "validation_error")
    assert set(answer["fields"]) == {
        "agentVersion",
        "status",
        "hostname",
        "metrics",
        "metricsBacklog",
        "pendingReboot",
        "uptime",
    }
    assert all(isinstance(problems, list) and problems for problems in answer["fields"].values())
    assert nothing_stored(quiet_agent)


def test_text_postgresql_cannot_store_gets_400_not_500(quiet_agent):
    software = [{"name": "nul\x00byte"}, {"name": "lone \ud800 surrogate"}]
    raw = json.dumps({"software": software}).encode()
    answer = assert_error(quiet_agent.put("software", raw=raw), 400, "validation_error")
    assert set(answer["fields"]) == {"software[0].name", "software[1].name"}
    assert nothing_stored(quiet_agent)


def test_unknown_agent_paths_get_404_in_the_error_shape(agent, client):
    assert_error(client.get(f"{BASE}/{agent.agent_id}/nothing/here"), 404, "not_found")
    assert_error(client.get(f"{BASE}/"), 404, "not_found")


def test_a_wrong_method_gets_405_in_the_error_shape(agent):
    response = agent.get("heartbeat")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert_error(agent.post("config"), 405, "method_not_allowed")
