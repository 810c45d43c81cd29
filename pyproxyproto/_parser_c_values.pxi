# The Python values a header hands out (addresses, paths, TLVs, view values), and the caches that reuse them.
# Included by _parser_c.pyx (one extension module); declarations in _parser_c.pxd.

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
