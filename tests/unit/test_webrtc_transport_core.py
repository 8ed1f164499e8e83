"""WebRtcTransportCore with a fake clock and no sockets: ICE-lite, DTLS (server role, as with
mediasoup-client), SRTP both ways, early DTLS buffering, consent expiry, drops by reason."""

from __future__ import annotations

import pytest

from raysfu.transport.dtls import DtlsCertificate, DtlsSession
from raysfu.transport.errors import InvalidStateError
from raysfu.transport.rtp import build_rtp
from raysfu.transport.srtp import SrtpSession
from raysfu.transport.stun import build_binding_request
from raysfu.transport.webrtc_transport import NONE, RTCP, RTP, WebRtcTransportCore

REMOTE = ("192.0.2.10", 50000)
CERT = DtlsCertificate.generate()
CLIENT_CERT = DtlsCertificate.generate()


def stun_check(core, now, *, use_candidate=True, remote=REMOTE):
    req = build_binding_request(f"{core.ice_parameters['usernameFragment']}:peer", core.ice_parameters["password"], priority=100, use_candidate=use_candidate)
    assert core.receive_datagram(req, remote, now) == (NONE, None)
    return core.datagrams_to_send()


def handshake(core, client, now):
    for _ in range(20):
        moved = False
        for d in client.datagrams_to_send():
            core.receive_datagram(d, REMOTE, now)
            moved = True
        for d, remote in core.datagrams_to_send():
            assert remote == REMOTE
            client.receive(d, now)
            moved = True
        if not moved:
            break


def connected_pair(now=1000):
    core = WebRtcTransportCore(CERT)
    out = stun_check(core, now)
    assert len(out) == 1 and out[0][1] == REMOTE
    assert core.ice_state == "completed" and core.selected_tuple == REMOTE
    assert core.connect({"role": "client", "fingerprints": CLIENT_CERT.fingerprints}, now) == "server"
    client = DtlsSession(CLIENT_CERT, role="client", remote_fingerprints=CERT.fingerprints)
    client.start(now)
    handshake(core, client, now)
    assert client.state == "connected" and core.dtls_state == "connected" and core.connected
    local, remote = client.srtp_keys()
    return core, SrtpSession(client.srtp_crypto_suite, local, remote)


def test_full_connection_and_srtp_both_ways():
    core, client_srtp = connected_pair()
    events = [e for e in core.drain_events()]
    assert ("icestatechange", "completed") in events and ("dtlsstatechange", "connected") in events
    rtp = build_rtp(96, 1, 2, 3, b"hello")
    assert core.receive_datagram(client_srtp.protect_rtp(rtp), REMOTE, 1001) == (RTP, rtp)
    rtcp_pkt = bytes([0x80, 201, 0, 1]) + (5).to_bytes(4, "big")  # empty RR
    kind, plain = core.receive_datagram(client_srtp.protect_rtcp(rtcp_pkt), REMOTE, 1001)
    assert kind == RTCP and plain == rtcp_pkt
    assert client_srtp.unprotect_rtp(core.protect_rtp(rtp)) == rtp


def test_dtls_before_connect_is_kept_and_used():
    now = 0
    core = WebRtcTransportCore(CERT)
    stun_check(core, now)
    client = DtlsSession(CLIENT_CERT, role="client", remote_fingerprints=CERT.fingerprints)
    client.start(now)
    for d in client.datagrams_to_send():  # ClientHello arrives before connect()
        core.receive_datagram(d, REMOTE, now)
    core.connect({"role": "client", "fingerprints": CLIENT_CERT.fingerprints}, now)
    handshake(core, client, now)
    assert core.dtls_state == "connected"


def test_media_from_unvalidated_tuple_and_before_dtls_is_dropped():
    core, client_srtp = connected_pair()
    rtp = client_srtp.protect_rtp(build_rtp(96, 2, 2, 3, b"x"))
    assert core.receive_datagram(rtp, ("198.51.100.1", 1), 2000) == (NONE, None)
    assert core.drops["rtp_unvalidated_tuple"] == 1
    fresh = WebRtcTransportCore(CERT)
    stun_check(fresh, 0)
    assert fresh.receive_datagram(rtp, REMOTE, 1) == (NONE, None)
    assert fresh.drops["rtp_before_dtls"] == 1
    assert core.receive_datagram(b"\xff" * 20, REMOTE, 2000) == (NONE, None)
    assert core.receive_datagram(b"", REMOTE, 2000) == (NONE, None)
    assert core.drops["unknown_first_byte"] == 1 and core.drops["empty"] == 1
    assert core.receive_datagram(rtp[:-3] + b"\x00\x00\x00", REMOTE, 2000) == (NONE, None)
    assert core.drops["srtp_unprotect_failed"] == 1


def test_consent_expiry_disconnects_after_30s():
    core, _ = connected_pair(now=0)
    core.drain_events()
    core.handle_timer(29_999)
    assert core.ice_state == "completed"
    core.handle_timer(30_001)
    assert core.ice_state == "disconnected"
    assert ("icestatechange", "disconnected") in core.drain_events()
    assert not core.connected


def test_connect_twice_and_bad_parameters():
    core = WebRtcTransportCore(CERT)
    with pytest.raises(TypeError, match="fingerprints"):
        core.connect({"role": "client"}, 0)
    with pytest.raises(TypeError, match="algorithm"):
        core.connect({"fingerprints": [{"algorithm": "md5", "value": "AA"}]}, 0)
    assert core.connect({"role": "server", "fingerprints": CLIENT_CERT.fingerprints}, 0) == "client"
    with pytest.raises(InvalidStateError):
        core.connect({"role": "server", "fingerprints": CLIENT_CERT.fingerprints}, 0)


def test_restart_ice_changes_credentials():
    core, _ = connected_pair()
    old = dict(core.ice_parameters)
    new = core.restart_ice()
    assert new["usernameFragment"] != old["usernameFragment"] and new["password"] != old["password"]
    core.close()
    assert core.dtls_state == "closed"
    with pytest.raises(InvalidStateError):
        core.restart_ice()
