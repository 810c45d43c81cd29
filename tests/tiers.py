"""Property tests in two tiers: a short run in the quick tier, the long sweep under ``slow``.

``@sweep(quick, full)`` parametrizes a test's ``tier`` argument with two
Hypothesis ``settings``: ``quick`` examples (id ``quick``, in the default
run) and ``full`` examples (id ``sweep``, marked ``slow``).  The test applies
``tier`` to an inner ``@given`` function and calls it.
"""

import pytest
from hypothesis import HealthCheck, settings

BASE = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sweep(quick: int, full: int):
    return pytest.mark.parametrize(
        "tier",
        [
            pytest.param(settings(BASE, max_examples=quick), id="quick"),
            pytest.param(settings(BASE, max_examples=full), id="sweep", marks=pytest.mark.slow),
        ],
    )
