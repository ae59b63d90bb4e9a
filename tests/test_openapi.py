"""The OpenAPI document of the technician API (/api/schema/, browsable at /api/docs/): it is generated without a
warning, it is served, it names every route, and real answers of the API match the schemas it gives for them."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.urls import get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from rest_framework.test import APIClient

from alerts.models import Alert, AlertRule, Notification, NotificationChannel
from devices.models import Device, DeviceCommand, DeviceGroup
from devices.services.groups import refresh_group
from scripts.models import Script
from scripts.services.library import save_script
from scripts.services.runs import start_run

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document() -> dict:
    """The document as /api/schema/?format=json serves it (plain JSON types, no lazy strings)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def closed(schema):
    """``schema`` with every object that lists its properties closed to other keys: an answer with a key the
    document does not name fails, instead of slipping through JSON Schema's open objects."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def response_validator(document: dict, path: str, method: str, status: int) -> OAS30ReadValidator:
    """A validator for the body of one documented answer, with the document's components to resolve $refs."""
    operation = document["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"{method} {path} does not document a {status}"
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    # OpenAPI 3.0 (nullable, readOnly) is not plain JSON Schema: OAS30ReadValidator reads it as a response.
    return OAS30ReadValidator(
        closed({"allOf": [schema], "components": document["components"]}), format_checker=oas30_format_checker
    )


# --- generation ----------------------------------------------------------------------------------------------------


def test_the_schema_generates_valid_and_without_warnings(tmp_path):
    """Each warning is a view whose request or answer the document would get wrong: fix it with an annotation
    close to the view (rmm/openapi.py describes what is shared)."""
    GENERATOR_STATS.reset()
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"), "--validate", "--fail-on-warn")
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.0")


def test_the_schema_is_served_as_json_without_signing_in():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    served = json.loads(response.content)
    assert served["info"]["title"] == "RMM technician API"
    assert "/api/v1/devices" in served["paths"]


def test_the_docs_page_is_served_as_html_with_self_hosted_assets():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/" in page  # served from here: no internet needed
    assert "cdn.jsdelivr.net" not in page
    script = APIClient().get("/api/docs/?script=")  # the start-up script, not inline (the page's CSP forbids that)
    assert "/api/schema/" in script.content.decode()


def _api_routes() -> dict[str, set[str]]:
    """Every route under api/v1/ except the agent protocol, as a document path → its HTTP methods."""
    routes: dict[str, set[str]] = {}
    for include in get_resolver().url_patterns:
        if str(include.pattern) != "api/v1/":  # the agent protocol (api/v1/agents/) is plain Django, not in it
            continue
        for pattern in include.url_patterns:
            # The lookup (pk) is {id} in the document; any other path parameter keeps its name ({version}).
            text = re.sub(r"\(\?P<pk>[^)]*\)", "{id}", str(pattern.pattern))
            text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
            path = "/api/v1/" + text.removeprefix("^").removesuffix("$").removesuffix("/?")
            callback = pattern.callback
            if hasattr(callback, "actions"):  # a viewset route
                methods = set(callback.actions)
            else:
                methods = {name for name in HTTP_METHODS if hasattr(callback.view_class, name)}
            allowed = set(callback.cls.http_method_names) & HTTP_METHODS  # e.g. devices answer no PUT
            routes.setdefault(path, set()).update(methods & allowed)
    return routes


def _agent_routes() -> dict[str, set[str]]:
    """Every route of the agent protocol (api/v1/agents/), as a document path → its HTTP methods; the inventory
    route is one path per kind, since each kind has its own body."""
    from devices.agent_api import schemas, urls, views

    routes: dict[str, set[str]] = {}
    for pattern in urls.urlpatterns:
        text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", str(pattern.pattern))
        path = "/api/v1/agents/" + text.removeprefix("^").removesuffix("$").removesuffix("/?")
        callback = pattern.callback
        if callback is views.unknown:
            continue
        if callback is views.inventory:
            routes.update({path.replace("{kind}", kind): {"put"} for kind in schemas.INVENTORY_KINDS})
        elif callback is views.heartbeat:
            routes[path] = {"post"}
        else:
            routes[path] = {name for name in HTTP_METHODS if hasattr(callback.view_class, name)}
    return routes


def _documented(document: dict, *, agent: bool) -> dict[str, set[str]]:
    return {
        path: {method for method, operation in operations.items() if method in HTTP_METHODS}
        for path, operations in document["paths"].items()
        if any(("agent" in operation.get("tags", [])) == agent for operation in operations.values())
    }


def test_every_technician_api_route_is_in_the_schema_and_nothing_else(document):
    routes = _api_routes()
    assert len(routes) > 40  # the walk above found the routers
    assert _documented(document, agent=False) == routes


def test_every_agent_route_is_in_the_schema_under_the_agent_tag(document):
    routes = _agent_routes()
    assert "/api/v1/agents/{agent_id}/heartbeat" in routes and "/api/v1/agents/{agent_id}/software" in routes
    assert _documented(document, agent=True) == routes
    security = {
        path: [scheme for requirement in operation.get("security", []) for scheme in requirement]
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if path in routes
    }
    assert {path for path, schemes in security.items() if schemes != ["agentToken"]} == {"/api/v1/agents/enroll"}


def test_field_names_in_the_schema_are_camel_case(document):
    snake = {
        f"{name}.{field}"
        for name, component in document["components"]["schemas"].items()
        for field in component.get("properties", {})
        if "_" in field
    }
    assert snake == set()


def test_every_operation_documents_its_errors_in_the_one_shape(document):
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path != "/api/v1/auth/login":
                assert responses["401"]["content"]["application/json"]["schema"] == error, (method, path)
            if "{id}" in path:
                assert responses["404"]["content"]["application/json"]["schema"] == error, (method, path)
            if "requestBody" in operation:
                assert responses["400"]["content"]["application/json"]["schema"] == error, (method, path)


# --- real answers against the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    persona: str | None  # None: not signed in
    method: str
    path: str  # the document's path; {id} is filled from the world with ``target``
    status: int
    target: str | None = None
    query: str = ""
    body: dict | None = None


LINUX = {"field": "osType", "operator": "equals", "value": "linux"}
CPU_HOT = {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10}

CALLS = {
    "device list, a page with a next cursor": Call("partner_admin", "GET", "/api/v1/devices", 200, query="limit=2"),
    "device list, the last page": Call("org_user", "GET", "/api/v1/devices", 200),
    "one device": Call("partner_admin", "GET", "/api/v1/devices/{id}", 200, target="device_a1"),
    "device summary": Call("partner_admin", "GET", "/api/v1/devices/summary", 200, query="osType=linux"),
    "device hardware": Call("partner_admin", "GET", "/api/v1/devices/{id}/hardware", 200, target="device_a1"),
    "device commands": Call("partner_admin", "GET", "/api/v1/devices/{id}/commands", 200, target="device_a1"),
    "queue a command": Call(
        "partner_admin", "POST", "/api/v1/devices/{id}/commands", 201, target="device_a1", body={"type": "reboot"}
    ),
    "quarantine a device": Call(
        "partner_admin", "POST", "/api/v1/devices/{id}/quarantine", 200, target="device_a1", body={"reason": "Odd."}
    ),
    "organizations": Call("partner_admin", "GET", "/api/v1/orgs", 200),
    "roles": Call("partner_admin", "GET", "/api/v1/roles", 200),
    "the signed-in user": Call("org_admin", "GET", "/api/v1/auth/me", 200),
    "audit log": Call("superuser", "GET", "/api/v1/audit-log", 200),
    "new enrollment key": Call(
        "partner_admin", "POST", "/api/v1/enrollment-keys", 201, target="site_a1", body={"siteId": "{id}", "name": "K"}
    ),
    "new API token": Call("partner_admin", "POST", "/api/v1/api-tokens", 201, body={"name": "script"}),
    "a device out of reach: 404": Call("partner_admin", "GET", "/api/v1/devices/{id}", 404, target="device_b1"),
    "a bad limit: 400 naming the field": Call("partner_admin", "GET", "/api/v1/devices", 400, query="limit=0"),
    "a bad body: 400 naming the field": Call(
        "partner_admin", "POST", "/api/v1/devices/{id}/quarantine", 400, target="device_a1", body={}
    ),
    "a role that lacks the permission: 403": Call(
        "viewer", "POST", "/api/v1/devices/{id}/rotate-token", 403, target="device_a1"
    ),
    "not signed in: 401": Call(None, "GET", "/api/v1/devices", 401),
    "new dynamic group": Call(
        "partner_admin",
        "POST",
        "/api/v1/groups",
        201,
        target="org_a",
        body={"orgId": "{id}", "name": "Linux", "type": "dynamic", "filterRules": LINUX},
    ),
    "group list": Call("partner_admin", "GET", "/api/v1/groups", 200),
    "group members": Call("partner_admin", "GET", "/api/v1/groups/{id}/devices", 200, target="dynamic_group"),
    "group membership log": Call(
        "partner_admin", "GET", "/api/v1/groups/{id}/membership-log", 200, target="dynamic_group"
    ),
    "group preview": Call(
        "partner_admin",
        "POST",
        "/api/v1/groups/preview",
        200,
        target="org_a",
        body={"orgId": "{id}", "filterRules": LINUX},
    ),
    "group command": Call(
        "partner_admin", "POST", "/api/v1/groups/{id}/commands", 201, target="dynamic_group", body={"type": "reboot"}
    ),
    "pin a group member": Call(
        "partner_admin",
        "POST",
        "/api/v1/groups/{id}/devices/pin",
        200,
        target="dynamic_group",
        body={"deviceIds": ["{device_a1}"]},
    ),
    "a bad rule: 400 with the node's path": Call(
        "partner_admin",
        "POST",
        "/api/v1/groups/preview",
        400,
        target="org_a",
        body={"orgId": "{id}", "filterRules": {"field": "osType", "operator": "before", "value": 1}},
    ),
    "a pending command cancelled twice: 409": Call(
        "partner_admin", "POST", "/api/v1/commands/{id}/cancel", 409, target="cancelled_command"
    ),
    "new alert rule": Call(
        "partner_admin",
        "POST",
        "/api/v1/alert-rules",
        201,
        target="org_a",
        body={"orgId": "{id}", "name": "CPU", "condition": CPU_HOT, "forMinutes": 10},
    ),
    "alert rule list": Call("partner_admin", "GET", "/api/v1/alert-rules", 200, target="alert_a1"),
    "alert rule preview": Call(
        "partner_admin",
        "POST",
        "/api/v1/alert-rules/preview",
        200,
        target="org_a",
        body={"orgId": "{id}", "condition": {"kind": "rule", "filterRules": LINUX}},
    ),
    "a bad condition: 400 with its path": Call(
        "partner_admin",
        "POST",
        "/api/v1/alert-rules/preview",
        400,
        target="org_a",
        body={"orgId": "{id}", "condition": {**CPU_HOT, "windowMinutes": 0}},
    ),
    "alert list": Call("partner_admin", "GET", "/api/v1/alerts", 200, target="alert_a1"),
    "one alert": Call("org_user", "GET", "/api/v1/alerts/{id}", 200, target="alert_a1"),
    "alert summary": Call("partner_admin", "GET", "/api/v1/alerts/summary", 200, target="alert_a1"),
    "acknowledge an alert": Call(
        "org_user", "POST", "/api/v1/alerts/{id}/acknowledge", 200, target="alert_a1", body={"note": "On it"}
    ),
    "new maintenance window": Call(
        "org_user",
        "POST",
        "/api/v1/maintenance-windows",
        201,
        target="site_a1",
        body={
            "siteId": "{id}",
            "name": "Patch night",
            "startsAt": "2030-01-06T01:30:00Z",
            "endsAt": "2030-01-06T03:30:00Z",
            "recurrence": "weekly",
            "weekdays": [6],
            "timezone": "Europe/Berlin",
        },
    ),
    "new webhook channel (no secret in the answer)": Call(
        "partner_admin",
        "POST",
        "/api/v1/notification-channels",
        201,
        target="org_a",
        body={
            "orgId": "{id}",
            "name": "Hook",
            "kind": "webhook",
            "config": {"url": "https://hooks.example.com/x"},
            "secret": "a-signing-secret-of-24-chars",
        },
    ),
    "channel test send": Call(
        "partner_admin", "POST", "/api/v1/notification-channels/{id}/test", 200, target="email_channel"
    ),
    "outbox": Call("partner_admin", "GET", "/api/v1/notifications", 200, target="email_channel"),
    "new script": Call(
        "org_admin",
        "POST",
        "/api/v1/scripts",
        201,
        target="org_a",
        body={"orgId": "{id}", "name": "Cleanup", "language": "powershell", "content": "Remove-Item $env:TEMP\\*\r\n"},
    ),
    "one script": Call("org_admin", "GET", "/api/v1/scripts/{id}", 200, target="script_a"),
    "script list": Call("org_admin", "GET", "/api/v1/scripts", 200, target="script_a"),
    "script versions": Call("org_admin", "GET", "/api/v1/scripts/{id}/versions", 200, target="script_a"),
    "run a script": Call(
        "partner_technician",
        "POST",
        "/api/v1/scripts/{id}/run",
        201,
        target="script_a",
        body={"deviceIds": ["{device_a1}"], "parameters": {"days": 3}},
    ),
    "a run": Call("org_admin", "GET", "/api/v1/script-runs/{id}", 200, target="run_a"),
    "run list": Call("org_admin", "GET", "/api/v1/script-runs", 200, target="run_a"),
    "run results, commands and skipped devices": Call(
        "org_admin", "GET", "/api/v1/script-runs/{id}/results", 200, target="run_a"
    ),
    "cancel a run": Call("org_admin", "POST", "/api/v1/script-runs/{id}/cancel", 200, target="run_a"),
    "new script schedule": Call(
        "org_admin",
        "POST",
        "/api/v1/script-schedules",
        201,
        target="script_a",
        body={"scriptId": "{id}", "cron": "30 2 * * 1-5", "timezone": "Europe/Berlin", "parameters": {"days": 3}},
    ),
}


def _target(world, name: str | None) -> str:
    if name is None:
        return ""
    if name == "cancelled_command":
        device = world.devices[world.site_a1][0]
        command = DeviceCommand.objects.create(
            device=device, org_id=device.org_id, type="reboot", status=DeviceCommand.Status.CANCELLED
        )
        return str(command.pk)
    if name == "alert_a1":
        device = world.devices[world.site_a1][0]
        rule = AlertRule.objects.create(org=world.org_a, name="Offline", condition={"kind": "offline", "minutes": 5})
        rule.channels.set(
            [
                NotificationChannel.objects.create(
                    org=world.org_a, name="Ops", kind="email", config={"to": ["ops@a.example"]}
                )
            ]
        )
        alert = Alert.objects.create(
            org=world.org_a,
            site=world.site_a1,
            device=device,
            rule=rule,
            severity="critical",
            title="a1-1 offline",
            value=42.5,
        )
        return str(alert.pk)
    if name == "email_channel":
        channel = NotificationChannel.objects.create(
            org=world.org_a, name="Ops", kind="email", config={"to": ["ops@a.example"]}
        )
        Notification.objects.create(channel=channel, org=world.org_a, event="channel.test", payload={"x": 1})
        return str(channel.pk)
    if name in ("script_a", "run_a"):
        script = save_script(
            script=Script(
                org=world.org_a,
                name="Cleanup",
                language="python",
                content="print('ok')\n",
                parameters=[{"name": "days", "type": "int", "required": False, "default": 7}],
            ),
            actor=None,
        )
        if name == "script_a":
            return str(script.pk)
        Device.objects.filter(pk=world.devices[world.site_a1][1].pk).update(status="quarantined")
        run = start_run(
            script=script, actor=None, trigger="api", device_ids=[device.pk for device in world.devices[world.site_a1]]
        )
        DeviceCommand.objects.filter(script_run_id=run.pk).update(
            status="completed",
            result={"exitCode": 0, "stdout": "ok\n", "stderr": "", "durationMs": 30, "error": None},
        )
        return str(run.pk)
    if name == "dynamic_group":
        group = DeviceGroup.objects.create(
            org=world.org_a, name="Linux of A", type="dynamic", filter_rules=LINUX, fields_used=["osType"]
        )
        refresh_group(group)
        return str(group.pk)
    objects = {
        "org_a": world.org_a,
        "device_a1": world.devices[world.site_a1][0],
        "device_b1": world.devices[world.site_b1][0],
        "site_a1": world.site_a1,
    }
    return str(objects[name].pk)


@pytest.mark.django_db
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_real_answer_matches_its_schema(request, document, world, call):
    client = APIClient()
    if call.persona:
        client.force_authenticate(request.getfixturevalue(call.persona))
    target = _target(world, call.target)
    url = call.path.replace("{id}", target) + (f"?{call.query}" if call.query else "")
    device_a1 = str(world.devices[world.site_a1][0].pk)
    body_text = json.dumps(call.body).replace("{id}", target).replace("{device_a1}", device_a1)
    body = json.loads(body_text) if call.body is not None else None
    response = client.generic(call.method, url, json.dumps(body) if body is not None else "", "application/json")

    assert response.status_code == call.status, response.content
    response_validator(document, call.path, call.method, call.status).validate(response.json())


@pytest.mark.django_db
def test_a_real_login_matches_its_schema_and_its_token_works(document, make_user):
    make_user("person@example.com")
    response = APIClient().post(
        "/api/v1/auth/login",
        {"email": "person@example.com", "password": "correct horse battery staple"},
        format="json",
    )
    assert response.status_code == 200, response.content
    response_validator(document, "/api/v1/auth/login", "post", 200).validate(response.json())

    me = APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert me.status_code == 200
    response_validator(document, "/api/v1/auth/me", "get", 200).validate(me.json())

    wrong = APIClient().post("/api/v1/auth/login", {"email": "person@example.com", "password": "wrong"}, format="json")
    assert wrong.status_code == 401
    response_validator(document, "/api/v1/auth/login", "post", 401).validate(wrong.json())


def _drop(key):
    return lambda body: {k: v for k, v in body.items() if k != key}


MANGLED = {
    "a required field missing": _drop("hostname"),
    "a value outside its enum": lambda body: {**body, "status": "on fire"},
    "a wrong type": lambda body: {**body, "tags": "web"},
    "null where null is not allowed": lambda body: {**body, "id": None},
    "a key the document does not name": lambda body: {**body, "agentToken": "rmm_secret"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("mangle", MANGLED.values(), ids=MANGLED.keys())
def test_a_body_that_breaks_its_schema_fails_validation(document, world, partner_admin, mangle):
    """The validation above could pass vacuously (an empty schema accepts anything); this proves it does not."""
    client = APIClient()
    client.force_authenticate(partner_admin)
    device = world.devices[world.site_a1][0]
    body = client.get(f"/api/v1/devices/{device.pk}").json()
    validator = response_validator(document, "/api/v1/devices/{id}", "get", 200)
    validator.validate(body)  # the real one passes

    with pytest.raises(ValidationError):
        validator.validate(mangle(body))


@pytest.mark.django_db
def test_a_page_or_an_error_that_breaks_its_schema_fails_validation(document, partner_admin):
    client = APIClient()
    client.force_authenticate(partner_admin)
    page = client.get("/api/v1/devices?limit=1").json()
    list_validator = response_validator(document, "/api/v1/devices", "get", 200)
    list_validator.validate(page)
    with pytest.raises(ValidationError):
        list_validator.validate({**page, "next": 5})
    with pytest.raises(ValidationError):
        list_validator.validate({"results": [{**page["results"][0], "osType": "amiga"}], "next": None})

    error = client.get("/api/v1/devices?limit=0").json()
    error_validator = response_validator(document, "/api/v1/devices", "get", 400)
    error_validator.validate(error)
    with pytest.raises(ValidationError):
        error_validator.validate({"error": "validation_error", "message": "Bad limit."})  # "fields" is required
    with pytest.raises(ValidationError):
        error_validator.validate({**error, "fields": {"limit": "Too big."}})  # problems are lists
