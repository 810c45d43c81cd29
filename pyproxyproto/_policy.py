"""What the asyncio and socket integrations share: which peers may send a
header (trusted networks), the options every integration takes, and the
single log record written for each connection they give up on.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import socket
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any, Union

from ._constants import V1_MAX_LENGTH
from ._errors import ConnectionClosed

logger = logging.getLogger("pyproxyproto")

NetworkLike = Union[str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
                    ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses

# The default header timeout, in seconds, of every integration.
DEFAULT_TIMEOUT = 5.0

# How many bytes to look at first when reading a header off a socket: a whole
# v1 line fits, and so does a v2 header's fixed part, whose length field then
# says exactly how much more to read.
FIRST_PEEK = V1_MAX_LENGTH


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
            try:
                net = ipaddress.ip_network(item)
            except (TypeError, ValueError) as exc:
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


def trusted_networks(trusted: Any) -> TrustedNetworks | None:
    """Compile the ``trusted`` option; None trusts every peer.

    Compilations are cached by value, so an API that takes ``trusted`` on
    every call (``sockets.accept``) builds its ranges only once.
    """
    if trusted is None or isinstance(trusted, TrustedNetworks):
        return trusted
    single = (str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
              ipaddress.IPv4Address, ipaddress.IPv6Address)
    items = (trusted,) if isinstance(trusted, single) else tuple(trusted)
    try:
        return _compiled(items)
    except TypeError:  # an unhashable item: compile uncached, to get the clear error
        return TrustedNetworks(items)


def check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


def check_versions(v1: bool, v2: bool) -> None:
    if not (v1 or v2):
        raise ValueError("at least one of v1 and v2 must be enabled")


class Policy:
    """The options every integration takes, checked once."""

    __slots__ = ("networks", "reject", "timeout", "v1", "v2")

    def __init__(
        self,
        *,
        trusted: Any = None,
        on_untrusted: str = "reject",
        timeout: float | None = DEFAULT_TIMEOUT,
        v1: bool = True,
        v2: bool = True,
    ) -> None:
        if on_untrusted not in ("reject", "ignore"):
            raise ValueError(f"on_untrusted must be 'reject' or 'ignore', not {on_untrusted!r}")
        check_timeout(timeout)
        check_versions(v1, v2)
        self.networks = trusted_networks(trusted)
        self.reject = on_untrusted == "reject"
        self.timeout = timeout
        self.v1 = v1
        self.v2 = v2

    def trusts(self, peer: Any) -> bool:
        """Whether headers from ``peer`` (a getpeername() value) are believed."""
        if self.networks is None:
            return True
        host = peer[0] if isinstance(peer, tuple) else peer
        return host in self.networks


def closed_before_header(received: int, needed: int) -> ConnectionClosed:
    return ConnectionClosed(received, needed)


def timeout_message(timeout: float | None, received: int) -> str:
    return f"no complete PROXY header within {timeout:g} s ({received} byte(s) received)"


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if not address:
        return "an unnamed socket"
    return str(address)


def log_rejection(what: str, peer: Any, reason: str, level: int = logging.WARNING) -> None:
    """The one log record for a connection (or datagram) given up on."""
    logger.log(level, "%s from %s: %s", what, format_address(peer), reason)
