"""Every implementation the parse benchmarks time, and how each is driven.

For each implementation and header case, ``prepare`` returns a ``Bench``:
the callable and arguments that the timed loop calls, and a ``check`` that
runs once, outside the timed loop, and asserts that the implementation got
the right addresses (and, for ours, every field).  An implementation that
cannot handle a case raises ``Unsupported`` with the reason, and is absent
from that group.

The peers are driven the way their own server integrations drive them:

* proxy-protocol: ``ProxyProtocolReader.read`` (its asyncio integration)
  calls ``ProxyProtocolDetect().unpack`` on a ``memoryview`` of a bytearray
  that its stream reader grows (``readexactly`` for v2, ``readline`` for
  v1) until the header is complete.  ``proxy-protocol`` times only the last,
  successful ``unpack`` on exactly the header (its most favourable figure);
  ``proxy-protocol reader`` replays the whole loop, in memory, on the header
  followed by payload.
* gunicorn: ``Request.parse`` reads a first chunk into a bytearray and hands
  it to ``Request._handle_proxy_protocol(unreader, buf, cfg.proxy_protocol)``
  (gunicorn >= 24.1), which returns the bytes after the header; older
  gunicorn reads the first line and calls ``Request.proxy_protocol(line)``
  (v1 only).  The timed call is that method on a Request set up once, with
  ``proxy_protocol = auto`` and ``proxy_allow_ips = *`` (no allow-list
  lookup).
* Twisted: ``HAProxyProtocolWrapper.dataReceived`` picks ``V2Parser`` or
  ``V1Parser`` from the first bytes, makes a new parser per connection and
  calls ``feed(data)``, which returns the info and the bytes after the
  header.  The timed call does the same.
"""

from __future__ import annotations

import ipaddress
import io
import itertools
import socket
import struct
from dataclasses import dataclass, field
from importlib import import_module, metadata
from typing import Any, Callable

from .cases import PAYLOAD, SPORT, DPORT, Case, Rotating, crc32c, tlv, v2, v2_with_crc


class Unsupported(Exception):
    """This implementation cannot handle this case (the reason is the message)."""


@dataclass
class Bench:
    fn: Callable[..., Any]
    args: tuple
    check: Callable[[], None]


@dataclass
class Impl:
    key: str                 # used in test ids and the JSON
    label: str               # shown in the report
    kind: str                # "ours", "peer" or "baseline"
    dist: str | None         # distribution whose version is reported
    notes: str               # what it does / does not do (the honest label)
    _prepare: Callable[[Case], Bench] = field(repr=False)
    # header + payload -> any result, or an exception: for the capability probes
    _call: Callable[[bytes], Any] | None = field(default=None, repr=False)
    tlvs_parsed: bool = False

    def prepare(self, case: Case) -> Bench:
        return self._prepare(case)

    def call(self, data: bytes) -> Any:
        if self._call is None:
            raise Unsupported("no parser")
        return self._call(data)

    @property
    def version(self) -> str:
        if self.dist is None:
            return ""
        try:
            return metadata.version(self.dist)
        except metadata.PackageNotFoundError:
            return "?"


# -- checks ----------------------------------------------------------------------------


def _same_host(got: Any, expected: str) -> bool:
    """Addresses compare as IPs, so a peer's text form (say, IPv6 without
    '::') is accepted as long as it names the same address."""
    if isinstance(got, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return got == ipaddress.ip_address(expected)
    if isinstance(got, bytes):
        got = got.decode()
    return ipaddress.ip_address(got) == ipaddress.ip_address(expected)


def _expect(condition: bool, what: str, case: Case, got: Any) -> None:
    if not condition:
        raise AssertionError(f"{case.key}: wrong {what}: {got!r}")


def _check_endpoints(case: Case, src: Any, dst: Any) -> None:
    """src/dst: (host, port) pairs as the peer gives them, or None."""
    if case.source is None:
        _expect(src is None and dst is None, "addresses (want none)", case, (src, dst))
        return
    for name, got, want in (("source", src, case.source), ("destination", dst, case.destination)):
        _expect(got is not None and _same_host(got[0], want[0]) and int(got[1]) == want[1],
                name, case, got)


# -- our backends ----------------------------------------------------------------------


def _backend(name: str):
    try:
        return import_module(f"pyproxyproto._parser_{'c' if name == 'cython' else 'py'}")
    except ImportError as exc:
        raise Unsupported(f"backend not importable: {exc}") from None


def _check_ours(mod, case: Case) -> None:
    h = mod.parse(case.data)
    _expect(h.version == case.version, "version", case, h)
    _expect(h.length == case.length, "length", case, h)
    _expect(h.family == case.family, "family", case, h)
    _expect(h.source == case.source, "source", case, h.source)
    _expect(h.destination == case.destination, "destination", case, h.destination)
    if case.tlvs:
        _expect(h.alpn == case.tlvs["alpn"], "alpn", case, h.alpn)
        _expect(h.authority == case.tlvs["authority"], "authority", case, h.authority)
        _expect(h.unique_id == case.tlvs["unique_id"], "unique_id", case, h.unique_id)
        ssl = h.ssl
        _expect((ssl.version, ssl.cn, ssl.cipher) == case.tlvs["ssl"], "ssl", case, ssl)
    if case.key == "v2_ipv4_crc32c":
        _expect(h.crc32c == struct.unpack("!I", case.header[-4:])[0], "crc32c", case, h.crc32c)
        try:
            mod.parse(_corrupt_crc(case.data), verify_checksum=True)
        except ValueError:
            pass
        else:
            raise AssertionError("a wrong CRC32C was accepted")


def _ours(backend: str, variant: str) -> Callable[[Case], Bench]:
    def prepare(case: Case) -> Bench:
        mod = _backend(backend)
        parse = mod.parse
        if variant == "parse":
            fn: Callable[..., Any] = parse
        elif variant == "source":
            def fn(data, parse=parse):
                return parse(data).source
        elif variant == "addresses":  # what every caller reads
            def fn(data, parse=parse):
                h = parse(data)
                h.source
                return h.destination
        else:  # "views": what a server that logs everything reads
            if not case.tlvs:
                raise Unsupported("only measured for the case with TLVs")

            def fn(data, parse=parse):
                h = parse(data)
                ssl = h.ssl
                return (h.source, h.destination, h.alpn, h.authority, h.unique_id,
                        ssl.version, ssl.cn, ssl.cipher)
        return Bench(fn, (case.data,), lambda: _check_ours(mod, case))
    return prepare


def _ours_call(backend: str) -> Callable[[bytes], Any]:
    def call(data: bytes) -> Any:
        return _backend(backend).parse(data)
    return call


# -- proxy-protocol (PyPI) -------------------------------------------------------------


def _pp_modules():
    try:
        import proxyprotocol
        from proxyprotocol.detect import ProxyProtocolDetect
    except ImportError as exc:
        raise Unsupported(f"not installed ({exc})") from None
    return proxyprotocol, ProxyProtocolDetect


def _pp_reader(data: bytes) -> Any:
    """Replay ProxyProtocolReader.read over an in-memory stream: grow a
    bytearray as the parser asks (n more bytes, or up to a newline) and
    unpack a memoryview of it until a result comes out."""
    proxyprotocol, detect = _pp_modules()
    return _make_pp_reader(detect(), proxyprotocol.ProxyProtocolIncompleteError)(data)


def _make_pp_reader(pp: Any, incomplete: type) -> Callable[[bytes], Any]:
    unpack = pp.unpack

    def read(data: bytes) -> Any:
        buf = bytearray()
        pos = 0
        while True:
            try:
                with memoryview(buf) as view:
                    return unpack(view)
            except incomplete as exc:
                want = exc.want_read
            if want.want_bytes is not None:
                end = pos + want.want_bytes
            else:
                end = data.index(b"\n", pos) + 1
            if end > len(data):
                raise EOFError("stream ended inside the header")
            buf += data[pos:end]
            pos = end
    return read


def _check_pp(case: Case, result: Any) -> None:
    if case.source is None:
        _expect(not result.proxied, "result (want LOCAL)", case, result)
        return
    _check_endpoints(case, result.source, result.dest)
    if case.tlvs:
        t = result.tlv
        _expect(t.alpn == case.tlvs["alpn"], "alpn", case, t.alpn)
        _expect(t.authority == case.tlvs["authority"], "authority", case, t.authority)
        _expect(t.unique_id == case.tlvs["unique_id"], "unique_id", case, t.unique_id)


def _pp(variant: str) -> Callable[[Case], Bench]:
    def prepare(case: Case) -> Bench:
        proxyprotocol, detect = _pp_modules()
        pp = detect()
        if variant == "unpack":
            # What the reader hands to unpack on its last pass: exactly the header.
            view = memoryview(bytearray(case.header))
            return Bench(pp.unpack, (view,), lambda: _check_pp(case, pp.unpack(view)))
        read = _make_pp_reader(pp, proxyprotocol.ProxyProtocolIncompleteError)
        return Bench(read, (case.data,), lambda: _check_pp(case, read(case.data)))
    return prepare


def _pp_notes() -> str:
    try:
        from proxyprotocol.checksum import crc32c as have_crc
    except ImportError:
        have_crc = None
    crc = ("CRC32C checked (needs the optional `crc32c` package, installed here)" if have_crc
           else "CRC32C NOT checked (the optional `crc32c` package is not installed)")
    return ("v1+v2; needs its stream reader to cut out the header first; TLVs parsed "
            "into a dict without bounds checks; addresses as `ipaddress` objects; " + crc)


# -- gunicorn --------------------------------------------------------------------------


def _gunicorn_request():
    try:
        from gunicorn.config import Config
        from gunicorn.http.message import Request
    except ImportError as exc:
        raise Unsupported(f"not installed ({exc})") from None
    cfg = Config()
    cfg.set("proxy_protocol", True)      # --proxy-protocol (auto on new releases)
    cfg.set("proxy_allow_ips", "*")      # no allow-list lookup in the timed call
    # The state Request.__init__ sets up before it calls parse(); making a
    # real Request would parse a whole HTTP request as well.
    req = Request.__new__(Request)
    req.cfg = cfg
    req.peer_addr = ("127.0.0.1", 40000)
    req.req_number = 1
    req.proxy_protocol_info = None
    req.limit_request_line = 8190
    return req


class _NoMoreData:
    """An unreader with nothing more to read: the whole first chunk is in buf."""

    def read(self) -> bytes:
        raise AssertionError("the parser asked for more data than the buffer holds")


def _gunicorn_driver(req: Any) -> tuple[Callable[..., Any], Callable[[bytes], tuple]]:
    """(timed call taking the prepared buffer, call(data) -> (info, rest))."""
    unreader = _NoMoreData()
    if hasattr(req, "_handle_proxy_protocol"):          # gunicorn >= 24.1: v1 and v2
        mode = req.cfg.proxy_protocol
        handle = req._handle_proxy_protocol

        def timed(buf: bytearray) -> Any:
            return handle(unreader, buf, mode)

        def call(data: bytes) -> tuple:
            req.proxy_protocol_info = None
            rest = handle(unreader, bytearray(data), mode)
            if req.proxy_protocol_info is None:
                raise ValueError("not a PROXY header")
            return req.proxy_protocol_info, bytes(rest)
        return timed, call

    # Older gunicorn: the first line of the request is tested for "PROXY".
    from gunicorn.util import bytes_to_str

    read_line, proxy_protocol = req.read_line, req.proxy_protocol
    limit = req.limit_request_line

    def timed_old(buf: bytes) -> Any:
        line, rest = read_line(unreader, io.BytesIO(buf), limit)
        proxy_protocol(bytes_to_str(line))
        return rest

    def call_old(data: bytes) -> tuple:
        req.proxy_protocol_info = None
        rest = timed_old(data)
        if req.proxy_protocol_info is None:
            raise ValueError("not a PROXY header")
        return req.proxy_protocol_info, bytes(rest)
    return timed_old, call_old


def _gunicorn_prepare(case: Case) -> Bench:
    req = _gunicorn_request()
    timed, call = _gunicorn_driver(req)
    if not hasattr(req, "_handle_proxy_protocol") and case.version == 2:
        raise Unsupported("this gunicorn release parses PROXY v1 only")
    buf: Any = bytearray(case.data) if hasattr(req, "_handle_proxy_protocol") else case.data

    def check() -> None:
        info, rest = call(case.data)
        _expect(rest == PAYLOAD, "bytes after the header", case, rest[:20])
        if case.source is None:
            _expect(info["client_addr"] is None, "info (want LOCAL)", case, info)
            return
        _check_endpoints(case, (info["client_addr"], info["client_port"]),
                         (info["proxy_addr"], info["proxy_port"]))
        _expect(bytes(buf) == case.data, "buffer untouched", case, None)
    return Bench(timed, (buf,), check)


def _gunicorn_call(data: bytes) -> Any:
    return _gunicorn_driver(_gunicorn_request())[1](data)


def _gunicorn_notes() -> str:
    try:
        from gunicorn.http.message import Request
    except ImportError:
        return "not installed"
    if hasattr(Request, "_handle_proxy_protocol"):
        return ("v1+v2 (v2 since gunicorn 24.1); TLVs skipped unparsed and unchecked; no CRC32C "
                "check; v1 UNKNOWN, UDP and UNIX refused; copies the buffer")
    return "v1 only; v1 UNKNOWN refused"


# -- Twisted ---------------------------------------------------------------------------


def _twisted_parsers():
    try:
        from twisted.protocols.haproxy._v1parser import V1Parser
        from twisted.protocols.haproxy._v2parser import V2Parser
    except ImportError as exc:
        raise Unsupported(f"not installed ({exc})") from None
    return V1Parser, V2Parser


def _twisted_feed() -> Callable[[bytes], tuple]:
    V1Parser, V2Parser = _twisted_parsers()
    v2_prefix, v1_prefix = V2Parser.PREFIX, V1Parser.PROXYSTR

    def feed(data: bytes) -> tuple:
        # The choice HAProxyProtocolWrapper.dataReceived makes on a new connection.
        if len(data) >= 16 and data[:12] == v2_prefix and data[12] & 0xF0 == 0x20:
            parser = V2Parser()
        elif len(data) >= 8 and data[:5] == v1_prefix:
            parser = V1Parser()
        else:
            raise ValueError("not a PROXY header")
        return parser.feed(data)
    return feed


def _twisted_prepare(case: Case) -> Bench:
    feed = _twisted_feed()

    def check() -> None:
        info, rest = feed(case.data)
        _expect(rest == PAYLOAD, "bytes after the header", case, rest[:20])
        src = info.source and (info.source.host, info.source.port)
        dst = info.destination and (info.destination.host, info.destination.port)
        _check_endpoints(case, src, dst)
    return Bench(feed, (case.data,), check)


def _twisted_call(data: bytes) -> Any:
    return _twisted_feed()(data)


def _twisted_notes() -> str:
    return ("v1+v2; TLVs ignored (not parsed or checked); no CRC32C check; v1 addresses not "
            "validated; v2 IPv6 text without '::' compression; copies the buffer")


# -- baselines -------------------------------------------------------------------------


def _object_floor(case: Case) -> Bench:
    """The object floor of the case's address family (bench/floor/floor.c):
    one object with member slots and the two address tuples, built from a
    v2 address block without any validation, read as ours are."""
    from . import floor
    from .cases import BY_KEY as CASES

    if case.source is None:
        raise Unsupported("no addresses to build (LOCAL is held against struct.unpack_from)")
    module = floor.load()
    v6 = case.family == socket.AF_INET6
    make = module.ipv6 if v6 else module.ipv4
    block = CASES["v2_ipv6_tlvs" if v6 else "v2_ipv4"].data

    def fn(data, make=make):
        f = make(data)
        f.source
        return f.destination

    def check() -> None:
        f = make(block)
        _check_endpoints(case, f.source, f.destination)
    return Bench(fn, (block,), check)


def _floor(case: Case) -> Bench:
    return Bench(struct.unpack_from, ("!12sBBH", case.data), lambda: None)


def _nothing(data):
    pass


def _empty(case: Case) -> Bench:
    return Bench(_nothing, (case.data,), lambda: None)


# -- rotating sources ------------------------------------------------------------------
#
# The timed call takes no argument: it reads the next header of the case's
# cycle and then both addresses, the same steps for ours and the floor.


def _cycle_reader(make: Callable[[bytes], Any], items: tuple) -> Callable[[], Any]:
    next_item = itertools.cycle(items).__next__

    def fn() -> Any:
        h = make(next_item())
        h.source
        return h.destination
    return fn


def prepare_rotating(impl_key: str, rot: Rotating, checked: int | None = None) -> Bench:
    """The Bench of ``impl_key`` (one of ROTATING_IMPLS) on a rotating case;
    its check reads every header, or the first ``checked``."""
    if impl_key == "empty":
        next_item = itertools.cycle(rot.data).__next__
        return Bench(next_item, (), lambda: None)
    if impl_key == "object_floor":
        from . import floor
        module = floor.load()
        make = module.ipv6_reuse if rot.family == socket.AF_INET6 else module.ipv4_reuse
        items = rot.floor_data
    else:
        make = _backend("cython" if impl_key == "cython_addresses" else "python").parse
        items = rot.data

    def check() -> None:
        for data, source in zip(items[:checked], rot.sources):
            h = make(data)
            if h.source != source or h.destination != rot.destination:
                raise AssertionError(f"{rot.key}: wrong addresses {h.source!r}, "
                                     f"{h.destination!r} (want {source!r}, {rot.destination!r})")
    return Bench(_cycle_reader(make, items), (), check)


ROTATING_IMPLS = ("cython_addresses", "python_addresses", "object_floor", "empty")


# -- the registry ----------------------------------------------------------------------

IMPLS: tuple[Impl, ...] = (
    Impl("cython", "pyproxyproto (Cython)", "ours", "pyproxyproto",
         "v1+v2, every check, CRC32C verified; address text built lazily on first read",
         _ours("cython", "parse"), _ours_call("cython"), tlvs_parsed=True),
    Impl("cython_source", "pyproxyproto (Cython) + .source", "ours", "pyproxyproto",
         "parse, then read .source (forces the lazy address text)",
         _ours("cython", "source"), _ours_call("cython"), tlvs_parsed=True),
    Impl("cython_addresses", "pyproxyproto (Cython) + .source + .destination", "ours",
         "pyproxyproto", "parse, then read .source and .destination (what every caller reads)",
         _ours("cython", "addresses"), _ours_call("cython"), tlvs_parsed=True),
    Impl("cython_views", "pyproxyproto (Cython) + all views", "ours", "pyproxyproto",
         "parse, then read source, destination, alpn, authority, unique_id, ssl.version/cn/cipher",
         _ours("cython", "views"), _ours_call("cython"), tlvs_parsed=True),
    Impl("python", "pyproxyproto (Python)", "ours", "pyproxyproto",
         "v1+v2, every check, CRC32C verified; eager address text",
         _ours("python", "parse"), _ours_call("python"), tlvs_parsed=True),
    Impl("python_source", "pyproxyproto (Python) + .source", "ours", "pyproxyproto",
         "parse, then read .source",
         _ours("python", "source"), _ours_call("python"), tlvs_parsed=True),
    Impl("python_addresses", "pyproxyproto (Python) + .source + .destination", "ours",
         "pyproxyproto", "parse, then read .source and .destination",
         _ours("python", "addresses"), _ours_call("python"), tlvs_parsed=True),
    Impl("python_views", "pyproxyproto (Python) + all views", "ours", "pyproxyproto",
         "parse, then read source, destination, alpn, authority, unique_id, ssl.version/cn/cipher",
         _ours("python", "views"), _ours_call("python"), tlvs_parsed=True),
    Impl("proxy_protocol", "proxy-protocol (unpack)", "peer", "proxy-protocol",
         "", _pp("unpack"), _pp_reader, tlvs_parsed=True),
    Impl("proxy_protocol_reader", "proxy-protocol (reader loop)", "peer", "proxy-protocol",
         "", _pp("reader"), _pp_reader, tlvs_parsed=True),
    Impl("gunicorn", "gunicorn", "peer", "gunicorn", "",
         _gunicorn_prepare, _gunicorn_call),
    Impl("twisted", "Twisted haproxy", "peer", "twisted", "",
         _twisted_prepare, _twisted_call),
    Impl("object_floor", "object floor: 2 address tuples in a slotted object (C)", "baseline",
         None, "bench/floor/floor.c, built into build/bench-floor: the objects any parser must "
         "create for .source/.destination, from a v2 block of the case's family, unvalidated",
         _object_floor),
    Impl("floor", "floor: struct.unpack_from('!12sBBH')", "baseline", None,
         "reads the 16-byte v2 fixed part and nothing else", _floor),
    Impl("empty", "empty Python call", "baseline", None,
         "a Python function that does nothing: the cost of one call in the timed loop",
         _empty),
)

# Notes that depend on what is installed are filled in at import.
for _impl in IMPLS:
    if _impl.key.startswith("proxy_protocol"):
        _impl.notes = _pp_notes() + (
            "; timed: the final unpack() on exactly the header" if _impl.key == "proxy_protocol"
            else "; timed: its reader's whole unpack/read loop, in memory")
    elif _impl.key == "gunicorn":
        _impl.notes = _gunicorn_notes()
    elif _impl.key == "twisted":
        _impl.notes = _twisted_notes()

BY_KEY = {impl.key: impl for impl in IMPLS}
FLOOR, EMPTY = "floor", "empty"


# -- capability probes -----------------------------------------------------------------


def _corrupt_crc(data: bytes) -> bytes:
    """The CRC case with one bit of the CRC value flipped."""
    from .cases import BY_KEY as CASES
    n = CASES["v2_ipv4_crc32c"].length
    return data[:n - 1] + bytes([data[n - 1] ^ 0x01]) + data[n:]


def _probe_inputs() -> dict[str, tuple[bytes, bool]]:
    """name -> (input, True if a careful parser must accept it)."""
    from .cases import BY_KEY as CASES
    block = (socket.inet_pton(socket.AF_INET, "203.0.113.195")
             + socket.inet_pton(socket.AF_INET, "192.0.2.10") + struct.pack("!HH", SPORT, DPORT))
    # A TLV that claims 40 bytes where the header has room for 3: overruns the header.
    overrun = v2(0x21, 0x11, block + struct.pack("!BH", 0x01, 40) + b"h2x")
    ok_crc = v2_with_crc(0x21, 0x11, block)
    assert crc32c(ok_crc[:-4] + b"\0\0\0\0") == struct.unpack("!I", ok_crc[-4:])[0]
    return {
        "v1": (CASES["v1_tcp4"].data, True),
        "v2": (CASES["v2_ipv4"].data, True),
        "v1 short `PROXY UNKNOWN`": (b"PROXY UNKNOWN\r\n" + PAYLOAD, True),
        "rejects bad v1 address": (b"PROXY TCP4 256.0.2.1 192.0.2.10 1 2\r\n" + PAYLOAD, False),
        "rejects bad v1 port": (b"PROXY TCP4 192.0.2.1 192.0.2.10 65536 2\r\n" + PAYLOAD, False),
        "rejects TLV overrun": (overrun + PAYLOAD, False),
        "rejects wrong CRC32C": (_corrupt_crc(CASES["v2_ipv4_crc32c"].data), False),
        "accepts right CRC32C": (ok_crc + PAYLOAD, True),
    }


def probe(impl: Impl) -> dict[str, bool | None]:
    """Run each probe input through the implementation: True when it behaves
    as a strict parser must (accepts what is valid, rejects what is not)."""
    out: dict[str, bool | None] = {}
    if impl._call is None:
        return out
    for name, (data, valid) in _probe_inputs().items():
        if data.startswith(b"\r\n\r\n") and out.get("v2") is False:
            out[name] = None  # says nothing about a parser that refuses all of v2
            continue
        if data.startswith(b"PROXY") and out.get("v1") is False:
            out[name] = None
            continue
        try:
            impl.call(data)
        except Unsupported:
            out[name] = None
            continue
        except Exception:
            out[name] = not valid
        else:
            out[name] = valid
    out["TLVs parsed"] = impl.tlvs_parsed
    return out
