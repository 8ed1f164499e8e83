"""Deterministic network emulator: link model, feedback path, metrics, determinism."""

import pytest

from raysfu.bwe.emulator import (
    ConstantRateSender,
    CrossTraffic,
    Emulator,
    Link,
    Simulator,
    StepRateSender,
    jain_fairness,
    percentile,
)

S = 1_000_000  # µs per second


def test_simulator_orders_ties_by_scheduling_and_rejects_the_past():
    sim = Simulator(1)
    seen = []
    sim.at(10, seen.append, "a")
    sim.at(5, seen.append, "b")
    sim.at(10, seen.append, "c")
    sim.run(9)
    assert seen == ["b"] and sim.now_us == 9
    sim.run(100)
    assert seen == ["b", "a", "c"] and sim.now_us == 100
    with pytest.raises(ValueError):
        sim.at(50, seen.append, "x")
    assert sim.rng("x").random() == Simulator(1).rng("x").random()
    assert sim.rng("x").random() != sim.rng("y").random()


def test_below_capacity_no_loss_and_delay_is_propagation_plus_serialization():
    e = Emulator(ConstantRateSender(800_000, packet_bytes=1200), capacity_bps=1_000_000,
                 prop_delay_us=25_000, overhead_bytes=0).run(10 * S)
    assert e.loss_rate() == (0.0, 0.0, 0.0)
    assert set(e.queue_delays_us()) == {0}
    assert set(e.one_way_delays_us()) == {25_000 + 9_600}  # 1200 B at 1 Mbps = 9.6 ms
    assert e.utilization() == pytest.approx(0.8, abs=0.005)
    # the feedback path reports every packet received with constant one-way delay
    results = [r for fb in e.sender.feedbacks for r in fb]
    assert len(results) >= len(e.packets) - 20
    assert all(r.recv_us is not None for r in results)
    owd = [r.recv_us - r.send_us for r in results]
    assert max(owd) - min(owd) <= 250  # 250 µs wire quantization
    assert [r.transport_seq for r in results] == sorted({r.transport_seq for r in results})


def test_above_capacity_queue_grows_then_drops_tail():
    e = Emulator(ConstantRateSender(2_000_000), capacity_bps=1_000_000, prop_delay_us=20_000,
                 queue_bytes=30_000, overhead_bytes=0).run(10 * S)
    delays = e.queue_delays_us()
    assert delays[0] == 0 and max(delays) <= 30_000 * 8 + 9_600  # queue bytes / C
    assert e.queue_delay_percentile_us(95, 2 * S) == pytest.approx(240_000, abs=10_000)
    total, queue, rnd = e.loss_rate(2 * S)
    assert rnd == 0 and queue == total == pytest.approx(0.5, abs=0.02)
    assert e.utilization(2 * S, 10 * S, received=True) == pytest.approx(1.0, abs=0.01)
    assert e.forward.dropped_queue == sum(p.drop == "queue" for p in e.packets)
    # the sender learns about exactly those drops through transport-cc
    lost_fb = {r.transport_seq for fb in e.sender.feedbacks for r in fb if r.recv_us is None}
    dropped = {p.seq for p in e.packets if p.drop}
    reported = {r.transport_seq for fb in e.sender.feedbacks for r in fb}
    assert lost_fb == dropped & reported and len(lost_fb) > 0.9 * len(dropped)


def test_time_based_drop_tail_bounds_queue_delay():
    e = Emulator(ConstantRateSender(1_500_000), capacity_bps=1_000_000,
                 queue_delay_limit_us=100_000, overhead_bytes=0).run(5 * S)
    assert max(e.queue_delays_us()) <= 100_000 + 9_600
    assert e.loss_rate()[1] > 0.2


@pytest.mark.parametrize("p", [0.02, 0.1])
def test_random_loss_rate_matches(p):
    e = Emulator(ConstantRateSender(2_000_000, packet_bytes=500), seed=7, capacity_bps=10_000_000,
                 loss_rate=p, overhead_bytes=0).run(40 * S)  # 20 000 packets
    n = sum(pk.flow == "media" for pk in e.packets)
    assert n == 20_000
    total, queue, rnd = e.loss_rate()
    assert queue == 0 and rnd == total
    assert rnd == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5)  # within 4 sigma
    lost_fb = sum(r.recv_us is None for fb in e.sender.feedbacks for r in fb)
    reported_max = max(r.transport_seq for fb in e.sender.feedbacks for r in fb)
    assert lost_fb == sum(pk.drop is not None for pk in e.packets if pk.seq <= reported_max)


def _busy_scenario(seed):
    return Emulator(
        ConstantRateSender(900_000, packet_bytes=1000), seed=seed, capacity_bps=1_200_000,
        capacity_schedule=[(0, 1_200_000), (3 * S, 700_000), (6 * S, 1_500_000)],
        queue_bytes=40_000, loss_rate=0.03, return_loss_rate=0.05,
        cross_traffic=[CrossTraffic(300_000, poisson=True, start_us=1 * S, stop_us=8 * S)],
    ).run(9 * S)


def test_same_seed_gives_identical_trace_and_other_seed_differs():
    a, b, c = _busy_scenario(3), _busy_scenario(3), _busy_scenario(4)
    assert a.trace_csv() == b.trace_csv()
    assert [len(fb) for fb in a.sender.feedbacks] == [len(fb) for fb in b.sender.feedbacks]
    assert a.trace_csv() != c.trace_csv()
    assert a.feedback_lost > 0 and a.forward.dropped_queue > 0 and a.forward.dropped_random > 0


def test_capacity_schedule_is_applied_and_integrated_exactly():
    e = Emulator(ConstantRateSender(1_000_000), capacity_schedule=[(0, 2_000_000),
                 (5 * S, 500_000)], queue_bytes=50_000, overhead_bytes=0).run(10 * S)
    assert e.capacity_at(4 * S) == 2_000_000 and e.capacity_at(5 * S) == 500_000
    assert e.capacity_bits(4 * S, 6 * S) == 2_500_000
    assert e.loss_rate(0, 5 * S) == (0.0, 0.0, 0.0)
    assert e.loss_rate(6 * S)[1] == pytest.approx(0.5, abs=0.03)
    assert e.utilization(6 * S, 10 * S, received=True) == pytest.approx(1.0, abs=0.01)
    assert [b[1] for b in e.bins[:3]] == [2_000_000] * 3 and e.bins[60][1] == 500_000


def test_zero_capacity_holds_the_queue():
    sim = Simulator()
    got = []
    link = Link(sim, "l", capacity_bps=0, prop_delay_us=1_000, deliver=lambda p: got.append(p))
    from raysfu.bwe.emulator import SimPacket

    for i in range(3):
        link.send(SimPacket("media", i, 125, 0))
    sim.run(50_000)
    assert got == [] and link.queued_bytes == 375
    sim.at(60_000, link.set_capacity, 1_000_000)  # 125 B = 1 ms
    sim.run(100_000)
    assert [p.arrival_us for p in got] == [62_000, 63_000, 64_000]


def test_cross_traffic_shares_the_bottleneck():
    alone = Emulator(ConstantRateSender(600_000), capacity_bps=1_000_000,
                     queue_bytes=30_000).run(5 * S)
    shared = Emulator(ConstantRateSender(600_000), capacity_bps=1_000_000, queue_bytes=30_000,
                      cross_traffic=[CrossTraffic(600_000)]).run(5 * S)
    assert alone.loss_rate()[0] == 0
    assert shared.loss_rate(1 * S)[1] > 0.05
    cross = [p for p in shared.packets if p.flow == "cross"]
    assert len(cross) == pytest.approx(5 * 600_000 / 8000, rel=0.01)


def test_convergence_time_for_rate_steps():
    up = Emulator(StepRateSender([(0, 500_000), (5 * S, 1_500_000)]), capacity_bps=2_000_000,
                  overhead_bytes=0).run(10 * S)
    t = up.convergence_time_us(5 * S, 1_500_000)
    assert 800_000 <= t <= 1_000_000  # 1 s average needs ~85 % of its window at the new rate
    assert up.convergence_time_us(5 * S, 1_500_000, until_us=10 * S) == t
    assert up.convergence_time_us(5 * S, 3_000_000) is None
    down = Emulator(StepRateSender([(0, 1_500_000), (5 * S, 500_000)]), capacity_bps=2_000_000,
                    overhead_bytes=0).run(10 * S)
    assert 900_000 <= down.convergence_time_us(5 * S, 500_000) <= 1_100_000
    assert down.bins[10][4] == 1_500_000 and down.bins[60][4] == 500_000


def test_helpers():
    assert jain_fairness([1.0, 1.0, 1.0]) == 1.0
    assert jain_fairness([1.0, 0.0]) == 0.5
    assert percentile([], 95) is None
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([3, 1, 2], 50) == 2


def test_long_run_is_fast():
    import time

    t0 = time.perf_counter()
    e = Emulator(ConstantRateSender(2_500_000), capacity_bps=3_000_000).run(100 * S)
    assert time.perf_counter() - t0 < 5.0
    assert e.utilization(received=True) == pytest.approx(2_500_000 * 1240 / 1200 / 3_000_000,
                                                        rel=0.01)
