"""Simulcast and SVC layer selection for one consumer (sans-I/O), after mediasoup's
``SimulcastConsumer`` and ``SvcConsumer`` (``worker/src/RTC/SimulcastConsumer.cpp``,
``SvcConsumer.cpp``).

- :class:`StreamJoiner`: maps packets of several input streams (a producer's simulcast
  encodings, each with its own SSRC, sequence numbers and RTP timestamp base) onto one output
  stream: sequence numbers continue across switches (one number is skipped when the last frame
  sent was incomplete, so the receiver drops it), timestamps of the new stream are aligned with
  the sender reports' NTP <-> RTP mappings (mediasoup since 3.0.2), or, without sender reports,
  continue from the last output timestamp plus the time elapsed (at least one frame).
- :class:`SimulcastSelector`: picks the target encoding from the preferred layers, the layers
  that are active (:class:`~raysfu.transport.layers.LayerMonitor`), a bandwidth limit, pause
  state; switches only on a keyframe of the target encoding and asks for that keyframe; filters
  VP8 temporal layers and rewrites picture id / TL0PICIDX (:class:`~raysfu.transport.codecs.vp8.
  VP8Rewriter`), or temporal layers of streams with the dependency descriptor (H264, AV1).
- :class:`SvcSelector`: one stream with spatial and temporal layers: VP9 (full SVC and K-SVC,
  :class:`~raysfu.transport.codecs.vp9.VP9LayerFilter`) or the dependency descriptor
  (:class:`~raysfu.transport.layers.DDLayerFilter`, AV1); drops the other layers' packets from
  the sequence space and sets the marker on the last packet of the top forwarded layer.

Both selectors take the producer's per-packet *template* (duck type: ``data`` bytes of the whole
RTP packet, ``timestamp``, ``payload_off``, ``marker``; see ``raysfu.transport.rtp_template``)
and a writable buffer (``bytearray`` or ``memoryview``, e.g. the transport's preallocated send
buffer, at least ``len(t.data)`` bytes); they copy a packet to forward into it with its payload
rewritten and return its length (0: not forwarded, the buffer's content is then undefined). The
output sequence number and timestamp are left in ``out_seq`` / ``out_ts`` for the caller to
write with the SSRC. Outputs are pulled: ``key_frame_requests`` (spatial layers / encoding
indices that need a keyframe), ``layers_changed`` (set when the current layers change: emit
mediasoup's ``layerschange`` with :attr:`current_layers` and clear it), ``drops`` (reason ->
count).
"""

from __future__ import annotations

import random

from raysfu.transport.codecs.vp8 import VP8Rewriter, parse_vp8_descriptor
from raysfu.transport.codecs.vp9 import VP9LayerFilter, parse_vp9_descriptor
from raysfu.transport.errors import PacketParseError
from raysfu.transport.layers import MATURE, DDLayerFilter, LayerMonitor, ntp_diff_ticks
from raysfu.transport.seq import SeqRewriter

__all__ = [
    "KEY_FRAME_RETRY_MS",
    "SWITCH_OK",
    "SWITCH_RETRY",
    "StreamJoiner",
    "SimulcastSelector",
    "SvcSelector",
    "clamp_preferred_layers",
    "rtp_payload_end",
]

#: While a switch waits for a keyframe, ask again this often (a PLI may be lost; the producer's
#: KeyFrameRequestManager retries only when asked again during its 1 s wait).
KEY_FRAME_RETRY_MS = 1000

SWITCH_OK = 0
#: The switch keyframe would need too large a timestamp shift: drop it and ask for another.
SWITCH_RETRY = 1

_M32 = 0xFFFFFFFF


def _random_initial_seq() -> int:
    # mediasoup starts between 1000 and 32767 (libsrtp issue versatica/mediasoup#1437).
    return random.randint(1000, 0x7FFF)


def rtp_payload_end(data: bytes | bytearray) -> int:
    """End of the RTP payload of ``data`` (before any RTP padding, RFC 3550 §5.1)."""
    n = len(data)
    if data[0] & 0x20 and n:
        return n - data[-1]
    return n


def clamp_preferred_layers(
    layers: dict | None, spatial_layers: int, temporal_layers: int
) -> tuple[int, int]:
    """``{"spatialLayer": s, "temporalLayer"?: t}`` -> ``(s, t)`` clamped to the stream's layers
    (mediasoup: a layer above the top is the top, a missing temporal layer is the top one;
    None: the top layers). Raises TypeError when the values are not ints >= 0."""
    if layers is None:
        return spatial_layers - 1, temporal_layers - 1
    if not isinstance(layers, dict):
        raise TypeError(f"preferred_layers must be a dict, got {layers!r}")
    s = layers.get("spatialLayer")
    if not isinstance(s, int) or isinstance(s, bool) or s < 0:
        raise TypeError(f"preferred_layers.spatialLayer must be an int >= 0, got {s!r}")
    t = layers.get("temporalLayer")
    if t is None:
        t = temporal_layers - 1
    elif not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise TypeError(f"preferred_layers.temporalLayer must be an int >= 0, got {t!r}")
    return min(s, spatial_layers - 1), min(t, temporal_layers - 1)


def _recalculate_targets(
    monitor: LayerMonitor,
    spatial_layers: int,
    preferred_s: int,
    preferred_t: int,
    temporal_layers: int,
    limit_s: int | None,
    limit_t: int | None,
) -> tuple[int, int]:
    """mediasoup ``RecalculateTargetLayers``: the lowest usable layer, then up to the preferred
    one, skipping layers that came back less than ``min_active_ms`` ago while a lower one is
    usable, and layers above the bandwidth limit (the lowest usable layer is always kept).
    Temporal: the preferred one at the preferred spatial layer, the top one below it, 0 above;
    capped by the limit at the limited spatial layer."""
    new_s = -1
    state = monitor.state
    for s in range(spatial_layers):
        if not monitor.is_usable(s):
            continue
        if new_s != -1:
            if state[s] != MATURE:  # YOUNG: came back recently while a lower layer is usable
                continue
            if limit_s is not None and s > limit_s:
                break
        new_s = s
        if s >= preferred_s:
            break
    if new_s == -1:
        return -1, -1
    if new_s == preferred_s:
        new_t = preferred_t
    elif new_s < preferred_s:
        new_t = temporal_layers - 1
    else:
        new_t = 0
    if limit_s is not None and limit_t is not None and new_s >= limit_s and new_t > limit_t:
        new_t = max(limit_t, 0)
    return new_s, new_t


class StreamJoiner:
    """Output sequence number and RTP timestamp of one consumer stream fed from several input
    streams (mediasoup ``SimulcastConsumer`` seq/ts handling).

    Inputs are *extended* sequence numbers of each input stream (their spaces are unrelated)
    and 32-bit RTP timestamps. ``switch`` re-bases on the first packet (a keyframe) of a stream;
    ``map`` gives a forwarded packet its output seq (0..65535, -1 = do not send) and sets
    ``out_ts``; ``drop`` closes the gap of a packet not forwarded.

    Timestamps at a switch from stream P to stream N (``ts_offset``: output = input - offset):

    - nothing sent yet: offset 0; same stream again (resume): offset kept;
    - both streams have a sender report: N's timestamps are put on P's timeline through the two
      NTP <-> RTP pairs (``ntp_diff_ticks``), then through P's offset; if that lands at or before
      the highest timestamp sent, it is moved to one frame (``frame_ms``) after it, but when the
      move exceeds ``max_extra_offset_ms`` (75 ms, mediasoup) the first time, ``switch`` returns
      :data:`SWITCH_RETRY`: drop this keyframe and request a fresh one (the second time the move
      is applied anyway: the output never goes back in time);
    - otherwise: the highest timestamp sent plus the time elapsed since it was sent, at least one
      frame.

    Sequence numbers: the first packet of the new stream follows the last sent one, or skips one
    number when the last sent packet had no marker (its frame is incomplete: the receiver sees
    a loss and drops that frame instead of decoding garbage; mediasoup issue #408). Packets of
    the new stream older than its switch packet are refused.
    """

    __slots__ = (
        "clock_rate",
        "frame_ticks",
        "max_extra_ticks",
        "layer",
        "ts_offset",
        "floor",
        "out_ts",
        "switches",
        "_seq",
        "_sent",
        "_max_ts",
        "_max_ts_ms",
        "_last_marker",
        "_retry_requested",
    )

    def __init__(
        self,
        clock_rate: int,
        *,
        initial_seq: int | None = None,
        frame_ms: int = 33,
        max_extra_offset_ms: int = 75,
    ) -> None:
        if not isinstance(clock_rate, int) or clock_rate <= 0:
            raise ValueError(f"clock_rate must be a positive int (Hz), got {clock_rate!r}")
        if frame_ms <= 0 or max_extra_offset_ms < 0:
            raise ValueError(f"frame_ms must be > 0 and max_extra_offset_ms >= 0, got {frame_ms!r}, {max_extra_offset_ms!r}")
        self.clock_rate = clock_rate
        self.frame_ticks = max(1, frame_ms * clock_rate // 1000)
        self.max_extra_ticks = max_extra_offset_ms * clock_rate // 1000
        self.layer = -1
        self.ts_offset = 0
        self.floor = -1
        self.out_ts = 0
        self.switches = 0
        self._seq = SeqRewriter(_random_initial_seq() if initial_seq is None else initial_seq)
        self._sent = False
        self._max_ts = 0
        self._max_ts_ms = 0
        self._last_marker = True
        self._retry_requested = False

    @property
    def max_output_seq(self) -> int:
        """The highest output seq handed out (initial - 1 before the first packet)."""
        return self._seq.max_output

    @property
    def max_ts(self) -> int | None:
        """The highest output timestamp sent, None before the first packet."""
        return self._max_ts if self._sent else None

    def switch(
        self,
        layer: int,
        ext_seq: int,
        ts: int,
        now_ms: int,
        prev_sr: tuple | None = None,
        new_sr: tuple | None = None,
    ) -> int:
        """Re-base on packet (``ext_seq``, ``ts``), the first to forward from input ``layer``.

        ``prev_sr`` / ``new_sr``: ``(ntp64, rtp_ts)`` of the latest sender reports of the stream
        forwarded so far (``self.layer``) and of ``layer`` (``LayerMonitor.sender_report``).
        Returns :data:`SWITCH_OK` (state changed: forward the packet through :meth:`map`) or
        :data:`SWITCH_RETRY` (nothing changed: drop the packet, request a keyframe).
        """
        offset = self.ts_offset
        if self._sent and layer != self.layer:
            if prev_sr is not None and new_sr is not None and self.layer >= 0:
                ntp_p, ts_p = prev_sr
                ntp_n, ts_n = new_sr
                # Timestamp N had at P's SR instant, minus P's timestamp then: N -> P timeline.
                shift = ts_n - ntp_diff_ticks(ntp_n, ntp_p, self.clock_rate) - ts_p
                offset = (shift + self.ts_offset) & _M32
                out = (ts - offset) & _M32
                behind = ((self._max_ts - out + 0x80000000) & _M32) - 0x80000000
                if behind >= 0:
                    extra = behind + self.frame_ticks
                    if extra > self.max_extra_ticks and not self._retry_requested:
                        self._retry_requested = True
                        return SWITCH_RETRY
                    offset = (offset - extra) & _M32
            else:
                elapsed = (now_ms - self._max_ts_ms) * self.clock_rate // 1000
                if elapsed < self.frame_ticks:
                    elapsed = self.frame_ticks
                offset = (ts - self._max_ts - elapsed) & _M32
        elif self._sent:
            out = (ts - offset) & _M32
            behind = ((self._max_ts - out + 0x80000000) & _M32) - 0x80000000
            if behind >= 0:
                offset = (offset - behind - self.frame_ticks) & _M32
        self._retry_requested = False
        self.ts_offset = offset
        self.layer = layer
        self.floor = ext_seq
        self.switches += 1
        self._seq.sync(ext_seq if self._last_marker else ext_seq - 1)
        return SWITCH_OK

    def map(self, ext_seq: int, ts: int, marker: bool, now_ms: int) -> int:
        """Output seq (0..65535) of a forwarded packet of the current input, or -1 when it must
        not be sent (older than the switch, dropped earlier, or too old). Sets ``out_ts``."""
        if ext_seq < self.floor:
            return -1
        seq_rw = self._seq
        out = seq_rw.input(ext_seq)
        if out is None:
            return -1
        out_ts = (ts - self.ts_offset) & _M32
        self.out_ts = out_ts
        if out == seq_rw.max_output:
            self._last_marker = bool(marker)
        if not self._sent:
            self._sent = True
            self._max_ts = out_ts
            self._max_ts_ms = now_ms
        elif 0 < ((out_ts - self._max_ts) & _M32) < 0x80000000:
            self._max_ts = out_ts
            self._max_ts_ms = now_ms
        return out

    def drop(self, ext_seq: int) -> None:
        """Packet ``ext_seq`` of the current input is not forwarded: later ones close the gap."""
        self._seq.drop(ext_seq)


class _SelectorBase:
    """What the two selectors share: preferred / target / limit layers, pause state, outputs."""

    __slots__ = ()

    def _init_common(
        self,
        monitor: LayerMonitor,
        spatial_layers: int,
        temporal_layers: int,
        preferred_layers: dict | None,
    ) -> None:
        if not isinstance(monitor, LayerMonitor):
            raise TypeError(f"monitor must be a LayerMonitor, got {type(monitor).__name__}")
        if not isinstance(spatial_layers, int) or not 1 <= spatial_layers <= monitor.spatial_layers:
            raise ValueError(f"spatial_layers must be 1..{monitor.spatial_layers}, got {spatial_layers!r}")
        if not isinstance(temporal_layers, int) or not 1 <= temporal_layers <= 16:
            raise ValueError(f"temporal_layers must be 1..16, got {temporal_layers!r}")
        self.monitor = monitor
        self.spatial_layers = spatial_layers
        self.temporal_layers = temporal_layers
        self.preferred_spatial_layer, self.preferred_temporal_layer = clamp_preferred_layers(
            preferred_layers, spatial_layers, temporal_layers
        )
        self.target_spatial_layer = -1
        self.target_temporal_layer = -1
        self.limit_spatial_layer: int | None = None
        self.limit_temporal_layer: int | None = None
        self.active = True
        self.key_frame_requests: list[int] = []
        self.layers_changed = False
        self.drops: dict[str, int] = {}
        self.out_seq = 0
        self.out_ts = 0
        self._mon_version = -1
        self._pending_since_ms = -1

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    @property
    def preferred_layers(self) -> dict:
        """mediasoup ``consumer.preferredLayers``: ``{"spatialLayer", "temporalLayer"}``."""
        return {"spatialLayer": self.preferred_spatial_layer, "temporalLayer": self.preferred_temporal_layer}

    @property
    def current_layers(self) -> dict | None:
        """mediasoup ``consumer.currentLayers``: ``{"spatialLayer", "temporalLayer"}`` or None
        when nothing is forwarded."""
        s = self.current_spatial_layer
        if s < 0:
            return None
        return {"spatialLayer": s, "temporalLayer": max(self.current_temporal_layer, 0)}

    def take_key_frame_requests(self) -> list[int]:
        """The spatial layers (encoding indices) to request a keyframe of, since the last call."""
        out = self.key_frame_requests
        self.key_frame_requests = []
        return out

    def set_preferred_layers(self, layers: dict, now_ms: int) -> dict:
        """mediasoup ``setPreferredLayers``: clamp, store, re-evaluate the targets (a keyframe is
        requested when the target spatial layer changes). Returns the preferred layers."""
        self.preferred_spatial_layer, self.preferred_temporal_layer = clamp_preferred_layers(
            layers, self.spatial_layers, self.temporal_layers
        )
        self.recalculate(now_ms)
        return self.preferred_layers

    def set_layer_limit(self, spatial_layer: int | None, temporal_layer: int | None, now_ms: int) -> None:
        """Upper bound from bandwidth allocation (None: no limit). The lowest usable layer is kept
        even when it exceeds the limit (mediasoup keeps one layer; BWE pauses nothing)."""
        self.limit_spatial_layer = spatial_layer
        self.limit_temporal_layer = temporal_layer
        self.recalculate(now_ms)

    def pause(self) -> None:
        """Consumer paused (or producer paused, transport gone): forward nothing (targets -1)."""
        self.active = False
        self.recalculate(0)

    def resume(self, now_ms: int) -> None:
        """Active again: targets re-evaluated; forwarding restarts at a keyframe (requested)."""
        self.active = True
        self.recalculate(now_ms)

    def update(self, now_ms: int) -> bool:
        """Timer: apply time to the monitor and re-evaluate when something changed (a layer that
        stopped while no packet at all arrives); repeat the keyframe request of a switch that
        has waited :data:`KEY_FRAME_RETRY_MS`. True when the targets changed."""
        self.monitor.update(now_ms)
        changed = False
        if self.monitor.version != self._mon_version:
            changed = self.recalculate(now_ms)
        layer = self._waiting_key_frame_of()
        if layer < 0:
            self._pending_since_ms = -1
        elif self._pending_since_ms < 0:
            self._pending_since_ms = now_ms
        elif now_ms - self._pending_since_ms >= KEY_FRAME_RETRY_MS:
            self._pending_since_ms = now_ms
            self.key_frame_requests.append(layer)
        return changed

    def recalculate(self, now_ms: int) -> bool:
        """Re-evaluate the target layers now; True when they changed."""
        self._mon_version = self.monitor.version
        if self.active:
            s, t = _recalculate_targets(
                self.monitor, self.spatial_layers, self.preferred_spatial_layer,
                self.preferred_temporal_layer, self.temporal_layers, self.limit_spatial_layer,
                self.limit_temporal_layer,
            )
        else:
            s = t = -1
        if s == self.target_spatial_layer and t == self.target_temporal_layer:
            return False
        self._set_targets(s, t)
        return True


class SimulcastSelector(_SelectorBase):
    """Per-consumer simulcast engine: target/current layers, switching, seq/ts/payload rewrite.

    ``monitor``: the producer's :class:`LayerMonitor` (one spatial layer per encoding, in
    encoding order: lowest resolution first, as mediasoup). ``codec``: "vp8" (picture id /
    TL0PICIDX rewritten, temporal layers from the VP8 descriptor), "h264", "av1", ... (temporal
    layers from a dependency descriptor when the producer passes one, else none filtered).
    ``temporal_layers``: per encoding (``scalabilityMode`` ``LxTy``). ``preferred_layers``:
    mediasoup's ``{"spatialLayer", "temporalLayer"?}`` (default: the top ones).

    Per packet of any encoding: ``process(t, layer, ext_seq, keyframe, now_ms, desc, buf)`` ->
    length of this consumer's copy written into ``buf``, 0 when not forwarded; ``out_seq`` /
    ``out_ts`` then hold what to write.
    ``desc``: the shared parse of the packet (VP8: ``parse_vp8_descriptor`` tuple, parsed here
    when None; others: a ``parse_dependency_descriptor`` tuple or None).

    Rules (mediasoup ``SimulcastConsumer::SendRtpPacket``): packets of encodings other than the
    current one are skipped, except a keyframe of the target encoding, which switches (seq/ts
    re-based by :class:`StreamJoiner`, temporal state synced, ``layers_changed``); before the
    first switch nothing is forwarded. The target follows :func:`_recalculate_targets` whenever
    the monitor's ``version`` moves (a layer stops: the next one down; comes back: taken again
    once mature), the preferred layers, the limit or the pause state change; a new target
    encoding gets a keyframe request (``key_frame_requests``). Temporal target changes within
    the current encoding apply at once (VP8: up at the next layer-sync frame).
    """

    __slots__ = (
        "monitor", "spatial_layers", "temporal_layers", "preferred_spatial_layer",
        "preferred_temporal_layer", "target_spatial_layer", "target_temporal_layer",
        "limit_spatial_layer", "limit_temporal_layer", "active", "key_frame_requests",
        "layers_changed", "drops", "out_seq", "out_ts", "_mon_version", "_pending_since_ms",
        "codec", "current_spatial_layer", "skipped", "joiner", "vp8", "dd",
    )

    def __init__(
        self,
        monitor: LayerMonitor,
        *,
        clock_rate: int,
        codec: str = "vp8",
        spatial_layers: int | None = None,
        temporal_layers: int = 1,
        preferred_layers: dict | None = None,
        initial_seq: int | None = None,
        frame_ms: int = 33,
    ) -> None:
        if spatial_layers is None:
            spatial_layers = monitor.spatial_layers if isinstance(monitor, LayerMonitor) else 1
        self._init_common(monitor, spatial_layers, temporal_layers, preferred_layers)
        self.codec = codec.rsplit("/", 1)[-1].lower()
        self.current_spatial_layer = -1
        self.skipped = 0  # packets of other encodings (the usual case, not a drop)
        self.joiner = StreamJoiner(clock_rate, initial_seq=initial_seq, frame_ms=frame_ms)
        self.vp8: VP8Rewriter | None = None
        self.dd: DDLayerFilter | None = None
        if self.codec == "vp8":
            self.vp8 = VP8Rewriter(target_temporal_layer=min(temporal_layers - 1, 3), current_temporal_layer=-1)
            self.vp8.target_temporal_layer = -1
        elif temporal_layers > 1:
            self.dd = DDLayerFilter(-1, -1)

    @property
    def current_temporal_layer(self) -> int:
        """Temporal layer forwarded now (-1 when nothing)."""
        if self.current_spatial_layer < 0:
            return -1
        if self.vp8 is not None:
            return self.vp8.current_temporal_layer
        if self.dd is not None and self.dd.current_temporal_layer >= 0:
            return self.dd.current_temporal_layer
        return self.temporal_layers - 1

    def _set_targets(self, s: int, t: int) -> None:
        self.target_spatial_layer = s
        self.target_temporal_layer = t
        if s < 0:
            if self.current_spatial_layer >= 0:
                self.current_spatial_layer = -1
                self.layers_changed = True
            if self.vp8 is not None:
                self.vp8.target_temporal_layer = -1
            return
        if s == self.current_spatial_layer:
            if self.vp8 is not None:
                self.vp8.target_temporal_layer = min(t, 3)
            elif self.dd is not None:
                self.dd.target_temporal_layer = t
        else:
            self.key_frame_requests.append(s)

    def _waiting_key_frame_of(self) -> int:
        """The encoding whose keyframe a pending switch waits for, -1 when none."""
        s = self.target_spatial_layer
        return s if s >= 0 and s != self.current_spatial_layer else -1

    def request_key_frame(self) -> None:
        """A keyframe is wanted (PLI/FIR from the remote, or the API): ask for the current
        encoding's, and the target's when a switch is pending (mediasoup ``RequestKeyFrames``)."""
        if self.target_spatial_layer >= 0:
            self.key_frame_requests.append(self.target_spatial_layer)
        cur = self.current_spatial_layer
        if cur >= 0 and cur != self.target_spatial_layer:
            self.key_frame_requests.append(cur)

    def on_padding(self, layer: int, ext_seq: int) -> None:
        """A padding-only packet of ``layer``: not forwarded, its seq closed in the output."""
        if layer == self.current_spatial_layer:
            self.joiner.drop(ext_seq)

    def process(self, t, layer: int, ext_seq: int, keyframe: bool, now_ms: int, desc: tuple | None, buf) -> int:
        """Decide, switch and rewrite for one packet of encoding ``layer``; see the class
        docstring. Returns the length of the copy written into ``buf`` (payload rewritten; seq,
        ts and SSRC still the template's: write ``out_seq`` / ``out_ts``), 0 when not sent."""
        if self.monitor.version != self._mon_version:
            self.recalculate(now_ms)
        if layer != self.current_spatial_layer:
            if layer != self.target_spatial_layer:
                self.skipped += 1
                return 0
            if not keyframe:
                self._drop("waiting_keyframe")
                return 0
            return self._switch(t, layer, ext_seq, now_ms, desc, buf)
        if ext_seq < self.joiner.floor:
            self._drop("before_switch")
            return 0
        return self._forward(t, ext_seq, now_ms, desc, buf)

    def _switch(self, t, layer: int, ext_seq: int, now_ms: int, desc: tuple | None, buf) -> int:
        joiner = self.joiner
        prev = joiner.layer
        mon = self.monitor
        r = joiner.switch(
            layer, ext_seq, t.timestamp, now_ms,
            mon.sender_report(prev) if prev >= 0 else None, mon.sender_report(layer),
        )
        if r != SWITCH_OK:
            self._drop("switch_timestamp_retry")
            self.key_frame_requests.append(layer)
            return 0
        self.current_spatial_layer = layer
        vp8 = self.vp8
        if vp8 is not None:
            tid = 0
            if desc is None:
                desc = self._parse_vp8(t)
            if desc is not None and desc[7] > 0:
                tid = desc[7]
            vp8.sync(current_temporal_layer=tid)
            vp8.target_temporal_layer = min(self.target_temporal_layer, 3)
        elif self.dd is not None:
            self.dd.sync()
            self.dd.target_spatial_layer = 0
            self.dd.target_temporal_layer = self.target_temporal_layer
        self.layers_changed = True
        return self._forward(t, ext_seq, now_ms, desc, buf)

    def _parse_vp8(self, t) -> tuple | None:
        data = t.data
        try:
            return parse_vp8_descriptor(data, t.payload_off, rtp_payload_end(data))
        except PacketParseError:
            return None

    def _forward(self, t, ext_seq: int, now_ms: int, desc: tuple | None, buf) -> int:
        joiner = self.joiner
        data = t.data
        n = len(data)
        vp8 = self.vp8
        if vp8 is not None:
            if desc is None:
                desc = self._parse_vp8(t)
                if desc is None:
                    self._drop("malformed_payload")
                    joiner.drop(ext_seq)
                    return 0
            before = vp8.current_temporal_layer
            buf[:n] = data
            if not vp8.process(buf, t.payload_off, desc):
                joiner.drop(ext_seq)
                self._drop("temporal_layer")
                return 0
            if vp8.current_temporal_layer != before:
                self.layers_changed = True
        elif self.dd is not None and desc is not None:
            dd = self.dd
            before = dd.current_temporal_layer
            forward = dd.process(desc)[0]
            if dd.current_temporal_layer != before:
                self.layers_changed = True
            if not forward:
                joiner.drop(ext_seq)
                self._drop("temporal_layer")
                return 0
        seq = joiner.map(ext_seq, t.timestamp, t.marker, now_ms)
        if seq < 0:
            self._drop("old_seq")
            return 0
        if vp8 is None:
            buf[:n] = data
        self.out_seq = seq
        self.out_ts = joiner.out_ts
        return n


class SvcSelector(_SelectorBase):
    """Per-consumer SVC engine over one stream with spatial and temporal layers (mediasoup
    ``SvcConsumer``): VP9 (``codec`` "vp9", full SVC or K-SVC with ``ksvc``) or any codec with
    the dependency descriptor (``codec`` "av1", ...).

    ``monitor``: the producer's :class:`LayerMonitor` fed with each packet's *spatial* layer
    (so a spatial layer the encoder stops sending is left, as mediasoup does from its per-layer
    bitrate). Per packet: ``process(t, ext_seq, keyframe, now_ms, desc, buf)`` -> length of the
    copy written into ``buf``, 0 when not forwarded;
    ``desc``: VP9 ``parse_vp9_descriptor`` tuple (parsed here when None) or a
    ``parse_dependency_descriptor`` tuple (required for DD codecs: packets without one are
    dropped). Forwarding starts (and restarts after a pause) at a keyframe; packets of other
    layers are dropped from the sequence space; the RTP marker is set on the last packet of the
    top forwarded spatial layer; timestamps are unchanged (``out_ts`` = input). A target above
    the current spatial layer (or any spatial change in K-SVC) gets a keyframe request
    (layer 0 in ``key_frame_requests``: the stream).
    """

    __slots__ = (
        "monitor", "spatial_layers", "temporal_layers", "preferred_spatial_layer",
        "preferred_temporal_layer", "target_spatial_layer", "target_temporal_layer",
        "limit_spatial_layer", "limit_temporal_layer", "active", "key_frame_requests",
        "layers_changed", "drops", "out_seq", "out_ts", "_mon_version", "_pending_since_ms",
        "codec", "ksvc", "filter", "seq", "out_marker", "_sync_required", "_is_vp9",
        "_pending_spatial",
    )

    def __init__(
        self,
        monitor: LayerMonitor,
        *,
        codec: str = "vp9",
        spatial_layers: int | None = None,
        temporal_layers: int = 1,
        ksvc: bool = False,
        preferred_layers: dict | None = None,
        initial_seq: int | None = None,
    ) -> None:
        if spatial_layers is None:
            spatial_layers = monitor.spatial_layers if isinstance(monitor, LayerMonitor) else 1
        self._init_common(monitor, spatial_layers, temporal_layers, preferred_layers)
        self.codec = codec.rsplit("/", 1)[-1].lower()
        self.ksvc = bool(ksvc)
        self._is_vp9 = self.codec == "vp9"
        if self._is_vp9:
            self.filter = VP9LayerFilter(spatial_layers, temporal_layers, ksvc)
            self.filter.target_spatial_layer = -1
            self.filter.target_temporal_layer = -1
        else:
            self.filter = DDLayerFilter(-1, -1)
        self.seq = SeqRewriter(_random_initial_seq() if initial_seq is None else initial_seq)
        self.out_marker = False
        self._sync_required = True
        self._pending_spatial = -1

    @property
    def current_spatial_layer(self) -> int:
        """Spatial layer forwarded now (-1 when nothing)."""
        if self.target_spatial_layer < 0:
            return -1
        return self.filter.current_spatial_layer

    @property
    def current_temporal_layer(self) -> int:
        """Temporal layer forwarded now (-1 when nothing)."""
        if self.target_spatial_layer < 0:
            return -1
        return self.filter.current_temporal_layer

    def _set_targets(self, s: int, t: int) -> None:
        cur = self.current_spatial_layer
        self.target_spatial_layer = s
        self.target_temporal_layer = t
        f = self.filter
        f.target_spatial_layer = s
        f.target_temporal_layer = t
        self._pending_spatial = -1
        if self._is_vp9 and not self.ksvc and 0 <= s < cur and not self._sync_required:
            # VP9 full SVC down-switch: applied at the next TL0 picture (VP9LayerFilter restarts
            # at temporal layer 0 there and would otherwise drop the target layer's frame of a
            # higher temporal layer while still forwarding the layer above it).
            f.target_spatial_layer = cur
            self._pending_spatial = s
        if s < 0:
            self._sync_required = True
            if cur >= 0:
                self.layers_changed = True
            return
        if self._sync_required or s > cur or (self.ksvc and s != cur):
            self.key_frame_requests.append(0)

    def _waiting_key_frame_of(self) -> int:
        """0 while forwarding waits for a keyframe (start, resume, spatial up-switch), else -1."""
        s = self.target_spatial_layer
        if s < 0:
            return -1
        cur = self.filter.current_spatial_layer
        if self._sync_required or s > cur or (self.ksvc and s != cur):
            return 0
        return -1

    def request_key_frame(self) -> None:
        """A keyframe is wanted (PLI/FIR from the remote, or the API)."""
        if self.target_spatial_layer >= 0:
            self.key_frame_requests.append(0)

    def on_padding(self, ext_seq: int) -> None:
        """A padding-only packet: not forwarded, its seq closed in the output."""
        self.seq.drop(ext_seq)

    def resume(self, now_ms: int) -> None:
        """Active again: forwarding restarts at a keyframe (requested)."""
        self._sync_required = True
        super().resume(now_ms)

    def process(self, t, ext_seq: int, keyframe: bool, now_ms: int, desc: tuple | None, buf) -> int:
        """Decide and rewrite for one packet; see the class docstring. Returns the length of the
        copy written into ``buf`` (marker set when needed; seq and SSRC still the template's:
        write ``out_seq``), 0 when not forwarded."""
        if self.monitor.version != self._mon_version:
            self.recalculate(now_ms)
        if self.target_spatial_layer < 0:
            self._drop("no_target_layer")
            return 0
        if desc is None:
            if not self._is_vp9:
                self._drop("no_dependency_descriptor")
                self.seq.drop(ext_seq)
                return 0
            data = t.data
            try:
                desc = parse_vp9_descriptor(data, t.payload_off, rtp_payload_end(data))
            except PacketParseError:
                self._drop("malformed_payload")
                self.seq.drop(ext_seq)
                return 0
        if self._sync_required:
            if not keyframe:
                self._drop("waiting_keyframe")
                return 0
            self.seq.sync(ext_seq)
            f = self.filter
            if self._is_vp9:
                f.sync()
                f.current_spatial_layer = f.current_temporal_layer = -1
            else:
                f.sync()
            self._sync_required = False
        f = self.filter
        before_s = f.current_spatial_layer
        before_t = f.current_temporal_layer
        if self._is_vp9:
            if self._pending_spatial >= 0 and desc[10] <= 0 and desc[12] <= 0 and desc[4]:
                f.target_spatial_layer = self._pending_spatial
                self._pending_spatial = -1
            forward, marker = f.process(desc)
        else:
            forward, marker = f.process(desc, keyframe)
        if f.current_spatial_layer != before_s or f.current_temporal_layer != before_t:
            self.layers_changed = True
        if not forward:
            self.seq.drop(ext_seq)
            self._drop("layer")
            return 0
        out = self.seq.input(ext_seq)
        if out is None:
            self._drop("old_seq")
            return 0
        data = t.data
        n = len(data)
        buf[:n] = data
        if marker:
            buf[1] |= 0x80
        self.out_seq = out
        self.out_ts = t.timestamp
        self.out_marker = marker
        return n
