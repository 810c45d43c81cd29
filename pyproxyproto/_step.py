"""The steps of a handshake (``Step``): read more, serve, or close.

Its own module so that the pure and the compiled handshake share the same
members: ``step is READ`` holds whichever of them made ``step``.
"""

from __future__ import annotations

import enum


class Step(enum.Enum):
    """Where a handshake is, and so what its integration does next."""

    READ = "read"  #: receive more bytes and feed them (``needed`` says how many at most)
    SERVE = "serve"  #: serve the connection: ``client``, ``believed``, ``rest``
    CLOSE = "close"  #: close the connection: ``error`` says why


READ = Step.READ
SERVE = Step.SERVE
CLOSE = Step.CLOSE
