"""DataProducer / DataConsumer logic and one transport's SCTP data channels (runs in the actor).

Plain objects, no I/O and no clock (``now_ms`` is passed in), so they are unit-tested like the
sans-I/O code and wired by the transport actors:

- :class:`DataProducerCore`: mediasoup ``DataProducer`` state: ``type`` ("sctp" | "direct"),
  ``sctpStreamParameters``, ``label``, ``protocol``, ``paused``, message counters; ``getStats()``
  and ``dump()`` in mediasoup's shapes;
- :class:`DataConsumerCore`: mediasoup ``DataConsumer`` state: its own ``sctpStreamParameters``
  (stream id from the transport's allocator, ordered / partial reliability overridable),
  ``paused`` / ``dataProducerPaused``, ``subchannels`` (message filtering), buffered amount with
  the ``bufferedamountlow`` threshold, counters, stats and dump;
- :class:`SctpStreamIdAllocator`: mediasoup's per-transport stream-id bitmap for DataConsumers;
- :class:`TransportDataChannels`: what a transport with ``enableSctp`` holds: the
  :class:`~raysfu.transport.sctp.SctpAssociation` (created at :meth:`TransportDataChannels.start`),
  the ``sctpParameters``, the stream-id → DataProducer table (mediasoup ``SctpListener``), the
  DataConsumers by stream id, DCEP (RFC 8832) answers, stream resets on close.

mediasoup-client opens every channel with ``negotiated: true`` (ids and options travel in
``sctpStreamParameters``), so no DCEP is involved with it; a client that opens a channel in band
(DATA_CHANNEL_OPEN) gets its ACK and the transport reports ``("dcepopen", stream_id, params)``
so the application may create a DataProducer for it; a DataConsumer may be opened in band too
(``negotiated=False``).

Sources: mediasoup ``node/src/Transport.ts`` (produceData / consumeData / getNextSctpStreamId),
``worker/src/RTC/DataProducer.cpp``, ``DataConsumer.cpp`` (SendMessage checks, buffered amount,
subchannels), ``SctpAssociation.cpp`` (stream resets on close).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from raysfu.transport.dcep import (
    PPID_DCEP,
    DataChannelOpen,
    encode_ack,
    encode_message,
    parse_dcep,
)
from raysfu.transport.errors import InvalidStateError, PacketParseError
from raysfu.transport.ortc import validate_sctp_stream_parameters
from raysfu.transport.sctp import SCTP_PORT, SctpAssociation

__all__ = [
    "DataConsumerCore",
    "DataProducerCore",
    "SctpStreamIdAllocator",
    "TransportDataChannels",
    "consumer_sctp_stream_parameters",
    "normalize_message",
    "validate_num_sctp_streams",
]

normalize_message = encode_message  # mediasoup DataProducer.send / DataConsumer.send PPID rules


def _check_label(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string")
    return value


def _check_u16_list(values: Any, field: str) -> set[int]:
    if values is None:
        return set()
    if not isinstance(values, (list, tuple, set)):
        raise TypeError(f"{field} must be a list of integers")
    out = set()
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
            raise TypeError(f"{field} must hold integers in [0, 65535], got {v!r}")
        out.add(v)
    return out


def validate_num_sctp_streams(value: Any) -> dict[str, int]:
    """``numSctpStreams`` → ``{"OS": int, "MIS": int}`` (each 1..65535, default 1024).
    Raises TypeError naming the field."""
    if value is None:
        return {"OS": 1024, "MIS": 1024}
    if not isinstance(value, dict):
        raise TypeError("numSctpStreams must be a dict {OS, MIS}")
    out = {}
    for key in ("OS", "MIS"):
        v = value.get(key, 1024)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
            raise TypeError(f"numSctpStreams.{key} must be an integer in [1, 65535]")
        out[key] = v
    return out


class SctpStreamIdAllocator:
    """Stream ids for DataConsumers of one transport (mediasoup ``getNextSctpStreamId``): the
    next free id in ``[0, mis)``, searching on from the last one given. ``parity`` 0/1 restricts
    to even/odd ids (DCEP-opened channels, RFC 8832 §6)."""

    def __init__(self, mis: int) -> None:
        self.mis = mis
        self._used = bytearray(mis)
        self._next = 0

    def allocate(self, parity: int | None = None) -> int:
        """Return a free id and mark it used. Raises ``RuntimeError`` when none is free."""
        n = self.mis
        for i in range(n):
            sid = (self._next + i) % n
            if not self._used[sid] and (parity is None or sid & 1 == parity):
                self._used[sid] = 1
                self._next = (sid + 1) % n
                return sid
        raise RuntimeError("no sctpStreamId available")

    def release(self, sid: int) -> None:
        if 0 <= sid < self.mis:
            self._used[sid] = 0

    def in_use(self, sid: int) -> bool:
        return 0 <= sid < self.mis and bool(self._used[sid])


def consumer_sctp_stream_parameters(producer_params: dict | None, stream_id: int, *,
                                    ordered: bool | None = None, max_packet_life_time: int | None = None,
                                    max_retransmits: int | None = None) -> dict[str, Any]:
    """A DataConsumer's ``sctpStreamParameters`` (mediasoup ``Transport.consumeData``): the
    producer's (``{ordered: True}`` for a direct producer) with the given options overriding, and
    ``streamId`` set."""
    params = copy.deepcopy(producer_params) if producer_params else {"ordered": True}
    if ordered is not None:
        if not isinstance(ordered, bool):
            raise TypeError("ordered must be a boolean")
        params["ordered"] = ordered
    if max_packet_life_time is not None:
        if not isinstance(max_packet_life_time, int) or not 0 <= max_packet_life_time <= 65535:
            raise TypeError("maxPacketLifeTime must be an integer in [0, 65535]")
        params["maxPacketLifeTime"] = max_packet_life_time
    if max_retransmits is not None:
        if not isinstance(max_retransmits, int) or not 0 <= max_retransmits <= 65535:
            raise TypeError("maxRetransmits must be an integer in [0, 65535]")
        params["maxRetransmits"] = max_retransmits
    params["streamId"] = stream_id
    return params


class DataProducerCore:
    """In-actor DataProducer (mediasoup ``DataProducer``)."""

    def __init__(self, *, data_producer_id: str, type: str, sctp_stream_parameters: dict | None,
                 label: str = "", protocol: str = "", paused: bool = False, app_data: Any = None) -> None:
        if type not in ("sctp", "direct"):
            raise TypeError("type must be 'sctp' or 'direct'")
        if type == "sctp":
            if sctp_stream_parameters is None:
                raise TypeError("missing sctpStreamParameters")
            sctp_stream_parameters = validate_sctp_stream_parameters(sctp_stream_parameters)
        else:
            sctp_stream_parameters = None
        if not isinstance(paused, bool):
            raise TypeError("paused must be a boolean")
        self.id = data_producer_id
        self.type = type
        self.sctp_stream_parameters = sctp_stream_parameters
        self.label = _check_label(label, "label")
        self.protocol = _check_label(protocol, "protocol")
        self.paused = paused
        self.app_data = app_data
        self.closed = False
        self.messages_received = 0
        self.bytes_received = 0

    @property
    def stream_id(self) -> int | None:
        return self.sctp_stream_parameters["streamId"] if self.sctp_stream_parameters else None

    def receive_message(self, ppid: int, payload: bytes) -> bool:
        """Count a received message; True if it is to be forwarded (not paused), as
        mediasoup's ``DataProducer::ReceiveMessage`` (a paused producer counts, then drops)."""
        self.messages_received += 1
        self.bytes_received += len(payload)
        return not self.paused

    def pause(self) -> bool:
        """Pause; True if the state changed (then the router tells the consumers)."""
        if self.paused:
            return False
        self.paused = True
        return True

    def resume(self) -> bool:
        if not self.paused:
            return False
        self.paused = False
        return True

    def get_stats(self, now_ms: int) -> list[dict[str, Any]]:
        """``[{type: "data-producer", timestamp, label, protocol, messagesReceived, bytesReceived}]``."""
        return [{"type": "data-producer", "timestamp": now_ms, "label": self.label, "protocol": self.protocol,
                 "messagesReceived": self.messages_received, "bytesReceived": self.bytes_received}]

    def dump(self) -> dict[str, Any]:
        """``{id, type, sctpStreamParameters?, label, protocol, paused}``."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "label": self.label,
                               "protocol": self.protocol, "paused": self.paused}
        if self.sctp_stream_parameters is not None:
            out["sctpStreamParameters"] = copy.deepcopy(self.sctp_stream_parameters)
        return out

    def describe(self) -> dict[str, Any]:
        """What a driver-side handle needs: the dump plus ``appData``."""
        return {**self.dump(), "appData": self.app_data}


class DataConsumerCore:
    """In-actor DataConsumer (mediasoup ``DataConsumer``)."""

    def __init__(self, *, data_consumer_id: str, data_producer: DataProducerCore, type: str,
                 sctp_stream_parameters: dict | None, paused: bool = False,
                 subchannels: Iterable[int] | None = None, max_message_size: int = 262144,
                 negotiated: bool = True, app_data: Any = None) -> None:
        if type not in ("sctp", "direct"):
            raise TypeError("type must be 'sctp' or 'direct'")
        if type == "sctp" and sctp_stream_parameters is None:
            raise TypeError("missing sctpStreamParameters")
        if not isinstance(paused, bool):
            raise TypeError("paused must be a boolean")
        self.id = data_consumer_id
        self.data_producer_id = data_producer.id
        self.type = type
        self.sctp_stream_parameters = sctp_stream_parameters if type == "sctp" else None
        self.label = data_producer.label
        self.protocol = data_producer.protocol
        self.paused = paused
        self.data_producer_paused = data_producer.paused
        self.data_producer_closed = False
        self._subchannels = _check_u16_list(subchannels, "subchannels")
        self.max_message_size = max_message_size
        self.negotiated = negotiated
        self.acked = negotiated  # DCEP-opened: ordered+reliable until DATA_CHANNEL_ACK
        self.app_data = app_data
        self.closed = False
        self.messages_sent = 0
        self.bytes_sent = 0
        self.buffered_amount = 0
        self.buffered_amount_low_threshold = 0
        self.drops: dict[str, int] = {}

    # ------------------------------------------------------------------ getters
    @property
    def stream_id(self) -> int | None:
        return self.sctp_stream_parameters["streamId"] if self.sctp_stream_parameters else None

    @property
    def subchannels(self) -> list[int]:
        """Subscribed subchannels, sorted."""
        return sorted(self._subchannels)

    def send_options(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`SctpAssociation.send`: ``ordered``, ``max_retransmits``,
        ``max_packet_life_time_ms`` from the consumer's ``sctpStreamParameters``."""
        p = self.sctp_stream_parameters or {}
        if not self.acked:
            return {"ordered": True, "max_retransmits": None, "max_packet_life_time_ms": None}
        return {"ordered": p.get("ordered", True) is not False,
                "max_retransmits": p.get("maxRetransmits"),
                "max_packet_life_time_ms": p.get("maxPacketLifeTime")}

    # ------------------------------------------------------------------ message path
    def is_active(self, sctp_connected: bool = True) -> bool:
        """mediasoup ``DataConsumer::IsActive``: transport/SCTP up, neither side paused, the
        producer alive."""
        return (sctp_connected or self.type == "direct") and not self.paused and not self.data_producer_paused \
            and not self.data_producer_closed and not self.closed

    def accept(self, ppid: int, payload: bytes, subchannels: Iterable[int] | None = None,
               required_subchannel: int | None = None, *, sctp_connected: bool = True) -> bool:
        """Whether a message from the producer goes to this consumer (mediasoup
        ``DataConsumer::SendMessage`` checks, in order: active, required subchannel, any of the
        given subchannels, size); counts ``messagesSent`` / ``bytesSent`` when it does and a named
        drop in :attr:`drops` when not."""
        reason = None
        if not self.is_active(sctp_connected):
            reason = "inactive"
        elif required_subchannel is not None and required_subchannel not in self._subchannels:
            reason = "required_subchannel"
        elif subchannels and not any(s in self._subchannels for s in subchannels):
            reason = "subchannels"
        elif len(payload) > self.max_message_size:
            reason = "too_big"
        if reason is not None:
            self.drops[reason] = self.drops.get(reason, 0) + 1
            return False
        self.messages_sent += 1
        self.bytes_sent += len(payload)
        return True

    # ------------------------------------------------------------------ control
    def pause(self) -> bool:
        if self.paused:
            return False
        self.paused = True
        return True

    def resume(self) -> bool:
        if not self.paused:
            return False
        self.paused = False
        return True

    def set_data_producer_paused(self, paused: bool) -> bool:
        """The producer paused/resumed: True if changed (emit ``dataproducerpause|resume``)."""
        if self.data_producer_paused == paused:
            return False
        self.data_producer_paused = paused
        return True

    def set_subchannels(self, subchannels: Iterable[int]) -> list[int]:
        """Replace the subchannels; returns them sorted. Raises TypeError for a bad value."""
        self._subchannels = _check_u16_list(list(subchannels), "subchannels")
        return self.subchannels

    def add_subchannel(self, subchannel: int) -> list[int]:
        self._subchannels |= _check_u16_list([subchannel], "subchannel")
        return self.subchannels

    def remove_subchannel(self, subchannel: int) -> list[int]:
        _check_u16_list([subchannel], "subchannel")
        self._subchannels.discard(subchannel)
        return self.subchannels

    def set_buffered_amount_low_threshold(self, threshold: int) -> bool:
        """Set the threshold (bytes); True when ``bufferedamountlow`` is due at once (mediasoup
        fires it when the buffered amount is already at or below). Raises TypeError."""
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise TypeError("threshold must be a non-negative integer")
        self.buffered_amount_low_threshold = threshold
        return self.buffered_amount <= threshold

    def update_buffered_amount(self, amount: int) -> bool:
        """New buffered amount (bytes); True when it crossed down to/below the threshold."""
        previous = self.buffered_amount
        self.buffered_amount = amount
        thr = self.buffered_amount_low_threshold
        return previous > thr >= amount

    # ------------------------------------------------------------------ reporting
    def get_stats(self, now_ms: int) -> list[dict[str, Any]]:
        """``[{type: "data-consumer", timestamp, label, protocol, messagesSent, bytesSent,
        bufferedAmount}]``."""
        return [{"type": "data-consumer", "timestamp": now_ms, "label": self.label, "protocol": self.protocol,
                 "messagesSent": self.messages_sent, "bytesSent": self.bytes_sent,
                 "bufferedAmount": self.buffered_amount}]

    def dump(self) -> dict[str, Any]:
        """``{id, dataProducerId, type, sctpStreamParameters?, label, protocol,
        bufferedAmountLowThreshold, paused, dataProducerPaused, subchannels}``."""
        out: dict[str, Any] = {
            "id": self.id, "dataProducerId": self.data_producer_id, "type": self.type,
            "label": self.label, "protocol": self.protocol,
            "bufferedAmountLowThreshold": self.buffered_amount_low_threshold,
            "paused": self.paused, "dataProducerPaused": self.data_producer_paused,
            "subchannels": self.subchannels,
        }
        if self.sctp_stream_parameters is not None:
            out["sctpStreamParameters"] = copy.deepcopy(self.sctp_stream_parameters)
        return out

    def describe(self) -> dict[str, Any]:
        return {**self.dump(), "appData": self.app_data}


class TransportDataChannels:
    """The SCTP side of one transport (WebRtc/Plain/Pipe with ``enableSctp``).

    Construct with the transport options (``numSctpStreams``, ``maxSctpMessageSize``,
    ``sctpSendBufferSize``); :attr:`sctp_parameters` is mediasoup's ``sctpParameters``
    (``{port: 5000, OS, MIS, maxMessageSize}``) for the client. After the DTLS handshake call
    :meth:`start`; then feed SCTP packets to :meth:`receive` and, after every call, pull in this
    order :meth:`datagrams_to_send` (packets are built there), :meth:`drain_events`,
    :meth:`next_timer_ms` (then :meth:`handle_timer` when due). Events (tuples):

    - ``("sctpstatechange", state)``;
    - ``("bufferedamountlow", data_consumer_id, buffered_bytes)``;
    - ``("sctpsendbufferfull", data_consumer_id)`` (the message was dropped);
    - ``("dcepopen", stream_id, {label, protocol, sctpStreamParameters})``: the peer opened a
      channel in band (ACK sent); no DataProducer exists yet for it;
    - ``("streamreset", stream_id)``: the peer closed the channel on that stream id.

    Raises TypeError naming a bad option.
    """

    def __init__(self, *, num_sctp_streams: dict | None = None, max_sctp_message_size: int = 262144,
                 sctp_send_buffer_size: int = 262144) -> None:
        streams = validate_num_sctp_streams(num_sctp_streams)
        for name, v in (("maxSctpMessageSize", max_sctp_message_size), ("sctpSendBufferSize", sctp_send_buffer_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TypeError(f"{name} must be a positive integer")
        self.os = streams["OS"]
        self.mis = streams["MIS"]
        self.max_message_size = max_sctp_message_size
        self.send_buffer_size = sctp_send_buffer_size
        self.association: SctpAssociation | None = None
        self.data_producers: dict[str, DataProducerCore] = {}
        self.data_consumers: dict[str, DataConsumerCore] = {}
        self._producer_by_stream: dict[int, DataProducerCore] = {}
        self._consumer_by_stream: dict[int, DataConsumerCore] = {}
        self._releasing: set[int] = set()  # consumer ids waiting for their reset to finish
        self.stream_ids = SctpStreamIdAllocator(self.mis)
        self._events: list[tuple] = []
        self.drops: dict[str, int] = {}
        self.closed = False

    # ------------------------------------------------------------------ parameters / state
    @property
    def sctp_parameters(self) -> dict[str, int]:
        """mediasoup ``SctpParameters``: ``{port, OS, MIS, maxMessageSize}``."""
        return {"port": SCTP_PORT, "OS": self.os, "MIS": self.mis, "maxMessageSize": self.max_message_size}

    @property
    def sctp_state(self) -> str:
        """mediasoup ``sctpState``: "new" until :meth:`start`, then the association's."""
        return self.association.state if self.association is not None else "new"

    @property
    def connected(self) -> bool:
        return self.association is not None and self.association.state == "connected"

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, is_dtls_client: bool, now_ms: int, initiate: bool | None = None) -> None:
        """Create and start the association once DTLS is connected. ``initiate`` defaults to
        ``is_dtls_client`` (a passive side answers the peer's INIT; browsers initiate anyway)."""
        if self.association is not None or self.closed:
            return
        self.association = SctpAssociation(is_client=is_dtls_client, os=self.os, mis=self.mis,
                                           max_message_size=self.max_message_size,
                                           send_buffer_size=self.send_buffer_size)
        for dc in self.data_consumers.values():
            self._announce_consumer(dc, now_ms)
        self.association.start(now_ms, initiate=initiate)
        self._pull_events(now_ms)

    def close(self) -> None:
        """Abort the association (the transport is closing)."""
        if self.closed:
            return
        self.closed = True
        if self.association is not None and self.association.state in ("connecting", "connected"):
            self.association.abort()

    # ------------------------------------------------------------------ pulled I/O
    def receive(self, packet: bytes, now_ms: int) -> list[tuple[DataProducerCore, int, bytes]]:
        """Process one SCTP packet (DTLS application data). Returns the messages to route:
        ``[(data_producer, ppid, payload)]`` (already counted by the producer, not paused)."""
        if self.association is None:
            self._drop("sctp_before_start")
            return []
        self.association.receive(packet, now_ms)
        return self._pull_events(now_ms)

    def datagrams_to_send(self) -> list[bytes]:
        """SCTP packets for ``dtls.send_application_data``."""
        if self.association is None:
            return []
        return self.association.datagrams_to_send()

    def drain_events(self) -> list[tuple]:
        """Transport-level events since the last call (see the class docstring)."""
        if self.association is not None:
            self._pull_events(None)
        events, self._events = self._events, []
        return events

    def next_timer_ms(self) -> int | None:
        return self.association.next_timer_ms() if self.association is not None else None

    def handle_timer(self, now_ms: int) -> list[tuple[DataProducerCore, int, bytes]]:
        """Run due timers; returns messages to route as :meth:`receive` does (a timer can
        release held messages only indirectly, so this is normally empty)."""
        if self.association is None:
            return []
        self.association.handle_timer(now_ms)
        return self._pull_events(now_ms)

    # ------------------------------------------------------------------ producers / consumers
    def add_data_producer(self, producer: DataProducerCore) -> None:
        """Register an "sctp" DataProducer under its stream id (mediasoup ``SctpListener``).
        Raises ValueError for a stream id in use or not below MIS."""
        sid = producer.stream_id
        if sid is None:
            raise TypeError("data producer without sctpStreamParameters")
        if sid >= self.mis:
            raise ValueError(f"sctpStreamParameters.streamId {sid} must be lower than MIS {self.mis}")
        if sid in self._producer_by_stream:
            raise ValueError(f"sctpStreamParameters.streamId {sid} already exists")
        self.data_producers[producer.id] = producer
        self._producer_by_stream[sid] = producer

    def remove_data_producer(self, producer: DataProducerCore, now_ms: int | None = None) -> None:
        """Forget it and reset its stream so the remote channel closes (mediasoup
        ``SctpAssociation::DataProducerClosed``: outgoing reset for data channels)."""
        self.data_producers.pop(producer.id, None)
        sid = producer.stream_id
        if sid is not None and self._producer_by_stream.get(sid) is producer:
            del self._producer_by_stream[sid]
            self._reset(sid, now_ms)

    def add_data_consumer(self, *, data_consumer_id: str, data_producer: DataProducerCore,
                          ordered: bool | None = None, max_packet_life_time: int | None = None,
                          max_retransmits: int | None = None, paused: bool = False,
                          subchannels: Iterable[int] | None = None, negotiated: bool = True,
                          now_ms: int = 0, app_data: Any = None) -> DataConsumerCore:
        """Create an "sctp" DataConsumer with a fresh stream id (mediasoup ``consumeData``).
        ``negotiated=False`` opens it in band with DATA_CHANNEL_OPEN (label/protocol of the
        producer), on an id of our DTLS parity. Raises RuntimeError when no id is free."""
        if self.closed:
            raise InvalidStateError("transport closed")
        parity = None
        if not negotiated:
            parity = 0 if (self.association is None or self.association.is_client) else 1
        sid = self.stream_ids.allocate(parity)
        try:
            params = consumer_sctp_stream_parameters(
                data_producer.sctp_stream_parameters, sid, ordered=ordered,
                max_packet_life_time=max_packet_life_time, max_retransmits=max_retransmits)
            dc = DataConsumerCore(data_consumer_id=data_consumer_id, data_producer=data_producer, type="sctp",
                                  sctp_stream_parameters=params, paused=paused, subchannels=subchannels,
                                  max_message_size=self.max_message_size, negotiated=negotiated,
                                  app_data=app_data)
        except Exception:
            self.stream_ids.release(sid)
            raise
        self.data_consumers[dc.id] = dc
        self._consumer_by_stream[sid] = dc
        if self.association is not None:
            self._announce_consumer(dc, now_ms)
        return dc

    def remove_data_consumer(self, consumer: DataConsumerCore, now_ms: int | None = None) -> None:
        """Forget it, reset its stream (mediasoup ``DataConsumerClosed``) and free the stream id
        once the reset is done."""
        self.data_consumers.pop(consumer.id, None)
        consumer.closed = True
        sid = consumer.stream_id
        if sid is None or self._consumer_by_stream.get(sid) is not consumer:
            return
        del self._consumer_by_stream[sid]
        if self._reset(sid, now_ms):
            self._releasing.add(sid)
        else:
            self.stream_ids.release(sid)

    def send(self, consumer: DataConsumerCore, ppid: int, payload: bytes, *, subchannels: Iterable[int] | None = None,
             required_subchannel: int | None = None, now_ms: int) -> bool:
        """Send a message to a DataConsumer's remote end (from the router, or
        ``DataConsumer.send``). Applies :meth:`DataConsumerCore.accept`; returns False if it was
        filtered out, or dropped because the SCTP send buffer is full (then
        ``("sctpsendbufferfull", id)`` is emitted)."""
        if not consumer.accept(ppid, payload, subchannels, required_subchannel, sctp_connected=self.connected):
            return False
        assoc = self.association
        assert assoc is not None  # connected
        sid = consumer.stream_id
        try:
            ok = assoc.send(sid, ppid, payload, now_ms=now_ms, **consumer.send_options())
        except (InvalidStateError, ValueError):
            self._drop("sctp_send_rejected")
            return False
        if not ok:
            self._events.append(("sctpsendbufferfull", consumer.id))
            return False
        self._update_buffered(consumer)
        return True

    def set_buffered_amount_low_threshold(self, consumer: DataConsumerCore, threshold: int) -> None:
        """``DataConsumer.setBufferedAmountLowThreshold``: emits ``bufferedamountlow`` at once
        if already at or below it."""
        if self.association is not None and consumer.stream_id is not None:
            consumer.buffered_amount = self.association.buffered_amount(consumer.stream_id)
            self.association.set_buffered_amount_low_threshold(consumer.stream_id, threshold)
        if consumer.set_buffered_amount_low_threshold(threshold):
            self._events.append(("bufferedamountlow", consumer.id, consumer.buffered_amount))

    def data_consumer_stats(self, consumer: DataConsumerCore, now_ms: int) -> list[dict[str, Any]]:
        """``consumer.get_stats`` with ``bufferedAmount`` read from the association now."""
        if self.association is not None and consumer.stream_id is not None and not consumer.closed:
            consumer.buffered_amount = self.association.buffered_amount(consumer.stream_id)
        return consumer.get_stats(now_ms)

    def dump(self) -> dict[str, Any]:
        """The SCTP part of mediasoup's ``BaseTransportDump``: ``{sctpParameters, sctpState,
        sctpListener: {streamIdTable: [{key: streamId, value: dataProducerId}]},
        dataProducerIds, dataConsumerIds, maxMessageSize}``."""
        return {
            "sctpParameters": self.sctp_parameters,
            "sctpState": self.sctp_state,
            "sctpListener": {"streamIdTable": [{"key": sid, "value": p.id}
                                               for sid, p in sorted(self._producer_by_stream.items())]},
            "dataProducerIds": list(self.data_producers),
            "dataConsumerIds": list(self.data_consumers),
            "maxMessageSize": self.max_message_size,
        }

    # ------------------------------------------------------------------ internals
    def _announce_consumer(self, dc: DataConsumerCore, now_ms: int) -> None:
        assert self.association is not None
        if not dc.negotiated:
            opened = DataChannelOpen.from_sctp_stream_parameters(dc.sctp_stream_parameters, label=dc.label,
                                                                 protocol=dc.protocol)
            self.association.send(dc.stream_id, PPID_DCEP, opened.to_bytes(), now_ms=now_ms)

    def _reset(self, sid: int, now_ms: int | None) -> bool:
        assoc = self.association
        if assoc is None or assoc.state not in ("connected", "connecting"):
            return False
        try:
            assoc.reset_streams([sid], now_ms)
        except InvalidStateError:
            return False
        return True

    def _update_buffered(self, dc: DataConsumerCore) -> None:
        assert self.association is not None
        if dc.update_buffered_amount(self.association.buffered_amount(dc.stream_id)):
            self._events.append(("bufferedamountlow", dc.id, dc.buffered_amount))

    def _pull_events(self, now_ms: int | None) -> list[tuple[DataProducerCore, int, bytes]]:
        assoc = self.association
        assert assoc is not None
        routed: list[tuple[DataProducerCore, int, bytes]] = []
        for ev in assoc.drain_events():
            kind = ev[0]
            if kind == "message":
                _, sid, ppid, payload = ev
                if ppid == PPID_DCEP:
                    self._on_dcep(sid, payload, now_ms)
                    continue
                producer = self._producer_by_stream.get(sid)
                if producer is None:
                    consumer = self._consumer_by_stream.get(sid)
                    if consumer is not None and not consumer.acked:
                        consumer.acked = True  # implicit DCEP ACK
                    self._drop("no_data_producer")
                    continue
                if producer.receive_message(ppid, payload):
                    routed.append((producer, ppid, payload))
                else:
                    self._drop("data_producer_paused")
            elif kind == "state":
                self._events.append(("sctpstatechange", ev[1]))
            elif kind == "buffered_amount_low":
                dc = self._consumer_by_stream.get(ev[1])
                if dc is not None and dc.update_buffered_amount(ev[2]):
                    self._events.append(("bufferedamountlow", dc.id, ev[2]))
            elif kind == "incoming_streams_reset":
                for sid in ev[1]:
                    self._events.append(("streamreset", sid))
                    # close our direction too (RFC 8831 §6.7), unless already being reset
                    if sid not in self._releasing:
                        self._reset(sid, now_ms)
            elif kind in ("outgoing_streams_reset", "outgoing_streams_reset_failed"):
                for sid in ev[1]:
                    if sid in self._releasing:
                        self._releasing.discard(sid)
                        if sid not in self._consumer_by_stream:
                            self.stream_ids.release(sid)
        return routed

    def _on_dcep(self, sid: int, payload: bytes, now_ms: int | None) -> None:
        try:
            opened = parse_dcep(payload)
        except PacketParseError:
            self._drop("dcep_malformed")
            return
        if opened is None:  # DATA_CHANNEL_ACK for one of our in-band consumers
            dc = self._consumer_by_stream.get(sid)
            if dc is not None:
                dc.acked = True
            else:
                self._drop("dcep_unexpected_ack")
            return
        assoc = self.association
        assert assoc is not None
        try:
            assoc.send(sid, PPID_DCEP, encode_ack(), now_ms=now_ms if now_ms is not None else 0)
        except (InvalidStateError, ValueError):
            self._drop("dcep_ack_failed")
            return
        self._events.append(("dcepopen", sid, {"label": opened.label, "protocol": opened.protocol,
                                                "sctpStreamParameters": opened.to_sctp_stream_parameters(sid)}))
