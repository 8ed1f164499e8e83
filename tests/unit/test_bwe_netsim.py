"""The fast multi-flow network of the BWE scenarios: link model, TCP, media flows, determinism."""

import pytest
from raysfu.bwe.emulator import Simulator
from raysfu.bwe.estimator import SendSideBwe
from raysfu.bwe.netsim import (
    DROP_NONE,
    DROP_QUEUE,
    DROP_RANDOM,
    ConstantSource,
    FastLink,
    Network,
    PerfectCodec,
    ShortTcpPool,
)

S = 1_000_000


def test_fast_link_serialization_propagation_and_time_drop_tail():
    sim = Simulator()
    link = FastLink(sim, "l", [(0, 1_000_000), (50_000, 500_000)], prop_delay_us=20_000,
                    queue_delay_limit_us=30_000)
    assert link.send(1250) == (0, 0, 10_000 + 20_000, DROP_NONE)  # 10 ms at 1 Mbps
    assert link.send(1250)[1:3] == (10_000, 40_000)  # queued behind the first
    assert link.send(1250)[3] == DROP_NONE and link.queue_delay_us(0) == 30_000
    assert link.send(1250)[3] == DROP_NONE  # waits exactly the 30 ms limit
    assert link.send(1250)[3] == DROP_QUEUE and link.dropped_queue == 1  # would wait 40 ms
    sim.run(60_000)
    _enq, start, arrival, _drop = link.send(1250)  # capacity at start time: 500 kbps
    assert (start, arrival - start) == (60_000, 20_000 + 20_000)  # queue drained by 60 ms
    assert link.capacity_at(49_999) == 1_000_000 and link.capacity_at(50_000) == 500_000
    with pytest.raises(ValueError):
        FastLink(sim, "bad", [(10, 1)], prop_delay_us=0)
    with pytest.raises(ValueError):
        FastLink(sim, "bad", None, prop_delay_us=0, loss_rate=2)


def test_fast_link_random_loss_and_infinite_capacity():
    sim = Simulator(5)
    link = FastLink(sim, "l", None, prop_delay_us=7, loss_rate=0.1)
    res = [link.send(100) for _ in range(20_000)]
    lost = sum(r[3] == DROP_RANDOM for r in res)
    assert lost == pytest.approx(2_000, abs=4 * (20_000 * 0.09) ** 0.5)
    assert all(r[2] == 7 for r in res if r[3] == DROP_NONE)


def _net(seed=1, **fwd):
    f = {"capacity_schedule": [(0, 1_000_000)], "prop_delay_us": 25_000,
             "queue_delay_limit_us": 300_000}
    f.update(fwd)
    return Network(seed, forward=f, backward={"capacity_schedule": None, "prop_delay_us": 25_000})


def test_tcp_bulk_flow_fills_the_link_and_recovers_from_drops():
    net = _net()
    tcp = net.add_tcp("tcp", start_us=0, stop_us=20 * S)
    net.run(20 * S)
    assert tcp.delivered_bps(5 * S, 20 * S) == pytest.approx(1_000_000, rel=0.08)
    assert net.forward.dropped_queue > 0  # slow start overflowed the 300 ms queue
    assert tcp.bytes_acked > 1_800_000


def test_short_tcp_downloads_complete():
    net = _net()
    pool = ShortTcpPool(net, link=net.forward, ack_link=net.backward, start_us=0,
                        stop_us=40 * S, n=4, initially_on=2, off_mean_us=2 * S)
    net.run(60 * S)
    assert pool.downloads >= 20
    assert all(f.done for f in pool.flows[:-4])  # all but possibly the last few finished


def test_app_limited_media_flow_sends_its_rate_and_gets_feedback():
    net = _net()
    bwe = SendSideBwe("raysfu")
    f = net.add_media("m", bwe, ConstantSource(300_000), keep_trace=True)
    net.run(10 * S)
    assert f.sent_bps(2 * S, 10 * S) == pytest.approx(300_000 * 1240 / 1200, rel=0.1)
    assert f.feedback_sent >= 95 and bwe.feedbacks >= 90
    assert f.loss(0, 10 * S) == (0.0, 0.0, 0.0)
    assert f.trace and set(f.trace[-1][2]) >= {"trend", "threshold", "usage", "acked_bps"}
    assert bwe.controller.in_alr()  # 300 k of an estimate well above it


def test_perfect_codec_flow_tracks_capacity_deterministically():
    def run(seed):
        net = _net(seed, loss_rate=0.01)
        f = net.add_media("m", SendSideBwe("raysfu"), PerfectCodec())
        net.run(20 * S)
        return f

    a, b, c = run(3), run(3), run(4)
    assert a.targets == b.targets and a.rec_drop == b.rec_drop
    assert a.rec_drop != c.rec_drop
    u = a.sent_bps(10 * S, 20 * S) / 1_000_000
    assert 0.8 <= u <= 1.05
    assert a.target_at(15 * S) > 0 and a.target_at(-1) == 0
    assert a.rate_series()[-1][1] > 0
