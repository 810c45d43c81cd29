"""The echo app: an HTTP server that tells each client what it received.

It listens on two ports: one that requires a PROXY header before HTTP (what
a load balancer with PROXY protocol enabled connects to) and one plain
HTTP port that never looks for a header.  Every request, whatever its
method or path, is answered with a plain-text report.  Everything it logs
is one JSON object per line (``JSONLines``): a line per request, and a
line per connection refused or given up on, whichever module logs it.
HTTP is the standard library's http.server; ProxyProtocolMixin adds the
header.
"""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import socket
import socketserver
import threading
import time
from typing import Any, Callable, cast
from urllib.parse import urlsplit

from ._constants import V2_SIGNATURE
from ._log import format_address
from ._policy import DEFAULT_TIMEOUT
from ._stats import Stats
from .sockets import ProxyProtocolMixin

logger = logging.getLogger("pyproxyproto.echo")

MAX_BODY = 1 << 20  # larger request bodies get 413


class JSONLines(logging.Formatter):
    """Every record as one JSON object: time, level, logger, and either the
    record's ``fields`` (the echo app's request lines) or its message.
    ``peer`` and ``reason`` attributes of a record, when a module sets them,
    become fields too."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        for name in ("peer", "reason"):
            if name in record.__dict__ and name not in line:
                line[name] = _jsonable(record.__dict__[name])
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return format_address(value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def log_as_json_lines(stream: Any) -> None:
    """Send every log record of the process to ``stream``, one JSON line each."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class ListenError(OSError):
    """A port of the echo app could not be bound; the message says which."""


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyproxyproto-echo"

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches to do_<METHOD>: answer every method alike.
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        self._error: str | None = None
        if not isinstance(self.server, ProxyProtocolMixin):
            version = self._proxy_header_version()
            if version:
                # A balancer with PROXY protocol on, pointed at the plain port.
                self.command, self.request_version = "", "HTTP/1.0"
                self.close_connection = True
                self.send_error(400, f"a PROXY protocol v{version} header on the plain HTTP "
                                     "port; send headers to the PROXY port")
                return False
        return super().parse_request()

    def _proxy_header_version(self) -> int:
        """1 or 2 if the request starts like a PROXY header, else 0.

        Only used to explain an error on the plain port, which never reads
        a header: the bytes are an invalid HTTP request either way.
        """
        line = self.raw_requestline
        if line.startswith(b"PROXY "):
            return 1
        if line == V2_SIGNATURE[:2]:
            # http.server read the signature's first line, "\r\n"; the rest is buffered.
            peek = getattr(self.rfile, "peek", None)
            rest = peek(len(V2_SIGNATURE))[: len(V2_SIGNATURE) - 2] if peek else b""
            if line + rest == V2_SIGNATURE:
                return 2
        return 0

    def _echo(self) -> None:
        metrics = getattr(self.server, "metrics", None)
        if metrics is not None and urlsplit(self.path).path == "/metrics":
            self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411, "send the request body with a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, "invalid Content-Length")
            return
        if length > MAX_BODY:
            self.send_error(413, f"request bodies are limited to {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        self._send(200, self._report(body).encode("utf-8"), "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _report(self, body: bytes) -> str:
        url = urlsplit(self.path)
        host = self.headers.get("Host") or format_address(self.server.server_address)
        lines = [
            f"Hostname: {socket.gethostname()}",
            "",
            "Request Information:",
            f"\tclient_address={self.address_string()}",
            f"\tmethod={self.command}",
            f"\treal path={url.path}",
            f"\tquery={url.query}",
            f"\trequest_version={self.request_version.partition('/')[2]}",
            "\trequest_scheme=http",
            f"\trequest_uri={self.path if url.scheme else f'http://{host}{self.path}'}",
            "",
        ]
        if isinstance(self.server, ProxyProtocolMixin):
            lines += ["PROXY Header:", f"\tproxy_peer={format_address(self.request.getpeername())}"]
            header = self.server.proxy_header(self.request)
            if header is None:
                lines.append("\t-not believed: the peer is not trusted-")
            else:
                for name, value in header.to_dict().items():
                    if value not in (None, [], ()):
                        lines.append(f"\t{name}={_text(value)}")
            lines.append("")
        lines.append("Request Headers:")
        lines += [f"\t{name.lower()}={value}" for name, value in self.headers.items()]
        lines += ["", "Request Body:"]
        lines.append(body.decode("utf-8", "replace") if body else "\t-no body in request-")
        return "\n".join(lines) + "\n"

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        proxied = isinstance(self.server, ProxyProtocolMixin)
        now = time.monotonic()
        fields = {
            "event": "request",
            "client": format_address(self.client_address),
            "proxy_peer": format_address(self.request.getpeername()) if proxied else None,
            "method": getattr(self, "command", None) or None,  # none read yet
            "uri": getattr(self, "path", None),  # unset if the request line was bad
            "status": int(code),
            "request_time": round(now - getattr(self, "_started", now), 6),
        }
        error = getattr(self, "_error", None)
        if error is not None:
            fields["error"] = error
        level = logging.INFO if int(code) < 400 else logging.WARNING
        logger.log(level, "%s %s", fields["method"], fields["status"], extra={"fields": fields})

    def log_error(self, format: str, *args: Any) -> None:
        if format == "code %d, message %s":
            # From send_error: the request line it logs next carries the message.
            self._error = str(args[1])
        else:
            self.log_message(format, *args)

    def address_string(self) -> str:
        # A header's source may be a Unix socket path rather than (host, port).
        address = self.client_address
        return str(address[0]) if isinstance(address, tuple) else format_address(address)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's other lines (a request line timing out), as JSON too.
        logger.warning("%s", format % args, extra={"peer": self.client_address})


def _text(value: Any) -> str:
    """One line of the report for a value of ProxyHeader.to_dict()."""
    if isinstance(value, dict):
        if "host" in value:
            return format_address((value["host"], value["port"]))
        if "type" in value:  # a TLV
            return f"0x{value['type']:02x}:{value['value']}"
        return " ".join(f"{k}={_text(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


class PlainEchoServer(http.server.ThreadingHTTPServer):
    # The plain port answers /metrics with this, when it is set.
    metrics: Callable[[], bytes] | None = None

    daemon_threads = True

    def __init__(self, address: tuple[str, int], **kwargs: Any) -> None:
        info = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)
        self.address_family, _, _, _, sockaddr = info[0]
        # A SOCK_STREAM lookup gives AF_INET or AF_INET6 addresses only.
        super().__init__(cast("tuple[str, int]", sockaddr), EchoHandler, **kwargs)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the address.
        socketserver.TCPServer.server_bind(self)
        host, self.server_port = self.server_address[:2]
        self.server_name = host if isinstance(host, str) else bytes(host).decode()


class ProxyEchoServer(ProxyProtocolMixin, PlainEchoServer):
    """The PROXY port: a header first, then HTTP."""


class EchoApp:
    """Both servers, each serving in its own thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        proxy_port: int = 9080,
        plain_port: int = 8080,
        trusted: Any = None,
        header_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.stats = Stats()
        self.proxy = _listen("PROXY protocol", ProxyEchoServer, (host, proxy_port),
                             trusted=trusted, timeout=header_timeout, stats=self.stats)
        try:
            self.plain = _listen("plain HTTP", PlainEchoServer, (host, plain_port))
        except BaseException:
            self.proxy.server_close()
            raise
        self.plain.metrics = _metrics(self.stats)
        self._threads = [
            threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
            for server in (self.proxy, self.plain)
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        for server in (self.proxy, self.plain):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()


def _metrics(stats: Stats) -> Callable[[], bytes] | None:
    """The PROXY port's counters in Prometheus' text format, when
    prometheus_client is installed (pyproxyproto[prometheus])."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from .prometheus import register
    except ImportError:
        return None
    registry = CollectorRegistry()
    register(stats, registry)
    return lambda: generate_latest(registry)


def _listen(label: str, server: Any, address: tuple[str, int], **kwargs: Any) -> Any:
    try:
        return server(address, **kwargs)
    except OSError as exc:
        error = ListenError(f"cannot listen on {format_address(address)} "
                            f"(the {label} port): {exc.strerror or exc}")
        error.errno = exc.errno
        raise error from exc
