"""The per-packet "template" a producer builds once and every consumer patches.

mediasoup mangles each received packet into the router's numbering (``Producer::MangleRtpPacket``:
payload type, SSRC and header-extension ids) and then every consumer rewrites SSRC, sequence
number and the ``mid`` extension on the shared packet before sending. We build the normalised
packet once as immutable ``bytes``; each consumer copies it into the send buffer
(``Transport.scratch``) and patches fixed offsets there, so nothing is shared or restored, and
retransmission buffers keep a reference to the template instead of a copy per consumer.

Layout of ``Template.data`` (RFC 3550 §5.1, RFC 8285 §4.2 one-byte extensions):

- fixed header with the router payload type and the producer's mapped SSRC, X bit set;
- the producer's CSRCs, unchanged;
- extension block ``0xBEDE``: a 9-byte ``mid`` slot (id/len byte + up to 8 bytes, zero = padding
  until a consumer fills it), a 3-byte transport-wide-cc slot (video), then every extension the
  router forwards for this kind, with router ids; zero padding to a 32-bit boundary;
- the payload and any RTP padding, unchanged.

Zero bytes inside a one-byte extension block are padding (RFC 8285 §4.2), so a consumer removes
an extension it did not negotiate by zeroing its element, without moving any byte.
"""

from __future__ import annotations

import struct

from .errors import PacketParseError
from .rtp import iter_extensions

MID_SLOT_LEN = 9  # 1 header byte + mid of up to 8 bytes (mediasoup mids are at most 8 digits)
TWCC_SLOT_LEN = 3

_FIXED = struct.Struct("!BBHII")
_PAD = [b"", b"\x00", b"\x00\x00", b"\x00\x00\x00"]
_EXT_HEADERS = [b"\xbe\xde" + struct.pack("!H", words) for words in range(256)]  # 0xBEDE + length


class Template:
    """One normalised packet.

    Fields: ``data`` (bytes), ``seq`` (16-bit input seq), ``timestamp`` (32-bit),
    ``mid_off`` / ``twcc_off`` (offsets of the reserved slots, -1 when absent), ``exts``
    (tuple of ``(router_ext_id, offset, element_len_bytes)`` for forwarded extensions),
    ``payload_off`` (first payload byte), ``marker`` (bool).
    """

    __slots__ = ("data", "seq", "timestamp", "mid_off", "twcc_off", "exts", "payload_off", "marker")

    def __init__(self, data, seq, timestamp, mid_off, twcc_off, exts, payload_off, marker):
        self.data = data
        self.seq = seq
        self.timestamp = timestamp
        self.mid_off = mid_off
        self.twcc_off = twcc_off
        self.exts = exts
        self.payload_off = payload_off
        self.marker = marker


class TemplateBuilder:
    """Builds :class:`Template` objects for one producer.

    ``producer_ext_uris``: the producer's ``{id: uri}``; ``router_ext_ids``: ``{uri: router_id}``
    of the extensions consumers of this producer may receive (the consumable parameters);
    ``drop_uris``: extensions never copied (mid, rid, rrid and transport-wide-cc, which the
    sending transport stamps itself). Extensions with values longer than 16 bytes (two-byte form
    only) are not forwarded.
    """

    def __init__(self, *, producer_ext_uris: dict, router_ext_ids: dict, mid_uri: str, twcc_uri: str, drop_uris) -> None:
        self.keep: dict[int, int] = {}
        for pid, uri in producer_ext_uris.items():
            rid = router_ext_ids.get(uri)
            if rid is not None and uri not in drop_uris and 0 < rid < 15:
                self.keep[pid] = rid
        self.has_mid = mid_uri in router_ext_ids
        self.has_twcc = twcc_uri in router_ext_ids
        self.reserved = (MID_SLOT_LEN if self.has_mid else 0) + (TWCC_SLOT_LEN if self.has_twcc else 0)
        self._reserved_zeros = bytes(self.reserved)

    def build(self, data: bytes, hdr: tuple, payload_type: int, ssrc: int) -> Template:
        """Normalise one packet; ``hdr`` is ``parse_rtp_header(data)``.

        One pass over the one-byte extension elements (the WebRTC case) copies the kept ones
        with router ids; the packet is then assembled with a single join. Malformed elements
        are not forwarded (the payload is). Zero-length two-byte elements are not forwarded.
        """
        b0 = data[0]
        cc = b0 & 0x0F
        csrc_end = 12 + 4 * cc
        keep = self.keep
        ext = bytearray(self._reserved_zeros)
        exts: list = []
        ext_profile = hdr[6]
        if ext_profile and keep:
            base = csrc_end + 4  # offset of the first element in the template
            if ext_profile == 0xBEDE:
                pos, end = hdr[7], hdr[8]
                while pos < end:
                    b = data[pos]
                    if b == 0:
                        pos += 1
                        continue
                    eid = b >> 4
                    if eid == 15:
                        break
                    length = (b & 0x0F) + 1
                    pos += 1
                    if pos + length > end:  # malformed: forward the payload without elements
                        ext = bytearray(self._reserved_zeros)
                        exts = []
                        break
                    rid = keep.get(eid)
                    if rid is not None:
                        exts.append((rid, base + len(ext), 1 + length))
                        ext.append((rid << 4) | (length - 1))
                        ext += data[pos : pos + length]
                    pos += length
            else:
                try:
                    found = iter_extensions(data, ext_profile, hdr[7], hdr[8])
                except PacketParseError:
                    found = ()
                for eid, off, length in found:
                    rid = keep.get(eid)
                    if rid is not None and 0 < length <= 16:
                        exts.append((rid, base + len(ext), 1 + length))
                        ext.append((rid << 4) | (length - 1))
                        ext += data[off : off + length]
        seq = hdr[2]
        timestamp = hdr[3]
        marker = hdr[1]
        second = (0x80 if marker else 0) | payload_type
        n = len(ext)
        if n == 0:
            out = _FIXED.pack(0x80 | (b0 & 0x20) | cc, second, seq, timestamp, ssrc) + data[12:csrc_end] + data[hdr[5]:]
            return Template(out, seq, timestamp, -1, -1, (), csrc_end, marker)
        words = (n + 3) >> 2
        if n & 3:
            ext += _PAD[4 - (n & 3)]
        out = b"".join((_FIXED.pack(0x90 | (b0 & 0x20) | cc, second, seq, timestamp, ssrc), data[12:csrc_end],
                        _EXT_HEADERS[words] if words < 256 else b"\xbe\xde" + struct.pack("!H", words), ext, data[hdr[5]:]))
        mid_off = csrc_end + 4 if self.has_mid else -1
        twcc_off = (csrc_end + 4 + (MID_SLOT_LEN if self.has_mid else 0)) if self.has_twcc else -1
        return Template(out, seq, timestamp, mid_off, twcc_off, tuple(exts), csrc_end + 4 + 4 * words, marker)
