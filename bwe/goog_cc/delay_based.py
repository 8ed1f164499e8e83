"""Delay-based bandwidth estimator (libwebrtc m77 ``goog_cc/delay_based_bwe.cc``;
research/bwe.md §1.5): inter-arrival groups → trendline → AIMD. Times in ms, rates in bps.
"""

from __future__ import annotations

from raysfu.bwe.goog_cc.aimd import AimdRateControl
from raysfu.bwe.goog_cc.inter_arrival import TICKS_PER_MS, InterArrival, send_time_ticks
from raysfu.bwe.goog_cc.trendline import BandwidthUsage, TrendlineEstimator

__all__ = ["DelayBasedBwe", "DelayBasedResult"]

STREAM_TIMEOUT_MS = 2_000


class DelayBasedResult:
    """Outcome of one feedback: ``updated``, ``probe`` (target came from a probe),
    ``target_bps``, ``recovered_from_overuse``, ``backoff_in_alr``."""

    __slots__ = ("backoff_in_alr", "probe", "recovered_from_overuse", "target_bps", "updated")

    def __init__(self) -> None:
        self.updated = False
        self.probe = False
        self.target_bps = 0.0
        self.recovered_from_overuse = False
        self.backoff_in_alr = False


class DelayBasedBwe:
    """``incoming(packets, acked_bps, probe_bps, in_alr, now_ms) -> DelayBasedResult``.

    ``packets``: received ``(send_ms, recv_ms, size_bytes)`` sorted by receive time. On overuse:
    back off from the previous estimate in ALR (the ``WebRTC-Bwe-AlrLimitedBackoff`` behaviour
    mediasoup enables), else to ``0.85 × acked`` at most once per ``clamp(RTT, 10, 200)`` ms, or
    halve every 200 ms while no acked rate exists. Otherwise a probe result sets the estimate, or
    AIMD increases/holds. No feedback for 2 s resets the inter-arrival and trendline state.
    """

    __slots__ = (
        "alr_limited_backoff",
        "detector",
        "has_once_detected_overuse",
        "inter_arrival",
        "last_seen_ms",
        "prev_bps",
        "prev_state",
        "rate_control",
    )

    def __init__(self, alr_limited_backoff: bool = True) -> None:
        self.rate_control = AimdRateControl()
        self.inter_arrival = InterArrival()
        self.detector = TrendlineEstimator()
        self.last_seen_ms: int | None = None
        self.prev_bps = 0.0
        self.prev_state = BandwidthUsage.NORMAL
        self.has_once_detected_overuse = False
        self.alr_limited_backoff = alr_limited_backoff

    def incoming(self, packets, acked_bps: float | None, probe_bps: float | None,
                 in_alr: bool, now_ms: int) -> DelayBasedResult:
        if not packets:
            return DelayBasedResult()
        recovered = False
        prev_state = self.detector.state
        for send_ms, recv_ms, size in packets:
            self._packet(send_ms, recv_ms, size, now_ms)
            st = self.detector.state
            if prev_state == BandwidthUsage.UNDERUSING and st == BandwidthUsage.NORMAL:
                recovered = True
            prev_state = st
        self.rate_control.in_alr = in_alr
        return self._maybe_update(acked_bps, probe_bps, recovered, in_alr, now_ms)

    def _packet(self, send_ms: int, recv_ms: int, size: int, now_ms: int) -> None:
        if self.last_seen_ms is None or now_ms - self.last_seen_ms > STREAM_TIMEOUT_MS:
            self.inter_arrival = InterArrival()
            self.detector = TrendlineEstimator()
        self.last_seen_ms = now_ms
        d = self.inter_arrival.compute_deltas(send_time_ticks(send_ms), recv_ms, now_ms, size)
        if d is not None:
            ts_delta_ms = d[0] / TICKS_PER_MS
            self.detector.update(d[1] * 1000, ts_delta_ms * 1000.0, recv_ms * 1000)

    def _backoff_rate(self, acked_bps: float) -> float:
        """Rate an overuse backs off from (m77: the acked bitrate); a hook for subclasses."""
        return acked_bps

    def _maybe_update(self, acked_bps, probe_bps, recovered, in_alr, now_ms,
                      state: BandwidthUsage | None = None) -> DelayBasedResult:
        """Applies the detector's state (or ``state``, a subclass's override) to AIMD."""
        r = DelayBasedResult()
        rc = self.rate_control
        if state is None:
            state = self.detector.state
        if state == BandwidthUsage.OVERUSING:
            if self.has_once_detected_overuse and in_alr and self.alr_limited_backoff:
                if rc.time_to_reduce_further(now_ms, self.prev_bps):
                    r.target_bps = rc.update(state, self.prev_bps, now_ms)
                    r.updated = rc.valid_estimate()
                    r.backoff_in_alr = True
            elif acked_bps is not None and rc.time_to_reduce_further(now_ms, acked_bps):
                r.target_bps = rc.update(state, self._backoff_rate(acked_bps), now_ms)
                r.updated = rc.valid_estimate()
            elif acked_bps is None and rc.initial_time_to_reduce_further(now_ms):
                rc.set_estimate(rc.current_bps / 2, now_ms)
                r.updated = True
                r.target_bps = rc.current_bps
            self.has_once_detected_overuse = True
        elif probe_bps is not None:
            r.probe = True
            r.updated = True
            r.target_bps = probe_bps
            rc.set_estimate(probe_bps, now_ms)
        else:
            r.target_bps = rc.update(state, acked_bps, now_ms)
            r.updated = rc.valid_estimate()
            r.recovered_from_overuse = recovered
        if (r.updated and self.prev_bps != r.target_bps) or state != self.prev_state:
            self.prev_bps = r.target_bps if r.updated else self.prev_bps
            self.prev_state = state
        return r
