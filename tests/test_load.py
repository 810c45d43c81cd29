"""Load and faults through ``aio.wrap``, on loopback, bounded in time.

The server runs in a child process (this file, ``serve()``), so its memory
is its own and both cores work.  Each round opens 1 000 concurrent
connections that each send a PROXY header (v1 and v2, IPv4 and IPv6
sources, TLVs, CRC32C; some headers dribbled in pieces) and a random
payload of 1-64 KiB that the server echoes back followed by its SHA-256
and the client address it saw.  Meanwhile faulty clients disconnect
mid-header, send garbage or stall past the server's 1 s timeout.  Every
good client must get its exact bytes back and its own address; every
faulty one must be closed, and logged, without touching the others; the
server's RSS and descriptor count must stay flat after a warm-up round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import json
import logging
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import weakref
from pathlib import Path

import pytest

import pyproxyproto as pp
from pyproxyproto import _constants as C

from tests import peers

pytestmark = pytest.mark.load

GOOD = 1000  # concurrent good connections per round
FAULTS = {"disconnect": 40, "abort": 20, "garbage": 60, "stall": 40}  # per round
ROUNDS = int(os.environ.get("PYPROXYPROTO_LOAD_ROUNDS", "5"))
WARMUP = 2  # rounds before the memory baseline (buffers, free lists, loop queues grow)
HEADER_TIMEOUT = 1.0  # the server's
MAX_PAYLOAD = 64 * 1024
# RSS growth allowed after the warm-up round.  With streams, each of the
# 1000 connections may hold up to 64 KiB in its StreamReader at once, so the
# allocator's high-water mark moves with scheduling and RSS can still rise
# a little after the warm-up with no leak; tracemalloc (TRACED_SLACK, exact
# for Python objects) and tests/test_leaks.py (C level) are the leak checks.
RSS_SLACK = {"protocol": 8 * 2**20, "streams": 24 * 2**20}
TRACED_SLACK = 2**20  # growth of tracemalloc's count allowed after it
TIME_BUDGET = 60.0
READY = b"\x06"  # what the application writes first, once it has the connection
CONNECTING = 32  # connects (and header writes) in progress at once
SEED = int(os.environ.get("PYPROXYPROTO_LOAD_SEED", "20240605"))


# -- the server (child process) --------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Rejections(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warnings: list[str] = []  # the peer of each WARNING+ record
        self.messages: list[str] = []
        self.debug = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            args = record.args if isinstance(record.args, tuple) else ()
            self.warnings.append(str(args[1]) if len(args) > 1 else "?")
            if len(self.messages) < 2000:
                self.messages.append(record.getMessage())
        else:
            self.debug += 1


class _Echo(asyncio.Protocol):
    """Writes READY; then reads a 4-byte length and echoes that many bytes as
    they come; then writes the SHA-256 of what came and a JSON line with the
    client's address, and closes."""

    stats: dict
    live: weakref.WeakSet

    def connection_made(self, transport):
        self.transport = transport
        transport.write(READY)
        self.head = b""
        self.left = None
        self.hash = hashlib.sha256()
        self.live.add(self)
        s = self.stats
        s["open"] += 1
        s["handled"] += 1
        s["max_open"] = max(s["max_open"], s["open"])

    def data_received(self, data):
        if self.left is None:
            self.head += data
            if len(self.head) < 4:
                return
            (self.left,) = struct.unpack(">I", self.head[:4])
            data = self.head[4:]
            self.head = b""
        if len(data) > self.left:
            self.stats["protocol_errors"] += 1
            self.transport.abort()
            return
        if data:
            self.left -= len(data)
            self.hash.update(data)
            self.transport.write(data)
        if self.left == 0:
            peer = self.transport.get_extra_info("peername")
            line = json.dumps({"peer": [peer[0], peer[1]]}).encode() + b"\n"
            self.transport.write(self.hash.digest() + line)
            self.transport.close()
            self.stats["completed"] += 1

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.stats["open"] -= 1
        if self.left != 0:
            self.stats["unfinished"] += 1


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What _Echo does, written for aio.start_server."""
    stats = _Echo.stats
    _Echo.live.add(writer)
    stats["open"] += 1
    stats["handled"] += 1
    stats["max_open"] = max(stats["max_open"], stats["open"])
    left = -1
    try:
        writer.write(READY)
        (left,) = struct.unpack(">I", await reader.readexactly(4))
        digest = hashlib.sha256()
        while left:
            chunk = await reader.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
            digest.update(chunk)
            writer.write(chunk)
            await writer.drain()
        if left == 0:
            peer = writer.get_extra_info("peername")
            line = json.dumps({"peer": [peer[0], peer[1]]}).encode() + b"\n"
            writer.write(digest.digest() + line)
            await writer.drain()
            stats["completed"] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        stats["open"] -= 1
        if left != 0:
            stats["unfinished"] += 1
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def serve(mode: str = "protocol") -> None:
    """Entry point of the child: serves with aio.wrap ("protocol") or
    aio.start_server ("streams"), prints its ports, then answers "stats" and
    "quit" on stdin with one JSON line each."""
    from pyproxyproto import aio

    raise_fd_limit(8192)
    # Python-level allocations, one frame deep: cheap enough to keep on, and
    # far more sensitive to a per-connection leak than RSS.
    tracing = os.environ.get("PYPROXYPROTO_LOAD_TRACEMALLOC", "1") not in ("", "0")
    if tracing:
        tracemalloc.start(1)
    rejections = _Rejections()
    logging.getLogger("pyproxyproto").addHandler(rejections)
    logging.getLogger("pyproxyproto").setLevel(logging.DEBUG)
    stats = dict(open=0, handled=0, completed=0, max_open=0, protocol_errors=0, unfinished=0)
    counters = pp.Stats()
    _Echo.stats = stats
    _Echo.live = weakref.WeakSet()
    loop_errors: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(
            lambda _l, ctx: loop_errors.append(f"{ctx.get('message')} {ctx.get('exception')!r}")
        )
        hosts = [peers.LOOPBACK4] + ([peers.LOOPBACK6] if peers.ipv6_loopback() else [])
        servers = []
        for host in hosts:
            if mode == "streams":
                server = await aio.start_server(
                    _echo_stream, host, 0, timeout=HEADER_TIMEOUT, backlog=4096, stats=counters
                )
            else:
                factory = aio.wrap(_Echo, timeout=HEADER_TIMEOUT, stats=counters)
                server = await loop.create_server(factory, host, 0, backlog=4096)
            servers.append(server)
        ports = {s.sockets[0].family.name: s.sockets[0].getsockname()[1] for s in servers}
        print(json.dumps({"ports": ports}), flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            command = (await reader.readline()).decode().strip()
            if command in ("", "quit"):
                break
            if command == "stats":
                gc.collect()
                report = dict(
                    stats,
                    rss=rss_bytes(),
                    traced=tracemalloc.get_traced_memory()[0] if tracing else None,
                    fds=len(os.listdir("/proc/self/fd")),
                    live=len(_Echo.live),
                    warnings=list(rejections.warnings),
                    messages=list(rejections.messages),
                    debug_records=rejections.debug,
                    loop_errors=list(loop_errors),
                    counters=counters.as_dict(),
                )
                rejections.warnings.clear()
                rejections.messages.clear()
                stats["max_open"] = stats["open"]
                print(json.dumps(report), flush=True)
        for s in servers:
            s.close()

    asyncio.run(main())


# -- the clients (this process) --------------------------------------------------


def random_address(rng: random.Random, six: bool):
    port = rng.randrange(1, 65536)
    if six:
        return (str(ipaddress.IPv6Address(rng.getrandbits(128))), port)
    return (str(ipaddress.IPv4Address(rng.getrandbits(32))), port)


def random_header(rng: random.Random, i: int):
    """A header of a kind chosen by i, with random addresses; its source."""
    kind = i % 6
    six = kind in (1, 3, 5)
    source, destination = random_address(rng, six), random_address(rng, six)
    if kind < 2:
        return pp.build(source, destination, version=1), source
    tlvs = []
    if kind >= 4:
        tlvs = [
            (C.PP2_TYPE_AUTHORITY, f"host-{i}.pp.test".encode()),
            (C.PP2_TYPE_UNIQUE_ID, rng.randbytes(rng.randrange(1, 129))),
            (0xE0 + rng.randrange(16), rng.randbytes(rng.randrange(0, 300))),
        ]
    return pp.build(source, destination, tlvs=tlvs, crc32c=kind >= 4), source


class Round:
    def __init__(self, ports: dict, rng: random.Random) -> None:
        self.ports = ports
        self.rng = rng
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.failures: list[str] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self.fault_peers: set[tuple[str, int]] = set()
        self.stall_times: list[float] = []
        # A connect() on loopback costs about half a millisecond of this
        # loop's time; a thousand at once would keep the first clients from
        # writing their headers for longer than the server's timeout.
        # Connecting a few dozen at a time keeps every client prompt, and
        # the barrier still has all the good ones open at once.
        self.slots = asyncio.Semaphore(CONNECTING)

    def arrive(self) -> None:
        self.connected += 1
        if self.connected == GOOD:
            self.all_connected.set()

    def target(self, i: int):
        if "AF_INET6" in self.ports and i % 2:
            return peers.LOOPBACK6, self.ports["AF_INET6"]
        return peers.LOOPBACK4, self.ports["AF_INET"]

    async def good(self, i: int) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        header, source = random_header(rng, i)
        payload = rng.randbytes(rng.randrange(1, MAX_PAYLOAD + 1))
        try:
            await self._good(i, rng, header, source, payload)
        except Exception as exc:
            raise AssertionError(
                f"{type(exc).__name__}: {exc} (header {header.hex()}, {len(payload)} bytes)"
            ) from exc

    async def _good(self, i, rng, header, source, payload) -> None:
        host, port = self.target(i)
        await self.slots.acquire()
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=4 * MAX_PAYLOAD)
        except BaseException:
            self.slots.release()
            self.arrive()
            raise
        try:
            try:
                first = header + struct.pack(">I", len(payload))
                payload_from = 0
                if i % 10 == 7:  # dribbled: the header in three pieces
                    cuts = sorted(rng.sample(range(1, len(header)), 2))
                    for a, b in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], len(first))):
                        writer.write(first[a:b])
                        await writer.drain()
                        await asyncio.sleep(0.005)
                elif i % 10 == 3:  # the header and the start of the payload together
                    payload_from = rng.randrange(0, len(payload))  # not all of it
                    writer.write(first + payload[:payload_from])
                else:
                    writer.write(first)
                await writer.drain()
            finally:
                self.slots.release()
            try:
                # The server has the connection: its application said so.
                ready = await reader.readexactly(1)
                if ready != READY:
                    raise AssertionError(f"expected the ready byte, got {ready!r}")
            finally:
                self.arrive()
            # Every good client is connected before any sends its payload.
            await asyncio.wait_for(self.all_connected.wait(), 20)

            async def send() -> None:
                view = memoryview(payload)
                off = payload_from
                while off < len(view):
                    n = rng.randrange(1, 16 * 1024)
                    writer.write(view[off : off + n])
                    off += n
                    await writer.drain()

            async def receive() -> bytes:
                return await reader.readexactly(len(payload) + 32)

            _, back = await asyncio.gather(send(), receive())
            line = await reader.readline()
            rest = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.bytes_up += len(header) + 4 + len(payload)
        self.bytes_down += len(READY) + len(back) + len(line)
        if back[:-32] != payload:
            lost = len(payload) - len(back[:-32])
            self.failures.append(f"client {i}: echo differs ({lost} bytes lost)")
        elif back[-32:] != hashlib.sha256(payload).digest():
            self.failures.append(f"client {i}: the server's SHA-256 differs")
        elif tuple(json.loads(line)["peer"]) != tuple(source):
            self.failures.append(f"client {i}: server saw {line!r}, header said {source}")
        elif rest:
            self.failures.append(f"client {i}: {len(rest)} bytes after the summary")

    async def fault(self, kind: str, i: int) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        host, port = self.target(i)
        header, _ = random_header(rng, i)
        async with self.slots:
            # The server's timer starts when it accepts, after this.
            start = time.monotonic()
            reader, writer = await asyncio.open_connection(host, port)
        self.fault_peers.add(tuple(writer.get_extra_info("sockname")[:2]))
        try:
            if kind in ("disconnect", "abort"):
                writer.write(header[: rng.randrange(1, len(header))])
                await writer.drain()
                await asyncio.sleep(rng.uniform(0, 0.2))
                if kind == "abort":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if kind == "garbage":
                choice = i % 4
                if choice == 0:
                    junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                elif choice == 1:
                    junk = b"PROXY TCP4 300.1.2.3 10.0.0.1 1 2\r\n"
                elif choice == 2:
                    junk = C.V2_SIGNATURE + b"\x31\x11\x00\x0c" + rng.randbytes(12)
                else:
                    junk = b"\x16\x03\x01" + rng.randbytes(rng.randrange(10, 2000))
                writer.write(junk + rng.randbytes(rng.randrange(0, 4000)))
                await writer.drain()
                data = await asyncio.wait_for(reader.read(), 15)
                if data:
                    self.failures.append(f"garbage client {i} got {len(data)} bytes back")
                return
            # stall: part of a header, or nothing at all, then wait
            if i % 2:
                writer.write(header[: rng.randrange(1, len(header))])
                await writer.drain()
            data = await asyncio.wait_for(reader.read(), 15)
            self.stall_times.append(time.monotonic() - start)
            if data:
                self.failures.append(f"stalled client {i} got {len(data)} bytes back")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def one_round(ports: dict, rng: random.Random) -> Round:
    r = Round(ports, rng)
    tasks = [(f"good client {i}", r.good(i)) for i in range(GOOD)]
    n = 0
    for kind, count in FAULTS.items():
        for _ in range(count):
            tasks.append((f"{kind} client {n}", r.fault(kind, n)))
            n += 1
    rng.shuffle(tasks)
    names = [name for name, _ in tasks]
    results = await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            r.failures.append(f"{name}: {type(result).__name__}: {result}")
    return r


class Server:
    def __init__(self, mode: str) -> None:
        env = dict(os.environ)
        # The child imports this module as the tests package's, and the
        # pyproxyproto this process uses (a checkout or an installed one).
        package_root = str(Path(pp.__file__).resolve().parent.parent)
        tests_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([tests_parent, package_root, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.test_load import serve; serve({mode!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.mode = mode
        self.stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.ports = self._answer(30)["ports"]

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _answer(self, timeout: float) -> dict:
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            raise AssertionError(f"load server did not answer: {''.join(self.stderr)[-3000:]}")
        return json.loads(result[0])

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._answer(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def logged_peer(text: str) -> tuple[str, int]:
    """("::1", 5000) from "[::1]:5000", as pyproxyproto's log records name peers."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture
def fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * (GOOD + sum(FAULTS.values())) + 256
    if soft != resource.RLIM_INFINITY and soft < needed:
        peers.need(
            hard == resource.RLIM_INFINITY or hard >= needed,
            f"RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors needed",
        )
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(params=["protocol", "streams"])
def server(request):
    """The server process: aio.wrap around a Protocol, or aio.start_server."""
    s = Server(request.param)
    try:
        yield s
    finally:
        s.stop()


def test_thousand_concurrent_connections_with_faults(server, fd_limit, capsys):
    started = time.monotonic()
    rng = random.Random(SEED)
    base = server.stats()
    previous = base["counters"]
    figures = []
    rss = []
    traced = []
    for n in range(ROUNDS):
        t0 = time.monotonic()
        r = asyncio.run(asyncio.wait_for(one_round(server.ports, rng), TIME_BUDGET))
        elapsed = time.monotonic() - t0
        s = server.stats()
        faults = sum(FAULTS.values())
        assert r.failures == [], (r.failures[:20], s["messages"])
        assert s["loop_errors"] == [], s["loop_errors"]
        assert s["protocol_errors"] == 0 and s["unfinished"] == 0
        # All the good clients were open at once, and every one finished.
        assert s["max_open"] >= GOOD, s["max_open"]
        assert s["completed"] - base["completed"] == GOOD * (n + 1)
        assert s["handled"] - base["handled"] == GOOD * (n + 1), "a faulty client got through"
        # Each faulty client counted once (an aborted one may go uncounted
        # if its bytes died with the reset), every good one accepted.
        delta = {k: v - previous[k] for k, v in s["counters"].items()}
        previous = s["counters"]
        refused = delta["rejected_invalid"] + delta["closed_early"] + delta["timed_out"]
        assert faults - FAULTS["abort"] <= refused <= faults, delta
        assert delta["accepted"] == GOOD and delta["rejected_untrusted"] == 0, delta
        # Warnings name faulty clients only.  They are rate limited, so a
        # later round within the same window may log none.
        warned = [logged_peer(p) for p in s["warnings"]]
        assert set(warned) <= r.fault_peers, s["messages"]
        assert (1 if n == 0 else 0) <= len(warned) <= faults, s["messages"]
        # Stalled clients were closed by the server's timeout, not before.
        assert len(r.stall_times) == FAULTS["stall"]
        assert min(r.stall_times) >= HEADER_TIMEOUT - 0.05, r.stall_times
        assert max(r.stall_times) < HEADER_TIMEOUT + 10
        # Nothing left behind.
        assert s["open"] == 0 and s["live"] == 0
        assert s["fds"] <= base["fds"] + 2, (s["fds"], base["fds"])
        rss.append(s["rss"])
        traced.append(s["traced"])
        figures.append(
            f"round {n}: {GOOD} good + {faults} faulty connections, "
            f"{r.bytes_up / 2**20:.1f} MiB up, {r.bytes_down / 2**20:.1f} MiB down, "
            f"{elapsed:.1f} s, max open {s['max_open']}, "
            f"stall close {min(r.stall_times):.2f}-{max(r.stall_times):.2f} s, "
            f"RSS {s['rss'] / 2**20:.1f} MiB"
            + ("" if s["traced"] is None else f", traced {s['traced'] / 2**10:.0f} KiB")
        )
    total = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nload ({server.mode}): server RSS at start {base['rss'] / 2**20:.1f} MiB;",
            "; ".join(figures),
            f"; total {total:.1f} s",
        )
    # Flat memory after the warm-up rounds.
    base_rss, base_traced = rss[WARMUP - 1], traced[WARMUP - 1]
    assert max(rss[WARMUP:]) - base_rss <= RSS_SLACK[server.mode], [x / 2**20 for x in rss]
    if base_traced is not None:
        assert max(traced[WARMUP:]) - base_traced <= TRACED_SLACK, traced
    assert total < TIME_BUDGET * 1.5
