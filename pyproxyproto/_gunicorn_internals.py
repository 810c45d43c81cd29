"""Every use of gunicorn's internals, beside the guard that detects a change and the fallback.

Read-ahead.  gunicorn's own PROXY reader takes the header out of the one
receive that also brings the request; so do the pyproxyproto workers, and
the bytes after the header go to the parser gunicorn makes next for that
socket: ``gunicorn.http.get_parser`` is wrapped, in the worker process, to
``unread`` them into the parser's unreader.  The guard: gunicorn's workers
make their parser through ``gunicorn.http.get_parser``, and the parser
keeps an unreader that can unread.  Fallback: the header is read exactly
(a peek, then only the header's bytes), leaving what follows in the socket.

The gthread worker's poller.  The ``ThreadWorker`` reads headers in
gunicorn's poller, not in its threads, so that silent connections hold no
thread; it relies on the ThreadWorker's accept/enqueue/poller/pending
names below.  The guard checks them; fallback: the header is read in the
connection's thread, as gunicorn reads requests.
"""

from __future__ import annotations

import functools
import socket
import threading
from typing import Any

import gunicorn.http
from gunicorn.config import Config
from gunicorn.http.parser import Parser
from gunicorn.http.unreader import Unreader
from gunicorn.workers import gthread, sync

# Bytes read past the header, by the socket they came from, until gunicorn
# makes that socket's parser.
_pending: dict[socket.socket, bytes] = {}
_installed = threading.Lock()


def _names(function: Any) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return () if code is None else code.co_names


def _read_ahead_works() -> bool:
    """The guard of the read-ahead (see the module docstring)."""
    return (
        callable(getattr(gunicorn.http, "get_parser", None))
        and {"http", "get_parser"} <= set(_names(sync.SyncWorker.handle))
        and {"http", "get_parser"} <= set(_names(gthread.TConn.init))
        and "unreader" in _names(Parser.__init__)
        and callable(getattr(Unreader, "unread", None))
    )


READ_AHEAD = _read_ahead_works()


def install_read_ahead() -> bool:
    """Wrap ``gunicorn.http.get_parser`` (once per process) so that a new
    parser gets the bytes read past its socket's header; False when the
    guard says this gunicorn works otherwise."""
    if not READ_AHEAD:
        return False
    with _installed:
        original = gunicorn.http.get_parser
        if getattr(original, "_pyproxyproto", False):
            return True

        @functools.wraps(original)
        def get_parser(cfg: Config, source: Any, source_addr: Any, *args: Any, **kwargs: Any) -> Any:
            parser = original(cfg, source, source_addr, *args, **kwargs)
            rest = _pending.pop(source, None)
            if rest is not None:
                parser.unreader.unread(rest)
            return parser

        get_parser._pyproxyproto = True  # type: ignore[attr-defined]
        gunicorn.http.get_parser = get_parser
    return True


def read_ahead_allowed(cfg: Config) -> bool:
    """Whether the header may be read with what follows it: not under TLS
    (the bytes after it start the TLS handshake, which gunicorn reads from
    the socket) nor where gthread reads an HTTP/2 preface from the socket
    before it makes the parser."""
    return READ_AHEAD and not cfg.is_ssl and getattr(cfg, "http2_cleartext", "off") not in (
        "prior-knowledge", "both")


def hand_to_parser(sock: socket.socket, rest: bytes) -> None:
    """Keep ``rest`` for the parser gunicorn makes next for ``sock``."""
    if rest:
        _pending[sock] = rest


def forget(sock: socket.socket) -> None:
    """Drop what was kept for ``sock`` (its connection ended first)."""
    _pending.pop(sock, None)


def _poller_works() -> bool:
    """The guard of reading headers in gthread's poller."""
    worker = gthread.ThreadWorker
    return (
        all(callable(getattr(worker, name, None))
            for name in ("accept", "enqueue_req", "murder_pending", "init_process"))
        and {"poller"} <= set(_names(worker.init_process))
        and {"nr_conns", "enqueue_req"} <= set(_names(worker.accept))
        and "data_ready" in _names(gthread.TConn.__init__)
        and "data_ready" in _names(worker.handle)
    )


POLLER = _poller_works()


def new_connection(cfg: Config, sock: socket.socket, client: Any, server: Any) -> Any:
    """A gthread connection (``TConn``), as gthread's accept() makes one."""
    return gthread.TConn(cfg, sock, client, server)


def mark_data_ready(conn: Any) -> None:
    """Tell gthread that the connection's request has begun to arrive, so
    its thread does not wait for the socket first (the bytes may all be in
    the parser's unreader)."""
    conn.data_ready = True
