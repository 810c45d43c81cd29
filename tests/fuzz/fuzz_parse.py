#!/usr/bin/env python3
"""atheris harness: differential fuzzing of the two parser backends.

    python tests/fuzz/fuzz_parse.py [libFuzzer flags] [CORPUS_DIR ...]

Usually run through tests/fuzz/run.sh.  Each input goes through
differential.check (see its docstring for the exact properties): both
backends agree on every flag combination and buffer type, only
ProxyProtocolError escapes parse(), accepted headers round-trip through
pyproxyproto.build.  A failed check is an uncaught exception, which atheris
reports with the input saved as crash-<sha1> under -artifact_prefix.

The pure-Python backend, the shared views and the builder are instrumented
for coverage; the C extension is fuzzed through the same inputs (its own
coverage is not fed back unless it was built with -fsanitize=fuzzer-no-link).
Both backends must be present: a differential fuzzer with one side is no use.
"""

import importlib.util
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("pyproxyproto") is None:  # a checkout, not installed
    sys.path.insert(1, os.path.dirname(os.path.dirname(HERE)))

with atheris.instrument_imports(include=["pyproxyproto"]):
    import pyproxyproto
    import pyproxyproto._build
    import pyproxyproto._parser_py
    import pyproxyproto._header  # noqa: F401

import differential

if "cython" not in differential.BACKENDS:
    sys.exit("fuzz_parse: pyproxyproto._parser_c is not importable; build it first "
             "(python setup.py build_ext --inplace)")
print(f"fuzz_parse: differential fuzzing of {differential.BACKENDS['cython'].__file__} "
      f"against {differential.BACKENDS['python'].__file__}", file=sys.stderr)


def test_one_input(data: bytes) -> None:
    differential.check(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
