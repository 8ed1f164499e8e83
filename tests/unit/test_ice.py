"""STUN helpers and the ICE-lite responder (RFC 8489, RFC 8445 §2.5/§7.3, RFC 7675). Fake clock."""

import pickle
import struct

import pytest
from aioice.stun import Class, Message, Method, parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raysfu.transport.errors import InvalidStateError, PacketParseError
from raysfu.transport.ice import MAX_TUPLES, IceLiteServer, candidate_priority, ice_candidates
from raysfu.transport.stun import (
    StunMessage,
    build_binding_error,
    build_binding_request,
    build_binding_success,
    parse_stun,
)

UFRAG = "ourufrag12345678"
PWD = "ourpassword0123456789abcdefghijk"
REMOTE = ("192.0.2.10", 50000)
CHROME_PRIORITY = 1853824767
TIE = 0x1122334455667788


def chrome_request(
    server=None,
    *,
    ufrag=None,
    password=None,
    remote_ufrag="peerfrag",
    use_candidate=False,
    controlling=True,
    omit=(),
    integrity=True,
    fingerprint=True,
    transaction_id=None,
    method=Method.BINDING,
    klass=Class.REQUEST,
) -> bytes:
    """A Binding request built with aioice the way Chrome builds it."""
    ufrag = ufrag if ufrag is not None else server.username_fragment
    password = password if password is not None else server.password
    attrs = {"USERNAME": f"{ufrag}:{remote_ufrag}"}
    attrs["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = TIE
    if use_candidate:
        attrs["USE-CANDIDATE"] = None
    attrs["PRIORITY"] = CHROME_PRIORITY
    for name in omit:
        attrs.pop(name)
    msg = Message(method, klass, transaction_id, attrs)
    if integrity:
        msg.add_message_integrity(password.encode())  # adds FINGERPRINT too
        if not fingerprint:
            del msg.attributes["FINGERPRINT"]
    elif fingerprint:
        msg.add_fingerprint()
    return bytes(msg)


def total_outcomes(stats):
    return sum(v for k, v in stats.items() if k not in ("stun_received", "responses_sent"))


@pytest.fixture
def server():
    return IceLiteServer(UFRAG, PWD)


# -- construction ------------------------------------------------------------------------------


def test_random_credentials_have_ice_lengths_and_unambiguous_alphabet():
    a, b = IceLiteServer(), IceLiteServer()
    assert len(a.username_fragment) == 16 and len(a.password) == 32
    assert a.username_fragment != b.username_fragment and a.password != b.password
    for ch in a.username_fragment + a.password:
        assert ch not in "0o1lIO" and (ch.isdigit() or ch.islower())


def test_ice_parameters_are_mediasoup_shape(server):
    assert server.ice_parameters == {"usernameFragment": UFRAG, "password": PWD, "iceLite": True}
    assert server.state == "new" and server.selected_tuple is None
    assert server.next_timer_ms() is None


@pytest.mark.parametrize("timeout_ms", [1, 5000, 9999, 60001, 120000, -1])
def test_consent_timeout_out_of_range_raises_naming_ice_consent_timeout(timeout_ms):
    with pytest.raises(ValueError, match="ice_consent_timeout"):
        IceLiteServer(consent_timeout_ms=timeout_ms)


def test_consent_timeout_bounds_and_type():
    for ok in (0, 10000, 30000, 60000):
        assert IceLiteServer(consent_timeout_ms=ok).consent_timeout_ms == ok
    with pytest.raises(TypeError, match="ice_consent_timeout"):
        IceLiteServer(consent_timeout_ms=30.0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"username_fragment": "ab"}, "username_fragment"),
        ({"username_fragment": "has:colon"}, "username_fragment"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 21 + "!"}, "password"),
    ],
)
def test_bad_credentials_raise_value_error_naming_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        IceLiteServer(**kwargs)


# -- valid checks -------------------------------------------------------------------------------


def test_valid_request_gets_authenticated_200_with_xor_mapped_address(server):
    tid = b"0123456789ab"
    out = server.receive_stun(chrome_request(server, transaction_id=tid), REMOTE, now_ms=1000)
    assert out is not None
    resp = parse_message(out)
    assert resp.message_method == Method.BINDING and resp.message_class == Class.RESPONSE
    assert resp.transaction_id == tid
    assert resp.attributes["XOR-MAPPED-ADDRESS"] == REMOTE
    assert resp.check_message_integrity(PWD.encode())
    assert not resp.check_message_integrity(b"some other password...")
    assert "FINGERPRINT" in resp.attributes  # parse_message verified the CRC
    assert server.state == "connected" and server.selected_tuple == REMOTE
    assert server.is_valid_tuple(REMOTE) and not server.is_valid_tuple(("192.0.2.10", 50001))
    assert server.drain_events() == [("selected_tuple", REMOTE), ("state", "connected")]
    stats = server.stats
    assert stats["stun_received"] == 1 and stats["stun_requests_valid"] == 1
    assert stats["responses_sent"] == 1


def test_ipv6_remote_gets_ipv6_xor_mapped_address(server):
    remote = ("2001:db8::7", 4444)
    resp = parse_message(server.receive_stun(chrome_request(server), remote, 0))
    assert resp.attributes["XOR-MAPPED-ADDRESS"] == remote


def test_use_candidate_completes_and_events_are_emitted_once_per_change(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    assert server.drain_events() == [("selected_tuple", REMOTE), ("state", "connected")]
    server.receive_stun(chrome_request(server), REMOTE, 100)
    assert server.drain_events() == []
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 200)
    assert server.state == "completed" and server.selected_tuple == REMOTE
    assert server.drain_events() == [("state", "completed")]
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 300)
    assert server.drain_events() == []


def test_use_candidate_from_new_goes_straight_to_completed(server):
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 0)
    assert server.state == "completed"
    assert server.drain_events() == [("selected_tuple", REMOTE), ("state", "completed")]


def test_nomination_on_other_tuple_moves_selected_tuple_when_completed(server):
    other = ("192.0.2.11", 6000)
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 0)
    server.receive_stun(chrome_request(server), other, 10)  # validated, not selected
    assert server.selected_tuple == REMOTE and server.is_valid_tuple(other)
    server.drain_events()
    server.receive_stun(chrome_request(server, use_candidate=True), other, 20)
    assert server.selected_tuple == other and server.state == "completed"
    assert server.drain_events() == [("selected_tuple", other)]


def test_renomination_only_greater_nomination_selects(server):
    other = ("192.0.2.11", 6000)

    def req(nomination):
        return build_binding_request(
            f"{UFRAG}:peer", PWD, priority=CHROME_PRIORITY, nomination=nomination
        )

    assert server.receive_stun(req(1), REMOTE, 0) is not None
    assert server.state == "completed" and server.selected_tuple == REMOTE
    server.receive_stun(req(2), other, 10)
    assert server.selected_tuple == other
    server.receive_stun(req(1), REMOTE, 20)  # stale nomination: answered, not selected
    assert server.selected_tuple == other and server.is_valid_tuple(REMOTE)
    server.receive_stun(req(3), REMOTE, 30)
    assert server.selected_tuple == REMOTE


def test_nine_tuples_keep_eight_evicting_the_oldest(server):
    remotes = [("198.51.100.1", 1000 + i) for i in range(MAX_TUPLES + 1)]
    for i, r in enumerate(remotes):
        assert server.receive_stun(chrome_request(server), r, i) is not None
    assert len(server.tuples) == MAX_TUPLES
    # remotes[0] is the selected tuple (first valid check in "new"): never evicted.
    assert server.selected_tuple == remotes[0]
    assert server.is_valid_tuple(remotes[0])
    assert not server.is_valid_tuple(remotes[1])
    assert all(server.is_valid_tuple(r) for r in remotes[2:])
    # one more: the next oldest non-selected goes
    extra = ("198.51.100.2", 1)
    server.receive_stun(chrome_request(server), extra, 100)
    assert not server.is_valid_tuple(remotes[2]) and server.is_valid_tuple(extra)
    assert len(server.tuples) == MAX_TUPLES


def test_tuple_eviction_skips_selected_when_selected_is_not_oldest(server):
    remotes = [("198.51.100.1", 1000 + i) for i in range(MAX_TUPLES)]
    for i, r in enumerate(remotes):
        server.receive_stun(chrome_request(server), r, i)
    server.receive_stun(chrome_request(server, use_candidate=True), remotes[3], 50)
    assert server.selected_tuple == remotes[3]
    new = ("198.51.100.9", 9)
    server.receive_stun(chrome_request(server), new, 60)
    assert not server.is_valid_tuple(remotes[0]) and server.is_valid_tuple(remotes[3])


# -- rejected checks -------------------------------------------------------------------------------


def error_code(out):
    resp = parse_message(out)
    assert resp.message_class == Class.ERROR and "FINGERPRINT" in resp.attributes
    return resp.attributes["ERROR-CODE"][0], resp


def test_wrong_ufrag_gets_401_and_is_counted(server):
    out = server.receive_stun(chrome_request(server, ufrag="someoneelse"), REMOTE, 0)
    code, resp = error_code(out)
    assert code == 401 and "MESSAGE-INTEGRITY" not in resp.attributes
    assert server.stats["stun_dropped_bad_credentials"] == 1
    assert server.state == "new" and not server.is_valid_tuple(REMOTE)
    assert server.drain_events() == []


@pytest.mark.parametrize("username_prefix", [UFRAG[:-1], UFRAG + "x", UFRAG])
def test_username_must_be_ufrag_then_colon(server, username_prefix):
    msg = Message(Method.BINDING, Class.REQUEST, None, {"USERNAME": username_prefix, "PRIORITY": 1})
    msg.add_message_integrity(PWD.encode())
    code, _ = error_code(server.receive_stun(bytes(msg), REMOTE, 0))
    assert code == 401


def test_wrong_password_gets_401(server):
    out = server.receive_stun(chrome_request(server, password="wrong" * 6), REMOTE, 0)
    assert error_code(out)[0] == 401
    assert server.stats["stun_dropped_bad_credentials"] == 1 and server.state == "new"


@pytest.mark.parametrize("missing", ["USERNAME", "PRIORITY"])
def test_missing_attribute_gets_400(server, missing):
    out = server.receive_stun(chrome_request(server, omit=[missing]), REMOTE, 0)
    assert error_code(out)[0] == 400
    assert server.stats["stun_dropped_bad_request"] == 1 and server.state == "new"


def test_missing_message_integrity_gets_400(server):
    out = server.receive_stun(chrome_request(server, integrity=False), REMOTE, 0)
    assert error_code(out)[0] == 400


def test_missing_fingerprint_is_dropped_without_answer(server):
    assert server.receive_stun(chrome_request(server, fingerprint=False), REMOTE, 0) is None
    stats = server.stats
    assert stats["stun_dropped_malformed"] == 1 and stats["responses_sent"] == 0
    assert server.state == "new"


def test_corrupted_fingerprint_is_dropped_without_answer(server):
    data = bytearray(chrome_request(server))
    data[-1] ^= 0x01
    assert server.receive_stun(bytes(data), REMOTE, 0) is None
    assert server.stats["stun_dropped_malformed"] == 1


def test_ice_controlled_peer_gets_487_role_conflict_signed(server):
    out = server.receive_stun(chrome_request(server, controlling=False), REMOTE, 0)
    code, resp = error_code(out)
    assert code == 487 and resp.check_message_integrity(PWD.encode())
    assert server.stats["stun_dropped_role_conflict"] == 1 and server.state == "new"


def test_indication_and_responses_are_dropped_silently(server):
    ind = Message(Method.BINDING, Class.INDICATION)
    ind.add_fingerprint()
    assert server.receive_stun(bytes(ind), REMOTE, 0) is None
    resp = Message(Method.BINDING, Class.RESPONSE, None, {"XOR-MAPPED-ADDRESS": REMOTE})
    resp.add_message_integrity(PWD.encode())
    assert server.receive_stun(bytes(resp), REMOTE, 0) is None
    assert server.stats["stun_dropped_not_request"] == 2 and server.stats["responses_sent"] == 0


def test_indication_does_not_refresh_consent(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    ind = Message(Method.BINDING, Class.INDICATION)
    ind.add_fingerprint()
    server.receive_stun(bytes(ind), REMOTE, 20000)
    assert server.next_timer_ms() == 30000


def test_non_binding_request_gets_400(server):
    out = server.receive_stun(chrome_request(server, method=Method.ALLOCATE), REMOTE, 0)
    assert error_code(out)[0] == 400


# -- fuzzing -----------------------------------------------------------------------------------


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_raise_and_are_counted(data):
    server = IceLiteServer(UFRAG, PWD)
    server.receive_stun(data, REMOTE, 0)
    stats = server.stats
    assert stats["stun_received"] == 1 and total_outcomes(stats) == 1


@FUZZ
@given(
    st.binary(max_size=120),
    st.sampled_from([0x0001, 0x0011, 0x0101, 0x0111, 0x0003]),
)
def test_fuzz_stun_shaped_bodies_never_raise(body, msg_type):
    body = body[: len(body) & ~3]
    data = struct.pack("!HHI12s", msg_type, len(body), 0x2112A442, b"t" * 12) + body
    server = IceLiteServer(UFRAG, PWD)
    server.receive_stun(data, REMOTE, 0)
    assert total_outcomes(server.stats) == 1


VALID = chrome_request(ufrag=UFRAG, password=PWD, use_candidate=True)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=4),
    st.integers(0, len(VALID)),
)
def test_fuzz_mutated_valid_requests_never_raise_and_are_counted(flips, cut):
    data = bytearray(VALID)
    for pos, xor in flips:
        data[pos] ^= xor
    server = IceLiteServer(UFRAG, PWD)
    for d in (bytes(data), bytes(data[:cut])):
        out = server.receive_stun(d, REMOTE, 0)
        assert out is None or isinstance(out, bytes)
    stats = server.stats
    assert stats["stun_received"] == 2 and total_outcomes(stats) == 2


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_parse_stun_raises_only_packet_parse_error(data):
    try:
        msg = parse_stun(data)
    except PacketParseError as exc:
        assert exc.kind == "stun"
    else:
        assert isinstance(msg, StunMessage)


# -- consent freshness ---------------------------------------------------------------------------


def test_consent_expires_after_30_s_without_requests_and_not_before(server):
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 1000)
    server.drain_events()
    assert server.next_timer_ms() == 31000
    server.handle_timer(30999)
    assert server.state == "completed" and server.is_valid_tuple(REMOTE)
    server.handle_timer(31000)
    assert server.state == "disconnected"
    assert server.selected_tuple is None and server.tuples == []
    assert not server.is_valid_tuple(REMOTE)
    assert server.drain_events() == [("state", "disconnected")]
    assert server.next_timer_ms() is None
    server.handle_timer(99999)
    assert server.drain_events() == []


def test_each_valid_request_on_selected_tuple_refreshes_consent(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    for t in range(5000, 100000, 5000):
        server.handle_timer(t)
        server.receive_stun(chrome_request(server), REMOTE, t)
        assert server.next_timer_ms() == t + 30000
    assert server.state == "connected"


def test_requests_on_other_tuples_do_not_refresh_selected_consent(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    server.receive_stun(chrome_request(server), ("192.0.2.99", 1), 20000)
    assert server.next_timer_ms() == 30000
    server.handle_timer(30000)
    assert server.state == "disconnected"


def test_rejected_requests_do_not_refresh_consent(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    server.receive_stun(chrome_request(server, password="bad" * 10), REMOTE, 20000)
    assert server.next_timer_ms() == 30000


def test_reconnects_after_disconnection(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    server.handle_timer(30000)
    server.drain_events()
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 40000)
    assert server.state == "completed" and server.selected_tuple == REMOTE
    assert server.drain_events() == [("selected_tuple", REMOTE), ("state", "completed")]
    assert server.next_timer_ms() == 70000


def test_consent_disabled_never_expires():
    server = IceLiteServer(UFRAG, PWD, consent_timeout_ms=0)
    server.receive_stun(chrome_request(server), REMOTE, 0)
    assert server.next_timer_ms() is None
    server.handle_timer(10**9)
    assert server.state == "connected"


def test_custom_consent_timeout():
    server = IceLiteServer(UFRAG, PWD, consent_timeout_ms=10000)
    server.receive_stun(chrome_request(server), REMOTE, 5)
    assert server.next_timer_ms() == 10005


# -- restart, remove, close ------------------------------------------------------------------------


def test_restart_rejects_old_credentials_and_accepts_new(server):
    server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 0)
    server.drain_events()
    params = server.restart()
    assert params["usernameFragment"] != UFRAG and params["password"] != PWD
    assert params == server.ice_parameters and params["iceLite"] is True
    assert server.state == "completed" and server.selected_tuple == REMOTE
    assert server.drain_events() == []
    old = chrome_request(ufrag=UFRAG, password=PWD)
    assert error_code(server.receive_stun(old, REMOTE, 10))[0] == 401
    out = server.receive_stun(chrome_request(server, use_candidate=True), REMOTE, 20)
    assert parse_message(out).check_message_integrity(params["password"].encode())
    assert server.state == "completed"


def test_restart_with_given_credentials_and_consent_refresh(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    params = server.restart("newfrag1", "newpassword-is-long-enough".replace("-", "+"), now_ms=25000)
    assert params["usernameFragment"] == "newfrag1"
    assert server.next_timer_ms() == 55000
    with pytest.raises(ValueError, match="username_fragment"):
        server.restart("x")


def test_remove_selected_tuple_falls_back_to_newest_or_disconnects(server):
    a, b = ("192.0.2.1", 1), ("192.0.2.2", 2)
    server.receive_stun(chrome_request(server), a, 0)
    server.receive_stun(chrome_request(server), b, 1)
    server.drain_events()
    server.remove_tuple(a, 5000)
    assert server.selected_tuple == b and server.next_timer_ms() == 35000
    assert server.drain_events() == [("selected_tuple", b)]
    server.remove_tuple(("9.9.9.9", 9), 6000)  # unknown: ignored
    server.remove_tuple(b, 6000)
    assert server.state == "disconnected" and server.selected_tuple is None
    assert server.drain_events() == [("state", "disconnected")]


def test_close_is_idempotent_and_drops_later_stun(server):
    server.receive_stun(chrome_request(server), REMOTE, 0)
    server.drain_events()
    server.close()
    server.close()
    assert server.state == "closed" and server.drain_events() == [("state", "closed")]
    assert server.receive_stun(chrome_request(server), REMOTE, 1) is None
    assert server.stats["stun_dropped_closed"] == 1 and not server.is_valid_tuple(REMOTE)
    assert server.next_timer_ms() is None
    with pytest.raises(InvalidStateError):
        server.restart()


# -- STUN helpers ----------------------------------------------------------------------------------


def test_build_binding_request_roundtrip_with_all_attributes():
    tid = b"abcdefghijkl"
    data = build_binding_request(
        "their:mine", PWD, priority=12345, tie_breaker=TIE, use_candidate=True,
        nomination=7, transaction_id=tid,
    )
    msg = parse_stun(data)
    assert msg.message_class == Class.REQUEST and msg.transaction_id == tid
    assert msg.attributes["USERNAME"] == "their:mine"
    assert msg.attributes["PRIORITY"] == 12345
    assert msg.attributes["ICE-CONTROLLING"] == TIE
    assert "USE-CANDIDATE" in msg.attributes and msg.nomination == 7
    assert msg.check_message_integrity(PWD.encode())
    assert list(msg.attributes)[-2:] == ["MESSAGE-INTEGRITY", "FINGERPRINT"]
    # aioice alone accepts it too (it ignores NOMINATION)
    assert parse_message(data).check_message_integrity(PWD.encode())


def test_build_binding_request_controlled_and_defaults():
    msg = parse_stun(build_binding_request("a:b", PWD, priority=1, controlling=False))
    assert "ICE-CONTROLLED" in msg.attributes and "ICE-CONTROLLING" not in msg.attributes
    assert "USE-CANDIDATE" not in msg.attributes and msg.nomination is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"priority": 0}, "priority"),
        ({"priority": 2**32}, "priority"),
        ({"priority": 1, "tie_breaker": -1}, "tie_breaker"),
        ({"priority": 1, "nomination": 2**32}, "nomination"),
        ({"priority": 1, "transaction_id": b"short"}, "transaction_id"),
    ],
)
def test_build_binding_request_validates(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_binding_request("a:b", PWD, **kwargs)


def test_build_binding_success_and_error_shapes():
    req = parse_stun(build_binding_request("a:b", PWD, priority=1))
    ok = parse_stun(build_binding_success(req, ("10.0.0.1", 9), PWD))
    assert ok.message_class == Class.RESPONSE and ok.transaction_id == req.transaction_id
    assert ok.attributes["XOR-MAPPED-ADDRESS"] == ("10.0.0.1", 9)
    assert ok.check_message_integrity(PWD.encode())
    err = parse_stun(build_binding_error(req, 401, "Unauthorized"))
    assert err.message_class == Class.ERROR and err.attributes["ERROR-CODE"] == (401, "Unauthorized")
    assert "MESSAGE-INTEGRITY" not in err.attributes
    with pytest.raises(ValueError, match="code"):
        build_binding_error(req, 200, "OK")
    with pytest.raises(TypeError, match="xor_mapped_address"):
        build_binding_success(req, "10.0.0.1:9", PWD)
    with pytest.raises(ValueError, match="xor_mapped_address"):
        build_binding_success(req, ("not-an-ip", 9), PWD)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "shorter"),
        (bytes(19), "shorter"),
        (b"\xc0\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), "bits"),
        (b"\x00\x01\x00\x00\x00\x00\x00\x00" + bytes(12), "cookie"),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12), "length"),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x08", "overruns"),
        (b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x08\x00\x04abcd", "MESSAGE-INTEGRITY"),
        (b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\xc0\x01\x00\x02ab\x00\x00", "NOMINATION"),
    ],
)
def test_parse_stun_rejects_malformed_with_reason(data, reason):
    with pytest.raises(PacketParseError, match=reason) as info:
        parse_stun(data)
    assert info.value.kind == "stun"
    assert pickle.loads(pickle.dumps(info.value)).reason == info.value.reason


def test_parse_stun_rejects_attribute_after_fingerprint():
    data = build_binding_request("a:b", PWD, priority=1)
    extra = data + b"\x80\x22\x00\x00"  # SOFTWARE after FINGERPRINT
    extra = extra[:2] + struct.pack("!H", len(extra) - 20) + extra[4:]
    with pytest.raises(PacketParseError, match="FINGERPRINT"):
        parse_stun(extra)


def test_parse_stun_accepts_bytearray_and_memoryview():
    data = build_binding_request("a:b", PWD, priority=1)
    assert parse_stun(bytearray(data)).attributes["USERNAME"] == "a:b"
    assert parse_stun(memoryview(data)).attributes["USERNAME"] == "a:b"


# -- candidates ------------------------------------------------------------------------------------


def test_ice_candidates_mediasoup_shape_and_priorities():
    cands = ice_candidates(
        [
            {"protocol": "udp", "ip": "0.0.0.0", "announcedAddress": "203.0.113.7", "port": 40000},
            {"protocol": "tcp", "ip": "10.0.0.5", "announcedAddress": None, "port": 40001},
        ]
    )
    assert cands[0] == {
        "foundation": "udpcandidate",
        "priority": (64 << 24) + (10000 << 8) + 255,
        "ip": "203.0.113.7",
        "address": "203.0.113.7",
        "protocol": "udp",
        "port": 40000,
        "type": "host",
    }
    assert cands[1]["foundation"] == "tcpcandidate" and cands[1]["tcpType"] == "passive"
    assert cands[1]["address"] == "10.0.0.5" and cands[1]["ip"] == "10.0.0.5"
    assert cands[1]["priority"] == candidate_priority(9900)
    assert cands[0]["priority"] > cands[1]["priority"]


def test_ice_candidates_prefer_tcp_lifts_tcp_above_earlier_udp():
    listen = [
        {"protocol": "udp", "ip": "127.0.0.1", "port": 1},
        {"protocol": "tcp", "ip": "127.0.0.1", "port": 2},
    ]
    udp, tcp = ice_candidates(listen, prefer_tcp=True)
    assert tcp["priority"] == candidate_priority(10900) and tcp["priority"] > udp["priority"]
    udp, tcp = ice_candidates(listen, prefer_udp=True)
    assert udp["priority"] == candidate_priority(11000)


@pytest.mark.parametrize(
    "info, field",
    [
        ({"protocol": "sctp", "ip": "1.2.3.4", "port": 1}, "protocol"),
        ({"protocol": "udp", "ip": "1.2.3.4", "port": 0}, "port"),
        ({"protocol": "udp", "ip": "1.2.3.4", "port": "1"}, "port"),
    ],
)
def test_ice_candidates_validates_fields(info, field):
    with pytest.raises(ValueError, match=rf"listen\[0\]\.{field}"):
        ice_candidates([info])
