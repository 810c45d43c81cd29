"""Parse speed: one benchmark group per header case, one entry per implementation.

Run through ``python -m bench`` (which sets the timing options), or directly:
``python -m pytest bench/test_parse.py --benchmark-only``.  Each entry is
checked once, outside the timed loop, before it is timed; an implementation
that cannot handle a case is skipped there (the reason is in the report).
"""

from __future__ import annotations

import platform

import pytest

from .cases import CASES
from .peers import IMPLS, Unsupported

PAIRS = [(case, impl) for case in CASES for impl in IMPLS]


@pytest.mark.parametrize(
    "case, impl", PAIRS, ids=[f"{case.key}-{impl.key}" for case, impl in PAIRS]
)
def test_parse(benchmark, case, impl):
    try:
        bench = impl.prepare(case)
        bench.check()
    except Unsupported as exc:
        pytest.skip(f"{impl.label}: {exc}")
    except Exception as exc:
        if impl.kind != "peer":
            raise  # our parser got it wrong: a real failure
        # A peer whose API or results changed is left out (and the report says
        # why) rather than breaking the run.
        pytest.skip(f"{impl.label}: driver or result check failed: {exc!r}")
    benchmark.group = case.group
    benchmark.name = impl.label
    benchmark.extra_info.update(
        case=case.key,
        group=case.group,
        impl=impl.key,
        label=impl.label,
        kind=impl.kind,
        version=impl.version,
        notes=impl.notes,
        header_bytes=case.length,
        payload_bytes=len(case.data) - case.length,
        python=platform.python_version(),
    )
    benchmark(bench.fn, *bench.args)
