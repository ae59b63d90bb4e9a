"""Admin pages for the tenancy tree (partners → organizations → sites) and enrollment keys.

Access as in the API (rmm/authz.py): partners are read by their members and changed by operators only;
organizations are created and deleted at partner level; sites and enrollment keys follow their organization's
(or site's) ``sites:*`` and ``devices:write``.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from orgs.models import EnrollmentKey, Organization, Partner, Site
from orgs.services import (
    check_organization_limit,
    create_enrollment_key,
    create_organization,
    delete_organization,
    delete_site,
    revoke_enrollment_keys,
)
from rmm import authz
from rmm.admin import (
    AuditedAdminMixin,
    DomainErrorsAsMessagesMixin,
    ScopedAdminMixin,
    add_domain_error,
    adopt_saved,
    is_operator,
    scoped_choices,
)
from rmm.domain_errors import DomainError
from rmm.net import client_ip


class SiteFilter(admin.SimpleListFilter):
    """Filter by site, listing the sites of the organization chosen in the ``org`` filter.

    With no organization chosen it lists every site only while there are few: the stock related-field filter would
    put thousands of sites in the sidebar. The parameter name is the one Django's own filter would use. Only sites
    the user may see with the list's view permission are named.
    """

    title = "site"
    parameter_name = "site__id__exact"
    org_parameter_name = "org__id__exact"
    max_unscoped_choices = 100

    def lookups(self, request, model_admin):
        sites = scoped_choices(request.user, model_admin.permission("view"), Site.objects.order_by("org__name", "name"))
        org_id = request.GET.get(self.org_parameter_name)
        selected = self.value()
        try:
            if org_id:
                uuid.UUID(org_id)
            if selected:
                uuid.UUID(selected)
        except ValueError as exc:
            raise IncorrectLookupParameters("site or organization: not a UUID") from exc
        if org_id:
            choices = [(str(site.pk), site.name) for site in sites.filter(org_id=org_id)]
        else:
            unscoped = list(sites[: self.max_unscoped_choices + 1])
            many = len(unscoped) > self.max_unscoped_choices
            choices = [] if many else [(str(site.pk), str(site)) for site in unscoped]
        if selected and selected not in {pk for pk, _ in choices}:
            site = sites.filter(pk=selected).first()
            choices.append((selected, str(site) if site else selected))
        return choices

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(site_id=self.value())


@admin.register(Partner)
class PartnerAdmin(AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """MSPs and enterprises: the top of the tenancy tree, with their limits. Members read their own partner
    (authz answers a partner's members with ``*:read``); adding, changing and deleting one is for operators."""

    resource = "partners"

    list_display = ("name", "slug", "type", "status", "max_organizations", "max_devices", "timezone", "created_at")
    list_filter = ("status", "type")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fields = (
        "name",
        "slug",
        "type",
        "status",
        "max_organizations",
        "max_devices",
        "timezone",
        "settings",
        "id",
        "created_at",
        "updated_at",
    )

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return is_operator(request.user) or bool(authz.reach(request.user).partners)
        return super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return is_operator(request.user)

    def has_change_permission(self, request, obj=None):
        return is_operator(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_operator(request.user)


class OrganizationForm(forms.ModelForm):
    """Tells early that the partner's organization limit is reached (``orgs.services``, operators included);
    saving creates through ``create_organization``, which checks it again under the partner's lock."""

    class Meta:
        model = Organization
        fields = ("partner", "name", "slug", "type", "status", "max_devices", "settings")

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        partner = cleaned.get("partner")
        if self.instance._state.adding and partner is not None:
            try:
                check_organization_limit(partner)
            except DomainError as error:
                add_domain_error(self, error)
        return cleaned


@admin.register(Organization)
class OrganizationAdmin(DomainErrorsAsMessagesMixin, AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """A partner's customers; every device, site and membership hangs off one of these.

    Creating and deleting an organization is a partner-level act (``organizations:write`` / ``:delete`` held
    through a partner membership): an Org Admin changes its own organization but never adds or deletes one.
    Both go through ``orgs.services`` (the partner's limit, ``organization_not_empty``), which write their audit
    rows; a refusal found only while saving (the limit reached by a concurrent creation) is shown as a message.
    """

    resource = "organizations"
    form = OrganizationForm
    audited_by_service = frozenset({"create", "delete"})

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = create_organization(
            partner=obj.partner,
            name=obj.name,
            slug=obj.slug,
            type=obj.type,
            status=obj.status,
            max_devices=obj.max_devices,
            settings=obj.settings,
            actor=request.user,
            ip=client_ip(request),
            via="admin",
        )
        adopt_saved(obj, created)

    def delete_model(self, request, obj):
        delete_organization(organization=obj, actor=request.user, ip=client_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        for organization in queryset:
            self.delete_model(request, organization)

    list_display = ("name", "partner", "slug", "type", "status", "max_devices", "created_at")
    list_filter = ("status", "type", "partner")
    list_select_related = ("partner",)
    search_fields = ("name", "slug", "partner__name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("partner", "name", "slug", "type", "status", "max_devices", "settings", "id", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # Moving an organization to another partner would silently change who reaches its devices.
        return (*self.readonly_fields, "partner") if obj else self.readonly_fields

    def _partner_level(self, request, action: str) -> bool:
        return is_operator(request.user) or bool(authz.reach(request.user).partners_with(self.permission(action)))

    def has_add_permission(self, request):
        return self._partner_level(request, "add")

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return self._partner_level(request, "delete")
        return super().has_delete_permission(request, obj)  # authz asks partner level for deleting one

    def check_still_in_reach(self, request, obj, action):
        if action == "add":
            # The reach was computed before this organization existed; creating one is a partner-level right.
            if not authz.has_partner_permission(request.user, obj.partner_id, self.permission("add")):
                raise PermissionDenied("Creating an organization needs partner-level access.")
            return
        super().check_still_in_reach(request, obj, action)


@admin.register(Site)
class SiteAdmin(DomainErrorsAsMessagesMixin, AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Locations of an organization; devices and enrollment keys belong to a site. The organization dropdown offers
    the organizations where the user may write sites (whole-organization reach). Deleting one goes through
    ``orgs.services.delete_site`` (``site_not_empty``), which audits it."""

    resource = "sites"
    audited_by_service = frozenset({"delete"})

    def delete_model(self, request, obj):
        delete_site(site=obj, actor=request.user, ip=client_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        for site in queryset:
            self.delete_model(request, site)

    list_display = ("name", "org", "timezone", "created_at")
    list_filter = ("org",)
    list_select_related = ("org",)
    search_fields = ("name", "org__name")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("org", "name", "timezone", "address", "contact", "settings", "id", "created_at", "updated_at")

    def get_queryset(self, request):
        # str(site) names its organization; the autocomplete widgets of other pages list sites through here too.
        return super().get_queryset(request).select_related("org")

    def get_readonly_fields(self, request, obj=None):
        # A site's devices, keys and groups carry its org_id (composite foreign keys): it cannot change org.
        return (*self.readonly_fields, "org") if obj else self.readonly_fields


class EnrollmentKeyForm(forms.ModelForm):
    class Meta:
        model = EnrollmentKey
        fields = ("site", "name", "max_usage", "expires_at")

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at and expires_at <= timezone.now() and "expires_at" in self.changed_data:
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(EnrollmentKey)
class EnrollmentKeyAdmin(AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Keys agents use to enroll into a site. Adding one shows the raw key once; only its hash is stored.

    Keys are managed, and even listed, with ``devices:write`` on their site (the API's rule: a key lets a machine
    into the fleet); the site dropdown offers the sites where the user holds it.
    """

    resource = "devices"
    verbs = {"view": "write", "add": "write", "change": "write", "delete": "delete"}

    form = EnrollmentKeyForm
    audited_by_service = frozenset({"create"})  # orgs.services.create_enrollment_key writes enrollment_key.create
    list_display = (
        "name",
        "key_prefix",
        "org",
        "site_name",
        "state",
        "usage_count",
        "max_usage",
        "expires_at",
        "revoked_at",
        "created_at",
    )
    list_filter = ("org", SiteFilter, ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("org", "site")
    search_fields = ("name", "=key_prefix")
    autocomplete_fields = ("site",)
    actions = ("revoke_selected",)
    # key_hash is never shown: it is not in any of these.
    readonly_fields = (
        "key_prefix",
        "org",
        "usage_count",
        "revoked_at",
        "created_by",
        "id",
        "created_at",
        "updated_at",
    )
    key_created_template = "admin/orgs/enrollmentkey/key_created.html"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("site", "name", "max_usage", "expires_at")
        return (
            "name",
            "key_prefix",
            "org",
            "site",
            "usage_count",
            "max_usage",
            "expires_at",
            "revoked_at",
            "created_by",
            "id",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        # The key was made for one site; moving it would enroll devices somewhere its creator did not choose.
        return (*self.readonly_fields, "site") if obj else ()

    @admin.display(description="site", ordering="site__name")
    def site_name(self, obj: EnrollmentKey) -> str:
        return obj.site.name

    @admin.display(description="state")
    def state(self, obj: EnrollmentKey) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        if obj.max_usage is not None and obj.usage_count >= obj.max_usage:
            return "exhausted"
        return "active"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        raw, key = create_enrollment_key(
            site=obj.site,
            name=obj.name,
            max_usage=obj.max_usage,
            expires_at=obj.expires_at,
            created_by=request.user,
            ip=client_ip(request),
            via="admin",
        )
        adopt_saved(obj, key)
        # Kept on the instance only until response_add shows it; never stored, logged or put in a message
        # (messages may live in a cookie or the session table until displayed).
        obj._raw_key = raw

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(obj, "_raw_key", None)
        if raw is None or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Enrollment key created",
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "raw_key": raw,
        }
        response = TemplateResponse(request, self.key_created_template, context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        queryset = authz.visible(request.user, self.permission("change"), queryset)
        revoked = revoke_enrollment_keys(keys=queryset, actor_user=request.user, ip=client_ip(request))
        self.message_user(request, f"Revoked {revoked} enrollment key(s).", messages.SUCCESS)
