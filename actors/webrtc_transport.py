"""In-actor transports: the shared Transport base and WebRtcTransport (UDP, ICE-lite/DTLS/SRTP).

A ``Transport`` owns its producers and consumers, the SSRC/mid tables that find the producer
of an incoming packet (mediasoup ``RtpListener``), the RTCP dispatch, and the periodic RTCP
reports. ``WebRtcTransport`` adds the sockets and the sans-I/O
:class:`raysfu.transport.webrtc_transport.WebRtcTransportCore`.

Send path (DESIGN §5): a consumer writes its copy of a packet into ``Transport.scratch``, one
preallocated C buffer shared by every transport of the process (the event loop is single-
threaded and a packet is protected and sent before the next is written), and calls
``send_scratch_rtp(n, twcc_off)``. ``WebRtcTransport`` and ``PipeTransport`` stamp the
transport-wide seq, SRTP-protect in place and ``sendto`` straight from that buffer on the
socket of the selected tuple: no Python object per packet. A subclass that only implements
``send_rtp(buf, twcc_off)`` still works: the base ``send_scratch_rtp`` hands it a copy.

Timers: the worker calls ``on_timer(now_ms)`` only once ``now_ms >= timer_due_ms``; ``on_timer``
sets the next due time (next RTCP report, NACK and keyframe retries, ICE/DTLS), and anything that
creates an earlier deadline lowers it with ``wake_timer(due_ms)``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import socket
import struct
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from raysfu.transport import ortc, rtcp
from raysfu.transport.errors import InvalidStateError, PacketParseError, UnsupportedError
from raysfu.transport.ice import ice_candidates
from raysfu.transport.rtp import parse_rtp_header
from raysfu.transport.srtp import MAX_PACKET_BYTES, new_packet_buffer
from raysfu.transport.webrtc_transport import RTCP, RTP, WebRtcTransportCore

from .consumer import Consumer
from .producer import Producer
from .data_channels import TransportDataMixin  # data channels (issue 7)
from .producer import LayeredProducer  # simulcast / SVC (issue 5)
from .simulcast_consumer import MultiStreamPipeConsumer, create_layered_consumer  # issue 5
from .transport_bwe import TransportBwe  # bandwidth estimation (issue 6)

if TYPE_CHECKING:  # pragma: no cover
    from .router import Router

_U16 = struct.Struct("!H")


def _now_ms() -> int:
    """The worker's clock (``Worker.now_ms``): monotonic ms."""
    return int(time.monotonic() * 1000)


RTCP_INTERVAL_MS = 1000
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

#: The process's send buffer (see the module docstring): C memory for in-place SRTP and its
#: writable memoryview.
SEND_BUFFER, SEND_VIEW = new_packet_buffer()
#: ``SEND_VIEWS[n]`` is ``SEND_VIEW[:n]``, made once: the send path indexes a list instead of
#: slicing a new memoryview per packet
SEND_VIEWS = [SEND_VIEW[:n] for n in range(len(SEND_VIEW) + 1)]


def _check_ip(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string IP address")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise TypeError(f"{field} is not a valid IP address: {value!r}") from None
    return value


def validate_listen_info(info: Any, field: str, *, allow_tcp: bool = False) -> dict:
    """Check one mediasoup ``TransportListenInfo`` and return a normalised copy.

    Shape: ``{"protocol": "udp"|"tcp", "ip": str, "announcedAddress"?: str, "announcedIp"?: str
    (deprecated alias), "port"?: int, "portRange"?: {"min": int, "max": int},
    "sendBufferSize"?: int, "recvBufferSize"?: int, "flags"?: {...}}``.
    A wildcard ``ip`` (0.0.0.0, ::) without ``announcedAddress`` is announced as the node's
    ``RAYSFU_ANNOUNCED_ADDRESS`` environment variable when set (cluster.yaml exports it).
    Raises ``TypeError`` naming the field; ``UnsupportedError`` for protocol "tcp" unless
    ``allow_tcp`` (WebRtcTransport and WebRtcServer: ICE-TCP; Plain/Pipe transports: UDP only).
    """
    if not isinstance(info, dict):
        raise TypeError(f"{field} must be a dict")
    protocol = info.get("protocol", "udp")
    if protocol not in ("udp", "tcp"):
        raise TypeError(f"{field}.protocol must be 'udp' or 'tcp'")
    if protocol == "tcp" and not allow_tcp:  # --- webrtc server / ice-tcp (issue 7) ---
        raise UnsupportedError(f"{field}.protocol 'tcp': only WebRtcTransport and WebRtcServer support TCP")
    ip = _check_ip(info.get("ip"), f"{field}.ip")
    announced = info.get("announcedAddress", info.get("announcedIp"))
    if announced is not None and (not isinstance(announced, str) or not announced):
        raise TypeError(f"{field}.announcedAddress must be a non-empty string")
    port = info.get("port", 0) or 0
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise TypeError(f"{field}.port must be an int in 0..65535")
    port_range = info.get("portRange")
    if port_range is not None:
        if not isinstance(port_range, dict):
            raise TypeError(f"{field}.portRange must be a dict {{min, max}}")
        lo, hi = port_range.get("min"), port_range.get("max")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535 for v in (lo, hi)) or lo > hi:
            raise TypeError(f"{field}.portRange must have ints 1 <= min <= max <= 65535")
    for key in ("sendBufferSize", "recvBufferSize"):
        v = info.get(key)
        if v is not None and (not isinstance(v, int) or v <= 0):
            raise TypeError(f"{field}.{key} must be a positive int")
    if announced is None and ipaddress.ip_address(ip).is_unspecified:
        # On a cluster node the start command exports the node's public address (cluster.yaml):
        # a wildcard listen address is announced as that address.
        announced = os.environ.get("RAYSFU_ANNOUNCED_ADDRESS") or None
    out = dict(info)
    out["protocol"] = protocol
    out["ip"] = ip
    out["announcedAddress"] = announced
    out["port"] = port
    return out


def bind_udp(info: dict) -> socket.socket:
    """Bind a non-blocking UDP socket for a validated listen info (``port``, else a random free
    port of ``portRange``, else an ephemeral port). Raises ``OSError`` when nothing can be bound."""
    family = socket.AF_INET6 if ":" in info["ip"] else socket.AF_INET
    candidates: list[int]
    if info.get("port"):
        candidates = [info["port"]]
    elif info.get("portRange"):
        lo, hi = info["portRange"]["min"], info["portRange"]["max"]
        candidates = list(range(lo, hi + 1))
        random.shuffle(candidates)
    else:
        candidates = [0]
    last_error: OSError | None = None
    for port in candidates:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, info.get("recvBufferSize") or SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, info.get("sendBufferSize") or SOCKET_BUFFER_BYTES)
            sock.bind((info["ip"], port))
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise OSError(f"could not bind UDP on {info['ip']} ({last_error})")


class _UdpProtocol(asyncio.DatagramProtocol):
    """Hands every datagram to the transport; an exception there is counted, never raised.

    ``udp`` is the loop's datagram transport (control traffic: STUN, DTLS); ``sendto`` is the
    bound ``sendto`` of ``sock`` when given (else the loop transport's), which the media path
    calls directly, skipping the loop's transport layer (an ``OSError`` from it is the
    caller's to count).
    """

    __slots__ = ("owner", "udp", "index", "sendto")

    def __init__(self, owner: "WebRtcTransport", index: int, sock: socket.socket | None = None) -> None:
        self.owner = owner
        self.index = index
        self.udp: asyncio.DatagramTransport | None = None
        self.sendto = sock.sendto if sock is not None else None

    def connection_made(self, transport) -> None:  # noqa: D401
        self.udp = transport
        if self.sendto is None:
            self.sendto = transport.sendto

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.owner.datagram_received(data, addr, self)
        except Exception:  # a bug must not kill the socket; it shows in the counters
            self.owner.drops["internal_error"] += 1

    def error_received(self, exc) -> None:
        self.owner.drops["socket_error"] += 1


class Transport(TransportDataMixin):  # data channels (issue 7): produce_data/consume_data/SCTP
    """Base of the in-actor transports (mediasoup ``Transport``).

    Subclass interface: ``send_rtp(buf, twcc_off)`` (one plaintext RTP packet; ``twcc_off`` is
    the offset of its transport-wide-cc element or -1), ``send_rtcp(packet)``, and optionally
    ``send_scratch_rtp(n, twcc_off)`` (the packet is ``scratch[:n]``; override it to send
    without a copy). Receive side: ``receive_rtp(data, now_ms)``, ``receive_rtcp(data, now_ms)``
    with decrypted packets. Timers: ``on_timer(now_ms)`` (call ``super().on_timer``; it sets
    ``timer_due_ms``), ``wake_timer(due_ms)``.
    """

    kind = "base"
    _other_bytes_sent = 0

    @property
    def bytes_sent(self) -> int:
        """Every byte sent on the wire: RTP (``rtp_bytes_sent``, counted once on the send path)
        plus RTCP, ICE, DTLS and SCTP (``_other_bytes_sent``); ``+=`` works as on a plain int."""
        return self._other_bytes_sent + self.rtp_bytes_sent

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self._other_bytes_sent = value - self.rtp_bytes_sent
    #: where consumers write the packet they hand to ``send_scratch_rtp`` (module docstring)
    scratch: memoryview = SEND_VIEW

    def __init__(self, router: "Router", transport_id: str, app_data: Any) -> None:
        self.router = router
        self.worker = router.worker
        self.id = transport_id
        self.app_data = app_data
        self.closed = False
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.ssrc_table: dict[int, Producer] = {}
        self.consumer_ssrc_table: dict[int, Consumer] = {}
        self.cname_for_producers: str | None = None
        self.next_mid = 0
        self.rtcp_ssrc = secrets.randbits(32) or 1
        self.twcc_seq = 0
        #: bandwidth estimation (issue 6): a TransportBwe on WebRtcTransports, else None;
        #: ``bwe_tx`` is the same object once transport-cc feedback has arrived (until then
        #: nobody estimates, and sent packets are not recorded: no per-packet cost)
        self.bwe: Any = None
        self.bwe_tx: Any = None
        self.drops: Counter[str] = Counter()
        self.debug_receive_loss = 0.0
        self.debug_send_loss = 0.0  # fraction of outgoing RTP dropped on purpose (tests)
        self.enable_rtx = False
        self._loss_rng = random.Random(1234)
        self.next_rtcp_ms = 0
        #: the worker runs ``on_timer`` once its clock reaches this (monotonic ms); 0: next tick
        self.timer_due_ms = 0
        self.rtp_bytes_received = self.rtp_bytes_sent = 0
        self.bytes_received = self.bytes_sent = 0
        self.rtx_bytes_sent = 0
        self.rtp_packets_received = 0
        self.rtp_packets_sent = 0
        self._init_data_channels(None)  # data channels (issue 7): no SCTP unless a subclass enables it

    # ------------------------------------------------------------------ produce / consume
    def produce(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``transport.produce()``. ``data``: ``{id?, kind, rtpParameters, paused?,
        keyFrameRequestDelay?, appData?}``. Returns the producer's description dict.

        Raises ``TypeError`` (bad fields), ``ValueError`` (duplicate id/mid/ssrc),
        ``UnsupportedError`` (codecs the router does not have).
        """
        self._check_open()
        kind = data.get("kind")
        if kind not in ("audio", "video"):
            raise TypeError("kind must be 'audio' or 'video'")
        producer_id = data.get("id") or str(uuid.uuid4())
        if not isinstance(producer_id, str):
            raise TypeError("id must be a string")
        if producer_id in self.router.producers:
            raise ValueError(f"id: a producer with id {producer_id!r} already exists")
        raw = data.get("rtpParameters")
        if not isinstance(raw, dict):
            raise TypeError("rtp_parameters must be a dict")
        # One CNAME for every producer of a transport (mediasoup Transport::Produce): the first
        # one given, else a random one. A pipe transport keeps each producer's own.
        cname = None
        if self.kind != "pipe":
            if self.cname_for_producers is None:
                given = (raw.get("rtcp") or {}).get("cname") if isinstance(raw.get("rtcp"), dict) else None
                self.cname_for_producers = given if isinstance(given, str) and given else ortc.generate_random_cname()
            cname = self.cname_for_producers
        params, mapping, consumable, producer_type = ortc.prepare_producer_rtp_parameters(kind, raw, self.router.rtp_capabilities, cname=cname)
        encodings = params["encodings"]
        mid = params.get("mid")
        if mid and any(p.rtp_parameters.get("mid") == mid for p in self.producers.values()):
            raise ValueError(f"rtpParameters.mid {mid!r} is already used by another producer of this transport")
        for enc in encodings:
            for ssrc in (enc.get("ssrc"), (enc.get("rtx") or {}).get("ssrc")):
                if ssrc is not None and ssrc in self.ssrc_table:
                    raise ValueError(f"rtpParameters.encodings ssrc {ssrc} is already used on this transport")
        delay = data.get("keyFrameRequestDelay", 0) or 0
        if not isinstance(delay, int) or delay < 0:
            raise TypeError("keyFrameRequestDelay must be a non-negative int (ms)")
        paused = bool(data.get("paused", False))
        # simulcast / SVC (issue 5): several encodings (or SVC layers) -> LayeredProducer
        extra = {} if producer_type == "simple" else {"producer_type": producer_type}
        producer = (Producer if producer_type == "simple" else LayeredProducer)(
            **extra,
            producer_id=producer_id,
            transport=self,
            kind=kind,
            rtp_parameters=params,
            rtp_mapping=mapping,
            consumable_rtp_parameters=consumable,
            paused=paused,
            key_frame_request_delay_ms=delay,
            app_data=data.get("appData"),
        )
        self.producers[producer_id] = producer
        for ssrc in producer.ssrcs() if producer_type != "simple" else (producer.ssrc, producer.rtx_ssrc):
            if ssrc is not None:
                self.ssrc_table[ssrc] = producer
        self.router.add_producer(producer)
        return self.describe_producer(producer)

    @staticmethod
    def describe_producer(p: Producer) -> dict:
        return {
            "id": p.id,
            "kind": p.kind,
            "type": p.type,
            "rtpParameters": p.rtp_parameters,
            "consumableRtpParameters": p.consumable_rtp_parameters,
            "paused": p.paused,
        }

    def consume(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``transport.consume()``. ``data``: ``{producerId, rtpCapabilities, paused?,
        mid?, enableRtx?, ignoreDtx?, preferredLayers?, pipe?, appData?}``.

        Raises ``TypeError`` (bad fields), ``ValueError`` (unknown producer id),
        ``UnsupportedError`` (no compatible codec).
        """
        self._check_open()
        producer_id = data.get("producerId")
        if not isinstance(producer_id, str):
            raise TypeError("producer_id must be a string")
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise ValueError(f"producer_id: no producer with id {producer_id!r} in this router")
        pipe = self.kind == "pipe"
        if pipe:
            # mediasoup PipeTransport.consume: every stream, RTX only if the pipe enables it
            rtp_parameters = ortc.get_pipe_consumer_rtp_parameters(producer.consumable_rtp_parameters, enable_rtx=self.enable_rtx)
        else:
            caps = ortc.validate_rtp_capabilities(data.get("rtpCapabilities"))
            if data.get("pipe"):
                raise UnsupportedError("pipe=True consumers on a non-pipe transport are not supported yet")
            enable_rtx = data.get("enableRtx")
            if enable_rtx is None:
                enable_rtx = producer.kind == "video"
            rtp_parameters = ortc.get_consumer_rtp_parameters(producer.consumable_rtp_parameters, caps, pipe=False, enable_rtx=bool(enable_rtx))
        if not pipe:  # pipe consumers carry no mid
            mid = data.get("mid")
            if mid is None:
                mid = str(self.next_mid)
                self.next_mid = (self.next_mid + 1) % 100_000_000
            elif not isinstance(mid, str) or not mid:
                raise TypeError("mid must be a non-empty string")
            rtp_parameters["mid"] = mid
        consumer_id = str(uuid.uuid4())
        common = dict(
            consumer_id=consumer_id,
            transport=self,
            producer=producer,
            rtp_parameters=rtp_parameters,
            paused=bool(data.get("paused", False)),
            app_data=data.get("appData"),
        )
        if producer.type == "simple":
            consumer = Consumer(**common, consumer_type="pipe" if pipe else "simple")
        elif pipe:  # simulcast / SVC (issue 5): every stream, each with its own SSRC
            consumer = MultiStreamPipeConsumer(**common)
        else:
            consumer = create_layered_consumer(producer.type, **common, preferred_layers=data.get("preferredLayers"))
        self.consumers[consumer_id] = consumer
        for ssrc in getattr(consumer, "ssrcs", (consumer.ssrc, consumer.rtx_ssrc)):
            if ssrc is not None:
                self.consumer_ssrc_table[ssrc] = consumer
        self.router.add_consumer(consumer)
        if consumer.active:
            if producer.type == "simple":
                producer.request_key_frame(now_ms)
            else:
                consumer.request_key_frame(now_ms)
        info = {
            "id": consumer_id,
            "producerId": producer_id,
            "kind": consumer.kind,
            "type": consumer.type,
            "rtpParameters": rtp_parameters,
            "paused": consumer.paused,
            "producerPaused": consumer.producer_paused,
            "score": consumer.score_dict(),
        }
        if hasattr(consumer, "selector"):  # simulcast / SVC (issue 5)
            info["preferredLayers"] = consumer.preferred_layers
            info["currentLayers"] = consumer.current_layers
            self.wake_timer(0)
        return info

    def remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        if self.bwe is not None:
            self.bwe.forget_producer(producer.id)
        for ssrc in [s for s, p in self.ssrc_table.items() if p is producer]:
            del self.ssrc_table[ssrc]

    def remove_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        for ssrc in getattr(consumer, "ssrcs", (consumer.ssrc, consumer.rtx_ssrc)):
            if ssrc is not None and self.consumer_ssrc_table.get(ssrc) is consumer:
                del self.consumer_ssrc_table[ssrc]

    # ------------------------------------------------------------------ receive
    def receive_rtp(self, data: bytes, now_ms: int) -> None:
        try:
            hdr = parse_rtp_header(data)
        except PacketParseError:
            self.drops["rtp_malformed"] += 1
            return
        self.rtp_bytes_received += len(data)
        self.rtp_packets_received += 1
        producer = self.ssrc_table.get(hdr[4])
        if producer is None:
            producer = self._identify_producer(data, hdr)
            if producer is None:
                self.drops["rtp_unknown_ssrc"] += 1
                return
        if self.debug_receive_loss and hdr[4] == producer.ssrc and self._loss_rng.random() < self.debug_receive_loss:
            self.drops["debug_receive_loss"] += 1
            return
        bwe = self.bwe  # --- bwe (issue 6): transport-cc arrival log for the feedback ---
        if bwe is not None:
            bwe.on_rtp_received(data, hdr, producer, now_ms)
        producer.receive_rtp(data, hdr, now_ms)

    def _identify_producer(self, data: bytes, hdr: tuple) -> Producer | None:
        """Learn an SSRC from the ``mid`` extension (mediasoup RtpListener midTable), or for a
        simulcast/SVC producer from ``rid``/``rrid`` (LayeredProducer.identify)."""
        for producer in self.producers.values():
            if producer.type != "simple":
                if producer.identify(data, hdr):
                    self.ssrc_table[hdr[4]] = producer
                    return producer
                continue
            if producer.matches_first_packet(data, hdr[6], hdr[7], hdr[8]):
                ssrc = hdr[4]
                if hdr[0] == producer.payload_type and producer.ssrc is None:
                    producer.learn_ssrc(ssrc)
                elif hdr[0] == producer.rtx_payload_type and producer.rtx_ssrc is None:
                    producer.rtx_ssrc = ssrc
                else:
                    return None
                self.ssrc_table[ssrc] = producer
                return producer
        return None

    def receive_rtcp(self, data: bytes, now_ms: int) -> None:
        try:
            items = rtcp.parse_rtcp(data)
        except PacketParseError:
            self.drops["rtcp_malformed"] += 1
            return
        for item in items:
            kind = item[0]
            if kind == "sr":
                producer = self.ssrc_table.get(item[1])
                if producer is not None:
                    producer.receive_sr(item, now_ms)
                for block in item[7]:
                    self._rr_block(block, now_ms)
            elif kind == "rr":
                for block in item[2]:
                    self._rr_block(block, now_ms)
            elif kind == "nack":
                consumer = self.consumer_ssrc_table.get(item[2])
                if consumer is not None:
                    consumer.receive_nack(item[3], now_ms)
                else:
                    self.drops["rtcp_nack_unknown_ssrc"] += 1
            elif kind == "pli":
                consumer = self.consumer_ssrc_table.get(item[2])
                if consumer is not None:
                    consumer.receive_key_frame_request("pli", now_ms)
            elif kind == "fir":
                for ssrc, _seq_nr in item[2]:
                    consumer = self.consumer_ssrc_table.get(ssrc)
                    if consumer is not None:
                        consumer.receive_key_frame_request("fir", now_ms)
            # --- bwe (issue 6) ---
            elif kind == "twcc":
                if self.bwe is not None:
                    self.bwe.on_feedback(item[3], now_ms)
            elif kind == "remb":
                if self.bwe is not None:
                    self.bwe.on_remb(item[2])
            # --- end bwe ---
            # sdes, bye, xr: not used

    def _rr_block(self, block: tuple, now_ms: int) -> None:
        consumer = self.consumer_ssrc_table.get(block[0])
        if consumer is not None and block[0] == consumer.ssrc:
            consumer.receive_rr_block(block, now_ms)

    # ------------------------------------------------------------------ send
    # A subclass overrides one of these two: the socket transports ``send_scratch_rtp``
    # (protect and send in place), the others (DirectTransport, tests' captures) ``send_rtp``.
    def send_rtp(self, buf: bytearray, twcc_off: int) -> None:
        """Send one plaintext RTP packet: copied into the send buffer, then
        ``send_scratch_rtp``. A packet over ``MAX_PACKET_BYTES`` is dropped and counted
        (``send_too_long``)."""
        n = len(buf)
        if n > MAX_PACKET_BYTES:
            self.drops["send_too_long"] += 1
            return
        SEND_VIEW[:n] = buf
        self.send_scratch_rtp(n, twcc_off)

    def send_scratch_rtp(self, n: int, twcc_off: int) -> None:
        """Send the ``n``-byte plaintext RTP packet in ``self.scratch`` (a consumer wrote it
        there). This default hands a copy to ``send_rtp``."""
        self.send_rtp(bytearray(self.scratch[:n]), twcc_off)

    def send_rtcp(self, packet: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ timers
    def on_timer(self, now_ms: int) -> None:
        """The RTCP reports (every ``RTCP_INTERVAL_MS``), producers' NACK/keyframe retries, and
        the timers of consumers that have ``next_timer_ms()``/``on_timer(now_ms)``; then
        ``timer_due_ms`` = the earliest next deadline."""
        if now_ms >= self.next_rtcp_ms:
            self.next_rtcp_ms = now_ms + RTCP_INTERVAL_MS
            self.send_rtcp_reports(now_ms)
        due = self.next_rtcp_ms
        for producer in self.producers.values():
            producer.on_timer(now_ms)
            t = producer.next_timer_ms()
            if t is not None and t < due:
                due = t
        for consumer in self.consumers.values():
            # consumers with timers of their own (simulcast/SVC: ``next_timer_ms``/``on_timer``)
            next_timer_ms = getattr(consumer, "next_timer_ms", None)
            if next_timer_ms is not None:
                t = next_timer_ms()
                if t is not None and t <= now_ms:
                    consumer.on_timer(now_ms)
                    t = next_timer_ms()
                if t is not None and t < due:
                    due = t
        self.timer_due_ms = due
        # --- data channels (issue 7) ---
        if self.sctp is not None:
            self._sctp_on_timer(now_ms)
        # --- end data channels ---

    def wake_timer(self, due_ms: int | None = 0) -> None:
        """Have ``on_timer`` run at ``due_ms`` (monotonic ms; 0: at the next tick) if that is
        earlier than already planned. None is ignored."""
        if due_ms is not None and due_ms < self.timer_due_ms:
            self.timer_due_ms = due_ms

    def send_rtcp_reports(self, now_ms: int) -> None:
        """SR + SDES for every consumer stream, one RR for every producer stream (RFC 3550 §6.4)."""
        unix_ms = int(time.time() * 1000)
        for consumer in self.consumers.values():
            report = consumer.build_rtcp_report(now_ms, unix_ms)
            if report is not None:
                self.send_rtcp(report)
        blocks = [b for b in (p.report_block(now_ms) for p in self.producers.values()) if b is not None]
        for i in range(0, len(blocks), 31):
            packet = rtcp.build_rr(self.rtcp_ssrc, blocks[i : i + 31])
            if self.cname_for_producers:
                packet += rtcp.build_sdes([(self.rtcp_ssrc, self.cname_for_producers)])
            self.send_rtcp(packet)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError("transport closed")

    def close(self, cause: str = "user") -> None:
        """Close this transport and everything on it (mediasoup ``transport.close()``).

        Its producers' consumers on *other* transports get ``producerclose``; its own producers
        and consumers are closed silently (the driver handle emits ``transportclose``), unless
        ``cause`` is not "user", in which case they are notified with it.
        """
        if self.closed:
            return
        self.closed = True
        for producer in list(self.producers.values()):
            self.router.close_producer(producer, notify_self=cause != "user")
        for consumer in list(self.consumers.values()):
            self.router.close_consumer(consumer, notify="transportclose" if cause != "user" else None)
        self._close_data_channels(cause)  # data channels (issue 7)
        self.router.transports.pop(self.id, None)

    def base_stats(self, now_ms: int) -> dict:
        return {
            "transportId": self.id,
            "timestamp": now_ms,
            "bytesReceived": self.bytes_received,
            "recvBitrate": 0,
            "bytesSent": self.bytes_sent,
            "sendBitrate": 0,
            "rtpBytesReceived": self.rtp_bytes_received,
            "rtpRecvBitrate": 0,
            "rtpBytesSent": self.rtp_bytes_sent,
            "rtpSendBitrate": 0,
            "rtxBytesReceived": 0,
            "rtxRecvBitrate": 0,
            "rtxBytesSent": self.rtx_bytes_sent,
            "rtxSendBitrate": 0,
            "probationBytesSent": 0,
            "probationSendBitrate": 0,
        }

    def base_dump(self) -> dict:
        return {
            "id": self.id,
            "direct": False,
            "producerIds": list(self.producers),
            "consumerIds": list(self.consumers),
            "mapSsrcConsumerId": [{"key": c.ssrc, "value": c.id} for c in self.consumers.values()],
            "mapRtxSsrcConsumerId": [{"key": c.rtx_ssrc, "value": c.id} for c in self.consumers.values() if c.rtx_ssrc],
            "rtpListener": {
                "ssrcTable": [{"key": s, "value": p.id} for s, p in self.ssrc_table.items()],
                "midTable": [{"key": p.rtp_parameters.get("mid"), "value": p.id} for p in self.producers.values() if p.rtp_parameters.get("mid")],
                "ridTable": [],
            },
            **self.data_dump(),  # data channels (issue 7): dataProducerIds, dataConsumerIds, sctp*
            "traceEventTypes": [],
            "droppedPackets": dict(self.drops),
        }


class WebRtcTransport(Transport):
    """mediasoup ``WebRtcTransport`` over UDP sockets on the worker's event loop."""

    kind = "webrtc"

    def __init__(self, router: "Router", transport_id: str, options: dict) -> None:
        super().__init__(router, transport_id, options.get("appData"))
        self._init_data_channels(options)  # data channels (issue 7): enableSctp & co
        self.listen_infos = options["listenInfos"]
        self.core = WebRtcTransportCore(
            self.worker.certificate,
            ice_consent_timeout_ms=int(options.get("iceConsentTimeout", 30)) * 1000,
        )
        self.initial_available_outgoing_bitrate = options.get("initialAvailableOutgoingBitrate", 600000)
        self.bwe = TransportBwe(self, initial_available_outgoing_bitrate=self.initial_available_outgoing_bitrate)  # issue 6
        self.protocols: list[_UdpProtocol] = []
        self.local_addrs: list[dict] = []
        self.remote_protocol: dict[Any, _UdpProtocol] = {}
        self.ice_candidates: list[dict] = []
        # Media route, refreshed whenever the core may have changed (_flush_core): the SRTP
        # session, the selected remote tuple and the bound sendto of its socket; None (SRTP
        # session) while media cannot flow.
        self._tx_srtp = None
        self._tx_remote: Any = None
        self._tx_sendto: Any = None
        # (protect fn, ctx, len_p, sendto, remote): all the fast send path needs, in one load
        # (SrtpSession.raw_rtp_protect of _tx_srtp, then the route); None while not connected or
        # without pylibsrtp's raw ``lib`` (SrtpSession's public path is taken then)
        self._tx: Any = None
        # --- webrtc server / ice-tcp (issue 7) ---
        self.webrtc_server = options.get("webRtcServer")  # actors.webrtc_server.WebRtcServer | None
        self.enable_udp = options.get("enableUdp", True)
        self.enable_tcp = options.get("enableTcp", False)
        self.prefer_udp = bool(options.get("preferUdp", False))
        self.prefer_tcp = bool(options.get("preferTcp", False))
        self.tcp_servers: list[asyncio.AbstractServer] = []  # our own TCP listeners (no server)
        self.tcp_connections: set = set()  # IceTcpConnection objects bound to this transport
        self.pending_tcp: set = set()  # accepted on our listeners, first frame not yet seen
        # --- end webrtc server / ice-tcp ---

    # --- webrtc server / ice-tcp (issue 7) ---------------------------------------------------
    async def open(self) -> None:
        """Bind one socket per listen info, a UDP socket or a TCP listener (ICE-TCP passive
        candidate), and start receiving; with a WebRtcServer, bind nothing and register on its
        shared sockets instead (``local_addrs`` is then the server's list)."""
        server = self.webrtc_server
        if server is not None:
            self.local_addrs = server.local_addrs
            self.ice_candidates = server.ice_candidates(
                enable_udp=self.enable_udp, enable_tcp=self.enable_tcp, prefer_udp=self.prefer_udp, prefer_tcp=self.prefer_tcp
            )
            server.register_transport(self)
            return
        from .webrtc_server import IceTcpConnection, bind_tcp

        loop = asyncio.get_running_loop()
        try:
            for index, info in enumerate(self.listen_infos):
                if info["protocol"] == "tcp":
                    sock = bind_tcp(info)
                    self.tcp_servers.append(await loop.create_server(lambda i=index: IceTcpConnection(self, i), sock=sock))
                else:
                    sock = bind_udp(info)
                    protocol = _UdpProtocol(self, index, sock)
                    await loop.create_datagram_endpoint(lambda p=protocol: p, sock=sock)
                    self.protocols.append(protocol)
                port = sock.getsockname()[1]
                self.local_addrs.append({"protocol": info["protocol"], "ip": info["ip"], "announcedAddress": info.get("announcedAddress"), "port": port})
        except BaseException:
            self._close_sockets()
            raise
        self.ice_candidates = ice_candidates(self.local_addrs, prefer_udp=self.prefer_udp, prefer_tcp=self.prefer_tcp)

    def first_tcp_frame(self, conn, datagram: bytes) -> "WebRtcTransport | None":
        """A connection on our own TCP listener sent its first frame (STUN, checked by the
        caller): it is ours; the ICE server checks its credentials."""
        return None if self.closed else self

    def tcp_connection_lost(self, conn) -> None:
        """An ICE-TCP connection closed: its tuple leaves ICE (RFC 6544; mediasoup
        ``RemoveTuple``), which may select another tuple or go disconnected."""
        self.tcp_connections.discard(conn)
        if self.closed:
            return
        key = conn.key
        if self.remote_protocol.get(key) is conn:
            del self.remote_protocol[key]
        now_ms = self.worker.now_ms()
        self.core.ice.remove_tuple(key, now_ms)
        self.core._pull_ice_events(now_ms)
        self._flush_core()
    # --- end webrtc server / ice-tcp -------------------------------------------------------------

    # ------------------------------------------------------------------ datagrams
    def datagram_received(self, data: bytes, addr, protocol: _UdpProtocol) -> None:
        now_ms = self.worker.now_ms()
        self.bytes_received += len(data)
        kind, plain = self.core.receive_datagram(data, addr, now_ms)
        if kind == RTP:
            self.receive_rtp(plain, now_ms)
        elif kind == RTCP:
            self.receive_rtcp(plain, now_ms)
        else:
            self.remote_protocol[addr] = protocol
            self._flush_core()

    def _flush_core(self) -> None:
        core = self.core
        for datagram, remote in core.datagrams_to_send():
            protocol = self.remote_protocol.get(remote) or (self.protocols[0] if self.protocols else None)
            if protocol is not None and protocol.udp is not None:
                protocol.udp.sendto(datagram, remote)
                self.bytes_sent += len(datagram)
        for name, value in core.drain_events():
            if name == "iceselectedtuplechange":
                value = self.tuple_dict(value)
            self.worker.emit(self.id, name, value)
        # --- data channels (issue 7): DTLS application data is SCTP ---
        if self.sctp is not None:
            self._sctp_after_core()
        # --- end data channels ---
        self._update_route()
        self.wake_timer(core.next_timer_ms())

    def _update_route(self) -> None:
        core = self.core
        remote = core.selected_tuple
        protocol = (self.remote_protocol.get(remote) or (self.protocols[0] if self.protocols else None)) if remote is not None else None
        if core.srtp is None or protocol is None or protocol.sendto is None or self.closed:
            self._tx_srtp = self._tx_remote = self._tx_sendto = self._tx = None
        else:
            self._tx_srtp, self._tx_remote, self._tx_sendto = core.srtp, remote, protocol.sendto
            raw = core.srtp.raw_rtp_protect
            self._tx = (raw[0], raw[1], raw[2], protocol.sendto, remote) if raw is not None else None

    # --- data channels (issue 7) ---------------------------------------------------------------
    def _sctp_after_core(self) -> None:
        """After the core ran: start SCTP once DTLS is connected, feed it the application data."""
        core = self.core
        sctp = self.sctp
        now_ms = self.worker.now_ms()
        if sctp.association is None and core.dtls_state == "connected":
            self._sctp_start(core.dtls_role == "client", now_ms)
        for packet in core.drain_application_data():
            self._sctp_receive(packet, now_ms)

    def _send_sctp_packets(self, packets: list[bytes]) -> None:
        """SCTP packets out as DTLS application data, to the selected tuple."""
        core = self.core
        core.send_application_data(packets)
        for datagram, remote in core.datagrams_to_send():
            protocol = self.remote_protocol.get(remote) or (self.protocols[0] if self.protocols else None)
            if protocol is not None and protocol.udp is not None:
                protocol.udp.sendto(datagram, remote)
                self.bytes_sent += len(datagram)
    # --- end data channels ------------------------------------------------------------------------

    def tuple_dict(self, remote) -> dict | None:
        """mediasoup ``TransportTuple`` for a remote ``(ip, port)``."""
        if remote is None:
            return None
        protocol = self.remote_protocol.get(remote) or (self.protocols[0] if self.protocols else None)
        local = self.local_addrs[protocol.index] if protocol is not None else {"ip": "", "port": 0, "announcedAddress": None}
        address = local.get("announcedAddress") or local["ip"]
        return {
            "localIp": address,
            "localAddress": address,
            "localPort": local["port"],
            "remoteIp": remote[0],
            "remotePort": remote[1],
            "protocol": local.get("protocol", "udp"),  # webrtc server / ice-tcp (issue 7)
        }

    def send_scratch_rtp(self, n: int, twcc_off: int) -> None:
        """Stamp the transport-wide seq, SRTP-protect in place and send ``scratch[:n]`` to the
        selected tuple (the hot path: no Python object per packet)."""
        tx = self._tx
        if (tx is None or self.debug_send_loss) and self._send_refused():
            return
        if twcc_off >= 0:
            self.twcc_seq = seq = (self.twcc_seq + 1) & 0xFFFF
            _U16.pack_into(SEND_VIEW, twcc_off + 1, seq)
            bwe = self.bwe_tx  # --- bwe (issue 6) ---
            if bwe is not None:
                bwe.on_rtp_sent(seq, n, _now_ms())
        if tx is None:  # connected, without pylibsrtp's raw lib
            self._protect_and_send_public(n)
            return
        fn, ctx, len_p, sendto, remote = tx  # SrtpSession.protect_rtp_into, inlined
        len_p[0] = n
        if fn(ctx, SEND_BUFFER, len_p):
            self.drops["srtp_protect_failed"] += 1
            return
        n = len_p[0]
        try:
            sendto(SEND_VIEWS[n], remote)
        except OSError:  # e.g. a full send buffer: the packet is lost, as on the wire
            self.drops["send_error"] += 1
            return
        self.rtp_bytes_sent += n  # bytes_sent follows (a property)
        self.rtp_packets_sent += 1

    def _send_refused(self) -> bool:
        """True (and counted in ``drops``) when a packet may not go out: not connected
        (``send_not_connected``) or dropped on purpose by ``debug_send_loss``."""
        if self._tx_srtp is None:
            self.drops["send_not_connected"] += 1
            return True
        if self.debug_send_loss and self._loss_rng.random() < self.debug_send_loss:
            self.drops["debug_send_loss"] += 1
            return True
        return False

    def _protect_and_send_public(self, n: int) -> None:
        """Protect ``scratch[:n]`` through SrtpSession's public path and send it (no raw lib)."""
        try:
            n = self._tx_srtp.protect_rtp_into(SEND_BUFFER, n)
            self._tx_sendto(SEND_VIEWS[n], self._tx_remote)
        except PacketParseError:
            self.drops["srtp_protect_failed"] += 1
            return
        except OSError:
            self.drops["send_error"] += 1
            return
        self.rtp_bytes_sent += n
        self.rtp_packets_sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        srtp = self._tx_srtp
        if srtp is None:
            return
        try:
            data = srtp.protect_rtcp(packet)
            self._tx_sendto(data, self._tx_remote)
        except PacketParseError:
            self.drops["srtcp_protect_failed"] += 1
            return
        except OSError:
            self.drops["send_error"] += 1
            return
        self.bytes_sent += len(data)

    # ------------------------------------------------------------------ control
    def connect(self, data: dict, now_ms: int) -> dict:
        """``connect({dtlsParameters})``; returns ``{"dtlsLocalRole"}``."""
        self._check_open()
        role = self.core.connect(data.get("dtlsParameters"), now_ms)
        self._flush_core()
        return {"dtlsLocalRole": role}

    def restart_ice(self) -> dict:
        self._check_open()
        result = self.core.restart_ice()
        if self.webrtc_server is not None:  # webrtc server / ice-tcp (issue 7): new ufrag routes here
            self.webrtc_server.refresh_ufrag(self)
        self._flush_core()
        return result

    def on_timer(self, now_ms: int) -> None:
        core = self.core
        t = core.next_timer_ms()
        if t is not None and t <= now_ms:
            core.handle_timer(now_ms)
            self._flush_core()
        super().on_timer(now_ms)
        self.wake_timer(core.next_timer_ms())
        bwe = self.bwe  # --- bwe (issue 6) ---
        if bwe is not None:
            t = bwe.next_timer_ms()
            if t is not None and t <= now_ms:
                bwe.on_timer(now_ms)
                t = bwe.next_timer_ms()
            self.wake_timer(t)

    def close(self, cause: str = "user") -> None:
        if self.closed:
            return
        super().close(cause)
        self.core.close()
        self._flush_core_quietly()
        self._close_sockets()
        self._tx_srtp = self._tx_remote = self._tx_sendto = self._tx = None

    def _flush_core_quietly(self) -> None:
        try:
            for datagram, remote in self.core.datagrams_to_send():
                protocol = self.remote_protocol.get(remote)
                if protocol is not None and protocol.udp is not None:
                    protocol.udp.sendto(datagram, remote)
        except Exception:
            self.drops["close_flush_error"] += 1

    def _close_sockets(self) -> None:
        for protocol in self.protocols:
            if protocol.udp is not None:
                protocol.udp.close()
        self.protocols = []
        # --- webrtc server / ice-tcp (issue 7) ---
        if self.webrtc_server is not None:
            self.webrtc_server.unregister_transport(self)
        for server in self.tcp_servers:
            server.close()
        self.tcp_servers = []
        for conn in list(self.tcp_connections) + list(self.pending_tcp):
            conn.close()
        self.tcp_connections.clear()
        self.pending_tcp.clear()
        # --- end webrtc server / ice-tcp ---

    # ------------------------------------------------------------------ info
    def describe(self) -> dict:
        return {
            "id": self.id,
            "iceRole": "controlled",
            "iceParameters": self.core.ice_parameters,
            "iceCandidates": self.ice_candidates,
            "iceState": self.core.ice_state,
            "iceSelectedTuple": self.tuple_dict(self.core.selected_tuple),
            "dtlsParameters": self.core.dtls_parameters,
            "dtlsState": self.core.dtls_state,
            **self.sctp_describe(),  # data channels (issue 7)
        }

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``WebRtcTransportStat[]`` (one entry)."""
        s = {"type": "webrtc-transport"}
        s.update(self.base_stats(now_ms))
        s.update(
            {
                "iceRole": "controlled",
                "iceState": self.core.ice_state,
                "dtlsState": self.core.dtls_state,
                **self.bwe.stats(),
            }
        )
        selected = self.tuple_dict(self.core.selected_tuple)
        if selected is not None:
            s["iceSelectedTuple"] = selected
        return [s]

    def dump(self) -> dict:
        d = self.base_dump()
        d.update(self.describe())
        d["droppedPackets"] = dict(self.drops + self.core.drops)
        return d
