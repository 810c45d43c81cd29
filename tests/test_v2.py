"""Version 2 (binary) headers: every strictness rule, TLVs and views, on both backends."""

import socket
import struct

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C

SIG = C.V2_SIGNATURE


def v2(ver_cmd, fam, body):
    return SIG + struct.pack("!BBH", ver_cmd, fam, len(body)) + body


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


INET = socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.2") + struct.pack("!HH", 56324, 443)
INET6 = (
    socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.1")
    + struct.pack("!HH", 1, 65535)
)
UNIX = b"/run/a.sock".ljust(108, b"\0") + b"\0abstract".ljust(108, b"\0")


@pytest.mark.parametrize(
    "fam, body, family, protocol, source, destination",
    [
        (0x11, INET, socket.AF_INET, socket.SOCK_STREAM, ("192.0.2.1", 56324), ("198.51.100.2", 443)),
        (0x12, INET, socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.1", 56324), ("198.51.100.2", 443)),
        (0x21, INET6, socket.AF_INET6, socket.SOCK_STREAM,
         ("2001:db8::1", 1, 0, 0), ("::ffff:192.0.2.1", 65535, 0, 0)),
        (0x22, INET6, socket.AF_INET6, socket.SOCK_DGRAM,
         ("2001:db8::1", 1, 0, 0), ("::ffff:192.0.2.1", 65535, 0, 0)),
        (0x31, UNIX, socket.AF_UNIX, socket.SOCK_STREAM, "/run/a.sock", b"\0abstract"),
        (0x32, UNIX, socket.AF_UNIX, socket.SOCK_DGRAM, "/run/a.sock", b"\0abstract"),
        (0x31, bytes(216), socket.AF_UNIX, socket.SOCK_STREAM, "", ""),
        (0x00, b"", socket.AF_UNSPEC, 0, None, None),
    ],
)
def test_proxy_families(backend, fam, body, family, protocol, source, destination):
    data = v2(0x21, fam, body)
    h = backend.parse(data + b"payload")
    assert (h.version, h.command, h.family, h.protocol) == (2, pp.Command.PROXY, family, protocol)
    assert h.source == source
    assert h.destination == destination
    assert h.length == len(data)
    assert h.tlvs == ()


def test_unix_path_decodes_like_fsdecode(backend):
    raw = b"/tmp/\xff\xfe.sock"
    h = backend.parse(v2(0x21, 0x31, raw.ljust(108, b"\0") + bytes(108)))
    import os

    assert h.source == os.fsdecode(raw)


@pytest.mark.parametrize("fam", [0x00, 0x11, 0x21, 0x31, 0x13, 0x41, 0xFF])
def test_local_keeps_no_addresses(backend, fam):
    block = {1: INET, 2: INET6, 3: UNIX}.get(fam >> 4, b"")
    data = v2(0x20, fam, block + tlv(C.PP2_TYPE_NOOP, b"x"))
    h = backend.parse(data)
    assert h.command is pp.Command.LOCAL
    assert h.source is None and h.destination is None
    assert h.tlvs == ((C.PP2_TYPE_NOOP, b"x"),)
    assert h.length == len(data)


def test_local_shorter_than_its_address_block(backend):
    # The block is not there to skip: the body is read from byte 16, kept
    # when it is a TLV area and discarded when not (see test_conformance).
    h = backend.parse(v2(0x20, 0x11, b"\x01\x02\x03"))
    assert h.command is pp.Command.LOCAL and h.tlvs == () and h.length == 19
    h = backend.parse(v2(0x20, 0x11, tlv(C.PP2_TYPE_NOOP, b"")))
    assert h.tlvs == ((C.PP2_TYPE_NOOP, b""),) and h.length == 19


def test_unspec_tlvs_start_at_byte_16(backend):
    h = backend.parse(v2(0x21, 0x00, tlv(C.PP2_TYPE_AUTHORITY, b"example.com")))
    assert h.authority == "example.com"


@pytest.mark.parametrize(
    "data, offset, words",
    [
        (b"\r\n\r\n\x00\r\nQUIX\n" + bytes(4), 10, "bad signature"),
        (b"\r\r", 1, "bad signature"),
        (v2(0x11, 0x11, INET), 12, "unsupported version 1"),
        (v2(0x31, 0x11, INET), 12, "unsupported version 3"),
        (v2(0x22, 0x11, INET), 12, "unsupported command 2"),
        (v2(0x2F, 0x11, INET), 12, "unsupported command 15"),
        (v2(0x21, 0x10, INET), 13, "invalid address family/protocol 0x10"),
        (v2(0x21, 0x13, INET), 13, "0x13"),
        (v2(0x21, 0x01, b""), 13, "0x01"),
        (v2(0x21, 0x41, INET), 13, "0x41"),
        (v2(0x21, 0x11, INET[:11]), 14, "shorter than the 12-byte address block"),
        (v2(0x21, 0x21, INET6[:35]), 14, "36-byte"),
        (v2(0x21, 0x31, UNIX[:215]), 14, "216-byte"),
        # TLVs must tile the rest exactly.
        (v2(0x21, 0x11, INET + b"\x04"), 28, "1 stray byte(s)"),
        (v2(0x21, 0x11, INET + b"\x04\x00"), 28, "2 stray byte(s)"),
        (v2(0x21, 0x11, INET + b"\x04\x00\x02x"), 28, "overruns"),
        (v2(0x21, 0x11, INET + tlv(4, b"") + b"\x01\x00\x05abc"), 31, "overruns"),
        (v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_CRC32C, b"abc")), 28, "invalid length 3"),
        (v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_CRC32C, b"abcde")), 28, "invalid length 5"),
        (v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_UNIQUE_ID, b"u" * 129)), 28, "invalid length 129"),
        (b"\x00", 0, "not a PROXY protocol header"),
        (b"GET / HTTP/1.1\r\n", 0, "not a PROXY protocol header"),
    ],
)
def test_invalid(backend, data, offset, words):
    with pytest.raises(pp.InvalidHeader) as info:
        backend.parse(data)
    assert info.value.offset == offset, str(info.value)
    assert words in str(info.value)
    assert not isinstance(info.value, pp.ChecksumMismatch)


def test_invalid_as_soon_as_known(backend):
    # A bad TLV length is reported although the header has not fully arrived.
    data = v2(0x21, 0x11, INET + b"\x01\x00\x10" + b"x" * 16)[:-1]
    data = data[:14] + struct.pack("!H", 12 + 3 + 10) + data[16:]
    with pytest.raises(pp.InvalidHeader, match="overruns"):
        backend.parse(data[:31])
    # And a short address block as soon as the length field is there.
    with pytest.raises(pp.InvalidHeader, match="address block"):
        backend.parse(SIG + b"\x21\x11\x00\x04")


def test_limits_that_are_valid(backend):
    # UNIQUE_ID up to 128 bytes; AUTHORITY has no cap (255 is HAProxy's).
    body = INET + tlv(C.PP2_TYPE_UNIQUE_ID, b"u" * 128) + tlv(C.PP2_TYPE_AUTHORITY, b"a" * 256)
    h = backend.parse(v2(0x21, 0x11, body))
    assert h.unique_id == b"u" * 128 and h.authority == "a" * 256
    # No limit on other TLVs: a 64 KiB header parses.
    big = INET + tlv(0xE5, b"z" * (0xFFFF - 12 - 3))
    h = backend.parse(v2(0x21, 0x11, big))
    assert h.length == 16 + 0xFFFF
    assert h.tlvs == ((0xE5, b"z" * (0xFFFF - 15)),)


def ssl_value(client, verify, *subs):
    return bytes([client]) + struct.pack("!I", verify) + b"".join(tlv(t, v) for t, v in subs)


def test_all_tlvs_in_wire_order_and_header_from_the_first(backend):
    ssl = ssl_value(
        C.PP2_CLIENT_SSL | C.PP2_CLIENT_CERT_CONN,
        0,
        (C.PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3"),
        (C.PP2_SUBTYPE_SSL_CN, b"client.example"),
        (C.PP2_SUBTYPE_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
        (C.PP2_SUBTYPE_SSL_SIG_ALG, b"RSA-SHA256"),
        (C.PP2_SUBTYPE_SSL_KEY_ALG, b"RSA2048"),
        (C.PP2_SUBTYPE_SSL_GROUP, b"X25519"),
        (C.PP2_SUBTYPE_SSL_SIG_SCHEME, b"rsa_pss_rsae_sha256"),
        (C.PP2_SUBTYPE_SSL_CLIENT_CERT, b"\x30\x82"),
    )
    tlvs = [
        (C.PP2_TYPE_NOOP, b""),
        (C.PP2_TYPE_ALPN, b"h2"),
        (C.PP2_TYPE_ALPN, b"http/1.1"),
        (C.PP2_TYPE_AUTHORITY, b"caf\xc3\xa9.example"),
        (C.PP2_TYPE_UNIQUE_ID, b"\x00\x01id"),
        (C.PP2_TYPE_SSL, ssl),
        (C.PP2_TYPE_NETNS, b"blue"),
        (C.PP2_TYPE_AWS, b"\x02other"),
        (C.PP2_TYPE_AWS, b"\x01vpce-08d2bf15fac5001c9"),
        (C.PP2_TYPE_AZURE, b"\x01" + struct.pack("<I", 0xDEADBEEF)),
        (C.PP2_TYPE_GCP, struct.pack("!Q", 2**64 - 2)),
        (0xF7, b"unknown"),
    ]
    h = backend.parse(v2(0x21, 0x21, INET6 + b"".join(tlv(t, v) for t, v in tlvs)))
    assert h.tlvs == tuple(tlvs)
    assert h.alpn == b"h2"
    assert h.authority == "café.example"
    assert h.unique_id == b"\x00\x01id"
    assert h.netns == "blue"
    assert h.aws_vpce_id == "vpce-08d2bf15fac5001c9"
    assert h.azure_link_id == 0xDEADBEEF
    assert h.gcp_psc_connection_id == 2**64 - 2
    assert h.crc32c is None
    s = h.ssl
    assert (s.client, s.verify, s.verified) == (3, 0, True)
    assert (s.version, s.cn, s.cipher, s.sig_alg, s.key_alg) == (
        "TLSv1.3", "client.example", "TLS_AES_128_GCM_SHA256", "RSA-SHA256", "RSA2048",
    )
    assert [t for t, _ in s.tlvs] == list(range(0x21, 0x29))


def test_header_absent_are_none(backend):
    h = backend.parse(v2(0x21, 0x11, INET))
    for name in ("alpn", "authority", "unique_id", "netns", "crc32c", "ssl",
                 "aws_vpce_id", "azure_link_id", "gcp_psc_connection_id"):
        assert getattr(h, name) is None, name


@pytest.mark.parametrize(
    "t, value, view",
    [
        (C.PP2_TYPE_SSL, b"\x01\x00\x00", "ssl"),                      # shorter than 5
        (C.PP2_TYPE_SSL, ssl_value(1, 0) + b"\x21\x00", "ssl"),          # sub-TLVs don't tile
        (C.PP2_TYPE_SSL, ssl_value(1, 0) + b"\x21\x00\x09abc", "ssl"),   # sub-TLV overrun
        (C.PP2_TYPE_AZURE, b"\x01\x00\x00", "azure_link_id"),
        (C.PP2_TYPE_GCP, b"\x00" * 7, "gcp_psc_connection_id"),
        (C.PP2_TYPE_AWS, b"", "aws_vpce_id"),
    ],
)
def test_malformed_custom_values_keep_the_header_valid(backend, t, value, view):
    h = backend.parse(v2(0x21, 0x11, INET + tlv(t, value)))
    assert getattr(h, view) is None
    assert h.tlvs == ((t, value),)


def test_text_header_never_raise(backend):
    h = backend.parse(v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_AUTHORITY, b"\xff\xfe")))
    assert h.authority == "\ufffd\ufffd"
    assert h.tlvs[0][1] == b"\xff\xfe"


def test_ssl_not_verified(backend):
    h = backend.parse(v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_SSL, ssl_value(1, 7))))
    assert h.ssl.verify == 7 and h.ssl.verified is False and h.ssl.cn is None



def test_views_follow_the_bytes_from_one_header_to_the_next(backend):
    # The Cython backend reuses the last value of a view when its bytes come
    # back: a header that differs in one byte, in length, or in being
    # ASCII, must still get its own values.
    def header(alpn, authority, version, cn, verify=0):
        ssl = ssl_value(1, verify, (C.PP2_SUBTYPE_SSL_VERSION, version), (C.PP2_SUBTYPE_SSL_CN, cn))
        tlvs = [(C.PP2_TYPE_ALPN, alpn), (C.PP2_TYPE_AUTHORITY, authority), (C.PP2_TYPE_SSL, ssl)]
        return v2(0x21, 0x11, INET + b"".join(tlv(t, v) for t, v in tlvs))

    sequence = [
        (b"h2", b"a.example", b"TLSv1.3", b"one"),
        (b"h2", b"a.example", b"TLSv1.3", b"one"),
        (b"h3", b"b.example", b"TLSv1.2", b"one"),
        (b"h3", b"b.example", b"TLSv1.2", b"two", 5),
        (b"h", b"b.exampl", b"TLSv1.", b"tw"),
        (b"", b"", b"", b""),
        (b"h2", b"caf\xc3\xa9.example", b"TLSv1.3", b"\xff"),
        (b"h2", b"caf\xc3\xa9.example", b"TLSv1.3", b"\xff"),
        (b"h2", b"a.example", b"TLSv1.3", b"one"),
    ]
    for alpn, authority, version, cn, *verify in sequence:
        h = backend.parse(header(alpn, authority, version, cn, *verify))
        assert h.alpn == alpn
        assert h.authority == authority.decode("utf-8", "replace")
        s = h.ssl
        assert (s.version, s.cn) == (version.decode(), cn.decode("utf-8", "replace"))
        assert s.verify == (verify[0] if verify else 0)
        assert s.tlvs == ((C.PP2_SUBTYPE_SSL_VERSION, version), (C.PP2_SUBTYPE_SSL_CN, cn))


# -- CRC32C -------------------------------------------------------------------------


def with_crc(body_tlvs, crc=None):
    data = v2(0x21, 0x11, INET + body_tlvs + tlv(C.PP2_TYPE_CRC32C, b"\0\0\0\0"))
    from pyproxyproto._crc32c import crc32c

    value = crc32c(data) if crc is None else crc
    return data[:-4] + struct.pack("!I", value)


def test_crc32c_known_vector(backend):
    assert backend.crc32c(b"123456789") == 0xE3069283
    assert backend.crc32c(b"") == 0
    assert backend.crc32c(b"56789", backend.crc32c(b"1234")) == 0xE3069283


def test_crc32c_valid(backend):
    data = with_crc(tlv(C.PP2_TYPE_ALPN, b"h2"))
    h = backend.parse(data)
    assert h.crc32c == struct.unpack("!I", data[-4:])[0]
    assert h.alpn == b"h2"


def test_crc32c_mismatch(backend):
    data = with_crc(b"", crc=0x12345678)
    with pytest.raises(pp.ChecksumMismatch) as info:
        backend.parse(data)
    assert info.value.offset == 28
    assert info.value.expected == 0x12345678
    assert "CRC32C mismatch at offset 28" in str(info.value)
    assert isinstance(info.value, pp.InvalidHeader)
    assert backend.parse(data, verify_checksum=False).crc32c == 0x12345678


def test_crc32c_covers_payload_free_header_only(backend):
    data = with_crc(b"")
    assert backend.parse(data + b"\xff" * 10).length == len(data)
    corrupted = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    with pytest.raises(pp.ChecksumMismatch):
        backend.parse(corrupted)


def test_first_crc32c_is_verified(backend):
    from pyproxyproto._crc32c import crc32c

    second = tlv(C.PP2_TYPE_CRC32C, b"\xff" * 4)
    data = v2(0x21, 0x11, INET + tlv(C.PP2_TYPE_CRC32C, b"\0\0\0\0") + second)
    data = data[:31] + struct.pack("!I", crc32c(data)) + data[35:]
    h = backend.parse(data)
    assert h.crc32c == crc32c(data[:31] + bytes(4) + data[35:])
    assert h.tlvs[1] == (C.PP2_TYPE_CRC32C, b"\xff" * 4)
    broken = data[:31] + b"\0\0\0\1" + data[35:]
    with pytest.raises(pp.ChecksumMismatch):
        backend.parse(broken)
