"""aiohttp and uvicorn, unpatched, behind pyproxyproto.aio.wrap: each reports
the header's client as the request's remote address."""

import asyncio

import pytest

import pyproxyproto as pp
from pyproxyproto import aio

from tests.integration_helpers import CLIENT, CLIENT6, LOOPBACK, SERVER, SERVER6, require_module, run

pytestmark = pytest.mark.servers

REQUEST = b"GET /who?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


async def http_get(address, header):
    reader, writer = await asyncio.open_connection(*address[:2])
    writer.write(header + REQUEST)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def test_aiohttp_request_remote_is_the_real_client():
    web = require_module("aiohttp.web").web

    async def who(request):
        header = request.transport.get_extra_info("proxy_header")
        return web.Response(text=f"{request.remote} {header.source[1]} {request.host}")

    async def main():
        app = web.Application()
        app.router.add_get("/who", who)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                aio.wrap(runner.server, trusted=["127.0.0.0/8"], timeout=2), LOOPBACK, 0
            )
            address = server.sockets[0].getsockname()
            v2 = await http_get(address, pp.build(CLIENT, SERVER))
            v1 = await http_get(address, pp.build(CLIENT6, SERVER6, version=1))
            server.close()
        finally:
            await runner.cleanup()
        return v2, v1

    v2, v1 = run(main())
    assert v2 == b"203.0.113.7 41234 example.com"
    assert v1 == b"2001:db8::7 41234 example.com"


def test_uvicorn_scope_client_is_the_real_client():
    uvicorn = require_module("uvicorn")
    from uvicorn.protocols.http.h11_impl import H11Protocol

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        body = f"{scope['client'][0]}:{scope['client'][1]} {scope['server'][0]} {scope['path']}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})

    async def main():
        config = uvicorn.Config(
            app, host=LOOPBACK, port=0, lifespan="off", log_level="warning",
            http=aio.wrap(H11Protocol, trusted=["127.0.0.0/8"], timeout=2),
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done(), serving
                await asyncio.sleep(0.01)
            address = server.servers[0].sockets[0].getsockname()
            return await http_get(address, pp.build(CLIENT, SERVER))
        finally:
            server.should_exit = True
            await serving

    assert run(main()) == b"203.0.113.7:41234 198.51.100.1 /who"
