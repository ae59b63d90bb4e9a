"""The wire protocol (the server's docs/agent-api.md) over urllib3: TLS verified, keep-alive, no retries, no redirects.

Two kinds of failure, because the run loop treats them differently:

- Unreachable: no answer from the server (refused, reset, DNS, TLS, timeout) — retry later with backoff;
- ServerError: the server answered an error in the protocol's shape {"error", "message", "fields"} (or, from a proxy
  in front of it, something else: code "http_<status>") — the loop decides by status and code; 429 and 503 carry
  the Retry-After delay in seconds.

Retrying is the loop's job, never this module's: urllib3's own retries would hide 503s and resend non-idempotent
POSTs. The bearer token is set on each request and never appears in a repr, a log line or an exception.

Behind an HTTP proxy (the config file's `proxy`, else HTTPS_PROXY/HTTP_PROXY and NO_PROXY as curl and pip read them)
an https server is reached through a CONNECT tunnel, so TLS is still verified end to end against the server's
certificate; the proxy only sees where the agent connects. Loopback servers never go through a proxy. The proxy's
credentials travel only in the Proxy-Authorization header of the CONNECT request: never in a repr, a log line or an
exception, like the token.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import logging
import os
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from rmm_agent import __version__

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/agents"
# How far this machine's clock may be from the server's before the agent corrects its samples' times: the Date
# header has whole seconds, and the answer's transit adds a little.
CLOCK_TOLERANCE_SECONDS = 2.0
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


PROXY_URL_SHAPE = "an http:// or https:// URL with a host and a port, like http://proxy.example.com:3128"


@dataclass(frozen=True)
class Proxy:
    """An HTTP(S) proxy: its address without credentials (safe to show) and the headers that authenticate to it."""

    url: str  # scheme://host:port, never with a user name or password
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)  # Proxy-Authorization


def redact_url(url: str) -> str:
    """`url` with any user name and password replaced by "***", for messages about a URL that may hold them."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{separator}{authority}{slash}{path}"


def parse_proxy(url: str, *, require_port: bool = True) -> Proxy:
    """A proxy URL ("http://host:port" or "http://user:password@host:port", https:// too) → Proxy.

    Strict for the config file and --proxy (scheme, host and port required); with require_port=False as lenient as
    curl and pip are with HTTPS_PROXY: "host:port" means http://host:port and a missing port is the scheme's default.
    Raises ValueError, whose message never holds the credentials.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"must be {PROXY_URL_SHAPE}")
    url = url.strip()
    if not require_port and "://" not in url:
        url = "http://" + url
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be {PROXY_URL_SHAPE}, not {shown!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be {PROXY_URL_SHAPE}, not {shown!r}")
    if port is None:
        if require_port:
            raise ValueError(f"must name the proxy's port, like http://proxy.example.com:3128, not {shown!r}")
        port = 443 if scheme == "https" else 80
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must be {PROXY_URL_SHAPE} without a path, query or fragment, not {shown!r}")
    host = parts.hostname
    address = f"[{host}]" if ":" in host else host
    headers: dict[str, str] = {}
    if parts.username is not None:
        credentials = urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        try:
            # make_headers encodes them as Latin-1, as HTTP Basic authentication has always been sent.
            headers = dict(urllib3.make_headers(proxy_basic_auth=credentials))
        except UnicodeEncodeError:
            raise ValueError(
                f"the proxy's user name and password must be Latin-1 characters (percent-encoded): {shown!r}"
            ) from None
    return Proxy(url=f"{scheme}://{address}:{port}", headers=headers)


def environment_proxy(server: str) -> tuple[str | None, str | None]:
    """The proxy the environment gives for `server` and where it comes from, as curl and pip read it:
    HTTPS_PROXY/https_proxy for an https server, HTTP_PROXY/http_proxy for http, none when NO_PROXY/no_proxy
    (comma-separated hosts, domains and suffixes, or "*") names the host. On macOS and Windows, when no variable is
    set, the system's proxy settings (what urllib.request reads). (None, None) when there is no proxy.
    """
    parts = urllib.parse.urlsplit(server)
    scheme = parts.scheme.lower()
    value = urllib.request.getproxies().get(scheme)
    if not value or not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None, None
    names = [f"{scheme.upper()}_PROXY", f"{scheme}_proxy"]
    source = next((name for name in names if os.environ.get(name)), "the system's proxy settings")
    return value, source


def _segment(value: str) -> str:
    """One path segment: an id from the server or a kind must never add a segment or a query to the URL."""
    return urllib.parse.quote(str(value), safe="")


def _tunnel_refusal(error: BaseException) -> str | None:
    """The proxy's answer to CONNECT when it refused the tunnel ("407 Proxy Authentication Required"), else None.

    http.client raises OSError("Tunnel connection failed: 407 …") and urllib3 wraps it (ProtocolError, ProxyError).
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and str(current).startswith("Tunnel connection failed: "):
            return str(current)[len("Tunnel connection failed: ") :]
        pending.extend([*current.args, current.__cause__, current.__context__])
    return None


def _unreachable(error: Exception, where: str, proxy: str | None = None) -> Unreachable:
    """A short reason for an urllib3 failure, naming the server (and the proxy) but never a request header."""
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    if proxy is not None:
        refusal = _tunnel_refusal(error)
        if refusal is not None:
            hint = " (check the user name and password in the proxy URL)" if refusal.startswith("407") else ""
            return Unreachable(f"proxy {proxy} refused the tunnel to {where}: {refusal}{hint}")
        if isinstance(error, ProxyError):
            # The proxy itself could not be reached (refused, DNS, timeout, TLS with an https:// proxy).
            original = error.original_error
            if isinstance(original, SSLError):
                detail = str(original.args[0]) if original.args else str(original)
                return Unreachable(f"TLS with the proxy {proxy} failed: {detail}")
            if isinstance(original, Exception) and not isinstance(original, ProxyError):
                return _unreachable(original, f"the proxy {proxy}")
            return Unreachable(f"cannot reach the proxy {proxy}: {original}")
        reason = _unreachable(error, where).reason
        return Unreachable(f"{reason} (through the proxy {proxy})")
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
        proxy: str | None = None,
    ) -> None:
        """`proxy`: the config file's (or --proxy's) proxy URL; None = the environment's (HTTPS_PROXY, NO_PROXY).

        Raises ValueError for a server URL or a `proxy` that cannot be used (the message never holds credentials).
        """
        self.server = normalise_server(server)
        self.token = token
        # Seconds to add to this machine's clock to read the server's, from the Date header of its answers: the
        # server refuses backlog samples "in the future", and machines' clocks drift (a VM resumed from suspend, no
        # NTP). 0 while the two agree within CLOCK_TOLERANCE_SECONDS (Date has whole seconds).
        self.clock_offset = 0.0
        self.ca_file = ca_file
        self.user_agent = user_agent
        parts = urllib.parse.urlsplit(self.server)
        self._where = parts.netloc
        chosen = parse_proxy(proxy) if proxy is not None else None
        source = "configuration" if chosen is not None else None
        # A proxy from the environment that cannot be used fails each request as Unreachable rather than the
        # constructor: the run loop then keeps the reason in `status` and tries again, as for any network fault.
        self._proxy_problem: str | None = None
        if chosen is None:
            value, source = environment_proxy(self.server)
            if value is not None:
                try:
                    chosen = parse_proxy(value, require_port=False)
                except ValueError as error:
                    self._proxy_problem = f"the proxy in {source} cannot be used: it {error}"
        if parts.hostname is not None and is_loopback(parts.hostname):
            # A proxy cannot reach this machine's loopback; curl and pip leave localhost out too.
            chosen, source, self._proxy_problem = None, None, None
        self.proxy_url: str | None = chosen.url if chosen is not None else None  # without credentials
        self.proxy_source: str | None = source if chosen is not None else None
        # One pool per host (the server): the connection is kept alive between heartbeats. ca_certs=None makes
        # urllib3 load the system trust store; CERT_REQUIRED also checks the host name.
        pool_options: dict[str, Any] = {
            "num_pools": 2,
            "maxsize": 4,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": ca_file or None,
            "retries": False,
            "timeout": urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
        }
        self._pool: urllib3.PoolManager
        if chosen is None:
            self._pool = urllib3.PoolManager(**pool_options)
        else:
            logger.info("reaching %s through the proxy %s (from %s)", self.server, chosen.url, source)
            # CONNECT for https (urllib3's default): the TLS session is the agent's with the server, verified with
            # ca_certs as without a proxy. The proxy's own certificate (an https:// proxy) is checked against the
            # system's trust store and the CA file, since a private CA may have signed either.
            proxy_context = None
            if chosen.url.startswith("https://"):
                proxy_context = ssl.create_default_context()
                # A missing or damaged CA file is reported by each request's check of the server's certificate, as
                # without a proxy; it must not keep the agent from starting.
                if ca_file:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        proxy_context.load_verify_locations(cafile=ca_file)
            self._pool = urllib3.ProxyManager(
                chosen.url, proxy_headers=chosen.headers, proxy_ssl_context=proxy_context, **pool_options
            )

    def __repr__(self) -> str:
        return (
            f"Client(server={self.server!r}, token={'set' if self.token else 'none'}, ca_file={self.ca_file!r}, "
            f"proxy={self.proxy_url!r})"
        )

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
        if self._proxy_problem is not None:
            raise Unreachable(self._proxy_problem)
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
            raise _unreachable(error, self._where, self.proxy_url) from None
        status = response.status
        logger.debug("%s %s → %d (%.0f ms)", method, path, status, (time.monotonic() - started) * 1000)
        self._read_clock(response.headers.get("Date"))
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

    def _read_clock(self, date: str | None) -> None:
        if not date:
            return
        try:
            server_now = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            return
        if server_now.tzinfo is None:
            server_now = server_now.replace(tzinfo=timezone.utc)
        offset = server_now.timestamp() - time.time()
        self.clock_offset = 0.0 if abs(offset) < CLOCK_TOLERANCE_SECONDS else offset

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
