"""Strict, fast PROXY protocol (v1 and v2) parsing and building."""

from typing import TYPE_CHECKING

from ._backend import BACKEND, impl as _impl
from ._build import build
from ._errors import (
    ChecksumMismatch,
    ConnectionClosed,
    HeaderRejected,
    HeaderTimeout,
    Incomplete,
    InvalidHeader,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._header import Address, Command, IPv4Address, IPv6Address, TLVs
from ._policy import Stats

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

if TYPE_CHECKING:
    # The pure backend's classes carry the annotations; the Cython backend's
    # stub (_parser_c.pyi) declares the same types, and the tests hold both
    # backends to them.
    from ._header import SSLInfo
    from ._parser_py import ProxyHeader, parse
else:
    parse = _impl.parse
    ProxyHeader = _impl.ProxyHeader
    SSLInfo = _impl.SSLInfo

__all__ = [
    "Address",
    "BACKEND",
    "ChecksumMismatch",
    "Command",
    "ConnectionClosed",
    "HeaderRejected",
    "HeaderTimeout",
    "Incomplete",
    "IPv4Address",
    "IPv6Address",
    "InvalidHeader",
    "ProxyHeader",
    "ProxyProtocolError",
    "SSLInfo",
    "Stats",
    "TLVs",
    "UntrustedPeer",
    "build",
    "parse",
]
