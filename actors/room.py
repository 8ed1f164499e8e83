"""Rooms that span workers: a registry actor and the driver-side ``RoomManager`` / ``Room``.

mediasoup leaves multi-core rooms to the application (``pipeToRouter`` by hand). Here a room is
asked for transports, producers and consumers by room id, and places them itself:

- **Registry.** A named, detached Ray actor (:class:`RoomRegistry`, name ``raysfu-room-registry``
  in namespace ``raysfu``, ``num_cpus=0``) holds room → routers → workers, each router's
  transport and consumer counts, and where each producer lives. Every application process that
  opens a :class:`RoomManager` on the same Ray cluster sees the same rooms.
- **Placement.** A new transport goes to the room's least-loaded router (fewest consumers, then
  fewest transports, then the oldest) among those under the limits
  (``max_consumers_per_router``, ``max_transports_per_router``,
  ``max_packets_per_second_per_router``). When none is under them, the room opens a router on a
  worker that hosts none of its routers yet, preferring the node of its first router, then the
  worker with the fewest consumers over all rooms. With no such worker left, the least-loaded
  router takes it anyway (logged).
- **Pipes.** Consuming a producer that lives on another router of the room pipes it there with
  ``router.pipe_to_router`` once (cached per producer and router; the pipe-transport pair per
  router pair is cached by the routers themselves), then consumes the pipe producer.
- **Failure.** A worker that dies (its handle emits ``died``) has its routers dropped from the
  registry and from every room of this manager; the room emits ``routerclose``; the rest of the
  room keeps forwarding. Pipes to the dead router close on their own (see ``pipe_to_router``).

Limits are per router; a room never moves an existing transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from raysfu.transport import ortc
from raysfu.transport.errors import InvalidStateError

from .api import Consumer, Producer, Router, Transport, WebRtcTransport, Worker, _Emitter, attach_worker

log = logging.getLogger("raysfu.room")

REGISTRY_NAME = "raysfu-room-registry"
REGISTRY_NAMESPACE = "raysfu"


class RoomRegistry:
    """The cluster's room registry (run as a named, detached Ray actor by :func:`get_registry`).

    State, all JSON-like: ``rooms[room_id] = {"routers": {router_id: {"workerKey", "nodeId",
    "rtpCapabilities", "transports", "consumers", "order"}}, "producers": {producer_id:
    {"routerId", "kind", "consumableRtpParameters"}}}`` and ``workers[worker_key] = {"actor",
    "nodeId", "nodeIp"}``. Methods are small and synchronous, so each is atomic in the actor.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, dict] = {}
        self._workers: dict[str, dict] = {}
        self._order = 0

    def register_worker(self, worker_key: str, actor: Any, node_id: str, node_ip: str) -> None:
        self._workers[worker_key] = {"actor": actor, "nodeId": node_id, "nodeIp": node_ip}

    def worker_actor(self, worker_key: str) -> Any:
        """The Ray actor handle of ``worker_key`` (None when unknown or dropped)."""
        w = self._workers.get(worker_key)
        return w["actor"] if w else None

    def get_room(self, room_id: str) -> dict | None:
        """A copy of the room's state (see the class docstring), or None."""
        room = self._rooms.get(room_id)
        if room is None:
            return None
        return {"routers": {k: dict(v) for k, v in room["routers"].items()}, "producers": dict(room["producers"])}

    def room_ids(self) -> list[str]:
        return sorted(self._rooms)

    def add_router(self, room_id: str, router_id: str, worker_key: str, node_id: str, rtp_capabilities: dict) -> None:
        room = self._rooms.setdefault(room_id, {"routers": {}, "producers": {}})
        self._order += 1
        room["routers"][router_id] = {
            "workerKey": worker_key,
            "nodeId": node_id,
            "rtpCapabilities": rtp_capabilities,
            "transports": 0,
            "consumers": 0,
            "order": self._order,
        }

    def remove_router(self, room_id: str, router_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        room["routers"].pop(router_id, None)
        room["producers"] = {p: v for p, v in room["producers"].items() if v["routerId"] != router_id}
        if not room["routers"]:
            del self._rooms[room_id]

    def count(self, room_id: str, router_id: str, field: str, delta: int) -> None:
        """Add ``delta`` to ``field`` ("transports" | "consumers") of a router (floored at 0)."""
        router = self._rooms.get(room_id, {}).get("routers", {}).get(router_id)
        if router is not None:
            router[field] = max(0, router[field] + delta)

    def add_producer(self, room_id: str, producer_id: str, router_id: str, kind: str, consumable: dict) -> None:
        room = self._rooms.get(room_id)
        if room is not None and router_id in room["routers"]:
            room["producers"][producer_id] = {"routerId": router_id, "kind": kind, "consumableRtpParameters": consumable}

    def remove_producer(self, room_id: str, producer_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None:
            room["producers"].pop(producer_id, None)

    def worker_consumers(self) -> dict[str, int]:
        """Consumers per worker key over every room (placement of new routers)."""
        out = {k: 0 for k in self._workers}
        for room in self._rooms.values():
            for r in room["routers"].values():
                out[r["workerKey"]] = out.get(r["workerKey"], 0) + r["consumers"]
        return out

    def drop_worker(self, worker_key: str) -> list[list[str]]:
        """Forget a dead worker and its routers; returns ``[[room_id, router_id], ...]``."""
        self._workers.pop(worker_key, None)
        dropped = []
        for room_id, room in list(self._rooms.items()):
            for router_id, r in list(room["routers"].items()):
                if r["workerKey"] == worker_key:
                    dropped.append([room_id, router_id])
                    self.remove_router(room_id, router_id)
        return dropped

    def close_room(self, room_id: str) -> list[str]:
        """Forget a room; returns its router ids (the caller closes them)."""
        room = self._rooms.pop(room_id, None)
        return sorted(room["routers"]) if room else []


def get_registry(name: str = REGISTRY_NAME) -> Any:
    """The registry actor ``name`` in namespace ``raysfu``: found if it exists, else started
    (detached: it outlives the process that started it; ``ray.kill`` it to remove it)."""
    import ray

    from .api import ensure_ray

    ensure_ray()
    cls = ray.remote(num_cpus=0, max_concurrency=1)(RoomRegistry)
    return cls.options(name=name, namespace=REGISTRY_NAMESPACE, lifetime="detached", get_if_exists=True).remote()


def _check_limit(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise TypeError(f"{field} must be a positive number or None")
    return value


class RoomManager(_Emitter):
    """The rooms of this application process, placed on a pool of workers.

    Create with :meth:`start`. Events: ``newroom(room)``, ``workerdied(worker)``.
    """

    def __init__(
        self,
        workers: list[Worker],
        registry: Any,
        *,
        media_codecs: list[dict],
        max_consumers_per_router: int | None,
        max_transports_per_router: int | None,
        max_packets_per_second_per_router: float | None,
    ) -> None:
        super().__init__()
        self._workers = list(workers)
        self._registry = registry
        self._media_codecs = media_codecs
        self.max_consumers_per_router = max_consumers_per_router
        self.max_transports_per_router = max_transports_per_router
        self.max_packets_per_second_per_router = max_packets_per_second_per_router
        self._rooms: dict[str, Room] = {}
        self._closed = False
        for w in self._workers:
            self._watch(w)

    @classmethod
    async def start(
        cls,
        workers: list[Worker] | None = None,
        *,
        num_workers: int | None = None,
        media_codecs: list[dict] | None = None,
        max_consumers_per_router: int | None = 500,
        max_transports_per_router: int | None = None,
        max_packets_per_second_per_router: float | None = None,
        registry_name: str = REGISTRY_NAME,
    ) -> "RoomManager":
        """A manager over ``workers`` (default: ``create_workers(num_workers)``, one per CPU of
        the cluster) with the shared registry ``registry_name``.

        ``media_codecs``: every router's codecs (mediasoup RtpCodecCapability dicts; all routers
        of a room must have the same, so consumers and pipes match). Limits per router: consumers,
        transports, RTP packets/s out of its worker (None: no limit). Raises ``TypeError`` naming
        a bad argument, ``ValueError`` for an empty worker list.
        """
        from .api import create_workers

        if workers is not None and (not isinstance(workers, list) or not all(isinstance(w, Worker) for w in workers)):
            raise TypeError("workers must be a list of Worker handles")
        if media_codecs is not None and not isinstance(media_codecs, list):
            raise TypeError("media_codecs must be a list")
        _check_limit(max_consumers_per_router, "max_consumers_per_router")
        _check_limit(max_transports_per_router, "max_transports_per_router")
        _check_limit(max_packets_per_second_per_router, "max_packets_per_second_per_router")
        if workers is None:
            workers = await create_workers(num_workers)
        if not workers:
            raise ValueError("workers: at least one worker is needed")
        registry = get_registry(registry_name)
        await asyncio.gather(*(registry.register_worker.remote(w.key, w.actor, w.node_id, w.node_ip) for w in workers))
        return cls(
            workers,
            registry,
            media_codecs=media_codecs or [],
            max_consumers_per_router=max_consumers_per_router,
            max_transports_per_router=max_transports_per_router,
            max_packets_per_second_per_router=max_packets_per_second_per_router,
        )

    @property
    def workers(self) -> list[Worker]:
        """The live workers of the pool."""
        return [w for w in self._workers if not w.closed]

    @property
    def registry(self) -> Any:
        """The registry's Ray actor handle."""
        return self._registry

    @property
    def rooms(self) -> dict[str, "Room"]:
        return dict(self._rooms)

    def room(self, room_id: str) -> "Room":
        """The room ``room_id`` (created empty on first use; its first router opens with its
        first transport or :meth:`Room.get_rtp_capabilities`). Raises ``TypeError`` for a bad
        id, ``InvalidStateError`` when the manager is closed."""
        if not isinstance(room_id, str) or not room_id:
            raise TypeError("room_id must be a non-empty string")
        if self._closed:
            raise InvalidStateError("room manager closed")
        room = self._rooms.get(room_id)
        if room is None:
            room = Room(self, room_id)
            self._rooms[room_id] = room
            self.emit("newroom", room)
        return room

    def _watch(self, worker: Worker) -> None:
        def on_died(*_: Any) -> None:
            asyncio.ensure_future(self._worker_died(worker))

        worker.on("died", on_died)

    async def _worker_died(self, worker: Worker) -> None:
        try:
            dropped = await self._registry.drop_worker.remote(worker.key)
        except Exception as exc:  # registry gone: still clean our own view
            log.warning("registry drop_worker failed: %s", exc)
            dropped = []
        dropped_ids = {router_id for _, router_id in dropped}
        for room in self._rooms.values():
            for router_id, router in list(room._routers.items()):
                if router_id in dropped_ids or router._worker is worker:
                    room._forget_router(router_id)
        self.emit("workerdied", worker)

    async def close(self, *, close_workers: bool = False) -> None:
        """Close every room of this manager (their routers and what they hold) and forget them in
        the registry; with ``close_workers`` also close the pool."""
        if self._closed:
            return
        self._closed = True
        for room in list(self._rooms.values()):
            await room.close()
        if close_workers:
            for w in self._workers:
                w.close()


class Room(_Emitter):
    """One room: routers on several workers, joined by pipes as needed.

    Events: ``newrouter(router)``, ``routerclose(router_id)``, ``close``.
    """

    def __init__(self, manager: RoomManager, room_id: str) -> None:
        super().__init__()
        self._manager = manager
        self._id = room_id
        self._routers: dict[str, Router] = {}
        self._placement_lock = asyncio.Lock()
        self._piped: dict[tuple[str, str], asyncio.Future] = {}
        self._closed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def routers(self) -> dict[str, Router]:
        """This process's handles of the room's routers, by id."""
        return dict(self._routers)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError("room closed")

    # -- placement ---------------------------------------------------------------------------
    async def _state(self) -> dict:
        return await self._manager._registry.get_room.remote(self._id) or {"routers": {}, "producers": {}}

    async def _router_handle(self, router_id: str, info: dict) -> Router | None:
        """This process's handle of a router of the room (attached when another process made it)."""
        router = self._routers.get(router_id)
        if router is not None and not router.closed:
            return router
        worker = next((w for w in self._manager.workers if w.key == info["workerKey"]), None)
        if worker is None:
            actor = await self._manager._registry.worker_actor.remote(info["workerKey"])
            if actor is None:
                return None
            try:
                worker = await attach_worker(actor)
            except InvalidStateError:
                return None
        router = worker.router_handle(router_id, info["rtpCapabilities"])
        self._adopt(router)
        return router

    def _adopt(self, router: Router) -> None:
        self._routers[router.id] = router
        router.observer.on("close", lambda: self._forget_router(router.id))

    def _forget_router(self, router_id: str) -> None:
        if self._routers.pop(router_id, None) is None:
            return
        for key in [k for k in self._piped if k[1] == router_id]:
            self._piped.pop(key, None)
        asyncio.ensure_future(self._registry_call("remove_router", self._id, router_id))
        self.emit("routerclose", router_id)

    async def _registry_call(self, method: str, *args: Any) -> Any:
        if self._closed and method != "close_room":  # close_room already forgot the room
            return None
        try:
            return await getattr(self._manager._registry, method).remote(*args)
        except Exception as exc:  # the registry is advisory for cleanup calls
            log.warning("registry %s failed: %s", method, exc)
            return None

    def _under_limits(self, info: dict, loads: dict[str, dict]) -> bool:
        m = self._manager
        if m.max_consumers_per_router is not None and info["consumers"] >= m.max_consumers_per_router:
            return False
        if m.max_transports_per_router is not None and info["transports"] >= m.max_transports_per_router:
            return False
        if m.max_packets_per_second_per_router is not None:
            load = loads.get(info["workerKey"])
            if load is not None and load["packetsOutPerSecond"] >= m.max_packets_per_second_per_router:
                return False
        return True

    async def _loads(self, state: dict) -> dict[str, dict]:
        if self._manager.max_packets_per_second_per_router is None:
            return {}
        out = {}
        for w in self._manager.workers:
            if any(r["workerKey"] == w.key for r in state["routers"].values()):
                try:
                    out[w.key] = await w.get_load()
                except Exception as exc:
                    log.warning("get_load of %s failed: %s", w.key, exc)
        return out

    async def _pick_router(self) -> Router:
        """The router for a new transport (see the module docstring). Caller holds the lock."""
        state = await self._state()
        loads = await self._loads(state)
        candidates = sorted(
            ((info["consumers"], info["transports"], info["order"], rid, info) for rid, info in state["routers"].items()
             if self._under_limits(info, loads)),
        )
        for *_, rid, info in candidates:
            router = await self._router_handle(rid, info)
            if router is not None:
                return router
        router = await self._open_router(state)
        if router is not None:
            return router
        # Every worker already hosts one of this room's routers: overflow onto the least loaded.
        for *_, rid, info in sorted((i["consumers"], i["transports"], i["order"], r, i) for r, i in state["routers"].items()):
            router = await self._router_handle(rid, info)
            if router is not None:
                log.warning("room %s: every router is at its limit and no worker is free; using %s", self._id, rid)
                return router
        raise InvalidStateError(f"room {self._id}: no live worker to open a router on")

    async def _open_router(self, state: dict) -> Router | None:
        used = {r["workerKey"] for r in state["routers"].values()}
        free = [w for w in self._manager.workers if w.key not in used]
        if not free:
            return None
        first = min(state["routers"].values(), key=lambda r: r["order"], default=None)
        home = first["nodeId"] if first else None
        per_worker = await self._manager._registry.worker_consumers.remote()
        order = {w.key: i for i, w in enumerate(self._manager._workers)}
        free.sort(key=lambda w: (home is not None and w.node_id != home, per_worker.get(w.key, 0), order[w.key]))
        worker = free[0]
        router = await worker.create_router(media_codecs=self._manager._media_codecs, app_data={"roomId": self._id})
        await self._manager._registry.add_router.remote(self._id, router.id, worker.key, worker.node_id, router.rtp_capabilities)
        self._adopt(router)
        self.emit("newrouter", router)
        return router

    # -- public API --------------------------------------------------------------------------
    async def get_rtp_capabilities(self) -> dict:
        """The routers' ``RtpCapabilities`` (the same for every router of the room); opens the
        first router when the room has none yet."""
        self._check_open()
        async with self._placement_lock:
            state = await self._state()
            for rid, info in state["routers"].items():
                return info["rtpCapabilities"]
            router = await self._open_router(state)
            if router is None:
                raise InvalidStateError(f"room {self._id}: no live worker to open a router on")
            return router.rtp_capabilities

    async def create_webrtc_transport(self, **options: Any) -> WebRtcTransport:
        """``router.create_webrtc_transport(**options)`` on the router placement picks; the
        transport's ``router`` tells which. Raises what that method raises."""
        self._check_open()
        async with self._placement_lock:
            router = await self._pick_router()
            transport = await router.create_webrtc_transport(**options)
            await self._manager._registry.count.remote(self._id, router.id, "transports", 1)
        transport.observer.on("close", lambda: asyncio.ensure_future(self._registry_call("count", self._id, router.id, "transports", -1)))
        return transport

    async def produce(self, transport: Transport, **options: Any) -> Producer:
        """``transport.produce(**options)``, recorded in the registry so every router of the room
        can consume it. Raises what ``produce`` raises, ``ValueError`` for a transport that is not
        on one of the room's routers."""
        self._check_open()
        router = self._router_of(transport)
        producer = await transport.produce(**options)
        await self._manager._registry.add_producer.remote(self._id, producer.id, router.id, producer.kind, producer.consumable_rtp_parameters)

        def on_close() -> None:
            asyncio.ensure_future(self._registry_call("remove_producer", self._id, producer.id))
            for key in [k for k in self._piped if k[0] == producer.id]:
                self._piped.pop(key, None)

        producer.observer.on("close", on_close)
        return producer

    async def producers(self) -> dict[str, dict]:
        """The room's producers: ``{producer_id: {"routerId", "kind", "consumableRtpParameters"}}``."""
        return (await self._state())["producers"]

    async def can_consume(self, *, producer_id: str, rtp_capabilities: dict) -> bool:
        """mediasoup ``router.canConsume()`` for a producer anywhere in the room."""
        info = (await self._state())["producers"].get(producer_id)
        if info is None:
            return False
        try:
            return ortc.can_consume(info["consumableRtpParameters"], ortc.validate_rtp_capabilities(rtp_capabilities))
        except (TypeError, ValueError):
            return False

    async def consume(self, transport: Transport, *, producer_id: str, **options: Any) -> Consumer:
        """``transport.consume(producer_id=..., **options)``; a producer on another router of the
        room is piped to this transport's router first (once per producer and router).

        Raises ``ValueError`` for a producer not in the room or a transport not on its routers,
        and what ``pipe_to_router``/``consume`` raise."""
        self._check_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty string")
        router = self._router_of(transport)
        state = await self._state()
        info = state["producers"].get(producer_id)
        if info is None:
            raise ValueError(f"producer_id: {producer_id} is not in room {self._id}")
        if info["routerId"] != router.id:
            await self._ensure_piped(producer_id, info["routerId"], router, state)
        consumer = await transport.consume(producer_id=producer_id, **options)
        await self._manager._registry.count.remote(self._id, router.id, "consumers", 1)
        consumer.observer.on("close", lambda: asyncio.ensure_future(self._registry_call("count", self._id, router.id, "consumers", -1)))
        return consumer

    async def _ensure_piped(self, producer_id: str, source_router_id: str, target: Router, state: dict) -> None:
        key = (producer_id, target.id)
        pending = self._piped.get(key)
        if pending is not None:
            await pending
            return
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._piped[key] = future
        try:
            source = await self._router_handle(source_router_id, state["routers"][source_router_id])
            if source is None:
                raise InvalidStateError(f"router {source_router_id} of producer {producer_id} is gone")
            result = await source.pipe_to_router(producer_id=producer_id, router=target)
        except BaseException as exc:
            self._piped.pop(key, None)
            future.set_exception(exc)
            future.exception()
            raise
        result["pipeProducer"].observer.on("close", lambda: self._piped.pop(key, None))
        future.set_result(None)

    def _router_of(self, transport: Transport) -> Router:
        if not isinstance(transport, Transport):
            raise TypeError("transport must be a Transport handle")
        router = transport._router
        if self._routers.get(router.id) is not router:
            raise ValueError(f"transport: {transport.id} is not on a router of room {self._id}")
        return router

    async def dump(self) -> dict:
        """The registry's view of the room (routers with worker, node and counts; producers)."""
        return await self._state()

    async def close(self) -> None:
        """Close the room's routers that this process holds and forget the room in the registry."""
        if self._closed:
            return
        self._closed = True
        await self._registry_call("close_room", self._id)
        for router in list(self._routers.values()):
            router.close()
        self._routers.clear()
        self._manager._rooms.pop(self._id, None)
        self.emit("close")
