"""goog_cc network controller, libwebrtc m77 as mediasoup runs it (``feedback_only = true``,
periodic ALR probing on, ``WebRTC-Bwe-AlrLimitedBackoff`` on): the reference estimator
(research/bwe.md §0, §1.0–1.11). Times in ms, rates in bps.

Inputs (all sans-I/O, called by :class:`raysfu.bwe.estimator.SendSideBwe`):

- ``on_sent_packet(send_ms, size_bytes)`` for every packet written to the socket;
- ``on_feedback(feedback_ms, packets)`` per transport-cc feedback, ``packets`` in sequence
  order as ``(send_ms, recv_ms | None, size_bytes, probe)`` with ``probe`` None or
  ``(cluster_id, min_probes, min_bytes)``; ``recv_ms`` None = lost;
- ``process(now_ms)`` every 25 ms (``OnProcessInterval``);
- ``set_constraints(min_bps, start_bps | None, max_bps, now_ms)`` (``OnTargetRateConstraints``)
  and ``set_max_total_allocated(bps, now_ms)`` (``OnStreamsConfig``).

Outputs: ``target_bps`` (the loss/delay-combined estimate), ``pop_probes()`` →
``[(cluster_id, bitrate_bps)]``, ``pacing_bps``, and :meth:`state` for traces.
"""

from __future__ import annotations

from collections import deque

from raysfu.bwe.goog_cc.acked_bitrate import AcknowledgedBitrateEstimator
from raysfu.bwe.goog_cc.delay_based import DelayBasedBwe
from raysfu.bwe.goog_cc.loss_based import SendSideBandwidthEstimation
from raysfu.bwe.goog_cc.probing import AlrDetector, ProbeBitrateEstimator, ProbeController

__all__ = ["GoogCcController"]

LOSS_UPDATE_INTERVAL_MS = 1_000
RTT_WINDOW = 32
PACING_FACTOR = 2.5
MIN_BITRATE_BPS = 5_000


class GoogCcController:
    """The m77 ``GoogCcNetworkController`` glue (see module docstring). ``min_bps``,
    ``start_bps``, ``max_bps`` are the initial constraints, applied at the first ``process``
    (which also sends the start-up probes)."""

    name = "goog_cc_m77"

    def __init__(self, *, min_bps: int = 30_000, start_bps: int = 600_000,
                 max_bps: int = 5_000_000, alr_probing: bool = True) -> None:
        self.delay_based = DelayBasedBwe(alr_limited_backoff=True)
        self.bandwidth = SendSideBandwidthEstimation()
        self.acked = AcknowledgedBitrateEstimator()
        self.probe_estimator = ProbeBitrateEstimator()
        self.probe_controller = ProbeController(enable_periodic_alr_probing=alr_probing)
        self.alr = AlrDetector()
        self._initial = (min_bps, start_bps, max_bps)
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self.feedback_max_rtts: deque[int] = deque(maxlen=RTT_WINDOW)
        self.mean_rtt_ms: float | None = None
        self.expected_since = 0
        self.lost_since = 0
        self.next_loss_update_ms: int | None = None
        self.previously_in_alr = False
        self.first_packet_sent = False
        self.last_target_bps = 0.0
        self.last_fraction_loss = -1
        self.last_rtt_ms = -1
        self.max_total_allocated_bps = 0.0
        self.target_bps = float(start_bps)
        self.pacing_bps = PACING_FACTOR * start_bps
        self.last_acked_bps: float | None = None
        self.last_probe_bps: float | None = None
        self._probes: list[tuple[int, float]] = []

    # --- inputs ---------------------------------------------------------------------------

    def on_sent_packet(self, send_ms: int, size_bytes: int) -> None:
        self.alr.on_bytes_sent(size_bytes, send_ms)
        self.acked.in_alr = self.alr.alr_started_ms is not None
        self.first_packet_sent = True

    def set_constraints(self, min_bps: float, start_bps: float | None, max_bps: float,
                        now_ms: int) -> None:
        if self._initial is not None:  # not applied yet: replace the initial constraints
            self._initial = (min_bps, start_bps or self._initial[1], max_bps)
            return
        self._reset_constraints(min_bps, start_bps, max_bps, now_ms)
        self._maybe_trigger(now_ms)

    def set_max_total_allocated(self, bps: float, now_ms: int) -> None:
        if bps != self.max_total_allocated_bps:
            self._probes += self.probe_controller.on_max_total_allocated_bitrate(bps, now_ms)
            self.max_total_allocated_bps = bps

    def _reset_constraints(self, min_bps, start_bps, max_bps, now_ms) -> None:
        self.min_bps = max(float(min_bps or 0), MIN_BITRATE_BPS)
        self.max_bps = float(max_bps) if max_bps else float("inf")
        self.max_bps = max(self.max_bps, self.min_bps)
        if start_bps and start_bps < self.min_bps:
            start_bps = self.min_bps
        self.bandwidth.set_bitrates(start_bps, self.min_bps, self.max_bps, now_ms)
        if start_bps:
            self.delay_based.rate_control.set_start_bitrate(start_bps)
        self.delay_based.rate_control.set_min_bitrate(self.min_bps)
        mx = self.max_bps if self.max_bps != float("inf") else -1
        self._probes += self.probe_controller.set_bitrates(self.min_bps, start_bps or -1, mx,
                                                           now_ms)

    def process(self, now_ms: int) -> None:
        if self._initial is not None:
            mn, st, mx = self._initial
            self._initial = None
            self._reset_constraints(mn, st, mx, now_ms)
        self.alr.process(now_ms)
        self.bandwidth.update_estimate(now_ms)
        self.probe_controller.set_alr_start_time(self.alr.alr_started_ms)
        self._probes += self.probe_controller.process(now_ms)
        self._maybe_trigger(now_ms)

    def on_feedback(self, feedback_ms: int, packets) -> None:
        if not packets:
            return
        received = [p for p in packets if p[1] is not None]
        if received:
            max_recv = max(p[1] for p in received)
            max_rtt = max(feedback_ms - p[0] for p in received)
            min_rtt = min(feedback_ms - p[0] - (max_recv - p[1]) for p in received)
            self.feedback_max_rtts.append(max_rtt)
            self.mean_rtt_ms = sum(self.feedback_max_rtts) / len(self.feedback_max_rtts)
            self.delay_based.rate_control.rtt_ms = self.mean_rtt_ms
            self.bandwidth.update_rtt(min_rtt)
        self._account_loss(packets, len(received), feedback_ms)
        alr_start = self.alr.alr_started_ms
        if self.previously_in_alr and alr_start is None:
            self.acked.alr_ended_ms = feedback_ms
            self.probe_controller.set_alr_ended_time(feedback_ms)
        self.previously_in_alr = alr_start is not None
        by_recv = sorted(received, key=lambda p: p[1])
        self.acked.incoming([(p[0], p[1], p[2]) for p in by_recv])
        acked = self.acked.bitrate_bps()
        self.last_acked_bps = acked
        for p in by_recv:
            if p[3] is not None:
                cid, mn, mb = p[3]
                self.probe_estimator.handle(cid, mn, mb, p[0], p[1], p[2])
        probe = self.probe_estimator.fetch_and_reset()
        self.last_probe_bps = probe
        r = self.delay_based.incoming([(p[0], p[1], p[2]) for p in by_recv], acked, probe,
                                      alr_start is not None, feedback_ms)
        self._after_delay_based(r, alr_start, feedback_ms)

    def _account_loss(self, packets, n_received: int, feedback_ms: int) -> None:
        """Every lost packet counts (m77); reported to loss v1 at most once per second."""
        self.expected_since += len(packets)
        self.lost_since += len(packets) - n_received
        if self.next_loss_update_ms is None or feedback_ms > self.next_loss_update_ms:
            self.next_loss_update_ms = feedback_ms + LOSS_UPDATE_INTERVAL_MS
            self.bandwidth.update_packets_lost(self.lost_since, self.expected_since, feedback_ms)
            self.expected_since = 0
            self.lost_since = 0

    def _after_delay_based(self, r, alr_start, feedback_ms: int) -> None:
        if r.updated:
            if r.probe:
                self.bandwidth.set_send_bitrate(r.target_bps, feedback_ms)
            self.bandwidth.update_delay_based_estimate(feedback_ms, r.target_bps)
            self._maybe_trigger(feedback_ms)
        if r.recovered_from_overuse:
            self.probe_controller.set_alr_start_time(alr_start)
            self._probes += self.probe_controller.request_probe(feedback_ms)
        elif r.backoff_in_alr:
            self._probes += self.probe_controller.request_probe(feedback_ms)

    def _maybe_trigger(self, now_ms: int) -> None:
        bw = self.bandwidth
        est = max(bw.current_bps, bw.min_configured_bps)
        loss = bw.last_fraction_loss
        rtt = bw.rtt_ms
        if est != self.last_target_bps or loss != self.last_fraction_loss or \
                rtt != self.last_rtt_ms:
            self.last_target_bps = est
            self.last_fraction_loss = loss
            self.last_rtt_ms = rtt
            self.alr.set_estimated_bitrate(est)
            self._probes += self.probe_controller.set_estimated_bitrate(est, now_ms)
            self.target_bps = est
            self.pacing_bps = PACING_FACTOR * est

    # --- outputs --------------------------------------------------------------------------

    def pop_probes(self) -> list[tuple[int, float]]:
        p = self._probes
        self._probes = []
        return p

    def in_alr(self) -> bool:
        return self.alr.alr_started_ms is not None

    def state(self) -> dict:
        """Internal values for traces: ``trend`` (modified trend), ``threshold``, ``usage``,
        ``delay_bps``, ``loss_bps`` (loss-based value before the delay cap), ``acked_bps``,
        ``loss`` (fraction), ``rtt_ms``, ``in_alr``."""
        det = self.delay_based.detector
        return {
            "trend": det.modified_trend, "threshold": det.threshold, "usage": det.state,
            "delay_bps": self.delay_based.rate_control.current_bps,
            "acked_bps": self.last_acked_bps, "loss": self.bandwidth.loss_fraction(),
            "rtt_ms": self.mean_rtt_ms, "in_alr": self.in_alr(),
        }
