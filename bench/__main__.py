"""``python -m bench``: run the benchmarks and write the report.

  python -m bench                      full run -> bench/results/ (REPORT.md, parse.png, JSON)
  python -m bench --quick --output D   smoke run for CI: tiny rounds, a few seconds,
                                       never judges speed; exits non-zero only if
                                       something fails to run or a check fails
  python -m bench --report-only        re-render REPORT.md and parse.png from the JSON

Run it from the repository root, with the extension built in place
(``python setup.py build_ext --inplace``) or the package installed, and the
``bench`` extra installed (``pip install -e '.[bench]'``); peers that are not
installed are left out of the report, with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# pytest-benchmark settings. Full: short rounds (>= 0.2 ms, iterations
# calibrated to that) - shorter than a scheduler time slice, so that on a
# small machine shared with other work most rounds run uninterrupted and the
# median ignores the rest - about 0.4 s and >= 100 rounds per entry and pass,
# warm-up, gc off while timing. Quick: just enough to run.
FULL = ["--benchmark-min-time=0.0002", "--benchmark-max-time=0.4",
        "--benchmark-min-rounds=100", "--benchmark-warmup=on",
        "--benchmark-warmup-iterations=100000", "--benchmark-disable-gc",
        "--benchmark-timer=time.perf_counter"]
# Full mode runs the whole parse suite this many times (see _run_parse).
PASSES = 3
QUICK = ["--benchmark-min-time=0.00002", "--benchmark-max-time=0.002",
         "--benchmark-min-rounds=3", "--benchmark-warmup=off", "--benchmark-disable-gc",
         "--benchmark-timer=time.perf_counter"]


def _cpu_model() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} logical CPUs"


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _wait_quiet(limit: float, seconds: float) -> None:
    """Wait (at most ``seconds``) until the 1-minute load average drops below ``limit``."""
    end = time.monotonic() + seconds
    while os.getloadavg()[0] >= limit and time.monotonic() < end:
        print(f"bench: waiting for a quieter machine (load {_load()})", flush=True)
        time.sleep(15)


def _environment(quick: bool, argv: list[str]) -> dict[str, Any]:
    sys.path.insert(0, ROOT)
    import pyproxyproto
    from bench.cases import CASES
    from bench.peers import IMPLS, Unsupported, probe

    warnings = []
    try:
        from pyproxyproto import _parser_c
        crc = _parser_c.crc32c_impl()
        so = _parser_c.__file__
        pyx = os.path.join(os.path.dirname(so), "_parser_c.pyx")
        if os.path.exists(pyx) and os.path.getmtime(pyx) > os.path.getmtime(so):
            warnings.append("pyproxyproto/_parser_c.pyx is newer than the built extension: "
                            "rebuild it (python setup.py build_ext --inplace) for current numbers")
    except ImportError:
        crc = "n/a"
        warnings.append("the Cython extension is not built: its rows are missing")
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", "pyproxyproto", "csrc", "setup.py")
    env: dict[str, Any] = {
        "command": "python -m bench" + (" " + " ".join(argv) if argv else ""),
        "quick": quick,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({platform.python_compiler()})",
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "pyproxyproto": f"{pyproxyproto.__version__}, default backend {pyproxyproto.BACKEND}, "
                        f"CRC32C {crc}, commit {commit or '?'}"
                        f"{' + uncommitted changes to the parser' if dirty else ''}",
        "load_start": _load(),
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


def _run_parse(out: str, quick: bool, select: str | None) -> int:
    """Run the parse suite ``passes`` times; parse.json gets, per entry, the
    pass whose median is the median of the passes' medians (so a burst of
    other work on the machine during one pass is outvoted by the others)."""
    json_path = os.path.join(out, "parse.json")
    passes = 1 if quick else PASSES
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = []
    status = 0
    for n in range(passes):
        pass_path = os.path.join(out, f"parse.pass{n + 1}.json")
        cmd = [sys.executable, "-m", "pytest", os.path.join("bench", "test_parse.py"),
               "-q", "-p", "no:cacheprovider", "--benchmark-only",
               f"--benchmark-json={pass_path}", "--benchmark-group-by=group",
               "--benchmark-sort=min", "--benchmark-columns=min,median,iqr,rounds,iterations",
               *(QUICK if quick else FULL)]
        if select:
            cmd += ["-k", select]
        print(f"bench: parse pass {n + 1}/{passes}:", " ".join(cmd), flush=True)
        status = subprocess.run(cmd, cwd=ROOT, env=env).returncode or status
        try:
            with open(pass_path) as f:
                runs.append(json.load(f))
        except (OSError, ValueError):
            pass  # pytest stopped before writing it
        finally:
            if os.path.exists(pass_path):
                os.remove(pass_path)
    if not runs:
        if os.path.exists(json_path):
            os.remove(json_path)
        return status or 1
    data = runs[0]
    by_name: dict[str, list[dict]] = {}
    for run in runs:
        for b in run.get("benchmarks", []):
            by_name.setdefault(b["fullname"], []).append(b)
    merged = []
    for name, entries in by_name.items():
        entries.sort(key=lambda b: b["stats"]["median"])
        chosen = entries[(len(entries) - 1) // 2]
        chosen["extra_info"]["pass_medians_ns"] = [
            round(b["stats"]["median"] * 1e9, 2) for b in entries]
        chosen["stats"].pop("data", None)  # keep the committed JSON small
        chosen.pop("params", None)  # reprs of the case and implementation objects
        merged.append(chosen)
    data["benchmarks"] = merged
    data["passes"] = len(runs)
    data.get("machine_info", {}).get("cpu", {}).pop("flags", None)
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return status


def _write_json(path: str, value: Any) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _render(out: str) -> str:
    sys.path.insert(0, ROOT)
    from bench import report

    png = os.path.join(out, "parse.png")
    if not report.chart(out, png):
        print("bench: matplotlib is not installed (or nothing was measured): no chart",
              file=sys.stderr)
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as f:
        f.write(report.render(out))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke mode for CI: tiny rounds, short accept loop, no callgrind")
    p.add_argument("--output", help="directory for the results (default: bench/results, "
                   "or bench/results-quick with --quick)")
    p.add_argument("--report-only", action="store_true",
                   help="only re-render REPORT.md and parse.png from the JSON in --output")
    p.add_argument("--no-accept", action="store_true", help="skip the accept-loop benchmark")
    p.add_argument("--no-callgrind", action="store_true", help="skip the callgrind counts")
    p.add_argument("-k", dest="select", help="pytest -k expression to run a subset")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-min load average to drop below 0.5")
    a = p.parse_args(argv)

    out = os.path.abspath(a.output or os.path.join(
        HERE, "results-quick" if a.quick else "results"))
    os.makedirs(out, exist_ok=True)
    if a.report_only:
        print(f"bench: wrote {_render(out)}")
        return 0

    if a.wait_quiet:
        _wait_quiet(0.5, a.wait_quiet)
    started = time.monotonic()
    env = _environment(a.quick, argv)
    status = _run_parse(out, a.quick, a.select)

    if not a.no_accept:
        from bench import accept_loop
        print("bench: accept loop ...", flush=True)
        try:
            if a.quick:
                summary = accept_loop.run(duration=0.2, rounds=1, max_conns=200,
                                          concurrency=8)
            else:
                summary = accept_loop.run()
        except Exception as exc:
            print(f"bench: accept loop failed: {exc!r}", file=sys.stderr)
            status = status or 1
        else:
            _write_json(os.path.join(out, "accept.json"), summary)
            if accept_loop.errors(summary):
                status = status or 1

    cg_path = os.path.join(out, "callgrind.json")
    if a.quick or a.no_callgrind:
        if os.path.exists(cg_path):
            os.remove(cg_path)
    else:
        from bench import callgrind
        print("bench: callgrind counts ...", flush=True)
        try:
            counts = callgrind.run()
        except Exception as exc:
            print(f"bench: callgrind failed: {exc!r}", file=sys.stderr)
            counts = None
        if counts is None:
            if os.path.exists(cg_path):
                os.remove(cg_path)
        else:
            _write_json(cg_path, counts)
    count_path = os.path.join(out, "accept_count.json")
    if a.quick or a.no_callgrind or a.no_accept or shutil.which("valgrind") is None:
        if os.path.exists(count_path):
            os.remove(count_path)
    else:
        from bench import accept_loop
        print("bench: accept-loop instruction counts ...", flush=True)
        try:
            _write_json(count_path, accept_loop.count(conns=300,
                                                      loops=accept_loop.available_loops()))
        except Exception as exc:
            print(f"bench: accept-loop counts failed: {exc!r}", file=sys.stderr)
            status = status or 1

    env["load"] = f"{env.pop('load_start')} at the start, {_load()} at the end"
    env["elapsed_s"] = round(time.monotonic() - started, 1)
    _write_json(os.path.join(out, "env.json"), env)
    path = _render(out)
    print(f"bench: wrote {path} in {env['elapsed_s']} s" + (" (quick mode)" if a.quick else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
