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
import logging
import ssl as _ssl
import sys
from asyncio import selector_events, sslproto
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal, TypedDict, cast

from . import _backend, parse
from ._errors import HeaderRejected, HeaderTimeout, Incomplete, ProxyProtocolError
from ._policy import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_TIMEOUT,
    REJECT,
    SKIP,
    Decision,
    PeerAddress,
    Policy,
    Stats,
    Trusted,
    check_timeout,
    check_versions,
    closed_before_header,
    timeout_message,
)
from .datagram import wrap_datagram

if TYPE_CHECKING:
    from . import ProxyHeader

__all__ = ["open_connection", "read_header", "start_server", "wrap", "wrap_datagram"]

class _SSLOptions(TypedDict, total=False):
    """The TLS options passed on to each connection's SSLProtocol."""

    ssl_handshake_timeout: float
    ssl_shutdown_timeout: float


# asyncio's own default for StreamReader buffers.
_STREAM_LIMIT = 2**16


def wrap(
    protocol_factory: Callable[..., asyncio.BaseProtocol],
    *,
    trusted: Trusted | None = None,
    on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
    policy: Callable[[PeerAddress], Decision] | None = None,
    validate: Callable[[Any], object] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    v1: bool = True,
    v2: bool = True,
    stats: Stats | None = None,
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

    Who must send a header, and what is refused, counted and logged, is
    ``pyproxyproto``'s policy (see README, "Policies"): ``trusted`` with
    ``on_untrusted`` ("reject", "ignore" or "skip"), or a ``policy``
    callable; ``validate``, ``timeout``, ``max_header_size``, ``v1``/``v2``
    and ``stats``.  A skipped peer's protocol gets the real transport.
    """
    rules = Policy(
        trusted=trusted, on_untrusted=on_untrusted, policy=policy, validate=validate,
        timeout=timeout, max_header_size=max_header_size, v1=v1, v2=v2, stats=stats,
    )
    ssl_options: _SSLOptions = {}
    if ssl_handshake_timeout is not None:
        ssl_options["ssl_handshake_timeout"] = ssl_handshake_timeout
    if ssl_shutdown_timeout is not None:
        ssl_options["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    if ssl_options and ssl is None:
        raise ValueError(f"{', '.join(ssl_options)} is only meaningful with ssl")
    if "ssl_shutdown_timeout" in ssl_options and sys.version_info < (3, 11):
        raise ValueError("ssl_shutdown_timeout needs Python 3.11 or later")

    return _factory(_Server(protocol_factory, rules, ssl, ssl_options))


def _header_reader(
    make_protocol: Callable[..., asyncio.BaseProtocol],
    policy: Policy,
    ssl: _ssl.SSLContext | None = None,
) -> Callable[..., asyncio.Protocol]:
    """``wrap`` for the server integrations: ``make_protocol(header, *args)``
    gets the header believed for the connection (None when skipped, ignored
    or refused to be believed) before the arguments the factory was called
    with, so the server can put it where its application sees it."""
    return _factory(_Server(make_protocol, policy, ssl, {}, with_header=True))


def _factory(server: _Server) -> Callable[..., asyncio.Protocol]:
    """The protocol factory of one server: each call makes a header protocol."""
    if _HeaderProtocol is _PyHeaderProtocol:
        return partial(_PyHeaderProtocol, server)
    return _compiled.Factory(server)  # type: ignore[union-attr, no-any-return]


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: Any = None,
    port: Any = None,
    *,
    limit: int = _STREAM_LIMIT,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    trusted: Trusted | None = None,
    on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
    policy: Callable[[PeerAddress], Decision] | None = None,
    validate: Callable[[Any], object] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    v1: bool = True,
    v2: bool = True,
    stats: Stats | None = None,
    **kwds: Any,
) -> asyncio.Server:
    """``asyncio.start_server`` behind a PROXY header.

    ``client_connected_cb`` runs once the header is read; the writer's
    ``get_extra_info`` reports the header's addresses as in ``wrap``.  With
    ``ssl``, the header is read in plaintext and TLS starts after it.
    The policy options are ``wrap``'s; other keyword arguments go to
    ``loop.create_server``.
    """
    loop = asyncio.get_running_loop()

    def stream_protocol() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    factory = wrap(
        stream_protocol,
        trusted=trusted,
        on_untrusted=on_untrusted,
        policy=policy,
        validate=validate,
        timeout=timeout,
        max_header_size=max_header_size,
        v1=v1,
        v2=v2,
        stats=stats,
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
) -> ProxyHeader:
    """Read exactly one PROXY header from a StreamReader.

    What follows the header stays in the reader.  Raises HeaderTimeout
    after ``timeout`` seconds, ConnectionClosed if the stream ends mid-header,
    InvalidHeader for a bad one.
    """
    timeout = check_timeout(timeout)
    check_versions(v1, v2)
    data = bytearray()
    try:
        return await asyncio.wait_for(_read_header(reader, data, v1, v2), timeout)
    except asyncio.TimeoutError:
        raise HeaderTimeout(timeout_message(timeout, len(data))) from None


async def _read_header(
    reader: asyncio.StreamReader, data: bytearray, v1: bool, v2: bool
) -> ProxyHeader:
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


class _Server:
    """What every connection accepted through one ``wrap()`` shares."""

    __slots__ = ("make_protocol", "with_header", "policy", "ssl", "ssl_options", "sweepers")

    def __init__(
        self,
        make_protocol: Callable[..., asyncio.BaseProtocol],
        policy: Policy,
        ssl: _ssl.SSLContext | None,
        ssl_options: _SSLOptions,
        with_header: bool = False,
    ) -> None:
        self.make_protocol = make_protocol
        # Server integrations put the header where their app sees it, so
        # their protocol is made with the header believed as first argument.
        self.with_header = with_header
        self.policy = policy
        self.ssl = ssl
        self.ssl_options = ssl_options
        # One per event loop with connections waiting for their header.
        self.sweepers: dict[asyncio.AbstractEventLoop, _Sweeper] = {}

    def tls(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
        """What loop.create_server(ssl=...) builds for each connection; here
        it is fed the bytes that followed the header, which start the TLS
        handshake."""
        assert self.ssl is not None
        return sslproto.SSLProtocol(
            asyncio.get_running_loop(),
            protocol,
            self.ssl,
            None,  # type: ignore[arg-type]  # no waiter: nothing awaits the handshake
            server_side=True,
            # typeshed says int; asyncio takes any number of seconds.
            **self.ssl_options,  # type: ignore[arg-type]
        )

    def start_sweeper(self, loop: asyncio.AbstractEventLoop) -> _Sweeper:
        assert self.policy.timeout is not None
        sweeper = self.sweepers[loop] = _Sweeper(loop, self.policy.timeout, self)
        return sweeper


# How many sweeps a header timeout is cut into (see _Sweeper).
_TICKS = 10


class _Sweeper:
    """The header deadlines of one server's connections on one event loop.

    A timer per connection, or even a clock reading per connection, costs
    more than the rest of the wrapper.  So time is cut into ticks of
    ``timeout / _TICKS``: a connection is put in the current tick's bucket
    (a dict insertion) and taken out when its header is complete (a
    deletion).  One timer sweeps every tick while connections wait: it
    closes the current bucket and expires the bucket closed ``_TICKS``
    sweeps ago, whose connections were accepted at least ``timeout`` ago.
    So a connection is closed between ``timeout`` and ``timeout * (1 +
    1 / _TICKS)`` after it was accepted (later only if the loop is busy),
    never before.  With nothing waiting, the sweeper stops and forgets
    itself; the next connection starts a new one.
    """

    __slots__ = ("bucket", "_loop", "_tick", "_server", "_closed", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, server: _Server) -> None:
        self.bucket: dict[Any, None] = {}  # connections accepted this tick
        self._loop = loop
        self._tick = timeout / _TICKS
        self._server = server
        # The buckets of the last _TICKS sweeps, oldest first.
        self._closed: deque[dict[Any, None]] = deque()
        self._handle = loop.call_later(self._tick, self._sweep)

    def _sweep(self) -> None:
        closed = self._closed
        closed.append(self.bucket)
        self.bucket = {}
        if len(closed) > _TICKS:
            expired = closed.popleft()
            for protocol in list(expired):
                protocol.expire()
        if any(closed):
            self._handle = self._loop.call_later(self._tick, self._sweep)
        else:
            # Idle: forget this loop (it may be closed for good); the next
            # connection on it starts a new sweeper.
            self._server.sweepers.pop(self._loop, None)


class _PyHeaderProtocol(asyncio.Protocol):
    """Reads the header, then hands the connection to the inner protocol.

    The common case, a whole header in the first read, takes one parse and
    no copy; a header in pieces is gathered in a bytearray.  Its compiled
    twin, pyproxyproto._aio_c.HeaderProtocol, takes the same steps in the
    same order (change both together); aio uses it when it is built.
    """

    __slots__ = (
        "_server", "_args", "_kwargs", "_transport", "_direct", "_peer", "_decision",
        "_buffer", "_needed", "_bucket", "_done",
    )

    def __init__(self, server: _Server, *args: Any, **kwargs: Any) -> None:
        self._server = server
        self._args = args
        self._kwargs = kwargs
        self._buffer: bytearray | None = None
        self._needed = 0  # the length the parser last asked for
        self._bucket: dict[Any, None] | None = None  # the sweeper's, while waiting
        self._done = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        # asyncio's own transport, served without a wrapper (see _DIRECT_TRANSPORT).
        direct = self._direct = (
            type(transport) is _DIRECT_TRANSPORT and type(transport._extra) is dict
        )
        server = self._server
        policy = server.policy
        if direct:
            peer = transport._extra.get("peername")  # its get_extra_info()
        else:
            peer = transport.get_extra_info("peername")
        self._peer = peer
        decision = self._decision = policy.always or policy.decide(peer)
        if decision == REJECT:
            self._done = True
            policy.refuse_peer(peer)
            transport.close()
        elif decision == SKIP:
            self._done = True
            policy.skipped()
            self._start_inner(transport, None)
        elif policy.timeout is not None:
            # get_running_loop() costs a getpid() system call.
            if direct:
                loop = transport._loop
            else:
                loop = asyncio.get_running_loop()
            sweeper = server.sweepers.get(loop)
            if sweeper is None:
                sweeper = server.start_sweeper(loop)
            bucket = self._bucket = sweeper.bucket
            bucket[self] = None

    def data_received(self, data: bytes) -> None:
        buffer: Any
        if self._buffer is None:
            buffer = data  # the usual case: the whole header in one read
        else:
            self._buffer += data
            buffer = self._buffer
            if len(buffer) < self._needed:
                return  # a long v2 header still arriving: nothing to decide yet
        policy = self._server.policy
        try:
            header, believed = policy.take(buffer, self._peer, self._decision)
        except Incomplete as exc:
            self._needed = exc.needed
            if self._buffer is None:
                self._buffer = bytearray(data)
            return
        except HeaderRejected:  # counted and logged by the policy
            self._finish()
            self._transport.close()
            return
        except ProxyProtocolError as exc:
            self._finish()
            policy.refuse_header(self._peer, exc)
            self._transport.close()
            return
        self._done = True
        bucket = self._bucket
        if bucket is not None:
            del bucket[self]
            self._bucket = None
        transport = self._transport
        length = header.length
        if self._direct:
            # asyncio's own transport: it reports the header's addresses
            # itself, and the inner protocol talks to it directly.
            extra = transport._extra
            extra["proxy_header"] = believed
            extra["proxy_peername"] = self._peer
            if believed is not None:
                source = believed.source
                if source is not None:  # not LOCAL, not UNKNOWN
                    extra["peername"] = source
                    extra["sockname"] = believed.destination
                    view = _new_object(_SocketView)
                    view._sock = extra["socket"]
                    view._header = believed
                    extra["socket"] = view
            protocol = self._start_inner(transport, believed)
            if len(buffer) > length:
                rest = buffer[length:]
                if (
                    not transport._paused and not transport._closing
                    and not isinstance(protocol, asyncio.BufferedProtocol)
                ):
                    # What the transport does with what it reads.
                    cast(asyncio.Protocol, protocol).data_received(
                        rest if type(rest) is bytes else bytes(rest)
                    )
                else:
                    _hand_over(transport, rest)
            return
        proxied = _ProxiedTransport(transport, self._peer, believed)
        protocol = self._start_inner(proxied, believed)
        if len(buffer) > length:
            # Synchronous, as if the real transport had just read these bytes.
            proxied.deliver(protocol, buffer, length)

    def eof_received(self) -> bool:
        self._closed_early(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._closed_early(exc)

    def expire(self) -> None:
        """Called by the sweeper at the deadline."""
        self._bucket = None
        self._done = True
        self._server.policy.timed_out(self._peer, self._received())
        self._transport.close()

    def _closed_early(self, cause: BaseException | None) -> None:
        self._finish()
        self._server.policy.closed_early(self._peer, self._received(), self._needed, cause)
        self._transport.close()

    def _received(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    def _finish(self) -> None:
        self._done = True
        if self._bucket is not None:
            del self._bucket[self]
            self._bucket = None

    def _start_inner(self, transport: Any, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        """Make the inner protocol, give it the connection; return it."""
        server = self._server
        protocol: asyncio.BaseProtocol
        if server.with_header:
            protocol = server.make_protocol(header, *self._args, **self._kwargs)
        else:
            protocol = server.make_protocol(*self._args, **self._kwargs)
        if server.ssl is not None:
            protocol = server.tls(protocol)
        if self._direct and not isinstance(protocol, asyncio.BufferedProtocol):
            # All set_protocol() would change: the transport already feeds
            # data_received(), as it did for this header protocol.
            self._transport._protocol = protocol
        else:
            self._transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol


# -- asyncio's own socket transport, without a wrapper -------------------------------
#
# asyncio's selector transport answers get_extra_info from a dict of its own,
# filled when the connection is accepted (asyncio.transports.BaseTransport
# keeps it in ``_extra``; tests/test_aio.py checks that it still does).  The
# header's addresses are written into that dict, so the inner protocol gets
# the real transport: nothing stands between the application and its writes.
# Other transports (uvloop's, TLS ones, anything else) get _ProxiedTransport.



def _direct_transport_type() -> Any:
    """asyncio's socket transport class, if it still works as this module
    relies on; None (every transport wrapped) otherwise.

    It must answer get_extra_info from its ``_extra`` dict, keep its event
    loop in ``_loop``, resume reading through ``_add_reader``, and keep
    what set_protocol(), is_reading() and is_closing() read and write in
    the attributes named below (the names each method's code uses are
    compared, so a rewrite in a later Python turns the direct path off
    rather than breaking it)."""
    cls: Any = getattr(selector_events, "_SelectorSocketTransport", None)
    if cls is None:
        return None
    base = asyncio.transports.BaseTransport
    known = (
        cls.get_extra_info is base.get_extra_info
        and "_extra" in base.__slots__
        and callable(getattr(cls, "_add_reader", None))
        and issubclass(cls, asyncio.transports._FlowControlMixin)
        and "_loop" in asyncio.transports._FlowControlMixin.__slots__
        and set(_names(cls.set_protocol)) == _SET_PROTOCOL_NAMES
        and set(_names(super(cls, cls).set_protocol)) == {"_protocol", "_protocol_connected"}
        # 3.10 reads _closing itself, later versions call is_closing().
        and set(_names(cls.is_reading)) <= {"is_closing", "_closing", "_paused"}
        and set(_names(cls.is_closing)) == {"_closing"}
    )
    return cls if known else None


def _names(method: Any) -> tuple[str, ...]:
    code = getattr(method, "__code__", None)
    return () if code is None else code.co_names


# What asyncio's set_protocol() uses: it picks the read callback by the
# protocol's kind, then stores the protocol.
_SET_PROTOCOL_NAMES = {
    "isinstance", "protocols", "BufferedProtocol", "_read_ready__get_buffer",
    "_read_ready_cb", "_read_ready__data_received", "super", "set_protocol",
}


_DIRECT_TRANSPORT: Any = _direct_transport_type()


def _hand_over(transport: Any, data: Any) -> None:
    """Give the inner protocol ``data``, read by ``transport`` with the header,
    as the transport gives what it reads: all at once to data_received(),
    through get_buffer()/buffer_updated() to a BufferedProtocol, and nothing
    while the protocol has paused reading (it is kept until it resumes)."""
    while transport.is_reading():
        protocol = transport.get_protocol()
        if not isinstance(protocol, asyncio.BufferedProtocol):
            protocol.data_received(data if type(data) is bytes else bytes(data))
            return
        buf = memoryview(protocol.get_buffer(len(data))).cast("B")
        n = min(len(buf), len(data))
        if not n:
            raise RuntimeError("get_buffer() returned an empty buffer")
        buf[:n] = memoryview(data)[:n]
        protocol.buffer_updated(n)
        if n == len(data):
            return
        data = memoryview(data)[n:]
    if not transport.is_closing():
        _Held(transport, data)


class _Held:
    """Bytes read with the header that the inner protocol cannot take yet: it
    paused reading (in connection_made(), or in buffer_updated() before all
    of them fitted).  They are delivered when reading resumes, first thing
    on the next loop iteration: before anything the transport reads next,
    as if they had stayed in the socket.

    The transport's resume_reading() starts reading again through its
    ``_add_reader`` method, whichever reference to resume_reading the
    protocol kept; an instance attribute shadows that method until the
    bytes are delivered (tests/test_aio.py checks that asyncio still works
    this way)."""

    __slots__ = ("_transport", "_data")

    def __init__(self, transport: Any, data: Any) -> None:
        self._transport = transport
        self._data = bytes(data)  # the caller's buffer may be reused
        transport._add_reader = self._resumed

    def _resumed(self, *args: Any) -> None:
        transport = self._transport
        del transport._add_reader
        transport._add_reader(*args)
        asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        if not transport.is_reading():  # paused again before this ran
            transport._add_reader = self._resumed
            return
        try:
            _hand_over(transport, self._data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _fatal(transport, exc)


def _fatal(transport: Any, exc: BaseException) -> None:
    """What the real transport does when a protocol callback fails."""
    asyncio.get_running_loop().call_exception_handler(
        {
            "message": "Fatal error: protocol failed on data after the PROXY header",
            "exception": exc,
            "transport": transport,
            "protocol": transport.get_protocol(),
        }
    )
    transport.abort()


_new_object = object.__new__


class _SocketView:
    """The transport's socket as the application should see it: servers that
    ask the socket for the peer (uvicorn does) get the header's addresses."""

    __slots__ = ("_sock", "_header")

    def __init__(self, sock: Any, header: ProxyHeader) -> None:
        self._sock = sock
        self._header = header  # one whose source is not None

    def getpeername(self) -> Any:
        return self._header.source

    def getsockname(self) -> Any:
        return self._header.destination

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<proxied {self._sock!r} peername={self._header.source!r}>"


# The extra-info names the header decides; every other name is the real transport's.
_HEADER_EXTRA = frozenset(("peername", "sockname", "socket", "proxy_header", "proxy_peername"))


class _ProxiedTransport(asyncio.Transport):
    """The real transport, with the header's addresses in its extra info.

    It also delivers the bytes that followed the header before anything
    newer, honouring pause_reading(): while such bytes are pending the
    real transport stays paused.  Every method of asyncio.Transport is
    forwarded explicitly (no ``__getattr__``: it would slow down every
    attribute read).
    """

    __slots__ = (
        "_transport", "_proxy_peer", "_header", "_socket", "_pending", "_paused",
        "_real_paused", "_flush_handle",
    )

    def __init__(self, transport: Any, proxy_peer: Any, header: Any) -> None:
        # BaseTransport's _extra is not used: get_extra_info is answered here.
        self._transport = transport
        self._proxy_peer = proxy_peer
        self._header = header  # None under "ignore": consumed, not believed
        self._socket: Any = None  # the view, made when first asked for
        self._pending: Any = None  # the bytes after the header, while paused
        self._paused = False  # as the protocol sees it
        self._real_paused = False
        self._flush_handle: asyncio.Handle | None = None

    def deliver(self, protocol: asyncio.BaseProtocol, buffer: Any, start: int) -> None:
        """Hand ``buffer[start:]`` to ``protocol`` now, or keep it while paused."""
        if self._transport.is_closing():
            return
        if not self._paused and not isinstance(protocol, asyncio.BufferedProtocol):
            data = buffer[start:]
            protocol.data_received(data if type(data) is bytes else bytes(data))  # type: ignore[attr-defined]
            return
        self._pending = memoryview(buffer)[start:]
        self._flush()  # nothing yet if the protocol paused: resume_reading() flushes

    def _flush(self) -> None:
        self._flush_handle = None
        while self._pending is not None and not self._paused and not self._transport.is_closing():
            protocol = self._transport.get_protocol()
            chunk = self._pending
            if isinstance(protocol, asyncio.BufferedProtocol):
                buf = memoryview(protocol.get_buffer(len(chunk))).cast("B")
                n = min(len(buf), len(chunk))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:n] = chunk[:n]
                self._pending = chunk[n:] if n < len(chunk) else None
                protocol.buffer_updated(n)
            else:
                self._pending = None
                protocol.data_received(bytes(chunk))
        if self._pending is None and not self._paused and self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def _scheduled_flush(self) -> None:
        try:
            self._flush()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _fatal(self, exc)

    # -- the asyncio.Transport interface -----------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in _HEADER_EXTRA:
            header = self._header
            if name == "proxy_header":
                return header
            if name == "proxy_peername":
                return self._proxy_peer
            if header is not None and header.source is not None:  # not LOCAL, not UNKNOWN
                if name == "peername":
                    return header.source
                if name == "sockname":
                    return header.destination
                if self._socket is None:
                    sock = self._transport.get_extra_info("socket")
                    if sock is None:
                        return default
                    self._socket = _SocketView(sock, header)
                return self._socket
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
        if self._pending is not None:
            if self._flush_handle is None:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_soon(self._scheduled_flush)
        elif self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return not self._paused and not self._transport.is_closing()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()  # type: ignore[no-any-return]

    def write(self, data: Any) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return bool(self._transport.can_write_eof())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<proxied {self._transport!r} peername={self.get_extra_info('peername')!r}>"


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


# The header protocol wrap() uses: the compiled one when it is built (it costs
# an accept loop less; its factory is _aio_c.Factory), else the pure one;
# both are tested.
_HEADER_PROTOCOLS: dict[str, Any] = {"python": _PyHeaderProtocol}
_compiled = _backend.load_extension(_backend.AIO_EXTENSION)
if _compiled is not None:
    _HEADER_PROTOCOLS["cython"] = _compiled.HeaderProtocol
_HeaderProtocol: Any = _HEADER_PROTOCOLS.get("cython", _PyHeaderProtocol)
