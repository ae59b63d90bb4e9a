"""What every technician-API view shares: camelCase field names, the error shape, authentication."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models, transaction
from django.urls import re_path
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.routers import SimpleRouter

from rmm import authz, inputs
from rmm.names import camel
from rmm.net import client_ip

if TYPE_CHECKING:
    # What CamelCaseFieldsMixin is mixed into, so the type checker sees the serializer's get_fields through it.
    _Serializer = serializers.Serializer
else:
    _Serializer = object


class CamelCaseFieldsMixin(_Serializer):
    """Expose each serializer field under its camelCase name (``expires_at`` → ``expiresAt``).

    Only the serializer's own field names are renamed; the contents of JSON fields (a command's payload, an
    organization's settings) pass through untouched, which a renderer that rewrites every key could not promise.
    """

    def get_fields(self):
        renamed = {}
        for name, field in super().get_fields().items():
            public = camel(name)
            if field.source is None and public != name:
                field.source = name
            if public != name and hasattr(self, f"validate_{name}"):
                # DRF looks validators up by the field's (now camelCase) name: keep validate_<snake_name> working.
                setattr(self, f"validate_{public}", getattr(self, f"validate_{name}"))
            renamed[public] = field
        return renamed


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference by id to an object the requester must reach with ``perm``; anything else is answered as if
    it did not exist (400 "does not exist"), so a request body cannot probe other tenants."""

    def __init__(self, *, perm: str, **kwargs):
        self.perm = perm
        super().__init__(**kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        if queryset is None:  # a read-only field: nothing is looked up
            return None
        return authz.visible(self.context["request"].user, self.perm, queryset)


class CamelCaseSerializer(CamelCaseFieldsMixin, serializers.Serializer):
    pass


class CamelCaseModelSerializer(CamelCaseFieldsMixin, serializers.ModelSerializer):
    # Model JSON and datetime fields are read through rmm.parsing like every other input (rmm/inputs.py).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: inputs.JSONField,
        models.DateTimeField: inputs.DateTimeField,
    }


def route(pattern: str, view, name: str):
    """A URL that answers with and without a trailing slash (the specs write paths without one; an agent or
    script that adds one must not get a redirect)."""
    return re_path(rf"^{pattern}/?$", view, name=name)


class Router(SimpleRouter):
    """A DRF router whose routes answer with and without a trailing slash."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


# --- access control for every tenant-owned resource --------------------------------------------------------------

_ACTION_VERBS = {
    "list": "read",
    "retrieve": "read",
    "create": "write",
    "update": "write",
    "partial_update": "write",
    "destroy": "delete",
}


class ScopedViewSet(viewsets.GenericViewSet):
    """The base of every technician-API resource. Access control is written here once:

    - every queryset starts from ``authz.visible(user, "<resource>:read", ...)``, before any filter runs, so a
      list never shows and a lookup never finds what is out of reach (404 ``not_found``, as if it did not exist);
    - an object in reach whose action the role lacks answers 403 ``permission_denied``;
    - a write to the collection (a create) by someone who holds its permission nowhere answers 403 before the
      body is validated;
    - after a write, still inside its transaction, the object must be inside the writer's reach for the same
      permission (a device moved into another organization, a site created in a foreign one); otherwise the
      transaction rolls back and the answer is 403: nothing is saved.

    Subclasses declare ``resource`` and ``queryset``; extra actions name their verb with
    ``@action(..., verb="execute")`` (default ``write`` for POST-like actions, ``read`` for GET).
    """

    resource: str = ""
    verb: str | None = None  # set per extra action: @action(..., verb="execute")
    # Changes are PATCH (the specs document no PUT): without this, DRF's UpdateModelMixin would also answer PUT,
    # an undocumented second way to write every resource.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    view_verb = "read"  # what it takes to see the rows at all
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    _GUARDED = ("get_queryset", "get_object", "perform_create", "perform_update", "perform_destroy")

    def __init_subclass__(cls, **kwargs):
        # DRF's mixins define perform_create & co. too: listed before this class among the bases, theirs would
        # win and skip the reach checks silently. Refuse such a class when it is defined, not in production.
        super().__init_subclass__(**kwargs)
        for name in cls._GUARDED:
            owner = next(klass for klass in cls.__mro__ if name in vars(klass))
            if not issubclass(owner, ScopedViewSet):
                raise TypeError(
                    f"{cls.__name__}.{name} resolves to {owner.__name__}, bypassing ScopedViewSet's access checks; "
                    "list ScopedViewSet first among the bases."
                )

    def permission_for(self, action: str | None = None) -> str:
        action = action or self.action
        verb = _ACTION_VERBS.get(action)
        if verb is None:
            verb = self.verb or ("read" if self.request.method == "GET" else "write")
        return f"{self.resource}:{verb}"

    def check_permissions(self, request):
        super().check_permissions(request)
        # A write to the collection (create, groups/preview …) names no object whose reach could decide 404 or 403,
        # and its body would be validated before perform_create checks the new object: a caller who holds the
        # permission nowhere would learn "400: siteId does not exist" where the answer is "403: not yours to do".
        # So such a caller is refused here, before the body is read; everyone else still has each object checked.
        collection_write = not self.detail and request.method not in SAFE_METHODS
        if collection_write and not authz.holds_anywhere(request.user, self.permission_for()):
            raise drf_exceptions.PermissionDenied()

    def get_queryset(self):
        return authz.visible(self.request.user, f"{self.resource}:{self.view_verb}", super().get_queryset())

    def get_object(self):
        obj = super().get_object()  # 404 when out of reach: the queryset is already scoped
        try:
            authz.check(self.request.user, self.permission_for(), obj)
        except authz.PermissionDenied:
            raise drf_exceptions.PermissionDenied() from None
        return obj

    def _require(self, instance, perm: str | None = None) -> None:
        if not authz.can(self.request.user, perm or self.permission_for(), instance):
            raise drf_exceptions.PermissionDenied()

    def perform_create(self, serializer):
        with transaction.atomic():
            instance = serializer.save()
            self._require(instance)
            self.audit("create", instance)

    def perform_update(self, serializer):
        with transaction.atomic():
            instance = serializer.save()
            self._require(instance)
            self.audit("update", instance, changed=sorted(serializer.validated_data))

    def perform_destroy(self, instance):
        with transaction.atomic():
            self.audit("delete", instance)
            instance.delete()

    def audit(self, verb: str, instance, **details) -> None:
        """One audit row for ``verb`` on ``instance``: ``<noun>.<verb>`` with the noun the admin uses too
        (``accounts.audit.action_for``), or an ``AuditAction`` given whole."""
        from accounts import audit
        from accounts.models import AuditAction

        audit.record(
            action=verb if isinstance(verb, AuditAction) else audit.action_for(instance, verb),
            actor_user=self.request.user,
            target=instance,
            details=details,
            ip=client_ip(self.request),
        )
