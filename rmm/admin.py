"""The admin site (our schema browser) and the building blocks the apps' ``admin.py`` modules share.

``RmmAdminConfig`` replaces ``django.contrib.admin`` in ``INSTALLED_APPS`` so that ``admin.site`` is an
``RmmAdminSite``. The site adds what stock Django lacks:

- read-only pages for models the admin refuses to register (Django 5.2 rejects composite primary keys, and
  ``device_telemetry`` has one), listed in the app index and the sidebar like any other model;
- access for superusers only, until the admin is wired to the authorization module (see ``has_permission``).

This module is imported while the app registry is still loading, so it must not import models at module level.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.exceptions import AlreadyRegistered
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst

from rmm.net import client_ip

# A page view receives the request and the site (for ``each_context``) and answers a response.
PageView = Callable[[HttpRequest, "RmmAdminSite"], HttpResponse]


class RmmAdminSite(admin.AdminSite):
    """The admin of the installation: every table of the data model, browsable by operators."""

    site_header = "RMM administration"
    site_title = "RMM admin"
    index_title = "Schema browser"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._pages: dict[type[Model], PageView] = {}

    def has_permission(self, request: HttpRequest) -> bool:
        # The spec says the admin follows the same access rules as the API (a user reaches only the organizations
        # of their memberships). Until every ModelAdmin scopes its querysets through the authorization module,
        # Django's model permissions would let a staff user read every tenant's rows, so only superusers
        # (operators of the installation, who see everything anyway) may sign in.
        return request.user.is_active and request.user.is_superuser

    def register_page(self, model: type[Model], view: PageView) -> None:
        """Serve ``view`` as the list page of ``model`` (``admin:<app>_<model>_changelist``).

        For models ``register()`` refuses. The page is listed under its app for users holding the model's
        ``view`` permission; the view itself must check that permission too (``check_view_permission``).
        """
        if model in self._registry or model in self._pages:
            raise AlreadyRegistered(f"The model {model.__name__} is already registered.")
        self._pages[model] = view

    def is_registered_page(self, model: type[Model]) -> bool:
        return model in self._pages

    def get_urls(self):
        pages = []
        for model, view in self._pages.items():
            opts = model._meta

            def page(request, *, _view=view):
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

    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        app_list = super().get_app_list(request, app_label)
        apps = {app["app_label"]: app for app in app_list}
        for model in self._pages:
            opts = model._meta
            if app_label not in (None, opts.app_label) or opts.app_label not in apps:
                continue
            if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
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


class RmmAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``RmmAdminSite`` as ``admin.site``."""

    default_site = "rmm.admin.RmmAdminSite"


def check_view_permission(request: HttpRequest, model: type[Model]) -> None:
    """Raise ``PermissionDenied`` unless the user may view ``model`` (for pages served by ``register_page``)."""
    opts = model._meta
    if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
        raise PermissionDenied


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
        if not queryset.query.where:
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


class BigTableAdminMixin:
    """For tables that grow with the number of devices: no full-table counts, no facet counts."""

    paginator = EstimatedCountPaginator
    # The "N total" link next to the search box counts the whole table on every page view.
    show_full_result_count = False
    # Facet counts run one COUNT per filter choice over the filtered table.
    show_facets = admin.ShowFacets.NEVER


class ReadOnlyAdminMixin:
    """A model admin that only shows rows: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdminMixin:
    """Writes an ``audit_log`` row for every add, change and delete made through a model admin, next to Django's own
    ``LogEntry``: the spec wants one audit row per state-changing call, whichever door it came through.

    The action is ``<model in snake_case>.create|update|delete`` (``enrollment_key.create``); the details hold
    Django's change message (the names of the changed fields, never their values).
    """

    def log_addition(self, request, obj, message):
        _audit_admin_write(request, obj, "create", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        _audit_admin_write(request, obj, "update", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            _audit_admin_write(request, obj, "delete", None)
        return super().log_deletions(request, queryset)


def _audit_admin_write(request: HttpRequest, obj: Model, verb: str, message) -> None:
    from accounts import audit  # models are not importable while this module loads (see the module docstring)

    opts = obj._meta
    details = {"via": "admin", "object": str(obj)}
    if message:
        details["changes"] = message
    audit.record(
        action=f"{re.sub(r'(?<!^)(?=[A-Z])', '_', opts.object_name).lower()}.{verb}",
        actor_user=request.user,
        # An organization is its own tenant; other rows name theirs in org_id (audit.record looks there).
        org_id=obj.pk if opts.label == "orgs.Organization" else None,
        target=obj,
        details=details,
        ip=client_ip(request),
    )


def single_object_filter(field_name: str, *, title: str | None = None) -> type[admin.SimpleListFilter]:
    """A list filter ``?<field_name>=<uuid>`` on a foreign key to a big table (devices, groups).

    Django's ``RelatedFieldListFilter`` would list every row of the related table in the sidebar. This filter is
    reached by links (e.g. "see all" under a capped inline) and shows only the selected object, so the user can
    see what the list is filtered by and clear it.
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
            related = self._related_model._default_manager.filter(pk=pk).first()
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


class ReadOnlyInlineMixin:
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


class CappedTabularInline(ReadOnlyInlineMixin, admin.TabularInline):
    """A read-only table of a parent's children: the first ``max_rows`` in ``ordering``, then a link to the
    child's list filtered by the parent (``?<see_all_param>=<parent id>``; the child admin needs a
    ``single_object_filter`` on that field)."""

    formset = CappedInlineFormSet
    template = "admin/edit_inline/capped_tabular.html"
    show_change_link = True
    max_rows = 50
    see_all_param = "device"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
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
