"""Delay-gradient trendline estimator with adaptive threshold (libwebrtc m77
``modules/congestion_controller/goog_cc/trendline_estimator.cc``, default settings: window 20,
smoothing 0.9, gain 4, no slope cap, no sorting; research/bwe.md §1.4).

One ``update`` per pair of complete packet groups (from the inter-arrival stage). Inputs are µs;
internally everything is in ms as in libwebrtc, so ``modified_trend`` and ``threshold`` are in
the same (ms-scaled) units as libwebrtc's logs.
"""

from __future__ import annotations

from collections import deque

__all__ = ["BandwidthUsage", "TrendlineEstimator"]


class BandwidthUsage:
    """Detector states (libwebrtc ``BandwidthUsage``)."""

    NORMAL = "normal"
    UNDERUSING = "underusing"
    OVERUSING = "overusing"


SMOOTHING_COEF = 0.9
THRESHOLD_GAIN = 4.0
WINDOW_SIZE = 20
MAX_ADAPT_OFFSET_MS = 15.0
OVERUSING_TIME_THRESHOLD_MS = 10.0
MIN_NUM_DELTAS = 60
DELTA_COUNTER_MAX = 1000
K_UP = 0.0087
K_DOWN = 0.039
INITIAL_THRESHOLD_MS = 12.5
THRESHOLD_MIN_MS, THRESHOLD_MAX_MS = 6.0, 600.0
MAX_TIME_DELTA_MS = 100


class TrendlineEstimator:
    """``update(recv_delta_us, send_delta_us, arrival_us)`` → current :class:`BandwidthUsage`.

    - ``recv_delta_us`` / ``send_delta_us``: difference of the last arrival / send times of two
      consecutive packet groups; ``arrival_us``: the newer group's completion (arrival) time.
    - The accumulated delay (Σ recv − send, ms) is smoothed (α 0.9) and a least-squares slope is
      fitted over the last 20 (arrival ms since the first, smoothed delay) points; until 20 points
      exist the previous slope (0) is kept.
    - ``modified_trend = min(n, 60) · slope · 4`` against ``threshold``: overuse needs it above
      the threshold for > 10 ms of send time over ≥ 2 updates with a non-falling slope.
    - Threshold: ``+= k · (|m| − thr) · min(Δt_ms, 100)``, k = 0.039 below / 0.0087 above,
      skipped when ``|m| > thr + 15``; clamped to [6, 600].
    """

    __slots__ = ("num_of_deltas", "_first_arrival_ms", "accumulated_delay_ms",
                 "smoothed_delay_ms", "_hist", "threshold", "modified_trend", "_last_update_ms",
                 "prev_trend", "_time_over_using", "_overuse_counter", "state")

    def __init__(self) -> None:
        self.num_of_deltas = 0
        self._first_arrival_ms: float | None = None
        self.accumulated_delay_ms = 0.0
        self.smoothed_delay_ms = 0.0
        self._hist: deque[tuple[float, float]] = deque(maxlen=WINDOW_SIZE)
        self.threshold = INITIAL_THRESHOLD_MS
        self.modified_trend = 0.0
        self._last_update_ms: float | None = None
        self.prev_trend = 0.0
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self.state = BandwidthUsage.NORMAL

    def update(self, recv_delta_us: int, send_delta_us: int, arrival_us: int) -> str:
        recv_ms = recv_delta_us / 1000.0
        send_ms = send_delta_us / 1000.0
        arrival_ms = arrival_us // 1000  # libwebrtc works on int64 ms here
        self.num_of_deltas = min(self.num_of_deltas + 1, DELTA_COUNTER_MAX)
        if self._first_arrival_ms is None:
            self._first_arrival_ms = arrival_ms
        self.accumulated_delay_ms += recv_ms - send_ms
        self.smoothed_delay_ms = (SMOOTHING_COEF * self.smoothed_delay_ms
                                  + (1 - SMOOTHING_COEF) * self.accumulated_delay_ms)
        hist = self._hist
        hist.append((float(arrival_ms - self._first_arrival_ms), self.smoothed_delay_ms))
        trend = self.prev_trend
        if len(hist) == WINDOW_SIZE:
            slope = _linear_fit_slope(hist)
            if slope is not None:
                trend = slope
        self._detect(trend, send_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, ts_delta_ms: float, now_ms: int) -> None:
        if self.num_of_deltas < 2:
            self.state = BandwidthUsage.NORMAL
            return
        m = min(self.num_of_deltas, MIN_NUM_DELTAS) * trend * THRESHOLD_GAIN
        self.modified_trend = m
        if m > self.threshold:
            if self._time_over_using == -1:
                self._time_over_using = ts_delta_ms / 2  # assume half the gap was over-using
            else:
                self._time_over_using += ts_delta_ms
            self._overuse_counter += 1
            if (self._time_over_using > OVERUSING_TIME_THRESHOLD_MS
                    and self._overuse_counter > 1 and trend >= self.prev_trend):
                self._time_over_using = 0
                self._overuse_counter = 0
                self.state = BandwidthUsage.OVERUSING
        elif m < -self.threshold:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = BandwidthUsage.UNDERUSING
        else:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = BandwidthUsage.NORMAL
        self.prev_trend = trend
        self._update_threshold(m, now_ms)

    def _update_threshold(self, m: float, now_ms: int) -> None:
        if self._last_update_ms is None:
            self._last_update_ms = now_ms
        am = abs(m)
        if am > self.threshold + MAX_ADAPT_OFFSET_MS:
            self._last_update_ms = now_ms  # ignore spikes, e.g. a sudden capacity drop
            return
        k = K_DOWN if am < self.threshold else K_UP
        dt = min(now_ms - self._last_update_ms, MAX_TIME_DELTA_MS)
        self.threshold += k * (am - self.threshold) * dt
        self.threshold = min(max(self.threshold, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)
        self._last_update_ms = now_ms


def _linear_fit_slope(points) -> float | None:
    """Least-squares slope of ``[(x, y), ...]``; None when all x are equal."""
    n = len(points)
    x_avg = sum(p[0] for p in points) / n
    y_avg = sum(p[1] for p in points) / n
    num = den = 0.0
    for x, y in points:
        dx = x - x_avg
        num += dx * (y - y_avg)
        den += dx * dx
    return None if den == 0 else num / den
