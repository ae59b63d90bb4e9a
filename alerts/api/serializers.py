"""Bodies and answers of the alerts API (spec: alerts.md, "Technician API"), with camelCase field names.

Serializers only shape requests and answers: the rules of a rule, a window or a channel are their models' ``clean()``
(``alerts.conditions``, ``alerts.services.windows``, ``alerts.services.channels``) and the services that save them.
References to other objects are ``ScopedRelatedField``s: an id out of the caller's reach "does not exist" (400).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alerts.models import (
    Alert,
    AlertRule,
    AlertStatus,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    Severity,
)
from alerts.services.windows import is_occurring
from devices.models import Device, DeviceGroup
from orgs.models import Organization, Partner, Site
from rmm.api import CamelCaseModelSerializer, CamelCaseSerializer, OwnerFixedMixin, ScopedRelatedField
from rmm.inputs import JSONField

# A reference is looked up among what the caller may read of alerting; the write itself is checked on the saved
# object (ScopedViewSet._require), so "in reach but not yours to write" is a 403, not a 400.
READ = "alerts:read"


def _reference(model, source: str, *, perm: str = READ, required: bool = False):
    return ScopedRelatedField(
        perm=perm, source=source, queryset=model.objects.all(), required=required, allow_null=not required
    )


# --- alert rules ----------------------------------------------------------------------------------------------------

RULE_FIELDS = [
    "id", "partner_id", "org_id", "site_id", "device_group_id", "name", "enabled", "severity", "condition",
    "for_minutes", "resolve_after_minutes", "auto_resolve", "cooldown_minutes", "renotify_minutes", "channels",
    "created_by_id", "created_at", "updated_at",
]  # fmt: skip


class AlertRuleSerializer(OwnerFixedMixin, CamelCaseModelSerializer):
    """An alert rule. Exactly one of ``orgId`` / ``partnerId`` (a partner-wide rule applies to every organization of
    the partner and needs partner scope to write); ``siteId`` / ``deviceGroupId`` narrow an organization's rule.
    ``condition`` is one condition of docs/alerts.md; its errors name the path inside it
    (``condition.windowMinutes``). ``channels``: ids of notification channels (none: console only)."""

    partner_id = _reference(Partner, "partner")
    org_id = _reference(Organization, "org")
    site_id = _reference(Site, "site")
    device_group_id = _reference(DeviceGroup, "device_group")
    condition = JSONField(help_text='One condition, e.g. `{"kind": "offline", "minutes": 15}` (docs/alerts.md).')
    channels = ScopedRelatedField(
        perm=READ,
        many=True,
        queryset=NotificationChannel.objects.all(),
        required=False,
        help_text="Ids of the notification channels its notifications go to.",
    )
    created_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = AlertRule
        fields = RULE_FIELDS
        read_only_fields = ["id", "created_by_id", "created_at", "updated_at"]
        # The rules of a rule (one owner, a unique name per owner, its scope and condition) are the model's clean()
        # and alerts.services.rules.save_rule's, which runs full_clean(); the serializer does not decide them again.
        validators: list = []


class RulePreviewSerializer(CamelCaseSerializer):
    org_id = _reference(Organization, "org", required=True)
    site_id = _reference(Site, "site")
    device_group_id = _reference(DeviceGroup, "device_group")
    condition = JSONField(help_text="The condition to try, as a rule would hold it.")


class DeviceBriefSerializer(CamelCaseModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "org_id", "site_id", "hostname", "display_name", "os_type", "status", "last_seen_at"]
        read_only_fields = fields


class PreviewSampleSerializer(CamelCaseSerializer):
    device = DeviceBriefSerializer()
    value = serializers.FloatField(allow_null=True, help_text="The observed value (null for kinds without one).")


class RulePreviewResultSerializer(CamelCaseSerializer):
    count = serializers.IntegerField(min_value=0, help_text="Devices the condition holds for now.")
    sample = PreviewSampleSerializer(many=True, help_text="The first 50 of them.")


# --- alerts ---------------------------------------------------------------------------------------------------------

ALERT_FIELDS = [
    "id", "org_id", "site_id", "device_id", "device_hostname", "rule_id", "rule_name", "subject", "severity",
    "status", "title", "message", "value", "opened_at", "last_evaluated_at", "acknowledged_at", "acknowledged_by_id",
    "resolved_at", "resolved_by_id", "resolve_reason",
]  # fmt: skip


class AlertSerializer(CamelCaseModelSerializer):
    """An alert: open, acknowledged or resolved. ``deviceId`` and ``ruleId`` are null for a site-level "site
    unreachable" alert; ``resolvedById`` null on a resolved alert means it was resolved automatically."""

    org_id = serializers.UUIDField(read_only=True)
    site_id = serializers.UUIDField(read_only=True)
    device_id = serializers.UUIDField(read_only=True, allow_null=True)
    device_hostname = serializers.CharField(source="device.hostname", read_only=True, allow_null=True, default=None)
    rule_id = serializers.UUIDField(read_only=True, allow_null=True)
    rule_name = serializers.CharField(source="rule.name", read_only=True, allow_null=True, default=None)
    acknowledged_by_id = serializers.UUIDField(read_only=True, allow_null=True)
    resolved_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = ALERT_FIELDS
        read_only_fields = fields


class AlertNoteSerializer(CamelCaseSerializer):
    note = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="", help_text="Kept in the audit log."
    )


def _counts(name: str, values: list[str]) -> serializers.Serializer:
    # Keys are the choice values themselves (not camelCased): every value is present, 0 included.
    fields = {value: serializers.IntegerField(min_value=0) for value in values}
    return type(name, (serializers.Serializer,), fields)()


class AlertSummarySerializer(CamelCaseSerializer):
    """Counts of the alerts in reach (after the list's filters)."""

    by_status = _counts("AlertCountByStatusSerializer", AlertStatus.values)
    by_severity = _counts("AlertCountBySeveritySerializer", Severity.values)
    active_by_severity = _counts("ActiveAlertCountBySeveritySerializer", Severity.values)
    total = serializers.IntegerField(min_value=0)


# --- maintenance windows --------------------------------------------------------------------------------------------

WINDOW_FIELDS = [
    "id", "org_id", "site_id", "device_group_id", "name", "starts_at", "ends_at", "recurrence", "weekdays",
    "timezone", "suppress_alerts", "suppress_commands", "active_now", "created_at", "updated_at",
]  # fmt: skip


class MaintenanceWindowSerializer(OwnerFixedMixin, CamelCaseModelSerializer):
    """A maintenance window of an organization: of one site, one device group, or (neither) the whole organization.
    ``orgId`` may be left out when ``siteId`` or ``deviceGroupId`` names it. ``startsAt``/``endsAt`` are the first
    occurrence; ``daily`` and ``weekly`` (``weekdays``, 0 = Monday) repeat it in local time of ``timezone``."""

    owner_fields = ("org",)

    org_id = _reference(Organization, "org", perm="devices:write")
    site_id = _reference(Site, "site", perm="devices:write")
    device_group_id = _reference(DeviceGroup, "device_group", perm="devices:write")
    active_now = serializers.SerializerMethodField(
        method_name="get_active_now", help_text="Whether an occurrence is going on now."
    )

    class Meta:
        model = MaintenanceWindow
        fields = WINDOW_FIELDS
        read_only_fields = ["id", "active_now", "created_at", "updated_at"]
        validators: list = []  # the window's rules are its clean()'s (alerts.services.windows.validate_window)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_active_now(self, window: MaintenanceWindow) -> bool:
        now = self.context.get("now") or timezone.now()
        return is_occurring(window, now)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if self.instance is None and attrs.get("org") is None:
            named_by = attrs.get("site") or attrs.get("device_group")
            if named_by is None:
                raise serializers.ValidationError({"org_id": ["Give orgId, siteId or deviceGroupId."]})
            attrs["org"] = named_by.org
        return attrs


# --- notification channels and the outbox ---------------------------------------------------------------------------

CHANNEL_FIELDS = [
    "id", "partner_id", "org_id", "name", "kind", "config", "secret", "has_secret", "enabled", "created_at",
    "updated_at",
]  # fmt: skip


class NotificationChannelSerializer(OwnerFixedMixin, CamelCaseModelSerializer):
    """Where notifications go. ``kind`` ``email``: ``config`` ``{"to": [addresses]}``; ``webhook``:
    ``{"url": "https://…"}``, signed with ``secret`` (HMAC-SHA256). ``secret`` is write-only: only the answer that
    creates a webhook without one holds it (the generated key), ``hasSecret`` says whether one is set. Exactly one
    of ``orgId`` / ``partnerId``."""

    partner_id = _reference(Partner, "partner")
    org_id = _reference(Organization, "org", perm="alerts:write")
    secret = serializers.CharField(
        write_only=True,
        required=False,
        max_length=200,
        trim_whitespace=False,
        help_text="The webhook signing key. Write-only: the answer that creates a webhook without one holds the "
        "generated key, once; no other answer holds it.",
    )
    has_secret = serializers.SerializerMethodField(
        method_name="get_has_secret", help_text="Whether a signing key is set."
    )

    class Meta:
        model = NotificationChannel
        fields = CHANNEL_FIELDS
        read_only_fields = ["id", "has_secret", "created_at", "updated_at"]
        validators: list = []  # the channel's rules are its clean()'s (alerts.services.channels.validate_channel)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_secret(self, channel: NotificationChannel) -> bool:
        return bool(channel.secret)


NOTIFICATION_FIELDS = [
    "id", "channel_id", "alert_id", "event", "status", "attempts", "next_attempt_at", "last_error", "sent_at",
    "created_at", "payload",
]  # fmt: skip


class NotificationSerializer(CamelCaseModelSerializer):
    """One message of the outbox; its id is the delivery id the receiver sees (``X-RMM-Delivery``)."""

    channel_id = serializers.UUIDField(read_only=True)
    alert_id = serializers.UUIDField(read_only=True, allow_null=True)
    payload = JSONField(read_only=True, help_text="Exactly what is sent.")

    class Meta:
        model = Notification
        fields = NOTIFICATION_FIELDS
        read_only_fields = fields
