"""DtlsSession / DtlsCertificate: two sessions wired through in-memory lists, fake clock."""

from __future__ import annotations

import pickle
import re
import time

import pytest

from raysfu.transport.dtls import (
    DTLS_ROLE_FOR_REMOTE,
    MAX_RETRANSMISSIONS,
    DtlsCertificate,
    DtlsSession,
)
from raysfu.transport.errors import InvalidStateError

SUITES = ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"]
KEY_SALT_BYTES = {"AEAD_AES_256_GCM": 44, "AEAD_AES_128_GCM": 28, "AES_CM_128_HMAC_SHA1_80": 30}


@pytest.fixture(scope="module")
def certs() -> tuple[DtlsCertificate, DtlsCertificate]:
    return DtlsCertificate.generate(), DtlsCertificate.generate()


def make_pair(certs, *, client_suites=None, server_suites=None, client_expects=None,
              server_expects=None, mtu=1350):
    client_cert, server_cert = certs
    client = DtlsSession(client_cert, role="client",
                         remote_fingerprints=client_expects or server_cert.fingerprints,
                         srtp_crypto_suites=client_suites, mtu=mtu)
    server = DtlsSession(server_cert, role="server",
                         remote_fingerprints=server_expects or client_cert.fingerprints,
                         srtp_crypto_suites=server_suites, mtu=mtu)
    return client, server


def exchange(a: DtlsSession, b: DtlsSession, now_ms: int, rounds: int = 10) -> int:
    """Deliver datagrams both ways until neither side has anything to send; returns the count."""
    delivered = 0
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for datagram in src.datagrams_to_send():
                dst.receive(datagram, now_ms)
                delivered += 1
                moved = True
        if not moved:
            break
    return delivered


def connect(certs, **kwargs) -> tuple[DtlsSession, DtlsSession]:
    client, server = make_pair(certs, **kwargs)
    server.start(0)
    client.start(0)
    exchange(client, server, 0)
    assert client.state == server.state == "connected", (client.failure_reason,
                                                         server.failure_reason)
    return client, server


@pytest.mark.parametrize("suite", SUITES)
def test_handshake_connects_and_srtp_keys_match_crosswise(certs, suite):
    client, server = connect(certs, client_suites=[suite], server_suites=SUITES)
    assert client.srtp_crypto_suite == server.srtp_crypto_suite == suite
    c_local, c_remote = client.srtp_keys()
    s_local, s_remote = server.srtp_keys()
    assert c_local == s_remote and c_remote == s_local
    assert c_local != c_remote
    assert len(c_local) == len(c_remote) == KEY_SALT_BYTES[suite]
    assert client.next_timer_ms() is None and server.next_timer_ms() is None


def test_default_suites_prefer_aes_256_gcm(certs):
    client, server = connect(certs)
    assert client.srtp_crypto_suite == "AEAD_AES_256_GCM"


def test_server_preference_wins(certs):
    client, server = connect(certs, client_suites=SUITES,
                             server_suites=["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"])
    assert client.srtp_crypto_suite == server.srtp_crypto_suite == "AES_CM_128_HMAC_SHA1_80"


def test_no_common_srtp_suite_fails(certs):
    client, server = make_pair(certs, client_suites=["AEAD_AES_128_GCM"],
                               server_suites=["AES_CM_128_HMAC_SHA1_80"])
    server.start(0)
    client.start(0)
    exchange(client, server, 0)
    assert client.state == "failed" and client.failure_reason
    assert client.stats["handshake_failures"] == 1
    with pytest.raises(InvalidStateError):
        client.srtp_keys()


def test_state_events_and_remote_certificate(certs):
    client, server = connect(certs)
    assert client.drain_events() == [("state", "connecting"), ("state", "connected")]
    assert server.next_event() == ("state", "connecting")
    assert server.next_event() == ("state", "connected")
    assert server.next_event() is None
    client_cert, server_cert = certs
    assert client.remote_certificate_pem.encode() == server_cert.cert_pem
    assert server.remote_certificate_pem.encode() == client_cert.cert_pem


def test_application_data_round_trip(certs):
    client, server = connect(certs)
    client.drain_events(), server.drain_events()
    client.send_application_data(b"hello sctp")
    server.send_application_data(b"x" * 1100)
    exchange(client, server, 5)
    assert server.drain_events() == [("application_data", b"hello sctp")]
    assert client.drain_events() == [("application_data", b"x" * 1100)]
    assert client.stats["application_data_received"] == 1


def test_send_before_connected_raises(certs):
    client, _server = make_pair(certs)
    with pytest.raises(InvalidStateError):
        client.send_application_data(b"x")
    client.start(0)
    with pytest.raises(InvalidStateError):
        client.start(0)


@pytest.mark.parametrize("checker", ["client", "server"])
def test_wrong_fingerprint_fails_the_checking_side(certs, checker):
    bogus = [{"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}]
    kwargs = {"client_expects": bogus} if checker == "client" else {"server_expects": bogus}
    client, server = make_pair(certs, **kwargs)
    server.start(0)
    client.start(0)
    exchange(client, server, 0)
    checking = client if checker == "client" else server
    other = server if checker == "client" else client
    assert checking.state == "failed"
    assert "fingerprint" in checking.failure_reason
    assert checking.stats["handshake_failures"] == 1
    assert other.state != "connected"  # the peer got a fatal alert, never connected
    with pytest.raises(InvalidStateError):
        checking.srtp_keys()


def test_any_matching_supported_fingerprint_is_accepted_case_insensitive(certs):
    _client_cert, server_cert = certs
    sha384 = next(f for f in server_cert.fingerprints if f["algorithm"] == "sha-384")
    expects = [
        {"algorithm": "md5", "value": "00"},  # unknown algorithm: ignored
        {"algorithm": "sha-256", "value": ":".join(["00"] * 32)},  # other certificate
        {"algorithm": "SHA-384", "value": sha384["value"].lower()},
    ]
    client, server = connect(certs, client_expects=expects)
    assert client.state == "connected"


def record(content_type: int, body: bytes, epoch: int = 0) -> bytes:
    return (bytes([content_type, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + bytes(6)
            + len(body).to_bytes(2, "big") + body)


GARBAGE = [
    b"",
    b"\x00",
    b"\x16\xfe\xfd",  # truncated header
    b"\x80" * 40,  # RTP-looking
    bytes(range(256)),
    record(22, b"short")[:-2],  # length runs past the datagram
    record(22, b"junk!"),  # epoch-0 handshake record whose fragment framing is wrong
    record(23, b"data"),  # application_data in epoch 0
    record(24, b"\x01\x00"),  # heartbeat
    record(20, b"\x07"),  # bad change_cipher_spec
]


def test_garbage_datagrams_are_counted_and_do_not_raise(certs):
    client, server = make_pair(certs)
    server.start(0)
    client.start(0)
    for junk in GARBAGE:
        server.receive(junk, 0)
        client.receive(junk, 0)
    for side in (client, server):
        assert side.stats["datagrams_received"] == len(GARBAGE)
        assert side.stats["datagrams_dropped"] == len(GARBAGE)
        assert side.stats["records_dropped"] == len(GARBAGE) - 1  # b"" holds no record
        assert side.stats["records_received"] == 0
        assert side.state == "connecting"
    # a good record next to a bad one in one datagram: the bad one alone is dropped
    hello = client.datagrams_to_send()
    assert len(hello) == 1
    server.receive(record(23, b"junk") + hello[0], 0)
    assert server.stats["records_dropped"] == len(GARBAGE)
    assert server.stats["records_received"] == 1
    # encrypted-epoch records full of garbage go to OpenSSL, which drops them silently
    server.receive(record(22, b"\x00" * 40, epoch=1), 0)
    exchange(client, server, 0)
    assert client.state == server.state == "connected"
    # garbage while connected: counted, no exception, still connected
    client.receive(record(23, b"\x00" * 40, epoch=1), 1)
    client.receive(b"\xff\xff", 1)
    assert client.state == server.state == "connected"
    assert client.stats["datagrams_dropped"] == len(GARBAGE) + 1


def test_fatal_alert_during_handshake_fails_without_raising(certs):
    client, server = make_pair(certs)
    server.start(0)
    client.start(0)
    server.receive(record(21, b"\x02\x28"), 0)  # fatal handshake_failure alert
    assert server.state == "failed"
    assert "alert" in server.failure_reason
    assert server.stats["handshake_failures"] == 1
    assert server.next_timer_ms() is None
    server.receive(client.datagrams_to_send()[0], 0)  # ignored from now on
    assert server.stats["datagrams_dropped"] == 1


def test_lost_server_flight_is_retransmitted_after_timer(certs):
    client, server = make_pair(certs)
    server.start(0)
    client.start(0)
    assert server.next_timer_ms() is None  # the server waits for the ClientHello
    timer = client.next_timer_ms()
    assert timer is not None and 900 <= timer <= 1100
    for d in client.datagrams_to_send():
        server.receive(d, 10)
    lost = server.datagrams_to_send()
    assert lost and all(len(d) <= 1350 for d in lost)  # the server's first flight: dropped
    client.handle_timer(timer - 1)  # not due yet
    assert client.datagrams_to_send() == []
    now = max(client.next_timer_ms(), server.next_timer_ms())
    client.handle_timer(now)
    server.handle_timer(now)
    assert client.stats["retransmissions"] == 1 and server.stats["retransmissions"] == 1
    retransmitted = server.datagrams_to_send()
    assert retransmitted
    # exponential back-off: the next timer is about twice as far away
    assert server.next_timer_ms() - now >= 1900
    for d in retransmitted:
        client.receive(d, now)
    exchange(client, server, now)
    assert client.state == server.state == "connected"
    assert client.next_timer_ms() is None and server.next_timer_ms() is None


def test_openssl_retransmits_with_fresh_records_when_its_clock_agrees(certs):
    # With a real clock (as in the actor), OpenSSL itself retransmits: new record sequence
    # numbers, not a byte-for-byte copy. One real second of sleep.
    client, server = make_pair(certs)
    server.start(0)
    client.start(0)
    lost = client.datagrams_to_send()
    time.sleep(1.05)
    timer = client.next_timer_ms()
    client.handle_timer(timer)
    again = client.datagrams_to_send()
    assert again and again != lost
    assert client.stats["retransmissions"] == 1
    assert client.next_timer_ms() - timer >= 1900
    for d in again:
        server.receive(d, timer)
    exchange(client, server, timer)
    assert client.state == server.state == "connected"


def test_handshake_times_out_when_nothing_answers(certs):
    client, _server = make_pair(certs)
    client.start(0)
    client.datagrams_to_send()
    now = 0
    for _ in range(MAX_RETRANSMISSIONS + 2):
        timer = client.next_timer_ms()
        if timer is None:
            break
        now = timer
        client.handle_timer(now)
        client.datagrams_to_send()
    assert client.state == "failed"
    assert "timeout" in client.failure_reason
    assert client.next_timer_ms() is None


def test_close_notify_closes_the_peer(certs):
    client, server = connect(certs)
    client.drain_events(), server.drain_events()
    client.close()
    assert client.state == "closed"
    assert client.drain_events() == [("state", "closed")]
    exchange(client, server, 1)
    assert server.state == "closed"
    assert server.drain_events() == [("state", "closed")]
    client.close()  # idempotent
    assert client.drain_events() == []
    server.receive(b"\x17\xfe\xfd" + b"\x00" * 10, 2)  # after close: dropped, no raise
    assert server.stats["datagrams_dropped"] == 1


def test_client_hello_before_start_is_kept(certs):
    client, server = make_pair(certs)
    client.start(0)
    for d in client.datagrams_to_send():
        server.receive(d, 0)  # server still "new"
    assert server.state == "new"
    server.start(1)
    exchange(client, server, 1)
    assert client.state == server.state == "connected"


def test_small_mtu_splits_flights_into_datagrams(certs):
    client, server = make_pair(certs, mtu=300)
    server.start(0)
    client.start(0)
    sizes = []
    for _ in range(6):
        for src, dst in ((client, server), (server, client)):
            for d in src.datagrams_to_send():
                sizes.append(len(d))
                dst.receive(d, 0)
    assert client.state == server.state == "connected"
    assert max(sizes) <= 300 and len(sizes) > 4


def test_fingerprints_format(certs):
    fps = certs[0].fingerprints
    assert [f["algorithm"] for f in fps] == ["sha-1", "sha-224", "sha-256", "sha-384", "sha-512"]
    for f, nbytes in zip(fps, (20, 28, 32, 48, 64)):
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2})*", f["value"])
        assert len(f["value"].split(":")) == nbytes
    assert certs[0].fingerprints != certs[1].fingerprints


def test_certificate_from_pem_and_pickle(certs):
    cert = certs[0]
    again = DtlsCertificate.from_pem(cert.cert_pem, cert.key_pem)
    assert again.fingerprints == cert.fingerprints
    assert pickle.loads(pickle.dumps(cert)).fingerprints == cert.fingerprints
    with pytest.raises(ValueError, match="key"):
        DtlsCertificate.from_pem(cert.cert_pem, certs[1].key_pem)
    with pytest.raises(ValueError, match="cert_pem"):
        DtlsCertificate.from_pem(b"not pem", cert.key_pem)
    # a session built from the reloaded certificate still connects
    client, server = connect((again, certs[1]))
    assert client.state == "connected"


def test_bad_arguments_raise_naming_the_field(certs):
    cert = certs[0]
    fps = certs[1].fingerprints
    with pytest.raises(ValueError, match="role"):
        DtlsSession(cert, role="auto", remote_fingerprints=fps)
    with pytest.raises(ValueError, match="remote_fingerprints"):
        DtlsSession(cert, role="client", remote_fingerprints=[{"algorithm": "md5",
                                                               "value": "00"}])
    with pytest.raises(TypeError, match="remote_fingerprints"):
        DtlsSession(cert, role="client", remote_fingerprints=[{"algorithm": "sha-256"}])
    with pytest.raises(ValueError, match="srtp_crypto_suites"):
        DtlsSession(cert, role="client", remote_fingerprints=fps, srtp_crypto_suites=["NULL"])
    with pytest.raises(ValueError, match="mtu"):
        DtlsSession(cert, role="client", remote_fingerprints=fps, mtu=10)
    with pytest.raises(TypeError, match="certificate"):
        DtlsSession(None, role="client", remote_fingerprints=fps)


def test_role_for_remote():
    assert DTLS_ROLE_FOR_REMOTE == {"client": "server", "server": "client", "auto": "client"}
