"""In-actor PipeTransport: plain RTP/RTCP (optionally SRTP AEAD_AES_256_GCM) between two routers.

mediasoup ``PipeTransport``: one UDP socket, no ICE and no DTLS; ``connect(ip, port,
srtpParameters)`` fixes the remote tuple, and only datagrams from that tuple are accepted. Its
consumers are pipe consumers (every stream of the producer, no mid, no BWE); the far router
produces with the same producer id and the pipe consumer's ``rtpParameters``. RTCP goes both
ways, so PLI/FIR and NACK from consumers on the far router reach the producer here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from raysfu.transport.demux import is_rtcp
from raysfu.transport.errors import InvalidStateError, PacketParseError, UnsupportedError
from raysfu.transport.srtp import SrtpSession, generate_srtp_parameters
from raysfu.transport.sctp import looks_like_sctp  # data channels (issue 7)

from .webrtc_transport import SEND_BUFFER, SEND_VIEWS, Transport, _check_ip, _UdpProtocol, bind_udp, validate_listen_info

if TYPE_CHECKING:  # pragma: no cover
    from .router import Router

PIPE_SRTP_CRYPTO_SUITE = "AEAD_AES_256_GCM"  # the only suite mediasoup's PipeTransport uses


def validate_pipe_transport_options(options: dict) -> dict:
    """Check ``router.create_pipe_transport()`` options (mediasoup ``PipeTransportOptions``):
    ``listenInfo`` (or deprecated ``listenIp`` + ``port``), ``enableSctp``, ``numSctpStreams``,
    ``maxSctpMessageSize``, ``sctpSendBufferSize``, ``enableRtx`` (bool), ``enableSrtp`` (bool),
    ``appData``. Raises ``TypeError`` naming the field, ``UnsupportedError`` for SCTP (later)."""
    info = options.get("listenInfo")
    if info is None and options.get("listenIp") is not None:
        ip = options["listenIp"]
        if isinstance(ip, dict):
            info = {"protocol": "udp", "ip": ip.get("ip"), "announcedAddress": ip.get("announcedIp"), "port": options.get("port", 0)}
        else:
            info = {"protocol": "udp", "ip": ip, "port": options.get("port", 0)}
    if info is None:
        raise TypeError("listen_info must be a dict")
    info = validate_listen_info(info, "listen_info")
    # --- data channels (issue 7): enableSctp & co are checked by make_transport_data_channels ---
    for key in ("enableRtx", "enableSrtp"):
        if not isinstance(options.get(key, False), bool):
            raise TypeError(f"{key} must be a bool")
    out = dict(options)
    out["listenInfo"] = info
    return out


class PipeTransport(Transport):
    """mediasoup ``PipeTransport`` over one UDP socket on the worker's event loop."""

    kind = "pipe"

    def __init__(self, router: "Router", transport_id: str, options: dict) -> None:
        super().__init__(router, transport_id, options.get("appData"))
        self.listen_info = options["listenInfo"]
        self.enable_rtx = bool(options.get("enableRtx", False))
        self.enable_srtp = bool(options.get("enableSrtp", False))
        self.srtp_parameters = generate_srtp_parameters(PIPE_SRTP_CRYPTO_SUITE) if self.enable_srtp else None
        self.srtp: SrtpSession | None = None
        self.protocol: _UdpProtocol | None = None
        self.local_port = 0
        self.remote: tuple[str, int] | None = None
        self.connected = False
        self._init_data_channels(options)  # data channels (issue 7): SCTP raw over the UDP socket

    async def open(self) -> None:
        sock = bind_udp(self.listen_info)
        self.local_port = sock.getsockname()[1]
        protocol = _UdpProtocol(self, 0, sock)  # type: ignore[arg-type]
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: protocol, sock=sock)
        self.protocol = protocol

    @property
    def tuple(self) -> dict:
        """mediasoup ``TransportTuple``: local address/port, and the remote once connected."""
        address = self.listen_info.get("announcedAddress") or self.listen_info["ip"]
        t = {"localIp": address, "localAddress": address, "localPort": self.local_port, "protocol": "udp"}
        if self.remote is not None:
            t["remoteIp"], t["remotePort"] = self.remote
        return t

    def connect(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``pipeTransport.connect({ip, port, srtpParameters?})``.

        Raises ``TypeError`` naming a bad field (``srtp_parameters`` required exactly when SRTP
        is enabled, and only ``AEAD_AES_256_GCM``), ``InvalidStateError`` if already connected.
        """
        self._check_open()
        if self.connected:
            raise InvalidStateError("connect() already called")
        ip = _check_ip(data.get("ip"), "ip")
        port = data.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise TypeError("port must be an int in 1..65535")
        srtp_parameters = data.get("srtpParameters")
        if self.enable_srtp:
            if not isinstance(srtp_parameters, dict):
                raise TypeError("srtp_parameters are required when SRTP is enabled")
            if srtp_parameters.get("cryptoSuite") != PIPE_SRTP_CRYPTO_SUITE:
                raise TypeError(f"srtp_parameters.cryptoSuite must be {PIPE_SRTP_CRYPTO_SUITE}")
            try:
                self.srtp = SrtpSession.from_base64(PIPE_SRTP_CRYPTO_SUITE, self.srtp_parameters["keyBase64"], srtp_parameters.get("keyBase64"))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"srtp_parameters.keyBase64: {exc}") from None
        elif srtp_parameters is not None:
            raise TypeError("srtp_parameters given but SRTP is not enabled on this pipe transport")
        self.remote = (ip, port)
        self.connected = True
        # --- data channels (issue 7): both ends initiate (INIT collision, as mediasoup's pipes) ---
        if self.sctp is not None:
            self._sctp_start((self.listen_info["ip"], self.local_port) < self.remote, now_ms, initiate=True)
        # --- end data channels ---
        return {"tuple": self.tuple}

    # ------------------------------------------------------------------ datagrams
    def datagram_received(self, data: bytes, addr, protocol) -> None:
        if addr != self.remote:
            self.drops["unknown_remote"] += 1
            return
        self.bytes_received += len(data)
        if len(data) < 8 or not 127 < data[0] < 192:
            # --- data channels (issue 7): SCTP packets travel raw (mediasoup) ---
            if self.sctp is not None and looks_like_sctp(data):
                self._sctp_receive(data, self.worker.now_ms())
                return
            # --- end data channels ---
            self.drops["not_rtp_or_rtcp"] += 1
            return
        now_ms = self.worker.now_ms()
        rtcp = is_rtcp(data)
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect_rtcp(data) if rtcp else self.srtp.unprotect_rtp(data)
            except PacketParseError:
                self.drops["srtp_unprotect_failed"] += 1
                return
        if rtcp:
            self.receive_rtcp(data, now_ms)
        else:
            self.receive_rtp(data, now_ms)

    def _send(self, data) -> None:
        protocol = self.protocol
        if protocol is None or protocol.sendto is None:
            return
        try:
            protocol.sendto(data, self.remote)
        except OSError:
            self.drops["send_error"] += 1
            return
        self.bytes_sent += len(data)

    def send_scratch_rtp(self, n: int, twcc_off: int) -> None:
        """SRTP-protect in place (when enabled) and send ``scratch[:n]`` to the remote."""
        protocol = self.protocol
        if not self.connected or protocol is None:
            self.drops["send_not_connected"] += 1
            return
        try:
            if self.srtp is not None:
                n = self.srtp.protect_rtp_into(SEND_BUFFER, n)
            protocol.sendto(SEND_VIEWS[n], self.remote)
        except PacketParseError:
            self.drops["srtp_protect_failed"] += 1
            return
        except OSError:
            self.drops["send_error"] += 1
            return
        self.rtp_bytes_sent += n  # bytes_sent follows (a property)
        self.rtp_packets_sent += 1

    # --- data channels (issue 7) ---
    def _send_sctp_packets(self, packets: list[bytes]) -> None:
        if not self.connected:
            self.drops["sctp_not_connected"] += len(packets)
            return
        for packet in packets:
            self._send(packet)
    # --- end data channels ---

    def send_rtcp(self, packet: bytes) -> None:
        if not self.connected:
            return
        try:
            data = self.srtp.protect_rtcp(packet) if self.srtp is not None else packet
        except PacketParseError:
            self.drops["srtcp_protect_failed"] += 1
            return
        self._send(data)

    # ------------------------------------------------------------------ lifecycle and info
    def close(self, cause: str = "user") -> None:
        if self.closed:
            return
        super().close(cause)
        if self.protocol is not None and self.protocol.udp is not None:
            self.protocol.udp.close()
        self.protocol = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tuple": self.tuple,
            "srtpParameters": self.srtp_parameters,
            "rtx": self.enable_rtx,
            **self.sctp_describe(),  # data channels (issue 7)
        }

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``PipeTransportStat[]`` (one entry)."""
        s = {"type": "pipe-transport"}
        s.update(self.base_stats(now_ms))
        s["tuple"] = self.tuple
        return [s]

    def dump(self) -> dict:
        d = self.base_dump()
        d.update(self.describe())
        return d
