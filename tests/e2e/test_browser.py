"""Browser end-to-end tests: headless Chromium + mediasoup-client against the demo room.

Each peer is a page in its own browser context with Chromium's fake camera (640x480 test
pattern) and microphone. Media goes browser → raysfu (Ray WorkerActor, UDP on 127.0.0.1) →
browser; the tests pass on what the receiving browsers decoded (``getStats()``), not on a
connected state.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(150)

SCREENSHOT = "/tmp/raysfu-e2e-three-peers.png"


def _by_peer(entries: list[dict[str, Any]], peer_name: str, kind: str) -> dict[str, Any] | None:
    for entry in entries:
        if entry["peerName"] == peer_name and entry["kind"] == kind:
            return entry
    return None


async def _poll(check, timeout_s: float, interval_s: float = 1.0):
    """Call ``await check()`` until it returns ``(True, info)`` or ``timeout_s`` passes.

    Returns the last ``(ok, info)``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        ok, info = await check()
        if ok or time.monotonic() >= deadline:
            return ok, info
        await asyncio.sleep(interval_s)


async def test_three_peers_see_and_hear_each_other(open_peer):
    names = ["alice", "bob", "carol"]
    peers = [await open_peer("three", name) for name in names]

    async def check():
        stats = {p.name: await p.stats() for p in peers}
        problems = []
        for p in peers:
            for other in names:
                if other == p.name:
                    continue
                sent = _by_peer(stats[other]["outbound"], other, "video") or {}
                video = _by_peer(stats[p.name]["inbound"], other, "video")
                audio = _by_peer(stats[p.name]["inbound"], other, "audio")
                if video is None or audio is None:
                    problems.append(f"{p.name} has no {'video' if video is None else 'audio'} "
                                    f"consumer of {other}")
                    continue
                if video["framesDecoded"] < 60:
                    problems.append(f"{p.name}<-{other} video framesDecoded "
                                    f"{video['framesDecoded']}")
                # The demo publishes simulcast and bandwidth estimation picks the layer: any
                # decoded layer of the sent picture (same aspect, not larger) is right.
                w, h = video["frameWidth"], video["frameHeight"]
                sw, sh = sent.get("frameWidth") or 0, sent.get("frameHeight") or 0
                if not w or not sw or w * sh != h * sw or w > sw:
                    problems.append(f"{p.name}<-{other} video {video['frameWidth']}x"
                                    f"{video['frameHeight']}, sent {sent.get('frameWidth')}x"
                                    f"{sent.get('frameHeight')}")
                if audio["packetsReceived"] <= 0:
                    problems.append(f"{p.name}<-{other} audio packetsReceived 0")
        return not problems, {"problems": problems, "stats": stats}

    started = time.monotonic()
    ok, info = await _poll(check, timeout_s=40.0)
    print(f"three peers: media checks passed={ok} after {time.monotonic() - started:.1f} s")
    await peers[0].page.screenshot(path=SCREENSHOT, full_page=True)
    assert ok, (f"media did not flow between all three peers: {info['problems']}\n"
                f"stats: {json.dumps(info['stats'], indent=1)}\n"
                + "\n".join(p.console_tail(10) for p in peers))
    # The publishers' own view: each sends video at the fake device's resolution.
    for p in peers:
        sent = _by_peer(info["stats"][p.name]["outbound"], p.name, "video")
        assert sent is not None and sent["packetsSent"] > 0
        assert sent["frameWidth"] > 0

    # carol leaves: the others drop her consumers (consumerClosed) and her tile (peerClosed).
    await peers[2].page.context.close()

    async def check_left():
        remaining = {}
        for p in peers[:2]:
            inbound = (await p.stats())["inbound"]
            tiles = await p.page.evaluate("document.querySelectorAll('.tile').length")
            remaining[p.name] = {"carolConsumers": sum(e["peerName"] == "carol" for e in inbound),
                                 "consumers": len(inbound), "tiles": tiles}
        ok = all(r == {"carolConsumers": 0, "consumers": 2, "tiles": 2}
                 for r in remaining.values())
        return ok, remaining

    ok, remaining = await _poll(check_left, timeout_s=10.0, interval_s=0.5)
    assert ok, f"after carol left: {remaining}"


async def test_loss_on_publisher_uplink_recovered_by_nack(open_peer, demo_server):
    base_url, _app = demo_server
    room = "lossy"
    publisher = await open_peer(room, "pub", debug_receive_loss=0.05)
    viewers = [await open_peer(room, name) for name in ("viewer1", "viewer2")]

    async def server_video_producer_stats(session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"{base_url}/debug/rooms/{room}") as resp:
            assert resp.status == 200, await resp.text()
            dump = await resp.json()
        for peer in dump["peers"]:
            if peer["name"] == "pub":
                for producer in peer["producers"]:
                    if producer["kind"] == "video":
                        return producer["stats"]
        return []

    last_frames: dict[str, int] = {}

    async with aiohttp.ClientSession() as session:
        async def check():
            problems = []
            frames = {}
            for v in viewers:
                video = _by_peer((await v.stats())["inbound"], "pub", "video")
                frames[v.name] = video["framesDecoded"] if video else 0
                if frames[v.name] <= 100:
                    problems.append(f"{v.name}<-pub framesDecoded {frames[v.name]}")
                elif frames[v.name] <= last_frames.get(v.name, 0):
                    problems.append(f"{v.name}<-pub stalled at {frames[v.name]} frames")
            last_frames.update(frames)
            server = await server_video_producer_stats(session)
            nacks = sum(s.get("nackCount", 0) for s in server)
            repaired = sum(s.get("packetsRetransmitted", 0) + s.get("packetsRepaired", 0)
                           for s in server)
            if nacks <= 0:
                problems.append("server producer nackCount 0")
            if repaired <= 0:
                problems.append("server producer packetsRetransmitted+packetsRepaired 0")
            sent = _by_peer((await publisher.stats())["outbound"], "pub", "video") or {}
            if sent.get("nackCount", 0) <= 0:
                problems.append("publisher outbound nackCount 0")
            if sent.get("retransmittedPacketsSent", 0) <= 0:
                problems.append("publisher outbound retransmittedPacketsSent 0")
            info = {"problems": problems, "frames": frames, "server": server, "publisher": sent}
            return not problems, info

        started = time.monotonic()
        ok, info = await _poll(check, timeout_s=45.0)
    print(f"lossy uplink: checks passed={ok} after {time.monotonic() - started:.1f} s: "
          f"frames {info['frames']}, publisher {info['publisher']}, server {info['server']}")
    assert ok, (f"loss on the publisher's uplink was not repaired: {info['problems']}\n"
                f"info: {json.dumps(info, indent=1)}\n"
                + "\n".join(p.console_tail(10) for p in [publisher, *viewers]))
