"""The device list a technician scans (issue 16, point 2): its columns, filters and search, and its bulk actions.

``DeviceListMixin`` is mixed into ``devices.admin.device.DeviceAdmin`` (the device page is ``device_page``'s).

- Columns that fit 1440 px (``rmm/static/console/devices.css``): hostname, status badge, organization / site, OS and
  version, agent version, "last seen 3 min ago", primary LAN IP, tags, open alerts. The LAN IP and the open-alert
  count are subqueries of the page's one query (``DeviceChangeList``), so the list's query count does not grow with
  its rows.
- Filters: organization, site, status, OS (``status__exact`` / ``os_type__exact``, the dashboard's links), tag, group
  and "has open alerts".
- Search: a UNION of indexed look-ups, as the API's (``devices.filters.DeviceFilter.filter_search``), plus LAN IPs
  (exact, or a prefix when the term ends in "." or ":"), an exact tag and organization names.
- Bulk actions (the console contract's names): each is offered to people who hold its permission somewhere, opens a
  confirmation page that says how many of the selected devices it will touch and how many are left out (not in
  reach for that permission), asks for its inputs, and then calls the service the API calls for each device in
  reach: ``devices.services.status``, ``devices.services.commands.queue_command``, ``devices.services.groups.
  add_members`` and ``scripts.services.runs.start_run``. A device the service refuses (an approve of a device that
  is not quarantined) is left as it is and counted, with the service's reason, in the message.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, Func, IntegerField, OuterRef, Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from alerts.models import Alert
from alerts.services.lifecycle import ACTIVE as ACTIVE_ALERT_STATUSES
from devices.admin.commands import CommandFields
from devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceHardware,
    DeviceNetworkInterface,
)
from devices.services import commands as command_service
from devices.services import groups as group_service
from devices.services import status as device_status
from orgs.admin import SiteFilter
from orgs.models import Organization
from rmm import authz
from rmm.admin import InputCheckingChangeList, ModelAdminMixinBase, add_domain_error, domain_error_message
from rmm.console import MISSING, status_badge, time_ago
from rmm.domain_errors import DomainError
from rmm.net import client_ip
from scripts.models import Script, ScriptRun
from scripts.services import library

# A bulk action acts on at most this many devices (each gets its own service call and audit row); a run on more
# devices goes through a group ("Run on group").
BULK_LIMIT = 500
# Hostnames named on a confirmation page, per list (the rest are counted).
NAMED_ON_PAGE = 50
TAG_CHOICES = 50
TAG_SAMPLE_DEVICES = 5000
TAG_CHOICES_SECONDS = 60
GROUP_CHOICES = 100
TAGS_IN_A_CELL = 3
ORG_NAME_MATCHES = 100

DEVICES_READ = "devices:read"
DEVICES_WRITE = "devices:write"
DEVICES_EXECUTE = "devices:execute"
DEVICES_DELETE = "devices:delete"
SCRIPTS_EXECUTE = "scripts:execute"

_HEX = re.compile(r"[0-9a-f]{8,64}")
_IP_LIKE = re.compile(r"[0-9A-Fa-f:.]+")


def _plural(count: int, word: str = "device") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- the list's query: the open-alert count and the primary LAN IP, per row, in the one query --------------------


def open_alerts_of_each_device() -> Coalesce:
    """Each device's open (and acknowledged, not yet resolved) alerts: one subquery per row on the
    ``alerts_device_opened`` index, inside the list's query."""
    counts = (
        Alert.objects.filter(device_id=OuterRef("pk"), status__in=ACTIVE_ALERT_STATUSES)
        .order_by()
        .values("device_id")
        .annotate(count=Count("*"))
        .values("count")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def primary_lan_ip_of_each_device() -> Subquery:
    """The address of a device's primary interface (IPv4 before IPv6), else of its first interface by name."""
    addresses = (
        DeviceNetworkInterface.objects.filter(device_id=OuterRef("pk"))
        .exclude(ip_address="")
        .order_by("-is_primary", "ip_type", "interface_name", "ip_address")
        .values("ip_address")[:1]
    )
    return Subquery(addresses)


class DeviceChangeList(InputCheckingChangeList):
    """The device list's rows carry their open-alert count and primary LAN IP (``DeviceListMixin``'s columns)."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        # Only the joins the columns read (the admin's get_queryset adds the device page's: the enrolling user, the
        # site's organization): a search matching thousands of devices sorts narrower rows.
        return (
            queryset.select_related(None)
            .select_related(*DeviceListMixin.list_select_related)
            .annotate(open_alerts=open_alerts_of_each_device(), lan_ip=primary_lan_ip_of_each_device())
        )

    def get_results(self, request):
        super().get_results(request)
        # Django reads a list that fits on one page without a LIMIT. PostgreSQL then plans for every row it expects
        # (its estimate, not the count just taken) with two subqueries each, and past jit_above_cost it compiles the
        # query first: "online, no open alerts" took 0.9 s, 0.75 s of it JIT, when the estimate was 30,000 rows and
        # the count 0 (measured at 100,000 devices). With the LIMIT the plan costs what one page costs.
        if isinstance(self.result_list, QuerySet) and not self.result_list.query.is_sliced:
            self.result_list = self.result_list[: max(self.list_per_page, self.list_max_show_all)]


# --- filters ------------------------------------------------------------------------------------------------------


class TagFilter(admin.SimpleListFilter):
    """Devices carrying one tag (exactly; the GIN index on ``tags``). The choices are tags of the devices the user may
    see (``tags_in_reach``); a tag beyond those is still filtered by, from a link or a search."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = tags_in_reach(request.user, model_admin.permission("view"))
        selected = self.value()
        if selected and selected not in tags:
            tags = [*tags, selected]
        return [(tag, tag) for tag in tags]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(tags__contains=[self.value()])


def tags_in_reach(user, perm: str) -> list[str]:
    """The first ``TAG_CHOICES`` tags (in order) of the first ``TAG_SAMPLE_DEVICES`` tagged devices ``user`` may see,
    kept a minute per user. Reading every device's tags for the sidebar cost 40-80 ms per list page at 100,000
    devices (measured); a tag list a minute old is good enough for a filter's choices."""
    key = f"rmm:console:device-tags:{user.pk}:{perm}"
    tags = cache.get(key)
    if tags is None:
        tagged = authz.visible(user, perm, Device.objects.all()).order_by().filter(tags__len__gt=0)
        sample = tagged.values("pk")[:TAG_SAMPLE_DEVICES]
        tags = list(
            Device.objects.filter(pk__in=sample)
            .annotate(tag=_Unnest("tags"))
            .values_list("tag", flat=True)
            .distinct()
            .order_by("tag")[:TAG_CHOICES]
        )
        cache.set(key, tags, TAG_CHOICES_SECONDS)
    return tags


class _Unnest(Func):
    """``unnest(<array>)``: one row per element (a set-returning function in the select list)."""

    function = "unnest"
    output_field = TextField()


class GroupFilter(admin.SimpleListFilter):
    """Members of one device group (static or dynamic), among the groups the user may see."""

    title = "group"
    parameter_name = "group"

    def lookups(self, request, model_admin):
        groups = authz.visible(request.user, model_admin.permission("view"), DeviceGroup.objects.select_related("org"))
        choices = [
            (str(g.pk), f"{g.org.name} / {g.name}") for g in groups.order_by("org__name", "name")[:GROUP_CHOICES]
        ]
        selected = self.value()
        if selected and selected not in {pk for pk, _ in choices}:
            group = groups.filter(pk=self._selected_id()).first()
            choices.append((selected, f"{group.org.name} / {group.name}" if group else selected))
        return choices

    def _selected_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(str(self.value()))
        except ValueError as exc:
            raise IncorrectLookupParameters("group: not a UUID") from exc

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        members = DeviceGroupMembership.objects.filter(device_id=OuterRef("pk"), group_id=self._selected_id())
        return queryset.filter(Exists(members))


class OpenAlertsFilter(admin.SimpleListFilter):
    """Devices with (or without) an open or acknowledged alert."""

    title = "open alerts"
    parameter_name = "has_open_alerts"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        active = Alert.objects.filter(device_id=OuterRef("pk"), status__in=ACTIVE_ALERT_STATUSES)
        return queryset.filter(Exists(active)) if self.value() == "yes" else queryset.filter(~Exists(active))


# --- search -------------------------------------------------------------------------------------------------------


def _prefix_range(field: str, prefix: str) -> Q:
    """``field`` starts with ``prefix`` (lower-case hex), as a range the field's btree index answers (LIKE cannot use
    it: the database's collation is not C)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return Q(**{f"{field}__gte": prefix, f"{field}__lt": upper})


def search_devices(queryset: QuerySet[Device], term: str) -> QuerySet[Device]:
    """``queryset`` narrowed to the devices ``term`` finds: hostname or display name (substring), agent id (exact, or
    a prefix of 8+ hex digits), serial number, LAN IP address (exact; a prefix when the term ends in "." or ":") or
    else the address last seen from (exact), tag (exact) or organization name (substring).

    As the API's search (``devices.filters``): the matching ids are a UNION of indexed look-ups (trigram GIN on
    hostname / display name, the agent id's unique index, the hardware serial index, the GIN index on tags, the
    interface address index of migration 0012), so the scoped list joins a few ids instead of walking the fleet with
    an OR over joins. Organization names are looked up first (one small query): only when some match does the list
    also take their devices.
    """
    term = term.strip()
    if not term:
        return queryset
    lowered = term.lower()
    agent = Q(agent_id=lowered)
    if _HEX.fullmatch(lowered):
        agent |= _prefix_range("agent_id", lowered)
    matches = (
        Device.objects.order_by()
        .filter(Q(hostname__icontains=term) | Q(display_name__icontains=term) | agent | Q(tags__contains=[term]))
        .values("pk")
    )
    others: list[QuerySet[Any, Any]] = [
        DeviceHardware.objects.order_by().filter(serial_number=term).values("device_id")
    ]
    if ("." in term or ":" in term) and _IP_LIKE.fullmatch(term):
        prefix = term.endswith((".", ":"))
        lan = DeviceNetworkInterface.objects.order_by().filter(
            Q(ip_address__startswith=term) if prefix else Q(ip_address=term)
        )
        others.append(lan.values("device_id"))
        # The address a device was last seen from is not indexed (it changes with heartbeats): a scan of every
        # device (22 ms at 100,000), so it is looked at only for a whole address that no LAN address in the list has.
        if not prefix and not queryset.filter(pk__in=lan.values("device_id")).exists():
            others.append(queryset.order_by().filter(last_seen_ip=term).values("pk"))
    found = Q(pk__in=matches.union(*others))
    org_ids = list(
        Organization.objects.filter(name__icontains=term).order_by().values_list("pk", flat=True)[:ORG_NAME_MATCHES]
    )
    if org_ids:
        found |= Q(org_id__in=org_ids)
    return queryset.filter(found)


# --- bulk actions ---------------------------------------------------------------------------------------------------


class TagForm(forms.Form):
    tag = forms.CharField(max_length=100, help_text="Exactly as it should read; tags are case-sensitive.")

    def clean_tag(self) -> str:
        tag = self.cleaned_data["tag"].strip()
        if not tag:
            raise forms.ValidationError("A tag cannot be blank.")
        return tag


class QuarantineForm(forms.Form):
    reason = forms.CharField(
        max_length=255, widget=forms.TextInput(attrs={"size": 80}), help_text="Kept with the device and the audit row."
    )


class GroupChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.org.name} / {obj.name}" + (f" (site {obj.site.name})" if obj.site_id else "")


class GroupForm(forms.Form):
    group = GroupChoiceField(queryset=DeviceGroup.objects.none(), help_text="A static group you may change.")

    def __init__(self, *args, user, org_ids, **kwargs):
        """The static groups ``user`` may change in the organizations ``org_ids`` (the selected devices')."""
        super().__init__(*args, **kwargs)
        field = self.fields["group"]
        assert isinstance(field, forms.ModelChoiceField)
        groups = DeviceGroup.objects.filter(type=DeviceGroup.Type.STATIC, org_id__in=org_ids)
        field.queryset = authz.visible(user, DEVICES_WRITE, groups.select_related("org", "site")).order_by(
            "org__name", "name"
        )


@dataclass(frozen=True)
class BulkAction:
    """One bulk action of the device list: the permission it needs on each device (as the API route), what the
    select and the confirmation page call it, and the words of its message."""

    name: str
    permission: str
    description: str  # in the action select
    title: str  # the confirmation page's, with {n} for "3 devices"
    done: str  # the message's, with {n}
    form: type[forms.Form] | None = None


BULK_ACTIONS: dict[str, BulkAction] = {
    action.name: action
    for action in (
        BulkAction(
            "run_command", DEVICES_EXECUTE, "Run a command on selected devices", "Run a command on {n}", "Queued {n}"
        ),
        BulkAction(
            "run_script", DEVICES_EXECUTE, "Run a library script on selected devices", "Run a script on {n}", "{n}"
        ),
        BulkAction(
            "add_tag", DEVICES_WRITE, "Add a tag to selected devices", "Add a tag to {n}", "Tagged {n}", TagForm
        ),
        BulkAction(
            "remove_tag", DEVICES_WRITE, "Remove a tag from selected devices", "Remove a tag from {n}", "Untagged {n}",
            TagForm,
        ),
        BulkAction(
            "start_maintenance", DEVICES_WRITE, "Put selected devices in maintenance", "Put {n} in maintenance",
            "Put {n} in maintenance",
        ),
        BulkAction(
            "end_maintenance", DEVICES_WRITE, "Take selected devices out of maintenance",
            "Take {n} out of maintenance", "Took {n} out of maintenance",
        ),
        BulkAction(
            "add_to_group", DEVICES_WRITE, "Add selected devices to a static group", "Add {n} to a group", "Added {n}",
            GroupForm,
        ),
        BulkAction(
            "quarantine", DEVICES_WRITE, "Quarantine selected devices", "Quarantine {n}", "Quarantined {n}",
            QuarantineForm,
        ),
        BulkAction("approve", DEVICES_WRITE, "Approve selected quarantined devices", "Approve {n}", "Approved {n}"),
        BulkAction(
            "request_token_rotation", DEVICES_WRITE, "Ask the agents of selected devices to rotate their tokens",
            "Ask the agents of {n} to rotate their tokens", "Token rotation requested on {n}",
        ),
        BulkAction(
            "decommission", DEVICES_DELETE, "Decommission selected devices (final)", "Decommission {n} (final)",
            "Decommissioned {n}",
        ),
    )
}  # fmt: skip


@dataclass
class Selection:
    """The devices a bulk action was asked for, split into those it will touch and those left out."""

    targets: list[Device]
    left_out: list[tuple[Device, str]]  # (device, why)

    @property
    def total(self) -> int:
        return len(self.targets) + len(self.left_out)


def _selection(request: HttpRequest, queryset: QuerySet[Device], action: BulkAction) -> Selection:
    """The selected devices (already those the user may see) and which of them the user may ``action`` on."""
    devices = list(queryset.select_related("org", "site").order_by("hostname", "id")[:BULK_LIMIT])
    allowed = set(
        authz.visible(request.user, action.permission, Device.objects.filter(pk__in=[d.pk for d in devices]))
        .order_by()
        .values_list("pk", flat=True)
    )
    reason = f"not in your reach for {action.permission}"
    return Selection(
        targets=[d for d in devices if d.pk in allowed],
        left_out=[(d, reason) for d in devices if d.pk not in allowed],
    )


class DeviceListMixin(ModelAdminMixinBase):
    """The device list of ``DeviceAdmin``: columns, filters, search and bulk actions (see the module docstring)."""

    list_display = (
        "hostname_column",
        "status_column",
        "where",
        "os_column",
        "agent",
        "last_seen",
        "lan_ip",
        "tags_column",
        "open_alerts_column",
    )
    list_display_links = ("hostname_column",)
    list_filter = ("org", SiteFilter, "status", "os_type", TagFilter, GroupFilter, OpenAlertsFilter)
    list_select_related = ("org", "site")
    # Searched by get_search_results (search_devices); listed so Django shows the search box.
    search_fields = ("hostname",)
    search_help_text = (
        "Hostname, display name, agent id, serial number, IP address (LAN or last seen), tag, organization."
    )
    list_per_page = 50
    empty_value_display = MISSING
    actions = tuple(BULK_ACTIONS)
    bulk_template = "admin/devices/device/bulk_action.html"

    def get_changelist(self, request, **kwargs):
        return DeviceChangeList

    def get_search_results(self, request, queryset, search_term):
        return search_devices(queryset, search_term), False

    # Who is offered what (Django's actions' allowed_permissions) ---------------------------------------------------

    def has_execute_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, DEVICES_EXECUTE)

    def has_run_script_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, DEVICES_EXECUTE) and authz.holds_anywhere(
            request.user, SCRIPTS_EXECUTE
        )

    def has_write_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, DEVICES_WRITE)

    def has_decommission_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, DEVICES_DELETE)

    # Columns ---------------------------------------------------------------------------------------------------------

    @admin.display(description="hostname", ordering="hostname")
    def hostname_column(self, obj: Device) -> SafeString:
        if obj.display_name and obj.display_name != obj.hostname:
            return format_html('{}<span class="display-name">{}</span>', obj.hostname, obj.display_name)
        return format_html("{}", obj.hostname)

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: Device) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="organization / site", ordering="org__name")
    def where(self, obj: Device) -> SafeString:
        return format_html(
            '<span class="cell" title="{} / {}">{}<span class="site">{}</span></span>',
            obj.org.name,
            obj.site.name,
            obj.org.name,
            obj.site.name,
        )

    @admin.display(description="OS", ordering="os_type")
    def os_column(self, obj: Device) -> SafeString:
        if not obj.os_version:
            return format_html("{}", obj.get_os_type_display())
        return format_html(
            '<span class="cell" title="{}">{}<span class="os-version">{}</span></span>',
            f"{obj.get_os_type_display()} {obj.os_version}",
            obj.get_os_type_display(),
            obj.os_version,
        )

    @admin.display(description="agent", ordering="agent_version")
    def agent(self, obj: Device) -> str:
        return obj.agent_version or MISSING

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, obj: Device):
        return time_ago(obj.last_seen_at)

    @admin.display(description="LAN IP")
    def lan_ip(self, obj: Device):
        address = getattr(obj, "lan_ip", None)
        if not address:
            return obj.last_seen_ip or MISSING
        if obj.last_seen_ip and obj.last_seen_ip != address:
            return format_html('<span title="last seen from {}">{}</span>', obj.last_seen_ip, address)
        return address

    @admin.display(description="tags")
    def tags_column(self, obj: Device):
        tags = obj.tags or []
        if not tags:
            return MISSING
        shown = format_html_join("", '<span class="tag">{}</span>', ((tag,) for tag in tags[:TAGS_IN_A_CELL]))
        more = len(tags) - TAGS_IN_A_CELL
        if more > 0:
            shown = format_html('{}<span class="more">+{}</span>', shown, more)
        return format_html('<span class="tags" title="{}">{}</span>', ", ".join(tags), shown)

    @admin.display(description="alerts")
    def open_alerts_column(self, obj: Device):
        count = getattr(obj, "open_alerts", 0) or 0
        if not count:
            return format_html('<span class="no-alerts">{}</span>', 0)
        url = reverse("admin:alerts_alert_changelist", current_app=self.admin_site.name)
        return format_html('<a class="open-alerts" href="{}?device={}">{}</a>', url, obj.pk, count)

    # Bulk actions: one method per action (Django's actions are named by their methods) ---------------------------

    @admin.action(description=BULK_ACTIONS["run_command"].description, permissions=["execute"])
    def run_command(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["run_command"])

    @admin.action(description=BULK_ACTIONS["run_script"].description, permissions=["run_script"])
    def run_script(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["run_script"])

    @admin.action(description=BULK_ACTIONS["add_tag"].description, permissions=["write"])
    def add_tag(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["add_tag"])

    @admin.action(description=BULK_ACTIONS["remove_tag"].description, permissions=["write"])
    def remove_tag(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["remove_tag"])

    @admin.action(description=BULK_ACTIONS["start_maintenance"].description, permissions=["write"])
    def start_maintenance(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["start_maintenance"])

    @admin.action(description=BULK_ACTIONS["end_maintenance"].description, permissions=["write"])
    def end_maintenance(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["end_maintenance"])

    @admin.action(description=BULK_ACTIONS["add_to_group"].description, permissions=["write"])
    def add_to_group(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["add_to_group"])

    @admin.action(description=BULK_ACTIONS["quarantine"].description, permissions=["write"])
    def quarantine(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["quarantine"])

    @admin.action(description=BULK_ACTIONS["approve"].description, permissions=["write"])
    def approve(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["approve"])

    @admin.action(description=BULK_ACTIONS["request_token_rotation"].description, permissions=["write"])
    def request_token_rotation(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["request_token_rotation"])

    @admin.action(description=BULK_ACTIONS["decommission"].description, permissions=["decommission"])
    def decommission(self, request, queryset):
        return self._bulk(request, queryset, BULK_ACTIONS["decommission"])

    # The confirmation page and the run -----------------------------------------------------------------------------

    def _bulk(self, request, queryset, action: BulkAction):
        """Show the confirmation page of ``action`` for the selected devices; once confirmed (``confirm`` posted with
        valid inputs), call the service for each device in reach and go back to the list with a message."""
        if queryset.order_by().count() > BULK_LIMIT:
            self.message_user(
                request,
                f"A bulk action acts on at most {BULK_LIMIT} devices; select fewer, or put them in a group and use "
                "“Run on group”.",
                messages.ERROR,
            )
            return None
        selection = _selection(request, queryset, action)
        confirmed = request.POST.get("confirm") == "yes"
        context: dict[str, Any] = {}
        if action.name == "run_script":
            form, script = self._script_form(request, selection, confirmed)
            context["script"] = script
            if script is not None:
                context["title"] = f"Run “{script.name}” on {_plural(len(selection.targets))}"
            ready = confirmed and script is not None and form.is_valid()
        else:
            form = self._input_form(request, action, confirmed, selection)
            ready = confirmed and (form is None or form.is_valid())
        if ready and selection.targets:
            done = self._perform(request, action, selection, form)
            if done:
                return None  # Django goes back to the list (with its filters), where the messages show
        return self._confirmation_page(request, action, selection, form, context)

    def _input_form(self, request, action: BulkAction, bound: bool, selection: Selection) -> forms.Form | None:
        data = request.POST if bound else None
        if action.name == "run_command":
            return CommandFields(data)  # the commands list's own fields and checks (devices.admin.commands)
        if action.form is GroupForm:
            return GroupForm(data, user=request.user, org_ids={d.org_id for d in selection.targets})
        return action.form(data) if action.form is not None else None

    def _script_form(self, request, selection: Selection, confirmed: bool):
        """The run_script page's form: first the script (among those the user may run in the targets'
        organizations), then its parameters, with the fields of the script library's "Run on…" form."""
        scripts = library.runnable_scripts(request.user, orgs={d.org for d in selection.targets}).order_by("name", "id")
        script = None
        picked = request.POST.get("script")
        if picked:
            try:
                script = scripts.filter(pk=uuid.UUID(picked)).first()
            except ValueError:
                script = None
        if script is None:
            return ScriptPickForm(request.POST if picked else None, scripts=scripts), None
        return script_parameter_form(request.POST if confirmed else None, script=script, user=request.user), script

    def _confirmation_page(self, request, action, selection: Selection, form, context: dict[str, Any]):
        opts = self.model._meta
        reasons = Counter(why for _, why in selection.left_out)
        page = {
            **self.admin_site.each_context(request),
            "title": action.title.format(n=_plural(len(selection.targets))),
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "action": action,
            "selection": selection,
            "targets_named": selection.targets[:NAMED_ON_PAGE],
            "targets_unnamed": max(len(selection.targets) - NAMED_ON_PAGE, 0),
            "left_out_named": selection.left_out[:NAMED_ON_PAGE],
            "left_out_unnamed": max(len(selection.left_out) - NAMED_ON_PAGE, 0),
            "left_out_reasons": sorted(reasons.items()),
            "form": form,
            "selected_ids": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "changelist_url": _changelist_url(request, opts),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            **context,
        }
        request.current_app = self.admin_site.name
        status = 400 if request.POST.get("confirm") == "yes" else 200
        return TemplateResponse(request, self.bulk_template, page, status=status)

    def _perform(self, request, action: BulkAction, selection: Selection, form) -> bool:
        """Run ``action`` on the selection's targets; False when the page must be shown again (a form error)."""
        ip = client_ip(request)
        user = request.user
        if action.name == "run_script":
            return self._run_script(request, selection, form)
        if action.name == "add_to_group":
            return self._add_to_group(request, selection, form)
        perform = self._per_device(action, form, user, ip)
        done, refused = 0, Counter[str]()
        for device in selection.targets:
            try:
                with transaction.atomic():
                    changed = perform(device)
            except DomainError as error:
                refused[domain_error_message(error)] += 1
            else:
                done += 1 if changed is not False else 0
        self._report(request, action, done, refused, selection, form)
        return True

    def _per_device(self, action: BulkAction, form, user, ip) -> Callable[[Device], Any]:
        name = action.name
        if name == "run_command":
            command_type, payload, expires = form.cleaned_data["type"], form.payload(), form.expires_in_seconds()
            return lambda device: command_service.queue_command(
                device=device, type=command_type, payload=payload, created_by=user, expires_in_seconds=expires, ip=ip
            )
        if name in ("add_tag", "remove_tag"):
            tag = form.cleaned_data["tag"]
            return lambda device: device_status.change_tag(
                device=device, tag=tag, add=name == "add_tag", actor=user, ip=ip
            )
        if name == "start_maintenance":
            return lambda device: device_status.update_device(
                device=device, status=Device.Status.MAINTENANCE, actor=user, ip=ip
            )
        if name == "end_maintenance":
            return lambda device: device_status.update_device(
                device=device, status=Device.Status.ONLINE, actor=user, ip=ip
            )
        if name == "quarantine":
            reason = form.cleaned_data["reason"]
            return lambda device: device_status.quarantine(device=device, reason=reason, actor=user, ip=ip)
        transitions: dict[str, Callable[..., Device]] = {
            "approve": device_status.approve,
            "request_token_rotation": device_status.request_token_rotation,
            "decommission": device_status.decommission,
        }
        transition = transitions[name]
        return lambda device: transition(device=device, actor=user, ip=ip)

    def _report(self, request, action: BulkAction, done: int, refused: Counter[str], selection: Selection, form):
        if done:
            text = action.done.format(n=_plural(done))
            if action.name == "run_command":
                command_type = form.cleaned_data["type"]
                url = reverse("admin:devices_devicecommand_changelist", current_app=self.admin_site.name)
                link = f"{url}?type__exact={command_type}&status__exact=pending"
                self.message_user(
                    request,
                    format_html(
                        'Queued {} on {}. <a href="{}">See the commands</a>', command_type, _plural(done), link
                    ),
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{text}.", messages.SUCCESS)
        for reason, count in sorted(refused.items()):
            self.message_user(request, f"{reason} ({_plural(count)} not changed)", messages.ERROR)
        self._say_left_out(request, selection)

    def _say_left_out(self, request, selection: Selection) -> None:
        for reason, count in sorted(Counter(why for _, why in selection.left_out).items()):
            self.message_user(request, f"{_plural(count)} of your selection left out: {reason}.", messages.WARNING)

    def _add_to_group(self, request, selection: Selection, form) -> bool:
        """``add_members`` takes the devices of the group's organization (and site, for a site-bound group); the
        others are named as left out."""
        group: DeviceGroup = form.cleaned_data["group"]
        fits = [
            d
            for d in selection.targets
            if d.org_id == group.org_id and (not group.site_id or d.site_id == group.site_id)
        ]
        outside = len(selection.targets) - len(fits)
        if fits:
            added = group_service.add_members(group=group, devices=fits, actor=request.user, ip=client_ip(request))
            url = reverse("admin:devices_devicegroup_change", args=[group.pk], current_app=self.admin_site.name)
            already = len(fits) - len(added)
            self.message_user(
                request,
                format_html(
                    'Added {} to <a href="{}">{}</a>{}.',
                    _plural(len(added)),
                    url,
                    group.name,
                    f" ({already} already in it)" if already else "",
                ),
                messages.SUCCESS,
            )
        if outside:
            where = "site" if group.site_id else "organization"
            self.message_user(request, f"{_plural(outside)} left out: not in the group's {where}.", messages.WARNING)
        self._say_left_out(request, selection)
        return True

    def _run_script(self, request, selection: Selection, form) -> bool:
        """One run of the script per organization of the targets (a run belongs to one organization), all in one
        transaction: a refusal that concerns the form (a parameter) undoes them all and shows the page again."""
        from scripts.services.runs import start_run

        script = form.script
        by_org: dict[uuid.UUID, list[Device]] = {}
        for device in selection.targets:
            by_org.setdefault(device.org_id, []).append(device)
        runs: list[ScriptRun] = []
        refused: Counter[str] = Counter()
        try:
            with transaction.atomic():
                for devices in by_org.values():
                    try:
                        with transaction.atomic():
                            runs.append(
                                start_run(
                                    script=script,
                                    actor=request.user,
                                    trigger=ScriptRun.Trigger.MANUAL,
                                    parameters=form.parameter_values(),
                                    device_ids=[d.pk for d in devices],
                                    ip=client_ip(request),
                                )
                            )
                    except DomainError as error:
                        if any(name.startswith("parameters") for name in error.fields):
                            raise
                        refused[domain_error_message(error)] += len(devices)
        except DomainError as error:
            add_domain_error(form, error, field_names=form.error_field_names())
            return False
        queued = sum(run.queued for run in runs)
        skipped = sum(len(run.skipped) if isinstance(run.skipped, list) else 0 for run in runs)
        if runs:
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                (
                    (
                        reverse("admin:scripts_scriptrun_results", args=[run.pk], current_app=self.admin_site.name),
                        run.org.name if len(runs) > 1 else "see the results",  # one run per organization
                    )
                    for run in runs
                ),
            )
            self.message_user(
                request,
                format_html(
                    "Queued “{}” on {}{}. Results: {}.",
                    script.name,
                    _plural(queued),
                    f"; {skipped} skipped (OS, quarantined or decommissioned)" if skipped else "",
                    links,
                ),
                messages.SUCCESS,
            )
        for reason, count in sorted(refused.items()):
            self.message_user(request, f"{reason} ({_plural(count)} not run)", messages.ERROR)
        self._say_left_out(request, selection)
        return True


def _changelist_url(request: HttpRequest, opts) -> str:
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = request.GET.urlencode()
    return f"{url}?{query}" if query else url


class ScriptPickForm(forms.Form):
    script = forms.ModelChoiceField(
        queryset=Script.objects.none(), help_text="Scripts you may run in these devices' organizations."
    )

    def __init__(self, *args, scripts, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["script"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = scripts


def script_parameter_form(data, *, script, user) -> forms.Form:
    """The parameters of ``script`` with the fields of the script library's "Run on…" form (``scripts.admin.
    RunForm``), without its "where" (the selected devices are the target)."""
    from scripts.admin import RunForm

    class BulkRunForm(RunForm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for name in ("org", "group", "devices"):
                del self.fields[name]
            self.fields["script"] = forms.CharField(widget=forms.HiddenInput(), initial=str(script.pk))

        def clean(self):
            return self.cleaned_data

    return BulkRunForm(data, script=script, user=user)


__all__: Sequence[str] = ("BULK_ACTIONS", "DeviceListMixin", "search_devices")
