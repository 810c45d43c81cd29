"""What a user's type checker sees: `mypy --strict` on a script that uses
the public API must find precise types (no Any) and flag misuse."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import pyproxyproto

USER_SCRIPT = textwrap.dedent(
    """
    import pyproxyproto as pp

    h = pp.parse(bytearray(b"PROXY UNKNOWN\\r\\n"))
    reveal_type(h)
    reveal_type(h.version)
    reveal_type(h.command)
    reveal_type(h.family)
    reveal_type(h.protocol)
    reveal_type(h.source)
    reveal_type(h.destination)
    reveal_type(h.length)
    reveal_type(h.tlvs)
    reveal_type(h.alpn)
    reveal_type(h.authority)
    reveal_type(h.unique_id)
    reveal_type(h.netns)
    reveal_type(h.crc32c)
    reveal_type(h.ssl)
    reveal_type(h.aws_vpce_id)
    reveal_type(h.azure_link_id)
    reveal_type(h.gcp_psc_connection_id)
    reveal_type(h.to_dict())
    if h.ssl is not None:
        reveal_type(h.ssl.cn)
        reveal_type(h.ssl.verified)
        reveal_type(h.ssl.tlvs)
    reveal_type(pp.build(("192.0.2.1", 1), ("198.51.100.2", 2)))
    reveal_type(pp.parse(memoryview(b"")))
    pp.parse("PROXY UNKNOWN\\r\\n")
    """
)

EXPECTED = [
    "pyproxyproto._parser_py.ProxyHeader",
    "builtins.int",
    "pyproxyproto._header.Command",
    "socket.AddressFamily",
    "builtins.int",
    "tuple[builtins.str, builtins.int] | tuple[builtins.str, builtins.int, builtins.int, builtins.int] | builtins.str | builtins.bytes | None",
    "tuple[builtins.str, builtins.int] | tuple[builtins.str, builtins.int, builtins.int, builtins.int] | builtins.str | builtins.bytes | None",
    "builtins.int",
    "builtins.tuple[tuple[builtins.int, builtins.bytes], ...]",
    "builtins.bytes | None",
    "builtins.str | None",
    "builtins.bytes | None",
    "builtins.str | None",
    "builtins.int | None",
    "pyproxyproto._header.SSLInfo | None",
    "builtins.str | None",
    "builtins.int | None",
    "builtins.int | None",
    "builtins.dict[builtins.str, Any]",
    "builtins.str | None",
    "builtins.bool",
    "builtins.tuple[tuple[builtins.int, builtins.bytes], ...]",
    "builtins.bytes",
    "pyproxyproto._parser_py.ProxyHeader",
]


# The integrations a user calls, as a user's script sees them.  Imports are
# followed silently, as for an installed package: only the script's own
# lines may have errors.
INTEGRATIONS_SCRIPT = textwrap.dedent(
    """
    import socket
    import socketserver

    from anyio.abc import ByteStream

    import pyproxyproto as pp
    from pyproxyproto import sockets
    from pyproxyproto.anyio import ProxyProtocolAttribute, ProxyProtocolListener


    def serve(listener: socket.socket) -> None:
        conn, client, header = sockets.accept(listener, trusted="10.0.0.0/8")
        reveal_type(conn)
        reveal_type(client)
        reveal_type(header)
        reveal_type(sockets.recv_header(conn))
        reveal_type(sockets.handshake(conn, client))


    class Server(sockets.ProxyProtocolMixin, socketserver.ThreadingTCPServer):
        pass


    def handler_header(server: Server, request: socket.socket) -> None:
        reveal_type(server.proxy_header(request))


    async def handle(stream: ByteStream, listener: ProxyProtocolListener) -> None:
        reveal_type(ProxyProtocolAttribute.header)
        reveal_type(ProxyProtocolAttribute.proxy_address)
        reveal_type(stream.extra(ProxyProtocolAttribute.header))
        reveal_type(await listener.handshake(stream))


    reveal_type(pp.Stats().as_dict())
    sockets.recv_header(socket.socket(), timeout="5")
    """
)

ADDRESS = (
    "tuple[builtins.str, builtins.int] | tuple[builtins.str, builtins.int, builtins.int, "
    "builtins.int] | builtins.str | builtins.bytes | None"
)
HEADER = "pyproxyproto._parser_py.ProxyHeader"

INTEGRATIONS_EXPECTED = [
    "socket.socket",
    ADDRESS,
    f"{HEADER} | None",
    HEADER,
    f"tuple[{ADDRESS}, {HEADER} | None]",
    f"{HEADER} | None",
    f"{HEADER} | None",
    ADDRESS,
    f"{HEADER} | None",
    "pyproxyproto.anyio.ProxyProtocolStream",
    "builtins.dict[builtins.str, builtins.int]",
]

AIO_SCRIPT = textwrap.dedent(
    """
    import asyncio

    from pyproxyproto import aio


    async def handle(reader: asyncio.StreamReader) -> None:
        reveal_type(await aio.read_header(reader))
    """
)


def _mypy():
    try:
        import mypy.api  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("mypy is not installed (pip install -e '.[typing]')")
        pytest.skip("mypy is not installed (pip install -e '.[typing]')")


def _run(args, cwd, env=None):
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--hide-error-context",
         "--cache-dir", os.path.join(cwd, ".mypy_cache"), *args],
        cwd=cwd, capture_output=True, text=True, check=False, env=env,
    )
    return out.returncode, out.stdout + out.stderr


def _check_script(tmp_path, text, *options):
    """mypy --strict on a user's script: (revealed types, error lines, output, exit code)."""
    _mypy()
    script = tmp_path / "user.py"
    script.write_text(text)
    package_root = os.path.dirname(os.path.dirname(pyproxyproto.__file__))
    env = dict(os.environ)
    if os.path.exists(os.path.join(package_root, "pyproject.toml")):
        # A checkout (an editable install's finder is invisible to mypy);
        # an installed wheel is found in site-packages through py.typed.
        env["MYPYPATH"] = package_root
    code, output = _run([*options, str(script)], str(tmp_path), env)
    # mypy releases differ in whether they spell out "builtins.".
    revealed = [line.split('Revealed type is "', 1)[1].rstrip('"').replace("builtins.", "")
                for line in output.splitlines() if "Revealed type is" in line]
    errors = [line for line in output.splitlines() if ": error:" in line]
    return revealed, errors, output, code


def _plain(types):
    return [t.replace("builtins.", "") for t in types]


def test_user_script_sees_precise_types(tmp_path):
    revealed, errors, output, code = _check_script(tmp_path, USER_SCRIPT)
    assert revealed == _plain(EXPECTED), output
    assert not any("Any" in t for t in revealed if not t.startswith("dict[str, Any]")), output
    # Exactly one error: the str handed to parse().
    assert len(errors) == 1, output
    assert 'Argument 1 to "parse" has incompatible type "str"' in errors[0], output
    assert code == 1


def test_integrations_give_users_precise_types(tmp_path):
    revealed, errors, output, code = _check_script(
        tmp_path, INTEGRATIONS_SCRIPT, "--follow-imports=silent"
    )
    assert revealed == _plain(INTEGRATIONS_EXPECTED), output
    assert not any("Any" in t for t in revealed), output
    # Exactly one error: the str timeout handed to recv_header().
    assert len(errors) == 1, output
    assert 'Argument "timeout" to "recv_header" has incompatible type "str"' in errors[0], output
    assert code == 1


def test_aio_read_header_gives_a_precise_type(tmp_path):
    revealed, errors, output, code = _check_script(
        tmp_path, AIO_SCRIPT, "--follow-imports=silent"
    )
    assert revealed == [HEADER], output
    assert code == 0, output


def test_package_is_clean_under_mypy_strict():
    # pyproject.toml's [tool.mypy] names the files (the package and the
    # Twisted plugin) and the untyped third-party modules; the typing
    # extra brings the stubs (types-gunicorn).
    _mypy()
    package_root = os.path.dirname(os.path.dirname(pyproxyproto.__file__))
    if not os.path.exists(os.path.join(package_root, "pyproject.toml")):
        pytest.skip("needs the source checkout")
    code, output = _run([], package_root)
    assert code == 0, output
