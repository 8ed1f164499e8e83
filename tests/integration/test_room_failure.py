"""A room spread over two workers loses one mid-stream: the registry drops the dead worker's
router, the room says so, consumers of its producers close, and the surviving router's own
streams keep flowing without a gap. (Its own module: it needs both CPUs of the session's Ray.)"""

from __future__ import annotations

import asyncio
import copy
import uuid

import ray

from raysfu.actors import RoomManager, create_worker
from raysfu.transport.rtp import parse_rtp_header

from .conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for
from .test_forwarding import vp8

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


async def test_room_survives_a_killed_worker(ray_session):
    wa = await create_worker()
    wb = await create_worker()
    manager = await RoomManager.start([wa, wb], media_codecs=MEDIA_CODECS, max_consumers_per_router=None,
                                      max_transports_per_router=2, registry_name=f"test-reg-{uuid.uuid4().hex[:6]}")
    room = manager.room("failure")
    caps = client_caps(await room.get_rtp_capabilities())
    # peer 1: both transports on the first router; peer 2: both on the second.
    t1_send = await room.create_webrtc_transport(listen_infos=LISTEN)
    t1_recv = await room.create_webrtc_transport(listen_infos=LISTEN)
    t2_send = await room.create_webrtc_transport(listen_infos=LISTEN)
    t2_recv = await room.create_webrtc_transport(listen_infos=LISTEN)
    assert t1_send._router is t1_recv._router and t2_send._router is t2_recv._router
    assert t1_send._router.worker is not t2_send._router.worker
    pub1, pub2, sub2 = [await connect_peer(t) for t in (t1_send, t2_send, t2_recv)]
    p1 = await room.produce(t1_send, kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    p2 = await room.produce(t2_send, kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    c_remote = await room.consume(t2_recv, producer_id=p1.id, rtp_capabilities=caps)  # piped from router 1
    c_local = await room.consume(t2_recv, producer_id=p2.id, rtp_capabilities=caps)
    local_ssrc = c_local.rtp_parameters["encodings"][0]["ssrc"]
    dead = t1_send._router.worker
    events: list[str] = []
    dead.on("died", lambda err: events.append("died"))
    room.on("routerclose", lambda rid: events.append("routerclose"))
    manager.on("workerdied", lambda w: events.append("workerdied"))
    c_remote.on("producerclose", lambda: events.append("c_remote:producerclose"))
    for i in range(20):
        pub1.send_rtp(vp8(i, 3000 * i, key=(i == 0)))
        pub2.send_rtp(vp8(i, 3000 * i, key=(i == 0)))
        await asyncio.sleep(0.005)
    assert await wait_for(lambda: len(sub2.received_rtp) == 40, 5.0)
    ray.kill(dead.actor)
    assert await wait_for(lambda: {"died", "routerclose", "workerdied", "c_remote:producerclose"} <= set(events), 10.0), events
    state = await room.dump()
    assert list(state["routers"]) == [t2_send._router.id]
    assert list(state["producers"]) == [p2.id]
    assert c_remote.closed and not c_local.closed
    sub2.received_rtp.clear()
    for i in range(20, 60):
        pub2.send_rtp(vp8(i, 3000 * i))
        await asyncio.sleep(0.002)
    assert await wait_for(lambda: len(sub2.received_rtp) == 40, 5.0), len(sub2.received_rtp)
    seqs = [parse_rtp_header(p)[2] for p in sub2.received_rtp]
    assert all(parse_rtp_header(p)[4] == local_ssrc for p in sub2.received_rtp)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    # The room keeps placing on what is left.
    t3 = await room.create_webrtc_transport(listen_infos=LISTEN)
    assert t3._router is t2_send._router
    for p in (pub1, pub2, sub2):
        p.close()
    await manager.close(close_workers=True)
    ray.kill(manager.registry)
    await asyncio.sleep(0.5)
