"""A bad setting stops each real server at start-up with one clear line and a
non-zero exit (never a server that listens and then drops or hangs), and
the integrations' log records come out in their server's own format."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import peers
from tests.integration_helpers import require_module, self_signed_cert

pytestmark = pytest.mark.servers

HERE = Path(__file__).parent
PY = sys.executable

# (environment, the message the server must stop with)
BAD = {
    "cidr-typo": ({"PYPROXYPROTO_TRUSTED": "127.0.0.1/8"},
                  "PYPROXYPROTO_TRUSTED='127.0.0.1/8': '127.0.0.1/8' is not an IP network "
                  "(127.0.0.1/8 has host bits set)"),
    "empty-trusted": ({"PYPROXYPROTO_TRUSTED": " "},
                      "PYPROXYPROTO_TRUSTED is set but empty"),
    "bad-timeout": ({"PYPROXYPROTO_TIMEOUT": "soon"},
                    "PYPROXYPROTO_TIMEOUT='soon': must be a positive number of seconds or none"),
}


def start(argv: list[str], env: dict[str, str], timeout: float = 40) -> subprocess.CompletedProcess:
    """Run a server that must stop by itself; fail if it keeps running."""
    full = {key: value for key, value in os.environ.items() if not key.startswith("PYPROXYPROTO_")}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), full.get("PYTHONPATH", "")])
    try:
        return subprocess.run(argv, env=full, cwd=HERE, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{argv[:4]} kept running with a bad setting:\n{exc.output}") from None


def stops_with(done: subprocess.CompletedProcess, message: str, traceback: bool = False) -> None:
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert message in output, output
    if not traceback:
        assert "Traceback" not in output, output
        assert sum(message in line for line in output.splitlines()) >= 1


def port() -> str:
    return str(peers.free_port())


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("protocol", ["H11Protocol", "HttpToolsProtocol"])
def test_uvicorn_stops_before_serving(bad, protocol):
    require_module("uvicorn")
    if protocol == "HttpToolsProtocol":
        require_module("httptools")
    env, message = BAD[bad]
    done = start([PY, "-m", "uvicorn", "server_apps:asgi", "--port", port(),
                  "--http", f"pyproxyproto.uvicorn:{protocol}"], env)
    stops_with(done, f"pyproxyproto: {message}")
    assert done.returncode == 3  # uvicorn's status for a worker that could not start


def test_uvicorn_with_workers_stops_every_worker_before_serving():
    """With --workers the parent stops when a worker cannot start (uvicorn
    0.50 and later; older ones restart it forever); its exit status is
    uvicorn's own."""
    require_module("uvicorn")
    env, message = BAD["cidr-typo"]
    full = start([PY, "-m", "uvicorn", "server_apps:asgi", "--port", port(), "--workers", "2",
                  "--http", "pyproxyproto.uvicorn:H11Protocol"], env)
    output = full.stdout + full.stderr
    assert f"pyproxyproto: {message}" in output and "Traceback" not in output
    assert "failed to start" in output or full.returncode != 0


def test_uvicorn_refuses_its_own_tls_options(tmp_path):
    require_module("uvicorn")
    # A certificate that loads: uvicorn before 0.53 loads it before
    # the --http class, and a missing one would stop them first.
    cert, key = self_signed_cert(tmp_path)
    done = start([PY, "-m", "uvicorn", "server_apps:asgi", "--port", port(),
                  "--http", "pyproxyproto.uvicorn:H11Protocol",
                  "--ssl-certfile", cert, "--ssl-keyfile", key], {})
    stops_with(done, "uvicorn's --ssl-* options start TLS before the PROXY header can be read")


def test_uvicorn_on_a_unix_socket_that_trusts_no_unix_peer():
    require_module("uvicorn")
    with peers.scratch_dir("pp-uds-") as folder:
        done = start([PY, "-m", "uvicorn", "server_apps:asgi", "--uds", str(folder / "app.sock"),
                      "--http", "pyproxyproto.uvicorn:H11Protocol"],
                     {"PYPROXYPROTO_TRUSTED": "127.0.0.0/8"})
    stops_with(done, "add 'unix' to the trusted networks")


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("worker", ["SyncWorker", "ThreadWorker", "UvicornWorker"])
def test_gunicorn_stops_before_serving(bad, worker):
    require_module("gunicorn")
    if worker == "UvicornWorker":
        require_module("uvicorn_worker")
    env, message = BAD[bad]
    if "PYPROXYPROTO_TRUSTED" in env:  # not read by these workers, so not parsed
        message = "PYPROXYPROTO_TRUSTED is set: the gunicorn workers take their trusted networks"
    app = "server_apps:asgi" if worker == "UvicornWorker" else "server_apps:wsgi"
    done = start([PY, "-m", "gunicorn", "-k", f"pyproxyproto.gunicorn.{worker}",
                  "-b", f"127.0.0.1:{port()}", "--no-control-socket", app], env)
    stops_with(done, message)
    assert f"Error: pyproxyproto: " in done.stderr


def test_gunicorn_refuses_trusted_networks_from_the_environment():
    require_module("gunicorn")
    done = start([PY, "-m", "gunicorn", "-k", "pyproxyproto.gunicorn.SyncWorker",
                  "-b", f"127.0.0.1:{port()}", "--no-control-socket", "server_apps:wsgi"],
                 {"PYPROXYPROTO_TRUSTED": "10.0.0.0/8"})
    stops_with(done, "pyproxyproto: PYPROXYPROTO_TRUSTED is set: the gunicorn workers take "
               "their trusted networks from gunicorn's --proxy-allow-from")


def test_gunicorn_refuses_an_empty_allow_list_and_its_own_proxy_protocol():
    require_module("gunicorn")
    base = [PY, "-m", "gunicorn", "-k", "pyproxyproto.gunicorn.SyncWorker",
            "-b", f"127.0.0.1:{port()}", "--no-control-socket"]
    stops_with(start(base + ["--proxy-allow-from", "", "server_apps:wsgi"], {}),
               "gunicorn's --proxy-allow-from is empty")
    stops_with(start(base + ["--proxy-protocol", "v2", "server_apps:wsgi"], {}),
               "pyproxyproto: gunicorn's --proxy-protocol is on")


@pytest.mark.parametrize("bad", sorted(BAD))
def test_hypercorn_stops_before_serving(bad):
    require_module("hypercorn")
    env, message = BAD[bad]
    done = start([PY, str(HERE / "server_apps.py"), "hypercorn", f"127.0.0.1:{port()}"], env)
    stops_with(done, message, traceback=True)


SCRIPTS = {
    "tornado": """
        import asyncio, tornado.web
        from pyproxyproto.tornado import HTTPServer
        from pyproxyproto._env import options_from_env
        async def main():
            HTTPServer(tornado.web.Application([]), **options_from_env()).listen(0)
        asyncio.run(main())
    """,
    "sanic": """
        from pyproxyproto.sanic import HttpProtocol
    """,
    "anyio": """
        import anyio
        from pyproxyproto.anyio import ProxyProtocolListener
        from pyproxyproto._env import options_from_env
        async def main():
            ProxyProtocolListener(await anyio.create_tcp_listener(local_port=0), **options_from_env())
        anyio.run(main)
    """,
    "aio": """
        import asyncio
        from pyproxyproto import aio
        from pyproxyproto._env import options_from_env
        aio.wrap(asyncio.Protocol, **options_from_env())
    """,
}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_library_servers_raise_before_serving(kind, bad):
    require_module(kind if kind != "aio" else "asyncio")
    env, message = BAD[bad]
    done = start([PY, "-c", textwrap.dedent(SCRIPTS[kind])], env)
    stops_with(done, message, traceback=True)
    assert message in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("server", ["daphne", "twistd"])
def test_twisted_endpoints_stop_before_serving(server, bad):
    require_module("twisted")
    if server == "daphne":
        require_module("daphne")
        argv = [PY, "-m", "daphne", "-e", f"pyproxyproto:tcp:port={port()}", "server_apps:asgi"]
    else:
        argv = [PY, "-m", "twisted", "web", "--listen", f"pyproxyproto:tcp:port={port()}",
                "--path", "."]
    env, message = BAD[bad]
    done = start(argv, env)
    assert done.returncode != 0 and message in done.stdout + done.stderr


def test_a_bad_endpoint_argument_is_named_as_given():
    require_module("daphne")
    done = start([PY, "-m", "daphne", "-e", f"pyproxyproto:tcp:port={port()}:trusted=10.0.0/8",
                  "server_apps:asgi"], {})
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "the endpoint argument trusted='10.0.0/8'" in output
    assert "PYPROXYPROTO_TRUSTED" not in output


def test_the_echo_app_stops_before_serving():
    done = start([PY, "-m", "pyproxyproto", "echo", "--trusted", "127.0.0.1/8",
                  "--proxy-port", port(), "--plain-port", port()], {})
    assert done.returncode != 0 and "127.0.0.1/8" in done.stdout + done.stderr
