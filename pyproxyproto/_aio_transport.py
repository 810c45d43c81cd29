"""The wrapping transport: how the application sees a connection whose transport is not asyncio's own (uvloop's, TLS, any other)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from ._asyncio_internals import fatal


# The extra-info names the header decides; every other name is the real transport's.
_HEADER_EXTRA = frozenset(("peername", "sockname", "socket", "proxy_header", "proxy_peername"))


class ProxiedTransport(asyncio.Transport):
    """The real transport, with the header's addresses in its extra info.

    It also delivers the bytes that followed the header before anything
    newer, honouring pause_reading(): while such bytes are pending the
    real transport stays paused.  Every method of asyncio.Transport is
    forwarded explicitly (no ``__getattr__``: it would slow down every
    attribute read).
    """

    __slots__ = (
        "_transport", "_proxy_peer", "_header", "_socket", "_view", "_pending", "_paused",
        "_real_paused", "_flush_handle",
    )

    def __init__(
        self, transport: Any, proxy_peer: Any, header: Any, view: Callable[[Any, Any], Any]
    ) -> None:
        # BaseTransport's _extra is not used: get_extra_info is answered here.
        self._transport = transport
        self._view = view  # view(sock, header): the socket as the application sees it
        self._proxy_peer = proxy_peer
        self._header = header  # None under "ignore": consumed, not believed
        self._socket: Any = None  # the view, made when first asked for
        self._pending: Any = None  # the bytes after the header, while paused
        self._paused = False  # as the protocol sees it
        self._real_paused = False
        self._flush_handle: asyncio.Handle | None = None

    def deliver(self, protocol: asyncio.BaseProtocol, buffer: Any, start: int) -> None:
        """Hand ``buffer[start:]`` to ``protocol`` now, or keep it while paused."""
        if self._transport.is_closing():
            return
        if not self._paused and not isinstance(protocol, asyncio.BufferedProtocol):
            data = buffer[start:]
            protocol.data_received(data if type(data) is bytes else bytes(data))  # type: ignore[attr-defined]
            return
        self._pending = memoryview(buffer)[start:]
        self._flush()  # nothing yet if the protocol paused: resume_reading() flushes

    def _flush(self) -> None:
        self._flush_handle = None
        while self._pending is not None and not self._paused and not self._transport.is_closing():
            protocol = self._transport.get_protocol()
            chunk = self._pending
            if isinstance(protocol, asyncio.BufferedProtocol):
                buf = memoryview(protocol.get_buffer(len(chunk))).cast("B")
                n = min(len(buf), len(chunk))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:n] = chunk[:n]
                self._pending = chunk[n:] if n < len(chunk) else None
                protocol.buffer_updated(n)
            else:
                self._pending = None
                protocol.data_received(bytes(chunk))
        if self._pending is None and not self._paused and self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def _scheduled_flush(self) -> None:
        try:
            self._flush()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fatal(self, exc)

    # -- the asyncio.Transport interface -----------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in _HEADER_EXTRA:
            header = self._header
            if name == "proxy_header":
                return header
            if name == "proxy_peername":
                return self._proxy_peer
            if header is not None and header.source is not None:  # not LOCAL, not UNKNOWN
                if name == "peername":
                    return header.source
                if name == "sockname":
                    return header.destination
                if self._socket is None:
                    sock = self._transport.get_extra_info("socket")
                    if sock is None:
                        return default
                    self._socket = self._view(sock, header)
                return self._socket
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if self._paused:
            return
        self._paused = True
        if not self._real_paused:
            self._real_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._pending is not None:
            if self._flush_handle is None:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_soon(self._scheduled_flush)
        elif self._real_paused:
            self._real_paused = False
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return not self._paused and not self._transport.is_closing()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()  # type: ignore[no-any-return]

    def write(self, data: Any) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return bool(self._transport.can_write_eof())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<proxied {self._transport!r} peername={self.get_extra_info('peername')!r}>"
