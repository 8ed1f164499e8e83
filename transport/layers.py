"""Per-producer layer bookkeeping and layer reading for simulcast and SVC consumers.

- :class:`LayerMonitor`: one per producer. Tracks, for every spatial layer (a simulcast
  encoding, or an SVC spatial layer inside one stream), whether packets arrive (activity with a
  fake clock), since when (mediasoup ``RtpStream::activeSinceMs``, ``StreamMinActiveMs``), its
  0..10 score, its latest sender report (NTP <-> RTP mapping, for timestamp alignment across
  simulcast streams) and its bitrate per temporal layer (mediasoup ``bitrateByLayer``). Every
  change of what a consumer may select bumps ``version``, so each consumer re-evaluates its target
  layers with one integer comparison per packet.
- :class:`PacketLayerReader`: one per received stream. Reads a packet's spatial/temporal layer
  once (VP8/VP9 payload descriptor, or the dependency descriptor extension for AV1, H264 and
  whatever else carries it) and hands the parsed descriptor to every consumer.
- :class:`DependencyDescriptorTracker`: one per received stream with the dependency descriptor;
  keeps the template structure and active decode targets between packets.
- :class:`LongExtTemplateBuilder`: the producer's per-packet template in the RFC 8285
  two-byte form when an extension it forwards is longer than 16 bytes (the dependency
  descriptor of a keyframe carries its template structure: 20-70 bytes), so the descriptor
  reaches consumers whole.
- :class:`DDLayerFilter`: per consumer, forwards only the frames of one decode target of a
  dependency-descriptor stream (AV1 SVC; temporal layers of H264/AV1 simulcast streams), switching
  targets at frame boundaries where the descriptor says it is safe (switch indications, frame
  references, chains: AV1 RTP specification Appendix A).

Sans-I/O: time is ``now_ms`` (monotonic ms) passed in.
"""

from __future__ import annotations

from raysfu.transport.codecs.av1_dd import (
    DTI_NOT_PRESENT,
    DTI_SWITCH,
    DependencyStructure,
    parse_dependency_descriptor,
)
from raysfu.transport.codecs.vp8 import parse_vp8_descriptor
from raysfu.transport.codecs.vp9 import parse_vp9_descriptor
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import iter_extensions
from raysfu.transport.rtp_stream import RateCalculator
from raysfu.transport.rtp_template import MID_SLOT_LEN, Template, TemplateBuilder

__all__ = [
    "INACTIVE",
    "YOUNG",
    "MATURE",
    "LayerMonitor",
    "DependencyDescriptorTracker",
    "PacketLayerReader",
    "DDLayerFilter",
    "LongExtTemplateBuilder",
    "MID_SLOT2_LEN",
    "TWCC_SLOT2_LEN",
    "is_two_byte_template",
    "ntp_diff_ticks",
    "STREAM_INACTIVE_MS",
    "STREAM_MIN_ACTIVE_MS",
]

#: No packet for this long: the layer is inactive (mediasoup RtpStreamRecv inactivity check).
STREAM_INACTIVE_MS = 1500
#: A layer that came back must stay active this long before it is taken over a lower active one
#: (mediasoup SimulcastConsumer ``StreamMinActiveMs``).
STREAM_MIN_ACTIVE_MS = 2000

#: Layer states: never seen / stopped; active for less than ``min_active_ms`` after coming back;
#: active (or active since its first packet).
INACTIVE, YOUNG, MATURE = 0, 1, 2

_U64 = 1 << 64
_I63 = 1 << 63


class LayerMonitor:
    """Activity, score, sender report and bitrate of each spatial layer of one producer.

    ``spatial_layers``: simulcast encodings (or SVC spatial layers), ``temporal_layers``: temporal
    layers per spatial layer (bitrates are kept per (spatial, temporal) pair).

    Activity: the first packet of a layer makes it MATURE at once; no packet for
    ``inactive_after_ms`` makes it INACTIVE (checked at most every ``check_interval_ms``, from
    :meth:`on_packet` or :meth:`update`); a packet after that makes it YOUNG, and it becomes
    MATURE ``min_active_ms`` later (mediasoup's 2 s, applied to layers that come back; mediasoup
    applies it also to a stream's first seconds when BWE manages the layers: here a new
    producer's layers are usable at once).

    Feed (producer side, per packet / per RTCP):

    - ``on_packet(spatial, temporal, size_bytes, now_ms)``: hot path, O(1) (plus the periodic
      O(layers) check);
    - ``on_sr(spatial, ntp_sec, ntp_frac, rtp_ts)``: a sender report of that layer's stream;
    - ``set_score(spatial, score)``: the stream's 0..10 score (``RecvStreamStats.score``);
    - ``update(now_ms)``: from a timer when packets may have stopped altogether.

    Read: ``version`` (bumped when a layer changes state, or its score goes to/from 0),
    ``state``/``is_active``/``is_usable``/``active_ms``, ``score``/``scores``,
    ``sender_report``, ``bitrate_bps``/``layer_bitrate_bps``.
    Raises ValueError for layer counts outside 1..16 or non-positive times.
    """

    __slots__ = (
        "spatial_layers",
        "temporal_layers",
        "inactive_after_ms",
        "min_active_ms",
        "check_interval_ms",
        "version",
        "next_check_ms",
        "state",
        "last_packet_ms",
        "active_since_ms",
        "_seen",
        "_scores",
        "_srs",
        "_rates",
    )

    def __init__(
        self,
        spatial_layers: int,
        temporal_layers: int = 1,
        *,
        inactive_after_ms: int = STREAM_INACTIVE_MS,
        min_active_ms: int = STREAM_MIN_ACTIVE_MS,
        check_interval_ms: int = 100,
    ) -> None:
        if not isinstance(spatial_layers, int) or not 1 <= spatial_layers <= 16:
            raise ValueError(f"spatial_layers must be 1..16, got {spatial_layers!r}")
        if not isinstance(temporal_layers, int) or not 1 <= temporal_layers <= 16:
            raise ValueError(f"temporal_layers must be 1..16, got {temporal_layers!r}")
        if inactive_after_ms <= 0 or min_active_ms < 0 or check_interval_ms <= 0:
            raise ValueError(
                "inactive_after_ms and check_interval_ms must be > 0, min_active_ms >= 0, got "
                f"{inactive_after_ms!r}, {check_interval_ms!r}, {min_active_ms!r}"
            )
        self.spatial_layers = spatial_layers
        self.temporal_layers = temporal_layers
        self.inactive_after_ms = inactive_after_ms
        self.min_active_ms = min_active_ms
        self.check_interval_ms = check_interval_ms
        self.version = 0
        self.next_check_ms = 0
        self.state = [INACTIVE] * spatial_layers
        self.last_packet_ms = [0] * spatial_layers
        self.active_since_ms = [0] * spatial_layers
        self._seen = [False] * spatial_layers
        self._scores = [10] * spatial_layers
        self._srs: list = [None] * spatial_layers
        self._rates = [[RateCalculator() for _ in range(temporal_layers)] for _ in range(spatial_layers)]

    # -- feed ------------------------------------------------------------------------------------

    def on_packet(self, spatial: int, temporal: int, size_bytes: int, now_ms: int) -> None:
        """A media packet of layer (``spatial``, ``temporal``) arrived (temporal -1: unknown,
        counted as 0). Out-of-range spatial layers are ignored."""
        if not 0 <= spatial < self.spatial_layers:
            return
        self.last_packet_ms[spatial] = now_ms
        if self.state[spatial] == INACTIVE:
            self._activate(spatial, now_ms)
        rates = self._rates[spatial]
        if temporal <= 0:
            rates[0].update(size_bytes, now_ms)
        elif temporal < self.temporal_layers:
            rates[temporal].update(size_bytes, now_ms)
        else:
            rates[-1].update(size_bytes, now_ms)
        if now_ms >= self.next_check_ms:
            self.update(now_ms)

    def _activate(self, spatial: int, now_ms: int) -> None:
        self.active_since_ms[spatial] = now_ms
        if self._seen[spatial] and self.min_active_ms > 0:
            self.state[spatial] = YOUNG
        else:
            self.state[spatial] = MATURE
            self._seen[spatial] = True
        self.version += 1

    def update(self, now_ms: int) -> bool:
        """Apply time: layers without packets for ``inactive_after_ms`` become INACTIVE, YOUNG
        layers active for ``min_active_ms`` become MATURE. Returns True when any changed."""
        self.next_check_ms = now_ms + self.check_interval_ms
        changed = False
        state = self.state
        for s in range(self.spatial_layers):
            st = state[s]
            if st == INACTIVE:
                continue
            if now_ms - self.last_packet_ms[s] > self.inactive_after_ms:
                state[s] = INACTIVE
                changed = True
            elif st == YOUNG and now_ms - self.active_since_ms[s] >= self.min_active_ms:
                state[s] = MATURE
                changed = True
        if changed:
            self.version += 1
        return changed

    def on_sr(self, spatial: int, ntp_sec: int, ntp_frac: int, rtp_ts: int) -> None:
        """A sender report of the stream of ``spatial``: its NTP time (RFC 3550 §6.4.1 64-bit
        ``(seconds, fraction)``) and the RTP timestamp of the same instant."""
        if 0 <= spatial < self.spatial_layers:
            self._srs[spatial] = ((ntp_sec << 32) | ntp_frac, rtp_ts & 0xFFFFFFFF)

    def set_score(self, spatial: int, score: int) -> None:
        """Set the 0..10 score of ``spatial``'s stream; going to or from 0 bumps ``version``."""
        if not 0 <= spatial < self.spatial_layers:
            return
        old = self._scores[spatial]
        self._scores[spatial] = score
        if (old == 0) != (score == 0):
            self.version += 1

    # -- read ------------------------------------------------------------------------------------

    def is_active(self, spatial: int) -> bool:
        """True when packets of ``spatial`` arrive (YOUNG or MATURE)."""
        return self.state[spatial] != INACTIVE

    def is_usable(self, spatial: int) -> bool:
        """Active with a score above 0: a consumer may select it."""
        return self.state[spatial] != INACTIVE and self._scores[spatial] > 0

    def active_ms(self, spatial: int, now_ms: int) -> int:
        """How long ``spatial`` has been active (0 when inactive)."""
        if self.state[spatial] == INACTIVE:
            return 0
        return now_ms - self.active_since_ms[spatial]

    def score(self, spatial: int) -> int:
        """Effective score of ``spatial``: 0 when inactive (mediasoup resets an inactive stream's
        score to 0), else the score set with :meth:`set_score` (10 by default)."""
        if not 0 <= spatial < self.spatial_layers or self.state[spatial] == INACTIVE:
            return 0
        return self._scores[spatial]

    def scores(self) -> list[int]:
        """Effective score per spatial layer (mediasoup ``producerScores``)."""
        return [self.score(s) for s in range(self.spatial_layers)]

    def sender_report(self, spatial: int) -> tuple | None:
        """``(ntp64, rtp_ts)`` of ``spatial``'s latest SR (ntp64 = seconds << 32 | fraction), or
        None before the first one."""
        if not 0 <= spatial < self.spatial_layers:
            return None
        return self._srs[spatial]

    def layer_bitrate_bps(self, spatial: int, temporal: int, now_ms: int) -> int:
        """Bitrate of the packets of exactly (``spatial``, ``temporal``) over the last second."""
        return self._rates[spatial][temporal].rate_bps(now_ms)

    def bitrate_bps(self, spatial: int, now_ms: int, max_temporal: int | None = None) -> int:
        """Bitrate of ``spatial`` with temporal layers 0..``max_temporal`` (all when None): what a
        consumer receiving that layer pair costs (mediasoup ``GetLayerBitrate``)."""
        rates = self._rates[spatial]
        top = len(rates) - 1 if max_temporal is None else min(max_temporal, len(rates) - 1)
        return sum(rates[t].rate_bps(now_ms) for t in range(top + 1))

    def bitrates_by_layer(self, now_ms: int) -> dict:
        """mediasoup ``bitrateByLayer``: ``{"S.T": bps}`` for every pair with traffic, where bps
        counts temporal layers 0..T of spatial layer S."""
        out = {}
        for s in range(self.spatial_layers):
            total = 0
            for t in range(self.temporal_layers):
                total += self._rates[s][t].rate_bps(now_ms)
                if total:
                    out[f"{s}.{t}"] = total
        return out


def ntp_diff_ticks(ntp_a: int, ntp_b: int, clock_rate: int) -> int:
    """``ntp_a - ntp_b`` (64-bit NTP values, wrap-aware) in RTP ticks of ``clock_rate`` Hz,
    rounded to the nearest tick."""
    d = ((ntp_a - ntp_b + _I63) % _U64) - _I63
    if d >= 0:
        return (d * clock_rate + 0x80000000) >> 32  # rounded: NTP fractions are truncated ms
    return -((-d * clock_rate + 0x80000000) >> 32)


class DependencyDescriptorTracker:
    """Dependency descriptor state of one received stream: the latest template structure and
    active decode target mask (AV1 RTP spec A.8.3-A.8.4), so that packets carrying only the
    mandatory fields can be parsed.

    ``parse(value)`` returns :func:`parse_dependency_descriptor`'s tuple (its ``STRUCTURE`` is
    the structure in effect) or None when the value is malformed or refers to an unknown
    structure (counted in ``errors``). ``active_decode_targets``: bitmask, all targets after a
    new structure.
    """

    __slots__ = ("structure", "active_decode_targets", "errors")

    def __init__(self) -> None:
        self.structure: DependencyStructure | None = None
        self.active_decode_targets = 0
        self.errors = 0

    def parse(self, value: bytes | bytearray) -> tuple | None:
        """Parse one extension value; None (and ``errors`` + 1) when it cannot be parsed."""
        try:
            desc = parse_dependency_descriptor(value, self.structure)
        except PacketParseError:
            self.errors += 1
            return None
        if desc[11]:
            self.structure = desc[10]
            self.active_decode_targets = desc[9]
        elif desc[9] is not None:
            self.active_decode_targets = desc[9]
        return desc


class PacketLayerReader:
    """Reads the layers of each packet of one received stream, once for all consumers.

    ``codec``: "vp8", "vp9", "av1", "h264" (or a mimeType). VP8 and VP9 layers come from the
    payload descriptor; the others from the dependency descriptor extension value passed as
    ``dd_value`` (VP8/VP9 use it too when the payload descriptor has no layer indices and a value
    is given; not needed in practice).

    ``read(data, payload_start, payload_end, dd_value=None)`` returns the parsed descriptor to
    hand to consumers (VP8: :func:`parse_vp8_descriptor`'s tuple; VP9:
    :func:`parse_vp9_descriptor`'s; others: :func:`parse_dependency_descriptor`'s, None without
    a value) and sets ``spatial_layer`` / ``temporal_layer`` (0 when unknown). A malformed
    descriptor gives None, layers 0, and ``errors`` + 1. ``kind`` is "vp8", "vp9" or "dd":
    which tuple ``read`` returns.
    """

    __slots__ = ("codec", "kind", "spatial_layer", "temporal_layer", "errors", "dd")

    def __init__(self, codec: str) -> None:
        if not isinstance(codec, str) or not codec:
            raise ValueError(f"codec must be a codec name or mimeType, got {codec!r}")
        name = codec.rsplit("/", 1)[-1].lower()
        self.codec = name
        self.kind = name if name in ("vp8", "vp9") else "dd"
        self.spatial_layer = 0
        self.temporal_layer = 0
        self.errors = 0
        self.dd = DependencyDescriptorTracker()

    def read(
        self,
        data: bytes | bytearray,
        payload_start: int,
        payload_end: int,
        dd_value: bytes | bytearray | None = None,
    ) -> tuple | None:
        """Parse the packet's layer information; see the class docstring."""
        kind = self.kind
        try:
            if kind == "vp8":
                desc = parse_vp8_descriptor(data, payload_start, payload_end)
                tid = desc[7]
                self.spatial_layer = 0
                self.temporal_layer = tid if tid > 0 else 0
                return desc
            if kind == "vp9":
                desc = parse_vp9_descriptor(data, payload_start, payload_end)
                sid = desc[12]
                tid = desc[10]
                self.spatial_layer = sid if sid > 0 else 0
                self.temporal_layer = tid if tid > 0 else 0
                return desc
        except PacketParseError:
            self.errors += 1
            self.spatial_layer = self.temporal_layer = 0
            return None
        if dd_value is None:
            self.spatial_layer = self.temporal_layer = 0
            return None
        desc = self.dd.parse(dd_value)
        if desc is None:
            self.errors += 1
            self.spatial_layer = self.temporal_layer = 0
            return None
        self.spatial_layer = desc[4]
        self.temporal_layer = desc[5]
        return desc


_DROP = (False, False)
_FORWARD = (True, False)
_FORWARD_MARK = (True, True)
_RING = 256


class DDLayerFilter:
    """Per-consumer decode-target selection over a dependency-descriptor stream.

    ``target_spatial_layer`` / ``target_temporal_layer`` (plain attributes, -1 = nothing) name
    what the consumer wants; the filter maps them to the best *active* decode target whose
    layers do not exceed them (the exact (S, T) one when it exists). ``current_spatial_layer``
    / ``current_temporal_layer`` are the layers of the decode target forwarded now (-1 before the
    first switch).

    Per packet ``process(desc, keyframe)`` (``desc``: a :func:`parse_dependency_descriptor`
    tuple) returns ``(forward, set_marker)``:

    - a frame is forwarded when its decode target indication for the current decode target is
      not "not present" (A.8.3); every packet of a frame gets the decision of its first packet;
    - the decode target changes only at the first packet of a frame, and only when the frame can
      be decoded from what this consumer already received: all its references (``fdiffs``) were
      forwarded, and, when going up (or starting), its indication for the new target is "switch"
      and the chain protecting that target (A.8.3 ``decode_target_protected_by``) is intact
      (the previous frame of the chain was forwarded, or the frame starts the chain). Going down
      needs no switch indication: the frames of a lower decode target of a full-SVC stream were
      all forwarded; in K-SVC the reference check makes it wait for a keyframe;
    - ``set_marker``: the frame is the last packet (end of frame) of the highest forwarded
      spatial layer, so the receiver sees the end of the temporal unit (RTP marker, AV1 RTP spec
      §4.1).

    ``sync()`` forgets what was forwarded (resume / stream switch): nothing passes until a frame
    that is a switch point with no missing references (in practice a keyframe).
    """

    __slots__ = (
        "target_spatial_layer",
        "target_temporal_layer",
        "current_spatial_layer",
        "current_temporal_layer",
        "_structure",
        "_active",
        "_dt",
        "_tdt",
        "_tdt_key",
        "_ring",
        "_frame",
        "_frame_result",
        "chain_breaks",
    )

    def __init__(self, target_spatial_layer: int = 0, target_temporal_layer: int = 0) -> None:
        self.target_spatial_layer = target_spatial_layer
        self.target_temporal_layer = target_temporal_layer
        self.current_spatial_layer = -1
        self.current_temporal_layer = -1
        self._structure: DependencyStructure | None = None
        self._active = -1  # all decode targets
        self._dt = -1
        self._tdt = -1
        self._tdt_key: tuple | None = None
        self._ring = [-1] * _RING
        self._frame = -1
        self._frame_result = _DROP
        #: Forwarded frames whose chain had a frame this consumer did not forward (info).
        self.chain_breaks = 0

    def sync(self) -> None:
        """Start over: wait for a switch point (keyframe)."""
        self._dt = -1
        self.current_spatial_layer = self.current_temporal_layer = -1
        self._ring = [-1] * _RING
        self._frame = -1

    def _target_dt(self) -> int:
        """Decode target for the target layers under the current structure and active mask."""
        s = self._structure
        key = (self.target_spatial_layer, self.target_temporal_layer, self._active, s)
        if key == self._tdt_key:
            return self._tdt
        self._tdt_key = key
        best = -1
        if s is not None and self.target_spatial_layer >= 0 and self.target_temporal_layer >= 0:
            sids = s.decode_target_spatial_ids
            tids = s.decode_target_max_temporal_ids
            best_key = (-1, -1)
            for dt in range(s.num_decode_targets):
                if not (self._active >> dt) & 1:
                    continue
                ds, dt_t = sids[dt], tids[dt]
                if ds <= self.target_spatial_layer and dt_t <= self.target_temporal_layer and (ds, dt_t) > best_key:
                    best_key = (ds, dt_t)
                    best = dt
        self._tdt = best
        return best

    def _refs_forwarded(self, fn: int, fdiffs: tuple) -> bool:
        ring = self._ring
        for d in fdiffs:
            ref = (fn - d) & 0xFFFF
            if ring[ref % _RING] != ref:
                return False
        return True

    def _chain_intact(self, desc: tuple, dt: int) -> bool:
        s = self._structure
        if not s.num_chains:
            return True
        chain = s.decode_target_protected_by_chain[dt]
        diffs = desc[8]
        if chain >= len(diffs):
            return True
        d = diffs[chain]
        if d == 0:
            return True
        prev = (desc[3] - d) & 0xFFFF
        return self._ring[prev % _RING] == prev

    def process(self, desc: tuple, keyframe: bool = False) -> tuple[bool, bool]:
        """Decide for one packet; see the class docstring. ``keyframe`` is informational (a
        keyframe carries a new structure and switch indications for every target)."""
        structure = desc[10]
        if structure is not self._structure:
            self._structure = structure
            self._active = (1 << structure.num_decode_targets) - 1
            self._dt = -1  # decode target indices are per structure
        active = desc[9]
        if active is not None:
            self._active = active
        fn = desc[3]
        if not desc[0]:  # not the first packet of a frame: same decision as its first packet
            if fn == self._frame:
                r = self._frame_result
                if r[0] and desc[1]:
                    return _FORWARD_MARK if desc[4] == self.current_spatial_layer else _FORWARD
                return _DROP if not r[0] else _FORWARD
            dt = self._dt
            if dt < 0 or desc[6][dt] == DTI_NOT_PRESENT:
                return _DROP
            return _FORWARD_MARK if desc[1] and desc[4] == self.current_spatial_layer else _FORWARD
        dtis = desc[6]
        tdt = self._target_dt()
        dt = self._dt
        if tdt != dt and tdt >= 0 and dtis[tdt] != DTI_NOT_PRESENT and self._refs_forwarded(fn, desc[7]):
            s = structure
            down = (
                dt >= 0
                and s.decode_target_spatial_ids[tdt] <= s.decode_target_spatial_ids[dt]
                and s.decode_target_max_temporal_ids[tdt] <= s.decode_target_max_temporal_ids[dt]
            )
            if down or (dtis[tdt] == DTI_SWITCH and self._chain_intact(desc, tdt)):
                dt = self._dt = tdt
                self.current_spatial_layer = s.decode_target_spatial_ids[tdt]
                self.current_temporal_layer = s.decode_target_max_temporal_ids[tdt]
        elif tdt < 0 and dt >= 0:
            dt = self._dt = -1
            self.current_spatial_layer = self.current_temporal_layer = -1
        self._frame = fn
        if dt < 0 or dtis[dt] == DTI_NOT_PRESENT:
            self._frame_result = _DROP
            return _DROP
        if not self._chain_intact(desc, dt):
            self.chain_breaks += 1
        self._ring[fn % _RING] = fn
        self._frame_result = _FORWARD
        if desc[1] and desc[4] == self.current_spatial_layer:
            return _FORWARD_MARK
        return _FORWARD


#: Two-byte-form ``mid`` slot: id byte, length byte, up to 8 bytes of mid.
MID_SLOT2_LEN = MID_SLOT_LEN + 1
#: Two-byte-form transport-wide-cc slot: id byte, length byte (2), 16-bit seq.
TWCC_SLOT2_LEN = 4
_ZERO_SLOTS = bytes(MID_SLOT2_LEN + TWCC_SLOT2_LEN)


def is_two_byte_template(data: bytes | bytearray) -> bool:
    """True when template ``data`` (with its X bit set) uses the two-byte extension form
    (profile 0x100x, RFC 8285 §4.3), as :class:`LongExtTemplateBuilder` makes it."""
    return data[12 + 4 * (data[0] & 0x0F)] == 0x10


class LongExtTemplateBuilder(TemplateBuilder):
    """:class:`~raysfu.transport.rtp_template.TemplateBuilder` that also forwards extension
    values longer than 16 bytes (the dependency descriptor with its template structure).

    A packet whose extensions arrive in the one-byte form, or in the two-byte form with every
    kept value at most 16 bytes long, gets the usual one-byte template. Otherwise the template
    uses the two-byte form (RFC 8285 §4.3; receivers negotiated ``extmap-allow-mixed``, which
    mediasoup-client always offers): profile ``0x1000``, a :data:`MID_SLOT2_LEN`-byte ``mid``
    slot at ``mid_off`` (zeros: padding, until a consumer writes ``id, len, mid``), a
    :data:`TWCC_SLOT2_LEN`-byte transport-wide-cc slot whose *length byte* is at ``twcc_off``
    (so the transport writes the 16-bit seq at ``twcc_off + 1`` in both forms; a consumer writes
    the id at ``twcc_off - 1`` and 2 at ``twcc_off``), then every kept element as ``id, len,
    value`` with router ids (``exts`` holds their ``(id, offset, element_len)``; zeroing an
    element turns it into padding, as in the one-byte form). Consumers tell the forms apart
    with :func:`is_two_byte_template`.
    """

    def build(self, data: bytes, hdr: tuple, payload_type: int, ssrc: int) -> Template:
        profile = hdr[6]
        if profile & 0xFFF0 != 0x1000 or not self.keep:
            return super().build(data, hdr, payload_type, ssrc)
        try:
            found = iter_extensions(data, profile, hdr[7], hdr[8])
        except Exception:  # PacketParseError: forward the payload without elements
            return super().build(data, hdr, payload_type, ssrc)
        keep = self.keep
        if not any(length > 16 and eid in keep for eid, _off, length in found):
            return super().build(data, hdr, payload_type, ssrc)
        b0 = data[0]
        cc = b0 & 0x0F
        csrc_end = 12 + 4 * cc
        base = csrc_end + 4
        ext = bytearray()
        mid_off = twcc_off = -1
        if self.has_mid:
            mid_off = base
            ext += _ZERO_SLOTS[:MID_SLOT2_LEN]
        if self.has_twcc:
            twcc_off = base + len(ext) + 1
            ext += _ZERO_SLOTS[:TWCC_SLOT2_LEN]
        exts = []
        for eid, off, length in found:
            rid = keep.get(eid)
            if rid is None:
                continue
            exts.append((rid, base + len(ext), 2 + length))
            ext.append(rid)
            ext.append(length)
            ext += data[off : off + length]
        n = len(ext)
        if n & 3:
            ext += bytes(4 - (n & 3))
        words = len(ext) >> 2
        marker = hdr[1]
        head = bytes((0x90 | (b0 & 0x20) | cc, (0x80 if marker else 0) | payload_type)) + data[2:8] + ssrc.to_bytes(4, "big")
        out = b"".join((head, data[12:csrc_end], b"\x10\x00" + words.to_bytes(2, "big"), ext, data[hdr[5]:]))
        return Template(out, hdr[2], hdr[3], mid_off, twcc_off, tuple(exts), base + 4 * words, marker)
