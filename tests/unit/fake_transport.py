"""A socket-less stand-in for the WebRtcTransport that ``actors.transport_bwe.TransportBwe``
drives: the attributes it reads, ``wake_timer`` dues kept in ``woken`` and RTCP it sends kept
in ``rtcp``."""

from __future__ import annotations

from collections import Counter


class FakeTransport:
    rtcp_ssrc = 99
    id = "t"
    bwe_tx = None

    def __init__(self) -> None:
        self.drops: Counter = Counter()
        self.producers: dict = {}
        self.consumers: dict = {}
        self.woken: list = []
        self.rtcp: list[bytes] = []

    def wake_timer(self, due) -> None:
        self.woken.append(due)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)
