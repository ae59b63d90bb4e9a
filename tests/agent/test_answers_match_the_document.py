"""Real answers of the agent protocol match the OpenAPI document's schemas for them (tag ``agent``), as the
technician API's do (tests/test_openapi.py); and the bodies a real agent sends are bodies the document accepts."""

from __future__ import annotations

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30WriteValidator, oas30_format_checker

from devices.models import Device
from devices.services.commands import queue_command
from tests.agent.conftest import enroll, enrollment_body, heartbeat_body
from tests.agent.test_inventory import ADAPTERS, CONFIG, CONNECTIONS, DISKS, REGISTRY, SOFTWARE
from tests.test_openapi import closed, response_validator

pytestmark = pytest.mark.django_db

AGENT = "/api/v1/agents/{agent_id}"


@pytest.fixture(scope="module")
def document() -> dict:
    """The document as /api/schema/?format=json serves it."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def check(document, path: str, method: str, response) -> None:
    """``response``'s status is documented for the operation and its body matches that answer's schema."""
    response_validator(document, path, method, response.status_code).validate(response.json())


def test_enrollment_and_its_refusals_match_the_document(document, client, key):
    created = enroll(client, key[0], hardwareInfo={"cpuModel": "EPYC"}, networkInfo=[{"name": "eth0", "ip": "::1"}])
    assert created.status_code == 201
    check(document, "/api/v1/agents/enroll", "post", created)

    invalid = enroll(client, key[0], osType="amiga")
    assert invalid.status_code == 400
    check(document, "/api/v1/agents/enroll", "post", invalid)

    unknown = enroll(client, "rmmek_" + "0" * 40)
    assert unknown.status_code == 401
    assert unknown["WWW-Authenticate"] == "Bearer"
    check(document, "/api/v1/agents/enroll", "post", unknown)


def test_every_answer_of_an_enrolled_agent_matches_the_document(document, agent):
    heartbeat = agent.heartbeat()
    assert heartbeat.status_code == 200
    check(document, f"{AGENT}/heartbeat", "post", heartbeat)

    command = queue_command(device=agent.device, type="script", payload={"language": "bash", "content": "true"})
    with_command = agent.heartbeat()
    assert with_command.status_code == 200 and with_command.json()["commands"]
    check(document, f"{AGENT}/heartbeat", "post", with_command)

    queue_command(device=agent.device, type="reboot", payload=None)
    claimed = agent.get("commands")
    assert claimed.status_code == 200 and claimed.json()["commands"]
    check(document, f"{AGENT}/commands", "get", claimed)

    result_path = f"{AGENT}/commands/{{command_id}}/result"
    result = agent.post(f"commands/{command.pk}/result", {"status": "completed", "exitCode": 0, "stdout": "ok"})
    assert result.status_code == 200
    check(document, result_path, "post", result)
    conflict = agent.post(f"commands/{command.pk}/result", {"status": "failed"})
    assert conflict.status_code == 409
    check(document, result_path, "post", conflict)
    missing = agent.post("commands/00000000-0000-0000-0000-000000000000/result", {"status": "failed"})
    assert missing.status_code == 404
    check(document, result_path, "post", missing)

    config = agent.get("config")
    assert config.status_code == 200
    check(document, f"{AGENT}/config", "get", config)

    rotated = agent.post("rotate-token")
    assert rotated.status_code == 200
    check(document, f"{AGENT}/rotate-token", "post", rotated)


def test_refusals_of_the_agent_endpoints_match_the_document(document, agent):
    bad = agent.heartbeat(metrics={"cpuPercent": 300})
    assert bad.status_code == 400
    check(document, f"{AGENT}/heartbeat", "post", bad)

    too_many = agent.put("software", {"software": [{"name": "x"}] * 10_001})
    assert too_many.status_code == 413
    check(document, f"{AGENT}/software", "put", too_many)

    for method, path in [("post", "heartbeat"), ("get", "config"), ("get", "commands"), ("post", "rotate-token")]:
        refused = getattr(agent, method)(path, token="rmm_" + "0" * 64)
        assert refused.status_code == 401, path
        assert refused["WWW-Authenticate"] == "Bearer"
        check(document, f"{AGENT}/{path}", method, refused)

    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.QUARANTINED)
    for method, path in [("post", "heartbeat"), ("get", "config")]:
        quarantined = getattr(agent, method)(path)
        assert quarantined.status_code == 403, path
        check(document, f"{AGENT}/{path}", method, quarantined)


def test_an_answer_that_breaks_its_schema_fails_validation(document, agent):
    """The checks above could pass vacuously (an empty schema accepts anything); this proves they do not."""
    body = agent.heartbeat().json()
    validator = response_validator(document, f"{AGENT}/heartbeat", "post", 200)
    validator.validate(body)
    for broken in (
        {**body, "rotateToken": "no"},
        {k: v for k, v in body.items() if k != "commands"},
        {**body, "secret": 1},
        {**body, "commands": [{"id": "x", "type": "reboot"}]},
    ):
        with pytest.raises(ValidationError):
            validator.validate(broken)


def request_validator(document, path: str, method: str) -> OAS30WriteValidator:
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return OAS30WriteValidator(
        closed({"allOf": [schema], "components": document["components"]}), format_checker=oas30_format_checker
    )


BODIES = {
    ("/api/v1/agents/enroll", "post"): enrollment_body("rmmek_x", hardwareInfo={"cpuCores": 4}),
    (f"{AGENT}/heartbeat", "post"): heartbeat_body(metricsBacklog=[{"timestamp": "2026-12-01T00:00:00Z"}]),
    (f"{AGENT}/commands/{{command_id}}/result", "post"): {"status": "completed", "exitCode": 0, "durationMs": 5},
    (f"{AGENT}/hardware", "put"): {"cpuModel": "EPYC", "cpuCores": 16, "ramTotalMb": 65536},
    (f"{AGENT}/software", "put"): {"software": SOFTWARE},
    (f"{AGENT}/disks", "put"): {"disks": DISKS},
    (f"{AGENT}/network", "put"): {"adapters": ADAPTERS},
    (f"{AGENT}/connections", "put"): {"connections": CONNECTIONS},
    (f"{AGENT}/registry-state", "put"): {"entries": REGISTRY},
    (f"{AGENT}/config-state", "put"): {"entries": CONFIG},
}


@pytest.mark.parametrize(("path", "method"), list(BODIES), ids=[path.rsplit("/", 1)[-1] for path, _ in BODIES])
def test_the_bodies_an_agent_sends_are_bodies_the_document_accepts(document, path, method):
    validator = request_validator(document, path, method)
    body = json.loads(json.dumps(BODIES[path, method]))
    validator.validate(body)
    with pytest.raises(ValidationError):
        validator.validate({**body, next(iter(body)): {"not": "this"}})


def test_a_body_over_a_documented_limit_is_refused_by_the_document_too(document):
    validator = request_validator(document, f"{AGENT}/heartbeat", "post")
    with pytest.raises(ValidationError):
        validator.validate(heartbeat_body(metrics={"cpuPercent": 101}))
