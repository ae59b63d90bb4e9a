"""Shared fixtures: a small world of tenants and devices, the default roles, and the personas every test speaks as.

The world (fixture ``world``, a :class:`World`)::

    partner A ─┬─ org A  ─┬─ site A1: devices a1-1, a1-2 · enrollment key · group "A1 servers"
               │          └─ site A2: devices a2-1, a2-2 · enrollment key · group "A2 servers"
               │            (org-wide group "All of A", no site)
               └─ org A2 ──── site A2 main: devices a2m-1, a2m-2 · enrollment key · group "A2 main"
    partner B ─── org B  ──── site B1: devices b1-1, b1-2 · enrollment key · group "B1 servers"

Every device has a hardware row; every organization has one audit-log row.

The roles (fixture ``roles``, name → Role) are built here with the ORM, with the names and permissions of the
spec's default roles (data-model.md), so tests never depend on ``fixtures/default_roles.json``:
Partner Admin ``*:*``; Partner Technician devices read+execute, scripts read+execute, alerts read+acknowledge,
organizations read, sites read; Partner Viewer every ``read``; Org Admin ``*:*`` (inside its organization only);
Org User devices read+write, scripts read, alerts read+acknowledge, sites read, organizations read.

The personas (each a saved ``accounts.User`` with its membership; requesting one builds the world):

| fixture              | membership                                                                  |
|----------------------|-----------------------------------------------------------------------------|
| ``partner_admin``      | partner A, Partner Admin, org_access all                                  |
| ``partner_technician`` | partner A, Partner Technician, org_access all                             |
| ``viewer``             | partner A, Partner Viewer, org_access all                                 |
| ``org_admin``          | org A, Org Admin (every site)                                             |
| ``org_user``           | org A, Org User, restricted to site A1                                    |
| ``outsider``           | partner B, Partner Admin, org_access all                                  |
| ``superuser``          | none; ``is_superuser``                                                    |

For other shapes use the factories ``make_user``, ``make_partner_member`` and ``make_org_member``.

A module that asks the same world many questions can build it once with ``module_world`` (the world, the roles
and every persona, in a transaction rolled back at the module's end; each test still runs in its own savepoint).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from django.db import transaction

from accounts.models import AuditLog, OrganizationUser, PartnerUser, Permission, Role, RolePermission, User
from devices.models import Device, DeviceGroup, DeviceHardware
from orgs.models import EnrollmentKey, Organization, Partner, Site

# The permission registry of data-model.md.
REGISTRY = {
    "devices": ["read", "write", "delete", "execute"],
    "scripts": ["read", "write", "delete", "execute"],
    "alerts": ["read", "write", "acknowledge"],
    "organizations": ["read", "write", "delete"],
    "sites": ["read", "write", "delete"],
    "users": ["read", "write", "delete", "invite"],
    "audit": ["read", "export"],
    "*": ["*"],
}

EVERY_READ = [f"{resource}:read" for resource, actions in REGISTRY.items() if "read" in actions]

DEFAULT_ROLES = {
    "Partner Admin": (Role.Scope.PARTNER, ["*:*"]),
    "Partner Technician": (
        Role.Scope.PARTNER,
        [
            "devices:read",
            "devices:execute",
            "scripts:read",
            "scripts:execute",
            "alerts:read",
            "alerts:acknowledge",
            "organizations:read",
            "sites:read",
        ],
    ),
    "Partner Viewer": (Role.Scope.PARTNER, EVERY_READ),
    "Org Admin": (Role.Scope.ORGANIZATION, ["*:*"]),
    "Org User": (
        Role.Scope.ORGANIZATION,
        [
            "devices:read",
            "devices:write",
            "scripts:read",
            "alerts:read",
            "alerts:acknowledge",
            "sites:read",
            "organizations:read",
        ],
    ),
}


@dataclass
class World:
    """Two partners' tenants with devices, keys and groups; see the module docstring for the picture."""

    partner_a: Partner
    org_a: Organization
    site_a1: Site
    site_a2: Site
    org_a2: Organization
    site_a2_main: Site
    partner_b: Partner
    org_b: Organization
    site_b1: Site
    devices: dict[Site, list[Device]] = field(default_factory=dict)
    keys: dict[Site, EnrollmentKey] = field(default_factory=dict)
    groups: dict[str, DeviceGroup] = field(default_factory=dict)

    def devices_in(self, *sites: Site) -> set[Device]:
        return {device for site in sites for device in self.devices[site]}

    @property
    def all_devices(self) -> set[Device]:
        return self.devices_in(*self.devices)

    @property
    def all_sites(self) -> set[Site]:
        return set(self.devices)


def build_permissions() -> dict[str, Permission]:
    return {
        f"{resource}:{action}": Permission.objects.get_or_create(resource=resource, action=action)[0]
        for resource, actions in REGISTRY.items()
        for action in actions
    }


def build_roles(permissions: dict[str, Permission]) -> dict[str, Role]:
    built = {}
    for name, (scope, perms) in DEFAULT_ROLES.items():
        role = Role.objects.create(name=name, scope=scope, is_system=True)
        RolePermission.objects.bulk_create(RolePermission(role=role, permission=permissions[perm]) for perm in perms)
        built[name] = role
    return built


@pytest.fixture
def permissions(db) -> dict[str, Permission]:
    """The whole permission registry, ``"resource:action"`` → Permission."""
    return build_permissions()


@pytest.fixture
def roles(permissions) -> dict[str, Role]:
    """The spec's default (built-in) roles, name → Role."""
    return build_roles(permissions)


def _make_devices(org: Organization, site: Site, prefix: str) -> list[Device]:
    devices = [
        Device.objects.create(
            org=org,
            site=site,
            agent_id=hashlib.sha256(f"{prefix}-{n}".encode()).hexdigest(),
            hostname=f"{prefix}-{n}",
            os_type=Device.OsType.LINUX if n == 1 else Device.OsType.WINDOWS,
        )
        for n in (1, 2)
    ]
    DeviceHardware.objects.bulk_create(
        DeviceHardware(device=device, org=org, serial_number=device.hostname) for device in devices
    )
    return devices


def _make_key(org: Organization, site: Site) -> EnrollmentKey:
    raw = f"key-for-{site.pk}"
    return EnrollmentKey.objects.create(
        org=org,
        site=site,
        name=f"{site.name} key",
        key_prefix=raw[:8],
        key_hash=hashlib.sha256(raw.encode()).hexdigest(),
    )


def build_world() -> World:
    partner_a = Partner.objects.create(name="Partner A", slug="partner-a")
    org_a = Organization.objects.create(partner=partner_a, name="Org A", slug="org-a")
    org_a2 = Organization.objects.create(partner=partner_a, name="Org A2", slug="org-a2")
    partner_b = Partner.objects.create(name="Partner B", slug="partner-b")
    org_b = Organization.objects.create(partner=partner_b, name="Org B", slug="org-b")
    w = World(
        partner_a=partner_a,
        org_a=org_a,
        site_a1=Site.objects.create(org=org_a, name="A1"),
        site_a2=Site.objects.create(org=org_a, name="A2"),
        org_a2=org_a2,
        site_a2_main=Site.objects.create(org=org_a2, name="A2 main"),
        partner_b=partner_b,
        org_b=org_b,
        site_b1=Site.objects.create(org=org_b, name="B1"),
    )
    for site, prefix, group_name in [
        (w.site_a1, "a1", "A1 servers"),
        (w.site_a2, "a2", "A2 servers"),
        (w.site_a2_main, "a2m", "A2 main"),
        (w.site_b1, "b1", "B1 servers"),
    ]:
        w.devices[site] = _make_devices(site.org, site, prefix)
        w.keys[site] = _make_key(site.org, site)
        w.groups[group_name] = DeviceGroup.objects.create(org=site.org, site=site, name=group_name)
    w.groups["All of A"] = DeviceGroup.objects.create(org=org_a, name="All of A")
    AuditLog.objects.bulk_create(AuditLog(org=org, action="org.create") for org in (org_a, org_a2, org_b))
    return w


@pytest.fixture
def world(db) -> World:
    return build_world()


@pytest.fixture
def make_user(db):
    """``make_user("name@example.com", **fields)`` → a saved active user without memberships."""

    def make(email: str, **fields) -> User:
        return User.objects.create_user(email=email, password="correct horse battery staple", **fields)

    return make


@pytest.fixture
def make_partner_member(make_user, roles):
    """``make_partner_member(email, partner, role_name, org_access="all", selected=())`` → the member user."""

    def make(email: str, partner: Partner, role: str, org_access: str = "all", selected=()) -> User:
        user = make_user(email)
        membership = PartnerUser.objects.create(partner=partner, user=user, role=roles[role], org_access=org_access)
        membership.selected_organizations.set(selected)
        return user

    return make


@pytest.fixture
def make_org_member(make_user, roles):
    """``make_org_member(email, org, role_name, sites=())`` → the member user (no sites = every site)."""

    def make(email: str, org: Organization, role: str, sites=()) -> User:
        user = make_user(email)
        membership = OrganizationUser.objects.create(org=org, user=user, role=roles[role])
        membership.sites.set(sites)
        return user

    return make


PASSWORD = "correct horse battery staple"

# persona → (email, where, role, extra): where is a World attribute (a partner or an organization)
PERSONA_MEMBERSHIPS = {
    "partner_admin": ("partner.admin@a.example", "partner_a", "Partner Admin"),
    "partner_technician": ("technician@a.example", "partner_a", "Partner Technician"),
    "viewer": ("viewer@a.example", "partner_a", "Partner Viewer"),
    "org_admin": ("org.admin@a.example", "org_a", "Org Admin"),
    "org_user": ("org.user@a.example", "org_a", "Org User"),
    "outsider": ("admin@b.example", "partner_b", "Partner Admin"),
}


def build_persona(name: str, world: World, roles: dict[str, Role]) -> User:
    """The persona ``name`` of the table in the module docstring, saved with its membership."""
    if name == "superuser":
        return User.objects.create_superuser(email="operator@rmm.example", password=PASSWORD)
    email, where, role = PERSONA_MEMBERSHIPS[name]
    user = User.objects.create_user(email=email, password=PASSWORD)
    tenant = getattr(world, where)
    if isinstance(tenant, Partner):
        PartnerUser.objects.create(partner=tenant, user=user, role=roles[role], org_access="all")
    else:
        membership = OrganizationUser.objects.create(org=tenant, user=user, role=roles[role])
        if name == "org_user":
            membership.sites.set([world.site_a1])
    return user


@pytest.fixture
def partner_admin(world, roles) -> User:
    return build_persona("partner_admin", world, roles)


@pytest.fixture
def partner_technician(world, roles) -> User:
    return build_persona("partner_technician", world, roles)


@pytest.fixture
def viewer(world, roles) -> User:
    return build_persona("viewer", world, roles)


@pytest.fixture
def org_admin(world, roles) -> User:
    return build_persona("org_admin", world, roles)


@pytest.fixture
def org_user(world, roles) -> User:
    return build_persona("org_user", world, roles)


@pytest.fixture
def outsider(world, roles) -> User:
    return build_persona("outsider", world, roles)


@pytest.fixture
def superuser(world, db) -> User:
    return build_persona("superuser", world, {})


# --- built once per module -------------------------------------------------------------------------------------


@dataclass
class SharedWorld:
    """The world, the roles and every persona (name → User), as :func:`module_world` built them."""

    world: World
    roles: dict[str, Role]
    personas: dict[str, User]


PERSONAS = ["superuser", *PERSONA_MEMBERSHIPS]


@pytest.fixture(scope="module")
def module_world(django_db_setup, django_db_blocker) -> SharedWorld:
    """The world, the default roles and every persona, built once for a whole test module.

    For modules that ask the same world many questions (tests/test_permission_matrix.py): building it costs
    ~50 queries, which, per test, was most of such a module's time. It is built inside a transaction that is
    rolled back when the module ends; each test must still request ``db``, which runs it in a savepoint of that
    transaction, so what a test writes is rolled back and the next test sees the same world. The objects returned
    are shared between tests: read a user afresh (``User.objects.get(pk=...)``) before acting as them, since a
    user object caches its reach (rmm.authz).
    """
    with django_db_blocker.unblock(), transaction.atomic():
        world = build_world()
        roles = build_roles(build_permissions())
        personas = {name: build_persona(name, world, roles) for name in PERSONAS}
        yield SharedWorld(world=world, roles=roles, personas=personas)
        transaction.set_rollback(True)
