"""The applications the server tests run (imported by the server processes):
each answers with JSON saying what the server told it about the connection."""

from __future__ import annotations

import asyncio
import json
import os
import sys


def _header(header):
    return None if header is None else header.to_dict()


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    report = {
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "scheme": scope["scheme"],
        "header": _header(scope.get("state", {}).get("proxy_header")),
    }
    body = json.dumps(report).encode()
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "PROXY_PROTOCOL", "PROXY_ADDR", "PROXY_PORT",
            "wsgi.url_scheme")
    report = {key: environ.get(key) for key in keys}
    report["header"] = _header(environ.get("pyproxyproto.proxy_header"))
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def run_hypercorn() -> None:
    """``python server_apps.py hypercorn HOST:PORT [CERT KEY]``, options from
    PYPROXYPROTO_* variables (trusted networks in PYPROXYPROTO_TRUSTED)."""
    from hypercorn.config import Config

    from pyproxyproto._env import options_from_env
    from pyproxyproto.hypercorn import serve

    config = Config()
    config.bind = [sys.argv[2]]
    config.accesslog = "-"
    if len(sys.argv) > 3:
        config.certfile, config.keyfile = sys.argv[3], sys.argv[4]
    asyncio.run(serve(asgi, config, **options_from_env(os.environ)))


if __name__ == "__main__" and sys.argv[1] == "hypercorn":
    run_hypercorn()
