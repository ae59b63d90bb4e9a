"""The wire client (rmm_agent.client) against a real local HTTP(S) server answering like the RMM server does."""

from __future__ import annotations

import socket
import time
import traceback
from email.utils import formatdate

import pytest
from standin import StandInServer, closed_port, tls_server_context

from rmm_agent import __version__
from rmm_agent.client import Client, ServerError, Unreachable, parse_retry_after

TOKEN = "rmm_" + "5e" * 32
AGENT_ID = "0b7c6f7e-5d6a-4f49-9c0e-2d9f0f3f6a10"
COMMAND_ID = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"


@pytest.fixture
def server():
    with StandInServer() as stand_in:
        yield stand_in


@pytest.fixture
def client(server):
    client = Client(f"http://127.0.0.1:{server.port}/", token=TOKEN, timeout=5)
    yield client
    client.close()


def formatted(error: BaseException) -> str:
    """The exception as a traceback prints it, chained exceptions included."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": code, "message": message, "fields": fields or {}}


# the endpoints ----------------------------------------------------------------------------------------------------


def test_enroll_posts_the_body_without_a_token_and_returns_the_201_answer(server, client):
    answer = {
        "agentId": AGENT_ID,
        "deviceId": "d" * 8,
        "authToken": TOKEN,
        "orgId": "o",
        "siteId": "s",
        "config": {"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30},
    }
    server.route("POST", "/api/v1/agents/enroll", 201, answer)
    client.token = None

    assert client.enroll({"enrollmentKey": "k", "hostname": "héte"}) == answer

    (request,) = server.requests
    assert request.body == {"enrollmentKey": "k", "hostname": "héte"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"rmm-agent/{__version__}"
    assert "Authorization" not in request.headers


def test_heartbeat_sends_the_bearer_token_and_returns_the_commands(server, client):
    answer = {
        "commands": [{"id": COMMAND_ID, "type": "script", "payload": {"language": "bash", "content": "echo hi"}}],
        "configUpdate": None,
        "rotateToken": False,
    }
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/heartbeat", 200, answer)

    assert client.heartbeat(AGENT_ID, {"agentVersion": __version__, "status": "ok"}) == answer

    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.body == {"agentVersion": __version__, "status": "ok"}


def test_a_changed_token_is_sent_on_the_next_request(server, client):
    server.route("GET", f"/api/v1/agents/{AGENT_ID}/config", 200, {"heartbeatIntervalSeconds": 60})
    client.token = "rmm_" + "77" * 32

    client.config(AGENT_ID)

    assert server.requests[0].headers["Authorization"] == "Bearer rmm_" + "77" * 32


def test_put_inventory_post_result_rotate_config_and_claim(server, client):
    server.route("PUT", f"/api/v1/agents/{AGENT_ID}/disks", 204)
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/commands/{COMMAND_ID}/result", 200, {"id": COMMAND_ID})
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/rotate-token", 200, {"authToken": "rmm_" + "99" * 32})
    server.route("GET", f"/api/v1/agents/{AGENT_ID}/config", 200, {"heartbeatIntervalSeconds": 30})
    server.route("GET", f"/api/v1/agents/{AGENT_ID}/commands", 200, {"commands": [{"id": COMMAND_ID}]})

    assert client.put_inventory(AGENT_ID, "disks", {"disks": []}) is None
    assert client.post_result(AGENT_ID, COMMAND_ID, {"status": "completed", "exitCode": 0}) is None
    assert client.rotate_token(AGENT_ID) == "rmm_" + "99" * 32
    assert client.config(AGENT_ID) == {"heartbeatIntervalSeconds": 30}
    assert client.claim_commands(AGENT_ID) == [{"id": COMMAND_ID}]

    assert [(r.method, r.path) for r in server.requests] == list(server.routes)
    assert server.requests[0].body == {"disks": []}


def test_path_segments_are_escaped(server, client):
    with pytest.raises(ServerError):
        client.put_inventory("../enroll", "x?y", {})

    assert server.requests[0].path == "/api/v1/agents/..%2Fenroll/x%3Fy"


def test_two_calls_share_one_tcp_connection(server, client):
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/heartbeat", 200, {"commands": []})

    client.heartbeat(AGENT_ID, {"agentVersion": "1"})
    client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert len(server.requests) == 2
    assert server.connections == 1


# errors -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("skew", "offset"), [(0, 0), (1, 0), (-90, -90), (7200, 7200)])
def test_the_servers_clock_is_read_from_the_date_of_its_answers(server, client, skew, offset):
    server.clock_skew = skew
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/heartbeat", 503, error_body("service_unavailable", "busy"))

    with pytest.raises(ServerError):  # an error answer tells the time too
        client.heartbeat(AGENT_ID, {"agentVersion": "0.1.0"})

    assert abs(client.clock_offset - offset) <= 1.5  # Date has whole seconds; within the tolerance it is 0
    if offset == 0:
        assert client.clock_offset == 0.0


def test_the_error_shape_becomes_a_server_error_with_its_fields(server, client):
    server.route(
        "POST",
        f"/api/v1/agents/{AGENT_ID}/heartbeat",
        400,
        error_body("validation_error", "The body is invalid.", {"metrics.cpuPercent": ["must be <= 100"]}),
    )

    with pytest.raises(ServerError) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    error = caught.value
    assert (error.status, error.code, error.message) == (400, "validation_error", "The body is invalid.")
    assert error.fields == {"metrics.cpuPercent": ["must be <= 100"]}
    assert error.retry_after is None


def test_a_refused_enrollment_key_is_a_server_error(server, client):
    server.route("POST", "/api/v1/agents/enroll", 401, error_body("enrollment_key_expired", "This key expired."))

    with pytest.raises(ServerError) as caught:
        client.enroll({"enrollmentKey": "old"})

    assert (caught.value.status, caught.value.code) == (401, "enrollment_key_expired")
    assert "This key expired." in str(caught.value)


def test_429_carries_retry_after_in_seconds(server, client):
    server.route(
        "POST",
        f"/api/v1/agents/{AGENT_ID}/heartbeat",
        429,
        error_body("too_many_requests", "Slow down."),
        {"Retry-After": "17"},
    )

    with pytest.raises(ServerError) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, "too_many_requests", 17.0)


def test_429_carries_retry_after_given_as_an_http_date(server, client):
    server.route(
        "POST",
        f"/api/v1/agents/{AGENT_ID}/heartbeat",
        429,
        error_body("too_many_requests", "Slow down."),
        {"Retry-After": formatdate(time.time() + 120, usegmt=True)},
    )

    with pytest.raises(ServerError) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert 115 <= caught.value.retry_after <= 120


def test_503_is_a_server_error_with_its_retry_after(server, client):
    server.route(
        "POST",
        f"/api/v1/agents/{AGENT_ID}/heartbeat",
        503,
        error_body("service_unavailable", "Try again shortly."),
        {"Retry-After": "5"},
    )

    with pytest.raises(ServerError) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "service_unavailable", 5.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("2.5", 2.5), ("-4", 0.0), ("soon", None), (None, None), ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0)],
)
def test_retry_after_values(header, expected):
    assert parse_retry_after(header) == expected


def test_a_non_json_502_page_is_a_server_error_with_an_http_code(server, client):
    server.route(
        "POST",
        f"/api/v1/agents/{AGENT_ID}/heartbeat",
        502,
        b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
        {"Content-Type": "text/html"},
    )

    with pytest.raises(ServerError) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "502" in caught.value.message
    assert "<html>" not in caught.value.message
    assert len(caught.value.message) < 200


def test_a_redirect_is_an_error_and_is_not_followed(server, client):
    server.route("POST", "/api/v1/agents/enroll", 302, None, {"Location": "https://elsewhere.example/enroll"})

    with pytest.raises(ServerError) as caught:
        client.enroll({"enrollmentKey": "k"})

    assert (caught.value.status, caught.value.code) == (302, "http_302")
    assert "https://elsewhere.example/enroll" in caught.value.message
    assert len(server.requests) == 1


def test_a_closed_port_is_unreachable(client):
    port = closed_port()
    client = Client(f"http://127.0.0.1:{port}", token=TOKEN, timeout=2)

    with pytest.raises(Unreachable) as caught:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})

    assert f"127.0.0.1:{port}" in caught.value.reason
    assert "refused" in caught.value.reason.lower()


def test_a_server_that_does_not_answer_in_time_is_unreachable():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection (in the backlog) and never answers
        client = Client(f"http://127.0.0.1:{silent.getsockname()[1]}", token=TOKEN, timeout=0.3)

        with pytest.raises(Unreachable, match="did not answer in time"):
            client.heartbeat(AGENT_ID, {"agentVersion": "1"})


# the token stays secret -------------------------------------------------------------------------------------------


def test_the_token_is_absent_from_the_repr_and_from_exception_texts(server, client):
    server.route("POST", f"/api/v1/agents/{AGENT_ID}/heartbeat", 401, error_body("invalid_token", "Invalid token."))
    texts = [repr(client), str(client)]

    with pytest.raises(ServerError) as server_error:
        client.heartbeat(AGENT_ID, {"agentVersion": "1"})
    texts += [
        str(server_error.value),
        repr(server_error.value),
        formatted(server_error.value),
    ]

    with pytest.raises(Unreachable) as unreachable:
        Client(f"http://127.0.0.1:{closed_port()}", token=TOKEN).heartbeat(AGENT_ID, {"agentVersion": "1"})
    texts += [str(unreachable.value), repr(unreachable.value), formatted(unreachable.value)]

    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent, and only there
    for text in texts:
        assert TOKEN not in text
        assert TOKEN[4:20] not in text


# plain http only to this machine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:8000", "http://rmm.local/", "HTTP://8.8.8.8"])
def test_plain_http_to_another_machine_is_refused_before_any_connection(url):
    with pytest.raises(ValueError, match=r"plain http is allowed only to this machine \(loopback\)"):
        Client(url, token=TOKEN)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://127.8.9.1", "http://127.8.9.1"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://localhost:8000//", "http://localhost:8000"),
        ("http://LocalHost:8000", "http://localhost:8000"),
        ("https://RMM.example.com/base/", "https://rmm.example.com/base"),
    ],
)
def test_loopback_http_and_any_https_are_accepted_and_normalised(url, stored):
    assert Client(url).server == stored


@pytest.mark.parametrize(
    "url",
    ["rmm.example.com", "ftp://rmm.example.com", "https://", "https://x/?a=1", "", "https://x:99999", "https://x:ab"],
)
def test_a_url_that_is_not_a_base_url_is_refused(url):
    with pytest.raises(ValueError, match="server URL"):
        Client(url)


def test_a_request_needing_the_token_without_one_is_refused(server):
    with pytest.raises(ValueError, match="token"):
        Client(f"http://127.0.0.1:{server.port}").heartbeat(AGENT_ID, {})

    assert server.requests == []


# TLS --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(certificates):
    with StandInServer(ssl_context=tls_server_context(certificates["cert"], certificates["key"])) as stand_in:
        stand_in.route("GET", f"/api/v1/agents/{AGENT_ID}/config", 200, {"heartbeatIntervalSeconds": 60})
        yield stand_in


def test_https_with_an_unknown_ca_fails_verification(tls_server):
    client = Client(f"https://127.0.0.1:{tls_server.port}", token=TOKEN, timeout=5)

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert caught.value.reason.startswith("TLS verification failed: ")
    assert tls_server.requests == []


def test_https_with_the_ca_file_works(tls_server, certificates):
    client = Client(f"https://127.0.0.1:{tls_server.port}", token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

    assert client.config(AGENT_ID) == {"heartbeatIntervalSeconds": 60}
    assert tls_server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_https_checks_the_host_name_too(certificates):
    # A certificate the CA signed, but for another name than the one the client connects to.
    context = tls_server_context(certificates["elsewhere-cert"], certificates["elsewhere-key"])
    with StandInServer(ssl_context=context) as stand_in:
        client = Client(f"https://127.0.0.1:{stand_in.port}", token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

        with pytest.raises(Unreachable, match=r"TLS verification failed: .*(mismatch|match)"):
            client.config(AGENT_ID)
