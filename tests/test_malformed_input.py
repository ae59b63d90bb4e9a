"""Malformed input to the technician API answers 400 in the error shape and stores nothing (issue 10, item 6).

Each class of input below once reached PostgreSQL or Python's datetime arithmetic and came back as a 500: UTC
offsets PostgreSQL refuses (it holds ±15:59, Python ±23:59), impossible dates, non-ASCII digits in ``limit``,
tampered cursors, JSON nested thousands of levels deep, NUL characters and lone surrogates in JSON. Every datetime
the API reads goes through one parser (rmm.parsing.parse_datetime), every limit through one (parse_limit), every
JSON field through one serializer field and every JSON body through one parser; these tests hold each door to it.
"""

from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import urlencode

import django_filters
import pytest
from django.conf import settings
from django.test import Client
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework import serializers
from rest_framework.test import APIClient

from devices.models import DeviceCommand, DeviceGroup
from orgs.models import Organization, Partner, Site

pytestmark = pytest.mark.django_db

# Offsets beyond PostgreSQL's ±15:59, dates that do not exist, and year 1 at +01:00 (year 0 in UTC).
BAD_MOMENTS = [
    "2026-12-01T00:00:00+19:11",
    "2026-12-01T00:00:00-16:00",
    "2026-02-30T00:00:00Z",
    "2026-12-01T25:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:00:00-01:00",
]
DEEP = 5_000


def client_for(user) -> APIClient:
    client = APIClient(raise_request_exception=False)  # a crash must show as the 500 a client would get
    client.force_authenticate(user)
    return client


def assert_refused(response, field: str | None = None) -> dict:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) >= {"error", "message", "fields"}, body
    if field is not None:
        assert any(key == field or key.startswith((f"{field}.", f"{field}[")) for key in body["fields"]), body
    return body


def get(client, path: str, **params):
    return client.get(f"{path}?{urlencode(params)}")


def post_raw(client, path: str, text: str, method: str = "post"):
    return getattr(client, method)(path, data=text.encode(), content_type="application/json")


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def cursor(*parts) -> str:
    raw = json.dumps(list(parts), ensure_ascii=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# --- datetimes: query filters, telemetry, rule values -------------------------------------------------------------


@pytest.mark.parametrize("moment", BAD_MOMENTS)
@pytest.mark.parametrize("name", ["lastSeenAfter", "lastSeenBefore"])
def test_a_device_filter_with_an_impossible_moment_gets_400(partner_admin, name, moment):
    assert_refused(get(client_for(partner_admin), "/api/v1/devices", **{name: moment}), name)


@pytest.mark.parametrize("moment", BAD_MOMENTS)
@pytest.mark.parametrize("name", ["from", "to"])
def test_an_audit_log_filter_with_an_impossible_moment_gets_400(partner_admin, name, moment):
    assert_refused(get(client_for(partner_admin), "/api/v1/audit-log", **{name: moment}), name)


@pytest.mark.parametrize("moment", [*BAD_MOMENTS, "0001-01-01T00:00:00Z"])
@pytest.mark.parametrize("name", ["from", "to"])
def test_a_telemetry_range_with_an_impossible_moment_gets_400(world, partner_admin, name, moment):
    device = world.devices[world.site_a1][0]
    response = get(client_for(partner_admin), f"/api/v1/devices/{device.pk}/telemetry", **{name: moment})
    assert_refused(response, name)


def test_a_device_filter_still_reads_a_plus_that_arrived_as_a_space(partner_admin):
    response = client_for(partner_admin).get("/api/v1/devices?lastSeenAfter=2026-12-01T00:00:00+15:00")
    assert response.status_code == 200, response.content


def _dynamic_rule(moment: str) -> dict:
    return {
        "operator": "OR",
        "conditions": [
            {"field": "lastSeenAt", "operator": "after", "value": moment},
            {"field": "enrolledAt", "operator": "between", "value": {"from": "2026-01-01", "to": moment}},
        ],
    }


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_a_rule_preview_with_an_impossible_moment_gets_400(world, partner_admin, moment):
    body = {"orgId": str(world.org_a.pk), "filterRules": _dynamic_rule(moment)}
    response = client_for(partner_admin).post("/api/v1/groups/preview", body, format="json")
    fields = assert_refused(response)["fields"]
    assert {"conditions[0].value", "conditions[1].value.to"} <= set(fields), fields  # paths within the rule


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_a_dynamic_group_with_an_impossible_moment_is_refused_and_not_saved(world, partner_admin, moment):
    body = {"orgId": str(world.org_a.pk), "name": "Odd", "type": "dynamic", "filterRules": _dynamic_rule(moment)}
    fields = assert_refused(client_for(partner_admin).post("/api/v1/groups", body, format="json"))["fields"]
    assert {"conditions[0].value", "conditions[1].value.to"} <= set(fields), fields
    assert not DeviceGroup.objects.filter(name="Odd").exists()


# --- limits -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["²", "٣", "³", "0", "-1", "501", "1e2", " 5", "99999999999999999999"])
@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/audit-log", "/api/v1/groups"])
def test_a_limit_that_is_not_a_plain_number_in_range_gets_400(partner_admin, path, limit):
    assert_refused(get(client_for(partner_admin), path, limit=limit), "limit")


# --- tampered cursors ----------------------------------------------------------------------------------------------

PK = str(uuid.uuid4())
TAMPERED_CURSORS = {
    "nul in a text key": ("/api/v1/devices", "hostname", cursor("hostname", "a\x00b", PK)),
    "lone surrogate in a text key": ("/api/v1/devices", "hostname", cursor("hostname", "a\ud800", PK)),
    "offset beyond postgres in a datetime key": (
        "/api/v1/devices",
        "-lastSeenAt",
        cursor("-lastSeenAt", "2026-12-01T00:00:00+19:11", PK),
    ),
    "year zero in a datetime key": ("/api/v1/audit-log", "-createdAt", cursor("-createdAt", BAD_MOMENTS[4], PK)),
    "impossible date in a datetime key": ("/api/v1/audit-log", "-createdAt", cursor("-createdAt", BAD_MOMENTS[2], PK)),
    "number where a datetime goes": ("/api/v1/audit-log", "-createdAt", cursor("-createdAt", 5, PK)),
    "nul in the id": ("/api/v1/devices", "hostname", cursor("hostname", "a", "\x00")),
    "a list for the id": ("/api/v1/devices", "hostname", cursor("hostname", "a", [PK])),
    "text where a uuid key goes": ("/api/v1/groups/{group}/devices", "addedAt", cursor("addedAt", "zz", PK)),
    "nested arrays": ("/api/v1/devices", "hostname", base64.urlsafe_b64encode(nested(900).encode()).decode()),
    "not base64": ("/api/v1/devices", "hostname", "%%%\x00"),
    "base64 of binary": ("/api/v1/devices", "hostname", base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()),
    "too few parts": ("/api/v1/devices", "hostname", cursor("hostname", "a")),
}


@pytest.mark.parametrize("case", TAMPERED_CURSORS, ids=str)
def test_a_tampered_cursor_gets_400(world, partner_admin, case):
    path, ordering, value = TAMPERED_CURSORS[case]
    path = path.format(group=world.groups["A1 servers"].pk)
    assert_refused(get(client_for(partner_admin), path, ordering=ordering, cursor=value), "cursor")


def test_a_bad_integer_cursor_key_gets_400(world, partner_admin):
    device = world.devices[world.site_a1][0]
    path = f"/api/v1/devices/{device.pk}/connections"
    for value in ["80", 2**70, True, 1.5]:
        assert_refused(get(client_for(partner_admin), path, cursor=cursor("localPort", value, PK)), "cursor")


# --- deeply nested JSON -------------------------------------------------------------------------------------------


def test_a_command_with_a_payload_nested_5000_levels_deep_gets_400(world, partner_admin):
    device = world.devices[world.site_a1][0]
    text = '{"type": "script", "payload": {"language": "bash", "content": ' + nested(DEEP, '"x"') + "}}"
    for path in (f"/api/v1/devices/{device.pk}/commands", f"/api/v1/groups/{world.groups['A1 servers'].pk}/commands"):
        assert_refused(post_raw(client_for(partner_admin), path, text))
    assert not DeviceCommand.objects.exists()


def test_a_rule_nested_5000_levels_deep_gets_400(world, partner_admin):
    client = client_for(partner_admin)
    rule = '{"operator": "AND", "conditions": [' * DEEP + '{"field": "osType", "operator": "equals", "value": "x"}'
    rule += "]}" * DEEP
    org = str(world.org_a.pk)
    assert_refused(post_raw(client, "/api/v1/groups/preview", f'{{"orgId": "{org}", "filterRules": {rule}}}'))
    create = f'{{"orgId": "{org}", "name": "Deep", "type": "dynamic", "filterRules": {rule}}}'
    assert_refused(post_raw(client, "/api/v1/groups", create))
    windows = {"field": "osType", "operator": "equals", "value": "windows"}
    group = DeviceGroup.objects.create(org=world.org_a, name="Shallow", type="dynamic", filter_rules=windows)
    assert_refused(post_raw(client, f"/api/v1/groups/{group.pk}", f'{{"filterRules": {rule}}}', method="patch"))
    assert not DeviceGroup.objects.filter(name="Deep").exists()


def test_a_body_nested_5000_levels_deep_anywhere_gets_400_before_it_is_decoded(world, partner_admin):
    assert_refused(post_raw(client_for(partner_admin), "/api/v1/orgs", f'{{"name": "x", "settings": {nested(DEEP)}}}'))


def test_json_a_little_nested_is_still_stored(world, partner_admin):
    settings = {"a": {"b": {"c": [1, [2, [3, {"d": "e"}]]]}}}
    response = client_for(partner_admin).patch(f"/api/v1/orgs/{world.org_a.pk}", {"settings": settings}, format="json")
    assert response.status_code == 200, response.content
    world.org_a.refresh_from_db()
    assert world.org_a.settings == settings


# --- NUL and lone surrogates in JSON and text -----------------------------------------------------------------------

UNSTORABLE_JSON = {
    "nul in a value": {"theme": "dark\x00"},
    "nul in a key": {"the\x00me": "dark"},
    "nul deep inside": {"a": [{"b": ["c", "d\x00"]}]},
    "lone surrogate in a value": {"theme": "\ud800"},
    "lone surrogate in a key": {"\udfff": 1},
}


@pytest.mark.parametrize("case", UNSTORABLE_JSON, ids=str)
@pytest.mark.parametrize("resource", ["partners", "orgs", "sites"])
def test_settings_that_postgres_cannot_store_get_400_and_change_nothing(world, superuser, resource, case):
    target = {"partners": world.partner_a, "orgs": world.org_a, "sites": world.site_a1}[resource]
    body = json.dumps({"settings": UNSTORABLE_JSON[case]})  # ensure_ascii: NUL and surrogates as \u escapes
    response = post_raw(client_for(superuser), f"/api/v1/{resource}/{target.pk}", body, method="patch")
    assert_refused(response, "settings")
    target.refresh_from_db()
    assert target.settings == {}


@pytest.mark.parametrize("name", ["address", "contact"])
def test_a_site_address_or_contact_with_nul_gets_400(world, superuser, name):
    body = json.dumps({"orgId": str(world.org_a.pk), "name": "New", name: {"city": "Ber\x00lin"}})
    assert_refused(post_raw(client_for(superuser), "/api/v1/sites", body), name)
    assert not Site.objects.filter(name="New").exists()


def test_an_organization_created_with_nul_in_its_settings_is_not_stored(world, superuser):
    body = json.dumps({"partnerId": str(world.partner_a.pk), "name": "N", "slug": "n", "settings": {"\x00": 1}})
    assert_refused(post_raw(client_for(superuser), "/api/v1/orgs", body), "settings")
    assert not Organization.objects.filter(slug="n").exists()
    assert Partner.objects.count() == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"language": "bash", "content": "echo \ud800"},
        {"language": "bash", "content": "echo hi", "\ud800": 1},
        {"language": "bash\ud800", "content": "echo hi"},
    ],
)
def test_a_command_payload_with_a_lone_surrogate_gets_400(world, partner_admin, payload):
    device = world.devices[world.site_a1][0]
    body = json.dumps({"type": "script", "payload": payload})
    client = client_for(partner_admin)
    assert_refused(post_raw(client, f"/api/v1/devices/{device.pk}/commands", body))
    assert_refused(post_raw(client, f"/api/v1/groups/{world.groups['A1 servers'].pk}/commands", body))
    assert not DeviceCommand.objects.exists()


@pytest.mark.parametrize("text", ["x\x00y", "x\ud800y"])
def test_a_text_field_with_nul_or_a_lone_surrogate_gets_400(world, partner_admin, text):
    client = client_for(partner_admin)
    device = world.devices[world.site_a1][0]
    assert_refused(post_raw(client, f"/api/v1/devices/{device.pk}", json.dumps({"displayName": text}), "patch"))
    assert_refused(post_raw(client, f"/api/v1/devices/{device.pk}", json.dumps({"tags": [text]}), "patch"))
    body = json.dumps({"orgId": str(world.org_a.pk), "name": text})
    assert_refused(post_raw(client, "/api/v1/groups", body), "name")
    rule = {"field": "hostname", "operator": "contains", "value": text}
    body = json.dumps({"orgId": str(world.org_a.pk), "filterRules": rule})
    assert_refused(post_raw(client, "/api/v1/groups/preview", body))


@pytest.mark.parametrize("text", ["\ud800", "x\udfffy"])
def test_an_error_message_that_quotes_a_lone_surrogate_is_still_answered(world, partner_admin, text):
    client = client_for(partner_admin)
    device = world.devices[world.site_a1][0]
    assert_refused(post_raw(client, f"/api/v1/devices/{device.pk}", json.dumps({"status": text}), "patch"), "status")
    body = json.dumps({"orgId": str(world.org_a.pk), "filterRules": {"field": text, "operator": "equals", "value": 1}})
    assert_refused(post_raw(client, "/api/v1/groups/preview", body))
    assert_refused(post_raw(client, "/api/v1/groups", json.dumps({"siteId": text, "name": "n"})), "siteId")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/devices", "search"),
        ("/api/v1/devices", "tag"),
        ("/api/v1/groups", "search"),
        ("/api/v1/audit-log", "action"),
        ("/api/v1/audit-log", "targetType"),
        ("/api/v1/audit-log", "targetId"),
    ],
)
def test_a_query_filter_with_nul_gets_400(partner_admin, path, name):
    assert_refused(get(client_for(partner_admin), path, **{name: "a\x00b"}), name)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
        ("9999-12-30T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:00:00+15:59", "9999-12-31T23:59:59Z"),
    ],
)
@pytest.mark.parametrize("bucket", ["auto", "raw", "5m", "1h"])
def test_a_telemetry_range_at_the_ends_of_the_calendar_is_answered(world, partner_admin, start, end, bucket):
    device = world.devices[world.site_a1][0]
    path = f"/api/v1/devices/{device.pk}/telemetry"
    response = get(client_for(partner_admin), path, **{"from": start, "to": end, "bucket": bucket})
    assert response.status_code == 200, response.content
    assert response.json()["points"] == []


# --- one door each ---------------------------------------------------------------------------------------------------


def _our_serializers() -> list[type]:
    get_resolver().url_patterns  # noqa: B018 (imports every view, and with them every serializer)
    found, todo = [], [serializers.BaseSerializer]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        ours = cls.__module__.split(".")[0] in {"rmm", *settings.DOMAIN_APPS}
        abstract = issubclass(cls, serializers.ModelSerializer) and not hasattr(cls, "Meta")
        if ours and not abstract and not issubclass(cls, serializers.ListSerializer):
            found.append(cls)
    return found


def _writable_fields(serializer, prefix=""):
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        yield f"{prefix}{name}", field
        child = getattr(field, "child", None)
        if isinstance(field, serializers.BaseSerializer):
            yield from _writable_fields(child or field, f"{prefix}{name}.")
        elif child is not None:
            yield f"{prefix}{name}[]", child


def _request_bodies() -> set[str]:
    """The serializers the OpenAPI document names as request bodies of the technician API ("PatchedGroupRequest" →
    "Group"). The agent protocol's bodies are pydantic schemas, not serializers: tests/agent/ checks how they read."""
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    return {
        content["schema"]["$ref"].rsplit("/", 1)[1].removeprefix("Patched").removesuffix("Request")
        for path, operations in document["paths"].items()
        if not path.startswith("/api/v1/agents/")
        for operation in operations.values()
        if isinstance(operation, dict) and "requestBody" in operation
        for content in operation["requestBody"]["content"].values()
    }


def test_every_json_and_datetime_field_a_request_can_fill_reads_through_rmm_parsing():
    from rmm import inputs  # imported here: this file also runs against code from before rmm/inputs.py

    bodies = _request_bodies()
    classes = [cls for cls in _our_serializers() if cls.__name__.removesuffix("Serializer") in bodies]
    assert len(classes) == len(bodies), bodies - {cls.__name__.removesuffix("Serializer") for cls in classes}
    wrong = []
    for cls in classes:
        for path, field in _writable_fields(cls(context={"request": None})):
            if isinstance(field, serializers.JSONField) and not isinstance(field, inputs.JSONField):
                wrong.append(f"{cls.__name__}.{path}")
            if isinstance(field, serializers.DateTimeField) and not isinstance(field, inputs.DateTimeField):
                wrong.append(f"{cls.__name__}.{path}")
    assert wrong == []


def test_every_datetime_filter_reads_through_rmm_parsing():
    from rmm import inputs

    filtersets, todo = [], [django_filters.FilterSet]
    get_resolver().url_patterns  # noqa: B018
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        filtersets.append(cls)
    datetime_filters = [
        f"{cls.__name__}.{name}"
        for cls in filtersets
        if cls.__module__.split(".")[0] in set(settings.DOMAIN_APPS)
        for name, declared in cls.base_filters.items()
        if isinstance(declared, django_filters.DateTimeFilter | django_filters.DateFromToRangeFilter)
        and not isinstance(declared, inputs.DateTimeFilter)
    ]
    assert datetime_filters == []


# --- the admin: URL filters and the telemetry page -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "hostname=a%00b",
        "last_seen_at__gte=2026-12-01T00:00:00%2B19:11",
        "last_seen_at__lt=0001-01-01T00:00:00%2B01:00",
    ],
)
@pytest.mark.parametrize("changelist", ["/admin/devices/device/", "/admin/accounts/auditlog/"])
def test_an_admin_list_filtered_by_a_value_postgres_refuses_reloads_with_an_error_flag(superuser, changelist, query):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    query = (
        query.replace("hostname", "action").replace("last_seen_at", "created_at") if "auditlog" in changelist else query
    )
    response = client.get(f"{changelist}?{query}")
    assert response.status_code == 302, response.status_code
    assert response["Location"].endswith("?e=1")


def test_an_admin_list_still_filters_by_a_datetime_postgres_holds(world, superuser):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    assert client.get("/admin/devices/device/?last_seen_at__gte=2026-12-01T00:00:00%2B15:00").status_code == 200


@pytest.mark.parametrize(
    "before", ["2026-12-01T00:00:00%2B19:11", "0001-01-01T00:00:00%2B01:00", "0001-01-01T00:00:00Z"]
)
def test_the_admin_telemetry_page_answers_a_moment_at_or_beyond_the_calendar_without_a_500(world, superuser, before):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    response = client.get(f"/admin/devices/devicetelemetry/?before={before}")
    assert response.status_code in (200, 400), response.status_code
    assert response.status_code == (200 if before.endswith("Z") else 400)


def _admin_post_change(client: Client, url: str, **changes) -> object:
    """POST the admin change form at ``url`` as it was shown, with ``changes``."""
    form = client.get(url).context["adminform"].form
    data = {name: "" if value is None else value for name, value in form.initial.items()}
    data = {name: value for name, value in data.items() if not isinstance(value, list | dict)}
    return client.post(url, {**data, **changes})


@pytest.mark.parametrize("settings", ['{"theme": "dark\\u0000"}', '{"\\ud800": 1}', nested(DEEP)])
def test_admin_json_that_postgres_cannot_store_is_a_form_error(world, superuser, settings):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    response = _admin_post_change(client, f"/admin/orgs/partner/{world.partner_a.pk}/change/", settings=settings)
    assert response.status_code == 200, response.status_code  # the form again, with its error
    assert response.context["adminform"].form.errors["settings"]
    world.partner_a.refresh_from_db()
    assert world.partner_a.settings == {}


def test_an_admin_group_rule_nested_5000_levels_deep_is_a_form_error(world, superuser):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    group = world.groups["A1 servers"]
    response = _admin_post_change(client, f"/admin/devices/devicegroup/{group.pk}/change/", filter_rules=nested(DEEP))
    assert response.status_code == 200, response.status_code
    assert response.context["adminform"].form.errors["filter_rules"]
