"""PROXY protocol for asyncio datagram endpoints: ``wrap_datagram``.

Every datagram carries its own header; the inner protocol gets the payload
and the header's source as the sender, and its replies go back through the
proxy that forwarded that client.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from . import Handshake
from ._policy import Policy, resolve
from ._step import READ, SERVE

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicyOptions

__all__ = ["wrap_datagram"]

# Client address -> proxy address entries kept per datagram endpoint, to
# route replies back through the proxy that forwarded the client.
_DATAGRAM_ROUTES = 65536


def wrap_datagram(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    *,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> Callable[[], asyncio.DatagramProtocol]:
    """Wrap a datagram protocol factory for ``loop.create_datagram_endpoint``.

    Every datagram carries its own header (v2 only: v1 has no datagram
    form): the inner protocol's ``datagram_received(payload, addr)`` gets
    the header's source as ``addr``.  ``policy`` or the policy options
    (see ``pyproxyproto.PolicyOptions``; the timeout does not apply, each
    datagram being whole) apply to each datagram: one that is refused
    (untrusted peer under "reject", no valid header, refused by
    ``validate``) is dropped, counted and logged; under "skip" it is passed
    on as it came.  Replies sent with ``transport.sendto(data,
    client_address)`` go to the proxy that last forwarded that client.
    """
    rules = resolve(policy, options, "aio.wrap_datagram()")

    def factory() -> asyncio.DatagramProtocol:
        return _DatagramProtocol(protocol_factory(), rules)

    return factory


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, inner: asyncio.DatagramProtocol, policy: Policy) -> None:
        self._inner = inner
        self._policy = policy
        self._routes: dict[Any, Any] = {}

    def connection_made(self, transport: Any) -> None:
        self._inner.connection_made(_DatagramTransport(transport, self))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        handshake = Handshake(self._policy, datagram=True)
        step = handshake.begin(addr)
        if step is READ:
            step = handshake.feed(data)
        if step is not SERVE:
            return  # refused: counted and logged
        client = handshake.client
        if handshake.believed is not None and handshake.believed.source is not None:
            key = _route_key(client)
            # Most recent last, so the oldest route is the first to go.
            self._routes.pop(key, None)
            self._routes[key] = addr
            if len(self._routes) > _DATAGRAM_ROUTES:
                del self._routes[next(iter(self._routes))]
        payload = data if handshake.header is None else handshake.rest
        # typeshed says tuple; asyncio passes a UNIX datagram peer as a str.
        self._inner.datagram_received(payload, client)  # type: ignore[arg-type]

    def error_received(self, exc: Exception) -> None:
        self._inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)


def _route_key(address: Any) -> Any:
    # (host, port) and (host, port, flowinfo, scope_id) name the same client.
    return address[:2] if isinstance(address, tuple) else address


class _DatagramTransport(asyncio.DatagramTransport):
    """The real transport; replies to a client go to the proxy that forwarded it."""

    __slots__ = ("_transport", "_owner")

    def __init__(self, transport: Any, owner: _DatagramProtocol) -> None:
        super().__init__()
        self._transport = transport
        self._owner = owner

    def sendto(self, data: Any, addr: Any = None) -> None:
        if addr is not None:
            addr = self._owner._routes.get(_route_key(addr), addr)
        self._transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # The new protocol too gets datagrams with their headers removed.
        self._owner._inner = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._owner._inner

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())
