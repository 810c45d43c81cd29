"""The one handshake, without I/O: decisions, feeding, the size limit, the
validator, timeouts and early closes, counters, log records and messages,
on both implementations (pure and compiled)."""

import logging
import struct
import threading

import pytest

import pyproxyproto as pp
from pyproxyproto import _log
from pyproxyproto._policy import MAX_HEADER_SIZE_LIMIT, Policy
from pyproxyproto._step import CLOSE, READ, SERVE

from tests.headers import VALID

PEER = ("10.1.2.3", 40000)
OUTSIDE = ("192.0.2.9", 40000)
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


@pytest.fixture(params=sorted(pp.HANDSHAKE_MODULES), ids=lambda name: f"handshake-{name}")
def Handshake(request):
    return pp.HANDSHAKE_MODULES[request.param].Handshake


def records(caplog, level=logging.DEBUG):
    return [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "pyproxyproto" and r.levelno >= level]


def begun(Handshake, peer=PEER, **options):
    hs = Handshake(Policy(**options))
    return hs, hs.begin(peer)


def test_the_package_uses_the_compiled_handshake_when_it_is_built():
    expected = "cython" if "cython" in pp.HANDSHAKE_MODULES else "python"
    assert pp.Handshake is pp.HANDSHAKE_MODULES[expected].Handshake


# -- deciding ---------------------------------------------------------------------------


def test_a_trusted_peer_must_send_a_header(Handshake):
    hs, step = begun(Handshake, trusted=["10.0.0.0/8"])
    assert step is READ and hs.decision == "require" and hs.error is None


@pytest.mark.parametrize("on_untrusted, step", [("reject", CLOSE), ("ignore", READ), ("skip", SERVE)])
def test_untrusted_peers(Handshake, on_untrusted, step, caplog):
    stats = pp.Stats()
    hs, got = begun(Handshake, OUTSIDE, trusted=["10.0.0.0/8"], on_untrusted=on_untrusted,
                    stats=stats)
    assert got is step and hs.step is step
    if step is CLOSE:
        assert isinstance(hs.error, pp.UntrustedPeer) and isinstance(hs.error, ConnectionError)
        assert stats.rejected_untrusted == 1
        [(level, message)] = records(caplog)
        assert level == logging.WARNING and message == (
            "closed connection from 192.0.2.9:40000: peer is not in the trusted networks "
            "(10.0.0.0/8, from trusted=); if it is a balancer, add its address there")
    elif step is SERVE:  # skipped: served as itself, nothing read
        assert hs.client == OUTSIDE and hs.header is None and hs.believed is None
        assert hs.rest == b"" and stats.skipped == 1 and not records(caplog)


def test_a_decide_callable_that_rejects_says_so(Handshake, caplog):
    hs, step = begun(Handshake, decide=lambda peer: "reject")
    assert step is CLOSE and isinstance(hs.error, pp.UntrustedPeer)
    assert records(caplog)[0][1].endswith("the decide callable rejected the peer")


# -- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID))
def test_one_feed_with_the_payload(Handshake, kind):
    stats = pp.Stats()
    hs, _ = begun(Handshake, stats=stats)
    data = VALID[kind] + PAYLOAD
    assert hs.feed(data) is SERVE and hs.step is SERVE
    header = pp.parse(VALID[kind])
    assert hs.header == header and hs.believed == header
    assert hs.client == (header.source if header.source is not None else PEER)
    assert hs.rest == PAYLOAD and hs.received == len(data)
    version = header.version
    assert stats.accepted == 1 and getattr(stats, f"accepted_v{version}") == 1
    assert stats.local == (1 if kind == "v2-local" else 0)


@pytest.mark.parametrize("kind", ["v1-tcp4", "v2-ipv6-tlvs", "v2-ipv4-crc32c"])
def test_needed_never_asks_for_a_payload_byte(Handshake, kind):
    """Fed exactly what ``needed`` allows each time (as an exact reader
    feeds), the handshake completes on the header's last byte."""
    data = VALID[kind]
    hs, step = begun(Handshake)
    while step is READ:
        wanted = max(hs.needed, 1) - hs.received
        assert hs.received + wanted <= len(data)
        step = hs.feed(data[hs.received:hs.received + wanted])
    assert step is SERVE and hs.received == len(data) and hs.rest == b""


@pytest.mark.parametrize("kind", ["v1-tcp6", "v2-ipv6-tlvs"])
def test_every_split_point(Handshake, kind):
    data = VALID[kind] + PAYLOAD
    length = len(VALID[kind])
    for cut in range(1, len(data)):
        hs, _ = begun(Handshake)
        step = hs.feed(data[:cut])
        fed = cut
        if step is READ:
            step = hs.feed(data[cut:])
            fed = len(data)
        assert step is SERVE, cut
        assert hs.header == pp.parse(data) and hs.rest == data[length:fed]


def test_pieces_are_copied_and_the_callers_buffer_is_left_alone(Handshake):
    data = bytearray(VALID["v2-ipv4"])
    original = bytes(data)
    hs, _ = begun(Handshake)
    assert hs.feed(data[:10]) is READ
    piece = bytearray(data[10:])
    assert hs.feed(memoryview(piece)) is SERVE
    piece[:] = b"\0" * len(piece)  # the caller reuses its buffer
    assert hs.header == pp.parse(original) and bytes(data) == original


def test_ignore_consumes_the_header_but_does_not_believe_it(Handshake):
    calls = []
    hs, _ = begun(Handshake, OUTSIDE, trusted=["10.0.0.0/8"], on_untrusted="ignore",
                  validate=calls.append)
    assert hs.feed(VALID["v2-ipv4"] + b"x") is SERVE
    assert hs.header == pp.parse(VALID["v2-ipv4"]) and hs.believed is None
    assert hs.client == OUTSIDE and hs.rest == b"x" and calls == []


@pytest.mark.parametrize("kind", ["v2-local", "v1-unknown"])
def test_local_and_unknown_leave_the_peer(Handshake, kind):
    hs, _ = begun(Handshake)
    assert hs.feed(VALID[kind]) is SERVE and hs.client == PEER and hs.believed is not None


def test_feeding_a_finished_handshake_is_an_error(Handshake):
    hs = Handshake(Policy())
    with pytest.raises(RuntimeError, match="before begin"):
        hs.feed(b"x")
    hs.begin(PEER)
    hs.feed(VALID["v1-tcp4"])
    with pytest.raises(RuntimeError, match="while the handshake is at"):
        hs.feed(b"more")


# -- size limit -------------------------------------------------------------------------


def v2_declaring(length):
    """The 16-byte fixed part of a v2 PROXY TCP4 header declaring ``length``."""
    return VALID["v2-ipv4"][:14] + struct.pack("!H", length)


def test_a_large_v2_header_is_refused_at_its_length_field(Handshake, caplog):
    stats = pp.Stats()
    hs, _ = begun(Handshake, max_header_size=300, stats=stats)
    assert hs.feed(v2_declaring(300 - 16)[:15]) is READ
    assert hs.feed(v2_declaring(300 - 16)[15:]) is READ and hs.needed == 300
    hs, _ = begun(Handshake, max_header_size=300, stats=stats)
    assert hs.feed(v2_declaring(301 - 16)) is CLOSE
    assert isinstance(hs.error, pp.InvalidHeader) and hs.error.offset == 14
    assert "declares 301 bytes, more than max_header_size (300)" in str(hs.error)
    assert stats.rejected_invalid == 1
    assert "invalid PROXY header: the v2 header declares 301 bytes" in records(caplog)[-1][1]


def test_a_complete_header_over_the_limit_is_refused(Handshake):
    big = pp.build(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0xE5, b"x" * 400)])
    hs, _ = begun(Handshake, max_header_size=300)
    assert hs.feed(big + b"payload") is CLOSE and isinstance(hs.error, pp.InvalidHeader)
    hs, _ = begun(Handshake)
    assert hs.feed(big) is SERVE


def test_the_largest_allowed(Handshake):
    huge = pp.build(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0xE5, b"x" * (0xFFFF - 12 - 3))])
    assert len(huge) == MAX_HEADER_SIZE_LIMIT == 65551
    hs, _ = begun(Handshake)
    assert hs.feed(huge) is CLOSE
    hs, _ = begun(Handshake, max_header_size=65551)
    assert hs.feed(huge) is SERVE


@pytest.mark.parametrize("kind", ["v1-tcp4", "v2-ipv4"])
def test_the_version_switches(Handshake, kind):
    version = 1 if kind.startswith("v1") else 2
    hs, _ = begun(Handshake, v1=version != 1, v2=version != 2)
    assert hs.feed(VALID[kind]) is CLOSE and isinstance(hs.error, pp.InvalidHeader)


# -- the validator ----------------------------------------------------------------------


def test_validator_refuses(Handshake, caplog):
    stats = pp.Stats()

    def only_vpce(header):
        if header.aws_vpce_id != "vpce-allowed":
            raise PermissionError(f"endpoint {header.aws_vpce_id} not allowed")

    hs, _ = begun(Handshake, validate=only_vpce, stats=stats)
    assert hs.feed(VALID["v2-cloud"]) is CLOSE
    assert isinstance(hs.error, pp.HeaderRejected) and isinstance(hs.error, pp.ProxyProtocolError)
    assert hs.error.header == pp.parse(VALID["v2-cloud"])
    assert isinstance(hs.error.__cause__, PermissionError)
    assert stats.rejected_by_validator == 1 and stats.accepted == 0
    [(level, message)] = records(caplog)
    assert level == logging.WARNING and "vpce-0123456789abcdef0 not allowed" in message


# -- giving up: counters, log levels, messages -----------------------------------------


def test_each_outcome_has_its_counter_and_level(Handshake, caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    stats = pp.Stats()
    policy = Policy(stats=stats, timeout=2)

    def handshake(data=b""):
        hs = Handshake(policy)
        hs.begin(PEER)
        if data:
            hs.feed(data)
        return hs

    assert handshake(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n").step is CLOSE
    assert handshake().timed_out() is CLOSE
    hs = handshake(b"PROXY")
    assert hs.timed_out() is CLOSE and isinstance(hs.error, pp.HeaderTimeout)
    assert isinstance(hs.error, TimeoutError) and isinstance(hs.error, pp.ProxyProtocolError)
    hs = handshake()
    assert hs.closed() is CLOSE and isinstance(hs.error, pp.ConnectionClosed)
    hs = handshake(VALID["v2-ipv4"][:20])
    hs.closed(ConnectionResetError("reset"))
    assert (hs.error.received, hs.error.needed) == (20, len(VALID["v2-ipv4"]))
    assert isinstance(hs.error.__cause__, ConnectionResetError)
    assert stats.as_dict() == {
        "accepted": 0, "accepted_v1": 0, "accepted_v2": 0, "local": 0, "skipped": 0,
        "rejected_untrusted": 0, "rejected_invalid": 1, "rejected_by_validator": 0,
        "timed_out": 2, "closed_early": 2,
    }
    start = "closed connection from 10.1.2.3:40000: "
    assert records(caplog) == [
        (logging.WARNING, start + "invalid PROXY header: v1: invalid port at offset 30"),
        # Silent peers (health checks, idle probes) are only worth DEBUG.
        (logging.DEBUG, start + "no complete PROXY header within 2 s (0 byte(s) received)"),
        (logging.WARNING, start + "no complete PROXY header within 2 s (5 byte(s) received)"),
        (logging.DEBUG, start + "connection closed after 0 byte(s), before the PROXY header "
         "was complete (at least 1 needed)"),
        (logging.WARNING, start + "connection closed after 20 byte(s), before the PROXY header "
         "was complete (at least 28 needed) (reset)"),
    ]


@pytest.mark.parametrize(
    "data, what",
    [
        (PAYLOAD, "an HTTP request (b'GET / HTTP/1.1')"),
        (b"POST /x HTTP/1.1\r\n", "an HTTP request (b'POST /x HTTP/1.1')"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "a TLS handshake (ClientHello)"),
    ],
)
def test_a_peer_that_sends_no_header_is_told_apart(Handshake, data, what, caplog):
    stats = pp.Stats()
    hs, _ = begun(Handshake, stats=stats)
    assert hs.feed(data) is CLOSE and isinstance(hs.error, pp.InvalidHeader)
    message = str(hs.error)
    assert message.startswith(f"the peer sent no PROXY header: the connection starts with {what}")
    assert "send-proxy" in message and "PYPROXYPROTO_ON_UNTRUSTED=skip" in message
    [(_, record)] = records(caplog)
    assert record == f"closed connection from 10.1.2.3:40000: {message}"
    assert stats.rejected_invalid == 1


def test_a_malformed_header_is_not_mistaken_for_no_header(Handshake):
    hs, _ = begun(Handshake)
    hs.feed(b"PROXY TCP4 1.2.3.4\r\n")
    assert "sent no PROXY header" not in str(hs.error)


def test_unix_socket_peers_are_named_with_their_socket(Handshake, caplog):
    hs = Handshake(Policy(trusted=["10.0.0.0/8"]))
    assert hs.begin("", "/run/app.sock") is CLOSE
    assert records(caplog)[0][1].startswith(
        "closed connection from a Unix-socket peer on /run/app.sock: ")
    hs = Handshake(Policy(trusted=["10.0.0.0/8", "unix"]))
    assert hs.begin("", "/run/app.sock") is READ


def test_warnings_are_rate_limited_and_say_what_was_dropped(Handshake, caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_log.time, "monotonic", lambda: now[0])
    policy = Policy(trusted=["10.0.0.0/8"])
    for _ in range(25):
        Handshake(policy).begin(OUTSIDE)
    assert len(records(caplog, logging.WARNING)) == _log.limiter.burst == 10
    now[0] += _log.limiter.window
    Handshake(policy).begin(OUTSIDE)
    assert records(caplog, logging.WARNING)[-1][1].endswith("(15 similar record(s) were not logged)")


def test_debug_records_are_not_rate_limited(Handshake, caplog):
    caplog.set_level(logging.DEBUG, logger="pyproxyproto")
    policy = Policy()
    for _ in range(30):
        hs = Handshake(policy)
        hs.begin(PEER)
        hs.closed()
    assert len(records(caplog)) == 30


def test_stats_are_shared_and_exact_across_threads(Handshake):
    stats = pp.Stats()
    policies = [Policy(stats=stats), Policy(stats=stats, trusted=["10.0.0.0/8"])]
    data = VALID["v2-ipv4"]

    def work(policy):
        for _ in range(3000):
            hs = Handshake(policy)
            hs.begin(PEER)
            hs.feed(data)

    threads = [threading.Thread(target=work, args=(policies[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.accepted == stats.accepted_v2 == 24000
    assert "accepted=24000" in repr(stats)


# -- datagrams --------------------------------------------------------------------------


def test_a_datagram_is_one_whole_handshake(Handshake):
    hs = Handshake(Policy(), datagram=True)
    hs.begin(PEER)
    assert hs.feed(VALID["v2-ipv4-udp"] + b"dns") is SERVE and hs.rest == b"dns"
    hs = Handshake(Policy(), datagram=True)
    hs.begin(PEER)
    assert hs.feed(VALID["v2-ipv4-udp"][:20]) is CLOSE
    assert "the datagram ends before its PROXY header does" in str(hs.error)


def test_v1_has_no_datagram_form(Handshake, caplog):
    stats = pp.Stats()
    hs = Handshake(Policy(stats=stats), datagram=True)
    hs.begin(PEER)
    assert hs.feed(VALID["v1-tcp4"] + b"dns") is CLOSE
    assert "a v1 PROXY header in a datagram" in str(hs.error)
    assert stats.rejected_invalid == 1
    assert records(caplog)[0][1].startswith("dropped datagram from 10.1.2.3:40000: ")
