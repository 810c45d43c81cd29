"""The pure-Python backend.

Valid headers take a fast path (one regex for a v1 line, struct for v2).
Everything else - a prefix, an error - goes through ``_scan_v1`` and the v2
walk, which decide byte by byte, exactly as the Cython backend does, so
both report the same exception, offset and ``needed``.
"""

from __future__ import annotations

import os
import re
import socket
from struct import Struct
from typing import TYPE_CHECKING, Any

from . import _constants as C
from . import _header as H
from ._header import Address, Command, SSLInfo, TLVs

if TYPE_CHECKING:
    from ._header import Buffer
from ._crc32c import crc32c as _crc32c
from ._errors import ChecksumMismatch, Incomplete, InvalidHeader
from ._inet import ipv4_text, ipv6_pack, ipv6_text

__all__ = ["ProxyHeader", "SSLInfo", "parse", "crc32c"]

crc32c = _crc32c

_FAMILIES = H.FAMILIES
_PROTOCOLS = H.PROTOCOLS
_COMMANDS = H.COMMANDS
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_SOCK_STREAM = socket.SOCK_STREAM
_EMPTY: tuple[tuple[int, bytes], ...] = ()

_SIG = C.V2_SIGNATURE
_V2_FIXED = Struct("!12sBBH")
_V2_INET = Struct("!4s4sHH")
_V2_INET6 = Struct("!16s16sHH")
_V2_PROXY_FAMILIES = C.V2_PROXY_FAMILIES
_BLOCKS = C.ADDRESS_BLOCK_LENGTHS
_V1_MAX = C.V1_MAX_LENGTH


# Each view's place in the views tuple.
_VIEW = H.VIEW_INDEX

class ProxyHeader:
    """A parsed PROXY header: immutable, equal by value, safe to share
    between threads, picklable.  Made by ``parse()``, never directly."""

    __slots__ = (
        "_version",
        "_command",
        "_family",
        "_protocol",
        "_source",
        "_destination",
        "_length",
        "_tlvs",
        "_views",
    )

    _version: int
    _command: int
    _family: socket.AddressFamily
    _protocol: int
    _source: Address | None
    _destination: Address | None
    _length: int
    _tlvs: TLVs
    # Every typed view, computed on first read and published with one store
    # (a racing reader computes an equal tuple; either may win).
    _views: tuple[Any, ...] | None

    def __init__(self) -> None:
        raise TypeError("ProxyHeader is not created directly: use pyproxyproto.parse()")

    @property
    def version(self) -> int:
        """1 or 2."""
        return self._version

    @property
    def command(self) -> Command:
        """Command.PROXY, or Command.LOCAL (a v2 health check)."""
        return _COMMANDS[self._command]

    @property
    def family(self) -> socket.AddressFamily:
        """AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC."""
        return self._family

    @property
    def protocol(self) -> int:
        """socket.SOCK_STREAM, socket.SOCK_DGRAM, or 0 when unspecified."""
        return self._protocol

    @property
    def source(self) -> Address | None:
        """The client's address; None for LOCAL, UNSPEC and v1 UNKNOWN."""
        return self._source

    @property
    def destination(self) -> Address | None:
        """The address the client connected to; None when source is."""
        return self._destination

    @property
    def length(self) -> int:
        """Bytes the header occupies at the start of the data."""
        return self._length

    @property
    def tlvs(self) -> TLVs:
        """Every TLV, ``(type, value)`` in wire order (v2 only; none from a
        LOCAL or AF_UNSPEC body that is not a TLV area, which is discarded)."""
        return self._tlvs

    def _view(self, index: int) -> Any:
        views = self._views
        if views is None:
            views = self._views = H.views(self._tlvs)
        return views[index]

    @property
    def alpn(self) -> bytes | None:
        """The first PP2_TYPE_ALPN value, e.g. ``b"h2"``."""
        value: bytes | None = self._view(_VIEW["alpn"])
        return value

    @property
    def authority(self) -> str | None:
        """The first PP2_TYPE_AUTHORITY (the TLS SNI), as text."""
        value: str | None = self._view(_VIEW["authority"])
        return value

    @property
    def unique_id(self) -> bytes | None:
        """The first PP2_TYPE_UNIQUE_ID value."""
        value: bytes | None = self._view(_VIEW["unique_id"])
        return value

    @property
    def netns(self) -> str | None:
        """The first PP2_TYPE_NETNS (network namespace name)."""
        value: str | None = self._view(_VIEW["netns"])
        return value

    @property
    def crc32c(self) -> int | None:
        """The first PP2_TYPE_CRC32C value (verified by parse() by default)."""
        value: int | None = self._view(_VIEW["crc32c"])
        return value

    @property
    def ssl(self) -> SSLInfo | None:
        """The first PP2_TYPE_SSL TLV, decoded; None when absent or malformed."""
        value: SSLInfo | None = self._view(_VIEW["ssl"])
        return value

    @property
    def aws_vpce_id(self) -> str | None:
        """AWS PrivateLink: the VPC endpoint id (TLV 0xEA, subtype 0x01)."""
        value: str | None = self._view(_VIEW["aws_vpce_id"])
        return value

    @property
    def azure_link_id(self) -> int | None:
        """Azure Private Link: the LINKID (TLV 0xEE, subtype 0x01)."""
        value: int | None = self._view(_VIEW["azure_link_id"])
        return value

    @property
    def gcp_psc_connection_id(self) -> int | None:
        """Google Cloud Private Service Connect: the connection id (TLV 0xE0)."""
        value: int | None = self._view(_VIEW["gcp_psc_connection_id"])
        return value

    def to_dict(self) -> dict[str, Any]:
        """Every field and view as JSON-ready values."""
        return H.header_to_dict(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return H.key(self) == H.key(other)

    def __hash__(self) -> int:
        return hash(H.key(self))

    def __repr__(self) -> str:
        return H.header_repr(self)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (H.restore, ("python", *H.key(self)))

    def __copy__(self) -> ProxyHeader:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ProxyHeader:
        return self


_new_header = object.__new__


def _header(
    version: int,
    command: int,
    family: socket.AddressFamily,
    protocol: int,
    source: Address | None,
    destination: Address | None,
    length: int,
    tlvs: TLVs,
) -> ProxyHeader:
    h: ProxyHeader = _new_header(ProxyHeader)
    h._version = version
    h._command = command
    h._family = family
    h._protocol = protocol
    h._source = source
    h._destination = destination
    h._length = length
    h._tlvs = tlvs
    h._views = None
    return h


def _restore(
    version: int,
    command: int,
    family: int,
    protocol: int,
    source: Address | None,
    destination: Address | None,
    length: int,
    tlvs: TLVs,
) -> ProxyHeader:
    return _header(
        version,
        command,
        _FAMILIES[H.FAMILY_INDEX[family]],
        _PROTOCOLS[H.PROTOCOL_INDEX[protocol]],
        source,
        destination,
        length,
        tlvs,
    )


def _incomplete(have: int, needed: int) -> Incomplete:
    return Incomplete(C.MSG_INCOMPLETE.format(have=have, needed=needed), needed)


def _invalid(template: str, offset: int, **fields: Any) -> InvalidHeader:
    return InvalidHeader(template.format(offset=offset, **fields), offset)


# -- entry point -----------------------------------------------------------------


def parse(
    data: Buffer, *, v1: bool = True, v2: bool = True, verify_checksum: bool = True
) -> ProxyHeader:
    """Parse the PROXY header at the start of ``data``.

    ``data`` is any C-contiguous bytes-like object; it is never modified
    and nothing after the header is read.  Returns the header (its
    ``length`` says where the payload starts).  Raises ``Incomplete`` when
    more bytes are needed (``needed`` says how many in total),
    ``InvalidHeader`` (a ValueError) when no more bytes can make it valid,
    ``ChecksumMismatch`` for a wrong CRC32C (unless ``verify_checksum`` is
    False), and TypeError for a non-buffer (``str`` included).  ``v1`` and
    ``v2`` select the versions accepted.
    """
    if not (v1 or v2):
        raise ValueError(C.MSG_NO_VERSION)
    if type(data) is not bytes:
        data = _header_bytes(data)
    n = len(data)
    if n == 0:
        needed = 1 if v1 else C.V2_HEADER_LENGTH
        raise _incomplete(0, needed)
    first = data[0]
    if first == 0x0D:
        if not v2:
            raise InvalidHeader(C.MSG_V2_DISABLED, 0)
        return _parse_v2(data, n, verify_checksum)
    if first == 0x50:
        if not v1:
            raise InvalidHeader(C.MSG_V1_DISABLED, 0)
        return _parse_v1(data, n)
    raise InvalidHeader(C.MSG_NOT_PROXY.format(byte=first), 0)


def _header_bytes(data: Buffer) -> bytes:
    """Copy out of any C-contiguous buffer the bytes a header can occupy.

    Copying (at most the header) means no view of the caller's buffer
    outlives this call: a bytearray stays resizable even while an Incomplete
    traceback is alive.
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(C.MSG_NOT_BUFFER.format(type=type(data).__name__)) from None
    with view:
        if not view.c_contiguous:
            raise TypeError(C.MSG_NOT_BUFFER.format(type=type(data).__name__))
        if view.format != "B" or view.ndim != 1:
            with view.cast("B") as flat:
                return _copy_header(flat)
        return _copy_header(view)


def _copy_header(view: memoryview) -> bytes:
    n = len(view)
    if n and view[0] == 0x0D and n >= C.V2_HEADER_LENGTH:
        limit = C.V2_HEADER_LENGTH + ((view[14] << 8) | view[15])
    else:
        limit = _V1_MAX if n and view[0] == 0x50 else C.V2_HEADER_LENGTH
    return view[:limit].tobytes()


# -- version 2 ------------------------------------------------------------------------


def _parse_v2(data: bytes, n: int, verify_checksum: bool) -> ProxyHeader:
    if n < C.V2_HEADER_LENGTH:
        _check_v2_prefix(data, n)
        raise _incomplete(n, C.V2_HEADER_LENGTH)
    signature, ver_cmd, fam, length = _V2_FIXED.unpack_from(data)
    if signature != _SIG:
        _check_v2_prefix(data, n)
    command = ver_cmd & 0x0F
    if ver_cmd >> 4 != 2 or command > 1:
        _check_v2_prefix(data, n)
    total = C.V2_HEADER_LENGTH + length
    if command:
        if fam not in _V2_PROXY_FAMILIES:
            _check_v2_prefix(data, n)
        block = _BLOCKS[fam >> 4]
        if length < block:
            _check_v2_prefix(data, n)  # raises, as in the Cython twin
    else:
        # LOCAL: the advertised family's address block is skipped when it
        # fits; TLVs, if any, follow it (or the fixed part when it does not).
        block = _BLOCKS.get(fam >> 4, 0)
        if block > length:
            block = 0

    tlv_start = C.V2_HEADER_LENGTH + block
    tlvs = _EMPTY
    crc_offset = -1
    # PROXY with addresses: the rest must be TLVs, refused as soon as a
    # byte shows it is not.  LOCAL and PROXY over AF_UNSPEC: a body the
    # receiver must ignore, read once it is all there; its TLVs are kept
    # when it is a valid TLV area, and it is discarded when not.
    if tlv_start < total and (n >= total or (command and block)):
        walked = _walk_tlvs(data, n, tlv_start, total, command != 0 and block != 0)
        if walked is not None:
            tlvs, crc_offset = walked
    if n < total:
        raise _incomplete(n, total)
    if crc_offset >= 0 and verify_checksum:
        _verify_crc(data, crc_offset, total)

    family = _FAMILIES[fam >> 4] if fam >> 4 < 4 else _FAMILIES[0]
    protocol = _PROTOCOLS[fam & 0x0F] if fam & 0x0F < 3 else 0
    source = destination = None
    if command and fam >> 4:
        source, destination = _v2_addresses(data, fam >> 4)
    return _header(2, command, family, protocol, source, destination, total, tlvs)


def _check_v2_prefix(data: bytes, n: int) -> None:
    """Raise for the first byte of a v2 fixed part that no header can have
    (the length field counts as one: a PROXY address block must fit)."""
    for i in range(min(n, len(_SIG))):
        if data[i] != _SIG[i]:
            raise _invalid(C.MSG_V2_SIGNATURE, i)
    if n > 12:
        ver_cmd = data[12]
        if ver_cmd >> 4 != 2:
            raise InvalidHeader(C.MSG_V2_VERSION.format(version=ver_cmd >> 4), 12)
        if ver_cmd & 0x0F > 1:
            raise InvalidHeader(C.MSG_V2_COMMAND.format(command=ver_cmd & 0x0F), 12)
        if n > 13 and ver_cmd & 0x0F and data[13] not in _V2_PROXY_FAMILIES:
            raise InvalidHeader(C.MSG_V2_FAMILY.format(family=data[13]), 13)
        if n > 15 and ver_cmd & 0x0F:
            length = (data[14] << 8) | data[15]
            block = _BLOCKS[data[13] >> 4]
            if length < block:
                raise InvalidHeader(
                    C.MSG_V2_ADDRESS_LENGTH.format(length=length, needed=block), 14
                )


def _walk_tlvs(
    data: bytes, n: int, off: int, total: int, strict: bool
) -> tuple[tuple[tuple[int, bytes], ...], int] | None:
    """Check the TLVs of data[off:total] present so far (data holds n
    bytes); return them and the offset of the first CRC32C TLV (-1 if
    none).  As soon as they cannot form a valid TLV area: InvalidHeader
    when strict, None when not."""
    tlvs = []
    crc_offset = -1
    while off < total:
        if total - off < C.TLV_HEADER_LENGTH:
            if not strict:
                return None
            raise InvalidHeader(
                C.MSG_V2_TLV_TRUNCATED.format(count=total - off, offset=off), off
            )
        if off + C.TLV_HEADER_LENGTH > n:
            break
        tlv_type = data[off]
        tlv_length = (data[off + 1] << 8) | data[off + 2]
        end = off + C.TLV_HEADER_LENGTH + tlv_length
        if end > total:
            if not strict:
                return None
            raise InvalidHeader(C.MSG_V2_TLV_OVERRUN.format(type=tlv_type, offset=off), off)
        if tlv_type == C.PP2_TYPE_CRC32C:
            if tlv_length != C.CRC32C_LENGTH:
                if not strict:
                    return None
                raise _tlv_length_error(tlv_type, off, tlv_length)
            if crc_offset < 0:
                crc_offset = off
        elif tlv_type == C.PP2_TYPE_UNIQUE_ID and tlv_length > C.UNIQUE_ID_MAX_LENGTH:
            if not strict:
                return None
            raise _tlv_length_error(tlv_type, off, tlv_length)
        tlvs.append((tlv_type, data[off + C.TLV_HEADER_LENGTH : end]))
        off = end
    return tuple(tlvs), crc_offset


def _tlv_length_error(tlv_type: int, off: int, length: int) -> InvalidHeader:
    return InvalidHeader(
        C.MSG_V2_TLV_LENGTH.format(type=tlv_type, offset=off, length=length), off
    )


def _verify_crc(data: bytes, off: int, total: int) -> None:
    value = off + C.TLV_HEADER_LENGTH
    expected = int.from_bytes(data[value : value + 4], "big")
    computed = _crc32c(b"".join((data[:value], b"\0\0\0\0", data[value + 4 : total])))
    if computed != expected:
        raise ChecksumMismatch(
            C.MSG_V2_CHECKSUM.format(offset=off, expected=expected, computed=computed),
            off,
            expected,
            computed,
        )


def _v2_addresses(data: bytes, family: int) -> tuple[Address, Address]:
    if family == C.AF_INET_NIBBLE:
        src, dst, sport, dport = _V2_INET.unpack_from(data, 16)
        return (ipv4_text(src), sport), (ipv4_text(dst), dport)
    if family == C.AF_INET6_NIBBLE:
        src, dst, sport, dport = _V2_INET6.unpack_from(data, 16)
        return (ipv6_text(src), sport, 0, 0), (ipv6_text(dst), dport, 0, 0)
    start = C.V2_HEADER_LENGTH
    mid = start + C.UNIX_PATH_LENGTH
    return _unix_path(data[start:mid]), _unix_path(data[mid : mid + C.UNIX_PATH_LENGTH])


def _unix_path(raw: bytes) -> str | bytes:
    if raw[0] == 0:
        # Abstract namespace (Linux): keep bytes, as getpeername() does;
        # an all-zero block is an unnamed socket.
        name = raw.rstrip(b"\0")
        return name if name else ""
    return os.fsdecode(raw.split(b"\0", 1)[0])


# -- version 1 ------------------------------------------------------------------------

_DEC_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = _DEC_OCTET + rb"(?:\." + _DEC_OCTET + rb"){3}"
_IPV6_CHARS = rb"[0-9A-Fa-f:.]{2,45}"
_PORT = rb"(0|[1-9][0-9]{0,4})"
_V1_LINE = re.compile(
    rb"PROXY (?:TCP4 (" + _IPV4 + rb") (" + _IPV4 + rb") " + _PORT + rb" " + _PORT
    + rb"|TCP6 (" + _IPV6_CHARS + rb") (" + _IPV6_CHARS + rb") " + _PORT + rb" " + _PORT
    + rb"|UNKNOWN(?: [^\r\n]*)?)\r\n"
)


def _parse_v1(data: bytes, n: int) -> ProxyHeader:
    m = _V1_LINE.match(data, 0, _V1_MAX)
    if m is not None:
        h = _v1_from_match(m)
        if h is not None:
            return h
    return _scan_v1(data, n)


def _v1_from_match(m: re.Match[bytes]) -> ProxyHeader | None:
    length = m.end()
    if m.group(1) is not None:
        sport = int(m.group(3))
        dport = int(m.group(4))
        if sport > 0xFFFF or dport > 0xFFFF:
            return None
        return _header(
            1, 1, _AF_INET, _SOCK_STREAM,
            (m.group(1).decode("ascii"), sport),
            (m.group(2).decode("ascii"), dport),
            length, _EMPTY,
        )
    if m.group(5) is not None:
        src = ipv6_pack(m.group(5))
        dst = ipv6_pack(m.group(6))
        sport = int(m.group(7))
        dport = int(m.group(8))
        if src is None or dst is None or sport > 0xFFFF or dport > 0xFFFF:
            return None
        return _header(
            1, 1, _AF_INET6, _SOCK_STREAM,
            (ipv6_text(src), sport, 0, 0),
            (ipv6_text(dst), dport, 0, 0),
            length, _EMPTY,
        )
    return _header(1, 1, _FAMILIES[0], 0, None, None, length, _EMPTY)


# Field states of the v1 scanner.
_KEYWORD, _SRC, _DST, _SPORT, _DPORT, _LF, _TAIL = range(7)
_MIN_ADDRESS = {4: C.V1_MIN_IPV4_TEXT, 6: C.V1_MIN_IPV6_TEXT}
_AFTER_DST = C.V1_MIN_AFTER_DESTINATION
# Below this offset no state can need more than the 107-byte limit allows,
# so the length check is skipped.
_CHECK_LENGTH_FROM = C.V1_CHECK_LENGTH_FROM
_T = C.V1_TCP4[0]
_U = C.V1_UNKNOWN[0]
_4 = C.V1_TCP4[3]
_6 = C.V1_TCP6[3]
_HEX = frozenset(b"0123456789abcdefABCDEF")


class _Address:
    """Incremental validator of one v1 address, fed a byte at a time.

    IPv4: four decimal octets, no leading zeros.  IPv6: what glibc's
    inet_pton accepts.  ``feed`` returns False as soon as no continuation
    can be valid, so errors are reported at the byte that causes them.
    """

    __slots__ = ("v6", "lead", "groups", "dc", "xd", "single", "tokdec", "v4", "octets", "digit", "cur")

    def __init__(self, v6: bool) -> None:
        self.v6 = v6
        self.lead = 0  # v6: 0 nothing yet, 1 a lone leading ':', 2 inside
        self.groups = 0  # v6: 16-bit groups completed
        self.dc = False  # v6: '::' seen
        self.xd = 0  # v6: hex digits in the current group
        self.single = False  # v6: last byte was a ':' that ended a group
        self.tokdec = 0  # v6: current group as a decimal octet, -1 if it cannot be one
        self.v4 = not v6  # dotted-quad part active
        self.octets = 0
        self.digit = False  # a digit seen in the current octet
        self.cur = 0

    def feed(self, c: int) -> bool:
        if self.v4:
            return self._feed_v4(c)
        if self.lead == 0:
            self.lead = 2
            if c == 0x3A:
                self.lead = 1
                return True
        elif self.lead == 1:
            if c != 0x3A:
                return False
            self.lead = 2
        if c in _HEX:
            if self.xd == 4:
                return False
            self.xd += 1
            self.single = False
            if 0x30 <= c <= 0x39 and self.tokdec >= 0:
                if self.xd > 1 and self.tokdec == 0:
                    self.tokdec = -1
                else:
                    self.tokdec = self.tokdec * 10 + c - 0x30
                    if self.tokdec > 255:
                        self.tokdec = -1
            elif not 0x30 <= c <= 0x39:
                self.tokdec = -1
            # '::' must stand for at least one group.
            if self.xd == 1 and self.groups + 1 >= (8 if self.dc else 9):
                return False
            return True
        if c == 0x3A:
            if self.xd == 0:
                if self.dc:
                    return False
                self.dc = True
                self.single = False
                return True
            self.groups += 1
            self.xd = 0
            self.single = True
            self.tokdec = 0
            return self.groups < (7 if self.dc else 8)
        if c == 0x2E:
            if self.xd == 0 or self.tokdec < 0:
                return False
            if self.groups > 5 if self.dc else self.groups != 6:
                return False
            self.v4 = True
            self.octets = 1
            self.digit = False
            self.cur = 0
            return True
        return False

    def _feed_v4(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            if self.digit and self.cur == 0:
                return False
            self.cur = self.cur * 10 + c - 0x30
            if self.cur > 255:
                return False
            if not self.digit:
                self.octets += 1
                if self.octets > 4:
                    return False
                self.digit = True
            return True
        if c == 0x2E:
            if not self.digit or self.octets == 4:
                return False
            self.digit = False
            self.cur = 0
            return True
        return False

    def complete(self) -> bool:
        if self.v4:
            return self.octets == 4 and self.digit
        if self.lead < 2 or (self.xd == 0 and self.single):
            return False
        groups = self.groups + (1 if self.xd else 0)
        return groups < 8 if self.dc else groups == 8

    def need(self) -> int:
        """Bytes still needed, at the least, to make the address valid."""
        if self.v4:
            left = 2 * (4 - self.octets)
            return left if self.digit else left - 1
        if self.lead < 2:
            return 2 - self.lead
        if self.xd:
            return 0 if (self.dc or self.groups == 7) else 2
        return 1 if self.single else 0


def _scan_v1(data: bytes, n: int) -> ProxyHeader:
    """Byte-by-byte v1 parser: the reference for errors, offsets and prefixes."""
    limit = min(n, _V1_MAX)
    prefix = C.V1_PREFIX
    state = _KEYWORD
    v6 = False
    addr: _Address | None = None
    port_digits = 0
    port = 0
    ports = [0, 0]
    spans = [0, 0, 0, 0]
    for i in range(limit):
        c = data[i]
        if state == _KEYWORD:
            if i < 6:
                if c != prefix[i]:
                    raise _invalid(C.MSG_V1_PREFIX, i)
                continue
            if i == 6:
                if c != _T and c != _U:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if data[6] == _T:
                if i == 9:
                    ok = c == _4 or c == _6
                    v6 = c == _6
                else:
                    ok = c == C.V1_TCP4[i - 6]
                if not ok:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                if i == 10:
                    state = _SRC
                    addr = _Address(v6)
                    spans[0] = i + 1
                continue
            if i < 13:
                if c != C.V1_UNKNOWN[i - 6]:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if c == 0x20:
                state = _TAIL
            elif c == 0x0D:
                state = _LF
            else:
                raise _invalid(C.MSG_V1_PROTOCOL, i)
        elif state == _SRC or state == _DST:
            assert addr is not None
            if c == 0x20:
                if not addr.complete():
                    raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
                if state == _SRC:
                    spans[1] = i
                    spans[2] = i + 1
                    addr = _Address(v6)
                    state = _DST
                else:
                    spans[3] = i
                    state = _SPORT
                    port_digits = port = 0
            elif not addr.feed(c):
                raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
        elif state == _SPORT or state == _DPORT:
            if c == (0x20 if state == _SPORT else 0x0D):
                if port_digits == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                ports[state - _SPORT] = port
                state += 1
                port_digits = port = 0
            elif 0x30 <= c <= 0x39:
                if port_digits and port == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                port = port * 10 + c - 0x30
                port_digits += 1
                if port > 0xFFFF:
                    raise _invalid(C.MSG_V1_PORT, i)
            else:
                raise _invalid(C.MSG_V1_PORT, i)
        elif state == _LF:
            if c != 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
            return _v1_result(data, i + 1, v6, spans, ports)
        else:  # _TAIL of "PROXY UNKNOWN ..."
            if c == 0x0D:
                state = _LF
            elif c == 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
        if i >= _CHECK_LENGTH_FROM and i + 1 + _v1_need(state, addr, v6, port_digits) > _V1_MAX:
            raise _invalid(C.MSG_V1_TOO_LONG, i)
    raise _incomplete(n, n + 1)


def _v1_need(state: int, addr: _Address | None, v6: bool, port_digits: int) -> int:
    """Bytes still needed, at the least, to finish the line from ``state``."""
    if state == _SRC:
        assert addr is not None
        return addr.need() + 1 + _MIN_ADDRESS[6 if v6 else 4] + _AFTER_DST
    if state == _DST:
        assert addr is not None
        return addr.need() + _AFTER_DST
    if state == _SPORT:
        return (0 if port_digits else 1) + C.V1_MIN_AFTER_SOURCE_PORT
    if state == _DPORT:
        return (0 if port_digits else 1) + C.V1_MIN_AFTER_DESTINATION_PORT
    if state == _LF:
        return 1
    return 2  # _TAIL: at least CRLF


def _v1_result(data: bytes, length: int, v6: bool, spans: list[int], ports: list[int]) -> ProxyHeader:
    if data[6] == _U:  # UNKNOWN: addresses, if any, are ignored
        return _header(1, 1, _FAMILIES[0], 0, None, None, length, _EMPTY)
    src = data[spans[0] : spans[1]]
    dst = data[spans[2] : spans[3]]
    if v6:
        # The scanner validated both: they pack.
        src6, dst6 = ipv6_pack(src), ipv6_pack(dst)
        assert src6 is not None and dst6 is not None
        source = (ipv6_text(src6), ports[0], 0, 0)
        destination = (ipv6_text(dst6), ports[1], 0, 0)
        return _header(1, 1, _AF_INET6, _SOCK_STREAM, source, destination, length, _EMPTY)
    return _header(
        1, 1, _AF_INET, _SOCK_STREAM,
        (src.decode("ascii"), ports[0]), (dst.decode("ascii"), ports[1]),
        length, _EMPTY,
    )
