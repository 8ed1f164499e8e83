"""Layer distribution (research/bwe.md §5): the allocation cases A–K and V, the tie-break, the
layer walk, and the hysteresis cases H1–H4 and H6 (H5 is LiveKit's rule, not ours)."""

import itertools

import pytest
from raysfu.bwe.allocator import (
    BWE_DOWNGRADE_CONSERVATIVE_MS,
    BitrateAllocator,
    RateMeter,
)
from raysfu.bwe.estimator import SendSideBwe

L = [[150_000], [500_000], [1_500_000]]  # simulcast streams, one temporal layer each


def _alloc(B, prios, now_ms=100_000, **kw):
    a = BitrateAllocator()
    for i, p in enumerate(prios):
        a.add_consumer(f"C{i + 1}", layer_bitrates_bps=L, priority=p)
    r = a.allocate(B, now_ms, **kw)
    return {c: (None if lay is None else lay[0]) for c, lay in r.layers.items()}, r.unused_bps


# (case, B, priorities, expected spatial layers, unused) -- the mediasoup column of §5
CASES = [
    ("A", 1_000_000, [1, 1], [1, 1], 0),
    ("B", 2_000_000, [2, 1], [2, 1], 0),
    ("C", 2_000_000, [1, 1], [2, 1], 0),  # the tie-break decides who gets L2
    ("D", 250_000, [1, 1], [0, None], 100_000),
    ("E", 3_000_000, [1, 1], [2, 2], 0),
    ("F", 1_800_000, [1, 1, 1], [1, 1, 1], 300_000),
    ("G", 3_500_000, [3, 1, 1], [2, 2, 1], 0),
    ("H", 640_000, [1, 1], [0, 0], 340_000),  # the L1 step costs 350 k > 340 k left
    ("I", 150_000, [1, 2], [None, 0], 0),
    ("J", 4_000_000, [1, 1, 1], [2, 2, 1], 500_000),
    ("K", 1_650_000, [2, 1], [2, 0], 0),  # priority takes several steps per round
]


@pytest.mark.parametrize("case,B,prios,expected,unused", CASES, ids=[c[0] for c in CASES])
def test_allocation_cases(case, B, prios, expected, unused):
    layers, left = _alloc(B, prios)
    assert [layers[f"C{i + 1}"] for i in range(len(prios))] == expected
    assert left == unused


def test_case_v_remb_virtual_bitrate():
    assert _alloc(480_000, [1])[0] == {"C1": 0}  # transport-cc: 330 k unused
    layers, _ = _alloc(480_000, [1], remb_loss_fraction=0.01)  # 1.08 x 330 k >= 350 k
    assert layers == {"C1": 1}
    assert _alloc(480_000, [1], remb_loss_fraction=0.05)[0] == {"C1": 0}
    assert _alloc(160_000, [1], remb_loss_fraction=0.2)[0] == {"C1": None}  # 0.9 x 160 k
    assert _alloc(170_000, [1], remb_loss_fraction=0.2)[0] == {"C1": 0}  # 153 k, charge 150 k


def test_tie_break_is_oldest_consumer_first():
    a = BitrateAllocator()
    a.add_consumer("late", layer_bitrates_bps=L)
    a.add_consumer("early", layer_bitrates_bps=L)
    r = a.allocate(2_000_000, 0)
    assert r.layers == {"late": (2, 0), "early": (1, 0)}  # insertion order, not the name


def test_priority_zero_is_excluded_and_desired_bitrate():
    a = BitrateAllocator()
    a.add_consumer("a", layer_bitrates_bps=L)
    a.add_consumer("b", layer_bitrates_bps=L, priority=0)
    assert a.desired_bitrate_bps() == 1_500_000
    r = a.allocate(5_000_000, 0)
    assert r.layers == {"a": (2, 0), "b": None} and r.unused_bps == 3_500_000


def test_layer_walk_temporal_first_and_preferred_layers():
    a = BitrateAllocator()
    a.add_consumer("c", layer_bitrates_bps=[[100_000, 150_000, 200_000],
                                            [400_000, 600_000, 800_000]],
                   preferred_layers=(1, 1))
    assert a.allocate(210_000, 0).layers["c"] == (0, 2)
    # (0, 2) -> (1, 0) costs 400 k - 200 k; then (1, 1) costs 200 k more; (1, 2) not preferred
    r = a.allocate(2_000_000, 0)
    assert r.layers["c"] == (1, 1) and r.used_bps == 600_000
    a.update_consumer("c", preferred_layers=None)
    assert a.allocate(2_000_000, 0).layers["c"] == (1, 2)


def test_inactive_layers_are_skipped_and_new_streams_wait_2s():
    a = BitrateAllocator()
    a.add_consumer("c", layer_bitrates_bps=[[150_000], [0], [1_500_000]],
                   stream_active_since_ms=[None, None, 10_000])
    assert a.allocate(3_000_000, 11_000).layers["c"] == (0, 0)  # L2 active for 1 s only
    assert a.allocate(3_000_000, 12_000).layers["c"] == (2, 0)  # L1 (0 bps) skipped


def test_bad_arguments():
    a = BitrateAllocator()
    with pytest.raises(ValueError, match="layer_bitrates_bps"):
        a.add_consumer("x", layer_bitrates_bps=[])
    with pytest.raises(ValueError, match="layer_bitrates_bps"):
        a.add_consumer("x", layer_bitrates_bps=[[-1]])
    with pytest.raises(ValueError, match="priority"):
        a.add_consumer("x", layer_bitrates_bps=L, priority=-1)
    assert "x" not in a.consumers
    a.add_consumer("x", layer_bitrates_bps=L)
    with pytest.raises(ValueError, match="already"):
        a.add_consumer("x", layer_bitrates_bps=L)
    with pytest.raises(ValueError, match="stream_active_since_ms"):
        a.update_consumer("x", stream_active_since_ms=[0])
    with pytest.raises(ValueError, match="available_bps"):
        a.allocate(-1, 0)
    with pytest.raises(KeyError):
        a.update_consumer("nope", priority=2)
    a.remove_consumer("x")
    assert a.allocate(1_000_000, 0).layers == {}


class _Target:
    """Controller double: the test sets the estimate (B "as the BWE reports it")."""

    name = "scripted"

    def __init__(self, bps):
        self.target_bps = bps

    def on_sent_packet(self, *a):
        pass

    def on_feedback(self, *a):
        pass

    def process(self, *a):
        pass

    def set_constraints(self, *a):
        pass

    def set_max_total_allocated(self, *a):
        pass

    def pop_probes(self):
        return []

    def state(self):
        return {}


def _loop(schedule, until_ms, consumers=("C1", "C2")):
    """Drive SendSideBwe's notifier every 25 ms with B from ``schedule(t_ms)`` and re-allocate
    on each available-bitrate event. Returns (allocator, [(t, consumer, old, new)])."""
    ctl = _Target(schedule(0))
    bwe = SendSideBwe(ctl, initial_available_outgoing_bitrate=600_000)
    a = BitrateAllocator()
    for c in consumers:
        a.add_consumer(c, layer_bitrates_bps=L, active_since_ms=-60_000)
    a.allocate(schedule(0), 0)
    switches = []
    for t in range(0, until_ms, 25):
        ctl.target_bps = schedule(t)
        bwe.on_timer(t)
        ev = bwe.poll_available_bitrate()
        if ev is not None:
            before = a.layers()
            after = a.allocate(ev, t).layers
            switches += [(t, c, before[c], after[c]) for c in after if after[c] != before[c]]
    return a, switches


def test_h1_large_drop_downgrades_at_once():
    a, sw = _loop(lambda t: 2_000_000 if t < 5_000 else 1_000_000, 6_000)
    downs = [s for s in sw if s[0] >= 5_000]
    assert downs and downs[0][0] == 5_000  # the > 25 % drop fires the event immediately
    assert a.layers() == {"C1": (1, 0), "C2": (1, 0)}


def test_h2_no_spatial_upgrade_for_10s_after_a_bwe_downgrade():
    _a, sw = _loop(lambda t: 1_000_000 if 10_000 <= t < 10_500 else 2_000_000, 30_000)
    c1 = [(t, old, new) for t, c, old, new in sw if c == "C1"]
    assert c1[0] == (10_000, (2, 0), (1, 0))
    up = [t for t, old, new in c1 if new == (2, 0)]
    assert up and 10_000 + BWE_DOWNGRADE_CONSERVATIVE_MS <= up[0] <= 10_000 + 11_000


def test_h3_oscillation_around_a_layer_boundary_is_damped():
    # B alternates 1.9 / 2.1 Mbps every 0.5 s around C1 L2 + C2 L1 = 2.0 Mbps for 60 s
    _a, sw = _loop(lambda t: 2_100_000 if (t // 500) % 2 == 0 else 1_900_000, 60_000)
    for c in ("C1", "C2"):
        mine = [s for s in sw if s[1] == c]
        assert len(mine) <= 6, mine
        ups = [t for t, _, old, new in mine if old is not None and new[0] > old[0]]
        assert all(b - a_ >= 10_000 for a_, b in itertools.pairwise(ups))


def test_h4_desired_bitrate_decays_slowly_and_probes_once_per_increase():
    bwe = SendSideBwe("goog_cc_m77", initial_available_outgoing_bitrate=600_000)
    bwe.on_timer(0)
    bwe.controller.probe_controller.state = "complete"  # start probing done
    maxes = []
    for s in range(30):
        bwe.set_desired_bitrate(2_000_000 if s < 5 else 650_000, s * 1_000)
        maxes.append(bwe.max_bitrate_bps)
    assert maxes[4] == 2_700_000
    for s_, m in enumerate(maxes[5:], start=5):  # never faster than 5 % of the peak per second
        assert m >= 0.99 * 2_700_000 * (1 - 0.05 * (s_ - 4))
    assert maxes[-1] < 2_700_000 and len(set(maxes)) < len(maxes) // 2  # 10 % dead band
    # a real increase triggers one allocation probe (1x and 2x clusters), repeats none
    pc = bwe.controller.probe_controller
    pc.estimated_bitrate_bps = 600_000
    bwe.prober._clusters.clear()
    n0 = pc._next_id
    bwe.set_desired_bitrate(3_000_000, 40_000)
    bwe.set_desired_bitrate(3_000_000, 40_100)
    bwe.set_desired_bitrate(3_100_000, 40_200)  # within 10 %: no new constraints
    assert pc._next_id - n0 <= 3  # one mid-call probe and one allocation probe (2 clusters)


def test_h6_below_the_sum_of_base_layers_lowest_priority_pauses():
    layers, _ = _alloc(200_000, [2, 1, 1])
    assert layers == {"C1": 0, "C2": None, "C3": None}
    layers, _ = _alloc(350_000, [1, 3, 1])
    assert layers == {"C1": 0, "C2": 0, "C3": None}


def test_rate_meter_window():
    m = RateMeter(2_500)
    for t in range(0, 2_500, 10):
        m.add(t, 1250)  # 1 Mbps
    assert m.rate_bps(2_499) == pytest.approx(1_000_000, rel=0.01)
    assert m.rate_bps(10_000) == 0
    with pytest.raises(ValueError, match="window_ms"):
        RateMeter(0)
