"""Bandwidth estimation on a real WebRtcTransport (issue 6 item 1, 3, 4): transport-cc feedback
goes back to a publisher, feedback from a subscriber moves ``availableOutgoingBitrate`` and
raises ``bwe`` trace events, probation packets go out on SSRC 1234 / PT 127 with a
transport-wide seq, ``set_max_incoming_bitrate`` sends REMB, and bad arguments are refused."""

from __future__ import annotations

import asyncio

import pytest

from raysfu.bwe.twcc import TwccRecorder, parse_feedback
from raysfu.transport import rtcp
from raysfu.transport.errors import UnsupportedError
from raysfu.transport.rtp import build_rtp, find_extension, parse_rtp_header, read_transport_seq

from .conftest import wait_for
from .test_forwarding import VP8_DELTA, VP8_KEY, publish_and_subscribe

TWCC_ID = 3


def vp8_twcc(seq: int, ts: int, twcc_seq: int, *, key: bool = False) -> bytes:
    return build_rtp(96, seq & 0xFFFF, ts, 11111111, VP8_KEY if key else VP8_DELTA, marker=True,
                     extensions=[(4, b"0"), (TWCC_ID, (twcc_seq & 0xFFFF).to_bytes(2, "big"))])


class FeedbackGiver:
    """A subscriber's transport-cc side: logs the transport-wide seq of what ``sub`` received
    (with the consumer's extension id) and sends the feedback back, every 50 ms."""

    def __init__(self, sub, consumer) -> None:
        self.sub = sub
        self.out_id = next(e["id"] for e in consumer.rtp_parameters["headerExtensions"]
                           if e["uri"].endswith("transport-wide-cc-extensions-01"))
        self.recorder = TwccRecorder(sender_ssrc=0xABC, interval_us=50_000)
        self.seen = 0

    def pump(self, now_us: int) -> None:
        """Log the packets received since the last call, then send the feedback that is due."""
        received = self.sub.received_rtp
        for packet in received[self.seen:]:
            hdr = parse_rtp_header(packet)
            found = find_extension(packet, hdr[6], hdr[7], hdr[8], self.out_id)
            if found is not None:
                self.recorder.on_packet(read_transport_seq(packet, found[0]), now_us)
        self.seen = len(received)
        for fb in self.recorder.on_timer(now_us):
            self.sub.send_rtcp(fb)


def rtcp_items(peer) -> list[tuple]:
    out = []
    for packet in peer.received_rtcp:
        try:
            out.extend(rtcp.parse_rtcp(packet))
        except ValueError:
            pass
    return out


async def test_publisher_gets_transport_cc_feedback_for_every_packet(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    for i in range(50):
        pub.send_rtp(vp8_twcc(100 + i, 3000 * i, 500 + i, key=(i == 0)))
        await asyncio.sleep(0.004)
    assert await wait_for(lambda: any(it[0] == "twcc" for it in rtcp_items(pub)), 3.0)
    await asyncio.sleep(0.3)  # the last interval's feedback
    acked = set()
    for item in rtcp_items(pub):
        if item[0] == "twcc":
            for seq, delta_us in parse_feedback(item[3])[4]:
                if delta_us is not None:
                    acked.add(seq)
    assert set(range(500, 550)) <= acked, sorted(set(range(500, 550)) - acked)[:10]
    for p in (pub, sub):
        p.close()


async def test_subscriber_feedback_drives_the_estimate_and_trace_events(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    traces = []
    t_sub.on("trace", traces.append)
    await t_sub.enable_trace_event(["bwe", "probation"])
    before = (await t_sub.get_stats())[0]["availableOutgoingBitrate"]
    assert before == 600_000
    feedback = FeedbackGiver(sub, consumer)
    out_id = feedback.out_id
    loop = asyncio.get_running_loop()
    for i in range(400):  # ~4 s of a ~1 Mbps stream, every packet acknowledged at arrival
        pub.send_rtp(vp8_twcc(1000 + i, 3000 * i, i, key=(i % 100 == 0)))
        await asyncio.sleep(0.01)
        feedback.pump(int(loop.time() * 1e6))
    stats = (await t_sub.get_stats())[0]
    assert stats["availableOutgoingBitrate"] != before or any(t["type"] == "bwe" for t in traces), stats
    bwe_traces = [t for t in traces if t["type"] == "bwe"]
    assert bwe_traces and {"availableBitrate", "desiredBitrate"} <= set(bwe_traces[-1]["info"]), traces[:3]
    # probation packets reached the subscriber on SSRC 1234 / PT 127 with a transport-wide seq
    probes = [p for p in sub.received_rtp if parse_rtp_header(p)[4] == 1234]
    assert probes, "no probation packets"
    hdr = parse_rtp_header(probes[0])
    assert hdr[0] == 127 and find_extension(probes[0], hdr[6], hdr[7], hdr[8], out_id) is not None
    assert any(t["type"] == "probation" for t in traces)
    for p in (pub, sub):
        p.close()


async def test_max_incoming_bitrate_sends_remb_and_setters_validate(router):
    t_pub, t_sub, pub, sub, producer, consumer = await publish_and_subscribe(router)
    for i in range(5):
        pub.send_rtp(vp8_twcc(i, 3000 * i, i, key=(i == 0)))
    await asyncio.sleep(0.1)
    await t_pub.set_max_incoming_bitrate(250_000)
    assert await wait_for(lambda: any(it[0] == "remb" for it in rtcp_items(pub)), 3.0)
    remb = next(it for it in rtcp_items(pub) if it[0] == "remb")
    assert abs(remb[2] - 250_000) <= 250_000 * 0.01 and 11111111 in remb[3]
    stats = (await t_pub.get_stats())[0]
    assert stats["maxIncomingBitrate"] == 250_000
    await t_sub.set_max_outgoing_bitrate(2_000_000)
    await t_sub.set_min_outgoing_bitrate(100_000)
    with pytest.raises(ValueError, match="bitrate"):
        await t_sub.set_min_outgoing_bitrate(3_000_000)
    with pytest.raises(TypeError, match="bitrate"):
        await t_sub.set_max_outgoing_bitrate(-1)
    with pytest.raises(UnsupportedError, match="trace types"):
        await t_sub.enable_trace_event(["rtp"])
    stats = (await t_sub.get_stats())[0]
    assert stats["maxOutgoingBitrate"] == 2_000_000 and stats["minOutgoingBitrate"] == 100_000
    for p in (pub, sub):
        p.close()


async def test_a_capped_simulcast_consumer_gets_padding_up_to_the_available_bitrate(router):
    """While the allocator leaves a wanted layer out, the transport pads on SSRC 1234 up to the
    available bitrate (here held at 300 kbps by set_max_outgoing_bitrate), so the estimate can
    grow with acknowledged traffic instead of staying app-limited."""
    from .test_simulcast import MID, RID, SSRCS, TWCC, _setup, vp8_payload

    _t_pub, t_sub, pub, sub, _producer, consumer = await _setup(router, None)
    await t_sub.set_max_outgoing_bitrate(300_000)
    feedback = FeedbackGiver(sub, consumer)
    sizes = (80, 380, 1100)  # ~35, ~160, ~460 kbps at 50 frames/s
    loop = asyncio.get_running_loop()
    start = loop.time()
    frame = 0
    while loop.time() - start < 5.0:
        for layer in range(3):
            payload = vp8_payload(layer, frame, frame % 100 == 0) + bytes(sizes[layer])
            pub.send_rtp(build_rtp(96, (100 + frame) & 0xFFFF, (1000 * (layer + 1) + 1800 * frame) & 0xFFFFFFFF,
                                   SSRCS[layer], payload, marker=True,
                                   extensions=[(MID, b"0"), (RID, f"r{layer}".encode()),
                                               (TWCC, ((3 * frame + layer) & 0xFFFF).to_bytes(2, "big"))]))
        frame += 1
        await asyncio.sleep(0.02)
        feedback.pump(int(loop.time() * 1e6))
    layers = consumer.current_layers
    assert layers is not None and layers["spatialLayer"] < 2, layers  # r2 does not fit 300 kbps
    # probation bytes of the last 2 s: far more than probe clusters, less than the cap allows
    end = loop.time()
    probation = [p for p in sub.received_rtp if parse_rtp_header(p)[4] == 1234]
    assert probation, "no probation/padding packets"
    probation_bytes = sum(len(p) for p in probation)
    media_bytes = sum(len(p) for p in sub.received_rtp if parse_rtp_header(p)[4] != 1234)
    total_bps = (probation_bytes + media_bytes) * 8 / (end - start)
    assert probation_bytes > 20_000, probation_bytes
    assert total_bps < 1.3 * 300_000, total_bps
    for p in (pub, sub):
        p.close()


async def test_abs_send_time_producer_gets_receive_side_remb_capped_by_max_incoming(router):
    """A sender with abs-send-time but no transport-wide-cc (what mediasoup-client negotiates
    when the router offers no transport-cc): the transport estimates the incoming path itself
    and sends REMB for the producer's SSRC; ``set_max_incoming_bitrate`` caps that REMB. The
    sender stamps abs-send-time 25 % slower than it really sends (a queue building up on the
    path), so the estimator sees overuse within a second instead of waiting 5 s to initialize."""
    import copy

    from raysfu.bwe.remb import abs_send_time_from_ms

    from .conftest import VP8_PRODUCER_PARAMS, connect_peer

    params = copy.deepcopy(VP8_PRODUCER_PARAMS)
    params["headerExtensions"] = [e for e in params["headerExtensions"] if "transport-wide-cc" not in e["uri"]]
    params["codecs"][0]["rtcpFeedback"] = [f for f in params["codecs"][0]["rtcpFeedback"] if f["type"] != "transport-cc"]
    t_pub = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    pub = await connect_peer(t_pub)
    await t_pub.produce(kind="video", rtp_parameters=params)
    abs_id = next(e["id"] for e in params["headerExtensions"] if e["uri"].endswith("abs-send-time"))
    loop = asyncio.get_running_loop()
    seq = 0

    async def send_for(seconds: float) -> None:
        nonlocal seq
        start = loop.time()
        while loop.time() - start < seconds:
            stamp_ms = (loop.time() - t0) * 1000 * 0.75  # the send clock lags: delay grows
            for _ in range(3):  # ~1.2 Mbps: 3 × 1 kB every 20 ms
                ext = [(4, b"0"), (abs_id, abs_send_time_from_ms(stamp_ms).to_bytes(3, "big"))]
                pub.send_rtp(build_rtp(96, seq & 0xFFFF, 90 * seq, 11111111, VP8_DELTA + bytes(900),
                                       marker=True, extensions=ext))
                seq += 1
            await asyncio.sleep(0.02)

    t0 = loop.time()
    await send_for(3.0)
    rembs = [it for it in rtcp_items(pub) if it[0] == "remb"]
    assert rembs, "no REMB from the receive-side estimate"
    assert rembs[-1][2] > 0 and 11111111 in rembs[-1][3], rembs
    stats = (await t_pub.get_stats())[0]
    assert stats["availableIncomingBitrate"] and stats["availableIncomingBitrate"] > 0, stats
    n = len(rembs)
    await t_pub.set_max_incoming_bitrate(200_000)
    await send_for(1.5)
    later = [it for it in rtcp_items(pub) if it[0] == "remb"][n:]
    assert later and all(r[2] <= 200_000 for r in later), later
    assert all(11111111 in r[3] for r in later)
    pub.close()
