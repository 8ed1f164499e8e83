"""Load scenarios against one raysfu WorkerActor, with the peers in separate generator processes.

Scenarios (``N`` is what ``--n`` and ``--find-max`` vary):

- **A** broadcast: 1 publisher (VP8 video ~1 Mbps + Opus audio) → ``N`` subscribers, each on its
  own WebRtcTransport consuming both tracks.
- **B** meeting: ``N`` participants (10 by default), each publishing audio + video on a send
  transport and consuming every other participant's tracks on a receive transport.
- **C** audio room: ``--speakers`` (10) audio publishers → ``N`` listeners, each consuming every
  speaker (``10 N`` audio consumers).

The driver (this process) owns the server side through raysfu's API (``create_worker``,
``router.create_webrtc_transport``, ``transport.produce`` / ``consume`` / ``connect``); the
peers run in ``benchmarks/loadgen.py`` processes (one for the publishers, one per
``--subs-per-proc`` subscribers), reached over JSON lines. With ``--pin`` the worker's threads
are pinned to CPU 1 and the generators to CPU 0 (good on a quiet machine; on a shared, busy one
it keeps the worker on a contended core, so it is off by default).

Each run reports (``run_scenario``'s dict):

- ``cpu_us_per_pkt``: the WorkerActor process's CPU time (getrusage, user + system, all its
  threads) over the measurement window divided by the RTP packets it sent in that window, both
  from ``worker.get_load()`` (so the generators' speed does not enter the figure);
  ``worker_cpu_share`` (0..1 of a core) from the same call; ``cpu_us_per_rx_pkt`` divides the
  ``get_resource_usage`` delta by what the subscribers received instead (a cross-check);
- ``out_pps`` (worker, RTP) and ``rx_pps`` (received by the subscribers);
- ``loss``: over the window, from the sequence numbers (lost / expected) at the subscribers;
  ``undelivered``: 1 - received / (packets the publishers sent in the window × their consumers):
  a worker that falls behind queues (its socket buffers hold tens of seconds of ingress) before
  it drops, so in a short window its overload shows here, not in ``loss``;
  ``loss_total``: over the whole run, from the publishers' packet indices (every packet a
  publisher sent after a consumer's first packet must arrive);
- ``lat_p50_ms`` / ``lat_p99_ms``: one-way latency publisher → subscriber (send stamp in the
  payload, 1 packet in ``--sample-every`` unprotected) over the window — on loopback this is the
  SFU's added latency plus the generators' own scheduling;
- ``rss_per_consumer_kb`` / ``rss_per_subscriber_kb``: the worker's VmRSS after the subscribers
  are set up minus before, over the consumers / subscriber transports;
- ``check``: correctness counters (streams without packets, gaps, late packets, SSRCs that were
  not the consumer's, publisher-index mismatches, first video packet not a keyframe, SRTP
  errors) — the tests assert on them;
- ``gen_rx_drops`` / ``worker_rx_drops``: kernel socket drops (``/proc/net/udp``) at the
  generators (the generator fell behind: ``gen_limited``) and at the worker's sockets.

CLI::

    .venv/bin/python -m benchmarks.scenarios A --n 100 250 500 --seconds 10 --runs 3
    .venv/bin/python -m benchmarks.scenarios C --find-max --seconds 8
    .venv/bin/python -m benchmarks.scenarios A --n 200 --compare --json a.json
    .venv/bin/python -m benchmarks.scenarios --plot a.json --plot-out benchmarks/scenario_a.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # pragma: no cover - run as a file
    sys.path.insert(0, str(REPO))

from benchmarks.loadgen import (
    AUDIO_PPS,
    MEDIA_CODECS,
    VIDEO_PPS,
    audio_rtp_parameters,
    video_rtp_parameters,
)

LISTEN_INFOS = [{"protocol": "udp", "ip": "127.0.0.1"}]
LOSS_LIMIT = 0.001  # --find-max: a run holds while loss <= 0.1 % ...
CPU_LIMIT = 0.95  # ... and the worker used < 95 % of its core
UNDELIVERED_LIMIT = 0.01  # ... and at most 1 % of the packets due in the window were late
GEN_CPU_LIMIT = 0.8  # a generator process busier than this may be the bottleneck
CHUNK = 64  # concurrent control requests to the worker
METRICS = ("cpu_us_per_pkt", "out_pps", "loss", "undelivered", "lat_p50_ms", "lat_p99_ms", "rss_per_consumer_kb", "worker_cpu_share")

ProgressFn = Callable[[str, float, float, str], None]


# --------------------------------------------------------------------------- scenario shapes
def build_spec(scenario: str, n: int, speakers: int = 10) -> tuple[list[tuple[str, ...]], list[list[tuple[int, str]]]]:
    """``(publishers, subscribers)``: each publisher is a tuple of track kinds; each subscriber
    a list of ``(publisher index, kind)`` it consumes. Raises ValueError for a bad scenario/N."""
    scenario = scenario.upper()
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if scenario == "A":
        return [("video", "audio")], [[(0, "video"), (0, "audio")] for _ in range(n)]
    if scenario == "B":
        if n < 2:
            raise ValueError("scenario B needs n >= 2 participants")
        pubs = [("video", "audio")] * n
        return pubs, [[(p, k) for p in range(n) if p != i for k in ("video", "audio")] for i in range(n)]
    if scenario == "C":
        return [("audio",)] * speakers, [[(p, "audio") for p in range(speakers)] for _ in range(n)]
    raise ValueError(f"scenario must be A, B or C, got {scenario!r}")


# --------------------------------------------------------------------------- helpers
def vm_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def udp_socket_counters(ports: set[int]) -> tuple[int, int]:
    """``(drops, rx_queue_bytes)`` summed over the IPv4 UDP sockets bound to one of ``ports``
    (``/proc/net/udp``): kernel drops (receive-buffer overflows, mostly) and bytes waiting to be
    read (a backlog: whoever owns the socket is behind)."""
    drops = queued = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 13 and int(parts[1].split(":")[1], 16) in ports:
                    drops += int(parts[12])
                    queued += int(parts[4].split(":")[1], 16)
    except (OSError, ValueError, StopIteration):
        pass
    return drops, queued


def udp_drops(ports: set[int]) -> int:
    """Kernel drop counters summed over the UDP sockets bound to ``ports``."""
    return udp_socket_counters(ports)[0]


def pin_process(pid: int, cpus: set[int]) -> bool:
    """Set the CPU affinity of every thread of ``pid``; False when not possible."""
    ok = False
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)
            ok = True
    return ok


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def _chunked(coros: list, chunk: int = CHUNK) -> list:
    out = []
    for i in range(0, len(coros), chunk):
        out.extend(await asyncio.gather(*coros[i:i + chunk]))
    return out


class GenProcess:
    """A ``benchmarks.loadgen`` child process and its JSON-lines channel (one request at a time)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.port = 0
        self.dtls: dict = {}
        self._log = tempfile.TemporaryFile()
        self._lock = asyncio.Lock()

    async def start(self, sample_every: int, srtp_suites: list[str] | None = None, timeout_s: float = 30.0) -> None:
        args = [sys.executable, "-m", "benchmarks.loadgen", "--sample-every", str(sample_every)]
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

    async def _read(self, timeout_s: float) -> dict:
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"generator {self.name} (pid {self.pid}) did not answer in {timeout_s:.0f} s") from None
        if not line:
            raise RuntimeError(f"generator {self.name} (pid {self.pid}) exited: {self.stderr_tail()}")
        msg = json.loads(line)
        if msg.get("ev") == "error":
            raise RuntimeError(f"generator {self.name}: {msg['error']}")
        return msg

    async def call(self, msg: dict, timeout_s: float = 30.0) -> dict:
        async with self._lock:
            self.proc.stdin.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
            await self.proc.stdin.drain()
            return await self._read(timeout_s)

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-n:]
        except (OSError, ValueError):
            return ""

    async def close(self) -> None:
        """Ask the process to quit; kill it by PID if it has not exited within 3 s."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b'{"cmd":"quit"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        self._log.close()
        self.proc = None


# --------------------------------------------------------------------------- one run
async def run_scenario(
    scenario: str,
    n: int,
    seconds: float = 5.0,
    *,
    sample_every: int = 16,
    subs_per_proc: int = 500,
    speakers: int = 10,
    pin: bool = False,
    settle_s: float = 1.0,
    srtp_suites: list[str] | None = None,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
) -> dict:
    """Run one scenario at size ``n`` on a fresh WorkerActor and return its figures (module
    docstring). Needs Ray (``ensure_ray`` is called by ``create_worker``). Every generator process
    is stopped by PID and the worker closed before returning. Raises ``TimeoutError`` past
    ``timeout_s`` (default: generous, from ``n``), ``RuntimeError`` if a peer cannot connect."""
    from raysfu.actors import create_worker

    pubs, subs = build_spec(scenario, n, speakers)
    if timeout_s is None:
        timeout_s = 120 + seconds * 2 + 0.25 * (len(subs) + sum(len(s) for s in subs) / 4)
    progress = progress or (lambda *a: None)
    state: dict[str, Any] = {"procs": [], "worker": None}
    started = time.monotonic()
    try:
        return await asyncio.wait_for(
            _run(scenario.upper(), n, pubs, subs, seconds, sample_every, subs_per_proc, pin, settle_s,
                 srtp_suites, progress, state, create_worker),
            timeout_s)
    finally:
        await asyncio.gather(*(p.close() for p in state["procs"]), return_exceptions=True)
        worker = state["worker"]
        if worker is not None:
            worker.close()
            await asyncio.sleep(0.3)
        progress("done", 1, 1, f"{time.monotonic() - started:.0f} s")


async def _run(scenario, n, pubs, subs, seconds, sample_every, subs_per_proc, pin, settle_s, srtp_suites,
               progress, state, create_worker) -> dict:
    t_setup = time.monotonic()
    progress("worker", 0, 1, "starting WorkerActor")
    worker = await create_worker()
    state["worker"] = worker
    multi_cpu = pin and (os.cpu_count() or 1) >= 2
    if multi_cpu:
        pin_process(worker.pid, {1})
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    caps = {"codecs": router.rtp_capabilities["codecs"], "headerExtensions": router.rtp_capabilities["headerExtensions"]}

    n_sub_procs = max(1, math.ceil(len(subs) / max(1, subs_per_proc)))
    pub_proc = GenProcess("pub")
    sub_procs = [GenProcess(f"sub{i}") for i in range(n_sub_procs)]
    state["procs"] = [pub_proc, *sub_procs]
    progress("generators", 0, 1 + n_sub_procs, "spawning")
    await asyncio.gather(*(p.start(sample_every, srtp_suites) for p in state["procs"]))
    if multi_cpu:
        for p in state["procs"]:
            pin_process(p.pid, {0})

    async def new_transport(proc: GenProcess):
        t = await router.create_webrtc_transport(listen_infos=LISTEN_INFOS)
        await t.connect(dtls_parameters=proc.dtls)
        return t

    def peer_spec(pid: int, t) -> dict:
        cand = next(c for c in t.ice_candidates if c["protocol"] == "udp")
        return {"id": pid, "ice": t.ice_parameters, "remote": [cand.get("address") or cand["ip"], cand["port"]],
                "dtls": t.dtls_parameters}

    # publishers
    progress("publishers", 0, len(pubs), "ICE + DTLS")
    pub_transports = await _chunked([new_transport(pub_proc) for _ in pubs])
    added = await pub_proc.call({"cmd": "add", "peers": [peer_spec(i, t) for i, t in enumerate(pub_transports)]}, 120)
    if added["failed"]:
        raise RuntimeError(f"publisher peers failed: {added['failed'][:5]}")
    used_ssrcs: set[int] = set()

    def new_ssrc() -> int:
        while True:
            s = random.getrandbits(32) or 1
            if s not in used_ssrcs:
                used_ssrcs.add(s)
                return s

    pub_streams: list[dict] = []  # index = stream id
    producer_of: dict[tuple[int, str], tuple[Any, int]] = {}
    for p, kinds in enumerate(pubs):
        for m, kind in enumerate(kinds):
            ssrc = new_ssrc()
            params = video_rtp_parameters(ssrc, new_ssrc(), str(m), f"pub{p}") if kind == "video" else audio_rtp_parameters(ssrc, str(m), f"pub{p}")
            producer = await pub_transports[p].produce(kind=kind, rtp_parameters=params)
            sid = len(pub_streams)
            pub_streams.append({"id": sid, "peer": p, "kind": kind, "ssrc": ssrc, "mid": str(m)})
            producer_of[(p, kind)] = (producer, sid)
    await pub_proc.call({"cmd": "publish", "streams": pub_streams})
    progress("publishers", len(pubs), len(pubs), f"{len(pub_streams)} streams ready")

    # subscribers: transports, ICE + DTLS
    await asyncio.sleep(0.3)
    rss_before = vm_rss_kb(worker.pid)
    proc_of_sub = [sub_procs[i * n_sub_procs // len(subs)] for i in range(len(subs))]
    sub_transports: list[Any] = []
    for i in range(0, len(subs), CHUNK):
        sub_transports += await asyncio.gather(*(new_transport(proc_of_sub[k]) for k in range(i, min(len(subs), i + CHUNK))))
        progress("subscriber transports", len(sub_transports), len(subs), "")
    progress("subscriber ICE + DTLS", 0, len(subs), "")
    replies = await asyncio.gather(*(
        proc.call({"cmd": "add", "peers": [peer_spec(k, sub_transports[k]) for k in range(len(subs)) if proc_of_sub[k] is proc]},
                  60 + 0.2 * len(subs))
        for proc in sub_procs))
    failed = [f for r in replies for f in r["failed"]]
    if failed:
        raise RuntimeError(f"{len(failed)} subscriber peers failed, e.g. {failed[:3]}")
    progress("subscriber ICE + DTLS", len(subs), len(subs), "")

    # consumers (paused until the generator knows their SSRCs)
    consumer_jobs = [(k, p, kind) for k, wants in enumerate(subs) for (p, kind) in wants]
    consumers: list[Any] = []
    for i in range(0, len(consumer_jobs), CHUNK):
        batch = consumer_jobs[i:i + CHUNK]
        consumers += await asyncio.gather(*(
            sub_transports[k].consume(producer_id=producer_of[(p, kind)][0].id, rtp_capabilities=caps, paused=True)
            for k, p, kind in batch))
        progress("consumers", len(consumers), len(consumer_jobs), "")
    sub_streams: list[dict] = []  # index = subscriber stream id
    per_proc: dict[int, list[dict]] = {id(p): [] for p in sub_procs}
    for c, (k, p, kind) in zip(consumers, consumer_jobs):
        enc = c.rtp_parameters["encodings"][0]
        st = {"id": len(sub_streams), "peer": k, "kind": kind, "ssrc": enc["ssrc"], "pub_stream": producer_of[(p, kind)][1]}
        sub_streams.append(st)
        per_proc[id(proc_of_sub[k])].append({key: st[key] for key in ("id", "peer", "kind", "ssrc")})
    await asyncio.gather(*(p.call({"cmd": "expect", "streams": per_proc[id(p)]}) for p in sub_procs))
    for i in range(0, len(consumers), CHUNK):
        await asyncio.gather(*(c.resume() for c in consumers[i:i + CHUNK]))
        progress("resume", min(len(consumers), i + CHUNK), len(consumers), "")

    # media starts once every consumer exists (a setup under full load would take far longer);
    # then wait until every stream has delivered its first packet (video: a keyframe)
    await pub_proc.call({"cmd": "start"})
    deadline = time.monotonic() + 10 + KEYFRAME_WAIT_S
    while True:
        stats = await asyncio.gather(*(p.call({"cmd": "stats"}) for p in sub_procs))
        started_streams = sum(s["rx_streams_started"] for s in stats)
        progress("first packets", started_streams, len(sub_streams), "")
        if started_streams >= len(sub_streams) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle_s)
    setup_s = time.monotonic() - t_setup

    # measurement window
    worker_ports = {t.ice_candidates[0]["port"] for t in pub_transports + sub_transports}
    gen_ports = {p.port for p in sub_procs}
    gen_drops0, worker_drops0 = udp_drops(gen_ports), udp_drops(worker_ports)
    await worker.get_load()  # starts the load window
    ru0 = await worker.get_resource_usage()
    st0 = await asyncio.gather(*(p.call({"cmd": "stats", "reset_latency": True}) for p in sub_procs))
    pub0 = await pub_proc.call({"cmd": "stats"})
    t0 = time.monotonic()
    last_ru, last_rx, last_t = ru0, sum(s["rx_pkts"] for s in st0), t0
    backlog_gen = backlog_worker = 0  # largest bytes waiting in the sockets, sampled
    while True:
        remaining = seconds - (time.monotonic() - t0)
        if remaining <= 0:
            break
        await asyncio.sleep(min(1.0, remaining))
        ru = await worker.get_resource_usage()
        st = await asyncio.gather(*(p.call({"cmd": "stats"}) for p in sub_procs))
        now = time.monotonic()
        rx = sum(s["rx_pkts"] for s in st)
        backlog_gen = max(backlog_gen, udp_socket_counters(gen_ports)[1])
        backlog_worker = max(backlog_worker, udp_socket_counters(worker_ports)[1])
        cpu = (_cpu_ms(ru) - _cpu_ms(last_ru)) / 1000 / max(1e-6, now - last_t)
        progress("measuring", now - t0, seconds, f"worker CPU {cpu * 100:.0f} %  rx {(rx - last_rx) / max(1e-6, now - last_t):,.0f} pkt/s")
        last_ru, last_rx, last_t = ru, rx, now
    load = await worker.get_load()
    ru1 = await worker.get_resource_usage()
    st1 = await asyncio.gather(*(p.call({"cmd": "stats"}) for p in sub_procs))
    pub1 = await pub_proc.call({"cmd": "stats"})
    window_s = time.monotonic() - t0
    rss_after = vm_rss_kb(worker.pid)  # steady state: retransmission buffers are full by now
    gen_drops1, worker_drops1 = udp_drops(gen_ports), udp_drops(worker_ports)

    # stop, drain, collect
    stopped = await pub_proc.call({"cmd": "stop"})
    pub_final = await pub_proc.call({"cmd": "report"})
    await _drain(sub_procs, DRAIN_LIMIT_S)
    reports = await asyncio.gather(*(p.call({"cmd": "report"}, 60) for p in sub_procs))
    sent = {sid: count for sid, count in stopped["sent"]}
    diag: dict[str, Any] = {"pub_transport_drops": {}, "producer_drops": {}}
    with contextlib.suppress(Exception):  # diagnostics only
        for t in pub_transports:
            d = await t.dump()
            for k, v in (d.get("droppedPackets") or {}).items():
                diag["pub_transport_drops"][k] = diag["pub_transport_drops"].get(k, 0) + v
        for producer, _sid in producer_of.values():
            d = await producer.dump()
            for k, v in (d.get("droppedPackets") or {}).items():
                diag["producer_drops"][k] = diag["producer_drops"].get(k, 0) + v
    router.close()

    rx_window = sum(s["rx_pkts"] for s in st1) - sum(s["rx_pkts"] for s in st0)
    # what the subscribers should have got in the window: packets the publishers sent meanwhile
    due_window = sum(pub1["sent"][st["pub_stream"]] - pub0["sent"][st["pub_stream"]] for st in sub_streams)
    span_window = sum(s["rx_span"] for s in st1) - sum(s["rx_span"] for s in st0)
    check = {"streams": len(sub_streams), "streams_without_packets": 0, "gaps": 0, "late": 0, "bad_ssrc": 0,
             "idx_errors": 0, "first_not_keyframe": 0, "srtp_errors": 0, "expected": 0, "received": 0,
             "tail_missing": 0}
    for rep in reports:
        check["bad_ssrc"] += rep["bad_ssrc"]
        check["srtp_errors"] += rep["srtp_err"]
        for sid, cnt, first_idx, last_idx, span, gaps, late, idx_err, not_key in rep["streams"]:
            pub_sent = sent[sub_streams[sid]["pub_stream"]]
            if cnt == 0 or first_idx < 0:
                check["streams_without_packets"] += 1
                check["expected"] += max(1, int(window_s * (VIDEO_PPS if sub_streams[sid]["kind"] == "video" else AUDIO_PPS)))
                continue
            expected = pub_sent - first_idx
            check["expected"] += expected
            check["received"] += cnt - late
            check["gaps"] += gaps
            check["late"] += late
            check["idx_errors"] += idx_err
            check["first_not_keyframe"] += not_key
            check["tail_missing"] += max(0, expected - span)
    lat = sorted(v for rep in reports for v in rep["lat_us"])
    cpu_share = load["cpuShare"]
    out_pps = load["packetsOutPerSecond"]
    cpu_ms = _cpu_ms(ru1) - _cpu_ms(ru0)
    n_consumers = len(sub_streams)
    gen_rx_drops = gen_drops1 - gen_drops0
    gen_cpu = [(b["cpu_s"] - a["cpu_s"]) / window_s for a, b in zip(st0, st1)]
    pub_cpu = (pub1["cpu_s"] - pub0["cpu_s"]) / window_s
    result = {
        "scenario": scenario,
        "n": n,
        "publishers": len(pubs),
        "subscribers": len(subs),
        "consumers": n_consumers,
        "seconds": round(window_s, 3),
        "cpu_us_per_pkt": cpu_share / out_pps * 1e6 if out_pps else math.nan,
        "cpu_us_per_rx_pkt": cpu_ms * 1000 / rx_window if rx_window else math.nan,
        "worker_cpu_share": cpu_share,
        "out_pps": out_pps,
        "in_pps": load["packetsInPerSecond"],
        "rx_pps": rx_window / window_s,
        "expected_out_pps": sum(VIDEO_PPS if s["kind"] == "video" else AUDIO_PPS for s in sub_streams),
        "loss": max(0.0, 1 - rx_window / span_window) if span_window else (1.0 if n_consumers else 0.0),
        "loss_total": max(0.0, 1 - check["received"] / check["expected"]) if check["expected"] else 0.0,
        "undelivered": max(0.0, 1 - rx_window / due_window) if due_window else math.nan,
        "lat_p50_ms": percentile(lat, 50) / 1000,
        "lat_p99_ms": percentile(lat, 99) / 1000,
        "lat_samples": len(lat),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_per_consumer_kb": (rss_after - rss_before) / n_consumers if n_consumers else math.nan,
        "rss_per_subscriber_kb": (rss_after - rss_before) / len(subs),
        "gen_rx_drops": gen_rx_drops,
        "worker_rx_drops": worker_drops1 - worker_drops0,
        "gen_rx_backlog_kb": backlog_gen / 1024,
        "worker_rx_backlog_kb": backlog_worker / 1024,
        "gen_cpu_share": max(gen_cpu),
        "gen_us_per_rx_pkt": sum(b["cpu_s"] - a["cpu_s"] for a, b in zip(st0, st1)) * 1e6 / rx_window if rx_window else math.nan,
        "gen_avg_batch": rx_window / max(1, sum(b["rx_batches"] - a["rx_batches"] for a, b in zip(st0, st1))),
        "pub_cpu_share": pub_cpu,
        "gen_limited": gen_rx_drops > 0 or max(gen_cpu) > GEN_CPU_LIMIT or pub_cpu > GEN_CPU_LIMIT,
        "setup_s": round(setup_s, 1),
        "pub_packets": sum(sent.values()),
        "keyframes_sent": pub_final["keyframes_sent"],
        "pli_rx": pub_final["pli_rx"],
        "pacer_rebase": pub_final["pacer_rebase"],
        "check": check,
        "diag": diag,
    }
    return result


KEYFRAME_WAIT_S = 3.0
DRAIN_LIMIT_S = 10.0


async def _drain(sub_procs: list[GenProcess], limit_s: float) -> None:
    """After the publishers stopped: wait until the subscribers' counters stop moving (what the
    worker still had queued arrives), at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    last = -1
    await asyncio.sleep(0.2)
    while time.monotonic() < deadline:
        stats = await asyncio.gather(*(p.call({"cmd": "stats"}) for p in sub_procs))
        rx = sum(s["rx_pkts"] for s in stats)
        if rx == last:
            return
        last = rx
        await asyncio.sleep(0.3)


def _cpu_ms(ru: dict) -> float:
    return ru["ru_utime"] + ru["ru_stime"]


def failures(result: dict) -> list[str]:
    """Why a run does not "hold" (empty list: it held): ``loss`` > 0.1 %, ``cpu`` (worker at
    >= 95 % of its core), ``lag`` (more than 1 % of the packets due in the window were not
    delivered in it: the worker is queueing, overloaded or starved of CPU), ``nostart`` (a consumer never got a packet), ``generator``
    (a generator process was the bottleneck: the figure says nothing about the worker)."""
    out = []
    if result["loss"] > LOSS_LIMIT:
        out.append("loss")
    if result["worker_cpu_share"] >= CPU_LIMIT:
        out.append("cpu")
    if result["undelivered"] > UNDELIVERED_LIMIT:
        out.append("lag")
    if result["check"]["streams_without_packets"]:
        out.append("nostart")
    if result["gen_limited"]:
        out.append("generator")
    return out


def held(result: dict) -> bool:
    """True when :func:`failures` finds nothing."""
    return not failures(result)


# --------------------------------------------------------------------------- many runs
async def run_series(scenario: str, ns: list[int], runs: int, seconds: float, progress_factory=None, **kwargs) -> list[dict]:
    """``runs`` runs at every N (interleaved: N1, N2, ..., N1, N2, ...); returns every result."""
    results = []
    for r in range(runs):
        for n in ns:
            prog = progress_factory(f"{scenario} N={n} run {r + 1}/{runs}") if progress_factory else None
            res = await run_scenario(scenario, n, seconds, progress=prog, **kwargs)
            res["run"] = r + 1
            res["failures"] = failures(res)
            res["held"] = not res["failures"]
            results.append(res)
            if progress_factory:
                print_line(res)
    return results


async def find_max(scenario: str, seconds: float, start: int = 100, limit: int = 5000, progress_factory=None, **kwargs) -> dict:
    """Raise N (doubling from ``start``, then bisecting) until a run does not hold; returns
    ``{"largest_n": int | None, "first_failing_n": int | None, "probes": [results]}``."""
    probes: list[dict] = []
    ok: int | None = None
    bad: int | None = None
    n = start
    while True:
        prog = progress_factory(f"{scenario} find-max N={n}") if progress_factory else None
        res = await run_scenario(scenario, n, seconds, progress=prog, **kwargs)
        res["failures"] = failures(res)
        res["held"] = not res["failures"]
        probes.append(res)
        if progress_factory:
            print_line(res)
        if res["held"]:
            ok = n
        elif "generator" in res["failures"]:
            print(f"  N={n}: the generator was the bottleneck; stopping the search here", file=sys.stderr)
            bad = n
            break
        else:
            bad = n
        if bad is None:
            if n >= limit:
                break
            n = min(limit, n * 2)
        else:
            lo = ok or 0
            if bad - lo <= max(10, lo // 10) or (ok is None and n <= 2):
                break
            n = (lo + bad) // 2 if ok is not None else max(1, bad // 2)
    return {"largest_n": ok, "first_failing_n": bad, "probes": probes}


def summarize(results: list[dict]) -> list[dict]:
    """Per (scenario, N): min / median / max of every metric in ``METRICS`` over the runs."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["scenario"], r["n"]), []).append(r)
    rows = []
    for (scenario, n), rs in sorted(groups.items()):
        row: dict[str, Any] = {"scenario": scenario, "n": n, "runs": len(rs), "consumers": rs[0]["consumers"],
                               "gen_limited": any(r["gen_limited"] for r in rs)}
        for m in METRICS:
            vals = sorted(r[m] for r in rs if r[m] is not None and not math.isnan(r[m]))
            row[m] = (vals[0], statistics.median(vals), vals[-1]) if vals else (math.nan,) * 3
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output
def _fmt(v: float, digits: int = 1) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:,.{digits}f}"


def print_line(r: dict) -> None:
    c = r["check"]
    flag = f" GEN-LIMITED (generator CPU {r['gen_cpu_share'] * 100:.0f} %, drops {r['gen_rx_drops']})" if r["gen_limited"] else ""
    print(f"  {r['scenario']} N={r['n']}: cpu {r['cpu_us_per_pkt']:.1f} µs/pkt ({r['worker_cpu_share'] * 100:.0f} % core), "
          f"out {r['out_pps']:,.0f} pkt/s, loss {r['loss'] * 100:.3f} % (run {r['loss_total'] * 100:.3f} %), "
          f"undelivered {r['undelivered'] * 100:.2f} %, "
          f"lat p50/p99 {r['lat_p50_ms']:.2f}/{r['lat_p99_ms']:.2f} ms, RSS {r['rss_per_consumer_kb']:.0f} KB/consumer, "
          f"generator CPU {r['gen_cpu_share'] * 100:.0f} %, setup {r['setup_s']} s, errors gaps={c['gaps']} late={c['late']} bad_ssrc={c['bad_ssrc']} "
          f"idx={c['idx_errors']} nostart={c['streams_without_packets']}{flag}"
          + (f"  [does not hold: {', '.join(r['failures'])}]" if r.get("failures") else ""), flush=True)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of ``summarize`` rows: min / median / max per metric."""
    head = ["scen", "N", "consumers", "runs", "CPU µs/pkt", "out pkt/s", "loss %", "undelivered %", "lat p50 ms", "lat p99 ms", "RSS KB/consumer", "worker core %"]
    lines = []
    for r in rows:
        def mmm(key, digits=1, scale=1.0, r=r):
            lo, med, hi = r[key]
            return f"{_fmt(lo * scale, digits)} / {_fmt(med * scale, digits)} / {_fmt(hi * scale, digits)}"
        lines.append([r["scenario"], str(r["n"]), str(r["consumers"]), str(r["runs"]), mmm("cpu_us_per_pkt"),
                      mmm("out_pps", 0), mmm("loss", 3, 100), mmm("undelivered", 2, 100), mmm("lat_p50_ms", 2), mmm("lat_p99_ms", 2),
                      mmm("rss_per_consumer_kb", 0), mmm("worker_cpu_share", 0, 100) + (" GEN-LIMITED" if r["gen_limited"] else "")])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out) + "\n(min / median / max over the runs)"


class Progress:
    """Progress on stderr: rich's live bar when rich is installed, else a one-line status."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._last = 0.0
        self._rich = None
        try:  # optional
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), transient=True)
            self._task = self._rich.add_task(title, total=1, info="")
            self._rich.start()
        except ImportError:
            pass

    def __call__(self, stage: str, done: float, total: float, info: str) -> None:
        if self._rich is not None:
            self._rich.update(self._task, description=f"{self.title}: {stage}", completed=done, total=max(total, 1e-9), info=info)
            if stage == "done":
                self._rich.stop()
            return
        now = time.monotonic()
        if stage != "done" and now - self._last < 0.5 and done < total:
            return
        self._last = now
        text = f"[{self.title}] {stage} {done:.0f}/{total:.0f} {info}"
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K" + text[:150] + ("\n" if stage == "done" else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- comparisons
async def compare(result: dict, seconds: float, srtp_profile: str = "AES_CM_128_HMAC_SHA1_80") -> dict:
    """Side-by-side for scenario A: call ``benchmarks.bare_relay.run_bare_relay`` and
    ``benchmarks.janus_peer.run_janus`` when those modules exist (same keys as our result) and
    return ``{name: {"result": dict, "ratios": {metric: raysfu / other}}}``. Run raysfu with the
    same SRTP suite (``--srtp-suite``; ``--compare`` defaults it to ``srtp_profile``)."""
    out: dict[str, Any] = {}
    n = result["n"]
    media = {"n_subscribers": n, "seconds": seconds, "video_pps": round(VIDEO_PPS), "audio_pps": AUDIO_PPS,
             "srtp_profile": srtp_profile}
    calls = [("bare_relay", "run_bare_relay", media), ("janus_peer", "run_janus", media)]
    for module_name, fn_name, kwargs in calls:
        try:
            module = importlib.import_module(f"benchmarks.{module_name}")
        except ImportError as exc:
            out[module_name] = {"error": f"not available ({exc})"}
            continue
        try:
            fn = getattr(module, fn_name)
            other = fn(**kwargs)
            if inspect.isawaitable(other):
                other = await other
        except Exception as exc:  # report and go on: a comparison never fails the run
            out[module_name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        ratios = {}
        for m in ("cpu_us_per_pkt", "out_pps", "loss", "lat_p50_ms", "lat_p99_ms"):
            a, b = result.get(m), (other or {}).get(m)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                ratios[m] = a / b
        out[module_name] = {"result": other, "ratios": ratios}
    return out


# --------------------------------------------------------------------------- plot
def plot_scenario_a(results: list[dict], path: str, compare: dict | None = None) -> str:
    """PNG for scenario A against N: worker CPU µs per forwarded packet (top) and, below, loss %
    and undelivered % (lost or still queued at the end of the window), each as the median with
    min-max bars over the runs. ``compare`` (the ``--json`` file's "compare": ``{"N=<n> run <k>":
    {"bare_relay"|"janus_peer": {"result": {"cpu_us_per_pkt": ...}}}}``) adds the side-by-side
    peers' CPU per packet to the top panel (matplotlib only). matplotlib when installed, else a
    small built-in renderer. Returns which one drew it. Raises ValueError without scenario A
    results."""
    rows = summarize([r for r in results if r["scenario"] == "A"])
    if not rows:
        raise ValueError("no scenario A results to plot")
    xs = [r["n"] for r in rows]
    cpu = [r["cpu_us_per_pkt"] for r in rows]
    loss = [tuple(v * 100 for v in r["loss"]) for r in rows]
    late = [tuple(v * 100 for v in r["undelivered"]) for r in rows]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _fallback_png(path, xs, [("CPU US/PACKET", [(cpu, (31, 119, 180))], None),
                                 ("LOSS, UNDELIVERED %", [(late, (255, 127, 14)), (loss, (214, 39, 40))], LOSS_LIMIT * 100)])
        return "builtin renderer (matplotlib is not installed)"

    def bars(ax, series, **kw):
        ax.errorbar(xs, [v[1] for v in series], yerr=[[v[1] - v[0] for v in series], [v[2] - v[1] for v in series]],
                    marker="o", capsize=3, **kw)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    bars(ax1, cpu, label="raysfu WorkerActor")
    peers: dict[str, dict[int, list[float]]] = {}
    for key, by_peer in (compare or {}).items():
        n = int(key.split()[0].partition("=")[2])
        for peer, entry in by_peer.items():
            value = (entry.get("result") or {}).get("cpu_us_per_pkt")
            if value:
                peers.setdefault(peer, {}).setdefault(n, []).append(value)
    names = {"bare_relay": "bare Python relay (same run)", "janus_peer": "Janus 1.1.2 Streaming (same run)"}
    for k, (peer, by_n) in enumerate(sorted(peers.items())):
        ns = sorted(by_n)
        med = [statistics.median(by_n[n]) for n in ns]
        ax1.errorbar(ns, med, yerr=[[m - min(by_n[n]) for m, n in zip(med, ns)], [max(by_n[n]) - m for m, n in zip(med, ns)]],
                     marker="s", capsize=3, color=f"C{k + 4}", label=names.get(peer, peer))
    if peers:
        ax1.legend(fontsize=8)
    ax1.set_ylabel("worker CPU µs / forwarded packet")
    ax1.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    bars(ax2, late, color="C1", label="undelivered in the window (lost or queued)")
    bars(ax2, loss, color="C3", label="lost (sequence gaps)")
    ax2.axhline(LOSS_LIMIT * 100, color="gray", ls="--", lw=1)
    ax2.set_ylabel("% of packets due")
    ax2.set_xlabel("N subscribers (scenario A: 1 video+audio publisher → N)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle("raysfu scenario A: median, min–max over runs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "matplotlib"


# A tiny PNG renderer for when matplotlib is missing: two panels (median line, min-max bars),
# axes, ticks and labels in a 5x7 bitmap font. Enough for the RESULTS.md figure, nothing more.
_GLYPHS = {
    "A": "01110100011000111111100011000110001", "B": "11110100011000111110100011000111110",
    "C": "01110100011000010000100001000101110", "D": "11110100011000110001100011000111110",
    "E": "11111100001000011110100001000011111", "F": "11111100001000011110100001000010000",
    "G": "01110100011000010111100011000101111", "H": "10001100011000111111100011000110001",
    "I": "01110001000010000100001000010001110", "J": "00111000100001000010000101001001100",
    "K": "10001100101010011000101001001010001", "L": "10000100001000010000100001000011111",
    "M": "10001110111010110101100011000110001", "N": "10001100011100110101100111000110001",
    "O": "01110100011000110001100011000101110", "P": "11110100011000111110100001000010000",
    "Q": "01110100011000110001101011001001101", "R": "11110100011000111110101001001010001",
    "S": "01111100001000001110000010000111110", "T": "11111001000010000100001000010000100",
    "U": "10001100011000110001100011000101110", "V": "10001100011000110001100010101000100",
    "W": "10001100011000110101101011010101010", "X": "10001100010101000100010101000110001",
    "Y": "10001100010101000100001000010000100", "Z": "11111000010001000100010001000011111",
    "0": "01110100011001110101110011000101110", "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111", "3": "11111000100010000010000011000101110",
    "4": "00010001100101010010111110001000010", "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110", "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110", "9": "01110100011000101111000010001001100",
    " ": "0" * 35, "/": "00001000100001000100010000100010000", "%": "11000110010001000100010001001100011",
    ".": "00000000000000000000000000110001100", "-": "00000000000000011111000000000000000",
    ",": "00000000000000000000011000010001000", "(": "00010001000100001000010000010000010",
    ")": "01000001000001000010000100010001000", ":": "00000011000110000000011000110000000",
    "+": "00000001000010011111001000010000000", ">": "01000001000001000001000100010001000",
    "=": "00000000001111100000111110000000000",
}


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, rgb: tuple[int, int, int]) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(rgb)

    def line(self, x0: int, y0: int, x1: int, y1: int, rgb, width: int = 1, dash: int = 0) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(steps + 1):
            if dash and (k // dash) % 2:
                continue
            x = round(x0 + (x1 - x0) * k / steps)
            y = round(y0 + (y1 - y0) * k / steps)
            for dx in range(width):
                for dy in range(width):
                    self.dot(x + dx - width // 2, y + dy - width // 2, rgb)

    def text(self, x: int, y: int, text: str, rgb=(0, 0, 0), scale: int = 2, vertical: bool = False) -> None:
        for n, ch in enumerate(text.upper()):
            bits = _GLYPHS.get(ch, _GLYPHS[" "])
            for r in range(7):
                for c in range(5):
                    if bits[r * 5 + c] == "1":
                        for sx in range(scale):
                            for sy in range(scale):
                                if vertical:  # rotated 90° counter-clockwise, reading upwards
                                    self.dot(x + r * scale + sy, y - (n * 6 + c) * scale - sx, rgb)
                                else:
                                    self.dot(x + (n * 6 + c) * scale + sx, y + r * scale + sy, rgb)

    def save(self, path: str) -> None:
        import zlib

        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

        ihdr = self.w.to_bytes(4, "big") + self.h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _nice_ticks(hi: float) -> list[float]:
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [k * step for k in range(int(hi / step) + 2)]


def _fallback_png(path: str, xs: list[int], panels: list[tuple]) -> None:
    """Stacked panels over the same x values. ``panels``: ``[(label, [(series, rgb)], threshold |
    None)]`` where a series is one ``(min, median, max)`` per x (NaN medians are skipped)."""
    height = 70 + 270 * len(panels)
    cv = _Canvas(760, height)
    cv.text(120, 12, "RAYSFU SCENARIO A: MEDIAN, MIN-MAX OVER RUNS", scale=2)
    left, right = 110, 730
    x_hi = max(xs) * 1.05

    def fx(x: float) -> int:
        return round(left + x / x_hi * (right - left))

    for p, (label, lines, threshold) in enumerate(panels):
        y_top, y_bot = 50 + p * 270, 270 + p * 270
        finite = [v for series, _ in lines for t in series for v in t if not math.isnan(v)]
        ticks = _nice_ticks(max(finite + [threshold or 0, 1e-9]))
        y_hi = ticks[-1]

        def fy(v: float, y_bot: int = y_bot, y_top: int = y_top, y_hi: float = y_hi) -> int:
            return round(y_bot - v / y_hi * (y_bot - y_top))

        for t in ticks:
            cv.line(left, fy(t), right, fy(t), (225, 225, 225))
            txt = f"{t:g}"
            cv.text(left - 8 - len(txt) * 12, fy(t) - 7, txt)
        cv.line(left, y_top, left, y_bot, (0, 0, 0))
        cv.line(left, y_bot, right, y_bot, (0, 0, 0))
        cv.text(22, (y_top + y_bot) // 2 + len(label) * 6, label, vertical=True)
        if threshold is not None:
            cv.line(left, fy(threshold), right, fy(threshold), (128, 128, 128), dash=6)
        for series, rgb in lines:
            prev = None
            for x, (lo, med, hi) in zip(xs, series):
                if math.isnan(med):
                    continue
                px_, py = fx(x), fy(med)
                cv.line(px_, fy(lo), px_, fy(hi), rgb)
                cv.line(px_ - 5, fy(lo), px_ + 5, fy(lo), rgb)
                cv.line(px_ - 5, fy(hi), px_ + 5, fy(hi), rgb)
                for d in range(-3, 4):
                    cv.line(px_ - 3, py + d, px_ + 3, py + d, rgb)
                if prev is not None:
                    cv.line(prev[0], prev[1], px_, py, rgb, width=2)
                prev = (px_, py)
        for x in xs:
            cv.line(fx(x), y_bot, fx(x), y_bot + 5, (0, 0, 0))
            cv.text(fx(x) - len(str(x)) * 6, y_bot + 9, str(x))
    if len(panels) > 1 and len(panels[-1][1]) > 1:  # legend of the last panel
        y = 50 + (len(panels) - 1) * 270 + 6
        for k, (_series, rgb) in enumerate(panels[-1][1]):
            name = ["UNDELIVERED (LOST OR QUEUED)", "LOST (SEQ GAPS)"][k] if k < 2 else ""
            cv.line(right - 380, y + 7 + k * 20, right - 350, y + 7 + k * 20, rgb, width=3)
            cv.text(right - 340, y + k * 20, name)
    cv.text(230, height - 25, "N SUBSCRIBERS (1 VIDEO+AUDIO PUBLISHER -> N)")
    cv.save(path)


# --------------------------------------------------------------------------- CLI
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


async def main_async(args: argparse.Namespace) -> int:
    if args.plot:
        with open(args.plot) as f:
            data = json.load(f)
        results = [r for r in data["results"] if r.get("cpu_us_per_pkt") is not None]
        used = plot_scenario_a(results, args.plot_out, data.get("compare"))
        print(f"wrote {args.plot_out} ({used})")
        return 0
    if not args.scenario:
        print("a scenario (A, B or C) is required unless --plot is given", file=sys.stderr)
        return 2
    from raysfu.actors.api import ensure_ray

    ensure_ray(num_cpus=2, object_store_memory=128 * 1024 * 1024)
    scenario = args.scenario.upper()
    if args.compare and not args.srtp_suite:
        args.srtp_suite = ["AES_CM_128_HMAC_SHA1_80"]  # what the bare relay and Janus runs use
    kwargs = {"sample_every": args.sample_every, "subs_per_proc": args.subs_per_proc, "speakers": args.speakers,
              "pin": args.pin, "srtp_suites": args.srtp_suite}
    out: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, "-m", "benchmarks.scenarios", *sys.argv[1:]]),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "revision": _git_revision()}
    if args.find_max:
        fm = await find_max(scenario, args.seconds, start=args.start, limit=args.limit, progress_factory=Progress, **kwargs)
        out["find_max"] = {k: v for k, v in fm.items() if k != "probes"}
        out["results"] = fm["probes"]
        print(format_table(summarize(fm["probes"])))
        print(f"\n{scenario} --find-max: largest N that held (loss <= {LOSS_LIMIT * 100:.1f} %, worker core < {CPU_LIMIT * 100:.0f} %): "
              f"{fm['largest_n']} (first failing: {fm['first_failing_n']})")
    else:
        ns = args.n or {"A": [20], "B": [10], "C": [20]}[scenario]
        results = await run_series(scenario, ns, args.runs, args.seconds, progress_factory=Progress, **kwargs)
        out["results"] = results
        print()
        print(format_table(summarize(results)))
        if args.compare:
            if scenario != "A":
                print("--compare applies to scenario A only", file=sys.stderr)
            else:
                out["compare"] = {}
                for r in results:
                    cmp_ = await compare(r, args.seconds, args.srtp_suite[0])
                    out["compare"][f"N={r['n']} run {r.get('run', 1)}"] = cmp_
                    for name, entry in cmp_.items():
                        if "error" in entry:
                            print(f"  compare {name}: {entry['error']}")
                        else:
                            ratios = ", ".join(f"{k} ×{v:.2f}" for k, v in entry["ratios"].items())
                            print(f"  N={r['n']} raysfu / {name}: {ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(out), f, indent=1)
        print(f"wrote {args.json}")
    return 0


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="raysfu load scenarios (A broadcast, B meeting, C audio room) on one WorkerActor")
    ap.add_argument("scenario", nargs="?", help="A, B or C")
    ap.add_argument("--n", type=int, nargs="+", help="sizes: A subscribers, B participants, C listeners")
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per run (s)")
    ap.add_argument("--runs", type=int, default=1, help="runs per N (report min/median/max)")
    ap.add_argument("--find-max", action="store_true", help="raise N until loss > 0.1 %% or the worker's core saturates")
    ap.add_argument("--start", type=int, default=100, help="--find-max: first N")
    ap.add_argument("--limit", type=int, default=3200, help="--find-max: largest N tried")
    ap.add_argument("--speakers", type=int, default=10, help="scenario C: audio publishers")
    ap.add_argument("--sample-every", type=int, default=16, help="subscribers unprotect 1 packet in K (latency)")
    ap.add_argument("--subs-per-proc", type=int, default=500, help="subscriber peers per generator process")
    ap.add_argument("--srtp-suite", action="append", help="SRTP suites the peers offer (default: raysfu's list)")
    ap.add_argument("--pin", action="store_true", help="pin the worker to CPU 1 and the generators to CPU 0")
    ap.add_argument("--compare", action="store_true", help="A: also run benchmarks.bare_relay / janus_peer if present")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--plot", help="draw the scenario A PNG from a --json file, then exit")
    ap.add_argument("--plot-out", default=str(REPO / "benchmarks" / "scenario_a.png"))
    args = ap.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
