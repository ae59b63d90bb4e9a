"""The admin follows the API's access rules: technicians are staff users who see, pick and change only what the
authorization module lets them reach; operators (superusers) see everything."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    ApiToken,
    AuditLog,
    MfaRecoveryCode,
    OrganizationUser,
    PartnerUser,
    Permission,
    RecentFailures,
    Role,
    RolePermission,
    User,
)
from devices.models import Device, DeviceGroup, DeviceHardware, DeviceTelemetry
from orgs.models import EnrollmentKey, Organization, Partner, Site
from rmm.admin import ScopedAdminMixin, ScopedInlineMixin, ScopedRelatedFieldListFilter, SuperuserOnlyAdminMixin
from tests.doors import admin_url, inline_data

pytestmark = pytest.mark.django_db

OUR_APPS = ("jobs", *settings.DOMAIN_APPS)
PASSWORD = "correct horse battery staple"
EMPTY_JSON_FIELDS = {"address": "{}", "contact": "{}", "settings": "{}"}
MEMBER_FORMSET = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}


@pytest.fixture
def signed_in(client):
    """``signed_in(user)`` → the test client, signed in to the admin as ``user`` (made a staff user)."""

    def sign_in(user: User):
        User.objects.filter(pk=user.pk).update(is_staff=True)
        client.force_login(user)
        return client

    return sign_in


def hostnames(response) -> set[str]:
    assert response.status_code == 200
    return {device.hostname for device in response.context["cl"].result_list}


def options(html: str, name: str) -> set[str]:
    """The option values of the <select name=...> in ``html`` (the empty choice left out)."""
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select is not None, f"no <select name={name}>"
    return {value for value in re.findall(r'<option value="([^"]*)"', select.group(1)) if value}


def device_form_data(page, device: Device, **changes) -> dict:
    """What the browser posts from a device's change page."""
    data = {"display_name": device.display_name, "tags": ",".join(device.tags), "site": str(device.site_id)}
    return data | inline_data(page) | changes


def make_role(partner: Partner, name: str, perms: list[str], permissions, *, scope=Role.Scope.PARTNER) -> Role:
    role = Role.objects.create(name=name, scope=scope, partner=partner)
    RolePermission.objects.bulk_create(RolePermission(role=role, permission=permissions[perm]) for perm in perms)
    return role


@pytest.fixture
def access_manager(world, make_user, permissions) -> User:
    """A member of partner A (every organization) who manages people but holds little else: users read and
    write, devices read."""
    role = make_role(world.partner_a, "Access manager", ["users:read", "users:write", "devices:read"], permissions)
    user = make_user("access.manager@a.example")
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=role, org_access="all")
    return user


# --- Signing in ---------------------------------------------------------------------------------------------------


def test_a_technician_who_is_staff_gets_the_index_with_only_what_they_may_see(signed_in, partner_technician):
    response = signed_in(partner_technician).get(reverse("admin:index"))

    assert response.status_code == 200
    models = {model["object_name"] for app in response.context["app_list"] for model in app["models"]}
    assert {"Device", "Site", "Organization", "Partner", "DeviceTelemetry"} <= models
    # No devices:write, no audit:read, no users:*; and the operators' tables.
    assert not models & {"EnrollmentKey", "AuditLog", "User", "RecentFailures", "MfaRecoveryCode", "RolePermission"}


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client, partner_admin):
    client.force_login(partner_admin)

    response = client.get(admin_url(Device, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- Devices ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "sites"),
    [
        ("superuser", ["site_a1", "site_a2", "site_a2_main", "site_b1"]),
        ("partner_technician", ["site_a1", "site_a2", "site_a2_main"]),
        ("viewer", ["site_a1", "site_a2", "site_a2_main"]),
        ("org_admin", ["site_a1", "site_a2"]),
        ("org_user", ["site_a1"]),
        ("outsider", ["site_b1"]),
    ],
)
def test_the_device_list_shows_only_devices_in_reach(request, signed_in, world, persona, sites):
    client = signed_in(request.getfixturevalue(persona))

    response = client.get(admin_url(Device, "changelist"))

    expected = {device.hostname for device in world.devices_in(*(getattr(world, site) for site in sites))}
    assert hostnames(response) == expected


def test_a_filter_for_another_tenants_organization_finds_nothing(signed_in, world, outsider):
    response = signed_in(outsider).get(admin_url(Device, "changelist"), {"org__id__exact": str(world.org_a.pk)})

    assert hostnames(response) == set()


def test_the_organization_and_site_filters_list_only_what_is_in_reach(signed_in, world, partner_technician):
    response = signed_in(partner_technician).get(admin_url(Device, "changelist"))

    assert response.status_code == 200
    org_filter = next(s for s in response.context["cl"].filter_specs if isinstance(s, ScopedRelatedFieldListFilter))
    site_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "site")
    assert {name for _, name in org_filter.lookup_choices} == {"Org A", "Org A2"}
    assert {name for _, name in site_filter.lookup_choices} == {"Org A / A1", "Org A / A2", "Org A2 / A2 main"}
    assert "Org B" not in response.content.decode()


def test_the_device_filter_does_not_name_a_device_out_of_reach(signed_in, world, outsider):
    device = world.devices[world.site_a1][0]

    response = signed_in(outsider).get(reverse("admin:devices_devicesoftware_changelist"), {"device": device.pk})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 0
    assert device.hostname not in response.content.decode()


def test_an_outsider_cannot_open_a_device_of_partner_a(signed_in, world, outsider):
    device = world.devices[world.site_a1][0]
    client = signed_in(outsider)

    response = client.get(admin_url(Device, "change", device.pk))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    followed = client.get(admin_url(Device, "change", device.pk), follow=True)
    assert followed.status_code == 200
    assert device.hostname not in followed.content.decode()
    assert client.get(admin_url(Device, "history", device.pk)).status_code == 302


def test_an_outsider_cannot_post_to_a_device_of_partner_a(signed_in, world, outsider):
    device = world.devices[world.site_a1][0]

    response = signed_in(outsider).post(admin_url(Device, "change", device.pk), {"display_name": "Owned"})

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.display_name == ""


def test_the_site_dropdown_offers_only_sites_of_the_devices_organization_in_reach(signed_in, world, partner_admin):
    device = world.devices[world.site_a1][0]

    response = signed_in(partner_admin).get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    assert options(response.content.decode(), "site") == {str(world.site_a1.pk), str(world.site_a2.pk)}


def test_a_site_restricted_user_is_offered_only_their_site(signed_in, world, org_user):
    device = world.devices[world.site_a1][0]

    response = signed_in(org_user).get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    assert options(response.content.decode(), "site") == {str(world.site_a1.pk)}


def test_a_partner_admin_moves_a_device_to_another_site_of_its_organization(signed_in, world, partner_admin):
    device = world.devices[world.site_a1][0]
    client = signed_in(partner_admin)
    page = client.get(admin_url(Device, "change", device.pk))

    response = client.post(
        admin_url(Device, "change", device.pk), device_form_data(page, device, site=world.site_a2.pk)
    )

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.site == world.site_a2
    assert AuditLog.objects.filter(action="device.update", target_id=str(device.pk), actor_user=partner_admin).exists()


@pytest.mark.parametrize(
    ("persona", "site"),
    [("org_user", "site_a2"), ("org_user", "site_b1"), ("superuser", "site_a2_main"), ("superuser", "site_b1")],
)
def test_a_device_cannot_be_moved_to_a_site_out_of_reach_or_of_another_organization(
    request, signed_in, world, persona, site
):
    device = world.devices[world.site_a1][0]
    client = signed_in(request.getfixturevalue(persona))
    page = client.get(admin_url(Device, "change", device.pk))

    data = device_form_data(page, device, site=getattr(world, site).pk)
    response = client.post(admin_url(Device, "change", device.pk), data)

    assert response.status_code == 200
    assert "site" in response.context["adminform"].form.errors
    device.refresh_from_db()
    assert device.site == world.site_a1
    assert not AuditLog.objects.filter(action="device.update").exists()


def test_a_viewer_sees_a_device_read_only_and_cannot_post(signed_in, world, viewer):
    device = world.devices[world.site_a1][0]
    client = signed_in(viewer)

    page = client.get(admin_url(Device, "change", device.pk))
    response = client.post(admin_url(Device, "change", device.pk), {"display_name": "Renamed", "site": device.site_id})

    assert page.status_code == 200
    html = page.content.decode()
    assert device.hostname in html
    assert 'name="_save"' not in html and '<select name="site"' not in html
    assert response.status_code == 403
    device.refresh_from_db()
    assert device.display_name == ""


def test_device_inlines_show_only_to_who_may_read_the_device(signed_in, world, org_user):
    device = world.devices[world.site_a1][0]

    response = signed_in(org_user).get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    assert device.hostname in response.content.decode()  # the hardware inline's serial number is the hostname
    inline_models = {formset.opts.model for formset in response.context["inline_admin_formsets"]}
    assert DeviceHardware in inline_models


def test_the_technicians_device_list_costs_the_same_number_of_queries_with_more_devices(
    signed_in, world, partner_technician, django_assert_max_num_queries
):
    client = signed_in(partner_technician)
    url = admin_url(Device, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for n in range(40):
        Device.objects.create(
            org=world.org_a, site=world.site_a2, agent_id=f"{n:064d}", hostname=f"bulk-{n:02d}", os_type="linux"
        )

    with django_assert_max_num_queries(len(few)):
        response = client.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count == 6 + 40


# --- Organizations, sites, enrollment keys, groups ------------------------------------------------------------------


def test_an_org_admin_cannot_add_or_delete_organizations(signed_in, world, org_admin):
    client = signed_in(org_admin)
    before = Organization.objects.count()

    add_page = client.get(admin_url(Organization, "add"))
    add = client.post(admin_url(Organization, "add"), {"partner": world.partner_a.pk, "name": "New", "slug": "new"})
    delete = client.post(admin_url(Organization, "delete", world.org_a.pk), {"post": "yes"})
    changelist = client.get(admin_url(Organization, "changelist"))

    assert (add_page.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert Organization.objects.count() == before
    assert changelist.status_code == 200
    assert [org.name for org in changelist.context["cl"].result_list] == ["Org A"]
    assert admin_url(Organization, "add") not in changelist.content.decode()


def test_an_org_admin_changes_its_own_organization(signed_in, world, org_admin):
    response = signed_in(org_admin).post(
        admin_url(Organization, "change", world.org_a.pk),
        {"name": "Org A renamed", "slug": "org-a", "type": "customer", "status": "active", "settings": "{}"},
    )

    assert response.status_code == 302
    world.org_a.refresh_from_db()
    assert world.org_a.name == "Org A renamed"


def test_a_partner_admin_adds_organizations_to_its_own_partner_only(signed_in, world, partner_admin):
    client = signed_in(partner_admin)
    data = {"name": "New customer", "slug": "new-customer", "type": "customer", "status": "active", "settings": "{}"}

    page = client.get(admin_url(Organization, "add"))
    foreign = client.post(admin_url(Organization, "add"), data | {"partner": world.partner_b.pk})
    own = client.post(admin_url(Organization, "add"), data | {"partner": world.partner_a.pk})

    assert page.status_code == 200
    assert options(page.content.decode(), "partner") == {str(world.partner_a.pk)}
    assert foreign.status_code == 200
    assert "partner" in foreign.context["adminform"].form.errors
    assert own.status_code == 302
    assert Organization.objects.get(slug="new-customer").partner == world.partner_a


def test_the_partners_organization_limit_holds_in_the_admin_too(signed_in, world, partner_admin):
    Partner.objects.filter(pk=world.partner_a.pk).update(max_organizations=2)
    data = {"partner": world.partner_a.pk, "name": "Third", "slug": "third", "type": "customer", "status": "active"}

    response = signed_in(partner_admin).post(admin_url(Organization, "add"), data | {"settings": "{}"})

    assert response.status_code == 200
    assert "maximum of 2 organizations" in response.content.decode()
    assert not Organization.objects.filter(slug="third").exists()


def test_partners_are_read_by_their_members_and_changed_by_operators_only(signed_in, world, partner_admin):
    client = signed_in(partner_admin)

    listing = client.get(admin_url(Partner, "changelist"))
    own = client.get(admin_url(Partner, "change", world.partner_a.pk))
    other = client.get(admin_url(Partner, "change", world.partner_b.pk))
    post = client.post(admin_url(Partner, "change", world.partner_a.pk), {"name": "Renamed", "slug": "partner-a"})

    assert listing.status_code == 200
    assert [partner.name for partner in listing.context["cl"].result_list] == ["Partner A"]
    assert own.status_code == 200 and 'name="_save"' not in own.content.decode()
    assert other.status_code == 302
    assert post.status_code == 403
    assert client.get(admin_url(Partner, "add")).status_code == 403
    world.partner_a.refresh_from_db()
    assert world.partner_a.name == "Partner A"


def test_a_sites_organization_dropdown_offers_organizations_where_sites_may_be_written(signed_in, world, org_admin):
    response = signed_in(org_admin).get(admin_url(Site, "add"))

    assert response.status_code == 200
    assert options(response.content.decode(), "org") == {str(world.org_a.pk)}


def test_a_site_cannot_be_created_in_an_organization_out_of_reach(signed_in, world, org_admin):
    response = signed_in(org_admin).post(
        admin_url(Site, "add"), {"org": world.org_b.pk, "name": "Sneaky", "timezone": "UTC"} | EMPTY_JSON_FIELDS
    )

    assert response.status_code == 200
    assert "org" in response.context["adminform"].form.errors
    assert not Site.objects.filter(name="Sneaky").exists()


def test_a_site_restricted_user_cannot_open_the_other_sites(signed_in, world, org_user):
    client = signed_in(org_user)

    assert client.get(admin_url(Site, "change", world.site_a1.pk)).status_code == 200
    assert client.get(admin_url(Site, "change", world.site_a2.pk)).status_code == 302


def test_enrollment_keys_need_devices_write(signed_in, world, partner_technician, org_user):
    assert signed_in(partner_technician).get(admin_url(EnrollmentKey, "changelist")).status_code == 403

    response = signed_in(org_user).get(admin_url(EnrollmentKey, "changelist"))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [world.keys[world.site_a1]]


def test_the_site_autocomplete_of_enrollment_keys_offers_only_sites_where_devices_may_be_written(
    signed_in, world, org_user, outsider
):
    params = {"app_label": "orgs", "model_name": "enrollmentkey", "field_name": "site", "term": ""}

    mine = signed_in(org_user).get(reverse("admin:autocomplete"), params)
    theirs = signed_in(outsider).get(reverse("admin:autocomplete"), params)

    assert mine.status_code == theirs.status_code == 200
    assert [row["id"] for row in mine.json()["results"]] == [str(world.site_a1.pk)]
    assert [row["id"] for row in theirs.json()["results"]] == [str(world.site_b1.pk)]


def test_an_enrollment_key_for_a_site_out_of_reach_is_refused(signed_in, world, org_user):
    response = signed_in(org_user).post(admin_url(EnrollmentKey, "add"), {"site": world.site_a2.pk, "name": "Nope"})

    assert response.status_code == 200
    assert "site" in response.context["adminform"].form.errors
    assert not EnrollmentKey.objects.filter(name="Nope").exists()


def test_a_group_that_would_fall_out_of_reach_is_refused_with_403_and_nothing_saved(signed_in, world, org_user):
    client = signed_in(org_user)
    page = client.get(admin_url(DeviceGroup, "add"))

    # Org A is offered (org_user writes devices on its site A1); a group of the whole organization is not theirs.
    response = client.post(admin_url(DeviceGroup, "add"), {"org": world.org_a.pk, "name": "Org-wide", **MEMBER_FORMSET})

    assert page.status_code == 200
    assert options(page.content.decode(), "org") == {str(world.org_a.pk)}
    assert response.status_code == 403
    assert not DeviceGroup.objects.filter(name="Org-wide").exists()
    assert not AuditLog.objects.filter(action="device_group.create").exists()


def test_a_site_restricted_user_makes_a_group_of_their_site(signed_in, world, org_user):
    response = signed_in(org_user).post(
        admin_url(DeviceGroup, "add"),
        {"org": world.org_a.pk, "site": world.site_a1.pk, "name": "Front desk", **MEMBER_FORMSET},
    )

    assert response.status_code == 302
    assert DeviceGroup.objects.get(name="Front desk").site == world.site_a1


def test_a_groups_parent_dropdown_offers_other_groups_of_its_organization(signed_in, world, partner_admin):
    group = world.groups["A1 servers"]

    response = signed_in(partner_admin).get(admin_url(DeviceGroup, "change", group.pk))

    assert response.status_code == 200
    parents = response.context["adminform"].form.fields["parent"].queryset  # an autocomplete: no <option>s
    assert {parent.name for parent in parents} == {"A2 servers", "All of A"}


# --- People and access --------------------------------------------------------------------------------------------


def test_granting_a_role_with_more_than_the_actor_holds_is_a_form_error_and_saves_nothing(
    signed_in, world, access_manager, roles, org_user
):
    client = signed_in(access_manager)

    partner = client.post(
        admin_url(PartnerUser, "add"),
        {"partner": world.partner_a.pk, "user": org_user.pk, "role": roles["Partner Admin"].pk, "org_access": "all"},
    )
    org = client.post(
        admin_url(OrganizationUser, "add"), {"org": world.org_a2.pk, "user": org_user.pk, "role": roles["Org Admin"].pk}
    )

    for response in (partner, org):
        assert response.status_code == 200
        assert "You cannot grant permissions you do not hold: *:*." in response.content.decode()
    assert not PartnerUser.objects.filter(user=org_user).exists()
    assert not OrganizationUser.objects.filter(user=org_user, org=world.org_a2).exists()


def test_granting_no_more_than_the_actor_holds_is_saved(signed_in, world, access_manager, permissions, org_user):
    reader = make_role(world.partner_a, "Reader", ["devices:read"], permissions, scope=Role.Scope.ORGANIZATION)

    response = signed_in(access_manager).post(
        admin_url(OrganizationUser, "add"), {"org": world.org_a2.pk, "user": org_user.pk, "role": reader.pk}
    )

    assert response.status_code == 302
    assert OrganizationUser.objects.filter(user=org_user, org=world.org_a2, role=reader).exists()


def test_a_membership_holding_more_than_the_actor_is_read_only_to_them(signed_in, world, access_manager, org_admin):
    membership = OrganizationUser.objects.get(user=org_admin)  # Org Admin: *:* in org A
    client = signed_in(access_manager)

    page = client.get(admin_url(OrganizationUser, "change", membership.pk))
    post = client.post(admin_url(OrganizationUser, "change", membership.pk), {"role": membership.role_id})
    delete = client.post(admin_url(OrganizationUser, "delete", membership.pk), {"post": "yes"})

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (post.status_code, delete.status_code) == (403, 403)
    assert OrganizationUser.objects.filter(pk=membership.pk).exists()


def test_an_org_admin_cannot_grant_access_in_another_organization(signed_in, world, org_admin, roles, org_user):
    client = signed_in(org_admin)

    page = client.get(admin_url(OrganizationUser, "add"))
    response = client.post(
        admin_url(OrganizationUser, "add"), {"org": world.org_a2.pk, "user": org_user.pk, "role": roles["Org User"].pk}
    )

    assert options(page.content.decode(), "org") == {str(world.org_a.pk)}
    assert response.status_code == 200
    assert "org" in response.context["adminform"].form.errors
    assert not OrganizationUser.objects.filter(user=org_user, org=world.org_a2).exists()


def role_data(partner, name: str, perms: list[Permission]) -> dict:
    data = {
        "name": name,
        "scope": "partner",
        "partner": partner.pk,
        "description": "",
        "role_permissions-TOTAL_FORMS": str(len(perms)),
        "role_permissions-INITIAL_FORMS": "0",
    }
    data.update({f"role_permissions-{n}-permission": perm.pk for n, perm in enumerate(perms)})
    return data


def test_a_custom_role_granting_more_than_its_maker_holds_is_refused(signed_in, world, access_manager, permissions):
    perms = [permissions["devices:read"], permissions["devices:execute"]]

    response = signed_in(access_manager).post(admin_url(Role, "add"), role_data(world.partner_a, "Runner", perms))

    assert response.status_code == 200
    assert "You cannot grant permissions you do not hold: devices:execute." in response.content.decode()
    assert not Role.objects.filter(name="Runner").exists()


def test_a_custom_role_within_its_makers_permissions_is_saved(signed_in, world, access_manager, permissions):
    response = signed_in(access_manager).post(
        admin_url(Role, "add"), role_data(world.partner_a, "Looker", [permissions["devices:read"]])
    )

    assert response.status_code == 302
    role = Role.objects.get(name="Looker")
    assert (role.partner, [str(perm) for perm in role.permissions.all()]) == (world.partner_a, ["devices:read"])


def test_a_custom_role_is_made_only_in_a_partner_where_its_maker_manages_users(
    signed_in, world, access_manager, org_admin, permissions
):
    data = role_data(world.partner_b, "Foreign", [permissions["devices:read"]])

    foreign = signed_in(access_manager).post(admin_url(Role, "add"), data)
    org_level = signed_in(org_admin).get(admin_url(Role, "add"))

    assert foreign.status_code == 200
    assert "partner" in foreign.context["adminform"].form.errors
    assert org_level.status_code == 403  # an Org Admin holds nothing at partner level
    assert not Role.objects.filter(name="Foreign").exists()


def test_built_in_roles_are_read_only_to_everyone(signed_in, roles, partner_admin):
    response = signed_in(partner_admin).get(admin_url(Role, "change", roles["Partner Admin"].pk))

    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()


def test_a_person_holding_more_than_the_actor_cannot_be_changed_by_them(
    signed_in, world, roles, org_admin, partner_admin
):
    # The partner admin also serves org A, so the Org Admin of A reaches them, but cannot take over their account.
    OrganizationUser.objects.create(org=world.org_a, user=partner_admin, role=roles["Org User"])
    client = signed_in(org_admin)

    page = client.get(admin_url(User, "change", partner_admin.pk))
    post = client.post(admin_url(User, "change", partner_admin.pk), {"email": "mine@evil.example"})
    password = client.get(reverse("admin:auth_user_password_change", args=[partner_admin.pk]))

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (post.status_code, password.status_code) == (403, 403)
    partner_admin.refresh_from_db()
    assert partner_admin.email == "partner.admin@a.example"


def test_the_user_list_shows_people_in_reach_and_says_how_to_add_people(
    signed_in, world, org_admin, org_user, outsider
):
    response = signed_in(org_admin).get(admin_url(User, "changelist"))

    assert response.status_code == 200
    assert {user.email for user in response.context["cl"].result_list} == {org_admin.email, org_user.email}
    html = response.content.decode()
    assert 'id="add-users-help"' in html and "POST /api/v1/users" in html
    assert admin_url(User, "add") not in html
    assert signed_in(org_admin).get(admin_url(User, "add")).status_code == 403


def test_only_operators_change_superuser_status(signed_in, world, org_admin, org_user):
    client = signed_in(org_admin)
    page = client.get(admin_url(User, "change", org_user.pk))

    response = client.post(
        admin_url(User, "change", org_user.pk),
        {"email": org_user.email, "name": "Renamed", "status": "active", "is_staff": "on", "is_superuser": "on"}
        | inline_data(page),
    )

    assert page.status_code == 200
    assert "is_superuser" not in page.context["adminform"].form.fields
    assert "groups" not in page.context["adminform"].form.fields
    assert response.status_code == 302
    org_user.refresh_from_db()
    assert (org_user.name, org_user.is_superuser) == ("Renamed", False)


def test_a_user_page_lists_only_the_memberships_the_viewer_reaches(signed_in, world, outsider, roles, org_user):
    PartnerUser.objects.create(partner=world.partner_b, user=org_user, role=roles["Partner Viewer"], org_access="all")

    response = signed_in(outsider).get(admin_url(User, "change", org_user.pk))

    assert response.status_code == 200
    shown = [form.instance for formset in response.context["inline_admin_formsets"] for form in formset.formset]
    assert [type(membership) for membership in shown] == [PartnerUser]
    assert "Org A" not in response.content.decode()


def test_everyone_sees_only_their_own_api_tokens(signed_in, partner_admin, outsider):
    mine = ApiToken.objects.create(user=partner_admin, name="mine", key_prefix="rmmu_aaaaaa", key_hash="a" * 64)
    theirs = ApiToken.objects.create(user=outsider, name="theirs", key_prefix="rmmu_bbbbbb", key_hash="b" * 64)
    client = signed_in(partner_admin)

    listing = client.get(admin_url(ApiToken, "changelist"))

    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [mine]
    assert client.get(admin_url(ApiToken, "change", theirs.pk)).status_code == 302
    assert client.post(admin_url(ApiToken, "delete", theirs.pk), {"post": "yes"}).status_code == 302
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert client.post(admin_url(ApiToken, "delete", mine.pk), {"post": "yes"}).status_code == 302
    assert not ApiToken.objects.filter(pk=mine.pk).exists()


def test_the_audit_log_shows_the_organizations_in_reach_with_audit_read(signed_in, world, viewer, partner_technician):
    response = signed_in(viewer).get(admin_url(AuditLog, "changelist"))

    assert response.status_code == 200
    assert {entry.org_id for entry in response.context["cl"].result_list} == {world.org_a.pk, world.org_a2.pk}
    assert signed_in(partner_technician).get(admin_url(AuditLog, "changelist")).status_code == 403


def test_the_permission_catalogue_is_readable_by_any_staff_user(signed_in, permissions, partner_technician):
    client = signed_in(partner_technician)

    response = client.get(admin_url(Permission, "changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count == len(permissions)
    assert client.get(admin_url(Permission, "add")).status_code == 403


@pytest.mark.parametrize("model", [RolePermission, MfaRecoveryCode, RecentFailures])
def test_operators_tables_are_closed_to_everyone_else(signed_in, partner_admin, model):
    assert signed_in(partner_admin).get(admin_url(model, "changelist")).status_code == 403


# --- Telemetry ------------------------------------------------------------------------------------------------------


@pytest.fixture
def samples(world) -> dict[str, Device]:
    """A recent telemetry sample of one device of site A1 and one of site B1."""
    now = timezone.now()
    devices = {"a1": world.devices[world.site_a1][0], "b1": world.devices[world.site_b1][0]}
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(device=device, org=device.org, ts=now - dt.timedelta(minutes=5), cpu_percent=10)
        for device in devices.values()
    )
    return devices


def test_the_telemetry_page_shows_only_samples_of_devices_in_reach(signed_in, samples, partner_technician):
    response = signed_in(partner_technician).get(reverse("admin:devices_devicetelemetry_changelist"))

    assert response.status_code == 200
    assert [sample.device_id for sample, _ in response.context["rows"]] == [samples["a1"].pk]


def test_the_telemetry_of_a_device_out_of_reach_answers_404(signed_in, samples, outsider):
    response = signed_in(outsider).get(
        reverse("admin:devices_devicetelemetry_changelist"), {"device": str(samples["a1"].pk)}
    )

    assert response.status_code == 404
    assert response.context["rows"] == []
    assert samples["a1"].hostname not in response.content.decode()


def test_the_telemetry_page_is_closed_to_staff_who_read_no_devices(signed_in, samples, make_user):
    nobody = make_user("nobody@example.com")

    assert signed_in(nobody).get(reverse("admin:devices_devicetelemetry_changelist")).status_code == 403


# --- Admin sign-in with MFA -------------------------------------------------------------------------------------------


@pytest.fixture
def mfa_technician(partner_technician) -> tuple[User, str]:
    secret = pyotp.random_base32()
    User.objects.filter(pk=partner_technician.pk).update(is_staff=True, mfa_enabled=True, mfa_secret=secret)
    return partner_technician, secret


def log_in(client, email: str, password: str = PASSWORD, totp: str = ""):
    return client.post(reverse("admin:login"), {"username": email, "password": password, "totp": totp})


def test_the_login_page_asks_for_the_authenticator_code(client):
    response = client.get(reverse("admin:login"))

    assert response.status_code == 200
    assert 'name="totp"' in response.content.decode()
    assert "Authenticator code" in response.content.decode()


def test_admin_login_with_mfa_on_and_no_code_asks_for_it(client, mfa_technician):
    user, _ = mfa_technician

    response = log_in(client, user.email)

    assert response.status_code == 200
    assert "Enter the code from your authenticator app." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admin_login_with_a_wrong_code_is_refused_and_counted(client, mfa_technician):
    user, _ = mfa_technician

    response = log_in(client, user.email, totp="000000")

    assert response.status_code == 200
    assert response.context["form"].errors["totp"] == ["The authenticator code is wrong or was already used."]
    assert "_auth_user_id" not in client.session
    counted = {row.scope: len(row.failed_at) for row in RecentFailures.objects.all()}
    assert counted["sign_in_pair"] == 1 and counted["second_factor"] == 1


def test_admin_login_with_the_right_code_signs_in(client, mfa_technician):
    user, secret = mfa_technician

    response = log_in(client, user.email, totp=pyotp.TOTP(secret).now())

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(admin_url(Device, "changelist")).status_code == 200
    assert AuditLog.objects.filter(action="user.login", actor_user=user, details__via="admin").exists()


def test_admin_login_refuses_users_who_are_not_staff_even_with_the_right_password(client, partner_technician):
    response = log_in(client, partner_technician.email)

    assert response.status_code == 200
    assert "staff account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admin_login_is_throttled_like_the_api(client, mfa_technician, settings):
    user, secret = mfa_technician
    settings.LOGIN_DELAY_BASE_MS = settings.LOGIN_DELAY_MAX_MS = 1
    for _ in range(settings.LOGIN_MAX_FAILURES):
        log_in(client, user.email, password="wrong password")

    response = log_in(client, user.email, totp=pyotp.TOTP(secret).now())

    assert response.status_code == 200
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admin_login_of_a_disabled_account_is_refused(client, partner_technician):
    User.objects.filter(pk=partner_technician.pk).update(is_staff=True, status=User.Status.DISABLED)

    response = log_in(client, partner_technician.email)

    assert response.status_code == 200
    assert "This account is disabled." in response.content.decode()


def test_admin_login_when_the_role_forces_mfa_says_how_to_set_it_up(client, roles, partner_technician):
    User.objects.filter(pk=partner_technician.pk).update(is_staff=True)
    Role.objects.filter(pk=roles["Partner Technician"].pk).update(force_mfa=True)

    response = log_in(client, partner_technician.email)

    assert response.status_code == 200
    assert "POST /api/v1/auth/mfa/setup" in response.content.decode()
    assert "_auth_user_id" not in client.session


# --- Every admin is scoped -------------------------------------------------------------------------------------------


OUR_ADMINS = sorted(
    (
        (model._meta.label, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OUR_APPS
    ),
    key=lambda pair: pair[0],
)


@pytest.mark.parametrize(("label", "model_admin"), OUR_ADMINS, ids=[label for label, _ in OUR_ADMINS])
def test_every_admin_of_our_apps_is_scoped_or_for_operators_only(label, model_admin):
    assert isinstance(model_admin, ScopedAdminMixin | SuperuserOnlyAdminMixin), label
    if isinstance(model_admin, ScopedAdminMixin):
        for inline in model_admin.inlines:
            assert issubclass(inline, ScopedInlineMixin), f"{label}: {inline.__name__}"


def test_an_admin_listing_scoped_admin_mixin_after_model_admin_is_refused_when_defined():
    with pytest.raises(TypeError, match="bypassing ScopedAdminMixin"):

        class Misordered(admin.ModelAdmin, ScopedAdminMixin):
            resource = "devices"


def test_a_scoped_admin_without_a_resource_is_refused_when_defined():
    with pytest.raises(TypeError, match="needs a resource"):

        class Nameless(ScopedAdminMixin, admin.ModelAdmin):
            pass
