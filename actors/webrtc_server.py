"""WebRtcServer (one UDP port / TCP port shared by many WebRtcTransports) and ICE-TCP sockets.

mediasoup ``WebRtcServer``: the worker owns one UDP socket and/or one TCP listening socket per
listen info; the WebRtcTransports created with ``webRtcServer`` bind nothing and are found by

- the remote tuple for a packet from a tuple ICE validated (one dict lookup, then the
  transport's usual receive path; its send path uses the server socket's ``sendto``);
- the local ICE username fragment in a STUN Binding request's USERNAME for anything else
  (every STUN packet goes this way, so a tuple that moves to another transport follows it).

A non-STUN packet from an unknown tuple is dropped and counted (``drops["unknown_tuple"]``),
as is a request whose ufrag names no transport (``drops["unknown_ufrag"]``). The tuple table
loses a transport's entries when it closes, when a STUN check shows ICE dropped the tuple, and
on a sweep every ``SWEEP_INTERVAL_S`` (consent expiry). Closing the server closes its
transports (``listenserverclose``).

ICE over TCP (RFC 6544 passive candidates): :class:`IceTcpConnection` is one accepted
connection, on a WebRtcTransport's own TCP listener or a WebRtcServer's; RFC 4571 frames
(:mod:`raysfu.transport.ice_tcp`) carry the same STUN/DTLS/SRTP datagrams as UDP. Its first
frame must be a STUN Binding request (it picks the transport); broken framing closes the
connection and is counted (``tcp_oversize``, ``tcp_garbage``, ``tcp_not_stun``). The ICE tuple
of a connection is ``(ip, port, "tcp")``; when the connection closes the tuple is removed from
ICE (``IceLiteServer.remove_tuple``).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

from raysfu.transport.errors import InvalidStateError, PacketParseError
from raysfu.transport.ice import ice_candidates
from raysfu.transport.ice_tcp import Rfc4571Deframer, frame, stun_local_ufrag

from .webrtc_transport import SOCKET_BUFFER_BYTES, bind_udp, validate_listen_info

if TYPE_CHECKING:  # pragma: no cover
    from .webrtc_transport import WebRtcTransport
    from .worker import WorkerCore

SWEEP_INTERVAL_S = 1.0
#: Accepted TCP connections that have not yet sent a valid first frame, per listener.
MAX_PENDING_TCP = 64


def bind_tcp(info: dict) -> socket.socket:
    """Bind a non-blocking TCP listening socket for a validated listen info (``port``, else a
    random free one of ``portRange``, else ephemeral; SO_REUSEADDR). Raises ``OSError``."""
    import random

    family = socket.AF_INET6 if ":" in info["ip"] else socket.AF_INET
    if info.get("port"):
        ports = [info["port"]]
    elif info.get("portRange"):
        ports = list(range(info["portRange"]["min"], info["portRange"]["max"] + 1))
        random.shuffle(ports)
    else:
        ports = [0]
    last: OSError | None = None
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, info.get("recvBufferSize") or SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, info.get("sendBufferSize") or SOCKET_BUFFER_BYTES)
            sock.bind((info["ip"], port))
            sock.listen(128)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise OSError(f"could not bind TCP on {info['ip']} ({last})")


class IceTcpConnection(asyncio.Protocol):
    """One accepted ICE-TCP connection (RFC 6544 passive side, RFC 4571 framing).

    ``owner`` is the WebRtcTransport or WebRtcServer whose listener accepted it; it provides
    ``first_tcp_frame(conn, datagram) -> WebRtcTransport | None`` and a ``drops`` Counter.
    Afterwards every frame goes to ``transport.datagram_received(datagram, key, conn)``.
    Duck-typed like the UDP protocol objects: ``sendto(data, addr)`` (framed write; addr
    ignored), ``udp`` (itself), ``index`` (the listen info it came in on).
    """

    def __init__(self, owner: Any, index: int) -> None:
        self.owner = owner
        self.index = index
        self.udp = self
        self.transport: WebRtcTransport | None = None
        self.key: tuple | None = None
        self.tcp: asyncio.Transport | None = None
        self.deframer = Rfc4571Deframer()
        self.closed = False

    def connection_made(self, tcp) -> None:
        self.tcp = tcp
        peer = tcp.get_extra_info("peername")
        self.key = (peer[0], peer[1], "tcp")
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        pending = getattr(self.owner, "pending_tcp", None)
        if pending is not None:
            if len(pending) >= MAX_PENDING_TCP:
                self.owner.drops["tcp_too_many_pending"] += 1
                self.close()
                return
            pending.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.deframer.feed(data)
        except PacketParseError as exc:
            self.owner.drops["tcp_" + exc.reason] += 1
            self.close()
            return
        for datagram in frames:
            t = self.transport
            if t is None:
                if datagram[0] > 3:
                    self.owner.drops["tcp_not_stun"] += 1
                    self.close()
                    return
                t = self.owner.first_tcp_frame(self, datagram)
                if t is None:
                    self.close()
                    return
                self.transport = t
                t.tcp_connections.add(self)
                pending = getattr(self.owner, "pending_tcp", None)
                if pending is not None:
                    pending.discard(self)
            try:
                t.datagram_received(datagram, self.key, self)
            except Exception:  # noqa: BLE001 - a bug must not kill the connection; it is counted
                t.drops["internal_error"] += 1
            if self.closed:
                return

    def sendto(self, data, addr=None) -> None:
        """Write one datagram as an RFC 4571 frame (``addr`` is implied by the connection)."""
        tcp = self.tcp
        if tcp is None or self.closed:
            raise OSError("ICE-TCP connection closed")
        tcp.write(frame(data))

    def connection_lost(self, exc) -> None:
        self.closed = True
        pending = getattr(self.owner, "pending_tcp", None)
        if pending is not None:
            pending.discard(self)
        t = self.transport
        if t is not None:
            t.tcp_connection_lost(self)

    def close(self) -> None:
        if self.tcp is not None and not self.closed:
            self.closed = True
            self.tcp.close()


class _ServerUdpProtocol(asyncio.DatagramProtocol):
    """A WebRtcServer UDP socket: known tuple (and not STUN) → its transport, else the server."""

    __slots__ = ("index", "sendto", "server", "tuples", "udp")

    def __init__(self, server: WebRtcServer, index: int, sock: socket.socket) -> None:
        self.server = server
        self.index = index
        self.udp: asyncio.DatagramTransport | None = None
        self.sendto = sock.sendto
        #: remote (ip, port) → WebRtcTransport, for tuples ICE validated
        self.tuples: dict[Any, WebRtcTransport] = {}

    def connection_made(self, transport) -> None:
        self.udp = transport

    def datagram_received(self, data: bytes, addr) -> None:
        t = self.tuples.get(addr)
        try:
            if t is not None and data[0] > 3:
                t.datagram_received(data, addr, self)
            else:
                self.server.route_udp(data, addr, self)
        except IndexError:
            self.server.drops["empty"] += 1
        except Exception:  # noqa: BLE001 - a bug must not kill the socket; it is counted
            self.server.drops["internal_error"] += 1

    def error_received(self, exc) -> None:
        self.server.drops["socket_error"] += 1


def validate_webrtc_server_options(options: Any) -> dict:
    """Check ``worker.create_webrtc_server()`` options: ``{"listenInfos": [TransportListenInfo
    with protocol "udp"|"tcp"], "appData"?}``. Two entries may not share protocol, ip and a fixed
    port. Raises ``TypeError`` naming the field."""
    if not isinstance(options, dict):
        raise TypeError("options must be a dict")
    infos = options.get("listenInfos")
    if not isinstance(infos, list) or not infos:
        raise TypeError("listen_infos must be a non-empty list")
    out = [validate_listen_info(info, f"listen_infos[{i}]", allow_tcp=True) for i, info in enumerate(infos)]
    seen = set()
    for i, info in enumerate(out):
        if info["port"]:
            key = (info["protocol"], info["ip"], info["port"])
            if key in seen:
                raise TypeError(f"listen_infos[{i}]: {info['protocol']} {info['ip']}:{info['port']} is listed twice")
            seen.add(key)
    return {"listenInfos": out, "appData": options.get("appData")}


class WebRtcServer:
    """mediasoup ``WebRtcServer`` inside the WorkerActor (module docstring)."""

    def __init__(self, worker: WorkerCore, server_id: str, options: dict) -> None:
        self.worker = worker
        self.id = server_id
        self.listen_infos = options["listenInfos"]
        self.app_data = options.get("appData")
        self.closed = False
        self.udp_protocols: list[_ServerUdpProtocol] = []
        self.tcp_servers: list[asyncio.AbstractServer] = []
        #: one per listen info: {"protocol", "ip", "announcedAddress", "port"} (bound port)
        self.local_addrs: list[dict] = []
        self.transports: dict[str, WebRtcTransport] = {}
        self.ufrags: dict[str, WebRtcTransport] = {}
        #: transport id → {(protocol object, remote)} it holds in the tuple tables
        self._transport_tuples: dict[str, set] = {}
        self.pending_tcp: set[IceTcpConnection] = set()
        self.drops: Counter[str] = Counter()
        self._sweep: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        """Bind every listen info (UDP socket or TCP listener). Raises ``OSError``."""
        loop = asyncio.get_running_loop()
        try:
            for index, info in enumerate(self.listen_infos):
                if info["protocol"] == "udp":
                    sock = bind_udp(info)
                    protocol = _ServerUdpProtocol(self, index, sock)
                    await loop.create_datagram_endpoint(lambda p=protocol: p, sock=sock)
                    self.udp_protocols.append(protocol)
                else:
                    sock = bind_tcp(info)
                    server = await loop.create_server(lambda i=index: IceTcpConnection(self, i), sock=sock)
                    self.tcp_servers.append(server)
                self.local_addrs.append(
                    {"protocol": info["protocol"], "ip": info["ip"], "announcedAddress": info.get("announcedAddress"), "port": sock.getsockname()[1]}
                )
        except BaseException:
            self._close_sockets()
            raise
        self._sweep = loop.call_later(SWEEP_INTERVAL_S, self._on_sweep)

    # ------------------------------------------------------------------ transports
    def ice_candidates(self, *, enable_udp: bool, enable_tcp: bool, prefer_udp: bool, prefer_tcp: bool) -> list[dict]:
        """The candidates of a transport on this server: the listen infos of the enabled
        protocols, in order, priorities as :func:`raysfu.transport.ice.ice_candidates`.
        Raises ``TypeError`` when no listen info matches."""
        addrs = [a for a in self.local_addrs if (a["protocol"] == "udp" and enable_udp) or (a["protocol"] == "tcp" and enable_tcp)]
        if not addrs:
            raise TypeError("enable_udp/enable_tcp: the WebRtcServer has no listen info of an enabled protocol")
        return ice_candidates(addrs, prefer_udp=prefer_udp, prefer_tcp=prefer_tcp)

    def register_transport(self, transport: WebRtcTransport) -> None:
        if self.closed:
            raise InvalidStateError("webrtc_server closed")
        self.transports[transport.id] = transport
        self._transport_tuples[transport.id] = set()
        self.refresh_ufrag(transport)

    def refresh_ufrag(self, transport: WebRtcTransport) -> None:
        """Map the transport's current local ufrag (after creation or ``restartIce``)."""
        for ufrag in [u for u, t in self.ufrags.items() if t is transport]:
            del self.ufrags[ufrag]
        if not transport.closed:
            self.ufrags[transport.core.ice.username_fragment] = transport

    def unregister_transport(self, transport: WebRtcTransport) -> None:
        """Forget a closing transport: its ufrag and tuples."""
        if self.transports.pop(transport.id, None) is None:
            return
        for ufrag in [u for u, t in self.ufrags.items() if t is transport]:
            del self.ufrags[ufrag]
        for protocol, remote in self._transport_tuples.pop(transport.id, ()):
            if protocol.tuples.get(remote) is transport:
                del protocol.tuples[remote]

    def _sync_tuples(self, transport: WebRtcTransport) -> None:
        held = self._transport_tuples.get(transport.id)
        if held is None:
            return
        is_valid = transport.core.ice.is_valid_tuple
        for item in [x for x in held if not is_valid(x[1])]:
            held.discard(item)
            protocol, remote = item
            if protocol.tuples.get(remote) is transport:
                del protocol.tuples[remote]

    def _on_sweep(self) -> None:
        self._sweep = None
        if self.closed:
            return
        for transport in list(self.transports.values()):
            self._sync_tuples(transport)
        self._sweep = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._on_sweep)

    # ------------------------------------------------------------------ receive
    def route_udp(self, data: bytes, addr, protocol: _ServerUdpProtocol) -> None:
        """A packet from an unknown tuple, or any STUN packet: find its transport by ufrag."""
        if data[0] > 3:
            self.drops["unknown_tuple"] += 1
            return
        ufrag = stun_local_ufrag(data)
        t = self.ufrags.get(ufrag) if ufrag is not None else None
        if t is None:
            t = protocol.tuples.get(addr)  # e.g. an old ufrag after restartIce: its ICE answers 401
            if t is None:
                self.drops["unknown_ufrag" if ufrag is not None else "unknown_tuple"] += 1
                return
        t.datagram_received(data, addr, protocol)
        held = self._transport_tuples.get(t.id)
        if held is not None and t.core.ice.is_valid_tuple(addr):
            old = protocol.tuples.get(addr)
            if old is not t:
                protocol.tuples[addr] = t
                held.add((protocol, addr))
        self._sync_tuples(t)

    def first_tcp_frame(self, conn: IceTcpConnection, datagram: bytes) -> WebRtcTransport | None:
        """The transport a new TCP connection belongs to, by the ufrag of its first STUN
        request; None (the connection is closed) when it names none."""
        ufrag = stun_local_ufrag(datagram)
        t = self.ufrags.get(ufrag) if ufrag is not None else None
        if t is None:
            self.drops["tcp_unknown_ufrag" if ufrag is not None else "tcp_not_stun"] += 1
        return t

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the sockets and every transport on this server; each transport gets
        ``listenserverclose`` (mediasoup)."""
        if self.closed:
            return
        self.closed = True
        for transport in list(self.transports.values()):
            if not transport.closed:
                self.worker.emit(transport.id, "listenserverclose", None)
                transport.router.close_transport(transport, "listenserverclose")
        self.transports.clear()
        self.ufrags.clear()
        self._close_sockets()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _close_sockets(self) -> None:
        for protocol in self.udp_protocols:
            protocol.tuples.clear()
            if protocol.udp is not None:
                protocol.udp.close()
        for server in self.tcp_servers:
            server.close()
        for conn in list(self.pending_tcp):
            conn.close()
        self.pending_tcp.clear()
        self.udp_protocols = []
        self.tcp_servers = []

    def dump(self) -> dict:
        """mediasoup ``WebRtcServerDump`` plus ``droppedPackets`` (our counters)."""
        tuple_hashes = []
        for protocol in self.udp_protocols:
            local_port = self.local_addrs[protocol.index]["port"]
            for remote, t in protocol.tuples.items():
                tuple_hashes.append({"tupleHash": f"udp:{remote[0]}:{remote[1]}:{local_port}", "webRtcTransportId": t.id})
        for t in self.transports.values():
            for conn in t.tcp_connections:
                if conn.owner is self and conn.key is not None:
                    local_port = self.local_addrs[conn.index]["port"]
                    tuple_hashes.append({"tupleHash": f"tcp:{conn.key[0]}:{conn.key[1]}:{local_port}", "webRtcTransportId": t.id})
        return {
            "id": self.id,
            "udpSockets": [{"ip": a["ip"], "port": a["port"]} for a in self.local_addrs if a["protocol"] == "udp"],
            "tcpServers": [{"ip": a["ip"], "port": a["port"]} for a in self.local_addrs if a["protocol"] == "tcp"],
            "webRtcTransportIds": list(self.transports),
            "localIceUsernameFragments": [{"localIceUsernameFragment": u, "webRtcTransportId": t.id} for u, t in self.ufrags.items()],
            "tupleHashes": tuple_hashes,
            "droppedPackets": dict(self.drops),
        }
