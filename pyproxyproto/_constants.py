"""Protocol constants and error messages shared by both backends.

Everything here comes from HAProxy's doc/proxy-protocol.txt.  Both parsers
read these names (the Cython one at import time, into C variables), so a
limit or a message is changed in exactly one place.
"""

# -- version 1 (text) ---------------------------------------------------------

V1_PREFIX = b"PROXY "
# The protocol words after the prefix; the scanners tell them apart by
# their first byte.
V1_TCP4 = b"TCP4 "
V1_TCP6 = b"TCP6 "
V1_UNKNOWN = b"UNKNOWN"
# The longest v1 line, CRLF included (spec section 2.1).
V1_MAX_LENGTH = 107
# Shortest text of a v1 address ("0.0.0.0" / "::") and of what must follow
# the destination address (" 0 0\r\n"): the scanners' lower bounds on
# the bytes a line still needs.
V1_MIN_IPV4_TEXT = 7
V1_MIN_IPV6_TEXT = 2
V1_MIN_AFTER_DESTINATION = 6
# ...after the source port (" 0\r\n") and after the destination port ("\r\n").
V1_MIN_AFTER_SOURCE_PORT = 4
V1_MIN_AFTER_DESTINATION_PORT = 2
# A port's most digits (65535).
V1_PORT_DIGITS = 5
# The most any scanner state can still need (an IPv4 source with no digit
# yet, its space, the shortest destination and what follows it); below
# V1_MAX_LENGTH minus this, the too-long check cannot fire.
V1_LONGEST_NEED = (2 * 4 - 1) + 1 + V1_MIN_IPV4_TEXT + V1_MIN_AFTER_DESTINATION
V1_CHECK_LENGTH_FROM = V1_MAX_LENGTH - V1_LONGEST_NEED - 1

# -- version 2 (binary) -------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16

# Command nibble of byte 12.
CMD_LOCAL = 0x0
CMD_PROXY = 0x1

# Address family (high nibble of byte 13) and transport (low nibble).
AF_UNSPEC_NIBBLE = 0x0
AF_INET_NIBBLE = 0x1
AF_INET6_NIBBLE = 0x2
AF_UNIX_NIBBLE = 0x3
PROTO_UNSPEC_NIBBLE = 0x0
PROTO_STREAM_NIBBLE = 0x1
PROTO_DGRAM_NIBBLE = 0x2

# The only byte-13 values a PROXY command may carry.
V2_PROXY_FAMILIES = frozenset((0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32))

# Version nibble (high nibble of byte 12).
V2_VERSION = 0x2

# Address block size by family nibble.
ADDR_LEN_INET = 12
ADDR_LEN_INET6 = 36
ADDR_LEN_UNIX = 216
UNIX_PATH_LENGTH = 108
ADDRESS_BLOCK_LENGTHS = {
    AF_UNSPEC_NIBBLE: 0,
    AF_INET_NIBBLE: ADDR_LEN_INET,
    AF_INET6_NIBBLE: ADDR_LEN_INET6,
    AF_UNIX_NIBBLE: ADDR_LEN_UNIX,
}

# -- TLV types (section 2.2) --------------------------------------------------

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_SUBTYPE_SSL_GROUP = 0x26
PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
PP2_TYPE_NETNS = 0x30

# Cloud vendors' custom TLVs (the 0xE0-0xEF range).
PP2_TYPE_GCP = 0xE0  # value: PSC connection id, u64 big-endian
PP2_TYPE_AWS = 0xEA  # value: subtype byte, then data
PP2_SUBTYPE_AWS_VPCE_ID = 0x01
PP2_TYPE_AZURE = 0xEE  # value: subtype byte, then data
PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID = 0x01

# Bits of the SSL TLV's client field.
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

TLV_HEADER_LENGTH = 3
TLV_MAX_VALUE_LENGTH = 0xFFFF
CRC32C_LENGTH = 4
# The spec's only cap on a TLV value (AUTHORITY has none: 255 is HAProxy's
# own HA_PP2_AUTHORITY_MAX, not the protocol's).
UNIQUE_ID_MAX_LENGTH = 128
SSL_FIXED_LENGTH = 5  # client (1 byte) + verify (4 bytes)

# -- environment switches -----------------------------------------------------

ENV_NO_EXTENSIONS = "PYPROXYPROTO_NO_EXTENSIONS"
ENV_REQUIRE_EXTENSIONS = "PYPROXYPROTO_REQUIRE_EXTENSIONS"

# -- error messages -----------------------------------------------------------
# Each names what is wrong and the byte offset in the caller's data.
# Both backends format exactly these templates.

MSG_NOT_BUFFER = "parse() needs a C-contiguous bytes-like object, not {type}"
MSG_NO_VERSION = "at least one of v1 and v2 must be enabled"
MSG_NOT_PROXY = "not a PROXY protocol header: unexpected byte 0x{byte:02x} at offset 0"
MSG_V1_DISABLED = "PROXY protocol v1 header at offset 0, but v1 is disabled"
MSG_V2_DISABLED = "PROXY protocol v2 header at offset 0, but v2 is disabled"

MSG_V1_PREFIX = "v1: expected 'PROXY ' at offset {offset}"
MSG_V1_PROTOCOL = "v1: expected TCP4, TCP6 or UNKNOWN at offset {offset}"
MSG_V1_IPV4 = "v1: invalid IPv4 address at offset {offset}"
MSG_V1_IPV6 = "v1: invalid IPv6 address at offset {offset}"
MSG_V1_PORT = "v1: invalid port at offset {offset}"
MSG_V1_CRLF = "v1: expected CRLF at offset {offset}"
MSG_V1_TOO_LONG = f"v1: the line cannot end within {V1_MAX_LENGTH} bytes (offset {{offset}})"

MSG_V2_SIGNATURE = "v2: bad signature at offset {offset}"
MSG_V2_VERSION = "v2: unsupported version {version} at offset 12"
MSG_V2_COMMAND = "v2: unsupported command {command} at offset 12"
MSG_V2_FAMILY = "v2: invalid address family/protocol 0x{family:02x} at offset 13"
MSG_V2_ADDRESS_LENGTH = (
    "v2: length {length} at offset 14 is shorter than the {needed}-byte address block"
)
MSG_V2_TLV_TRUNCATED = "v2: {count} stray byte(s) after the last TLV at offset {offset}"
MSG_V2_TLV_OVERRUN = "v2: TLV 0x{type:02x} at offset {offset} overruns the header"
MSG_V2_TLV_LENGTH = "v2: TLV 0x{type:02x} at offset {offset} has invalid length {length}"
MSG_V2_CHECKSUM = (
    "v2: CRC32C mismatch at offset {offset}: header says 0x{expected:08x}, "
    "computed 0x{computed:08x}"
)
MSG_INCOMPLETE = "incomplete PROXY header: {have} byte(s) so far, at least {needed} needed"
