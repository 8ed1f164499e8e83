"""Send-side bandwidth estimation for one transport, sans-I/O: what a WebRtcTransport drives
(mediasoup ``TransportCongestionControlClient`` semantics around a congestion controller).

The transport calls, with its own monotonic clock in integer ms:

- ``on_packet_sent(twcc_seq, size_bytes, send_time_ms, probe_cluster_id=None)`` when an RTP
  packet carrying the transport-wide sequence number (16-bit) leaves the socket; ``size_bytes``
  is the RTP size. Probe padding passes the cluster id from :meth:`SendSideBwe.pop_probe`.
- ``on_feedback(fci, now_ms)`` with the FCI of a received transport-cc RTCP packet (RTPFB,
  FMT 15; what ``parse_rtcp`` yields as ``("twcc", sender_ssrc, media_ssrc, fci)``). Raises
  PacketParseError on a malformed FCI (the caller drops and counts it). Loss and RTT come from
  this feedback only, never from RTCP RR (mediasoup PR #962).
- ``on_timer(now_ms)`` when ``now_ms >= next_timer_ms()`` (every 25 ms).
- ``next_probe_time_ms()`` / ``pop_probe(now_ms)``: padding probes to send, as
  ``(size_bytes, probe_cluster_id)``; send them on SSRC 1234 / payload type 127
  (``prober.PROBATION_SSRC`` / ``PROBATION_PAYLOAD_TYPE``) with a transport-wide seq and report
  them through ``on_packet_sent`` with the cluster id.
- ``set_desired_bitrate(bps, now_ms)``: the sum of the consumers' desired bitrates. As mediasoup
  does, it becomes ``max_bitrate = max(initial, 1.35 × trend(desired))`` (the trend follows rises
  at once and decays 5 %/s of the peak; changes under 10 % are ignored), with the current
  available bitrate as the new start; a raised max above the estimate triggers probes.

Outputs: ``target_bitrate_bps`` (live), ``available_bitrate_bps`` plus
``poll_available_bitrate()`` (mediasoup's event rule: on a change at most once per second, at
once when the value falls below 0.75× or rises above 1.5× the previous one, and from the timer
once per second even without a change), and ``pop_trace()`` with
mediasoup ``trace`` event dicts of types ``"bwe"`` and ``"probation"`` once enabled with
``enable_trace_event(["bwe", "probation"])``.

``controller``: ``"raysfu"`` (ours, :class:`raysfu.bwe.controller.RaysfuController`) or
``"goog_cc_m77"`` (the reference port, :class:`raysfu.bwe.goog_cc.controller.GoogCcController`).
"""

from __future__ import annotations

from raysfu.bwe.prober import PROBATION_PAYLOAD_TYPE, PROBATION_SSRC, BitrateProber
from raysfu.bwe.twcc import SendHistory, parse_feedback

__all__ = ["PROCESS_INTERVAL_MS", "SendSideBwe", "TrendCalculator", "make_controller"]

PROCESS_INTERVAL_MS = 25
MIN_BITRATE_BPS = 30_000  # mediasoup TransportCongestionControlMinOutgoingBitrate
MAX_BITRATE_INCREMENT_FACTOR = 1.35
MAX_BITRATE_MARGIN_FACTOR = 0.1
MAX_PADDING_BITRATE_FACTOR = 0.85
AVAILABLE_BITRATE_EVENT_INTERVAL_MS = 1_000


def make_controller(kind: str, *, min_bps: int, start_bps: int, max_bps: int):
    """A congestion controller by name: ``"raysfu"`` or ``"goog_cc_m77"``. Raises ValueError
    for another name."""
    if kind == "raysfu":
        from raysfu.bwe.controller import RaysfuController

        return RaysfuController(min_bps=min_bps, start_bps=start_bps, max_bps=max_bps)
    if kind == "goog_cc_m77":
        from raysfu.bwe.goog_cc.controller import GoogCcController

        return GoogCcController(min_bps=min_bps, start_bps=start_bps, max_bps=max_bps)
    raise ValueError(f"controller must be 'raysfu' or 'goog_cc_m77', got {kind!r}")


class TrendCalculator:
    """mediasoup ``TrendCalculator``: follows increases at once; on decreases the value decays
    from the last peak by ``decrease_factor`` (5 %) of the peak per second, never below the
    new input."""

    __slots__ = ("_peak", "_peak_ms", "decrease_factor", "value")

    def __init__(self, decrease_factor: float = 0.05) -> None:
        self.value = 0
        self._peak = 0
        self._peak_ms = 0
        self.decrease_factor = decrease_factor

    def update(self, value: int, now_ms: int) -> int:
        if self.value == 0 or value >= self.value:
            self.value = self._peak = value
            self._peak_ms = now_ms
        else:
            decayed = self._peak * (1 - self.decrease_factor * (now_ms - self._peak_ms) / 1000)
            self.value = int(max(value, decayed))
        return self.value

    def force(self, value: int, now_ms: int) -> int:
        self.value = self._peak = value
        self._peak_ms = now_ms
        return value


class SendSideBwe:
    """Transport-level send-side BWE (see the module docstring for the calling contract).

    Arguments (bps): ``initial_available_outgoing_bitrate`` (mediasoup option, default 600 000:
    the start rate), ``min_bitrate_bps`` (floor, 30 000), ``max_bitrate_bps`` (static max before
    any ``set_desired_bitrate``; default 5 Mbps), ``max_outgoing_bitrate`` /
    ``min_outgoing_bitrate`` (mediasoup transport caps on what is handed to the allocator;
    0 = none). Raises ValueError on a non-positive start rate or max < min.
    """

    def __init__(self, controller="raysfu", *, initial_available_outgoing_bitrate: int = 600_000,
                 min_bitrate_bps: int = MIN_BITRATE_BPS, max_bitrate_bps: int = 5_000_000,
                 max_outgoing_bitrate: int = 0, min_outgoing_bitrate: int = 0) -> None:
        if initial_available_outgoing_bitrate <= 0:
            raise ValueError("initial_available_outgoing_bitrate must be > 0, got "
                             f"{initial_available_outgoing_bitrate!r}")
        if max_bitrate_bps < min_bitrate_bps:
            raise ValueError(f"max_bitrate_bps {max_bitrate_bps} < min_bitrate_bps "
                             f"{min_bitrate_bps}")
        self.initial_bps = max(initial_available_outgoing_bitrate, min_bitrate_bps)
        self.min_bitrate_bps = min_bitrate_bps
        self.max_bitrate_bps = max_bitrate_bps
        self.max_outgoing_bitrate = max_outgoing_bitrate
        self.min_outgoing_bitrate = min_outgoing_bitrate
        if isinstance(controller, str):
            controller = make_controller(controller, min_bps=min_bitrate_bps,
                                         start_bps=self.initial_bps, max_bps=max_bitrate_bps)
        self.controller = controller
        self.history = SendHistory()
        self.prober = BitrateProber()
        self._probe_info: dict[int, tuple[int, int, int]] = {}
        self._pending_probe: dict[int, tuple[int, int]] = {}  # cluster id -> (min_probes, bytes)
        self._next_timer_ms: int | None = None
        self.desired_bitrate_bps = 0
        self.trend = TrendCalculator()
        self.available_bitrate_bps = self.initial_bps
        self._last_event_ms: int | None = None
        self._event_called = False
        self._available_event: int | None = None
        self._trace_types: frozenset = frozenset()
        self._trace: list[dict] = []
        self.feedbacks = 0
        self.packets_sent = 0
        self.probation_bytes_sent = 0

    # --- inputs -------------------------------------------------------------------------------

    def on_packet_sent(self, twcc_seq: int, size_bytes: int, send_time_ms: int,
                       probe_cluster_id: int | None = None) -> None:
        """Record a packet written to the socket (per-packet path: no allocation beyond the
        history entry)."""
        ext = self.history.on_packet_sent(twcc_seq & 0xFFFF, send_time_ms * 1000, size_bytes)
        self.packets_sent += 1
        if probe_cluster_id is not None:
            info = self._pending_probe.get(probe_cluster_id)
            if info is not None:
                self._probe_info[ext] = (probe_cluster_id, info[0], info[1])
            self.probation_bytes_sent += size_bytes
            if "probation" in self._trace_types:
                self._trace.append({
                    "type": "probation", "timestamp": send_time_ms, "direction": "out",
                    "info": {"ssrc": PROBATION_SSRC, "payloadType": PROBATION_PAYLOAD_TYPE,
                             "wideSequenceNumber": twcc_seq & 0xFFFF, "size": size_bytes,
                             "probeClusterId": probe_cluster_id}})
        self.controller.on_sent_packet(send_time_ms, size_bytes)

    def on_feedback(self, fci: bytes, now_ms: int) -> None:
        """Process one transport-cc FCI received at ``now_ms``; raises PacketParseError."""
        parsed = parse_feedback(fci)
        results = self.history.on_feedback(parsed, now_ms * 1000)
        self.feedbacks += 1
        pinfo = self._probe_info
        packets = []
        for r in results:
            recv = r.recv_us
            probe = pinfo.pop(r.transport_seq, None) if pinfo else None
            packets.append((r.send_us // 1000, None if recv is None else recv // 1000,
                            r.size_bytes, probe))
        if len(pinfo) > 4096:  # probes never acknowledged
            for k in sorted(pinfo)[:2048]:
                del pinfo[k]
        self.controller.on_feedback(now_ms, packets)
        self._after(now_ms)

    def next_timer_ms(self) -> int | None:
        """When :meth:`on_timer` is next due (None before the first call: call it at once)."""
        return self._next_timer_ms

    def on_timer(self, now_ms: int) -> None:
        """Periodic processing (every 25 ms): loss-based update, ALR and periodic probes."""
        if self._next_timer_ms is not None and now_ms < self._next_timer_ms:
            return
        self._next_timer_ms = now_ms + PROCESS_INTERVAL_MS
        if self._last_event_ms is None:
            self._last_event_ms = now_ms  # mediasoup's constructor-time event: not notified
        self.controller.process(now_ms)
        self._after(now_ms)
        # mediasoup re-emits the (possibly unchanged) value from its timer at most once per 1 s
        if self._event_called and now_ms - self._last_event_ms >= \
                AVAILABLE_BITRATE_EVENT_INTERVAL_MS:
            self._last_event_ms = now_ms
            self._available_event = self.available_bitrate_bps
            self._emit_bwe_trace(now_ms)

    def set_desired_bitrate(self, desired_bps: int, now_ms: int, force: bool = False) -> None:
        """Consumers' total desired bitrate (mediasoup ``SetDesiredBitrate``)."""
        if desired_bps < 0:
            raise ValueError(f"desired_bps must be >= 0, got {desired_bps!r}")
        trend = self.trend.force(desired_bps, now_ms) if force else \
            self.trend.update(desired_bps, now_ms)
        self.desired_bitrate_bps = desired_bps
        if trend > 0:
            new_max = max(self.initial_bps, int(trend * MAX_BITRATE_INCREMENT_FACTOR))
            if abs(new_max - self.max_bitrate_bps) < MAX_BITRATE_MARGIN_FACTOR * \
                    self.max_bitrate_bps:
                return
        else:
            new_max = self.initial_bps
        if self.max_outgoing_bitrate:
            new_max = min(new_max, self.max_outgoing_bitrate)
        if new_max == self.max_bitrate_bps:
            return
        self.max_bitrate_bps = new_max
        start = max(self.min_bitrate_bps, self.available_bitrate_bps)
        self.controller.set_constraints(self.min_bitrate_bps, start, new_max, now_ms)
        self.controller.set_max_total_allocated(new_max, now_ms)
        self._after(now_ms)
        self._emit_bwe_trace(now_ms)

    # --- probes -------------------------------------------------------------------------------

    def next_probe_time_ms(self) -> int | None:
        """When the next probe padding packet is due (None when not probing)."""
        return self.prober.next_probe_time_ms()

    def pop_probe(self, now_ms: int) -> tuple[int, int] | None:
        """``(size_bytes, probe_cluster_id)`` of a probe due at ``now_ms`` (accounted as sent:
        send it now), else None. Call repeatedly until None."""
        p = self.prober.pop_probe(now_ms)
        if p is None:
            return None
        self._pending_probe[p[0]] = (p[2], p[3])
        if len(self._pending_probe) > 64:
            self._pending_probe.pop(next(iter(self._pending_probe)))
        return p[1], p[0]

    # --- outputs ------------------------------------------------------------------------------

    @property
    def target_bitrate_bps(self) -> int:
        """The controller's current target (bps), with the outgoing min/max applied."""
        t = int(self.controller.target_bps)
        if self.max_outgoing_bitrate:
            t = min(t, self.max_outgoing_bitrate)
        if self.min_outgoing_bitrate:
            t = max(t, self.min_outgoing_bitrate)
        return t

    def poll_available_bitrate(self) -> int | None:
        """The new available outgoing bitrate if a mediasoup-style event fired since the last
        poll (then re-run the layer distribution), else None."""
        v = self._available_event
        self._available_event = None
        return v

    def enable_trace_event(self, types) -> None:
        """Enable trace event types among ``"bwe"``, ``"probation"`` (others ignored)."""
        self._trace_types = frozenset(t for t in types if t in ("bwe", "probation"))

    def pop_trace(self) -> list[dict]:
        """Trace events since the last call, mediasoup shape ``{type, timestamp, direction,
        info}``."""
        t = self._trace
        self._trace = []
        return t

    def bitrates(self) -> dict:
        """mediasoup ``Bitrates`` as the ``bwe`` trace reports them."""
        return {"desiredBitrate": self.desired_bitrate_bps,
                "effectiveDesiredBitrate": self.trend.value,
                "minBitrate": self.min_bitrate_bps, "maxBitrate": self.max_bitrate_bps,
                "startBitrate": max(self.min_bitrate_bps, self.available_bitrate_bps),
                "maxPaddingBitrate": int(self.max_bitrate_bps * MAX_PADDING_BITRATE_FACTOR),
                "availableBitrate": self.available_bitrate_bps, "type": "transport-cc"}

    # --- internals ----------------------------------------------------------------------------

    def _after(self, now_ms: int) -> None:
        for cid, bps in self.controller.pop_probes():
            self.prober.create_cluster(cid, bps, now_ms)
        target = self.target_bitrate_bps
        if target == self.available_bitrate_bps:
            return
        if self._event_called and target == self.initial_bps:
            return  # mediasoup skips values equal to the initial one after the first event
        prev = self.available_bitrate_bps
        self.available_bitrate_bps = target
        if self._last_event_ms is None:
            self._last_event_ms = now_ms
            return
        if (not self._event_called or now_ms - self._last_event_ms
                >= AVAILABLE_BITRATE_EVENT_INTERVAL_MS or target < prev * 0.75
                or target > prev * 1.5):
            self._event_called = True
            self._last_event_ms = now_ms
            self._available_event = target
            self._emit_bwe_trace(now_ms)

    def _emit_bwe_trace(self, now_ms: int) -> None:
        if "bwe" in self._trace_types:
            self._trace.append({"type": "bwe", "timestamp": now_ms, "direction": "out",
                                "info": self.bitrates()})
