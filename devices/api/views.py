"""Devices over the technician API: the fleet list, one device, its inventory, decommissioning, commands.

Every write goes through a service (``devices.services.status`` for the device's lifecycle and edits,
``devices.services.commands`` for commands), which checks the rules and writes the audit row; the views check
access (``ScopedViewSet``) and translate the request."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from devices.api import serializers as s
from devices.filters import DeviceFilter
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
from devices.services import commands as command_service
from devices.services import fleet, status
from rmm.api import ScopedViewSet
from rmm.domain_errors import NotFound
from rmm.net import client_ip
from rmm.openapi import error_answer
from rmm.pagination import KeysetPagination, Ordering

COMMAND_ORDERING = Ordering("created_at", descending=True)

DEVICE_ORDERINGS = {
    "hostname": Ordering("hostname"),
    "-lastSeenAt": Ordering("last_seen_at", descending=True),
    "enrolledAt": Ordering("enrolled_at"),
}

# Inventory kinds served under devices/{id}/…: model, serializer, the order a page walks in.
INVENTORY = {
    "disks": (DeviceDisk, s.DiskSerializer, Ordering("mount_point")),
    "network-interfaces": (DeviceNetworkInterface, s.NetworkInterfaceSerializer, Ordering("interface_name")),
    "software": (DeviceSoftware, s.SoftwareSerializer, Ordering("name")),
    "registry-entries": (DeviceRegistryEntry, s.RegistryEntrySerializer, Ordering("registry_path")),
    "config-entries": (DeviceConfigEntry, s.ConfigEntrySerializer, Ordering("file_path")),
    "connections": (DeviceNetworkConnection, s.ConnectionSerializer, Ordering("local_port")),
}


def _inventory_schema(kind: str):
    """A page of one inventory kind (the device list's filters do not apply to it)."""
    return extend_schema(
        responses=INVENTORY[kind][1](many=True),
        filters=False,
        description=f"The device's {kind.replace('-', ' ')}, as its agent last reported them; keyset pages.",
    )


_DECOMMISSIONED = error_answer("`device_decommissioned`: a decommissioned device cannot change.")


@extend_schema_view(
    partial_update=extend_schema(responses={200: s.DeviceSerializer, 409: _DECOMMISSIONED}),
    destroy=extend_schema(description="Decommission: the agent is refused from now on (403 device_decommissioned)."),
)
class DeviceViewSet(
    ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin
):
    """GET the fleet (filters, keyset pages), GET/PATCH one device, DELETE = decommission."""

    resource = "devices"
    queryset = Device.objects.all()
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilter
    pagination_class = KeysetPagination

    def permission_for(self, action=None):
        if (action or self.action) == "commands":
            return "devices:" + ("read" if self.request.method == "GET" else "execute")
        return super().permission_for(action)

    @property
    def orderings(self):
        if self.action == "commands":
            return {"-createdAt": COMMAND_ORDERING}
        if self.action in INVENTORY_ACTIONS:
            ordering = INVENTORY[INVENTORY_ACTIONS[self.action]][2]
            return {ordering.field: ordering}
        return DEVICE_ORDERINGS

    @property
    def default_ordering(self) -> str:
        return next(iter(self.orderings))

    def perform_destroy(self, instance):
        """Decommissioning is terminal: the agent is refused from now on (403 device_decommissioned)."""
        status.decommission(device=instance, actor=self.request.user, ip=client_ip(self.request))

    def perform_update(self, serializer):
        with transaction.atomic():
            device = status.update_device(
                device=serializer.instance,
                actor=self.request.user,
                ip=client_ip(self.request),
                **serializer.validated_data,
            )
            self._require(device)  # a move to a site out of the writer's reach rolls back (403)
        serializer.instance = device

    @extend_schema(responses=s.DeviceSummarySerializer, filters=True)
    @action(detail=False, methods=["get"], url_path="summary", verb="read")
    def summary(self, request):
        """Counts by status and by OS within reach, for dashboards (one aggregate query, no rows)."""
        # The console's dashboard counts with the same function, so the two agree for the same person.
        counts = fleet.device_summary(self.filter_queryset(self.get_queryset()))
        return Response({"byStatus": counts.by_status, "byOsType": counts.by_os_type, "total": counts.total})

    @extend_schema(
        request=s.QuarantineSerializer,
        responses={200: s.DeviceSerializer, 409: error_answer("`invalid_status`: this device cannot be quarantined.")},
    )
    @action(detail=True, methods=["post"], url_path="quarantine", verb="write")
    def quarantine(self, request, pk=None):
        """Quarantine the device: its agent is refused (403 device_quarantined) until approved."""
        body = s.QuarantineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        device = status.quarantine(
            device=self.get_object(), reason=body.validated_data["reason"], actor=request.user, ip=client_ip(request)
        )
        return Response(s.DeviceSerializer(device, context=self.get_serializer_context()).data)

    @extend_schema(
        request=None,
        responses={200: s.DeviceSerializer, 409: error_answer("`invalid_status`: it is not quarantined.")},
    )
    @action(detail=True, methods=["post"], url_path="approve", verb="write")
    def approve(self, request, pk=None):
        """Approve a quarantined device: it is back in service."""
        device = status.approve(device=self.get_object(), actor=request.user, ip=client_ip(request))
        return Response(s.DeviceSerializer(device, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses={202: s.TokenRotationSerializer, 409: _DECOMMISSIONED})
    @action(detail=True, methods=["post"], url_path="rotate-token", verb="write")
    def rotate_token(self, request, pk=None):
        """Ask the agent to rotate its token at its next heartbeat."""
        status.request_token_rotation(device=self.get_object(), actor=request.user, ip=client_ip(request))
        return Response({"rotationRequested": True}, status=202)

    @extend_schema(methods=["GET"], responses=s.CommandSerializer(many=True), filters=False)
    @extend_schema(
        methods=["POST"],
        request=s.QueueCommandSerializer,
        responses={201: s.CommandSerializer, 409: _DECOMMISSIONED},
    )
    @action(detail=True, methods=["get", "post"], url_path="commands", verb=None)
    def commands(self, request, pk=None):
        """GET the device's commands, newest first; POST {type, payload, expiresInSeconds?} queues one."""
        device = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(DeviceCommand.objects.filter(device_id=device.pk, org_id=device.org_id))
            return self.get_paginated_response(s.CommandSerializer(page, many=True).data)
        body = s.QueueCommandSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        command = command_service.queue_command(
            device=device,
            type=body.validated_data["type"],
            payload=body.validated_data.get("payload"),
            created_by=request.user,
            expires_in_seconds=body.validated_data.get("expires_in_seconds"),
            ip=client_ip(request),
        )
        return Response(s.CommandSerializer(command).data, status=201)

    @extend_schema(responses=s.HardwareSerializer)
    @action(detail=True, methods=["get"], url_path="hardware", verb="read")
    def hardware(self, request, pk=None):
        """The device's hardware as its agent last reported it (404 until it has)."""
        device = self.get_object()
        row = DeviceHardware.objects.filter(device=device).first()
        if row is None:
            raise NotFound("This device has not reported its hardware yet.")
        return Response(s.HardwareSerializer(row).data)

    def _inventory(self, kind: str):
        device = self.get_object()
        model, serializer_class, _ordering = INVENTORY[kind]
        page = self.paginate_queryset(model._default_manager.filter(device_id=device.pk, org_id=device.org_id))
        return self.get_paginated_response(serializer_class(page, many=True).data)

    @_inventory_schema("disks")
    @action(detail=True, methods=["get"], url_path="disks", verb="read")
    def disks(self, request, pk=None):
        return self._inventory("disks")

    @_inventory_schema("network-interfaces")
    @action(detail=True, methods=["get"], url_path="network-interfaces", verb="read")
    def network_interfaces(self, request, pk=None):
        return self._inventory("network-interfaces")

    @_inventory_schema("software")
    @action(detail=True, methods=["get"], url_path="software", verb="read")
    def software(self, request, pk=None):
        return self._inventory("software")

    @_inventory_schema("registry-entries")
    @action(detail=True, methods=["get"], url_path="registry-entries", verb="read")
    def registry_entries(self, request, pk=None):
        return self._inventory("registry-entries")

    @_inventory_schema("config-entries")
    @action(detail=True, methods=["get"], url_path="config-entries", verb="read")
    def config_entries(self, request, pk=None):
        return self._inventory("config-entries")

    @_inventory_schema("connections")
    @action(detail=True, methods=["get"], url_path="connections", verb="read")
    def connections(self, request, pk=None):
        return self._inventory("connections")


INVENTORY_ACTIONS = {name.replace("-", "_"): name for name in INVENTORY}


class CommandViewSet(ScopedViewSet, mixins.RetrieveModelMixin):
    """GET commands/{id}; POST commands/{id}/cancel withdraws a command its agent has not fetched yet."""

    resource = "devices"
    queryset = DeviceCommand.objects.all()
    serializer_class = s.CommandSerializer

    @extend_schema(
        request=None,
        responses={200: s.CommandSerializer, 409: error_answer("`command_not_pending`: only pending commands cancel.")},
    )
    @action(detail=True, methods=["post"], url_path="cancel", verb="execute")
    def cancel(self, request, pk=None):
        """Withdraw a command its agent has not fetched yet."""
        command = command_service.cancel_command(command=self.get_object(), actor=request.user, ip=client_ip(request))
        return Response(s.CommandSerializer(command).data)
