"""The one error shape of every API answer (agent-api.md, "Errors"):

    {"error": "stable_snake_case_code", "message": "For people.", "fields": {"field": ["problem", ...]}}

All three keys are always present; ``fields`` is ``{}`` except on a 400 that names request fields. DRF views get
it through ``exception_handler``; plain Django views (the agent hot path) through ``error_response``; malformed
requests, unknown URLs and crashes under ``/api/`` through ``handler400`` … ``handler500``; requests gunicorn itself
refuses (a request line too long, a header too large) through ``rmm.gunicorn_worker``.
"""

from __future__ import annotations

import posixpath
import re
import sys
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from rmm import domain_errors
from rmm.database.availability import is_database_unavailable
from rmm.names import camel


class ApiError(drf.APIException):
    """An error with its own status, code and message, raised from anywhere under a DRF view."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict | None = None,
        *,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(detail=message, code=code)
        self.status_code = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}
        self.extra = extra or {}  # more keys beside the three, e.g. the setupToken of a 428


# The shape as the OpenAPI document's ``Error`` component (rmm/openapi.py adds it to the operations it applies to).
# Answers are built by ``error_body``; this class only describes them, and its docstring is the component's text.
class ErrorSerializer(serializers.Serializer):
    """Every error answer has this shape; all three keys are always present."""

    error = serializers.CharField(help_text="A stable snake_case code, e.g. `not_found`, `validation_error`.")
    message = serializers.CharField(help_text="For people; may change wording at any time.")
    # Shadows Serializer.fields only in the type checker's eyes: DRF's metaclass takes declared fields out of the
    # class, so the answer's "fields" key is this field and Serializer.fields stays what DRF needs.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text='A request field → its problems, e.g. `{"networkInfo[3].ip": ["Enter a valid IP address."]}`; '
        "`{}` except on a 400 that names request fields.",
    )


# The one mapping of the domain's errors (rmm/domain_errors.py) to statuses; the first class that matches wins.
DOMAIN_ERROR_STATUS: dict[type[domain_errors.DomainError], int] = {
    domain_errors.Invalid: 400,
    domain_errors.Unauthenticated: 401,
    domain_errors.Refused: 403,
    domain_errors.LimitReached: 403,
    domain_errors.NotFound: 404,
    domain_errors.Conflict: 409,
    domain_errors.StepRequired: 428,
}


def domain_error_status(error: domain_errors.DomainError) -> int:
    """The status of ``error``'s answer under /api/ (a bare ``DomainError`` is a 400)."""
    return next((status for cls, status in DOMAIN_ERROR_STATUS.items() if isinstance(error, cls)), 400)


def api_error_from(error: domain_errors.DomainError) -> ApiError:
    """A domain error as the API answers it: its status, code, message and fields."""
    return ApiError(domain_error_status(error), error.code, error.message, error.fields, extra=error.extra)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": code, "message": message, "fields": fields or {}}


def error_response(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, fields), status=status)


class TooManyAttempts(Exception):
    """A throttle refused the attempt (``accounts.throttle``): 429 ``too_many_attempts``, with ``Retry-After``, the
    seconds until it may succeed. One code for every throttle: they all count failures, never plain requests."""

    code = "too_many_attempts"

    def __init__(self, retry_after: int, message: str | None = None):
        self.retry_after = retry_after
        self.message = message or f"Too many failed attempts; try again in {retry_after} seconds."
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def api_error(self) -> ApiError:
        return ApiError(429, self.code, self.message, headers=self.headers)

    def response(self) -> JsonResponse:
        """The answer of a plain Django view (the agent endpoints)."""
        response = error_response(429, self.code, self.message)
        response["Retry-After"] = str(self.retry_after)
        return response


def flatten_validation_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail → ``{"networkInfo[3].ip": ["Enter a valid IP address."]}`` with camelCase keys."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "nonFieldErrors" if key in {"non_field_errors", "__all__"} else camel(str(key))
            path = f"{prefix}.{name}" if prefix else name
            for sub_path, messages in flatten_validation_errors(value, path).items():
                fields.setdefault(sub_path, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            fields[prefix or "nonFieldErrors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:  # DRF puts {} for list items that were fine
                    for sub_path, messages in flatten_validation_errors(item, f"{prefix}[{index}]").items():
                        fields.setdefault(sub_path, []).extend(messages)
    else:
        fields[prefix or "nonFieldErrors"] = [str(detail)]
    return fields


_DEFAULT_CODES = {
    drf.ParseError: "invalid_json",
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "invalid_token",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "too_many_requests",
}


def exception_handler(exc, context) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error a DRF view raises becomes the shared shape."""
    if isinstance(exc, TooManyAttempts):
        exc = exc.api_error()
    elif isinstance(exc, domain_errors.DomainError):
        exc = api_error_from(exc)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: a real crash, left to handler500 and the logs

    if isinstance(exc, ApiError):
        response.data = {**error_body(exc.code, exc.message, exc.fields), **exc.extra}
        for name, value in exc.headers.items():
            response[name] = value
    elif isinstance(exc, drf.ValidationError):
        response.data = error_body(
            "validation_error", "The request has invalid fields.", flatten_validation_errors(exc.detail)
        )
    else:
        code = next((c for cls, c in _DEFAULT_CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else "error"
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(response.status_code).phrase
        if code == "not_found":
            detail = "Not found."
        response.data = error_body(code, str(detail))
    return response


_REPEATED_SLASHES = re.compile(r"/{2,}")


def is_api_path(path: str) -> bool:
    """Is this path under /api/, however it is written? ``//api//v1/devices`` and ``/x/../api/v1`` are: a client
    or proxy that doubles a slash still gets the API's error shape, not an HTML page. (Django has decoded
    percent-escapes already; the gunicorn worker passes the raw target through ``urllib.parse.unquote`` first.)"""
    normalised = posixpath.normpath(_REPEATED_SLASHES.sub("/", path or "/"))
    return normalised == "/api" or normalised.startswith("/api/")


def handler400(request, exception=None):
    # SuspiciousOperation (an unknown Host header, a malformed cookie …) lands here before any view runs.
    if is_api_path(request.path):
        return error_response(400, "bad_request", "The request is malformed.")
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler403(request, exception=None):
    if is_api_path(request.path):
        return error_response(403, "permission_denied", "You do not have permission to perform this action.")
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)


@csrf_exempt  # an API client sends no CSRF token: it must hear 404, not the CSRF failure page
def api_path_not_found(request, *args, **kwargs):
    """The view of every path under /api/ that no route serves (the last pattern of rmm/urls.py)."""
    return error_response(404, "not_found", "Not found.")


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: under /api/ the refusal is in the error shape; elsewhere (the admin) Django's page."""
    if is_api_path(request.path):
        return error_response(403, "permission_denied", "CSRF verification failed.")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return error_response(404, "not_found", "Not found.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


# Seconds a 503 asks the client to wait: a busy pool frees a connection within milliseconds, and the pool connects
# again within half a second of the database's return (rmm/database/pool.py).
RETRY_AFTER_SECONDS = 2


def handler500(request):
    # The one place where "the database is unavailable" (refused, lost, no pooled connection in time) becomes 503
    # for every view under /api/, DRF and plain alike: DRF leaves database errors to Django, which calls this
    # inside its `except`, so the exception is still the one being handled.
    if is_api_path(request.path):
        if is_database_unavailable(sys.exc_info()[1]):
            response = error_response(
                503, "service_unavailable", "The database is unavailable right now; try again shortly."
            )
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return error_response(500, "server_error", "The server failed to answer; the error has been logged.")
    from django.views.defaults import server_error

    return server_error(request)
