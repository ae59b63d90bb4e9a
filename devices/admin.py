"""Admin pages for devices and everything agents report about them.

The device page shows the device with its inventory, group memberships, recent commands and latest telemetry,
each capped (a device may have 10,000 software rows) with a link to the full, filtered list. Inventory, commands
and memberships are read-only here: agents replace inventory on upload, and commands and memberships are made
through the API. Device telemetry has a composite primary key, which the Django admin cannot register; it gets its
own read-only page (``telemetry_page``).

Every write here calls the service the API calls (``devices.services.status`` for a device's edits and lifecycle,
``devices.services.groups`` for groups), so both doors obey the same rules and write the same audit rows: a form's
``clean()`` runs the service's check and shows its refusal as form errors (``rmm.admin.add_domain_error``), and
``save_model`` and the actions call the service, whose audit row replaces ``AuditedAdminMixin``'s.

Everything here is the ``devices`` resource of the authorization module: lists and pages show the devices (and
their rows) the user reaches with ``devices:read``, and changing a device or a group needs ``devices:write``.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, ClassVar, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join

from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.models.telemetry import METRICS as TELEMETRY_METRICS
from devices.services import commands as command_service
from devices.services import groups as group_service
from devices.services import status as device_status
from orgs.admin import SiteFilter
from orgs.models import Organization
from rmm import authz
from rmm.admin import (
    BigTableAdminMixin,
    CappedTabularInline,
    DomainErrorsAsMessagesMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInlineMixin,
    RmmAdminSite,
    ScopedAdminMixin,
    ScopedInlineMixin,
    add_domain_error,
    organizations_holding,
    single_object_filter,
)
from rmm.domain_errors import DomainError, Refused
from rmm.inputs import JSONFormField, QueryDateTimeField
from rmm.net import client_ip

DeviceFilter = single_object_filter("device")
GroupFilter = single_object_filter("group")

# Samples shown on the device page, and per page of the telemetry list.
DEVICE_PAGE_TELEMETRY_SAMPLES = 20
TELEMETRY_PAGE_SIZE = 100
# Without a device filter the telemetry list looks at one hour at a time: the table has no B-tree index on ts alone
# (only (device_id, ts) and a BRIN), so "the newest N samples of all devices" is a scan of the hour's rows found
# through the BRIN, not of every partition.
TELEMETRY_UNFILTERED_WINDOW = dt.timedelta(hours=1)
TELEMETRY_PERMISSION = "devices:read"
COMMAND_PERMISSION = "devices:execute"  # queueing and cancelling commands, as in the API


# --- The device page's inlines -------------------------------------------------------------------------------------


class HardwareInline(ReadOnlyInlineMixin, ScopedInlineMixin, admin.StackedInline):
    model = DeviceHardware
    fields = (
        ("manufacturer", "model", "serial_number"),
        ("cpu_model", "cpu_cores", "cpu_threads"),
        ("ram_total_mb", "disk_total_gb", "gpu_model"),
        ("bios_version", "updated_at"),
    )

    def get_readonly_fields(self, request, obj=None):
        return flatten(self.fields)


class NetworkInterfaceInline(CappedTabularInline):
    model = DeviceNetworkInterface
    fields = ("interface_name", "ip_address", "ip_type", "mac_address", "is_primary", "public_ip", "updated_at")
    ordering = ("-is_primary", "interface_name", "ip_address")


class DiskInline(CappedTabularInline):
    model = DeviceDisk
    fields = ("mount_point", "device_name", "fs_type", "total_gb", "used_gb", "used_percent", "health", "updated_at")
    ordering = ("mount_point",)


class SoftwareInline(CappedTabularInline):
    model = DeviceSoftware
    fields = ("name", "version", "publisher", "install_date", "install_location")
    ordering = ("name", "version")
    classes = ("collapse",)


class RegistryEntryInline(CappedTabularInline):
    model = DeviceRegistryEntry
    verbose_name_plural = "registry entries"
    fields = ("registry_path", "value_name", "value_type", "value_data", "collected_at")
    ordering = ("registry_path", "value_name")
    classes = ("collapse",)


class ConfigEntryInline(CappedTabularInline):
    model = DeviceConfigEntry
    verbose_name_plural = "config entries"
    fields = ("file_path", "config_key", "config_value", "collected_at")
    ordering = ("file_path", "config_key")
    classes = ("collapse",)


class NetworkConnectionInline(CappedTabularInline):
    model = DeviceNetworkConnection
    fields = ("protocol", "local_addr", "local_port", "remote_addr", "remote_port", "state", "pid", "process_name")
    ordering = ("protocol", "local_port", "remote_addr")
    classes = ("collapse",)


class GroupMembershipInline(CappedTabularInline):
    model = DeviceGroupMembership
    verbose_name_plural = "group memberships"
    fields = ("group", "added_by", "is_pinned", "added_at")
    ordering = ("group__name",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("group")


class RecentCommandInline(CappedTabularInline):
    model = DeviceCommand
    verbose_name_plural = "recent commands"
    fields = ("type", "status", "created_at", "sent_at", "completed_at", "created_by")
    ordering = ("-created_at",)
    max_rows = 20

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")


# --- Devices -------------------------------------------------------------------------------------------------------


# Shown for a metric the agent did not report.
MISSING = "\N{EN DASH}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f} %"


def _bytes(value: int | None) -> str:
    return MISSING if value is None else filesizeformat(value)


def _mb(value: int | None) -> str:
    return MISSING if value is None else f"{value:,} MB"


def _gb(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.1f} GB"


_SHOWN_AS = {"percent": _percent, "MB": _mb, "GB": _gb, "bytes": _bytes, "count": lambda v: MISSING if v is None else v}


def _telemetry_row(sample: DeviceTelemetry) -> tuple:
    """The sample's time and every metric of the one table of metrics (devices.models.telemetry.METRICS)."""
    shown = (_SHOWN_AS[metric.unit](getattr(sample, metric.column)) for metric in TELEMETRY_METRICS)
    return (localize(timezone.localtime(sample.ts)), *shown)


TELEMETRY_HEADERS = ("time", *(metric.label for metric in TELEMETRY_METRICS))


def _telemetry_url(**params) -> str:
    url = reverse("admin:devices_devicetelemetry_changelist")
    params = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{url}?{urlencode(params)}" if params else url


# The fields a person edits on a device, here and in the API (devices.services.status.update_device).
DEVICE_EDIT_FIELDS = ("display_name", "site", "tags")


class DeviceForm(forms.ModelForm):
    """A device's editable fields. Its site can change within its organization only: moving a device to another
    organization is not an admin operation (its rows, keys and history carry the organization). The rules are
    ``devices.services.status.check_device_edit``'s (a decommissioned device cannot change, …)."""

    class Meta:
        model = Device
        fields = DEVICE_EDIT_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        site_field = self.fields.get("site")
        if isinstance(site_field, forms.ModelChoiceField) and site_field.queryset is not None and self.instance.org_id:
            site_field.queryset = site_field.queryset.filter(org_id=self.instance.org_id)

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        # Before _post_clean: self.instance still holds the device as stored.
        if self.instance.pk is not None:
            try:
                device_status.check_device_edit(device=self.instance, site=cleaned.get("site"))
            except DomainError as error:
                add_domain_error(self, error)
        return cleaned


def _refuse_unless_allowed(request, perm: str, objects) -> None:
    """An admin action on ``objects`` needs ``perm`` on every one of them (Django asked only whether it is held
    anywhere): otherwise nothing is done."""
    if any(not authz.can(request.user, perm, obj) for obj in objects):
        raise Refused("You may not do this to every row you selected; nothing was changed.")


@admin.register(Device)
class DeviceAdmin(DomainErrorsAsMessagesMixin, BigTableAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Managed endpoints. Devices are created by enrollment; here only the display name, the tags and the site
    (among the sites of its organization where the user may write devices) can change, and the list's actions
    start and end maintenance, approve quarantined devices, ask agents to rotate their tokens and decommission,
    as the API does, through the same services.

    Token hashes are never shown: ``agent_token_hash`` and ``previous_token_hash`` are in no field list.
    Deleting is "decommission" (as ``DELETE devices/{id}`` in the API): Django's delete page would list every
    inventory row of the device, and an RMM keeps the device row for its history.
    """

    list_display = (
        "hostname",
        "display_name",
        "org",
        "site_name",
        "status",
        "os_type",
        "os_version",
        "agent_version",
        "last_seen_at",
        "last_seen_ip",
    )
    resource = "devices"
    form = DeviceForm
    list_display_links = ("hostname",)
    list_filter = ("status", "os_type", "org", SiteFilter)
    list_select_related = ("org", "site")
    search_fields = ("hostname", "display_name", "agent_id", "hardware__serial_number", "last_seen_ip")
    # (hostname, id) is indexed: the first page is an index scan, not a sort of every device.
    ordering = ("hostname", "id")
    fieldsets = (
        (None, {"fields": ("hostname", "display_name", "agent_id", "org", "site", "tags", "status")}),
        ("System", {"fields": ("os_type", "os_version", "os_build", "architecture", "agent_version")}),
        ("Contact", {"fields": ("last_seen_at", "last_seen_ip")}),
        ("Telemetry", {"fields": ("recent_telemetry",)}),
        (
            "Enrollment and credentials",
            {
                "classes": ("collapse",),
                "fields": (
                    "enrolled_at",
                    "enrolled_by",
                    "agent_token_issued_at",
                    "previous_token_expires_at",
                    "mtls_cert_serial_number",
                    "mtls_cert_issued_at",
                    "mtls_cert_expires_at",
                    "mtls_cert_cf_id",
                ),
            },
        ),
        ("Quarantine", {"classes": ("collapse",), "fields": ("quarantined_at", "quarantined_reason")}),
        ("Record", {"classes": ("collapse",), "fields": ("id", "created_at", "updated_at")}),
    )
    readonly_fields = (
        "agent_id",
        "org",
        "hostname",
        "status",
        "os_type",
        "os_version",
        "os_build",
        "architecture",
        "agent_version",
        "last_seen_at",
        "last_seen_ip",
        "recent_telemetry",
        "enrolled_at",
        "enrolled_by",
        "agent_token_issued_at",
        "previous_token_expires_at",
        "mtls_cert_serial_number",
        "mtls_cert_issued_at",
        "mtls_cert_expires_at",
        "mtls_cert_cf_id",
        "quarantined_at",
        "quarantined_reason",
        "id",
        "created_at",
        "updated_at",
    )
    actions = ("start_maintenance", "end_maintenance", "approve", "request_token_rotation", "decommission")
    inlines = (
        HardwareInline,
        NetworkInterfaceInline,
        DiskInline,
        GroupMembershipInline,
        RecentCommandInline,
        SoftwareInline,
        RegistryEntryInline,
        ConfigEntryInline,
        NetworkConnectionInline,
    )

    def get_queryset(self, request):
        # The change page shows the site as "organization / site" and links the enrolling user.
        return super().get_queryset(request).select_related("org", "site__org", "enrolled_by")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_decommission_permission(self, request) -> bool:
        return self.holds_anywhere(request, "delete")

    def save_model(self, request, obj, form, change):
        # update_device writes the row and its device.update audit row; the form's clean() ran its checks, which
        # it repeats under the row lock.
        edits = {name: form.cleaned_data[name] for name in DEVICE_EDIT_FIELDS if name in form.cleaned_data}
        device_status.update_device(device=obj, actor=request.user, ip=client_ip(request), **edits)
        obj.refresh_from_db()
        self.check_still_in_reach(request, obj, "change")
        authz.clear_cache(request.user)

    def _run_on_each(self, request, queryset, action: str, transition, done: str) -> None:
        devices = list(queryset)
        _refuse_unless_allowed(request, self.permission(action), devices)
        for device in devices:
            transition(device=device, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{len(devices)} {done}.")

    @admin.action(description="Decommission selected devices (final)", permissions=["decommission"])
    def decommission(self, request, queryset):
        self._run_on_each(request, queryset, "delete", device_status.decommission, "devices decommissioned")

    @admin.action(description="Put selected devices in maintenance", permissions=["change"])
    def start_maintenance(self, request, queryset):
        into = functools.partial(device_status.update_device, status=Device.Status.MAINTENANCE)
        self._run_on_each(request, queryset, "change", into, "devices in maintenance")

    @admin.action(description="Take selected devices out of maintenance", permissions=["change"])
    def end_maintenance(self, request, queryset):
        out = functools.partial(device_status.update_device, status=Device.Status.ONLINE)
        self._run_on_each(request, queryset, "change", out, "devices out of maintenance")

    @admin.action(description="Approve selected quarantined devices", permissions=["change"])
    def approve(self, request, queryset):
        self._run_on_each(request, queryset, "change", device_status.approve, "devices approved")

    @admin.action(description="Ask the agents of selected devices to rotate their tokens", permissions=["change"])
    def request_token_rotation(self, request, queryset):
        self._run_on_each(
            request, queryset, "change", device_status.request_token_rotation, "token rotations requested"
        )

    @admin.display(description="site", ordering="site__name")
    def site_name(self, obj: Device) -> str:
        return obj.site.name

    @admin.display(description="latest samples")
    def recent_telemetry(self, obj: Device) -> str:
        samples = DeviceTelemetry.objects.filter(device_id=obj.pk).order_by("-ts")[:DEVICE_PAGE_TELEMETRY_SAMPLES]
        rows = format_html_join(
            "\n", "<tr>" + "<td>{}</td>" * len(TELEMETRY_HEADERS) + "</tr>", map(_telemetry_row, samples)
        )
        if not rows:
            return "No telemetry received yet."
        return format_html(
            '<table class="device-telemetry"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
            '<p><a href="{}">All samples of this device</a></p>',
            format_html_join("", "<th>{}</th>", ((header,) for header in TELEMETRY_HEADERS)),
            rows,
            _telemetry_url(device=obj.pk),
        )


# --- Inventory lists -----------------------------------------------------------------------------------------------


class DeviceRowAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Shared by the lists of rows agents report: read-only, filterable by organization and by one device
    (``?device=<id>``, the target of the "see all" links on the device page). Rows follow their device's reach."""

    resource = "devices"

    list_filter: ClassVar[tuple[Any, ...]] = ("org", DeviceFilter)
    list_select_related: ClassVar[tuple[str, ...]] = ("device", "org")

    def get_readonly_fields(self, request, obj=None):
        return self.fields


@admin.register(DeviceHardware)
class DeviceHardwareAdmin(DeviceRowAdmin):
    """The hardware summary of each device (one row per device)."""

    list_display = ("device", "manufacturer", "model", "serial_number", "cpu_model", "cpu_cores", "ram_total_mb")
    search_fields = ("=serial_number", "device__hostname", "model")
    fields = (
        "device",
        "org",
        "manufacturer",
        "model",
        "serial_number",
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "ram_total_mb",
        "disk_total_gb",
        "gpu_model",
        "bios_version",
        "updated_at",
    )


@admin.register(DeviceNetworkInterface)
class DeviceNetworkInterfaceAdmin(DeviceRowAdmin):
    """Addresses of every device's network adapters."""

    list_display = ("device", "interface_name", "ip_address", "ip_type", "mac_address", "is_primary", "public_ip")
    list_filter = ("ip_type", "is_primary", *DeviceRowAdmin.list_filter)
    search_fields = ("=ip_address", "=mac_address", "=public_ip", "device__hostname")
    # Leading with device_id lets PostgreSQL walk the device_id index and sort only within each device.
    ordering = ("device_id", "interface_name")
    fields = ("device", "org", "interface_name", "ip_address", "ip_type", "mac_address", "is_primary", "public_ip")


@admin.register(DeviceDisk)
class DeviceDiskAdmin(DeviceRowAdmin):
    """Mounted volumes of every device, with their fill level and health."""

    list_display = ("device", "mount_point", "fs_type", "total_gb", "used_percent", "health")
    list_filter = ("health", *DeviceRowAdmin.list_filter)
    search_fields = ("mount_point", "device__hostname")
    ordering = ("device_id", "mount_point")
    fields = (
        "device",
        "org",
        "mount_point",
        "device_name",
        "fs_type",
        "total_gb",
        "used_gb",
        "free_gb",
        "used_percent",
        "health",
        "updated_at",
    )


@admin.register(DeviceSoftware)
class DeviceSoftwareAdmin(DeviceRowAdmin):
    """Installed programs of every device: "which devices have X" is a search by name."""

    list_display = ("name", "version", "publisher", "device", "install_date")
    search_fields = ("name", "publisher", "device__hostname")
    ordering = ("device_id", "name")
    fields = ("device", "org", "name", "version", "publisher", "install_date", "install_location", "updated_at")


@admin.register(DeviceRegistryEntry)
class DeviceRegistryEntryAdmin(DeviceRowAdmin):
    """Windows registry values agents were asked to collect."""

    list_display = ("device", "registry_path", "value_name", "value_type", "value_data", "collected_at")
    search_fields = ("registry_path", "value_name", "device__hostname")
    # The unique index (device_id, registry_path, value_name) serves this order.
    ordering = ("device_id", "registry_path", "value_name")
    fields = ("device", "org", "registry_path", "value_name", "value_type", "value_data", "collected_at")


@admin.register(DeviceConfigEntry)
class DeviceConfigEntryAdmin(DeviceRowAdmin):
    """Configuration-file keys agents were asked to collect."""

    list_display = ("device", "file_path", "config_key", "config_value", "collected_at")
    search_fields = ("file_path", "config_key", "device__hostname")
    ordering = ("device_id", "file_path", "config_key")
    fields = ("device", "org", "file_path", "config_key", "config_value", "collected_at")


@admin.register(DeviceNetworkConnection)
class DeviceNetworkConnectionAdmin(DeviceRowAdmin):
    """Open sockets seen on every device."""

    list_display = (
        "device",
        "protocol",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "process_name",
    )
    list_filter = ("protocol", *DeviceRowAdmin.list_filter)
    search_fields = ("=remote_addr", "=local_port", "process_name", "device__hostname")
    ordering = ("device_id", "protocol", "local_port")
    fields = (
        "device",
        "org",
        "protocol",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "pid",
        "process_name",
        "updated_at",
    )


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


@admin.register(DeviceCommand)
class DeviceCommandAdmin(DomainErrorsAsMessagesMixin, DeviceRowAdmin):
    """Commands queued for agents and what they reported back. Commands are queued through the API; pending ones
    can be cancelled here as there (``devices.services.commands.cancel_command``, ``devices:execute``)."""

    actions = ("cancel",)

    def has_cancel_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, COMMAND_PERMISSION)

    @admin.action(description="Cancel selected pending commands", permissions=["cancel"])
    def cancel(self, request, queryset):
        commands = list(queryset)
        _refuse_unless_allowed(request, COMMAND_PERMISSION, commands)
        for command in commands:
            command_service.cancel_command(command=command, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{len(commands)} commands cancelled.")

    list_display = ("created_at", "type", "status", "device", "org", "created_by", "sent_at", "completed_at")
    list_filter = ("status", "type", *DeviceRowAdmin.list_filter)
    list_select_related = ("device", "org", "created_by")
    search_fields = ("device__hostname", "=device__agent_id")
    # Newest first by primary key (a time-ordered UUIDv7): an index scan. No index serves "-created_at" across
    # organizations, so that order would sort the whole table.
    ordering = ("-pk",)
    fields = (
        "device",
        "org",
        "type",
        "status",
        "payload",
        "result",
        "created_by",
        "created_at",
        "sent_at",
        "completed_at",
        "expires_at",
        "updated_at",
    )


# --- Telemetry -----------------------------------------------------------------------------------------------------


class TelemetryQueryForm(forms.Form):
    """The telemetry page's query string: an optional device, and the keyset position of the page."""

    device = forms.UUIDField(required=False, label="Device id")
    before = QueryDateTimeField(required=False, label="Older than")  # rmm.parsing: offsets PostgreSQL holds
    # With no device filter several devices can share a ts, so the position is (ts, device id).
    before_device = forms.UUIDField(required=False, widget=forms.HiddenInput)


def _telemetry_samples(
    *, user, device: Device | None, before: dt.datetime | None, before_device
) -> tuple[list[DeviceTelemetry], str | None, dt.datetime | None]:
    """One page of samples of devices ``user`` may read, newest first, with the link to the next (older) page and
    the window looked at."""
    queryset = authz.visible(user, TELEMETRY_PERMISSION, DeviceTelemetry.objects.select_related("device"))
    window_start = None
    if device is not None:
        queryset = queryset.filter(device_id=device.pk).order_by("-ts")
        if before is not None:
            queryset = queryset.filter(ts__lt=before)
    else:
        window_end = before or timezone.now()
        earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
        window_start = max(window_end, earliest + TELEMETRY_UNFILTERED_WINDOW) - TELEMETRY_UNFILTERED_WINDOW
        queryset = queryset.filter(ts__gte=window_start).order_by("-ts", "-device_id")
        if before is not None and before_device is not None:
            queryset = queryset.filter(Q(ts__lt=before) | Q(ts=before, device_id__lt=before_device))
        elif before is not None:
            queryset = queryset.filter(ts__lt=before)
    samples = list(queryset[: TELEMETRY_PAGE_SIZE + 1])
    older_url = None
    if len(samples) > TELEMETRY_PAGE_SIZE:
        samples = samples[:TELEMETRY_PAGE_SIZE]
        last = samples[-1]
        older_url = _telemetry_url(
            device=device.pk if device else None,
            before=last.ts.isoformat(),
            before_device=None if device else last.device_id,
        )
    elif window_start is not None:  # no device chosen
        # This window is exhausted; the next page is the window before it.
        older_url = _telemetry_url(before=window_start.isoformat())
    return samples, older_url, window_start


def telemetry_page(request, site) -> TemplateResponse:
    """Device telemetry, newest first, read-only, ``TELEMETRY_PAGE_SIZE`` samples per page.

    ``?device=<uuid>`` shows one device's samples (an index scan of its (device_id, ts) primary key). Without it,
    the page shows one ``TELEMETRY_UNFILTERED_WINDOW`` at a time. Paging is by keyset (``before`` = the last ts
    shown), never by offset, and nothing counts the table: it holds a sample per device every minute or so.

    Only samples of devices the user may read are shown (``authz.visible``, by organization, site and device); a
    device out of reach is answered like one that does not exist (404). The site serves the page only to users who
    hold ``devices:read`` somewhere (``register_page``).
    """
    form = TelemetryQueryForm(request.GET)
    samples: list[DeviceTelemetry] = []
    older_url, window_start, device, before = None, None, None, None
    status = 200
    if not form.is_valid():
        status = 400
    else:
        before = form.cleaned_data["before"]
        if form.cleaned_data["device"] is not None:
            devices = authz.visible(request.user, TELEMETRY_PERMISSION, Device.objects.select_related("org", "site"))
            device = devices.filter(pk=form.cleaned_data["device"]).first()
            if device is None:
                form.add_error("device", "No device has this id.")
                status = 404
        if status == 200:
            samples, older_url, window_start = _telemetry_samples(
                user=request.user, device=device, before=before, before_device=form.cleaned_data["before_device"]
            )

    opts = DeviceTelemetry._meta
    context = {
        **site.each_context(request),
        "title": f"Telemetry of {device}" if device else "Device telemetry",
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "form": form,
        "device": device,
        "headers": TELEMETRY_HEADERS,
        "rows": [(sample, _telemetry_row(sample)) for sample in samples],
        "window_start": window_start,
        "window_minutes": int(TELEMETRY_UNFILTERED_WINDOW.total_seconds() // 60),
        "older_url": older_url,
        "newest_url": _telemetry_url(device=device.pk if device else None) if before else None,
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/devices/devicetelemetry/telemetry_list.html", context, status=status)


cast(RmmAdminSite, admin.site).register_page(DeviceTelemetry, telemetry_page, permission=TELEMETRY_PERMISSION)
