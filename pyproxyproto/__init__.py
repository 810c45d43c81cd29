"""Strict, fast PROXY protocol (v1 and v2) parsing and building."""

from typing import TYPE_CHECKING

from ._backend import BACKEND, impl as _impl
from ._build import build
from ._errors import (
    ChecksumMismatch,
    ConnectionClosed,
    HeaderTimeout,
    Incomplete,
    InvalidHeader,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._header import Command, SSLInfo

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._parser_py import ProxyHeader, parse
else:
    parse = _impl.parse
    ProxyHeader = _impl.ProxyHeader

__all__ = [
    "BACKEND",
    "ChecksumMismatch",
    "Command",
    "ConnectionClosed",
    "HeaderTimeout",
    "Incomplete",
    "InvalidHeader",
    "ProxyHeader",
    "ProxyProtocolError",
    "SSLInfo",
    "UntrustedPeer",
    "build",
    "parse",
]
