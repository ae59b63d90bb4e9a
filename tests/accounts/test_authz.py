"""The authorization module: reach, visible(), can(), check(), against the real database and the personas."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.contrib.auth.models import Permission as AuthPermission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import connection
from django.http import Http404
from guardian.shortcuts import assign_perm

from accounts.models import ApiToken, AuditLog, OrganizationUser, PartnerUser, Permission, Role, RolePermission, User
from devices.models import Device, DeviceGroup, DeviceHardware
from orgs.models import EnrollmentKey, Organization, Partner, Site
from rmm import authz

PERSONAS = ["partner_admin", "partner_technician", "viewer", "org_admin", "org_user", "outsider", "superuser"]


def names(queryset) -> set[str]:
    return {str(obj.name) for obj in queryset}


def visible_devices(user, perm="devices:read") -> set[Device]:
    return set(authz.visible(user, perm, Device.objects))


# --- what each persona sees ---------------------------------------------------------------------------------------

# persona → (site names, organization names, whether the org-wide group "All of A" is visible)
EXPECTED_REACH = {
    "partner_admin": ({"A1", "A2", "A2 main"}, {"Org A", "Org A2"}, True),
    "partner_technician": ({"A1", "A2", "A2 main"}, {"Org A", "Org A2"}, True),
    "viewer": ({"A1", "A2", "A2 main"}, {"Org A", "Org A2"}, True),
    "org_admin": ({"A1", "A2"}, {"Org A"}, True),
    "org_user": ({"A1"}, {"Org A"}, False),
    "outsider": ({"B1"}, {"Org B"}, False),
    "superuser": ({"A1", "A2", "A2 main", "B1"}, {"Org A", "Org A2", "Org B"}, True),
}
GROUP_OF_SITE = {"A1": "A1 servers", "A2": "A2 servers", "A2 main": "A2 main", "B1": "B1 servers"}


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_sees_exactly_the_sites_orgs_devices_keys_and_groups_in_its_reach(persona, request, world):
    user = request.getfixturevalue(persona)
    site_names, org_names, sees_org_wide_group = EXPECTED_REACH[persona]
    sites = {site for site in world.all_sites if site.name in site_names}

    assert names(authz.visible(user, "sites:read", Site.objects)) == site_names
    assert names(authz.visible(user, "organizations:read", Organization.objects)) == org_names
    assert visible_devices(user) == world.devices_in(*sites)
    assert set(authz.visible(user, "devices:read", EnrollmentKey.objects)) == {world.keys[site] for site in sites}
    expected_groups = {GROUP_OF_SITE[name] for name in site_names} | ({"All of A"} if sees_org_wide_group else set())
    assert names(authz.visible(user, "devices:read", DeviceGroup.objects)) == expected_groups
    hardware = authz.visible(user, "devices:read", DeviceHardware.objects)
    assert {row.device_id for row in hardware} == {device.pk for device in world.devices_in(*sites)}


def test_org_user_sees_only_site_a1_devices(org_user, world):
    assert visible_devices(org_user) == world.devices_in(world.site_a1)
    assert visible_devices(org_user, "devices:write") == world.devices_in(world.site_a1)
    assert visible_devices(org_user, "devices:execute") == set()


def test_org_wide_group_is_hidden_from_a_site_restricted_member(org_user, world):
    assert not authz.can(org_user, "devices:read", world.groups["All of A"])
    with pytest.raises(authz.NotFound):
        authz.check(org_user, "devices:read", world.groups["All of A"])


def test_outsider_sees_nothing_of_partner_a(outsider, world):
    partner_a_devices = world.devices_in(world.site_a1, world.site_a2, world.site_a2_main)
    assert visible_devices(outsider).isdisjoint(partner_a_devices)
    assert not authz.visible(outsider, "sites:read", Site.objects.filter(org__partner=world.partner_a)).exists()
    assert not authz.visible(outsider, "audit:read", AuditLog.objects.exclude(org=world.org_b)).exists()
    assert list(authz.visible(outsider, "partners:read", Partner.objects)) == [world.partner_b]
    for device in partner_a_devices:
        with pytest.raises(authz.NotFound):
            authz.check(outsider, "devices:read", device)


def test_every_query_is_narrowed_with_an_org_id_list(org_admin, world):
    sql = str(authz.visible(org_admin, "devices:read", Device.objects).query)
    assert '"devices"."org_id" IN' in sql


# --- partner memberships: org_access ------------------------------------------------------------------------------


def test_selected_access_with_an_empty_selection_sees_nothing(make_partner_member, world):
    user = make_partner_member("empty@a.example", world.partner_a, "Partner Admin", org_access="selected")

    assert visible_devices(user) == set()
    assert not authz.visible(user, "organizations:read", Organization.objects).exists()
    assert not authz.visible(user, "sites:read", Site.objects).exists()
    assert authz.permissions_by_org(user) == {}


def test_selected_access_with_one_selected_org_sees_only_that_org(make_partner_member, world):
    user = make_partner_member(
        "one@a.example", world.partner_a, "Partner Technician", org_access="selected", selected=[world.org_a2]
    )

    assert list(authz.visible(user, "organizations:read", Organization.objects)) == [world.org_a2]
    assert visible_devices(user) == world.devices_in(world.site_a2_main)


@pytest.fixture
def rows_from_before_the_membership_triggers(db):
    """Let cross-tenant membership rows in, as rows written before migration accounts 0005 existed could be.

    The triggers only check new rows; the reach must not widen because of an old one. The DDL is undone with the
    test's transaction.
    """
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE partner_user_organizations DISABLE TRIGGER partner_user_organizations_same_partner")
        cursor.execute("ALTER TABLE organization_user_sites DISABLE TRIGGER organization_user_sites_same_org")


def test_a_selected_org_of_another_partner_is_ignored(
    make_partner_member, world, rows_from_before_the_membership_triggers
):
    user = make_partner_member(
        "crossed@a.example", world.partner_a, "Partner Admin", org_access="selected", selected=[world.org_b]
    )

    assert visible_devices(user) == set()
    assert not authz.can(user, "organizations:read", world.org_b)


def test_access_none_sees_no_orgs_but_still_sees_its_partner(make_partner_member, world):
    user = make_partner_member("none@a.example", world.partner_a, "Partner Admin", org_access="none")

    assert not authz.visible(user, "organizations:read", Organization.objects).exists()
    assert visible_devices(user) == set()
    assert list(authz.visible(user, "partners:read", Partner.objects)) == [world.partner_a]
    assert authz.can(user, "partners:read", world.partner_a)
    assert authz.has_partner_permission(user, world.partner_a, "organizations:write")


def test_partner_is_visible_to_its_members_only(partner_technician, org_admin, superuser, world):
    assert list(authz.visible(partner_technician, "partners:read", Partner.objects)) == [world.partner_a]
    assert not authz.visible(org_admin, "partners:read", Partner.objects).exists()
    assert set(authz.visible(superuser, "partners:read", Partner.objects)) == {world.partner_a, world.partner_b}
    with pytest.raises(authz.NotFound):
        authz.check(org_admin, "partners:read", world.partner_a)


def test_only_superusers_change_a_partner(partner_admin, superuser, world):
    with pytest.raises(authz.PermissionDenied):
        authz.check(partner_admin, "partners:write", world.partner_a)
    assert not authz.visible(partner_admin, "partners:write", Partner.objects).exists()
    assert authz.can(superuser, "partners:write", world.partner_a)


# --- organization memberships -------------------------------------------------------------------------------------


def test_a_site_restriction_naming_only_another_orgs_site_reaches_nothing(
    make_org_member, world, rows_from_before_the_membership_triggers
):
    user = make_org_member("bogus@a.example", world.org_a, "Org Admin", sites=[world.site_b1])

    assert visible_devices(user) == set()
    assert not authz.visible(user, "organizations:read", Organization.objects).exists()


def test_org_admin_can_never_create_or_delete_organizations(org_admin, partner_admin, world):
    assert not authz.has_partner_permission(org_admin, world.partner_a, "organizations:write")
    assert authz.can(org_admin, "organizations:write", world.org_a)
    with pytest.raises(authz.PermissionDenied):
        authz.check(org_admin, "organizations:delete", world.org_a)
    assert not authz.visible(org_admin, "organizations:delete", Organization.objects).exists()
    with pytest.raises(authz.NotFound):
        authz.check(org_admin, "organizations:read", world.org_a2)

    assert authz.has_partner_permission(partner_admin, world.partner_a, "organizations:write")
    assert authz.can(partner_admin, "organizations:delete", world.org_a)
    assert set(authz.visible(partner_admin, "organizations:delete", Organization.objects)) == {
        world.org_a,
        world.org_a2,
    }


def test_site_restricted_member_only_reads_its_organization(make_org_member, world):
    user = make_org_member("site.admin@a.example", world.org_a, "Org Admin", sites=[world.site_a1])

    assert authz.can(user, "organizations:read", world.org_a)
    with pytest.raises(authz.PermissionDenied):
        authz.check(user, "organizations:write", world.org_a)
    assert authz.can(user, "devices:delete", world.devices[world.site_a1][0])


def test_memberships_add_up_per_site(make_user, roles, world):
    user = make_user("both@a.example")
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=roles["Partner Viewer"], org_access="all")
    OrganizationUser.objects.create(org=world.org_a, user=user, role=roles["Org User"]).sites.set([world.site_a1])

    assert visible_devices(user) == world.devices_in(world.site_a1, world.site_a2, world.site_a2_main)
    assert visible_devices(user, "devices:write") == world.devices_in(world.site_a1)
    entry = authz.reach(user).orgs[world.org_a.pk]
    assert entry.sites is None
    assert entry.sites_for("devices:read") is None
    assert entry.sites_for("devices:write") == {world.site_a1.pk}


def test_permissions_by_org_lists_effective_permissions(org_user, partner_technician, superuser, world, roles):
    assert authz.permissions_by_org(org_user) == {
        world.org_a.pk: frozenset(map(str, roles["Org User"].permissions.all()))
    }
    technician = authz.permissions_by_org(partner_technician)
    assert set(technician) == {world.org_a.pk, world.org_a2.pk}
    assert "devices:execute" in technician[world.org_a2.pk]
    assert set(authz.permissions_by_org(superuser)) == {world.org_a.pk, world.org_a2.pk, world.org_b.pk}


def test_audit_log_needs_audit_read_on_the_whole_organization(viewer, org_admin, org_user, partner_technician, world):
    assert {row.org_id for row in authz.visible(viewer, "audit:read", AuditLog.objects)} == {
        world.org_a.pk,
        world.org_a2.pk,
    }
    assert {row.org_id for row in authz.visible(org_admin, "audit:read", AuditLog.objects)} == {world.org_a.pk}
    assert not authz.visible(partner_technician, "audit:read", AuditLog.objects).exists()
    assert not authz.visible(org_user, "audit:read", AuditLog.objects).exists()


def test_users_see_themselves_and_the_members_they_manage(
    partner_admin, partner_technician, viewer, org_admin, org_user, outsider
):
    everyone_of_a = {partner_admin, partner_technician, viewer, org_admin, org_user}
    assert set(authz.visible(partner_admin, "users:read", User.objects)) == everyone_of_a
    assert set(authz.visible(org_admin, "users:read", User.objects)) == {org_admin, org_user}
    assert set(authz.visible(org_user, "users:read", User.objects)) == {org_user}
    assert set(authz.visible(outsider, "users:read", User.objects)) == {outsider}
    assert set(authz.visible(org_admin, "users:write", User.objects)) == {org_admin, org_user}

    assert authz.can(org_admin, "users:write", org_user)
    with pytest.raises(authz.PermissionDenied):
        authz.check(org_user, "users:write", org_user)
    with pytest.raises(authz.NotFound):
        authz.check(org_admin, "users:read", partner_technician)
    with pytest.raises(authz.NotFound):
        authz.check(outsider, "users:read", org_user)


def test_memberships_roles_and_tokens_are_scoped(org_admin, org_user, outsider, roles, world):
    assert set(authz.visible(org_admin, "users:read", OrganizationUser.objects)) == set(
        OrganizationUser.objects.filter(org=world.org_a)
    )
    assert list(authz.visible(org_user, "users:read", OrganizationUser.objects)) == [org_user.org_memberships.get()]
    assert not authz.visible(org_admin, "users:read", PartnerUser.objects).exists()
    assert set(authz.visible(outsider, "users:read", PartnerUser.objects)) == {outsider.partner_memberships.get()}
    assert set(authz.visible(org_user, "users:read", Role.objects)) == set(roles.values())
    assert not authz.visible(org_admin, "users:write", Role.objects.filter(partner__isnull=True)).exists()

    token = ApiToken.objects.create(user=org_user, name="laptop", key_prefix="rmmu_abc", key_hash="0" * 64)
    assert list(authz.visible(org_user, "tokens:delete", ApiToken.objects)) == [token]
    assert not authz.visible(org_admin, "tokens:read", ApiToken.objects).exists()


# --- can() and check() ----------------------------------------------------------------------------------------------

# persona → (read, write, execute) on a device of site A1
DEVICE_A1_ANSWERS = {
    "partner_admin": (True, True, True),
    "partner_technician": (True, False, True),
    "viewer": (True, False, False),
    "org_admin": (True, True, True),
    "org_user": (True, True, False),
    "outsider": (False, False, False),
    "superuser": (True, True, True),
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_can_answers_read_write_and_execute_per_persona(persona, request, world):
    user = request.getfixturevalue(persona)
    device = world.devices[world.site_a1][0]
    answers = tuple(authz.can(user, perm, device) for perm in ("devices:read", "devices:write", "devices:execute"))
    assert answers == DEVICE_A1_ANSWERS[persona]


def test_check_tells_out_of_reach_from_permission_missing(viewer, org_user, world):
    device_a1, device_a2 = world.devices[world.site_a1][0], world.devices[world.site_a2][0]

    authz.check(viewer, "devices:read", device_a1)
    with pytest.raises(authz.PermissionDenied):
        authz.check(viewer, "devices:write", device_a1)
    with pytest.raises(authz.NotFound):
        authz.check(viewer, "devices:read", world.devices[world.site_b1][0])
    with pytest.raises(authz.NotFound):
        authz.check(org_user, "devices:read", device_a2)
    with pytest.raises(authz.PermissionDenied):
        authz.check(org_user, "devices:execute", device_a1)


def test_check_exceptions_are_djangos_404_and_403():
    assert issubclass(authz.NotFound, Http404)
    assert issubclass(authz.PermissionDenied, DjangoPermissionDenied)
    assert not issubclass(authz.NotFound, DjangoPermissionDenied)


def test_can_checks_unsaved_objects_so_creations_use_the_same_rule(org_user, world):
    assert authz.can(org_user, "devices:write", EnrollmentKey(org=world.org_a, site=world.site_a1))
    assert not authz.can(org_user, "devices:write", EnrollmentKey(org=world.org_a, site=world.site_a2))
    assert not authz.can(org_user, "devices:write", DeviceGroup(org=world.org_a, name="org-wide"))


# --- wildcards ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "wanted", "expected"),
    [
        (["devices:read"], "devices:read", True),
        (["devices:read"], "devices:write", False),
        (["devices:*"], "devices:execute", True),
        (["devices:*"], "sites:read", False),
        (["*:read"], "audit:read", True),
        (["*:read"], "audit:export", False),
        (["*:*"], "users:invite", True),
        (["devices:read"], "devices:*", False),
        (["devices:*"], "devices:*", True),
        ([], "devices:read", False),
    ],
)
def test_covers_matches_wildcards_on_both_axes(held, wanted, expected):
    assert authz.covers(held, wanted) is expected


@pytest.mark.parametrize("perm", ["devices", "devices:", ":read", "a:b:c", ""])
def test_a_malformed_permission_is_a_programming_error(perm, partner_admin):
    with pytest.raises(ValueError, match="resource:action"):
        authz.visible(partner_admin, perm, Device.objects)


def test_wildcard_roles_work_on_both_axes(make_user, world):
    def member_with(email: str, *perms: str) -> User:
        role = Role.objects.create(name=email, scope=Role.Scope.PARTNER, partner=world.partner_a)
        for perm in perms:
            resource, action = perm.split(":")
            permission, _ = Permission.objects.get_or_create(resource=resource, action=action)
            RolePermission.objects.create(role=role, permission=permission)
        user = make_user(email)
        PartnerUser.objects.create(partner=world.partner_a, user=user, role=role, org_access="all")
        return user

    device_manager = member_with("devices-star@a.example", "devices:*")
    reader = member_with("read-star@a.example", "*:read")
    partner_a_devices = world.devices_in(world.site_a1, world.site_a2, world.site_a2_main)

    assert visible_devices(device_manager, "devices:execute") == partner_a_devices
    assert not authz.visible(device_manager, "sites:read", Site.objects).exists()
    assert visible_devices(reader) == partner_a_devices
    assert names(authz.visible(reader, "sites:read", Site.objects)) == {"A1", "A2", "A2 main"}
    assert visible_devices(reader, "devices:write") == set()
    with pytest.raises(authz.PermissionDenied):
        authz.check(reader, "devices:write", world.devices[world.site_a1][0])


# --- disabled and anonymous users ---------------------------------------------------------------------------------


def test_a_disabled_user_reaches_nothing(partner_admin, superuser, world):
    for user in (partner_admin, superuser):
        user.status = User.Status.DISABLED
        user.save()
        authz.clear_cache(user)

        assert visible_devices(user) == set()
        assert not authz.visible(user, "users:read", User.objects).exists()
        assert not authz.can(user, "devices:read", world.devices[world.site_a1][0])
        with pytest.raises(authz.NotFound):
            authz.check(user, "devices:read", world.devices[world.site_a1][0])
        assert not authz.has_partner_permission(user, world.partner_a, "organizations:read")
        assert authz.permissions_by_org(user) == {}


def test_an_anonymous_user_reaches_nothing(world):
    from django.contrib.auth.models import AnonymousUser

    assert visible_devices(AnonymousUser()) == set()
    assert visible_devices(None) == set()


# --- guardian object grants ---------------------------------------------------------------------------------------


def test_a_guardian_grant_on_one_site_gives_exactly_that_site_and_its_devices(make_user, world):
    user = make_user("guest@example.com")
    assign_perm("view_site", user, world.site_a2)

    assert list(authz.visible(user, "sites:read", Site.objects)) == [world.site_a2]
    assert visible_devices(user) == world.devices_in(world.site_a2)
    assert visible_devices(user, "devices:write") == set()
    assert list(authz.visible(user, "devices:read", EnrollmentKey.objects)) == [world.keys[world.site_a2]]
    assert names(authz.visible(user, "devices:read", DeviceGroup.objects)) == {"A2 servers"}
    assert not authz.visible(user, "organizations:read", Organization.objects).exists()

    assert authz.can(user, "sites:read", world.site_a2)
    with pytest.raises(authz.PermissionDenied):
        authz.check(user, "sites:write", world.site_a2)
    with pytest.raises(authz.NotFound):
        authz.check(user, "sites:read", world.site_a1)
    with pytest.raises(authz.NotFound):
        authz.check(user, "devices:read", world.devices[world.site_a1][0])


def test_a_change_grant_on_a_site_allows_writing_its_devices(make_user, world):
    user = make_user("writer@example.com")
    assign_perm("change_site", user, world.site_b1)

    assert visible_devices(user, "devices:write") == world.devices_in(world.site_b1)
    assert authz.can(user, "sites:write", world.site_b1)
    assert not authz.can(user, "devices:execute", world.devices[world.site_b1][0])


def test_a_guardian_grant_on_a_device_group_gives_only_that_group(make_user, world):
    user = make_user("group.guest@example.com")
    group = world.groups["All of A"]
    assign_perm("view_devicegroup", user, group)

    assert list(authz.visible(user, "devices:read", DeviceGroup.objects)) == [group]
    assert visible_devices(user) == set()
    assert authz.can(user, "devices:read", group)
    with pytest.raises(authz.PermissionDenied):
        authz.check(user, "devices:write", group)


def test_a_guardian_grant_on_a_device_reaches_the_device_and_its_rows(make_user, world):
    user = make_user("device.guest@example.com")
    device = world.devices[world.site_b1][1]
    assign_perm("view_device", user, device)

    assert visible_devices(user) == {device}
    assert [row.device_id for row in authz.visible(user, "devices:read", DeviceHardware.objects)] == [device.pk]
    assert authz.can(user, "devices:read", device.hardware)
    assert not authz.can(user, "devices:write", device)


def test_a_guardian_codename_spelled_resource_action_is_taken_literally(make_user, world):
    user = make_user("runner@example.com")
    device = world.devices[world.site_a1][0]
    execute = AuthPermission.objects.create(
        codename="devices:execute", name="Run commands", content_type=ContentType.objects.get_for_model(Device)
    )
    assign_perm(execute, user, device)

    assert authz.can(user, "devices:execute", device)
    assert not authz.can(user, "devices:read", device)
    assert authz.guardian_permission("devices", "device", "devices:*") is None
    assert authz.guardian_permission("devices", "device", "users:read") is None
    assert authz.guardian_permission("orgs", "site", "devices:execute") == "devices:execute"
    assert authz.guardian_permission("orgs", "site", "add_site") is None
    assert authz.guardian_permission("orgs", "partner", "view_partner") is None


def test_a_guardian_grant_through_a_django_group_counts(make_user, world):
    user = make_user("grouped@example.com")
    technicians = Group.objects.create(name="night shift")
    user.groups.add(technicians)
    assign_perm("view_site", technicians, world.site_a1)

    assert visible_devices(user) == world.devices_in(world.site_a1)


# --- caching --------------------------------------------------------------------------------------------------------


def test_reach_is_computed_once_per_request(partner_technician, world, django_assert_num_queries):
    user = User.objects.get(pk=partner_technician.pk)  # a fresh object, as each request gets
    # memberships of both kinds, role permissions, the organizations reached, guardian grants
    with django_assert_num_queries(5):
        authz.reach(user)
    with django_assert_num_queries(1):
        list(authz.visible(user, "devices:read", Device.objects))
    with django_assert_num_queries(1):
        list(authz.visible(user, "sites:read", Site.objects))
        assert authz.can(user, "devices:execute", world.devices[world.site_a1][0])
        assert authz.permissions_by_org(user)

    authz.clear_cache(user)
    with django_assert_num_queries(5):
        authz.reach(user)


def test_superusers_and_disabled_users_cost_no_membership_queries(superuser, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert authz.reach(superuser).is_superuser


# --- guard rails --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["partner_admin", "superuser"])
def test_visible_refuses_a_model_it_does_not_know_how_to_scope(persona, request):
    with pytest.raises(TypeError, match="not scoped"):
        authz.visible(request.getfixturevalue(persona), "devices:read", ContentType.objects)


SQL_WORDS = ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", "WHERE", "JOIN", " FROM ")
FORBIDDEN_CALLS = {"raw", "extra", "RawSQL", "execute", "executemany", "cursor"}


def test_no_query_in_the_module_is_built_from_strings():
    source = Path(authz.__file__).read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in FORBIDDEN_CALLS, f"line {node.lineno}: {name}() builds SQL by hand"
            assert name != "format", f"line {node.lineno}: str.format() has no place here"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            assert not (isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)), (
                f"line {node.lineno}: %-formatting"
            )
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in SQL_WORDS:
                assert word not in node.value, f"line {node.lineno}: string looks like SQL ({word.strip()})"
        if isinstance(node, ast.Name | ast.Attribute):
            identifier = node.id if isinstance(node, ast.Name) else node.attr
            assert identifier not in {"RawSQL", "connection", "connections"}, f"line {node.lineno}: {identifier}"
