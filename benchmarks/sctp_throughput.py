"""SCTP data-channel throughput in memory: our association vs aiortc's ``RTCSctpTransport``.

Three pairs, each sending 16 KiB messages (PPID 53, ordered, reliable) one way for N seconds,
with no DTLS, no sockets and no loss, so the figure is the SCTP stack's own cost:

- ``ours``: :class:`raysfu.transport.sctp.SctpAssociation` ↔ itself, pumped synchronously;
- ``ours->aiortc`` and ``aiortc->ours``: ours ↔ aiortc over an asyncio loop (aiortc needs one),
  through a fake of the DTLS transport aiortc's SCTP talks to;
- ``aiortc``: aiortc ↔ aiortc through the same fake (its baseline in this harness).

Both ends run in this process, so "CPU per MB" (getrusage user+system) covers sender and receiver.

Run: ``.venv/bin/python -m benchmarks.sctp_throughput --seconds 5 [--size 16384] [--json]``

In Chromium (real stacks, loopback UDP): ``--pairs browser->raysfu->browser,browser->browser``
(mediasoup-client DataProducer → raysfu WorkerActor → DataConsumer in another page; and two
pages with a plain RTCPeerConnection data channel, signaled through ``page.evaluate``).

The helpers (:class:`FakeDtlsTransport`, :class:`AssociationDriver`, :func:`connect_ours_pair`,
:func:`pump`) are reused by ``tests/unit/test_sctp.py`` and ``tests/unit/test_dcep.py`` for the
interoperability tests against aiortc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Callable
from typing import Any

from raysfu.transport.sctp import SctpAssociation

PPID_BINARY = 53


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------------------------------
# ours <-> ours, synchronous
# ------------------------------------------------------------------------------------------

def pump(a: SctpAssociation, b: SctpAssociation, now_ms: int, *, max_rounds: int = 10_000) -> int:
    """Move packets between ``a`` and ``b`` (lossless, in order) until both are quiet; run timers
    due at ``now_ms``. Returns the number of packets moved."""
    moved = 0
    for _ in range(max_rounds):
        n = 0
        for x, y in ((a, b), (b, a)):
            t = x.next_timer_ms()
            if t is not None and t <= now_ms:
                x.handle_timer(now_ms)
            for p in x.datagrams_to_send():
                y.receive(p, now_ms)
                n += 1
        moved += n
        if not n:
            break
    return moved


def connect_ours_pair(now_ms: int = 0, **kwargs: Any) -> tuple[SctpAssociation, SctpAssociation]:
    """Two connected associations (``a`` DTLS client, ``b`` server), handshake pumped at
    ``now_ms``. ``kwargs`` go to both constructors."""
    a = SctpAssociation(is_client=True, **kwargs)
    b = SctpAssociation(is_client=False, **kwargs)
    a.start(now_ms)
    b.start(now_ms)
    pump(a, b, now_ms)
    if a.state != "connected" or b.state != "connected":
        raise RuntimeError(f"handshake failed: {a.state} / {b.state}")
    a.drain_events()
    b.drain_events()
    return a, b


def bench_ours(seconds: float, size: int = 16384, backlog_bytes: int = 1 << 20) -> dict:
    """Send ``size``-byte messages a → b for ``seconds`` (wall clock drives ``now_ms``)."""
    a, b = connect_ours_pair()
    payload = bytes(size)
    received = 0
    messages = 0
    t0 = time.perf_counter()
    c0 = _cpu_s()
    now = 0
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        now = int(elapsed * 1000)
        while a.buffered_amount_total < backlog_bytes:
            a.send(1, PPID_BINARY, payload, now_ms=now)
        for x, y in ((a, b), (b, a)):
            t = x.next_timer_ms()
            if t is not None and t <= now:
                x.handle_timer(now)
            for p in x.datagrams_to_send():
                y.receive(p, now)
        for ev in b.drain_events():
            if ev[0] == "message":
                received += len(ev[3])
                messages += 1
        a.drain_events()
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    return _result("ours", received, messages, wall, cpu, a.stats)


# ------------------------------------------------------------------------------------------
# asyncio harness shared with aiortc
# ------------------------------------------------------------------------------------------

class FakeDtlsTransport:
    """What aiortc's ``RTCSctpTransport`` uses of an ``RTCDtlsTransport``: ``state``, ``_role``
    ("client"/"server"), ``_register_data_receiver`` / ``_unregister_data_receiver`` and
    ``async _send_data(bytes)``. ``deliver`` is called with every packet aiortc sends; packets
    for aiortc go through :meth:`feed` (in order, one task)."""

    def __init__(self, role: str, deliver: Callable[[bytes], None]) -> None:
        self.state = "connected"
        self._role = role
        self._data_receiver: Any = None
        self.deliver = deliver
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        self.sent_packets = 0

    def _register_data_receiver(self, receiver: Any) -> None:
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver: Any) -> None:
        if self._data_receiver is receiver:
            self._data_receiver = None

    async def _send_data(self, data: bytes) -> None:
        if self.state != "connected":
            raise ConnectionError("fake DTLS transport closed")
        self.sent_packets += 1
        self.deliver(bytes(data))

    def feed(self, packet: bytes) -> None:
        self._queue.put_nowait(packet)

    async def _run(self) -> None:
        while True:
            packet = await self._queue.get()
            if packet is None:
                return
            if self._data_receiver is not None:
                await self._data_receiver._handle_data(packet)

    async def stop(self) -> None:
        self.state = "closed"
        self._queue.put_nowait(None)
        await self._task


class AssociationDriver:
    """Runs one :class:`SctpAssociation` on the asyncio loop: wall clock for ``now_ms``, a timer
    handle for :meth:`SctpAssociation.next_timer_ms`, every outgoing packet to ``send_packet``,
    every event to ``on_event`` (default: kept in :attr:`events`)."""

    def __init__(self, association: SctpAssociation, send_packet: Callable[[bytes], None],
                 on_event: Callable[[tuple], None] | None = None) -> None:
        self.association = association
        self.send_packet = send_packet
        self.events: list[tuple] = []
        self.on_event = on_event or self.events.append
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._changed = asyncio.Event()

    def now_ms(self) -> int:
        return int((self._loop.time() - self._t0) * 1000)

    def start(self) -> None:
        self.association.start(self.now_ms())
        self.flush()

    def receive(self, packet: bytes) -> None:
        self.association.receive(packet, self.now_ms())
        self.flush()

    def flush(self) -> None:
        assoc = self.association
        for packet in assoc.datagrams_to_send():
            self.send_packet(packet)
        events = assoc.drain_events()
        for ev in events:
            self.on_event(ev)
        if events:
            self._changed.set()
        for packet in assoc.datagrams_to_send():  # event handlers may have sent
            self.send_packet(packet)
        at = assoc.next_timer_ms()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = at
            if at is not None:
                self._timer = self._loop.call_at(self._t0 + at / 1000, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.association.handle_timer(self.now_ms())
        self.flush()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (checked after every batch of events)."""
        deadline = self._loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not met")
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def ours_with_aiortc(*, ours_is_client: bool = True, **kwargs: Any):
    """Connect our association with an aiortc ``RTCSctpTransport``; returns
    ``(driver, aiortc_sctp, fake_dtls)``. Call ``await close_aiortc(...)`` when done."""
    from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport

    holder: dict[str, Any] = {}
    fake = FakeDtlsTransport("server" if ours_is_client else "client",
                             deliver=lambda p: holder["driver"].receive(p))
    assoc = SctpAssociation(is_client=ours_is_client, **kwargs)
    driver = AssociationDriver(assoc, fake.feed)
    holder["driver"] = driver
    theirs = RTCSctpTransport(fake)  # type: ignore[arg-type]
    driver.start()
    await theirs.start(RTCSctpCapabilities(maxMessageSize=assoc.max_message_size), 5000)
    await driver.wait_for(lambda: assoc.state == "connected" and theirs.state == "connected")
    return driver, theirs, fake


async def close_aiortc(driver: AssociationDriver, theirs: Any, fake: FakeDtlsTransport) -> None:
    """Stop both ends and the fake transport's task."""
    driver.stop()
    await theirs.stop()
    await fake.stop()


async def _bench_with_aiortc(seconds: float, size: int, ours_sends: bool) -> dict:
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters

    driver, theirs, fake = await ours_with_aiortc(ours_is_client=True)
    assoc = driver.association
    counts = {"bytes": 0, "messages": 0}
    payload = bytes(size)
    channel = RTCDataChannel(theirs, RTCDataChannelParameters(label="bench", negotiated=True, id=1))
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    c0 = _cpu_s()
    if ours_sends:
        channel.on("message", lambda m: (counts.__setitem__("bytes", counts["bytes"] + len(m)),
                                         counts.__setitem__("messages", counts["messages"] + 1)))
        while time.perf_counter() - t0 < seconds:
            while assoc.buffered_amount_total < (1 << 20):
                assoc.send(1, PPID_BINARY, payload, now_ms=driver.now_ms())
            driver.flush()
            await asyncio.sleep(0)
    else:
        def on_event(ev: tuple) -> None:
            if ev[0] == "message":
                counts["bytes"] += len(ev[3])
                counts["messages"] += 1
        driver.on_event = on_event
        while time.perf_counter() - t0 < seconds:
            while channel.bufferedAmount < (1 << 20):
                channel.send(payload)
            await asyncio.sleep(0.001)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    await close_aiortc(driver, theirs, fake)
    del loop
    return _result("ours->aiortc" if ours_sends else "aiortc->ours", counts["bytes"], counts["messages"], wall, cpu, assoc.stats)


async def _bench_aiortc_pair(seconds: float, size: int) -> dict:
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters
    from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport

    holder: dict[str, Any] = {}
    fa = FakeDtlsTransport("client", deliver=lambda p: holder["b"].feed(p))
    fb = FakeDtlsTransport("server", deliver=lambda p: holder["a"].feed(p))
    holder["a"], holder["b"] = fa, fb
    sa, sb = RTCSctpTransport(fa), RTCSctpTransport(fb)  # type: ignore[arg-type]
    caps = RTCSctpCapabilities(maxMessageSize=262144)
    await asyncio.gather(sa.start(caps, 5000), sb.start(caps, 5000))
    t_wait = time.perf_counter()
    while (sa.state != "connected" or sb.state != "connected") and time.perf_counter() - t_wait < 5:
        await asyncio.sleep(0.01)
    ca = RTCDataChannel(sa, RTCDataChannelParameters(label="bench", negotiated=True, id=1))
    cb = RTCDataChannel(sb, RTCDataChannelParameters(label="bench", negotiated=True, id=1))
    counts = {"bytes": 0, "messages": 0}
    cb.on("message", lambda m: (counts.__setitem__("bytes", counts["bytes"] + len(m)),
                                counts.__setitem__("messages", counts["messages"] + 1)))
    payload = bytes(size)
    t0 = time.perf_counter()
    c0 = _cpu_s()
    while time.perf_counter() - t0 < seconds:
        while ca.bufferedAmount < (1 << 20):
            ca.send(payload)
        await asyncio.sleep(0.001)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    await sa.stop()
    await sb.stop()
    await fa.stop()
    await fb.stop()
    return _result("aiortc", counts["bytes"], counts["messages"], wall, cpu, None)


# ------------------------------------------------------------------------------------------
# In Chromium: browser -> raysfu -> browser, and browser -> browser (RTCPeerConnection)
# ------------------------------------------------------------------------------------------
#
# Real stacks on this machine: Chromium's SCTP (dcsctp) in the pages, raysfu's association in a
# WorkerActor. The sending page keeps its data channel's bufferedAmount between 1 and 4 MiB
# (as a file transfer would); the receiving page counts bytes. Figures are receiver goodput over
# the run (first to last byte). CPU: the worker's getrusage (raysfu) over the run.

_SEND_JS = """async ({size, seconds, get}) => {
  const ch = eval(get);
  const buf = new Uint8Array(size);
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  ch.bufferedAmountLowThreshold = 1 << 20;
  const fill = () => { while (ch.bufferedAmount < (4 << 20) && performance.now() < end) { ch.send(buf); sent += size; } };
  await new Promise((resolve) => {
    const onLow = () => { fill(); if (performance.now() >= end) resolve(); };
    if (ch.on) ch.on('bufferedamountlow', onLow); else ch.addEventListener('bufferedamountlow', onLow);
    fill();
    const chk = setInterval(() => { fill(); if (performance.now() >= end) { clearInterval(chk); resolve(); } }, 50);
  });
  return sent;
}"""

_COUNT_JS = """(get) => {
  const ch = eval(get);
  window.rx = {bytes: 0, first: 0, last: 0};
  const on = (m) => {
    const n = m.byteLength || m.size || m.length || 0;
    const t = performance.now();
    if (!window.rx.bytes) window.rx.first = t;
    window.rx.bytes += n; window.rx.last = t;
  };
  if (ch.on) ch.on('message', on); else ch.addEventListener('message', (e) => on(e.data));
}"""


async def _measure(sender_page, receiver_page, send_get: str, recv_get: str, seconds: float, size: int) -> tuple[int, float, int]:
    await receiver_page.evaluate(_COUNT_JS, recv_get)
    sent = await sender_page.evaluate(_SEND_JS, {"size": size, "seconds": seconds, "get": send_get})
    deadline = time.monotonic() + 20
    rx = await receiver_page.evaluate("window.rx")
    while rx["bytes"] < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        rx = await receiver_page.evaluate("window.rx")
    wall = max(1e-3, (rx["last"] - rx["first"]) / 1000)
    return rx["bytes"], wall, sent


async def _bench_browser(seconds: float, size: int, pairs: tuple[str, ...]) -> list[dict]:
    import os

    for k, v in (("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(k, v)
    from aiohttp import web
    from playwright.async_api import async_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DEMO_DIR, _ensure_bundle
    from tests.e2e.lab import LabPeer

    _ensure_bundle()
    app = web.Application()
    app.router.add_static("/", DEMO_DIR / "static", show_index=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/lab.html"  # type: ignore[union-attr]
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                       args=CHROMIUM_ARGS + ["--disable-features=WebRtcHideLocalIpsWithMdns",
                                                                   "--disable-background-timer-throttling",
                                                                   "--disable-renderer-backgrounding",
                                                                   "--disable-backgrounding-occluded-windows"])
    results = []
    try:
        async def page(name: str) -> LabPeer:
            ctx = await browser.new_context()
            peer = LabPeer(name, await ctx.new_page())
            await peer._open(url)
            return peer

        if "browser->raysfu->browser" in pairs:
            from raysfu.actors import create_worker

            worker = await create_worker()
            try:
                router = await worker.create_router(media_codecs=[])
                alice, bob = await page("alice"), await page("bob")
                await alice.load(router)
                await bob.load(router)
                await alice.create_send_transport(router, enable_sctp=True)
                await bob.create_recv_transport(router, enable_sctp=True)
                dp = await alice.produce_data(label="bench")
                dc = await bob.consume_data(dp.id)
                ru0 = await worker.get_resource_usage()
                nbytes, wall, sent = await _measure(alice.page, bob.page, f"lab.dataProducers.get('{dp.id}')",
                                                    f"lab.dataConsumers.get('{dc.id}')", seconds, size)
                ru1 = await worker.get_resource_usage()
                cpu = (ru1["ru_utime"] + ru1["ru_stime"] - ru0["ru_utime"] - ru0["ru_stime"]) / 1000
                r = _result("browser->raysfu->browser", nbytes, nbytes // size, wall, cpu, None)
                r["cpu_of"] = "raysfu worker"
                r["sent_MB"] = round(sent / 1e6, 2)
                results.append(r)
                await alice.page.context.close()
                await bob.page.context.close()
            finally:
                worker.close()
                await asyncio.sleep(0.3)

        if "browser->browser" in pairs:
            a, b = await page("a"), await page("b")
            setup = """async (remote) => {
              window.pc = new RTCPeerConnection();
              if (!remote) { window.ch = pc.createDataChannel('bench'); window.ch.binaryType = 'arraybuffer'; }
              else { pc.ondatachannel = (e) => { window.ch = e.channel; window.ch.binaryType = 'arraybuffer'; }; }
              if (!remote) { await pc.setLocalDescription(await pc.createOffer()); }
              else { await pc.setRemoteDescription(remote); await pc.setLocalDescription(await pc.createAnswer()); }
              await new Promise(r => { if (pc.iceGatheringState === 'complete') r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
              return {type: pc.localDescription.type, sdp: pc.localDescription.sdp};
            }"""
            offer = await a.page.evaluate(setup, None)
            answer = await b.page.evaluate(setup, offer)
            await a.page.evaluate("async (ans) => { await pc.setRemoteDescription(ans); "
                                  "if (ch.readyState !== 'open') await new Promise(r => ch.onopen = r); }", answer)
            await b.page.wait_for_function("window.ch && window.ch.readyState === 'open'", timeout=15000)
            nbytes, wall, sent = await _measure(a.page, b.page, "window.ch", "window.ch", seconds, size)
            r = _result("browser->browser", nbytes, nbytes // size, wall, 0.0, None)
            r["cpu_ms_per_MB"] = r["MB_per_cpu_s"] = None
            r["sent_MB"] = round(sent / 1e6, 2)
            results.append(r)
    finally:
        await browser.close()
        await pw.stop()
        await runner.cleanup()
    return results


def _result(name: str, nbytes: int, messages: int, wall: float, cpu: float, stats: dict | None) -> dict:
    mb = nbytes / 1e6
    out = {
        "pair": name,
        "messages": messages,
        "MB": round(mb, 2),
        "seconds": round(wall, 2),
        "MB_per_s": round(mb / wall, 2) if wall else 0.0,
        "Mbit_per_s": round(8 * mb / wall, 1) if wall else 0.0,
        "cpu_ms_per_MB": round(1000 * cpu / mb, 1) if mb else None,
        # what one fully used core would carry (both ends run here): the noise-free figure
        "MB_per_cpu_s": round(mb / cpu, 1) if cpu else None,
    }
    if stats is not None:
        out["retransmitted_chunks"] = stats["retransmitted_chunks"]
    return out


def run(seconds: float = 5.0, size: int = 16384, pairs: tuple[str, ...] = ("ours", "ours->aiortc", "aiortc->ours", "aiortc")) -> list[dict]:
    """Run the chosen pairs; returns one result dict each (``pair, messages, MB, seconds,
    MB_per_s, Mbit_per_s, cpu_ms_per_MB``)."""
    results = []
    browser_pairs = tuple(p for p in pairs if p in ("browser->raysfu->browser", "browser->browser"))
    for pair in pairs:
        if pair in browser_pairs:
            continue
        if pair == "ours":
            results.append(bench_ours(seconds, size))
        elif pair == "ours->aiortc":
            results.append(asyncio.run(_bench_with_aiortc(seconds, size, True)))
        elif pair == "aiortc->ours":
            results.append(asyncio.run(_bench_with_aiortc(seconds, size, False)))
        elif pair == "aiortc":
            results.append(asyncio.run(_bench_aiortc_pair(seconds, size)))
        else:
            raise ValueError(f"pairs: unknown pair {pair!r}")
    if browser_pairs:
        results.extend(asyncio.run(_bench_browser(seconds, size, browser_pairs)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=16384, help="message size, bytes")
    parser.add_argument("--pairs", default="ours,ours->aiortc,aiortc->ours,aiortc")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.seconds, args.size, tuple(p.strip() for p in args.pairs.split(",") if p.strip()))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'pair':<14}{'MB/s':>9}{'Mbit/s':>9}{'CPU ms/MB':>11}{'MB/CPU-s':>10}{'messages':>10}")
    for r in results:
        print(f"{r['pair']:<14}{r['MB_per_s']:>9}{r['Mbit_per_s']:>9}{r['cpu_ms_per_MB'] or 0:>11}"
              f"{r['MB_per_cpu_s'] or 0:>10}{r['messages']:>10}")


if __name__ == "__main__":
    main()
