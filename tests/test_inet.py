"""Address text helpers: one behaviour on every platform.

The portable functions are what non-glibc platforms use; on glibc they are
held against the C library, which is the reference there.
"""

import ipaddress
import platform
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyproxyproto import _inet

from tests.tiers import sweep

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
PACKS = [_inet._ipv6_pack_portable, _inet.ipv6_pack]
TEXTS = [_inet._ipv6_text_portable, _inet.ipv6_text]

words = st.lists(
    st.one_of(st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF)), min_size=8, max_size=8
)


@pytest.mark.parametrize("to_text", TEXTS)
@pytest.mark.parametrize(
    "text, expected",
    [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("::ffff:0:0", "::ffff:0.0.0.0"),
        ("::102:304", "::102:304"),
        ("::2", "::2"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0DB8::0001", "2001:db8::1"),
    ],
)
def test_rfc5952_text(to_text, text, expected):
    assert to_text(socket.inet_pton(socket.AF_INET6, text)) == expected


@pytest.mark.parametrize("to_text", TEXTS)
@sweep(100, 500)
def test_text_matches_python_313_ipaddress(to_text, tier):
    @tier
    @given(groups=words)
    def check(groups):
        packed = struct.pack("!8H", *groups)
        address = ipaddress.IPv6Address(packed)
        expected = f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)
        assert to_text(packed) == expected

    check()


@pytest.mark.skipif(not GLIBC, reason="glibc's inet_pton is the reference")
@pytest.mark.parametrize("pack", PACKS)
@sweep(200, 1000)
def test_pack_matches_glibc(pack, tier):
    @tier
    @given(text=st.one_of(
        st.text("0123456789abcdefABCDEF:.", max_size=45),
        st.lists(st.sampled_from(["::", ":", "0", "ffff", "12345", "1.2.3.4", "01", ".", "256", "%1"]),
                 max_size=12).map("".join),
    ))
    def check(text):
        try:
            expected = socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            expected = None
        assert pack(text) == expected
        assert pack(text.encode()) == expected

    check()


@pytest.mark.parametrize("pack", PACKS)
def test_pack_rejects_what_is_not_an_address(pack):
    for text in ("", ":", ":::", "1:2:3:4:5:6:7::8", "fe80::1%eth0", "::01.2.3.4", "é::1", "::1\0"):
        assert pack(text) is None, text


def test_ipv4():
    assert _inet.ipv4_pack("192.0.2.1") == bytes([192, 0, 2, 1])
    for text in ("256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "١.2.3.4"):
        assert _inet.ipv4_pack(text) is None, text
    assert _inet.ipv4_text(bytes([0, 10, 255, 1])) == "0.10.255.1"
