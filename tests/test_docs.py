"""Every Python block of the documentation (README.md, CONTRIBUTING.md, docs/)
runs as written: plain blocks in the quick tier; server programs (marked
``# serves forever``) compile there, and in the servers tier each is
started on a free port and asked, behind a PROXY header, who the client
is.  The README's table of servers names only what exists."""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import re
import socket
import subprocess
import sys
import time

import pytest

import pyproxyproto as pp

from tests import doc_blocks, peers
from tests.integration_helpers import recv_all, require_module

PYTHON = doc_blocks.blocks("python")
PLAIN = [b for b in PYTHON if not b.serves_forever and b.file is None]
PROGRAMS = [b for b in PYTHON if b.serves_forever]
CLIENT = ("203.0.113.7", 41234)
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
# Fences a reader takes for Python but no test would run.
UNTESTED_PYTHON_FENCES = {"py", "python3", "pycon", "pytb", "ipython"}


def test_the_documentation_has_python_blocks():
    if not doc_blocks.in_checkout():
        pytest.skip("needs a source checkout (docs/)")
    assert PLAIN and PROGRAMS


def test_python_is_fenced_as_python():
    untested = [b.name for b in doc_blocks.blocks() if b.lang in UNTESTED_PYTHON_FENCES]
    assert not untested, f"fence these as ```python (the tests run only those): {untested}"


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_block_compiles(block):
    compile(block.code, block.name, "exec")


@pytest.mark.parametrize("block", PLAIN, ids=lambda b: b.name)
def test_block_runs(block):
    for module in _third_party_imports(block.code):
        require_module(module)
    exec(compile(block.code, block.name, "exec"), {"__name__": "docs"})


def _third_party_imports(code: str) -> list[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return sorted(names - set(sys.stdlib_module_names) - {"pyproxyproto"})


# -- the README's table of servers ---------------------------------------------

SHELL_CELL = re.compile(r"^(\w+=\S+ )*(uvicorn|gunicorn|daphne|twistd|hypercorn|python3?) ")
SETTING_CELL = re.compile(r"^\w+=\S+$")


def _python_cells():
    return [(server, span) for server, spans in doc_blocks.server_table() for span in spans
            if not SHELL_CELL.match(span) and not SETTING_CELL.match(span)]


@pytest.mark.parametrize("server,cell", _python_cells(), ids=lambda value: value)
def test_server_table_python_names_what_exists(server, cell):
    """A Python cell is valid Python (a class line as its header), and every
    pyproxyproto name it uses exists: a renamed API fails here."""
    source = cell + ": ..." if cell.startswith("class ") else cell
    if "await " in source:
        source = f"async def _():\n    {source}"
    dotted = {ast.unparse(node) for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Attribute)}
    names = sorted(name for name in dotted
                   if name.startswith("pyproxyproto.") and re.fullmatch(r"[\w.]+", name))
    assert names, cell
    for name in names:
        parts = name.split(".")
        module = _longest_module(parts)
        target = module
        for attr in parts[module.__name__.count(".") + 1:]:
            assert hasattr(target, attr), f"{cell}: {name} does not exist"
            target = getattr(target, attr)


def _longest_module(parts: list[str]):
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the integration's server package is missing
                require_module(exc.name)
                raise
    raise AssertionError(parts)


# -- server programs, started ----------------------------------------------------


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ask(block, port: int) -> bytes:
    """What the program answers a client behind a header from CLIENT."""
    if "wrap_datagram" in block.code:
        header = pp.build(CLIENT, ("127.0.0.1", port), protocol=socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sock.sendto(header + b"who", ("127.0.0.1", port))
                with contextlib.suppress(TimeoutError):
                    return sock.recv(4096)
        raise AssertionError("no datagram came back")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with contextlib.closing(sock):
        sock.sendall(pp.build(CLIENT, ("127.0.0.1", port)))
        if "pyproxyproto.websockets" in block.code:
            from websockets.sync.client import connect

            with connect(f"ws://127.0.0.1:{port}/", sock=sock) as connection:
                return str(connection.recv(timeout=10)).encode()
        sock.sendall(GET)
        return recv_all(sock)


@pytest.mark.servers
@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.name)
def test_program_serves_the_header_s_client(block, tmp_path):
    for module in _third_party_imports(block.code):
        require_module(module)
    assert "9080" in block.code, "a server program listens on 9080 (the test moves it)"
    udp = "wrap_datagram" in block.code
    port = peers.free_port()
    script = tmp_path / "program.py"
    script.write_text(block.code.replace("9080", str(port)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=_environment(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not udp:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                assert time.monotonic() < deadline, f"{block.name} did not listen"
                time.sleep(0.1)
        reply = _ask(block, port)
        assert CLIENT[0].encode() in reply, reply
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
        proc.stdout.close()
