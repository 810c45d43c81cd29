"""The ``pyproxyproto`` command: echo, decode, encode, send, relay."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import threading
from typing import Any, Callable, Sequence

from . import BACKEND, Command, ProxyProtocolError, __version__, build, parse
from ._constants import PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_UNIQUE_ID
from ._networks import trusted_networks
from ._policy import DEFAULT_TIMEOUT
from ._relay import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Relay

EXIT_INVALID = 1  # decode: the input is not a valid header; send, relay, echo: a socket failed
EXIT_USAGE = 2  # argparse's own status for bad arguments


class UsageError(Exception):
    """Bad arguments found after argparse: reported like argparse's own errors."""


def _host_port(text: str, *, ip_only: bool) -> tuple[Any, ...]:
    """Parse HOST:PORT, with IPv6 as [::1]:80, into a socket address."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (IPv6 as [::1]:80)")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write an IPv6 address in brackets, as [::1]:80"
        )
    if not port.isdigit() or int(port) > 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number from 0 to 65535")
    if not ip_only:
        return (host, int(port))
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return (host, int(port)) if family == socket.AF_INET else (host, int(port), 0, 0)
    raise argparse.ArgumentTypeError(f"{text!r}: {host!r} is not an IPv4 or IPv6 address")


def _address(text: str) -> tuple[Any, ...]:
    return _host_port(text, ip_only=True)


def _target(text: str) -> tuple[Any, ...]:
    return _host_port(text, ip_only=False)


def _from_hex(text: str) -> bytes:
    """Hex digits, with any whitespace and an optional 0x in front (ValueError otherwise)."""
    digits = "".join(text.split())
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    return bytes.fromhex(digits)


def _hex(text: str) -> bytes:
    try:
        return _from_hex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hexadecimal") from None


def _tlv(text: str) -> tuple[int, bytes]:
    # TYPE=HEX; TYPE:HEX, the first syntax, is accepted too.
    separator = "=" if "=" in text else ":"
    kind, sep, value = text.partition(separator)
    try:
        tlv_type = int(kind, 0)
    except ValueError:
        tlv_type = -1
    if not sep or not 0 <= tlv_type <= 0xFF:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not TYPE=HEX (TYPE from 0 to 255, e.g. 0xE0=0102)"
        )
    return tlv_type, _hex(value)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _network(text: str) -> str:
    try:
        trusted_networks([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_header_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("header")
    own = " (default: the connection's own)" if parser.prog.endswith(" send") else ""
    group.add_argument("--source", type=_address, metavar="HOST:PORT",
                       help=f"the client's address (IPv6 as [2001:db8::1]:443){own}")
    group.add_argument("--destination", type=_address, metavar="HOST:PORT",
                       help=f"the address the client connected to{own}")
    group.add_argument("--v1", action="store_true", help="a text (v1) header instead of v2")
    group.add_argument("--local", action="store_true",
                       help="a LOCAL command (health check): addresses are optional")
    group.add_argument("--dgram", action="store_true", help="the client used UDP (v2 only)")
    group.add_argument("--alpn", help="ALPN TLV, e.g. h2")
    group.add_argument("--authority", help="authority (TLS SNI) TLV, e.g. example.com")
    group.add_argument("--unique-id", type=_hex, metavar="HEX", help="unique ID TLV, in hex")
    group.add_argument("--tlv", type=_tlv, action="append", default=[], metavar="TYPE=HEX",
                       help="any TLV, e.g. 0xE0=0102; may be repeated")
    group.add_argument("--crc32c", action="store_true", help="add a CRC32C checksum TLV")


def _header(args: argparse.Namespace, sock: socket.socket | None = None) -> bytes:
    """The header the options describe; ``send`` fills in missing addresses from its socket."""
    if sock is not None and not args.local:
        if args.source is None:
            args.source = sock.getsockname()
        if args.destination is None:
            args.destination = sock.getpeername()
    if not args.local and (args.source is None or args.destination is None):
        raise UsageError("give --source and --destination (or --local for a LOCAL header)")
    tlvs = []
    if args.alpn is not None:
        tlvs.append((PP2_TYPE_ALPN, args.alpn.encode()))
    if args.authority is not None:
        tlvs.append((PP2_TYPE_AUTHORITY, args.authority.encode()))
    if args.unique_id is not None:
        tlvs.append((PP2_TYPE_UNIQUE_ID, args.unique_id))
    tlvs += args.tlv
    try:
        return build(
            args.source,
            args.destination,
            version=1 if args.v1 else 2,
            command=Command.LOCAL if args.local else Command.PROXY,
            protocol=socket.SOCK_DGRAM if args.dgram else socket.SOCK_STREAM,
            tlvs=tlvs,
            crc32c=args.crc32c,
        )
    except ValueError as exc:
        raise UsageError(f"cannot build that header: {exc}") from None


def _decode(args: argparse.Namespace) -> int:
    if args.data in ([], ["-"]):
        data = sys.stdin.buffer.read()
    else:
        text = " ".join(args.data)
        try:
            data = _from_hex(text)
        except ValueError:
            print(f"pyproxyproto decode: {text!r} is not hexadecimal "
                  "(use - to read raw bytes from stdin)", file=sys.stderr)
            return EXIT_INVALID
    try:
        header = parse(data)
    except ProxyProtocolError as exc:
        print(f"pyproxyproto decode: not a valid PROXY header: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(header.to_dict(), indent=2))
    if len(data) > header.length:
        print(f"({len(data) - header.length} byte(s) after the header are payload, not shown)",
              file=sys.stderr)
    return 0


def _encode(args: argparse.Namespace) -> int:
    header = _header(args)
    data = (header.hex() + "\n").encode() if args.hex else header
    if args.output is not None:
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as exc:
            print(f"pyproxyproto encode: cannot write {args.output}: {exc}", file=sys.stderr)
            return EXIT_INVALID
        return 0
    if not args.hex and not args.force and sys.stdout.isatty():
        raise UsageError("refusing to write a binary header to a terminal: "
                         "use --hex, -o FILE, a pipe, or --force")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def _send(args: argparse.Namespace) -> int:
    host, port = args.target
    try:
        sock = socket.create_connection((host, port), timeout=args.timeout)
    except OSError as exc:
        print(f"pyproxyproto send: cannot connect to {host}:{port}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    with sock:
        header = _header(args, sock)
        received = 0
        try:
            payload = sys.stdin.buffer.read()
            sock.sendall(header + payload)
            print(f"sent a {len(header)}-byte PROXY v{1 if args.v1 else 2} header and "
                  f"{len(payload)} byte(s) from stdin to {host}:{port}; the reply follows",
                  file=sys.stderr)
            if args.half_close:
                sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        except TimeoutError:
            # The connection stays open by default: a server that keeps it
            # alive has said everything once it falls silent.
            if not received:
                print(f"pyproxyproto send: no reply from {host}:{port} within "
                      f"{args.timeout:g} s", file=sys.stderr)
                return EXIT_INVALID
            print(f"no more data from the server for {args.timeout:g} s after {received} "
                  "byte(s); closing", file=sys.stderr)
            return 0
        except OSError as exc:
            print(f"pyproxyproto send: connection to {host}:{port} failed: {exc}", file=sys.stderr)
            return EXIT_INVALID
    print(f"the server closed the connection after {received} byte(s)", file=sys.stderr)
    return 0


def _relay(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        relay = Relay(args.listen, args.to, version=args.header_version, tlvs=args.tlv,
                      crc32c=args.crc32c, connect_timeout=args.connect_timeout,
                      max_connections=args.max_connections)
    except ValueError as exc:
        raise UsageError(f"cannot build that header: {exc}") from None
    return asyncio.run(_run_relay(relay, args))


async def _run_relay(relay: Relay, args: argparse.Namespace) -> int:
    try:
        bound = await relay.start()
    except OSError as exc:
        print(f"pyproxyproto relay: cannot listen on {_host_port_text(args.listen)}: {exc}",
              file=sys.stderr)
        return EXIT_INVALID
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listening = ", ".join(_host_port_text(address) for address in bound)
    print(f"relaying {listening} -> {_host_port_text(args.to)} with a PROXY "
          f"v{args.header_version} header per connection (Ctrl-C or SIGTERM stops it)",
          flush=True)
    await stop.wait()
    await relay.close()
    print("stopped", flush=True)
    return 0


def _host_port_text(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _echo(args: argparse.Namespace) -> int:
    from ._echo import EchoApp, log_as_json_lines  # http.server is only needed here

    log_as_json_lines(sys.stderr)
    try:
        app = EchoApp(args.host, args.proxy_port, args.plain_port, args.trusted or None,
                      args.header_timeout)
    except OSError as exc:  # ListenError names the address and which port it is
        print(f"pyproxyproto echo: {exc}", file=sys.stderr)
        return EXIT_INVALID
    trusted = ", ".join(args.trusted) if args.trusted else "any peer"
    print(f"PROXY protocol port: {_url(app.proxy.server_address)} "
          f"(send a PROXY header first; trusted: {trusted}; "
          f"header timeout: {args.header_timeout:g} s)")
    metrics = " /metrics: the PROXY port's counters" if app.plain.metrics else ""
    print(f"plain HTTP port: {_url(app.plain.server_address)} (no PROXY header;{metrics})"
          if metrics else f"plain HTTP port: {_url(app.plain.server_address)} (no PROXY header)")
    print(f"Try: curl --haproxy-protocol {_url(app.proxy.server_address)}  "
          "(Ctrl-C or SIGTERM stops the server)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    app.close()
    print("stopped", flush=True)
    return 0


def _url(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyproxyproto",
        description="Decode, encode and send PROXY protocol (HAProxy v1/v2) headers, "
                    "relay TCP with one in front, and run an echo server behind one.",
    )
    parser.add_argument("--version", action="version",
                        version=f"pyproxyproto {__version__} ({BACKEND} backend)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    echo = commands.add_parser(
        "echo", help="run the echo HTTP server (PROXY port and plain port)",
        description="An HTTP server that answers every request with a report of what it "
                    "received. The PROXY port expects a PROXY header before HTTP; the "
                    "plain port never looks for one. Port 0 picks a free port.",
    )
    echo.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default: %(default)s)")
    echo.add_argument("--proxy-port", type=_port, default=9080,
                      help="port that requires a PROXY header (default: %(default)s)")
    echo.add_argument("--plain-port", type=_port, default=8080,
                      help="plain HTTP port (default: %(default)s)")
    echo.add_argument("--trusted", type=_network, nargs="+", metavar="CIDR",
                      help="only these networks may send headers (default: any peer)")
    echo.add_argument("--header-timeout", type=_positive, default=DEFAULT_TIMEOUT,
                      metavar="SECONDS",
                      help="close a connection whose header is not complete by then "
                           "(default: %(default)g)")
    echo.set_defaults(run=_echo)

    decode = commands.add_parser(
        "decode", help="decode a header given in hex or as raw bytes on stdin",
        description="Decode a PROXY header and print it as JSON. Exit status 1 if it is "
                    "not a valid header.",
    )
    decode.add_argument("data", nargs="*", metavar="HEX",
                        help="the header in hex (0x in front and whitespace are fine); "
                             "- or nothing: raw bytes from stdin")
    decode.set_defaults(run=_decode)

    encode = commands.add_parser(
        "encode", help="write a header to stdout",
        description="Build a PROXY header and write it to stdout (raw bytes, or hex with --hex). "
                    "Raw bytes go to a pipe or a file, not to a terminal unless --force.",
    )
    _add_header_options(encode)
    encode.add_argument("--hex", action="store_true",
                        help="write hex and a newline instead of raw bytes")
    encode.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    encode.add_argument("--force", action="store_true",
                        help="write raw bytes even when stdout is a terminal")
    encode.set_defaults(run=_encode)

    send = commands.add_parser(
        "send", help="act as a load balancer: send a header and stdin, print the reply",
        description="Connect to HOST:PORT, send a PROXY header and then everything read "
                    "from stdin, and print what the server sends back until it closes the "
                    "connection or falls silent for --timeout. Without --source and "
                    "--destination the header carries the connection's own addresses, "
                    "as curl --haproxy-protocol does.",
    )
    send.add_argument("target", type=_target, metavar="HOST:PORT", help="the server to connect to")
    _add_header_options(send)
    send.add_argument("--half-close", action="store_true",
                      help="shut down the sending side after stdin (some servers, e.g. "
                           "aiohttp, drop half-closed clients; by default it stays open)")
    send.add_argument("--timeout", type=_positive, default=10.0, metavar="SECONDS",
                      help="give up on connecting, or stop waiting for more of the reply, "
                           "after this long (default: %(default)g)")
    send.set_defaults(run=_send)

    relay = commands.add_parser(
        "relay", help="a TCP relay that adds a PROXY header: a load balancer on a laptop",
        description="Accept TCP connections on --listen and relay each to --to, after a "
                    "PROXY header with the client's real address and the address it "
                    "connected to. Bytes are copied both ways, half-closes included.",
    )
    relay.add_argument("--listen", type=_target, required=True, metavar="HOST:PORT",
                       help="where clients connect (port 0 picks one; IPv6 as [::1]:9000)")
    relay.add_argument("--to", type=_target, required=True, metavar="HOST:PORT",
                       help="the server with a PROXY protocol port")
    relay.add_argument("--version", dest="header_version", type=int, choices=(1, 2), default=2,
                       help="header version (default: %(default)s)")
    relay.add_argument("--tlv", type=_tlv, action="append", default=[], metavar="TYPE=HEX",
                       help="a TLV for every header (v2), e.g. 0xE0=0102; may be repeated")
    relay.add_argument("--crc32c", action="store_true", help="add a CRC32C checksum TLV (v2)")
    relay.add_argument("--connect-timeout", type=_positive, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                       help="give up on connecting to --to after this long (default: %(default)g)")
    relay.add_argument("--max-connections", type=_count, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                       help="relay at most N connections at once; close more on accept "
                            "(default: %(default)s)")
    relay.set_defaults(run=_relay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"pyproxyproto {args.command}: {exc}\n")
    except BrokenPipeError:
        return EXIT_INVALID  # stdout closed early (e.g. piped into head)
