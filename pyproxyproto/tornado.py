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
import logging
import socket
import ssl
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.httpserver
from tornado.iostream import IOStream, StreamClosedError

from . import Handshake
from ._log import logger, route_to
from ._networks import PeerAddress
from ._policy import FIRST_PEEK, Policy, announce, resolve
from ._step import READ, SERVE
from .sockets import absorb

if TYPE_CHECKING:
    from tornado.httputil import HTTPServerConnectionDelegate, HTTPServerRequest
    from typing_extensions import Unpack

    from . import ProxyHeader
    from ._policy import PolicyOptions

__all__ = ["HTTPServer", "proxy_header"]


class HTTPServer(tornado.httpserver.HTTPServer):
    """A Tornado HTTPServer behind a PROXY header.

    Takes Tornado's arguments, plus ``policy`` (a ``pyproxyproto.Policy``)
    or the policy options (see ``pyproxyproto.PolicyOptions``) but for
    ``max_header_size``, which is Tornado's limit for HTTP headers: give the
    PROXY header's limit as ``policy=Policy(max_header_size=...)``.  A
    connection given up on is counted, logged once and closed before
    Tornado sees it.
    """

    def initialize(
        self,
        request_callback: HTTPServerConnectionDelegate | Callable[[HTTPServerRequest], None],
        *args: Any,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        policy: Policy | None = None,
        **kwargs: Any,
    ) -> None:
        options = {name: kwargs.pop(name) for name in _OPTIONS if name in kwargs}
        if "max_proxy_header_size" in kwargs:
            warnings.warn(
                "max_proxy_header_size is deprecated: give policy=Policy(max_header_size=...)",
                DeprecationWarning, stacklevel=3,
            )
            options["max_header_size"] = kwargs.pop("max_proxy_header_size")
        self.proxy_policy = resolve(policy, options, "tornado HTTPServer()")  # type: ignore[arg-type]
        route_to(logging.getLogger("tornado.general"))
        announce(self.proxy_policy, "tornado")
        if kwargs.get("xheaders"):
            logger.warning(
                "tornado: xheaders=True lets any client's X-Real-Ip or X-Forwarded-For "
                "replace the address from its PROXY header; leave xheaders off behind a "
                "PROXY balancer"
            )
        # Tornado would wrap the socket in TLS before handle_stream; the
        # header comes first, so TLS is started here, after it.
        self.proxy_ssl_options = ssl_options
        super().initialize(request_callback, *args, **kwargs)

    async def handle_stream(self, stream: IOStream, address: PeerAddress) -> None:  # type: ignore[override]
        hs = Handshake(self.proxy_policy)
        sock = stream.socket
        local = sock.getsockname() if isinstance(address, (str, bytes)) else None
        if hs.begin(address, local) is READ:
            try:
                await asyncio.wait_for(_read(sock, hs), hs.timeout)
            except asyncio.TimeoutError:
                hs.timed_out()
        if hs.step is not SERVE:
            stream.close()
            return
        try:
            if self.proxy_ssl_options is not None:
                stream = await stream.start_tls(True, self.proxy_ssl_options)
        except (OSError, StreamClosedError, ssl.SSLError, ValueError):
            stream.close()
            return
        stream.proxy_header = hs.believed  # type: ignore[attr-defined]
        client = hs.client
        # Tornado reads only the host of an IP address; anything else
        # (a UNIX header over TCP) leaves the socket's own peer, as Tornado
        # gave it (its annotation says tuple; a UNIX listener gives a str).
        super().handle_stream(
            stream, client if isinstance(client, tuple) else address  # type: ignore[arg-type]
        )


# The policy options a Tornado HTTPServer takes as keywords (max_header_size
# is Tornado's own).
_OPTIONS = ("trusted", "on_untrusted", "decide", "validate", "timeout", "v1", "v2", "stats")


def proxy_header(request: HTTPServerRequest) -> ProxyHeader | None:
    """The header of ``request``'s connection (None: none expected, or not believed)."""
    stream = getattr(request.connection, "stream", None)
    return getattr(stream, "proxy_header", None)


async def _read(sock: socket.socket, hs: Handshake) -> None:
    """Drive ``hs`` over the non-blocking ``sock``: wait until bytes arrive,
    peek them, and take only the header's.  The socket is read directly, not
    through the IOStream: an idle IOStream may read ahead into its own
    buffer, and TLS cannot start over a non-empty one."""
    loop = asyncio.get_running_loop()
    taken = 0
    while hs.step is READ:
        await _readable(loop, sock)
        try:
            peeked = sock.recv(max(hs.needed, FIRST_PEEK) - taken, socket.MSG_PEEK)
            taken = absorb(sock, hs, peeked, taken)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            hs.closed(exc)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
