"""Partners, organizations and sites over the technician API."""

from __future__ import annotations

import datetime as dt

import django_filters
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from orgs.api.serializers import (
    EnrollmentKeyCreatedSerializer,
    EnrollmentKeySerializer,
    OrganizationSerializer,
    PartnerSerializer,
    SiteSerializer,
)
from orgs.models import EnrollmentKey, Organization, Partner, Site
from orgs.services import (
    create_enrollment_key,
    create_organization,
    delete_organization,
    delete_site,
    revoke_enrollment_keys,
)
from rmm import authz
from rmm.api import ScopedViewSet
from rmm.errors import ApiError
from rmm.net import client_ip
from rmm.openapi import error_answer


class PartnerViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin):
    """Partners: members read their own; only operators (superusers) change them."""

    resource = "partners"
    queryset = Partner.objects.order_by("name")
    serializer_class = PartnerSerializer

    def permission_for(self, action=None):
        # authz answers partners with "*:read" for members; the resource name does not matter, the verb does.
        return "partners:" + ("read" if (action or self.action) in {"list", "retrieve"} else "write")


class OrganizationFilter(django_filters.FilterSet):
    partnerId = django_filters.UUIDFilter(field_name="partner_id")
    status = django_filters.ChoiceFilter(choices=Organization.Status.choices)

    class Meta:
        model = Organization
        fields: list[str] = []


@extend_schema_view(
    create=extend_schema(
        responses={
            201: OrganizationSerializer,
            403: error_answer("`permission_denied` (partner-level access needed) or `organization_limit_reached`."),
        }
    ),
    destroy=extend_schema(
        responses={204: None, 409: error_answer("`organization_not_empty`: it still has devices or sites.")}
    ),
)
class OrganizationViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """A partner's customer organizations. Creating and deleting one is a partner-level act (an Org Admin can
    never create, see or delete other organizations)."""

    resource = "organizations"
    queryset = Organization.objects.order_by("name", "id")
    serializer_class = OrganizationSerializer
    filterset_class = OrganizationFilter

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        partner = data.pop("partner", None) or self._only_partner()
        if not authz.has_partner_permission(self.request.user, partner, "organizations:write"):
            raise ApiError(403, "permission_denied", "Creating an organization needs partner-level access.")
        serializer.instance = create_organization(
            partner=partner, **data, actor=self.request.user, ip=client_ip(self.request)
        )
        authz.clear_cache(self.request.user)  # the new organization may now be in reach (org_access all)

    def _only_partner(self) -> Partner:
        partners = authz.reach(self.request.user).partners
        if len(partners) != 1:
            raise ApiError(400, "validation_error", "Say which partner.", {"partnerId": ["This field is required."]})
        return Partner.objects.get(pk=next(iter(partners)))

    def perform_destroy(self, instance):
        delete_organization(organization=instance, actor=self.request.user, ip=client_ip(self.request))


class EnrollmentKeyFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    siteId = django_filters.UUIDFilter(field_name="site_id")

    class Meta:
        model = EnrollmentKey
        fields: list[str] = []


class SiteFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")

    class Meta:
        model = Site
        fields: list[str] = []


@extend_schema_view(
    destroy=extend_schema(responses={204: None, 409: error_answer("`site_not_empty`: it still has devices.")})
)
class SiteViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Sites of the organizations in reach."""

    resource = "sites"
    queryset = Site.objects.order_by("name", "id")
    serializer_class = SiteSerializer
    filterset_class = SiteFilter

    def perform_destroy(self, instance):
        delete_site(site=instance, actor=self.request.user, ip=client_ip(self.request))


@extend_schema_view(create=extend_schema(responses={201: EnrollmentKeyCreatedSerializer}))
class EnrollmentKeyViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Keys agents enroll with (devices:write throughout). POST answers the raw key once, under ``key``; it is
    never shown again (only its HMAC is stored). POST {id}/revoke ends it."""

    resource = "devices"
    queryset = EnrollmentKey.objects.order_by("-created_at", "-id")
    serializer_class = EnrollmentKeySerializer
    filterset_class = EnrollmentKeyFilter

    view_verb = "write"  # the spec's table puts every enrollment-key call under devices:write, listing included

    def permission_for(self, action=None):
        return "devices:write"

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        hours = data.get("expires_in_hours")
        with transaction.atomic():
            raw, key = create_enrollment_key(
                site=data["site"],
                name=data["name"],
                max_usage=data.get("max_usage"),
                expires_at=timezone.now() + dt.timedelta(hours=hours) if hours else None,
                created_by=request.user,
                ip=client_ip(request),
            )
            self._require(key)
        return Response({**self.get_serializer(key).data, "key": raw}, status=201)

    @extend_schema(request=None, responses=EnrollmentKeySerializer)
    @action(detail=True, methods=["post"], url_path="revoke", verb="write")
    def revoke(self, request, pk=None):
        """End the key: agents can no longer enroll with it."""
        key = self.get_object()
        revoke_enrollment_keys(
            keys=EnrollmentKey.objects.filter(pk=key.pk), actor_user=request.user, ip=client_ip(request)
        )
        key.refresh_from_db()
        return Response(self.get_serializer(key).data)
