"""DirectTransport (mediasoup ``DirectTransport``) in a WorkerActor: RTP injected with
``producer.send()`` and taken from the consumer ``rtp`` event in the driver, RTCP both ways
(``send_rtcp`` / ``rtcp`` event: reports, PLI relayed, NACK answered with RTX), a browser-like
WebRTC publisher consumed into Python, the same in the actor through a
``DirectTransportHandler``, bad arguments, closed-object rejections and close cascades."""

from __future__ import annotations

import asyncio
import copy
import sys

import pytest
import ray.cloudpickle

from raysfu.actors import DirectTransportHandler, InvalidStateError, UnsupportedError, create_worker
from raysfu.transport import rtcp
from raysfu.transport.rtp import build_rtp, parse_rtp_header

from .conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, connect_peer, wait_for
from .test_forwarding import vp8 as webrtc_vp8

# The handler classes below travel into the actor by value (the actor cannot import tests/).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SSRC = 0x01020304
VP8_KEY = b"\x10" + b"\x00\x9d\x01\x2a" + bytes(60)
VP8_DELTA = b"\x10" + b"\x01" + bytes(60)
DIRECT_VP8 = {
    "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "rtcpFeedback": [{"type": "nack", "parameter": "pli"}]}],
    "encodings": [{"ssrc": SSRC}],
}


def vp8(seq: int, *, key: bool = False, ssrc: int = SSRC, pt: int = 101) -> bytes:
    return build_rtp(pt, seq & 0xFFFF, 3000 * seq, ssrc, (VP8_KEY if key else VP8_DELTA) + seq.to_bytes(2, "big"), marker=True)


def payload(packet: bytes) -> bytes:
    hdr = parse_rtp_header(packet)
    return packet[hdr[5] : hdr[9]]


def rtcp_items(packets: list[bytes]) -> list[tuple]:
    return [i for p in packets for i in rtcp.parse_rtcp(p)]


# ------------------------------------------------------------------ creation and arguments
async def test_create_direct_transport(router):
    new = []
    router.observer.on("newtransport", new.append)
    t = await router.create_direct_transport(max_message_size=1024, app_data={"foo": "bar"})
    assert new == [t] and t.type == "direct" and not t.closed and t.app_data == {"foo": "bar"}
    assert t.max_message_size == 1024
    assert t.id in (await router.dump())["transportIds"]
    dump = await t.dump()
    assert dump["id"] == t.id and dump["direct"] is True and dump["producerIds"] == [] and dump["consumerIds"] == []
    assert dump["dataProducerIds"] == [] and dump["dataConsumerIds"] == [] and "rtpListener" in dump
    (s,) = await t.get_stats()
    assert s["type"] == "direct-transport" and s["transportId"] == t.id and isinstance(s["timestamp"], int)
    for key in ("bytesReceived", "bytesSent", "rtpBytesReceived", "rtpBytesSent", "rtxBytesSent", "recvBitrate", "sendBitrate"):
        assert s[key] == 0, key
    assert await t.connect() is None
    t.close()
    assert t.closed


async def test_bad_arguments_and_unsupported_calls(router):
    for bad in ("foo", -2000, 1.5, True):
        with pytest.raises(TypeError, match="max_message_size"):
            await router.create_direct_transport(max_message_size=bad)
    with pytest.raises(TypeError, match="handler"):
        await router.create_direct_transport(handler=object())
    with pytest.raises(TypeError, match="app_data"):
        await router.create_direct_transport(app_data=[])
    t = await router.create_direct_transport()
    for setter in (t.set_max_incoming_bitrate, t.set_max_outgoing_bitrate, t.set_min_outgoing_bitrate):
        with pytest.raises(UnsupportedError):
            await setter(100000)
    with pytest.raises(ValueError, match="data_producer_id"):  # data channels: test_data_channels.py
        await t.consume_data(data_producer_id="x")
    with pytest.raises(InvalidStateError, match="handler"):
        await t.call_handler("stats")
    with pytest.raises(TypeError, match="rtcp_packet"):
        t.send_rtcp("not bytes")
    producer = await t.produce(kind="video", rtp_parameters=DIRECT_VP8)
    with pytest.raises(TypeError, match="rtp_packet"):
        producer.send("not bytes")
    with pytest.raises(TypeError, match="rtp_packet"):
        producer.send(b"\x80" * 8)
    # send() belongs to DirectTransport producers only.
    w = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    webrtc_producer = await w.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    with pytest.raises(UnsupportedError, match="DirectTransport"):
        webrtc_producer.send(vp8(0))
    producer.close()
    with pytest.raises(InvalidStateError):
        producer.send(vp8(0))


# ------------------------------------------------------------------ media in the driver
async def test_produce_and_consume_from_the_driver(router):
    t = await router.create_direct_transport()
    producer = await t.produce(kind="video", rtp_parameters=DIRECT_VP8)
    consumer = await t.consume(producer_id=producer.id, rtp_capabilities=router.rtp_capabilities)
    params = consumer.rtp_parameters
    ssrc, rtx_ssrc = params["encodings"][0]["ssrc"], params["encodings"][0]["rtx"]["ssrc"]
    got: list[bytes] = []
    sent_rtcp: list[bytes] = []
    consumer.on("rtp", got.append)
    t.on("rtcp", sent_rtcp.append)

    sent = [vp8(seq, key=seq == 0) for seq in range(50)]
    for pkt in sent:
        producer.send(pkt)
    assert await wait_for(lambda: len(got) == 50, 5.0), len(got)
    seqs = []
    for out, src in zip(got, sent):
        hdr = parse_rtp_header(out)
        assert hdr[4] == ssrc and hdr[0] == params["codecs"][0]["payloadType"] and payload(out) == payload(src)
        seqs.append(hdr[2])
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    assert (await producer.get_stats())[0]["packetCount"] == 50
    (tstats,) = await t.get_stats()
    assert tstats["rtpBytesReceived"] == sum(map(len, sent)) and tstats["rtpBytesSent"] == sum(map(len, got))

    # RTCP the router sends to the remote: an SR for the consumer's stream, an RR about the
    # producer's stream (every second).
    def reports():
        items = rtcp_items(sent_rtcp)
        return any(i[0] == "sr" and i[1] == ssrc for i in items) and any(i[0] == "rr" and any(b[0] == SSRC for b in i[2]) for i in items)

    assert await wait_for(reports, 3.0)
    # RTCP as if from the remote: a NACK is answered from the retransmission buffer with RTX ...
    t.send_rtcp(rtcp.build_nack(1, ssrc, [seqs[10], seqs[11]]))
    assert await wait_for(lambda: sum(1 for p in got if parse_rtp_header(p)[4] == rtx_ssrc) == 2, 3.0)
    rtx = [p for p in got if parse_rtp_header(p)[4] == rtx_ssrc]
    assert [int.from_bytes(payload(p)[:2], "big") for p in rtx] == [seqs[10], seqs[11]]  # OSN (RFC 4588)
    # ... and a PLI reaches the producer's remote as a PLI for its SSRC (past the 1 s throttle).
    await asyncio.sleep(1.1)
    t.send_rtcp(rtcp.build_pli(1, ssrc))
    assert await wait_for(lambda: any(i[0] == "pli" and i[2] == SSRC for i in rtcp_items(sent_rtcp)), 3.0)


async def test_producer_without_ssrc_learns_it_and_a_webrtc_stream_is_consumed_into_python(router):
    t = await router.create_direct_transport()
    params = copy.deepcopy(DIRECT_VP8)
    params["encodings"] = [{}]
    params["mid"] = "0"  # a single encoding without ssrc needs a mid (mediasoup)
    producer = await t.produce(kind="video", rtp_parameters=params)
    producer.send(vp8(0, key=True, ssrc=777))
    for _ in range(40):
        stats = await producer.get_stats()
        if stats and stats[0]["packetCount"] == 1:
            break
        await asyncio.sleep(0.05)
    assert stats[0]["ssrc"] == 777

    # A WebRTC publisher (ClientPeer, like a browser) consumed by Python through the DirectTransport.
    w = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    peer = await connect_peer(w)
    published = await w.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    consumer = await t.consume(producer_id=published.id, rtp_capabilities=router.rtp_capabilities)
    got: list[bytes] = []
    consumer.on("rtp", got.append)
    for i in range(30):
        peer.send_rtp(webrtc_vp8(100 + i, 3000 * i, key=i == 0))
    assert await wait_for(lambda: len(got) == 30, 5.0), len(got)
    assert {parse_rtp_header(p)[4] for p in got} == {consumer.rtp_parameters["encodings"][0]["ssrc"]}
    peer.close()


# ------------------------------------------------------------------ media in the actor
class Relay(DirectTransportHandler):
    """Runs in the actor: generates a VP8 stream into producer A, forwards what A's consumer
    sends into producer B (B's SSRC), and counts what every consumer and the RTCP side emit."""

    def __init__(self, ssrc_b: int) -> None:
        self.ssrc_b = ssrc_b
        self.routes: dict[str, str] = {}
        self.rtp: dict[str, int] = {}
        self.last_payload: dict[str, bytes] = {}
        self.rtcp_packets = 0
        self.closed = False

    def route(self, consumer_id: str, producer_id: str) -> None:
        self.routes[consumer_id] = producer_id

    def generate(self, producer_id: str, count: int) -> int:
        return sum(self.context.send_rtp(producer_id, vp8(seq, key=seq == 0)) for seq in range(count))

    def on_rtp(self, consumer_id: str, packet: bytes) -> None:
        self.rtp[consumer_id] = self.rtp.get(consumer_id, 0) + 1
        self.last_payload[consumer_id] = payload(packet)
        target = self.routes.get(consumer_id)
        if target is not None:
            hdr = parse_rtp_header(packet)
            self.context.send_rtp(target, build_rtp(101, hdr[2], hdr[3], self.ssrc_b, payload(packet), marker=True))

    def on_rtcp(self, packet: bytes) -> None:
        self.rtcp_packets += 1

    def on_close(self) -> None:
        self.closed = True

    async def stats(self) -> dict:
        await asyncio.sleep(0)  # coroutines are awaited in the actor
        return {"rtp": self.rtp, "rtcp": self.rtcp_packets, "producers": self.context.producer_ids(), "last": self.last_payload}


async def test_a_handler_produces_and_consumes_inside_the_actor(router):
    t = await router.create_direct_transport(handler=Relay(ssrc_b=0x0B0B0B0B))
    a = await t.produce(kind="video", rtp_parameters=DIRECT_VP8)
    params_b = copy.deepcopy(DIRECT_VP8)
    params_b["encodings"] = [{"ssrc": 0x0B0B0B0B}]
    b = await t.produce(kind="video", rtp_parameters=params_b)
    consumer_a = await t.consume(producer_id=a.id, rtp_capabilities=router.rtp_capabilities)
    consumer_b = await t.consume(producer_id=b.id, rtp_capabilities=router.rtp_capabilities)
    driver_events = []
    consumer_a.on("rtp", driver_events.append)  # with a handler, packets stay in the actor
    await t.call_handler("route", consumer_a.id, b.id)
    assert await t.call_handler("generate", a.id, 20) == 20
    stats = await t.call_handler("stats")
    assert stats["rtp"] == {consumer_a.id: 20, consumer_b.id: 20}
    assert stats["last"][consumer_b.id] == payload(vp8(19))
    assert sorted(stats["producers"]) == sorted([a.id, b.id])
    assert (await b.get_stats())[0]["packetCount"] == 20
    await asyncio.sleep(1.2)  # RTCP reports go to the handler too
    assert (await t.call_handler("stats"))["rtcp"] > 0 and driver_events == []
    with pytest.raises(TypeError, match="name"):
        await t.call_handler("_private")
    with pytest.raises(TypeError, match="name"):
        await t.call_handler("nope")


# ------------------------------------------------------------------ closed objects and cascades
async def test_methods_reject_if_closed(router):
    t = await router.create_direct_transport()
    closes = []
    t.observer.on("close", lambda: closes.append(1))
    t.close()
    t.close()
    assert closes == [1] and t.closed
    for coro in (t.dump(), t.get_stats(), t.produce(kind="video", rtp_parameters=DIRECT_VP8), t.connect()):
        with pytest.raises(InvalidStateError):
            await coro
    with pytest.raises(InvalidStateError):
        t.send_rtcp(rtcp.build_pli(1, 2))


async def test_router_close_and_worker_close_cascade(router):
    t = await router.create_direct_transport()
    producer = await t.produce(kind="video", rtp_parameters=DIRECT_VP8)
    consumer = await t.consume(producer_id=producer.id, rtp_capabilities=router.rtp_capabilities)
    events = []
    t.on("routerclose", lambda: events.append("routerclose"))
    t.observer.on("close", lambda: events.append("close"))
    consumer.on("transportclose", lambda: events.append("consumer transportclose"))
    router.close()
    assert t.closed and producer.closed and consumer.closed
    assert events == ["consumer transportclose", "routerclose", "close"]

    w = await create_worker()
    try:
        r = await w.create_router(media_codecs=MEDIA_CODECS)
        t2 = await r.create_direct_transport()
        got = []
        t2.on("routerclose", lambda: got.append("routerclose"))
        t2.observer.on("close", lambda: got.append("close"))
        w.close()
        assert t2.closed and got == ["routerclose", "close"]
    finally:
        w.close()
