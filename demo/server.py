"""The raysfu demo room: an aiohttp signaling server for the browser page in ``demo/static``.

Each demo room is a raysfu :class:`~raysfu.actors.room.Room` (opus, VP8, VP9, H264 42e01f
packetization-mode 1) on a pool of Workers (one per CPU of the Ray cluster by default): a room
starts on one router and, when a router reaches its limit (``max_consumers_per_router``,
``max_transports_per_router``), grows onto another worker, with producers piped across as peers
consume them. One WebSocket per peer at ``/ws``. The signaling follows the mediasoup-demo (protoo) pattern:
every message is JSON, and both sides send requests that the other side answers.

Messages::

    request       {"request": true, "id": int, "method": str, "data": dict}
    response      {"response": true, "id": int, "ok": true, "data": dict}
                  {"response": true, "id": int, "ok": false, "error": str}
    notification  {"notification": true, "method": str, "data": dict}

Client → server requests (``data`` → response ``data``):

- ``join {roomId, peerName, debugReceiveLoss?}`` → ``{routerRtpCapabilities, peers: [{id, name}]}``
  (``debugReceiveLoss`` is honoured only with ``debug_hooks``: the fraction of incoming media RTP
  the peer's send transport drops, through ``WebRtcTransport.set_debug_receive_loss``);
- ``createWebRtcTransport {direction: "send"|"recv", sctpCapabilities?}`` →
  ``{id, iceParameters, iceCandidates, dtlsParameters, sctpParameters}`` (mediasoup-client's
  TransportOptions);
- ``connectWebRtcTransport {transportId, dtlsParameters}`` → ``{}``;
- ``produce {transportId, kind, rtpParameters, appData}`` → ``{id}``;
- ``setRtpCapabilities {rtpCapabilities}`` → ``{}``; from then on the server consumes every
  producer of the other peers for this peer;
- ``pauseProducer {producerId}`` / ``resumeProducer {producerId}`` → ``{}``;
- ``leave {}`` → ``{}``.

Server → client request ``newConsumer {peerId, peerName, producerId, id, kind, rtpParameters,
type, appData, producerPaused}`` → ``{}``: the consumer is created paused, the client consumes it,
and the server resumes it once the client has answered (mediasoup-demo's order, so the first RTP
packet, a key frame, reaches a PeerConnection that is ready for it).

Notifications: ``newPeer {id, name}``, ``peerClosed {peerId}``, ``consumerClosed {consumerId}``,
``producerPaused {peerId, producerId, kind}``, ``producerResumed {peerId, producerId, kind}``.

With ``debug_hooks`` the app also serves ``GET /debug/rooms/{roomId}``: per peer its producers'
and consumers' ``get_stats()`` (mediasoup shapes), the worker pid of each of its transports, and
the registry's view of the room.

The demo's ``Room``/``Peer`` classes hold signaling state only; placement is the raysfu Room's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import WSMsgType, web

log = logging.getLogger("raysfu.demo")

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: The media codecs of every room's router (mediasoup RtpCodecCapability dicts). The first video
#: codec (VP8) is the one mediasoup-client picks by default.
MEDIA_CODECS: list[dict[str, Any]] = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
     "parameters": {"x-google-start-bitrate": 1000}},
    {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000,
     "parameters": {"profile-id": 0, "x-google-start-bitrate": 1000}},
    {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
     "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f",
                    "level-asymmetry-allowed": 1, "x-google-start-bitrate": 1000}},
]

#: How long the server waits for a client's answer to a ``newConsumer`` request.
CLIENT_REQUEST_TIMEOUT_S = 15.0

APP_KEY_ROOMS = web.AppKey("rooms", dict)
APP_KEY_STATE = web.AppKey("state", dict)


class SignalingError(Exception):
    """A request the server refuses; its message goes back to the client as ``error``."""


class Peer:
    """One browser connected over a WebSocket.

    Holds what the peer owns on the media side: its transports (``id`` → WebRtcTransport handle),
    producers and consumers (``id`` → handle), the RTP capabilities it sent with
    ``setRtpCapabilities`` (None before) and its ``debug_receive_loss`` fraction (0.0 .. 1.0).
    Outgoing messages go through one queue drained by a writer task, so :meth:`notify` may be
    called from any thread (pyee callbacks included).
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.name = ""
        self.ws = ws
        self.room: Room | None = None
        self.rtp_capabilities: dict[str, Any] | None = None
        self.debug_receive_loss = 0.0
        self.transports: dict[str, Any] = {}
        self.send_transport: Any = None
        self.recv_transport: Any = None
        self.producers: dict[str, Any] = {}
        self.consumers: dict[str, Any] = {}
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._writer = self._loop.create_task(self._write_loop())

    def info(self) -> dict[str, str]:
        """``{id, name}`` as other peers see this peer."""
        return {"id": self.id, "name": self.name}

    def _post(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, text)

    async def _write_loop(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("peer %s: send failed: %s", self.id, exc)
                return

    def notify(self, method: str, data: dict[str, Any]) -> None:
        """Send a notification; thread-safe, never blocks. Dropped once the peer is closed."""
        if not self.closed:
            self._post({"notification": True, "method": method, "data": data})

    def respond(self, request_id: int, *, data: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        """Answer a client request: ``ok`` with ``data``, or not ok with ``error``."""
        if error is None:
            self._post({"response": True, "id": request_id, "ok": True, "data": data or {}})
        else:
            self._post({"response": True, "id": request_id, "ok": False, "error": error})

    async def request(self, method: str, data: dict[str, Any],
                      timeout_s: float = CLIENT_REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Send a request to the client and wait for its answer.

        Raises SignalingError if the client answers not ok or the peer closes, and
        asyncio.TimeoutError after ``timeout_s`` seconds.
        """
        if self.closed:
            raise SignalingError(f"peer {self.id} is closed")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[request_id] = future
        self._post({"request": True, "id": request_id, "method": method, "data": data})
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(request_id, None)

    def on_response(self, message: dict[str, Any]) -> None:
        """Resolve the pending server request that ``message`` (a response) answers."""
        future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if message.get("ok"):
            future.set_result(message.get("data") or {})
        else:
            future.set_exception(SignalingError(str(message.get("error"))))

    def close(self) -> None:
        """Close every transport of this peer (which closes its producers and consumers on the
        media side), fail its pending requests and stop its writer. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SignalingError(f"peer {self.id} closed"))
        for transport in list(self.transports.values()):
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - already-closed handles; nothing else to do
                log.exception("peer %s: closing transport failed", self.id)
        self.transports.clear()
        self.producers.clear()
        self.consumers.clear()
        self._outbox.put_nowait(None)


class Room:
    """A demo room: the raysfu Room (``sfu``) that places its media, and the peers that joined.

    ``peers`` maps peer id → :class:`Peer`. A peer receives a consumer for every producer of every
    other peer once it has sent its RTP capabilities and created a recv transport.
    """

    def __init__(self, room_id: str, sfu: Any, *, debug_hooks: bool, listen_ip: str,
                 announced_address: str | None) -> None:
        self.id = room_id
        self.sfu = sfu
        self.peers: dict[str, Peer] = {}
        self.debug_hooks = debug_hooks
        self.listen_ip = listen_ip
        self.announced_address = announced_address
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -------------------------------------------------------------- helpers

    def spawn(self, coro_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``coro_fn(*args)`` as a task on the room's loop; callable from any thread."""
        def start() -> None:
            task = self._loop.create_task(coro_fn(*args))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        self._loop.call_soon_threadsafe(start)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("room %s: background task failed: %r", self.id, task.exception())

    def others(self, peer: Peer) -> list[Peer]:
        """The joined peers of the room other than ``peer``."""
        return [p for p in self.peers.values() if p is not peer and not p.closed]

    def listen_infos(self) -> list[dict[str, Any]]:
        """mediasoup TransportListenInfo list for a new WebRtcTransport."""
        info: dict[str, Any] = {"protocol": "udp", "ip": self.listen_ip}
        if self.announced_address:
            info["announcedAddress"] = self.announced_address
        return [info]

    # -------------------------------------------------------------- membership

    def add_peer(self, peer: Peer) -> list[dict[str, str]]:
        """Add ``peer``, tell the others (``newPeer``), return the others as ``[{id, name}]``."""
        existing = [p.info() for p in self.others(peer)]
        self.peers[peer.id] = peer
        peer.room = self
        for other in self.others(peer):
            other.notify("newPeer", peer.info())
        return existing

    def remove_peer(self, peer: Peer) -> None:
        """Close ``peer``'s media, close the consumers of its producers held by the others
        (``consumerClosed``), and tell the others (``peerClosed``)."""
        if self.peers.pop(peer.id, None) is None:
            return
        producer_ids = set(peer.producers)
        peer.close()
        for other in self.others(peer):
            for consumer_id, consumer in list(other.consumers.items()):
                if consumer.producer_id in producer_ids:
                    self._drop_consumer(other, consumer_id)
            other.notify("peerClosed", {"peerId": peer.id})

    def close(self) -> None:
        """Close every peer and the router. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for peer in list(self.peers.values()):
            peer.close()
        self.peers.clear()
        for task in list(self._tasks):
            task.cancel()
        self._loop.create_task(self.sfu.close())

    # -------------------------------------------------------------- media

    def _drop_consumer(self, peer: Peer, consumer_id: str) -> None:
        """Forget a consumer of ``peer``, close it, and tell the client (``consumerClosed``)."""
        consumer = peer.consumers.pop(consumer_id, None)
        if consumer is None:
            return
        try:
            consumer.close()
        except Exception:  # noqa: BLE001
            log.debug("consumer %s already closed", consumer_id)
        peer.notify("consumerClosed", {"consumerId": consumer_id})

    def consume_all(self, peer: Peer) -> None:
        """Start a consumer on ``peer`` for every producer of the other peers."""
        for other in self.others(peer):
            for producer in list(other.producers.values()):
                self.spawn(self.create_consumer, peer, other, producer)

    def fan_out(self, producer_peer: Peer, producer: Any) -> None:
        """Start a consumer of a new ``producer`` on every other peer that can receive."""
        for other in self.others(producer_peer):
            if other.rtp_capabilities is not None:
                self.spawn(self.create_consumer, other, producer_peer, producer)

    async def create_consumer(self, peer: Peer, producer_peer: Peer, producer: Any) -> None:
        """Consume ``producer`` on ``peer``'s recv transport: create paused, ask the client
        (``newConsumer``), then resume. Skipped when the peer cannot consume the codec."""
        caps = peer.rtp_capabilities
        transport = peer.recv_transport
        if peer.closed or producer_peer.closed or caps is None or transport is None:
            return
        if not await self.sfu.can_consume(producer_id=producer.id, rtp_capabilities=caps):
            log.info("peer %s cannot consume producer %s", peer.id, producer.id)
            return
        consumer = await self.sfu.consume(transport, producer_id=producer.id,
                                          rtp_capabilities=caps, paused=True)
        if peer.closed or producer.id not in producer_peer.producers:
            consumer.close()
            return
        peer.consumers[consumer.id] = consumer
        consumer_id = consumer.id
        consumer.on("transportclose", lambda *_: peer.consumers.pop(consumer_id, None))
        consumer.on("producerclose",
                    lambda *_: self._loop.call_soon_threadsafe(self._drop_consumer, peer,
                                                               consumer_id))
        # --- simulcast / SVC (issue 5): the tile shows the layer being received ---
        consumer.on("layerschange", lambda layers, *_: self._loop.call_soon_threadsafe(
            peer.notify, "consumerLayersChanged", {"consumerId": consumer_id, "layers": layers}))
        # --- end simulcast / SVC ---
        try:
            await peer.request("newConsumer", {
                "peerId": producer_peer.id,
                "peerName": producer_peer.name,
                "producerId": producer.id,
                "id": consumer.id,
                "kind": consumer.kind,
                "rtpParameters": consumer.rtp_parameters,
                "type": consumer.type,
                "appData": getattr(producer, "app_data", None) or {},
                "producerPaused": consumer.producer_paused,
                "preferredLayers": consumer.preferred_layers,  # simulcast / SVC (issue 5)
            })
        except (SignalingError, asyncio.TimeoutError) as exc:
            log.warning("peer %s did not take consumer %s: %s", peer.id, consumer_id, exc)
            peer.consumers.pop(consumer_id, None)
            consumer.close()
            return
        if consumer_id in peer.consumers:
            await consumer.resume()

    async def stats(self) -> dict[str, Any]:
        """Debug view: ``{roomId, peers: [{id, name, transports: [{id, direction, routerId,
        workerPid}], producers: [{id, kind, stats}], consumers: [{id, kind, producerId, stats}]}],
        registry}``; ``stats`` are ``get_stats()`` lists, ``registry`` is ``Room.dump()``."""
        peers = []
        for peer in list(self.peers.values()):
            producers = [{"id": p.id, "kind": p.kind, "stats": await p.get_stats()}
                         for p in list(peer.producers.values())]
            consumers = [{"id": c.id, "kind": c.kind, "producerId": c.producer_id,
                          "stats": await c.get_stats()}
                         for c in list(peer.consumers.values())]
            transports = [{"id": t.id,
                           "direction": "send" if t is peer.send_transport else "recv",
                           "routerId": t._router.id, "workerPid": t._router.worker.pid}
                          for t in list(peer.transports.values())]
            peers.append({"id": peer.id, "name": peer.name, "transports": transports,
                          "producers": producers, "consumers": consumers})
        return {"roomId": self.id, "peers": peers, "registry": await self.sfu.dump()}


# ------------------------------------------------------------------ request handlers

def _require(data: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(field)
    if not isinstance(value, kind):
        raise SignalingError(f"{field} is missing or has the wrong type")
    return value


class Signaling:
    """Dispatches one peer's requests (``method`` → handler) against the app's rooms."""

    def __init__(self, app: web.Application, peer: Peer) -> None:
        self.app = app
        self.peer = peer

    def room(self) -> Room:
        if self.peer.room is None:
            raise SignalingError("join a room first")
        return self.peer.room

    async def handle(self, method: str, data: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "on_" + method, None) if method.isidentifier() else None
        if handler is None:
            raise SignalingError(f"unknown method {method!r}")
        return await handler(data)

    async def on_join(self, data: dict[str, Any]) -> dict[str, Any]:
        peer = self.peer
        if peer.room is not None:
            raise SignalingError("already joined")
        room_id = _require(data, "roomId", str)
        peer.name = str(data.get("peerName") or peer.id)[:64]
        state = self.app[APP_KEY_STATE]
        if state["debug_hooks"] and data.get("debugReceiveLoss") is not None:
            loss = float(data["debugReceiveLoss"])
            if not 0.0 <= loss < 1.0:
                raise SignalingError("debugReceiveLoss must be in [0, 1)")
            peer.debug_receive_loss = loss
        room = await get_or_create_room(self.app, room_id)
        if peer.closed or room.closed:
            raise SignalingError("peer or room closed while joining")
        peers = room.add_peer(peer)
        log.info("room %s: %s (%s) joined", room.id, peer.name, peer.id)
        return {"routerRtpCapabilities": await room.sfu.get_rtp_capabilities(), "peers": peers}

    async def on_createWebRtcTransport(self, data: dict[str, Any]) -> dict[str, Any]:
        room, peer = self.room(), self.peer
        direction = data.get("direction")
        if direction not in ("send", "recv"):
            raise SignalingError("direction must be 'send' or 'recv'")
        transport = await room.sfu.create_webrtc_transport(listen_infos=room.listen_infos())
        if peer.closed:
            transport.close()
            raise SignalingError("peer closed")
        peer.transports[transport.id] = transport
        if direction == "send":
            peer.send_transport = transport
            if room.debug_hooks and peer.debug_receive_loss > 0.0:
                await transport.set_debug_receive_loss(peer.debug_receive_loss)
        else:
            peer.recv_transport = transport
        transport.on("dtlsstatechange", lambda state, *_: log.debug(
            "peer %s transport %s dtls %s", peer.id, transport.id, state))
        return {
            "id": transport.id,
            "iceParameters": transport.ice_parameters,
            "iceCandidates": transport.ice_candidates,
            "dtlsParameters": transport.dtls_parameters,
            "sctpParameters": transport.sctp_parameters,
        }

    def _transport(self, data: dict[str, Any]) -> Any:
        transport_id = _require(data, "transportId", str)
        transport = self.peer.transports.get(transport_id)
        if transport is None:
            raise SignalingError(f"transport {transport_id} not found")
        return transport

    async def on_connectWebRtcTransport(self, data: dict[str, Any]) -> dict[str, Any]:
        transport = self._transport(data)
        await transport.connect(dtls_parameters=_require(data, "dtlsParameters", dict))
        return {}

    async def on_produce(self, data: dict[str, Any]) -> dict[str, Any]:
        room, peer = self.room(), self.peer
        transport = self._transport(data)
        kind = data.get("kind")
        if kind not in ("audio", "video"):
            raise SignalingError("kind must be 'audio' or 'video'")
        app_data = dict(data.get("appData") or {})
        app_data["peerId"] = peer.id
        producer = await room.sfu.produce(transport, kind=kind,
                                          rtp_parameters=_require(data, "rtpParameters", dict),
                                          app_data=app_data)
        if peer.closed:
            producer.close()
            raise SignalingError("peer closed")
        producer_id = producer.id
        peer.producers[producer_id] = producer
        producer.on("transportclose", lambda *_: peer.producers.pop(producer_id, None))
        room.fan_out(peer, producer)
        return {"id": producer_id}

    # --- simulcast / SVC (issue 5) ---
    async def on_setConsumerPreferredLayers(self, data: dict[str, Any]) -> dict[str, Any]:
        """``{consumerId, spatialLayer, temporalLayer?}`` -> ``{preferredLayers}``: the tile's
        layer selector (mediasoup ``consumer.setPreferredLayers``)."""
        consumer_id = _require(data, "consumerId", str)
        consumer = self.peer.consumers.get(consumer_id)
        if consumer is None:
            raise SignalingError(f"consumer {consumer_id} not found")
        spatial = data.get("spatialLayer")
        temporal = data.get("temporalLayer")
        if not isinstance(spatial, int) or isinstance(spatial, bool) or spatial < 0:
            raise SignalingError("spatialLayer must be an int >= 0")
        if temporal is not None and (not isinstance(temporal, int) or isinstance(temporal, bool) or temporal < 0):
            raise SignalingError("temporalLayer must be an int >= 0")
        await consumer.set_preferred_layers(spatial, temporal)
        return {"preferredLayers": consumer.preferred_layers}
    # --- end simulcast / SVC ---

    async def on_setRtpCapabilities(self, data: dict[str, Any]) -> dict[str, Any]:
        room, peer = self.room(), self.peer
        first = peer.rtp_capabilities is None
        peer.rtp_capabilities = _require(data, "rtpCapabilities", dict)
        if first:
            room.consume_all(peer)
        return {}

    async def _set_producer_paused(self, data: dict[str, Any], paused: bool) -> dict[str, Any]:
        room, peer = self.room(), self.peer
        producer_id = _require(data, "producerId", str)
        producer = peer.producers.get(producer_id)
        if producer is None:
            raise SignalingError(f"producer {producer_id} not found")
        await (producer.pause() if paused else producer.resume())
        method = "producerPaused" if paused else "producerResumed"
        for other in room.others(peer):
            other.notify(method, {"peerId": peer.id, "producerId": producer_id,
                                  "kind": producer.kind})
        return {}

    async def on_pauseProducer(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._set_producer_paused(data, True)

    async def on_resumeProducer(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._set_producer_paused(data, False)

    async def on_leave(self, data: dict[str, Any]) -> dict[str, Any]:
        leave_room(self.app, self.peer)
        return {}


# ------------------------------------------------------------------ app

async def get_or_create_room(app: web.Application, room_id: str) -> Room:
    """The room ``room_id``, created on first use (its first router opens with its first
    transport)."""
    rooms = app[APP_KEY_ROOMS]
    state = app[APP_KEY_STATE]
    async with state["rooms_lock"]:
        room = rooms.get(room_id)
        if room is None:
            manager = await _manager(app)
            room = Room(room_id, manager.room(room_id), debug_hooks=state["debug_hooks"],
                        listen_ip=state["listen_ip"], announced_address=state["announced_address"])
            rooms[room_id] = room
            log.info("room %s created", room_id)
        return room


def leave_room(app: web.Application, peer: Peer) -> None:
    """Take ``peer`` out of its room (if any); close the room when it is left empty."""
    room, peer.room = peer.room, None
    if room is None:
        peer.close()
        return
    room.remove_peer(peer)
    log.info("room %s: %s (%s) left", room.id, peer.name, peer.id)
    rooms = app[APP_KEY_ROOMS]
    if not room.peers and rooms.get(room.id) is room:
        del rooms[room.id]
        room.close()
        log.info("room %s closed", room.id)


async def _manager(app: web.Application) -> Any:
    """The app's RoomManager, started on first use (with its workers unless some were given)."""
    state = app[APP_KEY_STATE]
    if state["manager"] is None:
        from raysfu.actors import RoomManager, create_workers  # deferred: starts/attaches Ray

        workers = state["workers"]
        if workers is None:
            workers = await create_workers(state["num_workers"])
            state["own_workers"] = workers
        state["manager"] = await RoomManager.start(
            workers, media_codecs=MEDIA_CODECS, registry_name=state["registry_name"], **state["limits"])
    return state["manager"]


async def _ws_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    peer = Peer(ws)
    signaling = Signaling(app, peer)
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(message: dict[str, Any]) -> None:
        request_id = message.get("id")
        method = str(message.get("method"))
        try:
            data = await signaling.handle(method, message.get("data") or {})
        except SignalingError as exc:
            peer.respond(request_id, error=str(exc))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the client
            log.warning("peer %s: %s failed: %r", peer.id, method, exc)
            peer.respond(request_id, error=f"{type(exc).__name__}: {exc}")  # type: ignore[arg-type]
        else:
            peer.respond(request_id, data=data)  # type: ignore[arg-type]

    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                message = json.loads(msg.data)
            except ValueError:
                log.warning("peer %s: non-JSON message dropped", peer.id)
                continue
            if not isinstance(message, dict):
                continue
            if message.get("response"):
                peer.on_response(message)
            elif message.get("request"):
                # Requests run concurrently: a client answering newConsumer may need its recv
                # transport connected first (connectWebRtcTransport) while we wait for it.
                task = asyncio.get_running_loop().create_task(serve(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        leave_room(app, peer)
        for task in list(tasks):
            task.cancel()
    return ws


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _debug_room(request: web.Request) -> web.Response:
    room = request.app[APP_KEY_ROOMS].get(request.match_info["room_id"])
    if room is None:
        raise web.HTTPNotFound(text="no such room")
    return web.json_response(await room.stats())


async def _on_startup(app: web.Application) -> None:
    if not (STATIC_DIR / "bundle.js").exists():
        log.warning("%s is missing: build it with `make bundle` (npm ci && npm run build in demo/)",
                    STATIC_DIR / "bundle.js")
    await _manager(app)


async def _on_cleanup(app: web.Application) -> None:
    for room in list(app[APP_KEY_ROOMS].values()):
        room.close()
    app[APP_KEY_ROOMS].clear()
    state = app[APP_KEY_STATE]
    if state["manager"] is not None:
        await state["manager"].close()
        if state["own_registry"]:
            import ray

            ray.kill(state["manager"].registry)
        state["manager"] = None
    for worker in state["own_workers"]:
        worker.close()
    state["own_workers"] = []


def create_app(*, debug_hooks: bool = False, listen_ip: str = "127.0.0.1",
               announced_address: str | None = None, worker: Any = None,
               workers: list[Any] | None = None, num_workers: int | None = None,
               max_consumers_per_router: int | None = 500,
               max_transports_per_router: int | None = None,
               registry_name: str | None = None) -> web.Application:
    """Build the demo aiohttp app.

    - ``debug_hooks``: honour ``debugReceiveLoss`` in ``join`` and serve ``/debug/rooms/{id}``.
    - ``listen_ip``: the IP the rooms' WebRtcTransports bind (mediasoup ``listenInfos[].ip``).
    - ``announced_address``: the address put in ICE candidates instead (NAT, containers).
    - ``workers`` (or one ``worker``): raysfu Workers for the rooms; by default
      ``create_workers(num_workers)`` makes them at startup (one per CPU of the Ray cluster when
      ``num_workers`` is None; an embedded local Ray starts if none runs) and closes them at
      cleanup.
    - ``max_consumers_per_router`` / ``max_transports_per_router``: when a room's routers are
      all at a limit, the room opens a router on another worker (None: no limit).
    - ``registry_name``: the room registry actor's name (default: one per app, so two demo
      servers on one cluster do not share rooms unless given the same name).

    ``app[APP_KEY_ROOMS]`` maps room id → :class:`Room` for in-process inspection.
    """
    app = web.Application()
    app[APP_KEY_ROOMS] = {}
    app[APP_KEY_STATE] = {
        "debug_hooks": debug_hooks,
        "listen_ip": listen_ip,
        "announced_address": announced_address,
        "workers": list(workers) if workers is not None else ([worker] if worker is not None else None),
        "num_workers": num_workers,
        "own_workers": [],
        "manager": None,
        "limits": {"max_consumers_per_router": max_consumers_per_router,
                   "max_transports_per_router": max_transports_per_router},
        "registry_name": registry_name or f"raysfu-demo-{uuid.uuid4().hex[:8]}",
        "own_registry": registry_name is None,
        "rooms_lock": asyncio.Lock(),
    }
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _ws_handler)
    if debug_hooks:
        app.router.add_get("/debug/rooms/{room_id}", _debug_room)
    app.router.add_static("/", STATIC_DIR, show_index=False)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


async def serve(*, host: str = "127.0.0.1", port: int = 8080, listen_ip: str = "127.0.0.1",
                announced_address: str | None = None, debug_hooks: bool = False,
                ready: Callable[[str], None] | None = None, **room_options: Any) -> None:
    """Run the demo until cancelled. ``ready(url)`` is called once it accepts connections;
    ``room_options`` are :func:`create_app`'s ``num_workers``, ``max_consumers_per_router``,
    ``max_transports_per_router``, ``registry_name``."""
    app = create_app(debug_hooks=debug_hooks, listen_ip=listen_ip,
                     announced_address=announced_address, **room_options)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://{shown}:{port}"
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
