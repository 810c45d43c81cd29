"""Trusted networks: the ``trusted`` option compiled into sorted integer ranges.

A peer is trusted when its IP address is in one of the networks, or when it
came over a Unix socket and ``"unix"`` is among them (a Unix socket's peers
are whoever its file's permissions let connect).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any, Optional, Union

from ._header import Address

NetworkLike = Union[str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
                    ipaddress.IPv4Address, ipaddress.IPv6Address]
Trusted = Union[NetworkLike, Iterable[NetworkLike], "TrustedNetworks"]
# What getpeername() returns for the families a header can name:
# (host, port[, flowinfo, scope_id]), a Unix socket's path (str, or bytes
# for an abstract name; usually empty for a client), or None when the
# transport does not say.
PeerAddress = Optional[Address]

# The entry of ``trusted`` that trusts every peer of a Unix socket.
UNIX = "unix"

_MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses
_SEEN = 256  # hosts whose answer TrustedNetworks keeps
_SINGLE_NETWORK = (str, int, ipaddress.IPv4Network, ipaddress.IPv6Network,
                   ipaddress.IPv4Address, ipaddress.IPv6Address)


def is_unix_peer(peer: object) -> bool:
    """Whether ``peer`` (a getpeername() value) is a Unix socket's."""
    return isinstance(peer, (str, bytes))


class TrustedNetworks:
    """A set of IP networks, kept as sorted, merged integer ranges, and
    whether Unix-socket peers are trusted (the ``"unix"`` entry).

    Membership costs one ``inet_pton`` and one binary search: no
    ``ipaddress`` object is made per lookup.
    """

    __slots__ = ("_v4", "_v6", "networks", "unix", "_seen")

    def __init__(self, networks: Iterable[NetworkLike]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        parsed = []
        unix = False
        for item in networks:
            if isinstance(item, bool) or not isinstance(item, _SINGLE_NETWORK):
                raise TypeError(
                    f"trusted: {item!r} is not an IP network; give a str such as "
                    f"'10.0.0.0/8' (or {UNIX!r} for Unix-socket peers), an int, or an "
                    "ipaddress object"
                )
            if isinstance(item, str) and item.strip().lower() == UNIX:
                unix = True
                continue
            try:
                net = ipaddress.ip_network(item.strip() if isinstance(item, str) else item)
            except ValueError as exc:
                raise ValueError(f"trusted: {item!r} is not an IP network ({exc})") from None
            parsed.append(net)
            ranges = v4 if net.version == 4 else v6
            ranges.append((int(net.network_address), int(net.broadcast_address)))
        self.networks = tuple(parsed)
        self.unix = unix
        self._v4 = _merged(v4)
        self._v6 = _merged(v6)
        # Answers for the hosts seen last: behind a balancer, the peers are a
        # handful of balancer addresses, asked about on every connection.
        self._seen: dict[str, bool] = {}

    def __contains__(self, host: object) -> bool:
        """Whether ``host``, a textual IP address as getpeername() gives it,
        is in one of the networks.  Anything else (a Unix socket's path,
        None) is not: see ``trusts`` for peers."""
        if not isinstance(host, str):
            return False
        seen = self._seen
        answer = seen.get(host)
        if answer is None:
            answer = self._lookup(host)
            if len(seen) >= _SEEN:
                seen.clear()  # a scan of many addresses: start over
            seen[host] = answer
        return answer

    def _lookup(self, host: str) -> bool:
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

    def trusts(self, peer: PeerAddress) -> bool:
        """Whether the peer ``peer`` (a getpeername() value) is trusted."""
        if isinstance(peer, tuple):
            return peer[0] in self
        return self.unix and is_unix_peer(peer)

    @property
    def everything(self) -> bool:
        """Whether every IPv4 and every IPv6 address is in the networks."""
        return self._v4 == ([0], [2**32 - 1]) and self._v6 == ([0], [2**128 - 1])

    def describe(self) -> str:
        """The entries as a user wrote them, for messages."""
        names = [str(net) for net in self.networks] + ([UNIX] if self.unix else [])
        return ", ".join(names) if names else "none"

    def __repr__(self) -> str:
        names = [str(net) for net in self.networks] + ([UNIX] if self.unix else [])
        return f"TrustedNetworks({names!r})"


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
    if isinstance(trusted, str) and not trusted.strip():
        raise ValueError("trusted: '' is empty; give networks such as '10.0.0.0/8', or None to trust every peer")
    try:
        return _compiled(items)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return TrustedNetworks(items)  # compile uncached, to get the clear error
