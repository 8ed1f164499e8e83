"""A WorkerActor killed mid-stream: its handle emits died, what it hosted closes, pipes to it
are closed on the surviving side, and the other worker's own streams keep flowing without a gap.
(Its own module: it needs both CPUs of the test session's Ray for its two workers.)"""

from __future__ import annotations

import asyncio
import copy

from raysfu.actors import create_worker
from raysfu.transport.rtp import parse_rtp_header

from .conftest import MEDIA_CODECS, VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for
from .test_forwarding import vp8

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


async def test_killed_worker_closes_its_pipes_and_the_rest_keeps_forwarding(ray_session):
    import ray

    wa = await create_worker()
    wb = await create_worker()
    ra = await wa.create_router(media_codecs=MEDIA_CODECS)
    rb = await wb.create_router(media_codecs=MEDIA_CODECS)
    # a producer on A, piped to B and consumed there
    t_a = await ra.create_webrtc_transport(listen_infos=LISTEN)
    pub_a = await connect_peer(t_a)
    producer_a = await t_a.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    await ra.pipe_to_router(producer_id=producer_a.id, router=rb)
    # a producer on B, consumed on B
    t_b = await rb.create_webrtc_transport(listen_infos=LISTEN)
    pub_b = await connect_peer(t_b)
    producer_b = await t_b.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    t_sub = await rb.create_webrtc_transport(listen_infos=LISTEN)
    sub = await connect_peer(t_sub)
    caps = client_caps(rb.rtp_capabilities)
    c_remote = await t_sub.consume(producer_id=producer_a.id, rtp_capabilities=caps)
    c_local = await t_sub.consume(producer_id=producer_b.id, rtp_capabilities=caps)
    local_ssrc = c_local.rtp_parameters["encodings"][0]["ssrc"]
    events = []
    wa.on("died", lambda err: events.append("a:died"))
    ra.on("workerclose", lambda: events.append("ra:workerclose"))
    c_remote.on("producerclose", lambda: events.append("c_remote:producerclose"))
    c_local.on("producerclose", lambda: events.append("c_local:producerclose"))
    for i in range(20):
        pub_a.send_rtp(vp8(i, 3000 * i, key=(i == 0)))
        pub_b.send_rtp(vp8(i, 3000 * i, key=(i == 0)))
        await asyncio.sleep(0.005)
    assert await wait_for(lambda: len(sub.received_rtp) == 40, 5.0)
    ray.kill(wa.actor)
    assert await wait_for(lambda: {"a:died", "ra:workerclose", "c_remote:producerclose"} <= set(events), 10.0), events
    assert c_remote.closed and not c_local.closed and "c_local:producerclose" not in events
    sub.received_rtp.clear()
    for i in range(20, 60):
        pub_b.send_rtp(vp8(i, 3000 * i))
        await asyncio.sleep(0.002)
    assert await wait_for(lambda: len(sub.received_rtp) == 40, 5.0), len(sub.received_rtp)
    seqs = [parse_rtp_header(p)[2] for p in sub.received_rtp]
    assert all(parse_rtp_header(p)[4] == local_ssrc for p in sub.received_rtp)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    assert len((await rb.dump())["transportIds"]) == 2  # the B pipe transport was closed too
    for p in (pub_a, pub_b, sub):
        p.close()
    wb.close()
    await asyncio.sleep(0.5)
