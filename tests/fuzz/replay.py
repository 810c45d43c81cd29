#!/usr/bin/env python3
"""Run the fuzz harness's checks over saved inputs, without atheris.

    python tests/fuzz/replay.py PATH...

PATH is a file (a crash-* artifact, say) or a directory of inputs (a corpus
the fuzzer grew with FUZZ_CORPUS=...).  Each input goes through
differential.check, as in fuzzing.  tests/fuzz/sanitize.sh uses this to put
a corpus found by coverage-guided fuzzing of the normal build through the
ASan/UBSan build.  Prints how many inputs were checked; exits 1 if any
failed, after showing each failure with its input in hex.
"""

import importlib.util
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("pyproxyproto") is None:  # a checkout, not installed
    sys.path.insert(1, os.path.dirname(os.path.dirname(HERE)))

import differential


def inputs(paths):
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                full = os.path.join(path, name)
                if os.path.isfile(full):
                    yield full
        else:
            yield path


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    checked = failed = 0
    for path in inputs(argv[1:]):
        with open(path, "rb") as f:
            data = f.read()
        checked += 1
        try:
            differential.check(data)
        except Exception:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"replay: FAILED {path}: {data.hex()}", file=sys.stderr)
            traceback.print_exc()
    backends = ", ".join(f"{k}: {m.__file__}" for k, m in sorted(differential.BACKENDS.items()))
    print(f"replay: {checked} inputs checked, {failed} failed ({backends})")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
