"""The public API: prefixes and `needed`, buffers, payload, value semantics."""

import json
import os
import socket
import subprocess
import sys

import pytest

import pyproxyproto as pp
from tests.headers import VALID, buffers

PAYLOAD = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256))


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_proper_prefix_is_incomplete_with_exact_needed(backend, name):
    header = VALID[name]
    for n in range(len(header)):
        with pytest.raises(pp.Incomplete) as info:
            backend.parse(header[:n])
        if header[:1] == b"P":
            expected = n + 1
        elif n < 16:
            expected = 16 if n else 1
        else:
            expected = len(header)
        assert info.value.needed == expected, (n, str(info.value))
        assert isinstance(info.value, pp.ProxyProtocolError)
        assert not isinstance(info.value, ValueError)


def test_empty_input_needs(backend):
    for kwargs, needed in (({}, 1), ({"v2": False}, 1), ({"v1": False}, 16)):
        with pytest.raises(pp.Incomplete) as info:
            backend.parse(b"", **kwargs)
        assert info.value.needed == needed


@pytest.mark.parametrize("name", sorted(VALID))
def test_payload_is_never_read(backend, name):
    header = VALID[name]
    alone = backend.parse(header)
    assert alone.length == len(header)
    for payload in (PAYLOAD, b"\r\n", VALID["v2-ipv4"], VALID["v1-tcp4"], b"\0" * 70000):
        assert backend.parse(header + payload) == alone


@pytest.mark.parametrize("name", sorted(VALID))
def test_all_buffer_types_give_the_same_result(backend, name):
    data = VALID[name] + PAYLOAD
    expected = backend.parse(data)
    for kind, buf in buffers(data):
        assert backend.parse(buf) == expected, kind


def test_rejected_inputs(backend):
    with pytest.raises(TypeError, match="not str"):
        backend.parse("PROXY UNKNOWN\r\n")
    with pytest.raises(TypeError, match="C-contiguous"):
        backend.parse(memoryview(VALID["v1-tcp4"] * 2)[::2])
    with pytest.raises(TypeError, match="not int"):
        backend.parse(42)
    with pytest.raises(TypeError):
        backend.parse(None)


def test_caller_buffer_is_untouched_and_stays_resizable(backend):
    original = VALID["v2-ipv4-crc32c"] + PAYLOAD
    buf = bytearray(original)
    backend.parse(buf)
    assert buf == original
    # Incomplete while the header arrives: the caller appends to its buffer
    # while the exception (and its traceback) is still alive.
    partial = bytearray(VALID["v2-ipv6-tlvs"][:20])
    try:
        backend.parse(partial)
    except pp.Incomplete as exc:
        kept = exc
        partial += VALID["v2-ipv6-tlvs"][20:]
    assert kept.needed == len(VALID["v2-ipv6-tlvs"])
    assert backend.parse(partial).length == len(partial)


def test_value_semantics(backend):
    a = backend.parse(VALID["v2-ipv6-tlvs"] + b"x")
    b = backend.parse(bytearray(VALID["v2-ipv6-tlvs"]))
    c = backend.parse(VALID["v2-ipv4"])
    assert a == b and hash(a) == hash(b)
    assert a != c and not (a == c)
    assert a != "something else"
    assert len({a, b, c}) == 2
    for attr in ("version", "source", "tlvs", "length", "alpn"):
        with pytest.raises(AttributeError):
            setattr(a, attr, None)



@pytest.mark.parametrize("name", sorted(VALID))
def test_every_way_of_reading_an_attribute_agrees(backend, name):
    # The Cython header answers its most read names by identity of the
    # interned name; a name built at run time (equal, not identical), the
    # property itself and getattr must give the same values.
    h = backend.parse(VALID[name])
    for attr in ("source", "destination", "ssl", "alpn", "authority", "unique_id", "tlvs",
                 "netns", "crc32c", "version", "length"):
        built = "".join(list(attr))
        via_property = getattr(type(h), attr).__get__(h)
        assert getattr(h, built) == getattr(h, attr) == via_property, attr
    with pytest.raises(AttributeError):
        h.sourcee

def test_repr_is_readable(backend):
    h = backend.parse(VALID["v2-ipv4"])
    assert repr(h) == (
        "ProxyHeader(version=2, command=PROXY, family=AF_INET, protocol=SOCK_STREAM, "
        "source=('192.0.2.1', 56324), destination=('198.51.100.2', 443), length=28, tlvs=())"
    )
    h = backend.parse(VALID["v1-unknown"])
    assert repr(h) == (
        "ProxyHeader(version=1, command=PROXY, family=AF_UNSPEC, protocol=0, "
        "source=None, destination=None, length=15, tlvs=())"
    )


@pytest.mark.parametrize("name", sorted(VALID))
def test_to_dict_is_json_ready(backend, name):
    h = backend.parse(VALID[name])
    d = h.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["version"] == h.version and d["length"] == h.length
    assert len(d["tlvs"]) == len(h.tlvs)


def test_to_dict_content(backend):
    d = backend.parse(VALID["v2-ipv6-tlvs"]).to_dict()
    assert d["command"] == "PROXY" and d["family"] == "AF_INET6" and d["protocol"] == "SOCK_STREAM"
    assert d["source"] == {"host": "2001:db8::1", "port": 56324}
    assert d["alpn"] == "h2" and d["authority"] == "example.com"
    assert d["unique_id"] == "01" * 16
    assert d["ssl"]["cn"] == "client.example" and d["ssl"]["verified"] is True
    d = backend.parse(VALID["v2-unix"]).to_dict()
    assert d["source"] == {"path": "/run/lb.sock"}
    assert d["destination"] == {"abstract": "00" + b"abstract".hex()}


def test_public_names():
    for name in pp.__all__:
        assert hasattr(pp, name), name
    assert pp.BACKEND in ("cython", "python")
    assert pp.Command.PROXY == 1 and pp.Command.LOCAL == 0
    assert issubclass(pp.ChecksumMismatch, pp.InvalidHeader)
    assert issubclass(pp.InvalidHeader, pp.ProxyProtocolError)
    assert issubclass(pp.Incomplete, pp.ProxyProtocolError)
    # Incomplete is flow control: an `except ValueError` must not swallow it.
    assert not issubclass(pp.Incomplete, ValueError)
    assert issubclass(pp.InvalidHeader, ValueError)
    assert issubclass(pp.ConnectionClosed, pp.ProxyProtocolError)
    assert issubclass(pp.ConnectionClosed, ConnectionError)
    assert not issubclass(pp.ConnectionClosed, pp.Incomplete)
    assert issubclass(pp.UntrustedPeer, ConnectionError)
    assert issubclass(pp.HeaderTimeout, TimeoutError)


def _backend_in_subprocess(**env):
    out = subprocess.run(
        [sys.executable, "-c", "import pyproxyproto; print(pyproxyproto.BACKEND)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode, out.stdout.strip(), out.stderr


def test_no_extensions_selects_pure_python():
    assert _backend_in_subprocess(PYPROXYPROTO_NO_EXTENSIONS="1")[1] == "python"


def test_package_uses_the_extension_when_built(both_backends):
    if "cython" not in both_backends:
        pytest.skip("the extension is not built here")
    env = {k: v for k, v in os.environ.items() if k != "PYPROXYPROTO_NO_EXTENSIONS"}
    out = subprocess.run(
        [sys.executable, "-c", "import pyproxyproto; print(pyproxyproto.BACKEND)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "cython"


def test_require_extensions_fails_loudly_without_it(tmp_path):
    # A copy of the package without the compiled module; -S keeps site
    # (and an editable install's finder) from supplying the real one.
    import shutil

    src = os.path.dirname(pp.__file__)
    dst = tmp_path / "pyproxyproto"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYPROXYPROTO_REQUIRE_EXTENSIONS": "1"}
    env.pop("PYPROXYPROTO_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import pyproxyproto"], env=env, capture_output=True, text=True,
        cwd=tmp_path,
    )
    assert out.returncode != 0 and "ImportError" in out.stderr
    env.pop("PYPROXYPROTO_REQUIRE_EXTENSIONS")
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import pyproxyproto; print(pyproxyproto.BACKEND)"],
        env=env, capture_output=True, text=True, cwd=tmp_path, check=True,
    )
    assert out.stdout.strip() == "python"


# -- one object model on both backends --------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_pickle_and_copy_give_an_equal_header(backend, name):
    import copy
    import pickle

    h = backend.parse(VALID[name] + PAYLOAD)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(h, protocol))
        assert type(again) is type(h)
        assert again == h and hash(again) == hash(h) and repr(again) == repr(h)
        assert again.to_dict() == h.to_dict()
    for clone in (copy.copy(h), copy.deepcopy(h), copy.deepcopy([h])[0]):
        assert clone == h and clone.to_dict() == h.to_dict()


def test_pickled_header_after_its_views_were_read(backend):
    import pickle

    h = backend.parse(VALID["v2-ipv6-tlvs"])
    assert h.ssl is not None and h.source is not None
    again = pickle.loads(pickle.dumps(h))
    assert again == h and again.ssl == h.ssl and again.alpn == h.alpn


def test_ssl_info_pickles_compares_and_is_immutable(backend):
    import pickle

    s = backend.parse(VALID["v2-ipv6-tlvs"]).ssl
    assert isinstance(s, backend.SSLInfo)
    assert pickle.loads(pickle.dumps(s)) == s
    assert backend.SSLInfo(s.client, s.verify, s.tlvs) == s
    for attr in ("client", "verify", "cn", "version", "tlvs"):
        with pytest.raises(AttributeError):
            setattr(s, attr, None)


def test_ssl_info_equal_across_backends(both_backends):
    infos = [m.parse(VALID["v2-ipv6-tlvs"]).ssl for m in both_backends.values()]
    assert all(info == infos[0] for info in infos)


def test_header_is_not_constructed_directly(backend):
    with pytest.raises(TypeError, match="parse"):
        backend.ProxyHeader()
    with pytest.raises(TypeError):
        backend.ProxyHeader(version=2)


def test_public_classes_are_the_backend_in_use():
    impl = {"cython": "_parser_c", "python": "_parser_py"}[pp.BACKEND]
    assert pp.ProxyHeader.__module__.endswith(impl)
    assert pp.SSLInfo.__module__.endswith(impl) or pp.BACKEND == "python"
    h = pp.parse(VALID["v2-ipv6-tlvs"])
    assert isinstance(h, pp.ProxyHeader) and isinstance(h.ssl, pp.SSLInfo)


def test_every_view_reads_its_own_place_in_the_views(backend):
    # The views' names and places come from one list (_header.VIEW_NAMES).
    from pyproxyproto import _header as H
    from tests.headers import VALID

    for data in VALID.values():
        h = backend.parse(data)
        got = tuple(getattr(h, name) for name in H.VIEW_NAMES)
        expected = H.views(h.tlvs)
        assert got[:5] == expected[:5] and got[6:] == expected[6:]
        assert (got[5] is None) == (expected[5] is None)  # SSLInfo of either backend
