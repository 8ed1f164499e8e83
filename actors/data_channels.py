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


# =============================================================================================
# Actor wiring: DataProducers / DataConsumers on the transports and the router (issue 7)
# =============================================================================================
#
# What the transports do (each in a delimited block of its own file):
# - ``Transport`` (actors/webrtc_transport.py) inherits :class:`TransportDataMixin`, calls
#   ``_init_data_channels(options)`` in its constructor, ``_sctp_on_timer(now_ms)`` at the end
#   of ``on_timer``, ``_close_data_channels(cause)`` in ``close`` and returns
#   :meth:`TransportDataMixin.sctp_describe` in ``describe``;
# - a transport with SCTP overrides ``_send_sctp_packets(packets)`` (WebRtc: DTLS application
#   data; Pipe/Plain: raw UDP) and feeds incoming SCTP packets to ``_sctp_receive``;
# - the router keeps ``data_producers`` / ``data_consumers`` and calls
#   :func:`close_data_producer` / :func:`close_data_consumer` (the close cascades).

import uuid as _uuid


def make_transport_data_channels(options: dict | None) -> TransportDataChannels | None:
    """A :class:`TransportDataChannels` for transport options with ``enableSctp`` (mediasoup
    ``numSctpStreams``, ``maxSctpMessageSize``, ``sctpSendBufferSize``), else None. Raises
    TypeError naming a bad field."""
    if not options:
        return None
    enable = options.get("enableSctp", False)
    if not isinstance(enable, bool):
        raise TypeError("enable_sctp must be a bool")
    if not enable:
        return None
    kwargs: dict[str, Any] = {"num_sctp_streams": options.get("numSctpStreams")}
    for key, name in (("maxSctpMessageSize", "max_sctp_message_size"), ("sctpSendBufferSize", "sctp_send_buffer_size")):
        if options.get(key) is not None:
            kwargs[name] = options[key]
    return TransportDataChannels(**kwargs)


def route_data_message(producer: DataProducerCore, ppid: int, payload: bytes, now_ms: int,
                       subchannels: Iterable[int] | None = None, required_subchannel: int | None = None) -> int:
    """Send one message of ``producer`` to all its DataConsumers (mediasoup
    ``Router::OnTransportDataProducerMessageReceived``); returns how many took it. SCTP packets
    are not flushed here: the transports touched are added to ``producer.dirty`` for
    :func:`flush_dirty`."""
    sent = 0
    for dc in producer.consumers:
        transport = dc.transport
        if transport.closed:
            continue
        if transport._deliver_data(dc, ppid, payload, subchannels, required_subchannel, now_ms):
            sent += 1
        if transport.sctp is not None:
            producer.dirty.add(transport)
    return sent


def flush_dirty(producer: DataProducerCore, now_ms: int) -> None:
    """Flush the SCTP output of the transports :func:`route_data_message` wrote to."""
    if producer.dirty:
        dirty, producer.dirty = producer.dirty, set()
        for transport in dirty:
            if not transport.closed:
                transport._sctp_flush(now_ms)


def close_data_producer(router: Any, producer: DataProducerCore, *, notify_self: bool = False, now_ms: int | None = None) -> None:
    """Close a DataProducer: its DataConsumers get ``dataproducerclose`` (mediasoup Router);
    ``notify_self`` sends ``transportclose`` to its own handle."""
    if producer.closed:
        return
    producer.closed = True
    producer.transport._remove_data_producer(producer, now_ms)
    router.data_producers.pop(producer.id, None)
    router.worker.objects.pop(producer.id, None)
    for dc in list(producer.consumers):
        dc.data_producer_closed = True
        close_data_consumer(router, dc, notify="dataproducerclose", now_ms=now_ms)
    if notify_self:
        router.worker.emit(producer.id, "transportclose", None)


def close_data_consumer(router: Any, consumer: DataConsumerCore, *, notify: str | None = None, now_ms: int | None = None) -> None:
    """Close a DataConsumer (its stream is reset); ``notify`` is the event its handle gets."""
    if consumer.closed and consumer.id not in router.data_consumers:
        return
    try:
        consumer.data_producer.consumers.remove(consumer)
    except ValueError:
        pass
    consumer.transport._remove_data_consumer(consumer, now_ms)
    consumer.closed = True
    router.data_consumers.pop(consumer.id, None)
    router.worker.objects.pop(consumer.id, None)
    if notify:
        router.worker.emit(consumer.id, notify, None)


def set_data_producer_paused(router: Any, producer: DataProducerCore, paused: bool) -> None:
    """``dataProducer.pause/resume``: its consumers get ``dataproducerpause|resume``."""
    if not (producer.pause() if paused else producer.resume()):
        return
    event = "dataproducerpause" if paused else "dataproducerresume"
    for dc in producer.consumers:
        if dc.set_data_producer_paused(paused):
            router.worker.emit(dc.id, event, None)


def router_data_dump(router: Any) -> dict[str, Any]:
    """The data part of mediasoup's ``RouterDump``."""
    return {
        "mapDataProducerIdDataConsumerIds": [{"key": p.id, "values": [c.id for c in p.consumers]}
                                             for p in router.data_producers.values()],
        "mapDataConsumerIdDataProducerId": [{"key": c.id, "value": c.data_producer_id}
                                            for c in router.data_consumers.values()],
    }


def _opt_int(data: dict, key: str) -> int | None:
    v = data.get(key)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
        raise TypeError(f"{key} must be an integer")
    return v


class TransportDataMixin:
    """DataProducers / DataConsumers of one in-actor transport (mediasoup ``Transport``
    ``produceData`` / ``consumeData`` and the SCTP plumbing). Mixed into ``Transport``; uses its
    ``router``, ``worker``, ``kind``, ``drops``, ``closed``, ``wake_timer``."""

    sctp: TransportDataChannels | None = None

    def _init_data_channels(self, options: dict | None) -> None:
        self.data_producers: dict[str, DataProducerCore] = {}
        self.data_consumers: dict[str, DataConsumerCore] = {}
        self.sctp = make_transport_data_channels(options)
        self.sctp_packets_received = self.sctp_packets_sent = 0

    # ------------------------------------------------------------------ produce / consume
    def produce_data(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``transport.produceData()``. ``data``: ``{id?, sctpStreamParameters
        (not on a DirectTransport), label?, protocol?, paused?}``. Returns the dump. Raises
        TypeError (bad field, SCTP not enabled), ValueError (id or streamId in use)."""
        self._check_open()
        producer_id = data.get("id") or str(_uuid.uuid4())
        if not isinstance(producer_id, str):
            raise TypeError("id must be a string")
        if producer_id in self.router.data_producers:
            raise ValueError(f"id: a data producer with id {producer_id!r} already exists")
        direct = self.kind == "direct"
        if not direct and self.sctp is None:
            raise TypeError("enable_sctp: SCTP is not enabled on this transport")
        params = None if direct else data.get("sctpStreamParameters")
        if not direct and params is None:
            raise TypeError("sctp_stream_parameters are required")
        producer = DataProducerCore(data_producer_id=producer_id, type="direct" if direct else "sctp",
                                    sctp_stream_parameters=params, label=data.get("label") or "",
                                    protocol=data.get("protocol") or "", paused=bool(data.get("paused", False)))
        if self.sctp is not None:
            self.sctp.add_data_producer(producer)
        producer.transport = self
        producer.consumers = []
        producer.dirty = set()
        self.data_producers[producer.id] = producer
        self.router.data_producers[producer.id] = producer
        self.worker.objects[producer.id] = producer
        return producer.dump()

    def consume_data(self, data: dict, now_ms: int) -> dict:
        """mediasoup ``transport.consumeData()``. ``data``: ``{dataProducerId, ordered?,
        maxPacketLifeTime?, maxRetransmits?, paused?, subchannels?}``. Returns the dump. Raises
        TypeError (bad field, SCTP not enabled), ValueError (unknown data producer),
        RuntimeError (no free stream id)."""
        self._check_open()
        dp_id = data.get("dataProducerId")
        if not isinstance(dp_id, str) or not dp_id:
            raise TypeError("data_producer_id must be a non-empty string")
        producer = self.router.data_producers.get(dp_id)
        if producer is None:
            raise ValueError(f"data_producer_id: no data producer with id {dp_id!r} in this router")
        paused = data.get("paused", False)
        if not isinstance(paused, bool):
            raise TypeError("paused must be a boolean")
        consumer_id = str(_uuid.uuid4())
        if self.kind == "direct":
            consumer = DataConsumerCore(data_consumer_id=consumer_id, data_producer=producer, type="direct",
                                        sctp_stream_parameters=None, paused=paused, subchannels=data.get("subchannels"),
                                        max_message_size=getattr(self, "max_message_size", 262144) or 262144)
        else:
            if self.sctp is None:
                raise TypeError("enable_sctp: SCTP is not enabled on this transport")
            ordered = data.get("ordered")
            if ordered is not None and not isinstance(ordered, bool):
                raise TypeError("ordered must be a boolean")
            consumer = self.sctp.add_data_consumer(
                data_consumer_id=consumer_id, data_producer=producer, ordered=ordered,
                max_packet_life_time=_opt_int(data, "maxPacketLifeTime"),
                max_retransmits=_opt_int(data, "maxRetransmits"), paused=paused,
                subchannels=data.get("subchannels"), now_ms=now_ms)
        consumer.transport = self
        consumer.data_producer = producer
        producer.consumers.append(consumer)
        self.data_consumers[consumer.id] = consumer
        self.router.data_consumers[consumer.id] = consumer
        self.worker.objects[consumer.id] = consumer
        if self.sctp is not None:
            self._sctp_flush(now_ms)
        return consumer.dump()

    def _remove_data_producer(self, producer: DataProducerCore, now_ms: int | None) -> None:
        self.data_producers.pop(producer.id, None)
        if self.sctp is not None and producer.type == "sctp":
            self.sctp.remove_data_producer(producer, now_ms)
            self._sctp_flush_quietly(now_ms)

    def _remove_data_consumer(self, consumer: DataConsumerCore, now_ms: int | None) -> None:
        self.data_consumers.pop(consumer.id, None)
        if self.sctp is not None and consumer.type == "sctp":
            self.sctp.remove_data_consumer(consumer, now_ms)
            self._sctp_flush_quietly(now_ms)
        consumer.closed = True

    # ------------------------------------------------------------------ message path
    def _deliver_data(self, consumer: DataConsumerCore, ppid: int, payload: bytes, subchannels, required_subchannel,
                      now_ms: int) -> bool:
        """One message to one of our DataConsumers: SCTP to the remote, or (direct) the
        ``message`` event / the in-actor handler's ``on_data_message(data_consumer_id, payload,
        ppid)``."""
        if consumer.type == "sctp":
            sctp = self.sctp
            return sctp is not None and sctp.send(consumer, ppid, payload, subchannels=subchannels,
                                                  required_subchannel=required_subchannel, now_ms=now_ms)
        if not consumer.accept(ppid, payload, subchannels, required_subchannel):
            return False
        handler = getattr(self, "handler", None)
        if handler is not None and hasattr(handler, "on_data_message"):
            self._call_hook("on_data_message", consumer.id, payload, ppid)
        else:
            self.worker.emit(consumer.id, "message", (payload, ppid))
        return True

    def producer_send_data(self, producer: DataProducerCore, messages: list, now_ms: int) -> int:
        """``dataProducer.send()`` of a direct DataProducer, batched by the driver:
        ``messages`` = ``[(payload bytes, ppid, subchannels | None, requiredSubchannel | None)]``.
        Returns how many consumer deliveries were made."""
        self._check_open()
        if producer.type != "direct":
            raise InvalidStateError("send(): only a DataProducer of a DirectTransport sends from Python")
        n = 0
        for payload, ppid, subchannels, required in messages:
            if producer.receive_message(ppid, payload):
                n += route_data_message(producer, ppid, bytes(payload), now_ms, subchannels, required)
        flush_dirty(producer, now_ms)
        return n

    def data_consumer_send(self, consumer: DataConsumerCore, payload: bytes, ppid: int, now_ms: int) -> bool:
        """``dataConsumer.send(message, ppid)``: a message from Python to the consumer's remote
        endpoint (SCTP DataConsumers only, as mediasoup)."""
        self._check_open()
        if consumer.type != "sctp" or self.sctp is None:
            raise InvalidStateError("send(): only an SCTP DataConsumer sends to its endpoint")
        ok = self.sctp.send(consumer, ppid, payload, now_ms=now_ms)
        self._sctp_flush(now_ms)
        return ok

    # ------------------------------------------------------------------ SCTP plumbing
    def _send_sctp_packets(self, packets: list[bytes]) -> None:  # pragma: no cover - overridden
        self.drops["sctp_no_path"] += len(packets)

    def _sctp_start(self, is_client: bool, now_ms: int, initiate: bool | None = None) -> None:
        """Create and start the association (DTLS connected, or a pipe/plain transport
        connected)."""
        if self.sctp is not None and self.sctp.association is None and not self.closed:
            self.sctp.start(is_dtls_client=is_client, now_ms=now_ms, initiate=initiate)
            self._sctp_flush(now_ms)

    def _sctp_receive(self, packet: bytes, now_ms: int) -> None:
        """One incoming SCTP packet: route the messages it completes, then flush."""
        sctp = self.sctp
        if sctp is None:
            self.drops["sctp_not_enabled"] += 1
            return
        self.sctp_packets_received += 1
        routed = sctp.receive(packet, now_ms)
        if routed:
            self._route(routed, now_ms)
        self._sctp_flush(now_ms)

    def _route(self, routed: list, now_ms: int) -> None:
        producers = set()
        for producer, ppid, payload in routed:
            route_data_message(producer, ppid, payload, now_ms)
            producers.add(producer)
        for producer in producers:
            flush_dirty(producer, now_ms)

    def _sctp_flush(self, now_ms: int | None = None) -> None:
        """Send what the association built, turn its events into notifications, plan the timer."""
        sctp = self.sctp
        if sctp is None:
            return
        packets = sctp.datagrams_to_send()
        if packets:
            self.sctp_packets_sent += len(packets)
            self._send_sctp_packets(packets)
        emit = self.worker.emit
        for ev in sctp.drain_events():
            kind = ev[0]
            if kind == "sctpstatechange":
                emit(self.id, "sctpstatechange", ev[1])
            elif kind == "bufferedamountlow":
                emit(ev[1], "bufferedamountlow", ev[2])
            elif kind == "sctpsendbufferfull":
                emit(ev[1], "sctpsendbufferfull", None)
            else:  # dcepopen / streamreset: counted (no DataProducer is made for in-band channels)
                self.drops["sctp_" + kind] += 1
        self.wake_timer(sctp.next_timer_ms())

    def _sctp_flush_quietly(self, now_ms: int | None) -> None:
        try:
            self._sctp_flush(now_ms)
        except Exception:
            self.drops["sctp_flush_error"] += 1

    def _sctp_on_timer(self, now_ms: int) -> None:
        """From ``on_timer``: run the association's due timers."""
        sctp = self.sctp
        if sctp is None or sctp.association is None:
            return
        t = sctp.next_timer_ms()
        if t is not None and t <= now_ms:
            routed = sctp.handle_timer(now_ms)
            if routed:
                self._route(routed, now_ms)
            self._sctp_flush(now_ms)
        else:
            self.wake_timer(t)

    def _close_data_channels(self, cause: str) -> None:
        """From ``close``: the data producers (their consumers elsewhere get
        ``dataproducerclose``) and consumers, then ABORT the association."""
        router = self.router
        notify = cause != "user"
        for producer in list(self.data_producers.values()):
            close_data_producer(router, producer, notify_self=notify)
        for consumer in list(self.data_consumers.values()):
            close_data_consumer(router, consumer, notify="transportclose" if notify else None)
        if self.sctp is not None:
            self.sctp.close()
            self._sctp_flush_quietly(None)

    # ------------------------------------------------------------------ info
    def sctp_describe(self) -> dict[str, Any]:
        """``{sctpParameters, sctpState}`` (both None without SCTP)."""
        if self.sctp is None:
            return {"sctpParameters": None, "sctpState": None}
        return {"sctpParameters": self.sctp.sctp_parameters, "sctpState": self.sctp.sctp_state}

    def data_dump(self) -> dict[str, Any]:
        """The data fields of mediasoup's ``BaseTransportDump``."""
        out: dict[str, Any] = {"dataProducerIds": list(self.data_producers),
                               "dataConsumerIds": list(self.data_consumers)}
        if self.sctp is not None:
            d = self.sctp.dump()
            out.update(sctpParameters=d["sctpParameters"], sctpState=d["sctpState"],
                       sctpListener=d["sctpListener"], maxMessageSize=d["maxMessageSize"])
            if self.sctp.association is not None:
                out["sctpAssociation"] = self.sctp.association.info()
        return out
