"""Consumer: one outbound copy of a producer on a transport (runs inside the WorkerActor).

Per packet (``send_rtp``) it copies the producer's template into its transport's send buffer
(``transport.scratch``: preallocated C memory, SRTP-protected and sent in place), writes its own
SSRC and a continuous sequence number (``SeqRewriter``: no gaps across pause/resume or dropped
packets), fills its ``mid`` slot, zeroes the extensions it did not negotiate, and hands the
packet to ``transport.send_scratch_rtp``. The retransmission buffer (mediasoup: 2 s of video,
1 s of audio) keeps a reference to the shared template, not a copy: a NACKed packet is rebuilt
from it with the seq it was sent with, so forwarding allocates nothing per consumer.

After a start, a resume or a producer resume, a video consumer forwards nothing until a
keyframe and asks the producer for one (mediasoup ``SimpleConsumer`` "syncRequired").
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from raysfu.transport import rtcp
from raysfu.transport.nack import RetransmissionBuffer
from raysfu.transport.rtp import rtx_wrap
from raysfu.transport.rtp_stream import SendStreamStats
from raysfu.transport.rtp_template import MID_SLOT_LEN, TWCC_SLOT_LEN, Template
from raysfu.transport.seq import SeqRewriter

from .producer import URI_MID, URI_TWCC

if TYPE_CHECKING:  # pragma: no cover
    from .producer import Producer
    from .webrtc_transport import Transport

_SEQ_TS_SSRC = struct.Struct("!HII")
_ZEROS = [bytes(n) for n in range(32)]


class Consumer:
    """In-actor consumer state. Public fields mirror mediasoup's ``Consumer`` getters."""

    def __init__(
        self,
        *,
        consumer_id: str,
        transport: "Transport",
        producer: "Producer",
        rtp_parameters: dict,
        paused: bool,
        app_data: Any,
        consumer_type: str = "simple",
    ) -> None:
        self.id = consumer_id
        self.transport = transport
        self.producer = producer
        self.producer_id = producer.id
        self.kind = producer.kind
        self.is_video = producer.kind == "video"
        self.rtp_parameters = rtp_parameters
        self.type = consumer_type
        self.paused = paused
        self.producer_paused = producer.paused
        self.app_data = app_data
        self.priority = 1
        self.closed = False

        enc = rtp_parameters["encodings"][0]
        self.ssrc: int = enc["ssrc"]
        self.rtx_ssrc: int | None = (enc.get("rtx") or {}).get("ssrc")
        media = rtp_parameters["codecs"][0]
        self.mime_type = media["mimeType"]
        self.clock_rate = media["clockRate"]
        self.payload_type = media["payloadType"]
        self.rtx_payload_type: int | None = None
        for c in rtp_parameters["codecs"][1:]:
            if c["mimeType"].lower().endswith("/rtx") and c.get("parameters", {}).get("apt") == self.payload_type:
                self.rtx_payload_type = c["payloadType"]
        if self.rtx_payload_type is None:
            self.rtx_ssrc = None
        self.nack_enabled = any(fb.get("type") == "nack" and not fb.get("parameter") for fb in media.get("rtcpFeedback", []))

        exts = {e["uri"]: e["id"] for e in rtp_parameters.get("headerExtensions", [])}
        self.allowed_ext_ids = frozenset(exts.values())
        mid = rtp_parameters.get("mid") or ""
        mid_id = exts.get(URI_MID, 0)
        if mid_id and 0 < len(mid) <= MID_SLOT_LEN - 1:
            slot = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid.encode()
            self.mid_slot = slot + bytes(MID_SLOT_LEN - len(slot))
        else:
            self.mid_slot = bytes(MID_SLOT_LEN)
        self.twcc_id = exts.get(URI_TWCC, 0)
        self._twcc_byte = (self.twcc_id << 4) | 1  # one-byte element header, 2-byte value
        # Router extension ids the producer forwards but this consumer did not negotiate: their
        # elements are zeroed (padding) in each copy. Usually empty, and then skipped.
        self._zero_ext_ids = frozenset(producer.template.keep.values()) - self.allowed_ext_ids
        # Offset of the twcc slot relative to the end of the 4-byte extension header; the
        # template layout is fixed per producer (see raysfu.transport.rtp_template).
        self._twcc_rel = MID_SLOT_LEN if producer.template.has_mid else 0
        self.cname = (rtp_parameters.get("rtcp") or {}).get("cname", "")

        self.seq = SeqRewriter()
        self.sync_required = True
        self.rtx_seq = 0
        self.retransmissions = RetransmissionBuffer(max_items=2500, max_age_ms=2000 if self.is_video else 1000)
        self.stats = SendStreamStats(self.ssrc, self.clock_rate, kind=self.kind, mime_type=self.mime_type, rtx_ssrc=self.rtx_ssrc)
        self.drops: dict[str, int] = {}

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        return not (self.paused or self.producer_paused or self.closed)

    def set_paused(self, paused: bool, now_ms: int) -> None:
        was_active = self.active
        self.paused = paused
        self._after_state_change(was_active, now_ms)

    def set_producer_paused(self, paused: bool, now_ms: int) -> None:
        was_active = self.active
        self.producer_paused = paused
        self._after_state_change(was_active, now_ms)

    def _after_state_change(self, was_active: bool, now_ms: int) -> None:
        if self.active and not was_active:
            self.sync_required = True
            self.producer.request_key_frame(now_ms)

    # ------------------------------------------------------------------ packets
    def send_rtp(self, t, ext_seq: int, keyframe: bool, now_ms: int) -> None:
        """Forward one producer template (see ``Template``) to this consumer's remote."""
        if self.paused or self.producer_paused:
            return
        if self.sync_required:
            if self.is_video and not keyframe:
                self.drops["waiting_keyframe"] = self.drops.get("waiting_keyframe", 0) + 1
                return
            self.seq.sync(ext_seq)
            self.sync_required = False
        sq = self.seq
        newest = False
        if ext_seq > sq._max_input and sq._started and not sq._dropped:
            # SeqRewriter.input's in-order case, inlined (every packet takes it): the output is
            # the input plus the base, and it is the newest output
            sq._max_input = ext_seq
            out_seq = ext_seq + sq._base
            if out_seq > sq._max_output:
                sq._max_output = out_seq
                newest = True
            out_seq &= 0xFFFF
        else:
            out_seq = sq.input(ext_seq)
            if out_seq is None:
                self.drops["old_seq"] = self.drops.get("old_seq", 0) + 1
                return
        transport = self.transport
        # self._write(buf, t, out_seq), inlined (the per-consumer step of every packet)
        buf = transport.scratch
        data = t.data
        n = len(data)
        buf[:n] = data
        ts = t.timestamp
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, ts, self.ssrc)
        mid_off = t.mid_off
        if mid_off >= 0:
            buf[mid_off : mid_off + MID_SLOT_LEN] = self.mid_slot
        if self._zero_ext_ids:
            zero = self._zero_ext_ids
            for ext_id, off, size in t.exts:
                if ext_id in zero:
                    buf[off : off + size] = _ZEROS[size]
        twcc_off = t.twcc_off if self.twcc_id else -1
        if twcc_off >= 0:
            buf[twcc_off] = self._twcc_byte
        if self.nack_enabled:
            rb = self.retransmissions
            i = out_seq & rb._mask
            packets = rb._packets
            if newest and (rb._mask == rb._full_mask or packets[i] is None
                           or now_ms - rb._stored_at[i] > rb.max_age_ms):
                # RetransmissionBuffer.store's case of a newest seq whose slot needs no growth
                # (full-size ring, empty or stale slot), inlined
                rb._seqs[i] = out_seq
                packets[i] = t
                rb._stored_at[i] = now_ms
                rb._newest = out_seq
            else:
                rb.store(out_seq, t, now_ms)
        st = self.stats  # SendStreamStats.on_packet, inlined
        st.packet_count += 1
        st.byte_count += n
        m = st._max_ts
        if m is None:
            st.on_first_packet(ts, n, now_ms)
        elif 0 < ((ts - m) & 0xFFFFFFFF) < 0x80000000:
            st._max_ts = ts
            st._max_ts_ms = now_ms
        transport.send_scratch_rtp(n, twcc_off)

    def _write(self, buf, t: Template, out_seq: int) -> int:
        """This consumer's copy of template ``t`` with seq ``out_seq`` into ``buf`` (a writable
        buffer of at least ``len(t.data)`` bytes); returns its length in bytes."""
        data = t.data
        n = len(data)
        buf[:n] = data
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, t.timestamp, self.ssrc)
        mid_off = t.mid_off
        if mid_off >= 0:
            buf[mid_off : mid_off + MID_SLOT_LEN] = self.mid_slot
        if self._zero_ext_ids:
            zero = self._zero_ext_ids
            for ext_id, off, size in t.exts:
                if ext_id in zero:
                    buf[off : off + size] = _ZEROS[size]
        if self.twcc_id and t.twcc_off >= 0:
            buf[t.twcc_off] = self._twcc_byte
        return n

    # ------------------------------------------------------------------ RTCP from the remote
    def receive_nack(self, seqs: list[int], now_ms: int) -> None:
        """Answer a Generic NACK (RFC 4585 §6.2.1) from the retransmission buffer, as RTX
        (RFC 4588) when negotiated. Retransmissions never reach the producer (mediasoup)."""
        self.stats.on_nack_received(len(seqs))
        transport = self.transport
        buf = transport.scratch
        for seq in seqs:
            packet = self.retransmissions.get(seq, now_ms)
            if packet is None:
                continue
            if type(packet) is Template:
                n = self._write(buf, packet, seq & 0xFFFF)
                twcc_off = packet.twcc_off if self.twcc_id else -1
            else:  # a finished packet (subclasses that store their own copies)
                n = len(packet)
                buf[:n] = packet
                twcc_off = self._twcc_offset(packet)
            if self.rtx_ssrc is not None:
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                out = rtx_wrap(buf[:n], self.rtx_payload_type, self.rtx_ssrc, self.rtx_seq)
                n = len(out)
                buf[:n] = out
            self.stats.on_retransmitted(n, now_ms)
            transport.send_scratch_rtp(n, twcc_off)

    def _twcc_offset(self, packet) -> int:
        if not self.twcc_id or not (packet[0] & 0x10):
            return -1
        off = 12 + 4 * (packet[0] & 0x0F) + 4 + self._twcc_rel
        return off if off + TWCC_SLOT_LEN <= len(packet) and packet[off] >> 4 == self.twcc_id else -1

    def receive_key_frame_request(self, fb: str, now_ms: int) -> None:
        """PLI or FIR from the remote: counted, then relayed to the producer (throttled there)."""
        if fb == "fir":
            self.stats.fir_count += 1
        else:
            self.stats.pli_count += 1
        if self.active:
            self.producer.request_key_frame(now_ms)

    def request_key_frame(self, now_ms: int) -> None:
        """mediasoup ``consumer.requestKeyFrame()``."""
        if self.active:
            self.producer.request_key_frame(now_ms)

    def receive_rr_block(self, block: tuple, now_ms: int) -> None:
        rtt_ms = self.stats.on_rr_block(block, now_ms)
        if rtt_ms is not None:
            self.retransmissions.set_rtt(rtt_ms)

    def build_rtcp_report(self, now_ms: int, unix_ms: int) -> bytes | None:
        """SR + SDES CNAME for this stream (RFC 3550 §6.4.1), or None before the first packet."""
        fields = self.stats.build_sr(now_ms, unix_ms)
        if fields is None:
            return None
        return rtcp.build_sr(*fields) + rtcp.build_sdes(
            [(self.ssrc, self.cname)]
        )

    # ------------------------------------------------------------------ info
    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``ConsumerStat[]``: ``[outbound-rtp of this consumer, inbound-rtp of the producer]``."""
        s = self.stats.to_stats(now_ms)
        if self.rtx_ssrc is not None:
            s["rtxSsrc"] = self.rtx_ssrc
        return [s] + self.producer.get_stats(now_ms)

    @property
    def score(self) -> int:
        return self.stats.score

    def score_dict(self) -> dict:
        return {"score": self.score, "producerScore": self.producer.score, "producerScores": [self.producer.score]}

    def dump(self) -> dict:
        return {
            "id": self.id,
            "producerId": self.producer_id,
            "kind": self.kind,
            "type": self.type,
            "rtpParameters": self.rtp_parameters,
            "consumableRtpEncodings": self.producer.consumable_rtp_parameters.get("encodings", []),
            "supportedCodecPayloadTypes": [c["payloadType"] for c in self.rtp_parameters["codecs"]],
            "paused": self.paused,
            "producerPaused": self.producer_paused,
            "priority": self.priority,
            "traceEventTypes": [],
            "rtpStream": {"params": {"ssrc": self.ssrc, "rtxSsrc": self.rtx_ssrc, "mimeType": self.mime_type, "clockRate": self.clock_rate}},
            "droppedPackets": dict(self.drops),
        }
