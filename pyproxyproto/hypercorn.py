"""``serve(app, config, ...)``: hypercorn's asyncio worker behind a PROXY
header, the same shape as ``hypercorn.asyncio.serve`` plus the policy options.

::

    asyncio.run(pyproxyproto.hypercorn.serve(app, config, trusted=["10.0.0.0/8"]))

The header is read before hypercorn sees the connection, so ``scope["client"]``
and the access log show the header's client; with ``config.certfile`` TLS
starts after the plaintext header.  The header itself is in
``scope["state"]["proxy_header"]`` (None for a peer served without one).
HTTP/3 (``quic_bind``) is refused: PROXY headers come on TCP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from hypercorn.config import Config
from hypercorn.typing import Framework
from hypercorn.utils import repr_socket_addr, wrap_app

from ._hypercorn_internals import Lifespan, StatsdLogger, TCPServer, WorkerContext
from ._log import route_to
from ._policy import Policy, PolicyOptions, announce, resolve
from .aio import header_reader

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader

__all__ = ["HEADER_KEY", "serve"]

# Where the header is in each request's scope["state"].
HEADER_KEY = "proxy_header"

# asyncio's default StreamReader limit, as asyncio.start_server uses.
_STREAM_LIMIT = 2**16


async def serve(
    app: Framework,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Coroutine[Any, Any, object]] | None = None,
    mode: Literal["asgi", "wsgi"] | None = None,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> None:
    """Serve ``app`` as ``hypercorn.asyncio.serve`` does, each connection
    starting with a PROXY header.

    ``policy``, or the policy options (see ``pyproxyproto.PolicyOptions``),
    say who must send a header.  Unlike hypercorn's, ``shutdown_trigger``
    must return a coroutine (an ``async def``): it runs as a task.  Records
    go to hypercorn's error log.
    """
    rules = resolve(policy, options, "pyproxyproto.hypercorn.serve()")
    if config.quic_bind:
        raise ValueError("quic_bind: PROXY headers come on TCP; HTTP/3 is not supported here")
    error_logger = getattr(config.log, "error_logger", None)
    if error_logger is not None:
        route_to(error_logger)
    announce(rules, "hypercorn", unix=any(
        str(bind).startswith("unix:") for bind in config.bind) and not rules.trusts(""))
    asgi = wrap_app(app, config.wsgi_max_body_size, mode)
    loop = asyncio.get_running_loop()
    config.set_statsd_logger_class(StatsdLogger)
    if shutdown_trigger is None:
        shutdown_trigger = _signalled(loop)

    state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, config, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and lifespan_task.exception() is not None:
        raise lifespan_task.exception()  # type: ignore[misc]

    max_requests = None
    if config.max_requests is not None:
        max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)
    connections: set[asyncio.Task[Any]] = set()

    def serve_connection(header: ProxyHeader | None) -> asyncio.StreamReaderProtocol:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            task.add_done_callback(connections.discard)
            connection_state = {**state, HEADER_KEY: header}
            await TCPServer(asgi, loop, config, context, connection_state, reader, writer)

        reader = asyncio.StreamReader(limit=_STREAM_LIMIT)
        return asyncio.StreamReaderProtocol(reader, run)

    sockets = config.create_sockets()
    tls = config.create_ssl_context() if config.ssl_enabled else None
    servers = []
    for socks, context_for, scheme in (
        (sockets.secure_sockets, tls, "https"),
        (sockets.insecure_sockets, None, "http"),
    ):
        for sock in socks:

            factory = header_reader(serve_connection, rules, context_for)
            servers.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
            bind = repr_socket_addr(sock.family, sock.getsockname())
            await config.log.info(f"Running on {scheme}://{bind} (PROXY protocol) (CTRL + C to quit)")

    try:
        waiters = [loop.create_task(shutdown_trigger()), loop.create_task(context.terminate.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    finally:
        await context.terminated.set()
        for server in servers:
            server.close()
            await server.wait_closed()
        if connections:
            await asyncio.wait(connections, timeout=config.graceful_timeout)
        await lifespan.wait_for_shutdown()
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lifespan_task


def _signalled(loop: asyncio.AbstractEventLoop) -> Callable[[], Coroutine[Any, Any, object]]:
    """A shutdown trigger that returns on SIGINT or SIGTERM."""
    event = asyncio.Event()
    for name in ("SIGINT", "SIGTERM"):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(getattr(signal, name), event.set)
    return event.wait
