"""Parsing real traffic: a new source for every header, against the object floor.

Behind a balancer the destination repeats and the sources do not.  Each
case (``cases.ROTATING_SPECS``: v2 IPv4, v2 IPv6, v1 TCP4) cycles through
4,096 headers that differ only in their source; each call parses the next
one and reads ``.source`` and ``.destination`` (``peers.prepare_rotating``).
The object floor makes the same two tuples in C from a v2 block with the
same addresses and reuses the destination tuple while it repeats.

The implementations are timed in interleaved rounds of about a quarter of a
millisecond each (shorter than a scheduler time slice, so most rounds run
uninterrupted), the order reversed every other round; a ratio to the floor
is taken within each round, and the median, the 10th-90th percentiles and
the range of the single rounds are reported.

Usage: python -m bench.rotating [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

from .cases import ROTATING_KEYS, rotating
from .peers import ROTATING_IMPLS, prepare_rotating

# Calls per round: about a quarter of a millisecond of each, so that on a
# busy machine most rounds run without being preempted.
CALLS = {"cython_addresses": 1024, "python_addresses": 128, "object_floor": 1024,
         "empty": 1024}
WARM_ROUNDS = 3


def _stats(values: list[float]) -> dict[str, Any]:
    """Median, the 10th and 90th percentiles and the extremes of single rounds
    (on a busy machine a preempted round lands far out; the percentiles say
    where most rounds fell)."""
    deciles = (statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1
               else values * 9)
    return {"median": statistics.median(values), "p10": deciles[0], "p90": deciles[-1],
            "min": min(values), "max": max(values)}


def measure(key: str, rounds: int) -> dict[str, Any]:
    rot = rotating(key)
    fns = {}
    for impl in ROTATING_IMPLS:
        bench = prepare_rotating(impl, rot)
        bench.check()
        fns[impl] = bench.fn
    times: dict[str, list[float]] = {impl: [] for impl in fns}
    order = list(fns)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for n in range(WARM_ROUNDS + rounds):
            for impl in (order if n % 2 == 0 else order[::-1]):
                fn, calls = fns[impl], CALLS[impl]
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                elapsed = time.perf_counter() - t0
                if n >= WARM_ROUNDS:
                    times[impl].append(elapsed / calls * 1e9)
    finally:
        if gc_was:
            gc.enable()
    result: dict[str, Any] = {"headers": len(rot.data), "impls": {}}
    floor = times["object_floor"]
    for impl, values in times.items():
        entry = _stats(values)
        if impl not in ("object_floor", "empty"):
            entry["to_floor"] = _stats([v / f for v, f in zip(values, floor)])
        result["impls"][impl] = entry
    return result


def run(rounds: int = 501, progress: Any = None) -> dict[str, Any]:
    """{"rounds": n, "cases": {key: {"impls": {impl: stats (ns), "to_floor": stats}}}}."""
    result: dict[str, Any] = {"rounds": rounds, "calls": CALLS, "cases": {}}
    for i, key in enumerate(ROTATING_KEYS):
        result["cases"][key] = measure(key, rounds)
        if progress is not None:
            progress(i + 1, len(ROTATING_KEYS))
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"ns per header (median of {result['rounds']} interleaved rounds), "
             "ratio to the object floor within a round"]
    for key, case in result["cases"].items():
        for impl, s in case["impls"].items():
            ratio = ""
            if "to_floor" in s:
                r = s["to_floor"]
                ratio = (f"  {r['median']:.3f} x floor (p10-p90 {r['p10']:.3f}-{r['p90']:.3f}, "
                         f"rounds {r['min']:.3f}-{r['max']:.3f})")
            lines.append(f"{key:18} {impl:18} {s['median']:8.1f} ns{ratio}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rotating", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=501, help="interleaved rounds (default 501)")
    p.add_argument("--json", help="write the result here")
    a = p.parse_args(argv)
    result = run(a.rounds)
    if a.json:
        from .machine import stamp
        result["measured"] = stamp()
        with open(a.json, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
