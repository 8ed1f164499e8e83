"""VP8 payload descriptor parse, temporal filter and picture id / TL0PICIDX rewriting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.codecs.vp8 import (
    IS_KEYFRAME,
    PICTURE_ID,
    TL0PICIDX,
    PictureIdMap,
    VP8Rewriter,
    parse_vp8_descriptor,
    should_forward,
)
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import is_keyframe_vp8


def vp8(
    picture_id=None, m=True, tl0=None, tid=None, y=0, keyidx=None, s=1, pid=0, n=0,
    keyframe=False, extended=True, payload=b"\x00\x00\x00",
) -> bytearray:
    """Build a VP8 payload: descriptor + a VP8 payload header whose P bit says key/inter."""
    i_, l_, t_, k_ = picture_id is not None, tl0 is not None, tid is not None, keyidx is not None
    b0 = (0x80 if extended else 0) | (n << 5) | (s << 4) | pid
    out = bytearray([b0])
    if extended:
        out.append((i_ << 7) | (l_ << 6) | (t_ << 5) | (k_ << 4))
        if i_:
            if m:
                out += bytes([0x80 | (picture_id >> 8), picture_id & 0xFF])
            else:
                out.append(picture_id)
        if l_:
            out.append(tl0)
        if t_ or k_:
            out.append(((tid or 0) << 6) | (y << 5) | (keyidx or 0))
    out.append(0x00 if keyframe else 0x01)
    out += payload
    return out


def parse(buf):
    return parse_vp8_descriptor(buf, 0, len(buf))


def written(buf):
    d = parse(buf)
    return d[PICTURE_ID], d[TL0PICIDX]


# --- parse -------------------------------------------------------------------------------------


def test_parse_full_descriptor_15_bit():
    buf = vp8(picture_id=0x1234, tl0=200, tid=2, y=1, keyidx=5, keyframe=False)
    d = parse(buf)
    assert d == (1, 0, 1, 0, 0x1234, 1, 200, 2, 1, 5, 6, False)


def test_parse_7_bit_picture_id_and_keyframe():
    buf = vp8(picture_id=0x55, m=False, tl0=3, tid=0, keyframe=True)
    d = parse(buf)
    assert d[PICTURE_ID] == 0x55 and d[5] == 0 and d[TL0PICIDX] == 3 and d[7] == 0
    assert d[10] == 5
    assert d[IS_KEYFRAME] is True
    assert is_keyframe_vp8(buf, 0, len(buf))


def test_parse_without_extension():
    d = parse(vp8(extended=False, keyframe=True))
    assert d == (0, 0, 1, 0, -1, 0, -1, -1, 0, -1, 1, True)


def test_keyframe_needs_start_of_partition_zero():
    assert not parse(vp8(picture_id=1, s=0, keyframe=True))[IS_KEYFRAME]
    assert not parse(vp8(picture_id=1, pid=1, keyframe=True))[IS_KEYFRAME]
    assert not parse(vp8(picture_id=1, keyframe=False))[IS_KEYFRAME]


def test_keyidx_without_tid_reports_no_tid():
    d = parse(vp8(keyidx=7))
    assert d[7] == -1 and d[8] == 0 and d[9] == 7


def test_parse_offsets_inside_larger_buffer():
    inner = vp8(picture_id=300, tl0=9, tid=1)
    buf = b"\xff" * 12 + bytes(inner) + b"\xee" * 4
    assert parse_vp8_descriptor(buf, 12, 12 + len(inner)) == parse(inner)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\x80", b"\x80\x80\x80", b"\x80\x40", b"\x80\x20"])
def test_truncated_descriptor_raises(data):
    with pytest.raises(PacketParseError):
        parse_vp8_descriptor(data, 0, len(data))


@given(st.binary(max_size=12))
def test_fuzz_parse_raises_only_packet_parse_error(data):
    try:
        d = parse_vp8_descriptor(data, 0, len(data))
    except PacketParseError:
        return
    assert 1 <= d[10] <= len(data)
    assert d[IS_KEYFRAME] == is_keyframe_vp8(data, 0, len(data))


# --- temporal filter ---------------------------------------------------------------------------


def test_should_forward_rules():
    assert should_forward(0, 0, 0, 0)
    assert not should_forward(1, 0, 0, 1)  # above target
    assert not should_forward(2, 2, 1, 0)  # upgrade without layer sync
    assert should_forward(2, 2, 1, 1)  # upgrade on layer sync
    assert should_forward(1, 2, 1, 0)  # current layer
    assert should_forward(0, 2, -1, 0)  # TL0 always when target >= 0
    assert should_forward(-1, 0, 0, 0)  # no TID


# --- PictureIdMap ------------------------------------------------------------------------------


def test_picture_id_map_identity_then_gap_closed():
    m = PictureIdMap()
    assert m.map(10, 0x7FFF) == 10
    m.drop(11, 0x7FFF)
    assert m.map(12, 0x7FFF) == 11
    assert m.map(12, 0x7FFF) == 11  # another packet of the same frame
    assert m.map(11, 0x7FFF) == -1  # the dropped frame never goes out


def test_picture_id_map_sync_continues_output():
    m = PictureIdMap()
    for v in (100, 101, 102):
        m.map(v, 0x7FFF)
    m.sync(5000, 0x7FFF)
    assert m.map(5000, 0x7FFF) & 0x7FFF == 103
    assert m.map(5001, 0x7FFF) & 0x7FFF == 104
    assert m.map(4999, 0x7FFF) == -1  # older than the sync point


# --- VP8Rewriter -------------------------------------------------------------------------------


def send(rw, buf, **kw):
    """Run one packet through the rewriter; returns (sent, picture_id, tl0) as written."""
    desc = parse(buf)
    ok = rw.process(buf, 0, desc, **kw)
    return (ok,) + written(buf)


def test_15_bit_picture_id_and_tl0picidx_wrap_with_dropped_frames():
    rw = VP8Rewriter(target_temporal_layer=0)
    out = []
    for k in range(14):  # input picture ids cross 0x7FFF -> 0, TL0PICIDX crosses 255 -> 0
        pic = (0x7FF8 + k) & 0x7FFF
        tid = k % 2  # odd frames are TL1: dropped
        tl0 = (252 + k // 2) & 0xFF
        ok, p, t = send(rw, vp8(picture_id=pic, tl0=tl0, tid=tid, y=1))
        if ok:
            out.append((p, t))
    assert out == [((0x7FF8 + j) & 0x7FFF, (252 + j) & 0xFF) for j in range(7)]
    assert out[-1] == (0x7FFE, 2)
    # Now forward everything: the output keeps counting through 0x7FFF into 0.
    rw.target_temporal_layer = 3
    got = [send(rw, vp8(picture_id=(0x7FF8 + k) & 0x7FFF, tl0=3, tid=0))[1] for k in range(14, 17)]
    assert got == [0x7FFF, 0, 1]


def test_7_bit_picture_id_stays_7_bit_and_wraps_at_0x7f():
    rw = VP8Rewriter(target_temporal_layer=0)
    got = []
    for k in range(10):
        pic = (0x7B + k) & 0x7F
        buf = vp8(picture_id=pic, m=False, tl0=k // 2, tid=k % 2, y=1)
        size = len(buf)
        ok = rw.process(buf, 0, parse(buf))
        assert len(buf) == size  # rewritten in place, form kept
        if ok:
            d = parse(buf)
            assert d[5] == 0
            got.append(d[PICTURE_ID])
    assert got == [0x7B, 0x7C, 0x7D, 0x7E, 0x7F]
    buf = vp8(picture_id=(0x7B + 10) & 0x7F, m=False, tl0=5, tid=0)
    assert rw.process(buf, 0, parse(buf)) and parse(buf)[PICTURE_ID] == 0


def test_tl0picidx_continuous_across_dropped_tl0_frames_and_switch():
    rw = VP8Rewriter()
    assert send(rw, vp8(picture_id=10, tl0=20, tid=0)) == (True, 10, 20)
    # The consumer drops two TL0 frames (e.g. paused without sync, or bandwidth).
    for pic, tl0 in ((11, 21), (12, 22)):
        buf = vp8(picture_id=pic, tl0=tl0, tid=0)
        rw.drop(parse(buf))
    assert send(rw, vp8(picture_id=13, tl0=23, tid=0)) == (True, 11, 21)
    # Switch to another simulcast stream with unrelated numbering, at a keyframe.
    rw.sync(current_temporal_layer=0)
    assert send(rw, vp8(picture_id=30000, tl0=200, tid=0, keyframe=True)) == (True, 12, 22)
    assert send(rw, vp8(picture_id=30001, tl0=200, tid=1, y=1)) == (True, 13, 22)
    assert send(rw, vp8(picture_id=30002, tl0=201, tid=0)) == (True, 14, 23)
    # A late packet of the old stream's numbering is refused.
    assert send(rw, vp8(picture_id=29990, tl0=199, tid=0))[0] is False


def test_switch_between_7_bit_and_15_bit_sources_stays_continuous():
    rw = VP8Rewriter()
    assert send(rw, vp8(picture_id=0x7E, m=False, tl0=1, tid=0))[:2] == (True, 0x7E)
    assert send(rw, vp8(picture_id=0x7F, m=False, tl0=2, tid=0))[:2] == (True, 0x7F)
    rw.sync()
    assert send(rw, vp8(picture_id=0x4000, m=True, tl0=9, tid=0)) == (True, 0x80, 3)


def test_temporal_downgrade_immediate_upgrade_on_layer_sync():
    rw = VP8Rewriter(target_temporal_layer=2)
    pattern = [0, 2, 1, 2]  # L1T3 pattern
    results = []
    pic = 100
    tl0 = 0
    for rnd in range(3):
        for tid in pattern:
            if tid == 0:
                tl0 += 1
            if rnd == 1 and tid == 0:
                rw.target_temporal_layer = 0
            if rnd == 2 and tid == 0:
                rw.target_temporal_layer = 2
            ok, p, _ = send(rw, vp8(picture_id=pic, tl0=tl0, tid=tid, y=1 if (rnd == 2 and tid == 1) else 0))
            results.append((tid, ok, p if ok else None))
            pic += 1
    sent = [(tid, ok) for tid, ok, _ in results]
    # Round 0: everything. Round 1: only TL0. Round 2: TL0, TL2 refused (no sync),
    # TL1 with Y=1 accepted, then TL2 with no Y refused (current is 1).
    assert sent[:4] == [(0, True), (2, True), (1, True), (2, True)]
    assert sent[4:8] == [(0, True), (2, False), (1, False), (2, False)]
    assert sent[8:] == [(0, True), (2, False), (1, True), (2, False)]
    pics = [p for _, ok, p in results if ok]
    assert pics == list(range(100, 100 + len(pics)))  # continuous output picture ids
    assert rw.current_temporal_layer == 1


def test_reordered_packet_of_forwarded_frame_passes_filter():
    rw = VP8Rewriter(target_temporal_layer=1)
    assert send(rw, vp8(picture_id=1, tl0=1, tid=0))[0]
    assert send(rw, vp8(picture_id=2, tl0=1, tid=1, y=1)) == (True, 2, 1)
    assert send(rw, vp8(picture_id=3, tl0=2, tid=0)) == (True, 3, 2)
    rw.target_temporal_layer = 0
    # Second packet of picture 2 arrives late: its frame was forwarded, so it goes too.
    assert send(rw, vp8(picture_id=2, tl0=1, tid=1, s=0)) == (True, 2, 1)


def test_stream_without_picture_id_passes_unchanged():
    rw = VP8Rewriter()
    buf = vp8(extended=False)
    before = bytes(buf)
    assert rw.process(buf, 0, parse(buf))
    assert bytes(buf) == before


def test_rewrite_at_payload_offset_in_rtp_copy():
    rw = VP8Rewriter()
    header = bytes(12)
    rw.rewrite(bytearray(header + vp8(picture_id=500, tl0=7, tid=0)), 12, parse(vp8(picture_id=500, tl0=7, tid=0)))
    rw.drop(parse(vp8(picture_id=501, tl0=8, tid=0)))
    pkt = bytearray(header) + vp8(picture_id=502, tl0=9, tid=0)
    assert rw.rewrite(pkt, 12, parse_vp8_descriptor(pkt, 12, len(pkt)))
    d = parse_vp8_descriptor(pkt, 12, len(pkt))
    assert (d[PICTURE_ID], d[TL0PICIDX]) == (501, 8)
    assert pkt[:12] == header


def test_bad_target_raises():
    with pytest.raises(ValueError, match="target_temporal_layer"):
        VP8Rewriter(target_temporal_layer=4)


def test_long_drop_run_in_7_bit_form_keeps_mapping_fresh():
    rw = VP8Rewriter()
    assert send(rw, vp8(picture_id=5, m=False, tl0=1, tid=0))[:2] == (True, 5)
    for k in range(1, 128):  # 127 dropped frames: the input wraps back to 5 after them
        rw.drop(parse(vp8(picture_id=(5 + k) & 0x7F, m=False, tl0=1, tid=1)))
    assert send(rw, vp8(picture_id=5, m=False, tl0=1, tid=0))[:2] == (True, 6)
