"""The one policy module: who must, may or must not send a header, timeouts,
size limits, validation, counters and logging, for every integration.

Integrations (``aio``, ``sockets``, the server modules) build one
``Policy`` from the user's options and call it at each step of a
connection: ``decide(peer)`` when it is accepted, ``parse(data)`` on what
has arrived, ``accept(header, peer, decision)`` for a complete header, and
one of the ``refuse_*`` / ``timed_out`` / ``closed_early`` methods when it
gives up.  Those methods count, log, and return the exception to raise, so
every integration counts and logs the same way.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import logging
import math
import os
import socket
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Optional, TypedDict, Union

from ._constants import V1_MAX_LENGTH, V2_HEADER_LENGTH
from ._errors import (
    ConnectionClosed,
    HeaderRejected,
    HeaderTimeout,
    Incomplete,
    InvalidHeader,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._header import Address

if TYPE_CHECKING:
    from . import ProxyHeader, parse
else:
    from ._backend import impl

    parse = impl.parse

logger = logging.getLogger("pyproxyproto")

NetworkLike = Union[str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
                    ipaddress.IPv4Address, ipaddress.IPv6Address]
Trusted = Union[NetworkLike, Iterable[NetworkLike], "TrustedNetworks"]
Decision = Literal["require", "reject", "ignore", "skip"]
# What getpeername() returns for the families a header can name:
# (host, port[, flowinfo, scope_id]), a Unix socket's path (str, or bytes
# for an abstract name), or None when the transport does not say.
PeerAddress = Optional[Address]

REQUIRE: Decision = "require"  # a header must come first, and it is believed
REJECT: Decision = "reject"    # closed before a byte is read
IGNORE: Decision = "ignore"    # a header must come first; it is consumed, not believed
SKIP: Decision = "skip"        # no header: the peer is served as itself
DECISIONS = frozenset((REQUIRE, REJECT, IGNORE, SKIP))
UNTRUSTED_DECISIONS = frozenset((REJECT, IGNORE, SKIP))

# The default header timeout, in seconds, of every integration.
DEFAULT_TIMEOUT = 5.0
# A v2 header may declare up to 65535 bytes after its 16-byte fixed part;
# real balancers send a few hundred at most.
DEFAULT_MAX_HEADER_SIZE = 4096
MAX_HEADER_SIZE_LIMIT = V2_HEADER_LENGTH + 0xFFFF
# The smallest limit that still admits every address family without TLVs
# (a v2 UNIX header: 16 + 216 bytes), and every v1 line.
MIN_HEADER_SIZE = V2_HEADER_LENGTH + 216

# How many bytes to look at first when reading a header off a socket: a whole
# v1 line fits, and so does a v2 header's fixed part, whose length field then
# says exactly how much more to read.
FIRST_PEEK = V1_MAX_LENGTH

_MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses
_SINGLE_NETWORK = (str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
                   ipaddress.IPv4Address, ipaddress.IPv6Address)


# -- trusted networks ------------------------------------------------------------------


class TrustedNetworks:
    """A set of IP networks, kept as sorted, merged integer ranges.

    Membership costs one ``inet_pton`` and one binary search: no
    ``ipaddress`` object is made per lookup.
    """

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, networks: Iterable[NetworkLike]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        parsed = []
        for item in networks:
            if isinstance(item, bool) or not isinstance(item, _SINGLE_NETWORK):
                raise TypeError(
                    f"trusted: {item!r} is not an IP network; give a str such as "
                    f"'10.0.0.0/8', an int, or an ipaddress object"
                )
            try:
                net = ipaddress.ip_network(item)
            except ValueError as exc:
                raise ValueError(f"trusted: {item!r} is not an IP network ({exc})") from None
            parsed.append(net)
            ranges = v4 if net.version == 4 else v6
            ranges.append((int(net.network_address), int(net.broadcast_address)))
        self.networks = tuple(parsed)
        self._v4 = _merged(v4)
        self._v6 = _merged(v6)

    def __contains__(self, host: object) -> bool:
        """Whether ``host``, a textual IP address as getpeername() gives it,
        is in one of the networks.  Anything else (a Unix socket's path,
        None) is not."""
        if not isinstance(host, str):
            return False
        if ":" in host:
            try:
                value = int.from_bytes(
                    socket.inet_pton(socket.AF_INET6, host.partition("%")[0]), "big"
                )
            except OSError:
                return False
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
            if value >> 32 == _MAPPED_PREFIX and _in(self._v4, value & 0xFFFFFFFF):
                return True
            return _in(self._v6, value)
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
        except OSError:
            return False
        return _in(self._v4, value)

    def __repr__(self) -> str:
        return f"TrustedNetworks({[str(n) for n in self.networks]!r})"


def _merged(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(ranges):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _in(ranges: tuple[list[int], list[int]], value: int) -> bool:
    starts, ends = ranges
    i = bisect_right(starts, value) - 1
    return i >= 0 and value <= ends[i]


@functools.lru_cache(maxsize=64)
def _compiled(items: tuple[Any, ...]) -> TrustedNetworks:
    return TrustedNetworks(items)


def trusted_networks(trusted: Trusted | None) -> TrustedNetworks | None:
    """Compile the ``trusted`` option; None trusts every peer.

    Compilations are cached by value, so an API that takes ``trusted`` on
    every call (``sockets.accept``) builds its ranges only once.
    """
    if trusted is None or isinstance(trusted, TrustedNetworks):
        return trusted
    if isinstance(trusted, _SINGLE_NETWORK):
        items: tuple[Any, ...] = (trusted,)
    elif isinstance(trusted, (bytes, bytearray, memoryview)) or not isinstance(trusted, Iterable):
        # bytes would otherwise be read as a sequence of integers.
        raise TypeError(
            f"trusted must be a network (str, int or ipaddress object) or an "
            f"iterable of them, not {type(trusted).__name__}"
        )
    else:
        items = tuple(trusted)
    try:
        return _compiled(items)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return TrustedNetworks(items)  # compile uncached, to get the clear error


# -- option checks ---------------------------------------------------------------------


def check_timeout(timeout: object) -> float | None:
    """Check a header timeout; return it, with infinity as None (no limit)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


def check_versions(v1: bool, v2: bool) -> None:
    if not (v1 or v2):
        raise ValueError("at least one of v1 and v2 must be enabled")


def check_max_header_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"max_header_size must be an int, not {size!r}")
    if not MIN_HEADER_SIZE <= size <= MAX_HEADER_SIZE_LIMIT:
        raise ValueError(
            f"max_header_size must be between {MIN_HEADER_SIZE} and "
            f"{MAX_HEADER_SIZE_LIMIT}, not {size}"
        )
    return size


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, not {value!r}")


# -- counters --------------------------------------------------------------------------

COUNTERS = (
    "accepted",
    "skipped",
    "rejected_untrusted",
    "rejected_invalid",
    "rejected_by_validator",
    "timed_out",
    "closed_early",
)


class Stats:
    """Connection counters, shareable by any number of servers and threads.

    ``accepted``: headers accepted (LOCAL and UNKNOWN included, and headers
    consumed but not believed under "ignore"); ``skipped``: peers served
    without a header ("skip"); ``rejected_untrusted``: peers refused before
    a byte was read; ``rejected_invalid``: malformed or too large headers;
    ``rejected_by_validator``: headers refused by ``validate``;
    ``timed_out``: no complete header in time; ``closed_early``: the peer
    closed (or the connection was lost) before the header was complete.
    """

    __slots__ = (*COUNTERS, "_lock")

    accepted: int
    skipped: int
    rejected_untrusted: int
    rejected_invalid: int
    rejected_by_validator: int
    timed_out: int
    closed_early: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        # `x += 1` on an attribute is a read and a write: without the lock,
        # two threads can lose a count.
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in COUNTERS}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"Stats({fields})"


# -- logging ---------------------------------------------------------------------------


class _LogLimiter:
    """At most ``burst`` WARNING-or-worse records per ``window`` seconds.

    A scan or a misconfigured balancer can refuse thousands of connections
    a second; one record each would bury everything else.  The first record
    let through after a quiet spell says how many were dropped.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start a new window with nothing dropped (tests start from here)."""
        self._start = -math.inf
        self._sent = 0
        self._dropped = 0

    def log(self, level: int, message: str, *args: object) -> None:
        if not logger.isEnabledFor(level):
            return
        if level < logging.WARNING:
            logger.log(level, message, *args)
            return
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self.window:
                self._start = now
                self._sent = 0
            if self._sent >= self.burst:
                self._dropped += 1
                return
            self._sent += 1
            dropped, self._dropped = self._dropped, 0
        if dropped:
            message += " (%d similar record(s) were not logged)"
            args = (*args, dropped)
        logger.log(level, message, *args)


_limiter = _LogLimiter()


def format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if not address:
        return "an unnamed socket"
    return str(address)


def log_rejection(what: str, peer: object, reason: str, level: int = logging.WARNING) -> None:
    """The one log record for a connection (or datagram) given up on."""
    _limiter.log(level, "%s from %s: %s", what, format_address(peer), reason)


def timeout_message(timeout: float | None, received: int) -> str:
    return f"no complete PROXY header within {timeout:g} s ({received} byte(s) received)"


def closed_before_header(received: int, needed: int) -> ConnectionClosed:
    return ConnectionClosed(received, needed)


# -- the policy ------------------------------------------------------------------------


class PolicyOptions(TypedDict, total=False):
    """The options every integration takes (see ``Policy``)."""

    trusted: Optional[Trusted]
    on_untrusted: Optional[Literal["reject", "ignore", "skip"]]
    policy: Optional[Callable[[PeerAddress], Decision]]
    validate: Optional[Callable[["ProxyHeader"], object]]
    timeout: Optional[float]
    max_header_size: int
    v1: bool
    v2: bool
    stats: Optional[Stats]


class Policy:
    """The options every integration takes, checked once.

    - ``trusted``: networks whose peers must send a header (None: every
      peer); ``on_untrusted`` says what happens to the others: "reject"
      (the default: closed before a byte is read), "ignore" (a header must
      come first; it is consumed but not believed) or "skip" (no header
      is expected: the peer is served as itself).
    - ``policy``: instead of those two, a callable
      ``(peer_address) -> "require" | "reject" | "ignore" | "skip"``.
    - ``validate``: a callable ``(header) -> None`` that raises to refuse
      a connection whose header is valid but not wanted.
    - ``timeout``: seconds for the whole header (None or inf: no limit).
    - ``max_header_size``: a v2 header declaring more bytes is refused as
      soon as its length field arrives (at most 65551).
    - ``v1`` / ``v2``: which versions are accepted.
    - ``stats``: a ``Stats`` to count outcomes in.
    """

    __slots__ = ("networks", "on_untrusted", "policy", "validate", "timeout",
                 "max_header_size", "v1", "v2", "stats", "always")

    def __init__(
        self,
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
    ) -> None:
        if policy is not None and (trusted is not None or on_untrusted is not None):
            raise ValueError("give either policy or trusted/on_untrusted, not both")
        untrusted: Decision = REJECT if on_untrusted is None else on_untrusted
        if untrusted not in UNTRUSTED_DECISIONS:
            raise ValueError(
                f"on_untrusted must be 'reject', 'ignore' or 'skip', not {on_untrusted!r}"
            )
        _check_callable("policy", policy)
        _check_callable("validate", validate)
        if stats is not None and not isinstance(stats, Stats):
            raise TypeError(f"stats must be a pyproxyproto.Stats or None, not {stats!r}")
        check_versions(v1, v2)
        self.networks = trusted_networks(trusted)
        self.on_untrusted = untrusted
        self.policy = policy
        self.validate = validate
        self.timeout = check_timeout(timeout)
        self.max_header_size = check_max_header_size(max_header_size)
        self.v1 = v1
        self.v2 = v2
        self.stats = stats
        # The decision when it does not depend on the peer, so an accept
        # loop can skip decide(): every peer must send a header.
        self.always: Decision | None = (
            REQUIRE if policy is None and self.networks is None else None
        )

    # -- deciding ------------------------------------------------------------------

    def trusts(self, peer: PeerAddress) -> bool:
        """Whether ``peer`` (a getpeername() value) is in ``trusted``."""
        if self.networks is None:
            return True
        host = peer[0] if isinstance(peer, tuple) else peer
        return host in self.networks

    def decide(self, peer: PeerAddress) -> Decision:
        """What to do with a new connection from ``peer``."""
        if self.policy is None:
            # trusts(), inline: this runs for every connection.
            networks = self.networks
            if networks is None or (peer[0] if isinstance(peer, tuple) else peer) in networks:
                return REQUIRE
            return self.on_untrusted
        try:
            decision = self.policy(peer)
        except Exception:
            # A failing policy callable fails closed.
            logger.exception("policy callable failed for %s; rejecting", format_address(peer))
            return REJECT
        if decision not in DECISIONS:
            logger.error(
                "policy callable returned %r for %s, not one of 'require', 'reject', "
                "'ignore', 'skip'; rejecting", decision, format_address(peer),
            )
            return REJECT
        return decision

    # -- reading -------------------------------------------------------------------

    def parse(self, data: Any) -> ProxyHeader:
        """``pyproxyproto.parse`` with this policy's versions and size limit.

        A v2 header whose length field declares more than
        ``max_header_size`` raises InvalidHeader as soon as its first 16
        bytes are there, so it is never buffered.
        """
        try:
            header = parse(data, v1=self.v1, v2=self.v2)
        except Incomplete as exc:
            if exc.needed > self.max_header_size:
                raise self._too_large(exc.needed) from None
            raise
        if header.length > self.max_header_size:
            raise self._too_large(header.length)
        return header

    def check_length(self, length: int) -> None:
        """Raise InvalidHeader if a header of ``length`` bytes exceeds
        ``max_header_size`` (for readers that do not call ``parse`` here)."""
        if length > self.max_header_size:
            raise self._too_large(length)

    def _too_large(self, length: int) -> InvalidHeader:
        return InvalidHeader(
            f"the v2 header declares {length} bytes, more than max_header_size "
            f"({self.max_header_size})",
            14,  # the length field
        )

    def accept(
        self, header: ProxyHeader, peer: PeerAddress, decision: Decision
    ) -> tuple[PeerAddress, ProxyHeader | None]:
        """Take a complete header: ``(client_address, header_or_None)``.

        Under "ignore" the header was consumed but is not believed: the
        client is the peer, and the header None.  LOCAL and UNKNOWN headers
        leave the peer as the client.  Raises HeaderRejected (logged and
        counted) when ``validate`` refuses the header.
        """
        if decision == IGNORE:
            self._count("accepted")
            return peer, None
        if self.validate is not None:
            self._validate(header, peer)
        self._count("accepted")
        source = header.source
        return (peer if source is None else source), header

    def take(
        self, data: Any, peer: PeerAddress, decision: Decision
    ) -> tuple[ProxyHeader, ProxyHeader | None]:
        """``parse(data)`` then ``accept()``, as one call: ``(header,
        header_or_None)``, the second None when the header is not believed
        ("ignore").  Raises what they raise, counted and logged as they do.

        The same steps as those two, written out: an accept loop calls this
        for every connection, and each Python call saved counts there.
        """
        try:
            header = parse(data, v1=self.v1, v2=self.v2)
        except Incomplete as exc:
            if exc.needed > self.max_header_size:
                raise self._too_large(exc.needed) from None
            raise
        if header.length > self.max_header_size:
            raise self._too_large(header.length)
        believed: ProxyHeader | None = None
        if decision != IGNORE:
            if self.validate is not None:
                self._validate(header, peer)
            believed = header
        stats = self.stats
        if stats is not None:
            stats.count("accepted")
        return header, believed

    def _validate(self, header: ProxyHeader, peer: PeerAddress) -> None:
        assert self.validate is not None
        try:
            self.validate(header)
        except Exception as exc:
            self._count("rejected_by_validator")
            reason = f"PROXY header refused by the validator: {exc!r}"
            log_rejection("closed connection", peer, reason)
            raise HeaderRejected(reason, header) from exc

    def skipped(self) -> None:
        """A peer served without a header ("skip")."""
        self._count("skipped")

    # -- giving up: each counts, logs one record, and returns what to raise ---

    def refuse_peer(self, peer: PeerAddress, what: str = "closed connection") -> UntrustedPeer:
        self._count("rejected_untrusted")
        log_rejection(what, peer, "peer is not in the trusted networks")
        return UntrustedPeer(f"{format_address(peer)} is not in the trusted networks")

    def refuse_header(
        self, peer: PeerAddress, exc: ProxyProtocolError, what: str = "closed connection"
    ) -> ProxyProtocolError:
        self._count("rejected_invalid")
        log_rejection(what, peer, f"invalid PROXY header: {exc}")
        return exc

    def timed_out(self, peer: PeerAddress, received: int) -> HeaderTimeout:
        # A peer that sent nothing (an idle balancer probe) is not worth a warning.
        self._count("timed_out")
        message = timeout_message(self.timeout, received)
        log_rejection("closed connection", peer, message, _quiet_if_silent(received))
        return HeaderTimeout(message)

    def closed_early(
        self, peer: PeerAddress, received: int, needed: int, cause: BaseException | None = None
    ) -> ConnectionClosed:
        # A connect-and-close is a TCP health check, not worth a warning.
        self._count("closed_early")
        exc = closed_before_header(received, max(needed, received + 1))
        reason = str(exc) if cause is None else f"{exc} ({cause})"
        log_rejection("closed connection", peer, reason, _quiet_if_silent(received))
        return exc

    def _count(self, name: str) -> None:
        if self.stats is not None:
            self.stats.count(name)


def _quiet_if_silent(received: int) -> int:
    return logging.WARNING if received else logging.DEBUG


# -- options from the environment (for servers that start worker processes) -----------

ENV_TRUSTED = "PYPROXYPROTO_TRUSTED"
ENV_ON_UNTRUSTED = "PYPROXYPROTO_ON_UNTRUSTED"
ENV_POLICY = "PYPROXYPROTO_POLICY"
ENV_VALIDATE = "PYPROXYPROTO_VALIDATE"
ENV_TIMEOUT = "PYPROXYPROTO_TIMEOUT"
ENV_MAX_HEADER_SIZE = "PYPROXYPROTO_MAX_HEADER_SIZE"
ENV_VERSIONS = "PYPROXYPROTO_VERSIONS"
ENV_STATS = "PYPROXYPROTO_STATS"
ENV_OPTIONS = (ENV_TRUSTED, ENV_ON_UNTRUSTED, ENV_POLICY, ENV_VALIDATE, ENV_TIMEOUT,
               ENV_MAX_HEADER_SIZE, ENV_VERSIONS, ENV_STATS)


def options_from_env(environ: Mapping[str, str] | None = None) -> PolicyOptions:
    """Policy options from PYPROXYPROTO_* variables, for servers whose worker
    processes cannot be handed Python objects.

    - PYPROXYPROTO_TRUSTED: comma-separated networks; ``*`` trusts every peer
    - PYPROXYPROTO_ON_UNTRUSTED: reject, ignore or skip
    - PYPROXYPROTO_POLICY, PYPROXYPROTO_VALIDATE: ``module:attribute`` of a callable
    - PYPROXYPROTO_TIMEOUT: seconds, or ``none``
    - PYPROXYPROTO_MAX_HEADER_SIZE: bytes
    - PYPROXYPROTO_VERSIONS: ``1``, ``2`` or ``1,2``
    - PYPROXYPROTO_STATS: ``module:attribute`` of a ``Stats`` (per process)

    Unset or empty variables leave the option at its default.  A bad value
    raises ValueError naming the variable.
    """
    env = os.environ if environ is None else environ
    options: PolicyOptions = {}

    def value(name: str) -> str | None:
        text = env.get(name, "").strip()
        return text or None

    def bad(name: str, text: str, why: str) -> ValueError:
        return ValueError(f"{name}={text!r}: {why}")

    text = value(ENV_TRUSTED)
    if text is not None and text != "*":
        networks = [part.strip() for part in text.split(",") if part.strip()]
        try:
            options["trusted"] = trusted_networks(networks)
        except (TypeError, ValueError) as exc:
            raise bad(ENV_TRUSTED, text, str(exc)) from None
    text = value(ENV_ON_UNTRUSTED)
    if text is not None:
        if text not in UNTRUSTED_DECISIONS:
            raise bad(ENV_ON_UNTRUSTED, text, "must be reject, ignore or skip")
        options["on_untrusted"] = text  # type: ignore[typeddict-item]
    text = value(ENV_POLICY)
    if text is not None:
        options["policy"] = _import_object(ENV_POLICY, text)
    text = value(ENV_VALIDATE)
    if text is not None:
        options["validate"] = _import_object(ENV_VALIDATE, text)
    text = value(ENV_TIMEOUT)
    if text is not None:
        if text.lower() == "none":
            options["timeout"] = None
        else:
            try:
                options["timeout"] = check_timeout(float(text))
            except (TypeError, ValueError):
                raise bad(ENV_TIMEOUT, text, "must be a positive number of seconds or none") from None
    text = value(ENV_MAX_HEADER_SIZE)
    if text is not None:
        try:
            options["max_header_size"] = check_max_header_size(int(text))
        except (TypeError, ValueError) as exc:
            raise bad(ENV_MAX_HEADER_SIZE, text, str(exc)) from None
    text = value(ENV_VERSIONS)
    if text is not None:
        versions = {part.strip() for part in text.split(",")}
        if not versions or not versions <= {"1", "2"}:
            raise bad(ENV_VERSIONS, text, "must be 1, 2 or 1,2")
        options["v1"] = "1" in versions
        options["v2"] = "2" in versions
    text = value(ENV_STATS)
    if text is not None:
        stats = _import_object(ENV_STATS, text)
        if not isinstance(stats, Stats):
            raise bad(ENV_STATS, text, "is not a pyproxyproto.Stats")
        options["stats"] = stats
    return options


def _import_object(name: str, text: str) -> Any:
    module_name, sep, attribute = text.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{name}={text!r}: must be module:attribute")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name}={text!r}: cannot import it ({exc})") from None
    if name != ENV_STATS and not callable(obj):
        raise ValueError(f"{name}={text!r}: is not callable")
    return obj


def policy_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Policy:
    """A Policy from PYPROXYPROTO_* variables; keyword arguments win."""
    options: dict[str, Any] = dict(options_from_env(environ))
    if "policy" in overrides:
        options.pop("trusted", None)
        options.pop("on_untrusted", None)
    options.update(overrides)
    return Policy(**options)


__all__ = [
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_TIMEOUT",
    "Decision",
    "Policy",
    "PolicyOptions",
    "Stats",
    "TrustedNetworks",
    "options_from_env",
    "policy_from_env",
]
