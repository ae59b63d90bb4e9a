"""The device list and the device page (with its capped inlines of inventory, memberships and commands)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten
from django.utils.html import format_html, format_html_join

from devices.admin.common import (
    DEVICE_EDIT_FIELDS,
    DEVICE_PAGE_TELEMETRY_SAMPLES,
    TELEMETRY_HEADERS,
    _telemetry_row,
    _telemetry_url,
)
from devices.admin.device_list import DeviceListMixin
from devices.admin.device_page import DevicePageMixin
from devices.models import (
    Device,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroupMembership,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.services import status as device_status
from rmm import authz
from rmm.admin import (
    BigTableAdminMixin,
    CappedTabularInline,
    DomainErrorsAsMessagesMixin,
    ReadOnlyInlineMixin,
    ScopedAdminMixin,
    ScopedInlineMixin,
    add_domain_error,
)
from rmm.domain_errors import DomainError
from rmm.net import client_ip

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


@admin.register(Device)
class DeviceAdmin(
    DeviceListMixin,
    DevicePageMixin,
    DomainErrorsAsMessagesMixin,
    BigTableAdminMixin,
    ScopedAdminMixin,
    admin.ModelAdmin,
):
    """Managed endpoints. Devices are created by enrollment; here only the display name, the tags and the site
    (among the sites of its organization where the user may write devices) can change, and the list's actions
    start and end maintenance, approve quarantined devices, ask agents to rotate their tokens and decommission,
    as the API does, through the same services.

    Token hashes are never shown: ``agent_token_hash`` and ``previous_token_hash`` are in no field list.
    Deleting is "decommission" (as ``DELETE devices/{id}`` in the API): Django's delete page would list every
    inventory row of the device, and an RMM keeps the device row for its history.
    """

    resource = "devices"
    form = DeviceForm
    # (hostname, id) is indexed: the first page is an index scan, not a sort of every device.
    ordering = ("hostname", "id")
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
    inlines = (
        HardwareInline,
        NetworkInterfaceInline,
        DiskInline,
        GroupMembershipInline,
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

    def save_model(self, request, obj, form, change):
        # update_device writes the row and its device.update audit row; the form's clean() ran its checks, which
        # it repeats under the row lock.
        edits = {name: form.cleaned_data[name] for name in DEVICE_EDIT_FIELDS if name in form.cleaned_data}
        device_status.update_device(device=obj, actor=request.user, ip=client_ip(request), **edits)
        obj.refresh_from_db()
        self.check_still_in_reach(request, obj, "change")
        authz.clear_cache(request.user)

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
