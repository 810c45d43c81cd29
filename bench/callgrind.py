"""Instructions per parse for the Cython backend, counted by callgrind.

Unlike timings these counts do not move with the machine's load: callgrind
counts the instructions executed inside the named C functions only
(``--collect-atstart=no --toggle-collect=...``), so the Python loop around
them is not counted.  Counted per case: ``parse`` alone, ``parse`` plus the
first read of ``.source``, and the floor ``struct.unpack_from('!12sBBH')``
(its C function).  Needs valgrind; without it, ``run`` returns None.

Usage: python -m bench.callgrind [--iterations N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Cython numbers its wrappers (``_5parse``), so the parse wrapper is matched
# with callgrind's wildcard; ``.source`` is answered by the header's
# tp_getattro, which calls the same code as the property.
PARSE_SYMBOL = "__pyx_pw_12pyproxyproto_9_parser_c_*parse"
SOURCE_SYMBOL = "__pyx_tp_getattro_12pyproxyproto_9_parser_c_ProxyHeader"
FLOOR_SYMBOL = "unpack_from"   # the C function behind struct.unpack_from

_LOOP = """
import struct, sys
sys.path.insert(0, {root!r})
from bench.cases import BY_KEY
from pyproxyproto._parser_c import parse
data = BY_KEY[{case!r}].data
what = {what!r}
for _ in range({n}):
    if what == "parse":
        parse(data)
    elif what == "source":
        parse(data).source
    else:
        struct.unpack_from("!12sBBH", data)
"""


def _count(case: str, what: str, n: int, root: str) -> float:
    symbols = {"parse": [PARSE_SYMBOL], "source": [PARSE_SYMBOL, SOURCE_SYMBOL],
               "floor": [FLOOR_SYMBOL]}[what]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
               f"--callgrind-out-file={out}"]
        cmd += [f"--toggle-collect={s}" for s in symbols]
        cmd += [sys.executable, "-c", _LOOP.format(root=root, case=case, what=what, n=n)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600,
                       env=dict(os.environ, PYTHONHASHSEED="0"))
        with open(out) as f:
            m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"callgrind counted nothing for {case}/{what} (symbol names changed?)")
    return int(m.group(1)) / n


def run(iterations: int = 2000) -> dict | None:
    """{case key: {"parse": Ir, "source": Ir, "floor": Ir}} or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    try:
        import pyproxyproto._parser_c  # noqa: F401
    except ImportError:
        return None
    from .cases import CASES
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result: dict = {}
    floor = _count(CASES[0].key, "floor", iterations, root)
    for case in CASES:
        result[case.key] = {
            "parse": _count(case.key, "parse", iterations, root),
            "source": _count(case.key, "source", iterations, root),
            "floor": floor,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--json")
    a = p.parse_args(argv)
    result = run(a.iterations)
    text = json.dumps(result, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if result is not None else 1


if __name__ == "__main__":
    sys.exit(main())
