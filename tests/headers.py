"""Valid headers of every kind, and the buffer types they may arrive in, shared by the tests."""

import array
import socket
import struct

import pyproxyproto as pp
from pyproxyproto import _constants as C


def ssl_value():
    subs = [
        (C.PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3"),
        (C.PP2_SUBTYPE_SSL_CN, b"client.example"),
        (C.PP2_SUBTYPE_SSL_CIPHER, b"TLS_AES_256_GCM_SHA384"),
    ]
    return b"\x07" + bytes(4) + b"".join(struct.pack("!BH", t, len(v)) + v for t, v in subs)


VALID = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::ffff:2 56324 443\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-unknown-long": b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
    "v2-ipv4": pp.build(("192.0.2.1", 56324), ("198.51.100.2", 443)),
    "v2-ipv4-udp": pp.build(("192.0.2.1", 53), ("198.51.100.2", 53), protocol=socket.SOCK_DGRAM),
    "v2-ipv6-tlvs": pp.build(
        ("2001:db8::1", 56324, 0, 0),
        ("2001:db8::2", 443, 0, 0),
        tlvs=[
            (C.PP2_TYPE_ALPN, b"h2"),
            (C.PP2_TYPE_AUTHORITY, b"example.com"),
            (C.PP2_TYPE_UNIQUE_ID, b"\x01" * 16),
            (C.PP2_TYPE_SSL, ssl_value()),
        ],
    ),
    "v2-ipv4-crc32c": pp.build(("192.0.2.1", 56324), ("198.51.100.2", 443), crc32c=True),
    "v2-local": pp.build(command=pp.Command.LOCAL),
    "v2-unspec": pp.build(command=pp.Command.PROXY, tlvs=[(C.PP2_TYPE_NOOP, b"")]),
    "v2-unix": pp.build("/run/lb.sock", b"\0abstract"),
    "v2-cloud": pp.build(
        ("10.0.0.1", 1),
        ("10.0.0.2", 2),
        tlvs=[
            (C.PP2_TYPE_AWS, b"\x01vpce-0123456789abcdef0"),
            (C.PP2_TYPE_AZURE, b"\x01" + struct.pack("<I", 7)),
            (C.PP2_TYPE_GCP, struct.pack("!Q", 123456789)),
        ],
    ),
}


def buffers(data):
    """``data`` as every kind of buffer parse() accepts: (label, buffer) pairs."""
    padded = bytearray(b"xx" + data + b"yy")
    yield "bytes", data
    yield "bytearray", bytearray(data)
    yield "memoryview", memoryview(data)
    yield "memoryview slice at an offset", memoryview(padded)[2:-2]
    yield "array('B')", array.array("B", data)
    if len(data) % 2 == 0:
        yield "array('H')", array.array("H", data)
    yield "bytes subclass", type("B", (bytes,), {})(data)
