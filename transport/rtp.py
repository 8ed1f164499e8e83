"""RTP packet codec for the forwarding path: header parse, header extensions, in-place rewrite,
RTX wrap/unwrap and keyframe detection.

Everything here works on ``bytes``/``bytearray`` with precompiled ``struct.Struct`` and returns
tuples/ints: no per-packet objects (aiortc's ``RtpPacket.parse`` costs ~4 µs a packet, a bare
``struct.unpack_from`` ~0.17 µs; DESIGN.md §5).

Sources: RFC 3550 §5.1 (fixed header, CSRC, padding), RFC 8285 (header extensions, one-byte
§4.2 and two-byte §4.3 forms), RFC 4588 §4 (RTX), RFC 6464 (audio level), RFC 7741 (VP8),
draft-ietf-payload-vp9 (VP9), RFC 6184 (H264), AV1 RTP spec §4.4 (aggregation header);
mediasoup ``RtpPacket.cpp`` / ``Codecs/*.cpp`` for the keyframe rules used by an SFU.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from raysfu.transport.errors import PacketParseError

__all__ = [
    "RTP_FIXED",
    "EXT_PROFILE_ONE_BYTE",
    "EXT_PROFILE_TWO_BYTE",
    "parse_rtp_header",
    "find_extension",
    "iter_extensions",
    "extensions_of",
    "read_extension_str",
    "read_audio_level",
    "read_transport_seq",
    "write_transport_seq",
    "read_abs_send_time",
    "rewrite_extension_ids",
    "rebuild_packet_with_extensions",
    "set_extension",
    "set_mid",
    "write_header",
    "build_rtp",
    "rtx_wrap",
    "rtx_unwrap",
    "is_keyframe",
    "is_keyframe_vp8",
    "is_keyframe_vp9",
    "is_keyframe_h264",
    "is_keyframe_av1",
]

#: Fixed RTP header: first byte (V, P, X, CC), second byte (M, PT), seq, timestamp, SSRC.
RTP_FIXED = struct.Struct("!BBHII")
_HDR_TAIL = struct.Struct("!BHII")  # second byte .. SSRC, written at offset 1
_U16 = struct.Struct("!H")
_U16x2 = struct.Struct("!HH")
_unpack_fixed = RTP_FIXED.unpack_from
_unpack_u16x2 = _U16x2.unpack_from

#: RFC 8285 §4.2 one-byte header extension profile ("defined by profile" value).
EXT_PROFILE_ONE_BYTE = 0xBEDE
#: RFC 8285 §4.3 two-byte header extension profile (the low 4 bits are "appbits").
EXT_PROFILE_TWO_BYTE = 0x1000


def _err(reason: str) -> PacketParseError:
    return PacketParseError("rtp", reason)


def parse_rtp_header(data: bytes | bytearray) -> tuple:
    """Parse the RTP header of ``data`` (RFC 3550 §5.1) without copying anything.

    Returns ``(payload_type, marker, seq, timestamp, ssrc, header_len, ext_profile, ext_start,
    ext_end, payload_end)``:

    - ``marker`` is 0 or 1;
    - ``header_len`` is the offset of the payload (fixed header + CSRCs + extension block);
    - ``ext_profile`` is 0xBEDE (one-byte form), 0x1000-0x100F (two-byte form), another value
      for a non-RFC 8285 extension, or 0 when the X bit is clear;
      ``ext_start``/``ext_end`` delimit the extension elements (0, 0 when there are none);
    - ``payload_end`` is ``len(data)`` minus the RTP padding (the payload is
      ``data[header_len:payload_end]``).

    Raises PacketParseError("rtp", ...) when the packet is shorter than 12 bytes, the version is
    not 2, the CSRC list or the extension block overruns the packet, or the padding length is 0
    or larger than the payload.
    """
    n = len(data)
    if n < 12:
        raise _err(f"packet too short ({n} bytes)")
    b0, b1, seq, ts, ssrc = _unpack_fixed(data, 0)
    if b0 & 0xC0 != 0x80:
        raise _err(f"bad version {b0 >> 6}")
    pos = 12 + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if pos + 4 > n:
            if pos > n:
                raise _err("CSRC list overruns the packet")
            raise _err("extension header overruns the packet")
        ext_profile, words = _unpack_u16x2(data, pos)
        ext_start = pos + 4
        pos = ext_end = ext_start + (words << 2)
        if pos > n:
            raise _err("extension block overruns the packet")
    elif pos > n:
        raise _err("CSRC list overruns the packet")
    else:
        ext_profile = ext_start = ext_end = 0
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or pos + pad > n:
            raise _err(f"invalid padding length {pad}")
        return (b1 & 0x7F, b1 >> 7, seq, ts, ssrc, pos, ext_profile, ext_start, ext_end, n - pad)
    return (b1 & 0x7F, b1 >> 7, seq, ts, ssrc, pos, ext_profile, ext_start, ext_end, n)


def find_extension(
    data: bytes | bytearray, ext_profile: int, ext_start: int, ext_end: int, ext_id: int
) -> tuple[int, int] | None:
    """Locate header extension element ``ext_id``: ``(value_offset, value_length)`` or None.

    One-byte form (RFC 8285 §4.2): 0 bytes are padding, id 15 stops the parse. Two-byte form
    (§4.3): a 0 id byte is padding, the length byte may be 0. Other profiles: None.
    Raises PacketParseError("rtp", ...) when an element overruns the extension block.
    """
    pos = ext_start
    if ext_profile == 0xBEDE:
        while pos < ext_end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            eid = b >> 4
            if eid == 15:
                return None
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            if eid == ext_id:
                return (pos, length)
            pos += length
        return None
    if ext_profile & 0xFFF0 == 0x1000:
        while pos < ext_end:
            eid = data[pos]
            if eid == 0:
                pos += 1
                continue
            if pos + 2 > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            length = data[pos + 1]
            pos += 2
            if pos + length > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            if eid == ext_id:
                return (pos, length)
            pos += length
        return None
    return None


def iter_extensions(
    data: bytes | bytearray, ext_profile: int, ext_start: int, ext_end: int
) -> list[tuple[int, int, int]]:
    """All extension elements as ``[(id, value_offset, value_length), ...]`` in packet order.

    Not for the per-packet path (it allocates); the rebuild path and tests use it.
    Raises PacketParseError("rtp", ...) as :func:`find_extension` does. Unknown profiles: [].
    """
    out: list[tuple[int, int, int]] = []
    pos = ext_start
    if ext_profile == 0xBEDE:
        while pos < ext_end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            eid = b >> 4
            if eid == 15:
                break
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            out.append((eid, pos, length))
            pos += length
    elif ext_profile & 0xFFF0 == 0x1000:
        while pos < ext_end:
            eid = data[pos]
            if eid == 0:
                pos += 1
                continue
            if pos + 2 > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            length = data[pos + 1]
            pos += 2
            if pos + length > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            out.append((eid, pos, length))
            pos += length
    return out


def extensions_of(
    data: bytes | bytearray, ext_profile: int, ext_start: int, ext_end: int
) -> list[tuple[int, bytes]]:
    """All extension elements as ``[(id, value_bytes), ...]`` (input of the rebuild path)."""
    return [
        (eid, bytes(data[off : off + length]))
        for eid, off, length in iter_extensions(data, ext_profile, ext_start, ext_end)
    ]


def read_extension_str(data: bytes | bytearray, off: int, length: int) -> str:
    """Decode a text extension value (``mid``, ``rid``, ``repaired-rid``; RFC 8843 / 8852).

    Raises PacketParseError("rtp", ...) when the value is not ASCII.
    """
    try:
        return bytes(data[off : off + length]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise _err(f"extension text is not ASCII: {exc.reason}") from None


def read_audio_level(data: bytes | bytearray, off: int) -> tuple[bool, int]:
    """RFC 6464 client-to-mixer audio level: ``(voice_activity, level)``; ``level`` is -dBov,
    0 (loudest) .. 127 (silence)."""
    b = data[off]
    return (b & 0x80 != 0, b & 0x7F)


def read_transport_seq(data: bytes | bytearray, off: int) -> int:
    """Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01):
    16-bit big-endian value at ``off``."""
    return _U16.unpack_from(data, off)[0]


def write_transport_seq(buf: bytearray, off: int, transport_seq: int) -> None:
    """Write a 16-bit transport-wide sequence number at ``off`` in place."""
    _U16.pack_into(buf, off, transport_seq & 0xFFFF)


def read_abs_send_time(data: bytes | bytearray, off: int) -> int:
    """abs-send-time (webrtc.org ``abs-send-time``): the raw 24-bit 6.18 fixed-point value,
    in units of 1/262144 s, wrapping every 64 s."""
    return (data[off] << 16) | (data[off + 1] << 8) | data[off + 2]


def rewrite_extension_ids(
    buf: bytearray,
    ext_profile: int,
    ext_start: int,
    ext_end: int,
    id_map: dict[int, int] | Sequence[int],
) -> bool:
    """Rewrite every extension element's id in place through ``id_map`` (fast path).

    ``id_map`` is a dict ``{in_id: out_id}`` or a list indexed by ``in_id``. An element whose id
    maps to 0/None/missing (not negotiated on the consumer side) is overwritten with zero bytes,
    header and value: RFC 8285 §4.2/§4.3 treat each 0 byte as padding, so the block stays valid
    and keeps its size.

    Returns False and leaves ``buf`` unchanged when it cannot be done in place (one-byte form
    and an out id above 14): use :func:`rebuild_packet_with_extensions` then. Returns True
    otherwise (also for a packet without extensions). Raises PacketParseError("rtp", ...) on a
    malformed extension block.
    """
    if ext_profile == 0xBEDE:
        one_byte = True
    elif ext_profile & 0xFFF0 == 0x1000:
        one_byte = False
    else:
        return True
    is_dict = isinstance(id_map, dict)
    n_map = len(id_map)
    # (header_offset, new_id, value_length); collected first so that a refusal writes nothing.
    edits = []
    pos = ext_start
    while pos < ext_end:
        b = buf[pos]
        if b == 0:
            pos += 1
            continue
        if one_byte:
            eid = b >> 4
            if eid == 15:
                break
            length = (b & 0x0F) + 1
            hdr = 1
        else:
            eid = b
            if pos + 2 > ext_end:
                raise _err(f"extension {eid} overruns the extension block")
            length = buf[pos + 1]
            hdr = 2
        if pos + hdr + length > ext_end:
            raise _err(f"extension {eid} overruns the extension block")
        if is_dict:
            new = id_map.get(eid) or 0
        else:
            new = (id_map[eid] or 0) if eid < n_map else 0
        if new != eid:
            if one_byte and new > 14:
                return False
            edits.append((pos, new, hdr + length))
        pos += hdr + length
    for pos, new, size in edits:
        if new == 0:
            buf[pos : pos + size] = bytes(size)
        elif one_byte:
            buf[pos] = (new << 4) | (buf[pos] & 0x0F)
        else:
            buf[pos] = new
    return True


def _ext_block(exts: Iterable[tuple[int, bytes | bytearray]], two_byte: bool) -> tuple[int, bytes]:
    """Encode extension elements; returns ``(profile, elements_padded_to_4_bytes)``.

    The one-byte form is used unless ``two_byte`` is set or an element needs the two-byte form
    (id > 14, empty value or value > 16 bytes). Raises ValueError naming the bad element.
    """
    exts = list(exts)
    for eid, value in exts:
        if not 1 <= eid <= 255:
            raise ValueError(f"extensions: id must be 1..255, got {eid!r}")
        if len(value) > 255:
            raise ValueError(f"extensions: value of id {eid} is longer than 255 bytes")
        if eid > 14 or not 1 <= len(value) <= 16:
            two_byte = True
    parts = []
    if two_byte:
        profile = EXT_PROFILE_TWO_BYTE
        for eid, value in exts:
            parts.append(bytes((eid, len(value))))
            parts.append(bytes(value))
    else:
        profile = EXT_PROFILE_ONE_BYTE
        for eid, value in exts:
            parts.append(bytes(((eid << 4) | (len(value) - 1),)))
            parts.append(bytes(value))
    block = b"".join(parts)
    if len(block) & 3:
        block += bytes(4 - (len(block) & 3))
    return profile, block


def rebuild_packet_with_extensions(
    data: bytes | bytearray,
    header_len: int,
    exts: Iterable[tuple[int, bytes | bytearray]],
    *,
    two_byte: bool = False,
) -> bytearray:
    """Return a copy of RTP packet ``data`` whose extension block holds exactly ``exts``.

    ``header_len`` is the payload offset from :func:`parse_rtp_header`; ``exts`` is
    ``[(id, value_bytes), ...]`` in the order to write. The fixed header (with the X bit set or
    cleared), the CSRCs, the payload and any RTP padding are kept. The one-byte form (RFC 8285
    §4.2) is chosen when every element fits it and ``two_byte`` is false, else the two-byte form.
    Raises ValueError for an id outside 1..255 or a value longer than 255 bytes.
    """
    exts = list(exts)
    csrc_end = 12 + ((data[0] & 0x0F) << 2)
    out = bytearray(data[:csrc_end])
    if exts:
        profile, block = _ext_block(exts, two_byte)
        out[0] |= 0x10
        out += _U16x2.pack(profile, len(block) >> 2)
        out += block
    else:
        out[0] &= ~0x10 & 0xFF
    out += data[header_len:]
    return out


def set_extension(
    buf: bytearray,
    ext_profile: int,
    ext_start: int,
    ext_end: int,
    header_len: int,
    ext_id: int,
    value: bytes | bytearray,
) -> bytearray:
    """Set extension ``ext_id`` to ``value``; returns the packet to send.

    When the element exists with the same value length, it is overwritten in place and ``buf``
    itself is returned. Otherwise (other length, missing element, or no extension block) a
    rebuilt copy is returned (:func:`rebuild_packet_with_extensions`); reparse it if you need
    the new offsets. The fixed header keeps its offsets in both cases.
    """
    loc = find_extension(buf, ext_profile, ext_start, ext_end, ext_id)
    if loc is not None and loc[1] == len(value):
        off = loc[0]
        buf[off : off + len(value)] = value
        return buf
    exts = extensions_of(buf, ext_profile, ext_start, ext_end)
    replaced = False
    for i, (eid, _) in enumerate(exts):
        if eid == ext_id:
            exts[i] = (ext_id, bytes(value))
            replaced = True
    if not replaced:
        exts.append((ext_id, bytes(value)))
    return rebuild_packet_with_extensions(
        buf, header_len, exts, two_byte=ext_profile & 0xFFF0 == 0x1000
    )


def set_mid(
    buf: bytearray,
    ext_profile: int,
    ext_start: int,
    ext_end: int,
    header_len: int,
    mid_ext_id: int,
    mid: str | bytes,
) -> bytearray:
    """Rewrite the ``mid`` extension (RFC 8843 §15) to the consumer's mid; see
    :func:`set_extension` for the in-place / rebuilt result."""
    value = mid.encode("ascii") if isinstance(mid, str) else mid
    return set_extension(buf, ext_profile, ext_start, ext_end, header_len, mid_ext_id, value)


def write_header(
    buf: bytearray,
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    marker: bool | int | None = None,
) -> None:
    """Rewrite payload type, seq (cut to 16 bits), timestamp (cut to 32 bits) and SSRC in place;
    the marker bit too unless ``marker`` is None."""
    if marker is None:
        b1 = (buf[1] & 0x80) | payload_type
    else:
        b1 = (0x80 if marker else 0) | payload_type
    _HDR_TAIL.pack_into(buf, 1, b1, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def build_rtp(
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes | bytearray = b"",
    *,
    marker: bool = False,
    extensions: Iterable[tuple[int, bytes | bytearray]] = (),
    two_byte: bool = False,
    padding: int = 0,
    csrcs: Sequence[int] = (),
) -> bytes:
    """Build an RTP packet (tests, load generator, probation padding).

    ``extensions`` is ``[(id, value_bytes), ...]`` (one-byte form unless ``two_byte`` or an
    element needs two bytes); ``padding`` is the number of RTP padding bytes (0..255, the last
    one holds the count, RFC 3550 §5.1); at most 15 ``csrcs``.
    Raises ValueError naming the bad field.
    """
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload_type must be 0..127, got {payload_type!r}")
    if not 0 <= padding <= 255:
        raise ValueError(f"padding must be 0..255, got {padding!r}")
    if len(csrcs) > 15:
        raise ValueError(f"csrcs: at most 15, got {len(csrcs)}")
    exts = list(extensions)
    b0 = 0x80 | len(csrcs) | (0x20 if padding else 0) | (0x10 if exts else 0)
    parts = [
        RTP_FIXED.pack(
            b0, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
    ]
    if csrcs:
        parts.append(struct.pack(f"!{len(csrcs)}I", *csrcs))
    if exts:
        profile, block = _ext_block(exts, two_byte)
        parts.append(_U16x2.pack(profile, len(block) >> 2))
        parts.append(block)
    parts.append(bytes(payload))
    if padding:
        parts.append(bytes(padding - 1) + bytes((padding,)))
    return b"".join(parts)


def rtx_wrap(
    packet: bytes | bytearray, rtx_payload_type: int, rtx_ssrc: int, rtx_seq: int
) -> bytearray:
    """Encapsulate an RTP packet in RTX (RFC 4588 §4): the original seq (OSN) becomes the first
    two payload bytes; payload type, seq and SSRC become the RTX ones. Header extensions and
    the marker bit are kept; RTP padding is dropped. Raises PacketParseError on a bad packet.
    """
    hdr = parse_rtp_header(packet)
    header_len = hdr[5]
    out = bytearray(packet[:header_len])
    out += _U16.pack(hdr[2])
    out += packet[header_len : hdr[9]]
    out[0] &= 0xDF  # clear P
    b1 = (out[1] & 0x80) | rtx_payload_type
    _HDR_TAIL.pack_into(out, 1, b1, rtx_seq & 0xFFFF, hdr[3], rtx_ssrc)
    return out


def rtx_unwrap(
    packet: bytes | bytearray, original_payload_type: int, original_ssrc: int
) -> bytearray | None:
    """Recover the original packet from an RTX packet (RFC 4588 §4).

    Returns None for an RTX packet without an OSN (padding-only probes, empty payload). The
    result carries the OSN as seq, the original payload type and SSRC, and no RTP padding.
    Raises PacketParseError on a bad packet.
    """
    hdr = parse_rtp_header(packet)
    header_len = hdr[5]
    payload_end = hdr[9]
    if payload_end - header_len < 2:
        return None
    osn = _U16.unpack_from(packet, header_len)[0]
    out = bytearray(packet[:header_len])
    out += packet[header_len + 2 : payload_end]
    out[0] &= 0xDF
    _HDR_TAIL.pack_into(out, 1, (out[1] & 0x80) | original_payload_type, osn, hdr[3], original_ssrc)
    return out


# --- keyframe detection ------------------------------------------------------------------------


def is_keyframe_vp8(data: bytes | bytearray, start: int, end: int) -> bool:
    """VP8 (RFC 7741 §4.2-4.3): start of partition 0 (S=1, PID=0) and the VP8 payload header's
    P bit (inverse key frame flag) is 0."""
    if end - start < 2:
        return False
    b = data[start]
    if b & 0x17 != 0x10:  # S set, PID 0
        return False
    pos = start + 1
    if b & 0x80:  # X: extension byte
        x = data[pos]
        pos += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if pos >= end:
        return False
    return data[pos] & 0x01 == 0


def is_keyframe_vp9(data: bytes | bytearray, start: int, end: int) -> bool:
    """VP9 (draft-ietf-payload-vp9 §4.2): P=0 (no inter-picture dependency), B=1 (start of a
    frame) and spatial layer 0 (or no layer indices), as mediasoup decides."""
    if end - start < 1:
        return False
    b = data[start]
    if b & 0x48 != 0x08:  # P clear, B set
        return False
    if not b & 0x20:  # no layer indices
        return True
    pos = start + 1
    if b & 0x80:  # I: picture id
        if pos >= end:
            return False
        pos += 2 if data[pos] & 0x80 else 1
    if pos >= end:
        return False
    return (data[pos] >> 1) & 0x07 == 0


def is_keyframe_h264(data: bytes | bytearray, start: int, end: int) -> bool:
    """H264 (RFC 6184 §5.6-5.8): a single NAL unit of type 5 (IDR) or 7 (SPS), a STAP-A holding
    one, or the starting FU-A/FU-B fragment of one."""
    if end - start < 1:
        return False
    nal = data[start] & 0x1F
    if nal == 5 or nal == 7:
        return True
    if nal == 24:  # STAP-A: [size16, NAL]...
        pos = start + 1
        while pos + 3 <= end:
            size = (data[pos] << 8) | data[pos + 1]
            sub = data[pos + 2] & 0x1F
            if sub == 5 or sub == 7:
                return True
            pos += 2 + size
        return False
    if nal == 28 or nal == 29:  # FU-A / FU-B
        if end - start < 2:
            return False
        fu = data[start + 1]
        return bool(fu & 0x80) and (fu & 0x1F) in (5, 7)
    return False


def is_keyframe_av1(data: bytes | bytearray, start: int, end: int) -> bool:
    """AV1 (AV1 RTP spec §4.4): the aggregation header's N bit (first packet of a coded video
    sequence)."""
    if end - start < 1:
        return False
    return data[start] & 0x08 != 0


_KEYFRAME_FUNCS = {}
for _name, _fn in (
    ("vp8", is_keyframe_vp8),
    ("vp9", is_keyframe_vp9),
    ("h264", is_keyframe_h264),
    ("av1", is_keyframe_av1),
):
    # Exact hits for the spellings callers use, so the per-packet lookup needs no lower().
    _KEYFRAME_FUNCS[_name] = _KEYFRAME_FUNCS["video/" + _name] = _fn
    _KEYFRAME_FUNCS["video/" + _name.upper()] = _fn
del _name, _fn


def is_keyframe(codec: str, data: bytes | bytearray, payload_start: int, payload_end: int) -> bool:
    """True when the RTP payload ``data[payload_start:payload_end]`` starts a keyframe.

    ``codec`` is "vp8", "vp9", "h264", "av1" or a mimeType ("video/VP8", case-insensitive).
    Unknown codecs (audio included) give False; a truncated payload gives False.
    """
    fn = _KEYFRAME_FUNCS.get(codec)
    if fn is None:
        fn = _KEYFRAME_FUNCS.get(codec.lower())
        if fn is None:
            return False
    return fn(data, payload_start, payload_end)
