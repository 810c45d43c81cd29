"""No memory growth from parsing, from the exception paths, or from reading views.

Each kind of input (valid headers of every kind, every kind of invalid
header, Incomplete prefixes, wrong argument types) is parsed many times on
each backend.  Every iteration reads the header's fields (source,
destination, tlvs: the lazily built ones in the C backend) or every
attribute of the exception; every FULL_READ_EVERY-th iteration also reads
every typed view, SSL sub-view, ``to_dict``, ``repr``, ``hash`` and ``==``.
After a warm-up, the loop must not grow:

* ``sys.getallocatedblocks()`` (live Python memory blocks) by more than
  BLOCKS_BOUND;
* memory traced by tracemalloc, over a tenth of the iterations (tracemalloc
  slows the loop several times), by more than TRACED_BOUND bytes;
* the resident set size (/proc/self/statm) by more than RSS_BOUND bytes,
  which catches C allocations that Python's allocator never sees.

PYPROXYPROTO_LEAK_ITERATIONS sets the iterations per kind for the C backend
(default 100000; the issue's million: PYPROXYPROTO_LEAK_ITERATIONS=1000000).
The pure-Python backend runs a tenth of that: it has no C code of its own,
so a leak there can only be a kept reference, which shows as a block per
call from the first thousands of iterations on.  The checker itself is
tested against deliberately leaking fakes.  PYPROXYPROTO_LEAK_LOG=FILE
appends one line of figures per case to FILE.
"""

import ctypes
import gc
import operator
import os
import socket
import struct
import sys
import tracemalloc

import pytest

import pyproxyproto as pp
from pyproxyproto import _parser_py

ITERATIONS = int(os.environ.get("PYPROXYPROTO_LEAK_ITERATIONS", "100000"))
PURE_FRACTION = 10
TRACED_FRACTION = 10
FULL_READ_EVERY = 10
WARMUP = 2000
BLOCKS_BOUND = 200
TRACED_BOUND = 64 * 1024
RSS_BOUND = 1024 * 1024

PAGE = os.sysconf("SC_PAGE_SIZE")


def _blocks_are_counted():
    # Free-threaded builds may count blocks differently (or not at all).
    if not hasattr(sys, "getallocatedblocks"):
        return False
    before = sys.getallocatedblocks()
    kept = [object() for _ in range(1000)]
    counted = sys.getallocatedblocks() - before >= 500
    del kept
    return counted


BLOCKS_COUNTED = _blocks_are_counted()
HAVE_STATM = os.path.exists("/proc/self/statm")


def _backends():
    found = {"python": _parser_py}
    if os.environ.get("PYPROXYPROTO_NO_EXTENSIONS", "") in ("", "0"):
        try:
            from pyproxyproto import _parser_c
        except ImportError:
            if os.environ.get("PYPROXYPROTO_REQUIRE_EXTENSIONS", "") not in ("", "0"):
                raise
        else:
            found["cython"] = _parser_c
    return found


BACKENDS = _backends()


# -- inputs ------------------------------------------------------------------------


def _tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


SIG = b"\r\n\r\n\x00\r\nQUIT\n"
INET = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 56324, 443)
SSL = b"\x07" + bytes(4) + b"".join(
    _tlv(t, v)
    for t, v in [
        (0x21, b"TLSv1.3"),
        (0x22, b"client.example"),
        (0x23, b"TLS_AES_256_GCM_SHA384"),
        (0x24, b"SHA256"),
        (0x25, b"RSA2048"),
    ]
)
ALL_TLVS = [
    (0x01, b"h2"),
    (0x02, b"example.com"),
    (0x04, b""),
    (0x05, b"\x01" * 16),
    (0x20, SSL),
    (0x30, b"ns"),
    (0xE0, struct.pack("!Q", 42)),
    (0xEA, b"\x01vpce-0123456789abcdef0"),
    (0xEE, b"\x01" + struct.pack("<I", 7)),
]
V2_IPV6_TLVS = pp.build(("2001:db8::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0), tlvs=ALL_TLVS)
V2_CRC = pp.build(("192.0.2.1", 56324), ("198.51.100.2", 443), tlvs=ALL_TLVS[:2], crc32c=True)

VALID = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\npayload",
    "v1-tcp6": b"PROXY TCP6 2001:0db8::1 ::ffff:192.0.2.1 56324 443\r\n",
    "v1-unknown": b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
    "v2-ipv4": pp.build(("192.0.2.1", 56324), ("198.51.100.2", 443)) + b"payload",
    "v2-ipv4-udp": pp.build(("192.0.2.1", 53), ("198.51.100.2", 53), protocol=socket.SOCK_DGRAM),
    "v2-ipv6-tlvs-ssl": V2_IPV6_TLVS,
    "v2-crc32c": V2_CRC,
    "v2-local": pp.build(command=pp.Command.LOCAL, tlvs=[(0x01, b"h2")]),
    "v2-unspec": pp.build(),
    "v2-unix": pp.build("/run/app.sock", b"\0abstract"),
}

CRC_WRONG = V2_CRC[:-1] + bytes([V2_CRC[-1] ^ 1])
# kind: (data, parse keyword arguments, exception class, start of its message)
INVALID = {
    "not-proxy": (b"GET / HTTP/1.1\r\n", {}, pp.InvalidHeader, "not a PROXY protocol header"),
    "v1-disabled": (VALID["v1-tcp4"], {"v1": False}, pp.InvalidHeader, "PROXY protocol v1 header"),
    "v2-disabled": (VALID["v2-ipv4"], {"v2": False}, pp.InvalidHeader, "PROXY protocol v2 header"),
    "v1-prefix": (b"PROXX TCP4", {}, pp.InvalidHeader, "v1: expected 'PROXY '"),
    "v1-protocol": (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", {}, pp.InvalidHeader, "v1: expected TCP4"),
    "v1-ipv4": (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", {}, pp.InvalidHeader, "v1: invalid IPv4"),
    "v1-ipv6": (b"PROXY TCP6 1:::2 ::1 1 2\r\n", {}, pp.InvalidHeader, "v1: invalid IPv6"),
    "v1-port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", {}, pp.InvalidHeader, "v1: invalid port"),
    "v1-crlf": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", {}, pp.InvalidHeader, "v1: expected CRLF"),
    "v1-too-long": (b"PROXY UNKNOWN " + b"x" * 100, {}, pp.InvalidHeader, "v1: the line cannot end"),
    "v2-signature": (SIG[:7] + b"X" + SIG[8:] + VALID["v2-ipv4"][12:], {}, pp.InvalidHeader,
                     "v2: bad signature"),
    "v2-version": (SIG + b"\x11\x11\x00\x0c" + INET, {}, pp.InvalidHeader, "v2: unsupported version"),
    "v2-command": (SIG + b"\x22\x11\x00\x0c" + INET, {}, pp.InvalidHeader, "v2: unsupported command"),
    "v2-family": (SIG + b"\x21\x41\x00\x0c" + INET, {}, pp.InvalidHeader, "v2: invalid address family"),
    "v2-address-length": (SIG + b"\x21\x11\x00\x0b" + INET[:11], {}, pp.InvalidHeader,
                          "v2: length 11 at offset 14 is shorter"),
    "v2-tlv-truncated": (SIG + b"\x21\x11\x00\x0e" + INET + b"\x01\x00", {}, pp.InvalidHeader,
                         "v2: 2 stray byte(s)"),
    "v2-tlv-overrun": (SIG + b"\x21\x11\x00\x11" + INET + b"\x01\x00\x09h2", {}, pp.InvalidHeader,
                       "v2: TLV 0x01 at offset 28 overruns"),
    "v2-tlv-length": (SIG + b"\x21\x11\x00\x0f" + INET + _tlv(0x03, b""), {}, pp.InvalidHeader,
                      "v2: TLV 0x03 at offset 28 has invalid length 0"),
    "v2-checksum": (CRC_WRONG, {}, pp.ChecksumMismatch, "v2: CRC32C mismatch"),
    "no-version": (VALID["v1-tcp4"], {"v1": False, "v2": False}, ValueError, "at least one of v1"),
    "type-str": ("PROXY UNKNOWN\r\n", {}, TypeError, "parse() needs a C-contiguous"),
    "type-int": (42, {}, TypeError, "parse() needs a C-contiguous"),
    "type-strided": (memoryview(VALID["v2-ipv4"])[::2], {}, TypeError, "parse() needs a C-contiguous"),
}
INCOMPLETE = {
    "empty": b"",
    "v1-partial": b"PROXY TCP6 2001:db8::1 ::1 56",
    "v2-fixed-partial": SIG + b"\x21",
    "v2-tlvs-missing": V2_IPV6_TLVS[:60],
    "v2-tlv-partial": V2_IPV6_TLVS[:-5],
}


# -- what each iteration does -------------------------------------------------------


def _read_fields(h):
    return (h.version, h.command, h.family, h.protocol, h.length, h.source, h.destination, h.tlvs)


def _read_header(h):
    """Read everything; True if the header equals itself (runs __eq__)."""
    seen = [
        _read_fields(h),
        h.alpn, h.authority, h.unique_id, h.netns, h.crc32c,
        h.aws_vpce_id, h.azure_link_id, h.gcp_psc_connection_id,
        h.to_dict(), repr(h), hash(h),
    ]
    ssl = h.ssl
    if ssl is not None:
        seen += [
            ssl.client, ssl.verify, ssl.verified, ssl.tlvs,
            ssl.version, ssl.cn, ssl.cipher, ssl.sig_alg, ssl.key_alg,
            repr(ssl), ssl.to_dict(), hash(ssl), operator.eq(ssl, ssl),
        ]
    return len(seen) > 0 and operator.eq(h, h)


def _read_error(e):
    seen = (
        str(e), e.args, repr(e),
        getattr(e, "needed", None), getattr(e, "offset", None),
        getattr(e, "expected", None), getattr(e, "computed", None),
    )
    e.__traceback__ = None
    return seen


def valid_loop(parse, data):
    buffers = (data, bytearray(data))

    def one(i):
        # Alternate bytes and a bytearray (the buffer-protocol path); a
        # memoryview is made fresh each time so a kept export would show.
        h = parse(buffers[i & 1] if i % 3 else memoryview(buffers[1]))
        if i % FULL_READ_EVERY:
            _read_fields(h)
        else:
            assert _read_header(h)

    return one


def error_loop(parse, data, kwargs, expected):
    def one(i):
        try:
            parse(data, **kwargs)
        except expected as e:
            _read_error(e)
        else:
            raise AssertionError("no exception")

    return one


# -- the measurement ---------------------------------------------------------------


def rss_bytes():
    if HAVE_STATM:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    import resource  # peak, not current: only growth beyond the peak shows

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(one, iterations):
    """Run ``one`` after a warm-up; return the growth of blocks, traced bytes, RSS."""
    for i in range(WARMUP):
        one(i)
    gc.collect()
    blocks0, rss0 = sys.getallocatedblocks(), rss_bytes()
    for i in range(iterations):
        one(i)
    gc.collect()
    blocks1, rss1 = sys.getallocatedblocks(), rss_bytes()

    traced_iterations = max(iterations // TRACED_FRACTION, WARMUP)
    tracemalloc.start()
    try:
        for i in range(WARMUP):
            one(i)
        gc.collect()
        traced0 = tracemalloc.get_traced_memory()[0]
        for i in range(traced_iterations):
            one(i)
        gc.collect()
        traced1 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"blocks": blocks1 - blocks0, "traced": traced1 - traced0, "rss": rss1 - rss0}


def problems(growth, iterations):
    out = []
    if growth["blocks"] > BLOCKS_BOUND:
        out.append(f"{growth['blocks']} more Python memory blocks after {iterations} iterations")
    if growth["traced"] > TRACED_BOUND:
        out.append(f"tracemalloc: {growth['traced']} more bytes traced")
    if growth["rss"] > RSS_BOUND:
        out.append(f"RSS grew by {growth['rss']} bytes after {iterations} iterations")
    return out


def assert_flat(one, iterations, label=""):
    growth = measure(one, iterations)
    found = problems(growth, iterations)
    log = os.environ.get("PYPROXYPROTO_LEAK_LOG")
    if log and label:
        with open(log, "a") as f:
            f.write(
                f"{label:45} {iterations:>8} iterations: blocks {growth['blocks']:+5d}, "
                f"tracemalloc {growth['traced']:+7d} B, RSS {growth['rss']:+8d} B\n"
            )
    assert not found, f"{found} (growth: {growth})"


# -- the tests -----------------------------------------------------------------------

pytestmark = [
    pytest.mark.leaks,
    pytest.mark.skipif(
        not hasattr(sys, "getallocatedblocks"), reason="needs CPython's sys.getallocatedblocks"
    ),
]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """(parse, iterations per kind) of each backend."""
    if request.param == "python":
        return BACKENDS["python"].parse, max(ITERATIONS // PURE_FRACTION, 1000)
    return BACKENDS[request.param].parse, ITERATIONS


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_headers_and_header(backend, kind):
    parse, iterations = backend
    assert_flat(valid_loop(parse, VALID[kind]), iterations, f"{parse.__module__} {kind}")


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_invalid_inputs(backend, kind):
    parse, iterations = backend
    data, kwargs, expected, message = INVALID[kind]
    # The input reaches the error path it is named after.
    with pytest.raises(expected) as info:
        parse(data, **kwargs)
    assert type(info.value) is expected and str(info.value).startswith(message), info.value
    assert_flat(error_loop(parse, data, kwargs, expected), iterations, f"{parse.__module__} {kind}")


@pytest.mark.parametrize("kind", sorted(INCOMPLETE))
def test_incomplete_prefixes(backend, kind):
    parse, iterations = backend
    assert_flat(
        error_loop(parse, INCOMPLETE[kind], {}, pp.Incomplete), iterations,
        f"{parse.__module__} incomplete {kind}",
    )


# -- the checker must catch leaks --------------------------------------------------------

_kept = []


def _leaky_parse(data, **kwargs):
    """A test-only parse that keeps a reference to every header it makes."""
    h = _parser_py.parse(data, **kwargs)
    _kept.append(h)
    return h


def test_checker_catches_kept_references():
    growth = measure(valid_loop(_leaky_parse, VALID["v2-ipv4"]), 5000)
    found = problems(growth, 5000)
    assert any("blocks" in p for p in found) or not BLOCKS_COUNTED, growth
    assert any("tracemalloc" in p for p in found), growth
    _kept.clear()


@pytest.mark.skipif(not HAVE_STATM, reason="needs /proc/self/statm for the current RSS")
def test_checker_catches_c_level_leaks():
    # malloc without free: invisible to Python's allocator and tracemalloc,
    # visible in RSS.
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]

    def one(i):
        p = libc.malloc(1024)
        ctypes.memset(p, 1, 1024)

    growth = measure(one, 3000)
    found = problems(growth, 3000)
    assert any("RSS" in p for p in found), growth
    assert not any("tracemalloc" in p for p in found), growth
