"""Device groups (static and dynamic), their memberships and membership log."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from devices import rules
from devices.admin.commands import COMMAND_PERMISSION, CommandFields
from devices.admin.common import (
    DeviceFilter,
    DeviceRowAdmin,
    GroupFilter,
)
from devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
)
from devices.services import groups as group_service
from orgs.admin import SiteFilter
from orgs.models import Organization, Site
from rmm import authz
from rmm.admin import (
    CappedTabularInline,
    DomainErrorsAsMessagesMixin,
    ScopedAdminMixin,
    add_domain_error,
    domain_error_message,
    organizations_holding,
)
from rmm.domain_errors import DomainError
from rmm.inputs import JSONFormField
from rmm.net import client_ip

# Reading a group's rule and previewing one needs devices:read, as POST /api/v1/groups/preview does.
READ_PERMISSION = "devices:read"

# --- Groups and commands -------------------------------------------------------------------------------------------


class MemberInline(CappedTabularInline):
    model = DeviceGroupMembership
    verbose_name_plural = "members"
    fields = ("device", "added_by", "is_pinned", "added_at")
    ordering = ("device__hostname",)
    see_all_param = "group"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device")


# --- The rule editor's grammar: fields and operators from devices.rules, the one home of the rule language ---------

# How an operator's value is typed in the editor. The lists of value-less and list operators are the grammar's own
# (devices.rules); tests/console/test_groups.py checks that every operator has exactly one shape and that a value of
# each shape passes validate_rule.
RANGE_OPERATORS = ("between",)
DURATION_OPERATORS = ("withinLast", "notWithinLast")
OPERATOR_LABELS = {
    "equals": "is",
    "notEquals": "is not",
    "contains": "contains",
    "notContains": "does not contain",
    "startsWith": "starts with",
    "endsWith": "ends with",
    "matches": "matches the regular expression",
    "in": "is one of",
    "notIn": "is none of",
    "isNull": "has no value",
    "isNotNull": "has a value",
    "greaterThan": ">",
    "greaterThanOrEquals": "≥",
    "lessThan": "<",
    "lessThanOrEquals": "≤",
    "between": "is between",
    "before": "is before",
    "after": "is after",
    "withinLast": "is within the last",
    "notWithinLast": "is not within the last",
    "hasAny": "has any of",
    "hasAll": "has all of",
    "isEmpty": "is empty",
    "isNotEmpty": "is not empty",
}
_FIELD_PREFIXES = {"hardware": "Hardware", "network": "Network", "disks": "Disks", "metrics": "Latest sample"}
_ACRONYMS = {"os": "OS", "ip": "IP", "mac": "MAC", "cpu": "CPU", "ram": "RAM", "gpu": "GPU", "mb": "MB", "gb": "GB"}
# Sites offered for siteId conditions; past this many the editor takes a site's id as text.
RULE_EDITOR_SITES = 1000


def operator_shape(operator: str) -> str:
    """How the editor takes the value of ``operator``: none, list, range, duration or single."""
    if operator in rules.VALUELESS_OPERATORS:
        return "none"
    if operator in rules.LIST_OPERATORS:
        return "list"
    if operator in RANGE_OPERATORS:
        return "range"
    if operator in DURATION_OPERATORS:
        return "duration"
    return "single"


def field_label(name: str) -> str:
    """``hardware.ramTotalMb`` → ``Hardware: RAM total MB``; ``siteId`` → ``Site``."""
    prefix, _, rest = name.rpartition(".")
    words = "".join(f" {c}" if c.isupper() else c for c in rest.removesuffix("Id")).lower().split()
    shown = [_ACRONYMS.get(word, word) for word in words]
    if not prefix:
        shown[0] = shown[0][:1].upper() + shown[0][1:]
        return " ".join(shown)
    return f"{_FIELD_PREFIXES.get(prefix, prefix.capitalize())}: {' '.join(shown)}"


def rule_grammar(sites: list[dict[str, str]]) -> dict[str, Any]:
    """What the rule editor (rmm/static/console/rule_editor.js) offers, from ``devices.rules``: every field with its
    type, operators and choices, every operator's label and value shape, the units of a duration, and ``sites``
    (id, name, organization) for siteId conditions."""
    operators = sorted({op for field in rules.FIELDS.values() for op in field.operators})
    return {
        "fields": [
            {
                "name": field.name,
                "label": field_label(field.name),
                "type": field.type,
                "operators": list(field.operators),
                "choices": list(field.choices),
                "sites": field.name == "siteId",
                "wholeDays": field.whole_days,
            }
            for field in rules.FIELDS.values()
        ],
        "operators": {op: {"label": OPERATOR_LABELS.get(op, op), "shape": operator_shape(op)} for op in operators},
        "units": list(rules.DURATION_UNITS),
        "sites": sites,
        "sitesComplete": len(sites) < RULE_EDITOR_SITES,
    }


def _member_count():
    """A group's members, counted by one subquery per listed group in the list's own query (no query per row)."""
    counts = (
        DeviceGroupMembership.objects.filter(group_id=OuterRef("pk"))
        .order_by()
        .values("group_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


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
    list_display = ("name", "org", "site", "type", "members", "parent", "created_at", "run_on_group")
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

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=_member_count())

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        for group in changelist.result_list:  # evaluated once here; the template iterates the cached rows
            group.may_run = authz.can(request.user, COMMAND_PERMISSION, group)
        return changelist

    def get_urls(self):
        run = self.admin_site.admin_view(self.run_view)
        preview = self.admin_site.admin_view(require_POST(self.rule_preview_view))
        return [
            path("rule-preview/", preview, name="devices_devicegroup_rule_preview"),
            path("<uuid:object_id>/run/", run, name="devices_devicegroup_run"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {**(extra_context or {}), **self._editor_context(request, None)})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        group = self.get_object(request, object_id)
        context = {**(extra_context or {}), **self._editor_context(request, group)}
        context["may_run_on_group"] = group is not None and authz.can(request.user, COMMAND_PERMISSION, group)
        return super().change_view(request, object_id, form_url, context)

    def _editor_context(self, request, group: DeviceGroup | None) -> dict[str, Any]:
        """The rule editor's grammar, with the sites a siteId condition may name: the group's organization's, or on
        the add page those of the organizations the person may make groups in."""
        if group is not None:
            orgs = Organization.objects.filter(pk=group.org_id)
        else:
            orgs = organizations_holding(request.user, self.permission("change"), Organization.objects.all())
        sites = authz.visible(request.user, READ_PERMISSION, Site.objects.filter(org__in=orgs)).order_by("name", "id")
        listed = [
            {"id": str(pk), "name": name, "org": str(org_id)}
            for pk, name, org_id in sites.values_list("pk", "name", "org_id")[:RULE_EDITOR_SITES]
        ]
        return {"rule_grammar": rule_grammar(listed)}

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

    @admin.display(description="members", ordering="member_count")
    def members(self, obj: DeviceGroup):
        count = getattr(obj, "member_count", None)
        if count is None:
            return "—"
        url = reverse("admin:devices_devicegroupmembership_changelist")
        return format_html('<a href="{}?group={}">{}</a>', url, obj.pk, count)

    @admin.display(description="run")
    def run_on_group(self, obj: DeviceGroup):
        if not getattr(obj, "may_run", False):
            return ""
        url = reverse("admin:devices_devicegroup_run", args=[obj.pk])
        return format_html('<a href="{}" data-console-action="run_on_group">Run on group…</a>', url)

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

    # "Run on group" ----------------------------------------------------------------------------------------------

    def run_view(self, request, object_id):
        """Run a command (``queue_group_commands``) or a library script (``start_run`` with the group as target) on
        the group's members. Offered to people who may run commands on the group (``devices:execute``, as ``POST
        /api/v1/groups/{id}/commands``); the script part lists the library scripts they may run
        (``scripts:execute``). The services decide everything; their refusals are shown on the forms."""
        from scripts.admin import RunForm, run_summary, start_run_from_form

        group = self.get_object(request, str(object_id))
        if group is None:
            raise Http404("No such group in your reach.")
        if not authz.can(request.user, COMMAND_PERMISSION, group):
            raise PermissionDenied
        scripts = runnable_scripts(request.user, group)
        script = _picked(scripts, request.POST.get("script") or request.GET.get("script"))
        command_form = GroupCommandForm(prefix="command")
        run_form = None
        if script is not None:
            run_form = RunForm(initial={"group": group.pk}, script=script, user=request.user, prefix="script")
        if request.method == "POST" and request.POST.get("run") == "command":
            command_form = GroupCommandForm(request.POST, prefix="command")
            if command_form.is_valid():
                queued = self._queue_commands(request, group, command_form)
                if queued:
                    return HttpResponseRedirect(reverse("admin:devices_devicegroup_change", args=[group.pk]))
        elif request.method == "POST" and request.POST.get("run") == "script" and script is not None:
            data = request.POST.copy()
            data["script-group"] = str(group.pk)  # this page runs on this group, whatever was posted
            run_form = RunForm(data, script=script, user=request.user, prefix="script")
            if run_form.is_valid():
                run = start_run_from_form(request, script, run_form)
                if run is not None:
                    self.message_user(request, run_summary(run), messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:scripts_scriptrun_change", args=[run.pk]))
        members = Device.objects.filter(group_memberships__group_id=group.pk, org_id=group.org_id)
        reachable = authz.visible(request.user, COMMAND_PERMISSION, members).exclude(
            status=Device.Status.DECOMMISSIONED
        )
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run on {group.name}",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "original": group,
            "member_count": members.count(),
            "reachable_count": reachable.count(),
            "command_form": command_form,
            "scripts": list(scripts.order_by("name").values_list("pk", "name")[:500]),
            "script": script,
            "run_form": run_form,
            "run_parameters": [field for field in run_form if field.name.startswith("param_")] if run_form else [],
        }
        request.current_app = self.admin_site.name
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(request, "admin/devices/devicegroup/run.html", context, status=status)

    def _queue_commands(self, request, group: DeviceGroup, form: GroupCommandForm) -> bool:
        try:
            result = group_service.queue_group_commands(
                group=group,
                user=request.user,
                type=form.cleaned_data["type"],
                payload=form.payload(),
                expires_in_seconds=form.expires_in_seconds(),
                ip=client_ip(request),
            )
        except DomainError as error:
            form.add_error(None, domain_error_message(error))
            return False
        queued = len(result.commands)
        text = f"Queued {form.cleaned_data['type']} on {queued} device{'' if queued == 1 else 's'} of {group.name}"
        if result.skipped:
            text += f"; {result.skipped} skipped (out of your reach or decommissioned)"
        self.message_user(request, text + ".", messages.SUCCESS)
        return True

    # The rule editor's preview -------------------------------------------------------------------------------------

    def rule_preview_view(self, request):
        """POST ``{"org": id, "site": id | null, "rule": {...}}``: how many devices the person may see match the rule
        now, and the first of them (``group_service.preview``, as ``POST /api/v1/groups/preview``: devices:read on
        the organization). A bad rule answers 400 with the problems by the path of their node."""
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "The body is not JSON."}, status=400)
        if not isinstance(body, dict):
            return JsonResponse({"error": "The body is a JSON object."}, status=400)
        org_id, site_id = _uuid(body.get("org")), _uuid(body.get("site"))
        org = Organization.objects.filter(pk=org_id).first() if org_id else None
        if org is None or not authz.can(request.user, READ_PERMISSION, org):
            return JsonResponse({"error": "Pick an organization whose devices you may see."}, status=403)
        site = None
        if body.get("site"):
            site = Site.objects.filter(pk=site_id, org=org).first() if site_id else None
            if site is None:
                return JsonResponse({"error": "That site is not one of this organization's."}, status=400)
        rule = body.get("rule")
        try:
            group_service.check_preview(org=org, site=site, rule=rule)  # a valid rule is a dict from here on
            result = group_service.preview(
                user=request.user, org_id=org.pk, site_id=site.pk if site else None, rule=cast(dict, rule)
            )
        except DomainError as error:
            return JsonResponse({"error": error.message, "fields": error.fields or {}}, status=400)
        sample = [
            {"hostname": device.hostname, "url": reverse("admin:devices_device_change", args=[device.pk])}
            for device in result.sample[:PREVIEW_SHOWN]
        ]
        return JsonResponse({"count": result.count, "sample": sample})


# Devices named by the rule editor's live preview (the service samples 50).
PREVIEW_SHOWN = 10


class GroupCommandForm(CommandFields):
    """A command for every member of a group: the command's fields, as when queueing one."""


def runnable_scripts(user, group: DeviceGroup):
    """The library scripts ``user`` may run (``scripts:execute``) that can run in the group's organization."""
    from scripts.services import library

    return library.runnable_scripts(user, orgs=[group.org])


def _picked(scripts, script_id):
    pk = _uuid(script_id)
    return scripts.filter(pk=pk).first() if pk else None


def _uuid(value) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


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
