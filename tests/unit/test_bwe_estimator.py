"""SendSideBwe (the sans-I/O transport interface) and raysfu's controller changes."""

import random

import pytest
from raysfu.bwe.controller import DeliveryRateMeter, LossClassifier, RaysfuController
from raysfu.bwe.estimator import SendSideBwe, TrendCalculator, make_controller
from raysfu.bwe.goog_cc.controller import GoogCcController
from raysfu.bwe.prober import PROBATION_PAYLOAD_TYPE, PROBATION_SSRC, BitrateProber
from raysfu.bwe.twcc import build_fci
from raysfu.transport.errors import PacketParseError


def test_constructor_and_controller_choice():
    assert isinstance(SendSideBwe("raysfu").controller, RaysfuController)
    assert isinstance(SendSideBwe("goog_cc_m77").controller, GoogCcController)
    with pytest.raises(ValueError, match="controller"):
        make_controller("bbr", min_bps=1, start_bps=2, max_bps=3)
    with pytest.raises(ValueError, match="initial_available_outgoing_bitrate"):
        SendSideBwe(initial_available_outgoing_bitrate=0)
    with pytest.raises(ValueError, match="max_bitrate_bps"):
        SendSideBwe(min_bitrate_bps=100_000, max_bitrate_bps=50_000)
    b = SendSideBwe(initial_available_outgoing_bitrate=800_000)
    assert b.target_bitrate_bps == 800_000 and b.available_bitrate_bps == 800_000


def test_timer_cadence_is_25_ms():
    b = SendSideBwe()
    assert b.next_timer_ms() is None
    b.on_timer(1_000)
    assert b.next_timer_ms() == 1_025
    b.on_timer(1_010)  # early: ignored
    assert b.next_timer_ms() == 1_025


def test_start_probes_are_paced_padding_of_2ms_worth():
    b = SendSideBwe(initial_available_outgoing_bitrate=600_000)
    b.on_timer(0)
    assert b.next_probe_time_ms() == 0
    sent = []
    t = 0
    while b.next_probe_time_ms() is not None and t < 200:
        t = max(t, b.next_probe_time_ms())
        while (p := b.pop_probe(t)) is not None:
            sent.append((t, *p))
        t += 1
    c1 = [s for s in sent if s[2] == 1]
    c2 = [s for s in sent if s[2] == 2]
    # cluster 1 at 1.8 Mbps: 450-byte probes (2 ms), >= 5 probes and >= 15 ms worth of bytes
    assert {s[1] for s in c1} == {450} and len(c1) >= 5 and sum(s[1] for s in c1) >= 3375
    assert {s[1] for s in c2} == {900} and sum(s[1] for s in c2) >= 6750
    gaps = {c1[i + 1][0] - c1[i][0] for i in range(len(c1) - 1)}
    assert gaps <= {2}  # 450 B at 1.8 Mbps = 2 ms
    assert PROBATION_SSRC == 1234 and PROBATION_PAYLOAD_TYPE == 127


def test_prober_rejects_bad_rate_and_expires_clusters():
    p = BitrateProber()
    with pytest.raises(ValueError, match="bitrate_bps"):
        p.create_cluster(1, 0, 0)
    p.create_cluster(1, 1_000_000, 0)
    p.create_cluster(2, 1_000_000, 6_000)  # cluster 1 never started: dropped after 5 s
    assert p.pop_probe(6_000)[0] == 2


def _feed(bwe, *, rate_bps, seconds, start_ms=0, delay_ms=50, loss=0.0, seed=1, size=1000,
          seq0=0):
    """Open-loop sender at ``rate_bps`` with feedback every 100 ms (arrivals = send + delay);
    drives timers and sends probes as padding. Returns the next free seq and time."""
    rng = random.Random(seed)
    gap = size * 8000 / rate_bps
    t = float(start_ms)
    seq = seq0
    pending = []  # (seq16, send_ms, lost)
    next_fb = start_ms + 100
    end = start_ms + seconds * 1000
    while t < end:
        now = int(t)
        while bwe.next_timer_ms() is None or bwe.next_timer_ms() <= now:
            bwe.on_timer(bwe.next_timer_ms() or now)
        while (p := bwe.pop_probe(now)) is not None:
            bwe.on_packet_sent(seq & 0xFFFF, p[0], now, p[1])
            pending.append((seq & 0xFFFF, now, False))
            seq += 1
        bwe.on_packet_sent(seq & 0xFFFF, size, now)
        pending.append((seq & 0xFFFF, now, rng.random() < loss))
        seq += 1
        if now >= next_fb:
            arrivals = [(s, None if lost else (ts + delay_ms) * 1000) for s, ts, lost in pending]
            if any(a is not None for _, a in arrivals):
                bwe.on_feedback(build_fci(arrivals[0][0], 0, arrivals), now + delay_ms)
            pending = []
            next_fb += 100
        t += gap
    return seq, int(t)


def test_feedback_drives_the_controller_and_bad_fci_raises():
    b = SendSideBwe("goog_cc_m77")
    _feed(b, rate_bps=500_000, seconds=3)
    assert b.feedbacks >= 25 and b.packets_sent >= 180
    assert b.controller.last_acked_bps == pytest.approx(500_000 * 1.0, rel=0.15)
    with pytest.raises(PacketParseError):
        b.on_feedback(b"\x00\x01", 5_000)


def test_random_loss_freezes_the_reference_but_not_ours():
    targets = {}
    for kind in ("goog_cc_m77", "raysfu"):
        b = SendSideBwe(kind, initial_available_outgoing_bitrate=300_000)
        seq, t = 0, 0
        for _ in range(20):  # the sender follows the target (capped) with 5 % random loss
            seq, t = _feed(b, rate_bps=min(b.target_bitrate_bps, 3_000_000), seconds=1,
                           start_ms=t, seq0=seq, loss=0.05, seed=t)
        targets[kind] = b.target_bitrate_bps
    assert targets["raysfu"] > 2 * targets["goog_cc_m77"]


def test_loss_classifier_learns_inherent_loss_at_low_queue():
    lc = LossClassifier()
    rng = random.Random(3)
    excess = 0.0
    for f in range(60):  # 100 packets per feedback, constant delay, 5 % random loss
        pk = [(f * 100 + i, None if rng.random() < 0.05 else f * 100 + i + 40, 1000, None)
              for i in range(100)]
        lost, ex = lc.classify(pk, f * 100 + 140)
        if f >= 20:
            excess += ex
    assert lc.p_inherent == pytest.approx(0.05, abs=0.02)
    assert excess < 0.01 * 40 * 100  # almost nothing above the inherent rate
    # drop-tail losses at a full queue (neighbours 300 ms late) count in full
    pk = [(10_000 + i, None if i % 4 == 0 else 10_000 + i + 340, 1000, None) for i in range(100)]
    lost, ex = lc.classify(pk, 10_500)
    assert lost == 25 and ex == pytest.approx(25 - lc.p_inherent * 100)


def test_delivery_rate_meter():
    m = DeliveryRateMeter(300)
    assert m.rate_bps() is None
    for i in range(40):
        m.add(i * 10, 1250)  # 1 Mbps
    assert m.rate_bps() == pytest.approx(1_000_000, rel=0.05)
    m.add(300, 1250)  # out of order times are clamped
    assert m.rate_bps() is not None


def test_trend_calculator_follows_rises_and_decays_5_percent_per_second():
    tc = TrendCalculator()
    assert tc.update(1_000_000, 0) == 1_000_000
    assert tc.update(2_000_000, 1_000) == 2_000_000
    assert tc.update(500_000, 3_000) == pytest.approx(2_000_000 * 0.9)
    assert tc.update(500_000, 30_000) == 500_000
    assert tc.force(100, 31_000) == 100


def test_desired_bitrate_sets_max_with_margin_and_probes_midcall():
    b = SendSideBwe(initial_available_outgoing_bitrate=500_000)
    b.enable_trace_event(["bwe", "probation"])
    _feed(b, rate_bps=500_000, seconds=2)  # start probes done, results waited for
    b.pop_trace()
    b.set_desired_bitrate(300_000, 2_000)
    assert b.max_bitrate_bps == 500_000  # max(initial, 1.35 x 300 k)
    b.set_desired_bitrate(360_000, 2_040)  # 1.35 x 360 k = 486 k: within the 10 % margin
    assert b.max_bitrate_bps == 500_000
    b.set_desired_bitrate(450_000, 2_050)
    assert b.max_bitrate_bps == 607_500 and b.target_bitrate_bps == 607_500
    assert b.next_probe_time_ms() is None
    b.set_desired_bitrate(1_500_000, 2_100)
    assert b.max_bitrate_bps == 2_025_000
    tr = b.pop_trace()
    assert tr[-1]["type"] == "bwe" and tr[-1]["direction"] == "out"
    info = tr[-1]["info"]
    assert info["maxBitrate"] == 2_025_000 and info["type"] == "transport-cc"
    assert info["maxPaddingBitrate"] == int(2_025_000 * 0.85)
    assert set(info) >= {"desiredBitrate", "effectiveDesiredBitrate", "minBitrate",
                         "startBitrate", "availableBitrate"}
    assert b.next_probe_time_ms() is not None  # mid-call / allocation probe at the new max
    b.set_desired_bitrate(1_600_000, 2_200)  # < 10 % change of max: ignored
    assert b.max_bitrate_bps == 2_025_000
    with pytest.raises(ValueError, match="desired_bps"):
        b.set_desired_bitrate(-1, 2_300)
    b.max_outgoing_bitrate = 1_000_000
    b.set_desired_bitrate(3_000_000, 2_400)
    assert b.max_bitrate_bps == 1_000_000 and b.target_bitrate_bps <= 1_000_000


def test_probation_trace_shape():
    b = SendSideBwe()
    b.enable_trace_event(["probation", "other"])
    b.on_timer(0)
    size, cid = b.pop_probe(0)
    b.on_packet_sent(7, size, 0, cid)
    (ev,) = b.pop_trace()
    assert ev["type"] == "probation" and ev["timestamp"] == 0 and ev["direction"] == "out"
    assert ev["info"]["ssrc"] == 1234 and ev["info"]["payloadType"] == 127
    assert ev["info"]["wideSequenceNumber"] == 7 and ev["info"]["size"] == size
    assert b.probation_bytes_sent == size


class _FakeController:
    """Controller double whose target the test sets."""

    name = "fake"

    def __init__(self):
        self.target_bps = 1_000_000

    def on_sent_packet(self, send_ms, size):
        pass

    def on_feedback(self, now_ms, packets):
        pass

    def process(self, now_ms):
        pass

    def set_constraints(self, *a):
        pass

    def set_max_total_allocated(self, *a):
        pass

    def pop_probes(self):
        return []

    def state(self):
        return {}


def test_available_bitrate_events_follow_mediasoup_rules():
    fc = _FakeController()
    b = SendSideBwe(fc, initial_available_outgoing_bitrate=1_000_000)
    b.on_timer(0)  # arms the notifier (mediasoup's constructor-time call is not notified)
    assert b.poll_available_bitrate() is None
    fc.target_bps = 1_100_000
    b.on_timer(25)
    assert b.poll_available_bitrate() == 1_100_000  # the first change is notified at once
    fc.target_bps = 1_200_000
    b.on_timer(50)
    assert b.poll_available_bitrate() is None  # small change within 1 s
    fc.target_bps = 800_000
    b.on_timer(100)
    assert b.poll_available_bitrate() == 800_000  # < 0.75x the previous value: at once
    fc.target_bps = 1_300_000
    b.on_timer(125)
    assert b.poll_available_bitrate() == 1_300_000  # > 1.5x: at once
    b.on_timer(1_100)
    assert b.poll_available_bitrate() is None
    b.on_timer(1_125)
    assert b.poll_available_bitrate() == 1_300_000  # timer re-emits once a second
    fc.target_bps = 1_000_000  # equal to the initial value: skipped after the first event
    b.on_timer(3_000)
    assert b.available_bitrate_bps == 1_300_000


def test_min_and_max_outgoing_bitrate_clamp_the_target():
    fc = _FakeController()
    b = SendSideBwe(fc, max_outgoing_bitrate=700_000)
    assert b.target_bitrate_bps == 700_000
    fc.target_bps = 50_000
    b.min_outgoing_bitrate = 100_000
    assert b.target_bitrate_bps == 100_000


def test_burst_queue_collapse_reopens_the_search_at_a_capacity_step_only(monkeypatch):
    """Change 3's drain detector (bwe/controller.py) on the emulator: in S1b (seed 3) the link
    steps up at 40 s while ours sits below its last overuse rate; the collapse of the burst queue
    must reset the capacity estimate right after the step (and after the 80 s step, and nowhere
    else), which is what brings t_up40 under the reference's 11.8 s. Scenarios with no capacity
    rise never fire it."""
    from raysfu.bwe import scenarios

    fired = []
    original = RaysfuController._drained

    def observed(self, now_ms):
        result = original(self, now_ms)
        if result:
            fired.append(now_ms)
        return result

    monkeypatch.setattr(RaysfuController, "_drained", observed)
    metrics = scenarios.run("S1b", "raysfu", 3).metrics
    assert fired and any(t <= 42_000 for t in fired), fired
    assert all(40_000 <= t <= 42_000 or 80_000 <= t <= 82_000 for t in fired), fired
    assert metrics["t_up40_s"] < 11.8
    fired.clear()
    for sid in ("S4", "S5", "S7"):  # random loss, a TCP competitor, a pause: no capacity step up
        scenarios.run(sid, "raysfu", 1)
    assert fired == []


def _standing_queue_run(standing_ms, *, link_capacity_kbps=950.0, searching=False):
    """Change 6 on the delay-based part alone, with a fake clock: one feedback per 100 ms, each
    of 10 packets (1200 B, every 10 ms) at a constant one-way delay, so the trendline stays
    NORMAL; before each feedback the standing queue is set as the controller sets it from its
    loss classifier. The AIMD starts at 1 Mbps, acked 1 Mbps (within the link-capacity estimate's
    bounds, so the AIMD keeps it). Returns (targets, the delay-based BWE)."""
    from raysfu.bwe.controller import _DelayBasedBwe
    from raysfu.bwe.goog_cc.trendline import BandwidthUsage

    d = _DelayBasedBwe()
    d.rate_control.set_estimate(1_000_000, 0)
    d.rate_control.link_capacity.estimate_kbps = link_capacity_kbps
    d.searching = searching
    targets = []
    for k, sq in enumerate(standing_ms):
        now = 10_000 + 100 * k
        packets = [(now - 150 + 10 * i, now - 100 + 10 * i, 1200) for i in range(10)]
        for _, recv, size in packets:
            d.delivery.add(recv, size)
        d.standing_queue_ms = sq
        r = d.incoming(packets, 1_000_000, None, False, now)
        assert d.detector.state == BandwidthUsage.NORMAL
        targets.append(r.target_bps if r.updated else d.rate_control.current_bps)
    return targets, d


def test_a_standing_queue_rising_from_empty_is_an_overuse_beyond_known_capacity():
    """bwe/controller.py change 6: the trendline sees nothing (constant delays), but the standing
    queue goes 1 → 6 → 12 → 18 ms within a second while the estimate (1 Mbps) is above the
    link-capacity estimate (950 kbps): the AIMD cuts at the first 18 ms feedback or the next one
    (m77 allows one change per RTT, 200 ms here), to about 0.85 × the delivery rate (960 kbps
    here), once."""
    targets, d = _standing_queue_run([1, 1, 1, 1, 1, 6, 12, 18, 18, 18])
    assert d.queue_overuses == 1
    cut = next(i for i, t in enumerate(targets) if t < 1_000_000)
    assert cut in (7, 8)
    assert 0.8 * 960_000 <= targets[cut] <= 0.9 * 960_000
    assert targets[-1] == targets[cut]  # no second cut in the same episode


def test_a_standing_queue_is_no_overuse_when_held_by_others_or_below_known_capacity():
    """A queue that never was below 10 ms within the last second (a TCP flow holding it) does not
    fire, even when it rises; nor does a rising queue while the estimate is below the
    link-capacity estimate without a capacity search; with a search on it does."""
    held, d = _standing_queue_run([40, 40, 40, 40, 40, 45, 50, 56, 60, 66])
    assert d.queue_overuses == 0 and min(held) >= 1_000_000
    below, d = _standing_queue_run([1, 1, 1, 1, 1, 6, 12, 18, 18, 18], link_capacity_kbps=1_500.0)
    assert d.queue_overuses == 0 and min(below) >= 1_000_000
    _, d = _standing_queue_run([1, 1, 1, 1, 1, 6, 12, 18, 18, 18], link_capacity_kbps=1_500.0,
                               searching=True)
    assert d.queue_overuses == 1
    _, d = _standing_queue_run([1, 1, 1, 1, 1, 6, 12, 14, 14, 14])  # under 15 ms: no overuse
    assert d.queue_overuses == 0
