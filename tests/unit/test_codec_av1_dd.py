"""Dependency descriptor (AV1 RTP spec Appendix A): hand-built L1T3 bits, custom fields, the
ns(n) reader, captured Chrome bytes (L1T2, L2T2, L3T3), and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.codecs.av1_dd import (
    DTI_DISCARDABLE,
    DTI_NOT_PRESENT,
    DTI_REQUIRED,
    DTI_SWITCH,
    DependencyStructure,
    _BitReader,
    parse_dependency_descriptor,
)
from raysfu.transport.errors import PacketParseError


def bits(s: str) -> bytes:
    """'1100 0000 ...' -> bytes, zero-padded to a whole byte (A.2 zero_padding)."""
    s = "".join(s.split())
    s += "0" * (-len(s) % 8)
    return int(s, 2).to_bytes(len(s) // 8, "big") if s else b""


S, D, R, N = "10", "01", "11", "00"  # DTI codes: switch, discardable, required, not present

# L1T3 as libwebrtc's encoder describes it: 5 templates, 3 decode targets (T0, T0-1, T0-2),
# one chain protecting every decode target, 1280x720.
L1T3_KEY = bits(
    "1 1 000000"  # start_of_frame, end_of_frame, frame_dependency_template_id = 0
    "0000000000000001"  # frame_number = 1
    "1 0 0 0 0"  # structure present, no active-DT bitmask, no custom dtis/fdiffs/chains
    "000000 00010"  # template_id_offset = 0, dt_cnt_minus_one = 2
    "00 01 01 00 11"  # template_layers: T0, T0, T1, T2, T2 (next_layer_idc)
    + S + S + S + S + S + S + N + D + R + N + N + D + N + N + D  # template_dtis
    + "0"  # template 0: no fdiff
    "1 0011 0"  # template 1: fdiff 4
    "1 0001 0"  # template 2: fdiff 2
    "1 0000 0"  # template 3: fdiff 1
    "1 0000 0"  # template 4: fdiff 1
    "01"  # chain_cnt = ns(4) -> 1 (2 bits); decode_target_protected_by = ns(1): 0 bits each
    "0000 0100 0010 0001 0011"  # template_chain_fdiff per template: 0, 4, 2, 1, 3
    "1"  # resolutions_present_flag
    + format(1279, "016b") + format(719, "016b")
)


def test_l1t3_structure_from_hand_built_bits():
    r = parse_dependency_descriptor(L1T3_KEY)
    sof, eof, tid_, fn, sid, tid, dtis, fdiffs, chains, active, s, new = r
    assert (sof, eof, tid_, fn, sid, tid) == (True, True, 0, 1, 0, 0)
    assert new is True and active == 0b111
    assert s.num_templates == 5 and s.num_decode_targets == 3 and s.num_chains == 1
    assert s.template_spatial_ids == (0, 0, 0, 0, 0)
    assert s.template_temporal_ids == (0, 0, 1, 2, 2)
    assert s.template_dtis == (
        (DTI_SWITCH,) * 3,
        (DTI_SWITCH,) * 3,
        (DTI_NOT_PRESENT, DTI_DISCARDABLE, DTI_REQUIRED),
        (DTI_NOT_PRESENT, DTI_NOT_PRESENT, DTI_DISCARDABLE),
        (DTI_NOT_PRESENT, DTI_NOT_PRESENT, DTI_DISCARDABLE),
    )
    assert s.template_fdiffs == ((), (4,), (2,), (1,), (1,))
    assert s.template_chain_fdiffs == ((0,), (4,), (2,), (1,), (3,))
    assert s.decode_target_protected_by_chain == (0, 0, 0)
    assert s.decode_target_spatial_ids == (0, 0, 0)
    assert s.decode_target_max_temporal_ids == (0, 1, 2)
    assert s.resolutions == ((1280, 720),)
    assert (s.num_spatial_layers, s.num_temporal_layers) == (1, 3)
    assert s.decode_target(0, 1) == 1 and s.decode_target(1, 0) == -1
    assert (dtis, fdiffs, chains) == (s.template_dtis[0], (), (0,))


def test_l1t3_following_packets_use_the_kept_structure():
    s = parse_dependency_descriptor(L1T3_KEY)[10]
    # Mandatory fields only: template 3 (T2), frame 2, middle packet of the frame.
    r = parse_dependency_descriptor(bytes([0x03, 0x00, 0x02]), s)
    assert r[:6] == (False, False, 3, 2, 0, 2)
    assert r[6:] == ((0, 0, 1), (1,), (1,), None, s, False)
    r = parse_dependency_descriptor(bytes([0x82, 0xFF, 0xFF]), s)
    assert r[:6] == (True, False, 2, 0xFFFF, 0, 1) and r[7] == (2,)


def test_extended_fields_without_structure_active_mask_and_custom_values():
    s = parse_dependency_descriptor(L1T3_KEY)[10]
    value = bits(
        "0 1 000010" + format(7, "016b")  # end of frame, template 2, frame 7
        + "0 1 1 1 1"  # active bitmask present, custom dtis, fdiffs, chains
        + "011"  # active_decode_targets_bitmask (DtCnt = 3 bits): T0 and T0-1 only
        + R + R + N  # frame_dtis
        + "01 0100" + "10" + format(199, "08b") + "00"  # frame_fdiffs: 5, 200, end
        + "00000111"  # frame_chain_fdiff for the one chain: 7
    )
    r = parse_dependency_descriptor(value, s)
    assert r[:6] == (False, True, 2, 7, 0, 1)
    assert r[6:10] == ((3, 3, 0), (5, 200), (7,), 0b011)
    assert r[10] is s and r[11] is False


def test_ns_non_symmetric_reader():
    # n = 5: w = 3, m = 3 -> 0..2 in 2 bits, 3 -> "110", 4 -> "111" (AV1 spec 4.10.7).
    stream = "00" "01" "10" "110" "111"
    rd = _BitReader(bits(stream), 0)
    assert [rd.ns(5) for _ in range(5)] == [0, 1, 2, 3, 4]
    # n = 1 takes no bits; n = 4 is plain 2 bits; n = 3: 0 -> "0", 1 -> "10", 2 -> "11".
    rd = _BitReader(bits("0 10 11 11"), 0)
    assert [rd.ns(1), rd.ns(3), rd.ns(3), rd.ns(3), rd.ns(4)] == [0, 0, 1, 2, 3]


def test_chain_count_decoded_with_ns_upper_range():
    # Two decode targets, 3 (DtCnt + 1) possible chain counts: chain_cnt 2 -> ns(3) "11";
    # decode_target_protected_by: ns(2) = 1 bit each.
    value = bits(
        "1 0 000000" + format(9, "016b") + "1 0 0 0 0"
        + "000000 00001"  # offset 0, DtCnt 2
        + "10 11"  # two templates: S0 then S1 (next spatial layer), end
        + S + S + N + S  # dtis
        + "0" + "1 0000 0"  # fdiffs: (), (1,)
        + "11"  # chain_cnt = 2
        + "0" + "1"  # decode target 0 -> chain 0, decode target 1 -> chain 1
        + "0000 0000" + "0001 0001"  # chain fdiffs
        + "0"  # no resolutions
    )
    s = parse_dependency_descriptor(value)[10]
    assert s.num_chains == 2 and s.decode_target_protected_by_chain == (0, 1)
    assert s.template_spatial_ids == (0, 1) and s.template_chain_fdiffs == ((0, 0), (1, 1))
    assert s.decode_target_spatial_ids == (0, 1) and s.resolutions == ()


# --- captured bytes ----------------------------------------------------------------------------

# Chrome L1T2 keyframes (two structures with template id offsets 0 and 6) and an L2T2 keyframe;
# the expected values are the ones published with these captures.
L1T2_A = bytes([0x80, 0x00, 0x01, 0x80, 0x01, 0x1E, 0xA8, 0x51, 0x41, 0x01, 0x0C, 0x04, 0xFC, 0x03, 0xBC])
L1T2_B = bytes([0x86, 0x00, 0xB5, 0x80, 0xC1, 0x1E, 0xA8, 0x51, 0x41, 0x01, 0x0C, 0x09, 0xFC, 0x07, 0x7C])
L2T2 = bytes.fromhex("c00001800318 7aaaf130a0a014d1413823046008642222265009f00770 13f00ef0".replace(" ", ""))


def test_captured_l1t2():
    r = parse_dependency_descriptor(L1T2_A)
    s = r[10]
    assert r[:6] == (True, False, 0, 1, 0, 0)
    assert s.num_decode_targets == 2 and s.num_templates == 3
    assert s.template_temporal_ids == (0, 0, 1)
    assert s.template_dtis == ((DTI_SWITCH, DTI_SWITCH), (DTI_SWITCH, DTI_SWITCH), (DTI_NOT_PRESENT, DTI_DISCARDABLE))
    assert s.template_fdiffs == ((), (2,), (1,))
    assert s.resolutions == ((320, 240),)
    r = parse_dependency_descriptor(L1T2_B)
    s = r[10]
    assert r[:4] == (True, False, 6, 181) and s.template_id_offset == 6
    assert s.template_index(8) == 2 and s.template_index(5) == -1
    # A later mandatory-only packet of that stream: not start/end, template 8 (T1), frame 216.
    assert parse_dependency_descriptor(bytes([0x08, 0x00, 0xD8]), s)[:6] == (False, False, 8, 216, 0, 1)


def test_captured_l2t2():
    r = parse_dependency_descriptor(L2T2)
    s = r[10]
    assert r[:4] == (True, True, 0, 1)
    assert s.num_decode_targets == 4 and s.num_templates == 6
    assert s.template_spatial_ids == (0, 0, 0, 1, 1, 1)
    assert s.template_temporal_ids == (0, 0, 1, 0, 0, 1)
    assert s.template_dtis[1] == (DTI_SWITCH, DTI_SWITCH, DTI_REQUIRED, DTI_REQUIRED)
    assert s.template_dtis[5] == (0, 0, 0, DTI_DISCARDABLE)
    assert s.template_fdiffs == ((), (4,), (2,), (1,), (4, 1), (2, 1))
    assert (s.num_spatial_layers, s.num_temporal_layers) == (2, 2)
    assert s.decode_target_spatial_ids == (0, 0, 1, 1)
    assert s.decode_target_max_temporal_ids == (0, 1, 0, 1)


def test_captured_l3t3_sequence():
    # Chrome L3T3 capture (published with livekit's tests): keyframe structure then frames.
    key = bytes.fromhex(
        "c1017280081485214eafffaaaa863cf0430c10c302afc0aaa0063c00430010c002a000a80006000040001d9549"
        "26e082b04a0941b820ac1282503157f974000ca864330e222222eca8655304224230eca877530077004200ef00"
        "8601df010d"
    )
    r = parse_dependency_descriptor(key)
    s = r[10]
    assert r[:4] == (True, True, 1, 370) and r[11] is True and r[9] == 0x1FF
    assert s.num_decode_targets == 9 and s.num_chains == 3
    assert (s.num_spatial_layers, s.num_temporal_layers) == (3, 3)
    assert s.decode_target_spatial_ids == (0, 0, 0, 1, 1, 1, 2, 2, 2)
    assert s.decode_target_max_temporal_ids == (0, 1, 2) * 3
    assert s.decode_target_protected_by_chain == (0, 0, 0, 1, 1, 1, 2, 2, 2)
    assert s.resolutions == ((120, 67), (240, 135), (480, 270))
    seen = []
    for h in ("86017340fc", "46017340fc", "c3017540fc", "88017640fc", "48017640fc", "c2017840fc"):
        r = parse_dependency_descriptor(bytes.fromhex(h), s)
        assert r[9] == 0b111111  # every packet here says: the top spatial layer is inactive
        seen.append((r[3], r[4], r[5]))
    assert seen == [(371, 1, 0), (371, 1, 0), (373, 0, 2), (374, 1, 2), (374, 1, 2), (376, 0, 1)]


# --- errors ------------------------------------------------------------------------------------


def test_errors():
    s = parse_dependency_descriptor(L1T3_KEY)[10]
    with pytest.raises(PacketParseError, match="shorter"):
        parse_dependency_descriptor(b"\x80\x00")
    with pytest.raises(PacketParseError, match="no dependency structure"):
        parse_dependency_descriptor(b"\x80\x00\x01")
    with pytest.raises(PacketParseError, match="template id"):
        parse_dependency_descriptor(bytes([0x85, 0, 1]), s)  # only templates 0..4
    with pytest.raises(PacketParseError, match="truncated"):
        parse_dependency_descriptor(L1T3_KEY[:8])


def test_structure_constructor_validates():
    with pytest.raises(ValueError, match="template_dtis"):
        DependencyStructure(0, 2, (0,), (0,), ((2,),), ((),))
    with pytest.raises(ValueError, match="num_decode_targets"):
        DependencyStructure(0, 0, (0,), (0,), ((),), ((),))


@given(st.binary(max_size=40), st.booleans())
def test_fuzz_parse_raises_only_packet_parse_error(data, with_structure):
    structure = parse_dependency_descriptor(L1T3_KEY)[10] if with_structure else None
    try:
        r = parse_dependency_descriptor(data, structure)
    except PacketParseError:
        return
    s = r[10]
    assert 0 <= r[4] < s.num_spatial_layers and 0 <= r[5] < s.num_temporal_layers
    assert len(r[6]) == s.num_decode_targets


@given(st.binary(min_size=0, max_size=30))
def test_fuzz_structure_prefix(tail):
    # Random bits after a valid "structure present" header exercise every structure reader.
    try:
        parse_dependency_descriptor(b"\x80\x00\x01\x80" + tail)
    except PacketParseError:
        pass
