"""Strict, fast PROXY protocol (v1 and v2) parsing and building."""

from types import ModuleType
from typing import TYPE_CHECKING

from . import _handshake
from ._backend import BACKEND, HANDSHAKE_EXTENSION, impl as _impl, load_extension
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
from ._policy import Decision, Policy, PolicyOptions
from ._stats import Stats
from ._step import Step

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

# The handshake's implementations: compiled when it is built, else the
# pure one (the tests run both).
HANDSHAKE_MODULES: dict[str, ModuleType] = {"python": _handshake}
_compiled_handshake = load_extension(HANDSHAKE_EXTENSION)
if _compiled_handshake is not None:
    HANDSHAKE_MODULES["cython"] = _compiled_handshake

if TYPE_CHECKING:
    # The pure backend's classes carry the annotations; the Cython backend's
    # stub (_parser_c.pyi) declares the same types, and the tests hold both
    # backends to them.
    from ._handshake import Handshake
    from ._header import SSLInfo
    from ._parser_py import ProxyHeader, parse
else:
    parse = _impl.parse
    ProxyHeader = _impl.ProxyHeader
    SSLInfo = _impl.SSLInfo
    Handshake = HANDSHAKE_MODULES.get("cython", _handshake).Handshake

__all__ = [
    "Address",
    "BACKEND",
    "ChecksumMismatch",
    "Command",
    "ConnectionClosed",
    "Decision",
    "Handshake",
    "HeaderRejected",
    "HeaderTimeout",
    "Incomplete",
    "IPv4Address",
    "IPv6Address",
    "InvalidHeader",
    "Policy",
    "PolicyOptions",
    "ProxyHeader",
    "ProxyProtocolError",
    "SSLInfo",
    "Stats",
    "Step",
    "TLVs",
    "UntrustedPeer",
    "build",
    "parse",
]
