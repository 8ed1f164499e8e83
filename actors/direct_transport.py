"""In-actor DirectTransport: RTP and RTCP injected and extracted by Python code, no network.

mediasoup ``DirectTransport``: producers on it are fed with ``producer.send(rtp_bytes)``, its
consumers hand every packet they would send to an ``rtp`` event, RTCP the router would send to
the remote becomes the transport's ``rtcp`` event, and ``transport.send_rtcp(rtcp_bytes)``
delivers RTCP as if the remote had sent it. The bitrate setters raise ``UnsupportedError``.

Two places the Python code can run:

- **in the driver** (default): the packets cross Ray. ``producer.send()`` batches the packets of
  one event-loop turn into one request; ``rtp``/``rtcp`` events arrive through the handles'
  event long-poll. Good for tests, bots and low rates.
- **in the actor**: pass a :class:`DirectTransportHandler` instance to
  ``router.create_direct_transport(handler=...)``. It is pickled into the WorkerActor and called
  on the actor's event loop for every packet (no Ray call per packet); it injects with
  :class:`DirectContext`. ``transport.call_handler(name, *args)`` runs one of its methods from the
  driver and returns the result (e.g. counters).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from raysfu.transport.errors import InvalidStateError, PacketParseError
from raysfu.transport.rtp import parse_rtp_header

from .webrtc_transport import Transport

if TYPE_CHECKING:  # pragma: no cover
    from .producer import Producer
    from .router import Router

DEFAULT_MAX_MESSAGE_SIZE = 262144


def validate_direct_transport_options(options: dict) -> dict:
    """Check ``router.create_direct_transport()`` options (mediasoup ``DirectTransportOptions``):
    ``maxMessageSize`` (int >= 0, bytes, default 262144), ``handler`` (a
    :class:`DirectTransportHandler` or None), ``appData``. Raises ``TypeError`` naming the field."""
    size = options.get("maxMessageSize", DEFAULT_MAX_MESSAGE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TypeError("max_message_size must be a non-negative int (bytes)")
    handler = options.get("handler")
    if handler is not None and not isinstance(handler, DirectTransportHandler):
        raise TypeError("handler must be a DirectTransportHandler instance")
    out = dict(options)
    out["maxMessageSize"] = size
    return out


class DirectTransportHandler:
    """Base class for Python code that runs inside the WorkerActor next to a DirectTransport.

    Subclass it, override what you need, pass an instance to
    ``router.create_direct_transport(handler=...)`` (it must pickle; it is copied into the
    actor). Every method runs on the actor's event loop and must not block: it shares the core
    with the media path. Exceptions are counted in the transport's ``droppedPackets``
    (``handler_error``), never raised into the media path.
    """

    context: "DirectContext"

    def on_open(self, context: "DirectContext") -> None:
        """Called once when the transport is created; keep ``context`` to inject packets."""
        self.context = context

    def on_rtp(self, consumer_id: str, packet: bytes) -> None:
        """One RTP packet a consumer of this transport sends (mediasoup consumer ``rtp``)."""

    def on_rtcp(self, packet: bytes) -> None:
        """One RTCP (compound) packet the transport sends to its remote (mediasoup ``rtcp``)."""

    def on_close(self) -> None:
        """Called once when the transport closes."""


class DirectContext:
    """What a :class:`DirectTransportHandler` may do inside the actor (a narrow facade)."""

    __slots__ = ("_transport",)

    def __init__(self, transport: "DirectTransport") -> None:
        self._transport = transport

    @property
    def transport_id(self) -> str:
        return self._transport.id

    def producer_ids(self) -> list[str]:
        """Ids of the producers of this transport."""
        return list(self._transport.producers)

    def consumer_ids(self) -> list[str]:
        """Ids of the consumers of this transport."""
        return list(self._transport.consumers)

    def now_ms(self) -> int:
        """The worker's monotonic clock (ms)."""
        return self._transport.worker.now_ms()

    def send_rtp(self, producer_id: str, packet: bytes) -> bool:
        """Inject one RTP packet into a producer of this transport (mediasoup ``producer.send``).
        Returns False (and counts) when the producer is unknown or the packet is dropped."""
        producer = self._transport.producers.get(producer_id)
        if producer is None:
            self._transport.drops["direct_unknown_producer"] += 1
            return False
        return self._transport.inject_rtp(producer, packet, self._transport.worker.now_ms())

    def send_rtcp(self, packet: bytes) -> None:
        """Deliver RTCP as if the remote had sent it (mediasoup ``transport.sendRtcp``)."""
        self._transport.receive_rtcp(bytes(packet), self._transport.worker.now_ms())


class DirectTransport(Transport):
    """mediasoup ``DirectTransport`` inside the actor: no sockets; packets go to and come from
    Python code in the driver (Ray events and requests) or in the actor (a handler)."""

    kind = "direct"

    def __init__(self, router: "Router", transport_id: str, options: dict) -> None:
        super().__init__(router, transport_id, options.get("appData"))
        self.max_message_size = options["maxMessageSize"]
        self.handler: DirectTransportHandler | None = options.get("handler")
        if self.handler is not None:
            self._call_hook("on_open", DirectContext(self))

    def _call_hook(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.handler, name)(*args)
        except Exception:  # user code must not break the media path; it shows in the counters
            self.drops["handler_error"] += 1
            return None

    # ------------------------------------------------------------------ in
    def inject_rtp(self, producer: "Producer", packet: bytes, now_ms: int) -> bool:
        """Feed one RTP packet to ``producer`` (mediasoup ``Producer::Send``). A producer
        without a signalled SSRC learns it from the first packet with its payload type.
        Returns False (and counts the reason) when the packet is dropped."""
        data = bytes(packet)
        try:
            hdr = parse_rtp_header(data)
        except PacketParseError:
            self.drops["rtp_malformed"] += 1
            return False
        n = len(data)
        self.bytes_received += n
        self.rtp_bytes_received += n
        self.rtp_packets_received += 1
        ssrc = hdr[4]
        owner = self.ssrc_table.get(ssrc)
        if owner is None:
            if producer.ssrc is None and hdr[0] == producer.payload_type:
                producer.learn_ssrc(ssrc)
            elif producer.ssrc is not None and producer.rtx_ssrc is None and hdr[0] == producer.rtx_payload_type:
                producer.rtx_ssrc = ssrc
            else:
                self.drops["rtp_unknown_ssrc"] += 1
                return False
            self.ssrc_table[ssrc] = producer
        elif owner is not producer:
            self.drops["rtp_ssrc_of_another_producer"] += 1
            return False
        producer.receive_rtp(data, hdr, now_ms)
        return True

    def producer_send(self, producer: "Producer", packets: list, now_ms: int) -> int:
        """``producer.send()`` from the driver: a batch of RTP packets in order. Returns how
        many were accepted."""
        self._check_open()
        return sum(1 for p in packets if self.inject_rtp(producer, p, now_ms))

    # ------------------------------------------------------------------ out
    def send_rtp(self, buf: bytearray, twcc_off: int) -> None:
        self._emit_rtp(bytes(buf))

    def send_scratch_rtp(self, n: int, twcc_off: int) -> None:
        """Hot-path entry (``Transport.scratch``, see webrtc_transport): one copy, no more."""
        self._emit_rtp(bytes(self.scratch[:n]))

    def _emit_rtp(self, packet: bytes) -> None:
        consumer = self.consumer_ssrc_table.get(int.from_bytes(packet[8:12], "big"))
        if consumer is None:
            self.drops["send_unknown_ssrc"] += 1
            return
        n = len(packet)
        self.rtp_bytes_sent += n  # bytes_sent follows (a property)
        self.rtp_packets_sent += 1
        if self.handler is not None:
            self._call_hook("on_rtp", consumer.id, packet)
        else:
            self.worker.emit(consumer.id, "rtp", packet)

    def send_rtcp(self, packet: bytes) -> None:
        packet = bytes(packet)
        self.bytes_sent += len(packet)
        if self.handler is not None:
            self._call_hook("on_rtcp", packet)
        else:
            self.worker.emit(self.id, "rtcp", packet)

    # ------------------------------------------------------------------ control
    def connect(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``directTransport.connect()``: nothing to do."""
        self._check_open()
        return {}

    def receive_rtcp_from_driver(self, packet: Any, now_ms: int) -> None:
        """``transport.send_rtcp(bytes)``: RTCP as if the remote had sent it."""
        self._check_open()
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError("rtcp_packet must be bytes")
        packet = bytes(packet)
        self.bytes_received += len(packet)
        self.receive_rtcp(packet, now_ms)

    async def call_handler(self, name: str, args: list) -> Any:
        """Run ``handler.<name>(*args)`` (awaited if it is a coroutine) and return its result.
        Raises ``InvalidStateError`` without a handler, ``TypeError`` for a private or
        missing method; the method's own exception is re-raised."""
        self._check_open()
        if self.handler is None:
            raise InvalidStateError("this DirectTransport has no handler")
        if not isinstance(name, str) or name.startswith("_") or not callable(getattr(self.handler, name, None)):
            raise TypeError(f"name: the handler has no public method {name!r}")
        result = getattr(self.handler, name)(*args)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    # ------------------------------------------------------------------ lifecycle and info
    def close(self, cause: str = "user") -> None:
        if self.closed:
            return
        super().close(cause)
        if self.handler is not None:
            self._call_hook("on_close")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "maxMessageSize": self.max_message_size, "hasHandler": self.handler is not None}

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``DirectTransportStat[]`` (one entry: the base transport stats)."""
        s = {"type": "direct-transport"}
        s.update(self.base_stats(now_ms))
        return [s]

    def dump(self) -> dict:
        d = self.base_dump()
        d.update(self.describe())
        d["direct"] = True
        return d
