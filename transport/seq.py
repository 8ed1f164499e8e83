"""Sequence-number and timestamp arithmetic: 16-bit RTP seq and 32-bit RTP timestamp wrap,
extended (64-bit) sequence numbers, and the per-consumer seq rewriter.

From ingress on, raysfu works with *extended* sequence numbers (Python ints that never wrap);
they are cut to 16 bits only when written on the wire (DESIGN.md §5).

Sources: RFC 3550 §A.1 (seq extension), RFC 1982 (serial number arithmetic), mediasoup
``SeqManager`` (drop/sync semantics of the output sequence).
"""

from __future__ import annotations

import random
from bisect import bisect_left

__all__ = [
    "seq_diff",
    "seq_gt",
    "seq_lt",
    "ts_diff",
    "ts_gt",
    "ts_lt",
    "SeqUnwrapper",
    "SeqRewriter",
]


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit seqs, in -32768..32767 (wrap-aware).

    ``seq_diff(0, 65535) == 1``; ``seq_diff(65535, 0) == -1``.
    """
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_gt(a: int, b: int) -> bool:
    """True when 16-bit seq ``a`` is newer than ``b`` (RFC 1982; a distance of exactly 32768
    counts as neither newer nor older)."""
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def seq_lt(a: int, b: int) -> bool:
    """True when 16-bit seq ``a`` is older than ``b`` (see :func:`seq_gt`)."""
    return 0 < ((b - a) & 0xFFFF) < 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit RTP timestamps, in -2**31..2**31-1."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_gt(a: int, b: int) -> bool:
    """True when 32-bit RTP timestamp ``a`` is newer than ``b`` (wrap-aware)."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def ts_lt(a: int, b: int) -> bool:
    """True when 32-bit RTP timestamp ``a`` is older than ``b`` (wrap-aware)."""
    return 0 < ((b - a) & 0xFFFFFFFF) < 0x80000000


class SeqUnwrapper:
    """Turns 16-bit RTP seqs into extended seqs that never wrap (RFC 3550 §A.1 style).

    The first seq ``s`` maps to ``65536 + s`` so that packets reordered before the first one do
    not go negative. Each later seq is placed at the 16-bit distance (-32768..32767) from the
    highest seq seen so far; only a newer seq moves that reference.
    """

    __slots__ = ("_max_ext",)

    def __init__(self) -> None:
        self._max_ext = -1

    @property
    def max_ext_seq(self) -> int:
        """Highest extended seq returned so far (-1 before the first packet)."""
        return self._max_ext

    def unwrap(self, seq16: int) -> int:
        """Return the extended seq of the 16-bit ``seq16``."""
        m = self._max_ext
        if m < 0:
            self._max_ext = ext = 0x10000 + seq16
            return ext
        d = ((seq16 - m + 0x8000) & 0xFFFF) - 0x8000
        ext = m + d
        if d > 0:
            self._max_ext = ext
        return ext


class SeqRewriter:
    """Maps a consumer's input extended seqs onto a continuous 16-bit output sequence.

    One per consumer RTP stream (mediasoup ``SeqManager``):

    - ``input(ext_seq)`` gives the 16-bit output seq of a packet that is forwarded, or ``None``
      when the packet must not be sent (it was marked dropped, or it is older than the last
      ``sync``, or too old to place).
    - ``drop(ext_seq)`` marks a packet that is not forwarded (paused, padding-only, filtered
      layer) so later packets close the gap in the output. Only a seq newer than every input seen
      so far can be dropped (an older one already has its place in the output, as in mediasoup).
    - ``sync(ext_seq)`` re-bases on a resume or a source switch: ``ext_seq`` is the first input
      that will be forwarded next, and it maps to the last output + 1 (mediasoup calls
      ``Sync(seq - 1)`` for the same effect). Inputs older than ``ext_seq`` are refused after.

    The output starts at a random 16-bit value unless ``initial_output`` is given.
    Reordered inputs keep their place: ``input`` is a pure function of the input seq between
    syncs. Dropped seqs older than ``max_input - window`` are folded into the base; inputs older
    than that horizon return ``None``.
    """

    __slots__ = ("_base", "_dropped", "_floor", "_max_input", "_max_output", "_started", "_window")

    def __init__(self, initial_output: int | None = None, *, window: int = 8192) -> None:
        if initial_output is None:
            initial_output = random.getrandbits(16)
        elif not 0 <= initial_output <= 0xFFFF:
            raise ValueError(f"initial_output must be 0..65535, got {initial_output!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self._window = window
        # Output ext seq = input ext seq + _base - (number of dropped seqs below the input).
        # Before the first input, _base holds the initial output value.
        self._base = initial_output
        self._dropped: list[int] = []
        self._floor = -1
        self._max_input = -1
        self._max_output = initial_output - 1
        self._started = False

    @property
    def max_output(self) -> int:
        """The highest 16-bit output seq handed out so far (initial_output - 1 before any)."""
        return self._max_output & 0xFFFF

    @property
    def max_input(self) -> int:
        """The highest input extended seq seen so far (-1 before any)."""
        return self._max_input

    def input(self, ext_seq: int) -> int | None:
        """Return the 16-bit output seq for input ``ext_seq``, or None if it must not be sent."""
        if not self._started:
            self._started = True
            self._base -= ext_seq
            self._max_input = ext_seq
            self._max_output = ext_seq + self._base
            return self._max_output & 0xFFFF
        if ext_seq < self._floor:
            return None
        dropped = self._dropped
        if dropped:
            k = bisect_left(dropped, ext_seq)
            if k < len(dropped) and dropped[k] == ext_seq:
                return None
            out = ext_seq + self._base - k
        else:
            out = ext_seq + self._base
        if ext_seq > self._max_input:
            self._max_input = ext_seq
            if dropped and dropped[0] < ext_seq - self._window:
                self._fold()
        if out > self._max_output:
            self._max_output = out
        return out & 0xFFFF

    def drop(self, ext_seq: int) -> None:
        """Mark input ``ext_seq`` as not forwarded so later inputs close the gap.

        Ignored unless ``ext_seq`` is newer than every input seen so far (mediasoup ``Drop``).
        Before the first input it is ignored too: the first forwarded packet sets the base.
        """
        if not self._started or ext_seq <= self._max_input:
            return
        self._max_input = ext_seq
        self._dropped.append(ext_seq)
        if self._dropped[0] < ext_seq - self._window:
            self._fold()

    def sync(self, ext_seq: int) -> None:
        """Re-base so that input ``ext_seq`` maps to the last output + 1 (resume / switch).

        Inputs older than ``ext_seq`` return None afterwards. No-op before the first input
        (the first input maps to ``initial_output`` anyway).
        """
        if not self._started:
            return
        self._dropped.clear()
        self._base = self._max_output + 1 - ext_seq
        self._max_input = ext_seq - 1
        self._floor = ext_seq

    def _fold(self) -> None:
        dropped = self._dropped
        horizon = self._max_input - self._window
        k = bisect_left(dropped, horizon)
        if k:
            self._base -= k
            del dropped[:k]
            if horizon > self._floor:
                self._floor = horizon
