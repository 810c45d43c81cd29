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
from typing import Any

from . import parse
from ._errors import HeaderTimeout, Incomplete, ProxyProtocolError, UntrustedPeer
from ._policy import (
    DEFAULT_TIMEOUT,
    FIRST_PEEK,
    Policy,
    check_timeout,
    check_versions,
    closed_before_header,
    log_rejection,
    timeout_message,
)

__all__ = ["ProxyProtocolMixin", "UntrustedPeer", "accept", "create_connection", "recv_header"]


def recv_header(
    sock: socket.socket,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    v1: bool = True,
    v2: bool = True,
) -> Any:
    """Receive exactly one PROXY header from a connected stream socket.

    ``timeout`` bounds the whole header, however fragmented (None: wait
    forever); past it, HeaderTimeout.  A peer that closes mid-header raises
    ConnectionClosed, a bad header InvalidHeader.  The socket's own timeout is
    left as it was found.
    """
    check_timeout(timeout)
    check_versions(v1, v2)
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(
            "recv_header() needs a stream socket; a datagram carries its own "
            "header: use parse() on each one"
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    saved = sock.gettimeout()
    taken = bytearray()
    peeked = b""
    needed = 0  # parse at once: even an empty buffer says how much to peek
    try:
        while True:
            if len(taken) + len(peeked) >= needed:
                try:
                    header = parse(bytes(taken) + peeked, v1=v1, v2=v2)
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
    except TimeoutError:
        raise HeaderTimeout(timeout_message(timeout, len(taken))) from None
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


def _handshake(conn: socket.socket, peer: Any, policy: Policy, trusted: bool) -> tuple[Any, Any]:
    """Read the header from an accepted connection; return (client, header).

    Logs the one record for a connection given up on, then raises.
    """
    if not trusted and policy.on_untrusted == "reject":
        log_rejection("closed connection", peer, "peer is not in the trusted networks")
        raise UntrustedPeer(f"{peer!r} is not in the trusted networks")
    try:
        header = recv_header(conn, timeout=policy.timeout, v1=policy.v1, v2=policy.v2)
    except (ProxyProtocolError, HeaderTimeout, OSError) as exc:
        log_rejection("closed connection", peer, str(exc) or type(exc).__name__)
        raise
    if not trusted:
        # on_untrusted="ignore": the header is consumed but not believed.
        return peer, None
    if header.source is None:  # LOCAL, UNKNOWN: the real addresses stand
        return peer, header
    return header.source, header


def accept(
    listening_sock: socket.socket,
    *,
    trusted: Any = None,
    on_untrusted: str = "reject",
    timeout: float | None = DEFAULT_TIMEOUT,
    v1: bool = True,
    v2: bool = True,
) -> tuple[socket.socket, Any, Any]:
    """Accept a connection and read its header: ``(conn, client_address, header)``.

    ``client_address`` is the header's source, or the socket's peer for a
    LOCAL/UNKNOWN header or an untrusted peer under on_untrusted="ignore"
    (``header`` is then None: it was consumed, not believed).  When the
    connection is given up on it is closed, one record is logged on the
    "pyproxyproto" logger, and the reason is raised: UntrustedPeer,
    InvalidHeader, ConnectionClosed (closed mid-header) or HeaderTimeout.
    """
    policy = Policy(trusted=trusted, on_untrusted=on_untrusted, timeout=timeout, v1=v1, v2=v2)
    conn, peer = listening_sock.accept()
    try:
        client, header = _handshake(conn, peer, policy, policy.trusts(peer))
    except BaseException:
        conn.close()
        raise
    return conn, client, header


class ProxyProtocolMixin:
    """Make a ``socketserver`` TCP server read a PROXY header per connection.

    Put it first: ``class Server(ProxyProtocolMixin, ThreadingTCPServer)``;
    the handler's ``client_address`` is then the real client, and
    ``server.proxy_header(request)`` the header (None when not believed).
    Options are keyword arguments of the constructor.  The header is read
    in ``finish_request``, i.e. in the worker thread with ThreadingMixIn,
    so a slow peer does not hold up the accept loop.
    """

    def __init__(
        self,
        *args: Any,
        trusted: Any = None,
        on_untrusted: str = "reject",
        timeout: float | None = DEFAULT_TIMEOUT,
        v1: bool = True,
        v2: bool = True,
        **kwargs: Any,
    ) -> None:
        self._proxy_policy = Policy(
            trusted=trusted, on_untrusted=on_untrusted, timeout=timeout, v1=v1, v2=v2
        )
        self._proxy_headers: dict[Any, Any] = {}
        self._proxy_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        policy = self._proxy_policy
        if policy.on_untrusted == "reject" and not policy.trusts(client_address):
            # Closed (by socketserver) before a byte is read.
            log_rejection(
                "closed connection", client_address, "peer is not in the trusted networks"
            )
            return False
        return super().verify_request(request, client_address)  # type: ignore[misc]

    def finish_request(self, request: Any, client_address: Any) -> None:
        policy = self._proxy_policy
        try:
            client, header = _handshake(
                request, client_address, policy, policy.trusts(client_address)
            )
        except (ProxyProtocolError, HeaderTimeout, OSError):
            return  # logged; socketserver closes the request
        with self._proxy_lock:
            self._proxy_headers[request] = header
        try:
            super().finish_request(request, client)  # type: ignore[misc]
        finally:
            with self._proxy_lock:
                del self._proxy_headers[request]

    def proxy_header(self, request: Any) -> Any:
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
