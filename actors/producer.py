"""Producer: one inbound media source on a transport (runs inside the WorkerActor).

Per packet (``receive_rtp``) it unwraps RTX, extends the sequence number to 64 bits, updates the
receive stats, feeds the NACK generator, detects keyframes, and builds **one** normalised copy of
the packet (the "template": router payload type, mapped SSRC, router extension ids, a reserved
``mid`` slot and a transport-wide-cc slot) that every consumer copies and patches. That is
mediasoup's ``Producer::MangleRtpPacket`` done once per packet instead of once per consumer.

One encoding per producer for now (``type`` "simple"); simulcast and SVC are a later issue and
raise :class:`UnsupportedError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raysfu.transport import rtcp
from raysfu.transport.errors import PacketParseError
from raysfu.transport.keyframe import KeyFrameRequestManager
from raysfu.transport.nack import NackGenerator
from raysfu.transport.rtp import find_extension, is_keyframe, parse_rtp_header, rtx_unwrap
from raysfu.transport.rtp_stream import RecvStreamStats
from raysfu.transport.seq import SeqUnwrapper
from raysfu.transport.srtp import MAX_PACKET_BYTES

from raysfu.transport.rtp_template import TemplateBuilder
from raysfu.transport.layers import LayerMonitor, LongExtTemplateBuilder, PacketLayerReader  # simulcast / SVC (issue 5)
from raysfu.transport.ortc import parse_scalability_mode  # simulcast / SVC (issue 5)

if TYPE_CHECKING:  # pragma: no cover
    from .consumer import Consumer
    from .webrtc_transport import Transport

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"



class Producer:
    """In-actor producer state. Public fields mirror mediasoup's ``Producer`` getters."""

    def __init__(
        self,
        *,
        producer_id: str,
        transport: "Transport",
        kind: str,
        rtp_parameters: dict,
        rtp_mapping: dict,
        consumable_rtp_parameters: dict,
        paused: bool,
        key_frame_request_delay_ms: int,
        app_data: Any,
    ) -> None:
        encodings = rtp_parameters["encodings"]  # one: Transport.produce rejects other types
        self.id = producer_id
        self.transport = transport
        self.kind = kind
        self.rtp_parameters = rtp_parameters
        self.rtp_mapping = rtp_mapping
        self.consumable_rtp_parameters = consumable_rtp_parameters
        self.paused = paused
        self.app_data = app_data
        self.type = "simple"
        self.closed = False
        self.consumers: list["Consumer"] = []

        media_codec = next(c for c in rtp_parameters["codecs"] if not c["mimeType"].lower().endswith("/rtx"))
        self.mime_type: str = media_codec["mimeType"]
        self.codec_name = self.mime_type.split("/", 1)[1].lower()
        self.clock_rate: int = media_codec["clockRate"]
        self.payload_type: int = media_codec["payloadType"]
        pt_map = {m["payloadType"]: m["mappedPayloadType"] for m in rtp_mapping["codecs"]}
        self.mapped_payload_type: int = pt_map[self.payload_type]
        self.rtx_payload_type: int | None = None
        for c in rtp_parameters["codecs"]:
            if c["mimeType"].lower().endswith("/rtx") and c.get("parameters", {}).get("apt") == self.payload_type:
                self.rtx_payload_type = c["payloadType"]
        enc = encodings[0]
        self.ssrc: int | None = enc.get("ssrc")
        self.rtx_ssrc: int | None = (enc.get("rtx") or {}).get("ssrc")
        self.rid: str | None = enc.get("rid")
        self.mapped_ssrc: int = rtp_mapping["encodings"][0]["mappedSsrc"]

        # Extension ids: the producer's own → uri; the router's uri → id for this kind.
        self.ext_uri_by_id = {e["id"]: e["uri"] for e in rtp_parameters.get("headerExtensions", [])}
        self.mid_ext_id = next((i for i, u in self.ext_uri_by_id.items() if u == URI_MID), 0)
        self.rid_ext_id = next((i for i, u in self.ext_uri_by_id.items() if u == URI_RID), 0)
        consumable_exts = {e["uri"]: e["id"] for e in consumable_rtp_parameters.get("headerExtensions", [])}
        self.template = TemplateBuilder(
            producer_ext_uris=self.ext_uri_by_id,
            router_ext_ids=consumable_exts,
            mid_uri=URI_MID,
            twcc_uri=URI_TWCC,
            # --- simulcast / SVC (issue 5): the dependency descriptor only through LayeredProducer
            # (two-byte template, SvcConsumer); simple consumers never get one cut short ---
            drop_uris=(URI_MID, URI_RID, URI_RRID, URI_TWCC, URI_DEPENDENCY_DESCRIPTOR),
        )
        self.audio_level_ext_id = next((i for i, u in self.ext_uri_by_id.items() if u == URI_AUDIO_LEVEL), 0)
        self.rtp_observers: list = []  # rtp observers (issue 7): RtpObservers holding this producer

        self.is_video = kind == "video"
        self._unwrapper = SeqUnwrapper()
        self.stats = RecvStreamStats(self.ssrc or 0, self.clock_rate, kind=kind, mime_type=self.mime_type, rtx_ssrc=self.rtx_ssrc)
        self.rtx_packets = 0
        self._resyncs = 0
        self.nack = NackGenerator(10 if self.is_video else 0) if self._nack_enabled(media_codec) else None
        self.keyframes = KeyFrameRequestManager(key_frame_request_delay_ms)
        self.fir_seq = 0
        self.use_fir = any(fb.get("type") == "ccm" and fb.get("parameter") == "fir" for fb in media_codec.get("rtcpFeedback", []))
        self.use_pli = any(fb.get("type") == "nack" and fb.get("parameter") == "pli" for fb in media_codec.get("rtcpFeedback", []))
        self.drops: dict[str, int] = {}
        self._score_sent = 10  # scores (issue 5): the last score sent in a ``score`` event

    @staticmethod
    def _nack_enabled(codec: dict) -> bool:
        return any(fb.get("type") == "nack" and not fb.get("parameter") for fb in codec.get("rtcpFeedback", []))

    # ------------------------------------------------------------------ identification
    def matches_first_packet(self, data: bytes, ext_profile: int, ext_start: int, ext_end: int) -> bool:
        """True when an unknown-SSRC packet names this producer through its ``mid`` extension."""
        mid = self.rtp_parameters.get("mid")
        if not mid or not self.mid_ext_id or not ext_profile:
            return False
        found = find_extension(data, ext_profile, ext_start, ext_end, self.mid_ext_id)
        if found is None:
            return False
        off, length = found
        return data[off : off + length] == mid.encode()

    # ------------------------------------------------------------------ packets
    def receive_rtp(self, data: bytes, hdr: tuple, now_ms: int) -> None:
        """Handle one decrypted RTP packet whose SSRC belongs to this producer.

        ``hdr`` is :func:`raysfu.transport.rtp.parse_rtp_header`'s tuple for ``data``.
        """
        ssrc = hdr[4]
        repaired = False
        if ssrc != self.ssrc:
            # RTX (RFC 4588): unwrap to the original packet, then process it as a repair.
            if ssrc != self.rtx_ssrc or self.ssrc is None:
                self._drop("unknown_ssrc")
                return
            self.rtx_packets += 1
            unwrapped = self._rtx_original(data, self.ssrc)
            if unwrapped is None:
                return
            data, hdr = unwrapped
            repaired = True
        elif hdr[0] != self.payload_type:
            self._drop("unknown_payload_type")
            return
        ext_seq = self._unwrapper.unwrap(hdr[2])
        payload_start, payload_end = hdr[5], hdr[9]
        if payload_start >= payload_end:
            self._drop("padding_only")
            if not repaired:
                self.stats.on_packet(ext_seq, hdr[3], len(data), now_ms, padding_only=True)
            return
        keyframe = self.is_video and is_keyframe(self.codec_name, data, payload_start, payload_end)
        nack = self.nack
        if nack is not None:
            seqs = nack.on_packet(ext_seq, now_ms, is_keyframe=keyframe, is_recovered=repaired)
            if seqs:
                self._send_nack(seqs)
            if nack.keyframe_required:
                nack.keyframe_required = False
                self.request_key_frame(now_ms)
            due = nack.next_timer_ms()
            if due is not None and due < self.transport.timer_due_ms:
                self.transport.timer_due_ms = due  # NACK retries run from the transport's timer
        if repaired:
            if not self.stats.on_rtx_packet(ext_seq, len(data), now_ms, repaired=nack is not None and nack.repaired):
                self._drop("rtx_invalid_seq")
                return
        elif not self.stats.on_packet(ext_seq, hdr[3], len(data), now_ms):
            self._drop("invalid_seq")
            return
        elif self.stats.resync_count != self._resyncs:
            # the sender restarted its sequence numbers: old gaps are meaningless now
            self._resyncs = self.stats.resync_count
            if nack is not None:
                nack.reset()
        if keyframe:
            self.keyframes.on_keyframe(self.ssrc, now_ms)
        if self.rtp_observers:  # rtp observers (issue 7): an attribute check when none holds us
            self._feed_rtp_observers(data, hdr, now_ms)
        if self.paused or not self.consumers:
            return
        template = self.template.build(data, hdr, self.mapped_payload_type, self.mapped_ssrc)
        if len(template.data) > MAX_PACKET_BYTES:
            self._drop("too_long")  # would not fit the transports' send buffer
            return
        for consumer in self.consumers:
            consumer.send_rtp(template, ext_seq, keyframe, now_ms)

    def _rtx_original(self, data: bytes, media_ssrc: int) -> tuple[bytes, tuple] | None:
        """The original packet carried by an RTX one (RFC 4588 §4: OSN restored, SSRC and PT
        of the media stream) with its parsed header; None (dropped and counted) for RTX padding
        or a malformed original."""
        original = rtx_unwrap(data, self.payload_type, media_ssrc)
        if original is None:
            self._drop("rtx_padding")
            return None
        data = bytes(original)
        try:
            return data, parse_rtp_header(data)
        except PacketParseError:
            self._drop("rtx_malformed")
            return None

    def learn_ssrc(self, ssrc: int) -> None:
        """Set the media SSRC learned from the first packet's ``mid`` extension."""
        self.ssrc = ssrc
        self.stats.ssrc = ssrc

    # --- rtp observers (issue 7) ---
    def _feed_rtp_observers(self, data: bytes, hdr: tuple, now_ms: int) -> None:
        """Give the RFC 6464 ``ssrc-audio-level`` of this packet (byte ``V|level``: level 0..127
        meaning -level dBov, V the voice-activity bit) to every RtpObserver that holds this
        producer. Nothing while paused (mediasoup stops a paused producer's packets before its
        observers) or when the packet has no such extension; a malformed extension block is
        counted as a drop reason ``audio_level_malformed`` (the packet is still forwarded)."""
        ext_id = self.audio_level_ext_id
        if self.paused or not ext_id or not hdr[6]:
            return
        try:
            found = find_extension(data, hdr[6], hdr[7], hdr[8], ext_id)
        except PacketParseError:
            self._drop("audio_level_malformed")
            return
        if found is None:
            return
        b = data[found[0]]
        level = b & 0x7F
        voice = b > 0x7F
        producer_id = self.id
        for observer in self.rtp_observers:
            observer.logic.on_audio_level(producer_id, level, voice, now_ms)
    # --- end rtp observers ---

    # ------------------------------------------------------------------ RTCP
    def receive_sr(self, item: tuple, now_ms: int) -> None:
        _, _ssrc, ntp_sec, ntp_frac, rtp_ts, _pc, _oc, _reports = item
        self.stats.on_sr(ntp_sec, ntp_frac, rtp_ts, now_ms)

    def request_key_frame(self, now_ms: int) -> None:
        """Ask the sender for a keyframe (PLI, or FIR when only ``ccm fir`` was negotiated), at
        most once per second per stream (mediasoup KeyFrameRequestManager)."""
        if not self.is_video or self.ssrc is None or self.closed:
            return
        if self.keyframes.request(self.ssrc, now_ms):
            self._send_key_frame_request()
        self.transport.wake_timer(self.keyframes.next_timer_ms())

    def _send_key_frame_request(self) -> None:
        if self.use_pli or not self.use_fir:
            self.stats.pli_count += 1
            self.transport.send_rtcp(rtcp.build_pli(self.transport.rtcp_ssrc, self.ssrc))
        else:
            self.fir_seq = (self.fir_seq + 1) & 0xFF
            self.stats.fir_count += 1
            self.transport.send_rtcp(rtcp.build_fir(self.transport.rtcp_ssrc, [(self.ssrc, self.fir_seq)]))

    def _send_nack(self, seqs: list[int]) -> None:
        if self.ssrc is None:
            return
        self.stats.on_nack_sent(len(seqs))
        self.transport.send_rtcp(rtcp.build_nack(self.transport.rtcp_ssrc, self.ssrc, seqs))

    def on_timer(self, now_ms: int) -> None:
        """Timer work: NACK retries and keyframe-request retries."""
        if self.nack is not None:
            seqs = self.nack.on_timer(now_ms)
            if seqs:
                self._send_nack(seqs)
        for _ssrc in self.keyframes.on_timer(now_ms):
            self._send_key_frame_request()
        # --- scores (issue 5): a ``score`` event when the stream's score changes ---
        score = self.stats.score
        if score != self._score_sent and self.ssrc is not None:
            self._score_sent = score
            worker = getattr(self.transport, "worker", None)
            if worker is not None:
                worker.emit(self.id, "score", self.score_list())

    def next_timer_ms(self) -> int | None:
        """When :meth:`on_timer` next has work (monotonic ms), or None."""
        due = self.keyframes.next_timer_ms()
        if self.nack is not None:
            t = self.nack.next_timer_ms()
            if t is not None and (due is None or t < due):
                due = t
        return due

    def report_block(self, now_ms: int) -> tuple | None:
        """RR report block for this stream (RFC 3550 §6.4.2), or None before the first packet."""
        if self.ssrc is None or self.stats.packet_count == 0:
            return None
        return self.stats.build_report_block(now_ms)

    # ------------------------------------------------------------------ info
    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``ProducerStat[]``: one ``inbound-rtp`` entry per received stream."""
        if self.ssrc is None:
            return []
        s = self.stats.to_stats(now_ms)
        if self.rtx_ssrc is not None:
            s["rtxSsrc"] = self.rtx_ssrc
        if self.rid:
            s["rid"] = self.rid
        return [s]

    @property
    def score(self) -> int:
        return self.stats.score

    def score_list(self) -> list[dict]:
        if self.ssrc is None:
            return []
        return [{"encodingIdx": 0, "ssrc": self.ssrc, "rid": self.rid, "score": self.score}]

    def dump(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "rtpParameters": self.rtp_parameters,
            "rtpMapping": self.rtp_mapping,
            "rtpStreams": [] if self.ssrc is None else [{"params": {"ssrc": self.ssrc, "rtxSsrc": self.rtx_ssrc, "mimeType": self.mime_type, "clockRate": self.clock_rate}}],
            "traceEventTypes": [],
            "paused": self.paused,
            "droppedPackets": dict(self.drops),
        }


# --- simulcast / SVC producer (issue 5) ----------------------------------------------------------
URI_DEPENDENCY_DESCRIPTOR = "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"


class _Encoding:
    """One received stream of a :class:`LayeredProducer` (mediasoup ``RtpStreamRecv``): its
    encoding ``index``, ``ssrc`` / ``rtx_ssrc`` (None until learned from rid/rrid), ``rid``,
    and its own seq unwrapper, stats, NACK generator and layer reader."""

    __slots__ = ("index", "ssrc", "rtx_ssrc", "rid", "unwrapper", "stats", "nack", "reader", "resyncs", "rtx_packets", "score_sent")

    def __init__(self, index: int, enc: dict, producer: "LayeredProducer", nack_on: bool) -> None:
        self.index = index
        self.ssrc: int | None = enc.get("ssrc")
        self.rtx_ssrc: int | None = (enc.get("rtx") or {}).get("ssrc")
        self.rid: str | None = enc.get("rid")
        self.unwrapper = SeqUnwrapper()
        self.stats = RecvStreamStats(self.ssrc or 0, producer.clock_rate, kind=producer.kind, mime_type=producer.mime_type, rtx_ssrc=self.rtx_ssrc)
        self.nack = NackGenerator(10) if nack_on else None
        self.reader = PacketLayerReader(producer.mime_type)
        self.resyncs = 0
        self.rtx_packets = 0
        self.score_sent = -1


class LayeredProducer(Producer):
    """A producer with several encodings (``type`` "simulcast") or one SVC encoding (``type``
    "svc"), mediasoup ``Producer`` with one ``RtpStreamRecv`` per encoding.

    Encodings are identified by ``ssrc`` when signalled, else learned from the first packet's
    ``rid`` (media) / ``rrid`` (RTX) extension (:meth:`identify`). Per stream: stats, NACK,
    keyframe requests (``request_key_frame(now_ms, layer)``), scores. Per packet the layers are
    read once (:class:`~raysfu.transport.layers.PacketLayerReader`) and fed to ``layer_monitor``
    (also while paused), then every consumer gets ``send_rtp(template, ext_seq, keyframe, now_ms,
    layer, desc)`` (``layer``: encoding index; SVC: 0). Padding-only packets reach consumers as
    ``on_padding(layer, ext_seq)`` so their output sequence has no holes.
    """

    def __init__(self, *, producer_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.type = producer_type
        params = self.rtp_parameters
        media_codec = next(c for c in params["codecs"] if not c["mimeType"].lower().endswith("/rtx"))
        nack_on = self._nack_enabled(media_codec)
        self.nack = None  # per encoding instead
        self.encodings = [_Encoding(i, enc, self, nack_on) for i, enc in enumerate(params["encodings"])]
        self.by_ssrc: dict[int, tuple] = {}
        for e in self.encodings:
            if e.ssrc is not None:
                self.by_ssrc[e.ssrc] = (e, False)
            if e.rtx_ssrc is not None:
                self.by_ssrc[e.rtx_ssrc] = (e, True)
        self.rrid_ext_id = next((i for i, u in self.ext_uri_by_id.items() if u == URI_RRID), 0)
        self.dd_ext_id = next((i for i, u in self.ext_uri_by_id.items() if u == URI_DEPENDENCY_DESCRIPTOR), 0)
        if self.dd_ext_id:  # forward the descriptor whole: two-byte template for long values
            consumable_exts = {e["uri"]: e["id"] for e in self.consumable_rtp_parameters.get("headerExtensions", [])}
            self.template = LongExtTemplateBuilder(
                producer_ext_uris=self.ext_uri_by_id, router_ext_ids=consumable_exts, mid_uri=URI_MID,
                twcc_uri=URI_TWCC, drop_uris=(URI_MID, URI_RID, URI_RRID, URI_TWCC),
            )
        layers = parse_scalability_mode(params["encodings"][0].get("scalabilityMode"))
        if producer_type == "svc":
            spatial = layers["spatialLayers"]
        else:
            spatial = len(self.encodings)
        self.layer_monitor = LayerMonitor(spatial, layers["temporalLayers"])
        self._svc = producer_type == "svc"
        self._last_scores: list | None = None
        self.ssrc = self.encodings[0].ssrc
        self.rtx_ssrc = self.encodings[0].rtx_ssrc

    # ------------------------------------------------------------------ identification
    def ssrcs(self) -> list[int]:
        """Every known media and RTX SSRC of this producer."""
        return list(self.by_ssrc)

    def identify(self, data: bytes, hdr: tuple) -> bool:
        """Learn the SSRC of an unknown packet from its ``rid`` (media payload type) or ``rrid``
        (RTX payload type) extension (RFC 8852; mediasoup ``RtpListener`` ridTable), or, with a
        single encoding and no rid, from ``mid``. True when learned (the packet is then ours)."""
        ssrc = hdr[4]
        pt = hdr[0]
        if ssrc in self.by_ssrc:
            return True
        rid = None
        prof, start, end = hdr[6], hdr[7], hdr[8]
        if prof:
            ext_id = self.rid_ext_id if pt == self.payload_type else self.rrid_ext_id if pt == self.rtx_payload_type else 0
            if ext_id:
                found = find_extension(data, prof, start, end, ext_id)
                if found is not None:
                    rid = bytes(data[found[0] : found[0] + found[1]]).decode("ascii", "replace")
        enc = None
        if rid is not None:
            enc = next((e for e in self.encodings if e.rid == rid), None)
        elif len(self.encodings) == 1 and self.matches_first_packet(data, prof, start, end):
            enc = self.encodings[0]
        if enc is None:
            return False
        if pt == self.payload_type and enc.ssrc is None:
            enc.ssrc = ssrc
            enc.stats.ssrc = ssrc
            self.by_ssrc[ssrc] = (enc, False)
        elif pt == self.rtx_payload_type and self.rtx_payload_type is not None and enc.rtx_ssrc is None:
            enc.rtx_ssrc = ssrc
            enc.stats.rtx_ssrc = ssrc
            self.by_ssrc[ssrc] = (enc, True)
        else:
            return False
        if enc.index == 0:
            self.ssrc = enc.ssrc
            self.rtx_ssrc = enc.rtx_ssrc
        return True

    def learn_ssrc(self, ssrc: int) -> None:  # a single-encoding SVC stream learned from mid
        enc = self.encodings[0]
        enc.ssrc = self.ssrc = ssrc
        enc.stats.ssrc = ssrc
        self.by_ssrc[ssrc] = (enc, False)

    # ------------------------------------------------------------------ packets
    def receive_rtp(self, data: bytes, hdr: tuple, now_ms: int) -> None:
        found = self.by_ssrc.get(hdr[4])
        if found is None:
            self._drop("unknown_ssrc")
            return
        enc, is_rtx = found
        repaired = False
        if is_rtx:
            if enc.ssrc is None or hdr[0] != self.rtx_payload_type:
                self._drop("unknown_ssrc")
                return
            enc.rtx_packets += 1
            self.rtx_packets += 1
            unwrapped = self._rtx_original(data, enc.ssrc)
            if unwrapped is None:
                return
            data, hdr = unwrapped
            repaired = True
        elif hdr[0] != self.payload_type:
            self._drop("unknown_payload_type")
            return
        ext_seq = enc.unwrapper.unwrap(hdr[2])
        payload_start, payload_end = hdr[5], hdr[9]
        layer = enc.index
        if payload_start >= payload_end:
            self._drop("padding_only")
            if not repaired:
                enc.stats.on_packet(ext_seq, hdr[3], len(data), now_ms, padding_only=True)
                if not self.paused:
                    for consumer in self.consumers:
                        consumer.on_padding(layer, ext_seq)
            return
        keyframe = is_keyframe(self.codec_name, data, payload_start, payload_end)
        nack = enc.nack
        if nack is not None:
            seqs = nack.on_packet(ext_seq, now_ms, is_keyframe=keyframe, is_recovered=repaired)
            if seqs:
                self._send_nack_for(enc, seqs)
            if nack.keyframe_required:
                nack.keyframe_required = False
                self.request_key_frame(now_ms, layer)
            due = nack.next_timer_ms()
            if due is not None and due < self.transport.timer_due_ms:
                self.transport.timer_due_ms = due
        stats = enc.stats
        if repaired:
            if not stats.on_rtx_packet(ext_seq, len(data), now_ms, repaired=nack is not None and nack.repaired):
                self._drop("rtx_invalid_seq")
                return
        elif not stats.on_packet(ext_seq, hdr[3], len(data), now_ms):
            self._drop("invalid_seq")
            return
        elif stats.resync_count != enc.resyncs:
            enc.resyncs = stats.resync_count
            if nack is not None:
                nack.reset()
        if keyframe:
            self.keyframes.on_keyframe(enc.ssrc, now_ms)
        dd_value = None
        if self.dd_ext_id and hdr[6]:
            f = find_extension(data, hdr[6], hdr[7], hdr[8], self.dd_ext_id)
            if f is not None:
                dd_value = data[f[0] : f[0] + f[1]]
        reader = enc.reader
        desc = reader.read(data, payload_start, payload_end, dd_value)
        if self._svc:
            self.layer_monitor.on_packet(reader.spatial_layer, reader.temporal_layer, len(data), now_ms)
        else:
            self.layer_monitor.on_packet(layer, reader.temporal_layer, len(data), now_ms)
        if self.paused or not self.consumers:
            return
        template = self.template.build(data, hdr, self.mapped_payload_type, self.mapped_ssrc)
        if len(template.data) > MAX_PACKET_BYTES:
            self._drop("too_long")
            return
        for consumer in self.consumers:
            consumer.send_rtp(template, ext_seq, keyframe, now_ms, layer, desc)

    # ------------------------------------------------------------------ RTCP
    def receive_sr(self, item: tuple, now_ms: int) -> None:
        _, ssrc, ntp_sec, ntp_frac, rtp_ts, _pc, _oc, _reports = item
        found = self.by_ssrc.get(ssrc)
        if found is None or found[1]:
            return
        enc = found[0]
        enc.stats.on_sr(ntp_sec, ntp_frac, rtp_ts, now_ms)
        if not self._svc:
            self.layer_monitor.on_sr(enc.index, ntp_sec, ntp_frac, rtp_ts)
        self._update_scores()

    def request_key_frame(self, now_ms: int, layer: int | None = None) -> None:
        """PLI/FIR for encoding ``layer`` (None: every known encoding), throttled per stream."""
        if self.closed:
            return
        encs = self.encodings if layer is None or self._svc else self.encodings[layer : layer + 1]
        for enc in encs:
            if enc.ssrc is not None and self.keyframes.request(enc.ssrc, now_ms):
                self._send_key_frame_request_for(enc.ssrc, enc.stats)
        self.transport.wake_timer(self.keyframes.next_timer_ms())

    def _send_key_frame_request_for(self, ssrc: int, stats) -> None:
        if self.use_pli or not self.use_fir:
            stats.pli_count += 1
            self.transport.send_rtcp(rtcp.build_pli(self.transport.rtcp_ssrc, ssrc))
        else:
            self.fir_seq = (self.fir_seq + 1) & 0xFF
            stats.fir_count += 1
            self.transport.send_rtcp(rtcp.build_fir(self.transport.rtcp_ssrc, [(ssrc, self.fir_seq)]))

    def _send_nack_for(self, enc: _Encoding, seqs: list[int]) -> None:
        enc.stats.on_nack_sent(len(seqs))
        self.transport.send_rtcp(rtcp.build_nack(self.transport.rtcp_ssrc, enc.ssrc, seqs))

    def on_timer(self, now_ms: int) -> None:
        """NACK retries per stream, keyframe-request retries, layer activity, ``score`` events."""
        for enc in self.encodings:
            if enc.nack is not None:
                seqs = enc.nack.on_timer(now_ms)
                if seqs:
                    self._send_nack_for(enc, seqs)
        for ssrc in self.keyframes.on_timer(now_ms):
            found = self.by_ssrc.get(ssrc)
            if found is not None:
                self._send_key_frame_request_for(ssrc, found[0].stats)
        self.layer_monitor.update(now_ms)
        self._update_scores()

    def next_timer_ms(self) -> int | None:
        due = self.keyframes.next_timer_ms()
        for enc in self.encodings:
            if enc.nack is not None:
                t = enc.nack.next_timer_ms()
                if t is not None and (due is None or t < due):
                    due = t
        return due

    def _update_scores(self) -> None:
        mon = self.layer_monitor
        if not self._svc:
            for enc in self.encodings:
                if enc.ssrc is not None:
                    mon.set_score(enc.index, enc.stats.score)
        scores = self.score_list()
        if scores != self._last_scores:
            self._last_scores = scores
            worker = getattr(self.transport, "worker", None)
            if worker is not None and scores:
                worker.emit(self.id, "score", scores)

    def report_block(self, now_ms: int) -> tuple | None:
        """RR block of the first stream; the other streams' blocks are sent here in an RR of
        their own (RFC 3550 §6.4.2)."""
        blocks = [e.stats.build_report_block(now_ms) for e in self.encodings if e.ssrc is not None and e.stats.packet_count]
        if not blocks:
            return None
        if len(blocks) > 1:
            self.transport.send_rtcp(rtcp.build_rr(self.transport.rtcp_ssrc, blocks[1:]))
        return blocks[0]

    # ------------------------------------------------------------------ info
    def get_stats(self, now_ms: int) -> list[dict]:
        """mediasoup ``ProducerStat[]``: one ``inbound-rtp`` entry per encoding (in encoding
        order; an encoding whose SSRC is not known yet is left out)."""
        out = []
        for e in self.encodings:
            if e.ssrc is None:
                continue
            s = e.stats.to_stats(now_ms)
            if e.rtx_ssrc is not None:
                s["rtxSsrc"] = e.rtx_ssrc
            if e.rid:
                s["rid"] = e.rid
            out.append(s)
        return out

    def stream_stats(self, layer: int, now_ms: int) -> dict | None:
        """The ``inbound-rtp`` entry of encoding ``layer`` (None when unknown)."""
        if not 0 <= layer < len(self.encodings):
            return None
        e = self.encodings[layer]
        if e.ssrc is None:
            return None
        s = e.stats.to_stats(now_ms)
        if e.rid:
            s["rid"] = e.rid
        return s

    @property
    def score(self) -> int:
        return max((self.layer_monitor.score(e.index) for e in self.encodings), default=0) if not self._svc else self.encodings[0].stats.score

    def score_list(self) -> list[dict]:
        """mediasoup ``ProducerScore[]``: ``{encodingIdx, ssrc, rid, score}`` per known stream
        (0 for a stream that stopped)."""
        mon = self.layer_monitor
        out = []
        for e in self.encodings:
            if e.ssrc is None:
                continue
            score = e.stats.score if self._svc else (mon.score(e.index) if mon.is_active(e.index) else 0)
            out.append({"encodingIdx": e.index, "ssrc": e.ssrc, "rid": e.rid, "score": score})
        return out

    def dump(self) -> dict:
        d = super().dump()
        d["rtpStreams"] = [
            {"params": {"encodingIdx": e.index, "ssrc": e.ssrc, "rtxSsrc": e.rtx_ssrc, "rid": e.rid, "mimeType": self.mime_type, "clockRate": self.clock_rate}}
            for e in self.encodings if e.ssrc is not None
        ]
        return d
# --- end simulcast / SVC producer ----------------------------------------------------------------
