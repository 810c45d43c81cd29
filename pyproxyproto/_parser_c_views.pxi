# The typed views, read straight from the raw TLV bytes, and SSLInfo.
# Included by _parser_c.pyx (one extension module); declarations in _parser_c.pxd.

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
