"""SrtpSession: protect/unprotect between two sessions with swapped keys, errors, DTLS keying."""

from __future__ import annotations

import base64
import os
import struct

import pytest

from raysfu.transport.dtls import DtlsCertificate, DtlsSession
from raysfu.transport.errors import PacketParseError
from raysfu.transport.srtp import (
    FAST_PATH_AVAILABLE,
    SEND_WINDOW_SIZE,
    SRTP_CRYPTO_SUITES,
    SrtpSession,
    generate_srtp_parameters,
)

SUITES = sorted(SRTP_CRYPTO_SUITES)
PATHS = [True, False] if FAST_PATH_AVAILABLE else [False]


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xab" * 200) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + payload


def rtcp_rr(ssrc: int = 0x55667788) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # empty receiver report


def pair(suite: str, fast: bool = True) -> tuple[SrtpSession, SrtpSession]:
    _profile, key_len, salt_len = SRTP_CRYPTO_SUITES[suite]
    a, b = os.urandom(key_len + salt_len), os.urandom(key_len + salt_len)
    return (SrtpSession(suite, a, b, use_fast_path=fast),
            SrtpSession(suite, b, a, use_fast_path=fast))


def test_expected_suites_are_available():
    assert {"AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"} <= set(SUITES)
    assert SRTP_CRYPTO_SUITES["AEAD_AES_256_GCM"][1:] == (32, 12)
    assert SRTP_CRYPTO_SUITES["AES_CM_128_HMAC_SHA1_80"][1:] == (16, 14)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("suite", SUITES)
def test_rtp_and_rtcp_round_trip(suite, fast):
    alice, bob = pair(suite, fast)
    assert alice.fast_path is fast
    for seq in (1, 2, 3, 65535, 0):  # across the 16-bit wrap
        packet = rtp(seq)
        protected = alice.protect_rtp(packet)
        assert protected != packet and len(protected) > len(packet)
        assert protected[:12] == packet[:12]  # the header stays in the clear
        assert bob.unprotect_rtp(protected) == packet
    # the other direction, and a bytearray input (per-consumer copies are bytearrays)
    back = bytearray(rtp(7, ssrc=0x99))
    assert alice.unprotect_rtp(bob.protect_rtp(back)) == bytes(back)
    for _ in range(3):
        report = rtcp_rr()
        protected = alice.protect_rtcp(report)
        assert protected != report
        assert bob.unprotect_rtcp(protected) == report


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("suite", SUITES)
def test_tampered_packet_raises(suite, fast):
    alice, bob = pair(suite, fast)
    protected = bytearray(alice.protect_rtp(rtp(10)))
    protected[20] ^= 0x01
    with pytest.raises(PacketParseError) as info:
        bob.unprotect_rtp(bytes(protected))
    assert info.value.kind == "srtp"
    assert "auth" in info.value.reason
    srtcp = bytearray(alice.protect_rtcp(rtcp_rr()))
    srtcp[-1] ^= 0x80
    with pytest.raises(PacketParseError):
        bob.unprotect_rtcp(bytes(srtcp))
    # wrong keys altogether
    other, _ = pair(suite, fast)
    with pytest.raises(PacketParseError):
        other.unprotect_rtp(alice.protect_rtp(rtp(11)))


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("suite", SUITES)
def test_replayed_packet_raises(suite, fast):
    alice, bob = pair(suite, fast)
    protected = alice.protect_rtp(rtp(100))
    bob.unprotect_rtp(protected)
    with pytest.raises(PacketParseError) as info:
        bob.unprotect_rtp(protected)
    assert "replay" in info.value.reason
    srtcp = alice.protect_rtcp(rtcp_rr())
    bob.unprotect_rtcp(srtcp)
    with pytest.raises(PacketParseError, match="replay"):
        bob.unprotect_rtcp(srtcp)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("suite", SUITES)
def test_same_rtp_packet_can_be_protected_twice(suite, fast):
    alice, bob = pair(suite, fast)
    packet = rtp(500)
    first = alice.protect_rtp(packet)
    alice.protect_rtp(rtp(501))
    again = alice.protect_rtp(packet)  # a NACK retransmission without RTX
    assert again == first
    assert bob.unprotect_rtp(again) == packet


@pytest.mark.parametrize("fast", PATHS)
def test_resend_without_rtx_reaches_back_the_send_window(fast):
    alice, bob = pair("AES_CM_128_HMAC_SHA1_80", fast)
    sent = [alice.protect_rtp(rtp(seq)) for seq in range(1000, 1000 + SEND_WINDOW_SIZE + 40)]
    newest = 1000 + SEND_WINDOW_SIZE + 39
    inside = newest - (SEND_WINDOW_SIZE - 1)
    assert alice.protect_rtp(rtp(inside)) == sent[inside - 1000]
    with pytest.raises(PacketParseError):  # libsrtp: replay_old, past the send window
        alice.protect_rtp(rtp(newest - SEND_WINDOW_SIZE - 10))
    assert bob.unprotect_rtp(alice.protect_rtp(rtp(newest + 1))) == rtp(newest + 1)  # still usable


def test_reordered_packets_inside_the_window_are_accepted():
    alice, bob = pair("AEAD_AES_128_GCM")
    protected = [alice.protect_rtp(rtp(seq)) for seq in range(1, 601)]
    bob.unprotect_rtp(protected[-1])
    assert bob.unprotect_rtp(protected[0]) == rtp(1)  # 599 packets late, window is 1024


@pytest.mark.parametrize("fast", PATHS)
def test_too_short_and_too_long_raise(fast):
    alice, bob = pair("AES_CM_128_HMAC_SHA1_80", fast)
    for method in (alice.protect_rtp, bob.unprotect_rtp, alice.protect_rtcp,
                   bob.unprotect_rtcp):
        with pytest.raises(PacketParseError, match="short"):
            method(b"\x80\x60\x00")
    with pytest.raises(PacketParseError, match="long"):
        alice.protect_rtp(rtp(1, payload=b"\x00" * 5000))
    with pytest.raises(PacketParseError):  # header only, no auth tag
        bob.unprotect_rtp(rtp(1, payload=b""))


def test_bad_arguments_raise_naming_the_field():
    key = os.urandom(30)
    with pytest.raises(ValueError, match="crypto_suite"):
        SrtpSession("NULL", key, key)
    with pytest.raises(ValueError, match="local_key"):
        SrtpSession("AES_CM_128_HMAC_SHA1_80", key[:16], key)
    with pytest.raises(ValueError, match="remote_key"):
        SrtpSession("AES_CM_128_HMAC_SHA1_80", key, key + b"x")
    with pytest.raises(TypeError, match="local_key"):
        SrtpSession("AES_CM_128_HMAC_SHA1_80", "x" * 30, key)
    with pytest.raises(ValueError, match="replay_window_size"):
        SrtpSession("AES_CM_128_HMAC_SHA1_80", key, key, replay_window_size=10)
    with pytest.raises(ValueError, match="key_base64_remote"):
        SrtpSession.from_base64("AES_CM_128_HMAC_SHA1_80", base64.b64encode(key).decode(), "!!")
    with pytest.raises(ValueError, match="crypto_suite"):
        generate_srtp_parameters("AES_256_CM")


@pytest.mark.parametrize("suite", SUITES)
def test_generated_srtp_parameters_key_a_working_pair(suite):
    ours, theirs = generate_srtp_parameters(suite), generate_srtp_parameters(suite)
    _profile, key_len, salt_len = SRTP_CRYPTO_SUITES[suite]
    assert ours["cryptoSuite"] == suite
    assert len(base64.b64decode(ours["keyBase64"])) == key_len + salt_len
    assert ours["keyBase64"] != theirs["keyBase64"]
    local = SrtpSession.from_base64(suite, ours["keyBase64"], theirs["keyBase64"])
    remote = SrtpSession.from_base64(suite, theirs["keyBase64"], ours["keyBase64"])
    assert remote.unprotect_rtp(local.protect_rtp(rtp(9))) == rtp(9)


@pytest.mark.parametrize("suite", ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM",
                                   "AES_CM_128_HMAC_SHA1_80"])
def test_keys_from_a_dtls_handshake_give_working_srtp(suite):
    client_cert, server_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    client = DtlsSession(client_cert, role="client", remote_fingerprints=server_cert.fingerprints,
                         srtp_crypto_suites=[suite])
    server = DtlsSession(server_cert, role="server", remote_fingerprints=client_cert.fingerprints)
    server.start(0)
    client.start(0)
    for _ in range(6):
        for src, dst in ((client, server), (server, client)):
            for datagram in src.datagrams_to_send():
                dst.receive(datagram, 0)
    assert client.state == server.state == "connected"
    assert client.srtp_crypto_suite == server.srtp_crypto_suite == suite
    at_client = SrtpSession(suite, *client.srtp_keys())
    at_server = SrtpSession(suite, *server.srtp_keys())
    assert at_server.unprotect_rtp(at_client.protect_rtp(rtp(1))) == rtp(1)
    assert at_client.unprotect_rtp(at_server.protect_rtp(rtp(2))) == rtp(2)
    assert at_client.unprotect_rtcp(at_server.protect_rtcp(rtcp_rr())) == rtcp_rr()
    assert at_server.unprotect_rtcp(at_client.protect_rtcp(rtcp_rr(7))) == rtcp_rr(7)
