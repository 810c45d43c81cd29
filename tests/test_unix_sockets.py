"""Unix-socket listeners behind a real balancer on the same host: HAProxy
(``send-proxy-v2`` to ``unix@``) and nginx (stream, ``proxy_protocol on``) in
front of gunicorn (each worker) and uvicorn bound to a Unix socket; asyncio's
``create_unix_server(aio.wrap(P))`` and ``sockets`` on an AF_UNIX listener;
and the refusal of Unix peers by a policy that excludes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

import pyproxyproto as pp
from pyproxyproto import aio, sockets

from tests import peers
from tests.integration_helpers import recv_all, require_module, run

pytestmark = pytest.mark.servers

HERE = Path(__file__).parent
LOOPBACK = "127.0.0.1"
GET = b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture
def folder():
    with peers.scratch_dir("pp-unix-") as path:
        path.chmod(0o755)  # nginx's workers run as nobody: they must reach the socket
        yield path


def app_server(kind: str, path: Path, **env: str) -> peers.Peer:
    """gunicorn (each worker) or uvicorn serving server_apps on the Unix socket ``path``."""
    full = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(HERE), full.get("PYTHONPATH", "")])
    if kind.startswith("gunicorn-"):
        worker = {"gunicorn-sync": "SyncWorker", "gunicorn-gthread": "ThreadWorker",
                  "gunicorn-uvicorn": "UvicornWorker"}[kind]
        app = "server_apps:asgi" if kind == "gunicorn-uvicorn" else "server_apps:wsgi"
        argv = [sys.executable, "-m", "gunicorn", "-k", f"pyproxyproto.gunicorn.{worker}",
                "-b", f"unix:{path}", "--no-control-socket", "--graceful-timeout", "2",
                "--access-logfile", "-", app]
    elif kind == "daphne":
        full["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), full["PYTHONPATH"]])  # the plugin
        argv = [sys.executable, "-m", "daphne", "-e",
                f"pyproxyproto:unix:address={path}:trusted=127.0.0.0/8,unix", "server_apps:asgi"]
    else:
        argv = [sys.executable, "-m", "uvicorn", "server_apps:asgi", "--uds", str(path),
                "--http", "pyproxyproto.uvicorn:H11Protocol"]
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(full)
    try:
        peer = peers.Peer(kind, argv, str(HERE))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    deadline = time.monotonic() + 20
    while not path.exists():
        if peer.poll() is not None or time.monotonic() > deadline:
            peer.stop()
            raise AssertionError(f"{kind} did not listen on {path}:\n{peer.output()}")
        time.sleep(0.05)
    return peer


def haproxy_config(front: int, probe: int, path: Path) -> str:
    return f"""\
global
    log stdout format raw local0 info
    nbthread 1

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 15s
    timeout server 15s

frontend ready
    bind {LOOPBACK}:{probe}
    tcp-request connection reject

frontend front
    bind {LOOPBACK}:{front}
    default_backend app

backend app
    option log-health-checks
    server app unix@{path} send-proxy-v2 check inter 300 check-send-proxy
"""


@contextlib.contextmanager
def balancer(kind: str, path: Path, folder: Path):
    """HAProxy or nginx on a loopback port, relaying to the Unix socket ``path``
    with a PROXY header; yields the port."""
    front, probe = peers.free_port(), peers.free_port()
    if kind == "haproxy":
        with peers.haproxy(haproxy_config(front, probe, path), folder, (LOOPBACK, probe)) as proxy:
            proxy.wait_for_line(lambda line: "succeeded" in line and "app/app" in line)
            yield front
    else:
        block = f"""
        server {{ listen {LOOPBACK}:{probe}; return "ready"; }}
        server {{
            listen {LOOPBACK}:{front};
            proxy_pass unix:{path};
            proxy_protocol on;
        }}
        """
        with peers.nginx(block, folder, (LOOPBACK, probe)):
            try:
                yield front
            except AssertionError as exc:
                log = folder / "error.log"
                raise AssertionError(f"{exc}\nnginx: {log.read_text() if log.exists() else ''}")


def request(port: int) -> tuple[tuple[str, int], dict]:
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        client = sock.getsockname()
        sock.sendall(GET)
        head, _, body = recv_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return client, json.loads(body)


SERVERS = ["gunicorn-sync", "gunicorn-gthread", "gunicorn-uvicorn", "uvicorn", "daphne"]
NEEDS = {"gunicorn-sync": ["gunicorn"], "gunicorn-gthread": ["gunicorn"],
         "gunicorn-uvicorn": ["gunicorn", "uvicorn_worker"], "uvicorn": ["uvicorn"],
         "daphne": ["daphne"]}


@pytest.mark.parametrize("proxy", ["haproxy", "nginx"])
@pytest.mark.parametrize("kind", SERVERS)
def test_behind_a_balancer_on_a_unix_socket(kind, proxy, folder):
    for module in NEEDS[kind]:
        require_module(module)
    path = folder / "app.sock"
    # gunicorn works with no settings, as its own PROXY reader does on unix:;
    # uvicorn is told to trust the socket's peers (and the balancer's network).
    env = {} if kind.startswith("gunicorn") else {"PYPROXYPROTO_TRUSTED": "127.0.0.0/8,unix"}
    server = app_server(kind, path, **env)
    try:
        with balancer(proxy, path, folder) as port:
            client, report = request(port)
        if "REMOTE_ADDR" in report:
            assert (report["REMOTE_ADDR"], int(report["REMOTE_PORT"])) == client
        else:
            assert tuple(report["client"] or ()) == client, report
        if kind != "daphne":  # daphne's scope has no state for the header
            assert report["header"]["source"] == {"host": client[0], "port": client[1]}
        # HAProxy's health checks come as LOCAL headers: served, not refused.
        assert not server.matching(lambda line: "closed connection" in line), server.output()
    finally:
        server.stop()


class Who(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        peer = self.transport.get_extra_info("peername")
        self.transport.write(f"{peer!r}|".encode() + data)
        self.transport.close()


def unix_exchange(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        with contextlib.suppress(ConnectionError):  # refused before it was all sent
            sock.sendall(data)
            return recv_all(sock)
    return b""


@pytest.mark.parametrize("options, reply", [
    ({"trusted": ["unix"]}, b"('203.0.113.7', 41234)|hello"),
    ({"trusted": ["10.0.0.0/8", "unix"]}, b"('203.0.113.7', 41234)|hello"),
])
def test_asyncio_create_unix_server(header_protocol, folder, options, reply):
    path = folder / "aio.sock"

    async def main():
        server = await asyncio.get_running_loop().create_unix_server(
            aio.wrap(Who, **options), str(path))
        try:
            header = pp.build(("203.0.113.7", 41234), ("198.51.100.1", 443))
            first = await asyncio.to_thread(unix_exchange, path, header + b"hello")
            # A LOCAL header (a health check) keeps the Unix peer: unnamed.
            local = await asyncio.to_thread(unix_exchange, path, pp.build() + b"hc")
            return first, local
        finally:
            server.close()
            await server.wait_closed()

    first, local = run(main())
    assert first == reply
    assert local == b"''|hc"


def test_asyncio_refuses_unix_peers_a_policy_excludes(header_protocol, folder, caplog):
    path = folder / "aio.sock"
    stats = pp.Stats()

    async def main():
        server = await asyncio.get_running_loop().create_unix_server(
            aio.wrap(Who, trusted=["10.0.0.0/8"], stats=stats), str(path))
        try:
            return await asyncio.to_thread(unix_exchange, path, pp.build() + b"hc")
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()) == b""
    assert stats.rejected_untrusted == 1
    [message] = [r.getMessage() for r in caplog.records if r.name == "pyproxyproto"]
    assert message.startswith(f"closed connection from a Unix-socket peer on {path}: "
                              "peer is not in the trusted networks")


def test_sockets_on_an_af_unix_listener(folder, caplog):
    path = folder / "blocking.sock"
    stats = pp.Stats()
    header = pp.build(("203.0.113.7", 41234), ("198.51.100.1", 443))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(4)
        listener.settimeout(10)
        results = []

        def serve(count, **options):
            for _ in range(count):
                try:
                    conn, client, got = sockets.accept(listener, stats=stats, **options)
                except pp.ProxyProtocolError as exc:
                    results.append(exc)
                    continue
                with conn:
                    results.append((client, got is not None, conn.recv(100)))

        for options, expected in [({"trusted": ["unix"]}, (("203.0.113.7", 41234), True, b"x")),
                                  ({"trusted": ["10.0.0.0/8"]}, pp.UntrustedPeer)]:
            worker = threading.Thread(target=serve, args=(1,), kwargs=options)
            worker.start()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                with contextlib.suppress(OSError):
                    client.sendall(header + b"x")
            worker.join(10)
            got = results.pop()
            if isinstance(expected, type):
                assert isinstance(got, expected)
            else:
                assert got == expected
    assert stats.accepted == 1 and stats.rejected_untrusted == 1
    messages = [r.getMessage() for r in caplog.records
                if r.name == "pyproxyproto" and r.levelno >= logging.WARNING]
    assert messages == [f"closed connection from a Unix-socket peer on {path}: peer is not in "
                        "the trusted networks (10.0.0.0/8, from trusted=); if it is a balancer, "
                        "add its address there"]
