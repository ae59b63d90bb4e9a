"""Roles, memberships and users over the API: nobody hands out more than they hold, built-in roles never
change, and people shared with other tenants are out of one tenant's hands."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import OrganizationUser, PartnerUser, Role, RolePermission, User

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


@pytest.fixture
def helpdesk_lead(world, roles, permissions):
    """A partner member who manages people but only reads devices."""
    role = Role.objects.create(name="Helpdesk lead", scope="partner", partner=world.partner_a)
    for perm in ("users:read", "users:write", "devices:read"):
        RolePermission.objects.create(role=role, permission=permissions[perm])
    return _member(world, role)


def _member(world, role):
    user = User.objects.create_user("lead@example.com", "pw-1234567890", is_staff=True)
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=role, org_access="all")
    return user


def new_role(client, partner, perms, name="Patch crew"):
    return client.post(
        "/api/v1/roles",
        {"partnerId": str(partner.pk), "name": name, "scope": "partner", "permissions": perms},
        format="json",
    )


def test_the_permission_catalogue_is_the_registry(partner_technician):
    response = client_for(partner_technician).get("/api/v1/permissions")
    assert response.status_code == 200
    assert {f"{p['resource']}:{p['action']}" for p in response.json()} >= {"devices:execute", "*:*", "audit:export"}


def test_a_partner_admin_defines_a_custom_role(world, partner_admin):
    response = new_role(client_for(partner_admin), world.partner_a, ["devices:read", "devices:execute"])
    assert response.status_code == 201, response.content
    role = Role.objects.get(pk=response.json()["id"])
    assert role.partner == world.partner_a and not role.is_system
    assert sorted(str(p) for p in role.permissions.all()) == ["devices:execute", "devices:read"]
    assert response.json()["permissions"] == ["devices:execute", "devices:read"]


def test_nobody_defines_a_role_with_permissions_they_do_not_hold(world, helpdesk_lead):
    client = client_for(helpdesk_lead)
    assert error_of(new_role(client, world.partner_a, ["devices:read", "devices:delete"]), 403) == "escalation_refused"
    assert error_of(new_role(client, world.partner_a, ["*:*"]), 403) == "escalation_refused"
    assert not Role.objects.filter(name="Patch crew").exists()
    assert new_role(client, world.partner_a, ["devices:read"]).status_code == 201
    assert [str(p) for p in Role.objects.get(name="Patch crew").permissions.all()] == ["devices:read"]


def test_an_unknown_permission_is_a_field_error(world, partner_admin):
    response = new_role(client_for(partner_admin), world.partner_a, ["devices:fly"])
    assert error_of(response, 400) == "validation_error"
    assert "devices:fly" in response.json()["fields"]["permissions"][0]


def test_built_in_roles_cannot_be_changed_or_deleted_even_by_a_superuser(roles, superuser):
    client = client_for(superuser)
    role = roles["Partner Admin"]
    assert error_of(client.patch(f"/api/v1/roles/{role.pk}", {"description": "x"}, format="json"), 403) == (
        "system_role_read_only"
    )
    assert error_of(client.delete(f"/api/v1/roles/{role.pk}"), 403) == "system_role_read_only"
    assert Role.objects.get(pk=role.pk).description == role.description


def test_an_org_admin_cannot_change_a_partner_wide_role(world, partner_admin, org_admin):
    role_id = new_role(client_for(partner_admin), world.partner_a, ["devices:read"]).json()["id"]
    response = client_for(org_admin).patch(f"/api/v1/roles/{role_id}", {"permissions": ["*:*"]}, format="json")
    assert error_of(response, 403) == "permission_denied"
    assert [str(p) for p in Role.objects.get(pk=role_id).permissions.all()] == ["devices:read"]


def test_a_role_in_use_cannot_be_deleted(world, partner_admin, helpdesk_lead):
    role = Role.objects.get(name="Helpdesk lead")
    assert error_of(client_for(partner_admin).delete(f"/api/v1/roles/{role.pk}"), 409) == "role_in_use"
    assert Role.objects.filter(pk=role.pk).exists()


def test_nobody_assigns_a_role_more_powerful_than_their_own(world, roles, helpdesk_lead, org_user):
    client = client_for(helpdesk_lead)
    body = {"partnerId": str(world.partner_a.pk), "userId": str(org_user.pk), "orgAccess": "all"}
    refused = client.post("/api/v1/partner-users", {**body, "roleId": str(roles["Partner Admin"].pk)}, format="json")
    assert error_of(refused, 403) == "escalation_refused"
    assert not PartnerUser.objects.filter(user=org_user).exists()
    helpdesk = Role.objects.get(name="Helpdesk lead")
    allowed = client.post("/api/v1/partner-users", {**body, "roleId": str(helpdesk.pk)}, format="json")
    assert allowed.status_code == 201, allowed.content
    assert PartnerUser.objects.get(user=org_user).role == helpdesk


def test_a_user_out_of_reach_cannot_be_named_in_a_membership(world, roles, partner_admin, outsider):
    body = {
        "partnerId": str(world.partner_a.pk),
        "userId": str(outsider.pk),
        "roleId": str(roles["Partner Viewer"].pk),
        "orgAccess": "all",
    }
    response = client_for(partner_admin).post("/api/v1/partner-users", body, format="json")
    assert error_of(response, 400) == "validation_error"
    assert "userId" in response.json()["fields"]
    assert not PartnerUser.objects.filter(partner=world.partner_a, user=outsider).exists()


def test_an_org_admin_invites_an_org_user_restricted_to_one_site(world, roles, org_admin):
    response = client_for(org_admin).post(
        "/api/v1/users",
        {
            "email": "it@acme.example",
            "password": "a long enough passphrase",
            "orgId": str(world.org_a.pk),
            "roleId": str(roles["Org User"].pk),
            "siteIds": [str(world.site_a1.pk)],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    membership = OrganizationUser.objects.get(user__email="it@acme.example")
    assert list(membership.sites.all()) == [world.site_a1]
    assert membership.user.status == "active" and membership.user.check_password("a long enough passphrase")


def test_an_org_admin_cannot_invite_into_a_site_of_another_organization(world, roles, org_admin):
    response = client_for(org_admin).post(
        "/api/v1/users",
        {
            "email": "it@acme.example",
            "orgId": str(world.org_a.pk),
            "roleId": str(roles["Org User"].pk),
            "siteIds": [str(world.site_a2_main.pk)],
        },
        format="json",
    )
    assert error_of(response, 400) == "validation_error"
    assert not User.objects.filter(email="it@acme.example").exists()


def test_inviting_a_user_creates_them_with_their_membership(world, roles, partner_admin, outsider):
    response = client_for(partner_admin).post(
        "/api/v1/users",
        {
            "email": "Fresh.Tech@Example.com",
            "name": "Fresh",
            "partnerId": str(world.partner_a.pk),
            "roleId": str(roles["Partner Technician"].pk),
            "orgAccess": "selected",
            "organizationIds": [str(world.org_a.pk)],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    user = User.objects.get(email="fresh.tech@example.com")
    assert user.status == "invited" and not user.has_usable_password()
    membership = PartnerUser.objects.get(user=user)
    assert list(membership.selected_organizations.all()) == [world.org_a]
    assert error_of(client_for(outsider).get(f"/api/v1/users/{user.pk}"), 404) == "not_found"


def test_an_invite_into_another_partner_is_answered_as_if_it_did_not_exist(world, roles, outsider):
    response = client_for(outsider).post(
        "/api/v1/users",
        {"email": "x@example.com", "partnerId": str(world.partner_a.pk), "roleId": str(roles["Partner Admin"].pk)},
        format="json",
    )
    assert error_of(response, 400) == "validation_error"
    assert "partnerId" in response.json()["fields"]
    assert not User.objects.filter(email="x@example.com").exists()


def test_a_person_shared_with_another_tenant_cannot_be_disabled_by_one_of_them(world, roles, org_user, outsider):
    PartnerUser.objects.create(partner=world.partner_b, user=org_user, role=roles["Partner Viewer"], org_access="all")
    response = client_for(outsider).patch(f"/api/v1/users/{org_user.pk}", {"status": "disabled"}, format="json")
    assert error_of(response, 409) == "user_beyond_your_authority"
    org_user.refresh_from_db()
    assert org_user.status == "active"


def test_it_lists_only_people_in_reach(world, partner_admin, org_user, outsider):
    emails = {row["email"] for row in client_for(outsider).get("/api/v1/users").json()}
    assert org_user.email not in emails and partner_admin.email not in emails
    assert outsider.email in emails


def test_an_org_admin_cannot_take_over_a_partner_admin_who_also_belongs_to_their_org(
    world, roles, partner_admin, org_admin
):
    OrganizationUser.objects.create(org=world.org_a, user=partner_admin, role=roles["Org User"])
    response = client_for(org_admin).patch(f"/api/v1/users/{partner_admin.pk}", {"status": "disabled"}, format="json")
    assert error_of(response, 409) == "user_beyond_your_authority"
    partner_admin.refresh_from_db()
    assert partner_admin.status == "active"
