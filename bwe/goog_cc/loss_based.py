"""Send-side bandwidth estimation with the classic loss-based controller, "v1" (libwebrtc m77
``modules/bitrate_controller/send_side_bandwidth_estimation.cc``; research/bwe.md §1.8).
Times in ms, rates in bps. The REMB cap, RTT backoff and feedback-timeout trials are off, as in
mediasoup's feedback-only configuration.

The result is ``min(loss-based, delay-based, max)`` raised to ``min``.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SendSideBandwidthEstimation"]

BWE_INCREASE_INTERVAL_MS = 1_000
BWE_DECREASE_INTERVAL_MS = 300
START_PHASE_MS = 2_000
LIMIT_NUM_PACKETS = 20
DEFAULT_MAX_BITRATE_BPS = 1_000_000_000
MAX_RTCP_FEEDBACK_INTERVAL_MS = 5_000
LOW_LOSS_THRESHOLD = 0.02
HIGH_LOSS_THRESHOLD = 0.1
MIN_BITRATE_BPS = 5_000


class SendSideBandwidthEstimation:
    """Loss v1: within 6 s of the last loss report, loss ≤ 2 % → ``1.08 × min(rate over the
    last 1 s) + 1 kbps``; 2–10 % → hold; > 10 % → ``rate × (512 − loss_q8)/512`` at most once
    per ``300 ms + RTT`` and once per report. During the first 2 s after the first report with
    no loss, the delay-based value is taken as is (start-up probing)."""

    __slots__ = (
        "current_bps",
        "delay_based_bps",
        "expected_since",
        "first_report_ms",
        "has_decreased_since_last_loss",
        "increase_factor",
        "last_fraction_loss",
        "last_loss_feedback_ms",
        "last_loss_report_ms",
        "lost_since",
        "max_configured_bps",
        "min_configured_bps",
        "min_history",
        "monotone_increase",
        "rtt_ms",
        "time_last_decrease_ms",
    )

    def __init__(self) -> None:
        self.current_bps = 0.0
        self.min_configured_bps = MIN_BITRATE_BPS
        self.max_configured_bps = DEFAULT_MAX_BITRATE_BPS
        self.delay_based_bps = 0.0
        self.min_history: deque[tuple[int, float]] = deque()
        self.lost_since = 0
        self.expected_since = 0
        self.has_decreased_since_last_loss = False
        self.last_loss_feedback_ms: int | None = None
        self.last_loss_report_ms: int | None = None
        self.last_fraction_loss = 0  # Q8
        self.rtt_ms = 0
        self.time_last_decrease_ms: int | None = None
        self.first_report_ms: int | None = None
        self.increase_factor = 1.08  # per increase interval (1 s); m77: 1.08
        self.monotone_increase = False  # never lower the rate in the increase branch (not m77)

    def set_bitrates(self, send_bps: float | None, min_bps: float, max_bps: float,
                     now_ms: int) -> None:
        self.set_min_max(min_bps, max_bps)
        if send_bps:
            self.set_send_bitrate(send_bps, now_ms)

    def set_min_max(self, min_bps: float, max_bps: float) -> None:
        self.min_configured_bps = max(min_bps, MIN_BITRATE_BPS)
        if max_bps and max_bps > 0 and max_bps != float("inf"):
            self.max_configured_bps = max(self.min_configured_bps, max_bps)
        else:
            self.max_configured_bps = DEFAULT_MAX_BITRATE_BPS

    def set_send_bitrate(self, bps: float, now_ms: int) -> None:
        self.delay_based_bps = 0.0  # reset so that the new value is not capped
        self._cap(now_ms, bps)
        self.min_history.clear()

    def update_delay_based_estimate(self, now_ms: int, bps: float) -> None:
        self.delay_based_bps = bps
        self._cap(now_ms, self.current_bps)

    def update_rtt(self, rtt_ms: int) -> None:
        if rtt_ms > 0:
            self.rtt_ms = rtt_ms

    def update_packets_lost(self, lost: int, expected: int, now_ms: int) -> None:
        self.last_loss_feedback_ms = now_ms
        if self.first_report_ms is None:
            self.first_report_ms = now_ms
        if expected > 0:
            self.lost_since += lost
            self.expected_since += expected
            if self.expected_since < LIMIT_NUM_PACKETS:
                return
            self.has_decreased_since_last_loss = False
            self.last_fraction_loss = min((self.lost_since << 8) // self.expected_since, 255)
            self.lost_since = 0
            self.expected_since = 0
            self.last_loss_report_ms = now_ms
            self.update_estimate(now_ms)

    def in_start_phase(self, now_ms: int) -> bool:
        return self.first_report_ms is None or now_ms - self.first_report_ms < START_PHASE_MS

    def update_estimate(self, now_ms: int) -> None:
        new = self.current_bps
        if self.last_fraction_loss == 0 and self.in_start_phase(now_ms):
            new = max(self.delay_based_bps, new)
            if new != self.current_bps:
                self.min_history.clear()
                self.min_history.append((now_ms, new))
                self._cap(now_ms, new)
                return
        self._update_min_history(now_ms)
        if self.last_loss_report_ms is None:
            self._cap(now_ms, self.current_bps)
            return
        if now_ms - self.last_loss_report_ms < 1.2 * MAX_RTCP_FEEDBACK_INTERVAL_MS:
            loss = self.last_fraction_loss / 256.0
            if loss <= LOW_LOSS_THRESHOLD:
                new = int(self.min_history[0][1] * self.increase_factor + 0.5) + 1000
                if self.monotone_increase and new < self.current_bps:
                    new = self.current_bps
            elif loss > HIGH_LOSS_THRESHOLD:
                if not self.has_decreased_since_last_loss and (
                        self.time_last_decrease_ms is None or now_ms - self.time_last_decrease_ms
                        >= BWE_DECREASE_INTERVAL_MS + self.rtt_ms):
                    self.time_last_decrease_ms = now_ms
                    new = self.current_bps * (512 - self.last_fraction_loss) / 512.0
                    self.has_decreased_since_last_loss = True
        self._cap(now_ms, new)

    def _update_min_history(self, now_ms: int) -> None:
        h = self.min_history
        while h and now_ms - h[0][0] + 1 > BWE_INCREASE_INTERVAL_MS:
            h.popleft()
        cur = self.current_bps
        while h and cur <= h[-1][1]:
            h.pop()
        h.append((now_ms, cur))

    def _cap(self, now_ms: int, bps: float) -> None:
        if 0 < self.delay_based_bps < bps:
            bps = self.delay_based_bps
        bps = min(bps, self.max_configured_bps)
        bps = max(bps, self.min_configured_bps)
        self.current_bps = bps

    def loss_fraction(self) -> float:
        """Last reported loss fraction (0..1)."""
        return self.last_fraction_loss / 256.0
