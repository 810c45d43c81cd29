"""A trusted peer that closes before its address can be read is an early
close on every loop (asyncio, uvloop, anyio on asyncio and trio): counted
``closed_early`` and logged at DEBUG, never taken for an untrusted peer."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading

import pytest

import pyproxyproto as pp
from pyproxyproto import aio

from tests.integration_helpers import LOOPBACK, require_module

CLOSERS = 40


def reset_at_once(port: int, count: int) -> None:
    """Connect and reset ``count`` times without sending a byte (SO_LINGER 0:
    the close sends RST), as fast as possible, so that some are gone before
    the server reads their address."""
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.connect((LOOPBACK, port))
        finally:
            sock.close()


def check(stats: pp.Stats, caplog) -> None:
    counts = stats.as_dict()
    assert counts["rejected_untrusted"] == 0, counts
    assert 1 <= counts["closed_early"] <= CLOSERS, counts
    assert sum(counts.values()) == counts["closed_early"], counts
    for record in caplog.records:
        if record.name == "pyproxyproto":
            assert record.levelno == logging.DEBUG, record.getMessage()


class Nothing(asyncio.Protocol):
    pass


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_aio(loop_name, header_protocol, caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    if loop_name == "uvloop":
        require_module("uvloop")
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    stats = pp.Stats()

    async def main():
        server = await loop.create_server(
            aio.wrap(Nothing, trusted=["127.0.0.0/8"], stats=stats), LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        await asyncio.to_thread(reset_at_once, port, CLOSERS)
        for _ in range(100):  # until every accepted one is counted
            await asyncio.sleep(0.02)
            if stats.closed_early and sum(stats.as_dict().values()) == stats.closed_early:
                await asyncio.sleep(0.1)
                break
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
    check(stats, caplog)


@pytest.mark.parametrize("backend_name", ["asyncio", "trio"])
def test_anyio(backend_name, caplog):
    require_module("anyio")
    if backend_name == "trio":
        require_module("trio")
    import anyio
    from anyio.abc import SocketAttribute

    from pyproxyproto.anyio import ProxyProtocolListener

    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    stats = pp.Stats()

    async def main():
        inner = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
        listener = ProxyProtocolListener(inner, trusted=["127.0.0.0/8"], stats=stats)
        port = inner.extra(SocketAttribute.local_port)

        async def handle(stream):
            await stream.aclose()

        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, handle)
            await anyio.to_thread.run_sync(reset_at_once, port, CLOSERS)
            with anyio.move_on_after(5):
                while not stats.closed_early:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.3)
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend_name)
    check(stats, caplog)
