"""What the OpenAPI document (drf-spectacular, /api/schema/) needs beyond the views' own annotations.

- ``ApiSchema``, DRF's DEFAULT_SCHEMA_CLASS: every operation also lists the error answers that apply to it, in the
  one error shape (``rmm.errors.ErrorSerializer``), decided here once instead of on every view:
  400 when it takes a body or query parameters, 401 and 429 (refused tokens) when it needs a signed-in user, 403
  when the access rules (ScopedViewSet) or the session's CSRF check can refuse it, 404 when its path names an
  object.
  Answers particular to one view (409, 428, ...) are declared on that view with ``@extend_schema``.
- The security schemes of our own authentication classes (the session cookie is drf-spectacular's own).
- The description of devices/{id}/telemetry, whose answer is built from SQL rows without a serializer.

This module is loaded through DEFAULT_SCHEMA_CLASS (``@extend_schema`` imports that class when a view module is
imported), so the extensions below are registered before any operation is generated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_lib_doc_excludes
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, AllowAny

from rmm.api import CamelCaseFieldsMixin, CamelCaseModelSerializer, CamelCaseSerializer, ScopedViewSet
from rmm.errors import ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "`validation_error`: `fields` names each bad request field or query parameter (or `invalid_json`).",
    "401": "`not_authenticated` (no credentials) or `invalid_token` (unknown, expired or revoked token).",
    "403": "`permission_denied`: the object is in your reach but your role lacks the permission, or the write "
    "would move it out of your reach (nothing is saved).",
    "404": "`not_found`: no such object within your reach.",
    "429": "`too_many_attempts`: too many refused API tokens from this address (accounts/throttle.py); "
    "`Retry-After` gives the seconds to wait.",
}


def without_trailing_slash(endpoints):
    """Routes answer with and without a trailing slash (rmm.api.Router); the document names them without one,
    as the specs write them (a PREPROCESSING_HOOK)."""
    return [(path.rstrip("/"), regex, method, callback) for path, regex, method, callback in endpoints]


def lib_doc_excludes() -> list[type]:
    """Base classes whose docstrings speak to developers: never a description in the document (SPECTACULAR_SETTINGS
    GET_LIB_DOC_EXCLUDES)."""
    return [*get_lib_doc_excludes(), CamelCaseFieldsMixin, CamelCaseSerializer, CamelCaseModelSerializer, ScopedViewSet]


def error_answer(description: str, serializer=ErrorSerializer) -> OpenApiResponse:
    """An error answer particular to one view: ``@extend_schema(responses={409: error_answer("`role_in_use`: …")})``."""
    return OpenApiResponse(serializer, description=description)


class ApiSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers every operation can give (see the module docstring)."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for code in self._error_codes(operation):
            # A view's own declaration of the same status (login's 401, say) says more: keep it.
            responses.setdefault(code, self.error_response(ERROR_DESCRIPTIONS[code]))
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _get_request_body(self, direction="request"):
        """drf-spectacular documents a body for PUT, PATCH and POST only (OpenAPI 3.0 gives a DELETE body no
        meaning). A DELETE that declares one with ``@extend_schema(methods=["DELETE"], request=...)`` takes it
        (groups/{id}/devices reads {deviceIds}, as technician-api.md says): document it, or clients send none."""
        if self.method != "DELETE" or not self._declares_request():
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"

    def _declares_request(self) -> bool:
        """True when ``@extend_schema(request=...)`` names this method's request, not the view's own serializer."""

        def serializer_class(serializer):
            return serializer if isinstance(serializer, type) else type(serializer)

        declared = self.get_request_serializer()
        return declared is not None and serializer_class(declared) is not serializer_class(self._get_serializer())

    def _error_codes(self, operation: dict) -> list[str]:
        signed_in = not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions())
        codes = []
        if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])):
            codes.append("400")
        if signed_in:
            codes += ["401", "429"]
            # The access rules refuse an object in reach (ScopedViewSet.get_object) or a write; a session's
            # CSRF check refuses any write. A list is only ever narrowed, never refused.
            if self.method not in SAFE_METHODS or (isinstance(self.view, ScopedViewSet) and "{" in self.path):
                codes.append("403")
        if "{" in self.path:
            codes.append("404")
        return codes

    def error_response(self, description: str, serializer=ErrorSerializer) -> dict:
        component = self.resolve_serializer(serializer, "response")
        return {"description": description, "content": {"application/json": {"schema": component.ref}}}


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rmmu_…",
            "description": "A personal API token: `POST /api/v1/auth/login` or `POST /api/v1/api-tokens`.",
        }


class MfaSetupTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.auth.MfaSetupTokenAuthentication"
    name = "mfaSetupToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rmms_…",
            "description": "The short-lived `setupToken` of a 428 `mfa_enrollment_required` login answer; only the "
            "MFA set-up and enable endpoints accept it.",
        }


class DeviceTelemetrySchema(OpenApiViewExtension):
    """devices/{id}/telemetry: its points come straight from SQL (devices/services/telemetry.py), so there is no
    serializer to describe them; they are described here from the same metric lists."""

    target_class = "devices.api.telemetry.DeviceTelemetryViewSet"

    def view_replacement(self):
        from devices.api.telemetry import BUCKET_CHOICES
        from devices.services.telemetry import MAXED, METRICS

        point = inline_serializer(
            "TelemetryPoint",
            {
                "ts": serializers.DateTimeField(help_text="The sample's time, or the start of its bucket."),
                "samples": serializers.IntegerField(help_text="How many samples the point summarises."),
                **{name: serializers.FloatField(allow_null=True) for _, name in METRICS + MAXED},
            },
        )
        series = inline_serializer(
            "TelemetrySeries",
            {
                "deviceId": serializers.UUIDField(),
                "from": serializers.DateTimeField(),
                "to": serializers.DateTimeField(),
                "bucket": serializers.ChoiceField(choices=[b for b in BUCKET_CHOICES if b != "auto"]),
                "points": point.__class__(many=True, help_text="Oldest first."),
            },
        )
        moment = "ISO 8601 date and time"
        # The view class, resolved from target_class by drf-spectacular at run time.
        viewset: Any = self.target_class

        @extend_schema_view(
            retrieve=extend_schema(
                parameters=[
                    OpenApiParameter("from", OpenApiTypes.DATETIME, description=f"{moment}; default `to` - 24 h."),
                    OpenApiParameter("to", OpenApiTypes.DATETIME, description=f"{moment}; default now."),
                    OpenApiParameter(
                        "bucket",
                        str,
                        enum=list(BUCKET_CHOICES),
                        default="auto",
                        description="`auto` picks raw, 5-minute or hourly points: at most about 1,000.",
                    ),
                ],
                responses=series,
            )
        )
        class DeviceTelemetryViewSet(viewset):
            pass

        return DeviceTelemetryViewSet
