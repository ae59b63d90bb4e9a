from __future__ import annotations

from rest_framework import serializers

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
)
from devices.services.groups import MAX_GROUP_COMMANDS, check_preview
from orgs.models import Organization, Site
from rmm.api import CamelCaseModelSerializer, CamelCaseSerializer, ScopedRelatedField
from rmm.inputs import JSONField

DEVICE_FIELDS = [
    "id", "org_id", "site_id", "agent_id", "hostname", "display_name", "os_type", "os_version", "os_build",
    "architecture", "agent_version", "status", "last_seen_at", "last_seen_ip", "enrolled_at", "tags",
    "quarantined_at", "quarantined_reason", "created_at", "updated_at",
]  # fmt: skip


class DeviceSerializer(CamelCaseModelSerializer):
    """A device as technicians see it; PATCH changes display name, tags, site (same organization) and the
    maintenance status. The rules of such a change are ``devices.services.status.update_device``'s."""

    org_id = serializers.UUIDField(read_only=True)
    site_id = ScopedRelatedField(perm="devices:write", source="site", queryset=Site.objects.all(), required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), max_length=100, required=False)
    status = serializers.ChoiceField(choices=Device.Status.choices, required=False)

    class Meta:
        model = Device
        fields = DEVICE_FIELDS
        read_only_fields = [f for f in DEVICE_FIELDS if f not in {"display_name", "tags", "site_id", "status"}]


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
    payload = JSONField(required=False)
    expires_in_seconds = serializers.IntegerField(required=False, min_value=1, max_value=30 * 24 * 3600)


# --- groups -------------------------------------------------------------------------------------------------------

GROUP_FIELDS = [
    "id", "org_id", "site_id", "name", "type", "filter_rules", "fields_used", "parent_id", "member_count",
    "created_at", "updated_at",
]  # fmt: skip


class GroupSerializer(CamelCaseModelSerializer):
    """A device group. ``orgId`` may be left out when ``siteId`` is given (the site's organization); neither
    the organization nor the type changes after creation. ``filterRules`` (docs/filter-rules.md) is required for a
    dynamic group and refused for a static one; ``fieldsUsed`` is derived from it."""

    org_id = ScopedRelatedField(perm="devices:read", source="org", queryset=Organization.objects.all(), required=False)
    site_id = ScopedRelatedField(
        perm="devices:read", source="site", queryset=Site.objects.all(), required=False, allow_null=True
    )
    parent_id = ScopedRelatedField(
        perm="devices:read", source="parent", queryset=DeviceGroup.objects.all(), required=False, allow_null=True
    )
    type = serializers.ChoiceField(choices=DeviceGroup.Type.choices, required=False)
    filter_rules = JSONField(
        required=False,
        allow_null=True,
        help_text="The rule of a dynamic group (docs/filter-rules.md); null for static.",
    )
    fields_used = serializers.ListField(child=serializers.CharField(), read_only=True)
    member_count = serializers.IntegerField(read_only=True, help_text="Members, pinned ones included.")

    class Meta:
        model = DeviceGroup
        fields = GROUP_FIELDS
        read_only_fields = ["id", "fields_used", "member_count", "created_at", "updated_at"]
        # The rules of a group (its name unique in its organization, no cycle of parents, …) are
        # devices.services.groups.check_group's, which create_group and update_group apply.
        validators: list = []


class GroupPreviewSerializer(CamelCaseSerializer):
    org_id = ScopedRelatedField(perm="devices:read", source="org", queryset=Organization.objects.all())
    site_id = ScopedRelatedField(
        perm="devices:read", source="site", queryset=Site.objects.all(), required=False, allow_null=True
    )
    filter_rules = JSONField()

    def validate(self, attrs):
        check_preview(org=attrs["org"], site=attrs.get("site"), rule=attrs["filter_rules"])
        return attrs


class PreviewDeviceSerializer(CamelCaseModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "site_id", "hostname", "display_name", "os_type", "os_version", "status", "last_seen_at"]


class GroupPreviewResultSerializer(CamelCaseSerializer):
    count = serializers.IntegerField(min_value=0, help_text="Matching devices the caller may see.")
    sample = PreviewDeviceSerializer(many=True, help_text="The first 50 of them by hostname.")


class GroupMemberSerializer(CamelCaseModelSerializer):
    """A member: the device (as in the device list, shortened) and how it came to be in the group."""

    device = PreviewDeviceSerializer(read_only=True)

    class Meta:
        model = DeviceGroupMembership
        fields = ["device", "is_pinned", "added_by", "added_at"]


class DeviceIdsSerializer(CamelCaseSerializer):
    device_ids = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=MAX_GROUP_COMMANDS, help_text="Devices to act on."
    )


class MembershipChangeResultSerializer(CamelCaseSerializer):
    device_ids = serializers.ListField(child=serializers.UUIDField(), help_text="The devices whose membership changed.")


class GroupMembershipLogSerializer(CamelCaseModelSerializer):
    device_id = serializers.UUIDField(read_only=True)
    actor_user_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = DeviceGroupMembershipLog
        fields = ["id", "device_id", "change", "reason", "actor_user_id", "at"]


class GroupCommandSerializer(CamelCaseSerializer):
    type = serializers.CharField()
    payload = JSONField(required=False)
    expires_in_seconds = serializers.IntegerField(required=False, min_value=1)


class GroupCommandsResultSerializer(CamelCaseSerializer):
    queued = serializers.IntegerField(min_value=0)
    skipped = serializers.IntegerField(
        min_value=0, help_text="Members left out: decommissioned, or outside what the caller may run commands on."
    )
    commands = serializers.ListField(
        child=serializers.DictField(child=serializers.UUIDField()), help_text="[{id, deviceId}] of the commands."
    )
