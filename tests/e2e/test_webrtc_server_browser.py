"""WebRtcServer and ICE-TCP with Chromium (the lab): two peers on one server port decode each
other's video; a peer that cannot use UDP decodes over ICE-TCP.

UDP blocking: when this process runs as root in a network namespace of its own (``make test``
runs pytest under ``unshare --net``) and ``nft`` exists, an nftables table drops UDP to the
server's UDP port inside that namespace, and the browser gets the UDP and TCP candidates as usual:
ICE must fall back to TCP. Otherwise (never touching the host's rules) the browser is offered
only the TCP candidates (``enable_udp=False``), which also proves TCP carries the media: the
server-side tuple is asserted to be TCP in both cases.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from .lab import poll

MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]
LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}, {"protocol": "tcp", "ip": "127.0.0.1"}]
NFT_TABLE = "raysfu_test_block_udp"


async def decoding(peer, consumer_id: str, frames: int = 30):
    async def check():
        inbound = {s["consumerId"]: s for s in (await peer.stats())["inbound"]}
        s = inbound.get(consumer_id)
        return bool(s and s["framesDecoded"] >= frames and s["frameWidth"] > 0), inbound

    return await poll(check, timeout_s=30.0)


async def test_two_browsers_on_one_server_port_decode_each_other(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    server = await worker.create_webrtc_server(listen_infos=LISTEN)
    udp_port = server.local_addresses[0]["port"]
    alice, bob = await lab_peer("alice"), await lab_peer("bob")
    for peer in (alice, bob):
        await peer.create_send_transport(router, webrtc_server=server)
        await peer.create_recv_transport(router, webrtc_server=server)
    transports = [alice.send, alice.recv, bob.send, bob.recv]
    for t in transports:  # every transport lists the same UDP port
        assert [c["port"] for c in t.ice_candidates if c["protocol"] == "udp"] == [udp_port]
    video_a = await alice.produce("video")
    video_b = await bob.produce("video")
    from_b = await alice.consume(video_b.id)
    from_a = await bob.consume(video_a.id)
    ok_a, info_a = await decoding(alice, from_b.id)
    ok_b, info_b = await decoding(bob, from_a.id)
    assert ok_a and ok_b, f"{info_a}\n{info_b}\n{alice.console_tail()}\n{bob.console_tail()}"
    first = {s["consumerId"]: s["framesDecoded"] for s in (await alice.stats())["inbound"]}[from_b.id]
    ok, info = await poll(lambda: _more_frames(alice, from_b.id, first), timeout_s=10.0)
    assert ok, f"framesDecoded stopped rising: {info}"
    for t in transports:
        assert t.ice_selected_tuple["protocol"] == "udp" and t.ice_selected_tuple["localPort"] == udp_port
    dump = await server.dump()
    assert set(dump["webRtcTransportIds"]) == {t.id for t in transports}
    server.close()
    assert all(t.closed for t in transports)
    router.close()


async def _more_frames(peer, consumer_id: str, than: int):
    inbound = {s["consumerId"]: s for s in (await peer.stats())["inbound"]}
    n = inbound[consumer_id]["framesDecoded"]
    return n > than + 10, n


def _can_block_udp() -> str | None:
    """None when UDP can be blocked here safely, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("nft") is None:
        return "nft is missing (apt-get install nftables)"
    # Our own loopback-only namespace (make test: `unshare --net`): no interface but lo, and
    # not the namespace of PID 1 when that can be read. A host's rules are never touched.
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        return f"not in a loopback-only network namespace (interfaces {names}; make test runs under `unshare --net`)"
    try:
        if os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net"):
            return "in the network namespace of PID 1"
    except OSError:
        pass  # PID 1's namespace is not readable from here: loopback-only is enough
    return None


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True, capture_output=True, timeout=10)


async def test_browser_without_udp_decodes_over_ice_tcp(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    server = await worker.create_webrtc_server(listen_infos=LISTEN)
    udp_port = server.local_addresses[0]["port"]
    why_not = _can_block_udp()
    blocked = False
    if why_not is None:
        _nft(f"add table inet {NFT_TABLE}\n"
             f"add chain inet {NFT_TABLE} out {{ type filter hook output priority 0; }}\n"
             f"add rule inet {NFT_TABLE} out udp dport {udp_port} drop\n")
        blocked = True
    try:
        # blocked: both candidates offered, ICE falls back to TCP; else only TCP offered
        options = {"webrtc_server": server} if blocked else {"webrtc_server": server, "enable_udp": False}
        alice, bob = await lab_peer("alice"), await lab_peer("bob")
        send = await alice.create_send_transport(router, **options)
        recv = await bob.create_recv_transport(router, **options)
        assert any(c["protocol"] == "tcp" and c["tcpType"] == "passive" for c in send.ice_candidates)
        assert any(c["protocol"] == "udp" for c in send.ice_candidates) == blocked
        video = await alice.produce("video")
        consumer = await bob.consume(video.id)
        ok, info = await decoding(bob, consumer.id)
        assert ok, f"(udp blocked: {blocked}; {why_not}) {info}\n{alice.console_tail()}\n{bob.console_tail()}"
        for t in (send, recv):
            assert t.ice_selected_tuple["protocol"] == "tcp", t.ice_selected_tuple
        dump = await server.dump()
        hashes = {h["webRtcTransportId"]: h["tupleHash"] for h in dump["tupleHashes"]}
        assert hashes[send.id].startswith("tcp:") and hashes[recv.id].startswith("tcp:")
        if blocked:
            print(f"UDP to port {udp_port} was dropped by nftables; media went over ICE-TCP")
        else:
            print(f"UDP not blocked ({why_not}): only TCP candidates were offered")
    finally:
        if blocked:
            _nft(f"delete table inet {NFT_TABLE}\n")
        server.close()
        router.close()
