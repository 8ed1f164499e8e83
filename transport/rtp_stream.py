"""Per-stream RTP statistics and RTCP report fields.

- :class:`RecvStreamStats`: one per received (producer) stream: RFC 3550 §A.1 seq validity,
  §A.3 expected/lost, §A.8 interarrival jitter, SR bookkeeping for LSR/DLSR, the RR report
  block, and mediasoup's ``inbound-rtp`` stats entry.
- :class:`SendStreamStats`: one per sent (consumer) stream: counters, the SR's NTP↔RTP mapping,
  RTT and loss from RR report blocks, and mediasoup's ``outbound-rtp`` stats entry.
- :class:`RateCalculator`: bitrate over a sliding window (mediasoup ``RateCalculator``).

Score (0..10): each interval's delivered ratio ``d`` gives ``round(d**4 * 10)`` (mediasoup's
formula) and the stream score is mediasoup's weighted average of the last 24 interval scores
(newer weigh more). mediasoup also discounts packets repaired by RTX and, on the send side,
uses the RR's cumulative loss against packets sent; here the receive side uses the interval's
expected/received counts and the send side the RR's fraction lost: a simple first version.

Sans-I/O: all times are ``now_ms`` (monotonic ms); the wall clock for NTP comes in as
``unix_ms`` only where an SR is built.
"""

from __future__ import annotations

from raysfu.transport.rtcp import ntp_from_ms, ntp_middle32

__all__ = ["CounterRate", "RateCalculator", "RecvStreamStats", "SendStreamStats", "MAX_DROPOUT", "MAX_MISORDER"]

#: A jump forward of this many seqs or more is suspicious (RFC 3550 §A.1, mediasoup).
MAX_DROPOUT = 3000
#: A packet up to this many seqs behind the highest is accepted as reordered (mediasoup; RFC: 100).
MAX_MISORDER = 1500
SCORE_HISTOGRAM_LENGTH = 24


class RateCalculator:
    """Bytes over a sliding window, as a bitrate (mediasoup ``RateCalculator``: 1 s window).

    The window is cut into ``window_ms // slot_ms`` slots; ``update`` is O(1), ``rate_bps`` is
    O(slots). The rate is the bytes in the last ``window_ms`` * 8000 / ``window_ms``.
    """

    __slots__ = ("window_ms", "slot_ms", "_n", "_bytes", "_slot_ids")

    def __init__(self, window_ms: int = 1000, slot_ms: int = 10) -> None:
        if slot_ms <= 0 or window_ms < slot_ms:
            raise ValueError(f"window_ms/slot_ms invalid: {window_ms!r}/{slot_ms!r}")
        self.window_ms = window_ms
        self.slot_ms = slot_ms
        self._n = window_ms // slot_ms
        self._bytes = [0] * self._n
        self._slot_ids = [-1] * self._n

    def update(self, size_bytes: int, now_ms: int) -> None:
        """Count ``size_bytes`` at ``now_ms``."""
        slot_id = now_ms // self.slot_ms
        i = slot_id % self._n
        if self._slot_ids[i] != slot_id:
            self._slot_ids[i] = slot_id
            self._bytes[i] = size_bytes
        else:
            self._bytes[i] += size_bytes

    def rate_bps(self, now_ms: int) -> int:
        """Bits per second over the window ending at ``now_ms``."""
        oldest = now_ms // self.slot_ms - self._n
        total = 0
        for slot_id, b in zip(self._slot_ids, self._bytes):
            if slot_id > oldest:
                total += b
        return total * 8000 // self.window_ms


class CounterRate:
    """A bitrate from a growing byte counter sampled now and then, instead of one update per
    packet (the send side's per-packet path then only adds to its counter).

    ``rate_bps(byte_count, now_ms)`` records a sample (at most one per ``min_gap_ms``) and
    returns the bytes between the newest sample at least ``window_ms`` old (else the oldest)
    and now, as bits per second. Samples come from the stats calls and from each SR built
    (every second), so the rate covers the last 1-2 s: mediasoup's 1 s ``RateCalculator``
    window, measured less often.
    """

    __slots__ = ("window_ms", "min_gap_ms", "_samples")

    def __init__(self, window_ms: int = 1000, min_gap_ms: int = 100) -> None:
        if window_ms <= 0 or min_gap_ms < 0:
            raise ValueError(f"window_ms/min_gap_ms invalid: {window_ms!r}/{min_gap_ms!r}")
        self.window_ms = window_ms
        self.min_gap_ms = min_gap_ms
        self._samples: list[tuple[int, int]] = []  # (now_ms, byte_count), oldest first

    def sample(self, byte_count: int, now_ms: int) -> None:
        """Record the counter at ``now_ms``; keeps only what the window needs."""
        samples = self._samples
        if samples and now_ms - samples[-1][0] < self.min_gap_ms:
            return
        samples.append((now_ms, byte_count))
        horizon = now_ms - self.window_ms
        # keep the newest sample that is at least a window old, and everything after it
        k = 0
        while k + 1 < len(samples) and samples[k + 1][0] <= horizon:
            k += 1
        if k:
            del samples[:k]

    def rate_bps(self, byte_count: int, now_ms: int) -> int:
        """Bits per second between the reference sample and ``byte_count`` at ``now_ms``."""
        self.sample(byte_count, now_ms)
        t0, b0 = self._samples[0]
        if now_ms <= t0:
            return 0
        return (byte_count - b0) * 8000 // max(now_ms - t0, self.window_ms)


def _interval_score(delivered_ratio: float) -> int:
    if delivered_ratio <= 0:
        return 0
    return int(round(min(delivered_ratio, 1.0) ** 4 * 10))


class _Score:
    """mediasoup ``RtpStream::UpdateScore``: weighted average of the last 24 interval scores."""

    __slots__ = ("score", "_history")

    def __init__(self, score: int = 10) -> None:
        self.score = score
        self._history: list[int] = []

    def add(self, sample: int) -> int:
        h = self._history
        if len(h) == SCORE_HISTOGRAM_LENGTH:
            del h[0]
        h.append(sample)
        weighted = sum((i + 1) * s for i, s in enumerate(h))
        weights = len(h) * (len(h) + 1) // 2
        self.score = int(round(weighted / weights))
        return self.score

    def reset(self, score: int) -> None:
        self._history.clear()
        self.score = score


class _StreamStats:
    """What :class:`RecvStreamStats` and :class:`SendStreamStats` share: the stream's identity
    (``ssrc``, ``clock_rate`` in Hz, ``kind``, ``mime_type``, ``rid``, ``rtx_ssrc``), the counters
    both report (``packet_count``, ``byte_count``, ``packets_retransmitted``,
    ``packets_repaired``, ``nack_count``, ``nack_packet_count``, ``pli_count``, ``fir_count``),
    ``fraction_lost`` (0..255), ``round_trip_time_ms`` (None until known), the 1 s bitrate
    window and the 0..10 score. Raises ValueError when ``clock_rate`` <= 0.

    A subclass sets its own fields in ``_init_own`` (called last by ``__init__``) and builds its
    mediasoup stats entry between ``_stats_head`` and ``_stats_tail``.
    """

    def __init__(
        self,
        ssrc: int,
        clock_rate: int,
        kind: str = "video",
        mime_type: str = "",
        *,
        rid: str | None = None,
        rtx_ssrc: int | None = None,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be > 0, got {clock_rate!r}")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.kind = kind
        self.mime_type = mime_type
        self.rid = rid
        self.rtx_ssrc = rtx_ssrc
        self.packet_count = 0
        self.byte_count = 0
        self.packets_retransmitted = 0
        self.packets_repaired = 0
        self.nack_count = 0
        self.nack_packet_count = 0
        self.pli_count = 0
        self.fir_count = 0
        self.fraction_lost = 0
        self.round_trip_time_ms: float | None = None
        self._rate: RateCalculator | None = None  # set by the receive side's _init_own
        self._score = _Score(10)
        self._init_own()

    def _init_own(self) -> None:
        """Set the subclass's own fields (called at the end of ``__init__``)."""

    @property
    def score(self) -> int:
        """Stream score 0..10 (receive side: delivered ratio per interval; send side: RR
        fraction lost)."""
        return self._score.score

    def reset_score(self, score: int) -> None:
        """Set the score (e.g. 0 on RTP inactivity, 10 when packets come back or the stream
        restarts)."""
        self._score.reset(score)

    def bitrate_bps(self, now_ms: int) -> int:
        """Media bitrate (received or sent) over the last second."""
        return self._rate.rate_bps(now_ms)

    def _stats_head(self, stats_type: str, now_ms: int, packets_discarded: int) -> dict:
        """The leading keys of mediasoup's ``RtpStream*Stats`` entry, ``type`` to ``score``."""
        return {
            "type": stats_type,
            "timestamp": now_ms,
            "ssrc": self.ssrc,
            "kind": self.kind,
            "mimeType": self.mime_type,
            "packetsLost": self.packets_lost,
            "fractionLost": self.fraction_lost,
            "packetsDiscarded": packets_discarded,
            "packetsRetransmitted": self.packets_retransmitted,
            "packetsRepaired": self.packets_repaired,
            "nackCount": self.nack_count,
            "nackPacketCount": self.nack_packet_count,
            "pliCount": self.pli_count,
            "firCount": self.fir_count,
            "score": self.score,
        }

    def _stats_tail(self, stats: dict) -> dict:
        """Add the optional keys (``rtxSsrc``, ``rid``, ``roundTripTime``) and return ``stats``."""
        if self.rtx_ssrc is not None:
            stats["rtxSsrc"] = self.rtx_ssrc
        if self.rid is not None:
            stats["rid"] = self.rid
        if self.round_trip_time_ms is not None:
            stats["roundTripTime"] = self.round_trip_time_ms
        return stats


class RecvStreamStats(_StreamStats):
    """Statistics of one received RTP stream (a producer's encoding).

    Feed ``on_packet`` for every packet on the media SSRC and ``on_rtx_packet`` for every
    packet recovered from RTX, both with extended seqs (``seq.SeqUnwrapper``). Counters are
    plain int attributes the owner may bump too: ``packet_count``, ``byte_count`` (media, no
    padding-only packets), ``packets_discarded``, ``packets_retransmitted``, ``packets_repaired``,
    ``nack_count``, ``nack_packet_count``, ``pli_count``, ``fir_count`` (requests sent toward the
    producer). ``fraction_lost`` (0..255) is the value of the last report block; ``jitter`` is
    in RTP timestamp units; ``round_trip_time_ms`` is None unless the owner sets it (XR DLRR).
    ``resync_count`` grows when the sender restarted its seqs (two sequential packets after a
    big jump): reset the stream's ``NackGenerator`` then.
    """

    def _init_own(self) -> None:
        self._rate = RateCalculator()
        self.packets_discarded = 0
        self.resync_count = 0
        self.jitter = 0.0
        self.last_sr_ntp: tuple[int, int] | None = None  # (ntp_sec, ntp_frac) of the last SR
        self.last_sr_rtp_ts: int | None = None
        self._started = False
        self._base_ext = 0  # first ext seq (since the last resync)
        self._max_ext = 0
        self._bad_ext = -1
        self._received = 0  # media packets counted for loss (RFC 3550 A.3 "received")
        self._expected_prior = 0
        self._received_prior = 0
        self._expected_prior_score = 0
        self._received_prior_score = 0
        self._transit: int | None = None
        self._lsr = 0
        self._last_sr_ms: int | None = None

    # -- packets --------------------------------------------------------------------------------

    def _update_seq(self, ext_seq: int) -> bool:
        """RFC 3550 §A.1 validity with mediasoup's limits; False when the packet is discarded."""
        if not self._started:
            self._started = True
            self._base_ext = self._max_ext = ext_seq
            return True
        d = ext_seq - self._max_ext
        if 0 <= d < MAX_DROPOUT:
            self._max_ext = ext_seq if d else self._max_ext
            return True
        if -MAX_MISORDER <= d < 0:
            return True
        if ext_seq == self._bad_ext:
            # Two sequential packets after a big jump: the sender restarted; re-sync.
            self._base_ext = self._max_ext = ext_seq
            self._received = 0
            self._expected_prior = self._received_prior = 0
            self._expected_prior_score = self._received_prior_score = 0
            self._transit = None
            self.resync_count += 1
            return True
        self._bad_ext = ext_seq + 1
        self.packets_discarded += 1
        return False

    def on_packet(
        self, ext_seq: int, rtp_ts: int, size_bytes: int, now_ms: int, *, padding_only: bool = False
    ) -> bool:
        """Account for a packet received on the media SSRC; False when it is discarded as
        invalid (seq jump, RFC 3550 §A.1): the caller drops it."""
        d = ext_seq - self._max_ext
        if 0 < d < MAX_DROPOUT and self._started:
            self._max_ext = ext_seq  # in order with a permissible gap (the common case)
        elif not self._update_seq(ext_seq):
            return False
        self._received += 1
        # Interarrival jitter (RFC 3550 §A.8), arrival converted to RTP timestamp units.
        transit = (now_ms * self.clock_rate // 1000 - rtp_ts) & 0xFFFFFFFF
        prev = self._transit
        self._transit = transit
        if prev is not None:
            d = ((transit - prev + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self.jitter += (abs(d) - self.jitter) / 16.0
        if not padding_only:
            self.packet_count += 1
            self.byte_count += size_bytes
            self._rate.update(size_bytes, now_ms)
        return True

    def on_rtx_packet(self, ext_seq: int, size_bytes: int, now_ms: int, *, repaired: bool) -> bool:
        """Account for a packet recovered from RTX (``repaired``: it filled a NACKed gap, e.g.
        ``NackGenerator.repaired``). False when its seq is invalid. Recovered packets count as
        retransmitted, not as received for loss (mediasoup)."""
        if not self._update_seq(ext_seq):
            return False
        self.packets_retransmitted += 1
        if repaired:
            self.packets_repaired += 1
            self.packet_count += 1
            self.byte_count += size_bytes
            self._rate.update(size_bytes, now_ms)
        return True

    def on_nack_sent(self, n_seqs: int) -> None:
        """One NACK feedback for ``n_seqs`` seqs was sent toward the producer."""
        self.nack_count += 1
        self.nack_packet_count += n_seqs

    # -- RTCP -----------------------------------------------------------------------------------

    def on_sr(self, ntp_sec: int, ntp_frac: int, rtp_ts: int, now_ms: int) -> None:
        """Remember a sender report (LSR and its arrival time for DLSR, the NTP↔RTP pair) and
        update the score, as mediasoup does on each SR."""
        self._lsr = ntp_middle32(ntp_sec, ntp_frac)
        self._last_sr_ms = now_ms
        self.last_sr_ntp = (ntp_sec, ntp_frac)
        self.last_sr_rtp_ts = rtp_ts
        self.update_score()

    @property
    def expected(self) -> int:
        """Packets expected since the first (RFC 3550 §A.3)."""
        return self._max_ext - self._base_ext + 1 if self._started else 0

    @property
    def packets_lost(self) -> int:
        """Cumulative lost packets (expected - received; negative with duplicates)."""
        return self.expected - self._received

    @property
    def ext_highest_seq(self) -> int:
        """The RR's 32-bit extended highest seq (cycles << 16 | seq) relative to the first."""
        return ((self._base_ext & 0xFFFF) + self._max_ext - self._base_ext) & 0xFFFFFFFF

    def build_report_block(self, now_ms: int) -> tuple:
        """RR report block ``(ssrc, fraction_lost, cumulative_lost, ext_highest_seq, jitter,
        lsr, dlsr)`` (RFC 3550 §6.4.1, §A.3): fraction over the interval since the previous
        block (this call starts a new interval), lost clamped to 24-bit signed, dlsr in
        1/65536 s since the last SR (0, 0 without one)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self._received - self._received_prior
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            self.fraction_lost = 0
        else:
            self.fraction_lost = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-0x800000, min(0x7FFFFF, expected - self._received))
        if self._last_sr_ms is None:
            lsr = dlsr = 0
        else:
            lsr = self._lsr
            dlsr = ((now_ms - self._last_sr_ms) * 65536 // 1000) & 0xFFFFFFFF
        jitter = int(self.jitter)
        return (self.ssrc, self.fraction_lost, lost, self.ext_highest_seq, jitter, lsr, dlsr)

    # -- score and stats ------------------------------------------------------------------------

    def update_score(self) -> int:
        """Add the interval since the last call to the score; returns the new score. Called on
        each SR; call it periodically for senders that send no SR."""
        expected = self.expected
        received = self._received
        exp_i = expected - self._expected_prior_score
        rec_i = received - self._received_prior_score
        self._expected_prior_score = expected
        self._received_prior_score = received
        if exp_i <= 0:
            return self._score.add(10)
        return self._score.add(_interval_score(rec_i / exp_i))

    def to_stats(self, now_ms: int) -> dict:
        """mediasoup's ``RtpStreamRecvStats`` entry (``type`` "inbound-rtp", camelCase keys)."""
        stats = self._stats_head("inbound-rtp", now_ms, self.packets_discarded)
        stats["jitter"] = int(self.jitter)
        stats["packetCount"] = self.packet_count
        stats["byteCount"] = self.byte_count
        stats["bitrate"] = self.bitrate_bps(now_ms)
        stats["bitrateByLayer"] = {}
        return self._stats_tail(stats)


class SendStreamStats(_StreamStats):
    """Statistics of one sent RTP stream (a consumer's stream) and its SR/RR handling.

    Counters (int attributes): ``packet_count``, ``byte_count`` (media packets on the SSRC),
    ``packets_retransmitted``, ``packets_repaired`` (first resends), ``nack_count``,
    ``nack_packet_count`` (NACKs received), ``pli_count``, ``fir_count`` (requests received;
    the owner bumps them). From RRs: ``packets_lost``, ``fraction_lost``,
    ``round_trip_time_ms`` (None until measured).
    """

    def _init_own(self) -> None:
        self.packets_lost = 0
        self._sent_rate = CounterRate()
        self._max_ts: int | None = None
        self._max_ts_ms = 0
        self._unix_offset_ms: int | None = None  # unix_ms - now_ms at the last SR built

    def on_packet(self, rtp_ts: int, size_bytes: int, now_ms: int) -> None:
        """A media packet was sent (its RTP timestamp, size in bytes). The bitrate comes from
        ``byte_count`` (:class:`CounterRate`), so this is all the per-packet work."""
        self.packet_count += 1
        self.byte_count += size_bytes
        m = self._max_ts
        if m is None:
            self.on_first_packet(rtp_ts, size_bytes, now_ms)
        elif 0 < ((rtp_ts - m) & 0xFFFFFFFF) < 0x80000000:
            self._max_ts = rtp_ts
            self._max_ts_ms = now_ms

    def on_first_packet(self, rtp_ts: int, size_bytes: int, now_ms: int) -> None:
        """The first media packet (already counted): its timestamp starts the SR clock and its
        send time is the bitrate's zero point."""
        self._max_ts = rtp_ts
        self._max_ts_ms = now_ms
        self._sent_rate.sample(self.byte_count - size_bytes, now_ms)

    def on_retransmitted(self, size_bytes: int, now_ms: int, *, first_time: bool = True) -> None:
        """A packet was resent (RTX or plain) in answer to a NACK; ``first_time`` counts it as
        repaired too (mediasoup counts a packet's first resend as a repair)."""
        self.packets_retransmitted += 1
        if first_time:
            self.packets_repaired += 1

    def on_nack_received(self, n_seqs: int) -> None:
        """A NACK asking for ``n_seqs`` packets arrived."""
        self.nack_count += 1
        self.nack_packet_count += n_seqs

    def build_sr(self, now_ms: int, unix_ms: int) -> tuple | None:
        """Fields for ``rtcp.build_sr``: ``(ssrc, ntp_sec, ntp_frac, rtp_ts, packet_count,
        octet_count)``, or None before the first packet (mediasoup sends no SR then).

        NTP is ``unix_ms``; the RTP timestamp is the one "now" on the media clock: the newest
        sent timestamp advanced by ``(now_ms - its send time) * clock_rate / 1000``.
        """
        if self._max_ts is None:
            return None
        self._sent_rate.sample(self.byte_count, now_ms)
        self._unix_offset_ms = unix_ms - now_ms
        ntp_sec, ntp_frac = ntp_from_ms(unix_ms)
        rtp_ts = (self._max_ts + (now_ms - self._max_ts_ms) * self.clock_rate // 1000) & 0xFFFFFFFF
        return (self.ssrc, ntp_sec, ntp_frac, rtp_ts, self.packet_count & 0xFFFFFFFF,
                self.byte_count & 0xFFFFFFFF)

    def on_rr_block(self, block: tuple, now_ms: int) -> float | None:
        """Apply an RR report block about this stream, ``(ssrc, fraction_lost, packets_lost,
        highest_seq, jitter, lsr, dlsr)`` as ``rtcp.parse_rtcp`` gives it.

        Updates loss, score and RTT; returns the RTT in ms or None when the block has no LSR
        (no SR of ours reached the receiver yet). RTT = now (NTP middle 32 bits, from the
        unix↔monotonic offset of our last SR) - LSR - DLSR (RFC 3550 §6.4.1), 0 if negative.
        """
        _, fraction_lost, packets_lost, _, _, lsr, dlsr = block
        self.fraction_lost = fraction_lost
        self.packets_lost = packets_lost
        self._score.add(_interval_score((256 - fraction_lost) / 256))
        if not lsr or self._unix_offset_ms is None:
            return None
        now_mid = ntp_middle32(*ntp_from_ms(now_ms + self._unix_offset_ms))
        rtt_units = (now_mid - lsr - dlsr) & 0xFFFFFFFF
        if rtt_units >= 0x80000000:
            rtt_units = 0
        self.round_trip_time_ms = rtt_units * 1000 / 65536
        return self.round_trip_time_ms

    def bitrate_bps(self, now_ms: int) -> int:
        """Media bitrate sent over the last 1-2 s (see :class:`CounterRate`)."""
        return self._sent_rate.rate_bps(self.byte_count, now_ms)

    def to_stats(self, now_ms: int) -> dict:
        """mediasoup's ``RtpStreamSendStats`` entry (``type`` "outbound-rtp", camelCase keys)."""
        stats = self._stats_head("outbound-rtp", now_ms, 0)
        stats["packetCount"] = self.packet_count
        stats["byteCount"] = self.byte_count
        stats["bitrate"] = self.bitrate_bps(now_ms)
        return self._stats_tail(stats)
