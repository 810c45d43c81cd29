"""Run every parser test against both backends.

The fixture ``backend`` yields the backend module (``parse``, ``ProxyHeader``,
``crc32c``).  The Cython one is included whenever it is importable and not
disabled by PYPROXYPROTO_NO_EXTENSIONS; with PYPROXYPROTO_REQUIRE_EXTENSIONS
a missing extension is an error, not a silent skip.
"""

import pytest

import pyproxyproto
from pyproxyproto import _policy
from pyproxyproto._backend import available

BACKENDS = available()


@pytest.fixture(scope="session", params=sorted(BACKENDS), ids=lambda name: name)
def backend(request):
    return BACKENDS[request.param]


@pytest.fixture(scope="session")
def both_backends():
    """Every available backend, for tests that compare them."""
    return BACKENDS


@pytest.fixture(autouse=True)
def _fresh_log_limiter():
    """Each test starts with a full budget of warning records."""
    _policy._limiter.reset()


def pytest_report_header(config):
    return (
        f"pyproxyproto backends under test: {', '.join(sorted(BACKENDS))}; "
        f"package default: {pyproxyproto.BACKEND}"
    )
