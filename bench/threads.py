"""Thread scaling: parse + .source + .destination on 1 thread and on 2 at once.

    python -m bench.threads [--seconds 2] [--rounds 5] [--backend cython|python]

Each thread parses headers of its own (v2 IPv4 and v1 TCP4 lines, sources
and ports varying, as behind a balancer) and reads both addresses, for a
fixed time; the throughput of 2 threads over that of 1 is the scaling
ratio.  A pure-Python loop of similar work (struct, a tuple, a str) runs the
same way, as the machine's own ratio.  On a free-threaded CPython with 2
free cores the ideal is 2.0; with the GIL it is at most 1.0.

Rounds alternate 1 and 2 threads; the ratio of each round is printed, then
the median and the CPU time per header.  ``--threads N --only`` runs N
threads alone, e.g. under ``perf record``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import threading
import time

import pyproxyproto as pp
from pyproxyproto._backend import available


def headers(k: int, count: int = 512) -> list[bytes]:
    """Thread k's headers: v2 IPv4 and v1 TCP4, sources and ports varying."""
    out = []
    for i in range(count):
        source = (f"10.{k}.{i // 250}.{i % 250 + 1}", 1024 + i)
        destination = ("192.0.2.80", 443 if i % 3 else 8443)
        out.append(pp.build(source, destination, version=1 if i % 4 == 3 else 2))
    return out


def parse_loop(parse, data: list[bytes], stop_at: float) -> int:
    # parse is an argument, a local: a closure's cell, read by every
    # thread, would be locked on each read by a free-threaded 3.13.
    done = 0
    while time.perf_counter() < stop_at:
        for d in data:
            h = parse(d)
            h.source
            h.destination
        done += len(data)
    return done


_INET = struct.Struct("!4s4sHH")


def python_loop(unpack, data: list[bytes], stop_at: float) -> int:
    """Similar work in plain Python: unpack, a str, two tuples per header."""
    done = 0
    blocks = [d[16:28] if d[:1] == b"\r" else bytes(12) for d in data]
    while time.perf_counter() < stop_at:
        for b in blocks:
            src, dst, sport, dport = unpack(b)
            (str(sport), sport)
            (dst, dport)
        done += len(blocks)
    return done


def run(work, function, threads: int, seconds: float) -> tuple[int, float]:
    """(headers done by all threads, CPU seconds) in ``seconds`` of wall time."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def body(k: int) -> None:
        # Each thread makes its own bytes, as a server's reading thread does
        # (on a free-threaded build an object is cheaper for its own thread).
        data = headers(k)
        barrier.wait()
        counts[k] = work(function, data, stop_at)

    pool = [threading.Thread(target=body, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    cpu = time.process_time()
    stop_at = time.perf_counter() + seconds
    barrier.wait()
    for t in pool:
        t.join()
    return sum(counts), time.process_time() - cpu


def scaling(name: str, work, function, rounds: int, seconds: float) -> None:
    ratios, cpu = [], {1: [], 2: []}
    for r in range(rounds):
        one, cpu1 = run(work, function, 1, seconds)
        two, cpu2 = run(work, function, 2, seconds)
        ratios.append(two / one)
        cpu[1].append(cpu1 / one * 1e9)
        cpu[2].append(cpu2 / two * 1e9)
        print(f"  {name} round {r + 1}: 1 thread {one / seconds:,.0f}/s, "
              f"2 threads {two / seconds:,.0f}/s, ratio {two / one:.2f}", flush=True)
    print(f"{name}: 2 threads / 1 thread = {statistics.median(ratios):.2f} "
          f"(median of {rounds}, range {min(ratios):.2f}-{max(ratios):.2f}); CPU per header "
          f"{statistics.median(cpu[1]):.0f} ns on 1 thread, {statistics.median(cpu[2]):.0f} ns on 2")


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--seconds", type=float, default=2.0, help="wall time of each run")
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--backend", choices=("cython", "python"), default=pp.BACKEND)
    options.add_argument("--threads", type=int, default=2, help="with --only: how many threads")
    options.add_argument("--only", action="store_true", help="run --threads threads once, no comparison")
    args = options.parse_args()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]}, GIL {'on' if gil else 'off'}, {os.cpu_count()} CPUs, "
          f"backend {args.backend}")
    parse = available()[args.backend].parse
    if args.only:
        done, cpu = run(parse_loop, parse, args.threads, args.seconds)
        print(f"{args.threads} threads: {done / args.seconds:,.0f} headers/s, {cpu / done * 1e9:.0f} ns CPU each")
        return
    scaling("parse + .source + .destination", parse_loop, parse, args.rounds, args.seconds)
    scaling("pure-Python loop (the machine's ratio)", python_loop, _INET.unpack, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
