"""AIMD rate control and link-capacity estimator (libwebrtc m77
``modules/remote_bitrate_estimator/aimd_rate_control.cc`` and
``goog_cc/link_capacity_estimator.cc``; research/bwe.md §1.6). Rates in bps, times in ms.

Default m77 settings: β = 0.85, default RTT 200 ms, the adaptive-threshold experiment on (so the
additive response time is ``2·(RTT + 100 ms)``), no ALR/initial-backoff trials.
"""

from __future__ import annotations

import math

from raysfu.bwe.goog_cc.trendline import BandwidthUsage

__all__ = ["RC_DECREASE", "RC_HOLD", "RC_INCREASE", "AimdRateControl", "LinkCapacityEstimator"]

RC_HOLD, RC_INCREASE, RC_DECREASE = "hold", "increase", "decrease"
BACKOFF_FACTOR = 0.85
DEFAULT_RTT_MS = 200
MIN_BITRATE_BPS = 5_000  # congestion_controller::GetMinBitrate
INITIAL_MAX_BPS = 30_000_000
INITIALIZATION_TIME_MS = 5_000
MIN_INCREASE_BPS_PER_S = 4_000.0


class LinkCapacityEstimator:
    """EWMA of the acked rate at overuse (α 0.05; probes α 0.5) with a normalized variance clamped
    to [0.4, 2.5]; bounds are ``estimate ± 3·sqrt(var·estimate)`` (kbps internally)."""

    __slots__ = ("deviation_kbps", "estimate_kbps")

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self.deviation_kbps = 0.4

    def has_estimate(self) -> bool:
        return self.estimate_kbps is not None

    def reset(self) -> None:
        self.estimate_kbps = None

    def _dev(self) -> float:
        return math.sqrt(self.deviation_kbps * self.estimate_kbps)

    def upper_bound_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._dev()) * 1000

    def lower_bound_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._dev()) * 1000

    def estimate_bps(self) -> float:
        return self.estimate_kbps * 1000

    def on_overuse_detected(self, acked_bps: float) -> None:
        self._update(acked_bps, 0.05)

    def on_probe_rate(self, probe_bps: float) -> None:
        self._update(probe_bps, 0.5)

    def _update(self, sample_bps: float, alpha: float) -> None:
        s = sample_bps / 1000
        if self.estimate_kbps is None:
            self.estimate_kbps = s
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * s
        norm = max(self.estimate_kbps, 1.0)
        err = self.estimate_kbps - s
        self.deviation_kbps = (1 - alpha) * self.deviation_kbps + alpha * err * err / norm
        self.deviation_kbps = min(max(self.deviation_kbps, 0.4), 2.5)


class AimdRateControl:
    """``update(state, acked_bps | None, now_ms) -> bps`` (libwebrtc ``AimdRateControl``).

    - State machine: NORMAL moves Hold→Increase, OVERUSING →Decrease, UNDERUSING →Hold.
    - Increase: multiplicative ``1.08^min(dt_s, 1)`` (≥ +1 kbps) without a link-capacity
      estimate, else additive ``avg_packet_bits / (2·(RTT + 100 ms))`` per second (≥ 4 kbps/s);
      the estimate is reset when the acked rate exceeds its upper bound.
    - Decrease: ``0.85 × acked`` (or ``0.85 × link capacity`` if that were above the current
      rate), never above the current rate; then Hold.
    - Clamp: an increase never goes above ``max(current, 1.5·acked + 10 kbps)``; floor
      ``min_bitrate_bps``.
    """

    __slots__ = (
        "beta",
        "current_bps",
        "in_alr",
        "increase_factor",
        "initialized",
        "last_decrease_bps",
        "latest_acked_bps",
        "link_capacity",
        "min_bitrate_bps",
        "rtt_ms",
        "state",
        "time_first_acked_ms",
        "time_last_change_ms",
        "time_last_decrease_ms",
    )

    def __init__(self) -> None:
        self.min_bitrate_bps = MIN_BITRATE_BPS
        self.current_bps = float(INITIAL_MAX_BPS)
        self.latest_acked_bps = self.current_bps
        self.link_capacity = LinkCapacityEstimator()
        self.state = RC_HOLD
        self.time_last_change_ms: int | None = None
        self.time_last_decrease_ms: int | None = None
        self.time_first_acked_ms: int | None = None
        self.initialized = False
        self.beta = BACKOFF_FACTOR
        self.in_alr = False
        self.rtt_ms = DEFAULT_RTT_MS
        self.last_decrease_bps: float | None = None
        self.increase_factor = 1.08  # multiplicative increase per second (m77: 1.08)

    def set_start_bitrate(self, bps: float) -> None:
        self.current_bps = float(bps)
        self.latest_acked_bps = self.current_bps
        self.initialized = True

    def set_min_bitrate(self, bps: float) -> None:
        self.min_bitrate_bps = bps
        self.current_bps = max(bps, self.current_bps)

    def valid_estimate(self) -> bool:
        return self.initialized

    def time_to_reduce_further(self, now_ms: int, acked_bps: float) -> bool:
        interval = min(max(self.rtt_ms, 10), 200)
        if self.time_last_change_ms is None or now_ms - self.time_last_change_ms >= interval:
            return True
        if self.initialized:
            return acked_bps < 0.5 * self.current_bps
        return False

    def initial_time_to_reduce_further(self, now_ms: int) -> bool:
        return self.initialized and self.time_to_reduce_further(
            now_ms, self.current_bps / 2 - 1)

    def set_estimate(self, bps: float, now_ms: int) -> None:
        self.initialized = True
        prev = self.current_bps
        self.current_bps = self._clamp(bps, bps)
        self.time_last_change_ms = now_ms
        if self.current_bps < prev:
            self.time_last_decrease_ms = now_ms

    def near_max_increase_bps_per_s(self) -> float:
        frame_bits = self.current_bps / 30.0
        frame_bytes = frame_bits / 8
        packets = math.ceil(frame_bytes / 1200) or 1
        avg_packet_bits = frame_bits / packets
        response_s = 2 * (self.rtt_ms + 100) / 1000.0
        return max(MIN_INCREASE_BPS_PER_S, avg_packet_bits / response_s)

    def update(self, usage: str, acked_bps: float | None, now_ms: int) -> float:
        if not self.initialized:
            if self.time_first_acked_ms is None:
                if acked_bps is not None:
                    self.time_first_acked_ms = now_ms
            elif now_ms - self.time_first_acked_ms > INITIALIZATION_TIME_MS and acked_bps:
                self.current_bps = acked_bps
                self.initialized = True
        self.current_bps = self._change_bitrate(self.current_bps, usage, acked_bps, now_ms)
        return self.current_bps

    def _change_state(self, usage: str, now_ms: int) -> None:
        if usage == BandwidthUsage.NORMAL:
            if self.state == RC_HOLD:
                self.time_last_change_ms = now_ms
                self.state = RC_INCREASE
        elif usage == BandwidthUsage.OVERUSING:
            self.state = RC_DECREASE
        else:
            self.state = RC_HOLD

    def _change_bitrate(self, new_bps: float, usage: str, acked_bps: float | None,
                        now_ms: int) -> float:
        acked = self.latest_acked_bps if acked_bps is None else acked_bps
        if acked_bps is not None:
            self.latest_acked_bps = acked_bps
        if not self.initialized and usage != BandwidthUsage.OVERUSING:
            return self.current_bps
        self._change_state(usage, now_ms)
        lc = self.link_capacity
        if self.state == RC_INCREASE:
            if lc.has_estimate() and acked > lc.upper_bound_bps():
                lc.reset()
            last = self.time_last_change_ms
            if lc.has_estimate():
                dt_s = 0.0 if last is None else (now_ms - last) / 1000.0
                new_bps += self.near_max_increase_bps_per_s() * dt_s
            else:
                alpha = self.increase_factor
                if last is not None:
                    alpha = alpha ** min((now_ms - last) / 1000.0, 1.0)
                new_bps += max(new_bps * (alpha - 1.0), 1000.0)
            self.time_last_change_ms = now_ms
        elif self.state == RC_DECREASE:
            new_bps = acked * self.beta
            if new_bps > self.current_bps and lc.has_estimate():
                new_bps = self.beta * lc.estimate_bps()
            new_bps = min(new_bps, self.current_bps)
            if self.initialized and acked < self.current_bps:
                self.last_decrease_bps = self.current_bps - new_bps
            if acked < lc.lower_bound_bps():
                lc.reset()
            self.initialized = True
            lc.on_overuse_detected(acked)
            self.state = RC_HOLD
            self.time_last_change_ms = now_ms
            self.time_last_decrease_ms = now_ms
        return self._clamp(new_bps, acked)

    def _clamp(self, new_bps: float, acked_bps: float) -> float:
        max_bps = 1.5 * acked_bps + 10_000
        if new_bps > self.current_bps and new_bps > max_bps:
            new_bps = max(self.current_bps, max_bps)
        return max(new_bps, self.min_bitrate_bps)
