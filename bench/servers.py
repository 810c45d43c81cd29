"""Real servers against their own PROXY support: connections per second and
the server's CPU per connection.

Each server runs as its users start it, one process (one worker), serving
a tiny app that answers with the client address it was given, in three
forms where it has PROXY support of its own:

  gunicorn -k sync      no PROXY | --proxy-protocol v2 | -k pyproxyproto.gunicorn.SyncWorker
  gunicorn -k gthread   no PROXY | --proxy-protocol v2 | -k pyproxyproto.gunicorn.ThreadWorker
  daphne                -e tcp:  | -e haproxy:tcp:     | -e pyproxyproto:tcp:
  uvicorn (httptools)   no PROXY | (none of its own)   | --http pyproxyproto.uvicorn:HttpToolsProtocol

The load is the C load generator (``bench/loadgen.c``) in another process:
each connection sends, in one write, a PROXY v2 header (except to the
server without PROXY) and an HTTP/1.1 request with ``Connection: close``,
reads the reply to EOF and checks that it is a 200 whose body is the
header's source (``127.0.0.1`` without PROXY): a reply that lost the
client's address counts as an error.  The server's CPU is that of its
whole process tree (gunicorn's arbiter and worker, every thread), read
from /proc (``schedstat``: nanoseconds on a CPU) before and after each run.
By default the server is pinned to one CPU and the generator to the others.

The forms of one server run in interleaved rounds (the order rotates from
one round to the next), so a change in the machine's load falls on all of
them; a ratio is taken within each round and reported as the median with
the range of the single rounds.

``--count N`` measures what timing cannot on a noisy machine: each form
runs under valgrind's callgrind (every process of the tree), serves a
warm-up, then N connections made one at a time, and the user-space
instructions of the whole tree over those N are divided by N.  The
kernel's work is not in it (strace -c -f shows the same system calls per
connection for gunicorn's own reader and pyproxyproto's).

Usage: python -m bench.servers [--rounds N] [--duration S] [--servers a,b]
                               [--concurrency N] [--threads N] [--no-pin]
                               [--count N] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
STATUS = b"HTTP/1.1 200 OK\r\n"
TRUSTED = "127.0.0.0/8"


# -- the apps ------------------------------------------------------------------------------


def wsgi(environ: dict, start_response: Callable) -> list[bytes]:
    """The WSGI app: its body is the client address the server reports."""
    body = environ["REMOTE_ADDR"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope: dict, receive: Callable, send: Callable) -> None:
    """The ASGI app: its body is the client address the server reports."""
    if scope["type"] != "http":
        return
    body = scope["client"][0].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    support: str                       # "none", "own" or "pyproxyproto"
    label: str                         # how the report names it
    argv: Callable[[Any], list[str]]   # port -> command line (after the interpreter)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def header(self) -> bool:
        return self.support != "none"


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    dist: str            # the distribution whose version is reported
    modules: tuple       # what must be importable
    variants: tuple


def _gunicorn(worker: str, *extra: str) -> Callable[[Any], list[str]]:
    def argv(port: Any) -> list[str]:
        return ["-m", "gunicorn", "-k", worker, "-w", "1", "-b", f"{HOST}:{port}",
                "--no-control-socket", "--graceful-timeout", "1", *extra, "bench.servers:wsgi"]
    return argv


def _daphne(endpoint: str) -> Callable[[Any], list[str]]:
    def argv(port: Any) -> list[str]:
        return ["-m", "daphne", "-v", "0", "-e", endpoint.format(port=port, host=HOST),
                "bench.servers:asgi"]
    return argv


def _uvicorn(http: str) -> Callable[[Any], list[str]]:
    def argv(port: Any) -> list[str]:
        return ["-m", "uvicorn", "bench.servers:asgi", "--host", HOST, "--port", str(port),
                "--http", http, "--lifespan", "off", "--no-access-log",
                "--log-level", "warning"]
    return argv


SERVERS: tuple[Server, ...] = (
    Server("gunicorn-sync", "gunicorn -k sync", "gunicorn", ("gunicorn",), (
        Variant("none", "no PROXY", _gunicorn("sync")),
        Variant("own", "its own `--proxy-protocol v2`", _gunicorn("sync", "--proxy-protocol", "v2")),
        Variant("pyproxyproto", "`-k pyproxyproto.gunicorn.SyncWorker`",
                _gunicorn("pyproxyproto.gunicorn.SyncWorker")),
    )),
    Server("gunicorn-gthread", "gunicorn -k gthread --threads 4", "gunicorn", ("gunicorn",), (
        Variant("none", "no PROXY", _gunicorn("gthread", "--threads", "4")),
        Variant("own", "its own `--proxy-protocol v2`",
                _gunicorn("gthread", "--threads", "4", "--proxy-protocol", "v2")),
        Variant("pyproxyproto", "`-k pyproxyproto.gunicorn.ThreadWorker`",
                _gunicorn("pyproxyproto.gunicorn.ThreadWorker", "--threads", "4")),
    )),
    Server("daphne", "daphne", "daphne", ("daphne", "twisted"), (
        Variant("none", "`-e tcp:` (no PROXY)", _daphne("tcp:{port}:interface={host}")),
        Variant("own", "Twisted's own `-e haproxy:tcp:`",
                _daphne("haproxy:tcp:{port}:interface={host}")),
        Variant("pyproxyproto", "`-e pyproxyproto:tcp:`",
                _daphne("pyproxyproto:tcp:port={port}:interface={host}:trusted=" + TRUSTED)),
    )),
    Server("uvicorn", "uvicorn --http httptools", "uvicorn", ("uvicorn", "httptools"), (
        Variant("none", "no PROXY (uvicorn has no PROXY support)", _uvicorn("httptools")),
        Variant("pyproxyproto", "`--http pyproxyproto.uvicorn:HttpToolsProtocol`",
                _uvicorn("pyproxyproto.uvicorn:HttpToolsProtocol"),
                {"PYPROXYPROTO_TRUSTED": TRUSTED}),
    )),
)
BY_KEY = {server.key: server for server in SERVERS}


def missing(server: Server) -> str | None:
    """Why this server cannot run here, or None."""
    for module in server.modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def version(server: Server) -> str:
    try:
        return metadata.version(server.dist)
    except metadata.PackageNotFoundError:
        return "?"


# -- CPU of a process tree -----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def tree_cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU so far, summed over every thread of every
    process in the tree under ``pid`` (/proc/PID/task/TID/schedstat)."""
    total = 0
    for p in _tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return total


def check_proc() -> str | None:
    """Why the server CPU cannot be read here, or None."""
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat"):
        return "/proc/PID/task/TID/schedstat is missing (Linux with schedstats needed)"
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        return "/proc/PID/task/TID/children is missing (Linux with CONFIG_PROC_CHILDREN needed)"
    return None


# -- one server process --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Running:
    """One server variant, started in its own session, output to a log file."""

    def __init__(self, server: Server, variant: Variant, cpus: list[int] | None,
                 log_dir: str, prefix: tuple[str, ...] = ()) -> None:
        self.server, self.variant = server, variant
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYPROXYPROTO_")}
        env.update(variant.env)
        env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
        self.log_path = os.path.join(log_dir, f"{server.key}-{variant.support}.log")
        self.log = open(self.log_path, "wb")
        self.command = [*prefix, sys.executable, *variant.argv(self.port)]
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=None if cpus is None else partial(os.sched_setaffinity, 0, cpus))

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def _loadgen(exe: str, run: Running, duration: float, max_conns: int, threads: int,
             concurrency: int, cpus: list[int] | None) -> dict[str, Any]:
    from .cases import BY_KEY as CASES
    case = CASES["v2_ipv4"]
    header = case.header if run.variant.header else b""
    host = case.source[0] if run.variant.header else HOST
    cmd = [exe, str(run.port), str(threads), str(concurrency), str(duration), str(max_conns),
           (header + REQUEST).hex(), STATUS.hex(), (b"\r\n\r\n" + host.encode()).hex()]
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, timeout=duration + 60, check=True,
        preexec_fn=None if cpus is None else partial(os.sched_setaffinity, 0, cpus))
    return json.loads(proc.stdout)


def _wait_ready(exe: str, run: Running, cpus: list[int] | None, timeout: float = 60) -> None:
    """Until the server answers every connection of a short burst correctly."""
    deadline = time.monotonic() + timeout
    while True:
        if run.proc.poll() is not None:
            raise RuntimeError(f"{run.server.label} ({run.variant.label}) exited: "
                               f"{run.output()}")
        result = _loadgen(exe, run, 1.0, 20, 1, 1, cpus)
        if result["count"] == 20 and not result["errors"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{run.server.label} ({run.variant.label}) did not answer "
                               f"correctly: {result['first_error']}; its output:\n{run.output()}")
        time.sleep(0.2)


def _measure(exe: str, run: Running, duration: float, opts: dict[str, Any]) -> dict[str, Any]:
    cpu0 = tree_cpu_ns(run.proc.pid)
    result = _loadgen(exe, run, duration, opts["max_conns"], opts["threads"],
                      opts["concurrency"], opts["client_cpus"])
    cpu1 = tree_cpu_ns(run.proc.pid)
    result["server_cpu_s"] = (cpu1 - cpu0) / 1e9
    return result


# -- rounds --------------------------------------------------------------------------------


def cpu_split() -> dict[str, list[int]] | None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {"server": cpus[:1], "client": cpus[1:]}


def _stats(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def run_server(server: Server, rounds: int, duration: float, opts: dict[str, Any],
               tick: Callable[[str], None] = lambda note: None) -> dict[str, Any]:
    """Every variant of one server, ``rounds`` interleaved rounds."""
    from .accept_loop import build_loadgen
    exe = build_loadgen()
    pin = opts["pin"]
    runs: dict[str, list[dict[str, Any]]] = {v.support: [] for v in server.variants}
    commands: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pyproxyproto-bench-") as log_dir:
        started: list[Running] = []
        try:
            for variant in server.variants:
                run = Running(server, variant, pin and pin["server"], log_dir)
                started.append(run)
                commands[variant.support] = " ".join(["python", *variant.argv("PORT")])
            for run in started:
                _wait_ready(exe, run, opts["client_cpus"])
                _measure(exe, run, min(0.5, duration), opts)  # warm-up
            for n in range(rounds):
                order = started[n % len(started):] + started[:n % len(started)]
                for run in order:
                    tick(f"{server.key} round {n + 1}/{rounds}")
                    runs[run.variant.support].append(_measure(exe, run, duration, opts))
            for run in started:
                if run.proc.poll() is not None:
                    raise RuntimeError(f"{server.label} ({run.variant.label}) exited during "
                                       f"the run: {run.output()}")
        finally:
            for run in started:
                run.stop()
    variants = []
    for variant in server.variants:
        rs = runs[variant.support]
        variants.append({
            "support": variant.support, "label": variant.label,
            "command": commands[variant.support], "header": variant.header,
            "conns_per_s": _stats([r["count"] / r["elapsed_s"] for r in rs]),
            "cpu_us_per_conn": _stats([r["server_cpu_s"] / max(r["count"], 1) * 1e6 for r in rs]),
            "busy": statistics.median(r["server_cpu_s"] / r["elapsed_s"] for r in rs),
            "connections": sum(r["count"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "first_error": next((r["first_error"] for r in rs if r["first_error"]), ""),
        })
    result: dict[str, Any] = {"key": server.key, "label": server.label,
                              "version": version(server), "variants": variants,
                              "ratios": {}}
    # Per-round ratios of pyproxyproto to each other form of the same server.
    ours = runs.get("pyproxyproto")
    for other in ("own", "none"):
        if ours and runs.get(other):
            kept = [(o["count"] / o["elapsed_s"]) / (b["count"] / b["elapsed_s"])
                    for o, b in zip(ours, runs[other])]
            cpu = [(o["server_cpu_s"] / o["count"]) / (b["server_cpu_s"] / b["count"])
                   for o, b in zip(ours, runs[other]) if o["count"] and b["count"]
                   and b["server_cpu_s"]]
            result["ratios"][other] = {"conns_per_s": _stats(kept), "cpu_per_conn": _stats(cpu)}
    if runs.get("own") and runs.get("none"):
        own, none = runs["own"], runs["none"]
        result["ratios"]["own_vs_none"] = {
            "conns_per_s": _stats([(o["count"] / o["elapsed_s"]) / (b["count"] / b["elapsed_s"])
                                   for o, b in zip(own, none)]),
            "cpu_per_conn": _stats([(o["server_cpu_s"] / o["count"]) /
                                    (b["server_cpu_s"] / b["count"])
                                    for o, b in zip(own, none) if o["count"] and b["count"]
                                    and b["server_cpu_s"]])}
    return result


def run(servers: list[str] | None = None, rounds: int = 5, duration: float = 2.0,
        concurrency: int = 8, threads: int = 2, max_conns: int = 1_000_000, pin: bool = True,
        progress: Any = None) -> dict[str, Any]:
    """Every server that can run here; the ones that cannot are listed with the reason."""
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is needed to build the load generator (bench/loadgen.c)")
    reason = check_proc()
    if reason:
        raise RuntimeError(reason)
    split = cpu_split() if pin else None
    opts = {"pin": split, "client_cpus": split and split["client"], "threads": threads,
            "concurrency": concurrency, "max_conns": max_conns}
    chosen = [BY_KEY[key] for key in servers] if servers else list(SERVERS)
    result: dict[str, Any] = {
        "rounds": rounds, "duration_s": duration, "concurrency": concurrency,
        "threads": threads, "pin": split, "request": REQUEST.decode(), "servers": [],
        "absent": {},
    }
    total = sum(len(s.variants) for s in chosen if not missing(s)) * rounds
    done = 0

    def tick(note: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, note)
        done += 1

    for server in chosen:
        why = missing(server)
        if why:
            result["absent"][server.key] = why
            continue
        result["servers"].append(run_server(server, rounds, duration, opts, tick))
    if progress is not None:
        progress(total, total, "")
    return result


# -- instructions per connection -----------------------------------------------------------


def check_count() -> str | None:
    """Why instructions cannot be counted here, or None."""
    for tool in ("valgrind", "callgrind_control", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is needed to count instructions (apt-get install valgrind gcc)"
    return check_proc()


def _dumped_instructions(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"callgrind wrote no total to {path}")


def _control(command: str, pids: list[str]) -> None:
    done = subprocess.run(["callgrind_control", command, *pids], capture_output=True,
                          text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"callgrind_control {command} failed: {done.stdout}{done.stderr}")


def count_variant(exe: str, server: Server, variant: Variant, conns: int, warm: int) -> int:
    """User-space instructions of the server's whole process tree over
    ``conns`` connections made one at a time, after ``warm`` of them."""
    with tempfile.TemporaryDirectory(prefix="pyproxyproto-count-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # Every process of the tree (gunicorn's arbiter and worker) runs under
        # callgrind; its counts are zeroed after the warm-up and dumped after
        # the counted connections, so start-up and warm-up are left out.
        run = Running(server, variant, None, tmp, prefix=(
            "valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--callgrind-out-file={out}.%p"))
        try:
            _wait_ready(exe, run, None, timeout=300)
            _loadgen(exe, run, 600, warm, 1, 1, None)
            pids = [str(pid) for pid in _tree(run.proc.pid)]
            _control("--zero", pids)
            result = _loadgen(exe, run, 600, conns, 1, 1, None)
            if result["count"] != conns or result["errors"]:
                raise RuntimeError(f"{server.label} ({variant.label}) under callgrind: "
                                   f"{result['count']} of {conns} connections, "
                                   f"{result['errors']} failed: {result['first_error']}")
            _control("--dump", pids)
        finally:
            run.stop()
        dumps = [os.path.join(tmp, name) for name in os.listdir(tmp)
                 if name.startswith("callgrind.out.") and name.count(".") == 3]
        if len(dumps) != len(pids):
            raise RuntimeError(f"callgrind dumped {len(dumps)} files for {len(pids)} processes")
        return sum(_dumped_instructions(path) for path in dumps)


def count(servers: list[str] | None = None, conns: int = 1000, warm: int = 300,
          progress: Any = None) -> dict[str, Any]:
    """Instructions per connection of every form of each server that can run here."""
    reason = check_count()
    if reason:
        raise RuntimeError(reason)
    from .accept_loop import build_loadgen
    exe = build_loadgen()
    chosen = [BY_KEY[key] for key in servers] if servers else list(SERVERS)
    result: dict[str, Any] = {"conns": conns, "warm": warm, "servers": [], "absent": {}}
    total = sum(len(s.variants) for s in chosen if not missing(s))
    done = 0
    for server in chosen:
        why = missing(server)
        if why:
            result["absent"][server.key] = why
            continue
        variants = []
        for variant in server.variants:
            if progress is not None:
                progress(done, total, f"{server.key} {variant.support} under callgrind")
            instructions = count_variant(exe, server, variant, conns, warm)
            variants.append({"support": variant.support, "label": variant.label,
                             "instructions_per_conn": instructions / conns})
            done += 1
        per = {v["support"]: v["instructions_per_conn"] for v in variants}
        ratios = {other: per["pyproxyproto"] / per[other]
                  for other in ("own", "none") if other in per and "pyproxyproto" in per}
        result["servers"].append({"key": server.key, "label": server.label,
                                  "version": version(server), "variants": variants,
                                  "ratios": ratios})
    if progress is not None:
        progress(total, total, "")
    return result


def format_count(result: dict[str, Any]) -> str:
    lines = [f"server instructions per connection (callgrind, {result['conns']:,} connections "
             f"one at a time, after {result['warm']:,})",
             f"{'server':34} {'PROXY support':48} {'Ir/conn':>10}  ratio"]
    for s in result["servers"]:
        for v in s["variants"]:
            ratio = ""
            if v["support"] == "pyproxyproto":
                ratio = ", ".join(f"{r:.3f}x {other}" for other, r in s["ratios"].items())
            lines.append(f"{s['label']:34} {v['label'][:48]:48} "
                         f"{v['instructions_per_conn']:10,.0f}  {ratio}")
    for key, why in result["absent"].items():
        lines.append(f"{key}: not run: {why}")
    return "\n".join(lines)


def errors(result: dict[str, Any]) -> int:
    return sum(v["errors"] for s in result["servers"] for v in s["variants"])


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'server':34} {'PROXY support':48} {'conn/s':>14} {'CPU us/conn':>16}  errors"]
    for s in result["servers"]:
        for v in s["variants"]:
            c, u = v["conns_per_s"], v["cpu_us_per_conn"]
            lines.append(f"{s['label']:34} {v['label'][:48]:48} {c['median']:7,.0f} "
                         f"({c['min']:,.0f}-{c['max']:,.0f}) {u['median']:6.1f} "
                         f"({u['min']:.0f}-{u['max']:.0f})  {v['errors']}")
        for other, r in s["ratios"].items():
            if other == "own_vs_none":
                continue
            k, p = r["conns_per_s"], r["cpu_per_conn"]
            lines.append(f"{'':34} pyproxyproto / {other:33} {k['median']:.3f} "
                         f"({k['min']:.3f}-{k['max']:.3f}) conn/s, {p['median']:.3f} "
                         f"({p['min']:.3f}-{p['max']:.3f}) CPU/conn")
    for key, why in result["absent"].items():
        lines.append(f"{key}: not run: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    p.add_argument("--servers", help="comma-separated: " + ",".join(BY_KEY))
    p.add_argument("--concurrency", type=int, default=8, help="connections in flight (8)")
    p.add_argument("--threads", type=int, default=2, help="load generator threads (2)")
    p.add_argument("--no-pin", action="store_true",
                   help="let the scheduler place server and load generator")
    p.add_argument("--count", type=int, metavar="N",
                   help="instead of timing: count each form's instructions per connection "
                        "over N connections under callgrind (valgrind)")
    p.add_argument("--json", help="write the result here")
    a = p.parse_args(argv)
    from .machine import stamp
    from .progress import Progress
    bar = Progress("servers", 1)

    def progress(done: int, total: int, note: str) -> None:
        bar.total = total
        bar.update(done, note)

    chosen = a.servers.split(",") if a.servers else None
    if a.count:
        result = count(chosen, a.count, progress=progress)
    else:
        result = run(chosen, a.rounds, a.duration, a.concurrency, a.threads,
                     pin=not a.no_pin, progress=progress)
    bar.finish()
    result["measured"] = stamp()
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    print(format_count(result) if a.count else format_table(result))
    return 0 if a.count else 1 if errors(result) else 0


if __name__ == "__main__":
    sys.exit(main())
