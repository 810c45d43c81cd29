"""IP address text <-> packed conversions with one behaviour everywhere.

``socket.inet_ntop``/``inet_pton`` wrap the platform's C library, and those
differ at the edges: glibc, for one, writes the IPv4-compatible ::102:304 as
"::1.2.3.4", and the accepted inputs vary too.  ``ipaddress`` changed its
IPv4-mapped output in Python 3.13.  A PROXY protocol header is the same bytes
on every platform and Python, so its addresses should read the same too:
these functions format like Python 3.13's ``ipaddress`` (RFC 5952), as
csrc/pp_inet.c does for the C backend, and accept exactly the RFC 3986
grammar (what glibc's ``inet_pton`` accepts).
"""

from __future__ import annotations

import os
import re
import socket
import struct

__all__ = ["ipv4_pack", "ipv4_text", "ipv6_pack", "ipv6_text"]

_unpack_groups = struct.Struct("!8H").unpack
_V4MAPPED_PREFIX = bytes(10) + b"\xff\xff"
# Zero runs as they appear in ":g:g:...:g:" text, longest first, so the first
# hit is the longest run and str.find gives its first occurrence (RFC 5952
# 4.2.3); a single zero group (k == 1) is never compressed (4.2.2).
_ZERO_RUNS = tuple(":" + "0:" * k for k in range(8, 1, -1))


def ipv4_text(packed: bytes) -> str:
    """Dotted decimal text of a 4-byte address."""
    a, b, c, d = packed
    return f"{a}.{b}.{c}.{d}"


def _ipv6_text_portable(packed: bytes) -> str:
    """RFC 5952 text of a 16-byte address, as Python 3.13's ipaddress prints.

    Only IPv4-mapped addresses (::ffff:0:0/96) get a dotted tail; the
    deprecated IPv4-compatible ones (::/96) are plain hex.
    """
    groups = _unpack_groups(packed)
    if packed[:12] == _V4MAPPED_PREFIX:
        return "::ffff:" + ipv4_text(packed[12:])
    text = ":%x:%x:%x:%x:%x:%x:%x:%x:" % groups
    if ":0:0:" in text:  # one search when nothing can be compressed
        for run in _ZERO_RUNS:
            i = text.find(run)
            if i >= 0:
                return text[1:i] + "::" + text[i + len(run) : -1]
    return text[1:-1]


# ASCII classes spelled out: \d would also match non-ASCII digits in str.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ipv4_match = re.compile(rf"({_OCTET})\.({_OCTET})\.({_OCTET})\.({_OCTET})").fullmatch
# One or more h16 (RFC 3986) joined by single colons.  The full IPv6address
# grammar as one regex costs ~4 ms to compile at import, so ipv6_pack checks
# the group counts it encodes by hand instead.
_h16_list_match = re.compile(r"[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*").fullmatch


def ipv4_pack(text: str | bytes) -> bytes | None:
    """4 bytes for strict dotted decimal text, or None.

    Exactly four decimal octets 0-255 without leading zeros and nothing else.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("latin-1")  # non-ASCII can then never match
    m = _ipv4_match(text)
    if m is None:
        return None
    return bytes(map(int, m.groups()))


def _ipv6_pack_portable(text: str | bytes) -> bytes | None:
    """16 bytes for RFC 3986 IPv6 address text, or None.

    Accepts what glibc's inet_pton(AF_INET6) accepts: 1-4 hex digits per
    group, at most one "::" standing for at least one zero group, an
    optional strict dotted IPv4 tail in place of the last two groups, and no
    zone id.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("latin-1")  # non-ASCII can then never match
    if "." in text:
        # The dotted tail becomes its two hex groups, so the group count
        # below covers it too.
        i = text.rfind(":") + 1
        if not i:
            return None
        v4 = ipv4_pack(text[i:])
        if v4 is None:
            return None
        text = "%s%x:%x" % (text[:i], v4[0] << 8 | v4[1], v4[2] << 8 | v4[3])
    head, sep, tail = text.partition("::")
    if not sep:
        if _h16_list_match(text) is None:
            return None
        groups = text.split(":")
        if len(groups) != 8:
            return None
    else:
        # A second "::" leaves an empty group in tail, which fails the match.
        groups = []
        if head:
            if _h16_list_match(head) is None:
                return None
            groups = head.split(":")
        tail_groups = []
        if tail:
            if _h16_list_match(tail) is None:
                return None
            tail_groups = tail.split(":")
        zeros = 8 - len(groups) - len(tail_groups)
        if zeros < 1:  # "::" must stand for at least one group
            return None
        groups += ["0"] * zeros
        groups += tail_groups
    return struct.pack("!8H", *[int(g, 16) for g in groups])


def _on_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc ")
    except (AttributeError, ValueError, OSError):
        return False


_ZERO12 = bytes(12)

if _on_glibc():
    # glibc is the reference for IPv6 text: its inet_pton accepts exactly the
    # grammar above and its inet_ntop writes RFC 5952 text except inside
    # ::/96 (where it may use a dotted tail).  Both are C and several times
    # faster than the portable code, which every other platform uses.
    _inet_pton = socket.inet_pton
    _inet_ntop = socket.inet_ntop
    _AF_INET6 = socket.AF_INET6

    def ipv6_text(packed: bytes) -> str:
        """RFC 5952 text of a 16-byte address (see _ipv6_text_portable)."""
        if packed[:12] == _ZERO12:
            return _ipv6_text_portable(packed)
        return _inet_ntop(_AF_INET6, packed)

    def ipv6_pack(text: str | bytes) -> bytes | None:
        """16 bytes for IPv6 address text, or None (see _ipv6_pack_portable)."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("latin-1")
        try:
            return _inet_pton(_AF_INET6, text)
        except (OSError, ValueError, UnicodeError):
            return None

else:
    ipv6_text = _ipv6_text_portable
    ipv6_pack = _ipv6_pack_portable
