# The Cython backend's declarations: the header types' C fields and the C
# entry point, for the module itself and for compiled callers (the
# handshake, _handshake_c), which read a header without Python calls.

from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint16_t


cdef class ProxyHeader:
    cdef uint8_t _version
    cdef uint8_t _command
    cdef uint8_t _family      # index into _FAMILIES
    cdef uint8_t _protocol    # index into _PROTOCOLS
    cdef bint _has_ip         # _addr and the ports hold IPv4/IPv6 addresses
    cdef bint _v6
    cdef uint16_t _sport
    cdef uint16_t _dport
    cdef Py_ssize_t _length
    cdef Py_ssize_t _tlv_start
    cdef unsigned char _addr[32]   # source at 0, destination at 16 (zero after IPv4's 4 bytes)
    cdef bytes _raw                # the v2 header, kept when it has TLVs or UNIX paths
    cdef PyObject *_source         # once: the source address
    cdef PyObject *_destination    # once: the destination address
    cdef PyObject *_tlvs           # once: the TLV tuple
    cdef PyObject *_views          # once: every typed view, in _header.VIEW_NAMES order

    cdef object _address(self, int side)   # source (0) or destination (1)
    cdef bint _has_unix(self) noexcept
    cdef object _make_address(self, int side)
    cdef object _view(self, Py_ssize_t index)


cdef class SSLInfo:
    cdef readonly int client
    cdef PyObject *_verify
    cdef PyObject *_version
    cdef PyObject *_cn
    cdef PyObject *_cipher
    cdef PyObject *_sig_alg
    cdef PyObject *_key_alg
    cdef bytes _raw        # bytes holding the TLV value (the header's own, not a copy)
    cdef Py_ssize_t _start  # where the value starts in _raw
    cdef Py_ssize_t _end
    cdef PyObject *_tlvs   # once: the sub-TLV tuple


# parse(data, v1=, v2=, verify_checksum=), without its argument parsing.
cdef object parse_buffer(object data, bint v1, bint v2, bint verify_checksum)
