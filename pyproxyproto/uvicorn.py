"""uvicorn's HTTP protocols behind a PROXY header, for ``--http``:
``uvicorn app:app --http pyproxyproto.uvicorn:H11Protocol`` (or
``HttpToolsProtocol``), with any number of workers.

The header is read before uvicorn's protocol is made, so ``scope["client"]``,
``scope["server"]`` and the access log show the header's addresses, for
HTTP and for WebSocket upgrades alike.  The header itself is in
``scope["state"]["proxy_header"]`` (``request.state.proxy_header`` in
Starlette/FastAPI): a ``ProxyHeader``, or None for a peer served without one.

Settings come from the environment, so every worker process has them:
PYPROXYPROTO_TRUSTED, _ON_UNTRUSTED, _DECIDE, _VALIDATE, _TIMEOUT,
_MAX_HEADER_SIZE, _VERSIONS, _STATS (see ``pyproxyproto._env``), and for
TLS after the header (a TLS-passthrough balancer) PYPROXYPROTO_SSL_CERTFILE
and PYPROXYPROTO_SSL_KEYFILE in place of uvicorn's ``--ssl-*`` options,
which would start TLS before the header can be read.  They are checked
when each worker loads its configuration: a bad one stops uvicorn with one
line in its log.  Records go to uvicorn's error log.
"""

from __future__ import annotations

import asyncio
import os
import ssl as _ssl
from typing import TYPE_CHECKING, Any, Callable

from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl

from . import _uvicorn_internals as internals
from ._env import SettingError, policy_from_env
from ._log import logger, route_to
from ._policy import ENVIRONMENT, Policy, announce
from .aio import header_reader

if TYPE_CHECKING:
    from uvicorn.server import ServerState

    from . import ProxyHeader

__all__ = ["HEADER_KEY", "H11Protocol", "configure", "tls_context"]

# Where the header is in each request's scope["state"].
HEADER_KEY = "proxy_header"

ENV_SSL_CERTFILE = "PYPROXYPROTO_SSL_CERTFILE"
ENV_SSL_KEYFILE = "PYPROXYPROTO_SSL_KEYFILE"

# The attribute of a uvicorn Config that holds its header reader once made.
_READER = "_pyproxyproto_reader"


def configure(config: Config, policy: Policy, ssl: _ssl.SSLContext | None = None) -> None:
    """Give a uvicorn Config its policy and TLS context instead of reading
    the environment (``pyproxyproto.gunicorn.UvicornWorker`` does this)."""
    setattr(config, _READER, header_reader(_make_protocol, policy, ssl))


def tls_context(config: Any) -> _ssl.SSLContext:
    """The server-side TLS context uvicorn would make from ``config``'s
    ``ssl_*`` settings (a uvicorn Config, or gunicorn's through
    uvicorn-worker); pyproxyproto starts it after the header."""
    context = _ssl.SSLContext(config.ssl_version)
    context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    context.verify_mode = _ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        context.load_verify_locations(config.ssl_ca_certs)
    if config.ssl_ciphers:
        context.set_ciphers(config.ssl_ciphers)
    return context


def _prepare(config: Config) -> None:
    """Check ``config`` and the PYPROXYPROTO_* settings, say what they mean,
    and give ``config`` its header reader; raise on a bad setting."""
    route_to(internals.error_log)
    if config.is_ssl:
        raise SettingError(
            "uvicorn's --ssl-* options start TLS before the PROXY header can be "
            f"read; give the certificate in {ENV_SSL_CERTFILE} (and "
            f"{ENV_SSL_KEYFILE}) instead, so that TLS starts after the header"
        )
    policy = policy_from_env()
    context = _ssl_from_env()
    announce(policy, "uvicorn", unix=config.uds is not None and not policy.trusts(""),
             setting=ENVIRONMENT)
    forwarded = config.forwarded_allow_ips
    if config.proxy_headers and "*" in (
        forwarded if isinstance(forwarded, list) else str(forwarded).split(",")
    ):
        logger.warning(
            "uvicorn: --forwarded-allow-ips '*' lets any client's X-Forwarded-For "
            "replace the address from its PROXY header; name your proxies' addresses "
            "there, or turn --proxy-headers off (--no-proxy-headers)"
        )
    configure(config, policy, context)


def _ssl_from_env() -> _ssl.SSLContext | None:
    certfile = os.environ.get(ENV_SSL_CERTFILE, "").strip()
    keyfile = os.environ.get(ENV_SSL_KEYFILE, "").strip() or None
    if not certfile:
        if keyfile:
            raise SettingError(f"{ENV_SSL_KEYFILE} is set but {ENV_SSL_CERTFILE} is not")
        return None
    context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, _ssl.SSLError) as exc:
        raise SettingError(f"{ENV_SSL_CERTFILE}={certfile!r}: cannot load it ({exc})") from None
    return context


def _reader(config: Config) -> Callable[..., asyncio.Protocol]:
    reader: Callable[..., asyncio.Protocol] | None = getattr(config, _READER, None)
    if reader is None:
        # The fallback: a Config not seen while loading (see _uvicorn_internals).
        if not config.loaded:
            config.load()
        try:
            _prepare(config)
        except (SettingError, ValueError, TypeError) as exc:
            internals.stop_worker(str(exc))
        reader = getattr(config, _READER)
    return reader


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
    return internals.make_protocol(  # type: ignore[no-any-return]
        cls, config, server_state, {**app_state, HEADER_KEY: header}, _loop
    )


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


def _check_at_start_up() -> None:
    """Imported by a worker's Config.load(): check its settings now."""
    config = internals.loading_config()
    if not internals.protocol_signature_known():
        message = ("this uvicorn makes its HTTP protocols with other arguments than "
                   "pyproxyproto knows; pin a uvicorn release that pyproxyproto supports")
        if config is not None:
            internals.stop_worker(message)
        raise ImportError(f"pyproxyproto.uvicorn: {message}")
    if config is not None:
        try:
            _prepare(config)
        except (SettingError, ValueError, TypeError) as exc:
            internals.stop_worker(str(exc))


_check_at_start_up()
