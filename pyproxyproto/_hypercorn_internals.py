"""Every use of hypercorn's internals, beside the guard that detects a change and the fallback.

``pyproxyproto.hypercorn.serve`` runs hypercorn's asyncio worker with a
header reader in front of each connection: it builds on hypercorn's
``TCPServer``, ``Lifespan``, ``WorkerContext`` and ``StatsdLogger``, which
are not its public API.  The guard is this module's import: a hypercorn
release that moves them raises ImportError naming the release supported
(the fallback is that clear error at start-up, not a server that fails
per connection).
"""

from __future__ import annotations

try:
    from hypercorn.asyncio.lifespan import Lifespan
    from hypercorn.asyncio.statsd import StatsdLogger
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.asyncio.worker_context import WorkerContext
except ImportError as exc:  # pragma: no cover - depends on the installed hypercorn
    raise ImportError(
        f"pyproxyproto.hypercorn needs hypercorn's asyncio worker internals ({exc}); "
        "install the hypercorn release pyproxyproto supports (pyproxyproto[hypercorn])"
    ) from exc

__all__ = ["Lifespan", "StatsdLogger", "TCPServer", "WorkerContext"]
