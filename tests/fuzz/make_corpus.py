#!/usr/bin/env python3
"""Write the fuzzing seed corpus: valid and near-valid PROXY headers.

    python tests/fuzz/make_corpus.py            # (re)write tests/fuzz/corpus/
    python tests/fuzz/make_corpus.py --check    # exit 1 if a file is missing or differs

Valid headers come from pyproxyproto.build; the near-valid ones are
assembled here by hand (struct, byte edits) so they do not depend on the
builder.  Every seed is at most a few KiB.  The output is deterministic,
and tests/test_fuzz_corpus.py checks that the committed files match it.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def _import_pp():
    try:
        import pyproxyproto
    except ImportError:  # run from a checkout without installing
        sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
        import pyproxyproto
    return pyproxyproto


def tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!BH", t, len(value)) + value


def v2(ver_cmd: int, fam: int, body: bytes, length: int | None = None) -> bytes:
    """A v2 header by hand; ``length`` overrides the length field."""
    n = len(body) if length is None else length
    return SIG + struct.pack("!BBH", ver_cmd, fam, n) + body


def inet_block(src="192.0.2.1", dst="198.51.100.2", sport=56324, dport=443) -> bytes:
    return socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + struct.pack(
        "!HH", sport, dport
    )


def inet6_block(src="2001:db8::1", dst="2001:db8::2", sport=56324, dport=443) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack("!HH", sport, dport)
    )


def ssl_value(client: int, verify: int, subs: list[tuple[int, bytes]]) -> bytes:
    return struct.pack("!BI", client, verify) + b"".join(tlv(t, v) for t, v in subs)


def generate() -> dict[str, bytes]:
    pp = _import_pp()
    def build(*args: object, **kwargs: object) -> bytes:
        # The seeds were generated when PROXY was build()'s default even
        # without addresses; keep them byte for byte.
        kwargs.setdefault("command", pp.Command.PROXY)
        return pp.build(*args, **kwargs)  # type: ignore[arg-type]

    LOCAL = pp.Command.LOCAL
    DGRAM = socket.SOCK_DGRAM
    out: dict[str, bytes] = {}

    # -- v1: every form -------------------------------------------------------------
    v1 = {
        "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        "v1-tcp4-extremes": b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
        "v1-tcp6-loopback": b"PROXY TCP6 :: ::1 1 65535\r\n",
        "v1-tcp6-mapped": b"PROXY TCP6 ::ffff:192.0.2.1 ::FFFF:198.51.100.2 80 8080\r\n",
        "v1-tcp6-embedded-v4": b"PROXY TCP6 ::1.2.3.4 1:2:3:4:5:6:1.2.3.4 1 1\r\n",
        "v1-tcp6-uncompressed": b"PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 1:2:3:4:5:6:7:: 1 2\r\n",
        "v1-tcp6-longest": (
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
            b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n"
        ),
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v1-unknown-space": b"PROXY UNKNOWN \r\n",
        "v1-unknown-addresses": b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        "v1-unknown-binary-tail": b"PROXY UNKNOWN not \x00 an \xff address\r\n",
        "v1-unknown-107": b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",
        "v1-built-tcp4": build(("203.0.113.7", 1), ("10.0.0.1", 80), version=1),
        "v1-built-tcp6": build(("fe80::1", 2, 0, 0), ("::ffff:10.0.0.1", 3, 0, 0), version=1),
        "v1-built-unknown": build(version=1),
    }
    out.update(v1)
    out["v1-tcp4-payload"] = v1["v1-tcp4"] + PAYLOAD
    out["v1-unknown-payload"] = v1["v1-unknown"] + PAYLOAD

    # v1 near-valid: one defect each.
    out.update(
        {
            "v1-bad-leading-zero": b"PROXY TCP4 192.0.2.01 198.51.100.2 56324 443\r\n",
            "v1-bad-octet-256": b"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",
            "v1-bad-three-octets": b"PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n",
            "v1-bad-port-65536": b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
            "v1-bad-port-leading-zero": b"PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n",
            "v1-bad-port-sign": b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n",
            "v1-bad-lf-only": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",
            "v1-bad-cr-only": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX",
            "v1-bad-tcp5": b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
            "v1-bad-lowercase": b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
            "v1-bad-double-space": b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
            "v1-bad-trailing-space": b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
            "v1-bad-tab": b"PROXY\tTCP4 192.0.2.1 198.51.100.2 1 2\r\n",
            "v1-bad-family-mismatch": b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",
            "v1-bad-v6-nine-groups": b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
            "v1-bad-v6-triple-colon": b"PROXY TCP6 1:::2 ::1 1 2\r\n",
            "v1-bad-v6-two-gaps": b"PROXY TCP6 1::2::3 ::1 1 2\r\n",
            "v1-bad-v6-zone": b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            "v1-bad-v6-short-group-v4": b"PROXY TCP6 ::1.2.3 ::1 1 2\r\n",
            "v1-bad-unknownx": b"PROXY UNKNOWNX\r\n",
            "v1-bad-unknown-lf": b"PROXY UNKNOWN \n",
            "v1-bad-108": b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",
            "v1-bad-no-crlf-107": b"PROXY UNKNOWN " + b"x" * 93,
            "v1-bad-port-missing": b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            "v1-bad-unknown-lone-crs": b"PROXY UNKNOWN bogus\r\r\r\n",
            "v1-bad-tcp6-with-ipv4": b"PROXY TCP6 2001:db8::1 192.0.2.1 56324 443\r\n",
        }
    )
    # v1 truncations: inside each field.
    line = v1["v1-tcp4"]
    for cut in (1, 6, 8, 11, 20, 33, 40, len(line) - 1):
        out[f"v1-trunc-tcp4-{cut}"] = line[:cut]
    line = v1["v1-tcp6-longest"]
    for cut in (12, 60, len(line) - 3):
        out[f"v1-trunc-tcp6-{cut}"] = line[:cut]
    out["v1-trunc-unknown"] = b"PROXY UNKNOWN"

    # -- v2: every family, command and transport ------------------------------------
    ip4 = (("192.0.2.1", 56324), ("198.51.100.2", 443))
    ip6 = (("2001:db8::1", 56324, 0, 0), ("2001:db8::2", 443, 0, 0))
    out.update(
        {
            "v2-inet-stream": build(*ip4),
            "v2-inet-dgram": build(*ip4, protocol=DGRAM),
            "v2-inet6-stream": build(*ip6),
            "v2-inet6-dgram": build(*ip6, protocol=DGRAM),
            "v2-inet6-mapped": build(("::ffff:192.0.2.1", 1, 0, 0), ("::", 0, 0, 0)),
            "v2-unix-stream": build("/run/app.sock", "/run/lb.sock"),
            "v2-unix-dgram": build("/tmp/a", "/tmp/b", protocol=DGRAM),
            "v2-unix-abstract": build(b"\0app", b"\0lb\0x"),
            "v2-unix-unnamed": build("", ""),
            "v2-unix-108": build("p" * 108, "/" + "q" * 107),
            "v2-proxy-unspec": build(),
            "v2-local": build(command=LOCAL),
            "v2-local-inet": build(*ip4, command=LOCAL),
            "v2-local-unix-tlvs": build("/a", "/b", command=LOCAL, tlvs=[(0x04, b"")]),
        }
    )
    out["v2-inet-payload"] = out["v2-inet-stream"] + PAYLOAD
    out["v2-inet-v1-payload"] = out["v2-inet-stream"] + v1["v1-tcp4"]

    # -- v2 TLVs ------------------------------------------------------------------------
    ssl_full = ssl_value(
        0x07,
        0,
        [
            (0x21, b"TLSv1.3"),
            (0x22, b"client.example.com"),
            (0x23, b"TLS_AES_256_GCM_SHA384"),
            (0x24, b"SHA256"),
            (0x25, b"RSA2048"),
            (0x26, b"X25519"),
            (0x27, b"rsa_pss_rsae_sha256"),
            (0x28, bytes(range(48))),
        ],
    )
    all_tlvs = [
        (0x01, b"h2"),
        (0x02, b"api.example.com"),
        (0x04, b"\0\0\0"),
        (0x05, bytes(range(16))),
        (0x20, ssl_full),
        (0x30, b"blue"),
        (0xE0, (0x0123456789ABCDEF).to_bytes(8, "big")),
        (0xEA, b"\x01vpce-0123456789abcdef0"),
        (0xEE, b"\x01" + (0x12345678).to_bytes(4, "little")),
    ]
    out.update(
        {
            "v2-tlv-alpn": build(*ip4, tlvs=[(0x01, b"http/1.1")]),
            "v2-tlv-authority-255": build(*ip4, tlvs=[(0x02, b"a" * 255)]),
            "v2-tlv-unique-id-128": build(*ip6, tlvs=[(0x05, b"\xab" * 128)]),
            "v2-tlv-noop-empty": build(*ip4, tlvs=[(0x04, b"")]),
            "v2-tlv-netns": build(*ip4, tlvs=[(0x30, b"ns1")]),
            "v2-tlv-ssl": build(*ip4, tlvs=[(0x20, ssl_full)]),
            "v2-tlv-ssl-unverified": build(
                *ip6, tlvs=[(0x20, ssl_value(0x01, 1, [(0x21, b"TLSv1.2"), (0x23, b"ECDHE")]))]
            ),
            "v2-tlv-ssl-bare": build(*ip4, tlvs=[(0x20, ssl_value(0, 0, []))]),
            "v2-tlv-ssl-short": build(*ip4, tlvs=[(0x20, b"\x01\0\0")]),
            "v2-tlv-ssl-bad-subtlv": build(*ip4, tlvs=[(0x20, ssl_value(1, 0, []) + b"\x21\x00\x09TLS")]),
            "v2-tlv-aws": build(*ip4, tlvs=[(0xEA, b"\x01vpce-0123456789abcdef0")]),
            "v2-tlv-aws-other-subtype": build(*ip4, tlvs=[(0xEA, b"\x02x"), (0xEA, b"")]),
            "v2-tlv-azure": build(*ip6, tlvs=[(0xEE, b"\x01\x78\x56\x34\x12")]),
            "v2-tlv-azure-bad-length": build(*ip6, tlvs=[(0xEE, b"\x01\x78\x56")]),
            "v2-tlv-gcp": build(*ip4, tlvs=[(0xE0, b"\0\0\0\0\0\0\0\x2a")]),
            "v2-tlv-gcp-bad-length": build(*ip4, tlvs=[(0xE0, b"\x2a")]),
            "v2-tlv-custom": build(*ip4, tlvs=[(0xE5, b"custom"), (0xFF, b"")]),
            "v2-tlv-all": build(*ip4, tlvs=all_tlvs),
            "v2-tlv-all-unix-crc": build("/s", "/t", tlvs=all_tlvs, crc32c=True),
            "v2-tlv-duplicates": build(*ip4, tlvs=[(0x01, b"h2"), (0x01, b"http/1.1"), (0x02, b"x")]),
            "v2-tlv-utf8": build(*ip4, tlvs=[(0x02, "h\u00e9llo".encode()), (0x30, b"\xff\xfe")]),
            "v2-crc32c": build(*ip4, crc32c=True),
            "v2-crc32c-ssl": build(*ip6, tlvs=[(0x20, ssl_full)], crc32c=True),
            "v2-crc32c-local": build(command=LOCAL, crc32c=True),
            "v2-crc32c-unspec": build(crc32c=True),
            "v2-tlv-local-unspec": build(command=LOCAL, tlvs=[(0x01, b"h2")]),
            "v2-tlv-large": build(*ip4, tlvs=[(0xE1, bytes(range(256)) * 12)]),
        }
    )
    # Hand-placed CRC32C TLVs, sealed here: the checksum covers the whole
    # header with the first CRC32C value zeroed.
    from pyproxyproto._parser_py import crc32c

    def seal(header: bytes, value_at: int) -> bytes:
        crc = crc32c(header[:value_at] + b"\0\0\0\0" + header[value_at + 4 :])
        return header[:value_at] + crc.to_bytes(4, "big") + header[value_at + 4 :]

    good = out["v2-crc32c"]
    zero = tlv(0x03, b"\0\0\0\0")
    out["v2-crc32c-first"] = seal(v2(0x21, 0x11, inet_block() + zero + tlv(0x01, b"h2")), 31)
    out["v2-crc32c-two"] = seal(v2(0x21, 0x11, inet_block() + zero + tlv(0x03, b"\xde\xad\xbe\xef")), 31)
    out["v2-crc32c-two-stale"] = v2(0x21, 0x11, inet_block() + tlv(0x03, good[-4:]) + zero)
    out["v2-crc32c-local-inet"] = seal(v2(0x20, 0x11, b"\xff" * 12 + zero), 31)
    wrong = bytearray(good)
    wrong[-1] ^= 0x01
    out["v2-crc32c-wrong"] = bytes(wrong)
    flipped = bytearray(good)
    flipped[17] ^= 0x80  # the source address, not the checksum
    out["v2-crc32c-wrong-address"] = bytes(flipped)
    out["v2-crc32c-zero"] = good[:-4] + b"\0\0\0\0"

    # -- v2 hand-made edge cases --------------------------------------------------------
    inet = inet_block()
    out.update(
        {
            "v2-local-garbage-block": v2(0x20, 0x11, b"\xff" * 12),
            "v2-local-short-block": v2(0x20, 0x21, b"\x01" * 7),
            "v2-local-family-0x45": v2(0x20, 0x45, tlv(0x01, b"h2")),
            "v2-local-family-0x13": v2(0x20, 0x13, inet + tlv(0x04, b"")),
            "v2-local-family-0x10": v2(0x20, 0x10, inet),
            "v2-unix-garbage-after-nul": v2(0x21, 0x31, (b"/a\0" + b"\xee" * 105) * 2),
            "v2-unix-non-utf8": v2(0x21, 0x31, (b"/\xff\xfe" + bytes(105)) * 2),
            "v2-unix-abstract-inner-nul": v2(0x21, 0x32, (b"\0a\0b" + bytes(104)) * 2),
            "v2-inet-extra-block": v2(0x21, 0x11, inet + b"\x04\x00\x00"),
            "v2-max-length-field-short": v2(0x21, 0x11, inet, length=0xFFFF),
            "v2-bad-signature": SIG[:5] + b"\x01" + SIG[6:] + out["v2-inet-stream"][12:],
            "v2-bad-signature-last": SIG[:11] + b"\x0b" + out["v2-inet-stream"][12:],
            "v2-bad-version-1": v2(0x11, 0x11, inet),
            "v2-bad-version-3": v2(0x31, 0x11, inet),
            "v2-bad-command-2": v2(0x22, 0x11, inet),
            "v2-bad-command-f": v2(0x2F, 0x11, inet),
            "v2-bad-family-0x41": v2(0x21, 0x41, inet),
            "v2-bad-family-0x13": v2(0x21, 0x13, inet),
            "v2-bad-family-0x10": v2(0x21, 0x10, inet),
            "v2-bad-family-0x01": v2(0x21, 0x01, b""),
            "v2-bad-length-inet": v2(0x21, 0x11, inet[:11]),
            "v2-bad-length-inet6": v2(0x21, 0x21, inet6_block()[:35]),
            "v2-bad-length-unix": v2(0x21, 0x31, bytes(215)),
            "v2-bad-tlv-stray-1": v2(0x21, 0x11, inet + b"\x01"),
            "v2-bad-tlv-stray-2": v2(0x21, 0x11, inet + tlv(0x01, b"h2") + b"\x01\x00"),
            "v2-bad-tlv-overrun": v2(0x21, 0x11, inet + b"\x01\x00\x05h2"),
            "v2-bad-unique-id-129": v2(0x21, 0x11, inet + tlv(0x05, b"u" * 129)),
            "v2-bad-crc32c-length-5": v2(0x21, 0x11, inet + tlv(0x03, b"\0" * 5)),
            "v2-bad-crc32c-length-3": v2(0x21, 0x11, inet + tlv(0x03, b"\0" * 3)),
        }
    )

    # -- v2 bodies the receiver must ignore (LOCAL, PROXY over AF_UNSPEC) -------------
    # Kept when they are a valid TLV area, discarded when not; and long
    # AUTHORITY values (255 is HAProxy's limit, not the spec's).
    rng = random.Random(19)
    netty_block = bytes.fromhex("c0a80001c0a8000bdc0401bb")
    unix_block = b"socket".ljust(108, b"\0") * 2
    out.update(
        {
            "v2-local-body-not-tlvs": v2(0x20, 0x00, b"\x20\x00\x10\x01"),
            "v2-proxy-unspec-body-not-tlvs": v2(0x21, 0x00, netty_block),
            "v2-local-inet-then-junk": v2(0x20, 0x11, inet + b"\x01\x00\x09h2"),
            "v2-local-stray-after-tlv": v2(0x20, 0x00, tlv(0x01, b"h2") + b"\x02"),
            "v2-local-unique-id-129": v2(0x20, 0x00, tlv(0x05, b"u" * 129)),
            "v2-local-crc32c-length-5": v2(0x20, 0x00, tlv(0x03, b"\0" * 5)),
            "v2-local-crc32c-in-junk": v2(0x20, 0x00, tlv(0x03, b"\xde\xad\xbe\xef") + b"\x01"),
            "v2-local-short-block-tlvs": v2(0x20, 0x11, tlv(0x04, b"x")),
            "v2-proxy-unspec-crc32c-wrong": v2(0x21, 0x00, tlv(0x02, b"a.example") + tlv(0x03, b"\0\0\0\1")),
            "v2-proxy-unspec-authority-1000": v2(0x21, 0x00, tlv(0x02, b"u" * 1000)),
            "v2-tlv-authority-256": v2(0x21, 0x11, inet + tlv(0x02, b"a" * 256)),
            "v2-tlv-authority-4000": build(*ip6, tlvs=[(0x02, b"long.example." * 307)], crc32c=True),
            # The peers' own test cases (go-proxyproto, Netty, ppp, HAProxy's
            # reg-tests/connection/proxy_protocol_tlv_validation.vtc).
            "v2-peer-netty-local": v2(0x20, 0x00, netty_block),
            "v2-peer-netty-unknown-protocol": v2(0x21, 0x00, netty_block),
            "v2-peer-ppp-unspecified-address-family": v2(0x20, 0x02, bytes.fromhex("7f0000017f0000020050bb01")),
            "v2-peer-ppp-no-address": v2(0x20, 0x02, b"") + b"\x00\x50",
            "v2-peer-go-local-unspec-with-tlv": v2(0x20, 0x00, rng.randbytes(1500)),
            "v2-peer-go-local-unix-stream-with-tlv": v2(0x20, 0x31, unix_block + rng.randbytes(300)),
            "v2-peer-go-proxy-tcp4-padded": v2(0x21, 0x11, inet + bytes(72)) + b"\x99\x97\x98",
            "v2-peer-haproxy-tlv-after-header": v2(0x21, 0x11, inet + tlv(0x02, b"12345")) + tlv(0x02, b"54321"),
            "v2-peer-haproxy-tlv-overrun": v2(0x21, 0x11, inet + b"\x02\x00\x0a1234512345", length=20),
            "v2-peer-haproxy-tlv-short": v2(0x21, 0x11, inet + tlv(0x02, b"1234"), length=20) + PAYLOAD,
        }
    )
    # v2 truncations: inside the signature, the fixed part, the block and a TLV.
    full = out["v2-tlv-all"]
    for cut in (1, 5, 12, 13, 14, 15, 16, 20, 28, 31, 40, len(full) - 1):
        out[f"v2-trunc-all-{cut}"] = full[:cut]
    unix = out["v2-unix-stream"]
    for cut in (16, 100, len(unix) - 1):
        out[f"v2-trunc-unix-{cut}"] = unix[:cut]
    crc_h = out["v2-crc32c-ssl"]
    out["v2-trunc-crc32c-ssl"] = crc_h[: len(crc_h) - 2]

    # -- neither ------------------------------------------------------------------------
    out.update(
        {
            "other-empty": b"",
            "other-http": PAYLOAD,
            "other-tls-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "other-cr": b"\r",
            "other-p": b"P",
            "other-nul": b"\0",
        }
    )
    for name, data in out.items():
        assert len(data) <= 4096, (name, len(data))
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv[1:]
    corpus = generate()
    if check:
        bad = []
        for name, data in sorted(corpus.items()):
            path = os.path.join(CORPUS, name)
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        bad.append(f"differs: {name}")
            except FileNotFoundError:
                bad.append(f"missing: {name}")
        print("\n".join(bad) or f"corpus up to date ({len(corpus)} seeds)")
        return 1 if bad else 0
    os.makedirs(CORPUS, exist_ok=True)
    for name, data in sorted(corpus.items()):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(corpus)} seeds to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
