"""ICE over TCP, sans-I/O: RFC 4571 framing and the first-packet checks of a shared port.

- :class:`Rfc4571Deframer` turns a TCP byte stream into the datagrams it carries (RFC 4571 §2:
  each one prefixed by its 16-bit big-endian length), as RFC 6544 §3 mandates for ICE-TCP.
  A frame longer than ``max_frame_bytes``, or whose first byte is not one RFC 7983 demultiplexes
  (STUN 0-3, DTLS 20-63, RTP/RTCP 128-191), means the stream is garbage (or out of step): the
  deframer raises and the owner closes the connection (mediasoup closes a TCP connection whose
  framing is broken, ``TcpConnection::UserOnTcpConnectionRead``).
- :func:`frame` adds the length prefix to one outgoing datagram.
- :func:`stun_local_ufrag` reads the local part of a Binding request's USERNAME without a full
  parse: a WebRtcServer routes a packet from an unknown tuple by it (mediasoup
  ``WebRtcServer::GetLocalIceUsernameFragmentFromReceivedStunPacket``).

No sockets, no clock.
"""

from __future__ import annotations

import struct

from .errors import PacketParseError

__all__ = ["FRAME_HEADER_BYTES", "MAX_FRAME_BYTES", "Rfc4571Deframer", "frame", "stun_local_ufrag"]

FRAME_HEADER_BYTES = 2
#: Largest datagram accepted in a frame. RTP/DTLS datagrams of WebRTC stay under the path MTU
#: (~1500 bytes); 16 KiB leaves room for any jumbo packet while bounding the buffer.
MAX_FRAME_BYTES = 16384

_U16 = struct.Struct("!H")
_STUN_HEADER = struct.Struct("!HHI12s")
_STUN_ATTR = struct.Struct("!HH")
_STUN_COOKIE = 0x2112A442
_STUN_BINDING_REQUEST = 0x0001
_ATTR_USERNAME = 0x0006


def _demuxable(b0: int) -> bool:
    """RFC 7983 §7 first-byte ranges that WebRTC uses: STUN, DTLS, RTP/RTCP."""
    return b0 < 4 or 19 < b0 < 64 or 127 < b0 < 192


class Rfc4571Deframer:
    """Reassembles RFC 4571 frames from TCP reads of any size.

    ``feed(data) -> list[bytes]`` returns the complete datagrams, in order (a read may hold part
    of a frame, one frame, or several). Raises :class:`PacketParseError` (``kind "ice-tcp"``,
    ``reason`` "oversize" | "garbage") when the stream cannot be WebRTC: a length above
    ``max_frame_bytes`` or a datagram whose first byte RFC 7983 does not classify. After a raise
    the deframer is unusable (the owner closes the connection). Zero-length frames are skipped and
    counted in ``empty_frames``. Counters: ``frames``, ``bytes_received``.
    """

    __slots__ = ("_buf", "bytes_received", "empty_frames", "failed", "frames", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if type(max_frame_bytes) is not int or not 1 <= max_frame_bytes <= 0xFFFF:
            raise ValueError("max_frame_bytes must be an int in 1..65535")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self.frames = 0
        self.bytes_received = 0
        self.empty_frames = 0
        self.failed: str | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held back (at most ``max_frame_bytes + 1``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.failed is not None:
            raise PacketParseError("ice-tcp", self.failed)
        self.bytes_received += len(data)
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        limit = self.max_frame_bytes
        while end - pos >= FRAME_HEADER_BYTES:
            (length,) = _U16.unpack_from(buf, pos)
            if length > limit:
                self.failed = "oversize"
                raise PacketParseError("ice-tcp", "oversize")
            if length == 0:
                self.empty_frames += 1
                pos += FRAME_HEADER_BYTES
                continue
            if end - pos < FRAME_HEADER_BYTES + 1:
                break
            if not _demuxable(buf[pos + FRAME_HEADER_BYTES]):
                self.failed = "garbage"
                raise PacketParseError("ice-tcp", "garbage")
            if end - pos < FRAME_HEADER_BYTES + length:
                break
            start = pos + FRAME_HEADER_BYTES
            out.append(bytes(buf[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]
        self.frames += len(out)
        return out


def frame(datagram: bytes | bytearray | memoryview) -> bytes:
    """``datagram`` with its RFC 4571 length prefix. Raises ValueError above 65535 bytes."""
    n = len(datagram)
    if n > 0xFFFF:
        raise ValueError("datagram: at most 65535 bytes fit an RFC 4571 frame")
    return _U16.pack(n) + bytes(datagram)


def stun_local_ufrag(data: bytes | memoryview) -> str | None:
    """The local username fragment of a STUN Binding request: USERNAME up to its first ``:``
    (RFC 8445 §7.2.2: ``"<receiver ufrag>:<sender ufrag>"``). None when ``data`` is not a Binding
    request with the magic cookie and a well-formed USERNAME. Never raises; integrity is checked
    later by the transport's ICE server."""
    n = len(data)
    if n < 20 or data[0] > 3:
        return None
    msg_type, msg_len, cookie, _tid = _STUN_HEADER.unpack_from(data, 0)
    if msg_type != _STUN_BINDING_REQUEST or cookie != _STUN_COOKIE or msg_len + 20 > n:
        return None
    pos, end = 20, 20 + msg_len
    while pos + 4 <= end:
        attr_type, attr_len = _STUN_ATTR.unpack_from(data, pos)
        value_end = pos + 4 + attr_len
        if value_end > end:
            return None
        if attr_type == _ATTR_USERNAME:
            try:
                username = bytes(data[pos + 4 : value_end]).decode("utf-8")
            except UnicodeDecodeError:
                return None
            ufrag, sep, _ = username.partition(":")
            return ufrag if sep and ufrag else None
        pos = value_end + ((4 - attr_len % 4) % 4)
    return None
