"""Every technician-API endpoint, asked by every persona, answers exactly the status the access rules say.

401 not signed in · 404 out of reach (as if it did not exist) · 403 in reach but the role lacks the permission ·
400 a body that references something out of reach (it "does not exist"), for a caller who holds the permission
somewhere (one who holds it nowhere gets 403 before the body is read). Later endpoints add rows here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from devices.models import DeviceCommand, DeviceGroup
from devices.services.groups import refresh_group
from orgs.models import Organization, Site

PERSONAS = [
    "anonymous",
    "superuser",
    "partner_admin",
    "partner_technician",
    "viewer",
    "org_admin",
    "org_user",
    "outsider",
]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # formatted with the world: {org_a}, {site_a1}, ...
    body: dict | None = None


def _row(call: Call, *statuses: int):
    assert len(statuses) == len(PERSONAS)
    return call, dict(zip(PERSONAS, statuses, strict=True))


# columns:                                                     anon super p.adm p.tech viewer o.adm o.user outsider
MATRIX = [
    _row(Call("GET", "/api/v1/auth/me"),                           401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/api-tokens"),                        401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/partners"),                          401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/partners/{partner_a}"),              401, 200, 200, 200, 200, 404, 404, 404),
    _row(Call("PATCH", "/api/v1/partners/{partner_a}", {"timezone": "Europe/Paris"}),
                                                                   401, 200, 403, 403, 403, 404, 404, 404),
    _row(Call("GET", "/api/v1/orgs"),                              401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/orgs/{org_a}"),                      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("PATCH", "/api/v1/orgs/{org_a}", {"name": "Org A renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 403, 404),
    _row(Call("POST", "/api/v1/orgs", {"partnerId": "{partner_a}", "name": "New", "slug": "new"}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400),
    _row(Call("DELETE", "/api/v1/orgs/{org_empty}"),               401, 204, 204, 403, 403, 404, 404, 404),
    _row(Call("DELETE", "/api/v1/orgs/{org_a}"),                   401, 409, 409, 403, 403, 403, 403, 404),
    _row(Call("GET", "/api/v1/sites"),                             401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/sites/{site_a1}"),                   401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/sites/{site_a2}"),                   401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("PATCH", "/api/v1/sites/{site_a1}", {"timezone": "Europe/Paris"}),
                                                                   401, 200, 200, 403, 403, 200, 403, 404),
    _row(Call("POST", "/api/v1/sites", {"orgId": "{org_a}", "name": "Annex"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400),
    _row(Call("DELETE", "/api/v1/sites/{site_empty}"),             401, 204, 204, 403, 403, 204, 404, 404),
    _row(Call("GET", "/api/v1/permissions"),                       401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/roles"),                             401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("POST", "/api/v1/roles", {"partnerId": "{partner_a}", "name": "Matrix", "scope": "partner",
                                        "permissions": ["devices:read"]}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400),
    _row(Call("PATCH", "/api/v1/roles/{builtin_role}", {"description": "x"}),
                                                                   401, 403, 403, 403, 403, 403, 403, 403),
    _row(Call("GET", "/api/v1/users"),                             401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/users/{org_user}"),                  401, 200, 200, 404, 200, 200, 200, 404),
    _row(Call("PATCH", "/api/v1/users/{org_user}", {"name": "Renamed"}),
                                                                   401, 200, 200, 404, 403, 200, 403, 404),
    _row(Call("GET", "/api/v1/partner-users"),                     401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/organization-users"),                401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("DELETE", "/api/v1/organization-users/{org_user_membership}"),
                                                                   401, 204, 204, 404, 403, 204, 403, 404),
    _row(Call("GET", "/api/v1/devices"),                           401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/devices/summary"),                   401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/devices/{device_a1}"),               401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/devices/{device_a2}"),               401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("PATCH", "/api/v1/devices/{device_a1}", {"displayName": "Reception"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("DELETE", "/api/v1/devices/{device_a1}"),            401, 204, 204, 403, 403, 204, 403, 404),
    _row(Call("GET", "/api/v1/devices/{device_a1}/software"),      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/devices/{device_a1}/hardware"),      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/audit-log"),                         401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("POST", "/api/v1/devices/{device_a1}/quarantine", {"reason": "suspicious"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("POST", "/api/v1/devices/{device_a1}/approve"),      401, 409, 409, 403, 403, 409, 409, 404),
    _row(Call("POST", "/api/v1/devices/{device_a1}/rotate-token"), 401, 202, 202, 403, 403, 202, 202, 404),
    _row(Call("GET", "/api/v1/devices/{device_a1}/commands"),      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/devices/{device_a1}/commands", {"type": "reboot"}),
                                                                   401, 201, 201, 201, 403, 201, 403, 404),
    _row(Call("GET", "/api/v1/commands/{command_a1}"),             401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/commands/{command_a1}/cancel"),     401, 200, 200, 200, 403, 200, 403, 404),
    _row(Call("GET", "/api/v1/enrollment-keys"),                   401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/enrollment-keys/{key_a1}"),          401, 200, 200, 404, 404, 200, 200, 404),
    _row(Call("POST", "/api/v1/enrollment-keys", {"siteId": "{site_a1}", "name": "Matrix"}),
                                                                   401, 201, 201, 403, 403, 201, 201, 400),
    _row(Call("POST", "/api/v1/enrollment-keys/{key_a1}/revoke"),  401, 200, 200, 404, 404, 200, 200, 404),
    _row(Call("GET", "/api/v1/devices/{device_a1}/telemetry"),     401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/groups"),                            401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/groups/{group_a1}"),                 401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/groups/{group_all_a}"),              401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/groups", {"orgId": "{org_a}", "name": "Matrix"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400),
    _row(Call("POST", "/api/v1/groups", {"siteId": "{site_a1}", "name": "Matrix", "type": "dynamic",
                                         "filterRules": {"field": "osType", "operator": "equals", "value": "linux"}}),
                                                                   401, 201, 201, 403, 403, 201, 201, 400),
    _row(Call("PATCH", "/api/v1/groups/{group_a1}", {"name": "Renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("DELETE", "/api/v1/groups/{group_a1}"),              401, 204, 204, 403, 403, 204, 204, 404),
    _row(Call("GET", "/api/v1/groups/{group_a1}/devices"),         401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/groups/{group_a1}/devices", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("DELETE", "/api/v1/groups/{group_a1}/devices", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/devices/pin", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/devices/unpin", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404),
    _row(Call("GET", "/api/v1/groups/{dynamic_a1}/membership-log"), 401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/groups/preview", {"orgId": "{org_a}",
                                                 "filterRules": {"field": "tags", "operator": "isEmpty"}}),
                                                                   401, 200, 200, 200, 200, 200, 200, 400),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/commands", {"type": "reboot"}),
                                                                   401, 201, 201, 201, 403, 201, 403, 404),
]  # fmt: skip


@pytest.fixture
def ids(world, roles, org_user):
    org_empty = Organization.objects.create(partner=world.partner_a, name="Empty", slug="empty")
    site_empty = Site.objects.create(org=world.org_a, name="Empty site")
    return {
        "partner_a": world.partner_a.pk,
        "org_a": world.org_a.pk,
        "org_empty": org_empty.pk,
        "site_a1": world.site_a1.pk,
        "site_a2": world.site_a2.pk,
        "site_empty": site_empty.pk,
        "builtin_role": roles["Partner Admin"].pk,
        "org_user": org_user.pk,
        "device_a1": world.devices[world.site_a1][0].pk,
        "device_a2": world.devices[world.site_a2][0].pk,
        "key_a1": world.keys[world.site_a1].pk,
        "command_a1": DeviceCommand.objects.create(
            device=world.devices[world.site_a1][0], org=world.org_a, type="reboot"
        ).pk,
        "org_user_membership": org_user.org_memberships.get().pk,
        "group_a1": world.groups["A1 servers"].pk,
        "group_all_a": world.groups["All of A"].pk,
        "dynamic_a1": _dynamic_group(world).pk,
    }


def _dynamic_group(world) -> DeviceGroup:
    """A dynamic group of site A1 whose rule matches a1-1 (device_a1)."""
    group = DeviceGroup.objects.create(
        org=world.org_a,
        site=world.site_a1,
        name="A1 Linux",
        type="dynamic",
        filter_rules={"field": "osType", "operator": "equals", "value": "linux"},
        fields_used=["osType"],
    )
    refresh_group(group)
    return group


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("call", "expected"), MATRIX, ids=[f"{c.method} {c.path}" for c, _ in MATRIX])
def test_each_persona_gets_exactly_the_status_the_rules_say(request, ids, persona, call, expected):
    client = APIClient()
    if persona != "anonymous":
        client.force_authenticate(request.getfixturevalue(persona))
    response = getattr(client, call.method.lower())(_fill(call.path, ids), _fill(call.body, ids), format="json")
    assert response.status_code == expected[persona], response.content
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "message", "fields"}


def test_every_api_route_is_in_the_matrix():
    """A new endpoint without a row here fails this test: every resource gets a permission test."""
    from django.urls import get_resolver

    covered = {call.path.split("/")[3] for call, _ in MATRIX}
    routes = set()
    for pattern in get_resolver().url_patterns:
        if str(pattern.pattern) == "api/v1/":
            for sub in pattern.url_patterns:
                text = str(sub.pattern).lstrip("^")
                routes.add(text.split("/")[0].split("\\")[0].rstrip("?$"))
    exempt = {"auth", "agents"}  # sign-in (tests/accounts) and the agent protocol (tests/agent) have their own
    assert routes - exempt - covered == set()
