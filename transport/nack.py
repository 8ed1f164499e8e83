"""NACK generation (receive side) and the retransmission buffer (send side).

- :class:`NackGenerator`: one per producer RTP stream; decides which missing packets to NACK
  toward the producer and when (mediasoup ``NackGenerator.cpp`` behaviour and constants).
- :class:`RetransmissionBuffer`: one per consumer RTP stream; keeps the last outgoing packets so
  a consumer's NACK is answered locally (mediasoup ``RtpRetransmissionBuffer.cpp`` /
  ``RtpStreamSend.cpp``: 2500 items, 2000 ms video / 1000 ms audio, one resend per RTT).

Both are sans-I/O: time comes in as ``now_ms`` (monotonic ms), timers are pulled through
``next_timer_ms()`` / ``on_timer(now_ms)``.
"""

from __future__ import annotations

__all__ = [
    "MAX_PACKET_AGE",
    "MAX_NACK_PACKETS",
    "MAX_NACK_RETRIES",
    "DEFAULT_RTT_MS",
    "SEND_NACK_DELAY_VIDEO_MS",
    "NackGenerator",
    "RetransmissionBuffer",
]

#: Missing packets older than this many seqs behind the newest are forgotten (mediasoup).
MAX_PACKET_AGE = 10000
#: More missing packets than this: clear the list and ask for a keyframe (mediasoup).
MAX_NACK_PACKETS = 1000
#: A seq is NACKed at most this many times (mediasoup).
MAX_NACK_RETRIES = 10
#: RTT assumed until one is measured, spacing NACK retries (mediasoup).
DEFAULT_RTT_MS = 100
#: mediasoup's periodic NACK timer; :class:`NackGenerator` schedules exact deadlines instead.
TIMER_INTERVAL_MS = 40
#: mediasoup ``Producer.cpp`` SendNackDelay for video streams (0 for audio).
SEND_NACK_DELAY_VIDEO_MS = 10


class NackGenerator:
    """Tracks missing packets of one received stream and says when to NACK them.

    Feed every packet of the stream (original SSRC and RTX-recovered ones) with its *extended*
    seq. Missing seqs become NACK entries; an entry is sent once ``send_nack_delay_ms`` has
    passed since the gap was seen, then retried every RTT (``set_rtt``, 100 ms until known), at
    most ``MAX_NACK_RETRIES`` times. Outputs are 16-bit seqs ready for ``rtcp.build_nack``.

    Keyframes: mediasoup remembers keyframe seqs and, when the list would exceed
    ``MAX_NACK_PACKETS``, first forgets missing packets older than a keyframe; if still too many,
    it clears the list and asks for a keyframe (``keyframe_required`` becomes True; the caller
    requests one and resets the flag). With ``clear_on_keyframe`` (default), a keyframe also
    forgets every older missing packet at once, since a decoder restarting at the keyframe
    does not need them; pass False for mediasoup's exact behaviour.

    Counters (ints): ``nack_count`` (NACK batches returned), ``nack_packet_count`` (seqs
    requested, retries included), ``recovered_count`` (NACKed packets that arrived),
    ``given_up_count`` (entries dropped after the last retry), ``keyframe_request_count``.
    After each ``on_packet``, ``repaired`` says whether that packet filled a NACKed gap.
    Call ``reset()`` on pause and when the sender restarts its seqs
    (``RecvStreamStats.resync_count`` grew): a big backward jump otherwise reads as old packets.
    """

    __slots__ = (
        "send_nack_delay_ms",
        "clear_on_keyframe",
        "keyframe_required",
        "repaired",
        "nack_count",
        "nack_packet_count",
        "recovered_count",
        "given_up_count",
        "keyframe_request_count",
        "_rtt_ms",
        "_started",
        "_last",
        "_nacks",
        "_keyframes",
        "_recovered",
        "_next_due",
    )

    def __init__(self, send_nack_delay_ms: int = 0, *, clear_on_keyframe: bool = True) -> None:
        if send_nack_delay_ms < 0:
            raise ValueError(f"send_nack_delay_ms must be >= 0, got {send_nack_delay_ms!r}")
        self.send_nack_delay_ms = send_nack_delay_ms
        self.clear_on_keyframe = clear_on_keyframe
        self.keyframe_required = False
        self.repaired = False
        self.nack_count = 0
        self.nack_packet_count = 0
        self.recovered_count = 0
        self.given_up_count = 0
        self.keyframe_request_count = 0
        self._rtt_ms = DEFAULT_RTT_MS
        self._started = False
        self._last = 0
        # ext_seq -> [created_ms, sent_ms (-1 = never), retries]; insertion order is seq order.
        self._nacks: dict[int, list[int]] = {}
        self._keyframes: list[int] = []  # ascending ext seqs of keyframe packets
        self._recovered: dict[int, None] = {}  # ext seqs newer than _last that came via RTX
        self._next_due: int | None = None

    @property
    def rtt_ms(self) -> int:
        """RTT used to space retries (ms)."""
        return self._rtt_ms

    @property
    def pending(self) -> list[int]:
        """Extended seqs currently tracked as missing, oldest first."""
        return list(self._nacks)

    def set_rtt(self, rtt_ms: float) -> None:
        """Set the RTT that spaces retries; 0 or less restores the 100 ms default."""
        self._rtt_ms = int(rtt_ms) if rtt_ms > 0 else DEFAULT_RTT_MS

    def reset(self) -> None:
        """Forget everything (mediasoup resets on pause); counters are kept."""
        self._started = False
        self._nacks.clear()
        self._keyframes.clear()
        self._recovered.clear()
        self._next_due = None
        self.keyframe_required = False

    def next_timer_ms(self) -> int | None:
        """Earliest time (ms) at which :meth:`on_timer` may have NACKs to send, or None.

        May be early (an entry was removed meanwhile): ``on_timer`` then returns [].
        """
        return self._next_due if self._nacks else None

    def on_packet(
        self, ext_seq: int, now_ms: int, *, is_keyframe: bool = False, is_recovered: bool = False
    ) -> list[int]:
        """Account for a received packet; returns 16-bit seqs to NACK now (usually [])."""
        self.repaired = False
        if not self._started:
            self._started = True
            self._last = ext_seq
            if is_keyframe:
                self._keyframes.append(ext_seq)
            return []
        last = self._last
        nacks = self._nacks
        if ext_seq == last + 1 and not is_keyframe and not is_recovered:
            # In order (the common case): no new gap.
            self._last = ext_seq
            if nacks:
                due = self._next_due
                if due is not None and due <= now_ms:
                    return self._batch(now_ms)
            return []
        if ext_seq == last:
            return []
        if ext_seq < last:
            # Reordered, a retransmission, or a duplicate.
            if nacks.pop(ext_seq, None) is not None:
                self.repaired = True
                self.recovered_count += 1
            return []
        if is_keyframe:
            keyframes = self._keyframes
            keyframes.append(ext_seq)
            if keyframes[0] < ext_seq - MAX_PACKET_AGE:
                self._keyframes = [k for k in keyframes if k >= ext_seq - MAX_PACKET_AGE]
        if is_recovered:
            # Newer than the newest seen yet came through RTX: remember it so that the gap
            # filled later does not NACK it, but do not move the newest seq.
            recovered = self._recovered
            recovered[ext_seq] = None
            if len(recovered) > 64:
                horizon = ext_seq - MAX_PACKET_AGE
                for k in [k for k in recovered if k < horizon]:
                    del recovered[k]
            return []
        self._last = ext_seq
        if is_keyframe and self.clear_on_keyframe:
            nacks.clear()
            self._recovered.clear()
            return []
        self._add_missing(last + 1, ext_seq, now_ms)
        due = self._next_due
        if due is None or due > now_ms or not nacks:
            return []
        return self._batch(now_ms)

    def on_timer(self, now_ms: int) -> list[int]:
        """Returns 16-bit seqs whose first NACK or retry is due at ``now_ms`` (may be [])."""
        if not self._nacks:
            self._next_due = None
            return []
        return self._batch(now_ms)

    def _add_missing(self, first: int, end: int, now_ms: int) -> None:
        """Add seqs first..end-1 as missing (mediasoup ``AddPacketsToNackList``)."""
        nacks = self._nacks
        horizon = end - MAX_PACKET_AGE
        if nacks and next(iter(nacks)) < horizon:
            for k in [k for k in nacks if k < horizon]:
                del nacks[k]
        n_new = end - first
        if n_new <= 0:
            return
        if len(nacks) + n_new > MAX_NACK_PACKETS:
            while self._remove_until_keyframe() and len(nacks) + n_new > MAX_NACK_PACKETS:
                pass
            if len(nacks) + n_new > MAX_NACK_PACKETS:
                nacks.clear()
                self.keyframe_required = True
                self.keyframe_request_count += 1
                return
        recovered = self._recovered
        due = now_ms + self.send_nack_delay_ms
        for seq in range(first, end):
            if recovered and seq in recovered:
                del recovered[seq]
                continue
            nacks[seq] = [now_ms, -1, 0]
        if self._next_due is None or due < self._next_due:
            self._next_due = due

    def _remove_until_keyframe(self) -> bool:
        """Forget missing seqs older than the oldest keyframe newer than one of them."""
        nacks = self._nacks
        keyframes = self._keyframes
        while keyframes:
            kf = keyframes[0]
            older = [k for k in nacks if k < kf]
            if older:
                for k in older:
                    del nacks[k]
                return True
            keyframes.pop(0)
        return False

    def _batch(self, now_ms: int) -> list[int]:
        """Collect due entries (mediasoup ``GetNackBatch``) and recompute the next deadline.

        An entry is due ``send_nack_delay_ms`` after its gap was seen, then every RTT. mediasoup
        sends first NACKs on packet arrival and retries on its 40 ms timer; here whatever is due
        goes out on either, and the timer deadline is exact.
        """
        delay = self.send_nack_delay_ms
        rtt = self._rtt_ms
        out: list[int] = []
        gone: list[int] = []
        next_due = None
        for seq, info in self._nacks.items():
            created, sent, retries = info
            due = created + delay if sent < 0 else sent + rtt
            if now_ms >= due:
                out.append(seq & 0xFFFF)
                info[1] = now_ms
                info[2] = retries = retries + 1
                if retries >= MAX_NACK_RETRIES:
                    gone.append(seq)
                    continue
                due = now_ms + rtt
            if next_due is None or due < next_due:
                next_due = due
        for seq in gone:
            del self._nacks[seq]
        self.given_up_count += len(gone)
        self._next_due = next_due
        if out:
            self.nack_count += 1
            self.nack_packet_count += len(out)
        return out


class RetransmissionBuffer:
    """Recent outgoing RTP packets of one consumer stream, answering NACKs locally.

    A ring of slots indexed by ``seq & mask``; each slot keeps the 16-bit seq, the packet, its
    store time and its last resend time, so ``store``/``get`` are O(1). The ring starts small
    (``initial_slots``) and doubles, up to ``2**k >= max_items``, only when a store would
    overwrite a packet still within ``max_age_ms`` and ``max_items``: its size follows the
    stream's packet rate (an audio consumer stays at a few KB, not 4 × 4096 slots).
    ``get`` returns None when the packet is absent, overwritten, more than ``max_items`` seqs
    behind the newest stored one, older than ``max_age_ms`` (2000 video / 1000 audio in
    mediasoup), or was resent less than ``min_resend_interval_ms`` ago (mediasoup: one resend
    per RTT, 100 ms default; update it with :meth:`set_rtt`).

    The stored packet is kept by reference: do not mutate it after ``store``.
    Counters: ``resent_count``, ``missing_count`` (absent or too old),
    ``throttled_count`` (refused by the resend interval).
    """

    __slots__ = (
        "max_items",
        "max_age_ms",
        "min_resend_interval_ms",
        "resent_count",
        "missing_count",
        "throttled_count",
        "_mask",
        "_full_mask",
        "_seqs",
        "_packets",
        "_stored_at",
        "_resent_at",
        "_resent_seq",
        "_newest",
    )

    def __init__(
        self,
        max_items: int = 2500,
        max_age_ms: int = 2000,
        min_resend_interval_ms: int = DEFAULT_RTT_MS,
        initial_slots: int = 128,
    ) -> None:
        if not 1 <= max_items <= 32768:
            raise ValueError(f"max_items must be 1..32768, got {max_items!r}")
        if max_age_ms <= 0:
            raise ValueError(f"max_age_ms must be > 0, got {max_age_ms!r}")
        self.max_items = max_items
        self.max_age_ms = max_age_ms
        self.min_resend_interval_ms = min_resend_interval_ms
        self.resent_count = 0
        self.missing_count = 0
        self.throttled_count = 0
        full = 1 << (max_items - 1).bit_length()
        size = min(full, 1 << max(0, int(initial_slots) - 1).bit_length())
        self._full_mask = full - 1
        self._mask = size - 1
        self._seqs = [-1] * size
        self._packets: list[bytes | bytearray | None] = [None] * size
        self._stored_at = [0] * size
        self._resent_at = [0] * size
        self._resent_seq = [-1] * size  # the seq ``_resent_at`` is for (store leaves both alone)
        self._newest = -1

    def set_rtt(self, rtt_ms: float) -> None:
        """Resend at most once per ``rtt_ms`` (0 or less: the 100 ms default)."""
        self.min_resend_interval_ms = int(rtt_ms) if rtt_ms > 0 else DEFAULT_RTT_MS

    def clear(self) -> None:
        """Forget every stored packet (e.g. after an SSRC/source change)."""
        size = self._mask + 1
        self._seqs = [-1] * size
        self._packets = [None] * size
        self._resent_seq = [-1] * size
        self._newest = -1

    def _grow(self) -> None:
        """Double the ring, re-placing every stored packet."""
        old = (self._seqs, self._packets, self._stored_at, self._resent_at, self._resent_seq)
        size = (self._mask + 1) * 2
        mask = size - 1
        seqs, packets, stored_at, resent_at, resent_seq = ([-1] * size, [None] * size, [0] * size,
                                                           [0] * size, [-1] * size)
        for seq, packet, at, resent, rseq in zip(*old):
            if packet is not None:
                j = seq & mask
                seqs[j], packets[j], stored_at[j] = seq, packet, at
                if rseq == seq:
                    resent_at[j], resent_seq[j] = resent, rseq
        self._mask = mask
        self._seqs, self._packets, self._stored_at = seqs, packets, stored_at
        self._resent_at, self._resent_seq = resent_at, resent_seq

    def store(self, seq16: int, packet: bytes | bytearray, now_ms: int) -> None:
        """Keep the outgoing (plaintext, rewritten) RTP ``packet`` sent with seq ``seq16``.

        ``Consumer.send_rtp`` inlines the case of a newest ``seq16`` whose slot needs no growth
        (empty, stale, or the ring at full size): keep both in step."""
        i = seq16 & self._mask
        if (
            self._mask < self._full_mask
            and self._packets[i] is not None
            and now_ms - self._stored_at[i] <= self.max_age_ms
            and 0 < ((seq16 - self._seqs[i]) & 0xFFFF) < self.max_items
        ):
            self._grow()
            i = seq16 & self._mask
        self._seqs[i] = seq16
        self._packets[i] = packet
        self._stored_at[i] = now_ms
        newest = self._newest
        if newest < 0 or 0 < ((seq16 - newest) & 0xFFFF) < 0x8000:
            self._newest = seq16

    def get(self, seq16: int, now_ms: int) -> bytes | bytearray | None:
        """The packet to resend for a NACKed ``seq16``, or None (see the class docstring).

        A returned packet is marked resent at ``now_ms``.
        """
        seq16 &= 0xFFFF
        i = seq16 & self._mask
        packet = self._packets[i]
        if (
            packet is None
            or self._seqs[i] != seq16
            or ((self._newest - seq16) & 0xFFFF) >= self.max_items
            or now_ms - self._stored_at[i] > self.max_age_ms
        ):
            self.missing_count += 1
            return None
        resent_at = self._resent_at[i]  # a resend of this very packet: same seq, not before its store
        if (self._resent_seq[i] == seq16 and resent_at >= self._stored_at[i]
                and now_ms - resent_at < self.min_resend_interval_ms):
            self.throttled_count += 1
            return None
        self._resent_at[i] = now_ms
        self._resent_seq[i] = seq16
        self.resent_count += 1
        return packet
