"""actors/transport_bwe.py without sockets: the probation packet's layout (mediasoup's: RFC 8285
one-byte extension with the transport-wide seq slot, zero payload) and the timer contract (an idle
transport schedules nothing; one that sent stamped packets runs the estimator at once)."""

from __future__ import annotations

from raysfu.actors.transport_bwe import TransportBwe, build_probation_packet
from raysfu.transport.rtp import find_extension, parse_rtp_header

from .fake_transport import FakeTransport


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


def test_no_timer_until_feedback_then_the_estimator_runs_at_once():
    t = FakeTransport()
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
    t = FakeTransport()
    bwe = TransportBwe(t)
    bwe.on_feedback(b"\x00\x01", 5)
    assert bwe.feedback_errors == 1 and t.drops["twcc_feedback_malformed"] == 1


class _FakeMonitor:
    """Cumulative rates per (spatial, up to temporal), every stream active since t=0."""

    def __init__(self, rates):
        self.rates = rates

    def bitrate_bps(self, s, now_ms, tl):
        return self.rates[s][tl]

    def is_active(self, s):
        return True

    def active_ms(self, s, now_ms):
        return now_ms


class _FakeSelector:
    spatial_layers = temporal_layers = 3
    preferred_spatial_layer = preferred_temporal_layer = 2

    def __init__(self, rates):
        self.monitor = _FakeMonitor(rates)


class _FakeLayeredConsumer:
    id = "c1"
    paused = producer_paused = False
    priority = 1

    def __init__(self, rates):
        self.selector = _FakeSelector(rates)
        self.limits = []

    def set_layer_limit(self, s, t, now_ms):
        self.limits.append((s, t))


# a VP8 L1T3 simulcast as Chromium sends it (cumulative bps): r1's base temporal layer is
# cheaper than the whole of r0, so moving up to it costs nothing
SIMULCAST_RATES = [[60_000, 100_000, 140_000], [110_000, 180_000, 250_000], [220_000, 360_000, 500_000]]


def test_distribution_climbs_past_a_cheaper_spatial_switch_to_the_top_layer():
    t = FakeTransport()
    bwe = TransportBwe(t)
    consumer = _FakeLayeredConsumer(SIMULCAST_RATES)
    t.consumers = {consumer.id: consumer}
    bwe.send_side.feedbacks = 1  # the remote gives transport-cc feedback
    bwe.available_bitrate_bps = 3_000_000
    bwe.distribute(10_000, bwe_triggered=True)
    assert consumer.limits[-1] == (2, 2)  # was stuck at (1, 0): the zero-cost step ended the rounds
    assert bwe.send_side.desired_bitrate_bps == 500_000
    bwe.available_bitrate_bps = 400_000
    bwe.distribute(11_000, bwe_triggered=True)
    s, tl = consumer.limits[-1]
    assert (s, tl) == (2, 1)  # 360 kbps: the highest pair that fits (switches refund the old stream)
    bwe.available_bitrate_bps = 500_000
    bwe.distribute(11_500, bwe_triggered=True)
    assert consumer.limits[-1] == (2, 2)  # the top costs its own rate, not the walk's sum
    bwe.available_bitrate_bps = 120_000
    bwe.distribute(12_000, bwe_triggered=True)
    assert consumer.limits[-1] == (0, 1)  # 100 kbps fits 120 kbps


def test_distribution_without_feedback_caps_nothing():
    t = FakeTransport()
    bwe = TransportBwe(t)
    consumer = _FakeLayeredConsumer(SIMULCAST_RATES)
    t.consumers = {consumer.id: consumer}
    bwe.distribute(10_000, bwe_triggered=True)
    assert consumer.limits == []


class _PaddingTransport(FakeTransport):
    """Records what would go on the wire and feeds it back as ``on_rtp_sent`` does."""

    def __init__(self):
        super().__init__()
        self.scratch = bytearray(1500)
        self.sent = []
        self.bwe = None

    def send_scratch_rtp(self, n, twcc_off):
        self.sent.append(bytes(self.scratch[:n]))
        self.bwe.on_rtp_sent(len(self.sent), n, 0)


def test_padding_tops_media_up_to_the_estimate_while_a_layer_is_capped():
    t = _PaddingTransport()
    bwe = t.bwe = TransportBwe(t)
    consumer = _FakeLayeredConsumer(SIMULCAST_RATES)
    t.consumers = {consumer.id: consumer}
    bwe.probe_twcc_ext_id = 3
    bwe.send_side.feedbacks = 1
    bwe.available_bitrate_bps = 400_000
    bwe.distribute(10_000, bwe_triggered=True)
    assert consumer.limits[-1] == (2, 1) and bwe.padding_bps == 400_000  # (2, 2) wanted, capped
    bwe._pad(10_000)  # starts the budget
    for now in range(10_025, 11_025, 25):  # 1 s of 25 ms ticks, 12 kB of media per second sent
        bwe.on_rtp_sent(0, 300, now)
        bwe._pad(now)
    assert all(parse_rtp_header(p)[4] == 1234 and parse_rtp_header(p)[0] == 127 for p in t.sent)
    total_bps = (bwe.padding_bytes_sent + 40 * 300) * 8
    assert 0.9 * 400_000 <= total_bps <= 1.1 * 400_000, total_bps
    # everything fits: no padding
    bwe.available_bitrate_bps = 3_000_000
    bwe.distribute(11_100, bwe_triggered=True)
    assert consumer.limits[-1] == (2, 2) and bwe.padding_bps == 0
    before = len(t.sent)
    bwe._pad(11_125)
    assert len(t.sent) == before


def test_received_transport_seq_is_logged_and_a_removed_producer_forgotten():
    from raysfu.transport.rtp import build_rtp, parse_rtp_header

    class _Producer:
        id = "p1"
        ext_uri_by_id = {3: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"}

    t = FakeTransport()
    bwe = TransportBwe(t)
    packet = build_rtp(96, 1, 0, 42, b"x", extensions=[(3, (777).to_bytes(2, "big"))])
    bwe.on_rtp_received(packet, parse_rtp_header(packet), _Producer(), 1000)
    assert bwe.recorder.media_ssrc == 42 and bwe.recorder.next_timer_us() is not None
    assert t.woken and bwe._twcc_ids == {"p1": 3}
    bwe.forget_producer("p1")
    assert bwe._twcc_ids == {}
