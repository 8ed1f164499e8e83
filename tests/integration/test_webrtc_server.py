"""WebRtcServer (shared ports) and ICE over TCP through a WorkerActor, with raysfu's ClientPeer
on real sockets: UDP as usual, TCP through an RFC 4571 shim (``connect_peer_tcp`` below)."""

from __future__ import annotations

import asyncio
import copy
import socket

import pytest
from raysfu.actors.client_peer import ClientPeer
from raysfu.transport.errors import InvalidStateError, UnsupportedError
from raysfu.transport.ice import candidate_priority
from raysfu.transport.ice_tcp import Rfc4571Deframer, frame
from raysfu.transport.rtp import build_rtp, parse_rtp_header
from raysfu.transport.stun import build_binding_request

from .conftest import VP8_PRODUCER_PARAMS, client_caps, connect_peer, wait_for

LOCAL_UDP = {"protocol": "udp", "ip": "127.0.0.1"}
LOCAL_TCP = {"protocol": "tcp", "ip": "127.0.0.1"}
VP8_KEY = b"\x10" + b"\x00\x9d\x01\x2a" + bytes(100)
VP8_DELTA = b"\x10" + b"\x01" + bytes(100)


def params_for(ssrc: int, cname: str) -> dict:
    p = copy.deepcopy(VP8_PRODUCER_PARAMS)
    p["encodings"] = [{"ssrc": ssrc, "rtx": {"ssrc": ssrc + 1}, "dtx": False}]
    p["rtcp"]["cname"] = cname
    return p


def vp8(seq: int, ssrc: int, key: bool = False) -> bytes:
    return build_rtp(96, seq, 1000 + 3000 * seq, ssrc, VP8_KEY if key else VP8_DELTA, marker=True, extensions=[(4, b"0"), (3, b"\x00\x01")])


async def send_video(peer: ClientPeer, ssrc: int, count: int = 30) -> None:
    for i in range(count):
        peer.send_rtp(vp8(i, ssrc, key=(i == 0)))
        if i % 10 == 9:
            await asyncio.sleep(0.005)


class _TcpShim(asyncio.Protocol):
    """ClientPeer's ``udp`` over one TCP connection: RFC 4571 frames both ways."""

    def __init__(self, peer: ClientPeer) -> None:
        self.peer = peer
        self.deframer = Rfc4571Deframer()
        self.tcp: asyncio.Transport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, tcp) -> None:
        self.tcp = tcp

    def data_received(self, data: bytes) -> None:
        for datagram in self.deframer.feed(data):
            self.peer.datagram_received(datagram, None)

    def connection_lost(self, exc) -> None:
        self.lost.set()

    def sendto(self, data, addr=None) -> None:
        self.tcp.write(frame(data))

    def close(self) -> None:
        self.tcp.close()


async def connect_peer_tcp(transport) -> ClientPeer:
    """Our client peer connected to ``transport``'s first TCP candidate (ICE-TCP active side)."""
    cand = next(c for c in transport.ice_candidates if c["protocol"] == "tcp")
    peer = ClientPeer()
    _, shim = await asyncio.get_running_loop().create_connection(lambda: _TcpShim(peer), cand["address"], cand["port"])
    peer.udp = shim
    await transport.connect(dtls_parameters=peer.dtls_parameters)
    await peer.connect(transport.ice_parameters, [{**cand, "protocol": "udp"}], transport.dtls_parameters)
    return peer


async def cross_consume(router, t_a, t_b):
    """A produces on t_a, B on t_b; each transport consumes the other's producer."""
    caps = client_caps(router.rtp_capabilities)
    prod_a = await t_a.produce(kind="video", rtp_parameters=params_for(1000, "alice"))
    prod_b = await t_b.produce(kind="video", rtp_parameters=params_for(2000, "bob"))
    cons_a = await t_a.consume(producer_id=prod_b.id, rtp_capabilities=caps)  # A receives B
    cons_b = await t_b.consume(producer_id=prod_a.id, rtp_capabilities=caps)  # B receives A
    return cons_a, cons_b


@pytest.fixture
async def server(worker):
    s = await worker.create_webrtc_server(listen_infos=[LOCAL_UDP, LOCAL_TCP])
    yield s
    s.close()


async def test_two_peers_on_one_server_port_receive_each_other(router, server):
    handled = []
    server.observer.on("webrtctransporthandled", handled.append)
    t_a = await router.create_webrtc_transport(webrtc_server=server)
    t_b = await router.create_webrtc_transport(webrtc_server=server)
    assert handled == [t_a, t_b]
    udp_a = [c for c in t_a.ice_candidates if c["protocol"] == "udp"]
    udp_b = [c for c in t_b.ice_candidates if c["protocol"] == "udp"]
    assert len(udp_a) == len(udp_b) == 1 and udp_a[0]["port"] == udp_b[0]["port"]
    assert t_a.ice_candidates[0]["protocol"] == "udp"  # udp first
    tcp_a = next(c for c in t_a.ice_candidates if c["protocol"] == "tcp")
    assert tcp_a["tcpType"] == "passive" and tcp_a["port"] == server.local_addresses[1]["port"]
    assert t_a.ice_parameters["usernameFragment"] != t_b.ice_parameters["usernameFragment"]
    peer_a = await connect_peer(t_a)
    peer_b = await connect_peer(t_b)
    cons_a, cons_b = await cross_consume(router, t_a, t_b)
    await send_video(peer_a, 1000)
    await send_video(peer_b, 2000)
    assert await wait_for(lambda: len(peer_a.received_rtp) >= 30 and len(peer_b.received_rtp) >= 30)
    assert {parse_rtp_header(p)[4] for p in peer_a.received_rtp} == {cons_a.rtp_parameters["encodings"][0]["ssrc"]}
    assert {parse_rtp_header(p)[4] for p in peer_b.received_rtp} == {cons_b.rtp_parameters["encodings"][0]["ssrc"]}
    assert await wait_for(lambda: t_a.ice_selected_tuple is not None)
    assert t_a.ice_selected_tuple["protocol"] == "udp" and t_a.ice_selected_tuple["localPort"] == udp_a[0]["port"]
    dump = await server.dump()
    assert set(dump["webRtcTransportIds"]) == {t_a.id, t_b.id}
    assert dump["udpSockets"] == [{"ip": "127.0.0.1", "port": udp_a[0]["port"]}]
    assert dump["tcpServers"] == [{"ip": "127.0.0.1", "port": tcp_a["port"]}]
    assert {u["webRtcTransportId"] for u in dump["localIceUsernameFragments"]} == {t_a.id, t_b.id}
    assert sorted(h["webRtcTransportId"] for h in dump["tupleHashes"]) == sorted([t_a.id, t_b.id])
    unhandled = []
    server.observer.on("webrtctransportunhandled", unhandled.append)
    t_a.close()
    assert unhandled == [t_a]
    assert await wait_for_async(lambda d: [h for h in d["tupleHashes"] if h["webRtcTransportId"] == t_a.id] == [], server)
    for p in (peer_a, peer_b):
        p.close()
    t_b.close()


async def wait_for_async(pred, server, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if pred(await server.dump()):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_unknown_tuple_non_stun_is_dropped_and_counted(router, server):
    t = await router.create_webrtc_transport(webrtc_server=server)
    port = t.ice_candidates[0]["port"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(3):
            sock.sendto(vp8(1, 1234), ("127.0.0.1", port))  # RTP from nobody
        sock.sendto(build_binding_request("nosuchufrag:x", "p" * 24, priority=1), ("127.0.0.1", port))
        assert await wait_for_async(lambda d: d["droppedPackets"].get("unknown_tuple", 0) >= 3 and d["droppedPackets"].get("unknown_ufrag", 0) >= 1, server)
    finally:
        sock.close()
    # a right ufrag with a wrong password: routed to the transport, whose ICE refuses it
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    try:
        request = build_binding_request(f"{t.ice_parameters['usernameFragment']}:x", "wrong" * 5, priority=1)
        sock.sendto(request, ("127.0.0.1", port))
        answer = await asyncio.get_running_loop().run_in_executor(None, sock.recv, 2000)
        assert answer[0:2] == b"\x01\x11"  # Binding error response (401)
    finally:
        sock.close()
    assert (await server.dump())["tupleHashes"] == []
    t.close()


async def test_server_close_closes_its_transports(router, worker):
    server = await worker.create_webrtc_server(listen_infos=[LOCAL_UDP])
    t = await router.create_webrtc_transport(webrtc_server=server)
    peer = await connect_peer(t)
    producer = await t.produce(kind="video", rtp_parameters=params_for(3000, "carol"))
    events = []
    t.on("listenserverclose", lambda: events.append("listenserverclose"))
    producer.on("transportclose", lambda: events.append("producer transportclose"))
    server.close()
    assert server.closed and t.closed and producer.closed
    assert events == ["producer transportclose", "listenserverclose"]
    await asyncio.sleep(0.3)
    assert t.id not in (await router.dump())["transportIds"]
    assert server.id not in (await worker.dump())["webRtcServerIds"]
    with pytest.raises(InvalidStateError):
        await router.create_webrtc_transport(webrtc_server=server)
    peer.close()


async def test_tcp_transport_forwards_rtp(router):
    t_pub = await router.create_webrtc_transport(listen_infos=[LOCAL_UDP], enable_tcp=True)
    t_sub = await router.create_webrtc_transport(listen_infos=[LOCAL_UDP], enable_tcp=True, prefer_tcp=True)
    udp, tcp = t_pub.ice_candidates
    assert (udp["protocol"], tcp["protocol"], tcp["tcpType"]) == ("udp", "tcp", "passive")
    assert udp["priority"] == candidate_priority(10000) and tcp["priority"] == candidate_priority(9900)
    assert [c["protocol"] for c in t_sub.ice_candidates] == ["tcp", "udp"]
    assert t_sub.ice_candidates[0]["priority"] == candidate_priority(11000)
    pub = await connect_peer_tcp(t_pub)
    sub = await connect_peer_tcp(t_sub)
    cons = await t_sub.consume(producer_id=(await t_pub.produce(kind="video", rtp_parameters=params_for(4000, "dave"))).id,
                               rtp_capabilities=client_caps(router.rtp_capabilities))
    await send_video(pub, 4000, 50)
    assert await wait_for(lambda: len(sub.received_rtp) >= 50)
    assert {parse_rtp_header(p)[4] for p in sub.received_rtp} == {cons.rtp_parameters["encodings"][0]["ssrc"]}
    assert await wait_for(lambda: t_pub.ice_selected_tuple is not None)
    assert t_pub.ice_selected_tuple["protocol"] == "tcp" and t_pub.ice_selected_tuple["localPort"] == tcp["port"]
    # the TCP connection goes away: its tuple leaves ICE, which has no other one
    states = []
    t_pub.on("icestatechange", states.append)
    pub.close()
    assert await wait_for(lambda: "disconnected" in states)
    sub.close()
    t_pub.close()
    t_sub.close()


async def test_tcp_on_server_to_udp_on_server(router, server):
    t_pub = await router.create_webrtc_transport(webrtc_server=server, prefer_tcp=True)
    t_sub = await router.create_webrtc_transport(webrtc_server=server, enable_tcp=False)
    assert [c["protocol"] for c in t_sub.ice_candidates] == ["udp"]
    assert [c["protocol"] for c in t_pub.ice_candidates] == ["udp", "tcp"]
    assert t_pub.ice_candidates[1]["priority"] > t_pub.ice_candidates[0]["priority"]
    pub = await connect_peer_tcp(t_pub)
    sub = await connect_peer(t_sub)
    producer = await t_pub.produce(kind="video", rtp_parameters=params_for(5000, "erin"))
    await t_sub.consume(producer_id=producer.id, rtp_capabilities=client_caps(router.rtp_capabilities))
    await send_video(pub, 5000, 40)
    assert await wait_for(lambda: len(sub.received_rtp) >= 40)
    assert t_pub.ice_selected_tuple["protocol"] == "tcp"
    dump = await server.dump()
    assert any(h["tupleHash"].startswith("tcp:") and h["webRtcTransportId"] == t_pub.id for h in dump["tupleHashes"])
    t_pub.close()  # closes the server-side TCP connection of that transport
    assert await asyncio.wait_for(pub.udp.lost.wait(), 5)
    for p in (pub, sub):
        p.close()
    t_sub.close()


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\x00\x0a" + b"\xff" * 10, "tcp_garbage"),
        (b"GET / HTTP/1.1\r\n\r\n", "tcp_oversize"),
        (frame(build_rtp(96, 1, 1, 1, b"x" * 20)), "tcp_not_stun"),
    ],
)
async def test_tcp_garbage_closes_the_connection_and_counts(router, payload, reason):
    t = await router.create_webrtc_transport(listen_infos=[LOCAL_TCP])
    cand = t.ice_candidates[0]
    assert [c["protocol"] for c in t.ice_candidates] == ["tcp"]
    reader, writer = await asyncio.open_connection(cand["address"], cand["port"])
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed by the server
    writer.close()
    dump = await t.dump()
    assert dump["droppedPackets"].get(reason) == 1
    t.close()


async def test_tcp_garbage_on_server_is_counted(router, server):
    port = server.local_addresses[1]["port"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(build_binding_request("nobody:x", "p" * 24, priority=1)))
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    writer.close()
    assert (await server.dump())["droppedPackets"].get("tcp_unknown_ufrag") == 1


async def test_bad_options_name_the_field(router, worker, server):
    with pytest.raises(TypeError, match="webrtc_server"):
        await router.create_webrtc_transport(webrtc_server=server, listen_infos=[LOCAL_UDP])
    with pytest.raises(TypeError, match="webrtc_server"):
        await router.create_webrtc_transport(webrtc_server="not-a-server")
    with pytest.raises(TypeError, match="enable_udp/enable_tcp"):
        await router.create_webrtc_transport(listen_infos=[LOCAL_UDP], enable_udp=False, enable_tcp=False)
    with pytest.raises(TypeError, match="enable_tcp"):
        await router.create_webrtc_transport(listen_infos=[LOCAL_UDP], enable_tcp="yes")
    with pytest.raises(TypeError, match="listen_infos"):  # nothing left to bind
        await router.create_webrtc_transport(listen_infos=[LOCAL_UDP], enable_udp=False)
    server_udp = await worker.create_webrtc_server(listen_infos=[LOCAL_UDP])
    try:
        with pytest.raises(TypeError, match="enable_udp/enable_tcp"):  # only UDP on it
            await router.create_webrtc_transport(webrtc_server=server_udp, enable_udp=False)
    finally:
        server_udp.close()
    with pytest.raises(TypeError, match=r"listen_infos\[0\]\.protocol"):
        await worker.create_webrtc_server(listen_infos=[{"protocol": "sctp", "ip": "127.0.0.1"}])
    with pytest.raises(TypeError, match=r"listen_infos\[0\]\.ip"):
        await worker.create_webrtc_server(listen_infos=[{"protocol": "udp", "ip": "nope"}])
    with pytest.raises(TypeError, match="listen_infos"):
        await worker.create_webrtc_server(listen_infos=[])
    with pytest.raises(TypeError, match=r"listen_infos\[1\]"):
        await worker.create_webrtc_server(listen_infos=[{**LOCAL_UDP, "port": 40999}, {**LOCAL_UDP, "port": 40999}])
    with pytest.raises((TypeError, UnsupportedError), match="(?i)tcp"):  # still UDP only
        await router.create_plain_transport(listen_info=LOCAL_TCP)
