"""Simulcast in Chromium (issue 5): one page publishes its fake camera (640x480) as three VP8
encodings (r0 /4, r1 /2, r2 full); another page consumes it three times, preferring spatial
layers 0, 1 and 2, and decodes 160, 320 and 640 pixels wide. The first consumer then switches
0 -> 2 -> 0: the decoded width follows within 2 s, decoding never stalls for over 1 s, and the
publisher's encoder sees the switch's keyframe request (its pliCount rises)."""

from __future__ import annotations

import time

from .lab import DecodeWatch, poll

MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]

ENCODINGS = [  # L1T3 as mediasoup's demo: all three temporal layers forwarded at the preferred one
    {"rid": "r0", "scaleResolutionDownBy": 4, "maxBitrate": 150_000, "scalabilityMode": "L1T3"},
    {"rid": "r1", "scaleResolutionDownBy": 2, "maxBitrate": 400_000, "scalabilityMode": "L1T3"},
    {"rid": "r2", "scaleResolutionDownBy": 1, "maxBitrate": 1_200_000, "scalabilityMode": "L1T3"},
]


async def _outbound(alice) -> dict:
    return {s["rid"]: s for s in (await alice.stats())["outbound"] if s["kind"] == "video"}


async def test_three_consumers_get_three_layers_and_one_switches(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    alice, bob = await lab_peer("alice"), await lab_peer("bob")
    await alice.create_send_transport(router)
    await bob.create_recv_transport(router)
    video = await alice.produce("video", encodings=ENCODINGS)
    assert video.type == "simulcast"
    consumers = [await bob.consume(video.id, preferred_layers={"spatialLayer": s}) for s in range(3)]
    assert [c.type for c in consumers] == ["simulcast"] * 3
    widths = [160, 320, 640]

    async def three_layers():
        inbound = {s["consumerId"]: s for s in (await bob.stats())["inbound"]}
        got = [(inbound.get(c.id) or {}).get("frameWidth", 0) for c in consumers]
        frames = [(inbound.get(c.id) or {}).get("framesDecoded", 0) for c in consumers]
        return got == widths and min(frames) >= 30, {"widths": got, "frames": frames, "out": await _outbound(alice)}

    ok, info = await poll(three_layers, timeout_s=40.0)
    assert ok, f"{info}\n{alice.console_tail()}\n{bob.console_tail()}"
    assert [c.current_layers["spatialLayer"] for c in consumers] == [0, 1, 2]
    stats = await video.get_stats()
    assert sorted(s["rid"] for s in stats) == ["r0", "r1", "r2"]

    first = consumers[0]
    watch = DecodeWatch(bob, first.id)

    async def switch_to(layer: int, width: int) -> float:
        plis_before = (await _outbound(alice))["r2" if layer == 2 else "r0"]["pliCount"]
        started = time.monotonic()
        await first.set_preferred_layers(layer)
        reached = await watch.until_width(width, started, 6.0)
        assert reached is not None, f"width never reached {width}: {watch.samples[-5:]}"
        plis_after = (await _outbound(alice))["r2" if layer == 2 else "r0"]["pliCount"]
        assert plis_after > plis_before, "the switch's keyframe request did not reach the encoder"
        return reached

    await watch.steady()  # a steady baseline
    up_s = await switch_to(2, 640)
    assert first.current_layers["spatialLayer"] == 2
    down_s = await switch_to(0, 160)
    await watch.steady()
    print(f"switch 0->2 after {up_s:.2f} s, 2->0 after {down_s:.2f} s")
    assert up_s < 2.0 and down_s < 2.0, (up_s, down_s)
    # decoding kept going: framesDecoded never stalled for more than 1 s
    samples = watch.samples
    worst = watch.longest_stall_s()
    assert samples[-1][1] > samples[0][1]
    assert worst <= 1.0, f"decoding stalled {worst:.2f} s: {samples}"
    # the others kept their layers
    inbound = {s["consumerId"]: s for s in (await bob.stats())["inbound"]}
    assert [inbound[c.id]["frameWidth"] for c in consumers[1:]] == [320, 640]
    router.close()
