"""The fuzz harness's per-input checks over the committed seed corpus.

Runs without atheris, so the normal suite always exercises the differential
checks of tests/fuzz/differential.py: every seed and every prefix of it, on
both backends (only the pure one where the extension is not built).
"""

import os

import pytest

from pyproxyproto import InvalidHeader, _parser_py
from tests.fuzz import differential, make_corpus

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "corpus")

SEEDS = sorted(os.listdir(CORPUS_DIR))


def _read(name):
    with open(os.path.join(CORPUS_DIR, name), "rb") as f:
        return f.read()


def test_corpus_is_there():
    # Every kind the issue lists has seeds.
    assert len(SEEDS) >= 100
    for prefix in ("v1-tcp4", "v1-tcp6", "v1-unknown", "v1-bad-", "v1-trunc-",
                   "v2-inet-", "v2-inet6-", "v2-unix-", "v2-proxy-unspec", "v2-local",
                   "v2-tlv-ssl", "v2-crc32c", "v2-tlv-aws", "v2-tlv-azure", "v2-tlv-gcp",
                   "v2-bad-", "v2-trunc-"):
        assert any(s.startswith(prefix) for s in SEEDS), prefix


def test_corpus_matches_its_generator():
    # make_corpus.py is the source of the committed seeds (fuzzing may add
    # more files next to them, so this is a subset check).
    generated = make_corpus.generate()
    assert sorted(generated) == sorted(set(generated) & set(SEEDS))
    for name, data in generated.items():
        assert _read(name) == data, name


def test_both_backends_when_required():
    # Under PYPROXYPROTO_REQUIRE_EXTENSIONS (CI, wheel tests) the checks are
    # differential for real, never silently one-sided.
    if os.environ.get("PYPROXYPROTO_REQUIRE_EXTENSIONS", "") in ("", "0"):
        pytest.skip("PYPROXYPROTO_REQUIRE_EXTENSIONS is not set")
    if os.environ.get("PYPROXYPROTO_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("PYPROXYPROTO_NO_EXTENSIONS selects the pure backend alone")
    assert sorted(differential.BACKENDS) == ["cython", "python"]


@pytest.mark.parametrize("name", SEEDS)
def test_seed_and_every_prefix(name):
    data = _read(name)
    differential.check(data, prefixes="all")
    for k in range(len(data)):
        differential.check(data[:k], prefixes="none")


# -- the checker itself must be able to fail ---------------------------------------


class _Skewed:
    """A test-only backend that disagrees with the pure one in one way."""

    ProxyHeader = _parser_py.ProxyHeader
    crc32c = staticmethod(_parser_py.crc32c)
    __name__ = "skewed"

    def __init__(self, how):
        self.how = how

    def parse(self, data, **flags):
        if self.how == "offset":
            try:
                return _parser_py.parse(data, **flags)
            except InvalidHeader as e:
                raise InvalidHeader(str(e), e.offset + 1) from None
        if self.how == "value-error":
            if bytes(data[:1]) == b"\r":
                raise ValueError("not a ProxyProtocolError")
            return _parser_py.parse(data, **flags)
        if self.how == "crc":
            return _parser_py.parse(data, **{**flags, "verify_checksum": False})
        if self.how == "strict-body":  # the rule before issue 19: an ignored body must be TLVs
            h = _parser_py.parse(data, **flags)
            if h.version == 2 and h.source is None and not h.tlvs and h.length > 16:
                raise InvalidHeader("v2: not a TLV area", 16)
            return h
        if self.how == "authority-cap":  # HAProxy's 255-byte AUTHORITY limit
            h = _parser_py.parse(data, **flags)
            if any(t == 0x02 and len(v) > 255 for t, v in h.tlvs):
                raise InvalidHeader("v2: AUTHORITY over 255 bytes", 28)
            return h
        raise AssertionError(self.how)


@pytest.mark.parametrize(
    "how, seed, error",
    [
        ("offset", "v1-bad-tcp5", AssertionError),
        ("value-error", "v2-inet-stream", ValueError),
        ("crc", "v2-crc32c-wrong", AssertionError),
    ],
)
def test_checker_catches_a_faulty_backend(monkeypatch, how, seed, error):
    monkeypatch.setattr(differential, "BACKENDS", {"python": _parser_py, "skewed": _Skewed(how)})
    with pytest.raises(error):
        differential.check(_read(seed))


@pytest.mark.parametrize(
    "how, seed",
    [("strict-body", "v2-local-body-not-tlvs"), ("strict-body", "v2-proxy-unspec-body-not-tlvs"),
     ("authority-cap", "v2-tlv-authority-4000")],
)
def test_checker_catches_backends_that_agree_on_a_wrong_rule(monkeypatch, how, seed):
    # Agreement alone cannot see a rule both sides get wrong: check 6 can.
    monkeypatch.setattr(differential, "BACKENDS", {"skewed": _Skewed(how)})
    with pytest.raises(AssertionError):
        differential.check(_read(seed))


def test_reference_crc32c():
    # RFC 3720 B.4 test vectors.
    assert differential.reference_crc32c(bytes(32)) == 0x8A9136AA
    assert differential.reference_crc32c(b"\xff" * 32) == 0x62A8AB43
    assert differential.reference_crc32c(bytes(range(32))) == 0x46DD794E
