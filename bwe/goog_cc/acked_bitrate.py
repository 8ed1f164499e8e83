"""Acknowledged-bitrate estimator (libwebrtc m77 ``goog_cc/bitrate_estimator.cc`` and
``acknowledged_bitrate_estimator.cc``; research/bwe.md §1.7). Times in ms, rates in bps.

Bytes of received packets (in receive-time order) are summed over windows of 500 ms (first
sample) then 150 ms; each window's rate is a sample for a Bayesian update whose sample variance
is ``(10·|est − sample| / est)²`` and whose prior variance grows by 5 per update.
"""

from __future__ import annotations

__all__ = ["AcknowledgedBitrateEstimator", "BitrateEstimator"]

INITIAL_WINDOW_MS = 500
WINDOW_MS = 150
UNCERTAINTY_SCALE = 10.0
UNCERTAINTY_SCALE_IN_ALR = 10.0


class BitrateEstimator:
    """``update(at_ms, size_bytes, in_alr)``; ``bitrate_bps()`` → float | None."""

    __slots__ = ("_prev_ms", "_sum", "_window_ms", "estimate_kbps", "variance")

    def __init__(self) -> None:
        self._sum = 0
        self._window_ms = 0
        self._prev_ms = -1
        self.estimate_kbps = -1.0
        self.variance = 50.0

    def update(self, at_ms: int, size_bytes: int, in_alr: bool) -> None:
        rate_window = WINDOW_MS if self.estimate_kbps >= 0 else INITIAL_WINDOW_MS
        sample = self._update_window(at_ms, size_bytes, rate_window)
        if sample < 0:
            return
        est = self.estimate_kbps
        if est < 0:
            self.estimate_kbps = sample
            return
        scale = UNCERTAINTY_SCALE_IN_ALR if in_alr and sample < est else UNCERTAINTY_SCALE
        unc = scale * abs(est - sample) / est if est > 0 else scale
        sample_var = unc * unc
        pred_var = self.variance + 5.0
        self.estimate_kbps = (sample_var * est + pred_var * sample) / (sample_var + pred_var)
        self.variance = sample_var * pred_var / (sample_var + pred_var)

    def _update_window(self, now_ms: int, size: int, window: int) -> float:
        if now_ms < self._prev_ms:
            self._prev_ms = -1
            self._sum = 0
            self._window_ms = 0
        if self._prev_ms >= 0:
            self._window_ms += now_ms - self._prev_ms
            if now_ms - self._prev_ms > window:
                self._sum = 0
                self._window_ms %= window
        self._prev_ms = now_ms
        sample = -1.0
        if self._window_ms >= window:
            sample = 8.0 * self._sum / window
            self._window_ms -= window
            self._sum = 0
        self._sum += size
        return sample

    def bitrate_bps(self) -> float | None:
        return None if self.estimate_kbps < 0 else self.estimate_kbps * 1000

    def expect_fast_rate_change(self) -> None:
        self.variance += 200


class AcknowledgedBitrateEstimator:
    """Feeds received packets into :class:`BitrateEstimator`; after ALR ends, the first packet
    sent after that time raises the variance (fast rate change expected)."""

    __slots__ = ("alr_ended_ms", "est", "in_alr")

    def __init__(self) -> None:
        self.est = BitrateEstimator()
        self.in_alr = False
        self.alr_ended_ms: int | None = None

    def incoming(self, packets) -> None:
        """``packets``: iterable of ``(send_ms, recv_ms, size_bytes)`` in receive-time order."""
        est = self.est
        in_alr = self.in_alr
        for send_ms, recv_ms, size in packets:
            if self.alr_ended_ms is not None and send_ms > self.alr_ended_ms:
                est.expect_fast_rate_change()
                self.alr_ended_ms = None
            est.update(recv_ms, size, in_alr)

    def bitrate_bps(self) -> float | None:
        return self.est.bitrate_bps()
