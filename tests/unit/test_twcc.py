"""transport-cc feedback: wire codec (byte-exact, round trips), receive recorder, send history."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raysfu.bwe.twcc import (
    PacketResult,
    SendHistory,
    TwccRecorder,
    build_fci,
    build_feedback,
    feedback_arrivals_us,
    parse_feedback,
    parse_feedback_packet,
)
from raysfu.transport.errors import PacketParseError

REF_WRAP_US = (1 << 24) * 64_000


def _arrivals_from_deltas(base_seq, ref_64ms, deltas_us):
    t = ref_64ms * 64_000
    out = []
    for i, d in enumerate(deltas_us):
        if d is None:
            out.append(((base_seq + i) & 0xFFFF, None))
        else:
            t += d
            out.append(((base_seq + i) & 0xFFFF, t))
    return out


# --- byte-exact examples ---------------------------------------------------------------------
# Packets from pion/webrtc-rs transport_layer_cc tests (captured from Chrome): "example4"
# (run-length chunk, 7 small deltas, 3 bytes RTCP padding) and "example6" of the marshal table
# (one-bit status vector, 12 statuses, 4 trailing losses).

CHROME_RUN_LENGTH = bytes.fromhex(
    "afcd0007fa17fa17193dd8bb0004000710636e0120074c2424100c0c10000003")
CHROME_ONE_BIT = bytes.fromhex(
    "afcd0007fa17fa1743032fa09c14000c75842000bec0c13f3b3f53903b000003")


def test_build_matches_chrome_run_length_packet():
    arrivals = _arrivals_from_deltas(4, 1074030, [19000, 9000, 9000, 4000, 3000, 3000, 4000])
    assert build_feedback(0xFA17FA17, 0x193DD8BB, 4, 1, arrivals) == CHROME_RUN_LENGTH


def test_build_matches_chrome_one_bit_vector_packet():
    deltas = [48250, 15750, 14750, 15750, 20750, None, 36000, 14750, None, None, None, None]
    arrivals = _arrivals_from_deltas(39956, 7701536, deltas)
    assert build_feedback(0xFA17FA17, 0x43032FA0, 39956, 0, arrivals) == CHROME_ONE_BIT


def test_parse_chrome_packets():
    ssrc, media, parsed = parse_feedback_packet(CHROME_RUN_LENGTH)
    assert (ssrc, media) == (0xFA17FA17, 0x193DD8BB)
    assert parsed == (4, 7, 1074030, 1, [(4, 19000), (5, 9000), (6, 9000), (7, 4000),
                                         (8, 3000), (9, 3000), (10, 4000)])
    _, _, parsed = parse_feedback_packet(CHROME_ONE_BIT)
    assert [d for _, d in parsed[4]] == [48250, 15750, 14750, 15750, 20750, None, 36000, 14750,
                                         None, None, None, None]


def test_parse_two_run_length_chunks_with_large_deltas():
    # pion "example3": run of 2 large (0x4002), run of 4 small (0x2004), no padding.
    fci = bytes.fromhex("0174000645b15a40400220041ffe1f9ad000d000")
    assert parse_feedback(fci) == (372, 6, 4567386, 64, [
        (372, 2047500), (373, 2022500), (374, 52000), (375, 0), (376, 52000), (377, 0)])


def test_hand_computed_two_bit_vector_with_negative_delta():
    # base 65534, reference 2 (128 ms); seq 65534 at +1 ms, 65535 lost, 0 at -0.5 ms (reordered,
    # large), 1 at +300 ms relative to that (large), 2 at +0.25 ms (small).
    arrivals = [(65534, 129_000), (0, 128_500), (1, 428_500), (2, 428_750)]
    fci = build_fci(65534, 7, arrivals)
    # statuses: small, lost, large, large, small -> one two-bit vector (has a large symbol):
    # 11 01 00 10 10 01 00 = 0b1101_0010_1001_0000 = 0xD290
    # deltas: 4 (1 ms); -2 (-0.5 ms) as int16; 1200 (300 ms) as int16; 1 (0.25 ms)
    assert fci == bytes.fromhex("fffe0005" "00000207" "d290" "04" "fffe" "04b0" "01")
    parsed = parse_feedback(fci)
    assert feedback_arrivals_us(parsed) == [(65534, 129_000), (65535, None), (0, 128_500),
                                            (1, 428_500), (2, 428_750)]


def test_long_runs_are_split_at_8191():
    arrivals = [(0, 1_000)] + [(10_001, 2_000)]  # 10000 lost in between
    parsed = parse_feedback(build_fci(0, 0, arrivals))
    assert parsed[1] == 10_002
    assert sum(d is None for _, d in parsed[4]) == 10_000
    many = [(i, 1000 + 250 * i) for i in range(9000)]
    fci = build_fci(0, 0, many)
    assert fci[8:12] == bytes.fromhex("3fff2329")  # run 8191 small, run 809 small
    assert feedback_arrivals_us(parse_feedback(fci)) == many


# --- round trips -----------------------------------------------------------------------------

_delta = st.one_of(
    st.integers(0, 64_000),  # small
    st.integers(-8_000_000, 8_000_000),  # large / negative (reordering)
    st.none(),  # lost
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.one_of(st.integers(0, 0xFFFF), st.integers(0xFFF0, 0xFFFF)),
    start_us=st.integers(-(1 << 42), 1 << 42),
    deltas=st.lists(_delta, min_size=1, max_size=80),
    fb_count=st.integers(0, 1000),
    order=st.randoms(use_true_random=False),
)
def test_round_trip_random_arrivals(base, start_us, deltas, fb_count, order):
    truth = []
    t = start_us
    for i, d in enumerate(deltas):
        seq = (base + i) & 0xFFFF
        if d is None:
            truth.append((seq, None))
        else:
            t += d
            truth.append((seq, t))
    if truth[-1][1] is None:
        truth[-1] = (truth[-1][0], t)  # feedback ends on a received packet
    listed = [x for x in truth if x[1] is not None or order.random() < 0.5]
    order.shuffle(listed)  # any input order
    pkt = build_feedback(1, 2, base, fb_count, listed)
    assert len(pkt) % 4 == 0
    _, _, parsed = parse_feedback_packet(pkt)
    assert parsed[0] == base and parsed[1] == len(truth) and parsed[3] == fb_count & 0xFF
    got = feedback_arrivals_us(parsed)
    assert [s for s, _ in got] == [s for s, _ in truth]
    for (_, a), (_, b) in zip(got, truth):
        assert (a is None) == (b is None)
        if a is not None:
            err = (a - b) % REF_WRAP_US
            assert min(err, REF_WRAP_US - err) <= 125


@given(st.binary(max_size=64))
def test_parser_garbage_raises_only_parse_error(data):
    try:
        parse_feedback(data)
    except PacketParseError:
        pass


@given(st.binary(min_size=8, max_size=64))
def test_parser_garbage_with_small_count(data):
    data = data[:2] + bytes((0, data[3] % 40)) + data[4:]
    try:
        parsed = parse_feedback(data)
    except PacketParseError:
        return
    assert len(parsed[4]) == parsed[1]


def test_truncated_fci_raises():
    fci = build_fci(100, 3, [(100, 5_000), (101, 5_000_000), (103, 5_000_250)])
    for cut in range(1, len(fci)):
        with pytest.raises(PacketParseError):
            parse_feedback(fci[:-cut])


def test_reserved_symbols_and_zero_count_raise():
    head = bytes.fromhex("0000000100000000")
    with pytest.raises(PacketParseError):
        parse_feedback(head + bytes.fromhex("6001"))  # run-length with symbol 3
    with pytest.raises(PacketParseError):
        parse_feedback(head + bytes.fromhex("f000"))  # two-bit vector with symbol 3
    with pytest.raises(PacketParseError):
        parse_feedback(bytes.fromhex("0000000000000000"))
    with pytest.raises(PacketParseError):
        parse_feedback(head + bytes.fromhex("20010000000000"))  # too many trailing bytes


def test_parse_feedback_packet_rejects_other_rtcp():
    from raysfu.transport.rtcp import build_pli

    with pytest.raises(PacketParseError):
        parse_feedback_packet(build_pli(1, 2))


def test_build_argument_errors():
    with pytest.raises(ValueError, match="empty"):
        build_fci(0, 0, [])
    with pytest.raises(ValueError, match="twice"):
        build_fci(0, 0, [(1, 0), (1, 5)])
    with pytest.raises(ValueError, match="16 bits"):
        build_fci(0, 0, [(0, 0), (1, 9_000_000)])
    with pytest.raises(ValueError, match="base_seq"):
        build_fci(70000, 0, [(0, 0)])
    with pytest.raises(ValueError, match="not after"):
        build_fci(5, 0, [(4, 0)])


# --- receive side ----------------------------------------------------------------------------


def _feedbacks(packets):
    return [parse_feedback_packet(p)[2] for p in packets]


def test_recorder_emits_every_100ms_with_losses():
    r = TwccRecorder(sender_ssrc=9, media_ssrc=0, interval_us=100_000)
    assert r.next_timer_us() is None and r.on_timer(0) == []
    for i in range(10):
        if i != 4:
            r.on_packet(i, 1_000_000 + 10_000 * i)
    assert r.next_timer_us() == 1_100_000
    assert r.on_timer(1_099_999) == []
    (fb,) = _feedbacks(r.on_timer(1_100_000))
    assert fb[0] == 0 and fb[1] == 10 and fb[3] == 0
    arr = feedback_arrivals_us(fb)
    assert arr[4] == (4, None)
    assert arr[9] == (9, 1_090_000)
    assert r.on_timer(1_200_000) == []  # nothing new
    r.on_packet(10, 1_250_000)
    (fb,) = _feedbacks(r.on_timer(1_300_000))
    assert (fb[0], fb[1], fb[3]) == (10, 1, 1)


def test_recorder_wraps_and_reorders():
    r = TwccRecorder()
    seqs = [65533, 65535, 65534, 0, 2, 1]
    for k, s in enumerate(seqs):
        r.on_packet(s, 5_000_000 + 1_000 * k)
    (fb,) = _feedbacks(r.flush())
    assert fb[0] == 65533 and fb[1] == 6
    got = dict(feedback_arrivals_us(fb))
    assert got == {s: 5_000_000 + 1_000 * k for k, s in enumerate(seqs)}


def test_recorder_rereports_late_packet():
    r = TwccRecorder()
    r.on_packet(1, 0)
    r.on_packet(3, 2_000)
    (fb,) = _feedbacks(r.flush())
    assert feedback_arrivals_us(fb) == [(1, 0), (2, None), (3, 2_000)]
    r.on_packet(2, 50_000)  # late
    r.on_packet(4, 51_000)
    (fb,) = _feedbacks(r.flush())
    assert feedback_arrivals_us(fb) == [(2, 50_000), (3, 2_000), (4, 51_000)]


def test_recorder_drops_stragglers_after_history():
    r = TwccRecorder(history_us=500_000)
    r.on_packet(10, 0)
    r.on_packet(12, 1_000)
    assert len(r.on_timer(100_000)) == 1
    r.on_packet(13, 700_000)
    assert len(r.on_timer(800_000)) == 1  # prunes seqs 10..12 (older than 500 ms)
    r.on_packet(11, 800_500)
    assert r.late_packets == 1
    assert r.on_timer(900_000) == []


def test_recorder_splits_by_max_packets_and_delta_overflow():
    r = TwccRecorder(max_packets_per_feedback=400)
    for i in range(1000):
        r.on_packet(i & 0xFFFF, 1_000 * i)
    fbs = _feedbacks(r.flush())
    assert [f[1] for f in fbs] == [400, 400, 200]
    assert [f[3] for f in fbs] == [0, 1, 2]
    assert [f[0] for f in fbs] == [0, 400, 800]
    r2 = TwccRecorder()
    r2.on_packet(0, 0)
    r2.on_packet(1, 10_000_000)  # 10 s later: does not fit a 16-bit delta
    fbs = _feedbacks(r2.flush())
    assert [(f[0], f[1]) for f in fbs] == [(0, 1), (1, 1)]
    assert feedback_arrivals_us(fbs[1]) == [(1, 10_000_000)]


# --- send side -------------------------------------------------------------------------------


def test_send_history_end_to_end_with_wrap_and_loss():
    h = SendHistory()
    r = TwccRecorder()
    delay = 40_000
    results = []
    for i in range(300):
        seq = (65400 + i) & 0xFFFF
        send = 1_000_000 + 2_000 * i
        ext = h.on_packet_sent(seq, send, 1000 + i)
        assert ext == 65536 + 65400 + i
        if i % 7 != 3:
            r.on_packet(seq, send + delay + (i % 5) * 300)
        if i % 50 == 49:
            for pkt in r.flush():
                results += h.on_feedback(parse_feedback_packet(pkt)[2], send + delay)
    assert [p.transport_seq for p in results] == [65536 + 65400 + i for i in range(300)]
    assert all(isinstance(p, PacketResult) for p in results)
    first = results[0]
    for i, p in enumerate(results):
        assert p.send_us == 1_000_000 + 2_000 * i and p.size_bytes == 1000 + i
        if i % 7 == 3:
            assert p.recv_us is None
        else:
            # remote times keep their spacing (quantized to 250 us)
            expect = (p.send_us + (i % 5) * 300) - (first.send_us + 0)
            assert abs((p.recv_us - first.recv_us) - expect) <= 250
    assert h.unknown_packets == 0


def test_send_history_drops_entries_older_than_60s():
    h = SendHistory()
    h.on_packet_sent(0, 0, 100)
    h.on_packet_sent(1, 30_000_000, 100)
    h.on_packet_sent(2, 61_000_000, 100)
    assert len(h) == 2
    fb = parse_feedback(build_fci(0, 0, [(0, 0), (1, 1_000), (2, 2_000)]))
    res = h.on_feedback(fb, 61_050_000)
    assert [p.transport_seq for p in res] == [65537, 65538]
    assert h.unknown_packets == 1


def test_send_history_reference_time_wrap():
    h = SendHistory()
    for i in range(4):
        h.on_packet_sent(i, i * 1000, 500)
    top = (1 << 24) - 1
    fb1 = parse_feedback(build_fci(0, 0, [(0, top * 64_000), (1, top * 64_000 + 1_000)]))
    t2 = (top + 1) * 64_000
    fb2 = parse_feedback(build_fci(2, 1, [(2, t2 + 500), (3, t2 + 1_500)]))
    assert fb1[2] == -1 and fb2[2] == 0  # signed 24-bit on the wire
    a = h.on_feedback(fb1, 10_000_000)
    b = h.on_feedback(fb2, 10_100_000)
    assert a[0].recv_us == 10_000_000 and a[1].recv_us == 10_001_000
    assert b[0].recv_us == 10_064_500 and b[1].recv_us == 10_065_500
