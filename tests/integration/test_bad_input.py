"""Bad input on the wire: garbage of every first-byte class, STUN with wrong credentials, a DTLS
peer whose certificate does not match the signalled fingerprint. Each is dropped and counted,
and a good peer on the same worker keeps flowing."""

from __future__ import annotations

import asyncio
import copy
import random
import socket

import pytest

from raysfu.actors.client_peer import ClientPeer
from raysfu.transport.dtls import DtlsCertificate
from raysfu.transport.rtp import build_rtp, parse_rtp_header
from raysfu.transport.stun import build_binding_request

from .conftest import VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for
from .test_forwarding import vp8

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


async def test_garbage_is_dropped_counted_and_good_peer_keeps_flowing(router):
    t_pub = await router.create_webrtc_transport(listen_infos=LISTEN)
    t_sub = await router.create_webrtc_transport(listen_infos=LISTEN)
    pub = await connect_peer(t_pub)
    sub = await connect_peer(t_sub)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    await t_sub.consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities))
    seq = 0
    pub.send_rtp(vp8(seq, 0, key=True))
    assert await wait_for(lambda: len(sub.received_rtp) == 1)

    rng = random.Random(7)
    port = t_pub.ice_candidates[0]["port"]
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    # every first-byte class of RFC 7983 plus the unknown ranges, from a stranger and from the
    # good peer's own address (validated tuple)
    for first in list(range(0, 256, 3)) + [0, 1, 20, 22, 63, 128, 191, 200, 255]:
        for length in (1, 2, 11, 12, 40, 300):
            data = bytes([first]) + bytes(rng.getrandbits(8) for _ in range(length - 1))
            attacker.sendto(data, ("127.0.0.1", port))
            pub.send_raw(data)
            sent += 2
        if first % 30 == 0:
            seq += 1
            pub.send_rtp(vp8(seq, seq * 3000))
            await asyncio.sleep(0.002)
    # a well-formed RTP packet that is not SRTP-protected, and SRTP with garbage authentication
    pub.send_raw(build_rtp(96, 999, 0, 11111111, bytes(50)))
    # (the seq already sent: the client's send window refuses one far ahead and then back)
    pub.send_raw(pub.srtp.protect_rtp(vp8(seq, 0))[:-4] + b"\x00\x00\x00\x00")
    # STUN with wrong credentials: wrong password, wrong ufrag
    attacker.sendto(build_binding_request(f"{t_pub.ice_parameters['usernameFragment']}:x", "wrong-password-wrong-password!", priority=1), ("127.0.0.1", port))
    attacker.sendto(build_binding_request("nobody:x", t_pub.ice_parameters["password"], priority=1), ("127.0.0.1", port))
    attacker.close()
    for _ in range(20):
        seq += 1
        pub.send_rtp(vp8(seq, seq * 3000))
    assert await wait_for(lambda: len(sub.received_rtp) == seq + 1, 5.0), f"{len(sub.received_rtp)} of {seq + 1}"
    seqs = [parse_rtp_header(p)[2] for p in sub.received_rtp]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    dump = await t_pub.dump()
    drops = dump["droppedPackets"]
    assert drops.get("unknown_first_byte", 0) > 0
    assert drops.get("rtp_unvalidated_tuple", 0) > 0  # the stranger's RTP-class bytes
    assert drops.get("srtp_unprotect_failed", 0) > 0
    assert drops.get("dtls_unvalidated_tuple", 0) > 0
    assert t_pub.dtls_state == "connected" and t_pub.ice_state in ("connected", "completed")
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_dtls_fingerprint_mismatch_ends_failed(router):
    t = await router.create_webrtc_transport(listen_infos=LISTEN)
    states = []
    t.on("dtlsstatechange", states.append)
    peer = ClientPeer()
    await peer.open()
    other = DtlsCertificate.generate()  # not the certificate the peer will present
    await t.connect(dtls_parameters={"role": "client", "fingerprints": other.fingerprints})
    with pytest.raises((TimeoutError, ConnectionError)):
        await peer.connect(t.ice_parameters, t.ice_candidates, t.dtls_parameters, timeout_s=4.0)
    assert await wait_for(lambda: t.dtls_state == "failed", 5.0)
    assert states[-1] == "failed"
    peer.close()
    t.close()
