"""Types of the Cython backend: the same as the pure backend's
(pyproxyproto._parser_py.ProxyHeader, pyproxyproto._header.SSLInfo)."""

import socket
from typing import Any

from ._header import Address, Buffer, Command, TLVs

__all__ = ["ProxyHeader", "SSLInfo", "parse", "crc32c", "crc32c_impl"]

class SSLInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS.  Immutable."""

    def __init__(self, client: int, verify: int, tlvs: TLVs) -> None: ...
    @classmethod
    def from_value(cls, value: bytes) -> SSLInfo | None:
        """Decode the value of an SSL TLV; None when it is malformed."""
    @property
    def client(self) -> int:
        """The PP2_CLIENT_* bits."""
    @property
    def verify(self) -> int:
        """0 when the client's certificate verified, non-zero otherwise."""
    @property
    def verified(self) -> bool:
        """``verify == 0``."""
    @property
    def tlvs(self) -> TLVs:
        """Every sub-TLV, in wire order."""
    @property
    def version(self) -> str | None:
        """PP2_SUBTYPE_SSL_VERSION, e.g. ``"TLSv1.3"``."""
    @property
    def cn(self) -> str | None:
        """PP2_SUBTYPE_SSL_CN: the client certificate's Common Name."""
    @property
    def cipher(self) -> str | None:
        """PP2_SUBTYPE_SSL_CIPHER."""
    @property
    def sig_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_SIG_ALG: the certificate's signature algorithm."""
    @property
    def key_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_KEY_ALG: the certificate's key algorithm."""
    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (sub-TLV values in hex)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class ProxyHeader:
    """A parsed PROXY header: immutable, equal by value, safe to share
    between threads, picklable.  Made by ``parse()``, never directly."""

    @property
    def version(self) -> int:
        """1 or 2."""
    @property
    def command(self) -> Command:
        """Command.PROXY, or Command.LOCAL (a v2 health check)."""
    @property
    def family(self) -> socket.AddressFamily:
        """AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC."""
    @property
    def protocol(self) -> int:
        """socket.SOCK_STREAM, socket.SOCK_DGRAM, or 0 when unspecified."""
    @property
    def source(self) -> Address | None:
        """The client's address; None for LOCAL, UNSPEC and v1 UNKNOWN."""
    @property
    def destination(self) -> Address | None:
        """The address the client connected to; None when source is."""
    @property
    def length(self) -> int:
        """Bytes the header occupies at the start of the data."""
    @property
    def tlvs(self) -> TLVs:
        """Every TLV, ``(type, value)`` in wire order (v2 only; none from a
        LOCAL or AF_UNSPEC body that is not a TLV area, which is discarded)."""
    @property
    def alpn(self) -> bytes | None:
        """The first PP2_TYPE_ALPN value, e.g. ``b"h2"``."""
    @property
    def authority(self) -> str | None:
        """The first PP2_TYPE_AUTHORITY (the TLS SNI), as text."""
    @property
    def unique_id(self) -> bytes | None:
        """The first PP2_TYPE_UNIQUE_ID value."""
    @property
    def netns(self) -> str | None:
        """The first PP2_TYPE_NETNS (network namespace name)."""
    @property
    def crc32c(self) -> int | None:
        """The first PP2_TYPE_CRC32C value (verified by parse() by default)."""
    @property
    def ssl(self) -> SSLInfo | None:
        """The first PP2_TYPE_SSL TLV, decoded; None when absent or malformed."""
    @property
    def aws_vpce_id(self) -> str | None:
        """AWS PrivateLink: the VPC endpoint id (TLV 0xEA, subtype 0x01)."""
    @property
    def azure_link_id(self) -> int | None:
        """Azure Private Link: the LINKID (TLV 0xEE, subtype 0x01)."""
    @property
    def gcp_psc_connection_id(self) -> int | None:
        """Google Cloud Private Service Connect: the connection id (TLV 0xE0)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field and view as JSON-ready values."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def parse(
    data: Buffer, *, v1: bool = True, v2: bool = True, verify_checksum: bool = True
) -> ProxyHeader:
    """Parse the PROXY header at the start of ``data`` (see _parser_py.parse)."""

def crc32c(data: Buffer, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""

def crc32c_impl() -> str:
    """Which CRC32C routine this machine uses: sse4.2, armv8 or table."""
