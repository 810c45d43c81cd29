"""Shared by the integration tests: loopback sockets, bounded event loops,
external tools, a self-signed certificate, the echo app and other servers
as processes, and HTTP response bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
IN_CI = os.environ.get("CI") == "true"

# Addresses of the documentation ranges (RFC 5737 / 3849): a header's
# client, never a host the tests talk to.
CLIENT = ("203.0.113.7", 41234)
SERVER = ("198.51.100.1", 443)
CLIENT6 = ("2001:db8::7", 41234, 0, 0)
SERVER6 = ("2001:db8::1", 443, 0, 0)


def require(available: bool, what: str) -> None:
    """Skip when a tool or package is missing, except in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is missing")
    pytest.skip(f"{what} is not installed")


# Packages a CI stage leaves out of its install on purpose: those that cannot
# be built on an interpreter (.ci/pythons.sh), the web frameworks of the
# documentation's example apps in the lowest set (.ci/lowest.sh).
LEFT_OUT = set(os.environ.get("PYPROXYPROTO_LEFT_OUT", "").split())


def require_module(name: str):
    try:
        return __import__(name)
    except ImportError:
        if name in LEFT_OUT:
            pytest.skip(f"the Python package {name!r} is left out of this CI stage's install"
                        " on purpose (PYPROXYPROTO_LEFT_OUT)")
        require(False, f"the Python package {name!r}")


def run(coro, timeout: float = 15.0):
    """Run a coroutine on a fresh event loop, never for longer than timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.contextmanager
def tcp_pair(family: int = socket.AF_INET, host: str = LOOPBACK):
    """(server side, client side) of one loopback TCP connection."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        server, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with server, client:
        yield server, client


def listener(host: str = LOOPBACK) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def connect(address, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address[:2], timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes (the socket's timeout bounds it)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed without sending anything."""
    return recv_all(sock) == b""


def dribble(sock: socket.socket, data: bytes, interval: float) -> None:
    for i in range(len(data)):
        sock.sendall(data[i : i + 1])
        time.sleep(interval)


def rejections(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pyproxyproto"]


def self_signed_cert(directory: Path) -> tuple[str, str]:
    """A certificate for localhost/127.0.0.1 and its key, made by openssl."""
    openssl = shutil.which("openssl")
    require(openssl is not None, "the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


class EchoProcess:
    """``python -m pyproxyproto echo`` on ephemeral loopback ports."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyproxyproto", "echo", "--host", LOOPBACK,
             "--proxy-port", "0", "--plain-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()
        self.proxy_port = self._port("PROXY protocol")
        self.plain_port = self._port("plain HTTP")

    @staticmethod
    def _drain(stream, lines: list[str]) -> None:
        for raw in stream:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _port(self, label: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout:
                if line.startswith(label):
                    return int(re.search(r":(\d+)/", line).group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"echo did not announce its {label} port: {self.stdout} {self.stderr}")

    def log(self) -> list[dict]:
        """Every line logged so far: each must be one JSON object."""
        return [json.loads(line) for line in list(self.stderr)]

    def access_log(self, timeout: float = 5.0) -> list[dict]:
        """The request lines logged so far (waits for at least one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log() if line.get("event") == "request"]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def wait_for_stderr(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stderr):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in the echo app's stderr: {self.stderr}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=5)
        return code


def http_body(response: bytes) -> bytes:
    """The body of an HTTP/1.1 200 response (anything else fails the test)."""
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    return rest


class ServerProcess:
    """A server in a child process, started and stopped by the test.

    It is ready once its output (stdout and stderr together) matches
    ``ready`` ``count`` times; a group in the pattern is its port.
    """

    def __init__(self, args: list[str], *, ready: str, cwd: Path, env: dict[str, str],
                 count: int = 1, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.output = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.output += self.proc.stdout.read() or b""
            found = re.findall(ready.encode(), self.output)
            if len(found) >= count:
                if re.compile(ready).groups:
                    self.port = int(found[-1])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{args} did not start: {self.output.decode(errors='replace')}")

    def stop(self) -> str:
        """Stop it (if it still runs); everything it wrote."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.output += self.proc.stdout.read() or b""
        return self.output.decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# How gunicorn's log (and hypercorn's, which formats alike) starts a WARNING
# line: the library's records must come out so, not bare.
GUNICORN_WARNING = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] "
