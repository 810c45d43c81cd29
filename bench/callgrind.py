"""Instructions per call of the parse benchmarks, counted by callgrind.

Timings move with the machine's load; instruction counts do not.  One
Python process runs under valgrind's callgrind and, for each entry, calls
the same function the timed benchmark calls, ``n`` times from C
(``repeat`` in ``bench/floor/floor.c``); callgrind counts only inside that
function (``--toggle-collect``) and writes one dump per entry
(``--dump-after``), so a count is the calls' own instructions, the call
included, whatever else the interpreter does.  The symbol counted is the
benchmark's own, so this works on any build of pyproxyproto, stripped or
not.  Counted: the Cython backend's ``parse``, ``+ .source`` and ``+ .source
+ .destination`` on every header case, and on the rotating-sources cases,
beside the object floor, ``struct.unpack_from`` and an empty call.

Needs valgrind and a C compiler (for the floor module); ``run`` raises
``Unavailable`` with the reason when either is missing.

Usage: python -m bench.callgrind [--iterations N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYMBOL = "pp_bench_repeat"  # bench/floor/floor.c
# Counted entries: implementation keys of bench.peers.
CASE_IMPLS = ("cython", "cython_source", "cython_addresses", "object_floor", "floor", "empty")
ROTATING_IMPLS = ("cython_addresses", "object_floor", "empty")


class Unavailable(Exception):
    """This machine cannot count (the reason is the message)."""


# The counted process: warms each entry up, then counts n calls of it.
_CHILD = """
import pickle, sys
sys.path.insert(0, {root!r})
from bench import floor, peers
from bench.cases import BY_KEY
repeat = floor.load().repeat
with open({data!r}, "rb") as f:
    rotating = pickle.load(f)
for kind, key, impl in {entries!r}:
    if kind == "case":
        bench = peers.BY_KEY[impl].prepare(BY_KEY[key])
    else:
        bench = peers.prepare_rotating(impl, rotating[key], checked=64)
    bench.check()
    for _ in range({warm}):
        bench.fn(*bench.args)
    repeat(bench.fn, bench.args, {n})
"""


def entries() -> list[tuple[str, str, str]]:
    """(kind, case key, implementation key) for every counted entry, in order."""
    from .cases import CASES, ROTATING_KEYS
    out = []
    for case in CASES:
        for impl in CASE_IMPLS:
            if impl == "object_floor" and case.source is None:
                continue  # LOCAL has no addresses
            out.append(("case", case.key, impl))
    for key in ROTATING_KEYS:
        out.extend(("rotating", key, impl) for impl in ROTATING_IMPLS)
    return out


def check_available() -> None:
    """Raise Unavailable when this machine cannot count."""
    if shutil.which("valgrind") is None:
        raise Unavailable("valgrind is not installed (Debian: apt-get install valgrind)")
    try:
        import pyproxyproto._parser_c  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"the Cython extension is not built ({exc})") from None
    try:
        from . import floor
        floor.load()
    except Exception as exc:
        raise Unavailable(f"the floor module (bench/floor/floor.c) does not build: {exc}") from None


def run(iterations: int = 4096, progress: Any = None) -> dict[str, Any]:
    """{"iterations": n, "case": {case: {impl: Ir per call}}, "rotating": {...}}.

    ``progress``, when given, is called with (done, total) as dumps appear."""
    check_available()
    from .cases import rotating
    todo = entries()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "rotating.pickle")
        with open(data, "wb") as f:
            pickle.dump({key: rotating(key) for kind, key, _ in todo if kind == "rotating"}, f)
        out = os.path.join(tmp, "cg.out")
        script = _CHILD.format(root=ROOT, data=data, entries=todo, warm=min(iterations, 1000),
                               n=iterations)
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
               f"--toggle-collect={SYMBOL}", f"--dump-after={SYMBOL}",
               f"--callgrind-out-file={out}", sys.executable, "-c", script]
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            while True:
                try:
                    proc.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        progress(len(_dumps(out)), len(todo))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind run failed (status {proc.returncode}):\n"
                               + stderr[-2000:])
        counts = [_summary(path) for path in _dumps(out)]
    if len(counts) != len(todo) or not all(counts):
        raise RuntimeError(f"callgrind wrote {len(counts)} non-empty counts for {len(todo)} "
                           f"entries (was {SYMBOL} inlined or renamed?)")
    if progress is not None:
        progress(len(todo), len(todo))
    result: dict[str, Any] = {"iterations": iterations, "case": {}, "rotating": {}}
    for (kind, key, impl), count in zip(todo, counts):
        result[kind].setdefault(key, {})[impl] = count / iterations
    return result


def _dumps(out: str) -> list[str]:
    """The dump files callgrind has written so far, in order (cg.out.1, .2, ...)."""
    directory, base = os.path.split(out)
    found = []
    for name in os.listdir(directory):
        m = re.fullmatch(re.escape(base) + r"\.(\d+)", name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return [path for _, path in sorted(found)]


def _summary(path: str) -> int:
    with open(path) as f:
        m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 0


def format_counts(result: dict[str, Any]) -> str:
    lines = [f"instructions per call (callgrind, {result['iterations']} calls each)"]
    for kind in ("case", "rotating"):
        for key, impls in result[kind].items():
            floor = impls.get("object_floor")
            parts = []
            for impl, count in impls.items():
                ratio = f" ({count / floor:.2f}x floor)" if floor and impl.startswith("cython") else ""
                parts.append(f"{impl} {count:,.0f}{ratio}")
            lines.append(f"{key:18} " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=4096,
                   help="calls counted per entry (default 4096: one cycle of the rotating cases)")
    p.add_argument("--json", help="write the counts here")
    a = p.parse_args(argv)
    try:
        result = run(a.iterations)
    except Unavailable as exc:
        print(f"bench.callgrind: cannot count on this machine: {exc}", file=sys.stderr)
        return 1
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    print(format_counts(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
