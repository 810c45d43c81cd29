"""Types of aio's compiled header protocol (the twin of pyproxyproto.aio._PyHeaderProtocol)."""

import asyncio
from typing import Any, final

@final
class SocketView:
    """The transport's socket, reporting the header's addresses (aio._SocketView's twin)."""

    def __init__(self, sock: Any, header: Any) -> None: ...
    def getpeername(self) -> Any: ...
    def getsockname(self) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

@final
class Factory:
    """wrap()'s protocol factory: each call makes a HeaderProtocol."""

    server: Any
    def __init__(self, server: Any) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> HeaderProtocol: ...

@final
class HeaderProtocol(asyncio.Protocol):
    """Reads the header, then hands the connection to the inner protocol.

    Not an asyncio.Protocol subclass at runtime (asyncio duck-types
    protocols); typed as one because it is used as one.  Made by Factory."""

    def connection_made(self, transport: Any) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def expire(self) -> None:
        """Called by the sweeper at the deadline."""
