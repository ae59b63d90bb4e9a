from __future__ import annotations

from rest_framework import serializers

from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from orgs.models import Site
from rmm.api import CamelCaseModelSerializer, CamelCaseSerializer, ScopedRelatedField

DEVICE_FIELDS = [
    "id", "org_id", "site_id", "agent_id", "hostname", "display_name", "os_type", "os_version", "os_build",
    "architecture", "agent_version", "status", "last_seen_at", "last_seen_ip", "enrolled_at", "tags",
    "quarantined_at", "quarantined_reason", "created_at", "updated_at",
]  # fmt: skip


class DeviceSerializer(CamelCaseModelSerializer):
    """A device as technicians see it; PATCH changes display name, tags, site (same organization) and the
    maintenance status."""

    org_id = serializers.UUIDField(read_only=True)
    site_id = ScopedRelatedField(perm="devices:write", source="site", queryset=Site.objects.all(), required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), max_length=100, required=False)
    status = serializers.ChoiceField(choices=Device.Status.choices, required=False)

    class Meta:
        model = Device
        fields = DEVICE_FIELDS
        read_only_fields = [f for f in DEVICE_FIELDS if f not in {"display_name", "tags", "site_id", "status"}]

    def validate_site_id(self, site):
        if self.instance is not None and site.org_id != self.instance.org_id:
            raise serializers.ValidationError("A device moves only between sites of its own organization.")
        return site

    def validate_status(self, value):
        current = self.instance.status if self.instance else None
        manual = {Device.Status.ONLINE, Device.Status.MAINTENANCE, Device.Status.OFFLINE}
        if value == current:
            return value
        if value == Device.Status.MAINTENANCE and current in (Device.Status.ONLINE, Device.Status.OFFLINE):
            return value
        if current == Device.Status.MAINTENANCE and value in manual:
            return value
        raise serializers.ValidationError(
            f"Status moves by hand only into or out of maintenance (now {current}); quarantine, approve and "
            "decommission have their own actions."
        )

    def validate_tags(self, value):
        return sorted({tag.strip() for tag in value if tag.strip()})


def _counts(name: str, values: list[str]) -> type[serializers.Serializer]:
    # Keys are the choice values themselves (not camelCased): every value is present, 0 included.
    return type(name, (serializers.Serializer,), {value: serializers.IntegerField(min_value=0) for value in values})


class DeviceSummarySerializer(CamelCaseSerializer):
    """Counts of the devices in reach (after the list's filters), by status and by OS."""

    by_status = _counts("CountByStatusSerializer", Device.Status.values)()
    by_os_type = _counts("CountByOsTypeSerializer", Device.OsType.values)()
    total = serializers.IntegerField(min_value=0)


class TokenRotationSerializer(CamelCaseSerializer):
    rotation_requested = serializers.BooleanField(help_text="The agent is told at its next heartbeat.")


class HardwareSerializer(CamelCaseModelSerializer):
    class Meta:
        model = DeviceHardware
        exclude = ["id", "device", "org"]


class DiskSerializer(CamelCaseModelSerializer):
    device = serializers.CharField(source="device_name")

    class Meta:
        model = DeviceDisk
        fields = [
            "id", "mount_point", "device", "fs_type", "total_gb", "used_gb", "free_gb", "used_percent", "health",
            "updated_at",
        ]  # fmt: skip


def _child(model_class, *names):
    class ChildSerializer(CamelCaseModelSerializer):
        class Meta:
            model = model_class
            fields = ["id", *names]

    ChildSerializer.__name__ = f"{model_class.__name__}Serializer"
    return ChildSerializer


NetworkInterfaceSerializer = _child(
    DeviceNetworkInterface,
    "interface_name",
    "mac_address",
    "ip_address",
    "ip_type",
    "is_primary",
    "public_ip",
    "updated_at",
)
SoftwareSerializer = _child(
    DeviceSoftware, "name", "version", "publisher", "install_date", "install_location", "updated_at"
)
RegistryEntrySerializer = _child(
    DeviceRegistryEntry, "registry_path", "value_name", "value_data", "value_type", "collected_at"
)
ConfigEntrySerializer = _child(DeviceConfigEntry, "file_path", "config_key", "config_value", "collected_at")
ConnectionSerializer = _child(
    DeviceNetworkConnection,
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


class QuarantineSerializer(CamelCaseSerializer):
    reason = serializers.CharField(max_length=255)


class CommandSerializer(CamelCaseModelSerializer):
    device_id = serializers.UUIDField(read_only=True)
    created_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = DeviceCommand
        fields = [
            "id", "device_id", "type", "payload", "status", "created_by_id", "created_at", "sent_at", "completed_at",
            "expires_at", "result",
        ]  # fmt: skip
        read_only_fields = fields


class QueueCommandSerializer(CamelCaseSerializer):
    type = serializers.CharField(max_length=30)
    payload = serializers.JSONField(required=False)
    expires_in_seconds = serializers.IntegerField(required=False, min_value=1, max_value=30 * 24 * 3600)
