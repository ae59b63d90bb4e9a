"""Every technician-API operation, asked by every persona, answers exactly the status the access rules say, and
does exactly what that status promises.

401 not signed in · 404 out of reach (as if it did not exist) · 403 in reach but the role lacks the permission ·
400 a body that references something out of reach (it "does not exist"), for a caller who holds the permission
somewhere (one who holds it nowhere gets 403 before the body is read).

A row may name a check, run after the status is asserted:

- ``Sees(persona="name name …")``: a list answers exactly these rows (names of :func:`names`) to that persona,
  and every persona that gets a 200 has an entry;
- ``Writes(read, to)``: ``read(names, persona)`` reads the state the call changes; after a 2xx it is ``to`` (a
  value, or a function of the state before) and differs from before; after any refusal it is what it was.

The world is built once for the module (tests/conftest.py ``module_world`` and :func:`names` here); each test
runs in a savepoint that is rolled back, so every row meets the same world. Each persona signs in with a real
API token. The tests at the end tie the rows to the OpenAPI document's operations
and make every list row and every write row carry its check.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

from accounts import auth
from accounts.models import ApiToken, AuditLog, OrganizationUser, PartnerUser, Permission, Role, User
from alerts.models import Alert, AlertRule, MaintenanceWindow, Notification, NotificationChannel
from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from devices.services.groups import refresh_group
from orgs.models import EnrollmentKey, Organization, Partner, Site
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from tests.conftest import PASSWORD, REGISTRY

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

# The agent protocol (tag "agent", under /api/v1/agents/) has its own tests in tests/agent.
AGENT_PREFIX = "/api/v1/agents/"
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # formatted with names(): {org_a}, {site_a1}, ...
    body: dict | None = None

    @property
    def operation(self) -> tuple[str, str]:
        """(method, path template) as the OpenAPI document writes it: a placeholder is the lookup ``{id}``, unless
        ``PATH_PARAMETERS`` names it another path parameter (``{v1}``, a version number, is ``{version}``)."""
        return self.method, re.sub(r"\{(\w+)\}", lambda m: PATH_PARAMETERS.get(m[1], "{id}"), self.path)


# Placeholders that stand for a path parameter other than the lookup id → that parameter in the document.
PATH_PARAMETERS = {"v1": "{version}"}


class Check:
    def before(self, names: dict, persona: str) -> Any:
        return None

    def after(self, names: dict, persona: str, response, before: Any) -> None:
        raise NotImplementedError


class Sees(Check):
    """The rows a list answers, persona → space-separated names (an empty string: nothing)."""

    def __init__(self, key: str = "id", rows: str = "results", **seen: str):
        self.key = key
        self.rows = rows  # where a paginated (or otherwise wrapped) answer holds its rows
        self.seen = seen

    def _key(self, row: dict):
        for part in self.key.split("."):
            row = row[part]
        return row

    def after(self, names, persona, response, before):
        if response.status_code != 200:
            return
        assert persona in self.seen, f"{persona} gets 200 but the row does not say what it sees"
        body = response.json()
        rows = body if isinstance(body, list) else body[self.rows]
        if isinstance(body, dict):
            assert body.get("next") is None, "the world fits on one page"
        seen = sorted(str(self._key(row)) for row in rows)
        name_of = {str(value): name for name, value in names.items() if not isinstance(value, dict)}
        assert seen == sorted(str(names[name]) for name in self.seen[persona].split()), (
            f"{persona} sees {' '.join(sorted(name_of.get(key, key) for key in seen))!r}"
        )


class Answers(Check):
    """What ``read(body)`` of a 200 answer is, persona → value (for answers that are not lists of rows)."""

    def __init__(self, read: Callable[[Any], Any], **expected: Any):
        self.read = read
        self.expected = expected

    def after(self, names, persona, response, before):
        if response.status_code == 200:
            assert self.read(response.json()) == self.expected[persona]


class Writes(Check):
    """A write: the state ``read`` returns becomes ``to`` after a 2xx and stays as it was after a refusal."""

    def __init__(self, read: Callable[[dict, str], Any], to: Any):
        self.read = read
        self.to = to

    def before(self, names, persona):
        return self.read(names, persona)

    def after(self, names, persona, response, before):
        now = self.read(names, persona)
        if 200 <= response.status_code < 300:
            expected = self.to(before) if callable(self.to) else self.to
            assert now == expected, f"after {response.status_code}: {now!r}, expected {expected!r}"
            assert now != before, "a 2xx changed nothing"
        else:
            assert now == before, f"after {response.status_code} the state changed: {before!r} → {now!r}"


# --- what the checks read ------------------------------------------------------------------------------------------


def field(model, name: str, attr: str):
    """``model``'s row named ``name`` (see names()): its ``attr``, or None when it is gone."""
    return lambda names, persona: model.objects.filter(pk=names[name]).values_list(attr, flat=True).first()


def exists(model, **lookup):
    return lambda names, persona: model.objects.filter(**lookup).exists()


def gone(model, name: str):
    return Writes(lambda names, persona: model.objects.filter(pk=names[name]).exists(), False)


def count(model, **lookup):
    return lambda names, persona: model.objects.filter(**{k: names[v] for k, v in lookup.items()}).count()


def own_tokens(names, persona):
    """The persona's API tokens, (name, revoked) pairs."""
    tokens = ApiToken.objects.filter(user_id=names.get(persona)).values_list("name", "revoked_at")
    return sorted((name, revoked is not None) for name, revoked in tokens)


def has_mfa_secret(names, persona):
    return User.objects.filter(pk=names.get(persona)).exclude(mfa_secret="").exists()


def mfa_state(names, persona):
    """Whether the persona's MFA is on, and how many recovery codes they hold."""
    user = User.objects.filter(pk=names.get(persona)).first()
    return user and (user.mfa_enabled, user.mfa_recovery_codes.count())


def group_members(name: str):
    """The group's memberships, (hostname, pinned) pairs."""
    return lambda names, persona: sorted(
        DeviceGroupMembership.objects.filter(group_id=names[name]).values_list("device__hostname", "is_pinned")
    )


# Who sees what of the world, by persona; used by several rows.
EVERY_ORG = "org_a org_a2 org_b org_empty"
EVERY_DEVICE = "a1-1 a1-2 a2-1 a2-2 a2m-1 a2m-2 b1-1 b1-2"
DEVICES_A = "a1-1 a1-2 a2-1 a2-2 a2m-1 a2m-2"
EVERY_GROUP = "group_a1 group_a2 group_a2m group_b1 group_all_a dynamic_a1"
GROUPS_A = "group_a1 group_a2 group_a2m group_all_a dynamic_a1"
BUILTIN_ROLES = "partner_admin_role partner_technician_role viewer_role org_admin_role org_user_role"
PEOPLE_A = "partner_admin partner_technician viewer org_admin org_user"
PARTNER_A_MEMBERSHIPS = "membership_partner_admin membership_partner_technician membership_viewer"
ORG_A_MEMBERSHIPS = "membership_org_admin membership_org_user"
EVERY_PERMISSION = " ".join(f"{resource}:{action}" for resource, actions in REGISTRY.items() for action in actions)


def _row(call: Call, *statuses: int, check: Check | None = None):
    assert len(statuses) == len(PERSONAS)
    return call, dict(zip(PERSONAS, statuses, strict=True)), check


# columns:                                                     anon super p.adm p.tech viewer o.adm o.user outsider
MATRIX = [
    # --- signing in and one's own credentials (tests/accounts has the flows) --------------------------------------
    _row(Call("POST", "/api/v1/auth/login", {"email": "viewer@a.example", "password": PASSWORD}),
                                                                   200, 200, 200, 200, 200, 200, 200, 200,
         check=Writes(count(ApiToken, user_id="viewer"), lambda before: before + 1)),
    _row(Call("POST", "/api/v1/auth/logout"),                      401, 204, 204, 204, 204, 204, 204, 204,
         check=Writes(own_tokens, lambda before: [(name, name == "session" or revoked) for name, revoked in before])),
    _row(Call("GET", "/api/v1/auth/me"),                           401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("POST", "/api/v1/auth/mfa/setup"),                   401, 200, 200, 200, 200, 200, 200, 200,
         check=Writes(has_mfa_secret, True)),
    # Nobody has begun MFA set-up in this world: the three answer 409 (tests/accounts has the flows).
    _row(Call("POST", "/api/v1/auth/mfa/enable", {"totp": "123456"}),
                                                                   401, 409, 409, 409, 409, 409, 409, 409,
         check=Writes(mfa_state, (True, 10))),
    _row(Call("POST", "/api/v1/auth/mfa/disable", {"totp": "123456"}),
                                                                   401, 409, 409, 409, 409, 409, 409, 409,
         check=Writes(mfa_state, (False, 0))),
    _row(Call("POST", "/api/v1/auth/mfa/recovery-codes", {"totp": "123456"}),
                                                                   401, 409, 409, 409, 409, 409, 409, 409,
         check=Writes(mfa_state, lambda before: before)),
    _row(Call("GET", "/api/v1/api-tokens"),                        401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="token_superuser", partner_admin="token_partner_admin spare_token",
                    partner_technician="token_partner_technician", viewer="token_viewer",
                    org_admin="token_org_admin", org_user="token_org_user", outsider="token_outsider")),
    _row(Call("POST", "/api/v1/api-tokens", {"name": "Matrix"}),   401, 201, 201, 201, 201, 201, 201, 201,
         check=Writes(own_tokens, lambda before: sorted([*before, ("Matrix", False)]))),
    _row(Call("GET", "/api/v1/api-tokens/{spare_token}"),          401, 404, 200, 404, 404, 404, 404, 404),
    _row(Call("DELETE", "/api/v1/api-tokens/{spare_token}"),       401, 404, 204, 404, 404, 404, 404, 404,
         check=Writes(lambda names, persona: ApiToken.objects.get(pk=names["spare_token"]).revoked_at is not None,
                      True)),
    # --- partners, organizations, sites ---------------------------------------------------------------------------
    _row(Call("GET", "/api/v1/partners"),                          401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="partner_a partner_b", partner_admin="partner_a", partner_technician="partner_a",
                    viewer="partner_a", org_admin="", org_user="", outsider="partner_b")),
    _row(Call("GET", "/api/v1/partners/{partner_a}"),              401, 200, 200, 200, 200, 404, 404, 404),
    _row(Call("PATCH", "/api/v1/partners/{partner_a}", {"timezone": "Europe/Paris"}),
                                                                   401, 200, 403, 403, 403, 404, 404, 404,
         check=Writes(field(Partner, "partner_a", "timezone"), "Europe/Paris")),
    _row(Call("GET", "/api/v1/orgs"),                              401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=EVERY_ORG, partner_admin="org_a org_a2 org_empty",
                    partner_technician="org_a org_a2 org_empty", viewer="org_a org_a2 org_empty",
                    org_admin="org_a", org_user="org_a", outsider="org_b")),
    _row(Call("GET", "/api/v1/orgs/{org_a}"),                      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("PATCH", "/api/v1/orgs/{org_a}", {"name": "Org A renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 403, 404,
         check=Writes(field(Organization, "org_a", "name"), "Org A renamed")),
    _row(Call("POST", "/api/v1/orgs", {"partnerId": "{partner_a}", "name": "New", "slug": "new"}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(Organization, slug="new"), True)),
    _row(Call("DELETE", "/api/v1/orgs/{org_empty}"),               401, 204, 204, 403, 403, 404, 404, 404,
         check=gone(Organization, "org_empty")),
    _row(Call("DELETE", "/api/v1/orgs/{org_a}"),                   401, 409, 409, 403, 403, 403, 403, 404,
         check=gone(Organization, "org_a")),
    _row(Call("GET", "/api/v1/sites"),                             401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="site_a1 site_a2 site_a2m site_b1 site_empty",
                    partner_admin="site_a1 site_a2 site_a2m site_empty",
                    partner_technician="site_a1 site_a2 site_a2m site_empty",
                    viewer="site_a1 site_a2 site_a2m site_empty",
                    org_admin="site_a1 site_a2 site_empty", org_user="site_a1", outsider="site_b1")),
    _row(Call("GET", "/api/v1/sites/{site_a1}"),                   401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/sites/{site_a2}"),                   401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("PATCH", "/api/v1/sites/{site_a1}", {"timezone": "Europe/Paris"}),
                                                                   401, 200, 200, 403, 403, 200, 403, 404,
         check=Writes(field(Site, "site_a1", "timezone"), "Europe/Paris")),
    _row(Call("POST", "/api/v1/sites", {"orgId": "{org_a}", "name": "Annex"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(Site, name="Annex"), True)),
    _row(Call("DELETE", "/api/v1/sites/{site_empty}"),             401, 204, 204, 403, 403, 204, 404, 404,
         check=gone(Site, "site_empty")),
    # --- people, roles, memberships, the audit log ----------------------------------------------------------------
    _row(Call("GET", "/api/v1/permissions"),                       401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(**dict.fromkeys(PERSONAS[1:], EVERY_PERMISSION))),
    _row(Call("GET", "/api/v1/permissions/{devices_read}"),        401, 200, 200, 200, 200, 200, 200, 200),
    _row(Call("GET", "/api/v1/roles"),                             401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=f"{BUILTIN_ROLES} custom_role_a", partner_admin=f"{BUILTIN_ROLES} custom_role_a",
                    partner_technician=BUILTIN_ROLES, viewer=f"{BUILTIN_ROLES} custom_role_a",
                    org_admin=f"{BUILTIN_ROLES} custom_role_a", org_user=BUILTIN_ROLES, outsider=BUILTIN_ROLES)),
    _row(Call("GET", "/api/v1/roles/{custom_role_a}"),             401, 200, 200, 404, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/roles", {"partnerId": "{partner_a}", "name": "Matrix", "scope": "partner",
                                        "permissions": ["devices:read"]}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(Role, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/roles/{partner_admin_role}", {"description": "x"}),
                                                                   401, 403, 403, 403, 403, 403, 403, 403,
         check=Writes(field(Role, "partner_admin_role", "description"), "x")),
    _row(Call("DELETE", "/api/v1/roles/{custom_role_a}"),          401, 204, 204, 404, 403, 403, 404, 404,
         check=gone(Role, "custom_role_a")),
    _row(Call("GET", "/api/v1/users"),                             401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=f"superuser {PEOPLE_A} outsider", partner_admin=PEOPLE_A,
                    partner_technician="partner_technician", viewer=PEOPLE_A, org_admin="org_admin org_user",
                    org_user="org_user", outsider="outsider")),
    _row(Call("GET", "/api/v1/users/{org_user}"),                  401, 200, 200, 404, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/users", {"email": "new@a.example", "orgId": "{org_a}", "roleId": "{org_user_role}"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(User, email="new@a.example"), True)),
    _row(Call("PATCH", "/api/v1/users/{org_user}", {"name": "Renamed"}),
                                                                   401, 200, 200, 404, 403, 200, 403, 404,
         check=Writes(field(User, "org_user", "name"), "Renamed")),
    _row(Call("DELETE", "/api/v1/users/{org_user}"),               401, 204, 204, 404, 403, 204, 403, 404,
         check=gone(User, "org_user")),
    _row(Call("GET", "/api/v1/partner-users"),                     401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=f"{PARTNER_A_MEMBERSHIPS} membership_outsider", partner_admin=PARTNER_A_MEMBERSHIPS,
                    partner_technician="membership_partner_technician", viewer=PARTNER_A_MEMBERSHIPS,
                    org_admin="", org_user="", outsider="membership_outsider")),
    _row(Call("GET", "/api/v1/partner-users/{membership_viewer}"), 401, 200, 200, 404, 200, 404, 404, 404),
    _row(Call("POST", "/api/v1/partner-users", {"partnerId": "{partner_a}", "userId": "{org_user}",
                                                "roleId": "{viewer_role}", "orgAccess": "all"}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(PartnerUser, user__email="org.user@a.example"), True)),
    _row(Call("PATCH", "/api/v1/partner-users/{membership_viewer}", {"orgAccess": "none"}),
                                                                   401, 200, 200, 404, 403, 404, 404, 404,
         check=Writes(field(PartnerUser, "membership_viewer", "org_access"), "none")),
    _row(Call("DELETE", "/api/v1/partner-users/{membership_viewer}"),
                                                                   401, 204, 204, 404, 403, 404, 404, 404,
         check=gone(PartnerUser, "membership_viewer")),
    _row(Call("GET", "/api/v1/organization-users"),                401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(**dict.fromkeys(["superuser", "partner_admin", "viewer", "org_admin"], ORG_A_MEMBERSHIPS),
                    partner_technician="", org_user="membership_org_user", outsider="")),
    _row(Call("GET", "/api/v1/organization-users/{membership_org_user}"),
                                                                   401, 200, 200, 404, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/organization-users", {"orgId": "{org_a}", "userId": "{viewer}",
                                                     "roleId": "{org_user_role}"}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(OrganizationUser, user__email="viewer@a.example"), True)),
    _row(Call("PATCH", "/api/v1/organization-users/{membership_org_user}", {"siteIds": ["{site_a2}"]}),
                                                                   401, 200, 200, 404, 403, 200, 403, 404,
         check=Writes(lambda names, persona: sorted(
             OrganizationUser.objects.get(pk=names["membership_org_user"]).sites.values_list("name", flat=True)),
             ["A2"])),
    _row(Call("DELETE", "/api/v1/organization-users/{membership_org_user}"),
                                                                   401, 204, 204, 404, 403, 204, 403, 404,
         check=gone(OrganizationUser, "membership_org_user")),
    _row(Call("GET", "/api/v1/audit-log"),                         401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="audit_a audit_a2 audit_b", partner_admin="audit_a audit_a2", partner_technician="",
                    viewer="audit_a audit_a2", org_admin="audit_a", org_user="", outsider="audit_b")),
    _row(Call("GET", "/api/v1/audit-log/{audit_a}"),               401, 200, 200, 404, 200, 200, 404, 404),
    # --- devices and their commands -------------------------------------------------------------------------------
    _row(Call("GET", "/api/v1/devices"),                           401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=EVERY_DEVICE, partner_admin=DEVICES_A, partner_technician=DEVICES_A, viewer=DEVICES_A,
                    org_admin="a1-1 a1-2 a2-1 a2-2", org_user="a1-1 a1-2", outsider="b1-1 b1-2")),
    _row(Call("GET", "/api/v1/devices/summary"),                   401, 200, 200, 200, 200, 200, 200, 200,
         check=Answers(lambda body: body["total"], superuser=8, partner_admin=6, partner_technician=6, viewer=6,
                       org_admin=4, org_user=2, outsider=2)),
    _row(Call("GET", "/api/v1/devices/{device_a1}"),               401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/devices/{device_a2}"),               401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("PATCH", "/api/v1/devices/{device_a1}", {"displayName": "Reception"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(field(Device, "device_a1", "display_name"), "Reception")),
    _row(Call("DELETE", "/api/v1/devices/{device_a1}"),            401, 204, 204, 403, 403, 204, 403, 404,
         check=Writes(field(Device, "device_a1", "status"), "decommissioned")),
    _row(Call("GET", "/api/v1/devices/{device_a1}/hardware"),      401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/devices/{device_a1}/software"),      401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "software_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/disks"),         401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "disks_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/network-interfaces"),
                                                                   401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "network-interfaces_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/registry-entries"),
                                                                   401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "registry-entries_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/config-entries"),
                                                                   401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "config-entries_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/connections"),   401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "connections_a1"))),
    _row(Call("GET", "/api/v1/devices/{device_a1}/telemetry"),     401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/devices/{device_a1}/quarantine", {"reason": "suspicious"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(field(Device, "device_a1", "status"), "quarantined")),
    _row(Call("POST", "/api/v1/devices/{device_a1}/approve"),      401, 409, 409, 403, 403, 409, 409, 404,
         check=Writes(field(Device, "device_a1", "status"), "online")),
    _row(Call("POST", "/api/v1/devices/{device_a1}/rotate-token"), 401, 202, 202, 403, 403, 202, 202, 404,
         check=Writes(field(Device, "device_a1", "agent_token_issued_at"), None)),
    _row(Call("GET", "/api/v1/devices/{device_a1}/commands"),      401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "command_a1"))),
    _row(Call("POST", "/api/v1/devices/{device_a1}/commands", {"type": "reboot"}),
                                                                   401, 201, 201, 201, 403, 201, 403, 404,
         check=Writes(count(DeviceCommand, device_id="device_a1"), lambda before: before + 1)),
    _row(Call("GET", "/api/v1/commands/{command_a1}"),             401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/commands/{command_a1}/cancel"),     401, 200, 200, 200, 403, 200, 403, 404,
         check=Writes(field(DeviceCommand, "command_a1", "status"), "cancelled")),
    # --- enrollment keys ------------------------------------------------------------------------------------------
    _row(Call("GET", "/api/v1/enrollment-keys"),                   401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="key_a1 key_a2 key_a2m key_b1", partner_admin="key_a1 key_a2 key_a2m",
                    partner_technician="", viewer="", org_admin="key_a1 key_a2", org_user="key_a1",
                    outsider="key_b1")),
    _row(Call("GET", "/api/v1/enrollment-keys/{key_a1}"),          401, 200, 200, 404, 404, 200, 200, 404),
    _row(Call("POST", "/api/v1/enrollment-keys", {"siteId": "{site_a1}", "name": "Matrix"}),
                                                                   401, 201, 201, 403, 403, 201, 201, 400,
         check=Writes(exists(EnrollmentKey, name="Matrix"), True)),
    _row(Call("POST", "/api/v1/enrollment-keys/{key_a1}/revoke"),  401, 200, 200, 404, 404, 200, 200, 404,
         check=Writes(lambda names, persona: EnrollmentKey.objects.get(pk=names["key_a1"]).revoked_at is not None,
                      True)),
    # --- device groups --------------------------------------------------------------------------------------------
    _row(Call("GET", "/api/v1/groups"),                            401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser=EVERY_GROUP, partner_admin=GROUPS_A, partner_technician=GROUPS_A, viewer=GROUPS_A,
                    org_admin="group_a1 group_a2 group_all_a dynamic_a1", org_user="group_a1 dynamic_a1",
                    outsider="group_b1")),
    _row(Call("GET", "/api/v1/groups/{group_a1}"),                 401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/groups/{group_all_a}"),              401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/groups", {"orgId": "{org_a}", "name": "Matrix"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(DeviceGroup, name="Matrix"), True)),
    _row(Call("POST", "/api/v1/groups", {"siteId": "{site_a1}", "name": "Matrix", "type": "dynamic",
                                         "filterRules": {"field": "osType", "operator": "equals", "value": "linux"}}),
                                                                   401, 201, 201, 403, 403, 201, 201, 400,
         check=Writes(exists(DeviceGroup, name="Matrix", type="dynamic"), True)),
    _row(Call("PATCH", "/api/v1/groups/{group_a1}", {"name": "Renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(field(DeviceGroup, "group_a1", "name"), "Renamed")),
    _row(Call("DELETE", "/api/v1/groups/{group_a1}"),              401, 204, 204, 403, 403, 204, 204, 404,
         check=gone(DeviceGroup, "group_a1")),
    _row(Call("GET", "/api/v1/groups/{group_a1}/devices"),         401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(key="device.id", **dict.fromkeys(PERSONAS[1:], "a1-1"))),
    _row(Call("POST", "/api/v1/groups/{group_a1}/devices", {"deviceIds": ["{device_a1_2}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(group_members("group_a1"), [("a1-1", False), ("a1-2", False)])),
    _row(Call("DELETE", "/api/v1/groups/{group_a1}/devices", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(group_members("group_a1"), [])),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/devices/pin", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(group_members("dynamic_a1"), [("a1-1", True), ("a1-2", True)])),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/devices/unpin", {"deviceIds": ["{device_a1_2}"]}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(group_members("dynamic_a1"), [("a1-1", False)])),
    _row(Call("GET", "/api/v1/groups/{dynamic_a1}/membership-log"), 401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(**dict.fromkeys(PERSONAS[1:], "rule_added_a1"))),
    _row(Call("POST", "/api/v1/groups/preview", {"orgId": "{org_a}",
                                                 "filterRules": {"field": "tags", "operator": "isEmpty"}}),
                                                                   401, 200, 200, 200, 200, 200, 200, 400,
         check=Sees(rows="sample", **dict.fromkeys(["superuser", "partner_admin", "partner_technician", "viewer",
                                                    "org_admin"], "a1-1 a1-2 a2-1 a2-2"), org_user="a1-1 a1-2")),
    _row(Call("POST", "/api/v1/groups/{dynamic_a1}/commands", {"type": "reboot"}),
                                                                   401, 201, 201, 201, 403, 201, 403, 404,
         check=Writes(count(DeviceCommand, device_id="device_a1"), lambda before: before + 1)),
    # --- alerting: rules, alerts, maintenance windows, channels, the outbox -----------------------------------------
    _row(Call("GET", "/api/v1/alert-rules"),                       401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="rule_a rule_partner_a rule_b", partner_admin="rule_a rule_partner_a",
                    partner_technician="rule_a rule_partner_a", viewer="rule_a rule_partner_a", org_admin="rule_a",
                    org_user="", outsider="rule_b")),
    _row(Call("GET", "/api/v1/alert-rules/{rule_a}"),              401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/alert-rules", {"orgId": "{org_a}", "name": "Matrix",
                                              "condition": {"kind": "offline", "minutes": 15}}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(AlertRule, name="Matrix"), True)),
    # A partner-wide rule: partner scope only (an Org Admin does not even see the partner).
    _row(Call("POST", "/api/v1/alert-rules", {"partnerId": "{partner_a}", "name": "Matrix",
                                              "condition": {"kind": "offline", "minutes": 15}}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(AlertRule, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/alert-rules/{rule_a}", {"name": "Renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 404, 404,
         check=Writes(field(AlertRule, "rule_a", "name"), "Renamed")),
    _row(Call("PATCH", "/api/v1/alert-rules/{rule_partner_a}", {"severity": "critical"}),
                                                                   401, 200, 200, 403, 403, 404, 404, 404,
         check=Writes(field(AlertRule, "rule_partner_a", "severity"), "critical")),
    _row(Call("DELETE", "/api/v1/alert-rules/{rule_a}"),           401, 204, 204, 403, 403, 204, 404, 404,
         check=gone(AlertRule, "rule_a")),
    _row(Call("POST", "/api/v1/alert-rules/preview", {"orgId": "{org_a}", "condition": {
        "kind": "rule", "filterRules": {"field": "tags", "operator": "isEmpty"}}}),
                                                                   401, 200, 200, 200, 200, 200, 403, 400,
         check=Sees(rows="sample", key="device.id", **dict.fromkeys(
             ["superuser", "partner_admin", "partner_technician", "viewer", "org_admin"], "a1-1 a1-2 a2-1 a2-2"))),
    _row(Call("GET", "/api/v1/alerts"),                            401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="alert_a1 alert_a2 alert_b1",
                    **dict.fromkeys(["partner_admin", "partner_technician", "viewer", "org_admin"],
                                    "alert_a1 alert_a2"),
                    org_user="alert_a1", outsider="alert_b1")),
    _row(Call("GET", "/api/v1/alerts/summary"),                    401, 200, 200, 200, 200, 200, 200, 200,
         check=Answers(lambda body: body["total"], superuser=3, partner_admin=2, partner_technician=2, viewer=2,
                       org_admin=2, org_user=1, outsider=1)),
    _row(Call("GET", "/api/v1/alerts/{alert_a1}"),                 401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/alerts/{alert_a2}"),                 401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/alerts/{alert_a1}/acknowledge", {"note": "On it."}),
                                                                   401, 200, 200, 200, 403, 200, 200, 404,
         check=Writes(field(Alert, "alert_a1", "status"), "acknowledged")),
    _row(Call("POST", "/api/v1/alerts/{alert_a1}/resolve"),        401, 200, 200, 200, 403, 200, 200, 404,
         check=Writes(field(Alert, "alert_a1", "status"), "resolved")),
    _row(Call("GET", "/api/v1/maintenance-windows"),               401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="window_a1 window_a window_b",
                    **dict.fromkeys(["partner_admin", "partner_technician", "viewer", "org_admin"],
                                    "window_a1 window_a"),
                    org_user="window_a1", outsider="window_b")),
    _row(Call("GET", "/api/v1/maintenance-windows/{window_a1}"),   401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/maintenance-windows/{window_a}"),    401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("POST", "/api/v1/maintenance-windows", {"siteId": "{site_a1}", "name": "Matrix",
                                                      "startsAt": "2030-01-01T02:00:00Z",
                                                      "endsAt": "2030-01-01T04:00:00Z"}),
                                                                   401, 201, 201, 403, 403, 201, 201, 400,
         check=Writes(exists(MaintenanceWindow, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/maintenance-windows/{window_a1}", {"name": "Renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 200, 404,
         check=Writes(field(MaintenanceWindow, "window_a1", "name"), "Renamed")),
    _row(Call("DELETE", "/api/v1/maintenance-windows/{window_a1}"),
                                                                   401, 204, 204, 403, 403, 204, 204, 404,
         check=gone(MaintenanceWindow, "window_a1")),
    # Channels hold addresses and URLs: alerts:write even to read them.
    _row(Call("GET", "/api/v1/notification-channels"),             401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="channel_a channel_partner_a channel_b", partner_admin="channel_a channel_partner_a",
                    partner_technician="", viewer="", org_admin="channel_a", org_user="", outsider="channel_b")),
    _row(Call("GET", "/api/v1/notification-channels/{channel_a}"), 401, 200, 200, 404, 404, 200, 404, 404),
    _row(Call("POST", "/api/v1/notification-channels", {"orgId": "{org_a}", "name": "Matrix", "kind": "email",
                                                        "config": {"to": ["ops@a.example"]}}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(NotificationChannel, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/notification-channels/{channel_a}", {"name": "Renamed"}),
                                                                   401, 200, 200, 404, 404, 200, 404, 404,
         check=Writes(field(NotificationChannel, "channel_a", "name"), "Renamed")),
    _row(Call("DELETE", "/api/v1/notification-channels/{channel_a}"),
                                                                   401, 204, 204, 404, 404, 204, 404, 404,
         check=gone(NotificationChannel, "channel_a")),
    _row(Call("POST", "/api/v1/notification-channels/{channel_a}/test"),
                                                                   401, 200, 200, 404, 404, 200, 404, 404,
         check=Writes(count(Notification, channel_id="channel_a"), lambda before: before + 1)),
    _row(Call("GET", "/api/v1/notifications"),                     401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="notification_a notification_partner_a notification_b",
                    **dict.fromkeys(["partner_admin", "partner_technician", "viewer"],
                                    "notification_a notification_partner_a"),
                    org_admin="notification_a", org_user="", outsider="notification_b")),
    # --- scripts: the library, runs, schedules ----------------------------------------------------------------------
    # The library is read (and run) by whoever holds scripts:read (execute) anywhere in the script's organization,
    # a site will do, or for a partner's script in any of the partner's organizations; writing it needs
    # whole-organization reach, partner scope for the partner's library. A run and a schedule need
    # whole-organization reach, except the runs one started oneself (run_a was started by org_user).
    _row(Call("GET", "/api/v1/scripts"),                           401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="script_a script_partner_a script_b",
                    **dict.fromkeys(["partner_admin", "partner_technician", "viewer", "org_admin", "org_user"],
                                    "script_a script_partner_a"),
                    outsider="script_b")),
    _row(Call("GET", "/api/v1/scripts/{script_a}"),                401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/scripts", {"orgId": "{org_a}", "name": "Matrix", "language": "bash",
                                          "content": "echo matrix\n"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(Script, name="Matrix"), True)),
    _row(Call("POST", "/api/v1/scripts", {"partnerId": "{partner_a}", "name": "Matrix", "language": "bash",
                                          "content": "echo matrix\n"}),
                                                                   401, 201, 201, 403, 403, 400, 403, 400,
         check=Writes(exists(Script, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/scripts/{script_a}", {"name": "Renamed"}),
                                                                   401, 200, 200, 403, 403, 200, 403, 404,
         check=Writes(field(Script, "script_a", "name"), "Renamed")),
    _row(Call("PATCH", "/api/v1/scripts/{script_partner_a}", {"content": "echo changed\n"}),
                                                                   401, 200, 200, 403, 403, 403, 403, 404,
         check=Writes(field(Script, "script_partner_a", "version"), 2)),
    _row(Call("DELETE", "/api/v1/scripts/{script_a}"),             401, 204, 204, 403, 403, 204, 403, 404,
         check=Writes(lambda names, persona: field(Script, "script_a", "archived_at")(names, persona) is not None,
                      True)),
    _row(Call("GET", "/api/v1/scripts/{script_a}/versions"),       401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(key="version", **dict.fromkeys(PERSONAS[1:-1], "v1"))),
    _row(Call("GET", "/api/v1/scripts/{script_a}/versions/{v1}"),  401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("POST", "/api/v1/scripts/{script_a}/run", {"deviceIds": ["{device_a1}"]}),
                                                                   401, 201, 201, 201, 403, 201, 403, 404,
         check=Writes(count(DeviceCommand, device_id="device_a1"), lambda before: before + 1)),
    _row(Call("GET", "/api/v1/script-runs"),                       401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="run_a run_a2 run_b",
                    **dict.fromkeys(["partner_admin", "partner_technician", "viewer", "org_admin"], "run_a run_a2"),
                    org_user="run_a", outsider="run_b")),
    _row(Call("GET", "/api/v1/script-runs/{run_a}"),               401, 200, 200, 200, 200, 200, 200, 404),
    _row(Call("GET", "/api/v1/script-runs/{run_a2}"),              401, 200, 200, 200, 200, 200, 404, 404),
    _row(Call("GET", "/api/v1/script-runs/{run_a}/results"),       401, 200, 200, 200, 200, 200, 200, 404,
         check=Sees(key="deviceId", **dict.fromkeys(PERSONAS[1:-1], "a1-2"))),
    _row(Call("POST", "/api/v1/script-runs/{run_a}/cancel"),       401, 200, 200, 200, 403, 200, 403, 404,
         check=Writes(lambda names, persona: list(
             DeviceCommand.objects.filter(script_run_id=names["run_a"]).values_list("status", flat=True)),
             ["cancelled"])),
    # Schedules are scripts:write throughout, reading included (the spec's table).
    _row(Call("GET", "/api/v1/script-schedules"),                  401, 200, 200, 200, 200, 200, 200, 200,
         check=Sees(superuser="schedule_a schedule_b", partner_admin="schedule_a", partner_technician="",
                    viewer="", org_admin="schedule_a", org_user="", outsider="schedule_b")),
    _row(Call("GET", "/api/v1/script-schedules/{schedule_a}"),     401, 200, 200, 404, 404, 200, 404, 404),
    _row(Call("POST", "/api/v1/script-schedules", {"scriptId": "{script_a}", "siteId": "{site_a1}", "name": "Matrix",
                                                   "cron": "0 3 * * *"}),
                                                                   401, 201, 201, 403, 403, 201, 403, 400,
         check=Writes(exists(ScriptSchedule, name="Matrix"), True)),
    _row(Call("PATCH", "/api/v1/script-schedules/{schedule_a}", {"name": "Renamed"}),
                                                                   401, 200, 200, 404, 404, 200, 404, 404,
         check=Writes(field(ScriptSchedule, "schedule_a", "name"), "Renamed")),
    _row(Call("DELETE", "/api/v1/script-schedules/{schedule_a}"),  401, 204, 204, 404, 404, 204, 404, 404,
         check=gone(ScriptSchedule, "schedule_a")),
]  # fmt: skip


INVENTORY_ROWS = {
    "software": (DeviceSoftware, {"name": "Firefox"}),
    "disks": (DeviceDisk, {"mount_point": "/"}),
    "network-interfaces": (DeviceNetworkInterface, {"interface_name": "eth0"}),
    "registry-entries": (DeviceRegistryEntry, {"registry_path": "HKLM\\Software", "value_name": "x"}),
    "config-entries": (DeviceConfigEntry, {"file_path": "/etc/hosts", "config_key": "localhost"}),
    "connections": (DeviceNetworkConnection, {"protocol": "tcp", "local_addr": "192.0.2.1", "local_port": 22}),
}


@pytest.fixture(scope="module")
def names(module_world, django_db_blocker) -> dict[str, Any]:
    """Every object a row names, name → primary key: the shared world's, and what only this module needs
    (an empty organization and site, a command, a dynamic group, custom roles, one API token per persona …)."""
    w = module_world.world
    with django_db_blocker.unblock():
        device_a1, device_a1_2 = w.devices[w.site_a1]
        device_a1.agent_token_issued_at = timezone.now()
        device_a1.save(update_fields=["agent_token_issued_at"])
        inventory = {  # one row of each kind for a1-1 and for a1-2: a list must show a1-1's only
            kind: [model.objects.create(device=device, org=device.org, **fields) for device in (device_a1, device_a1_2)]
            for kind, (model, fields) in INVENTORY_ROWS.items()
        }
        DeviceGroupMembership.objects.create(group=w.groups["A1 servers"], device=device_a1, org=w.org_a)
        users = module_world.personas
        tokens = {
            f"token_{persona}": auth.issue_api_token(user=user, name="session", lifetime=None)
            for persona, user in users.items()
        }
        memberships = {
            persona: (user.partner_memberships.first() or user.org_memberships.first())
            for persona, user in users.items()
            if persona != "superuser"
        }
        dynamic = _dynamic_group(w)
        alerting = _alerting(w)
        scripting = _scripting(w, users["org_user"])
        spare = auth.issue_api_token(user=users["partner_admin"], name="spare", lifetime=None)[1]
        by_name = {
            "partner_a": w.partner_a.pk,
            "partner_b": w.partner_b.pk,
            "org_a": w.org_a.pk,
            "org_a2": w.org_a2.pk,
            "org_b": w.org_b.pk,
            "org_empty": Organization.objects.create(partner=w.partner_a, name="Empty", slug="empty").pk,
            "site_a1": w.site_a1.pk,
            "site_a2": w.site_a2.pk,
            "site_a2m": w.site_a2_main.pk,
            "site_b1": w.site_b1.pk,
            "site_empty": Site.objects.create(org=w.org_a, name="Empty site").pk,
            "partner_admin_role": module_world.roles["Partner Admin"].pk,
            "partner_technician_role": module_world.roles["Partner Technician"].pk,
            "viewer_role": module_world.roles["Partner Viewer"].pk,
            "org_admin_role": module_world.roles["Org Admin"].pk,
            "org_user_role": module_world.roles["Org User"].pk,
            "custom_role_a": Role.objects.create(partner=w.partner_a, name="Custom A", scope="partner").pk,
            "devices_read": Permission.objects.get(resource="devices", action="read").pk,
            "device_a1": device_a1.pk,
            "device_a1_2": device_a1_2.pk,
            "device_a2": w.devices[w.site_a2][0].pk,
            **{f"{kind}_a1": rows[0].pk for kind, rows in inventory.items()},
            "key_a1": w.keys[w.site_a1].pk,
            "key_a2": w.keys[w.site_a2].pk,
            "key_a2m": w.keys[w.site_a2_main].pk,
            "key_b1": w.keys[w.site_b1].pk,
            "command_a1": DeviceCommand.objects.create(device=device_a1, org=w.org_a, type="reboot").pk,
            **{f"membership_{persona}": membership.pk for persona, membership in memberships.items()},
            "rule_added_a1": DeviceGroupMembershipLog.objects.get(group=dynamic, device=device_a1).pk,
            "group_a1": w.groups["A1 servers"].pk,
            "group_a2": w.groups["A2 servers"].pk,
            "group_a2m": w.groups["A2 main"].pk,
            "group_b1": w.groups["B1 servers"].pk,
            "group_all_a": w.groups["All of A"].pk,
            "dynamic_a1": dynamic.pk,
            "spare_token": spare.pk,
            **alerting,
            **scripting,
            **{persona: user.pk for persona, user in users.items()},
            **{str(permission): permission.pk for permission in Permission.objects.all()},
            **{name: token.pk for name, (_raw, token) in tokens.items()},
            **{device.hostname: device.pk for device in w.all_devices},
            **{
                f"audit_{suffix}": AuditLog.objects.get(org=org).pk
                for suffix, org in (("a", w.org_a), ("a2", w.org_a2), ("b", w.org_b))
            },
        }
        by_name["raw_tokens"] = {persona: tokens[f"token_{persona}"][0] for persona in users}
    return by_name


def _dynamic_group(world) -> DeviceGroup:
    """A dynamic group of site A1 whose rule matches a1-1 (device_a1); a1-2, which it does not match, is pinned."""
    group = DeviceGroup.objects.create(
        org=world.org_a,
        site=world.site_a1,
        name="A1 Linux",
        type="dynamic",
        filter_rules={"field": "osType", "operator": "equals", "value": "linux"},
        fields_used=["osType"],
    )
    refresh_group(group)
    a1_2 = world.devices[world.site_a1][1]
    DeviceGroupMembership.objects.create(group=group, device=a1_2, org=world.org_a, is_pinned=True)
    return group


def _alerting(world) -> dict[str, Any]:
    """Alerting rows, name → id: a rule of org A, a partner-wide rule of partner A and a rule of org B; an alert
    on a1-1 (site A1), a2-1 (site A2) and b1-1; e-mail channels of org A, partner A and org B with one outbox row
    each; maintenance windows of site A1, of all of org A and of site B1."""
    offline = {"kind": "offline", "minutes": 15}
    rules = {
        "rule_a": AlertRule.objects.create(org=world.org_a, name="A offline", condition=offline),
        "rule_partner_a": AlertRule.objects.create(partner=world.partner_a, name="Partner offline", condition=offline),
        "rule_b": AlertRule.objects.create(org=world.org_b, name="B offline", condition=offline),
    }
    alerts = {
        f"alert_{prefix}": Alert.objects.create(
            org_id=device.org_id,
            site_id=device.site_id,
            device=device,
            rule=rule,
            severity="warning",
            title=f"{device.hostname} offline",
        )
        for prefix, device, rule in (
            ("a1", world.devices[world.site_a1][0], rules["rule_a"]),
            ("a2", world.devices[world.site_a2][0], rules["rule_partner_a"]),
            ("b1", world.devices[world.site_b1][0], rules["rule_b"]),
        )
    }
    channels = {
        "channel_a": NotificationChannel.objects.create(
            org=world.org_a, name="A", kind="email", config={"to": ["ops@a.example"]}
        ),
        "channel_partner_a": NotificationChannel.objects.create(
            partner=world.partner_a, name="Partner A", kind="email", config={"to": ["noc@a.example"]}
        ),
        "channel_b": NotificationChannel.objects.create(
            org=world.org_b, name="B", kind="email", config={"to": ["ops@b.example"]}
        ),
    }
    notifications = {
        name.replace("channel", "notification"): Notification.objects.create(
            channel=channel, org_id=channel.org_id, partner_id=channel.partner_id, event="alert.opened", payload={}
        )
        for name, channel in channels.items()
    }
    start = timezone.now() + dt.timedelta(days=30)
    windows = {
        name: MaintenanceWindow.objects.create(
            org=org, site=site, name=name, starts_at=start, ends_at=start + dt.timedelta(hours=2)
        )
        for name, org, site in (
            ("window_a1", world.org_a, world.site_a1),
            ("window_a", world.org_a, None),
            ("window_b", world.org_b, world.site_b1),
        )
    }
    return {name: row.pk for group in (rules, alerts, channels, notifications, windows) for name, row in group.items()}


def _scripting(world, org_user) -> dict[str, Any]:
    """Scripts rows, name → id: scripts of org A, of partner A's library and of org B (version 1 each, ``v1``);
    runs of script_a on a1-2 with its pending command, one started by org_user (run_a) and one by the server
    (run_a2), and one of org B on b1-1; a schedule of script_a on site A1 and one of org B. Written with the ORM,
    as the alerting rows are: the services would add audit rows to the one-per-organization audit log above."""
    scripts = {
        name: Script.objects.create(
            **{owner_field: owner},
            name=name,
            language="python",
            os_types=["linux", "windows", "macos"],
            content="print('hi')\n",
        )
        for name, owner_field, owner in (
            ("script_a", "org", world.org_a),
            ("script_partner_a", "partner", world.partner_a),
            ("script_b", "org", world.org_b),
        )
    }
    ScriptVersion.objects.bulk_create(
        ScriptVersion(script=script, version=1, content=script.content, language=script.language, timeout_seconds=300)
        for script in scripts.values()
    )
    # On a1-2: a1-1's command list is checked above to hold command_a1 alone.
    a1, b1 = world.devices[world.site_a1][1], world.devices[world.site_b1][0]
    runs = {}
    for name, script, device, requested_by in (
        ("run_a", "script_a", a1, org_user),
        ("run_a2", "script_a", a1, None),
        ("run_b", "script_b", b1, None),
    ):
        runs[name] = ScriptRun.objects.create(
            org_id=device.org_id,
            script=scripts[script],
            version=1,
            target={"deviceIds": [str(device.pk)]},
            trigger="api",
            requested_by=requested_by,
            queued=1,
        )
        DeviceCommand.objects.create(
            device=device,
            org_id=device.org_id,
            type="script",
            script_run=runs[name],
            payload={"language": "python", "content": "print('hi')\n", "scriptRunId": str(runs[name].pk)},
        )
    schedules = {
        "schedule_a": ScriptSchedule.objects.create(
            org=world.org_a, script=scripts["script_a"], site=world.site_a1, name="A nightly", cron="0 3 * * *"
        ),
        "schedule_b": ScriptSchedule.objects.create(
            org=world.org_b, script=scripts["script_b"], name="B nightly", cron="0 3 * * *"
        ),
    }
    return {"v1": 1, **{name: row.pk for group in (scripts, runs, schedules) for name, row in group.items()}}


def _fill(value, names):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, names) for item in value]
    return value


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("call", "expected", "check"), MATRIX, ids=[f"{c.method} {c.path}" for c, _, _ in MATRIX])
def test_each_persona_gets_exactly_the_status_the_rules_say(db, names, persona, call, expected, check):
    client = APIClient()
    if persona != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {names['raw_tokens'][persona]}")
    before = check.before(names, persona) if check else None
    response = getattr(client, call.method.lower())(_fill(call.path, names), _fill(call.body, names), format="json")
    assert response.status_code == expected[persona], response.content
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "message", "fields"}
    if check:
        check.after(names, persona, response, before)


@functools.cache
def documented_operations() -> dict[tuple[str, str], str]:
    """(METHOD, path template) → operationId of every operation of the technician API in the OpenAPI document."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    document = json.loads(OpenApiJsonRenderer().render(schema))
    return {
        (method.upper(), path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and not path.startswith(AGENT_PREFIX) and "agent" not in operation.get("tags", ())
    }


def test_every_documented_operation_has_a_row_and_every_row_is_documented():
    """A new operation without a row here fails this test, and so does a row for an operation that is gone."""
    rows = {call.operation for call, _, _ in MATRIX}
    documented = set(documented_operations())
    assert {"without a row": documented - rows, "not documented": rows - documented} == {
        "without a row": set(),
        "not documented": set(),
    }


# POSTs that read: they answer rows, checked like a list's.
READS_SENT_AS_POST = {("POST", "/api/v1/groups/preview"), ("POST", "/api/v1/alert-rules/preview")}


def test_every_list_row_says_what_each_persona_sees_and_every_write_row_checks_the_database():
    documented = documented_operations()
    unchecked = [
        f"{call.method} {call.path}"
        for call, _, check in MATRIX
        if (call.method != "GET" and call.operation not in READS_SENT_AS_POST and not isinstance(check, Writes))
        or (
            (documented.get(call.operation, "").endswith("_list") or call.operation in READS_SENT_AS_POST)
            and not isinstance(check, Sees)
        )
    ]
    assert unchecked == []


def test_put_is_not_an_operation_of_the_technician_api():
    """Every resource documents PATCH for changes; DRF's default PUT is switched off in rmm.api.ScopedViewSet."""
    assert {path for method, path in documented_operations() if method == "PUT"} == set()


DETAIL_PATHS = sorted({call.operation[1]: call.path for call, _, _ in MATRIX if "{" in call.path}.values())


@pytest.mark.parametrize("path", DETAIL_PATHS)
def test_put_on_a_detail_path_answers_405_in_the_error_shape(db, names, path):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {names['raw_tokens']['superuser']}")
    response = client.put(_fill(path, names), {}, format="json")
    assert response.status_code == 405, response.content
    assert response.json()["error"] == "method_not_allowed"
    assert set(response.json()) >= {"error", "message", "fields"}
