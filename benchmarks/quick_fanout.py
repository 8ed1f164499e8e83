"""Rough CPU cost per forwarded packet: 1 video publisher → N subscribers on one WorkerActor.

Publisher and subscribers are raysfu ClientPeers in this (driver) process; the figure is the
WorkerActor's own CPU time (getrusage via ``worker.get_resource_usage()``) divided by the
packets it forwarded, so the driver's speed does not enter it. A first, rough figure; the full
load benchmark (separate generator processes, loss, latency, a peer SFU) is its own work.

    .venv/bin/python benchmarks/quick_fanout.py --subscribers 20 50 --pps 200 --seconds 5 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from raysfu.actors import create_worker  # noqa: E402
from raysfu.actors.client_peer import ClientPeer  # noqa: E402
from raysfu.transport.rtp import build_rtp  # noqa: E402

PROFILE = False
CODECS = [{"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}]
PARAMS = {
    "mid": "0",
    "codecs": [
        {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}, {"type": "transport-cc", "parameter": ""}]},
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4},
        {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2},
        {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3},
    ],
    "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 1112}}],
    "rtcp": {"cname": "bench"},
}


async def connect(transport, keep=False) -> ClientPeer:
    peer = ClientPeer(keep=keep)
    await peer.open()
    await transport.connect(dtls_parameters=peer.dtls_parameters)
    await peer.connect(transport.ice_parameters, transport.ice_candidates, transport.dtls_parameters)
    return peer


async def run_once(worker, n: int, pps: int, seconds: float) -> dict:
    router = await worker.create_router(media_codecs=CODECS)
    listen = [{"protocol": "udp", "ip": "127.0.0.1"}]
    t_pub = await router.create_webrtc_transport(listen_infos=listen)
    pub = await connect(t_pub)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(PARAMS))
    caps = {"codecs": router.rtp_capabilities["codecs"], "headerExtensions": router.rtp_capabilities["headerExtensions"]}
    subs = []
    for _ in range(n):
        t = await router.create_webrtc_transport(listen_infos=listen)
        peer = await connect(t)
        await t.consume(producer_id=producer.id, rtp_capabilities=caps)
        subs.append(peer)
    payload_key = b"\x10\x00\x9d\x01\x2a" + bytes(1150)
    payload = b"\x10\x01" + bytes(1150)
    seq = 0
    pub.send_rtp(build_rtp(96, seq, 0, 1111, payload_key, marker=True, extensions=[(4, b"0"), (3, b"\x00\x00")]))
    await asyncio.sleep(0.3)
    for s in subs:
        s.rtp_count = 0
    before = await worker.get_resource_usage()
    start = time.monotonic()
    sent = 0
    interval = 1.0 / pps
    profile = None
    if PROFILE:
        profile = asyncio.ensure_future(worker._channel.request("worker.debugProfile", None, {"seconds": seconds * 0.8}))
    while time.monotonic() - start < seconds:
        seq += 1
        pub.send_rtp(build_rtp(96, seq & 0xFFFF, seq * 3000, 1111, payload, marker=True, extensions=[(4, b"0"), (3, seq.to_bytes(2, "big"))]))
        sent += 1
        target = start + sent * interval
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.sleep(0.5)
    if profile is not None:
        print(await profile)
    after = await worker.get_resource_usage()
    received = sum(s.rtp_count for s in subs)
    cpu_ms = (after["ru_utime"] + after["ru_stime"]) - (before["ru_utime"] + before["ru_stime"])
    router.close()
    for s in subs + [pub]:
        s.close()
    return {"n": n, "sent": sent, "forwarded": received, "loss": 1 - received / max(1, sent * n), "cpu_us_per_pkt": cpu_ms * 1000 / max(1, received)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[20])
    ap.add_argument("--pps", type=int, default=200, help="publisher packets per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the worker (slows it)")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile
    worker = await create_worker()
    print(f"worker pid {worker.pid}", flush=True)
    try:
        for n in args.subscribers:
            rows = [await run_once(worker, n, args.pps, args.seconds) for _ in range(args.runs)]
            cpu = sorted(r["cpu_us_per_pkt"] for r in rows)
            loss = [r["loss"] for r in rows]
            print(f"N={n:4d} out={rows[0]['sent'] * n / args.seconds:8.0f} pkt/s  cpu µs/pkt min/median/max "
                  f"{cpu[0]:.1f}/{statistics.median(cpu):.1f}/{cpu[-1]:.1f}  loss max {max(loss):.4f}")
    finally:
        worker.close()
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
