"""Turn the benchmark results into REPORT.md and its charts.

Inputs, all in one folder (what ``python -m bench`` writes there):
  env.json           the run: command, date, machine, steps run, peers' versions and probes
  servers.json       bench.servers: real servers against their own PROXY support
  accept.json        bench.accept_loop: asyncio and uvloop servers, plain and wrapped
  accept_count.json  bench.accept_loop count: server instructions per connection
  servers_count.json bench.servers --count: real servers' instructions per connection
  parse.json         pytest-benchmark over bench/test_parse.py
  rotating.json      bench.rotating: parsing with a new source per header
  callgrind.json     bench.callgrind: instructions per parse
Every result file carries a ``measured`` stamp; a section whose file comes
from another run than env.json's says when and where it was measured.
Charts: servers.png (what PROXY support costs a real server) and parse.png.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .cases import CASES, ROTATING_SPECS
from .machine import describe
from .peers import EMPTY, FLOOR, IMPLS, ROTATING_IMPLS

# Which rows the parse chart shows (the rest are in the tables).
CHART_IMPLS = ("cython", "cython_addresses", "python_addresses", "proxy_protocol",
               "proxy_protocol_reader", "gunicorn", "twisted", "object_floor", FLOOR, EMPTY)
SPEEDUP_OURS = (("cython_source", "Cython"), ("python_source", "Python"))
SUPPORT_ORDER = ("none", "own", "pyproxyproto")


def load(directory: str) -> dict[str, Any]:
    def read(name: str) -> Any:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    parse = read("parse.json") or {"benchmarks": []}
    medians: dict[tuple[str, str], float] = {}
    for b in parse["benchmarks"]:
        medians[(b["extra_info"]["case"], b["extra_info"]["impl"])] = b["stats"]["median"] * 1e9
    return {
        "medians": medians,
        "parse": parse if parse["benchmarks"] else None,
        "options": parse["benchmarks"][0]["options"] if parse["benchmarks"] else {},
        "passes": parse.get("passes", 1),
        "servers": read("servers.json"),
        "accept": read("accept.json"),
        "accept_count": read("accept_count.json"),
        "servers_count": read("servers_count.json"),
        "rotating": read("rotating.json"),
        "callgrind": read("callgrind.json"),
        "env": read("env.json") or {},
    }


# -- formatting ----------------------------------------------------------------------------


def _ns(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 10000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.0f} ns"


def _x(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def _spread(stats: dict[str, Any], fmt: str, unit: str = "") -> str:
    """median (min–max of the single rounds)."""
    return (f"{format(stats['median'], fmt)}{unit} ({format(stats['min'], fmt)}–"
            f"{format(stats['max'], fmt)})")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or ("---" + "|---:" * (len(header) - 1))
    return [_row(header), "|" + align + "|", *(_row(r) for r in rows), ""]


def _origin(result: dict[str, Any] | None, env: dict[str, Any]) -> str | None:
    """None when the result comes from the run that env.json describes; else
    a sentence saying when and where it was measured."""
    measured = (result or {}).get("measured")
    if measured and env.get("run") and measured.get("run") == env["run"]:
        return None
    return f"*Not from the run above: {describe(measured)}.*"


def _subsection(title: str, result: dict[str, Any] | None, env: dict[str, Any],
                level: str = "###") -> list[str]:
    """A heading, and where its figures come from when not from this run."""
    note = _origin(result, env)
    return [f"{level} {title}", "", *([note, ""] if note else [])]


def _section(lines: list[str], title: str, result: dict[str, Any] | None,
             env: dict[str, Any]) -> None:
    lines += _subsection(title, result, env, "##")


# -- servers -------------------------------------------------------------------------------


def _servers_count(count: dict[str, Any], env: dict[str, Any]) -> list[str]:
    lines = _subsection("Instructions per connection (callgrind)", count, env)
    lines += [
        "Free of the machine's noise, where single timed rounds above can differ by tens of "
        "percent: `python -m bench.servers --count N` runs each form under valgrind's "
        f"callgrind (every process of the tree), serves {count['warm']:,} connections, then "
        f"counts the user-space instructions of the whole tree over {count['conns']:,} more, "
        "made one at a time. The kernel's work is not in it.", ""]
    rows = []
    for s in count["servers"]:
        for v in s["variants"]:
            ratio = ""
            if v["support"] == "pyproxyproto":
                ratio = ", ".join(f"**{r:.2f}×** {'its own' if other == 'own' else 'no PROXY'}"
                                  for other, r in s["ratios"].items())
            rows.append([s["label"] if v is s["variants"][0] else "", v["label"],
                         f"{v['instructions_per_conn']:,.0f}", ratio])
    lines += _table(["server", "PROXY support", "instructions per connection",
                     "pyproxyproto against"], rows, "---|---|---:|---:")
    for key, why in count.get("absent", {}).items():
        lines += [f"*{key}: not counted: {why}.*", ""]
    return lines


def _servers_section(srv: dict[str, Any], env: dict[str, Any],
                     count: dict[str, Any] | None = None) -> list[str]:
    lines: list[str] = []
    _section(lines, "What PROXY support costs a real server", srv, env)
    pin = ("the server pinned to one CPU and the load generator to the other"
           if srv.get("pin") else "server and load generator placed by the scheduler")
    lines += [
        "Each server runs as its users start it, one process, serving an app that answers "
        "with the client address the server gave it. The load generator (`bench/loadgen.c`, "
        f"another process, {srv['threads']} threads, {srv['concurrency']} connections in "
        "flight) opens a connection, sends a PROXY v2 header (none to the server without "
        "PROXY) and an HTTP/1.1 request with `Connection: close` in one write, and reads the "
        "reply to EOF; a reply that is not a 200 naming the header's client counts as an "
        "error. Server CPU is that of the server's whole process tree (every process and "
        "thread), from /proc, over the connections it served. "
        f"The forms of one server run in {_count(srv['rounds'], 'interleaved round')} of "
        f"{srv['duration_s']:g} s, {pin}; each figure is the median of the rounds, with the "
        "lowest and highest single round in brackets, and each ratio is taken within a round.",
        "",
    ]
    rows = []
    for s in srv["servers"]:
        variants = {v["support"]: v for v in s["variants"]}
        for support in SUPPORT_ORDER:
            v = variants.get(support)
            if v is None:
                continue
            against = cpu_against = ""
            if support == "pyproxyproto":
                ref = "own" if "own" in s["ratios"] else "none"
                r = s["ratios"].get(ref)
                if r:
                    against = (_spread(r["conns_per_s"], ".2f", "×")
                               + ("" if ref == "own" else " (against no PROXY)"))
                    cpu_against = (_spread(r["cpu_per_conn"], ".2f", "×")
                                   + ("" if ref == "own" else " (against no PROXY)"))
            elif support == "own":
                against = cpu_against = "1 (reference)"
            errors = f", **{v['errors']} failed**" if v["errors"] else ""
            rows.append([s["label"] if support == s["variants"][0]["support"] else "",
                         v["label"], _spread(v["conns_per_s"], ",.0f"),
                         _spread(v["cpu_us_per_conn"], ",.0f", " µs") + errors,
                         against, cpu_against])
    lines += _table(["server", "PROXY support", "connections/s", "server CPU per connection",
                     "connections/s against its own PROXY support",
                     "CPU per connection against its own PROXY support"], rows,
                    "---|---|---:|---:|---:|---:")
    summary = []
    for s in srv["servers"]:
        variants = {v["support"]: v for v in s["variants"]}
        r = s["ratios"].get("own")
        ours = variants.get("pyproxyproto")
        if r and ours and "own" in variants:
            summary.append(
                f"- **{s['label']}** with {ours['label']} serves "
                f"{r['conns_per_s']['median']:.2f}× the connections per second of "
                f"{variants['own']['label']} and spends {r['cpu_per_conn']['median']:.2f}× its "
                f"CPU per connection.")
        elif ours and s["ratios"].get("none"):
            n = s["ratios"]["none"]
            summary.append(
                f"- **{s['label']}** has no PROXY support of its own: with {ours['label']} it "
                f"serves {n['conns_per_s']['median']:.2f}× the connections per second of the "
                f"server without PROXY and spends {n['cpu_per_conn']['median']:.2f}× its CPU "
                f"per connection.")
    if summary:
        lines += summary + [""]
    gaps = []
    for key, name in (("gunicorn", "gunicorn's own reader"), ("twisted", "Twisted's")):
        failed = [n for n, ok in env.get("probes", {}).get(key, {}).items()
                  if ok is False and n != "TLVs parsed"]
        if failed:
            gaps.append(f"{name} fails these probes: " + ", ".join(failed))
    if gaps:
        lines += [
            "What the servers' own PROXY readers leave out, from *What each parser checks* "
            "below: " + "; ".join(gaps) + ". pyproxyproto passes every probe, bounds the "
            "whole header read by a timeout and a size limit, and applies its policy "
            "(trusted networks, what to do with the others).", ""]
    for key, why in srv.get("absent", {}).items():
        lines += [f"*{key}: not measured: {why}.*", ""]
    if count and count.get("servers"):
        lines += _servers_count(count, env)
    if os.path.exists(os.path.join(srv.get("_dir", ""), "servers.png")):
        lines += ["![server CPU per connection and connections per second](servers.png)", ""]
    return lines


def servers_chart(srv: dict[str, Any], path: str) -> bool:
    """Two panels, one bar per server form with its round range: CPU per
    connection and connections per second."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not srv or not srv.get("servers"):
        return False
    labels = {"none": "no PROXY", "own": "its own PROXY support", "pyproxyproto": "pyproxyproto"}
    colors = {"none": "#9e9e9e", "own": "#ff9800", "pyproxyproto": "#1976d2"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.75 * len(srv["servers"]) * 2), dpi=110)
    height = 0.8 / len(SUPPORT_ORDER)
    for ax, key, title in ((axes[0], "cpu_us_per_conn", "server CPU per connection (µs) — "
                            "shorter is cheaper"),
                           (axes[1], "conns_per_s", "connections per second — longer is "
                            "faster")):
        seen = set()
        for si, s in enumerate(srv["servers"]):
            for vi, support in enumerate(SUPPORT_ORDER):
                v = next((v for v in s["variants"] if v["support"] == support), None)
                if v is None:
                    continue
                st = v[key]
                y = si + vi * height
                ax.barh(y, st["median"], height=height * 0.9, color=colors[support],
                        xerr=[[st["median"] - st["min"]], [st["max"] - st["median"]]],
                        capsize=2, label=None if support in seen else labels[support])
                seen.add(support)
                ax.text(st["max"] * 1.02, y, f"{st['median']:,.0f}", va="center", fontsize=7)
        ax.set_yticks([si + height for si in range(len(srv["servers"]))])
        ax.set_yticklabels([s["label"] for s in srv["servers"]], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        xmin, xmax = ax.get_xlim()
        ax.set_xlim(0, xmax * 1.15)
    axes[1].set_yticklabels([])
    axes[0].legend(loc="upper center", bbox_to_anchor=(1.0, -0.08), ncol=3, fontsize=8,
                   frameon=False)
    fig.suptitle("What PROXY support costs a real server (median, whiskers: range of rounds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# -- accept loop ---------------------------------------------------------------------------


def _accept_section(acc: dict[str, Any], count: dict[str, Any] | None,
                    env: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    _section(lines, "asyncio and uvloop servers: plain and wrapped by `pyproxyproto.aio`",
             acc, env)
    lines += [
        f"Each connection sends a PROXY v2 header and a small request "
        f"({acc['request_bytes']} bytes, one write) to 127.0.0.1, reads the reply to EOF and "
        f"checks that it names the client the server saw. Load generator: `bench/loadgen.c` "
        f"in another process, {acc['threads']} threads, {acc['concurrency']} connections in "
        f"flight. Each round runs the plain server and the wrapped one back to back "
        f"(alternating which goes first), {acc['duration_s']:g} s or {acc['max_conns']:,} "
        f"connections each; {_count(acc['rounds'], 'round')}. Server CPU per connection is the server "
        f"process's user + system time over its connections; the ratio wrapped / plain is "
        f"taken within each round: median, and the range of the single rounds. "
        + ("The server runs pinned to one CPU, the load generator to the other. "
           if acc.get("pin") else "")
        + "Busy: the server's CPU time over the run's wall time.", ""]
    rows = []
    for loop_name, kinds in acc["loops"].items():
        for kind, s in kinds.items():
            for i, side in enumerate(("plain", "wrapped")):
                m = s[side]
                ratio = ""
                if i:
                    ratio = (f"**{s['cpu_ratio']:.2f}×** ({min(s['cpu_ratio_runs']):.2f}–"
                             f"{max(s['cpu_ratio_runs']):.2f})")
                rows.append([loop_name, f"`{acc['pairs'][kind][i]}`", f"{m['conns_per_s']:,.0f}",
                             f"{m['server_cpu_us_per_conn']:,.1f} µs", ratio,
                             f"{m['server_busy']:.2f}", f"{m['connections']:,}",
                             str(m["errors"])])
    lines += _table(["loop", "server", "connections/s", "server CPU per connection",
                     "wrapped / plain CPU", "busy", "connections", "errors"], rows)
    if count and "loops" in count:
        lines += _subsection("Server instructions per connection (callgrind)", count, env)
        lines += [
            f"Free of the machine's noise: `python -m bench.accept_loop count` runs each "
            f"server under callgrind with {count['conns']:,} and {3 * count['conns']:,} "
            f"connections made one at a time, and divides the difference by "
            f"{2 * count['conns']:,} (start-up cancels out). User space only: the kernel's "
            f"work, the same system calls on both sides, is not counted.", ""]
        rows = []
        pairs = acc["pairs"]
        for loop_name, kinds in count["loops"].items():
            for kind, c in kinds.items():
                rows.append([loop_name, f"`{pairs[kind][1]}`", f"{c['plain']:,.0f}",
                             f"{c['wrapped']:,.0f}", f"{c['extra']:+,.0f}",
                             f"{c['ratio']:.2f}×"])
        lines += _table(["loop", "server", "plain", "wrapped", "extra", "wrapped / plain"],
                        rows)
    return lines


# -- parse ---------------------------------------------------------------------------------


def _parse_section(data: dict[str, Any], env: dict[str, Any]) -> list[str]:
    med = data["medians"]
    lines: list[str] = []
    lines += ["## Parsing one header", ""]
    present = [impl for impl in IMPLS if any((c.key, impl.key) in med for c in CASES)]
    if data["parse"]:
        lines += _subsection("The same header again and again", data["parse"], env)
        lines += [
            "Median time per call. Each header is followed by 100 payload bytes. *+ .source "
            "+ .destination* rows also read both addresses, as every server does (the Cython "
            "backend builds them on first read); those rows and the empty call pay one Python "
            "function call more than a bare `parse`. In brackets: the ratio to "
            "`struct.unpack_from('!12sBBH', buf)` in the same group. — means the "
            "implementation cannot handle that case (see *What each parser checks*).", ""]
        rows = []
        for impl in present:
            cells = [impl.label]
            for case in CASES:
                value = med.get((case.key, impl.key))
                floor = med.get((case.key, FLOOR))
                if value is None:
                    cells.append("—")
                elif impl.key == FLOOR or not floor:
                    cells.append(_ns(value))
                else:
                    cells.append(f"{_ns(value)} ({_x(value / floor)})")
            rows.append(cells)
        lines += _table(["implementation", *(c.group for c in CASES)], rows)

    rot = data["rotating"]
    if rot and rot.get("cases"):
        lines += _subsection("Real traffic: a new source for every connection", rot, env)
        lines += [
            "Behind a balancer the destination repeats and the sources do not. Each call "
            "parses the next of 4,096 headers that differ only in their source (random "
            "address and port, one destination) and reads `.source` and `.destination`. The "
            "object floor makes the same two address tuples, in C, from a v2 block with the "
            "same addresses, without any check, and reuses the destination tuple while it "
            "repeats, as pyproxyproto does; the empty row is the step to the next header "
            f"alone. Timed in {_count(rot['rounds'], 'interleaved round')} of about a "
            "quarter of a millisecond per implementation (`python -m bench.rotating`): median time per "
            "header, and the ratio to the floor taken within each round: the median, in "
            "brackets the 10th–90th percentiles of the single rounds and their whole range "
            "(a round preempted by other work on the machine lands far out).", ""]
        specs = [spec for spec in ROTATING_SPECS if spec[0] in rot["cases"]]
        rows = []
        for impl_key in ROTATING_IMPLS:
            cells = [next(i.label for i in IMPLS if i.key == impl_key)]
            for key, *_ in specs:
                s = rot["cases"][key]["impls"].get(impl_key)
                if s is None:
                    cells.append("—")
                elif "to_floor" in s:
                    r = s["to_floor"]
                    cells.append(f"{_ns(s['median'])}: **{r['median']:.2f}×** "
                                 f"({r['p10']:.2f}–{r['p90']:.2f}; all rounds "
                                 f"{r['min']:.2f}–{r['max']:.2f})")
                else:
                    cells.append(_ns(s["median"]))
            rows.append(cells)
        lines += _table(["implementation", *(spec[1] for spec in specs)], rows)

    rows = []
    for case in CASES:
        local = case.key == "v2_local"
        ours = med.get((case.key, "cython" if local else "cython_addresses"))
        base = med.get((case.key, FLOOR if local else "object_floor"))
        if ours is None or not base:
            continue
        rows.append([case.group + (" (bare parse)" if local else ""), _ns(ours),
                     _ns(base) + (" (struct)" if local else ""), _x(ours / base)])
    views = med.get(("v2_ipv6_tlvs", "cython_views"))
    addresses = med.get(("v2_ipv6_tlvs", "cython_addresses"))
    if views and addresses:
        rows.append(["every typed view (v2 IPv6 + TLVs)", _ns(views),
                     _ns(addresses) + " (parse + addresses)", _x(views / addresses)])
    if rows:
        lines += [
            "### Against the object floor", "",
            "The object floor (`bench/floor/floor.c`, built at benchmark time) makes the two "
            "address tuples of the case's family from a v2 address block, without any check, "
            "into an object with member slots, and the timed call reads both; LOCAL, which "
            "has no addresses, is held against `struct.unpack_from`. Ours: the Cython "
            "backend, `parse` + `.source` + `.destination`.", ""]
        lines += _table(["case", "pyproxyproto", "floor", "ratio"], rows)

    rows = []
    for impl in present:
        if impl.kind != "peer":
            continue
        cells = [impl.label]
        for case in CASES:
            peer = med.get((case.key, impl.key))
            ours = [med.get((case.key, key)) for key, _ in SPEEDUP_OURS]
            cells.append("—" if peer is None else
                         " / ".join(_x(peer / o) if o else "—" for o in ours))
        rows.append(cells)
    if rows:
        lines += [
            "### Speed-up over the other parsers", "",
            "Their median over ours, with `.source` read (every other parser builds its "
            "addresses at once). Cells: Cython backend / pure-Python backend.", ""]
        lines += _table(["over", *(c.group for c in CASES)], rows)
    if os.path.exists(os.path.join(data.get("_dir", ""), "parse.png")):
        lines += ["![parse time per case, log scale](parse.png)", ""]
    return lines


def _callgrind_section(cg: dict[str, Any], env: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    _section(lines, "Instructions per parse (callgrind)", cg, env)
    lines += [
        f"Timings move with the machine's load, instruction counts do not. `python -m "
        f"bench.callgrind` calls each benchmark's function {cg['iterations']:,} times from C "
        f"under valgrind's callgrind and counts only inside that loop: the call, the parse "
        f"and the reads, what the timings above measure, on the extension as built (stripped "
        f"or not). Ratios are to the object floor of the same row.", ""]
    names = (("cython", "parse"), ("cython_source", "+ .source"),
             ("cython_addresses", "+ .source + .destination"), ("object_floor", "object floor"),
             (FLOOR, "struct.unpack_from"), (EMPTY, "empty call"))
    rows = []
    groups = {c.key: c.group for c in CASES}
    groups.update({spec[0]: spec[1] for spec in ROTATING_SPECS})
    for kind in ("case", "rotating"):
        for key, counts in cg.get(kind, {}).items():
            floor = counts.get("object_floor")
            cells = [groups.get(key, key)]
            for impl, _ in names:
                value = counts.get(impl)
                if value is None:
                    cells.append("—")
                elif impl.startswith("cython") and floor:
                    cells.append(f"{value:,.0f} ({value / floor:.2f}×)")
                else:
                    cells.append(f"{value:,.0f}")
            rows.append(cells)
    lines += _table(["case", *(label for _, label in names)], rows)
    return lines


def _capabilities(env: dict[str, Any], med: dict[tuple[str, str], float]) -> list[str]:
    lines: list[str] = []
    probes = env.get("probes", {})
    if probes:
        lines += [
            "## What each parser checks", "",
            "Each cell is the result of feeding that input to the implementation, driven as "
            "its own server drives it: ✓ = behaves as a strict parser must (accepts the valid "
            "input, rejects the invalid one), ✗ = does not.", ""]
        names: list[str] = []
        for result in probes.values():
            for name in result:
                if name not in names:
                    names.append(name)
        rows = []
        for impl in IMPLS:
            result = probes.get(impl.key)
            if not result or impl.key.endswith(("_source", "_views", "_addresses")):
                continue
            mark = {True: "✓", False: "✗", None: "—"}
            rows.append([impl.label, *(mark[result.get(n)] for n in names)])
        lines += _table(["implementation", *names], rows, "---" + "|:---:" * len(names))
    versions = env.get("versions", {})
    rows = []
    for impl in IMPLS:
        absent = [c.group for c in CASES if (c.key, impl.key) not in med]
        why = env.get("absent", {}).get(impl.key)
        rows.append([impl.label, versions.get(impl.key, impl.version) or "—",
                     env.get("notes", {}).get(impl.key, impl.notes),
                     (", ".join(absent) + (f" ({why})" if why else "")) if absent and med else ""])
    lines += ["## Implementations, versions and limitations", ""]
    lines += _table(["implementation", "version", "what it does / does not do", "absent from"],
                    rows, "---|---|---|---")
    return lines


def _method(data: dict[str, Any], env: dict[str, Any]) -> list[str]:
    opts = data["options"]
    lines = ["## How this was measured, and how to reproduce it", ""]
    if opts:
        lines += [
            "Parse times: pytest-benchmark (`bench/test_parse.py`), one group per header "
            "case; within a group every implementation is timed back to back, the floors and "
            "the empty call included, and every entry is checked once outside the timed loop. "
            f"Rounds of at least {opts.get('min_time', '?')} s (iterations calibrated to it: "
            "shorter than a scheduler time slice, so most rounds run uninterrupted and the "
            f"median ignores the rest), at most {opts.get('max_time', '?')} s and at least "
            f"{opts.get('min_rounds', '?')} rounds per entry, warm-up "
            f"{'on' if opts.get('warmup') else 'off'}, gc off while timing; the whole suite "
            f"ran {_count(data['passes'], 'time')} and each figure is the median of the passes' "
            "medians (`parse.json`, `extra_info.pass_medians_ns`).", ""]
    lines += [
        "How the other parsers are driven: **proxy-protocol** as its asyncio reader does "
        "(*unpack*: only the final call on exactly the header, its most favourable figure; "
        "*reader loop*: the whole read/unpack loop on header + payload, in memory); "
        "**gunicorn**: `Request._handle_proxy_protocol` on the first read, as `Request.parse` "
        "calls it; **Twisted**: what `HAProxyProtocolWrapper.dataReceived` does for a new "
        "connection.", "",
        "Reproduce: `python -m bench` (about 5 minutes) or `python -m bench --full` writes a "
        "folder like this one; each step also runs alone — `python -m bench.servers`, "
        "`python -m bench.servers --count 1000`, `python -m bench.accept_loop`, `python -m bench.accept_loop count`, `python -m "
        "bench.callgrind`, `python -m pytest bench/test_parse.py --benchmark-only` — see "
        "`bench/README.md`. Raw data beside this file: `env.json`, `servers.json`, "
        "`servers_count.json`, `accept.json`, `accept_count.json`, `parse.json`, "
        "`callgrind.json` (those that "
        "exist); `python -m bench --report-only --output DIR` re-renders this file.", ""]
    return lines


# -- the report ----------------------------------------------------------------------------


def render(directory: str) -> str:
    data = load(directory)
    data["_dir"] = directory
    env = data["env"]
    lines: list[str] = ["# pyproxyproto benchmarks", ""]
    if env.get("quick"):
        lines += ["> **Quick smoke run**: every step ran briefly to check that it works; the "
                  "numbers mean nothing.", ""]
    if env:
        steps = env.get("steps", {})
        lines += [f"Made by `{env.get('command', 'python -m bench')}` on {env.get('date', '?')}"
                  f" in {env.get('elapsed_s', 0) / 60:.0f} min."]
        lines += [""]
        for k, label in (("cpu", "Machine"), ("python", "Python"), ("platform", "Platform"),
                         ("pyproxyproto", "pyproxyproto"), ("load", "Load average (1/5/15 min)")):
            if env.get(k):
                lines.append(f"- **{label}:** {env[k]}")
        if steps:
            lines.append(f"- **Steps run:** {', '.join(steps.get('run', [])) or 'none'}"
                         + (f"; left out: {', '.join(steps['skipped'])}" if steps.get("skipped")
                            else "")
                         + (f"; **failed:** " + "; ".join(f"{k} ({v})" for k, v in
                                                           steps["failed"].items())
                            if steps.get("failed") else ""))
        lines.append("")
        for w in env.get("warnings", []):
            lines += [f"> **Warning:** {w}", ""]
    else:
        lines += ["*No env.json: this folder was not written by one `python -m bench` run; "
                  "each section says where it comes from.*", ""]

    srv = data["servers"]
    if srv and srv.get("servers"):
        srv["_dir"] = directory
        lines += _servers_section(srv, env, data["servers_count"])
    if data["accept"] and "loops" in data["accept"]:
        lines += _accept_section(data["accept"], data["accept_count"], env)
    if data["parse"] or data["rotating"]:
        lines += _parse_section(data, env)
    if data["callgrind"] and "case" in data["callgrind"]:
        lines += _callgrind_section(data["callgrind"], env)
    lines += _capabilities(env, data["medians"])
    lines += _method(data, env)
    return "\n".join(lines)


def parse_chart(directory: str, path: str) -> bool:
    """Grouped horizontal bars, log axis. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    data = load(directory)
    med = dict(data["medians"])
    for key, case in ((data["rotating"] or {}).get("cases") or {}).items():
        for impl, stats in case["impls"].items():
            med[(key, impl)] = stats["median"]
    groups = [(c.key, c.group) for c in CASES] + [(s[0], s[1]) for s in ROTATING_SPECS]
    groups = [g for g in groups if any((g[0], i) in med for i in CHART_IMPLS)]
    impls = [i for i in IMPLS if i.key in CHART_IMPLS and any((g[0], i.key) in med
                                                              for g in groups)]
    if not impls:
        return False
    fig, ax = plt.subplots(figsize=(10, 1.6 + 1.7 * len(groups)), dpi=110)
    height = 0.8 / len(impls)
    colors = plt.get_cmap("tab10")
    ticks = []
    labelled = set()
    for gi, (key, _) in enumerate(groups):
        ticks.append(gi + 0.4 - height / 2)
        for ii, impl in enumerate(impls):
            value = med.get((key, impl.key))
            if value is None:
                continue
            y = gi + ii * height
            ax.barh(y, value, height=height * 0.9, color=colors(ii % 10),
                    label=None if impl.key in labelled else impl.label)
            labelled.add(impl.key)
            ax.text(value * 1.05, y, _ns(value), va="center", fontsize=6.5)
    ax.set_xscale("log")
    ax.set_yticks(ticks)
    ax.set_yticklabels([g[1].replace(", ", ",\n") for g in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median time per call (ns, log scale) — shorter is faster")
    ax.set_title("Parsing one header (+ 100 payload bytes)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize=8,
              frameon=False)
    xmin, xmax = ax.get_xlim()
    ax.set_xlim(xmin, xmax * 1.6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def charts(directory: str) -> dict[str, bool]:
    """Draw every chart whose data is in ``directory``: {file name: drawn}."""
    data = load(directory)
    made = {}
    if data["parse"] or data["rotating"]:
        made["parse.png"] = parse_chart(directory, os.path.join(directory, "parse.png"))
    if data["servers"] and data["servers"].get("servers"):
        made["servers.png"] = servers_chart(data["servers"],
                                            os.path.join(directory, "servers.png"))
    return made
