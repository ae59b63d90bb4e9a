"""The WSGI entry point: ``gunicorn -c rmm/gunicorn.conf.py rmm.wsgi``.

Django reads a request body only up to its ``Content-Length``; a body sent with ``Transfer-Encoding: chunked`` has
none, so Django sees it as empty (a chunked agent upload or API write would be refused as "no body"). gunicorn
decodes the chunks and says so with ``wsgi.input_terminated``: such a body is read here, up to
DATA_UPLOAD_MAX_MEMORY_SIZE (what Django would accept with a length), and handed to Django with its length. A larger
one is answered 413 in the error shape before Django runs.

A missing or wrong setting stops the process with one line on stderr (``rmm.env.one_line``), not a traceback;
under our gunicorn configuration the master has already refused to start with that line (rmm/static_check.py).
"""

from __future__ import annotations

import io
import json
import os
import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

from rmm.env import one_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

# gunicorn's arbiter stops (rather than starting the worker again and again) when a worker exits with this status.
WORKER_BOOT_ERROR = 3


class AgentHandler(WSGIHandler):
    """Django's WSGI handler for the agents' requests (``/api/v1/agents/…``), with only the middleware that acts on
    them: ``settings.AGENT_MIDDLEWARE``, the security headers and the host check. The others do nothing for an agent
    call (sessions, CSRF and users: agents send a bearer token to csrf-exempt views; messages; static files; the CSP
    of HTML pages) yet each cost every heartbeat its layer: measured in bench/RESULTS.md (issue 13)."""

    def load_middleware(self, is_async: bool = False) -> None:
        everyone = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.AGENT_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everyone


AGENT_PATH_PREFIX = "/api/v1/agents/"

try:
    django_application = get_wsgi_application()
    agent_application = AgentHandler()
except ImproperlyConfigured as error:
    print(one_line(error), file=sys.stderr, flush=True)
    raise SystemExit(WORKER_BOOT_ERROR) from None


def _is_unsized_chunked(environ) -> bool:
    return (
        not environ.get("CONTENT_LENGTH")
        and bool(environ.get("wsgi.input_terminated"))
        and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    )


def _too_large(start_response):
    from rmm.errors import error_body

    body = json.dumps(error_body("payload_too_large", "The request body is too large.")).encode()
    start_response("413 Content Too Large", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    if _is_unsized_chunked(environ):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = environ["wsgi.input"].read(limit + 1) if limit is not None else environ["wsgi.input"].read()
        if limit is not None and len(body) > limit:
            return _too_large(start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    if environ.get("PATH_INFO", "").startswith(AGENT_PATH_PREFIX):
        return agent_application(environ, start_response)
    return django_application(environ, start_response)
