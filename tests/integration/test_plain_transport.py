"""PlainTransport (mediasoup ``PlainTransport``) in a WorkerActor, driven over real UDP sockets on
127.0.0.1 by bare sockets standing in for ffmpeg/GStreamer: creation and its bad arguments, the
connect rules, comedia learning the remote tuple (RTP and RTCP), packets from other sources
dropped, RTP forwarded plain → plain, RTCP both ways, SRTP with signalled keys, closed-object
rejections and the router/worker close cascades."""

from __future__ import annotations

import asyncio
import socket

import pytest

from raysfu.actors import InvalidStateError, UnsupportedError, create_worker
from raysfu.transport import rtcp
from raysfu.transport.rtp import build_rtp, parse_rtp_header
from raysfu.transport.srtp import SrtpSession, generate_srtp_parameters

from .conftest import MEDIA_CODECS, wait_for

LOCAL = {"protocol": "udp", "ip": "127.0.0.1"}
SSRC = 0x0BADCAFE
VP8_KEY = b"\x10" + b"\x00\x9d\x01\x2a" + bytes(100)
VP8_DELTA = b"\x10" + b"\x01" + bytes(100)

# What an ffmpeg `-f rtp -payload_type 101 -ssrc ...` VP8 stream is described with.
FFMPEG_VP8 = {
    "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000}],
    "encodings": [{"ssrc": SSRC}],
}


def vp8(seq: int, *, key: bool = False, ssrc: int = SSRC) -> bytes:
    return build_rtp(101, seq, 3000 * seq, ssrc, VP8_KEY if key else VP8_DELTA, marker=True)


class Udp(asyncio.DatagramProtocol):
    """A bare UDP endpoint on 127.0.0.1 (the ffmpeg stand-in): keeps ``(data, addr)`` it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple]] = []
        self.udp: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> "Udp":
        self = cls()
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        return self

    def connection_made(self, transport) -> None:
        self.udp = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((data, addr))

    @property
    def port(self) -> int:
        return self.udp.get_extra_info("sockname")[1]

    def send(self, data: bytes, port: int) -> None:
        self.udp.sendto(data, ("127.0.0.1", port))

    def rtp(self) -> list[bytes]:
        return [d for d, _ in self.received if not 191 < d[1] < 224]

    def rtcp_items(self, parse=rtcp.parse_rtcp) -> list[tuple]:
        return [i for d, _ in self.received if 191 < d[1] < 224 for i in parse(d)]

    def close(self) -> None:
        self.udp.close()


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ creation
async def test_create_plain_transport(router):
    new = []
    router.observer.on("newtransport", new.append)
    t = await router.create_plain_transport(listen_info={**LOCAL, "announcedAddress": "9.9.9.1"}, app_data={"foo": "bar"})
    assert new == [t] and t.type == "plain" and not t.closed and t.app_data == {"foo": "bar"}
    assert t.tuple["localAddress"] == t.tuple["localIp"] == "9.9.9.1" and t.tuple["protocol"] == "udp"
    assert isinstance(t.tuple["localPort"], int) and "remotePort" not in t.tuple
    assert t.rtcp_tuple is None and t.rtcp_mux and not t.comedia
    assert t.srtp_parameters is None and t.sctp_parameters is None and t.sctp_state is None
    dump = await t.dump()
    assert dump["id"] == t.id and dump["producerIds"] == [] and dump["consumerIds"] == []
    assert dump["tuple"] == t.tuple and dump["rtcpTuple"] is None and "rtpListener" in dump
    assert t.id in (await router.dump())["transportIds"]
    t.close()
    assert t.closed

    rtp_port, rtcp_port = free_udp_port(), free_udp_port()
    t2 = await router.create_plain_transport(
        listen_info={**LOCAL, "port": rtp_port}, rtcp_listen_info={**LOCAL, "port": rtcp_port}, rtcp_mux=False
    )
    assert t2.app_data == {} and t2.tuple["localPort"] == rtp_port and t2.tuple["localAddress"] == "127.0.0.1"
    assert t2.rtcp_tuple["localPort"] == rtcp_port and t2.rtcp_tuple["protocol"] == "udp"
    assert (await t2.dump())["rtcpTuple"] == t2.rtcp_tuple
    # Without rtcp_listen_info the RTCP socket takes another port of the same address.
    t3 = await router.create_plain_transport(listen_ip="127.0.0.1", rtcp_mux=False)
    assert t3.rtcp_tuple["localAddress"] == "127.0.0.1" and t3.rtcp_tuple["localPort"] != t3.tuple["localPort"]


async def test_create_plain_transport_bad_arguments(router):
    with pytest.raises(TypeError, match="listen_info"):
        await router.create_plain_transport()
    with pytest.raises(TypeError, match="portRange"):
        await router.create_plain_transport(listen_info={**LOCAL, "portRange": {"min": 4000, "max": 3000}})
    with pytest.raises(TypeError, match="ip"):
        await router.create_plain_transport(listen_ip="123")
    with pytest.raises(TypeError, match="listen_ip"):
        await router.create_plain_transport(listen_ip=["127.0.0.1"])
    with pytest.raises(TypeError, match="protocol"):
        await router.create_plain_transport(listen_info={"protocol": "tcp", "ip": "127.0.0.1"})
    with pytest.raises(TypeError, match="app_data"):
        await router.create_plain_transport(listen_info=LOCAL, app_data="NOT-A-DICT")
    with pytest.raises(TypeError, match="srtp_crypto_suite"):
        await router.create_plain_transport(listen_info=LOCAL, enable_srtp=True, srtp_crypto_suite="FOO")
    with pytest.raises(TypeError, match="comedia"):
        await router.create_plain_transport(listen_info=LOCAL, comedia="yes")
    with pytest.raises(TypeError, match=r"numSctpStreams\.OS"):  # SCTP itself: test_data_channels.py
        await router.create_plain_transport(listen_info=LOCAL, enable_sctp=True, num_sctp_streams={"OS": 0})
    with pytest.raises(OSError):  # not an address of this host
        await router.create_plain_transport(listen_ip="8.8.8.8")


async def test_fixed_port_and_udp_reuse_port_flag(router):
    port = free_udp_port()
    a = await router.create_plain_transport(listen_info={**LOCAL, "port": port, "flags": {"udpReusePort": True}})
    b = await router.create_plain_transport(listen_info={**LOCAL, "port": port, "flags": {"udpReusePort": True}})
    assert a.tuple["localPort"] == b.tuple["localPort"] == port
    port2 = free_udp_port()
    await router.create_plain_transport(listen_info={**LOCAL, "port": port2, "flags": {"udpReusePort": False}})
    with pytest.raises(OSError):
        await router.create_plain_transport(listen_info={**LOCAL, "port": port2, "flags": {"udpReusePort": False}})


async def test_get_stats(router):
    t = await router.create_plain_transport(listen_ip="127.0.0.1")
    (s,) = await t.get_stats()
    assert s["type"] == "plain-rtp-transport" and s["transportId"] == t.id and isinstance(s["timestamp"], int)
    for key in ("bytesReceived", "bytesSent", "rtpBytesReceived", "rtpBytesSent", "rtxBytesSent", "probationBytesSent", "recvBitrate", "sendBitrate"):
        assert s[key] == 0, key
    assert s["tuple"]["localAddress"] == "127.0.0.1" and s["rtcpMux"] is True and s["comedia"] is False
    assert "rtcpTuple" not in s


# ------------------------------------------------------------------ connect
async def test_connect_and_its_bad_arguments(router):
    t = await router.create_plain_transport(listen_ip="127.0.0.1", rtcp_mux=False)
    key = "ZnQ3eWJraDg0d3ZoYzM5cXN1Y2pnaHU5NWxrZTVv"
    with pytest.raises(TypeError, match="srtp_parameters"):  # SRTP not enabled
        await t.connect(ip="127.0.0.2", port=9998, rtcp_port=9999, srtp_parameters={"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": key})
    with pytest.raises(TypeError, match="ip"):
        await t.connect()
    with pytest.raises(TypeError, match="ip"):
        await t.connect(ip="::::1234")
    with pytest.raises(TypeError, match="rtcp_port"):  # required without rtcp-mux
        await t.connect(ip="127.0.0.1", port=1234)
    with pytest.raises(TypeError, match="port"):
        await t.connect(ip="127.0.0.1", port="chicken", rtcp_port=1235)
    await t.connect(ip="1.2.3.4", port=1234, rtcp_port=1235)
    with pytest.raises(InvalidStateError, match="already"):
        await t.connect(ip="1.2.3.4", port=1234, rtcp_port=1235)
    assert (t.tuple["remoteIp"], t.tuple["remotePort"], t.tuple["protocol"]) == ("1.2.3.4", 1234, "udp")
    assert (t.rtcp_tuple["remoteIp"], t.rtcp_tuple["remotePort"]) == ("1.2.3.4", 1235)
    (s,) = await t.get_stats()
    assert s["tuple"]["remotePort"] == 1234 and s["rtcpTuple"]["remotePort"] == 1235

    muxed = await router.create_plain_transport(listen_ip="127.0.0.1")
    with pytest.raises(TypeError, match="rtcp_port"):  # not with rtcp-mux
        await muxed.connect(ip="127.0.0.1", port=1234, rtcp_port=1235)
    await muxed.connect(ip="::1", port=1234)
    assert muxed.tuple["remoteIp"] == "::1" and muxed.rtcp_tuple is None


async def test_srtp_parameters_and_connect(router):
    t = await router.create_plain_transport(listen_ip="127.0.0.1", enable_srtp=True)
    assert t.srtp_parameters["cryptoSuite"] == "AES_CM_128_HMAC_SHA1_80" and len(t.srtp_parameters["keyBase64"]) == 40
    key = "ZnQ3eWJraDg0d3ZoYzM5cXN1Y2pnaHU5NWxrZTVv"
    bad = [
        None,  # missing
        1,
        {"keyBase64": key},
        {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80"},
        {"cryptoSuite": "FOO", "keyBase64": key},
        {"cryptoSuite": 123, "keyBase64": key},
        {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": []},
        {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": "c2hvcnQ="},  # wrong length
    ]
    for params in bad:
        with pytest.raises(TypeError, match="srtp_parameters"):
            await t.connect(ip="127.0.0.2", port=9999, srtp_parameters=params)
    # A valid one in another suite: ours follows it (and gets a new key of the right length).
    await t.connect(ip="127.0.0.2", port=9999, srtp_parameters={"cryptoSuite": "AEAD_AES_256_GCM", "keyBase64": "YTdjcDBvY2JoMGY5YXNlNDc0eDJsdGgwaWRvNnJsamRrdG16aWVpZHphdHo="})
    assert t.srtp_parameters["cryptoSuite"] == "AEAD_AES_256_GCM" and len(t.srtp_parameters["keyBase64"]) == 60
    assert (await t.dump())["srtpParameters"] == t.srtp_parameters


# ------------------------------------------------------------------ media
async def test_comedia_learns_tuples_and_forwards_plain_to_plain(router):
    t_in = await router.create_plain_transport(listen_info=LOCAL, comedia=True, rtcp_mux=False)
    t_out = await router.create_plain_transport(listen_info=LOCAL)
    sender, sender_rtcp, receiver, intruder = [await Udp.open() for _ in range(4)]
    tuples, rtcp_tuples, observed = [], [], []
    t_in.on("tuple", tuples.append)
    t_in.on("rtcptuple", rtcp_tuples.append)
    t_in.observer.on("tuple", observed.append)
    producer = await t_in.produce(kind="video", rtp_parameters=FFMPEG_VP8)
    await t_out.connect(ip="127.0.0.1", port=receiver.port)
    consumer = await t_out.consume(producer_id=producer.id, rtp_capabilities=router.rtp_capabilities)
    ssrc, pt = consumer.rtp_parameters["encodings"][0]["ssrc"], consumer.rtp_parameters["codecs"][0]["payloadType"]

    for seq in range(40):
        sender.send(vp8(seq, key=seq == 0), t_in.tuple["localPort"])
    assert await wait_for(lambda: len(receiver.rtp()) == 40, 5.0), len(receiver.rtp())
    assert await wait_for(lambda: tuples, 2.0)
    assert tuples[0]["remotePort"] == sender.port and tuples[0]["localPort"] == t_in.tuple["localPort"]
    assert t_in.tuple["remotePort"] == sender.port and observed == tuples
    seqs = []
    for pkt in receiver.rtp():
        hdr = parse_rtp_header(pkt)
        assert hdr[4] == ssrc and hdr[0] == pt
        seqs.append(hdr[2])
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))

    # Once learned, the tuple is fixed: the same stream from another source is dropped.
    for seq in range(40, 50):
        intruder.send(vp8(seq), t_in.tuple["localPort"])
    await asyncio.sleep(0.3)
    assert len(receiver.rtp()) == 40
    assert (await t_in.dump())["droppedPackets"]["rtp_unknown_remote"] == 10

    # RTCP without rtcp-mux: the RTCP tuple is learned from the first RTCP packet on its socket.
    sender_rtcp.send(rtcp.build_rr(SSRC, []), t_in.rtcp_tuple["localPort"])
    assert await wait_for(lambda: rtcp_tuples, 2.0)
    assert rtcp_tuples[0]["remotePort"] == sender_rtcp.port and t_in.rtcp_tuple["remotePort"] == sender_rtcp.port
    # Reports go out every second: an RR about the stream to the sender's RTCP socket, an SR of
    # the consumer's stream to the receiver (rtcp-mux: on the RTP tuple).
    assert await wait_for(lambda: any(i[0] == "rr" and any(b[0] == SSRC for b in i[2]) for i in sender_rtcp.rtcp_items()), 3.0)
    assert await wait_for(lambda: any(i[0] == "sr" and i[1] == ssrc for i in receiver.rtcp_items()), 3.0)
    # A PLI from the receiver reaches the sender's RTCP socket (past the 1 s request throttle).
    await asyncio.sleep(1.1)
    receiver.send(rtcp.build_pli(1, ssrc), t_out.tuple["localPort"])
    assert await wait_for(lambda: any(i[0] == "pli" and i[2] == SSRC for i in sender_rtcp.rtcp_items()), 3.0)
    stats = await producer.get_stats()
    assert stats[0]["packetCount"] == 40
    for u in (sender, sender_rtcp, receiver, intruder):
        u.close()


async def test_without_comedia_nothing_is_accepted_before_connect(router):
    t = await router.create_plain_transport(listen_info=LOCAL)
    producer = await t.produce(kind="video", rtp_parameters=FFMPEG_VP8)
    sender = await Udp.open()

    async def packet_count() -> int:
        stats = await producer.get_stats()
        return stats[0]["packetCount"] if stats else 0

    for seq in range(5):
        sender.send(vp8(seq, key=seq == 0), t.tuple["localPort"])
    sender.send(rtcp.build_rr(SSRC, []), t.tuple["localPort"])
    await asyncio.sleep(0.3)
    dump = await t.dump()
    assert dump["droppedPackets"]["rtp_not_connected"] == 5 and dump["droppedPackets"]["rtcp_not_connected"] == 1
    assert await packet_count() == 0
    # After connect(), the given tuple is the accepted source.
    await t.connect(ip="127.0.0.1", port=sender.port)
    for seq in range(5, 10):
        sender.send(vp8(seq, key=seq == 5), t.tuple["localPort"])
    for _ in range(50):
        if await packet_count() == 5:
            break
        await asyncio.sleep(0.05)
    assert await packet_count() == 5
    sender.close()


async def test_srtp_both_ways(router):
    t_in = await router.create_plain_transport(listen_info=LOCAL, comedia=True, enable_srtp=True)
    t_out = await router.create_plain_transport(listen_info=LOCAL, enable_srtp=True, srtp_crypto_suite="AEAD_AES_128_GCM")
    assert t_out.srtp_parameters["cryptoSuite"] == "AEAD_AES_128_GCM"
    sender, receiver = await Udp.open(), await Udp.open()
    producer = await t_in.produce(kind="video", rtp_parameters=FFMPEG_VP8)

    sender_keys = generate_srtp_parameters("AES_CM_128_HMAC_SHA1_80")
    sender_srtp = SrtpSession.from_base64("AES_CM_128_HMAC_SHA1_80", sender_keys["keyBase64"], t_in.srtp_parameters["keyBase64"])
    # Not keyed yet: even comedia accepts nothing.
    sender.send(sender_srtp.protect_rtp(vp8(0, key=True)), t_in.tuple["localPort"])
    await asyncio.sleep(0.2)
    assert (await t_in.dump())["droppedPackets"]["srtp_not_ready"] == 1 and "remotePort" not in t_in.tuple
    await t_in.connect(srtp_parameters=sender_keys)

    receiver_keys = generate_srtp_parameters("AEAD_AES_128_GCM")
    receiver_srtp = SrtpSession.from_base64("AEAD_AES_128_GCM", receiver_keys["keyBase64"], t_out.srtp_parameters["keyBase64"])
    await t_out.connect(ip="127.0.0.1", port=receiver.port, srtp_parameters=receiver_keys)
    consumer = await t_out.consume(producer_id=producer.id, rtp_capabilities=router.rtp_capabilities)

    sent = [vp8(seq, key=seq == 1) for seq in range(1, 31)]
    for pkt in sent:
        sender.send(sender_srtp.protect_rtp(pkt), t_in.tuple["localPort"])
    forged = bytearray(sender_srtp.protect_rtp(vp8(31)))
    forged[-1] ^= 0xFF  # broken authentication tag
    sender.send(bytes(forged), t_in.tuple["localPort"])
    assert await wait_for(lambda: len(receiver.rtp()) == 30, 5.0), len(receiver.rtp())
    plain = [receiver_srtp.unprotect_rtp(p) for p in receiver.rtp()]
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    for got, want in zip(plain, sent):
        hdr, want_hdr = parse_rtp_header(got), parse_rtp_header(want)
        assert hdr[4] == ssrc and got[hdr[5] : hdr[9]] == want[want_hdr[5] : want_hdr[9]]
    assert (await t_in.dump())["droppedPackets"]["srtp_unprotect_failed"] == 1
    # SRTCP too: the receiver's PLI is decrypted, relayed, and re-encrypted to the sender.
    await asyncio.sleep(1.1)
    receiver.send(receiver_srtp.protect_rtcp(rtcp.build_pli(1, ssrc)), t_out.tuple["localPort"])

    items: list[tuple] = []
    seen = [len(sender.received)]

    def pli_at_sender():  # decrypt each SRTCP packet once (a second time is a replay)
        for d, _ in sender.received[seen[0] :]:
            if 191 < d[1] < 224:
                items.extend(rtcp.parse_rtcp(sender_srtp.unprotect_rtcp(d)))
        seen[0] = len(sender.received)
        return any(i[0] == "pli" and i[2] == SSRC for i in items)

    assert await wait_for(pli_at_sender, 3.0)
    sender.close()
    receiver.close()


# ------------------------------------------------------------------ closed objects and cascades
async def test_methods_reject_if_closed(router):
    t = await router.create_plain_transport(listen_ip="127.0.0.1")
    closes = []
    t.observer.on("close", lambda: closes.append(1))
    t.close()
    t.close()
    assert closes == [1] and t.closed
    for coro in (t.dump(), t.get_stats(), t.connect(ip="127.0.0.1", port=1000)):
        with pytest.raises(InvalidStateError):
            await coro
    with pytest.raises(InvalidStateError):
        await t.produce(kind="video", rtp_parameters=FFMPEG_VP8)


async def test_router_close_and_worker_close_cascade(router):
    t = await router.create_plain_transport(listen_ip="127.0.0.1")
    producer = await t.produce(kind="video", rtp_parameters=FFMPEG_VP8)
    events = []
    t.on("routerclose", lambda: events.append("routerclose"))
    t.observer.on("close", lambda: events.append("close"))
    producer.on("transportclose", lambda: events.append("producer transportclose"))
    router.close()
    assert t.closed and producer.closed
    assert events == ["producer transportclose", "routerclose", "close"]

    w = await create_worker()
    try:
        r = await w.create_router(media_codecs=MEDIA_CODECS)
        t2 = await r.create_plain_transport(listen_ip="127.0.0.1")
        got = []
        t2.on("routerclose", lambda: got.append("routerclose"))
        t2.observer.on("close", lambda: got.append("close"))
        w.close()
        assert t2.closed and got == ["routerclose", "close"]
    finally:
        w.close()
