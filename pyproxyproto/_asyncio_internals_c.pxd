# Declarations for pyproxyproto/_asyncio_internals.py compiled as
# pyproxyproto._asyncio_internals_c (Cython's pure-Python mode).

cpdef bint is_direct(object transport)
cpdef dict extra(object transport)
cpdef object loop_of(object transport)
cpdef attach(object transport, object protocol)
cpdef bint reading(object transport)
cpdef object tls_protocol(object protocol, object context, dict options)
cpdef hand_over(object transport, object data)
