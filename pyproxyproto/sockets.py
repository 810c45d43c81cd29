"""PROXY protocol for blocking sockets and ``socketserver``.

The header is read exactly: the socket is peeked (MSG_PEEK), the parser
says how long the header is, and only that many bytes are received, so
whatever follows (the application's first bytes, a TLS ClientHello) is
still in the socket for the code that reads next.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Literal

from ._errors import (
    ConnectionClosed,
    HeaderTimeout,
    Incomplete,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._policy import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_TIMEOUT,
    FIRST_PEEK,
    REJECT,
    SKIP,
    Decision,
    PeerAddress,
    Policy,
    Stats,
    Trusted,
    closed_before_header,
    timeout_message,
)

if TYPE_CHECKING:
    from . import ProxyHeader

__all__ = [
    "ProxyProtocolMixin",
    "UntrustedPeer",
    "accept",
    "create_connection",
    "handshake",
    "recv_header",
]


def recv_header(
    sock: socket.socket,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    v1: bool = True,
    v2: bool = True,
) -> ProxyHeader:
    """Receive exactly one PROXY header from a connected stream socket.

    ``timeout`` bounds the whole header, however fragmented (None or inf:
    wait forever); past it, HeaderTimeout.  A peer that closes mid-header
    raises ConnectionClosed, a bad header (or a v2 header declaring more
    than ``max_header_size`` bytes) InvalidHeader.  The socket's own
    timeout is left as it was found.
    """
    policy = Policy(timeout=timeout, max_header_size=max_header_size, v1=v1, v2=v2)
    taken = bytearray()
    try:
        return _receive(sock, policy, taken)
    except TimeoutError:
        raise HeaderTimeout(timeout_message(policy.timeout, len(taken))) from None


def _receive(sock: socket.socket, policy: Policy, taken: bytearray) -> ProxyHeader:
    """The header, read exactly; ``taken`` holds what was received so far.

    Raises TimeoutError at the policy's deadline, ConnectionClosed,
    ProxyProtocolError, or the socket's OSError.
    """
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(
            "recv_header() needs a stream socket; a datagram carries its own "
            "header: use parse() on each one"
        )
    timeout = policy.timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    saved = sock.gettimeout()
    peeked = b""
    needed = 0  # parse at once: even an empty buffer says how much to peek
    try:
        while True:
            if len(taken) + len(peeked) >= needed:
                try:
                    header = policy.parse(bytes(taken) + peeked)
                    break
                except Incomplete as exc:
                    needed = exc.needed
            # What we have is a strict prefix of a header, so every peeked
            # byte belongs to it: take them, so that the next peek blocks
            # until more arrive instead of returning the same bytes again.
            _recv_exactly(sock, len(peeked), taken, deadline)
            _set_remaining(sock, deadline)
            peeked = sock.recv(max(needed, FIRST_PEEK) - len(taken), socket.MSG_PEEK)
            if not peeked:
                raise closed_before_header(len(taken), needed)
        _recv_exactly(sock, header.length - len(taken), taken, deadline)
        return header
    finally:
        sock.settimeout(saved)


def _set_remaining(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)


def _recv_exactly(sock: socket.socket, n: int, into: bytearray, deadline: float | None) -> None:
    # The bytes were peeked, so they are already in the socket's buffer.
    while n:
        _set_remaining(sock, deadline)
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("the socket lost data it had just shown (MSG_PEEK)")
        into += chunk
        n -= len(chunk)


def _handshake(
    conn: socket.socket, peer: PeerAddress, policy: Policy, decision: Decision
) -> tuple[PeerAddress, ProxyHeader | None]:
    """Read the header from an accepted connection as the policy decided;
    return (client, header).  Given up on: the policy counts and logs it,
    and its exception is raised."""
    if decision == REJECT:
        raise policy.refuse_peer(peer)
    if decision == SKIP:
        policy.skipped()
        return peer, None
    taken = bytearray()
    try:
        header = _receive(conn, policy, taken)
    except TimeoutError:
        raise policy.timed_out(peer, len(taken)) from None
    except ConnectionClosed as exc:
        raise policy.closed_early(peer, exc.received, exc.needed) from None
    except ProxyProtocolError as exc:
        raise policy.refuse_header(peer, exc) from None
    except OSError as exc:  # reset by the peer, ...
        raise policy.closed_early(peer, len(taken), len(taken) + 1, exc) from exc
    return policy.accept(header, peer, decision)


def handshake(
    conn: socket.socket,
    peer: PeerAddress,
    *,
    trusted: Trusted | None = None,
    on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
    policy: Callable[[PeerAddress], Decision] | None = None,
    validate: Callable[[ProxyHeader], object] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    v1: bool = True,
    v2: bool = True,
    stats: Stats | None = None,
) -> tuple[PeerAddress, ProxyHeader | None]:
    """What ``accept`` does after accepting: ``(client_address, header)`` for
    ``conn``, accepted from ``peer`` by your own loop (call it in a thread of
    its own, so that a slow peer holds up nobody else).

    Refusals are counted, logged and raised as by ``accept``; closing
    ``conn`` is then the caller's job.
    """
    rules = Policy(
        trusted=trusted, on_untrusted=on_untrusted, policy=policy, validate=validate,
        timeout=timeout, max_header_size=max_header_size, v1=v1, v2=v2, stats=stats,
    )
    return _handshake(conn, peer, rules, rules.decide(peer))


def accept(
    listening_sock: socket.socket,
    *,
    trusted: Trusted | None = None,
    on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
    policy: Callable[[PeerAddress], Decision] | None = None,
    validate: Callable[[ProxyHeader], object] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    v1: bool = True,
    v2: bool = True,
    stats: Stats | None = None,
) -> tuple[socket.socket, PeerAddress, ProxyHeader | None]:
    """Accept a connection and read its header: ``(conn, client_address, header)``.

    ``client_address`` is the header's source, or the socket's peer for a
    LOCAL/UNKNOWN header, a skipped peer, or an untrusted peer under
    on_untrusted="ignore" (``header`` is then None: consumed, not
    believed; for a skipped peer there was none).  When the connection is
    given up on it is closed, counted and logged by the policy, and the
    reason is raised: UntrustedPeer, InvalidHeader, HeaderRejected (by
    ``validate``), ConnectionClosed (closed mid-header) or HeaderTimeout.

    This waits for the header in the calling thread, up to ``timeout`` per
    connection: an accept loop calling it serves nobody else meanwhile.
    For a thread per connection, accept plainly and call ``handshake`` in
    the connection's thread (README, "socketserver and blocking sockets").
    """
    rules = Policy(
        trusted=trusted, on_untrusted=on_untrusted, policy=policy, validate=validate,
        timeout=timeout, max_header_size=max_header_size, v1=v1, v2=v2, stats=stats,
    )
    conn, peer = listening_sock.accept()
    try:
        client, header = _handshake(conn, peer, rules, rules.decide(peer))
    except BaseException:
        conn.close()
        raise
    return conn, client, header


class ProxyProtocolMixin:
    """Make a ``socketserver`` TCP server read a PROXY header per connection.

    Put it first: ``class Server(ProxyProtocolMixin, ThreadingTCPServer)``;
    the handler's ``client_address`` is then the real client, and
    ``server.proxy_header(request)`` the header (None when not believed or
    skipped).  The policy options (``aio.wrap``'s) are keyword arguments of
    the constructor.  The header is read in ``finish_request``, i.e. in the
    worker thread with ThreadingMixIn, so a slow peer does not hold up the
    accept loop.  The listen backlog is asyncio's (100), not socketserver's 5.
    """

    request_queue_size = 100

    def __init__(
        self,
        *args: Any,
        trusted: Trusted | None = None,
        on_untrusted: Literal["reject", "ignore", "skip"] | None = None,
        policy: Callable[[PeerAddress], Decision] | None = None,
        validate: Callable[[ProxyHeader], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        v1: bool = True,
        v2: bool = True,
        stats: Stats | None = None,
        **kwargs: Any,
    ) -> None:
        self._proxy_policy = Policy(
            trusted=trusted, on_untrusted=on_untrusted, policy=policy, validate=validate,
            timeout=timeout, max_header_size=max_header_size, v1=v1, v2=v2, stats=stats,
        )
        # Per request: the decision (made in the accept loop), then the header.
        self._proxy_decisions: dict[Any, Decision] = {}
        self._proxy_headers: dict[object, ProxyHeader | None] = {}
        self._proxy_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        policy = self._proxy_policy
        decision = policy.decide(client_address)
        if decision == REJECT:
            # Closed (by socketserver) before a byte is read.
            policy.refuse_peer(client_address)
            return False
        if not super().verify_request(request, client_address):  # type: ignore[misc]
            return False
        with self._proxy_lock:
            self._proxy_decisions[request] = decision
        return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        policy = self._proxy_policy
        with self._proxy_lock:
            decision = self._proxy_decisions.pop(request, None)
        if decision is None:  # verify_request was overridden without calling ours
            decision = policy.decide(client_address)
        try:
            client, header = _handshake(request, client_address, policy, decision)
        except (ProxyProtocolError, HeaderTimeout, UntrustedPeer, OSError):
            return  # counted and logged; socketserver closes the request
        with self._proxy_lock:
            self._proxy_headers[request] = header
        try:
            super().finish_request(request, client)  # type: ignore[misc]
        finally:
            with self._proxy_lock:
                del self._proxy_headers[request]

    def proxy_header(self, request: object) -> ProxyHeader | None:
        """The header read for ``request`` (the handler's ``self.request``)."""
        with self._proxy_lock:
            return self._proxy_headers.get(request)


# -- the sending side ------------------------------------------------------------------


def create_connection(
    address: tuple[str, int],
    *,
    header: bytes | bytearray | memoryview,
    **kwds: Any,
) -> socket.socket:
    """``socket.create_connection`` that sends ``header`` first, exactly once.

    ``header`` is one complete header as ``pyproxyproto.build`` returns it;
    anything else raises before connecting.  For TLS after the header (as
    balancers send it), wrap the returned socket.  Other keyword arguments
    (``timeout``, ``source_address``, ...) go to ``socket.create_connection``.
    """
    from ._build import one_header

    data = one_header(header)
    sock = socket.create_connection(address, **kwds)
    try:
        sock.sendall(data)
    except BaseException:
        sock.close()
        raise
    return sock
