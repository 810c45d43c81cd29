"""A small TCP relay that puts a PROXY header in front of each connection.

``pyproxyproto relay --listen HOST:PORT --to HOST:PORT`` plays the load
balancer on a laptop: for each client it connects to the backend, writes a
header built with ``pp.build`` from the client's real address and the
address the client connected to, then copies bytes both ways.  An end of
file in one direction is passed on as a half-close (``write_eof``), so a
client that shuts down its sending side still gets the whole reply; the
connection is closed when both directions have ended, or at once when
either side resets.  Each direction holds at most one read (CHUNK bytes)
while the other side drains: flow control, not buffering.  At most
``max_connections`` are relayed at once; more are closed on accept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from ._build import build
from ._log import format_address

logger = logging.getLogger("pyproxyproto.relay")

CHUNK = 64 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 512
CLOSE_TIMEOUT = 10.0  # for a peer to take the last bytes of a finished connection


class Relay:
    """Listen on ``listen`` (host, port), relay each connection to ``to`` with a header."""

    def __init__(
        self,
        listen: tuple[str, int],
        to: tuple[str, int],
        *,
        version: int = 2,
        tlvs: Sequence[tuple[int, bytes]] = (),
        crc32c: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        # Fail now, not per connection, on options build() refuses.
        build(("192.0.2.1", 1), ("192.0.2.2", 2), version=version, tlvs=tlvs, crc32c=crc32c)
        self.listen = listen
        self.to = to
        self.version = version
        self.tlvs = list(tlvs)
        self.crc32c = crc32c
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> list[tuple[Any, ...]]:
        """Start listening; return the bound addresses (port 0 picks one)."""
        self._server = await asyncio.start_server(self._accepted, *self.listen, limit=CHUNK)
        return [sock.getsockname() for sock in self._server.sockets]

    async def close(self) -> None:
        """Stop accepting, end every relayed connection, and wait for them."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("peername")
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= self.max_connections:
            logger.warning("relay: refused %s: %d connections already open",
                           format_address(client), self.max_connections)
            writer.transport.abort()
            return
        self._tasks.add(task)
        try:
            up_writer = await self._relay(reader, writer, client)
        except asyncio.CancelledError:
            writer.transport.abort()  # shutting down
        except OSError as exc:  # a reset in either direction ends both
            logger.info("relay: %s: %s", format_address(client), exc)
            writer.transport.abort()
        else:
            await _close(writer)
            if up_writer is not None:
                await _close(up_writer)
        finally:
            self._tasks.discard(task)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: Any
    ) -> asyncio.StreamWriter | None:
        """Relay one connection until both directions have ended; return the backend's writer."""
        header = build(client, writer.get_extra_info("sockname"), version=self.version,
                       tlvs=self.tlvs, crc32c=self.crc32c)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.to, limit=CHUNK), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            logger.warning("relay: %s: cannot connect to %s: %s", format_address(client),
                           format_address(self.to), exc or "timed out")
            return None
        directions = [
            asyncio.ensure_future(_copy(reader, up_writer, first=header)),
            asyncio.ensure_future(_copy(up_reader, writer)),
        ]
        try:
            done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the reset that ended it
        except BaseException:
            up_writer.transport.abort()
            raise
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
        return up_writer


async def _copy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes = b""
) -> None:
    """Copy until end of file, then half-close the other side's sending direction."""
    data = first
    while True:
        if data:
            writer.write(data)
            await writer.drain()
        data = await reader.read(CHUNK)
        if not data:
            break
    if writer.can_write_eof():
        writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after what is buffered is sent; abort a peer that will not take it."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        writer.transport.abort()
