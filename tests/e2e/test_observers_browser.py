"""Issue 7's observer test in Chromium: two lab pages produce their fake microphone, one of them
muted (``track.enabled = false``: Chromium then sends silence, RFC 6464 level 127). An
AudioLevelObserver reports the speaking one in ``volumes`` and an ActiveSpeakerObserver names it
in ``dominantspeaker``; when the other one speaks instead, the dominant speaker follows.

Chromium's fake microphone beeps (a tone with pauses), so the levels are averaged over each
interval and the test polls (up to ~15 s per step) instead of asserting exact dBov."""

from __future__ import annotations

import asyncio

MEDIA_CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}]
STEP_TIMEOUT_S = 15.0


async def _until(predicate, timeout_s: float = STEP_TIMEOUT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def test_volumes_and_dominant_speaker_follow_who_is_unmuted(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    alice, bob = await lab_peer("alice"), await lab_peer("bob")
    await alice.create_send_transport(router)
    await bob.create_send_transport(router)
    mic_a = await alice.produce("audio")
    mic_b = await bob.produce("audio")
    ext_uris = [e["uri"] for e in mic_a.rtp_parameters["headerExtensions"]]
    assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in ext_uris
    await bob.set_track_enabled(mic_b.id, False)  # bob is muted, alice speaks

    levels = await router.create_audio_level_observer(max_entries=2, threshold=-126, interval=500)
    speaker = await router.create_active_speaker_observer(interval=300)
    volumes: list[list[tuple]] = []
    dominant: list = []
    levels.on("volumes", lambda v: volumes.append([(e["producer"], e["volume"]) for e in v]))
    speaker.on("dominantspeaker", lambda d: dominant.append(d["producer"]))
    for observer in (levels, speaker):
        await observer.add_producer(producer_id=mic_b.id)  # the muted one first: the default
        await observer.add_producer(producer_id=mic_a.id)  # dominant speaker until a wins

    def loudest_is(producer) -> bool:
        # the latest report names ``producer`` first, and the muted one (if listed) is silent
        return bool(volumes) and volumes[-1][0][0] is producer and all(
            vol <= -120 for p, vol in volumes[-1][1:])

    def context() -> str:
        names = {mic_a: "alice", mic_b: "bob", None: "?"}
        return (f"volumes={[[(names[p], v) for p, v in r] for r in volumes[-6:]]} "
                f"dominant={[names[p] for p in dominant]}\n{alice.console_tail(8)}\n{bob.console_tail(8)}")

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await _until(lambda: loudest_is(mic_a) and dominant and dominant[-1] is mic_a), context()
    first_s = loop.time() - t0
    assert volumes[-1][0][1] > -120, context()

    # swap: alice mutes, bob unmutes; both observers follow.
    await alice.set_track_enabled(mic_a.id, False)
    await bob.set_track_enabled(mic_b.id, True)
    t0 = loop.time()
    assert await _until(lambda: loudest_is(mic_b) and dominant and dominant[-1] is mic_b), context()
    assert volumes[-1][0][1] > -120, context()
    print(f"alice recognised in {first_s:.1f} s, bob after the swap in {loop.time() - t0:.1f} s; {context()}")
    router.close()
    assert levels.closed and speaker.closed
