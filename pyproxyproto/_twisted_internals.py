"""Every use of Twisted's private internals, beside the guard that detects a change and the fallback.

``pyproxyproto:ssl:...`` reads the header in plaintext, then starts TLS:
it listens on plain TCP with the port, backlog and interface an ``ssl:``
endpoint parsed, and takes that endpoint's TLS context factory.  Twisted
keeps those in private attributes of ``SSL4ServerEndpoint``; if a release
renames them, the ``ssl:`` form stops at start-up with a clear error (the
fallback), and ``pyproxyproto:tcp:`` keeps working.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import interfaces
from twisted.internet.endpoints import TCP4ServerEndpoint

# What SSL4ServerEndpoint keeps: the port, the backlog, the interface, and
# the TLS options (an OpenSSL context factory or connection creator).
_SSL_ENDPOINT_FIELDS = ("_port", "_backlog", "_interface", "_sslContextFactory")


def split_ssl_endpoint(
    reactor: interfaces.IReactorTime, endpoint: Any
) -> tuple[interfaces.IStreamServerEndpoint, Any]:
    """A plain TCP endpoint listening where the ``ssl:`` ``endpoint`` would,
    and that endpoint's TLS options."""
    missing = [name for name in _SSL_ENDPOINT_FIELDS if not hasattr(endpoint, name)]
    if missing:
        raise ValueError(
            f"pyproxyproto:ssl: cannot read this Twisted's SSL4ServerEndpoint (it has no "
            f"{', '.join(missing)}); use pyproxyproto:tcp: and terminate TLS in front of it, "
            "or pin a Twisted release that pyproxyproto supports"
        )
    tcp = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor, endpoint._port, endpoint._backlog, endpoint._interface
    )
    return cast(interfaces.IStreamServerEndpoint, tcp), endpoint._sslContextFactory
