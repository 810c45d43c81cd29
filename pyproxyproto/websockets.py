"""PROXY protocol for websockets servers: ``serve`` / ``unix_serve`` (asyncio) and ``serve_sync`` / ``unix_serve_sync`` (threads).

A WebSocket server behind a layer-4 balancer (an AWS NLB, HAProxy in TCP
mode) sees the balancer's address unless the balancer sends a PROXY
header; websockets reads none.  These functions take websockets' own
arguments plus ``policy=`` or the policy options::

    from pyproxyproto.websockets import serve
    async with serve(handler, "0.0.0.0", 9080, trusted=["10.0.0.0/8"]) as server:
        await server.serve_forever()

The header is read before websockets sees the connection, through
websockets' own hook for that (``create_connection``), so
``connection.remote_address`` (and the server's logs) show the header's
client; ``proxy_header(connection)`` is the header.  With ``ssl=``, TLS
starts after the plaintext header, the order of a TLS-passthrough
balancer.  Asyncio: the header is read by ``pyproxyproto.aio``'s header
reader (non-blocking, the policy's timeout); threads: in the connection's
thread, exactly (``pyproxyproto.sockets.read``), before TLS and the
WebSocket handshake.  Records go to the server's logger
(``websockets.server`` unless ``logger=`` says otherwise).
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio import server as _asyncio_server
from websockets.sync import server as _sync_server

from . import Handshake
from ._log import route_to
from ._networks import PeerAddress, is_unix_peer
from ._policy import OPTION_NAMES, Policy, announce, resolve
from ._step import READ, SERVE
from .aio import wrap
from .sockets import read

if TYPE_CHECKING:
    from . import ProxyHeader

__all__ = ["proxy_header", "serve", "serve_sync", "unix_serve", "unix_serve_sync"]

# websockets' defaults for the timeouts of the opening handshake and the
# closing one, which it also applies to TLS.
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 10.0


def proxy_header(connection: Any) -> ProxyHeader | None:
    """The header of ``connection`` (a websockets ``ServerConnection``, asyncio
    or sync): None when none was expected, or it is not believed."""
    header = getattr(connection, "proxy_header", None)
    if header is not None:
        return header  # type: ignore[no-any-return]
    transport = getattr(connection, "transport", None)
    return None if transport is None else transport.get_extra_info("proxy_header")


def _prepare(policy: Policy | None, kwargs: dict[str, Any], where: str) -> Policy:
    """The policy from ``policy`` or the options among ``kwargs`` (taken out
    of them); the records routed to the server's logger; the start-up message."""
    options = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
    rules = resolve(policy, options, where)  # type: ignore[arg-type]
    target = kwargs.get("logger") or logging.getLogger("websockets.server")
    if isinstance(target, logging.LoggerAdapter):
        target = target.logger
    if isinstance(target, logging.Logger):
        route_to(target)
    unix = bool(kwargs.get("unix")) or getattr(kwargs.get("sock"), "family", None) == socket.AF_UNIX
    announce(rules, "websockets", unix=unix)
    return rules


def _subprotocols(kwargs: dict[str, Any]) -> Callable[[Any, Any], None]:
    """Take ``select_subprotocol`` out of ``kwargs``, and return what makes
    each connection's protocol call it with the connection itself."""
    select = kwargs.pop("select_subprotocol", None)

    def bind(protocol: Any, connection: Any) -> None:
        if select is not None:
            # As websockets binds it, but to the connection made here.
            setattr(protocol, "select_subprotocol", functools.partial(select, connection))

    return bind


# -- asyncio ---------------------------------------------------------------------------


def serve(
    handler: Callable[[_asyncio_server.ServerConnection], Awaitable[None]],
    host: str | None = None,
    port: int | None = None,
    *,
    policy: Policy | None = None,
    **kwargs: Any,
) -> _asyncio_server.Server:
    """``websockets.asyncio.server.serve`` behind a PROXY header: its
    arguments, plus ``policy`` or the policy options (see
    ``pyproxyproto.PolicyOptions``).  A connection given up on is counted,
    logged once and closed before websockets sees it."""
    rules = _prepare(policy, kwargs, "websockets serve()")
    make_connection = kwargs.pop("create_connection", None) or _asyncio_server.ServerConnection
    bind = _subprotocols(kwargs)
    tls = kwargs.pop("ssl", None)
    tls_options: dict[str, Any] = {}
    if tls is not None:
        tls_options["ssl_handshake_timeout"] = kwargs.pop(
            "ssl_handshake_timeout", kwargs.get("open_timeout", _OPEN_TIMEOUT))
        tls_options["ssl_shutdown_timeout"] = kwargs.pop(
            "ssl_shutdown_timeout", kwargs.get("close_timeout", _CLOSE_TIMEOUT))

    def connection(protocol: Any, *args: Any, **options: Any) -> Any:
        made = make_connection(protocol, *args, **options)
        bind(protocol, made)
        return made

    # websockets makes each connection (its asyncio protocol) through
    # create_connection, documented as the place for a wrapper.
    kwargs["create_connection"] = wrap(connection, policy=rules, ssl=tls, **tls_options)
    return _asyncio_server.serve(handler, host, port, **kwargs)


def unix_serve(
    handler: Callable[[_asyncio_server.ServerConnection], Awaitable[None]],
    path: str | None = None,
    **kwargs: Any,
) -> _asyncio_server.Server:
    """``serve`` on a Unix socket (``websockets.asyncio.server.unix_serve``);
    its peers need ``trusted=["unix"]`` (or a policy that lets them in)."""
    return serve(handler, unix=True, path=path, **kwargs)


# -- threads ---------------------------------------------------------------------------


class _Proxied:
    """A sync ServerConnection whose addresses are its header's."""

    proxy_header: ProxyHeader | None = None
    _proxy_client: PeerAddress = None

    @property
    def remote_address(self) -> Any:
        return self._proxy_client

    @property
    def local_address(self) -> Any:
        header = self.proxy_header
        if header is not None and header.destination is not None:
            return header.destination
        return super().local_address  # type: ignore[misc]


@functools.lru_cache(maxsize=None)
def _proxied_class(cls: type) -> type:
    return type(cls.__name__, (_Proxied, cls), {})


def serve_sync(
    handler: Callable[[_sync_server.ServerConnection], None],
    host: str | None = None,
    port: int | None = None,
    *,
    policy: Policy | None = None,
    **kwargs: Any,
) -> _sync_server.Server:
    """``websockets.sync.server.serve`` behind a PROXY header: its arguments,
    plus ``policy`` or the policy options (see ``pyproxyproto.PolicyOptions``).
    The header is read in the connection's thread, before TLS."""
    rules = _prepare(policy, kwargs, "websockets serve_sync()")
    make_connection = _proxied_class(kwargs.pop("create_connection", None)
                                     or _sync_server.ServerConnection)
    bind = _subprotocols(kwargs)
    tls: _ssl.SSLContext | None = kwargs.pop("ssl", None)
    open_timeout = kwargs.get("open_timeout", _OPEN_TIMEOUT)

    def connection(sock: socket.socket, protocol: Any, *args: Any, **options: Any) -> Any:
        # websockets calls this in the connection's thread, before the
        # WebSocket handshake; what it raises closes the socket.
        hs = Handshake(rules)
        peer = sock.getpeername()
        local = sock.getsockname() if is_unix_peer(peer) else None
        if hs.begin(peer, local) is READ:
            read(sock, hs)
        if hs.step is not SERVE:
            raise hs.error  # type: ignore[misc]  # counted and logged
        if tls is not None:
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            sock.settimeout(open_timeout)
            sock.do_handshake()
            sock.settimeout(None)
        made = make_connection(sock, protocol, *args, **options)
        made.proxy_header = hs.believed
        made._proxy_client = hs.client
        bind(protocol, made)
        return made

    kwargs["create_connection"] = connection
    return _sync_server.serve(handler, host, port, **kwargs)


def unix_serve_sync(
    handler: Callable[[_sync_server.ServerConnection], None],
    path: str | None = None,
    **kwargs: Any,
) -> _sync_server.Server:
    """``serve_sync`` on a Unix socket (``websockets.sync.server.unix_serve``)."""
    return serve_sync(handler, unix=True, path=path, **kwargs)
