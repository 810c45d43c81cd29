"""gunicorn worker classes that read a PROXY header first:
``gunicorn -k pyproxyproto.gunicorn.SyncWorker app:app`` (also
``ThreadWorker``, gthread, and ``UvicornWorker``, ASGI through uvicorn).
Where their packages are installed: ``GeventWorker`` and
``GeventPyWSGIWorker`` (gunicorn's gevent and gevent_pywsgi workers, the
header read in each connection's greenlet; gevent's own servers have no
PROXY reader, gevent#972), ``TornadoWorker``, ``ASGIWorker`` (gunicorn's
own ``-k asgi``) and ``GunicornWebWorker`` (aiohttp's worker,
aiohttp#11252).  Those of them that reach into gunicorn's or aiohttp's
internals (see ``_gunicorn_internals`` and ``_aiohttp_internals``) refuse
to start, saying why, when a release changed what they rely on.

Trusted networks are gunicorn's own ``--proxy-allow-from`` (``*``: every
peer); as with gunicorn's own PROXY reader it governs IP peers only, and
the peers of a ``unix:`` bind are trusted.  The other policy options come
from PYPROXYPROTO_* variables (as for ``pyproxyproto.uvicorn``).
gunicorn's ``--proxy-protocol`` must be off: these workers refuse to start
when it is on.  Records go to gunicorn's error log.

The header is read before gunicorn wraps TLS, so ``--certfile`` works
behind a TLS-passthrough balancer.  Without TLS it is read as gunicorn
reads a request, with what follows it in the same receive; those bytes go
to gunicorn's parser.  The ``ThreadWorker`` reads headers in gunicorn's
poller and gives a connection a thread only once its header is in, so
connections that send nothing hold no thread; the ``SyncWorker`` reads
each header in its one thread, so a silent connection holds it up to the
header timeout (as a silent client holds stock gunicorn's sync worker).

WSGI environ: ``REMOTE_ADDR`` / ``REMOTE_PORT`` are the header's client,
gunicorn's ``PROXY_PROTOCOL`` ("TCP4", "TCP6", "LOCAL", "UNSPEC", "UNIX"; v1
"UNKNOWN"), ``PROXY_ADDR`` / ``PROXY_PORT`` (the header's destination)
keep gunicorn's meanings, and the header itself is
``environ["pyproxyproto.proxy_header"]``.  ASGI (UvicornWorker): as in
``pyproxyproto.uvicorn``.
"""

from __future__ import annotations

import collections
import errno
import os
import selectors
import socket
import ssl
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict

from gunicorn.config import Config
from gunicorn.workers import base, gthread, sync

from . import Handshake
from . import _gunicorn_internals as internals
from ._env import ENV_TRUSTED, options_from_env, policy_from_env
from ._header import Command
from ._log import route_to
from ._networks import UNIX, PeerAddress, is_unix_peer
from ._policy import FIRST_PEEK, Policy, announce
from ._step import CLOSE, READ, SERVE
from ._wsgi import ENVIRON_KEY
from .sockets import absorb, read, receive

if TYPE_CHECKING:
    from gunicorn._types import _EnvironType, _ResponseBodyType, _StartResponseType
    from gunicorn.glogging import Logger
    from gunicorn.http import Request

    from . import ProxyHeader

__all__ = ["ENVIRON_KEY", "SyncWorker", "ThreadWorker", "UvicornWorker"]


# PROXY_PROTOCOL for a header without addresses, as gunicorn names them.
_NO_ADDRESS = {1: "UNKNOWN", 2: "UNSPEC"}
_ALLOW_FROM = "gunicorn's --proxy-allow-from"


class ProxyProtocolInfo(TypedDict):
    """gunicorn's ``req.proxy_protocol_info``: its PROXY_* and REMOTE_* environ keys."""

    proxy_protocol: str
    client_addr: str | None
    client_port: int | None
    proxy_addr: str | None
    proxy_port: int | None


def policy_for(cfg: Config) -> Policy:
    """The worker's Policy: trusted networks from ``--proxy-allow-from``
    (and the peers of a ``unix:`` bind), everything else from
    PYPROXYPROTO_* variables.  Raises on a setting it cannot serve."""
    if cfg.proxy_protocol not in ("off", False, None):
        raise ValueError(
            "gunicorn's --proxy-protocol is on: it would read the header after TLS "
            "and without pyproxyproto's checks; turn it off to use the "
            "pyproxyproto.gunicorn workers"
        )
    if ENV_TRUSTED in os.environ:  # whatever its value: it is not read here
        raise ValueError(
            f"{ENV_TRUSTED} is set: the gunicorn workers take their trusted networks "
            "from gunicorn's --proxy-allow-from; unset it"
        )
    options = options_from_env()
    if "decide" in options:  # a decide callable decides instead of the networks
        return policy_from_env()
    allowed = [ip.strip() for ip in cfg.proxy_allow_ips]
    if not any(allowed):
        raise ValueError(
            "gunicorn's --proxy-allow-from is empty, so no balancer could send a PROXY "
            "header: name your balancers' addresses or networks, or * for every peer"
        )
    if "*" in allowed:
        return policy_from_env(origin=_ALLOW_FROM, trusted=None)
    return policy_from_env(origin=_ALLOW_FROM, trusted=[ip for ip in allowed if ip] + [UNIX])


def proxy_protocol_info(client: PeerAddress, header: ProxyHeader | None) -> ProxyProtocolInfo | None:
    """gunicorn's ``req.proxy_protocol_info`` for a header, which gunicorn
    turns into its PROXY_* environ keys.

    Without addresses (LOCAL, v1 UNKNOWN, v2 UNSPEC) REMOTE_ADDR/REMOTE_PORT
    stay the peer's (gunicorn would set None); a UNIX-family header, which
    gunicorn's own reader refuses, is "UNIX" with its paths and no ports.
    """
    if header is None:
        return None
    source, destination = header.source, header.destination
    if source is None:
        kind = "LOCAL" if header.command == Command.LOCAL else _NO_ADDRESS[header.version]
        client_addr, client_port = _host_port(client)
        return {"proxy_protocol": kind, "client_addr": client_addr, "client_port": client_port,
                "proxy_addr": None, "proxy_port": None}
    if isinstance(source, tuple):
        kind = "TCP6" if ":" in source[0] else "TCP4"
    else:
        kind = "UNIX"
    client_addr, client_port = _host_port(source)
    proxy_addr, proxy_port = _host_port(destination)
    return {"proxy_protocol": kind, "client_addr": client_addr, "client_port": client_port,
            "proxy_addr": proxy_addr, "proxy_port": proxy_port}


def _host_port(address: PeerAddress) -> tuple[str | None, int | None]:
    """An address as gunicorn's environ shows it: an IP's host and port, or a
    UNIX socket's name (decoded as gunicorn decodes it) and no port."""
    if isinstance(address, tuple):
        return address[0], address[1]
    if isinstance(address, bytes):
        return address.decode(), None
    return address, None


def _local(sock: socket.socket, peer: PeerAddress) -> object:
    if not is_unix_peer(peer):
        return None
    try:
        return sock.getsockname()
    except OSError:
        return None


class _Checked:
    """Refuses, when gunicorn starts, a configuration the workers cannot
    serve, and says at start-up what the policy means; the records go to
    gunicorn's error log."""

    @classmethod
    def check_config(cls, cfg: Config, log: Logger) -> None:
        route_to(log.error_log)
        try:
            policy = policy_for(cfg)
            cls._proxy_check_config(cfg)
            unix = any(str(address).startswith("unix:") for address in cfg.bind)
            announce(policy, "gunicorn", unix=unix and not policy.trusts(""))
        except (ValueError, TypeError) as exc:
            # gunicorn stops on a RuntimeError with its message on one line.
            raise RuntimeError(f"pyproxyproto: {exc}") from None
        check = getattr(super(), "check_config", None)
        if check is not None:
            check(cfg, log)

    @classmethod
    def _proxy_check_config(cls, cfg: Config) -> None:
        """Raise on a setting this worker class cannot serve."""

    def init_process(self) -> None:
        route_to(self.log.error_log)  # type: ignore[attr-defined]
        self._proxy_policy = policy_for(self.cfg)  # type: ignore[attr-defined]
        self._proxy_read_ahead = (
            internals.read_ahead_allowed(self.cfg) and internals.install_read_ahead()  # type: ignore[attr-defined]
        )
        super().init_process()  # type: ignore[misc]


class _WSGIProxyWorker(_Checked, base.Worker):
    """What the WSGI workers share: the policy, and the header of the request
    being handled (per thread) for the WSGI environ."""

    def init_process(self) -> None:
        self._proxy_local = threading.local()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        local = self._proxy_local

        def with_header(
            environ: _EnvironType, start_response: _StartResponseType
        ) -> _ResponseBodyType:
            environ[ENVIRON_KEY] = local.header
            return app(environ, start_response)

        self.wsgi = with_header

    def _set_request(self, req: Request, client: PeerAddress, header: ProxyHeader | None) -> None:
        self._proxy_local.header = header
        # gunicorn's stub allows client_addr None only without addresses;
        # here LOCAL keeps the peer's (see proxy_protocol_info).
        req.proxy_protocol_info = proxy_protocol_info(client, header)  # type: ignore[assignment]

    def _proxy_read(self, sock: socket.socket, peer: PeerAddress) -> Handshake:
        """The handshake of a connection, run to its end in this thread."""
        hs = Handshake(self._proxy_policy)
        if hs.begin(peer, _local(sock, peer)) is READ:
            if self._proxy_read_ahead:
                receive(sock, hs)
                internals.hand_to_parser(sock, hs.rest)
            else:
                read(sock, hs)
        return hs


class SyncWorker(_WSGIProxyWorker, sync.SyncWorker):
    """gunicorn's sync worker, reading a PROXY header first."""

    _proxy_header: ProxyHeader | None

    def handle(self, listener: socket.socket, client: socket.socket, addr: PeerAddress) -> None:  # type: ignore[override]
        hs = self._proxy_read(client, addr)
        if hs.step is not SERVE:
            client.close()  # counted and logged by the handshake
            return
        self._proxy_header = hs.believed
        try:
            # gunicorn takes any address getpeername() gives; its stub names fewer.
            super().handle(listener, client, hs.client)  # type: ignore[arg-type]
        finally:
            internals.forget(client)

    def handle_request(
        self, listener: socket.socket, req: Request, client: socket.socket, addr: PeerAddress
    ) -> bool:
        self._set_request(req, addr, self._proxy_header)
        return super().handle_request(listener, req, client, addr)  # type: ignore[arg-type]


class _Waiting:
    """A connection whose header the poller is reading."""

    __slots__ = ("conn", "handshake", "deadline", "taken")

    def __init__(self, conn: Any, handshake: Handshake, deadline: float) -> None:
        self.conn = conn
        self.handshake = handshake
        self.deadline = deadline
        self.taken = 0  # header bytes received (exact reads)


class ThreadWorker(_WSGIProxyWorker, gthread.ThreadWorker):
    """gunicorn's gthread worker, reading each PROXY header in its poller
    (non-blocking, the handshake fed as bytes arrive) and handing a
    connection to a thread only once its header is in."""

    def init_process(self) -> None:
        # Connections whose header is awaited, oldest (first deadline) first.
        self._proxy_waiting: collections.deque[_Waiting] = collections.deque()
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        if not internals.POLLER:
            super().accept(listener)
            return
        try:
            sock, peer = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = internals.new_connection(self.cfg, sock, peer, listener.getsockname())
        hs = Handshake(self._proxy_policy)
        if hs.begin(peer, _local(sock, peer)) is not READ:
            self._proxy_ready(conn, hs)
            return
        timeout = hs.timeout
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        waiting = _Waiting(conn, hs, deadline)
        self._proxy_waiting.append(waiting)
        self.poller.register(sock, selectors.EVENT_READ, partial(self._proxy_readable, waiting))

    def _proxy_readable(self, waiting: _Waiting, sock: socket.socket) -> None:
        hs = waiting.handshake
        try:
            if self._proxy_read_ahead:
                data = sock.recv(8192)
                if data:
                    hs.feed(data)
                else:
                    hs.closed()
            else:
                peeked = sock.recv(max(hs.needed, FIRST_PEEK) - waiting.taken, socket.MSG_PEEK)
                waiting.taken = absorb(sock, hs, peeked, waiting.taken)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            hs.closed(exc)
        if hs.step is READ:
            return
        self.poller.unregister(sock)
        self._proxy_waiting.remove(waiting)
        self._proxy_ready(waiting.conn, hs)

    def _proxy_ready(self, conn: Any, hs: Handshake) -> None:
        """The header is in (or the connection is refused)."""
        if hs.step is CLOSE:
            self.nr_conns -= 1
            conn.close()  # counted and logged by the handshake
            return
        conn.client = hs.client
        conn.proxy_header = hs.believed
        rest = hs.rest
        if rest:
            internals.hand_to_parser(conn.sock, rest)
            internals.mark_data_ready(conn)
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        waiting = self._proxy_waiting
        while waiting and waiting[0].deadline <= now:
            expired = waiting.popleft()
            expired.handshake.timed_out()
            try:
                self.poller.unregister(expired.conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            self.nr_conns -= 1
            expired.conn.close()

    def handle(self, conn: gthread.TConn) -> Any:
        if not internals.POLLER and not conn.initialized and not hasattr(conn, "proxy_header"):
            # The fallback: the header is read in the connection's thread.
            conn.sock.setblocking(True)
            hs = self._proxy_read(conn.sock, conn.client)  # type: ignore[arg-type]
            if hs.step is not SERVE:
                return False
            conn.client = hs.client  # type: ignore[assignment]
            conn.proxy_header = hs.believed  # type: ignore[attr-defined]
            if hs.rest:
                internals.mark_data_ready(conn)
        return super().handle(conn)

    def finish_request(self, conn: gthread.TConn, fs: Any) -> None:
        try:
            super().finish_request(conn, fs)
        finally:
            if not conn.initialized:
                internals.forget(conn.sock)

    def handle_request(self, req: Request, conn: gthread.TConn) -> bool:
        # (conn.client: the header's client, set when the header was read)
        self._set_request(req, conn.client, getattr(conn, "proxy_header", None))  # type: ignore[arg-type]
        return super().handle_request(req, conn)


try:
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError:  # uvicorn-worker is not installed
    pass
else:
    from .uvicorn import H11Protocol, configure, tls_context

    try:
        from .uvicorn import HttpToolsProtocol as _Preferred
    except ImportError:
        _Preferred = H11Protocol  # type: ignore[misc]

    class UvicornWorker(_Checked, _UvicornWorker):  # type: ignore[misc]
        """uvicorn's gunicorn worker, reading a PROXY header first; TLS
        (``--certfile``) starts after the header."""

        CONFIG_KWARGS = {"loop": "auto", "http": _Preferred}

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            config = self.config
            context = tls_context(config) if config.is_ssl else None
            if context is not None:
                # Made here, not by uvicorn, which would start TLS before the header.
                config.ssl_certfile = config.ssl_keyfile = None
            configure(config, policy_for(self.cfg), context)


# The workers for other servers are made when first asked for (gunicorn asks
# for its worker class by name): importing gevent, aiohttp or Tornado costs
# a SyncWorker's start-up nothing.


def _gevent_workers() -> dict[str, type]:
    """gunicorn's gevent workers."""
    from gunicorn.workers import ggevent

    from . import gevent as _gevent

    class GeventWorker(_WSGIProxyWorker, ggevent.GeventWorker):
        """gunicorn's gevent worker, reading a PROXY header first in each
        connection's greenlet; with ``--certfile``, TLS starts after it."""

        @classmethod
        def _proxy_check_config(cls, cfg: Config) -> None:
            if cfg.is_ssl and not internals.gevent_server_works():
                raise RuntimeError(
                    "this gunicorn's gevent worker starts TLS where pyproxyproto cannot read "
                    "the PROXY header first; serve TLS with the gevent_pywsgi worker "
                    "(pyproxyproto.gunicorn.GeventPyWSGIWorker) or install the gunicorn "
                    "release pyproxyproto supports"
                )

        def patch(self) -> None:
            super().patch()
            # threading is gevent's from here on: the header of the request
            # being handled is kept per greenlet.
            self._proxy_local = threading.local()

        def run(self) -> None:
            if self.cfg.is_ssl:
                # gunicorn starts TLS in gevent's server, before the handler
                # runs: the header is read there, by pyproxyproto's server.
                internals.use_gevent_server(partial(_gevent.StreamServer, policy=self._proxy_policy))
            super().run()

        def handle(  # type: ignore[override]
            self, listener: Any, client: Any, addr: PeerAddress
        ) -> None:
            if self.cfg.is_ssl:
                header = _gevent.proxy_header(client)  # read by the server, before TLS
            else:
                hs = _gevent.handshake(client, addr, self._proxy_policy, _local(client, addr))
                if hs.step is not SERVE:
                    client.close()  # counted and logged by the handshake
                    return
                addr, header = hs.client, hs.believed
            self._proxy_local.header = header
            super().handle(listener, client, addr)  # type: ignore[arg-type]

        def handle_request(  # type: ignore[override]
            self, listener_name: Any, req: Request, sock: Any, addr: PeerAddress
        ) -> bool:
            self._set_request(req, addr, self._proxy_local.header)
            return super().handle_request(listener_name, req, sock, addr)  # type: ignore[arg-type]

    class _PyWSGIServer(_gevent.WSGIServer, ggevent.PyWSGIServer):
        """gunicorn's pywsgi server behind a PROXY header."""

    class GeventPyWSGIWorker(_Checked, ggevent.GeventPyWSGIWorker):
        """gunicorn's gevent_pywsgi worker, reading a PROXY header first in
        each connection's greenlet (``REMOTE_ADDR``, gunicorn's access log);
        with ``--certfile``, TLS starts after it."""

        def run(self) -> None:
            # gunicorn makes its pywsgi servers as self.server_class(...).
            self.server_class = partial(_PyWSGIServer, policy=self._proxy_policy)  # type: ignore[assignment,misc]
            super().run()

    return {"GeventWorker": GeventWorker, "GeventPyWSGIWorker": GeventPyWSGIWorker}


def _aiohttp_worker() -> dict[str, type]:
    """aiohttp's gunicorn worker."""
    from aiohttp.worker import GunicornWebWorker as _AiohttpWorker

    from . import _aiohttp_internals as aiohttp_internals
    from .aiohttp import ProxyProtocolSite

    class GunicornWebWorker(_Checked, _AiohttpWorker):
        """aiohttp's gunicorn worker (``aiohttp.GunicornWebWorker``), reading a
        PROXY header first; with ``--certfile``, TLS starts after it
        (aiohttp#11252).  ``request.remote`` and the access log show the
        header's client."""

        @classmethod
        def _proxy_check_config(cls, cfg: Config) -> None:
            if not aiohttp_internals.SITE:
                raise RuntimeError(
                    "this aiohttp's gunicorn worker starts its sites otherwise than "
                    "pyproxyproto knows; install the aiohttp release pyproxyproto supports"
                )

        def run(self) -> None:
            policy = self._proxy_policy

            def site(runner: Any, sock: socket.socket, *, ssl_context: Any = None) -> Any:
                return ProxyProtocolSite(runner, sock=sock, ssl_context=ssl_context,
                                         policy=policy)

            aiohttp_internals.use_site(site)
            super().run()

    return {"GunicornWebWorker": GunicornWebWorker}


def _tornado_worker() -> dict[str, type]:
    """gunicorn's tornado worker."""
    from gunicorn.workers import gtornado
    from .tornado import HTTPServer as _TornadoServer

    class TornadoWorker(_Checked, gtornado.TornadoWorker):
        """gunicorn's tornado worker, reading a PROXY header first (as
        ``pyproxyproto.tornado.HTTPServer``); ``--certfile``: TLS after it.
        WSGI apps get the header's client as ``REMOTE_ADDR``, Tornado apps
        as ``request.remote_ip``."""

        @classmethod
        def _proxy_check_config(cls, cfg: Config) -> None:
            if not internals.tornado_server_works():
                raise RuntimeError(
                    "this gunicorn's tornado worker makes its server otherwise than "
                    "pyproxyproto knows; install the gunicorn release pyproxyproto supports"
                )

        def run(self) -> None:
            policy = self._proxy_policy
            error_log = self.log.error_log

            class Server(_TornadoServer):
                def initialize(self, *args: Any, **kwargs: Any) -> None:
                    super().initialize(*args, policy=policy, **kwargs)
                    route_to(error_log)  # gunicorn's log, not Tornado's

            internals.use_tornado_server(Server)
            super().run()

    return {"TornadoWorker": TornadoWorker}


def _asgi_worker() -> dict[str, type]:
    """gunicorn's own ASGI worker."""
    from gunicorn.workers import gasgi
    from .aio import wrap as _wrap

    class ASGIWorker(_Checked, gasgi.ASGIWorker):
        """gunicorn's own ASGI worker (``-k asgi``), reading a PROXY header
        first; ``--certfile``: TLS after it.  ``scope["client"]`` and the
        access log show the header's client."""

        @classmethod
        def _proxy_check_config(cls, cfg: Config) -> None:
            if not internals.asgi_protocol_works():
                raise RuntimeError(
                    "this gunicorn's ASGI worker makes its protocols otherwise than "
                    "pyproxyproto knows; install the gunicorn release pyproxyproto supports"
                )

        def run(self) -> None:
            policy = self._proxy_policy
            internals.use_asgi_protocol(
                self, lambda protocol, tls: _wrap(protocol, policy=policy, ssl=tls))
            super().run()

    return {"ASGIWorker": ASGIWorker}


# Each lazily made worker, what makes it, and the package it needs.
_LAZY = {
    "GeventWorker": (_gevent_workers, "gevent"),
    "GeventPyWSGIWorker": (_gevent_workers, "gevent"),
    "GunicornWebWorker": (_aiohttp_worker, "aiohttp"),
    "TornadoWorker": (_tornado_worker, "tornado"),
    "ASGIWorker": (_asgi_worker, "a gunicorn release with an ASGI worker"),
}


def __getattr__(name: str) -> Any:
    made = _LAZY.get(name)
    if made is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    make, needs = made
    try:
        workers = make()
    except (ImportError, RuntimeError) as exc:
        raise AttributeError(f"pyproxyproto.gunicorn.{name} needs {needs} ({exc})") from None
    globals().update(workers)
    return workers[name]
