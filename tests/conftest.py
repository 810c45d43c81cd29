"""Test tiers, and every parser test against both backends.

A bare ``python -m pytest`` is the quick tier: it deselects the tests marked
with a heavy tier (see HEAVY and the markers in pyproject.toml).  ``--all``
runs every tier; an explicit ``-m EXPR`` selects by marker as usual (``-m
leaks``, ``-m "not interop"``) and turns the default deselection off.

The fixture ``backend`` yields the backend module (``parse``, ``ProxyHeader``,
``crc32c``).  The Cython one is included whenever it is importable and not
disabled by PYPROXYPROTO_NO_EXTENSIONS; with PYPROXYPROTO_REQUIRE_EXTENSIONS
a missing extension is an error, not a silent skip.
"""

import pytest

import pyproxyproto
from pyproxyproto import _log, aio
from pyproxyproto._backend import available

BACKENDS = available()

# The markers of the heavy tiers, which the quick tier leaves out.
HEAVY = ("slow", "interop", "servers", "netns", "load", "leaks", "packaging")


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        dest="all_tiers",
        help=f"run every test tier, the heavy ones too ({', '.join(HEAVY)})",
    )


def _quick_tier(config):
    return not config.getoption("all_tiers") and not config.getoption("markexpr")


def pytest_collection_modifyitems(config, items):
    if not _quick_tier(config):
        return
    heavy = [item for item in items if any(item.get_closest_marker(m) for m in HEAVY)]
    if heavy:
        chosen = set(heavy)
        items[:] = [item for item in items if item not in chosen]
        config.hook.pytest_deselected(items=heavy)


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
    _log.limiter.reset()


def pytest_report_header(config):
    tier = (
        "quick tier (heavy tiers deselected; --all runs them)"
        if _quick_tier(config)
        else "tiers chosen by --all or -m"
    )
    return (
        f"pyproxyproto backends under test: {', '.join(sorted(BACKENDS))}; "
        f"package default: {pyproxyproto.BACKEND}; {tier}"
    )


@pytest.fixture(params=sorted(aio.PROTOCOL_MODULES), ids=lambda name: f"aio-{name}")
def header_protocol(request, monkeypatch):
    """Each implementation of aio's header protocol in turn (the compiled
    one whenever pyproxyproto._aio_protocol_c is there), for servers
    wrapped inside the test."""
    module = aio.PROTOCOL_MODULES[request.param]
    monkeypatch.setattr(aio, "protocols", module)
    return module.HeaderProtocol
