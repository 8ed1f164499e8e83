"""Parsers and the whole receive path fuzzed with hypothesis: a malformed packet raises only
PacketParseError from a parser, and is dropped and counted by a transport (never an exception
out of the forwarding graph, even from an authenticated peer sending garbage inside SRTP)."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raysfu.actors.router import Router
from raysfu.actors.webrtc_transport import Transport
from raysfu.actors.worker import WorkerCore
from raysfu.transport import rtcp
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import build_rtp, is_keyframe, iter_extensions, parse_rtp_header, rtx_unwrap

from ..integration.conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps

rtp_like = st.binary(min_size=0, max_size=300).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:] if b else b)


@given(rtp_like)
def test_parse_rtp_header_raises_only_packet_parse_error(data):
    try:
        hdr = parse_rtp_header(data)
    except PacketParseError:
        return
    try:
        iter_extensions(data, hdr[6], hdr[7], hdr[8])
    except PacketParseError:
        pass
    for codec in ("vp8", "vp9", "h264", "av1"):
        is_keyframe(codec, data, hdr[5], hdr[9])
    try:
        rtx_unwrap(data, 96, 1)
    except PacketParseError:
        pass


@given(st.binary(min_size=0, max_size=300))
def test_parse_rtcp_raises_only_packet_parse_error(data):
    try:
        rtcp.parse_rtcp(data)
    except PacketParseError:
        pass


class CapturingTransport(Transport):
    """A Transport without sockets: what it would send is kept in lists."""

    def __init__(self, router, transport_id):
        super().__init__(router, transport_id, None)
        self.sent_rtp: list[bytes] = []
        self.sent_rtcp: list[bytes] = []

    def send_rtp(self, buf, twcc_off):
        self.sent_rtp.append(bytes(buf))

    def send_rtcp(self, packet):
        self.sent_rtcp.append(packet)


def graph():
    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(MEDIA_CODECS), None)
    pub = CapturingTransport(router, "pub")
    sub = CapturingTransport(router, "sub")
    producer = pub.produce({"kind": "video", "rtpParameters": copy.deepcopy(VP8_PRODUCER_PARAMS)}, 0)
    sub.consume({"producerId": producer["id"], "rtpCapabilities": client_caps(router.rtp_capabilities)}, 0)
    return pub, sub


GRAPH = graph()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(rtp_like, st.binary(max_size=200)), max_size=8), st.integers(0, 10**6))
def test_forwarding_graph_survives_garbage(packets, now_ms):
    pub, sub = GRAPH
    for data in packets:
        pub.receive_rtp(data, now_ms)
        pub.receive_rtcp(data, now_ms)
        sub.receive_rtcp(data, now_ms)
        # garbage that carries the producer's SSRC and payload types gets past the SSRC lookup
        if len(data) >= 12:
            for pt, ssrc in ((96, 11111111), (97, 11111112)):
                forged = bytearray(data)
                forged[0] = 0x80 | (forged[0] & 0x3F)
                forged[1] = (forged[1] & 0x80) | pt
                forged[8:12] = ssrc.to_bytes(4, "big")
                pub.receive_rtp(bytes(forged), now_ms)
    pub.on_timer(now_ms)
    sub.on_timer(now_ms)


def test_graph_forwards_after_fuzzing_and_counts_drops():
    pub, sub = graph()
    for data in (b"", b"\x80", bytes(11), b"\x80\x60" + bytes(20), build_rtp(96, 1, 1, 999, b"x")):
        pub.receive_rtp(data, 0)
    pub.receive_rtcp(b"\x81\xc8\x00\x50", 0)
    assert pub.drops["rtp_malformed"] == 3 and pub.drops["rtp_unknown_ssrc"] == 2 and pub.drops["rtcp_malformed"] == 1
    key = build_rtp(96, 10, 0, 11111111, b"\x10\x00\x9d\x01\x2a" + bytes(20), extensions=[(4, b"0")])
    pub.receive_rtp(key, 5)
    assert len(sub.sent_rtp) == 1

