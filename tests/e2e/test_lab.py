"""The browser lab itself (tests/e2e/lab.py): a page signaled from Python produces its camera
and microphone on a router of a real WorkerActor, another page consumes them and decodes, for
each video codec Chromium and raysfu share (VP8, VP9, H264)."""

from __future__ import annotations

import pytest

from .lab import poll

MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
    {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000, "parameters": {"profile-id": 0}},
    {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
     "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}},
]


@pytest.mark.parametrize("codec_mime", ["video/VP8", "video/VP9", "video/H264"])
async def test_lab_page_publishes_and_another_decodes(worker, lab_peer, codec_mime):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    alice, bob = await lab_peer("alice"), await lab_peer("bob")
    await alice.create_send_transport(router)
    await bob.create_recv_transport(router)
    video = await alice.produce("video", codec_mime=codec_mime)
    audio = await alice.produce("audio")
    assert video.rtp_parameters["codecs"][0]["mimeType"].lower() == codec_mime.lower()
    v = await bob.consume(video.id)
    a = await bob.consume(audio.id)

    async def check():
        inbound = {s["consumerId"]: s for s in (await bob.stats())["inbound"]}
        ok = (v.id in inbound and inbound[v.id]["framesDecoded"] >= 30 and inbound[v.id]["frameWidth"] > 0
              and a.id in inbound and inbound[a.id]["packetsReceived"] > 50)
        return ok, inbound

    ok, info = await poll(check, timeout_s=30.0)
    assert ok, f"{codec_mime}: {info}\n{alice.console_tail()}\n{bob.console_tail()}"
    router.close()
