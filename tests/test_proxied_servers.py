"""The servers with no PROXY reader of their own (gevent, waitress, aiohttp,
websockets, and gunicorn's gevent, gevent_pywsgi, tornado, ASGI and aiohttp
workers), each started in a child process behind a header: the application
(and the access log, where the server has one) sees the header's client; a
connection without a header, an untrusted peer (counted and logged) and TLS
after the header; a forged header from an untrusted peer is not believed;
a bad setting stops each at start-up with one clear line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

import pyproxyproto as pp

from tests import peers
from tests.integration_helpers import CLIENT, CLIENT6, GUNICORN_WARNING, SERVER, SERVER6, recv_all, \
    require_module, self_signed_cert

pytestmark = pytest.mark.servers

HERE = Path(__file__).parent
LOOPBACK = "127.0.0.1"
# Connections from this address are untrusted when only 127.0.0.1 is trusted.
OTHER = "127.0.0.2"
GET = b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

GUNICORN_WORKERS = {
    "gunicorn-gevent": ("GeventWorker", "proxied_servers:wsgi", ["gevent"]),
    "gunicorn-gevent-pywsgi": ("GeventPyWSGIWorker", "proxied_servers:wsgi", ["gevent"]),
    "gunicorn-tornado": ("TornadoWorker", "proxied_servers:wsgi", ["tornado"]),
    "gunicorn-asgi": ("ASGIWorker", "proxied_servers:asgi", []),
    "gunicorn-aiohttp": ("GunicornWebWorker", "proxied_servers:aiohttp_factory", ["aiohttp"]),
}
LIBRARY_SERVERS = {
    "gevent-wsgi": ["gevent"],
    "gevent-stream": ["gevent"],
    "waitress": ["waitress"],
    "aiohttp": ["aiohttp"],
}
WEBSOCKETS = ["websockets", "websockets-sync"]
HTTP = sorted(LIBRARY_SERVERS) + sorted(GUNICORN_WORKERS)
# Where the access log names the client (the line a request leaves); gunicorn's
# tornado worker leaves access lines to Tornado's logger, which it does not set up.
ACCESS_LOG = {"gevent-wsgi", "gevent-stream", "aiohttp", *GUNICORN_WORKERS} - {"gunicorn-tornado"}
NO_TLS = {"waitress"}  # waitress serves no TLS
# How each server's log starts the refusal's line (never bare, through Python's
# last-resort handler): gunicorn's format in its workers; gevent's time stamp;
# the format of the basicConfig() the test apps (and waitress.serve) set up.
_GEVENT_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ pyproxyproto WARNING: "
LOG_LINE = {
    **{kind: GUNICORN_WARNING for kind in GUNICORN_WORKERS},
    "gevent-wsgi": _GEVENT_LINE,
    "gevent-stream": _GEVENT_LINE,
    **{kind: "WARNING:pyproxyproto:" for kind in ("waitress", "aiohttp", *WEBSOCKETS)},
}


def _environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYPROXYPROTO_STATS"] = "proxied_servers:STATS"
    env.update(extra)
    return env


def command(kind: str, port: int, trusted: str, tls: tuple[str, str] | None) -> list[str]:
    if kind in GUNICORN_WORKERS:
        worker, app, _ = GUNICORN_WORKERS[kind]
        argv = [sys.executable, "-m", "gunicorn", "-k", f"pyproxyproto.gunicorn.{worker}",
                "-b", f"{LOOPBACK}:{port}", "--proxy-allow-from", trusted,
                "--access-logfile", "-", "--no-control-socket", "--graceful-timeout", "2"]
        if tls:
            argv += ["--certfile", tls[0], "--keyfile", tls[1]]
        return argv + [app]
    return [sys.executable, str(HERE / "proxied_servers.py"), kind, str(port), *(tls or ())]


def needs(kind: str) -> None:
    if kind in GUNICORN_WORKERS:
        require_module("gunicorn")
        for module in GUNICORN_WORKERS[kind][2]:
            require_module(module)
        import pyproxyproto.gunicorn

        worker = GUNICORN_WORKERS[kind][0]
        if kind == "gunicorn-asgi" and not hasattr(pyproxyproto.gunicorn, worker):
            pytest.skip("this gunicorn has no ASGI worker")
    else:
        for module in LIBRARY_SERVERS.get(kind, ["websockets"]):
            require_module(module)


@contextlib.contextmanager
def server(kind: str, trusted: str = LOOPBACK, tls: tuple[str, str] | None = None, **env: str):
    needs(kind)
    port = peers.free_port()
    if kind not in GUNICORN_WORKERS:
        env.setdefault("PYPROXYPROTO_TRUSTED", trusted)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_environment(**env))
    try:
        peer = peers.Peer(kind, command(kind, port, trusted, tls), str(HERE))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        peers.wait_for_connect(LOOPBACK, port, timeout=30, proc=peer)
        yield port, peer
    finally:
        peer.stop()


def _connect(port: int, source: str = LOOPBACK) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=10, source_address=(source, 0))


def _tls_client(sock: socket.socket) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname="localhost")


def request(port: int, header: bytes, tls: bool = False, source: str = LOOPBACK) -> dict:
    sock = _connect(port, source)
    with contextlib.closing(sock):
        sock.sendall(header)
        if tls:
            sock = _tls_client(sock)
        sock.sendall(GET)
        head, _, body = recv_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def refused(port: int, data: bytes, source: str = LOOPBACK) -> bool:
    """Whether the server closes the connection without answering."""
    with _connect(port, source) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        return recv_all(sock) == b""


def websocket(port: int, header: bytes, tls: bool = False, source: str = LOOPBACK) -> dict:
    import asyncio

    from websockets.asyncio.client import connect

    sock = _connect(port, source)
    sock.sendall(header)
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    scheme = "wss" if tls else "ws"

    async def receive() -> str:
        async with connect(f"{scheme}://localhost:{port}/", sock=sock, ssl=context,
                           server_hostname="localhost" if tls else None) as ws:
            return await ws.recv()  # type: ignore[return-value]

    return json.loads(asyncio.run(asyncio.wait_for(receive(), 10)))


def ask(kind: str, port: int, header: bytes, tls: bool = False, source: str = LOOPBACK) -> dict:
    if kind in WEBSOCKETS:
        return websocket(port, header, tls, source)
    return request(port, header, tls, source)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("cert"))


def same_client(kind: str, report: dict, client: tuple) -> bool:
    """Whether the application saw ``client`` (Tornado's WSGI container
    gives no REMOTE_PORT)."""
    host, port = report["client"][:2]
    return host == client[0] and (port == client[1] or kind == "gunicorn-tornado")


def _access_line(kind: str, host: str):
    return lambda line: host in line and "/who" in line and "PROXY" not in line


@pytest.mark.parametrize("kind", HTTP + WEBSOCKETS)
def test_the_application_sees_the_header_client(kind):
    with server(kind) as (port, peer):
        report = ask(kind, port, pp.build(CLIENT, SERVER))
        assert same_client(kind, report, CLIENT)
        if kind not in ("gunicorn-tornado", "gunicorn-asgi"):  # no place for the header there
            assert report["header"]["source"] == {"host": CLIENT[0], "port": CLIENT[1]}
        report = ask(kind, port, pp.build(CLIENT6, SERVER6, version=1))
        assert same_client(kind, report, CLIENT6)
        assert report["stats"]["accepted_v1"] == report["stats"]["accepted_v2"] == 1
        if kind in ACCESS_LOG:
            peer.wait_for_line(_access_line(kind, CLIENT[0]))
            peer.wait_for_line(_access_line(kind, CLIENT6[0]))
        # Without a header: refused, logged, never served.
        assert refused(port, GET)
        peer.wait_for_line(lambda line: "the peer sent no PROXY header" in line)
        if kind in ACCESS_LOG:
            assert not peer.matching(_access_line(kind, LOOPBACK))


@pytest.mark.parametrize("kind", HTTP + WEBSOCKETS)
def test_an_untrusted_peer_is_refused_counted_and_logged(kind):
    with server(kind, trusted=LOOPBACK) as (port, peer):
        assert refused(port, pp.build(CLIENT, SERVER) + GET, source=OTHER)
        line = peer.wait_for_line(
            lambda line: f"{OTHER}:" in line and "not in the trusted networks" in line)
        assert re.match(LOG_LINE[kind] + f"closed connection from {OTHER}:", line), line
        report = ask(kind, port, pp.build(CLIENT, SERVER))
        assert report["stats"]["rejected_untrusted"] == 1
        assert same_client(kind, report, CLIENT)


@pytest.mark.parametrize("kind", HTTP + WEBSOCKETS)
def test_a_forged_header_from_an_untrusted_peer_is_not_believed(kind):
    with server(kind, trusted=LOOPBACK, PYPROXYPROTO_ON_UNTRUSTED="ignore") as (port, _peer):
        report = ask(kind, port, pp.build(CLIENT, SERVER), source=OTHER)
        assert report["client"][0] == OTHER
        assert report["header"] is None
        assert report["stats"]["accepted"] == 1  # read, and not believed


@pytest.mark.parametrize("kind", [kind for kind in HTTP + WEBSOCKETS if kind not in NO_TLS])
def test_tls_after_the_header(kind, cert):
    with server(kind, tls=cert) as (port, _peer):
        report = ask(kind, port, pp.build(CLIENT, SERVER), tls=True)
        assert same_client(kind, report, CLIENT)
        assert report["scheme"] in ("https", "wss")


# -- start-up --------------------------------------------------------------------------

BAD = {
    "cidr-typo": ({"PYPROXYPROTO_TRUSTED": "127.0.0.1/8"},
                  "PYPROXYPROTO_TRUSTED='127.0.0.1/8': '127.0.0.1/8' is not an IP network"),
    "bad-timeout": ({"PYPROXYPROTO_TIMEOUT": "soon"},
                    "PYPROXYPROTO_TIMEOUT='soon': must be a positive number of seconds or none"),
}


def start(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, env=_environment(**env), cwd=HERE, capture_output=True,
                              text=True, timeout=40, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{argv[:5]} kept running with a bad setting:\n{exc.output}") from None


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("kind", sorted(LIBRARY_SERVERS) + WEBSOCKETS)
def test_a_bad_setting_stops_a_library_server(kind, bad):
    needs(kind)
    env, message = BAD[bad]
    done = start(command(kind, peers.free_port(), LOOPBACK, None), env)
    assert done.returncode != 0
    # The error, raised where the server is made: its last line says it.
    assert message in done.stderr.strip().splitlines()[-1], done.stderr


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("kind", sorted(GUNICORN_WORKERS))
def test_a_bad_setting_stops_a_gunicorn_worker(kind, bad):
    needs(kind)
    env, message = BAD[bad]
    if bad == "cidr-typo":  # gunicorn's workers take their networks from --proxy-allow-from
        env, message = {"PYPROXYPROTO_MAX_HEADER_SIZE": "9"}, "PYPROXYPROTO_MAX_HEADER_SIZE='9'"
    done = start(command(kind, peers.free_port(), LOOPBACK, None), env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"Error: pyproxyproto: {message}" in done.stderr, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("kind", ["gevent-wsgi", "waitress", "websockets", "aiohttp"])
def test_a_bad_keyword_stops_a_library_server(kind):
    needs(kind)
    script = {
        "gevent-wsgi": "from pyproxyproto.gevent import WSGIServer as S; S(('127.0.0.1', 0), None, {})",
        "waitress": "from pyproxyproto.waitress import create_server as S; S(lambda e, s: [], {})",
        "websockets": "from pyproxyproto.websockets import serve as S; S(None, {})",
        "aiohttp": "from pyproxyproto.aiohttp import run_app as S; from aiohttp import web; "
                   "S(web.Application(), {})",
    }[kind].format("trusted='10.0.0.0/33'")
    done = start([sys.executable, "-c", script], {})
    assert done.returncode != 0
    assert "10.0.0.0/33" in done.stderr.strip().splitlines()[-1], done.stderr


# -- Unix sockets ------------------------------------------------------------------------


def _wsgi_client(environ, start_response):
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _unix_exchange(path: str, data: bytes, sock_module=socket) -> bytes:
    sock = sock_module.socket(socket.AF_UNIX)
    with contextlib.closing(sock):
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        return recv_all(sock).partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("kind", ["gevent", "waitress", "aiohttp", "websockets"])
def test_on_a_unix_socket(kind):
    """The Unix-socket forms: the header's client over a Unix socket whose
    peers are trusted; a server whose policy trusts none stops at start-up."""
    require_module(kind)
    import asyncio
    import threading

    header = pp.build(CLIENT, SERVER)
    expected = f"{CLIENT[0]} {CLIENT[1]}".encode()
    with peers.scratch_dir("pp-unix-") as folder:
        path = str(folder / "app.sock")
        if kind == "gevent":
            from gevent import socket as gsocket

            from pyproxyproto.gevent import WSGIServer

            listener = gsocket.socket(socket.AF_UNIX)
            listener.bind(path)
            listener.listen(8)
            gevent_server = WSGIServer(listener, _wsgi_client, trusted=["unix"], log=None)
            gevent_server.start()
            try:
                assert _unix_exchange(path, header + GET, gsocket) == expected
            finally:
                gevent_server.stop()
            with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
                WSGIServer(gsocket.socket(socket.AF_UNIX), _wsgi_client, trusted=["10.0.0.0/8"])
        elif kind == "waitress":
            from pyproxyproto.waitress import create_server

            waitress_server = create_server(_wsgi_client, unix_socket=path, trusted=["unix"])
            thread = threading.Thread(target=waitress_server.run, daemon=True)
            thread.start()
            try:
                assert _unix_exchange(path, header + GET) == expected
            finally:
                waitress_server.close()
            with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
                create_server(_wsgi_client, unix_socket=str(folder / "other.sock"),
                              trusted=["10.0.0.0/8"])
        elif kind == "aiohttp":
            from aiohttp import web

            from pyproxyproto.aiohttp import ProxyProtocolSite

            async def who(request):
                peer = request.transport.get_extra_info("peername")
                return web.Response(text=f"{request.remote} {peer[1]}")

            async def main():
                app = web.Application()
                app.router.add_get("/who", who)
                runner = web.AppRunner(app)
                await runner.setup()
                try:
                    await ProxyProtocolSite(runner, path=path, trusted=["unix"]).start()
                    reply = await asyncio.to_thread(_unix_exchange, path, header + GET)
                    with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
                        ProxyProtocolSite(runner, path=path, trusted=["10.0.0.0/8"])
                    return reply
                finally:
                    await runner.cleanup()

            assert asyncio.run(main()) == expected
        else:
            from websockets.asyncio.client import unix_connect

            from pyproxyproto.websockets import unix_serve

            async def handler(connection):
                await connection.send(repr(connection.remote_address))

            async def main():
                async with unix_serve(handler, path, trusted=["unix"]):
                    sock = socket.socket(socket.AF_UNIX)
                    sock.connect(path)
                    sock.sendall(header)
                    async with unix_connect(sock=sock) as connection:
                        return await connection.recv()

            assert asyncio.run(main()) == repr(CLIENT)
            with pytest.raises(ValueError, match="add 'unix' to the trusted networks"):
                unix_serve(handler, str(folder / "other.sock"), trusted=["10.0.0.0/8"])
