"""The 1-vs-2-workers benchmark (benchmarks/scaling.py) at a tiny size: sane figures, no timing.

Both configurations deliver (the two-worker one through a Room that splits the subscribers half
and half and pipes the publisher's tracks to the second worker), the pipe path delivers every
sequence number, the per-worker CPU figures and the derived pipe costs are produced, and the
summary tables (console, Markdown, from a JSON file through the CLI) carry their fields.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import scaling
from benchmarks.scenarios import _jsonable

pytestmark = pytest.mark.ray

N = 4
PUBS = 2
FAST = {"seconds": 1.5, "settle_s": 0.2, "drain_s": 2.0, "sample_every": 1}


@pytest.fixture(scope="module")
async def two_workers(ray_session):
    from raysfu.actors import create_worker

    workers = [await create_worker(), await create_worker()]
    yield workers
    for w in workers:
        w.close()
    import ray

    try:
        ray.kill(ray.get_actor(scaling.REGISTRY_NAME, namespace="raysfu"))
    except ValueError:
        pass


@pytest.fixture(scope="module")
async def runs(two_workers):
    sc = await scaling.run_scaling([N], repeat=1, workers=two_workers, **FAST)
    pipe = await scaling.run_pipe_cost(PUBS, repeat=1, workers=two_workers, **FAST)
    return sc, pipe


def assert_all_delivered(check: dict) -> None:
    assert check["streams_without_packets"] == 0
    assert check["gaps"] == 0 and check["late"] == 0, "sequence numbers not continuous / in order"
    assert check["tail_missing"] == 0
    assert check["expected"] > 0 and check["received"] == check["expected"], "a packet the publisher sent did not arrive"


async def test_both_configurations_deliver_and_split(runs):
    sc, _ = runs
    by = {r["config"]: r for r in sc}
    assert set(by) == {"1w", "2w"}
    one, two = by["1w"], by["2w"]
    for r in (one, two):
        assert r["n"] == N and r["consumers"] == 2 * N
        assert r["delivered_pps"] > 0 and r["worker_cores"] > 0
        assert math.isfinite(r["pkts_per_worker_cpu_s"]) and r["pkts_per_worker_cpu_s"] > 0
        assert r["check"]["bad_ssrc"] == 0 and r["check"]["idx_errors"] == 0 and r["check"]["srtp_errors"] == 0
        assert r["check"]["first_not_keyframe"] == 0
        assert_all_delivered(r["check"])
        assert r["loss"] == 0  # (held() also needs <= 1 % undelivered in the window: timing, not asserted)
        assert r["lat_samples"] > 0 and math.isfinite(r["lat_p50_ms"])
        assert r["gen_cores"] > 0 and len(r["groups"]) == 2
        assert math.isfinite(r["machine_busy_cores"]) and len(r["loadavg"]) == 2
    assert one["workers"] == 1 and one["piped_subscribers"] == 0
    assert [w["subscribers"] for w in one["per_worker"]] == [N]
    # two workers: the publisher and half the subscribers on A, the other half on B behind a pipe
    assert two["workers"] == 2 and two["routers"] == 2
    assert [w["subscribers"] for w in two["per_worker"]] == [N // 2, N - N // 2]
    assert [w["publishers"] for w in two["per_worker"]] == [1, 0]
    assert two["piped_subscribers"] == N - N // 2
    assert two["piped_check"]["streams"] == 2 * (N - N // 2)
    assert_all_delivered(two["piped_check"])
    assert all(w["out_pps"] > 0 and w["cpu_share"] > 0 for w in two["per_worker"])
    # one pipe transport on each side, whose socket's kernel drops are watched
    assert [w["pipe_sockets"] for w in two["per_worker"]] == [1, 1]
    assert [w["pipe_sockets"] for w in one["per_worker"]] == [0]


async def test_pipe_cost_cases(runs):
    _, pipe = runs
    by = {r["case"]: r for r in pipe}
    assert set(by) == {"ingest", "direct", "pipe"}
    assert by["ingest"]["n_subs"] == 0 and by["ingest"]["per_worker"][0]["in_pps"] > 0
    assert by["direct"]["workers"] == 1 and by["direct"]["piped_subscribers"] == 0
    p = by["pipe"]
    assert p["workers"] == 2
    assert [w["publishers"] for w in p["per_worker"]] == [PUBS, 0]
    assert [w["subscribers"] for w in p["per_worker"]] == [0, PUBS]
    assert p["piped_subscribers"] == PUBS
    assert_all_delivered(p["piped_check"])
    assert_all_delivered(by["direct"]["check"])
    # the source worker sends (to the pipe) what the destination forwards to the subscribers
    assert p["per_worker"][0]["out_pps"] > 0 and p["per_worker"][1]["in_pps"] > 0
    summary = scaling.summarize_pipe(pipe)
    for key in ("I", "D", "A", "B"):
        assert summary[key][1] > 0, key
    for key in ("added", "pipe_send", "pipe_ingest", "added_p50", "added_p99"):
        assert math.isfinite(summary[key][1]), key
    assert summary["publishers"] == PUBS and summary["runs"] == 1


async def test_tables_markdown_and_cli_from_json(runs, tmp_path, capsys):
    sc, pipe = runs
    summary = scaling.summarize_scaling(sc)
    (row,) = summary["rows"]
    assert row["n"] == N and row["1w"]["runs"] == 1 and row["2w"]["runs"] == 1
    assert math.isfinite(row["ratio"][1]) and row["ratio"][1] > 0
    assert math.isfinite(row["cpu_norm_ratio"][1]) and row["cpu_norm_ratio"][1] > 0
    assert summary["saturated_n"] == N and "capacity_ratio" in summary
    rows = scaling.scaling_table_rows(summary)
    assert len(rows) == 2 and all(len(r) == len(scaling.SCALING_COLUMNS) for r in rows)
    md = scaling.markdown(summary, scaling.summarize_pipe(pipe))
    for field in ("delivered pkt/s", "pkts / worker CPU-s", "generator cores", "CPU-normalised ratio",
                  "added CPU per packet by the pipe", "added latency p99 ms"):
        assert field in md
    # the CLI re-prints (and re-plots) the tables from a saved run, NaNs included
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_jsonable({"scaling": sc, "pipe": pipe})))
    png = tmp_path / "s.png"
    assert scaling.main(["--from-json", str(path), "--markdown", str(tmp_path / "s.md"), "--plot",
                         "--plot-out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "1 worker vs 2 workers" in out and "pipe cost" in out and "CPU-normalised" in out
    assert (tmp_path / "s.md").read_text() == md
    assert png.stat().st_size > 1000


def test_held_rule():
    base = {"loss": 0.0, "undelivered": 0.0, "check": {"streams_without_packets": 0}}
    assert scaling.held(base)
    assert not scaling.held({**base, "loss": 0.002})
    assert not scaling.held({**base, "undelivered": 0.05})
    assert not scaling.held({**base, "check": {"streams_without_packets": 1}})


def test_process_readings_from_proc():
    import os

    assert scaling.process_cpu_s(os.getpid()) > 0
    assert scaling.process_nice(os.getpid()) == os.nice(0)
    busy, total = scaling.machine_cpu_ticks()
    assert 0 < busy <= total
    assert math.isnan(scaling.process_cpu_s(2**22 + 12345)) and scaling.process_nice(2**22 + 12345) is None
