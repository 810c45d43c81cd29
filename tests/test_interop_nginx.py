"""nginx's stream proxy (``proxy_protocol on;``) in front of ``aio.wrap``.

nginx runs from the distribution's package as the current user, with its own
prefix, pid file and error log in a temporary directory, in the foreground;
the stream module is loaded with ``load_module`` when it is a dynamic module
(Debian: libnginx-mod-stream).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import ssl
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C

from tests import peers
from tests.peers import LOOPBACK4, LOOPBACK6, ProxiedApp, url_host

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return peers.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def stack(certs):
    """nginx with four stream servers in front of two applications (IPv4, IPv6).

    plain4 / plain6: client -> nginx -> app, nginx writes a v1 header.
    realip / realip6: client sends its own PROXY header, nginx (listen ...
                     proxy_protocol + set_real_ip_from) believes it and
                     writes a header with that client.
    tls:             nginx terminates TLS, then as plain4.
    """
    ipv6 = peers.ipv6_loopback()
    ports = {
        "probe": peers.free_port(),
        "plain4": peers.free_port(),
        "realip": peers.free_port(),
        "tls": peers.free_port(),
        "plain6": peers.free_port(LOOPBACK6) if ipv6 else None,
        "realip6": peers.free_port(LOOPBACK6) if ipv6 else None,
    }
    with peers.scratch_dir("pp-nginx-") as directory, ProxiedApp(LOOPBACK4) as app4:
        app6 = ProxiedApp(LOOPBACK6) if ipv6 else None
        if app6 is not None:
            app6.__enter__()
        try:
            upstream4 = f"{LOOPBACK4}:{app4.port}"
            servers = [
                f"server {{ listen {LOOPBACK4}:{ports['probe']}; return \"ready\\n\"; }}",
                f"server {{ listen {LOOPBACK4}:{ports['plain4']}; "
                f"proxy_pass {upstream4}; proxy_protocol on; }}",
                f"server {{ listen {LOOPBACK4}:{ports['realip']} proxy_protocol; "
                f"set_real_ip_from {LOOPBACK4}; proxy_pass {upstream4}; proxy_protocol on; }}",
                f"server {{ listen {LOOPBACK4}:{ports['tls']} ssl; "
                f"ssl_certificate {certs.server_cert}; ssl_certificate_key {certs.server_key}; "
                f"proxy_pass {upstream4}; proxy_protocol on; }}",
            ]
            if app6 is not None:
                servers.append(
                    f"server {{ listen {url_host(LOOPBACK6)}:{ports['plain6']}; "
                    f"proxy_pass {url_host(LOOPBACK6)}:{app6.port}; proxy_protocol on; }}"
                )
                servers.append(
                    f"server {{ listen {url_host(LOOPBACK6)}:{ports['realip6']} proxy_protocol; "
                    f"set_real_ip_from {LOOPBACK6}; "
                    f"proxy_pass {url_host(LOOPBACK6)}:{app6.port}; proxy_protocol on; }}"
                )
            block = "\n".join(servers)
            with peers.nginx(block, directory, (LOOPBACK4, ports["probe"])) as proc:
                yield {"ports": ports, "app4": app4, "app6": app6, "nginx": proc}
        finally:
            if app6 is not None:
                app6.__exit__(None, None, None)


@pytest.fixture
def clean(stack):
    """Per test: no connection left over in the queues from an earlier test."""
    apps = [app for app in (stack["app4"], stack["app6"]) if app is not None]
    for app in apps:
        while not app.seen.empty():
            app.seen.get_nowait()
        app.take_records()
        app.loop_errors.clear()
    yield stack
    problems = [p for app in apps for p in app.problems()]
    for app in apps:
        app.take_records()
        app.loop_errors.clear()
    assert problems == []


def exchange(sock, payload: bytes) -> tuple[dict, bytes]:
    sock.sendall(payload)
    report = json.loads(peers.recv_line(sock))
    return report, peers.recv_exactly(sock, len(payload))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_nginx_proxy_protocol_reaches_the_application(clean, family):
    if family == "ipv6":
        peers.need(clean["app6"] is not None, "no IPv6 loopback (::1) on this machine")
        host, port, app = LOOPBACK6, clean["ports"]["plain6"], clean["app6"]
    else:
        host, port, app = LOOPBACK4, clean["ports"]["plain4"], clean["app4"]
    payload = os.urandom(256 * 1024)
    with socket.create_connection((host, port), timeout=10) as sock:
        client = sock.getsockname()
        report, echoed = exchange(sock, payload)
    assert echoed == payload
    seen = app.next_seen()
    h = seen.header
    assert h.version == 1  # nginx writes v1
    assert h.command == pp.Command.PROXY
    assert h.family == (socket.AF_INET6 if family == "ipv6" else socket.AF_INET)
    assert tuple(h.source[:2]) == tuple(client[:2])
    assert tuple(h.destination[:2]) == (host, port)
    assert tuple(seen.peername[:2]) == tuple(client[:2])
    assert tuple(report["peername"][:2]) == tuple(client[:2])
    assert tuple(report["sockname"][:2]) == (host, port)
    assert seen.proxy_peername[0] == host  # nginx's own connection


def test_nginx_terminating_tls(clean, certs):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    port = clean["ports"]["tls"]
    with socket.create_connection((LOOPBACK4, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=certs.server_name) as sock:
            client = sock.getsockname()
            report, echoed = exchange(sock, b"over TLS to nginx\n" * 1000)
    assert echoed == b"over TLS to nginx\n" * 1000
    assert tuple(report["peername"]) == tuple(client)
    seen = clean["app4"].next_seen()
    assert tuple(seen.peername) == tuple(client)
    assert tuple(seen.sockname) == (LOOPBACK4, port)


REALIP_HEADERS = {
    "v1-tcp4": pp.build(("203.0.113.7", 41234), ("198.51.100.1", 443), version=1),
    "v2-inet": pp.build(("203.0.113.8", 41235), ("198.51.100.1", 443), version=2),
    "v1-tcp6": pp.build(("2001:db8::7", 41236), ("2001:db8::1", 443), version=1),
    "v2-inet6": pp.build(("2001:db8::8", 41237), ("2001:db8::1", 443), version=2),
    "v2-tlvs-crc32c": pp.build(
        ("192.0.2.9", 41238), ("198.51.100.1", 443), version=2, crc32c=True,
        tlvs=[(C.PP2_TYPE_AUTHORITY, b"nginx.pp.test"), (C.PP2_TYPE_UNIQUE_ID, b"u-1")],
    ),
}


@pytest.mark.parametrize("listener", ["ipv4", "ipv6"])
@pytest.mark.parametrize("name", sorted(REALIP_HEADERS))
def test_nginx_realip_passes_on_our_client(clean, name, listener):
    """pp.build -> nginx (listen proxy_protocol, set_real_ip_from) -> aio.wrap.

    nginx writes the client from our header next to its own local address,
    so when their families differ its line mixes them ("TCP6 2001:db8::7
    127.0.0.1 ..."), which the spec forbids: the application must then
    refuse the connection (one warning), never half-believe it.
    """
    header = REALIP_HEADERS[name]
    encoded = pp.parse(header)
    if listener == "ipv6":
        peers.need(clean["app6"] is not None, "no IPv6 loopback (::1) on this machine")
        host, port, app = LOOPBACK6, clean["ports"]["realip6"], clean["app6"]
        listener_family = socket.AF_INET6
    else:
        host, port, app = LOOPBACK4, clean["ports"]["realip"], clean["app4"]
        listener_family = socket.AF_INET
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(header)
        if encoded.family != listener_family:
            sock.sendall(b"after the header")
            assert peers.recv_until_closed(sock) == b""
            records = []
            for _ in range(100):
                records = app.take_records()
                if records:
                    break
                time.sleep(0.05)
            assert len(records) == 1, [r.getMessage() for r in records]
            message = records[0].getMessage()
            assert "invalid PROXY header" in message and "address" in message, message
            assert app.seen.empty()
            return
        report, echoed = exchange(sock, b"after the header")
    assert echoed == b"after the header"
    seen = app.next_seen()
    assert tuple(seen.peername[:2]) == tuple(encoded.source[:2])
    assert tuple(report["peername"][:2]) == tuple(encoded.source[:2])
    assert seen.header.version == 1
    assert seen.header.family == listener_family


def test_nginx_many_clients_each_see_their_own_address(clean):
    port = clean["ports"]["plain4"]
    app = clean["app4"]

    def one(i: int):
        payload = f"client {i} ".encode() * (50 + i)
        with socket.create_connection((LOOPBACK4, port), timeout=15) as sock:
            client = sock.getsockname()
            report, echoed = exchange(sock, payload)
        return client, report, echoed == payload

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(64)))
    assert all(ok for _, _, ok in results)
    assert all(tuple(r["peername"]) == tuple(c) for c, r, _ in results)
    seen = [app.next_seen() for _ in results]
    assert sorted(s.peername[1] for s in seen) == sorted(c[1] for c, _, _ in results)
