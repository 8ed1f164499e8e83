"""Data channels end to end on a real worker: DataProducer / DataConsumer over SCTP over DTLS
(WebRtcTransport), DirectTransport data, and pipe_to_router(data_producer_id) across workers.

The endpoints are raysfu's ClientPeer (ICE + DTLS on a real UDP socket) with our sans-I/O
SctpAssociation on top, opening channels ``negotiated`` as mediasoup-client does (the stream ids
come from ``sctpStreamParameters``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from raysfu.actors import create_worker
from raysfu.actors.client_peer import ClientPeer
from raysfu.transport.dcep import decode_message, encode_message
from raysfu.transport.sctp import SctpAssociation

from .conftest import MEDIA_CODECS, wait_for

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]
N = 1000


class SctpClientPeer(ClientPeer):
    """ClientPeer + an SCTP association over its DTLS session (the endpoint's data channels)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.assoc: SctpAssociation | None = None
        self.received: dict[int, list] = {}  # stream id -> [message]
        self.states: list[str] = []
        self.resets: list[int] = []
        self._sctp_task: asyncio.Task | None = None

    def _pump_dtls(self) -> None:  # as ClientPeer's, plus DTLS application data = SCTP
        dtls = self.dtls
        if dtls is None:
            return
        for datagram in dtls.datagrams_to_send():
            self.udp.sendto(datagram, self.remote)
        for name, value in dtls.drain_events():
            if name == "state":
                if value == "connected" and self.assoc is None:
                    self.assoc = SctpAssociation(is_client=True)
                    self.assoc.start(self._now_ms())
                    self._done()
                    self._sctp_task = asyncio.get_running_loop().create_task(self._sctp_timers())
                elif value in ("failed", "closed"):
                    self._dtls_done.set()
            elif name == "application_data" and self.assoc is not None:
                self.assoc.receive(value, self._now_ms())
        if self.assoc is not None:
            self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = dtls.next_timer_ms()
        if t is not None and not self._dtls_done.is_set():
            self._timer = asyncio.get_running_loop().call_later(max(0.0, (t - self._now_ms()) / 1000), self._on_timer)

    def _done(self) -> None:
        from raysfu.transport.srtp import SrtpSession

        local, remote = self.dtls.srtp_keys()
        self.srtp = SrtpSession(self.dtls.srtp_crypto_suite, local, remote)
        self._dtls_done.set()

    def flush(self) -> None:
        assoc, dtls = self.assoc, self.dtls
        for packet in assoc.datagrams_to_send():
            dtls.send_application_data(packet)
        for datagram in dtls.datagrams_to_send():
            self.udp.sendto(datagram, self.remote)
        for ev in assoc.drain_events():
            if ev[0] == "message":
                self.received.setdefault(ev[1], []).append(decode_message(ev[2], ev[3]))
            elif ev[0] == "state":
                self.states.append(ev[1])
            elif ev[0] == "incoming_streams_reset":
                self.resets.extend(ev[1])

    async def _sctp_timers(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            t = self.assoc.next_timer_ms()
            if t is not None and t <= self._now_ms():
                self.assoc.handle_timer(self._now_ms())
                self.flush()

    def send(self, stream_id: int, message, **opts) -> None:
        ppid, payload = encode_message(message)
        self.assoc.send(stream_id, ppid, payload, now_ms=self._now_ms(), **opts)

    def close(self) -> None:
        if self._sctp_task is not None:
            self._sctp_task.cancel()
        super().close()


async def sctp_peer(router, **transport_options):
    transport = await router.create_webrtc_transport(listen_infos=LISTEN, enable_sctp=True, **transport_options)
    peer = SctpClientPeer()
    await peer.open()
    await transport.connect(dtls_parameters=peer.dtls_parameters)
    await peer.connect(transport.ice_parameters, transport.ice_candidates, transport.dtls_parameters)
    assert await wait_for(lambda: peer.assoc is not None and peer.assoc.state == "connected", 5.0), "SCTP not connected"
    return transport, peer


@pytest.fixture(scope="module")
async def worker2(ray_session):
    w = await create_worker()
    yield w
    w.close()
    await asyncio.sleep(0.5)


async def test_produce_consume_ordered_unordered_and_direct(router):
    t_pub, pub = await sctp_peer(router)
    t_a, peer_a = await sctp_peer(router)
    t_b, peer_b = await sctp_peer(router)
    direct = await router.create_direct_transport()
    try:
        assert t_pub.sctp_parameters == {"port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144}
        assert await wait_for(lambda: t_pub.sctp_state == "connected")
        dp = await t_pub.produce_data(sctp_stream_parameters={"streamId": 3, "ordered": True}, label="chat",
                                      protocol="json", app_data={"x": 1})
        assert (dp.type, dp.label, dp.protocol, dp.sctp_stream_parameters["streamId"]) == ("sctp", "chat", "json", 3)
        dc_a = await t_a.consume_data(data_producer_id=dp.id)
        dc_b = await t_b.consume_data(data_producer_id=dp.id, ordered=False)
        dc_d = await direct.consume_data(data_producer_id=dp.id)
        assert dc_a.sctp_stream_parameters["ordered"] is True and dc_b.sctp_stream_parameters["ordered"] is False
        assert (dc_a.label, dc_a.protocol, dc_d.type) == ("chat", "json", "direct")
        got_direct: list = []
        dc_d.on("message", lambda data, ppid: got_direct.append(decode_message(ppid, data)))

        sent = [f"m{i}" for i in range(N)]
        for m in sent:
            pub.send(3, m)
        pub.flush()
        sid_a, sid_b = dc_a.sctp_stream_parameters["streamId"], dc_b.sctp_stream_parameters["streamId"]
        assert await wait_for(lambda: len(peer_a.received.get(sid_a, [])) == N and len(peer_b.received.get(sid_b, [])) == N
                              and len(got_direct) == N, 15.0), (len(peer_a.received.get(sid_a, [])),
                                                               len(peer_b.received.get(sid_b, [])), len(got_direct))
        assert peer_a.received[sid_a] == sent  # ordered: in order
        assert sorted(peer_b.received[sid_b]) == sorted(sent)  # unordered: every message
        assert got_direct == sent

        stats = await dp.get_stats()
        assert stats[0]["type"] == "data-producer" and stats[0]["messagesReceived"] == N
        assert (await dc_a.get_stats())[0]["messagesSent"] == N
        dump = await router.dump()
        assert {"key": dp.id, "values": [dc_a.id, dc_b.id, dc_d.id]} in dump["mapDataProducerIdDataConsumerIds"]
        tdump = await t_pub.dump()
        assert tdump["dataProducerIds"] == [dp.id] and tdump["sctpState"] == "connected"
        assert tdump["sctpListener"]["streamIdTable"] == [{"key": 3, "value": dp.id}]

        # the endpoint answers on the consumer's stream: DataConsumer.send from Python
        assert await dc_a.send("from python") is True
        assert await wait_for(lambda: peer_a.received[sid_a][-1:] == ["from python"])

        # pause / resume of the producer: the consumers hear of it, nothing is forwarded meanwhile
        paused = asyncio.Event()
        dc_a.on("dataproducerpause", paused.set)
        await dp.pause()
        await asyncio.wait_for(paused.wait(), 5)
        assert dc_a.data_producer_paused
        pub.send(3, "while paused")
        pub.flush()
        await asyncio.sleep(0.3)
        await dp.resume()
        assert await wait_for(lambda: not dc_a.data_producer_paused)
        pub.send(3, "after")
        pub.flush()
        assert await wait_for(lambda: peer_a.received[sid_a][-1] == "after")
        assert "while paused" not in peer_a.received[sid_a]
        # a paused consumer gets nothing, the others still do
        await dc_b.pause()
        pub.send(3, "b paused")
        pub.flush()
        assert await wait_for(lambda: peer_a.received[sid_a][-1] == "b paused" and got_direct[-1] == "b paused")
        await asyncio.sleep(0.2)
        assert "b paused" not in peer_b.received[sid_b]
        await dc_b.resume()

        # close propagation: dataproducerclose on every consumer; the endpoint's stream is reset
        closed = []
        for dc in (dc_a, dc_b, dc_d):
            dc.on("dataproducerclose", lambda dc=dc: closed.append(dc.id))
        dp.close()
        assert await wait_for(lambda: len(closed) == 3)
        assert dc_a.closed and dc_d.closed
        assert await wait_for(lambda: sid_a in peer_a.resets)
        dump = await router.dump()
        assert dump["mapDataProducerIdDataConsumerIds"] == [] and dump["mapDataConsumerIdDataProducerId"] == []
    finally:
        for p in (pub, peer_a, peer_b):
            p.close()
        for t in (t_pub, t_a, t_b, direct):
            t.close()


async def test_direct_data_producer_reaches_sctp_consumer_with_subchannels(router):
    direct = await router.create_direct_transport()
    t_a, peer_a = await sctp_peer(router)
    try:
        dp = await direct.produce_data(label="bot")
        assert dp.type == "direct" and dp.sctp_stream_parameters is None
        dc = await t_a.consume_data(data_producer_id=dp.id, subchannels=[1, 2])
        assert dc.subchannels == [1, 2]
        sid = dc.sctp_stream_parameters["streamId"]
        for i in range(N):
            dp.send(f"d{i}")
        dp.send(b"\x00\x01binary")
        assert await wait_for(lambda: len(peer_a.received.get(sid, [])) == N + 1, 15.0)
        assert peer_a.received[sid][:N] == [f"d{i}" for i in range(N)]
        assert peer_a.received[sid][N] == b"\x00\x01binary"
        # subchannel filtering (mediasoup DataConsumer::SendMessage)
        dp.send("to 3", subchannels=[3])
        dp.send("to 2", subchannels=[2])
        dp.send("needs 5", required_subchannel=5)
        await dp.get_stats()  # flushes the batched sends first
        await dc.add_subchannel(5)
        assert dc.subchannels == [1, 2, 5]
        dp.send("needs 5 again", required_subchannel=5)
        assert await wait_for(lambda: peer_a.received[sid][-1] == "needs 5 again")
        assert peer_a.received[sid][N + 1:] == ["to 2", "needs 5 again"]
        await dc.set_subchannels([])
        await dc.remove_subchannel(1)
        assert dc.subchannels == []
        with pytest.raises(Exception, match="only a DataProducer of a DirectTransport"):
            sctp_dp = await t_a.produce_data(sctp_stream_parameters={"streamId": 0})
            sctp_dp.send("x")
        closed = asyncio.Event()
        dc.on("transportclose", closed.set)
    finally:
        direct.close()
        peer_a.close()
        t_a.close()
    await asyncio.sleep(0.1)
    assert dc.closed


async def test_bad_options_name_the_field(router):
    with pytest.raises(TypeError, match="numSctpStreams"):
        await router.create_webrtc_transport(listen_infos=LISTEN, enable_sctp=True, num_sctp_streams={"OS": 0, "MIS": 10})
    with pytest.raises(TypeError, match="maxSctpMessageSize"):
        await router.create_webrtc_transport(listen_infos=LISTEN, enable_sctp=True, max_sctp_message_size=0)
    plain = await router.create_webrtc_transport(listen_infos=LISTEN)
    sctp_t = await router.create_webrtc_transport(listen_infos=LISTEN, enable_sctp=True)
    direct = await router.create_direct_transport()
    try:
        assert plain.sctp_parameters is None and sctp_t.sctp_state == "new"
        with pytest.raises(TypeError, match="enable_sctp"):
            await plain.produce_data(sctp_stream_parameters={"streamId": 1})
        with pytest.raises(TypeError, match="sctp_stream_parameters"):
            await sctp_t.produce_data()
        with pytest.raises(TypeError, match="streamId"):
            await sctp_t.produce_data(sctp_stream_parameters={"streamId": "x"})
        with pytest.raises(TypeError, match="ordered"):
            await sctp_t.produce_data(sctp_stream_parameters={"streamId": 1, "ordered": True, "maxRetransmits": 2})
        with pytest.raises(ValueError, match="MIS"):
            await sctp_t.produce_data(sctp_stream_parameters={"streamId": 5000})
        dp = await sctp_t.produce_data(sctp_stream_parameters={"streamId": 1})
        with pytest.raises(ValueError, match="streamId 1 already exists"):
            await sctp_t.produce_data(sctp_stream_parameters={"streamId": 1})
        with pytest.raises(ValueError, match="id"):
            await sctp_t.produce_data(id=dp.id, sctp_stream_parameters={"streamId": 2})
        with pytest.raises(ValueError, match="data_producer_id"):
            await sctp_t.consume_data(data_producer_id="nope")
        with pytest.raises(TypeError, match="maxRetransmits"):
            await sctp_t.consume_data(data_producer_id=dp.id, max_retransmits=-1)
        with pytest.raises(TypeError, match="subchannels"):
            await direct.consume_data(data_producer_id=dp.id, subchannels=["a"])
        with pytest.raises(TypeError, match="label"):
            await direct.produce_data(label=5)
        ddp = await direct.produce_data()
        with pytest.raises(TypeError, match="message"):
            ddp.send(12)
        with pytest.raises(ValueError, match="ppid"):
            ddp.send("x", ppid=-1)
        dc = await sctp_t.consume_data(data_producer_id=ddp.id, max_packet_life_time=100)
        assert dc.sctp_stream_parameters == {"ordered": True, "maxPacketLifeTime": 100, "streamId": 0} or \
            dc.sctp_stream_parameters["maxPacketLifeTime"] == 100
        with pytest.raises(TypeError, match="threshold"):
            await dc.set_buffered_amount_low_threshold(-1)
        assert await dc.get_buffered_amount() == 0
        dp.close()
        with pytest.raises(Exception, match="closed"):
            await dp.get_stats()
    finally:
        for t in (plain, sctp_t, direct):
            t.close()


async def test_pipe_to_router_data_across_workers(router, worker2):
    router2 = await worker2.create_router(media_codecs=MEDIA_CODECS)
    t_pub, pub = await sctp_peer(router)
    t_sub, sub = await sctp_peer(router2)
    direct2 = await router2.create_direct_transport()
    try:
        dp = await t_pub.produce_data(sctp_stream_parameters={"streamId": 7}, label="piped")
        result = await router.pipe_to_router(data_producer_id=dp.id, router=router2)
        pdc, pdp = result["pipeDataConsumer"], result["pipeDataProducer"]
        assert pdp.id == dp.id and pdp.label == "piped"
        dc = await t_sub.consume_data(data_producer_id=dp.id)
        dcd = await direct2.consume_data(data_producer_id=dp.id)
        got: list = []
        dcd.on("message", lambda data, ppid: got.append(decode_message(ppid, data)))
        sid = dc.sctp_stream_parameters["streamId"]
        t0 = time.monotonic()
        sent = [f"p{i}" for i in range(N)]
        for m in sent:
            pub.send(7, m)
        pub.flush()
        assert await wait_for(lambda: len(sub.received.get(sid, [])) == N and len(got) == N, 15.0), \
            (len(sub.received.get(sid, [])), len(got), time.monotonic() - t0)
        assert sub.received[sid] == sent and got == sent
        # closing the origin closes across the pipe
        closed = asyncio.Event()
        dc.on("dataproducerclose", closed.set)
        dp.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert pdc.closed and pdp.closed
    finally:
        pub.close()
        sub.close()
        for t in (t_pub, t_sub, direct2):
            t.close()
        router2.close()
