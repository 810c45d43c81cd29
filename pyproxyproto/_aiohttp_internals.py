"""Every use of aiohttp's internals, beside the guard that detects a change and the fallback.

aiohttp's gunicorn worker (``aiohttp.worker.GunicornWebWorker``) starts one
``web.SockSite`` per gunicorn socket in its ``_run``, with gunicorn's TLS
context.  ``pyproxyproto.gunicorn.GunicornWebWorker`` makes it start a
``ProxyProtocolSite`` there instead, in the worker's own process, by
replacing the name ``SockSite`` in ``aiohttp.web`` for that process.  The
guard checks that ``_run`` makes its sites by that name.  Fallback: none (a
site started otherwise would serve without reading headers), so the worker
refuses to start, saying why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker

_SITE = "SockSite"


def _names(function: Any) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return () if code is None else code.co_names


def _site_works() -> bool:
    """The guard (see the module docstring)."""
    run = getattr(GunicornWebWorker, "_run", None)
    return {"web", _SITE} <= set(_names(run)) and callable(getattr(web, _SITE, None))


SITE = _site_works()


def use_site(make_site: Any) -> None:
    """Make aiohttp's gunicorn worker in this process start its sites as
    ``make_site(runner, sock, ssl_context=...)``."""
    setattr(web, _SITE, make_site)
