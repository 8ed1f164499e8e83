"""RTP header codec, header extensions, in-place rewrite, RTX and keyframe detection."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import (
    RTP_FIXED,
    build_rtp,
    extensions_of,
    find_extension,
    is_keyframe,
    iter_extensions,
    parse_rtp_header,
    read_abs_send_time,
    read_audio_level,
    read_extension_str,
    read_transport_seq,
    rebuild_packet_with_extensions,
    rewrite_extension_ids,
    rtx_unwrap,
    rtx_wrap,
    set_mid,
    write_header,
    write_transport_seq,
)

PT, SEQ, TS, SSRC = 96, 4242, 123456789, 0x11223344


def test_rtp_fixed_struct():
    assert RTP_FIXED.size == 12


def test_parse_minimal_packet():
    pkt = build_rtp(PT, SEQ, TS, SSRC, b"hello", marker=True)
    assert parse_rtp_header(pkt) == (PT, 1, SEQ, TS, SSRC, 12, 0, 0, 0, len(pkt))
    assert pkt[12:] == b"hello"


def test_parse_one_byte_extensions_by_hand():
    # mid (id 1) = "0", abs-send-time (id 3, 3 bytes), padding byte, audio level (id 5)
    ext = bytes([0x10]) + b"0" + bytes([0x32, 1, 2, 3]) + b"\x00" + bytes([0x50, 0x85])
    ext += bytes(-len(ext) % 4)
    pkt = (
        struct.pack("!BBHII", 0x90, PT, SEQ, TS, SSRC)
        + struct.pack("!HH", 0xBEDE, len(ext) // 4)
        + ext
        + b"payload"
    )
    pt, m, seq, ts, ssrc, hlen, prof, start, end, pend = parse_rtp_header(pkt)
    assert (pt, m, seq, ts, ssrc) == (PT, 0, SEQ, TS, SSRC)
    assert prof == 0xBEDE and start == 16 and end == 16 + len(ext) and hlen == end
    assert pkt[hlen:pend] == b"payload"
    off, length = find_extension(pkt, prof, start, end, 1)
    assert read_extension_str(pkt, off, length) == "0"
    off, length = find_extension(pkt, prof, start, end, 3)
    assert length == 3 and read_abs_send_time(pkt, off) == 0x010203
    off, length = find_extension(pkt, prof, start, end, 5)
    assert read_audio_level(pkt, off) == (True, 5)
    assert find_extension(pkt, prof, start, end, 7) is None
    assert [e[0] for e in iter_extensions(pkt, prof, start, end)] == [1, 3, 5]


def test_one_byte_id_15_stops_parsing():
    ext = bytes([0x10, 0x41, 0xF0, 0x20, 0x42]) + bytes(3)  # id1="A", stop, id2 ignored
    pkt = struct.pack("!BBHII", 0x90, PT, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 2) + ext
    hdr = parse_rtp_header(pkt)
    assert find_extension(pkt, hdr[6], hdr[7], hdr[8], 1) == (17, 1)
    assert find_extension(pkt, hdr[6], hdr[7], hdr[8], 2) is None


def test_two_byte_extensions_with_padding_and_empty_value():
    ext = bytes([0, 0, 20, 3]) + b"abc" + bytes([7, 0]) + bytes([1, 1]) + b"x"
    ext += bytes(-len(ext) % 4)
    pkt = (
        struct.pack("!BBHII", 0x90, PT, SEQ, TS, SSRC)
        + struct.pack("!HH", 0x1000, len(ext) // 4)
        + ext
        + b"P"
    )
    hdr = parse_rtp_header(pkt)
    prof, start, end = hdr[6:9]
    assert prof == 0x1000
    off, length = find_extension(pkt, prof, start, end, 20)
    assert pkt[off : off + length] == b"abc"
    assert find_extension(pkt, prof, start, end, 7)[1] == 0
    assert extensions_of(pkt, prof, start, end) == [(20, b"abc"), (7, b""), (1, b"x")]


def test_csrcs_and_padding():
    pkt = build_rtp(PT, SEQ, TS, SSRC, b"data", csrcs=[1, 2, 3], padding=4)
    pt, m, seq, ts, ssrc, hlen, prof, start, end, pend = parse_rtp_header(pkt)
    assert hlen == 12 + 12 and prof == 0
    assert pkt[hlen:pend] == b"data"
    assert pend == len(pkt) - 4
    assert struct.unpack_from("!3I", pkt, 12) == (1, 2, 3)


def _with_b0(pkt, b0):
    return bytes([b0]) + pkt[1:]


@pytest.mark.parametrize(
    "pkt, reason",
    [
        (b"\x80\x60\x00", "too short"),
        (bytes(11), "too short"),
        (_with_b0(build_rtp(PT, 1, 2, 3, b"x"), 0x40), "version"),
        (_with_b0(build_rtp(PT, 1, 2, 3, b"x"), 0x00), "version"),
        (_with_b0(build_rtp(PT, 1, 2, 3, b"abcd"), 0x82), "CSRC"),  # 2 CSRCs, 4 bytes
        (_with_b0(build_rtp(PT, 1, 2, 3, b"ab"), 0x90), "extension header"),
        (_with_b0(build_rtp(PT, 1, 2, 3, b"\xbe\xde\x00\x05"), 0x90), "extension block"),
        (_with_b0(build_rtp(PT, 1, 2, 3, b"abc\x00"), 0xA0), "padding"),  # padding count 0
        (_with_b0(build_rtp(PT, 1, 2, 3, b"abc\x09"), 0xA0), "padding"),  # more than the payload
    ],
)
def test_parse_errors(pkt, reason):
    with pytest.raises(PacketParseError, match=reason) as info:
        parse_rtp_header(pkt)
    assert info.value.kind == "rtp"
    assert isinstance(info.value, ValueError)


def test_padding_only_packet():
    pkt = build_rtp(PT, 1, 2, 3, b"", padding=200)
    hdr = parse_rtp_header(pkt)
    assert hdr[5] == hdr[9] == 12


def test_extension_overrun_raises():
    # One-byte element claims 4 bytes but the block holds 3 after the header byte.
    pkt = struct.pack("!BBHII", 0x90, PT, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 1)
    pkt += bytes([0x13, 1, 2, 3])
    hdr = parse_rtp_header(pkt)
    with pytest.raises(PacketParseError, match="overruns"):
        find_extension(pkt, hdr[6], hdr[7], hdr[8], 9)
    with pytest.raises(PacketParseError):
        rewrite_extension_ids(bytearray(pkt), hdr[6], hdr[7], hdr[8], {1: 2})


def test_read_extension_str_non_ascii():
    with pytest.raises(PacketParseError):
        read_extension_str(b"\xff\xfe", 0, 2)


def test_transport_seq_read_write():
    pkt = bytearray(build_rtp(PT, 1, 2, 3, b"x", extensions=[(5, b"\x00\x00")]))
    hdr = parse_rtp_header(pkt)
    off, length = find_extension(pkt, hdr[6], hdr[7], hdr[8], 5)
    write_transport_seq(pkt, off, 70000)
    assert read_transport_seq(pkt, off) == 70000 & 0xFFFF


ext_strategy = st.lists(
    st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)),
    max_size=5,
    unique_by=lambda e: e[0],
)
ext2_strategy = st.lists(
    st.tuples(st.integers(1, 255), st.binary(min_size=0, max_size=40)),
    max_size=5,
    unique_by=lambda e: e[0],
)


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=50),
    marker=st.booleans(),
    exts=ext_strategy | ext2_strategy,
    two_byte=st.booleans(),
    padding=st.integers(0, 255),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
)
def test_build_parse_round_trip(pt, seq, ts, ssrc, payload, marker, exts, two_byte, padding, csrcs):
    pkt = build_rtp(
        pt, seq, ts, ssrc, payload, marker=marker, extensions=exts, two_byte=two_byte,
        padding=padding, csrcs=csrcs,
    )
    p, m, s, t, c, hlen, prof, start, end, pend = parse_rtp_header(pkt)
    assert (p, m, s, t, c) == (pt, int(marker), seq, ts, ssrc)
    assert pkt[hlen:pend] == payload
    if exts:
        assert prof in (0xBEDE, 0x1000)
        if two_byte:
            assert prof == 0x1000
        assert extensions_of(pkt, prof, start, end) == [(i, bytes(v)) for i, v in exts]
        for eid, value in exts:
            off, length = find_extension(pkt, prof, start, end, eid)
            assert pkt[off : off + length] == value
    else:
        assert prof == 0


def test_build_rtp_argument_errors():
    with pytest.raises(ValueError, match="payload_type"):
        build_rtp(128, 1, 2, 3)
    with pytest.raises(ValueError, match="padding"):
        build_rtp(96, 1, 2, 3, padding=256)
    with pytest.raises(ValueError, match="csrcs"):
        build_rtp(96, 1, 2, 3, csrcs=list(range(16)))
    with pytest.raises(ValueError, match="extensions"):
        build_rtp(96, 1, 2, 3, extensions=[(0, b"x")])


def test_build_rtp_upgrades_to_two_byte_when_needed():
    pkt = build_rtp(96, 1, 2, 3, b"", extensions=[(1, b"a"), (15, b"long-id")])
    assert parse_rtp_header(pkt)[6] == 0x1000


def test_write_header_in_place():
    buf = bytearray(build_rtp(96, 1, 2, 3, b"pay", marker=True, extensions=[(1, b"m")]))
    write_header(buf, 100, 70001, 2**32 + 5, 0xAABBCCDD)
    hdr = parse_rtp_header(buf)
    assert hdr[:5] == (100, 1, 70001 & 0xFFFF, 5, 0xAABBCCDD)
    write_header(buf, 101, 1, 2, 3, marker=False)
    assert parse_rtp_header(buf)[:5] == (101, 0, 1, 2, 3)
    assert buf.endswith(b"pay")


def _hdr_exts(pkt):
    hdr = parse_rtp_header(pkt)
    return hdr, extensions_of(pkt, hdr[6], hdr[7], hdr[8])


def test_rewrite_extension_ids_one_byte_in_place():
    exts = [(1, b"0"), (3, b"\x01\x02\x03"), (4, b"\x85")]
    pkt = bytearray(build_rtp(96, 1, 2, 3, b"payload", extensions=exts))
    hdr = parse_rtp_header(pkt)
    size = len(pkt)
    # 1 -> 9, 3 not negotiated (removed as padding), 4 -> 4
    assert rewrite_extension_ids(pkt, hdr[6], hdr[7], hdr[8], {1: 9, 4: 4}) is True
    assert len(pkt) == size
    hdr2, exts = _hdr_exts(pkt)
    assert exts == [(9, b"0"), (4, b"\x85")]
    assert pkt[hdr2[5] : hdr2[9]] == b"payload"


def test_rewrite_extension_ids_list_map_and_two_byte():
    exts = [(1, b"ab"), (200, b"cd")]
    pkt = bytearray(build_rtp(96, 1, 2, 3, b"x", extensions=exts, two_byte=True))
    hdr = parse_rtp_header(pkt)
    id_map = [0] * 256
    id_map[200] = 30
    assert rewrite_extension_ids(pkt, hdr[6], hdr[7], hdr[8], id_map) is True
    assert _hdr_exts(pkt)[1] == [(30, b"cd")]


def test_rewrite_extension_ids_refuses_id_above_14_in_one_byte_form():
    pkt = bytearray(build_rtp(96, 1, 2, 3, b"x", extensions=[(1, b"a"), (2, b"b")]))
    before = bytes(pkt)
    hdr = parse_rtp_header(pkt)
    assert rewrite_extension_ids(pkt, hdr[6], hdr[7], hdr[8], {1: 5, 2: 20}) is False
    assert bytes(pkt) == before  # nothing written
    # The rebuild path does it.
    exts = [(20 if i == 2 else 5, v) for i, v in extensions_of(pkt, hdr[6], hdr[7], hdr[8])]
    out = rebuild_packet_with_extensions(pkt, hdr[5], exts)
    hdr2, got = _hdr_exts(out)
    assert hdr2[6] == 0x1000 and got == [(5, b"a"), (20, b"b")]
    assert out[hdr2[5] :] == b"x"


def test_rebuild_keeps_csrcs_padding_and_can_remove_all():
    pkt = build_rtp(
        96, 7, 8, 9, b"payload", extensions=[(1, b"a")], csrcs=[5], padding=3, marker=True
    )
    hdr = parse_rtp_header(pkt)
    out = rebuild_packet_with_extensions(pkt, hdr[5], [])
    h = parse_rtp_header(out)
    assert h[:5] == (96, 1, 7, 8, 9) and h[6] == 0 and h[5] == 16
    assert out[h[5] : h[9]] == b"payload"
    assert out[0] & 0x20  # padding kept


def test_set_mid_same_length_in_place_and_longer_rebuilds():
    pkt = bytearray(build_rtp(96, 1, 2, 3, b"pl", extensions=[(1, b"0"), (4, b"\x85")]))
    hdr = parse_rtp_header(pkt)
    same = set_mid(pkt, hdr[6], hdr[7], hdr[8], hdr[5], 1, "7")
    assert same is pkt
    assert _hdr_exts(pkt)[1] == [(1, b"7"), (4, b"\x85")]
    longer = set_mid(pkt, hdr[6], hdr[7], hdr[8], hdr[5], 1, "video-mid-12")
    h2, exts = _hdr_exts(longer)
    assert exts == [(1, b"video-mid-12"), (4, b"\x85")]
    assert longer[h2[5] : h2[9]] == b"pl"
    assert h2[:5] == hdr[:5]
    # A mid longer than 16 bytes needs the two-byte form.
    long17 = set_mid(pkt, hdr[6], hdr[7], hdr[8], hdr[5], 1, "x" * 17)
    h3, exts3 = _hdr_exts(long17)
    assert h3[6] == 0x1000 and exts3[0] == (1, b"x" * 17)


def test_set_mid_adds_missing_extension():
    pkt = bytearray(build_rtp(96, 1, 2, 3, b"pl"))
    hdr = parse_rtp_header(pkt)
    out = set_mid(pkt, hdr[6], hdr[7], hdr[8], hdr[5], 3, "a")
    assert _hdr_exts(out)[1] == [(3, b"a")]


def test_rtx_round_trip():
    orig = build_rtp(96, 65535, 9000, 0x1234, b"video-data", marker=True, extensions=[(1, b"0")])
    rtx = rtx_wrap(orig, 97, 0x5678, 10)
    h = parse_rtp_header(rtx)
    assert h[:5] == (97, 1, 10, 9000, 0x5678)
    assert rtx[h[5] : h[5] + 2] == b"\xff\xff"  # OSN
    back = rtx_unwrap(rtx, 96, 0x1234)
    assert bytes(back) == orig


def test_rtx_drops_padding_and_padding_only_unwraps_to_none():
    orig = build_rtp(96, 5, 9000, 0x1234, b"abc", padding=5)
    back = rtx_unwrap(rtx_wrap(orig, 97, 0x5678, 1), 96, 0x1234)
    h = parse_rtp_header(back)
    assert back[h[5] : h[9]] == b"abc" and not back[0] & 0x20
    padding_only = build_rtp(97, 3, 0, 0x5678, b"", padding=100)
    assert rtx_unwrap(padding_only, 96, 0x1234) is None
    assert rtx_unwrap(build_rtp(97, 3, 0, 0x5678, b"\x00"), 96, 0x1234) is None


# --- keyframes ---------------------------------------------------------------------------------


def vp8_payload(*, start=True, pid=0, key=True, picture_id=None, tl0=None, tid=None):
    b0 = (0x10 if start else 0) | pid
    ext = b""
    if picture_id is not None or tl0 is not None or tid is not None:
        b0 |= 0x80
        x = 0
        if picture_id is not None:
            x |= 0x80
            ext += struct.pack("!H", 0x8000 | picture_id)
        if tl0 is not None:
            x |= 0x40
            ext += bytes([tl0])
        if tid is not None:
            x |= 0x20
            ext += bytes([tid << 6])
        ext = bytes([x]) + ext
    vp8_hdr = bytes([0x10 if key else 0x11, 0x02, 0x00])  # P bit = bit 0
    return bytes([b0]) + ext + vp8_hdr + b"frame"


@pytest.mark.parametrize(
    "payload, expected",
    [
        (vp8_payload(), True),
        (vp8_payload(picture_id=300, tl0=5, tid=1), True),
        (vp8_payload(key=False), False),
        (vp8_payload(start=False), False),
        (vp8_payload(pid=1), False),
        (vp8_payload(picture_id=1, key=False), False),
        (b"\x10", False),
    ],
)
def test_vp8_keyframe(payload, expected):
    pkt = build_rtp(96, 1, 2, 3, payload)
    h = parse_rtp_header(pkt)
    assert is_keyframe("vp8", pkt, h[5], h[9]) is expected
    assert is_keyframe("video/VP8", pkt, h[5], h[9]) is expected


@pytest.mark.parametrize(
    "payload, expected",
    [
        (bytes([0x65, 0x88]), True),  # IDR
        (bytes([0x67, 0x42]), True),  # SPS
        (bytes([0x41, 0x9A]), False),  # non-IDR slice
        (bytes.fromhex("18" "0002" "6742" "0002" "68ce"), True),  # STAP-A: SPS + PPS
        (bytes.fromhex("18" "0002" "0605" "0002" "6588"), True),  # STAP-A: SEI + IDR
        (bytes.fromhex("18" "0002" "419a"), False),  # STAP-A: non-IDR slice
        (bytes([0x7C, 0x85, 0x88]), True),  # FU-A start of IDR
        (bytes([0x7C, 0x05, 0x88]), False),  # FU-A middle of IDR
        (bytes([0x7C, 0x81, 0x88]), False),  # FU-A start of a non-IDR slice
    ],
)
def test_h264_keyframe(payload, expected):
    pkt = build_rtp(102, 1, 2, 3, payload)
    h = parse_rtp_header(pkt)
    assert is_keyframe("h264", pkt, h[5], h[9]) is expected


@pytest.mark.parametrize(
    "payload, expected",
    [
        (bytes([0x08, 0x00]), True),  # B, not P, no layers
        (bytes([0x48, 0x00]), False),  # P set
        (bytes([0x00, 0x00]), False),  # not the beginning of a frame
        (bytes([0xA8, 0x81, 0x02, 0x00, 0x00]), True),  # I (2-byte pid), L: sid 0
        (bytes([0xA8, 0x81, 0x02, 0x02, 0x00]), False),  # sid 1
    ],
)
def test_vp9_keyframe(payload, expected):
    pkt = build_rtp(98, 1, 2, 3, payload)
    h = parse_rtp_header(pkt)
    assert is_keyframe("VP9", pkt, h[5], h[9]) is expected


def test_av1_and_unknown_codecs():
    pkt = build_rtp(35, 1, 2, 3, bytes([0x18, 0x00]))
    h = parse_rtp_header(pkt)
    assert is_keyframe("av1", pkt, h[5], h[9]) is True
    pkt = build_rtp(35, 1, 2, 3, bytes([0x10, 0x00]))
    assert is_keyframe("video/AV1", pkt, h[5], h[9]) is False
    assert is_keyframe("opus", pkt, h[5], h[9]) is False
    assert is_keyframe("vp8", pkt, h[5], h[5]) is False
