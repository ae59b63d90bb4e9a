"""The agent behind an HTTP proxy: a real CONNECT proxy in a thread in front of a real HTTPS stand-in server.

The server is addressed as rmm.example.test (a reserved name no resolver knows), which the test proxy maps to the
stand-in on 127.0.0.1: an answer can only have come through the proxy's tunnel, and a connection made around the
proxy fails on the name.
"""

from __future__ import annotations

import base64
import json
import logging
import select
import socket
import socketserver
import ssl
import sys
import threading
import traceback
from pathlib import Path

import pytest
from standin import SERVER_NAME, StandInServer, closed_port, tls_server_context

from rmm_agent.cli import main
from rmm_agent.client import Client, ServerError, Unreachable
from rmm_agent.config import ConfigError, LocalConfig

TOKEN = "rmm_" + "6f" * 32
AGENT_ID = "0b7c6f7e-5d6a-4f49-9c0e-2d9f0f3f6a10"
CONFIG_PATH = f"/api/v1/agents/{AGENT_ID}/config"
PROXY_USER = "proxyuser-7f3a"
PROXY_PASSWORD = "s3cr3t p@ss-91c2"  # noqa: S105 - a test value; a space and an @: percent-encoded in the URL
PROXY_USERINFO = "proxyuser-7f3a:s3cr3t%20p%40ss-91c2"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")


class ConnectProxy:
    """A CONNECT proxy in a thread. It counts connections, records each tunnel's target host:port and the
    Proxy-Authorization sent, answers 407 when `required_authorization` is set and not sent, or `refusal` (e.g.
    "502 Bad Gateway") when set; otherwise 200, and pipes bytes both ways to `upstream`, whatever host was asked.
    With `ssl_context` it is an https:// proxy: the agent speaks TLS to it, and TLS to the server inside that."""

    def __init__(self, upstream: tuple[str, int], ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.required_authorization: str | None = None
        self.refusal: str | None = None
        self.connections = 0
        self.tunnels: list[str] = []
        self.authorizations: list[str | None] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy.connections += 1
                request_line = self.rfile.readline(65537).decode("latin-1").strip()
                headers: dict[str, str] = {}
                while True:
                    line = self.rfile.readline(65537).decode("latin-1")
                    if line in ("\r\n", "\n", ""):
                        break
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                method, _, rest = request_line.partition(" ")
                target = rest.partition(" ")[0]
                if method != "CONNECT":
                    self.answer("405 Method Not Allowed")
                    return
                proxy.authorizations.append(headers.get("proxy-authorization"))
                required = proxy.required_authorization
                if required is not None and headers.get("proxy-authorization") != required:
                    self.answer("407 Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="test"\r\n')
                    return
                if proxy.refusal is not None:
                    self.answer(proxy.refusal)
                    return
                proxy.tunnels.append(target)
                with socket.create_connection(proxy.upstream, timeout=5) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    pipe(self.connection, upstream)

            def answer(self, status: str, extra_headers: str = "") -> None:
                self.wfile.write(f"HTTP/1.1 {status}\r\n{extra_headers}Content-Length: 0\r\n\r\n".encode("latin-1"))

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # A client that rejects the proxy's certificate aborts the handshake: expected in a TLS test.
                if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or 5 s of silence)."""
    sockets = [client, upstream]
    while True:
        # Bytes an https:// proxy's TLS layer already decrypted are not seen by select().
        if isinstance(client, ssl.SSLSocket) and client.pending():
            readable = [client]
        else:
            readable, _, _ = select.select(sockets, [], [], 5)
        if not readable:
            return
        for source in readable:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            (upstream if source is client else client).sendall(data)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    """Each test starts without the proxy variables of whoever runs the tests."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_server(certificates):
    with StandInServer(ssl_context=tls_server_context(certificates["cert"], certificates["key"])) as stand_in:
        stand_in.route("GET", CONFIG_PATH, 200, {"heartbeat": 60})
        yield stand_in


@pytest.fixture
def proxy(tls_server):
    connect_proxy = ConnectProxy(("127.0.0.1", tls_server.port))
    yield connect_proxy
    connect_proxy.stop()


@pytest.fixture
def server_url(tls_server) -> str:
    return f"https://{SERVER_NAME}:{tls_server.port}"


def formatted(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def texts_of(client: Client, error: BaseException) -> list[str]:
    return [repr(client), str(client), str(error), repr(error), formatted(error)]


def client_with_proxy_credentials(server_url: str, proxy: ConnectProxy, certificates: dict[str, Path]) -> Client:
    """A client trusting the test CA whose proxy URL carries PROXY_USER's credentials."""
    return Client(
        server_url,
        token=TOKEN,
        ca_file=str(certificates["ca"]),
        proxy=f"http://{PROXY_USERINFO}@127.0.0.1:{proxy.port}",
        timeout=5,
    )


# through the proxy ------------------------------------------------------------------------------------------------


def test_an_https_server_is_reached_through_the_proxys_tunnel(tls_server, proxy, server_url, certificates):
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=proxy.url, timeout=5)

    assert client.config(AGENT_ID) == {"heartbeat": 60}

    assert proxy.tunnels == [f"{SERVER_NAME}:{tls_server.port}"]
    (request,) = tls_server.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"  # inside the tunnel, which the proxy cannot read
    assert "Proxy-Authorization" not in request.headers
    assert (client.proxy_url, client.proxy_source) == (proxy.url, "configuration")
    client.close()


def test_tls_is_verified_end_to_end_a_wrong_ca_fails_through_the_proxy(tls_server, proxy, server_url, certificates):
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["other-ca"]), proxy=proxy.url, timeout=5)

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert caught.value.reason.startswith("TLS verification failed: ")
    assert f"through the proxy {proxy.url}" in caught.value.reason
    assert proxy.tunnels == [f"{SERVER_NAME}:{tls_server.port}"]  # the tunnel was made; the server was not trusted
    assert tls_server.requests == []


def test_the_proxys_credentials_are_sent_as_proxy_authorization(tls_server, proxy, server_url, certificates):
    proxy.required_authorization = basic(PROXY_USER, PROXY_PASSWORD)
    client = client_with_proxy_credentials(server_url, proxy, certificates)

    assert client.config(AGENT_ID) == {"heartbeat": 60}

    assert proxy.authorizations == [basic(PROXY_USER, PROXY_PASSWORD)]
    assert client.proxy_url == proxy.url
    assert PROXY_USER not in repr(client)
    assert "Proxy-Authorization" not in tls_server.requests[0].headers


def test_a_407_is_unreachable_naming_the_proxy_without_its_credentials(
    tls_server, proxy, server_url, certificates, caplog
):
    caplog.set_level(logging.DEBUG)
    proxy.required_authorization = basic(PROXY_USER, "the right one")
    client = client_with_proxy_credentials(server_url, proxy, certificates)

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert caught.value.reason.startswith(
        f"proxy {proxy.url} refused the tunnel to {SERVER_NAME}:{tls_server.port}: 407 Proxy Authentication Required"
    )
    assert proxy.authorizations == [basic(PROXY_USER, PROXY_PASSWORD)]  # it was sent, and only to the proxy
    assert tls_server.requests == []
    for text in [*texts_of(client, caught.value), caplog.text]:
        for secret in (PROXY_PASSWORD, "s3cr3t", PROXY_USER, basic(PROXY_USER, PROXY_PASSWORD)[6:]):
            assert secret not in text


def test_a_502_on_connect_is_unreachable_naming_the_proxy(tls_server, proxy, server_url, certificates):
    proxy.refusal = "502 Bad Gateway"
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=proxy.url, timeout=5)

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert (
        caught.value.reason
        == f"proxy {proxy.url} refused the tunnel to {SERVER_NAME}:{tls_server.port}: 502 Bad Gateway"
    )


def test_a_proxy_that_cannot_be_reached_is_unreachable_naming_it_without_credentials(server_url, certificates):
    port = closed_port()
    client = Client(
        server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=f"http://{PROXY_USERINFO}@127.0.0.1:{port}"
    )

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert caught.value.reason.startswith(f"cannot connect to the proxy http://127.0.0.1:{port}: ")
    assert "refused" in caught.value.reason.lower()
    for text in texts_of(client, caught.value):
        assert "s3cr3t" not in text
        assert PROXY_USER not in text


def test_an_https_proxy_is_verified_and_tunnels_tls_inside_tls(tls_server, server_url, certificates):
    # The proxy presents the server's certificate (it names 127.0.0.1 too), which the CA in the CA file signed.
    context = tls_server_context(certificates["cert"], certificates["key"])
    tls_proxy = ConnectProxy(("127.0.0.1", tls_server.port), ssl_context=context)
    try:
        client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=tls_proxy.url, timeout=5)
        assert client.config(AGENT_ID) == {"heartbeat": 60}
        assert tls_proxy.tunnels == [f"{SERVER_NAME}:{tls_server.port}"]
        client.close()

        untrusting = Client(server_url, token=TOKEN, ca_file=str(certificates["other-ca"]), proxy=tls_proxy.url)
        with pytest.raises(Unreachable) as caught:
            untrusting.config(AGENT_ID)
        assert caught.value.reason.startswith(f"TLS with the proxy {tls_proxy.url} failed: ")
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reason
        assert len(tls_proxy.tunnels) == 1
    finally:
        tls_proxy.stop()


# the environment --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "with_scheme"), [("HTTPS_PROXY", True), ("https_proxy", False)])
def test_https_proxy_from_the_environment_is_used_without_a_config_key(
    tls_server, proxy, server_url, certificates, monkeypatch, variable, with_scheme
):
    # curl and pip read "host:port" as an http:// proxy.
    monkeypatch.setenv(variable, proxy.url if with_scheme else proxy.url.replace("http://", ""))
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

    assert client.config(AGENT_ID) == {"heartbeat": 60}

    assert proxy.tunnels == [f"{SERVER_NAME}:{tls_server.port}"]
    assert (client.proxy_url, client.proxy_source) == (proxy.url, variable)


def test_the_config_proxy_wins_over_the_environment(tls_server, proxy, server_url, certificates, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=proxy.url, timeout=5)

    assert client.config(AGENT_ID) == {"heartbeat": 60}
    assert len(proxy.tunnels) == 1


def test_http_proxy_is_not_used_for_an_https_server(tls_server, proxy, server_url, certificates, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

    assert client.proxy_url is None
    with pytest.raises(Unreachable, match=f"cannot connect to {SERVER_NAME}"):
        client.config(AGENT_ID)
    assert proxy.connections == 0


@pytest.mark.parametrize(
    "no_proxy", [SERVER_NAME, ".example.test", "example.test", "other.example, RMM.example.test", "*"]
)
def test_no_proxy_names_servers_reached_directly(proxy, server_url, certificates, monkeypatch, no_proxy):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

    assert client.proxy_url is None
    # Directly, the reserved name resolves nowhere: the attempt fails without the proxy ever being asked.
    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)
    assert caught.value.reason.startswith(f"cannot connect to {SERVER_NAME}")
    assert "proxy" not in caught.value.reason
    assert proxy.connections == 0


def test_no_proxy_naming_other_hosts_keeps_the_proxy(tls_server, proxy, server_url, certificates, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", "example.com,test.internal,rmm.example.test.other")
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), timeout=5)

    assert client.config(AGENT_ID) == {"heartbeat": 60}
    assert len(proxy.tunnels) == 1


def test_an_unusable_proxy_in_the_environment_fails_each_request_naming_the_variable(server_url, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://{PROXY_USERINFO}@127.0.0.1:1080")
    client = Client(server_url, token=TOKEN)

    with pytest.raises(Unreachable) as caught:
        client.config(AGENT_ID)

    assert caught.value.reason.startswith("the proxy in HTTPS_PROXY cannot be used: it must be an http:// or https://")
    assert "socks5://***@127.0.0.1:1080" in caught.value.reason
    for text in texts_of(client, caught.value):
        assert "s3cr3t" not in text


# loopback ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def plain_server():
    with StandInServer() as stand_in:
        stand_in.route("GET", CONFIG_PATH, 200, {"heartbeat": 60})
        yield stand_in


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("configured", [False, True])
def test_loopback_servers_never_go_through_a_proxy(plain_server, monkeypatch, host, configured):
    trap = ConnectProxy(("127.0.0.1", plain_server.port))
    try:
        for variable in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(variable, trap.url)
        client = Client(
            f"http://{host}:{plain_server.port}", token=TOKEN, proxy=trap.url if configured else None, timeout=5
        )

        assert client.config(AGENT_ID) == {"heartbeat": 60}

        assert client.proxy_url is None
        assert trap.connections == 0
        assert len(plain_server.requests) == 1
    finally:
        trap.stop()


# the proxy URL ----------------------------------------------------------------------------------------------------


def test_a_proxy_url_the_client_cannot_use_is_refused_without_its_credentials():
    with pytest.raises(ValueError, match=r"must be an http:// or https:// URL") as caught:
        Client(f"https://{SERVER_NAME}", proxy=f"socks5://{PROXY_USERINFO}@proxy.example.com:1080")

    assert "s3cr3t" not in str(caught.value)
    assert "socks5://***@proxy.example.com:1080" in str(caught.value)


def write_config(directory: Path, content: object) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy.example.com:3128",
        "https://proxy.example.com:8443",
        f"http://{PROXY_USERINFO}@proxy.example.com:3128/",
        "http://[2001:db8::1]:3128",
        "http://10.0.0.1:8080",
    ],
)
def test_the_config_accepts_a_proxy_url(tmp_path, url):
    config = LocalConfig.load(write_config(tmp_path, {"proxy": url}))

    assert config.proxy == url
    assert "s3cr3t" not in repr(config)


def test_the_config_proxy_defaults_to_none_and_accepts_null(tmp_path):
    assert LocalConfig().proxy is None
    assert LocalConfig.load(write_config(tmp_path, {"proxy": None})).proxy is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3128, "proxy must be a URL like http://proxy.example.com:3128, or null"),
        ("", "proxy must be an http:// or https:// URL with a host and a port"),
        ("proxy.example.com:3128", "proxy must be an http:// or https:// URL"),
        ("socks5://proxy.example.com:1080", "proxy must be an http:// or https:// URL"),
        ("http://:3128", "proxy must be an http:// or https:// URL"),
        ("http://proxy.example.com", "proxy must name the proxy's port"),
        ("http://proxy.example.com:99999", "proxy must be an http:// or https:// URL"),
        ("http://proxy.example.com:port", "proxy must be an http:// or https:// URL"),
        ("http://proxy.example.com:3128/path", "without a path, query or fragment"),
        ("http://proxy.example.com:3128?x=1", "without a path, query or fragment"),
        (f"socks5://{PROXY_USERINFO}@proxy.example.com:1080", r"not 'socks5://\*\*\*@proxy.example.com:1080'"),
    ],
)
def test_the_config_refuses_a_proxy_it_cannot_use_naming_the_key_and_the_file(tmp_path, value, message):
    path = write_config(tmp_path, {"proxy": value})

    with pytest.raises(ConfigError, match=message) as caught:
        LocalConfig.load(path)

    assert str(caught.value).startswith(f"{path}: proxy ")
    assert "s3cr3t" not in str(caught.value)


def enroll(state_dir: object, *arguments: str) -> int:
    """`rmm-agent --state-dir DIR enroll --key k1 ARGUMENTS…`, in this process; the exit code."""
    return main(["--state-dir", str(state_dir), "enroll", "--key", "k1", *arguments])


# the command line -------------------------------------------------------------------------------------------------


def test_enroll_with_proxy_goes_through_it_and_does_not_store_it(
    tls_server, proxy, server_url, certificates, tmp_path, capsys
):
    tls_server.route(
        "POST",
        "/api/v1/agents/enroll",
        201,
        {"agentId": AGENT_ID, "deviceId": "d1", "authToken": TOKEN, "orgId": "o1", "siteId": "s1", "config": {}},
    )
    proxy_url = f"http://{PROXY_USERINFO}@127.0.0.1:{proxy.port}"
    state_dir = tmp_path / "state"

    exit_code = enroll(
        str(state_dir), "--server", server_url, "--ca-file", str(certificates["ca"]), "--proxy", proxy_url
    )

    assert exit_code == 0, capsys.readouterr().err
    assert proxy.tunnels == [f"{SERVER_NAME}:{tls_server.port}"]
    assert proxy.authorizations == [basic(PROXY_USER, PROXY_PASSWORD)]
    stored = "".join(path.read_text() for path in state_dir.rglob("*.json"))
    assert f"{SERVER_NAME}:{tls_server.port}" in stored  # the identity was saved …
    assert "127.0.0.1" not in stored  # … without the proxy, which `run` takes from config.json or the environment
    assert "s3cr3t" not in stored


def test_enroll_refuses_a_proxy_it_cannot_use(tmp_path, capsys):
    exit_code = enroll(
        str(tmp_path), "--server", f"https://{SERVER_NAME}", "--proxy", f"ftp://{PROXY_USERINFO}@proxy.example.com:21"
    )

    err = capsys.readouterr().err
    assert exit_code == 2
    assert "--proxy must be an http:// or https:// URL" in err
    assert "s3cr3t" not in err


def test_enroll_through_a_refusing_proxy_fails_naming_the_proxy(proxy, server_url, certificates, tmp_path, capsys):
    proxy.refusal = "403 Forbidden"

    exit_code = enroll(
        str(tmp_path), "--server", server_url, "--ca-file", str(certificates["ca"]), "--proxy", proxy.url
    )

    assert exit_code == 1
    assert f"proxy {proxy.url} refused the tunnel to {SERVER_NAME}:" in capsys.readouterr().err


def test_a_server_error_through_the_proxy_is_still_a_server_error(tls_server, proxy, server_url, certificates):
    tls_server.route("GET", CONFIG_PATH, 401, {"error": "invalid_token", "message": "no", "fields": {}})
    client = Client(server_url, token=TOKEN, ca_file=str(certificates["ca"]), proxy=proxy.url, timeout=5)

    with pytest.raises(ServerError) as caught:
        client.config(AGENT_ID)

    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
