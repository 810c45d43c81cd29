"""Accept-loop benchmark: what a PROXY header costs an asyncio server per connection.

A server process answers each connection with a tiny HTTP/1.0 response whose
body is the client address it sees, then closes.  The load generator is a
small C program (``bench/loadgen.c``, compiled here with gcc into
``build/bench/``; never shipped) in another process: a few threads with an
epoll loop each keep a fixed number of connections in flight; each sends a
PROXY v2 header and a small request in one write, reads the reply to EOF and
checks the body: ``127.0.0.1`` for a plain server, the header's source for a
PROXY one.  Only 127.0.0.1 is used; every run is bounded by time and by
connection count, and the generator has a watchdog.

Servers, on asyncio's event loop and on uvloop's (when installed):
  protocol  ``loop.create_server(P)``  vs  ``loop.create_server(aio.wrap(P))``
  streams   ``asyncio.start_server``   vs  ``aio.start_server``

The figure that matters is the server's own CPU time per connection (from
the kernel, user + system, of the server process only): connections per
second also depend on the generator and on whatever else shares the machine.
Each round runs plain and wrapped back to back (in alternating order); the
ratio wrapped / plain is taken within a round and the median over rounds is
reported with its spread.

``count`` mode counts instructions instead (valgrind's callgrind, which
does not move with the machine's load): the server runs under callgrind
while the generator makes one connection at a time, once with N and once
with 3N connections; the difference over 2N is the server's user-space
instructions per connection (the kernel's work is not counted).

Usage: python -m bench.accept_loop [--duration S] [--rounds N] [--max-conns N]
                                   [--concurrency N] [--threads N]
                                   [--loops asyncio,uvloop] [--json FILE]
       python -m bench.accept_loop count [--conns N] [--loops asyncio,uvloop]
                                         [--kinds protocol,streams] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
# (server kind, plain mode, wrapped mode) and how the report names them.
PAIRS = (
    ("protocol", "loop.create_server(P)", "loop.create_server(aio.wrap(P))"),
    ("streams", "asyncio.start_server", "aio.start_server"),
)
LOOPS = ("asyncio", "uvloop")


def _header() -> tuple[bytes, str]:
    from .cases import BY_KEY
    case = BY_KEY["v2_ipv4"]
    return case.header, case.source[0]


def _response(host: str) -> bytes:
    body = host.encode()
    return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def build_loadgen() -> str:
    """Compile bench/loadgen.c (once per source version) and return the program's path."""
    src = os.path.join(HERE, "loadgen.c")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    out_dir = os.path.join(ROOT, "build", "bench")
    exe = os.path.join(out_dir, f"loadgen-{digest}")
    if not os.path.exists(exe):
        os.makedirs(out_dir, exist_ok=True)
        tmp = f"{exe}.{os.getpid()}"
        subprocess.run(["gcc", "-O2", "-pthread", "-o", tmp, src], check=True)
        os.replace(tmp, exe)
    return exe


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


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(_response(writer.get_extra_info("peername")[0]))
    writer.close()


async def _start(kind: str, wrapped: bool, options: dict[str, Any]) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    if kind == "protocol":
        if wrapped:
            from pyproxyproto import aio
            return await loop.create_server(aio.wrap(Reply, **options), HOST, 0, backlog=1024)
        return await loop.create_server(Reply, HOST, 0, backlog=1024)
    if wrapped:
        from pyproxyproto import aio
        return await aio.start_server(_handle, HOST, 0, backlog=1024, **options)
    return await asyncio.start_server(_handle, HOST, 0, backlog=1024)


async def _output(proc: subprocess.Popen) -> bytes:
    """The child's whole stdout, read as the loop's other readers are: the
    server spends no CPU polling (and, unlike a pidfd, this works under
    valgrind, which bench.accept_loop's ``count`` mode runs the server in)."""
    loop = asyncio.get_running_loop()
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _one_run(kind: str, wrapped: bool, opts: dict[str, Any]) -> dict[str, Any]:
    gc.collect()
    server = await _start(kind, wrapped, opts.get("wrap_options", {}))
    port = server.sockets[0].getsockname()[1]
    header, source = _header()
    expect = _response(source if wrapped else HOST)
    cmd = [opts["loadgen"], str(port), str(opts["threads"]), str(opts["concurrency"]),
           str(opts["duration"]), str(opts["max_conns"]), (header + REQUEST).hex(),
           expect.hex()]
    t0, cpu0 = os.times(), time.process_time()
    pin = opts.get("pin")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE,
        # Set before exec, so the generator's threads inherit it.
        preexec_fn=None if pin is None else partial(os.sched_setaffinity, 0, pin["client"]),
    )
    try:
        out = await asyncio.wait_for(_output(proc), opts["duration"] + 60)
    finally:
        t1, cpu1 = os.times(), time.process_time()
        server.close()
        await server.wait_closed()
        if proc.poll() is None:  # still running only if the wait above failed
            proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    # The total is exact; the split into user and system time comes in
    # clock ticks.  User time is this process's own work; system time is
    # mostly the kernel's loopback TCP, and the noisier half.
    result["server_cpu_s"] = cpu1 - cpu0
    result["server_user_s"] = t1.user - t0.user
    result["server_sys_s"] = t1.system - t0.system
    return result


def _new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(loop_name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Every pair, ``opts["rounds"]`` interleaved rounds, on one event loop.

    Writes ``progress DONE TOTAL`` lines to stderr as the runs end."""
    runs: dict[str, list[list[dict[str, Any]]]] = {kind: [] for kind, _, _ in PAIRS}
    if opts.get("pin") is not None:
        os.sched_setaffinity(0, opts["pin"]["server"])

    async def main() -> None:
        warm = dict(opts, duration=min(0.3, opts["duration"]),
                    max_conns=max(50, opts["max_conns"] // 20))
        for kind, _, _ in PAIRS:  # imports, the loop's and the kernel's first paths
            for wrapped in (False, True):
                await _one_run(kind, wrapped, warm)
        total = opts["rounds"] * len(PAIRS)
        for n in range(opts["rounds"]):
            for i, (kind, _, _) in enumerate(PAIRS):
                order = (False, True) if n % 2 == 0 else (True, False)
                pair = {w: await _one_run(kind, w, opts) for w in order}
                runs[kind].append([pair[False], pair[True]])
                print(f"progress {n * len(PAIRS) + i + 1} {total}", file=sys.stderr, flush=True)

    loop = _new_loop(loop_name)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return runs


def serve_count(loop_name: str, kind: str, wrapped: bool, conns: int, loadgen: str) -> None:
    """One server, ``conns`` connections made one at a time (run under callgrind).

    Under callgrind the server runs some 50 times slower, so the header
    deadline sweep (one timer every timeout / 10 for all connections) would
    fall every few connections instead of every few thousand; an hour's
    timeout keeps the sweeps out of the count and leaves in what each
    connection costs (its entry in the sweep's bucket)."""
    opts = {"threads": 1, "concurrency": 1, "duration": 3000, "max_conns": conns,
            "loadgen": loadgen, "wrap_options": {"timeout": 3600.0}}

    async def main() -> None:
        result = await _one_run(kind, wrapped, opts)
        if result["count"] != conns or result["errors"]:
            raise RuntimeError(f"count run: {result}")

    loop = _new_loop(loop_name)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _instructions(loop_name: str, kind: str, wrapped: bool, conns: int, loadgen: str) -> int:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               "-m", "bench.accept_loop", "serve-count", loop_name, kind,
               "wrapped" if wrapped else "plain", str(conns), loadgen]
        env = dict(os.environ, PYTHONHASHSEED="0",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=1800)
        with open(out) as f:
            m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
    if m is None:
        raise RuntimeError("callgrind wrote no summary")
    return int(m.group(1))


def count(conns: int = 500, loops: list[str] | None = None,
          kinds: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Server instructions per connection, plain and wrapped, by loop and kind.

    ``progress``, when given, is called with (done, total) after each callgrind run."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("count mode needs valgrind")
    loadgen = build_loadgen()
    result: dict[str, Any] = {"conns": conns, "loops": {}}
    loops = loops or available_loops()
    kinds = kinds or [k for k, _, _ in PAIRS]
    total, done = len(loops) * len(kinds) * 4, 0
    for loop_name in loops:
        for kind in kinds:
            per_conn = []
            for wrapped in (False, True):
                counts = []
                for n in (conns, 3 * conns):
                    counts.append(_instructions(loop_name, kind, wrapped, n, loadgen))
                    done += 1
                    if progress is not None:
                        progress(done, total)
                per_conn.append((counts[1] - counts[0]) / (2 * conns))
            result["loops"].setdefault(loop_name, {})[kind] = {
                "plain": per_conn[0], "wrapped": per_conn[1],
                "extra": per_conn[1] - per_conn[0], "ratio": per_conn[1] / per_conn[0]}
    return result


def format_count(result: dict[str, Any]) -> str:
    pairs = {kind: (plain, wrapped) for kind, plain, wrapped in PAIRS}
    lines = [f"server instructions per connection (callgrind, {result['conns']}..."
             f"{3 * result['conns']} connections, one at a time)",
             "loop     server                            plain Ir   wrapped Ir   extra  ratio"]
    for name, kinds in result["loops"].items():
        for kind, c in kinds.items():
            lines.append(f"{name:8} {pairs[kind][1]:32} {c['plain']:9,.0f} {c['wrapped']:11,.0f} "
                         f"{c['extra']:7,.0f}  {c['ratio']:.3f}")
    return "\n".join(lines)


def _summary(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    def side(i: int) -> dict[str, Any]:
        rs = [r[i] for r in rounds]
        cpu = [r["server_cpu_s"] / r["count"] * 1e6 for r in rs]
        user = [r["server_user_s"] / r["count"] * 1e6 for r in rs]
        return {
            "conns_per_s": statistics.median(r["count"] / r["elapsed_s"] for r in rs),
            "server_cpu_us_per_conn": statistics.median(cpu),
            "server_cpu_us_per_conn_runs": cpu,
            "server_user_us_per_conn": statistics.median(user),
            "server_user_us_per_conn_runs": user,
            # Near 1.0: the server, not the load generator, sets the pace.
            "server_busy": statistics.median(r["server_cpu_s"] / r["elapsed_s"] for r in rs),
            "client_cpu_us_per_conn": statistics.median(
                r["client_cpu_s"] / r["count"] * 1e6 for r in rs),
            "connections": sum(r["count"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "first_error": next((r["first_error"] for r in rs if r["first_error"]), ""),
        }

    plain, wrapped = side(0), side(1)
    ratios = [w / p for p, w in zip(plain["server_cpu_us_per_conn_runs"],
                                    wrapped["server_cpu_us_per_conn_runs"])]
    # A short run may be charged no user tick at all.
    user_ratios = [w / p for p, w in zip(plain["server_user_us_per_conn_runs"],
                                         wrapped["server_user_us_per_conn_runs"]) if p]
    return {"plain": plain, "wrapped": wrapped, "cpu_ratio": statistics.median(ratios),
            "cpu_ratio_runs": ratios,
            "user_ratio": statistics.median(user_ratios) if user_ratios else None,
            "user_ratio_runs": user_ratios}


def available_loops() -> list[str]:
    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:
        loops.append("uvloop")
    return loops


def cpu_split() -> dict[str, list[int]] | None:
    """One CPU for the server, the others for the load generator: neither
    evicts the other's caches, and the kernel's loopback work for what the
    generator sends runs on the generator's CPUs.  None (no pinning) on a
    machine with fewer than two CPUs available."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {"server": cpus[:1], "client": cpus[1:]}


def run(duration: float = 2.0, rounds: int = 21, max_conns: int = 20000,
        concurrency: int = 16, threads: int = 2, loops: list[str] | None = None,
        pin: bool = True, progress: Any = None) -> dict:
    """Run the benchmark; each event loop gets a fresh server process.

    ``progress``, when given, is called with (done, total) after each pair of runs."""
    loops = loops or available_loops()
    opts = {"duration": duration, "rounds": rounds, "max_conns": max_conns,
            "concurrency": concurrency, "threads": threads, "loadgen": build_loadgen(),
            "pin": cpu_split() if pin else None}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    summary: dict[str, Any] = {
        "duration_s": duration, "rounds": rounds, "max_conns": max_conns,
        "concurrency": concurrency, "threads": threads, "pin": opts["pin"],
        "request_bytes": len(_header()[0] + REQUEST), "loops": {},
        "pairs": {kind: [plain, wrapped] for kind, plain, wrapped in PAIRS},
    }
    total = len(loops) * rounds * len(PAIRS)
    for index, name in enumerate(loops):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "runs.json")
            cmd = [sys.executable, "-m", "bench.accept_loop", "serve", name, json.dumps(opts),
                   out]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
            lines = []
            assert proc.stderr is not None
            for line in proc.stderr:
                words = line.split()
                if len(words) == 3 and words[0] == "progress":
                    if progress is not None:
                        progress(index * rounds * len(PAIRS) + int(words[1]), total)
                else:
                    lines.append(line)
            if proc.wait() != 0:
                raise RuntimeError(f"the {name} server failed (status {proc.returncode}): "
                                   + "".join(lines[-20:]))
            with open(out) as f:
                runs = json.load(f)
        summary["loops"][name] = {kind: _summary(rs) for kind, rs in runs.items()}
    return summary


def errors(summary: dict[str, Any]) -> int:
    """Failed connections in the whole run (a run with any is not a result)."""
    return sum(s[side]["errors"] for kinds in summary["loops"].values()
               for s in kinds.values() for side in ("plain", "wrapped"))


def _spread(median: float, runs: list[float]) -> str:
    return f"{median:.3f} ({min(runs):.3f}-{max(runs):.3f})"


def format_table(summary: dict[str, Any]) -> str:
    lines = ["loop     server                            conn/s   CPU us/conn  user us  busy  "
             "client us/conn  wrapped/plain CPU (median, min-max)  user CPU (median, min-max)"
             "  errors"]
    for name, kinds in summary["loops"].items():
        for kind, s in kinds.items():
            for i, side in enumerate(("plain", "wrapped")):
                m = s[side]
                ratio = user = ""
                if i:
                    ratio = _spread(s["cpu_ratio"], s["cpu_ratio_runs"])
                    if s["user_ratio"] is not None:
                        user = _spread(s["user_ratio"], s["user_ratio_runs"])
                lines.append(f"{name:8} {summary['pairs'][kind][i]:32} "
                             f"{m['conns_per_s']:7,.0f} {m['server_cpu_us_per_conn']:11.1f} "
                             f"{m['server_user_us_per_conn']:8.1f} "
                             f"{m['server_busy']:5.2f} {m['client_cpu_us_per_conn']:15.1f}  "
                             f"{ratio:36} {user:27} {m['errors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        runs = serve(argv[1], json.loads(argv[2]))
        with open(argv[3], "w") as f:
            json.dump(runs, f)
        return 0
    if argv[:1] == ["serve-count"]:
        serve_count(argv[1], argv[2], argv[3] == "wrapped", int(argv[4]), argv[5])
        return 0
    if argv[:1] == ["count"]:
        c = argparse.ArgumentParser(prog="python -m bench.accept_loop count")
        c.add_argument("--conns", type=int, default=500, help="N (default 500)")
        c.add_argument("--loops", help="comma-separated: asyncio,uvloop (default: asyncio)")
        c.add_argument("--kinds", help="comma-separated: protocol,streams (default: both)")
        c.add_argument("--json", help="write the counts here")
        ca = c.parse_args(argv[1:])
        result = count(ca.conns, ca.loops.split(",") if ca.loops else ["asyncio"],
                       ca.kinds.split(",") if ca.kinds else None)
        if ca.json:
            with open(ca.json, "w") as f:
                f.write(json.dumps(result, indent=2) + "\n")
        print(format_count(result))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.accept_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    p.add_argument("--rounds", type=int, default=21,
                   help="interleaved rounds (default 21: single rounds vary by +-30%% here)")
    p.add_argument("--max-conns", type=int, default=20000, help="connections per run at most")
    p.add_argument("--concurrency", type=int, default=16, help="connections in flight")
    p.add_argument("--threads", type=int, default=2, help="load generator threads")
    p.add_argument("--loops", help="comma-separated: asyncio,uvloop (default: those installed)")
    p.add_argument("--no-pin", action="store_true",
                   help="let the scheduler place server and load generator (default: the "
                        "server on one CPU, the generator on the others)")
    p.add_argument("--json", help="write the summary here")
    a = p.parse_args(argv)
    summary = run(a.duration, a.rounds, a.max_conns, a.concurrency, a.threads,
                  a.loops.split(",") if a.loops else None, pin=not a.no_pin)
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
