"""actors/transport_bwe.py without sockets: the probation packet's layout (mediasoup's: RFC 8285
one-byte extension with the transport-wide seq slot, zero payload) and the timer contract (an idle
transport schedules nothing; one that sent stamped packets runs the estimator at once)."""

from __future__ import annotations

from collections import Counter

from raysfu.actors.transport_bwe import TransportBwe, build_probation_packet
from raysfu.transport.rtp import find_extension, parse_rtp_header


def test_probation_packet_layout():
    buf = bytearray(1500)
    n, twcc_off = build_probation_packet(buf, 300, seq=70000, timestamp=123, twcc_ext_id=5)
    assert n == 300
    packet = bytes(buf[:n])
    hdr = parse_rtp_header(packet)
    assert hdr[0] == 127 and hdr[2] == 70000 & 0xFFFF and hdr[3] == 123 and hdr[4] == 1234
    assert not packet[0] & 0x20 and hdr[5] == 20 and hdr[9] == 300 and not any(packet[20:])
    off, length = find_extension(packet, hdr[6], hdr[7], hdr[8], 5)
    assert (off, length) == (twcc_off + 1, 2)


def test_probation_packet_has_a_minimum_size():
    buf = bytearray(1500)
    n, _ = build_probation_packet(buf, 5, seq=1, timestamp=0, twcc_ext_id=3)
    assert n == 21 and parse_rtp_header(bytes(buf[:n]))[4] == 1234


class _FakeTransport:
    rtcp_ssrc = 99
    id = "t"
    bwe_tx = None

    def __init__(self):
        self.drops = Counter()
        self.producers = {}
        self.consumers = {}
        self.woken = []

    def wake_timer(self, due):
        self.woken.append(due)


def test_no_timer_until_feedback_then_the_estimator_runs_at_once():
    t = _FakeTransport()
    bwe = TransportBwe(t)
    assert bwe.next_timer_ms() is None
    bwe.on_rtp_sent(1, 1200, 1000)
    assert bwe.next_timer_ms() is None  # nobody gives feedback yet: no estimator timer
    # one feedback (base seq 1, one packet received 1 ms after the reference time)
    bwe.on_feedback(bytes([0, 1, 0, 1, 0, 0, 0, 0, 0x20, 0x01, 4, 0, 0, 0]), 1000)
    assert t.bwe_tx is bwe and bwe.send_side.feedbacks == 1
    assert bwe.next_timer_ms() == 0
    bwe.on_timer(1000)
    assert bwe.send_side.next_timer_ms() == 1025  # the estimator's 25 ms process interval


def test_malformed_feedback_is_counted_not_raised():
    t = _FakeTransport()
    bwe = TransportBwe(t)
    bwe.on_feedback(b"\x00\x01", 5)
    assert bwe.feedback_errors == 1 and t.drops["twcc_feedback_malformed"] == 1
