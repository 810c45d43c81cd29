"""Every use of asyncio's private internals, beside the guard that detects a change and the fallback.

asyncio's selector socket transport answers ``get_extra_info`` from a dict
of its own (``_extra``), filled when the connection is accepted.  The
header protocol writes the header's addresses into that dict, so the
application's protocol gets the real transport: nothing stands between it
and its writes (the "direct path").  That relies on the transport keeping
what ``set_protocol()``, ``is_reading()`` and ``is_closing()`` read and
write in the attributes used below, its loop in ``_loop``, and resuming
reading through ``_add_reader``.  ``direct_transport_type()`` checks all of
it when this module is imported: if a Python release rewrites any of it,
the direct path is off and every connection gets the wrapping transport
(``_aio_transport.ProxiedTransport``) instead.  tests/test_aio.py trips the
guard on purpose and checks that the fallback serves.

The same source runs as Python and compiled (``_asyncio_internals_c``).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from asyncio import protocols, selector_events, sslproto
from typing import Any


def direct_transport_type() -> Any:
    """asyncio's socket transport class, if it still works as this module
    relies on; None (every transport wrapped) otherwise.

    The names each relied-on method's code uses are compared, so a rewrite
    in a later Python turns the direct path off rather than breaking it."""
    cls: Any = getattr(selector_events, "_SelectorSocketTransport", None)
    if cls is None:
        return None
    base = asyncio.transports.BaseTransport
    known = (
        cls.get_extra_info is base.get_extra_info
        and "_extra" in base.__slots__
        and callable(getattr(cls, "_add_reader", None))
        and {"is_reading", "_loop"} <= set(_names(cls._add_reader))
        and "_add_reader" in _names(cls.resume_reading)
        # The read callback looks the protocol up on every read, so a
        # protocol attached by setting _protocol gets the next bytes.
        and "_protocol" in _names(cls._read_ready__data_received)
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

DIRECT_TRANSPORT: Any = direct_transport_type()


def is_direct(transport: Any) -> bool:
    """Whether ``transport`` is asyncio's own socket transport, served directly."""
    return type(transport) is DIRECT_TRANSPORT and type(transport._extra) is dict


def extra(transport: Any) -> dict[str, Any]:
    """A direct transport's extra-info dict (what its get_extra_info() reads)."""
    return transport._extra  # type: ignore[no-any-return]


def loop_of(transport: Any) -> asyncio.AbstractEventLoop:
    """A direct transport's event loop (get_running_loop() costs a getpid()
    system call per connection)."""
    return transport._loop  # type: ignore[no-any-return]


def attach(transport: Any, protocol: Any) -> None:
    """Give a direct transport a new protocol.  For a ``data_received()``
    protocol, storing it is all set_protocol() would change: the transport
    already feeds data_received(), as it did for the header protocol."""
    if isinstance(protocol, protocols.BufferedProtocol):
        transport.set_protocol(protocol)
    else:
        transport._protocol = protocol


def reading(transport: Any) -> bool:
    """A direct transport's is_reading(), without the calls."""
    return not transport._paused and not transport._closing


def tls_protocol(
    protocol: asyncio.BaseProtocol, context: _ssl.SSLContext, options: dict[str, Any]
) -> asyncio.BaseProtocol:
    """What loop.create_server(ssl=...) builds for each connection: here it
    is fed the bytes that followed the header, which start the TLS
    handshake.  (asyncio has no public way to start server-side TLS on a
    protocol that already has a transport.)"""
    return sslproto.SSLProtocol(
        asyncio.get_running_loop(),
        protocol,
        context,
        None,  # type: ignore[arg-type]  # no waiter: nothing awaits the handshake
        server_side=True,
        # typeshed says int; asyncio takes any number of seconds.
        **options,
    )


def hand_over(transport: Any, data: Any) -> None:
    """Give the inner protocol ``data``, read by ``transport`` with the header,
    as the transport gives what it reads: all at once to data_received(),
    through get_buffer()/buffer_updated() to a BufferedProtocol, and nothing
    while the protocol has paused reading (it is kept until it resumes)."""
    while transport.is_reading():
        protocol = transport.get_protocol()
        if not isinstance(protocol, protocols.BufferedProtocol):
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
    bytes are delivered.  They are delivered in the transport's own
    context where it has one (3.15 runs a connection's callbacks in a
    context copied when the server was made), as its reads are."""

    __slots__ = ("_transport", "_data")

    def __init__(self, transport: Any, data: Any) -> None:
        self._transport = transport
        self._data = bytes(data)  # the caller's buffer may be reused
        transport._add_reader = self._resumed

    def _resumed(self, *args: Any) -> None:
        transport = self._transport
        del transport._add_reader
        transport._add_reader(*args)
        transport._loop.call_soon(self._deliver, context=getattr(transport, "_context", None))

    def _deliver(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        if not transport.is_reading():  # paused again before this ran
            transport._add_reader = self._resumed
            return
        try:
            hand_over(transport, self._data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fatal(transport, exc)


def fatal(transport: Any, exc: BaseException) -> None:
    """What asyncio's transports do when a protocol callback fails."""
    asyncio.get_running_loop().call_exception_handler(
        {
            "message": "Fatal error: protocol failed on data after the PROXY header",
            "exception": exc,
            "transport": transport,
            "protocol": transport.get_protocol(),
        }
    )
    transport.abort()
