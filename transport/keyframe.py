"""Keyframe request throttling toward producers (mediasoup ``KeyFrameRequestManager.cpp``).

Many consumers of one producer stream may ask for a keyframe at once (joins, layer switches,
loss). The manager lets one PLI/FIR per SSRC through, then waits up to 1000 ms for the keyframe:
requests in that window are remembered and, if the keyframe has not come when the wait ends,
one more PLI/FIR is sent (best effort, in case the first one was lost). So at most one request a
second per SSRC reaches the producer (mediasoup website, scalability). With
``key_frame_request_delay_ms`` > 0 (mediasoup ``keyFrameRequestDelay``), requests arriving within
that delay after a request are coalesced into one sent when the delay ends.

Sans-I/O: ``request``/``on_keyframe`` take ``now_ms``; due work is pulled with ``on_timer`` at
``next_timer_ms()``.
"""

from __future__ import annotations

__all__ = ["KEYFRAME_RETRANSMISSION_WAIT_MS", "KeyFrameRequestManager"]

#: How long a sent request waits for the keyframe before it may be retried (mediasoup).
KEYFRAME_RETRANSMISSION_WAIT_MS = 1000


class KeyFrameRequestManager:
    """Per-SSRC keyframe request state for the streams of one producer (or transport).

    ``request(ssrc, now_ms)`` returns True when a PLI/FIR must be sent now; ``on_timer(now_ms)``
    returns the SSRCs whose PLI/FIR must be sent at that time; ``on_keyframe(ssrc, now_ms)``
    ends the wait. Counter: ``requests_sent`` (True results + SSRCs returned by on_timer).
    """

    __slots__ = ("key_frame_request_delay_ms", "requests_sent", "_pending", "_delayers")

    def __init__(self, key_frame_request_delay_ms: int = 0) -> None:
        if key_frame_request_delay_ms < 0:
            raise ValueError(
                f"key_frame_request_delay_ms must be >= 0, got {key_frame_request_delay_ms!r}"
            )
        self.key_frame_request_delay_ms = key_frame_request_delay_ms
        self.requests_sent = 0
        # ssrc -> [deadline_ms, retry_on_timeout]
        self._pending: dict[int, list] = {}
        # ssrc -> [deadline_ms, requested_meanwhile]
        self._delayers: dict[int, list] = {}

    def request(self, ssrc: int, now_ms: int) -> bool:
        """A consumer needs a keyframe of ``ssrc``; True when a PLI/FIR must be sent now."""
        delay = self.key_frame_request_delay_ms
        if delay > 0:
            delayer = self._delayers.get(ssrc)
            if delayer is not None:
                delayer[1] = True
                return False
            self._delayers[ssrc] = [now_ms + delay, False]
        pending = self._pending.get(ssrc)
        if pending is not None:
            pending[1] = True  # ask again if the keyframe does not come in time
            return False
        self._pending[ssrc] = [now_ms + KEYFRAME_RETRANSMISSION_WAIT_MS, False]
        self.requests_sent += 1
        return True

    def force_request(self, ssrc: int, now_ms: int) -> bool:
        """Send a PLI/FIR now whatever the state (mediasoup ``ForceKeyFrameNeeded``), restarting
        the wait and the delay window; always returns True."""
        if self.key_frame_request_delay_ms > 0:
            self._delayers[ssrc] = [now_ms + self.key_frame_request_delay_ms, False]
        pending = self._pending.get(ssrc)
        retry = pending is not None
        self._pending[ssrc] = [now_ms + KEYFRAME_RETRANSMISSION_WAIT_MS, retry]
        self.requests_sent += 1
        return True

    def on_keyframe(self, ssrc: int, now_ms: int) -> None:
        """A keyframe of ``ssrc`` arrived: no retry is needed for it."""
        self._pending.pop(ssrc, None)

    def forget(self, ssrc: int) -> None:
        """Drop all state of ``ssrc`` (stream closed)."""
        self._pending.pop(ssrc, None)
        self._delayers.pop(ssrc, None)

    def next_timer_ms(self) -> int | None:
        """Earliest deadline (ms) among pending waits and delay windows, or None."""
        due = None
        for deadline, _ in self._pending.values():
            if due is None or deadline < due:
                due = deadline
        for deadline, _ in self._delayers.values():
            if due is None or deadline < due:
                due = deadline
        return due

    def on_timer(self, now_ms: int) -> list[int]:
        """Handle expired waits and delay windows; returns SSRCs to send a PLI/FIR for now."""
        out: list[int] = []
        for ssrc, pending in list(self._pending.items()):
            if pending[0] > now_ms:
                continue
            if pending[1]:
                pending[0] = now_ms + KEYFRAME_RETRANSMISSION_WAIT_MS
                pending[1] = False
                self.requests_sent += 1
                out.append(ssrc)
            else:
                del self._pending[ssrc]
        for ssrc, delayer in list(self._delayers.items()):
            if delayer[0] > now_ms:
                continue
            del self._delayers[ssrc]
            if delayer[1] and self.request(ssrc, now_ms) and ssrc not in out:
                out.append(ssrc)
        return out
