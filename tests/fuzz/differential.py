"""The per-input checks shared by the atheris harness (fuzz_parse.py) and the
pytest corpus test (tests/test_fuzz_corpus.py).

``check(data)`` raises AssertionError (or whatever escaped the parser) when
any of these fails for the bytes ``data``:

1. Only ProxyProtocolError.  Each backend's ``parse`` either returns a header
   or raises a ProxyProtocolError subclass (Incomplete with an int
   ``needed`` > len(data), InvalidHeader with an int ``offset`` >= 0,
   ChecksumMismatch with ``expected``/``computed``), for every combination
   of v1/v2 (at least one on) and verify_checksum, and for bytes, bytearray
   and memoryview input.  Reading every property, typed view, ``to_dict``,
   ``repr`` and ``hash`` of an accepted header never raises either.
2. Agreement.  Both backends give the same outcome: the same exception
   class, message, args, ``needed``, ``offset`` (and ``expected``/
   ``computed``), or headers with equal fields (types included), typed views,
   ``to_dict()``, ``repr`` and ``hash``.  Their ``crc32c`` functions agree
   with an independent table-driven CRC32C, also when continued.
3. Flag consistency.  v1-only / v2-only parsing equals the default for
   data that starts like that version, and refuses the other one at offset 0;
   verify_checksum=False differs from True only by accepting a header that
   True rejected with ChecksumMismatch.
4. Stream consistency.  An accepted header of length L parses equally from
   data[:L] and from any longer data; every strict prefix of it is Incomplete
   with prefix < needed <= L.  Every prefix of Incomplete data is Incomplete
   (needed not growing); InvalidHeader stays the same error when bytes are
   appended.  A header parsed from a bytearray does not change when the
   bytearray is overwritten afterwards.
5. Round trip through ``pyproxyproto.build``, by this rule:

   * the arguments are the parsed version, command, source, destination,
     protocol (v2 PROXY with addresses) and tlvs, in order;
   * v1 UNKNOWN and v2 PROXY UNSPEC have no addresses and are rebuilt
     without them (a PROXY UNSPEC body that was discarded, see 6, is not
     rebuilt: length recomputed); v2 LOCAL has none either, so a LOCAL
     header is rebuilt with all-zero placeholder addresses of its family
     when its family is INET/INET6/UNIX, its transport STREAM/DGRAM and its
     address block was all there, and without addresses (hence as
     UNSPEC/0) otherwise;
   * CRC32C TLVs, first rule, "verbatim": every TLV, CRC32C included, is
     copied byte for byte with crc32c=False.  Re-parsed with
     verify_checksum=False it gives the same fields (length recomputed for
     v1 and for LOCAL rebuilt without addresses).  Re-parsed with
     verify_checksum=True it is accepted exactly when its first CRC32C TLV
     holds the reference CRC32C of the rebuilt bytes, and otherwise fails
     with that ChecksumMismatch (offset, expected, computed).  Rebuilds of
     v2 PROXY INET/INET6 (and UNSPEC when its TLVs were its whole body) and
     of v1 TCP4 are byte-identical to the original, so a header that
     passed verification passes again;
   * second rule, "resealed": every v2 header is also rebuilt with its
     CRC32C TLVs dropped and crc32c=True.  That must parse with
     verification on, to the same TLVs minus CRC32C plus one CRC32C TLV
     at the end holding the reference CRC32C (or, if the header would pass
     65535 body bytes, ``build`` must refuse it with ValueError).
6. The body rule, against an independent reading of the TLVs.  For a v2
   header with a valid fixed part whose body the receiver must ignore
   (LOCAL with any byte 13, PROXY over AF_UNSPEC), the body never makes
   parse() fail: before the header is whole it is Incomplete with
   ``needed`` = its length; once whole it is accepted without
   verification, and with it too unless a CRC32C TLV among its TLVs is
   wrong (ChecksumMismatch).  Its TLVs are those that tile the body after
   the LOCAL family's address block (skipped when it fits) by the spec's
   rules, and none when they do not tile it.  PROXY over INET, INET6 and
   UNIX, whole, is accepted without verification exactly when TLVs tile
   the rest after the address block, with those TLVs.
"""

from __future__ import annotations

import json
import socket
import zlib

import pyproxyproto
from pyproxyproto import (
    ChecksumMismatch,
    Command,
    Incomplete,
    InvalidHeader,
    ProxyProtocolError,
)
from pyproxyproto._backend import available

__all__ = ["BACKENDS", "check", "describe", "reference_crc32c"]

BACKENDS = available()

FLAG_SETS = [
    {"v1": v1, "v2": v2, "verify_checksum": verify}
    for v1, v2 in ((True, True), (True, False), (False, True))
    for verify in (True, False)
]
DEFAULT = FLAG_SETS[0]
NO_VERIFY = FLAG_SETS[1]
assert DEFAULT == {"v1": True, "v2": True, "verify_checksum": True}
assert NO_VERIFY == {"v1": True, "v2": True, "verify_checksum": False}

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
CRC_TYPE = 0x03
UNIQUE_ID_TYPE = 0x05
# Byte 13 values a PROXY command may carry, and the address block length
# of each family nibble (doc/proxy-protocol.txt, section 2.2).
PROXY_FAMILIES = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32}
NIBBLE_BLOCK = {0x0: 0, 0x1: 12, 0x2: 36, 0x3: 216}
BLOCK = {socket.AF_INET: 12, socket.AF_INET6: 36}
if hasattr(socket, "AF_UNIX"):
    BLOCK[socket.AF_UNIX] = 216
PLACEHOLDER = {
    socket.AF_INET: (("0.0.0.0", 0), ("0.0.0.0", 0)),
    socket.AF_INET6: (("::", 0, 0, 0), ("::", 0, 0, 0)),
}
if hasattr(socket, "AF_UNIX"):
    PLACEHOLDER[socket.AF_UNIX] = ("", "")


# -- an independent CRC32C (Castagnoli, reflected), byte at a time --------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0x82F63B78 if reg & 1 else reg >> 1
        table.append(reg)
    return table


_TABLE = _crc_table()


def reference_crc32c(data: bytes, crc: int = 0) -> int:
    reg = crc ^ 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


assert reference_crc32c(b"123456789") == 0xE3069283  # the standard check value


# -- outcomes -----------------------------------------------------------------------


class Outcome:
    """What one parse() call did: a header, or a ProxyProtocolError."""

    __slots__ = ("error", "header", "key")

    def __init__(self, header=None, error=None):
        self.header = header
        self.error = error
        self.key = snapshot(header) if header is not None else error_key(error)

    @property
    def ok(self) -> bool:
        return self.header is not None

    def __repr__(self) -> str:
        if self.ok:
            return f"<accepted {self.key['repr']}>"
        return f"<{self.key[0]} {self.key[1]!r} needed={self.key[3]} offset={self.key[4]}>"


def error_key(e: ProxyProtocolError) -> tuple:
    cls = type(e)
    assert cls in (Incomplete, InvalidHeader, ChecksumMismatch), f"unexpected class {cls!r}"
    needed = getattr(e, "needed", None)
    offset = getattr(e, "offset", None)
    if cls is Incomplete:
        assert type(needed) is int, needed
    else:
        assert type(offset) is int and offset >= 0, offset
    extra = (e.expected, e.computed) if cls is ChecksumMismatch else None
    return (cls.__name__, str(e), e.args, needed, offset, extra)


def snapshot(h) -> dict:
    """Everything a caller can read from a header, in comparable form."""
    ssl = h.ssl
    d = h.to_dict()
    json.dumps(d)  # to_dict is plain data
    return {
        "fields": (
            h.version,
            type(h.version).__name__,
            h.command,
            type(h.command).__name__,
            int(h.family),
            type(h.family).__name__,
            int(h.protocol),
            type(h.protocol).__name__,
            h.source,
            type(h.source).__name__,
            h.destination,
            type(h.destination).__name__,
            h.length,
            h.tlvs,
        ),
        "views": (
            h.alpn,
            h.authority,
            h.unique_id,
            h.netns,
            h.crc32c,
            h.aws_vpce_id,
            h.azure_link_id,
            h.gcp_psc_connection_id,
        ),
        "ssl": None
        if ssl is None
        else (
            ssl.client,
            ssl.verify,
            ssl.verified,
            ssl.tlvs,
            ssl.version,
            ssl.cn,
            ssl.cipher,
            ssl.sig_alg,
            ssl.key_alg,
            repr(ssl),
            ssl.to_dict(),
            hash(ssl),
        ),
        "dict": d,
        "repr": repr(h),
        "hash": hash(h),
    }


def run(mod, data, flags) -> Outcome:
    try:
        h = mod.parse(data, **flags)
    except ProxyProtocolError as e:
        return Outcome(error=e)
    # Anything else propagates: a finding.  So does a non-header result.
    assert type(h) is mod.ProxyHeader, f"{mod.__name__}.parse returned {type(h)!r}"
    return Outcome(header=h)


def _same(a: Outcome, b: Outcome, what: str) -> None:
    assert a.key == b.key, f"{what}:\n  {a!r}\n  {b!r}"


def describe(data: bytes) -> str:
    return f"input ({len(data)} bytes) {data[:200]!r}{'...' if len(data) > 200 else ''}"


# -- the checks ----------------------------------------------------------------------


def check(data: bytes, *, prefixes: str = "sample") -> None:
    """Run every check on ``data``.

    prefixes: "sample" tries a few prefixes of an accepted header (fuzzing),
    "all" every one (corpus test), "none" skips them (for the prefixes
    themselves).
    """
    data = bytes(data)
    mods = list(BACKENDS.items())
    results = {}
    for flags in FLAG_SETS:
        first_name, first_mod = mods[0]
        base = run(first_mod, data, flags)
        for name, mod in mods[1:]:
            _same(base, run(mod, data, flags), f"{first_name} vs {name}, {flags}")
        results[_fkey(flags)] = base
    _check_flags(data, results)
    for name, mod in mods:
        _check_buffers(mod, data, results[_fkey(DEFAULT)], name)
    if prefixes != "none":  # a prefix's CRC is checked with the whole input
        _check_crc_functions(data)

    out = results[_fkey(DEFAULT)]
    if out.ok:
        _check_accepted(data, out, prefixes)
    else:
        _check_rejected(data, out)
    relaxed = results[_fkey(NO_VERIFY)]
    _check_body_rule(data, out, relaxed)
    if relaxed.ok:
        _check_round_trip(data, relaxed.header)


def _fkey(flags: dict) -> tuple:
    return (flags["v1"], flags["v2"], flags["verify_checksum"])


def _check_flags(data: bytes, results: dict) -> None:
    first = data[:1]
    for verify in (True, False):
        both = results[(True, True, verify)]
        only1 = results[(True, False, verify)]
        only2 = results[(False, True, verify)]
        if first == b"P":
            _same(both, only1, "v1-only vs default on a v1 start")
            assert only2.key[:2] == ("InvalidHeader", "PROXY protocol v1 header at offset 0, but v1 is disabled") \
                and only2.key[4] == 0, only2
        elif first == b"\r":
            _same(both, only2, "v2-only vs default on a v2 start")
            assert only1.key[:2] == ("InvalidHeader", "PROXY protocol v2 header at offset 0, but v2 is disabled") \
                and only1.key[4] == 0, only1
        elif first:
            for out in (only1, only2):
                _same(both, out, "non-PROXY first byte")
                assert both.key[0] == "InvalidHeader" and both.key[4] == 0, both
        else:
            assert both.key[0] == only1.key[0] == only2.key[0] == "Incomplete"
            assert (both.key[3], only1.key[3], only2.key[3]) == (1, 1, 16)
    strict = results[(True, True, True)]
    relaxed = results[(True, True, False)]
    if strict.ok or strict.key[0] != "ChecksumMismatch":
        _same(strict, relaxed, "verify_checksum True vs False")
    else:
        assert relaxed.ok, f"ChecksumMismatch with verification, {relaxed!r} without"


def _check_buffers(mod, data: bytes, expected: Outcome, name: str) -> None:
    padded = bytearray(b"\xff\x00" + data)
    views = [
        ("bytearray", bytearray(data)),
        ("memoryview", memoryview(data)),
        ("memoryview slice", memoryview(padded)[2:]),
    ]
    for label, buf in views:
        got = run(mod, buf, DEFAULT)
        _same(expected, got, f"{name}: bytes vs {label}")
    # The header owns its data: scribbling over the caller's buffer after
    # parse() returns changes nothing a caller can read.
    buf = bytearray(data)
    try:
        h = mod.parse(buf)
    except ProxyProtocolError:
        return
    buf[:] = b"\x00" * len(buf)
    buf.extend(b"\xaa" * 64)
    assert snapshot(h) == expected.key, f"{name}: header changed with its source buffer"


def _check_crc_functions(data: bytes) -> None:
    if len(data) > 4096:
        data = data[:4096]
    ref = reference_crc32c(data)
    cut = len(data) // 3
    for name, mod in BACKENDS.items():
        assert mod.crc32c(data) == ref, f"{name}.crc32c differs from the reference"
        assert mod.crc32c(data[cut:], mod.crc32c(data[:cut])) == ref, f"{name}.crc32c continuation"


def _sample_prefixes(length: int, mode: str) -> list:
    if mode == "all":
        return list(range(length))
    if mode == "none":
        return []
    picks = {0, 1, 12, 13, 14, 15, 16, length // 2, length - 1, length - 3}
    picks.add(zlib.crc32(str(length).encode()) % max(length, 1))
    return sorted(k for k in picks if 0 <= k < length)


def _check_accepted(data: bytes, out: Outcome, prefixes: str) -> None:
    h = out.header
    total = h.length
    assert 0 < total <= len(data), f"length {total} for {len(data)} bytes"
    assert h.version in (1, 2)
    if h.version == 1:
        assert data.startswith(b"PROXY ") and data[total - 2 : total] == b"\r\n"
        assert total <= 107
    else:
        assert data.startswith(V2_SIG) and total == 16 + int.from_bytes(data[14:16], "big")
    assert snapshot(h) == out.key, "reading a header twice gave different results"
    for name, mod in BACKENDS.items():
        exact = run(mod, data[:total], DEFAULT)
        _same(out, exact, f"{name}: data vs data[:length]")
        if type(exact.header) is type(h):
            assert exact.header == h and hash(exact.header) == hash(h), "same header, not =="
        longer = run(mod, data + b"\r\n\x00PROXY", DEFAULT)
        _same(out, longer, f"{name}: data vs data + more")
        for k in _sample_prefixes(total, prefixes):
            part = run(mod, data[:k], DEFAULT)
            assert not part.ok and part.key[0] == "Incomplete", (
                f"{name}: prefix {k} of an accepted {total}-byte header: {part!r}"
            )
            assert k < part.key[3] <= total, f"{name}: prefix {k}: needed {part.key[3]}, length {total}"


def _check_rejected(data: bytes, out: Outcome) -> None:
    n = len(data)
    for name, mod in BACKENDS.items():
        if out.key[0] == "Incomplete":
            assert out.key[3] > n, f"needed {out.key[3]} for {n} bytes"
            if n:
                shorter = run(mod, data[:-1], DEFAULT)
                assert shorter.key[0] == "Incomplete", f"{name}: a prefix of Incomplete data is {shorter!r}"
                assert n - 1 < shorter.key[3] <= out.key[3], (shorter, out)
        else:
            for extra in (b"\x00", b"\r\n", data):
                _same(out, run(mod, data + extra, DEFAULT), f"{name}: invalid data + {extra[:8]!r}")


# -- the body rule ---------------------------------------------------------------------


def reference_tlvs(body: bytes) -> tuple | None:
    """The TLVs that tile ``body`` exactly by the spec's rules (CRC32C
    exactly 4 bytes, UNIQUE_ID at most 128), or None."""
    tlvs, off = [], 0
    while off < len(body):
        if len(body) - off < 3:
            return None
        t, n = body[off], int.from_bytes(body[off + 1 : off + 3], "big")
        value = body[off + 3 : off + 3 + n]
        if len(value) < n or (t == CRC_TYPE and n != 4) or (t == UNIQUE_ID_TYPE and n > 128):
            return None
        tlvs.append((t, value))
        off += 3 + n
    return tuple(tlvs)


def _check_body_rule(data: bytes, strict: Outcome, relaxed: Outcome) -> None:
    if len(data) < 16 or data[:12] != V2_SIG or data[12] >> 4 != 2 or data[12] & 0x0F > 1:
        return
    command, fam = data[12] & 0x0F, data[13]
    total = 16 + int.from_bytes(data[14:16], "big")
    block = NIBBLE_BLOCK.get(fam >> 4, 0)
    if command and (fam not in PROXY_FAMILIES or total - 16 < block):
        return  # the fixed part is refused
    if command and fam:
        if len(data) >= total:
            tlvs = reference_tlvs(data[16 + block : total])
            if tlvs is None:
                assert relaxed.key[0] == "InvalidHeader", f"TLVs that do not tile accepted: {relaxed!r}"
            else:
                assert relaxed.ok and relaxed.header.tlvs == tlvs, f"TLVs that tile: {relaxed!r}"
        return
    if not command and block > total - 16:
        block = 0  # a LOCAL block that does not fit is not skipped
    if len(data) < total:
        for out in (strict, relaxed):
            assert out.key[0] == "Incomplete" and out.key[3] == total, f"ignored body, cut: {out!r}"
        return
    tlvs = reference_tlvs(data[16 + block : total]) or ()
    assert relaxed.ok, f"ignored body refused: {relaxed!r}"
    h = relaxed.header
    assert (h.tlvs, h.length, h.source, h.destination) == (tlvs, total, None, None), "ignored body"
    if not strict.ok:
        assert strict.key[0] == "ChecksumMismatch" and any(t == CRC_TYPE for t, _ in tlvs), strict


# -- round trip through pyproxyproto.build ------------------------------------------------


def _crc_status(raw: bytes, tlvs) -> tuple | None:
    """(offset, stored, reference) of the first CRC32C TLV of a v2 header."""
    if not any(t == CRC_TYPE for t, _ in tlvs):
        return None
    off = len(raw) - sum(3 + len(v) for _, v in tlvs)
    for t, v in tlvs:
        if t == CRC_TYPE:
            break
        off += 3 + len(v)
    stored = int.from_bytes(raw[off + 3 : off + 7], "big")
    computed = reference_crc32c(raw[: off + 3] + b"\0\0\0\0" + raw[off + 7 :])
    return off, stored, computed


def _rebuild_plan(h) -> tuple[dict, dict]:
    """build() arguments for ``h``, and the fields the rebuilt header must have."""
    kwargs = {"version": h.version, "command": h.command}
    expect = {
        "version": h.version, "command": h.command, "family": int(h.family), "protocol": int(h.protocol),
        "source": h.source, "destination": h.destination, "tlvs": h.tlvs, "length": None,
    }
    if h.version == 2:
        kwargs["tlvs"] = h.tlvs
        expect["length"] = h.length
    if h.source is not None:
        kwargs.update(source=h.source, destination=h.destination, protocol=h.protocol)
    elif h.version == 2 and h.command is Command.PROXY:
        expect["length"] = 16 + sum(3 + len(v) for _, v in h.tlvs)  # a discarded body is not rebuilt
    elif h.version == 2 and h.command is Command.LOCAL:
        tlv_bytes = sum(3 + len(v) for _, v in h.tlvs)
        family, protocol = int(h.family), int(h.protocol)
        if (
            family in PLACEHOLDER
            and protocol in (socket.SOCK_STREAM, socket.SOCK_DGRAM)
            and h.length - 16 - tlv_bytes == BLOCK[family]
        ):
            src, dst = PLACEHOLDER[family]
            kwargs.update(source=src, destination=dst, protocol=protocol)
        else:
            expect.update(family=int(socket.AF_UNSPEC), protocol=0, length=16 + tlv_bytes)
    return kwargs, expect


def _fields(h) -> dict:
    return {
        "version": h.version, "command": h.command, "family": int(h.family), "protocol": int(h.protocol),
        "source": h.source, "destination": h.destination, "tlvs": h.tlvs, "length": h.length,
    }


def _check_round_trip(data: bytes, h) -> None:
    kwargs, expect = _rebuild_plan(h)
    raw = pyproxyproto.build(**kwargs)
    if expect["length"] is None:
        expect["length"] = len(raw)
    original = data[: h.length]
    if h.version == 1 and int(h.family) == socket.AF_INET:
        assert raw == original, f"v1 TCP4 rebuilt as {raw!r}"
    if h.version == 2 and h.command is Command.PROXY and int(h.family) in (
        socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6,
    ) and expect["length"] == h.length:
        assert raw == original, f"v2 PROXY rebuilt as {raw!r}"
    status = _crc_status(raw, expect["tlvs"]) if h.version == 2 else None
    for name, mod in BACKENDS.items():
        # Verbatim rebuild, not verified: the same fields.
        got = mod.parse(raw, verify_checksum=False)
        assert _fields(got) == expect, f"{name}: rebuilt {raw!r}\n  {_fields(got)}\n  {expect}"
        # Verbatim rebuild, verified: accepted iff the copied CRC is right.
        if status is None or status[1] == status[2]:
            assert _fields(mod.parse(raw)) == expect
        else:
            try:
                mod.parse(raw)
            except ChecksumMismatch as e:
                assert (e.offset, e.expected, e.computed) == status, (e, status)
            else:
                raise AssertionError(f"{name}: stale CRC32C accepted in {raw!r}")
    if status is not None and original == raw and status[1] != status[2]:
        # The original carried the same wrong CRC: it can only have been
        # accepted without verification.
        for mod in BACKENDS.values():
            try:
                mod.parse(data)
            except ChecksumMismatch:
                pass
            else:
                raise AssertionError("original with a wrong CRC32C was accepted")
    if h.version == 2:
        _check_resealed(kwargs, expect)


def _check_resealed(kwargs: dict, expect: dict) -> None:
    kept = tuple((t, v) for t, v in kwargs["tlvs"] if t != CRC_TYPE)
    body = expect["length"] - 16 - sum(3 + len(v) for _, v in expect["tlvs"])
    size = body + sum(3 + len(v) for _, v in kept) + 7
    try:
        raw = pyproxyproto.build(**{**kwargs, "tlvs": kept}, crc32c=True)
    except ValueError:
        assert size > 0xFFFF, f"build refused a {size}-byte body"
        return
    assert size <= 0xFFFF and len(raw) == 16 + size, (len(raw), size)
    crc = reference_crc32c(raw[:-4] + b"\0\0\0\0")
    assert raw[-7:] == b"\x03\x00\x04" + crc.to_bytes(4, "big"), "crc32c=True TLV"
    for name, mod in BACKENDS.items():
        got = _fields(mod.parse(raw))
        want = {**expect, "tlvs": kept + ((CRC_TYPE, crc.to_bytes(4, "big")),), "length": len(raw)}
        assert got == want, f"{name}: resealed {raw!r}\n  {got}\n  {want}"
