"""Silent-connection flood: how many good requests a gunicorn server still serves, and how fast, while a
thousand connections from the balancer's address send nothing.

A connection that has sent no header holds whatever reads it: a thread of
gunicorn's gthread worker (or the one thread of its sync worker) until the
header timeout.  pyproxyproto's ``ThreadWorker`` reads headers in gunicorn's
poller and gives a connection a thread only once its header is in, so good
clients keep being served.  This starts each server (2 workers x 4 threads,
header timeout 5 s), holds ``--silent`` connections open from 127.0.0.1 (the
trusted balancer address; closed ones are reopened), and meanwhile sends
good requests (a v2 header and a GET, ``--clients`` at a time, each given 5 s)
for ``--duration`` seconds; it reports the share served and the latency
percentiles.  Loopback only; every loop is bounded in count and time.

    python -m bench.silent_flood [--silent 1000] [--duration 10] [--servers a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
APP = "bench.silent_flood:wsgi"
HEADER_TIMEOUT = 5.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

SERVERS = {
    "pyproxyproto-gthread": ["-k", "pyproxyproto.gunicorn.ThreadWorker", "--threads", "4"],
    "pyproxyproto-sync": ["-k", "pyproxyproto.gunicorn.SyncWorker"],
    "gunicorn-gthread-own-proxy": ["-k", "gthread", "--threads", "4", "--proxy-protocol", "v2"],
}


def wsgi(environ: dict, start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The application each server runs: a few bytes naming the client."""
    body = environ["REMOTE_ADDR"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _header(port: int) -> bytes:
    sys.path.insert(0, str(HERE.parent))
    import pyproxyproto as pp

    return pp.build(("203.0.113.7", port), ("198.51.100.1", 443))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _start(name: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYPROXYPROTO_TIMEOUT=str(HEADER_TIMEOUT),
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-m", "gunicorn", *SERVERS[name], "-w", "2", "-b",
            f"{LOOPBACK}:{port}", "--proxy-allow-from", LOOPBACK, "--no-control-socket",
            "--timeout", "60", "--log-level", "error", APP]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


class _Silent:
    """Holds up to ``count`` connections that send nothing, reopening the
    ones the server closes, until stopped."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _connect(self, selector: selectors.BaseSelector) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect((LOOPBACK, self.port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            return
        selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            while not self._stop.is_set():
                while len(selector.get_map()) < self.count and not self._stop.is_set():
                    self._connect(selector)
                for key, _ in selector.select(0.2):
                    sock = key.fileobj
                    try:
                        if sock.recv(1, socket.MSG_PEEK):  # type: ignore[union-attr]
                            continue
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        pass
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


def _good(port: int, until: float, results: list[tuple[bool, float]], header: bytes) -> None:
    while time.monotonic() < until:
        start = time.monotonic()
        ok = False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                sock.sendall(header + REQUEST)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                ok = data.startswith(b"HTTP/1.1 200")
        except OSError:
            pass
        results.append((ok, time.monotonic() - start))


def measure(name: str, silent: int, duration: float, clients: int) -> dict[str, object]:
    port = _free_port()
    header = _header(41234)
    proc = _start(name, port)
    flood = _Silent(port, silent)
    results: list[tuple[bool, float]] = []
    try:
        if silent:
            flood.start()
            time.sleep(2)  # let the flood fill the server
        until = time.monotonic() + duration
        threads = [threading.Thread(target=_good, args=(port, until, results, header))
                   for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + 10)
    finally:
        flood.stop()
        os.killpg(proc.pid, 15)
        proc.wait(10)
    latencies = sorted(seconds for ok, seconds in results if ok)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {
        "server": name, "silent": silent, "requests": len(results),
        "served": sum(ok for ok, _ in results),
        "served_share": round(sum(ok for ok, _ in results) / max(1, len(results)), 3),
        "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "silent_opened": flood.opened,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--silent", type=int, default=1000, help="silent connections (max 1000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of good requests (max 60)")
    parser.add_argument("--clients", type=int, default=4, help="good clients at a time")
    parser.add_argument("--servers", default=",".join(SERVERS), help="which servers, comma-separated")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    silent = max(0, min(args.silent, 1000))
    duration = max(1.0, min(args.duration, 60.0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * silent + 256)), hard))
    rows = []
    for name in args.servers.split(","):
        for count in (0, silent):
            row = measure(name, count, duration, args.clients)
            rows.append(row)
            print(f"{name:28} silent={count:5} served {row['served']}/{row['requests']} "
                  f"({row['served_share']:.0%})  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
