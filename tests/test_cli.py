"""The pyproxyproto command: decode, encode, send, and --help everywhere (relay: test_relay.py)."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

import pyproxyproto as pp
from pyproxyproto import sockets
from pyproxyproto._cli import main

from tests.integration_helpers import CLIENT, IN_CI, LOOPBACK, SERVER, listener, recv_all


@pytest.fixture
def cli(monkeypatch, capsysbinary):
    """Run main(args) in-process: (exit status, stdout bytes, stderr text)."""

    def run(*args, stdin=b""):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    return run


@pytest.mark.parametrize("command", [[], ["echo"], ["decode"], ["encode"], ["send"], ["relay"]])
def test_help_everywhere(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert out.startswith(b"usage: pyproxyproto " + " ".join(command).encode())


def test_no_command_is_a_usage_error(cli):
    code, _, err = cli()
    assert code == 2 and "required: COMMAND" in err


V2 = pp.build(CLIENT, SERVER, tlvs=[(0x02, b"example.com")], crc32c=True)


def test_decode_hex(cli):
    code, out, err = cli("decode", V2.hex())
    assert code == 0 and err == ""
    assert json.loads(out) == pp.parse(V2).to_dict()


@pytest.mark.parametrize(
    "args",
    [
        ["0x" + V2.hex()],
        ["0X" + V2.hex().upper()],
        [" ".join(V2[i:i + 2].hex() for i in range(0, len(V2), 2))],
        ["0x" + V2[:8].hex(), V2[8:].hex()],
        [V2[:16].hex() + "\n\t" + V2[16:].hex() + "\n"],
    ],
    ids=["0x", "0X-upper", "spaces", "two-arguments", "newlines"],
)
def test_decode_hex_with_0x_and_whitespace(cli, args):
    code, out, err = cli("decode", *args)
    assert (code, err) == (0, "")
    assert json.loads(out) == pp.parse(V2).to_dict()


@pytest.mark.parametrize("args", [["decode", "-"], ["decode"]])
def test_decode_raw_stdin(cli, args):
    code, out, err = cli(*args, stdin=V2 + b"payload")
    assert code == 0
    assert json.loads(out)["authority"] == "example.com"
    assert "7 byte(s) after the header are payload" in err


@pytest.mark.parametrize(
    "args, stdin, reason",
    [
        (["decode", "474554202f"], b"", "not a PROXY protocol header"),
        (["decode", V2[:20].hex()], b"", "incomplete PROXY header"),
        (["decode", (V2[:-1] + bytes([V2[-1] ^ 1])).hex()], b"", "CRC32C mismatch"),
        (["decode", "-"], b"", "incomplete PROXY header: 0 byte(s)"),
        (["decode", "xyz"], b"", "'xyz' is not hexadecimal"),
        (["decode", "0x0d0"], b"", "'0x0d0' is not hexadecimal"),
    ],
)
def test_decode_invalid_exits_1_with_the_reason(cli, args, stdin, reason):
    code, out, err = cli(*args, stdin=stdin)
    assert code == 1 and out == b""
    assert reason in err


ADDRESSES = ["--source", "203.0.113.7:41234", "--destination", "198.51.100.1:443"]


@pytest.mark.parametrize(
    "options, expected",
    [
        ([], pp.build(CLIENT, SERVER)),
        (["--v1"], pp.build(CLIENT, SERVER, version=1)),
        (["--dgram"], pp.build(CLIENT, SERVER, protocol=socket.SOCK_DGRAM)),
        (["--local"], pp.build(CLIENT, SERVER, command=pp.Command.LOCAL)),
        (["--alpn", "h2", "--authority", "example.com", "--unique-id", "0a0b",
          "--tlv", "0xE0=0102030405060708", "--tlv", "234:01", "--crc32c"],
         pp.build(CLIENT, SERVER, crc32c=True, tlvs=[
             (0x01, b"h2"), (0x02, b"example.com"), (0x05, b"\x0a\x0b"),
             (0xE0, bytes(range(1, 9))), (0xEA, b"\x01")])),
    ],
)
def test_encode(cli, options, expected):
    assert cli("encode", *ADDRESSES, *options) == (0, expected, "")
    assert cli("encode", *ADDRESSES, *options, "--hex") == (0, expected.hex().encode() + b"\n", "")


def test_encode_ipv6_and_local_without_addresses(cli):
    code, out, _ = cli("encode", "--source", "[2001:db8::7]:1", "--destination", "[::1]:2")
    assert code == 0
    assert pp.parse(out).source == ("2001:db8::7", 1, 0, 0)
    code, out, _ = cli("encode", "--local")
    assert code == 0 and pp.parse(out).command == pp.Command.LOCAL


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--source", "203.0.113.7:1"], "give --source and --destination"),
        (["--source", "203.0.113.7", "--destination", "1.2.3.4:5"], "is not HOST:PORT"),
        (["--source", "::1:80", "--destination", "[::1]:80"], "in brackets"),
        (["--source", "example.com:80", "--destination", "1.2.3.4:5"], "not an IPv4 or IPv6"),
        (["--source", "1.2.3.4:70000", "--destination", "1.2.3.4:5"], "port must be"),
        ([*ADDRESSES, "--tlv", "300=00"], "is not TYPE=HEX"),
        ([*ADDRESSES, "--tlv", "0xE0"], "is not TYPE=HEX"),
        ([*ADDRESSES, "--tlv", "1:zz"], "is not hexadecimal"),
        ([*ADDRESSES, "--v1", "--alpn", "h2"], "v1 carries no TLVs"),
        (["--source", "1.2.3.4:1", "--destination", "[::1]:2"], "different address families"),
    ],
)
def test_encode_errors_in_plain_words(cli, args, reason):
    code, out, err = cli("encode", *args)
    assert code == 2 and out == b""
    assert reason in err


def serve_once(reply_prefix=b"", body_length=None, close=True):
    """A one-connection loopback server that answers with what it learned.

    It reads the body until the client half-closes, or body_length bytes and
    then whether the client half-closed within 0.3 s (result["eof"]).
    """
    lsock = listener()
    result = {}

    def serve():
        with lsock:
            conn, client, header = sockets.accept(lsock, timeout=2)
            with conn:
                conn.settimeout(2)
                result["header"], result["peer"] = header, conn.getpeername()
                if body_length is None:
                    body = recv_all(conn)
                else:
                    body = recv_exactly(conn, body_length)
                    conn.settimeout(0.3)
                    try:
                        result["eof"] = conn.recv(1) == b""
                    except TimeoutError:
                        result["eof"] = False
                conn.sendall(reply_prefix + f"{client[0]}:{client[1]} ".encode() + body)
                if not close:
                    conn.settimeout(5)
                    recv_all(conn)  # until the client gives up and closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return lsock.getsockname(), thread, result


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, data
        data += chunk
    return data


def test_send_with_half_close(cli):
    address, thread, result = serve_once(b"hello ")
    code, out, err = cli("send", f"{address[0]}:{address[1]}", *ADDRESSES, "--authority",
                         "example.com", "--half-close", stdin=b"ping")
    thread.join(5)
    assert code == 0
    assert out == b"hello 203.0.113.7:41234 ping"
    assert result["header"].authority == "example.com"
    assert "sent a 42-byte PROXY v2 header and 4 byte(s) from stdin" in err
    assert "closed the connection after 28 byte(s)" in err


def test_send_keeps_the_connection_open(cli):
    # Servers such as aiohttp drop a client that half-closes; send does not, by default.
    address, thread, result = serve_once(b"hello ", body_length=4)
    code, out, err = cli("send", f"{address[0]}:{address[1]}", *ADDRESSES, stdin=b"ping")
    thread.join(5)
    assert code == 0 and out == b"hello 203.0.113.7:41234 ping"
    assert result["eof"] is False
    assert "closed the connection after 28 byte(s)" in err


def test_send_stops_when_the_server_falls_silent(cli):
    address, thread, _ = serve_once(b"hi ", body_length=1, close=False)
    code, out, err = cli("send", f"{address[0]}:{address[1]}", *ADDRESSES, "--timeout", "0.5",
                         stdin=b"x")
    thread.join(5)
    assert code == 0 and out == b"hi 203.0.113.7:41234 x"
    assert "no more data from the server for 0.5 s after 22 byte(s); closing" in err


def test_send_uses_the_connection_s_own_addresses(cli):
    # As curl --haproxy-protocol: source = our end, destination = the server's.
    address, thread, result = serve_once(body_length=1)
    code, out, _ = cli("send", f"{address[0]}:{address[1]}", stdin=b"x")
    thread.join(5)
    assert code == 0
    header = result["header"]
    assert header.source == result["peer"] and header.destination == address
    assert out == f"{LOOPBACK}:{result['peer'][1]} x".encode()
    # One given, the other from the socket.
    address, thread, result = serve_once(body_length=1)
    code, _, _ = cli("send", f"{address[0]}:{address[1]}", "--source", "203.0.113.7:41234",
                     stdin=b"x")
    thread.join(5)
    assert code == 0
    assert result["header"].source == CLIENT and result["header"].destination == address


def test_send_v1_ipv6(cli):
    address, thread, _ = serve_once()
    code, out, _ = cli("send", f"{LOOPBACK}:{address[1]}", "--v1", "--source",
                       "[2001:db8::7]:5", "--destination", "[2001:db8::1]:6", "--half-close",
                       stdin=b"x")
    thread.join(5)
    assert code == 0 and out == b"2001:db8::7:5 x"


def test_send_connection_refused(cli):
    with listener() as lsock:
        port = lsock.getsockname()[1]
    code, out, err = cli("send", f"{LOOPBACK}:{port}", *ADDRESSES, "--timeout", "2")
    assert code == 1 and out == b""
    assert f"cannot connect to {LOOPBACK}:{port}" in err


def test_python_dash_m_end_to_end():
    encoded = subprocess.run(
        [sys.executable, "-m", "pyproxyproto", "encode", *ADDRESSES, "--unique-id", "ab"],
        capture_output=True, check=True, timeout=30,
    ).stdout
    decoded = subprocess.run(
        [sys.executable, "-m", "pyproxyproto", "decode", "-"],
        input=encoded, capture_output=True, check=True, timeout=30,
    ).stdout
    assert json.loads(decoded)["unique_id"] == "ab"


def test_console_script():
    # An installed script sits beside the interpreter that has the package
    # (a venv's bin/ need not be on PATH); otherwise look on PATH.
    beside = os.path.join(os.path.dirname(sys.executable), "pyproxyproto")
    script = beside if os.path.exists(beside) else shutil.which("pyproxyproto")
    if script is None:
        if IN_CI:
            pytest.fail("the pyproxyproto console script is not installed in CI")
        pytest.skip("pyproxyproto is not installed as a console script here")
    done = subprocess.run([script, "decode", V2.hex()], capture_output=True, timeout=30)
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == 2


def test_encode_to_a_file(cli, tmp_path):
    target = tmp_path / "header.bin"
    assert cli("encode", *ADDRESSES, "-o", str(target)) == (0, b"", "")
    assert target.read_bytes() == pp.build(CLIENT, SERVER)
    code, _, err = cli("encode", *ADDRESSES, "-o", str(tmp_path / "missing" / "h"))
    assert code == 1 and "pyproxyproto encode: cannot write" in err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    "options, code, written",
    [
        ([], 2, b""),
        (["--force"], 0, pp.build(CLIENT, SERVER)),
        (["--hex"], 0, pp.build(CLIENT, SERVER).hex().encode() + b"\n"),
    ],
    ids=["refused", "force", "hex"],
)
def test_encode_to_a_terminal(options, code, written):
    leader, follower = os.openpty()
    try:
        tty = __import__("tty")
        tty.setraw(follower)  # no newline translation: the bytes as written
        done = subprocess.run(
            [sys.executable, "-m", "pyproxyproto", "encode", *ADDRESSES, *options],
            stdout=follower, stderr=subprocess.PIPE, timeout=30,
        )
        os.close(follower)
        follower = None
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)
    assert done.returncode == code, done.stderr
    if code == 2:
        assert b"refusing to write a binary header to a terminal" in done.stderr
        assert output == b""
    else:
        assert output == written
