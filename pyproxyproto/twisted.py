"""PROXY protocol for Twisted: a wrapping factory, a server endpoint, and its
``pyproxyproto:`` endpoint-string parser (registered by twisted/plugins).

``pyproxyproto:tcp:port=9080:trusted=10.0.0.0/8`` listens like ``tcp:``
and reads each connection's header before the application's protocol
exists; that protocol is built for, and its transport reports
(getPeer/getHost), the header's addresses.  ``pyproxyproto:ssl:...``
takes ``ssl:``'s arguments and starts TLS after the plaintext header, as
balancers send it.  Policy arguments: ``trusted`` (comma-separated
networks, ``*`` for every peer; escape an IPv6 network's colons as
``\\:``), ``on_untrusted``, ``policy`` and ``validate`` (``module:attr``,
colon escaped), ``timeout``, ``max_header_size``, ``versions``, ``stats``;
unset ones come from the PYPROXYPROTO_* variables.  daphne and twistd
take the endpoint as they take any other: ``daphne -e pyproxyproto:tcp:port=9080 app:application``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import interfaces
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import serverFromString
from twisted.plugin import IPlugin
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import directlyProvides, implementer, providedBy

from ._errors import Incomplete, ProxyProtocolError
from ._policy import (
    ENV_MAX_HEADER_SIZE,
    ENV_ON_UNTRUSTED,
    ENV_POLICY,
    ENV_STATS,
    ENV_TIMEOUT,
    ENV_TRUSTED,
    ENV_VALIDATE,
    ENV_VERSIONS,
    REJECT,
    SKIP,
    Decision,
    PeerAddress,
    Policy,
    options_from_env,
    policy_from_env,
)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IDelayedCall
    from twisted.python.failure import Failure

    from . import ProxyHeader

__all__ = [
    "ProxyProtocolFactory",
    "ProxyProtocolServerEndpoint",
    "ProxyProtocolServerParser",
]


def _peer_address(address: interfaces.IAddress) -> PeerAddress:
    """A Twisted address as getpeername() gives it, for the policy."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return (address.host, address.port)
    if isinstance(address, UNIXAddress):
        return address.name
    return None


def _twisted_address(address: Any) -> interfaces.IAddress:
    """A header's address as Twisted reports addresses."""
    if isinstance(address, tuple):
        if ":" in address[0]:
            return IPv6Address("TCP", *address)
        return IPv4Address("TCP", address[0], address[1])
    return UNIXAddress(address)


@implementer(interfaces.IHalfCloseableProtocol)
class _HeaderProtocol(ProtocolWrapper):
    """Reads the header; then builds the wrapped protocol for the header's
    client and hands it the connection and the bytes after the header."""

    factory: ProxyProtocolFactory
    wrappedProtocol: Any

    def __init__(self, factory: ProxyProtocolFactory) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]
        self._peer: PeerAddress = None
        self._decision: Decision = REJECT
        self._data = b""
        self._needed = 0
        self._timer: IDelayedCall | None = None
        self._gave_up = False
        self._source: interfaces.IAddress | None = None
        self._destination: interfaces.IAddress | None = None
        self.proxy_header: ProxyHeader | None = None

    def makeConnection(self, transport: Any) -> None:
        # Not ProtocolWrapper's: the wrapped protocol waits for the header.
        directlyProvides(self, providedBy(transport), interfaces.IHalfCloseableProtocol)
        self.factory.registerProtocol(self)
        self.connected = 1
        self.transport = transport
        policy = self.factory.policy
        self._peer = _peer_address(transport.getPeer())
        self._decision = policy.decide(self._peer)
        if self._decision == REJECT:
            policy.refuse_peer(self._peer)
            self._give_up()
        elif self._decision == SKIP:
            policy.skipped()
            self._hand_over(b"")
        elif policy.timeout is not None:
            self._timer = self.factory.reactor.callLater(policy.timeout, self._expire)

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._gave_up:
            return
        self._data += data
        policy = self.factory.policy
        try:
            header = policy.parse(self._data)
        except Incomplete as exc:
            self._needed = exc.needed
            return
        except ProxyProtocolError as exc:
            policy.refuse_header(self._peer, exc)
            self._give_up()
            return
        self._cancel_timer()
        try:
            _, believed = policy.accept(header, self._peer, self._decision)
        except ProxyProtocolError:  # refused by validate: counted and logged
            self._give_up()
            return
        if believed is not None and believed.source is not None:
            self._source = _twisted_address(believed.source)
            self._destination = _twisted_address(believed.destination)
        self.proxy_header = believed
        self._hand_over(self._data[header.length :])

    def _hand_over(self, rest: bytes) -> None:
        self._data = b""
        protocol = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if protocol is None:
            self.transport.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if rest and self.connected:
            protocol.dataReceived(rest)

    def _expire(self) -> None:
        self._timer = None
        self.factory.policy.timed_out(self._peer, len(self._data))
        self._give_up()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _give_up(self) -> None:
        self._gave_up = True
        self._cancel_timer()
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_timer()
        if self.wrappedProtocol is not None:
            super().connectionLost(reason)
            return
        self.factory.unregisterProtocol(self)
        if not self._gave_up:
            self.factory.policy.closed_early(
                self._peer, len(self._data), self._needed, reason.value
            )

    # Half-close reaches the wrapped protocol as it would without us.
    def readConnectionLost(self) -> None:
        inner = self.wrappedProtocol
        if inner is None:
            if not self._gave_up:
                policy = self.factory.policy
                policy.closed_early(self._peer, len(self._data), self._needed)
                self._give_up()
        elif interfaces.IHalfCloseableProtocol.providedBy(inner):
            inner.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        inner = self.wrappedProtocol
        if inner is not None and interfaces.IHalfCloseableProtocol.providedBy(inner):
            inner.writeConnectionLost()
        else:
            self.transport.loseConnection()

    def getPeer(self) -> interfaces.IAddress:
        return self._source or self.transport.getPeer()

    def getHost(self) -> interfaces.IAddress:
        return self._destination or self.transport.getHost()


class ProxyProtocolFactory(WrappingFactory):
    """Wrap a server factory: each connection's header is read first, then
    ``wrappedFactory.buildProtocol`` is called with the header's client.
    With ``tls`` (an OpenSSL context factory) TLS starts after the header."""

    protocol = _HeaderProtocol  # type: ignore[assignment]

    def __init__(
        self,
        wrappedFactory: Any,
        policy: Policy,
        *,
        tls: Any = None,
        reactor: Any = None,
    ) -> None:
        if tls is not None:
            wrappedFactory = TLSMemoryBIOFactory(tls, False, wrappedFactory)
        super().__init__(wrappedFactory)
        if reactor is None:
            from twisted.internet import reactor
        self.policy = policy
        self.reactor = reactor

    def buildProtocol(self, addr: interfaces.IAddress) -> _HeaderProtocol:  # type: ignore[override]
        return _HeaderProtocol(self)

    def logPrefix(self) -> str:
        inner = self.wrappedFactory
        name = inner.logPrefix() if interfaces.ILoggingContext.providedBy(inner) else type(inner).__name__
        return f"{name} (PROXY)"


@implementer(interfaces.IStreamServerEndpoint)
class ProxyProtocolServerEndpoint:
    """A server endpoint whose connections start with a PROXY header:
    ``endpoint`` listens, ``policy`` decides, ``tls`` (an OpenSSL context
    factory) if given starts TLS after the header."""

    def __init__(self, endpoint: Any, policy: Policy, *, tls: Any = None, reactor: Any = None):
        self.endpoint = endpoint
        self.policy = policy
        self.tls = tls
        self.reactor = reactor

    def listen(self, protocolFactory: Any) -> Deferred[Any]:
        factory = ProxyProtocolFactory(
            protocolFactory, self.policy, tls=self.tls, reactor=self.reactor
        )
        return self.endpoint.listen(factory)


# Endpoint-string arguments for the policy, as the PYPROXYPROTO_* variables
# they mirror (same syntax, same checks).
_POLICY_ARGUMENTS = {
    "trusted": ENV_TRUSTED,
    "on_untrusted": ENV_ON_UNTRUSTED,
    "policy": ENV_POLICY,
    "validate": ENV_VALIDATE,
    "timeout": ENV_TIMEOUT,
    "max_header_size": ENV_MAX_HEADER_SIZE,
    "versions": ENV_VERSIONS,
    "stats": ENV_STATS,
}


@implementer(IPlugin, interfaces.IStreamServerEndpointStringParser)
class ProxyProtocolServerParser:
    """``pyproxyproto:tcp:...`` and ``pyproxyproto:ssl:...`` endpoint strings."""

    prefix = "pyproxyproto"

    def parseStreamServer(
        self, reactor: Any, *args: str, **kwargs: str
    ) -> ProxyProtocolServerEndpoint:
        if not args or args[0] not in ("tcp", "ssl"):
            raise ValueError(
                "pyproxyproto: endpoints are pyproxyproto:tcp:port=N[:...] "
                "or pyproxyproto:ssl:port=N:privateKey=...[:...]"
            )
        kind, *rest = args
        given = {
            _POLICY_ARGUMENTS[name]: kwargs.pop(name)
            for name in list(kwargs)
            if name in _POLICY_ARGUMENTS
        }
        overrides: dict[str, Any] = dict(options_from_env(given))
        if given.get(ENV_TRUSTED, "").strip() == "*":
            overrides["trusted"] = None  # every peer, whatever the environment says
        policy = policy_from_env(**overrides)
        inner = serverFromString(reactor, _unparse(kind, rest, kwargs))
        if kind == "tcp":
            return ProxyProtocolServerEndpoint(inner, policy, reactor=reactor)
        # ssl: listen on plain TCP with ssl:'s port, interface and backlog,
        # and start TLS with its certificate after the header.
        from twisted.internet.endpoints import TCP4ServerEndpoint

        tcp = TCP4ServerEndpoint(reactor, inner._port, inner._backlog, inner._interface)
        return ProxyProtocolServerEndpoint(
            tcp, policy, tls=inner._sslContextFactory, reactor=reactor
        )


def _unparse(kind: str, args: list[str], kwargs: dict[str, str]) -> str:
    def quote(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")

    parts = [kind, *map(quote, args)]
    parts += [f"{quote(k)}={quote(v)}" for k, v in kwargs.items()]
    return ":".join(parts)

