"""In-actor PlainTransport: plain RTP/RTCP (optionally SRTP) over UDP, for ffmpeg, GStreamer and
other non-WebRTC endpoints.

mediasoup ``PlainTransport``: no ICE, no DTLS. One UDP socket, or two when ``rtcpMux`` is off
(the second one for RTCP). The remote tuple is either given by ``connect({ip, port, rtcpPort})``
or, with ``comedia``, learned from the first valid packet (RTP, or RTCP with rtcp-mux) and then
fixed: datagrams from any other source are dropped and counted. With ``enableSrtp`` the keys are
signalled: our ``srtpParameters`` (generated here) and the remote's, given to ``connect()``;
nothing is accepted before that, even with comedia. A remote crypto suite other than ours
replaces ours and regenerates our key, as mediasoup does (``PlainTransport.cpp`` CONNECT).

Events: ``tuple`` (comedia learned the RTP tuple), ``rtcptuple`` (comedia learned the RTCP tuple
when rtcp-mux is off).

ffmpeg (``-f rtp rtp://host:port?rtcpport=P``) sends RTCP from another local port than RTP. With
comedia and rtcp-mux, whichever packet comes first fixes the tuple, and an early SR would lock
out the RTP: give such senders ``rtcp_mux=False`` and point ``rtcpport`` at ``rtcp_tuple``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from raysfu.transport.errors import InvalidStateError, PacketParseError, UnsupportedError
from raysfu.transport.srtp import SRTP_CRYPTO_SUITES, SrtpSession, generate_srtp_parameters
from raysfu.transport.sctp import looks_like_sctp  # data channels (issue 7)

from .webrtc_transport import (
    SEND_BUFFER,
    SEND_VIEWS,
    SOCKET_BUFFER_BYTES,
    Transport,
    _check_ip,
    _UdpProtocol,
    bind_udp,
    validate_listen_info,
)

if TYPE_CHECKING:  # pragma: no cover
    from .router import Router

DEFAULT_SRTP_CRYPTO_SUITE = "AES_CM_128_HMAC_SHA1_80"


def _plain_listen_info(info: Any, field: str) -> dict:
    if isinstance(info, dict) and info.get("protocol", "udp") != "udp":
        raise TypeError(f"{field}.protocol must be 'udp' (a PlainTransport has no TCP)")
    return validate_listen_info(info, field)


def validate_plain_transport_options(options: dict) -> dict:
    """Check ``router.create_plain_transport()`` options (mediasoup ``PlainTransportOptions``).

    Known keys: ``listenInfo`` (or the deprecated ``listenIp`` str | ``{ip, announcedIp}`` with
    ``port``), ``rtcpListenInfo`` (only without rtcp-mux; default: ``listenInfo`` on another
    port), ``rtcpMux`` (bool, default True), ``comedia`` (bool, default False), ``enableSrtp``
    (bool), ``srtpCryptoSuite`` (one of ``SRTP_CRYPTO_SUITES``, default
    AES_CM_128_HMAC_SHA1_80), ``enableSctp`` and the SCTP sizes, ``appData``.
    Returns a normalised copy. Raises ``TypeError`` naming the field, ``UnsupportedError`` for
    SCTP (data channels come later).
    """
    info = options.get("listenInfo")
    if info is None and options.get("listenIp") is not None:
        ip = options["listenIp"]
        if isinstance(ip, dict):
            info = {"protocol": "udp", "ip": ip.get("ip"), "announcedAddress": ip.get("announcedIp"), "port": options.get("port", 0)}
        elif isinstance(ip, str):
            info = {"protocol": "udp", "ip": ip, "port": options.get("port", 0)}
        else:
            raise TypeError("listen_ip must be a string or a dict {ip, announcedIp}")
    if info is None:
        raise TypeError("listen_info must be a dict")
    info = _plain_listen_info(info, "listen_info")
    for key in ("rtcpMux", "comedia", "enableSrtp", "enableSctp"):
        if not isinstance(options.get(key, False), bool):
            raise TypeError(f"{key} must be a bool")
    rtcp_mux = options.get("rtcpMux", True)
    rtcp_info = options.get("rtcpListenInfo")
    if rtcp_mux:
        rtcp_info = None  # mediasoup ignores it with rtcp-mux
    elif rtcp_info is not None:
        rtcp_info = _plain_listen_info(rtcp_info, "rtcp_listen_info")
    else:
        rtcp_info = dict(info, port=0)  # the same address; never the RTP port itself
    # --- data channels (issue 7): enableSctp & co are checked by make_transport_data_channels ---
    suite = options.get("srtpCryptoSuite", DEFAULT_SRTP_CRYPTO_SUITE)
    if suite not in SRTP_CRYPTO_SUITES:
        raise TypeError(f"srtp_crypto_suite must be one of {sorted(SRTP_CRYPTO_SUITES)}")
    out = dict(options)
    out.update(listenInfo=info, rtcpListenInfo=rtcp_info, rtcpMux=rtcp_mux, comedia=options.get("comedia", False), srtpCryptoSuite=suite)
    return out


def _bind(info: dict) -> socket.socket:
    """Bind like :func:`bind_udp`, plus ``flags.udpReusePort`` (SO_REUSEPORT on a fixed port)."""
    if not (info.get("flags") or {}).get("udpReusePort") or not info.get("port"):
        return bind_udp(info)
    family = socket.AF_INET6 if ":" in info["ip"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, info.get("recvBufferSize") or SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, info.get("sendBufferSize") or SOCKET_BUFFER_BYTES)
        sock.bind((info["ip"], info["port"]))
        sock.setblocking(False)
        return sock
    except OSError as exc:
        sock.close()
        raise OSError(f"could not bind UDP on {info['ip']}:{info['port']} ({exc})") from None


def _port(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise TypeError(f"{field} must be an int in 1..65535")
    return value


class PlainTransport(Transport):
    """mediasoup ``PlainTransport`` on the worker's event loop (one or two UDP sockets)."""

    kind = "plain"

    def __init__(self, router: "Router", transport_id: str, options: dict) -> None:
        super().__init__(router, transport_id, options.get("appData"))
        self.listen_info = options["listenInfo"]
        self.rtcp_listen_info = options["rtcpListenInfo"]
        self.rtcp_mux: bool = options["rtcpMux"]
        self.comedia: bool = options["comedia"]
        self.enable_srtp = bool(options.get("enableSrtp", False))
        self.srtp_parameters = generate_srtp_parameters(options["srtpCryptoSuite"]) if self.enable_srtp else None
        self.srtp: SrtpSession | None = None
        self.rtp_socket: _UdpProtocol | None = None
        self.rtcp_socket: _UdpProtocol | None = None  # only without rtcp-mux
        self.local_ports = [0, 0]
        self.remote: tuple | None = None  # (ip, port) of the RTP tuple
        self.remote_socket: _UdpProtocol | None = None
        self.rtcp_remote: tuple | None = None  # without rtcp-mux
        self.rtcp_remote_socket: _UdpProtocol | None = None
        self.connect_called = False
        self._init_data_channels(options)  # data channels (issue 7): SCTP raw over the RTP socket

    async def open(self) -> None:
        """Bind the RTP socket (and the RTCP one without rtcp-mux). Raises ``OSError``."""
        loop = asyncio.get_running_loop()
        infos = [self.listen_info] if self.rtcp_mux else [self.listen_info, self.rtcp_listen_info]
        try:
            for index, info in enumerate(infos):
                sock = _bind(info)
                protocol = _UdpProtocol(self, index, sock)  # type: ignore[arg-type]
                await loop.create_datagram_endpoint(lambda p=protocol: p, sock=sock)
                self.local_ports[index] = sock.getsockname()[1]
                if index == 0:
                    self.rtp_socket = protocol
                else:
                    self.rtcp_socket = protocol
        except BaseException:
            self._close_sockets()
            raise

    # ------------------------------------------------------------------ tuples
    def _tuple(self, index: int, remote: tuple | None) -> dict:
        info = self.listen_info if index == 0 else self.rtcp_listen_info
        address = info.get("announcedAddress") or info["ip"]
        t = {"localIp": address, "localAddress": address, "localPort": self.local_ports[index], "protocol": "udp"}
        if remote is not None:
            t["remoteIp"], t["remotePort"] = remote[0], remote[1]
        return t

    @property
    def tuple(self) -> dict:
        """mediasoup ``TransportTuple`` of RTP: local address/port, plus the remote once known."""
        return self._tuple(0, self.remote)

    @property
    def rtcp_tuple(self) -> dict | None:
        """The RTCP ``TransportTuple`` without rtcp-mux, else None."""
        return None if self.rtcp_mux else self._tuple(1, self.rtcp_remote)

    # ------------------------------------------------------------------ control
    def connect(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``plainTransport.connect({ip?, port?, rtcpPort?, srtpParameters?})``.

        Without comedia ``ip`` and ``port`` are required, and ``rtcpPort`` exactly when rtcp-mux
        is off; with comedia they are ignored (the tuple comes from the first packet).
        ``srtpParameters`` ``{cryptoSuite, keyBase64}`` is required exactly when SRTP is enabled.
        Returns ``{"tuple", "rtcpTuple", "srtpParameters"}`` (ours; the suite follows the
        remote's). Raises ``TypeError`` naming a bad field, ``InvalidStateError`` on a second
        call or when closed.
        """
        self._check_open()
        if self.connect_called:
            raise InvalidStateError("connect() already called")
        srtp_parameters = data.get("srtpParameters")
        srtp = None
        local_srtp = self.srtp_parameters
        if not self.enable_srtp:
            if srtp_parameters is not None:
                raise TypeError("srtp_parameters given but SRTP is not enabled on this transport")
        else:
            if not isinstance(srtp_parameters, dict):
                raise TypeError("srtp_parameters must be a dict {cryptoSuite, keyBase64} (SRTP is enabled)")
            suite = srtp_parameters.get("cryptoSuite")
            if not isinstance(suite, str) or suite not in SRTP_CRYPTO_SUITES:
                raise TypeError(f"srtp_parameters.cryptoSuite must be one of {sorted(SRTP_CRYPTO_SUITES)}")
            key = srtp_parameters.get("keyBase64")
            if not isinstance(key, str):
                raise TypeError("srtp_parameters.keyBase64 must be a base64 string")
            if suite != local_srtp["cryptoSuite"]:  # the remote's suite wins; our key follows it
                local_srtp = generate_srtp_parameters(suite)
            try:
                srtp = SrtpSession.from_base64(suite, local_srtp["keyBase64"], key)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"srtp_parameters.keyBase64: {exc}") from None
        remote = rtcp_remote = None
        if not self.comedia:
            ip = _check_ip(data.get("ip"), "ip")
            ip = ipaddress.ip_address(ip).compressed
            port = _port(data.get("port"), "port")
            rtcp_port = data.get("rtcpPort")
            if self.rtcp_mux:
                if rtcp_port is not None:
                    raise TypeError("rtcp_port cannot be given with rtcp_mux enabled")
            else:
                if rtcp_port is None:
                    raise TypeError("rtcp_port is required with rtcp_mux disabled")
                rtcp_remote = (ip, _port(rtcp_port, "rtcp_port"))
            remote = (ip, port)
        # All checked: commit.
        self.connect_called = True
        self.srtp, self.srtp_parameters = srtp, local_srtp
        if remote is not None:
            self.remote, self.remote_socket = remote, self.rtp_socket
        if rtcp_remote is not None:
            self.rtcp_remote, self.rtcp_remote_socket = rtcp_remote, self.rtcp_socket
        # --- data channels (issue 7) ---
        if self.sctp is not None and remote is not None:
            self._sctp_start(False, now_ms, initiate=True)
        # --- end data channels ---
        return {"tuple": self.tuple, "rtcpTuple": self.rtcp_tuple, "srtpParameters": self.srtp_parameters}

    # ------------------------------------------------------------------ datagrams
    def datagram_received(self, data: bytes, addr, protocol) -> None:
        self.bytes_received += len(data)
        if len(data) < 8 or not 127 < data[0] < 192:
            # --- data channels (issue 7): SCTP packets travel raw (mediasoup) ---
            if self.sctp is not None and looks_like_sctp(data):
                self._plain_sctp_received(data, addr, protocol)
                return
            # --- end data channels ---
            self.drops["not_rtp_or_rtcp"] += 1
            return
        rtcp = 191 < data[1] < 224  # RFC 5761 §4
        if self.enable_srtp:
            srtp = self.srtp
            if srtp is None:
                self.drops["srtp_not_ready"] += 1
                return
            try:
                data = srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect_rtp(data)
            except PacketParseError:
                self.drops["srtp_unprotect_failed"] += 1
                return
        if rtcp:
            if not self._accept_rtcp(addr, protocol):
                return
            self.receive_rtcp(data, self.worker.now_ms())
            return
        remote = self.remote
        if remote is None:
            if not self.comedia:
                self.drops["rtp_not_connected"] += 1
                return
            self._learn_tuple(addr, protocol)
        elif protocol is not self.remote_socket or (addr != remote and addr[:2] != remote):
            self.drops["rtp_unknown_remote"] += 1
            return
        self.receive_rtp(data, self.worker.now_ms())

    def _accept_rtcp(self, addr, protocol) -> bool:
        """mediasoup ``PlainTransport::OnRtcpDataReceived`` tuple rules (learn, then check)."""
        if self.rtcp_mux:
            if self.remote is None:
                if not self.comedia:
                    self.drops["rtcp_not_connected"] += 1
                    return False
                self._learn_tuple(addr, protocol)
                return True
            if protocol is self.remote_socket and (addr == self.remote or addr[:2] == self.remote):
                return True
        else:
            if self.rtcp_remote is None:
                if not self.comedia:
                    self.drops["rtcp_not_connected"] += 1
                    return False
                self.rtcp_remote, self.rtcp_remote_socket = tuple(addr[:2]), protocol
                self.worker.emit(self.id, "rtcptuple", self._tuple(1 if protocol is self.rtcp_socket else 0, self.rtcp_remote))
                return True
            if protocol is self.rtcp_remote_socket and (addr == self.rtcp_remote or addr[:2] == self.rtcp_remote):
                return True
        self.drops["rtcp_unknown_remote"] += 1
        return False

    # --- data channels (issue 7) ---
    def _plain_sctp_received(self, data: bytes, addr, protocol) -> None:
        if self.remote is None:
            if not self.comedia:
                self.drops["sctp_not_connected"] += 1
                return
            self._learn_tuple(addr, protocol)
        elif protocol is not self.remote_socket or (addr != self.remote and addr[:2] != self.remote):
            self.drops["sctp_unknown_remote"] += 1
            return
        now_ms = self.worker.now_ms()
        if self.sctp.association is None:
            self._sctp_start(False, now_ms, initiate=False)
        self._sctp_receive(data, now_ms)

    def _send_sctp_packets(self, packets: list[bytes]) -> None:
        remote, sock = self.remote, self.remote_socket
        if remote is None or sock is None or sock.sendto is None:
            self.drops["sctp_not_connected"] += len(packets)
            return
        for packet in packets:
            try:
                sock.sendto(packet, remote)
            except OSError:
                self.drops["send_error"] += 1
                continue
            self.bytes_sent += len(packet)
    # --- end data channels ---

    def _learn_tuple(self, addr, protocol) -> None:
        self.remote, self.remote_socket = tuple(addr[:2]), protocol
        self.worker.emit(self.id, "tuple", self.tuple)

    def send_scratch_rtp(self, n: int, twcc_off: int) -> None:
        """Hot path: SRTP-protect in place (when enabled) and send ``scratch[:n]`` to the RTP
        tuple (see webrtc_transport's module docstring)."""
        remote = self.remote
        if remote is None or (self.enable_srtp and self.srtp is None):
            self.drops["send_not_connected"] += 1
            return
        try:
            if self.srtp is not None:
                n = self.srtp.protect_rtp_into(SEND_BUFFER, n)
            self.remote_socket.sendto(SEND_VIEWS[n], remote)
        except PacketParseError:
            self.drops["srtp_protect_failed"] += 1
            return
        except (OSError, TypeError):  # TypeError: the socket was closed under us
            self.drops["send_error"] += 1
            return
        self.rtp_bytes_sent += n  # bytes_sent follows (a property)
        self.rtp_packets_sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        if self.rtcp_mux:
            remote, sock = self.remote, self.remote_socket
        else:
            remote, sock = self.rtcp_remote, self.rtcp_remote_socket
        if remote is None or sock is None or sock.sendto is None:
            return
        try:
            if self.enable_srtp:
                if self.srtp is None:
                    return
                packet = self.srtp.protect_rtcp(packet)
            sock.sendto(packet, remote)
        except PacketParseError:
            self.drops["srtcp_protect_failed"] += 1
            return
        except OSError:
            self.drops["send_error"] += 1
            return
        self.bytes_sent += len(packet)

    # ------------------------------------------------------------------ lifecycle and info
    def close(self, cause: str = "user") -> None:
        if self.closed:
            return
        super().close(cause)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for protocol in (self.rtp_socket, self.rtcp_socket):
            if protocol is not None and protocol.udp is not None:
                protocol.udp.close()
        self.rtp_socket = self.rtcp_socket = None

    def describe(self) -> dict[str, Any]:
        """What the driver-side handle is built from (mediasoup ``PlainTransportData``)."""
        return {
            "id": self.id,
            "rtcpMux": self.rtcp_mux,
            "comedia": self.comedia,
            "tuple": self.tuple,
            "rtcpTuple": self.rtcp_tuple,
            "srtpParameters": self.srtp_parameters,
            **self.sctp_describe(),  # data channels (issue 7)
        }

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``PlainTransportStat[]`` (one entry): base stats plus ``rtcpMux``,
        ``comedia``, ``tuple`` and, once known without rtcp-mux, ``rtcpTuple``."""
        s = {"type": "plain-rtp-transport"}
        s.update(self.base_stats(now_ms))
        s["rtcpMux"] = self.rtcp_mux
        s["comedia"] = self.comedia
        s["tuple"] = self.tuple
        if not self.rtcp_mux and self.rtcp_remote is not None:
            s["rtcpTuple"] = self.rtcp_tuple
        return [s]

    def dump(self) -> dict:
        d = self.base_dump()
        d.update(self.describe())
        return d
