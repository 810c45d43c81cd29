"""uvicorn (2 workers), gunicorn (each worker class) and hypercorn, started as
processes on loopback with the pyproxyproto integrations: the application
and the access log see the header's client; a connection without a header
is refused; TLS after the header works; an untrusted peer is refused."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest

import pyproxyproto as pp

from tests import peers
from tests.integration_helpers import CLIENT, CLIENT6, GUNICORN_WARNING, SERVER, SERVER6, recv_all, \
    require_module, self_signed_cert

pytestmark = pytest.mark.servers

HERE = Path(__file__).parent
LOOPBACK = "127.0.0.1"
TRUSTED = "127.0.0.0/8"
ELSEWHERE = "192.0.2.0/24"  # a network no test connection comes from

SERVERS = ["uvicorn-h11", "uvicorn-httptools", "gunicorn-sync", "gunicorn-gthread",
           "gunicorn-uvicorn", "hypercorn"]
NEEDS = {
    "uvicorn-h11": ["uvicorn"],
    "uvicorn-httptools": ["uvicorn", "httptools"],
    "gunicorn-sync": ["gunicorn"],
    "gunicorn-gthread": ["gunicorn"],
    "gunicorn-uvicorn": ["gunicorn", "uvicorn", "uvicorn_worker", "httptools"],
    "hypercorn": ["hypercorn"],
}
WSGI = {"gunicorn-sync", "gunicorn-gthread"}
# How each server's own log starts a WARNING line: the library's records must
# come out so, not bare through Python's last-resort handler.
LOG_LINE = {
    "uvicorn-h11": r"^WARNING:  ",
    "uvicorn-httptools": r"^WARNING:  ",
    "gunicorn-sync": GUNICORN_WARNING,
    "gunicorn-gthread": GUNICORN_WARNING,
    "gunicorn-uvicorn": GUNICORN_WARNING,
    "hypercorn": GUNICORN_WARNING,  # hypercorn's error log formats as gunicorn's does
}


def command(kind: str, port: int, trusted: str, tls: tuple[str, str] | None,
            extra_args: list[str] | None = None) -> tuple[list[str], dict]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    py = [sys.executable, "-m"]
    if kind.startswith("uvicorn-"):
        protocol = {"uvicorn-h11": "H11Protocol", "uvicorn-httptools": "HttpToolsProtocol"}[kind]
        env["PYPROXYPROTO_TRUSTED"] = trusted
        if tls:
            env["PYPROXYPROTO_SSL_CERTFILE"], env["PYPROXYPROTO_SSL_KEYFILE"] = tls
        argv = py + ["uvicorn", "server_apps:asgi", "--host", LOOPBACK, "--port", str(port),
                     "--workers", "2", "--http", f"pyproxyproto.uvicorn:{protocol}",
                     "--ws", "wsproto"]
    elif kind.startswith("gunicorn-"):
        worker = {"gunicorn-sync": "SyncWorker", "gunicorn-gthread": "ThreadWorker",
                  "gunicorn-uvicorn": "UvicornWorker"}[kind]
        allow = "127.0.0.1" if trusted == TRUSTED else "192.0.2.1"
        argv = py + ["gunicorn", "-k", f"pyproxyproto.gunicorn.{worker}", "-b",
                     f"{LOOPBACK}:{port}", "--proxy-allow-from", allow, "--access-logfile", "-",
                     "--no-control-socket", "--graceful-timeout", "2"]
        if tls:
            argv += ["--certfile", tls[0], "--keyfile", tls[1]]
        argv += extra_args or []
        argv.append("server_apps:wsgi" if kind in WSGI else "server_apps:asgi")
    else:
        env["PYPROXYPROTO_TRUSTED"] = trusted
        argv = [sys.executable, str(HERE / "server_apps.py"), "hypercorn", f"{LOOPBACK}:{port}"]
        if tls:
            argv += list(tls)
    return argv, env


@contextlib.contextmanager
def server(kind: str, trusted: str = TRUSTED, tls: tuple[str, str] | None = None,
           extra_args: list[str] | None = None, **extra_env: str):
    for module in NEEDS[kind]:
        require_module(module)
    port = peers.free_port()
    argv, env = command(kind, port, trusted, tls, extra_args)
    env.update(extra_env)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        peer = peers.Peer(kind, argv, str(HERE))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        peers.wait_for_connect(LOOPBACK, port, timeout=20, proc=peer)
        yield port, peer
    finally:
        peer.stop()


def request(port: int, header: bytes, tls: bool = False) -> tuple[bytes, dict]:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    with contextlib.closing(sock):
        sock.sendall(header)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        head, _, body = recv_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return head, json.loads(body)


def refused(port: int, data: bytes) -> bool:
    """Whether the server closes the connection without answering."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        return recv_all(sock) == b""


def client_of(kind: str, report: dict) -> tuple[str, int]:
    if kind in WSGI:
        return report["REMOTE_ADDR"], int(report["REMOTE_PORT"])
    return report["client"][0], report["client"][1]


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("cert"))


GET = b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("kind", SERVERS)
def test_app_and_access_log_see_the_header_client(kind):
    with server(kind) as (port, peer):
        _, report = request(port, pp.build(CLIENT, SERVER))
        assert client_of(kind, report) == CLIENT
        assert report["header"]["source"] == {"host": CLIENT[0], "port": CLIENT[1]}
        if kind in WSGI:  # gunicorn's own PROXY_* keys, with gunicorn's meanings
            assert report["PROXY_PROTOCOL"] == "TCP4"
            assert (report["PROXY_ADDR"], report["PROXY_PORT"]) == (SERVER[0], str(SERVER[1]))
        _, report = request(port, pp.build(CLIENT6, SERVER6, version=1))
        assert client_of(kind, report) == CLIENT6[:2]
        assert report["header"]["version"] == 1
        peer.wait_for_line(lambda line: CLIENT[0] in line and "GET /who" in line)
        peer.wait_for_line(lambda line: CLIENT6[0] in line and "GET /who" in line)
        # A connection without a header is refused, and logged by the policy.
        assert refused(port, GET)
        peer.wait_for_line(lambda line: "the peer sent no PROXY header" in line)
        # ...and never reaches the application (its access log).
        assert not peer.matching(lambda line: "127.0.0.1" in line and "GET /who" in line
                                 and "PROXY header" not in line)


@pytest.mark.parametrize("kind", SERVERS)
def test_tls_after_the_header(kind, cert):
    with server(kind, tls=cert) as (port, peer):
        _, report = request(port, pp.build(CLIENT, SERVER), tls=True)
        assert client_of(kind, report) == CLIENT
        scheme = report["wsgi.url_scheme"] if kind in WSGI else report["scheme"]
        assert scheme == "https"
        peer.wait_for_line(lambda line: CLIENT[0] in line and "GET /who" in line)


@pytest.mark.parametrize("kind", SERVERS)
def test_untrusted_peer_is_refused(kind):
    with server(kind, trusted=ELSEWHERE) as (port, peer):
        assert refused(port, pp.build(CLIENT, SERVER) + GET)
        line = peer.wait_for_line(lambda line: "not in the trusted networks" in line)
        assert re.match(LOG_LINE[kind] + "closed connection from 127.0.0.1:", line), line
        assert not peer.matching(lambda line: "GET /who" in line)


@pytest.mark.parametrize("kind", ["gunicorn-sync", "gunicorn-gthread"])
def test_gunicorn_writes_the_records_to_its_error_logfile(kind, tmp_path):
    errors = tmp_path / "error.log"
    with server(kind, trusted=ELSEWHERE, extra_args=["--error-logfile", str(errors)]) as (port, peer):
        assert refused(port, pp.build(CLIENT, SERVER) + GET)
        deadline = time.monotonic() + 10
        while "not in the trusted networks" not in errors.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [line for line in errors.read_text().splitlines() if "not in the trusted networks" in line]
    assert lines and re.match(GUNICORN_WARNING, lines[0]), errors.read_text()
    assert not peer.matching(lambda line: "not in the trusted networks" in line)  # not on stderr


def _recv_some(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed early"
    return chunk


def test_uvicorn_websocket_upgrade_sees_the_header_client():
    require_module("wsproto")
    with server("uvicorn-h11") as (port, _peer):
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            key = base64.b64encode(os.urandom(16))
            sock.sendall(pp.build(CLIENT, SERVER) + b"GET /ws HTTP/1.1\r\nHost: localhost\r\n"
                         b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            # Read the 101 and the first frame only: the close handshake that
            # follows waits for a close frame this client never sends.
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 4:
                data += _recv_some(sock)
            head, _, frames = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            assert frames[0] == 0x81 and frames[1] == 126  # an unmasked text frame, 16-bit length
            length = int.from_bytes(frames[2:4], "big")
            while len(frames) < 4 + length:
                frames += _recv_some(sock)
        report = json.loads(frames[4 : 4 + length])
        assert tuple(report["client"]) == CLIENT
        assert report["header"]["source"] == {"host": CLIENT[0], "port": CLIENT[1]}


def test_uvicorn_skip_serves_untrusted_peers_as_themselves():
    with server("uvicorn-h11", trusted=ELSEWHERE, PYPROXYPROTO_ON_UNTRUSTED="skip") as (port, _):
        _, report = request(port, b"")
        assert report["client"][0] == "127.0.0.1"
        assert report["header"] is None


def test_gunicorn_proxy_protocol_info(backend):
    """gunicorn's PROXY_* / REMOTE_* keys for every kind of header, without a server."""
    require_module("gunicorn")
    from pyproxyproto.gunicorn import proxy_protocol_info

    peer = ("127.0.0.1", 40000)
    v4 = backend.parse(pp.build(("192.0.2.1", 1234), ("198.51.100.2", 443)))
    assert proxy_protocol_info(peer, v4) == {
        "proxy_protocol": "TCP4", "client_addr": "192.0.2.1", "client_port": 1234,
        "proxy_addr": "198.51.100.2", "proxy_port": 443}
    v6 = backend.parse(pp.build(("2001:db8::1", 1234, 0, 0), ("2001:db8::2", 443, 0, 0)))
    assert proxy_protocol_info(peer, v6) == {
        "proxy_protocol": "TCP6", "client_addr": "2001:db8::1", "client_port": 1234,
        "proxy_addr": "2001:db8::2", "proxy_port": 443}
    # Without addresses REMOTE_* stay the peer's, whatever kind of address it is.
    local = backend.parse(pp.build())
    assert proxy_protocol_info(peer, local) == {
        "proxy_protocol": "LOCAL", "client_addr": "127.0.0.1", "client_port": 40000,
        "proxy_addr": None, "proxy_port": None}
    unknown = backend.parse(pp.build(version=1))
    assert proxy_protocol_info("/run/app.sock", unknown) == {
        "proxy_protocol": "UNKNOWN", "client_addr": "/run/app.sock", "client_port": None,
        "proxy_addr": None, "proxy_port": None}
    # A UNIX-family header: its paths, no ports (not a path's characters as host and port).
    unix = backend.parse(pp.build("/run/client.sock", "/run/server.sock"))
    assert proxy_protocol_info(peer, unix) == {
        "proxy_protocol": "UNIX", "client_addr": "/run/client.sock", "client_port": None,
        "proxy_addr": "/run/server.sock", "proxy_port": None}
    assert proxy_protocol_info(peer, None) is None


# -- every server drives the one handshake: the same limits and outcomes ---------------


@pytest.mark.parametrize("kind", SERVERS)
def test_a_max_header_size_above_4096_is_honoured(kind):
    # gunicorn's workers used to read the header with the default limit
    # whatever PYPROXYPROTO_MAX_HEADER_SIZE said.
    large = pp.build(CLIENT, SERVER, tlvs=[(0xE5, b"x" * 5000)])
    assert 4096 < len(large) < 8192
    with server(kind, PYPROXYPROTO_MAX_HEADER_SIZE="8192") as (port, _peer):
        _, report = request(port, large)
        assert client_of(kind, report) == CLIENT
    with server(kind) as (port, peer):
        assert refused(port, large + GET)
        peer.wait_for_line(lambda line: "more than max_header_size (4096)" in line)


def _stall(port: int, first_after: float, interval: float, data: bytes) -> float:
    """Connect, stay silent ``first_after`` seconds, then send ``data`` a byte
    every ``interval`` seconds until the server closes; return the seconds
    from connecting to the close."""
    start = time.monotonic()
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        time.sleep(first_after)
        try:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(interval)
            recv_all(sock)
        except (ConnectionError, OSError):
            pass
    return time.monotonic() - start


@pytest.mark.parametrize("kind", ["gunicorn-sync", "gunicorn-gthread"])
def test_gunicorn_times_the_header_from_accept_and_logs_a_stalled_peer(kind):
    """The deadline runs from accept, not from the first byte; a peer that
    sent part of a header and stalled is a WARNING with its byte count, a
    silent one a DEBUG record, and both are closed by the header timeout."""
    with server(kind, PYPROXYPROTO_TIMEOUT="1", extra_args=["--log-level", "debug"]) as (port, peer):
        elapsed = _stall(port, 0.6, 0.3, pp.build(CLIENT, SERVER))
        assert 0.9 <= elapsed < 2.2, elapsed
        line = peer.wait_for_line(lambda line: "no complete PROXY header within 1 s" in line
                                  and "(0 byte(s)" not in line)
        assert "[WARNING]" in line and "byte(s) received" in line
        elapsed = _stall(port, 0, 0, b"")
        assert 0.9 <= elapsed < 2.2, elapsed
        line = peer.wait_for_line(lambda line: "no complete PROXY header within 1 s (0 byte(s)" in line)
        assert "[DEBUG]" in line
