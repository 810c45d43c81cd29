"""PROXY protocol for waitress: ``serve`` and ``create_server``, waitress' own plus the policy options.

waitress reads no PROXY header (its ``trusted_proxy`` settings are about
X-Forwarded-* HTTP headers, which any client can write)::

    from pyproxyproto.waitress import serve
    serve(app, listen="*:9080", trusted=["10.0.0.0/8"])

Each connection's channel feeds the handshake the bytes waitress receives,
in waitress' own event loop (never blocking it), and hands what follows the
header to waitress' HTTP parser.  ``REMOTE_ADDR`` / ``REMOTE_PORT`` (and
what logs them) are the header's client, and
``environ["pyproxyproto.proxy_header"]`` the header.  The header timeout is
checked each time waitress' loop turns (at least every
``asyncore_loop_timeout``, 1 s by default), so a silent connection is
closed within a second past it.  Records go to waitress' ``waitress``
logger.  On a Unix socket (``unix_socket=``), its peers need ``"unix"`` in
the trusted networks.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any, ClassVar

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.server import create_server as _create_server
from waitress.task import WSGITask

from . import Handshake
from ._log import route_to
from ._policy import OPTION_NAMES, Policy, announce, resolve
from ._step import CLOSE, READ
from ._wsgi import ENVIRON_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from . import ProxyHeader

__all__ = ["ENVIRON_KEY", "ProxyChannel", "create_server", "serve"]


class _Task(WSGITask):
    """waitress' WSGI task, with the header in the environ."""

    def get_environment(self) -> Any:
        environ = super().get_environment()
        environ[ENVIRON_KEY] = self.channel.proxy_header  # type: ignore[attr-defined]
        return environ


class ProxyChannel(HTTPChannel):
    """waitress' HTTP channel, reading a PROXY header before HTTP.

    ``create_server`` gives each server a subclass holding its policy."""

    proxy_policy: ClassVar[Policy]
    task_class = _Task
    #: the header believed for this connection (None: none expected, or not believed)
    proxy_header: ProxyHeader | None = None
    # The handshake while the header is awaited, and its deadline.
    _proxy_handshake: Handshake | None = None
    _proxy_deadline = 0.0

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        hs = Handshake(self.proxy_policy)
        local = None
        if server.family == socket.AF_UNIX:
            # waitress names every Unix peer ("localhost", None): decide for the socket's.
            addr, local = sock.getpeername(), sock.getsockname()
        step = hs.begin(addr, local)
        if step is READ:
            timeout = hs.timeout
            self._proxy_deadline = float("inf") if timeout is None else time.monotonic() + timeout
            self._proxy_handshake = hs
        elif step is CLOSE:
            self.will_close = True  # counted and logged; closed before a byte is read

    def received(self, data: bytes) -> bool:
        hs = self._proxy_handshake
        if hs is None:
            return super().received(data)
        step = hs.feed(data)
        if step is READ:
            return True
        self._proxy_handshake = None
        if step is CLOSE:
            self.will_close = True  # counted and logged by the handshake
            return False
        self.proxy_header = hs.believed
        client = hs.client
        if isinstance(client, tuple):
            self.addr = client[:2]  # waitress' REMOTE_ADDR and REMOTE_PORT
        rest = hs.rest
        return super().received(rest) if rest else True

    def readable(self) -> bool:
        hs = self._proxy_handshake
        if hs is not None and time.monotonic() >= self._proxy_deadline:
            self._proxy_handshake = None
            hs.timed_out()
            self.will_close = True
            return False
        return super().readable()

    def handle_close(self) -> None:
        hs = self._proxy_handshake
        if hs is not None:  # the peer closed (or the connection failed) mid-header
            self._proxy_handshake = None
            hs.closed()
        super().handle_close()


def _servers(server: Any) -> list[BaseWSGIServer]:
    """The listening servers behind what waitress' ``create_server`` returned."""
    if isinstance(server, MultiSocketServer):
        dispatchers: list[Any] = list((server.map or {}).values())
        return [d for d in dispatchers if isinstance(d, BaseWSGIServer)]
    return [server]


def create_server(
    application: WSGIApplication, *, policy: Policy | None = None, **kw: Any
) -> BaseWSGIServer | MultiSocketServer:
    """``waitress.create_server`` behind a PROXY header: waitress' settings,
    plus ``policy`` or the policy options (see ``pyproxyproto.PolicyOptions``).
    A connection given up on is counted, logged once and closed before
    waitress parses a byte of it."""
    options = {name: kw.pop(name) for name in OPTION_NAMES if name in kw}
    rules = resolve(policy, options, "waitress create_server()")  # type: ignore[arg-type]
    route_to(logging.getLogger("waitress"))
    server = _create_server(application, **kw)
    servers = _servers(server)
    try:
        announce(rules, "waitress", unix=any(s.family == socket.AF_UNIX for s in servers))
    except ValueError:
        server.close()
        raise
    channel = type("ProxyChannel", (ProxyChannel,), {"proxy_policy": rules})
    for each in servers:
        # waitress makes each connection's channel as channel_class(...).
        each.channel_class = channel
    return server


def serve(application: WSGIApplication, *, policy: Policy | None = None, **kw: Any) -> None:
    """``waitress.serve`` behind a PROXY header (see ``create_server``): serve
    until interrupted.  As waitress' ``serve``, it sets up Python's logging
    unless the program did."""
    logging.basicConfig()
    server = create_server(application, policy=policy, **kw)
    server.print_listen("Serving on http://{}:{} (PROXY protocol)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
