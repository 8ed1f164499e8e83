"""RTP and RTCP through a WorkerActor on real UDP sockets: raysfu's ClientPeer publishes, another
ClientPeer consumes; packets are checked byte by byte after SRTP."""

from __future__ import annotations

import asyncio
import copy


from raysfu.transport import rtcp
from raysfu.transport.rtp import build_rtp, find_extension, parse_rtp_header

from .conftest import OPUS_PRODUCER_PARAMS, VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for

VP8_KEY = b"\x10" + b"\x00\x9d\x01\x2a" + bytes(100)  # descriptor S=1, PID 0; payload header P=0
VP8_DELTA = b"\x10" + b"\x01" + bytes(100)  # P=1: inter frame


def vp8(seq: int, ts: int, *, key: bool = False, ssrc: int = 11111111, mid: bytes = b"0") -> bytes:
    return build_rtp(96, seq & 0xFFFF, ts, ssrc, VP8_KEY if key else VP8_DELTA, marker=True, extensions=[(4, mid), (3, b"\x00\x01")])


async def publish_and_subscribe(router, *, producer_params=VP8_PRODUCER_PARAMS, kind="video", paused=False):
    t_pub = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    t_sub = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    pub = await connect_peer(t_pub)
    sub = await connect_peer(t_sub)
    producer = await t_pub.produce(kind=kind, rtp_parameters=copy.deepcopy(producer_params))
    consumer = await t_sub.consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities), paused=paused)
    return t_pub, t_sub, pub, sub, producer, consumer


async def test_video_is_forwarded_with_rewritten_ssrc_seq_and_mid(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    assert await wait_for(lambda: t_pub.dtls_state == "connected" and t_sub.dtls_state == "connected")
    assert t_pub.ice_state == "completed"
    start = 65500  # crosses the 16-bit wrap
    for i in range(100):
        pub.send_rtp(vp8(start + i, 1000 + 3000 * i, key=(i == 0)))
        if i % 10 == 0:
            await asyncio.sleep(0.005)
    assert await wait_for(lambda: len(sub.received_rtp) >= 100)
    params = consumer.rtp_parameters
    ssrc = params["encodings"][0]["ssrc"]
    pt = params["codecs"][0]["payloadType"]
    mid_id = next(e["id"] for e in params["headerExtensions"] if e["uri"].endswith("sdes:mid"))
    seqs = []
    for pkt in sub.received_rtp:
        hdr = parse_rtp_header(pkt)
        assert hdr[4] == ssrc and hdr[0] == pt
        off, n = find_extension(pkt, hdr[6], hdr[7], hdr[8], mid_id)
        assert pkt[off : off + n] == params["mid"].encode()
        seqs.append(hdr[2])
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:])), "output sequence has gaps"
    first = parse_rtp_header(sub.received_rtp[0])
    assert sub.received_rtp[0][first[5] : first[9]] == VP8_KEY
    stats = await consumer.get_stats()
    assert stats[0]["type"] == "outbound-rtp" and stats[0]["packetCount"] == 100
    assert stats[1]["type"] == "inbound-rtp" and stats[1]["packetCount"] == 100
    tstats = await t_sub.get_stats()
    assert tstats[0]["type"] == "webrtc-transport" and tstats[0]["dtlsState"] == "connected"
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_video_waits_for_keyframe_and_requests_one(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    for i in range(5):
        pub.send_rtp(vp8(100 + i, 3000 * i))
    # The consumer is new: it asked the producer for a keyframe (PLI) and drops deltas.
    assert await wait_for(lambda: any(item[0] == "pli" for pkt in pub.received_rtcp for item in rtcp.parse_rtcp(pkt)))
    await asyncio.sleep(0.1)
    assert sub.received_rtp == []
    pub.send_rtp(vp8(105, 15000, key=True))
    assert await wait_for(lambda: len(sub.received_rtp) == 1)
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_nack_from_consumer_is_answered_with_rtx(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    for i in range(10):
        pub.send_rtp(vp8(i, 3000 * i, key=(i == 0)))
    assert await wait_for(lambda: len(sub.received_rtp) == 10)
    lost = parse_rtp_header(sub.received_rtp[4])
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    rtx_ssrc = consumer.rtp_parameters["encodings"][0]["rtx"]["ssrc"]
    rtx_pt = consumer.rtp_parameters["codecs"][1]["payloadType"]
    sub.send_rtcp(rtcp.build_nack(1, ssrc, [lost[2]]))
    assert await wait_for(lambda: len(sub.received_rtp) == 11)
    rtx = sub.received_rtp[10]
    hdr = parse_rtp_header(rtx)
    assert hdr[4] == rtx_ssrc and hdr[0] == rtx_pt
    assert int.from_bytes(rtx[hdr[5] : hdr[5] + 2], "big") == lost[2]  # OSN (RFC 4588 §4)
    assert rtx[hdr[5] + 2 : hdr[9]] == sub.received_rtp[4][lost[5] : lost[9]]
    stats = await consumer.get_stats()
    assert stats[0]["nackCount"] == 1 and stats[0]["packetsRetransmitted"] == 1
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_gap_from_producer_triggers_nack_and_rtx_repairs(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    pub.send_rtp(vp8(1000, 0, key=True))
    pub.send_rtp(vp8(1001, 3000))
    pub.send_rtp(vp8(1003, 9000))  # 1002 lost on the uplink

    def nacked():
        for pkt in pub.received_rtcp:
            for item in rtcp.parse_rtcp(pkt):
                if item[0] == "nack" and item[2] == 11111111 and 1002 in item[3]:
                    return True
        return False

    assert await wait_for(nacked, 2.0)
    # The publisher repairs it with RTX (ssrc 11111112, pt 97, OSN 1002).
    original = vp8(1002, 6000)
    hdr = parse_rtp_header(original)
    rtx = build_rtp(97, 1, 6000, 11111112, (1002).to_bytes(2, "big") + original[hdr[5] :], marker=True, extensions=[(4, b"0")])
    pub.send_rtp(rtx)
    assert await wait_for(lambda: len(sub.received_rtp) == 4)
    stats = await producer.get_stats()
    assert stats[0]["nackCount"] >= 1 and stats[0]["packetsRepaired"] == 1
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_pli_from_consumer_reaches_producer_at_most_once_per_second(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    pub.send_rtp(vp8(1, 0, key=True))
    assert await wait_for(lambda: len(sub.received_rtp) == 1)
    await asyncio.sleep(1.1)  # let the consumer's own start-up PLI age out
    pub.received_rtcp.clear()
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    for _ in range(5):
        sub.send_rtcp(rtcp.build_pli(1, ssrc))
    await asyncio.sleep(0.3)
    plis = [item for pkt in pub.received_rtcp for item in rtcp.parse_rtcp(pkt) if item[0] == "pli"]
    assert len(plis) == 1 and plis[0][2] == 11111111
    stats = await consumer.get_stats()
    assert stats[0]["pliCount"] == 5
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_sender_and_receiver_reports(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router, producer_params=OPUS_PRODUCER_PARAMS, kind="audio")
    for i in range(60):
        pub.send_rtp(build_rtp(111, i, 960 * i, 22222222, b"\xfc" + bytes(60), extensions=[(4, b"1"), (1, b"\x90")]))
        await asyncio.sleep(0.02)
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]

    def sr_seen():
        return [i for p in sub.received_rtcp for i in rtcp.parse_rtcp(p) if i[0] == "sr" and i[1] == ssrc]

    def rr_seen():
        return [b for p in pub.received_rtcp for i in rtcp.parse_rtcp(p) if i[0] == "rr" for b in i[2] if b[0] == 22222222]

    srs = await wait_for(sr_seen, 3.5)
    assert srs, "no SR with packet count 60"
    cnames = [c for p in sub.received_rtcp for i in rtcp.parse_rtcp(p) if i[0] == "sdes" for s, c in i[1] if s == ssrc]
    assert cnames and cnames[0] == consumer.rtp_parameters["rtcp"]["cname"]
    rrs = await wait_for(rr_seen, 3.5)
    assert rrs and rrs[-1][1] == 0  # nothing lost
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_pause_resume_keeps_sequence_continuous(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    seq = 0
    for _ in range(5):
        pub.send_rtp(vp8(seq, seq * 3000, key=(seq == 0)))
        seq += 1
    assert await wait_for(lambda: len(sub.received_rtp) == 5)
    await consumer.pause()
    for _ in range(5):
        pub.send_rtp(vp8(seq, seq * 3000))
        seq += 1
    await asyncio.sleep(0.1)
    assert len(sub.received_rtp) == 5
    await consumer.resume()
    pub.send_rtp(vp8(seq, seq * 3000, key=True))
    seq += 1
    pub.send_rtp(vp8(seq, seq * 3000))
    assert await wait_for(lambda: len(sub.received_rtp) == 7)
    seqs = [parse_rtp_header(p)[2] for p in sub.received_rtp]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    # producer pause: consumer gets producerpause / producerresume
    events = []
    consumer.on("producerpause", lambda: events.append("pause"))
    consumer.on("producerresume", lambda: events.append("resume"))
    await producer.pause()
    assert await wait_for(lambda: consumer.producer_paused)
    await producer.resume()
    assert await wait_for(lambda: events == ["pause", "resume"])
    assert not consumer.producer_paused
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


async def test_ssrc_learned_from_mid_extension(router):
    params = copy.deepcopy(VP8_PRODUCER_PARAMS)
    params["encodings"] = [{}]  # no ssrc signalled: found through the mid extension
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router, producer_params=params)
    pub.send_rtp(vp8(7, 0, key=True, ssrc=0x5EED))
    pub.send_rtp(vp8(8, 3000, ssrc=0x5EED))
    assert await wait_for(lambda: len(sub.received_rtp) == 2)
    dump = await t_pub.dump()
    assert {"key": 0x5EED, "value": producer.id} in dump["rtpListener"]["ssrcTable"]
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()
