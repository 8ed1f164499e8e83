"""Bandwidth estimation of one WebRtcTransport, in the actor: the glue between the transport's
packets and the sans-I/O pieces of ``raysfu.bwe`` (issue 6).

Send side (mediasoup ``TransportCongestionControlClient``): every RTP packet sent with a
transport-wide sequence number is recorded (:meth:`TransportBwe.on_rtp_sent`), transport-cc
feedback from the remote goes to the estimator (:meth:`on_feedback`), probe padding is sent on
SSRC 1234 / payload type 127 (mediasoup-client's "probator" receiver), and the estimate is
exposed as ``availableOutgoingBitrate`` and as ``trace`` events of types ``bwe`` and
``probation``. While the consumers want more than the estimate (the allocator left a layer
out), the transport also pads on SSRC 1234 up to ``min(estimate, 0.85 × max bitrate)`` as
goog_cc's pacer does for mediasoup (``SetAllocatedSendBitrateLimits`` with a max padding
rate): an SFU forwarding less than the estimate is application-limited, and without padding
its estimate can rise no further than ~1.5 × what it sends, short of the next layer.

Receive side (mediasoup ``TransportCongestionControlServer``): the transport-wide sequence
numbers of the producers' packets are logged with their arrival time and transport-cc feedback
goes back every 100 ms (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1), so the
browser's own send-side estimator (and its simulcast layer choice) has what it needs; with
``set_max_incoming_bitrate`` a REMB (draft-alvestrand-rmcat-remb-03) caps the sender every
second, as mediasoup's "limitation REMB" does. A producer whose sender negotiated abs-send-time
but not transport-wide-cc gets no feedback to estimate with, so the transport estimates for it
(bwe/remb.py, libwebrtc's RemoteBitrateEstimatorAbsSendTime as mediasoup runs it in REMB mode)
and sends REMB with ``min(estimate, max_incoming_bitrate)`` for those producers' SSRCs, once a
second or at once when the estimate falls by 3 %; the estimate is ``availableIncomingBitrate``
in the stats. Until it has an estimate, the limitation REMB alone applies.

All times are the worker's monotonic clock in ms.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from raysfu.bwe.allocator import BitrateAllocator
from raysfu.bwe.estimator import SendSideBwe
from raysfu.bwe.prober import PROBATION_PAYLOAD_TYPE, PROBATION_SSRC
from raysfu.bwe.remb import RembEstimator
from raysfu.bwe.twcc import TwccRecorder
from raysfu.transport import rtcp
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import find_extension, read_abs_send_time
from raysfu.transport.supported_rtp_capabilities import URI_ABS_SEND_TIME

if TYPE_CHECKING:  # pragma: no cover
    from .webrtc_transport import WebRtcTransport

__all__ = [
    "MAX_PADDING_BITRATE_FACTOR",
    "PADDING_BURST_MS",
    "REMB_INTERVAL_MS",
    "TRACE_TYPES",
    "URI_ABS_SEND_TIME",
    "URI_TWCC",
    "TransportBwe",
    "build_probation_packet",
]

URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
REMB_INTERVAL_MS = 1_000  # mediasoup sends its limitation REMB once per second
TRACE_TYPES = ("bwe", "probation")
_PROBE_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, timestamp, ssrc
_EXT_HEADER = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_MIN_PROBE_BYTES = 12 + 8 + 1  # header, one-byte extension block with the twcc element, 1 pad byte
MAX_PADDING_BITRATE_FACTOR = 0.85  # mediasoup: max padding = 0.85 x the estimator's max bitrate
PADDING_BURST_MS = 50  # the padding budget carries at most this much of the padding rate
_PADDING_PACKET_BYTES = 1_000
_PADDING = -1  # ``_probe_cluster`` while padding


def build_probation_packet(buf: memoryview | bytearray, size_bytes: int, seq: int, timestamp: int,
                           twcc_ext_id: int) -> tuple[int, int]:
    """Write one ``size_bytes`` probation packet into ``buf`` as mediasoup's
    RtpProbationGenerator does: RTP (RFC 3550) with SSRC 1234, payload type 127, a one-byte
    header extension block (RFC 8285 §4.2) holding the transport-wide sequence number element
    (id ``twcc_ext_id``; the transport fills the value in when it stamps the packet) and a
    zero-filled payload (the receiver's probator never decodes it). Returns
    ``(length_bytes, twcc_offset)``, ``twcc_offset`` being the offset of the element's header
    byte. ``size_bytes`` below 21 is raised to 21."""
    end = max(size_bytes, _MIN_PROBE_BYTES)
    _PROBE_HEADER.pack_into(buf, 0, 0x90, PROBATION_PAYLOAD_TYPE, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                            PROBATION_SSRC)
    _EXT_HEADER.pack_into(buf, 12, 0xBEDE, 1)
    buf[16] = (twcc_ext_id << 4) | 1
    buf[17:end] = bytes(end - 17)
    return end, 16


class TransportBwe:
    """Send- and receive-side bandwidth estimation state of one transport.

    ``initial_available_outgoing_bitrate`` (bps, mediasoup option, default 600 000) starts the
    estimate; ``controller`` is ``"raysfu"`` (ours) or ``"goog_cc_m77"`` (the reference port).
    The transport calls :meth:`on_rtp_received`, :meth:`on_rtp_sent`, :meth:`on_feedback`,
    :meth:`on_remb` and, once ``now_ms >= next_timer_ms()``, :meth:`on_timer`.
    """

    __slots__ = (
        "_next_distribution_ms",
        "_next_remb_ms",
        "_pad_budget",
        "_pad_ms",
        "_pad_sent_mark",
        "_probe_cluster",
        "_probe_seq",
        "_twcc_ids",
        "allocator",
        "available_bitrate_bps",
        "distributions",
        "feedback_errors",
        "max_incoming_bitrate",
        "padding_bps",
        "padding_bytes_sent",
        "probe_twcc_ext_id",
        "recorder",
        "remb",
        "remb_received_bps",
        "send_side",
        "sent_bytes",
        "trace_types",
        "transport",
    )

    def __init__(self, transport: WebRtcTransport, *, initial_available_outgoing_bitrate: int = 600_000,
                 controller: str = "raysfu") -> None:
        if not isinstance(initial_available_outgoing_bitrate, int) or isinstance(initial_available_outgoing_bitrate, bool) \
                or initial_available_outgoing_bitrate <= 0:
            raise TypeError("initial_available_outgoing_bitrate must be a positive int (bps)")
        self.transport = transport
        self.send_side = SendSideBwe(controller, initial_available_outgoing_bitrate=initial_available_outgoing_bitrate)
        self.recorder = TwccRecorder(sender_ssrc=transport.rtcp_ssrc)
        # producer id -> its transport-cc extension id (> 0), or minus its abs-send-time extension
        # id when it has abs-send-time without transport-cc (< 0: receive-side estimate), or 0
        self._twcc_ids: dict[str, int] = {}
        #: receive-side estimator for abs-send-time-only producers (created at their first packet)
        self.remb: RembEstimator | None = None
        self.max_incoming_bitrate = 0
        self._next_remb_ms = 0
        self._probe_cluster: int | None = None
        self._probe_seq = 0
        #: the transport-cc extension id the consumers of this transport use (0: no probing)
        self.probe_twcc_ext_id = 0
        self.available_bitrate_bps = self.send_side.available_bitrate_bps
        self.trace_types: frozenset = frozenset()
        self.feedback_errors = 0
        self.remb_received_bps = 0
        #: layer distribution across the transport's simulcast/SVC consumers (bwe/allocator.py)
        self.allocator = BitrateAllocator()
        self.distributions = 0
        self._next_distribution_ms = 0
        #: bytes of every stamped RTP packet sent (media, RTX, probation, padding)
        self.sent_bytes = 0
        #: padding target (bps, media included; 0: no padding), set by :meth:`distribute`
        self.padding_bps = 0
        self._pad_budget = 0.0
        self._pad_ms = 0
        self._pad_sent_mark = 0
        self.padding_bytes_sent = 0

    # -- receive side --------------------------------------------------------------------------
    def on_rtp_received(self, data: bytes, hdr: tuple, producer: Any, now_ms: int) -> None:
        """Log the transport-wide seq of a producer's packet (``hdr`` from
        ``parse_rtp_header``), if it carries one; feed the abs-send-time of a producer without
        transport-cc to the receive-side estimator."""
        ext_id = self._twcc_ids.get(producer.id)
        if ext_id is None:
            ext_id = self._feedback_ext_id(producer)
        if ext_id <= 0 or not hdr[6]:
            if ext_id < 0 and hdr[6]:
                self._on_abs_send_time(data, hdr, -ext_id, now_ms)
            return
        found = find_extension(data, hdr[6], hdr[7], hdr[8], ext_id)
        if found is None or found[1] < 2:
            return
        recorder = self.recorder
        recorder.media_ssrc = hdr[4]
        recorder.on_packet(_U16.unpack_from(data, found[0])[0], now_ms * 1000)
        due = recorder.next_timer_us()
        if due is not None:
            self.transport.wake_timer(due // 1000)

    def _feedback_ext_id(self, producer: Any) -> int:
        uris = producer.ext_uri_by_id
        ext_id = next((i for i, u in uris.items() if u == URI_TWCC), 0)
        if not ext_id:
            ext_id = -next((i for i, u in uris.items() if u == URI_ABS_SEND_TIME), 0)
            if ext_id and self.remb is None:
                self.remb = RembEstimator()
        self._twcc_ids[producer.id] = ext_id
        return ext_id

    def _on_abs_send_time(self, data: bytes, hdr: tuple, ext_id: int, now_ms: int) -> None:
        try:
            found = find_extension(data, hdr[6], hdr[7], hdr[8], ext_id)
        except PacketParseError:
            self.transport.drops["rtp_extension_malformed"] += 1
            return
        if found is None or found[1] < 3:
            return
        off = found[0]
        remb = self.remb
        if remb.on_packet(read_abs_send_time(data, off), now_ms, len(data), hdr[4]):
            self.transport.wake_timer(remb.next_remb_ms())

    def forget_producer(self, producer_id: str) -> None:
        """Drop the cached extension id of a producer that left the transport."""
        self._twcc_ids.pop(producer_id, None)

    def set_max_incoming_bitrate(self, bitrate_bps: int, now_ms: int) -> None:
        """Cap what the remote sends us with a REMB every second (0: no cap); with a
        receive-side estimate, the REMB carries ``min(estimate, bitrate_bps)``."""
        self.max_incoming_bitrate = bitrate_bps
        self._next_remb_ms = now_ms
        self.transport.wake_timer(now_ms)

    # -- send side -----------------------------------------------------------------------------
    def on_rtp_sent(self, twcc_seq: int, size_bytes: int, now_ms: int) -> None:
        """Record a sent packet stamped with ``twcc_seq`` (per-packet path)."""
        self.sent_bytes += size_bytes
        cluster = self._probe_cluster
        if cluster == _PADDING:  # padding: acknowledged like media, but no demand (ALR sees media)
            send_side = self.send_side
            send_side.history.on_packet_sent(twcc_seq & 0xFFFF, now_ms * 1000, size_bytes)
            send_side.packets_sent += 1
            return
        self.send_side.on_packet_sent(twcc_seq, size_bytes, now_ms, cluster)

    def on_feedback(self, fci: bytes, now_ms: int) -> None:
        """One transport-cc feedback FCI from the remote; a malformed one is counted and
        dropped."""
        if self.transport.bwe_tx is None:  # the remote gives feedback: start estimating
            self.transport.bwe_tx = self
            self.transport.wake_timer(now_ms)
        try:
            self.send_side.on_feedback(fci, now_ms)
        except PacketParseError:
            self.feedback_errors += 1
            self.transport.drops["twcc_feedback_malformed"] += 1
            return
        self._after(now_ms)

    def on_remb(self, bitrate_bps: int) -> None:
        """A REMB from the remote (kept for stats; the estimate uses transport-cc only)."""
        self.remb_received_bps = bitrate_bps

    def set_max_outgoing_bitrate(self, bitrate_bps: int) -> None:
        self.send_side.max_outgoing_bitrate = bitrate_bps

    def set_min_outgoing_bitrate(self, bitrate_bps: int) -> None:
        self.send_side.min_outgoing_bitrate = bitrate_bps

    def enable_trace_event(self, types: list[str]) -> None:
        self.trace_types = frozenset(t for t in types if t in TRACE_TYPES)
        self.send_side.enable_trace_event(self.trace_types)

    # -- timer ---------------------------------------------------------------------------------
    def next_timer_ms(self) -> int | None:
        """The earliest of: the feedback timer, the estimator's 25 ms process timer, the next
        probe, the next REMB."""
        # The estimator's 25 ms timer runs once the remote has sent transport-cc feedback: a
        # transport whose remote gives none (or an idle one) costs no timer calls.
        due = None
        if self.send_side.feedbacks:
            due = self.send_side.next_timer_ms()
            if due is None:  # never run yet: at once
                due = 0
        rec = self.recorder.next_timer_us()
        if rec is not None:
            rec //= 1000
            due = rec if due is None or rec < due else due
        probe = self.send_side.next_probe_time_ms()
        if probe is not None and (due is None or probe < due):
            due = probe
        if self.max_incoming_bitrate and (due is None or self._next_remb_ms < due):
            due = self._next_remb_ms
        if self.remb is not None:
            remb = self.remb.next_remb_ms()
            if remb is not None and (due is None or remb < due):
                due = remb
        return due

    def on_timer(self, now_ms: int) -> None:
        t = self.transport
        for packet in self.recorder.on_timer(now_ms * 1000):
            t.send_rtcp(packet)
        remb = self.remb
        if remb is not None and remb.estimate_bps is not None:
            self._send_estimate_remb(remb, now_ms)
        elif self.max_incoming_bitrate and now_ms >= self._next_remb_ms:
            self._next_remb_ms = now_ms + REMB_INTERVAL_MS
            ssrcs = [p.ssrc for p in t.producers.values() if getattr(p, "ssrc", None) is not None]
            if ssrcs:
                t.send_rtcp(rtcp.build_remb(t.rtcp_ssrc, self.max_incoming_bitrate, ssrcs[:255]))
        send_side = self.send_side
        if not send_side.feedbacks:
            return
        send_side.on_timer(now_ms)
        if not self.probe_twcc_ext_id:
            self.probe_twcc_ext_id = next((c.twcc_id for c in t.consumers.values() if getattr(c, "twcc_id", 0)), 0)
        if self.probe_twcc_ext_id and send_side.next_probe_time_ms() is not None:
            self._send_probes(now_ms)
        if self.probe_twcc_ext_id:
            self._pad(now_ms)
        self._after(now_ms)

    def _send_estimate_remb(self, remb: RembEstimator, now_ms: int) -> None:
        """The receive-side estimate's REMB (mediasoup ``OnRembServerAvailableBitrate``): when
        :meth:`RembEstimator.poll_remb` says so, or when ``set_max_incoming_bitrate`` asked for
        one now; capped by ``max_incoming_bitrate``, for the SSRCs heard in the last 2 s."""
        cap = self.max_incoming_bitrate
        value = remb.poll_remb(now_ms, force=bool(cap) and now_ms >= self._next_remb_ms)
        if value is None:
            return
        self._next_remb_ms = now_ms + REMB_INTERVAL_MS  # one REMB a second, not two out of phase
        ssrcs = remb.ssrcs
        if ssrcs:
            t = self.transport
            t.send_rtcp(rtcp.build_remb(t.rtcp_ssrc, min(value, cap) if cap else value, ssrcs[:255]))

    def _pad(self, now_ms: int) -> None:
        """Top what was sent since the last call up to ``padding_bps`` with probation packets
        (a budget as libwebrtc's pacer keeps: credit for the elapsed time minus the bytes sent,
        capped at :data:`PADDING_BURST_MS` of the rate either way). Padding goes to the send
        history (its feedback raises the acknowledged rate, so the estimate may grow past what
        the media alone would allow) but not to the controller's ALR detector: the media stays
        application-limited there, and demand probing towards the capped layer goes on."""
        elapsed = now_ms - self._pad_ms
        self._pad_ms = now_ms
        sent = self.sent_bytes - self._pad_sent_mark
        rate = self.padding_bps
        if rate <= 0 or elapsed <= 0 or elapsed > 1_000:
            self._pad_budget = 0.0
            self._pad_sent_mark = self.sent_bytes
            return
        cap = rate * PADDING_BURST_MS / 8000
        budget = min(max(self._pad_budget + rate * elapsed / 8000 - sent, -cap), cap)
        t = self.transport
        while budget >= _MIN_PROBE_BYTES:
            size = min(int(budget), _PADDING_PACKET_BYTES)
            self._probe_seq += 1
            n, twcc_off = build_probation_packet(t.scratch, size, self._probe_seq, now_ms * 90,
                                                 self.probe_twcc_ext_id)
            self._probe_cluster = _PADDING
            try:
                t.send_scratch_rtp(n, twcc_off)
            finally:
                self._probe_cluster = None
            self.padding_bytes_sent += n
            budget -= n
        self._pad_budget = budget
        self._pad_sent_mark = self.sent_bytes

    def _send_probes(self, now_ms: int) -> None:
        t = self.transport
        send_side = self.send_side
        probe = send_side.pop_probe(now_ms)
        while probe is not None:
            size, cluster = probe
            self._probe_seq += 1
            n, twcc_off = build_probation_packet(t.scratch, max(size, _MIN_PROBE_BYTES), self._probe_seq,
                                                 now_ms * 90, self.probe_twcc_ext_id)
            self._probe_cluster = cluster
            try:
                t.send_scratch_rtp(n, twcc_off)
            finally:
                self._probe_cluster = None
            probe = send_side.pop_probe(now_ms)

    def _after(self, now_ms: int) -> None:
        send_side = self.send_side
        available = send_side.poll_available_bitrate()
        if available is not None:
            self.available_bitrate_bps = available
            self.distribute(now_ms, bwe_triggered=True)
        elif now_ms >= self._next_distribution_ms and send_side.feedbacks:
            self.distribute(now_ms, bwe_triggered=False)  # new consumers, preferences, rates
        if self.trace_types:
            for trace in send_side.pop_trace():
                self.transport.worker.emit(self.transport.id, "trace", trace)

    # -- layer distribution ----------------------------------------------------------------
    def distribute(self, now_ms: int, *, bwe_triggered: bool) -> None:
        """mediasoup ``DistributeAvailableOutgoingBitrate``: split the available outgoing
        bitrate (with ``set_max/min_outgoing_bitrate`` applied) across the transport's
        simulcast/SVC consumers layer by layer (bwe/allocator.py: priority-weighted rounds,
        oldest-first tie-break, hysteresis after a bandwidth downgrade), cap each consumer's
        layers with ``set_layer_limit``, and report their desired bitrate to the estimator.
        Runs only once transport-cc feedback has arrived: without feedback there is no
        estimate, and the consumers keep their preferred layers."""
        self._next_distribution_ms = now_ms + 1_000
        if not self.send_side.feedbacks:
            return
        t = self.transport
        alloc = self.allocator
        layered = {}
        for c in t.consumers.values():
            selector = getattr(c, "selector", None)
            if selector is None:
                continue
            monitor = selector.monitor
            rates = [[monitor.bitrate_bps(s, now_ms, tl) for tl in range(selector.temporal_layers)]
                     for s in range(selector.spatial_layers)]
            since = [now_ms - monitor.active_ms(s, now_ms) if monitor.is_active(s) else now_ms
                     for s in range(selector.spatial_layers)]
            priority = 0 if (c.paused or c.producer_paused) else c.priority
            preferred = (selector.preferred_spatial_layer, selector.preferred_temporal_layer)
            if c.id in alloc.consumers:
                alloc.update_consumer(c.id, layer_bitrates_bps=rates, priority=priority,
                                      preferred_layers=preferred, stream_active_since_ms=since)
            else:
                alloc.add_consumer(c.id, layer_bitrates_bps=rates, priority=priority,
                                   preferred_layers=preferred, stream_active_since_ms=since,
                                   active_since_ms=now_ms)
            layered[c.id] = c
        for cid in [cid for cid in alloc.consumers if cid not in layered]:
            alloc.remove_consumer(cid)
        if not layered:
            return
        s = self.send_side
        available = self.available_bitrate_bps
        if s.max_outgoing_bitrate:
            available = min(available, s.max_outgoing_bitrate)
        if s.min_outgoing_bitrate:
            available = max(available, s.min_outgoing_bitrate)
        result = alloc.allocate(available, now_ms, bwe_triggered=bwe_triggered)
        self.distributions += 1
        for cid, layers in result.layers.items():
            consumer = layered[cid]
            if not any(any(r) for r in alloc.consumers[cid].layer_bitrates_bps):
                consumer.set_layer_limit(None, None, now_ms)  # nothing measured yet: no cap
            elif layers is None:
                consumer.set_layer_limit(0, 0, now_ms)  # the lowest layer is always kept
            else:
                consumer.set_layer_limit(layers[0], layers[1], now_ms)
        # desired bitrate → the estimator's max and probing (its own event comes back through
        # poll_available_bitrate on the next timer, not recursively from here)
        desired = alloc.desired_bitrate_bps()
        s.set_desired_bitrate(desired, now_ms)
        # pad while a wanted layer does not fit (mediasoup: padding up to 0.85 × max bitrate)
        capped = any(c.priority > 0 and alloc._next_layer(c, c.layers, now_ms) is not None
                     for c in alloc.consumers.values())
        self.padding_bps = min(available, int(s.max_bitrate_bps * MAX_PADDING_BITRATE_FACTOR)) if capped else 0

    # -- info ----------------------------------------------------------------------------------
    def stats(self) -> dict:
        """The mediasoup transport-stat fields this state owns (bps); ``availableIncomingBitrate``
        is the receive-side (abs-send-time) estimate, None without one."""
        s = self.send_side
        return {
            "availableOutgoingBitrate": self.available_bitrate_bps,
            "availableIncomingBitrate": None if self.remb is None else self.remb.estimate_bps,
            "maxIncomingBitrate": self.max_incoming_bitrate or None,
            "maxOutgoingBitrate": s.max_outgoing_bitrate or None,
            "minOutgoingBitrate": s.min_outgoing_bitrate or None,
        }
