"""The header model both backends share: the enums, SSLInfo, the typed
TLV views, repr, equality and to_dict.

A backend's only job is to parse; everything here reads the parsed fields
(``tlvs`` above all), so the two backends cannot drift apart in how they
interpret a TLV.  None of this runs during ``parse()``: views are computed
when the caller first reads them.
"""

from __future__ import annotations

import socket
from enum import IntEnum
from typing import Any

from . import _constants as C

AF_UNIX = getattr(socket, "AF_UNIX", None)

# Indexed by the v2 family nibble / transport nibble.
FAMILIES: tuple[Any, ...] = (
    socket.AF_UNSPEC,
    socket.AF_INET,
    socket.AF_INET6,
    AF_UNIX if AF_UNIX is not None else socket.AF_UNSPEC,
)
PROTOCOLS: tuple[Any, ...] = (0, socket.SOCK_STREAM, socket.SOCK_DGRAM)


class Command(IntEnum):
    """The v2 command nibble; every v1 header is a PROXY command."""

    LOCAL = C.CMD_LOCAL
    PROXY = C.CMD_PROXY


COMMANDS = (Command.LOCAL, Command.PROXY)


def decode_text(value: bytes) -> str:
    # Text views never raise: the exact bytes stay available in ``tlvs``.
    return value.decode("utf-8", "replace")


def _tiled_tlvs(data: bytes, start: int) -> tuple[tuple[int, bytes], ...] | None:
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


def _first(tlvs: tuple[tuple[int, bytes], ...], tlv_type: int) -> bytes | None:
    for t, value in tlvs:
        if t == tlv_type:
            return value
    return None


class SSLInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS."""

    __slots__ = ("_client", "_verify", "_tlvs")

    def __init__(self, client: int, verify: int, tlvs: tuple[tuple[int, bytes], ...]) -> None:
        self._client = client
        self._verify = verify
        self._tlvs = tlvs

    @classmethod
    def from_value(cls, value: bytes) -> SSLInfo | None:
        """Decode the value of an SSL TLV; None when it is malformed."""
        if len(value) < C.SSL_FIXED_LENGTH:
            return None
        sub = _tiled_tlvs(value, C.SSL_FIXED_LENGTH)
        if sub is None:
            return None
        return cls(value[0], int.from_bytes(value[1:5], "big"), sub)

    @property
    def client(self) -> int:
        return self._client

    @property
    def verify(self) -> int:
        return self._verify

    @property
    def verified(self) -> bool:
        return self._verify == 0

    @property
    def tlvs(self) -> tuple[tuple[int, bytes], ...]:
        return self._tlvs

    def _text(self, sub_type: int) -> str | None:
        value = _first(self._tlvs, sub_type)
        return None if value is None else decode_text(value)

    @property
    def version(self) -> str | None:
        return self._text(C.PP2_SUBTYPE_SSL_VERSION)

    @property
    def cn(self) -> str | None:
        return self._text(C.PP2_SUBTYPE_SSL_CN)

    @property
    def cipher(self) -> str | None:
        return self._text(C.PP2_SUBTYPE_SSL_CIPHER)

    @property
    def sig_alg(self) -> str | None:
        return self._text(C.PP2_SUBTYPE_SSL_SIG_ALG)

    @property
    def key_alg(self) -> str | None:
        return self._text(C.PP2_SUBTYPE_SSL_KEY_ALG)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSLInfo):
            return NotImplemented
        return (self._client, self._verify, self._tlvs) == (
            other._client,
            other._verify,
            other._tlvs,
        )

    def __hash__(self) -> int:
        return hash((self._client, self._verify, self._tlvs))

    def __repr__(self) -> str:
        return (
            f"SSLInfo(client={self._client:#04x}, verify={self._verify}, "
            f"version={self.version!r}, cn={self.cn!r}, cipher={self.cipher!r}, "
            f"sig_alg={self.sig_alg!r}, key_alg={self.key_alg!r}, tlvs={self._tlvs!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self._client,
            "verify": self._verify,
            "verified": self.verified,
            "version": self.version,
            "cn": self.cn,
            "cipher": self.cipher,
            "sig_alg": self.sig_alg,
            "key_alg": self.key_alg,
            "tlvs": [{"type": t, "value": v.hex()} for t, v in self._tlvs],
        }


# -- typed views: each reads the FIRST TLV of its type ------------------------


def alpn(h: Any) -> bytes | None:
    return _first(h.tlvs, C.PP2_TYPE_ALPN)


def authority(h: Any) -> str | None:
    value = _first(h.tlvs, C.PP2_TYPE_AUTHORITY)
    return None if value is None else decode_text(value)


def unique_id(h: Any) -> bytes | None:
    return _first(h.tlvs, C.PP2_TYPE_UNIQUE_ID)


def netns(h: Any) -> str | None:
    value = _first(h.tlvs, C.PP2_TYPE_NETNS)
    return None if value is None else decode_text(value)


def crc32c(h: Any) -> int | None:
    value = _first(h.tlvs, C.PP2_TYPE_CRC32C)
    return None if value is None else int.from_bytes(value, "big")


def ssl(h: Any) -> SSLInfo | None:
    value = _first(h.tlvs, C.PP2_TYPE_SSL)
    return None if value is None else SSLInfo.from_value(value)


def _first_subtyped(tlvs: tuple[tuple[int, bytes], ...], tlv_type: int, subtype: int) -> bytes | None:
    # AWS and Azure put a subtype in the value's first byte; the view is the
    # first TLV of that (type, subtype) pair.
    for t, value in tlvs:
        if t == tlv_type and value[:1] == bytes((subtype,)):
            return value[1:]
    return None


def aws_vpce_id(h: Any) -> str | None:
    value = _first_subtyped(h.tlvs, C.PP2_TYPE_AWS, C.PP2_SUBTYPE_AWS_VPCE_ID)
    return None if value is None else decode_text(value)


def azure_link_id(h: Any) -> int | None:
    value = _first_subtyped(
        h.tlvs, C.PP2_TYPE_AZURE, C.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID
    )
    if value is None or len(value) != 4:
        return None
    return int.from_bytes(value, "little")


def gcp_psc_connection_id(h: Any) -> int | None:
    value = _first(h.tlvs, C.PP2_TYPE_GCP)
    if value is None or len(value) != 8:
        return None
    return int.from_bytes(value, "big")


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
