"""PROXY protocol for anyio servers (asyncio and trio backends): a Listener wrapper.

``ProxyProtocolListener(listener, trusted=...)`` reads each connection's
header, through the policy module, before the handler runs; the handler
gets a ``ProxyProtocolStream`` whose ``SocketAttribute.remote_address``
(and ``remote_port``, ``local_address``, ``local_port``) are the header's,
and whose ``ProxyProtocolAttribute.header`` is the header (None when it
was not believed or not expected).  The bytes that arrived after the
header are the stream's first bytes, so TLS can start after it
(``anyio.streams.tls.TLSStream.wrap(stream, ...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio import TypedAttributeSet, typed_attribute
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup

from . import Handshake
from ._errors import ProxyProtocolError
from ._networks import PeerAddress
from ._policy import Policy, PolicyOptions, resolve
from ._step import READ, SERVE

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader

__all__ = ["ProxyProtocolAttribute", "ProxyProtocolListener", "ProxyProtocolStream"]

# What one receive() asks the wrapped stream for while reading the header;
# whatever comes after the header is kept and handed on, never dropped.
_CHUNK = 65536


class ProxyProtocolAttribute(TypedAttributeSet):
    """Typed attributes of the streams a ProxyProtocolListener serves."""

    #: the header, or None (not expected, or consumed but not believed)
    header: ProxyHeader | None = typed_attribute()
    #: the address of the peer that sent the header (the balancer)
    proxy_address: PeerAddress = typed_attribute()


class ProxyProtocolStream(ByteStream):
    """A stream whose header has been read: it answers address attributes
    with the header's addresses and starts with the bytes that followed it."""

    def __init__(
        self, stream: ByteStream, header: ProxyHeader | None, peer: PeerAddress, rest: bytes
    ) -> None:
        self.stream = stream
        self._header = header
        self._peer = peer
        self._rest = rest

    async def receive(self, max_bytes: int = _CHUNK) -> bytes:
        if self._rest:
            chunk, self._rest = self._rest[:max_bytes], self._rest[max_bytes:]
            return chunk
        return await self.stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        header, peer = self._header, self._peer
        attributes: dict[Any, Callable[[], Any]] = {
            **self.stream.extra_attributes,
            ProxyProtocolAttribute.header: lambda: header,
            ProxyProtocolAttribute.proxy_address: lambda: peer,
        }
        if header is not None and header.source is not None:
            source, destination = header.source, header.destination
            # (Both addresses of a header are of one family.)
            if isinstance(source, tuple) and isinstance(destination, tuple):
                # anyio reports IP addresses as (host, port), IPv6 included.
                attributes[SocketAttribute.remote_address] = lambda: source[:2]
                attributes[SocketAttribute.remote_port] = lambda: source[1]
                attributes[SocketAttribute.local_address] = lambda: destination[:2]
                attributes[SocketAttribute.local_port] = lambda: destination[1]
            else:
                attributes[SocketAttribute.remote_address] = lambda: source
                attributes[SocketAttribute.local_address] = lambda: destination
                attributes.pop(SocketAttribute.remote_port, None)
                attributes.pop(SocketAttribute.local_port, None)
        return attributes


class ProxyProtocolListener(Listener[ProxyProtocolStream]):
    """Wrap an anyio Listener so that every stream starts after its PROXY header.

    ``policy``, or the policy options (see ``pyproxyproto.PolicyOptions``),
    say who must send a header.  A connection given up on (untrusted, bad header, timeout,
    closed mid-header, refused by ``validate``) is counted, logged once and
    closed; the handler never sees it.  Each header is read in the
    connection's own task, so a slow peer holds up no other.
    """

    def __init__(
        self,
        listener: Listener[ByteStream],
        *,
        policy: Policy | None = None,
        **options: Unpack[PolicyOptions],
    ) -> None:
        self.listener = listener
        self.policy = resolve(policy, options, "ProxyProtocolListener()")

    async def serve(
        self,
        handler: Callable[[ProxyProtocolStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        async def handle(stream: ByteStream) -> None:
            try:
                proxied = await self.handshake(stream)
            except (ProxyProtocolError, OSError):  # UntrustedPeer, HeaderTimeout too
                await anyio.aclose_forcefully(stream)
                return
            await handler(proxied)

        await self.listener.serve(handle, task_group)

    async def handshake(self, stream: ByteStream) -> ProxyProtocolStream:
        """Read ``stream``'s header as the policy says; raise the refusal (a
        ``ProxyProtocolError``, counted and logged) when the connection is
        given up on (the caller closes it)."""
        hs = Handshake(self.policy)
        try:
            peer = stream.extra(SocketAttribute.remote_address, None)
            if peer is None:
                sock = stream.extra(SocketAttribute.raw_socket, None)
                if sock is not None:
                    sock.getpeername()  # the peer is gone when this fails
        except OSError as exc:
            # The peer closed before its address could be read: an early
            # close, not an untrusted peer.
            hs.closed(exc)
            raise hs.error from None  # type: ignore[misc]
        step = hs.begin(peer)
        if step is READ:
            with anyio.move_on_after(hs.timeout):
                while step is READ:
                    try:
                        data = await stream.receive(_CHUNK)
                    except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                        step = hs.closed(None if isinstance(exc, anyio.EndOfStream) else exc)
                    else:
                        step = hs.feed(data)
            if step is READ:
                step = hs.timed_out()
        if step is not SERVE:
            raise hs.error  # type: ignore[misc]
        return ProxyProtocolStream(stream, hs.believed, peer, hs.rest)

    async def aclose(self) -> None:
        await self.listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.listener.extra_attributes
