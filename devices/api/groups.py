"""Device groups over the technician API: CRUD, members (add/remove for static groups, pin/unpin for dynamic
ones), the membership log, rule previews and commands to every member.

Every write goes through ``devices.services.groups``, which checks the rules and writes the audit row
(``device_group.*``); the views check access (``ScopedViewSet``) and translate the request."""

from __future__ import annotations

import django_filters
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from devices.api import serializers as s
from devices.models import Device, DeviceGroup, DeviceGroupMembership, DeviceGroupMembershipLog
from devices.services import groups
from rmm import authz
from rmm.api import ScopedViewSet
from rmm.domain_errors import Invalid, Refused
from rmm.net import client_ip
from rmm.openapi import error_answer
from rmm.pagination import KeysetPagination, Ordering


class GroupFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    siteId = django_filters.UUIDFilter(field_name="site_id")
    type = django_filters.ChoiceFilter(choices=DeviceGroup.Type.choices)
    parentId = django_filters.UUIDFilter(field_name="parent_id")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = DeviceGroup
        fields: list[str] = []


def _member_count():
    counts = (
        DeviceGroupMembership.objects.filter(group_id=OuterRef("pk"))
        .order_by()
        .values("group_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


_DYNAMIC_ONLY = error_answer("`static_group`: only a dynamic group's members are pinned.")
_STATIC_ONLY = error_answer("`dynamic_group`: a dynamic group's members come from its rule.")


class GroupViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Device groups. A dynamic group's members are kept current by the server (devices/services/groups.py);
    saving a rule evaluates it at once."""

    resource = "devices"
    queryset = DeviceGroup.objects.all()
    serializer_class = s.GroupSerializer
    filterset_class = GroupFilter
    pagination_class = KeysetPagination

    def permission_for(self, action=None):
        action = action or self.action
        if action == "commands":
            return "devices:execute"
        if action in ("preview", "membership_log"):
            return "devices:read"
        if action == "devices":
            return "devices:" + ("read" if self.request.method == "GET" else "write")
        if action == "destroy":
            return "devices:write"  # deleting a group deletes no device
        return super().permission_for(action)

    @property
    def orderings(self):
        if self.action == "devices":
            return {"addedAt": Ordering("id")}  # memberships' ids are time-ordered (uuid7)
        if self.action == "membership_log":
            return {"-at": Ordering("at", descending=True)}
        return {"name": Ordering("name")}

    @property
    def default_ordering(self) -> str:
        return next(iter(self.orderings))

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action in ("list", "retrieve", "create", "partial_update", "update"):
            queryset = queryset.annotate(member_count=_member_count())
        return queryset

    def perform_create(self, serializer):
        with transaction.atomic():
            group = groups.create_group(
                actor=self.request.user, ip=client_ip(self.request), **serializer.validated_data
            )
            self._require(group)  # a group out of the creator's reach rolls back (403)
            group.member_count = group.memberships.count()  # type: ignore[attr-defined]  # as the list annotates it
        serializer.instance = group

    def perform_update(self, serializer):
        with transaction.atomic():
            group = groups.update_group(
                group=serializer.instance,
                changes=serializer.validated_data,
                actor=self.request.user,
                ip=client_ip(self.request),
            )
            self._require(group)
            group.member_count = group.memberships.count()  # type: ignore[attr-defined]  # as the list annotates it
        serializer.instance = group

    def perform_destroy(self, instance):
        groups.delete_group(group=instance, actor=self.request.user, ip=client_ip(self.request))

    @extend_schema(request=s.GroupPreviewSerializer, responses=s.GroupPreviewResultSerializer, filters=False)
    @action(detail=False, methods=["post"], url_path="preview")
    def preview(self, request):
        """Which devices would a rule match? Counts (and samples) only the devices the caller may see."""
        body = s.GroupPreviewSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        org = body.validated_data["org"]
        if not authz.can(request.user, "devices:read", org):
            raise Refused("You may not read this organization's devices.")
        site = body.validated_data.get("site")
        result = groups.preview(
            user=request.user,
            org_id=org.pk,
            site_id=site.pk if site else None,
            rule=body.validated_data["filter_rules"],
        )
        return Response(
            {"count": result.count, "sample": s.PreviewDeviceSerializer(result.sample, many=True).data}, status=200
        )

    @extend_schema(methods=["GET"], responses=s.GroupMemberSerializer(many=True), filters=False)
    @extend_schema(
        methods=["POST"],
        request=s.DeviceIdsSerializer,
        responses={200: s.MembershipChangeResultSerializer, 409: _STATIC_ONLY},
        description="Add devices to a static group (same organization, and site for a site-bound group).",
    )
    @extend_schema(
        methods=["DELETE"],
        request=s.DeviceIdsSerializer,
        responses={200: s.MembershipChangeResultSerializer, 409: _STATIC_ONLY},
        description="Remove devices from a static group.",
    )
    @action(detail=True, methods=["get", "post", "delete"], url_path="devices")
    def devices(self, request, pk=None):
        """GET the members the caller may see; POST {deviceIds} adds to a static group, DELETE {deviceIds} removes."""
        group = self.get_object()
        if request.method == "GET":
            memberships = authz.visible(
                request.user, "devices:read", DeviceGroupMembership.objects.filter(group_id=group.pk)
            ).select_related("device")
            page = self.paginate_queryset(memberships)
            return self.get_paginated_response(s.GroupMemberSerializer(page, many=True).data)
        ids = self._device_ids(request)
        if request.method == "POST":
            devices = self._writable_devices(request, ids)
            changed = groups.add_members(group=group, devices=devices, actor=request.user, ip=client_ip(request))
        else:
            visible = authz.visible(request.user, "devices:write", Device.objects.filter(pk__in=ids))
            changed = groups.remove_members(
                group=group,
                device_ids=list(visible.values_list("id", flat=True)),
                actor=request.user,
                ip=client_ip(request),
            )
        return Response({"deviceIds": [str(pk) for pk in changed]})

    @extend_schema(
        request=s.DeviceIdsSerializer, responses={200: s.MembershipChangeResultSerializer, 409: _DYNAMIC_ONLY}
    )
    @action(detail=True, methods=["post"], url_path="devices/pin", verb="write")
    def pin(self, request, pk=None):
        """Pin members of a dynamic group: they stay in it when they stop matching its rule."""
        return self._pinning(request, groups.pin_members)

    @extend_schema(
        request=s.DeviceIdsSerializer, responses={200: s.MembershipChangeResultSerializer, 409: _DYNAMIC_ONLY}
    )
    @action(detail=True, methods=["post"], url_path="devices/unpin", verb="write")
    def unpin(self, request, pk=None):
        """Unpin members of a dynamic group; those its rule no longer matches leave it at once."""
        return self._pinning(request, groups.unpin_members)

    def _pinning(self, request, change):
        group = self.get_object()
        ids = self._device_ids(request)
        self._writable_devices(request, ids)
        changed = change(group=group, device_ids=list(ids), actor=request.user, ip=client_ip(request))
        return Response({"deviceIds": [str(pk) for pk in changed]})

    @extend_schema(responses=s.GroupMembershipLogSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], url_path="membership-log")
    def membership_log(self, request, pk=None):
        """The group's membership changes, newest first: which device, added/removed/pinned/unpinned, and why."""
        group = self.get_object()
        log = authz.visible(request.user, "devices:read", DeviceGroupMembershipLog.objects.filter(group_id=group.pk))
        page = self.paginate_queryset(log)
        return self.get_paginated_response(s.GroupMembershipLogSerializer(page, many=True).data)

    @extend_schema(
        request=s.GroupCommandSerializer,
        responses={
            201: s.GroupCommandsResultSerializer,
            409: error_answer("`no_devices`: no member the caller may run commands on."),
        },
        filters=False,
    )
    @action(detail=True, methods=["post"], url_path="commands")
    def commands(self, request, pk=None):
        """Queue one command for every member the caller may run commands on, in one transaction (at most
        10,000; a bigger group is refused with 400 ``too_many_devices``)."""
        group = self.get_object()
        body = s.GroupCommandSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = groups.queue_group_commands(
            group=group,
            user=request.user,
            type=body.validated_data["type"],
            payload=body.validated_data.get("payload"),
            expires_in_seconds=body.validated_data.get("expires_in_seconds"),
            ip=client_ip(request),
        )
        return Response(
            {
                "queued": len(result.commands),
                "skipped": result.skipped,
                "commands": [{"id": str(command), "deviceId": str(device)} for command, device in result.commands],
            },
            status=201,
        )

    def _device_ids(self, request) -> list:
        body = s.DeviceIdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return list(dict.fromkeys(body.validated_data["device_ids"]))

    def _writable_devices(self, request, ids: list) -> list[Device]:
        """The devices of ``ids``, all of which the caller may write; any other id is answered as if it did not
        exist (400 naming it), so a body cannot probe other tenants' devices."""
        devices = list(authz.visible(request.user, "devices:write", Device.objects.filter(pk__in=ids)))
        unknown = sorted(set(map(str, ids)) - {str(d.pk) for d in devices})
        if unknown:
            raise Invalid(
                "Some devices do not exist.", fields={"deviceIds": [f"No such device: {', '.join(unknown)}."]}
            )
        return devices
