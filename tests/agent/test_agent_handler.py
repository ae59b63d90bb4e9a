"""The agents' requests go through ``rmm.wsgi.AgentHandler``, Django's handler with only the middleware that acts on
them (``settings.AGENT_MIDDLEWARE``). What an agent receives must not differ from what the whole stack would answer:
the same status, body and headers, the same host check and HTTPS redirect."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings

from rmm import wsgi

pytestmark = pytest.mark.django_db(transaction=True)  # the handlers close connections as a server does

MALFORMED = {"HTTP_AUTHORIZATION": "Bearer rmm_" + "0" * 64}


def call(application, path: str, *, method: str = "POST", body: bytes = b"{}", **extra) -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        **extra,
    }
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    chunks = application(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


AGENT_PATHS = [
    ("POST", "/api/v1/agents/" + "a" * 64 + "/heartbeat"),
    ("GET", "/api/v1/agents/" + "a" * 64 + "/config"),
    ("POST", "/api/v1/agents/enroll"),
    ("GET", "/api/v1/agents/nothing/here/at/all"),
]


@pytest.mark.parametrize(("method", "path"), AGENT_PATHS)
def test_an_agent_gets_what_the_whole_stack_would_answer(method, path):
    ours = call(wsgi.application, path, method=method, **MALFORMED)
    whole = call(wsgi.django_application, path, method=method, **MALFORMED)
    assert ours == whole
    status, headers, _ = ours
    assert status.split()[0] in {"400", "401", "404"}
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin" and headers["Content-Type"] == "application/json"


def test_an_unknown_host_is_refused_for_agents_as_for_everyone():
    path = "/api/v1/agents/" + "a" * 64 + "/heartbeat"
    status, _, body = call(wsgi.application, path, HTTP_HOST="evil.example", **MALFORMED)
    assert status.startswith("400") and json.loads(body)["error"] == "bad_request"
    assert call(wsgi.django_application, path, HTTP_HOST="evil.example", **MALFORMED)[0] == status


def test_behind_a_tls_proxy_an_agent_on_plain_http_is_redirected(settings):
    settings.SECURE_SSL_REDIRECT = True
    path = "/api/v1/agents/" + "a" * 64 + "/heartbeat"
    agents = wsgi.AgentHandler()  # middleware is read when a handler is made
    status, headers, _ = call(agents, path, **MALFORMED)
    assert status.startswith("301") and headers["Location"] == f"https://127.0.0.1{path}"


def test_other_paths_keep_the_whole_stack():
    status, headers, _ = call(wsgi.application, "/admin/login/", method="GET")
    assert status.startswith("200") and "Content-Security-Policy" in headers  # rmm.csp, not in AGENT_MIDDLEWARE


def test_the_agents_middleware_is_a_part_of_everyones_in_the_same_order():
    assert [m for m in settings.MIDDLEWARE if m in settings.AGENT_MIDDLEWARE] == settings.AGENT_MIDDLEWARE
    assert wsgi.AGENT_PATH_PREFIX == "/api/v1/agents/"
