"""RTCP compound parsing, builders, NACK wrap, malformed input and NTP helpers."""

import struct

import pytest
from aiortc import rtp as aiortc_rtp
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtcp import (
    build_bye,
    build_feedback,
    build_fir,
    build_nack,
    build_pli,
    build_remb,
    build_rr,
    build_sdes,
    build_sr,
    compound,
    ms_from_ntp,
    ntp_from_ms,
    ntp_middle32,
    parse_rtcp,
)

BLOCK = (0x22222222, 12, 345, (1 << 16) | 700, 33, 0xAABBCCDD, 0x00012000)


def test_sr_round_trip_with_blocks():
    pkt = build_sr(0x11111111, 3900000000, 0x80000000, 90000, 10, 12000, [BLOCK, BLOCK])
    assert parse_rtcp(pkt) == [
        ("sr", 0x11111111, 3900000000, 0x80000000, 90000, 10, 12000, [BLOCK, BLOCK])
    ]


def test_rr_round_trip_negative_lost():
    block = (1, 0, -5, 100, 0, 0, 0)
    assert parse_rtcp(build_rr(7, [block])) == [("rr", 7, [block])]
    assert parse_rtcp(build_rr(7)) == [("rr", 7, [])]


def test_rr_lost_clamped_to_24_bits():
    block = (1, 0, 10**9, 100, 0, 0, 0)
    assert parse_rtcp(build_rr(7, [block]))[0][2][0][2] == 0x7FFFFF


@pytest.mark.parametrize("cnames", [["a"], ["abc", "x" * 40], ["{12345678-aaaa}", "bb", "ccc"]])
def test_sdes_round_trip(cnames):
    items = [(i + 1, c) for i, c in enumerate(cnames)]
    pkt = build_sdes(items)
    assert len(pkt) % 4 == 0
    assert parse_rtcp(pkt) == [("sdes", items)]


def test_bye_round_trip():
    assert parse_rtcp(build_bye([1, 2, 3])) == [("bye", [1, 2, 3])]


def test_pli_fir_remb_round_trip():
    assert parse_rtcp(build_pli(1, 2)) == [("pli", 1, 2)]
    assert parse_rtcp(build_fir(1, [(5, 7), (6, 300)])) == [("fir", 1, [(5, 7), (6, 300 & 0xFF)])]
    assert parse_rtcp(build_remb(1, 1_000_000, [5, 6])) == [("remb", 1, 1_000_000, [5, 6])]


@pytest.mark.parametrize("bitrate", [0, 1, 0x3FFFF, 0x40000, 2_500_001, 10**10])
def test_remb_mantissa_exponent(bitrate):
    (_, _, got, _), = parse_rtcp(build_remb(1, bitrate, [9]))
    assert got <= bitrate
    assert bitrate - got < max(1, bitrate >> 17)  # 18-bit mantissa precision


def test_twcc_and_generic_feedback():
    fci = bytes(range(10))  # not aligned: RTCP padding is added and stripped
    pkt = build_feedback(205, 15, 1, 2, fci)
    assert len(pkt) % 4 == 0 and pkt[0] & 0x20
    assert parse_rtcp(pkt) == [("twcc", 1, 2, fci)]
    assert parse_rtcp(build_feedback(205, 3, 1, 2, bytes(8))) == [("unknown", 205, 3)]
    assert parse_rtcp(build_feedback(206, 15, 1, 2, b"ABCD" + bytes(4))) == [("unknown", 206, 15)]
    with pytest.raises(ValueError, match="pt"):
        build_feedback(200, 1, 1, 2)


@pytest.mark.parametrize(
    "seqs, items",
    [
        ([5], [(5, 0)]),
        ([5, 6, 8], [(5, 0b101)]),
        ([65535, 0, 1], [(65535, 0b11)]),  # wraps inside one item
        ([65534, 65535, 0, 1, 2, 20], [(65534, 0b1111), (20, 0)]),
        ([10, 27], [(10, 0), (27, 0)]),  # 17 apart: new item
        ([10, 26], [(10, 1 << 15)]),  # 16 apart: last bit
        ([3, 1, 2, 2], [(1, 0b11)]),  # unordered, duplicate
    ],
)
def test_nack_packing(seqs, items):
    pkt = build_nack(1, 2, seqs)
    fci = pkt[12:]
    assert list(struct.iter_unpack("!HH", fci)) == items
    expanded = parse_rtcp(pkt)[0]
    assert expanded[:3] == ("nack", 1, 2)
    assert sorted(expanded[3]) == sorted(set(seqs))


def test_nack_parse_wraps_bitmask_past_65535():
    # Hand-built item: PID 65535 with every BLP bit set must yield 0..15, not 65536..
    pkt = struct.pack("!BBHII", 0x81, 205, 3, 1, 2) + struct.pack("!HH", 65535, 0xFFFF)
    assert parse_rtcp(pkt) == [("nack", 1, 2, [65535] + list(range(16)))]


def test_nack_empty_raises():
    with pytest.raises(ValueError, match="seqs"):
        build_nack(1, 2, [])


@given(st.sets(st.integers(0, 300), min_size=1, max_size=100), st.integers(0, 0xFFFF))
def test_nack_round_trip_any_window(offsets, base):
    seqs = [(base + o) & 0xFFFF for o in sorted(offsets)]
    assert sorted(parse_rtcp(build_nack(1, 2, seqs))[0][3]) == sorted(seqs)


# --- Chrome-like compounds, written byte by byte -----------------------------------------------

CHROME_SR_SDES = bytes.fromhex(
    # SR, RC=0, length 6: ssrc, NTP 0xE9A2F0C1.0x4BC6A7F0, rtp ts, 1205 packets, 1180000 octets
    "80c80006" "1a2b3c4d" "e9a2f0c1" "4bc6a7f0" "0012d687" "000004b5" "00120160"
    # SDES, SC=1, length 6: chunk ssrc, CNAME len 16, END, pad
    "81ca0006" "1a2b3c4d" "0110" + b"BwJ3Tm0W6cQgfSrZ".hex() + "0000"
)

CHROME_RR_SDES_PLI = bytes.fromhex(
    # RR, RC=1, length 7: sender ssrc 1, block about 0x55667788
    "81c90007" "00000001"
    "55667788" "0a00000c" "0001fff0" "00000021" "f0c14bc6" "00008000"
    # SDES, SC=1, length 3: CNAME "abcd"
    "81ca0003" "00000001" "0104" + b"abcd".hex() + "0000"
    # PLI
    "81ce0002" "00000001" "55667788"
)


def test_parse_chrome_sr_sdes():
    items = parse_rtcp(CHROME_SR_SDES)
    assert items == [
        ("sr", 0x1A2B3C4D, 0xE9A2F0C1, 0x4BC6A7F0, 0x0012D687, 1205, 0x120160, []),
        ("sdes", [(0x1A2B3C4D, "BwJ3Tm0W6cQgfSrZ")]),
    ]


def test_parse_chrome_rr_sdes_pli():
    items = parse_rtcp(CHROME_RR_SDES_PLI)
    assert items == [
        ("rr", 1, [(0x55667788, 10, 12, 0x1FFF0, 0x21, 0xF0C14BC6, 0x8000)]),
        ("sdes", [(1, "abcd")]),
        ("pli", 1, 0x55667788),
    ]


def test_compound_of_every_builder():
    parts = [
        build_sr(1, 2, 3, 4, 5, 6),
        build_sdes([(1, "cname")]),
        build_rr(1, [BLOCK]),
        build_nack(1, 2, [10, 11]),
        build_pli(1, 2),
        build_fir(1, [(2, 3)]),
        build_remb(1, 300000, [2]),
        build_bye([1]),
    ]
    kinds = [item[0] for item in parse_rtcp(compound(*parts))]
    assert kinds == ["sr", "sdes", "rr", "nack", "pli", "fir", "remb", "bye"]


def test_xr_app_and_unknown_pt():
    xr = struct.pack("!BBHI", 0x80, 207, 3, 9) + bytes.fromhex("04000002" "00000001")
    app = struct.pack("!BBHI", 0x81, 204, 2, 9) + b"name"
    other = struct.pack("!BBHI", 0x80, 199, 1, 9)
    assert parse_rtcp(xr + app + other) == [
        ("xr", 9, bytes.fromhex("0400000200000001")),
        ("app", 204, 1),
        ("unknown", 199, 0),
    ]


def test_cross_check_with_aiortc():
    # Our SR/RR/NACK/REMB parsed by aiortc, and aiortc's packets parsed by us.
    sr = build_sr(1, 0xE9A2F0C1, 0x4BC6A7F0, 90000, 10, 1000, [BLOCK])
    (theirs,) = aiortc_rtp.RtcpPacket.parse(sr)
    assert theirs.ssrc == 1 and theirs.sender_info.rtp_timestamp == 90000
    assert theirs.reports[0].lsr == BLOCK[5] and theirs.reports[0].packets_lost == 345
    nack = aiortc_rtp.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[100, 101, 116, 200])
    assert parse_rtcp(bytes(nack)) == [("nack", 1, 2, [100, 101, 116, 200])]
    remb = aiortc_rtp.RtcpPsfbPacket(
        fmt=15, ssrc=1, media_ssrc=0, fci=aiortc_rtp.pack_remb_fci(750000, [7, 8])
    )
    assert parse_rtcp(bytes(remb)) == [("remb", 1, 750000, [7, 8])]
    (their_remb,) = aiortc_rtp.RtcpPacket.parse(build_remb(1, 750000, [7, 8]))
    assert aiortc_rtp.unpack_remb_fci(their_remb.fci) == (750000, [7, 8])


# --- malformed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x80\xc8", "too short"),
        (bytes.fromhex("40c90001 00000001"), "version"),
        (bytes.fromhex("80c90005 00000001"), "overruns"),
        (build_rr(1) + b"\x80\xc9", "trailing"),
        (bytes.fromhex("81c90001 00000001"), "RR too short"),  # RC=1, no block
        (bytes.fromhex("80c80001 00000001"), "SR too short"),
        (bytes.fromhex("82cb0001 00000001"), "BYE too short"),
        (bytes.fromhex("81cd0001 00000001"), "feedback packet too short"),
        (bytes.fromhex("81cd0002 00000001 00000002"), "NACK FCI"),
        (bytes.fromhex("84ce0003 00000001 00000000 00000005"), "FIR"),
        (bytes.fromhex("8fce0004 00000001 00000000 52454d42 02000000"), "REMB too short"),
        (bytes.fromhex("81ca0002 00000001 01080000"), "SDES"),
        (bytes.fromhex("81ca0001 00000001"), "SDES"),
        (bytes.fromhex("a0c90001 00000000"), "padding"),  # padding count 0
        (bytes.fromhex("a0c90001 00000009"), "padding"),  # more than the body
        # a good SR followed by one bad item: the whole compound is refused
        (build_sr(1, 2, 3, 4, 5, 6) + bytes.fromhex("81c90005 00000001"), "overruns"),
    ],
)
def test_malformed_raises(data, reason):
    with pytest.raises(PacketParseError, match=reason) as info:
        parse_rtcp(data)
    assert info.value.kind == "rtcp"


def test_builder_argument_errors():
    with pytest.raises(ValueError, match="fraction_lost"):
        build_rr(1, [(1, 256, 0, 0, 0, 0, 0)])
    with pytest.raises(ValueError, match="reports"):
        build_rr(1, [BLOCK] * 32)
    with pytest.raises(ValueError, match="entries"):
        build_fir(1, [])
    with pytest.raises(ValueError, match="bitrate_bps"):
        build_remb(1, -1, [])


# --- NTP ---------------------------------------------------------------------------------------


def test_ntp_from_ms_and_back():
    unix_ms = 1_700_000_000_250
    sec, frac = ntp_from_ms(unix_ms)
    assert sec == 1_700_000_000 + 2208988800
    assert frac == 1 << 30  # 0.25 s
    assert ms_from_ntp(sec, frac) == unix_ms
    assert ntp_middle32(sec, frac) == ((sec & 0xFFFF) << 16) | 0x4000


@given(st.integers(0, 4_000_000_000_000))  # 1970 .. 2096, across the 2036 NTP wrap
def test_ntp_ms_round_trip(unix_ms):
    assert ms_from_ntp(*ntp_from_ms(unix_ms)) in (unix_ms, unix_ms - 1)
