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


# -- the header object -------------------------------------------------------------

cdef extern from "pp_once.h":
    PyObject *pp_once_get(PyObject **slot)
    PyObject *pp_once_set(PyObject **slot, PyObject *value)


cdef inline void _set(PyObject **slot, object value) noexcept:
    # Fill an empty C-level object field of an object not yet shared.
    Py_INCREF(value)
    slot[0] = <PyObject *>value


cdef inline void _set_default(PyObject **slot) noexcept:
    # None in a field left empty.
    if slot[0] == NULL:
        _set(slot, None)


# Each view's place in the views tuple (_header.VIEW_INDEX).
cdef Py_ssize_t V_ALPN = H.VIEW_INDEX["alpn"]
cdef Py_ssize_t V_AUTHORITY = H.VIEW_INDEX["authority"]
cdef Py_ssize_t V_UNIQUE_ID = H.VIEW_INDEX["unique_id"]
cdef Py_ssize_t V_NETNS = H.VIEW_INDEX["netns"]
cdef Py_ssize_t V_CRC32C = H.VIEW_INDEX["crc32c"]
cdef Py_ssize_t V_SSL = H.VIEW_INDEX["ssl"]
cdef Py_ssize_t V_AWS_VPCE_ID = H.VIEW_INDEX["aws_vpce_id"]
cdef Py_ssize_t V_AZURE_LINK_ID = H.VIEW_INDEX["azure_link_id"]
cdef Py_ssize_t V_GCP_PSC_CONNECTION_ID = H.VIEW_INDEX["gcp_psc_connection_id"]

cdef str _N_SOURCE = sys.intern("source")
cdef str _N_DESTINATION = sys.intern("destination")
cdef str _N_SSL = sys.intern("ssl")
cdef str _N_ALPN = sys.intern("alpn")
cdef str _N_AUTHORITY = sys.intern("authority")
cdef str _N_UNIQUE_ID = sys.intern("unique_id")


cdef inline object _publish(PyObject **slot, object value):
    # Give the slot a reference to value; return what the slot holds (value,
    # or what a racing reader published first).  No lock is held: the only
    # release (in pp_once_set) is of a value no other thread has seen.
    Py_INCREF(value)
    return <object>pp_once_set(slot, <PyObject *>value)


# Its fields hold only str, int, bytes, SSLInfo and tuples of them: no
# cycles, so the garbage collector need not track it.  What it computes on
# first read (addresses, TLVs, views) goes into publish-once slots: each is
# built completely and then stored once, so every reader, in any thread or
# in a GC callback that runs inside the first read, sees either nothing
# yet (and computes it) or the final value.
@cython.freelist(32)
@cython.final
@cython.no_gc
cdef class ProxyHeader:
    """A parsed PROXY header: immutable, equal by value, safe to share
    between threads, picklable.  Made by ``parse()``, never directly."""

    # Fields: _parser_c.pxd.

    def __init__(self, *args, **kwargs):
        raise TypeError("ProxyHeader is not created directly: use pyproxyproto.parse()")

    # No __dealloc__: the slots are released by pp_header_dealloc (below).

    def __getattribute__(self, name):
        # CPython does not specialise reading a C property: each read is a
        # type lookup and a descriptor call.  The addresses and the views
        # (what callers read on every connection) are answered here by
        # name identity (attribute names in code are interned), calling
        # the same code as their properties; every other name, and a name
        # that is equal but not identical, takes the generic way.
        if name is _N_SOURCE:
            return self._address(0)
        if name is _N_DESTINATION:
            return self._address(1)
        if name is _N_SSL:
            return self._view(V_SSL)
        if name is _N_ALPN:
            return self._view(V_ALPN)
        if name is _N_AUTHORITY:
            return self._view(V_AUTHORITY)
        if name is _N_UNIQUE_ID:
            return self._view(V_UNIQUE_ID)
        return PyObject_GenericGetAttr(self, name)

    @property
    def version(self):
        """1 or 2."""
        return self._version

    @property
    def command(self):
        """Command.PROXY, or Command.LOCAL (a v2 health check)."""
        return _COMMANDS[self._command]

    @property
    def family(self):
        """AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC."""
        return _FAMILIES[self._family]

    @property
    def protocol(self):
        """socket.SOCK_STREAM, socket.SOCK_DGRAM, or 0 when unspecified."""
        return _PROTOCOLS[self._protocol]

    @property
    def length(self):
        """Bytes the header occupies at the start of the data."""
        return self._length

    @property
    def source(self):
        """The client's address; None for LOCAL, UNSPEC and v1 UNKNOWN."""
        return self._address(0)

    @property
    def destination(self):
        """The address the client connected to; None when source is."""
        return self._address(1)

    # Each side has its own slot, made on its first read: a caller that
    # reads both pays for no tuple holding the two.
    cdef object _address(self, int side):
        cdef PyObject *value = pp_once_get(&self._destination if side else &self._source)
        if value != NULL:
            return <object>value
        if not self._has_ip and not self._has_unix():
            return None
        return self._make_address(side)

    cdef bint _has_unix(self) noexcept:
        return self._command == CMD_PROXY and self._family == F_UNIX

    cdef object _make_address(self, int side):
        if self._has_ip:
            if side:
                value = _ip_tuple(&self._addr[16], self._dport, self._v6, 1)
            else:
                value = _ip_tuple(&self._addr[0], self._sport, self._v6, 0)
        else:
            value = _unix_path(PyBytes_AS_STRING(self._raw) + V2_FIXED + side * UNIX_PATH)
        return _publish(&self._destination if side else &self._source, value)

    @property
    def tlvs(self):
        """Every TLV, ``(type, value)`` in wire order (v2 only; none from a
        LOCAL or AF_UNSPEC body that is not a TLV area, which is discarded)."""
        cdef PyObject *tlvs = pp_once_get(&self._tlvs)
        if tlvs != NULL:
            return <tuple>tlvs
        if self._raw is None:
            return _EMPTY
        return _publish(&self._tlvs, _tlv_tuple(self._raw, self._tlv_start, PyBytes_GET_SIZE(self._raw)))

    cdef object _view(self, Py_ssize_t index):
        cdef PyObject *views = pp_once_get(&self._views)
        if views == NULL:
            if self._raw is None:
                return None
            return (<tuple>_publish(&self._views, _compute_views(self._raw, self._tlv_start)))[index]
        return (<tuple>views)[index]

    @property
    def alpn(self):
        """The first PP2_TYPE_ALPN value, e.g. ``b"h2"``."""
        return self._view(V_ALPN)

    @property
    def authority(self):
        """The first PP2_TYPE_AUTHORITY (the TLS SNI), as text."""
        return self._view(V_AUTHORITY)

    @property
    def unique_id(self):
        """The first PP2_TYPE_UNIQUE_ID value."""
        return self._view(V_UNIQUE_ID)

    @property
    def netns(self):
        """The first PP2_TYPE_NETNS (network namespace name)."""
        return self._view(V_NETNS)

    @property
    def crc32c(self):
        """The first PP2_TYPE_CRC32C value (verified by parse() by default)."""
        return self._view(V_CRC32C)

    @property
    def ssl(self):
        """The first PP2_TYPE_SSL TLV, decoded; None when absent or malformed."""
        return self._view(V_SSL)

    @property
    def aws_vpce_id(self):
        """AWS PrivateLink: the VPC endpoint id (TLV 0xEA, subtype 0x01)."""
        return self._view(V_AWS_VPCE_ID)

    @property
    def azure_link_id(self):
        """Azure Private Link: the LINKID (TLV 0xEE, subtype 0x01)."""
        return self._view(V_AZURE_LINK_ID)

    @property
    def gcp_psc_connection_id(self):
        """Google Cloud Private Service Connect: the connection id (TLV 0xE0)."""
        return self._view(V_GCP_PSC_CONNECTION_ID)

    def to_dict(self):
        """Every field and view as JSON-ready values."""
        return H.header_to_dict(self)

    def __eq__(self, other):
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return H.key(self) == H.key(other)

    def __ne__(self, other):
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return H.key(self) != H.key(other)

    def __hash__(self):
        return hash(H.key(self))

    def __repr__(self):
        return H.header_repr(self)

    def __reduce__(self):
        return (H.restore, ("cython",) + H.key(self))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


# ProxyHeader's tp_dealloc releases the publish-once slots and then runs the
# one Cython made (which releases _raw and keeps the object on its free
# list).  A __dealloc__ method would cost every header a save and restore of
# the error indicator around it (about 60 instructions, an eighth of a bare
# parse); releasing str, bytes, tuples and SSLInfo cannot set the indicator.
cdef extern from *:
    """
    #define PP_HEADER_SLOTS 4
    static destructor pp_header_cython_dealloc;
    static Py_ssize_t pp_header_slot[PP_HEADER_SLOTS];

    static void pp_header_dealloc(PyObject *o)
    {
        for (int i = 0; i < PP_HEADER_SLOTS; i++)
            Py_CLEAR(*(PyObject **)((char *)o + pp_header_slot[i]));
        pp_header_cython_dealloc(o);
    }

    /* Called once at import, before any header exists. */
    static void pp_header_install_dealloc(PyObject *type)
    {
        PyTypeObject *t = (PyTypeObject *)type;
        pp_header_cython_dealloc = t->tp_dealloc;
        t->tp_dealloc = pp_header_dealloc;
    }
    """
    int PP_HEADER_SLOTS
    Py_ssize_t pp_header_slot[4]
    void pp_header_install_dealloc(object type)


cdef int _install_header_dealloc() except -1:
    # Where each slot sits in the object, measured on one (which the new
    # deallocator releases: its slots are empty).
    cdef ProxyHeader probe = ProxyHeader.__new__(ProxyHeader)
    cdef char *base = <char *><PyObject *>probe
    cdef char *slots[4]
    slots[0] = <char *>&probe._source
    slots[1] = <char *>&probe._destination
    slots[2] = <char *>&probe._tlvs
    slots[3] = <char *>&probe._views
    for i in range(PP_HEADER_SLOTS):
        pp_header_slot[i] = slots[i] - base
    pp_header_install_dealloc(ProxyHeader)
    return 0


_install_header_dealloc()


def _restore(version, command, family, protocol, source, destination, length, tlvs):
    """A header with these fields (for unpickling; see _header.restore)."""
    cdef ProxyHeader h = ProxyHeader.__new__(ProxyHeader)
    cdef bytes packed
    h._version = version
    h._command = command
    h._family = H.FAMILY_INDEX[family]
    h._protocol = H.PROTOCOL_INDEX[protocol]
    h._length = length
    if isinstance(source, tuple):
        h._has_ip = True
        h._v6 = len(source) == 4
        for address, offset in ((source, 0), (destination, 16)):
            packed = ipv6_pack(address[0]) if h._v6 else ipv4_pack(address[0])
            memcpy(&h._addr[offset], PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed))
        h._sport = source[1]
        h._dport = destination[1]
    elif source is not None:
        _publish(&h._source, source)
        _publish(&h._destination, destination)
    if tlvs:
        h._raw = b"".join([_TLV_HEAD.pack(t, len(v)) + v for t, v in tlvs])
        h._tlv_start = 0
        _publish(&h._tlvs, tuple(tlvs))
    return h


# Reuse what repeats: behind a balancer the destination is nearly always
# the same and sources repeat, so the last address tuple made for each side
# is kept and handed out again when the same address and port come back
# (the host text alone when only the port differs).  Tuples and str are
# immutable, so sharing one is invisible.
#
# These caches are shared mutable state, so they exist only where the GIL
# serialises them (PP_REUSE).  A free-threaded build makes fresh values
# instead: a lock would serialise the threads, and one tuple handed to
# every thread would make its reference count a contended cache line.
# With the GIL, a cache is read and updated in C with no Python call in
# between; the allocations before an update may run a GC callback that
# parses (and fills the cache) meanwhile, which _replace() tolerates.
cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define PP_REUSE 0
    #else
    #define PP_REUSE 1
    #endif
    """
    const bint PP_REUSE


cdef inline void _replace(PyObject **slot, object value) noexcept:
    # The slot holds the new value before the old one is released, so a
    # release that frees an object finds the cache already consistent.
    cdef PyObject *old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject *>value
    Py_XDECREF(old)


cdef struct AddressCache:
    bint v6
    uint16_t port
    unsigned char addr[16]
    PyObject *host
    PyObject *address

cdef AddressCache _cache[2]   # [0] sources, [1] destinations
memset(_cache, 0, sizeof(_cache))


cdef object _ip_tuple(const unsigned char *a, uint16_t port, bint v6, int side):
    # a: the address's 16 bytes in the header (zero after a packed IPv4
    # address), compared and copied whole: a fixed size needs no call.
    cdef AddressCache *c = &_cache[side]
    if (PP_REUSE and c.host != NULL and c.v6 == v6
            and memcmp(c.addr, a, 16) == 0):
        if c.port == port:
            return <object>c.address
        host = <object>c.host
    else:
        host = _ip_text(a, v6)
    address = (host, port, 0, 0) if v6 else (host, port)
    if PP_REUSE:
        _store(c, a, v6, port, host, address)
    return address


cdef inline void _store(AddressCache *c, const unsigned char *a, bint v6,
                        uint16_t port, object host, object address) noexcept:
    # The entry is wholly replaced before the old values are released, so a
    # release that frees an object finds the cache already consistent.
    cdef PyObject *old_host = c.host
    cdef PyObject *old_address = c.address
    Py_INCREF(host)
    Py_INCREF(address)
    c.host = <PyObject *>host
    c.address = <PyObject *>address
    c.v6 = v6
    c.port = port
    memcpy(c.addr, a, 16)
    Py_XDECREF(old_host)
    Py_XDECREF(old_address)


cdef object _ip_text(const unsigned char *a, bint v6):
    cdef char text[48]
    cdef int n = pp_format_ipv6(a, text) if v6 else pp_format_ipv4(a, text)
    # The formatter writes ASCII only: copy it into a fresh 1-byte-kind str
    # instead of decoding (and re-checking) it.
    cdef object host = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(host), text, n)
    return host


cdef object _unix_path(const char *raw):
    cdef Py_ssize_t n
    if raw[0] == 0:
        # Abstract namespace (Linux): bytes, as getpeername() gives them;
        # an all-zero block is an unnamed socket.
        n = UNIX_PATH
        while n > 0 and raw[n - 1] == 0:
            n -= 1
        return PyBytes_FromStringAndSize(raw, n) if n else ""
    n = 0
    while n < UNIX_PATH and raw[n] != 0:
        n += 1
    return PyUnicode_DecodeFSDefaultAndSize(raw, n)


cdef tuple _tlv_tuple(bytes raw, Py_ssize_t off, Py_ssize_t end):
    # The TLVs of raw[off:end], already validated; this only cuts them out.
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t length
    cdef list out = []
    while off < end:
        length = (b[off + 1] << 8) | b[off + 2]
        out.append((b[off], PyBytes_FromStringAndSize(<const char *>b + off + TLV_HDR, length)))
        off += TLV_HDR + length
    return tuple(out)


# -- typed views, straight from the raw TLV bytes ---------------------------------------


# Reuse what repeats, for the views as for the addresses: behind one
# balancer the ALPN, the authority and the TLS fields are nearly always
# the same from one connection to the next.  The last value made for each
# field is kept and handed out again when its bytes come back (only ASCII
# text is kept: its characters are its bytes).  As the address cache
# (see PP_REUSE above): GIL builds only, read and replaced in C.  The
# unique id is not kept: it is unique.
cdef enum:
    LAST_ALPN, LAST_AUTHORITY, LAST_NETNS, LAST_AWS
    LAST_SSL, LAST_SSL_VERSION, LAST_SSL_CN, LAST_SSL_CIPHER, LAST_SSL_SIG_ALG, LAST_SSL_KEY_ALG
    LAST_COUNT

cdef PyObject *_last[LAST_COUNT]
memset(_last, 0, sizeof(_last))


cdef object _text(const unsigned char *v, Py_ssize_t n, int field):
    # Text views never raise: the exact bytes stay available in ``tlvs``.
    # ASCII (the usual case) is copied straight into a 1-byte-kind str.
    cdef Py_ssize_t i
    cdef PyObject *last = _last[field] if PP_REUSE else NULL
    for i in range(n):
        if v[i] >= 0x80:
            return PyUnicode_DecodeUTF8(<const char *>v, n, "replace")
    if (last != NULL and PyUnicode_GET_LENGTH(<object>last) == n
            and memcmp(PyUnicode_DATA(<object>last), v, n) == 0):
        return <object>last
    text = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(text), v, n)
    if PP_REUSE:
        _replace(&_last[field], text)
    return text


cdef object _bytes(const unsigned char *v, Py_ssize_t n, int field):
    cdef PyObject *last = _last[field] if PP_REUSE and field >= 0 else NULL
    if (last != NULL and PyBytes_GET_SIZE(<object>last) == n
            and memcmp(PyBytes_AS_STRING(<object>last), v, n) == 0):
        return <object>last
    value = PyBytes_FromStringAndSize(<const char *>v, n)
    if PP_REUSE and field >= 0:
        _replace(&_last[field], value)
    return value


cdef inline uint32_t _be32(const unsigned char *v) noexcept nogil:
    return (<uint32_t>v[0] << 24) | (<uint32_t>v[1] << 16) | (<uint32_t>v[2] << 8) | v[3]


cdef tuple _compute_views(bytes raw, Py_ssize_t off):
    """Every typed view in one walk; each reads the FIRST TLV of its type
    (for AWS and Azure: of its type and subtype), as _header.views does."""
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t n
    cdef const unsigned char *v
    cdef int t
    cdef unsigned int seen = 0, bit
    cdef uint64_t gcp
    alpn = authority = unique_id = netns = crc = ssl = aws = azure = gcp_id = None
    while off < end:
        t = b[off]
        n = (b[off + 1] << 8) | b[off + 2]
        v = b + off + TLV_HDR
        off += TLV_HDR + n
        bit = _VIEW_BIT[t]
        if bit == 0 or seen & bit:
            continue
        if t == T_AWS or t == T_AZURE:
            if n < 1 or v[0] != (SUB_AWS_VPCE if t == T_AWS else SUB_AZURE_LINK):
                continue
            seen |= bit
            if t == T_AWS:
                aws = _text(v + 1, n - 1, LAST_AWS)
            elif n == 5:
                azure = (<uint32_t>v[4] << 24) | (<uint32_t>v[3] << 16) | (<uint32_t>v[2] << 8) | v[1]
            continue
        seen |= bit
        if t == T_ALPN:
            alpn = _bytes(v, n, LAST_ALPN)
        elif t == T_AUTHORITY:
            authority = _text(v, n, LAST_AUTHORITY)
        elif t == T_UNIQUE_ID:
            unique_id = _bytes(v, n, -1)
        elif t == T_NETNS:
            netns = _text(v, n, LAST_NETNS)
        elif t == T_CRC32C:
            crc = _be32(v)
        elif t == T_SSL:
            ssl = _ssl_again(raw, v - b, n)
        elif n == 8:  # T_GCP
            gcp = (<uint64_t>_be32(v) << 32) | _be32(v + 4)
            gcp_id = gcp
    return (alpn, authority, unique_id, netns, crc, ssl, aws, azure, gcp_id)


@cython.final
@cython.no_gc
cdef class SSLInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS.

    Immutable.  ``client`` holds the PP2_CLIENT_* bits, ``verify`` is 0
    when the client presented a certificate that verified; the text fields
    are the first sub-TLV of their type (None when absent), and ``tlvs``
    has every sub-TLV in wire order.
    """

    # Fields: _parser_c.pxd (the object ones read from Python through
    # the member descriptors added below).

    def __init__(self, int client, verify, tlvs):
        # As the pure SSLInfo: the fields of an SSL TLV whose value is made
        # of these, decoded the same way parse() decodes one.
        cdef SSLInfo decoded
        # Filled once, before the object is shared (calling __init__ again
        # on one in use is refused; two racing calls on one made with
        # __new__ could only leak a field, never release one in use).
        if self._raw is not None:
            raise TypeError("SSLInfo is immutable")
        value = (bytes((client,)) + int(verify).to_bytes(4, "big")
                 + b"".join([_TLV_HEAD.pack(t, len(v)) + v for t, v in tlvs]))
        decoded = _ssl_from_value(value)
        if decoded is None:
            raise ValueError("the sub-TLVs do not fit in an SSL TLV")
        self.client = decoded.client
        _set(&self._verify, <object>decoded._verify)
        _set(&self._version, <object>decoded._version)
        _set(&self._cn, <object>decoded._cn)
        _set(&self._cipher, <object>decoded._cipher)
        _set(&self._sig_alg, <object>decoded._sig_alg)
        _set(&self._key_alg, <object>decoded._key_alg)
        self._raw = decoded._raw
        self._start = decoded._start
        self._end = decoded._end

    def __dealloc__(self):
        # As ProxyHeader's: the last reference is gone.
        Py_XDECREF(self._verify)
        Py_XDECREF(self._version)
        Py_XDECREF(self._cn)
        Py_XDECREF(self._cipher)
        Py_XDECREF(self._sig_alg)
        Py_XDECREF(self._key_alg)
        Py_XDECREF(self._tlvs)

    @classmethod
    def from_value(cls, value):
        """Decode the value of an SSL TLV; None when it is malformed."""
        return _ssl_from_value(value)

    @property
    def verified(self):
        """``verify == 0``."""
        return self._verify != NULL and <object>self._verify == 0

    @property
    def tlvs(self):
        """Every sub-TLV, in wire order."""
        cdef PyObject *tlvs = pp_once_get(&self._tlvs)
        if tlvs != NULL:
            return <tuple>tlvs
        if self._raw is None:  # made with SSLInfo.__new__ alone
            return _EMPTY
        return _publish(&self._tlvs, _tlv_tuple(self._raw, self._start + SSL_FIXED, self._end))

    def __eq__(self, other):
        return H.ssl_eq(self, other)

    def __hash__(self):
        return hash((self.client, <object>self._verify if self._verify != NULL else None, self.tlvs))

    def __repr__(self):
        return H.ssl_repr(self)

    def to_dict(self):
        """The fields as JSON-ready values (sub-TLV values in hex)."""
        return H.ssl_to_dict(self)

    def __reduce__(self):
        return (_ssl_from_value, (self._raw[self._start:self._end],))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


cdef extern from "pp_members.h":
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
        int flags
        const char *doc
    int Py_T_OBJECT_EX
    int Py_READONLY
    int pp_add_members(type t, PyMemberDef *members) except -1

# The object fields of SSLInfo, as member descriptors: CPython reads those
# from a fixed offset once the attribute access is specialised, where a
# property would be a lookup and a call on each read.
cdef PyMemberDef _SSL_MEMBERS[7]


cdef void _member(int i, const char *name, Py_ssize_t offset, const char *doc) noexcept:
    _SSL_MEMBERS[i].name = name
    _SSL_MEMBERS[i].type = Py_T_OBJECT_EX
    _SSL_MEMBERS[i].offset = offset
    _SSL_MEMBERS[i].flags = Py_READONLY
    _SSL_MEMBERS[i].doc = doc


cdef int _install_ssl_members() except -1:
    # Where each field sits in the object, measured on one.  At import,
    # which one thread runs; the type is not changed afterwards.
    cdef SSLInfo probe = SSLInfo.__new__(SSLInfo)
    cdef char *base = <char *><PyObject *>probe
    _member(0, "verify", <char *>&probe._verify - base, "0 when the client's certificate verified, non-zero otherwise.")
    _member(1, "version", <char *>&probe._version - base, "PP2_SUBTYPE_SSL_VERSION, e.g. ``TLSv1.3``.")
    _member(2, "cn", <char *>&probe._cn - base, "PP2_SUBTYPE_SSL_CN: the client certificate's Common Name.")
    _member(3, "cipher", <char *>&probe._cipher - base, "PP2_SUBTYPE_SSL_CIPHER.")
    _member(4, "sig_alg", <char *>&probe._sig_alg - base, "PP2_SUBTYPE_SSL_SIG_ALG: the certificate's signature algorithm.")
    _member(5, "key_alg", <char *>&probe._key_alg - base, "PP2_SUBTYPE_SSL_KEY_ALG: the certificate's key algorithm.")
    memset(&_SSL_MEMBERS[6], 0, sizeof(PyMemberDef))
    return pp_add_members(SSLInfo, _SSL_MEMBERS)


_install_ssl_members()


H.SSL_TYPES.append(SSLInfo)


def _ssl_from_value(value):
    cdef bytes raw = bytes(value)
    return _ssl_info(raw, 0, PyBytes_GET_SIZE(raw))


cdef object _ssl_again(bytes raw, Py_ssize_t start, Py_ssize_t n):
    """_ssl_info, or the last SSLInfo it made when the value is the same."""
    cdef PyObject *last = _last[LAST_SSL] if PP_REUSE else NULL
    cdef SSLInfo s
    if last != NULL:
        s = <SSLInfo>last
        if (s._end - s._start == n and memcmp(PyBytes_AS_STRING(s._raw) + s._start,
                                              PyBytes_AS_STRING(raw) + start, n) == 0):
            return s
    info = _ssl_info(raw, start, n)
    if PP_REUSE and info is not None:
        _replace(&_last[LAST_SSL], info)
    return info


cdef object _ssl_info(bytes raw, Py_ssize_t start, Py_ssize_t n):
    """The SSLInfo of the value raw[start:start + n], or None when malformed."""
    cdef const unsigned char *v = <const unsigned char *>PyBytes_AS_STRING(raw) + start
    cdef Py_ssize_t off = SSL_FIXED, end_sub, k
    cdef int t
    cdef const unsigned char *sub
    cdef SSLInfo s
    if n < SSL_FIXED:
        return None
    # The sub-TLVs must tile the rest of the value.
    while off < n:
        if n - off < TLV_HDR:
            return None
        end_sub = off + TLV_HDR + ((v[off + 1] << 8) | v[off + 2])
        if end_sub > n:
            return None
        off = end_sub
    s = SSLInfo.__new__(SSLInfo)
    s.client = v[0]
    _set(&s._verify, _be32(v + 1))
    off = SSL_FIXED
    while off < n:
        t = v[off]
        k = (v[off + 1] << 8) | v[off + 2]
        sub = v + off + TLV_HDR
        off += TLV_HDR + k
        if t == SUB_SSL_VERSION:
            if s._version == NULL:
                _set(&s._version, _text(sub, k, LAST_SSL_VERSION))
        elif t == SUB_SSL_CN:
            if s._cn == NULL:
                _set(&s._cn, _text(sub, k, LAST_SSL_CN))
        elif t == SUB_SSL_CIPHER:
            if s._cipher == NULL:
                _set(&s._cipher, _text(sub, k, LAST_SSL_CIPHER))
        elif t == SUB_SSL_SIG_ALG:
            if s._sig_alg == NULL:
                _set(&s._sig_alg, _text(sub, k, LAST_SSL_SIG_ALG))
        elif t == SUB_SSL_KEY_ALG:
            if s._key_alg == NULL:
                _set(&s._key_alg, _text(sub, k, LAST_SSL_KEY_ALG))
    _set_default(&s._version)
    _set_default(&s._cn)
    _set_default(&s._cipher)
    _set_default(&s._sig_alg)
    _set_default(&s._key_alg)
    s._raw = raw
    s._start = start
    s._end = start + n
    return s


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


# -- version 2 ------------------------------------------------------------------------


cdef object _parse_v2(const unsigned char *b, Py_ssize_t n, bint verify):
    cdef int command, fam, block
    cdef Py_ssize_t length, total, tlv_start, crc_offset = -1
    cdef ProxyHeader h
    if n < V2_FIXED:
        _check_v2_prefix(b, n)
        raise _incomplete(n, V2_FIXED)
    command = b[12] & 0x0F
    fam = b[13]
    if (memcmp(b, PyBytes_AS_STRING(_SIG), 12) != 0 or b[12] >> 4 != V2_VERSION or command > CMD_PROXY
            or (command and not PROXY_FAMILY_OK[fam])):
        _check_v2_prefix(b, n)
    length = (b[14] << 8) | b[15]
    total = V2_FIXED + length
    block = BLOCK_LEN[fam >> 4]
    if command:
        if length < block:
            # Raised out of line, as every error of the fixed part: here its
            # formatting would make _parse_v2 too big for the compiler to
            # inline it into _parse (about 20 instructions per header).
            _check_v2_prefix(b, n)
    elif length < block:
        # LOCAL: the advertised family's address block is skipped when it
        # fits; TLVs, if any, follow it (or the fixed part when it does not).
        block = 0
    tlv_start = V2_FIXED + block
    # PROXY with addresses: the rest must be TLVs, refused as soon as a
    # byte shows it is not.  LOCAL and PROXY over AF_UNSPEC: a body the
    # receiver must ignore, read once it is all there; its TLVs are kept
    # when it is a valid TLV area, and it is discarded when not.
    if tlv_start < total and (n >= total or (command and block)):
        crc_offset = _walk_tlvs(b, n, tlv_start, total, command and block)
        if crc_offset == NOT_TLVS:
            tlv_start = total
            crc_offset = -1
    if n < total:
        raise _incomplete(n, total)
    if crc_offset >= 0 and verify:
        _verify_crc(b, crc_offset, total)

    h = ProxyHeader.__new__(ProxyHeader)
    h._version = 2
    h._command = command
    h._family = FAMILY_OF[fam >> 4]
    h._protocol = PROTOCOL_OF[fam & 0x0F]
    h._length = total
    h._tlv_start = tlv_start
    if command and (h._family == F_INET or h._family == F_INET6):
        h._has_ip = True
        if h._family == F_INET:
            memcpy(&h._addr[0], b + 16, 4)
            memcpy(&h._addr[16], b + 20, 4)
            h._sport = (b[24] << 8) | b[25]
            h._dport = (b[26] << 8) | b[27]
        else:
            h._v6 = True
            memcpy(h._addr, b + 16, 32)
            h._sport = (b[48] << 8) | b[49]
            h._dport = (b[50] << 8) | b[51]
    if tlv_start < total or (command and h._family == F_UNIX):
        h._raw = PyBytes_FromStringAndSize(<const char *>b, total)
    return h


cdef int _check_v2_prefix(const unsigned char *b, Py_ssize_t n) except -1:
    """Raise for the first byte of a v2 fixed part that no header can have
    (the length field counts as one: a PROXY address block must fit)."""
    cdef const unsigned char *sig = <const unsigned char *>PyBytes_AS_STRING(_SIG)
    cdef Py_ssize_t i
    cdef int length, block
    for i in range(min(n, 12)):
        if b[i] != sig[i]:
            raise _invalid(C.MSG_V2_SIGNATURE, i)
    if n > 12:
        if b[12] >> 4 != V2_VERSION:
            raise InvalidHeader(C.MSG_V2_VERSION.format(version=b[12] >> 4), 12)
        if b[12] & 0x0F > CMD_PROXY:
            raise InvalidHeader(C.MSG_V2_COMMAND.format(command=b[12] & 0x0F), 12)
        if n > 13 and b[12] & 0x0F and not PROXY_FAMILY_OK[b[13]]:
            raise InvalidHeader(C.MSG_V2_FAMILY.format(family=b[13]), 13)
        if n > 15 and b[12] & 0x0F:
            length = (b[14] << 8) | b[15]
            block = BLOCK_LEN[b[13] >> 4]
            if length < block:
                raise InvalidHeader(C.MSG_V2_ADDRESS_LENGTH.format(length=length, needed=block), 14)
    return 0


cdef enum:
    # _walk_tlvs's answer, when not strict, for a body that is not TLVs
    NOT_TLVS = -3


cdef Py_ssize_t _walk_tlvs(const unsigned char *b, Py_ssize_t n, Py_ssize_t off,
                           Py_ssize_t total, bint strict) except -2:
    """Check the TLVs of b[off:total] present so far (b holds n bytes);
    return the first CRC32C TLV's offset or -1.  As soon as they cannot
    form a valid TLV area: InvalidHeader when strict, NOT_TLVS when not."""
    cdef Py_ssize_t crc_offset = -1, end
    cdef int tlv_type, tlv_length
    while off < total:
        if total - off < TLV_HDR:
            if not strict:
                return NOT_TLVS
            raise InvalidHeader(C.MSG_V2_TLV_TRUNCATED.format(count=total - off, offset=off), off)
        if off + TLV_HDR > n:
            break
        tlv_type = b[off]
        tlv_length = (b[off + 1] << 8) | b[off + 2]
        end = off + TLV_HDR + tlv_length
        if end > total:
            if not strict:
                return NOT_TLVS
            raise InvalidHeader(C.MSG_V2_TLV_OVERRUN.format(type=tlv_type, offset=off), off)
        if tlv_type == T_CRC32C:
            if tlv_length != CRC_LEN:
                if not strict:
                    return NOT_TLVS
                _tlv_length_error(tlv_type, off, tlv_length)
            if crc_offset < 0:
                crc_offset = off
        elif tlv_type == T_UNIQUE_ID and tlv_length > UNIQUE_ID_MAX:
            if not strict:
                return NOT_TLVS
            _tlv_length_error(tlv_type, off, tlv_length)
        off = end
    return crc_offset


cdef int _tlv_length_error(int tlv_type, Py_ssize_t off, int length) except -1:
    raise InvalidHeader(C.MSG_V2_TLV_LENGTH.format(type=tlv_type, offset=off, length=length), off)


cdef int _verify_crc(const unsigned char *b, Py_ssize_t off, Py_ssize_t total) except -1:
    # The checksum covers the header with the CRC value itself zeroed; the
    # caller's buffer is not touched, the zeros are fed in between.
    cdef Py_ssize_t value = off + TLV_HDR
    cdef uint32_t expected = ((<uint32_t>b[value] << 24) | (<uint32_t>b[value + 1] << 16)
                              | (<uint32_t>b[value + 2] << 8) | b[value + 3])
    cdef unsigned char zeros[4]
    cdef uint32_t crc
    zeros[0] = zeros[1] = zeros[2] = zeros[3] = 0
    crc = pp_crc32c(0, b, <size_t>value)
    crc = pp_crc32c(crc, zeros, 4)
    crc = pp_crc32c(crc, b + value + 4, <size_t>(total - value - 4))
    if crc != expected:
        raise ChecksumMismatch(
            C.MSG_V2_CHECKSUM.format(offset=off, expected=expected, computed=crc),
            off, expected, crc)
    return 0


# -- version 1 ------------------------------------------------------------------------

cdef struct Address:
    # Incremental validator of one v1 address; see _Address in _parser_py.
    bint v6
    int lead       # v6: 0 nothing yet, 1 a lone leading ':', 2 inside
    int groups     # v6: 16-bit groups completed
    bint dc        # v6: '::' seen
    int xd         # v6: hex digits in the current group
    bint single    # v6: last byte was a ':' that ended a group
    int tokdec     # v6: current group as a decimal octet, -1 if it cannot be one
    bint v4        # dotted-quad part active
    int octets
    bint digit     # a digit seen in the current octet
    int cur


cdef inline void _addr_init(Address *a, bint v6) noexcept nogil:
    a.v6 = v6
    a.lead = 0
    a.groups = 0
    a.dc = False
    a.xd = 0
    a.single = False
    a.tokdec = 0
    a.v4 = not v6
    a.octets = 0
    a.digit = False
    a.cur = 0


cdef inline bint _is_hex(unsigned char c) noexcept nogil:
    return (0x30 <= c <= 0x39) or (0x61 <= c <= 0x66) or (0x41 <= c <= 0x46)


cdef inline bint _feed_v4(Address *a, unsigned char c) noexcept nogil:
    if 0x30 <= c <= 0x39:
        if a.digit and a.cur == 0:
            return False
        a.cur = a.cur * 10 + c - 0x30
        if a.cur > 255:
            return False
        if not a.digit:
            a.octets += 1
            if a.octets > 4:
                return False
            a.digit = True
        return True
    if c == 0x2E:
        if not a.digit or a.octets == 4:
            return False
        a.digit = False
        a.cur = 0
        return True
    return False


cdef inline bint _addr_feed(Address *a, unsigned char c) noexcept nogil:
    if a.v4:
        return _feed_v4(a, c)
    if a.lead == 0:
        a.lead = 2
        if c == 0x3A:
            a.lead = 1
            return True
    elif a.lead == 1:
        if c != 0x3A:
            return False
        a.lead = 2
    if _is_hex(c):
        if a.xd == 4:
            return False
        a.xd += 1
        a.single = False
        if 0x30 <= c <= 0x39:
            if a.tokdec >= 0:
                if a.xd > 1 and a.tokdec == 0:
                    a.tokdec = -1
                else:
                    a.tokdec = a.tokdec * 10 + c - 0x30
                    if a.tokdec > 255:
                        a.tokdec = -1
        else:
            a.tokdec = -1
        # '::' must stand for at least one group.
        if a.xd == 1 and a.groups + 1 >= (8 if a.dc else 9):
            return False
        return True
    if c == 0x3A:
        if a.xd == 0:
            if a.dc:
                return False
            a.dc = True
            a.single = False
            return True
        a.groups += 1
        a.xd = 0
        a.single = True
        a.tokdec = 0
        return a.groups < (7 if a.dc else 8)
    if c == 0x2E:
        if a.xd == 0 or a.tokdec < 0:
            return False
        if (a.groups > 5) if a.dc else (a.groups != 6):
            return False
        a.v4 = True
        a.octets = 1
        a.digit = False
        a.cur = 0
        return True
    return False


cdef inline bint _addr_complete(Address *a) noexcept nogil:
    cdef int groups
    if a.v4:
        return a.octets == 4 and a.digit
    if a.lead < 2 or (a.xd == 0 and a.single):
        return False
    groups = a.groups + (1 if a.xd else 0)
    return groups < 8 if a.dc else groups == 8


cdef inline int _addr_need(Address *a) noexcept nogil:
    cdef int left
    if a.v4:
        left = 2 * (4 - a.octets)
        return left if a.digit else left - 1
    if a.lead < 2:
        return 2 - a.lead
    if a.xd:
        return 0 if (a.dc or a.groups == 7) else 2
    return 1 if a.single else 0


cdef inline int _v1_need(int state, Address *a, bint v6, int port_digits) noexcept nogil:
    # Bytes still needed, at the least, to finish the line from this state;
    # " 0 0\r\n" follows the destination, "0.0.0.0" / "::" is the shortest address.
    if state == ST_SRC:
        return _addr_need(a) + 1 + (V1_MIN_IPV6 if v6 else V1_MIN_IPV4) + V1_AFTER_DST
    if state == ST_DST:
        return _addr_need(a) + V1_AFTER_DST
    if state == ST_SPORT:
        return (0 if port_digits else 1) + V1_AFTER_SPORT
    if state == ST_DPORT:
        return (0 if port_digits else 1) + V1_AFTER_DPORT
    if state == ST_LF:
        return 1
    return 2


cdef object _scan_v1(const unsigned char *b, Py_ssize_t n):
    """Byte-by-byte v1 parser, the twin of _parser_py._scan_v1."""
    cdef Py_ssize_t limit = n if n < V1_MAX else V1_MAX
    # Below this offset no state can need more than the limit allows.
    cdef Py_ssize_t check_from = V1_CHECK_FROM
    cdef const unsigned char *prefix = <const unsigned char *>PyBytes_AS_STRING(_V1_PREFIX)
    cdef const unsigned char *tcp = <const unsigned char *>PyBytes_AS_STRING(_V1_TCP4)
    cdef const unsigned char *unknown = <const unsigned char *>PyBytes_AS_STRING(_V1_UNKNOWN)
    cdef int state = ST_KEYWORD
    cdef bint v6 = False
    cdef Address a
    cdef int port_digits = 0
    cdef long port = 0
    cdef long ports[2]
    cdef Py_ssize_t spans[4]
    cdef Py_ssize_t i
    cdef unsigned char c
    ports[0] = ports[1] = 0
    spans[0] = spans[1] = spans[2] = spans[3] = 0
    _addr_init(&a, False)
    for i in range(limit):
        c = b[i]
        if state == ST_KEYWORD:
            if i < 6:
                if c != prefix[i]:
                    raise _invalid(C.MSG_V1_PREFIX, i)
                continue
            if i == 6:
                if c != V1_T and c != V1_U:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if b[6] == V1_T:
                if i == 9:
                    if c != V1_4 and c != V1_6:
                        raise _invalid(C.MSG_V1_PROTOCOL, i)
                    v6 = c == V1_6
                elif c != tcp[i - 6]:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                if i == 10:
                    state = ST_SRC
                    _addr_init(&a, v6)
                    spans[0] = i + 1
                continue
            if i < 13:
                if c != unknown[i - 6]:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if c == 0x20:
                state = ST_TAIL
            elif c == 0x0D:
                state = ST_LF
            else:
                raise _invalid(C.MSG_V1_PROTOCOL, i)
        elif state == ST_SRC or state == ST_DST:
            if c == 0x20:
                if not _addr_complete(&a):
                    raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
                if state == ST_SRC:
                    spans[1] = i
                    spans[2] = i + 1
                    _addr_init(&a, v6)
                    state = ST_DST
                else:
                    spans[3] = i
                    state = ST_SPORT
                    port_digits = 0
                    port = 0
            elif not _addr_feed(&a, c):
                raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
        elif state == ST_SPORT or state == ST_DPORT:
            if c == (0x20 if state == ST_SPORT else 0x0D):
                if port_digits == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                ports[state - ST_SPORT] = port
                state += 1
                port_digits = 0
                port = 0
            elif 0x30 <= c <= 0x39:
                if port_digits and port == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                port = port * 10 + c - 0x30
                port_digits += 1
                if port > 0xFFFF:
                    raise _invalid(C.MSG_V1_PORT, i)
            else:
                raise _invalid(C.MSG_V1_PORT, i)
        elif state == ST_LF:
            if c != 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
            return _v1_result(b, i + 1, v6, spans, ports)
        else:
            if c == 0x0D:
                state = ST_LF
            elif c == 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
        if i >= check_from and i + 1 + _v1_need(state, &a, v6, port_digits) > V1_MAX:
            raise _invalid(C.MSG_V1_TOO_LONG, i)
    raise _incomplete(n, n + 1)


cdef object _fast_v1(const unsigned char *b, Py_ssize_t n):
    """A complete, valid TCP4/TCP6 line in one tight pass, or None.

    None means "not certainly valid": UNKNOWN, an IPv6 address with a
    dotted tail, an error, a prefix.  _scan_v1 then decides, byte by byte,
    with the offsets and ``needed`` it always reports; this pass accepts
    only lines the scanner accepts, with the same result.
    """
    # The fields are read in order, each bounded by the first 107 bytes;
    # no field may hold a CR or LF, so the CRLF after the destination port
    # ends the line (no search for the LF first).
    cdef Py_ssize_t limit = n if n < V1_MAX else V1_MAX
    cdef Py_ssize_t end, p
    cdef bint v6
    cdef long sport, dport
    cdef unsigned char addr[32]
    cdef ProxyHeader h
    if limit <= V1_TCP_START:
        return None
    if memcmp(b, _V1_TCP_HEAD, V1_TCP_START - 2) != 0 or b[V1_TCP_START - 1] != 0x20:
        return None
    if b[V1_TCP_START - 2] == V1_4:
        v6 = False
        p = _quad(b, V1_TCP_START, limit, &addr[0])
        if p < 0 or b[p] != 0x20:
            return None
        p = _quad(b, p + 1, limit, &addr[16])
    elif b[V1_TCP_START - 2] == V1_6:
        v6 = True
        p = _ipv6(b, V1_TCP_START, limit, &addr[0])
        if p < 0 or b[p] != 0x20:
            return None
        p = _ipv6(b, p + 1, limit, &addr[16])
    else:
        return None
    if p < 0 or b[p] != 0x20:
        return None
    p = _port(b, p + 1, limit, &sport)
    if p < 0 or b[p] != 0x20:
        return None
    p = _port(b, p + 1, limit, &dport)
    if p < 0 or p + 1 >= limit or b[p] != 0x0D or b[p + 1] != 0x0A:
        return None
    end = p  # the CR
    h = ProxyHeader.__new__(ProxyHeader)
    h._version = 1
    h._command = CMD_PROXY
    h._length = end + 2
    h._protocol = PROTO_STREAM
    h._has_ip = True
    h._v6 = v6
    h._family = F_INET6 if v6 else F_INET
    h._sport = <uint16_t>sport
    h._dport = <uint16_t>dport
    if v6:
        memcpy(h._addr, addr, 32)
    else:
        memcpy(&h._addr[0], &addr[0], 4)
        memcpy(&h._addr[16], &addr[16], 4)
    return h


cdef inline Py_ssize_t _quad(const unsigned char *b, Py_ssize_t p, Py_ssize_t limit,
                             unsigned char *out) noexcept nogil:
    # Four decimal octets without leading zeros, read from b[p:limit];
    # returns the offset after them (where a byte is left to read), or -1.
    cdef const unsigned char *after = pp_parse_ipv4(b + p, b + limit, out)
    return -1 if after == NULL or after - b >= limit else after - b


cdef inline Py_ssize_t _port(const unsigned char *b, Py_ssize_t p, Py_ssize_t end,
                             long *out) noexcept nogil:
    # One to five digits, no leading zero, at most 65535, and a byte after
    # them before end: the loop only reads digits (six at most, so the value
    # cannot overflow), and the checks come once, after it.
    cdef Py_ssize_t start = p
    cdef Py_ssize_t stop = end if end - p < V1_PORT_SCAN else p + V1_PORT_SCAN
    cdef long value = 0
    cdef unsigned int digit
    while p < stop:
        digit = b[p] - 0x30
        if digit > 9:
            break
        value = value * 10 + digit
        p += 1
    if (p == start or p >= end or p - start > 5 or (b[start] == 0x30 and p - start > 1)
            or value > 0xFFFF):
        return -1
    out[0] = value
    return p


cdef inline Py_ssize_t _ipv6(const unsigned char *b, Py_ssize_t p, Py_ssize_t end,
                             unsigned char *out) noexcept nogil:
    # Hex groups with at most one "::" (standing for one group or more) and
    # no dotted tail; returns the offset after the address, or -1.
    cdef int groups[8]
    cdef int count = 0, gap = -1, value, digits, k, h
    if p + 1 < end and b[p] == 0x3A:
        if b[p + 1] != 0x3A:
            return -1
        gap = 0
        p += 2
        if p < end and b[p] == 0x20:
            memset(out, 0, 16)
            return p
    while True:
        value = 0
        digits = 0
        while p < end and digits < 5:
            h = _hex_digit(b[p])
            if h < 0:
                break
            value = (value << 4) | h
            digits += 1
            p += 1
        if digits == 0 or digits > 4 or count == 8:
            return -1
        groups[count] = value
        count += 1
        if p >= end:
            return -1
        if b[p] == 0x20:
            break
        if b[p] != 0x3A:
            return -1
        p += 1
        if p < end and b[p] == 0x3A:
            if gap >= 0:
                return -1
            gap = count
            p += 1
            if p < end and b[p] == 0x20:
                break
    if gap < 0:
        if count != 8:
            return -1
    elif count > 7:
        return -1
    memset(out, 0, 16)
    for k in range(count):
        h = k if gap < 0 or k < gap else k + 8 - count
        out[2 * h] = <unsigned char>(groups[k] >> 8)
        out[2 * h + 1] = <unsigned char>groups[k]
    return p


cdef inline int _hex_digit(unsigned char c) noexcept nogil:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    if 0x61 <= c <= 0x66:
        return c - 0x61 + 10
    return -1


cdef object _v1_result(const unsigned char *b, Py_ssize_t length, bint v6,
                       Py_ssize_t *spans, long *ports):
    cdef ProxyHeader h = ProxyHeader.__new__(ProxyHeader)
    h._version = 1
    h._command = CMD_PROXY
    h._length = length
    if b[6] == V1_U:  # UNKNOWN: addresses, if any, are ignored
        return h
    h._protocol = PROTO_STREAM
    h._has_ip = True
    h._v6 = v6
    h._sport = <uint16_t>ports[0]
    h._dport = <uint16_t>ports[1]
    if v6:
        h._family = F_INET6
        _pack_ipv6(b + spans[0], spans[1] - spans[0], &h._addr[0])
        _pack_ipv6(b + spans[2], spans[3] - spans[2], &h._addr[16])
    else:
        h._family = F_INET
        _pack_ipv4(b + spans[0], spans[1] - spans[0], &h._addr[0])
        _pack_ipv4(b + spans[2], spans[3] - spans[2], &h._addr[16])
    return h


cdef inline void _pack_ipv4(const unsigned char *s, Py_ssize_t n, unsigned char *out) noexcept nogil:
    # The text was validated by the scanner: octets of decimal digits and dots.
    cdef Py_ssize_t i
    cdef int k = 0, value = 0
    for i in range(n):
        if s[i] == 0x2E:
            out[k] = <unsigned char>value
            k += 1
            value = 0
        else:
            value = value * 10 + s[i] - 0x30
    out[k] = <unsigned char>value


cdef inline int _hex_value(unsigned char c) noexcept nogil:
    if c <= 0x39:
        return c - 0x30
    return (c | 0x20) - 0x61 + 10


cdef void _pack_ipv6(const unsigned char *s, Py_ssize_t n, unsigned char *out) noexcept nogil:
    # The text was validated by the scanner; expand '::' and a dotted tail.
    cdef unsigned char tmp[16]
    cdef int tp = 0, colonp = -1, value = 0, xd = 0, k
    cdef Py_ssize_t i = 0, tok = 0
    memset(tmp, 0, 16)
    if s[0] == 0x3A:
        i = 1
    tok = i
    while i < n:
        if s[i] == 0x3A:
            tok = i + 1
            if xd == 0:
                colonp = tp
            else:
                tmp[tp] = <unsigned char>(value >> 8)
                tmp[tp + 1] = <unsigned char>value
                tp += 2
                xd = 0
                value = 0
        elif s[i] == 0x2E:
            _pack_ipv4(s + tok, n - tok, &tmp[tp])
            tp += 4
            xd = 0
            break
        else:
            value = (value << 4) | _hex_value(s[i])
            xd += 1
        i += 1
    if xd:
        tmp[tp] = <unsigned char>(value >> 8)
        tmp[tp + 1] = <unsigned char>value
        tp += 2
    if colonp >= 0:
        k = tp - colonp
        memcpy(out, tmp, colonp)
        memset(out + colonp, 0, 16 - k - colonp)
        memcpy(out + 16 - k, tmp + colonp, k)
    else:
        memcpy(out, tmp, 16)

