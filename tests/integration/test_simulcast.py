"""Simulcast end to end (issue 5).

- Through a real WorkerActor: raysfu's ClientPeer sends three rid-tagged VP8 encodings (SSRCs not
  signalled: learned from the rid/mid extensions), a second ClientPeer consumes with preferred
  layers; the consumer forwards one encoding, switches on a keyframe of the new one after asking
  for it (PLI of that SSRC), with a continuous sequence and increasing timestamps.
- In process with a fake clock (LayeredProducer + SimulcastConsumer on a capture transport): an
  encoding that stops is left for the one below, and retaken after it has been back 2 s;
  padding-only packets leave no hole; RTX by rrid; per-encoding stats and scores.
"""

from __future__ import annotations

import asyncio
import copy

from raysfu.transport import ortc, rtcp
from raysfu.transport.rtp import build_rtp, parse_rtp_header, rtx_wrap

from .conftest import client_caps, connect_peer, wait_for

MID, RID, RRID, TWCC = 4, 10, 11, 3

SIMULCAST_PARAMS = {
    "mid": "0",
    "codecs": [
        {
            "mimeType": "video/VP8",
            "payloadType": 96,
            "clockRate": 90000,
            "parameters": {},
            "rtcpFeedback": [
                {"type": "transport-cc", "parameter": ""},
                {"type": "ccm", "parameter": "fir"},
                {"type": "nack", "parameter": ""},
                {"type": "nack", "parameter": "pli"},
            ],
        },
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID, "encrypt": False, "parameters": {}},
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID, "encrypt": False, "parameters": {}},
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": RRID, "encrypt": False, "parameters": {}},
        {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": TWCC, "encrypt": False, "parameters": {}},
    ],
    "encodings": [
        {"rid": "r0", "scalabilityMode": "L1T1", "maxBitrate": 100000},
        {"rid": "r1", "scalabilityMode": "L1T1", "maxBitrate": 300000},
        {"rid": "r2", "scalabilityMode": "L1T1", "maxBitrate": 900000},
    ],
    "rtcp": {"cname": "sim-cname", "reducedSize": True},
}

SSRCS = [0x1000, 0x2000, 0x3000]
RTX_SSRCS = [0x1001, 0x2001, 0x3001]


def vp8_payload(layer: int, picture_id: int, key: bool) -> bytes:
    """VP8 descriptor (X, S, PID 0; I with 15-bit picture id, L with TL0PICIDX) + a VP8 payload
    header (P bit 0 for a keyframe) + a marker byte naming the encoding."""
    desc = bytes([0x90, 0xC0, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF, picture_id & 0xFF])
    vp8 = b"\x00\x9d\x01\x2a" if key else b"\x01\x00\x00\x00"
    return desc + vp8 + bytes([0xA0 + layer]) + bytes(60)


def packet(layer: int, frame: int, *, key: bool = False, seq_base: int = 100) -> bytes:
    """Frame ``frame`` of encoding ``layer``: one packet, marker set, rid+mid extensions."""
    rid = f"r{layer}".encode()
    return build_rtp(
        96, (seq_base + frame) & 0xFFFF, (1000 * (layer + 1) + 3000 * frame) & 0xFFFFFFFF, SSRCS[layer],
        vp8_payload(layer, frame, key), marker=True,
        extensions=[(MID, b"0"), (RID, rid), (TWCC, b"\x00\x01")],
    )


def layer_of(pkt: bytes) -> int:
    hdr = parse_rtp_header(pkt)
    return pkt[hdr[5] + 9] - 0xA0


def media(peer, ssrc: int | None = None) -> list[bytes]:
    """The media packets ``peer`` received (not padding-only ones, e.g. bandwidth probes),
    on ``ssrc`` when given."""
    out = []
    for pkt in peer.received_rtp:
        hdr = parse_rtp_header(pkt)
        if hdr[5] < hdr[9] and (ssrc is None or hdr[4] == ssrc):
            out.append(pkt)
    return out


async def _setup(router, preferred_layers):
    t_pub = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    t_sub = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    pub = await connect_peer(t_pub)
    sub = await connect_peer(t_sub)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(SIMULCAST_PARAMS))
    consumer = await t_sub.consume(
        producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities), preferred_layers=preferred_layers
    )
    return t_pub, t_sub, pub, sub, producer, consumer


def _plis(peer) -> set:
    out = set()
    for pkt in peer.received_rtcp:
        for item in rtcp.parse_rtcp(pkt):
            if item[0] == "pli":
                out.add(item[2])
    return out


async def test_simulcast_switches_on_keyframe_with_continuous_stream(router):
    t_pub, t_sub, pub, sub, producer, consumer = await _setup(router, {"spatialLayer": 0})
    assert producer.type == "simulcast" and consumer.type == "simulcast"
    assert consumer.rtp_parameters["encodings"][0]["scalabilityMode"] == "L3T1"
    assert consumer.preferred_layers == {"spatialLayer": 0, "temporalLayer": 0}
    changes = []
    consumer.on("layerschange", changes.append)
    out_ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    assert await wait_for(lambda: t_pub.dtls_state == "connected" and t_sub.dtls_state == "connected")

    frame = 0

    async def send_frames(n, key_layers=()):
        nonlocal frame
        for _ in range(n):
            for layer in range(3):
                pub.send_rtp(packet(layer, frame, key=(layer in key_layers)))
            frame += 1
            await asyncio.sleep(0.01)

    await send_frames(1, key_layers=(0, 1, 2))
    await send_frames(9)
    assert await wait_for(lambda: len(media(sub, out_ssrc)) >= 10)
    assert {layer_of(p) for p in media(sub, out_ssrc)} == {0}
    assert await wait_for(lambda: consumer.current_layers == {"spatialLayer": 0, "temporalLayer": 0})
    stats = await producer.get_stats()
    assert [s["rid"] for s in stats] == ["r0", "r1", "r2"] and [s["ssrc"] for s in stats] == SSRCS

    # Up to layer 2: nothing changes before its keyframe, and that keyframe is requested.
    await consumer.set_preferred_layers(2)
    assert consumer.preferred_layers == {"spatialLayer": 2, "temporalLayer": 0}
    assert await wait_for(lambda: SSRCS[2] in _plis(pub))
    await send_frames(5)
    await asyncio.sleep(0.1)
    assert {layer_of(p) for p in media(sub, out_ssrc)} == {0}
    n_before = len(media(sub, out_ssrc))
    await send_frames(1, key_layers=(2,))
    await send_frames(9)
    assert await wait_for(lambda: len(media(sub, out_ssrc)) >= n_before + 10)
    # the keyframe's round sends encoding 0 first: its packet still goes out, then only 2
    assert layer_of(media(sub, out_ssrc)[n_before]) == 0
    after = media(sub, out_ssrc)[n_before + 1 :]
    assert {layer_of(p) for p in after} == {2}
    first = parse_rtp_header(after[0])
    assert after[0][first[5] + 5] & 0x01 == 0, "the switch starts with the keyframe"
    assert await wait_for(lambda: consumer.current_layers == {"spatialLayer": 2, "temporalLayer": 0})
    assert changes[-1] == {"spatialLayer": 2, "temporalLayer": 0}

    # And back down to 0.
    await consumer.set_preferred_layers(0)
    assert await wait_for(lambda: SSRCS[0] in _plis(pub))
    n_before = len(media(sub, out_ssrc))
    await send_frames(1, key_layers=(0,))
    await send_frames(4)
    assert await wait_for(lambda: len(media(sub, out_ssrc)) >= n_before + 5)
    assert {layer_of(p) for p in media(sub, out_ssrc)[n_before:]} == {0}

    hdrs = [parse_rtp_header(p) for p in media(sub, out_ssrc)]
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    assert {h[4] for h in hdrs} == {ssrc}
    seqs = [h[2] for h in hdrs]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:])), "output sequence has gaps"
    tss = [h[3] for h in hdrs]
    assert all(0 < ((b - a) & 0xFFFFFFFF) < 0x80000000 for a, b in zip(tss, tss[1:])), "timestamps go back"
    # VP8 picture ids stay continuous across switches (rewritten per consumer)
    pids = [((p[h[5] + 2] & 0x7F) << 8) | p[h[5] + 3] for p, h in zip(media(sub, out_ssrc), hdrs)]
    assert all(((b - a) & 0x7FFF) == 1 for a, b in zip(pids, pids[1:])), pids

    dump = await consumer.dump()
    assert dump["type"] == "simulcast" and dump["currentSpatialLayer"] == 0
    cstats = await consumer.get_stats()
    assert cstats[0]["type"] == "outbound-rtp" and cstats[1].get("rid") == "r0"
    await consumer.set_priority(3)
    assert consumer.priority == 3
    await consumer.unset_priority()
    assert consumer.priority == 1
    for p in (pub, sub):
        p.close()
    t_pub.close()
    t_sub.close()


# --------------------------------------------------------------------- in process, fake clock
class _Worker:
    def __init__(self):
        self.events = []

    def emit(self, target, event, data):
        self.events.append((target, event, data))


class _Router:
    def __init__(self):
        self.worker = _Worker()


class _CaptureTransport:
    """Enough of actors.webrtc_transport.Transport for a producer and a consumer."""

    def __init__(self):
        from raysfu.actors.webrtc_transport import SEND_VIEW

        self.scratch = SEND_VIEW
        self.worker = _Worker()
        self.sent: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.timer_due_ms = 0
        self.rtcp_ssrc = 1234

    def send_scratch_rtp(self, n, twcc_off):
        self.sent.append(bytes(self.scratch[:n]))

    def send_rtcp(self, packet):
        self.rtcp.append(packet)

    def wake_timer(self, due_ms=0):
        pass


def _make_pair(preferred=None):
    from raysfu.actors.producer import LayeredProducer
    from raysfu.actors.simulcast_consumer import SimulcastConsumer

    caps = ortc.generate_router_rtp_capabilities([{"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}])
    params, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters("video", copy.deepcopy(SIMULCAST_PARAMS), caps, cname="x")
    assert ptype == "simulcast"
    tp, tc = _CaptureTransport(), _CaptureTransport()
    producer = LayeredProducer(
        producer_type=ptype, producer_id="p", transport=tp, kind="video", rtp_parameters=params,
        rtp_mapping=mapping, consumable_rtp_parameters=consumable, paused=False, key_frame_request_delay_ms=0, app_data=None,
    )
    cparams = ortc.get_consumer_rtp_parameters(consumable, {"codecs": caps["codecs"], "headerExtensions": [
        {**e, "preferredId": e["preferredId"]} for e in caps["headerExtensions"]]})
    cparams["mid"] = "1"
    consumer = SimulcastConsumer(
        consumer_id="c", transport=tc, producer=producer, rtp_parameters=cparams, paused=False, app_data=None,
        preferred_layers=preferred,
    )
    producer.consumers.append(consumer)
    return producer, consumer, tp, tc


def _feed(producer, data, now_ms):
    hdr = parse_rtp_header(data)
    if hdr[4] not in producer.by_ssrc:
        assert producer.identify(data, hdr)
    producer.receive_rtp(data, hdr, now_ms)


def test_layer_that_stops_is_left_and_retaken_after_two_seconds():
    producer, consumer, tp, tc = _make_pair({"spatialLayer": 2})
    now = 10_000
    frame = 0
    assert consumer.monitor is producer.layer_monitor

    def step(layers, key_layers=()):
        nonlocal frame, now
        for layer in layers:
            _feed(producer, packet(layer, frame, key=layer in key_layers), now)
        frame += 1
        now += 33
        consumer.on_timer(now)
        producer.on_timer(now)

    step((0, 1, 2), key_layers=(0, 1, 2))
    for _ in range(10):
        step((0, 1, 2))
    assert consumer.current_layers == {"spatialLayer": 2, "temporalLayer": 0}
    # the first keyframe round climbs 0 -> 1 -> 2 as the encodings appear (all keyframes)
    assert [layer_of(p) for p in tc.sent] == [0, 1] + [2] * 11
    # Layer 2 stops: after the 1.5 s inactivity the consumer targets layer 1 and asks for its keyframe.
    tp.rtcp.clear()
    for _ in range(60):
        step((0, 1))
    assert consumer.selector.target_spatial_layer == 1
    assert any(item[0] == "pli" and item[2] == SSRCS[1] for pkt in tp.rtcp for item in rtcp.parse_rtcp(pkt))
    step((0, 1), key_layers=(1,))
    assert consumer.current_layers == {"spatialLayer": 1, "temporalLayer": 0}
    scores = producer.score_list()
    assert [s["score"] for s in scores][2] == 0
    # Layer 2 comes back with a keyframe: not taken before it has been active 2 s.
    step((0, 1, 2), key_layers=(2,))
    for _ in range(40):  # ~1.3 s
        step((0, 1, 2))
    assert consumer.current_layers["spatialLayer"] == 1
    for _ in range(25):  # past 2 s: target 2, keyframe requested, switch on it
        step((0, 1, 2))
    assert consumer.selector.target_spatial_layer == 2
    step((0, 1, 2), key_layers=(2,))
    assert consumer.current_layers == {"spatialLayer": 2, "temporalLayer": 0}
    events = [e for _, e, _ in tc.worker.events]
    assert events.count("layerschange") >= 3
    hdrs = [parse_rtp_header(p) for p in tc.sent]
    seqs = [h[2] for h in hdrs]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))


def test_padding_only_packets_leave_no_hole_and_rtx_is_learned_by_rrid():
    producer, _consumer, _tp, tc = _make_pair({"spatialLayer": 0})
    now = 5_000
    for f in range(5):
        _feed(producer, packet(0, f, key=f == 0), now)
        now += 33
    # a padding-only packet of encoding 0 (seq 105), then a media one (106)
    pad = build_rtp(96, 105, 1000 + 3000 * 5, SSRCS[0], b"", extensions=[(MID, b"0"), (RID, b"r0")], padding=100)
    _feed(producer, pad, now)
    _feed(producer, packet(0, 6), now)
    seqs = [parse_rtp_header(p)[2] for p in tc.sent]
    assert len(seqs) == 6 and all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    # RTX of encoding 0 (rrid r0) repairs seq 107 that was lost
    original = packet(0, 7)
    rtx = rtx_wrap(original, 97, RTX_SSRCS[0], 1)
    hdr = parse_rtp_header(rtx)
    rtx = build_rtp(97, 1, hdr[3], RTX_SSRCS[0], rtx[hdr[5]:hdr[9]], marker=True, extensions=[(MID, b"0"), (RRID, b"r0")])
    _feed(producer, rtx, now)
    assert producer.encodings[0].rtx_ssrc == RTX_SSRCS[0]
    assert producer.encodings[0].rtx_packets == 1
    assert len(tc.sent) == 7
    stats = producer.get_stats(now)
    assert stats[0]["rid"] == "r0" and stats[0]["rtxSsrc"] == RTX_SSRCS[0]


async def test_simulcast_producer_piped_to_another_router(worker):
    """pipe_to_router of a simulcast producer: every encoding crosses on its own SSRC (with its
    SRs), and a simulcast consumer on the far router switches between them."""
    from raysfu.actors import create_worker

    from .conftest import MEDIA_CODECS

    wb = await create_worker()  # pipes join routers of two workers (the module's + this one)
    ra = await worker.create_router(media_codecs=MEDIA_CODECS)
    rb = await wb.create_router(media_codecs=MEDIA_CODECS)
    listen = [{"protocol": "udp", "ip": "127.0.0.1"}]
    t_pub = await ra.create_webrtc_transport(listen_infos=listen)
    pub = await connect_peer(t_pub)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(SIMULCAST_PARAMS))
    result = await ra.pipe_to_router(producer_id=producer.id, router=rb)
    pipe_consumer, pipe_producer = result["pipeConsumer"], result["pipeProducer"]
    assert pipe_consumer.type == "pipe" and pipe_producer.type == "simulcast"
    assert len(pipe_consumer.rtp_parameters["encodings"]) == 3
    t_sub = await rb.create_webrtc_transport(listen_infos=listen)
    sub = await connect_peer(t_sub)
    consumer = await t_sub.consume(producer_id=producer.id, rtp_capabilities=client_caps(rb.rtp_capabilities),
                                   preferred_layers={"spatialLayer": 1})
    assert consumer.type == "simulcast"
    out_ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    assert await wait_for(lambda: t_pub.dtls_state == "connected" and t_sub.dtls_state == "connected")
    for frame in range(20):
        for layer in range(3):
            pub.send_rtp(packet(layer, frame, key=frame == 0))
        await asyncio.sleep(0.01)
    assert await wait_for(lambda: len(media(sub, out_ssrc)) >= 19)
    layers = [layer_of(p) for p in media(sub, out_ssrc)]
    assert layers[-10:] == [1] * 10, layers
    stats = await pipe_producer.get_stats()
    assert len(stats) == 3 and all(s["packetCount"] == 20 for s in stats), stats
    for p in (pub, sub):
        p.close()
    ra.close()
    rb.close()
    wb.close()
