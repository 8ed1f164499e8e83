"""One worker versus two: forwarded packets/s on this 2-core machine, and what a pipe costs.

Issue 4 ("Measure"): *forwarded packets/s with one worker versus two workers, same load, same
run; the pipe's added CPU per packet and added latency. Target: 2 workers >= 1.8x one worker.*

**Scaling** (scenario A shape: 1 publisher, VP8 ~1 Mbps + Opus, -> ``N`` subscribers each
consuming both tracks), in every repetition and for every ``N`` both configurations back to back
(their order alternates between repetitions), each on fresh routers of the same two
WorkerActors:

- ``1w``: a :class:`~raysfu.actors.room.Room` over one worker: every subscriber on one router.
- ``2w``: a Room over both workers with ``max_transports_per_router = 1 + ceil(N/2)`` (and
  ``max_consumers_per_router = 2 ceil(N/2)``): the publisher and the first half of the
  subscribers on worker A's router, the second half on worker B's, which the Room feeds through
  a pipe (``pipe_to_router``, one pipe producer per track). Transports are all made before any
  consumer, so it is the transport limit that splits them (the consumer limit only documents it).

The generators are ``benchmarks/loadgen.py`` processes as in ``benchmarks/scenarios.py`` (one
publisher process; the subscribers in two processes, half each, in both configurations). On a
2-core machine the generators compete with the workers, so they are made cheap and measured:

- subscribers only count packets from the clear RTP header (``recvmmsg``, batches of
  ``--batch``, one wake-up every ``--poll-us``); 1 packet in ``--sample-every`` (64) is
  unprotected for the latency stamp;
- the publisher sends ~154 pkt/s; its SRTP cost is negligible;
- every generator process's CPU (its own getrusage) is reported next to the workers' CPU (the
  actor process's user + system time, all threads, read from ``/proc/<pid>/stat`` by the driver
  at the window's edges, so a worker whose event loop is busy cannot skew it), the driver's own,
  and the whole machine's busy cores (``/proc/stat``) and load average next to them;
- µs per packet of a worker comes from its own ``get_load()`` (CPU and RTP packets sent over
  the same worker-side interval);
- besides delivered packets/s (what the subscribers received), every run reports **packets
  forwarded per worker CPU-second** (:func:`worker_efficiency`: the RTP packets the workers
  sent over the CPU they used, each over its own ``get_load()`` window, so packets waiting in
  socket buffers do not enter it): the ratio of ``2 x`` that for ``2w`` to that for ``1w`` is the
  scaling the two workers would show if each had a core of its own, honest when the generators
  (or other processes) take CPU from them. It includes what splitting costs (the pipe, half the
  fan-out per ingested packet on each worker) but not a shortage of cores.

A run *holds* when loss (sequence gaps in the window) <= 0.1 %, at most 1 % of the packets due in
the window are undelivered (the workers keep up) and every stream started. Per configuration the
**held capacity** is the largest median delivered packets/s among the ``N`` that held in most
repetitions; the **saturated throughput** is the delivered packets/s at the largest ``N``
(``--n`` should reach past both configurations' capacity: an overload where every worker has a
backlog and forwards as fast as its CPU allows).

**The pipe** (``--pipe-publishers P``): ``P`` publishers (video + audio), one subscriber each
(2 consumers), so every packet is forwarded exactly once:

- ``direct``: one worker holds publishers and subscribers (WebRtcTransport in -> WebRtcTransport
  out): ``D`` = its CPU µs per forwarded packet;
- ``pipe``: publishers on worker A, subscribers on worker B (``max_transports_per_router = P``),
  every track piped: ``A`` = A's CPU µs per packet (WebRTC ingest + pipe consumer's send),
  ``B`` = B's per packet (pipe producer's ingest + WebRTC consumer's send);
- ``ingest``: one worker, the publishers only, no consumer: ``I`` = µs per received packet.

Derived: the pipe's added CPU per packet ``A + B - D``; the pipe consumer's send ``A - I``
against a direct consumer's ``D - I``; the pipe producer's ingest ``B - (D - I)`` against WebRTC
ingest ``I``; added one-way latency = pipe minus direct (p50, p99; publisher's send stamp ->
kernel receive time at the subscriber, 1 packet in ``--sample-every``).

CLI (``.venv/bin/python -m benchmarks.scaling``)::

    .venv/bin/python -m benchmarks.scaling --n 150 300 600 --repeat 3 --pipe-publishers 50 \
        --worker-niceness 0 --json scaling.json --plot --markdown scaling.md
    .venv/bin/python -m benchmarks.scaling --from-json scaling.json --plot   # tables/figure again

``--worker-niceness 0``: Ray starts its worker processes at nice 15, so on a busy machine the
WorkerActors lose CPU to every nice-0 process (the generators included); 0 puts them level.
Kernel drops of each pipe transport's socket are recorded per worker (``pipe_rx_drops``).

``run_scaling`` / ``run_pipe_cost`` / ``run_case`` are the library entry points (the test runs
them at a tiny size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # pragma: no cover - run as a file
    sys.path.insert(0, str(REPO))

from benchmarks.loadgen import MEDIA_CODECS, audio_rtp_parameters, video_rtp_parameters
from benchmarks.scenarios import (
    CHUNK,
    GEN_CPU_LIMIT,
    LISTEN_INFOS,
    LOSS_LIMIT,
    UNDELIVERED_LIMIT,
    GenProcess,
    Progress,
    _chunked,
    _cpu_ms,
    _drain,
    _git_revision,
    _jsonable,
    percentile,
    udp_socket_counters,
)

REGISTRY_NAME = "raysfu-bench-scaling-registry"
TARGET_RATIO = 1.8
KEYFRAME_WAIT_S = 10.0
IDLE_CPU_SHARE = 0.15  # a worker is "idle" (ready for the next case) below this share of a core

ProgressFn = Callable[[str, float, float, str], None]


# --------------------------------------------------------------------------- small helpers
class ScalingGen(GenProcess):
    """A loadgen process started with ``--poll-us`` and ``--batch`` (cheaper receive loop)."""

    def __init__(self, name: str, poll_us: int = 2000, batch: int = 128) -> None:
        super().__init__(name)
        self.poll_us = poll_us
        self.batch = batch

    async def start(self, sample_every: int, srtp_suites: list[str] | None = None, timeout_s: float = 30.0) -> None:
        args = [sys.executable, "-m", "benchmarks.loadgen", "--sample-every", str(sample_every),
                "--poll-us", str(self.poll_us), "--batch", str(self.batch)]
        for suite in srtp_suites or []:
            args += ["--srtp-suite", suite]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=str(REPO), env=env,
            limit=256 << 20)
        self.pid = self.proc.pid
        ready = await self._read(timeout_s)
        self.port, self.dtls = ready["port"], ready["dtls"]


def machine_cpu_ticks() -> tuple[int, int]:
    """``(busy, total)`` jiffies over every CPU from ``/proc/stat`` (busy = total - idle - iowait)."""
    try:
        with open("/proc/stat") as f:
            parts = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(parts[:8])  # user nice system idle iowait irq softirq steal
    return total - parts[3] - parts[4], total


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread, exited ones included) of process ``pid`` from
    ``/proc/<pid>/stat``: the figure getrusage(RUSAGE_SELF) gives inside that process, read from
    outside so that a worker whose event loop is busy does not delay the reading. NaN when
    unreadable (another node)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_nice(pid: int) -> int | None:
    """The nice value of process ``pid`` (``/proc/<pid>/stat``), None when unreadable. Ray starts
    its worker processes, WorkerActors included, at nice 15 unless ``RAY_worker_niceness`` says
    otherwise: on a busy machine they then get little CPU against nice-0 processes."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _stats(values: list[float]) -> tuple[float, float, float]:
    """``(min, median, max)`` of the finite values (NaNs when there are none)."""
    vals = sorted(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
    if not vals:
        return (math.nan,) * 3
    return vals[0], statistics.median(vals), vals[-1]


async def wait_idle(workers: list, limit_s: float = 8.0) -> float:
    """Wait (at most ``limit_s``) until every worker uses < ``IDLE_CPU_SHARE`` of a core over
    0.5 s: a worker that was overloaded in the previous case first finishes what it had queued.
    Returns the busiest worker's last share."""
    deadline = time.monotonic() + limit_s
    share = math.inf
    while time.monotonic() < deadline:
        before = [process_cpu_s(w.pid) for w in workers]
        if any(math.isnan(v) for v in before):  # another node: ask the actors
            before = [_cpu_ms(r) / 1000 for r in await asyncio.gather(*(w.get_resource_usage() for w in workers))]
        t0 = time.monotonic()
        await asyncio.sleep(0.5)
        after = [process_cpu_s(w.pid) for w in workers]
        if any(math.isnan(v) for v in after):
            after = [_cpu_ms(r) / 1000 for r in await asyncio.gather(*(w.get_resource_usage() for w in workers))]
        dt = time.monotonic() - t0
        share = max((b - a) / dt for a, b in zip(before, after))
        if share < IDLE_CPU_SHARE:
            break
    return share


# --------------------------------------------------------------------------- one case
async def run_case(
    workers: list,
    *,
    label: str,
    n_pubs: int,
    n_subs: int,
    seconds: float = 5.0,
    max_transports_per_router: int | None = None,
    max_consumers_per_router: int | None = None,
    sub_procs: int = 2,
    sample_every: int = 64,
    poll_us: int = 2000,
    batch: int = 128,
    settle_s: float = 1.0,
    drain_s: float = 5.0,
    registry_name: str = REGISTRY_NAME,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
) -> dict:
    """One measured run: a fresh :class:`Room` over ``workers`` (Worker handles, which stay
    open), ``n_pubs`` publishers (video + audio), ``n_subs`` subscribers; subscriber ``k``
    consumes both tracks of publisher ``k % n_pubs``. Placement is the Room's, with the two
    limits given. Returns a dict (keys in :func:`_measure`); raises ``TimeoutError`` past
    ``timeout_s``, ``RuntimeError`` when a peer cannot connect."""
    from raysfu.actors.room import RoomManager

    if n_pubs < 1 or n_subs < 0:
        raise ValueError(f"n_pubs must be >= 1 and n_subs >= 0, got {n_pubs}, {n_subs}")
    progress = progress or (lambda *a: None)
    if timeout_s is None:
        timeout_s = 120 + seconds * 3 + 0.3 * (n_subs + n_pubs) * 2
    state: dict[str, Any] = {"procs": [], "manager": None}
    started = time.monotonic()
    try:
        await wait_idle(workers)
        manager = await RoomManager.start(
            list(workers), media_codecs=MEDIA_CODECS, max_consumers_per_router=max_consumers_per_router,
            max_transports_per_router=max_transports_per_router, registry_name=registry_name)
        state["manager"] = manager
        return await asyncio.wait_for(
            _measure(manager, label, n_pubs, n_subs, seconds, sub_procs if n_subs else 0, sample_every, poll_us,
                     batch, settle_s, drain_s, progress, state),
            timeout_s)
    finally:
        await asyncio.gather(*(p.close() for p in state["procs"]), return_exceptions=True)
        if state["manager"] is not None:
            with contextlib.suppress(Exception):
                await state["manager"].close()
            await asyncio.sleep(0.3)
        progress("done", 1, 1, f"{time.monotonic() - started:.0f} s")


async def _measure(manager, label, n_pubs, n_subs, seconds, n_sub_procs, sample_every, poll_us, batch, settle_s,
                   drain_s, progress, state) -> dict:
    t_setup = time.monotonic()
    room = manager.room(f"scaling-{label}-{uuid.uuid4().hex[:8]}")
    pub_proc = ScalingGen("pub", poll_us, batch)
    subs_procs = [ScalingGen(f"sub{i}", poll_us, batch) for i in range(n_sub_procs)]
    state["procs"] = [pub_proc, *subs_procs]
    progress("generators", 0, 1, "spawning")
    caps_full, _ = await asyncio.gather(room.get_rtp_capabilities(),
                                        asyncio.gather(*(p.start(sample_every) for p in state["procs"])))
    caps = {"codecs": caps_full["codecs"], "headerExtensions": caps_full["headerExtensions"]}

    async def new_transport(proc: GenProcess):
        t = await room.create_webrtc_transport(listen_infos=LISTEN_INFOS)
        await t.connect(dtls_parameters=proc.dtls)
        return t

    def peer_spec(pid: int, t) -> dict:
        cand = next(c for c in t.ice_candidates if c["protocol"] == "udp")
        return {"id": pid, "ice": t.ice_parameters, "remote": [cand.get("address") or cand["ip"], cand["port"]],
                "dtls": t.dtls_parameters}

    # publishers: transports first (placement: they fill the first router), ICE + DTLS, produce
    progress("publishers", 0, n_pubs, "ICE + DTLS")
    pub_transports = await _chunked([new_transport(pub_proc) for _ in range(n_pubs)])
    added = await pub_proc.call({"cmd": "add", "peers": [peer_spec(i, t) for i, t in enumerate(pub_transports)]},
                                60 + 0.2 * n_pubs)
    if added["failed"]:
        raise RuntimeError(f"publisher peers failed: {added['failed'][:5]}")
    ssrc_base = 0x10000000 + (uuid.uuid4().int & 0x0FFFFFF) * 16
    pub_streams: list[dict] = []
    producers: dict[tuple[int, str], tuple[Any, int]] = {}
    jobs = []
    for p in range(n_pubs):
        for m, kind in enumerate(("video", "audio")):
            ssrc = ssrc_base + 4 * (2 * p + m)
            params = (video_rtp_parameters(ssrc, ssrc + 1, str(m), f"pub{p}") if kind == "video"
                      else audio_rtp_parameters(ssrc, str(m), f"pub{p}"))
            pub_streams.append({"id": len(pub_streams), "peer": p, "kind": kind, "ssrc": ssrc, "mid": str(m)})
            jobs.append((p, kind, params))
    made = await _chunked([room.produce(pub_transports[p], kind=kind, rtp_parameters=params) for p, kind, params in jobs])
    for sid, ((p, kind, _), producer) in enumerate(zip(jobs, made)):
        producers[(p, kind)] = (producer, sid)
    await pub_proc.call({"cmd": "publish", "streams": pub_streams})

    # subscribers: transports (placement), ICE + DTLS in their generator process
    proc_of_sub = [subs_procs[k * n_sub_procs // n_subs] for k in range(n_subs)] if n_subs else []
    sub_transports: list[Any] = []
    for i in range(0, n_subs, CHUNK):
        sub_transports += await asyncio.gather(*(new_transport(proc_of_sub[k]) for k in range(i, min(n_subs, i + CHUNK))))
        progress("subscriber transports", len(sub_transports), n_subs, "")
    if n_subs:
        progress("subscriber ICE + DTLS", 0, n_subs, "")
        replies = await asyncio.gather(*(
            proc.call({"cmd": "add", "peers": [peer_spec(k, sub_transports[k]) for k in range(n_subs) if proc_of_sub[k] is proc]},
                      60 + 0.2 * n_subs)
            for proc in subs_procs))
        failed = [f for r in replies for f in r["failed"]]
        if failed:
            raise RuntimeError(f"{len(failed)} subscriber peers failed, e.g. {failed[:3]}")

    # consumers through the Room (a producer on another router is piped there first), paused
    consumer_jobs = [(k, k % n_pubs, kind) for k in range(n_subs) for kind in ("video", "audio")]
    consumers: list[Any] = []
    for i in range(0, len(consumer_jobs), CHUNK):
        consumers += await asyncio.gather(*(
            room.consume(sub_transports[k], producer_id=producers[(p, kind)][0].id, rtp_capabilities=caps, paused=True)
            for k, p, kind in consumer_jobs[i:i + CHUNK]))
        progress("consumers", len(consumers), len(consumer_jobs), "")
    sub_streams: list[dict] = []
    per_proc: dict[int, list[dict]] = {id(p): [] for p in subs_procs}
    for c, (k, p, kind) in zip(consumers, consumer_jobs):
        st = {"id": len(sub_streams), "peer": k, "kind": kind, "ssrc": c.rtp_parameters["encodings"][0]["ssrc"],
              "pub_stream": producers[(p, kind)][1]}
        sub_streams.append(st)
        per_proc[id(proc_of_sub[k])].append({key: st[key] for key in ("id", "peer", "kind", "ssrc")})
    await asyncio.gather(*(p.call({"cmd": "expect", "streams": per_proc[id(p)]}) for p in subs_procs))
    for i in range(0, len(consumers), CHUNK):
        await asyncio.gather(*(c.resume() for c in consumers[i:i + CHUNK]))

    # where everything sits: router -> worker; per worker the transports' ports
    routers = room.routers
    worker_of_router = {rid: r.worker for rid, r in routers.items()}
    used_workers: list[Any] = []
    for t in pub_transports + sub_transports:
        w = worker_of_router[t._router.id]
        if w not in used_workers:
            used_workers.append(w)
    if not used_workers:
        used_workers = [next(iter(worker_of_router.values()))]
    widx = {w.key: i for i, w in enumerate(used_workers)}
    subs_per_worker = [0] * len(used_workers)
    for t in sub_transports:
        subs_per_worker[widx[worker_of_router[t._router.id].key]] += 1
    pubs_per_worker = [0] * len(used_workers)
    for t in pub_transports:
        pubs_per_worker[widx[worker_of_router[t._router.id].key]] += 1
    worker_ports: list[set[int]] = [set() for _ in used_workers]
    for t in pub_transports + sub_transports:
        worker_ports[widx[worker_of_router[t._router.id].key]].add(t.ice_candidates[0]["port"])
    # the pipe transports' own sockets (kernel drops there: a destination worker that falls behind)
    pipe_ports: list[set[int]] = [set() for _ in used_workers]
    for rid, r in routers.items():
        i = widx.get(worker_of_router[rid].key)
        for fut in getattr(r, "_pipe_pairs", {}).values():
            if i is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
                with contextlib.suppress(Exception):
                    pipe_ports[i].add(int(fut.result()[0].tuple["localPort"]))
    # which generator process's subscribers sit behind a pipe (their router is not the publisher's)
    pub_worker = {k: worker_of_router[pub_transports[k % n_pubs]._router.id].key for k in range(n_subs)}
    piped_subs = [worker_of_router[sub_transports[k]._router.id].key != pub_worker[k] for k in range(n_subs)]

    def socket_drops() -> tuple[int, list[int], list[int]]:
        """Kernel drops: (generators, each worker's WebRTC sockets, each worker's pipe sockets)."""
        return (udp_socket_counters({p.port for p in subs_procs})[0], [udp_socket_counters(ps)[0] for ps in worker_ports],
                [udp_socket_counters(ps)[0] for ps in pipe_ports])

    run_drops0 = socket_drops()  # over the whole run too: a backlog flushed after the window can overflow
    # media on; wait for every stream's first packet
    await pub_proc.call({"cmd": "start"})
    deadline = time.monotonic() + KEYFRAME_WAIT_S
    while subs_procs:
        stats = await asyncio.gather(*(p.call({"cmd": "stats"}) for p in subs_procs))
        started_streams = sum(s["rx_streams_started"] for s in stats)
        progress("first packets", started_streams, len(sub_streams), "")
        if started_streams >= len(sub_streams) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle_s)
    setup_s = time.monotonic() - t_setup

    # ---- measurement window. The workers' get_load() windows are their own (CPU and packets over
    # the same worker-side interval). Every other figure is read at the driver-side edges without
    # waiting on a worker's event loop (which may answer seconds late when it has a backlog): the
    # workers' CPU from /proc, the generators' counters with their own timestamps.
    gen_ports = {p.port for p in subs_procs}
    await asyncio.gather(*(w.get_load() for w in used_workers))  # starts each worker's load window
    remote = any(math.isnan(process_cpu_s(w.pid)) for w in used_workers)

    async def edge(reset: bool) -> dict:
        ru = await asyncio.gather(*(w.get_resource_usage() for w in used_workers)) if remote else None
        e = {"cpu": [_cpu_ms(r) / 1000 for r in ru] if ru else [process_cpu_s(w.pid) for w in used_workers],
             "t": time.monotonic(), "ticks": machine_cpu_ticks(), "driver": _self_cpu_s(), "loadavg": os.getloadavg()[0],
             "gen_drops": udp_socket_counters(gen_ports)[0], "worker_drops": [udp_socket_counters(ps)[0] for ps in worker_ports],
             "pipe_drops": [udp_socket_counters(ps)[0] for ps in pipe_ports]}
        e["st"], e["pub"] = await asyncio.gather(
            asyncio.gather(*(p.call({"cmd": "stats", "reset_latency": reset}) for p in subs_procs)),
            pub_proc.call({"cmd": "stats"}))
        return e

    e0 = await edge(True)
    while (remaining := seconds - (time.monotonic() - e0["t"])) > 0:
        await asyncio.sleep(min(1.0, remaining))
        progress("measuring", time.monotonic() - e0["t"], seconds, "")
    e1 = await edge(False)
    load1 = await asyncio.gather(*(w.get_load() for w in used_workers))
    window_s = e1["t"] - e0["t"]
    st0, st1, pub0, pub1 = e0["st"], e1["st"], e0["pub"], e1["pub"]
    pub_dt = max(1e-6, (pub1["t_ns"] - pub0["t_ns"]) / 1e9)
    busy0, total0 = e0["ticks"]
    busy1, total1 = e1["ticks"]
    driver_cpu = e1["driver"] - e0["driver"]
    loadavg0, loadavg1 = (e0["loadavg"],), (e1["loadavg"],)
    gen_drops0, gen_drops1 = e0["gen_drops"], e1["gen_drops"]
    worker_drops0, worker_drops1 = e0["worker_drops"], e1["worker_drops"]

    # ---- stop, drain, collect
    stopped = await pub_proc.call({"cmd": "stop"})
    if subs_procs:
        await _drain(subs_procs, drain_s)
    reports = await asyncio.gather(*(p.call({"cmd": "report"}, 60) for p in subs_procs))
    sent = {sid: count for sid, count in stopped["sent"]}
    run_drops1 = socket_drops()

    # per worker
    workers_out = []
    for i, w in enumerate(used_workers):
        cpu_share = (e1["cpu"][i] - e0["cpu"][i]) / window_s
        # per packet: the worker's own window (get_load: CPU and packets over the same interval,
        # even when a busy event loop answers late)
        load_share = load1[i]["cpuShare"]
        out_pps, in_pps = load1[i]["packetsOutPerSecond"], load1[i]["packetsInPerSecond"]
        workers_out.append({
            "worker": i, "pid": w.pid, "nice": process_nice(w.pid), "publishers": pubs_per_worker[i], "subscribers": subs_per_worker[i],
            "cpu_share": cpu_share, "load_cpu_share": load_share, "load_window_s": load1[i]["windowS"],
            "out_pps": out_pps, "in_pps": in_pps,
            "us_per_out_pkt": load_share / out_pps * 1e6 if out_pps else math.nan,
            "us_per_in_pkt": load_share / in_pps * 1e6 if in_pps else math.nan,
            "rx_drops": worker_drops1[i] - worker_drops0[i],
            "pipe_rx_drops": e1["pipe_drops"][i] - e0["pipe_drops"][i], "pipe_sockets": len(pipe_ports[i]),
            "rx_drops_run": run_drops1[1][i] - run_drops0[1][i], "pipe_rx_drops_run": run_drops1[2][i] - run_drops0[2][i],
        })

    # per generator group and in total
    rx_window = sum(s["rx_pkts"] for s in st1) - sum(s["rx_pkts"] for s in st0)
    span_window = sum(s["rx_span"] for s in st1) - sum(s["rx_span"] for s in st0)
    due_window = sum(pub1["sent"][st["pub_stream"]] - pub0["sent"][st["pub_stream"]] for st in sub_streams)
    check = {"streams": len(sub_streams), "streams_without_packets": 0, "gaps": 0, "late": 0, "bad_ssrc": 0,
             "idx_errors": 0, "first_not_keyframe": 0, "srtp_errors": 0, "expected": 0, "received": 0,
             "tail_missing": 0, "probation_rx": 0}
    piped_check = {"streams": 0, "streams_without_packets": 0, "gaps": 0, "late": 0, "tail_missing": 0, "received": 0,
                   "expected": 0}
    groups = []
    for gi, (rep, a, b) in enumerate(zip(reports, st0, st1)):
        check["bad_ssrc"] += rep["bad_ssrc"]
        check["srtp_errors"] += rep["srtp_err"]
        check["probation_rx"] += rep.get("probation_rx", 0)
        for sid, cnt, first_idx, last_idx, span, gaps, late, idx_err, not_key in rep["streams"]:
            targets = [check]
            if piped_subs[sub_streams[sid]["peer"]]:
                targets.append(piped_check)
                piped_check["streams"] += 1
            if cnt == 0 or first_idx < 0:
                for c in targets:
                    c["streams_without_packets"] += 1
                continue
            expected = sent[sub_streams[sid]["pub_stream"]] - first_idx
            for c in targets:
                c["expected"] += expected
                c["received"] += cnt - late
                c["gaps"] += gaps
                c["late"] += late
                c["tail_missing"] += max(0, expected - span)
            check["idx_errors"] += idx_err
            check["first_not_keyframe"] += not_key
        lat = sorted(rep["lat_us"])
        g_rx = b["rx_pkts"] - a["rx_pkts"]
        g_span = b["rx_span"] - a["rx_span"]
        g_dt = max(1e-6, (b["t_ns"] - a["t_ns"]) / 1e9)  # this generator's own window
        subs_of_proc = [k for k in range(n_subs) if proc_of_sub[k] is subs_procs[gi]]
        groups.append({
            "proc": gi, "subscribers": len(subs_of_proc), "piped": sum(piped_subs[k] for k in subs_of_proc),
            "rx_pps": g_rx / g_dt, "loss": max(0.0, 1 - g_rx / g_span) if g_span else math.nan,
            "lat_p50_ms": percentile(lat, 50) / 1000, "lat_p99_ms": percentile(lat, 99) / 1000, "lat_samples": len(lat),
            "cpu_share": (b["cpu_s"] - a["cpu_s"]) / g_dt,
        })
    lat_all = sorted(v for rep in reports for v in rep["lat_us"])
    gen_cpu = [g["cpu_share"] for g in groups]
    pub_cpu = (pub1["cpu_s"] - pub0["cpu_s"]) / pub_dt
    worker_cores = sum(w["cpu_share"] for w in workers_out)
    delivered_pps = sum(g["rx_pps"] for g in groups)  # each generator over its own stats timestamps
    due_pps = due_window / pub_dt
    machine_busy = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1) if total1 > total0 else math.nan
    gen_rx_drops = gen_drops1 - gen_drops0
    return {
        "label": label,
        "n_pubs": n_pubs,
        "n_subs": n_subs,
        "workers": len(used_workers),
        "routers": len(routers),
        "consumers": len(sub_streams),
        "piped_subscribers": sum(piped_subs),
        "seconds": round(window_s, 3),
        "delivered_pps": delivered_pps,
        "due_pps": due_pps,
        "loss": max(0.0, 1 - rx_window / span_window) if span_window else (math.nan if not n_subs else 1.0),
        "undelivered": max(0.0, 1 - delivered_pps / due_pps) if due_window else math.nan,
        "loss_total": max(0.0, 1 - check["received"] / check["expected"]) if check["expected"] else math.nan,
        "lat_p50_ms": percentile(lat_all, 50) / 1000,
        "lat_p99_ms": percentile(lat_all, 99) / 1000,
        "lat_samples": len(lat_all),
        "worker_cores": worker_cores,
        "forwarded_pps": sum(w["out_pps"] for w in workers_out),
        "per_worker": workers_out,
        "groups": groups,
        "gen_cpu_share": max(gen_cpu) if gen_cpu else 0.0,
        "gen_cores": sum(gen_cpu) + pub_cpu,
        "pub_cpu_share": pub_cpu,
        "gen_us_per_rx_pkt": sum(gen_cpu) * 1e6 / delivered_pps if delivered_pps else math.nan,
        "gen_rx_drops": gen_rx_drops,
        "gen_rx_drops_run": run_drops1[0] - run_drops0[0],
        "gen_limited": gen_rx_drops > 0 or (max(gen_cpu) if gen_cpu else 0) > GEN_CPU_LIMIT or pub_cpu > GEN_CPU_LIMIT,
        "driver_cores": driver_cpu / window_s,
        "machine_busy_cores": machine_busy,
        "loadavg": [round(loadavg0[0], 2), round(loadavg1[0], 2)],
        "setup_s": round(setup_s, 1),
        "pub_packets": sum(sent.values()),
        "check": check,
        "piped_check": piped_check,
    } | {"pkts_per_worker_cpu_s": worker_efficiency({"per_worker": workers_out})}


def worker_efficiency(result: dict) -> float:
    """RTP packets the workers sent per CPU-second they used, each worker over its own
    ``get_load()`` window (CPU and packets over the same interval): ``sum(out_pps) /
    sum(cpuShare)``. Unlike delivered / CPU over the driver's window, packets that wait in a
    socket buffer (a starved generator or worker) cannot inflate or deflate it. NaN without CPU."""
    cpu = sum(w["load_cpu_share"] for w in result["per_worker"])
    return sum(w["out_pps"] for w in result["per_worker"]) / cpu if cpu > 0 else math.nan


def held(result: dict) -> bool:
    """A run holds: loss <= 0.1 %, <= 1 % undelivered in the window, every stream started."""
    return (result["loss"] <= LOSS_LIMIT and result["undelivered"] <= UNDELIVERED_LIMIT
            and not result["check"]["streams_without_packets"])


# --------------------------------------------------------------------------- the two experiments
async def _two_workers(workers: list | None) -> tuple[list, bool]:
    from raysfu.actors import create_worker

    if workers is not None:
        if len(workers) < 2:
            raise ValueError("workers: two Worker handles are needed")
        return list(workers[:2]), False
    return list(await asyncio.gather(create_worker(), create_worker())), True


async def run_scaling(ns: list[int], repeat: int = 3, seconds: float = 5.0, *, workers: list | None = None,
                      progress_factory=None, on_result=None, **case_kwargs) -> list[dict]:
    """For each repetition and each ``N`` in ``ns``: ``1w`` and ``2w`` back to back (order
    alternating between repetitions) on the same two workers (``workers``, or two started here
    and closed at the end). Returns every run's dict with ``"config"``, ``"n"``, ``"rep"``,
    ``"held"`` added."""
    workers, own = await _two_workers(workers)
    results = []
    try:
        for rep in range(repeat):
            for n in ns:
                half = math.ceil(n / 2)
                configs = [("1w", workers[:1], {}),
                           ("2w", workers, {"max_transports_per_router": 1 + half, "max_consumers_per_router": 2 * half})]
                if rep % 2:
                    configs.reverse()
                for config, ws, limits in configs:
                    prog = progress_factory(f"scaling {config} N={n} rep {rep + 1}/{repeat}") if progress_factory else None
                    r = await run_case(ws, label=f"{config}-{n}", n_pubs=1, n_subs=n, seconds=seconds, progress=prog,
                                       **limits, **case_kwargs)
                    r.update(config=config, n=n, rep=rep + 1, held=held(r))
                    results.append(r)
                    if on_result:
                        on_result(r)
    finally:
        if own:
            for w in workers:
                w.close()
            await asyncio.sleep(0.3)
    return results


async def run_pipe_cost(publishers: int = 50, repeat: int = 3, seconds: float = 5.0, *, workers: list | None = None,
                        cases: tuple[str, ...] = ("ingest", "direct", "pipe"), progress_factory=None, on_result=None,
                        **case_kwargs) -> list[dict]:
    """``repeat`` rounds of the pipe-cost cases (module docstring) with ``publishers`` publishers
    and one subscriber each; returns every run's dict with ``"case"``, ``"rep"`` added."""
    workers, own = await _two_workers(workers)
    results = []
    try:
        for rep in range(repeat):
            order = list(cases) if rep % 2 == 0 else list(reversed(cases))
            for case in order:
                prog = progress_factory(f"pipe cost: {case} rep {rep + 1}/{repeat}") if progress_factory else None
                if case == "ingest":
                    r = await run_case(workers[:1], label="ingest", n_pubs=publishers, n_subs=0, seconds=seconds,
                                       progress=prog, **case_kwargs)
                elif case == "direct":
                    r = await run_case(workers[:1], label="direct", n_pubs=publishers, n_subs=publishers,
                                       seconds=seconds, progress=prog, **case_kwargs)
                elif case == "pipe":
                    r = await run_case(workers, label="pipe", n_pubs=publishers, n_subs=publishers, seconds=seconds,
                                       max_transports_per_router=publishers, progress=prog, **case_kwargs)
                else:
                    raise ValueError(f"cases: unknown case {case!r}")
                r.update(case=case, rep=rep + 1)
                results.append(r)
                if on_result:
                    on_result(r)
    finally:
        if own:
            for w in workers:
                w.close()
            await asyncio.sleep(0.3)
    return results


# --------------------------------------------------------------------------- summaries
def summarize_scaling(results: list[dict]) -> dict:
    """Per ``N``: min/median/max per configuration of delivered pkt/s, worker cores, packets per
    worker CPU-second, loss, undelivered, latency, generator cores, machine busy cores, load
    average; the ratios (per repetition, then min/median/max): ``ratio`` = delivered 2w / 1w,
    ``cpu_norm_ratio`` = 2 x (pkts per worker CPU-s of 2w) / (that of 1w). And the headline:
    held capacity per configuration and its ratio, saturated throughput (largest N) and its
    ratios."""
    by: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        by.setdefault((r["config"], r["n"]), []).append(r)
    ns = sorted({r["n"] for r in results})
    rows = []
    for n in ns:
        row: dict[str, Any] = {"n": n}
        for config in ("1w", "2w"):
            rs = by.get((config, n), [])
            c: dict[str, Any] = {"runs": len(rs), "held": sum(r["held"] for r in rs)}
            for r in rs:
                r["pkts_per_worker_cpu_s"] = worker_efficiency(r)
            for key in ("delivered_pps", "worker_cores", "pkts_per_worker_cpu_s", "loss", "undelivered", "lat_p50_ms",
                        "lat_p99_ms", "gen_cores", "machine_busy_cores", "driver_cores"):
                c[key] = _stats([r[key] for r in rs])
            c["loadavg"] = _stats([v for r in rs for v in r["loadavg"]])
            c["us_per_out_pkt"] = _stats([w["us_per_out_pkt"] for r in rs for w in r["per_worker"]])
            c["gen_limited"] = any(r["gen_limited"] for r in rs)
            row[config] = c
        pairs = [(a, b) for a in by.get(("1w", n), []) for b in by.get(("2w", n), []) if a["rep"] == b["rep"]]
        row["ratio"] = _stats([b["delivered_pps"] / a["delivered_pps"] for a, b in pairs if a["delivered_pps"]])
        row["cpu_norm_ratio"] = _stats([2 * b["pkts_per_worker_cpu_s"] / a["pkts_per_worker_cpu_s"]
                                        for a, b in pairs if a["pkts_per_worker_cpu_s"]])
        rows.append(row)
    head: dict[str, Any] = {"rows": rows, "target": TARGET_RATIO}
    for config in ("1w", "2w"):
        held_rows = [r for r in rows if r[config]["runs"] and r[config]["held"] * 2 > r[config]["runs"]]
        best = max(held_rows, key=lambda r: r[config]["delivered_pps"][1], default=None)
        head[f"capacity_{config}"] = best[config]["delivered_pps"][1] if best else math.nan
        head[f"capacity_{config}_n"] = best["n"] if best else None
    head["capacity_ratio"] = (head["capacity_2w"] / head["capacity_1w"]
                              if head["capacity_1w"] and not math.isnan(head["capacity_1w"]) else math.nan)
    if rows:
        top = rows[-1]
        head["saturated_n"] = top["n"]
        head["saturated_ratio"] = top["ratio"]
        head["saturated_cpu_norm_ratio"] = top["cpu_norm_ratio"]
    return head


def summarize_pipe(results: list[dict]) -> dict:
    """Per case the workers' CPU µs per packet (min/median/max) and latency; derived costs per
    repetition (module docstring), then min/median/max."""
    by_rep: dict[int, dict[str, dict]] = {}
    for r in results:
        by_rep.setdefault(r["rep"], {})[r["case"]] = r

    def us(r: dict, i: int, per: str = "us_per_out_pkt") -> float:
        return r["per_worker"][i][per] if len(r["per_worker"]) > i else math.nan

    vals: dict[str, list[float]] = {k: [] for k in (
        "I", "D", "A", "B", "added", "pipe_send", "direct_send", "pipe_ingest", "lat_p50_direct", "lat_p99_direct",
        "lat_p50_pipe", "lat_p99_pipe", "added_p50", "added_p99", "pps", "loadavg")}
    for cases in by_rep.values():
        i = us(cases["ingest"], 0, "us_per_in_pkt") if "ingest" in cases else math.nan
        d = us(cases["direct"], 0) if "direct" in cases else math.nan
        pipe = cases.get("pipe")
        a = b = math.nan
        if pipe is not None and len(pipe["per_worker"]) == 2:
            a, b = us(pipe, 0), us(pipe, 1)
        vals["I"].append(i)
        vals["D"].append(d)
        vals["A"].append(a)
        vals["B"].append(b)
        vals["added"].append(a + b - d)
        vals["pipe_send"].append(a - i)
        vals["direct_send"].append(d - i)
        vals["pipe_ingest"].append(b - (d - i))
        for case in ("direct", "pipe"):
            r = cases.get(case)
            for q in ("p50", "p99"):
                vals[f"lat_{q}_{case}"].append(r[f"lat_{q}_ms"] if r else math.nan)
        for q in ("p50", "p99"):
            vals[f"added_{q}"].append(vals[f"lat_{q}_pipe"][-1] - vals[f"lat_{q}_direct"][-1])
        vals["pps"].append(cases["direct"]["delivered_pps"] if "direct" in cases else math.nan)
        vals["loadavg"].extend(v for r in cases.values() for v in r["loadavg"])
    out = {k: _stats(v) for k, v in vals.items()}
    out["publishers"] = results[0]["n_pubs"] if results else 0
    out["runs"] = len(by_rep)
    return out


# --------------------------------------------------------------------------- output
def _f(v: float, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}"


def _mmm(t: tuple, digits: int = 1, scale: float = 1.0, bold: bool = False) -> str:
    lo, med, hi = t
    m = _f(med * scale, digits)
    return f"{_f(lo * scale, digits)} / {'**' + m + '**' if bold else m} / {_f(hi * scale, digits)}"


SCALING_COLUMNS = ["N", "config", "delivered pkt/s", "worker cores", "pkts / worker CPU-s", "µs/pkt (per worker)",
                   "loss %", "undelivered %", "lat p50 ms", "lat p99 ms", "generator cores", "machine busy cores",
                   "load avg", "held", "ratio 2w/1w", "CPU-normalised ratio"]
PIPE_COLUMNS = ["figure", "µs per packet or ms (min / median / max)"]


def scaling_table_rows(summary: dict, bold: bool = False) -> list[list[str]]:
    """Rows (strings) under ``SCALING_COLUMNS``: two per N (1w, 2w); the ratios on the 2w row."""
    rows = []
    for r in summary["rows"]:
        for config in ("1w", "2w"):
            c = r[config]
            rows.append([
                str(r["n"]), config, _mmm(c["delivered_pps"], 0, bold=bold), _mmm(c["worker_cores"], 2),
                _mmm(c["pkts_per_worker_cpu_s"], 0), _mmm(c["us_per_out_pkt"], 1), _mmm(c["loss"], 3, 100),
                _mmm(c["undelivered"], 1, 100), _mmm(c["lat_p50_ms"], 1), _mmm(c["lat_p99_ms"], 1),
                _mmm(c["gen_cores"], 2) + (" GEN-LIMITED" if c["gen_limited"] else ""), _mmm(c["machine_busy_cores"], 2),
                _mmm(c["loadavg"], 1), f"{c['held']}/{c['runs']}",
                _mmm(r["ratio"], 2, bold=bold) if config == "2w" else "",
                _mmm(r["cpu_norm_ratio"], 2, bold=bold) if config == "2w" else "",
            ])
    return rows


def pipe_table_rows(p: dict, bold: bool = False) -> list[list[str]]:
    """Rows under ``PIPE_COLUMNS``."""
    lines = [
        ("I: ingest only, worker µs per received packet", "I", 1),
        ("D: direct (1 worker), µs per forwarded packet", "D", 1),
        ("A: pipe, source worker µs per packet (ingest + pipe consumer)", "A", 1),
        ("B: pipe, destination worker µs per packet (pipe producer + consumer)", "B", 1),
        ("added CPU per packet by the pipe: A + B − D", "added", 1),
        ("pipe consumer's send A − I (direct consumer's: D − I below)", "pipe_send", 1),
        ("direct WebRTC consumer's send D − I", "direct_send", 1),
        ("pipe producer's ingest B − (D − I) (WebRTC ingest: I)", "pipe_ingest", 1),
        ("latency p50 ms, direct", "lat_p50_direct", 2),
        ("latency p50 ms, through the pipe", "lat_p50_pipe", 2),
        ("added latency p50 ms", "added_p50", 2),
        ("latency p99 ms, direct", "lat_p99_direct", 2),
        ("latency p99 ms, through the pipe", "lat_p99_pipe", 2),
        ("added latency p99 ms", "added_p99", 2),
        ("forwarded pkt/s (direct)", "pps", 0),
        ("load average during the runs", "loadavg", 1),
    ]
    return [[name, _mmm(p[key], digits, bold=bold)] for name, key, digits in lines]


def headline(summary: dict) -> list[str]:
    """Plain sentences: held capacity per configuration and ratio, saturated ratios, target."""
    out = []
    c1, c2 = summary.get("capacity_1w"), summary.get("capacity_2w")
    out.append(f"held capacity (loss <= {LOSS_LIMIT * 100:.1f} %, undelivered <= {UNDELIVERED_LIMIT * 100:.0f} %): "
               f"1w {_f(c1, 0)} pkt/s (N={summary.get('capacity_1w_n')}), 2w {_f(c2, 0)} pkt/s "
               f"(N={summary.get('capacity_2w_n')}): ratio {_f(summary.get('capacity_ratio', math.nan), 2)}"
               " (a lower bound when 2w held at the largest N tried)")
    if "saturated_n" in summary:
        out.append(f"at N={summary['saturated_n']}: delivered 2w/1w {_mmm(summary['saturated_ratio'], 2)}; "
                   f"CPU-normalised (2 x pkts per worker CPU-s of 2w / 1w's) {_mmm(summary['saturated_cpu_norm_ratio'], 2)} "
                   f"(min / median / max); target >= {TARGET_RATIO}")
    return out


def print_tables(scaling: dict | None, pipe: dict | None) -> None:
    """The final tables, with rich when it is installed (plain text otherwise)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        Console = None
    if scaling:
        rows = scaling_table_rows(scaling)
        if Console:
            t = Table(title="1 worker vs 2 workers (scenario A), min / median / max over repetitions", show_lines=False)
            for col in SCALING_COLUMNS:
                t.add_column(col, no_wrap=True)
            for row in rows:
                t.add_row(*row)
            Console(width=400).print(t)
        else:
            print(" | ".join(SCALING_COLUMNS))
            for row in rows:
                print(" | ".join(row))
        for line in headline(scaling):
            print(line)
    if pipe:
        rows = pipe_table_rows(pipe)
        title = f"pipe cost, {pipe['publishers']} publishers x (video + audio), 1 subscriber each, {pipe['runs']} rounds"
        if Console:
            t = Table(title=title)
            for col in PIPE_COLUMNS:
                t.add_column(col)
            for row in rows:
                t.add_row(*row)
            Console(width=160).print(t)
        else:
            print(title)
            for row in rows:
                print(" | ".join(row))


def markdown(scaling: dict | None, pipe: dict | None) -> str:
    """The tables as Markdown (medians in bold) for RESULTS.md."""
    out = []
    if scaling:
        out.append("| " + " | ".join(SCALING_COLUMNS) + " |")
        out.append("|" + "---|" * len(SCALING_COLUMNS))
        out += ["| " + " | ".join(row) + " |" for row in scaling_table_rows(scaling, bold=True)]
        out.append("")
        out += [f"- {line}" for line in headline(scaling)]
        out.append("")
    if pipe:
        out.append("| " + " | ".join(PIPE_COLUMNS) + " |")
        out.append("|---|---|")
        out += ["| " + " | ".join(row) + " |" for row in pipe_table_rows(pipe, bold=True)]
    return "\n".join(out) + "\n"


def print_line(r: dict) -> None:
    """One line per run, as it finishes."""
    name = r.get("config") or r.get("case")
    per = ", ".join(f"w{w['worker']}: {w['cpu_share'] * 100:.0f} % core {w['us_per_out_pkt'] if w['out_pps'] else w['us_per_in_pkt']:.1f} µs/pkt "
                    f"({w['subscribers']} subs)" for w in r["per_worker"])
    c = r["check"]
    print(f"  {name} N={r['n_subs']} P={r['n_pubs']}: delivered {r['delivered_pps']:,.0f} pkt/s, loss {r['loss'] * 100:.3f} %, "
          f"undelivered {r['undelivered'] * 100:.1f} %, lat p50/p99 {r['lat_p50_ms']:.1f}/{r['lat_p99_ms']:.1f} ms, "
          f"{r['pkts_per_worker_cpu_s']:,.0f} pkt/worker CPU-s [{per}], generators {r['gen_cores']:.2f} cores, "
          f"machine {r['machine_busy_cores']:.2f} cores busy, load {r['loadavg'][1]}, setup {r['setup_s']} s, "
          f"gaps={c['gaps']} nostart={c['streams_without_packets']} piped={r['piped_subscribers']} "
          f"pipe socket drops={sum(w.get('pipe_rx_drops', 0) for w in r['per_worker'])} "
          f"(whole run: pipe {sum(w.get('pipe_rx_drops_run', 0) for w in r['per_worker'])}, "
          f"WebRTC {sum(w.get('rx_drops_run', 0) for w in r['per_worker'])}, generators {r.get('gen_rx_drops_run', 0)}, "
          f"gaps on piped streams {r['piped_check']['gaps']})"
          + (" GEN-LIMITED" if r["gen_limited"] else "") + ("" if r.get("held", True) else " [does not hold]"),
          flush=True)


def plot(results: list[dict], path: str) -> None:
    """PNG: delivered pkt/s against N for 1w and 2w (median, min-max bars), and packets per
    worker CPU-second below (2w's doubled: what two whole cores would give)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize_scaling(results)
    xs = [r["n"] for r in summary["rows"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for config, color in (("1w", "C0"), ("2w", "C1")):
        for ax, key, scale in ((ax1, "delivered_pps", 1), (ax2, "pkts_per_worker_cpu_s", 2 if config == "2w" else 1)):
            vals = [tuple(v * scale for v in r[config][key]) for r in summary["rows"]]
            ax.errorbar(xs, [v[1] for v in vals], yerr=[[v[1] - v[0] for v in vals], [v[2] - v[1] for v in vals]],
                        marker="o", capsize=3, color=color,
                        label={"1w": "1 worker", "2w": "2 workers" + (" (x2: two whole cores)" if ax is ax2 else "")}[config])
    offered = {}
    for r in results:
        offered.setdefault(r["n"], []).append(r["due_pps"])
    ax1.plot(xs, [statistics.median(offered[n]) for n in xs], ls=":", color="black", lw=1, label="offered (due)")
    ax2.plot(xs, [TARGET_RATIO * r["1w"]["pkts_per_worker_cpu_s"][1] for r in summary["rows"]], ls="--", color="gray",
             lw=1, label=f"target: {TARGET_RATIO} x 1 worker")
    ax1.set_ylabel("delivered pkt/s")
    ax2.set_ylabel("pkt per worker CPU-second")
    ax2.set_xlabel("N subscribers (1 video+audio publisher -> N)")
    for ax in (ax1, ax2):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("raysfu: one worker vs two on a 2-core machine (median, min-max)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI
def _nan(obj: Any) -> Any:
    """Run dicts read back from JSON: ``null`` (a NaN when written) becomes NaN again."""
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan(v) for v in obj]
    return obj


async def run_all(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Run what the CLI asked for on two fresh workers. Returns ``(scaling runs, pipe runs)``."""
    import ray
    from raysfu.actors.api import ensure_ray

    ensure_ray(num_cpus=2, object_store_memory=128 * 1024 * 1024)
    kwargs = {"sample_every": args.sample_every, "poll_us": args.poll_us, "batch": args.batch,
              "sub_procs": args.sub_procs}
    workers, _ = await _two_workers(None)
    scaling, pipe = [], []
    try:
        if args.n:
            scaling = await run_scaling(args.n, args.repeat, args.seconds, workers=workers, progress_factory=Progress,
                                        on_result=print_line, **kwargs)
        if args.pipe_publishers:
            pipe = await run_pipe_cost(args.pipe_publishers, args.repeat, args.seconds, workers=workers,
                                       progress_factory=Progress, on_result=print_line, **kwargs)
    finally:
        for w in workers:
            w.close()
        with contextlib.suppress(Exception):
            ray.kill(ray.get_actor(REGISTRY_NAME, namespace="raysfu"))
    return scaling, pipe


def report(args: argparse.Namespace, scaling: list[dict], pipe: list[dict]) -> None:
    """Print the tables; write ``--markdown`` and the ``--plot`` PNG when asked."""
    scaling_summary = summarize_scaling(scaling) if scaling else None
    pipe_summary = summarize_pipe(pipe) if pipe else None
    print()
    print_tables(scaling_summary, pipe_summary)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(scaling_summary, pipe_summary))
        print(f"wrote {args.markdown}")
    if args.plot and scaling:
        plot(scaling, args.plot_out)
        print(f"wrote {args.plot_out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="raysfu: forwarded packets/s with one worker vs two, and the pipe's cost")
    ap.add_argument("--n", type=int, nargs="*", default=[200, 400, 600], help="subscriber counts (scenario A); none: skip")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (min / median / max)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per run (s)")
    ap.add_argument("--pipe-publishers", type=int, default=50, help="publishers of the pipe-cost runs (0: skip them)")
    ap.add_argument("--sample-every", type=int, default=64, help="subscribers unprotect 1 packet in K (latency)")
    ap.add_argument("--poll-us", type=int, default=2000, help="generator loop period (µs)")
    ap.add_argument("--batch", type=int, default=128, help="datagrams per recvmmsg in the generators")
    ap.add_argument("--sub-procs", type=int, default=2, help="subscriber generator processes")
    ap.add_argument("--worker-niceness", type=int, default=None,
                    help="nice value of Ray's worker processes (RAY_worker_niceness; only when this process starts "
                         "Ray). Ray's default is 15")
    ap.add_argument("--json", help="write every run's figures here")
    ap.add_argument("--from-json", help="print the tables (and --plot) from a --json file instead of running")
    ap.add_argument("--markdown", help="write the tables as Markdown here")
    ap.add_argument("--plot", action="store_true", help="draw the scaling PNG (--plot-out)")
    ap.add_argument("--plot-out", default=str(REPO / "benchmarks" / "scaling.png"))
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        scaling, pipe = _nan(data.get("scaling") or []), _nan(data.get("pipe") or [])
    else:
        if args.worker_niceness is not None:
            os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
        scaling, pipe = asyncio.run(run_all(args))
        if args.json:
            out = {"command": " ".join([".venv/bin/python", "-m", "benchmarks.scaling", *(argv or sys.argv[1:])]),
                   "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "revision": _git_revision(),
                   "scaling": scaling, "pipe": pipe}
            with open(args.json, "w") as f:
                json.dump(_jsonable(out), f, indent=1)
            print(f"wrote {args.json}")
    report(args, scaling, pipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
