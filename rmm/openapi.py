"""What the OpenAPI document (drf-spectacular, /api/schema/) needs beyond the views' own annotations.

- ``ApiSchema``, DRF's DEFAULT_SCHEMA_CLASS: every operation also lists the error answers that apply to it, in the
  one error shape (``rmm.errors.ErrorSerializer``), decided here once instead of on every view:
  400 when it takes a body or query parameters, 401 and 429 (refused tokens) when it needs a signed-in user, 403
  when the access rules (ScopedViewSet) or the session's CSRF check can refuse it, 404 when its path names an
  object.
  Answers particular to one view (409, 428, ...) are declared on that view with ``@extend_schema``.
- The security schemes of our own authentication classes (the session cookie is drf-spectacular's own).
- The description of devices/{id}/telemetry, whose answer is built from SQL rows without a serializer.
- The agent protocol (tag ``agent``), from its pydantic schemas: see "the agent protocol" below.

This module is loaded through DEFAULT_SCHEMA_CLASS (``@extend_schema`` imports that class when a view module is
imported), so the extensions below are registered before any operation is generated.
"""

from __future__ import annotations

import sys
from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiViewExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, get_lib_doc_excludes
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from pydantic.json_schema import GenerateJsonSchema
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


# --- the agent protocol (tag "agent") ------------------------------------------------------------------------------
# Its request bodies and answers are pydantic models (devices/agent_api/schemas.py); their JSON Schema becomes
# components named Agent…, in OpenAPI 3.0's dialect. The DRF agent views are described by ``agent_operation`` on the
# view; the heartbeat and the inventory uploads, plain Django views the generator does not see, by ``agent_hot_path``.

AGENT_TAG = "agent"
AGENT_ERRORS = {
    400: "`validation_error`: `fields` names each bad field by its path as the agent wrote it (`metrics.cpuPercent`, "
    "`software[12].name`); or `invalid_json`.",
    401: "`invalid_token`: the token is missing, malformed or not this agent's (`WWW-Authenticate: Bearer`).",
    403: "`tenant_inactive`, `device_quarantined`, `device_decommissioned` or `mtls_required`.",
    404: "`not_found`, or `command_not_found`: this agent has no such command.",
    409: "`command_already_finished`: a different result was recorded before.",
    413: "`payload_too_large`, or `too_many_items`: a list over its limit. Nothing was stored.",
    429: "`too_many_attempts`: too many refused tokens (or enrollment keys) from this address; `Retry-After` gives "
    "the seconds to wait.",
    503: "`service_unavailable`: nothing was stored; send it again shortly.",
}
ENROLLMENT_ERRORS = {
    401: "`enrollment_key_not_found`, `enrollment_key_revoked`, `enrollment_key_expired` or "
    "`enrollment_key_exhausted`.",
    403: "`tenant_inactive`, or a device limit reached (`device_limit_reached`).",
}


def oas30(node, definitions: dict):
    """A JSON Schema as pydantic writes it (draft 2020-12) in OpenAPI 3.0's dialect: ``nullable`` instead of a
    ``null`` type, ``enum`` instead of ``const``, one ``example``, ``anyOf`` instead of a list of types.

    A nullable reference to another model is written out in place (``definitions``: pydantic's ``$defs``):
    OpenAPI 3.0 validators refuse null through ``allOf: [$ref]`` whatever ``nullable`` says beside it."""
    if isinstance(node, list):
        return [oas30(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: oas30(value, definitions) for key, value in node.items()}
    options = node.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in node.pop("anyOf") if option != {"type": "null"}]
        if len(rest) > 1:
            node["anyOf"] = rest
        elif "$ref" in rest[0]:
            name = rest[0]["$ref"].rsplit("/", 1)[-1].removeprefix("Agent")
            node = {**oas30(definitions[name], definitions), **node}
        else:
            node = {**rest[0], **node}
        node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "examples" in node:
        node["example"] = node.pop("examples")[0]
    if isinstance(node.get("type"), list):
        node["anyOf"] = [{"type": kind} for kind in node.pop("type")]
    return node


class _WithoutFieldTitles(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every field ("Agentversion"): the field's name says it."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


def agent_component(model, direction: str, register) -> tuple[str, dict]:
    """``model``'s component name and schema; ``register(name, schema)`` is called for each model it refers to."""
    mode = "validation" if direction == "request" else "serialization"
    schema = model.model_json_schema(
        ref_template="#/components/schemas/Agent{model}", mode=mode, schema_generator=_WithoutFieldTitles
    )
    definitions = schema.pop("$defs", {})
    for name, definition in definitions.items():
        register(f"Agent{name}", oas30(definition, definitions))
    return f"Agent{model.__name__}", oas30(schema, definitions)


class AgentBodyExtension(OpenApiSerializerExtension):
    """The agent's pydantic models in ``@extend_schema(request=…, responses=…)``: preferred to drf-spectacular's own
    pydantic extension, which writes JSON Schema 2020-12 (``"type": "null"``) into an OpenAPI 3.0 document."""

    target_class = "pydantic.BaseModel"
    match_subclasses = True
    priority = 1

    def get_name(self, auto_schema, direction):
        return f"Agent{self.target.__name__}"

    def map_serializer(self, auto_schema, direction):
        module = sys.modules[self.target.__module__]

        def register(name, schema):
            # The model itself as the component's identity, as drf-spectacular registers the entry model.
            model = getattr(module, name.removeprefix("Agent"), name)
            component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=model, schema=schema)
            auto_schema.registry.register_on_missing(component)

        return agent_component(self.target, direction, register)[1]


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "devices.agent_api.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rmm_…",
            "description": "The agent's token, from the enrollment answer or `rotate-token`.",
        }


def _agent_errors(codes, overrides=None) -> dict:
    descriptions = {**AGENT_ERRORS, **(overrides or {})}
    return {code: error_answer(descriptions[code]) for code in codes}


def agent_operation(summary: str, *, request=None, responses: dict, errors=(400, 401, 403, 429), path=("agent_id",)):
    """``@extend_schema`` for a DRF view of the agent protocol: its tag, path parameters and error answers."""
    overrides = ENROLLMENT_ERRORS if not path else None
    return extend_schema(
        tags=[AGENT_TAG],
        summary=summary,
        request=request,
        responses={**responses, **_agent_errors(errors, overrides)},
        parameters=[OpenApiParameter(name, str, OpenApiParameter.PATH) for name in path],
    )


def agent_hot_path(result, generator, request, public):
    """A POSTPROCESSING_HOOK: the heartbeat and the inventory uploads, plain Django views (devices/agent_api/views.py
    says why), described from the same schemas as the DRF agent views."""
    from devices.agent_api import schemas

    components = result.setdefault("components", {})
    registered = components.setdefault("schemas", {})

    def ref(model, direction: str) -> dict:
        name, schema = agent_component(model, direction, registered.setdefault)
        registered.setdefault(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def error(code: int) -> dict:
        return {"description": AGENT_ERRORS[code], "content": {"application/json": {"schema": ERROR_REF}}}

    def operation(operation_id: str, summary: str, body: dict, answers: dict, errors) -> dict:
        return {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [{"in": "path", "name": "agent_id", "schema": {"type": "string"}, "required": True}],
            "tags": [AGENT_TAG],
            "requestBody": {"content": {"application/json": {"schema": body}}, "required": True},
            "security": [{"agentToken": []}],
            "responses": {**answers, **{str(code): error(code) for code in errors}},
        }

    paths = result.setdefault("paths", {})
    paths["/api/v1/agents/{agent_id}/heartbeat"] = {
        "post": operation(
            "agents_heartbeat_create",
            "Check in: metrics, facts, and the commands waiting",
            ref(schemas.Heartbeat, "request"),
            {
                "200": {
                    "description": "",
                    "content": {"application/json": {"schema": ref(schemas.HeartbeatAnswer, "response")}},
                }
            },
            (400, 401, 403, 413, 429, 503),
        )
    }
    uploads = {"hardware": schemas.Hardware} | {kind: upload.body for kind, upload in schemas.INVENTORY_LISTS.items()}
    for kind, model in uploads.items():
        paths[f"/api/v1/agents/{{agent_id}}/{kind}"] = {
            "put": operation(
                f"agents_{kind.replace('-', '_')}_update",
                f"Replace the device's {kind} inventory",
                ref(model, "request"),
                {"204": {"description": "Stored: the device's rows of this kind are the ones sent."}},
                (400, 401, 403, 413, 429),
            )
        }
    result["paths"] = dict(sorted(paths.items()))
    return result


ERROR_REF = {"$ref": "#/components/schemas/Error"}
