"""gunicorn worker classes that read a PROXY header first:
``gunicorn -k pyproxyproto.gunicorn.SyncWorker app:app`` (also
``ThreadWorker``, gthread, and ``UvicornWorker``, ASGI through uvicorn).

The header is read on the raw socket before gunicorn wraps TLS, so
``--certfile`` works behind a TLS-passthrough balancer.  Trusted networks
are gunicorn's own ``--proxy-allow-from`` (``*``: every peer); the other
policy options come from PYPROXYPROTO_* variables (as for
``pyproxyproto.uvicorn``).  gunicorn's ``--proxy-protocol`` must be off:
these workers refuse to start when it is on.

WSGI environ: ``REMOTE_ADDR`` / ``REMOTE_PORT`` are the header's client,
gunicorn's ``PROXY_PROTOCOL`` ("TCP4", "TCP6", "LOCAL", "UNSPEC", "UNIX"; v1
"UNKNOWN"), ``PROXY_ADDR`` / ``PROXY_PORT`` (the header's destination)
keep gunicorn's meanings, and the header itself is
``environ["pyproxyproto.proxy_header"]``.  ASGI (UvicornWorker): as in
``pyproxyproto.uvicorn``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any, TypedDict

from gunicorn.config import Config
from gunicorn.workers import base, gthread, sync

from . import sockets
from ._errors import HeaderTimeout, ProxyProtocolError
from ._header import Command
from ._policy import (
    ENV_TRUSTED,
    REJECT,
    SKIP,
    PeerAddress,
    Policy,
    options_from_env,
    policy_from_env,
)

if TYPE_CHECKING:
    from gunicorn._types import _EnvironType, _ResponseBodyType, _StartResponseType
    from gunicorn.glogging import Logger
    from gunicorn.http import Request

    from . import ProxyHeader

__all__ = ["ENVIRON_KEY", "SyncWorker", "ThreadWorker", "UvicornWorker"]

ENVIRON_KEY = "pyproxyproto.proxy_header"

# PROXY_PROTOCOL for a header without addresses, as gunicorn names them.
_NO_ADDRESS = {1: "UNKNOWN", 2: "UNSPEC"}


class ProxyProtocolInfo(TypedDict):
    """gunicorn's ``req.proxy_protocol_info``: its PROXY_* and REMOTE_* environ keys."""

    proxy_protocol: str
    client_addr: str | None
    client_port: int | None
    proxy_addr: str | None
    proxy_port: int | None


def policy_for(cfg: Config) -> Policy:
    """The worker's Policy: trusted networks from ``--proxy-allow-from``,
    everything else from PYPROXYPROTO_* variables."""
    if cfg.proxy_protocol not in ("off", False, None):
        raise RuntimeError(
            "gunicorn's --proxy-protocol is on: it would read the header after TLS "
            "and without pyproxyproto's checks; turn it off to use the "
            "pyproxyproto.gunicorn workers"
        )
    options = options_from_env()
    if "trusted" in options:
        raise RuntimeError(
            f"{ENV_TRUSTED} is set: the gunicorn workers take their trusted networks "
            "from gunicorn's --proxy-allow-from"
        )
    if "policy" in options:  # a policy callable decides instead of the networks
        return policy_from_env()
    allowed = [ip.strip() for ip in cfg.proxy_allow_ips if ip.strip()]
    return policy_from_env(trusted=None if "*" in allowed else allowed)


def read_header(
    conn: socket.socket, peer: PeerAddress, policy: Policy
) -> tuple[PeerAddress, ProxyHeader | None]:
    """Read the header off the raw socket: ``(client_address, header)``.

    ``header`` is None for a peer that is skipped or whose header is not
    believed.  Raises (after the policy counted and logged it) when the
    connection is refused.
    """
    decision = policy.decide(peer)
    if decision == REJECT:
        raise policy.refuse_peer(peer)
    if decision == SKIP:
        policy.skipped()
        return peer, None
    try:
        header = sockets.recv_header(conn, timeout=policy.timeout, v1=policy.v1, v2=policy.v2)
        policy.check_length(header.length)
    except HeaderTimeout as exc:
        raise policy.timed_out(peer, 0) from exc
    except ConnectionError as exc:  # ConnectionClosed included
        raise policy.closed_early(peer, getattr(exc, "received", 0),
                                  getattr(exc, "needed", 0), exc) from exc
    except ProxyProtocolError as exc:
        raise policy.refuse_header(peer, exc) from exc
    return policy.accept(header, peer, decision)


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


class _Checked:
    """Refuses, when gunicorn starts, a configuration the workers cannot serve."""

    @classmethod
    def check_config(cls, cfg: Config, log: Logger) -> None:
        policy_for(cfg)
        check = getattr(super(), "check_config", None)
        if check is not None:
            check(cfg, log)


class _WSGIProxyWorker(_Checked, base.Worker):
    """What the WSGI workers share: the policy, and the header of the request
    being handled (per thread) for the WSGI environ."""

    def init_process(self) -> None:
        self._proxy_policy = policy_for(self.cfg)
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


class SyncWorker(_WSGIProxyWorker, sync.SyncWorker):
    """gunicorn's sync worker, reading a PROXY header first."""

    _proxy_header: ProxyHeader | None

    def handle(self, listener: socket.socket, client: socket.socket, addr: PeerAddress) -> None:  # type: ignore[override]
        try:
            addr, self._proxy_header = read_header(client, addr, self._proxy_policy)
        except (ProxyProtocolError, OSError):
            client.close()  # counted and logged by the policy
            return
        # gunicorn takes any address getpeername() gives; its stub names fewer.
        super().handle(listener, client, addr)  # type: ignore[arg-type]

    def handle_request(
        self, listener: socket.socket, req: Request, client: socket.socket, addr: PeerAddress
    ) -> bool:
        self._set_request(req, addr, self._proxy_header)
        return super().handle_request(listener, req, client, addr)  # type: ignore[arg-type]


class ThreadWorker(_WSGIProxyWorker, gthread.ThreadWorker):
    """gunicorn's gthread worker, reading a PROXY header first (in the
    worker thread, right before gunicorn sets the connection up)."""

    def enqueue_req(self, conn: gthread.TConn) -> None:
        if not conn.initialized and "init" not in vars(conn):
            plain_init = conn.init

            def init() -> None:
                # Read once, however often init() is called.
                conn.init = plain_init  # type: ignore[method-assign]
                try:
                    # gunicorn's stub types client as what a listener's
                    # accept() can give (for TCP, (host, port)) and knows
                    # nothing of proxy_header, this module's attribute.
                    conn.client, conn.proxy_header = read_header(  # type: ignore[assignment, attr-defined]
                        conn.sock, conn.client, self._proxy_policy  # type: ignore[arg-type]
                    )
                except (ProxyProtocolError, OSError) as exc:
                    # Counted and logged by the policy; gunicorn closes quietly.
                    raise StopIteration(str(exc)) from None
                plain_init()

            conn.init = init  # type: ignore[method-assign]
        super().enqueue_req(conn)

    def handle_request(self, req: Request, conn: gthread.TConn) -> bool:
        # (conn.client: see enqueue_req)
        self._set_request(req, conn.client, getattr(conn, "proxy_header", None))  # type: ignore[arg-type]
        return super().handle_request(req, conn)


try:
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError:  # uvicorn-worker is not installed
    pass
else:
    from .uvicorn import H11Protocol, configure

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
            context = None
            if config.is_ssl:
                # Made here, not by uvicorn, which would start TLS before the header.
                context = ssl.SSLContext(config.ssl_version)
                context.load_cert_chain(
                    config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password
                )
                context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
                if config.ssl_ca_certs:
                    context.load_verify_locations(config.ssl_ca_certs)
                if config.ssl_ciphers:
                    context.set_ciphers(config.ssl_ciphers)
                config.ssl_certfile = config.ssl_keyfile = None
            configure(config, policy_for(self.cfg), context)
