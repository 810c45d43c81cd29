"""PROXY protocol for Sanic: HttpProtocol and WebSocketProtocol for ``app.run(protocol=...)``.

``app.run(protocol=pyproxyproto.sanic.HttpProtocol)`` (or
``WebSocketProtocol``) reads each connection's header first, so
``request.ip`` and ``request.conn_info`` are the header's client.  Sanic
builds protocols in each worker process, so the options come from the
PYPROXYPROTO_* environment variables, read when this module is imported:
in the main process, before the workers start (a bad value stops the app
there), and again in each worker.  Set them before importing it.  The
header is read by ``pyproxyproto.aio.wrap``; Sanic's own protocol is
created once it is done.  Records go to Sanic's error log unless logging
is configured otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from sanic.server.protocols.http_protocol import HttpProtocol as _SanicHttpProtocol
from sanic.server.protocols.websocket_protocol import (
    WebSocketProtocol as _SanicWebSocketProtocol,
)

from . import aio
from ._env import policy_from_env
from ._log import route_to
from ._policy import ENVIRONMENT, Policy, announce

__all__ = ["HttpProtocol", "WebSocketProtocol"]


def _policy() -> Policy:
    route_to(logging.getLogger("sanic.error"))
    policy = policy_from_env()
    announce(policy, "sanic", setting=ENVIRONMENT)
    return policy


# Checked on import: in the main process that is before the workers start.
_POLICY = _policy()


@functools.cache
def _factory(base: type[asyncio.Protocol]) -> Callable[..., asyncio.Protocol]:
    # Once per process and class.
    return aio.wrap(base, policy=_POLICY)


class HttpProtocol(_SanicHttpProtocol):
    """Sanic's HttpProtocol behind a PROXY header (options from PYPROXYPROTO_*)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # What Sanic's server gets is the header reader; Sanic's own
        # protocol, built with the same arguments, follows the header.
        return _factory(_SanicHttpProtocol)(*args, **kwargs)


class WebSocketProtocol(_SanicWebSocketProtocol):
    """Sanic's WebSocketProtocol behind a PROXY header (options from PYPROXYPROTO_*)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _factory(_SanicWebSocketProtocol)(*args, **kwargs)
