"""Types of aio's compiled header protocol (the twin of pyproxyproto.aio._PyHeaderProtocol)."""

import asyncio
from typing import Any

class HeaderProtocol(asyncio.Protocol):
    """Reads the header, then hands the connection to the inner protocol.

    Not an asyncio.Protocol subclass at runtime (asyncio duck-types
    protocols); typed as one because it is used as one."""

    def __init__(self, server: Any, *args: Any, **kwargs: Any) -> None: ...
    def connection_made(self, transport: Any) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def expire(self) -> None:
        """Called by the sweeper at the deadline."""
