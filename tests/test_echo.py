"""The echo app end to end: ``python -m pyproxyproto echo`` on ephemeral
loopback ports, driven by raw sockets, http.client, ``send`` and curl."""

import http.client
import os
import shutil
import subprocess
import sys
import time

import pytest

import pyproxyproto as pp

from tests.integration_helpers import (
    CLIENT,
    LOOPBACK,
    SERVER,
    EchoProcess,
    closed_by_peer,
    connect,
    listener,
    recv_all,
    require,
)


@pytest.fixture(scope="module")
def echo():
    app = EchoProcess("--header-timeout", "0.5")
    yield app
    app.stop()


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is a hard kill on Windows")
def test_sigterm_stops_cleanly():
    app = EchoProcess()
    assert app.stop() == 0
    assert app.stdout[-1] == "stopped"


def http_over(port, data):
    with connect((LOOPBACK, port)) as sock:
        sock.sendall(data)
        return recv_all(sock)


def request(method, path, body=b"", extra=""):
    return (
        f"{method} {path} HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def access_line(echo, uri):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in echo.access_log():
            if line["uri"] == uri:
                return line
        time.sleep(0.02)
    raise AssertionError(f"no access line for {uri}: {echo.stderr}")


def test_announces_its_addresses_in_plain_words(echo):
    assert echo.stdout[0].startswith(f"PROXY protocol port: http://{LOOPBACK}:{echo.proxy_port}/")
    assert "header timeout: 0.5 s" in echo.stdout[0]
    assert echo.stdout[1].startswith(f"plain HTTP port: http://{LOOPBACK}:{echo.plain_port}/")


def test_proxy_port_reports_the_real_client(echo):
    header = pp.build(CLIENT, SERVER, tlvs=[(0x02, b"example.com")])
    reply = http_over(echo.proxy_port, header + request("POST", "/a/b?x=1&y=2", b"the body"))
    head, _, report = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    text = report.decode()
    for line in [
        "Request Information:", "\tclient_address=203.0.113.7", "\tmethod=POST",
        "\treal path=/a/b", "\tquery=x=1&y=2", "\trequest_version=1.1",
        "\trequest_scheme=http", "\trequest_uri=http://echo.test/a/b?x=1&y=2",
        "PROXY Header:", "\tversion=2", "\tsource=203.0.113.7:41234",
        "\tdestination=198.51.100.1:443", "\tauthority=example.com",
        "Request Headers:", "\thost=echo.test", "Request Body:", "the body",
    ]:
        assert line + "\n" in text, line
    assert text.startswith("Hostname: ")
    log = access_line(echo, "/a/b?x=1&y=2")
    assert log["client"] == "203.0.113.7:41234" and log["proxy_peer"].startswith("127.0.0.1:")
    assert log["method"] == "POST" and log["status"] == 200
    assert 0 <= log["request_time"] < 5 and log["time"].endswith("+00:00")


def test_plain_port_never_parses_a_header(echo):
    conn = http.client.HTTPConnection(LOOPBACK, echo.plain_port, timeout=5)
    forwarded = {"X-Forwarded-For": "192.0.2.1", "X-Real-IP": "192.0.2.1"}
    conn.request("GET", "/plain", headers=forwarded)
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200
    assert "\tclient_address=127.0.0.1\n" in text and "PROXY Header" not in text
    assert "\tx-forwarded-for=192.0.2.1\n" in text and "\tx-real-ip=192.0.2.1\n" in text
    assert "\t-no body in request-\n" in text
    assert access_line(echo, "/plain")["proxy_peer"] is None


@pytest.mark.parametrize("version", [1, 2])
def test_header_on_the_plain_port_is_answered_and_logged(echo, version):
    # A balancer with PROXY protocol on, pointed at the wrong port.
    header = pp.build(CLIENT, SERVER, version=version)
    with connect((LOOPBACK, echo.plain_port)) as sock:
        sock.sendall(header + request("GET", f"/wrong-port-v{version}"))
        client_port = sock.getsockname()[1]
        reply = recv_all(sock)
    explanation = f"a PROXY protocol v{version} header on the plain HTTP port"
    assert reply.startswith(b"HTTP/1.1 400 ") and explanation.encode() in reply
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in echo.access_log()
                 if line["client"] == f"{LOOPBACK}:{client_port}"]
        if lines:
            break
        time.sleep(0.02)
    (line,) = lines
    assert line["status"] == 400 and line["level"] == "warning"
    assert line["error"].startswith(explanation)
    assert line["proxy_peer"] is None and line["method"] is None


def test_everything_logged_is_one_json_object_per_line(echo):
    with connect((LOOPBACK, echo.proxy_port)) as sock:
        sock.sendall(b"GARBAGE\r\n")
        client = f"{LOOPBACK}:{sock.getsockname()[1]}"
        assert closed_by_peer(sock)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        refused = [line for line in echo.log() if client in line.get("message", "")]
        if refused:
            break
        time.sleep(0.02)
    (line,) = refused
    assert line["level"] == "warning" and line["logger"] == "pyproxyproto"
    assert "not a PROXY protocol header" in line["message"]
    assert line["time"].endswith("+00:00")
    # Requests and refusals alike: every line of stderr parses (log() asserts it).
    assert {line.get("event") for line in echo.log()} >= {"request", None}


def test_any_method_and_head(echo):
    header = pp.build(CLIENT, SERVER, version=1)
    assert b"\tmethod=PURGE\n" in http_over(echo.proxy_port, header + request("PURGE", "/p"))
    head = http_over(echo.proxy_port, header + request("HEAD", "/h"))
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in head


def test_invalid_header_is_closed_and_logged(echo):
    with connect((LOOPBACK, echo.proxy_port)) as sock:
        sock.sendall(request("GET", "/no-header"))
        assert closed_by_peer(sock)
    echo.wait_for_stderr("closed connection from 127.0.0.1:")
    assert echo.wait_for_stderr("not a PROXY protocol header")


def test_header_timeout(echo):
    with connect((LOOPBACK, echo.proxy_port)) as sock:
        start = time.monotonic()
        sock.sendall(pp.build(CLIENT, SERVER)[:7])
        assert closed_by_peer(sock)
        elapsed = time.monotonic() - start
    assert 0.5 - 0.02 <= elapsed < 0.5 + 0.4
    echo.wait_for_stderr("no complete PROXY header within 0.5 s (7 byte(s) received)")


def test_send_command_against_echo(echo):
    done = subprocess.run(
        [sys.executable, "-m", "pyproxyproto", "send", f"{LOOPBACK}:{echo.proxy_port}",
         "--source", "[2001:db8::9]:5000", "--destination", "[2001:db8::1]:80"],
        input=request("GET", "/sent"), capture_output=True, timeout=30,
    )
    assert done.returncode == 0
    assert b"\tclient_address=2001:db8::9\n" in done.stdout
    assert access_line(echo, "/sent")["client"] == "[2001:db8::9]:5000"


def test_untrusted_peer_is_rejected():
    app = EchoProcess("--trusted", "10.0.0.0/8", "192.0.2.0/24")
    try:
        reply = http_over(app.proxy_port, pp.build(CLIENT, SERVER) + request("GET", "/"))
        assert reply == b""
        app.wait_for_stderr("peer is not in the trusted networks")
        assert "trusted: 10.0.0.0/8, 192.0.2.0/24" in app.stdout[0]
    finally:
        app.stop()


def test_busy_port_is_a_plain_error():
    with listener() as busy:
        done = subprocess.run(
            [sys.executable, "-m", "pyproxyproto", "echo", "--proxy-port", "0",
             "--plain-port", str(busy.getsockname()[1])],
            capture_output=True, timeout=30,
        )
        busy_port = busy.getsockname()[1]
    assert done.returncode == 1
    assert (f"pyproxyproto echo: cannot listen on 127.0.0.1:{busy_port} (the plain HTTP port): "
            "Address already in use").encode() in done.stderr


def test_bad_trusted_network_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "pyproxyproto", "echo", "--trusted", "10.0.0.1/8"],
        capture_output=True, timeout=30,
    )
    assert done.returncode == 2 and b"has host bits set" in done.stderr


def curl_supports(curl, option):
    listing = subprocess.run([curl, "--help", "all"], capture_output=True, timeout=30).stdout
    return option.encode() in listing


def test_curl_haproxy_protocol(echo):
    curl = shutil.which("curl")
    require(curl is not None, "curl")
    done = subprocess.run(
        [curl, "-sS", "--max-time", "5", "--haproxy-protocol",
         f"http://{LOOPBACK}:{echo.proxy_port}/from-curl?q=1"],
        capture_output=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert b"\tclient_address=127.0.0.1\n" in done.stdout
    assert b"\tversion=1\n" in done.stdout and b"\treal path=/from-curl\n" in done.stdout
    if curl_supports(curl, "--haproxy-clientip"):
        done = subprocess.run(
            [curl, "-sS", "--max-time", "5", "--haproxy-protocol", "--haproxy-clientip",
             "203.0.113.99", f"http://{LOOPBACK}:{echo.proxy_port}/"],
            capture_output=True, timeout=30,
        )
        assert b"\tclient_address=203.0.113.99\n" in done.stdout
