"""Data channels through raysfu between Chromium pages (mediasoup-client): one page's
DataProducer, two DataConsumers in another page (ordered and unordered), and a DirectTransport
DataConsumer in Python, each getting every one of 1,000 messages (in order where ordered)."""

from __future__ import annotations

from .lab import poll

MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]
N = 1000


async def test_browser_data_producer_two_browser_consumers_and_python(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    alice, bob = await lab_peer("alice"), await lab_peer("bob")
    await alice.load(router)
    await alice.create_send_transport(router, enable_sctp=True, num_sctp_streams=alice_streams(alice))
    await bob.create_recv_transport(router, enable_sctp=True)
    dp = await alice.produce_data(label="chat", ordered=True)
    assert dp.type == "sctp" and dp.label == "chat"
    ordered = await bob.consume_data(dp.id)
    unordered = await bob.consume_data(dp.id, ordered=False)
    assert ordered.sctp_stream_parameters["ordered"] and not unordered.sctp_stream_parameters["ordered"]
    direct = await router.create_direct_transport()
    in_python: list[str] = []
    dc_py = await direct.consume_data(data_producer_id=dp.id)
    dc_py.on("message", lambda data, ppid: in_python.append(data.decode()))

    sent = [f"msg-{i:04d}" for i in range(N)]
    assert await alice.send_data(dp.id, sent) == N

    async def check():
        a, b = await bob.received(ordered.id), await bob.received(unordered.id)
        return len(a) >= N and len(b) >= N and len(in_python) >= N, (len(a), len(b), len(in_python))

    ok, info = await poll(check, timeout_s=30.0)
    assert ok, f"{info}\n{alice.console_tail()}\n{bob.console_tail()}"
    assert await bob.received(ordered.id) == sent
    assert sorted(await bob.received(unordered.id)) == sent
    assert in_python == sent
    stats = await dp.get_stats()
    assert stats[0]["messagesReceived"] == N
    assert (await ordered.get_stats())[0]["messagesSent"] == N
    direct.close()
    router.close()


def alice_streams(peer) -> dict:
    """``numSctpStreams`` from the page's ``device.sctpCapabilities`` (as mediasoup's demo)."""
    caps = peer.sctp_capabilities or {}
    return caps.get("numStreams") or {"OS": 1024, "MIS": 1024}
