"""Blocking sockets: exact header reads over real loopback connections."""

import hashlib
import logging
import os
import socket
import socketserver
import threading
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import sockets

from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    LOOPBACK,
    SERVER,
    SERVER6,
    closed_by_peer,
    connect,
    dribble,
    listener,
    recv_all,
    rejections,
    tcp_pair,
)

V1 = pp.build(CLIENT, SERVER, version=1)
V2 = pp.build(CLIENT, SERVER, tlvs=[(0x05, b"id-1")], crc32c=True)
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
HEADERS = {"v1": V1, "v2": V2}


def in_thread(target, *args):
    """Start target(*args) in a thread; the returned dict gets 'result' or 'error'."""
    out = {}

    def runner():
        try:
            out["result"] = target(*args)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    out["thread"] = t
    return out


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_header_and_payload_in_one_segment(name):
    with tcp_pair() as (server, client):
        client.sendall(HEADERS[name] + PAYLOAD)
        header = sockets.recv_header(server, timeout=2)
        assert header.source == CLIENT and header.destination == SERVER
        assert header.length == len(HEADERS[name])
        server.settimeout(2)
        assert server.recv(4096) == PAYLOAD


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_every_split_point(name):
    data = HEADERS[name] + PAYLOAD
    for split in range(1, len(data)):
        with tcp_pair() as (server, client):
            client.sendall(data[:split])
            job = in_thread(sockets.recv_header, server)
            time.sleep(0.002)
            client.sendall(data[split:])
            job["thread"].join(5)
            assert job["result"].source == CLIENT, split
            server.settimeout(2)
            rest = b""
            while len(rest) < len(PAYLOAD):
                rest += server.recv(4096)
            assert rest == PAYLOAD, split


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_byte_by_byte_within_the_timeout(name):
    with tcp_pair() as (server, client):
        job = in_thread(dribble, client, HEADERS[name] + b"!", 0.003)
        header = sockets.recv_header(server, timeout=2)
        job["thread"].join(5)
        assert header.source == CLIENT
        server.settimeout(2)
        assert server.recv(10) == b"!"


def test_one_mebibyte_payload_arrives_intact():
    payload = os.urandom(1 << 20)
    with tcp_pair() as (server, client):
        job = in_thread(client.sendall, V2 + payload)
        assert sockets.recv_header(server, timeout=2).source == CLIENT
        server.settimeout(5)
        received = bytearray()
        while len(received) < len(payload):
            chunk = server.recv(1 << 16)
            assert chunk
            received += chunk
        job["thread"].join(5)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_infinite_timeout_waits_without_a_limit():
    with tcp_pair() as (server, client):
        server.settimeout(3.0)
        job = in_thread(lambda: sockets.recv_header(server, timeout=float("inf")))
        client.sendall(V2[:5])
        time.sleep(0.05)
        client.sendall(V2[5:] + PAYLOAD)
        job["thread"].join(5)
        assert "error" not in job, job.get("error")
        assert job["result"].source == CLIENT
        assert server.gettimeout() == 3.0


def test_socketserver_listens_with_asyncios_backlog():
    from pyproxyproto._echo import ProxyEchoServer

    assert sockets.ProxyProtocolMixin.request_queue_size == 100
    assert ProxyEchoServer.request_queue_size == 100


def test_large_v2_header():
    header = pp.build(CLIENT, SERVER, tlvs=[(0xE5, b"x" * 60000)])
    with tcp_pair() as (server, client):
        job = in_thread(client.sendall, header + PAYLOAD)
        parsed = sockets.recv_header(server, timeout=2, max_header_size=65551)
        assert parsed.tlvs == ((0xE5, b"x" * 60000),)
        job["thread"].join(5)
        server.settimeout(2)
        assert server.recv(4096) == PAYLOAD


def test_slowloris_is_cut_at_the_deadline_not_before():
    timeout = 0.5
    with tcp_pair() as (server, client):
        stop = threading.Event()

        def slowloris():
            for byte in V2:
                if stop.wait(0.05):
                    return
                client.sendall(bytes([byte]))

        job = in_thread(slowloris)
        start = time.monotonic()
        with pytest.raises(pp.HeaderTimeout) as info:
            sockets.recv_header(server, timeout=timeout)
        elapsed = time.monotonic() - start
        stop.set()
        job["thread"].join(5)
    assert isinstance(info.value, TimeoutError)
    assert "within 0.5 s" in str(info.value)
    # The lower bound allows for coarse OS timers.
    assert timeout - 0.02 <= elapsed < timeout + 0.3


@pytest.mark.parametrize("own_timeout", [None, 7.0, 0.0])
def test_the_socket_timeout_is_left_as_found(own_timeout):
    with tcp_pair() as (server, client):
        server.settimeout(own_timeout)
        client.sendall(V2)
        sockets.recv_header(server, timeout=1)
        assert server.gettimeout() == own_timeout
        with pytest.raises(pp.HeaderTimeout):
            sockets.recv_header(server, timeout=0.05)
        assert server.gettimeout() == own_timeout


def test_peer_closing_mid_header_raises_connection_closed():
    with tcp_pair() as (server, client):
        client.sendall(V2[:20])
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(pp.ConnectionClosed, match="connection closed after 20 byte") as info:
            sockets.recv_header(server, timeout=2)
        assert (info.value.received, info.value.needed) == (20, len(V2))


@pytest.mark.parametrize(
    "data, options",
    [
        (b"GET / HTTP/1.1\r\n\r\n", {}),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", {}),
        (V2, {"v2": False}),
        (V1, {"v1": False}),
    ],
)
def test_invalid_headers_raise(data, options):
    with tcp_pair() as (server, client):
        client.sendall(data)
        with pytest.raises(pp.InvalidHeader):
            sockets.recv_header(server, timeout=2, **options)


def test_datagram_sockets_are_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="stream socket"):
            sockets.recv_header(udp)


# -- accept() ----------------------------------------------------------------


def accept_with(data, timeout=1, **options):
    """Connect, send data, and run accept(); return (outcome, client socket)."""
    with listener() as lsock:
        client = connect(lsock.getsockname())
        client.sendall(data)
        try:
            conn, address, header = sockets.accept(lsock, timeout=timeout, **options)
        except Exception as exc:
            return exc, client
        with conn:
            conn.settimeout(2)
            rest = conn.recv(4096)
            conn.sendall(b"bye")
        return (address, header, rest), client


def test_accept_returns_the_real_client(caplog):
    (address, header, rest), client = accept_with(V2 + PAYLOAD, trusted=["127.0.0.0/8"])
    with client:
        assert recv_all(client) == b"bye"
    assert address == CLIENT and header.unique_id == b"id-1" and rest == PAYLOAD
    assert not rejections(caplog)


def test_accept_ipv6_source():
    (address, header, _), client = accept_with(pp.build(CLIENT6, SERVER6) + b"x")
    client.close()
    assert address == CLIENT6 and header.destination == SERVER6


def test_ipv4_mapped_peer_matches_an_ipv4_range():
    lsock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.bind(("::ffff:127.0.0.1", 0))
        lsock.listen(1)
    except (OSError, AttributeError):
        lsock.close()
        pytest.skip("no dual-stack loopback socket here")
    with lsock, connect((LOOPBACK, lsock.getsockname()[1])) as client:
        client.sendall(V2)
        conn, address, header = sockets.accept(lsock, trusted=["127.0.0.0/8"], timeout=1)
        with conn:
            assert conn.getpeername()[0] == "::ffff:127.0.0.1"
    assert address == CLIENT and header is not None


def test_accept_rejects_untrusted_before_reading(caplog):
    outcome, client = accept_with(V2 + PAYLOAD, trusted=["10.0.0.0/8"])
    with client:
        assert isinstance(outcome, pp.UntrustedPeer)
        assert closed_by_peer(client)
    [message] = rejections(caplog)
    assert "127.0.0.1:" in message and "not in the trusted networks" in message


def test_accept_ignore_keeps_the_socket_peer_and_consumes_the_header(caplog):
    (address, header, rest), client = accept_with(
        V2 + PAYLOAD, trusted=["10.0.0.0/8"], on_untrusted="ignore"
    )
    with client:
        assert address == client.getsockname()
    assert header is None and rest == PAYLOAD
    assert not rejections(caplog)


def test_accept_ignore_still_requires_a_header(caplog):
    outcome, client = accept_with(PAYLOAD, trusted=["10.0.0.0/8"], on_untrusted="ignore")
    client.close()
    assert isinstance(outcome, pp.InvalidHeader)
    assert len(rejections(caplog)) == 1


def test_accept_invalid_header_is_closed_and_logged_once(caplog):
    outcome, client = accept_with(b"\r\n\r\n\x00\r\nQUIT\n\x31" + bytes(30))
    with client:
        assert isinstance(outcome, pp.InvalidHeader)
        assert closed_by_peer(client)
    [message] = rejections(caplog)
    assert "127.0.0.1:" in message and "v2:" in message


def test_accept_timeout_is_logged(caplog):
    outcome, client = accept_with(V2[:5], timeout=0.3)
    client.close()
    assert isinstance(outcome, pp.HeaderTimeout)
    [message] = rejections(caplog)
    assert "no complete PROXY header within 0.3 s (5 byte(s) received)" in message


@pytest.mark.parametrize("header", [pp.build(command=pp.Command.LOCAL), b"PROXY UNKNOWN\r\n",
                                    pp.build(CLIENT, SERVER, command=pp.Command.LOCAL)])
def test_accept_local_and_unknown_keep_the_real_address(header):
    (address, parsed, rest), client = accept_with(header + PAYLOAD)
    client.close()
    assert address[0] == LOOPBACK and parsed.length == len(header) and rest == PAYLOAD


# -- socketserver ------------------------------------------------------------


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        header = self.server.proxy_header(self.request)
        line = self.rfile.readline().strip()
        version = header.version if header else None
        self.wfile.write(f"{self.client_address[0]} {version} {line.decode()}".encode())


class Server(sockets.ProxyProtocolMixin, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def serve():
    started = []

    def start(**options):
        server = Server((LOOPBACK, 0), Handler, **options)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server.server_address

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def exchange(address, data):
    with connect(address) as client:
        client.sendall(data)
        return recv_all(client)


def test_socketserver_handler_sees_the_real_client(serve, caplog):
    address = serve(trusted=["127.0.0.0/8"], timeout=1)
    assert exchange(address, V2 + b"hello\n") == b"203.0.113.7 2 hello"
    assert exchange(address, V1 + b"hi\n") == b"203.0.113.7 1 hi"
    assert not rejections(caplog)


def test_socketserver_rejects_untrusted_and_invalid(serve, caplog):
    assert exchange(serve(trusted=["10.0.0.0/8"]), V2 + b"hello\n") == b""
    assert exchange(serve(), b"hello\n") == b""
    messages = rejections(caplog)
    assert len(messages) == 2
    assert "not in the trusted networks" in messages[0] and "invalid" not in messages[0]


def test_socketserver_ignore(serve):
    address = serve(trusted=["10.0.0.0/8"], on_untrusted="ignore")
    assert exchange(address, V2 + b"hello\n") == b"127.0.0.1 None hello"


def test_socketserver_slow_peer_does_not_block_others(serve, caplog):
    caplog.set_level(logging.WARNING, logger="pyproxyproto")
    address = serve(timeout=0.5)
    with connect(address) as idle:
        idle.sendall(V2[:3])
        start = time.monotonic()
        assert exchange(address, V2 + b"quick\n") == b"203.0.113.7 2 quick"
        assert time.monotonic() - start < 0.4
        assert closed_by_peer(idle)
    assert "within 0.5 s" in rejections(caplog)[0]
