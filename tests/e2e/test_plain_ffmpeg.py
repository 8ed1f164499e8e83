"""PlainTransport end to end with Debian's ffmpeg and headless Chromium (mediasoup-client).

- ingest: ffmpeg encodes lavfi sources (testsrc2 640x480 VP8, a sine in opus) and sends them over
  RTP (or SRTP) into two PlainTransports with ``comedia``; Chromium consumes both producers and
  must decode the video at 640x480 and receive the audio;
- recording: Chromium publishes its (fake) camera; a consumer on a PlainTransport sends it over
  RTP (or SRTP) to ffmpeg, which records it from an SDP file to WebM; ffprobe must decode at
  least 5 s of video from the file.

The page is our own small harness (mediasoup-client bundled with esbuild from demo/node_modules),
independent of the demo room; signaling is Playwright calls plus two exposed functions. Every
ffmpeg process is bounded (``-t``) and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from raysfu.actors import create_worker
from raysfu.transport.srtp import generate_srtp_parameters

pytestmark = pytest.mark.timeout(180)

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
ESBUILD = DEMO_DIR / "node_modules" / ".bin" / "esbuild"
LOCAL = {"protocol": "udp", "ip": "127.0.0.1"}
SUITE = "AES_CM_128_HMAC_SHA1_80"  # what ffmpeg's SRTP supports best
MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]
VIDEO_SSRC, AUDIO_SSRC = 22222222, 11111111
VIDEO_PT, AUDIO_PT = 101, 100

# The page side: mediasoup-client plus a few helpers the test drives with page.evaluate().
HARNESS_JS = r"""
import * as mediasoupClient from 'mediasoup-client';

const consumers = [];
window.harness = {
  async load(routerRtpCapabilities) {
    this.device = new mediasoupClient.Device();
    await this.device.load({ routerRtpCapabilities });
    return this.device.recvRtpCapabilities;
  },
  _wire(transport) {
    transport.on('connect', ({ dtlsParameters }, cb, eb) =>
      window.pyConnect(transport.id, dtlsParameters).then(() => cb(), eb));
    return transport;
  },
  createRecvTransport(options) { this.recv = this._wire(this.device.createRecvTransport(options)); },
  async consume(params) {
    const consumer = await this.recv.consume(params);
    consumers.push(consumer);
    const el = document.createElement(consumer.kind);
    el.muted = true;
    el.autoplay = true;
    el.srcObject = new MediaStream([consumer.track]);
    document.body.append(el);
    el.play().catch(() => {});
    return consumer.id;
  },
  async inbound() {
    const out = {};
    for (const c of consumers) {
      let s = {};
      for (const r of (await c.getStats()).values()) if (r.type === 'inbound-rtp') s = r;
      out[c.kind] = { framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0,
                      frameHeight: s.frameHeight || 0, packetsReceived: s.packetsReceived || 0 };
    }
    return out;
  },
  async sendCamera(options) {
    const t = this._wire(this.device.createSendTransport(options));
    t.on('produce', ({ kind, rtpParameters }, cb, eb) =>
      window.pyProduce(kind, rtpParameters).then((id) => cb({ id }), eb));
    const stream = await navigator.mediaDevices.getUserMedia(
      { video: { width: { ideal: 640 }, height: { ideal: 480 } } });
    this.producer = await t.produce({ track: stream.getVideoTracks()[0] });
    return this.producer.id;
  },
};
"""

HTML = "<!doctype html><html><head><meta charset='utf-8'><title>raysfu plain e2e</title></head>" \
       "<body><script src='/harness.js'></script></body></html>"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
async def harness_url(tmp_path_factory):
    """Build the harness bundle and serve it on 127.0.0.1 (a secure context for the camera)."""
    from aiohttp import web

    for tool in (FFMPEG, FFPROBE):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} is missing: `apt-get install -y ffmpeg`")
    if not ESBUILD.exists():
        pytest.fail(f"{ESBUILD} is missing: run `make bundle` (npm ci in demo/)")
    bundle = tmp_path_factory.mktemp("harness") / "harness.js"
    # stdin entry: esbuild resolves 'mediasoup-client' from its cwd, demo/.
    subprocess.run([str(ESBUILD), "--bundle", "--format=iife", "--target=es2020", "--log-level=warning",
                    f"--outfile={bundle}"], input=HARNESS_JS.encode(), cwd=DEMO_DIR, check=True, timeout=60)
    app = web.Application()
    app.router.add_get("/", lambda _r: web.Response(text=HTML, content_type="text/html"))
    app.router.add_get("/harness.js", lambda _r: web.FileResponse(bundle))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def sfu_worker(ray_session):
    worker = await create_worker()
    yield worker
    worker.close()
    await asyncio.sleep(0.3)


@pytest.fixture
async def router(sfu_worker):
    r = await sfu_worker.create_router(media_codecs=MEDIA_CODECS)
    yield r
    r.close()


class Client:
    """One Chromium page running the harness, with ``pyConnect``/``pyProduce`` wired to raysfu."""

    def __init__(self, page, router) -> None:
        self.page = page
        self.router = router
        self.transports: dict = {}
        self.producers: list = []
        self.console: list[str] = []

    async def start(self, url: str) -> "Client":
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        await self.page.expose_function("pyConnect", self._connect)
        await self.page.expose_function("pyProduce", self._produce)
        await self.page.goto(url)
        await self.page.wait_for_function("window.harness !== undefined", timeout=15000)
        self.caps = await self.page.evaluate("(c) => window.harness.load(c)", self.router.rtp_capabilities)
        return self

    async def _connect(self, transport_id, dtls_parameters) -> None:
        await self.transports[transport_id].connect(dtls_parameters=dtls_parameters)

    async def _produce(self, kind, rtp_parameters) -> str:
        transport = next(iter(t for t in self.transports.values() if t.app_data.get("send")))
        producer = await transport.produce(kind=kind, rtp_parameters=rtp_parameters)
        self.producers.append(producer)
        return producer.id

    async def transport(self, *, send: bool):
        t = await self.router.create_webrtc_transport(listen_infos=[LOCAL], app_data={"send": send})
        self.transports[t.id] = t
        return t, {"id": t.id, "iceParameters": t.ice_parameters, "iceCandidates": t.ice_candidates,
                   "dtlsParameters": t.dtls_parameters}

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.console[-n:])


@pytest.fixture
async def client(browser, harness_url, router):
    context = await browser.new_context()
    try:
        yield await Client(await context.new_page(), router).start(harness_url)
    finally:
        await context.close()


# ------------------------------------------------------------------ helpers
async def start_ffmpeg(args: list[str], log: Path) -> asyncio.subprocess.Process:
    with open(log, "wb") as f:
        return await asyncio.create_subprocess_exec(FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "warning",
                                                    *args, stdout=f, stderr=subprocess.STDOUT)


async def stop(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> None:
    """Stop ``proc`` by its PID: SIGINT (ffmpeg finishes its file), then SIGKILL."""
    if proc.returncode is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGINT)
        await asyncio.wait_for(proc.wait(), grace_s)
    except (ProcessLookupError, asyncio.TimeoutError):
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def udp_bound(port: int) -> bool:
    """True when some socket is bound to UDP ``port`` (read from /proc/net/udp)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        if any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows if row.strip()):
            return True
    return False


def two_free_ports() -> int:
    """An even port P with P and P+1 free on 127.0.0.1 (RTP and RTCP for ffmpeg's SDP input)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1] & ~1
        s.close()
        if not udp_bound(port) and not udp_bound(port + 1) and port > 1024:
            return port
    raise RuntimeError("no two free consecutive UDP ports")


async def poll(check, timeout_s: float, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        ok, info = await check()
        if ok or time.monotonic() >= deadline:
            return ok, info
        await asyncio.sleep(interval_s)


def srtp_url_args(key: dict | None) -> list[str]:
    return ["-srtp_out_suite", SUITE, "-srtp_out_params", key["keyBase64"]] if key else []


# ------------------------------------------------------------------ ffmpeg → raysfu → Chromium
@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
async def test_ffmpeg_streams_into_a_plain_transport_and_chromium_decodes_it(client, router, tmp_path, srtp):
    video_t = await router.create_plain_transport(listen_info=LOCAL, comedia=True, rtcp_mux=False, enable_srtp=srtp, srtp_crypto_suite=SUITE)
    # ffmpeg sends RTCP from another port than RTP: with comedia, an RTCP packet arriving first
    # would fix the tuple to that port (mediasoup's rule), so RTCP gets its own socket here.
    audio_t = await router.create_plain_transport(listen_info=LOCAL, comedia=True, rtcp_mux=False, enable_srtp=srtp, srtp_crypto_suite=SUITE)
    video_key = audio_key = None
    if srtp:  # ffmpeg's keys; it sends with them, and nothing is accepted before connect()
        video_key, audio_key = generate_srtp_parameters(SUITE), generate_srtp_parameters(SUITE)
        await video_t.connect(srtp_parameters=video_key)
        await audio_t.connect(srtp_parameters=audio_key)
    tuples = []
    video_t.on("tuple", tuples.append)
    video = await video_t.produce(kind="video", rtp_parameters={
        "codecs": [{"mimeType": "video/VP8", "payloadType": VIDEO_PT, "clockRate": 90000}],
        "encodings": [{"ssrc": VIDEO_SSRC}]})
    audio = await audio_t.produce(kind="audio", rtp_parameters={
        "codecs": [{"mimeType": "audio/opus", "payloadType": AUDIO_PT, "clockRate": 48000, "channels": 2}],
        "encodings": [{"ssrc": AUDIO_SSRC}]})

    recv, options = await client.transport(send=False)
    await client.page.evaluate("(o) => window.harness.createRecvTransport(o)", options)
    for producer in (video, audio):
        consumer = await recv.consume(producer_id=producer.id, rtp_capabilities=client.caps, paused=True)
        await client.page.evaluate("(p) => window.harness.consume(p)", {
            "id": consumer.id, "producerId": producer.id, "kind": consumer.kind, "rtpParameters": consumer.rtp_parameters})
        await consumer.resume()

    scheme = "srtp" if srtp else "rtp"
    vport, vrtcp = video_t.tuple["localPort"], video_t.rtcp_tuple["localPort"]
    aport, artcp = audio_t.tuple["localPort"], audio_t.rtcp_tuple["localPort"]
    proc = await start_ffmpeg([
        "-re", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", "40",
        "-map", "0:v", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "800k",
        "-g", "30", "-threads", "1", "-ssrc", str(VIDEO_SSRC), "-payload_type", str(VIDEO_PT),
        "-f", "rtp", *srtp_url_args(video_key), f"{scheme}://127.0.0.1:{vport}?rtcpport={vrtcp}&pkt_size=1200",
        "-map", "1:a", "-c:a", "libopus", "-ac", "2", "-b:a", "64k", "-ssrc", str(AUDIO_SSRC),
        "-payload_type", str(AUDIO_PT),
        "-f", "rtp", *srtp_url_args(audio_key), f"{scheme}://127.0.0.1:{aport}?rtcpport={artcp}&pkt_size=1200",
    ], tmp_path / "ffmpeg.log")
    try:
        async def check():
            stats = await client.page.evaluate("window.harness.inbound()")
            v, a = stats.get("video", {}), stats.get("audio", {})
            ok = v.get("framesDecoded", 0) >= 60 and (v.get("frameWidth"), v.get("frameHeight")) == (640, 480) \
                and a.get("packetsReceived", 0) >= 50
            return ok, stats

        ok, stats = await poll(check, 45.0)
        assert ok, (f"Chromium did not decode ffmpeg's stream: {stats}\n"
                    f"video transport: {await video_t.dump()}\nffmpeg: {(tmp_path / 'ffmpeg.log').read_text()[-2000:]}\n"
                    f"{client.tail()}")
        assert tuples and tuples[0]["remoteIp"] == "127.0.0.1"  # comedia learned ffmpeg's address
        assert video_t.rtcp_tuple.get("remotePort")  # ffmpeg's SRs taught the RTCP tuple
        (pstats,) = await video.get_stats()
        assert pstats["packetCount"] > 100 and pstats["ssrc"] == VIDEO_SSRC
    finally:
        await stop(proc)


# ------------------------------------------------------------------ Chromium → raysfu → ffmpeg
def recording_sdp(consumer, port: int, key: dict | None) -> str:
    """The SDP ffmpeg reads to receive ``consumer`` on ``port`` (RTCP on port+1)."""
    codec = consumer.rtp_parameters["codecs"][0]
    name = codec["mimeType"].split("/", 1)[1]
    lines = ["v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=raysfu recording", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=video {port} RTP/AVP {codec['payloadType']}", f"a=rtcp:{port + 1}",
             f"a=rtpmap:{codec['payloadType']} {name}/{codec['clockRate']}"]
    if key:
        lines.append(f"a=crypto:1 {key['cryptoSuite']} inline:{key['keyBase64']}")
    lines.append("a=recvonly")
    return "\r\n".join(lines) + "\r\n"


def decoded_video(path: Path) -> tuple[int, float]:
    """``(frames, seconds)`` ffprobe decodes from the file's first video stream."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    times = [float(x) for x in out.stdout.split() if x.replace(".", "", 1).isdigit()]
    return len(times), (max(times) - min(times)) if times else 0.0


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
async def test_ffmpeg_records_a_chromium_camera_from_a_plain_transport(client, router, tmp_path, srtp):
    send, options = await client.transport(send=True)
    await client.page.evaluate("(o) => window.harness.sendCamera(o)", options)
    (producer,) = client.producers

    rec = await router.create_plain_transport(listen_info=LOCAL, rtcp_mux=False, enable_srtp=srtp, srtp_crypto_suite=SUITE)
    consumer = await rec.consume(producer_id=producer.id, rtp_capabilities=router.rtp_capabilities, paused=True)
    assert consumer.rtp_parameters["codecs"][0]["mimeType"] == "video/VP8"
    port = two_free_ports()
    sdp = tmp_path / "recording.sdp"
    out = tmp_path / "recording.webm"
    sdp.write_text(recording_sdp(consumer, port, rec.srtp_parameters))
    proc = await start_ffmpeg(["-protocol_whitelist", "file,udp,rtp,srtp", "-i", str(sdp),
                               "-map", "0:v:0", "-c:v", "copy", "-t", "7", "-y", str(out)], tmp_path / "ffmpeg.log")
    try:
        deadline = time.monotonic() + 10
        while not udp_bound(port) and time.monotonic() < deadline and proc.returncode is None:
            await asyncio.sleep(0.1)
        assert udp_bound(port), (tmp_path / "ffmpeg.log").read_text()
        # ffmpeg decrypts with the key in the SDP and protects its RTCP with the same one.
        await rec.connect(ip="127.0.0.1", port=port, rtcp_port=port + 1,
                          srtp_parameters=dict(rec.srtp_parameters) if srtp else None)
        await consumer.resume()
        # ffmpeg sends no PLI: if the first key frame reaches it broken (a packet of it lost or
        # reordered on a loaded machine: "Missed part of a keyframe"), it waits for the next one,
        # so ask again each second until the recording has started, as a recorder app would
        deadline = time.monotonic() + 40
        while proc.returncode is None and time.monotonic() < deadline:
            if not out.exists() or out.stat().st_size < 2_000:
                await consumer.request_key_frame()
            try:
                await asyncio.wait_for(proc.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await stop(proc)
    log = (tmp_path / "ffmpeg.log").read_text()
    assert out.exists() and out.stat().st_size > 10_000, f"no recording: {log[-2000:]}\n{await rec.dump()}"
    frames, seconds = decoded_video(out)
    print(f"recorded ({'srtp' if srtp else 'rtp'}): {frames} frames over {seconds:.2f} s, {out.stat().st_size} bytes")
    assert seconds >= 5.0 and frames >= 50, f"{frames} frames over {seconds:.2f} s\n{log[-2000:]}"
    (cstats, _pstats) = await consumer.get_stats()
    assert cstats["packetCount"] > 100
