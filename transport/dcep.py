"""WebRTC data channels over an SCTP association: DCEP (RFC 8832) and message PPIDs (RFC 8831).

Two ways to open a channel on a stream id, both supported here:

- **negotiated** (out of band): both sides agree on the stream id and its options beforehand.
  This is what mediasoup-client does for every DataProducer and DataConsumer
  (``createDataChannel(label, {negotiated: true, id: streamId, ...})`` in its browser
  handlers), with the ids and options carried in ``sctpStreamParameters``;
- **DCEP** (in band): the opener sends DATA_CHANNEL_OPEN (PPID 50) on a stream id of its parity
  (RFC 8832 §6: the DTLS client uses even ids, the DTLS server odd ones) and the peer answers
  DATA_CHANNEL_ACK. The opener may send at once, but ordered until the ACK (or any message from
  the peer on that stream, an implicit ACK) arrives.

A channel closes with an SCTP outgoing stream reset (RFC 8831 §6.7); when the peer resets its
side, we reset ours, and the channel is closed once both directions are reset.

PPIDs (RFC 8831 §8, RFC 8832 §8): 50 DCEP, 51 string, 53 binary, 56 empty string, 57 empty binary
(empty messages carry one byte, SCTP has no empty DATA), 52/54 the deprecated partial
binary/string (delivered as binary/string).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidStateError, PacketParseError
from .sctp import SctpAssociation

__all__ = [
    "DATA_CHANNEL_ACK",
    "DATA_CHANNEL_OPEN",
    "PPID_BINARY",
    "PPID_BINARY_EMPTY",
    "PPID_BINARY_PARTIAL",
    "PPID_DCEP",
    "PPID_STRING",
    "PPID_STRING_EMPTY",
    "PPID_STRING_PARTIAL",
    "DataChannelEndpoint",
    "DataChannelOpen",
    "decode_message",
    "encode_ack",
    "encode_message",
    "parse_dcep",
]

PPID_DCEP = 50
PPID_STRING = 51
PPID_BINARY_PARTIAL = 52
PPID_BINARY = 53
PPID_STRING_PARTIAL = 54
PPID_STRING_EMPTY = 56
PPID_BINARY_EMPTY = 57
_STRING_PPIDS = frozenset((PPID_STRING, PPID_STRING_PARTIAL, PPID_STRING_EMPTY))

DATA_CHANNEL_ACK = 0x02
DATA_CHANNEL_OPEN = 0x03

# Channel types (RFC 8832 §5.1): low bits = reliability, 0x80 = unordered
CHANNEL_RELIABLE = 0x00
CHANNEL_PARTIAL_RELIABLE_REXMIT = 0x01
CHANNEL_PARTIAL_RELIABLE_TIMED = 0x02
_UNORDERED = 0x80

#: W3C priorities mapped to DCEP values (RFC 8831 §6.4 / W3C WebRTC priority): "low" is the default
PRIORITY_VERY_LOW, PRIORITY_LOW, PRIORITY_MEDIUM, PRIORITY_HIGH = 128, 256, 512, 1024

_OPEN = struct.Struct("!BBHIHH")  # type, channel type, priority, reliability, label len, protocol len
_ACK = bytes((DATA_CHANNEL_ACK,))


@dataclass(frozen=True)
class DataChannelOpen:
    """A DATA_CHANNEL_OPEN message (RFC 8832 §5.1).

    ``max_retransmits`` / ``max_packet_life_time`` (ms) are mutually exclusive (None = reliable);
    ``priority`` is the DCEP priority (256 = "low", the W3C default).
    """

    label: str = ""
    protocol: str = ""
    ordered: bool = True
    max_retransmits: int | None = None
    max_packet_life_time: int | None = None
    priority: int = PRIORITY_LOW

    def __post_init__(self) -> None:
        if self.max_retransmits is not None and self.max_packet_life_time is not None:
            raise ValueError("max_retransmits, max_packet_life_time: give at most one")
        for name in ("max_retransmits", "max_packet_life_time"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF):
                raise ValueError(f"{name}: must be an int in [0, 2**32)")
        if not isinstance(self.priority, int) or not 0 <= self.priority <= 0xFFFF:
            raise ValueError("priority: must be an int in [0, 65535]")
        if not isinstance(self.label, str) or not isinstance(self.protocol, str):
            raise TypeError("label, protocol: must be str")

    @property
    def channel_type(self) -> int:
        """DCEP channel type byte."""
        if self.max_retransmits is not None:
            t = CHANNEL_PARTIAL_RELIABLE_REXMIT
        elif self.max_packet_life_time is not None:
            t = CHANNEL_PARTIAL_RELIABLE_TIMED
        else:
            t = CHANNEL_RELIABLE
        return t | (0 if self.ordered else _UNORDERED)

    @property
    def reliability_parameter(self) -> int:
        """Retransmissions or lifetime (ms) for partially reliable types, else 0."""
        if self.max_retransmits is not None:
            return self.max_retransmits
        if self.max_packet_life_time is not None:
            return self.max_packet_life_time
        return 0

    def to_bytes(self) -> bytes:
        """Serialize (label and protocol UTF-8)."""
        label = self.label.encode("utf-8")
        protocol = self.protocol.encode("utf-8")
        if len(label) > 0xFFFF or len(protocol) > 0xFFFF:
            raise ValueError("label, protocol: at most 65535 bytes of UTF-8")
        return _OPEN.pack(DATA_CHANNEL_OPEN, self.channel_type, self.priority,
                          self.reliability_parameter, len(label), len(protocol)) + label + protocol

    @classmethod
    def parse(cls, data: bytes) -> DataChannelOpen:
        """Parse a DATA_CHANNEL_OPEN. Raises PacketParseError("dcep", ...) if malformed
        (short, lengths past the end, unknown channel type, invalid UTF-8)."""
        if len(data) < _OPEN.size or data[0] != DATA_CHANNEL_OPEN:
            raise PacketParseError("dcep", "not a DATA_CHANNEL_OPEN")
        _, ctype, priority, reliability, label_len, protocol_len = _OPEN.unpack_from(data)
        if _OPEN.size + label_len + protocol_len > len(data):
            raise PacketParseError("dcep", "label/protocol lengths past the end")
        kind = ctype & 0x7F
        if kind not in (CHANNEL_RELIABLE, CHANNEL_PARTIAL_RELIABLE_REXMIT, CHANNEL_PARTIAL_RELIABLE_TIMED):
            raise PacketParseError("dcep", f"unknown channel type 0x{ctype:02x}")
        try:
            label = bytes(data[_OPEN.size:_OPEN.size + label_len]).decode("utf-8")
            protocol = bytes(data[_OPEN.size + label_len:_OPEN.size + label_len + protocol_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise PacketParseError("dcep", "label/protocol not UTF-8") from None
        return cls(label=label, protocol=protocol, ordered=not ctype & _UNORDERED,
                   max_retransmits=reliability if kind == CHANNEL_PARTIAL_RELIABLE_REXMIT else None,
                   max_packet_life_time=reliability if kind == CHANNEL_PARTIAL_RELIABLE_TIMED else None,
                   priority=priority)

    def to_sctp_stream_parameters(self, stream_id: int) -> dict[str, Any]:
        """mediasoup ``SctpStreamParameters``: ``{streamId, ordered, maxPacketLifeTime?,
        maxRetransmits?}``."""
        params: dict[str, Any] = {"streamId": stream_id, "ordered": self.ordered}
        if self.max_packet_life_time is not None:
            params["maxPacketLifeTime"] = self.max_packet_life_time
        if self.max_retransmits is not None:
            params["maxRetransmits"] = self.max_retransmits
        return params

    @classmethod
    def from_sctp_stream_parameters(cls, params: dict[str, Any], *, label: str = "",
                                    protocol: str = "", priority: int = PRIORITY_LOW) -> DataChannelOpen:
        """Build from mediasoup ``SctpStreamParameters`` (``ordered`` defaults to True)."""
        return cls(label=label, protocol=protocol, ordered=params.get("ordered", True) is not False,
                   max_retransmits=params.get("maxRetransmits"),
                   max_packet_life_time=params.get("maxPacketLifeTime"), priority=priority)


def encode_ack() -> bytes:
    """A DATA_CHANNEL_ACK message (RFC 8832 §5.2)."""
    return _ACK


def parse_dcep(data: bytes) -> DataChannelOpen | None:
    """Parse a PPID-50 message: a :class:`DataChannelOpen`, or None for DATA_CHANNEL_ACK.
    Raises PacketParseError for anything else."""
    if not data:
        raise PacketParseError("dcep", "empty message")
    if data[0] == DATA_CHANNEL_ACK:
        return None
    return DataChannelOpen.parse(data)


def encode_message(message: str | bytes | bytearray | memoryview, ppid: int | None = None) -> tuple[int, bytes]:
    """``(ppid, payload)`` for a user message, as mediasoup's ``DataProducer.send`` does: str →
    51 (56 if empty), bytes → 53 (57 if empty); PPID 56 / 57 carry one byte (" " / NUL) since SCTP
    has no empty DATA chunk. Raises TypeError for another type, ValueError for a bad ppid."""
    if isinstance(message, str):
        payload = message.encode("utf-8")
        default = PPID_STRING if payload else PPID_STRING_EMPTY
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        default = PPID_BINARY if payload else PPID_BINARY_EMPTY
    else:
        raise TypeError("message: must be str or bytes")
    if ppid is None:
        ppid = default
    elif not isinstance(ppid, int) or not 0 <= ppid <= 0xFFFFFFFF:
        raise ValueError("ppid: must be a 32-bit unsigned int")
    if ppid == PPID_STRING_EMPTY:
        payload = b" "
    elif ppid == PPID_BINARY_EMPTY:
        payload = b"\x00"
    elif not payload:
        raise ValueError("message: empty; use PPID 56 (string) or 57 (binary)")
    return ppid, payload


def decode_message(ppid: int, payload: bytes) -> str | bytes:
    """The user message for a received ``(ppid, payload)``: str for 51/54/56, bytes otherwise
    (56 → "", 57 → b""). Invalid UTF-8 is replaced (U+FFFD), as browsers do."""
    if ppid == PPID_STRING_EMPTY:
        return ""
    if ppid == PPID_BINARY_EMPTY:
        return b""
    if ppid in _STRING_PPIDS:
        return payload.decode("utf-8", errors="replace")
    return payload


class _Channel:
    __slots__ = ("acked", "in_reset", "negotiated", "open_sent", "out_reset", "params", "state", "stream_id")

    def __init__(self, stream_id: int, params: DataChannelOpen, negotiated: bool) -> None:
        self.stream_id = stream_id
        self.params = params
        self.negotiated = negotiated
        self.acked = negotiated
        self.state = "connecting"
        self.out_reset = False
        self.in_reset = False
        self.open_sent = False


class DataChannelEndpoint:
    """Data channels over one :class:`~raysfu.transport.sctp.SctpAssociation` (sans-I/O).

    ``is_dtls_client`` (default ``association.is_client``) decides the parity of stream ids we
    pick for DCEP channels. Feed every association event through :meth:`process_events`; it
    returns channel events (tuples):

    - ``("open", stream_id)``: our channel can carry messages (negotiated: association up;
      DCEP: OPEN sent);
    - ``("datachannel", stream_id, DataChannelOpen)``: the peer opened a channel with DCEP (the
      ACK is already queued);
    - ``("message", stream_id, ppid, payload: bytes)``: a user message (PPID != 50), also on
      stream ids with no channel here (the caller decides: an SFU routes by stream id);
    - ``("closing", stream_id)`` (the peer reset its side) and ``("closed", stream_id)`` (both
      sides reset; the id may be reused);
    - ``("dcep_error", stream_id, reason)``: a malformed DCEP message, dropped;
    - association events ``("state", s)``, ``("buffered_amount_low", stream_id, n)`` and
      ``("error", cause)`` are passed through.
    """

    def __init__(self, association: SctpAssociation, *, is_dtls_client: bool | None = None) -> None:
        self.association = association
        self.is_dtls_client = association.is_client if is_dtls_client is None else is_dtls_client
        self.channels: dict[int, _Channel] = {}
        self._events: list[tuple] = []
        self._connected = association.state == "connected"

    # -------------------------------------------------------------------------- API
    def create_channel(self, label: str = "", *, protocol: str = "", ordered: bool = True,
                       max_retransmits: int | None = None, max_packet_life_time: int | None = None,
                       priority: int = PRIORITY_LOW, negotiated: bool = False,
                       stream_id: int | None = None, now_ms: int) -> int:
        """Open a channel and return its stream id.

        ``negotiated=True`` needs ``stream_id`` (agreed out of band, as mediasoup-client does);
        otherwise a free id of our parity is picked unless given, and DATA_CHANNEL_OPEN is sent.
        Raises ValueError (id in use / out of range / none free), TypeError for bad options.
        """
        params = DataChannelOpen(label=label, protocol=protocol, ordered=ordered,
                                 max_retransmits=max_retransmits,
                                 max_packet_life_time=max_packet_life_time, priority=priority)
        limit = self.association.outbound_streams
        if stream_id is None:
            if negotiated:
                raise ValueError("stream_id: required for a negotiated channel")
            stream_id = 0 if self.is_dtls_client else 1
            while stream_id in self.channels:
                stream_id += 2
        if not isinstance(stream_id, int) or not 0 <= stream_id < min(limit, 65535):
            raise ValueError(f"stream_id: must be in [0, {min(limit, 65535) - 1}], got {stream_id!r}")
        if stream_id in self.channels:
            raise ValueError(f"stream_id: {stream_id} is in use")
        ch = _Channel(stream_id, params, negotiated)
        self.channels[stream_id] = ch
        if not negotiated:
            # the OPEN goes reliable and ordered (RFC 8832 §6); queued until the association is up
            self.association.send(stream_id, PPID_DCEP, params.to_bytes(), now_ms=now_ms)
            ch.open_sent = True
        if self._connected:
            ch.state = "open"
            self._events.append(("open", stream_id))
        return stream_id

    def send(self, stream_id: int, message: str | bytes, *, ppid: int | None = None, now_ms: int) -> bool:
        """Send one message on an open channel (PPID from :func:`encode_message`). Returns False
        when the association's send buffer is full. Raises InvalidStateError if the channel is
        unknown or closing."""
        ch = self.channels.get(stream_id)
        if ch is None or ch.state not in ("open", "connecting"):
            raise InvalidStateError(f"data channel {stream_id} is not open")
        ppid, payload = encode_message(message, ppid)
        return self.send_raw(stream_id, ppid, payload, now_ms=now_ms)

    def send_raw(self, stream_id: int, ppid: int, payload: bytes, *, now_ms: int) -> bool:
        """Send ``payload`` with ``ppid`` using the channel's reliability options (ordered and
        reliable until a DCEP channel is acknowledged)."""
        ch = self.channels.get(stream_id)
        if ch is None:
            raise InvalidStateError(f"data channel {stream_id} is not open")
        p = ch.params
        if not ch.acked:
            return self.association.send(stream_id, ppid, payload, now_ms=now_ms)
        return self.association.send(stream_id, ppid, payload, ordered=p.ordered,
                                     max_retransmits=p.max_retransmits,
                                     max_packet_life_time_ms=p.max_packet_life_time, now_ms=now_ms)

    def close_channel(self, stream_id: int, now_ms: int | None = None) -> None:
        """Close a channel: reset our outgoing stream (queued messages go first). The
        ``("closed", id)`` event follows once the peer resets its side too."""
        ch = self.channels.get(stream_id)
        if ch is None or ch.state in ("closing", "closed"):
            return
        ch.state = "closing"
        if self.association.state in ("connected", "connecting"):
            self.association.reset_streams([stream_id], now_ms)
        else:
            self._closed(ch)

    def channel_info(self, stream_id: int) -> dict[str, Any] | None:
        """``{streamId, label, protocol, ordered, maxRetransmits, maxPacketLifeTime, negotiated,
        state}`` or None."""
        ch = self.channels.get(stream_id)
        if ch is None:
            return None
        p = ch.params
        return {"streamId": stream_id, "label": p.label, "protocol": p.protocol, "ordered": p.ordered,
                "maxRetransmits": p.max_retransmits, "maxPacketLifeTime": p.max_packet_life_time,
                "negotiated": ch.negotiated, "state": ch.state}

    def process_events(self, events: Iterable[tuple], now_ms: int) -> list[tuple]:
        """Turn association events into channel events (see the class docstring)."""
        out = self._events
        self._events = []
        for ev in events:
            kind = ev[0]
            if kind == "message":
                _, sid, ppid, payload = ev
                ch = self.channels.get(sid)
                if ppid == PPID_DCEP:
                    self._on_dcep(sid, payload, now_ms, out)
                    continue
                if ch is not None and not ch.acked:
                    ch.acked = True  # any message from the peer is an implicit ACK
                out.append(ev)
            elif kind == "state":
                out.append(ev)
                if ev[1] == "connected" and not self._connected:
                    self._connected = True
                    for ch in self.channels.values():
                        if ch.state == "connecting":
                            ch.state = "open"
                            out.append(("open", ch.stream_id))
                elif ev[1] in ("closed", "failed"):
                    self._connected = False
                    for ch in list(self.channels.values()):
                        self._closed(ch, out)
            elif kind == "incoming_streams_reset":
                for sid in ev[1]:
                    ch = self.channels.get(sid)
                    if ch is None:
                        continue
                    ch.in_reset = True
                    if ch.state != "closing":
                        ch.state = "closing"
                        out.append(("closing", sid))
                        self.association.reset_streams([sid], now_ms)  # RFC 8831 §6.7
                    if ch.out_reset:
                        self._closed(ch, out)
            elif kind == "outgoing_streams_reset":
                for sid in ev[1]:
                    ch = self.channels.get(sid)
                    if ch is None:
                        continue
                    ch.out_reset = True
                    if ch.in_reset:
                        self._closed(ch, out)
            elif kind == "outgoing_streams_reset_failed":
                for sid in ev[1]:
                    ch = self.channels.get(sid)
                    if ch is not None:
                        self._closed(ch, out)
            else:
                out.append(ev)
        return out

    # -------------------------------------------------------------------------- internals
    def _on_dcep(self, sid: int, payload: bytes, now_ms: int, out: list) -> None:
        try:
            opened = parse_dcep(payload)
        except PacketParseError as exc:
            out.append(("dcep_error", sid, exc.reason))
            return
        ch = self.channels.get(sid)
        if opened is None:  # ACK
            if ch is not None:
                ch.acked = True
            else:
                out.append(("dcep_error", sid, "ACK for an unknown channel"))
            return
        if ch is not None:
            out.append(("dcep_error", sid, "OPEN on a stream id in use"))
            return
        ch = _Channel(sid, opened, False)
        ch.acked = True  # the responder may use the channel's options at once
        ch.state = "open"
        self.channels[sid] = ch
        self.association.send(sid, PPID_DCEP, _ACK, now_ms=now_ms)
        out.append(("datachannel", sid, opened))

    def _closed(self, ch: _Channel, out: list | None = None) -> None:
        if self.channels.get(ch.stream_id) is ch:
            del self.channels[ch.stream_id]
        if ch.state != "closed":
            ch.state = "closed"
            (self._events if out is None else out).append(("closed", ch.stream_id))
