"""HAProxy, from the distribution's package, on loopback against pyproxyproto.

(a) HAProxy terminates TLS (certificates made here with the openssl CLI,
    a client certificate included) and forwards with ``send-proxy`` or
    ``send-proxy-v2`` + every ``proxy-v2-options`` it has to an asyncio server
    behind ``aio.wrap``: the application sees the client's address and port
    and every TLV HAProxy sent, through the typed views.
(b) the CRC32C HAProxy computes is checked byte for byte on a captured header.
(c) headers from ``pp.build`` go to a ``bind ... accept-proxy`` frontend,
    whose log shows the addresses (and TLVs) we encoded.
(d) ``check-send-proxy`` health checks (v2 LOCAL, v1) are handled without a
    single warning, and a LOCAL connection keeps its real addresses.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C

from tests import peers
from tests.peers import LOOPBACK4, LOOPBACK6, ProxiedApp, url_host

pytestmark = pytest.mark.interop

V2_OPTIONS = "ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id"
UNIQUE_ID_FORMAT = "pp-%ci-%cp-%rt"

FAMILIES = {
    "ipv4": (LOOPBACK4, socket.AF_INET),
    "ipv6": (LOOPBACK6, socket.AF_INET6),
}


@pytest.fixture(scope="module")
def haproxy_version():
    version = peers.haproxy_version()
    peers.need(version is not None, "haproxy is not installed (apt-get install haproxy)")
    # proxy-v2-options unique-id arrived in 2.0; every other option is older.
    peers.need(version >= (2, 0), f"HAProxy {version} is older than 2.0")
    return version


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return peers.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def workdir():
    with peers.scratch_dir("pp-haproxy-") as path:
        yield path


def host_for(family: str) -> str:
    host, _ = FAMILIES[family]
    if family == "ipv6":
        peers.need(peers.ipv6_loopback(), "no IPv6 loopback (::1) on this machine")
    return host


def config(body: str, probe: int) -> str:
    return f"""\
global
    log stdout format raw local0 info
    nbthread 1
    maxconn 256

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 15s
    timeout server 15s

frontend ready
    bind {LOOPBACK4}:{probe}
    tcp-request connection reject

{body}
"""


def tls_client(certs, host, port, *, client_cert=True, tls12=False, sni=peers.SERVER_NAME):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    raw = socket.create_connection((host, port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=sni)


def exchange(sock, payload: bytes) -> tuple[dict, bytes]:
    """Send payload; read the application's report line and the echo."""
    sock.sendall(payload)
    report = json.loads(peers.recv_line(sock))
    echoed = peers.recv_exactly(sock, len(payload))
    return report, echoed


def same_address(a, b) -> bool:
    return tuple(a[:2]) == tuple(b[:2])


# -- (a) TLS terminated by HAProxy, send-proxy / send-proxy-v2 ----------------


def tls_frontend(name, host, port, certs, backend, verify="required", extra=""):
    return f"""\
frontend {name}
    bind {url_host(host)}:{port} ssl crt {certs.server_pem} ca-file {certs.ca} \
        verify {verify} alpn http/1.1
    unique-id-format {UNIQUE_ID_FORMAT}
    {extra}
    default_backend {backend}
"""


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_send_proxy_v2_tls_every_tlv(haproxy_version, certs, workdir, family, tls12):
    host = host_for(family)
    probe, front = peers.free_port(), peers.free_port(host)
    trusted = ["127.0.0.0/8"] if family == "ipv4" else ["::1/128"]
    with ProxiedApp(host, trusted=trusted, timeout=5.0) as app:
        body = tls_frontend("tls", host, front, certs, "app") + f"""
backend app
    server app {url_host(host)}:{app.port} send-proxy-v2 proxy-v2-options {V2_OPTIONS}
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with tls_client(certs, host, front, tls12=tls12) as sock:
                client = sock.getsockname()
                version, cipher = sock.version(), sock.cipher()[0]
                assert sock.selected_alpn_protocol() == "http/1.1"
                payload = os.urandom(3000)
                report, echoed = exchange(sock, payload)
            seen = app.next_seen()

        assert echoed == payload
        # What the application's transport says.
        assert same_address(report["peername"], client)
        assert same_address(report["sockname"], (host, front))
        assert report["proxy_peername"][0] == host  # HAProxy's own connection
        assert same_address(seen.peername, client)
        assert seen.peername == seen.header.source

        h = seen.header
        assert h.version == 2
        assert h.command == pp.Command.PROXY
        assert h.family == FAMILIES[family][1]
        assert h.protocol == socket.SOCK_STREAM
        assert same_address(h.destination, (host, front))
        # Every TLV HAProxy sent, and nothing else.
        assert sorted(t for t, _ in h.tlvs) == sorted(
            [C.PP2_TYPE_ALPN, C.PP2_TYPE_AUTHORITY, C.PP2_TYPE_CRC32C,
             C.PP2_TYPE_UNIQUE_ID, C.PP2_TYPE_SSL]
        )
        assert h.alpn == b"http/1.1"
        assert h.authority == peers.SERVER_NAME
        assert h.unique_id == f"pp-{client[0]}-{client[1]}-0".encode()
        assert h.crc32c is not None  # present, and parse() verified it
        info = h.ssl
        assert info is not None
        assert info.client == 0x07  # SSL | CERT_CONN | CERT_SESS
        assert info.verify == 0 and info.verified
        assert info.version == version
        assert info.cn == peers.CLIENT_CN
        assert info.cipher == cipher
        assert info.sig_alg == certs.server_sig_alg
        assert info.key_alg == certs.server_key_alg
        assert sorted(t for t, _ in info.tlvs) == [
            C.PP2_SUBTYPE_SSL_VERSION, C.PP2_SUBTYPE_SSL_CN, C.PP2_SUBTYPE_SSL_CIPHER,
            C.PP2_SUBTYPE_SSL_SIG_ALG, C.PP2_SUBTYPE_SSL_KEY_ALG,
        ]
        # The JSON the application wrote agrees with the views.
        assert report["header"]["ssl"]["cn"] == peers.CLIENT_CN
        assert report["header"]["unique_id"] == h.unique_id.hex()
        assert seen.received == payload
        assert app.problems() == []


def test_send_proxy_v2_tls_without_client_certificate(haproxy_version, certs, workdir):
    probe, front = peers.free_port(), peers.free_port()
    with ProxiedApp(LOOPBACK4) as app:
        body = tls_frontend("tls", LOOPBACK4, front, certs, "app", verify="optional") + f"""
backend app
    server app {LOOPBACK4}:{app.port} send-proxy-v2 proxy-v2-options {V2_OPTIONS}
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with tls_client(certs, LOOPBACK4, front, client_cert=False) as sock:
                client = sock.getsockname()
                report, echoed = exchange(sock, b"no certificate")
                version, cipher = sock.version(), sock.cipher()[0]
            seen = app.next_seen()
    assert echoed == b"no certificate"
    assert same_address(report["peername"], client)
    assert same_address(seen.peername, client)
    info = seen.header.ssl
    assert info.client == 0x01  # TLS, but no client certificate
    assert info.cn is None
    assert (info.version, info.cipher) == (version, cipher)
    assert (info.sig_alg, info.key_alg) == (certs.server_sig_alg, certs.server_key_alg)
    assert app.problems() == []


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_send_proxy_v1_tls(haproxy_version, certs, workdir, family):
    host = host_for(family)
    probe, front = peers.free_port(), peers.free_port(host)
    with ProxiedApp(host, v2=False) as app:
        body = tls_frontend("tls", host, front, certs, "app") + f"""
backend app
    server app {url_host(host)}:{app.port} send-proxy
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with tls_client(certs, host, front) as sock:
                client = sock.getsockname()
                payload = os.urandom(20000)
                report, echoed = exchange(sock, payload)
            seen = app.next_seen()
    assert echoed == payload
    assert same_address(report["peername"], client)
    h = seen.header
    assert (h.version, h.command, h.family) == (1, pp.Command.PROXY, FAMILIES[family][1])
    assert same_address(h.source, client)
    assert same_address(h.destination, (host, front))
    assert h.tlvs == ()
    assert same_address(seen.peername, client)
    assert app.problems() == []


def test_send_proxy_v2_plain_tcp_frontend(haproxy_version, workdir):
    """Without TLS HAProxy still sends the SSL TLV, empty and client=0."""
    probe, front = peers.free_port(), peers.free_port()
    with ProxiedApp(LOOPBACK4) as app:
        body = f"""
frontend plain
    bind {LOOPBACK4}:{front}
    unique-id-format {UNIQUE_ID_FORMAT}
    default_backend app
backend app
    server app {LOOPBACK4}:{app.port} send-proxy-v2 proxy-v2-options {V2_OPTIONS}
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with socket.create_connection((LOOPBACK4, front), timeout=10) as sock:
                client = sock.getsockname()
                report, echoed = exchange(sock, b"plain")
            seen = app.next_seen()
    assert echoed == b"plain"
    assert same_address(report["peername"], client)
    h = seen.header
    assert same_address(h.source, client)
    assert sorted(t for t, _ in h.tlvs) == sorted(
        [C.PP2_TYPE_CRC32C, C.PP2_TYPE_UNIQUE_ID, C.PP2_TYPE_SSL]
    )
    assert h.ssl.client == 0 and h.ssl.tlvs == ()
    assert h.authority is None and h.alpn is None
    assert h.unique_id == f"pp-{client[0]}-{client[1]}-0".encode()
    assert app.problems() == []


def test_send_proxy_v2_to_a_unix_socket(haproxy_version, workdir):
    """HAProxy in front of an application on a unix socket, the usual
    same-host layout: the TCP client's address arrives through the header,
    and the health checks' LOCAL headers keep the socket's own (unnamed) peer."""
    probe, front = peers.free_port(), peers.free_port()
    path = str(workdir / "app.sock")
    with ProxiedApp(path, timeout=2.0) as app:
        body = f"""
frontend plain
    bind {LOOPBACK4}:{front}
    default_backend app
backend app
    option log-health-checks
    server app unix@{path} send-proxy-v2 proxy-v2-options crc32c \
        check inter 200 check-send-proxy
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)) as proxy:
            proxy.wait_for_line(lambda l: "Health check for server app/app succeeded" in l)
            with socket.create_connection((LOOPBACK4, front), timeout=10) as sock:
                client = sock.getsockname()
                report, echoed = exchange(sock, b"over a unix socket")
            deadline = time.monotonic() + 10
            while not any(s.header.source for s in app.all_seen) and time.monotonic() < deadline:
                time.sleep(0.02)
            seen = list(app.all_seen)
    assert echoed == b"over a unix socket"
    assert same_address(report["peername"], client)
    proxied = [s for s in seen if s.header.command == pp.Command.PROXY]
    checks = [s for s in seen if s.header.command == pp.Command.LOCAL]
    assert len(proxied) == 1 and checks
    assert same_address(proxied[0].peername, client)
    assert same_address(proxied[0].sockname, (LOOPBACK4, front))
    for s in checks:
        assert s.peername == s.proxy_peername  # the unix socket's own peer
        assert s.sockname == path
    assert app.problems() == []


# -- (b) HAProxy's CRC32C, checked on the captured bytes ------------------------


def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected 0x82F63B78): slow, obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def capture_header(listener: socket.socket, out: list, after: bytes) -> None:
    """Accept one connection; keep its bytes once a whole header and ``after``
    have arrived (or the peer closes)."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(10)
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            try:
                if len(data) >= pp.parse(data).length + len(after):
                    break
            except pp.Incomplete:
                pass
        out.append(data)


def test_haproxy_crc32c_verified_byte_for_byte(haproxy_version, certs, workdir, backend):
    probe, front = peers.free_port(), peers.free_port()
    with socket.socket() as listener:
        listener.bind((LOOPBACK4, 0))
        listener.listen(4)
        listener.settimeout(10)
        captured: list[bytes] = []
        thread = threading.Thread(
            target=capture_header, args=(listener, captured, b"after the header"), daemon=True
        )
        thread.start()
        body = tls_frontend("tls", LOOPBACK4, front, certs, "raw") + f"""
backend raw
    timeout server 2s
    server raw {LOOPBACK4}:{listener.getsockname()[1]} send-proxy-v2 proxy-v2-options {V2_OPTIONS}
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with tls_client(certs, LOOPBACK4, front) as sock:
                sock.sendall(b"after the header")
                thread.join(timeout=15)
    assert captured, "HAProxy did not connect to the capturing backend"
    data = captured[0]
    h = backend.parse(data)
    assert data[h.length:] == b"after the header"
    raw = bytearray(data[: h.length])
    # Locate the CRC32C TLV's value and recompute it over the header with
    # the value zeroed, as the spec says.
    off = 16 + (12 if raw[13] >> 4 == 1 else 36)
    while raw[off] != C.PP2_TYPE_CRC32C:
        off += 3 + int.from_bytes(raw[off + 1 : off + 3], "big")
    value = int.from_bytes(raw[off + 3 : off + 7], "big")
    assert value == h.crc32c
    zeroed = bytes(raw[: off + 3]) + b"\0\0\0\0" + bytes(raw[off + 7 :])
    assert crc32c_reference(zeroed) == value
    # One flipped bit anywhere in the header is caught.
    for position in (14, 20, off + 4, h.length - 1):
        bad = bytearray(raw)
        bad[position] ^= 0x10
        with pytest.raises(pp.ProxyProtocolError):
            backend.parse(bytes(bad))
    bad = bytearray(raw)
    bad[h.length - 1] ^= 0x01  # in the cipher name: only the checksum can tell
    with pytest.raises(pp.ChecksumMismatch):
        backend.parse(bytes(bad))


# -- (c) pp.build -> HAProxy accept-proxy ---------------------------------------

LOG_FORMAT = (
    "PPLOG ci=%ci cp=%cp fi=%fi fp=%fp "
    "auth=%[fc_pp_authority] ppuid=%[fc_pp_unique_id] end"
)

BUILT = {
    "v1-tcp4": dict(version=1, source=("203.0.113.7", 41001), destination=("198.51.100.1", 443)),
    "v1-tcp6": dict(version=1, source=("2001:db8::7", 41002), destination=("2001:db8::1", 8443)),
    "v2-inet": dict(version=2, source=("203.0.113.9", 41003), destination=("198.51.100.2", 80)),
    "v2-inet-tlvs-crc": dict(
        version=2, source=("192.0.2.200", 41004), destination=("198.51.100.3", 8080),
        tlvs=[(C.PP2_TYPE_AUTHORITY, b"built.pp.test"), (C.PP2_TYPE_UNIQUE_ID, b"uid-41004"),
              (C.PP2_TYPE_NOOP, b"\0" * 5), (0xE0, b"custom")],
        crc32c=True,
    ),
    "v2-inet6-tlvs-crc": dict(
        version=2, source=("2001:db8:aa::5", 41005), destination=("2001:db8:bb::6", 9443),
        tlvs=[(C.PP2_TYPE_AUTHORITY, b"six.pp.test"), (C.PP2_TYPE_UNIQUE_ID, b"\x01\x02uid")],
        crc32c=True,
    ),
    "v2-inet-crc-only": dict(
        version=2, source=("203.0.113.77", 41006), destination=("198.51.100.4", 25), crc32c=True
    ),
    "v1-unknown": dict(version=1),
    "v2-local": dict(version=2, command=pp.Command.LOCAL),
    "v2-local-tlvs-crc": dict(
        version=2, command=pp.Command.LOCAL,
        tlvs=[(C.PP2_TYPE_AUTHORITY, b"local.pp.test")], crc32c=True,
    ),
}


def accept_proxy_config(front4, front6, app, probe, ipv6):
    binds = f"    bind {LOOPBACK4}:{front4} accept-proxy\n"
    if ipv6:
        binds += f"    bind [{LOOPBACK6}]:{front6} accept-proxy\n"
    body = f"""
frontend accept
{binds}    log-format "{LOG_FORMAT}"
    unique-id-format fwd-%cp
    default_backend app
backend app
    server app {LOOPBACK4}:{app.port} send-proxy-v2 proxy-v2-options authority,crc32c,unique-id
"""
    return config(body, probe)


def log_value(line: str, name: str) -> str:
    return re.search(rf"\b{name}=(\S*)", line).group(1)


@pytest.fixture
def accept_proxy(haproxy_version, workdir):
    ipv6 = peers.ipv6_loopback()
    probe, front4 = peers.free_port(), peers.free_port()
    front6 = peers.free_port(LOOPBACK6) if ipv6 else None
    with ProxiedApp(LOOPBACK4) as app:
        with peers.haproxy(accept_proxy_config(front4, front6, app, probe, ipv6), workdir,
                           (LOOPBACK4, probe)) as proxy:
            yield proxy, app, {"ipv4": (LOOPBACK4, front4), "ipv6": (LOOPBACK6, front6)}


@pytest.mark.parametrize("listener", ["ipv4", "ipv6"])
@pytest.mark.parametrize("case", sorted(BUILT))
def test_accept_proxy_logs_what_we_encoded(accept_proxy, case, listener):
    proxy, app, fronts = accept_proxy
    if listener == "ipv6":
        peers.need(fronts["ipv6"][1] is not None, "no IPv6 loopback (::1) on this machine")
    front = fronts[listener]
    spec = BUILT[case]
    header = pp.build(**spec)
    payload = f"payload of {case} over {listener}\n".encode() * 20
    with socket.create_connection(front, timeout=10) as sock:
        real_client = sock.getsockname()
        # The header and the first bytes in one segment: HAProxy must split them.
        sock.sendall(header + payload)
        report = json.loads(peers.recv_line(sock))
        echoed = peers.recv_exactly(sock, len(payload))
    assert echoed == payload
    seen = app.next_seen()

    if "source" in spec:
        src, dst = spec["source"], spec["destination"]
    else:  # UNKNOWN / LOCAL: HAProxy keeps the connection's own addresses
        src, dst = real_client, front
    line = proxy.wait_for_line(
        lambda l: l.startswith("PPLOG") and f" cp={src[1]} " in l and f" fp={dst[1]} " in l
    )
    assert log_value(line, "ci") == src[0]
    assert log_value(line, "cp") == str(src[1])
    assert log_value(line, "fi") == dst[0]
    assert log_value(line, "fp") == str(dst[1])
    tlvs = dict(spec.get("tlvs", ()))
    if spec.get("command") == pp.Command.LOCAL:
        tlvs = {}  # HAProxy reads no TLV of a LOCAL header
    if C.PP2_TYPE_AUTHORITY in tlvs:
        assert log_value(line, "auth") == tlvs[C.PP2_TYPE_AUTHORITY].decode()
    else:
        assert log_value(line, "auth") == "-"
    if C.PP2_TYPE_UNIQUE_ID in tlvs:
        # HAProxy logs the unique ID's bytes as text.
        uid = tlvs[C.PP2_TYPE_UNIQUE_ID]
        if uid.isascii() and uid.decode().isprintable():
            assert log_value(line, "ppuid") == uid.decode()

    # And HAProxy passed on to our application what it understood.
    assert same_address(seen.peername, src)
    assert same_address(report["sockname"], dst)
    if C.PP2_TYPE_AUTHORITY in tlvs:
        assert seen.header.authority == tlvs[C.PP2_TYPE_AUTHORITY].decode()
    assert seen.header.unique_id == f"fwd-{src[1]}".encode()
    assert seen.received == payload
    assert app.problems() == []


def test_accept_proxy_rejects_a_wrong_crc32c(accept_proxy):
    proxy, app, fronts = accept_proxy
    good = pp.build(("203.0.113.8", 42001), ("198.51.100.9", 443), crc32c=True,
                    tlvs=[(C.PP2_TYPE_AUTHORITY, b"crc.pp.test")])
    h = pp.parse(good)
    bad = bytearray(good)
    bad[-1] ^= 0x01  # last byte of the authority: HAProxy can only tell by the CRC
    assert len(good) == h.length
    with pytest.raises(pp.ChecksumMismatch):
        pp.parse(bytes(bad))
    with socket.create_connection(fronts["ipv4"], timeout=10) as sock:
        sock.sendall(bytes(bad) + b"never forwarded\n")
        assert peers.recv_until_closed(sock) == b""
    # A good one still passes, and the bad one never reached the application.
    with socket.create_connection(fronts["ipv4"], timeout=10) as sock:
        sock.sendall(good + b"forwarded\n")
        report = json.loads(peers.recv_line(sock))
        assert peers.recv_exactly(sock, 10) == b"forwarded\n"
    assert same_address(report["peername"], ("203.0.113.8", 42001))
    seen = app.next_seen()
    assert seen.header.authority == "crc.pp.test"
    assert app.seen.empty()
    # HAProxy logs a TCP session when it ends, a moment after our close.
    proxy.wait_for_line(lambda l: "cp=42001" in l and "PPLOG" in l)


# -- (d) health checks with check-send-proxy -------------------------------------

CHECKS = {
    # name: (server options, backend check options, what HAProxy reports)
    "v2-local-l4": ("send-proxy-v2 proxy-v2-options crc32c,ssl", "", "Layer4 check passed"),
    "v2-local-tcp-check": (
        "send-proxy-v2 proxy-v2-options crc32c,ssl,unique-id",
        "    option tcp-check\n"
        "    tcp-check send-binary 70696e670a\n"  # "ping\n"
        "    tcp-check expect string ping\n",
        "Layer7 check passed",
    ),
    "v1-l4": ("send-proxy", "", "Layer4 check passed"),
    "v1-tcp-check": (
        "send-proxy",
        "    option tcp-check\n"
        "    tcp-check send-binary 70696e670a\n"
        "    tcp-check expect string ping\n",
        "Layer7 check passed",
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_health_checks_with_check_send_proxy(haproxy_version, workdir, kind, family):
    host = host_for(family)
    server_options, check_options, passed = CHECKS[kind]
    probe = peers.free_port()
    with ProxiedApp(host, timeout=2.0) as app:
        body = f"""
backend checked
    option log-health-checks
{check_options}    server app {url_host(host)}:{app.port} check inter 100 rise 1 fall 1 \
        check-send-proxy {server_options}
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)) as proxy:
            line = proxy.wait_for_line(lambda l: "Health check for server checked/app" in l)
            assert "succeeded" in line and passed in line, line
            # A few more rounds of checks, each one handed to the application.
            deadline = time.monotonic() + 10
            while len(app.all_seen) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            failures = proxy.matching(lambda l: "Health check" in l and "succeeded" not in l)
        seen = list(app.all_seen)
    assert len(seen) >= 5, app.problems()
    assert failures == []
    for s in seen:
        h = s.header
        if kind.startswith("v2"):
            assert h.command == pp.Command.LOCAL
            assert h.source is None and h.destination is None
            assert h.crc32c is not None
            assert h.ssl is not None and h.ssl.client == 0
            # LOCAL: the application keeps the connection's real addresses.
            assert s.peername == s.proxy_peername
            assert s.peername[0] == host
            assert same_address(s.sockname, (host, app.port))
        else:
            # HAProxy's v1 checks carry the check connection's own addresses.
            assert h.version == 1 and h.command == pp.Command.PROXY
            assert same_address(s.peername, s.proxy_peername)
            assert same_address(h.destination, (host, app.port))
        if "tcp-check" in kind:
            assert s.received == b"ping\n"
    assert app.problems() == []
    # Not even a debug record: every check connection carried its header.
    assert [r.getMessage() for r in app.records(logging.DEBUG)] == []


# -- TLS passthrough: HAProxy in TCP mode, the application terminates TLS -------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tls_passthrough_to_aio_wrap_ssl(haproxy_version, certs, workdir, family):
    """HAProxy forwards the client's TLS bytes untouched after a v2 header;
    aio.wrap(ssl=...) reads the header in plaintext, then does the handshake."""
    host = host_for(family)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    server_ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    probe, front = peers.free_port(), peers.free_port(host)
    with ProxiedApp(host, ssl=server_ctx) as app:
        body = f"""
frontend passthrough
    bind {url_host(host)}:{front}
    default_backend app
backend app
    server app {url_host(host)}:{app.port} send-proxy-v2 proxy-v2-options crc32c
"""
        with peers.haproxy(config(body, probe), workdir, (LOOPBACK4, probe)):
            with tls_client(certs, host, front) as sock:
                client = sock.getsockname()
                payload = os.urandom(100_000)
                report, echoed = exchange(sock, payload)
            seen = app.next_seen()
    assert echoed == payload
    assert same_address(report["peername"], client)
    assert same_address(seen.peername, client)
    h = seen.header
    assert h.version == 2 and h.crc32c is not None
    assert same_address(h.destination, (host, front))
    assert app.problems() == []
