"""Trusted networks and the options every integration shares."""

import inspect
import ipaddress
import logging

import pytest

import pyproxyproto as pp
from pyproxyproto import _log, aio, sockets
from pyproxyproto._log import format_address
from pyproxyproto._networks import TrustedNetworks, trusted_networks
from pyproxyproto._policy import (
    DEFAULT_MAX_HEADER_SIZE,
    ENVIRONMENT,
    MAX_HEADER_SIZE_LIMIT,
    MIN_HEADER_SIZE,
    Policy,
    PolicyOptions,
    announce,
)


def test_ipv4_and_ipv6_ranges():
    nets = TrustedNetworks(["10.0.0.0/8", "192.0.2.128/25", "2001:db8::/32"])
    assert "10.0.0.0" in nets and "10.255.255.255" in nets
    assert "11.0.0.0" not in nets and "9.255.255.255" not in nets
    assert "192.0.2.128" in nets and "192.0.2.127" not in nets
    assert "2001:db8::1" in nets and "2001:db8:ffff:ffff::1" in nets
    assert "2001:db9::1" not in nets


def test_single_addresses_and_network_objects():
    nets = TrustedNetworks(
        ["127.0.0.1", ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_address("::1")]
    )
    assert "127.0.0.1" in nets and "127.0.0.2" not in nets
    assert "172.31.255.255" in nets and "172.32.0.0" not in nets
    assert "::1" in nets and "::2" not in nets


def test_ipv4_mapped_peers_match_ipv4_ranges():
    nets = TrustedNetworks(["10.0.0.0/8"])
    assert "::ffff:10.1.2.3" in nets
    assert "::ffff:11.1.2.3" not in nets
    # ...and an IPv6 range that spells out the mapped block works too.
    assert "::ffff:11.1.2.3" in TrustedNetworks(["::ffff:0:0/96"])


def test_scoped_ipv6_peer():
    assert "fe80::1%eth0" in TrustedNetworks(["fe80::/10"])


@pytest.mark.parametrize("peer", ["", "/run/app.sock", None, b"\0abstract", "not an ip", "1.2.3"])
def test_non_ip_peers_are_not_trusted(peer):
    assert peer not in TrustedNetworks(["0.0.0.0/0", "::/0"])


def test_overlapping_and_adjacent_ranges_merge():
    nets = TrustedNetworks(["10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/16", "8.0.0.0/7"])
    assert nets._v4 == ([int(ipaddress.ip_address("8.0.0.0"))],
                        [int(ipaddress.ip_address("10.255.255.255"))])
    assert "9.1.1.1" in nets


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.0/33", "example.com", ""])
def test_bad_networks_raise_clear_errors(bad):
    with pytest.raises(ValueError, match="trusted: .* is not an IP network"):
        trusted_networks([bad])


@pytest.mark.parametrize("bad", [b"10.0.0.0/8", bytearray(b"10.0.0.0/8"), 3.5, object()])
def test_wrong_types_for_trusted_are_type_errors(bad):
    # bytes would otherwise be read as a sequence of ints (0.0.0.49, ...).
    with pytest.raises(TypeError, match="trusted"):
        trusted_networks(bad)


@pytest.mark.parametrize("bad", [b"10.0.0.0/8", ["10/8"], 1.5, True])
def test_wrong_types_inside_trusted_are_type_errors(bad):
    with pytest.raises(TypeError, match="is not an IP network"):
        trusted_networks(["10.0.0.0/8", bad])


def test_a_lone_string_is_one_network():
    assert "10.1.1.1" in trusted_networks("10.0.0.0/8")


def test_membership_makes_no_ipaddress_object(monkeypatch):
    policy = Policy(trusted=["10.0.0.0/8", "2001:db8::/32"])

    def forbidden(*args, **kwargs):
        raise AssertionError("ipaddress used per connection")

    for name in ("ip_address", "ip_network", "IPv4Address", "IPv6Address"):
        monkeypatch.setattr(ipaddress, name, forbidden)
    assert policy.trusts(("10.9.8.7", 1))
    assert policy.trusts(("2001:db8::5", 1, 0, 0))
    assert policy.trusts(("::ffff:10.0.0.1", 1, 0, 0))
    assert not policy.trusts(("192.0.2.1", 1))


def test_compiled_networks_are_reused(monkeypatch):
    first = Policy(trusted=["10.0.0.0/8", "192.0.2.0/24"])
    monkeypatch.setattr(ipaddress, "ip_network", lambda *a: pytest.fail("recompiled"))
    again = Policy(trusted=["10.0.0.0/8", "192.0.2.0/24"])
    assert again.networks is first.networks


def test_none_trusts_everyone():
    policy = Policy()
    assert policy.trusts(("192.0.2.1", 1)) and policy.trusts("") and policy.trusts(None)


@pytest.mark.parametrize("peer", ["", "/run/app.sock", b"\0abstract"])
def test_unix_trusts_the_peers_of_a_unix_socket(peer):
    nets = TrustedNetworks(["10.0.0.0/8", "unix"])
    assert nets.trusts(peer) and nets.unix
    assert not TrustedNetworks(["10.0.0.0/8"]).trusts(peer)
    assert nets.trusts(("10.1.1.1", 1)) and not nets.trusts(("11.1.1.1", 1))
    assert not nets.trusts(None)  # a transport that names no peer
    assert Policy(trusted="unix").decide(peer) == "require"
    assert Policy(trusted="unix").decide(("10.1.1.1", 1)) == "reject"


def test_an_empty_string_of_networks_is_an_error():
    with pytest.raises(ValueError, match="is empty"):
        Policy(trusted="")
    with pytest.raises(ValueError, match="is empty"):
        Policy(trusted="  ")


PEER = ("10.1.2.3", 40000)
OUTSIDE = ("192.0.2.9", 40000)


def records(caplog, level=logging.DEBUG):
    return [r for r in caplog.records if r.name == "pyproxyproto" and r.levelno >= level]


def test_every_peer_must_send_a_header_by_default():
    policy = Policy()
    assert policy.decide(PEER) == "require" and policy.decide("/run/x.sock") == "require"
    assert policy.always == "require"


@pytest.mark.parametrize("on_untrusted", ["reject", "ignore", "skip"])
def test_on_untrusted_applies_outside_trusted(on_untrusted):
    policy = Policy(trusted=["10.0.0.0/8"], on_untrusted=on_untrusted)
    assert policy.decide(PEER) == "require"
    assert policy.decide(OUTSIDE) == on_untrusted
    assert policy.decide(None) == on_untrusted  # a transport that names no peer
    assert policy.always is None


def test_on_untrusted_defaults_to_reject():
    assert Policy(trusted=["10.0.0.0/8"]).decide(OUTSIDE) == "reject"


def test_decide_callable_decides_per_peer():
    seen = []

    def by_port(peer):
        seen.append(peer)
        return "skip" if peer[1] == 1 else "require"

    policy = Policy(decide=by_port)
    assert policy.decide(("192.0.2.1", 1)) == "skip"
    assert policy.decide(("192.0.2.1", 2)) == "require"
    assert seen == [("192.0.2.1", 1), ("192.0.2.1", 2)]


def test_the_old_name_of_decide_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="decide="):
        policy = Policy(policy=lambda peer: "skip")
    assert policy.decide(PEER) == "skip"
    with pytest.warns(DeprecationWarning, match="decide="):
        factory = aio.wrap(object, policy=lambda peer: "skip")
    assert factory.policy.decide(PEER) == "skip"


@pytest.mark.parametrize("other", [{"trusted": ["10.0.0.0/8"]}, {"on_untrusted": "skip"}])
def test_decide_excludes_trusted_and_on_untrusted(other):
    with pytest.raises(ValueError, match="either decide or trusted/on_untrusted"):
        Policy(decide=lambda peer: "require", **other)


def test_a_failing_decide_callable_rejects(caplog):
    def broken(peer):
        raise RuntimeError("boom")

    assert Policy(decide=broken).decide(PEER) == "reject"
    [record] = records(caplog, logging.ERROR)
    assert "decide callable failed" in record.getMessage() and record.exc_info


@pytest.mark.parametrize("answer", ["accept", None, 1])
def test_a_decide_callable_answering_nonsense_rejects(caplog, answer):
    assert Policy(decide=lambda peer: answer).decide(PEER) == "reject"
    [record] = records(caplog, logging.ERROR)
    assert repr(answer) in record.getMessage()


@pytest.mark.parametrize(
    "options, error",
    [
        ({"on_untrusted": "drop"}, ValueError),
        ({"on_untrusted": "require"}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"v1": False, "v2": False}, ValueError),
        ({"v1": "yes"}, TypeError),
        ({"decide": "module:function"}, TypeError),
        ({"validate": 42}, TypeError),
        ({"stats": {}}, TypeError),
        ({"max_header_size": 4096.0}, TypeError),
        ({"max_header_size": True}, TypeError),
        ({"max_header_size": MIN_HEADER_SIZE - 1}, ValueError),
        ({"max_header_size": MAX_HEADER_SIZE_LIMIT + 1}, ValueError),
        ({"trusted_networks": ["10.0.0.0/8"]}, TypeError),
    ],
)
def test_option_errors(options, error):
    with pytest.raises(error):
        Policy(**options)


def test_defaults():
    policy = Policy()
    assert policy.timeout == 5.0 and policy.max_header_size == DEFAULT_MAX_HEADER_SIZE == 4096
    assert policy.networks is None and policy.on_untrusted == "reject"
    assert policy.decider is policy.validate is policy.stats is None
    assert policy.v1 is policy.v2 is True
    assert Policy(timeout=float("inf")).timeout is None and Policy(timeout=2).timeout == 2.0


# Every API that takes the policy: a Policy as ``policy``, or the options.
APIS = [aio.wrap, aio.start_server, aio.read_header, aio.wrap_datagram, sockets.recv_header,
        sockets.accept, sockets.handshake, sockets.ProxyProtocolMixin.__init__]


@pytest.mark.parametrize("api", APIS, ids=lambda api: api.__qualname__)
def test_every_api_takes_a_policy_or_the_one_declaration_of_the_options(api):
    params = inspect.signature(api).parameters
    assert params["policy"].default is None
    [variadic] = [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    assert variadic.annotation in ("Unpack[PolicyOptions]", "'Unpack[PolicyOptions]'")
    # No option is spelled out by hand beside them.
    assert not set(params) & set(PolicyOptions.__annotations__)
    assert "PolicyOptions" in (api.__doc__ or "")


def test_the_options_are_declared_once_and_documented():
    doc = PolicyOptions.__doc__
    for name in PolicyOptions.__annotations__:
        assert f"``{name}``" in doc, name
    assert pp.Policy is Policy and pp.PolicyOptions is PolicyOptions


def test_a_policy_and_options_together_are_a_type_error():
    with pytest.raises(TypeError, match="either policy= or policy options"):
        aio.wrap(object, policy=Policy(), timeout=1)
    with pytest.raises(TypeError, match="must be a pyproxyproto.Policy"):
        aio.wrap(object, policy="strict")


def test_every_refusal_is_a_proxy_protocol_error():
    for cls in (pp.InvalidHeader, pp.ChecksumMismatch, pp.ConnectionClosed, pp.HeaderRejected,
                pp.HeaderTimeout, pp.UntrustedPeer):
        assert issubclass(cls, pp.ProxyProtocolError), cls
    assert issubclass(pp.HeaderTimeout, TimeoutError)
    assert issubclass(pp.UntrustedPeer, ConnectionError)


@pytest.mark.parametrize(
    "address, text",
    [(("10.0.0.1", 80), "10.0.0.1:80"), (("::1", 80, 0, 0), "[::1]:80"),
     ("/run/x.sock", "a Unix-socket peer (/run/x.sock)"), ("", "a Unix-socket peer"),
     (b"\0lb", "a Unix-socket peer (@lb)"), (None, "a peer whose address is unknown")],
)
def test_format_address(address, text):
    assert format_address(address) == text


def test_a_unix_peer_is_named_with_the_socket_it_connected_to():
    assert format_address("", "/run/app.sock") == "a Unix-socket peer on /run/app.sock"


def test_refusal_log_record(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    _log.log_refusal(logging.WARNING, "closed connection", ("10.0.0.1", 5), "why")
    [record] = caplog.records
    assert record.name == "pyproxyproto" and record.levelno == logging.WARNING
    assert record.getMessage() == "closed connection from 10.0.0.1:5: why"


# -- what the policy means, said at start-up --------------------------------------------


def test_announce_says_when_every_peer_is_trusted(caplog):
    announce(Policy(), "uvicorn", setting=ENVIRONMENT)
    [record] = records(caplog)
    assert record.levelno == logging.WARNING and record.getMessage().startswith(
        "uvicorn: every peer is trusted to send a PROXY header")
    assert record.getMessage().endswith(
        "name your balancers' networks in PYPROXYPROTO_TRUSTED (* to trust every peer and "
        "say so)")


def test_announce_names_only_the_keyword_where_the_environment_is_not_read(caplog):
    announce(Policy(), "gevent")
    [record] = records(caplog)
    assert record.getMessage().endswith(
        "name your balancers' networks in trusted= (trusted=None to trust every peer and "
        "say so)")


def test_announce_says_when_no_peer_is_trusted(caplog):
    announce(Policy(trusted=[]), "gunicorn")
    [record] = records(caplog)
    assert "the trusted networks are empty" in record.getMessage()


def test_announce_says_when_every_address_is_trusted(caplog):
    announce(Policy(trusted=["0.0.0.0/0", "::/0"]), "hypercorn")
    [record] = records(caplog)
    assert "cover every IP address" in record.getMessage()


def test_announce_refuses_a_unix_listener_that_trusts_no_unix_peer(caplog):
    with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
        announce(Policy(trusted=["10.0.0.0/8"]), "uvicorn", unix=True)
    announce(Policy(trusted=["10.0.0.0/8", "unix"]), "uvicorn", unix=True)
    assert not records(caplog)
