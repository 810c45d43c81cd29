"""Every use of uvicorn's internals, beside the guard that detects a change and the fallback.

- uvicorn makes its HTTP protocol as ``cls(config=, server_state=,
  app_state=, _loop=)`` for every connection; pyproxyproto makes it itself,
  once the header is read, with the same arguments.  The guard checks
  that constructor's parameters when this module is imported, and fails
  at start-up with a clear error when they changed (no fallback can
  serve a protocol it cannot make).
- Start-up checks.  ``--http pyproxyproto.uvicorn:H11Protocol`` is imported
  while uvicorn's ``Config.load()`` runs in each worker; the Config being
  loaded is found on the stack then, so its settings are checked before the
  worker serves.  The guard: ``Config.load`` is on the stack.  Fallback
  (the class imported some other way, e.g. passed to ``uvicorn.run``): the
  Config is checked when its first connection arrives, and a bad setting
  stops the worker then.
"""

from __future__ import annotations

import inspect
import logging
import sys
from typing import Any, NoReturn

from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl

# uvicorn's exit status for a worker that could not start: from 0.50 on, the
# --workers parent stops every worker on it instead of restarting the one.
STARTUP_FAILURE = 3

_PROTOCOL_PARAMETERS = ["self", "config", "server_state", "app_state", "_loop"]

error_log = logging.getLogger("uvicorn.error")


def protocol_signature_known() -> bool:
    """The guard: uvicorn's HTTP protocols take the arguments make_protocol passes."""
    try:
        parameters = list(inspect.signature(h11_impl.H11Protocol.__init__).parameters)
    except (TypeError, ValueError):
        return False
    return parameters == _PROTOCOL_PARAMETERS


def make_protocol(
    cls: type, config: Config, server_state: Any, app_state: dict[str, Any], loop: Any
) -> Any:
    """An instance of ``cls`` (a uvicorn HTTP protocol class whose __new__
    returns the header reader), made as uvicorn would make it."""
    protocol: Any = object.__new__(cls)
    protocol.__init__(config=config, server_state=server_state, app_state=app_state, _loop=loop)
    return protocol


def loading_config() -> Config | None:
    """The uvicorn Config whose load() is importing the caller, if any."""
    frame = sys._getframe(1)
    load = Config.load.__code__
    while frame is not None:
        if frame.f_code is load:
            config = frame.f_locals.get("self")
            return config if isinstance(config, Config) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def stop_worker(message: str) -> NoReturn:
    """Stop this uvicorn worker before it serves, with one clear line in uvicorn's log."""
    error_log.error("pyproxyproto: %s", message)
    raise SystemExit(STARTUP_FAILURE)
