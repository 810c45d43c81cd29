"""Every use of gevent's internals, beside the guard that detects a change and the fallback.

gevent's servers call one attribute per connection, ``_handle``: ``init_socket``
sets it to ``handle`` (or, with TLS, to ``wrap_socket_and_handle``) and
``do_handle`` spawns a greenlet running it.  ``pyproxyproto.gevent`` puts its
handshake there, so that the header is read first in the connection's
greenlet: before TLS starts, and before any ``handle`` a subclass defines.
The guard checks that ``do_handle`` reads ``_handle`` and ``init_socket``
sets it.  Fallback: none can read the header before a changed gevent starts
TLS or calls a handler, so the server refuses to start, saying why (a server
that served without reading headers would trust every client's first bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.baseserver import BaseServer
from gevent.server import StreamServer

_HANDLER = "_handle"


def _names(function: Any) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return () if code is None else code.co_names


def _handler_works() -> bool:
    """The guard (see the module docstring)."""
    return _HANDLER in _names(BaseServer.do_handle) and _HANDLER in _names(StreamServer.init_socket)


HANDLER = _handler_works()


def set_connection_handler(server: StreamServer, handler: Callable[[Any, Any], object]) -> None:
    """Make ``handler(sock, address)`` what ``server`` runs for each new
    connection (after its ``init_socket``); RuntimeError when the guard
    says this gevent works otherwise."""
    if not HANDLER:
        raise RuntimeError(
            "this gevent runs its servers' connections otherwise than pyproxyproto knows, "
            "so no PROXY header could be read before TLS or the handler; install the gevent "
            "release pyproxyproto supports (pyproxyproto[gevent])"
        )
    setattr(server, _HANDLER, handler)
