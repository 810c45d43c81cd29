"""pp.build: what it refuses, and that parse(build(...)) gives the fields back."""

import socket
import struct

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C


def test_v2_ipv4_bytes():
    data = pp.build(("192.0.2.1", 56324), ("198.51.100.2", 443))
    assert data == (
        C.V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 1, 198, 51, 100, 2])
        + struct.pack("!HH", 56324, 443)
    )


def test_v1_text():
    assert pp.build(("192.0.2.1", 1), ("198.51.100.2", 2), version=1) == (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n"
    )
    assert pp.build(("2001:DB8:0::1", 1), ("::FFFF:1.2.3.4", 2), version=1) == (
        b"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\n"
    )
    assert pp.build(version=1) == b"PROXY UNKNOWN\r\n"


def test_no_addresses_is_local():
    # Without addresses the default is a v2 LOCAL header (a health check);
    # PROXY with AF_UNSPEC only when asked for.
    assert pp.build() == C.V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert pp.build(command=pp.Command.LOCAL)[12:16] == b"\x20\x00\x00\x00"
    assert pp.build(command=pp.Command.PROXY)[12:16] == b"\x21\x00\x00\x00"
    assert pp.build(("192.0.2.1", 1), ("198.51.100.2", 2))[12] == 0x21
    h = pp.parse(pp.build(tlvs=[(C.PP2_TYPE_NOOP, b"")]))
    assert h.command is pp.Command.LOCAL and h.tlvs == ((C.PP2_TYPE_NOOP, b""),)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"version": 3}, "version"),
        ((("1.2.3.4", 1), None), {}, "both"),
        ((("1.2.3.4", 1), ("::1", 2)), {}, "different address families"),
        ((("1.2.3.4", 65536), ("1.2.3.4", 2)), {}, "port"),
        ((("1.2.3.4", -1), ("1.2.3.4", 2)), {}, "port"),
        ((("1.2.3.04", 1), ("1.2.3.4", 2)), {}, "not an IPv4 or IPv6"),
        ((("fe80::1%eth0", 1), ("::1", 2)), {}, "not an IPv4 or IPv6"),
        ((("example.com", 1), ("1.2.3.4", 2)), {}, "not an IPv4 or IPv6"),
        ((("1.2.3.4", 1, 0, 0), ("1.2.3.4", 2, 0, 0)), {}, "not an IPv4 or IPv6"),
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"version": 1, "tlvs": [(1, b"h2")]}, "TLVs"),
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"version": 1, "crc32c": True}, "TLVs"),
        (("/a", "/b"), {"version": 1}, "AF_UNIX"),
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"version": 1, "protocol": socket.SOCK_DGRAM}, "TCP"),
        ((), {"version": 1, "command": pp.Command.LOCAL}, "LOCAL"),
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"protocol": 0}, "protocol"),
        ((), {"tlvs": [(1, b"x" * 65536)]}, "limit is 65535"),
        ((), {"tlvs": [(C.PP2_TYPE_UNIQUE_ID, b"x" * 129)]}, "limit is 128"),
        # AUTHORITY has no cap of its own, only the header's 65535 bytes.
        ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"tlvs": [(C.PP2_TYPE_AUTHORITY, b"x" * 65521)]},
         "at most 65535"),
        ((), {"tlvs": [(C.PP2_TYPE_CRC32C, b"x")]}, "exactly 4"),
        ((), {"tlvs": [(C.PP2_TYPE_CRC32C, b"xxxx")], "crc32c": True}, "already has one"),
        ((), {"tlvs": [(256, b"")]}, "0 to 255"),
        ((), {"tlvs": [(1, b"x" * 40000), (1, b"x" * 40000)]}, "at most 65535"),
        (("a" * 109, "/b"), {}, "longer than 108"),
        (("/a\0b", "/b"), {}, "NUL"),
        ((("1.2.3.4",), ("1.2.3.4", 2)), {}, "source must be"),
        ((("2001:db8::1", 1, 1, 0), ("::1", 2, 0, 0)), {}, "flowinfo is 1"),
        ((("2001:db8::1", 1, 0, 0), ("::1", 2, 0, 3)), {}, "scope_id is 3"),
        ((), {"command": 2}, "command"),
    ],
)
def test_bad_arguments(args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        pp.build(*args, **kwargs)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((("1.2.3.4", "80"), ("1.2.3.4", 2)), {}, "port must be an int, not str"),
        ((("1.2.3.4", True), ("1.2.3.4", 2)), {}, "port must be an int, not bool"),
        ((("1.2.3.4", 1.0), ("1.2.3.4", 2)), {}, "port must be an int, not float"),
        (((b"1.2.3.4", 1), ("1.2.3.4", 2)), {}, "host must be a str, not bytes"),
        (((1234, 1), ("1.2.3.4", 2)), {}, "host must be a str"),
        ((["1.2.3.4", 1], ["1.2.3.4", 2]), {}, "must be a .* tuple"),
        ((("::1", 1, "0", 0), ("::1", 2, 0, 0)), {}, "flowinfo must be an int"),
        ((), {"tlvs": [(1, "h2")]}, "not str"),
        ((), {"tlvs": [(1, 7)]}, "bytes-like, not int"),
        ((), {"tlvs": [("1", b"h2")]}, "TLV type must be an int"),
        ((), {"tlvs": [b"ab"]}, "TLV"),
        ((), {"version": "2"}, "version must be an int"),
        ((), {"command": "PROXY"}, "command must be a Command"),
    ],
)
def test_wrong_types_are_type_errors(args, kwargs, words):
    with pytest.raises(TypeError, match=words):
        pp.build(*args, **kwargs)


CASES = [
    ((("192.0.2.1", 56324), ("198.51.100.2", 443)), {}),
    ((("192.0.2.1", 0), ("198.51.100.2", 65535)), {"version": 1}),
    ((("2001:db8::1", 1, 0, 0), ("::ffff:192.0.2.1", 2, 0, 0)), {"version": 1}),
    ((("2001:db8::1", 1, 0, 0), ("::1", 2, 0, 0)), {"protocol": socket.SOCK_DGRAM}),
    ((("192.0.2.1", 53), ("198.51.100.2", 53)), {"protocol": socket.SOCK_DGRAM, "crc32c": True}),
    (("/run/a.sock", "/run/b.sock"), {}),
    ((b"\0abstract", "/x"), {"protocol": socket.SOCK_DGRAM}),
    ((), {}),
    ((), {"command": pp.Command.PROXY}),
    ((), {"version": 1}),
    ((), {"command": pp.Command.LOCAL, "tlvs": [(C.PP2_TYPE_NOOP, b"")]}),
    ((("10.0.0.1", 1), ("10.0.0.2", 2)), {"command": pp.Command.LOCAL}),
    # AUTHORITY longer than HAProxy's 255: up to what the header can hold
    # (Envoy's suite sends 65520 bytes after an IPv4 block).
    ((("1.2.3.4", 1), ("1.2.3.4", 2)), {"tlvs": [(C.PP2_TYPE_AUTHORITY, b"a" * 65520)]}),
    ((("2001:db8::1", 1, 0, 0), ("::1", 2, 0, 0)),
     {"tlvs": [(C.PP2_TYPE_AUTHORITY, b"long.example" * 100)], "crc32c": True}),
    ((), {"tlvs": [(C.PP2_TYPE_AUTHORITY, b"b" * 256)]}),
    (
        (("10.0.0.1", 1), ("10.0.0.2", 2)),
        {
            "tlvs": [
                (C.PP2_TYPE_ALPN, b"h2"),
                (C.PP2_TYPE_AUTHORITY, "bücher.example".encode()),
                (C.PP2_TYPE_UNIQUE_ID, b"\x00" * 128),
                (C.PP2_TYPE_NETNS, b"blue"),
                (0xE0, struct.pack("!Q", 5)),
                (0xF0, b"x" * 60000),
            ],
            "crc32c": True,
        },
    ),
]


@pytest.mark.parametrize("args, kwargs", CASES)
def test_round_trip(backend, args, kwargs):
    data = pp.build(*args, **kwargs)
    h = backend.parse(data + b"payload")
    assert h.length == len(data)
    assert h.version == kwargs.get("version", 2)
    default = pp.Command.PROXY if args or h.version == 1 else pp.Command.LOCAL
    assert h.command == kwargs.get("command", default)
    if args and h.command == pp.Command.PROXY:
        assert (h.source, h.destination) == args
        assert h.protocol == kwargs.get("protocol", socket.SOCK_STREAM)
    else:
        assert h.source is None and h.destination is None
    sent = list(kwargs.get("tlvs", ()))
    assert [t for t in h.tlvs if t[0] != C.PP2_TYPE_CRC32C] == sent
    assert (h.crc32c is not None) == kwargs.get("crc32c", False)
    # And once more: rebuilding from the parsed fields gives the same bytes.
    if h.command == pp.Command.PROXY or not args:
        again = pp.build(
            h.source, h.destination, version=h.version, command=h.command,
            protocol=h.protocol or socket.SOCK_STREAM,
            tlvs=[t for t in h.tlvs if t[0] != C.PP2_TYPE_CRC32C],
            crc32c=h.crc32c is not None,
        )
        assert again == data
