"""A peer SFU side by side: Janus 1.1.2 (Debian) fanning out one stream to N WebRTC viewers
(issue 3, item 3b), measured as the bare relay and raysfu are: CPU per forwarded packet.

Set-up (all bounded in time, every process stopped by PID, the namespace deleted at the end):

- a private network namespace with ``lo`` and a veth pair whose two ends both stay inside
  (Janus never gathers ICE candidates on a loopback interface; janus.md §3), the ICE address
  being the veth end ``10.99.0.1``;
- inside it, an inner copy of this script (``--inner``) starts Janus with only the HTTP
  transport and the Streaming plugin (config templates in ``benchmarks/janus/`` filled into a
  temporary directory), one RTP mountpoint fed with plain RTP by our own source (the bare
  relay's source: video ``video_bytes`` at ``video_pps`` and audio ``audio_bytes`` at
  ``audio_pps``, send time stamped in the payload), and light WebRTC viewers;
- a viewer does HTTP signaling with aiohttp (create, attach, watch, answer with start), answers
  Janus's ICE checks (Janus offers, full ICE, controlling; we are controlled) with
  ``raysfu.transport.stun``, runs DTLS as client with ``raysfu.transport.dtls.DtlsSession`` and
  then counts SRTP packets by their clear headers (per viewer and medium: count, sequence gaps),
  decrypting 1 in 32 (and each stream's first) for latency against the kernel receive stamp.
  Many viewers share one process (one poll loop over their sockets, non-blocking
  ``recvmmsg``), several processes share the viewers.

Janus's CPU is utime + stime from ``/proc/<pid>/stat`` over the window (after every viewer is
connected and ``warmup_s`` passed), divided by the RTP packets the viewers got in it.

    .venv/bin/python benchmarks/janus_peer.py --subscribers 10 100 --seconds 10 --runs 3

Needs root (``ip netns``) and ``apt-get install janus``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.bare_relay import (
    _CMSG_TIMESPEC,
    _PAYLOAD_STAMP,
    LATENCY_SAMPLE_MASK,
    MSG_DONTWAIT,
    SLOT_BYTES,
    SO_TIMESTAMPNS,
    STAMP_OFFSET,
    _cpu_s,
    _mmsg,
    _percentile,
    _source_main,
    print_summary,
)

__all__ = ["main", "run_janus"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "janus"
ICE_IP = "10.99.0.1"
HTTP_PORT = 8088
MOUNTPOINT_ID = 1
AUDIO_PORT, VIDEO_PORT = 5002, 5004
VIDEO_PT, AUDIO_PT = 100, 111
VIEWER_BATCH = 64
VIEWER_POLL_S = 0.002
SETUP_CONCURRENCY = 8  # viewer set-ups in flight per viewer process
_SEQ_SSRC = struct.Struct(">HI")  # at offset 2 (sequence number) .. 8 (SSRC)
_U16 = struct.Struct(">H")


# ---------------------------------------------------------------------------------- viewers


def _parse_offer(sdp: str) -> dict:
    """What a viewer needs from Janus's offer: {"ice_ufrag", "ice_pwd", "fingerprint":
    (algorithm, value), "media": [(kind, mid, pt, rtpmap)]} (first payload type per m-line)."""
    out: dict[str, Any] = {"media": []}
    cur: dict[str, Any] | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind, _port, _proto, *fmts = line[2:].split()
            cur = {"kind": kind, "pt": int(fmts[0]), "mid": None, "rtpmap": None}
            out["media"].append(cur)
        elif line.startswith("a=ice-ufrag:"):
            out.setdefault("ice_ufrag", line.split(":", 1)[1].strip())
        elif line.startswith("a=ice-pwd:"):
            out.setdefault("ice_pwd", line.split(":", 1)[1].strip())
        elif line.startswith("a=fingerprint:"):
            alg, value = line.split(":", 1)[1].split()
            out.setdefault("fingerprint", (alg.lower(), value))
        elif cur is not None and line.startswith("a=mid:"):
            cur["mid"] = line.split(":", 1)[1].strip()
        elif cur is not None and line.startswith(f"a=rtpmap:{cur['pt']} "):
            cur["rtpmap"] = line.split(" ", 1)[1].strip()
    if "fingerprint" not in out or not out["media"]:
        raise ValueError("janus offer: no fingerprint or no m-line")
    return out


def _answer_sdp(offer: dict, ufrag: str, pwd: str, fingerprint: dict, port: int) -> str:
    mids = " ".join(m["mid"] for m in offer["media"])
    lines = ["v=0", f"o=- {secrets.randbits(62)} 2 IN IP4 {ICE_IP}", "s=-", "t=0 0",
             f"a=group:BUNDLE {mids}", "a=msid-semantic: WMS"]
    for m in offer["media"]:
        lines += [f"m={m['kind']} {port} UDP/TLS/RTP/SAVPF {m['pt']}", f"c=IN IP4 {ICE_IP}",
                  f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}",
                  f"a=fingerprint:{fingerprint['algorithm']} {fingerprint['value']}",
                  "a=setup:active", f"a=mid:{m['mid']}", "a=recvonly", "a=rtcp-mux",
                  f"a=rtpmap:{m['pt']} {m['rtpmap']}",
                  f"a=candidate:1 1 udp 2130706431 {ICE_IP} {port} typ host",
                  "a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"


class _Viewer:
    """One WebRTC viewer: a UDP socket, STUN answers, a DTLS client, clear-header counters."""

    def __init__(self, cert, suite: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ICE_IP, 0))
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.port = self.sock.getsockname()[1]
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(16)
        self.cert = cert
        self.suite = suite
        self.dtls = None
        self.remote: tuple[str, int] | None = None
        self.connected = False
        self.failed: str | None = None
        self.srtp_in = None
        self.pt_media: dict[int, int] = {}  # payload type -> 0 video, 1 audio
        self.received = [0, 0, 0]  # video, audio, other RTP
        self.gaps = [0, 0, 0]
        self.backwards = [0, 0, 0]
        self.expect = [-1, -1, -1]
        self.rtcp = 0

    def on_datagram(self, data: memoryview, addr: tuple[str, int], now_ms: int) -> None:
        """Everything that is not RTP: STUN (answer it) and DTLS (feed the session)."""
        from raysfu.transport.stun import (
            Class,
            Method,
            build_binding_success,
            parse_stun,
        )

        b0 = data[0]
        if b0 < 4:
            try:
                msg = parse_stun(bytes(data))
            except ValueError:
                return
            if msg.message_method == Method.BINDING and msg.message_class == Class.REQUEST:
                self.sock.sendto(build_binding_success(msg, addr, self.pwd), addr)
                if self.remote is None and self.dtls is not None:
                    self.remote = addr
                    self.dtls.start(now_ms)
                    self.flush()
        elif 20 <= b0 < 64 and self.dtls is not None:
            self.dtls.receive(bytes(data), now_ms)
            self.flush()

    def flush(self) -> None:
        """Send what DTLS queued; on "connected" key the inbound SRTP session for samples."""
        from benchmarks.bare_relay import _srtp_session

        for d in self.dtls.datagrams_to_send():
            self.sock.sendto(d, self.remote)
        for kind, value in self.dtls.drain_events():
            if kind == "state" and value == "connected":
                self.connected = True
                _local, remote_key = self.dtls.srtp_keys()
                self.srtp_in = _srtp_session(remote_key, False, self.dtls.srtp_crypto_suite)
            elif kind == "state" and value == "failed":
                self.failed = f"dtls: {self.dtls.failure_reason}"


class _ViewerProcess:
    """Many viewers in one asyncio process; see ``_viewers_main``."""

    def __init__(self, n: int, suite: str) -> None:
        from raysfu.transport.dtls import DtlsCertificate

        self.ffi, self.C = _mmsg()
        self.suite = suite
        self.cert = DtlsCertificate.generate()
        self.viewers = [_Viewer(self.cert, suite) for _ in range(n)]
        ffi = self.ffi
        self.buf = ffi.new("char[]", VIEWER_BATCH * SLOT_BYTES)
        self.view = ffi.buffer(self.buf)
        self.mv = memoryview(self.view)
        self.cbuf = ffi.new("char[]", VIEWER_BATCH * 32)
        self.cview = ffi.buffer(self.cbuf)
        self.names = ffi.new("struct sockaddr_in[]", VIEWER_BATCH)
        self.iov = ffi.new("struct iovec[]", VIEWER_BATCH)
        self.msgs = ffi.new("struct mmsghdr[]", VIEWER_BATCH)
        for i in range(VIEWER_BATCH):
            self.iov[i].iov_base = self.buf + i * SLOT_BYTES
            self.iov[i].iov_len = SLOT_BYTES
            h = self.msgs[i].msg_hdr
            h.msg_iov = self.iov + i
            h.msg_iovlen = 1
            h.msg_control = self.cbuf + i * 32
            h.msg_controllen = 32
            h.msg_name = self.names + i
            h.msg_namelen = ffi.sizeof("struct sockaddr_in")
        self.latencies_us: list[int] = []
        self.auth_fail = 0
        self.decrypted = 0

    def poll(self) -> None:
        """Drain every viewer's socket once (non-blocking) and run due DTLS timers."""
        ffi, recvmmsg, msgs, view, cview = self.ffi, self.C.recvmmsg, self.msgs, self.view, self.cview
        mv = self.mv
        unpack, unpack_cmsg, unpack_stamp = _SEQ_SSRC.unpack_from, _CMSG_TIMESPEC.unpack_from, \
            _PAYLOAD_STAMP.unpack_from
        now_ms = int(time.monotonic() * 1000)
        for v in self.viewers:
            if v.dtls is not None and not v.connected and v.failed is None:
                t = v.dtls.next_timer_ms()
                if t is not None and now_ms >= t:
                    v.dtls.handle_timer(now_ms)
                    v.flush()
            while True:
                n = recvmmsg(v.fd, msgs, VIEWER_BATCH, MSG_DONTWAIT, ffi.NULL)
                if n <= 0:
                    break
                received, gaps, backwards, expect, pt_media = (v.received, v.gaps, v.backwards,
                                                               v.expect, v.pt_media)
                for i in range(n):
                    off = i * SLOT_BYTES
                    b0 = mv[off]
                    if 128 <= b0 < 192:
                        b1 = mv[off + 1]
                        if 192 <= b1 <= 223:  # RTCP (RFC 5761 §4)
                            v.rtcp += 1
                            continue
                        seq, _ssrc = unpack(view, off + 2)
                        m = pt_media.get(b1 & 0x7F, 2)
                        received[m] += 1
                        e = expect[m]
                        if e >= 0:
                            d = (seq - e) & 0xFFFF
                            if d == 0:
                                pass
                            elif d < 0x8000:
                                gaps[m] += d
                            else:
                                backwards[m] += 1
                                continue
                        expect[m] = (seq + 1) & 0xFFFF
                        if (seq & LATENCY_SAMPLE_MASK == 0 or e < 0) and v.srtp_in is not None:
                            self._sample(v, view[off:off + msgs[i].msg_len], unpack_cmsg(cview, i * 32),
                                         unpack_stamp)
                    else:
                        name = self.names[i]
                        addr = (socket.inet_ntoa(struct.pack("=I", name.sin_addr)),
                                socket.ntohs(name.sin_port))
                        v.on_datagram(mv[off:off + msgs[i].msg_len], addr, now_ms)
                if n < VIEWER_BATCH:
                    break

    def _sample(self, v: _Viewer, data: bytes, cmsg: tuple, unpack_stamp) -> None:
        import pylibsrtp

        try:
            clear = v.srtp_in.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.auth_fail += 1
            return
        self.decrypted += 1
        hlen = 12 + 4 * (clear[0] & 0x0F)
        if clear[0] & 0x10:
            hlen += 4 + 4 * _U16.unpack_from(clear, hlen + 2)[0]
        if len(clear) < hlen + STAMP_OFFSET - 12 + _PAYLOAD_STAMP.size:
            return
        _index, send_ns = unpack_stamp(clear, hlen + STAMP_OFFSET - 12)
        level, kind, sec, nsec = cmsg
        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
            self.latencies_us.append((sec * 1_000_000_000 + nsec - send_ns) // 1000)

    def counters(self) -> dict:
        vs = self.viewers
        return {"received": [sum(v.received[m] for v in vs) for m in range(3)],
                "gaps": [sum(v.gaps[m] for v in vs) for m in range(3)],
                "backwards": [sum(v.backwards[m] for v in vs) for m in range(3)],
                "connected": sum(v.connected for v in vs), "cpu_s": _cpu_s(),
                "monotonic": time.monotonic(), "auth_fail": self.auth_fail,
                "decrypted": self.decrypted,
                "suites": sorted({v.dtls.srtp_crypto_suite for v in vs if v.connected})}

    async def setup_one(self, http, base: str, v: _Viewer, sem: asyncio.Semaphore) -> None:
        async with sem:
            async def call(url, body):
                body = dict(body, transaction=secrets.token_hex(6))
                async with http.post(url, json=body) as r:
                    reply = await r.json(content_type=None)
                if reply.get("janus") == "error":
                    raise RuntimeError(f"janus: {reply.get('error')}")
                return reply

            from raysfu.transport.dtls import DtlsSession

            sid = (await call(base, {"janus": "create"}))["data"]["id"]
            surl = f"{base}/{sid}"
            hid = (await call(surl, {"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]
            hurl = f"{surl}/{hid}"
            await call(hurl, {"janus": "message", "body": {"request": "watch", "id": MOUNTPOINT_ID}})
            offer = None
            deadline = time.monotonic() + 30
            while offer is None and time.monotonic() < deadline:
                async with http.get(f"{surl}?maxev=10&rid={secrets.token_hex(4)}") as r:
                    events = await r.json(content_type=None)
                for ev in events if isinstance(events, list) else [events]:
                    jsep = ev.get("jsep") or {}
                    if jsep.get("type") == "offer":
                        offer = jsep["sdp"]
            if offer is None:
                raise RuntimeError("janus: no offer within 30 s")
            parsed = _parse_offer(offer)
            for m in parsed["media"]:
                v.pt_media[m["pt"]] = 0 if m["kind"] == "video" else 1
            alg, value = parsed["fingerprint"]
            v.dtls = DtlsSession(self.cert, role="client",
                                 remote_fingerprints=[{"algorithm": alg, "value": value}],
                                 srtp_crypto_suites=[self.suite])
            fp = next(f for f in self.cert.fingerprints if f["algorithm"] == "sha-256")
            answer = _answer_sdp(parsed, v.ufrag, v.pwd, fp, v.port)
            await call(hurl, {"janus": "message", "body": {"request": "start"},
                              "jsep": {"type": "answer", "sdp": answer}})
            deadline = time.monotonic() + 20
            while not v.connected and v.failed is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if not v.connected:
                raise RuntimeError(v.failed or "ice/dtls: not connected within 20 s")


async def _viewers_async(conn, n: int, suite: str) -> None:
    import aiohttp

    proc = _ViewerProcess(n, suite)
    stop = asyncio.Event()

    async def poller():
        while not stop.is_set():
            proc.poll()
            await asyncio.sleep(VIEWER_POLL_S)

    poll_task = asyncio.create_task(poller())
    base = f"http://127.0.0.1:{HTTP_PORT}/janus"
    timeout = aiohttp.ClientTimeout(total=60)
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as http:
        sem = asyncio.Semaphore(SETUP_CONCURRENCY)
        t0 = time.monotonic()
        results = await asyncio.gather(*(proc.setup_one(http, base, v, sem) for v in proc.viewers),
                                       return_exceptions=True)
        errors = sorted({repr(r) for r in results if isinstance(r, BaseException)})
        conn.send(("connected", proc.counters()["connected"], errors[:5], time.monotonic() - t0))
        while True:
            while not conn.poll():
                await asyncio.sleep(0.02)
            cmd = conn.recv()
            if cmd == "mark":
                proc.latencies_us.clear()
                conn.send(proc.counters())
            elif cmd == "snap":
                c = proc.counters()
                c["latencies_us"] = list(proc.latencies_us)
                conn.send(c)
            else:  # "stop"
                break
    stop.set()
    await poll_task
    for v in proc.viewers:
        v.sock.close()
    conn.send(("stopped",))


def _viewers_main(conn, n: int, suite: str) -> None:
    """Viewer process: ``n`` viewers; replies ("connected", count, errors, setup_s), then
    answers "mark" / "snap" with counters (and latencies) until "stop"."""
    asyncio.run(_viewers_async(conn, n, suite))


# ---------------------------------------------------------------------------------- inner


def _janus_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def _inner(cfg: dict) -> dict:
    """Inside the namespace: Janus, source, viewers; returns the result dict (see run_janus)."""
    ctx = mp.get_context("spawn")
    run_dir = Path(cfg["run_dir"])
    hz = os.sysconf("SC_CLK_TCK")
    procs: list = []
    janus = None
    try:
        janus = subprocess.Popen(
            ["janus", "-F", cfg["conf_dir"], "-C", f"{cfg['conf_dir']}/janus.jcfg", "-N", "-o",
             "-L", str(run_dir / "janus.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (run_dir / "janus.pid").write_text(str(janus.pid))
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/janus/info", timeout=2) as r:
                    info = json.load(r)
                break
            except OSError:
                if time.monotonic() > deadline or janus.poll() is not None:
                    raise RuntimeError(f"janus did not start; see {run_dir / 'janus.log'}")
                time.sleep(0.2)

        def spawn(target, *args):
            here, there = ctx.Pipe()
            p = ctx.Process(target=target, args=(there,) + args, daemon=True)
            p.start()
            procs.append(p)
            return here

        def recv(c, timeout, what):
            if not c.poll(timeout):
                raise RuntimeError(f"janus bench: {what} did not answer in {timeout:.0f} s")
            return c.recv()

        source = spawn(_source_main, None, None, cfg["video_pps"], cfg["audio_pps"],
                       cfg["video_bytes"], cfg["audio_bytes"], (VIDEO_PT, AUDIO_PT),
                       cfg["video_fps"])
        recv(source, 60, "source")
        now = time.monotonic_ns()
        source.send((now + int(0.1e9), now + int(cfg["budget_s"] * 1e9),  # "stop" ends it sooner
                     [("127.0.0.1", VIDEO_PORT), ("127.0.0.1", AUDIO_PORT)]))
        # Janus with the feed and no viewer: its ingest cost, for reference.
        time.sleep(1.0)
        j0, t0 = _janus_ticks(janus.pid), time.monotonic()
        time.sleep(2.0)
        idle_cpu_pct = 100.0 * (_janus_ticks(janus.pid) - j0) / hz / (time.monotonic() - t0)

        n = cfg["n"]
        n_procs = max(1, math.ceil(n / cfg["viewers_per_process"]))
        shares = [n // n_procs + (1 if k < n % n_procs else 0) for k in range(n_procs)]
        viewers = [spawn(_viewers_main, share, cfg["srtp_profile"]) for share in shares]
        connected, errors, setup_s = 0, [], 0.0
        for c in viewers:
            _tag, count, errs, secs = recv(c, 120 + 2 * n, "viewer process set-up")
            connected += count
            errors += errs
            setup_s = max(setup_s, secs)
        time.sleep(cfg["warmup_s"])
        source.send("count")
        s_a = recv(source, 10, "source")
        for c in viewers:
            c.send("mark")
        a = [recv(c, 20, "viewer process") for c in viewers]
        ja, ta = _janus_ticks(janus.pid), time.monotonic()
        time.sleep(cfg["seconds"])
        for c in viewers:
            c.send("snap")
        b = [recv(c, 20, "viewer process") for c in viewers]
        jb, tb = _janus_ticks(janus.pid), time.monotonic()
        source.send("count")
        s_b = recv(source, 10, "source")
        for c in viewers:
            c.send("stop")
        for c in viewers:
            recv(c, 20, "viewer process stop")
        source.send("stop")
        recv(source, 10, "source stop")
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=3)
        if janus is not None and janus.poll() is None:
            janus.send_signal(signal.SIGTERM)
            try:
                janus.wait(timeout=15)
            except subprocess.TimeoutExpired:
                janus.kill()
                janus.wait(timeout=5)

    wall = tb - ta
    janus_cpu_s = (jb - ja) / hz
    d_recv = [sum(y["received"][m] - x["received"][m] for x, y in zip(a, b)) for m in range(3)]
    d_gaps = sum(sum(y["gaps"][m] - x["gaps"][m] for x, y in zip(a, b)) for m in range(3))
    d_back = sum(sum(y["backwards"][m] - x["backwards"][m] for x, y in zip(a, b)) for m in range(3))
    pkts = sum(d_recv)
    d_sent = (s_b[0] - s_a[0]) + (s_b[1] - s_a[1])
    lat = [v for y in b for v in y["latencies_us"]]
    viewer_cpu = [100.0 * (y["cpu_s"] - x["cpu_s"]) / (y["monotonic"] - x["monotonic"])
                  for x, y in zip(a, b)]
    p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
    idle_ticks = idle_cpu_pct / 100.0 * hz * wall
    return {
        "n_subscribers": n,
        "viewers_connected": connected,
        "viewer_errors": errors[:5],
        "setup_s": round(setup_s, 2),
        "seconds": round(wall, 3),
        "cpu_us_per_pkt": janus_cpu_s * 1e6 / pkts if pkts else None,
        "cpu_us_per_pkt_net_of_ingest": ((jb - ja - idle_ticks) / hz * 1e6 / pkts) if pkts else None,
        "out_per_cpu_s": pkts / janus_cpu_s if janus_cpu_s > 0 else None,
        "out_pps": pkts / wall if wall > 0 else 0.0,
        "in_pps": d_sent / wall if wall > 0 else 0.0,
        "janus_cpu_pct": 100.0 * janus_cpu_s / wall if wall > 0 else 0.0,
        "janus_ingest_only_cpu_pct": round(idle_cpu_pct, 2),
        "loss": d_gaps / (pkts + d_gaps) if pkts + d_gaps else None,
        "delivered_ratio": pkts / (d_sent * connected) if d_sent and connected else None,
        "lat_p50_ms": p50 / 1000 if p50 is not None else None,
        "lat_p99_ms": p99 / 1000 if p99 is not None else None,
        "latency_samples": len(lat),
        "received_video": d_recv[0], "received_audio": d_recv[1], "received_other": d_recv[2],
        "gaps": d_gaps, "backwards": d_back,
        "auth_fail": sum(y["auth_fail"] for y in b),
        "viewer_processes": n_procs,
        "viewer_cpu_pct_max": round(max(viewer_cpu), 1) if viewer_cpu else None,
        "viewers_saturated": bool(viewer_cpu) and max(viewer_cpu) > 85.0,
        "srtp_suites": sorted({s for y in b for s in y["suites"]}),
        "janus_version": info.get("version_string"),
    }


# ---------------------------------------------------------------------------------- outer


def _write_configs(conf_dir: Path, debug_level: int) -> None:
    lib = next((p for p in (Path("/usr/lib/x86_64-linux-gnu/janus"), Path("/usr/lib/aarch64-linux-gnu/janus"),
                            Path("/usr/lib/janus"), Path("/usr/local/lib/janus"))
                if (p / "plugins").is_dir()), None)
    if lib is None:
        raise RuntimeError("janus plugins folder not found (apt-get install janus)")

    def others(folder: str, keep: str) -> str:
        return ",".join(sorted(p.name for p in (lib / folder).glob("*.so") if p.name != keep))

    values = {
        "configs_folder": str(conf_dir), "lib_folder": str(lib), "debug_level": debug_level,
        "ice_ip": ICE_IP, "webrtc_port_range": "40000-49999", "plugin_port_range": "30000-30999",
        "disabled_plugins": others("plugins", "libjanus_streaming.so"),
        "disabled_transports": others("transports", "libjanus_http.so"),
        "disabled_loggers": others("loggers", ""),
        "http_port": HTTP_PORT, "mountpoint_id": MOUNTPOINT_ID, "audio_port": AUDIO_PORT,
        "video_port": VIDEO_PORT, "audio_pt": AUDIO_PT, "video_pt": VIDEO_PT,
    }
    for name in ("janus.jcfg", "janus.transport.http.jcfg", "janus.plugin.streaming.jcfg"):
        text = string.Template((TEMPLATE_DIR / name).read_text()).substitute(values)
        (conf_dir / name).write_text(text)


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def run_janus(n_subscribers: int, seconds: float, video_pps: int = 104, audio_pps: int = 50,
              video_bytes: int = 1200, audio_bytes: int = 100, *, warmup_s: float = 2.0,
              viewers_per_process: int = 50, srtp_profile: str = "AES_CM_128_HMAC_SHA1_80",
              debug_level: int = 3, keep_dir: bool = False,
              video_fps: float | None = None) -> dict:
    """Janus 1.1.2's Streaming plugin fanning one feed out to ``n_subscribers`` WebRTC viewers.

    Packet shapes as :func:`benchmarks.bare_relay.run_bare_relay` (RTP bytes before SRTP).
    The viewers offer only ``srtp_profile`` in DTLS (so all SFUs compared protect alike).
    ``video_fps`` sends video in bursts of one frame's packets (default: evenly paced).
    ``keep_dir`` keeps the temporary config/log directory; ``debug_level`` is Janus's.

    Returns a dict with the bare relay's keys where they apply:
      cpu_us_per_pkt    Janus CPU (utime+stime, /proc/<pid>/stat, 10 ms ticks) over the window /
                        RTP packets the viewers got in it, µs
      cpu_us_per_pkt_net_of_ingest   the same after subtracting Janus's CPU with the feed and
                        no viewer (janus_ingest_only_cpu_pct)
      out_per_cpu_s, out_pps, in_pps, janus_cpu_pct
      loss              sequence gaps / (received + gaps), over the window, all viewers
      delivered_ratio   packets received / (packets the source sent x viewers connected)
      lat_p50_ms, lat_p99_ms   source send -> viewer kernel receive stamp, 1 in 32 packets
      viewers_connected, viewer_errors, setup_s, viewer_processes, viewer_cpu_pct_max,
      viewers_saturated (a viewer process used > 85 % of a core: the viewers, not Janus, may
      be the limit), srtp_suites, received_video / _audio / _other, gaps, backwards,
      auth_fail, janus_version, n_subscribers, seconds.
    Raises RuntimeError when janus is not installed ("apt-get install janus"), without root or
    iproute2, or when a step does not finish in time; ValueError for bad arguments.
    """
    if not isinstance(n_subscribers, int) or n_subscribers < 1:
        raise ValueError("n_subscribers: must be a positive int")
    if not seconds > 0:
        raise ValueError("seconds: must be > 0")
    if shutil.which("janus") is None:
        raise RuntimeError("janus is not installed: run `DEBIAN_FRONTEND=noninteractive "
                           "apt-get install -y janus` (Debian 12 ships Janus 1.1.2)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise RuntimeError("run_janus needs root and iproute2 (`ip netns`) for its namespace")
    ns = f"raysfu-janus-{os.getpid()}-{secrets.token_hex(2)}"
    work = Path(tempfile.mkdtemp(prefix="raysfu-janus-"))
    conf_dir, run_dir = work / "conf", work / "run"
    conf_dir.mkdir()
    run_dir.mkdir()
    _write_configs(conf_dir, debug_level)
    cfg = {"conf_dir": str(conf_dir), "run_dir": str(run_dir), "n": n_subscribers,
           "seconds": float(seconds), "warmup_s": float(warmup_s), "video_pps": video_pps,
           "audio_pps": audio_pps, "video_bytes": video_bytes, "audio_bytes": audio_bytes,
           "viewers_per_process": viewers_per_process, "srtp_profile": srtp_profile,
           "video_fps": video_fps}
    budget_s = 240 + seconds + warmup_s + 3 * n_subscribers
    cfg["budget_s"] = budget_s
    inner = None
    try:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "netns", "exec", ns, "sh", "-c",
            "ip link set lo up && ip link add jv0 type veth peer name jv1 && "
            f"ip addr add {ICE_IP}/24 dev jv0 && ip link set jv0 up && ip link set jv1 up")
        inner = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()),
             "--inner", json.dumps(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=str(_ROOT))
        try:
            out, err = inner.communicate(timeout=budget_s)
        except subprocess.TimeoutExpired:
            inner.kill()
            inner.communicate(timeout=10)
            raise RuntimeError("janus bench: timed out") from None
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if inner.returncode != 0 or not lines:
            raise RuntimeError(f"janus bench failed (rc {inner.returncode}): {err.strip()[-2000:]}")
        return json.loads(lines[-1])
    finally:
        if inner is not None and inner.poll() is None:
            inner.kill()
            inner.wait(timeout=10)
        pid_file = run_dir / "janus.pid"
        if pid_file.exists():  # the inner process stops Janus; make sure, by its PID
            try:
                pid = int(pid_file.read_text())
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"janus"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], check=False, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------- CLI

SUMMARY_KEYS = ("cpu_us_per_pkt", "cpu_us_per_pkt_net_of_ingest", "out_per_cpu_s", "out_pps",
                "janus_cpu_pct", "loss", "lat_p50_ms", "lat_p99_ms", "viewer_cpu_pct_max")


def main(argv: list[str] | None = None) -> int:
    """CLI: runs interleaved over the fan-outs; prints min/median/max per fan-out."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        print(json.dumps(_inner(json.loads(argv[1]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--viewers-per-process", type=int, default=50)
    ap.add_argument("--srtp-profile", default="AES_CM_128_HMAC_SHA1_80")
    ap.add_argument("--video-fps", type=float, default=None,
                    help="send video in frame bursts at this rate (default: evenly paced)")
    ap.add_argument("--json", help="write every run's dict to this file")
    args = ap.parse_args(argv)
    results: dict[int, list[dict]] = {n: [] for n in args.subscribers}
    for run in range(args.runs):
        for n in args.subscribers:
            r = run_janus(n, args.seconds, warmup_s=args.warmup,
                          viewers_per_process=args.viewers_per_process,
                          srtp_profile=args.srtp_profile, video_fps=args.video_fps)
            results[n].append(r)
            print(f"run {run + 1} N={n}: {r['viewers_connected']} connected, "
                  f"{r['cpu_us_per_pkt']:.2f} us/pkt, {r['out_pps']:,.0f} out pps, Janus "
                  f"{r['janus_cpu_pct']:.1f} % CPU, loss {100 * (r['loss'] or 0):.3f} %, "
                  f"p50/p99 {r['lat_p50_ms']} / {r['lat_p99_ms']} ms, viewer procs max "
                  f"{r['viewer_cpu_pct_max']} % CPU, suites {r['srtp_suites']}", flush=True)
    for n in args.subscribers:
        print_summary("janus", n, results[n], SUMMARY_KEYS)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(n): rs for n, rs in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
