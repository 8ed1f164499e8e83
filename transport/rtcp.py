"""RTCP codec: compound packet parsing into plain tuples, and builders returning bytes.

RTCP is not per-packet work (a few packets a second per stream), so items are small tuples.

Parsed item shapes (first element names the kind):

- ``("sr", ssrc, ntp_sec, ntp_frac, rtp_ts, packet_count, octet_count, reports)``
- ``("rr", ssrc, reports)``, where ``reports`` is a list of report blocks
  ``(ssrc, fraction_lost, packets_lost, highest_seq, jitter, lsr, dlsr)``; ``fraction_lost``
  is 0..255 (x/256), ``packets_lost`` is the signed 24-bit cumulative count, ``lsr``/``dlsr``
  are in 1/65536 s (RFC 3550 §6.4.1)
- ``("sdes", [(ssrc, cname_or_None), ...])``
- ``("bye", [ssrc, ...])``
- ``("nack", sender_ssrc, media_ssrc, [seq16, ...])`` expanded from PID+BLP, wrapping at 65535
- ``("pli", sender_ssrc, media_ssrc)``
- ``("fir", sender_ssrc, [(ssrc, seq_nr), ...])``
- ``("remb", sender_ssrc, bitrate_bps, [ssrc, ...])``
- ``("twcc", sender_ssrc, media_ssrc, fci_bytes)`` (parsed by ``bwe``)
- ``("xr", sender_ssrc, report_blocks_bytes)``
- ``("app", pt, subtype)`` and ``("unknown", pt, fmt)`` for everything else

Sources: RFC 3550 §6 (SR, RR, SDES, BYE, APP, compound, padding), RFC 4585 §6 (generic NACK,
PLI), RFC 5104 §4.3.1 (FIR), draft-alvestrand-rmcat-remb-03 (REMB),
draft-holmer-rmcat-transport-wide-cc-extensions-01 (transport-cc, RTPFB FMT 15), RFC 3611 (XR).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from raysfu.transport.errors import PacketParseError

__all__ = [
    "RTCP_SR",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_BYE",
    "RTCP_APP",
    "RTCP_RTPFB",
    "RTCP_PSFB",
    "RTCP_XR",
    "parse_rtcp",
    "build_sr",
    "build_rr",
    "build_sdes",
    "build_bye",
    "build_nack",
    "build_pli",
    "build_fir",
    "build_remb",
    "build_feedback",
    "compound",
    "ntp_from_ms",
    "ms_from_ntp",
    "ntp_middle32",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_U32x2 = struct.Struct("!II")
_SR_INFO = struct.Struct("!IIIIII")  # ssrc, ntp sec, ntp frac, rtp ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction<<24|lost24, ext highest seq, jitter, lsr, dlsr
_NACK_ITEM = struct.Struct("!HH")
_FIR_ITEM = struct.Struct("!IB3x")
_REMB = struct.Struct("!4sBBH")

_NTP_EPOCH_OFFSET_S = 2208988800  # 1900-01-01 .. 1970-01-01


def _err(reason: str) -> PacketParseError:
    return PacketParseError("rtcp", reason)


def _parse_blocks(body: bytes | bytearray, pos: int, count: int) -> list[tuple]:
    reports = []
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        reports.append((ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return reports


def _parse_sdes(body: bytes | bytearray, count: int) -> list[tuple[int, str | None]]:
    items = []
    pos = 0
    n = len(body)
    for _ in range(count):
        if pos + 4 > n:
            raise _err("SDES chunk truncated")
        ssrc = _U32.unpack_from(body, pos)[0]
        pos += 4
        cname = None
        while True:
            if pos >= n:
                raise _err("SDES chunk without END item")
            item_type = body[pos]
            if item_type == 0:
                pos = (pos + 4) & ~3  # END, then pad to the next 32-bit boundary
                break
            if pos + 2 > n or pos + 2 + body[pos + 1] > n:
                raise _err("SDES item overruns the packet")
            length = body[pos + 1]
            if item_type == 1:
                try:
                    cname = bytes(body[pos + 2 : pos + 2 + length]).decode("utf-8")
                except UnicodeDecodeError:
                    raise _err("SDES CNAME is not UTF-8") from None
            pos += 2 + length
        items.append((ssrc, cname))
    return items


def parse_rtcp(data: bytes | bytearray) -> list[tuple]:
    """Split a (compound) RTCP packet into item tuples (shapes in the module docstring).

    Raises PacketParseError("rtcp", ...) when any packet of the compound is malformed: shorter
    than its header, version not 2, length field overrunning the datagram, bad padding, a body
    too short for its report count / FCI, trailing bytes. The caller drops the whole datagram.
    """
    items: list[tuple] = []
    n = len(data)
    pos = 0
    if n < 4:
        raise _err(f"packet too short ({n} bytes)")
    while pos < n:
        if pos + 4 > n:
            raise _err("trailing bytes after the last packet")
        b0, pt, words = _HDR.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise _err(f"bad version {b0 >> 6}")
        end = pos + 4 + (words << 2)
        if end > n:
            raise _err(f"length field overruns the datagram (pt {pt})")
        body_end = end
        if b0 & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > end - pos - 4:
                raise _err(f"invalid padding length {pad}")
            body_end = end - pad
        body = data[pos + 4 : body_end]
        items.append(_parse_one(pt, b0 & 0x1F, body))
        pos = end
    return items


def _parse_one(pt: int, rc: int, body: bytes | bytearray) -> tuple:
    blen = len(body)
    if pt == RTCP_SR:
        if blen < 24 + 24 * rc:
            raise _err(f"SR too short for {rc} report blocks")
        ssrc, ntp_sec, ntp_frac, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 0)
        return ("sr", ssrc, ntp_sec, ntp_frac, rtp_ts, packets, octets, _parse_blocks(body, 24, rc))
    if pt == RTCP_RR:
        if blen < 4 + 24 * rc:
            raise _err(f"RR too short for {rc} report blocks")
        return ("rr", _U32.unpack_from(body, 0)[0], _parse_blocks(body, 4, rc))
    if pt == RTCP_SDES:
        return ("sdes", _parse_sdes(body, rc))
    if pt == RTCP_BYE:
        if blen < 4 * rc:
            raise _err(f"BYE too short for {rc} sources")
        return ("bye", list(struct.unpack_from(f"!{rc}I", body, 0)))
    if pt == RTCP_APP:
        if blen < 8:
            raise _err("APP too short")
        return ("app", pt, rc)
    if pt == RTCP_RTPFB or pt == RTCP_PSFB:
        if blen < 8:
            raise _err(f"feedback packet too short (pt {pt} fmt {rc})")
        sender_ssrc, media_ssrc = _U32x2.unpack_from(body, 0)
        fci = body[8:]
        if pt == RTCP_RTPFB:
            if rc == 1:
                return ("nack", sender_ssrc, media_ssrc, _parse_nack_fci(fci))
            if rc == 15:
                return ("twcc", sender_ssrc, media_ssrc, bytes(fci))
            return ("unknown", pt, rc)
        if rc == 1:
            return ("pli", sender_ssrc, media_ssrc)
        if rc == 4:
            if len(fci) % 8:
                raise _err("FIR FCI length is not a multiple of 8")
            return ("fir", sender_ssrc, [e for e in _FIR_ITEM.iter_unpack(fci)])
        if rc == 15 and fci[:4] == b"REMB":
            return _parse_remb(sender_ssrc, fci)
        return ("unknown", pt, rc)
    if pt == RTCP_XR:
        if blen < 4:
            raise _err("XR too short")
        return ("xr", _U32.unpack_from(body, 0)[0], bytes(body[4:]))
    return ("unknown", pt, rc)


def _parse_nack_fci(fci: bytes | bytearray) -> list[int]:
    if len(fci) & 3 or not fci:
        raise _err("NACK FCI length is not a positive multiple of 4")
    seqs = []
    for pid, blp in _NACK_ITEM.iter_unpack(fci):
        seqs.append(pid)
        i = 1
        while blp:
            if blp & 1:
                seqs.append((pid + i) & 0xFFFF)
            blp >>= 1
            i += 1
    return seqs


def _parse_remb(sender_ssrc: int, fci: bytes | bytearray) -> tuple:
    if len(fci) < 8:
        raise _err("REMB too short")
    _, num, b1, mantissa_lo = _REMB.unpack_from(fci, 0)
    if len(fci) < 8 + 4 * num:
        raise _err(f"REMB too short for {num} SSRCs")
    bitrate = (((b1 & 0x03) << 16) | mantissa_lo) << (b1 >> 2)
    return ("remb", sender_ssrc, bitrate, list(struct.unpack_from(f"!{num}I", fci, 8)))


# --- builders --------------------------------------------------------------------------------


def _packet(count_or_fmt: int, pt: int, body: bytes) -> bytes:
    """Header + body; a body not 32-bit aligned gets RTCP padding (P bit, last byte = count)."""
    pad = -len(body) & 3
    if pad:
        body += bytes(pad - 1) + bytes((pad,))
        return _HDR.pack(0xA0 | count_or_fmt, pt, len(body) >> 2) + body
    return _HDR.pack(0x80 | count_or_fmt, pt, len(body) >> 2) + body


def _blocks(reports: Iterable[tuple]) -> tuple[int, bytes]:
    parts = []
    for ssrc, fraction_lost, packets_lost, highest_seq, jitter, lsr, dlsr in reports:
        if not 0 <= fraction_lost <= 255:
            raise ValueError(f"reports: fraction_lost must be 0..255, got {fraction_lost!r}")
        lost = max(-0x800000, min(0x7FFFFF, packets_lost)) & 0xFFFFFF
        parts.append(
            _BLOCK.pack(
                ssrc,
                (fraction_lost << 24) | lost,
                highest_seq & 0xFFFFFFFF,
                int(jitter) & 0xFFFFFFFF,
                lsr & 0xFFFFFFFF,
                dlsr & 0xFFFFFFFF,
            )
        )
    if len(parts) > 31:
        raise ValueError(f"reports: at most 31 report blocks, got {len(parts)}")
    return len(parts), b"".join(parts)


def build_sr(
    ssrc: int,
    ntp_sec: int,
    ntp_frac: int,
    rtp_ts: int,
    packet_count: int,
    octet_count: int,
    reports: Iterable[tuple] = (),
) -> bytes:
    """Sender report (RFC 3550 §6.4.1); ``reports`` are report-block 7-tuples (module docstring),
    at most 31. Counts are cut to 32 bits."""
    count, blocks = _blocks(reports)
    info = _SR_INFO.pack(
        ssrc,
        ntp_sec & 0xFFFFFFFF,
        ntp_frac & 0xFFFFFFFF,
        rtp_ts & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
    )
    return _packet(count, RTCP_SR, info + blocks)


def build_rr(ssrc: int, reports: Iterable[tuple] = ()) -> bytes:
    """Receiver report (RFC 3550 §6.4.2); ``reports`` are report-block 7-tuples, at most 31."""
    count, blocks = _blocks(reports)
    return _packet(count, RTCP_RR, _U32.pack(ssrc) + blocks)


def build_sdes(items: Iterable[tuple[int, str]]) -> bytes:
    """SDES with one CNAME chunk per ``(ssrc, cname)`` (RFC 3550 §6.5); cname <= 255 bytes."""
    chunks = []
    for ssrc, cname in items:
        text = cname.encode("utf-8")
        if len(text) > 255:
            raise ValueError("items: cname longer than 255 bytes")
        chunk = _U32.pack(ssrc) + bytes((1, len(text))) + text + b"\x00"
        chunks.append(chunk + bytes(-len(chunk) & 3))
    if len(chunks) > 31:
        raise ValueError(f"items: at most 31 chunks, got {len(chunks)}")
    return _packet(len(chunks), RTCP_SDES, b"".join(chunks))


def build_bye(ssrcs: Iterable[int]) -> bytes:
    """BYE for ``ssrcs`` (RFC 3550 §6.6), without a reason; at most 31 sources."""
    ssrcs = list(ssrcs)
    if len(ssrcs) > 31:
        raise ValueError(f"ssrcs: at most 31, got {len(ssrcs)}")
    return _packet(len(ssrcs), RTCP_BYE, struct.pack(f"!{len(ssrcs)}I", *ssrcs))


def build_feedback(pt: int, fmt: int, sender_ssrc: int, media_ssrc: int, fci: bytes = b"") -> bytes:
    """Generic RTPFB (205) / PSFB (206) packet (RFC 4585 §6.1) with ``fci`` as given (padded
    with RTCP padding when not 32-bit aligned, as transport-cc feedback may need)."""
    if pt not in (RTCP_RTPFB, RTCP_PSFB):
        raise ValueError(f"pt must be 205 or 206, got {pt!r}")
    if not 0 <= fmt <= 31:
        raise ValueError(f"fmt must be 0..31, got {fmt!r}")
    return _packet(fmt, pt, _U32x2.pack(sender_ssrc, media_ssrc) + bytes(fci))


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: Iterable[int]) -> bytes:
    """Generic NACK (RFC 4585 §6.2.1) for 16-bit ``seqs`` packed as PID+BLP items.

    Seqs are ordered wrap-aware relative to the first one (65535, 0, 1 is one run: PID 65535
    with BLP bits for 0 and 1); duplicates are removed. Raises ValueError when ``seqs`` is empty.
    """
    seqs = list(seqs)
    if not seqs:
        raise ValueError("seqs: empty")
    first = seqs[0] & 0xFFFF
    ext = sorted({first + (((s - first + 0x8000) & 0xFFFF) - 0x8000) for s in seqs})
    parts = []
    i = 0
    n = len(ext)
    while i < n:
        pid = ext[i]
        blp = 0
        i += 1
        while i < n and ext[i] - pid <= 16:
            blp |= 1 << (ext[i] - pid - 1)
            i += 1
        parts.append(_NACK_ITEM.pack(pid & 0xFFFF, blp))
    return _packet(1, RTCP_RTPFB, _U32x2.pack(sender_ssrc, media_ssrc) + b"".join(parts))


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """Picture Loss Indication (RFC 4585 §6.3.1)."""
    return _packet(1, RTCP_PSFB, _U32x2.pack(sender_ssrc, media_ssrc))


def build_fir(sender_ssrc: int, entries: Iterable[tuple[int, int]], media_ssrc: int = 0) -> bytes:
    """Full Intra Request (RFC 5104 §4.3.1) with ``entries`` ``[(ssrc, seq_nr 0..255), ...]``;
    the header's media SSRC is 0 as the RFC says unless ``media_ssrc`` is given."""
    fci = b"".join(_FIR_ITEM.pack(ssrc, seq_nr & 0xFF) for ssrc, seq_nr in entries)
    if not fci:
        raise ValueError("entries: empty")
    return _packet(4, RTCP_PSFB, _U32x2.pack(sender_ssrc, media_ssrc) + fci)


def build_remb(sender_ssrc: int, bitrate_bps: int, ssrcs: Iterable[int]) -> bytes:
    """REMB (draft-alvestrand-rmcat-remb-03 §2.2): bitrate as 6-bit exponent + 18-bit mantissa
    (rounded down), media SSRC 0, then the SSRC list (at most 255)."""
    ssrcs = list(ssrcs)
    if bitrate_bps < 0:
        raise ValueError(f"bitrate_bps must be >= 0, got {bitrate_bps!r}")
    if len(ssrcs) > 255:
        raise ValueError(f"ssrcs: at most 255, got {len(ssrcs)}")
    mantissa = int(bitrate_bps)
    exp = 0
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    if exp > 63:
        raise ValueError("bitrate_bps too large for REMB")
    fci = _REMB.pack(b"REMB", len(ssrcs), (exp << 2) | (mantissa >> 16), mantissa & 0xFFFF)
    fci += struct.pack(f"!{len(ssrcs)}I", *ssrcs)
    return _packet(15, RTCP_PSFB, _U32x2.pack(sender_ssrc, 0) + fci)


def compound(*parts: bytes) -> bytes:
    """Concatenate RTCP packets into one compound datagram (RFC 3550 §6.1)."""
    return b"".join(parts)


# --- NTP time ----------------------------------------------------------------------------------


def ntp_from_ms(unix_ms: int) -> tuple[int, int]:
    """Unix time in ms → 64-bit NTP timestamp ``(seconds, fraction)`` (RFC 3550 §4), seconds
    cut to 32 bits (era 0 wraps in 2036)."""
    sec, ms = divmod(int(unix_ms), 1000)
    return ((sec + _NTP_EPOCH_OFFSET_S) & 0xFFFFFFFF, (ms << 32) // 1000)


def ms_from_ntp(ntp_sec: int, ntp_frac: int) -> int:
    """NTP ``(seconds, fraction)`` → Unix time in ms (rounded down). Seconds with the top bit
    clear are taken as era 1 (from 2036-02-07), as RFC 4330 §3 suggests, so 1968-2104 round-trip."""
    if ntp_sec < 0x80000000:
        ntp_sec += 1 << 32
    return (ntp_sec - _NTP_EPOCH_OFFSET_S) * 1000 + ((ntp_frac * 1000) >> 32)


def ntp_middle32(ntp_sec: int, ntp_frac: int) -> int:
    """The middle 32 bits of an NTP timestamp (the SR's LSR value, RFC 3550 §6.4.1): low 16 bits
    of the seconds, high 16 bits of the fraction; unit 1/65536 s."""
    return ((ntp_sec & 0xFFFF) << 16) | (ntp_frac >> 16)
