"""Rooms that span workers (two WorkerActors, the registry actor, real UDP on 127.0.0.1): a room
grows onto a second worker when a router reaches its limit, consuming across routers pipes the
producer once, the registry is shared by another process's view, handles pickle, and a killed
worker leaves the rest of the room forwarding."""

from __future__ import annotations

import asyncio
import copy
import pickle
import uuid

import pytest
import ray

from raysfu.actors import InvalidStateError, RoomManager, create_worker
from raysfu.actors.room import RoomRegistry
from raysfu.transport.rtp import parse_rtp_header

from .conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for
from .test_forwarding import vp8

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


@pytest.fixture(scope="module")
async def two_workers(ray_session):
    a = await create_worker()
    b = await create_worker()
    yield a, b
    a.close()
    b.close()
    await asyncio.sleep(0.5)


@pytest.fixture
async def manager(two_workers):
    name = f"test-registry-{uuid.uuid4().hex[:6]}"
    m = await RoomManager.start(list(two_workers), media_codecs=MEDIA_CODECS, max_consumers_per_router=2, registry_name=name)
    yield m
    await m.close()
    ray.kill(m.registry)


async def subscriber(room, producer_id):
    caps = client_caps(await room.get_rtp_capabilities())
    t = await room.create_webrtc_transport(listen_infos=LISTEN)
    peer = await connect_peer(t)
    consumer = await room.consume(t, producer_id=producer_id, rtp_capabilities=caps)
    return t, peer, consumer


def check_stream(peer, consumer, count):
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    seqs = [parse_rtp_header(p)[2] for p in peer.received_rtp if parse_rtp_header(p)[4] == ssrc]
    assert len(seqs) == count, (len(seqs), count)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))


async def test_room_grows_onto_a_second_worker_at_its_consumer_limit(manager, two_workers):
    wa, wb = two_workers
    room = manager.room("grow")
    new_routers = []
    room.on("newrouter", new_routers.append)
    t_pub = await room.create_webrtc_transport(listen_infos=LISTEN)
    pub = await connect_peer(t_pub)
    producer = await room.produce(t_pub, kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    subs = [await subscriber(room, producer.id) for _ in range(2)]
    assert len(new_routers) == 1
    assert all(t._router is t_pub._router for t, _, _ in subs)  # the first two fit the limit of 2
    third = await subscriber(room, producer.id)  # the N+1th: a router on the other worker
    assert len(new_routers) == 2
    first_worker = t_pub._router.worker
    assert third[0]._router.worker is not first_worker and third[0]._router.worker in (wa, wb)
    fourth = await subscriber(room, producer.id)  # fits on the second router: piped only once
    assert fourth[0]._router is third[0]._router
    state = await room.dump()
    assert sorted(r["consumers"] for r in state["routers"].values()) == [2, 2]
    assert state["producers"][producer.id]["routerId"] == t_pub._router.id
    dump_a = await t_pub._router.dump()
    assert len(dump_a["transportIds"]) == 4  # publisher, two subscribers, one pipe
    for i in range(40):
        pub.send_rtp(vp8(100 + i, 3000 * i, key=(i == 0)))
        if i % 10 == 9:
            await asyncio.sleep(0.01)
    everyone = subs + [third, fourth]
    assert await wait_for(lambda: all(len(p.received_rtp) >= 40 for _, p, _ in everyone), 5.0)
    for _, peer, consumer in everyone:
        check_stream(peer, consumer, 40)
    # Closing a consumer frees a slot on its router: the next transport goes there.
    subs[0][2].close()
    await asyncio.sleep(0.2)
    fifth = await room.create_webrtc_transport(listen_infos=LISTEN)
    assert fifth._router is t_pub._router
    for _, p, _ in everyone:
        p.close()
    pub.close()


async def test_registry_is_shared_and_handles_pickle(manager, two_workers):
    room = manager.room("shared")
    t = await room.create_webrtc_transport(listen_infos=LISTEN)
    producer = await room.produce(t, kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    # Another view of the same registry (what a second application process would open).
    other = RoomManager(list(two_workers), manager.registry, media_codecs=MEDIA_CODECS,
                        max_consumers_per_router=2, max_transports_per_router=None,
                        max_packets_per_second_per_router=None)
    other_room = other.room("shared")
    assert producer.id in await other_room.producers()
    assert await other_room.can_consume(producer_id=producer.id, rtp_capabilities=client_caps(t._router.rtp_capabilities))
    assert not await other_room.can_consume(producer_id="nope", rtp_capabilities=client_caps(t._router.rtp_capabilities))
    # Worker and Router handles pickle (to the same actor and router); other handles refuse.
    router = t._router
    again = pickle.loads(pickle.dumps(router))
    assert again is router  # same process: the existing handle
    assert (await again.dump())["id"] == router.id

    @ray.remote(num_cpus=0)
    def router_id_seen_remotely(r):
        import asyncio as aio

        async def go():
            return (await r.dump())["id"]

        return aio.run(go())

    assert await router_id_seen_remotely.remote(router) == router.id
    with pytest.raises(TypeError, match="does not pickle"):
        pickle.dumps(producer)


async def test_bad_arguments(manager, two_workers):
    with pytest.raises(TypeError, match="max_consumers_per_router"):
        await RoomManager.start(list(two_workers), max_consumers_per_router=0)
    with pytest.raises(TypeError, match="workers"):
        await RoomManager.start(["x"])
    with pytest.raises(TypeError, match="room_id"):
        manager.room("")
    room = manager.room("bad")
    t = await room.create_webrtc_transport(listen_infos=LISTEN)
    with pytest.raises(ValueError, match="not in room"):
        await room.consume(t, producer_id="missing", rtp_capabilities=client_caps(t._router.rtp_capabilities))
    other = manager.room("bad2")
    with pytest.raises(ValueError, match="not on a router of room"):
        await other.produce(t, kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    await room.close()
    with pytest.raises(InvalidStateError):
        await room.create_webrtc_transport(listen_infos=LISTEN)
    assert t.closed


def test_registry_logic_without_ray():
    reg = RoomRegistry()
    reg.register_worker("w1", None, "n1", "10.0.0.1")
    reg.register_worker("w2", None, "n1", "10.0.0.1")
    reg.add_router("r", "ra", "w1", "n1", {})
    reg.add_router("r", "rb", "w2", "n1", {})
    reg.add_producer("r", "p", "ra", "video", {})
    reg.count("r", "ra", "consumers", 3)
    reg.count("r", "rb", "consumers", -5)  # floored at 0
    assert reg.worker_consumers() == {"w1": 3, "w2": 0}
    assert reg.drop_worker("w1") == [["r", "ra"]]
    state = reg.get_room("r")
    assert list(state["routers"]) == ["rb"] and state["producers"] == {}
    assert reg.close_room("r") == ["rb"] and reg.get_room("r") is None
