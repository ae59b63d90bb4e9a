"""The wire protocol (the server's docs/agent-api.md) over urllib3: TLS verified, keep-alive, no retries, no redirects.

Two kinds of failure, because the run loop treats them differently:

- Unreachable: no answer from the server (refused, reset, DNS, TLS, timeout) — retry later with backoff;
- ServerError: the server answered an error in the protocol's shape {"error", "message", "fields"} (or, from a proxy
  in front of it, something else: code "http_<status>") — the loop decides by status and code; 429 and 503 carry
  the Retry-After delay in seconds.

Retrying is the loop's job, never this module's: urllib3's own retries would hide 503s and resend non-idempotent
POSTs. The bearer token is set on each request and never appears in a repr, a log line or an exception.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from rmm_agent import __version__

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/agents"
PLAIN_HTTP_REFUSED = (
    "plain http is allowed only to this machine (loopback); use https://… or --ca-file for a private CA"
)


class Unreachable(Exception):
    """The server could not be reached or did not answer (connection, DNS, TLS, timeout): retry with backoff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServerError(Exception):
    """The server answered an error: agent-api.md's {"error", "message", "fields"} with its HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields if fields is not None else {}
        self.retry_after = retry_after


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1): traffic that never leaves the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def normalise_server(server: str) -> str:
    """The server's base URL as stored: scheme and host lower-cased by urllib's rules, no trailing slash.

    Raises ValueError for anything that is not an http(s) base URL, and for plain http to another machine.
    """
    if not isinstance(server, str) or not server.strip():
        raise ValueError("the server URL is empty")
    parts = urllib.parse.urlsplit(server.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the server URL must look like https://rmm.example.com, not {server!r}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check: "host:abc" or "host:99999" raise here
    except ValueError:
        raise ValueError(f"the server URL has an invalid port: {server!r}") from None
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("the server URL must be a base URL without credentials, query or fragment")
    if scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(PLAIN_HTTP_REFUSED)
    return urllib.parse.urlunsplit((scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date (RFC 9110 §10.2.3); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" in the date: UTC by RFC 5322
        when = when.replace(tzinfo=timezone.utc)
    reference = time.time() if now is None else now
    return max(when.timestamp() - reference, 0.0)


def _segment(value: str) -> str:
    """One path segment: an id from the server or a kind must never add a segment or a query to the URL."""
    return urllib.parse.quote(str(value), safe="")


def _unreachable(error: Exception, where: str) -> Unreachable:
    """A short reason for an urllib3 failure, naming the server but never a request header."""
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    if isinstance(error, SSLError):
        detail = str(error.args[0]) if error.args else str(error)
        if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail.lower():
            return Unreachable(f"TLS verification failed: {detail} ({where}; give the server's CA with --ca-file)")
        return Unreachable(f"TLS handshake failed: {detail} ({where})")
    if isinstance(error, NewConnectionError):
        # "HTTPConnection(host=…, port=…): Failed to establish a new connection: [Errno 111] Connection refused"
        cause = str(error.args[0] if error.args else error).split(": ", 1)[-1]
        cause = cause.replace("Failed to establish a new connection: ", "")
        return Unreachable(f"cannot connect to {where}: {cause}")
    if isinstance(error, ConnectTimeoutError):
        return Unreachable(f"connecting to {where} timed out")
    if isinstance(error, ReadTimeoutError):
        return Unreachable(f"{where} did not answer in time")
    if isinstance(error, ProtocolError):
        return Unreachable(f"the connection to {where} broke: {error}")
    return Unreachable(f"cannot reach {where}: {error}")


class Client:
    """The agent's side of agent-api.md: one method per endpoint, JSON in and out."""

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        user_agent: str = f"rmm-agent/{__version__}",
    ) -> None:
        self.server = normalise_server(server)
        self.token = token
        self.ca_file = ca_file
        self.user_agent = user_agent
        parts = urllib.parse.urlsplit(self.server)
        self._where = parts.netloc
        # One pool per host (the server): the connection is kept alive between heartbeats. ca_certs=None makes
        # urllib3 load the system trust store; CERT_REQUIRED also checks the host name.
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=4,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or None,
            retries=False,
            timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
        )

    def __repr__(self) -> str:
        return f"Client(server={self.server!r}, token={'set' if self.token else 'none'}, ca_file={self.ca_file!r})"

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._pool.clear()

    # the endpoints ------------------------------------------------------------------------------------------------

    def enroll(self, body: dict) -> dict:
        """POST /api/v1/agents/enroll (no token) → the 201 answer (agentId, deviceId, authToken, …)."""
        return self._object(self._request("POST", f"{API_PREFIX}/enroll", body, authenticated=False))

    def heartbeat(self, agent_id: str, body: dict) -> dict:
        """POST /{agentId}/heartbeat → {"commands": [...], "configUpdate": ..., "rotateToken": bool}."""
        return self._object(self._request("POST", f"{API_PREFIX}/{_segment(agent_id)}/heartbeat", body))

    def put_inventory(self, agent_id: str, kind: str, body: dict) -> None:
        """PUT /{agentId}/{kind}: replaces the device's inventory of that kind (204)."""
        self._request("PUT", f"{API_PREFIX}/{_segment(agent_id)}/{_segment(kind)}", body)

    def post_result(self, agent_id: str, command_id: str, body: dict) -> None:
        """POST /{agentId}/commands/{commandId}/result (200; 409 command_already_finished, 404 command_not_found)."""
        path = f"{API_PREFIX}/{_segment(agent_id)}/commands/{_segment(command_id)}/result"
        self._request("POST", path, body)

    def rotate_token(self, agent_id: str) -> str:
        """POST /{agentId}/rotate-token → the new token (the old one keeps working for 5 minutes)."""
        answer = self._object(self._request("POST", f"{API_PREFIX}/{_segment(agent_id)}/rotate-token", {}))
        token = answer.get("authToken")
        if not isinstance(token, str) or not token:
            raise ServerError(200, "invalid_response", "the rotate-token answer has no authToken")
        return token

    def config(self, agent_id: str) -> dict:
        """GET /{agentId}/config → {"heartbeatIntervalSeconds", "metricsCollectionIntervalSeconds"}."""
        return self._object(self._request("GET", f"{API_PREFIX}/{_segment(agent_id)}/config"))

    def claim_commands(self, agent_id: str) -> list[dict]:
        """GET /{agentId}/commands → the commands claimed for this agent (marked sent by the server)."""
        answer = self._object(self._request("GET", f"{API_PREFIX}/{_segment(agent_id)}/commands"))
        commands = answer.get("commands")
        if not isinstance(commands, list):
            raise ServerError(200, "invalid_response", "the commands answer has no commands list")
        return [command for command in commands if isinstance(command, dict)]

    # the transport --------------------------------------------------------------------------------------------

    @staticmethod
    def _object(answer: Any) -> dict:
        if not isinstance(answer, dict):
            raise ServerError(200, "invalid_response", "the server's answer is not a JSON object")
        return answer

    def _request(self, method: str, path: str, body: dict | None = None, *, authenticated: bool = True) -> Any:
        """Send one request; return the decoded JSON answer (None for an empty one). Raises Unreachable/ServerError."""
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if authenticated:
            if not self.token:
                raise ValueError("this request needs the agent's token and the client has none")
            headers["Authorization"] = f"Bearer {self.token}"
        started = time.monotonic()
        try:
            response = self._pool.request(
                method,
                self.server + path,
                body=data,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=True,
            )
        except HTTPError as error:
            # `from None`: the urllib3 exception's own chain says nothing the reason does not, and a traceback of
            # it would show the request's locals to anyone who prints it.
            raise _unreachable(error, self._where) from None
        status = response.status
        logger.debug("%s %s → %d (%.0f ms)", method, path, status, (time.monotonic() - started) * 1000)
        content = response.data
        if 200 <= status < 300:
            if not content:
                return None
            try:
                return json.loads(content)
            except ValueError:
                raise ServerError(
                    status, "invalid_response", f"the server answered {status} with a body that is not JSON"
                ) from None
        raise self._error(status, response)

    def _error(self, status: int, response: Any) -> ServerError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            return ServerError(
                status,
                f"http_{status}",
                f"the server redirects to {location or 'another address'}; redirects are not followed: "
                "enroll with the server's final https:// address",
                retry_after=retry_after,
            )
        try:
            answer = json.loads(response.data)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            fields = answer.get("fields")
            message = answer.get("message")
            return ServerError(
                status,
                answer["error"],
                message if isinstance(message, str) else answer["error"],
                fields if isinstance(fields, dict) else {},
                retry_after,
            )
        # Not the protocol's shape: a proxy or load balancer in front of the server answered (an HTML 502 page).
        reason = response.reason or "error"
        return ServerError(
            status,
            f"http_{status}",
            f"HTTP {status} {reason} (not an answer of the RMM server)",
            retry_after=retry_after,
        )


def utc_now() -> str:
    """Now as ISO 8601 UTC with a "Z", the protocol's timestamps."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
