"""PROXY protocol for Twisted: a wrapping factory, a server endpoint, and its
``pyproxyproto:`` endpoint-string parser (registered by twisted/plugins).

``pyproxyproto:tcp:port=9080:trusted=10.0.0.0/8`` listens like ``tcp:``
(``pyproxyproto:unix:address=/run/app.sock:trusted=unix`` like ``unix:``)
and reads each connection's header before the application's protocol
exists; that protocol is built for, and its transport reports
(getPeer/getHost), the header's addresses.  ``pyproxyproto:ssl:...``
takes ``ssl:``'s arguments and starts TLS after the plaintext header, as
balancers send it.  Policy arguments: ``trusted`` (comma-separated
networks, ``unix`` for Unix-socket peers, ``*`` for every peer; escape an
IPv6 network's colons as ``\\:``), ``on_untrusted``, ``decide`` and
``validate`` (``module:attr``, colon escaped), ``timeout``,
``max_header_size``, ``versions``, ``stats``; unset ones come from the
PYPROXYPROTO_* variables.  daphne and twistd
take the endpoint as they take any other: ``daphne -e pyproxyproto:tcp:port=9080 app:application``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, Union, cast

from twisted.internet import interfaces
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger, LogLevel
from twisted.plugin import IPlugin
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import directlyProvides, implementer, providedBy

from . import Handshake
from ._env import (
    ENV_DECIDE,
    ENV_MAX_HEADER_SIZE,
    ENV_ON_UNTRUSTED,
    ENV_POLICY,
    ENV_STATS,
    ENV_TIMEOUT,
    ENV_TRUSTED,
    ENV_VALIDATE,
    ENV_VERSIONS,
    options_from_env,
    policy_from_env,
    trusts_every_peer,
)
from ._header import Address
from ._log import _Routed, route
from ._networks import PeerAddress
from ._policy import ENDPOINT, Policy, PolicyOptions, announce, resolve
from ._step import READ, SERVE
from ._twisted_internals import split_ssl_endpoint

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure
    from typing_extensions import Unpack

    from . import ProxyHeader

__all__ = [
    "ProxyProtocolFactory",
    "ProxyProtocolServerEndpoint",
    "ProxyProtocolServerParser",
]

# Twisted declares its interfaces with zope.interface, which mypy checks only
# with a plugin: calling a method of an interface-typed value is an error
# without one.  Public signatures name Twisted's interfaces, as Twisted's do;
# inside, each value is cast once to a Protocol that declares the calls made
# on it here.

#: What TLS after the header takes: an OpenSSL context factory or a server
#: connection creator (the ``ssl:`` endpoint's ``CertificateOptions`` is both).
_TLSOptions = Union[interfaces.IOpenSSLContextFactory, interfaces.IOpenSSLServerConnectionCreator]


class _Transport(Protocol):
    """The calls made on a connection's transport (an ITCPTransport)."""

    def getPeer(self) -> interfaces.IAddress: ...
    def getHost(self) -> interfaces.IAddress: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...


class _DelayedCall(Protocol):
    """The calls made on the header timer (an IDelayedCall)."""

    def cancel(self) -> None: ...


class _Clock(Protocol):
    """The calls made on the reactor (an IReactorTime)."""

    def callLater(self, delay: float, callable: Callable[[], None], /) -> _DelayedCall: ...


class _ApplicationProtocol(Protocol):
    """The calls made on the application's protocol (an IProtocol)."""

    def makeConnection(self, transport: _HeaderProtocol, /) -> None: ...
    def dataReceived(self, data: bytes, /) -> None: ...


class _HalfCloseable(Protocol):
    """The calls made on an application protocol that provides IHalfCloseableProtocol."""

    def readConnectionLost(self) -> None: ...
    def writeConnectionLost(self) -> None: ...


class _ProtocolFactory(Protocol):
    """The calls made on the application's factory (an IProtocolFactory)."""

    def buildProtocol(self, addr: interfaces.IAddress, /) -> _ApplicationProtocol | None: ...


class _Listener(Protocol):
    """The call made on the endpoint that listens (an IStreamServerEndpoint)."""

    def listen(self, protocolFactory: ProxyProtocolFactory, /) -> Deferred[interfaces.IListeningPort]: ...


def _peer_address(address: object) -> PeerAddress:
    """A Twisted address as getpeername() gives it, for the policy."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return (address.host, address.port)
    if isinstance(address, UNIXAddress):
        # An unnamed Unix-socket peer (a client's end) is "", as getpeername() says.
        name = address.name
        return "" if name is None else name
    return None


def _twisted_address(address: Address) -> interfaces.IAddress:
    """A header's address as Twisted reports addresses."""
    twisted_address: IPv4Address | IPv6Address | UNIXAddress
    if isinstance(address, tuple):
        if ":" in address[0]:
            twisted_address = IPv6Address("TCP", *address)
        else:
            twisted_address = IPv4Address("TCP", address[0], address[1])
    else:
        twisted_address = UNIXAddress(address)
    # The address classes are @implementer(IAddress) (see the note above).
    return cast(interfaces.IAddress, twisted_address)


@implementer(interfaces.IHalfCloseableProtocol)
class _HeaderProtocol(ProtocolWrapper):
    """Reads the header through a Handshake; then builds the wrapped protocol
    for the header's client and hands it the connection and the bytes after
    the header."""

    factory: ProxyProtocolFactory
    wrappedProtocol: _ApplicationProtocol | None  # type: ignore[assignment]
    _transport: _Transport

    def __init__(self, factory: ProxyProtocolFactory) -> None:
        # The application's protocol is built once the header is read.
        super().__init__(factory, None)  # type: ignore[arg-type]
        self._handshake = Handshake(factory.policy)
        self._timer: _DelayedCall | None = None
        self._source: interfaces.IAddress | None = None
        self._destination: interfaces.IAddress | None = None
        self.proxy_header: ProxyHeader | None = None

    def makeConnection(self, transport: interfaces.ITransport) -> None:
        # Not ProtocolWrapper's: the wrapped protocol waits for the header.
        directlyProvides(self, providedBy(transport), interfaces.IHalfCloseableProtocol)
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]
        self.connected = 1
        self.transport = transport
        self._transport = cast(_Transport, transport)
        hs = self._handshake
        peer = _peer_address(self._transport.getPeer())
        local = _peer_address(self._transport.getHost()) if isinstance(peer, str) else None
        step = hs.begin(peer, local)
        if step is READ:
            if hs.timeout is not None:
                self._timer = self.factory.reactor.callLater(hs.timeout, self._expire)
        else:
            self._finish()

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
        elif self._handshake.step is READ and self._handshake.feed(data) is not READ:
            self._finish()

    def _finish(self) -> None:
        """The handshake ended: serve the connection, or drop it."""
        self._cancel_timer()
        hs = self._handshake
        if hs.step is not SERVE:
            self._transport.abortConnection()
            return
        believed = hs.believed
        if believed is not None and believed.source is not None and believed.destination is not None:
            self._source = _twisted_address(believed.source)
            self._destination = _twisted_address(believed.destination)
        self.proxy_header = believed
        wrapped_factory = cast(_ProtocolFactory, self.factory.wrappedFactory)
        protocol = wrapped_factory.buildProtocol(self.getPeer())
        if protocol is None:
            self._transport.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        rest = hs.rest
        if rest and self.connected:
            protocol.dataReceived(rest)

    def _expire(self) -> None:
        self._timer = None
        if self._handshake.step is READ:
            self._handshake.timed_out()
            self._transport.abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_timer()
        if self.wrappedProtocol is not None:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
            return
        self.factory.unregisterProtocol(self)  # type: ignore[no-untyped-call]
        if self._handshake.step is READ:
            self._handshake.closed(reason.value)

    # Half-close reaches the wrapped protocol as it would without us.
    def readConnectionLost(self) -> None:
        inner = self.wrappedProtocol
        if inner is None:
            if self._handshake.step is READ:
                self._handshake.closed()
                self._cancel_timer()
                self._transport.abortConnection()
        elif interfaces.IHalfCloseableProtocol.providedBy(inner):
            cast(_HalfCloseable, inner).readConnectionLost()
        else:
            self._transport.loseConnection()

    def writeConnectionLost(self) -> None:
        inner = self.wrappedProtocol
        if inner is not None and interfaces.IHalfCloseableProtocol.providedBy(inner):
            cast(_HalfCloseable, inner).writeConnectionLost()
        else:
            self._transport.loseConnection()

    def getPeer(self) -> interfaces.IAddress:
        return self._source or self._transport.getPeer()

    def getHost(self) -> interfaces.IAddress:
        return self._destination or self._transport.getHost()


if TYPE_CHECKING:
    _WrappingFactory = WrappingFactory[_HeaderProtocol]
else:
    # Twisted made WrappingFactory generic after 22.10; before, it cannot
    # be subscripted at run time.
    _WrappingFactory = WrappingFactory


class ProxyProtocolFactory(_WrappingFactory):
    """Wrap a server factory: each connection's header is read first, then
    ``wrappedFactory.buildProtocol`` is called with the header's client.
    With ``tls`` (an OpenSSL context factory) TLS starts after the header.
    ``reactor`` (the global one by default) times the header."""

    protocol = _HeaderProtocol

    def __init__(
        self,
        wrappedFactory: interfaces.IProtocolFactory,
        policy: Policy | None = None,
        *,
        tls: _TLSOptions | None = None,
        reactor: interfaces.IReactorTime | None = None,
        **options: Unpack[PolicyOptions],
    ) -> None:
        inner: object = wrappedFactory
        if tls is not None:
            inner = TLSMemoryBIOFactory(tls, False, wrappedFactory)
        super().__init__(inner)  # type: ignore[no-untyped-call]
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = cast(interfaces.IReactorTime, global_reactor)
        self.policy = resolve(policy, options, "ProxyProtocolFactory()")
        self.reactor = cast(_Clock, reactor)

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

    def __init__(
        self,
        endpoint: interfaces.IStreamServerEndpoint,
        policy: Policy | None = None,
        *,
        tls: _TLSOptions | None = None,
        reactor: interfaces.IReactorTime | None = None,
        **options: Unpack[PolicyOptions],
    ) -> None:
        self.endpoint = endpoint
        self.policy = resolve(policy, options, "ProxyProtocolServerEndpoint()")
        self.tls = tls
        self.reactor = reactor

    def listen(
        self, protocolFactory: interfaces.IProtocolFactory
    ) -> Deferred[interfaces.IListeningPort]:
        factory = ProxyProtocolFactory(
            protocolFactory, policy=self.policy, tls=self.tls, reactor=self.reactor
        )
        return cast(_Listener, self.endpoint).listen(factory)


# Endpoint-string arguments for the policy, as the PYPROXYPROTO_* variables
# they mirror (same syntax, same checks; messages name the argument).
_POLICY_ARGUMENTS = {
    "trusted": ENV_TRUSTED,
    "on_untrusted": ENV_ON_UNTRUSTED,
    "decide": ENV_DECIDE,
    "validate": ENV_VALIDATE,
    "timeout": ENV_TIMEOUT,
    "max_header_size": ENV_MAX_HEADER_SIZE,
    "versions": ENV_VERSIONS,
    "stats": ENV_STATS,
    "policy": ENV_POLICY,  # decide's old name
}


class _ToTwistedLog(_Routed):
    """Hands the ``pyproxyproto`` records to Twisted's log (twistd, twist)."""

    _LEVELS = ((logging.ERROR, LogLevel.error), (logging.WARNING, LogLevel.warn),
               (logging.INFO, LogLevel.info))

    def __init__(self) -> None:
        super().__init__()
        self._log = Logger(namespace="pyproxyproto")

    def emit(self, record: logging.LogRecord) -> None:
        level = next((ours for theirs, ours in self._LEVELS if record.levelno >= theirs),
                     LogLevel.debug)
        self._log.emit(level, "{message}", message=record.getMessage())


@implementer(IPlugin, interfaces.IStreamServerEndpointStringParser)
class ProxyProtocolServerParser:
    """``pyproxyproto:tcp:...`` and ``pyproxyproto:ssl:...`` endpoint strings."""

    prefix = "pyproxyproto"

    def parseStreamServer(
        self, reactor: interfaces.IReactorTime, *args: str, **kwargs: str
    ) -> ProxyProtocolServerEndpoint:
        if not args or args[0] not in ("tcp", "ssl", "unix"):
            raise ValueError(
                "pyproxyproto: endpoints are pyproxyproto:tcp:port=N[:...], "
                "pyproxyproto:ssl:port=N:privateKey=...[:...] "
                "or pyproxyproto:unix:address=PATH[:...]"
            )
        kind, *rest = args
        route(_ToTwistedLog(), logging.INFO)
        given = {
            _POLICY_ARGUMENTS[name]: kwargs.pop(name)
            for name in list(kwargs)
            if name in _POLICY_ARGUMENTS
        }
        names = {env: f"the endpoint argument {arg}" for arg, env in _POLICY_ARGUMENTS.items()}
        overrides = options_from_env(given, names)
        if trusts_every_peer(given):
            overrides["trusted"] = None  # every peer, whatever the environment says
        origin = "the endpoint argument trusted" if ENV_TRUSTED in given else None
        policy = policy_from_env(None, origin, **overrides)
        announce(policy, "the pyproxyproto: endpoint",
                 unix=kind == "unix" and not policy.trusts(""),
                 setting=ENDPOINT)
        inner: interfaces.IStreamServerEndpoint = serverFromString(  # type: ignore[no-untyped-call]
            reactor, _unparse(kind, rest, kwargs)
        )
        if kind in ("tcp", "unix"):
            return ProxyProtocolServerEndpoint(inner, policy=policy, reactor=reactor)
        # ssl: listen on plain TCP where ssl: would, and start TLS with its
        # certificate after the header.
        tcp, tls = split_ssl_endpoint(reactor, inner)
        return ProxyProtocolServerEndpoint(tcp, policy=policy, tls=tls, reactor=reactor)


def _unparse(kind: str, args: list[str], kwargs: dict[str, str]) -> str:
    def quote(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")

    parts = [kind, *map(quote, args)]
    parts += [f"{quote(k)}={quote(v)}" for k, v in kwargs.items()]
    return ":".join(parts)

