"""Create and close every object through the public API on a real WorkerActor: events, close
cascades, error classes, closed-object rejections (mediasoup's test-Worker/Router/
WebRtcTransport/Producer/Consumer behaviours, in our words)."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest

from raysfu.actors import InvalidStateError, UnsupportedError, create_worker
from raysfu.transport.errors import PacketParseError

from .conftest import MEDIA_CODECS, OPUS_PRODUCER_PARAMS, VP8_PRODUCER_PARAMS, client_caps, wait_for

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


async def test_worker_dump_and_resource_usage(worker):
    assert worker.pid > 0 and not worker.closed and not worker.died
    assert worker._info["loop"].startswith("uvloop")  # media runs on uvloop inside the actor
    dump = await worker.dump()
    assert dump["pid"] == worker.pid
    usage = await worker.get_resource_usage()
    assert usage["ru_utime"] > 0 and usage["ru_maxrss"] > 0
    assert set(usage) >= {"ru_utime", "ru_stime", "ru_maxrss", "ru_nvcsw", "ru_nivcsw"}


async def test_create_worker_rejects_bad_settings(ray_session):
    with pytest.raises(TypeError, match="log_level"):
        await create_worker(log_level="chatty")
    with pytest.raises(TypeError, match="rtc_min_port"):
        await create_worker(rtc_min_port=5000, rtc_max_port=4000)
    with pytest.raises(TypeError, match="dtls_certificate_file"):
        await create_worker(dtls_certificate_file="/nonexistent.pem")


async def test_router_capabilities_and_dump(worker):
    router = await worker.create_router(media_codecs=MEDIA_CODECS, app_data={"room": "x"})
    caps = router.rtp_capabilities
    mimes = [c["mimeType"] for c in caps["codecs"]]
    assert mimes == ["audio/opus", "video/VP8", "video/rtx"]
    assert caps["codecs"][2]["parameters"]["apt"] == caps["codecs"][1]["preferredPayloadType"]
    assert router.app_data == {"room": "x"}
    dump = await router.dump()
    assert dump["id"] == router.id and dump["transportIds"] == []
    assert router.id in (await worker.dump())["routerIds"]
    router.close()
    assert router.closed
    with pytest.raises(InvalidStateError):
        await router.create_webrtc_transport(listen_infos=LISTEN)


async def test_router_rejects_unsupported_codec(worker):
    with pytest.raises(UnsupportedError):
        await worker.create_router(media_codecs=[{"kind": "audio", "mimeType": "audio/chipmunk", "clockRate": 8000}])
    with pytest.raises(TypeError):
        await worker.create_router(media_codecs="opus")


async def test_webrtc_transport_shape_events_and_close(router):
    new_transports = []
    router.observer.on("newtransport", new_transports.append)
    t = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1", "announcedAddress": "203.0.113.7"}], app_data={"a": 1})
    assert new_transports == [t]
    assert t.ice_role == "controlled" and t.ice_state == "new" and t.dtls_state == "new"
    assert t.ice_parameters["iceLite"] is True and len(t.ice_parameters["usernameFragment"]) >= 4
    cand = t.ice_candidates[0]
    assert cand["address"] == "203.0.113.7" and cand["protocol"] == "udp" and cand["type"] == "host" and cand["port"] > 0
    fps = {f["algorithm"] for f in t.dtls_parameters["fingerprints"]}
    assert {"sha-256", "sha-384", "sha-512"} <= fps
    stats = await t.get_stats()
    assert stats[0]["type"] == "webrtc-transport" and stats[0]["iceRole"] == "controlled"
    old = t.ice_parameters
    new = await t.restart_ice()
    assert new["usernameFragment"] != old["usernameFragment"] and t.ice_parameters == new
    closes = []
    t.observer.on("close", lambda: closes.append(1))
    t.close()
    t.close()  # idempotent
    assert t.closed and closes == [1]
    for call in (t.get_stats(), t.dump(), t.connect(dtls_parameters={"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]})):
        with pytest.raises(InvalidStateError):
            await call


async def test_webrtc_transport_bad_options(router):
    with pytest.raises(TypeError, match="listen_infos"):
        await router.create_webrtc_transport()
    with pytest.raises(TypeError, match=r"listen_infos\[0\]\.ip"):
        await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "not-an-ip"}])
    with pytest.raises(TypeError, match="portRange"):
        await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1", "portRange": {"min": 10, "max": 5}}])
    with pytest.raises(TypeError, match="protocol"):  # udp and tcp (ICE-TCP: test_webrtc_server.py)
        await router.create_webrtc_transport(listen_infos=[{"protocol": "sctp", "ip": "127.0.0.1"}])
    with pytest.raises(TypeError, match="ice_consent_timeout"):
        await router.create_webrtc_transport(listen_infos=LISTEN, ice_consent_timeout=5)
    with pytest.raises(OSError):  # 192.0.2.1 is not ours: nothing can be bound
        await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "192.0.2.1"}])
    t = await router.create_webrtc_transport(listen_infos=LISTEN)
    for hook in (t.set_debug_receive_loss, t.set_debug_send_loss):  # test hooks: [0, 1) only
        for bad in (1.0, -0.1, "0.5"):
            with pytest.raises(TypeError, match="fraction"):
                await hook(bad)
        await hook(0.5)
    t.close()


async def test_listen_info_port_and_port_range(router):
    t = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1", "portRange": {"min": 42000, "max": 42010}}])
    assert 42000 <= t.ice_candidates[0]["port"] <= 42010
    port = t.ice_candidates[0]["port"]
    t2 = await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1", "port": port + 100}])
    assert t2.ice_candidates[0]["port"] == port + 100
    with pytest.raises(OSError):  # the same fixed port twice
        await router.create_webrtc_transport(listen_infos=[{"protocol": "udp", "ip": "127.0.0.1", "port": port + 100}])
    t.close()
    t2.close()


async def test_connect_validates_dtls_parameters(router):
    t = await router.create_webrtc_transport(listen_infos=LISTEN)
    with pytest.raises(TypeError):
        await t.connect(dtls_parameters="nope")
    with pytest.raises(TypeError, match="fingerprints"):
        await t.connect(dtls_parameters={"role": "client", "fingerprints": []})
    with pytest.raises(TypeError, match="role"):
        await t.connect(dtls_parameters={"role": "boss", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]})
    await t.connect(dtls_parameters={"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]})
    assert t.dtls_parameters["role"] == "server"
    with pytest.raises(InvalidStateError):  # connect() twice
        await t.connect(dtls_parameters={"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]})
    t.close()


async def test_produce_consume_validation_and_errors(router):
    t = await router.create_webrtc_transport(listen_infos=LISTEN)
    with pytest.raises(TypeError, match="kind"):
        await t.produce(kind="smell", rtp_parameters=copy.deepcopy(OPUS_PRODUCER_PARAMS))
    bad = copy.deepcopy(OPUS_PRODUCER_PARAMS)
    bad["codecs"][0]["payloadType"] = "111"
    with pytest.raises(TypeError, match="payloadType"):
        await t.produce(kind="audio", rtp_parameters=bad)
    unsupported = copy.deepcopy(OPUS_PRODUCER_PARAMS)
    unsupported["codecs"][0]["mimeType"] = "audio/ISAC"
    unsupported["codecs"][0]["clockRate"] = 32000
    with pytest.raises(UnsupportedError):
        await t.produce(kind="audio", rtp_parameters=unsupported)
    no_mid = copy.deepcopy(OPUS_PRODUCER_PARAMS)
    del no_mid["mid"]
    no_mid["encodings"] = [{}]
    with pytest.raises(TypeError, match="mid"):
        await t.produce(kind="audio", rtp_parameters=no_mid)
    producer = await t.produce(kind="audio", rtp_parameters=copy.deepcopy(OPUS_PRODUCER_PARAMS), app_data={"who": "me"})
    assert producer.kind == "audio" and producer.type == "simple" and not producer.paused
    assert producer.rtp_parameters["rtcp"]["cname"] == "publisher-cname"
    dup = copy.deepcopy(OPUS_PRODUCER_PARAMS)
    dup["mid"] = "9"
    with pytest.raises(ValueError, match="ssrc"):
        await t.produce(kind="audio", rtp_parameters=dup)
    with pytest.raises(ValueError, match="id"):
        await t.produce(kind="audio", id=producer.id, rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    assert router.can_consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities))
    video_only = {"codecs": [c for c in router.rtp_capabilities["codecs"] if c["kind"] == "video"], "headerExtensions": []}
    assert not router.can_consume(producer_id=producer.id, rtp_capabilities=video_only)
    assert not router.can_consume(producer_id="nope", rtp_capabilities=video_only)
    t2 = await router.create_webrtc_transport(listen_infos=LISTEN)
    with pytest.raises(ValueError, match="producer_id"):
        await t2.consume(producer_id="00000000-0000-0000-0000-000000000000", rtp_capabilities=client_caps(router.rtp_capabilities))
    with pytest.raises(UnsupportedError):
        await t2.consume(producer_id=producer.id, rtp_capabilities=video_only)
    consumer = await t2.consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities), paused=True)
    assert consumer.rtp_parameters["mid"] == "0" and consumer.paused and consumer.kind == "audio" and consumer.type == "simple"
    assert consumer.rtp_parameters["rtcp"]["cname"] == "publisher-cname"
    c2 = await t2.consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities))
    assert c2.rtp_parameters["mid"] == "1"
    assert c2.rtp_parameters["encodings"][0]["ssrc"] != consumer.rtp_parameters["encodings"][0]["ssrc"]
    with pytest.raises(TypeError, match="priority"):
        await c2.set_priority(0)
    await c2.set_priority(3)
    assert c2.priority == 3
    await c2.unset_priority()
    assert c2.priority == 1
    await t.set_max_incoming_bitrate(100000)  # a REMB cap (tests/integration/test_bwe_wiring.py)
    with pytest.raises(TypeError, match="bitrate"):
        await t.set_max_incoming_bitrate(-5)
    dump = await router.dump()
    assert {"key": producer.id, "values": [consumer.id, c2.id]} in dump["mapProducerIdConsumerIds"]
    # close cascades: closing the producer's transport closes the producer (transportclose,
    # locally) and the consumers on the other transport get producerclose from the worker.
    events = []
    producer.on("transportclose", lambda: events.append("p:transportclose"))
    consumer.on("producerclose", lambda: events.append("c:producerclose"))
    c2.on("producerclose", lambda: events.append("c2:producerclose"))
    t.close()
    assert producer.closed and "p:transportclose" in events
    assert await wait_for(lambda: consumer.closed and c2.closed)
    assert sorted(events) == ["c2:producerclose", "c:producerclose", "p:transportclose"]
    for call in (producer.pause(), consumer.resume(), consumer.get_stats(), producer.get_stats()):
        with pytest.raises(InvalidStateError):
            await call
    t2.close()


async def test_router_close_cascades_to_transports_and_children(worker):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    t = await router.create_webrtc_transport(listen_infos=LISTEN)
    producer = await t.produce(kind="video", rtp_parameters=copy.deepcopy(VP8_PRODUCER_PARAMS))
    events = []
    t.on("routerclose", lambda: events.append("routerclose"))
    producer.on("transportclose", lambda: events.append("transportclose"))
    router.close()
    assert t.closed and producer.closed
    assert events == ["transportclose", "routerclose"]
    await asyncio.sleep(0.2)
    assert router.id not in (await worker.dump())["routerIds"]


async def test_worker_close_and_died(ray_session):
    import ray

    w = await create_worker()
    router = await w.create_router(media_codecs=MEDIA_CODECS)
    closed = []
    router.on("workerclose", lambda: closed.append("workerclose"))
    w.close()
    assert w.closed and router.closed and closed == ["workerclose"]
    with pytest.raises(InvalidStateError):
        await w.dump()
    # A killed actor: the handle emits died and closes everything it hosted.
    w2 = await create_worker()
    r2 = await w2.create_router(media_codecs=MEDIA_CODECS)
    died = []
    w2.on("died", lambda err: died.append(err))
    r2.on("workerclose", lambda: died.append("workerclose"))
    ray.kill(w2.actor)
    assert await wait_for(lambda: len(died) == 2, 10.0)
    assert w2.died and w2.closed and r2.closed


def test_errors_pickle():
    for err in (InvalidStateError("closed"), UnsupportedError("codec"), PacketParseError("rtp", "short")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
