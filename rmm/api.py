"""What every technician-API view shares: camelCase field names, the error shape, authentication."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from django.urls import re_path
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.routers import SimpleRouter

from rmm import authz, inputs
from rmm.domain_errors import Invalid
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


# --- a model's ValidationError in the API's words -------------------------------------------------------------------

# Model field → the request field that sets it (relations are sent as ids).
_REQUEST_FIELD = {
    "org": "orgId",
    "partner": "partnerId",
    "site": "siteId",
    "device_group": "deviceGroupId",
    NON_FIELD_ERRORS: "nonFieldErrors",
}
# "condition.windowMinutes: must be …": a message that names a path inside its field (alerts.conditions, a
# script's parameters).
_PATH_MESSAGE = re.compile(r"(?P<path>[A-Za-z_]\w*(?:\.\w+|\[\d+\])+): (?P<message>.+)", re.DOTALL)


def request_fields(error: DjangoValidationError) -> dict[str, list[str]]:
    """``error``'s messages keyed by request field, a path-addressed message by its path: ``{"condition":
    ["condition.windowMinutes: must be …"]}`` → ``{"condition.windowMinutes": ["must be …"]}``."""
    by_field = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    fields: dict[str, list[str]] = {}
    for name, messages in by_field.items():
        key = _REQUEST_FIELD.get(name) or camel(name)
        for message in messages:
            match = _PATH_MESSAGE.fullmatch(message)
            if match and match["path"].startswith((f"{key}.", f"{key}[")):
                fields.setdefault(match["path"], []).append(match["message"])
            else:
                fields.setdefault(key, []).append(message)
    return fields


@contextmanager
def model_rules() -> Iterator[None]:
    """Answer a ``ValidationError`` raised by a model's ``clean()`` (inside a service) as 400 ``validation_error``."""
    try:
        yield
    except DjangoValidationError as exc:
        raise Invalid("The request has invalid fields.", fields=request_fields(exc)) from None


class OwnerFixedMixin:
    """The owner (``orgId`` / ``partnerId``) of a row (an alert rule, a channel, a window, a script) is set when it
    is created and never changes: moving it between tenants is deleting it in one and creating it in the other."""

    owner_fields: tuple[str, ...] = ("org", "partner")

    def validate(self, attrs):
        instance = getattr(self, "instance", None)
        if instance is not None:
            changed = {
                f"{name}_id": ["Cannot change after creation."]
                for name in self.owner_fields
                if name in attrs and getattr(attrs[name], "pk", attrs[name]) != getattr(instance, f"{name}_id")
            }
            if changed:
                raise serializers.ValidationError(changed)
        return super().validate(attrs)  # type: ignore[misc]
