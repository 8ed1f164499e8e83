"""goog_cc m77 reference port: trendline estimator (delay gradient + adaptive threshold)."""

import pytest

from raysfu.bwe.goog_cc.trendline import BandwidthUsage, TrendlineEstimator, _linear_fit_slope


def _feed(est, n, send_delta_us, ratio, t0_us=0):
    """n group pairs every send_delta, received at ratio × send spacing; returns states."""
    states = []
    t = t0_us
    recv = round(send_delta_us * ratio)
    for _ in range(n):
        t += recv
        states.append(est.update(recv, send_delta_us, t))
    return states, t


def test_linear_fit_slope():
    assert _linear_fit_slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)
    assert _linear_fit_slope([(1.0, 1.0), (1.0, 3.0)]) is None


def test_constant_delay_stays_normal_and_threshold_falls_to_floor():
    est = TrendlineEstimator()
    states, _ = _feed(est, 200, 5_000, 1.0)
    assert set(states) == {BandwidthUsage.NORMAL}
    assert est.modified_trend == 0.0
    assert est.threshold == 6.0


def test_growing_queue_is_detected_as_overuse_then_draining_as_underuse():
    est = TrendlineEstimator()
    states, t = _feed(est, 40, 5_000, 1.10)  # 10 % over capacity
    assert states[:19] == [BandwidthUsage.NORMAL] * 19  # no slope before 20 points
    first = states.index(BandwidthUsage.OVERUSING)
    assert 20 <= first <= 25
    states, _ = _feed(est, 60, 5_000, 0.7, t)  # queue draining
    assert BandwidthUsage.UNDERUSING in states


def test_single_delta_is_normal():
    est = TrendlineEstimator()
    assert est.update(50_000, 5_000, 1_000_000) == BandwidthUsage.NORMAL


def test_threshold_adaptation_hand_computed():
    est = TrendlineEstimator()
    est._update_threshold(0.0, 1_000)  # first call: dt = 0
    assert est.threshold == 12.5
    est._update_threshold(50.0, 1_100)  # |m| > 12.5 + 15: a spike, ignored
    assert est.threshold == 12.5
    est._update_threshold(-20.0, 1_300)  # k_up, dt capped at 100 ms
    assert est.threshold == pytest.approx(12.5 + 0.0087 * (20.0 - 12.5) * 100)
    est._update_threshold(0.0, 1_310)  # k_down over 10 ms
    assert est.threshold == pytest.approx(19.025 + 0.039 * (0 - 19.025) * 10)
    est._update_threshold(0.0, 1_410)
    assert est.threshold == 6.0  # floor
