"""Differential tests: the two backends are one semantics.

For random and mutated inputs, both backends must raise the same exception
class with the same message, offset and `needed`, or return headers with
equal to_dict() and repr.  Headers whose body is ignored (LOCAL, PROXY over
AF_UNSPEC) also go through the fuzz target's checks, its body rule included.
The pure backend's regex fast path is also held against its own
byte-by-byte scanner, and v1 IPv6 parsing against glibc.
"""

import platform
import socket
import struct
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import pyproxyproto as pp
from pyproxyproto import _constants as C
from pyproxyproto import _parser_py

from tests.fuzz import differential
from tests.headers import VALID
from tests.tiers import sweep

# Examples per test: the quick tier's, and the long sweep's (marked slow).
QUICK, FULL = 150, 1500


def outcome(module, data, **kwargs):
    try:
        h = module.parse(data, **kwargs)
    except pp.ProxyProtocolError as exc:
        return (
            type(exc).__name__,
            str(exc),
            getattr(exc, "needed", None),
            getattr(exc, "offset", None),
        )
    return ("ok", h.to_dict(), repr(h), h.length)


def assert_same(both_backends, data, **kwargs):
    results = {name: outcome(m, data, **kwargs) for name, m in both_backends.items()}
    assert len(set(map(repr, results.values()))) == 1, (data, kwargs, results)
    return next(iter(results.values()))


flags = st.fixed_dictionaries(
    {},
    optional={"v1": st.booleans(), "v2": st.booleans(), "verify_checksum": st.booleans()},
).filter(lambda kw: kw.get("v1", True) or kw.get("v2", True))


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(sorted(VALID.values()))))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[i]
        elif kind == "length" and len(data) >= 16 and data[:1] == b"\r":
            data[14:16] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
        elif kind == "dup" and len(data) > 16 and data[:1] == b"\r":
            # Duplicate a stretch of the body (often whole TLVs) and fix the length.
            j = draw(st.integers(16, len(data)))
            chunk = data[i:j] if i < j else data[j:i]
            data[len(data):] = chunk
            data[14:16] = struct.pack("!H", max(0, min(0xFFFF, len(data) - 16)))
    tail = draw(st.binary(max_size=8))
    return bytes(data) + tail


V1_ALPHABET = b"0123456789abcdefABCDEF:. \r\n"


@st.composite
def v1_lines(draw):
    kind = draw(st.sampled_from([b"TCP4 ", b"TCP6 ", b"UNKNOWN", b"UNKNOWN "]))
    body = draw(st.binary(max_size=110).map(lambda b: bytes(V1_ALPHABET[x % len(V1_ALPHABET)] for x in b)))
    return b"PROXY " + kind + body + draw(st.sampled_from([b"", b"\r\n", b"\r", b"\n"]))


@st.composite
def v1_fields(draw):
    def address():
        return draw(st.one_of(
            st.sampled_from(["1.2.3.4", "::", "::1", "1::", "::ffff:1.2.3.4", "255.255.255.255",
                             "1:2:3:4:5:6:7:8", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"]),
            st.text("0123456789abcdef:.", max_size=46),
        ))

    def port():
        return draw(st.one_of(st.integers(0, 70000).map(str), st.text("0123456789", max_size=6)))

    proto = draw(st.sampled_from(["TCP4", "TCP6"]))
    line = f"PROXY {proto} {address()} {address()} {port()} {port()}\r\n"
    return line.encode()


@sweep(QUICK, FULL)
def test_random_bytes(both_backends, tier):
    @tier
    @given(data=st.binary(max_size=120), kwargs=flags)
    def check(data, kwargs):
        assert_same(both_backends, data, **kwargs)

    check()


@sweep(QUICK, FULL)
def test_mutated_valid_headers(both_backends, tier):
    @tier
    @given(data=mutated(), kwargs=flags)
    def check(data, kwargs):
        assert_same(both_backends, data, **kwargs)

    check()


@st.composite
def ignored_bodies(draw):
    """LOCAL (any byte 13) or PROXY over AF_UNSPEC, with a body that is a
    TLV area, one spoiled at one byte, or random bytes; then payload."""
    ver_cmd = draw(st.sampled_from([0x20, 0x21]))
    fam = draw(st.integers(0, 255)) if ver_cmd == 0x20 else 0x00
    block = bytes(draw(st.sampled_from([0, 12, 36, 216])))
    tlvs = draw(st.lists(st.tuples(st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0xE0]),
                                   st.binary(max_size=140)), max_size=4))
    body = bytearray(block + b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs))
    kind = draw(st.sampled_from(["tlvs", "spoiled", "random"]))
    if kind == "spoiled" and body:
        body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    elif kind == "random":
        body = bytearray(draw(st.binary(max_size=300)))
    header = C.V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(body)) + body
    return bytes(header) + draw(st.binary(max_size=8))


@sweep(QUICK, FULL)
def test_ignored_bodies(both_backends, tier):
    # The fuzz target's checks, the body rule (its check 6) included.
    @tier
    @given(data=ignored_bodies())
    def check(data):
        assert_same(both_backends, data)
        differential.check(data)

    check()


@sweep(QUICK, FULL)
def test_v1_lines(both_backends, tier):
    @tier
    @given(data=st.one_of(v1_lines(), v1_fields()))
    def check(data):
        result = assert_same(both_backends, data)
        # Every prefix of the line agrees too (each stops at its own last byte).
        cut = len(data) // 2
        assert_same(both_backends, data[:cut])
        # The pure backend's fast path agrees with its scanner.
        try:
            scanned = ("ok", _parser_py._scan_v1(data, len(data)).to_dict())
        except pp.ProxyProtocolError as exc:
            scanned = (type(exc).__name__, str(exc))
        assert scanned[:2] == result[:2]

    check()


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's inet_pton is the reference for IPv6 text",
)
@sweep(QUICK, FULL)
def test_v1_ipv6_matches_glibc(backend, tier):
    @tier
    @given(text=st.one_of(
        st.text("0123456789abcdefABCDEF:.", max_size=45),
        st.lists(st.sampled_from(["::", ":", "0", "1", "ffff", "12345", "1.2.3.4", "01", ".", "255", "256"]),
                 max_size=12).map("".join).filter(lambda s: len(s) <= 45),
    ))
    def check(text):
        try:
            expected = socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            expected = None
        line = b"PROXY TCP6 " + text.encode() + b" ::1 1 2\r\n"
        try:
            got = backend.parse(line).source[0]
        except pp.InvalidHeader:
            got = None
        if expected is None:
            assert got is None, text
        else:
            assert got is not None and socket.inet_pton(socket.AF_INET6, got) == expected, text

    check()


@sweep(QUICK, FULL)
def test_prefixes_agree(both_backends, tier):
    @tier
    @given(header=st.sampled_from(sorted(VALID.values())), cut=st.integers(0, 200), kwargs=flags)
    def check(header, cut, kwargs):
        assume(cut < len(header))
        assert_same(both_backends, header[:cut], **kwargs)

    check()
