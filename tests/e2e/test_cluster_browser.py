"""Two Chromium peers whose transports sit on routers in two different WorkerActors, joined by a
pipe (the demo's rooms with ``max_transports_per_router=2``: each peer's send and recv transports
fill one router, so the second peer opens a router on the other worker). Each decodes the other's
video, and a PLI the consumer's browser sends crosses the pipe to the producer's browser.

Its own module with its own demo app: it needs two workers, both CPUs of the session's Ray."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from .test_browser import _by_peer, _poll

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
async def demo_server(ray_session):
    """The demo app on two workers, each router limited to two transports."""
    from aiohttp import web

    from raysfu.demo import create_app

    from .conftest import _ensure_bundle

    _ensure_bundle()
    app = create_app(debug_hooks=True, listen_ip="127.0.0.1", num_workers=2, max_transports_per_router=2)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


async def _room_debug(base_url: str, room: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/debug/rooms/{room}") as resp:
            assert resp.status == 200
            return await resp.json()


async def test_peers_on_two_workers_see_each_other_through_a_pipe(open_peer, demo_server):
    base_url, app = demo_server
    alice = await open_peer("spread", "alice")
    bob = await open_peer("spread", "bob")
    peers = [alice, bob]

    debug = await _room_debug(base_url, "spread")
    pids = {p["name"]: {t["workerPid"] for t in p["transports"]} for p in debug["peers"]}
    assert len(pids["alice"]) == 1 and len(pids["bob"]) == 1 and pids["alice"] != pids["bob"], pids
    assert len(debug["registry"]["routers"]) == 2

    async def check():
        stats = {p.name: await p.stats() for p in peers}
        problems = []
        for p, other in ((alice, "bob"), (bob, "alice")):
            sent = _by_peer(stats[other]["outbound"], other, "video") or {}
            video = _by_peer(stats[p.name]["inbound"], other, "video")
            audio = _by_peer(stats[p.name]["inbound"], other, "audio")
            if video is None or audio is None:
                problems.append(f"{p.name} lacks a consumer of {other}")
                continue
            if video["framesDecoded"] < 60:
                problems.append(f"{p.name}<-{other} framesDecoded {video['framesDecoded']}")
            w, sw = video["frameWidth"], sent.get("frameWidth") or 0  # a simulcast layer BWE picked
            if not w or not sw or w > sw or video["frameHeight"] * sw != w * (sent.get("frameHeight") or 0):
                problems.append(f"{p.name}<-{other} frameWidth {video['frameWidth']} vs {sent.get('frameWidth')}")
            if audio["packetsReceived"] <= 0:
                problems.append(f"{p.name}<-{other} no audio")
        return not problems, {"problems": problems, "stats": stats}

    started = time.monotonic()
    ok, info = await _poll(check, timeout_s=40.0)
    print(f"two workers: media checks passed={ok} after {time.monotonic() - started:.1f} s")
    assert ok, (f"media did not flow across the pipe: {info['problems']}\n"
                f"stats: {json.dumps(info['stats'], indent=1)}\n" + "\n".join(p.console_tail(10) for p in peers))

    # A PLI from bob's browser (consumer of alice's video, on the other worker) reaches alice's
    # browser. Blacking out bob's video for > 3 s makes Chromium ask for a keyframe ("no
    # decodable frame"); the blackout drops only what bob's transport sends, so nothing upstream
    # sees loss and any PLI alice gets in that window came from bob, across the pipe.
    room = app_room(app, "spread")
    bob_peer = next(p for p in room.peers.values() if p.name == "bob")
    bob_consumer = next(c for c in bob_peer.consumers.values() if c.kind == "video")
    before_alice = _by_peer((await alice.stats())["outbound"], "alice", "video")["pliCount"]
    before_bob = _by_peer((await bob.stats())["inbound"], "alice", "video")["pliCount"]
    server_before = (await bob_consumer.get_stats())[0].get("pliCount", 0)
    await bob_peer.recv_transport.set_debug_send_loss(0.999)

    async def pli_seen():
        a = _by_peer((await alice.stats())["outbound"], "alice", "video")["pliCount"]
        b = _by_peer((await bob.stats())["inbound"], "alice", "video")["pliCount"]
        return (b > before_bob and a > before_alice), {"alice_pli_received": a, "bob_pli_sent": b}

    try:
        ok, counts = await _poll(pli_seen, timeout_s=15.0, interval_s=0.5)
    finally:
        await bob_peer.recv_transport.set_debug_send_loss(0.0)
    server_after = (await bob_consumer.get_stats())[0].get("pliCount", 0)
    assert ok, f"PLI did not cross: before alice={before_alice} bob={before_bob}, now {counts}"
    assert server_after > server_before, (server_before, server_after)

    # After the blackout bob decodes again.
    frames = _by_peer((await bob.stats())["inbound"], "alice", "video")["framesDecoded"]

    async def decoding_again():
        now = _by_peer((await bob.stats())["inbound"], "alice", "video")["framesDecoded"]
        return now > frames + 30, now

    ok, now = await _poll(decoding_again, timeout_s=15.0, interval_s=0.5)
    assert ok, f"bob did not resume decoding: {frames} -> {now}"


def app_room(app, room_id: str):
    from raysfu.demo.server import APP_KEY_ROOMS

    return app[APP_KEY_ROOMS][room_id]
