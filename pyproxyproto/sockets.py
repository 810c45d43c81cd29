"""PROXY protocol for blocking sockets and ``socketserver``: ``recv_header``, ``accept``, ``handshake``, ``ProxyProtocolMixin``.

The header is read exactly: what has arrived is peeked (MSG_PEEK), the
handshake says where the header ends, and only that many bytes are
received, so whatever follows (the application's first bytes, a TLS
ClientHello) is still in the socket for the code that reads next.  On a
blocking socket that is two system calls when the header is already there
(a peek and a receive), and a poll() while it is not.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from . import Handshake
from ._errors import UntrustedPeer
from ._networks import PeerAddress
from ._policy import FIRST_PEEK, Policy, resolve
from ._step import CLOSE, READ, SERVE, Step

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader
    from ._policy import PolicyOptions

__all__ = [
    "ProxyProtocolMixin",
    "UntrustedPeer",
    "absorb",
    "accept",
    "create_connection",
    "handshake",
    "read",
    "receive",
    "recv_header",
]

# Where it exists, a peek that never waits lets a blocking socket stay
# blocking (no timeout switching, which costs system calls); elsewhere the
# socket's timeout is set for each wait.
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_POLL = hasattr(select, "poll")


def read(sock: socket.socket, handshake: Handshake) -> Step:
    """Drive ``handshake`` (begun) over ``sock``, reading the header exactly;
    return its last step.  Every outcome, the peer's errors included, is
    the handshake's (counted, logged).  The socket's timeout is left as it
    was found."""
    return _drive(sock, handshake, exact=True)


def receive(sock: socket.socket, handshake: Handshake, chunk: int = 8192) -> Step:
    """Drive ``handshake`` (begun) over ``sock`` reading ahead, ``chunk``
    bytes at a time: the bytes that follow the header come in the same
    receive and are the handshake's ``rest``, for a server that can take
    them back (gunicorn's parser can).  One system call when the header and
    the request arrive together.  Otherwise as ``read``."""
    return _drive(sock, handshake, exact=False, chunk=chunk)


def _drive(sock: socket.socket, handshake: Handshake, exact: bool, chunk: int = 0) -> Step:
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(
            "a PROXY header is read from a stream socket; a datagram carries its own "
            "header: use parse() (or Handshake(policy, datagram=True)) on each one"
        )
    step = handshake.step
    if step is not READ:
        return step
    timeout = handshake.timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    saved = sock.gettimeout()
    fast = _DONTWAIT != 0 and saved is None
    taken = 0  # bytes of the header received so far (exact reads)
    try:
        while step is READ:
            if exact:
                wanted = max(handshake.needed, FIRST_PEEK) - taken
                data = _recv(sock, wanted, socket.MSG_PEEK, deadline, fast)
                taken = absorb(sock, handshake, data, taken)
                step = handshake.step
            else:
                data = _recv(sock, chunk, 0, deadline, fast)
                step = handshake.feed(data) if data else handshake.closed()
        return step
    except TimeoutError:
        return handshake.timed_out()
    except OSError as exc:  # reset by the peer, ...
        return handshake.closed(exc)
    finally:
        if not fast:
            sock.settimeout(saved)


def absorb(sock: socket.socket, handshake: Handshake, peeked: bytes, taken: int) -> int:
    """Feed ``handshake`` the bytes just peeked off ``sock`` (after the
    ``taken`` bytes of header already received), then receive from the
    socket the part of them that is header: all of them while the header is
    incomplete (so the next peek waits for new bytes), up to its end once
    it is complete, none when it is refused.  Return the header bytes taken
    so far.  The peeked bytes are in the socket already: this never waits."""
    if not peeked:
        handshake.closed()
        return taken
    step = handshake.feed(peeked)
    if step is CLOSE:
        return taken
    end = len(peeked) if step is READ else handshake.header.length - taken  # type: ignore[union-attr]
    while end:
        chunk = sock.recv(end)
        if not chunk:
            raise ConnectionError("the socket lost data it had just shown (MSG_PEEK)")
        taken += len(chunk)
        end -= len(chunk)
    return taken


def _recv(sock: socket.socket, n: int, flags: int, deadline: float | None, fast: bool) -> bytes:
    """Up to ``n`` bytes that have arrived (b"" at end of stream);
    TimeoutError once ``deadline`` passes with nothing new."""
    while True:
        if fast:
            try:
                return sock.recv(n, flags | _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                _wait(sock, deadline)
                continue
        sock.settimeout(None if deadline is None else _remaining(deadline))
        return sock.recv(n, flags)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


def _wait(sock: socket.socket, deadline: float | None) -> None:
    """Until ``sock`` is readable; TimeoutError at ``deadline``."""
    remaining = None if deadline is None else _remaining(deadline)
    if _POLL:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        ready = bool(poller.poll(None if remaining is None else max(1, int(remaining * 1000))))
    else:
        ready = bool(select.select([sock], [], [], remaining)[0])
    if not ready and deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError


def _outcome(sock: socket.socket, peer: PeerAddress, policy: Policy) -> Handshake:
    """The handshake of a connection accepted from ``peer``, run to its end."""
    hs = Handshake(policy)
    if hs.begin(peer, _local(sock, peer)) is READ:
        read(sock, hs)
    return hs


def _local(sock: socket.socket, peer: PeerAddress) -> object:
    # Only a Unix socket's (unnamed) peer needs the listening path in logs.
    if isinstance(peer, (str, bytes)):
        try:
            return sock.getsockname()
        except OSError:
            return None
    return None


def recv_header(
    sock: socket.socket,
    *,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> ProxyHeader:
    """Receive exactly one PROXY header from a connected stream socket.

    ``timeout`` (an option, as ``policy`` or the other policy options; see
    ``pyproxyproto.PolicyOptions``) bounds the whole header, however
    fragmented; past it, HeaderTimeout.  A peer that closes mid-header
    raises ConnectionClosed, a bad header (or a v2 header declaring more
    than ``max_header_size`` bytes) InvalidHeader: every refusal is a
    ``ProxyProtocolError``, counted and logged.  The socket's own timeout
    is left as it was found, and it is not closed.
    """
    rules = resolve(policy, options, "sockets.recv_header()")
    hs = Handshake(rules)
    peer = _peer(sock)
    step = hs.begin(peer, _local(sock, peer))
    if step is SERVE:
        raise LookupError("the policy skips this peer: no PROXY header is expected from it")
    if step is READ:
        read(sock, hs)
    if hs.error is not None:
        raise hs.error
    assert hs.header is not None
    return hs.header


def _peer(sock: socket.socket) -> PeerAddress:
    try:
        return sock.getpeername()  # type: ignore[no-any-return]
    except OSError:
        return None


def handshake(
    conn: socket.socket,
    peer: PeerAddress,
    *,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> tuple[PeerAddress, ProxyHeader | None]:
    """What ``accept`` does after accepting: ``(client_address, header)`` for
    ``conn``, accepted from ``peer`` by your own loop (call it in a thread of
    its own, so that a slow peer holds up nobody else).

    ``policy`` or the policy options: see ``pyproxyproto.PolicyOptions``.
    Refusals are counted, logged and raised as by ``accept``; closing
    ``conn`` is then the caller's job.
    """
    hs = _outcome(conn, peer, resolve(policy, options, "sockets.handshake()"))
    if hs.error is not None:
        raise hs.error
    return hs.client, hs.believed


def accept(
    listening_sock: socket.socket,
    *,
    policy: Policy | None = None,
    **options: Unpack[PolicyOptions],
) -> tuple[socket.socket, PeerAddress, ProxyHeader | None]:
    """Accept a connection and read its header: ``(conn, client_address, header)``.

    ``client_address`` is the header's source, or the socket's peer for a
    LOCAL/UNKNOWN header, a skipped peer, or an untrusted peer under
    on_untrusted="ignore" (``header`` is then None: consumed, not
    believed; for a skipped peer there was none).  When the connection is
    given up on it is closed, counted and logged, and the reason is raised
    (a ``ProxyProtocolError``): UntrustedPeer, InvalidHeader,
    HeaderRejected (by ``validate``), ConnectionClosed (closed mid-header)
    or HeaderTimeout.  ``policy`` or the policy options: see
    ``pyproxyproto.PolicyOptions``.

    This waits for the header in the calling thread, up to ``timeout`` per
    connection: an accept loop calling it serves nobody else meanwhile.
    For a thread per connection, accept plainly and call ``handshake`` in
    the connection's thread (README, "socketserver and blocking sockets").
    """
    rules = resolve(policy, options, "sockets.accept()")
    conn, peer = listening_sock.accept()
    try:
        hs = _outcome(conn, peer, rules)
    except BaseException:
        conn.close()
        raise
    if hs.error is not None:
        conn.close()
        raise hs.error
    return conn, hs.client, hs.believed


class ProxyProtocolMixin:
    """Make a ``socketserver`` TCP server read a PROXY header per connection.

    Put it first: ``class Server(ProxyProtocolMixin, ThreadingTCPServer)``;
    the handler's ``client_address`` is then the real client, and
    ``server.proxy_header(request)`` the header (None when not believed or
    skipped).  ``policy`` or the policy options (see
    ``pyproxyproto.PolicyOptions``) are keyword arguments of the
    constructor.  The header is read in ``finish_request``, i.e. in the
    worker thread with ThreadingMixIn, so a slow peer does not hold up the
    accept loop.  The listen backlog is asyncio's (100), not socketserver's 5.
    """

    request_queue_size = 100

    def __init__(
        self,
        *args: Any,
        bind_and_activate: bool = True,
        policy: Policy | None = None,
        **options: Unpack[PolicyOptions],
    ) -> None:
        """socketserver's arguments, and ``policy`` or the policy options
        (see ``pyproxyproto.PolicyOptions``)."""
        self._proxy_policy = resolve(policy, options, "ProxyProtocolMixin()")
        # Per request: the handshake (begun in the accept loop), then the header.
        self._proxy_handshakes: dict[Any, Handshake] = {}
        self._proxy_headers: dict[object, ProxyHeader | None] = {}
        self._proxy_lock = threading.Lock()
        super().__init__(*args, bind_and_activate=bind_and_activate)  # type: ignore[call-arg]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        hs = Handshake(self._proxy_policy)
        if hs.begin(client_address, _local(request, client_address)) is CLOSE:
            return False  # closed (by socketserver) before a byte is read
        if not super().verify_request(request, client_address):  # type: ignore[misc]
            return False
        with self._proxy_lock:
            self._proxy_handshakes[request] = hs
        return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._proxy_lock:
            hs = self._proxy_handshakes.pop(request, None)
        if hs is None:  # verify_request was overridden without calling ours
            hs = Handshake(self._proxy_policy)
            hs.begin(client_address, _local(request, client_address))
        if read(request, hs) is not SERVE:
            return  # counted and logged; socketserver closes the request
        with self._proxy_lock:
            self._proxy_headers[request] = hs.believed
        try:
            super().finish_request(request, hs.client)  # type: ignore[misc]
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
