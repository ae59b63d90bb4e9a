"""Partners, organizations and sites over the technician API."""

from __future__ import annotations

import django_filters
from django.db import transaction
from rest_framework import mixins

from orgs.api.serializers import OrganizationSerializer, PartnerSerializer, SiteSerializer
from orgs.models import Organization, Partner, Site
from rmm import authz
from rmm.api import ScopedViewSet
from rmm.errors import ApiError


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
        fields = []


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
        partner = serializer.validated_data.get("partner") or self._only_partner()
        if not authz.has_partner_permission(self.request.user, partner, "organizations:write"):
            raise ApiError(403, "permission_denied", "Creating an organization needs partner-level access.")
        with transaction.atomic():
            locked = Partner.objects.select_for_update().get(pk=partner.pk)
            if locked.max_organizations is not None and locked.organizations.count() >= locked.max_organizations:
                raise ApiError(
                    403,
                    "organization_limit_reached",
                    f"Partner {locked.name} already has its maximum of {locked.max_organizations} organizations.",
                )
            instance = serializer.save(partner=locked)
            authz.clear_cache(self.request.user)  # the new organization may now be in reach (org_access all)
            self.audit("create", instance)

    def _only_partner(self) -> Partner:
        partners = authz.reach(self.request.user).partners
        if len(partners) != 1:
            raise ApiError(400, "validation_error", "Say which partner.", {"partnerId": ["This field is required."]})
        return Partner.objects.get(pk=next(iter(partners)))

    def perform_destroy(self, instance):
        if instance.devices.exists() or instance.sites.exists():
            raise ApiError(409, "organization_not_empty", "Remove the organization's devices and sites first.")
        super().perform_destroy(instance)


class SiteFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")

    class Meta:
        model = Site
        fields = []


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
        if instance.devices.exists():
            raise ApiError(409, "site_not_empty", "Move or decommission the site's devices first.")
        super().perform_destroy(instance)
