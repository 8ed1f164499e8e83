"""BWE acceptance scenarios S0–S9 (research/bwe.md §3.1, §4.4–4.6) on :mod:`raysfu.bwe.netsim`.

``run(scenario_id, controller, seed) -> Result`` builds the network, runs it and computes the
metrics; ``evaluate(scenario_id, metrics)`` applies the fixed thresholds of the plan;
``within_reference(ours, ref)`` applies the "at least as good as goog_cc" rule of §4.5:

- ``U*`` (utilization, shares) and ``J*`` (Jain index): ours ≥ ref − 0.02;
- ``t_*`` (convergence, seconds): ours ≤ 1.1·ref + 0.5 s;
- ``qdelay_*`` (ms): ours ≤ 1.1·ref + 5 ms;
- ``loss*`` (fraction): ours ≤ ref + 0.002.

Metrics are medians over seeds where :func:`median_metrics` is used. Defaults (§4.6): one-way
50 ms each way, drop-tail T_q = 300 ms, no random loss, min 30 kbps / start 600 kbps /
max 5 Mbps, perfect codec paced at 2.5× the target, feedback every 100 ms. Durations are those of
the plan except S6 (150 s instead of 300 s, short TCP active 40–130 s, measured over [50, 130))
and S7 (80 s), to keep the suite fast.

Rates are link rates (RTP + 40 bytes per packet) so that they compare with the capacity.
"""

from __future__ import annotations

import math
import statistics
import time

from raysfu.bwe.allocator import BitrateAllocator
from raysfu.bwe.estimator import SendSideBwe
from raysfu.bwe.netsim import (
    DROP_QUEUE,
    DROP_RANDOM,
    ForwarderSource,
    MediaFlow,
    Network,
    PerfectCodec,
    ShortTcpPool,
    jain_fairness,
    percentile,
)

__all__ = [
    "CONTROLLERS",
    "SCENARIOS",
    "THRESHOLDS",
    "Result",
    "evaluate",
    "median_metrics",
    "run",
    "run_s6_constant_rate",
    "within_reference",
]

S = 1_000_000
MS = 1_000
CONTROLLERS = ("raysfu", "goog_cc_m77")
INF = math.inf


class Result:
    """``scenario``, ``controller``, ``seed``, ``metrics`` (name → float), ``cpu_s`` and, with
    ``keep``, ``net`` (the :class:`Network`, for plots) and ``extra`` (scenario objects)."""

    def __init__(self, scenario: str, controller: str, seed: int, metrics: dict, cpu_s: float,
                 net=None, extra=None) -> None:
        self.scenario = scenario
        self.controller = controller
        self.seed = seed
        self.metrics = metrics
        self.cpu_s = cpu_s
        self.net = net
        self.extra = extra or {}

    def __repr__(self) -> str:
        return f"Result({self.scenario}, {self.controller}, seed={self.seed}, {self.metrics})"


def _net(seed, fwd_sched, *, one_way_us=50 * MS, tq_us=300 * MS, loss=0.0, back_sched=None,
         back_tq_us=300 * MS, back_one_way_us=None):
    return Network(seed, forward={"capacity_schedule": fwd_sched, "prop_delay_us": one_way_us,
                                      "queue_delay_limit_us": tq_us, "loss_rate": loss},
                   backward={"capacity_schedule": back_sched,
                                 "prop_delay_us": one_way_us if back_one_way_us is None
                                 else back_one_way_us,
                                 "queue_delay_limit_us": back_tq_us if back_sched else None})


def _bwe(controller, start=600_000, min_bps=30_000, max_bps=5_000_000):
    return SendSideBwe(controller, initial_available_outgoing_bitrate=start,
                       min_bitrate_bps=min_bps, max_bitrate_bps=max_bps)


def _media(net, name, controller, **kw) -> MediaFlow:
    """A perfect-codec flow; its start is jittered by U(0, 100 ms) from the seed so that seeds
    differ in phase (frame, pacer and feedback timing) even without random loss."""
    bwe_kw = {k: kw.pop(k) for k in ("start", "min_bps", "max_bps") if k in kw}
    kw["start_us"] = kw.get("start_us", 0) + net.sim.rng(f"start:{name}").randrange(100_000)
    kw.setdefault("keep_trace", _KEEP_TRACE[0])
    return net.add_media(name, _bwe(controller, **bwe_kw), PerfectCodec(), **kw)


_KEEP_TRACE = [False]  # set by run(keep=True): flows record the controller state


# --- metric helpers ---------------------------------------------------------------------------

def _u(net, flows, t0, t1) -> float:
    sent = sum(f.sent_bps(t0, t1) for f in flows)
    return sent / net.mean_capacity_bps(t0, t1)


def _qd(flows, t0, t1, p) -> float:
    vals = []
    for f in flows:
        vals += f.queue_delays_us(t0, t1)
    v = percentile(vals, p)
    return 0.0 if v is None else v / 1000


def _loss(flows, t0, t1, kind: int = DROP_QUEUE) -> float:
    """Fraction of media packets sent in [t0, t1) dropped by the queue (self-inflicted; the
    metric compared with the reference) or, with ``kind=DROP_RANDOM``, by random loss."""
    n = d = 0
    for f in flows:
        i0, i1 = f._window(t0, t1)
        seg = f.rec_drop[i0:i1]
        n += len(seg)
        d += seg.count(kind)
    return d / n if n else 0.0


def _t_reach(f: MediaFlow, step_us: int, level_bps: float, up: bool, end_us: int) -> float:
    """Seconds after ``step_us`` until the 1 s moving average of ``f``'s send rate is ≥
    ``level`` (``up``) or ≤ ``level``; inf if not before ``end_us``."""
    for t, r in f.rate_series():
        if t <= step_us or t > end_us:
            continue
        if (up and r >= level_bps) or (not up and r <= level_bps):
            return (t - step_us) / S
    return INF


def _t_target(f: MediaFlow, step_us: int, level_bps: float, end_us: int) -> float:
    for t, v in f.target_series():
        if step_us <= t <= end_us and v >= level_bps:
            return (t - step_us) / S
    return INF


# --- scenarios ----------------------------------------------------------------------------------

def _s0(controller, seed, keep):
    # UpdatesTargetRateBasedOnLinkCapacity: start 300 / min 10 / max 1500 kbps, 100 ms one-way,
    # unbounded queue; 500 → 800 (25 s) → 100 kbps with 200 ms each way (45 s).
    net = _net(seed, [(0, 500_000), (25 * S, 800_000), (45 * S, 100_000)], one_way_us=100 * MS,
               tq_us=None)
    f = _media(net, "media", controller, start=300_000, min_bps=10_000, max_bps=1_500_000)

    def longer():
        net.forward.prop_delay_us = net.backward.prop_delay_us = 200 * MS

    net.sim.at(45 * S, longer)
    net.run(95 * S)
    m = {"target_25s_kbps": f.target_at(25 * S - 1) / 1000,
         "target_45s_kbps": f.target_at(45 * S - 1) / 1000,
         "target_95s_kbps": f.target_at(95 * S - 1) / 1000}
    # StableEstimateDoesNotVaryInSteadyState: 500 kbps, 100 ms each way, 20 samples after 30 s
    net2 = _net(seed, [(0, 500_000)], one_way_us=100 * MS, tq_us=None)
    f2 = _media(net2, "media", controller, start=300_000, min_bps=10_000, max_bps=1_500_000)
    net2.run(50 * S)
    samples = [f2.target_at(t * S) for t in range(30, 50)]
    m["stable_min_over_max"] = min(samples) / max(samples)
    # IsFairToTCP: 1000 kbps, 50 ms each way, start 1000 kbps, TCP cross traffic
    net3 = _net(seed, [(0, 1_000_000)], one_way_us=50 * MS)
    f3 = _media(net3, "media", controller, start=1_000_000, min_bps=10_000, max_bps=5_000_000)
    net3.add_tcp("tcp")
    net3.run(10 * S)
    m["tcp_fair_send_kbps"] = f3.sent_bps(9 * S, 10 * S) / 1000
    m["loss"] = _loss([f], 0, 95 * S)
    return m, net, {"flows": [f], "stable": f2, "tcp": f3}


def _s1(controller, seed, keep, one_way_us=50 * MS):
    sched = [(0, 1_000_000), (40 * S, 2_500_000), (60 * S, 600_000), (80 * S, 1_000_000)]
    net = _net(seed, sched, one_way_us=one_way_us)
    f = _media(net, "media", controller)
    net.run(100 * S)
    w = [(10 * S, 40 * S), (90 * S, 100 * S)]
    sent = sum(f.sent_bps(a, b) * (b - a) for a, b in w)
    cap = sum(net.capacity_bits(a, b) * S for a, b in w)
    qd = []
    for a, b in w:
        qd += f.queue_delays_us(a, b)
    m = {"U": sent / cap,
         "t_up40_s": _t_reach(f, 40 * S, 0.9 * 2_500_000, True, 60 * S),
         "t_down60_s": _t_reach(f, 60 * S, 1.1 * 600_000, False, 80 * S),
         "t_up80_s": _t_reach(f, 80 * S, 0.9 * 1_000_000, True, 100 * S),
         "qdelay_at65_ms": statistics.fmean(f.queue_delays_us(64 * S, 65 * S) or [0]) / 1000,
         "qdelay_p95_ms": (percentile(qd, 95) or 0) / 1000,
         "qdelay_p50_ms": (percentile(qd, 50) or 0) / 1000,
         "loss": _loss([f], 0, 100 * S),
         "loss_steady": (_loss([f], *w[0]) * 30 + _loss([f], *w[1]) * 10) / 40}
    return m, net, {"flows": [f]}


def _s1b(controller, seed, keep):
    return _s1(controller, seed, keep, one_way_us=100 * MS)


def _s2(controller, seed, keep):
    c = [(0, 4_000_000), (25 * S, 2_000_000), (50 * S, 3_500_000), (75 * S, 1_000_000),
         (100 * S, 2_000_000)]
    net = _net(seed, c)
    fl = [_media(net, f"media{i}", controller) for i in range(2)]
    net.run(125 * S)
    us, js, qs = [], [], []
    for k in range(5):
        a, b = (25 * k + 10) * S, (25 * k + 25) * S
        us.append(_u(net, fl, a, b))
        js.append(jain_fairness([f.sent_bps(a, b) for f in fl]))
        qs.append(_qd(fl, a, b, 95))
    m = {"U": min(us), "J": min(js), "qdelay_p95_ms": max(qs), "loss": _loss(fl, 0, 125 * S)}
    return m, net, {"flows": fl}


def _s3(controller, seed, keep):
    net = _net(seed, [(0, 3_500_000)])
    fl = [_media(net, f"media{i}", controller, start_us=20 * S * i, stop_us=119 * S)
          for i in range(3)]
    net.run(119 * S)
    a, b = 70 * S, 119 * S
    m = {"U": _u(net, fl, a, b), "J": jain_fairness([f.sent_bps(a, b) for f in fl]),
         "qdelay_p95_ms": _qd(fl, a, b, 95),
         "t_latecomer_s": _t_reach(fl[2], 40 * S, 0.5 * 3_500_000 / 3, True, 119 * S),
         "loss": _loss(fl, 0, 119 * S)}
    return m, net, {"flows": fl}


def _dips(f: MediaFlow, t0: int, t1: int) -> int:
    """Max number of target drops > 100 kbps (between 100 ms samples) in any 500 ms."""
    tg = [v for t, v in f.target_series() if t0 <= t < t1]
    drops = [1 if tg[i - 1] - tg[i] > 100_000 else 0 for i in range(1, len(tg))]
    return max((sum(drops[i:i + 5]) for i in range(max(1, len(drops) - 4))), default=0)


def _s4(controller, seed, keep):
    net = _net(seed, [(0, 2_000_000)], loss=0.05)
    f = _media(net, "media", controller)
    net.run(120 * S)
    tg = [v for t, v in f.target_series() if t >= 20 * S]
    m = {"U": _u(net, [f], 20 * S, 120 * S), "target_min_ratio": min(tg) / 2_000_000,
         "dips_max_500ms": _dips(f, 20 * S, 120 * S),
         "qdelay_p95_ms": _qd([f], 20 * S, 120 * S, 95), "loss": _loss([f], 0, 120 * S),
         "random_loss": _loss([f], 0, 120 * S, DROP_RANDOM)}
    return m, net, {"flows": [f]}


def _s4b(controller, seed, keep):
    net = _net(seed, [(0, 1_000_000), (60 * S, 2_000_000)], loss=0.05)
    f = _media(net, "media", controller)
    net.run(120 * S)
    m = {"U": _u(net, [f], 20 * S, 120 * S), "U_after_step": _u(net, [f], 70 * S, 120 * S),
         "t_reach_1400k_s": _t_target(f, 60 * S, 1_400_000, 120 * S),
         "qdelay_p95_ms": _qd([f], 20 * S, 120 * S, 95), "loss": _loss([f], 0, 120 * S),
         "random_loss": _loss([f], 0, 120 * S, DROP_RANDOM)}
    return m, net, {"flows": [f]}


def _s4c(controller, seed, keep):
    net = _net(seed, [(0, 2_000_000)], one_way_us=200 * MS, loss=0.10)
    f = _media(net, "media", controller)
    net.run(120 * S)
    m = {"target_120s_kbps": f.target_at(120 * S - 1) / 1000,
         "U": _u(net, [f], 20 * S, 120 * S), "loss": _loss([f], 0, 120 * S),
         "random_loss": _loss([f], 0, 120 * S, DROP_RANDOM)}
    return m, net, {"flows": [f]}


def _s5(controller, seed, keep, tq_us=300 * MS):
    net = _net(seed, [(0, 2_000_000)], tq_us=tq_us)
    f = _media(net, "media", controller, start_us=5 * S, stop_us=119 * S)
    tcp = net.add_tcp("tcp", start_us=40 * S, stop_us=80 * S)
    net.run(119 * S)
    m = {"share_vs_tcp": f.sent_bps(50 * S, 80 * S) / 2_000_000,
         "tcp_share": tcp.delivered_bps(50 * S, 80 * S) / 2_000_000,
         "t_back80_s": _t_reach(f, 80 * S, 0.8 * 2_000_000, True, 119 * S),
         "U_alone": _u(net, [f], 15 * S, 40 * S),
         "qdelay_p95_ms_alone": _qd([f], 15 * S, 40 * S, 95),
         "loss_alone": _loss([f], 15 * S, 40 * S)}
    return m, net, {"flows": [f], "tcp": tcp}


def _s5b(controller, seed, keep):
    return _s5(controller, seed, keep, tq_us=1000 * MS)


def _s6(controller, seed, keep, fixed_bps: int | None = None):
    net = _net(seed, [(0, 2_000_000)])
    rate = {} if fixed_bps is None else {"start": fixed_bps, "min_bps": fixed_bps,
                                         "max_bps": fixed_bps}
    fl = [_media(net, f"media{i}", controller, start_us=5 * S, **rate) for i in range(2)]
    pool = ShortTcpPool(net, link=net.forward, ack_link=net.backward, start_us=40 * S,
                        stop_us=130 * S)
    net.run(150 * S)
    a, b = 50 * S, 130 * S
    m = {"U": _u(net, fl, a, b), "J": jain_fairness([f.sent_bps(a, b) for f in fl]),
         "qdelay_p95_ms": _qd(fl, a, b, 95), "loss": _loss(fl, a, b),
         "tcp_downloads": float(pool.downloads)}
    return m, net, {"flows": fl, "pool": pool}


def _s7(controller, seed, keep):
    net = _net(seed, [(0, 3_500_000)])
    fl = [_media(net, "media0", controller, pauses=[(40 * S, 60 * S)])]
    fl += [_media(net, f"media{i}", controller) for i in (1, 2)]
    net.run(80 * S)
    qd = _qd(fl, 60 * S, 70 * S, 100)
    m = {"t_resume_s": _t_reach(fl[0], 60 * S, 0.5 * 3_500_000 / 3, True, 80 * S),
         "qdelay_max_resume_ms": qd,
         "U_pause": _u(net, fl[1:], 45 * S, 60 * S),
         "U": _u(net, fl, 20 * S, 40 * S),
         "qdelay_p95_ms": max(_qd(fl, 10 * S, 40 * S, 95), _qd(fl, 70 * S, 80 * S, 95)),
         "loss": _loss(fl, 0, 80 * S)}
    return m, net, {"flows": fl}


def _s8(controller, seed, keep):
    fwd = [(0, 2_000_000), (20 * S, 1_000_000), (40 * S, 500_000), (60 * S, 2_000_000)]
    back = [(0, 2_000_000), (35 * S, 800_000), (70 * S, 2_000_000)]
    net = _net(seed, fwd, back_sched=back)
    f = _media(net, "forward", controller)
    r = _media(net, "reverse", controller, reverse=True)
    net.run(100 * S)
    ratios, steady_q = [], []
    for a, b in ((10, 20), (30, 40), (50, 60), (70, 100)):
        tg = [v for t, v in f.target_series() if a * S <= t < b * S]
        ratios.append(statistics.fmean(tg) / net.mean_capacity_bps(a * S, b * S))
        steady_q += f.queue_delays_us(a * S, b * S)
    m = {"fwd_target_ratio_min": min(ratios), "U": _u(net, [f], 10 * S, 100 * S),
         "U_reverse": r.sent_bps(10 * S, 100 * S) / net.mean_capacity_bps(10 * S, 100 * S, True),
         "qdelay_p95_ms": (percentile(steady_q, 95) or 0) / 1000,
         "loss": _loss([f], 0, 100 * S), "feedback_lost": float(f.feedback_lost),
         "feedback_share_of_backward": f.feedback_bytes * 8 / net.capacity_bits(0, 100 * S, True)}
    return m, net, {"flows": [f, r]}


L_SIMULCAST = [[150_000], [500_000], [1_500_000]]


def _layer_share(src, cid, spatial, t0, t1) -> float:
    """Fraction of [t0, t1) during which ``cid`` was forwarded at ``spatial`` or above."""
    cur, last, on = None, t0, 0
    for t, c, lay in src.layer_log + [(t1, cid, None)]:
        if c != cid:
            continue
        t = min(max(t, t0), t1)
        if cur is not None and cur[0] >= spatial:
            on += t - last
        last, cur = t, lay
    return on / (t1 - t0)


def _s9(controller, seed, keep):
    # 2 Mbps; the producer sends L0 150 k + L1 300 k for 30 s, then also L2 1.5 M.
    net = _net(seed, [(0, 2_000_000)])
    alloc = BitrateAllocator()
    src = ForwarderSource(alloc, {"c1": [(0, [[150_000], [300_000], [0]]),
                                         (30 * S, [[150_000], [300_000], [1_500_000]])]})
    f = net.add_media("sfu", _bwe(controller), src, keep_trace=keep)
    f.on_tick_hooks.append(src.hook)
    net.run(45 * S)
    m = {"t_demand_s": _t_target(f, 30 * S, 1_500_000, 45 * S),
         "sent_before_kbps": f.sent_bps(10 * S, 30 * S) / 1000,
         "t_layer2_s": INF, "loss": _loss([f], 0, 45 * S),
         # the same forwarded layer (L1) for both controllers before the demand
         "qdelay_p95_ms": _qd([f], 10 * S, 30 * S, 95),
         "U_layer2_share": _layer_share(src, "c1", 2, 30 * S, 45 * S)}
    for t, cid, lay in src.layer_log:
        if t >= 30 * S and lay is not None and lay[0] == 2:
            m["t_layer2_s"] = (t - 30 * S) / S
            break
    return m, net, {"flows": [f], "source": src}


def _s9b(controller, seed, keep):
    # 100 kbps for 30 s (below L0: the allocator pauses everything), then 2 Mbps.
    net = _net(seed, [(0, 100_000), (30 * S, 2_000_000)])
    alloc = BitrateAllocator()
    src = ForwarderSource(alloc, {"c1": [(0, L_SIMULCAST)]})
    f = net.add_media("sfu", _bwe(controller), src, keep_trace=keep)
    f.on_tick_hooks.append(src.hook)
    net.run(50 * S)
    m = {"t_resume_s": INF, "paused_at_30s": float(src.layers_at("c1", 30 * S) is None),
         "t_demand_s": _t_target(f, 30 * S, 1_500_000, 50 * S), "loss": _loss([f], 30 * S,
                                                                              50 * S)}
    for t, cid, lay in src.layer_log:
        if t >= 30 * S and lay is not None:
            m["t_resume_s"] = (t - 30 * S) / S
            break
    return m, net, {"flows": [f], "source": src}


SCENARIOS = {
    "S0": _s0, "S1": _s1, "S1b": _s1b, "S2": _s2, "S3": _s3, "S4": _s4, "S4b": _s4b,
    "S4c": _s4c, "S5": _s5, "S5b": _s5b, "S6": _s6, "S7": _s7, "S8": _s8, "S9": _s9,
    "S9b": _s9b,
}

# Fixed thresholds of research/bwe.md §4.6: (metric, op, value). S0 holds libwebrtc's own.
THRESHOLDS: dict[str, list[tuple[str, str, float]]] = {
    "S0": [("target_25s_kbps", ">=", 350), ("target_25s_kbps", "<=", 550),
           ("target_45s_kbps", ">=", 600), ("target_45s_kbps", "<=", 900),
           ("target_95s_kbps", ">=", 65), ("target_95s_kbps", "<=", 115),
           ("stable_min_over_max", "<", 0.85), ("tcp_fair_send_kbps", "<", 750)],
    "S1": [("U", ">=", 0.80), ("t_up40_s", "<=", 20), ("t_down60_s", "<=", 2),
           ("qdelay_at65_ms", "<", 50), ("t_up80_s", "<=", 10), ("qdelay_p95_ms", "<=", 100),
           ("qdelay_p50_ms", "<=", 25), ("loss", "<=", 0.02), ("loss_steady", "<=", 0.005)],
    "S1b": [("U", ">=", 0.80), ("t_up40_s", "<=", 30), ("t_down60_s", "<=", 3),
            ("t_up80_s", "<=", 15), ("qdelay_p95_ms", "<=", 100), ("qdelay_p50_ms", "<=", 25),
            ("loss", "<=", 0.02), ("loss_steady", "<=", 0.005)],
    "S2": [("U", ">=", 0.80), ("J", ">=", 0.90), ("qdelay_p95_ms", "<=", 150)],
    "S3": [("J", ">=", 0.90), ("U", ">=", 0.85), ("qdelay_p95_ms", "<=", 150),
           ("t_latecomer_s", "<=", 15)],
    "S4": [("U", ">=", 0.70), ("target_min_ratio", ">=", 0.3), ("dips_max_500ms", "<", 2)],
    "S4b": [("t_reach_1400k_s", "<=", 30), ("U", ">=", 0.70)],
    "S4c": [("target_120s_kbps", ">", 100)],
    "S5": [("share_vs_tcp", ">=", 0.15), ("share_vs_tcp", "<=", 0.75),
           ("t_back80_s", "<=", 15)],
    "S5b": [("share_vs_tcp", ">=", 0.15), ("share_vs_tcp", "<=", 0.75),
            ("t_back80_s", "<=", 15)],
    "S6": [("U", ">=", 0.65), ("J", ">=", 0.90), ("qdelay_p95_ms", "<=", 150)],
    "S7": [("t_resume_s", "<=", 10), ("qdelay_max_resume_ms", "<=", 200),
           ("U_pause", ">=", 0.80)],
    "S8": [("fwd_target_ratio_min", ">=", 0.5)],
    "S9": [("t_demand_s", "<=", 6)],
    "S9b": [("t_resume_s", "<=", 10)],
}

_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        "<": lambda a, b: a < b}


def run(scenario: str, controller: str, seed: int = 1, keep: bool = False) -> Result:
    """Run one scenario with ``controller`` (``"raysfu"`` / ``"goog_cc_m77"``) and ``seed``.
    Raises KeyError for an unknown scenario id."""
    fn = SCENARIOS[scenario]
    t0 = time.process_time()
    _KEEP_TRACE[0] = keep
    try:
        metrics, net, extra = fn(controller, seed, keep)
    finally:
        _KEEP_TRACE[0] = False
    cpu = time.process_time() - t0
    return Result(scenario, controller, seed, {k: float(v) for k, v in metrics.items()}, cpu,
                  net if keep else None, extra if keep else None)


def run_s6_constant_rate(rate_bps: int, seed: int = 1) -> dict:
    """S6 (ten short TCP flows) with both media flows held at ``rate_bps`` each (the estimator's
    min = max = start, same codec and pacing): its metrics, which show the utilization / p95
    queueing-delay trade-off of the scenario itself, whatever the controller. Raises ValueError
    for ``rate_bps`` <= 0."""
    if rate_bps <= 0:
        raise ValueError(f"rate_bps must be > 0, got {rate_bps!r}")
    metrics, _, _ = _s6("raysfu", seed, False, fixed_bps=rate_bps)
    return {k: float(v) for k, v in metrics.items()}


def median_metrics(results) -> dict:
    """Per-metric median over ``results`` (the pass rule is applied to medians)."""
    keys = results[0].metrics.keys()
    return {k: statistics.median(r.metrics[k] for r in results) for k in keys}


def evaluate(scenario: str, metrics: dict) -> list[str]:
    """Failed fixed thresholds as readable strings (empty = pass)."""
    out = []
    for name, op, v in THRESHOLDS.get(scenario, []):
        x = metrics[name]
        if not _OPS[op](x, v):
            out.append(f"{scenario} {name}={x:.4g} not {op} {v}")
    return out


def within_reference(ours: dict, ref: dict) -> list[str]:
    """Metrics where ours is worse than the reference beyond the §4.5 margins (empty = pass)."""
    out = []
    for k, x in ours.items():
        r = ref.get(k)
        if r is None:
            continue
        if k.startswith(("U", "J")):
            ok = x >= r - 0.02
        elif k.startswith("t_"):
            ok = x <= 1.1 * r + 0.5
        elif k.startswith("qdelay"):
            ok = x <= 1.1 * r + 5
        elif k.startswith("loss"):
            ok = x <= r + 0.002
        else:
            continue
        if not ok:
            out.append(f"{k}: ours {x:.4g} vs ref {r:.4g}")
    return out


SEEDS = (1, 2, 3)


def run_job(job: tuple) -> tuple:
    """``(scenario, controller, seed)`` → ``(scenario, controller, seed, metrics, cpu_s)``;
    module-level so that a process pool can run it."""
    r = run(*job)
    return job[0], job[1], job[2], r.metrics, r.cpu_s


def run_many(scenarios=None, controllers=CONTROLLERS, seeds=SEEDS, processes: int = 2,
             initializer=None, initargs: tuple = ()) -> dict:
    """Run every (scenario, controller, seed), in ``processes`` spawned processes (1 = here);
    ``initializer(*initargs)`` runs first in each (a picklable module-level function).

    Returns ``{(scenario, controller): {"runs": [metrics per seed], "median": metrics,
    "cpu_s": total}}``.
    """
    jobs = [(s, c, k) for s in (scenarios or list(SCENARIOS)) for c in controllers for k in seeds]
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes, initializer, initargs) as pool:
            out = pool.map(run_job, jobs, chunksize=1)
    else:
        if initializer is not None:
            initializer(*initargs)
        out = [run_job(j) for j in jobs]
    res: dict = {}
    for s, c, k, m, cpu in out:
        e = res.setdefault((s, c), {"runs": [], "cpu_s": 0.0})
        e["runs"].append(m)
        e["cpu_s"] += cpu
    for e in res.values():
        keys = e["runs"][0].keys()
        e["median"] = {k: statistics.median(r[k] for r in e["runs"]) for k in keys}
    return res
