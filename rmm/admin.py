"""The admin site (the technicians' console) and the building blocks the apps' ``admin.py`` modules share.

``RmmAdminConfig`` replaces ``django.contrib.admin`` in ``INSTALLED_APPS`` so that ``admin.site`` is an
``RmmAdminSite``. The site adds what stock Django lacks:

- a dashboard as its landing page (``rmm/dashboard.py``, ``templates/admin/index.html``), and the sidebar's lists
  grouped by the work they serve (``NAVIGATION``) rather than by the app that defines them;
- read-only pages for models the admin refuses to register (Django 5.2 rejects composite primary keys, and
  ``device_telemetry`` has one), listed in the app index and the sidebar like any other model;
- the same access rules as the API: any active staff user signs in (with their authenticator code when MFA is on,
  through ``accounts.services.check_credentials`` like the API), and what they see and change is decided by the
  authorization module (``rmm/authz.py``), never by Django's model permissions. Every ModelAdmin of our apps is
  either a :class:`ScopedAdminMixin` (querysets, permissions, foreign-key choices and list filters from
  ``authz``) or a :class:`SuperuserOnlyAdminMixin`; a test fails for one that is neither.

This module is imported while the app registry is still loading, so it must not import models at module level
(``rmm.authz`` imports models: it is imported inside functions, through ``_authz()``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.exceptions import AlreadyRegistered
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections, models, router, transaction
from django.db.models import Model, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst

from rmm.domain_errors import Refused
from rmm.inputs import JSONFormField
from rmm.names import snake
from rmm.net import client_ip
from rmm.parsing import OutOfRange, parse_datetime, text_problem

if TYPE_CHECKING:
    # What admin mixins (here and in the apps' admin modules) are mixed into, so the type checker sees the admin's
    # own methods through them; at run time a mixin's base is object.
    ModelAdminMixinBase = admin.ModelAdmin[Any]
    InlineAdminMixinBase = admin.options.InlineModelAdmin[Any, Any]
else:
    ModelAdminMixinBase = InlineAdminMixinBase = object

# A page view receives the request and the site (for ``each_context``) and answers a response.
PageView = Callable[[HttpRequest, "RmmAdminSite"], HttpResponse]


def _authz():
    from rmm import authz  # imports models, which this module may not do at import time (see the docstring)

    return authz


def is_operator(user) -> bool:
    """A superuser whose account is not disabled: an operator of the installation, who sees everything."""
    return bool(user.is_active and user.is_superuser)


# The sidebar and the index group the admin's lists by the work they serve, not by the app that defines them: each
# section with its models (``app_label.model_name``) in the order a technician reaches for them. "dashboard" is the
# landing page (admin:index). A registered model missing here is listed under "Other" at the end (and
# tests/console/test_navigation.py fails, so that it gets a place).
NAVIGATION: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "fleet",
        "Fleet",
        (
            "dashboard",
            "devices.device",
            "devices.devicegroup",
            "alerts.alert",
            "devices.devicecommand",
            "scripts.script",
            "scripts.scriptrun",
            "scripts.scriptschedule",
            "scripts.scriptversion",
            "alerts.alertrule",
            "alerts.maintenancewindow",
            "alerts.notificationchannel",
            "alerts.notification",
        ),
    ),
    (
        "inventory",
        "Inventory",
        (
            "devices.devicehardware",
            "devices.devicedisk",
            "devices.devicenetworkinterface",
            "devices.devicesoftware",
            "devices.deviceregistryentry",
            "devices.deviceconfigentry",
            "devices.devicenetworkconnection",
            "devices.devicetelemetry",
            "devices.devicegroupmembership",
            "devices.devicegroupmembershiplog",
        ),
    ),
    ("tenancy", "Tenancy", ("orgs.partner", "orgs.organization", "orgs.site", "orgs.enrollmentkey")),
    (
        "access",
        "Access",
        (
            "accounts.user",
            "accounts.role",
            "accounts.rolepermission",
            "accounts.permission",
            "accounts.partneruser",
            "accounts.organizationuser",
            "auth.group",
            "accounts.apitoken",
            "accounts.mfarecoverycode",
            "accounts.recentfailures",
            "accounts.auditlog",
        ),
    ),
    # Operators' tables (SuperuserOnlyAdminMixin): nobody else sees them, so nobody else sees the section.
    ("operations", "Operations", ("jobs.scheduledjob", "jobs.jobrun", "alerts.alertstate")),
)
# Names in the sidebar where a section already says what the model's own name repeats ("Device hardware" under
# Inventory, "Device commands" under Fleet); an app's own page keeps the models' names.
SHORT_NAMES = {
    "devices.devicecommand": "Commands",
    "devices.devicehardware": "Hardware",
    "devices.devicedisk": "Disks",
    "devices.devicenetworkinterface": "Network interfaces",
    "devices.devicesoftware": "Software",
    "devices.deviceregistryentry": "Registry entries",
    "devices.deviceconfigentry": "Config entries",
    "devices.devicenetworkconnection": "Network connections",
    "devices.devicetelemetry": "Telemetry",
    "devices.devicegroupmembership": "Group memberships",
    "devices.devicegroupmembershiplog": "Group membership changes",
}
DASHBOARD_ENTRY = "dashboard"
OTHER_SECTION = ("other", "Other")


class RmmAdminSite(admin.AdminSite):
    """The console of the installation: a dashboard, then every table of the data model grouped by the work it
    serves (``NAVIGATION``), for operators and, within their reach, for partners' technicians and customers'
    admins."""

    site_header = "RMM console"
    site_title = "RMM console"
    index_title = "Dashboard"
    login_template = "admin/login_with_mfa.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._pages: dict[type[Model], tuple[PageView, str]] = {}

    @property
    def login_form(self):  # type: ignore[override]  # Django only reads it: a property is as good as the attribute
        # The form checks credentials with accounts.services, which imports models: not at this module's import.
        from accounts.admin import AdminLoginForm

        return AdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        # Any active staff user may sign in; every ModelAdmin then shows only what the authorization module lets
        # them reach (ScopedAdminMixin), and operators-only tables stay closed (SuperuserOnlyAdminMixin).
        return request.user.is_active and request.user.is_staff

    def autocomplete_view(self, request):
        return ScopedAutocompleteJsonView.as_view(admin_site=self)(request)

    def register_page(self, model: type[Model], view: PageView, *, permission: str) -> None:
        """Serve ``view`` as the list page of ``model`` (``admin:<app>_<model>_changelist``).

        For models ``register()`` refuses. The page is listed under its app, and served, only to users who hold
        ``permission`` somewhere (``authz.holds_anywhere``); the view itself must still narrow what it shows with
        ``authz.visible``.
        """
        if model in self._registry or model in self._pages:
            raise AlreadyRegistered(f"The model {model.__name__} is already registered.")
        self._pages[model] = (view, permission)

    def is_registered_page(self, model: type[Model]) -> bool:
        return model in self._pages

    def get_urls(self):
        pages = []
        for model, (view, permission) in self._pages.items():
            opts = model._meta

            def page(request, *, _view=view, _permission=permission):
                if not _authz().holds_anywhere(request.user, _permission):
                    raise PermissionDenied
                return _view(request, self)

            pages.append(
                path(
                    f"{opts.app_label}/{opts.model_name}/",
                    self.admin_view(page),
                    name=f"{opts.app_label}_{opts.model_name}_changelist",
                )
            )
        # Ahead of the stock URLs: those end in a catch-all pattern.
        return pages + super().get_urls()

    def index(self, request: HttpRequest, extra_context=None):
        """The landing page: the dashboard of what needs attention within the person's reach."""
        from rmm.dashboard import build_dashboard  # imports models (see the module docstring)

        context = {"dashboard": build_dashboard(request.user, self), **(extra_context or {})}
        return super().index(request, context)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        """Without ``app_label`` (the sidebar, the index): the sections of ``NAVIGATION``, each shaped like one of
        Django's apps (name, app_label, app_url, models), so that the admin's templates show them. With it (an app's
        own index page, /admin/<app>/): that app's models, as Django lists them. Every entry says whether it is the
        page being shown (``current``; templates/admin/app_list.html)."""
        app_list = self._apps(request, app_label)
        if app_label is None:
            app_list = self._sections(app_list)
        for app in app_list:
            for entry in app["models"]:
                url = entry.get("admin_url")
                entry["current"] = bool(url) and (
                    request.path == url if url == self._index_url() else request.path.startswith(url)
                )
            app["current"] = any(entry["current"] for entry in app["models"])
        return app_list

    def _index_url(self) -> str:
        return reverse("admin:index", current_app=self.name)

    def _apps(self, request: HttpRequest, app_label: str | None):
        """Django's app list, with the models served by ``register_page`` added to their apps."""
        app_list = super().get_app_list(request, app_label)
        apps = {app["app_label"]: app for app in app_list}
        for model, (_view, permission) in self._pages.items():
            opts = model._meta
            if app_label not in (None, opts.app_label) or opts.app_label not in apps:
                continue
            if not _authz().holds_anywhere(request.user, permission):
                continue
            models = apps[opts.app_label]["models"]
            models.append(
                {
                    "model": model,
                    "name": capfirst(opts.verbose_name_plural),
                    "object_name": opts.object_name,
                    "perms": {"add": False, "change": False, "delete": False, "view": True},
                    "admin_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.name),
                    "add_url": None,
                    "view_only": True,
                }
            )
            models.sort(key=lambda entry: entry["name"])
        return app_list

    def _sections(self, app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``app_list`` regrouped into the sections of ``NAVIGATION``, in its order; empty sections left out."""
        entries = {entry["model"]._meta.label_lower: entry for app in app_list for entry in app["models"]}
        entries[DASHBOARD_ENTRY] = {
            "model": None,
            "name": self.index_title,
            "object_name": "Dashboard",
            "perms": {"add": False, "change": False, "delete": False, "view": True},
            "admin_url": self._index_url(),
            "add_url": None,
            "view_only": True,
        }
        sections: list[dict[str, Any]] = []
        for key, name, labels in NAVIGATION:
            models = [
                {**entries.pop(label), "name": SHORT_NAMES[label]} if label in SHORT_NAMES else entries.pop(label)
                for label in labels
                if label in entries
            ]
            sections.append({"key": key, "name": name, "models": models})
        sections.append(
            {"key": OTHER_SECTION[0], "name": OTHER_SECTION[1], "models": sorted(entries.values(), key=_by_name)}
        )
        return [
            {
                "name": section["name"],
                "app_label": section["key"],
                "app_url": self._index_url(),
                "has_module_perms": True,
                "models": section["models"],
            }
            for section in sections
            if section["models"]
        ]


def _by_name(entry: dict[str, Any]) -> str:
    return str(entry["name"])


class RmmAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``RmmAdminSite`` as ``admin.site``."""

    default_site = "rmm.admin.RmmAdminSite"


# --- Access control: every admin page asks the authorization module ------------------------------------------------


@functools.cache
def tenant_models() -> frozenset[type[Model]]:
    """Models whose rows belong to a tenant: a form field, an autocomplete or a list filter offering them must
    offer only what the user reaches. (The permission registry is a public catalogue and not among them.)"""
    from accounts.models import Role, User
    from devices.models import Device, DeviceGroup
    from orgs.models import EnrollmentKey, Organization, Partner, Site

    return frozenset({Partner, Organization, Site, EnrollmentKey, Device, DeviceGroup, User, Role})


def scoped_choices(user, perm: str, queryset: QuerySet) -> QuerySet:
    """``queryset`` (of a tenant model) narrowed to the objects ``user`` may pick where ``perm`` is needed.

    Partners are the exception to ``authz.visible``: what hangs off a partner (an organization, a custom role, a
    partner membership) is made at partner level, so a write permission offers the partners where it is held at
    partner level (``authz.has_partner_permission``), while a read permission offers the partners the user is a
    member of.
    """
    from orgs.models import Partner, Site

    authz = _authz()
    if queryset.model is Partner and perm.partition(":")[2] != "read":
        if is_operator(user):
            return queryset
        return queryset.filter(pk__in=authz.reach(user).partners_with(perm))
    queryset = authz.visible(user, perm, queryset)
    if queryset.model is Site:
        queryset = queryset.select_related("org")  # a site's name includes its organization's
    return queryset


def organizations_holding(user, perm: str, queryset: QuerySet) -> QuerySet:
    """Organizations where ``perm`` is held on the whole organization *or on some of its sites*.

    For an organization picked together with a site (a site-bound group): ``authz.visible`` on organizations
    answers a write permission with whole-organization reach only. Whether the object finally made is in reach is
    checked after saving, as always.
    """
    authz = _authz()
    current = authz.reach(user)
    if current.is_superuser:
        return queryset
    return queryset.filter(
        pk__in=[org_id for org_id, entry in current.orgs.items() if authz.covers(entry.permissions, perm)]
    )


def with_actor(form_class: type, request: HttpRequest) -> type:
    """``form_class`` (a form or formset class made for this request by ``get_form``/``get_formset``) with
    ``actor`` set to the requesting user, for checks that depend on who acts (the no-escalation rule, limits)."""
    return type(form_class.__name__, (form_class,), {"actor": request.user})


def add_domain_error(form, error, *, field_names: Mapping[str, str] | None = None) -> None:
    """The admin's half of the one mapping of domain errors (``rmm/domain_errors.py``; the API's is in
    ``rmm.errors``): put ``error`` on ``form`` as form errors, each named field on its form field when the form has
    one (the API's ``parentId`` is the form's ``parent``: camelCase to snake_case, less an ``Id``/``Ids`` suffix,
    or ``field_names``), everything else on the form as a whole. Call it from a form's ``clean()`` that runs the
    service's check."""
    names = field_names or {}
    for api_name, messages in error.fields.items():
        stem = snake(re.sub(r"Ids?$", "", api_name))
        candidates = (names.get(api_name), snake(api_name), f"{stem}s", stem)
        form_name = next((name for name in candidates if name and name in form.fields), None)
        for message in messages:
            form.add_error(form_name, message)
    if not error.fields:
        form.add_error(None, error.message)


def domain_error_message(error) -> str:
    """A domain error as the admin's message (for actions and for a refusal found only while saving): the
    problems it names, which say more than the API's summary ("The request has invalid fields."), else its message."""
    problems = [message for messages in error.fields.values() for message in messages]
    return " ".join(problems) if problems else error.message


class DomainErrorsAsMessagesMixin(ModelAdminMixinBase):
    """A ModelAdmin that turns a domain error raised while saving, deleting or running an action into an error
    message instead of a crash. The admin's transaction is rolled back first, so nothing of the refused change is
    kept; the user lands back on the page they came from. Rules that can be checked before saving are better
    checked in the form (``add_domain_error``), which keeps what the user typed."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        from rmm.domain_errors import DomainError

        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            self.message_user(request, domain_error_message(error), level="error")
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        from rmm.domain_errors import DomainError

        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as error:
            self.message_user(request, domain_error_message(error), level="error")
            return HttpResponseRedirect(request.get_full_path())

    def response_action(self, request, queryset):
        from rmm.domain_errors import DomainError

        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return super().response_action(request, queryset)
        except DomainError as error:
            self.message_user(request, domain_error_message(error), level="error")
            return HttpResponseRedirect(request.get_full_path())


DEFAULT_VERBS: Mapping[str, str] = MappingProxyType(
    {"view": "read", "add": "write", "change": "write", "delete": "delete"}
)


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """Django's related-object filter, listing only what the user may see with the admin's view permission (the
    stock filter lists every row of the related table: every tenant's organizations, in the sidebar)."""

    def field_choices(self, field, request, model_admin):
        queryset = field.related_model._default_manager.all()
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            queryset = queryset.order_by(*ordering)
        queryset = scoped_choices(request.user, model_admin.permission("view"), queryset)
        return [(obj.pk, str(obj)) for obj in queryset]

    def has_output(self):
        # Django drops a filter with a single choice together with its parameter; a user reaching one organization
        # who follows a link filtered by another would then see their whole list instead of nothing.
        return super().has_output() or bool(self.lookup_val or self.lookup_val_isnull)


def _first_owner(cls: type, name: str) -> type:
    return next(klass for klass in cls.__mro__ if name in vars(klass))


def _refused_by_postgresql(value: str) -> bool:
    """Would PostgreSQL refuse this URL filter value outright (NUL in text, a datetime offset beyond ±15:59, a
    moment outside years 1-9999)? Other bad values are refused by Django when it builds the lookup."""
    if text_problem(value):
        return True
    try:
        parse_datetime(value)
    except OutOfRange:
        return True
    except ValueError:  # not a datetime at all: the lookup's field decides
        pass
    return False


# Every model JSON field of every admin form (ScopedAdminMixin, SuperuserOnlyAdminMixin, ScopedInlineMixin) refuses
# what jsonb cannot store and deep nesting, as the API does (a NUL in an organization's settings was a 500).
JSON_FORM_FIELDS: Mapping[type[models.Field], Mapping[str, Any]] = {models.JSONField: {"form_class": JSONFormField}}


class InputCheckingChangeList(ChangeList):
    """A change list that refuses URL filter values PostgreSQL would refuse (``?hostname=a%00``,
    ``?last_seen_at__gte=…+19:11``) as Django refuses a bad lookup: the list reloads with ``?e=1``, never a 500."""

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        for values in lookup_params.values():
            if any(_refused_by_postgresql(value) for value in (values if isinstance(values, list) else [values])):
                raise IncorrectLookupParameters("A filter value the database cannot compare.")
        return lookup_params


class ScopedAdminMixin(ModelAdminMixinBase):
    """A ModelAdmin whose every answer comes from the authorization module, as the API's ``ScopedViewSet``.

    - ``get_queryset``: ``authz.visible(user, "<resource>:<view verb>", …)``, so lists, change pages (an object
      out of reach is "not found": Django redirects to the index with a message), autocompletes and deletions
      never see other tenants' rows;
    - ``has_view/change/delete_permission(obj)``: ``authz.can`` on the object; without an object (may this user
      see the list, is there an "add" button), whether the permission is held anywhere (``authz.holds_anywhere``).
      Django's model permissions are never consulted: technicians have none.
    - foreign-key and many-to-many choices, autocompletes and related-object list filters offer only objects the
      user may pick (``field_choices``: by default with this admin's ``change`` permission; ``choice_permissions``
      names another per field);
    - after saving, inside the admin's transaction, the object must still be in reach for the permission used;
      otherwise ``PermissionDenied`` (403) rolls the transaction back and nothing is saved.

    List it right before ``admin.ModelAdmin`` (after mixins that restrict further, like ``ReadOnlyAdminMixin``):
    a class in which one of these methods resolves to Django's own version is refused when it is defined.
    """

    resource: str = ""
    verbs: Mapping[str, str] = DEFAULT_VERBS
    # Field name → the permission needed on an object to pick it in that field (default: permission("change")).
    choice_permissions: Mapping[str, str] = {}
    formfield_overrides = JSON_FORM_FIELDS

    def get_changelist(self, request, **kwargs):
        return InputCheckingChangeList

    _GUARDED = (
        "get_queryset",
        "has_module_permission",
        "has_view_permission",
        "has_add_permission",
        "has_change_permission",
        "has_delete_permission",
        "formfield_for_foreignkey",
        "formfield_for_manytomany",
        "get_list_filter",
        "save_model",
        "delete_model",
        "delete_queryset",
    )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not issubclass(cls, admin.ModelAdmin):
            return
        if not cls.resource:
            raise TypeError(f"{cls.__name__} needs a resource (the 'resource' of 'resource:action').")
        for name in cls._GUARDED:
            owner = _first_owner(cls, name)
            if owner.__module__.startswith("django."):
                raise TypeError(
                    f"{cls.__name__}.{name} resolves to {owner.__name__}, bypassing ScopedAdminMixin's access "
                    "checks; list ScopedAdminMixin right before admin.ModelAdmin among the bases."
                )

    def permission(self, action: str) -> str:
        """The ``resource:action`` permission for one of Django's actions (view, add, change, delete)."""
        return f"{self.resource}:{self.verbs[action]}"

    def holds_anywhere(self, request: HttpRequest, action: str) -> bool:
        return _authz().holds_anywhere(request.user, self.permission(action))

    def _allowed(self, request: HttpRequest, action: str, obj) -> bool:
        if obj is None:
            return self.holds_anywhere(request, action)
        return _authz().can(request.user, self.permission(action), obj)

    def get_queryset(self, request):
        return _authz().visible(request.user, self.permission("view"), super().get_queryset(request))

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, "view", obj)

    def has_add_permission(self, request):
        return self.holds_anywhere(request, "add")

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, "delete", obj)

    # Choices -------------------------------------------------------------------------------------------------------

    def field_choices(self, request: HttpRequest, db_field, queryset: QuerySet | None = None) -> QuerySet:
        """The objects the user may pick in ``db_field`` (a relation to a tenant model), from ``queryset``."""
        if queryset is None:
            queryset = db_field.related_model._default_manager.all()
        perm = self.choice_permissions.get(db_field.name) or self.permission("change")
        return scoped_choices(request.user, perm, queryset)

    def _scoped_field_kwargs(self, db_field, request, kwargs: dict) -> dict:
        if "queryset" not in kwargs and db_field.related_model in tenant_models():
            base = self.get_field_queryset(kwargs.get("using"), db_field, request)
            kwargs["queryset"] = self.field_choices(request, db_field, base)
        return kwargs

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(
            db_field, request, **self._scoped_field_kwargs(db_field, request, kwargs)
        )

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return super().formfield_for_manytomany(
            db_field, request, **self._scoped_field_kwargs(db_field, request, kwargs)
        )

    def get_list_filter(self, request):
        return [self._scoped_list_filter(entry) for entry in super().get_list_filter(request)]

    def _scoped_list_filter(self, entry):
        if isinstance(entry, str):
            field = get_fields_from_path(self.model, entry)[-1]
            if getattr(field, "related_model", None) in tenant_models():
                return (entry, ScopedRelatedFieldListFilter)
        return entry

    # Writes --------------------------------------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self.check_still_in_reach(request, obj, "change" if change else "add")
        _authz().clear_cache(request.user)  # the rest of the request (e.g. the redirect's checks) sees the write

    def check_still_in_reach(self, request: HttpRequest, obj, action: str) -> None:
        """After a write, still inside the admin's transaction: refuse (403, rolled back) when the object saved is
        not one the user may ``action`` (e.g. a device moved to a site out of reach)."""
        if not _authz().can(request.user, self.permission(action), obj):
            raise PermissionDenied("This change would put the object out of your reach.")

    def delete_model(self, request, obj):
        if not _authz().can(request.user, self.permission("delete"), obj):
            raise PermissionDenied
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        # Django's "delete selected" asks has_delete_permission for each object already; this is the last guard.
        allowed = _authz().visible(request.user, self.permission("delete"), queryset)
        if queryset.exclude(pk__in=allowed.values("pk")).exists():
            raise PermissionDenied
        super().delete_queryset(request, queryset)


class SuperuserOnlyAdminMixin(ModelAdminMixinBase):
    """A ModelAdmin for operators only (secrets' bookkeeping, the sign-in throttle, raw role grants): other staff
    users neither see it in the index nor open any of its pages."""

    formfield_overrides = JSON_FORM_FIELDS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not issubclass(cls, admin.ModelAdmin):
            return
        for name in ("get_queryset", "has_module_permission", "has_view_permission"):
            owner = _first_owner(cls, name)
            if owner.__module__.startswith("django."):
                raise TypeError(
                    f"{cls.__name__}.{name} resolves to {owner.__name__}: list SuperuserOnlyAdminMixin first."
                )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if is_operator(request.user) else queryset.none()

    def get_changelist(self, request, **kwargs):
        return InputCheckingChangeList

    def has_module_permission(self, request):
        return is_operator(request.user)

    def has_view_permission(self, request, obj=None):
        return is_operator(request.user)

    def has_add_permission(self, request):
        return is_operator(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return is_operator(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return is_operator(request.user) and super().has_delete_permission(request, obj)


class ScopedInlineMixin(InlineAdminMixinBase):
    """An inline answers as its parent's admin does: it is shown when the parent may be viewed, editable when the
    parent may be changed, and its rows are narrowed with the parent admin's view permission (a user's page lists
    only the memberships the viewer reaches). ``scope_rows = False`` for rows the authorization module does not
    scope on their own (a role's permission grants: the role was checked)."""

    scope_rows = True
    formfield_overrides = JSON_FORM_FIELDS

    def _parent_admin(self) -> ScopedAdminMixin:
        parent = self.admin_site._registry[self.parent_model]
        if not isinstance(parent, ScopedAdminMixin):
            raise TypeError(f"{type(self).__name__} needs a scoped admin for {self.parent_model.__name__}.")
        return parent

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.scope_rows:
            queryset = _authz().visible(request.user, self._parent_admin().permission("view"), queryset)
        return queryset

    def _may_write_parent(self, request, obj) -> bool:
        parent = self._parent_admin()
        return parent.has_change_permission(request, obj) if obj is not None else parent.has_add_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._parent_admin().has_view_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return self._may_write_parent(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may_write_parent(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_write_parent(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs and db_field.related_model in tenant_models():
            kwargs["queryset"] = self._parent_admin().field_choices(request, db_field)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ScopedAutocompleteJsonView(AutocompleteJsonView):
    """The autocomplete of a form field offers what the field accepts: the related admin's visible rows (Django's
    view) narrowed by the source admin's ``field_choices`` for that field (e.g. a device's site: sites where the
    user may write devices, not every site they may read)."""

    # Set by Django's view from the request (process_request); django-stubs does not describe them.
    admin_site: admin.AdminSite
    source_field: models.Field

    def get_queryset(self):
        queryset = super().get_queryset()
        source_admin = self.admin_site._registry.get(self.source_field.model)
        if isinstance(source_admin, ScopedAdminMixin):
            choices = source_admin.field_choices(self.request, self.source_field)
            return queryset.filter(pk__in=choices.values("pk"))
        return queryset if is_operator(self.request.user) else queryset.none()


class EstimatedCountPaginator(Paginator):
    """A paginator that does not ``COUNT(*)`` a whole big table.

    The changelist counts its queryset to number the pages; unfiltered, on a table of millions of inventory rows
    that scan takes seconds. For an unfiltered queryset this takes PostgreSQL's row estimate (``pg_class.reltuples``,
    kept current by autovacuum) once it is large; small tables and filtered lists are counted exactly. The page
    links may then be off by a little at the far end of a huge table, which is the accepted trade-off.
    """

    exact_count_below = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            with connections[queryset.db].cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                    [queryset.model._meta.db_table],
                )
                row = cursor.fetchone()
            # -1 (never analysed) and small estimates fall through to an exact count.
            if row and row[0] >= self.exact_count_below:
                return row[0]
        return super().count


class BigTableAdminMixin(ModelAdminMixinBase):
    """For tables that grow with the number of devices: no full-table counts, no facet counts."""

    paginator = EstimatedCountPaginator
    # The "N total" link next to the search box counts the whole table on every page view.
    show_full_result_count = False
    # Facet counts run one COUNT per filter choice over the filtered table.
    show_facets = admin.ShowFacets.NEVER


class ReadOnlyAdminMixin(ModelAdminMixinBase):
    """A model admin that only shows rows: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdminMixin(ModelAdminMixinBase):
    """Writes an ``audit_log`` row for every add, change and delete made through a model admin, next to Django's own
    ``LogEntry``: the spec wants one audit row per state-changing call, whichever door it came through.

    The action is ``accounts.audit.action_for(obj, verb)``, ``<model in snake_case>.create|update|delete``
    (``enrollment_key.create``), the name the API writes for the same change; the details hold Django's change
    message (the names of the changed fields, never their values) and whatever ``audit_details`` adds (people and
    memberships: what changed, from what to what, as their API audit rows say it).

    Where ``save_model``/``delete_model`` call a service that writes its own audit row (the service is the one
    writer of that change, for every door), the admin names those verbs in ``audited_by_service`` and writes no
    second row.
    """

    audited_by_service: frozenset[str] = frozenset()

    def audit_details(self, request, obj, verb: str) -> dict:
        """Details of the audit row of ``verb`` (create, update, delete) on ``obj``, beyond the change message."""
        return {}

    def _audit(self, request, obj, verb: str, message) -> None:
        if verb not in self.audited_by_service:
            _audit_admin_write(request, obj, verb, message, self.audit_details(request, obj, verb))

    def log_addition(self, request, obj, message):
        self._audit(request, obj, "create", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit(request, obj, "update", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit(request, obj, "delete", None)
        return super().log_deletions(request, queryset)


def adopt_saved(obj: Model, saved: Model) -> None:
    """Make the admin's unsaved ``obj`` the row a service created (``saved``): its primary key, its values, saved
    state. For ``save_model`` that creates through a service, so that Django's log entry, the redirect and
    ``save_related`` (many-to-many fields, inlines) work on the created row."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def _audit_admin_write(request: HttpRequest, obj: Model, verb: str, message, extra: dict | None = None) -> None:
    from accounts import audit  # models are not importable while this module loads (see the module docstring)

    details = {**(extra or {}), "via": "admin", "object": str(obj)}
    if message:
        details["changes"] = message
    audit.record(
        action=audit.action_for(obj, verb),  # the API's name for the same change (accounts.audit.noun_of)
        actor_user=request.user,
        target=obj,
        details=details,
        ip=client_ip(request),
    )


def single_object_filter(field_name: str, *, title: str | None = None) -> type[admin.SimpleListFilter]:
    """A list filter ``?<field_name>=<uuid>`` on a foreign key to a big table (devices, groups).

    Django's ``RelatedFieldListFilter`` would list every row of the related table in the sidebar. This filter is
    reached by links (e.g. "see all" under a capped inline) and shows only the selected object, so the user can
    see what the list is filtered by and clear it. The object is named only when the user may see it with the
    admin's view permission: an id out of reach shows as the bare id, and the (scoped) list stays empty.
    """

    class SingleObjectFilter(admin.SimpleListFilter):
        parameter_name = field_name

        def __init__(self, request, params, model, model_admin):
            self.title = title or model._meta.get_field(field_name).verbose_name
            self._related_model = model._meta.get_field(field_name).related_model
            super().__init__(request, params, model, model_admin)

        def lookups(self, request, model_admin):
            value = self.value()
            if value is None:
                return []
            try:
                pk = uuid.UUID(value)
            except ValueError as exc:
                raise IncorrectLookupParameters(f"{field_name}: not a UUID") from exc
            related = self._related_model._default_manager.filter(pk=pk)
            if isinstance(model_admin, ScopedAdminMixin):
                related = scoped_choices(request.user, model_admin.permission("view"), related)
            elif not is_operator(request.user):
                related = related.none()
            related = related.first()
            return [(value, str(related) if related else value)]

        def queryset(self, request, queryset):
            if self.value() is None:
                return queryset
            return queryset.filter(**{f"{field_name}_id": self.value()})

    SingleObjectFilter.__name__ = f"{capfirst(field_name)}Filter"
    return SingleObjectFilter


class CappedInlineFormSet(BaseInlineFormSet):
    """An inline formset that shows at most ``row_cap`` rows of the parent's children.

    A device may have 10,000 software rows; rendering them all makes its page take seconds. ``total_rows`` is
    counted only when the cap is reached, so a device with few rows costs one query per inline.
    """

    row_cap = 50
    see_all_url: str | None = None

    def get_queryset(self):
        if not hasattr(self, "_capped_queryset"):
            queryset = super().get_queryset()
            capped = queryset[: self.row_cap]
            shown = len(capped)  # evaluates once; the formset then indexes the cached rows
            self.total_rows = queryset.count() if shown == self.row_cap else shown
            self._capped_queryset = capped
        return self._capped_queryset


class ReadOnlyInlineMixin(InlineAdminMixinBase):
    """An inline whose rows cannot be added, changed or deleted, with every field shown read-only."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class CappedTabularInline(ReadOnlyInlineMixin, ScopedInlineMixin, admin.TabularInline):
    """A read-only table of a parent's children: the first ``max_rows`` in ``ordering``, then a link to the
    child's list filtered by the parent (``?<see_all_param>=<parent id>``; the child admin needs a
    ``single_object_filter`` on that field)."""

    formset = CappedInlineFormSet
    template = "admin/edit_inline/capped_tabular.html"
    show_change_link = True
    max_rows = 50
    see_all_param = "device"

    def get_formset(self, request, obj=None, **kwargs):
        # The formset factory subclasses self.formset, a CappedInlineFormSet.
        formset = cast("type[CappedInlineFormSet]", super().get_formset(request, obj, **kwargs))
        formset.row_cap = self.max_rows
        formset.see_all_url = None
        if obj is not None and obj.pk is not None:
            opts = self.model._meta
            try:
                url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.admin_site.name)
            except NoReverseMatch:
                pass
            else:
                formset.see_all_url = f"{url}?{urlencode({self.see_all_param: obj.pk})}"
        return formset


# --- writing through services (the alerts and scripts admins) --------------------------------------------------


class ModelErrorsOnTheFormMixin(forms.ModelForm):
    """A model form that shows a model ``clean()`` error about a field the form does not edit (read-only on this
    page, e.g. a rule's organization) on the form as a whole, instead of failing: Django refuses to add an error
    to a field a form does not have."""

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            remapped: dict[str, list] = {}
            for name, field_errors in errors.error_dict.items():
                key = name if name == NON_FIELD_ERRORS or name in self.fields else NON_FIELD_ERRORS
                if key != name:
                    field_errors = [ValidationError(f"{name}: {message}") for e in field_errors for message in e]
                remapped.setdefault(key, []).extend(field_errors)
            errors = ValidationError(remapped)
        super()._update_errors(errors)  # type: ignore[misc]  # Django's, undeclared in django-stubs


def refuse_unless_allowed(request, perm: str, objects) -> None:
    """An admin action on ``objects`` needs ``perm`` on every one of them (Django asked only whether it is held
    anywhere): otherwise nothing is done."""
    if any(not _authz().can(request.user, perm, obj) for obj in objects):
        raise Refused("You may not do this to every row you selected; nothing was changed.")


class WrittenThroughServicesMixin:
    """Saves and deletes go through the app's services (the one home of their rules and audit rows): a subclass
    says how with ``save_through_service`` and ``delete_through_service``. After a save, the object must still be
    in the writer's reach; a delete, one object at a time, needs ``delete`` on each."""

    def save_through_service(self, request, obj, form, change):
        raise NotImplementedError

    def delete_through_service(self, request, obj) -> None:
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        saved = self.save_through_service(request, obj, form, change)
        if saved is not None and saved.pk != obj.pk:
            obj.pk = saved.pk
        obj.refresh_from_db()
        self.check_still_in_reach(request, obj, "change" if change else "add")  # type: ignore[attr-defined]
        _authz().clear_cache(request.user)

    def delete_model(self, request, obj):
        if not _authz().can(request.user, self.permission("delete"), obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        self.delete_through_service(request, obj)

    def delete_queryset(self, request, queryset):
        objs = list(queryset)
        if any(not _authz().can(request.user, self.permission("delete"), obj) for obj in objs):  # type: ignore[attr-defined]
            raise PermissionDenied
        for obj in objs:
            self.delete_through_service(request, obj)
