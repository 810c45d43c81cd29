"""The server integrations' one seam onto ``aio``: a header reader driven by
the Policy, which hands each connection over through aio's proxied
transport (and aio's PROXY-then-TLS arrangement).

``pyproxyproto.uvicorn``, ``.gunicorn`` (its UvicornWorker) and
``.hypercorn`` build their asyncio listeners on ``header_protocol`` only.
Everything here that is aio's own (``_ProxiedTransport``, ``_SocketView``,
how TLS is layered after the header) is used in ``_hand_over`` alone, so a
change of aio's internals is absorbed in that one function.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from asyncio import sslproto
from typing import TYPE_CHECKING, Any, Callable

from . import aio
from ._errors import HeaderRejected, Incomplete, ProxyProtocolError
from ._policy import REJECT, SKIP, Decision, Policy

if TYPE_CHECKING:
    from . import ProxyHeader

# Makes the server's protocol for a connection, given the header believed
# for it (None: skipped, ignored, or a LOCAL/UNKNOWN header's peer stands).
ProtocolMaker = Callable[["ProxyHeader | None"], asyncio.BaseProtocol]


def header_protocol(
    make_protocol: ProtocolMaker, policy: Policy, ssl: _ssl.SSLContext | None = None
) -> asyncio.Protocol:
    """The protocol to give ``loop.create_server`` for one connection.

    It asks ``policy`` what to do with the peer, reads the header, and then
    makes the server's protocol with ``make_protocol(header)`` and hands the
    connection (and every byte after the header) to it.  With ``ssl``, TLS
    starts after the plaintext header.
    """
    return _PolicyHeaderProtocol(make_protocol, policy, ssl)


class _PolicyHeaderProtocol(asyncio.Protocol):
    __slots__ = ("_make", "_policy", "_ssl", "_transport", "_peer", "_decision",
                 "_buffer", "_needed", "_timer", "_done")

    def __init__(
        self, make_protocol: ProtocolMaker, policy: Policy, ssl: _ssl.SSLContext | None
    ) -> None:
        self._make = make_protocol
        self._policy = policy
        self._ssl = ssl
        self._transport: Any = None
        self._peer: Any = None
        self._decision: Decision = REJECT
        self._buffer: bytearray | None = None  # only when the header comes in pieces
        self._needed = 0  # the length the parser last asked for
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        policy = self._policy
        peer = self._peer = transport.get_extra_info("peername")
        decision = self._decision = policy.decide(peer)
        if decision == REJECT:
            policy.refuse_peer(peer)
            self._close()
            return
        if decision == SKIP:
            policy.skipped()
            self._done = True
            _hand_over(transport, peer, None, b"", self._wrap(self._make(None)))
            return
        if policy.timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(policy.timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return  # refused: the transport is closing
        buffer: Any
        if self._buffer is None:
            buffer = data  # the usual case: the whole header in one read
        else:
            self._buffer += data
            buffer = self._buffer
            if len(buffer) < self._needed:
                return
        policy = self._policy
        try:
            header = policy.parse(buffer)
        except Incomplete as exc:
            self._needed = exc.needed
            if self._buffer is None:
                self._buffer = bytearray(data)
            return
        except ProxyProtocolError as exc:
            policy.refuse_header(self._peer, exc)
            self._close()
            return
        self._finish()
        try:
            _, believed = policy.accept(header, self._peer, self._decision)
        except HeaderRejected:
            self._transport.close()
            return
        self._buffer = None
        # Under "ignore" the header was consumed but is not believed (None).
        rest = memoryview(buffer)[header.length :]
        _hand_over(self._transport, self._peer, believed, rest, self._wrap(self._make(believed)))

    def eof_received(self) -> bool:
        if not self._done:
            received = self._received()
            self._policy.closed_early(self._peer, received, self._needed)
            self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            received = self._received()
            self._finish()
            self._policy.closed_early(self._peer, received, self._needed, exc)

    def _received(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    def _expire(self) -> None:
        self._timer = None
        if not self._done:
            self._policy.timed_out(self._peer, self._received())
            self._close()

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._finish()
        self._transport.close()

    def _wrap(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
        if self._ssl is None:
            return protocol
        # What loop.create_server(ssl=...) builds for each connection; here
        # it is fed the bytes after the header, which start the handshake.
        return sslproto.SSLProtocol(
            asyncio.get_running_loop(), protocol, self._ssl, None, server_side=True
        )


def _hand_over(
    real: Any, peer: Any, header: ProxyHeader | None, rest: Any, protocol: asyncio.BaseProtocol
) -> None:
    """Connect ``protocol`` to the connection: through aio's proxied transport
    (the header's addresses in get_extra_info and the socket view, ``rest``
    delivered first) when there was a header, else to the real transport."""
    if header is None and not rest:
        real.set_protocol(protocol)
        protocol.connection_made(real)
        return
    extra: dict[str, Any] = {"proxy_peername": peer, "proxy_header": header}
    if header is not None and header.source is not None:  # not LOCAL, not UNKNOWN
        extra["peername"] = header.source
        extra["sockname"] = header.destination
        sock = real.get_extra_info("socket")
        if sock is not None:
            extra["socket"] = aio._SocketView(sock, header.source, header.destination)
    aio._ProxiedTransport(real, extra, memoryview(rest)).connect(protocol)
