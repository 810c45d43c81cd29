"""The sending side: aio.open_connection and sockets.create_connection send
one header first, exactly once, then the caller's bytes, in plaintext before TLS."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from tests.integration_helpers import (
    CLIENT,
    LOOPBACK,
    SERVER,
    listener,
    run,
    self_signed_cert,
)

import pyproxyproto as pp
from pyproxyproto import aio, sockets

HEADER_V2 = pp.build(CLIENT, SERVER)
HEADER_V1 = pp.build(CLIENT, SERVER, version=1)


def _received(listening: socket.socket, results: list[bytes]) -> threading.Thread:
    def serve() -> None:
        conn, _ = listening.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            results.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("header", [HEADER_V1, HEADER_V2], ids=["v1", "v2"])
def test_create_connection_sends_the_header_first_exactly_once(header):
    results: list[bytes] = []
    with listener() as listening:
        thread = _received(listening, results)
        with sockets.create_connection(listening.getsockname(), header=header, timeout=5) as sock:
            sock.sendall(b"hello")
        thread.join(5)
    assert results == [header + b"hello"]


@pytest.mark.parametrize("header", [HEADER_V1, HEADER_V2], ids=["v1", "v2"])
def test_open_connection_sends_the_header_first_exactly_once(header):
    results: list[bytes] = []

    async def main(address):
        _, writer = await aio.open_connection(*address, header=bytearray(header))
        writer.write(b"hello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    with listener() as listening:
        thread = _received(listening, results)
        run(main(listening.getsockname()))
        thread.join(5)
    assert results == [header + b"hello"]


@pytest.mark.parametrize(
    "bad, error",
    [
        ("PROXY UNKNOWN\r\n", TypeError),
        (pp.build(CLIENT, SERVER)[:-1], ValueError),  # incomplete
        (HEADER_V1 + HEADER_V2, ValueError),  # two headers
        (HEADER_V2 + b"GET", ValueError),  # data after it
        (b"GET / HTTP/1.1\r\n", ValueError),  # no header
    ],
)
def test_anything_but_one_header_is_refused_before_connecting(bad, error):
    # Port 9 on loopback is never reached: the check comes first.
    with pytest.raises(error):
        sockets.create_connection((LOOPBACK, 9), header=bad)
    with pytest.raises(error):
        run(aio.open_connection(LOOPBACK, 9, header=bad))


def test_open_connection_with_ssl_sends_the_header_in_plaintext_before_tls(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    seen: list[object] = []

    async def main():
        async def handle(reader, writer):
            seen.append(writer.get_extra_info("peername"))
            seen.append(await reader.readexactly(5))
            writer.write(b"bye")
            await writer.drain()
            writer.close()

        server = await aio.start_server(handle, LOOPBACK, 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await aio.open_connection(
                LOOPBACK, port, header=HEADER_V2, ssl=client_context
            )
            assert writer.get_extra_info("ssl_object") is not None
            writer.write(b"hello")
            assert await reader.read() == b"bye"
            writer.close()

    run(main())
    assert seen == [CLIENT, b"hello"]
