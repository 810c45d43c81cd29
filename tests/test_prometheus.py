"""pyproxyproto.prometheus: Stats scraped as Prometheus metrics, and the echo app's /metrics."""

import socket

import pytest

import pyproxyproto as pp

from tests.integration_helpers import LOOPBACK, recv_all, require_module



def client():
    require_module("prometheus_client")
    import prometheus_client

    return prometheus_client


def counted(stats):
    """Drive one handshake of each outcome through ``stats``."""
    from pyproxyproto._policy import Policy

    policy = Policy(stats=stats, trusted=["10.0.0.0/8"])
    for data in (pp.build(("192.0.2.1", 1), ("192.0.2.2", 2)), pp.build(version=1),
                 pp.build(command=pp.Command.LOCAL), b"GET / HTTP/1.1\r\n\r\n"):
        hs = pp.Handshake(policy)
        hs.begin(("10.0.0.1", 5))
        hs.feed(data)
    pp.Handshake(policy).begin(("192.0.2.9", 5))  # untrusted
    hs = pp.Handshake(policy)
    hs.begin(("10.0.0.1", 5))
    hs.timed_out()


def scrape(registry):
    return client().generate_latest(registry).decode()


def test_one_stats_is_scraped_as_counters():
    prom = client()
    from pyproxyproto.prometheus import register

    stats = pp.Stats()
    registry = prom.CollectorRegistry()
    register(stats, registry)
    counted(stats)
    text = scrape(registry)
    for line in [
        'pyproxyproto_headers_accepted_total{version="1"} 1.0',
        'pyproxyproto_headers_accepted_total{version="2"} 2.0',
        "pyproxyproto_local_headers_total 1.0",
        "pyproxyproto_connections_skipped_total 0.0",
        'pyproxyproto_connections_refused_total{reason="untrusted"} 1.0',
        'pyproxyproto_connections_refused_total{reason="invalid"} 1.0',
        'pyproxyproto_connections_refused_total{reason="validator"} 0.0',
        'pyproxyproto_connections_refused_total{reason="timeout"} 1.0',
        'pyproxyproto_connections_refused_total{reason="closed_early"} 0.0',
    ]:
        assert line in text.splitlines(), (line, text)
    # Each scrape reads the counters at that instant.
    counted(stats)
    assert 'pyproxyproto_headers_accepted_total{version="2"} 4.0' in scrape(registry)


def test_several_stats_by_server_name():
    prom = client()
    from pyproxyproto.prometheus import register

    web, api = pp.Stats(), pp.Stats()
    registry = prom.CollectorRegistry()
    register({"web": web, "api": api}, registry)
    counted(web)
    text = scrape(registry)
    assert 'pyproxyproto_headers_accepted_total{server="web",version="2"} 2.0' in text
    assert 'pyproxyproto_headers_accepted_total{server="api",version="2"} 0.0' in text


@pytest.mark.parametrize("bad", [None, {}, {"web": object()}, {"": pp.Stats()}, [pp.Stats()]])
def test_what_the_collector_takes(bad):
    client()
    from pyproxyproto.prometheus import StatsCollector

    with pytest.raises(TypeError, match="StatsCollector takes"):
        StatsCollector(bad)


def test_the_echo_app_serves_metrics_on_its_plain_port():
    client()
    from pyproxyproto._echo import EchoApp

    app = EchoApp(LOOPBACK, 0, 0, trusted=None, header_timeout=2)
    try:
        proxy_port = app.proxy.server_address[1]
        plain_port = app.plain.server_address[1]
        with socket.create_connection((LOOPBACK, proxy_port), timeout=5) as sock:
            sock.sendall(pp.build(("203.0.113.7", 1), ("198.51.100.1", 80))
                         + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert recv_all(sock).startswith(b"HTTP/1.1 200")
        with socket.create_connection((LOOPBACK, plain_port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = recv_all(sock).partition(b"\r\n\r\n")
    finally:
        app.close()
    assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head
    assert b'pyproxyproto_headers_accepted_total{version="2"} 1.0' in body
