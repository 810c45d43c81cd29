# cython: language_level=3, freethreading_compatible=True
"""aio's header protocol, compiled: the twin of aio._PyHeaderProtocol.

The same states, the same calls in the same order, the same results: it
exists because the pure class's bytecode is most of what a wrapped
connection costs an accept loop.  The policy, the deadline sweep, the TLS
wrapping, the hand-over of held bytes and the wrapper for other transports
stay the shared Python code in aio.py and _policy.py, called from here.

aio.py imports this module at its end, so the names taken from it below
are defined.  asyncio duck-types protocols (only BufferedProtocol is told
apart, by isinstance), so a cdef class that cannot inherit asyncio.Protocol
serves as one, on uvloop too.

Free-threading: declared compatible, like the parser; an instance is used
by its event loop's thread only, as asyncio protocols are.
"""

cimport cython

from asyncio import BufferedProtocol, get_running_loop

from ._errors import HeaderRejected, Incomplete, ProxyProtocolError
from ._policy import REJECT, SKIP
from .aio import _DIRECT_TRANSPORT, _ProxiedTransport, _hand_over


@cython.final
cdef class SocketView:
    """aio._SocketView, compiled: asyncio's own transport needs one for every
    proxied connection, before anyone asks for it."""

    cdef readonly object _sock
    cdef readonly object _header  # one whose source is not None

    def __init__(self, sock, header):
        self._sock = sock
        self._header = header

    def getpeername(self):
        return self._header.source

    def getsockname(self):
        return self._header.destination

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __repr__(self):
        return f"<proxied {self._sock!r} peername={self._header.source!r}>"


@cython.final
cdef class Factory:
    """wrap()'s protocol factory, compiled: it holds in C fields what each
    connection of one server reads (aio.py gives the pure protocol a
    functools.partial over aio._Server instead)."""

    cdef readonly object server  # the aio._Server
    cdef object policy
    cdef object always  # policy.always
    cdef bint timed  # policy.timeout is not None
    cdef dict sweepers  # server.sweepers
    cdef object make_protocol
    cdef bint with_header
    cdef bint tls

    def __init__(self, server):
        self.server = server
        self.policy = server.policy
        self.always = server.policy.always
        self.timed = server.policy.timeout is not None
        self.sweepers = server.sweepers
        self.make_protocol = server.make_protocol
        self.with_header = server.with_header
        self.tls = server.ssl is not None

    def __call__(self, *args, **kwargs):
        cdef HeaderProtocol protocol = HeaderProtocol.__new__(HeaderProtocol)
        protocol._factory = self
        protocol._args = args
        protocol._kwargs = kwargs
        return protocol


# Read on every connection: a C global, not a module dictionary lookup.
cdef object _DIRECT = _DIRECT_TRANSPORT


@cython.final
cdef class HeaderProtocol:
    """Reads the header, then hands the connection to the inner protocol
    (see aio._PyHeaderProtocol, whose every step this repeats).  Made by
    Factory."""

    cdef Factory _factory
    cdef tuple _args
    cdef dict _kwargs
    cdef object _transport
    cdef bint _direct  # asyncio's own transport, served without a wrapper
    cdef object _peer
    cdef object _decision
    cdef bytearray _buffer  # the header so far, when it comes in pieces
    cdef Py_ssize_t _needed  # the length the parser last asked for
    cdef dict _bucket  # the sweeper's, while waiting
    cdef bint _done

    def __init__(self, *args, **kwargs):
        raise TypeError("HeaderProtocol is made by aio.wrap()'s factory")

    def connection_made(self, transport):
        cdef Factory factory = self._factory
        cdef bint direct
        self._transport = transport
        direct = self._direct = type(transport) is _DIRECT and type(transport._extra) is dict
        policy = factory.policy
        if direct:
            peer = (<dict>transport._extra).get("peername")  # its get_extra_info()
        else:
            peer = transport.get_extra_info("peername")
        self._peer = peer
        decision = self._decision = factory.always or policy.decide(peer)
        if decision == REJECT:
            self._done = True
            policy.refuse_peer(peer)
            transport.close()
        elif decision == SKIP:
            self._done = True
            policy.skipped()
            self._start_inner(transport, None)
        elif factory.timed:
            # get_running_loop() costs a getpid() system call.
            if direct:
                loop = transport._loop
            else:
                loop = get_running_loop()
            sweeper = factory.sweepers.get(loop)
            if sweeper is None:
                sweeper = factory.server.start_sweeper(loop)
            bucket = self._bucket = sweeper.bucket
            bucket[self] = None

    def data_received(self, data):
        cdef SocketView view
        if self._buffer is None:
            buffer = data  # the usual case: the whole header in one read
        else:
            self._buffer += data
            buffer = self._buffer
            if len(buffer) < self._needed:
                return  # a long v2 header still arriving: nothing to decide yet
        policy = self._factory.policy
        try:
            header, believed = policy.take(buffer, self._peer, self._decision)
        except Incomplete as exc:
            self._needed = exc.needed
            if self._buffer is None:
                self._buffer = bytearray(data)
            return
        except HeaderRejected:  # counted and logged by the policy
            self._finish()
            self._transport.close()
            return
        except ProxyProtocolError as exc:
            self._finish()
            policy.refuse_header(self._peer, exc)
            self._transport.close()
            return
        self._done = True
        if self._bucket is not None:
            del self._bucket[self]
            self._bucket = None
        transport = self._transport
        cdef Py_ssize_t length = header.length
        if self._direct:
            # asyncio's own transport: it reports the header's addresses
            # itself, and the inner protocol talks to it directly.
            extra = <dict>transport._extra
            extra["proxy_header"] = believed
            extra["proxy_peername"] = self._peer
            if believed is not None:
                source = believed.source
                if source is not None:  # not LOCAL, not UNKNOWN
                    extra["peername"] = source
                    extra["sockname"] = believed.destination
                    view = SocketView.__new__(SocketView)
                    view._sock = extra["socket"]
                    view._header = believed
                    extra["socket"] = view
            protocol = self._start_inner(transport, believed)
            if len(buffer) > length:
                rest = buffer[length:]
                if (
                    not transport._paused and not transport._closing
                    and not isinstance(protocol, BufferedProtocol)
                ):
                    # What the transport does with what it reads.
                    protocol.data_received(rest if type(rest) is bytes else bytes(rest))
                else:
                    _hand_over(transport, rest)
            return
        proxied = _ProxiedTransport(transport, self._peer, believed)
        protocol = self._start_inner(proxied, believed)
        if len(buffer) > length:
            # Synchronous, as if the real transport had just read these bytes.
            proxied.deliver(protocol, buffer, length)

    def eof_received(self):
        self._closed_early(None)
        return False

    def connection_lost(self, exc):
        if not self._done:
            self._closed_early(exc)

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def expire(self):
        """Called by the sweeper at the deadline."""
        self._bucket = None
        self._done = True
        self._factory.policy.timed_out(self._peer, self._received())
        self._transport.close()

    cdef _closed_early(self, cause):
        self._finish()
        self._factory.policy.closed_early(self._peer, self._received(), self._needed, cause)
        self._transport.close()

    cdef Py_ssize_t _received(self):
        return 0 if self._buffer is None else len(self._buffer)

    cdef _finish(self):
        self._done = True
        if self._bucket is not None:
            del self._bucket[self]
            self._bucket = None

    cdef _start_inner(self, transport, header):
        """Make the inner protocol, give it the connection; return it."""
        cdef Factory factory = self._factory
        if factory.with_header:
            protocol = factory.make_protocol(header, *self._args, **self._kwargs)
        elif self._kwargs:
            protocol = factory.make_protocol(*self._args, **self._kwargs)
        else:
            protocol = factory.make_protocol(*self._args)
        if factory.tls:
            protocol = factory.server.tls(protocol)
        if self._direct and not isinstance(protocol, BufferedProtocol):
            # All set_protocol() would change: the transport already feeds
            # data_received(), as it did for this header protocol.
            self._transport._protocol = protocol
        else:
            self._transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol
