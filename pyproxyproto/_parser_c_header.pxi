# The header object: ProxyHeader, its publish-once slots, deallocation and unpickling.
# Included by _parser_c.pyx (one extension module); declarations in _parser_c.pxd.

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
