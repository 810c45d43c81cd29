"""PROXY protocol for asyncio servers: ``wrap``, ``start_server``, ``read_header``, ``open_connection``.

``wrap`` puts a header reader in front of any asyncio Protocol (plain or
buffered), so servers built on ``loop.create_server`` (aiohttp, uvicorn,
your own) see the real client without being changed: the inner protocol is
created only once the header has been parsed, its transport reports the
header's addresses, and the bytes that came after the header are handed to
it, in order, as its first data.  Datagram endpoints: ``wrap_datagram``.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import socket

from . import Handshake, _aio_protocol, _backend
from ._networks import PeerAddress
from ._policy import Policy, resolve
from ._step import READ, SERVE
from .datagram import wrap_datagram

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader
    from ._policy import PolicyOptions

__all__ = ["open_connection", "read_header", "start_server", "wrap", "wrap_datagram"]

# asyncio's own default for StreamReader buffers.
_STREAM_LIMIT = 2**16

# The header protocol's implementations: the compiled one when it is built
# (it costs an accept loop less), else the pure one; the tests run both.
PROTOCOL_MODULES: dict[str, ModuleType] = {"python": _aio_protocol}
_compiled = _backend.load_extension(_backend.AIO_EXTENSION)
if _compiled is not None:
    PROTOCOL_MODULES["cython"] = _compiled
protocols: ModuleType = PROTOCOL_MODULES.get("cython", _aio_protocol)


def wrap(
    protocol_factory: Callable[..., asyncio.BaseProtocol],
    *,
    policy: Policy | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **options: Unpack[PolicyOptions],
) -> Callable[..., asyncio.Protocol]:
    """Wrap a protocol factory for ``loop.create_server``.

    Once the header is parsed, the inner protocol's transport answers
    ``get_extra_info`` with the header's source for "peername", its
    destination for "sockname", the header for "proxy_header", the load
    balancer's address for "proxy_peername", and a view of the socket whose
    getpeername()/getsockname() agree; everything else passes through.
    With ``ssl``, TLS starts after the plaintext header (TLS passthrough).
    Arguments the server passes to the factory are passed on to
    ``protocol_factory``.

    Who must send a header, and what is refused, counted and logged: a
    ``Policy`` as ``policy``, or the policy options (see
    ``pyproxyproto.PolicyOptions``).  A skipped peer's protocol gets the
    real transport.
    """
    rules = resolve(policy, options, "aio.wrap()")
    ssl_options: dict[str, Any] = {}
    if ssl_handshake_timeout is not None:
        ssl_options["ssl_handshake_timeout"] = ssl_handshake_timeout
    if ssl_shutdown_timeout is not None:
        ssl_options["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    if ssl_options and ssl is None:
        raise ValueError(f"{', '.join(ssl_options)} is only meaningful with ssl")
    if "ssl_shutdown_timeout" in ssl_options and sys.version_info < (3, 11):
        raise ValueError("ssl_shutdown_timeout needs Python 3.11 or later")
    return protocols.Factory(protocol_factory, rules, ssl, ssl_options)  # type: ignore[no-any-return]


def header_reader(
    make_protocol: Callable[..., asyncio.BaseProtocol],
    policy: Policy,
    ssl: _ssl.SSLContext | None = None,
) -> Callable[..., asyncio.Protocol]:
    """``wrap`` for the server integrations: ``make_protocol(header, *args)``
    gets the header believed for the connection (None when skipped, ignored
    or refused to be believed) before the arguments the factory was called
    with, so the server can put it where its application sees it."""
    return protocols.Factory(make_protocol, policy, ssl, None, True)  # type: ignore[no-any-return]


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: Any = None,
    port: Any = None,
    *,
    limit: int = _STREAM_LIMIT,
    family: int = socket.AF_UNSPEC,
    flags: int = socket.AI_PASSIVE,
    sock: socket.socket | None = None,
    backlog: int = 100,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    start_serving: bool = True,
    policy: Policy | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **options: Unpack[PolicyOptions],
) -> asyncio.Server:
    """``asyncio.start_server`` behind a PROXY header.

    ``client_connected_cb`` runs once the header is read; the writer's
    ``get_extra_info`` reports the header's addresses as in ``wrap``.  With
    ``ssl``, the header is read in plaintext and TLS starts after it.
    ``policy`` or the policy options (see ``pyproxyproto.PolicyOptions``)
    are ``wrap``'s; ``family`` to ``start_serving`` are
    ``loop.create_server``'s.
    """
    loop = asyncio.get_running_loop()

    def stream_protocol() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    factory = wrap(
        stream_protocol,
        policy=resolve(policy, options, "aio.start_server()"),
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    return await loop.create_server(
        factory, host, port, family=family, flags=flags, sock=sock, backlog=backlog,
        reuse_address=reuse_address, reuse_port=reuse_port, start_serving=start_serving,
    )


async def read_header(
    reader: asyncio.StreamReader,
    *,
    peer: PeerAddress = None,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> ProxyHeader:
    """Read exactly one PROXY header from a StreamReader, for a connection
    from ``peer``: what follows the header stays in the reader.

    The header is read as ``policy`` (or the policy options, see
    ``pyproxyproto.PolicyOptions``) says; the connection is not closed here.  Raises the refusal (a
    ``ProxyProtocolError``, counted and logged): HeaderTimeout after
    ``timeout`` seconds, ConnectionClosed if the stream ends mid-header,
    InvalidHeader for a bad one, UntrustedPeer, HeaderRejected.  For a
    skipped peer (no header expected) it raises LookupError.
    """
    handshake = Handshake(resolve(policy, options, "aio.read_header()"))
    step = handshake.begin(peer)
    if step is SERVE:
        raise LookupError("the policy skips this peer: no PROXY header is expected from it")
    try:
        await asyncio.wait_for(_read(reader, handshake), handshake.timeout)
    except asyncio.TimeoutError:
        handshake.timed_out()
    if handshake.error is not None:
        raise handshake.error
    assert handshake.header is not None
    return handshake.header


async def _read(reader: asyncio.StreamReader, handshake: Handshake) -> None:
    step = handshake.step
    while step is READ:
        # Never more than the parser asks for, so no payload byte is taken.
        wanted = max(handshake.needed, 1) - handshake.received
        try:
            data = await reader.readexactly(wanted)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                step = handshake.feed(exc.partial)
                if step is not READ:
                    break
            handshake.closed()
            break
        step = handshake.feed(data)


# -- the sending side ------------------------------------------------------------------


async def open_connection(
    host: Any = None,
    port: Any = None,
    *,
    header: bytes | bytearray | memoryview,
    limit: int = _STREAM_LIMIT,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` that sends ``header`` first, exactly once.

    ``header`` is one complete header as ``pyproxyproto.build`` returns it;
    anything else (several headers, a header followed by data, a str)
    raises before connecting.  With ``ssl``, the header goes out in
    plaintext and TLS starts after it, as balancers do.  Other keyword
    arguments go to ``loop.create_connection``.
    """
    from ._build import one_header

    data = one_header(header)
    if ssl is None and (server_hostname is not None or ssl_handshake_timeout is not None):
        raise ValueError("server_hostname and ssl_handshake_timeout need ssl")
    if ssl and sys.version_info < (3, 11):
        raise ValueError("TLS after the header needs Python 3.11 or later (StreamWriter.start_tls)")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    writer.write(data)
    if ssl is not None and ssl is not False:
        context = _ssl.create_default_context() if ssl is True else ssl
        if server_hostname is None and isinstance(host, str):
            server_hostname = host
        try:
            await writer.start_tls(
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
            )
        except BaseException:
            writer.close()
            raise
    return reader, writer
