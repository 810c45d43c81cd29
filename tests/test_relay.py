"""``pyproxyproto relay``: the header it prepends, bytes both ways with
half-closes and flow control, its bounds, and a clean stop; end to end in
front of the echo app, from an IPv6 client to an IPv4 backend."""

import asyncio
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import aio
from pyproxyproto._relay import Relay

from tests.integration_helpers import (
    LOOPBACK,
    EchoProcess,
    connect,
    listener,
    recv_all,
    require,
    run,
)
from tests.peers import ipv6_loopback


async def backend(handle):
    """An asyncio server on loopback that reads the header, then calls handle."""
    headers = []

    async def serve(reader, writer):
        headers.append(await aio.read_header(reader, timeout=5))
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    return server, server.sockets[0].getsockname(), headers


async def digest_after_eof(reader, writer):
    """Read to the client's end of file, then answer with a large reply and its digest."""
    h = hashlib.sha256()
    while chunk := await reader.read(65536):
        h.update(chunk)
    reply = h.digest() * (1 << 17)  # 4 MiB
    writer.write(reply + hashlib.sha256(reply).digest())
    await writer.drain()


async def open_relay(to, **options):
    relay = Relay((LOOPBACK, 0), to, **options)
    (address,) = await relay.start()
    return relay, address


def test_header_half_close_and_flow_control_both_ways():
    async def main():
        server, to, headers = await backend(digest_after_eof)
        relay, address = await open_relay(to)
        reader, writer = await asyncio.open_connection(*address)
        payload = os.urandom(4 << 20)
        writer.write(payload)
        writer.write_eof()  # the reply comes only after the backend sees this
        reply = await reader.read()
        client = writer.get_extra_info("sockname")
        writer.close()
        await relay.close()
        server.close()
        return headers, reply, payload, client, address

    headers, reply, payload, client, address = run(main(), timeout=60)
    (header,) = headers
    assert header.version == 2 and header.source == client and header.destination == address
    body, digest = reply[:-32], reply[-32:]
    assert len(body) == 4 << 20 and hashlib.sha256(body).digest() == digest
    assert body[:32] == hashlib.sha256(payload).digest()


@pytest.mark.parametrize(
    "options, check",
    [
        ({"version": 1}, lambda h: h.version == 1),
        ({"tlvs": [(0xE0, b"\x01\x02")], "crc32c": True},
         lambda h: h.version == 2 and h.crc32c is not None
         and [tlv for tlv in h.tlvs if tlv[0] == 0xE0] == [(0xE0, b"\x01\x02")]),
    ],
    ids=["v1", "tlv-crc32c"],
)
def test_header_options(options, check):
    async def echo_back(reader, writer):
        writer.write(await reader.readexactly(4))
        await writer.drain()

    async def main():
        server, to, headers = await backend(echo_back)
        relay, address = await open_relay(to, **options)
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"ping")
        reply = await reader.read()
        writer.close()
        await relay.close()
        server.close()
        return headers, reply

    headers, reply = run(main())
    assert reply == b"ping"
    (header,) = headers
    assert check(header), header


def test_bad_header_options_fail_at_once():
    with pytest.raises(ValueError, match="v1 carries no TLVs"):
        Relay((LOOPBACK, 0), (LOOPBACK, 1), version=1, tlvs=[(0xE0, b"")])


def test_unreachable_backend_closes_the_client_and_logs(caplog):
    with listener() as lsock:
        closed_port = lsock.getsockname()[1]

    async def main():
        relay, address = await open_relay((LOOPBACK, closed_port))
        reader, writer = await asyncio.open_connection(*address)
        reply = await reader.read()
        writer.close()
        await relay.close()
        return reply

    with caplog.at_level(logging.WARNING, logger="pyproxyproto.relay"):
        assert run(main()) == b""
    (message,) = [r.getMessage() for r in caplog.records if r.name == "pyproxyproto.relay"]
    assert f"cannot connect to {LOOPBACK}:{closed_port}" in message


def test_connections_beyond_the_limit_are_closed(caplog):
    async def hold(reader, writer):
        await reader.read()  # until the relay goes

    async def main():
        server, to, headers = await backend(hold)
        relay, address = await open_relay(to, max_connections=2)
        held = [await asyncio.open_connection(*address) for _ in range(2)]
        while len(headers) < 2:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*address)
        refused = await reader.read()
        writer.close()
        # Closing the relay ends the held connections too.
        await relay.close()
        ends = [await r.read() for r, _ in held]
        for _, w in held:
            w.close()
        server.close()
        return refused, ends

    with caplog.at_level(logging.WARNING, logger="pyproxyproto.relay"):
        refused, ends = run(main())
    assert refused == b"" and ends == [b"", b""]
    assert any("2 connections already open" in r.getMessage() for r in caplog.records)


# -- the command, end to end ---------------------------------------------------------


class RelayProcess:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyproxyproto", "relay", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.banner = self.proc.stdout.readline()
        match = re.search(r"^relaying \[?([^\]]+?)\]?:(\d+) -> ", self.banner)
        if match is None:
            self.proc.kill()
            raise AssertionError(f"no banner: {self.banner!r} {self.proc.stderr.read()}")
        self.address = (match.group(1), int(match.group(2)))

    def stop(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def echo():
    app = EchoProcess()
    yield app
    app.stop()


def test_ipv6_client_through_the_relay_to_an_ipv4_echo_app(echo):
    require(ipv6_loopback(), "an IPv6 loopback address (::1)")
    relay = RelayProcess("--listen", "[::1]:0", "--to", f"{LOOPBACK}:{echo.proxy_port}")
    try:
        assert relay.address[0] == "::1"
        with socket.create_connection(relay.address, timeout=5) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(b"GET /via-relay HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n")
            reply = recv_all(sock).decode()
    finally:
        code, out, err = relay.stop()
    assert "\tclient_address=::1\n" in reply
    assert f"\tsource=[::1]:{client_port}\n" in reply
    assert f"\tdestination=[::1]:{relay.address[1]}\n" in reply
    assert f"\tproxy_peer={LOOPBACK}:" in reply  # the relay reached it over IPv4
    (line,) = [line for line in echo.access_log() if line["uri"] == "/via-relay"]
    assert line["client"] == f"[::1]:{client_port}"
    assert line["proxy_peer"].startswith(f"{LOOPBACK}:")
    assert code == 0 and out == "stopped\n", err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_it_cleanly_with_a_connection_open(echo, signum):
    relay = RelayProcess("--listen", f"{LOOPBACK}:0", "--to", f"{LOOPBACK}:{echo.proxy_port}",
                         "--version", "1")
    with connect(relay.address) as sock:
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: echo.test\r\n\r\n")  # keep-alive
        reply = b""
        while b"Request Body:" not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert b"\tversion=1\n" in reply
        code, out, err = relay.stop(signum)
        assert recv_all(sock) == b""  # the relay closed it
    assert code == 0 and out == "stopped\n", err
    assert "Traceback" not in err


def test_busy_port_names_the_address():
    with listener() as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "pyproxyproto", "relay", "--listen", f"{LOOPBACK}:{port}",
             "--to", f"{LOOPBACK}:1"],
            capture_output=True, text=True, timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"pyproxyproto relay: cannot listen on {LOOPBACK}:{port}: ")


def test_bad_options_are_usage_errors():
    done = subprocess.run(
        [sys.executable, "-m", "pyproxyproto", "relay", "--listen", f"{LOOPBACK}:0",
         "--to", f"{LOOPBACK}:1", "--version", "1", "--crc32c"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2 and "cannot build that header" in done.stderr
