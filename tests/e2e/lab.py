"""The browser lab: one Chromium page running mediasoup-client, signaled from Python.

A test builds the server side with raysfu's public API (worker, router, transports) and drives
the page with a :class:`LabPeer`: the page (``demo/static/lab.html``, script
``demo/client/lab.js``) creates the mediasoup-client transports from the parameters Python hands
it, and its ``connect``/``produce``/``producedata`` events come back to Python through
``window.labSignal``, where they call the real transport handles. No demo server, no WebSocket:
each test shapes the room it needs (simulcast encodings, data channels, a WebRtcServer, TCP).

Shapes of :meth:`LabPeer.stats` (numbers from the page's ``getStats()``)::

    {"inbound":  [{consumerId, producerId, kind, framesDecoded, frameWidth, frameHeight,
                   packetsReceived, packetsLost, pliCount, firCount, nackCount, bytesReceived,
                   audioLevel}],
     "outbound": [{producerId, kind, rid, ssrc, packetsSent, retransmittedPacketsSent,
                   frameWidth, frameHeight, pliCount, firCount, nackCount}]}   # one per rid
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

LOOPBACK = [{"protocol": "udp", "ip": "127.0.0.1"}]

# mediasoup-client's camelCase data-channel options from our snake_case ones.
_DATA_OPTIONS = {
    "ordered": "ordered",
    "max_packet_life_time": "maxPacketLifeTime",
    "max_retransmits": "maxRetransmits",
    "label": "label",
    "protocol": "protocol",
    "app_data": "appData",
}


class LabPeer:
    """One browser peer in the lab. ``send``/``recv`` are its server-side transports once made;
    ``producers``/``data_producers`` the server-side handles its page created, by id."""

    def __init__(self, name: str, page: Any) -> None:
        self.name = name
        self.page = page
        self.console: list[str] = []
        self.send = None
        self.recv = None
        self.rtp_capabilities: dict | None = None
        self.sctp_capabilities: dict | None = None
        self.transports: dict[str, Any] = {}
        self.producers: dict[str, Any] = {}
        self.data_producers: dict[str, Any] = {}

    # -- the page's calls back into Python --------------------------------------------------
    async def _on_signal(self, method: str, data: dict) -> Any:
        transport = self.transports[data["transportId"]]
        if method == "connect":
            await transport.connect(dtls_parameters=data["dtlsParameters"])
            return None
        if method == "produce":
            producer = await transport.produce(kind=data["kind"], rtp_parameters=data["rtpParameters"],
                                               app_data=data.get("appData") or {})
            self.producers[producer.id] = producer
            return producer.id
        if method == "producedata":
            options = {"sctp_stream_parameters": data["sctpStreamParameters"]}
            for key in ("label", "protocol"):
                if data.get(key):
                    options[key] = data[key]
            if data.get("appData"):
                options["app_data"] = data["appData"]
            data_producer = await transport.produce_data(**options)
            self.data_producers[data_producer.id] = data_producer
            return data_producer.id
        raise ValueError(f"lab: unknown signal {method!r}")

    async def _open(self, url: str) -> None:
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        await self.page.expose_function("labSignal", self._on_signal)
        await self.page.goto(url)
        await self.page.wait_for_function("window.labReady === true", timeout=15_000)

    # -- set-up ------------------------------------------------------------------------------
    async def load(self, router: Any) -> dict:
        """``device.load()`` with ``router``'s capabilities; returns the device's receive
        capabilities (what :meth:`consume` passes as ``rtp_capabilities``)."""
        caps = await self.page.evaluate("c => lab.load(c)", router.rtp_capabilities)
        self.rtp_capabilities = caps["rtpCapabilities"]
        self.sctp_capabilities = caps["sctpCapabilities"]
        return self.rtp_capabilities

    async def _transport(self, direction: str, router: Any, options: dict) -> Any:
        if self.rtp_capabilities is None:
            await self.load(router)
        if "listen_infos" not in options and "webrtc_server" not in options:
            options["listen_infos"] = LOOPBACK
        transport = await router.create_webrtc_transport(**options)
        params = {
            "id": transport.id,
            "iceParameters": transport.ice_parameters,
            "iceCandidates": transport.ice_candidates,
            "dtlsParameters": transport.dtls_parameters,
            "sctpParameters": transport.sctp_parameters,
        }
        self.transports[transport.id] = transport
        await self.page.evaluate("([d, p]) => lab.createTransport(d, p)", [direction, params])
        return transport

    async def create_send_transport(self, router: Any, **options: Any) -> Any:
        """A WebRtcTransport on ``router`` (``options`` as ``create_webrtc_transport`` takes
        them; loopback UDP by default) and the page's send transport on it."""
        self.send = await self._transport("send", router, options)
        return self.send

    async def create_recv_transport(self, router: Any, **options: Any) -> Any:
        """As :meth:`create_send_transport`, for receiving."""
        self.recv = await self._transport("recv", router, options)
        return self.recv

    # -- media -------------------------------------------------------------------------------
    async def produce(self, kind: str, *, encodings: list[dict] | None = None, codec_mime: str | None = None,
                      codec_options: dict | None = None, app_data: dict | None = None) -> Any:
        """The page produces its fake camera (``video``) or microphone (``audio``) on its send
        transport (``encodings`` as mediasoup-client takes them, e.g. simulcast rids;
        ``codec_mime`` like ``"video/VP9"``); returns the server-side Producer."""
        producer_id = await self.page.evaluate(
            "o => lab.produce(o)",
            {"transportId": self.send.id, "kind": kind, "encodings": encodings, "codecMime": codec_mime,
             "codecOptions": codec_options, "appData": app_data},
        )
        return self.producers[producer_id]

    async def consume(self, producer_id: str, **options: Any) -> Any:
        """Consume ``producer_id`` on the receive transport (created paused, resumed once the
        page has it, as mediasoup's demo does); returns the server-side Consumer."""
        consumer = await self.recv.consume(producer_id=producer_id, rtp_capabilities=self.rtp_capabilities,
                                           paused=True, **options)
        await self.page.evaluate(
            "o => lab.consume(o)",
            {"transportId": self.recv.id, "id": consumer.id, "producerId": producer_id,
             "kind": consumer.kind, "rtpParameters": consumer.rtp_parameters},
        )
        await consumer.resume()
        return consumer

    async def set_track_enabled(self, producer_id: str, enabled: bool) -> None:
        """``producer.track.enabled = enabled`` in the page (a disabled mic sends silence)."""
        await self.page.evaluate("([id, on]) => lab.setTrackEnabled(id, on)", [producer_id, enabled])

    # -- data channels ---------------------------------------------------------------------
    async def produce_data(self, **options: Any) -> Any:
        """``sendTransport.produceData()`` in the page (options snake_case: ``ordered``,
        ``max_packet_life_time``, ``max_retransmits``, ``label``, ``protocol``, ``app_data``),
        waited until open; returns the server-side DataProducer."""
        js = {_DATA_OPTIONS[k]: v for k, v in options.items()}
        js["transportId"] = self.send.id
        data_producer_id = await self.page.evaluate("o => lab.produceData(o)", js)
        return self.data_producers[data_producer_id]

    async def consume_data(self, data_producer_id: str, **options: Any) -> Any:
        """``transport.consume_data(data_producer_id=..., **options)`` on the receive
        transport, then ``consumeData()`` in the page, waited until open; returns the
        server-side DataConsumer. Its messages collect in ``window.lab.received[id]``."""
        data_consumer = await self.recv.consume_data(data_producer_id=data_producer_id, **options)
        await self.page.evaluate(
            "o => lab.consumeData(o)",
            {"transportId": self.recv.id, "id": data_consumer.id, "dataProducerId": data_producer_id,
             "sctpStreamParameters": data_consumer.sctp_stream_parameters,
             "label": data_consumer.label, "protocol": data_consumer.protocol},
        )
        return data_consumer

    async def send_data(self, data_producer_id: str, messages: list[str]) -> int:
        """``dataProducer.send(m)`` for each message in the page; returns how many."""
        return await self.page.evaluate("([id, m]) => lab.sendData(id, m)", [data_producer_id, messages])

    async def received(self, data_consumer_id: str) -> list[str]:
        """The messages the page's DataConsumer got so far, in arrival order."""
        return await self.page.evaluate("id => lab.received[id] || []", data_consumer_id)

    # -- inspection --------------------------------------------------------------------------
    async def stats(self) -> dict[str, list[dict]]:
        """The page's per-consumer inbound and per-producer (per-rid) outbound stats (shape in
        the module docstring)."""
        return await self.page.evaluate("lab.stats()")

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        """``page.evaluate(expression, arg)``: raw access to ``window.lab``."""
        return await self.page.evaluate(expression, arg)

    def console_tail(self, n: int = 25) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.console[-n:])


async def poll(check, *, timeout_s: float, interval_s: float = 0.5):
    """Call ``await check()`` -> ``(ok, info)`` until ``ok`` or ``timeout_s``; returns the
    last ``(ok, info)``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        ok, info = await check()
        if ok or asyncio.get_running_loop().time() >= deadline:
            return ok, info
        await asyncio.sleep(interval_s)


_INBOUND_JS = """async (id) => {
  const c = lab.consumers.get(id);
  for (const s of (await c.getStats()).values())
    if (s.type === 'inbound-rtp') return {framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0};
  return {framesDecoded: 0, frameWidth: 0};
}"""


class DecodeWatch:
    """Samples one consumer's ``framesDecoded``/``frameWidth`` in a lab page over time, to time
    layer switches and find decoding stalls. ``samples``: ``[(monotonic_s, framesDecoded,
    frameWidth)]``."""

    def __init__(self, peer: LabPeer, consumer_id: str) -> None:
        self.peer = peer
        self.consumer_id = consumer_id
        self.samples: list[tuple[float, int, int]] = []

    async def sample(self) -> dict:
        s = await self.peer.evaluate(_INBOUND_JS, self.consumer_id)
        self.samples.append((time.monotonic(), s["framesDecoded"], s["frameWidth"]))
        return s

    async def steady(self, n: int = 5, interval_s: float = 0.1) -> None:
        """``n`` samples ``interval_s`` apart (a baseline, or a tail after a switch)."""
        for _ in range(n):
            await self.sample()
            await asyncio.sleep(interval_s)

    async def until_width(self, width: int, started: float, timeout_s: float) -> float | None:
        """Sample every 0.1 s until the decoded width is ``width``, then 1 s more; returns the
        seconds from ``started`` (monotonic) to the first such sample, None if not within
        ``timeout_s``."""
        reached = None
        while time.monotonic() - started < timeout_s:
            s = await self.sample()
            if s["frameWidth"] == width and reached is None:
                reached = time.monotonic() - started
            if reached is not None and time.monotonic() - started > reached + 1.0:
                break
            await asyncio.sleep(0.1)
        return reached

    def longest_stall_s(self) -> float:
        """The longest time between two samples where ``framesDecoded`` rose (the last one
        counts up to the final sample)."""
        last_t, last_frames = self.samples[0][0], self.samples[0][1]
        worst = 0.0
        for t, frames, _w in self.samples[1:]:
            if frames > last_frames:
                worst = max(worst, t - last_t)
                last_t, last_frames = t, frames
        return max(worst, self.samples[-1][0] - last_t)
