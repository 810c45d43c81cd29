# Declarations for pyproxyproto/_aio_protocol.py compiled as
# pyproxyproto._aio_protocol_c (Cython's pure-Python mode).

cimport cython

from pyproxyproto._asyncio_internals_c cimport (
    attach,
    extra,
    hand_over,
    is_direct,
    loop_of,
    reading,
    tls_protocol,
)
from pyproxyproto._handshake_c cimport Handshake
from pyproxyproto._parser_c cimport ProxyHeader as CProxyHeader


cdef class Factory:
    cdef readonly object policy
    cdef readonly object make_protocol
    cdef readonly bint with_header
    cdef readonly object tls
    cdef readonly dict ssl_options
    cdef readonly bint timed
    cdef readonly dict sweepers
    cdef readonly Handshake template


cdef class SocketView:
    cdef readonly object _sock
    cdef readonly object _header  # one whose source is not None


cdef class HeaderProtocol(Handshake):
    cdef Factory _factory
    cdef tuple _args
    cdef dict _kwargs
    cdef object _transport
    cdef bint _direct
    cdef dict _bucket

    cdef _setup(self, Factory factory, tuple args, dict kwargs)
    cdef _unschedule(self)
    cdef object _start_inner(self, object transport, object header)


@cython.locals(protocol=HeaderProtocol)
cdef HeaderProtocol _new_protocol(Factory factory, tuple args, dict kwargs)

@cython.locals(view=SocketView)
cpdef SocketView _view(object sock, object header)
