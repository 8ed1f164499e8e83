"""Simulcast and SVC consumers (mediasoup ``consumer.type`` "simulcast" / "svc"), running inside
the WorkerActor like :class:`~raysfu.actors.consumer.Consumer`, whose duck interface they keep
(they subclass it and reuse its NACK/RTX, RTCP, pause and stats handling).

The decisions are made by the sans-I/O engines of :mod:`raysfu.transport.simulcast`; this module
only wires them to the producer (keyframe requests per encoding), the transport (sending) and
the worker (``layerschange`` and ``score`` events).

What the Producer must supply (the lead wires it):

- per packet, for every consumer: ``consumer.send_rtp(template, ext_seq, keyframe, now_ms,
  layer, desc)``: ``layer`` = the encoding index (simulcast; 0 for SVC), ``ext_seq`` =
  the extended seq *of that encoding's stream*, ``keyframe`` from ``rtp.is_keyframe``, ``desc``
  = the layer descriptor read once per packet (``PacketLayerReader.read``: VP8/VP9 payload
  descriptor tuple, or the dependency descriptor tuple for AV1/H264; None is allowed: VP8/VP9
  are then parsed per consumer, DD codecs forward all layers / drop for SVC);
- ``producer.layer_monitor``: a :class:`~raysfu.transport.layers.LayerMonitor` fed with every
  packet (``on_packet(spatial, temporal, size, now_ms)``: encoding index for simulcast, the
  descriptor's spatial id for SVC), SRs (``on_sr``) and stream scores (``set_score``). Without
  it each consumer keeps its own monitor, fed from ``send_rtp`` (works, costs one call more
  per packet and consumer, and sees no SRs: timestamps then use the elapsed-time fallback);
- ``producer.request_key_frame(now_ms, layer)``: PLI/FIR for encoding ``layer`` (SVC: 0);
- ``producer.get_stats(now_ms)``: one ``inbound-rtp`` entry per encoding, in encoding order.

The transport's timer must call ``consumer.on_timer(now_ms)`` at ``consumer.next_timer_ms()``
(layers that stop while nothing arrives, keyframe request retries, ``score`` events).

Sending follows ``Consumer``: the engine writes this consumer's copy straight into
``transport.scratch`` and ``transport.send_scratch_rtp(n, twcc_off)`` sends it (no per-packet
buffer object). The retransmission buffer keeps a ``bytes`` copy of each sent packet (its
payload and timestamp differ from the template's, so it cannot be rebuilt from the template as
``Consumer`` does).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raysfu.transport import rtcp
from raysfu.transport.codecs.vp9 import parse_vp9_descriptor
from raysfu.transport.errors import PacketParseError
from raysfu.transport.layers import MID_SLOT2_LEN, LayerMonitor, is_two_byte_template
from raysfu.transport.ortc import parse_scalability_mode
from raysfu.transport.rtp_stream import SendStreamStats
from raysfu.transport.rtp_template import MID_SLOT_LEN
from raysfu.transport.seq import SeqRewriter
from raysfu.transport.simulcast import SimulcastSelector, SvcSelector, rtp_payload_end

from .consumer import Consumer

if TYPE_CHECKING:  # pragma: no cover
    from .producer import Producer
    from .webrtc_transport import Transport

__all__ = ["SimulcastConsumer", "SvcConsumer", "MultiStreamPipeConsumer", "create_consumer", "create_layered_consumer", "TIMER_INTERVAL_MS"]

#: How often ``on_timer`` is wanted (monotonic ms).
TIMER_INTERVAL_MS = 100

_SEQ_TS_SSRC = struct.Struct("!HII")
_ZEROS = [bytes(n) for n in range(258)]


def _mid_slot2(mid_slot: bytes) -> bytes:
    """The two-byte-form ``mid`` slot (``id, len, mid``, zero padded to ``MID_SLOT2_LEN``) of a
    consumer whose one-byte slot is ``mid_slot`` (all zeros: no mid)."""
    if not mid_slot[0]:
        return bytes(MID_SLOT2_LEN)
    length = (mid_slot[0] & 0x0F) + 1
    slot = bytes((mid_slot[0] >> 4, length)) + mid_slot[1 : 1 + length]
    return slot + bytes(MID_SLOT2_LEN - len(slot))


class _LayeredConsumer(Consumer):
    """What SimulcastConsumer and SvcConsumer share (see the module docstring)."""

    consumer_type = "simulcast"

    def __init__(
        self,
        *,
        consumer_id: str,
        transport: Transport,
        producer: Producer,
        rtp_parameters: dict,
        paused: bool,
        app_data: Any,
        preferred_layers: dict | None = None,
        layer_monitor: LayerMonitor | None = None,
        emit: Callable[[str, Any], None] | None = None,
    ) -> None:
        """Common set-up of both layered consumers: ``self.monitor`` is ``layer_monitor``, else
        the producer's, else a private one; the layers come from ``encodings[0].scalabilityMode``
        (``parse_scalability_mode``); the subclass's ``_make_selector`` builds the engine."""
        super().__init__(
            consumer_id=consumer_id, transport=transport, producer=producer,
            rtp_parameters=rtp_parameters, paused=paused, app_data=app_data, consumer_type=self.consumer_type,
        )
        self._emit_fn = emit
        self._last_score: dict | None = None
        self._next_timer_ms = 0
        self.rtp_packets_forwarded = 0
        self._buf = self.transport.scratch  # the transports' shared preallocated send buffer
        self._mid_slot2 = _mid_slot2(self.mid_slot)
        layers = parse_scalability_mode(self.rtp_parameters["encodings"][0].get("scalabilityMode"))
        monitor = layer_monitor if layer_monitor is not None else getattr(self.producer, "layer_monitor", None)
        self._own_monitor = monitor is None
        if monitor is None:
            monitor = LayerMonitor(layers["spatialLayers"], layers["temporalLayers"])
        self.monitor = monitor
        self.selector = self._make_selector(layers, preferred_layers)
        if not self.active:
            self.selector.pause()

    def _make_selector(self, layers: dict, preferred_layers: dict | None):  # pragma: no cover - overridden
        raise NotImplementedError

    def _forward(self, n: int, t, now_ms: int) -> None:
        """Send what the selector wrote (``n`` bytes, 0: nothing), then its pulled outputs."""
        if n:  # before _flush: an RTCP request sent there may reuse the scratch buffer
            self._send(n, t, now_ms)
        sel = self.selector
        if sel.key_frame_requests or sel.layers_changed:
            self._flush(now_ms)

    # ------------------------------------------------------------------ events
    def _emit(self, event: str, data: Any) -> None:
        if self._emit_fn is not None:
            self._emit_fn(event, data)
            return
        worker = getattr(self.transport, "worker", None)
        if worker is not None:
            worker.emit(self.id, event, data)

    def _flush(self, now_ms: int) -> None:
        """Send the engine's pulled outputs: keyframe requests and ``layerschange``."""
        sel = self.selector
        if sel.key_frame_requests:
            if self.is_video and not self.closed:
                for layer in dict.fromkeys(sel.take_key_frame_requests()):
                    self.producer.request_key_frame(now_ms, layer)
            else:
                sel.key_frame_requests.clear()
        if sel.layers_changed:
            sel.layers_changed = False
            self.stats.reset_score(10)  # mediasoup resets the send stream's score on a switch
            self._emit("layerschange", sel.current_layers)
            self._emit_score_if_changed()

    def _emit_score_if_changed(self) -> None:
        score = self.score_dict()
        if score != self._last_score:
            self._last_score = score
            self._emit("score", score)

    # ------------------------------------------------------------------ state
    def _after_state_change(self, was_active: bool, now_ms: int) -> None:
        if self.active and not was_active:
            self.selector.resume(now_ms)
        elif was_active and not self.active:
            self.selector.pause()
        self._flush(now_ms)

    def set_preferred_layers(self, layers: dict, now_ms: int) -> dict:
        """mediasoup ``consumer.setPreferredLayers({spatialLayer, temporalLayer?})``: values are
        clamped to the stream's layers; returns the preferred layers. TypeError on bad values."""
        result = self.selector.set_preferred_layers(layers, now_ms)
        self._flush(now_ms)
        return result

    def set_layer_limit(self, spatial_layer: int | None, temporal_layer: int | None, now_ms: int) -> None:
        """Upper bound on the layers from bandwidth allocation (None: none)."""
        self.selector.set_layer_limit(spatial_layer, temporal_layer, now_ms)
        self._flush(now_ms)

    def set_priority(self, priority: int) -> int:
        """mediasoup ``consumer.setPriority(n)``: weight in bitrate distribution (int >= 1)."""
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
            raise TypeError(f"priority must be an int >= 1, got {priority!r}")
        self.priority = priority
        return priority

    def unset_priority(self) -> int:
        """mediasoup ``consumer.unsetPriority()``: back to 1."""
        self.priority = 1
        return 1

    @property
    def preferred_layers(self) -> dict:
        return self.selector.preferred_layers

    @property
    def current_layers(self) -> dict | None:
        return self.selector.current_layers

    # ------------------------------------------------------------------ packets
    def _send(self, n: int, t, now_ms: int) -> None:
        """Patch the ``n``-byte copy the engine wrote into ``self._buf`` (seq, ts, SSRC, mid,
        extensions, twcc slot) and send it: ``Consumer.send_rtp``'s steps after its decision."""
        buf = self._buf
        sel = self.selector
        out_seq = sel.out_seq
        out_ts = sel.out_ts
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, out_ts, self.ssrc)
        mid_off = t.mid_off
        twcc_off = t.twcc_off if self.twcc_id else -1
        if is_two_byte_template(t.data):  # a long extension (dependency descriptor structure)
            if mid_off >= 0:
                buf[mid_off : mid_off + MID_SLOT2_LEN] = self._mid_slot2
            if twcc_off >= 0:
                buf[twcc_off - 1] = self.twcc_id
                buf[twcc_off] = 2
        else:
            if mid_off >= 0:
                buf[mid_off : mid_off + MID_SLOT_LEN] = self.mid_slot
            if twcc_off >= 0:
                buf[twcc_off] = (self.twcc_id << 4) | 1
        allowed = self.allowed_ext_ids
        for ext_id, off, size in t.exts:
            if ext_id not in allowed:
                buf[off : off + size] = _ZEROS[size]
        if self.nack_enabled:
            self.retransmissions.store(out_seq, bytes(buf[:n]), now_ms)
        self.stats.on_packet(out_ts, n, now_ms)
        self.rtp_packets_forwarded += 1
        self.transport.send_scratch_rtp(n, twcc_off)

    # ------------------------------------------------------------------ RTCP / API
    def receive_key_frame_request(self, fb: str, now_ms: int) -> None:
        """PLI or FIR from the remote: counted, then a keyframe of the current (and pending
        target) layer is requested (mediasoup ``RequestKeyFrameForCurrentSpatialLayer``)."""
        if fb == "fir":
            self.stats.fir_count += 1
        else:
            self.stats.pli_count += 1
        if self.active:
            self.selector.request_key_frame()
            self._flush(now_ms)

    def request_key_frame(self, now_ms: int) -> None:
        """mediasoup ``consumer.requestKeyFrame()``."""
        if self.active:
            self.selector.request_key_frame()
            self._flush(now_ms)

    def on_timer(self, now_ms: int) -> None:
        """Timer work (at :meth:`next_timer_ms`): layers that stopped while nothing arrives at
        all, keyframe request retries, ``score`` events on change."""
        self._next_timer_ms = now_ms + TIMER_INTERVAL_MS
        self.selector.update(now_ms)
        self._flush(now_ms)
        self._emit_score_if_changed()

    def next_timer_ms(self) -> int:
        """When :meth:`on_timer` is next wanted (monotonic ms; every ``TIMER_INTERVAL_MS``)."""
        return self._next_timer_ms

    # ------------------------------------------------------------------ info
    def _producer_stream_index(self) -> int:
        return 0

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``ConsumerStat[]``: ``[outbound-rtp of this consumer, inbound-rtp of the
        producer stream forwarded now]`` (only the first when nothing is forwarded)."""
        s = self.stats.to_stats(now_ms)
        if self.rtx_ssrc is not None:
            s["rtxSsrc"] = self.rtx_ssrc
        out = [s]
        i = self._producer_stream_index()
        if i >= 0:
            stream_stats = getattr(self.producer, "stream_stats", None)
            if stream_stats is not None:
                s = stream_stats(i, now_ms)
                if s is not None:
                    out.append(s)
            else:
                producer_stats = self.producer.get_stats(now_ms)
                if i < len(producer_stats):
                    out.append(producer_stats[i])
        return out

    def dump(self) -> dict:
        """mediasoup ``ConsumerDump`` of a simulcast/SVC consumer: the base fields plus
        ``preferred|target|current`` x ``Spatial|Temporal`` ``Layer`` and the engine's drops."""
        d = super().dump()
        sel = self.selector
        d.update(
            preferredSpatialLayer=sel.preferred_spatial_layer,
            targetSpatialLayer=sel.target_spatial_layer,
            currentSpatialLayer=sel.current_spatial_layer,
            preferredTemporalLayer=sel.preferred_temporal_layer,
            targetTemporalLayer=sel.target_temporal_layer,
            currentTemporalLayer=sel.current_temporal_layer,
        )
        drops = dict(d.get("droppedPackets") or {})
        for reason, n in sel.drops.items():
            drops[reason] = drops.get(reason, 0) + n
        d["droppedPackets"] = drops
        return d


class SimulcastConsumer(_LayeredConsumer):
    """mediasoup ``SimulcastConsumer``: one outgoing stream switched between the producer's
    encodings on keyframes, with VP8 temporal layers (see :class:`SimulcastSelector`).

    Extra keyword arguments over :class:`Consumer`: ``preferred_layers`` (mediasoup
    ``consume({preferredLayers})``), ``layer_monitor`` (default ``producer.layer_monitor``, else
    a private one), ``emit`` (``(event, data)`` callable; default ``transport.worker.emit`` with
    this consumer's id). Layers: ``spatialLayers`` = the number of encodings and
    ``temporalLayers`` from the consumer's ``encodings[0].scalabilityMode`` (``L{n}T{t}``, set
    by ``ortc.get_consumer_rtp_parameters``).
    """

    def _make_selector(self, layers: dict, preferred_layers: dict | None) -> SimulcastSelector:
        return SimulcastSelector(
            self.monitor, clock_rate=self.clock_rate, codec=self.mime_type, spatial_layers=layers["spatialLayers"],
            temporal_layers=layers["temporalLayers"], preferred_layers=preferred_layers,
        )

    def send_rtp(self, t, ext_seq: int, keyframe: bool, now_ms: int, layer: int = 0, desc: tuple | None = None) -> None:
        """Forward (or not) one packet of encoding ``layer`` (see the module docstring)."""
        if self._own_monitor:
            tid = 0
            if desc is not None:  # VP8 descriptor TID, or dependency descriptor TEMPORAL_ID
                tid = desc[7] if self.selector.vp8 is not None else desc[5]
            self.monitor.on_packet(layer, tid, len(t.data), now_ms)
        if not self.active:
            return
        self._forward(self.selector.process(t, layer, ext_seq, keyframe, now_ms, desc, self._buf), t, now_ms)

    def _producer_stream_index(self) -> int:
        return self.selector.current_spatial_layer

    def on_padding(self, layer: int, ext_seq: int) -> None:
        """A padding-only packet of encoding ``layer`` (not forwarded): its seq is closed in the
        output so the receiver sees no hole."""
        if self.active:
            self.selector.on_padding(layer, ext_seq)

    def score_dict(self) -> dict:
        """mediasoup ``ConsumerScore``: ``{score, producerScore, producerScores}``: this stream's
        score, the forwarded encoding's (0 when none) and every encoding's."""
        cur = self.selector.current_spatial_layer
        return {
            "score": self.stats.score,
            "producerScore": self.monitor.score(cur) if cur >= 0 else 0,
            "producerScores": self.monitor.scores(),
        }


class SvcConsumer(_LayeredConsumer):
    """mediasoup ``SvcConsumer``: VP9 SVC / K-SVC or AV1 (dependency descriptor) layers of one
    stream (see :class:`SvcSelector`). Keyword arguments as :class:`SimulcastConsumer`; layers
    and K-SVC from ``encodings[0].scalabilityMode`` (``L3T3_KEY``...)."""

    consumer_type = "svc"

    def _make_selector(self, layers: dict, preferred_layers: dict | None) -> SvcSelector:
        codec = self.mime_type.rsplit("/", 1)[-1].lower()
        self._vp9 = codec == "vp9"
        return SvcSelector(
            self.monitor, codec=codec, spatial_layers=layers["spatialLayers"], temporal_layers=layers["temporalLayers"],
            ksvc=layers["ksvc"], preferred_layers=preferred_layers,
        )

    def send_rtp(self, t, ext_seq: int, keyframe: bool, now_ms: int, layer: int = 0, desc: tuple | None = None) -> None:
        """Forward (or not) one packet of the stream (``layer`` is ignored: one stream)."""
        if self._own_monitor:
            if desc is None and self._vp9:
                data = t.data
                try:
                    desc = parse_vp9_descriptor(data, t.payload_off, rtp_payload_end(data))
                except PacketParseError:
                    desc = None
            if desc is None:
                sid = tid = 0
            elif self._vp9:
                sid, tid = desc[12], desc[10]
            else:
                sid, tid = desc[4], desc[5]
            self.monitor.on_packet(sid if sid > 0 else 0, tid, len(t.data), now_ms)
        if not self.active:
            return
        self._forward(self.selector.process(t, ext_seq, keyframe, now_ms, desc, self._buf), t, now_ms)

    def on_padding(self, layer: int, ext_seq: int) -> None:
        """A padding-only packet (not forwarded): its seq is closed in the output."""
        if self.active and not self.selector._sync_required:
            self.selector.on_padding(ext_seq)

    def score_dict(self) -> dict:
        """mediasoup ``ConsumerScore`` of an SVC consumer (one producer stream): the producer
        score is the best of its spatial layers' (0 when none is active)."""
        scores = self.monitor.scores()
        return {"score": self.stats.score, "producerScore": max(scores), "producerScores": [max(scores)]}


def create_consumer(producer_type: str, **kwargs: Any) -> Consumer:
    """The consumer class for a producer of ``producer_type`` ("simple" | "simulcast" | "svc"),
    as mediasoup's transport picks it for a non-pipe consume. ``kwargs``: the class's keyword
    arguments (``preferred_layers``, ``layer_monitor`` and ``emit`` only for the layered ones).
    Raises ValueError for an unknown type."""
    if producer_type == "simulcast":
        return SimulcastConsumer(**kwargs)
    if producer_type == "svc":
        return SvcConsumer(**kwargs)
    if producer_type == "simple":
        for key in ("preferred_layers", "layer_monitor", "emit"):
            kwargs.pop(key, None)
        return Consumer(**kwargs)
    raise ValueError(f"producer_type must be 'simple', 'simulcast' or 'svc', got {producer_type!r}")


def create_layered_consumer(producer_type: str, **kwargs: Any) -> Consumer:
    """SimulcastConsumer or SvcConsumer for a producer of ``producer_type`` ("simulcast" |
    "svc"); ``kwargs`` as :class:`SimulcastConsumer`. ValueError for other types."""
    if producer_type not in ("simulcast", "svc"):
        raise ValueError(f"producer_type must be 'simulcast' or 'svc', got {producer_type!r}")
    return create_consumer(producer_type, **kwargs)


class MultiStreamPipeConsumer(Consumer):
    """mediasoup ``PipeConsumer`` of a simulcast/SVC producer: every encoding is forwarded as
    its own stream (``rtp_parameters.encodings[i].ssrc``), each with a continuous sequence
    number and its own SR, so the far router's producer sees the same encodings (and can align
    their timestamps). No retransmissions (a pipe has no NACK unless RTX is enabled, which this
    class does not support: a NACK names no stream). PLI/FIR from the far side asks the producer
    for keyframes of every encoding."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs, consumer_type="pipe")
        encs = self.rtp_parameters["encodings"]
        self.stream_ssrcs = [e["ssrc"] for e in encs]
        self.ssrcs = tuple(self.stream_ssrcs)
        self.nack_enabled = False
        self.rtx_ssrc = None
        self._seqs = [SeqRewriter() for _ in encs]
        self._sync = [True] * len(encs)
        self._stats = [
            SendStreamStats(ssrc, self.clock_rate, kind=self.kind, mime_type=self.mime_type) for ssrc in self.stream_ssrcs
        ]
        self.stats = self._stats[0]

    def _after_state_change(self, was_active: bool, now_ms: int) -> None:
        if self.active and not was_active:
            self._sync = [True] * len(self._sync)
            self.producer.request_key_frame(now_ms)

    def on_padding(self, layer: int, ext_seq: int) -> None:
        if 0 <= layer < len(self._seqs) and not self._sync[layer]:
            self._seqs[layer].drop(ext_seq)

    def send_rtp(self, t, ext_seq: int, keyframe: bool, now_ms: int, layer: int = 0, desc: tuple | None = None) -> None:
        """Forward one packet of encoding ``layer`` on that encoding's stream."""
        if self.paused or self.producer_paused or not 0 <= layer < len(self._seqs):
            return
        if self._sync[layer]:
            if self.is_video and not keyframe:
                return
            self._seqs[layer].sync(ext_seq)
            self._sync[layer] = False
        out_seq = self._seqs[layer].input(ext_seq)
        if out_seq is None:
            return
        transport = self.transport
        buf = transport.scratch
        data = t.data
        n = len(data)
        buf[:n] = data
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, t.timestamp, self.stream_ssrcs[layer])
        mid_off = t.mid_off
        if mid_off >= 0:
            if is_two_byte_template(data):
                buf[mid_off : mid_off + MID_SLOT2_LEN] = _mid_slot2(self.mid_slot)
            else:
                buf[mid_off : mid_off + MID_SLOT_LEN] = self.mid_slot
        allowed = self.allowed_ext_ids
        for ext_id, off, size in t.exts:
            if ext_id not in allowed:
                buf[off : off + size] = _ZEROS[size]
        self._stats[layer].on_packet(t.timestamp, n, now_ms)
        transport.send_scratch_rtp(n, -1)

    def receive_rr_block(self, block: tuple, now_ms: int) -> None:
        for st, ssrc in zip(self._stats, self.stream_ssrcs):
            if ssrc == block[0]:
                st.on_rr_block(block, now_ms)

    def build_rtcp_report(self, now_ms: int, unix_ms: int) -> bytes | None:
        """SR + SDES of every stream that has sent (RFC 3550 §6.4.1)."""
        out = b""
        for st, ssrc in zip(self._stats, self.stream_ssrcs):
            fields = st.build_sr(now_ms, unix_ms)
            if fields is not None:
                out += rtcp.build_sr(*fields) + rtcp.build_sdes([(ssrc, self.cname)])
        return out or None

    def get_stats(self, now_ms: int) -> list[dict]:
        return [st.to_stats(now_ms) for st in self._stats] + self.producer.get_stats(now_ms)
