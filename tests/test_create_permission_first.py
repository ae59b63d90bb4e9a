"""A create by someone who holds its permission nowhere answers 403 before the body is looked at (ScopedViewSet):
a viewer learns "not yours to do", never which fields it got wrong or which ids exist."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog, PartnerUser, Role
from devices.models import DeviceGroup
from orgs.models import EnrollmentKey, Organization, Site

pytestmark = pytest.mark.django_db

# Every collection a technician can POST to, with the permission it takes.
CREATES = [
    "/api/v1/orgs",  # organizations:write
    "/api/v1/sites",  # sites:write
    "/api/v1/enrollment-keys",  # devices:write
    "/api/v1/groups",  # devices:write
    "/api/v1/roles",  # users:write
    "/api/v1/users",  # users:invite
    "/api/v1/partner-users",  # users:write
    "/api/v1/organization-users",  # users:write
]

BODIES = [
    {},
    {"siteId": "not-a-uuid", "name": ""},
    {"siteId": "00000000-0000-0000-0000-000000000000", "name": "k", "orgId": "00000000-0000-0000-0000-000000000000"},
]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Organization, Site, EnrollmentKey, DeviceGroup, Role, AuditLog))


@pytest.mark.parametrize("body", BODIES, ids=["empty", "invalid", "unknown-ids"])
@pytest.mark.parametrize("path", CREATES)
def test_viewer_gets_403_on_create_whatever_the_body(viewer, path, body):
    before = row_counts()
    response = client_for(viewer).post(path, body, format="json")
    assert response.status_code == 403, (path, response.content)
    assert response.json() == {
        "error": "permission_denied",
        "message": "You do not have permission to perform this action.",
        "fields": {},
    }
    assert row_counts() == before


def test_viewer_gets_403_even_for_a_body_that_is_not_json(viewer):
    response = client_for(viewer).generic(
        "POST", "/api/v1/enrollment-keys", "{not json", content_type="application/json"
    )
    assert response.status_code == 403, response.content


@pytest.mark.parametrize("path", ["/api/v1/enrollment-keys", "/api/v1/groups", "/api/v1/sites"])
def test_technician_without_write_gets_403_on_create_before_validation(partner_technician, path):
    response = client_for(partner_technician).post(path, {}, format="json")
    assert response.status_code == 403, response.content


@pytest.mark.parametrize("path", ["/api/v1/enrollment-keys", "/api/v1/groups", "/api/v1/sites", "/api/v1/orgs"])
def test_who_may_create_still_gets_400_naming_the_fields(partner_admin, path):
    response = client_for(partner_admin).post(path, {}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
    assert response.json()["fields"]


def test_an_org_user_with_write_on_one_site_still_reaches_validation(org_user, world):
    # Holding devices:write somewhere is enough to be asked for a valid body; the site is checked afterwards.
    response = client_for(org_user).post(
        "/api/v1/enrollment-keys", {"siteId": str(world.site_a2.pk), "name": "k"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "siteId" in response.json()["fields"]


def test_a_group_preview_stays_open_to_readers(viewer, world):
    # groups/preview is a POST that needs devices:read only: the early refusal must not catch it.
    response = client_for(viewer).post(
        "/api/v1/groups/preview", {"orgId": str(world.org_a.pk), "filterRules": {"all": []}}, format="json"
    )
    assert response.status_code != 403, response.content


def test_a_role_with_invite_but_not_write_reaches_the_invitation(world, permissions, make_user):
    # Creating a user is an invitation: users:invite is what the early check asks for, not users:write.
    role = Role.objects.create(name="Inviter", scope=Role.Scope.PARTNER)
    role.permissions.set([permissions["users:invite"], permissions["users:read"]])
    inviter = make_user("inviter@example.com")
    PartnerUser.objects.create(partner=world.partner_a, user=inviter, role=role, org_access="all")

    response = client_for(inviter).post("/api/v1/users", {}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
