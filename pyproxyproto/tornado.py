"""PROXY protocol for Tornado: an HTTPServer that reads the header first.

``pyproxyproto.tornado.HTTPServer(app, trusted=...)`` is a
``tornado.httpserver.HTTPServer`` whose ``request.remote_ip`` is the
header's source.  The header is read on the plain socket before anything
else, so with ``ssl_options`` TLS starts after it (TLS passthrough, the
way balancers send it).  Reads are exact: the socket is asked
for no more than the parser needs, and what has already arrived is peeked
(MSG_PEEK) before it is taken, so the first byte after the header is
still in the socket for TLS or HTTP.  The IOStream is not used until the
header is read.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.httpserver
from tornado.iostream import IOStream, StreamClosedError

from ._errors import Incomplete, ProxyProtocolError
from ._policy import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_TIMEOUT,
    FIRST_PEEK,
    REJECT,
    SKIP,
    Decision,
    PeerAddress,
    Policy,
    Stats,
    Trusted,
)

if TYPE_CHECKING:
    from typing import Literal

    from tornado.httputil import HTTPServerConnectionDelegate, HTTPServerRequest

    from . import ProxyHeader

__all__ = ["HTTPServer", "proxy_header"]


class HTTPServer(tornado.httpserver.HTTPServer):
    """A Tornado HTTPServer behind a PROXY header.

    Takes Tornado's arguments, plus the policy's (``trusted``,
    ``on_untrusted``, ``policy``, ``validate``, ``timeout``, ``v1``,
    ``v2``, ``stats``); the header size limit is ``max_proxy_header_size``,
    since ``max_header_size`` is Tornado's limit for HTTP headers.
    A connection given up on is counted, logged once and closed before
    Tornado sees it.
    """

    def initialize(
        self,
        request_callback: HTTPServerConnectionDelegate | Callable[[HTTPServerRequest], None],
        *args: Any,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        trusted: Trusted | None = None,
        on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
        policy: Callable[[PeerAddress], Decision] | None = None,
        validate: Callable[[ProxyHeader], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_proxy_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        v1: bool = True,
        v2: bool = True,
        stats: Stats | None = None,
        **kwargs: Any,
    ) -> None:
        self.proxy_policy = Policy(
            trusted=trusted, on_untrusted=on_untrusted, policy=policy, validate=validate,
            timeout=timeout, max_header_size=max_proxy_header_size, v1=v1, v2=v2, stats=stats,
        )
        # Tornado would wrap the socket in TLS before handle_stream; the
        # header comes first, so TLS is started here, after it.
        self.proxy_ssl_options = ssl_options
        super().initialize(request_callback, *args, **kwargs)

    async def handle_stream(self, stream: IOStream, address: PeerAddress) -> None:  # type: ignore[override]
        policy = self.proxy_policy
        decision = policy.decide(address)
        client, header = address, None
        try:
            if decision == REJECT:
                raise policy.refuse_peer(address)
            if decision == SKIP:
                policy.skipped()
            else:
                header = await _read_header(stream, policy, address)
                client, header = policy.accept(header, address, decision)
            if self.proxy_ssl_options is not None:
                stream = await stream.start_tls(True, self.proxy_ssl_options)
        except (ProxyProtocolError, OSError, StreamClosedError, ssl.SSLError, ValueError):
            stream.close()
            return
        stream.proxy_header = header  # type: ignore[attr-defined]
        # Tornado reads only the host of an IP address; anything else
        # (a UNIX header over TCP) leaves the socket's own peer, as Tornado
        # gave it (its annotation says tuple; a UNIX listener gives a str).
        super().handle_stream(
            stream, client if isinstance(client, tuple) else address  # type: ignore[arg-type]
        )


def proxy_header(request: HTTPServerRequest) -> ProxyHeader | None:
    """The header of ``request``'s connection (None: none expected, or not believed)."""
    stream = getattr(request.connection, "stream", None)
    return getattr(stream, "proxy_header", None)


async def _read_header(stream: IOStream, policy: Policy, peer: PeerAddress) -> ProxyHeader:
    data = bytearray()
    try:
        return await asyncio.wait_for(_read_exactly(stream, policy, peer, data), policy.timeout)
    except asyncio.TimeoutError:
        raise policy.timed_out(peer, len(data)) from None


async def _read_exactly(
    stream: IOStream, policy: Policy, peer: PeerAddress, data: bytearray
) -> ProxyHeader:
    sock = stream.socket
    loop = asyncio.get_running_loop()
    while True:
        try:
            return policy.parse(data)
        except Incomplete as exc:
            needed = exc.needed
        except ProxyProtocolError as exc:
            raise policy.refuse_header(peer, exc) from None
        # Wait for exactly what the parser asks for.  The socket is read
        # through asyncio, not the IOStream: an idle IOStream may read ahead
        # into its own buffer, and TLS cannot start over a non-empty one.
        try:
            chunk = await loop.sock_recv(sock, needed - len(data))
        except OSError as exc:
            raise policy.closed_early(peer, len(data), needed, exc) from None
        if not chunk:
            raise policy.closed_early(peer, len(data), needed)
        data += chunk
        # ...then take, without waiting, whatever more of the header has
        # already arrived, and nothing after it.
        try:
            peeked = sock.recv(FIRST_PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise policy.closed_early(peer, len(data), needed, exc) from None
        try:
            take = policy.parse(data + peeked).length - len(data)
        except ProxyProtocolError:
            # A strict prefix (Incomplete) is all header; an invalid one is
            # about to be refused.
            take = len(peeked)
        if take:
            data += sock.recv(take)
