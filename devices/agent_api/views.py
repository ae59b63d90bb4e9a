"""The agent endpoints under /api/v1/agents/ (agent-api.md).

Enrollment, configuration, token rotation and the command claim and result are DRF views on ``AgentView``: JSON
only, bodies read by ``schemas``, the token checked by ``AgentTokenAuthentication``, every refusal in the shared
error shape. The heartbeat and the inventory uploads are plain Django views on the same schemas and authentication
code, because the same heartbeat through an ``AgentView`` measured 57-76 µs more worker CPU per request (median of
40 interleaved rounds), 12-16 % of the ~475 µs a heartbeat costs, where 5 % was the limit (bench/RESULTS.md,
"Issue 11: DRF for the agent API"; bench/agent_view_overhead.py).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid

from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.agent_api import schemas, sql
from devices.agent_api.authentication import (
    OK,
    AgentTokenAuthentication,
    authenticate,
    presented_certificate,
    presented_token_hash,
    refusal,
    refusal_answer,
)
from devices.agent_api.delivery import commands_answer
from devices.agent_api.errors import AgentError
from devices.agent_api.group_commit import WriterUnavailable
from devices.agent_api.heartbeat import commands_held, read_heartbeat, write_heartbeat
from devices.services import commands, enrollment, ingest
from rmm.domain_errors import DomainError
from rmm.errors import TooManyAttempts, domain_error_status
from rmm.net import client_ip
from rmm.openapi import agent_operation

logger = logging.getLogger("devices.agent_api")


def _unavailable() -> JsonResponse:
    return AgentError(503, "service_unavailable", "The server could not store this now; try again shortly.").response()


# ---- the DRF views ----------------------------------------------------------------------------------------------


class JsonOnly(BaseContentNegotiation):
    """No negotiation: agents send and receive JSON, whatever their Accept header says."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AgentView(APIView):
    """The base of the agent's DRF views: JSON only (no browsable API, no content negotiation), the agent token
    (``AgentTokenAuthentication``; ``request.user`` is the device's ``AgentIdentity``), CSRF exempt (bearer tokens,
    no cookies), and every answer other than success in the shared error shape (``rmm.errors``).

    Bodies are read from the raw bytes by ``schemas.read_json_object`` (``request.data`` and DRF's parsers are never
    used), which refuses what PostgreSQL could not store before anything is parsed into a schema. A wrong method is
    answered 405 before the token is looked at, and an agent id no device can have 401 without a lookup.
    """

    authentication_classes = [AgentTokenAuthentication]
    permission_classes: list = []
    throttle_classes: list = []  # refused tokens are counted per address instead (refusal_answer)
    # Never run (bodies are read by schemas.read_json_object); it tells the OpenAPI document the bodies are JSON.
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly
    versioning_class = None

    @property
    def allowed_methods(self) -> list[str]:
        # Neither OPTIONS (no metadata to offer) nor the HEAD Django derives from GET: a HEAD of GET .../commands
        # would claim commands into an answer without a body.
        return [m.upper() for m in self.http_method_names if m not in ("options", "head") and hasattr(self, m)]

    def initial(self, request, *args, **kwargs):
        if request.method not in self.allowed_methods:
            raise MethodNotAllowed(request.method)
        agent_id = kwargs.get("agent_id")
        if agent_id is not None and not schemas.agent_id_is_well_formed(agent_id):
            raise refusal("invalid_token")  # no device has it: like an unknown agent, without a query
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, DomainError):  # a service said no: its status, in the agent's answer (401 names Bearer)
            exc = AgentError(domain_error_status(exc), exc.code, exc.message, exc.fields)
        if isinstance(exc, AgentError):
            return refusal_answer(self.request, exc)  # refused tokens are counted per address: 429 past the limit
        if isinstance(exc, WriterUnavailable):
            return _unavailable()
        return super().handle_exception(exc)  # TooManyAttempts, MethodNotAllowed …: rmm.errors.exception_handler


class EnrollView(AgentView):
    """POST /enroll → 201 {agentId, deviceId, authToken, orgId, siteId, config}."""

    authentication_classes: list = []

    @agent_operation(
        "Enroll with an enrollment key",
        request=schemas.Enrollment,
        responses={201: schemas.EnrollmentAnswer},
        errors=(400, 401, 403, 413, 429),
        path=(),
    )
    def post(self, request):
        body = schemas.validate(schemas.Enrollment, schemas.read_json_object(request))
        facts = enrollment.EnrollFacts(
            hostname=body.hostname,
            os_type=body.os_type,
            os_version=body.os_version,
            os_build=body.os_build,
            architecture=body.architecture,
            agent_version=body.agent_version,
            hardware=body.hardware_info,
            interfaces=[interface.adapter() for interface in body.network_info],
        )
        result = enrollment.enroll_device(key=body.enrollment_key, facts=facts, ip=client_ip(request))
        device = result.device
        return Response(
            {
                "agentId": device.agent_id,
                "deviceId": str(device.pk),
                "authToken": result.token,
                "orgId": str(device.org_id),
                "siteId": str(device.site_id),
                "config": enrollment.agent_config(),
            },
            status=201,
        )


class ClaimCommandsView(AgentView):
    """GET /{agentId}/commands → {commands}: claims like the heartbeat does."""

    @agent_operation("Claim the commands waiting", responses={200: schemas.CommandsAnswer}, errors=(401, 403, 429))
    def get(self, request, agent_id: str):
        identity = request.user
        now = timezone.now()
        # One statement: atomic (and committed) on its own. Nothing is claimed inside a maintenance window that
        # suppresses commands (the commands stay pending).
        held = commands_held([identity], now=now)
        claimed = [] if held else sql.claim_commands(sql.raw_cursor(), device_id=identity.device_id, now=now)
        answer = {
            "commands": [
                {"id": str(id_), "type": type_, "payload": json.loads(payload)} for id_, type_, payload in claimed
            ]
        }
        return commands_answer(request, answer, device_id=identity.device_id, sent_at=now, agent_id=agent_id)


class CommandResultView(AgentView):
    """POST /{agentId}/commands/{commandId}/result → 200 {id, status}; idempotent."""

    @agent_operation(
        "Report a command's result",
        request=schemas.CommandResult,
        responses={200: schemas.CommandResultAnswer},
        errors=(400, 401, 403, 404, 409, 413, 429),
        path=("agent_id", "command_id"),
    )
    def post(self, request, agent_id: str, command_id: str):
        body = schemas.validate(schemas.CommandResult, schemas.read_json_object(request))
        try:
            command_uuid = uuid.UUID(command_id)
        except ValueError:
            raise commands.CommandNotFound from None
        recorded = commands.record_result(  # CommandNotFound (404), CommandAlreadyFinished (409)
            device_id=request.user.device_id, command_id=command_uuid, status=body.status, result=body.result()
        )
        return Response({"id": str(recorded.command_id), "status": recorded.status})


class RotateTokenView(AgentView):
    """POST /{agentId}/rotate-token → {authToken}; the old token works 5 more minutes."""

    @agent_operation("Rotate the agent's token", responses={200: schemas.TokenAnswer}, errors=(401, 403, 429))
    def post(self, request, agent_id: str):
        identity = request.user
        token = enrollment.rotate_agent_token(
            device_id=identity.device_id,
            org_id=identity.org_id,
            presented_token_hash=presented_token_hash(request),
            ip=client_ip(request),
        )
        return Response({"authToken": token})


class ConfigView(AgentView):
    """GET /{agentId}/config → the configuration object of the enrollment answer."""

    @agent_operation("The agent's configuration", responses={200: schemas.Configuration}, errors=(401, 403, 429))
    def get(self, request, agent_id: str):
        return Response(enrollment.agent_config())


enroll = EnrollView.as_view()
claim_commands = ClaimCommandsView.as_view()
command_result = CommandResultView.as_view()
rotate_token = RotateTokenView.as_view()
config = ConfigView.as_view()


# ---- the plain views: the heartbeat and the inventory uploads ---------------------------------------------------


def plain_agent_endpoint(*methods: str):
    """A plain Django view of the agent protocol that answers as ``AgentView`` does: CSRF-exempt, methods checked
    first, an impossible agent id refused without a lookup, refusals in the shared error shape."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = AgentError(
                    405, "method_not_allowed", f"Use {' or '.join(methods)} for this endpoint."
                ).response()
                response["Allow"] = ", ".join(methods)
                return response
            try:
                agent_id = kwargs.get("agent_id")
                if agent_id is not None and not schemas.agent_id_is_well_formed(agent_id):
                    raise refusal("invalid_token")
                return view(request, *args, **kwargs)
            except AgentError as error:
                return refusal_answer(request, error)
            except TooManyAttempts as refused:
                return refused.response()
            except WriterUnavailable:
                return _unavailable()
            # A database that is unavailable is answered 503 by rmm.errors.handler500.

        return wrapper

    return decorate


@plain_agent_endpoint("POST")
def heartbeat(request, agent_id: str):
    """POST /{agentId}/heartbeat → 200 {commands, configUpdate, rotateToken}; written by group commit.

    A plain view, not an ``AgentView``: DRF's cycle would add 57-76 µs of CPU to each heartbeat (module docstring).
    """
    token_hash = presented_token_hash(request)
    if token_hash is None:
        raise refusal("invalid_token")
    try:
        job = read_heartbeat(
            schemas.read_json_object(request),
            agent_id=agent_id,
            token_hash=token_hash,
            certificate=presented_certificate(request),
            ip=client_ip(request),
            now=timezone.now(),
        )
    except AgentError:
        authenticate(request, agent_id)  # someone who may not call at all hears that rather than a 400
        raise
    write_heartbeat(job)
    if job.verdict == "busy":
        raise WriterUnavailable("the device kept changing under its heartbeat")
    if job.verdict != OK or job.identity is None:  # an OK job always has its identity
        raise refusal(job.verdict)
    answer = {"commands": job.commands, "configUpdate": None, "rotateToken": job.rotate_token}
    return commands_answer(request, answer, device_id=job.identity.device_id, sent_at=job.claimed_at, agent_id=agent_id)


@plain_agent_endpoint("PUT")
def inventory(request, agent_id: str, kind: str):
    """PUT /{agentId}/{kind} → 204; replaces the device's rows of that kind. Plain, like the heartbeat: uploads
    arrive from every agent after each inventory scan, on the same workers."""
    if kind not in schemas.INVENTORY_KINDS:
        raise AgentError(404, "not_found", "Not found.")
    identity = authenticate(request, agent_id)
    now = timezone.now()
    if kind == "hardware":
        hardware = schemas.validate(schemas.Hardware, schemas.read_json_object(request))
        ingest.upsert_hardware(device_id=identity.device_id, org_id=identity.org_id, hardware=hardware, now=now)
        return HttpResponse(status=204)
    # Most uploads repeat the last one byte for byte: those are answered after one read (ingest's docstring).
    digest = ingest.upload_digest(kind, schemas.read_body(request))
    if ingest.upload_is_stored(device_id=identity.device_id, kind=kind, digest=digest):
        return HttpResponse(status=204)
    items = schemas.read_inventory_items(kind, schemas.read_json_object(request))
    ingest.replace_inventory(
        device_id=identity.device_id,
        org_id=identity.org_id,
        kind=kind,
        rows=ingest.inventory_rows(kind, items),
        now=now,
        digest=digest,
    )
    return HttpResponse(status=204)


@plain_agent_endpoint("GET", "POST", "PUT", "PATCH", "DELETE")
def unknown(request, **kwargs):
    raise AgentError(404, "not_found", "Not found.")
