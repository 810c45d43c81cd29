"""``python -m bench``: measure pyproxyproto and write a report.

  python -m bench                   the default run, about 5 minutes, into a new folder
                                    (bench/runs/DATE-TIME/: REPORT.md, charts, JSON)
  python -m bench --full            the long run (about 40 minutes): more rounds and
                                    passes, and the accept loops' and the servers'
                                    instructions per connection
  python -m bench --save            write into bench/results/ (the committed report)
  python -m bench --quick --output D   a smoke run for CI (about a minute): every step
                                    briefly; its numbers mean nothing
  python -m bench --report-only [--output D]   re-render REPORT.md and the charts from
                                    the JSON in D (default bench/results/)

Steps, in the order they run (``--skip`` leaves some out):
  parse      time per parse, ours against the peers and the floors (pytest-benchmark),
             and on rotating sources (bench.rotating)
  servers    real servers (gunicorn, daphne, uvicorn) against their own PROXY support
  accept     asyncio and uvloop servers, plain and wrapped by pyproxyproto.aio
  callgrind  instructions per parse, counted by valgrind (stable on a busy machine);
             with --full, per connection too, of the accept loops and servers measured

Before it starts, every step checks that it can run here; if one cannot (no
valgrind, no compiler, extension not built), the command says why and exits
non-zero without running anything or touching any file.  A step that fails
while running is reported, the others go on, and the command exits non-zero;
its earlier results, if the folder holds any, are left as they were, and the
report says when and where each section was measured.

Run it from the repository root with the extension built in place
(``python setup.py build_ext --inplace``) and the ``bench`` extra installed
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench import machine  # noqa: E402
from bench.progress import Progress  # noqa: E402

STEPS = ("parse", "servers", "accept", "callgrind")
SAVED = os.path.join(HERE, "results")
RUNS = os.path.join(HERE, "runs")

# pytest-benchmark settings per mode.  Rounds are short (>= 0.2 ms, iterations
# calibrated to that): shorter than a scheduler time slice, so on a small
# machine shared with other work most rounds run uninterrupted and the median
# ignores the rest; gc is off while timing.
_TIMER = ["--benchmark-disable-gc", "--benchmark-timer=time.perf_counter"]
PARSE = {
    "quick": (1, ["--benchmark-min-time=0.00002", "--benchmark-max-time=0.002",
                  "--benchmark-min-rounds=3", "--benchmark-warmup=off", *_TIMER]),
    "default": (1, ["--benchmark-min-time=0.0002", "--benchmark-max-time=0.25",
                    "--benchmark-min-rounds=50", "--benchmark-warmup=on",
                    "--benchmark-warmup-iterations=10000", *_TIMER]),
    # Three passes: each figure is the median of the passes' medians.
    "full": (3, ["--benchmark-min-time=0.0002", "--benchmark-max-time=0.4",
                 "--benchmark-min-rounds=100", "--benchmark-warmup=on",
                 "--benchmark-warmup-iterations=100000", *_TIMER]),
}
ROTATING_ROUNDS = {"quick": 5, "default": 501, "full": 2001}
SERVERS = {"quick": {"rounds": 1, "duration": 0.2},
           "default": {"rounds": 7, "duration": 1.5},
           "full": {"rounds": 15, "duration": 2.0}}
ACCEPT = {"quick": {"rounds": 1, "duration": 0.2, "max_conns": 200, "concurrency": 8},
          "default": {"rounds": 5, "duration": 1.0},
          "full": {"rounds": 21, "duration": 2.0}}
CALLGRIND = {"quick": 20, "default": 1000, "full": 4096}
ACCEPT_COUNT_CONNS = 300  # --full only: the accept loop under callgrind
SERVER_COUNT_CONNS = 1000  # --full only: each server form under callgrind


# -- what each step needs ----------------------------------------------------------------


def _extension() -> str | None:
    try:
        import pyproxyproto._parser_c  # noqa: F401
    except ImportError as exc:
        return (f"pyproxyproto's Cython extension is not built ({exc}): "
                "python setup.py build_ext --inplace")
    return None


def _module(name: str, extra: str = "pip install -e '.[bench]'") -> str | None:
    import importlib.util
    if importlib.util.find_spec(name) is None:
        return f"the {name} package is not installed ({extra})"
    return None


def preflight(step: str) -> str | None:
    """Why ``step`` cannot run here, or None."""
    if step == "parse":
        return _module("pytest_benchmark")
    if step in ("servers", "accept"):
        if shutil.which("gcc") is None:
            return "gcc is needed to build the load generator (bench/loadgen.c)"
        if step == "servers":
            from bench import servers
            return servers.check_proc()
        return None
    if step == "callgrind":
        from bench import callgrind
        try:
            callgrind.check_available()
        except callgrind.Unavailable as exc:
            return str(exc)
        return None
    raise ValueError(step)


# -- the steps ---------------------------------------------------------------------------


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)  # a failed write leaves the old file as it was


def run_parse(out: str, mode: str, select: str | None, stamp: dict, bar: Progress) -> int:
    """pytest-benchmark over bench/test_parse.py, then the rotating-sources
    cases (bench.rotating, unless -k selects a subset)."""
    share = 1.0 if select else 0.9
    status = _pytest_parse(out, mode, select, stamp, bar, share)
    if not select:
        from bench import rotating

        def progress(done: int, total: int) -> None:
            bar.update((share + (1 - share) * done / total) * bar.total, "rotating sources")
        result = rotating.run(ROTATING_ROUNDS[mode], progress=progress)
        result["measured"] = stamp
        _write_json(os.path.join(out, "rotating.json"), result)
    return status


def _pytest_parse(out: str, mode: str, select: str | None, stamp: dict, bar: Progress,
                  share: float) -> int:
    """parse.json gets, per entry, the pass whose median is the median of the
    passes' medians."""
    passes, settings = PARSE[mode]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs, status, log = [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(passes):
            pass_path = os.path.join(tmp, f"pass{n + 1}.json")
            cmd = [sys.executable, "-m", "pytest", os.path.join("bench", "test_parse.py"),
                   "-v", "-p", "no:cacheprovider", "--benchmark-only",
                   f"--benchmark-json={pass_path}", "--benchmark-group-by=group",
                   "--benchmark-sort=min",
                   "--benchmark-columns=min,median,iqr,rounds,iterations", *settings]
            if select:
                cmd += ["-k", select]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.append(line)
                m = re.search(r"\[\s*(\d+)%\]\s*$", line)
                if m:
                    bar.update(share * (n + int(m.group(1)) / 100) / passes * bar.total,
                               f"pass {n + 1}/{passes}")
            status = proc.wait() or status
            try:
                with open(pass_path) as f:
                    runs.append(json.load(f))
            except (OSError, ValueError):
                pass  # pytest stopped before writing it
    if status:
        sys.stderr.write("".join(log[-40:]))
    if not runs:
        return status or 1
    data = runs[0]
    by_name: dict[str, list[dict]] = {}
    for run in runs:
        for b in run.get("benchmarks", []):
            by_name.setdefault(b["fullname"], []).append(b)
    merged = []
    for entries in by_name.values():
        entries.sort(key=lambda b: b["stats"]["median"])
        chosen = entries[(len(entries) - 1) // 2]
        chosen["extra_info"]["pass_medians_ns"] = [
            round(b["stats"]["median"] * 1e9, 2) for b in entries]
        chosen["stats"].pop("data", None)  # keep the JSON small
        chosen.pop("params", None)  # reprs of the case and implementation objects
        merged.append(chosen)
    data["benchmarks"] = merged
    data["passes"] = len(runs)
    data.get("machine_info", {}).get("cpu", {}).pop("flags", None)
    data["measured"] = stamp
    _write_json(os.path.join(out, "parse.json"), data)
    return status


def run_servers(out: str, mode: str, stamp: dict, bar: Progress) -> int:
    from bench import servers

    def progress(done: int, total: int, note: str) -> None:
        bar.update(done / max(total, 1) * bar.total, note)

    result = servers.run(progress=progress, **SERVERS[mode])
    result["measured"] = stamp
    _write_json(os.path.join(out, "servers.json"), result)
    for key, why in result["absent"].items():
        print(f"bench: servers: {key} not measured: {why}", file=sys.stderr)
    if servers.errors(result):
        print(f"bench: servers: {servers.errors(result)} connections failed", file=sys.stderr)
        return 1
    return 0


def run_accept(out: str, mode: str, stamp: dict, bar: Progress) -> int:
    from bench import accept_loop

    def progress(done: int, total: int) -> None:
        bar.update(done / max(total, 1) * bar.total)

    summary = accept_loop.run(progress=progress, **ACCEPT[mode])
    summary["measured"] = stamp
    _write_json(os.path.join(out, "accept.json"), summary)
    if accept_loop.errors(summary):
        print(f"bench: accept: {accept_loop.errors(summary)} connections failed",
              file=sys.stderr)
        return 1
    return 0


def run_callgrind(out: str, mode: str, stamp: dict, bar: Progress, steps: list[str]) -> int:
    from bench import accept_loop, callgrind, servers
    # --full also counts the servers' instructions per connection, for the
    # accept and servers steps it runs.
    parts = ["parse"] + ([step for step in ("accept", "servers") if step in steps]
                         if mode == "full" else [])

    def part_progress(index: int, note: str) -> Callable[..., None]:
        def progress(done: int, total: int, *_: Any) -> None:
            bar.update((index + done / max(total, 1)) / len(parts) * bar.total, note)
        return progress

    counts = callgrind.run(CALLGRIND[mode], progress=part_progress(0, "parse counts"))
    counts["measured"] = stamp
    _write_json(os.path.join(out, "callgrind.json"), counts)
    for index, part in enumerate(parts[1:], 1):
        if part == "accept":
            result = accept_loop.count(conns=ACCEPT_COUNT_CONNS,
                                       loops=accept_loop.available_loops(),
                                       progress=part_progress(index, "accept-loop counts"))
            name = "accept_count.json"
        else:
            result = servers.count(conns=SERVER_COUNT_CONNS,
                                   progress=part_progress(index, "server counts"))
            name = "servers_count.json"
        result["measured"] = stamp
        _write_json(os.path.join(out, name), result)
    return 0


# -- the run -----------------------------------------------------------------------------


def _environment(mode: str, argv: list[str], run_id: str) -> dict[str, Any]:
    import pyproxyproto
    from bench.cases import CASES
    from bench.peers import IMPLS, Unsupported, probe

    warnings = []
    try:
        from pyproxyproto import _parser_c
        crc = _parser_c.crc32c_impl()
        so = _parser_c.__file__
        sources = glob.glob(os.path.join(os.path.dirname(so), "_parser_c*.p[yx][xid]"))
        if any(os.path.getmtime(source) > os.path.getmtime(so) for source in sources):
            warnings.append("pyproxyproto/_parser_c's sources are newer than the built extension: "
                            "rebuild it (python setup.py build_ext --inplace) for current numbers")
    except ImportError:
        crc = "n/a"
        warnings.append("the Cython extension is not built: its rows are missing")
    env: dict[str, Any] = {
        "run": run_id,
        "command": "python -m bench" + (" " + " ".join(argv) if argv else ""),
        "mode": mode,
        "quick": mode == "quick",
        "date": machine.now(),
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({platform.python_compiler()})",
        "cpu": machine.cpu_model(),
        "platform": platform.platform(),
        "pyproxyproto": f"{pyproxyproto.__version__}, default backend {pyproxyproto.BACKEND}, "
                        f"CRC32C {crc}, commit {machine.commit()}",
        "load_start": machine.load(),
        "warnings": warnings,
        "versions": {impl.key: impl.version for impl in IMPLS},
        "notes": {impl.key: impl.notes for impl in IMPLS},
        "probes": {},
        "absent": {},
    }
    for impl in IMPLS:
        try:
            env["probes"][impl.key] = probe(impl)
        except Exception as exc:  # a broken peer must not stop the run
            env["probes"][impl.key] = {}
            env["absent"][impl.key] = f"probe failed: {exc!r}"
        reasons = []
        for case in CASES:
            try:
                impl.prepare(case).check()
            except Unsupported as exc:
                reasons.append(str(exc))
            except Exception as exc:
                reasons.append(f"{case.group}: {exc!r}")
        if reasons:
            env["absent"][impl.key] = "; ".join(dict.fromkeys(reasons))
    return env


def render(out: str) -> str:
    """REPORT.md and the charts, from the JSON in ``out``; returns the report's path."""
    from bench import report
    for name, made in report.charts(out).items():
        if not made:
            print(f"bench: no {name} (matplotlib missing, or nothing measured for it)",
                  file=sys.stderr)
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as f:
        f.write(report.render(out))
    return path


def _wait_quiet(limit: float, seconds: float) -> None:
    """Wait (at most ``seconds``) until the 1-minute load average drops below ``limit``."""
    end = time.monotonic() + seconds
    while os.getloadavg()[0] >= limit and time.monotonic() < end:
        print(f"bench: waiting for a quieter machine (load {machine.load()})", flush=True)
        time.sleep(15)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smoke run for CI: every step briefly, numbers meaningless")
    size.add_argument("--full", action="store_true",
                      help="the long run: more rounds and passes, accept-loop counts")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--save", action="store_true",
                       help="write into bench/results/ (the committed report)")
    where.add_argument("--output", metavar="DIR", help="write into DIR")
    p.add_argument("--report-only", action="store_true",
                   help="only re-render REPORT.md and the charts from the JSON in --output "
                        "(default bench/results/)")
    p.add_argument("--skip", action="append", default=[], metavar="STEP",
                   help="leave out a step: " + ", ".join(STEPS) + " (repeat or comma-separate)")
    p.add_argument("-k", dest="select", help="pytest -k expression: a subset of the parse step")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-min load average to drop below 0.5")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full" if a.full else "default"

    if a.report_only:
        out = os.path.abspath(a.output or SAVED)
        print(f"bench: wrote {render(out)}")
        return 0

    skipped = {s.strip() for item in a.skip for s in item.split(",") if s.strip()}
    unknown = skipped - set(STEPS)
    if unknown:
        p.error(f"unknown step(s) {', '.join(sorted(unknown))}; the steps: {', '.join(STEPS)}")
    steps = [s for s in STEPS if s not in skipped]
    blocked = {s: why for s in steps if (why := preflight(s))}
    if blocked:
        for step, why in blocked.items():
            print(f"bench: the {step} step cannot run here: {why}", file=sys.stderr)
        print("bench: nothing was run or written; fix the above, or leave the step out with "
              + " ".join(f"--skip {s}" for s in blocked), file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    run_id = started.strftime("%Y-%m-%d %H:%M:%S UTC")
    if a.save:
        out = SAVED
    elif a.output:
        out = os.path.abspath(a.output)
    else:
        out = os.path.join(RUNS, started.strftime("%Y%m%d-%H%M%S") + ("-" + mode))
    os.makedirs(out, exist_ok=True)
    os.environ["PYPROXYPROTO_BENCH_RUN"] = run_id  # the stamp of every step's results
    if a.wait_quiet:
        _wait_quiet(0.5, a.wait_quiet)
    t0 = time.monotonic()
    print(f"bench: {mode} run of {', '.join(steps)} into {out}", flush=True)
    env = _environment(mode, argv, run_id)
    failed: dict[str, str] = {}
    done: list[str] = []
    seconds: dict[str, float] = {}
    for step in steps:
        stamp = machine.stamp(run_id, env["command"])
        bar = Progress(step, 1.0)
        try:
            if step == "parse":
                status = run_parse(out, mode, a.select, stamp, bar)
            elif step == "servers":
                status = run_servers(out, mode, stamp, bar)
            elif step == "accept":
                status = run_accept(out, mode, stamp, bar)
            else:
                status = run_callgrind(out, mode, stamp, bar, steps)
        except Exception as exc:
            status = 1
            traceback.print_exc()
            failed[step] = f"{type(exc).__name__}: {exc}"
        seconds[step] = round(bar.finish("failed" if status else ""), 1)
        if status and step not in failed:
            failed[step] = "see the messages above"
        if not status:
            done.append(step)
    env["load"] = f"{env.pop('load_start')} at the start, {machine.load()} at the end"
    env["elapsed_s"] = round(time.monotonic() - t0, 1)
    env["steps"] = {"run": done, "failed": failed, "skipped": sorted(skipped),
                    "seconds": seconds}
    _write_json(os.path.join(out, "env.json"), env)
    path = render(out)
    print(f"bench: wrote {path} in {env['elapsed_s']:.0f} s"
          + (" (quick smoke run: the numbers mean nothing)" if mode == "quick" else ""))
    for step, why in failed.items():
        print(f"bench: the {step} step failed: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
