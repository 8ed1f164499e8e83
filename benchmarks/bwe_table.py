"""The BWE scenario table for benchmarks/RESULTS.md (issue 6, "Measure"): every scenario of
research/bwe.md (S0–S9b) with ours (``raysfu``) and the goog_cc m77 reference port, three seeds
each on the deterministic emulator, medians per metric, the plan's fixed thresholds and the
"within the reference" rule applied.

    .venv/bin/python -m benchmarks.bwe_table [--processes 2] [--markdown] [--seeds 1,2,3]
        [--set NAME=VALUE ...]

``--seeds`` runs other seeds than the gate's (1, 2, 3); ``--set`` overrides a constant of
:mod:`raysfu.bwe.controller` in every process for an ablation (e.g. ``--set
QUEUE_OVERUSE_MS=1e9`` turns its change 6 off).

Prints one row per (scenario, metric): ours, reference, and what failed. Metric names: ``U*``
utilization or shares (0–1), ``J*`` Jain fairness, ``t_*`` convergence (s), ``qdelay_*``
queueing delay (ms, p95 unless named), ``loss*`` (fraction). The emulator's results are
deterministic per seed, so the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse

from raysfu.bwe import controller, scenarios


def apply_settings(settings: dict) -> None:
    """Sets ``raysfu.bwe.controller`` constants (``--set``); raises ValueError for a name
    that is not an upper-case constant of that module."""
    for name, value in settings.items():
        if not name.isupper() or not isinstance(getattr(controller, name, None), (int, float)):
            raise ValueError(f"--set: {name!r} is not a numeric constant of raysfu.bwe.controller")
        setattr(controller, name, value)


def _setting(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, float(value)


def rows(results: dict) -> list[tuple]:
    """``(scenario, metric, ours, ref, verdict)`` for every metric of every scenario."""
    out = []
    for scenario in scenarios.SCENARIOS:
        ours = results.get((scenario, "raysfu"))
        ref = results.get((scenario, "goog_cc_m77"))
        if ours is None or ref is None:
            continue
        fails = scenarios.evaluate(scenario, ours["median"]) + [
            f"vs ref: {f}" for f in scenarios.within_reference(ours["median"], ref["median"])]
        for metric in ours["median"]:
            verdict = "; ".join(f for f in fails if f" {metric}=" in f or f"{metric}:" in f) or "ok"
            out.append((scenario, metric, ours["median"][metric], ref["median"].get(metric), verdict))
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    if v == float("inf"):
        return "never"
    return f"{v:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    ap.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE",
                    help="override a raysfu.bwe.controller constant (repeatable)")
    args = ap.parse_args()
    seeds = tuple(int(x) for x in args.seeds.split(","))
    settings = dict(args.set)
    apply_settings(settings)  # here too: fails early on a bad name
    results = scenarios.run_many(seeds=seeds, processes=args.processes,
                                 initializer=apply_settings, initargs=(settings,))
    table = rows(results)
    if args.markdown:
        print(f"| scenario | metric | ours (median of {len(seeds)}) | goog_cc m77 | verdict |")
        print("|---|---|---|---|---|")
        for s, m, o, r, v in table:
            print(f"| {s} | {m} | {_fmt(o)} | {_fmt(r)} | {v} |")
    else:
        for s, m, o, r, v in table:
            print(f"{s:5} {m:24} ours {_fmt(o):>8}  ref {_fmt(r):>8}  {v}")
    cpu = {c: sum(e["cpu_s"] for (s, cc), e in results.items() if cc == c) for c in scenarios.CONTROLLERS}
    print(f"\nemulator CPU s (all scenarios x {len(seeds)} seeds): {cpu}")


if __name__ == "__main__":
    main()
