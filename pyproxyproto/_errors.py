"""Exceptions raised by every part of pyproxyproto.

``Incomplete`` is flow control ("read more"), so it is not a ValueError: a
caller's ``except ValueError`` around a parse must not swallow a header
that is still arriving.  Bad input (``InvalidHeader``) is a ValueError.
"""


class ProxyProtocolError(Exception):
    """Base class of everything pyproxyproto raises about a header or a
    connection it refused: ``except ProxyProtocolError`` catches every refusal."""


class Incomplete(ProxyProtocolError):
    """The data is a strict prefix of a header that could still become valid.

    ``needed`` is the smallest total length (counted from the start of the
    data) with which parsing could make progress.
    """

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.needed))


class InvalidHeader(ProxyProtocolError, ValueError):
    """No continuation of the data can become a valid header.

    ``offset`` is the byte at which that became certain.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.offset))


class ChecksumMismatch(InvalidHeader):
    """A CRC32C TLV does not match the header it is in."""

    def __init__(self, message: str, offset: int, expected: int, computed: int) -> None:
        super().__init__(message, offset)
        self.expected = expected
        self.computed = computed

    def __reduce__(self) -> tuple[type, tuple[str, int, int, int]]:  # type: ignore[override]
        return (type(self), (str(self), self.offset, self.expected, self.computed))


class ConnectionClosed(ProxyProtocolError, ConnectionError):
    """The peer closed the connection before the header was complete.

    ``received`` bytes had arrived; ``needed`` is the length the parser
    had asked for.
    """

    def __init__(self, received: int, needed: int) -> None:
        super().__init__(
            f"connection closed after {received} byte(s), before the PROXY header "
            f"was complete (at least {needed} needed)"
        )
        self.received = received
        self.needed = needed

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return (type(self), (self.received, self.needed))


class HeaderRejected(ProxyProtocolError):
    """The header is valid, but the ``validate`` callable refused it.

    ``header`` is the refused header; the validator's exception is the
    ``__cause__``.
    """

    def __init__(self, message: str, header: object) -> None:
        super().__init__(message)
        self.header = header

    def __reduce__(self) -> tuple[type, tuple[str, object]]:
        return (type(self), (str(self), self.header))


class HeaderTimeout(ProxyProtocolError, TimeoutError):
    """The whole header did not arrive within the allowed time."""


class UntrustedPeer(ProxyProtocolError, ConnectionError):
    """The policy refused the peer before a byte was read (it is outside the
    trusted networks, or the ``decide`` callable said "reject")."""
