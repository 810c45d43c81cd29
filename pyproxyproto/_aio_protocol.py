# mypy: always-false=compiled
"""aio's header protocol: a Handshake that is an asyncio protocol, with its factory, its deadline sweeper and the socket view it gives the application.

The same source runs as Python (``pyproxyproto._aio_protocol``) and, where
a compiler was present, compiled by Cython as
``pyproxyproto._aio_protocol_c`` (declarations in ``_aio_protocol_c.pxd``):
a wrapped connection's cost to an accept loop is mostly this code.  aio
uses the compiled one when it is there; the tests run both.

asyncio duck-types protocols (only BufferedProtocol is told apart, by
isinstance), so a class that does not inherit asyncio.Protocol serves as
one, on uvloop too.  A protocol is used by its event loop's thread only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ._aio_transport import ProxiedTransport
from ._policy import Policy
from ._step import CLOSE, READ, SERVE

try:
    import cython
except ImportError:  # the package runs without Cython installed
    from . import _cython as cython

if not cython.compiled:
    # Compiled, these names are cimported instead (_aio_protocol_c.pxd):
    # C calls to the compiled handshake and asyncio internals.
    from ._asyncio_internals import (
        attach,
        extra,
        hand_over,
        is_direct,
        loop_of,
        reading,
        tls_protocol,
    )
    from ._handshake import Handshake

if TYPE_CHECKING:
    import ssl

    from . import ProxyHeader

# How many sweeps a header timeout is cut into (see Sweeper).
TICKS = 10


class Factory:
    """One server's protocol factory: each call makes a HeaderProtocol for a
    new connection, with the arguments the server passed."""

    __slots__ = ("policy", "make_protocol", "with_header", "tls", "ssl_options", "timed",
                 "sweepers", "template")

    def __init__(
        self,
        make_protocol: Callable[..., asyncio.BaseProtocol],
        policy: Policy,
        tls: ssl.SSLContext | None = None,
        ssl_options: dict[str, Any] | None = None,
        with_header: bool = False,
    ) -> None:
        self.make_protocol = make_protocol
        self.policy = policy
        self.tls = tls
        self.ssl_options = ssl_options or {}
        # Server integrations put the header where their app sees it, so
        # their protocol is made with the header believed as first argument.
        self.with_header = with_header
        self.timed = policy.timeout is not None
        # One per event loop with connections waiting for their header.
        self.sweepers: dict[Any, Sweeper] = {}
        # What each connection's handshake reads of the policy, read once.
        self.template = Handshake(policy)

    def __call__(self, *args: Any, **kwargs: Any) -> HeaderProtocol:
        return _new_protocol(self, args, kwargs)

    def start_sweeper(self, loop: asyncio.AbstractEventLoop) -> Sweeper:
        assert self.policy.timeout is not None
        sweeper = self.sweepers[loop] = Sweeper(loop, self.policy.timeout, self)
        return sweeper


class Sweeper:
    """The header deadlines of one server's connections on one event loop.

    A timer per connection, or even a clock reading per connection, costs
    more than the rest of the wrapper.  So time is cut into ticks of
    ``timeout / TICKS``: a connection is put in the current tick's bucket
    (a dict insertion) and taken out when its header is complete (a
    deletion).  One timer sweeps every tick while connections wait: it
    closes the current bucket and expires the bucket closed ``TICKS``
    sweeps ago, whose connections were accepted at least ``timeout`` ago.
    So a connection is closed between ``timeout`` and ``timeout * (1 +
    1 / TICKS)`` after it was accepted (later only if the loop is busy),
    never before.  With nothing waiting, the sweeper stops and forgets
    itself; the next connection starts a new one.
    """

    __slots__ = ("bucket", "_loop", "_tick", "_factory", "_closed", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, factory: Factory) -> None:
        self.bucket: dict[Any, None] = {}  # connections accepted this tick
        self._loop = loop
        self._tick = timeout / TICKS
        self._factory = factory
        # The buckets of the last TICKS sweeps, oldest first.
        self._closed: deque[dict[Any, None]] = deque()
        self._handle = loop.call_later(self._tick, self._sweep)

    def _sweep(self) -> None:
        closed = self._closed
        closed.append(self.bucket)
        self.bucket = {}
        if len(closed) > TICKS:
            expired = closed.popleft()
            for protocol in list(expired):
                protocol.expire()
        if any(closed):
            self._handle = self._loop.call_later(self._tick, self._sweep)
        else:
            # Idle: forget this loop (it may be closed for good); the next
            # connection on it starts a new sweeper.
            self._factory.sweepers.pop(self._loop, None)


class SocketView:
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


class HeaderProtocol(Handshake):
    """Reads the header as a Handshake, then hands the connection to the
    inner protocol: on asyncio's own transport directly (the header's
    addresses written into its extra info), on any other through a
    ProxiedTransport.  The common case, a whole header in the first read,
    takes one parse and no copy.  Made by Factory."""

    __slots__ = ("_factory", "_args", "_kwargs", "_transport", "_direct", "_bucket")

    def _setup(self, factory: Factory, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._init_like(factory.template)
        self._factory = factory
        self._args = args
        self._kwargs = kwargs
        self._transport: Any = None
        self._direct = False  # asyncio's own transport, served without a wrapper
        self._bucket: dict[Any, None] | None = None  # the sweeper's, while waiting

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        direct = self._direct = is_direct(transport)
        if direct:
            peer = extra(transport).get("peername")
        else:
            peer = transport.get_extra_info("peername")
        local = None
        if isinstance(peer, (str, bytes)):  # _networks.is_unix_peer, inlined
            # A Unix socket's peer is unnamed: logs name the listening path.
            local = transport.get_extra_info("sockname")
        elif peer is None and _gone(transport):
            # The peer closed before its address could be read: an early
            # close, not an untrusted peer.
            self.closed()
            transport.close()
            return
        step = self.begin(peer, local)
        if step is CLOSE:
            transport.close()
        elif step is SERVE:
            self._start_inner(transport, None)
        elif self._factory.timed:
            factory = self._factory
            loop = loop_of(transport) if direct else asyncio.get_running_loop()
            sweeper = factory.sweepers.get(loop)
            if sweeper is None:
                sweeper = factory.start_sweeper(loop)
            bucket = self._bucket = sweeper.bucket
            bucket[self] = None

    def data_received(self, data: bytes) -> None:
        if self.step is not READ:
            return  # refused: the transport is closing
        step = self.feed(data)
        if step is READ:
            return
        self._unschedule()
        transport = self._transport
        if step is CLOSE:
            transport.close()
            return
        believed = self.believed
        buffer = self._data
        length = self.length
        if not self._direct:
            proxied = ProxiedTransport(transport, self.peer, believed, _view)
            protocol = self._start_inner(proxied, believed)
            if len(buffer) > length:
                # Synchronous, as if the real transport had just read these bytes.
                proxied.deliver(protocol, buffer, length)
            return
        # asyncio's own transport: it reports the header's addresses itself,
        # and the inner protocol talks to it directly.
        info = extra(transport)
        info["proxy_header"] = believed
        info["proxy_peername"] = self.peer
        if believed is not None and self.client is not self.peer:  # not LOCAL, not UNKNOWN
            info["peername"] = self.client  # the header's source
            if cython.compiled:
                info["sockname"] = cython.cast(CProxyHeader, believed)._address(1)
            else:
                info["sockname"] = believed.destination
            info["socket"] = _view(info["socket"], believed)
        protocol = self._start_inner(transport, believed)
        if len(buffer) > length:
            rest = buffer[length:]
            if reading(transport) and not isinstance(protocol, asyncio.BufferedProtocol):
                # What the transport does with what it reads.
                protocol.data_received(rest if type(rest) is bytes else bytes(rest))  # type: ignore[attr-defined]
            else:
                hand_over(transport, rest)

    def eof_received(self) -> bool:
        if self.step is READ:
            self._unschedule()
            self.closed()
            self._transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.step is READ:
            self._unschedule()
            self.closed(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def expire(self) -> None:
        """Called by the sweeper at the deadline."""
        self._bucket = None
        if self.step is READ:
            self.timed_out()
            self._transport.close()

    def _unschedule(self) -> None:
        bucket = self._bucket
        if bucket is not None:
            del bucket[self]
            self._bucket = None

    def _start_inner(self, transport: Any, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        """Make the inner protocol and give it the connection; return it."""
        factory = self._factory
        protocol: Any
        if factory.with_header:
            protocol = factory.make_protocol(header, *self._args, **self._kwargs)
        elif self._kwargs:
            protocol = factory.make_protocol(*self._args, **self._kwargs)
        else:
            protocol = factory.make_protocol(*self._args)
        if factory.tls is not None:
            protocol = tls_protocol(protocol, factory.tls, factory.ssl_options)
        if self._direct:
            attach(self._transport, protocol)
        else:
            self._transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol  # type: ignore[no-any-return]


def _gone(transport: Any) -> bool:
    """Whether the connection's peer is gone (its address unreadable)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False  # a transport without a socket: it names no peer
    try:
        sock.getpeername()
    except OSError:
        return True
    return False


def _new_protocol(factory: Factory, args: tuple[Any, ...], kwargs: dict[str, Any]) -> HeaderProtocol:
    # Made without a call to __init__ (compiled: no argument parsing).
    protocol = HeaderProtocol.__new__(HeaderProtocol)
    protocol._setup(factory, args, kwargs)
    return protocol


def _view(sock: Any, header: ProxyHeader) -> SocketView:
    # Made without a call to __init__, on every proxied connection.
    view = SocketView.__new__(SocketView)
    view._sock = sock
    view._header = header
    return view
