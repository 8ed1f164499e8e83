"""S6's utilization vs p95 queueing delay with constant-rate media (issue 6, the S6 known gaps).

    .venv/bin/python -m benchmarks.bwe_s6_tradeoff [--rates 200000,300000,450000,620000]
        [--seeds 1,2,3]

S6 (research/bwe.md §4.6: 2 Mbps, two media flows, ten short TCP flows of 30-50 kB downloads)
asks for media utilization U >= 0.65 and a p95 queueing delay within 1.1 × the reference's + 5 ms
(the reference keeps U ≈ 0.20). This runs the same network with both media flows held at a fixed
rate each (no estimator at work: min = max = start) and prints, per rate, U and the p95 queueing
delay of the media packets per seed and their median. The emulator is deterministic, so the
figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics

from raysfu.bwe import scenarios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="200000,300000,450000,620000",
                    help="comma-separated rate per media flow, bps")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    print("| rate per flow (kbps) | U (median) | p95 qdelay ms per seed | p95 median | TCP downloads |")
    print("|---|---|---|---|---|")
    for rate in (int(x) for x in args.rates.split(",")):
        runs = [scenarios.run_s6_constant_rate(rate, k) for k in seeds]
        q = [r["qdelay_p95_ms"] for r in runs]
        print(f"| {rate // 1000} | {statistics.median(r['U'] for r in runs):.3f} | "
              f"{' / '.join(f'{v:.1f}' for v in q)} | {statistics.median(q):.1f} | "
              f"{' / '.join(str(int(r['tcp_downloads'])) for r in runs)} |", flush=True)


if __name__ == "__main__":
    main()
