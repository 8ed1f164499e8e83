"""raysfu's send-side congestion controller: goog_cc m77 (the reference port in
:mod:`raysfu.bwe.goog_cc`) with six changes where research/bwe.md §6 says it is weak. Same
interface as :class:`raysfu.bwe.goog_cc.controller.GoogCcController`; times in ms, rates in bps.

1. **Loss above the inherent rate only** (m77's loss v1 freezes the estimate under 2–10 %
   random loss and collapses it above 10 %). Each packet of a feedback gets a queueing delay,
   ``(recv − send) − min(recv − send over 10 s)`` (its own, or for a lost packet the larger of its
   received neighbours' in sequence order). Packets seen at a low queue (< 30 ms) estimate the
   inherent loss rate, since a drop-tail queue does not drop while nearly empty; loss v1 then
   gets ``lost − p_inherent × expected`` per 1 s report (all of the loss once it exceeds 25 %).
   Queue-overflow losses, which happen at a full queue, still count in full.
2. **Overuse backs off from the delivery rate** of the last 300 ms (receive rate of the
   acknowledged packets) instead of the acknowledged-bitrate estimate, which lags about 1 s
   behind a capacity drop and sits at the old rate right after leaving an app-limited phase;
   within one overuse episode (1 s) a second cut needs that rate to have fallen by 10 %.
3. **Capacity increases are found faster**: m77 climbs additively (about 20 kbps/s) as long as
   its link-capacity estimate stands, and at 8 %/s without one, so 1 → 2.5 Mbps takes 13–18 s.
   Ours drops the link-capacity estimate once the delay gradient has been calm for 1 s, nothing
   was cut for 3 s, the estimate is being used (acked ≥ 0.8 × target) and the acked rate is
   ≥ the acked rate at the last overuse; and while calm, its multiplicative increase
   (delay-based AIMD and the loss-based ramp together) grows from 8 %/s by 3 points per second
   of calm up to 20 %/s, back to 8 %/s at the first sign of a rising queue. Being
   multiplicative and driven by the shared queue, it keeps competing flows' ratios (no probe
   lets one flow grab the new capacity). The link-capacity estimate is also dropped when the
   **burst queue collapses**: the highest queueing delay of each feedback (the pacer bursts'
   queue) over the last 500 ms falls below half its lowest level of up to 2 s before (counted
   from 1 s after the last cut, at least 500 ms of it, from a level of ≥ 8 ms) while the acked
   rate is ≥ 0.8 × target: the same packets now drain faster, so capacity rose. This catches a
   capacity step that lands while the rate is below the last overuse rate (an overuse just
   before it), where m77 and the rule above stay additive for 10-20 s.
4. **App-limited probing follows demand**: in ALR, while the demand (the total allocated rate
   the application asked for through ``set_desired_bitrate``; a static max is not a demand) is
   above 1.1 × the estimate, a probe at ``min(2 × estimate, demand)`` goes out every 1.5 s
   instead of m77's 5 s (so an SFU forwarding little, or only padding, reaches a new layer's
   rate quickly), and a rising allocation probes even while an earlier probe's result is
   pending.
5. **No back-off without a standing queue**: an overuse while the smallest queueing delay of
   the feedback is under 10 ms is a delay *step* (e.g. an SFU switching to a layer with larger
   frames, whose bursts now queue a few ms each), not a growing queue: the estimate is held
   instead of cut to 0.85 × the (still app-limited) acked rate, which made m77 drop a new layer
   right after switching to it.
6. **A standing queue that rises from empty is an overuse** while the rate is beyond known
   capacity (a capacity search after change 3, or the AIMD estimate above the link-capacity
   estimate): the trendline's slope misses a queue that grows by a few ms per 100 ms (an
   additive or 8 %/s climb just past a full link, worst under random loss) for 5-10 s, during
   which the queue reaches 50-100 ms. When the standing queue (the smallest queueing delay of a
   feedback) was below 10 ms within the last second and now stands at ≥ 15 ms and ≥ 10 ms above
   that low, the AIMD gets an overuse (the usual cut of change 2). A queue held by a competitor
   (a long TCP flow) never was that low within the second, so it does not fire there.

Everything else (inter-arrival, trendline, AIMD, acked bitrate, start-up and mid-call probes,
ALR) is the reference code path.
"""

from __future__ import annotations

from collections import deque

from raysfu.bwe.goog_cc.controller import GoogCcController
from raysfu.bwe.goog_cc.delay_based import DelayBasedBwe, DelayBasedResult
from raysfu.bwe.goog_cc.probing import ProbeController
from raysfu.bwe.goog_cc.trendline import BandwidthUsage

__all__ = ["DeliveryRateMeter", "LossClassifier", "RaysfuController", "RaysfuProbeController"]

BASE_DELAY_WINDOW_MS = 10_000
LOW_QUEUE_MS = 30
INHERENT_WINDOW = 2_000
INHERENT_MIN_PACKETS = 200
MAX_RANDOM_LOSS = 0.25
ALR_DEMAND_PROBE_INTERVAL_MS = 1_500
DELIVERY_WINDOW_MS = 300
BACKOFF_EPISODE_MS = 1_000
MIN_STANDING_QUEUE_MS = 10
RAMP_CALM_MS = 1_000
RAMP_AFTER_DECREASE_MS = 3_000
RAMP_ABOVE_LAST_OVERUSE = 1.0
RAMP_FACTOR_PER_S = 0.03
RAMP_MAX_FACTOR = 1.20
# the estimate is in use (not app-limited) while the acked rate is at least this share of it
IN_USE_ACKED_RATIO = 0.8
# burst-queue collapse (change 3): the recent window of feedback peaks, the earlier window it is
# compared with, the fall that counts, the smallest earlier level that is a queue at all (below
# it jitter dominates), the settling time after a cut (its drain is not a capacity rise) and the
# least span of earlier samples to compare with
DRAIN_RECENT_MS = 500
DRAIN_PRIOR_MS = 2_000
DRAIN_RATIO = 0.5
DRAIN_MIN_PRIOR_MS = 8.0
DRAIN_SETTLE_MS = 1_000
DRAIN_MIN_PRIOR_SPAN_MS = 500
# standing-queue overuse (change 6): within the last QUEUE_RISE_WINDOW_MS the standing queue
# was below QUEUE_FROM_MS and now stands at >= QUEUE_OVERUSE_MS, QUEUE_RISE_MS above that low
QUEUE_RISE_WINDOW_MS = 1_000
QUEUE_FROM_MS = 10.0
QUEUE_OVERUSE_MS = 15.0
QUEUE_RISE_MS = 10.0


class _WindowExtreme:
    """Sliding-window min (or max) of ``(t_ms, value)`` samples (monotonic deque)."""

    __slots__ = ("_d", "_is_min", "window_ms")

    def __init__(self, window_ms: int, is_min: bool) -> None:
        self._d: deque[tuple[int, float]] = deque()
        self.window_ms = window_ms
        self._is_min = is_min

    def add(self, t_ms: int, v: float) -> None:
        d = self._d
        if self._is_min:
            while d and d[-1][1] >= v:
                d.pop()
        else:
            while d and d[-1][1] <= v:
                d.pop()
        d.append((t_ms, v))
        while d[0][0] < t_ms - self.window_ms:
            d.popleft()

    def value(self) -> float | None:
        return self._d[0][1] if self._d else None


class LossClassifier:
    """Estimates the inherent (non-congestive) loss rate and how much of a feedback's loss is
    congestive (see the module docstring).

    Every packet of a feedback gets a queueing delay: its own when received, else the larger of
    its nearest received neighbours' (in sequence order). Packets seen at a low queue
    (< ``LOW_QUEUE_MS``) estimate the inherent loss rate ``p_inherent`` (a window of about
    ``INHERENT_WINDOW`` packets, needing ``INHERENT_MIN_PACKETS``): a drop-tail queue does not
    drop while it is nearly empty. ``classify(packets, feedback_ms) -> (lost, excess)`` where
    ``excess = lost − p_inherent × len(packets)`` (≥ 0) is what the loss controller counts.
    """

    __slots__ = (
        "base",
        "last_queue_ms",
        "low_lost",
        "low_total",
        "p_inherent",
        "standing_queue_ms",
        "peak_queue_ms",
    )

    def __init__(self) -> None:
        self.base = _WindowExtreme(BASE_DELAY_WINDOW_MS, True)
        self.last_queue_ms = 0.0
        self.low_total = 0.0
        self.low_lost = 0.0
        self.p_inherent = 0.0
        self.standing_queue_ms = 0.0  # min queueing delay over the last feedback
        self.peak_queue_ms = 0.0  # max queueing delay over the last feedback

    def classify(self, packets, feedback_ms: int) -> tuple[int, float]:
        owd = [None if p[1] is None else p[1] - p[0] for p in packets]
        recv = [d for d in owd if d is not None]
        if recv:
            self.base.add(feedback_ms, min(recv))
        base = self.base.value()
        n = len(owd)
        lost = n - len(recv)
        if base is None:
            return lost, float(lost)
        low_total = low_lost = 0
        prev_q = self.last_queue_ms
        i = 0
        while i < n:
            d = owd[i]
            if d is not None:
                prev_q = d - base
                if prev_q < LOW_QUEUE_MS:
                    low_total += 1
                i += 1
                continue
            j = i
            while j < n and owd[j] is None:
                j += 1
            q = prev_q if j == n else max(prev_q, owd[j] - base)
            if q < LOW_QUEUE_MS:
                low_total += j - i
                low_lost += j - i
            i = j
        if recv:
            self.last_queue_ms = recv[-1] - base
            self.standing_queue_ms = min(recv) - base
            self.peak_queue_ms = max(recv) - base
        if low_total:
            self.low_total += low_total
            self.low_lost += low_lost
            if self.low_total > INHERENT_WINDOW:
                k = INHERENT_WINDOW / self.low_total
                self.low_total *= k
                self.low_lost *= k
            if self.low_total >= INHERENT_MIN_PACKETS:
                self.p_inherent = self.low_lost / self.low_total
        return lost, max(0.0, lost - self.p_inherent * n)


class RaysfuProbeController(ProbeController):
    """m77 probe controller plus demand-driven probing while application-limited (module
    docstring, change 4)."""

    def __init__(self) -> None:
        super().__init__(enable_periodic_alr_probing=True)
        self.last_demand_probe_ms: int | None = None

    def demand_bps(self) -> float:
        """The total allocated rate the application asked for (0 = unknown: no demand
        probing; a static max bitrate is not a demand)."""
        return self.max_total_allocated_bps

    def process(self, now_ms: int) -> list[tuple[int, float]]:
        out = super().process(now_ms)
        if out or self.state != "complete" or self.alr_start_time_ms is None:
            return out
        est = self.estimated_bitrate_bps
        demand = self.demand_bps()
        if est <= 0 or demand <= est * 1.1:
            return out
        last = max(self.time_last_probing_initiated_ms, self.alr_start_time_ms)
        if now_ms - last >= ALR_DEMAND_PROBE_INTERVAL_MS:
            self.last_demand_probe_ms = now_ms
            return self._initiate(now_ms, [min(2 * est, demand)], True)
        return out

    def on_max_total_allocated_bitrate(self, bps: float, now_ms: int) -> list[tuple[int, float]]:
        if self.state == "waiting" and bps > self.max_total_allocated_bps and \
                bps > self.estimated_bitrate_bps:
            self.state = "complete"  # a rise in demand is worth a probe of its own
        return super().on_max_total_allocated_bitrate(bps, now_ms)


class DeliveryRateMeter:
    """Receive rate of acknowledged packets over the last ``window_ms`` of remote arrival
    time (feedback order); None until the window is covered."""

    __slots__ = ("_bytes", "_items", "window_ms")

    def __init__(self, window_ms: int = DELIVERY_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._items: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, recv_ms: int, size: int) -> None:
        it = self._items
        if it and recv_ms < it[-1][0]:
            recv_ms = it[-1][0]
        it.append((recv_ms, size))
        self._bytes += size
        cutoff = recv_ms - self.window_ms
        while it[0][0] < cutoff:
            self._bytes -= it.popleft()[1]

    def rate_bps(self) -> float | None:
        it = self._items
        if len(it) < 5 or it[-1][0] - it[0][0] < self.window_ms * 3 // 4:
            return None
        return (self._bytes - it[0][1]) * 8000 / max(1, it[-1][0] - it[0][0])


class _DelayBasedBwe(DelayBasedBwe):
    """m77 delay-based BWE that backs off from the recent delivery rate (change 2); within one
    overuse episode (``BACKOFF_EPISODE_MS``) it cuts again only if that rate fell by 10 %."""

    def __init__(self) -> None:
        super().__init__(alr_limited_backoff=True)
        self.delivery = DeliveryRateMeter()
        self.last_overuse_acked_bps: float | None = None
        self._now_ms = 0
        self._last_backoff: tuple[int, float] | None = None  # (at_ms, rate)
        self.standing_queue_ms = 1e9  # set by the controller from the loss classifier
        self.suppressed = 0
        self._standing_low = _WindowExtreme(QUEUE_RISE_WINDOW_MS, True)  # standing queue, ms
        self.searching = False  # a capacity search beyond the last overuse is on (change 3)
        self.queue_overuses = 0

    def incoming(self, packets, acked_bps, probe_bps, in_alr, now_ms):
        self._now_ms = now_ms
        return super().incoming(packets, acked_bps, probe_bps, in_alr, now_ms)

    def _maybe_update(self, acked_bps, probe_bps, recovered, in_alr, now_ms):
        if self.detector.state == BandwidthUsage.OVERUSING and \
                self.standing_queue_ms < MIN_STANDING_QUEUE_MS:
            self.suppressed += 1
            return DelayBasedResult()  # a delay step without a standing queue (change 5)
        if self._queue_overuse(probe_bps, now_ms):
            r = super()._maybe_update(acked_bps, probe_bps, recovered, in_alr, now_ms,
                                      BandwidthUsage.OVERUSING)
            self.queue_overuses += r.updated
            return r
        return super()._maybe_update(acked_bps, probe_bps, recovered, in_alr, now_ms)

    def _queue_overuse(self, probe_bps, now_ms: int) -> bool:
        """True when a standing queue rose from (nearly) empty while the rate is beyond known
        capacity (change 6 of the module docstring): the trendline has not seen it (NORMAL),
        the smallest standing queue of the last ``QUEUE_RISE_WINDOW_MS`` is below
        ``QUEUE_FROM_MS`` and the current one is at least ``QUEUE_OVERUSE_MS`` and
        ``QUEUE_RISE_MS`` above it, and either a capacity search is on or the estimate is above
        the link-capacity estimate."""
        sq = self.standing_queue_ms
        if sq < 1e8:  # 1e9 until the classifier has measured one
            self._standing_low.add(now_ms, sq)
        if (probe_bps is not None or sq < QUEUE_OVERUSE_MS
                or self.detector.state != BandwidthUsage.NORMAL):
            return False
        low = self._standing_low.value()
        if low is None or low >= QUEUE_FROM_MS or sq - low < QUEUE_RISE_MS:
            return False
        rc = self.rate_control
        lc = rc.link_capacity
        return self.searching or (lc.has_estimate() and rc.current_bps > lc.estimate_bps())

    def _backoff_rate(self, acked_bps: float) -> float:
        self.searching = False
        self.last_overuse_acked_bps = acked_bps
        d = self.delivery.rate_bps()
        r = acked_bps if d is None else d
        lb = self._last_backoff
        if lb is not None and self._now_ms - lb[0] < BACKOFF_EPISODE_MS and r >= 0.9 * lb[1]:
            return lb[1]  # same episode, same rate: the first cut stands
        self._last_backoff = (self._now_ms, r)
        return r


class RaysfuController(GoogCcController):
    """Our controller (module docstring). Same interface as :class:`GoogCcController`."""

    name = "raysfu"

    def __init__(self, *, min_bps: int = 30_000, start_bps: int = 600_000,
                 max_bps: int = 5_000_000, alr_probing: bool = True) -> None:
        super().__init__(min_bps=min_bps, start_bps=start_bps, max_bps=max_bps,
                         alr_probing=alr_probing)
        self.probe_controller = RaysfuProbeController()
        self.delay_based = _DelayBasedBwe()
        self.bandwidth.monotone_increase = True  # the ramp factor varies (change 3)
        self.classifier = LossClassifier()
        self.congestive_since = 0.0
        self._calm_since: int | None = None
        self.ramp_resets = 0
        self._peaks: deque[tuple[int, float]] = deque()
        self.drain_resets = 0

    def on_feedback(self, feedback_ms: int, packets) -> None:
        add = self.delay_based.delivery.add
        for p in sorted((p for p in packets if p[1] is not None), key=lambda p: p[1]):
            add(p[1], p[2])
        super().on_feedback(feedback_ms, packets)
        det = self.delay_based.detector
        if det.state == BandwidthUsage.NORMAL and det.modified_trend < 0.5 * det.threshold:
            if self._calm_since is None:
                self._calm_since = feedback_ms
        else:
            self._calm_since = None

        pk = self._peaks
        pk.append((feedback_ms, self.classifier.peak_queue_ms))
        while pk[0][0] < feedback_ms - DRAIN_RECENT_MS - DRAIN_PRIOR_MS:
            pk.popleft()
        self._ramp(feedback_ms)

    def _ramp(self, now_ms: int) -> None:
        """Capacity-increase detection and accelerated multiplicative ramp (change 3)."""
        rc = self.delay_based.rate_control
        calm = self._calm_since
        if calm is None or now_ms - calm < RAMP_CALM_MS:
            rc.increase_factor = self.bandwidth.increase_factor = 1.08
            return
        lc = rc.link_capacity
        if lc.has_estimate() and self._drained(now_ms):
            lc.reset()
            self.drain_resets += 1
        if lc.has_estimate():
            last_dec = rc.time_last_decrease_ms
            acked = self.last_acked_bps
            last = self.delay_based.last_overuse_acked_bps
            if ((last_dec is None or now_ms - last_dec >= RAMP_AFTER_DECREASE_MS)
                    and acked is not None and acked >= IN_USE_ACKED_RATIO * self.target_bps
                    and last is not None and acked >= RAMP_ABOVE_LAST_OVERUSE * last):
                lc.reset()  # beyond the last overuse point: look for the new capacity
                self.ramp_resets += 1
                self.delay_based.searching = True
            rc.increase_factor = self.bandwidth.increase_factor = 1.08
            return
        calm_s = (now_ms - calm - RAMP_CALM_MS) / 1000.0
        rc.increase_factor = self.bandwidth.increase_factor = min(
            1.08 + RAMP_FACTOR_PER_S * calm_s, RAMP_MAX_FACTOR)

    def _drained(self, now_ms: int) -> bool:
        """True when the burst queue collapsed without a cut, i.e. capacity rose (change 3 of
        the module docstring): max peak queueing delay of the last ``DRAIN_RECENT_MS`` below
        ``DRAIN_RATIO`` × the min peak of the ``DRAIN_PRIOR_MS`` before it (from
        ``DRAIN_SETTLE_MS`` after the last decrease), and the estimate in use."""
        last_dec = self.delay_based.rate_control.time_last_decrease_ms
        settled = -10**9 if last_dec is None else last_dec + DRAIN_SETTLE_MS
        pk = self._peaks
        if not pk or now_ms - DRAIN_RECENT_MS - max(settled, pk[0][0]) < DRAIN_MIN_PRIOR_SPAN_MS:
            return False
        cut = now_ms - DRAIN_RECENT_MS
        prior = min((q for t, q in pk if settled <= t < cut), default=None)
        recent = max((q for t, q in pk if t >= cut), default=None)
        if prior is None or recent is None or prior < DRAIN_MIN_PRIOR_MS:
            return False
        acked = self.last_acked_bps
        return recent < DRAIN_RATIO * prior and acked is not None and acked >= IN_USE_ACKED_RATIO * self.target_bps

    def _account_loss(self, packets, n_received: int, feedback_ms: int) -> None:
        """Counts only loss above the inherent rate for loss v1 (all of it above 25 %)."""
        _, excess = self.classifier.classify(packets, feedback_ms)
        self.delay_based.standing_queue_ms = self.classifier.standing_queue_ms
        self.expected_since += len(packets)
        self.lost_since += len(packets) - n_received
        self.congestive_since += excess
        if self.next_loss_update_ms is None or feedback_ms > self.next_loss_update_ms:
            self.next_loss_update_ms = feedback_ms + 1_000
            exp = self.expected_since
            counted = self.congestive_since
            if exp and self.lost_since > MAX_RANDOM_LOSS * exp:
                counted = self.lost_since
            self.bandwidth.update_packets_lost(round(counted), exp, feedback_ms)
            self.expected_since = 0
            self.lost_since = 0
            self.congestive_since = 0

