"""End to end on network namespaces made here (TEST-NET addresses only):

    client 203.0.113.7 --- 203.0.113.1 HAProxy 198.51.100.1 --- 198.51.100.2 app

HAProxy forwards with send-proxy-v2 and send-proxy to the echo app (the
``pyproxyproto echo`` CLI) and to a uvicorn app through
``pyproxyproto.uvicorn``; both report 203.0.113.7.  The client connecting
straight to the app's PROXY port with a forged header is refused, since only
the balancer's address is trusted; the plain port reports the balancer.
The namespaces (and with them the veths) are removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import peers
from tests.integration_helpers import require, require_module

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent
CLIENT_IP, LB_FRONT = "203.0.113.7", "203.0.113.1"
LB_BACK, APP_IP = "198.51.100.1", "198.51.100.2"
ECHO_PROXY, ECHO_PLAIN, UVICORN = 9001, 9002, 9003
FRONTENDS = {  # HAProxy port: (app port, server options)
    8001: (ECHO_PROXY, "send-proxy-v2"),
    8002: (ECHO_PROXY, "send-proxy"),
    8003: (ECHO_PLAIN, ""),
    8004: (UVICORN, "send-proxy-v2"),
    8005: (UVICORN, "send-proxy"),
}

# Run in the client's namespace: one HTTP request, optionally after a
# forged PROXY header; prints the response, or nothing if it was refused.
CLIENT_SCRIPT = """
import socket, sys
host, port, forged = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "forged"
s = socket.create_connection((host, port), timeout=5)
if forged:
    s.sendall(b"PROXY TCP4 192.0.2.66 198.51.100.2 1111 9001\\r\\n")
s.sendall(b"GET /e2e HTTP/1.1\\r\\nHost: app\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
try:
    while chunk := s.recv(65536):
        data += chunk
except ConnectionError:
    pass
sys.stdout.write(data.decode("utf-8", "replace"))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def topology():
    require(os.geteuid() == 0 and shutil.which("ip") is not None,
            "network namespaces (root and iproute2's ip)")
    tag = uuid.uuid4().hex[:6]
    names = {role: f"pp-{role}-{tag}" for role in ("cli", "lb", "app")}
    made: list[str] = []
    try:
        for name in names.values():
            try:
                ip("netns", "add", name)
            except subprocess.CalledProcessError as exc:
                require(False, f"network namespaces (ip netns add: {exc.stderr.decode().strip()})")
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        cli, lb, app = names["cli"], names["lb"], names["app"]
        ip("link", "add", f"c{tag}", "netns", cli, "type", "veth", "peer", "name", f"lc{tag}",
           "netns", lb)
        ip("link", "add", f"a{tag}", "netns", app, "type", "veth", "peer", "name", f"la{tag}",
           "netns", lb)
        for ns, dev, addr in ((cli, f"c{tag}", f"{CLIENT_IP}/24"), (lb, f"lc{tag}", f"{LB_FRONT}/24"),
                              (lb, f"la{tag}", f"{LB_BACK}/24"), (app, f"a{tag}", f"{APP_IP}/24")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", cli, "route", "add", "default", "via", LB_FRONT)
        ip("-n", app, "route", "add", "default", "via", LB_BACK)
        ip("netns", "exec", lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def in_ns(ns: str, name: str, argv: list[str], env: dict | None = None) -> peers.Peer:
    prefix = ["ip", "netns", "exec", ns]
    if env:
        prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
    return peers.Peer(name, prefix + argv, str(HERE))


def fetch(ns: str, host: str, port: int, forged: bool = False) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT_SCRIPT, host, str(port),
         "forged" if forged else "plain"],
        capture_output=True, text=True, timeout=20,
    )
    return done.stdout


def wait_until_served(ns: str, host: str, port: int, procs: list[peers.Peer]) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.name} exited: {proc.output()}"
        text = fetch(ns, host, port)
        if text.startswith("HTTP/1."):
            return text
        time.sleep(0.2)
    raise AssertionError(f"no answer on {host}:{port}: " + "\n".join(p.output() for p in procs))


def haproxy_config() -> str:
    lines = ["global", "    log stdout format raw local0 info", "defaults", "    mode tcp",
             "    log global", "    timeout connect 5s", "    timeout client 10s",
             "    timeout server 10s"]
    for port, (app_port, options) in FRONTENDS.items():
        lines += [f"listen f{port}", f"    bind {LB_FRONT}:{port}",
                  f"    server app {APP_IP}:{app_port} {options}"]
    return "\n".join(lines) + "\n"


def test_client_through_haproxy_to_the_apps(tmp_path):
    require(shutil.which("haproxy") is not None, "haproxy")
    require_module("uvicorn")
    with topology() as ns:
        (tmp_path / "haproxy.cfg").write_text(haproxy_config())
        procs = [
            in_ns(ns["app"], "echo", [sys.executable, "-m", "pyproxyproto", "echo", "--host", APP_IP,
                                      "--proxy-port", str(ECHO_PROXY), "--plain-port",
                                      str(ECHO_PLAIN), "--trusted", f"{LB_BACK}/32"]),
            in_ns(ns["app"], "uvicorn", [sys.executable, "-m", "uvicorn", "server_apps:asgi",
                                         "--host", APP_IP, "--port", str(UVICORN), "--workers",
                                         "2", "--http", "pyproxyproto.uvicorn:H11Protocol"],
                  env={"PYPROXYPROTO_TRUSTED": f"{LB_BACK}/32",
                       "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}),
            in_ns(ns["lb"], "haproxy", [shutil.which("haproxy"), "-db", "-f",
                                        str(tmp_path / "haproxy.cfg")]),
        ]
        try:
            for port in FRONTENDS:
                wait_until_served(ns["cli"], LB_FRONT, port, procs)
            for port in (8001, 8002):  # the echo app, v2 then v1
                text = fetch(ns["cli"], LB_FRONT, port)
                assert f"client_address={CLIENT_IP}\n" in text, text
                assert f"proxy_peer={LB_BACK}:" in text, text
            for port in (8004, 8005):  # uvicorn through pyproxyproto.uvicorn
                text = fetch(ns["cli"], LB_FRONT, port)
                assert f'"client": ["{CLIENT_IP}", ' in text, text
            procs[1].wait_for_line(lambda line: f"{CLIENT_IP}:" in line and "GET /e2e" in line)
            # The plain port reports the balancer.
            text = fetch(ns["cli"], LB_FRONT, 8003)
            assert f"client_address={LB_BACK}\n" in text, text
            # Straight to the PROXY ports with a forged header: refused.
            assert fetch(ns["cli"], APP_IP, ECHO_PROXY, forged=True) == ""
            assert fetch(ns["cli"], APP_IP, UVICORN, forged=True) == ""
            procs[1].wait_for_line(lambda line: f"{CLIENT_IP}:" in line
                                   and "not in the trusted networks" in line)
            assert not any("192.0.2.66" in line for p in procs for line in p.matching(bool))
        finally:
            for proc in procs:
                proc.stop()
