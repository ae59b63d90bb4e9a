"""Nobody widens a reach beyond their own (issue 10, item 1), through the API, the admin or ``grant_access``.

A Partner Admin whose membership selects one organization (``selected_admin``: org A of partner A) holds ``*:*``
at partner level, but only in org A: it must not give itself or anyone else ``all`` or org A2, nor change or remove
a member reaching more than it does, nor read which organizations out of its reach a membership selects. The
full-reach Partner Admin (``partner_admin``, ``all``) still does every one of these things. Audit rows of those
changes say what changed.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework.test import APIClient

from accounts import services
from accounts.models import AuditLog, OrganizationUser, PartnerUser, Role, RolePermission, User
from rmm import authz
from tests.doors import admin_url

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    """An API client for ``user``, loaded afresh so its reach is computed anew (it is cached on the object)."""
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))
    return client


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def membership(user) -> PartnerUser:
    return PartnerUser.objects.get(user=user)


def reach_of(user) -> tuple[str, set]:
    row = membership(user)
    return row.org_access, set(row.selected_organizations.all())


def last_audit(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).order_by("-created_at").first()


@pytest.fixture
def selected_admin(world, make_partner_member):
    """A Partner Admin of partner A whose membership selects org A only."""
    return make_partner_member("selected.admin@a.example", world.partner_a, "Partner Admin", "selected", [world.org_a])


@pytest.fixture
def org_a_technician(world, make_partner_member):
    """A Partner Technician of partner A serving org A only: inside the selected admin's reach."""
    return make_partner_member("tech.a@a.example", world.partner_a, "Partner Technician", "selected", [world.org_a])


@pytest.fixture
def two_org_technician(world, make_partner_member):
    """A Partner Technician of partner A serving org A and org A2: beyond the selected admin's reach."""
    return make_partner_member(
        "tech.a.a2@a.example", world.partner_a, "Partner Technician", "selected", [world.org_a, world.org_a2]
    )


def a2_device(world):
    return world.devices[world.site_a2_main][0]


# --- the API ------------------------------------------------------------------------------------------------------


def test_a_selected_partner_admin_cannot_widen_its_own_membership_to_all(world, selected_admin):
    own = membership(selected_admin)

    response = api(selected_admin).patch(
        f"/api/v1/partner-users/{own.pk}", {"orgAccess": "all", "organizationIds": []}, format="json"
    )

    assert error_of(response, 403) == "escalation_refused"
    assert reach_of(selected_admin) == ("selected", {world.org_a})
    assert error_of(api(selected_admin).get(f"/api/v1/devices/{a2_device(world).pk}"), 404) == "not_found"


def test_a_selected_partner_admin_cannot_add_an_organization_out_of_its_reach_to_its_membership(world, selected_admin):
    own = membership(selected_admin)
    body = {"organizationIds": [str(world.org_a.pk), str(world.org_a2.pk)]}

    response = api(selected_admin).patch(f"/api/v1/partner-users/{own.pk}", body, format="json")

    assert error_of(response, 400) == "validation_error"
    assert "organizationIds" in response.json()["fields"]
    assert reach_of(selected_admin) == ("selected", {world.org_a})


def test_a_selected_partner_admin_cannot_invite_a_user_reaching_every_organization(world, roles, selected_admin):
    body = {
        "email": "wide@a.example",
        "partnerId": str(world.partner_a.pk),
        "roleId": str(roles["Partner Technician"].pk),
        "orgAccess": "all",
    }

    response = api(selected_admin).post("/api/v1/users", body, format="json")

    assert error_of(response, 403) == "escalation_refused"
    assert "every organization" in response.json()["message"]
    assert not User.objects.filter(email="wide@a.example").exists()


def test_a_selected_partner_admin_invites_a_user_within_its_own_reach(world, roles, selected_admin):
    body = {
        "email": "narrow@a.example",
        "partnerId": str(world.partner_a.pk),
        "roleId": str(roles["Partner Admin"].pk),
        "orgAccess": "selected",
        "organizationIds": [str(world.org_a.pk)],
    }

    response = api(selected_admin).post("/api/v1/users", body, format="json")

    assert response.status_code == 201, response.content
    assert reach_of(User.objects.get(email="narrow@a.example")) == ("selected", {world.org_a})


def test_a_selected_partner_admin_cannot_widen_another_members_reach(world, selected_admin, org_a_technician):
    row = membership(org_a_technician)

    response = api(selected_admin).patch(
        f"/api/v1/partner-users/{row.pk}", {"orgAccess": "all", "organizationIds": []}, format="json"
    )

    assert error_of(response, 403) == "escalation_refused"
    assert reach_of(org_a_technician) == ("selected", {world.org_a})


def test_a_selected_partner_admin_cannot_change_or_delete_a_member_reaching_more(
    world, roles, selected_admin, partner_technician, two_org_technician
):
    client = api(selected_admin)
    narrowing = {"orgAccess": "selected", "organizationIds": [str(world.org_a.pk)]}

    for member in (partner_technician, two_org_technician):
        row = membership(member)
        before = reach_of(member)
        assert error_of(client.patch(f"/api/v1/partner-users/{row.pk}", narrowing, format="json"), 403) == (
            "escalation_refused"
        )
        assert error_of(client.delete(f"/api/v1/partner-users/{row.pk}"), 403) == "escalation_refused"
        patch_user = client.patch(f"/api/v1/users/{member.pk}", {"status": "disabled"}, format="json")
        assert error_of(patch_user, 409) == "user_beyond_your_authority"
        assert error_of(client.delete(f"/api/v1/users/{member.pk}"), 409) == "user_beyond_your_authority"
        assert reach_of(member) == before
        assert User.objects.get(pk=member.pk).status == "active"


def test_a_disabled_member_reaching_more_cannot_be_enabled_by_a_selected_partner_admin(
    world, selected_admin, partner_technician
):
    User.objects.filter(pk=partner_technician.pk).update(status="disabled")

    response = api(selected_admin).patch(f"/api/v1/users/{partner_technician.pk}", {"status": "active"}, format="json")

    assert error_of(response, 409) == "user_beyond_your_authority"
    assert User.objects.get(pk=partner_technician.pk).status == "disabled"


def test_a_selected_partner_admin_manages_a_member_inside_its_reach(world, roles, selected_admin, org_a_technician):
    client = api(selected_admin)
    row = membership(org_a_technician)

    changed = client.patch(
        f"/api/v1/partner-users/{row.pk}", {"roleId": str(roles["Partner Viewer"].pk)}, format="json"
    )
    renamed = client.patch(f"/api/v1/users/{org_a_technician.pk}", {"name": "Tess"}, format="json")

    assert (changed.status_code, renamed.status_code) == (200, 200), (changed.content, renamed.content)
    assert membership(org_a_technician).role == roles["Partner Viewer"]
    assert client.delete(f"/api/v1/partner-users/{row.pk}").status_code == 204


def test_a_selected_partner_admin_does_not_read_organization_ids_out_of_its_reach(
    world, selected_admin, partner_admin, two_org_technician
):
    row = membership(two_org_technician)

    listed = api(selected_admin).get("/api/v1/partner-users")
    detail = api(selected_admin).get(f"/api/v1/partner-users/{row.pk}")
    full = api(partner_admin).get(f"/api/v1/partner-users/{row.pk}")

    assert listed.status_code == 200
    by_id = {item["id"]: item for item in listed.json()}
    assert by_id[str(row.pk)]["organizationIds"] == [str(world.org_a.pk)]
    assert str(world.org_a2.pk) not in listed.content.decode()
    assert detail.json()["organizationIds"] == [str(world.org_a.pk)]
    assert set(full.json()["organizationIds"]) == {str(world.org_a.pk), str(world.org_a2.pk)}


def test_a_selected_partner_admin_cannot_change_a_role_held_with_more_reach(
    world, permissions, selected_admin, make_partner_member
):
    role = Role.objects.create(name="Readers", scope="partner", partner=world.partner_a)
    RolePermission.objects.create(role=role, permission=permissions["devices:read"])
    reader = make_partner_member("reader@a.example", world.partner_a, "Partner Viewer")
    PartnerUser.objects.filter(user=reader).update(role=role)  # org_access all

    response = api(selected_admin).patch(
        f"/api/v1/roles/{role.pk}", {"permissions": ["devices:read", "devices:delete"]}, format="json"
    )

    assert error_of(response, 403) == "escalation_refused"
    assert [str(perm) for perm in role.permissions.all()] == ["devices:read"]


def test_a_full_reach_partner_admin_still_does_all_of_it(
    world, roles, partner_admin, selected_admin, partner_technician, two_org_technician
):
    client = api(partner_admin)

    widened = client.patch(
        f"/api/v1/partner-users/{membership(selected_admin).pk}",
        {"orgAccess": "all", "organizationIds": []},
        format="json",
    )
    invited = client.post(
        "/api/v1/users",
        {
            "email": "wide@a.example",
            "partnerId": str(world.partner_a.pk),
            "roleId": str(roles["Partner Technician"].pk),
            "orgAccess": "all",
        },
        format="json",
    )
    narrowed = client.patch(
        f"/api/v1/partner-users/{membership(partner_technician).pk}",
        {"orgAccess": "selected", "organizationIds": [str(world.org_a2.pk)]},
        format="json",
    )
    disabled = client.patch(f"/api/v1/users/{two_org_technician.pk}", {"status": "disabled"}, format="json")
    removed = client.delete(f"/api/v1/partner-users/{membership(two_org_technician).pk}")

    assert [r.status_code for r in (widened, invited, narrowed, disabled, removed)] == [200, 201, 200, 200, 204]
    assert reach_of(selected_admin) == ("all", set())
    assert api(selected_admin).get(f"/api/v1/devices/{a2_device(world).pk}").status_code == 200
    assert reach_of(User.objects.get(email="wide@a.example")) == ("all", set())
    assert reach_of(partner_technician) == ("selected", {world.org_a2})
    assert not PartnerUser.objects.filter(user=two_org_technician).exists()


# --- audit rows say what changed --------------------------------------------------------------------------------


def test_the_audit_row_of_a_membership_change_says_what_changed(world, roles, partner_admin, selected_admin):
    row = membership(selected_admin)

    response = api(partner_admin).patch(
        f"/api/v1/partner-users/{row.pk}",
        {"orgAccess": "all", "organizationIds": [], "roleId": str(roles["Partner Viewer"].pk)},
        format="json",
    )

    assert response.status_code == 200, response.content
    audit = last_audit("partner_user.update")
    assert (audit.actor_user_id, audit.target_id) == (partner_admin.pk, str(row.pk))
    assert audit.details == {
        "orgAccess": {"from": "selected", "to": "all"},
        "organizationIds": {"added": [], "removed": [str(world.org_a.pk)]},
        "role": {
            "from": {"id": str(roles["Partner Admin"].pk), "name": "Partner Admin"},
            "to": {"id": str(roles["Partner Viewer"].pk), "name": "Partner Viewer"},
        },
    }


def test_the_audit_rows_of_people_say_what_changed(world, roles, partner_admin, org_a_technician):
    client = api(partner_admin)

    client.patch(f"/api/v1/users/{org_a_technician.pk}", {"status": "disabled", "name": "Tess"}, format="json")
    client.post(
        "/api/v1/users",
        {
            "email": "new@a.example",
            "partnerId": str(world.partner_a.pk),
            "roleId": str(roles["Partner Viewer"].pk),
            "orgAccess": "selected",
            "organizationIds": [str(world.org_a2.pk)],
        },
        format="json",
    )
    client.delete(f"/api/v1/partner-users/{membership(org_a_technician).pk}")

    assert last_audit("user.update").details == {
        "name": {"from": "", "to": "Tess"},
        "status": {"from": "active", "to": "disabled"},
    }
    created = last_audit("user.create").details
    assert created["email"] == {"from": None, "to": "new@a.example"}
    assert created["membership"]["partnerId"] == str(world.partner_a.pk)
    assert created["membership"]["orgAccess"] == {"from": None, "to": "selected"}
    assert created["membership"]["organizationIds"] == {"added": [str(world.org_a2.pk)], "removed": []}
    deleted = last_audit("partner_user.delete").details
    assert deleted["organizationIds"] == {"added": [], "removed": [str(world.org_a.pk)]}
    assert deleted["orgAccess"] == {"from": "selected", "to": None}


def test_grant_access_records_what_it_changed(world, roles, org_a_technician):
    call_command(
        "grant_access", org_a_technician.email, "--partner", "partner-a", "--role", "Partner Viewer", "--all-orgs"
    )

    audit = last_audit("partner_user.update")
    assert audit.actor_user_id is None
    assert audit.details["via"] == "grant_access"
    assert audit.details["orgAccess"] == {"from": "selected", "to": "all"}
    assert audit.details["organizationIds"] == {"added": [], "removed": [str(world.org_a.pk)]}
    assert audit.details["role"]["to"]["name"] == "Partner Viewer"


# --- the admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def signed_in(client):
    """``signed_in(user)`` → the Django test client, signed in to the admin as ``user`` (made a staff user)."""

    def sign_in(user: User):
        User.objects.filter(pk=user.pk).update(is_staff=True)
        client.force_login(user)
        return client

    return sign_in


def partner_user_form(row: PartnerUser, **changes) -> dict:
    """What the browser posts from a partner membership's change page (partner and user are read-only there)."""
    data = {
        "role": str(row.role_id),
        "org_access": row.org_access,
        "selected_organizations": [str(org.pk) for org in row.selected_organizations.all()],
    }
    return data | changes


def test_admin_a_selected_partner_admin_cannot_widen_its_own_membership(world, signed_in, selected_admin):
    row = membership(selected_admin)
    client = signed_in(selected_admin)

    response = client.post(
        admin_url(PartnerUser, "change", row.pk), partner_user_form(row, org_access="all", selected_organizations=[])
    )

    assert response.status_code == 200
    assert "every organization of the partner" in response.content.decode()
    assert reach_of(selected_admin) == ("selected", {world.org_a})
    assert error_of(api(selected_admin).get(f"/api/v1/devices/{a2_device(world).pk}"), 404) == "not_found"


def test_admin_a_selected_partner_admin_cannot_select_an_organization_out_of_its_reach(
    world, signed_in, selected_admin
):
    row = membership(selected_admin)
    client = signed_in(selected_admin)

    response = client.post(
        admin_url(PartnerUser, "change", row.pk),
        partner_user_form(row, selected_organizations=[str(world.org_a.pk), str(world.org_a2.pk)]),
    )

    assert response.status_code == 200
    assert "selected_organizations" in response.context["adminform"].form.errors
    assert reach_of(selected_admin) == ("selected", {world.org_a})


def test_admin_a_selected_partner_admin_cannot_add_a_membership_reaching_every_organization(
    world, roles, signed_in, selected_admin, org_user
):
    data = {"partner": str(world.partner_a.pk), "user": str(org_user.pk), "role": str(roles["Partner Technician"].pk)}
    client = signed_in(selected_admin)

    wide = client.post(admin_url(PartnerUser, "add"), data | {"org_access": "all"})
    other_org = client.post(
        admin_url(PartnerUser, "add"),
        data | {"org_access": "selected", "selected_organizations": [str(world.org_a2.pk)]},
    )

    assert (wide.status_code, other_org.status_code) == (200, 200)
    assert "every organization of the partner" in wide.content.decode()
    assert "selected_organizations" in other_org.context["adminform"].form.errors
    assert not PartnerUser.objects.filter(user=org_user).exists()


def test_admin_a_selected_partner_admin_adds_a_membership_within_its_reach(
    world, roles, signed_in, selected_admin, org_user
):
    response = signed_in(selected_admin).post(
        admin_url(PartnerUser, "add"),
        {
            "partner": str(world.partner_a.pk),
            "user": str(org_user.pk),
            "role": str(roles["Partner Technician"].pk),
            "org_access": "selected",
            "selected_organizations": [str(world.org_a.pk)],
        },
    )

    assert response.status_code == 302
    assert reach_of(org_user) == ("selected", {world.org_a})
    details = last_audit("partner_user.create").details
    assert details["orgAccess"] == {"from": None, "to": "selected"}
    assert details["organizationIds"] == {"added": [str(world.org_a.pk)], "removed": []}


def test_admin_a_selected_partner_admin_cannot_widen_another_member(world, signed_in, selected_admin, org_a_technician):
    row = membership(org_a_technician)

    response = signed_in(selected_admin).post(
        admin_url(PartnerUser, "change", row.pk), partner_user_form(row, org_access="all", selected_organizations=[])
    )

    assert response.status_code == 200
    assert "every organization of the partner" in response.content.decode()
    assert reach_of(org_a_technician) == ("selected", {world.org_a})


def test_admin_a_member_reaching_more_is_read_only_to_a_selected_partner_admin(
    world, signed_in, selected_admin, partner_technician, two_org_technician
):
    client = signed_in(selected_admin)

    for member in (partner_technician, two_org_technician):
        row = membership(member)
        before = reach_of(member)
        page = client.get(admin_url(PartnerUser, "change", row.pk))
        post = client.post(
            admin_url(PartnerUser, "change", row.pk),
            partner_user_form(row, org_access="selected", selected_organizations=[str(world.org_a.pk)]),
        )
        delete = client.post(admin_url(PartnerUser, "delete", row.pk), {"post": "yes"})
        user_post = client.post(admin_url(User, "change", member.pk), {"email": "mine@evil.example"})
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert (post.status_code, delete.status_code, user_post.status_code) == (403, 403, 403)
        assert reach_of(member) == before
        assert User.objects.get(pk=member.pk).email == member.email


def test_admin_a_selected_partner_admin_does_not_read_organizations_out_of_its_reach(
    world, signed_in, selected_admin, two_org_technician
):
    page = signed_in(selected_admin).get(admin_url(PartnerUser, "change", membership(two_org_technician).pk))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Org A2" not in html and str(world.org_a2.pk) not in html
    assert "Org A" in html


def test_admin_the_autocomplete_offers_only_organizations_in_reach(world, signed_in, selected_admin):
    response = signed_in(selected_admin).get(
        reverse("admin:autocomplete"),
        {"app_label": "accounts", "model_name": "partneruser", "field_name": "selected_organizations"},
    )

    assert response.status_code == 200
    assert {item["id"] for item in response.json()["results"]} == {str(world.org_a.pk)}


def test_admin_a_full_reach_partner_admin_widens_a_membership_and_the_audit_row_says_so(
    world, signed_in, partner_admin, selected_admin
):
    row = membership(selected_admin)
    client = signed_in(partner_admin)
    page = client.get(admin_url(PartnerUser, "change", row.pk))

    response = client.post(
        admin_url(PartnerUser, "change", row.pk), partner_user_form(row, org_access="all", selected_organizations=[])
    )

    assert page.status_code == 200 and 'name="_save"' in page.content.decode()
    assert response.status_code == 302
    assert reach_of(selected_admin) == ("all", set())
    details = last_audit("partner_user.update").details
    assert details["via"] == "admin"
    assert details["orgAccess"] == {"from": "selected", "to": "all"}
    assert details["organizationIds"] == {"added": [], "removed": [str(world.org_a.pk)]}


def test_admin_a_full_reach_partner_admin_changes_a_person_and_the_audit_row_says_what_changed(
    world, signed_in, partner_admin, two_org_technician
):
    client = signed_in(partner_admin)
    user_url = admin_url(User, "change", two_org_technician.pk)
    page = client.get(user_url)
    inlines = {}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        inlines.update({f"{formset.management_form.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for n, form in enumerate(formset.initial_forms):
            inlines[f"{formset.prefix}-{n}-id"] = form.instance.pk
            inlines[f"{formset.prefix}-{n}-{formset.fk.name}"] = formset.instance.pk

    response = client.post(
        user_url,
        {"email": two_org_technician.email, "name": "Tess", "status": "disabled", "is_staff": "on"} | inlines,
    )

    assert response.status_code == 302
    assert User.objects.get(pk=two_org_technician.pk).status == "disabled"
    details = last_audit("user.update").details
    assert details["status"] == {"from": "active", "to": "disabled"}
    assert details["name"] == {"from": "", "to": "Tess"}
    assert details["via"] == "admin"


def test_admin_a_selected_partner_admin_cannot_change_a_role_held_with_more_reach(
    world, permissions, signed_in, selected_admin, make_partner_member
):
    role = Role.objects.create(name="Readers", scope="partner", partner=world.partner_a)
    grant = RolePermission.objects.create(role=role, permission=permissions["devices:read"])
    reader = make_partner_member("reader@a.example", world.partner_a, "Partner Viewer")
    PartnerUser.objects.filter(user=reader).update(role=role)  # org_access all
    data = {
        "name": "Readers",
        "scope": "partner",
        "description": "",
        "role_permissions-TOTAL_FORMS": "2",
        "role_permissions-INITIAL_FORMS": "1",
        "role_permissions-0-id": str(grant.pk),
        "role_permissions-0-role": str(role.pk),
        "role_permissions-0-permission": str(permissions["devices:read"].pk),
        "role_permissions-1-role": str(role.pk),
        "role_permissions-1-permission": str(permissions["devices:delete"].pk),
    }

    response = signed_in(selected_admin).post(admin_url(Role, "change", role.pk), data)

    assert response.status_code == 200
    assert "Members hold this role where you could not grant it" in response.content.decode()
    assert [str(perm) for perm in role.permissions.all()] == ["devices:read"]


def test_admin_deleting_a_membership_records_what_it_held(world, signed_in, partner_admin, two_org_technician):
    row = membership(two_org_technician)

    response = signed_in(partner_admin).post(admin_url(PartnerUser, "delete", row.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not PartnerUser.objects.filter(pk=row.pk).exists()
    details = last_audit("partner_user.delete").details
    assert set(details["organizationIds"]["removed"]) == {str(world.org_a.pk), str(world.org_a2.pk)}


def test_an_org_admin_still_manages_its_organizations_people(world, roles, org_admin, org_user):
    row = OrganizationUser.objects.get(user=org_user)

    response = api(org_admin).patch(f"/api/v1/organization-users/{row.pk}", {"siteIds": []}, format="json")

    assert response.status_code == 200, response.content
    assert not OrganizationUser.objects.get(pk=row.pk).sites.exists()
    assert last_audit("organization_user.update").details == {
        "siteIds": {"added": [], "removed": [str(world.site_a1.pk)]}
    }


# --- the rule itself (accounts.services over authz.beyond) --------------------------------------------------------


def test_a_selection_of_every_organization_today_does_not_grant_all(world, roles, make_partner_member, org_user):
    # Partner A has two organizations today; "all" would also reach those made tomorrow.
    every_one = make_partner_member(
        "every.one@a.example", world.partner_a, "Partner Admin", "selected", [world.org_a, world.org_a2]
    )
    actor = User.objects.get(pk=every_one.pk)

    with pytest.raises(services.EscalationRefused, match="every organization of the partner"):
        services.grant_partner_access(
            partner=world.partner_a, user=org_user, role=roles["Partner Viewer"], org_access="all", actor=actor
        )
    granted = services.grant_partner_access(
        partner=world.partner_a,
        user=org_user,
        role=roles["Partner Viewer"],
        org_access="selected",
        organizations=[world.org_a, world.org_a2],
        actor=actor,
    )
    assert set(granted.selected_organizations.all()) == {world.org_a, world.org_a2}


def test_beyond_names_each_place_a_reach_exceeds_the_users_own(world, selected_admin):
    def excess(**membership):
        wanted = authz.membership_reach(permissions=["devices:read"], **membership)
        return [(item.where, item.id, item.outside) for item in authz.beyond(selected_admin, wanted)]

    assert excess(partner_id=world.partner_a.pk, org_access="all") == [("every_org", world.partner_a.pk, True)]
    assert excess(partner_id=world.partner_a.pk, org_access="selected", organizations=[world.org_a2]) == [
        ("org", world.org_a2.pk, True)
    ]
    assert excess(org=world.org_a2, sites=[world.site_a2_main]) == [("site", world.site_a2_main.pk, True)]
    assert excess(partner_id=world.partner_a.pk, org_access="selected", organizations=[world.org_a]) == []
    assert excess(org=world.org_a, sites=[world.site_a1]) == []


def test_a_person_holding_a_guardian_grant_beyond_the_actors_reach_cannot_be_taken_over(
    world, partner_admin, org_a_technician
):
    assign_perm("view_device", org_a_technician, world.devices[world.site_b1][0])  # partner B's device

    response = api(partner_admin).patch(f"/api/v1/users/{org_a_technician.pk}", {"status": "disabled"}, format="json")

    assert error_of(response, 409) == "user_beyond_your_authority"
    assert User.objects.get(pk=org_a_technician.pk).status == "active"
    remove_perm("view_device", org_a_technician, world.devices[world.site_b1][0])
    assert services.may_manage_user(User.objects.get(pk=partner_admin.pk), User.objects.get(pk=org_a_technician.pk))


def test_a_site_restricted_org_admin_grants_nothing(world, roles, make_org_member, make_user, org_user):
    site_admin = make_org_member("site.admin@a.example", world.org_a, "Org Admin", sites=[world.site_a1])

    with pytest.raises(services.EscalationRefused, match="users:write is needed"):
        services.grant_organization_access(
            org=world.org_a,
            user=make_user("new@a.example"),
            role=roles["Org User"],
            sites=[world.site_a1],
            actor=site_admin,
        )
    # Nor changes an existing membership: the service refuses before looking at the new grant.
    with pytest.raises(services.EscalationRefused, match="more than you could grant yourself"):
        services.grant_organization_access(
            org=world.org_a, user=org_user, role=roles["Org User"], sites=[world.site_a1], actor=site_admin
        )
