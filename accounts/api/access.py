"""Users, roles, memberships and the permission catalogue over the technician API.

Nobody hands out more than they hold, permissions or reach (accounts.services.check_can_grant), built-in roles are
read-only, and a person or membership whose reach exceeds the caller's (or who is shared with tenants outside it)
cannot be changed or deleted by that caller. Audit rows of memberships and people say what changed
(``accounts.audit.changes``).
"""

from __future__ import annotations

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.response import Response

from accounts import services
from accounts.api.serializers import (
    AuditLogSerializer,
    InviteSerializer,
    OrganizationUserSerializer,
    PartnerUserSerializer,
    PermissionSerializer,
    RoleSerializer,
    UserSerializer,
)
from accounts.models import AuditLog, OrganizationUser, PartnerUser, Permission, Role, User
from rmm import authz
from rmm.api import ScopedViewSet
from rmm.errors import ApiError
from rmm.inputs import DateTimeFilter
from rmm.net import client_ip
from rmm.openapi import error_answer
from rmm.pagination import KeysetPagination, Ordering


class PermissionViewSet(viewsets.ReadOnlyModelViewSet):
    """The permission registry: a catalogue every signed-in user may read."""

    queryset = Permission.objects.order_by("resource", "action")
    serializer_class = PermissionSerializer
    pagination_class = None


class _CrudViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    resource = "users"


_ESCALATION = "`escalation_refused`: it would hand out a permission you do not hold."
_ROLE_403 = error_answer(f"`permission_denied` (roles are managed at partner level), {_ESCALATION}")
_BUILTIN_403 = error_answer(f"`system_role_read_only`, `permission_denied` or {_ESCALATION}")


@extend_schema_view(
    create=extend_schema(responses={201: RoleSerializer, 403: _ROLE_403}),
    update=extend_schema(responses={200: RoleSerializer, 403: _BUILTIN_403}),
    partial_update=extend_schema(responses={200: RoleSerializer, 403: _BUILTIN_403}),
    destroy=extend_schema(
        responses={204: None, 403: _BUILTIN_403, 409: error_answer("`role_in_use`: members hold this role.")}
    ),
)
class RoleViewSet(_CrudViewSet):
    """Built-in roles (read-only) and a partner's custom roles. Defining or changing a custom role needs
    partner-level users:write in its partner and may only include permissions the caller holds there."""

    queryset = Role.objects.prefetch_related("permissions").order_by("name", "id")
    serializer_class = RoleSerializer

    def perform_create(self, serializer):
        with transaction.atomic():
            role = services.define_role(
                **serializer.validated_data, actor=self.request.user, ip=client_ip(self.request)
            )
            serializer.instance = role
            self._require(role)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        permissions = data.pop("permissions", None)
        with transaction.atomic():
            role = services.change_role(
                role=serializer.instance,
                changes=data,
                permissions=permissions,
                actor=self.request.user,
                ip=client_ip(self.request),
            )
            serializer.instance = role
            self._require(role)

    def perform_destroy(self, instance):
        services.delete_role(role=instance, actor=self.request.user, ip=client_ip(self.request))


_MEMBER_403 = error_answer(f"`permission_denied`, or {_ESCALATION}")


class _MembershipViewSet(_CrudViewSet):
    """What partner and organization memberships share: a membership never moves, and nobody creates, changes
    or removes one they could not grant themselves, its role with its reach. The services (accounts.services)
    decide and write the audit row, saying what changed: role, org_access, organizations or sites added and
    removed."""

    tenant_field: str  # "partner" or "org"

    def grant(self, data: dict, instance):
        """Create or change the membership through the services; subclasses name the service."""
        raise NotImplementedError

    def _save(self, serializer, instance=None):
        with transaction.atomic():
            membership = self.grant(serializer.validated_data, instance)
            serializer.instance = membership
            self._require(membership)

    def perform_create(self, serializer):
        data = serializer.validated_data
        lookup = {self.tenant_field: data[self.tenant_field], "user": data["user"]}
        if self.get_serializer().Meta.model.objects.filter(**lookup).exists():
            raise ApiError(409, "membership_exists", "This user is already a member; change that membership.")
        self._save(serializer)

    def perform_update(self, serializer):
        for field in (self.tenant_field, "user"):
            if field in serializer.validated_data and serializer.validated_data[field] != getattr(
                serializer.instance, field
            ):
                raise ApiError(400, "validation_error", "A membership cannot move.", {f"{field}Id": ["Read-only."]})
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance):
        services.revoke_access(membership=instance, actor=self.request.user, ip=client_ip(self.request))


def _membership_schema(serializer):
    return extend_schema_view(
        create=extend_schema(
            responses={
                201: serializer,
                403: _MEMBER_403,
                409: error_answer("`membership_exists`: change the existing membership instead."),
            }
        ),
        update=extend_schema(responses={200: serializer, 403: _MEMBER_403}),
        partial_update=extend_schema(responses={200: serializer, 403: _MEMBER_403}),
        destroy=extend_schema(responses={204: None, 403: _MEMBER_403}),
    )


@_membership_schema(PartnerUserSerializer)
class PartnerUserViewSet(_MembershipViewSet):
    """Partner memberships: who serves a partner's organizations, with which role and org_access."""

    queryset = PartnerUser.objects.select_related("user", "role").prefetch_related("selected_organizations")
    serializer_class = PartnerUserSerializer
    tenant_field = "partner"

    def grant(self, data, instance):
        return services.grant_partner_access(
            partner=data.get("partner", getattr(instance, "partner", None)),
            user=data.get("user", getattr(instance, "user", None)),
            role=data.get("role", getattr(instance, "role", None)),
            org_access=data.get("org_access", instance.org_access if instance else PartnerUser.OrgAccess.NONE),
            organizations=data.get(
                "selected_organizations", list(instance.selected_organizations.all()) if instance else []
            ),
            actor=self.request.user,
            ip=client_ip(self.request),
        )


@_membership_schema(OrganizationUserSerializer)
class OrganizationUserViewSet(_MembershipViewSet):
    """Organization memberships: a customer's own people, optionally restricted to some sites."""

    queryset = OrganizationUser.objects.select_related("user", "role").prefetch_related("sites")
    serializer_class = OrganizationUserSerializer
    tenant_field = "org"

    def grant(self, data, instance):
        return services.grant_organization_access(
            org=data.get("org", getattr(instance, "org", None)),
            user=data.get("user", getattr(instance, "user", None)),
            role=data.get("role", getattr(instance, "role", None)),
            sites=data.get("sites", list(instance.sites.all()) if instance else []),
            actor=self.request.user,
            ip=client_ip(self.request),
        )


_BEYOND = error_answer(
    "`user_beyond_your_authority`: the person holds access you could not grant, or `cannot_delete_self`."
)


@extend_schema_view(
    create=extend_schema(request=InviteSerializer, responses={201: UserSerializer}),
    update=extend_schema(responses={200: UserSerializer, 409: _BEYOND}),
    partial_update=extend_schema(responses={200: UserSerializer, 409: _BEYOND}),
    destroy=extend_schema(responses={204: None, 409: _BEYOND}),
)
class UserViewSet(
    ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin
):
    """People in reach. POST creates a user together with their first membership (users:invite). Changing or
    deleting a person takes over all their access, so it needs that the caller could have granted every one of
    their memberships (accounts.services.may_manage_user), the same rule as the admin."""

    resource = "users"
    queryset = User.objects.order_by("email")
    serializer_class = UserSerializer

    def permission_for(self, action: str | None = None) -> str:
        # Adding a person is an invitation: a role with users:invite but not users:write may do it.
        return "users:invite" if (action or self.action) == "create" else super().permission_for(action)

    def perform_update(self, serializer):
        with transaction.atomic():
            user = services.change_user(
                user=serializer.instance,
                changes=serializer.validated_data,
                actor=self.request.user,
                ip=client_ip(self.request),
            )
            serializer.instance = user
            self._require(user)

    def perform_destroy(self, instance):
        services.delete_user(user=instance, actor=self.request.user, ip=client_ip(self.request))

    def create(self, request, *args, **kwargs):
        body = InviteSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        partner, org = data.get("partner_id"), data.get("org_id")
        allowed = (
            authz.has_partner_permission(request.user, partner, "users:invite")
            if partner
            else authz.can(request.user, "users:invite", org)
        )
        if not allowed:
            raise ApiError(403, "permission_denied", "Adding people here needs users:invite.")
        with transaction.atomic():
            user = services.invite_user(
                email=data["email"],
                name=data.get("name", ""),
                password=data.get("password"),
                role=data["role_id"],
                partner=partner,
                org_access=data.get("org_access", PartnerUser.OrgAccess.NONE),
                organizations=data.get("organization_ids", []),
                org=org,
                sites=data.get("site_ids", []),
                actor=request.user,
                ip=client_ip(request),
            )
            self._require(user, "users:read")
        return Response(UserSerializer(user).data, status=201)


class AuditLogFilter(django_filters.FilterSet):
    actor = django_filters.UUIDFilter(field_name="actor_user_id")
    actorDevice = django_filters.UUIDFilter(field_name="actor_device_id")
    action = django_filters.CharFilter(method="filter_action", max_length=100)
    targetType = django_filters.CharFilter(field_name="target_type")
    targetId = django_filters.CharFilter(field_name="target_id")
    orgId = django_filters.UUIDFilter(field_name="org_id")
    # "from" is a Python keyword: declared below under its API name.
    to = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields: list[str] = []

    def filter_action(self, queryset, name, value):
        """``device.quarantine`` exactly, or ``device.*`` for every action on devices."""
        if value.endswith(".*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)


AuditLogFilter.base_filters["from"] = DateTimeFilter(field_name="created_at", lookup_expr="gte")


class AuditLogViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Who did what, newest first (audit:read). Rows without an organization are the operators' business."""

    resource = "audit"
    queryset = AuditLog.objects.all()
    serializer_class = AuditLogSerializer
    filterset_class = AuditLogFilter
    pagination_class = KeysetPagination
    orderings = {"-createdAt": Ordering("created_at", descending=True)}
    default_ordering = "-createdAt"
