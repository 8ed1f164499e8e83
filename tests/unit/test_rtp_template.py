"""The producer template and the per-consumer rewrite: router numbering, reserved slots, zeroed
extensions, sequence continuity across the 16-bit wrap."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.rtp import build_rtp, iter_extensions, parse_rtp_header
from raysfu.transport.rtp_template import MID_SLOT_LEN, TemplateBuilder
from raysfu.transport.seq import SeqRewriter, SeqUnwrapper

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_ORIENT = "urn:3gpp:video-orientation"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"

# Chrome's numbering on the producer side, mediasoup's router numbering on the consumer side.
PRODUCER_EXTS = {4: URI_MID, 2: URI_ABS, 3: URI_TWCC, 13: URI_ORIENT, 10: URI_RID}
ROUTER_EXTS = {URI_MID: 1, URI_ABS: 4, URI_TWCC: 5, URI_ORIENT: 11}


def builder() -> TemplateBuilder:
    return TemplateBuilder(producer_ext_uris=PRODUCER_EXTS, router_ext_ids=ROUTER_EXTS, mid_uri=URI_MID, twcc_uri=URI_TWCC, drop_uris=(URI_MID, URI_RID, URI_TWCC))


def chrome_packet(seq=7, ts=1234, payload=b"\x10\x00payload", padding=0):
    exts = [(4, b"0"), (2, b"\x01\x02\x03"), (3, b"\x00\x09"), (13, b"\x01"), (10, b"r0")]
    return build_rtp(96, seq, ts, 0xAABBCCDD, payload, marker=True, extensions=exts, padding=padding)


def exts_of(pkt: bytes) -> dict[int, bytes]:
    hdr = parse_rtp_header(pkt)
    return {i: pkt[o : o + n] for i, o, n in iter_extensions(pkt, hdr[6], hdr[7], hdr[8])}


def test_template_uses_router_numbering_and_reserves_slots():
    pkt = chrome_packet()
    t = builder().build(pkt, parse_rtp_header(pkt), 101, 0x12345678)
    hdr = parse_rtp_header(t.data)
    assert hdr[0] == 101 and hdr[1] == 1 and hdr[2] == 7 and hdr[3] == 1234 and hdr[4] == 0x12345678
    assert hdr[6] == 0xBEDE and (hdr[8] - hdr[7]) % 4 == 0
    # mid and twcc slots are zero (padding) until a consumer fills them; rid is gone
    assert exts_of(t.data) == {4: b"\x01\x02\x03", 11: b"\x01"}
    assert t.mid_off == hdr[7] and t.twcc_off == hdr[7] + MID_SLOT_LEN
    assert t.data[t.payload_off : hdr[9]] == b"\x10\x00payload"
    assert sorted(e[0] for e in t.exts) == [4, 11]


def test_template_keeps_padding_and_csrcs():
    pkt = build_rtp(96, 1, 2, 3, b"abc", extensions=[(4, b"1")], padding=4, csrcs=(9, 10))
    t = builder().build(pkt, parse_rtp_header(pkt), 101, 5)
    hdr = parse_rtp_header(t.data)
    assert t.data[hdr[5] : hdr[9]] == b"abc" and len(t.data) - hdr[9] == 4
    assert struct.unpack_from("!II", t.data, 12) == (9, 10)


def test_template_without_extensions_has_no_block():
    b = TemplateBuilder(producer_ext_uris={}, router_ext_ids={}, mid_uri=URI_MID, twcc_uri=URI_TWCC, drop_uris=())
    pkt = build_rtp(0, 1, 2, 3, b"pcmu")
    t = b.build(pkt, parse_rtp_header(pkt), 0, 99)
    assert parse_rtp_header(t.data)[6] == 0 and t.mid_off == -1 and t.twcc_off == -1


def patch(t, out_seq: int, ssrc: int, mid: bytes, allowed: set[int], twcc=None) -> bytes:
    """What a consumer does to its copy (mirrors actors.consumer.Consumer.send_rtp)."""
    buf = bytearray(t.data)
    struct.pack_into("!HII", buf, 2, out_seq, t.timestamp, ssrc)
    slot = bytes([(1 << 4) | (len(mid) - 1)]) + mid
    buf[t.mid_off : t.mid_off + MID_SLOT_LEN] = slot + bytes(MID_SLOT_LEN - len(slot))
    for ext_id, off, n in t.exts:
        if ext_id not in allowed:
            buf[off : off + n] = bytes(n)
    if twcc is not None:
        buf[t.twcc_off] = (5 << 4) | 1
        struct.pack_into("!H", buf, t.twcc_off + 1, twcc)
    return bytes(buf)


def test_consumer_patch_rewrites_mid_and_zeroes_unnegotiated():
    pkt = chrome_packet()
    t = builder().build(pkt, parse_rtp_header(pkt), 101, 0x12345678)
    out = patch(t, 500, 0xCAFE, b"12", {1, 5, 11}, twcc=77)
    hdr = parse_rtp_header(out)
    assert hdr[2] == 500 and hdr[4] == 0xCAFE
    assert exts_of(out) == {1: b"12", 5: b"\x00\x4d", 11: b"\x01"}
    assert t.data == builder().build(pkt, parse_rtp_header(pkt), 101, 0x12345678).data  # shared template untouched


def test_sequence_continuity_across_wrap_and_dropped_packets():
    unwrap = SeqUnwrapper()
    rewriter = SeqRewriter(initial_output=65530)
    out = []
    first = True
    for seq in list(range(65520, 65536)) + list(range(0, 20)):
        ext = unwrap.unwrap(seq)
        if first:
            rewriter.sync(ext)
            first = False
        if seq in (65534, 3):  # packets the consumer does not forward (e.g. filtered)
            rewriter.drop(ext)
            continue
        o = rewriter.input(ext)
        assert o is not None
        out.append(o)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(out, out[1:]))
    assert out[0] == 65530 and len(out) == 34


@given(st.binary(min_size=12, max_size=200))
def test_template_never_crashes_on_parseable_garbage(data):
    data = bytes([0x90 | (data[0] & 0x2F)]) + data[1:]
    try:
        hdr = parse_rtp_header(data)
    except ValueError:
        return
    t = builder().build(data, hdr, 100, 1)
    parse_rtp_header(t.data)  # the template is itself a valid RTP packet
