"""The one authorization module: who may see and do what. The API, the admin and management commands all call it.

Vocabulary
==========

A *permission* is ``"resource:action"`` (``"devices:execute"``); ``*`` is a wildcard on either axis, so a held
``"devices:*"``, ``"*:read"`` or ``"*:*"`` covers ``"devices:read"``. Coverage is one-way: asking for
``"devices:*"`` is satisfied only by a held ``"devices:*"`` or ``"*:*"`` (see :func:`covers`).

A user's *reach* is the union of their memberships (spec: technician-api.md, "Access rules"):

- ``PartnerUser`` (partner, role, ``org_access``): the partner's organizations, whole, with the role's permissions —
  ``all`` every organization of the partner, ``selected`` only the listed ones (an *empty* selection reaches
  nothing, never everything), ``none`` no organization at all. The membership also carries the role's permissions
  at *partner level* (creating or deleting an organization, reading the partner, managing partner users), unless
  the role is organization-scoped. A selected organization of another partner is ignored.
- ``OrganizationUser`` (org, role, sites): that organization with the role's permissions; with sites listed, only
  those sites (sites of another organization are ignored, and a list holding only such sites reaches nothing).
  It never grants partner-level permissions: an Org Admin (``*:*``) can never create, see or delete other
  organizations, nor delete its own (deleting an organization needs partner scope).
- django-guardian object grants (``UserObjectPermission``, and ``GroupObjectPermission`` through the user's Django
  groups), mapped to our permissions as described in :func:`guardian_permission`. A grant reaches exactly the
  object granted, with two documented extensions: a grant on a **Site** acts like a membership restricted to that
  one site whose role holds ``sites:<action>`` and ``devices:<action>`` (so it reaches the site, its devices and
  their rows, its enrollment keys and its site-bound groups); a grant on a **Device** also reaches the device's own
  rows (inventory, telemetry, commands, group memberships).
- Superusers reach everything; a user whose status is ``disabled`` (or an anonymous user) reaches nothing —
  not even a disabled superuser.

Rows bound to a site (devices, enrollment keys, device rows, site-bound groups, sites themselves) are reached by
whole-organization reach or by reach of their site. Organization-level rows (a group without a site, the audit log,
memberships, users) need whole-organization reach: a site-restricted member cannot tell which of them concern
their sites. The organization row itself is the exception: a site-restricted member may *read* it.

Answers
=======

``visible(user, perm, queryset)`` filters any tenant-owned queryset to what the user may see for ``perm``;
``can(user, perm, obj)`` answers for one object (saved or not, so creations are checked the same way);
``check(user, perm, obj)`` raises :class:`NotFound` when the object is outside the reach altogether (the API
answers 404, as if it did not exist) and :class:`PermissionDenied` when it is inside but the permission is missing
(403). Both subclass Django's ``Http404`` / ``PermissionDenied``, so Django and DRF already turn them into
404 / 403 while callers can still tell them apart.

Comparing reaches
=================

``beyond(user, other_reach)`` lists where ``other_reach`` exceeds the user's own (a partner-level permission, all
of a partner's organizations, an organization, a site, an object grant). It is the one comparison behind the
no-escalation rule of ``accounts.services``: the reach a membership would give (``membership_reach``) must not be
beyond its grantor, and a person (``potential_reach``, a disabled account's included) or a membership can only be
changed by someone whose reach covers theirs. ``org_access = all`` is covered only by ``all`` (``Reach.every_org``):
it also reaches organizations made later.

The reach is computed once and cached on the user object (``user._rmm_reach``), which Django builds afresh for
every request; call :func:`clear_cache` after changing a user's memberships within one request or command.
Every filter is built from Django ``Q`` objects over id lists taken from the (small) reach, so the SQL is
``org_id IN (…)`` and uses the ``(org_id, …)`` indexes.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import models
from django.db.models import F, Q, QuerySet
from django.http import Http404
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from accounts.models import (
    ApiToken,
    OrganizationUser,
    PartnerUser,
    Permission,
    Role,
    RolePermission,
    RoleScope,
    User,
    UserStatus,
)
from alerts.models import Alert, AlertRule, MaintenanceWindow, Notification, NotificationChannel
from devices.models import Device
from orgs.models import Organization, Partner, Site
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion

__all__ = [
    "Excess",
    "NotFound",
    "OrgReach",
    "PermissionDenied",
    "Reach",
    "beyond",
    "can",
    "check",
    "clear_cache",
    "covers",
    "guardian_permission",
    "has_partner_permission",
    "holds_anywhere",
    "in_reach",
    "membership_reach",
    "permissions_by_org",
    "potential_reach",
    "reach",
    "visible",
]

WILDCARD = "*"
_CACHE_ATTR = "_rmm_reach"


class NotFound(Http404):
    """The object is outside the user's reach: answer exactly as if it did not exist (404 ``not_found``)."""


class PermissionDenied(DjangoPermissionDenied):
    """The object is inside the user's reach but the role lacks the permission (403 ``permission_denied``)."""


# --- permissions ------------------------------------------------------------------------------------------------


def _split(perm: str) -> tuple[str, str]:
    """``"devices:read"`` → ``("devices", "read")``; anything else is a programming error."""
    resource, sep, action = perm.partition(":") if isinstance(perm, str) else ("", "", "")
    if not sep or not resource or not action or ":" in action:
        raise ValueError(f"A permission is 'resource:action', got {perm!r}.")
    return resource, action


def covers(held: Iterable[str], wanted: str) -> bool:
    """True when one of the ``held`` permissions covers ``wanted``; ``*`` in a held permission matches anything
    on its axis, while ``*`` in ``wanted`` is only matched by ``*`` (asking for ``devices:*`` asks for all of them).
    """
    resource, action = _split(wanted)
    for perm in held:
        held_resource, held_action = _split(perm)
        if held_resource in (resource, WILDCARD) and held_action in (action, WILDCARD):
            return True
    return False


def _read_only(perms: Iterable[str]) -> frozenset[str]:
    """The read permissions among ``perms`` (``*`` actions narrowed to ``read``)."""
    narrowed = set()
    for perm in perms:
        resource, action = _split(perm)
        if action in ("read", WILDCARD):
            narrowed.add(resource + ":read")
    return frozenset(narrowed)


# --- guardian grants --------------------------------------------------------------------------------------------

# The resource a guardian grant on an object of each model speaks for. Grants on other models are ignored.
_GRANTABLE_RESOURCE: dict[tuple[str, str], str] = {
    ("orgs", "organization"): "organizations",
    ("orgs", "site"): "sites",
    ("orgs", "enrollmentkey"): "devices",
    ("devices", "device"): "devices",
    ("devices", "devicegroup"): "devices",
    ("accounts", "user"): "users",
}
_SITE_KEY = ("orgs", "site")
_DEVICE_KEY = ("devices", "device")
# Django's auto-created codenames: view_<model>, change_<model>, delete_<model>. add_<model> means nothing on an
# object that already exists, so it grants nothing.
_GUARDIAN_VERBS = {"view": "read", "change": "write", "delete": "delete"}


def guardian_permission(app_label: str, model: str, codename: str) -> str | None:
    """The permission a guardian grant of ``codename`` on an object of ``app_label.model`` stands for, or None.

    - ``view_<model>`` / ``change_<model>`` / ``delete_<model>`` (the codenames Django creates for every model)
      map to ``<resource>:read`` / ``write`` / ``delete``, where the resource is the model's: organization →
      ``organizations``, site → ``sites``, device, device group and enrollment key → ``devices``, user → ``users``.
    - A codename spelled ``<resource>:<action>`` (an ``auth.Permission`` row created for that content type, e.g.
      ``devices:execute`` on Device) is taken literally when the resource is the model's (on a Site, ``devices``
      is accepted too) and the action is not ``*``: an object grant names one action explicitly.
    - Anything else (``add_*``, other models, wildcards) grants nothing.
    """
    resource = _GRANTABLE_RESOURCE.get((app_label, model))
    if resource is None:
        return None
    if ":" in codename:
        try:
            granted_resource, action = _split(codename)
        except ValueError:
            return None
        allowed = {resource, "devices"} if (app_label, model) == _SITE_KEY else {resource}
        if granted_resource not in allowed or action == WILDCARD:
            return None
        return codename
    verb, _, codename_model = codename.partition("_")
    verb_action = _GUARDIAN_VERBS.get(verb)
    if verb_action is None or codename_model != model:
        return None
    return resource + ":" + verb_action


def _normalise_pk(object_pk: str) -> str | None:
    """Guardian stores object ids as text; every grantable model has a UUID key, so compare canonical UUIDs."""
    try:
        return str(uuid.UUID(object_pk))
    except (TypeError, ValueError):
        return None


# --- the reach --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgReach:
    """What a user reaches in one organization.

    ``whole_org`` is True when some membership reaches the whole organization, with ``org_permissions``;
    ``site_permissions`` holds what site-restricted memberships and Site grants add, per site.
    """

    org_id: uuid.UUID
    partner_id: uuid.UUID
    whole_org: bool
    org_permissions: frozenset[str]
    site_permissions: Mapping[uuid.UUID, frozenset[str]] = field(default_factory=dict)

    @property
    def permissions(self) -> frozenset[str]:
        """Every permission held anywhere in the organization (some maybe on some sites only)."""
        return self.org_permissions.union(*self.site_permissions.values())

    @property
    def sites(self) -> frozenset[uuid.UUID] | None:
        """The site restriction: None for the whole organization, else the sites reached."""
        return None if self.whole_org else frozenset(self.site_permissions)

    def sites_for(self, perm: str) -> frozenset[uuid.UUID] | None:
        """Where ``perm`` is held: None for the whole organization, else the sites (maybe none)."""
        if self.whole_org and covers(self.org_permissions, perm):
            return None
        return frozenset(site for site, perms in self.site_permissions.items() if covers(perms, perm))


@dataclass(frozen=True)
class Reach:
    """Everything a user reaches, computed once per request by :func:`reach`.

    ``is_active`` is False for anonymous and disabled users, who reach nothing (not even their own rows).
    ``orgs``: organization id → :class:`OrgReach`. ``partners``: partner id → partner-level permissions, one entry
    per partner membership (empty for an organization-scoped role). ``object_grants``: (app label, model) →
    canonical object id → permissions, from guardian (Site grants are folded into ``orgs`` instead).
    ``every_org``: partner id → the permissions held in *every* organization of that partner, those made later
    included (a membership with ``org_access = all``); a selection that happens to list every organization today
    is not in it.
    """

    user_id: Any = None
    is_active: bool = False
    is_superuser: bool = False
    orgs: Mapping[uuid.UUID, OrgReach] = field(default_factory=dict)
    partners: Mapping[uuid.UUID, frozenset[str]] = field(default_factory=dict)
    every_org: Mapping[uuid.UUID, frozenset[str]] = field(default_factory=dict)
    object_grants: Mapping[tuple[str, str], Mapping[str, frozenset[str]]] = field(default_factory=dict)

    def whole_orgs_with(self, perm: str) -> list[uuid.UUID]:
        """Organizations where ``perm`` is held on the whole organization."""
        return [org_id for org_id, entry in self.orgs.items() if entry.sites_for(perm) is None]

    def sites_with(self, perm: str) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """(organizations, sites) where ``perm`` is held only on some sites; the organizations are those sites'."""
        orgs: list[uuid.UUID] = []
        sites: list[uuid.UUID] = []
        for org_id, entry in self.orgs.items():
            reached = entry.sites_for(perm)
            if reached:
                orgs.append(org_id)
                sites.extend(reached)
        return orgs, sites

    def partners_with(self, perm: str) -> list[uuid.UUID]:
        """Partners where ``perm`` is held at partner level."""
        return [partner_id for partner_id, perms in self.partners.items() if covers(perms, perm)]

    def granted_ids(self, key: tuple[str, str], perm: str) -> list[str]:
        """Ids of the objects of model ``key`` granted ``perm`` through guardian."""
        return [pk for pk, perms in self.object_grants.get(key, {}).items() if covers(perms, perm)]


def reach(user) -> Reach:
    """The user's :class:`Reach`, computed on first use and cached on the user object for the rest of the request."""
    if user is None:
        return Reach()
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    computed = _compute_reach(user)
    setattr(user, _CACHE_ATTR, computed)
    return computed


def clear_cache(user) -> None:
    """Forget the cached reach, e.g. after changing the user's memberships or grants within one request."""
    if user is not None and hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def potential_reach(user) -> Reach:
    """What ``user`` reaches, or would reach again if their account were enabled: a disabled account keeps its
    memberships and grants, and whoever may enable it or set its password gets them back. Computed afresh (not
    cached), for deciding who may manage that person (``accounts.services.may_manage_user``)."""
    return _compute_reach(user, even_if_disabled=True)


def _compute_reach(user, *, even_if_disabled: bool = False) -> Reach:
    if not getattr(user, "is_authenticated", False) or (
        getattr(user, "status", None) == UserStatus.DISABLED and not even_if_disabled
    ):
        return Reach(user_id=getattr(user, "pk", None))
    if user.is_superuser:
        return Reach(user_id=user.pk, is_active=True, is_superuser=True)

    partner_rows = list(
        PartnerUser.objects.filter(user_id=user.pk).values_list(
            "id", "partner_id", "org_access", "role_id", "role__scope"
        )
    )
    org_rows = list(
        OrganizationUser.objects.filter(user_id=user.pk).values_list("id", "org_id", "org__partner_id", "role_id")
    )
    role_perms = _role_permissions({row[3] for row in partner_rows} | {row[3] for row in org_rows})
    acc = _Accumulator()
    partners, every_org = _add_partner_memberships(acc, partner_rows, role_perms)
    _add_organization_memberships(acc, org_rows, role_perms)
    object_grants, site_grants = _guardian_grants(user)
    if site_grants:
        sites = Site.objects.filter(id__in=list(site_grants)).values_list("id", "org_id", "org__partner_id")
        for site_id, org_id, partner_id in sites:
            acc.add_site(org_id, partner_id, site_id, site_grants[str(site_id)])
    return Reach(
        user_id=user.pk,
        is_active=True,
        orgs=acc.orgs(),
        partners=partners,
        every_org=every_org,
        object_grants=object_grants,
    )


class _Accumulator:
    """Permissions gathered per organization (whole) and per site while the reach is computed."""

    def __init__(self) -> None:
        self.whole: dict[uuid.UUID, set[str]] = defaultdict(set)
        self.by_site: dict[uuid.UUID, dict[uuid.UUID, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.partner_of: dict[uuid.UUID, uuid.UUID] = {}

    def add_org(self, org_id: uuid.UUID, partner_id: uuid.UUID, perms: frozenset[str]) -> None:
        self.whole[org_id] |= perms
        self.partner_of[org_id] = partner_id

    def add_site(self, org_id: uuid.UUID, partner_id: uuid.UUID, site_id: uuid.UUID, perms: Iterable[str]) -> None:
        self.by_site[org_id][site_id] |= set(perms)
        self.partner_of[org_id] = partner_id

    def orgs(self) -> dict[uuid.UUID, OrgReach]:
        return {
            org_id: OrgReach(
                org_id=org_id,
                partner_id=self.partner_of[org_id],
                whole_org=org_id in self.whole,
                org_permissions=frozenset(self.whole.get(org_id, ())),
                site_permissions={site: frozenset(perms) for site, perms in self.by_site.get(org_id, {}).items()},
            )
            for org_id in self.whole.keys() | self.by_site.keys()
        }


def _add_partner_memberships(
    acc: _Accumulator, rows: list[tuple], role_perms
) -> tuple[dict[uuid.UUID, frozenset[str]], dict[uuid.UUID, frozenset[str]]]:
    """Add the organizations reached through partner memberships; return the partner-level permissions and the
    permissions held in every organization of a partner (``org_access = all``), both by partner id."""
    partners: dict[uuid.UUID, frozenset[str]] = {}
    every_org: dict[uuid.UUID, frozenset[str]] = {}
    role_of_partner: dict[uuid.UUID, uuid.UUID] = {}
    all_access, selected_memberships = [], []
    for membership_id, partner_id, org_access, role_id, role_scope in rows:
        # The database refuses an organization-scoped role here (accounts migration 0005), but only for rows
        # written since; such a role must never become partner-level power (creating and deleting organizations).
        partners[partner_id] = frozenset() if role_scope == RoleScope.ORGANIZATION else role_perms[role_id]
        role_of_partner[partner_id] = role_id
        if org_access == PartnerUser.OrgAccess.ALL:
            all_access.append(partner_id)
            every_org[partner_id] = role_perms[role_id]
        elif org_access == PartnerUser.OrgAccess.SELECTED:
            selected_memberships.append(membership_id)
    org_filters = []
    if all_access:
        org_filters.append(Q(partner_id__in=all_access))
    if selected_memberships:
        # Same-partner is enforced by a trigger for new rows; checked again so an older row cannot widen a reach.
        selection = PartnerUser.selected_organizations.through.objects.filter(
            partneruser_id__in=selected_memberships, organization__partner_id=F("partneruser__partner_id")
        )
        org_filters.append(Q(id__in=selection.values("organization_id")))
    if org_filters:
        # A user has at most one membership per partner and an organization has one partner, so each organization
        # found is attributed to its membership by partner_id alone.
        reached = Organization.objects.filter(functools.reduce(operator.or_, org_filters))
        for org_id, partner_id in reached.values_list("id", "partner_id"):
            acc.add_org(org_id, partner_id, role_perms[role_of_partner[partner_id]])
    return partners, every_org


def _add_organization_memberships(acc: _Accumulator, rows: list[tuple], role_perms) -> None:
    """Add organization memberships: the whole organization, or only the sites listed.

    A listed site of another organization (refused by a trigger for new rows) is ignored, and a list holding only
    such sites reaches nothing: an empty scope never means everything.
    """
    listed: dict[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]] = defaultdict(list)
    if rows:
        through = OrganizationUser.sites.through.objects.filter(organizationuser_id__in=[row[0] for row in rows])
        for membership_id, site_id, site_org_id in through.values_list(
            "organizationuser_id", "site_id", "site__org_id"
        ):
            listed[membership_id].append((site_id, site_org_id))
    for membership_id, org_id, partner_id, role_id in rows:
        if membership_id not in listed:
            acc.add_org(org_id, partner_id, role_perms[role_id])
            continue
        for site_id, site_org_id in listed[membership_id]:
            if site_org_id == org_id:
                acc.add_site(org_id, partner_id, site_id, role_perms[role_id])


def _role_permissions(role_ids: set[uuid.UUID]) -> defaultdict[uuid.UUID, frozenset[str]]:
    perms: defaultdict[uuid.UUID, set[str]] = defaultdict(set)
    if role_ids:
        rows = RolePermission.objects.filter(role_id__in=role_ids)
        for role_id, resource, action in rows.values_list("role_id", "permission__resource", "permission__action"):
            perms[role_id].add(resource + ":" + action)
    return defaultdict(frozenset, {role_id: frozenset(held) for role_id, held in perms.items()})


def _guardian_grants(user) -> tuple[dict[tuple[str, str], dict[str, frozenset[str]]], dict[str, set[str]]]:
    """The user's guardian grants (direct and through Django groups) in one query, as (object grants, site grants).

    Only guardian's generic object-permission models (the default) are read.
    """
    columns = ("content_type__app_label", "content_type__model", "permission__codename", "object_pk")
    direct = get_user_obj_perms_model()._default_manager.filter(user_id=user.pk).values_list(*columns)
    via_groups = get_group_obj_perms_model()._default_manager.filter(group__user=user.pk).values_list(*columns)
    objects: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    sites: dict[str, set[str]] = defaultdict(set)
    for app_label, model, codename, object_pk in direct.union(via_groups):
        perm = guardian_permission(app_label, model, codename)
        pk = _normalise_pk(object_pk)
        if perm is None or pk is None:
            continue
        if (app_label, model) == _SITE_KEY:
            sites[pk].add(perm)
            resource, action = _split(perm)
            if resource == "sites":
                sites[pk].add("devices:" + action)
        else:
            objects[(app_label, model)][pk].add(perm)
    frozen = {key: {pk: frozenset(perms) for pk, perms in grants.items()} for key, grants in objects.items()}
    return frozen, sites


def permissions_by_org(user) -> dict[uuid.UUID, frozenset[str]]:
    """Organization id → every permission the user holds there (some perhaps on some sites only: see
    :meth:`OrgReach.sites_for`). A superuser gets every organization with ``*:*``."""
    current = reach(user)
    if current.is_superuser:
        return {org_id: frozenset({"*:*"}) for org_id in Organization.objects.values_list("id", flat=True)}
    return {org_id: entry.permissions for org_id, entry in current.orgs.items()}


def has_partner_permission(user, partner: Partner | uuid.UUID, perm: str) -> bool:
    """May the user do ``perm`` at partner level (e.g. ``organizations:write`` to create an organization)?

    Only partner memberships with a partner- or system-scoped role carry partner-level permissions; organization
    memberships never do.
    """
    current = reach(user)
    _split(perm)
    if current.is_superuser:
        return True
    partner_id = partner.pk if isinstance(partner, Partner) else partner
    return covers(current.partners.get(partner_id, ()), perm)


def holds_anywhere(user, perm: str) -> bool:
    """Does the user hold ``perm`` somewhere: on an organization or a site of their reach, at partner level, or
    through a guardian grant? For deciding whether to offer a page or a button at all (the admin's "may this user
    add devices here?" before any object exists); every object is still checked with :func:`can`."""
    _split(perm)
    current = reach(user)
    if not current.is_active:
        return False
    if current.is_superuser:
        return True
    return (
        any(covers(entry.permissions, perm) for entry in current.orgs.values())
        or any(covers(held, perm) for held in current.partners.values())
        or any(covers(held, perm) for grants in current.object_grants.values() for held in grants.values())
    )


# --- comparing reaches: nobody hands out, or takes over, more than they hold ------------------------------------


def in_reach(user, obj: models.Model) -> bool:
    """Is ``obj`` inside the user's reach at all, whatever the permission? (Reading back a reference, e.g. the
    organizations a membership selects, shows only those inside the reader's reach.)"""
    current = reach(user)
    return current.is_superuser or _held_on(current, obj) is not None


def membership_reach(
    *,
    permissions: Iterable[str],
    partner_id: uuid.UUID | None = None,
    org_access: str | None = None,
    organizations: Iterable[Organization] = (),
    org: Organization | None = None,
    sites: Iterable[Site] = (),
) -> Reach:
    """The reach one membership gives, as :func:`reach` would compute it for a user holding only that membership.

    A partner membership (``partner_id``): ``permissions`` at partner level and, by ``org_access``, in every
    organization of the partner (``all``), in ``organizations`` (``selected``), or in none (``none``; ``None``
    describes a custom role being defined, which reaches no organization by itself). An organization membership
    (``org``): ``permissions`` on the whole organization, or on ``sites`` only.
    """
    held = frozenset(permissions)
    acc = _Accumulator()
    partners, every_org = {}, {}
    if partner_id is not None:
        partners[partner_id] = held
        if org_access == PartnerUser.OrgAccess.ALL:
            every_org[partner_id] = held
        elif org_access == PartnerUser.OrgAccess.SELECTED:
            for selected in organizations:
                acc.add_org(selected.pk, selected.partner_id, held)
    if org is not None:
        sites = list(sites)
        if not sites:
            acc.add_org(org.pk, org.partner_id, held)
        for site in sites:
            acc.add_site(org.pk, org.partner_id, site.pk, held)
    return Reach(is_active=True, orgs=acc.orgs(), partners=partners, every_org=every_org)


@dataclass(frozen=True)
class Excess:
    """One way a reach exceeds a user's own: ``where`` is ``"partner"`` (partner-level permissions),
    ``"every_org"`` (every organization of partner ``id``, present and future), ``"org"`` (the whole organization
    ``id``), ``"site"`` (site ``id`` of organization ``org_id``) or ``"object"`` (a guardian grant on object ``id``
    of model ``model``); ``permissions`` are those not held there; ``outside`` is True when the place itself is
    outside the user's reach (then ``permissions`` are all that the other reach holds there)."""

    where: str
    id: Any
    permissions: frozenset[str] = frozenset()
    outside: bool = False
    org_id: Any = None
    model: tuple[str, str] | None = None


def beyond(user, other: Reach) -> list[Excess]:
    """Everything ``other`` reaches that ``user`` does not hold themselves, place by place; empty when ``user``'s
    reach covers ``other``. The one comparison behind the no-escalation rule (``accounts.services``): a grant is
    refused when the reach it gives is beyond its grantor, a person cannot be changed by someone whose reach does
    not cover theirs.

    Covering means: every partner-level permission held at partner level; ``all`` of a partner's organizations
    only with ``all`` there (a selection listing every organization today misses those made tomorrow); a whole
    organization only with the whole organization; a site with its organization or that site; each permission
    held in the same place (wildcards count only against held wildcards, see :func:`covers`). A superuser is
    covered by superusers only.
    """
    current = reach(user)
    if current.is_superuser:
        return []
    if other.is_superuser:
        return [Excess("superuser", None, outside=True)]
    excess: list[Excess] = []

    def compare(where: str, ident: Any, held: frozenset[str] | None, wanted: frozenset[str], **extra) -> None:
        if held is None:
            excess.append(Excess(where, ident, wanted, outside=True, **extra))
            return
        missing = frozenset(perm for perm in wanted if not covers(held, perm))
        if missing:
            excess.append(Excess(where, ident, missing, **extra))

    for partner_id, wanted in other.partners.items():
        compare("partner", partner_id, current.partners.get(partner_id), wanted)
    for partner_id, wanted in other.every_org.items():
        compare("every_org", partner_id, current.every_org.get(partner_id), wanted)
    for org_id, entry in other.orgs.items():
        mine = current.orgs.get(org_id)
        if entry.whole_org:
            compare("org", org_id, mine.org_permissions if mine and mine.whole_org else None, entry.org_permissions)
        for site_id, wanted in entry.site_permissions.items():
            held = None
            if mine is not None and (mine.whole_org or site_id in mine.site_permissions):
                held = mine.org_permissions.union(mine.site_permissions.get(site_id, ()))
            compare("site", site_id, held, wanted, org_id=org_id)
    for key, grants in other.object_grants.items():
        model = _model_for(key)
        objects = {str(obj.pk): obj for obj in model._default_manager.filter(pk__in=list(grants))}
        for pk, wanted in grants.items():
            obj = objects.get(pk)
            held = _held_on(current, obj) if obj is not None else frozenset(wanted)  # a grant on nothing: harmless
            compare("object", pk, held, wanted, model=key)
    return excess


def _model_for(key: tuple[str, str]) -> type[models.Model]:
    from django.apps import apps

    return apps.get_model(*key)


# --- how each model is scoped -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """Where a model keeps the ids its rows are scoped by (Django lookups, relative to the model)."""

    org: str | None = None  # the organization id
    site: str | None = None  # the site id; without one, rows need whole-organization reach
    device: str | None = None  # the device id: a guardian grant on that device reaches the row
    partner: str | None = None  # the partner id: reached with partner-level permissions
    own: str | None = None  # a user id: the requester's own rows are reached with ``own_permission``
    own_permission: str = "*:read"
    read_from_sites: bool = False  # the organization row: a site-restricted member may read it
    # A library row (scripts): read and run by whoever holds that permission anywhere in its organization (a site
    # will do) or, for a partner's row, in any organization of that partner. Writing it keeps the rules above.
    library: bool = False


_SCOPES: dict[type[models.Model], _Scope] = {
    Organization: _Scope(org="id", read_from_sites=True),
    Site: _Scope(org="org_id", site="id"),
    Device: _Scope(org="org_id", site="site_id", device="id"),
    OrganizationUser: _Scope(org="org_id", own="user_id"),
    PartnerUser: _Scope(partner="partner_id", own="user_id"),
    ApiToken: _Scope(own="user_id", own_permission="*:*"),  # personal tokens: their owner manages them
    # Alerting: rules and channels belong to an organization or (partner-wide) to a partner; a partner-wide row is
    # reached with partner-level permissions only.
    AlertRule: _Scope(org="org_id", partner="partner_id"),
    NotificationChannel: _Scope(org="org_id", partner="partner_id"),
    Notification: _Scope(org="org_id", partner="partner_id"),
    Alert: _Scope(org="org_id", site="site_id", device="device_id"),
    MaintenanceWindow: _Scope(org="org_id", site="site_id"),
    # Scripts: a library script belongs to an organization or (usable in all its organizations) to a partner. A run
    # may span sites, so it needs whole-organization reach, except for the person who started it.
    Script: _Scope(org="org_id", partner="partner_id", library=True),
    ScriptVersion: _Scope(org="script__org_id", partner="script__partner_id", library=True),
    ScriptRun: _Scope(org="org_id", own="requested_by_id", own_permission="scripts:read"),
    ScriptSchedule: _Scope(org="org_id", site="site_id"),
}


@functools.cache
def _scope_for(model: type[models.Model]) -> _Scope:
    """The registered scope, or one inferred from an ``org`` field plus a ``site`` or ``device`` field."""
    model = _concrete(model)
    if model in _SCOPES:
        return _SCOPES[model]
    if not _has_field(model, "org"):
        raise TypeError(f"{model.__name__} is not scoped by the authorization module (no org field).")
    if _has_field(model, "site"):
        return _Scope(org="org_id", site="site_id")
    if _has_field(model, "device"):
        return _Scope(org="org_id", site="device__site_id", device="device_id")
    return _Scope(org="org_id")


def _has_field(model: type[models.Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _concrete(model: type[models.Model]) -> type[models.Model]:
    """The model whose table holds ``model``'s rows: itself, or the model a proxy stands for."""
    concrete = model._meta.concrete_model
    if concrete is None:  # only abstract models have none, and they have no rows to authorize
        raise TypeError(f"{model.__name__} is abstract.")
    return concrete


def _model_key(model: type[models.Model]) -> tuple[str, str]:
    app_label, _, model_name = model._meta.label_lower.partition(".")
    return app_label, model_name


def _needs_partner_scope(model: type[models.Model], perm: str) -> bool:
    """Deleting an organization is a partner-level act (spec: POST/DELETE orgs need partner scope)."""
    return model is Organization and covers([perm], "organizations:delete")


def _is_read(perm: str) -> bool:
    return _split(perm)[1] == "read"


def _in(lookup: str, values: Iterable[Any]) -> Q:
    return Q((lookup + "__in", list(values)))


# --- visible() --------------------------------------------------------------------------------------------------


def visible(user, perm: str, queryset: QuerySet | models.Manager) -> QuerySet:
    """``queryset`` narrowed to the rows the user may see for ``perm`` (``queryset.none()`` when nothing is).

    Rows bound to a site are reached through their organization (whole) or their site; organization-level rows
    need whole-organization reach; Partner rows are read by the partner's members only (anything else on a
    partner is for superusers); User rows are the user themself (read), the members of organizations reached
    whole with ``perm``, and the members of partners where ``perm`` is held at partner level.
    """
    queryset = queryset.all()
    _split(perm)
    model = queryset.model._meta.concrete_model
    special = _SPECIAL_VISIBLE.get(model)
    if special is None:
        _scope_for(model)  # an unscoped model is refused for every user, superusers included
    current = reach(user)
    if not current.is_active:
        return queryset.none()
    if current.is_superuser:
        return queryset
    parts = special(current, perm) if special else _scoped_filters(current, perm, model)
    if not parts:
        return queryset.none()
    return queryset.filter(functools.reduce(operator.or_, parts))


def _scoped_filters(current: Reach, perm: str, model: type[models.Model]) -> list[Q]:
    scope = _scope_for(model)
    parts = []
    if scope.org:
        whole = current.whole_orgs_with(perm)
        if whole:
            parts.append(_in(scope.org, whole))
        if scope.site:
            site_orgs, sites = current.sites_with(perm)
            if sites:
                # The organization condition is redundant (a site has one organization) but lets PostgreSQL use
                # the (org_id, …) indexes.
                parts.append(_in(scope.org, site_orgs) & _in(scope.site, sites))
        elif scope.read_from_sites and _is_read(perm):
            partial = [org_id for org_id, entry in current.orgs.items() if covers(_read_only(entry.permissions), perm)]
            if partial:
                parts.append(_in(scope.org, partial))
        if _needs_partner_scope(model, perm):
            partner_ok = current.partners_with(perm)
            parts = [part & _in("partner_id", partner_ok) for part in parts] if partner_ok else []
    if scope.partner:
        partners = current.partners_with(perm)
        if partners:
            parts.append(_in(scope.partner, partners))
    if scope.library and scope.org and scope.partner and _split(perm)[1] in _LIBRARY_ACTIONS:
        using = [org_id for org_id, entry in current.orgs.items() if covers(entry.permissions, perm)]
        if using:
            parts.append(_in(scope.org, using))
            their_partners = Organization.objects.filter(pk__in=using).values("partner_id")
            parts.append(Q((scope.partner + "__in", their_partners)))
    if scope.own and covers([scope.own_permission], perm):
        parts.append(Q((scope.own, current.user_id)))
    if scope.device:
        devices = current.granted_ids(_DEVICE_KEY, perm)
        if devices:
            parts.append(_in(scope.device, devices))
    key = _model_key(model)
    if key in _GRANTABLE_RESOURCE and key != _DEVICE_KEY and not _needs_partner_scope(model, perm):
        granted = current.granted_ids(key, perm)
        if granted:
            parts.append(_in("pk", granted))
    return parts


def _visible_partners(current: Reach, perm: str) -> list[Q]:
    if _is_read(perm) and current.partners:
        return [_in("id", current.partners)]
    return []


def _visible_users(current: Reach, perm: str) -> list[Q]:
    parts = []
    if _is_read(perm):
        parts.append(Q(pk=current.user_id))
    whole = current.whole_orgs_with(perm)
    if whole:
        parts.append(Q(pk__in=OrganizationUser.objects.filter(org_id__in=whole).values("user_id")))
    partners = current.partners_with(perm)
    if partners:
        parts.append(Q(pk__in=PartnerUser.objects.filter(partner_id__in=partners).values("user_id")))
    granted = current.granted_ids(_model_key(User), perm)
    if granted:
        parts.append(_in("pk", granted))
    return parts


def _visible_roles(current: Reach, perm: str) -> list[Q]:
    """Built-in roles are a public catalogue (read); a partner's own roles follow partner-level permissions
    and whole-organization reach in that partner's organizations (an Org Admin assigns its partner's roles)."""
    parts = []
    if _is_read(perm):
        parts.append(Q(partner__isnull=True))
    partners = set(current.partners_with(perm))
    partners.update(current.orgs[org_id].partner_id for org_id in current.whole_orgs_with(perm))
    if partners:
        parts.append(_in("partner_id", partners))
    return parts


def _visible_permissions(current: Reach, perm: str) -> list[Q]:
    """The permission registry is a public catalogue: readable by every active user."""
    return [Q()] if _is_read(perm) else []


_SPECIAL_VISIBLE = {
    Partner: _visible_partners,
    User: _visible_users,
    Role: _visible_roles,
    Permission: _visible_permissions,
}


# --- can() and check() ------------------------------------------------------------------------------------------


def can(user, perm: str, obj: models.Model) -> bool:
    """May the user do ``perm`` on ``obj``? False both when ``obj`` is out of reach and when the permission is
    missing; use :func:`check` to tell the two apart."""
    try:
        check(user, perm, obj)
    except (NotFound, PermissionDenied):
        return False
    return True


def check(user, perm: str, obj: models.Model) -> None:
    """Raise :class:`NotFound` when ``obj`` is outside the user's reach, :class:`PermissionDenied` when it is
    inside but ``perm`` is not held (or, for deleting an organization, not held at partner level)."""
    _split(perm)
    current = reach(user)
    if current.is_superuser:
        return
    held = _held_on(current, obj)
    if held is None:
        raise NotFound
    if not covers(held, perm):
        raise PermissionDenied
    model = _concrete(type(obj))
    if _needs_partner_scope(model, perm) and not covers(current.partners.get(_value(obj, "partner_id"), ()), perm):
        raise PermissionDenied


def _held_on(current: Reach, obj: models.Model) -> frozenset[str] | None:
    """The permissions the user holds on ``obj``, or None when ``obj`` is outside the reach altogether."""
    if not current.is_active:
        return None
    model = _concrete(type(obj))
    if isinstance(obj, Partner):
        # Members read their own partner; everything else on a partner is for superusers.
        return frozenset({"*:read"}) if obj.pk in current.partners else None
    if isinstance(obj, Permission):
        return frozenset({"*:read"})
    if isinstance(obj, Role):
        return _held_on_role(current, obj)
    if isinstance(obj, User):
        return _held_on_user(current, obj)
    return _held_on_scoped(current, _scope_for(model), obj)


def _held_on_scoped(current: Reach, scope: _Scope, obj: models.Model) -> frozenset[str] | None:
    held: set[str] = set()
    in_reach = False
    if scope.org:
        entry = current.orgs.get(_value(obj, scope.org))
        if entry is not None:
            if entry.whole_org:
                in_reach = True
                held |= entry.org_permissions
            if scope.site and entry.site_permissions:
                site_perms = entry.site_permissions.get(_value(obj, scope.site))
                if site_perms is not None:
                    in_reach = True
                    held |= site_perms
            elif scope.read_from_sites and entry.site_permissions:
                in_reach = True
                held |= _read_only(entry.permissions)
    if scope.partner:
        partner_perms = current.partners.get(_value(obj, scope.partner))
        if partner_perms is not None:
            in_reach = True
            held |= partner_perms
    if scope.library and scope.org and scope.partner:
        using = _library_use(current, org_id=_value(obj, scope.org), partner_id=_value(obj, scope.partner))
        if using is not None:
            in_reach = True
            held |= using
    if scope.own and _value(obj, scope.own) == current.user_id:
        in_reach = True
        held.add(scope.own_permission)
    if scope.device:
        device_grants = current.object_grants.get(_DEVICE_KEY, {}).get(str(_value(obj, scope.device)))
        if device_grants is not None:
            in_reach = True
            held |= device_grants
    object_grants = current.object_grants.get(_model_key(type(obj)), {}).get(str(obj.pk))
    if object_grants is not None:
        in_reach = True
        held |= object_grants
    return frozenset(held) if in_reach else None


_LIBRARY_ACTIONS = ("read", "execute")


def _library_use(current: Reach, *, org_id: Any, partner_id: Any) -> frozenset[str] | None:
    """The read and execute permissions a library row's users hold on it: those held anywhere in its organization,
    or in any organization of its partner; None when the user is in none of them."""
    if org_id is not None:
        orgs = [org_id] if org_id in current.orgs else []
    elif partner_id is not None and current.orgs:
        orgs = list(
            Organization.objects.filter(pk__in=list(current.orgs), partner_id=partner_id).values_list("pk", flat=True)
        )
    else:
        orgs = []
    if not orgs:
        return None
    used: set[str] = set()
    for perm in frozenset().union(*(current.orgs[org].permissions for org in orgs)):
        resource, action = _split(perm)
        if action == "*":
            used.update(f"{resource}:{wanted}" for wanted in _LIBRARY_ACTIONS)
        elif action in _LIBRARY_ACTIONS:
            used.add(perm)
    return frozenset(used)


def _held_on_user(current: Reach, target: User) -> frozenset[str] | None:
    held: set[str] = set()
    in_reach = False
    if target.pk == current.user_id:
        in_reach = True
        held.add("*:read")
    whole = [org_id for org_id, entry in current.orgs.items() if entry.whole_org]
    if whole:
        for org_id in OrganizationUser.objects.filter(user_id=target.pk, org_id__in=whole).values_list(
            "org_id", flat=True
        ):
            in_reach = True
            held |= current.orgs[org_id].org_permissions
    if current.partners:
        member_of = PartnerUser.objects.filter(user_id=target.pk, partner_id__in=list(current.partners))
        for partner_id in member_of.values_list("partner_id", flat=True):
            in_reach = True
            held |= current.partners[partner_id]
    granted = current.object_grants.get(_model_key(User), {}).get(str(target.pk))
    if granted is not None:
        in_reach = True
        held |= granted
    return frozenset(held) if in_reach else None


def _held_on_role(current: Reach, role: Role) -> frozenset[str] | None:
    if role.partner_id is None:
        return frozenset({"*:read"})  # built-in roles are read-only for everyone but superusers
    held: set[str] = set()
    in_reach = False
    if role.partner_id in current.partners:
        in_reach = True
        held |= current.partners[role.partner_id]
    for entry in current.orgs.values():
        if entry.whole_org and entry.partner_id == role.partner_id:
            in_reach = True
            held |= entry.org_permissions
    return frozenset(held) if in_reach else None


def _value(obj: models.Model, lookup: str) -> Any:
    """Follow a scope lookup (``"device__site_id"``) on an instance; ``"id"`` is the primary key."""
    value: Any = obj
    for name in lookup.split("__"):
        if value is None:
            return None
        value = value.pk if name == "id" else getattr(value, name)
    return value
