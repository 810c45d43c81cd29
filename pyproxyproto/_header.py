"""The header model both backends share: the enums, the address and TLV
types, the pure backend's SSLInfo and typed TLV views, repr, equality,
to_dict and pickling.

A backend's only job is to parse; what a field means is written once here
(the Cython backend computes the same views in C from the raw TLV bytes,
and the differential tests hold the two together).  Nothing here runs
during ``parse()``.
"""

from __future__ import annotations

import socket
import sys
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Union

from . import _constants as C

if TYPE_CHECKING:
    # What parse() reads: any object with the buffer protocol (not str).
    # Only type checkers see this import: there is no runtime dependency.
    if sys.version_info >= (3, 12):
        from collections.abc import Buffer as Buffer
    else:
        from typing_extensions import Buffer as Buffer

    from ._parser_py import ProxyHeader

#: An IPv4 address as ``socket`` gives it: ``(host, port)``.
IPv4Address = tuple[str, int]
#: An IPv6 address as ``socket`` gives it: ``(host, port, flowinfo, scope_id)``;
#: a PROXY header carries neither flowinfo nor a scope id, so both are 0.
IPv6Address = tuple[str, int, int, int]
#: An address a header carries: an IP tuple, a UNIX socket path (``str``),
#: or a Linux abstract-namespace name (``bytes`` starting with NUL; ``""``
#: for an unnamed socket).
Address = Union[IPv4Address, IPv6Address, str, bytes]
#: TLVs as ``(type, value)`` pairs, in wire order.
TLVs = tuple[tuple[int, bytes], ...]

AF_UNIX = getattr(socket, "AF_UNIX", None)

# Indexed by the v2 family nibble / transport nibble.
FAMILIES: tuple[socket.AddressFamily, ...] = (
    socket.AF_UNSPEC,
    socket.AF_INET,
    socket.AF_INET6,
    AF_UNIX if AF_UNIX is not None else socket.AF_UNSPEC,
)
PROTOCOLS: tuple[int, ...] = (0, socket.SOCK_STREAM, socket.SOCK_DGRAM)
# The reverse maps, for unpickling.
FAMILY_INDEX = {int(f): i for i, f in reversed(list(enumerate(FAMILIES)))}
PROTOCOL_INDEX = {int(p): i for i, p in enumerate(PROTOCOLS)}


class Command(IntEnum):
    """The v2 command nibble; every v1 header is a PROXY command."""

    LOCAL = C.CMD_LOCAL
    PROXY = C.CMD_PROXY


COMMANDS = (Command.LOCAL, Command.PROXY)


def decode_text(value: bytes) -> str:
    # Text views never raise: the exact bytes stay available in ``tlvs``.
    return value.decode("utf-8", "replace")


def _tiled_tlvs(data: bytes, start: int) -> TLVs | None:
    """Split data[start:] into TLVs, or None when they do not tile it."""
    out = []
    end = len(data)
    off = start
    while off < end:
        if end - off < C.TLV_HEADER_LENGTH:
            return None
        length = (data[off + 1] << 8) | data[off + 2]
        value_end = off + C.TLV_HEADER_LENGTH + length
        if value_end > end:
            return None
        out.append((data[off], data[off + C.TLV_HEADER_LENGTH : value_end]))
        off = value_end
    return tuple(out)


def _first(tlvs: TLVs, tlv_type: int) -> bytes | None:
    for t, value in tlvs:
        if t == tlv_type:
            return value
    return None


class SSLInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS.

    Immutable.  ``client`` holds the PP2_CLIENT_* bits, ``verify`` is 0
    when the client presented a certificate that verified; the text fields
    are the first sub-TLV of their type (None when absent), and ``tlvs``
    has every sub-TLV in wire order.
    """

    __slots__ = ("_client", "_verify", "_tlvs", "_text")

    _client: int
    _verify: int
    _tlvs: TLVs
    _text: tuple[str | None, ...]

    def __init__(self, client: int, verify: int, tlvs: TLVs) -> None:
        self._client = client
        self._verify = verify
        self._tlvs = tlvs
        # Decoded once, here: the fields are then plain reads.
        self._text = tuple(
            None if value is None else decode_text(value)
            for value in (_first(tlvs, t) for t in _SSL_TEXT_TYPES)
        )

    @classmethod
    def from_value(cls, value: bytes) -> SSLInfo | None:
        """Decode the value of an SSL TLV; None when it is malformed."""
        if len(value) < C.SSL_FIXED_LENGTH:
            return None
        sub = _tiled_tlvs(value, C.SSL_FIXED_LENGTH)
        if sub is None:
            return None
        return cls(value[0], int.from_bytes(value[1:5], "big"), sub)

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_text"):
            raise AttributeError(f"SSLInfo is immutable: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[type[SSLInfo], tuple[int, int, TLVs]]:
        return (SSLInfo, (self._client, self._verify, self._tlvs))

    @property
    def client(self) -> int:
        """The PP2_CLIENT_* bits."""
        return self._client

    @property
    def verify(self) -> int:
        """0 when the client's certificate verified, non-zero otherwise."""
        return self._verify

    @property
    def verified(self) -> bool:
        """``verify == 0``."""
        return self._verify == 0

    @property
    def tlvs(self) -> TLVs:
        """Every sub-TLV, in wire order."""
        return self._tlvs

    @property
    def version(self) -> str | None:
        """PP2_SUBTYPE_SSL_VERSION, e.g. ``"TLSv1.3"``."""
        return self._text[0]

    @property
    def cn(self) -> str | None:
        """PP2_SUBTYPE_SSL_CN: the client certificate's Common Name."""
        return self._text[1]

    @property
    def cipher(self) -> str | None:
        """PP2_SUBTYPE_SSL_CIPHER."""
        return self._text[2]

    @property
    def sig_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_SIG_ALG: the certificate's signature algorithm."""
        return self._text[3]

    @property
    def key_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_KEY_ALG: the certificate's key algorithm."""
        return self._text[4]

    def __eq__(self, other: object) -> bool:
        return ssl_eq(self, other)

    def __hash__(self) -> int:
        return hash((self._client, self._verify, self._tlvs))

    def __repr__(self) -> str:
        return ssl_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (sub-TLV values in hex)."""
        return ssl_to_dict(self)


_SSL_TEXT_TYPES = (
    C.PP2_SUBTYPE_SSL_VERSION,
    C.PP2_SUBTYPE_SSL_CN,
    C.PP2_SUBTYPE_SSL_CIPHER,
    C.PP2_SUBTYPE_SSL_SIG_ALG,
    C.PP2_SUBTYPE_SSL_KEY_ALG,
)


# The backends' SSLInfo classes (the Cython one registers itself): equal by
# value across them, as headers compare by value.
SSL_TYPES: list[type] = [SSLInfo]


def ssl_eq(a: Any, b: object) -> bool:
    """a == b for an SSLInfo ``a``, by value; NotImplemented for non-SSLInfo ``b``."""
    if not isinstance(b, tuple(SSL_TYPES)):
        result: bool = NotImplemented
        return result
    other: Any = b
    return bool((a.client, a.verify, a.tlvs) == (other.client, other.verify, other.tlvs))


def ssl_repr(s: Any) -> str:
    return (
        f"SSLInfo(client={s.client:#04x}, verify={s.verify}, "
        f"version={s.version!r}, cn={s.cn!r}, cipher={s.cipher!r}, "
        f"sig_alg={s.sig_alg!r}, key_alg={s.key_alg!r}, tlvs={s.tlvs!r})"
    )


def ssl_to_dict(s: Any) -> dict[str, Any]:
    return {
        "client": s.client,
        "verify": s.verify,
        "verified": s.verified,
        "version": s.version,
        "cn": s.cn,
        "cipher": s.cipher,
        "sig_alg": s.sig_alg,
        "key_alg": s.key_alg,
        "tlvs": [{"type": t, "value": v.hex()} for t, v in s.tlvs],
    }


# -- the pure backend's typed views: each reads the FIRST TLV of its type ------
# (the Cython backend computes the same in _parser_c._views)


def _first_subtyped(tlvs: TLVs, tlv_type: int, subtype: int) -> bytes | None:
    # AWS and Azure put a subtype in the value's first byte; the view is the
    # first TLV of that (type, subtype) pair.
    for t, value in tlvs:
        if t == tlv_type and value[:1] == bytes((subtype,)):
            return value[1:]
    return None


def views(tlvs: TLVs) -> tuple[Any, ...]:
    """Every typed view, in VIEW_NAMES order, computed in one go."""
    if not tlvs:
        return NO_VIEWS
    alpn = _first(tlvs, C.PP2_TYPE_ALPN)
    authority = _first(tlvs, C.PP2_TYPE_AUTHORITY)
    netns = _first(tlvs, C.PP2_TYPE_NETNS)
    crc = _first(tlvs, C.PP2_TYPE_CRC32C)
    ssl = _first(tlvs, C.PP2_TYPE_SSL)
    aws = _first_subtyped(tlvs, C.PP2_TYPE_AWS, C.PP2_SUBTYPE_AWS_VPCE_ID)
    azure = _first_subtyped(tlvs, C.PP2_TYPE_AZURE, C.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID)
    gcp = _first(tlvs, C.PP2_TYPE_GCP)
    return (
        alpn,
        None if authority is None else decode_text(authority),
        _first(tlvs, C.PP2_TYPE_UNIQUE_ID),
        None if netns is None else decode_text(netns),
        None if crc is None else int.from_bytes(crc, "big"),
        None if ssl is None else SSLInfo.from_value(ssl),
        None if aws is None else decode_text(aws),
        None if azure is None or len(azure) != 4 else int.from_bytes(azure, "little"),
        None if gcp is None or len(gcp) != 8 else int.from_bytes(gcp, "big"),
    )


VIEW_NAMES = (
    "alpn",
    "authority",
    "unique_id",
    "netns",
    "crc32c",
    "ssl",
    "aws_vpce_id",
    "azure_link_id",
    "gcp_psc_connection_id",
)
NO_VIEWS: tuple[Any, ...] = (None,) * len(VIEW_NAMES)
# Each view's place in a views tuple, by name: both backends index by this.
VIEW_INDEX = {name: index for index, name in enumerate(VIEW_NAMES)}


# -- value semantics ------------------------------------------------------------


def key(h: Any) -> tuple[Any, ...]:
    return (
        h.version,
        int(h.command),
        int(h.family),
        int(h.protocol),
        h.source,
        h.destination,
        h.length,
        h.tlvs,
    )


def restore(
    backend: str,
    version: int,
    command: int,
    family: int,
    protocol: int,
    source: Address | None,
    destination: Address | None,
    length: int,
    tlvs: TLVs,
) -> ProxyHeader:
    """Unpickle a header: with the backend that pickled it when it is
    available here, else with the one in use (the fields are the same).

    Unpickling runs after the package is imported, so the backends that
    _backend loaded are in sys.modules: nothing is imported here (both
    backends import this module)."""
    loaded = sys.modules["pyproxyproto._backend"]
    module = loaded._AVAILABLE.get(backend, loaded.impl)
    header: ProxyHeader = module._restore(
        version, command, family, protocol, source, destination, length, tlvs
    )
    return header


def _name(value: Any) -> str:
    return getattr(value, "name", None) or str(int(value))


def header_repr(h: Any) -> str:
    return (
        f"ProxyHeader(version={h.version}, command={h.command.name}, "
        f"family={_name(h.family)}, protocol={_name(h.protocol) if h.protocol else 0}, "
        f"source={h.source!r}, destination={h.destination!r}, "
        f"length={h.length}, tlvs={h.tlvs!r})"
    )


def _address_dict(address: Any) -> Any:
    if address is None:
        return None
    if isinstance(address, tuple):
        return {"host": address[0], "port": address[1]}
    if isinstance(address, bytes):
        return {"abstract": address.hex()}
    return {"path": address}


def header_to_dict(h: Any) -> dict[str, Any]:
    ssl_info = h.ssl
    alpn_value = h.alpn
    unique = h.unique_id
    return {
        "version": h.version,
        "command": h.command.name,
        "family": _name(h.family),
        "protocol": _name(h.protocol) if h.protocol else None,
        "source": _address_dict(h.source),
        "destination": _address_dict(h.destination),
        "length": h.length,
        "tlvs": [{"type": t, "value": v.hex()} for t, v in h.tlvs],
        "alpn": None if alpn_value is None else alpn_value.decode("ascii", "backslashreplace"),
        "authority": h.authority,
        "unique_id": None if unique is None else unique.hex(),
        "netns": h.netns,
        "crc32c": h.crc32c,
        "ssl": None if ssl_info is None else ssl_info.to_dict(),
        "aws_vpce_id": h.aws_vpce_id,
        "azure_link_id": h.azure_link_id,
        "gcp_psc_connection_id": h.gcp_psc_connection_id,
    }
