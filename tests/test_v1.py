"""Version 1 (text) headers: every strictness rule, on both backends."""

import socket

import pytest

import pyproxyproto as pp

TCP4 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"


@pytest.mark.parametrize(
    "line, family, source, destination",
    [
        (TCP4, socket.AF_INET, ("192.0.2.1", 56324), ("198.51.100.2", 443)),
        (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", socket.AF_INET,
         ("0.0.0.0", 0), ("255.255.255.255", 65535)),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", socket.AF_INET6,
         ("2001:db8::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0)),
        # Any form inet_pton accepts; the result is in RFC 5952 form.
        (b"PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::FFFF:192.0.2.1 80 443\r\n",
         socket.AF_INET6, ("2001:db8::1", 80, 0, 0), ("::ffff:192.0.2.1", 443, 0, 0)),
        (b"PROXY TCP6 :: ::1 1 1\r\n", socket.AF_INET6, ("::", 1, 0, 0), ("::1", 1, 0, 0)),
        (b"PROXY TCP6 1:2:3:4:5:6:7:: 1:0:0:1:0:0:0:1 1 1\r\n", socket.AF_INET6,
         ("1:2:3:4:5:6:7:0", 1, 0, 0), ("1:0:0:1::1", 1, 0, 0)),
        (b"PROXY TCP6 ::1.2.3.4 1:2:3:4:5:6:1.2.3.4 1 1\r\n", socket.AF_INET6,
         ("::102:304", 1, 0, 0), ("1:2:3:4:5:6:102:304", 1, 0, 0)),
    ],
)
def test_valid_tcp(backend, line, family, source, destination):
    h = backend.parse(line + b"payload")
    assert h.version == 1
    assert h.command is pp.Command.PROXY
    assert h.family == family
    assert h.protocol == socket.SOCK_STREAM
    assert h.source == source
    assert h.destination == destination
    assert h.length == len(line)
    assert h.tlvs == ()


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN \r\n",
        # The spec: anything up to the CRLF is ignored (HAProxy refuses this).
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        b"PROXY UNKNOWN not even \x00 an \xff address\r\n",
        b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",  # exactly 107 bytes
    ],
)
def test_valid_unknown(backend, line):
    h = backend.parse(line + b"GET / HTTP/1.1\r\n")
    assert (h.version, h.family, h.protocol) == (1, socket.AF_UNSPEC, 0)
    assert h.source is None and h.destination is None
    assert h.length == len(line)


def _tcp6_line(last_octet):
    src = b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    dst = b"ffff:ffff:ffff:ffff:ffff:ffff:1.2.3." + last_octet
    return b"PROXY TCP6 " + src + b" " + dst + b" 65535 6666\r\n"


def test_107_byte_line_is_the_limit(backend):
    line = _tcp6_line(b"4")
    assert len(line) == 107
    assert backend.parse(line).length == 107
    too_long = _tcp6_line(b"44")
    assert len(too_long) == 108
    with pytest.raises(pp.InvalidHeader, match="107 bytes"):
        backend.parse(too_long)


@pytest.mark.parametrize(
    "data, offset, words",
    [
        (b"proxy TCP4", 0, "not a PROXY protocol header"),
        (b"PROXy TCP4", 4, "expected 'PROXY '"),
        (b"PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 6, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", 6, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", 9, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4\r\n", 10, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY UNKNOWNX\r\n", 13, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY unknown\r\n", 6, "TCP4, TCP6 or UNKNOWN"),
        # IPv4: octets 0-255, no leading zeros, exactly four.
        (b"PROXY TCP4 256.1.2.3 1.2.3.4 1 2\r\n", 13, "invalid IPv4"),
        (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", 12, "invalid IPv4"),
        (b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", 16, "invalid IPv4"),
        (b"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", 18, "invalid IPv4"),
        (b"PROXY TCP4 1..2.3 1.2.3.4 1 2\r\n", 13, "invalid IPv4"),
        (b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", 11, "invalid IPv4"),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", 11, "invalid IPv4"),
        # IPv6: what glibc inet_pton accepts, and nothing more.
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 12, "invalid IPv6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 18, "invalid IPv6"),
        (b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 26, "invalid IPv6"),
        (b"PROXY TCP6 1:2:3:4:5:6:7::8 ::1 1 2\r\n", 26, "invalid IPv6"),
        (b"PROXY TCP6 1::2::3 ::1 1 2\r\n", 16, "invalid IPv6"),
        (b"PROXY TCP6 :1 ::1 1 2\r\n", 12, "invalid IPv6"),
        (b"PROXY TCP6 1: ::1 1 2\r\n", 13, "invalid IPv6"),
        (b"PROXY TCP6 12345:: ::1 1 2\r\n", 15, "invalid IPv6"),
        (b"PROXY TCP6 ::01.2.3.4 ::1 1 2\r\n", 15, "invalid IPv6"),
        (b"PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", 24, "invalid IPv6"),
        (b"PROXY TCP6 1:2:3:4:5:6::1.2.3.4 ::1 1 2\r\n", 25, "invalid IPv6"),
        # Ports: digits only, 0-65535, no leading zeros.
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", 31, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", 28, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", 27, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4  1 2\r\n", 27, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 +2\r\n", 29, "invalid port"),
        # Exactly four fields, then CRLF and never a lone CR or LF.
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", 30, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", 28, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", 30, "invalid port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", 31, "expected CRLF"),
        (b"PROXY UNKNOWN lone\nfeed\r\n", 18, "expected CRLF"),
        (b"PROXY UNKNOWN\rX", 14, "expected CRLF"),
        # No CRLF within 107 bytes, decided as soon as it cannot fit.
        (b"PROXY UNKNOWN " + b"a" * 200, 105, "107 bytes"),
        (b"PROXY UNKNOWN " + b"a" * 92, 105, "107 bytes"),
    ],
)
def test_invalid(backend, data, offset, words):
    with pytest.raises(pp.InvalidHeader) as info:
        backend.parse(data)
    assert info.value.offset == offset, str(info.value)
    assert words in str(info.value)
    assert f"offset {offset}" in str(info.value)
    # The verdict does not depend on what follows the offending byte.
    with pytest.raises(pp.InvalidHeader) as prefix_info:
        backend.parse(data[: offset + 1])
    assert prefix_info.value.offset == offset


def test_ipv6_line_that_cannot_fit_is_invalid_before_the_limit(backend):
    # 11 + 45 + 1 + 45 leaves 5 bytes, and " 0 0\r\n" alone needs 6.
    src = b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    data = b"PROXY TCP6 " + src + b" " + src
    with pytest.raises(pp.InvalidHeader) as info:
        backend.parse(data)
    assert "107 bytes" in str(info.value)
    assert info.value.offset < len(data)
    # One octet shorter, it could still fit: a prefix, not an error.
    shorter = data[:-1]
    with pytest.raises(pp.Incomplete) as incomplete:
        backend.parse(shorter)
    assert incomplete.value.needed == len(shorter) + 1


def test_disabled_version(backend):
    with pytest.raises(pp.InvalidHeader, match="v1 is disabled"):
        backend.parse(TCP4, v1=False)
    with pytest.raises(pp.InvalidHeader, match="v1 is disabled"):
        backend.parse(b"P", v1=False)
    assert backend.parse(TCP4, v2=False).version == 1
    with pytest.raises(ValueError, match="at least one"):
        backend.parse(TCP4, v1=False, v2=False)


def _octet_ok(text):
    return text.isdigit() and len(text) <= 3 and int(text) <= 255 and (
        text == "0" or not text.startswith("0"))


# Every decimal text of one to three digits, with and without leading
# zeros, and the odd ones out: the compiled reader takes each octet in one
# step, whatever its length.
OCTET_TEXTS = ([str(n) for n in range(1000)] + [f"0{n}" for n in range(100)]
               + [f"00{n}" for n in range(10)] + ["", "1234", "2550", "a", "1a"])


@pytest.mark.parametrize("position", range(8))
def test_every_octet_text_in_every_position(backend, position):
    for text in OCTET_TEXTS:
        octets = ["7"] * 8
        octets[position] = text
        src, dst = ".".join(octets[:4]), ".".join(octets[4:])
        line = f"PROXY TCP4 {src} {dst} 1 2\r\n".encode()
        if _octet_ok(text):
            h = backend.parse(line)
            assert (h.source, h.destination) == ((src, 1), (dst, 2)), line
        else:
            with pytest.raises(pp.InvalidHeader, match="invalid IPv4"):
                backend.parse(line)


def test_every_port_text(backend):
    texts = ([str(n) for n in range(0, 65536, 7)] + ["65535", "65536", "99999", "100000"]
             + ["00", "01", "065535", "0065535", ""])
    for text in texts:
        for line, port in ((f"PROXY TCP4 1.2.3.4 5.6.7.8 {text} 2\r\n", 0),
                           (f"PROXY TCP4 1.2.3.4 5.6.7.8 1 {text}\r\n", 1)):
            ok = text.isdigit() and int(text) <= 65535 and (text == "0" or text[0] != "0")
            if ok:
                h = backend.parse(line.encode())
                assert (h.source[1], h.destination[1])[port] == int(text), line
            else:
                with pytest.raises(pp.InvalidHeader):
                    backend.parse(line.encode())


# -- decisions documented in README.md, "What is validated" ---------------------------


def test_unknown_with_lone_crs_is_refused(backend):
    # "Ignore anything presented before the CRLF" does not reach past the
    # first CR: it ends the line or is a lone CR, which the spec says must
    # not be tolerated.
    line = b"PROXY UNKNOWN bogus\r\r\r\n"
    with pytest.raises(pp.InvalidHeader) as info:
        backend.parse(line + b"GET / HTTP/1.1\r\n")
    assert (info.value.offset, str(info.value)) == (20, "v1: expected CRLF at offset 20")
    for cut in range(20):
        with pytest.raises(pp.Incomplete) as incomplete:
            backend.parse(line[:cut])
        assert incomplete.value.needed == cut + 1
    with pytest.raises(pp.InvalidHeader, match="offset 20"):
        backend.parse(line[:21])


@pytest.mark.parametrize(
    "line, offset",
    [
        # As some nginx builds re-encode a header with one address of each family.
        (b"PROXY TCP6 2001:db8::1 192.0.2.1 56324 443\r\n", 26),
        (b"PROXY TCP6 192.0.2.1 2001:db8::1 56324 443\r\n", 14),
        (b"PROXY TCP4 192.0.2.1 2001:db8::1 56324 443\r\n", 24),
    ],
)
def test_an_address_of_the_other_family_is_refused(backend, line, offset):
    # "The advertised protocol family dictates what format to use."
    with pytest.raises(pp.InvalidHeader) as info:
        backend.parse(line)
    family = "IPv6" if line[9:10] == b"6" else "IPv4"
    assert str(info.value) == f"v1: invalid {family} address at offset {offset}"
    assert info.value.offset == offset
