"""Encode PROXY headers (both versions): for proxies, health checks and tests.

One implementation serves both backends; only the CRC32C routine comes
from the active backend.  Every header it returns parses back to the same
fields, so it refuses anything the parser would reject.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

from . import _constants as C
from ._backend import impl
from ._errors import ProxyProtocolError
from ._header import Address, Command
from ._inet import ipv4_pack, ipv4_text, ipv6_pack, ipv6_text

_PROTOCOL_NIBBLES: dict[int, int] = {
    socket.SOCK_STREAM: C.PROTO_STREAM_NIBBLE,
    socket.SOCK_DGRAM: C.PROTO_DGRAM_NIBBLE,
}
_MAX_TLV_LENGTH = {C.PP2_TYPE_UNIQUE_ID: C.UNIQUE_ID_MAX_LENGTH}


def build(
    source: Address | None = None,
    destination: Address | None = None,
    *,
    version: int = 2,
    command: int | None = None,
    protocol: int = socket.SOCK_STREAM,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """Return a PROXY header for the given addresses.

    The family is inferred from the addresses: ``(host, port)`` or
    ``(host, port, 0, 0)`` tuples for IPv4/IPv6 (a header has no room for
    an IPv6 flowinfo or scope id), ``str`` or ``bytes`` paths for AF_UNIX
    (a leading NUL byte: abstract namespace).  ``command`` defaults to
    PROXY with addresses and LOCAL without them, so ``build()`` is a v2
    health check and ``build(version=1)`` is ``PROXY UNKNOWN``.

    Arguments of the wrong type raise TypeError; values that cannot be
    encoded (or would not parse back) raise ValueError.
    """
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be an int, not {type(version).__name__}")
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, not {version!r}")
    if command is None:
        command = Command.LOCAL if source is None and version == 2 else Command.PROXY
    if isinstance(command, bool) or not isinstance(command, int):
        raise TypeError(f"command must be a Command, not {type(command).__name__}")
    if command not in (Command.LOCAL, Command.PROXY):
        raise ValueError(f"command must be Command.LOCAL or Command.PROXY, not {command!r}")
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination, or neither")
    tlv_list = [_checked_tlv(item) for item in tlvs]
    if source is None or destination is None:
        family, src, dst = 0, b"", b""
    else:
        family, src, dst = _encode_pair(source, destination)
    if version == 1:
        return _build_v1(family, source, destination, command, protocol, tlv_list, crc32c)
    return _build_v2(family, src, dst, command, protocol, tlv_list, crc32c)


def one_header(header: object) -> bytes:
    """The bytes of exactly one complete header, for the senders
    (``aio.open_connection``, ``sockets.create_connection``), or a clear
    error before anything is sent."""
    if not isinstance(header, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"header must be bytes from pyproxyproto.build(), not {type(header).__name__}"
        )
    data = bytes(header)
    try:
        parsed = impl.parse(data)
    except ProxyProtocolError as exc:
        raise ValueError(f"header is not one complete PROXY header: {exc}") from None
    if parsed.length != len(data):
        raise ValueError(
            f"header has {len(data) - parsed.length} byte(s) after the PROXY header; "
            f"send data after connecting"
        )
    return data


def _checked_tlv(item: Any) -> tuple[int, bytes]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"a TLV is a (type, value) tuple, not {item!r}")
    tlv_type, value = item
    if isinstance(tlv_type, bool) or not isinstance(tlv_type, int):
        raise TypeError(f"TLV type must be an int, not {type(tlv_type).__name__}")
    if not 0 <= tlv_type <= 0xFF:
        raise ValueError(f"TLV type must be an int from 0 to 255, not {tlv_type!r}")
    if isinstance(value, str):
        raise TypeError("TLV value must be bytes-like, not str (encode it first)")
    try:
        value = memoryview(value).tobytes()
    except TypeError:
        raise TypeError(f"TLV value must be bytes-like, not {type(value).__name__}") from None
    limit = _MAX_TLV_LENGTH.get(tlv_type, C.TLV_MAX_VALUE_LENGTH)
    if len(value) > limit:
        raise ValueError(f"TLV 0x{tlv_type:02x} value is {len(value)} bytes; the limit is {limit}")
    if tlv_type == C.PP2_TYPE_CRC32C and len(value) != C.CRC32C_LENGTH:
        raise ValueError("a CRC32C TLV value is exactly 4 bytes")
    return tlv_type, value


def _encode_pair(source: Address, destination: Address) -> tuple[int, bytes, bytes]:
    fam_src, src = _encode_address(source, "source")
    fam_dst, dst = _encode_address(destination, "destination")
    if fam_src != fam_dst:
        raise ValueError("source and destination are of different address families")
    return fam_src, src, dst


def _encode_address(address: Address, what: str) -> tuple[int, bytes]:
    """Return (family nibble, address bytes, port included for IP)."""
    if isinstance(address, (str, bytes)):
        path = os.fsencode(address)
        if len(path) > C.UNIX_PATH_LENGTH:
            raise ValueError(f"{what} path is longer than {C.UNIX_PATH_LENGTH} bytes")
        if path[:1] != b"\0" and b"\0" in path:
            raise ValueError(f"{what} path contains a NUL byte")
        return C.AF_UNIX_NIBBLE, path.ljust(C.UNIX_PATH_LENGTH, b"\0")
    if not isinstance(address, tuple):
        raise TypeError(
            f"{what} must be a (host, port) tuple, a (host, port, flowinfo, scope_id) "
            f"tuple or a path, not {type(address).__name__}"
        )
    if len(address) not in (2, 4):
        raise ValueError(f"{what} must be (host, port), (host, port, flowinfo, scope_id) or a path")
    host, port = address[0], address[1]
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port must be an int from 0 to 65535, not {port!r}")
    if not isinstance(host, str):
        raise TypeError(f"{what} host must be a str, not {type(host).__name__}")
    if len(address) == 4:
        for name, value in (("flowinfo", address[2]), ("scope_id", address[3])):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} {name} must be an int, not {type(value).__name__}")
            if value != 0:
                raise ValueError(
                    f"{what} {name} is {value}: a PROXY header cannot carry it (only 0)"
                )
    packed = ipv4_pack(host) if len(address) == 2 else None
    if packed is not None:
        return C.AF_INET_NIBBLE, packed + port.to_bytes(2, "big")
    packed = ipv6_pack(host)
    if packed is None:
        raise ValueError(f"{what} host {host!r} is not an IPv4 or IPv6 address")
    return C.AF_INET6_NIBBLE, packed + port.to_bytes(2, "big")


def _build_v1(
    family: int,
    source: Any,
    destination: Any,
    command: int,
    protocol: int,
    tlvs: list[tuple[int, bytes]],
    crc32c: bool,
) -> bytes:
    if command != Command.PROXY:
        raise ValueError("v1 has no LOCAL command")
    if tlvs or crc32c:
        raise ValueError("v1 carries no TLVs")
    if family == 0:
        return b"PROXY UNKNOWN\r\n"
    if family == C.AF_UNIX_NIBBLE:
        raise ValueError("v1 carries no AF_UNIX addresses")
    if protocol != socket.SOCK_STREAM:
        raise ValueError("v1 carries only TCP (SOCK_STREAM)")
    keyword = "TCP4" if family == C.AF_INET_NIBBLE else "TCP6"
    line = (
        f"PROXY {keyword} {_ip_text(source[0])} {_ip_text(destination[0])} "
        f"{source[1]} {destination[1]}\r\n"
    )
    return line.encode("ascii")


def _ip_text(host: str) -> str:
    # The canonical text of an address _encode_address accepted.
    packed = ipv4_pack(host)
    if packed is not None:
        return ipv4_text(packed)
    packed = ipv6_pack(host)
    assert packed is not None
    return ipv6_text(packed)


def _build_v2(
    family: int,
    src: bytes,
    dst: bytes,
    command: int,
    protocol: int,
    tlvs: list[tuple[int, bytes]],
    crc32c: bool,
) -> bytes:
    if family == 0:
        fam = 0x00
    else:
        nibble = _PROTOCOL_NIBBLES.get(protocol)
        if nibble is None:
            raise ValueError("protocol must be socket.SOCK_STREAM or socket.SOCK_DGRAM")
        fam = family << 4 | nibble
    if family in (C.AF_INET_NIBBLE, C.AF_INET6_NIBBLE):
        # Wire order: both addresses, then both ports.
        block = src[:-2] + dst[:-2] + src[-2:] + dst[-2:]
    else:
        block = src + dst
    if crc32c:
        if any(t == C.PP2_TYPE_CRC32C for t, _ in tlvs):
            raise ValueError("crc32c=True adds the CRC32C TLV; tlvs already has one")
        tlvs = [*tlvs, (C.PP2_TYPE_CRC32C, b"\0\0\0\0")]
    body = block + b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs)
    if len(body) > 0xFFFF:
        raise ValueError(f"the header body is {len(body)} bytes; v2 allows at most 65535")
    header = C.V2_SIGNATURE + struct.pack("!BBH", 0x20 | int(command), fam, len(body)) + body
    if crc32c:
        crc: int = impl.crc32c(header)
        return header[:-4] + crc.to_bytes(4, "big")
    return header
