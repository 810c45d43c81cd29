"""Every command line the documentation shows (each line of a ```sh block in
README.md, CONTRIBUTING.md and docs/, and each command of the README's table
of servers) has an entry in COMMANDS, and runs as written: offline commands
in the quick tier; servers (started, asked behind a header from 203.0.113.7,
stopped) and the clients shown beside them in the servers tier; the install
commands in a fresh virtual environment in the packaging tier.  The only
changes made to a line: its ports move to free ones (9080, 8080, 8000, and
uvicorn's and gunicorn's default through UVICORN_PORT / GUNICORN_CMD_ARGS),
/run/app.sock to a scratch folder, and python3 is this test's interpreter.
A command that cannot run here is listed with the reason, and with the
stage of .ci/run that runs it where there is one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pyproxyproto as pp

from tests import doc_blocks, peers
from tests.doc_blocks import ROOT
from tests.integration_helpers import recv_all, require_module

pytestmark = pytest.mark.skipif(not doc_blocks.in_checkout(),
                                reason="needs a source checkout (docs/ and .ci/)")

CLIENT = ("203.0.113.7", 41234)
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
BIN = str(Path(sys.executable).parent)


@dataclass(frozen=True)
class Run:
    """Run on its own; exit status 0 and ``expect`` in its output."""

    expect: str


@dataclass(frozen=True)
class Server:
    """Started, then asked behind a header: its reply names the client, or
    (``refuses``) it closes without a byte, the peer being untrusted.
    ``files``: the page whose ``# file:`` blocks it serves, or ``app`` for
    the table's commands (an ASGI or WSGI app naming the client)."""

    files: str = ""
    refuses: bool = False
    plain: bool = False  # a balancer itself: asked without a header
    expect: bytes = CLIENT[0].encode()
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Client:
    """Run while the server before it in its block is up (or ``server``,
    another documented line, when its block has none); ``expect`` in its
    output."""

    expect: str
    server: str = ""


@dataclass(frozen=True)
class Install:
    """An install or build command, run in a copy of the checkout with a
    fresh virtual environment (packaging tier); ``then`` checks the result."""

    then: str = ""


@dataclass(frozen=True)
class NotRun:
    """Not run by this test: why, and the line of .ci/run or .ci/tier.sh that
    runs it (or its short form) where there is one."""

    reason: str
    ci: str = ""


ECHO = "pyproxyproto echo"
ASGI = "asgi"
WSGI = "wsgi"

COMMANDS: dict[str, object] = {
    # README: install
    "python3 -m pip install .": Install(then="import pyproxyproto"),
    "python3 -m pip wheel --no-deps --wheel-dir dist .": Install(),
    "python3 -m pip install dist/pyproxyproto-*.whl": Install(then="import pyproxyproto"),
    "python3 -m pip install '.[docs]'": Install(then="import sphinx, furo, myst_parser"),
    "python3 -m sphinx -W -b html docs docs/_build/html": Install(),
    # README: the two commands
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' --config-settings editable_mode=compat && .venv/bin/pyproxyproto echo":
        NotRun("makes .venv and builds the package in the checkout (about a minute), then "
               "serves until stopped; .ci/run's first stage installs the same way, and "
               "the echo app it starts is tested below as 'pyproxyproto echo'",
               ci="tier install test,"),
    "curl --haproxy-protocol http://127.0.0.1:9080/": Client("127.0.0.1", server=ECHO),
    "curl -s -o /dev/null -w '%{http_code}\\n' --haproxy-protocol http://127.0.0.1:9080/": Client("200"),
    ".venv/bin/python -m pytest -q": NotRun("the quick tier itself", ci="tier quick"),
    "bash .ci/run": NotRun("CI itself"),
    # CONTRIBUTING
    "python -m pytest -q": NotRun("the quick tier itself", ci="tier quick"),
    "python -m pytest -q --all": NotRun("every tier (half an hour)", ci="pure tier all"),
    "python -m pytest -q -m leaks": NotRun("the leaks tier", ci="-m leaks"),
    "PYPROXYPROTO_NO_EXTENSIONS=1 python -m pytest -q":
        NotRun("the tiers on the pure backend", ci="pure tier all"),
    "PYTHON=.venv/bin/python FUZZ_CORPUS=$HOME/pyproxyproto-corpus tests/fuzz/run.sh 28800 -fork=$(nproc)":
        NotRun("eight hours of fuzzing; CI fuzzes for a minute", ci="tests/fuzz/run.sh 60"),
    "PYPROXYPROTO_LEAK_ITERATIONS=1000000 python -m pytest -q -m leaks":
        NotRun("a million parses per kind", ci="PYPROXYPROTO_LEAK_ITERATIONS=1000000"),
    "python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html":
        NotRun("the documentation build", ci="python -m sphinx -W --keep-going -n -q -b html docs"),
    # docs/benchmarks.md
    "python -m bench": NotRun("five minutes of benchmarks; CI runs the smoke run",
                              ci="python -m bench --quick"),
    # docs/cli.md
    ECHO: Server(expect=b"client_address=203.0.113.7"),
    "curl http://127.0.0.1:8080/": Client("client_address=127.0.0.1"),
    "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | pyproxyproto send 127.0.0.1:9080":
        Client("client_address=127.0.0.1"),
    "pyproxyproto echo --host 0.0.0.0 --trusted 10.0.0.0/8 --header-timeout 5": Server(refuses=True),
    "pyproxyproto relay --listen [::1]:8000 --to 127.0.0.1:9080": Server(expect=b"client_address=::1", plain=True),
    "curl 'http://[::1]:8000/'": Client("client_address=::1"),
    "pyproxyproto encode --source 203.0.113.7:51234 --destination 198.51.100.1:443 --authority example.com --hex":
        Run("0d0a0d0a000d0a515549540a"),
    "pyproxyproto encode --source [2001:db8::7]:51234 --destination [2001:db8::1]:443 --v1 | pyproxyproto decode":
        Run('"host": "2001:db8::7"'),
    "pyproxyproto decode 0x0d0a0d0a000d0a515549540a2111000ccb007107c6336401c82201bb":
        Run('"host": "203.0.113.7"'),
    "pyproxyproto decode '0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 00 0c cb 00 71 07 c6 33 64 01 c8 22 01 bb'":
        Run('"host": "203.0.113.7"'),
    # docs/servers/
    "echo | pyproxyproto send 127.0.0.1:9080 --source 203.0.113.7:51234 --destination 127.0.0.1:9080":
        Client("hello 203.0.113.7:51234", server="docs/servers/asyncio.md"),
    "daphne -e pyproxyproto:tcp:port=9080:interface=127.0.0.1:trusted=127.0.0.0/8 myproject.asgi:application":
        Server(files="docs/servers/django.md", needs=("daphne", "django")),
    "twistd -n web --listen pyproxyproto:tcp:port=9080:interface=127.0.0.1:trusted=127.0.0.0/8 --path .":
        Server(expect=b"200 OK", needs=("twisted",)),
    "PYPROXYPROTO_TRUSTED=127.0.0.0/8 uvicorn app:app --port 9080 --http pyproxyproto.uvicorn:H11Protocol":
        Server(files="docs/servers/fastapi.md", needs=("uvicorn", "fastapi")),
    "gunicorn -k pyproxyproto.gunicorn.SyncWorker -b 127.0.0.1:9080 --proxy-allow-from 127.0.0.1 app:app":
        Server(files="docs/servers/flask.md", needs=("gunicorn", "flask")),
    "gunicorn -k pyproxyproto.gunicorn.GeventWorker -b 127.0.0.1:9080 --proxy-allow-from 127.0.0.1 app:app":
        Server(files="docs/servers/flask.md", needs=("gunicorn", "gevent", "flask")),
    "PYPROXYPROTO_TRUSTED=127.0.0.0/8 python3 app.py":
        Server(files="docs/servers/sanic.md", needs=("sanic",)),
    # README's table of servers
    "PYPROXYPROTO_TRUSTED=10.0.0.0/8 uvicorn app:app --http pyproxyproto.uvicorn:H11Protocol":
        Server(files=ASGI, refuses=True, needs=("uvicorn",)),
    "PYPROXYPROTO_TRUSTED=unix uvicorn app:app --uds /run/app.sock --http pyproxyproto.uvicorn:H11Protocol":
        Server(files=ASGI, needs=("uvicorn",)),
    "gunicorn -k pyproxyproto.gunicorn.SyncWorker --proxy-allow-from 10.0.0.0/8 app:app":
        Server(files=WSGI, refuses=True, needs=("gunicorn",)),
    "gunicorn -k pyproxyproto.gunicorn.SyncWorker -b unix:/run/app.sock app:app":
        Server(files=WSGI, needs=("gunicorn",)),
    "gunicorn -k pyproxyproto.gunicorn.ThreadWorker --threads 8 --proxy-allow-from 10.0.0.0/8 app:app":
        Server(files=WSGI, refuses=True, needs=("gunicorn",)),
    "gunicorn -k pyproxyproto.gunicorn.ThreadWorker -b unix:/run/app.sock app:app":
        Server(files=WSGI, needs=("gunicorn",)),
    "gunicorn -k pyproxyproto.gunicorn.UvicornWorker --proxy-allow-from 10.0.0.0/8 app:app":
        Server(files=ASGI, refuses=True, needs=("gunicorn", "uvicorn_worker")),
    "gunicorn -k pyproxyproto.gunicorn.UvicornWorker -b unix:/run/app.sock app:app":
        Server(files=ASGI, needs=("gunicorn", "uvicorn_worker")),
    "daphne -e pyproxyproto:tcp:port=9080:trusted=10.0.0.0/8 myproject.asgi:application":
        Server(files=ASGI, refuses=True, needs=("daphne",)),
    "daphne -e pyproxyproto:unix:address=/run/app.sock:trusted=unix myproject.asgi:application":
        Server(files=ASGI, needs=("daphne",)),
    "twistd -n web --listen pyproxyproto:tcp:port=9080:trusted=10.0.0.0/8 --path .":
        Server(refuses=True, needs=("twisted",)),
}

# The table's apps: each names the client it was given.
APPS = {
    ASGI: '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"client {scope['client'][0]}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

application = app
''',
    WSGI: '''
def app(environ, start_response):
    body = f"client {environ['REMOTE_ADDR']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
''',
}
SHELL_CELL = re.compile(r"^(\w+=\S+ )*(uvicorn|gunicorn|daphne|twistd|hypercorn|python3?) ")


def documented() -> dict[str, str]:
    """Every documented command line, with where it is shown."""
    lines = {}
    for block in doc_blocks.blocks("sh"):
        for line in block.commands():
            lines.setdefault(line, block.name)
    for server, spans in doc_blocks.server_table():
        for span in spans:
            if SHELL_CELL.match(span):
                lines.setdefault(span, f"README.md table: {server}")
    return lines


def test_every_documented_command_has_an_entry():
    shown = documented()
    missing = sorted(set(shown) - set(COMMANDS))
    stale = sorted(set(COMMANDS) - set(shown))
    assert not missing, "documented commands without an entry in COMMANDS: " + "\n".join(
        f"{shown[line]}: {line}" for line in missing)
    assert not stale, f"entries for commands no longer documented: {stale}"


def test_what_is_not_run_here_is_run_by_ci():
    ci = (ROOT / ".ci" / "run").read_text() + (ROOT / ".ci" / "tier.sh").read_text()
    for line, how in COMMANDS.items():
        if isinstance(how, NotRun) and how.ci:
            assert how.ci in ci, f"{line}: .ci/run no longer runs {how.ci!r}"


# -- running them ----------------------------------------------------------------


@dataclass
class Scene:
    """Free ports for the documented ones, a scratch folder, and the
    processes started, for one block."""

    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def port(self, documented: str) -> int:
        if documented not in self.ports:
            self.ports[documented] = peers.free_port()
        return self.ports[documented]

    def line(self, line: str) -> str:
        """The line as run: ports moved, the socket path in the folder."""
        line = re.sub(r"\b(9080|8080|8000)\b", lambda m: str(self.port(m.group(1))), line)
        line = line.replace("/run/app.sock", str(self.folder / "app.sock"))
        line = re.sub(r"^(\w+=\S+ )*python3 ", lambda m: (m.group(1) or "") + f"{sys.executable} ",
                      line)
        if line.startswith(ECHO) and "--proxy-port" not in line:
            line += f" --proxy-port {self.port('9080')} --plain-port {self.port('8080')}"
        return line

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYPROXYPROTO_", "UVICORN_", "GUNICORN_"))}
        env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        # uvicorn's and gunicorn's default port, 8000, where a line names none.
        env["UVICORN_PORT"] = str(self.port("8000"))
        env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{self.port('8000')} --no-control-socket"
        return env

    def run(self, line: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", self.line(line)], cwd=self.folder, env=self.env(),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, line: str, how: Server) -> None:
        for module in how.needs:
            require_module(module)
        if how.files in APPS:
            (self.folder / "app.py").write_text(APPS[how.files])
            (self.folder / "myproject").mkdir(exist_ok=True)
            (self.folder / "myproject" / "asgi.py").write_text(APPS[how.files])
        else:
            for path, code in self.files(how).items():
                (self.folder / path).parent.mkdir(parents=True, exist_ok=True)
                (self.folder / path).write_text(code.replace("9080", str(self.port("9080"))))
        run = self.line(line)
        proc = subprocess.Popen(["bash", "-c", run], cwd=self.folder, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        address = self.address(line, how)
        self.wait(address, proc, line)
        reply = ask(address, header=not how.plain)
        if how.refuses:
            assert reply == b"", f"{line}: an untrusted peer was served: {reply!r}"
        else:
            assert how.expect in reply, f"{line}: {reply!r}"

    def address(self, line: str, how: Server):
        """Where the server of ``line`` listens."""
        if "/run/app.sock" in line:
            return str(self.folder / "app.sock")
        host = "::1" if "--listen [::1]" in line else "127.0.0.1"
        bound = re.search(r"(?:--listen \S*:|port=|--port |-b \S*:)(\d+)", line)
        if bound:
            return (host, self.port(bound.group(1)))
        if line.startswith(ECHO) or "9080" in "".join(self.files(how).values()):
            return (host, self.port("9080"))
        return (host, self.port("8000"))  # uvicorn's and gunicorn's default, moved

    @staticmethod
    def files(how: Server) -> dict[str, str]:
        """The ``# file:`` blocks of the page a server serves."""
        if not how.files or how.files in APPS:
            return {}
        return doc_blocks.page_files(ROOT / how.files)

    def wait(self, address, proc: subprocess.Popen, line: str) -> None:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{line} exited: {proc.stdout.read().decode(errors='replace')}")
            with contextlib.suppress(OSError):
                connect(address).close()
                return
            assert time.monotonic() < deadline, f"{line} did not listen on {address}"
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            proc.stdout.close()


def connect(address) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(address)
        return sock
    return socket.create_connection(address, timeout=10)


def ask(address, header: bool = True) -> bytes:
    """What a server answers a request behind a header naming CLIENT (b"" when
    it closes without answering)."""
    sock = connect(address)
    with contextlib.closing(sock):
        destination = ("127.0.0.1", 443) if isinstance(address, str) else address[:2]
        try:
            sock.sendall((pp.build(CLIENT, destination) if header else b"") + GET)
            return recv_all(sock)
        except ConnectionResetError:
            return b""


def _blocks_to_run(kind) -> list[tuple[str, list[str]]]:
    """(where, lines) for each block (or table command) with a line of ``kind``."""
    found = []
    for block in doc_blocks.blocks("sh"):
        lines = block.commands()
        if any(isinstance(COMMANDS.get(line), kind) for line in lines):
            found.append((block.name, lines))
    for server, spans in doc_blocks.server_table():
        for span in spans:
            if SHELL_CELL.match(span) and isinstance(COMMANDS.get(span), kind):
                found.append((f"README.md table: {server}: {span}", [span]))
    return found


@pytest.mark.parametrize("where,lines", _blocks_to_run(Run), ids=lambda value: str(value)[:60])
def test_offline_commands(where, lines, tmp_path):
    scene = Scene(tmp_path)
    for line in lines:
        how = COMMANDS[line]
        done = scene.run(line)
        assert done.returncode == 0, f"{where}: {line}: {done.stderr}"
        assert how.expect in done.stdout, f"{where}: {line}: {done.stdout}"


@pytest.mark.servers
@pytest.mark.parametrize("where,lines", _blocks_to_run((Server, Client)),
                         ids=lambda value: str(value)[:60])
def test_servers_and_their_clients(where, lines, tmp_path):
    if any(":8000" in line and "[::1]" in line for line in lines):
        peers.need(peers.ipv6_loopback(), "IPv6 loopback (::1)")
    scene = Scene(tmp_path)
    try:
        started = False
        for line in lines:
            how = COMMANDS[line]
            if isinstance(how, Server):
                scene.start(line, how)
                started = True
            elif isinstance(how, Client):
                if not started:
                    _start_named(scene, how.server)
                    started = True
                if "curl" in line:
                    peers.need(shutil.which("curl") is not None, "curl")
                done = scene.run(line)
                assert done.returncode == 0, f"{where}: {line}: {done.stdout}{done.stderr}"
                assert how.expect in done.stdout, f"{where}: {line}: {done.stdout}"
    finally:
        scene.stop()


def _start_named(scene: Scene, server: str) -> None:
    """A client's server from elsewhere: a documented command line, or a
    page's first server program."""
    if server in COMMANDS:
        scene.start(server, COMMANDS[server])
        return
    program = next(b for b in doc_blocks.blocks("python")
                   if b.path == ROOT / server and b.serves_forever)
    script = scene.folder / "program.py"
    script.write_text(program.code.replace("9080", str(scene.port("9080"))))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=scene.folder, env=scene.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    scene.procs.append(proc)
    scene.wait(("127.0.0.1", scene.port("9080")), proc, server)


@pytest.mark.packaging
def test_install_commands(tmp_path):
    """The README's install commands, in a copy of the checkout, each in a
    fresh virtual environment standing for the user's python3 (with the
    backend switches cleared, as a user has them: one run is enough)."""
    if os.environ.get("PYPROXYPROTO_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("the install clears the backend switches: the run without them covers it")
    source = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    if not any(tracked):
        pytest.skip("needs a git checkout")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    blocks = [(where, lines) for where, lines in _blocks_to_run(Install)]
    assert blocks
    for where, lines in blocks:
        venv = tmp_path / f"venv-{len(list(tmp_path.iterdir()))}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PYPROXYPROTO_") and key != "PYTHONPATH"}
        for line in lines:
            how = COMMANDS[line]
            assert isinstance(how, Install), line
            run = re.sub(r"^python3 ", f"{python} ", line)
            done = subprocess.run(["bash", "-c", run], cwd=source, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{where}: {line}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            if how.then:
                check = subprocess.run([python, "-c", how.then], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, timeout=120)
                assert check.returncode == 0, f"{line}: {how.then}: {check.stderr}"
