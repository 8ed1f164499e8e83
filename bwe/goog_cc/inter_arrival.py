"""Packet-group inter-arrival deltas (libwebrtc m77
``modules/remote_bitrate_estimator/inter_arrival.cc`` as ``DelayBasedBwe`` configures it: 5 ms
send-time groups, burst grouping on; research/bwe.md §1.3).

Send times are 32-bit abs-send-time ticks (24-bit 6.18 fixed-point seconds shifted up 8 bits, so
``1 << 26`` ticks per second), exactly as m77 converts ``send_time.ms()``; arrival times are
integer ms. See :func:`send_time_ticks`.
"""

from __future__ import annotations

__all__ = ["GROUP_LENGTH_TICKS", "TICKS_PER_MS", "InterArrival", "send_time_ticks"]

_ABS_SEND_TIME_FRACTION = 18
_UPSHIFT = 8
_INTER_ARRIVAL_SHIFT = 26  # 18 + 8
TICKS_PER_MS = (1 << _INTER_ARRIVAL_SHIFT) / 1000.0
TIMESTAMP_GROUP_LENGTH_MS = 5
GROUP_LENGTH_TICKS = (TIMESTAMP_GROUP_LENGTH_MS << _INTER_ARRIVAL_SHIFT) // 1000
BURST_DELTA_THRESHOLD_MS = 5
MAX_BURST_DURATION_MS = 100
REORDERED_RESET_THRESHOLD = 3
ARRIVAL_TIME_OFFSET_THRESHOLD_MS = 3000
_TS_TO_MS = 1000.0 / (1 << _INTER_ARRIVAL_SHIFT)
_U32 = 0xFFFFFFFF


def send_time_ticks(send_ms: int) -> int:
    """``send_ms`` as 32-bit inter-arrival ticks: round(ms·2^18/1000) mod 2^24, shifted left 8
    (``delay_based_bwe.cc`` m77)."""
    return ((((send_ms << _ABS_SEND_TIME_FRACTION) + 500) // 1000) & 0xFFFFFF) << _UPSHIFT


class InterArrival:
    """``compute_deltas(ts_ticks, arrival_ms, system_ms, size_bytes)`` → ``None`` or
    ``(ts_delta_ticks, arrival_delta_ms, size_delta_bytes)`` once a group completes.

    - A packet joins the current group while its send time is ≤ 5 ms after the group's first, or
      when it belongs to a burst (send delta 0, or arrival ≤ 5 ms after the group's last arrival
      with a negative propagation delta and < 100 ms after the group's first arrival).
    - Deltas are between consecutive complete groups: ``ts`` = last send time of each group,
      ``arrival`` = last arrival of each group.
    - A packet whose send time is before the current group's first is dropped (reordered);
      3 consecutive negative arrival deltas, or an arrival jump ≥ 3000 ms beyond the system-clock
      jump, reset the state.
    """

    __slots__ = ("_cur", "_prev", "_reordered")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # group: [first_ts, ts, first_arrival_ms, complete_ms, size, last_system_ms]
        self._cur: list | None = None
        self._prev: list | None = None
        self._reordered = 0

    def compute_deltas(self, ts: int, arrival_ms: int, system_ms: int, size: int):
        cur = self._cur
        out = None
        if cur is None:
            self._cur = cur = [ts, ts, arrival_ms, -1, 0, system_ms]
        elif ((ts - cur[0]) & _U32) >= 0x80000000:
            return None  # out of order
        elif self._new_group(cur, arrival_ms, ts):
            prev = self._prev
            if prev is not None:
                ts_delta = (cur[1] - prev[1]) & _U32
                arrival_delta = cur[3] - prev[3]
                system_delta = cur[5] - prev[5]
                if arrival_delta - system_delta >= ARRIVAL_TIME_OFFSET_THRESHOLD_MS:
                    self.reset()
                    return None
                if arrival_delta < 0:
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET_THRESHOLD:
                        self.reset()
                    return None
                self._reordered = 0
                out = (ts_delta, arrival_delta, cur[4] - prev[4])
            self._prev = cur
            self._cur = cur = [ts, ts, arrival_ms, -1, 0, system_ms]
        else:
            if ((ts - cur[1]) & _U32) < 0x80000000:  # latest timestamp wins
                cur[1] = ts
        cur[4] += size
        cur[3] = arrival_ms
        cur[5] = system_ms
        return out

    @staticmethod
    def _new_group(cur: list, arrival_ms: int, ts: int) -> bool:
        # burst rule (BelongsToBurst)
        arrival_delta = arrival_ms - cur[3]
        ts_delta_ms = int(_TS_TO_MS * ((ts - cur[1]) & _U32) + 0.5)
        if ts_delta_ms == 0:
            return False
        if (arrival_delta - ts_delta_ms < 0 and arrival_delta <= BURST_DELTA_THRESHOLD_MS
                and arrival_ms - cur[2] < MAX_BURST_DURATION_MS):
            return False
        return ((ts - cur[0]) & _U32) > GROUP_LENGTH_TICKS
