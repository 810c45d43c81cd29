"""Accept-loop benchmark: connections per second through an asyncio server.

The server (this process) listens on 127.0.0.1 and answers each connection
with a tiny HTTP/1.0 response whose body is the client address it sees, then
closes.  A load generator in a second process (``python -m bench.accept_loop
client ...``) keeps a fixed number of connections in flight; each one sends a
PROXY v2 header and a small request in one write, reads the reply to EOF and
checks the body: ``127.0.0.1`` for the plain server, the header's source for
the PROXY servers.  Every run is bounded by time and by connection count, and
only loopback is used.

Server modes:
  plain  a plain asyncio.Protocol (no PROXY support: the baseline)
  parse  the same protocol calling pyproxyproto.parse itself on its first read
         (no buffering of split headers, no timeout, no trust check)
  wrap   the plain protocol wrapped by pyproxyproto.aio.wrap() with its defaults
         (5 s header timeout, every peer trusted)

Besides connections per second (which also depends on the load generator,
sharing the machine), the server's own CPU time per connection is reported.

Usage: python -m bench.accept_loop [--duration S] [--repeats N] [--max-conns N]
                                   [--concurrency N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
MODES = ("plain", "parse", "wrap")


def _header() -> tuple[bytes, str]:
    from .cases import BY_KEY
    case = BY_KEY["v2_ipv4"]
    return case.header, case.source[0]


def _response(host: str) -> bytes:
    body = host.encode()
    return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


# -- server ------------------------------------------------------------------------------


class Reply(asyncio.Protocol):
    """Answers the first read with the peer address the transport reports."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        transport.write(_response(transport.get_extra_info("peername")[0]))
        transport.close()


class ParseReply(Reply):
    """PROXY support done by hand: parse the first read, reply with its source."""

    def data_received(self, data: bytes) -> None:
        from pyproxyproto import parse
        header = parse(data)
        transport = self.transport
        transport.write(_response(header.source[0]))
        transport.close()


def _factory(mode: str) -> Any:
    if mode == "plain":
        return Reply
    if mode == "parse":
        import pyproxyproto  # noqa: F401  (imported before timing starts)
        return ParseReply
    from pyproxyproto.aio import wrap
    return wrap(Reply)


async def _serve_one_run(mode: str, duration: float, max_conns: int, concurrency: int) -> dict:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_factory(mode), HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    expect = "127.0.0.1" if mode == "plain" else _header()[1]
    cmd = [sys.executable, "-m", "bench.accept_loop", "client", "--port", str(port),
           "--duration", str(duration), "--max-conns", str(max_conns),
           "--concurrency", str(concurrency), "--expect", expect]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        cpu0 = time.process_time()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, cwd=here, env=env)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), duration + 60)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("load generator did not finish in time") from None
        cpu = time.process_time() - cpu0
    finally:
        server.close()
        await server.wait_closed()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with status {proc.returncode}")
    result = json.loads(out)
    result["server_cpu_s"] = cpu
    result["server_cpu_us_per_conn"] = cpu / result["count"] * 1e6 if result["count"] else None
    return result


def run(duration: float = 2.0, repeats: int = 3, max_conns: int = 20000,
        concurrency: int = 16, warmup: float = 0.3) -> dict:
    """Run every mode ``repeats`` times, interleaved; medians per mode."""
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}

    async def main() -> None:
        for mode in MODES:  # warm the imports, the loop and the kernel paths
            await _serve_one_run(mode, warmup, max(50, max_conns // 20), concurrency)
        for _ in range(repeats):
            for mode in MODES:
                runs[mode].append(await _serve_one_run(mode, duration, max_conns, concurrency))

    asyncio.run(main())
    summary: dict[str, Any] = {
        "duration_s": duration, "repeats": repeats, "max_conns": max_conns,
        "concurrency": concurrency, "request_bytes": len(_header()[0] + REQUEST),
        "modes": {},
    }
    for mode, results in runs.items():
        cps = [r["count"] / r["elapsed_s"] for r in results]
        cpu = [r["server_cpu_us_per_conn"] for r in results if r["server_cpu_us_per_conn"]]
        summary["modes"][mode] = {
            "conns_per_s": statistics.median(cps),
            "conns_per_s_runs": cps,
            "server_cpu_us_per_conn": statistics.median(cpu) if cpu else None,
            "connections": sum(r["count"] for r in results),
            "errors": sum(r["errors"] for r in results),
        }
    return summary


# -- load generator ----------------------------------------------------------------------


class _Client(asyncio.Protocol):
    def __init__(self, payload: bytes, done: asyncio.Future) -> None:
        self.payload = payload
        self.done = done
        self.buf = bytearray()

    def connection_made(self, transport: Any) -> None:
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buf += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.buf))


async def _generate(port: int, duration: float, max_conns: int, concurrency: int,
                    expect: str) -> dict:
    loop = asyncio.get_running_loop()
    payload = _header()[0] + REQUEST
    want = _response(expect)
    count = errors = started = 0
    deadline = loop.time() + duration
    first_error = ""

    async def worker() -> None:
        nonlocal count, errors, started, first_error
        while started < max_conns and loop.time() < deadline:
            started += 1
            done = loop.create_future()
            try:
                await loop.create_connection(lambda: _Client(payload, done), HOST, port)
                reply = await asyncio.wait_for(done, 10)
            except (OSError, asyncio.TimeoutError) as exc:
                errors += 1
                first_error = first_error or repr(exc)
                continue
            if reply != want:
                errors += 1
                first_error = first_error or f"unexpected reply {reply[:80]!r}"
                continue
            count += 1

    t0 = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"count": count, "errors": errors, "elapsed_s": loop.time() - t0,
            "first_error": first_error, "client_cpu_s": time.process_time()}


def _client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.accept_loop client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--max-conns", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--expect", required=True)
    a = p.parse_args(argv)
    result = asyncio.run(_generate(a.port, a.duration, a.max_conns, a.concurrency, a.expect))
    print(json.dumps(result))
    if result["errors"]:
        print(f"load generator: {result['errors']} failed connections, first: "
              f"{result['first_error']}", file=sys.stderr)
    return 0 if result["count"] and not result["errors"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        return _client_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.accept_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode (default 3)")
    p.add_argument("--max-conns", type=int, default=20000, help="connections per run at most")
    p.add_argument("--concurrency", type=int, default=16, help="connections in flight")
    p.add_argument("--json", help="write the summary here")
    a = p.parse_args(argv)
    summary = run(a.duration, a.repeats, a.max_conns, a.concurrency)
    text = json.dumps(summary, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
