"""Sequence arithmetic, the extended-seq unwrapper and the per-consumer seq rewriter."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raysfu.transport.seq import (
    SeqRewriter,
    SeqUnwrapper,
    seq_diff,
    seq_gt,
    seq_lt,
    ts_diff,
    ts_gt,
    ts_lt,
)


@pytest.mark.parametrize(
    "a, b, diff, gt, lt",
    [
        (1, 0, 1, True, False),
        (0, 1, -1, False, True),
        (0, 65535, 1, True, False),  # wrap
        (65535, 0, -1, False, True),
        (5, 65530, 11, True, False),
        (100, 100, 0, False, False),
        (32767, 0, 32767, True, False),
        (32768, 0, -32768, False, False),  # exactly half way: neither
        (0, 32768, -32768, False, False),
        (32769, 0, -32767, False, True),
    ],
)
def test_seq_compare_table(a, b, diff, gt, lt):
    assert seq_diff(a, b) == diff
    assert seq_gt(a, b) is gt
    assert seq_lt(a, b) is lt


@pytest.mark.parametrize(
    "a, b, diff, gt",
    [
        (1, 0, 1, True),
        (0, 0xFFFFFFFF, 1, True),
        (0xFFFFFFFF, 0, -1, False),
        (90000, 0xFFFFFFFF - 89999, 180000, True),
        (0, 0, 0, False),
    ],
)
def test_ts_compare_table(a, b, diff, gt):
    assert ts_diff(a, b) == diff
    assert ts_gt(a, b) is gt
    assert ts_lt(b, a) is gt


@pytest.mark.parametrize(
    "seqs, expected",
    [
        ([0, 1, 2], [65536, 65537, 65538]),
        ([65534, 65535, 0, 1], [131070, 131071, 131072, 131073]),  # wrap forward
        ([10, 8, 9, 11], [65546, 65544, 65545, 65547]),  # reorder
        ([10, 10, 10], [65546, 65546, 65546]),  # duplicates
        ([1, 65535, 2], [65537, 65535, 65538]),  # reordered before the wrap
        ([0, 65535], [65536, 65535]),  # reordered before the first: not negative
        ([65535, 0, 65534, 1], [131071, 131072, 131070, 131073]),
    ],
)
def test_unwrapper_table(seqs, expected):
    u = SeqUnwrapper()
    assert [u.unwrap(s) for s in seqs] == expected


def test_unwrapper_many_cycles():
    u = SeqUnwrapper()
    got = [u.unwrap(i & 0xFFFF) for i in range(0, 5 * 65536, 1000)]
    assert got == [65536 + i for i in range(0, 5 * 65536, 1000)]
    assert u.max_ext_seq == got[-1]


@given(st.integers(0, 0xFFFF), st.lists(st.integers(-300, 300), max_size=100))
def test_unwrapper_follows_small_steps(start, steps):
    u = SeqUnwrapper()
    ext = 65536 + start
    assert u.unwrap(start) == ext
    true = ext
    for step in steps:
        true += step
        if true < 0:
            break
        assert u.unwrap(true & 0xFFFF) == true


def outs(rw, seqs):
    return [rw.input(s) for s in seqs]


def test_rewriter_continuous_from_initial_output():
    rw = SeqRewriter(initial_output=100)
    assert outs(rw, [70000, 70001, 70002]) == [100, 101, 102]
    assert rw.max_output == 102


def test_rewriter_random_initial_output_in_range():
    values = {SeqRewriter().input(5) for _ in range(20)}
    assert all(0 <= v <= 0xFFFF for v in values)
    assert len(values) > 1


def test_rewriter_rejects_bad_initial_output():
    with pytest.raises(ValueError, match="initial_output"):
        SeqRewriter(initial_output=70000)


def test_rewriter_drop_closes_gap():
    rw = SeqRewriter(initial_output=0)
    assert rw.input(10) == 0
    rw.drop(11)
    rw.drop(12)
    assert rw.input(13) == 1
    assert rw.input(14) == 2
    # A dropped input arriving again is not sent.
    assert rw.input(12) is None


def test_rewriter_reorder_keeps_places_around_drops():
    rw = SeqRewriter(initial_output=0)
    assert rw.input(10) == 0
    rw.drop(11)
    assert rw.input(14) == 3  # 12 and 13 are not here yet: they keep their outputs
    assert rw.input(13) == 2
    assert rw.input(12) == 1


def test_rewriter_drop_of_old_seq_is_ignored():
    rw = SeqRewriter(initial_output=0)
    assert outs(rw, [10, 12]) == [0, 2]
    rw.drop(11)  # 12 already went out with its place; no shift possible
    assert rw.input(13) == 3


def test_rewriter_sync_continues_after_last_output():
    rw = SeqRewriter(initial_output=500)
    assert outs(rw, [1000, 1001, 1002]) == [500, 501, 502]
    # Paused, the producer sent 1003..1999; resume at a keyframe 2000.
    rw.sync(2000)
    assert outs(rw, [2000, 2001]) == [503, 504]
    # A late packet from before the sync is refused.
    assert rw.input(1500) is None
    # Source switch to a stream with totally different seqs.
    rw.sync(5)
    assert outs(rw, [5, 6]) == [505, 506]


def test_rewriter_sync_clears_drops_and_allows_drop_after():
    rw = SeqRewriter(initial_output=0)
    rw.input(1)
    rw.drop(2)
    rw.sync(100)
    assert rw.input(100) == 1
    rw.drop(101)
    assert rw.input(102) == 2


def test_rewriter_sync_before_start_is_noop():
    rw = SeqRewriter(initial_output=7)
    rw.sync(50)
    rw.drop(40)
    assert rw.input(60) == 7


def test_rewriter_wraps_16_bits():
    rw = SeqRewriter(initial_output=65534)
    assert outs(rw, [1, 2, 3, 4]) == [65534, 65535, 0, 1]
    rw.drop(5)
    assert rw.input(6) == 2


def test_rewriter_long_run_with_drops_and_window_fold():
    rw = SeqRewriter(initial_output=0, window=100)
    expected = 0
    for s in range(1, 2001):
        if s % 3 == 0:
            rw.drop(s)
            continue
        assert rw.input(s) == expected & 0xFFFF
        expected += 1
    assert len(rw._dropped) <= 101
    # Older than the folded horizon: refused rather than given a wrong place.
    assert rw.input(10) is None


@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(0, 0xFFFF))
def test_rewriter_output_is_gapless_for_in_order_input(forward, initial):
    rw = SeqRewriter(initial_output=initial)
    got = []
    for i, fwd in enumerate(forward):
        if fwd or not got:
            got.append(rw.input(1000 + i))
        else:
            rw.drop(1000 + i)
    assert got == [(initial + k) & 0xFFFF for k in range(len(got))]
