"""The six header cases every parse benchmark runs, built by hand.

The bytes are assembled here with ``struct`` (and a small CRC32C of our own)
rather than with ``pyproxyproto.build``, so that a bug in the builder cannot
hide a bug in the parser: every implementation, ours included, is checked
against the expected values below before it is timed.
"""

from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass, field

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

# 100 bytes of a plausible first request; it follows every header so that a
# parser which reads past the header (or copies the rest) pays for it.
PAYLOAD = (
    b"GET /v1/orders?page=2 HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: bench/1.0\r\n"
    b"Accept: */*\r\n"
)
PAYLOAD += b"X-Pad: " + b"x" * (100 - len(PAYLOAD) - 9) + b"\r\n"
assert len(PAYLOAD) == 100, len(PAYLOAD)

SRC4, DST4 = "203.0.113.195", "192.0.2.10"
SRC6, DST6 = "2001:db8:85a3::8a2e:370:7334", "2001:db8::10"
SPORT, DPORT = 51234, 443

ALPN = b"h2"
AUTHORITY = "api.example.com"
UNIQUE_ID = bytes(range(0x40, 0x50))  # 16 bytes, like a request-id
SSL_VERSION = "TLSv1.3"
SSL_CN = "client.example.com"
SSL_CIPHER = "TLS_AES_256_GCM_SHA384"


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), reflected, as the PROXY spec uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(body)) + body


def v2_with_crc(ver_cmd: int, fam: int, body: bytes) -> bytes:
    """A v2 header whose last TLV is a correct CRC32C over the whole header."""
    header = v2(ver_cmd, fam, body + tlv(0x03, b"\0\0\0\0"))
    return header[:-4] + struct.pack("!I", crc32c(header))


@dataclass(frozen=True)
class Case:
    key: str          # test id
    group: str        # benchmark group and report column
    header: bytes     # the header alone
    version: int
    family: int       # socket.AF_*
    source: tuple | None
    destination: tuple | None
    tlvs: dict = field(default_factory=dict)   # what our typed views must say

    @property
    def data(self) -> bytes:
        """What the benchmarks parse: the header followed by 100 payload bytes."""
        return self.header + PAYLOAD

    @property
    def length(self) -> int:
        return len(self.header)


_ip4 = socket.inet_pton
_v4_block = (_ip4(socket.AF_INET, SRC4) + _ip4(socket.AF_INET, DST4)
             + struct.pack("!HH", SPORT, DPORT))
_v6_block = (_ip4(socket.AF_INET6, SRC6) + _ip4(socket.AF_INET6, DST6)
             + struct.pack("!HH", SPORT, DPORT))
_ssl_value = (struct.pack("!BI", 0x07, 0)   # client: SSL, cert on conn+sess; verified
              + tlv(0x21, SSL_VERSION.encode())
              + tlv(0x22, SSL_CN.encode())
              + tlv(0x23, SSL_CIPHER.encode()))
_v6_tlvs = (tlv(0x01, ALPN) + tlv(0x02, AUTHORITY.encode()) + tlv(0x05, UNIQUE_ID)
            + tlv(0x20, _ssl_value))

CASES: tuple[Case, ...] = (
    Case("v1_tcp4", "v1 TCP4",
         f"PROXY TCP4 {SRC4} {DST4} {SPORT} {DPORT}\r\n".encode(), 1,
         socket.AF_INET, (SRC4, SPORT), (DST4, DPORT)),
    Case("v1_tcp6", "v1 TCP6",
         f"PROXY TCP6 {SRC6} {DST6} {SPORT} {DPORT}\r\n".encode(), 1,
         socket.AF_INET6, (SRC6, SPORT, 0, 0), (DST6, DPORT, 0, 0)),
    Case("v2_ipv4", "v2 IPv4", v2(0x21, 0x11, _v4_block), 2,
         socket.AF_INET, (SRC4, SPORT), (DST4, DPORT)),
    Case("v2_ipv6_tlvs", "v2 IPv6 + TLVs", v2(0x21, 0x21, _v6_block + _v6_tlvs), 2,
         socket.AF_INET6, (SRC6, SPORT, 0, 0), (DST6, DPORT, 0, 0),
         {"alpn": ALPN, "authority": AUTHORITY, "unique_id": UNIQUE_ID,
          "ssl": (SSL_VERSION, SSL_CN, SSL_CIPHER)}),
    Case("v2_ipv4_crc32c", "v2 IPv4 + CRC32C", v2_with_crc(0x21, 0x11, _v4_block), 2,
         socket.AF_INET, (SRC4, SPORT), (DST4, DPORT)),
    Case("v2_local", "v2 LOCAL", v2(0x20, 0x00, b""), 2,
         socket.AF_UNSPEC, None, None),
)

BY_KEY = {case.key: case for case in CASES}
GROUPS = tuple(case.group for case in CASES)


# -- rotating sources ---------------------------------------------------------------------
#
# Behind a balancer every connection comes from a new source (address and
# port) to the same destination.  These cases cycle through ROTATING_COUNT
# headers that differ only in the source, so a parser that reuses what it
# made for the previous header gains nothing on the source and all it can
# on the destination.

ROTATING_COUNT = 4096
ROTATING_SEED = 20


@dataclass(frozen=True)
class Rotating:
    key: str              # test id
    group: str            # benchmark group and report column
    version: int
    family: int           # socket.AF_INET or AF_INET6
    sources: tuple        # the expected source of each header, in order
    destination: tuple
    data: tuple           # each header followed by PAYLOAD
    floor_data: tuple     # v2 headers with the same addresses, for the object floor


def _random_sources(rng, v6: bool) -> list[tuple]:
    seen: set[tuple] = set()
    out = []
    while len(out) < ROTATING_COUNT:
        raw = rng.getrandbits(128 if v6 else 32).to_bytes(16 if v6 else 4, "big")
        port = rng.randrange(1024, 65536)
        if (raw, port) in seen:
            continue
        seen.add((raw, port))
        out.append((raw, port))
    return out


def _rotating(key: str, group: str, version: int, v6: bool) -> Rotating:
    import ipaddress
    import random

    rng = random.Random(f"{ROTATING_SEED}-{key}")
    family = socket.AF_INET6 if v6 else socket.AF_INET
    dst_text = DST6 if v6 else DST4
    dst_raw = _ip4(family, dst_text)
    data, floor_data, sources = [], [], []
    for raw, port in _random_sources(rng, v6):
        text = str(ipaddress.ip_address(raw))
        block = raw + dst_raw + struct.pack("!HH", port, DPORT)
        floor_header = v2(0x21, 0x21 if v6 else 0x11, block)
        if version == 1:
            header = f"PROXY TCP{6 if v6 else 4} {text} {dst_text} {port} {DPORT}\r\n".encode()
        else:
            header = floor_header
        data.append(header + PAYLOAD)
        floor_data.append(floor_header + PAYLOAD)
        sources.append((text, port, 0, 0) if v6 else (text, port))
    destination = (dst_text, DPORT, 0, 0) if v6 else (dst_text, DPORT)
    return Rotating(key, group, version, family, tuple(sources), destination, tuple(data),
                    tuple(floor_data))


# key, group, version, IPv6
ROTATING_SPECS = (
    ("rotating_v2_ipv4", "v2 IPv4, rotating sources", 2, False),
    ("rotating_v2_ipv6", "v2 IPv6, rotating sources", 2, True),
    ("rotating_v1_tcp4", "v1 TCP4, rotating sources", 1, False),
)
ROTATING_KEYS = tuple(spec[0] for spec in ROTATING_SPECS)


@functools.cache
def rotating(key: str) -> Rotating:
    """The rotating case ``key``, built on first use (12,288 headers in all)."""
    for spec in ROTATING_SPECS:
        if spec[0] == key:
            return _rotating(*spec)
    raise KeyError(key)
