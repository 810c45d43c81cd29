"""The policy module's decisions, limits, validation, counters, logging and
options from the environment, independent of any integration."""

import logging
import struct
import threading

import pytest

import pyproxyproto as pp
from pyproxyproto import _policy
from pyproxyproto._policy import (
    DEFAULT_MAX_HEADER_SIZE,
    MAX_HEADER_SIZE_LIMIT,
    MIN_HEADER_SIZE,
    Policy,
    options_from_env,
    policy_from_env,
)

from tests.headers import VALID

PEER = ("10.1.2.3", 40000)
OUTSIDE = ("192.0.2.9", 40000)


def records(caplog, level=logging.DEBUG):
    return [r for r in caplog.records if r.name == "pyproxyproto" and r.levelno >= level]


# -- deciding ---------------------------------------------------------------------------


def test_every_peer_must_send_a_header_by_default():
    policy = Policy()
    assert policy.decide(PEER) == "require" and policy.decide("/run/x.sock") == "require"


@pytest.mark.parametrize("on_untrusted", ["reject", "ignore", "skip"])
def test_on_untrusted_applies_outside_trusted(on_untrusted):
    policy = Policy(trusted=["10.0.0.0/8"], on_untrusted=on_untrusted)
    assert policy.decide(PEER) == "require"
    assert policy.decide(OUTSIDE) == on_untrusted
    assert policy.decide(None) == on_untrusted  # a transport that names no peer


def test_on_untrusted_defaults_to_reject():
    assert Policy(trusted=["10.0.0.0/8"]).decide(OUTSIDE) == "reject"


def test_policy_callable_decides_per_peer():
    seen = []

    def by_port(peer):
        seen.append(peer)
        return "skip" if peer[1] == 1 else "require"

    policy = Policy(policy=by_port)
    assert policy.decide(("192.0.2.1", 1)) == "skip"
    assert policy.decide(("192.0.2.1", 2)) == "require"
    assert seen == [("192.0.2.1", 1), ("192.0.2.1", 2)]


@pytest.mark.parametrize("other", [{"trusted": ["10.0.0.0/8"]}, {"on_untrusted": "skip"}])
def test_policy_callable_excludes_trusted_and_on_untrusted(other):
    with pytest.raises(ValueError, match="either policy or trusted/on_untrusted"):
        Policy(policy=lambda peer: "require", **other)


def test_a_failing_policy_callable_rejects(caplog):
    def broken(peer):
        raise RuntimeError("boom")

    assert Policy(policy=broken).decide(PEER) == "reject"
    [record] = records(caplog, logging.ERROR)
    assert "policy callable failed" in record.getMessage() and record.exc_info


@pytest.mark.parametrize("answer", ["accept", None, 1])
def test_a_policy_callable_answering_nonsense_rejects(caplog, answer):
    assert Policy(policy=lambda peer: answer).decide(PEER) == "reject"
    [record] = records(caplog, logging.ERROR)
    assert repr(answer) in record.getMessage()


@pytest.mark.parametrize(
    "options, error",
    [
        ({"on_untrusted": "require"}, ValueError),
        ({"policy": "module:function"}, TypeError),
        ({"validate": 42}, TypeError),
        ({"stats": {}}, TypeError),
        ({"max_header_size": 4096.0}, TypeError),
        ({"max_header_size": True}, TypeError),
        ({"max_header_size": MIN_HEADER_SIZE - 1}, ValueError),
        ({"max_header_size": MAX_HEADER_SIZE_LIMIT + 1}, ValueError),
    ],
)
def test_option_errors(options, error):
    with pytest.raises(error):
        Policy(**options)


def test_infinite_timeout_means_no_limit():
    assert Policy(timeout=float("inf")).timeout is None
    assert Policy(timeout=2).timeout == 2.0


# -- size limit -------------------------------------------------------------------------


def v2_declaring(length):
    """The 16-byte fixed part of a v2 PROXY TCP4 header declaring ``length``."""
    return VALID["v2-ipv4"][:14] + struct.pack("!H", length)


def test_a_large_v2_header_is_refused_at_its_length_field():
    policy = Policy(max_header_size=300)
    with pytest.raises(pp.Incomplete):
        policy.parse(v2_declaring(300 - 16)[:15])
    with pytest.raises(pp.Incomplete) as info:
        policy.parse(v2_declaring(300 - 16))
    assert info.value.needed == 300
    with pytest.raises(pp.InvalidHeader, match=r"declares 301 bytes, more than max_header_size \(300\)"):
        policy.parse(v2_declaring(301 - 16))


def test_a_complete_header_over_the_limit_is_refused():
    big = pp.build(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0xE5, b"x" * 400)])
    assert pp.parse(big).length == len(big) > 300
    with pytest.raises(pp.InvalidHeader, match="more than max_header_size"):
        Policy(max_header_size=300).parse(big + b"payload")
    assert Policy().parse(big).length == len(big)


def test_the_default_limit_and_the_largest_allowed():
    assert DEFAULT_MAX_HEADER_SIZE == 4096
    huge = pp.build(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0xE5, b"x" * (0xFFFF - 12 - 3))])
    assert len(huge) == MAX_HEADER_SIZE_LIMIT == 65551
    with pytest.raises(pp.InvalidHeader):
        Policy().parse(huge)
    assert Policy(max_header_size=65551).parse(huge).length == 65551


@pytest.mark.parametrize("kind", sorted(VALID))
def test_parse_follows_the_version_switches(kind):
    data = VALID[kind]
    assert Policy().parse(data) == pp.parse(data)
    version = 1 if kind.startswith("v1") else 2
    with pytest.raises(pp.InvalidHeader):
        Policy(v1=version != 1, v2=version != 2).parse(data)


# -- accepting --------------------------------------------------------------------------


def test_accept_believes_the_header():
    stats = pp.Stats()
    header = pp.parse(VALID["v2-ipv4"])
    assert Policy(stats=stats).accept(header, PEER, "require") == (("192.0.2.1", 56324), header)
    assert stats.accepted == 1


@pytest.mark.parametrize("kind", ["v2-local", "v1-unknown"])
def test_local_and_unknown_leave_the_peer(kind):
    header = pp.parse(VALID[kind])
    assert Policy().accept(header, PEER, "require") == (PEER, header)


def test_ignore_consumes_but_does_not_believe():
    stats = pp.Stats()
    calls = []
    policy = Policy(trusted=["192.0.2.0/24"], on_untrusted="ignore", validate=calls.append,
                    stats=stats)
    header = pp.parse(VALID["v2-ipv4"])
    assert policy.accept(header, PEER, "ignore") == (PEER, None)
    assert calls == [] and stats.accepted == 1


def test_validator_refuses(caplog):
    stats = pp.Stats()

    def only_vpce(header):
        if header.aws_vpce_id != "vpce-allowed":
            raise PermissionError(f"endpoint {header.aws_vpce_id} not allowed")

    policy = Policy(validate=only_vpce, stats=stats)
    header = pp.parse(VALID["v2-cloud"])
    with pytest.raises(pp.HeaderRejected) as info:
        policy.accept(header, PEER, "require")
    assert info.value.header is header
    assert isinstance(info.value.__cause__, PermissionError)
    assert stats.rejected_by_validator == 1 and stats.accepted == 0
    [record] = records(caplog)
    assert record.levelno == logging.WARNING
    assert "vpce-0123456789abcdef0 not allowed" in record.getMessage()


# -- giving up: counters and log levels -------------------------------------------------


def test_each_outcome_has_its_counter_and_level(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    stats = pp.Stats()
    policy = Policy(stats=stats, timeout=2)
    assert isinstance(policy.refuse_peer(PEER), pp.UntrustedPeer)
    bad = pp.InvalidHeader("nope", 0)
    assert policy.refuse_header(PEER, bad) is bad
    assert isinstance(policy.timed_out(PEER, 0), pp.HeaderTimeout)
    assert isinstance(policy.timed_out(PEER, 5), pp.HeaderTimeout)
    closed = policy.closed_early(PEER, 0, 1)
    assert isinstance(closed, pp.ConnectionClosed) and closed.received == 0
    assert policy.closed_early(PEER, 20, 28).needed == 28
    policy.skipped()
    assert stats.as_dict() == {
        "accepted": 0,
        "skipped": 1,
        "rejected_untrusted": 1,
        "rejected_invalid": 1,
        "rejected_by_validator": 0,
        "timed_out": 2,
        "closed_early": 2,
    }
    levels = [(r.levelno, r.getMessage()) for r in records(caplog)]
    assert levels == [
        (logging.WARNING, "closed connection from 10.1.2.3:40000: peer is not in the trusted networks"),
        (logging.WARNING, "closed connection from 10.1.2.3:40000: invalid PROXY header: nope"),
        # Silent peers (health checks, idle probes) are only worth DEBUG.
        (logging.DEBUG, "closed connection from 10.1.2.3:40000: no complete PROXY header within 2 s (0 byte(s) received)"),
        (logging.WARNING, "closed connection from 10.1.2.3:40000: no complete PROXY header within 2 s (5 byte(s) received)"),
        (logging.DEBUG, "closed connection from 10.1.2.3:40000: connection closed after 0 byte(s), before the PROXY header was complete (at least 1 needed)"),
        (logging.WARNING, "closed connection from 10.1.2.3:40000: connection closed after 20 byte(s), before the PROXY header was complete (at least 28 needed)"),
    ]


def test_stats_are_shared_and_exact_across_threads():
    stats = pp.Stats()
    policies = [Policy(stats=stats), Policy(stats=stats, trusted=["10.0.0.0/8"])]
    header = pp.parse(VALID["v2-ipv4"])

    def work(policy):
        for _ in range(5000):
            policy.accept(header, PEER, "require")

    threads = [threading.Thread(target=work, args=(policies[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.accepted == 40000
    assert "accepted=40000" in repr(stats)


def test_warnings_are_rate_limited_and_say_what_was_dropped(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_policy.time, "monotonic", lambda: now[0])
    policy = Policy()
    for _ in range(25):
        policy.refuse_peer(PEER)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == _policy._limiter.burst == 10
    now[0] += _policy._limiter.window
    policy.refuse_peer(PEER)
    last = records(caplog, logging.WARNING)[-1].getMessage()
    assert last.endswith("(15 similar record(s) were not logged)")


def test_debug_records_are_not_rate_limited(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    policy = Policy()
    for _ in range(30):
        policy.closed_early(PEER, 0, 1)
    assert len(records(caplog)) == 30


# -- options from the environment -------------------------------------------------------


def allow_all(header):
    return None


def skip_probes(peer):
    return "skip"


SHARED_STATS = pp.Stats()


def test_options_from_env():
    env = {
        "PYPROXYPROTO_TRUSTED": "10.0.0.0/8, 2001:db8::/32",
        "PYPROXYPROTO_ON_UNTRUSTED": "skip",
        "PYPROXYPROTO_VALIDATE": f"{__name__}:allow_all",
        "PYPROXYPROTO_TIMEOUT": "2.5",
        "PYPROXYPROTO_MAX_HEADER_SIZE": "1024",
        "PYPROXYPROTO_VERSIONS": "2",
        "PYPROXYPROTO_STATS": f"{__name__}:SHARED_STATS",
    }
    options = options_from_env(env)
    assert options["on_untrusted"] == "skip" and options["validate"] is allow_all
    assert options["timeout"] == 2.5 and options["max_header_size"] == 1024
    assert (options["v1"], options["v2"]) == (False, True)
    assert options["stats"] is SHARED_STATS
    policy = Policy(**options)
    assert policy.decide(("2001:db8::1", 1, 0, 0)) == "require"
    assert policy.decide(OUTSIDE) == "skip"


def test_empty_env_gives_the_defaults():
    assert options_from_env({}) == {}
    assert options_from_env({"PYPROXYPROTO_TRUSTED": "*", "PYPROXYPROTO_TIMEOUT": " "}) == {}
    assert options_from_env({"PYPROXYPROTO_TIMEOUT": "none"}) == {"timeout": None}


def test_policy_from_env_with_overrides():
    env = {"PYPROXYPROTO_TRUSTED": "10.0.0.0/8", "PYPROXYPROTO_TIMEOUT": "3"}
    policy = policy_from_env(env, timeout=1)
    assert policy.timeout == 1 and policy.decide(OUTSIDE) == "reject"
    # A policy callable given in code replaces the trusted networks of the env.
    assert policy_from_env(env, policy=skip_probes).decide(PEER) == "skip"
    env = {"PYPROXYPROTO_POLICY": f"{__name__}:skip_probes"}
    assert policy_from_env(env).decide(PEER) == "skip"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("PYPROXYPROTO_TRUSTED", "10.0.0.0/33", "is not an IP network"),
        ("PYPROXYPROTO_ON_UNTRUSTED", "drop", "must be reject, ignore or skip"),
        ("PYPROXYPROTO_POLICY", "nomodule_here:f", "cannot import"),
        ("PYPROXYPROTO_POLICY", "just_a_name", "must be module:attribute"),
        ("PYPROXYPROTO_VALIDATE", f"{__name__}:SHARED_STATS", "is not callable"),
        ("PYPROXYPROTO_TIMEOUT", "soon", "positive number of seconds"),
        ("PYPROXYPROTO_TIMEOUT", "-1", "positive number of seconds"),
        ("PYPROXYPROTO_MAX_HEADER_SIZE", "big", "invalid literal"),
        ("PYPROXYPROTO_MAX_HEADER_SIZE", "100", "between 232 and 65551"),
        ("PYPROXYPROTO_VERSIONS", "3", "must be 1, 2 or 1,2"),
        ("PYPROXYPROTO_STATS", f"{__name__}:allow_all", "is not a pyproxyproto.Stats"),
    ],
)
def test_bad_env_values_name_the_variable(name, value, message):
    with pytest.raises(ValueError, match=f"^{name}=") as info:
        options_from_env({name: value})
    assert message in str(info.value)
