"""The zero-copy send path: in-place SRTP on a preallocated buffer, consumers writing into the
transports' send buffer, NACK answers rebuilt from the shared template, event-driven timers."""

from __future__ import annotations

import asyncio
import copy
import socket

import pytest

from raysfu.actors.router import Router
from raysfu.actors.webrtc_transport import RTCP_INTERVAL_MS, Transport
from raysfu.actors.worker import WorkerCore
from raysfu.transport import rtcp
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import build_rtp, iter_extensions, parse_rtp_header
from raysfu.transport.srtp import MAX_PACKET_BYTES, SrtpSession, new_packet_buffer

from ..integration.conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps

KEY44 = bytes(range(44))
KEY44B = bytes(range(1, 45))
MEDIA_SSRC = 11111111


def vp8(seq: int, ts: int, key: bool = False, payload_len: int = 100) -> bytes:
    payload = (b"\x10\x00\x9d\x01\x2a" if key else b"\x10\x01") + bytes(payload_len)
    return build_rtp(96, seq, ts, MEDIA_SSRC, payload, marker=True, extensions=[(4, b"0"), (3, b"\x00\x07"), (13, b"\x01")])


# ------------------------------------------------------------------------------ SRTP in place
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("suite", ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"])
def test_protect_into_matches_protect_and_round_trips(suite, fast):
    klen = 44 if "256" in suite else 30
    a, b = bytes(range(klen)), bytes(range(1, klen + 1))
    sender = SrtpSession(suite, a, b, use_fast_path=fast)
    reference = SrtpSession(suite, a, b, use_fast_path=fast)
    receiver = SrtpSession(suite, b, a, use_fast_path=fast)
    buf, view = new_packet_buffer()
    assert len(view) >= MAX_PACKET_BYTES
    for seq in range(3):
        pkt = vp8(seq, 3000 * seq)
        view[: len(pkt)] = pkt
        n = sender.protect_rtp_into(buf, len(pkt))
        assert n > len(pkt)
        assert bytes(view[:n]) == reference.protect_rtp(pkt)  # same keys, same index: same bytes
        m = receiver.unprotect_rtp_into(buf, n)
        assert bytes(view[:m]) == pkt
    report = rtcp.build_rr(5, [])
    view[: len(report)] = report
    n = sender.protect_rtcp_into(buf, len(report))
    assert receiver.unprotect_rtcp(bytes(view[:n])) == report


def test_unprotect_into_rejects_tampering_and_raw_handle():
    sender = SrtpSession("AEAD_AES_256_GCM", KEY44, KEY44B)
    receiver = SrtpSession("AEAD_AES_256_GCM", KEY44B, KEY44)
    buf, view = new_packet_buffer()
    pkt = vp8(1, 0)
    view[: len(pkt)] = pkt
    fn, ctx, len_p = sender.raw_rtp_protect
    len_p[0] = len(pkt)
    assert fn(ctx, buf, len_p) == 0
    n = len_p[0]
    view[n - 1] ^= 1
    with pytest.raises(PacketParseError):
        receiver.unprotect_rtp_into(buf, n)
    assert SrtpSession("AEAD_AES_256_GCM", KEY44, KEY44B, use_fast_path=False).raw_rtp_protect is None
    assert isinstance(SrtpSession.error_text(7), str) and SrtpSession.error_text(10**6).startswith("libsrtp error")


# ------------------------------------------------------------------ consumers on the send buffer
class CapturingTransport(Transport):
    """Only ``send_rtp``/``send_rtcp``: the base ``send_scratch_rtp`` must hand it copies."""

    def __init__(self, router, transport_id):
        super().__init__(router, transport_id, None)
        self.sent_rtp: list[tuple[bytes, int]] = []
        self.sent_rtcp: list[bytes] = []

    def send_rtp(self, buf, twcc_off):
        self.sent_rtp.append((bytes(buf), twcc_off))

    def send_rtcp(self, packet):
        self.sent_rtcp.append(packet)


def graph(n_subs: int = 1):
    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(MEDIA_CODECS), None)
    pub = CapturingTransport(router, "pub")
    subs = [CapturingTransport(router, f"sub{i}") for i in range(n_subs)]
    producer = pub.produce({"kind": "video", "rtpParameters": copy.deepcopy(VP8_PRODUCER_PARAMS)}, 0)
    consumers = [s.consume({"producerId": producer["id"], "rtpCapabilities": client_caps(router.rtp_capabilities)}, 0) for s in subs]
    return pub, subs, router.producers[producer["id"]], [router.consumers[c["id"]] for c in consumers]


def test_each_consumer_gets_its_own_patched_copy():
    pub, subs, producer, consumers = graph(3)
    for i in range(5):
        pub.receive_rtp(vp8(100 + i, 3000 * i, key=(i == 0)), 10 * i)
    for sub, consumer in zip(subs, consumers):
        assert len(sub.sent_rtp) == 5
        seqs = []
        for (pkt, twcc_off), i in zip(sub.sent_rtp, range(5)):
            hdr = parse_rtp_header(pkt)
            assert hdr[4] == consumer.ssrc and hdr[3] == 3000 * i and hdr[0] == consumer.payload_type
            seqs.append(hdr[2])
            exts = {e: bytes(pkt[o : o + n]) for e, o, n in iter_extensions(pkt, hdr[6], hdr[7], hdr[8])}
            mid_id = next(e["id"] for e in consumer.rtp_parameters["headerExtensions"] if e["uri"].endswith("sdes:mid"))
            assert exts[mid_id] == consumer.rtp_parameters["mid"].encode()
            assert twcc_off >= 0 and pkt[twcc_off] >> 4 == consumer.twcc_id
            original = vp8(100 + i, 3000 * i, key=(i == 0))
            o = parse_rtp_header(original)
            assert pkt[hdr[5] : hdr[9]] == original[o[5] : o[9]]
        assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(5)]
    # three consumers, three different SSRCs: nothing leaked between copies
    assert len({parse_rtp_header(s.sent_rtp[-1][0])[4] for s in subs}) == 3


def test_nack_answer_is_rebuilt_from_the_template_as_rtx():
    pub, (sub,), producer, (consumer,) = graph(1)
    for i in range(6):
        pub.receive_rtp(vp8(200 + i, 3000 * i, key=(i == 0)), 10 * i)
    sent = [p for p, _ in sub.sent_rtp]
    lost = parse_rtp_header(sent[3])
    sub.receive_rtcp(rtcp.build_nack(1, consumer.ssrc, [lost[2]]), 100)
    assert len(sub.sent_rtp) == 7
    rtx, twcc_off = sub.sent_rtp[-1]
    hdr = parse_rtp_header(rtx)
    assert hdr[4] == consumer.rtx_ssrc and hdr[0] == consumer.rtx_payload_type
    assert int.from_bytes(rtx[hdr[5] : hdr[5] + 2], "big") == lost[2]  # OSN (RFC 4588 §4)
    assert rtx[hdr[5] + 2 : hdr[9]] == sent[3][lost[5] : lost[9]]
    assert rtx[12 : hdr[5]] == sent[3][12 : lost[5]]  # same extensions (mid, twcc slot, ...)
    assert twcc_off >= 0 and rtx[twcc_off] >> 4 == consumer.twcc_id
    # the buffer holds the shared template, not a copy per consumer
    assert type(consumer.retransmissions.get((lost[2] + 1) & 0xFFFF, 100)).__name__ == "Template"


def test_nack_without_rtx_resends_the_same_bytes():
    pub, (sub,), producer, (consumer,) = graph(1)
    consumer.rtx_ssrc = None  # NACK negotiated, RTX not: plain resend (RFC 4585)
    for i in range(4):
        pub.receive_rtp(vp8(7 + i, 3000 * i, key=(i == 0)), 10 * i)
    wanted = sub.sent_rtp[2]
    sub.receive_rtcp(rtcp.build_nack(1, consumer.ssrc, [parse_rtp_header(wanted[0])[2]]), 50)
    assert len(sub.sent_rtp) == 5 and sub.sent_rtp[-1] == wanted


def test_packets_too_long_for_the_send_buffer_are_dropped_and_counted():
    pub, (sub,), producer, _ = graph(1)
    pub.receive_rtp(vp8(1, 0, key=True), 0)
    pub.receive_rtp(vp8(2, 3000, payload_len=MAX_PACKET_BYTES), 10)
    assert len(sub.sent_rtp) == 1 and producer.drops["too_long"] == 1


# ------------------------------------------------------------------------------------- timers
def test_timer_due_time_follows_rtcp_nack_and_keyframe_deadlines():
    pub, (sub,), producer, (consumer,) = graph(1)
    pub.on_timer(1000)
    assert pub.timer_due_ms == 1000 + RTCP_INTERVAL_MS
    pub.receive_rtp(vp8(10, 0, key=True), 1001)
    pub.receive_rtp(vp8(13, 9000), 1002)  # 11 and 12 missing: a NACK retry is scheduled
    assert producer.nack.next_timer_ms() is not None
    assert pub.timer_due_ms == producer.nack.next_timer_ms() < 1000 + RTCP_INTERVAL_MS
    pub.on_timer(pub.timer_due_ms)
    assert pub.timer_due_ms <= 1000 + RTCP_INTERVAL_MS
    # a keyframe request (consumer PLI) schedules its retry on the producer's transport
    pub2, (sub2,), producer2, (consumer2,) = graph(1)
    pub2.receive_rtp(vp8(1, 0, key=True), 0)
    pub2.timer_due_ms = 10**9
    consumer2.receive_key_frame_request("pli", 2000)
    assert pub2.timer_due_ms == producer2.keyframes.next_timer_ms() > 2000
    pub2.wake_timer(None)
    pub2.wake_timer(3)
    assert pub2.timer_due_ms == 3


async def test_tick_loop_runs_only_due_transports(monkeypatch):
    monkeypatch.setattr("raysfu.actors.worker.TICK_MS", 1)
    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(MEDIA_CODECS), None)
    worker.routers["r"] = router
    calls = []

    class T(CapturingTransport):
        def on_timer(self, now_ms):
            calls.append(self.id)
            super().on_timer(now_ms)

    due, idle = T(router, "due"), T(router, "idle")
    router.transports.update({"due": due, "idle": idle})
    idle.timer_due_ms = worker.now_ms() + 60_000
    worker.start()
    await asyncio.sleep(0.05)
    due.timer_due_ms = 0
    await asyncio.sleep(0.05)
    worker.close()
    assert calls.count("due") == 2 and "idle" not in calls


# --------------------------------------------------------- WebRtcTransport: protect and send in place
@pytest.mark.parametrize("fast", [True, False])  # raw libsrtp lib, or SrtpSession's public path
async def test_webrtc_transport_sends_protected_copies_from_the_send_buffer(fast):
    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(MEDIA_CODECS), None)
    pub = CapturingTransport(router, "pub")
    producer = pub.produce({"kind": "video", "rtpParameters": copy.deepcopy(VP8_PRODUCER_PARAMS)}, 0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    desc = await router.create_webrtc_transport({"listenInfos": [{"protocol": "udp", "ip": "127.0.0.1"}]})
    t = router.transports[desc["id"]]
    try:
        consumer = router.consumers[t.consume({"producerId": producer["id"], "rtpCapabilities": client_caps(router.rtp_capabilities)}, 0)["id"]]
        pub.receive_rtp(vp8(1, 0, key=True), 0)
        assert t.drops["send_not_connected"] == 1  # no SRTP keys / selected tuple yet
        # connect by hand: SRTP keys and a selected tuple, as DTLS and ICE would set them
        t.core.srtp = SrtpSession("AEAD_AES_256_GCM", KEY44, KEY44B, use_fast_path=fast)
        t.core.ice._selected = sink.getsockname()
        t._update_route()
        peer = SrtpSession("AEAD_AES_256_GCM", KEY44B, KEY44)
        pub.receive_rtp(vp8(2, 3000), 10)
        pub.receive_rtp(vp8(3, 6000), 20)
        got = [peer.unprotect_rtp(sink.recv(4096)) for _ in range(2)]
        hdrs = [parse_rtp_header(p) for p in got]
        assert hdrs[1][2] == (hdrs[0][2] + 1) & 0xFFFF and hdrs[0][3] == 3000
        twcc = [next(o for e, o, n in iter_extensions(p, h[6], h[7], h[8]) if e == consumer.twcc_id) for p, h in zip(got, hdrs)]
        assert [int.from_bytes(p[o : o + 2], "big") for p, o in zip(got, twcc)] == [1, 2]  # transport-wide seqs
        assert t.rtp_packets_sent == 2 and t.rtp_bytes_sent == sum(len(p) for p in got) + 2 * 16
        assert t.bytes_sent == t.rtp_bytes_sent  # nothing else went out yet
        t.send_rtcp(rtcp.build_rr(t.rtcp_ssrc, []))
        assert peer.unprotect_rtcp(sink.recv(4096))[:2] == b"\x80\xc9"
    finally:
        router.close()
        sink.close()


def test_consumers_with_their_own_timers_are_run_and_scheduled():
    pub, (sub,), producer, (consumer,) = graph(1)
    calls = []
    consumer.next_timer_ms = lambda: 500 if not calls else 900
    consumer.on_timer = calls.append
    sub.on_timer(100)
    assert calls == [] and sub.timer_due_ms == 500
    sub.on_timer(500)
    assert calls == [500] and sub.timer_due_ms == 900


def test_template_drops_zero_length_two_byte_elements_without_raising():
    from raysfu.transport.rtp_template import TemplateBuilder

    b = TemplateBuilder(producer_ext_uris={1: "a", 2: "b"}, router_ext_ids={"a": 3, "b": 4}, mid_uri="m", twcc_uri="t", drop_uris=())
    # two-byte form (RFC 8285 §4.3): id 1 with 0 bytes, id 2 with 2 bytes, padding
    block = bytes([1, 0, 2, 2, 0xAA, 0xBB, 0, 0])
    pkt = bytes([0x90, 96]) + bytes(10) + b"\x10\x00\x00\x02" + block + b"payload"
    t = b.build(pkt, parse_rtp_header(pkt), 100, 7)
    hdr = parse_rtp_header(t.data)
    assert [(e, bytes(t.data[o : o + n])) for e, o, n in iter_extensions(t.data, hdr[6], hdr[7], hdr[8])] == [(4, b"\xaa\xbb")]
    assert t.data[t.payload_off :] == b"payload"


async def test_debug_send_loss_drops_and_counts():
    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(MEDIA_CODECS), None)
    desc = await router.create_webrtc_transport({"listenInfos": [{"protocol": "udp", "ip": "127.0.0.1"}]})
    t = router.transports[desc["id"]]
    try:
        t.core.srtp = SrtpSession("AEAD_AES_256_GCM", KEY44, KEY44B)
        t.core.ice._selected = ("127.0.0.1", 9)
        t._update_route()
        t.debug_send_loss = 0.999999
        t.send_rtp(bytearray(vp8(1, 0)), -1)
        assert t.drops["debug_send_loss"] == 1 and t.rtp_packets_sent == 0
    finally:
        router.close()
