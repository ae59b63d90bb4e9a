"""Filters of the alerts API's lists. Each narrows a queryset that authz has already scoped to the caller's reach."""

from __future__ import annotations

import django_filters

from alerts.models import (
    Alert,
    AlertRule,
    AlertStatus,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    NotificationStatus,
    Severity,
)
from rmm.inputs import DateTimeFilter


class AlertFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=AlertStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    orgId = django_filters.UUIDFilter(field_name="org_id")
    siteId = django_filters.UUIDFilter(field_name="site_id")
    deviceId = django_filters.UUIDFilter(field_name="device_id")
    ruleId = django_filters.UUIDFilter(field_name="rule_id")
    openedAfter = DateTimeFilter(field_name="opened_at", lookup_expr="gte")
    openedBefore = DateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields: list[str] = []


class AlertRuleFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    partnerId = django_filters.UUIDFilter(field_name="partner_id")
    enabled = django_filters.BooleanFilter()
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)

    class Meta:
        model = AlertRule
        fields: list[str] = []


class MaintenanceWindowFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    siteId = django_filters.UUIDFilter(field_name="site_id")
    deviceGroupId = django_filters.UUIDFilter(field_name="device_group_id")

    class Meta:
        model = MaintenanceWindow
        fields: list[str] = []


class NotificationChannelFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    partnerId = django_filters.UUIDFilter(field_name="partner_id")
    kind = django_filters.ChoiceFilter(choices=NotificationChannel.Kind.choices)

    class Meta:
        model = NotificationChannel
        fields: list[str] = []


class NotificationFilter(django_filters.FilterSet):
    channelId = django_filters.UUIDFilter(field_name="channel_id")
    status = django_filters.MultipleChoiceFilter(choices=NotificationStatus.choices)
    alertId = django_filters.UUIDFilter(field_name="alert_id")

    class Meta:
        model = Notification
        fields: list[str] = []
