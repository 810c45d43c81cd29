"""Exceptions raised by every part of pyproxyproto."""


class ProxyProtocolError(ValueError):
    """Base class of everything the parser raises about its input."""


class Incomplete(ProxyProtocolError):
    """The data is a strict prefix of a header that could still become valid.

    ``needed`` is the smallest total length (counted from the start of the
    data) with which parsing could make progress.
    """

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


class InvalidHeader(ProxyProtocolError):
    """No continuation of the data can become a valid header.

    ``offset`` is the byte at which that became certain.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class ChecksumMismatch(InvalidHeader):
    """A CRC32C TLV does not match the header it is in."""

    def __init__(self, message: str, offset: int, expected: int, computed: int) -> None:
        super().__init__(message, offset)
        self.expected = expected
        self.computed = computed


class HeaderTimeout(TimeoutError):
    """The whole header did not arrive within the allowed time."""
