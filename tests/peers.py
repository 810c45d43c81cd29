"""Real peers for the interoperability and load tests: HAProxy and nginx
processes on loopback, certificates made with the openssl CLI, free ports,
readiness polling, and an in-process asyncio server behind ``aio.wrap``
that reports what each connection looked like to the application.

Every peer is started and stopped by the test that uses it.  A peer that
cannot be started (not installed, or refusing to run) fails the test in CI
(CI=true) and skips it elsewhere, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pyproxyproto import aio

IN_CI = os.environ.get("CI") == "true"

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"

NGINX_STREAM_MODULES = (
    "/usr/lib/nginx/modules/ngx_stream_module.so",
    "/usr/share/nginx/modules/ngx_stream_module.so",
    "/usr/lib64/nginx/modules/ngx_stream_module.so",
)

# What the tests' certificates say; the HAProxy test checks the TLVs against it.
SERVER_NAME = "app.pp.test"
CLIENT_CN = "pp-client-7"


def need(available: bool, what: str) -> None:
    """Skip unless ``available``; in CI a missing peer is a failure instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} (required in CI, where CI=true)", pytrace=False)
    pytest.skip(what)


# -- ports -----------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK6, 0))
        return True
    except OSError:
        return False


def free_port(host: str = LOOPBACK4) -> int:
    """A port that was free a moment ago (bind port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def url_host(host: str) -> str:
    """host as it appears before ':port' in HAProxy and nginx configs."""
    return f"[{host}]" if ":" in host else host


def wait_for_connect(host: str, port: int, timeout: float, proc: Peer | None = None) -> None:
    """Poll a TCP connect until it succeeds; give up at the deadline or when
    the process dies."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PeerFailed(f"{proc.name} exited with {proc.poll()}: {proc.output()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise PeerFailed(
        f"{proc.name if proc else 'peer'} did not accept on {host} port {port} "
        f"within {timeout} s ({last}): {proc.output() if proc else ''}"
    )


# -- processes -----------------------------------------------------------------


class PeerFailed(RuntimeError):
    """A peer process did not start or did not become ready."""


class Peer:
    """A child process whose stdout and stderr are read line by line into
    ``lines`` by two threads, so the test can wait for a log line."""

    def __init__(self, name: str, argv: list[str], cwd: str) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    def poll(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines[-60:])

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching line from {self.name} within {timeout} s:\n{self.output()}"
                    )
                self._cond.wait(min(left, 0.2))

    def matching(self, predicate: Callable[[str], bool]) -> list[str]:
        with self._cond:
            return [line for line in self.lines if predicate(line)]

    def stop(self) -> None:
        """Terminate the whole process group; kill it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        for t in self._readers:
            t.join(timeout=5)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A short temporary directory (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- HAProxy -------------------------------------------------------------------


def haproxy_version() -> tuple[int, ...] | None:
    exe = shutil.which("haproxy")
    if exe is None:
        return None
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10).stdout
    words = out.split()
    try:
        text = words[words.index("version") + 1]
    except (ValueError, IndexError):
        return None
    parts = []
    for piece in text.split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


@contextlib.contextmanager
def haproxy(config: str, directory: Path, ready: tuple[str, int], timeout: float = 10.0):
    """Run ``haproxy -db`` on ``config`` until the block ends.

    ``ready`` is a listener the config declares (any frontend: it only has to
    accept), polled until HAProxy is up.
    """
    exe = shutil.which("haproxy")
    need(exe is not None, "haproxy is not installed (apt-get install haproxy)")
    path = directory / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run(
        [exe, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        # Our config, so a refusal is a bug in the test, not a missing peer.
        raise AssertionError(
            f"haproxy -c rejected the config:\n{check.stdout}{check.stderr}\n{config}"
        )
    peer = Peer("haproxy", [exe, "-db", "-f", str(path)], str(directory))
    try:
        try:
            wait_for_connect(*ready, timeout=timeout, proc=peer)
        except PeerFailed as exc:
            need(False, f"HAProxy could not be started: {exc}")
        yield peer
    finally:
        peer.stop()


# -- nginx ---------------------------------------------------------------------


def nginx_stream_module() -> str | None:
    for path in NGINX_STREAM_MODULES:
        if os.path.exists(path):
            return path
    return None


@contextlib.contextmanager
def nginx(stream_block: str, directory: Path, ready: tuple[str, int], timeout: float = 10.0):
    """Run nginx in the foreground with its own prefix, pid file and error log
    under ``directory``, serving ``stream_block`` (the inside of stream {})."""
    exe = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    need(exe is not None, "nginx is not installed (apt-get install nginx libnginx-mod-stream)")
    module = nginx_stream_module()
    built_in = module is None and _nginx_has_builtin_stream(exe)
    need(
        module is not None or built_in,
        "nginx has no stream module (apt-get install libnginx-mod-stream)",
    )
    lines = []
    if module is not None:
        lines.append(f"load_module {module};")
    # As root, workers need an account that exists; nginx ignores `user`
    # when not started as root.
    if os.geteuid() == 0:
        lines.append("user nobody nogroup;" if _group_exists("nogroup") else "user nobody;")
    lines += [
        "daemon off;",
        "worker_processes 1;",
        f"pid {directory}/nginx.pid;",
        f"error_log {directory}/error.log info;",
        "events { worker_connections 512; }",
        "stream {",
        stream_block,
        "}",
    ]
    config = "\n".join(lines) + "\n"
    path = directory / "nginx.conf"
    path.write_text(config)
    base = [exe, "-p", f"{directory}/", "-e", f"{directory}/error.log", "-c", str(path)]
    check = subprocess.run(base + ["-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        text = check.stdout + check.stderr
        if "unknown directive" in text and "stream" in text:
            need(False, f"nginx cannot load its stream module: {text}")
        raise AssertionError(f"nginx -t rejected the config:\n{text}\n{config}")
    peer = Peer("nginx", base, str(directory))
    try:
        try:
            wait_for_connect(*ready, timeout=timeout, proc=peer)
        except PeerFailed as exc:
            log = directory / "error.log"
            text = log.read_text() if log.exists() else ""
            need(False, f"nginx could not be started: {exc} {text}")
        yield peer
    finally:
        peer.stop()


def _nginx_has_builtin_stream(exe: str) -> bool:
    out = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=10)
    text = out.stdout + out.stderr
    return "--with-stream " in text + " " and "--with-stream=dynamic" not in text


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


# -- certificates --------------------------------------------------------------


@dataclass
class Certs:
    directory: Path
    ca: Path  # the CA certificate (PEM)
    server_pem: Path  # HAProxy's crt: certificate then key
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # What HAProxy reports for its own (frontend) certificate.
    server_key_alg: str = "EC256"
    server_sig_alg: str = "RSA-SHA256"
    server_name: str = SERVER_NAME
    client_cn: str = CLIENT_CN


def make_certs(directory: Path) -> Certs:
    """A throw-away CA (RSA 2048, SHA-256), a server certificate for
    SERVER_NAME and the loopback addresses (EC P-256), and a client
    certificate whose CN is CLIENT_CN (EC P-256), made with the openssl CLI."""
    exe = shutil.which("openssl")
    need(exe is not None, "the openssl command is not installed (apt-get install openssl)")
    d = directory

    def openssl(*args: str) -> None:
        done = subprocess.run([exe, *args], cwd=d, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed:\n{done.stderr}")

    (d / "ca.ext").write_text(
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    (d / "server.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:{SERVER_NAME}, IP:127.0.0.1, IP:::1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid:always\n"
    )
    (d / "client.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = clientAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid:always\n"
    )
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ca.key")
    openssl(
        "req", "-new", "-x509", "-key", "ca.key", "-sha256", "-days", "3",
        "-subj", "/CN=pyproxyproto test CA", "-extensions", "v3_ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.pem",
    )
    serial = 1000
    for name, subject in (("server", SERVER_NAME), ("client", CLIENT_CN)):
        serial += 1
        openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key",
        )
        openssl(
            "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={subject}", "-out", f"{name}.csr"
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(serial), "-days", "3", "-sha256",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        )
    (d / "server.pem").write_text((d / "server.crt").read_text() + (d / "server.key").read_text())
    return Certs(
        directory=d,
        ca=d / "ca.pem",
        server_pem=d / "server.pem",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )


# -- the application behind aio.wrap -------------------------------------------


@dataclass
class Seen:
    """What the application saw of one connection."""

    peername: Any
    sockname: Any
    proxy_peername: Any
    header: Any  # the ProxyHeader, or None
    received: bytes = b""
    closed: bool = False


class _ReportingEcho(asyncio.Protocol):
    """Writes one JSON line describing the connection as the application sees
    it, then echoes everything it receives."""

    def __init__(self, app: ProxiedApp) -> None:
        self._app = app
        self._seen: Seen | None = None
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        header = transport.get_extra_info("proxy_header")
        self._seen = Seen(
            peername=transport.get_extra_info("peername"),
            sockname=transport.get_extra_info("sockname"),
            proxy_peername=transport.get_extra_info("proxy_peername"),
            header=header,
        )
        report = {
            "peername": _jsonable(self._seen.peername),
            "sockname": _jsonable(self._seen.sockname),
            "proxy_peername": _jsonable(self._seen.proxy_peername),
            "header": None if header is None else header.to_dict(),
        }
        transport.write(json.dumps(report).encode() + b"\n")
        self._app._connected(self._seen)

    def data_received(self, data: bytes) -> None:
        assert self._seen is not None
        self._seen.received += data
        self._transport.write(data)

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._seen is not None:
            self._seen.closed = True


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class _Records(logging.Handler):
    """Keeps the records logged from one thread (one application's loop)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.thread: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)


class ProxiedApp:
    """An asyncio server behind ``aio.wrap`` on its own event loop thread,
    on a loopback TCP port or, when ``host`` is a path, a unix socket.

    ``seen`` yields a Seen per connection the application was handed;
    ``problems()`` lists pyproxyproto log records at WARNING or above and the
    event loop's unhandled errors.
    """

    def __init__(self, host: str = LOOPBACK4, **options: Any) -> None:
        self.host = host
        self.options = options
        self.seen: queue.Queue[Seen] = queue.Queue()
        self.all_seen: list[Seen] = []
        self.loop_errors: list[dict[str, Any]] = []
        self._records = _Records()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _connected(self, seen: Seen) -> None:
        self.all_seen.append(seen)
        self.seen.put(seen)

    def __enter__(self) -> ProxiedApp:
        logging.getLogger("pyproxyproto").addHandler(self._records)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._records.thread = threading.get_ident()
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
            try:
                factory = aio.wrap(lambda: _ReportingEcho(self), **self.options)
                if self.host.startswith("/"):  # a unix socket's path
                    self._server = loop.run_until_complete(
                        loop.create_unix_server(factory, self.host, backlog=128)
                    )
                else:
                    self._server = loop.run_until_complete(
                        loop.create_server(factory, self.host, 0, backlog=128)
                    )
                    self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="proxied-app", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise AssertionError("the application server did not start")
        if failure:
            raise failure[0]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        logging.getLogger("pyproxyproto").removeHandler(self._records)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def next_seen(self, timeout: float = 10.0) -> Seen:
        try:
            return self.seen.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"the application was handed no connection within {timeout} s; "
                f"problems: {self.problems()}"
            ) from None

    def records(self, level: int = logging.WARNING) -> list[logging.LogRecord]:
        return [r for r in list(self._records.records) if r.levelno >= level]

    def take_records(self, level: int = logging.WARNING) -> list[logging.LogRecord]:
        """The records at ``level`` or above so far, which problems() then forgets."""
        taken = self.records(level)
        for r in taken:
            self._records.records.remove(r)
        return taken

    def problems(self) -> list[str]:
        found = [f"log {r.levelname}: {r.getMessage()}" for r in self.records()]
        found += [
            f"loop error: {c.get('message')} {c.get('exception')!r}" for c in self.loop_errors
        ]
        return found


def recv_line(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    """One line (with its newline) read byte-exactly from a blocking socket."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"closed after {bytes(data)!r}")
        data += chunk
        if len(data) > limit:
            raise AssertionError("line too long")
    return bytes(data)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def recv_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
