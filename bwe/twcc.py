"""Transport-wide congestion control feedback (transport-cc): wire codec, receive-side recorder
and send-side history.

Source: draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1 (RTPFB, FMT 15). Behaviour of the
recorder follows libwebrtc ``RemoteEstimatorProxy`` / mediasoup
``TransportCongestionControlServer`` (feedback every 100 ms, late packets re-reported), the send
history follows libwebrtc m77 ``TransportFeedbackAdapter`` (60 s window, lost entries, remote
times rebased on the local clock). Sans-I/O: time is always an argument in microseconds.

FCI layout (after the RTCP header and the two SSRCs)::

    base sequence number (16) | packet status count (16)
    reference time (24, signed, 64 ms units) | fb pkt count (8)
    packet chunks (16 bits each) ... | recv deltas (8 or 16 bits each) ...

Packet chunks:

- run length: ``0 | S(2) | run length(13)``;
- status vector: ``1 | 0 | 14 one-bit symbols`` or ``1 | 1 | 7 two-bit symbols``.

Symbols: 0 = not received, 1 = received with a small delta (1 byte, 0..255 × 250 µs),
2 = received with a large or negative delta (2 bytes signed × 250 µs), 3 = reserved (rejected).
The first delta is relative to ``reference time × 64 ms``, each later one to the previous received
packet, in sequence order.

Parsed feedback shape (``parse_feedback``)::

    (base_seq, status_count, reference_time_64ms, fb_count, [(seq16, delta_us | None), ...])

with exactly ``status_count`` entries in sequence order; ``None`` means not received.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtcp import RTCP_RTPFB, build_feedback as _build_rtcp_feedback, parse_rtcp

__all__ = [
    "TWCC_FMT",
    "DELTA_TICK_US",
    "REFERENCE_TICK_US",
    "build_fci",
    "build_feedback",
    "parse_feedback",
    "parse_feedback_packet",
    "feedback_arrivals_us",
    "TwccRecorder",
    "PacketResult",
    "SendHistory",
]

TWCC_FMT = 15
DELTA_TICK_US = 250  # recv delta unit
REFERENCE_TICK_US = 64_000  # reference time unit
_REF_WRAP = 1 << 24
_MAX_RUN = 0x1FFF  # 13-bit run length
_MAX_STATUS_COUNT = 0xFFFF

_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2

_FCI_HEAD = struct.Struct("!HHI")  # base seq, status count, reference time << 8 | fb count
_U16 = struct.Struct("!H")
_I16 = struct.Struct("!h")


def _err(reason: str) -> PacketParseError:
    return PacketParseError("twcc", reason)


# --- encoder ---------------------------------------------------------------------------------


def _encode_chunks(symbols: list[int]) -> bytearray:
    """Packet chunks for ``symbols`` with libwebrtc's greedy choice: keep collecting while the
    pending symbols still fit one chunk (7 of any kind, 14 without a large delta, or an
    all-equal run up to 8191), else emit the pending ones as the densest chunk that holds them."""
    out = bytearray()
    pend: list[int] = []  # pending symbols (for an all-equal run only the first is kept)
    size = 0
    same = True
    large = False

    def emit() -> None:
        nonlocal pend, size, same, large
        if same:
            out.extend(_U16.pack((pend[0] << 13) | size))
            pend, size, same, large = [], 0, True, False
        elif size == 14:  # no large symbol possible here
            v = 0x8000
            for i, s in enumerate(pend):
                v |= s << (13 - i)
            out.extend(_U16.pack(v))
            pend, size, same, large = [], 0, True, False
        else:  # 7..13 symbols with a large one: first 7 as a two-bit vector, keep the rest
            v = 0xC000
            for i in range(7):
                v |= pend[i] << (12 - 2 * i)
            out.extend(_U16.pack(v))
            pend = pend[7:]
            size = len(pend)
            same = all(s == pend[0] for s in pend)
            large = _LARGE in pend

    for s in symbols:
        if not (
            size < 7
            or (size < 14 and not large and s != _LARGE)
            or (size < _MAX_RUN and same and pend[0] == s)
        ):
            emit()
        if size:
            if same and s != pend[0]:
                same = False
        if size < 14 or not same:
            pend.append(s)
        size += 1
        if s == _LARGE:
            large = True
    if size:
        if same:
            out.extend(_U16.pack((pend[0] << 13) | size))
        elif size <= 7:
            v = 0xC000
            for i, s in enumerate(pend):
                v |= s << (12 - 2 * i)
            out.extend(_U16.pack(v))
        else:
            v = 0x8000
            for i, s in enumerate(pend):
                v |= s << (13 - i)
            out.extend(_U16.pack(v))
    return out


class _FciWriter:
    """Incremental FCI builder over extended seqs (libwebrtc ``TransportFeedback`` style).

    ``add(ext_seq, arrival_us)`` returns False (and changes nothing) when the packet does not fit
    this feedback: its delta exceeds the 16-bit range, the status count would pass 65535, or the
    received-packet limit is reached. Deltas are rounded half away from zero against the
    *quantized* running time, so errors do not accumulate.
    """

    __slots__ = ("base_seq", "ref_ticks", "fb_count", "_next", "_last_us", "_symbols",
                 "_deltas", "_received", "_max_received")

    def __init__(self, base_ext: int, first_arrival_us: int, fb_count: int,
                 max_received: int = 0xFFFF) -> None:
        self.base_seq = base_ext
        self.ref_ticks = first_arrival_us // REFERENCE_TICK_US
        self.fb_count = fb_count & 0xFF
        self._next = base_ext
        self._last_us = self.ref_ticks * REFERENCE_TICK_US
        self._symbols: list[int] = []
        self._deltas = bytearray()
        self._received = 0
        self._max_received = max_received

    @property
    def received(self) -> int:
        return self._received

    def add(self, ext_seq: int, arrival_us: int) -> bool:
        if ext_seq < self._next:
            raise ValueError(f"seq {ext_seq} added out of order (next is {self._next})")
        if ext_seq - self.base_seq + 1 > _MAX_STATUS_COUNT or self._received >= self._max_received:
            return False
        d = arrival_us - self._last_us
        ticks = (d + 125) // 250 if d >= 0 else -((-d + 125) // 250)
        if 0 <= ticks <= 0xFF:
            sym = _SMALL
        elif -0x8000 <= ticks <= 0x7FFF:
            sym = _LARGE
        else:
            return False
        gap = ext_seq - self._next
        if gap:
            self._symbols.extend([_NOT_RECEIVED] * gap)
        self._symbols.append(sym)
        if sym == _SMALL:
            self._deltas.append(ticks)
        else:
            self._deltas.extend(_I16.pack(ticks))
        self._last_us += ticks * 250
        self._next = ext_seq + 1
        self._received += 1
        return True

    def add_lost_until(self, ext_seq_exclusive: int) -> None:
        """Report every seq below ``ext_seq_exclusive`` not yet covered as not received."""
        gap = min(ext_seq_exclusive, self.base_seq + _MAX_STATUS_COUNT) - self._next
        if gap > 0:
            self._symbols.extend([_NOT_RECEIVED] * gap)
            self._next += gap

    def fci(self) -> bytes:
        head = _FCI_HEAD.pack(self.base_seq & 0xFFFF, len(self._symbols),
                              ((self.ref_ticks % _REF_WRAP) << 8) | self.fb_count)
        return head + _encode_chunks(self._symbols) + self._deltas


def build_fci(base_seq: int, fb_count: int, arrivals) -> bytes:
    """Transport-cc FCI (no RTCP header, not padded) for ``arrivals``.

    ``arrivals``: iterable of ``(transport_seq16, arrival_us | None)``; every seq lies at a
    forward 16-bit distance 0..65534 from ``base_seq`` (wrap-aware), in any order, without
    duplicates. Seqs between ``base_seq`` and the highest listed one that are not listed, or
    listed with ``None``, are reported as not received; the status count runs to the highest
    listed seq. The reference time is ``floor(first received arrival / 64 ms)`` (mod 2^24) and
    arrival times are quantized to 250 µs. ``fb_count`` is taken mod 256.

    Raises ValueError when the list is empty, a seq repeats, or a delta between consecutive
    received packets (in seq order) is outside the signed 16-bit range (±8.19 s).
    """
    if not 0 <= base_seq <= 0xFFFF:
        raise ValueError(f"base_seq must be 0..65535, got {base_seq!r}")
    by_off: dict[int, int | None] = {}
    for seq, arrival_us in arrivals:
        if not 0 <= seq <= 0xFFFF:
            raise ValueError(f"transport_seq must be 0..65535, got {seq!r}")
        off = (seq - base_seq) & 0xFFFF
        if off == 0xFFFF:
            raise ValueError(f"transport_seq {seq} is not after base_seq {base_seq}")
        if off in by_off:
            raise ValueError(f"transport_seq {seq} listed twice")
        by_off[off] = arrival_us
    if not by_off:
        raise ValueError("arrivals must not be empty")
    offs = sorted(by_off)
    first = next((by_off[o] for o in offs if by_off[o] is not None), 0)
    w = _FciWriter(base_seq, first, fb_count)
    for o in offs:
        a = by_off[o]
        if a is not None and not w.add(base_seq + o, a):
            raise ValueError(f"arrival delta of transport_seq {(base_seq + o) & 0xFFFF} does "
                             "not fit 16 bits of 250 us")
    w.add_lost_until(base_seq + offs[-1] + 1)
    return w.fci()


def build_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, fb_count: int,
                   arrivals) -> bytes:
    """Full RTCP transport-cc packet (RTPFB 205, FMT 15, RTCP-padded to 32 bits) around
    :func:`build_fci` ``(base_seq, fb_count, arrivals)``. Raises ValueError as that does."""
    return _build_rtcp_feedback(RTCP_RTPFB, TWCC_FMT, sender_ssrc, media_ssrc,
                                build_fci(base_seq, fb_count, arrivals))


# --- parser ----------------------------------------------------------------------------------


def parse_feedback(fci: bytes | bytearray) -> tuple:
    """Parse a transport-cc FCI (what ``parse_rtcp`` yields as ``("twcc", s, m, fci)``).

    Returns ``(base_seq, status_count, reference_time_64ms, fb_count, packets)``:
    ``reference_time_64ms`` is the signed 24-bit field (draft §3.1), ``packets`` is a list of
    ``(seq16, delta_us | None)`` of length ``status_count``, where ``delta_us`` is the received
    delta (multiple of 250 µs; from the reference time for the first received packet, else from
    the previous received one) and ``None`` means not received. Symbols of a status-vector chunk
    beyond ``status_count`` are ignored; up to 3 trailing bytes (zero padding) are allowed.

    Raises PacketParseError("twcc", ...) on a short FCI, a zero status count, a reserved symbol
    (3), chunks or deltas running past the end, or more than 3 trailing bytes.
    """
    n = len(fci)
    if n < 8:
        raise _err(f"FCI too short ({n} bytes)")
    base_seq, count, word = _FCI_HEAD.unpack_from(fci, 0)
    if count == 0:
        raise _err("packet status count is 0")
    ref = word >> 8
    if ref & 0x800000:
        ref -= _REF_WRAP
    symbols: list[int] = []
    pos = 8
    while len(symbols) < count:
        if pos + 2 > n:
            raise _err(f"chunks end after {len(symbols)} of {count} statuses")
        c = (fci[pos] << 8) | fci[pos + 1]
        pos += 2
        if not c & 0x8000:
            s = (c >> 13) & 3
            if s == 3:
                raise _err("reserved symbol in run-length chunk")
            symbols.extend([s] * min(c & _MAX_RUN, count - len(symbols)))
        elif not c & 0x4000:
            symbols.extend([(c >> (13 - i)) & 1 for i in range(min(14, count - len(symbols)))])
        else:
            for i in range(min(7, count - len(symbols))):
                s = (c >> (12 - 2 * i)) & 3
                if s == 3:
                    raise _err("reserved symbol in status-vector chunk")
                symbols.append(s)
    packets: list[tuple[int, int | None]] = []
    append = packets.append
    for i, s in enumerate(symbols):
        seq = (base_seq + i) & 0xFFFF
        if s == _SMALL:
            if pos >= n:
                raise _err("recv deltas end early")
            append((seq, fci[pos] * 250))
            pos += 1
        elif s == _LARGE:
            if pos + 2 > n:
                raise _err("recv deltas end early")
            append((seq, _I16.unpack_from(fci, pos)[0] * 250))
            pos += 2
        else:
            append((seq, None))
    if n - pos > 3:
        raise _err(f"{n - pos} trailing bytes after the recv deltas")
    return (base_seq, count, ref, word & 0xFF, packets)


def parse_feedback_packet(data: bytes | bytearray) -> tuple[int, int, tuple]:
    """Parse one full RTCP datagram holding a transport-cc packet.

    Returns ``(sender_ssrc, media_ssrc, parsed)`` with ``parsed`` as :func:`parse_feedback`.
    Raises PacketParseError when the RTCP framing is bad or the first packet is not transport-cc.
    """
    items = parse_rtcp(data)
    if items[0][0] != "twcc":
        raise _err(f"not a transport-cc packet ({items[0][0]})")
    _, sender_ssrc, media_ssrc, fci = items[0]
    return sender_ssrc, media_ssrc, parse_feedback(fci)


def feedback_arrivals_us(parsed: tuple) -> list[tuple[int, int | None]]:
    """``[(seq16, arrival_us | None)]`` from a parsed feedback: the remote clock reading of each
    received packet, ``reference_time × 64 ms`` plus the running sum of deltas."""
    t = parsed[2] * REFERENCE_TICK_US
    out = []
    for seq, d in parsed[4]:
        if d is None:
            out.append((seq, None))
        else:
            t += d
            out.append((seq, t))
    return out


# --- receive side ----------------------------------------------------------------------------


class TwccRecorder:
    """Receive side: logs transport-wide seqs with arrival times and emits transport-cc
    feedback periodically (mediasoup ``TransportCongestionControlServer``, libwebrtc
    ``RemoteEstimatorProxy``).

    - ``on_packet(transport_seq16, arrival_us)`` per incoming RTP packet (unwrapped internally;
      duplicates keep the first arrival).
    - ``on_timer(now_us) -> list[bytes]``: when ``now_us >= next_timer_us()``, full RTCP packets
      covering every seq from the oldest unreported one to the newest received one (gaps as not
      received). A feedback is split when it would hold more than ``max_packets_per_feedback``
      received packets or a delta overflows 16 bits; ``fb_count`` increments per packet.
    - A packet older than what was already reported (reordering) moves the window back, so the
      next feedback re-reports from that seq, as libwebrtc does. Arrivals are kept
      ``history_us`` (500 ms) after being reported; later stragglers are dropped and counted in
      ``late_packets``.
    """

    __slots__ = ("sender_ssrc", "media_ssrc", "interval_us", "max_packets_per_feedback",
                 "history_us", "_arrivals", "_max_ext", "_start", "_floor", "_next_due",
                 "_fb_count", "late_packets", "feedbacks_sent")

    def __init__(self, sender_ssrc: int = 0, media_ssrc: int = 0, *, interval_us: int = 100_000,
                 max_packets_per_feedback: int = 400, history_us: int = 500_000) -> None:
        if interval_us <= 0:
            raise ValueError(f"interval_us must be > 0, got {interval_us!r}")
        if not 1 <= max_packets_per_feedback <= 0xFFFF:
            raise ValueError(f"max_packets_per_feedback must be 1..65535, got "
                             f"{max_packets_per_feedback!r}")
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.interval_us = interval_us
        self.max_packets_per_feedback = max_packets_per_feedback
        self.history_us = history_us
        self._arrivals: dict[int, int] = {}  # ext seq -> arrival_us
        self._max_ext = -1
        self._start = -1  # oldest ext seq not yet reported
        self._floor = -1  # ext seqs below this are too late
        self._next_due: int | None = None
        self._fb_count = 0
        self.late_packets = 0
        self.feedbacks_sent = 0

    def on_packet(self, transport_seq: int, arrival_us: int) -> None:
        """Record one received packet's 16-bit transport-wide seq and arrival time."""
        m = self._max_ext
        if m < 0:
            ext = 0x10000 + transport_seq
            self._max_ext = self._start = ext
            self._floor = 0  # reordering before the first packet is still accepted
            if self._next_due is None:
                self._next_due = arrival_us + self.interval_us
        else:
            ext = m + (((transport_seq - m + 0x8000) & 0xFFFF) - 0x8000)
            if ext > m:
                self._max_ext = ext
            elif ext < self._floor:
                self.late_packets += 1
                return
        arrivals = self._arrivals
        if ext not in arrivals:
            arrivals[ext] = arrival_us
            if ext < self._start:
                self._start = ext

    def next_timer_us(self) -> int | None:
        """When ``on_timer`` has work next (None before the first packet)."""
        return self._next_due

    def on_timer(self, now_us: int) -> list[bytes]:
        """Feedback packets due at ``now_us`` (empty when not yet due or nothing is new)."""
        if self._next_due is None or now_us < self._next_due:
            return []
        self._next_due += self.interval_us
        if self._next_due <= now_us:
            self._next_due = now_us + self.interval_us
        out = self.flush()
        self._prune(now_us)
        return out

    def flush(self) -> list[bytes]:
        """Feedback packets for everything not yet reported, now (ignores the timer)."""
        out: list[bytes] = []
        arrivals = self._arrivals
        end = self._max_ext + 1
        s = self._start
        if s < 0 or s >= end:
            return out
        w: _FciWriter | None = None
        while s < end:
            a = arrivals.get(s)
            if a is not None:
                if w is None:
                    w = _FciWriter(self._start, a, self._fb_count, self.max_packets_per_feedback)
                if not w.add(s, a):
                    out.append(self._finish(w))
                    self._start = s
                    w = None
                    continue  # retry s in a new feedback
            s += 1
        if w is not None:
            out.append(self._finish(w))
        self._start = end
        return out

    def _finish(self, w: _FciWriter) -> bytes:
        self._fb_count = (self._fb_count + 1) & 0xFF
        self.feedbacks_sent += 1
        return _build_rtcp_feedback(RTCP_RTPFB, TWCC_FMT, self.sender_ssrc, self.media_ssrc,
                                    w.fci())

    def _prune(self, now_us: int) -> None:
        cutoff = now_us - self.history_us
        start = self._start
        old = [e for e, a in self._arrivals.items() if e < start and a < cutoff]
        if old:
            floor = max(old) + 1
            if floor > self._floor:
                self._floor = floor
            self._arrivals = {e: a for e, a in self._arrivals.items() if e >= self._floor}


# --- send side -------------------------------------------------------------------------------


class PacketResult(NamedTuple):
    """One packet of a feedback as the estimator consumes it (goog_cc ``PacketResult``).

    ``transport_seq`` is the extended (unwrapped) seq, ``send_us`` the local send time,
    ``recv_us`` the remote arrival rebased on the local clock (only differences are meaningful)
    or None when reported lost, ``size_bytes`` the size given to ``on_packet_sent``.
    """

    transport_seq: int
    send_us: int
    recv_us: int | None
    size_bytes: int


class SendHistory:
    """Send side: transport seq → (send time, size), matched against feedback (libwebrtc m77
    ``TransportFeedbackAdapter``).

    - ``on_packet_sent(transport_seq16, send_us, size_bytes) -> ext_seq`` at socket-write time;
      entries older than ``window_us`` (60 s) behind the newest send are dropped.
    - ``on_feedback(parsed, now_us) -> list[PacketResult]`` for every seq of the feedback still in
      the history, lost ones included, in seq order. Remote times: the first feedback's reference
      time is mapped to ``now_us``; later ones advance by the (wrap-aware, 2^24 × 64 ms)
      difference of reference times. Seqs not in the history are counted in ``unknown_packets``.
    """

    __slots__ = ("window_us", "_packets", "_last_ext", "_oldest_ext", "_ref_ticks",
                 "_ref_offset_us", "unknown_packets")

    def __init__(self, window_us: int = 60_000_000) -> None:
        self.window_us = window_us
        self._packets: dict[int, tuple[int, int]] = {}
        self._last_ext = -1
        self._oldest_ext = 0
        self._ref_ticks: int | None = None  # last wire reference time (unsigned 24 bit)
        self._ref_offset_us = 0  # local time of the current unwrapped reference
        self.unknown_packets = 0

    def __len__(self) -> int:
        return len(self._packets)

    def on_packet_sent(self, transport_seq: int, send_us: int, size_bytes: int) -> int:
        """Record a sent packet; returns its extended seq."""
        last = self._last_ext
        if last < 0:
            ext = self._oldest_ext = 0x10000 + (transport_seq & 0xFFFF)
        else:
            ext = last + (((transport_seq - last + 0x8000) & 0xFFFF) - 0x8000)
        if ext > last:
            self._last_ext = ext
        packets = self._packets
        packets[ext] = (send_us, size_bytes)
        cutoff = send_us - self.window_us
        o = self._oldest_ext
        while o < self._last_ext:
            p = packets.get(o)
            if p is not None and p[0] >= cutoff:
                break
            if p is not None:
                del packets[o]
            o += 1
        self._oldest_ext = o
        return ext

    def on_feedback(self, parsed: tuple, now_us: int) -> list[PacketResult]:
        """Match a parsed feedback (:func:`parse_feedback` shape) against the history."""
        base_seq, _, ref, _, entries = parsed
        ref &= _REF_WRAP - 1
        if self._ref_ticks is None:
            self._ref_offset_us = now_us
        else:
            d = (ref - self._ref_ticks) & (_REF_WRAP - 1)
            if d >= _REF_WRAP >> 1:
                d -= _REF_WRAP
            self._ref_offset_us += d * REFERENCE_TICK_US
        self._ref_ticks = ref
        last = self._last_ext
        if last < 0:
            self.unknown_packets += len(entries)
            return []
        ext = last + (((base_seq - last + 0x8000) & 0xFFFF) - 0x8000)
        t = self._ref_offset_us
        packets = self._packets
        out: list[PacketResult] = []
        for _, delta in entries:
            if delta is not None:
                t += delta
            p = packets.get(ext)
            if p is None:
                self.unknown_packets += 1
            else:
                out.append(PacketResult(ext, p[0], None if delta is None else t, p[1]))
            ext += 1
        return out
