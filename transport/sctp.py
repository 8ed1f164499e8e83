"""SCTP association for WebRTC data channels, sans-I/O.

The subset of SCTP that WebRTC uses (RFC 8831 §5, RFC 8261: one association over DTLS, no
multi-homing, port 5000 on both sides), written from the RFCs:

- RFC 9260: INIT / INIT ACK (HMAC-signed state cookie) / COOKIE ECHO / COOKIE ACK, with INIT
  collisions (§5.2.1, §5.2.4) since both WebRTC peers usually initiate; DATA with fragmentation
  and reassembly, ordered delivery by SSN and unordered delivery; SACK with gap blocks and
  duplicate TSNs, delayed acknowledgement (every second packet or ``delayed_ack_ms``);
  HEARTBEAT / HEARTBEAT ACK; ABORT; the SHUTDOWN family; ERROR; CRC32c checksum; congestion
  control (§7: cwnd, ssthresh, slow start, congestion avoidance, fast retransmit and fast
  recovery after three miss indications with the HTNA rule, Max.Burst); T1-init, T2-shutdown
  and T3-rtx timers with the RTO computed from RTT measurements (§6.3, Karn's rule); the
  receiver window (a_rwnd) on both sides.
- RFC 3758: partial reliability (FORWARD TSN) for ``max_retransmits`` / ``max_packet_life_time_ms``.
- RFC 6525: RE-CONFIG, outgoing SSN reset requests and responses (how a data channel closes,
  RFC 8831 §6.7), deferred resets, "add outgoing streams" accepted.

Not implemented: I-DATA (RFC 8260; never negotiated, as we do not advertise it), the zero
checksum extension (RFC 9653), association restart, multi-homing, PMTU discovery (the packet
size is fixed, ``max_packet_size``).

Usage (the transport actor owns the clock and the DTLS session)::

    assoc = SctpAssociation(is_client=dtls_role == "client", os=1024, mis=1024)
    assoc.start(now_ms)                                # once DTLS is connected
    assoc.receive(dtls_application_data, now_ms)       # every DTLS application_data record
    for packet in assoc.datagrams_to_send():           # after every call above / below
        dtls.send_application_data(packet)
    for event in assoc.drain_events(): ...
    assoc.send(stream_id, ppid, data, ordered=True, now_ms=now_ms)
    when = assoc.next_timer_ms(); ...; assoc.handle_timer(now_ms)

Outputs are pulled: ``send``/``receive``/``handle_timer`` only change state; the packets are built
(and several messages bundled into one packet) when :meth:`SctpAssociation.datagrams_to_send` is
called, so pull in this order: ``datagrams_to_send()``, ``drain_events()``, ``next_timer_ms()``.

Events from :meth:`SctpAssociation.drain_events` (tuples):

- ``("state", s)``: the mediasoup ``sctpState``, s in "connecting", "connected", "failed", "closed";
- ``("message", stream_id, ppid, data: bytes)``: a whole user message;
- ``("incoming_streams_reset", (stream_id, ...))``: the peer reset its outgoing streams (it closed
  those data channels); their SSNs restart at 0;
- ``("outgoing_streams_reset", (stream_id, ...))``: our :meth:`SctpAssociation.reset_streams`
  request was performed by the peer;
- ``("outgoing_streams_reset_failed", (stream_id, ...), result)``: the peer refused it (RFC 6525
  §4.4 result code);
- ``("buffered_amount_low", stream_id, buffered_bytes)``: the stream's queued bytes fell to or
  below its threshold (:meth:`SctpAssociation.set_buffered_amount_low_threshold`, default 0);
- ``("error", cause_code)``: the peer sent an ERROR chunk (RFC 9260 §3.3.10 cause code).

Malformed packets never raise out of :meth:`SctpAssociation.receive`: they are dropped and
counted in :attr:`SctpAssociation.stats` (``dropped_*`` keys).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import struct
from collections import deque
from typing import Any

from .errors import InvalidStateError, PacketParseError

try:  # google-crc32c is an aiortc dependency: C implementation of CRC32c
    from google_crc32c import extend as _crc_extend
    from google_crc32c import value as _crc_value
except ImportError:  # pragma: no cover - exercised through crc32c_py in tests
    _crc_extend = _crc_value = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "SCTP_PORT",
    "SctpAssociation",
    "crc32c",
    "crc32c_py",
    "looks_like_sctp",
]

SCTP_PORT = 5000
#: SCTP packet size: 1280 (IPv6 minimum MTU) - 40 (IPv6) - 8 (UDP) - ~37 (DTLS 1.2 AES-GCM
#: record) rounded down to a multiple of 4, as aiortc and libwebrtc do.
DEFAULT_MAX_PACKET_SIZE = 1188

# Chunk types (RFC 9260 §3.2, RFC 6525 §3.1, RFC 3758 §3.2)
DATA, INIT, INIT_ACK, SACK, HEARTBEAT, HEARTBEAT_ACK, ABORT = 0, 1, 2, 3, 4, 5, 6
SHUTDOWN, SHUTDOWN_ACK, ERROR, COOKIE_ECHO, COOKIE_ACK = 7, 8, 9, 10, 11
SHUTDOWN_COMPLETE, RE_CONFIG, FORWARD_TSN = 14, 130, 192

# Parameter types
_P_HEARTBEAT_INFO = 1
_P_STATE_COOKIE = 7
_P_OUTGOING_SSN_RESET = 13
_P_INCOMING_SSN_RESET = 14
_P_SSN_TSN_RESET = 15
_P_RECONFIG_RESPONSE = 16
_P_ADD_OUTGOING_STREAMS = 17
_P_ADD_INCOMING_STREAMS = 18
_P_SUPPORTED_EXTENSIONS = 0x8008
_P_FORWARD_TSN_SUPPORTED = 0xC000

# Error causes (RFC 9260 §3.3.10)
CAUSE_INVALID_STREAM = 1
CAUSE_STALE_COOKIE = 3
CAUSE_UNRECOGNIZED_CHUNK = 6
CAUSE_NO_USER_DATA = 9
CAUSE_USER_ABORT = 12
CAUSE_PROTOCOL_VIOLATION = 13

# RE-CONFIG results (RFC 6525 §4.4)
RESULT_SUCCESS_NOTHING = 0
RESULT_SUCCESS_PERFORMED = 1
RESULT_DENIED = 2
RESULT_BAD_SEQUENCE = 5
RESULT_IN_PROGRESS = 6

# DATA chunk flags
_FLAG_E, _FLAG_B, _FLAG_U, _FLAG_I = 1, 2, 4, 8

# Association states (RFC 9260 §4)
CLOSED, COOKIE_WAIT, COOKIE_ECHOED, ESTABLISHED = 0, 1, 2, 3
SHUTDOWN_PENDING, SHUTDOWN_SENT, SHUTDOWN_RECEIVED, SHUTDOWN_ACK_SENT = 4, 5, 6, 7
_STATE_NAMES = ("CLOSED", "COOKIE-WAIT", "COOKIE-ECHOED", "ESTABLISHED", "SHUTDOWN-PENDING",
                "SHUTDOWN-SENT", "SHUTDOWN-RECEIVED", "SHUTDOWN-ACK-SENT")
_RECEIVING = frozenset((ESTABLISHED, SHUTDOWN_PENDING, SHUTDOWN_SENT))
_SENDING = frozenset((ESTABLISHED, SHUTDOWN_PENDING, SHUTDOWN_RECEIVED))
_LIVE = frozenset((ESTABLISHED, SHUTDOWN_PENDING, SHUTDOWN_SENT, SHUTDOWN_RECEIVED, SHUTDOWN_ACK_SENT))

_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_COOKIE_LIFETIME_MS = 60_000
_MAX_DUPS_REPORTED = 16
_MAX_GAP_TSNS = 65535  # gap block offsets are 16-bit

_COMMON = struct.Struct("!HHI")        # source port, destination port, verification tag
_CRC = struct.Struct("<I")             # the checksum is stored little-endian (RFC 9260 App. B)
_CHUNK = struct.Struct("!BBH")         # type, flags, length
_DATA_HDR = struct.Struct("!BBHIHHI")  # + TSN, stream id, SSN, PPID
_DATA_FIELDS = struct.Struct("!IHHI")
_INIT = struct.Struct("!IIHHI")        # initiate tag, a_rwnd, OS, MIS, initial TSN
_SACK = struct.Struct("!IIHH")         # cumulative TSN ack, a_rwnd, #gaps, #dups
_GAP = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_PARAM = struct.Struct("!HH")
_COOKIE = struct.Struct("!BxxxQIIIHHIIBxxx")  # ver, ts, peer tag/itsn/rwnd/os/mis, our tag/itsn, flags
_COOKIE_MAC_LEN = 16
_COOKIE_LEN = _COOKIE.size + _COOKIE_MAC_LEN
_HB_INFO = struct.Struct("!HHqI")      # param type, length, sent ms, nonce
_RESET_REQ = struct.Struct("!HHIII")   # type 13, length, req seq, resp seq, last TSN
_RESPONSE = struct.Struct("!HHII")     # type 16, length, resp seq, result
_ZERO4 = b"\x00\x00\x00\x00"
_PADS = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")

_PEER_PR = 1
_PEER_RECONFIG = 2


# --------------------------------------------------------------------------------------------
# CRC32c (RFC 9260 Appendix B, Castagnoli polynomial, reflected)
# --------------------------------------------------------------------------------------------

def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_table()


def crc32c_py(data: bytes, crc: int = 0) -> int:
    """CRC32c of ``data`` (table-driven pure Python; the fallback when google-crc32c is
    missing). ``crc`` continues an earlier value. Returns an int in [0, 2**32)."""
    table = _CRC_TABLE
    crc ^= _M32
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ _M32


def crc32c(data: bytes) -> int:
    """CRC32c of ``data`` (google-crc32c's C code when installed, else :func:`crc32c_py`)."""
    if _crc_value is not None:
        return _crc_value(data)
    return crc32c_py(data)  # pragma: no cover


def _packet_crc(header8: bytes, body: bytes) -> int:
    if _crc_value is not None:
        return _crc_extend(_crc_value(header8 + _ZERO4), body)
    return crc32c_py(body, crc32c_py(header8 + _ZERO4))  # pragma: no cover


def looks_like_sctp(data: bytes, port: int = SCTP_PORT) -> bool:
    """True if ``data`` may be an SCTP packet sent straight over UDP between ports ``port``
    (PlainTransport / PipeTransport with ``enableSctp``, where mediasoup demultiplexes SCTP from
    RTP/RTCP by the 5000/5000 ports in the first four bytes; RTP/RTCP start with 0x80-0xBF)."""
    return len(data) >= 16 and data[0] == data[2] == port >> 8 and data[1] == data[3] == port & 0xFF


def _pad(n: int) -> bytes:
    return _PADS[n & 3]


def _chunk(ctype: int, flags: int, body: bytes = b"") -> bytes:
    n = 4 + len(body)
    return _CHUNK.pack(ctype, flags, n) + body + _PADS[n & 3]


def _param(ptype: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return _PARAM.pack(ptype, n) + value + _PADS[n & 3]


def _iter_params(data: bytes, pos: int, end: int):
    """Yield ``(type, value_start, value_end)`` of the TLV parameters in ``data[pos:end]``."""
    while pos + 4 <= end:
        ptype, plen = _PARAM.unpack_from(data, pos)
        if plen < 4 or pos + plen > end:
            raise PacketParseError("sctp", "parameter length out of bounds")
        yield ptype, pos + 4, pos + plen
        pos += (plen + 3) & ~3


# --------------------------------------------------------------------------------------------
# Per-message / per-chunk records
# --------------------------------------------------------------------------------------------

class _OutMsg:
    __slots__ = (
        "abandoned",
        "data",
        "expiry_ms",
        "first_tsn",
        "max_rtx",
        "nchunks",
        "offset",
        "ordered",
        "ppid",
        "sid",
        "ssn",
    )

    def __init__(self, sid: int, ppid: int, data: bytes, ordered: bool, max_rtx: int | None,
                 expiry_ms: int | None) -> None:
        self.sid = sid
        self.ppid = ppid
        self.data = data
        self.ordered = ordered
        self.max_rtx = max_rtx
        self.expiry_ms = expiry_ms
        self.ssn = 0
        self.offset = 0
        self.first_tsn = 0
        self.nchunks = 0
        self.abandoned = False


class _OutChunk:
    __slots__ = (
        "abandoned",
        "acked",
        "fast_rtx",
        "flags",
        "in_flight",
        "misses",
        "msg",
        "nsent",
        "payload",
        "rtx",
        "sent_ms",
        "size",
        "tsn",
    )

    def __init__(self, tsn: int, msg: _OutMsg, flags: int, payload: Any, size: int) -> None:
        self.tsn = tsn
        self.msg = msg
        self.flags = flags
        self.payload = payload
        self.size = size
        self.sent_ms = 0
        self.nsent = 0
        self.acked = False
        self.in_flight = False
        self.rtx = False
        self.misses = 0
        self.abandoned = False
        self.fast_rtx = False


class _InStream:
    __slots__ = ("expected", "pending")

    def __init__(self) -> None:
        self.expected = 0
        self.pending: dict[int, tuple[int, bytes]] = {}


_STAT_KEYS = (
    "packets_received", "packets_sent", "bytes_received", "bytes_sent",
    "data_chunks_received", "data_chunks_sent", "retransmitted_chunks", "fast_retransmits",
    "t3_expirations", "t1_expirations", "messages_received", "messages_sent",
    "messages_abandoned", "duplicate_tsns", "sacks_sent", "sacks_received",
    "forward_tsns_sent", "forward_tsns_received", "heartbeats_sent", "send_buffer_full",
    "dropped_malformed", "dropped_bad_checksum", "dropped_bad_verification_tag",
    "dropped_bad_port", "dropped_out_of_window", "dropped_no_buffer", "dropped_invalid_stream",
    "dropped_unknown_chunk", "dropped_too_big", "dropped_out_of_state", "dropped_bad_cookie",
    "dropped_stale_ssn", "dropped_reset_stream",
)


class SctpAssociation:
    """One SCTP association (RFC 9260 subset for WebRTC), sans-I/O.

    Arguments (all keyword-only):

    - ``is_client``: our DTLS role is "client". Decides who initiates by default (see
      :meth:`start`) and is kept for the data-channel layer (RFC 8832 §6: DTLS client uses even
      stream ids);
    - ``local_port`` / ``remote_port``: SCTP ports (5000 in WebRTC, RFC 8841 ``a=sctp-port``);
    - ``max_message_size``: largest user message we send or reassemble, bytes (mediasoup
      ``maxSctpMessageSize``, SDP ``a=max-message-size``);
    - ``os`` / ``mis``: outbound streams we want / inbound streams we accept (mediasoup
      ``numSctpStreams {OS, MIS}``); the association uses ``min(os, peer MIS)`` and
      ``min(mis, peer OS)``;
    - ``receive_window_bytes``: our receive buffer (advertised a_rwnd);
    - ``send_buffer_size``: bytes queued + unacknowledged above which :meth:`send` refuses a
      message (mediasoup ``sctpSendBufferSize``); 0 = unlimited;
    - ``max_packet_size``: largest SCTP packet, bytes; ``heartbeat_interval_ms`` (0 disables);
      ``rto_initial_ms`` / ``rto_min_ms`` / ``rto_max_ms``; ``max_timer_backoff_ms`` (cap on
      the exponential back-off of the timers, 0 = none; libwebrtc uses 3 s); ``max_retransmissions``
      (Association.Max.Retrans); ``max_init_retransmits``; ``delayed_ack_ms``;
    - ``rng``: a ``random.Random`` for verification tags and initial TSNs (tests), default
      :mod:`secrets`.

    Raises ``ValueError`` / ``TypeError`` naming a bad argument.
    """

    def __init__(
        self,
        *,
        is_client: bool,
        local_port: int = SCTP_PORT,
        remote_port: int = SCTP_PORT,
        max_message_size: int = 262144,
        os: int = 1024,
        mis: int = 1024,
        receive_window_bytes: int = 1 << 20,
        send_buffer_size: int = 0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        heartbeat_interval_ms: int = 30_000,
        rto_initial_ms: int = 1000,
        rto_min_ms: int = 200,
        rto_max_ms: int = 60_000,
        max_timer_backoff_ms: int = 3000,
        max_retransmissions: int = 10,
        max_init_retransmits: int = 8,
        delayed_ack_ms: int = 200,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(is_client, bool):
            raise TypeError("is_client: must be a bool")
        for name, value, lo, hi in (
            ("local_port", local_port, 1, 65535), ("remote_port", remote_port, 1, 65535),
            ("max_message_size", max_message_size, 1, 1 << 30), ("os", os, 1, 65535),
            ("mis", mis, 1, 65535), ("receive_window_bytes", receive_window_bytes, 1500, 1 << 31),
            ("send_buffer_size", send_buffer_size, 0, 1 << 40),
            ("max_packet_size", max_packet_size, 256, 65535),
            ("heartbeat_interval_ms", heartbeat_interval_ms, 0, 1 << 31),
            ("rto_initial_ms", rto_initial_ms, 1, 1 << 31), ("rto_min_ms", rto_min_ms, 1, 1 << 31),
            ("rto_max_ms", rto_max_ms, 1, 1 << 31),
            ("max_timer_backoff_ms", max_timer_backoff_ms, 0, 1 << 31),
            ("max_retransmissions", max_retransmissions, 0, 1000),
            ("max_init_retransmits", max_init_retransmits, 0, 1000),
            ("delayed_ack_ms", delayed_ack_ms, 0, 500),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name}: must be an int")
            if not lo <= value <= hi:
                raise ValueError(f"{name}: must be in [{lo}, {hi}], got {value}")
        if not rto_min_ms <= rto_initial_ms <= rto_max_ms:
            raise ValueError("rto_initial_ms: must lie between rto_min_ms and rto_max_ms")
        self.is_client = is_client
        self.local_port = local_port
        self.remote_port = remote_port
        self.max_message_size = max_message_size
        self._os = os
        self._mis = mis
        self._rwnd_max = receive_window_bytes
        self._send_buffer_size = send_buffer_size
        self._mtu = max_packet_size & ~3
        self._budget = self._mtu - 12
        self._max_frag = self._budget - 16
        self._hb_interval = heartbeat_interval_ms
        self._rto_min = rto_min_ms
        self._rto_max = rto_max_ms
        self._max_backoff = max_timer_backoff_ms
        self._max_retrans = max_retransmissions
        self._max_init_retrans = max_init_retransmits
        self._delayed_ack_ms = delayed_ack_ms
        rand32 = (lambda: rng.getrandbits(32)) if rng is not None else (lambda: secrets.randbits(32))
        self._rand32 = rand32
        self._secret = rng.randbytes(32) if rng is not None else secrets.token_bytes(32)
        self._local_tag = rand32() or 1
        self._initial_tsn = rand32()

        self.stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self._state = CLOSED
        self._public_state = "new"
        self._started = False
        self._now = 0
        self._dirty = False
        self._out: list[bytes] = []
        self._events: list[tuple] = []
        self._ctrl: list[bytes] = []

        # peer
        self._peer_tag: int | None = None
        self._peer_flags = 0
        self._peer_pr = False
        self._peer_reconfig = False
        self._out_streams = os
        self._in_streams = mis
        self._pending_peer: tuple | None = None  # from INIT ACK, until COOKIE ACK

        # outbound (TSNs are unwrapped integers internally; wire = tsn & 0xFFFFFFFF)
        self._next_tsn = self._initial_tsn
        self._ack_cum = self._initial_tsn - 1      # peer's cumulative TSN ack
        self._sent: list[_OutChunk] = []           # TSNs ack_cum+1 .. next_tsn-1, in order
        self._sent_bytes = 0
        self._flight = 0
        self._n_rtx = 0
        self._queues: dict[int, deque[_OutMsg]] = {}
        self._rr: deque[int] = deque()
        self._cur: _OutMsg | None = None
        self._queued_bytes = 0
        self._buffered: dict[int, int] = {}
        self._bal_threshold: dict[int, int] = {}
        self._out_ssn: dict[int, int] = {}
        self._mtu_cc = self._mtu
        self._cwnd = min(4 * self._mtu, max(2 * self._mtu, 4380))
        self._ssthresh = 1 << 31
        self._pba = 0
        self._peer_rwnd = 1 << 31
        self._fr_exit: int | None = None
        self._burst_limited = False
        self._fast_rtx_now = False
        self._fwd_needed = False
        self._fwd_point = self._ack_cum
        self._rtt_tsn: int | None = None
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto = rto_initial_ms
        self._rto_base = rto_initial_ms  # from RTT measurements, before any back-off
        self._errors = 0

        # inbound
        self._rx_cum = 0
        self._rx_above: set[int] = set()
        self._rx_dups: list[int] = []
        self._rx_frags: dict[int, tuple] = {}
        self._rx_held = 0
        self._rx_streams: dict[int, _InStream] = {}
        self._sack_now = False
        self._sack_at: int | None = None
        self._pkts_since_sack = 0

        # RE-CONFIG (RFC 6525)
        self._reconf_seq = self._initial_tsn        # our next request sequence number
        self._reconf_req: tuple | None = None       # (seq, sids, chunk bytes)
        self._reconf_at: int | None = None
        self._reset_pending: list[int] = []
        self._resetting: set[int] = set()
        self._peer_req_expected = 0                  # peer's next request sequence number
        self._peer_last_result = RESULT_SUCCESS_PERFORMED
        self._deferred_resets: list[tuple[int, int, tuple[int, ...]]] = []  # (seq, last tsn, sids)
        self._deferred_msgs: list[tuple] = []

        # timers
        self._t1_at: int | None = None
        self._t1_packet: tuple[int, bytes] | None = None
        self._t1_count = 0
        self._t1_rto = rto_initial_ms
        self._t2_at: int | None = None
        self._t2_chunk: bytes | None = None
        self._t3_at: int | None = None
        self._hb_at: int | None = None
        self._hb_nonce: int | None = None

    # ---------------------------------------------------------------------------- properties
    @property
    def state(self) -> str:
        """mediasoup ``sctpState``: "new", "connecting", "connected", "failed" or "closed"."""
        return self._public_state

    @property
    def association_state(self) -> str:
        """RFC 9260 state name ("CLOSED", "COOKIE-WAIT", ..., "ESTABLISHED", ...)."""
        return _STATE_NAMES[self._state]

    @property
    def outbound_streams(self) -> int:
        """Number of outbound streams (stream ids 0..n-1 may be sent on)."""
        return self._out_streams

    @property
    def inbound_streams(self) -> int:
        """Number of inbound streams the peer may send on."""
        return self._in_streams

    @property
    def peer_supports_partial_reliability(self) -> bool:
        """True if the peer announced RFC 3758 (Forward-TSN-Supported)."""
        return self._peer_pr

    @property
    def buffered_amount_total(self) -> int:
        """Bytes accepted by :meth:`send` and not yet transmitted once, over all streams."""
        return self._queued_bytes

    def buffered_amount(self, stream_id: int) -> int:
        """Bytes of ``stream_id``'s messages not yet transmitted once (W3C ``bufferedAmount``)."""
        return self._buffered.get(stream_id, 0)

    def set_buffered_amount_low_threshold(self, stream_id: int, threshold_bytes: int) -> None:
        """Emit ``("buffered_amount_low", stream_id, n)`` when the stream's buffered amount
        falls from above ``threshold_bytes`` to or below it. Raises ValueError if negative."""
        if not isinstance(threshold_bytes, int) or threshold_bytes < 0:
            raise ValueError("threshold_bytes: must be an int >= 0")
        self._bal_threshold[stream_id] = threshold_bytes

    def info(self) -> dict[str, Any]:
        """Snapshot for dumps and notebooks: ``{state, associationState, cwnd, ssthresh,
        flightSize, peerRwnd, rtoMs, srttMs, outboundStreams, inboundStreams, queuedBytes,
        outstandingChunks, stats}`` (bytes and ms)."""
        return {
            "state": self._public_state,
            "associationState": _STATE_NAMES[self._state],
            "cwnd": self._cwnd,
            "ssthresh": self._ssthresh,
            "flightSize": self._flight,
            "peerRwnd": self._peer_rwnd,
            "rtoMs": self._rto,
            "srttMs": self._srtt,
            "outboundStreams": self._out_streams,
            "inboundStreams": self._in_streams,
            "queuedBytes": self._queued_bytes,
            "outstandingChunks": len(self._sent),
            "stats": dict(self.stats),
        }

    # ---------------------------------------------------------------------------- pulled outputs
    def datagrams_to_send(self) -> list[bytes]:
        """SCTP packets to carry as DTLS application data, in order (each <= max_packet_size).

        This is where packets are built (SACKs, bundled messages, retransmissions), so call it
        after every :meth:`receive` / :meth:`send` / :meth:`handle_timer` / :meth:`reset_streams`
        / :meth:`close`, and before :meth:`drain_events` and :meth:`next_timer_ms`."""
        if self._dirty:
            self._flush()
        out, self._out = self._out, []
        return out

    def drain_events(self) -> list[tuple]:
        """Events since the last call (shapes in the module docstring)."""
        events, self._events = self._events, []
        return events

    def next_timer_ms(self) -> int | None:
        """Absolute time (ms) at which :meth:`handle_timer` must be called, or None. Valid after
        :meth:`datagrams_to_send`."""
        best = None
        for t in (self._t1_at, self._t2_at, self._t3_at, self._sack_at, self._reconf_at, self._hb_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    # ---------------------------------------------------------------------------- API
    def start(self, now_ms: int, *, initiate: bool | None = None) -> None:
        """Start the association once DTLS is connected.

        ``initiate`` (default: ``is_client``) sends INIT (RFC 9260 §5.1). Browsers and aiortc
        initiate on both sides; the resulting INIT collision is handled (§5.2.1), and a side that
        does not initiate answers the peer's INIT. Calling it twice does nothing.
        """
        if self._started:
            return
        self._started = True
        self._now = now_ms
        if self._state == CLOSED and self._public_state == "new":
            self._set_public_state("connecting")
            if self.is_client if initiate is None else initiate:
                self._send_init(now_ms)
        self._dirty = True

    def send(self, stream_id: int, ppid: int, data: bytes, *, ordered: bool = True,
             max_retransmits: int | None = None, max_packet_life_time_ms: int | None = None,
             now_ms: int) -> bool:
        """Queue one user message on ``stream_id`` with payload protocol id ``ppid``.

        ``ordered=False`` sends it unordered (U bit); ``max_retransmits`` /
        ``max_packet_life_time_ms`` make it partially reliable (RFC 3758; ignored, i.e.
        reliable, if the peer lacks Forward-TSN support). Messages may be queued before the
        association is up. Returns False (and counts ``send_buffer_full``) when the send buffer
        is full. Raises ``InvalidStateError`` when closed/closing or the stream is being reset,
        ``ValueError``/``TypeError`` naming a bad argument (stream id beyond the outbound streams,
        empty or too large data, both reliability limits).
        """
        if self._state not in (CLOSED, COOKIE_WAIT, COOKIE_ECHOED, ESTABLISHED) or self._public_state in ("closed", "failed"):
            raise InvalidStateError(f"sctp send in state {_STATE_NAMES[self._state]} ({self._public_state})")
        if not isinstance(stream_id, int) or not 0 <= stream_id < self._out_streams:
            raise ValueError(f"stream_id: must be an int in [0, {self._out_streams - 1}], got {stream_id!r}")
        if not isinstance(ppid, int) or not 0 <= ppid <= _M32:
            raise ValueError(f"ppid: must be a 32-bit unsigned int, got {ppid!r}")
        if not isinstance(data, bytes):
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError("data: must be bytes")
            data = bytes(data)
        n = len(data)
        if n == 0:
            raise ValueError("data: must not be empty (send PPID 56/57 with one byte instead)")
        if n > self.max_message_size:
            raise ValueError(f"data: {n} bytes exceed max_message_size {self.max_message_size}")
        if max_retransmits is not None and max_packet_life_time_ms is not None:
            raise ValueError("max_retransmits, max_packet_life_time_ms: give at most one")
        if max_retransmits is not None and (not isinstance(max_retransmits, int) or max_retransmits < 0):
            raise ValueError("max_retransmits: must be an int >= 0")
        if max_packet_life_time_ms is not None and (not isinstance(max_packet_life_time_ms, int) or max_packet_life_time_ms < 0):
            raise ValueError("max_packet_life_time_ms: must be an int >= 0")
        if stream_id in self._resetting:
            raise InvalidStateError(f"stream_id: {stream_id} is being reset")
        used = self._queued_bytes + self._sent_bytes
        if self._send_buffer_size and used and used + n > self._send_buffer_size:
            self.stats["send_buffer_full"] += 1
            return False
        self._now = now_ms
        expiry = now_ms + max_packet_life_time_ms if max_packet_life_time_ms is not None else None
        msg = _OutMsg(stream_id, ppid, data, bool(ordered), max_retransmits, expiry)
        q = self._queues.get(stream_id)
        if q is None:
            q = self._queues[stream_id] = deque()
        if not q:
            self._rr.append(stream_id)
        q.append(msg)
        self._buffered[stream_id] = self._buffered.get(stream_id, 0) + n
        self._queued_bytes += n
        self.stats["messages_sent"] += 1
        self._dirty = True
        return True

    def reset_streams(self, stream_ids: list[int], now_ms: int | None = None) -> None:
        """Reset our outgoing streams (RFC 6525 Outgoing SSN Reset Request), which closes those
        data channels (RFC 8831 §6.7). Messages already queued on them are sent first; new
        :meth:`send` calls on them raise until ``("outgoing_streams_reset", ids)`` is emitted.
        Raises ValueError for a bad id, InvalidStateError when not connected."""
        if self._public_state in ("closed", "failed") or self._state in (SHUTDOWN_SENT, SHUTDOWN_ACK_SENT):
            raise InvalidStateError(f"reset_streams in state {_STATE_NAMES[self._state]} ({self._public_state})")
        for sid in stream_ids:
            if not isinstance(sid, int) or not 0 <= sid <= 65535:
                raise ValueError(f"stream_ids: bad stream id {sid!r}")
        for sid in stream_ids:
            if sid not in self._resetting:
                self._resetting.add(sid)
                self._reset_pending.append(sid)
        if now_ms is not None:
            self._now = now_ms
        self._dirty = True

    def receive(self, packet: bytes, now_ms: int) -> None:
        """Process one SCTP packet (one DTLS application_data record). Never raises for a bad
        packet: it is dropped and counted in :attr:`stats`."""
        self._now = now_ms
        if not isinstance(packet, bytes):
            packet = bytes(packet)
        self.stats["packets_received"] += 1
        self.stats["bytes_received"] += len(packet)
        try:
            self._receive(packet, now_ms)
        except (PacketParseError, struct.error, IndexError):
            self.stats["dropped_malformed"] += 1
        self._dirty = True

    def handle_timer(self, now_ms: int) -> None:
        """Run the timers due at ``now_ms`` (T1-init, T2-shutdown, T3-rtx, delayed SACK,
        RE-CONFIG retransmission, HEARTBEAT)."""
        self._now = now_ms
        if self._t1_at is not None and now_ms >= self._t1_at:
            self._on_t1(now_ms)
        if self._t2_at is not None and now_ms >= self._t2_at:
            self._on_t2(now_ms)
        if self._t3_at is not None and now_ms >= self._t3_at:
            self._on_t3(now_ms)
        if self._sack_at is not None and now_ms >= self._sack_at:
            self._sack_at = None
            self._sack_now = True
        if self._reconf_at is not None and now_ms >= self._reconf_at:
            self._on_reconf_timer(now_ms)
        if self._hb_at is not None and now_ms >= self._hb_at:
            self._on_heartbeat_timer(now_ms)
        self._dirty = True

    def close(self, now_ms: int | None = None) -> None:
        """Graceful shutdown (RFC 9260 §9.2): queued and outstanding data are delivered first,
        then SHUTDOWN / SHUTDOWN ACK / SHUTDOWN COMPLETE. Before the association is up this is
        :meth:`abort`."""
        if now_ms is not None:
            self._now = now_ms
        if self._state == ESTABLISHED:
            self._state = SHUTDOWN_PENDING
            self._dirty = True
        elif self._state in (COOKIE_WAIT, COOKIE_ECHOED) or (self._state == CLOSED and self._public_state != "closed"):
            self.abort()

    def abort(self, now_ms: int | None = None) -> None:
        """Send ABORT (User-Initiated Abort cause) if the peer is known and close at once."""
        if now_ms is not None:
            self._now = now_ms
        if self._peer_tag is not None and self._state != CLOSED:
            self._send_now(self._peer_tag, [_chunk(ABORT, 0, _PARAM.pack(CAUSE_USER_ABORT, 4))])
        self._terminate("closed")

    # ---------------------------------------------------------------------------- receive path
    def _receive(self, data: bytes, now: int) -> None:
        n = len(data)
        if n < 16:
            raise PacketParseError("sctp", "packet shorter than a common header and one chunk")
        src, dst, tag = _COMMON.unpack_from(data)
        if _crc_value is not None:
            crc = _crc_extend(_crc_value(data[:8] + _ZERO4), data[12:])
        else:  # pragma: no cover
            crc = _packet_crc(data[:8], data[12:])
        if crc != _CRC.unpack_from(data, 8)[0]:
            self.stats["dropped_bad_checksum"] += 1
            return
        if src != self.remote_port or dst != self.local_port:
            self.stats["dropped_bad_port"] += 1
            return
        first = data[12]
        if first == INIT:
            if tag != 0:
                self.stats["dropped_bad_verification_tag"] += 1
                return
        elif first in (ABORT, SHUTDOWN_COMPLETE) and data[13] & 1:
            if self._peer_tag is None or tag != self._peer_tag:
                self.stats["dropped_bad_verification_tag"] += 1
                return
        elif tag != self._local_tag:
            self.stats["dropped_bad_verification_tag"] += 1
            return
        if self._public_state in ("closed", "failed"):
            if first == SHUTDOWN_ACK:
                # our SHUTDOWN COMPLETE was lost: answer again, T bit set (RFC 9260 §8.4 item 5)
                self._emit_packet(tag, [_chunk(SHUTDOWN_COMPLETE, 1)])
            self.stats["dropped_out_of_state"] += 1
            return
        pos = 12
        had_data = False
        while pos + 4 <= n:
            ctype, cflags, clen = _CHUNK.unpack_from(data, pos)
            if clen < 4 or pos + clen > n:
                raise PacketParseError("sctp", "chunk length out of bounds")
            if ctype == DATA:
                if self._state in _RECEIVING:
                    self._on_data(data, pos, clen, cflags)
                    had_data = True
                else:
                    self.stats["dropped_out_of_state"] += 1
            elif ctype == SACK:
                self._on_sack_chunk(data, pos, clen, now)
            elif ctype == FORWARD_TSN:
                if self._state in _RECEIVING:
                    self._on_forward_tsn(data, pos, clen)
                    had_data = True
                else:
                    self.stats["dropped_out_of_state"] += 1
            elif ctype == HEARTBEAT:
                self._ctrl.append(_chunk(HEARTBEAT_ACK, 0, data[pos + 4:pos + clen]))
            elif ctype == HEARTBEAT_ACK:
                self._on_heartbeat_ack(data, pos, clen, now)
            elif ctype == INIT:
                self._on_init(data, pos, clen, now)
                return  # INIT is never bundled (RFC 9260 §6.10)
            elif ctype == INIT_ACK:
                self._on_init_ack(data, pos, clen, now)
                return
            elif ctype == COOKIE_ECHO:
                self._on_cookie_echo(data, pos, clen, now)
            elif ctype == COOKIE_ACK:
                if self._state == COOKIE_ECHOED and self._pending_peer is not None:
                    self._establish(*self._pending_peer)
                else:
                    self.stats["dropped_out_of_state"] += 1
            elif ctype == RE_CONFIG:
                if self._state in _LIVE:
                    self._on_reconfig(data, pos, clen, now)
                else:
                    self.stats["dropped_out_of_state"] += 1
            elif ctype == ABORT:
                self._terminate("closed")
                return
            elif ctype == SHUTDOWN:
                self._on_shutdown(data, pos, clen, now)
            elif ctype == SHUTDOWN_ACK:
                self._on_shutdown_ack()
            elif ctype == SHUTDOWN_COMPLETE:
                if self._state == SHUTDOWN_ACK_SENT:
                    self._terminate("closed")
                    return
                self.stats["dropped_out_of_state"] += 1
            elif ctype == ERROR:
                self._on_error(data, pos, clen, now)
            else:
                self.stats["dropped_unknown_chunk"] += 1
                action = ctype >> 6  # RFC 9260 §3.2: upper two bits
                if action & 1:
                    body = data[pos:pos + min(clen, self._budget - 16)]
                    cause = _PARAM.pack(CAUSE_UNRECOGNIZED_CHUNK, 4 + len(body)) + body + _pad(len(body))
                    if self._peer_tag is not None:
                        self._ctrl.append(_chunk(ERROR, 0, cause))
                if not action & 2:
                    break
            pos += (clen + 3) & ~3
        if had_data:
            if self._sack_now or self._rx_above or self._rx_dups:
                self._sack_now = True
            else:
                self._pkts_since_sack += 1
                if self._pkts_since_sack >= 2 or self._delayed_ack_ms == 0:
                    self._sack_now = True
                elif self._sack_at is None:
                    self._sack_at = now + self._delayed_ack_ms
            if self._deferred_resets:
                self._run_deferred_resets()

    # ------------------------------------------------------------------ DATA / reassembly
    def _on_data(self, data: bytes, pos: int, clen: int, flags: int) -> None:
        stats = self.stats
        stats["data_chunks_received"] += 1
        if clen <= 16:
            stats["dropped_malformed"] += 1  # no user data (RFC 9260 §6.2 would ABORT)
            return
        tsn_w, sid, ssn, ppid = _DATA_FIELDS.unpack_from(data, pos + 4)
        cum = self._rx_cum
        tsn = cum + ((tsn_w - cum + _HALF) & _M32) - _HALF
        above = self._rx_above
        if tsn <= cum or tsn in above:
            stats["duplicate_tsns"] += 1
            if len(self._rx_dups) < _MAX_DUPS_REPORTED:
                self._rx_dups.append(tsn_w)
            return
        if tsn - cum > _MAX_GAP_TSNS:
            stats["dropped_out_of_window"] += 1
            return
        size = clen - 16
        if tsn != cum + 1 and self._rx_held + size > self._rwnd_max:
            stats["dropped_no_buffer"] += 1
            return
        if tsn == cum + 1:
            cum = tsn
            if above:
                while cum + 1 in above:
                    cum += 1
                    above.discard(cum)
            self._rx_cum = cum
        else:
            above.add(tsn)
        if sid >= self._in_streams:
            stats["dropped_invalid_stream"] += 1
            self._ctrl.append(_chunk(ERROR, 0, _PARAM.pack(CAUSE_INVALID_STREAM, 8) + _U16.pack(sid) + b"\x00\x00"))
            return
        if flags & _FLAG_I:
            self._sack_now = True  # SACK-IMMEDIATELY (RFC 9260 §3.3.1 I bit)
        user = data[pos + 16:pos + clen]
        if flags & 3 == 3:
            if flags & _FLAG_U:
                stats["messages_received"] += 1
                self._events.append(("message", sid, ppid, user))
            else:
                self._deliver_ordered(sid, ssn, ppid, user, tsn)
            return
        frags = self._rx_frags
        frags[tsn] = (flags, sid, ssn, ppid, user)
        self._rx_held += size
        if flags & _FLAG_E or tsn + 1 in frags:
            self._reassemble(tsn)

    def _reassemble(self, tsn: int) -> None:
        frags = self._rx_frags
        first = tsn
        f = frags[first]
        while not f[0] & _FLAG_B:
            first -= 1
            f = frags.get(first)
            if f is None or f[0] & _FLAG_E:
                return
        last = tsn
        f = frags[last]
        while not f[0] & _FLAG_E:
            last += 1
            f = frags.get(last)
            if f is None or f[0] & _FLAG_B:
                return
        parts = [frags.pop(t) for t in range(first, last + 1)]
        flags, sid, ssn, ppid, _ = parts[0]
        payload = b"".join([p[4] for p in parts])
        self._rx_held -= len(payload)
        for p in parts:
            if p[1] != sid or (p[0] ^ flags) & _FLAG_U or (not flags & _FLAG_U and p[2] != ssn):
                self.stats["dropped_malformed"] += 1  # fragments that do not belong together
                return
        if len(payload) > self.max_message_size:
            self.stats["dropped_too_big"] += 1
            return
        if flags & _FLAG_U:
            self.stats["messages_received"] += 1
            self._events.append(("message", sid, ppid, payload))
        else:
            self._deliver_ordered(sid, ssn, ppid, payload, first)

    def _deliver_ordered(self, sid: int, ssn: int, ppid: int, payload: bytes, tsn: int) -> None:
        if self._deferred_resets:
            for _, last_tsn, sids in self._deferred_resets:
                if sid in sids and tsn > last_tsn:
                    # sent after the peer's reset: hold until the reset is performed (RFC 6525 §5.2.2)
                    self._deferred_msgs.append((sid, ssn, ppid, payload, tsn))
                    self._rx_held += len(payload)
                    return
        st = self._rx_streams.get(sid)
        if st is None:
            st = self._rx_streams[sid] = _InStream()
        exp = st.expected
        if ssn == exp:
            self.stats["messages_received"] += 1
            self._events.append(("message", sid, ppid, payload))
            st.expected = (exp + 1) & 0xFFFF
            if st.pending:
                self._drain_stream(sid, st)
        elif (ssn - exp) & 0xFFFF < 0x8000:
            st.pending[ssn] = (ppid, payload)
            self._rx_held += len(payload)
        else:
            self.stats["dropped_stale_ssn"] += 1

    def _drain_stream(self, sid: int, st: _InStream) -> None:
        pending = st.pending
        exp = st.expected
        events = self._events
        while pending:
            item = pending.pop(exp, None)
            if item is None:
                break
            self._rx_held -= len(item[1])
            self.stats["messages_received"] += 1
            events.append(("message", sid, item[0], item[1]))
            exp = (exp + 1) & 0xFFFF
        st.expected = exp

    def _on_forward_tsn(self, data: bytes, pos: int, clen: int) -> None:
        if clen < 8:
            raise PacketParseError("sctp", "FORWARD TSN shorter than 8 bytes")
        self.stats["forward_tsns_received"] += 1
        self._sack_now = True
        (new_w,) = _U32.unpack_from(data, pos + 4)
        cum = self._rx_cum
        new = cum + ((new_w - cum + _HALF) & _M32) - _HALF
        if new <= cum:
            return
        above = self._rx_above
        if above:
            above = self._rx_above = {t for t in above if t > new}
        cum = new
        while cum + 1 in above:
            cum += 1
            above.discard(cum)
        self._rx_cum = cum
        frags = self._rx_frags
        if frags:
            # fragments of abandoned messages go; those above the new point may still complete
            for t in [t for t in frags if t <= new]:
                self._rx_held -= len(frags.pop(t)[4])
        end = pos + clen
        p = pos + 8
        while p + 4 <= end:
            sid, ssn = _GAP.unpack_from(data, p)
            p += 4
            st = self._rx_streams.get(sid)
            if st is None:
                st = self._rx_streams[sid] = _InStream()
            exp = st.expected
            skip = (ssn - exp) & 0xFFFF
            if skip >= 0x8000:
                continue  # already past it
            pending = st.pending
            if pending:
                # complete messages up to the skipped SSN are delivered (RFC 3758 §3.6)
                for s in sorted(pending, key=lambda s: (s - exp) & 0xFFFF):
                    if (s - exp) & 0xFFFF > skip:
                        break
                    ppid_, payload = pending.pop(s)
                    self._rx_held -= len(payload)
                    self.stats["messages_received"] += 1
                    self._events.append(("message", sid, ppid_, payload))
            st.expected = (ssn + 1) & 0xFFFF
            if pending:
                self._drain_stream(sid, st)

    def _build_sack(self) -> bytes:
        cum = self._rx_cum
        body = []
        ngaps = 0
        above = self._rx_above
        if above:
            max_gaps = (self._budget - 20) // 4 - len(self._rx_dups)
            srt = sorted(above)
            start = prev = srt[0]
            for t in srt[1:]:
                if t == prev + 1:
                    prev = t
                    continue
                if ngaps < max_gaps:
                    body.append(_GAP.pack(start - cum, prev - cum))
                    ngaps += 1
                start = prev = t
            if ngaps < max_gaps:
                body.append(_GAP.pack(start - cum, prev - cum))
                ngaps += 1
        dups = self._rx_dups
        for d in dups:
            body.append(_U32.pack(d))
        a_rwnd = self._rwnd_max - self._rx_held
        chunk = _chunk(SACK, 0, _SACK.pack(cum & _M32, a_rwnd if a_rwnd > 0 else 0, ngaps, len(dups)) + b"".join(body))
        self._rx_dups = []
        self._sack_now = False
        self._sack_at = None
        self._pkts_since_sack = 0
        self.stats["sacks_sent"] += 1
        return chunk

    # ------------------------------------------------------------------ SACK / sender side
    def _on_sack_chunk(self, data: bytes, pos: int, clen: int, now: int) -> None:
        if clen < 16:
            raise PacketParseError("sctp", "SACK shorter than 16 bytes")
        cum_w, a_rwnd, ngaps, ndups = _SACK.unpack_from(data, pos + 4)
        if 16 + 4 * (ngaps + ndups) > clen:
            raise PacketParseError("sctp", "SACK gap/dup counts exceed its length")
        if self._state not in _LIVE:
            self.stats["dropped_out_of_state"] += 1
            return
        self.stats["sacks_received"] += 1
        gaps = [_GAP.unpack_from(data, pos + 16 + 4 * i) for i in range(ngaps)] if ngaps else None
        self._handle_sack(cum_w, a_rwnd, gaps, now)

    def _handle_sack(self, cum_w: int, a_rwnd: int, gaps: list[tuple[int, int]] | None, now: int) -> None:
        ack = self._ack_cum
        cum = ack + ((cum_w - ack + _HALF) & _M32) - _HALF
        if cum < ack:
            return  # an older SACK (RFC 9260 §6.2.1 D i)
        sent = self._sent
        n = cum - ack
        if n > len(sent):
            self.stats["dropped_malformed"] += 1  # acknowledges TSNs never sent
            return
        flight_before = self._flight
        acked_bytes = 0
        rtt_tsn = self._rtt_tsn
        if n:
            for i in range(n):
                c = sent[i]
                if not c.acked and not c.abandoned:
                    acked_bytes += c.size
                if c.in_flight:
                    self._flight -= c.size
                if c.rtx:
                    self._n_rtx -= 1
                self._sent_bytes -= c.size
            if rtt_tsn is not None and rtt_tsn <= cum:
                c = sent[rtt_tsn - ack - 1]
                if c.nsent == 1:
                    self._update_rtt(now - c.sent_ms)
                self._rtt_tsn = rtt_tsn = None
            del sent[:n]
            self._ack_cum = cum
            self._errors = 0
        if gaps:
            ln = len(sent)
            highest_newly = cum
            highest_gap = cum
            for s, e in gaps:
                if s == 0 or s > e:
                    continue
                for off in range(s, min(e, ln) + 1):
                    c = sent[off - 1]
                    if not c.acked:
                        c.acked = True
                        if not c.abandoned:
                            acked_bytes += c.size
                        if c.in_flight:
                            c.in_flight = False
                            self._flight -= c.size
                        if c.rtx:
                            c.rtx = False
                            self._n_rtx -= 1
                        if cum + off > highest_newly:
                            highest_newly = cum + off
                        if rtt_tsn == c.tsn:
                            if c.nsent == 1:
                                self._update_rtt(now - c.sent_ms)
                            self._rtt_tsn = rtt_tsn = None
                if cum + e > highest_gap:
                    highest_gap = cum + e
            # miss indications (RFC 9260 §7.2.4, HTNA)
            limit = highest_gap if (self._fr_exit is not None and n) else highest_newly
            marked = False
            for i in range(min(limit - cum - 1, ln)):
                c = sent[i]
                if c.acked or c.rtx or c.abandoned or c.fast_rtx:
                    continue
                c.misses += 1
                if c.misses >= 3:
                    c.fast_rtx = True
                    if not self._maybe_abandon(c, now):
                        self._mark_rtx(c)
                        marked = True
            if marked:
                self.stats["fast_retransmits"] += 1
                self._fast_rtx_now = True
                if self._fr_exit is None:
                    self._ssthresh = max(self._cwnd // 2, 4 * self._mtu_cc)
                    self._cwnd = self._ssthresh
                    self._pba = 0
                    self._fr_exit = self._next_tsn - 1
        # congestion window (RFC 9260 §7.2.1, §7.2.2)
        if n:
            if self._fr_exit is not None:
                if cum >= self._fr_exit:
                    self._fr_exit = None
            elif acked_bytes:
                mtu = self._mtu_cc
                # fully utilized: less than one MTU of room, or held back by Max.Burst
                full = flight_before + mtu > self._cwnd or self._burst_limited
                self._burst_limited = False
                if self._cwnd <= self._ssthresh:
                    if full:
                        self._cwnd += acked_bytes if acked_bytes < mtu else mtu
                else:
                    self._pba += acked_bytes
                    if self._pba >= self._cwnd and full:
                        self._pba -= self._cwnd
                        self._cwnd += mtu
        if self._flight <= 0:
            self._flight = 0
            self._pba = 0
        rwnd = a_rwnd - self._flight
        self._peer_rwnd = rwnd if rwnd > 0 else 0
        if not sent:
            self._t3_at = None
        elif n or self._t3_at is None:
            self._t3_at = now + self._rto
        if self._peer_pr and sent and sent[0].abandoned:
            self._advance_ack_point()
        self._dirty = True

    def _backoff(self, rto: int) -> int:
        """Double a timer (RFC 9260 §6.3.3), capped at ``rto_max_ms`` and, like libwebrtc's
        dcsctp transport, at ``max_timer_backoff_ms`` (never below the measured RTO) so the
        association recovers quickly once a lossy path clears."""
        rto = min(rto * 2, self._rto_max)
        if self._max_backoff:
            rto = min(rto, max(self._max_backoff, self._rto_base))
        return rto

    def _update_rtt(self, r: float) -> None:
        if r < 0:
            return
        if self._srtt is None:
            self._srtt = float(r)
            self._rttvar = r / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - r)
            self._srtt = 0.875 * self._srtt + 0.125 * r
        rto = int(self._srtt + 4 * self._rttvar)
        self._rto = self._rto_base = min(max(rto, self._rto_min), self._rto_max)

    def _mark_rtx(self, c: _OutChunk) -> None:
        if c.in_flight:
            c.in_flight = False
            self._flight -= c.size
        if not c.rtx:
            c.rtx = True
            self._n_rtx += 1
        if self._rtt_tsn == c.tsn:
            self._rtt_tsn = None

    def _maybe_abandon(self, c: _OutChunk, now: int) -> bool:
        m = c.msg
        if m.abandoned:
            return True
        if not self._peer_pr:
            return False
        if (m.max_rtx is not None and c.nsent > m.max_rtx) or (m.expiry_ms is not None and now >= m.expiry_ms):
            self._abandon(m)
            return True
        return False

    def _abandon(self, m: _OutMsg) -> None:
        m.abandoned = True
        self.stats["messages_abandoned"] += 1
        if m.nchunks:
            sent = self._sent
            base = self._ack_cum + 1
            for i in range(max(m.first_tsn - base, 0), min(m.first_tsn + m.nchunks - base, len(sent))):
                c = sent[i]
                c.abandoned = True
                if c.in_flight:
                    c.in_flight = False
                    self._flight -= c.size
                if c.rtx:
                    c.rtx = False
                    self._n_rtx -= 1
        if self._cur is m:
            self._cur = None
            self._dec_buffered(m.sid, len(m.data) - m.offset)
        self._advance_ack_point()

    def _advance_ack_point(self) -> None:
        sent = self._sent
        i = 0
        ln = len(sent)
        while i < ln and sent[i].abandoned:
            i += 1
        if i and self._ack_cum + i > self._fwd_point:
            self._fwd_needed = True

    def _build_forward_tsn(self) -> bytes | None:
        sent = self._sent
        i = 0
        ln = len(sent)
        streams: dict[int, int] = {}
        while i < ln and sent[i].abandoned:
            m = sent[i].msg
            if m.ordered:
                streams[m.sid] = m.ssn
            i += 1
        self._fwd_needed = False
        if not i:
            return None
        new_cum = self._ack_cum + i
        self._fwd_point = new_cum
        body = _U32.pack(new_cum & _M32) + b"".join(_GAP.pack(s, q) for s, q in streams.items())
        self.stats["forward_tsns_sent"] += 1
        if self._t3_at is None:
            self._t3_at = self._now + self._rto
        return _chunk(FORWARD_TSN, 0, body)

    def _dec_buffered(self, sid: int, n: int) -> None:
        if n <= 0:
            return
        prev = self._buffered.get(sid, 0)
        cur = prev - n
        self._buffered[sid] = cur
        self._queued_bytes -= n
        thr = self._bal_threshold.get(sid, 0)
        if prev > thr >= cur:
            self._events.append(("buffered_amount_low", sid, cur))

    def _pick_message(self, now: int) -> _OutMsg | None:
        rr = self._rr
        queues = self._queues
        while rr:
            sid = rr[0]
            q = queues[sid]
            m = q.popleft()
            if q:
                rr.rotate(-1)
            else:
                rr.popleft()
            if m.expiry_ms is not None and now >= m.expiry_ms and self._peer_pr:
                m.abandoned = True
                self.stats["messages_abandoned"] += 1
                self._dec_buffered(sid, len(m.data))
                continue
            return m
        return None

    # ------------------------------------------------------------------ transmission
    def _flush(self) -> None:
        self._dirty = False
        now = self._now
        state = self._state
        if state in _SENDING:
            if self._reset_pending and self._reconf_req is None:
                self._start_reset(now)
        packets: list[list] = []
        cur: list = []
        room = self._budget
        ctrl = self._ctrl
        if state in _LIVE:
            sending_data = state in _SENDING and (self._n_rtx or self._rr or self._cur is not None)
            if self._sack_now or (self._sack_at is not None and sending_data):
                ctrl.append(self._build_sack())
            if self._fwd_needed and self._peer_pr:
                fwd = self._build_forward_tsn()
                if fwd is not None:
                    ctrl.append(fwd)
        if ctrl and self._peer_tag is not None:
            for ch in ctrl:
                if len(ch) > room and cur:
                    packets.append(cur)
                    cur = []
                    room = self._budget
                cur.append(ch)
                room -= len(ch)
        self._ctrl = []
        if state in _SENDING:
            cur, room = self._fill_data(now, packets, cur, room)
        if cur:
            packets.append(cur)
        if packets:
            tag = self._peer_tag
            for parts in packets:
                self._emit_packet(tag, parts)
        if state == SHUTDOWN_PENDING and not self._sent and not self._rr and self._cur is None:
            self._state = SHUTDOWN_SENT
            self._t2_chunk = _chunk(SHUTDOWN, 0, _U32.pack(self._rx_cum & _M32))
            self._send_now(self._peer_tag, [self._t2_chunk])
            self._t2_at = now + self._rto
            self._t3_at = None
        elif state == SHUTDOWN_RECEIVED and not self._sent and not self._rr and self._cur is None:
            self._state = SHUTDOWN_ACK_SENT
            self._t2_chunk = _chunk(SHUTDOWN_ACK, 0)
            self._send_now(self._peer_tag, [self._t2_chunk])
            self._t2_at = now + self._rto
            self._t3_at = None

    def _fill_data(self, now: int, packets: list, cur: list, room: int) -> tuple[list, int]:
        budget = self._budget
        pack_hdr = _DATA_HDR.pack
        limit = min(self._cwnd, self._flight + 4 * self._mtu_cc)  # Max.Burst = 4 (RFC 9260 §6.1)
        fast = self._budget if self._fast_rtx_now else 0
        self._fast_rtx_now = False
        stats = self.stats
        sent_any = False
        if self._n_rtx:
            for c in self._sent:
                if not c.rtx:
                    continue
                need = 16 + c.size + (-c.size & 3)
                if fast >= need:
                    fast -= need
                elif self._flight >= limit:
                    break
                if c.msg.expiry_ms is not None and self._maybe_abandon(c, now):
                    continue
                if need > room:
                    packets.append(cur)
                    cur = []
                    room = budget
                m = c.msg
                cur.append(pack_hdr(DATA, c.flags, 16 + c.size, c.tsn & _M32, m.sid, m.ssn, m.ppid))
                cur.append(c.payload)
                if c.size & 3:
                    cur.append(_PADS[c.size & 3])
                room -= need
                c.rtx = False
                self._n_rtx -= 1
                c.in_flight = True
                self._flight += c.size
                c.nsent += 1
                c.misses = 0
                c.sent_ms = now
                stats["retransmitted_chunks"] += 1
                sent_any = True
        # new data
        max_frag = self._max_frag
        sent = self._sent
        buffered = self._buffered
        thresholds = self._bal_threshold
        while self._flight < limit or not self._flight:
            m = self._cur
            if m is None:
                if not self._rr:
                    break
                m = self._pick_message(now)
                if m is None:
                    break
                self._cur = m
            elif m.expiry_ms is not None and now >= m.expiry_ms and self._peer_pr:
                self._abandon(m)
                continue
            total = len(m.data)
            size = total - m.offset
            if size > max_frag:
                size = max_frag
            if self._peer_rwnd < size and self._flight:
                break  # receiver window full (RFC 9260 §6.1 A); a probe goes when nothing is in flight
            flags = 0 if m.ordered else _FLAG_U
            if m.offset == 0:
                flags |= _FLAG_B
                m.first_tsn = self._next_tsn
                if m.ordered:
                    ssn = self._out_ssn.get(m.sid, 0)
                    m.ssn = ssn
                    self._out_ssn[m.sid] = (ssn + 1) & 0xFFFF
            if m.offset + size == total:
                flags |= _FLAG_E
                self._cur = None
            tsn = self._next_tsn
            self._next_tsn = tsn + 1
            payload = m.data if size == total else memoryview(m.data)[m.offset:m.offset + size]
            c = _OutChunk(tsn, m, flags, payload, size)
            m.offset += size
            m.nchunks += 1
            sent.append(c)
            self._sent_bytes += size
            need = 16 + size + (-size & 3)
            if need > room:
                packets.append(cur)
                cur = []
                room = budget
            cur.append(pack_hdr(DATA, flags, 16 + size, tsn & _M32, m.sid, m.ssn, m.ppid))
            cur.append(payload)
            if size & 3:
                cur.append(_PADS[size & 3])
            room -= need
            c.in_flight = True
            c.nsent = 1
            c.sent_ms = now
            stats["data_chunks_sent"] += 1
            self._flight += size
            self._peer_rwnd -= size
            if self._rtt_tsn is None:
                self._rtt_tsn = tsn
            sid = m.sid
            prev = buffered[sid]
            buffered[sid] = prev - size
            self._queued_bytes -= size
            thr = thresholds.get(sid, 0) if thresholds else 0
            if prev > thr >= prev - size:
                self._events.append(("buffered_amount_low", sid, prev - size))
            sent_any = True
        if self._fwd_needed and self._peer_pr:  # messages abandoned just now
            fwd = self._build_forward_tsn()
            if fwd is not None:
                if len(fwd) > room:
                    packets.append(cur)
                    cur = []
                    room = budget
                cur.append(fwd)
                room -= len(fwd)
        if limit < self._cwnd and self._flight >= limit and (self._rr or self._cur is not None):
            self._burst_limited = True
        if sent_any and self._t3_at is None:
            self._t3_at = now + self._rto
        return cur, room

    def _emit_packet(self, tag: int, parts: list) -> None:
        body = b"".join(parts)
        hdr = _COMMON.pack(self.local_port, self.remote_port, tag)
        if _crc_value is not None:
            crc = _crc_extend(_crc_value(hdr + _ZERO4), body)
        else:  # pragma: no cover
            crc = _packet_crc(hdr, body)
        packet = hdr + _CRC.pack(crc) + body
        stats = self.stats
        stats["packets_sent"] += 1
        stats["bytes_sent"] += len(packet)
        self._out.append(packet)

    def _send_now(self, tag: int | None, chunks: list[bytes]) -> None:
        if tag is None:
            return
        self._emit_packet(tag, chunks)

    # ------------------------------------------------------------------ association set-up
    def _extension_params(self) -> bytes:
        return _param(_P_SUPPORTED_EXTENSIONS, bytes((FORWARD_TSN, RE_CONFIG))) + _param(_P_FORWARD_TSN_SUPPORTED, b"")

    def _send_init(self, now: int) -> None:
        body = _INIT.pack(self._local_tag, self._rwnd_max, self._os, self._mis, self._initial_tsn & _M32)
        chunk = _chunk(INIT, 0, body + self._extension_params())
        self._state = COOKIE_WAIT
        self._t1_packet = (0, chunk)
        self._t1_count = 0
        self._t1_rto = self._rto
        self._t1_at = now + self._t1_rto
        self._emit_packet(0, [chunk])

    @staticmethod
    def _parse_init(data: bytes, pos: int, clen: int) -> tuple[int, int, int, int, int, int, bytes | None]:
        if clen < 20:
            raise PacketParseError("sctp", "INIT shorter than 20 bytes")
        tag, a_rwnd, os_, mis, itsn = _INIT.unpack_from(data, pos + 4)
        if tag == 0 or os_ == 0 or mis == 0:
            raise PacketParseError("sctp", "INIT with a zero initiate tag or stream count")
        flags = 0
        cookie = None
        for ptype, start, end in _iter_params(data, pos + 20, pos + clen):
            if ptype == _P_FORWARD_TSN_SUPPORTED:
                flags |= _PEER_PR
            elif ptype == _P_SUPPORTED_EXTENSIONS:
                ext = data[start:end]
                if FORWARD_TSN in ext:
                    flags |= _PEER_PR
                if RE_CONFIG in ext:
                    flags |= _PEER_RECONFIG
            elif ptype == _P_STATE_COOKIE:
                cookie = data[start:end]
        return tag, a_rwnd, os_, mis, itsn, flags, cookie

    def _on_init(self, data: bytes, pos: int, clen: int, now: int) -> None:
        tag, a_rwnd, os_, mis, itsn, flags, _ = self._parse_init(data, pos, clen)
        if self._state in (SHUTDOWN_ACK_SENT, SHUTDOWN_SENT, SHUTDOWN_RECEIVED, SHUTDOWN_PENDING):
            self.stats["dropped_out_of_state"] += 1
            return
        fields = _COOKIE.pack(1, max(now, 0), tag, itsn, a_rwnd, os_, mis, self._local_tag,
                              self._initial_tsn & _M32, flags)
        cookie = fields + hmac.new(self._secret, fields, hashlib.sha256).digest()[:_COOKIE_MAC_LEN]
        body = _INIT.pack(self._local_tag, self._rwnd_max, self._os, self._mis, self._initial_tsn & _M32)
        chunk = _chunk(INIT_ACK, 0, body + self._extension_params() + _param(_P_STATE_COOKIE, cookie))
        self._emit_packet(tag, [chunk])  # the INIT ACK carries the peer's initiate tag

    def _on_init_ack(self, data: bytes, pos: int, clen: int, now: int) -> None:
        if self._state != COOKIE_WAIT:
            self.stats["dropped_out_of_state"] += 1
            return
        tag, a_rwnd, os_, mis, itsn, flags, cookie = self._parse_init(data, pos, clen)
        if cookie is None:
            raise PacketParseError("sctp", "INIT ACK without a state cookie")
        self._pending_peer = (tag, itsn, a_rwnd, os_, mis, flags)
        self._peer_tag = tag
        chunk = _chunk(COOKIE_ECHO, 0, cookie)
        self._state = COOKIE_ECHOED
        self._t1_packet = (tag, chunk)
        self._t1_count = 0
        self._t1_at = now + self._t1_rto
        self._emit_packet(tag, [chunk])

    def _on_cookie_echo(self, data: bytes, pos: int, clen: int, now: int) -> None:
        cookie = data[pos + 4:pos + clen]
        if len(cookie) != _COOKIE_LEN:
            self.stats["dropped_bad_cookie"] += 1
            return
        fields = cookie[:_COOKIE.size]
        mac = hmac.new(self._secret, fields, hashlib.sha256).digest()[:_COOKIE_MAC_LEN]
        if not hmac.compare_digest(mac, cookie[_COOKIE.size:]):
            self.stats["dropped_bad_cookie"] += 1
            return
        ver, ts, peer_tag, peer_itsn, a_rwnd, os_, mis, our_tag, _, flags = _COOKIE.unpack(fields)
        if ver != 1 or our_tag != self._local_tag:
            self.stats["dropped_bad_cookie"] += 1
            return
        if now - ts > _COOKIE_LIFETIME_MS:
            self.stats["dropped_bad_cookie"] += 1
            staleness_us = min((now - ts - _COOKIE_LIFETIME_MS) * 1000, _M32)
            self._emit_packet(peer_tag, [_chunk(ERROR, 0, _PARAM.pack(CAUSE_STALE_COOKIE, 8) + _U32.pack(staleness_us))])
            return
        if self._state in _LIVE:
            if peer_tag == self._peer_tag:
                self._ctrl.append(_chunk(COOKIE_ACK, 0))  # duplicate COOKIE ECHO (§5.2.4 D)
            else:
                self.stats["dropped_out_of_state"] += 1  # association restart: not supported
            return
        self._establish(peer_tag, peer_itsn, a_rwnd, os_, mis, flags)
        self._ctrl.insert(0, _chunk(COOKIE_ACK, 0))

    def _establish(self, peer_tag: int, peer_itsn: int, a_rwnd: int, os_: int, mis: int, flags: int) -> None:
        self._peer_tag = peer_tag
        self._peer_flags = flags
        self._peer_pr = bool(flags & _PEER_PR)
        self._peer_reconfig = bool(flags & _PEER_RECONFIG)
        self._rx_cum = peer_itsn - 1
        self._peer_req_expected = peer_itsn
        self._out_streams = min(self._os, mis)
        self._in_streams = min(self._mis, os_)
        self._peer_rwnd = a_rwnd
        self._ssthresh = a_rwnd
        self._pending_peer = None
        self._t1_at = None
        self._t1_packet = None
        self._state = ESTABLISHED
        if self._hb_interval:
            self._hb_at = self._now + self._hb_interval
        self._started = True
        self._set_public_state("connected")
        self._dirty = True

    def _on_t1(self, now: int) -> None:
        self._t1_at = None
        if self._t1_packet is None or self._state not in (COOKIE_WAIT, COOKIE_ECHOED):
            return
        self.stats["t1_expirations"] += 1
        self._t1_count += 1
        if self._t1_count > self._max_init_retrans:
            self._terminate("failed")
            return
        self._t1_rto = self._backoff(self._t1_rto)
        self._t1_at = now + self._t1_rto
        tag, chunk = self._t1_packet
        self._emit_packet(tag, [chunk])

    def _on_error(self, data: bytes, pos: int, clen: int, now: int) -> None:
        for ptype, _, _ in _iter_params(data, pos + 4, pos + clen):
            self._events.append(("error", ptype))
            if ptype == CAUSE_STALE_COOKIE and self._state == COOKIE_ECHOED:
                self._peer_tag = None
                self._pending_peer = None
                self._send_init(now)  # RFC 9260 §5.2.6: start over

    # ------------------------------------------------------------------ shutdown / termination
    def _on_shutdown(self, data: bytes, pos: int, clen: int, now: int) -> None:
        if clen < 8:
            raise PacketParseError("sctp", "SHUTDOWN shorter than 8 bytes")
        if self._state not in (ESTABLISHED, SHUTDOWN_PENDING, SHUTDOWN_SENT, SHUTDOWN_RECEIVED):
            self.stats["dropped_out_of_state"] += 1
            return
        (cum_w,) = _U32.unpack_from(data, pos + 4)
        self._handle_sack(cum_w, self._peer_rwnd + self._flight, None, now)
        if self._state == SHUTDOWN_SENT:
            # both sides shut down (§9.2): answer with SHUTDOWN ACK
            self._state = SHUTDOWN_ACK_SENT
            self._t2_chunk = _chunk(SHUTDOWN_ACK, 0)
            self._send_now(self._peer_tag, [self._t2_chunk])
            self._t2_at = now + self._rto
        elif self._state in (ESTABLISHED, SHUTDOWN_PENDING):
            self._state = SHUTDOWN_RECEIVED

    def _on_shutdown_ack(self) -> None:
        if self._state in (SHUTDOWN_SENT, SHUTDOWN_ACK_SENT):
            self._send_now(self._peer_tag, [_chunk(SHUTDOWN_COMPLETE, 0)])
            self._terminate("closed")
        else:
            self.stats["dropped_out_of_state"] += 1

    def _on_t2(self, now: int) -> None:
        self._t2_at = None
        if self._t2_chunk is None or self._state not in (SHUTDOWN_SENT, SHUTDOWN_ACK_SENT):
            return
        self._errors += 1
        if self._errors > self._max_retrans:
            self._terminate("closed")
            return
        self._rto = self._backoff(self._rto)
        self._send_now(self._peer_tag, [self._t2_chunk])
        self._t2_at = now + self._rto

    def _terminate(self, public_state: str) -> None:
        self._state = CLOSED
        self._t1_at = self._t2_at = self._t3_at = self._sack_at = None
        self._reconf_at = self._hb_at = None
        self._sack_now = False
        self._ctrl = []
        if self._public_state not in ("closed", "failed"):
            self._set_public_state(public_state)

    def _set_public_state(self, s: str) -> None:
        if s != self._public_state:
            self._public_state = s
            self._events.append(("state", s))

    # ------------------------------------------------------------------ T3-rtx / heartbeat
    def _on_t3(self, now: int) -> None:
        self._t3_at = None
        if not self._sent or self._state not in _LIVE:
            return
        self.stats["t3_expirations"] += 1
        self._errors += 1
        if self._errors > self._max_retrans:
            self._fail_unreachable()
            return
        self._rto = self._backoff(self._rto)  # RFC 9260 §6.3.3 E2
        self._ssthresh = max(self._cwnd // 2, 4 * self._mtu_cc)
        self._cwnd = self._mtu_cc
        self._pba = 0
        self._fr_exit = None
        self._rtt_tsn = None
        for c in self._sent:
            if c.acked or c.abandoned or c.rtx:
                continue
            if self._maybe_abandon(c, now):
                continue
            self._mark_rtx(c)
        if self._peer_pr:
            self._advance_ack_point()
            if self._sent and self._sent[0].abandoned:
                self._fwd_needed = True  # the FORWARD TSN may have been lost
        self._t3_at = now + self._rto

    def _fail_unreachable(self) -> None:
        if self._peer_tag is not None:
            self._send_now(self._peer_tag, [_chunk(ABORT, 0, _PARAM.pack(CAUSE_PROTOCOL_VIOLATION, 4))])
        self._terminate("failed")

    def _on_heartbeat_timer(self, now: int) -> None:
        self._hb_at = None
        if self._state not in _LIVE or not self._hb_interval:
            return
        if self._hb_nonce is not None:
            self._errors += 1  # the last HEARTBEAT went unanswered
            if self._errors > self._max_retrans:
                self._fail_unreachable()
                return
        if not self._sent:  # idle path: T3 covers a busy one
            self._hb_nonce = self._rand32()
            self._ctrl.append(_chunk(HEARTBEAT, 0, _HB_INFO.pack(_P_HEARTBEAT_INFO, 16, now, self._hb_nonce)))
            self.stats["heartbeats_sent"] += 1
        self._hb_at = now + self._hb_interval + self._rto

    def _on_heartbeat_ack(self, data: bytes, pos: int, clen: int, now: int) -> None:
        if clen < 4 + _HB_INFO.size:
            raise PacketParseError("sctp", "HEARTBEAT ACK too short")
        ptype, _, sent_ms, nonce = _HB_INFO.unpack_from(data, pos + 4)
        if ptype != _P_HEARTBEAT_INFO or nonce != self._hb_nonce:
            return
        self._hb_nonce = None
        self._errors = 0
        self._update_rtt(now - sent_ms)

    # ------------------------------------------------------------------ RE-CONFIG (RFC 6525)
    def _start_reset(self, now: int) -> None:
        if self._state != ESTABLISHED:
            return
        cur_sid = self._cur.sid if self._cur is not None else -1
        ready = [sid for sid in self._reset_pending if sid != cur_sid and not self._queues.get(sid)]
        if not ready:
            return
        if self._peer_reconfig:
            ready = ready[:(self._budget - 40) // 2]
        self._reset_pending = [sid for sid in self._reset_pending if sid not in ready]
        if not self._peer_reconfig:
            self._reset_done(tuple(ready))
            return
        seq = self._reconf_seq & _M32
        body = b"".join(_U16.pack(s) for s in ready)
        plen = 16 + len(body)
        param = _RESET_REQ.pack(_P_OUTGOING_SSN_RESET, plen, seq, (self._peer_req_expected - 1) & _M32,
                                (self._next_tsn - 1) & _M32) + body + _pad(plen)
        chunk = _chunk(RE_CONFIG, 0, param)
        self._reconf_req = (seq, tuple(ready), chunk)
        self._ctrl.append(chunk)
        self._reconf_at = now + self._rto

    def _reset_done(self, sids: tuple[int, ...]) -> None:
        for sid in sids:
            self._out_ssn.pop(sid, None)
            self._resetting.discard(sid)
        self._events.append(("outgoing_streams_reset", sids))

    def _on_reconf_timer(self, now: int) -> None:
        self._reconf_at = None
        if self._reconf_req is None or self._state not in _LIVE:
            return
        self._errors += 1
        if self._errors > self._max_retrans:
            self._fail_unreachable()
            return
        self._ctrl.append(self._reconf_req[2])
        self._reconf_at = now + self._rto

    def _on_reconfig(self, data: bytes, pos: int, clen: int, now: int) -> None:
        for ptype, start, end in _iter_params(data, pos + 4, pos + clen):
            if ptype == _P_RECONFIG_RESPONSE:
                if end - start < 8:
                    raise PacketParseError("sctp", "RE-CONFIG response too short")
                seq, result = struct.unpack_from("!II", data, start)
                self._on_reconfig_response(seq, result, now)
                continue
            if end - start < 4:
                raise PacketParseError("sctp", "RE-CONFIG request too short")
            (seq,) = _U32.unpack_from(data, start)
            expected = self._peer_req_expected & _M32
            if seq == ((expected - 1) & _M32):
                self._send_response(seq, self._peer_last_result)  # retransmitted request (§5.2.1)
                continue
            if seq != expected:
                self._send_response(seq, RESULT_BAD_SEQUENCE)
                continue
            self._peer_req_expected += 1
            if ptype == _P_OUTGOING_SSN_RESET:
                if end - start < 12:
                    raise PacketParseError("sctp", "outgoing SSN reset request too short")
                (last_w,) = _U32.unpack_from(data, start + 8)
                sids = tuple(_U16.unpack_from(data, p)[0] for p in range(start + 12, end - 1, 2))
                cum = self._rx_cum
                last = cum + ((last_w - cum + _HALF) & _M32) - _HALF
                if last <= cum:
                    self._reset_incoming(sids)
                    result = RESULT_SUCCESS_PERFORMED
                else:
                    self._deferred_resets.append((seq, last, sids))
                    result = RESULT_IN_PROGRESS
            elif ptype == _P_ADD_OUTGOING_STREAMS:
                if end - start < 6:
                    raise PacketParseError("sctp", "add outgoing streams request too short")
                (extra,) = _U16.unpack_from(data, start + 4)
                self._in_streams = min(self._in_streams + extra, 65535)
                result = RESULT_SUCCESS_PERFORMED
            else:  # incoming SSN reset, SSN/TSN reset, add incoming streams: not offered
                result = RESULT_DENIED
            self._peer_last_result = result
            self._send_response(seq, result)

    def _send_response(self, seq: int, result: int) -> None:
        self._ctrl.append(_chunk(RE_CONFIG, 0, _RESPONSE.pack(_P_RECONFIG_RESPONSE, 12, seq, result)))

    def _reset_incoming(self, sids: tuple[int, ...]) -> None:
        for sid in sids:
            st = self._rx_streams.pop(sid, None)
            if st is not None and st.pending:
                self.stats["dropped_reset_stream"] += len(st.pending)
                for _, payload in st.pending.values():
                    self._rx_held -= len(payload)
        self._events.append(("incoming_streams_reset", sids))

    def _run_deferred_resets(self) -> None:
        while self._deferred_resets and self._deferred_resets[0][1] <= self._rx_cum:
            seq, _, sids = self._deferred_resets.pop(0)
            self._reset_incoming(sids)
            if seq == ((self._peer_req_expected - 1) & _M32):
                self._peer_last_result = RESULT_SUCCESS_PERFORMED
            self._send_response(seq, RESULT_SUCCESS_PERFORMED)
            held, self._deferred_msgs = self._deferred_msgs, []
            for sid, ssn, ppid, payload, tsn in sorted(held, key=lambda x: x[4]):
                self._rx_held -= len(payload)
                self._deliver_ordered(sid, ssn, ppid, payload, tsn)

    def _on_reconfig_response(self, seq: int, result: int, now: int) -> None:
        req = self._reconf_req
        if req is None or seq != req[0]:
            return
        if result == RESULT_IN_PROGRESS:
            self._reconf_at = now + self._rto  # ask again later (§5.2.7)
            return
        self._reconf_req = None
        self._reconf_at = None
        self._reconf_seq += 1
        self._errors = 0
        if result in (RESULT_SUCCESS_NOTHING, RESULT_SUCCESS_PERFORMED):
            self._reset_done(req[1])
        else:
            for sid in req[1]:
                self._resetting.discard(sid)
            self._events.append(("outgoing_streams_reset_failed", req[1], result))
        self._dirty = True
