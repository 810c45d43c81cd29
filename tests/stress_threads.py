"""Stress: eight threads parsing and reading headers at once, checked value by value.

Written for free-threaded CPython (where threads really run at once) and
run there by .ci/pythons.sh and the free-threaded GitHub job; it runs on
any build.  Each round is a child process under ``-X dev`` with a time
limit, so a wrong value, a crash (a signal) and a hang each fail the run:

    python tests/stress_threads.py [--runs 20] [--backend cython]

Two phases per round, on each backend:

* shared: every thread takes the same freshly parsed headers and reads
  their attributes first, each thread in its own order, so the first
  reads race; every value must be the expected one, and on the compiled
  backend (whose lazy attributes are published once) every thread must
  get the very same object;
* distinct: each thread parses headers of its own, whose addresses, ports
  and TLV values (ALPN, authority, netns, SSL fields, cloud ids) differ
  from thread to thread and from one header to the next, with some values
  shared by all threads, so whatever a build keeps between parses (the
  reuse caches of a GIL build) is hit, missed and replaced by every thread.

It is run as a script (not ``-m``) so that the installed package is the
one imported, not the checkout's sources.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import ipaddress
import operator
import os
import struct
import subprocess
import sys
import sysconfig
import threading
import time

import pyproxyproto as pp
from pyproxyproto import _constants as C
from pyproxyproto._backend import available

THREADS = 8
VIEWS = ("alpn", "authority", "unique_id", "netns", "crc32c", "ssl",
         "aws_vpce_id", "azure_link_id", "gcp_psc_connection_id")
ATTRIBUTES = ("source", "destination", "tlvs", *VIEWS)
SSL_FIELDS = ("client", "verify", "verified", "version", "cn", "cipher", "sig_alg", "key_alg", "tlvs")
NO_VIEWS = dict.fromkeys(VIEWS)


class Wrong(AssertionError):
    """A value read from a header is not the one it carries."""


# -- headers and the values they must give ----------------------------------------


def ssl_tlv(version, cn, cipher, sig_alg, key_alg, client=7, verify=0):
    subs = [(C.PP2_SUBTYPE_SSL_VERSION, version), (C.PP2_SUBTYPE_SSL_CN, cn),
            (C.PP2_SUBTYPE_SSL_CIPHER, cipher), (C.PP2_SUBTYPE_SSL_SIG_ALG, sig_alg),
            (C.PP2_SUBTYPE_SSL_KEY_ALG, key_alg)]
    subs = [(t, v.encode()) for t, v in subs]
    value = bytes((client,)) + verify.to_bytes(4, "big") + b"".join(
        struct.pack("!BH", t, len(v)) + v for t, v in subs)
    expected = {"client": client, "verify": verify, "verified": verify == 0,
                "version": version, "cn": cn, "cipher": cipher, "sig_alg": sig_alg,
                "key_alg": key_alg, "tlvs": tuple(subs)}
    return value, expected


def v2_case(source, destination, k, i, shared):
    """A v2 header with every view's TLV, and what each attribute must read.
    ``shared`` picks the values every thread uses; else they are (k, i)'s own."""
    tag = "all" if shared else f"{k}-{i}"
    ssl_value, ssl = ssl_tlv(
        "TLSv1.3" if shared or i % 2 else f"TLSv1.{k}",
        f"cn-{tag}", "TLS_AES_256_GCM_SHA384" if i % 3 else f"cipher-{k}",
        "RSA-SHA256" if shared else f"sig-{k}-{i % 5}", "RSA2048" if i % 2 else f"key-{k}")
    alpn = b"h2" if shared or i % 2 else f"h{k}-{i}".encode()
    unique_id = f"id-{tag}".encode()
    tlvs = [
        (C.PP2_TYPE_ALPN, alpn),
        (C.PP2_TYPE_AUTHORITY, f"{tag}.example".encode()),
        (C.PP2_TYPE_UNIQUE_ID, unique_id),
        (C.PP2_TYPE_NETNS, f"ns-{k if not shared else 'all'}".encode()),
        (C.PP2_TYPE_SSL, ssl_value),
        (C.PP2_TYPE_AWS, b"\x01" + f"vpce-{tag}".encode()),
        (C.PP2_TYPE_AZURE, b"\x01" + struct.pack("<I", 1000 * k + i)),
        (C.PP2_TYPE_GCP, struct.pack("!Q", (k << 32) | i)),
    ]
    data = pp.build(source, destination, tlvs=tlvs, crc32c=True)
    # build() appends the CRC32C TLV last: its type, length and value.
    assert data[-7:-4] == bytes((C.PP2_TYPE_CRC32C, 0, 4))
    crc_value = data[-4:]
    expected = {
        "source": source, "destination": destination,
        "tlvs": (*tlvs, (C.PP2_TYPE_CRC32C, crc_value)),
        "alpn": alpn, "authority": f"{tag}.example", "unique_id": unique_id,
        "netns": f"ns-{k if not shared else 'all'}", "crc32c": int.from_bytes(crc_value, "big"),
        "ssl": ssl, "aws_vpce_id": f"vpce-{tag}", "azure_link_id": 1000 * k + i,
        "gcp_psc_connection_id": (k << 32) | i,
    }
    return data, expected


def v1_case(source, destination):
    family = "TCP6" if ":" in source[0] else "TCP4"
    line = f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    return line.encode(), {"source": source, "destination": destination, "tlvs": (), **NO_VIEWS}


def address(host, port):
    host = ipaddress.ip_address(host).compressed
    return (host, port, 0, 0) if ":" in host else (host, port)


def shared_cases():
    """One of each kind every thread reads (the same bytes, parsed many times)."""
    src4, dst4 = address("192.0.2.1", 56324), address("198.51.100.2", 443)
    src6, dst6 = address("2001:db8::1", 56324), address("2001:db8::2", 443)
    unix = pp.build("/run/lb.sock", b"\0abstract")
    return [
        v1_case(src4, dst4),
        v1_case(src6, dst6),
        v2_case(src4, dst4, 0, 0, True),
        v2_case(src6, dst6, 0, 1, True),
        (unix, {"source": "/run/lb.sock", "destination": b"\0abstract", "tlvs": (), **NO_VIEWS}),
        (pp.build(command=pp.Command.LOCAL), {"source": None, "destination": None, "tlvs": (), **NO_VIEWS}),
    ]


def distinct_cases(k, count):
    """Thread k's own headers: sources of its own, destinations that are
    the same for every thread, the same host on another port, or its own."""
    cases = []
    for i in range(count):
        v6 = i % 4 == 3
        if v6:
            source = address(f"2001:db8:{k + 1:x}::{i + 1:x}", 1024 + i)
        else:
            source = address(f"10.{k}.{i // 250}.{i % 250 + 1}", 1024 + i)
        pick = i % 3
        if pick == 0:  # the same for every thread
            destination = address("2001:db8::443" if v6 else "192.0.2.80", 443)
        elif pick == 1:  # the same host, this thread's port
            destination = address("2001:db8::443" if v6 else "192.0.2.80", 8000 + k)
        else:  # this thread's own
            destination = address(f"2001:db8:ff::{k + 1:x}" if v6 else f"192.0.2.{k + 100}", 9000 + i)
        if i % 5 == 4:
            cases.append(v1_case(source, destination))
        else:
            cases.append(v2_case(source, destination, k, i, shared=i % 7 == 0))
    return cases


# -- reading and checking ------------------------------------------------------------


def plain(name, value):
    """A value as comparable data (SSLInfo as a dict of its fields)."""
    if name == "ssl" and value is not None:
        return {f: getattr(value, f) for f in SSL_FIELDS}
    return value


def check(h, expected, order):
    """Read every attribute of h in this order; return the objects read."""
    got = {}
    for name in order:
        value = getattr(h, name)
        got[name] = value
        want = expected[name]
        value = plain(name, value)
        if value != want or type(value) is not type(want):
            raise Wrong(f"{name}: read {value!r}, expected {want!r} (header {h!r})")
    return got


def run_threads(target, count):
    barrier = threading.Barrier(count)
    errors = []
    stop = threading.Event()

    def body(k):
        try:
            barrier.wait(timeout=60)
            target(k, stop)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def shared_phase(backend, rounds, copies):
    cases = shared_cases()
    for _ in range(rounds):
        headers = [(backend.parse(data), expected) for data, expected in cases for _ in range(copies)]
        seen = [None] * THREADS

        def reader(k, stop):
            order = ATTRIBUTES[k % len(ATTRIBUTES):] + ATTRIBUTES[:k % len(ATTRIBUTES)]
            if k % 2:
                order = order[::-1]
            got = []
            for h, expected in headers:
                if stop.is_set():
                    return
                got.append(check(h, expected, order))
            seen[k] = got

        run_threads(reader, THREADS)
        # Published once: every thread got the object the header keeps.
        if backend.__name__.endswith("_parser_c"):
            for k, got in enumerate(seen):
                for (h, _), values in zip(headers, got):
                    for name, value in values.items():
                        if value is not getattr(h, name):
                            raise Wrong(f"thread {k} read another {name} object than the one published")


def as_row(expected, order):
    """The expected values in this order, an SSLInfo as its fields' values."""
    return tuple(
        tuple(expected["ssl"][f] for f in SSL_FIELDS) if name == "ssl" and expected["ssl"] is not None
        else expected[name]
        for name in order
    )


def distinct_phase(backend, seconds, count):
    # As many parses as the time allows, in a tight loop: parse, read every
    # attribute in one of two orders, compare the lot with one test; the
    # slow path (check) only names what differs.
    orders = [ATTRIBUTES, ATTRIBUTES[::-1]]
    readers = [(operator.attrgetter(*order), order.index("ssl")) for order in orders]
    ssl_fields = operator.attrgetter(*SSL_FIELDS)
    per_thread = [
        [(data, expected, [as_row(expected, order) for order in orders]) for data, expected in distinct_cases(k, count)]
        for k in range(THREADS)
    ]
    deadline = time.monotonic() + seconds
    parses = [0] * THREADS

    def parser(k, stop):
        cases = per_thread[k]
        r = 0
        while not stop.is_set() and time.monotonic() < deadline:
            read, ssl_at = readers[r % 2]
            for data, expected, rows in cases:
                h = backend.parse(data)
                row = read(h)
                ssl = row[ssl_at]
                if ssl is not None:
                    row = (*row[:ssl_at], ssl_fields(ssl), *row[ssl_at + 1:])
                if row != rows[r % 2]:
                    check(h, expected, orders[r % 2])
                    raise Wrong(f"a read differed, then read right: {row!r} (header {h!r})")
            parses[k] += len(cases)
            r += 1

    run_threads(parser, THREADS)
    return sum(parses)


def collector(stop):
    # Collections while the threads allocate: a collection must never see
    # a half-built value (-X dev also checks the objects it visits).
    while not stop.wait(0.05):
        gc.collect()


def child(args):
    backend = available()[args.backend]
    # A hang prints every thread's stack before the parent's limit kills it.
    faulthandler.dump_traceback_later(args.timeout - 5, exit=True)
    sys.setswitchinterval(1e-5)  # GIL builds: switch threads as often as possible
    stop = threading.Event()
    gc_thread = threading.Thread(target=collector, args=(stop,), daemon=True)
    gc_thread.start()
    started = time.perf_counter()
    try:
        shared_phase(backend, args.shared_rounds, 50)
        parses = distinct_phase(backend, args.seconds, 300)
    finally:
        stop.set()
        gc_thread.join()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"{args.backend}: ok in {time.perf_counter() - started:.1f} s, {parses} distinct headers "
          f"parsed and read (GIL {'on' if gil else 'off'})")


def parent(args):
    backends = [args.backend] if args.backend else sorted(available())
    if sysconfig.get_config_var("Py_GIL_DISABLED") and sys._is_gil_enabled():
        # An extension without the free-threading declaration turned it on.
        sys.exit("stress: a free-threaded CPython, but the GIL is on")
    failures = 0
    for run in range(1, args.runs + 1):
        for name in backends:
            command = [sys.executable, "-X", "dev", os.path.abspath(__file__), "--child", "--backend", name,
                       "--timeout", str(args.timeout), "--shared-rounds", str(args.shared_rounds),
                       "--seconds", str(args.seconds)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired as exc:
                failures += 1
                print(f"run {run} {name}: HANG (killed after {args.timeout} s)", flush=True)
                for output in (exc.stdout, exc.stderr):  # bytes, whatever text= says
                    print(output.decode(errors="replace") if isinstance(output, bytes) else output or "",
                          flush=True)
                continue
            if done.returncode == 0:
                print(f"run {run} {done.stdout.strip()}", flush=True)
                continue
            failures += 1
            how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
            print(f"run {run} {name}: FAILED ({how})\n{done.stdout}{done.stderr}", flush=True)
    total = args.runs * len(backends)
    print(f"stress: {total - failures} of {total} runs clean ({', '.join(backends)}; {THREADS} threads)")
    sys.exit(1 if failures else 0)


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--runs", type=int, default=5, help="rounds, each a fresh process per backend")
    options.add_argument("--backend", choices=("cython", "python"), help="one backend (default: every one available)")
    options.add_argument("--timeout", type=int, default=120, help="seconds a round may take")
    options.add_argument("--shared-rounds", type=int, default=4)
    options.add_argument("--seconds", type=float, default=5.0,
                         help="how long the threads parse distinct headers, per round")
    options.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = options.parse_args()
    (child if args.child else parent)(args)


if __name__ == "__main__":
    main()
