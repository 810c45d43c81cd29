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

from ._errors import Incomplete, ProxyProtocolError
from ._policy import REJECT, SKIP, PeerAddress, Policy, PolicyOptions

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

    Options are the policy's (``trusted``, ``on_untrusted``, ``policy``,
    ``validate``, ``timeout``, ``max_header_size``, ``v1``, ``v2``,
    ``stats``).  A connection given up on (untrusted, bad header, timeout,
    closed mid-header, refused by ``validate``) is counted, logged once and
    closed; the handler never sees it.  Each header is read in the
    connection's own task, so a slow peer holds up no other.
    """

    def __init__(self, listener: Listener[ByteStream], **options: Unpack[PolicyOptions]) -> None:
        self.listener = listener
        self.policy = Policy(**options)

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
        """Read ``stream``'s header as the policy says; raise what the
        policy returns when the connection is given up on (the caller closes it)."""
        policy = self.policy
        peer = stream.extra(SocketAttribute.remote_address, None)
        decision = policy.decide(peer)
        if decision == REJECT:
            raise policy.refuse_peer(peer)
        if decision == SKIP:
            policy.skipped()
            return ProxyProtocolStream(stream, None, peer, b"")
        data = b""
        try:
            with anyio.fail_after(policy.timeout):
                while True:
                    try:
                        header = policy.parse(data)
                        break
                    except Incomplete as exc:
                        needed = exc.needed
                    except ProxyProtocolError as exc:
                        raise policy.refuse_header(peer, exc) from None
                    try:
                        data += await stream.receive(_CHUNK)
                    except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                        cause = None if isinstance(exc, anyio.EndOfStream) else exc
                        raise policy.closed_early(peer, len(data), needed, cause) from None
        except TimeoutError:
            raise policy.timed_out(peer, len(data)) from None
        _, believed = policy.accept(header, peer, decision)
        return ProxyProtocolStream(stream, believed, peer, data[header.length :])

    async def aclose(self) -> None:
        await self.listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.listener.extra_attributes
