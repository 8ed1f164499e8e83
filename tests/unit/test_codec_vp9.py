"""VP9 payload descriptor parse (flexible / non-flexible, scalability structure) and the SVC /
K-SVC layer filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.codecs.vp9 import (
    IS_KEYFRAME,
    P_DIFFS,
    PICTURE_ID,
    SID,
    SS,
    TID,
    TL0PICIDX,
    VP9LayerFilter,
    parse_vp9_descriptor,
)
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import is_keyframe_vp9


def vp9(
    picture_id=None, m=True, p=0, b=1, e=1, z=0, flexible=False, tid=None, u=0, sid=None, d=0,
    tl0=None, p_diffs=(), ss=None, payload=b"\x00\x00",
) -> bytearray:
    """Build a VP9 payload. ``ss``: (resolutions or None, picture_group or None)."""
    has_l = tid is not None or sid is not None
    b0 = (
        ((picture_id is not None) << 7) | (p << 6) | (has_l << 5) | (flexible << 4) | (b << 3)
        | (e << 2) | ((ss is not None) << 1) | z
    )
    out = bytearray([b0])
    if picture_id is not None:
        out += bytes([0x80 | (picture_id >> 8), picture_id & 0xFF]) if m else bytes([picture_id])
    if has_l:
        out.append(((tid or 0) << 5) | (u << 4) | ((sid or 0) << 1) | d)
        if not flexible:
            out.append(tl0 or 0)
    if flexible and p:
        for k, diff in enumerate(p_diffs):
            out.append((diff << 1) | (k < len(p_diffs) - 1))
    if ss is not None:
        resolutions, group = ss
        n_s = len(resolutions) if resolutions else 1
        out.append(((n_s - 1) << 5) | ((resolutions is not None) << 4) | ((group is not None) << 3))
        for w, h in resolutions or ():
            out += w.to_bytes(2, "big") + h.to_bytes(2, "big")
        if group is not None:
            out.append(len(group))
            for gtid, gu, diffs in group:
                out.append((gtid << 5) | (gu << 4) | (len(diffs) << 2))
                out += bytes(diffs)
    return out + payload


def parse(buf):
    return parse_vp9_descriptor(buf, 0, len(buf))


# --- parse -------------------------------------------------------------------------------------


def test_non_flexible_with_layer_indices():
    buf = vp9(picture_id=0x1ABC, tid=2, u=1, sid=1, d=1, tl0=77, p=1, b=0, e=1)
    d = parse(buf)
    assert d[:8] == (1, 1, 1, 0, 0, 1, 0, 0)
    assert d[PICTURE_ID] == 0x1ABC and d[9] == 1
    assert d[TID:TL0PICIDX + 1] == (2, 1, 1, 1, 77)
    assert d[P_DIFFS] == () and d[SS] is None
    assert d[17] == 5 and d[IS_KEYFRAME] is False


def test_flexible_mode_reference_diffs():
    buf = vp9(picture_id=5, m=False, flexible=True, p=1, tid=1, sid=0, p_diffs=(1, 3, 127))
    d = parse(buf)
    assert d[3] == 1 and d[TL0PICIDX] == -1
    assert d[P_DIFFS] == (1, 3, 127)
    assert d[17] == 1 + 1 + 1 + 3


def test_more_than_three_p_diffs_raises():
    buf = bytearray([0xD8, 0x05, 0x03, 0x03, 0x03, 0x03, 0x00])
    with pytest.raises(PacketParseError, match="P_DIFF"):
        parse(buf)


def test_keyframe_with_full_scalability_structure():
    group = ((0, 0, (4,)), (2, 1, (1,)), (1, 1, (2,)), (2, 1, (1,)))
    buf = vp9(picture_id=1000, tid=0, sid=0, tl0=0, ss=(((320, 180), (640, 360), (1280, 720)), group))
    d = parse(buf)
    assert d[IS_KEYFRAME] is True and d[6] == 1
    n_s, resolutions, pg = d[SS]
    assert n_s == 3
    assert resolutions == ((320, 180), (640, 360), (1280, 720))
    assert pg == group
    assert d[17] == len(buf) - 2
    assert is_keyframe_vp9(buf, 0, len(buf))


def test_scalability_structure_without_resolutions_or_group():
    d = parse(vp9(ss=(None, None)))
    assert d[SS] == (1, (), ())
    assert d[TID] == -1 and d[SID] == -1 and d[IS_KEYFRAME]


def test_upper_spatial_layer_of_keyframe_is_not_keyframe():
    assert not parse(vp9(picture_id=1, tid=0, sid=1, tl0=0))[IS_KEYFRAME]
    assert not parse(vp9(picture_id=1, tid=0, sid=0, tl0=0, b=0))[IS_KEYFRAME]
    assert not parse(vp9(picture_id=1, tid=0, sid=0, tl0=0, p=1))[IS_KEYFRAME]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\x80\x80", b"\x20", b"\x20\x00", b"\x02", b"\x52\x01", b"\x02\x08", b"\x02\x08\x01\x0c\x00"],
)
def test_truncated_descriptor_raises(data):
    with pytest.raises(PacketParseError):
        parse_vp9_descriptor(data, 0, len(data))


@given(st.binary(max_size=24))
def test_fuzz_parse_raises_only_packet_parse_error(data):
    try:
        d = parse_vp9_descriptor(data, 0, len(data))
    except PacketParseError:
        return
    assert 1 <= d[17] <= len(data)
    assert d[IS_KEYFRAME] == is_keyframe_vp9(data, 0, len(data))


# --- layer filter ------------------------------------------------------------------------------


def frames(n_pictures, spatial, temporal_pattern, ksvc=False, start_pic=0):
    """Packets (one per layer frame) of an LxTy stream starting with a keyframe."""
    out = []
    for k in range(n_pictures):
        tid = temporal_pattern[k % len(temporal_pattern)]
        for sid in range(spatial):
            key = k == 0
            # Full SVC: upper layers predict from the lower layer (P=0 on keyframe's upper layers
            # in K-SVC is false: they are inter-layer predicted but P stays 0 only in SID 0).
            p = 0 if key else 1
            out.append(vp9(picture_id=start_pic + k, tid=tid, sid=sid, tl0=k, p=p, u=1 if tid else 0,
                           d=1 if sid and (key or not ksvc) else 0))
    return out


def run(flt, packets):
    res = []
    for buf in packets:
        d = parse(buf)
        fwd, marker = flt.process(d)
        res.append((d[SID], d[TID], fwd, marker))
    return res


def test_full_svc_forwards_up_to_target_and_sets_marker_on_top_layer():
    flt = VP9LayerFilter(3, 3)
    flt.target_spatial_layer = 1
    flt.target_temporal_layer = 1
    res = run(flt, frames(4, 3, [0, 2, 1, 2]))
    sent = [(s, t, mk) for s, t, f, mk in res if f]
    assert all(s <= 1 and t <= 1 for s, t, _ in sent)
    assert sent == [(0, 0, False), (1, 0, True), (0, 1, False), (1, 1, True)]
    assert (flt.current_spatial_layer, flt.current_temporal_layer) == (1, 1)


def test_nothing_forwarded_before_a_keyframe():
    flt = VP9LayerFilter(2, 1)
    inter = frames(3, 2, [0])[2:]  # skip the keyframe's packets
    assert not any(f for _, _, f, _ in run(flt, inter))


def test_full_svc_spatial_down_switch_without_keyframe_up_switch_needs_keyframe():
    flt = VP9LayerFilter(3, 1)
    pkts = frames(6, 3, [0])
    res = run(flt, pkts[:6])  # keyframe + one picture, all layers
    assert all(f for _, _, f, _ in res)
    flt.target_spatial_layer = 0
    res = run(flt, pkts[6:9])
    assert [f for _, _, f, _ in res] == [True, False, False]  # down at end of the SID 0 frame
    assert flt.current_spatial_layer == 0
    assert res[0][3] is True  # marker now on the SID 0 packet
    flt.target_spatial_layer = 2
    res = run(flt, pkts[9:])
    assert not any(f and s > 0 for s, _, f, _ in res)  # no up-switch on inter pictures
    key = frames(1, 3, [0], start_pic=50)
    assert [f for _, _, f, _ in run(flt, key)] == [True, True, True]
    assert flt.current_spatial_layer == 2


def test_ksvc_forwards_only_target_spatial_layer_on_inter_pictures():
    flt = VP9LayerFilter(3, 1, ksvc=True)
    flt.target_spatial_layer = 1
    res = run(flt, frames(3, 3, [0], ksvc=True))
    # Keyframe: SID 0 and 1 (inter-layer prediction); after: only SID 1.
    assert [(s, f) for s, _, f, _ in res] == [
        (0, True), (1, True), (2, False),
        (0, False), (1, True), (2, False),
        (0, False), (1, True), (2, False),
    ]
    flt.target_spatial_layer = 0
    res = run(flt, frames(2, 3, [0], ksvc=True, start_pic=10)[3:])  # inter pictures only
    assert [(s, f) for s, _, f, _ in res] == [(0, False), (1, True), (2, False)]  # waits for key
    res = run(flt, frames(1, 3, [0], ksvc=True, start_pic=20))
    assert [(s, f) for s, _, f, _ in res] == [(0, True), (1, False), (2, False)]
    assert flt.current_spatial_layer == 0


def test_temporal_up_switch_only_at_switching_point_and_not_past_target():
    flt = VP9LayerFilter(1, 3)
    flt.target_temporal_layer = 0
    run(flt, frames(1, 1, [0]))
    flt.target_temporal_layer = 1
    no_u = vp9(picture_id=1, tid=1, sid=0, tl0=0, p=1, u=0)
    assert flt.process(parse(no_u)) == (False, False)
    tl2 = vp9(picture_id=2, tid=2, sid=0, tl0=0, p=1, u=1)
    assert flt.process(parse(tl2)) == (False, False)  # above target even with U=1
    with_u = vp9(picture_id=3, tid=1, sid=0, tl0=0, p=1, u=1)
    assert flt.process(parse(with_u)) == (True, True)
    assert flt.current_temporal_layer == 1


def test_layers_beyond_announced_are_dropped():
    flt = VP9LayerFilter(1, 1)
    assert flt.process(parse(vp9(picture_id=0, tid=0, sid=1, tl0=0))) == (False, False)


def test_reordered_packet_skips_layer_rules():
    flt = VP9LayerFilter(1, 2)
    run(flt, frames(3, 1, [0, 1]))
    flt.target_temporal_layer = 0
    run(flt, [vp9(picture_id=3, tid=0, sid=0, tl0=3, p=1, e=1)])
    late = vp9(picture_id=1, tid=1, sid=0, tl0=1, p=1, b=0, e=1)
    assert flt.process(parse(late))[0] is True


def test_bad_layer_counts_raise():
    with pytest.raises(ValueError, match="spatial_layers"):
        VP9LayerFilter(0, 1)
    with pytest.raises(ValueError, match="temporal_layers"):
        VP9LayerFilter(1, 9)
