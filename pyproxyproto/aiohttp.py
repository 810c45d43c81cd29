"""PROXY protocol for aiohttp's web server: ``ProxyProtocolSite`` for a ``web.AppRunner``, and ``run_app``.

aiohttp reads no PROXY header; aiohttp#11252 asks for one, TLS after the
header included (a balancer passing TLS through).  ``run_app`` is
``web.run_app`` with the policy options::

    from pyproxyproto.aiohttp import run_app
    run_app(app, host="0.0.0.0", port=9080, trusted=["10.0.0.0/8"])

and ``ProxyProtocolSite`` the site to start on an ``AppRunner`` of your own
(in place of ``web.TCPSite``, ``UnixSite`` or ``SockSite``)::

    runner = web.AppRunner(app)
    await runner.setup()
    await ProxyProtocolSite(runner, "0.0.0.0", 9080, trusted=["10.0.0.0/8"]).start()

``request.remote``, ``request.transport.get_extra_info("peername")`` and
the access log (``%a``) are the header's client; the header itself is
``proxy_header(request)``.  With ``ssl_context``, TLS starts after the
plaintext header.  gunicorn: ``pyproxyproto.gunicorn.GunicornWebWorker``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from ssl import SSLContext
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._log import route_to
from ._policy import OPTION_NAMES, Policy, announce, resolve
from .aio import wrap

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader
    from ._policy import PolicyOptions

__all__ = ["ProxyProtocolSite", "proxy_header", "run_app"]


def proxy_header(request: web.BaseRequest) -> ProxyHeader | None:
    """The header of ``request``'s connection (None: none expected, or not believed)."""
    transport = request.transport
    return None if transport is None else transport.get_extra_info("proxy_header")


class ProxyProtocolSite(web.BaseSite):
    """A site of an ``AppRunner`` whose connections start with a PROXY header.

    Listens on ``host``/``port`` (as ``web.TCPSite``), on the Unix socket
    ``path`` (as ``web.UnixSite``; its peers need ``"unix"`` in the trusted
    networks) or on ``sock`` (as ``web.SockSite``).  ``ssl_context``: TLS
    after the header.  ``policy`` or the policy options (see
    ``pyproxyproto.PolicyOptions``) say who must send a header; a
    connection given up on is counted, logged once and closed before
    aiohttp sees it.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        sock: socket.socket | None = None,
        ssl_context: SSLContext | None = None,
        backlog: int = 128,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        policy: Policy | None = None,
        **options: Unpack[PolicyOptions],
    ) -> None:
        if (path is not None) + (sock is not None) + (host is not None or port is not None) > 1:
            raise ValueError("give host/port, path or sock, not several")
        # The site's TLS is started after the header, by the header reader.
        super().__init__(runner, backlog=backlog)
        self.proxy_policy = resolve(policy, options, "ProxyProtocolSite()")
        self.proxy_runner = runner
        self.proxy_ssl = ssl_context
        if port is None:
            port = 8443 if ssl_context else 8080  # web.TCPSite's defaults
        self._proxy_address = (host, port)
        self._proxy_backlog = backlog
        self._proxy_path = path
        self._proxy_sock = sock
        self._proxy_reuse = (reuse_address, reuse_port)
        #: the asyncio server, once started
        self.server: asyncio.Server | None = None
        route_to(logging.getLogger("aiohttp.server"), keep=True)
        unix = path is not None or (sock is not None and sock.family == socket.AF_UNIX)
        announce(self.proxy_policy, "aiohttp", unix=unix)

    @property
    def name(self) -> str:
        scheme = "https" if self.proxy_ssl else "http"
        if self._proxy_path is not None:
            return f"{scheme}://unix:{self._proxy_path}:"
        if self.server is not None and self.server.sockets:
            address = self.server.sockets[0].getsockname()
        elif self._proxy_sock is not None:
            address = self._proxy_sock.getsockname()
        else:
            address = self._proxy_address
        if isinstance(address, tuple):
            host = address[0] or "0.0.0.0"
            return f"{scheme}://{f'[{host}]' if ':' in host else host}:{address[1]}"
        return f"{scheme}://unix:{address}:"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        factory = wrap(self.proxy_runner.server, policy=self.proxy_policy,  # type: ignore[arg-type]
                       ssl=self.proxy_ssl)
        if self._proxy_path is not None:
            self.server = await loop.create_unix_server(factory, self._proxy_path,
                                                        backlog=self._proxy_backlog)
        elif self._proxy_sock is not None:
            self.server = await loop.create_server(factory, sock=self._proxy_sock,
                                                   backlog=self._proxy_backlog)
        else:
            host, port = self._proxy_address
            reuse_address, reuse_port = self._proxy_reuse
            self.server = await loop.create_server(factory, host, port, backlog=self._proxy_backlog,
                                                   reuse_address=reuse_address, reuse_port=reuse_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await super().stop()


def run_app(
    app: web.Application,
    *,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    sock: socket.socket | None = None,
    ssl_context: SSLContext | None = None,
    backlog: int = 128,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    print: Callable[..., None] | None = print,
    policy: Policy | None = None,
    **kwargs: Any,
) -> None:
    """``web.run_app`` behind a PROXY header, on one address (``host``/``port``,
    ``path`` or ``sock``): serve ``app`` until SIGINT or SIGTERM.  Takes
    ``policy`` or the policy options (see ``pyproxyproto.PolicyOptions``);
    the other keyword arguments are ``web.AppRunner``'s (``access_log``,
    ``access_log_format``, ``keepalive_timeout``, ``shutdown_timeout``, ...)."""
    options = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
    rules = resolve(policy, options, "run_app()")  # type: ignore[arg-type]

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=True, **kwargs)
        await runner.setup()
        try:
            site = ProxyProtocolSite(
                runner, host, port, path=path, sock=sock, ssl_context=ssl_context,
                backlog=backlog, reuse_address=reuse_address, reuse_port=reuse_port,
                policy=rules)
            await site.start()
            if print is not None:
                print(f"======== Running on {site.name} (PROXY protocol) ========\n"
                      "(Press CTRL+C to quit)")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
