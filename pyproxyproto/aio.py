"""PROXY protocol for asyncio servers.

``wrap`` puts a header reader in front of any asyncio Protocol (plain or
buffered), so servers built on ``loop.create_server`` (aiohttp, uvicorn,
your own) see the real client without being changed: the inner protocol is
created only once the header has been parsed, its transport reports the
header's addresses, and the bytes that came after the header are handed to
it, in order, as its first data.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import ssl as _ssl
import sys
from asyncio import sslproto
from typing import Any, Callable

from . import parse
from ._errors import HeaderTimeout, Incomplete, ProxyProtocolError
from ._policy import (
    DEFAULT_TIMEOUT,
    Policy,
    check_timeout,
    check_versions,
    closed_before_header,
    log_rejection,
    timeout_message,
)

__all__ = ["open_connection", "read_header", "start_server", "wrap", "wrap_datagram"]

# asyncio's own default for StreamReader buffers.
_STREAM_LIMIT = 2**16

# Client address -> proxy address entries kept per datagram endpoint, to
# route replies back through the proxy that forwarded the client.
_DATAGRAM_ROUTES = 65536


def wrap(
    protocol_factory: Callable[..., asyncio.BaseProtocol],
    *,
    trusted: Any = None,
    on_untrusted: str = "reject",
    timeout: float | None = DEFAULT_TIMEOUT,
    v1: bool = True,
    v2: bool = True,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> Callable[..., asyncio.Protocol]:
    """Wrap a protocol factory for ``loop.create_server``.

    Once the header is parsed, the inner protocol's transport answers
    ``get_extra_info`` with the header's source for "peername", its
    destination for "sockname", the header for "proxy_header", the load
    balancer's address for "proxy_peername", and a view of the socket whose
    getpeername()/getsockname() agree; everything else passes through.
    With ``ssl``, TLS starts after the plaintext header (TLS passthrough).
    Arguments the server passes to the factory are passed on to
    ``protocol_factory``.
    """
    policy = Policy(trusted=trusted, on_untrusted=on_untrusted, timeout=timeout, v1=v1, v2=v2)
    ssl_options = {
        name: value
        for name, value in (
            ("ssl_handshake_timeout", ssl_handshake_timeout),
            ("ssl_shutdown_timeout", ssl_shutdown_timeout),
        )
        if value is not None
    }
    if ssl_options and ssl is None:
        raise ValueError(f"{', '.join(ssl_options)} is only meaningful with ssl")
    if "ssl_shutdown_timeout" in ssl_options and sys.version_info < (3, 11):
        raise ValueError("ssl_shutdown_timeout needs Python 3.11 or later")

    def factory(*args: Any, **kwargs: Any) -> asyncio.Protocol:
        return _HeaderProtocol(
            functools.partial(protocol_factory, *args, **kwargs), policy, ssl, ssl_options
        )

    return factory


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: Any = None,
    port: Any = None,
    *,
    limit: int = _STREAM_LIMIT,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    trusted: Any = None,
    on_untrusted: str = "reject",
    timeout: float | None = DEFAULT_TIMEOUT,
    v1: bool = True,
    v2: bool = True,
    **kwds: Any,
) -> asyncio.Server:
    """``asyncio.start_server`` behind a PROXY header.

    ``client_connected_cb`` runs once the header is read; the writer's
    ``get_extra_info`` reports the header's addresses as in ``wrap``.  With
    ``ssl``, the header is read in plaintext and TLS starts after it.
    Other keyword arguments go to ``loop.create_server``.
    """
    loop = asyncio.get_running_loop()

    def stream_protocol() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    factory = wrap(
        stream_protocol,
        trusted=trusted,
        on_untrusted=on_untrusted,
        timeout=timeout,
        v1=v1,
        v2=v2,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    return await loop.create_server(factory, host, port, **kwds)


async def read_header(
    reader: asyncio.StreamReader,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    v1: bool = True,
    v2: bool = True,
) -> Any:
    """Read exactly one PROXY header from a StreamReader.

    What follows the header stays in the reader.  Raises HeaderTimeout
    after ``timeout`` seconds, ConnectionClosed if the stream ends mid-header,
    InvalidHeader for a bad one.
    """
    check_timeout(timeout)
    check_versions(v1, v2)
    data = bytearray()
    try:
        return await asyncio.wait_for(_read_header(reader, data, v1, v2), timeout)
    except asyncio.TimeoutError:
        raise HeaderTimeout(timeout_message(timeout, len(data))) from None


async def _read_header(reader: asyncio.StreamReader, data: bytearray, v1: bool, v2: bool) -> Any:
    while True:
        try:
            return parse(data, v1=v1, v2=v2)
        except Incomplete as exc:
            needed = exc.needed
        # Never more than the parser asks for, so no payload byte is taken.
        try:
            data += await reader.readexactly(needed - len(data))
        except asyncio.IncompleteReadError as exc:
            data += exc.partial
            raise closed_before_header(len(data), needed) from None


class _HeaderProtocol(asyncio.Protocol):
    """Reads the header, then hands the connection to the inner protocol."""

    def __init__(
        self,
        make_protocol: Callable[[], asyncio.BaseProtocol],
        policy: Policy,
        ssl: _ssl.SSLContext | None,
        ssl_options: dict[str, float],
    ) -> None:
        self._make_protocol = make_protocol
        self._policy = policy
        self._ssl = ssl
        self._ssl_options = ssl_options
        self._transport: Any = None
        self._peer: Any = None
        self._trusted = True
        self._buffer: bytearray | None = None
        self._needed = 0  # the length the parser last asked for
        self._received = 0
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._peer = transport.get_extra_info("peername")
        self._trusted = self._policy.trusts(self._peer)
        if not self._trusted and self._policy.on_untrusted == "reject":
            self._give_up("peer is not in the trusted networks")
            return
        if self._policy.timeout is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._policy.timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        if self._buffer is None:
            buffer: Any = data  # the usual case: the whole header in one read
        else:
            self._buffer += data
            buffer = self._buffer
            if len(buffer) < self._needed:
                return  # a long v2 header still arriving: nothing to decide yet
        try:
            header = parse(buffer, v1=self._policy.v1, v2=self._policy.v2)
        except Incomplete as exc:
            self._needed = exc.needed
            if self._buffer is None:
                self._buffer = bytearray(data)
            return
        except ProxyProtocolError as exc:
            self._give_up(f"invalid PROXY header: {exc}")
            return
        self._finish()
        self._buffer = None
        self._hand_over(header, memoryview(buffer)[header.length :])

    def eof_received(self) -> bool:
        # A connect-and-close (a TCP health check) is not worth a warning.
        level = logging.WARNING if self._received else logging.DEBUG
        needed = max(self._needed, self._received + 1)
        self._give_up(str(closed_before_header(self._received, needed)), level)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            level = logging.WARNING if self._received else logging.DEBUG
            self._give_up(f"connection lost before the PROXY header ({exc})", level)

    def _expire(self) -> None:
        self._timer = None
        self._give_up(timeout_message(self._policy.timeout, self._received))

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _give_up(self, reason: str, level: int = logging.WARNING) -> None:
        self._finish()
        log_rejection("closed connection", self._peer, reason, level)
        self._transport.close()

    def _hand_over(self, header: Any, rest: memoryview) -> None:
        real = self._transport
        extra: dict[str, Any] = {"proxy_peername": self._peer}
        if not self._trusted:
            # on_untrusted="ignore": consumed, not believed.
            extra["proxy_header"] = None
        else:
            extra["proxy_header"] = header
            if header.source is not None:  # not LOCAL, not UNKNOWN
                extra["peername"] = header.source
                extra["sockname"] = header.destination
                sock = real.get_extra_info("socket")
                if sock is not None:
                    extra["socket"] = _SocketView(sock, header.source, header.destination)
        transport = _ProxiedTransport(real, extra, rest)
        protocol: asyncio.BaseProtocol = self._make_protocol()
        if self._ssl is not None:
            # What loop.create_server(ssl=...) builds for each connection;
            # here it is fed the bytes that followed the header, which
            # start the TLS handshake.
            protocol = sslproto.SSLProtocol(
                asyncio.get_running_loop(),
                protocol,
                self._ssl,
                None,
                server_side=True,
                **self._ssl_options,
            )
        transport.connect(protocol)


class _SocketView:
    """The transport's socket as the application should see it: servers that
    ask the socket for the peer (uvicorn does) get the header's addresses."""

    __slots__ = ("_sock", "_peername", "_sockname")

    def __init__(self, sock: Any, peername: Any, sockname: Any) -> None:
        self._sock = sock
        self._peername = peername
        self._sockname = sockname

    def getpeername(self) -> Any:
        return self._peername

    def getsockname(self) -> Any:
        return self._sockname

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<proxied {self._sock!r} peername={self._peername!r}>"


class _ProxiedTransport(asyncio.Transport):
    """The real transport, with the header's addresses in its extra info.

    It also delivers the bytes that followed the header before anything
    newer, honouring pause_reading(): while such bytes are pending the
    real transport stays paused.
    """

    def __init__(self, transport: Any, extra: dict[str, Any], pending: memoryview) -> None:
        super().__init__(extra)
        self._transport = transport
        self._pending: collections.deque[memoryview] = collections.deque()
        if pending:
            self._pending.append(pending)
        self._paused = False  # as the protocol sees it
        self._real_paused = False
        self._flush_handle: asyncio.Handle | None = None

    def connect(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)
        protocol.connection_made(self)
        # Synchronous, as if the real transport had just read these bytes.
        self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        while self._pending and not self._paused and not self._transport.is_closing():
            protocol = self._transport.get_protocol()
            chunk = self._pending.popleft()
            if isinstance(protocol, asyncio.BufferedProtocol):
                buf = memoryview(protocol.get_buffer(len(chunk))).cast("B")
                n = min(len(buf), len(chunk))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:n] = chunk[:n]
                if n < len(chunk):
                    self._pending.appendleft(chunk[n:])
                protocol.buffer_updated(n)
            else:
                protocol.data_received(bytes(chunk))
        if not self._pending and not self._paused and self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def _scheduled_flush(self) -> None:
        try:
            self._flush()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # What the real transport does when a protocol callback fails.
            asyncio.get_running_loop().call_exception_handler(
                {
                    "message": "Fatal error: protocol failed on data after the PROXY header",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._transport.get_protocol(),
                }
            )
            self._transport.abort()

    # -- the asyncio.Transport interface -----------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if self._paused:
            return
        self._paused = True
        if not self._real_paused:
            self._real_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._pending:
            if self._flush_handle is None:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_soon(self._scheduled_flush)
        elif self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return not self._paused and not self._transport.is_closing()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def write(self, data: Any) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def __repr__(self) -> str:
        return f"<proxied {self._transport!r} peername={self.get_extra_info('peername')!r}>"


def wrap_datagram(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    *,
    trusted: Any = None,
    on_untrusted: str = "reject",
    v1: bool = True,
    v2: bool = True,
) -> Callable[[], asyncio.DatagramProtocol]:
    """Wrap a datagram protocol factory for ``loop.create_datagram_endpoint``.

    Every datagram carries its own header: the inner protocol's
    ``datagram_received(payload, addr)`` gets the header's source as
    ``addr``.  A datagram without a valid header, or from an untrusted peer
    under on_untrusted="reject", is dropped and logged.  Replies sent with
    ``transport.sendto(data, client_address)`` go to the proxy that last
    forwarded that client.
    """
    policy = Policy(trusted=trusted, on_untrusted=on_untrusted, v1=v1, v2=v2)

    def factory() -> asyncio.DatagramProtocol:
        return _DatagramProtocol(protocol_factory(), policy)

    return factory


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, inner: asyncio.DatagramProtocol, policy: Policy) -> None:
        self._inner = inner
        self._policy = policy
        self._routes: dict[Any, Any] = {}

    def connection_made(self, transport: Any) -> None:
        self._inner.connection_made(_DatagramTransport(transport, self))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        trusted = self._policy.trusts(addr)
        if not trusted and self._policy.on_untrusted == "reject":
            log_rejection("dropped datagram", addr, "peer is not in the trusted networks")
            return
        try:
            header = parse(data, v1=self._policy.v1, v2=self._policy.v2)
        except ProxyProtocolError as exc:
            log_rejection("dropped datagram", addr, f"invalid PROXY header: {exc}")
            return
        client = addr
        if trusted and header.source is not None:
            client = header.source
            key = _route_key(client)
            # Most recent last, so the oldest route is the first to go.
            self._routes.pop(key, None)
            self._routes[key] = addr
            if len(self._routes) > _DATAGRAM_ROUTES:
                del self._routes[next(iter(self._routes))]
        self._inner.datagram_received(data[header.length :], client)

    def error_received(self, exc: Exception) -> None:
        self._inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)


def _route_key(address: Any) -> Any:
    # (host, port) and (host, port, flowinfo, scope_id) name the same client.
    return address[:2] if isinstance(address, tuple) else address


class _DatagramTransport(asyncio.DatagramTransport):
    def __init__(self, transport: Any, owner: _DatagramProtocol) -> None:
        super().__init__()
        self._transport = transport
        self._owner = owner

    def sendto(self, data: Any, addr: Any = None) -> None:
        if addr is not None:
            addr = self._owner._routes.get(_route_key(addr), addr)
        self._transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # The new protocol too gets datagrams with their headers removed.
        self._owner._inner = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._owner._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# -- the sending side ------------------------------------------------------------------


async def open_connection(
    host: Any = None,
    port: Any = None,
    *,
    header: bytes | bytearray | memoryview,
    limit: int = _STREAM_LIMIT,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` that sends ``header`` first, exactly once.

    ``header`` is one complete header as ``pyproxyproto.build`` returns it;
    anything else (several headers, a header followed by data, a str)
    raises before connecting.  With ``ssl``, the header goes out in
    plaintext and TLS starts after it, as balancers do.  Other keyword
    arguments go to ``loop.create_connection``.
    """
    from ._build import one_header

    data = one_header(header)
    if ssl is None and (server_hostname is not None or ssl_handshake_timeout is not None):
        raise ValueError("server_hostname and ssl_handshake_timeout need ssl")
    if ssl and sys.version_info < (3, 11):
        raise ValueError("TLS after the header needs Python 3.11 or later (StreamWriter.start_tls)")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    writer.write(data)
    if ssl is not None and ssl is not False:
        context = _ssl.create_default_context() if ssl is True else ssl
        if server_hostname is None and isinstance(host, str):
            server_hostname = host
        try:
            await writer.start_tls(
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
            )
        except BaseException:
            writer.close()
            raise
    return reader, writer

