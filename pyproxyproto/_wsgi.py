"""What the WSGI integrations share: where the header is in the WSGI environ."""

from __future__ import annotations

# environ[ENVIRON_KEY]: the header believed for the request's connection
# (None for a peer served without one, or whose header is not believed).
ENVIRON_KEY = "pyproxyproto.proxy_header"
