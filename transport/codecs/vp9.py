"""VP9 RTP payload descriptor (RFC 9628 §4.2, formerly draft-ietf-payload-vp9): parse, keyframe
detection, and the spatial/temporal layer filter of an SVC consumer.

Descriptor layout (RFC 9628 §4.2)::

     0 1 2 3 4 5 6 7
    |I|P|L|F|B|E|V|Z|  required
    |M| PICTURE ID  |  if I (M=1: 15-bit picture id, one more byte follows)
    |  PICTURE ID   |  if M
    | TID |U| SID |D|  if L
    |   TL0PICIDX   |  if L and F=0 (non-flexible mode)
    | P_DIFF      |N|  if P and F=1 (flexible mode), up to 3 times while N=1
    | SS ...        |  if V (scalability structure, §4.2.1)

Scalability structure (§4.2.1)::

    | N_S |Y|G|-|-|-|       N_S + 1 spatial layers
    | WIDTH (16) | HEIGHT (16) |  N_S + 1 times, if Y
    |      N_G      |       if G (number of pictures in the picture group)
    | TID |U| R |-|-|       N_G times, each followed by R P_DIFF bytes

Layer rules follow mediasoup's VP9 ``PayloadDescriptorHandler::Process`` (``Codecs/VP9.cpp``,
used by ``SvcConsumer``), with one fix: a temporal switch up stops at the target layer.
"""

from __future__ import annotations

from raysfu.transport.errors import PacketParseError

__all__ = ["parse_vp9_descriptor", "VP9LayerFilter"]

# Indices into the tuple returned by parse_vp9_descriptor.
(I, P, L, F, B, E, V, Z, PICTURE_ID, M, TID, U, SID, D, TL0PICIDX, P_DIFFS, SS, DESCRIPTOR_LEN,
 IS_KEYFRAME) = range(19)

_NO_DIFFS: tuple = ()


def _parse_ss(data: bytes | bytearray, pos: int, end: int) -> tuple[tuple, int]:
    """Scalability structure at ``pos``; returns ``((n_s, resolutions, picture_group), pos)``."""
    if pos >= end:
        raise PacketParseError("vp9", "truncated scalability structure")
    b = data[pos]
    pos += 1
    n_s = (b >> 5) + 1
    resolutions: tuple = ()
    if b & 0x10:  # Y
        if pos + 4 * n_s > end:
            raise PacketParseError("vp9", "truncated scalability structure (resolutions)")
        resolutions = tuple(
            ((data[p] << 8) | data[p + 1], (data[p + 2] << 8) | data[p + 3])
            for p in range(pos, pos + 4 * n_s, 4)
        )
        pos += 4 * n_s
    group: tuple = ()
    if b & 0x08:  # G
        if pos >= end:
            raise PacketParseError("vp9", "truncated scalability structure (N_G)")
        n_g = data[pos]
        pos += 1
        items = []
        for _ in range(n_g):
            if pos >= end:
                raise PacketParseError("vp9", "truncated scalability structure (picture group)")
            g = data[pos]
            r = (g >> 2) & 0x03
            if pos + 1 + r > end:
                raise PacketParseError("vp9", "truncated scalability structure (P_DIFF)")
            items.append((g >> 5, (g >> 4) & 1, tuple(data[pos + 1 : pos + 1 + r])))
            pos += 1 + r
        group = tuple(items)
    return (n_s, resolutions, group), pos


def parse_vp9_descriptor(data: bytes | bytearray, start: int, end: int) -> tuple:
    """Parse the VP9 payload descriptor of the RTP payload ``data[start:end]`` (RFC 9628 §4.2).

    Returns ``(i, p, l, f, b, e, v, z, picture_id, m, tid, u, sid, d, tl0picidx, p_diffs, ss,
    descriptor_len, is_keyframe)``:

    - ``i`` .. ``z``: the eight flag bits of the first byte as 0/1 (I picture id present,
      P inter-picture predicted, L layer indices present, F flexible mode, B start of a layer
      frame, E end of a layer frame, V scalability structure present, Z not a reference for
      upper spatial layers);
    - ``picture_id``: 7- or 15-bit, -1 when I=0; ``m``: 1 for the 15-bit form;
    - ``tid`` (0..7), ``u`` (switching up point), ``sid`` (0..7), ``d`` (inter-layer
      dependency): -1/0/-1/0 when L=0;
    - ``tl0picidx``: 0..255 in non-flexible mode with L=1, else -1;
    - ``p_diffs``: tuple of reference picture id differences (flexible mode, P=1), else ();
    - ``ss``: None, or ``(n_s, resolutions, picture_group)`` when V=1: ``n_s`` spatial layers,
      ``resolutions`` a tuple of ``(width, height)`` per spatial layer (() when Y=0),
      ``picture_group`` a tuple of ``(tid, u, p_diffs)`` (() when G=0);
    - ``descriptor_len``: bytes of descriptor (the VP9 frame data follows);
    - ``is_keyframe``: P=0, B=1 and spatial layer 0 (or no layer indices), as mediasoup.

    Requires ``end <= len(data)``. Raises :class:`PacketParseError` ("vp9") on an empty payload,
    a truncated descriptor or more than 3 P_DIFFs.
    """
    if end - start < 1:
        raise PacketParseError("vp9", "empty payload")
    b0 = data[start]
    pos = start + 1
    picture_id = tid = sid = tl0 = -1
    m = u = d = 0
    p_diffs = _NO_DIFFS
    ss = None
    if b0 & 0x80:  # I
        if pos >= end:
            raise PacketParseError("vp9", "truncated descriptor (picture id)")
        b = data[pos]
        if b & 0x80:
            if pos + 1 >= end:
                raise PacketParseError("vp9", "truncated descriptor (15-bit picture id)")
            picture_id = ((b & 0x7F) << 8) | data[pos + 1]
            m = 1
            pos += 2
        else:
            picture_id = b
            pos += 1
    flexible = b0 & 0x10
    if b0 & 0x20:  # L
        if pos >= end:
            raise PacketParseError("vp9", "truncated descriptor (layer indices)")
        b = data[pos]
        pos += 1
        tid = b >> 5
        u = (b >> 4) & 1
        sid = (b >> 1) & 0x07
        d = b & 1
        if not flexible:
            if pos >= end:
                raise PacketParseError("vp9", "truncated descriptor (TL0PICIDX)")
            tl0 = data[pos]
            pos += 1
    if flexible and b0 & 0x40:  # P_DIFF list
        diffs = []
        while True:
            if pos >= end:
                raise PacketParseError("vp9", "truncated descriptor (P_DIFF)")
            b = data[pos]
            pos += 1
            diffs.append(b >> 1)
            if not b & 1:
                break
            if len(diffs) == 3:
                raise PacketParseError("vp9", "more than 3 P_DIFF")
        p_diffs = tuple(diffs)
    if b0 & 0x02:  # V
        ss, pos = _parse_ss(data, pos, end)
    is_kf = b0 & 0x48 == 0x08 and sid <= 0
    return (
        b0 >> 7, (b0 >> 6) & 1, (b0 >> 5) & 1, (b0 >> 4) & 1, (b0 >> 3) & 1, (b0 >> 2) & 1,
        (b0 >> 1) & 1, b0 & 1, picture_id, m, tid, u, sid, d, tl0, p_diffs, ss, pos - start, is_kf,
    )


_DROP = (False, False)
_FORWARD = (True, False)
_FORWARD_MARK = (True, True)


class VP9LayerFilter:
    """Per-consumer VP9 SVC layer selection (mediasoup VP9 ``EncodingContext`` + ``Process``).

    ``spatial_layers`` / ``temporal_layers``: what the producer announces (its
    ``scalabilityMode``, e.g. L3T3 or L3T3_KEY); ``ksvc``: K-SVC (``_KEY`` modes: spatial
    layers depend on each other only in keyframes). ``target_spatial_layer`` /
    ``target_temporal_layer`` are set by the consumer; ``current_*`` is what is forwarded now
    (-1: nothing yet).

    Rules per packet (``process``):

    - a layer beyond the announced counts is dropped;
    - spatial up-switch to the target only at a keyframe; down-switch at once at the end (E) of a
      target-layer frame in full SVC, only at a keyframe in K-SVC;
    - packets above the current spatial layer are dropped; in K-SVC, inter-predicted (P=1)
      packets of any other spatial layer too;
    - temporal up-switch at a switching up point (U=1) at the start of a frame (B=1), to at
      most the target; down-switch at the end (E) of a target-layer frame; packets above the
      current temporal layer are dropped;
    - the RTP marker must be set on the last packet (E=1) of the highest forwarded spatial layer;
    - a reordered packet (picture id older than the newest forwarded) skips the layer rules.

    ``process(desc)`` returns ``(forward, set_marker)`` (preallocated tuples, no allocation).
    """

    __slots__ = (
        "spatial_layers",
        "temporal_layers",
        "ksvc",
        "target_spatial_layer",
        "target_temporal_layer",
        "current_spatial_layer",
        "current_temporal_layer",
        "_max_pid",
        "_sync",
    )

    def __init__(self, spatial_layers: int, temporal_layers: int, ksvc: bool = False) -> None:
        if not isinstance(spatial_layers, int) or not 1 <= spatial_layers <= 8:
            raise ValueError(f"spatial_layers must be 1..8, got {spatial_layers!r}")
        if not isinstance(temporal_layers, int) or not 1 <= temporal_layers <= 8:
            raise ValueError(f"temporal_layers must be 1..8, got {temporal_layers!r}")
        self.spatial_layers = spatial_layers
        self.temporal_layers = temporal_layers
        self.ksvc = bool(ksvc)
        self.target_spatial_layer = spatial_layers - 1
        self.target_temporal_layer = temporal_layers - 1
        self.current_spatial_layer = -1
        self.current_temporal_layer = -1
        self._max_pid = -1  # newest forwarded picture id, unwrapped (15-bit space)
        self._sync = False

    def sync(self) -> None:
        """Forget the newest picture id at the next packet that carries one (resume, producer
        restart: mediasoup ``SyncRequired``), so it is not taken for a reordered packet."""
        self._sync = True

    def process(self, desc: tuple) -> tuple[bool, bool]:
        """Decide for the packet ``desc`` (from :func:`parse_vp9_descriptor`); returns
        ``(forward, set_marker)`` and updates the current layers when forwarded."""
        sid = desc[12]
        tid = desc[10]
        if sid < 0:
            sid = 0
        if tid < 0:
            tid = 0
        if sid >= self.spatial_layers or tid >= self.temporal_layers:
            return _DROP
        pic = desc[8]
        old = False
        if pic >= 0:
            if desc[9] == 0:
                pic_mask = 0x7F
            else:
                pic_mask = 0x7FFF
            if self._sync:
                self._sync = False
                self._max_pid = -1
            last = self._max_pid
            if last >= 0:
                half = (pic_mask + 1) >> 1
                old = ((pic - last + half) & pic_mask) - half < 0
        cur_s = self.current_spatial_layer
        cur_t = self.current_temporal_layer
        tgt_s = self.target_spatial_layer
        tgt_t = self.target_temporal_layer
        tmp_s = cur_s
        tmp_t = cur_t
        is_kf = desc[18]
        end_of_frame = desc[5]
        if tgt_s > cur_s:
            if is_kf:
                tmp_s = tgt_s
                tmp_t = 0
        elif tgt_s < cur_s:
            if (is_kf if self.ksvc else (sid == tgt_s and end_of_frame)):
                tmp_s = tgt_s
                tmp_t = 0
        if not old:
            if sid > tmp_s or (self.ksvc and desc[1] and sid != tmp_s):
                return _DROP
            if tgt_t > cur_t:
                if tid > cur_t and (cur_t == -1 or desc[11]) and desc[4]:
                    tmp_t = tid if tid < tgt_t else tgt_t
            elif tgt_t < cur_t:
                if tid == tgt_t and end_of_frame:
                    tmp_t = tgt_t
            if tid > tmp_t:
                return _DROP
        if pic >= 0:
            last = self._max_pid
            if last < 0:
                self._max_pid = (1 << 24) + pic
            else:
                half = (pic_mask + 1) >> 1
                ext = last + ((pic - last + half) & pic_mask) - half
                if ext > last:
                    self._max_pid = ext
        self.current_spatial_layer = tmp_s
        self.current_temporal_layer = tmp_t
        return _FORWARD_MARK if sid == tmp_s and end_of_frame else _FORWARD
