"""pyproxyproto.tornado.HTTPServer against real Tornado: request.remote_ip is
the header's client, TLS after the header, exact bytes, and every refusal."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import textwrap

import pytest
from tests.integration_helpers import (
    CLIENT,
    CLIENT6,
    LOOPBACK,
    SERVER,
    SERVER6,
    http_body,
    recv_all,
    require_module,
    run,
    self_signed_cert,
)

import pyproxyproto as pp

pytestmark = pytest.mark.servers

REQUEST = b"GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


def tornado_server(**options):
    require_module("tornado")
    import tornado.web

    from pyproxyproto.tornado import HTTPServer, proxy_header

    class Who(tornado.web.RequestHandler):
        def get(self):
            header = proxy_header(self.request)
            port = header.source[1] if header else "-"
            self.write(f"{self.request.remote_ip} {port} {self.request.protocol}")

        def post(self):
            self.write(self.request.body)

    app = tornado.web.Application([(r"/who", Who)])
    return HTTPServer(app, **options)


def exchange(port, data: bytes, tls: ssl.SSLContext | None = None, header: bytes = b"") -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        try:
            sock.sendall(header)
            if tls is None:
                sock.sendall(data)
                return recv_all(sock)
            with tls.wrap_socket(sock, server_hostname="localhost") as tsock:
                tsock.sendall(data)
                return recv_all(tsock)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def serve(server, *clients):
    """Start ``server`` on a loopback port, run each blocking client(port) in a thread."""

    async def main():
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        sock.listen(8)
        sock.setblocking(False)
        server.add_sockets([sock])
        port = sock.getsockname()[1]
        try:
            return [await asyncio.to_thread(client, port) for client in clients]
        finally:
            server.stop()
            await server.close_all_connections()

    return run(main())


@pytest.mark.parametrize(
    "client, server, version",
    [(CLIENT, SERVER, 1), (CLIENT, SERVER, 2), (CLIENT6, SERVER6, 1), (CLIENT6, SERVER6, 2)],
    ids=["v1", "v2", "v1-ipv6", "v2-ipv6"],
)
def test_remote_ip_is_the_real_client(client, server, version):
    stats = pp.Stats()
    header = pp.build(client, server, version=version)
    [response] = serve(
        tornado_server(trusted=["127.0.0.0/8"], stats=stats),
        lambda port: exchange(port, REQUEST, header=header),
    )
    assert http_body(response) == f"{client[0]} {client[1]} http".encode()
    assert stats.accepted == 1


def test_exact_bytes_after_the_header():
    # The header and a request body whose bytes look like a header, in one send.
    payload = pp.build(CLIENT, SERVER) * 200
    request = (b"POST /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(payload)) + payload
    [response] = serve(
        tornado_server(),
        lambda port: exchange(port, request, header=pp.build(CLIENT, SERVER, version=1)),
    )
    assert http_body(response) == payload


def test_header_dribbled_byte_by_byte():
    header = pp.build(CLIENT, SERVER, tlvs=[(0x05, b"unique")])

    def client(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(header)):
                sock.sendall(header[i : i + 1])
            sock.sendall(REQUEST)
            return recv_all(sock)

    [response] = serve(tornado_server(), client)
    assert http_body(response) == b"203.0.113.7 41234 http"


def test_tls_after_the_header(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    [response] = serve(
        tornado_server(ssl_options=server_context),
        lambda port: exchange(port, REQUEST, tls=client_context, header=pp.build(CLIENT, SERVER)),
    )
    assert http_body(response) == b"203.0.113.7 41234 https"


def test_refusals():
    stats = pp.Stats()
    server = tornado_server(trusted=["127.0.0.0/8"], timeout=0.3, stats=stats)
    untrusting = tornado_server(trusted=["192.0.2.0/24"], stats=stats)

    def silent(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.sendall(b"PROXY TCP4 ")
            return recv_all(sock)

    def half_header_then_close(port):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.sendall(b"\r\n\r\n\x00\r\n")
            sock.shutdown(socket.SHUT_WR)
            return recv_all(sock)

    bare, timed_out, closed = serve(
        server, lambda port: exchange(port, REQUEST), silent, half_header_then_close
    )
    [untrusted] = serve(
        untrusting, lambda port: exchange(port, REQUEST, header=pp.build(CLIENT, SERVER))
    )
    assert (bare, timed_out, closed, untrusted) == (b"", b"", b"", b"")
    counts = stats.as_dict()
    assert counts["rejected_invalid"] == 1
    assert counts["timed_out"] == 1
    assert counts["closed_early"] == 1
    assert counts["rejected_untrusted"] == 1
    assert counts["accepted"] == 0


def test_skip_serves_untrusted_peers_as_themselves():
    [response] = serve(
        tornado_server(trusted=["192.0.2.0/24"], on_untrusted="skip"),
        lambda port: exchange(port, REQUEST),
    )
    assert http_body(response) == b"127.0.0.1 - http"


def test_records_come_out_in_tornados_log_format():
    """A Tornado program that sets up Tornado's logging (parse_command_line)
    gets the refusal in Tornado's format, through ``tornado.general``."""
    require_module("tornado")
    program = textwrap.dedent("""
        import asyncio, socket
        import tornado.options, tornado.web
        import pyproxyproto as pp
        from pyproxyproto.tornado import HTTPServer

        tornado.options.parse_command_line([])

        def client(port):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(pp.build(("203.0.113.7", 41234), ("198.51.100.1", 443)))
                try:
                    sock.recv(1)  # refused: closed
                except ConnectionResetError:
                    pass

        async def main():
            server = HTTPServer(tornado.web.Application([]), trusted=["192.0.2.0/24"])
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            sock.setblocking(False)
            server.add_sockets([sock])
            await asyncio.to_thread(client, sock.getsockname()[1])
            server.stop()

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\[W \d{6} \d\d:\d\d:\d\d \w+:\d+\] closed connection from 127\.0\.0\.1:\d+: "
                     r"peer is not in the trusted networks", done.stderr, re.M), done.stderr
