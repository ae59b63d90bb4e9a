"""What every technician-API view shares: camelCase field names, the error shape, authentication."""

from __future__ import annotations

from django.urls import re_path
from rest_framework import serializers
from rest_framework.routers import SimpleRouter

from rmm.errors import camel


class CamelCaseFieldsMixin:
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
            renamed[public] = field
        return renamed


class CamelCaseSerializer(CamelCaseFieldsMixin, serializers.Serializer):
    pass


class CamelCaseModelSerializer(CamelCaseFieldsMixin, serializers.ModelSerializer):
    pass


def route(pattern: str, view, name: str):
    """A URL that answers with and without a trailing slash (the specs write paths without one; an agent or
    script that adds one must not get a redirect)."""
    return re_path(rf"^{pattern}/?$", view, name=name)


class Router(SimpleRouter):
    """A DRF router whose routes answer with and without a trailing slash."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"
