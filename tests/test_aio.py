"""asyncio: wrap, start_server (with PROXY-then-TLS), read_header, wrap_datagram,
over real loopback connections."""

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import sys
import time

import pytest

import pyproxyproto as pp
from pyproxyproto import _asyncio_internals, aio

from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    LOOPBACK,
    SERVER,
    SERVER6,
    connect,
    rejections,
    run,
    self_signed_cert,
)

V1 = pp.build(CLIENT, SERVER, version=1)
V2 = pp.build(CLIENT, SERVER, tlvs=[(0x02, b"example.com")])
HEADERS = {"v1": V1, "v2": V2}
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"

# Every test here runs with each header protocol: the compiled one and its pure twin.
pytestmark = pytest.mark.usefixtures("header_protocol")


class Recorder(asyncio.Protocol):
    """Keeps what the application would see: extra info, data, end of stream."""

    instances: list = []

    def __init__(self):
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()
        Recorder.instances.append(self)

    def connection_made(self, transport):
        self.transport = transport
        self.extra = {
            name: transport.get_extra_info(name)
            for name in ("peername", "sockname", "proxy_header", "proxy_peername", "socket")
        }

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.transport.write(bytes(self.data))
        self.transport.close()
        if not self.done.done():
            self.done.set_result(bytes(self.data))


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """The same, reading through get_buffer/buffer_updated with a small buffer."""

    size = 7

    def get_buffer(self, sizehint):
        self.buffer = bytearray(self.size)
        return self.buffer

    def buffer_updated(self, nbytes):
        assert nbytes <= self.size
        self.data += self.buffer[:nbytes]


@pytest.fixture(autouse=True)
def _reset_recorders():
    Recorder.instances = []


@contextlib.asynccontextmanager
async def serving(factory, **options):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(aio.wrap(factory, **options), LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()
    finally:
        server.close()


async def send(address, *parts, pause=0.0):
    """Connect, write each part (pausing between), end the stream, return the reply."""
    reader, writer = await asyncio.open_connection(*address)
    sockname = writer.get_extra_info("sockname")
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 5)
    except OSError:  # the server closed the connection
        reply = b""
    writer.close()
    return reply, sockname


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("protocol", [Recorder, BufferedRecorder])
def test_one_segment(name, protocol, caplog):
    async def main():
        async with serving(protocol, trusted=["127.0.0.0/8"]) as address:
            reply, client_address = await send(address, HEADERS[name] + PAYLOAD)
        [inner] = Recorder.instances
        return reply, client_address, inner.extra

    reply, client_address, extra = run(main())
    assert reply == PAYLOAD
    assert extra["peername"] == CLIENT and extra["sockname"] == SERVER
    assert extra["proxy_peername"] == client_address
    assert extra["proxy_header"].source == CLIENT
    assert extra["socket"].getpeername() == CLIENT and extra["socket"].getsockname() == SERVER
    assert extra["socket"].family == socket.AF_INET  # the rest is the real socket
    assert repr(extra["socket"]).endswith(f"peername={CLIENT!r}>")
    assert not rejections(caplog)


def test_ipv6_source_through_ipv4_connection():
    async def main():
        async with serving(Recorder) as address:
            await send(address, pp.build(CLIENT6, SERVER6) + PAYLOAD)
        return Recorder.instances[0].extra

    extra = run(main())
    assert extra["peername"] == CLIENT6 and extra["sockname"] == SERVER6


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_every_split_point(name):
    data = HEADERS[name] + PAYLOAD

    async def main():
        async with serving(Recorder) as address:
            for split in range(1, len(data)):
                reply, _ = await send(address, data[:split], data[split:], pause=0.002)
                assert reply == PAYLOAD, split
                assert Recorder.instances[-1].extra["peername"] == CLIENT, split

    run(main())


@pytest.mark.parametrize("protocol", [Recorder, BufferedRecorder])
def test_byte_by_byte_within_the_timeout(protocol):
    data = V2 + PAYLOAD

    async def main():
        async with serving(protocol, timeout=2) as address:
            parts = [data[i : i + 1] for i in range(len(V2) + 3)] + [data[len(V2) + 3 :]]
            return await send(address, *parts, pause=0.003)

    reply, _ = run(main())
    assert reply == PAYLOAD


@pytest.mark.parametrize("protocol", [Recorder, BufferedRecorder])
def test_one_mebibyte_payload_arrives_intact(protocol, monkeypatch):
    monkeypatch.setattr(BufferedRecorder, "size", 65536)
    payload = os.urandom(1 << 20)

    async def main():
        async with serving(protocol) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(V1 + payload)
            writer.write_eof()
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return reply

    reply = run(main())
    assert hashlib.sha256(reply).digest() == hashlib.sha256(payload).digest()


def test_large_v2_header_in_pieces():
    header = pp.build(CLIENT, SERVER, tlvs=[(0xE5, b"x" * 60000)])
    data = header + PAYLOAD
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]

    async def main():
        async with serving(Recorder, max_header_size=65551) as address:
            reply, _ = await send(address, *pieces, pause=0.001)
        return reply, Recorder.instances[0].extra["proxy_header"]

    reply, parsed = run(main())
    assert reply == PAYLOAD and parsed.tlvs == ((0xE5, b"x" * 60000),)


def test_bytes_after_the_header_wait_while_the_protocol_is_paused():
    events = []

    class Pausing(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()
            assert not transport.is_reading()
            events.append("paused")
            asyncio.get_running_loop().call_later(0.1, self.resume)

        def resume(self):
            events.append("resumed")
            self.transport.resume_reading()

        def data_received(self, data):
            events.append(bytes(data))
            super().data_received(data)

    async def main():
        async with serving(Pausing) as address:
            return await send(address, V2 + b"first;", b"second", pause=0.03)

    reply, _ = run(main())
    assert reply == b"first;second"
    assert events[:3] == ["paused", "resumed", b"first;"]


def test_protocol_factory_arguments_are_passed_on():
    class Named(Recorder):
        def __init__(self, name, *, suffix):
            super().__init__()
            self.name = name + suffix

    async def main():
        loop = asyncio.get_running_loop()
        factory = aio.wrap(Named)
        server = await loop.create_server(lambda: factory("a", suffix="b"), LOOPBACK, 0)
        await send(server.sockets[0].getsockname(), V2)
        server.close()
        return Recorder.instances[0].name

    assert run(main()) == "ab"


# -- connections given up on -------------------------------------------------


def given_up(data, protocol=Recorder, pause=0.0, **options):
    """Send data; return (reply, seconds until closed, inner protocols made)."""

    async def main():
        async with serving(protocol, **options) as address:
            start = time.monotonic()
            reply, _ = await send(address, *data, pause=pause)
            return reply, time.monotonic() - start, list(Recorder.instances)

    return run(main())


def test_untrusted_peer_is_rejected_before_reading(caplog):
    reply, _, made = given_up([V2 + PAYLOAD], trusted=["10.0.0.0/8"])
    assert reply == b"" and made == []
    [message] = rejections(caplog)
    assert message.startswith("closed connection from 127.0.0.1:")
    assert "peer is not in the trusted networks (10.0.0.0/8, from trusted=)" in message


def test_untrusted_peer_ignored_keeps_the_socket_address(caplog):
    async def main():
        async with serving(Recorder, trusted=["10.0.0.0/8"], on_untrusted="ignore") as address:
            reply, sockname = await send(address, V2 + PAYLOAD)
        return reply, sockname, Recorder.instances[0].extra

    reply, sockname, extra = run(main())
    assert reply == PAYLOAD
    assert extra["peername"] == sockname == extra["proxy_peername"]
    assert extra["proxy_header"] is None
    assert not rejections(caplog)


def test_untrusted_ignored_still_needs_a_header(caplog):
    reply, _, made = given_up([PAYLOAD], trusted=["10.0.0.0/8"], on_untrusted="ignore")
    assert reply == b"" and made == []
    assert len(rejections(caplog)) == 1


@pytest.mark.parametrize(
    "data, options",
    [
        (PAYLOAD, {}),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n" + PAYLOAD, {}),
        (V2 + PAYLOAD, {"v2": False}),
        (V1 + PAYLOAD, {"v1": False}),
    ],
)
def test_invalid_header_is_closed_and_logged_once(data, options, caplog):
    reply, _, made = given_up([data], **options)
    assert reply == b"" and made == []
    [message] = rejections(caplog)
    if data is PAYLOAD:  # no header at all: told apart from a malformed one
        assert "127.0.0.1:" in message and "the peer sent no PROXY header" in message
        assert "an HTTP request (b'GET / HTTP/1.1')" in message
    else:
        assert "127.0.0.1:" in message and "invalid PROXY header" in message


def test_slowloris_is_closed_at_the_deadline_not_before(caplog):
    trickle = [V2[i : i + 1] for i in range(len(V2))]
    reply, elapsed, made = given_up(trickle, pause=0.05, timeout=0.5)
    # The client's writes past the deadline go to a closed socket; what
    # matters is that nothing came back and the inner protocol never ran.
    assert reply == b"" and made == []
    assert 0.5 - 0.02 <= elapsed < 0.5 + 0.3
    [message] = rejections(caplog)
    assert "no complete PROXY header within 0.5 s" in message


def test_timeout_closes_at_the_deadline():
    async def main():
        async with serving(Recorder, timeout=0.5) as address:
            reader, writer = await asyncio.open_connection(*address)
            start = time.monotonic()
            writer.write(V2[:3])
            reply = await asyncio.wait_for(reader.read(), 5)
            elapsed = time.monotonic() - start
            writer.close()
            return reply, elapsed

    reply, elapsed = run(main())
    assert reply == b""
    assert 0.5 - 0.02 <= elapsed < 0.5 + 0.3


def test_closed_mid_header_is_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    reply, _, made = given_up([V2[:5]])
    assert reply == b"" and made == []
    [record] = [r for r in caplog.records if r.name == "pyproxyproto"]
    assert record.levelno == logging.WARNING
    assert "connection closed after 5 byte(s)" in record.getMessage()


def test_connect_and_close_is_logged_quietly(caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    given_up([])
    [record] = [r for r in caplog.records if r.name == "pyproxyproto"]
    assert record.levelno == logging.DEBUG


@pytest.mark.parametrize(
    "header", [pp.build(command=pp.Command.LOCAL), b"PROXY UNKNOWN\r\n",
               pp.build(CLIENT, SERVER, command=pp.Command.LOCAL)],
)
def test_local_and_unknown_keep_the_real_addresses(header):
    async def main():
        async with serving(Recorder) as address:
            reply, sockname = await send(address, header + PAYLOAD)
        return reply, sockname, address, Recorder.instances[0].extra

    reply, sockname, address, extra = run(main())
    assert reply == PAYLOAD
    assert extra["peername"] == sockname and extra["sockname"] == address
    assert extra["proxy_header"].length == len(header)


def test_wrap_option_errors():
    with pytest.raises(ValueError, match="on_untrusted"):
        aio.wrap(Recorder, on_untrusted="nope")
    with pytest.raises(ValueError, match="only meaningful with ssl"):
        aio.wrap(Recorder, ssl_handshake_timeout=5)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if sys.version_info < (3, 11):
        with pytest.raises(ValueError, match="needs Python 3.11"):
            aio.wrap(Recorder, ssl=context, ssl_shutdown_timeout=5)
    else:
        assert callable(aio.wrap(Recorder, ssl=context, ssl_shutdown_timeout=5))


# -- read_header -------------------------------------------------------------


def read_header_with(parts, pause=0.0, **options):
    """Serve with plain asyncio.start_server and read the header with read_header()."""

    async def main():
        result = {}

        async def handle(reader, writer):
            try:
                result["header"] = await aio.read_header(reader, **options)
                result["rest"] = await reader.read()
            except Exception as exc:
                result["error"] = exc
            writer.close()

        server = await asyncio.start_server(handle, LOOPBACK, 0)
        start = time.monotonic()
        await send(server.sockets[0].getsockname(), *parts, pause=pause)
        result["elapsed"] = time.monotonic() - start
        server.close()
        return result

    return run(main())


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_read_header_leaves_the_payload_in_the_reader(name):
    data = HEADERS[name] + PAYLOAD
    for split in (1, 5, 16, len(HEADERS[name]) - 1, len(HEADERS[name])):
        result = read_header_with([data[:split], data[split:]], pause=0.005)
        assert result["header"].source == CLIENT, split
        assert result["rest"] == PAYLOAD, split


def test_read_header_timeout():
    trickle = [V1[i : i + 1] for i in range(len(V1))]
    result = read_header_with(trickle, pause=0.05, timeout=0.3)
    assert isinstance(result["error"], pp.HeaderTimeout)
    assert isinstance(result["error"], TimeoutError)


def test_read_header_end_of_stream_and_invalid():
    assert isinstance(read_header_with([V2[:20]])["error"], pp.ConnectionClosed)
    assert isinstance(read_header_with([PAYLOAD])["error"], pp.InvalidHeader)
    assert isinstance(read_header_with([V1], v1=False)["error"], pp.InvalidHeader)


# -- start_server ------------------------------------------------------------


async def report(reader, writer):
    line = await reader.readline()
    header = writer.get_extra_info("proxy_header")
    tls = writer.get_extra_info("ssl_object")
    text = (
        f"{writer.get_extra_info('peername')[0]} {writer.get_extra_info('sockname')[0]} "
        f"{header.authority} {tls.version() if tls else 'plain'} {line.decode().strip()}"
    )
    writer.write(text.encode())
    await writer.drain()
    writer.close()


def test_start_server_plain(caplog):
    async def main():
        server = await aio.start_server(report, LOOPBACK, 0, trusted=["127.0.0.1"])
        async with server:
            reply, _ = await send(server.sockets[0].getsockname(), V2, b"hello\n", pause=0.01)
            rejected, _ = await send(server.sockets[0].getsockname(), b"hello\n")
        return reply, rejected

    reply, rejected = run(main())
    assert reply == b"203.0.113.7 198.51.100.1 example.com plain hello"
    assert rejected == b"" and len(rejections(caplog)) == 1


def tls_exchange(address, header, line, cafile):
    """A blocking TLS client that puts the PROXY header and its ClientHello
    in one segment, as a load balancer doing TLS passthrough may."""
    context = ssl.create_default_context(cafile=cafile)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with connect(address) as sock:
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(header + outgoing.read())
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the TLS handshake")
            incoming.write(data)
        tls.write(line)
        sock.sendall(outgoing.read())
        reply = b""
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:
                    return reply
                reply += chunk
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return reply
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return reply


def test_proxy_then_tls(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def main():
        server = await aio.start_server(
            report, LOOPBACK, 0, ssl=server_context, ssl_handshake_timeout=5, timeout=2
        )
        async with server:
            address = server.sockets[0].getsockname()
            in_one_segment = await asyncio.to_thread(tls_exchange, address, V2, b"hi\n", cert)

            def separate_writes():
                # The header alone first, then an ordinary TLS client.
                client_context = ssl.create_default_context(cafile=cert)
                with connect(address) as raw:
                    raw.sendall(V1)
                    time.sleep(0.02)
                    with client_context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"there\n")
                        return tls.recv(4096)

            separately = await asyncio.to_thread(separate_writes)
        return in_one_segment, separately

    in_one_segment, separately = run(main())
    assert in_one_segment.startswith(b"203.0.113.7 198.51.100.1 example.com TLSv1.")
    assert in_one_segment.endswith(b" hi")
    assert separately.startswith(b"203.0.113.7 198.51.100.1 None TLSv1.")


# -- datagrams ---------------------------------------------------------------


class DatagramRecorder(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.Queue()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.put_nowait((data, addr))
        self.transport.sendto(b"re:" + data, addr)


def datagram_exchange(datagrams, **options):
    """Send each datagram from one UDP socket; return what the inner protocol
    got, the replies that came back to that socket, and its address."""

    async def main():
        loop = asyncio.get_running_loop()
        inner = DatagramRecorder()
        transport, _ = await loop.create_datagram_endpoint(
            aio.wrap_datagram(lambda: inner, **options), local_addr=(LOOPBACK, 0)
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as proxy:
            proxy.bind((LOOPBACK, 0))
            proxy.settimeout(0.15)
            for datagram in datagrams:
                proxy.sendto(datagram, transport.get_extra_info("sockname"))
            received, replies = [], []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    received.append(await asyncio.wait_for(inner.received.get(), 0.15))
            with contextlib.suppress(OSError):
                while True:
                    replies.append(await asyncio.to_thread(proxy.recv, 4096))
            transport.close()
            return received, replies, proxy.getsockname()

    return run(main())


DGRAM = pp.build(CLIENT, SERVER, protocol=socket.SOCK_DGRAM)


def test_datagram_source_replaces_addr_and_replies_go_back_through_the_proxy(caplog):
    received, replies, _ = datagram_exchange(
        [DGRAM + b"one", pp.build(CLIENT6, SERVER6, protocol=socket.SOCK_DGRAM) + b"two"],
        trusted=["127.0.0.0/8"],
    )
    assert received == [(b"one", CLIENT), (b"two", CLIENT6)]
    assert replies == [b"re:one", b"re:two"]
    assert not rejections(caplog)


def test_datagrams_without_a_valid_header_are_dropped(caplog):
    received, replies, _ = datagram_exchange([b"no header", DGRAM[:20], DGRAM + b"ok"])
    assert received == [(b"ok", CLIENT)] and replies == [b"re:ok"]
    messages = rejections(caplog)
    assert len(messages) == 2
    assert all(m.startswith("dropped datagram from 127.0.0.1:") for m in messages)


def test_untrusted_datagrams(caplog):
    received, replies, _ = datagram_exchange([DGRAM + b"x"], trusted=["10.0.0.0/8"])
    assert received == [] and replies == []
    assert "not in the trusted networks" in rejections(caplog)[0]
    received, replies, proxy = datagram_exchange(
        [DGRAM + b"y"], trusted=["10.0.0.0/8"], on_untrusted="ignore"
    )
    assert received == [(b"y", proxy)] and replies == [b"re:y"]


def test_a_v1_header_in_a_datagram_is_refused(caplog):
    # v1 has no datagram form: the spec defines datagrams for v2 only.
    stats = pp.Stats()
    received, replies, _ = datagram_exchange(
        [pp.build(CLIENT, SERVER, version=1) + b"x", DGRAM + b"ok"], stats=stats)
    assert received == [(b"ok", CLIENT)] and replies == [b"re:ok"]
    assert stats.rejected_invalid == 1 and stats.accepted_v2 == 1
    [message] = rejections(caplog)
    assert "a v1 PROXY header in a datagram" in message


def test_local_datagram_keeps_the_real_address():
    received, _, proxy = datagram_exchange([pp.build(command=pp.Command.LOCAL) + b"hc"])
    assert received == [(b"hc", proxy)]


# -- asyncio's own transport, without a wrapper ------------------------------


def test_asyncio_socket_transport_still_keeps_its_extra_info_in_a_dict():
    """aio hands asyncio's selector transport to the inner protocol itself and
    writes the header's addresses into its private ``_extra`` dict.  If a
    Python release changes that layout, this fails (and aio falls back to
    wrapping every transport, which stays correct but costs more)."""
    from asyncio import selector_events, transports

    cls = selector_events._SelectorSocketTransport
    assert _asyncio_internals.DIRECT_TRANSPORT is cls
    assert cls.get_extra_info is transports.BaseTransport.get_extra_info
    assert "_extra" in transports.BaseTransport.__slots__
    a, b = socket.socketpair()
    with a, b:
        loop = asyncio.new_event_loop()
        try:
            transport = loop._make_socket_transport(a, asyncio.Protocol(), extra={"peername": 1})
            assert type(transport._extra) is dict and transport.get_extra_info("peername") == 1
            transport._extra["peername"] = 2
            assert transport.get_extra_info("peername") == 2
            # _Held sees reading resume through the transport's _add_reader,
            # whichever reference to resume_reading is called.
            resume = transport.resume_reading
            transport.pause_reading()
            calls = []
            transport._add_reader = lambda *args: calls.append(args)
            resume()
            assert calls == [(a.fileno(), transport._read_ready)]
            del transport._add_reader
            # aio gives a data_received() protocol the transport by setting
            # _protocol alone: all set_protocol() would change, since the
            # header protocol set at creation needed the same read callback.
            assert transport._read_ready_cb == transport._read_ready__data_received
            assert transport._protocol_connected
            inner = asyncio.Protocol()
            state = dict(vars(transport))
            transport.set_protocol(inner)
            assert {k: v for k, v in vars(transport).items() if v is not state.get(k)} == {
                "_protocol": inner, "_read_ready_cb": transport._read_ready__data_received}
            # is_reading() is read as "neither paused nor closing".
            for paused, closing in ((False, False), (True, False), (False, True)):
                transport._paused, transport._closing = paused, closing
                assert transport.is_reading() is (not paused and not closing)
            transport._paused = transport._closing = False
            transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()


def test_a_rewritten_asyncio_transport_turns_the_direct_path_off(monkeypatch):
    from asyncio import selector_events

    cls = selector_events._SelectorSocketTransport
    assert _asyncio_internals.direct_transport_type() is cls

    def set_protocol(self, protocol):
        self._protocol = self._wrapped_protocol = protocol

    monkeypatch.setattr(cls, "set_protocol", set_protocol)
    assert _asyncio_internals.direct_transport_type() is None
    monkeypatch.undo()
    monkeypatch.setattr(cls, "is_reading", lambda self: not self._reading)
    assert _asyncio_internals.direct_transport_type() is None
    monkeypatch.undo()

    def read_ready(self):
        self._cached_protocol.data_received(self._sock.recv(self.max_size))

    monkeypatch.setattr(cls, "_read_ready__data_received", read_ready)
    assert _asyncio_internals.direct_transport_type() is None


def test_with_the_guard_tripped_every_transport_is_wrapped(header_protocol, monkeypatch):
    """The fallback: with the direct path off, asyncio's transport gets the
    wrapping transport, and the application sees the same."""
    internals = sys.modules[header_protocol.__module__.replace("_aio_protocol", "_asyncio_internals")]
    monkeypatch.setattr(internals, "DIRECT_TRANSPORT", None)

    async def main():
        async with serving(Recorder) as address:
            reply, _ = await send(address, V2 + PAYLOAD)
        return reply, Recorder.instances[0]

    reply, inner = run(main())
    assert reply == PAYLOAD
    assert type(inner.transport).__name__ == "ProxiedTransport"
    assert inner.extra["peername"] == CLIENT and inner.extra["socket"].getpeername() == CLIENT


def test_inner_protocol_gets_asyncio_transport_itself():
    async def main():
        async with serving(Recorder) as address:
            reply, _ = await send(address, V2 + PAYLOAD)
        return reply, Recorder.instances[0].transport

    reply, transport = run(main())
    assert reply == PAYLOAD
    assert type(transport) is _asyncio_internals.DIRECT_TRANSPORT
    assert transport.get_extra_info("peername") == CLIENT


class PausingBuffered(BufferedRecorder):
    """Pauses after each buffer it is given, and resumes a little later."""

    def buffer_updated(self, nbytes):
        super().buffer_updated(nbytes)
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(0.005, self.transport.resume_reading)


def test_buffered_protocol_pausing_in_every_buffer_gets_every_byte_in_order():
    async def main():
        async with serving(PausingBuffered) as address:
            return await send(address, V2 + PAYLOAD, b"-and-more", pause=0.05)

    reply, _ = run(main())
    assert reply == PAYLOAD + b"-and-more"


def test_the_header_protocol_under_test_is_the_one_serving(header_protocol):
    seen = []

    class Probe(Recorder):
        def connection_made(self, transport):
            seen.append(type(transport.get_protocol()))
            super().connection_made(transport)

    async def main():
        async with serving(Probe) as address:
            factory = aio.wrap(Probe)
            assert type(factory()) is header_protocol
            await send(address, V2 + PAYLOAD)

    run(main())
    # The transport's protocol is the inner one by then; the wrapper made it.
    assert seen == [Probe]


def test_the_compiled_header_protocol_is_the_default_when_built():
    # In a fresh interpreter: here the fixture has replaced the default.
    import subprocess

    code = "from pyproxyproto import aio; print(aio.protocols.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    compiled = "pyproxyproto._aio_protocol_c"
    expected = compiled if "cython" in aio.PROTOCOL_MODULES else "pyproxyproto._aio_protocol"
    assert out.stdout.strip() == expected
    def flag(name):
        return os.environ.get(name, "") not in ("", "0")

    # PYPROXYPROTO_NO_EXTENSIONS wins over PYPROXYPROTO_REQUIRE_EXTENSIONS.
    if flag("PYPROXYPROTO_REQUIRE_EXTENSIONS") and not flag("PYPROXYPROTO_NO_EXTENSIONS"):
        assert expected == compiled


class Echo(asyncio.Protocol):
    """Echoes, and asks nothing of the event loop."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        self.transport.close()


def test_asyncio_transport_finds_its_loop_without_get_running_loop(header_protocol, monkeypatch):
    """get_running_loop() makes a getpid() system call each time; on asyncio's
    own transport the deadline sweep takes the transport's loop instead."""
    owner = asyncio
    real = asyncio.get_running_loop
    calls = []

    def counting():
        calls.append(1)
        return real()

    async def main():
        async with serving(Echo) as address:
            monkeypatch.setattr(owner, "get_running_loop", counting)
            replies = [await send(address, V2 + PAYLOAD) for _ in range(3)]
            monkeypatch.undo()
        return replies

    replies = run(main())
    assert [reply for reply, _ in replies] == [PAYLOAD] * 3
    assert calls == []
