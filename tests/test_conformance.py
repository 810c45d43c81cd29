"""What the spec calls valid, and the peers' own test cases: both backends.

doc/proxy-protocol.txt says a LOCAL receiver "must use the real connection
endpoints and discard the protocol block including the family", and of
AF_UNSPEC that "the receiver should ignore address information".  So the
body of a LOCAL header (any family byte) and of PROXY over AF_UNSPEC is
read as TLVs when it is a valid TLV area, and discarded when it is not;
PROXY over INET, INET6 and UNIX keeps refusing a malformed TLV area.
AUTHORITY has no cap but the header's size (255 is HAProxy's own limit).

The peers' vectors are built here from the bytes their suites send
(go-proxyproto, Netty, ppp, Envoy, HAProxy's reg-tests).  Every vector is
parsed on each backend from every buffer type and cut at every byte: a
prefix is Incomplete with the exact ``needed`` until the header is whole
(a body that is ignored is judged only then), and a refused header stays
refused with the same error once it is.
"""

import random
import socket
import struct

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C
from pyproxyproto._crc32c import crc32c
from tests.headers import buffers

SIG = C.V2_SIGNATURE
LOCAL, PROXY = 0x20, 0x21


def v2(ver_cmd, fam, body, length=None):
    return SIG + struct.pack("!BBH", ver_cmd, fam, len(body) if length is None else length) + body


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def seal(header, value_at):
    """``header`` with the correct CRC32C in the 4 bytes at ``value_at``."""
    zeroed = header[:value_at] + bytes(4) + header[value_at + 4 :]
    return zeroed[:value_at] + struct.pack("!I", crc32c(zeroed)) + zeroed[value_at + 4 :]


def inet_block(src, dst, sport, dport):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


INET = inet_block("127.0.0.1", "127.0.0.2", 1000, 2000)
INET6 = (socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "::1")
         + struct.pack("!HH", 1000, 2000))
UNIX = b"socket".ljust(108, b"\0") * 2
BLOCKS = {0x1: INET, 0x2: INET6, 0x3: UNIX}


def tlv_area(body):
    """The TLVs that tile ``body`` exactly by the spec's rules, or None:
    an independent reading to hold the parsers to."""
    tlvs, off = [], 0
    while off < len(body):
        if len(body) - off < 3:
            return None
        t, n = body[off], int.from_bytes(body[off + 1 : off + 3], "big")
        value = body[off + 3 : off + 3 + n]
        if len(value) < n or (t == C.PP2_TYPE_CRC32C and n != 4) or (
            t == C.PP2_TYPE_UNIQUE_ID and n > C.UNIQUE_ID_MAX_LENGTH
        ):
            return None
        tlvs.append((t, value))
        off += 3 + n
    return tuple(tlvs)


class Accept:
    """An accepted header: these fields, plus any typed view by name."""

    def __init__(self, command, family, protocol, length, tlvs=(), source=None, destination=None,
                 **views):
        self.fields = dict(command=command, family=family, protocol=protocol, length=length,
                           tlvs=tuple(tlvs), source=source, destination=destination, version=2)
        self.views = views
        self.length = length

    def check(self, h):
        assert not isinstance(h, Exception), h
        for name, value in {**self.fields, **self.views}.items():
            assert getattr(h, name) == value, (name, getattr(h, name))


class Refuse:
    """A refused header: this exception class, offset and message."""

    def __init__(self, cls, offset, message):
        self.cls, self.offset, self.message = cls, offset, message
        self.length = None

    def check(self, exc):
        assert type(exc) is self.cls and exc.offset == self.offset and str(exc) == self.message, exc


def ignored_body(ver_cmd, fam, body, payload=b""):
    """A LOCAL or PROXY-over-AF_UNSPEC header and what the rule makes of it."""
    block = BLOCKS.get(fam >> 4, b"") if ver_cmd == LOCAL else b""
    if len(block) > len(body):
        block = b""  # a LOCAL block that does not fit is not skipped
    tlvs = tlv_area(body[len(block):]) or ()
    family = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)[fam >> 4] \
        if fam >> 4 < 4 else socket.AF_UNSPEC
    protocol = (0, socket.SOCK_STREAM, socket.SOCK_DGRAM)[fam & 0xF] if fam & 0xF < 3 else 0
    command = pp.Command.LOCAL if ver_cmd == LOCAL else pp.Command.PROXY
    return v2(ver_cmd, fam, body) + payload, Accept(command, family, protocol, 16 + len(body), tlvs)


def random_bytes(seed, size):
    return random.Random(seed).randbytes(size)


# -- the peers' vectors -------------------------------------------------------------

NETTY_BLOCK = bytes.fromhex("c0a80001 c0a8000b dc04 01bb")   # 192.168.0.1 -> .11, 56324 -> 443
PPP_BLOCK = bytes.fromhex("7f000001 7f000002 0050 bb01")
NETTY_SSL = bytes(b % 256 for b in (
    13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 33, 17, 0, 35, 127, 0, 0, 1, 127, 0, 0, 1,
    -55, -90, 7, 89, 32, 0, 20, 5, 0, 0, 0, 0, 33, 0, 5, 84, 76, 83, 118, 49, 34, 0, 4, 76, 69, 65, 70,
))
HAPROXY_BLOCK = inet_block("127.0.0.1", "127.0.0.1", 42, 1337)
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
UNSPEC, LOCAL_CMD, PROXY_CMD = socket.AF_UNSPEC, pp.Command.LOCAL, pp.Command.PROXY

PEERS = {
    # Netty testV2LocalProtocolDecode / testV2UnknownProtocolDecode: LOCAL
    # and PROXY over AF_UNSPEC, each with a 12-byte IPv4-looking block that
    # is no TLV area ("TLV 0xc0 ... overruns" before).
    "netty-v2-local": (v2(LOCAL, 0x00, NETTY_BLOCK), Accept(LOCAL_CMD, UNSPEC, 0, 28)),
    "netty-v2-unknown-protocol": (v2(PROXY, 0x00, NETTY_BLOCK), Accept(PROXY_CMD, UNSPEC, 0, 28)),
    "netty-v2-ssl-tlvs": (NETTY_SSL, Accept(
        PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 51,
        [(C.PP2_TYPE_SSL, NETTY_SSL[31:])], ("127.0.0.1", 51622), ("127.0.0.1", 1881))),
    # ppp unspecified_address_family: LOCAL, byte 13 0x02 (AF_UNSPEC over
    # DGRAM), 12 address bytes; no_address: the same with none, then payload.
    "ppp-unspecified-address-family": (v2(LOCAL, 0x02, PPP_BLOCK),
                                       Accept(LOCAL_CMD, UNSPEC, socket.SOCK_DGRAM, 28)),
    "ppp-no-address": (v2(LOCAL, 0x02, b"") + b"\x00\x50",
                       Accept(LOCAL_CMD, UNSPEC, socket.SOCK_DGRAM, 16)),
    # go-proxyproto: LOCAL over TCPv4 with its block; LOCAL AF_UNSPEC with
    # 2 to 4097 random bytes ("local unspec with TLV"), and a LOCAL UNIX
    # stream block followed by random bytes; PROXY TCPv4/TCPv6 padded to 84
    # bytes with zeros (zero-length TLVs of type 0), then 3 payload bytes.
    "go-local-tcp4": (v2(LOCAL, 0x11, INET), Accept(LOCAL_CMD, socket.AF_INET, socket.SOCK_STREAM, 28)),
    "go-local-unspec": (v2(LOCAL, 0x00, b""), Accept(LOCAL_CMD, UNSPEC, 0, 16)),
    **{f"go-local-unspec-with-tlv-{size}": ignored_body(LOCAL, 0x00, random_bytes(size, size))
       for size in (2, 3, 97, 4097)},
    "go-local-unix-stream-with-tlv": ignored_body(LOCAL, 0x31, UNIX + random_bytes(1, 600)),
    "go-proxy-unspec-with-tlv": ignored_body(PROXY, 0x00, random_bytes(7, 1200)),
    "go-proxy-tcp4-padded": (v2(PROXY, 0x11, INET + bytes(72)) + b"\x99\x97\x98", Accept(
        PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 100, [(0, b"")] * 24,
        ("127.0.0.1", 1000), ("127.0.0.2", 2000))),
    "go-proxy-tcp6-padded": (v2(PROXY, 0x21, INET6 + bytes(48)) + b"\x99\x97\x98", Accept(
        PROXY_CMD, socket.AF_INET6, socket.SOCK_STREAM, 100, [(0, b"")] * 16,
        ("2001:db8::1", 1000, 0, 0), ("::1", 2000, 0, 0))),
    # Envoy V2ParseExtensionsLargeThanInitMaxReadBytes: a 65520-byte
    # AUTHORITY after an IPv4 block fills a 65535-byte body; then "DATA".
    "envoy-authority-65520": (
        v2(PROXY, 0x11, bytes.fromhex("01020304 00010102 0305 0002") + b"\x02\xff\xf0" + b"a" * 65520)
        + b"DATA",
        Accept(PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 16 + 0xFFFF,
               [(C.PP2_TYPE_AUTHORITY, b"a" * 65520)], ("1.2.3.4", 773), ("0.1.1.2", 2),
               authority="a" * 65520)),
    # HAProxy reg-tests/connection/proxy_protocol_tlv_validation.vtc: a
    # valid AUTHORITY; a TLV after the header is payload; a TLV that
    # overruns the header, and one that leaves a stray byte (the first
    # byte of the request) before the header's end, are refused.
    "haproxy-vtc-authority": (v2(PROXY, 0x11, HAPROXY_BLOCK + tlv(2, b"12345")) + REQUEST, Accept(
        PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 36, [(2, b"12345")],
        ("127.0.0.1", 42), ("127.0.0.1", 1337), authority="12345")),
    "haproxy-vtc-tlv-after-header": (
        v2(PROXY, 0x11, HAPROXY_BLOCK + tlv(2, b"12345")) + tlv(2, b"54321") + REQUEST, Accept(
            PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 36, [(2, b"12345")],
            ("127.0.0.1", 42), ("127.0.0.1", 1337), authority="12345")),
    "haproxy-vtc-tlv-overrun": (
        v2(PROXY, 0x11, HAPROXY_BLOCK + b"\x02\x00\x0a" + b"1234512345", length=20) + REQUEST,
        Refuse(pp.InvalidHeader, 28, "v2: TLV 0x02 at offset 28 overruns the header")),
    "haproxy-vtc-tlv-short": (
        v2(PROXY, 0x11, HAPROXY_BLOCK + tlv(2, b"1234"), length=20) + REQUEST,
        Refuse(pp.InvalidHeader, 35, "v2: 1 stray byte(s) after the last TLV at offset 35")),
}


# -- the rule: bodies that are ignored, and the strict families ---------------------

# TLV areas that are not valid: (area, offset of the TLV at fault in it, message).
MALFORMED = {
    "overrun": (b"\x01\x00\x05h2", 0, C.MSG_V2_TLV_OVERRUN.format(type=1, offset="{}")),
    "stray-1": (tlv(C.PP2_TYPE_NOOP, b"") + b"\x01", 3,
                C.MSG_V2_TLV_TRUNCATED.format(count=1, offset="{}")),
    "stray-2": (tlv(C.PP2_TYPE_ALPN, b"h2") + b"\x01\x00", 5,
                C.MSG_V2_TLV_TRUNCATED.format(count=2, offset="{}")),
    "unique-id-129": (tlv(C.PP2_TYPE_UNIQUE_ID, b"u" * 129), 0,
                      C.MSG_V2_TLV_LENGTH.format(type=5, offset="{}", length=129)),
    "crc32c-length-3": (tlv(C.PP2_TYPE_ALPN, b"h2") + tlv(C.PP2_TYPE_CRC32C, b"abc"), 5,
                        C.MSG_V2_TLV_LENGTH.format(type=3, offset="{}", length=3)),
    "crc32c-length-5": (tlv(C.PP2_TYPE_CRC32C, b"abcde"), 0,
                        C.MSG_V2_TLV_LENGTH.format(type=3, offset="{}", length=5)),
}
VALID_AREA = (tlv(C.PP2_TYPE_ALPN, b"h2") + tlv(C.PP2_TYPE_AUTHORITY, b"x" * 300)
              + tlv(C.PP2_TYPE_UNIQUE_ID, b"u" * 128) + tlv(C.PP2_TYPE_NOOP, b""))
# (command, byte 13) of every kind of header whose body is ignored.
IGNORED = [(LOCAL, fam) for fam in (0x00, 0x02, 0x11, 0x12, 0x21, 0x31, 0x32, 0x13, 0x45, 0xFF)]
IGNORED.append((PROXY, 0x00))
STRICT = [0x11, 0x12, 0x21, 0x22, 0x31, 0x32]


def rule_vectors():
    """Each malformed area after every kind of ignored body (discarded) and
    after every strict family (refused); a valid area, a good and a bad
    CRC32C after every ignored body; long AUTHORITY values."""
    out = {}
    for cmd, fam in IGNORED:
        kind = f"{'local' if cmd == LOCAL else 'proxy'}-{fam:02x}"
        block = BLOCKS.get(fam >> 4, b"") if cmd == LOCAL else b""
        for name, (area, _, _) in MALFORMED.items():
            out[f"{kind}-{name}-discarded"] = ignored_body(cmd, fam, block + area)
        out[f"{kind}-valid-area-kept"] = ignored_body(cmd, fam, block + VALID_AREA, b"payload")
        body = block + tlv(C.PP2_TYPE_AUTHORITY, b"a.example") + tlv(C.PP2_TYPE_CRC32C, bytes(4))
        sealed = seal(v2(cmd, fam, body), 16 + len(body) - 4)
        out[f"{kind}-crc32c-kept"] = (sealed, ignored_body(cmd, fam, sealed[16:])[1])
        wrong = sealed[:-1] + bytes([sealed[-1] ^ 1])
        offset = len(wrong) - 7
        message = C.MSG_V2_CHECKSUM.format(offset=offset, expected=int.from_bytes(wrong[-4:], "big"),
                                           computed=int.from_bytes(sealed[-4:], "big"))
        out[f"{kind}-crc32c-mismatch"] = (wrong, Refuse(pp.ChecksumMismatch, offset, message))
        # A wrong CRC32C inside a body that is no TLV area goes with it.
        out[f"{kind}-crc32c-in-junk-discarded"] = ignored_body(
            cmd, fam, block + tlv(C.PP2_TYPE_CRC32C, b"\xde\xad\xbe\xef") + b"\x01")
    for fam in STRICT:
        block = BLOCKS[fam >> 4]
        for name, (area, at, message) in MALFORMED.items():
            offset = 16 + len(block) + at
            out[f"proxy-{fam:02x}-{name}-refused"] = (
                v2(PROXY, fam, block + area), Refuse(pp.InvalidHeader, offset, message.format(offset)))
    # A LOCAL address block that does not fit is not skipped: TLVs may
    # start right after the fixed part.
    out["local-11-short-block-is-tlvs"] = ignored_body(LOCAL, 0x11, tlv(C.PP2_TYPE_NOOP, b"x"))
    out["local-21-short-block-discarded"] = ignored_body(LOCAL, 0x21, b"\x01" * 7)
    # AUTHORITY past HAProxy's 255 bytes, up to a full header.
    for size in (256, 1000, 0xFFFF - 12 - 3):
        out[f"proxy-11-authority-{size}"] = (v2(PROXY, 0x11, INET + tlv(2, b"h" * size)), Accept(
            PROXY_CMD, socket.AF_INET, socket.SOCK_STREAM, 28 + 3 + size, [(2, b"h" * size)],
            ("127.0.0.1", 1000), ("127.0.0.2", 2000), authority="h" * size))
    return out


RULE = rule_vectors()
VECTORS = {**PEERS, **RULE}
# Cut at every byte and read from every buffer type in the quick tier;
# longer vectors at a sample of cuts there, at every cut in the slow tier.
LONG = 5000


def test_the_rule_covers_what_it_should():
    # A table that lost its cases would pass vacuously.
    assert sum(name.endswith("-discarded") for name in RULE) >= 7 * len(IGNORED)
    assert sum(name.endswith("-refused") for name in RULE) == len(MALFORMED) * len(STRICT)
    accepted = [e for _, e in VECTORS.values() if isinstance(e, Accept)]
    assert sum(bool(e.fields["tlvs"]) for e in accepted) >= len(IGNORED) * 2
    assert any(len(v) > LONG for v, _ in VECTORS.values())


def outcome(parse, data, **flags):
    """What parse() made of ``data``, in comparable form."""
    try:
        h = parse(data, **flags)
    except pp.ProxyProtocolError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "needed", None),
                getattr(exc, "offset", None), exc)
    return ("ok", h.to_dict(), repr(h), h.length, h)


def needed_for(cut, total):
    """The ``needed`` of a strict prefix of a v2 header of ``total`` bytes."""
    return 1 if cut == 0 else C.V2_HEADER_LENGTH if cut < C.V2_HEADER_LENGTH else total


def cuts(data, every):
    if every or len(data) <= LONG:
        return range(len(data) + 1)
    return sorted({*range(64), *range(64, len(data), 4099), len(data) - 1, len(data)})


def check_vector(backend, data, expect, every=False):
    """The whole input, then each cut of it, on every buffer type."""
    full = outcome(backend.parse, data)
    expect.check(full[-1])
    total = 16 + int.from_bytes(data[14:16], "big")
    refused_from = None
    for cut in cuts(data, every):
        part = data[:cut]
        got = outcome(backend.parse, part)
        if cut >= total:
            assert got[:4] == full[:4], (cut, got)
        elif got[0] == "Incomplete":
            assert refused_from is None, f"cut {cut}: Incomplete after {refused_from}"
            assert got[2] == needed_for(cut, total), (cut, got)
        else:
            # Only a strict header is refused before it is whole, and then
            # for good, with the error of the whole input.
            assert isinstance(expect, Refuse) and expect.cls is pp.InvalidHeader, (cut, got)
            assert got[:4] == full[:4], (cut, got)
            refused_from = cut if refused_from is None else refused_from
        if not every or len(part) <= LONG:
            for kind, buf in buffers(part):
                assert outcome(backend.parse, buf)[:4] == got[:4], (cut, kind)
    if isinstance(expect, Accept):
        assert full[3] == expect.length == total
        assert backend.parse(data[:total]) == full[-1]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector(backend, name):
    data, expect = VECTORS[name]
    check_vector(backend, data, expect)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, (v, _) in VECTORS.items() if len(v) > LONG))
def test_long_vector_at_every_cut(backend, name):
    data, expect = VECTORS[name]
    check_vector(backend, data, expect, every=True)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_backends_agree(both_backends, name):
    data, _ = VECTORS[name]
    for cut in cuts(data, False):
        for flags in ({}, {"verify_checksum": False}, {"v1": False}):
            results = {k: outcome(m.parse, data[:cut], **flags)[:4] for k, m in both_backends.items()}
            assert len({repr(r) for r in results.values()}) == 1, (cut, flags, results)


def test_checksum_is_verified_only_when_asked(backend):
    for name in (n for n in RULE if n.endswith("-crc32c-mismatch")):
        data, _ = RULE[name]
        h = backend.parse(data, verify_checksum=False)
        assert h.crc32c == int.from_bytes(data[-4:], "big") and h.authority == "a.example", name


def test_an_ignored_body_is_never_trusted_for_addresses(backend):
    # LOCAL with a full, well-formed address block: still no addresses.
    for fam, block in ((0x11, INET), (0x21, INET6), (0x31, UNIX)):
        h = backend.parse(v2(LOCAL, fam, block + tlv(C.PP2_TYPE_ALPN, b"h2")))
        assert h.source is None and h.destination is None and h.alpn == b"h2"


def test_build_round_trips_a_long_authority(backend):
    for size in (256, 4096, 0xFFFF - 36 - 3):
        data = pp.build(("2001:db8::1", 1, 0, 0), ("::1", 2, 0, 0),
                        tlvs=[(C.PP2_TYPE_AUTHORITY, b"s" * size)])
        assert backend.parse(data).authority == "s" * size
    with pytest.raises(ValueError, match="at most 65535"):
        pp.build(("2001:db8::1", 1, 0, 0), ("::1", 2, 0, 0),
                 tlvs=[(C.PP2_TYPE_AUTHORITY, b"s" * (0xFFFF - 36 - 2))])
