"""Memberships obey one set of rules whichever door they come through: the technician API, the admin (the test client
posting the admin's forms) and the ``grant_access`` command all go through accounts.services, meet the same
refusals, save nothing when refused, and write the same audit action names."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.models import AuditLog, OrganizationUser, PartnerUser, Role, User
from tests.doors import actions_since, admin_as, admin_url, api_as, form_errors, inline_data

pytestmark = pytest.mark.django_db

SELECTED_ONLY = "Organizations can only be listed with org_access 'selected'."


@pytest.fixture
def member_of_org_a2(world, make_org_member):
    """``member_of_org_a2(email)``: a person in partner A's reach (an Org User of org A2), to be granted more."""
    return lambda email: make_org_member(email, world.org_a2, "Org User")


# --- organizations listed with org_access "all" ---------------------------------------------------------------


@pytest.mark.parametrize("persona", ["partner_admin", "superuser"])
def test_organizations_listed_with_org_access_all_are_refused_by_the_api(
    request, world, roles, member_of_org_a2, persona
):
    newcomer = member_of_org_a2("newcomer@a.example")
    body = {
        "partnerId": str(world.partner_a.pk),
        "userId": str(newcomer.pk),
        "roleId": str(roles["Partner Technician"].pk),
        "orgAccess": "all",
        "organizationIds": [str(world.org_a.pk)],
    }

    response = api_as(request.getfixturevalue(persona)).post("/api/v1/partner-users", body, format="json")

    assert response.status_code == 400
    assert (response.json()["error"], response.json()["message"]) == ("validation_error", SELECTED_ONLY)
    assert response.json()["fields"] == {"organizationIds": [SELECTED_ONLY]}
    assert not PartnerUser.objects.filter(user=newcomer).exists()
    assert not AuditLog.objects.filter(action__startswith="partner_user.").exists()


@pytest.mark.parametrize("persona", ["partner_admin", "superuser"])
def test_organizations_listed_with_org_access_all_are_refused_by_the_admin(
    request, world, roles, member_of_org_a2, persona
):
    newcomer = member_of_org_a2("newcomer@a.example")
    data = {
        "partner": world.partner_a.pk,
        "user": newcomer.pk,
        "role": roles["Partner Technician"].pk,
        "org_access": "all",
        "selected_organizations": [world.org_a.pk],
    }

    response = admin_as(request.getfixturevalue(persona)).post(admin_url(PartnerUser, "add"), data)

    assert response.context["adminform"].form.errors["selected_organizations"] == [SELECTED_ONLY]
    assert not PartnerUser.objects.filter(user=newcomer).exists()
    assert not AuditLog.objects.filter(action__startswith="partner_user.").exists()


def test_a_selected_membership_changed_to_all_keeping_its_organizations_is_refused_at_both_doors(
    world, roles, make_user, superuser
):
    member = make_user("member@a.example")
    membership = PartnerUser.objects.create(
        partner=world.partner_a, user=member, role=roles["Partner Technician"], org_access="selected"
    )
    membership.selected_organizations.set([world.org_a])

    api = api_as(superuser).patch(f"/api/v1/partner-users/{membership.pk}", {"orgAccess": "all"}, format="json")
    admin = admin_as(superuser).post(
        admin_url(PartnerUser, "change", membership.pk),
        {"role": roles["Partner Technician"].pk, "org_access": "all", "selected_organizations": [world.org_a.pk]},
    )

    assert api.status_code == 400 and api.json()["message"] == SELECTED_ONLY
    assert SELECTED_ONLY in [message for messages in form_errors(admin).values() for message in messages]
    membership.refresh_from_db()
    assert membership.org_access == "selected"
    assert list(membership.selected_organizations.all()) == [world.org_a]


# --- one action name per membership change, whichever door ---------------------------------------------------


def test_partner_memberships_made_changed_and_removed_write_the_same_actions_through_both_doors(
    world, roles, member_of_org_a2, partner_admin
):
    api, admin = api_as(partner_admin), admin_as(partner_admin)
    by_api, by_admin = member_of_org_a2("by.api@a.example"), member_of_org_a2("by.admin@a.example")
    technician, viewer = roles["Partner Technician"], roles["Partner Viewer"]

    mark = AuditLog.objects.count()
    body = {"partnerId": str(world.partner_a.pk), "userId": str(by_api.pk), "roleId": str(technician.pk)}
    created = api.post("/api/v1/partner-users", body | {"orgAccess": "all"}, format="json")
    row = created.json()["id"]
    updated = api.patch(f"/api/v1/partner-users/{row}", {"roleId": str(viewer.pk)}, format="json")
    deleted = api.delete(f"/api/v1/partner-users/{row}")
    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    data = {"partner": world.partner_a.pk, "user": by_admin.pk, "role": technician.pk, "org_access": "all"}
    added = admin.post(admin_url(PartnerUser, "add"), data)
    membership = PartnerUser.objects.get(user=by_admin)
    changed = admin.post(admin_url(PartnerUser, "change", membership.pk), {"role": viewer.pk, "org_access": "all"})
    removed = admin.post(admin_url(PartnerUser, "delete", membership.pk), {"post": "yes"})
    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    assert not PartnerUser.objects.filter(user=by_admin).exists()
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["partner_user.create", "partner_user.update", "partner_user.delete"]
    api_update, admin_update = AuditLog.objects.filter(action="partner_user.update").order_by("created_at", "pk")
    role_change = {"from": {"id": str(technician.pk), "name": technician.name}}
    role_change["to"] = {"id": str(viewer.pk), "name": viewer.name}
    assert api_update.details == {"role": role_change}
    assert admin_update.details == {"role": role_change, "via": "admin"}


def test_organization_memberships_made_changed_and_removed_write_the_same_actions_through_both_doors(
    world, roles, member_of_org_a2, partner_admin
):
    api, admin = api_as(partner_admin), admin_as(partner_admin)
    by_api, by_admin = member_of_org_a2("by.api@a.example"), member_of_org_a2("by.admin@a.example")
    org_user_role = roles["Org User"]

    mark = AuditLog.objects.count()
    body = {"orgId": str(world.org_a.pk), "userId": str(by_api.pk), "roleId": str(org_user_role.pk)}
    created = api.post("/api/v1/organization-users", body, format="json")
    row = created.json()["id"]
    updated = api.patch(f"/api/v1/organization-users/{row}", {"siteIds": [str(world.site_a1.pk)]}, format="json")
    deleted = api.delete(f"/api/v1/organization-users/{row}")
    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    added = admin.post(
        admin_url(OrganizationUser, "add"), {"org": world.org_a.pk, "user": by_admin.pk, "role": org_user_role.pk}
    )
    membership = OrganizationUser.objects.get(user=by_admin, org=world.org_a)
    changed = admin.post(
        admin_url(OrganizationUser, "change", membership.pk), {"role": org_user_role.pk, "sites": [world.site_a1.pk]}
    )
    assert list(OrganizationUser.objects.get(pk=membership.pk).sites.all()) == [world.site_a1]
    removed = admin.post(admin_url(OrganizationUser, "delete", membership.pk), {"post": "yes"})
    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    through_admin = actions_since(mark)

    expected = ["organization_user.create", "organization_user.update", "organization_user.delete"]
    assert through_api == through_admin == expected
    for entry in AuditLog.objects.filter(action="organization_user.update"):
        assert entry.details["siteIds"] == {"added": [str(world.site_a1.pk)], "removed": []}
        assert (entry.actor_user, entry.org_id) == (partner_admin, world.org_a.pk)


# --- grant_access ---------------------------------------------------------------------------------------------


def test_grant_access_writes_the_audit_rows_of_the_apis_membership_writes(world, roles, make_user):
    person = make_user("person@a.example")

    call_command("grant_access", person.email, partner="partner-a", role="Partner Technician", orgs="org-a")
    call_command("grant_access", person.email, partner="partner-a", role="Partner Technician", all_orgs=True)
    call_command("grant_access", person.email, partner="partner-a", org="org-a2", role="Org User")

    rows = AuditLog.objects.filter(target_type__in=["partneruser", "organizationuser"]).order_by("created_at", "pk")
    assert [row.action for row in rows] == ["partner_user.create", "partner_user.update", "organization_user.create"]
    created, updated, org_membership = rows
    assert created.details["orgAccess"] == {"from": None, "to": "selected"}
    assert created.details["organizationIds"] == {"added": [str(world.org_a.pk)], "removed": []}
    assert updated.details["orgAccess"] == {"from": "selected", "to": "all"}
    assert {row.details["via"] for row in rows} == {"grant_access"}
    assert org_membership.org_id == world.org_a2.pk
    assert PartnerUser.objects.get(user=person).org_access == "all"


# --- people -----------------------------------------------------------------------------------------------------


def test_a_person_changed_and_deleted_through_either_door_writes_the_same_actions(world, member_of_org_a2, superuser):
    api, admin = api_as(superuser), admin_as(superuser)
    by_api, by_admin = member_of_org_a2("by.api@a.example"), member_of_org_a2("by.admin@a.example")

    mark = AuditLog.objects.count()
    updated = api.patch(f"/api/v1/users/{by_api.pk}", {"name": "Renamed", "status": "disabled"}, format="json")
    deleted = api.delete(f"/api/v1/users/{by_api.pk}")
    assert (updated.status_code, deleted.status_code) == (200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    page = admin.get(admin_url(User, "change", by_admin.pk))
    changed = admin.post(
        admin_url(User, "change", by_admin.pk),
        {"email": by_admin.email, "name": "Renamed", "status": "disabled", "is_staff": "on", **inline_data(page)},
    )
    assert User.objects.get(pk=by_admin.pk).name == "Renamed"
    removed = admin.post(admin_url(User, "delete", by_admin.pk), {"post": "yes"})
    assert (changed.status_code, removed.status_code) == (302, 302)
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["user.update", "user.delete"]
    assert not User.objects.filter(pk__in=[by_api.pk, by_admin.pk]).exists()
    for entry in AuditLog.objects.filter(action="user.update"):
        assert entry.details["name"] == {"from": "", "to": "Renamed"}
        assert entry.details["status"] == {"from": "active", "to": "disabled"}


def test_nobody_deletes_themself_through_either_door_operators_included(superuser):
    api = api_as(superuser).delete(f"/api/v1/users/{superuser.pk}")
    admin = admin_as(superuser).post(admin_url(User, "delete", superuser.pk), {"post": "yes"})

    assert api.status_code == 409 and api.json()["error"] == "cannot_delete_self"
    assert admin.status_code == 403
    assert User.objects.filter(pk=superuser.pk).exists()
    assert not AuditLog.objects.filter(action="user.delete").exists()


# --- roles ------------------------------------------------------------------------------------------------------


def role_form(partner, name: str, perms: list, initial: int = 0) -> dict:
    data = {
        "name": name,
        "scope": "partner",
        "partner": partner.pk,
        "description": "",
        "role_permissions-TOTAL_FORMS": str(len(perms)),
        "role_permissions-INITIAL_FORMS": str(initial),
    }
    data.update({f"role_permissions-{n}-permission": perm.pk for n, perm in enumerate(perms)})
    return data


def test_a_role_defined_changed_and_deleted_through_either_door_writes_the_same_actions(
    world, permissions, partner_admin
):
    api, admin = api_as(partner_admin), admin_as(partner_admin)

    mark = AuditLog.objects.count()
    body = {"name": "Readers", "scope": "partner", "partnerId": str(world.partner_a.pk), "permissions": []}
    created = api.post("/api/v1/roles", body, format="json")
    row = created.json()["id"]
    updated = api.patch(f"/api/v1/roles/{row}", {"name": "Readers 2"}, format="json")
    deleted = api.delete(f"/api/v1/roles/{row}")
    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    added = admin.post(admin_url(Role, "add"), role_form(world.partner_a, "Readers", []))
    role = Role.objects.get(partner=world.partner_a, name="Readers")
    changed = admin.post(admin_url(Role, "change", role.pk), role_form(world.partner_a, "Readers 2", []))
    assert Role.objects.get(pk=role.pk).name == "Readers 2"
    removed = admin.post(admin_url(Role, "delete", role.pk), {"post": "yes"})
    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["role.create", "role.update", "role.delete"]
    assert [entry.details["changed"] for entry in AuditLog.objects.filter(action="role.update")] == [["name"], ["name"]]


def test_a_role_that_members_hold_is_not_deleted_through_either_door(world, roles, permissions, partner_admin):
    role = Role.objects.create(partner=world.partner_a, name="Held", scope="organization")
    OrganizationUser.objects.create(org=world.org_a, user=partner_admin, role=role)

    api = api_as(partner_admin).delete(f"/api/v1/roles/{role.pk}")
    admin = admin_as(partner_admin).post(admin_url(Role, "delete", role.pk), {"post": "yes"})

    assert api.status_code == 409 and api.json()["error"] == "role_in_use"
    assert admin.status_code == 200  # Django's page: the memberships are protected objects
    assert Role.objects.filter(pk=role.pk).exists()
    assert not AuditLog.objects.filter(action="role.delete").exists()
