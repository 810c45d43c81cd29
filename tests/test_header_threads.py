"""Headers shared between threads: every lazily computed attribute is
published once, complete, so no reader ever sees half of it.

Two ways to read "inside" a first read: a GC callback, which CPython runs
in the middle of an allocation (so inside the code that builds an address
or a view), and many threads racing over fresh headers.  Both run on both
backends.
"""

import gc
import sys
import sysconfig
import threading

import pytest

from tests.headers import VALID
from pyproxyproto._header import VIEW_NAMES

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
    # freethreading_compatible declaration turns the GIL back on at import.
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("not a free-threaded CPython")
    import pyproxyproto  # noqa: F401

    assert "cython" in both_backends
    assert not sys._is_gil_enabled()
