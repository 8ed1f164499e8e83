"""Probe controller, probe-result estimator and ALR detector (libwebrtc m77
``goog_cc/probe_controller.cc``, ``probe_bitrate_estimator.cc``, ``alr_detector.cc`` with
``pacing/interval_budget.cc``; research/bwe.md §1.9–1.10). Times in ms, rates in bps.

Probe clusters are returned as ``(cluster_id, bitrate_bps)`` tuples; every cluster asks for at
least 5 probes and 15 ms worth of bytes (see :class:`raysfu.bwe.prober.BitrateProber`).
"""

from __future__ import annotations

__all__ = ["AlrDetector", "IntervalBudget", "ProbeBitrateEstimator", "ProbeController"]

MIN_PROBE_PACKETS = 5
MIN_PROBE_DURATION_MS = 15
MAX_WAITING_FOR_PROBE_RESULT_MS = 1_000
DEFAULT_MAX_PROBING_BPS = 5_000_000
BITRATE_DROP_THRESHOLD = 0.66
BITRATE_DROP_TIMEOUT_MS = 5_000
PROBE_FRACTION_AFTER_DROP = 0.85
ALR_ENDED_TIMEOUT_MS = 3_000
MIN_TIME_BETWEEN_ALR_PROBES_MS = 5_000
PROBE_UNCERTAINTY = 0.05
FIRST_EXP_SCALE, SECOND_EXP_SCALE, FURTHER_SCALE, FURTHER_THRESHOLD = 3.0, 6.0, 2.0, 0.7
ALR_PROBING_INTERVAL_MS, ALR_PROBE_SCALE = 5_000, 2.0
FIRST_ALLOC_SCALE, SECOND_ALLOC_SCALE = 1.0, 2.0

_INIT, _WAITING, _COMPLETE = "init", "waiting", "complete"


class ProbeController:
    """When to probe and at which rates (libwebrtc m77 ``ProbeController``).

    - start: 3× and 6× the start rate, probing further (2× the result) while a result exceeds
      0.7× the last probe; results are awaited 1 s;
    - mid-call: probe at the new max when the max is raised above the estimate;
    - allocation: 1× and 2× the max total allocated rate when it rises above the estimate;
    - ALR (when enabled): every 5 s in ALR at 2× the estimate;
    - after a large drop (< 0.66×) recovered within 5 s, in or shortly after ALR: 0.85× the
      pre-drop rate, at most every 5 s (:meth:`request_probe`);
    - every probe is capped at the max rate (5 Mbps when unset) and at 2× the max allocated rate.
    """

    def __init__(self, enable_periodic_alr_probing: bool = False) -> None:
        self.enable_periodic_alr_probing = enable_periodic_alr_probing
        self.network_available = True
        self.state = _INIT
        self.min_bitrate_to_probe_further_bps = 0.0
        self.time_last_probing_initiated_ms = 0
        self.estimated_bitrate_bps = 0.0
        self.start_bitrate_bps = 0.0
        self.max_bitrate_bps = 0.0
        self.last_bwe_drop_probing_time_ms = 0
        self.alr_start_time_ms: int | None = None
        self.alr_end_time_ms: int | None = None
        self.mid_call_probing_waiting = False
        self.mid_call_success_threshold = 0.0
        self.time_of_last_large_drop_ms = 0
        self.bitrate_before_last_large_drop_bps = 0.0
        self.max_total_allocated_bps = 0.0
        self._next_id = 1

    def set_bitrates(self, min_bps: float, start_bps: float, max_bps: float,
                     now_ms: int) -> list[tuple[int, float]]:
        if start_bps > 0:
            self.start_bitrate_bps = start_bps
            self.estimated_bitrate_bps = start_bps
        elif self.start_bitrate_bps == 0:
            self.start_bitrate_bps = min_bps
        old_max = self.max_bitrate_bps
        self.max_bitrate_bps = max_bps
        if self.state == _INIT:
            if self.network_available:
                return self._initiate_exponential(now_ms)
        elif self.state == _COMPLETE:
            if (self.estimated_bitrate_bps != 0 and old_max < max_bps
                    and self.estimated_bitrate_bps < max_bps):
                self.mid_call_success_threshold = min(self.estimated_bitrate_bps * 1.2,
                                                      max_bps * 0.9)
                self.mid_call_probing_waiting = True
                return self._initiate(now_ms, [max_bps], False)
        return []

    def on_max_total_allocated_bitrate(self, bps: float, now_ms: int) -> list[tuple[int, float]]:
        if (self.state == _COMPLETE and bps != self.max_total_allocated_bps
                and self.estimated_bitrate_bps != 0
                and (self.max_bitrate_bps <= 0 or self.estimated_bitrate_bps < self.max_bitrate_bps)
                and self.estimated_bitrate_bps < bps):
            self.max_total_allocated_bps = bps
            return self._initiate(now_ms, [FIRST_ALLOC_SCALE * bps, SECOND_ALLOC_SCALE * bps],
                                  False)
        self.max_total_allocated_bps = bps
        return []

    def _initiate_exponential(self, now_ms: int) -> list[tuple[int, float]]:
        s = self.start_bitrate_bps
        return self._initiate(now_ms, [FIRST_EXP_SCALE * s, SECOND_EXP_SCALE * s], True)

    def set_estimated_bitrate(self, bps: float, now_ms: int) -> list[tuple[int, float]]:
        if self.mid_call_probing_waiting and bps >= self.mid_call_success_threshold:
            self.mid_call_probing_waiting = False
        pending: list[tuple[int, float]] = []
        if self.state == _WAITING:
            if self.min_bitrate_to_probe_further_bps and bps > self.min_bitrate_to_probe_further_bps:
                pending = self._initiate(now_ms, [FURTHER_SCALE * bps], True)
        if bps < BITRATE_DROP_THRESHOLD * self.estimated_bitrate_bps:
            self.time_of_last_large_drop_ms = now_ms
            self.bitrate_before_last_large_drop_bps = self.estimated_bitrate_bps
        self.estimated_bitrate_bps = bps
        return pending

    def set_alr_start_time(self, t_ms: int | None) -> None:
        self.alr_start_time_ms = t_ms

    def set_alr_ended_time(self, t_ms: int) -> None:
        self.alr_end_time_ms = t_ms

    def request_probe(self, now_ms: int) -> list[tuple[int, float]]:
        in_alr = self.alr_start_time_ms is not None
        ended_recently = (self.alr_end_time_ms is not None
                          and now_ms - self.alr_end_time_ms < ALR_ENDED_TIMEOUT_MS)
        if (in_alr or ended_recently) and self.state == _COMPLETE:
            suggested = PROBE_FRACTION_AFTER_DROP * self.bitrate_before_last_large_drop_bps
            min_expected = (1 - PROBE_UNCERTAINTY) * suggested
            if (min_expected > self.estimated_bitrate_bps
                    and now_ms - self.time_of_last_large_drop_ms < BITRATE_DROP_TIMEOUT_MS
                    and now_ms - self.last_bwe_drop_probing_time_ms
                    > MIN_TIME_BETWEEN_ALR_PROBES_MS):
                self.last_bwe_drop_probing_time_ms = now_ms
                return self._initiate(now_ms, [suggested], False)
        return []

    def process(self, now_ms: int) -> list[tuple[int, float]]:
        if now_ms - self.time_last_probing_initiated_ms > MAX_WAITING_FOR_PROBE_RESULT_MS:
            self.mid_call_probing_waiting = False
            if self.state == _WAITING:
                self.state = _COMPLETE
                self.min_bitrate_to_probe_further_bps = 0.0
        if self.enable_periodic_alr_probing and self.state == _COMPLETE:
            if self.alr_start_time_ms is not None and self.estimated_bitrate_bps > 0:
                nxt = max(self.alr_start_time_ms, self.time_last_probing_initiated_ms) \
                    + ALR_PROBING_INTERVAL_MS
                if now_ms >= nxt:
                    return self._initiate(now_ms, [self.estimated_bitrate_bps * ALR_PROBE_SCALE],
                                          True)
        return []

    def max_probe_bitrate_bps(self) -> float:
        m = self.max_bitrate_bps if self.max_bitrate_bps > 0 else DEFAULT_MAX_PROBING_BPS
        if self.max_total_allocated_bps > 0:
            m = min(m, 2 * self.max_total_allocated_bps)
        return m

    def _initiate(self, now_ms: int, rates, probe_further: bool) -> list[tuple[int, float]]:
        cap = self.max_probe_bitrate_bps()
        out = []
        for r in rates:
            if r > cap:
                r = cap
                probe_further = False
            out.append((self._next_id, float(int(r))))
            self._next_id += 1
        self.time_last_probing_initiated_ms = now_ms
        if probe_further:
            self.state = _WAITING
            self.min_bitrate_to_probe_further_bps = rates[-1] * FURTHER_THRESHOLD
        else:
            self.state = _COMPLETE
            self.min_bitrate_to_probe_further_bps = 0.0
        return out


MIN_RECEIVED_PROBES_RATIO = 0.80
MIN_RECEIVED_BYTES_RATIO = 0.80
MAX_VALID_RATIO = 2.0
MIN_RATIO_FOR_UNSATURATED_LINK = 0.9
TARGET_UTILIZATION_FRACTION = 0.95
MAX_CLUSTER_HISTORY_MS = 1_000
MAX_PROBE_INTERVAL_MS = 1_000


class ProbeBitrateEstimator:
    """Per-cluster send/receive rates of acknowledged probe packets (m77
    ``ProbeBitrateEstimator``): a result needs ≥ 80 % of the cluster's probes and bytes, send
    and receive intervals in (0, 1 s] and recv/send ≤ 2; it is ``min(send, recv)``, or
    ``0.95 × recv`` when recv < 0.9 × send."""

    def __init__(self) -> None:
        # id -> [first_send, last_send, first_recv, last_recv, size_last_send,
        #        size_first_recv, size_total_bits, num_probes]
        self.clusters: dict[int, list] = {}
        self.last_estimate_bps: float | None = None

    def handle(self, cluster_id: int, min_probes: int, min_bytes: int, send_ms: int,
               recv_ms: int, size_bytes: int) -> float | None:
        """One received probe packet; returns the cluster's estimate when it is valid."""
        cutoff = recv_ms - MAX_CLUSTER_HISTORY_MS
        old = [k for k, c in self.clusters.items() if c[3] < cutoff]
        for k in old:
            del self.clusters[k]
        bits = size_bytes * 8
        c = self.clusters.get(cluster_id)
        if c is None:
            c = self.clusters[cluster_id] = [1 << 62, -(1 << 62), 1 << 62, -(1 << 62), 0, 0, 0, 0]
        c[0] = min(c[0], send_ms)
        if send_ms > c[1]:
            c[1] = send_ms
            c[4] = bits
        if recv_ms < c[2]:
            c[2] = recv_ms
            c[5] = bits
        c[3] = max(c[3], recv_ms)
        c[6] += bits
        c[7] += 1
        if c[7] < int(min_probes * MIN_RECEIVED_PROBES_RATIO) or \
                c[6] < int(min_bytes * MIN_RECEIVED_BYTES_RATIO) * 8:
            return None
        send_iv = c[1] - c[0]
        recv_iv = c[3] - c[2]
        if not (0 < send_iv <= MAX_PROBE_INTERVAL_MS and 0 < recv_iv <= MAX_PROBE_INTERVAL_MS):
            return None
        send_bps = (c[6] - c[4]) / send_iv * 1000
        recv_bps = (c[6] - c[5]) / recv_iv * 1000
        if recv_bps / send_bps > MAX_VALID_RATIO:
            return None
        res = min(send_bps, recv_bps)
        if recv_bps < MIN_RATIO_FOR_UNSATURATED_LINK * send_bps:
            res = TARGET_UTILIZATION_FRACTION * recv_bps
        self.last_estimate_bps = res
        return res

    def fetch_and_reset(self) -> float | None:
        r = self.last_estimate_bps
        self.last_estimate_bps = None
        return r


class IntervalBudget:
    """Byte budget over a 500 ms window (m77 ``IntervalBudget``); with ``can_build_up_underuse``
    unused budget accumulates up to the window."""

    __slots__ = ("can_build_up", "max_bytes", "remaining", "target_kbps")

    def __init__(self, target_kbps: int = 0, can_build_up_underuse: bool = False) -> None:
        self.remaining = 0
        self.can_build_up = can_build_up_underuse
        self.target_kbps = 0
        self.max_bytes = 0
        self.set_target_kbps(target_kbps)

    def set_target_kbps(self, kbps: int) -> None:
        self.target_kbps = kbps
        self.max_bytes = 500 * kbps // 8
        self.remaining = min(max(-self.max_bytes, self.remaining), self.max_bytes)

    def increase(self, delta_ms: int) -> None:
        b = self.target_kbps * delta_ms // 8
        if self.remaining < 0 or self.can_build_up:
            self.remaining = min(self.remaining + b, self.max_bytes)
        else:
            self.remaining = min(b, self.max_bytes)

    def use(self, n: int) -> None:
        self.remaining = max(self.remaining - n, -self.max_bytes)

    def ratio(self) -> float:
        return 0.0 if self.max_bytes == 0 else self.remaining / self.max_bytes


ALR_BANDWIDTH_USAGE_PERCENT = 65
ALR_START_BUDGET_RATIO = 0.80
ALR_STOP_BUDGET_RATIO = 0.50
ALR_TIMEOUT_MS = 3_000


class AlrDetector:
    """Application-limited region: a budget filling at 65 % of the estimate over 500 ms; ALR
    starts when more than 80 % of it is unused and stops below 50 %; with nothing sent for 3 s
    ALR is entered from :meth:`process` (mediasoup sends probes without media)."""

    __slots__ = ("alr_started_ms", "budget", "last_send_ms")

    def __init__(self) -> None:
        self.budget = IntervalBudget(0, True)
        self.last_send_ms: int | None = None
        self.alr_started_ms: int | None = None

    def on_bytes_sent(self, size: int, send_ms: int) -> None:
        if self.last_send_ms is None:
            self.last_send_ms = send_ms
            return
        delta = send_ms - self.last_send_ms
        self.last_send_ms = send_ms
        b = self.budget
        b.use(size)
        b.increase(delta)
        r = b.ratio()
        if r > ALR_START_BUDGET_RATIO and self.alr_started_ms is None:
            self.alr_started_ms = send_ms
        elif r < ALR_STOP_BUDGET_RATIO and self.alr_started_ms is not None:
            self.alr_started_ms = None

    def process(self, now_ms: int) -> None:
        if (self.alr_started_ms is None and self.last_send_ms is not None
                and now_ms - self.last_send_ms > ALR_TIMEOUT_MS):
            self.alr_started_ms = now_ms

    def set_estimated_bitrate(self, bps: float) -> None:
        self.budget.set_target_kbps(int(bps) * ALR_BANDWIDTH_USAGE_PERCENT // 100_000)
