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
gunicorn's ``PROXY_PROTOCOL`` ("TCP4", "TCP6", "LOCAL", "UNSPEC"; v1
"UNKNOWN"), ``PROXY_ADDR`` / ``PROXY_PORT`` (the header's destination)
keep gunicorn's meanings, and the header itself is
``environ["pyproxyproto.proxy_header"]``.  ASGI (UvicornWorker): as in
``pyproxyproto.uvicorn``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

from gunicorn.workers import gthread, sync

from . import sockets
from ._errors import HeaderTimeout, ProxyProtocolError
from ._header import Command
from ._policy import ENV_TRUSTED, REJECT, SKIP, Policy, options_from_env, policy_from_env

__all__ = ["ENVIRON_KEY", "SyncWorker", "ThreadWorker", "UvicornWorker"]

ENVIRON_KEY = "pyproxyproto.proxy_header"

# PROXY_PROTOCOL for a header without addresses, as gunicorn names them.
_NO_ADDRESS = {1: "UNKNOWN", 2: "UNSPEC"}


def policy_for(cfg: Any) -> Policy:
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


def read_header(conn: socket.socket, peer: Any, policy: Policy) -> tuple[Any, Any]:
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


def proxy_protocol_info(client: Any, header: Any) -> dict[str, Any] | None:
    """gunicorn's ``req.proxy_protocol_info`` for a header, which gunicorn
    turns into its PROXY_* environ keys."""
    if header is None:
        return None
    if header.source is None:
        # REMOTE_ADDR/REMOTE_PORT stay the peer's (gunicorn would set None).
        kind = "LOCAL" if header.command == Command.LOCAL else _NO_ADDRESS[header.version]
        return {"proxy_protocol": kind, "client_addr": client[0], "client_port": client[1],
                "proxy_addr": None, "proxy_port": None}
    kind = "TCP6" if ":" in header.source[0] else "TCP4"
    return {"proxy_protocol": kind, "client_addr": header.source[0],
            "client_port": header.source[1], "proxy_addr": header.destination[0],
            "proxy_port": header.destination[1]}


class _Checked:
    """Refuses, when gunicorn starts, a configuration the workers cannot serve."""

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        policy_for(cfg)
        check = getattr(super(), "check_config", None)
        if check is not None:
            check(cfg, log)


class _WSGIProxyWorker(_Checked):
    """What the WSGI workers share: the policy, and the header of the request
    being handled (per thread) for the WSGI environ."""

    cfg: Any
    wsgi: Any

    def init_process(self) -> None:
        self._proxy_policy = policy_for(self.cfg)
        self._proxy_local = threading.local()
        super().init_process()  # type: ignore[misc]

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        app = self.wsgi
        local = self._proxy_local

        def with_header(environ: dict[str, Any], start_response: Any) -> Any:
            environ[ENVIRON_KEY] = local.header
            return app(environ, start_response)

        self.wsgi = with_header

    def _set_request(self, req: Any, client: Any, header: Any) -> None:
        self._proxy_local.header = header
        req.proxy_protocol_info = proxy_protocol_info(client, header)


class SyncWorker(_WSGIProxyWorker, sync.SyncWorker):
    """gunicorn's sync worker, reading a PROXY header first."""

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        try:
            addr, self._proxy_header = read_header(client, addr, self._proxy_policy)
        except (ProxyProtocolError, OSError):
            client.close()  # counted and logged by the policy
            return
        super().handle(listener, client, addr)

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        self._set_request(req, addr, self._proxy_header)
        return super().handle_request(listener, req, client, addr)


class ThreadWorker(_WSGIProxyWorker, gthread.ThreadWorker):
    """gunicorn's gthread worker, reading a PROXY header first (in the
    worker thread, right before gunicorn sets the connection up)."""

    def enqueue_req(self, conn: Any) -> None:
        if not conn.initialized and "init" not in vars(conn):
            plain_init = conn.init

            def init() -> None:
                conn.init = plain_init  # read once, however often init() is called
                try:
                    conn.client, conn.proxy_header = read_header(
                        conn.sock, conn.client, self._proxy_policy
                    )
                except (ProxyProtocolError, OSError) as exc:
                    # Counted and logged by the policy; gunicorn closes quietly.
                    raise StopIteration(str(exc)) from None
                plain_init()

            conn.init = init
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        self._set_request(req, conn.client, getattr(conn, "proxy_header", None))
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
        _Preferred = H11Protocol  # type: ignore[misc, assignment]

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
