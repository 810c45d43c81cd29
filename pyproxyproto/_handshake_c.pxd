# Declarations for pyproxyproto/_handshake.py compiled as pyproxyproto._handshake_c
# (Cython's pure-Python mode: the .py is the source, this file types it).

from pyproxyproto._parser_c cimport ProxyHeader as CProxyHeader, parse_buffer


cdef class Handshake:
    cdef readonly object policy
    cdef readonly object peer
    cdef readonly object local
    cdef readonly object decision
    cdef readonly object step
    cdef readonly object header
    cdef readonly object believed
    cdef readonly object client
    cdef readonly object error
    cdef readonly Py_ssize_t received
    cdef readonly Py_ssize_t needed
    cdef readonly Py_ssize_t length
    cdef object _data
    cdef bytearray _buffer
    cdef bint _datagram
    # The policy's values read on every connection.
    cdef object _always
    cdef bint _v1
    cdef bint _v2
    cdef Py_ssize_t _max
    cdef object _validate
    cdef object _stats

    cdef _init(self, object policy, bint datagram)
    cdef _init_like(self, Handshake template)
    cdef _reset(self, object policy, bint datagram)
    cpdef object begin(self, object peer, object local=*)
    cpdef object feed(self, object data)
    cpdef object timed_out(self)
    cpdef object closed(self, object cause=*)
    cdef object _too_large(self, Py_ssize_t length)
    cdef object _refused(self, str counter, object error, str reason=*)
