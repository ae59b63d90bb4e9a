"""fixtures/default_roles.json: the permission registry and the five built-in roles of data-model.md."""

from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import Permission, Role, RolePermission

REGISTRY = {
    "devices:read",
    "devices:write",
    "devices:delete",
    "devices:execute",
    "scripts:read",
    "scripts:write",
    "scripts:delete",
    "scripts:execute",
    "alerts:read",
    "alerts:write",
    "alerts:acknowledge",
    "organizations:read",
    "organizations:write",
    "organizations:delete",
    "sites:read",
    "sites:write",
    "sites:delete",
    "users:read",
    "users:write",
    "users:delete",
    "users:invite",
    "audit:read",
    "audit:export",
    "*:*",
}

EVERY_READ = {
    "devices:read",
    "scripts:read",
    "alerts:read",
    "organizations:read",
    "sites:read",
    "users:read",
    "audit:read",
}

DEFAULT_ROLES = {
    "Partner Admin": ("partner", {"*:*"}),
    "Partner Technician": (
        "partner",
        {
            "devices:read",
            "devices:execute",
            "scripts:read",
            "scripts:execute",
            "alerts:read",
            "alerts:acknowledge",
            "organizations:read",
            "sites:read",
        },
    ),
    "Partner Viewer": ("partner", EVERY_READ),
    "Org Admin": ("organization", {"*:*"}),
    "Org User": (
        "organization",
        {
            "devices:read",
            "devices:write",
            "scripts:read",
            "alerts:read",
            "alerts:acknowledge",
            "sites:read",
            "organizations:read",
        },
    ),
}


@pytest.fixture
def fixture_dirs(settings):
    # `loaddata default_roles` finds the file through FIXTURE_DIRS; set it here too so this test does not depend
    # on whether rmm/settings.py lists the project's fixtures/ folder.
    fixtures = Path(settings.BASE_DIR) / "fixtures"
    if fixtures not in [Path(folder) for folder in settings.FIXTURE_DIRS]:
        settings.FIXTURE_DIRS = [*settings.FIXTURE_DIRS, fixtures]


def load_default_roles():
    call_command("loaddata", "default_roles", verbosity=0)


def permission_names(permissions) -> set[str]:
    return {f"{p.resource}:{p.action}" for p in permissions}


def test_every_read_is_every_read_permission_of_the_registry():
    assert {p for p in REGISTRY if p.endswith(":read")} == EVERY_READ


@pytest.mark.django_db
def test_it_loads_exactly_the_registry_of_the_spec(fixture_dirs):
    load_default_roles()

    assert permission_names(Permission.objects.all()) == REGISTRY
    assert all(p.description for p in Permission.objects.all())


@pytest.mark.django_db
def test_it_loads_the_five_built_in_roles_with_their_permissions(fixture_dirs):
    load_default_roles()

    roles = Role.objects.filter(is_system=True).prefetch_related("permissions")
    assert {role.name: (role.scope, permission_names(role.permissions.all())) for role in roles} == DEFAULT_ROLES
    assert all(role.partner_id is None and role.description for role in roles)


@pytest.mark.django_db
def test_every_role_permission_is_in_the_registry(fixture_dirs):
    load_default_roles()

    registry = permission_names(Permission.objects.all())
    for _scope, permissions in DEFAULT_ROLES.values():
        assert permissions <= registry
    granted = RolePermission.objects.values_list("permission__resource", "permission__action")
    assert {f"{resource}:{action}" for resource, action in granted} <= registry


@pytest.mark.django_db
def test_loading_twice_changes_nothing(fixture_dirs):
    load_default_roles()
    first = (
        set(Permission.objects.values_list("id", "resource", "action", "description")),
        set(Role.objects.values_list("id", "name", "scope", "is_system")),
        set(RolePermission.objects.values_list("id", "role_id", "permission_id")),
    )

    load_default_roles()

    second = (
        set(Permission.objects.values_list("id", "resource", "action", "description")),
        set(Role.objects.values_list("id", "name", "scope", "is_system")),
        set(RolePermission.objects.values_list("id", "role_id", "permission_id")),
    )
    assert second == first
    assert (Permission.objects.count(), Role.objects.count(), RolePermission.objects.count()) == (24, 5, 24)
