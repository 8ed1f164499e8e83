"""In-actor Router: owns transports, producers and consumers, and the close cascades.

Fan-out itself is direct: each producer holds the list of its consumers, so a packet goes
producer → consumers without a lookup (mediasoup ``Router::OnTransportProducerRtpPacketReceived``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from raysfu.transport import ortc
from raysfu.transport.errors import InvalidStateError

from .webrtc_transport import Transport, WebRtcTransport, validate_listen_info

if TYPE_CHECKING:  # pragma: no cover
    from .consumer import Consumer
    from .producer import Producer
    from .worker import WorkerCore


def validate_webrtc_transport_options(options: dict) -> dict:
    """Check ``router.create_webrtc_transport()`` options (mediasoup ``WebRtcTransportOptions``).

    Accepts ``listenInfos`` (or the deprecated ``listenIps`` + ``port``), ``enableUdp``,
    ``enableTcp``, ``preferUdp``, ``preferTcp``, ``iceConsentTimeout`` (s, 10..60, 0 disables),
    ``initialAvailableOutgoingBitrate`` (bps), ``enableSctp``, ``numSctpStreams``,
    ``maxSctpMessageSize``, ``sctpSendBufferSize``, ``appData``. Raises ``TypeError`` naming the
    field; ``UnsupportedError`` for what a later issue brings (TCP, SCTP, WebRtcServer).
    """
    from raysfu.transport.errors import UnsupportedError

    if options.get("webRtcServer") is not None:
        raise UnsupportedError("webrtc_server: WebRtcServer is not supported yet")
    listen_infos = options.get("listenInfos")
    if listen_infos is None and options.get("listenIps") is not None:
        ips = options["listenIps"]
        if not isinstance(ips, list):
            raise TypeError("listen_ips must be a list")
        listen_infos = []
        for i, entry in enumerate(ips):
            if isinstance(entry, str):
                entry = {"ip": entry}
            if not isinstance(entry, dict):
                raise TypeError(f"listen_ips[{i}] must be a string or a dict")
            listen_infos.append({"protocol": "udp", "ip": entry.get("ip"), "announcedAddress": entry.get("announcedIp"), "port": options.get("port", 0)})
    if not isinstance(listen_infos, list) or not listen_infos:
        raise TypeError("listen_infos must be a non-empty list")
    if options.get("enableUdp", True) is False:
        raise UnsupportedError("enable_udp=False needs ICE over TCP, which is not supported yet")
    if options.get("enableTcp"):
        raise UnsupportedError("enable_tcp: ICE over TCP is not supported yet")
    if options.get("enableSctp"):
        raise UnsupportedError("enable_sctp: data channels are not supported yet")
    infos = [validate_listen_info(info, f"listen_infos[{i}]") for i, info in enumerate(listen_infos)]
    consent = options.get("iceConsentTimeout", 30)
    if not isinstance(consent, int) or isinstance(consent, bool) or not (consent == 0 or 10 <= consent <= 60):
        raise TypeError("ice_consent_timeout must be 0 (disabled) or an int in 10..60 (s)")
    initial = options.get("initialAvailableOutgoingBitrate", 600000)
    if not isinstance(initial, int) or initial <= 0:
        raise TypeError("initial_available_outgoing_bitrate must be a positive int (bps)")
    out = dict(options)
    out["listenInfos"] = infos
    out["iceConsentTimeout"] = consent
    out["initialAvailableOutgoingBitrate"] = initial
    return out


class Router:
    """mediasoup ``Router`` inside the WorkerActor."""

    def __init__(self, worker: "WorkerCore", router_id: str, media_codecs: Any, app_data: Any) -> None:
        if media_codecs is None:
            media_codecs = []
        if not isinstance(media_codecs, list):
            raise TypeError("media_codecs must be a list")
        self.rtp_capabilities = ortc.generate_router_rtp_capabilities(media_codecs)
        self.worker = worker
        self.id = router_id
        self.app_data = app_data
        self.closed = False
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, "Producer"] = {}
        self.consumers: dict[str, "Consumer"] = {}

    async def create_webrtc_transport(self, options: dict) -> dict:
        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        options = validate_webrtc_transport_options(options)
        transport_id = str(uuid.uuid4())
        transport = WebRtcTransport(self, transport_id, options)
        await transport.open()
        if self.closed:  # closed while the sockets were being bound
            transport.close()
            raise InvalidStateError("router closed")
        self.transports[transport_id] = transport
        self.worker.objects[transport_id] = transport
        return transport.describe()

    async def create_pipe_transport(self, options: dict) -> dict:
        from .pipe_transport import PipeTransport, validate_pipe_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        options = validate_pipe_transport_options(options)
        transport = PipeTransport(self, str(uuid.uuid4()), options)
        await transport.open()
        if self.closed:
            transport.close()
            raise InvalidStateError("router closed")
        self.transports[transport.id] = transport
        self.worker.objects[transport.id] = transport
        return transport.describe()

    # --- PlainTransport / DirectTransport (issue 7) -------------------------------------------
    async def create_plain_transport(self, options: dict) -> dict:
        """mediasoup ``router.createPlainTransport()``; returns the transport's description."""
        from .plain_transport import PlainTransport, validate_plain_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        transport = PlainTransport(self, str(uuid.uuid4()), validate_plain_transport_options(options))
        await transport.open()
        if self.closed:
            transport.close()
            raise InvalidStateError("router closed")
        self.transports[transport.id] = transport
        self.worker.objects[transport.id] = transport
        return transport.describe()

    def create_direct_transport(self, options: dict) -> dict:
        """mediasoup ``router.createDirectTransport()``; returns the transport's description."""
        from .direct_transport import DirectTransport, validate_direct_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        transport = DirectTransport(self, str(uuid.uuid4()), validate_direct_transport_options(options))
        self.transports[transport.id] = transport
        self.worker.objects[transport.id] = transport
        return transport.describe()
    # --- end PlainTransport / DirectTransport ---------------------------------------------------

    def add_producer(self, producer: "Producer") -> None:
        self.producers[producer.id] = producer
        self.worker.objects[producer.id] = producer

    def add_consumer(self, consumer: "Consumer") -> None:
        self.consumers[consumer.id] = consumer
        consumer.producer.consumers.append(consumer)
        self.worker.objects[consumer.id] = consumer

    def can_consume(self, producer_id: str, rtp_capabilities: Any) -> bool:
        """mediasoup ``router.canConsume()``: False for unknown producers or bad capabilities."""
        producer = self.producers.get(producer_id)
        if producer is None:
            return False
        try:
            caps = ortc.validate_rtp_capabilities(rtp_capabilities)
            return ortc.can_consume(producer.consumable_rtp_parameters, caps)
        except (TypeError, ValueError):
            return False

    # ------------------------------------------------------------------ close cascades
    def close_producer(self, producer: "Producer", *, notify_self: bool = False) -> None:
        """Close a producer: its consumers get ``producerclose`` (mediasoup Router)."""
        if producer.closed:
            return
        producer.closed = True
        producer.transport.remove_producer(producer)
        self.producers.pop(producer.id, None)
        self.worker.objects.pop(producer.id, None)
        for consumer in list(producer.consumers):
            self.close_consumer(consumer, notify="producerclose")
        if notify_self:
            self.worker.emit(producer.id, "transportclose", None)

    def close_consumer(self, consumer: "Consumer", *, notify: str | None = None) -> None:
        if consumer.closed:
            return
        consumer.closed = True
        try:
            consumer.producer.consumers.remove(consumer)
        except ValueError:
            pass
        consumer.transport.remove_consumer(consumer)
        self.consumers.pop(consumer.id, None)
        self.worker.objects.pop(consumer.id, None)
        if notify:
            self.worker.emit(consumer.id, notify, None)

    def close_transport(self, transport: Transport, cause: str = "user") -> None:
        if not transport.closed:
            self.worker.retired_packets_in += transport.rtp_packets_received
            self.worker.retired_packets_out += transport.rtp_packets_sent
        transport.close(cause)
        self.transports.pop(transport.id, None)
        self.worker.objects.pop(transport.id, None)

    def close(self, cause: str = "user") -> None:
        if self.closed:
            return
        self.closed = True
        for transport in list(self.transports.values()):
            self.close_transport(transport, cause)
        self.worker.objects.pop(self.id, None)

    # ------------------------------------------------------------------ info
    def dump(self) -> dict:
        """mediasoup ``RouterDump``."""
        return {
            "id": self.id,
            "transportIds": list(self.transports),
            "rtpObserverIds": [],
            "mapProducerIdConsumerIds": [{"key": p.id, "values": [c.id for c in p.consumers]} for p in self.producers.values()],
            "mapConsumerIdProducerId": [{"key": c.id, "value": c.producer_id} for c in self.consumers.values()],
            "mapProducerIdObserverIds": [],
            "mapDataProducerIdDataConsumerIds": [],
            "mapDataConsumerIdDataProducerId": [],
        }
