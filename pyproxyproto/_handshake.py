# mypy: always-false=compiled
"""The one handshake: a connection's PROXY header, from the decision for its peer to its outcome, without I/O.

Every integration drives a ``Handshake`` and does only the I/O::

    hs = Handshake(policy)
    step = hs.begin(peer)               # decide for the peer
    while step is READ:                 # arrange hs.timeout; on expiry: hs.timed_out()
        data = receive(...)             # exact readers: at most hs.needed - hs.received bytes
        step = hs.feed(data) if data else hs.closed()
    if step is SERVE:
        serve(hs.client, hs.believed, hs.rest)
    else:
        close()                         # hs.error says why; counted and logged

The handshake counts every outcome in the policy's ``Stats`` and logs every
refusal once (rate-limited), so integrations count and log nothing.  It
never asks for a payload byte: ``needed`` is the parser's ``Incomplete.needed``.
The same source runs as Python and, where a compiler was present, compiled
by Cython as ``pyproxyproto._handshake_c`` (declarations in
``_handshake_c.pxd``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._constants import V2_HEADER_LENGTH
from ._errors import (
    ConnectionClosed,
    HeaderRejected,
    HeaderTimeout,
    Incomplete,
    InvalidHeader,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._header import Command
from ._log import format_address, log_refusal
from ._policy import IGNORE, REJECT, SKIP, Policy
from ._step import CLOSE, READ, SERVE, Step

try:
    import cython
except ImportError:  # the package runs without Cython installed
    from . import _cython as cython

if TYPE_CHECKING:
    from . import ProxyHeader, parse
    from ._networks import PeerAddress
    from ._policy import Decision
else:
    from ._backend import impl

    parse = impl.parse

__all__ = ["CLOSE", "READ", "SERVE", "Handshake", "Step"]


_LOCAL = Command.LOCAL
# Bytes that start an HTTP/1 request line (methods) or a TLS record
# (handshake, version 3.x): a peer sending these sent no PROXY header.  Only
# the refusal's message uses them: the connection is refused either way.
_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                 b"CONNECT ", b"TRACE ", b"PRI * ")
_TLS_HANDSHAKE = b"\x16\x03"
_CLOSED = "closed connection"
_DROPPED = "dropped datagram"


class Handshake:
    """One connection's PROXY header handshake, without I/O (see the module
    docstring for the loop an integration runs).

    Made per connection from a ``Policy``; ``begin(peer)`` decides, then
    ``feed()`` takes what arrives until the step is SERVE or CLOSE.  With
    ``datagram=True`` each datagram is one whole handshake: ``feed()`` once.

    After SERVE: ``client`` is the address to report (the header's source,
    or the peer for LOCAL/UNKNOWN headers, skipped or ignored peers),
    ``header`` the header read (also under "ignore"), ``believed`` the header
    the application may believe (None when skipped or ignored), ``length``
    the bytes it took (0 when skipped), ``rest`` the bytes fed after it.  After CLOSE: ``error`` is the
    ``ProxyProtocolError`` to raise, already counted and logged.
    """

    __slots__ = ("policy", "peer", "local", "decision", "step", "header", "believed",
                 "client", "error", "received", "needed", "length", "_data", "_buffer",
                 "_datagram", "_always", "_v1", "_v2", "_max", "_validate", "_stats")

    READ = READ
    SERVE = SERVE
    CLOSE = CLOSE

    policy: Policy
    peer: PeerAddress
    local: object
    decision: Decision | None
    step: Step
    header: ProxyHeader | None
    believed: ProxyHeader | None
    client: PeerAddress
    error: ProxyProtocolError | None
    received: int
    needed: int
    length: int

    def __init__(self, policy: Policy, *, datagram: bool = False) -> None:
        self._init(policy, datagram)

    def _init(self, policy: Policy, datagram: bool) -> None:
        # __init__'s work, for subclasses made without calling it.
        self._reset(policy, datagram)
        # The policy's values read on every connection, in fields of the
        # handshake's own (C fields, compiled).
        always, v1, v2, self._max, self._validate, self._stats = policy.hot
        self._always = always
        self._v1 = v1 and not datagram  # v1 has no datagram form
        self._v2 = v2

    def _init_like(self, template: Handshake) -> None:
        # _init's work for the policy of ``template`` (a handshake made for
        # it and never begun), copied instead of read from the policy: a
        # server makes one template and a handshake per connection from it.
        self._reset(template.policy, template._datagram)
        self._always = template._always
        self._v1 = template._v1
        self._v2 = template._v2
        self._max = template._max
        self._validate = template._validate
        self._stats = template._stats

    def _reset(self, policy: Policy, datagram: bool) -> None:
        self.policy = policy
        self.peer = None
        self.local = None
        self.decision = None
        self.step = READ
        self.header = None
        self.believed = None
        self.client = None
        self.error = None
        self.received = 0  # bytes fed so far
        self.needed = 0  # the length the parser asked for last (0: not yet asked)
        self.length = 0  # the header's, once read
        self._data: Any = None  # the buffer holding the header once complete
        self._buffer: bytearray | None = None  # the header so far, when it comes in pieces
        self._datagram = datagram

    # -- the steps -------------------------------------------------------------

    def begin(self, peer: PeerAddress, local: object = None) -> Step:
        """Decide for ``peer`` (a getpeername() value; ``local``, the address
        it connected to, only names it in logs): READ (a header must come
        first), SERVE (skipped: no header) or CLOSE (refused)."""
        policy = self.policy
        self.peer = peer
        self.client = peer
        self.local = local
        decision = self.decision = self._always or policy.decide(peer)
        if decision == REJECT:
            if policy.decider is not None:
                reason = "the decide callable rejected the peer"
            else:
                reason = (f"peer is not in the trusted networks ({policy.describe_trust()}); "
                          "if it is a balancer, add its address there")
            return self._refused("rejected_untrusted", UntrustedPeer(
                f"{format_address(peer, local)}: {reason}"), reason)
        if decision == SKIP:
            self.step = SERVE
            if self._stats is not None:
                self._stats.count("skipped")
        return self.step

    def feed(self, data: Any) -> Step:
        """Take bytes received (any buffer; what follows the header is kept
        as ``rest``); return the step.  In pieces, the pieces are copied;
        a header that completes within one ``data`` is read in place."""
        if self.step is not READ or self.decision is None:
            raise RuntimeError(f"feed() while the handshake is at {self.step!r}"
                               if self.decision is not None else "feed() before begin()")
        buffer = self._buffer
        if buffer is None:
            view = data
        else:
            buffer += data
            view = buffer
            if len(buffer) < self.needed:
                self.received = len(buffer)
                return READ  # a long v2 header still arriving: nothing to decide yet
        try:
            if cython.compiled:
                # The compiled backend's C entry point (_parser_c.pxd).
                header = parse_buffer(view, self._v1, self._v2, True)
            else:
                header = parse(view, v1=self._v1, v2=self._v2)
        except Incomplete as exc:
            if exc.needed > self._max:
                return self._refused("rejected_invalid", self._too_large(exc.needed))
            if self._datagram:
                return self._refused("rejected_invalid", InvalidHeader(
                    f"the datagram ends before its PROXY header does ({len(data)} byte(s) of "
                    f"at least {exc.needed})", len(data)))
            self.needed = exc.needed
            if buffer is None:
                buffer = self._buffer = bytearray(data)
            self.received = len(buffer)
            return READ
        except InvalidHeader as exc:
            self.received = len(view)
            return self._refused("rejected_invalid", _no_header(exc, view, self._datagram))
        if cython.compiled:
            length = cython.cast(CProxyHeader, header)._length
        else:
            length = header.length
        self.received = len(view)
        if length > self._max:
            return self._refused("rejected_invalid", self._too_large(length))
        self.header = header
        self.length = length
        self._data = view
        self._buffer = None
        if self.decision != IGNORE:
            if self._validate is not None:
                try:
                    self._validate(header)
                except Exception as exc:
                    reason = f"PROXY header refused by the validator: {exc!r}"
                    error = HeaderRejected(reason, header)
                    error.__cause__ = exc
                    return self._refused("rejected_by_validator", error)
            self.believed = header
            if cython.compiled:
                source = cython.cast(CProxyHeader, header)._address(0)
            else:
                source = header.source
            if source is not None:  # not LOCAL, not UNKNOWN
                self.client = source
        stats = self._stats
        if stats is not None:
            stats.count_accepted(header.version, header.command is _LOCAL)
        self.step = SERVE
        return SERVE

    def timed_out(self) -> Step:
        """The header timeout passed: CLOSE (counted and logged)."""
        timeout = self.policy.timeout
        limit = "the time limit" if timeout is None else f"{timeout:g} s"
        return self._refused("timed_out", HeaderTimeout(
            f"no complete PROXY header within {limit} ({self.received} byte(s) received)"))

    def closed(self, cause: BaseException | None = None) -> Step:
        """The peer closed (or the connection was lost, ``cause``) before the
        header was complete: CLOSE (counted and logged)."""
        error = ConnectionClosed(self.received, max(self.needed, self.received + 1))
        if cause is not None:
            error.__cause__ = cause
        return self._refused("closed_early", error)

    # -- results -----------------------------------------------------------------

    @property
    def rest(self) -> bytes:
        """The bytes fed after the header (empty when none were, or when no
        header was read)."""
        data = self._data
        length = self.length
        return bytes(data[length:]) if data is not None and len(data) > length else b""

    @property
    def timeout(self) -> float | None:
        """Seconds the whole header may take (None: no limit)."""
        return self.policy.timeout

    def __repr__(self) -> str:
        return (f"<Handshake {self.step.value} peer={format_address(self.peer, self.local)} "
                f"decision={self.decision} received={self.received}>")

    # -- giving up ----------------------------------------------------------------

    def _too_large(self, length: int) -> InvalidHeader:
        return InvalidHeader(
            f"the v2 header declares {length} bytes, more than max_header_size "
            f"({self._max})",
            V2_HEADER_LENGTH - 2,  # the length field
        )

    def _refused(self, counter: str, error: ProxyProtocolError, reason: str | None = None) -> Step:
        """CLOSE for ``error``: counted under ``counter``, logged once (with
        ``reason``, or the error's message)."""
        self.step = CLOSE
        self.error = error
        self._buffer = None
        stats = self._stats
        if stats is not None:
            stats.count(counter)
        # A connect-and-close or an idle connection that sent nothing is a
        # TCP health check or a probe, not worth a warning.
        quiet = counter in ("closed_early", "timed_out") and self.received == 0
        if reason is None:
            reason = str(error)
        if counter == "rejected_invalid" and isinstance(error, InvalidHeader):
            if not reason.startswith("the peer sent no PROXY header"):
                reason = f"invalid PROXY header: {reason}"
        elif error.__cause__ is not None and counter == "closed_early":
            reason = f"{reason} ({error.__cause__})"
        log_refusal(logging.DEBUG if quiet else logging.WARNING,
                    _DROPPED if self._datagram else _CLOSED, self.peer, reason, self.local)
        return CLOSE


def _no_header(exc: InvalidHeader, data: Any, datagram: bool) -> InvalidHeader:
    """``exc``, or a clearer error when the data is no PROXY header at all
    but the start of an HTTP request or a TLS handshake."""
    if exc.offset > 8:
        return exc
    start = bytes(data[:8])
    if len(start) >= 4 and any(start.startswith(method[:len(start)]) for method in _HTTP_METHODS):
        line = bytes(data[:40]).partition(b"\r")[0]
        what = f"an HTTP request ({line!r})"
    elif start.startswith(_TLS_HANDSHAKE):
        what = "a TLS handshake (ClientHello)"
    elif datagram and start.startswith(b"PROXY "):
        return InvalidHeader(
            "a v1 PROXY header in a datagram: v1 has no datagram form; the sender must "
            "use v2", exc.offset)
    else:
        return exc
    return InvalidHeader(
        f"the peer sent no PROXY header: the connection starts with {what}; turn on "
        "the PROXY protocol where this peer connects from (HAProxy: send-proxy or "
        "send-proxy-v2; nginx: proxy_protocol on; or the balancer's PROXY setting); a "
        "peer that must connect without one (a health checker) needs its address left "
        "out of the trusted networks and on_untrusted skip (PYPROXYPROTO_ON_UNTRUSTED=skip)",
        exc.offset,
    )
