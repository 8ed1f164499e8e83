"""CPU cost of the send-side BWE per transport-cc feedback packet (issue 6, "Measure").

Records the exact call sequence a transport makes into ``SendSideBwe`` during a scenario
(``on_packet_sent`` per RTP packet, ``on_feedback`` per transport-cc FCI, ``on_timer`` every
25 ms) from the deterministic emulator, then replays it into fresh estimators of each controller
and measures process CPU time with ``getrusage`` (the machine is shared: wall time is not used).

    .venv/bin/python benchmarks/bwe_cost.py [--scenario S1] [--repeat 3]

Prints, per controller: feedbacks, packets, CPU seconds, µs per feedback (everything included:
the per-packet send path, parsing, matching and the estimator) and µs per feedback of
``on_feedback`` alone.
"""

from __future__ import annotations

import argparse
import resource
from typing import ClassVar

from raysfu.bwe import scenarios
from raysfu.bwe.estimator import SendSideBwe


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Recorder(SendSideBwe):
    """SendSideBwe that logs every call it gets (one instance per recorded flow)."""

    log: ClassVar[list] = []

    def on_packet_sent(self, twcc_seq, size_bytes, send_time_ms, probe_cluster_id=None):
        _Recorder.log.append((0, twcc_seq, size_bytes, send_time_ms, probe_cluster_id))
        super().on_packet_sent(twcc_seq, size_bytes, send_time_ms, probe_cluster_id)

    def on_feedback(self, fci, now_ms):
        _Recorder.log.append((1, bytes(fci), now_ms))
        super().on_feedback(fci, now_ms)

    def on_timer(self, now_ms):
        if self._next_timer_ms is None or now_ms >= self._next_timer_ms:
            _Recorder.log.append((2, now_ms))
        super().on_timer(now_ms)


def record(scenario: str) -> list:
    """The call log of the first flow of ``scenario`` (ours, seed 1)."""
    orig = scenarios.SendSideBwe
    _Recorder.log = []
    first = []

    def factory(*a, **kw):
        b = _Recorder(*a, **kw)
        if first:  # keep only the first flow's calls
            b.on_packet_sent = super(_Recorder, b).on_packet_sent
            b.on_feedback = super(_Recorder, b).on_feedback
            b.on_timer = super(_Recorder, b).on_timer
        first.append(b)
        return b

    scenarios.SendSideBwe = factory
    try:
        scenarios.run(scenario, "raysfu", 1)
    finally:
        scenarios.SendSideBwe = orig
    return _Recorder.log


def replay(log: list, controller: str) -> tuple[float, float, int, int]:
    """Returns (total CPU s, on_feedback CPU s, feedbacks, packets)."""
    b = SendSideBwe(controller)
    sent, fb, timer = b.on_packet_sent, b.on_feedback, b.on_timer
    fb_cpu = 0.0
    nfb = npk = 0
    t0 = _cpu()
    for e in log:
        k = e[0]
        if k == 0:
            sent(e[1], e[2], e[3], e[4])
            npk += 1
        elif k == 1:
            c = _cpu()
            fb(e[1], e[2])
            fb_cpu += _cpu() - c
            nfb += 1
        else:
            timer(e[1])
        if k == 2:
            while b.pop_probe(e[1]) is not None:  # probes are in the log as sends already
                pass
    return _cpu() - t0, fb_cpu, nfb, npk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="S1")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    log = record(args.scenario)
    print(f"scenario {args.scenario}: {sum(e[0] == 1 for e in log)} feedbacks, "
          f"{sum(e[0] == 0 for e in log)} packets, {sum(e[0] == 2 for e in log)} timer calls")
    print(f"{'controller':<12} {'cpu_s':>7} {'us/feedback':>12} {'on_feedback us':>15} "
          f"{'us/packet sent':>15}")
    for ctl in scenarios.CONTROLLERS:
        best = None
        for _ in range(args.repeat):
            r = replay(log, ctl)
            best = r if best is None or r[0] < best[0] else best
        total, fbc, nfb, npk = best
        print(f"{ctl:<12} {total:7.3f} {1e6 * total / nfb:12.1f} {1e6 * fbc / nfb:15.1f} "
              f"{1e6 * (total - fbc) / max(npk, 1):15.2f}")


if __name__ == "__main__":
    main()
