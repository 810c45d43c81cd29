"""Turn the benchmark JSON files into REPORT.md and parse.png.

Inputs, all in one directory (what ``python -m bench`` writes there):
  parse.json      pytest-benchmark's JSON for bench/test_parse.py
  accept.json     bench.accept_loop summary (optional)
  accept_count.json  bench.accept_loop count: instructions per connection (optional)
  callgrind.json  bench.callgrind counts (optional)
  env.json        machine, Python, date, load, peers' versions and probes
"""

from __future__ import annotations

import json
import os
from typing import Any

from .cases import CASES
from .peers import EMPTY, FLOOR, IMPLS

# Targets from the parser's spec (issue 2), for the Cython backend on CPython 3.11.
TARGETS = (
    ("v2 IPv4 <= 1.5x floor", "v2_ipv4", "ratio", 1.5),
    ("v1 TCP4 <= 2.5x floor", "v1_tcp4", "ratio", 2.5),
    ("v2 IPv6 + TLVs <= 3x floor", "v2_ipv6_tlvs", "ratio", 3.0),
    ("CRC32C adds <= 0.5x floor (v2 IPv4 + CRC32C minus v2 IPv4)", "v2_ipv4_crc32c", "crc", 0.5),
    ("v2 LOCAL <= 1.2x floor", "v2_local", "ratio", 1.2),
)
PURE_TARGET_NS = 2500.0

# Which rows the chart shows (the rest are in the tables).
CHART_IMPLS = ("cython", "cython_source", "python", "proxy_protocol", "proxy_protocol_reader",
               "gunicorn", "twisted", FLOOR, EMPTY)

SPEEDUP_OURS = (("cython_source", "Cython"), ("python_source", "Python"))


def load(directory: str) -> dict[str, Any]:
    def read(name: str) -> Any:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    parse = read("parse.json") or {"benchmarks": []}
    medians: dict[tuple[str, str], float] = {}
    spread: dict[tuple[str, str], tuple[float, int, int]] = {}
    for b in parse["benchmarks"]:
        key = (b["extra_info"]["case"], b["extra_info"]["impl"])
        medians[key] = b["stats"]["median"] * 1e9
        spread[key] = (b["stats"]["iqr"] * 1e9, b["stats"]["rounds"], b["stats"]["iterations"])
    return {
        "medians": medians,
        "spread": spread,
        "options": parse["benchmarks"][0]["options"] if parse["benchmarks"] else {},
        "passes": parse.get("passes", 1),
        "accept": read("accept.json"),
        "accept_count": read("accept_count.json"),
        "servers": read("servers.json"),
        "callgrind": read("callgrind.json"),
        "env": read("env.json") or {},
    }


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


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or ("---" + "|---:" * (len(header) - 1))
    return [_row(header), "|" + align + "|", *(_row(r) for r in rows), ""]


# Issue 11: `h = parse(buf); h.source; h.destination` (Cython) over the object
# floor of the case's address family; LOCAL over struct.unpack_from.
FLOOR_TARGETS = {"v2_ipv4": 1.0, "v2_ipv6_tlvs": 1.1, "v2_ipv4_crc32c": 1.2,
                 "v1_tcp4": 1.6, "v1_tcp6": 1.8, "v2_local": 1.0}
VIEWS_TARGET = 2.5
SPEEDUP_TARGETS = (("gunicorn", 12.0), ("proxy_protocol", 30.0))


def object_floor_table(med: dict[tuple[str, str], float]) -> list[list[str]]:
    """Rows: case, ours, floor, ratio, target, verdict (plus the views and peers rows)."""
    rows = []
    for case in CASES:
        # LOCAL has no addresses: bare parse() against the bare struct call
        # (both timed as a direct call, without the wrapper the address rows pay).
        local = case.key == "v2_local"
        ours = med.get((case.key, "cython" if local else "cython_addresses"))
        base_key = FLOOR if local else "object_floor"
        base = med.get((case.key, base_key))
        limit = FLOOR_TARGETS[case.key]
        if ours is None or not base:
            rows.append([case.group, _ns(ours), _ns(base), "—", f"<= {limit:g}×", "not measured"])
            continue
        ratio = ours / base
        rows.append([case.group + (" (bare parse)" if local else ""), _ns(ours),
                     _ns(base) + (" (struct)" if local else ""),
                     f"{ratio:.2f}×", f"<= {limit:g}×", "met" if ratio <= limit else "**missed**"])
    views = med.get(("v2_ipv6_tlvs", "cython_views"))
    addresses = med.get(("v2_ipv6_tlvs", "cython_addresses"))
    if views and addresses:
        ratio = views / addresses
        rows.append(["every typed view (v2 IPv6 + TLVs)", _ns(views), _ns(addresses) + " (parse + addresses)",
                     f"{ratio:.2f}×", f"<= {VIEWS_TARGET:g}×", "met" if ratio <= VIEWS_TARGET else "**missed**"])
    for peer, limit in SPEEDUP_TARGETS:
        worst = None
        for case in CASES:
            theirs = med.get((case.key, peer))
            ours = med.get((case.key, "cython_addresses"))
            if theirs and ours:
                speedup = theirs / ours
                if worst is None or speedup < worst[0]:
                    worst = (speedup, case.group)
        if worst is not None:
            rows.append([f"speed-up over {peer} (worst case: {worst[1]})", "", "",
                         f"{worst[0]:.1f}×", f">= {limit:g}×", "met" if worst[0] >= limit else "**missed**"])
    return rows


def object_floor_section(med: dict[tuple[str, str], float]) -> list[str]:
    out = ["## Against the object floor (Cython: parse + .source + .destination)", "",
           "The object floor (`bench/floor/floor.c`, built at benchmark time) makes the two "
           "address tuples of the case's family from a v2 address block, without validation, "
           "into an object with member slots, and the timed call reads both slots; LOCAL "
           "is held against `struct.unpack_from('!12sBBH')`. Speed-ups are peer / ours "
           "with both addresses read.", ""]
    out += _table(["case", "ours", "floor", "ratio", "target", ""], object_floor_table(med),
                  "---|---:|---:|---:|---:|---")
    return out


def render(directory: str) -> str:
    data = load(directory)
    med = data["medians"]
    env = data["env"]
    lines: list[str] = []
    add = lines.append

    add("# pyproxyproto benchmark report")
    add("")
    add(f"Generated by `{env.get('command', 'python -m bench')}` on {env.get('date', '?')}"
        f"{' — QUICK SMOKE RUN, numbers are not meaningful' if env.get('quick') else ''}.")
    add("")
    for k, label in (("python", "Python"), ("cpu", "CPU"), ("platform", "Platform"),
                     ("pyproxyproto", "pyproxyproto"), ("load", "Load average (1/5/15 min)")):
        if env.get(k):
            add(f"- **{label}:** {env[k]}")
    add("")
    if env.get("warnings"):
        for w in env["warnings"]:
            add(f"> **Warning:** {w}")
        add("")

    # -- parse table -------------------------------------------------------------------
    present = [impl for impl in IMPLS if any((c.key, impl.key) in med for c in CASES)]
    add("## Parse: median time per call (ratio to the floor in the same run)")
    add("")
    add("Each header is followed by 100 payload bytes. Floor: `struct.unpack_from('!12sBBH', buf)`, "
        "measured in each group. *+ .source* rows also read `.source` (the Cython backend builds "
        "address text lazily), *+ all views* rows read every typed view; those rows and the "
        "empty call pay one Python function call more than a bare `parse` (see *empty Python "
        "call*). — means the implementation cannot handle that case (see the capability table).")
    add("")
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

    # -- speed-ups ---------------------------------------------------------------------
    add("## Speed-up of pyproxyproto over each peer (peer median / ours)")
    add("")
    add("Ours is taken *with* `.source` read, since every peer builds its address objects "
        "eagerly; the bare-`parse` speed-up is larger still (first table). Cells: Cython "
        "backend / pure-Python backend.")
    add("")
    rows = []
    for impl in present:
        if impl.kind != "peer":
            continue
        cells = [impl.label]
        for case in CASES:
            peer = med.get((case.key, impl.key))
            ours = [med.get((case.key, key)) for key, _ in SPEEDUP_OURS]
            if peer is None:
                cells.append("—")
            else:
                cells.append(" / ".join(_x(peer / o) if o else "—" for o in ours))
        rows.append(cells)
    lines += _table(["over", *(c.group for c in CASES)], rows)

    # -- the object floor (issue 11) ---------------------------------------------------
    lines += object_floor_section(med)

    # -- targets -----------------------------------------------------------------------
    add("## Speed targets (from the parser spec, set for CPython 3.11; ratios are the Cython backend)")
    add("")
    rows = []
    for label, case, kind, limit in TARGETS:
        value = med.get((case, "cython"))
        floor = med.get((case, FLOOR))
        if value is None or not floor:
            rows.append([label, "not measured", ""])
            continue
        if kind == "crc":
            base = med.get(("v2_ipv4", "cython"))
            if base is None:
                rows.append([label, "not measured", ""])
                continue
            got = (value - base) / floor
            shown = f"{_ns(value - base)} = {got:+.2f}× floor"
        else:
            got = value / floor
            shown = f"{_ns(value)} = {got:.2f}× floor"
        rows.append([label, shown, "met" if got <= limit else "**missed**"])
    pure = med.get(("v2_ipv4", "python"))
    rows.append([f"pure backend, v2 IPv4 < {PURE_TARGET_NS / 1000:g} µs",
                 _ns(pure) if pure is not None else "not measured",
                 "" if pure is None else ("met" if pure < PURE_TARGET_NS else "**missed**")])
    peers_v2 = [med.get(("v2_ipv4", i.key)) for i in IMPLS if i.kind == "peer"]
    peers_v2 = [p for p in peers_v2 if p is not None]
    if pure is not None and peers_v2:
        rows.append(["pure backend beats every pure-Python peer (v2 IPv4)",
                     f"{_ns(pure)} vs best peer {_ns(min(peers_v2))}",
                     "met" if pure < min(peers_v2) else "**missed**"])
    slower = []
    for case in CASES:
        ours = med.get((case.key, "python"))
        peers = [(med.get((case.key, i.key)), i.label) for i in IMPLS if i.kind == "peer"]
        peers = [p for p in peers if p[0] is not None]
        if ours is not None and peers and ours >= min(peers)[0]:
            best = min(peers)
            slower.append(f"{case.group} ({_ns(ours)} vs {best[1]} {_ns(best[0])})")
    if pure is not None:
        rows.append(["pure backend beats every peer in every case",
                     "slower in: " + "; ".join(slower) if slower else "faster in all six",
                     "**missed**" if slower else "met"])
    lines += _table(["target", "measured", ""], rows, "---|---:|---")

    # -- callgrind ---------------------------------------------------------------------
    cg = data["callgrind"]
    if cg:
        add("## Instructions per call (callgrind, Cython backend)")
        add("")
        add("Counted inside the C functions only (`--toggle-collect`), so the Python loop around "
            "them is excluded; these counts do not depend on the machine's load.")
        add("")
        rows = []
        for case in CASES:
            c = cg.get(case.key)
            if not c:
                continue
            rows.append([case.group, f"{c['parse']:,.0f}", f"{c['source']:,.0f}",
                         f"{c['floor']:,.0f}", _x(c["parse"] / c["floor"])])
        lines += _table(["case", "parse", "parse + .source", "floor (unpack_from)",
                         "parse / floor"], rows)

    # -- accept loop -------------------------------------------------------------------
    acc = data["accept"]
    if acc and "loops" in acc:
        add("## Accept loop: what the PROXY wrapper costs an asyncio server")
        add("")
        add(f"Each connection sends a PROXY v2 header and a small request "
            f"({acc['request_bytes']} bytes, one write) to 127.0.0.1, reads the reply to EOF "
            f"and checks that it names the client the server saw. Load generator: a C program "
            f"(`bench/loadgen.c`, compiled at run time) in another process, "
            f"{acc['threads']} epoll threads, {acc['concurrency']} connections in flight. "
            f"Each round runs the plain server and the wrapped one back to back (alternating "
            f"which goes first), {acc['duration_s']:g} s or {acc['max_conns']:,} connections "
            f"each; {acc['rounds']} rounds. Server CPU per connection is the server process's "
            f"user + system time over its connections; the ratio is taken within each round, "
            f"and its median and range are shown (user time alone beside it: the kernel "
            f"charges it by the tick, so it is no steadier). "
            + ("The server runs pinned to one CPU, the load generator to the other. "
               if acc.get("pin") else "")
            + f"Busy: the server's CPU time over the run's "
            f"wall time (the rest of the two cores went to the load generator, the kernel's "
            f"loopback work and other jobs). Targets (issue 8): asyncio <= 1.05, uvloop <= "
            f"1.25, `aio.start_server` / `asyncio.start_server` <= 1.05.")
        add("")
        rows = []
        for loop_name, kinds in acc["loops"].items():
            for kind, s in kinds.items():
                for i, side in enumerate(("plain", "wrapped")):
                    m = s[side]
                    ratio = user = ""
                    if i:
                        ratio = (f"**{s['cpu_ratio']:.3f}** ({min(s['cpu_ratio_runs']):.3f}–"
                                 f"{max(s['cpu_ratio_runs']):.3f})")
                        if s.get("user_ratio") is not None:
                            user = f"{s['user_ratio']:.3f}"
                    rows.append([loop_name, f"`{acc['pairs'][kind][i]}`",
                                 f"{m['conns_per_s']:,.0f}",
                                 f"{m['server_cpu_us_per_conn']:,.1f} µs", ratio, user,
                                 f"{m['server_busy']:.2f}",
                                 f"{m['client_cpu_us_per_conn']:,.1f} µs",
                                 f"{m['connections']:,}", str(m["errors"])])
        lines += _table(["loop", "server", "connections/s", "server CPU / conn",
                         "wrapped / plain CPU (median, range)", "user CPU ratio", "busy",
                         "load generator CPU / conn", "connections", "errors"], rows)
    count = data["accept_count"]
    if count and "loops" in count:
        add("")
        add(f"Instructions per connection, free of the machine's noise: `python -m "
            f"bench.accept_loop count` runs each server under callgrind, with {count['conns']:,} "
            f"and {3 * count['conns']:,} connections made one at a time, and divides the "
            f"difference by {2 * count['conns']:,} (start-up cancels out); the header timeout is an "
            f"hour, so the deadline sweeps, which callgrind's slowdown would multiply, stay "
            f"out, and each connection's entry in the sweep's bucket stays in. User space only: "
            f"the kernel's work, the same system calls on both sides, is not counted.")
        add("")
        rows = []
        for loop_name, kinds in count["loops"].items():
            for kind, c in kinds.items():
                rows.append([loop_name, f"`{acc['pairs'][kind][1]}`" if acc else kind,
                             f"{c['plain']:,.0f}", f"{c['wrapped']:,.0f}",
                             f"{c['extra']:+,.0f}", f"{c['ratio']:.3f}"])
        lines += _table(["loop", "server", "plain", "wrapped", "extra", "wrapped / plain"],
                        rows)

    # -- real servers ------------------------------------------------------------------
    srv = data["servers"]
    if srv and "results" in srv:
        add("## Real servers: uvicorn with and without `pyproxyproto.uvicorn`")
        add("")
        add(f"`python -m bench.servers` ({srv['command']}): one uvicorn worker serving a tiny "
            f"ASGI app on 127.0.0.1, `--http h11` / `httptools` against "
            f"`pyproxyproto.uvicorn:H11Protocol` / `HttpToolsProtocol` (every connection "
            f"starts with a PROXY v2 header); load from {srv['clients']} client processes, "
            f"{srv['duration_s']:g} s per run, {srv['rounds']} rounds alternating baseline and "
            f"integration. keepalive: one connection per client, requests on it; connect: a new "
            f"connection (and header) per request. Kept = median of the per-round ratios "
            f"(target, issue 9: >= 95 %).")
        add("")
        rows = []
        for name, e in srv["results"].items():
            rows.append([f"`{name}`", f"{e['baseline_rps']:,.0f}", f"{e['pyproxyproto_rps']:,.0f}",
                         f"**{100 * e['ratio']:.1f} %**",
                         ", ".join(f"{100 * r:.0f}" for r in e.get("ratios", []))])
        lines += _table(["server, load", "baseline req/s", "with pyproxyproto req/s",
                         "kept (median)", "per-round kept %"], rows)

    # -- capabilities ------------------------------------------------------------------
    probes = env.get("probes", {})
    if probes:
        add("## What each implementation does (probed on this run)")
        add("")
        add("Each cell is the result of feeding that input to the implementation as above: "
            "✓ = behaves as a strict parser must (accepts the valid input / rejects the "
            "invalid one), ✗ = does not.")
        add("")
        names: list[str] = []
        for result in probes.values():
            for name in result:
                if name not in names:
                    names.append(name)
        rows = []
        for impl in IMPLS:
            result = probes.get(impl.key)
            if not result or impl.key.endswith(("_source", "_views")):
                continue
            mark = {True: "✓", False: "✗", None: "—"}
            rows.append([impl.label, *(mark[result.get(n)] for n in names)])
        lines += _table(["implementation", *names], rows, "---" + "|:---:" * len(names))

    add("## Implementations, versions and limitations")
    add("")
    versions = env.get("versions", {})
    rows = []
    for impl in IMPLS:
        absent = [f"{c.group}" for c in CASES if (c.key, impl.key) not in med]
        rows.append([impl.label, versions.get(impl.key, impl.version) or "—",
                     env.get("notes", {}).get(impl.key, impl.notes),
                     ", ".join(absent) + (f" ({env.get('absent', {}).get(impl.key, '')})"
                                          if absent and env.get("absent", {}).get(impl.key)
                                          else "") if absent else ""])
    lines += _table(["implementation", "version", "what it does / does not do",
                     "absent from"], rows, "---|---|---|---")

    # -- method ------------------------------------------------------------------------
    opts = data["options"]
    add("## Method")
    add("")
    add("pytest-benchmark (`bench/test_parse.py`), one group per header case; within a group "
        "every implementation is timed back to back, the floor and the empty call included. "
        "Every entry is checked once outside the timed loop (right addresses; for ours every "
        "field, the typed views and a rejected wrong CRC32C). Settings: "
        f"min_time {opts.get('min_time', '?')} s per round (iterations calibrated to it; rounds "
        "shorter than a scheduler time slice, so on a shared machine most rounds run "
        "uninterrupted and the median ignores the others), "
        f"max_time {opts.get('max_time', '?')} s, min_rounds {opts.get('min_rounds', '?')}, "
        f"warmup {'on' if opts.get('warmup') else 'off'}, gc disabled while timing: "
        f"{opts.get('disable_gc')}, timer {opts.get('timer', '?')}. The whole suite ran "
        f"{data['passes']} time(s); each figure is the median of the passes' medians (their "
        f"values are in `parse.json`, `extra_info.pass_medians_ns`), so a burst of other work "
        f"during one pass does not decide a result. How each peer is driven:")
    add("")
    add("- **proxy-protocol**: its asyncio integration (`ProxyProtocolReader.read`) grows a "
        "bytearray from the stream (`readexactly`/`readline`) and calls "
        "`ProxyProtocolDetect().unpack(memoryview)` until it returns. *(unpack)* times only "
        "the final call on exactly the header — the most favourable figure; *(reader loop)* "
        "replays the whole loop in memory on header + payload.")
    add("- **gunicorn**: `Request.parse` hands its first read (a bytearray) to "
        "`Request._handle_proxy_protocol(unreader, buf, mode)`; timed on a Request set up "
        "once with `proxy_protocol=auto` and `proxy_allow_ips=*` (no allow-list lookup).")
    add("- **Twisted**: what `HAProxyProtocolWrapper.dataReceived` does for a new connection: "
        "choose `V2Parser`/`V1Parser` from the first bytes, make one, `feed(data)`.")
    add("")
    add("Raw data: `parse.json` (pytest-benchmark), `accept.json`, `accept_count.json`, "
        "`servers.json`, `callgrind.json`, `env.json` "
        "beside this file. Regenerate everything with `python -m bench`; re-render this file "
        "from them with `python -m bench --report-only`.")
    add("")
    if os.path.exists(os.path.join(directory, "parse.png")):
        add("![parse time per case, log scale](parse.png)")
        add("")
    return "\n".join(lines)


def chart(directory: str, path: str) -> bool:
    """Grouped horizontal bars, log axis. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    med = load(directory)["medians"]
    impls = [i for i in IMPLS if i.key in CHART_IMPLS and any((c.key, i.key) in med for c in CASES)]
    if not impls:
        return False
    fig, ax = plt.subplots(figsize=(10, 12), dpi=110)
    height = 0.8 / len(impls)
    colors = plt.get_cmap("tab10")
    ticks = []
    for ci, case in enumerate(CASES):
        base = ci
        ticks.append(base + 0.4 - height / 2)
        for ii, impl in enumerate(impls):
            value = med.get((case.key, impl.key))
            if value is None:
                continue
            y = base + ii * height
            ax.barh(y, value, height=height * 0.9, color=colors(ii % 10),
                    label=impl.label if ci == 0 or not any(
                        (CASES[k].key, impl.key) in med for k in range(ci)) else None)
            ax.text(value * 1.05, y, _ns(value), va="center", fontsize=6.5)
    ax.set_xscale("log")
    ax.set_yticks(ticks)
    ax.set_yticklabels([c.group for c in CASES])
    ax.invert_yaxis()
    ax.set_xlabel("median time per call (ns, log scale) — shorter is faster")
    ax.set_title("PROXY header parse time, header + 100 payload bytes")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8,
              frameon=False)
    xmin, xmax = ax.get_xlim()
    ax.set_xlim(xmin, xmax * 1.6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
