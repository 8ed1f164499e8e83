"""VP8 RTP payload descriptor (RFC 7741 §4.2): parse, temporal-layer filter, and the per-consumer
picture id / TL0PICIDX rewriter that keeps a forwarded VP8 stream continuous.

Descriptor layout (RFC 7741 §4.2)::

     0 1 2 3 4 5 6 7
    |X|R|N|S|R| PID |  required
    |I|L|T|K| RSV   |  if X
    |M| PictureID   |  if I (M=1: 15-bit picture id, one more byte follows)
    |   PictureID   |  if M
    |   TL0PICIDX   |  if L
    |TID|Y| KEYIDX  |  if T or K

An SFU that drops frames (temporal layers above the target, a paused consumer) or switches
between simulcast streams must rewrite the picture id and TL0PICIDX so that the receiver sees
one stream without holes; otherwise the decoder treats the hole as loss and asks for a keyframe.
:class:`VP8Rewriter` does this with the semantics of mediasoup's VP8 ``EncodingContext`` and
``PayloadDescriptorHandler::Process`` (``worker/src/RTC/Codecs/VP8.cpp``), with two changes:
a 7-bit picture id stays 7-bit (mediasoup widens every packet to 15 bits; we rewrite in place
and wrap at 128), and picture id and TL0PICIDX are synced independently (mediasoup syncs only
when both fields are present).
"""

from __future__ import annotations

from raysfu.transport.errors import PacketParseError
from raysfu.transport.seq import SeqRewriter

__all__ = [
    "parse_vp8_descriptor",
    "should_forward",
    "PictureIdMap",
    "VP8Rewriter",
]

# Indices into the tuple returned by parse_vp8_descriptor.
X, N, S, PID, PICTURE_ID, M, TL0PICIDX, TID, Y, KEYIDX, DESCRIPTOR_LEN, IS_KEYFRAME = range(12)


def parse_vp8_descriptor(data: bytes | bytearray, start: int, end: int) -> tuple:
    """Parse the VP8 payload descriptor of the RTP payload ``data[start:end]`` (RFC 7741 §4.2).

    Returns ``(x, n, s, pid, picture_id, m, tl0picidx, tid, layer_sync, keyidx,
    descriptor_len, is_keyframe)``:

    - ``x``, ``n``, ``s``: the X (extension), N (non-reference frame), S (start of partition)
      bits as 0/1; ``pid``: partition index 0..7;
    - ``picture_id``: 7- or 15-bit picture id, -1 when I=0; ``m``: 1 when it is the 15-bit form;
    - ``tl0picidx``: 0..255, -1 when L=0;
    - ``tid``: temporal layer index 0..3, -1 when T=0; ``layer_sync``: the Y bit (0 when T=0);
    - ``keyidx``: 0..31, -1 when K=0;
    - ``descriptor_len``: bytes of descriptor; the VP8 payload header starts at
      ``start + descriptor_len``;
    - ``is_keyframe``: S=1, PID=0 and the VP8 payload header's P bit is 0 (RFC 7741 §4.3);
      False when no payload byte follows the descriptor.

    Indices are exported as ``PICTURE_ID``, ``TL0PICIDX``, ``TID`` etc. Requires
    ``end <= len(data)``. Raises :class:`PacketParseError` ("vp8") on an empty payload or a
    truncated descriptor.
    """
    if end - start < 1:
        raise PacketParseError("vp8", "empty payload")
    b0 = data[start]
    pos = start + 1
    picture_id = tl0 = tid = keyidx = -1
    m = y = 0
    x = b0 >> 7
    if x:
        if pos >= end:
            raise PacketParseError("vp8", "truncated descriptor (extension byte)")
        b1 = data[pos]
        pos += 1
        if b1 & 0x80:  # I
            if pos >= end:
                raise PacketParseError("vp8", "truncated descriptor (picture id)")
            p = data[pos]
            if p & 0x80:
                if pos + 1 >= end:
                    raise PacketParseError("vp8", "truncated descriptor (15-bit picture id)")
                picture_id = ((p & 0x7F) << 8) | data[pos + 1]
                m = 1
                pos += 2
            else:
                picture_id = p
                pos += 1
        if b1 & 0x40:  # L
            if pos >= end:
                raise PacketParseError("vp8", "truncated descriptor (TL0PICIDX)")
            tl0 = data[pos]
            pos += 1
        if b1 & 0x30:  # T or K
            if pos >= end:
                raise PacketParseError("vp8", "truncated descriptor (TID/Y/KEYIDX)")
            t = data[pos]
            pos += 1
            if b1 & 0x20:
                tid = t >> 6
                y = (t >> 5) & 1
            if b1 & 0x10:
                keyidx = t & 0x1F
    s = (b0 >> 4) & 1
    part = b0 & 0x07
    is_kf = s == 1 and part == 0 and pos < end and not data[pos] & 0x01
    return (x, (b0 >> 5) & 1, s, part, picture_id, m, tl0, tid, y, keyidx, pos - start, is_kf)


def should_forward(tid: int, target_tid: int, current_tid: int, layer_sync: int) -> bool:
    """Temporal-layer decision for one packet (mediasoup VP8 ``Process``).

    Drop a packet whose ``tid`` is above ``target_tid``; going up from ``current_tid`` to a
    higher layer is allowed only on a layer sync frame (Y=1, RFC 7741 §4.2), since an ordinary
    frame of that layer may reference earlier frames of it that were not forwarded. TL0 frames
    (``tid`` 0) and packets without a TID (``tid`` -1) depend on nothing above TL0 and always
    pass when ``target_tid`` >= 0.
    """
    if tid > target_tid:
        return False
    if tid > current_tid and tid > 0 and not layer_sync:
        return False
    return True


class PictureIdMap:
    """Maps a frame counter field (VP8/VP9 picture id, TL0PICIDX) of one input stream onto a
    continuous output counter, closing the gaps left by dropped frames (mediasoup
    ``SeqManager<uint16_t, 15>`` / ``SeqManager<uint8_t>`` as used by the VP8 context).

    Every method takes the field's wire value and its ``mask`` (0x7F for a 7-bit picture id,
    0x7FFF for 15-bit, 0xFF for TL0PICIDX). Inputs are unwrapped against the newest value seen
    (so the input may wrap, and may even change width between packets); the output is a 16-bit
    counter that starts at the first input value, so ``output & mask`` stays continuous in
    every width (2**16 is a multiple of 2**15, 2**8 and 2**7).

    - ``map(value, mask)`` -> output counter (0..65535) or -1 when the frame must not be sent
      (it was dropped, or is older than the last sync). Packets of one frame map alike.
    - ``drop(value, mask)``: the frame is not forwarded; later frames close the gap. Only a
      frame newer than every one seen so far can be dropped (as mediasoup).
    - ``sync(value, mask)``: the stream changed (source switch, resume): ``value`` maps to the
      last output + 1 and older inputs are refused.
    - ``is_old(value, mask)``: ``value`` is older than the newest input seen (a reordered or
      retransmitted packet).

    A gap of half the field's range (64 frames in the 7-bit form) or more between two inputs
    cannot be told from reordering; call ``sync`` after a pause.
    """

    __slots__ = ("_last_ext", "_rw", "_memo_in", "_memo_out")

    def __init__(self) -> None:
        self._last_ext = -1
        self._rw: SeqRewriter | None = None
        # Last (value, mask) mapped and its output: the packets of one frame share it.
        self._memo_in: tuple | None = None
        self._memo_out = -1

    def _unwrap(self, value: int, mask: int) -> int:
        last = self._last_ext
        if last < 0:
            # Start high enough that reordered inputs stay positive; 1 << 24 keeps value's bits.
            self._last_ext = ext = (1 << 24) + value
            return ext
        half = (mask + 1) >> 1
        ext = last + ((value - last + half) & mask) - half
        if ext > last:
            self._last_ext = ext
        return ext

    def is_old(self, value: int, mask: int) -> bool:
        """True when ``value`` is older than the newest input seen (no state change)."""
        last = self._last_ext
        if last < 0:
            return False
        half = (mask + 1) >> 1
        return ((value - last + half) & mask) - half < 0

    def map(self, value: int, mask: int) -> int:
        """Output counter for input ``value`` (0..65535; write ``out & mask``), or -1."""
        memo = self._memo_in
        if memo is not None and memo[0] == value and memo[1] == mask:
            return self._memo_out
        ext = self._unwrap(value, mask)
        rw = self._rw
        if rw is None:
            self._rw = rw = SeqRewriter(initial_output=value)
        out = rw.input(ext)
        out = -1 if out is None else out
        self._memo_in = (value, mask)
        self._memo_out = out
        return out

    def drop(self, value: int, mask: int) -> None:
        """Mark the frame with input ``value`` as not forwarded."""
        self._memo_in = None
        ext = self._unwrap(value, mask)
        if self._rw is not None:
            self._rw.drop(ext)

    def sync(self, value: int, mask: int) -> None:
        """Re-base: input ``value`` maps to the last output + 1; older inputs are refused."""
        self._memo_in = None
        last = self._last_ext
        if last < 0 or self._rw is None:
            self._last_ext = -1  # nothing forwarded yet: the first input sets the base
            return
        # A fresh numbering, far above every earlier input, congruent to value mod 2**16.
        ext = (((last >> 16) + 2) << 16) | value
        self._last_ext = ext
        self._rw.sync(ext)

    @property
    def max_output(self) -> int:
        """Last output counter handed out (0..65535), -1 before the first."""
        return -1 if self._rw is None else self._rw.max_output


class VP8Rewriter:
    """Per-consumer VP8 state (mediasoup VP8 ``EncodingContext``): temporal-layer filter and
    continuous picture id / TL0PICIDX across dropped frames and source switches.

    ``target_temporal_layer`` (0..3) is what the consumer wants; ``current_temporal_layer`` is
    what it forwards now (it follows the target: down at once, up at the next layer sync frame).
    Both are plain attributes the consumer may set; by default everything is forwarded.

    Use one parse per packet (shared by all consumers) and one call per consumer::

        desc = parse_vp8_descriptor(pkt, payload_start, payload_end)
        if rewriter.process(copy, payload_start, desc): send(copy)

    - ``process``: filter on the temporal layer, then ``rewrite``; False = do not send.
    - ``rewrite``: only map and write the picture id / TL0PICIDX in place; False when the frame
      was dropped earlier or is older than the last sync.
    - ``drop``: the consumer does not forward this packet for its own reason (paused, ...).
    - ``sync``: the input changed (simulcast stream switch, resume): the next picture id and
      TL0PICIDX map to the last outputs + 1 (mediasoup ``SyncRequired``).
    """

    __slots__ = (
        "target_temporal_layer",
        "current_temporal_layer",
        "_pid",
        "_tl0",
        "_sync_pid",
        "_sync_tl0",
    )

    def __init__(self, target_temporal_layer: int = 3, current_temporal_layer: int | None = None) -> None:
        if not isinstance(target_temporal_layer, int) or not -1 <= target_temporal_layer <= 3:
            raise ValueError(f"target_temporal_layer must be -1..3, got {target_temporal_layer!r}")
        self.target_temporal_layer = target_temporal_layer
        self.current_temporal_layer = (
            target_temporal_layer if current_temporal_layer is None else current_temporal_layer
        )
        self._pid = PictureIdMap()
        self._tl0 = PictureIdMap()
        self._sync_pid = False
        self._sync_tl0 = False

    def sync(self, current_temporal_layer: int | None = None) -> None:
        """The input stream changed: re-base picture id and TL0PICIDX at the next packet that
        carries each. ``current_temporal_layer`` (e.g. 0 after a switch on a keyframe) is set
        when given."""
        self._sync_pid = True
        self._sync_tl0 = True
        if current_temporal_layer is not None:
            self.current_temporal_layer = current_temporal_layer

    def _apply_sync(self, desc: tuple) -> None:
        if self._sync_pid and desc[4] >= 0:
            self._pid.sync(desc[4], 0x7FFF if desc[5] else 0x7F)
            self._sync_pid = False
        if self._sync_tl0 and desc[6] >= 0:
            self._tl0.sync(desc[6], 0xFF)
            self._sync_tl0 = False

    def drop(self, desc: tuple) -> None:
        """The packet ``desc`` (from :func:`parse_vp8_descriptor`) is not forwarded: its picture
        id (and its TL0PICIDX, for a TL0 frame) become gaps the next frames close."""
        if self._sync_pid or self._sync_tl0:
            self._apply_sync(desc)
        if desc[4] >= 0:
            self._pid.drop(desc[4], 0x7FFF if desc[5] else 0x7F)
        if desc[6] >= 0 and desc[7] <= 0:
            self._tl0.drop(desc[6], 0xFF)

    def process(self, buf: bytearray, payload_start: int, desc: tuple) -> bool:
        """Temporal filter + rewrite for one packet (mediasoup VP8 ``Process``).

        ``buf`` is this consumer's copy, its payload at ``payload_start``; ``desc`` is the
        shared parse of the same payload. Returns True when the packet is to be sent (its
        descriptor rewritten in place), False when it is dropped (state updated).
        A reordered packet (picture id older than the newest seen) skips the layer filter:
        it is sent if its frame was forwarded.
        """
        if self._sync_pid or self._sync_tl0:
            self._apply_sync(desc)
        tid = desc[7]
        pic = desc[4]
        old = pic >= 0 and self._pid.is_old(pic, 0x7FFF if desc[5] else 0x7F)
        if tid >= 0 and not old:
            if not should_forward(tid, self.target_temporal_layer, self.current_temporal_layer, desc[8]):
                self.drop(desc)
                return False
        if not self._write(buf, payload_start, desc):
            return False
        if not old:
            current = self.current_temporal_layer
            if tid < 0:
                current = 0
            elif tid > current:
                current = tid
            target = self.target_temporal_layer
            self.current_temporal_layer = target if current > target else current
        return True

    def rewrite(self, buf: bytearray, payload_start: int, desc: tuple) -> bool:
        """Map and write picture id / TL0PICIDX of one forwarded packet in place (no layer
        filter). False when its frame was dropped earlier or precedes the last sync."""
        if self._sync_pid or self._sync_tl0:
            self._apply_sync(desc)
        return self._write(buf, payload_start, desc)

    def _write(self, buf: bytearray, payload_start: int, desc: tuple) -> bool:
        pic = desc[4]
        tl0 = desc[6]
        pos = payload_start + 2
        if pic >= 0:
            m = desc[5]
            out = self._pid.map(pic, 0x7FFF if m else 0x7F)
            if out < 0:
                return False
            if tl0 >= 0:
                out_tl0 = self._tl0.map(tl0, 0xFF)
                if out_tl0 < 0:
                    return False
            if m:
                buf[pos] = 0x80 | ((out >> 8) & 0x7F)
                buf[pos + 1] = out & 0xFF
                pos += 2
            else:
                buf[pos] = out & 0x7F
                pos += 1
        elif tl0 >= 0:
            out_tl0 = self._tl0.map(tl0, 0xFF)
            if out_tl0 < 0:
                return False
        else:
            return True
        if tl0 >= 0:
            buf[pos] = out_tl0 & 0xFF
        return True
