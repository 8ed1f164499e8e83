"""CPU per forwarded packet of one WorkerActor: 1 video publisher → N WebRTC subscribers.

Like ``quick_fanout.py`` (same publisher, same figure: the WorkerActor's own CPU time from
getrusage divided by the RTP packets the subscribers received), but the subscribers only do
ICE + DTLS in the driver: once connected, their sockets are handed to a sink subprocess that
counts datagrams with epoll + ``recv_into`` and never decrypts, so N can reach several hundred
without the driver saturating. Loss = 1 - received / (sent × N), counted at the sink.

    .venv/bin/python benchmarks/hotpath_bench.py --subscribers 10 40 200 --pps 200 --seconds 4 --runs 3
    .venv/bin/python benchmarks/hotpath_bench.py --subscribers 200 --pps 200 --profile   # cProfile split

``--idle`` also reports the worker's CPU with the N subscribers connected and no media (the
fixed per-transport cost: timers, RTCP).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import select
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick_fanout import CODECS, PARAMS  # noqa: E402 - the same publisher as the quick benchmark


# ---------------------------------------------------------------------------------------- sink
def sink_main(fds: list[int]) -> None:
    """Count RTP datagrams (not RTCP) on inherited sockets; answer "count" lines on stdin."""
    socks = [socket.socket(fileno=fd) for fd in fds]
    for s in socks:
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
    by_fd = {s.fileno(): s for s in socks}
    ep = select.epoll()
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    ep.register(sys.stdin.fileno(), select.EPOLLIN)
    buf = bytearray(4096)
    count = 0
    stdin_fd = sys.stdin.fileno()
    while True:
        for fd, _ev in ep.poll(0.1):
            if fd == stdin_fd:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    return
                sys.stdout.write(f"{count}\n")
                sys.stdout.flush()
                continue
            s = by_fd[fd]
            for _ in range(16):  # level-triggered: what is left comes back on the next poll
                try:
                    n = s.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                if n >= 12 and not 192 <= buf[1] <= 223:  # RFC 5761: RTCP PTs 200-204 with M bit
                    count += 1


class Sink:
    def __init__(self, fds: list[int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", *map(str, fds)], pass_fds=fds,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def count(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


# -------------------------------------------------------------------------------------- driver
async def connect(transport, peer_cls):
    peer = peer_cls(keep=False)
    await peer.open()
    await transport.connect(dtls_parameters=peer.dtls_parameters)
    await peer.connect(transport.ice_parameters, transport.ice_candidates, transport.dtls_parameters)
    return peer


async def add_subscriber(router, producer, caps, listen, peer_cls):
    t = await router.create_webrtc_transport(listen_infos=listen)
    peer = await connect(t, peer_cls)
    await t.consume(producer_id=producer.id, rtp_capabilities=caps)
    return peer


def cpu_ms(ru: dict) -> float:
    return ru["ru_utime"] + ru["ru_stime"]


async def run_once(worker, n: int, pps: int, seconds: float, profile: bool, idle: bool) -> dict:
    from raysfu.actors.client_peer import ClientPeer
    from raysfu.transport.rtp import build_rtp

    router = await worker.create_router(media_codecs=CODECS)
    listen = [{"protocol": "udp", "ip": "127.0.0.1"}]
    t_pub = await router.create_webrtc_transport(listen_infos=listen)
    pub = await connect(t_pub, ClientPeer)
    producer = await t_pub.produce(kind="video", rtp_parameters=copy.deepcopy(PARAMS))
    caps = {"codecs": router.rtp_capabilities["codecs"], "headerExtensions": router.rtp_capabilities["headerExtensions"]}
    subs = []
    for i in range(0, n, 16):
        subs += await asyncio.gather(*(add_subscriber(router, producer, caps, listen, ClientPeer) for _ in range(min(16, n - i))))
    fds = []
    for s in subs:
        s.udp.pause_reading()
        fds.append(s.udp.get_extra_info("socket").fileno())
    sink = Sink(fds)
    try:
        idle_us = None
        if idle:
            await asyncio.sleep(1.0)
            b = await worker.get_resource_usage()
            await asyncio.sleep(3.0)
            a = await worker.get_resource_usage()
            idle_us = (cpu_ms(a) - cpu_ms(b)) * 1000 / 3.0 / max(1, n)  # µs of CPU per s per subscriber
        payload_key = b"\x10\x00\x9d\x01\x2a" + bytes(1150)
        payload = b"\x10\x01" + bytes(1150)
        seq = 0
        pub.send_rtp(build_rtp(96, seq, 0, 1111, payload_key, marker=True, extensions=[(4, b"0"), (3, b"\x00\x00")]))
        await asyncio.sleep(0.3)
        before_count = sink.count()
        await worker.get_load()  # starts a new load window
        before = await worker.get_resource_usage()
        start = time.monotonic()
        sent = 0
        interval = 1.0 / pps
        prof = None
        if profile:
            prof = asyncio.ensure_future(worker._channel.request("worker.debugProfile", None, {"seconds": seconds * 0.8, "top": 45}))
        while time.monotonic() - start < seconds:
            seq += 1
            pub.send_rtp(build_rtp(96, seq & 0xFFFF, seq * 3000, 1111, payload, marker=True, extensions=[(4, b"0"), (3, (seq & 0xFFFF).to_bytes(2, "big"))]))
            sent += 1
            delay = start + sent * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.5)
        if prof is not None:
            print(await prof)
        after = await worker.get_resource_usage()
        load = await worker.get_load()
        received = sink.count() - before_count
        worker_out = load["packetsOutPerSecond"] * load.get("windowS", time.monotonic() - start)  # ≈ RTP the worker sent
        if received < sent * n * 0.999:  # where did packets go? (the worker's drop counters)
            pd, td = await producer.dump(), await t_pub.dump()
            print(f"  drops: producer {pd.get('droppedPackets')} publisher transport {td.get('droppedPackets')} "
                  f"load {load}", flush=True)
    finally:
        sink.close()
    router.close()
    for s in subs + [pub]:
        s.close()
    await asyncio.sleep(0.2)
    used_ms = cpu_ms(after) - cpu_ms(before)
    return {"n": n, "sent": sent, "forwarded": received, "loss": 1 - received / max(1, sent * n),
            "worker_loss": max(0.0, 1 - worker_out / max(1, sent * n)),
            "cpu_us_per_pkt": used_ms * 1000 / max(1, received), "cpu_share": used_ms / 1000 / (seconds + 0.5),
            "idle_us_per_sub_s": idle_us}


# ------------------------------------------------------------------------------- in-process
async def inproc(n: int, packets: int, rounds: int, no_send: bool, profile: bool) -> None:
    """The forwarding path alone, in this process, without Ray or the event loop's wake-ups:
    one producer on a socket-less transport fed decrypted packets, N WebRtcTransports with real
    sockets (SRTP keyed by hand, remote = a bound socket that is never read). Prints this
    thread's CPU µs per forwarded packet (``--no-send``: everything but the ``sendto``)."""
    import resource

    from raysfu.actors.router import Router
    from raysfu.actors.webrtc_transport import Transport
    from raysfu.actors.worker import WorkerCore
    from raysfu.transport.rtp import build_rtp
    from raysfu.transport.srtp import SrtpSession

    class Ingress(Transport):
        def send_rtp(self, buf, twcc_off):
            pass

        def send_rtcp(self, packet):
            pass

    worker = WorkerCore({})
    router = Router(worker, "r", copy.deepcopy(CODECS), None)
    pub = Ingress(router, "pub", None)
    producer = pub.produce({"kind": "video", "rtpParameters": copy.deepcopy(PARAMS)}, 0)
    caps = {"codecs": router.rtp_capabilities["codecs"], "headerExtensions": router.rtp_capabilities["headerExtensions"]}
    key = bytes(range(44))
    sinks, transports = [], []
    for _ in range(n):
        t = (await router.create_webrtc_transport({"listenInfos": [{"protocol": "udp", "ip": "127.0.0.1"}]}))["id"]
        t = router.transports[t]
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
        sink.setblocking(False)
        sinks.append(sink)
        t.core.srtp = SrtpSession("AEAD_AES_256_GCM", key, key)
        t.core.ice._selected = sink.getsockname()
        t._update_route()
        if no_send:
            t._tx_sendto = lambda data, addr: None
            if t._tx is not None:
                t._tx = (*t._tx[:3], t._tx_sendto, t._tx[4])
        t.consume({"producerId": producer["id"], "rtpCapabilities": caps}, 0)
        transports.append(t)
    payload = b"\x10\x01" + bytes(1150)
    pkts = [build_rtp(96, i & 0xFFFF, i * 3000, 1111, b"\x10\x00\x9d\x01\x2a" + bytes(1148) if i == 0 else payload,
                      marker=True, extensions=[(4, b"0"), (3, (i & 0xFFFF).to_bytes(2, "big"))]) for i in range(packets * rounds + 1)]
    receive = pub.receive_rtp
    receive(pkts[0], 0)
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
    results = []
    for r in range(rounds):
        batch = pkts[1 + r * packets: 1 + (r + 1) * packets]
        now = 1000 * (r + 1)
        if prof is not None:
            prof.enable()
        ru0 = resource.getrusage(resource.RUSAGE_THREAD)
        for i, pkt in enumerate(batch):
            receive(pkt, now + (i >> 4))
        ru1 = resource.getrusage(resource.RUSAGE_THREAD)
        if prof is not None:
            prof.disable()
        sent = packets * n
        results.append(((ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e6 / sent,
                        (ru1.ru_utime - ru0.ru_utime) * 1e6 / sent))
        for s in sinks:  # drain so the next round's sends are not dropped at a full queue
            try:
                while s.recv(4096):
                    pass
            except BlockingIOError:
                pass
    forwarded = sum(t.rtp_packets_sent for t in transports)
    cpu = sorted(r[0] for r in results)
    print(f"in-process N={n} {'no-send ' if no_send else ''}cpu µs/forwarded pkt min/median/max "
          f"{cpu[0]:.2f}/{statistics.median(cpu):.2f}/{cpu[-1]:.2f}  (user median {statistics.median(r[1] for r in results):.2f})  "
          f"forwarded {forwarded}/{n * packets * rounds}  drops {dict(sum((t.drops for t in transports), type(pub.drops)()))}")
    if prof is not None:
        import io
        import pstats
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    router.close()
    for s in sinks:
        s.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[40])
    ap.add_argument("--pps", type=int, default=200, help="publisher packets per second")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the worker (slows it ~2x)")
    ap.add_argument("--idle", action="store_true", help="also measure the worker's CPU with no media")
    ap.add_argument("--inproc", action="store_true", help="the forwarding path alone, in this process (no Ray)")
    ap.add_argument("--no-send", action="store_true", help="with --inproc: skip the sendto")
    ap.add_argument("--packets", type=int, default=500, help="with --inproc: ingress packets per round")
    args = ap.parse_args()
    if args.inproc:
        for n in args.subscribers:
            await inproc(n, args.packets, args.runs, args.no_send, args.profile)
        return
    from raysfu.actors import create_worker

    worker = await create_worker()
    info = await worker._channel.request("worker.dump", None, {})
    print(f"worker pid {worker.pid}  code {os.path.dirname(sys.modules['raysfu'].__file__)}  timerErrors {info.get('timerErrors')}", flush=True)
    try:
        for n in args.subscribers:
            rows = [await run_once(worker, n, args.pps, args.seconds, args.profile, args.idle) for _ in range(args.runs)]
            cpu = sorted(r["cpu_us_per_pkt"] for r in rows)
            loss = [r["loss"] for r in rows]
            share = statistics.median(r["cpu_share"] for r in rows)
            extra = ""
            if args.idle:
                extra = f"  idle µs/s per subscriber {statistics.median(r['idle_us_per_sub_s'] for r in rows):.0f}"
            print(f"N={n:4d} out={rows[0]['sent'] * n / args.seconds:8.0f} pkt/s  cpu µs/pkt min/median/max "
                  f"{cpu[0]:.1f}/{statistics.median(cpu):.1f}/{cpu[-1]:.1f}  worker cpu {share:.0%}  "
                  f"loss max {max(loss):.4f} (not sent by the worker ≈ {max(r['worker_loss'] for r in rows):.4f}){extra}", flush=True)
    finally:
        worker.close()
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        sink_main([int(x) for x in sys.argv[2:]])
    else:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            uvloop = None
        if uvloop is not None and "--inproc" in sys.argv:
            uvloop.install()  # the WorkerActor's loop
        asyncio.run(main())
