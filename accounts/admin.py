"""Admin pages for people and access: users, the permission registry, roles, memberships, API tokens, the audit log.

Secrets are never shown: ``mfa_secret``, token and recovery-code hashes are in no field list, and the password
appears only as Django's masked summary with its "reset password" link.

Access is the ``users`` resource of the authorization module, with the no-escalation rule of
``accounts.services.check_can_grant``: nobody grants, through a membership or a custom role, a permission or a reach
(organizations, sites, ``all``) they do not hold where it takes effect, and nobody changes a person (their email,
password, status) or a membership that holds more than they could grant. A partner membership shows only the
selected organizations inside the reader's reach. Audit rows of people and memberships say what changed, as the
API's do. The sign-in form of the admin (``AdminLoginForm``) applies the API's sign-in rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.forms.models import BaseInlineFormSet

from accounts import audit, services
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
from accounts.services import may_manage_membership, may_manage_user
from orgs.models import Organization
from rmm import authz
from rmm.admin import (
    AuditedAdminMixin,
    BigTableAdminMixin,
    DomainErrorsAsMessagesMixin,
    ModelAdminMixinBase,
    ReadOnlyAdminMixin,
    ReadOnlyInlineMixin,
    ScopedAdminMixin,
    ScopedInlineMixin,
    SuperuserOnlyAdminMixin,
    add_domain_error,
    adopt_saved,
    is_operator,
    with_actor,
)
from rmm.domain_errors import DomainError
from rmm.errors import TooManyAttempts
from rmm.net import client_ip

# --- Signing in -----------------------------------------------------------------------------------------------------


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's sign-in: the rules of POST /api/v1/auth/login (``services.check_credentials``: the throttle,
    disabled accounts, roles that force MFA, the authenticator code), then Django's staff-only check."""

    totp = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="When multi-factor sign-in is on: the code from your authenticator app, or a recovery code.",
    )

    def clean(self):
        email, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if email is None or not password:
            return self.cleaned_data
        ip = client_ip(self.request) if self.request is not None else None
        try:
            user = services.check_credentials(
                email=email, password=password, totp=self.cleaned_data.get("totp") or None, ip=ip
            )
        except (DomainError, TooManyAttempts) as refusal:
            raise self._refusal_error(refusal) from None
        # Django's login() records which backend authenticated the user; check_credentials did the password check.
        user.backend = "django.contrib.auth.backends.ModelBackend"  # type: ignore[attr-defined]  # read by login()
        self.confirm_login_allowed(user)  # staff only (and not disabled)
        self.user_cache = user
        services.record_sign_in(user=user, ip=ip, via="admin")
        return self.cleaned_data

    def _refusal_error(self, refusal: DomainError | TooManyAttempts) -> forms.ValidationError:
        if refusal.code == "invalid_credentials":
            return self.get_invalid_login_error()
        if refusal.code == "mfa_required":
            return forms.ValidationError({"totp": "Enter the code from your authenticator app."}, code="mfa_required")
        if refusal.code == "invalid_totp":
            return forms.ValidationError({"totp": refusal.message}, code="invalid_totp")
        if refusal.code == "mfa_enrollment_required":
            return forms.ValidationError(
                "Your role requires multi-factor sign-in, which this account has not set up yet. Set it up through "
                "the API: POST /api/v1/auth/login answers with a setup token; with it, POST /api/v1/auth/mfa/setup "
                "and POST /api/v1/auth/mfa/enable. Then sign in here with your authenticator code.",
                code="mfa_enrollment_required",
            )
        return forms.ValidationError(refusal.message, code=refusal.code)  # the throttle (429), a disabled account


class ActorFormMixin:
    """A form that checks what its user may grant; ``actor`` is set per request (``rmm.admin.with_actor``)."""

    actor: User | None = None

    def check_grant(self, permissions, **where) -> None:
        """``services.check_can_grant`` (``where``: the membership's place and reach), as a form error."""
        self._refuse_escalation(services.check_can_grant, permissions, **where)

    def check_role(self, permissions, *, partner_id, role) -> None:
        """``services.check_can_define_role``, as a form error."""
        self._refuse_escalation(
            services.check_can_define_role, partner_id=partner_id, permissions=permissions, role=role
        )

    def _refuse_escalation(self, check, *args, **kwargs) -> None:
        if self.actor is None:
            raise RuntimeError(f"{type(self).__name__} needs the acting user (see rmm.admin.with_actor).")
        try:
            check(self.actor, *args, **kwargs)
        except services.EscalationRefused as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None


class ChangesAuditedAdminMixin(ModelAdminMixinBase):
    """Audit rows that say what changed (``audit.changes``) between ``audit_state(obj)`` as the page loaded the
    object and as it was saved, the same details the API's audit rows of people and memberships hold."""

    def audit_state(self, obj) -> dict:
        raise NotImplementedError

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._rmm_audit_before = self.audit_state(obj)  # before the form changes the instance
        return obj

    def audit_details(self, request, obj, verb: str) -> dict:
        if verb == "delete":
            return audit.changes(self.audit_state(obj), None)
        before = None if verb == "create" else getattr(obj, "_rmm_audit_before", None)
        return audit.changes(before, self.audit_state(obj))


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")
        help_texts = {
            "email": "The new user has no membership yet: give them one on the partner-membership or "
            "organization-membership page. (Technicians invite people through the API, which creates both at once.)"
        }

    def clean_email(self):
        # Stored lower-case, as UserManager does; the unique index on lower(email) is checked by model validation.
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


class UserForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("email", "name", "password", "status", "is_staff", "is_superuser", "groups", "user_permissions")
        # Django's own groups and permissions, not the roles of memberships (which decide access: rmm/authz.py).
        labels = {"groups": "Django groups", "user_permissions": "Django permissions"}

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


class PartnerMembershipInline(ReadOnlyInlineMixin, ScopedInlineMixin, admin.TabularInline):
    """The user's partner memberships, for reading; they are edited on the partner-user page."""

    model = PartnerUser
    fields = ("partner", "role", "org_access")
    show_change_link = True
    verbose_name_plural = "partner memberships"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partner", "role")


class OrganizationMembershipInline(ReadOnlyInlineMixin, ScopedInlineMixin, admin.TabularInline):
    """The user's organization memberships, for reading; they are edited on the organization-user page."""

    model = OrganizationUser
    fields = ("org", "role")
    show_change_link = True
    verbose_name_plural = "organization memberships"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("org", "role")


@admin.register(User)
class UserAdmin(
    DomainErrorsAsMessagesMixin, ChangesAuditedAdminMixin, AuditedAdminMixin, ScopedAdminMixin, DjangoUserAdmin
):
    """People who sign in, by email. The MFA secret is never shown; MFA is set up and removed by the user.

    Users see themselves and the members of what they manage (``authz``'s ``users`` rules). Adding a user here is
    for operators only: a new user has no membership, so it would fall outside its creator's reach at once;
    technicians invite people through the API, which creates the membership with the user. Superuser status,
    Django groups and Django permissions are operators' business too.
    """

    resource = "users"
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

    # Changing and deleting a person go through accounts.services (who may take over whom), which audit them; a
    # new user (operators only, no membership) is audited here with what it was made as.
    audited_by_service = frozenset({"update", "delete"})

    def get_inlines(self, request, obj):
        return self.inlines if obj else ()

    def audit_state(self, obj) -> dict:
        return services.user_state(obj)

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        fields = {field.name for field in obj._meta.concrete_fields}
        changes = {name: getattr(obj, name) for name in form.changed_data if name in fields}
        adopt_saved(
            obj,
            services.change_user(user=obj, changes=changes, actor=request.user, ip=client_ip(request), via="admin"),
        )

    def delete_model(self, request, obj):
        services.delete_user(user=obj, actor=request.user, ip=client_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        for user in queryset:
            self.delete_model(request, user)

    def has_add_permission(self, request):
        return is_operator(request.user)

    def _may_manage(self, request, obj) -> bool:
        cache = request.__dict__.setdefault("_rmm_may_manage_user", {})
        if obj.pk not in cache:
            cache[obj.pk] = may_manage_user(request.user, obj)
        return cache[obj.pk]

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or self._may_manage(request, obj))

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj == request.user:
            return False  # nobody deletes themself, operators included (accounts.services.delete_user)
        return super().has_delete_permission(request, obj) and (obj is None or self._may_manage(request, obj))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or is_operator(request.user):
            return fieldsets
        # Django groups and permissions (and guardian grants through groups) are beyond the authorization rules.
        return tuple(
            (name, {**options, "fields": ("is_staff", "is_superuser")}) if name == "Admin access" else (name, options)
            for name, options in fieldsets
        )

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return readonly if is_operator(request.user) else (*readonly, "is_superuser")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "is_operator": is_operator(request.user)}
        return super().changelist_view(request, extra_context)


@admin.register(Permission)
class PermissionAdmin(AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """The permission registry: ``resource:action`` pairs roles grant (``*`` is a wildcard). A public catalogue
    every staff user may read; only operators change it."""

    resource = "permissions"

    list_display = ("resource", "action", "description")
    list_filter = ("resource",)
    search_fields = ("resource", "action", "description")

    def has_view_permission(self, request, obj=None):
        return authz.reach(request.user).is_active

    def has_add_permission(self, request):
        return is_operator(request.user)

    def has_change_permission(self, request, obj=None):
        return is_operator(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_operator(request.user)


class RolePermissionFormSet(ActorFormMixin, BaseInlineFormSet):
    """A custom role's permissions: only what the actor holds at partner level in the role's partner."""

    def clean(self):
        super().clean()
        if any(self.errors) or self.instance.partner_id is None:
            return  # a built-in role: operators only (the role's admin)
        kept = [
            str(form.cleaned_data["permission"])
            for form in self.forms
            if form.cleaned_data.get("permission") and not form.cleaned_data.get("DELETE")
        ]
        role = None if self.instance._state.adding else self.instance
        self.check_role(kept, partner_id=self.instance.partner_id, role=role)


class RolePermissionInline(ScopedInlineMixin, admin.TabularInline):
    model = RolePermission
    formset = RolePermissionFormSet
    scope_rows = False  # the rows of a role the user may see; authz has no scope of its own for them
    extra = 0
    fields = ("permission",)

    def get_formset(self, request, obj=None, **kwargs):
        return with_actor(super().get_formset(request, obj, **kwargs), request)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("permission")

    # Built-in roles come from fixtures and are the same on every installation.
    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and not (obj and obj.is_system)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.is_system)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_system)


class RoleForm(ActorFormMixin, forms.ModelForm):
    """A role; for anyone but operators a custom role of a partner where they manage users (partner-level
    ``users:write``), of scope partner or organization."""

    class Meta:
        model = Role
        fields = ("name", "scope", "partner", "force_mfa", "description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not is_operator(self.actor):
            scope_field = self.fields.get("scope")
            if isinstance(scope_field, forms.ChoiceField):
                # A ChoiceField keeps its choices as a list of (value, label) pairs.
                choices = cast("list[tuple[str, str]]", scope_field.choices)
                scope_field.choices = [(value, label) for value, label in choices if value != Role.Scope.SYSTEM]
            if "partner" in self.fields:
                self.fields["partner"].required = True

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        partner = cleaned.get("partner") if "partner" in self.fields else self.instance.partner
        if partner is not None and not is_operator(self.actor):
            self.check_grant((), partner_id=partner.pk)
        return cleaned


@admin.register(Role)
class RoleAdmin(DomainErrorsAsMessagesMixin, AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Named permission sets; built-in roles (no partner, ``is_system``) are read-only.

    Everyone reads the built-in roles and the custom roles of the partners they work in; a partner's custom roles
    are made, changed and deleted at partner level (``users:write`` / ``users:delete`` in that partner) and grant
    only permissions their maker holds there (``RolePermissionFormSet``).
    """

    resource = "users"
    form = RoleForm
    # A role is saved with its permissions, by accounts.services (define_role, change_role, delete_role), which
    # check the rules again and audit it: save_related, once the inline's rows are known, not save_model.
    audited_by_service = frozenset({"create", "update", "delete"})
    list_display = ("name", "scope", "partner", "is_system", "force_mfa")
    list_filter = ("scope", "is_system", "force_mfa", "partner")
    list_select_related = ("partner",)
    search_fields = ("name", "description")
    fields = ("name", "scope", "partner", "force_mfa", "description", "is_system", "id", "created_at", "updated_at")
    readonly_fields = ("is_system", "id", "created_at", "updated_at")
    inlines = (RolePermissionInline,)

    def get_form(self, request, obj=None, change=False, **kwargs):
        return with_actor(super().get_form(request, obj, change=change, **kwargs), request)

    def save_model(self, request, obj, form, change):
        pass  # saved with its permissions in save_related

    def save_related(self, request, form, formsets, change):
        obj = form.instance
        kept = [
            row.cleaned_data["permission"]
            for formset in formsets
            for row in formset.forms
            if row.cleaned_data.get("permission") and not row.cleaned_data.get("DELETE")
        ]
        where = {"actor": request.user, "ip": client_ip(request), "via": "admin"}
        if change:
            fields = {field.name for field in obj._meta.concrete_fields}
            changes = {name: getattr(obj, name) for name in form.changed_data if name in fields}
            unchanged = {permission.pk for permission in kept} == set(obj.permissions.values_list("pk", flat=True))
            saved = services.change_role(role=obj, changes=changes, permissions=None if unchanged else kept, **where)
        else:
            saved = services.define_role(
                partner=obj.partner,
                name=obj.name,
                scope=obj.scope,
                force_mfa=obj.force_mfa,
                description=obj.description,
                permissions=kept,
                **where,
            )
        adopt_saved(obj, saved)
        for formset in formsets:  # Django's change message reads what the inline saved: the service saved it
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj):
        services.delete_role(role=obj, actor=request.user, ip=client_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        for role in queryset:
            self.delete_model(request, role)

    def get_readonly_fields(self, request, obj=None):
        # A role's members' memberships belong to its partner: moving it would break or widen them.
        if obj is not None and not is_operator(request.user):
            return (*self.readonly_fields, "partner")
        return self.readonly_fields

    def has_add_permission(self, request):
        return is_operator(request.user) or bool(authz.reach(request.user).partners_with(self.permission("add")))

    def _at_partner_level(self, request, obj, action: str) -> bool:
        if obj.is_system:
            return False
        if is_operator(request.user):
            return True
        return obj.partner_id is not None and authz.has_partner_permission(
            request.user, obj.partner_id, self.permission(action)
        )

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request)
        return self._at_partner_level(request, obj, "change")

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return super().has_delete_permission(request)
        return self._at_partner_level(request, obj, "delete")


@admin.register(RolePermission)
class RolePermissionAdmin(AuditedAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Role → permission grants, one row each, for operators (others edit a role's permissions on its page,
    where the no-escalation rule applies)."""

    list_display = ("role", "permission")
    list_filter = ("role",)
    list_select_related = ("role", "permission")
    search_fields = ("role__name", "permission__resource", "permission__action")


class PartnerUserForm(ActorFormMixin, forms.ModelForm):
    class Meta:
        model = PartnerUser
        fields = ("partner", "user", "role", "org_access", "selected_organizations")

    def clean(self):
        """The service's rules (``check_partner_membership``, ``check_can_grant``) before saving, as form errors;
        saving goes through ``grant_partner_access``, which checks them again."""
        super().clean()
        cleaned = self.cleaned_data
        partner = cleaned.get("partner") if "partner" in self.fields else self.instance.partner
        role, org_access = cleaned.get("role"), cleaned.get("org_access")
        selected = list(cleaned.get("selected_organizations") or ())
        if partner is None or role is None or not org_access or self.errors:
            return cleaned
        try:
            services.check_partner_membership(partner=partner, role=role, org_access=org_access, organizations=selected)
        except services.MembershipError as error:
            add_domain_error(self, error, field_names={"organizationIds": "selected_organizations"})
            return cleaned
        self.check_grant(
            services.role_permission_names(role), partner_id=partner.pk, org_access=org_access, organizations=selected
        )
        return cleaned


class MembershipAdminMixin(DomainErrorsAsMessagesMixin):
    """Memberships are granted by whoever may grant their role with their reach where it takes effect
    (``check_can_grant``, in the forms); a membership the user could not grant as it stands is read-only to them.
    A membership does not move: its partner or organization and its user are fixed once made.

    Saving and deleting go through ``accounts.services`` (``grant``, ``revoke_access``), which check the rules
    again and write the audit row (the API's ``partner_user.*`` / ``organization_user.*``, saying what changed)."""

    resource = "users"
    choice_permissions: Mapping[str, str] = {"user": "users:read", "role": "users:read"}
    scope_field = ""
    audited_by_service = frozenset({"create", "update", "delete"})

    def grant(self, request, obj, form):
        """Create or change the membership through its service; subclasses name the service."""
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        adopt_saved(obj, self.grant(request, obj, form))

    def save_related(self, request, form, formsets, change):
        pass  # the service set the many-to-many selection with the membership (and memberships have no inlines)

    def delete_model(self, request, obj):
        services.revoke_access(membership=obj, actor=request.user, ip=client_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            self.delete_model(request, membership)

    def get_form(self, request, obj=None, change=False, **kwargs):
        return with_actor(super().get_form(request, obj, change=change, **kwargs), request)

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return (*readonly, self.scope_field, "user") if obj is not None else readonly

    def _may_manage(self, request, obj) -> bool:
        if not hasattr(obj, "_rmm_may_manage"):
            obj._rmm_may_manage = may_manage_membership(request.user, obj)
        return obj._rmm_may_manage

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or self._may_manage(request, obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or self._may_manage(request, obj))


@admin.register(PartnerUser)
class PartnerUserAdmin(MembershipAdminMixin, AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """A user's membership in a partner: its role, and which of the partner's organizations it reaches. Managed
    with partner-level ``users:write``; the partner dropdown offers the partners where the user holds it."""

    scope_field = "partner"

    form = PartnerUserForm
    list_display = ("user", "partner", "role", "org_access", "created_at")
    list_filter = ("org_access", "role", "partner")
    list_select_related = ("user", "partner", "role")
    search_fields = ("user__email", "user__name", "partner__name")
    autocomplete_fields = ("user", "selected_organizations")
    readonly_fields = ("id", "created_at", "updated_at", "organizations_in_your_reach")

    def has_add_permission(self, request):
        return is_operator(request.user) or bool(authz.reach(request.user).partners_with(self.permission("add")))

    def grant(self, request, obj, form):
        return services.grant_partner_access(
            partner=obj.partner,
            user=obj.user,
            role=obj.role,
            org_access=obj.org_access,
            organizations=form.cleaned_data.get("selected_organizations") or (),
            actor=request.user,
            ip=client_ip(request),
            via="admin",
        )

    def field_choices(self, request, db_field, queryset=None):
        if db_field.name == "selected_organizations":
            # Organizations the user could hand out: reached whole, in a partner where they manage members. Whether
            # the role's permissions are held there too is check_can_grant's, when the form is checked.
            queryset = Organization.objects.all() if queryset is None else queryset
            if is_operator(request.user):
                return queryset
            current = authz.reach(request.user)
            return queryset.filter(
                partner_id__in=current.partners_with(self.permission("change")),
                pk__in=[org_id for org_id, entry in current.orgs.items() if entry.whole_org],
            )
        return super().field_choices(request, db_field, queryset)

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "organizations_in_your_reach"]
        if obj is not None and not self.has_change_permission(request, obj):
            # Shown read-only, the field would name every selected organization, those out of the reader's reach too.
            fields = ["organizations_in_your_reach" if name == "selected_organizations" else name for name in fields]
        return fields

    @admin.display(description="selected organizations (those in your reach)")
    def organizations_in_your_reach(self, obj) -> str:
        reader = getattr(obj, "_rmm_reader", None)  # the ModelAdmin is shared by every request: not on self
        if reader is None:
            return "-"
        return ", ".join(str(org) for org in obj.selected_organizations.all() if authz.in_reach(reader, org)) or "-"

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._rmm_reader = request.user
        return obj


class OrganizationUserForm(ActorFormMixin, forms.ModelForm):
    class Meta:
        model = OrganizationUser
        fields = ("org", "user", "role", "sites")

    def clean(self):
        """The service's rules (``check_organization_membership``, ``check_can_grant``) before saving, as form
        errors; saving goes through ``grant_organization_access``, which checks them again."""
        super().clean()
        cleaned = self.cleaned_data
        org = cleaned.get("org") if "org" in self.fields else self.instance.org
        role = cleaned.get("role")
        sites = list(cleaned.get("sites") or ())
        if org is None or role is None or self.errors:
            return cleaned
        try:
            services.check_organization_membership(org=org, role=role, sites=sites)
        except services.MembershipError as error:
            add_domain_error(self, error)
            return cleaned
        self.check_grant(services.role_permission_names(role), org=org, sites=sites)
        return cleaned


@admin.register(OrganizationUser)
class OrganizationUserAdmin(MembershipAdminMixin, AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """A user's membership in one organization, optionally restricted to some of its sites. Managed with
    ``users:write`` on the whole organization; the organization dropdown offers the organizations where the user
    holds it."""

    scope_field = "org"

    form = OrganizationUserForm
    list_display = ("user", "org", "role", "created_at")
    list_filter = ("role", "org")
    list_select_related = ("user", "org", "role")
    search_fields = ("user__email", "user__name", "org__name")
    autocomplete_fields = ("user", "sites")
    readonly_fields = ("id", "created_at", "updated_at")

    def grant(self, request, obj, form):
        return services.grant_organization_access(
            org=obj.org,
            user=obj.user,
            role=obj.role,
            sites=form.cleaned_data.get("sites") or (),
            actor=request.user,
            ip=client_ip(request),
            via="admin",
        )


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Personal API tokens, for reading and deleting. Users create their own through the API; the hash stays hidden.
    Everyone sees and deletes their own tokens only (authz scopes tokens by owner); operators see all."""

    resource = "users"

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

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return authz.reach(request.user).is_active
        return super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return authz.reach(request.user).is_active
        return super().has_delete_permission(request, obj)


@admin.register(AuditLog)
class AuditLogAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Who did what, for reading only: the table is append-only (a trigger refuses UPDATE and DELETE). Read with
    ``audit:read`` on the whole organization; rows of no organization (sign-ins) are for operators."""

    resource = "audit"

    list_display = ("created_at", "action", "actor_user", "actor_device", "org", "target", "ip")
    list_filter = ("created_at", "org")
    # Actors and organizations have no foreign-key constraint (the log outlives them): these are LEFT JOINs.
    list_select_related = ("actor_user", "actor_device", "org")
    search_fields = ("=action", "=target_id", "=ip", "actor_user__email")
    # Newest first by primary key (a time-ordered UUIDv7): an index scan, where "-created_at" alone would sort the
    # whole table (its indexes all lead with org, actor, action or target).
    ordering = ("-pk",)
    fields = (
        "created_at",
        "action",
        "actor_user",
        "actor_device",
        "org",
        "target",
        "target_type",
        "target_id",
        "ip",
        "details",
    )
    readonly_fields = fields

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The rows keep only the target's type and id: its name is read for the whole page at once.
        labels = audit.target_labels(changelist.result_list)
        for entry in changelist.result_list:
            entry._rmm_target_label = labels[entry.pk]
        return changelist

    @admin.display(description="target")
    def target(self, obj: AuditLog) -> str:
        label = getattr(obj, "_rmm_target_label", None)
        return audit.target_labels([obj])[obj.pk] if label is None else label


@admin.register(MfaRecoveryCode)
class MfaRecoveryCodeAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Which users hold recovery codes and which were used; the codes' hashes are never shown."""

    list_display = ("user", "created_at", "used_at")
    list_filter = (("used_at", admin.EmptyFieldListFilter),)
    list_select_related = ("user",)
    search_fields = ("user__email",)
    fields = ("user", "created_at", "used_at")
    readonly_fields = fields


@admin.register(RecentFailures)
class RecentFailuresAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Who the throttles are counting (accounts/throttle.py): failed sign-ins and codes, refused keys and tokens,
    by email, address or user, with the times of their failures in the window."""

    list_display = ("scope", "subject", "failures", "updated_at")
    list_filter = ("scope",)
    search_fields = ("subject",)
    ordering = ("-updated_at",)
    fields = ("scope", "subject", "failed_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="failures kept")
    def failures(self, obj: RecentFailures) -> int:
        return len(obj.failed_at)


# --- Django's own groups ----------------------------------------------------------------------------------------------


class DjangoGroupAdmin(SuperuserOnlyAdminMixin, GroupAdmin):
    """Django's permission groups ("Groups" of the auth app). Access here comes from roles and memberships
    (``rmm/authz.py``), so an installation normally has none, and "Groups" beside "Device groups" only misleads.
    Listed in the sidebar for operators once some exist; the page stays at its URL for an operator who wants one,
    and for nobody else (a technician could otherwise grant Django permissions through it)."""

    def has_module_permission(self, request):
        if not super().has_module_permission(request):
            return False
        # Every admin page's sidebar asks: one query per request.
        if "_rmm_django_groups_exist" not in request.__dict__:
            request.__dict__["_rmm_django_groups_exist"] = Group.objects.exists()
        return request.__dict__["_rmm_django_groups_exist"]


admin.site.unregister(Group)
admin.site.register(Group, DjangoGroupAdmin)
