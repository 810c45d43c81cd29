"""PROXY protocol for gevent's servers: ``StreamServer``, ``WSGIServer`` (pywsgi), and ``ProxyProtocolServer`` for any StreamServer subclass.

gevent has no PROXY reader of its own; its maintainers send users who need
one to gunicorn (gevent#972, gevent#667).  These servers take gevent's
arguments plus ``policy=`` or the policy options::

    from pyproxyproto.gevent import WSGIServer
    WSGIServer(("0.0.0.0", 9080), app, trusted=["10.0.0.0/8"]).serve_forever()

Each connection's header is read in the connection's own greenlet, before
its handler runs, over gevent's cooperative socket and within the header
timeout; it is read exactly (what has arrived is peeked and only the
header's bytes are taken), so the request that follows is still in the
socket for the handler.  With TLS (``ssl_context=``, ``certfile=``, ...)
TLS starts after the plaintext header, the order of a TLS-passthrough
balancer.  The handler's ``address`` is the header's client and
``proxy_header(sock)`` the header; under pywsgi ``REMOTE_ADDR`` /
``REMOTE_PORT`` are the client's and ``environ["pyproxyproto.proxy_header"]``
the header.  gunicorn's gevent workers: ``pyproxyproto.gunicorn.GeventWorker``
and ``GeventPyWSGIWorker``.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from gevent import Timeout, pywsgi
from gevent import server as _server

from . import Handshake
from . import _gevent_internals as internals
from ._log import _Routed, route
from ._networks import PeerAddress, is_unix_peer
from ._policy import OPTION_NAMES, Policy, announce, resolve
from ._step import READ, SERVE
from ._wsgi import ENVIRON_KEY
from .sockets import read

if TYPE_CHECKING:
    from . import ProxyHeader

    _Server = _server.StreamServer
else:
    _Server = object

__all__ = ["ENVIRON_KEY", "ProxyProtocolServer", "StreamServer", "WSGIServer", "handshake",
           "proxy_header"]

# The header believed for each connection being served, by the socket its
# handler was given (a process has one such table: a socket is one server's).
_headers: dict[Any, ProxyHeader | None] = {}


def proxy_header(sock: Any) -> ProxyHeader | None:
    """The header of the connection whose handler was given ``sock`` (None:
    none expected, or not believed)."""
    return _headers.get(sock)


def handshake(sock: Any, address: PeerAddress, policy: Policy, local: object = None) -> Handshake:
    """Run the handshake of the connection ``sock``, accepted from ``address``,
    in this greenlet (exact reads, within the policy's timeout); return it at
    its end: SERVE, or CLOSE (counted and logged; closing is the caller's)."""
    hs = Handshake(policy)
    if hs.begin(address, local) is READ:
        # gevent's socket waits for bytes itself, so the timeout is gevent's.
        timer = Timeout(hs.timeout)
        try:
            with timer:
                read(sock, hs)
        except Timeout as exc:
            if exc is not timer:
                raise
            hs.timed_out()
    return hs


class _ToGeventLog(_Routed):
    """Writes the ``pyproxyproto`` records where the gevent server writes its
    errors (pywsgi's ``error_log``, else standard error), each line stamped
    as gevent stamps its own reports."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        try:
            self.stream.write(f"{stamp} pyproxyproto {record.levelname}: {record.getMessage()}\n")
        except Exception:  # a log that fails must not take the connection down
            self.handleError(record)


class ProxyProtocolServer(_Server):
    """Make a gevent ``StreamServer`` (or a subclass of it) read a PROXY header
    per connection: put it first, ``class S(ProxyProtocolServer, StreamServer)``.

    Its constructor takes the server's arguments plus ``policy`` or the
    policy options (see ``pyproxyproto.PolicyOptions``).  A connection given
    up on is counted, logged once and closed before the handler sees it.
    """

    proxy_policy: Policy

    def __init__(self, *args: Any, policy: Policy | None = None, **kwargs: Any) -> None:
        options = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
        self.proxy_policy = resolve(policy, options, f"{type(self).__name__}()")  # type: ignore[arg-type]
        super().__init__(*args, **kwargs)
        # Inside a gunicorn worker, gunicorn's log stays the records' route.
        route(_ToGeventLog(getattr(self, "error_log", None) or sys.stderr), logging.INFO, keep=True)
        announce(self.proxy_policy, "gevent", unix=self.family == socket.AF_UNIX)

    def init_socket(self) -> None:
        super().init_socket()
        internals.set_connection_handler(self, self._proxy_connection)

    def _proxy_connection(self, sock: Any, address: PeerAddress) -> None:
        """What the server runs for each connection, in its greenlet."""
        local = self.address if is_unix_peer(address) else None
        hs = handshake(sock, address, self.proxy_policy, local)
        if hs.step is not SERVE:
            return  # counted and logged; gevent closes the socket
        ssl_args = self.ssl_args
        if ssl_args is not None:
            wrap: Any = getattr(self, "wrap_socket")  # (its stub types it as a plain function)
            sock = wrap(sock, **ssl_args)
        _headers[sock] = hs.believed
        try:
            self.handle(sock, hs.client)
        finally:
            del _headers[sock]
            if ssl_args is not None:
                sock.close()


class StreamServer(ProxyProtocolServer, _server.StreamServer):
    """gevent's ``StreamServer`` behind a PROXY header: ``handle(sock,
    address)`` is called with the header's client as ``address``."""


class _HeaderInEnviron(pywsgi.WSGIHandler):
    """A pywsgi handler whose environ carries the connection's header."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[ENVIRON_KEY] = _headers.get(self.socket)
        return environ


# Each handler class given, with the header added to its environ.
_handler_classes: dict[type[pywsgi.WSGIHandler], type[pywsgi.WSGIHandler]] = {}


def _with_header(handler_class: type[pywsgi.WSGIHandler]) -> type[pywsgi.WSGIHandler]:
    if issubclass(handler_class, _HeaderInEnviron):
        return handler_class
    made = _handler_classes.get(handler_class)
    if made is None:
        made = _handler_classes[handler_class] = type(
            handler_class.__name__, (_HeaderInEnviron, handler_class), {})
    return made


class WSGIServer(ProxyProtocolServer, pywsgi.WSGIServer):
    """gevent's ``pywsgi.WSGIServer`` behind a PROXY header: ``REMOTE_ADDR`` /
    ``REMOTE_PORT`` are the header's client, ``environ[ENVIRON_KEY]`` the
    header.  A ``handler_class`` given is used, with the header added to
    its environ."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler_class = _with_header(self.handler_class)
