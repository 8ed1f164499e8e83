"""NackGenerator (receive side) and RetransmissionBuffer (send side), on a fake clock."""

import pytest

from raysfu.transport.nack import (
    DEFAULT_RTT_MS,
    MAX_NACK_PACKETS,
    MAX_NACK_RETRIES,
    NackGenerator,
    RetransmissionBuffer,
)
from raysfu.transport.seq import SeqUnwrapper

BASE = 65536  # extended seqs as SeqUnwrapper gives them


def feed(gen, seqs, now_ms, **kw):
    out = []
    for s in seqs:
        out += gen.on_packet(BASE + s, now_ms, **kw)
    return out


# --- table: (seq, now_ms, is_keyframe, expected immediate NACK list) -- mediasoup style --------


@pytest.mark.parametrize(
    "inputs",
    [
        # no loss
        [(0, 0, False, []), (1, 0, False, []), (2, 0, False, [])],
        # one gap, NACKed at once without send delay
        [(0, 0, False, []), (2, 0, False, [1]), (3, 0, False, [])],
        # two gaps
        [(0, 0, False, []), (3, 0, False, [1, 2]), (6, 0, False, [4, 5])],
        # reordered packet fills a gap: no new NACK
        [(0, 0, False, []), (2, 0, False, [1]), (1, 0, False, []), (3, 0, False, [])],
        # duplicates and old packets
        [(5, 0, False, []), (5, 0, False, []), (4, 0, False, []), (6, 0, False, [])],
    ],
)
def test_generator_table_no_delay(inputs):
    gen = NackGenerator(send_nack_delay_ms=0)
    for seq, now, kf, expected in inputs:
        assert gen.on_packet(BASE + seq, now, is_keyframe=kf) == expected


def test_sequence_wrap_generates_no_nack():
    gen = NackGenerator()
    u = SeqUnwrapper()
    for s in (65533, 65534, 65535, 0, 1):
        assert gen.on_packet(u.unwrap(s), 0) == []
    assert gen.pending == []


def test_gap_across_wrap_nacks_16_bit_seqs():
    gen = NackGenerator()
    u = SeqUnwrapper()
    assert gen.on_packet(u.unwrap(65534), 0) == []
    assert gen.on_packet(u.unwrap(1), 0) == [65535, 0]


def test_gap_nacked_after_send_delay():
    gen = NackGenerator(send_nack_delay_ms=10)
    feed(gen, [0], 0)
    assert feed(gen, [3], 100) == []  # not yet: 10 ms delay
    assert gen.next_timer_ms() == 110
    assert gen.on_timer(105) == []
    assert gen.on_timer(110) == [1, 2]
    assert gen.nack_count == 1 and gen.nack_packet_count == 2


def test_out_of_order_arrival_within_delay_cancels_nack():
    gen = NackGenerator(send_nack_delay_ms=10)
    feed(gen, [0, 2], 0)
    feed(gen, [1], 5)  # late but before the NACK went out
    assert gen.repaired is True and gen.recovered_count == 1
    assert gen.on_timer(20) == []
    assert gen.next_timer_ms() is None
    assert gen.nack_count == 0


def test_retries_spaced_by_rtt_then_given_up():
    gen = NackGenerator()
    feed(gen, [0], 0)
    assert feed(gen, [2], 0) == [1]
    assert gen.next_timer_ms() == DEFAULT_RTT_MS
    assert gen.on_timer(50) == []
    sent_at = [0]
    now = 0
    while gen.pending:
        now = gen.next_timer_ms()
        assert gen.on_timer(now) == [1]
        sent_at.append(now)
    assert len(sent_at) == MAX_NACK_RETRIES
    assert all(b - a == DEFAULT_RTT_MS for a, b in zip(sent_at, sent_at[1:]))
    assert gen.given_up_count == 1
    assert gen.on_timer(now + 1000) == []
    assert gen.next_timer_ms() is None


def test_set_rtt_changes_retry_spacing():
    gen = NackGenerator()
    gen.set_rtt(30)
    feed(gen, [0], 0)
    assert feed(gen, [2], 0) == [1]
    assert gen.next_timer_ms() == 30
    assert gen.on_timer(29) == []
    assert gen.on_timer(30) == [1]
    gen.set_rtt(0)
    assert gen.rtt_ms == DEFAULT_RTT_MS


def test_retransmission_arrival_stops_retries():
    gen = NackGenerator()
    feed(gen, [0, 3], 0)
    feed(gen, [1], 50, is_recovered=True)
    assert gen.repaired
    assert gen.on_timer(100) == [2]


def test_rtx_recovered_newer_packet_is_not_nacked_later():
    gen = NackGenerator()
    feed(gen, [0], 0)
    # 3 arrives first through RTX (newer than the newest): remembered, newest unchanged.
    assert feed(gen, [3], 0, is_recovered=True) == []
    assert feed(gen, [4], 0) == [1, 2]


def test_keyframe_clears_older_missing_entries():
    gen = NackGenerator()
    feed(gen, [0], 0)
    assert feed(gen, [5], 0) == [1, 2, 3, 4]
    # Gap 6..9 before a keyframe at 10: neither the old nor the new gap is NACKed.
    assert feed(gen, [10], 10, is_keyframe=True) == []
    assert gen.pending == []
    assert gen.on_timer(1000) == []
    assert feed(gen, [12], 20) == [11]


def test_keyframe_mediasoup_mode_only_clears_on_overflow():
    gen = NackGenerator(clear_on_keyframe=False)
    feed(gen, [0], 0)
    assert feed(gen, [5], 0) == [1, 2, 3, 4]
    assert feed(gen, [10], 0, is_keyframe=True) == [6, 7, 8, 9]
    assert len(gen.pending) == 8
    # A gap that overflows the list drops what is older than the keyframe first.
    new_gap = MAX_NACK_PACKETS - 3
    out = feed(gen, [11 + new_gap], 0)
    assert len(out) == new_gap
    assert not gen.keyframe_required
    assert [s - BASE for s in gen.pending[:1]] == [11]


def test_too_many_missing_clears_and_requires_keyframe():
    gen = NackGenerator()
    feed(gen, [0], 0)
    assert feed(gen, [MAX_NACK_PACKETS + 2], 0) == []
    assert gen.keyframe_required and gen.keyframe_request_count == 1
    assert gen.pending == []
    gen.keyframe_required = False
    assert feed(gen, [MAX_NACK_PACKETS + 4], 0) == [(MAX_NACK_PACKETS + 3) & 0xFFFF]


def test_reset_forgets_state():
    gen = NackGenerator()
    feed(gen, [0, 5], 0)
    gen.reset()
    assert gen.pending == [] and gen.next_timer_ms() is None
    assert feed(gen, [100], 0) == []  # first packet again


def test_send_nack_delay_validation():
    with pytest.raises(ValueError, match="send_nack_delay_ms"):
        NackGenerator(send_nack_delay_ms=-1)


# --- RetransmissionBuffer ----------------------------------------------------------------------


def test_buffer_store_and_get():
    buf = RetransmissionBuffer()
    for s in range(10):
        buf.store(s, b"pkt%d" % s, now_ms=s)
    assert buf.get(3, 20) == b"pkt3"
    assert buf.get(10, 20) is None
    assert buf.resent_count == 1 and buf.missing_count == 1


def test_buffer_max_age():
    buf = RetransmissionBuffer(max_age_ms=1000)
    buf.store(1, b"a", 0)
    buf.store(2, b"b", 500)
    assert buf.get(1, 1000) == b"a"
    assert buf.get(1, 1001 + DEFAULT_RTT_MS) is None  # too old (not throttled)
    assert buf.get(2, 1500) == b"b"
    assert buf.missing_count == 1 and buf.throttled_count == 0


def test_buffer_ring_overwrite_and_max_items():
    buf = RetransmissionBuffer(max_items=100)  # ring of 128
    for s in range(300):
        buf.store(s, bytes([s & 0xFF]), 0)
    assert buf.get(299, 0) == bytes([299 & 0xFF])
    assert buf.get(200, 0) == bytes([200 & 0xFF])
    assert buf.get(199, 0) is None  # 100 behind the newest: beyond max_items
    assert buf.get(150, 0) is None  # slot overwritten by 278
    assert buf.get(1, 0) is None


def test_buffer_seq_wrap():
    buf = RetransmissionBuffer()
    for i in range(10):
        buf.store((65530 + i) & 0xFFFF, b"%d" % i, 0)
    assert buf.get(65535, 0) == b"5"
    assert buf.get(0, 0) == b"6"
    assert buf.get(65529, 0) is None


def test_buffer_resend_interval_limit():
    buf = RetransmissionBuffer(min_resend_interval_ms=100)
    buf.store(7, b"x", 0)
    assert buf.get(7, 10) == b"x"
    assert buf.get(7, 50) is None  # resent 40 ms ago
    assert buf.throttled_count == 1
    assert buf.get(7, 110) == b"x"
    buf.set_rtt(20)
    assert buf.get(7, 125) is None
    assert buf.get(7, 130) == b"x"
    # Storing the seq again (new packet after wrap) resets the resend time.
    buf.store(7, b"y", 140)
    assert buf.get(7, 141) == b"y"


def test_buffer_clear_and_validation():
    buf = RetransmissionBuffer()
    buf.store(1, b"a", 0)
    buf.clear()
    assert buf.get(1, 0) is None
    with pytest.raises(ValueError, match="max_items"):
        RetransmissionBuffer(max_items=0)
    with pytest.raises(ValueError, match="max_age_ms"):
        RetransmissionBuffer(max_age_ms=0)


def test_retransmission_ring_grows_with_the_packet_rate_only():
    from raysfu.transport.nack import RetransmissionBuffer

    slow = RetransmissionBuffer(max_items=2500, max_age_ms=1000)  # audio: 50 pkt/s, 1 s kept
    for i in range(500):
        slow.store(i, b"a%d" % i, i * 20)
    assert slow._mask + 1 == 128  # 50 packets per second never fill 128 slots within 1 s
    fast = RetransmissionBuffer(max_items=2500, max_age_ms=2000)  # video at 2,000 pkt/s
    for i in range(3000):
        fast.store((60000 + i) & 0xFFFF, b"v%d" % i, i // 2)
    assert fast._mask + 1 == 4096  # grew: 2,500 packets are younger than 2 s
    newest = (60000 + 2999) & 0xFFFF
    for back in (0, 100, 1999, 2499):
        seq = (newest - back) & 0xFFFF
        assert fast.get(seq, 1500) == b"v%d" % (2999 - back)
    assert fast.get((newest - 2500) & 0xFFFF, 1500) is None  # beyond max_items
    steady = RetransmissionBuffer(max_items=2500, max_age_ms=2000)  # 1,000 pkt/s: 2 s fit in 2,048
    for i in range(5000):
        steady.store(i, b"s", i)
    assert steady._mask + 1 == 2048
