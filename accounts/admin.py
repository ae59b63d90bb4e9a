"""Admin pages for people and access: users, the permission registry, roles, memberships, API tokens, the audit log.

Secrets are never shown: ``mfa_secret``, token and recovery-code hashes are in no field list, and the password
appears only as Django's masked summary with its "reset password" link.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts.models import (
    ApiToken,
    AuditLog,
    LoginFailure,
    MfaRecoveryCode,
    OrganizationUser,
    PartnerUser,
    Permission,
    Role,
    RolePermission,
    User,
)
from rmm.admin import AuditedAdminMixin, BigTableAdminMixin, ReadOnlyAdminMixin, ReadOnlyInlineMixin


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")

    def clean_email(self):
        # Stored lower-case, as UserManager does; the unique index on lower(email) is checked by model validation.
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


class UserForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("email", "name", "password", "status", "is_staff", "is_superuser", "groups", "user_permissions")

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


class PartnerMembershipInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The user's partner memberships, for reading; they are edited on the partner-user page."""

    model = PartnerUser
    fields = ("partner", "role", "org_access")
    show_change_link = True
    verbose_name_plural = "partner memberships"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partner", "role")


class OrganizationMembershipInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The user's organization memberships, for reading; they are edited on the organization-user page."""

    model = OrganizationUser
    fields = ("org", "role")
    show_change_link = True
    verbose_name_plural = "organization memberships"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("org", "role")


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin):
    """People who sign in, by email. The MFA secret is never shown; MFA is set up and removed by the user."""

    form = UserForm
    add_form = UserCreationForm
    list_display = ("email", "name", "status", "mfa_enabled", "is_staff", "is_superuser", "last_login", "date_joined")
    list_filter = ("status", "mfa_enabled", "is_staff", "is_superuser")
    search_fields = ("email", "name")
    ordering = ("email",)
    readonly_fields = ("id", "mfa_enabled", "last_login", "date_joined", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "status", "mfa_enabled")}),
        ("Admin access", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("id", "last_login", "date_joined", "created_at", "updated_at")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "name", "usable_password", "password1", "password2")}),
    )
    inlines = (PartnerMembershipInline, OrganizationMembershipInline)

    def get_inlines(self, request, obj):
        return self.inlines if obj else ()


@admin.register(Permission)
class PermissionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The permission registry: ``resource:action`` pairs roles grant (``*`` is a wildcard)."""

    list_display = ("resource", "action", "description")
    list_filter = ("resource",)
    search_fields = ("resource", "action", "description")


class RolePermissionInline(admin.TabularInline):
    model = RolePermission
    extra = 0
    fields = ("permission",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("permission")

    # Built-in roles come from fixtures and are the same on every installation.
    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and not (obj and obj.is_system)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.is_system)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_system)


@admin.register(Role)
class RoleAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Named permission sets; built-in roles (no partner, ``is_system``) are read-only."""

    list_display = ("name", "scope", "partner", "is_system", "force_mfa")
    list_filter = ("scope", "is_system", "force_mfa", "partner")
    list_select_related = ("partner",)
    search_fields = ("name", "description")
    fields = ("name", "scope", "partner", "force_mfa", "description", "is_system", "id", "created_at", "updated_at")
    readonly_fields = ("is_system", "id", "created_at", "updated_at")
    inlines = (RolePermissionInline,)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.is_system)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_system)


@admin.register(RolePermission)
class RolePermissionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Role → permission grants, one row each (also editable on the role's page)."""

    list_display = ("role", "permission")
    list_filter = ("role",)
    list_select_related = ("role", "permission")
    search_fields = ("role__name", "permission__resource", "permission__action")


class PartnerUserForm(forms.ModelForm):
    class Meta:
        model = PartnerUser
        fields = ("partner", "user", "role", "org_access", "selected_organizations")

    def clean(self):
        cleaned = super().clean()
        partner, role = cleaned.get("partner"), cleaned.get("role")
        if role and role.scope != Role.Scope.PARTNER:
            self.add_error("role", "A partner membership needs a role of scope partner.")
        if role and partner and role.partner_id not in (None, partner.pk):
            self.add_error("role", "This role belongs to another partner.")
        selected = cleaned.get("selected_organizations")
        if partner and selected and any(org.partner_id != partner.pk for org in selected):
            self.add_error("selected_organizations", "Only organizations of this partner can be selected.")
        return cleaned


@admin.register(PartnerUser)
class PartnerUserAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """A user's membership in a partner: its role, and which of the partner's organizations it reaches."""

    form = PartnerUserForm
    list_display = ("user", "partner", "role", "org_access", "created_at")
    list_filter = ("org_access", "role", "partner")
    list_select_related = ("user", "partner", "role")
    search_fields = ("user__email", "user__name", "partner__name")
    autocomplete_fields = ("user", "selected_organizations")
    readonly_fields = ("id", "created_at", "updated_at")


class OrganizationUserForm(forms.ModelForm):
    class Meta:
        model = OrganizationUser
        fields = ("org", "user", "role", "sites")

    def clean(self):
        cleaned = super().clean()
        org, role = cleaned.get("org"), cleaned.get("role")
        if role and role.scope != Role.Scope.ORGANIZATION:
            self.add_error("role", "An organization membership needs a role of scope organization.")
        if role and org and role.partner_id not in (None, org.partner_id):
            self.add_error("role", "This role belongs to another partner.")
        sites = cleaned.get("sites")
        if org and sites and any(site.org_id != org.pk for site in sites):
            self.add_error("sites", "Only sites of this organization can be selected.")
        return cleaned


@admin.register(OrganizationUser)
class OrganizationUserAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """A user's membership in one organization, optionally restricted to some of its sites."""

    form = OrganizationUserForm
    list_display = ("user", "org", "role", "created_at")
    list_filter = ("role", "org")
    list_select_related = ("user", "org", "role")
    search_fields = ("user__email", "user__name", "org__name")
    autocomplete_fields = ("user", "sites")
    readonly_fields = ("id", "created_at", "updated_at")


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Personal API tokens, for reading and deleting. Users create their own through the API; the hash stays hidden."""

    list_display = ("name", "key_prefix", "user", "expires_at", "last_used_at", "revoked_at", "created_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "expires_at")
    list_select_related = ("user",)
    search_fields = ("name", "=key_prefix", "user__email")
    fields = (
        "name",
        "key_prefix",
        "user",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "id",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who did what, for reading only: the table is append-only (a trigger refuses UPDATE and DELETE)."""

    list_display = ("created_at", "action", "actor_user", "actor_device", "org", "target_type", "target_id", "ip")
    list_filter = ("created_at", "org")
    # Actors and organizations have no foreign-key constraint (the log outlives them): these are LEFT JOINs.
    list_select_related = ("actor_user", "actor_device", "org")
    search_fields = ("=action", "=target_id", "=ip", "actor_user__email")
    # Newest first by primary key (a time-ordered UUIDv7): an index scan, where "-created_at" alone would sort the
    # whole table (its indexes all lead with org, actor, action or target).
    ordering = ("-pk",)
    fields = ("created_at", "action", "actor_user", "actor_device", "org", "target_type", "target_id", "ip", "details")
    readonly_fields = fields


@admin.register(MfaRecoveryCode)
class MfaRecoveryCodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which users hold recovery codes and which were used; the codes' hashes are never shown."""

    list_display = ("user", "created_at", "used_at")
    list_filter = (("used_at", admin.EmptyFieldListFilter),)
    list_select_related = ("user",)
    search_fields = ("user__email",)
    fields = ("user", "created_at", "used_at")
    readonly_fields = fields


@admin.register(LoginFailure)
class LoginFailureAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Failed sign-ins, counted to throttle password guessing."""

    list_display = ("created_at", "email", "ip")
    list_filter = ("created_at",)
    search_fields = ("=email", "=ip")
    ordering = ("-pk",)
    fields = ("created_at", "email", "ip")
    readonly_fields = fields
