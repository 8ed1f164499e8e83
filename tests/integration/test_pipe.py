"""PipeTransport and pipe_to_router between routers in two WorkerActors (two processes, real UDP
on 127.0.0.1): every packet crosses with its SSRC rewritten, SRTP on the pipe works, PLI goes
back across, pause/close follow, and the pair is created once per router pair."""

from __future__ import annotations

import asyncio
import copy

import pytest

from raysfu.actors import create_worker
from raysfu.transport import rtcp
from raysfu.transport.rtp import parse_rtp_header

from .conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for
from .test_forwarding import vp8

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


@pytest.fixture(scope="module")
async def two_workers(ray_session):
    a = await create_worker()
    b = await create_worker()
    assert a.pid != b.pid
    yield a, b
    a.close()
    b.close()
    await asyncio.sleep(0.5)


async def piped_room(two_workers, *, enable_srtp=False):
    wa, wb = two_workers
    ra = await wa.create_router(media_codecs=MEDIA_CODECS)
    rb = await wb.create_router(media_codecs=MEDIA_CODECS)
    t_pub = await ra.create_webrtc_transport(listen_infos=LISTEN)
    pub = await connect_peer(t_pub)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    result = await ra.pipe_to_router(producer_id=producer.id, router=rb, enable_srtp=enable_srtp)
    t_sub = await rb.create_webrtc_transport(listen_infos=LISTEN)
    sub = await connect_peer(t_sub)
    consumer = await t_sub.consume(producer_id=producer.id, rtp_capabilities=client_caps(rb.rtp_capabilities))
    return ra, rb, pub, sub, producer, consumer, result


@pytest.mark.parametrize("enable_srtp", [False, True])
async def test_every_packet_crosses_the_pipe(two_workers, enable_srtp):
    ra, rb, pub, sub, producer, consumer, result = await piped_room(two_workers, enable_srtp=enable_srtp)
    pipe_consumer, pipe_producer = result["pipeConsumer"], result["pipeProducer"]
    assert pipe_consumer.type == "pipe" and pipe_producer.id == producer.id
    assert "mid" not in pipe_consumer.rtp_parameters
    if enable_srtp:
        assert pipe_consumer._transport.srtp_parameters["cryptoSuite"] == "AEAD_AES_256_GCM"
    for i in range(60):
        pub.send_rtp(vp8(30000 + i, 3000 * i, key=(i == 0)))
        if i % 10 == 9:
            await asyncio.sleep(0.01)
    assert await wait_for(lambda: len(sub.received_rtp) == 60, 5.0), len(sub.received_rtp)
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    seqs = []
    for pkt in sub.received_rtp:
        hdr = parse_rtp_header(pkt)
        assert hdr[4] == ssrc
        seqs.append(hdr[2])
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    stats = await pipe_producer.get_stats()
    assert stats[0]["packetCount"] == 60
    pipe_stats = await pipe_consumer._transport.get_stats()
    assert pipe_stats[0]["type"] == "pipe-transport" and pipe_stats[0]["bytesSent"] > 60 * 100
    for p in (pub, sub):
        p.close()
    ra.close()
    rb.close()


async def test_pli_crosses_back_and_pause_close_follow(two_workers):
    ra, rb, pub, sub, producer, consumer, result = await piped_room(two_workers)
    pub.send_rtp(vp8(1, 0, key=True))
    assert await wait_for(lambda: len(sub.received_rtp) == 1)
    await asyncio.sleep(1.1)  # past the 1 s keyframe-request throttle of the start-up requests
    pub.received_rtcp.clear()
    sub.send_rtcp(rtcp.build_pli(1, consumer.rtp_parameters["encodings"][0]["ssrc"]))

    def pli_at_publisher():
        return [i for p in pub.received_rtcp for i in rtcp.parse_rtcp(p) if i[0] == "pli" and i[2] == 11111111]

    assert await wait_for(pli_at_publisher, 3.0)
    events = []
    consumer.on("producerpause", lambda: events.append("pause"))
    consumer.on("producerresume", lambda: events.append("resume"))
    consumer.on("producerclose", lambda: events.append("close"))
    await producer.pause()
    assert await wait_for(lambda: events == ["pause"], 5.0), events
    await producer.resume()
    assert await wait_for(lambda: events == ["pause", "resume"], 5.0), events
    producer.close()
    assert await wait_for(lambda: events == ["pause", "resume", "close"], 5.0), events
    assert consumer.closed and result["pipeProducer"].closed
    for p in (pub, sub):
        p.close()
    ra.close()
    rb.close()


async def test_pipe_pair_is_created_once_per_router_pair(two_workers):
    wa, wb = two_workers
    ra = await wa.create_router(media_codecs=MEDIA_CODECS)
    rb = await wb.create_router(media_codecs=MEDIA_CODECS)
    t = await ra.create_webrtc_transport(listen_infos=LISTEN)
    p1 = await t.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    audio = copy.deepcopy(VP8_PRODUCER_PARAMS)
    audio["mid"] = "7"
    audio["encodings"] = [{"ssrc": 5555, "rtx": {"ssrc": 5556}}]
    p2 = await t.produce(kind="video", rtp_parameters=audio)
    r1 = await ra.pipe_to_router(producer_id=p1.id, router=rb)
    r2 = await ra.pipe_to_router(producer_id=p2.id, router=rb)
    assert r1["pipeConsumer"]._transport is r2["pipeConsumer"]._transport
    assert len((await ra.dump())["transportIds"]) == 2  # the webrtc one and one pipe
    t_b = await rb.create_webrtc_transport(listen_infos=LISTEN)
    p3 = await t_b.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    r3 = await rb.pipe_to_router(producer_id=p3.id, router=ra)  # the other way round: same pair
    assert r3["pipeConsumer"]._transport is r1["pipeProducer"]._transport
    assert len((await rb.dump())["transportIds"]) == 2
    with pytest.raises(ValueError, match="same worker"):
        await ra.pipe_to_router(producer_id=p1.id, router=await wa.create_router(media_codecs=MEDIA_CODECS))
    with pytest.raises(ValueError, match="producer_id"):
        await ra.pipe_to_router(producer_id="nope", router=rb)
    ra.close()
    rb.close()


async def test_concurrent_pipes_in_both_directions_share_one_pair(two_workers):
    """Each router pipes its producer to the other at the same time (two peers joining a room on
    two workers): both calls wait on the one pair, each sees it from its own side."""
    wa, wb = two_workers
    ra = await wa.create_router(media_codecs=MEDIA_CODECS)
    rb = await wb.create_router(media_codecs=MEDIA_CODECS)
    ta = await ra.create_webrtc_transport(listen_infos=LISTEN)
    tb = await rb.create_webrtc_transport(listen_infos=LISTEN)
    pa = await ta.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    pb = await tb.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    ab, ba = await asyncio.gather(
        ra.pipe_to_router(producer_id=pa.id, router=rb),
        rb.pipe_to_router(producer_id=pb.id, router=ra),
    )
    assert ab["pipeConsumer"]._transport is ba["pipeProducer"]._transport
    assert ab["pipeConsumer"]._transport._router is ra and ba["pipeConsumer"]._transport._router is rb
    assert ab["pipeProducer"].id == pa.id and ba["pipeProducer"].id == pb.id
    assert len((await ra.dump())["transportIds"]) == 2 and len((await rb.dump())["transportIds"]) == 2
    ra.close()
    rb.close()


async def test_pipe_transport_connect_validation(two_workers):
    wa, _ = two_workers
    ra = await wa.create_router(media_codecs=MEDIA_CODECS)
    plain = await ra.create_pipe_transport(listen_info={"protocol": "udp", "ip": "127.0.0.1"})
    assert plain.type == "pipe" and plain.tuple["localPort"] > 0 and plain.srtp_parameters is None
    with pytest.raises(TypeError, match="port"):
        await plain.connect(ip="127.0.0.1", port=0)
    with pytest.raises(TypeError, match="ip"):
        await plain.connect(ip="nope", port=4000)
    with pytest.raises(TypeError, match="srtp_parameters"):
        await plain.connect(ip="127.0.0.1", port=4000, srtp_parameters={"cryptoSuite": "AEAD_AES_256_GCM", "keyBase64": "x"})
    secure = await ra.create_pipe_transport(listen_info={"protocol": "udp", "ip": "127.0.0.1"}, enable_srtp=True)
    with pytest.raises(TypeError, match="srtp_parameters"):
        await secure.connect(ip="127.0.0.1", port=4000)
    with pytest.raises(TypeError, match="cryptoSuite"):
        await secure.connect(ip="127.0.0.1", port=4000, srtp_parameters={"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": secure.srtp_parameters["keyBase64"]})
    await secure.connect(ip="127.0.0.1", port=4000, srtp_parameters=secure.srtp_parameters)
    assert secure.tuple["remotePort"] == 4000
    ra.close()

