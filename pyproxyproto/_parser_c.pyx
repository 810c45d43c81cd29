# cython: language_level=3, freethreading_compatible=True, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython backend: the same parser as _parser_py, in typed C.

parse() reads the caller's buffer in place (buffer protocol, no copy, no
slicing) and creates exactly one Python object when the header is valid:
the ProxyHeader, which keeps addresses as raw bytes and builds their text,
the TLV tuple and the typed views only when the caller reads them.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

import struct
import sys

from . import _constants as C
from . import _header as H
from ._errors import ChecksumMismatch, Incomplete, InvalidHeader
from ._inet import ipv4_pack, ipv6_pack


cdef extern from "pp_crc32c.h":
    uint32_t pp_crc32c(uint32_t crc, const unsigned char *buf, size_t length) nogil
    const char *pp_crc32c_impl() nogil

cdef extern from "pp_inet.h":
    int pp_format_ipv4(const unsigned char *a, char *out) nogil
    int pp_format_ipv6(const unsigned char *a, char *out) nogil
    const unsigned char *pp_parse_ipv4(const unsigned char *s, const unsigned char *end,
                                       unsigned char *out) nogil

cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)
    object PyObject_GenericGetAttr(object o, object name)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


__all__ = ["ProxyHeader", "SSLInfo", "parse", "crc32c", "crc32c_impl"]

# Python objects read once at import: the error path formats these, the hot
# path never touches them.
cdef tuple _FAMILIES = H.FAMILIES
cdef tuple _PROTOCOLS = H.PROTOCOLS
cdef tuple _COMMANDS = H.COMMANDS
cdef tuple _EMPTY = ()
cdef bytes _SIG = C.V2_SIGNATURE
cdef bytes _V1_PREFIX = C.V1_PREFIX
cdef bytes _V1_TCP4 = C.V1_TCP4
cdef bytes _V1_UNKNOWN = C.V1_UNKNOWN
# "PROXY TCP": what every TCP line starts with, then '4' or '6' and a space.
cdef bytes _V1_TCP_HEAD_BYTES = C.V1_PREFIX + C.V1_TCP4[:3]
cdef const char *_V1_TCP_HEAD = _V1_TCP_HEAD_BYTES
cdef Py_ssize_t V1_TCP_START = len(C.V1_PREFIX) + len(C.V1_TCP4)
cdef frozenset _V2_PROXY_FAMILIES = C.V2_PROXY_FAMILIES

# Numbers from the shared constants module, as C variables.
cdef Py_ssize_t V1_MAX = C.V1_MAX_LENGTH
cdef Py_ssize_t V2_FIXED = C.V2_HEADER_LENGTH
cdef Py_ssize_t TLV_HDR = C.TLV_HEADER_LENGTH
cdef Py_ssize_t UNIX_PATH = C.UNIX_PATH_LENGTH
cdef int CRC_LEN = C.CRC32C_LENGTH
cdef int UNIQUE_ID_MAX = C.UNIQUE_ID_MAX_LENGTH
cdef int T_CRC32C = C.PP2_TYPE_CRC32C
cdef int T_UNIQUE_ID = C.PP2_TYPE_UNIQUE_ID
cdef int T_AUTHORITY = C.PP2_TYPE_AUTHORITY
cdef int T_ALPN = C.PP2_TYPE_ALPN
cdef int T_NETNS = C.PP2_TYPE_NETNS
cdef int T_SSL = C.PP2_TYPE_SSL
cdef int T_AWS = C.PP2_TYPE_AWS
cdef int T_AZURE = C.PP2_TYPE_AZURE
cdef int T_GCP = C.PP2_TYPE_GCP
cdef int SUB_AWS_VPCE = C.PP2_SUBTYPE_AWS_VPCE_ID
cdef int SUB_AZURE_LINK = C.PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID
cdef int SUB_SSL_VERSION = C.PP2_SUBTYPE_SSL_VERSION
cdef int SUB_SSL_CN = C.PP2_SUBTYPE_SSL_CN
cdef int SUB_SSL_CIPHER = C.PP2_SUBTYPE_SSL_CIPHER
cdef int SUB_SSL_SIG_ALG = C.PP2_SUBTYPE_SSL_SIG_ALG
cdef int SUB_SSL_KEY_ALG = C.PP2_SUBTYPE_SSL_KEY_ALG
cdef Py_ssize_t SSL_FIXED = C.SSL_FIXED_LENGTH
cdef int CMD_PROXY = C.CMD_PROXY
cdef int F_INET = C.AF_INET_NIBBLE
cdef int F_INET6 = C.AF_INET6_NIBBLE
cdef int F_UNIX = C.AF_UNIX_NIBBLE
cdef int V2_VERSION = C.V2_VERSION
cdef int PROTO_STREAM = C.PROTO_STREAM_NIBBLE
cdef unsigned char V1_T = C.V1_TCP4[0]
cdef unsigned char V1_U = C.V1_UNKNOWN[0]
cdef unsigned char V1_4 = C.V1_TCP4[3]
cdef unsigned char V1_6 = C.V1_TCP6[3]
cdef Py_ssize_t V1_MIN_IPV4 = C.V1_MIN_IPV4_TEXT
cdef Py_ssize_t V1_MIN_IPV6 = C.V1_MIN_IPV6_TEXT
cdef Py_ssize_t V1_AFTER_DST = C.V1_MIN_AFTER_DESTINATION
cdef Py_ssize_t V1_AFTER_SPORT = C.V1_MIN_AFTER_SOURCE_PORT
cdef Py_ssize_t V1_AFTER_DPORT = C.V1_MIN_AFTER_DESTINATION_PORT
# The port scanner reads one byte past a port's most digits.
cdef Py_ssize_t V1_PORT_SCAN = C.V1_PORT_DIGITS + 1
cdef Py_ssize_t V1_CHECK_FROM = C.V1_CHECK_LENGTH_FROM
_TLV_HEAD = struct.Struct("!BH")
# Which view each TLV type feeds: one bit per view, 0 for the rest.
cdef unsigned int _VIEW_BIT[256]
memset(_VIEW_BIT, 0, sizeof(_VIEW_BIT))
for _bit, _type in enumerate((C.PP2_TYPE_ALPN, C.PP2_TYPE_AUTHORITY, C.PP2_TYPE_UNIQUE_ID,
                              C.PP2_TYPE_NETNS, C.PP2_TYPE_CRC32C, C.PP2_TYPE_SSL,
                              C.PP2_TYPE_AWS, C.PP2_TYPE_AZURE, C.PP2_TYPE_GCP)):
    _VIEW_BIT[_type] = 1u << _bit
# By the nibbles of byte 13, 16 entries each so that any byte indexes
# them: a family nibble's address block length and index into _FAMILIES
# (no block and AF_UNSPEC for the nibbles the spec leaves undefined, which
# only a LOCAL header may carry), a transport nibble's index into
# _PROTOCOLS (0 when undefined).
cdef int BLOCK_LEN[16]
cdef uint8_t FAMILY_OF[16]
cdef uint8_t PROTOCOL_OF[16]
memset(BLOCK_LEN, 0, sizeof(BLOCK_LEN))
memset(FAMILY_OF, 0, sizeof(FAMILY_OF))
memset(PROTOCOL_OF, 0, sizeof(PROTOCOL_OF))
for _nibble, _block in C.ADDRESS_BLOCK_LENGTHS.items():
    BLOCK_LEN[_nibble] = _block
    FAMILY_OF[_nibble] = _nibble
for _nibble in range(len(H.PROTOCOLS)):
    PROTOCOL_OF[_nibble] = _nibble
# 256 flags: may a PROXY command carry this byte 13?
cdef bint PROXY_FAMILY_OK[256]
for _fam in range(256):
    PROXY_FAMILY_OK[_fam] = _fam in C.V2_PROXY_FAMILIES

cdef enum:
    # v1 scanner states (same order as the pure backend's)
    ST_KEYWORD, ST_SRC, ST_DST, ST_SPORT, ST_DPORT, ST_LF, ST_TAIL


# The module's parts, one subject each (textually included: one module).
include "_parser_c_header.pxi"
include "_parser_c_values.pxi"
include "_parser_c_views.pxi"
include "_parser_c_v2.pxi"
include "_parser_c_v1.pxi"


# -- entry points -------------------------------------------------------------------


@cython.binding(False)
@cython.embedsignature(True)
@cython.embedsignature.format("clinic")
def parse(data, *, bint v1=True, bint v2=True, bint verify_checksum=True):
    """Parse the PROXY header at the start of ``data``; see the package docs."""
    return _parse_data(data, v1, v2, verify_checksum)


cdef object parse_buffer(object data, bint v1, bint v2, bint verify_checksum):
    # parse(), for C callers (the compiled handshake): no argument parsing.
    return _parse_data(data, v1, v2, verify_checksum)


cdef inline object _parse_data(object data, bint v1, bint v2, bint verify_checksum):
    cdef Py_buffer view
    if not (v1 or v2):
        raise ValueError(C.MSG_NO_VERSION)
    if PyBytes_CheckExact(data):
        return _parse(<const unsigned char *>PyBytes_AS_STRING(data),
                      PyBytes_GET_SIZE(data), v1, v2, verify_checksum)
    _get_buffer(data, &view)
    try:
        return _parse(<const unsigned char *>view.buf, view.len, v1, v2, verify_checksum)
    finally:
        PyBuffer_Release(&view)


cdef int _get_buffer(object data, Py_buffer *view) except -1:
    # PyBUF_SIMPLE asks for one contiguous run of bytes: it refuses
    # non-contiguous views, and str has no buffer at all.
    if PyUnicode_Check(data):
        raise TypeError(C.MSG_NOT_BUFFER.format(type=type(data).__name__))
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except (TypeError, BufferError, ValueError):
        raise TypeError(C.MSG_NOT_BUFFER.format(type=type(data).__name__)) from None
    return 0


def crc32c(data, unsigned int crc=0):
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""
    cdef Py_buffer view
    cdef uint32_t result
    _get_buffer(data, &view)
    try:
        with nogil:
            result = pp_crc32c(crc, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return result


def crc32c_impl():
    """Which CRC32C routine this machine uses: sse4.2, armv8 or table."""
    return pp_crc32c_impl().decode("ascii")


cdef extern from "pp_shared.h":
    int pp_share_function(object module, const char *name) except -1

# parse(), which callers run on every connection, off the shared reference
# count of a free-threaded build (see pp_shared.h).
pp_share_function(sys.modules[__name__], b"parse")


cdef object _parse(const unsigned char *b, Py_ssize_t n, bint v1, bint v2, bint verify):
    if n == 0:
        raise _incomplete(0, 1 if v1 else V2_FIXED)
    if b[0] == 0x0D:
        if not v2:
            raise InvalidHeader(C.MSG_V2_DISABLED, 0)
        return _parse_v2(b, n, verify)
    if b[0] == 0x50:
        if not v1:
            raise InvalidHeader(C.MSG_V1_DISABLED, 0)
        h = _fast_v1(b, n)
        return h if h is not None else _scan_v1(b, n)
    raise InvalidHeader(C.MSG_NOT_PROXY.format(byte=b[0]), 0)


cdef object _incomplete(Py_ssize_t have, Py_ssize_t needed):
    return Incomplete(C.MSG_INCOMPLETE.format(have=have, needed=needed), needed)


cdef object _invalid(str template, Py_ssize_t offset):
    return InvalidHeader(template.format(offset=offset), offset)
