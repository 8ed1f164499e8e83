"""AudioLevelObserver and ActiveSpeakerObserver on a real WorkerActor: a ClientPeer publishes two
opus producers whose packets carry the RFC 6464 ssrc-audio-level extension (id 1, as
OPUS_PRODUCER_PARAMS negotiates), at one packet per 20 ms each, with levels the test changes."""

from __future__ import annotations

import asyncio
import contextlib
import copy

import pytest
from raysfu.actors.api import ActiveSpeakerObserver, AudioLevelObserver
from raysfu.transport.errors import InvalidStateError
from raysfu.transport.rtp import build_rtp

from .conftest import OPUS_PRODUCER_PARAMS, VP8_PRODUCER_PARAMS, connect_peer, wait_for

SSRC_A, SSRC_B = 22222222, 33333333
OPUS_FRAME = bytes(40)


def _opus_params(ssrc: int, mid: str) -> dict:
    params = copy.deepcopy(OPUS_PRODUCER_PARAMS)
    params["mid"] = mid
    params["encodings"][0]["ssrc"] = ssrc
    return params


class Speakers:
    """Two opus producers on one transport and a task sending a packet for each every 20 ms with
    the level ``levels[name]`` gives (an int, or a callable of the packet index; None: nothing)."""

    def __init__(self, router) -> None:
        self.router = router
        self.levels: dict[str, object] = {"a": 127, "b": 127}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Speakers:
        self.transport = await self.router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
        self.peer = await connect_peer(self.transport)
        self.a = await self.transport.produce(kind="audio", rtp_parameters=_opus_params(SSRC_A, "1"))
        self.b = await self.transport.produce(kind="audio", rtp_parameters=_opus_params(SSRC_B, "2"))
        self._task = asyncio.get_running_loop().create_task(self._send_loop())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peer.close()
        self.transport.close()

    async def _send_loop(self) -> None:
        i = 0
        while True:
            for name, ssrc, mid in (("a", SSRC_A, b"1"), ("b", SSRC_B, b"2")):
                level = self.levels[name]
                if callable(level):
                    level = level(i)
                if level is None:
                    continue
                ext = [(4, mid), (1, bytes([0x80 | level if level < 127 else level]))]
                self.peer.send_rtp(build_rtp(111, i & 0xFFFF, 960 * i, ssrc, OPUS_FRAME, extensions=ext))
            i += 1
            await asyncio.sleep(0.02)


def _recorder(observer, *events: str) -> list:
    got: list = []
    for name in events:
        observer.on(name, lambda *args, _n=name: got.append((_n, args[0] if args else None)))
    return got


def _speech(i: int) -> int:
    """Speech-like RFC 6464 levels: -10 dBov with a -100 dBov (background) packet every 8th, so
    the active-speaker algorithm learns a noise floor below the speech."""
    return 100 if i % 8 == 0 else 10


async def test_volumes_silence_pause_and_remove(router):
    async with Speakers(router) as s:
        obs = await router.create_audio_level_observer(max_entries=2, threshold=-80, interval=250)
        assert isinstance(obs, AudioLevelObserver) and obs.type == "audiolevel" and not obs.paused
        got = _recorder(obs, "volumes", "silence")
        added = []
        obs.observer.on("addproducer", added.append)
        # a loud (-10 dBov), b silent (-127 dBov, below the threshold): volumes name a only.
        s.levels["a"] = 10
        await obs.add_producer(producer_id=s.a.id)
        await obs.add_producer(producer_id=s.b.id)
        assert added == [s.a, s.b]
        assert await wait_for(lambda: any(n == "volumes" for n, _ in got), timeout_s=5)
        volumes = next(v for n, v in got if n == "volumes")
        assert [(v["producer"], v["producerId"], v["volume"]) for v in volumes] == [(s.a, s.a.id, -10)]

        # both loud: sorted loudest first, both listed (max_entries 2); the first interval after
        # the change averages b's old and new levels, so wait for the steady value.
        s.levels["b"] = 30

        def both():
            return [[(v["producer"], v["volume"]) for v in vol] for n, vol in got if n == "volumes" and len(vol) == 2]

        assert await wait_for(lambda: [(s.a, -10), (s.b, -30)] in both(), timeout_s=5)
        assert all(pair[0] == (s.a, -10) and -127 <= pair[1][1] <= -30 for pair in both())

        # only silence: one `silence` event, not one per interval.
        s.levels["a"] = s.levels["b"] = 127
        assert await wait_for(lambda: got[-1][0] == "silence", timeout_s=5)
        await asyncio.sleep(0.8)
        assert [n for n, _ in got].count("silence") == 1 and got[-1][0] == "silence"

        # a paused producer's levels are ignored (as in mediasoup).
        await s.a.pause()
        s.levels["a"] = 10
        await asyncio.sleep(0.8)
        assert got[-1][0] == "silence" and [n for n, _ in got].count("silence") == 1
        await s.a.resume()
        assert await wait_for(lambda: got[-1][0] == "volumes", timeout_s=5)

        # observer paused: `silence` at once (it was not silent), then nothing while paused.
        paused = []
        obs.observer.on("pause", lambda: paused.append(True))
        await obs.pause()
        assert obs.paused and paused == [True]
        assert await wait_for(lambda: got[-1][0] == "silence", timeout_s=2)
        n_events = len(got)
        await asyncio.sleep(0.8)
        assert len(got) == n_events
        await obs.resume()
        assert not obs.paused
        assert await wait_for(lambda: len(got) > n_events and got[-1][0] == "volumes", timeout_s=5)

        # a removed producer is no longer reported: b alone now.
        removed = []
        obs.observer.on("removeproducer", removed.append)
        await obs.remove_producer(producer_id=s.a.id)
        assert removed == [s.a]
        s.levels["b"] = 20
        mark = len(got)
        assert await wait_for(lambda: any(n == "volumes" for n, _ in got[mark + 1:]), timeout_s=5)
        assert all([v["producer"] for v in vol] == [s.b] for n, vol in got[mark + 1:] if n == "volumes")

        dump = await router.dump()
        assert dump["rtpObserverIds"] == [obs.id]
        by_producer = {e["key"]: e["values"] for e in dump["mapProducerIdObserverIds"]}
        assert by_producer == {s.a.id: [], s.b.id: [obs.id]}
        odump = await obs.dump()
        assert odump["producerIds"] == [s.b.id] and odump["interval"] == 250 and odump["maxEntries"] == 2

        # closing a producer removes it from the observer.
        s.b.close()
        assert await wait_for_async(lambda: _observer_ids_of(router, s.b.id), [])
        assert (await obs.dump())["producerIds"] == []

        closed = []
        obs.observer.on("close", lambda: closed.append(True))
        obs.close()
        assert obs.closed and closed == [True]
        assert await wait_for_async(lambda: _rtp_observer_ids(router), [])
        with pytest.raises(InvalidStateError):
            await obs.pause()


async def _rtp_observer_ids(router):
    return (await router.dump())["rtpObserverIds"]


async def _observer_ids_of(router, producer_id):
    dump = await router.dump()
    return next((e["values"] for e in dump["mapProducerIdObserverIds"] if e["key"] == producer_id), [])


async def wait_for_async(fn, expected, timeout_s: float = 3.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await fn() == expected:
            return True
        await asyncio.sleep(0.05)
    return await fn() == expected


async def test_dominant_speaker_follows_who_speaks(router):
    async with Speakers(router) as s:
        obs = await router.create_active_speaker_observer(interval=300)
        assert isinstance(obs, ActiveSpeakerObserver) and obs.type == "activespeaker"
        got = _recorder(obs, "dominantspeaker")
        seen_by_observer = []
        obs.observer.on("dominantspeaker", seen_by_observer.append)
        # b is added first, so it would be the default dominant speaker; a speaks.
        await obs.add_producer(producer_id=s.b.id)
        await obs.add_producer(producer_id=s.a.id)
        s.levels["a"] = _speech

        def dominant():
            return got[-1][1]["producer"] if got else None

        assert await wait_for(lambda: dominant() is s.a, timeout_s=8)
        assert got[-1][1]["producerId"] == s.a.id
        assert seen_by_observer[-1]["producer"] is s.a

        # swap: a goes silent, b speaks: the dominant speaker follows.
        s.levels["a"], s.levels["b"] = 127, _speech
        assert await wait_for(lambda: dominant() is s.b, timeout_s=8)
        n = len(got)
        await asyncio.sleep(1.0)
        assert dominant() is s.b and all(e[1]["producer"] is s.b for e in got[n:])

        # removing the dominant speaker hands it to the other one at once.
        await obs.remove_producer(producer_id=s.b.id)
        assert await wait_for(lambda: dominant() is s.a, timeout_s=3)

        # router close cascades: the observer gets `routerclose`.
        events = []
        obs.on("routerclose", lambda: events.append("routerclose"))
    router.close()
    assert events == ["routerclose"] and obs.closed


async def test_bad_options_and_arguments(router):
    cases = [
        (dict(max_entries=0), ValueError, "max_entries"),
        (dict(max_entries="1"), TypeError, "max_entries"),
        (dict(threshold=5), ValueError, "threshold"),
        (dict(threshold=-128), ValueError, "threshold"),
        (dict(threshold=-80.5), TypeError, "threshold"),
        (dict(interval="1s"), TypeError, "interval"),
        (dict(interval=-1), ValueError, "interval"),
        (dict(app_data="x"), TypeError, "app_data"),
    ]
    for kwargs, exc, field in cases:
        with pytest.raises(exc, match=field):
            await router.create_audio_level_observer(**kwargs)
    with pytest.raises(TypeError, match="interval"):
        await router.create_active_speaker_observer(interval=None)
    assert (await router.dump())["rtpObserverIds"] == []

    obs = await router.create_audio_level_observer()
    speaker = await router.create_active_speaker_observer(interval=10)
    assert (await speaker.dump())["interval"] == 100  # clamped as mediasoup's worker does
    assert (await obs.dump())["interval"] == 1000
    new = []
    router.observer.on("newrtpobserver", new.append)
    third = await router.create_audio_level_observer(interval=60000)
    assert new == [third] and (await third.dump())["interval"] == 5000
    with pytest.raises(ValueError, match="producer_id"):
        await obs.add_producer(producer_id="no-such-producer")
    with pytest.raises(TypeError, match="producer_id"):
        await obs.add_producer(producer_id=None)
    t = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    video = await t.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    audio = await t.produce(kind="audio", rtp_parameters=_opus_params(SSRC_A, "1"))
    with pytest.raises(TypeError, match="audio"):
        await obs.add_producer(producer_id=video.id)
    await speaker.add_producer(producer_id=audio.id)
    with pytest.raises(ValueError, match="already"):
        await speaker.add_producer(producer_id=audio.id)
    await obs.add_producer(producer_id=audio.id)
    await obs.add_producer(producer_id=audio.id)  # again: a no-op for the audio-level observer
    dump = await router.dump()
    assert sorted(dump["rtpObserverIds"]) == sorted([obs.id, speaker.id, third.id])
    values = {e["key"]: e["values"] for e in dump["mapProducerIdObserverIds"]}
    assert sorted(values[audio.id]) == sorted([speaker.id, obs.id]) and values[video.id] == []
    t.close()
    # the transport's producers are gone, so are the observers' references to them
    assert await wait_for_async(lambda: _producer_ids(speaker), [])
    assert (await obs.dump())["producerIds"] == []


async def _producer_ids(observer):
    return (await observer.dump())["producerIds"]
