"""bwe/remb.py: receive-side estimation from abs-send-time (RemoteBitrateEstimatorAbsSendTime's
pipeline: 5 ms groups → trendline → AIMD on the incoming rate) and the REMB timing rules of
libwebrtc's vie_remb.cc (every 1 s, at once on a drop below 97 %). Links are the deterministic
emulator's (bwe/emulator.py); the sender obeys the REMBs it gets back, as a browser does."""

from __future__ import annotations

import random

import pytest
from raysfu.bwe.emulator import Link, SimPacket, Simulator
from raysfu.bwe.remb import REMB_INTERVAL_MS, RembEstimator, abs_send_time_from_ms

from .fake_transport import FakeTransport

SSRC = 0x1111


class _Feed:
    """A paced sender (5 ms ticks, 1200-byte packets) → one emulated link → a RembEstimator.

    ``follow``: the sender's rate becomes ``min(max_bps, REMB)`` one propagation delay after
    each REMB; otherwise it sends ``max_bps`` whatever the REMBs say. ``send_offset_ms`` shifts
    the sender's abs-send-time clock; :meth:`jump_clock` moves it later."""

    def __init__(self, capacity_bps: int | None, *, max_bps: int, follow: bool = True,
                 prop_ms: int = 20, queue_ms: int = 300, send_offset_ms: float = 0.0) -> None:
        self.sim = Simulator(0)
        self.est = RembEstimator()
        self.max_bps = max_bps
        self.rate_bps = max_bps
        self.follow = follow
        self.prop_ms = prop_ms
        self.offset_ms = send_offset_ms
        self.rembs: list[tuple[int, int]] = []
        self.samples: list[tuple[int, int | None, int]] = []  # (ms, estimate, sender rate)
        self._budget = 0.0
        self._seq = 0
        q = (capacity_bps or 0) * queue_ms // 8000
        self.link = Link(self.sim, "fwd", capacity_bps=capacity_bps, prop_delay_us=prop_ms * 1000,
                         queue_bytes=q or 1 << 62, deliver=self._deliver)
        self.sim.at(0, self._tick)
        self.sim.at(0, self._sample)

    def _deliver(self, p: SimPacket) -> None:
        now_ms = p.arrival_us // 1000
        self.est.on_packet(p.payload, now_ms, p.size_bytes, SSRC)
        value = self.est.poll_remb(now_ms)
        if value is not None:
            self.rembs.append((now_ms, value))
            if self.follow:
                self.sim.after(self.prop_ms * 1000, self._set_rate, value)

    def _set_rate(self, value: int) -> None:
        self.rate_bps = min(self.max_bps, value)

    def _tick(self) -> None:
        self._budget += self.rate_bps * 0.005 / 8
        while self._budget >= 1200:
            self._budget -= 1200
            self._seq += 1
            ast = abs_send_time_from_ms(self.sim.now_us / 1000 + self.offset_ms)
            self.link.send(SimPacket("media", self._seq, 1200, self.sim.now_us, ast))
        self.sim.after(5_000, self._tick)

    def _sample(self) -> None:
        self.samples.append((self.sim.now_us // 1000, self.est.estimate_bps, self.rate_bps))
        self.sim.after(250_000, self._sample)

    def run_until(self, t_s: float) -> _Feed:
        self.sim.run(int(t_s * 1_000_000))
        return self

    def estimates(self, t0_s: float, t1_s: float) -> list[int | None]:
        return [e for t, e, _ in self.samples if t0_s * 1000 <= t < t1_s * 1000]


def test_estimate_tracks_a_bottleneck_and_rises_when_it_is_lifted():
    feed = _Feed(1_000_000, max_bps=2_500_000)
    feed.run_until(3.0)
    first_below = next(t for t, e, _ in feed.samples if e is not None and e < 1_100_000)
    assert first_below <= 3_000, feed.samples[:12]
    feed.run_until(20.0)
    held = feed.estimates(3.0, 20.0)
    assert all(e is not None and 700_000 <= e <= 1_100_000 for e in held), held
    rates = [r for t, _, r in feed.samples if t >= 5_000]
    assert sum(rates) / len(rates) >= 800_000  # the link stays used, not starved
    assert feed.est.overuses >= 1
    feed.link.set_capacity(5_000_000)
    feed.link.queue_bytes = 5_000_000 * 300 // 8000
    feed.run_until(42.0)
    assert feed.est.estimate_bps > 1_500_000, feed.samples[-10:]
    assert max(feed.estimates(38.0, 42.0)) > max(held) * 1.4


def test_first_estimate_after_five_seconds_without_congestion():
    """Without an overuse, AIMD starts from the measured incoming rate after 5 s
    (aimd_rate_control.cc kInitializationTimeMs), then may grow above it (≤ 1.5 × + 10 kbps)."""
    feed = _Feed(None, max_bps=600_000, follow=False).run_until(4.9)
    assert feed.est.estimate_bps is None and feed.rembs == []
    assert feed.est.poll_remb(4_900) is None and feed.est.next_remb_ms() is None
    assert 550_000 <= feed.est.incoming_bitrate_bps(4_900) <= 650_000
    feed.run_until(5.5)
    assert feed.rembs and 500_000 <= feed.rembs[0][1] <= 700_000
    feed.run_until(12.0)
    assert feed.est.estimate_bps <= 1.5 * 600_000 + 10_000 + 20_000
    assert feed.est.overuses == 0 and feed.est.resets == 0


def test_remb_every_second_and_at_once_on_a_three_percent_drop():
    est = RembEstimator()
    est.estimate_bps = 1_000_000
    est._updated_ms = 100
    assert est.next_remb_ms() == 100  # nothing sent yet: at once
    assert est.poll_remb(100) == 1_000_000
    assert est.poll_remb(101) is None and est.next_remb_ms() == 100 + REMB_INTERVAL_MS
    est.estimate_bps = 980_000  # −2 %: waits for the period
    assert est.poll_remb(600) is None
    assert est.poll_remb(1_099) is None
    assert est.poll_remb(1_100) == 980_000
    est.estimate_bps = 951_000  # −2.96 % of 980 000: still waits
    assert est.poll_remb(1_200) is None
    est.estimate_bps = 950_000  # −3.06 %: at once
    est._updated_ms = 1_300
    assert est.next_remb_ms() == 1_300
    assert est.poll_remb(1_300) == 950_000
    est.estimate_bps = 2_000_000  # a rise waits for the period
    assert est.poll_remb(1_400) is None and est.next_remb_ms() == 2_300
    assert est.poll_remb(1_500, force=True) == 2_000_000


def test_remb_drop_is_sent_at_once_in_a_live_feed():
    """Capacity falls from 2 Mbps to 0.8 Mbps at 10 s: the lower estimates go out as soon as
    AIMD makes them (< 1 s apart), the rest once a second, and the sender lands below 0.8 Mbps."""
    feed = _Feed(2_000_000, max_bps=2_500_000).run_until(10.0)
    feed.link.set_capacity(800_000)
    feed.run_until(14.0)
    pairs = list(zip(feed.rembs, feed.rembs[1:]))
    assert all(t1 - t0 >= REMB_INTERVAL_MS or v1 < 0.97 * v0 for (t0, v0), (t1, v1) in pairs), feed.rembs
    fast = [(t1, v1) for (t0, v0), (t1, v1) in pairs if t1 - t0 < REMB_INTERVAL_MS]
    assert fast and all(10_000 <= t < 11_500 for t, _ in fast), feed.rembs
    assert feed.rembs[-1][1] < 800_000 and feed.rate_bps < 800_000


def test_abs_send_time_wrap_is_seamless():
    """The 24-bit field wraps every 64 s: a stream that crosses the wrap keeps its estimate and
    sees no reset and no false overuse."""
    feed = _Feed(None, max_bps=800_000, follow=False, send_offset_ms=64_000 - 6_000)
    feed.run_until(12.0)  # the wrap is at t = 6 s
    assert feed.est.resets == 0 and feed.est.overuses == 0
    assert feed.est.estimate_bps is not None and feed.est.estimate_bps >= 700_000
    assert abs_send_time_from_ms(64_000) == 0 and abs_send_time_from_ms(63_999) > 0xFF0000


def test_a_send_clock_jump_resets_and_estimation_goes_on():
    """A new sender (its abs-send-time 20 s behind the old one) must not be taken for 20 s of
    reordered packets: the delay state resets and the bottleneck that follows is detected."""
    feed = _Feed(None, max_bps=2_000_000, follow=False).run_until(6.0)
    assert feed.est.estimate_bps is not None
    feed.offset_ms = -20_000
    feed.link.set_capacity(1_000_000)
    feed.link.queue_bytes = 1_000_000 * 300 // 8000
    feed.run_until(9.0)
    assert feed.est.resets == 1
    assert feed.est.overuses >= 1 and feed.est.estimate_bps < 1_100_000, feed.samples[-12:]


def test_reordering_does_not_look_like_congestion():
    est = RembEstimator()
    rng = random.Random(7)
    packets = [(abs_send_time_from_ms(i * 2.5), 10 + int(i * 2.5) + rng.randrange(3)) for i in range(4_000)]
    for i in range(0, len(packets) - 1, 7):  # every 7th pair arrives swapped
        (a, ta), (b, tb) = packets[i], packets[i + 1]
        packets[i], packets[i + 1] = (b, ta), (a, tb)
    for ast, arrival in packets:
        est.on_packet(ast, arrival, 1200, SSRC)
    assert est.overuses == 0 and est.resets == 0
    assert est.estimate_bps is not None and est.estimate_bps > 3_000_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_garbage_input_never_raises(seed):
    rng = random.Random(seed)
    est = RembEstimator()
    now = 0
    for i in range(20_000):
        r = rng.random()
        if r < 0.3:
            ast = rng.getrandbits(24)
        elif r < 0.35:
            ast = rng.randrange(-(1 << 40), 1 << 40)  # out of range: masked to 24 bits
        else:
            ast = abs_send_time_from_ms(now * 0.9)
        now += rng.choice((0, 1, 2, 5, -3, -2_500, 2_500, 70_000))
        est.on_packet(ast, now, rng.choice((0, -5, 1, 1200, 65_000)), rng.getrandbits(32))
        if i % 50 == 0:
            est.poll_remb(now)
            est.next_remb_ms()
            est.incoming_bitrate_bps(now)
            _ = est.ssrcs
    assert est.packets == 20_000
    assert est.estimate_bps is None or est.estimate_bps >= 5_000


def test_ssrcs_are_dropped_after_two_seconds_of_silence():
    est = RembEstimator()
    for i in range(100):
        est.on_packet(abs_send_time_from_ms(i * 10), i * 10, 1000, 1)
        if i < 50:
            est.on_packet(abs_send_time_from_ms(i * 10), i * 10, 1000, 2)
    assert sorted(est.ssrcs) == [1, 2]
    for i in range(100, 260):
        est.on_packet(abs_send_time_from_ms(i * 10), i * 10, 1000, 1)
    assert est.ssrcs == [1]


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="min_bitrate_bps"):
        RembEstimator(min_bitrate_bps=0)
    with pytest.raises(TypeError, match="rtt_ms"):
        RembEstimator(rtt_ms=-1)


# --- wiring in actors/transport_bwe.py (no sockets) -------------------------------------------

URI_ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


class _FakeProducer:
    def __init__(self, pid, ssrc, uris):
        self.id = pid
        self.ssrc = ssrc
        self.ext_uri_by_id = {i + 2: u for i, u in enumerate(uris)}


def _run(bwe, t, producer, seconds, rate_bps, *, start_ms=0, ext_id=2):
    """Packets of 1000 bytes at ``rate_bps`` with abs-send-time (no network: arrival = send),
    running the transport's timer the way WebRtcTransport.on_timer does."""
    from raysfu.transport.rtp import build_rtp, parse_rtp_header

    gap_ms = 1000 * 8 * 1000 / rate_bps
    n = int(seconds * 1000 / gap_ms)
    for i in range(n):
        now = start_ms + int(i * gap_ms)
        pkt = build_rtp(96, i & 0xFFFF, i * 90, producer.ssrc, bytes(1000 - 20),
                        extensions=[(ext_id, abs_send_time_from_ms(now).to_bytes(3, "big"))])
        bwe.on_rtp_received(pkt, parse_rtp_header(pkt), producer, now)
        due = bwe.next_timer_ms()
        if due is not None and due <= now:
            bwe.on_timer(now)
    return start_ms + int(n * gap_ms)


def _rembs(t):
    from raysfu.transport import rtcp

    return [it for p in t.rtcp for it in rtcp.parse_rtcp(p) if it[0] == "remb"]


def test_transport_sends_estimate_remb_for_abs_send_time_only_producers():
    from raysfu.actors.transport_bwe import TransportBwe

    t = FakeTransport()
    bwe = TransportBwe(t)
    producer = _FakeProducer("p", 5555, [URI_ABS])
    t.producers["p"] = producer
    end = _run(bwe, t, producer, 7.0, 800_000)
    rembs = _rembs(t)
    assert bwe.remb is not None and rembs, bwe.remb.stats()
    assert all(r[3] == [5555] and r[2] > 0 for r in rembs)
    assert 600_000 <= rembs[-1][2] <= 1.5 * 800_000 + 20_000
    assert bwe.stats()["availableIncomingBitrate"] == bwe.remb.estimate_bps
    # the cap: the next REMB (at once) carries min(estimate, cap)
    n = len(rembs)
    bwe.set_max_incoming_bitrate(200_000, end)
    assert bwe.next_timer_ms() <= end
    bwe.on_timer(end)
    rembs = _rembs(t)
    assert len(rembs) == n + 1 and rembs[-1][2] <= 200_000 and rembs[-1][2] >= 199_000
    _run(bwe, t, producer, 3.0, 800_000, start_ms=end + 1)
    later = _rembs(t)[n + 1:]
    assert len(later) >= 2 and all(r[2] <= 200_000 for r in later), later  # once a second


def test_transport_cc_producer_never_feeds_the_remb_estimator():
    from raysfu.actors.transport_bwe import TransportBwe

    t = FakeTransport()
    bwe = TransportBwe(t)
    producer = _FakeProducer("p", 5555, [URI_ABS, URI_TWCC])
    t.producers["p"] = producer
    _run(bwe, t, producer, 1.0, 500_000)
    assert bwe.remb is None and _rembs(t) == []
    assert bwe.stats()["availableIncomingBitrate"] is None


def test_limitation_remb_applies_until_there_is_an_estimate():
    from raysfu.actors.transport_bwe import TransportBwe

    t = FakeTransport()
    bwe = TransportBwe(t)
    producer = _FakeProducer("p", 5555, [URI_ABS])
    t.producers["p"] = producer
    bwe.set_max_incoming_bitrate(300_000, 0)
    _run(bwe, t, producer, 2.0, 100_000)  # no estimate yet (< 5 s, no overuse)
    assert bwe.remb.estimate_bps is None
    rembs = _rembs(t)
    assert len(rembs) == 2 and all(r[2] == 300_000 or abs(r[2] - 300_000) < 3_000 for r in rembs)


def test_malformed_abs_send_time_element_is_counted_not_raised():
    from raysfu.actors.transport_bwe import TransportBwe
    from raysfu.transport.rtp import parse_rtp_header

    t = FakeTransport()
    bwe = TransportBwe(t)
    producer = _FakeProducer("p", 5555, [URI_ABS])
    # one-byte extension block: id 2 claims 4 bytes, the block has 3 left
    pkt = bytes([0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0x15, 0xB3, 0xBE, 0xDE, 0, 1, 0x23, 1, 2, 3]) + b"x"
    bwe.on_rtp_received(pkt, parse_rtp_header(pkt), producer, 5)
    assert t.drops["rtp_extension_malformed"] == 1
    short = bytes([0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0x15, 0xB3, 0xBE, 0xDE, 0, 1, 0x21, 1, 2, 0]) + b"x"
    bwe.on_rtp_received(short, parse_rtp_header(short), producer, 6)  # 2-byte value: ignored
    assert bwe.remb.packets == 0
