"""The servers with no PROXY reader of their own, as the tests run them in a child process.

``python proxied_servers.py KIND PORT [CERT KEY]`` serves on 127.0.0.1:PORT
with the pyproxyproto integration for KIND (gevent-wsgi, gevent-stream,
waitress, aiohttp, websockets, websockets-sync), its policy options from
the PYPROXYPROTO_* variables.  The applications (also run by gunicorn's
workers) answer with JSON: the client and the header they were given, and
the process's counters (PYPROXYPROTO_STATS=proxied_servers:STATS).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys

import pyproxyproto as pp
from pyproxyproto._env import options_from_env

STATS = pp.Stats()
HOST = "127.0.0.1"


def _header(header):
    return None if header is None else header.to_dict()


def _report(client, header, scheme) -> dict:
    return {"client": list(client) if client else None, "header": _header(header),
            "scheme": scheme, "stats": STATS.as_dict()}


def wsgi(environ, start_response):
    port = environ.get("REMOTE_PORT")
    report = _report((environ.get("REMOTE_ADDR"), int(port) if port else None),
                     environ.get("pyproxyproto.proxy_header"), environ["wsgi.url_scheme"])
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    report = _report(scope.get("client"), scope.get("state", {}).get("proxy_header"),
                     scope["scheme"])
    body = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def aiohttp_application():
    from aiohttp import web

    from pyproxyproto.aiohttp import proxy_header

    async def who(request):
        peer = request.transport.get_extra_info("peername")
        return web.json_response(_report((request.remote, peer[1]), proxy_header(request),
                                         request.scheme))

    app = web.Application()
    app.router.add_get("/who", who)
    return app


async def aiohttp_factory():
    """What gunicorn's aiohttp worker loads."""
    return aiohttp_application()


def _tls(argv: list[str]) -> ssl.SSLContext | None:
    if len(argv) < 2:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(argv[0], argv[1])
    return context


def _stream_handler(sock, address):
    """gevent StreamServer: read a request, answer with the report."""
    from pyproxyproto.gevent import proxy_header

    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    scheme = "https" if hasattr(sock, "cipher") else "http"
    body = json.dumps(_report(address, proxy_header(sock), scheme)).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)
    print(f"stream: served {address[0]} GET /who", flush=True)


def main(kind: str, port: int, rest: list[str]) -> None:
    options = options_from_env()
    tls = _tls(rest)
    if kind == "gevent-wsgi":
        from pyproxyproto.gevent import WSGIServer

        extra = {"ssl_context": tls} if tls else {}
        WSGIServer((HOST, port), wsgi, **extra, **options).serve_forever()
    elif kind == "gevent-stream":
        from pyproxyproto.gevent import StreamServer

        extra = {"ssl_context": tls} if tls else {}
        StreamServer((HOST, port), _stream_handler, **extra, **options).serve_forever()
    elif kind == "waitress":
        from pyproxyproto.waitress import serve

        serve(wsgi, listen=f"{HOST}:{port}", **options)
    elif kind == "aiohttp":
        from pyproxyproto.aiohttp import run_app

        logging.basicConfig(level=logging.INFO)
        run_app(aiohttp_application(), host=HOST, port=port, ssl_context=tls, **options)
    elif kind == "websockets":
        from pyproxyproto.websockets import proxy_header, serve

        logging.basicConfig(level=logging.INFO)

        async def handler(connection):
            await connection.send(json.dumps(_report(
                connection.remote_address, proxy_header(connection), "wss" if tls else "ws")))

        async def run():
            async with serve(handler, HOST, port, ssl=tls, **options) as server:
                await server.serve_forever()

        asyncio.run(run())
    elif kind == "websockets-sync":
        from pyproxyproto.websockets import proxy_header, serve_sync

        logging.basicConfig(level=logging.INFO)

        def sync_handler(connection):
            connection.send(json.dumps(_report(
                connection.remote_address, proxy_header(connection), "wss" if tls else "ws")))

        with serve_sync(sync_handler, HOST, port, ssl=tls, **options) as server:
            server.serve_forever()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    # Run as the module PYPROXYPROTO_STATS names, so that the counters the
    # applications report are the ones the policy counts in.
    import proxied_servers

    proxied_servers.main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
