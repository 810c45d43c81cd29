"""Every policy, counter and log level over real loopback connections, on each
path: aio.wrap on asyncio's and on uvloop's event loop, sockets.accept,
sockets.handshake after a plain accept, and the socketserver mixin."""

import asyncio
import logging
import socket
import socketserver
import threading
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import aio, sockets

from tests.integration_helpers import CLIENT, LOOPBACK, SERVER, require

V2 = pp.build(CLIENT, SERVER)
PAYLOAD = b"hello"
PATHS = ["asyncio", "uvloop", "sockets", "handshake", "socketserver"]
# A v2 header whose length field declares 5000 bytes: the fixed part only.
TOO_LARGE = V2[:14] + (5000).to_bytes(2, "big")


class Who(asyncio.Protocol):
    """Replies "<client host>|<first data>" and closes."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        host = self.transport.get_extra_info("peername")[0]
        self.transport.write(host.encode() + b"|" + data)
        self.transport.close()


def _client(address, data, close, result):
    with socket.create_connection(address, timeout=5) as sock:
        start = time.monotonic()
        reply = b""
        try:
            # A server that refuses at once may have closed already.
            if data:
                sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                reply += chunk
        except OSError:  # reset by a server that closed without reading
            pass
        result["reply"] = reply
        result["elapsed"] = time.monotonic() - start


def _new_loop(path):
    if path == "uvloop":
        try:
            import uvloop
        except ImportError:
            require(False, "the Python package 'uvloop'")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def exchange(path, data, close=True, **options):
    """Connect, send data (half-closing if close), return (reply, seconds until the
    server closed) from a server on ``path`` with the policy ``options``."""
    result = {}
    if path in ("asyncio", "uvloop"):
        loop = _new_loop(path)

        async def main():
            server = await loop.create_server(aio.wrap(Who, **options), LOOPBACK, 0)
            client = threading.Thread(
                target=_client, args=(server.sockets[0].getsockname(), data, close, result))
            client.start()
            while client.is_alive():
                await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()

        try:
            loop.run_until_complete(asyncio.wait_for(main(), 15))
        finally:
            loop.close()
    elif path in ("sockets", "handshake"):
        with socket.socket() as lsock:
            lsock.bind((LOOPBACK, 0))
            lsock.listen(1)
            client = threading.Thread(
                target=_client, args=(lsock.getsockname(), data, close, result))
            client.start()
            try:
                if path == "sockets":
                    conn, address, _ = sockets.accept(lsock, **options)
                else:
                    conn, peer = lsock.accept()
                    try:
                        address, _ = sockets.handshake(conn, peer, **options)
                    except BaseException:
                        conn.close()
                        raise
            except (pp.ProxyProtocolError, pp.HeaderTimeout, OSError):
                pass
            else:
                with conn:
                    conn.settimeout(5)
                    conn.sendall(address[0].encode() + b"|" + conn.recv(4096))
            client.join(10)
    else:

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(5)
                self.request.sendall(
                    self.client_address[0].encode() + b"|" + self.request.recv(4096))

        class Server(sockets.ProxyProtocolMixin, socketserver.ThreadingTCPServer):
            daemon_threads = True

        server = Server((LOOPBACK, 0), Handler, **options)
        serving = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        serving.start()
        try:
            _client(server.server_address, data, close, result)
        finally:
            server.shutdown()
            server.server_close()
            serving.join(5)
    return result["reply"], result["elapsed"]


def records(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pyproxyproto"]


# The asyncio paths run with each of aio's header protocols (compiled, pure).
_PATH_PARAMS = [
    (path, impl)
    for path in PATHS
    for impl in (sorted(aio.PROTOCOL_MODULES) if path in ("asyncio", "uvloop") else [None])
]


@pytest.fixture(params=_PATH_PARAMS, ids=lambda p: p[0] if p[1] is None else f"{p[0]}-{p[1]}")
def path(request, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    name, impl = request.param
    if impl is not None:
        monkeypatch.setattr(aio, "protocols", aio.PROTOCOL_MODULES[impl])
    return name


def only(stats, **expected):
    """The counters are exactly ``expected``, all others zero (the headers
    here are all v2 PROXY ones: ``accepted`` implies ``accepted_v2``)."""
    counts = {name: 0 for name in stats.as_dict()}
    counts.update(expected)
    counts["accepted_v2"] = counts["accepted"]
    assert stats.as_dict() == counts


def test_require_accepts_a_trusted_header(path, caplog):
    stats = pp.Stats()
    reply, _ = exchange(path, V2 + PAYLOAD, trusted=["127.0.0.0/8"], stats=stats)
    assert reply == CLIENT[0].encode() + b"|" + PAYLOAD
    only(stats, accepted=1)
    assert records(caplog) == []


def test_reject_closes_before_reading(path, caplog):
    stats = pp.Stats()
    reply, _ = exchange(path, V2 + PAYLOAD, trusted=["10.0.0.0/8"], stats=stats)
    assert reply == b""
    only(stats, rejected_untrusted=1)
    [(level, message)] = records(caplog)
    assert level == logging.WARNING and "not in the trusted networks" in message


def test_ignore_consumes_the_header_but_keeps_the_peer(path):
    stats = pp.Stats()
    reply, _ = exchange(path, V2 + PAYLOAD, trusted=["10.0.0.0/8"], on_untrusted="ignore",
                        stats=stats)
    assert reply == b"127.0.0.1|" + PAYLOAD
    only(stats, accepted=1)


def test_skip_serves_the_peer_as_itself_without_a_header(path, caplog):
    stats = pp.Stats()
    reply, _ = exchange(path, PAYLOAD, trusted=["10.0.0.0/8"], on_untrusted="skip", stats=stats)
    assert reply == b"127.0.0.1|" + PAYLOAD
    only(stats, skipped=1)
    assert records(caplog) == []


def test_skip_is_decided_by_address_not_by_the_bytes(path):
    # A trusted peer must still send a header: a bare payload is refused.
    stats = pp.Stats()
    reply, _ = exchange(path, b"GET / HTTP/1.0\r\n\r\n", on_untrusted="skip", stats=stats)
    assert reply == b""
    only(stats, rejected_invalid=1)


@pytest.mark.parametrize(
    "decision, data, reply, counter",
    [("require", V2 + PAYLOAD, CLIENT[0].encode() + b"|" + PAYLOAD, "accepted"),
     ("ignore", V2 + PAYLOAD, b"127.0.0.1|" + PAYLOAD, "accepted"),
     ("skip", PAYLOAD, b"127.0.0.1|" + PAYLOAD, "skipped"),
     ("reject", V2 + PAYLOAD, b"", "rejected_untrusted")],
)
def test_decide_callable(path, decision, data, reply, counter):
    stats = pp.Stats()
    peers = []

    def decide(peer):
        peers.append(peer)
        return decision

    assert exchange(path, data, decide=decide, stats=stats)[0] == reply
    only(stats, **{counter: 1})
    [peer] = peers
    assert peer[0] == "127.0.0.1"


def test_failing_decide_callable_rejects(path, caplog):
    stats = pp.Stats()

    def decide(peer):
        raise RuntimeError("boom")

    assert exchange(path, V2 + PAYLOAD, decide=decide, stats=stats)[0] == b""
    only(stats, rejected_untrusted=1)
    assert any(level == logging.ERROR for level, _ in records(caplog))


def test_validate(path, caplog):
    seen = []

    def validate(header):
        seen.append(header.source)
        if header.source[0] != "192.0.2.1":
            raise ValueError("not an allowed endpoint")

    stats = pp.Stats()
    assert exchange(path, V2 + PAYLOAD, validate=validate, stats=stats)[0] == b""
    only(stats, rejected_by_validator=1)
    assert seen == [CLIENT]
    [(level, message)] = records(caplog)
    assert level == logging.WARNING and "not an allowed endpoint" in message

    allowed = pp.build(("192.0.2.1", 1000), SERVER)
    assert exchange(path, allowed + PAYLOAD, validate=validate, stats=stats)[0] == (
        b"192.0.2.1|" + PAYLOAD)
    only(stats, rejected_by_validator=1, accepted=1)


def test_too_large_a_header_is_refused_at_byte_16(path, caplog):
    stats = pp.Stats()
    # The connection stays open: the refusal cannot wait for more bytes,
    # nor for the 5 s timeout.
    reply, elapsed = exchange(path, TOO_LARGE, close=False, stats=stats)
    assert reply == b"" and elapsed < 2
    only(stats, rejected_invalid=1)
    [(level, message)] = records(caplog)
    assert level == logging.WARNING and "max_header_size (4096)" in message


def test_a_larger_max_header_size_admits_it(path):
    header = pp.build(CLIENT, SERVER, tlvs=[(0xE5, b"x" * 5000)])
    stats = pp.Stats()
    reply, _ = exchange(path, header + PAYLOAD, max_header_size=8192, stats=stats)
    assert reply == CLIENT[0].encode() + b"|" + PAYLOAD
    only(stats, accepted=1)


def test_invalid_header(path, caplog):
    stats = pp.Stats()
    assert exchange(path, b"PROXY TCP9 x\r\n" + PAYLOAD, stats=stats)[0] == b""
    only(stats, rejected_invalid=1)
    [(level, _)] = records(caplog)
    assert level == logging.WARNING


@pytest.mark.parametrize("data, level", [(b"", logging.DEBUG), (V2[:3], logging.WARNING)])
def test_timeout(path, caplog, data, level):
    stats = pp.Stats()
    reply, elapsed = exchange(path, data, close=False, timeout=0.3, stats=stats)
    assert reply == b"" and 0.25 <= elapsed < 2
    only(stats, timed_out=1)
    [(got, message)] = records(caplog)
    assert got == level and "within 0.3 s" in message


@pytest.mark.parametrize("data, level", [(b"", logging.DEBUG), (V2[:5], logging.WARNING)])
def test_closed_early(path, caplog, data, level):
    # Connect and close (a TCP health check) is DEBUG; a cut header WARNING.
    stats = pp.Stats()
    assert exchange(path, data, stats=stats)[0] == b""
    only(stats, closed_early=1)
    [(got, message)] = records(caplog)
    assert got == level and f"after {len(data)} byte(s)" in message


def test_refusals_do_not_flood_the_log(path, caplog):
    stats = pp.Stats()
    for _ in range(12):
        exchange(path, b"PROXY TCP9 x\r\n", stats=stats)
    only(stats, rejected_invalid=12)
    warnings = [m for level, m in records(caplog) if level == logging.WARNING]
    assert len(warnings) == 10  # the limiter's burst; the rest are counted, not logged

