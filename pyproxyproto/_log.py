"""The ``pyproxyproto`` logger: rate-limited refusal records, and how peers are named in them."""

from __future__ import annotations

import logging
import math
import threading
import time

logger = logging.getLogger("pyproxyproto")


class _LogLimiter:
    """At most ``burst`` WARNING-or-worse records per ``window`` seconds.

    A scan or a misconfigured balancer can refuse thousands of connections
    a second; one record each would bury everything else.  The first record
    let through after a quiet spell says how many were dropped.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start a new window with nothing dropped (tests start from here)."""
        self._start = -math.inf
        self._sent = 0
        self._dropped = 0

    def log(self, level: int, message: str, *args: object) -> None:
        if not logger.isEnabledFor(level):
            return
        if level < logging.WARNING:
            logger.log(level, message, *args)
            return
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self.window:
                self._start = now
                self._sent = 0
            if self._sent >= self.burst:
                self._dropped += 1
                return
            self._sent += 1
            dropped, self._dropped = self._dropped, 0
        if dropped:
            message += " (%d similar record(s) were not logged)"
            args = (*args, dropped)
        logger.log(level, message, *args)


limiter = _LogLimiter()


def format_address(address: object, local: object = None) -> str:
    """A peer as log lines name it: ``host:port``, ``[v6]:port``, or a
    Unix-socket peer with the socket's path (``local``, when known)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, (str, bytes)):
        # A client's end of a Unix socket is nearly always unnamed: the
        # socket it connected to says more.
        if address:
            return f"a Unix-socket peer ({_path(address)})"
        if local:
            return f"a Unix-socket peer on {_path(local)}"
        return "a Unix-socket peer"
    return "a peer whose address is unknown"


def _path(path: object) -> str:
    if isinstance(path, bytes):
        return "@" + path.lstrip(b"\0").decode(errors="backslashreplace")  # abstract name
    return str(path)


def log_refusal(level: int, what: str, peer: object, reason: str, local: object = None) -> None:
    """The one log record for a connection (or datagram) given up on."""
    limiter.log(level, "%s from %s: %s", what, format_address(peer, local), reason)


class _Routed(logging.Handler):
    """A handler ``route`` added: the next call to ``route`` replaces it."""


class _ToServerLog(_Routed):
    """Hands the ``pyproxyproto`` records to a server's logger, whose
    handlers give them the server's time, level, format and files."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


def route_to(target: logging.Logger, *, keep: bool = False) -> None:
    """Send the ``pyproxyproto`` logger's records to ``target`` (a server's
    logger) at the level ``target`` lets through; see ``route``."""
    route(_ToServerLog(target), target.getEffectiveLevel(), keep=keep)


def route(handler: _Routed, level: int, *, keep: bool = False) -> None:
    """Give the ``pyproxyproto`` logger ``handler`` (a server's log) at
    ``level``, when nothing else would handle its records (no handler on it
    or above it: Python's last-resort handler would print them bare).  A
    logging configuration of the user's (a handler on the root logger,
    say) is left to handle them.  A route made before is replaced, or with
    ``keep`` left in place: a server that runs inside a gunicorn worker
    keeps gunicorn's log."""
    for old in list(logger.handlers):
        if isinstance(old, _Routed):
            if keep:
                return
            logger.removeHandler(old)
            logger.propagate = True
    if logger.hasHandlers():
        return
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
