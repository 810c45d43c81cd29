"""Headers shared between threads: every lazily computed attribute is
published once, complete, so no reader ever sees half of it.

Three ways to read "inside" a first read, each on both backends: a profile
hook, which runs at every call and return of Python code inside the read
(the pure backend's), on every build; a GC callback, which a GIL build's
collector runs in the middle of an allocation (inside the C code too,
before CPython 3.12); and many threads racing over fresh headers.
tests/stress_threads.py is the long version of the last.
"""

import gc
import os
import subprocess
import sys
import sysconfig
import threading

import pytest

import pyproxyproto
from tests.headers import VALID
from pyproxyproto._header import VIEW_NAMES

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
PACKAGE = os.path.dirname(pyproxyproto.__file__)

ATTRIBUTES = ("source", "destination", "tlvs", *VIEW_NAMES)
SSL_FIELDS = ("client", "verify", "verified", "version", "cn", "cipher", "sig_alg", "key_alg", "tlvs")


def snapshot(h):
    values = {name: getattr(h, name) for name in ATTRIBUTES}
    ssl = values["ssl"]
    if ssl is not None:
        values["ssl"] = tuple(getattr(ssl, f) for f in SSL_FIELDS)
    return values


def drain_tuple_freelists(keep, count):
    # CPython reuses freed tuples without counting them as allocations, and
    # only a counted allocation can start a collection: keep enough fresh
    # tuples alive that the first read's own tuples are new allocations.
    keep.extend(tuple(range(size)) for size in range(1, 11) for _ in range(count))
    keep.extend([[] for _ in range(count)])


# Addresses no header in VALID has: reading them evicts the Cython backend's
# reuse caches, so the next first read of an address builds it (allocates).
OTHER = b"PROXY TCP4 203.0.113.91 203.0.113.92 1 2\r\n"


def evict_address_caches(backend):
    other = backend.parse(OTHER)
    other.source, other.destination


class _Counted:
    """A GC-tracked object with no free list: each one counts toward a collection."""


def prime_collection(keep):
    # Leave the youngest generation one allocation short of collecting, so
    # the first counted allocation inside the read starts a collection.
    while gc.get_count()[0] < gc.get_threshold()[0]:
        keep.append(_Counted())


def check_consistent(values, expected):
    # source and destination come as a pair, and every value is the final one.
    assert (values["source"] is None) == (values["destination"] is None), values
    assert values == expected


def read_with_a_nested_read(h, first, at):
    """Read h.<first> with a profile hook that reads every attribute of h
    again at the hook's event number ``at``.  Returns the outer value, the
    nested reads as (inside the package's code?, snapshot), and how many
    events the read made."""
    events = 0
    depth = 0  # Python frames of the package active inside the read
    nested = []

    def hook(frame, event, arg):
        nonlocal events, depth
        ours = frame.f_code.co_filename.startswith(PACKAGE)
        if event == "call" and ours:
            depth += 1
        if events == at:
            # The hook is off while it runs, so this read does not nest.
            nested.append((depth > 0, snapshot(h)))
        if event == "return" and ours:
            depth -= 1
        events += 1

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        outer = getattr(h, first)
    finally:
        sys.setprofile(previous)
    return outer, nested, events


@pytest.mark.parametrize("name", sorted(VALID))
def test_reader_inside_the_first_read_sees_a_consistent_header(backend, name):
    # At each step of the first read in turn (every call and return a
    # profile hook sees), on a fresh header, another read of every
    # attribute: it must see the final values, and so must the first read.
    # Works the same on GIL and free-threaded builds.
    data = VALID[name]
    expected = snapshot(backend.parse(data))
    inside = set()
    for first in ATTRIBUTES:
        at = 0
        while True:
            h = backend.parse(data)
            outer, nested, events = read_with_a_nested_read(h, first, at)
            if first == "ssl" and outer is not None:
                outer = snapshot(h)["ssl"]
            assert outer == expected[first], (first, at)
            check_consistent(snapshot(h), expected)
            for within, values in nested:
                check_consistent(values, expected)
                if within:
                    inside.add(first)
            if at >= events:
                break
            at += 1
    # The pure backend computes its views in Python code on first read: the
    # hook must have read inside each of those (the Cython backend's first
    # reads run no Python code; the thread tests reach inside them).
    if backend.__name__.endswith("_parser_py"):
        lazy = {first for first in VIEW_NAMES if expected[first] is not None}
        assert lazy <= inside, f"no read nested inside the first read of {sorted(lazy - inside)}"


@pytest.mark.skipif(
    FREE_THREADED,
    reason="the free-threaded collector counts allocations per thread in batches of 512 and "
    "scales its threshold by the live objects: gc.set_threshold(1) starts no collection "
    "inside a read (test_reader_inside_the_first_read_... and the thread tests cover it)",
)
@pytest.mark.parametrize("name", sorted(VALID))
def test_gc_callback_inside_the_first_read_sees_a_consistent_header(backend, name):
    data = VALID[name]
    expected = snapshot(backend.parse(data))
    inner = {first: [] for first in ATTRIBUTES}
    state = {"header": None, "first": None}

    def callback(phase, info):
        h = state["header"]
        if phase == "start" and h is not None:
            state["header"] = None  # one nested read per header is enough
            inner[state["first"]].append(snapshot(h))

    keep = []
    drain_tuple_freelists(keep, 2100)
    thresholds = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    try:
        for first in ATTRIBUTES:
            for _ in range(20):
                evict_address_caches(backend)
                h = backend.parse(data)
                drain_tuple_freelists(keep, 30)
                prime_collection(keep)
                state["header"], state["first"] = h, first
                outer = getattr(h, first)
                state["header"] = None
                if first == "ssl" and outer is not None:
                    outer = snapshot(h)["ssl"]
                assert outer == expected[first], first
                check_consistent(snapshot(h), expected)
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*thresholds)
    for first, reads in inner.items():
        for values in reads:
            check_consistent(values, expected)
    # The callback must have run inside first reads that build something (a
    # test that never nests a read proves nothing).  Only the Cython
    # backend builds addresses lazily.  From CPython 3.12 a collection waits
    # for the next bytecode boundary, so C code is no longer interrupted.
    # A UNIX path is a str or bytes, which the collector does not count, so
    # no collection can start inside its first read.
    lazy = [first for first in ATTRIBUTES if expected[first] not in (None, ())
            and (first not in ("source", "destination") or isinstance(expected[first], tuple))]
    if backend.__name__.endswith("_parser_py"):
        lazy = [first for first in lazy if first in VIEW_NAMES]
    elif sys.version_info >= (3, 12):
        lazy = []
    if lazy:
        assert any(inner[first] for first in lazy), "no GC callback ran inside a first read"


def test_published_values_are_identical_after_the_first_read(backend):
    h = backend.parse(VALID["v2-ipv6-tlvs"])
    for name in ATTRIBUTES:
        assert getattr(h, name) is getattr(h, name), name


@pytest.mark.parametrize("name", sorted(VALID))
def test_many_threads_first_read_the_same_headers(backend, name):
    data = VALID[name]
    expected = snapshot(backend.parse(data))
    headers = [backend.parse(data) for _ in range(300)]
    nthreads = 8
    barrier = threading.Barrier(nthreads)
    results = [None] * nthreads
    errors = []

    def reader(k):
        try:
            barrier.wait(timeout=30)
            order = ATTRIBUTES[k % len(ATTRIBUTES):] + ATTRIBUTES[: k % len(ATTRIBUTES)]
            seen = []
            for h in headers:
                first = getattr(h, order[0])
                values = snapshot(h)
                assert values[order[0]] == first or order[0] == "ssl"
                seen.append(values)
            results[k] = seen
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=reader, args=(k,)) for k in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert all(not t.is_alive() for t in threads)
    for seen in results:
        assert seen is not None and len(seen) == len(headers)
        for values in seen:
            check_consistent(values, expected)


def test_free_threaded_build_keeps_the_gil_off(both_backends):
    # On a free-threaded CPython an extension without the
    # freethreading_compatible declaration turns the GIL back on at import
    # (and says so on stderr).  Each compiled module is imported in a fresh
    # interpreter, warnings as errors, so no earlier import hides one.
    if not FREE_THREADED:
        pytest.skip("not a free-threaded CPython")
    assert "cython" in both_backends
    package = os.path.dirname(pyproxyproto.__file__)
    compiled = sorted(name[:-len(".pxd")] for name in os.listdir(package)
                      if name.endswith("_c.pxd"))
    assert "_parser_c" in compiled and "_handshake_c" in compiled
    for name in compiled:
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c",
             f"import sys, pyproxyproto.{name}; assert not sys._is_gil_enabled()"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr, (name, result.stderr)


def test_free_threaded_build_makes_parse_as_a_module_function(both_backends):
    # pp_shared.h: parse() is made by PyModule_AddFunctions (its __self__
    # is the module), so threads calling it share no reference count.
    if not FREE_THREADED:
        pytest.skip("not a free-threaded CPython")
    extension = both_backends["cython"]
    assert extension.parse.__self__ is extension
    assert extension.parse(VALID["v1-tcp4"]).source == ("192.0.2.1", 56324)
