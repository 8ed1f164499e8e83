"""The per-packet "template" a producer builds once and every consumer patches.

mediasoup mangles each received packet into the router's numbering (``Producer::MangleRtpPacket``:
payload type, SSRC and header-extension ids) and then every consumer rewrites SSRC, sequence
number and the ``mid`` extension on the shared packet before sending. We build the normalised
packet once as immutable ``bytes``; each consumer copies it into its own ``bytearray`` and patches
fixed offsets, so nothing is shared or restored.

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

    def build(self, data: bytes, hdr: tuple, payload_type: int, ssrc: int) -> Template:
        """Normalise one packet; ``hdr`` is ``parse_rtp_header(data)``."""
        marker = hdr[1]
        seq = hdr[2]
        timestamp = hdr[3]
        header_len = hdr[5]
        ext_profile, ext_start, ext_end = hdr[6], hdr[7], hdr[8]
        cc = data[0] & 0x0F
        csrc_end = 12 + 4 * cc
        keep = self.keep
        elements = []
        if ext_profile and keep:
            try:
                found = iter_extensions(data, ext_profile, ext_start, ext_end)
            except PacketParseError:
                found = ()  # malformed elements: forward the payload without them
            for ext_id, off, length in found:
                rid = keep.get(ext_id)
                if rid is not None and length <= 16:
                    elements.append((rid, off, length))
        ext_len = self.reserved + sum(1 + n for _, _, n in elements)
        out = bytearray(data[:csrc_end])
        padding = data[0] & 0x20
        if ext_len == 0:
            out[0] = 0x80 | padding | cc
            _FIXED.pack_into(out, 0, out[0], (0x80 if marker else 0) | payload_type, seq, timestamp, ssrc)
            payload_off = len(out)
            out += data[header_len:]
            return Template(bytes(out), seq, timestamp, -1, -1, (), payload_off, marker)
        words = (ext_len + 3) // 4
        _FIXED.pack_into(out, 0, 0x90 | padding | cc, (0x80 if marker else 0) | payload_type, seq, timestamp, ssrc)
        out += b"\xbe\xde" + struct.pack("!H", words)
        pos = len(out)
        mid_off = twcc_off = -1
        if self.has_mid:
            mid_off = pos
            pos += MID_SLOT_LEN
        if self.has_twcc:
            twcc_off = pos
            pos += TWCC_SLOT_LEN
        out += bytes(words * 4)
        exts = []
        for rid, off, length in elements:
            out[pos] = (rid << 4) | (length - 1)
            out[pos + 1 : pos + 1 + length] = data[off : off + length]
            exts.append((rid, pos, 1 + length))
            pos += 1 + length
        payload_off = len(out)
        out += data[header_len:]
        return Template(bytes(out), seq, timestamp, mid_off, twcc_off, tuple(exts), payload_off, marker)
