"""The pyproxyproto: Twisted endpoint, found through its twisted/plugins module:
daphne's scope["client"] is the header's client, TLS after the header, exact
bytes after it, and every refusal, each in a real server process."""

from __future__ import annotations

import os
import re
import socket
import ssl
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    LOOPBACK,
    SERVER,
    SERVER6,
    ServerProcess,
    http_body,
    recv_all,
    require_module,
    self_signed_cert,
)

import pyproxyproto as pp

pytestmark = pytest.mark.servers

REQUEST = b"GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"

ASGI_APP = """
async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    client, server = scope["client"], scope["server"]
    body = f"{client[0]} {client[1]} {server[0]} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

# A plain Twisted server: replies with the peer it sees and echoes every
# byte after the header, until the client half-closes.
ECHO_SERVER = """
import sys
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogBeginner, textFileLogObserver
from zope.interface import implementer

# As a Twisted program starts its log: pyproxyproto's records go there too.
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])

@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    def connectionMade(self):
        peer = self.transport.getPeer()
        self.transport.write(f"{peer.host} {peer.port}\\n".encode())
    def dataReceived(self, data):
        self.transport.write(data)
    def readConnectionLost(self):
        self.transport.loseConnection()
    def writeConnectionLost(self):
        pass

def listening(port):
    print("port", port.getHost().port, flush=True)

serverFromString(reactor, sys.argv[1]).listen(Factory.forProtocol(Echo)).addCallback(listening)
reactor.run()
"""


def plugin_env() -> dict[str, str]:
    """The environment for a server process: Twisted finds twisted/plugins
    beside the pyproxyproto package (site-packages, or the checkout)."""
    root = str(Path(pp.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=root if not path else f"{root}{os.pathsep}{path}")


def echo_server(tmp_path: Path, endpoint: str) -> ServerProcess:
    require_module("twisted")
    script = tmp_path / "echo_server.py"
    script.write_text(textwrap.dedent(ECHO_SERVER))
    return ServerProcess([sys.executable, str(script), endpoint], ready=r"port (\d+)",
                         cwd=tmp_path, env=plugin_env())


def daphne(tmp_path: Path, endpoint: str) -> ServerProcess:
    require_module("daphne")
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    return ServerProcess(
        [sys.executable, "-m", "daphne", "-e", endpoint, "asgi_app:application"],
        ready=r"Listening on TCP address [^:]+:(\d+)", cwd=tmp_path, env=plugin_env(),
    )


def send(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        return recv_all(sock)


@pytest.mark.parametrize(
    "client, server, version",
    [(CLIENT, SERVER, 1), (CLIENT, SERVER, 2), (CLIENT6, SERVER6, 2)],
    ids=["v1", "v2", "v2-ipv6"],
)
def test_daphne_scope_client_is_the_real_client(tmp_path, client, server, version):
    endpoint = f"pyproxyproto:tcp:port=0:interface={LOOPBACK}:trusted=127.0.0.0/8:timeout=3"
    with daphne(tmp_path, endpoint) as daphne_server:
        response = send(daphne_server.port, pp.build(client, server, version=version) + REQUEST)
    assert http_body(response) == f"{client[0]} {client[1]} {server[0]} http".encode()


def test_daphne_tls_after_the_header(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    endpoint = f"pyproxyproto:ssl:port=0:interface={LOOPBACK}:privateKey={key}:certKey={cert}"
    client_context = ssl.create_default_context(cafile=cert)
    with daphne(tmp_path, endpoint) as daphne_server, socket.create_connection(
        (LOOPBACK, daphne_server.port), timeout=5
    ) as raw:
        raw.sendall(pp.build(CLIENT, SERVER))
        with client_context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(REQUEST)
            response = recv_all(sock)
    assert http_body(response) == b"203.0.113.7 41234 198.51.100.1 https"


def test_exact_bytes_and_refusals(tmp_path):
    payload = pp.build(CLIENT, SERVER) * 100 + bytes(range(256)) * 100
    endpoint = f"pyproxyproto:tcp:port=0:interface={LOOPBACK}:trusted=127.0.0.0/8:timeout=0.5"
    with echo_server(tmp_path, endpoint) as server:
        # The header and far more than it, in one send.
        assert send(server.port, pp.build(CLIENT, SERVER, version=1) + payload) == (
            b"203.0.113.7 41234\n" + payload
        )
        # Byte by byte.
        header = pp.build(CLIENT6, SERVER6, tlvs=[(0x05, b"id")])
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(header)):
                sock.sendall(header[i : i + 1])
            sock.sendall(b"after")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b"2001:db8::7 41234\nafter"
        assert send(server.port, b"GET / HTTP/1.1\r\n\r\n") == b""  # bare
        assert send(server.port, b"PROXY TCP4 ", half_close=False) == b""  # timed out
        output = server.stop()
    assert "the peer sent no PROXY header" in output
    assert "no complete PROXY header within 0.5 s" in output
    # In Twisted's log format, at its warn level.
    assert re.search(r"^\S+ \[pyproxyproto#warn\] closed connection from ", output, re.M), output


def test_untrusted_peer_is_refused(tmp_path):
    endpoint = f"pyproxyproto:tcp:port=0:interface={LOOPBACK}:trusted=192.0.2.0/24"
    with echo_server(tmp_path, endpoint) as server:
        assert send(server.port, pp.build(CLIENT, SERVER) + b"data") == b""
        output = server.stop()
    assert "peer is not in the trusted networks" in output


def test_policy_arguments_come_from_the_environment_unless_given(monkeypatch):
    require_module("twisted")
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    monkeypatch.setenv("PYPROXYPROTO_TIMEOUT", "7")
    monkeypatch.setenv("PYPROXYPROTO_TRUSTED", "10.0.0.0/8")
    endpoint = serverFromString(reactor, r"pyproxyproto:tcp:port=0:trusted=2001\:db8\:\:/32")
    assert endpoint.policy.timeout == 7.0
    assert endpoint.policy.trusts(("2001:db8::1", 1))
    assert not endpoint.policy.trusts(("10.0.0.1", 1))
    endpoint = serverFromString(reactor, "pyproxyproto:tcp:port=0:trusted=*:versions=2")
    assert endpoint.policy.networks is None and not endpoint.policy.v1
    # A bad argument is named as the user wrote it, not as the variable it mirrors.
    with pytest.raises(ValueError, match="the endpoint argument timeout='soon'") as info:
        serverFromString(reactor, "pyproxyproto:tcp:port=0:timeout=soon")
    assert "PYPROXYPROTO" not in str(info.value)
    with pytest.raises(ValueError, match="pyproxyproto:tcp"):
        serverFromString(reactor, "pyproxyproto:udp:port=0")
    # A Unix-socket endpoint whose policy can trust no peer there stops at start-up.
    with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
        serverFromString(reactor, "pyproxyproto:unix:address=/tmp/pp-x.sock:trusted=10.0.0.0/8")
    assert serverFromString(reactor, "pyproxyproto:unix:address=/tmp/pp-x.sock:trusted=unix")


def test_twistd_web_logs_the_real_client(tmp_path):
    require_module("twisted")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hi\n")
    endpoint = f"pyproxyproto:tcp:port=0:interface={LOOPBACK}:trusted=127.0.0.0/8"
    twistd = "from twisted.scripts.twistd import run; run()"
    args = [sys.executable, "-c", twistd, "-n", "--pidfile=", "web",
            "--listen", endpoint, "--path", str(tmp_path / "www")]
    with ServerProcess(args, ready=r"Site \(PROXY\) starting on (\d+)", cwd=tmp_path,
                       env=plugin_env()) as server:
        request = b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert http_body(send(server.port, pp.build(CLIENT, SERVER) + request)) == b"hi\n"
        deadline = time.monotonic() + 5
        while b'"203.0.113.7"' not in server.output and time.monotonic() < deadline:
            server.output += server.proc.stdout.read() or b""
            time.sleep(0.05)
    assert b'"203.0.113.7"' in server.output  # the access log's client


def test_daphne_logs_a_refusal_in_its_own_format(tmp_path):
    endpoint = f"pyproxyproto:tcp:port=0:interface={LOOPBACK}:trusted=192.0.2.0/24"
    with daphne(tmp_path, endpoint) as daphne_server:
        assert send(daphne_server.port, pp.build(CLIENT, SERVER) + REQUEST) == b""
        output = daphne_server.stop()
    # daphne's format: time with milliseconds, the level padded to 8.
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING  closed connection from "
                     r"127\.0\.0\.1:\d+: peer is not in the trusted networks", output, re.M), output
