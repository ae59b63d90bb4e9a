"""Filters of the technician API's device list (technician-api.md: devices)."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, Q

from devices.models import Device, DeviceGroupMembership, DeviceNetworkInterface


class DeviceFilter(django_filters.FilterSet):
    """Each filter narrows a queryset that authz has already scoped to the caller's reach."""

    orgId = django_filters.UUIDFilter(field_name="org_id")
    siteId = django_filters.UUIDFilter(field_name="site_id")
    status = django_filters.MultipleChoiceFilter(choices=Device.Status.choices)
    osType = django_filters.MultipleChoiceFilter(field_name="os_type", choices=Device.OsType.choices)
    tag = django_filters.CharFilter(method="filter_tag")
    groupId = django_filters.UUIDFilter(method="filter_group")
    search = django_filters.CharFilter(method="filter_search", max_length=255)
    lastSeenBefore = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="lt")
    lastSeenAfter = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")

    class Meta:
        model = Device
        fields: list[str] = []

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tags__contains=[value])  # GIN-indexed array containment

    def filter_group(self, queryset, name, value):
        return queryset.filter(Exists(DeviceGroupMembership.objects.filter(device_id=OuterRef("pk"), group_id=value)))

    def filter_search(self, queryset, name, value):
        """Hostname or display name (substring), or exactly an agent id, serial number or IP address."""
        term = value.strip()
        if not term:
            return queryset
        on_an_interface = Exists(DeviceNetworkInterface.objects.filter(device_id=OuterRef("pk"), ip_address=term))
        return queryset.filter(
            Q(hostname__icontains=term)
            | Q(display_name__icontains=term)
            | Q(agent_id=term.lower())
            | Q(hardware__serial_number=term)
            | Q(last_seen_ip=term)
            | on_an_interface
        )
