"""The agent endpoints under /api/v1/agents/ (agent-api.md), as plain Django views.

No DRF here: its request/response machinery and serializers cost more than the heartbeat's own work
(``devices.agent_api.sql`` has the measurements). Every answer other than success is the shared error shape.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid

from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from devices.agent_api import sql
from devices.agent_api.auth import (
    OK,
    authenticate,
    presented_certificate,
    presented_token_hash,
    refusal,
    refusal_answer,
)
from devices.agent_api.bodies import (
    INVENTORY_KINDS,
    read_command_result,
    read_enrollment,
    read_hardware,
    read_inventory,
)
from devices.agent_api.delivery import commands_answer
from devices.agent_api.errors import AgentError
from devices.agent_api.group_commit import WriterUnavailable
from devices.agent_api.heartbeat import read_heartbeat, write_heartbeat
from devices.agent_api.validation import agent_id_is_well_formed, read_json_object
from devices.services import commands, enrollment, ingest
from rmm.errors import TooManyAttempts
from rmm.net import client_ip

logger = logging.getLogger("devices.agent_api")


def agent_endpoint(*methods: str):
    """A view of the agent protocol: CSRF-exempt (bearer tokens, no cookies), methods checked, refusals in the
    shared error shape."""

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
                if agent_id is not None and not agent_id_is_well_formed(agent_id):
                    raise refusal("invalid_token")  # no device has it: like an unknown agent, without a query
                return view(request, *args, **kwargs)
            except AgentError as error:
                return refusal_answer(request, error)  # refused tokens are counted per address: 429 past the limit
            except TooManyAttempts as refused:  # refused enrollment keys past the address's limit
                return refused.response()
            except WriterUnavailable:
                return AgentError(
                    503, "service_unavailable", "The server could not store this now; try again shortly."
                ).response()
            # Database connections come from the process's bounded pool and go back to it when the request ends
            # (rmm/database/); a database that is unavailable is answered 503 by rmm.errors.handler500.

        return wrapper

    return decorate


@agent_endpoint("POST")
def enroll(request):
    """POST /enroll → 201 {agentId, deviceId, authToken, orgId, siteId, config}."""
    key, facts = read_enrollment(read_json_object(request))
    try:
        result = enrollment.enroll_device(key=key, facts=facts, ip=client_ip(request))
    except enrollment.EnrollmentRefused as refused:
        raise AgentError(refused.status, refused.code, refused.message) from None
    device = result.device
    return JsonResponse(
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


@agent_endpoint("POST")
def heartbeat(request, agent_id: str):
    """POST /{agentId}/heartbeat → 200 {commands, configUpdate, rotateToken}; written by group commit."""
    token_hash = presented_token_hash(request)
    if token_hash is None:
        raise refusal("invalid_token")
    try:
        job = read_heartbeat(
            read_json_object(request),
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
    if job.verdict != OK:
        raise refusal(job.verdict)
    answer = {"commands": job.commands, "configUpdate": None, "rotateToken": job.rotate_token}
    return commands_answer(request, answer, device_id=job.identity.device_id, sent_at=job.claimed_at, agent_id=agent_id)


@agent_endpoint("PUT")
def inventory(request, agent_id: str, kind: str):
    """PUT /{agentId}/{kind} → 204; replaces the device's rows of that kind."""
    if kind not in INVENTORY_KINDS:
        raise AgentError(404, "not_found", "Not found.")
    identity = authenticate(request, agent_id)
    body = read_json_object(request)
    now = timezone.now()
    if kind == "hardware":
        hardware = read_hardware(body)
        ingest.upsert_hardware(device_id=identity.device_id, org_id=identity.org_id, hardware=hardware, now=now)
    else:
        rows = read_inventory(kind, body)
        ingest.replace_inventory(device_id=identity.device_id, org_id=identity.org_id, kind=kind, rows=rows, now=now)
    return HttpResponse(status=204)


@agent_endpoint("GET")
def claim_commands(request, agent_id: str):
    """GET /{agentId}/commands → {commands}: claims like the heartbeat does."""
    identity = authenticate(request, agent_id)
    now = timezone.now()
    # One statement: atomic (and committed) on its own.
    claimed = sql.claim_commands(sql.raw_cursor(), device_id=identity.device_id, now=now)
    answer = {
        "commands": [{"id": str(id_), "type": type_, "payload": json.loads(payload)} for id_, type_, payload in claimed]
    }
    return commands_answer(request, answer, device_id=identity.device_id, sent_at=now, agent_id=agent_id)


@agent_endpoint("POST")
def command_result(request, agent_id: str, command_id: str):
    """POST /{agentId}/commands/{commandId}/result → 200 {id, status}; idempotent."""
    identity = authenticate(request, agent_id)
    status, result = read_command_result(read_json_object(request))
    not_found = AgentError(404, "command_not_found", "This agent has no such command.")
    try:
        command_uuid = uuid.UUID(command_id)
    except ValueError:
        raise not_found from None
    try:
        recorded = commands.record_result(
            device_id=identity.device_id, command_id=command_uuid, status=status, result=result
        )
    except commands.CommandNotFound:
        raise not_found from None
    except commands.CommandAlreadyFinished as finished:
        raise AgentError(
            409, "command_already_finished", f"This command already finished with status {finished.args[0]}."
        ) from None
    return JsonResponse({"id": str(recorded.command_id), "status": recorded.status})


@agent_endpoint("POST")
def rotate_token(request, agent_id: str):
    """POST /{agentId}/rotate-token → {authToken}; the old token works 5 more minutes."""
    identity = authenticate(request, agent_id)
    token = enrollment.rotate_agent_token(device_id=identity.device_id, org_id=identity.org_id, ip=client_ip(request))
    return JsonResponse({"authToken": token})


@agent_endpoint("GET")
def config(request, agent_id: str):
    """GET /{agentId}/config → the configuration object of the enrollment answer."""
    authenticate(request, agent_id)
    return JsonResponse(enrollment.agent_config())


@agent_endpoint("GET", "POST", "PUT", "PATCH", "DELETE")
def unknown(request, **kwargs):
    raise AgentError(404, "not_found", "Not found.")
