"""Device groups (static and dynamic), their memberships and membership log."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from devices.admin.common import (
    DeviceFilter,
    DeviceRowAdmin,
    GroupFilter,
)
from devices.models import (
    DeviceGroup,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
)
from devices.services import groups as group_service
from orgs.admin import SiteFilter
from orgs.models import Organization
from rmm import authz
from rmm.admin import (
    CappedTabularInline,
    DomainErrorsAsMessagesMixin,
    ScopedAdminMixin,
    add_domain_error,
    organizations_holding,
)
from rmm.domain_errors import DomainError
from rmm.inputs import JSONFormField
from rmm.net import client_ip

# --- Groups and commands -------------------------------------------------------------------------------------------


class MemberInline(CappedTabularInline):
    model = DeviceGroupMembership
    verbose_name_plural = "members"
    fields = ("device", "added_by", "is_pinned", "added_at")
    ordering = ("device__hostname",)
    see_all_param = "group"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device")


class DeviceGroupForm(forms.ModelForm):
    """A group's form. A dynamic group's rule is edited as JSON (filter-rules.md) and validated like the API does:
    each problem is shown with the path of the offending node."""

    filter_rules = JSONFormField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "style": "font-family: monospace"}),
        help_text='Dynamic groups only, e.g. {"operator": "AND", "conditions": [{"field": "osType", "operator": '
        '"equals", "value": "windows"}, {"field": "software.installed", "operator": "contains", "value": "chrome"}]}',
    )

    class Meta:
        model = DeviceGroup
        fields = ("org", "site", "name", "type", "parent", "filter_rules")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "type" in self.fields:
            self.fields["type"].required = False  # static unless said otherwise
        parent_field = self.fields.get("parent")
        if isinstance(parent_field, forms.ModelChoiceField) and parent_field.queryset is not None and self.instance.pk:
            # A group's parent is another group of its organization.
            parents = parent_field.queryset.filter(org_id=self.instance.org_id).exclude(pk=self.instance.pk)
            parent_field.queryset = parents

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned  # the service's rules need every field's value
        # Before _post_clean: self.instance still holds the group as stored (or a new, unsaved one).
        stored = None if self.instance._state.adding else self.instance
        changes = {name: cleaned.get(name) for name in group_service.GROUP_FIELDS if name in self.fields}
        try:
            values = group_service.check_group(group=stored, changes=changes)
        except group_service.InvalidRule as error:
            # A rule's problems are named by the path of the bad node, shown on the rule's field.
            messages = [f"{path}: {message}" for path, messages in error.fields.items() for message in messages]
            self.add_error("filter_rules", messages)
        except DomainError as error:
            add_domain_error(self, error)
        else:
            if "type" in self.fields:
                cleaned["type"] = values["type"]
        return cleaned


@admin.register(DeviceGroup)
class DeviceGroupAdmin(DomainErrorsAsMessagesMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Device groups with their members. A dynamic group's rule is validated when saved and evaluated at once; the
    page shows how many devices it matches (of those the user may see) and the first of them.

    Groups bound to a site are reached through that site; groups of the whole organization need whole-organization
    reach. The organization dropdown offers organizations where the user may write devices on some site (a
    site-restricted member makes groups of their sites), the parent dropdown groups the user may read.
    """

    resource = "devices"
    choice_permissions = {"parent": "devices:read"}
    form = DeviceGroupForm
    list_display = ("name", "org", "site", "type", "parent", "created_at")
    list_filter = ("type", "org", SiteFilter)
    list_select_related = ("org", "site__org", "parent")
    search_fields = ("name", "org__name")
    autocomplete_fields = ("site", "parent")
    fields = (
        "org",
        "site",
        "name",
        "parent",
        "type",
        "filter_rules",
        "matching_devices",
        "fields_used",
        "id",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("matching_devices", "fields_used", "id", "created_at", "updated_at")
    inlines = (MemberInline,)
    preview_size = 20

    def get_readonly_fields(self, request, obj=None):
        # Members' rows carry the group's org_id (a composite foreign key): a group cannot change organization,
        # nor its type (a static group's hand-picked members would become a rule's, or the other way round).
        return (*self.readonly_fields, "org", "type") if obj else self.readonly_fields

    def field_choices(self, request, db_field, queryset=None):
        if db_field.name == "org":
            return organizations_holding(
                request.user, self.permission("change"), Organization.objects.all() if queryset is None else queryset
            )
        return super().field_choices(request, db_field, queryset)

    def get_object(self, request, object_id, from_field=None):
        group = super().get_object(request, object_id, from_field)
        if group is not None:
            # matching_devices previews what this user may see. On the object, not on this admin, which every
            # request (and thread) shares.
            group.previewed_by = request.user
        return group

    @admin.display(description="matching devices")
    def matching_devices(self, obj):
        user = getattr(obj, "previewed_by", None)
        if obj is None or obj.pk is None or obj.type != DeviceGroup.Type.DYNAMIC or user is None:
            return "—"
        try:
            result = group_service.preview(user=user, org_id=obj.org_id, site_id=obj.site_id, rule=obj.filter_rules)
        except group_service.RuleTimedOut as exc:
            return exc.message
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a></li>',
            ((reverse("admin:devices_device_change", args=[d.pk]), str(d)) for d in result.sample[: self.preview_size]),
        )
        more = result.count - min(result.count, self.preview_size)
        return format_html(
            "{} devices you can see match the rule now.<ul>{}</ul>{}",
            result.count,
            items,
            f"… and {more} more." if more else "",
        )

    def save_model(self, request, obj, form, change):
        # The groups service saves (and evaluates, and audits); obj, the form's instance, then becomes that row.
        fields = [name for name in group_service.GROUP_FIELDS if name in form.cleaned_data]
        if change:
            changes = {name: form.cleaned_data[name] for name in fields if name in form.changed_data}
            stored = DeviceGroup.objects.get(pk=obj.pk)
            group_service.update_group(group=stored, changes=changes, actor=request.user, ip=client_ip(request))
        else:
            values = {name: form.cleaned_data[name] for name in fields}
            saved = group_service.create_group(actor=request.user, ip=client_ip(request), **values)
            obj.pk = saved.pk
            obj._state.adding = False
        obj.refresh_from_db()
        self.check_still_in_reach(request, obj, "change" if change else "add")
        authz.clear_cache(request.user)

    def delete_model(self, request, obj):
        if not authz.can(request.user, self.permission("delete"), obj):
            raise PermissionDenied
        group_service.delete_group(group=obj, actor=request.user, ip=client_ip(request))

    def delete_queryset(self, request, queryset):
        allowed = authz.visible(request.user, self.permission("delete"), queryset)
        if queryset.exclude(pk__in=allowed.values("pk")).exists():
            raise PermissionDenied
        for group in queryset:
            group_service.delete_group(group=group, actor=request.user, ip=client_ip(request))


@admin.register(DeviceGroupMembershipLog)
class DeviceGroupMembershipLogAdmin(DeviceRowAdmin):
    """Every change of a group's membership: added or removed by its rule or a person, pinned, unpinned."""

    list_display = ("at", "group", "device", "change", "reason", "actor_user")
    list_filter = ("change", "reason", "org", DeviceFilter, GroupFilter)
    list_select_related = ("device", "group", "org", "actor_user")
    search_fields = ("device__hostname", "group__name")
    fields = ("at", "group", "device", "org", "change", "reason", "actor_user")


@admin.register(DeviceGroupMembership)
class DeviceGroupMembershipAdmin(DeviceRowAdmin):
    """Which device is in which group, and whether a person or the group's rule put it there."""

    list_display = ("device", "group", "org", "added_by", "is_pinned", "added_at")
    list_filter = ("added_by", "is_pinned", "org", DeviceFilter, GroupFilter)
    list_select_related = ("device", "group", "org")
    search_fields = ("device__hostname", "group__name")
    fields = ("device", "group", "org", "added_by", "is_pinned", "added_at")
