"""Demultiplexing of datagrams that share one 5-tuple (RFC 7983 §7, RFC 5761 §4).

A WebRTC transport receives STUN, DTLS and SRTP/SRTCP on the same socket. The first byte of the
datagram says which protocol it is (RFC 7983 §7, the "Figure 3" table):

====================  =================
first byte            protocol
====================  =================
0..3                  STUN      (:data:`STUN`)
16..19                ZRTP      (:data:`UNKNOWN`, not supported)
20..63                DTLS      (:data:`DTLS`)
64..79                TURN channel (:data:`UNKNOWN`, we are not a TURN server)
128..191              RTP/RTCP  (:data:`RTP_OR_RTCP`)
anything else         drop      (:data:`UNKNOWN`)
====================  =================

RTP and RTCP then split on the second byte (:func:`is_rtcp`, RFC 5761 §4).

Both functions are on the per-packet path: one table lookup / two comparisons, no allocation.
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "STUN", "DTLS", "RTP_OR_RTCP", "classify", "classify_datagram", "is_rtcp"]

UNKNOWN = 0
"""Not a protocol we handle (ZRTP, TURN channel data, reserved ranges): drop and count."""
STUN = 1
"""STUN message (first byte 0..3)."""
DTLS = 2
"""DTLS record (first byte 20..63)."""
RTP_OR_RTCP = 3
"""RTP or RTCP packet, SRTP-protected on a WebRTC transport (first byte 128..191)."""


def _build_table() -> bytes:
    table = bytearray(256)  # UNKNOWN everywhere
    for b in range(0, 4):
        table[b] = STUN
    for b in range(20, 64):
        table[b] = DTLS
    for b in range(128, 192):
        table[b] = RTP_OR_RTCP
    return bytes(table)


_TABLE = _build_table()


def classify(first_byte: int) -> int:
    """Classify a datagram by its first byte per RFC 7983 §7.

    ``first_byte`` is an int 0..255 (``data[0]``). Returns one of :data:`STUN`, :data:`DTLS`,
    :data:`RTP_OR_RTCP`, :data:`UNKNOWN`. Raises ``ValueError`` if ``first_byte`` is outside
    0..255 and ``TypeError`` if it is not an int.
    """
    if 0 <= first_byte <= 255:
        return _TABLE[first_byte]
    raise ValueError(f"first_byte must be in 0..255, got {first_byte!r}")


def classify_datagram(data: bytes) -> int:
    """Classify a whole datagram (RFC 7983 §7); an empty datagram is :data:`UNKNOWN`.

    ``data`` is any bytes-like object. Same return values as :func:`classify`.
    """
    return _TABLE[data[0]] if data else UNKNOWN


def is_rtcp(data: bytes) -> bool:
    """True if a datagram classified :data:`RTP_OR_RTCP` is RTCP (RFC 5761 §4).

    The second byte (marker bit + payload type in RTP, packet type in RTCP) in 192..223 means
    RTCP (SR=200, RR=201, SDES=202, BYE=203, APP=204, RTPFB=205, PSFB=206, XR=207, ...); RTP
    payload types 64..95 are forbidden with rtcp-mux precisely so that this test is exact.
    A datagram shorter than 2 bytes is not RTCP.
    """
    return len(data) > 1 and 192 <= data[1] <= 223
