"""goog_cc m77 reference port: golden constants and rules (research/bwe.md §1, §4.1 layer 1)."""

import math

import pytest
from raysfu.bwe.goog_cc.acked_bitrate import AcknowledgedBitrateEstimator, BitrateEstimator
from raysfu.bwe.goog_cc.aimd import AimdRateControl, LinkCapacityEstimator
from raysfu.bwe.goog_cc.controller import GoogCcController
from raysfu.bwe.goog_cc.delay_based import DelayBasedBwe
from raysfu.bwe.goog_cc.inter_arrival import (
    GROUP_LENGTH_TICKS,
    TICKS_PER_MS,
    InterArrival,
    send_time_ticks,
)
from raysfu.bwe.goog_cc.loss_based import SendSideBandwidthEstimation
from raysfu.bwe.goog_cc.probing import (
    AlrDetector,
    IntervalBudget,
    ProbeBitrateEstimator,
    ProbeController,
)
from raysfu.bwe.goog_cc.trendline import BandwidthUsage

NORMAL, OVER, UNDER = BandwidthUsage.NORMAL, BandwidthUsage.OVERUSING, BandwidthUsage.UNDERUSING


# --- inter-arrival (§1.3) ---------------------------------------------------------------------

def _ia(ia, send_ms, arrival_ms, size=1000):
    return ia.compute_deltas(send_time_ticks(send_ms), arrival_ms, arrival_ms, size)


def test_send_time_ticks_are_abs_send_time_shifted():
    assert GROUP_LENGTH_TICKS == (5 << 26) // 1000
    assert send_time_ticks(1000) == (1 << 18) << 8  # one second = 2^18 abs-send-time units
    assert send_time_ticks(5) / TICKS_PER_MS == pytest.approx(5.0, abs=0.01)


def test_five_ms_groups_and_deltas_between_complete_groups():
    ia = InterArrival()
    out = [_ia(ia, t, t + 50) for t in range(12)]  # one packet per ms, constant delay
    # 5 ms is 1311 abs-send-time units after rounding, just above the 5 ms group length: group 1
    # = [0..4] ms, group 2 = [5..10]; the packet at 11 ms closes group 2
    assert out[:11] == [None] * 11
    ts_delta, arrival_delta, size_delta = out[11]
    assert ts_delta / TICKS_PER_MS == pytest.approx(6.0, abs=0.01)
    assert arrival_delta == 6 and size_delta == 1000  # 6 packets vs 5


def test_burst_rule_groups_packets_arriving_faster_than_sent():
    ia = InterArrival()
    # packets sent 0, 6, 12 ms but all arriving within 5 ms of each other, each arriving
    # earlier than its send spacing: they belong to one burst group
    assert _ia(ia, 0, 100) is None
    assert _ia(ia, 6, 102) is None
    assert _ia(ia, 12, 104) is None
    assert _ia(ia, 30, 130) is None  # new group (arrival gap 26 ms)
    d = _ia(ia, 40, 140)  # closes the group starting at 30 ms: deltas vs the burst group
    assert d is not None and d[1] == 130 - 104


def test_zero_send_delta_joins_the_group_and_reordered_packets_are_dropped():
    ia = InterArrival()
    assert _ia(ia, 10, 60) is None
    assert _ia(ia, 10, 70) is None  # same send time: same group however late
    assert _ia(ia, 20, 80) is None
    assert _ia(ia, 5, 81) is None  # sent before the current group's first packet: ignored
    assert _ia(ia, 30, 90) is not None


def test_three_reordered_groups_reset_the_state():
    ia = InterArrival()
    t = 0
    for _ in range(3):
        _ia(ia, t, t + 100)
        t += 10
    # groups whose completion times go backwards
    results = [_ia(ia, t + 10 * i, 90 - 10 * i) for i in range(4)]
    assert results == [None] * 4
    assert ia._prev is None or ia._reordered == 0  # reset after 3 consecutive reorders


# --- AIMD (§1.6) ------------------------------------------------------------------------------

def test_overuse_backs_off_to_085_of_acked_then_holds():
    rc = AimdRateControl()
    rc.set_start_bitrate(1_200_000)
    assert rc.update(OVER, 1_000_000, 1_000) == pytest.approx(850_000)
    assert rc.state == "hold"
    assert rc.link_capacity.estimate_bps() == pytest.approx(1_000_000)
    # never above the current rate: acked far above it
    rc2 = AimdRateControl()
    rc2.set_start_bitrate(500_000)
    assert rc2.update(OVER, 2_000_000, 1_000) == pytest.approx(500_000)


def test_multiplicative_increase_is_8_percent_per_second_without_capacity_estimate():
    rc = AimdRateControl()
    rc.set_start_bitrate(500_000)
    r0 = rc.update(NORMAL, 500_000, 0)  # hold -> increase; dt 0: at least +1 kbps
    assert r0 == pytest.approx(501_000)
    assert rc.update(NORMAL, 500_000, 1_000) == pytest.approx(r0 * 1.08)
    r2 = rc.update(NORMAL, 500_000, 1_500)
    assert r2 == pytest.approx(r0 * 1.08 * 1.08 ** 0.5)


def test_additive_increase_near_capacity_is_20_8_kbps_per_s_at_1_mbps_rtt_100():
    rc = AimdRateControl()
    rc.set_start_bitrate(1_000_000)
    rc.rtt_ms = 100
    # 1 Mbps at 30 fps = 4 packets of 1042 B per frame; response time 2 x (100 + 100) ms
    assert rc.near_max_increase_bps_per_s() == pytest.approx(20_833, rel=1e-3)
    rc.update(OVER, 1_150_000, 0)  # creates a link-capacity estimate at 1.15 Mbps
    before = rc.current_bps
    rc.update(NORMAL, 1_000_000, 100)  # hold -> increase
    r = rc.update(NORMAL, 1_000_000, 1_100)
    assert r - before == pytest.approx(rc.near_max_increase_bps_per_s(), rel=0.05)
    rc.rtt_ms = 2000
    assert rc.near_max_increase_bps_per_s() == 4_000  # floor


def test_increase_is_clamped_to_1_5_acked_plus_10_kbps():
    rc = AimdRateControl()
    rc.set_start_bitrate(300_000)
    rc.update(NORMAL, 100_000, 0)
    assert rc.update(NORMAL, 100_000, 1_000) == pytest.approx(300_000)  # 160 k < current
    rc2 = AimdRateControl()
    rc2.set_start_bitrate(150_000)
    rc2.update(NORMAL, 100_000, 0)
    assert rc2.update(NORMAL, 100_000, 1_000) == pytest.approx(160_000)


def test_decrease_uses_link_capacity_when_acked_backoff_would_increase():
    rc = AimdRateControl()
    rc.set_start_bitrate(1_000_000)
    rc.update(OVER, 900_000, 0)  # -> 765 k, capacity estimate 900 k
    rc.update(UNDER, 900_000, 100)
    r = rc.update(OVER, 950_000, 400)  # 0.85 x 950 k = 807 k > 765 k: use 0.85 x capacity
    assert r == pytest.approx(765_000)


def test_time_to_reduce_further_uses_clamped_rtt():
    rc = AimdRateControl()
    rc.set_start_bitrate(1_000_000)
    rc.rtt_ms = 500  # clamped to 200 ms
    rc.update(OVER, 1_000_000, 1_000)
    assert not rc.time_to_reduce_further(1_150, 900_000)
    assert rc.time_to_reduce_further(1_200, 900_000)
    assert rc.time_to_reduce_further(1_050, 400_000)  # acked < half the estimate


def test_link_capacity_bounds_and_variance_clamp():
    lc = LinkCapacityEstimator()
    assert not lc.has_estimate() and lc.upper_bound_bps() == math.inf
    lc.on_overuse_detected(1_000_000)
    dev = math.sqrt(0.4 * 1000)
    assert lc.upper_bound_bps() == pytest.approx((1000 + 3 * dev) * 1000)
    assert lc.lower_bound_bps() == pytest.approx((1000 - 3 * dev) * 1000)
    for _ in range(50):
        lc.on_overuse_detected(100_000)
    assert lc.deviation_kbps <= 2.5


# --- acknowledged bitrate (§1.7) --------------------------------------------------------------

def test_acked_bitrate_first_window_500_ms_then_follows_rate():
    est = BitrateEstimator()
    t = 0
    while t < 500:  # 1 Mbps: 1250 B every 10 ms
        est.update(t, 1250, False)
        t += 10
    assert est.bitrate_bps() is None
    est.update(t, 1250, False)
    assert est.bitrate_bps() == pytest.approx(1_000_000, rel=0.01)
    for _ in range(300):  # 3 s at 500 kbps
        t += 10
        est.update(t, 625, False)
    assert est.bitrate_bps() == pytest.approx(500_000, rel=0.05)


def test_acked_estimator_expects_fast_change_after_alr():
    a = AcknowledgedBitrateEstimator()
    a.incoming([(t, t + 50, 1250) for t in range(0, 1000, 10)])
    v = a.est.variance
    a.alr_ended_ms = 1_000
    a.incoming([(1_010, 1_060, 1250)])
    assert a.est.variance >= v + 200 - 1e-9 or a.est.variance > v


# --- loss-based v1 (§1.8) ---------------------------------------------------------------------

def _loss_est(rate=1_000_000):
    """A loss-v1 estimator after its first (lossless) report at t=0 (which already applied one
    +8 % step); returns it and that rate."""
    e = SendSideBandwidthEstimation()
    e.set_bitrates(rate, 30_000, 10_000_000, 0)
    e.update_packets_lost(0, 100, 0)
    assert e.current_bps == rate * 1.08 + 1_000
    return e, e.current_bps


def test_low_loss_increases_8_percent_of_the_1s_minimum_plus_1_kbps():
    e, base = _loss_est()
    e.update_packets_lost(1, 100, 2_500)  # 1 %: 1.08 x min(rate over the last 1 s) + 1 kbps
    assert e.current_bps == pytest.approx(base * 1.08 + 1_000, abs=1)
    e.update_packets_lost(1, 100, 2_600)  # the 1 s minimum is still `base`
    assert e.current_bps == pytest.approx(base * 1.08 + 1_000, abs=1)


def test_moderate_loss_holds():
    e, base = _loss_est()
    e.update_packets_lost(5, 100, 2_500)  # 5 %
    assert e.current_bps == base
    e.update_estimate(3_000)
    assert e.current_bps == base  # frozen: the m77 weakness under random loss


def test_high_loss_decreases_by_half_the_loss_once_per_300ms_plus_rtt():
    e, base = _loss_est()
    e.update_rtt(100)
    e.update_packets_lost(20, 100, 2_500)  # 20 % -> Q8 51
    assert e.current_bps == pytest.approx(base * (512 - 51) / 512)
    first = e.current_bps
    e.update_packets_lost(20, 100, 2_700)  # within 300 ms + RTT: no second cut
    assert e.current_bps == first
    e.update_packets_lost(20, 100, 2_900)
    assert e.current_bps == pytest.approx(first * (512 - 51) / 512)


def test_fewer_than_20_packets_produce_no_loss_fraction():
    e, base = _loss_est()
    e.update_packets_lost(5, 10, 2_500)
    assert e.current_bps == base and e.last_fraction_loss == 0
    e.update_packets_lost(0, 10, 2_600)  # 5 of 20 accumulated: 25 %
    assert e.last_fraction_loss == 64


def test_delay_based_caps_and_start_phase_takes_delay_based():
    e = SendSideBandwidthEstimation()
    e.set_bitrates(300_000, 30_000, 5_000_000, 0)
    e.update_delay_based_estimate(10, 200_000)
    assert e.current_bps == 200_000
    e.update_packets_lost(0, 50, 100)  # no loss, start phase: take the delay-based value
    e.update_delay_based_estimate(200, 900_000)
    e.update_estimate(300)
    assert e.current_bps == 900_000


# --- probing (§1.9) ---------------------------------------------------------------------------

def test_probe_result_needs_80_percent_and_uses_095_recv_when_saturated():
    pe = ProbeBitrateEstimator()
    # 6 probes of 1000 B, sent every 2 ms (4 Mbps), received every 4 ms (2 Mbps)
    res = [pe.handle(1, 5, 3000, 100 + 2 * i, 200 + 4 * i, 1000) for i in range(6)]
    assert res[:3] == [None, None, None]  # 4 probes (80 % of 5) and 2400 bytes needed
    assert res[5] == pytest.approx(0.95 * 5 * 8000 / 20 * 1000)
    pe2 = ProbeBitrateEstimator()
    res2 = [pe2.handle(2, 5, 3000, 100 + 2 * i, 200 + 2 * i, 1000) for i in range(5)]
    assert res2[-1] == pytest.approx(4 * 8000 / 8 * 1000)  # unsaturated: min(send, recv)
    assert pe2.fetch_and_reset() == res2[-1] and pe2.fetch_and_reset() is None


def test_probe_result_rejected_when_recv_is_twice_send():
    pe = ProbeBitrateEstimator()
    res = [pe.handle(1, 5, 3000, 100 + 10 * i, 200 + 2 * i, 1000) for i in range(6)]
    assert res[-1] is None


def test_probe_controller_start_further_alr_and_mid_call():
    pc = ProbeController(enable_periodic_alr_probing=True)
    p = pc.set_bitrates(30_000, 300_000, 2_000_000, 0)
    assert [r for _, r in p] == [900_000, 1_800_000]  # 3x and 6x start
    further = pc.set_estimated_bitrate(1_500_000, 100)  # > 0.7 x 1.8 M: probe 2x, capped
    assert [r for _, r in further] == [2_000_000]
    assert pc.state == "complete"  # capped at max: no further probing
    assert pc.process(1_050) == []
    pc.set_alr_start_time(2_000)
    assert pc.process(6_999) == []
    assert [r for _, r in pc.process(7_000)] == [2_000_000]  # 2 x 1.5 M, capped at the max
    mid = pc.set_bitrates(30_000, -1, 4_000_000, 8_500)  # max raised above the estimate
    assert [r for _, r in mid] == [4_000_000]


def test_probe_controller_allocation_probes_and_cap_at_twice_allocated():
    pc = ProbeController()
    pc.set_bitrates(30_000, 600_000, 10_000_000, 0)
    pc.process(2_000)  # result timeout -> complete
    pc.set_estimated_bitrate(500_000, 2_000)
    p = pc.on_max_total_allocated_bitrate(1_000_000, 2_100)
    assert [r for _, r in p] == [1_000_000, 2_000_000]
    assert pc.max_probe_bitrate_bps() == 2_000_000


def test_probe_controller_recovery_probe_after_large_drop_in_alr():
    pc = ProbeController()
    pc.set_bitrates(30_000, 1_000_000, 5_000_000, 0)
    pc.process(2_000)
    pc.set_estimated_bitrate(2_000_000, 6_000)
    pc.set_estimated_bitrate(1_000_000, 6_100)  # < 0.66x: a large drop
    assert pc.request_probe(6_200) == []  # not in ALR
    pc.set_alr_start_time(6_150)
    assert [r for _, r in pc.request_probe(6_200)] == [0.85 * 2_000_000]


def test_alr_detector_budget_65_percent_start_080_stop_050():
    a = AlrDetector()
    a.set_estimated_bitrate(1_000_000)  # budget at 650 kbps
    assert a.budget.target_kbps == 650
    t = 0
    a.on_bytes_sent(1000, t)
    for _ in range(100):  # 100 kbps: mostly unused budget
        t += 80
        a.on_bytes_sent(1000, t)
    assert a.alr_started_ms is not None
    for _ in range(100):  # 1.6 Mbps: budget consumed
        t += 5
        a.on_bytes_sent(1000, t)
    assert a.alr_started_ms is None
    a.process(t + 3_001)  # nothing sent for over 3 s
    assert a.alr_started_ms == t + 3_001


def test_interval_budget():
    b = IntervalBudget(800, can_build_up_underuse=False)
    assert b.max_bytes == 50_000
    b.increase(10)
    assert b.remaining == 1000
    b.increase(10)
    assert b.remaining == 1000  # unused budget does not accumulate
    b.use(3000)
    assert b.ratio() == pytest.approx(-2000 / 50_000)


# --- delay-based glue and the controller (§1.5, §1.0) -----------------------------------------

def test_delay_based_halves_while_overusing_without_acked_rate():
    # m77 says "every 200 ms", but InitialTimeToReduceFurther passes estimate/2 - 1 bps as the
    # throughput, below TimeToReduceFurther's estimate/2 threshold: it halves on every feedback
    d = DelayBasedBwe()
    d.rate_control.set_start_bitrate(1_000_000)
    d.detector.state = OVER
    r = d._maybe_update(None, None, False, False, 1_000)
    assert r.updated and r.target_bps == pytest.approx(500_000)
    r = d._maybe_update(None, None, False, False, 1_100)
    assert r.target_bps == pytest.approx(250_000)


def test_delay_based_probe_result_sets_estimate_unless_overusing():
    d = DelayBasedBwe()
    d.rate_control.set_start_bitrate(300_000)
    r = d._maybe_update(250_000, 1_700_000, False, False, 1_000)
    assert r.probe and r.target_bps == 1_700_000 and d.rate_control.current_bps == 1_700_000


def test_controller_first_process_applies_constraints_and_start_probes():
    c = GoogCcController(min_bps=30_000, start_bps=600_000, max_bps=5_000_000)
    assert c.target_bps == 600_000
    c.process(0)
    assert [r for _, r in c.pop_probes()] == [1_800_000, 3_600_000]
    assert c.pop_probes() == []
    assert c.pacing_bps == pytest.approx(2.5 * 600_000)


def test_controller_rtt_and_loss_from_feedback_only():
    c = GoogCcController(min_bps=30_000, start_bps=600_000, max_bps=5_000_000)
    c.process(0)
    # 40 packets sent every 5 ms, received 60 ms later, feedback at 300 ms; 4 lost
    packets = [(5 * i, None if i % 10 == 3 else 5 * i + 60, 1000, None) for i in range(40)]
    c.on_feedback(300, packets)
    assert c.bandwidth.last_fraction_loss == (4 << 8) // 40  # loss v1 got 10 %
    # RTT window: feedback time minus the send time of the oldest packet of the feedback
    assert c.mean_rtt_ms == 300
    assert c.bandwidth.rtt_ms == 300 - 195 - (0 - 0)  # min over packets, pending time removed
