"""pyproxyproto.sanic against real Sanic in multi-worker mode: request.ip is
the header's client (HTTP and WebSocket), exact bytes after the header, and
bare or untrusted connections are refused; options from PYPROXYPROTO_*."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest
from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    LOOPBACK,
    SERVER,
    SERVER6,
    ServerProcess,
    http_body,
    recv_all,
    require_module,
)

import pyproxyproto as pp
from pyproxyproto import sockets

pytestmark = pytest.mark.servers

APP = '''
import sys
from sanic import Sanic, response
from pyproxyproto.sanic import HttpProtocol, WebSocketProtocol

app = Sanic("proxied")

@app.get("/who")
async def who(request):
    return response.text(f"{request.ip} {request.port} {request.conn_info.server}")

@app.post("/echo")
async def echo(request):
    return response.raw(request.body)

@app.websocket("/ws")
async def ws(request, websocket):
    await websocket.send(f"{request.ip} {request.port}")

@app.after_server_start
async def ready(app, loop):
    # Sanic's own "ready" line differs between releases.
    print("test app: worker ready", flush=True)

if __name__ == "__main__":
    protocol = WebSocketProtocol if sys.argv[2] == "ws" else HttpProtocol
    app.run(host="127.0.0.1", port=int(sys.argv[1]), protocol=protocol, workers=2,
            access_log=False, motd=False)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class SanicServer(ServerProcess):
    def __init__(self, tmp_path: Path, kind: str, **env: str) -> None:
        require_module("sanic")
        script = tmp_path / "sanic_app.py"
        script.write_text(APP)
        self.port = free_port()
        root = str(Path(pp.__file__).resolve().parent.parent)
        # Ready when both workers are.
        super().__init__([sys.executable, str(script), str(self.port), kind],
                         ready="test app: worker ready", count=2, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=root, **env))

    def request(self, data: bytes, header: bytes = b"") -> bytes:
        with socket.create_connection((LOOPBACK, self.port), timeout=5) as sock:
            try:
                sock.sendall(header + data)
            except OSError:
                return b""
            return recv_all(sock)


GET = b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_http_request_ip_is_the_real_client_in_every_worker(tmp_path):
    payload = pp.build(CLIENT, SERVER) * 50 + bytes(range(256)) * 20
    post = (b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload)) + payload
    with SanicServer(tmp_path, "http", PYPROXYPROTO_TRUSTED="127.0.0.0/8") as server:
        # Several connections, so both workers serve some.
        for _ in range(4):
            v1 = server.request(GET, pp.build(CLIENT, SERVER, version=1))
            v2 = server.request(GET, pp.build(CLIENT6, SERVER6))
            assert http_body(v1) == b"203.0.113.7 41234 198.51.100.1:443"
            assert http_body(v2) == b"2001:db8::7 41234 [2001:db8::1]:443"
        assert http_body(server.request(post, pp.build(CLIENT, SERVER))) == payload
        assert server.request(GET) == b""  # bare
        output = server.stop()
    assert "the peer sent no PROXY header" in output


def test_untrusted_peer_is_refused(tmp_path):
    with SanicServer(tmp_path, "http", PYPROXYPROTO_TRUSTED="192.0.2.0/24") as server:
        assert server.request(GET, pp.build(CLIENT, SERVER)) == b""
        output = server.stop()
    # In Sanic's own log format: its worker's name, time and level (24.12 and
    # later), or time, process and level in brackets (before).
    assert re.search(r"^(Srv \d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} WARNING: "
                     r"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] )"
                     r"closed connection from 127\.0\.0\.1:\d+: peer is not in the trusted networks",
                     output, re.M), output


def test_websocket_request_ip_is_the_real_client(tmp_path):
    require_module("websockets")
    from websockets.sync.client import connect

    with SanicServer(tmp_path, "ws", PYPROXYPROTO_TRUSTED="127.0.0.0/8") as server:
        sock = sockets.create_connection(
            (LOOPBACK, server.port), header=pp.build(CLIENT, SERVER), timeout=5
        )
        with connect(f"ws://{LOOPBACK}:{server.port}/ws", sock=sock) as websocket:
            assert websocket.recv(timeout=5) == "203.0.113.7 41234"
