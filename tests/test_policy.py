"""Trusted networks and the options every integration shares."""

import inspect
import ipaddress
import logging

import pytest

from pyproxyproto import _policy, aio, sockets
from pyproxyproto._policy import Policy, TrustedNetworks, format_address, trusted_networks


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


@pytest.mark.parametrize(
    "options, error",
    [
        ({"on_untrusted": "drop"}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"v1": False, "v2": False}, ValueError),
    ],
)
def test_option_errors(options, error):
    with pytest.raises(error):
        Policy(**options)


@pytest.mark.parametrize(
    "api", [aio.wrap, aio.start_server, aio.read_header, sockets.recv_header,
            sockets.accept, sockets.ProxyProtocolMixin.__init__],
)
def test_default_header_timeout_is_five_seconds(api):
    assert inspect.signature(api).parameters["timeout"].default == 5.0


@pytest.mark.parametrize(
    "api", [aio.wrap, aio.start_server, aio.wrap_datagram, sockets.accept,
            sockets.ProxyProtocolMixin.__init__],
)
def test_default_options(api):
    params = inspect.signature(api).parameters
    assert params["trusted"].default is None
    # None means "reject", and leaves room for a policy callable instead.
    assert params["on_untrusted"].default is None
    assert Policy().on_untrusted == "reject"
    assert params["policy"].default is None and params["validate"].default is None
    assert params["max_header_size"].default == 4096 and params["stats"].default is None
    assert params["v1"].default is True and params["v2"].default is True


@pytest.mark.parametrize(
    "address, text",
    [(("10.0.0.1", 80), "10.0.0.1:80"), (("::1", 80, 0, 0), "[::1]:80"),
     ("/run/x.sock", "/run/x.sock"), ("", "an unnamed socket"), (None, "an unnamed socket")],
)
def test_format_address(address, text):
    assert format_address(address) == text


def test_rejection_log_record(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    _policy.log_rejection("closed connection", ("10.0.0.1", 5), "why")
    [record] = caplog.records
    assert record.name == "pyproxyproto" and record.levelno == logging.WARNING
    assert record.getMessage() == "closed connection from 10.0.0.1:5: why"
