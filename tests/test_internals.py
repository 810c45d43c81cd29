"""The guards beside other libraries' private internals: each detects a
change, and its fallback still serves (or stops at start-up, saying why)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pyproxyproto as pp

from tests import peers
from tests.integration_helpers import recv_all, require_module

HERE = Path(__file__).parent
CLIENT = ("203.0.113.7", 41234)
SERVER = ("198.51.100.1", 443)


# -- gunicorn ---------------------------------------------------------------------------


def test_gunicorn_read_ahead_guard(monkeypatch):
    require_module("gunicorn")
    from gunicorn.workers import sync

    from pyproxyproto import _gunicorn_internals as internals

    assert internals._read_ahead_works()

    def handle(self, listener, client, addr):  # parses without gunicorn.http.get_parser
        return None

    monkeypatch.setattr(sync.SyncWorker, "handle", handle)
    assert not internals._read_ahead_works()


def test_gunicorn_poller_guard(monkeypatch):
    require_module("gunicorn")
    from gunicorn.workers import gthread

    from pyproxyproto import _gunicorn_internals as internals

    assert internals._poller_works()
    monkeypatch.setattr(gthread.ThreadWorker, "accept", lambda self, listener: None)
    assert not internals._poller_works()


# A gunicorn run with both guards tripped: the workers then read the header
# exactly (peek, then the header alone) in the connection's thread.
GUNICORN_WITH_FALLBACKS = """
import sys
from pyproxyproto import _gunicorn_internals as internals
internals.READ_AHEAD = False
internals.POLLER = False
from gunicorn.app.wsgiapp import run
sys.argv = ["gunicorn", *sys.argv[1:]]
run()
"""

ECHO_APP = """
def wsgi(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    reply = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']} ".encode() + body
    start_response("200 OK", [("Content-Length", str(len(reply)))])
    return [reply]
"""


@pytest.mark.servers
@pytest.mark.parametrize("worker", ["SyncWorker", "ThreadWorker"])
def test_gunicorn_fallbacks_serve(worker, tmp_path):
    require_module("gunicorn")
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    (tmp_path / "run.py").write_text(GUNICORN_WITH_FALLBACKS)
    port = peers.free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(HERE.parent)]))
    peer = peers.Peer("gunicorn", [sys.executable, str(tmp_path / "run.py"), "-k",
                                   f"pyproxyproto.gunicorn.{worker}", "-b", f"127.0.0.1:{port}",
                                   "--no-control-socket", "echo_app:wsgi"], str(tmp_path))
    try:
        peers.wait_for_connect("127.0.0.1", port, timeout=20, proc=peer)
        body = bytes(range(256)) * 64
        request = (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(pp.build(CLIENT, SERVER) + request)
            reply = recv_all(sock)
        assert reply.partition(b"\r\n\r\n")[2] == b"203.0.113.7 41234 " + body
    finally:
        peer.stop()
    del env


# -- uvicorn ----------------------------------------------------------------------------


def test_uvicorn_protocol_guard(monkeypatch):
    require_module("uvicorn")
    from uvicorn.protocols.http import h11_impl

    from pyproxyproto import _uvicorn_internals as internals

    assert internals.protocol_signature_known()

    def init(self, config, server_state, app_state, _loop=None, extra=None):
        pass

    monkeypatch.setattr(h11_impl.H11Protocol, "__init__", init)
    assert not internals.protocol_signature_known()


UVICORN_IN_CODE = """
import uvicorn
from pyproxyproto.uvicorn import H11Protocol
uvicorn.run("server_apps:asgi", host="127.0.0.1", port={port}, http=H11Protocol)
"""


@pytest.mark.servers
def test_uvicorn_checks_a_config_it_did_not_see_loading_at_the_first_connection():
    """The fallback of the start-up check: uvicorn.run() given the class
    itself loads no module, so the Config is checked when its first
    connection arrives, and a bad setting stops the worker then."""
    require_module("uvicorn")
    port = peers.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    env.update(PYPROXYPROTO_TIMEOUT="soon",
               PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
    proc = subprocess.Popen([sys.executable, "-c", UVICORN_IN_CODE.format(port=port)], env=env,
                            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        peers.wait_for_connect("127.0.0.1", port, timeout=20)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(pp.build(CLIENT, SERVER))
            time.sleep(0.5)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, output
    assert "pyproxyproto: PYPROXYPROTO_TIMEOUT='soon'" in output


# -- Twisted ----------------------------------------------------------------------------


def test_twisted_ssl_endpoint_guard():
    require_module("twisted")
    from twisted.internet import reactor

    from pyproxyproto._twisted_internals import split_ssl_endpoint

    class Rewritten:
        _port, _backlog, _interface = 443, 50, ""  # and no _sslContextFactory

    with pytest.raises(ValueError, match=r"no _sslContextFactory\); use pyproxyproto:tcp:"):
        split_ssl_endpoint(reactor, Rewritten())


# -- hypercorn --------------------------------------------------------------------------


def test_hypercorn_guard():
    require_module("hypercorn")
    code = textwrap.dedent("""
        import sys
        sys.modules["hypercorn.asyncio.tcp_server"] = None
        import pyproxyproto.hypercorn
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pyproxyproto.hypercorn needs hypercorn's asyncio worker internals" in done.stderr
