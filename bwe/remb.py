"""Receive-side bandwidth estimation from abs-send-time, reported with REMB (issue 6).

When a producer's sender negotiated abs-send-time but not transport-wide-cc, the sender cannot
estimate its own path from feedback, so the receiver does it and tells the sender with REMB
(draft-alvestrand-rmcat-remb-03). This is what libwebrtc's ``RemoteBitrateEstimatorAbsSendTime``
does (``modules/remote_bitrate_estimator/remote_bitrate_estimator_abs_send_time.cc``) and what
mediasoup runs in its ``TransportCongestionControlServer`` in REMB mode
(``Transport::OnRembServerAvailableBitrate``-style output, capped by ``maxIncomingBitrate``).

Pipeline of :class:`RembEstimator` (research/bwe.md §1.3-§1.6), all on the receiver's clock:

- abs-send-time (24-bit 6.18 fixed-point seconds, wraps every 64 s) shifted up 8 bits into the
  32-bit inter-arrival ticks of :mod:`raysfu.bwe.goog_cc.inter_arrival` (5 ms send-time groups,
  burst grouping, reorder handling);
- the delay gradient of consecutive groups goes through the trendline estimator with its
  adaptive threshold (:mod:`raysfu.bwe.goog_cc.trendline`), giving normal / overusing /
  underusing;
- AIMD rate control (:mod:`raysfu.bwe.goog_cc.aimd`) driven by the measured incoming bitrate
  (1 s sliding window, as libwebrtc's ``RateStatistics`` with ``kBitrateWindowMs = 1000``): an
  update at most every feedback interval (80 bytes of RTCP at 5 % of the rate, clamped to
  [200, 1000] ms: ``AimdRateControl::GetFeedbackInterval``) or at once on overuse when
  ``TimeToReduceFurther`` allows; the first estimate comes from an overuse or after 5 s of
  incoming data (``kInitializationTimeMs``).

Differences from libwebrtc, on purpose: the trendline replaces the receive-side Kalman
``OveruseEstimator`` (one detector for both sides of raysfu); the initial-probe cluster
detection is not done; a jump of the abs-send-time clock that the arrival times do not share (a
new sender after an ICE restart, a garbage value) resets the delay state instead of discarding
packets as "reordered" for up to 32 s.

REMB timing (:meth:`RembEstimator.poll_remb`): once per second, or at once when the estimate fell
below 97 % of the last value sent (libwebrtc ``video_engine/vie_remb.cc``:
``kRembSendIntervallMs = 1000``, ``kSendThresholdPercent = 97``).

Sans-I/O: every time is an argument (integer ms of a monotonic clock); nothing raises on bad
packets, whatever their values.
"""

from __future__ import annotations

from raysfu.bwe.goog_cc.aimd import AimdRateControl
from raysfu.bwe.goog_cc.inter_arrival import TICKS_PER_MS, InterArrival
from raysfu.bwe.goog_cc.trendline import BandwidthUsage, TrendlineEstimator

__all__ = [
    "REMB_INTERVAL_MS",
    "REMB_SEND_THRESHOLD",
    "SEND_TIME_JUMP_MS",
    "STREAM_TIMEOUT_MS",
    "RembEstimator",
    "abs_send_time_from_ms",
]

REMB_INTERVAL_MS = 1_000  # vie_remb.cc kRembSendIntervallMs
REMB_SEND_THRESHOLD = 0.97  # vie_remb.cc kSendThresholdPercent: a drop below 97 % is sent at once
STREAM_TIMEOUT_MS = 2_000  # remote_bitrate_estimator_abs_send_time.cc kStreamTimeOutMs
SEND_TIME_JUMP_MS = 3_000  # send-clock jump beyond the arrival jump that resets (cf. inter_arrival.h)
RATE_WINDOW_MS = 1_000  # kBitrateWindowMs
MIN_BITRATE_BPS = 5_000  # congestion_controller::GetMinBitrate
_RTCP_REMB_BITS = 80 * 8  # aimd_rate_control.cc: kRtcpSize 80 bytes at 5 % of the rate
_PRE_INIT_UPDATE_MS = 100  # before the first estimate, AIMD is checked this often (libwebrtc: per packet)
_U32 = 0xFFFFFFFF
_HALF = 0x80000000
_MS_PER_TICK = 1.0 / TICKS_PER_MS
_OVERUSING = BandwidthUsage.OVERUSING


def abs_send_time_from_ms(send_ms: float) -> int:
    """The 24-bit abs-send-time field for a send time in ms: 6.18 fixed-point seconds, modulo
    64 s (webrtc.org abs-send-time)."""
    return (int(send_ms * 262.144 + 0.5)) & 0xFFFFFF


class RembEstimator:
    """Bandwidth estimate of everything one transport receives with abs-send-time.

    Per packet: :meth:`on_packet`. Read :attr:`estimate_bps` (int bps, None until the first
    estimate), :attr:`ssrcs` (SSRCs heard in the last 2 s), :meth:`incoming_bitrate_bps`;
    :meth:`poll_remb` says when a REMB is due and with what value, :meth:`next_remb_ms` when to
    ask next. ``min_bitrate_bps`` floors the estimate (default 5 kbps, libwebrtc's);
    ``rtt_ms`` (default 200, AIMD's default) sets the additive-increase speed and the pacing of
    decreases (:meth:`set_rtt` changes it).

    Counters: ``packets``, ``resets`` (delay state dropped: stream silent > 2 s or a send-clock
    jump), ``updates`` (AIMD runs that produced an estimate), ``overuses``.
    """

    __slots__ = (
        "_buckets",
        "_detector",
        "_inter_arrival",
        "_last_arrival_ms",
        "_last_ts",
        "_next_update_ms",
        "_rate_newest_ms",
        "_rate_start_ms",
        "_rate_sum",
        "_rc",
        "_remb_sent_bps",
        "_remb_sent_ms",
        "_ssrcs",
        "_updated_ms",
        "estimate_bps",
        "overuses",
        "packets",
        "resets",
        "updates",
    )

    def __init__(self, *, min_bitrate_bps: int = MIN_BITRATE_BPS, rtt_ms: int = 200) -> None:
        if not isinstance(min_bitrate_bps, int) or isinstance(min_bitrate_bps, bool) or min_bitrate_bps <= 0:
            raise TypeError(f"min_bitrate_bps must be a positive int (bps), got {min_bitrate_bps!r}")
        self._rc = AimdRateControl()
        self._rc.set_min_bitrate(min_bitrate_bps)
        self.set_rtt(rtt_ms)
        self._inter_arrival = InterArrival()
        self._detector = TrendlineEstimator()
        self._last_arrival_ms: int | None = None
        self._last_ts = 0
        self._ssrcs: dict[int, int] = {}
        self._buckets = [0] * RATE_WINDOW_MS
        self._rate_sum = 0
        self._rate_newest_ms: int | None = None
        self._rate_start_ms = 0
        self._next_update_ms: int | None = None
        self._updated_ms = 0
        self._remb_sent_bps: int | None = None
        self._remb_sent_ms = 0
        #: the estimate (bps); None until AIMD has one
        self.estimate_bps: int | None = None
        self.packets = 0
        self.resets = 0
        self.updates = 0
        self.overuses = 0

    def set_rtt(self, rtt_ms: int) -> None:
        """Round-trip time (ms) to the sender, if known (AIMD's response time and decrease pacing)."""
        if not isinstance(rtt_ms, (int, float)) or isinstance(rtt_ms, bool) or rtt_ms < 0:
            raise TypeError(f"rtt_ms must be a number >= 0, got {rtt_ms!r}")
        self._rc.rtt_ms = rtt_ms

    # -- per packet ----------------------------------------------------------------------------
    def on_packet(self, abs_send_time_24: int, arrival_ms: int, size_bytes: int, ssrc: int) -> bool:
        """One received packet: its 24-bit abs-send-time field, arrival time (ms), size (bytes,
        the RTP packet; libwebrtc counts the payload plus header) and SSRC. Returns True when
        the estimate was updated by this packet (at most every 200 ms, or at once on overuse).
        Never raises for any int values: reordered packets are skipped by the grouping, a
        send-clock jump or > 2 s of silence resets the delay state (counted in ``resets``)."""
        self.packets += 1
        ts = (abs_send_time_24 & 0xFFFFFF) << 8
        last_arrival = self._last_arrival_ms
        if last_arrival is None:
            self._last_ts = ts
        else:
            arrival_delta = arrival_ms - last_arrival
            send_delta = (ts - self._last_ts) & _U32
            if send_delta >= _HALF:
                send_delta -= 0x100000000
            send_delta_ms = send_delta * _MS_PER_TICK
            if arrival_delta > STREAM_TIMEOUT_MS or not -SEND_TIME_JUMP_MS <= send_delta_ms - arrival_delta <= SEND_TIME_JUMP_MS:
                self._reset_delay_state()
                self._last_ts = ts
            elif send_delta > 0:
                self._last_ts = ts
        if last_arrival is None or arrival_ms > last_arrival:
            self._last_arrival_ms = arrival_ms
        self._ssrcs[ssrc] = arrival_ms
        # incoming rate: 1 ms buckets over 1 s (inline: the per-packet part of _rate_add)
        newest = self._rate_newest_ms
        if newest is not None and 0 <= arrival_ms - newest <= 2:
            b = self._buckets
            while newest < arrival_ms:
                newest += 1
                i = newest % RATE_WINDOW_MS
                self._rate_sum -= b[i]
                b[i] = 0
            self._rate_newest_ms = newest
            if not self._rate_sum:  # the window emptied: measure anew from here
                self._rate_start_ms = newest
            if size_bytes > 0:
                b[newest % RATE_WINDOW_MS] += size_bytes
                self._rate_sum += size_bytes
        else:
            self._rate_add(size_bytes, arrival_ms)
        d = self._inter_arrival.compute_deltas(ts, arrival_ms, arrival_ms, size_bytes)
        if d is not None:
            self._detector.update(d[1] * 1000, d[0] * _MS_PER_TICK * 1000.0, arrival_ms * 1000)
        # AIMD (RemoteBitrateEstimatorAbsSendTime::IncomingPacketInfo): at once on overuse when
        # the controller may reduce again, else once per feedback interval
        nxt = self._next_update_ms
        if self._detector.state == _OVERUSING:
            incoming = self.incoming_bitrate_bps(arrival_ms)
            if incoming is not None and self._rc.time_to_reduce_further(arrival_ms, incoming):
                return self._update(arrival_ms, incoming)
        if nxt is None or arrival_ms >= nxt:
            return self._update(arrival_ms, self.incoming_bitrate_bps(arrival_ms))
        return False

    def _update(self, now_ms: int, incoming_bps: int | None) -> bool:
        rc = self._rc
        state = self._detector.state
        target = rc.update(state, incoming_bps, now_ms)
        if not rc.valid_estimate():
            self._next_update_ms = now_ms + _PRE_INIT_UPDATE_MS
            return False
        if state == _OVERUSING:
            self.overuses += 1
        self.updates += 1
        self.estimate_bps = est = int(target)
        self._updated_ms = now_ms
        # GetFeedbackInterval: 80 B of REMB at 5 % of the rate, clamped to [200, 1000] ms
        interval = int(_RTCP_REMB_BITS * 1000 / (0.05 * est)) if est > 0 else 1000
        self._next_update_ms = now_ms + min(max(interval, 200), 1000) + 1  # libwebrtc: strictly more
        return True

    def _reset_delay_state(self) -> None:
        self.resets += 1
        self._inter_arrival = InterArrival()
        self._detector = TrendlineEstimator()

    # -- incoming bitrate (1 s window of 1 ms buckets) -----------------------------------------
    def _rate_advance(self, now_ms: int) -> None:
        newest = self._rate_newest_ms
        if newest is None or now_ms - newest >= RATE_WINDOW_MS or now_ms < newest - RATE_WINDOW_MS:
            if self._rate_sum:
                self._buckets = [0] * RATE_WINDOW_MS
                self._rate_sum = 0
            self._rate_newest_ms = now_ms
            self._rate_start_ms = now_ms
            return
        if now_ms <= newest:
            return
        b = self._buckets
        s = self._rate_sum
        t = newest + 1
        while t <= now_ms:
            i = t % RATE_WINDOW_MS
            s -= b[i]
            b[i] = 0
            t += 1
        self._rate_sum = s
        self._rate_newest_ms = now_ms
        if not s:  # the window emptied: measure anew from here (RateStatistics reset)
            self._rate_start_ms = now_ms

    def _rate_add(self, size_bytes: int, now_ms: int) -> None:
        self._rate_advance(now_ms)
        if size_bytes > 0:
            self._buckets[self._rate_newest_ms % RATE_WINDOW_MS] += size_bytes
            self._rate_sum += size_bytes

    def incoming_bitrate_bps(self, now_ms: int) -> int | None:
        """Bytes received over the last second (or since data began, if less) × 8 per second;
        None when the window is empty or spans ≤ 1 ms."""
        self._rate_advance(now_ms)
        window = min(self._rate_newest_ms - self._rate_start_ms + 1, RATE_WINDOW_MS)
        if not self._rate_sum or window <= 1:
            return None
        return self._rate_sum * 8000 // window

    # -- outputs ---------------------------------------------------------------------------
    @property
    def ssrcs(self) -> list[int]:
        """SSRCs received within 2 s of the newest arrival (older ones are dropped)."""
        last = self._last_arrival_ms
        if last is None:
            return []
        stale = [s for s, t in self._ssrcs.items() if last - t > STREAM_TIMEOUT_MS]
        for s in stale:
            del self._ssrcs[s]
        return list(self._ssrcs)

    @property
    def state(self) -> str:
        """The delay detector's state: ``"normal"``, ``"overusing"`` or ``"underusing"``."""
        return self._detector.state

    def poll_remb(self, now_ms: int, *, force: bool = False) -> int | None:
        """The bitrate (bps) to send in a REMB now, or None: the first estimate at once, then
        every :data:`REMB_INTERVAL_MS`, or at once when the estimate fell below 97 % of the last
        value returned (vie_remb.cc). ``force`` returns the estimate whenever there is one.
        A returned value counts as sent."""
        est = self.estimate_bps
        if est is None:
            return None
        last = self._remb_sent_bps
        if (force or last is None or est < last * REMB_SEND_THRESHOLD
                or now_ms - self._remb_sent_ms >= REMB_INTERVAL_MS):
            self._remb_sent_bps = est
            self._remb_sent_ms = now_ms
            return est
        return None

    def next_remb_ms(self) -> int | None:
        """When :meth:`poll_remb` will next return a value (ms; it may be in the past: at once);
        None while there is no estimate."""
        est = self.estimate_bps
        if est is None:
            return None
        last = self._remb_sent_bps
        if last is None or est < last * REMB_SEND_THRESHOLD:
            return self._updated_ms
        return self._remb_sent_ms + REMB_INTERVAL_MS

    def stats(self) -> dict:
        """``{"estimateBps", "state", "threshold", "packets", "updates", "overuses", "resets"}``
        for dumps and notebooks."""
        return {
            "estimateBps": self.estimate_bps,
            "state": self._detector.state,
            "threshold": self._detector.threshold,
            "packets": self.packets,
            "updates": self.updates,
            "overuses": self.overuses,
            "resets": self.resets,
        }
