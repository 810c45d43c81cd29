"""uvicorn's HTTP protocols behind a PROXY header, for ``--http``:
``uvicorn app:app --http pyproxyproto.uvicorn:H11Protocol`` (or
``HttpToolsProtocol``), with any number of workers.

The header is read before uvicorn's protocol is made, so ``scope["client"]``,
``scope["server"]`` and the access log show the header's addresses, for
HTTP and for WebSocket upgrades alike.  The header itself is in
``scope["state"]["proxy_header"]`` (``request.state.proxy_header`` in
Starlette/FastAPI): a ``ProxyHeader``, or None for a peer served without one.

Settings come from the environment, so every worker process has them:
PYPROXYPROTO_TRUSTED, _ON_UNTRUSTED, _POLICY, _VALIDATE, _TIMEOUT,
_MAX_HEADER_SIZE, _VERSIONS, _STATS (see ``_policy.options_from_env``),
and for TLS after the header (a TLS-passthrough balancer)
PYPROXYPROTO_SSL_CERTFILE and PYPROXYPROTO_SSL_KEYFILE in place of uvicorn's
``--ssl-*`` options, which would start TLS before the header can be read.
"""

from __future__ import annotations

import asyncio
import os
import ssl as _ssl
from typing import TYPE_CHECKING, Any, Callable

from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl

from .aio import _header_reader
from ._policy import Policy, policy_from_env

if TYPE_CHECKING:
    from uvicorn.server import ServerState

    from . import ProxyHeader

__all__ = ["HEADER_KEY", "H11Protocol", "configure"]

# Where the header is in each request's scope["state"].
HEADER_KEY = "proxy_header"

ENV_SSL_CERTFILE = "PYPROXYPROTO_SSL_CERTFILE"
ENV_SSL_KEYFILE = "PYPROXYPROTO_SSL_KEYFILE"

# The attribute of a uvicorn Config that holds its header reader once made.
_SETTINGS = "_pyproxyproto_settings"


def configure(config: Config, policy: Policy, ssl: _ssl.SSLContext | None = None) -> None:
    """Give a uvicorn Config its policy and TLS context instead of reading
    the environment (``pyproxyproto.gunicorn.UvicornWorker`` does this)."""
    setattr(config, _SETTINGS, _header_reader(_make_protocol, policy, ssl))


def _reader(config: Config) -> Callable[..., asyncio.Protocol]:
    reader: Callable[..., asyncio.Protocol] | None = getattr(config, _SETTINGS, None)
    if reader is None:
        if not config.loaded:
            config.load()
        if config.ssl is not None:
            raise RuntimeError(
                "uvicorn's --ssl-* options start TLS before the PROXY header can be "
                f"read; give the certificate in {ENV_SSL_CERTFILE} (and "
                f"{ENV_SSL_KEYFILE}) instead, so that TLS starts after the header"
            )
        configure(config, policy_from_env(), _ssl_from_env())
        reader = getattr(config, _SETTINGS)
    return reader


def _ssl_from_env() -> _ssl.SSLContext | None:
    certfile = os.environ.get(ENV_SSL_CERTFILE, "").strip()
    keyfile = os.environ.get(ENV_SSL_KEYFILE, "").strip() or None
    if not certfile:
        if keyfile:
            raise ValueError(f"{ENV_SSL_KEYFILE} is set but {ENV_SSL_CERTFILE} is not")
        return None
    context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def _make_protocol(
    header: ProxyHeader | None,
    cls: type,
    config: Config,
    server_state: ServerState,
    app_state: dict[str, Any],
    _loop: asyncio.AbstractEventLoop | None,
) -> asyncio.BaseProtocol:
    # The class's __new__ returns the header reader, so the real instance
    # (of uvicorn's base class) is made here, once the header is known.
    protocol: Any = object.__new__(cls)
    protocol.__init__(
        config=config,
        server_state=server_state,
        app_state={**app_state, HEADER_KEY: header},
        _loop=_loop,
    )
    return protocol  # type: ignore[no-any-return]


class _ProxiedHTTP:
    """Made by uvicorn once per connection: returns the header reader, which
    makes the real protocol (this class's uvicorn base) after the header."""

    def __new__(
        cls,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> Any:
        return _reader(config)(cls, config, server_state, app_state, _loop)


class H11Protocol(_ProxiedHTTP, h11_impl.H11Protocol):
    """uvicorn's h11 protocol behind a PROXY header."""


try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # httptools is not installed
    pass
else:

    class HttpToolsProtocol(_ProxiedHTTP, httptools_impl.HttpToolsProtocol):
        """uvicorn's httptools protocol behind a PROXY header."""

    __all__ += ["HttpToolsProtocol"]
