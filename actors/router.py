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
from .data_channels import close_data_consumer, close_data_producer, router_data_dump  # data channels (issue 7)

if TYPE_CHECKING:  # pragma: no cover
    from .consumer import Consumer
    from .observers import RtpObserver  # rtp observers (issue 7)
    from .producer import Producer
    from .worker import WorkerCore


def validate_webrtc_transport_options(options: dict) -> dict:
    """Check ``router.create_webrtc_transport()`` options (mediasoup ``WebRtcTransportOptions``).

    Accepts ``listenInfos`` (or the deprecated ``listenIps`` + ``port``), ``enableUdp``,
    ``enableTcp``, ``preferUdp``, ``preferTcp``, ``iceConsentTimeout`` (s, 10..60, 0 disables),
    ``initialAvailableOutgoingBitrate`` (bps), ``enableSctp``, ``numSctpStreams``,
    ``maxSctpMessageSize``, ``sctpSendBufferSize``, ``appData``. Raises ``TypeError`` naming the
    field; ``UnsupportedError`` for what is not implemented.

    WebRtcServer / ICE-TCP (issue 7): ``webRtcServer`` (the server's id) excludes
    ``listenInfos``/``listenIps``; ``enableUdp`` defaults to True, ``enableTcp`` to True with a
    server and False without (mediasoup). With a server they pick which of its listen infos
    become candidates. Without one, ``enableTcp`` adds a TCP listen info for every UDP one that
    has no TCP twin (same ip, announcedAddress, port/portRange; before it when ``preferTcp``),
    explicit ``protocol: "tcp"`` entries are always bound, and ``enableUdp=False`` drops the UDP
    entries. The result's ``listenInfos`` is what gets bound.
    """
    # --- webrtc server / ice-tcp (issue 7) ---
    server_id = options.get("webRtcServer")
    for name, key in (("enable_udp", "enableUdp"), ("enable_tcp", "enableTcp"), ("prefer_udp", "preferUdp"), ("prefer_tcp", "preferTcp")):
        if options.get(key) is not None and not isinstance(options.get(key), bool):
            raise TypeError(f"{name} must be a bool")
    enable_udp = options.get("enableUdp")
    enable_udp = True if enable_udp is None else enable_udp
    enable_tcp = options.get("enableTcp")
    enable_tcp = server_id is not None if enable_tcp is None else enable_tcp
    prefer_tcp = bool(options.get("preferTcp"))
    if server_id is not None:
        if not enable_udp and not enable_tcp:
            raise TypeError("enable_udp/enable_tcp: at least one must be true")
        if not isinstance(server_id, str):
            raise TypeError("webrtc_server must be a WebRtcServer")
        if options.get("listenInfos") is not None or options.get("listenIps") is not None:
            raise TypeError("webrtc_server: give either webrtc_server or listen_infos/listen_ips, not both")
        listen_infos = None
    else:
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
    # --- end webrtc server / ice-tcp ---
    # --- data channels (issue 7): enableSctp & co are checked by make_transport_data_channels ---
    # --- webrtc server / ice-tcp (issue 7) ---
    infos = []
    if listen_infos is not None:
        given = [validate_listen_info(info, f"listen_infos[{i}]", allow_tcp=True) for i, info in enumerate(listen_infos)]
        tcp_ips = {info["ip"] for info in given if info["protocol"] == "tcp"}
        for info in given:
            twin = None
            if enable_tcp and info["protocol"] == "udp" and info["ip"] not in tcp_ips:
                twin = {**info, "protocol": "tcp"}
            keep = info if (info["protocol"] == "tcp" or enable_udp) else None
            infos += [x for x in ((twin, keep) if prefer_tcp else (keep, twin)) if x is not None]
        if not infos:
            raise TypeError("listen_infos: nothing to bind with these enable_udp/enable_tcp (at least one must be true)")
    # --- end webrtc server / ice-tcp ---
    consent = options.get("iceConsentTimeout", 30)
    if not isinstance(consent, int) or isinstance(consent, bool) or not (consent == 0 or 10 <= consent <= 60):
        raise TypeError("ice_consent_timeout must be 0 (disabled) or an int in 10..60 (s)")
    initial = options.get("initialAvailableOutgoingBitrate", 600000)
    if not isinstance(initial, int) or initial <= 0:
        raise TypeError("initial_available_outgoing_bitrate must be a positive int (bps)")
    out = dict(options)
    out["listenInfos"] = infos
    out["enableUdp"], out["enableTcp"] = enable_udp, enable_tcp  # webrtc server / ice-tcp (issue 7)
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
        # --- data channels (issue 7) ---
        self.data_producers: dict[str, Any] = {}  # id -> DataProducerCore (actors/data_channels.py)
        self.data_consumers: dict[str, Any] = {}  # id -> DataConsumerCore
        # --- end data channels ---
        # --- rtp observers (issue 7) ---
        self.rtp_observers: dict[str, "RtpObserver"] = {}
        # --- end rtp observers ---

    async def _open_transport(self, transport: Transport) -> dict:
        """Bind ``transport``'s sockets, then register it; a router closed meanwhile closes it
        and raises ``InvalidStateError``. Returns its description."""
        await transport.open()
        if self.closed:  # closed while the sockets were being bound
            transport.close()
            raise InvalidStateError("router closed")
        return self._register_transport(transport)

    def _register_transport(self, transport: Transport) -> dict:
        self.transports[transport.id] = transport
        self.worker.objects[transport.id] = transport
        return transport.describe()

    async def create_webrtc_transport(self, options: dict) -> dict:
        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        options = validate_webrtc_transport_options(options)
        # --- webrtc server / ice-tcp (issue 7): the server's id → the worker's WebRtcServer ---
        if options.get("webRtcServer") is not None:
            server = self.worker.webrtc_servers.get(options["webRtcServer"])
            if server is None or server.closed:
                raise InvalidStateError(f"webrtc_server: no open WebRtcServer {options['webRtcServer']!r} in this worker")
            options["webRtcServer"] = server
        # --- end webrtc server / ice-tcp ---
        return await self._open_transport(WebRtcTransport(self, str(uuid.uuid4()), options))

    async def create_pipe_transport(self, options: dict) -> dict:
        from .pipe_transport import PipeTransport, validate_pipe_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        options = validate_pipe_transport_options(options)
        return await self._open_transport(PipeTransport(self, str(uuid.uuid4()), options))

    # --- PlainTransport / DirectTransport (issue 7) -------------------------------------------
    async def create_plain_transport(self, options: dict) -> dict:
        """mediasoup ``router.createPlainTransport()``; returns the transport's description."""
        from .plain_transport import PlainTransport, validate_plain_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        return await self._open_transport(PlainTransport(self, str(uuid.uuid4()), validate_plain_transport_options(options)))

    def create_direct_transport(self, options: dict) -> dict:
        """mediasoup ``router.createDirectTransport()``; returns the transport's description."""
        from .direct_transport import DirectTransport, validate_direct_transport_options

        if self.closed:
            raise InvalidStateError("router closed")
        if not isinstance(options, dict):
            raise TypeError("options must be a dict")
        return self._register_transport(DirectTransport(self, str(uuid.uuid4()), validate_direct_transport_options(options)))
    # --- end PlainTransport / DirectTransport ---------------------------------------------------

    # --- rtp observers (issue 7) ---
    def create_rtp_observer(self, type_: str, options: dict, now_ms: int) -> dict:
        """mediasoup ``router.createAudioLevelObserver()`` (``type_`` "audiolevel") /
        ``createActiveSpeakerObserver()`` ("activespeaker"); options as
        :func:`raysfu.actors.observers.create_rtp_observer`. Returns ``{"id", "type"}``."""
        from .observers import create_rtp_observer

        if self.closed:
            raise InvalidStateError("router closed")
        observer = create_rtp_observer(self, type_, options, now_ms)
        self.rtp_observers[observer.id] = observer
        self.worker.objects[observer.id] = observer
        return {"id": observer.id, "type": observer.type}

    def rtp_observer_producer(self, data: dict) -> "Producer":
        """The producer named by ``data["producerId"]``; ValueError naming ``producer_id`` when this
        router has none (mediasoup "Producer not found")."""
        producer_id = data.get("producerId")
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty str")
        producer = self.producers.get(producer_id)
        if producer is None:
            raise ValueError(f"producer_id {producer_id!r}: no such producer in this router")
        return producer

    def close_rtp_observer(self, observer: "RtpObserver") -> None:
        observer.close()
        self.rtp_observers.pop(observer.id, None)
        self.worker.objects.pop(observer.id, None)

    def run_rtp_observer_timers(self, now_ms: int) -> None:
        """Called by the worker's tick: the observers whose timer is due run their update."""
        for observer in list(self.rtp_observers.values()):
            due = observer.timer_due_ms
            if due is not None and due <= now_ms:
                observer.on_timer(now_ms)
    # --- end rtp observers ---

    # --- data channels (issue 7) ---
    def close_data_producer(self, data_producer: Any, *, notify_self: bool = False) -> None:
        """Close a DataProducer: its DataConsumers get ``dataproducerclose``."""
        close_data_producer(self, data_producer, notify_self=notify_self, now_ms=self.worker.now_ms())

    def close_data_consumer(self, data_consumer: Any, *, notify: str | None = None) -> None:
        close_data_consumer(self, data_consumer, notify=notify, now_ms=self.worker.now_ms())
    # --- end data channels ---

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
        # --- rtp observers (issue 7) ---
        if getattr(producer, "rtp_observers", None):
            now_ms = self.worker.now_ms()
            for observer in list(producer.rtp_observers):
                observer.producer_closed(producer, now_ms)
        # --- end rtp observers ---
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
        # --- rtp observers (issue 7) ---
        for observer in list(self.rtp_observers.values()):
            self.close_rtp_observer(observer)
        # --- end rtp observers ---
        for transport in list(self.transports.values()):
            self.close_transport(transport, cause)
        self.worker.objects.pop(self.id, None)

    # ------------------------------------------------------------------ info
    def dump(self) -> dict:
        """mediasoup ``RouterDump``."""
        return {
            "id": self.id,
            "transportIds": list(self.transports),
            "rtpObserverIds": list(self.rtp_observers),  # rtp observers (issue 7)
            "mapProducerIdConsumerIds": [{"key": p.id, "values": [c.id for c in p.consumers]} for p in self.producers.values()],
            "mapConsumerIdProducerId": [{"key": c.id, "value": c.producer_id} for c in self.consumers.values()],
            "mapProducerIdObserverIds": [{"key": p.id, "values": [o.id for o in getattr(p, "rtp_observers", ())]} for p in self.producers.values()],  # rtp observers (issue 7)
            **router_data_dump(self),  # data channels (issue 7)
        }
