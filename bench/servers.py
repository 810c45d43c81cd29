"""Server benchmark: requests per second of a real uvicorn with and without
``pyproxyproto.uvicorn``.

One uvicorn process (one worker) serves a tiny ASGI app on 127.0.0.1, with
``--http h11`` (baseline) or ``--http pyproxyproto.uvicorn:H11Protocol``
(every connection starts with a PROXY v2 header); the same for httptools.
Load comes from ``--clients`` separate processes, each bounded by time and
by request count.  Two load shapes:

  keepalive  each client keeps one connection and sends requests on it
             (a balancer's pooled backend connections)
  connect    a new connection (and header) for every request

Rounds alternate baseline and integration, and the ratio reported is the
median of the per-round ratios (the machine is shared and noisy).

Usage: python -m bench.servers [--duration S] [--rounds N] [--clients N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
MAX_REQUESTS = 2_000_000  # per client and round, besides the time bound
SERVERS = {  # name: (baseline --http, integration --http)
    "h11": ("h11", "pyproxyproto.uvicorn:H11Protocol"),
    "httptools": ("httptools", "pyproxyproto.uvicorn:HttpToolsProtocol"),
}
HEADER = bytes.fromhex("0d0a0d0a000d0a515549540a2111000ccb007107c6336401a1d201bb")  # v2 TCP4


async def app(scope, receive, send):  # the ASGI app under load
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _read_response(sock: socket.socket, pending: bytearray) -> None:
    while True:
        end = pending.find(b"\r\n\r\n")
        if end >= 0 and len(pending) >= end + 4 + 2:  # the body is 2 bytes
            del pending[: end + 6]
            return
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed")
        pending += chunk


def _client(port: int, header: bytes, shape: str, duration: float, out: multiprocessing.Queue) -> None:
    done = 0
    deadline = time.monotonic() + duration
    sock = None
    pending = bytearray()
    while done < MAX_REQUESTS and time.monotonic() < deadline:
        if sock is None:
            sock = socket.create_connection((HOST, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(header + REQUEST)
        else:
            sock.sendall(REQUEST)
        _read_response(sock, pending)
        done += 1
        if shape == "connect":
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    out.put(done)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _round(http: str, proxied: bool, shape: str, clients: int, duration: float) -> float:
    port = _free_port()
    env = dict(os.environ, PYPROXYPROTO_TRUSTED="127.0.0.0/8")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.servers:app", "--host", HOST, "--port",
         str(port), "--http", http, "--log-level", "warning", "--no-access-log",
         "--lifespan", "off"],
        cwd=ROOT, env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.05)
        out: multiprocessing.Queue = multiprocessing.Queue()
        header = HEADER if proxied else b""
        procs = [multiprocessing.Process(target=_client, args=(port, header, shape, duration, out))
                 for _ in range(clients)]
        start = time.monotonic()
        for p in procs:
            p.start()
        total = sum(out.get(timeout=duration + 30) for _ in procs)
        elapsed = time.monotonic() - start
        for p in procs:
            p.join(timeout=10)
        return total / elapsed
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    results = {}
    for name, (plain, wrapped) in SERVERS.items():
        for shape in ("keepalive", "connect"):
            ratios, base, ours = [], [], []
            for _ in range(args.rounds):
                b = _round(plain, False, shape, args.clients, args.duration)
                o = _round(wrapped, True, shape, args.clients, args.duration)
                base.append(b)
                ours.append(o)
                ratios.append(o / b)
            entry = {"baseline_rps": statistics.median(base),
                     "pyproxyproto_rps": statistics.median(ours),
                     "ratio": statistics.median(ratios), "ratios": ratios}
            results[f"uvicorn-{name}-{shape}"] = entry
            print(f"uvicorn {name:9} {shape:9}  baseline {entry['baseline_rps']:8.0f} req/s  "
                  f"with pyproxyproto {entry['pyproxyproto_rps']:8.0f} req/s  "
                  f"kept {100 * entry['ratio']:5.1f} %", flush=True)
    if args.json:
        summary = {"command": "python -m bench.servers " + " ".join(argv or sys.argv[1:]),
                   "clients": args.clients, "duration_s": args.duration, "rounds": args.rounds,
                   "results": results}
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
