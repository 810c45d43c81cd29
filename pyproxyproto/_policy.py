"""The policy: the options every integration takes, declared once and checked once.

``PolicyOptions`` is the one declaration of the options; ``Policy`` holds
them, checked, and decides for each peer whether it must send a header.
What happens on a connection is ``Handshake``'s (``_handshake.py``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Optional, TypedDict

from ._constants import V1_MAX_LENGTH, V2_HEADER_LENGTH
from ._log import format_address, logger
from ._networks import PeerAddress, Trusted, TrustedNetworks, trusted_networks
from ._stats import Stats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from . import ProxyHeader

Decision = Literal["require", "reject", "ignore", "skip"]

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

# How many bytes a reader that can peek looks at first: a whole v1 line
# fits, and so does a v2 header's fixed part, whose length field then says
# exactly how much more to read.
FIRST_PEEK = V1_MAX_LENGTH


class PolicyOptions(TypedDict, total=False):
    """The policy options, taken by every integration as keyword arguments
    (or held by a ``Policy`` passed as ``policy=``):

    - ``trusted``: the networks whose peers must send a header (a str such
      as ``"10.0.0.0/8"``, an ``ipaddress`` object, or an iterable of them;
      ``"unix"`` trusts the peers of a Unix socket).  None, the default,
      trusts every peer.
    - ``on_untrusted``: what happens to the other peers: ``"reject"`` (the
      default: closed before a byte is read), ``"ignore"`` (a header must
      come first; it is consumed but not believed) or ``"skip"`` (no header
      is expected: the peer is served as itself, e.g. a health checker).
    - ``decide``: instead of those two, a callable ``(peer_address) ->
      "require" | "reject" | "ignore" | "skip"``.
    - ``validate``: a callable ``(header) -> None`` that raises to refuse a
      connection whose header is valid but not wanted.
    - ``timeout``: seconds for the whole header (default 5; None or inf: no
      limit).
    - ``max_header_size``: a v2 header declaring more bytes is refused as
      soon as its length field arrives (default 4096, at most 65551).
    - ``v1`` / ``v2``: which versions are accepted (both by default).
    - ``stats``: a ``Stats`` to count outcomes in.
    """

    trusted: Optional[Trusted]
    on_untrusted: Optional[Literal["reject", "ignore", "skip"]]
    decide: Optional[Callable[[PeerAddress], Decision]]
    validate: Optional[Callable[["ProxyHeader"], object]]
    timeout: Optional[float]
    max_header_size: int
    v1: bool
    v2: bool
    stats: Optional[Stats]


OPTION_NAMES = frozenset(PolicyOptions.__annotations__)


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


def check_versions(v1: object, v2: object) -> None:
    for name, value in (("v1", v1), ("v2", v2)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")
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


# -- the policy ------------------------------------------------------------------------


class Policy:
    """The policy options (see ``PolicyOptions``), checked once; give one to
    any integration as ``policy=`` to share it between servers.

    ``decide(peer)`` says what to do with a new connection from ``peer``;
    a ``Handshake`` carries it out.  Immutable once made.
    """

    __slots__ = ("networks", "on_untrusted", "decider", "validate", "timeout",
                 "max_header_size", "v1", "v2", "stats", "always", "origin", "trust_given",
                 "hot")

    networks: TrustedNetworks | None
    on_untrusted: Decision
    decider: Callable[[PeerAddress], Decision] | None
    validate: Callable[[ProxyHeader], object] | None
    timeout: float | None
    max_header_size: int
    v1: bool
    v2: bool
    stats: Stats | None
    always: Decision | None
    origin: str
    trust_given: bool
    hot: tuple[Decision | None, bool, bool, int, Callable[[ProxyHeader], object] | None, Stats | None]

    def __init__(self, **given: Unpack[PolicyOptions]) -> None:
        options: dict[str, Any] = _renamed(dict(given), "Policy()")
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise TypeError(
                f"unknown policy option(s): {', '.join(sorted(unknown))} "
                f"(the options are {', '.join(sorted(OPTION_NAMES))})"
            )
        trusted = options.get("trusted")
        on_untrusted = options.get("on_untrusted")
        decide = options.get("decide")
        if decide is not None and (trusted is not None or on_untrusted is not None):
            raise ValueError("give either decide or trusted/on_untrusted, not both")
        untrusted: Decision = REJECT if on_untrusted is None else on_untrusted
        if untrusted not in UNTRUSTED_DECISIONS:
            raise ValueError(
                f"on_untrusted must be 'reject', 'ignore' or 'skip', not {on_untrusted!r}"
            )
        validate = options.get("validate")
        _check_callable("decide", decide)
        _check_callable("validate", validate)
        stats = options.get("stats")
        if stats is not None and not isinstance(stats, Stats):
            raise TypeError(f"stats must be a pyproxyproto.Stats or None, not {stats!r}")
        v1 = options.get("v1", True)
        v2 = options.get("v2", True)
        check_versions(v1, v2)
        self.networks = trusted_networks(trusted)
        self.on_untrusted = untrusted
        self.decider = decide
        self.validate = validate
        self.timeout = check_timeout(options.get("timeout", DEFAULT_TIMEOUT))
        self.max_header_size = check_max_header_size(
            options.get("max_header_size", DEFAULT_MAX_HEADER_SIZE)
        )
        self.v1 = v1
        self.v2 = v2
        self.stats = stats
        # The decision when it does not depend on the peer, so an accept
        # loop can skip decide(): every peer must send a header.
        self.always: Decision | None = (
            REQUIRE if decide is None and self.networks is None else None
        )
        # What a handshake reads on every connection, in one attribute.
        self.hot = (self.always, v1, v2, self.max_header_size, validate, stats)
        # Where the trusted networks were set, for messages, and whether
        # anything was said about whom to trust (trusted=None included).
        self.origin = "trusted="
        self.trust_given = "trusted" in options or decide is not None

    def trusts(self, peer: PeerAddress) -> bool:
        """Whether ``peer`` (a getpeername() value) is in ``trusted``."""
        return self.networks is None or self.networks.trusts(peer)

    def decide(self, peer: PeerAddress) -> Decision:
        """What to do with a new connection from ``peer``."""
        if self.decider is None:
            networks = self.networks
            if networks is None or networks.trusts(peer):
                return REQUIRE
            return self.on_untrusted
        try:
            decision = self.decider(peer)
        except Exception:
            # A failing decide callable fails closed.
            logger.exception("the decide callable failed for %s; rejecting", format_address(peer))
            return REJECT
        if decision not in DECISIONS:
            logger.error(
                "the decide callable returned %r for %s, not one of 'require', 'reject', "
                "'ignore', 'skip'; rejecting", decision, format_address(peer),
            )
            return REJECT
        return decision

    def describe_trust(self) -> str:
        """The trusted networks and where they were set, for messages."""
        if self.decider is not None:
            return "the decide callable"
        if self.networks is None:
            return "every peer"
        return f"{self.networks.describe()}, from {self.origin}"

    def __repr__(self) -> str:
        return (
            f"Policy(trusted={self.networks!r}, on_untrusted={self.on_untrusted!r}, "
            f"decide={self.decider!r}, validate={self.validate!r}, timeout={self.timeout!r}, "
            f"max_header_size={self.max_header_size}, v1={self.v1}, v2={self.v2}, "
            f"stats={self.stats!r})"
        )


def _renamed(options: dict[str, Any], where: str) -> dict[str, Any]:
    """``options`` with the per-peer callable's old name, ``policy``, turned
    into ``decide`` (with a DeprecationWarning)."""
    if "policy" not in options:
        return options
    options = dict(options)
    old = options.pop("policy")
    warnings.warn(
        f"{where}: the per-peer callable is now given as decide=, not policy= "
        "(policy= takes a pyproxyproto.Policy)",
        DeprecationWarning,
        stacklevel=4,
    )
    if old is not None:
        if "decide" in options:
            raise TypeError("give decide= only (policy= is its old name)")
        options["decide"] = old
    return options


def resolve(policy: object, options: PolicyOptions, where: str) -> Policy:
    """The Policy an API was given: ``policy``, or one made from ``options``
    (giving both is a TypeError).  A callable as ``policy`` is the per-peer
    callable under its old name (deprecated: ``decide``)."""
    if policy is not None and not isinstance(policy, Policy):
        if not callable(policy):
            raise TypeError(f"{where}: policy must be a pyproxyproto.Policy or None, not {policy!r}")
        options = _renamed({**options, "policy": policy}, where)  # type: ignore[assignment]
        policy = None
    if policy is None:
        return Policy(**options)
    if options:
        raise TypeError(
            f"{where}: give either policy= or policy options ({', '.join(sorted(options))}), not both"
        )
    return policy


# Where a server's user names the trusted networks: keyword arguments, or the
# environment (servers configured from their command line).
KEYWORDS = "in trusted= (trusted=None to trust every peer and say so)"
ENVIRONMENT = "in PYPROXYPROTO_TRUSTED (* to trust every peer and say so)"
ENDPOINT = ("in the endpoint's trusted= argument or PYPROXYPROTO_TRUSTED (* to trust every "
            "peer and say so)")


def announce(policy: Policy, server: str, *, unix: bool = False, setting: str = KEYWORDS) -> None:
    """Log at start-up what the policy means where it is not obvious: every
    peer trusted by default, no peer trusted at all, every address trusted,
    or a Unix-socket listener none of whose peers can be trusted.
    ``setting`` says where the server's user names the trusted networks."""
    networks = policy.networks
    if policy.decider is not None:
        return
    if networks is None:
        if policy.trust_given:
            logger.info("%s: every peer is trusted to send a PROXY header", server)
        else:
            logger.warning(
                "%s: every peer is trusted to send a PROXY header (no trusted networks were "
                "given): anyone who can connect can claim any client address; name your "
                "balancers' networks %s", server, setting,
            )
        return
    if unix and not networks.unix and policy.on_untrusted == REJECT:
        raise ValueError(
            f"{server} listens on a Unix socket, but Unix-socket peers are not trusted "
            f"(trusted: {policy.describe_trust()}), so every connection would be refused: "
            "add 'unix' to the trusted networks"
        )
    if not networks.networks and not networks.unix:
        logger.warning(
            "%s: the trusted networks are empty: no peer is trusted to send a PROXY "
            "header; every connection is handled as untrusted (on_untrusted=%r)",
            server, policy.on_untrusted,
        )
    elif networks.everything:
        logger.warning(
            "%s: the trusted networks (%s) cover every IP address: any peer can claim "
            "any client address", server, policy.describe_trust(),
        )


__all__ = [
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_TIMEOUT",
    "Decision",
    "PeerAddress",
    "Policy",
    "PolicyOptions",
    "Stats",
    "Trusted",
    "TrustedNetworks",
]
