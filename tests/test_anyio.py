"""pyproxyproto.anyio on the asyncio and trio backends: the real client from
the header, exact bytes after it, TLS after it, and every refusal."""

from __future__ import annotations

import socket
import ssl

import pytest
from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    IN_CI,
    LOOPBACK,
    SERVER,
    SERVER6,
    recv_all,
    require_module,
    self_signed_cert,
)

import pyproxyproto as pp

try:
    import anyio
except ImportError:
    if IN_CI:
        raise
    pytest.skip("anyio is not installed (the test extra has it)", allow_module_level=True)
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from pyproxyproto.anyio import ProxyProtocolAttribute, ProxyProtocolListener


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    if request.param == "trio":
        require_module("trio")
    return request.param


def serve_once(anyio_backend, client, handler, *, tls=None, **options):
    """Serve one connection through a ProxyProtocolListener; run ``client(port)``
    in a thread; return what the handler put in the result dict."""
    result: dict = {}

    async def main():
        inner = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
        listener = ProxyProtocolListener(inner, **options)
        port = inner.extra(SocketAttribute.local_port)

        async def handle(stream):
            try:
                await handler(stream, result)
            finally:
                await stream.aclose()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                result["client"] = await anyio.to_thread.run_sync(client, port)
                tg.cancel_scope.cancel()
        await listener.aclose()

    anyio.run(main, backend=anyio_backend)
    return result


def connect_and_send(data: bytes, *, read: bool = True):
    def client(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                return b""  # already closed by the server
            return recv_all(sock)

    return client


async def echo_attributes(stream, result):
    result["remote"] = stream.extra(SocketAttribute.remote_address)
    result["remote_port"] = stream.extra(SocketAttribute.remote_port)
    result["local"] = stream.extra(SocketAttribute.local_address)
    result["header"] = stream.extra(ProxyProtocolAttribute.header)
    result["proxy"] = stream.extra(ProxyProtocolAttribute.proxy_address)
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        pass
    result["data"] = data
    await stream.send(b"ok")


PAYLOAD = bytes(range(256)) * 300  # more than one receive's worth


@pytest.mark.parametrize(
    "client, server, version",
    [(CLIENT, SERVER, 1), (CLIENT, SERVER, 2), (CLIENT6, SERVER6, 2)],
    ids=["v1", "v2", "v2-ipv6"],
)
def test_real_client_and_exact_bytes(anyio_backend, client, server, version):
    header = pp.build(client, server, version=version, tlvs=[(0x05, b"id")] if version == 2 else ())
    result = serve_once(anyio_backend, connect_and_send(header + PAYLOAD), echo_attributes)
    assert result["remote"] == client[:2]
    assert result["remote_port"] == client[1]
    assert result["local"] == server[:2]
    assert result["header"].source == client
    assert result["proxy"][0] == LOOPBACK
    assert result["data"] == PAYLOAD
    assert result["client"] == b"ok"


def test_header_split_byte_by_byte(anyio_backend):
    header = pp.build(CLIENT, SERVER, version=1)

    def client(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(header)):
                sock.sendall(header[i : i + 1])
            sock.sendall(b"rest")
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(10)

    result = serve_once(anyio_backend, client, echo_attributes)
    assert result["remote"] == CLIENT and result["data"] == b"rest"


def test_bare_connection_is_refused(anyio_backend):
    stats = pp.Stats()
    result = serve_once(
        anyio_backend, connect_and_send(b"GET / HTTP/1.1\r\n\r\n"), echo_attributes, stats=stats
    )
    assert result == {"client": b""}  # closed; the handler never ran
    assert stats.rejected_invalid == 1


def test_untrusted_peer_is_refused_before_a_byte_is_read(anyio_backend):
    stats = pp.Stats()
    header = pp.build(CLIENT, SERVER)
    result = serve_once(
        anyio_backend, connect_and_send(header), echo_attributes,
        trusted=["192.0.2.0/24"], stats=stats,
    )
    assert result == {"client": b""}
    assert stats.rejected_untrusted == 1


def test_skip_serves_the_peer_as_itself(anyio_backend):
    result = serve_once(
        anyio_backend, connect_and_send(b"plain"), echo_attributes,
        trusted=["192.0.2.0/24"], on_untrusted="skip",
    )
    assert result["remote"][0] == LOOPBACK and result["header"] is None
    assert result["data"] == b"plain"


def test_timeout_and_early_close(anyio_backend):
    stats = pp.Stats()

    def silent(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.sendall(b"PROXY TCP4")
            return recv_all(sock)

    result = serve_once(anyio_backend, silent, echo_attributes, timeout=0.2, stats=stats)
    assert result == {"client": b""} and stats.timed_out == 1
    result = serve_once(anyio_backend, connect_and_send(b"\r\n\r\n\x00"), echo_attributes, stats=stats)
    assert result == {"client": b""} and stats.closed_early == 1


def test_tls_after_the_header(anyio_backend, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    header = pp.build(CLIENT, SERVER)

    async def handler(stream, result):
        tls = await TLSStream.wrap(stream, ssl_context=server_context, standard_compatible=False)
        result["remote"] = tls.extra(SocketAttribute.remote_address)
        result["data"] = await tls.receive()
        await tls.send(b"secret ok")

    def client(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
            raw.sendall(header)
            with client_context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"secret")
                return sock.recv(100)

    result = serve_once(anyio_backend, client, handler)
    assert result == {"remote": CLIENT, "data": b"secret", "client": b"secret ok"}


def test_validate_refuses_a_header(anyio_backend):
    stats = pp.Stats()

    def validate(header):
        raise ValueError("not this one")

    result = serve_once(
        anyio_backend, connect_and_send(pp.build(CLIENT, SERVER)), echo_attributes,
        validate=validate, stats=stats,
    )
    assert result == {"client": b""} and stats.rejected_by_validator == 1
