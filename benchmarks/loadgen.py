"""Load-generator peer process: many light WebRTC peers (publishers and/or subscribers) on one
UDP socket, driven over a JSON-lines control channel (stdin commands, stdout replies).

Each peer is a client of one raysfu WebRtcTransport: ICE (controlling, USE-CANDIDATE, consent
refresh every ~5 s), DTLS client and SRTP with raysfu's own sans-I/O pieces
(``transport.stun`` / ``transport.dtls`` / ``transport.srtp``, as ``actors/client_peer.py``
does for a single peer). Every server transport has its own port, so datagrams are demultiplexed
by source port. I/O is batched with ``recvmmsg``/``sendmmsg`` (``benchmarks/_mmsg.py``).

Publishers send pre-built RTP as Chrome does (``video_rtp_parameters`` / ``audio_rtp_parameters``
give the ids): VP8 ~1 Mbps in 1,200-byte packets at 30 fps with a keyframe every 2 s (and on
PLI/FIR), Opus-like audio at 50 packets/s of 100 bytes; extensions mid, abs-send-time,
transport-wide-cc (+ ssrc-audio-level for audio). The last 12 payload bytes carry the send time
(``time.time_ns()``) and the publisher's packet index of the stream (``STAMP``). Subscribers
take the arrival time from the kernel (``SO_TIMESTAMPNS``, the same CLOCK_REALTIME, one clock
for every process of the machine), so a generator that reads its socket late does not add to the
measured latency; that lets the loop poll every ``--poll-us`` and read large batches.

Subscribers count every packet from the clear RTP header (SRTP leaves it in clear): SSRC must be
one of the peer's consumers' (else ``bad_ssrc``; bandwidth probation packets, SSRC
``PROBATION_SSRC`` as mediasoup sends them, are counted apart in ``probation_rx``), sequence continuity (``gaps``, ``late``), and
unprotect 1 packet in ``--sample-every`` (and the first of each stream) to read the stamp:
one-way latency, and the publisher index must advance exactly as the sequence number does
(``idx_err``); the first packet of a video stream must be a keyframe (``first_not_key``).

Run by ``benchmarks/scenarios.py`` as ``python -m benchmarks.loadgen [--sample-every K]``.

Protocol (one JSON object per line; every command gets exactly one reply, in order):

- on start: ``{"ev": "ready", "pid", "port", "dtls": {"role": "client", "fingerprints"}}``
- ``{"cmd": "add", "peers": [{"id", "ice": {usernameFragment, password}, "remote": [ip, port],
  "dtls": {"fingerprints"}}]}`` → when every peer finished ICE + DTLS:
  ``{"ev": "added", "ok": [ids], "failed": [[id, reason]]}``
- ``{"cmd": "publish", "streams": [{"id", "peer", "kind", "ssrc", "mid"}]}`` → registers the
  streams → ``{"ev": "ok"}``; ``{"cmd": "start"}`` → every stream starts sending → ``{"ev": "ok"}``
- ``{"cmd": "expect", "streams": [{"id", "peer", "kind", "ssrc"}]}`` → ``{"ev": "ok"}``
- ``{"cmd": "stats", "reset_latency"?: bool}`` → ``{"ev": "stats", "t_ns", "rx_pkts", "rx_span",
  "rx_streams_started", "rx_streams", "tx_pkts", "tx_dropped", "cpu_s", "rx_batches", "sent"}``
  (``cpu_s``: this process's CPU time; ``sent``: packets sent so far per published stream, in
  ``publish`` order)
- ``{"cmd": "stop"}`` → stops publishing → ``{"ev": "stopped", "sent": [[stream id, packets]]}``
- ``{"cmd": "report"}`` → ``{"ev": "report", "streams": [[id, cnt, first_idx, last_idx, span,
  gaps, late, idx_err, first_not_key]], "lat_us": [...], "bad_ssrc", "srtp_err", "rtcp_rx",
  "keyframes_sent", "pli_rx", "pacer_rebase", "probation_rx"}``
- ``{"cmd": "quit"}`` → exits. End of stdin also exits.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from collections import deque

from raysfu.transport import rtcp as rtcp_codec
from raysfu.transport.dtls import DtlsCertificate, DtlsSession
from raysfu.transport.errors import PacketParseError
from raysfu.transport.rtp import (
    build_rtp,
    find_extension,
    is_keyframe_vp8,
    parse_rtp_header,
)
from raysfu.transport.srtp import SrtpSession
from raysfu.transport.stun import build_binding_request

try:  # run as ``python -m benchmarks.loadgen`` (package) or as a file
    from benchmarks._mmsg import MmsgReceiver, MmsgSender
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks._mmsg import MmsgReceiver, MmsgSender

# --------------------------------------------------------------------------- media profile
VIDEO_BITRATE_BPS = 1_000_000
VIDEO_PACKET_BYTES = 1200  # whole RTP packet before SRTP
VIDEO_FPS = 30
KEYFRAME_INTERVAL_S = 2
AUDIO_PPS = 50
AUDIO_PACKET_BYTES = 100
#: video packets per second implied by the bitrate and packet size (~104.2)
VIDEO_PPS = VIDEO_BITRATE_BPS / (8 * VIDEO_PACKET_BYTES)

VP8_PT, VP8_RTX_PT, OPUS_PT = 96, 97, 111
AUDIO_LEVEL_ID, ABS_SEND_TIME_ID, TWCC_ID, MID_ID = 1, 2, 3, 4
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

#: router ``media_codecs`` for the scenarios
MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]

#: SSRC of bandwidth probation packets (mediasoup's RTP_PROBATOR_SSRC; raysfu.bwe.prober)
PROBATION_SSRC = 1234

#: payload tail: send time (CLOCK_REALTIME ns) and the publisher's packet index of the stream
STAMP = struct.Struct("!QI")
STAMP_BYTES = STAMP.size

_HDR_TAIL = struct.Struct("!BHII")  # byte 1 (M|PT), seq, timestamp, SSRC, at offset 1
_SEQ_SSRC = struct.Struct("!H4xI")  # seq and SSRC, at offset 2
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_CLIENT_UFRAG = "lgen"
_PRIORITY = 0x7E7FFFFF
ICE_RETRY_NS = 200_000_000
KEEPALIVE_NS = 5_000_000_000
PEER_TIMEOUT_NS = 40_000_000_000
MAX_HANDSHAKES = 48  # DTLS handshakes in flight per process
PACER_TICK_NS = 5_000_000
MAX_LATENCY_SAMPLES = 400_000


def video_rtp_parameters(ssrc: int, rtx_ssrc: int, mid: str, cname: str = "loadgen") -> dict:
    """``rtpParameters`` for ``transport.produce(kind="video")``: VP8 + RTX with the RTCP
    feedback and header extensions Chrome's mediasoup-client sends (ids as this generator)."""
    return {
        "mid": mid,
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": VP8_PT, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""},
                              {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": VP8_RTX_PT, "clockRate": 90000,
             "parameters": {"apt": VP8_PT}, "rtcpFeedback": []},
        ],
        "headerExtensions": [
            {"uri": URI_MID, "id": MID_ID, "encrypt": False, "parameters": {}},
            {"uri": URI_ABS_SEND_TIME, "id": ABS_SEND_TIME_ID, "encrypt": False, "parameters": {}},
            {"uri": URI_TWCC, "id": TWCC_ID, "encrypt": False, "parameters": {}},
        ],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": rtx_ssrc}, "dtx": False}],
        "rtcp": {"cname": cname, "reducedSize": True},
    }


def audio_rtp_parameters(ssrc: int, mid: str, cname: str = "loadgen") -> dict:
    """``rtpParameters`` for ``transport.produce(kind="audio")``: Opus as Chrome sends it."""
    return {
        "mid": mid,
        "codecs": [
            {"mimeType": "audio/opus", "payloadType": OPUS_PT, "clockRate": 48000, "channels": 2,
             "parameters": {"minptime": 10, "useinbandfec": 1},
             "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]},
        ],
        "headerExtensions": [
            {"uri": URI_MID, "id": MID_ID, "encrypt": False, "parameters": {}},
            {"uri": URI_ABS_SEND_TIME, "id": ABS_SEND_TIME_ID, "encrypt": False, "parameters": {}},
            {"uri": URI_TWCC, "id": TWCC_ID, "encrypt": False, "parameters": {}},
            {"uri": URI_AUDIO_LEVEL, "id": AUDIO_LEVEL_ID, "encrypt": False, "parameters": {}},
        ],
        "encodings": [{"ssrc": ssrc, "dtx": False}],
        "rtcp": {"cname": cname, "reducedSize": True},
    }


def _templates(kind: str, ssrc: int, mid: str) -> tuple[list[bytes], int, int, int]:
    """Pre-built packets of a stream: ``(templates, abs_off, twcc_off, pic_off)``.

    Video templates: [frame start keyframe, frame start delta frame, continuation]; audio: [one].
    ``abs_off`` is the offset of the abs-send-time element's id byte (written with its 3 value
    bytes as one u32), ``twcc_off`` the transport-wide seq, ``pic_off`` the VP8 picture id.
    """
    if kind == "video":
        exts = [(ABS_SEND_TIME_ID, bytes(3)), (TWCC_ID, bytes(2)), (MID_ID, mid.encode())]
        size, pt = VIDEO_PACKET_BYTES, VP8_PT
        # VP8 payload descriptor (RFC 7741 §4.2): X=1, S, PID=0; I=1; 15-bit picture id
        key_head = bytes([0x90, 0x80, 0x80, 0x00]) + bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
        delta_head = bytes([0x90, 0x80, 0x80, 0x00]) + bytes([0x31, 0x02, 0x00])
        cont_head = bytes([0x80, 0x80, 0x80, 0x00])
        heads = [key_head, delta_head, cont_head]
    else:
        exts = [(AUDIO_LEVEL_ID, bytes([0x80 | 30])), (ABS_SEND_TIME_ID, bytes(3)), (TWCC_ID, bytes(2)),
                (MID_ID, mid.encode())]
        size, pt = AUDIO_PACKET_BYTES, OPUS_PT
        heads = [bytes([0x78])]  # Opus TOC: SILK-only WB 20 ms, mono
    hdr_len = len(build_rtp(pt, 0, 0, ssrc, b"", extensions=exts))
    templates = []
    for head in heads:
        fill = size - hdr_len - len(head) - STAMP_BYTES
        payload = head + bytes((i * 7 + 3) & 0xFF for i in range(fill)) + bytes(STAMP_BYTES)
        templates.append(build_rtp(pt, 0, 0, ssrc, payload, extensions=exts))
    t = templates[0]
    hdr = parse_rtp_header(t)
    abs_off = find_extension(t, hdr[6], hdr[7], hdr[8], ABS_SEND_TIME_ID)[0] - 1
    twcc_off = find_extension(t, hdr[6], hdr[7], hdr[8], TWCC_ID)[0]
    pic_off = hdr[5] + 2 if kind == "video" else -1
    return templates, abs_off, twcc_off, pic_off


class _Peer:
    __slots__ = (
        "deadline_ns",
        "dtls",
        "fingerprints",
        "id",
        "next_ice_ns",
        "next_keepalive_ns",
        "password",
        "reason",
        "remote",
        "srtp",
        "state",
        "twcc_seq",
        "ufrag",
    )

    def __init__(self, spec: dict, now_ns: int, index: int) -> None:
        self.id = spec["id"]
        self.remote = (spec["remote"][0], int(spec["remote"][1]))
        self.ufrag = spec["ice"]["usernameFragment"]
        self.password = spec["ice"]["password"]
        self.fingerprints = spec["dtls"]["fingerprints"]
        self.state = "ice"
        self.dtls: DtlsSession | None = None
        self.srtp: SrtpSession | None = None
        self.deadline_ns = now_ns + PEER_TIMEOUT_NS
        self.next_ice_ns = now_ns
        self.next_keepalive_ns = now_ns + KEEPALIVE_NS + (index % 200) * 20_000_000
        self.twcc_seq = 0
        self.reason = ""

    def binding_request(self) -> bytes:
        return build_binding_request(f"{self.ufrag}:{_CLIENT_UFRAG}", self.password,
                                     priority=_PRIORITY, use_candidate=True)


class LoadGen:
    """One generator process: the socket, the peers, the publisher and subscriber streams."""

    def __init__(self, sample_every: int = 16, batch: int = 64, rcvbuf_bytes: int = 64 << 20,
                 srtp_crypto_suites: list[str] | None = None, poll_us: int = 1000) -> None:
        self.sample_every = max(1, sample_every)
        self.poll_ns = max(50, poll_us) * 1000
        self._commands: deque[bytes] = deque()
        self.srtp_suites = srtp_crypto_suites
        self.cert = DtlsCertificate.generate()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for force, plain, size in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF, rcvbuf_bytes),
                                   (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF, 8 << 20)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:  # not privileged: the plain option, capped by net.core.[rw]mem_max
                self.sock.setsockopt(socket.SOL_SOCKET, plain, size)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.rx = MmsgReceiver(self.sock, batch=batch, timestamps=True)
        self.tx = MmsgSender(self.sock, batch=batch)
        self.peers: dict[int, _Peer] = {}
        self.peer_by_port: list[_Peer | None] = [None] * 65536
        self.pending_add: set[int] | None = None
        self.add_result: dict[str, list] = {"ok": [], "failed": []}
        self.handshaking: set[int] = set()
        self.dtls_queue: list[int] = []
        self.connected: list[_Peer] = []
        self.keepalive_cursor = 0
        # subscriber streams (index = local slot)
        self.ssrc_slot: dict[int, int] = {}
        self.s_id: list[int] = []
        self.s_port: list[int] = []
        self.s_peer: list[_Peer] = []
        self.s_video: list[bool] = []
        self.s_cnt: list[int] = []
        self.s_last: list[int] = []
        self.s_ext: list[int] = []
        self.s_first_ext: list[int] = []
        self.s_first_idx: list[int] = []
        self.s_last_idx: list[int] = []
        self.s_gaps: list[int] = []
        self.s_late: list[int] = []
        self.s_idx_err: list[int] = []
        self.s_first_not_key: list[int] = []
        self.rx_pkts = 0
        self.rx_batches = 0
        self.rx_span = 0
        self.started_streams = 0
        self.bad_ssrc = 0
        self.probation_rx = 0  # --- probation packets (scaling, issue 4): SSRC PROBATION_SSRC
        self.srtp_err = 0
        self.rtcp_rx = 0
        self.sample_k = 0
        self.latency_us: list[int] = []
        # publisher streams
        self.p_id: list[int] = []
        self.p_peer: list[_Peer] = []
        self.p_video: list[bool] = []
        self.p_ssrc: list[int] = []
        self.p_tmpl: list[list[bytes]] = []
        self.p_offs: list[tuple[int, int, int]] = []
        self.p_idx: list[int] = []
        self.p_t0: list[int] = []
        self.p_interval: list[float] = []
        self.p_seq0: list[int] = []
        self.p_ts0: list[int] = []
        self.p_key_pending: list[bool] = []
        self.p_active = False
        self.tx_pkts = 0
        self.keyframes_sent = 0
        self.pli_rx = 0
        self.pacer_rebase = 0
        self.next_tick_ns = 0
        self.running = True

    # ------------------------------------------------------------------ control channel
    @staticmethod
    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def handle_command(self, msg: dict) -> None:
        cmd = msg.get("cmd")
        try:
            if cmd == "add":
                self.cmd_add(msg["peers"])
                return  # replies when done
            if cmd == "publish":
                self.cmd_publish(msg["streams"])
                self.reply({"ev": "ok"})
            elif cmd == "start":
                self.cmd_start()
                self.reply({"ev": "ok"})
            elif cmd == "expect":
                self.cmd_expect(msg["streams"])
                self.reply({"ev": "ok"})
            elif cmd == "stats":
                if msg.get("reset_latency"):
                    self.latency_us = []
                self.reply({"ev": "stats", "t_ns": time.monotonic_ns(), "rx_pkts": self.rx_pkts,
                            "rx_span": self.rx_span, "rx_streams_started": self.started_streams,
                            "rx_streams": len(self.s_id), "tx_pkts": self.tx_pkts,
                            "tx_dropped": self.tx.dropped, "cpu_s": time.process_time(),
                            "rx_batches": self.rx_batches, "sent": list(self.p_idx)})
            elif cmd == "stop":
                self.p_active = False
                self.reply({"ev": "stopped", "sent": [[self.p_id[j], self.p_idx[j]] for j in range(len(self.p_id))]})
            elif cmd == "report":
                self.reply(self.report())
            elif cmd == "quit":
                self.running = False
                self.reply({"ev": "bye"})
            else:
                self.reply({"ev": "error", "error": f"unknown cmd {cmd!r}"})
        except Exception as exc:  # report to the driver, keep running
            self.reply({"ev": "error", "error": f"{type(exc).__name__}: {exc}"})

    def cmd_add(self, specs: list[dict]) -> None:
        now_ns = time.monotonic_ns()
        ids = set()
        for spec in specs:
            peer = _Peer(spec, now_ns, len(self.peers))
            if peer.remote[0] not in ("127.0.0.1", "localhost"):
                raise ValueError(f"remote {peer.remote[0]}: the generator only talks to 127.0.0.1")
            self.peers[peer.id] = peer
            self.peer_by_port[peer.remote[1]] = peer
            ids.add(peer.id)
        self.pending_add = ids
        self.add_result = {"ok": [], "failed": []}
        if not ids:
            self._finish_add()

    def _peer_done(self, peer: _Peer, ok: bool, reason: str = "") -> None:
        self.handshaking.discard(peer.id)
        if ok:
            peer.state = "connected"
            self.connected.append(peer)
            self.add_result["ok"].append(peer.id)
        else:
            peer.state = "failed"
            peer.reason = reason
            self.add_result["failed"].append([peer.id, reason])
        if self.pending_add is not None:
            self.pending_add.discard(peer.id)
            if not self.pending_add:
                self._finish_add()

    def _finish_add(self) -> None:
        self.pending_add = None
        self.reply({"ev": "added", **self.add_result})

    def cmd_publish(self, streams: list[dict]) -> None:
        now_ns = time.monotonic_ns()
        for st in streams:
            peer = self.peers[st["peer"]]
            if peer.state != "connected":
                raise ValueError(f"peer {peer.id} is not connected")
            video = st["kind"] == "video"
            tmpl, abs_off, twcc_off, pic_off = _templates(st["kind"], st["ssrc"], st["mid"])
            self.p_id.append(st["id"])
            self.p_peer.append(peer)
            self.p_video.append(video)
            self.p_ssrc.append(st["ssrc"])
            self.p_tmpl.append(tmpl)
            self.p_offs.append((abs_off, twcc_off, pic_off))
            self.p_idx.append(0)
            self.p_t0.append(now_ns)
            self.p_interval.append(1e9 / (VIDEO_PPS if video else AUDIO_PPS))
            self.p_seq0.append((st["ssrc"] * 31) & 0x7FFF)
            self.p_ts0.append((st["ssrc"] * 17) & 0x7FFFFFFF)
            self.p_key_pending.append(True)

    def cmd_start(self) -> None:
        """Start sending every registered stream now, starts staggered over one packet interval."""
        now_ns = time.monotonic_ns()
        for j in range(len(self.p_id)):
            self.p_t0[j] = now_ns + int((j * 7919 % 1000) / 1000 * self.p_interval[j])
        self.p_active = True

    def cmd_expect(self, streams: list[dict]) -> None:
        for st in streams:
            peer = self.peers[st["peer"]]
            ssrc = st["ssrc"]
            if ssrc in self.ssrc_slot:
                raise ValueError(f"ssrc {ssrc} expected twice in one generator")
            self.ssrc_slot[ssrc] = len(self.s_id)
            self.s_id.append(st["id"])
            self.s_port.append(peer.remote[1])
            self.s_peer.append(peer)
            self.s_video.append(st["kind"] == "video")
            for lst in (self.s_cnt, self.s_last, self.s_ext, self.s_first_ext, self.s_gaps, self.s_late,
                        self.s_idx_err, self.s_first_not_key):
                lst.append(0)
            self.s_first_idx.append(-1)
            self.s_last_idx.append(-1)

    def report(self) -> dict:
        streams = []
        for s in range(len(self.s_id)):
            span = self.s_ext[s] - self.s_first_ext[s] + 1 if self.s_cnt[s] else 0
            streams.append([self.s_id[s], self.s_cnt[s], self.s_first_idx[s], self.s_last_idx[s], span,
                            self.s_gaps[s], self.s_late[s], self.s_idx_err[s], self.s_first_not_key[s]])
        return {"ev": "report", "streams": streams, "lat_us": self.latency_us, "bad_ssrc": self.bad_ssrc,
                "srtp_err": self.srtp_err, "rtcp_rx": self.rtcp_rx, "keyframes_sent": self.keyframes_sent,
                "pli_rx": self.pli_rx, "pacer_rebase": self.pacer_rebase, "tx_dropped": self.tx.dropped,
                "probation_rx": self.probation_rx}

    # ------------------------------------------------------------------ receive path
    def drain_socket(self) -> None:
        rx = self.rx
        view, names, slot = rx.view, rx.names, rx.slot_bytes
        msgs = rx._msgs
        unpack = _SEQ_SSRC.unpack_from
        ssrc_slot = self.ssrc_slot
        s_port, s_cnt, s_last, s_ext = self.s_port, self.s_cnt, self.s_last, self.s_ext
        s_gaps, s_late = self.s_gaps, self.s_late
        every = self.sample_every
        for _ in range(32):
            n = rx.recv()
            if not n:
                return
            now_ns = time.monotonic_ns()
            self.rx_batches += 1
            stamp_of = rx.timestamp_ns
            rx_pkts = 0
            span = 0
            for i in range(n):
                off = i * slot
                b0 = view[off]
                if 127 < b0 < 192 and not 191 < view[off + 1] < 224:
                    seq, ssrc = unpack(view, off + 2)
                    s = ssrc_slot.get(ssrc)
                    noff = i << 5
                    if s is None or s_port[s] != (names[noff + 2] << 8 | names[noff + 3]):
                        if s is None and ssrc == PROBATION_SSRC:
                            self.probation_rx += 1
                        else:
                            self.bad_ssrc += 1
                        continue
                    rx_pkts += 1
                    c = s_cnt[s]
                    s_cnt[s] = c + 1
                    if c == 0:
                        s_last[s] = seq
                        s_ext[s] = s_first_ext = 1 << 20
                        self.s_first_ext[s] = s_first_ext
                        span += 1
                        self.started_streams += 1
                        self._sample(s, view[off:off + msgs[i].msg_len], stamp_of(i), s_first_ext, True)
                        continue
                    d = (seq - s_last[s]) & 0xFFFF
                    if 0 < d < 0x8000:
                        if d != 1:
                            s_gaps[s] += d - 1
                        s_last[s] = seq
                        ext = s_ext[s] + d
                        s_ext[s] = ext
                        span += d
                    else:
                        s_late[s] += 1
                        ext = s_ext[s] - ((s_last[s] - seq) & 0xFFFF)
                    k = self.sample_k + 1
                    if k >= every:
                        self.sample_k = 0
                        self._sample(s, view[off:off + msgs[i].msg_len], stamp_of(i), ext, False)
                    else:
                        self.sample_k = k
                else:
                    noff = i << 5
                    port = names[noff + 2] << 8 | names[noff + 3]
                    self.control_datagram(bytes(view[off:off + msgs[i].msg_len]), port, now_ns)
            self.rx_pkts += rx_pkts
            self.rx_span += span

    def _sample(self, s: int, packet, arrival_ns: int, ext: int, first: bool) -> None:
        """Unprotect one packet of stream slot ``s``: latency (``arrival_ns``: kernel receive
        time, CLOCK_REALTIME), publisher index, keyframe."""
        try:
            plain = self.s_peer[s].srtp.unprotect_rtp(packet)
        except PacketParseError:
            self.srtp_err += 1
            return
        send_ns, idx = STAMP.unpack_from(plain, len(plain) - STAMP_BYTES)
        if len(self.latency_us) < MAX_LATENCY_SAMPLES:
            self.latency_us.append(((arrival_ns or time.time_ns()) - send_ns) // 1000)
        if first:
            self.s_first_idx[s] = idx
            if self.s_video[s]:
                try:
                    hdr = parse_rtp_header(plain)
                    key = is_keyframe_vp8(plain, hdr[5], hdr[9])
                except PacketParseError:
                    key = False
                if not key:
                    self.s_first_not_key[s] += 1
        elif idx - self.s_first_idx[s] != ext - self.s_first_ext[s]:
            self.s_idx_err[s] += 1
        self.s_last_idx[s] = max(self.s_last_idx[s], idx)

    def control_datagram(self, data: bytes, port: int, now_ns: int) -> None:
        """STUN, DTLS and RTCP (and RTP from no known stream) from the server transports."""
        peer = self.peer_by_port[port]
        if peer is None or not data:
            return
        b0 = data[0]
        if b0 < 4:  # STUN binding response (a lite server sends only successes to good requests)
            if peer.state == "ice":
                peer.state = "dtls_wait"
                self.dtls_queue.append(peer.id)
        elif 19 < b0 < 64:
            if peer.dtls is not None:
                peer.dtls.receive(data, now_ns // 1_000_000)
                self.pump_dtls(peer, now_ns)
        elif 127 < b0 < 192:
            if 191 < data[1] < 224:
                self.rtcp_rx += 1
                if peer.srtp is not None and self.p_active:
                    self._publisher_rtcp(peer, data)
            else:
                self.bad_ssrc += 1

    def _publisher_rtcp(self, peer: _Peer, data: bytes) -> None:
        try:
            items = rtcp_codec.parse_rtcp(peer.srtp.unprotect_rtcp(data))
        except (PacketParseError, ValueError):
            return
        for item in items:
            if item[0] == "pli":
                ssrcs = [item[2]]
            elif item[0] == "fir":
                ssrcs = [entry[0] for entry in item[2]]
            else:
                continue
            self.pli_rx += 1
            for j, ssrc in enumerate(self.p_ssrc):
                if ssrc in ssrcs and self.p_peer[j] is peer:
                    self.p_key_pending[j] = True

    # ------------------------------------------------------------------ ICE / DTLS
    def pump_dtls(self, peer: _Peer, now_ns: int) -> None:
        dtls = peer.dtls
        for datagram in dtls.datagrams_to_send():
            self.sock.sendto(datagram, peer.remote)
        for name, value in dtls.drain_events():
            if name == "state" and peer.state == "dtls":
                if value == "connected":
                    local, remote = dtls.srtp_keys()
                    peer.srtp = SrtpSession(dtls.srtp_crypto_suite, local, remote)
                    self._peer_done(peer, True)
                elif value in ("failed", "closed"):
                    self._peer_done(peer, False, f"DTLS {value}: {dtls.failure_reason}")

    def run_timers(self, now_ns: int) -> None:
        now_ms = now_ns // 1_000_000
        # ICE checks and timeouts of peers being added
        if self.pending_add:
            for pid in list(self.pending_add):
                peer = self.peers[pid]
                if now_ns > peer.deadline_ns:
                    self._peer_done(peer, False, f"timeout in state {peer.state}")
                    continue
                if peer.state == "ice" and now_ns >= peer.next_ice_ns:
                    peer.next_ice_ns = now_ns + ICE_RETRY_NS
                    self.sock.sendto(peer.binding_request(), peer.remote)
        while self.dtls_queue and len(self.handshaking) < MAX_HANDSHAKES:
            peer = self.peers[self.dtls_queue.pop(0)]
            if peer.state != "dtls_wait":
                continue
            peer.state = "dtls"
            peer.dtls = DtlsSession(self.cert, role="client", remote_fingerprints=peer.fingerprints,
                                    srtp_crypto_suites=self.srtp_suites)
            self.handshaking.add(peer.id)
            peer.dtls.start(now_ms)
            self.pump_dtls(peer, now_ns)
        for pid in list(self.handshaking):
            peer = self.peers[pid]
            t = peer.dtls.next_timer_ms()
            if t is not None and t <= now_ms:
                peer.dtls.handle_timer(now_ms)
                self.pump_dtls(peer, now_ns)
        # consent freshness (RFC 7675): a binding request per peer every ~5 s, a slice per call
        connected = self.connected
        if connected:
            count = max(1, len(connected) // 50)
            for _ in range(min(count, len(connected))):
                self.keepalive_cursor = (self.keepalive_cursor + 1) % len(connected)
                peer = connected[self.keepalive_cursor]
                if now_ns >= peer.next_keepalive_ns:
                    peer.next_keepalive_ns = now_ns + KEEPALIVE_NS
                    self.sock.sendto(peer.binding_request(), peer.remote)

    # ------------------------------------------------------------------ publisher pacing
    def send_due(self, now_ns: int) -> None:
        tx = self.tx
        fps_bits = VIDEO_FPS * 8 * VIDEO_PACKET_BYTES
        key_every = VIDEO_FPS * KEYFRAME_INTERVAL_S
        ts_step = 90000 // VIDEO_FPS
        pack_hdr, pack_u16, pack_u32, pack_stamp = _HDR_TAIL.pack_into, _U16.pack_into, _U32.pack_into, STAMP.pack_into
        abs24 = ((now_ns << 18) // 1_000_000_000) & 0xFFFFFF
        for j in range(len(self.p_id)):
            interval = self.p_interval[j]
            elapsed = now_ns - self.p_t0[j]
            if elapsed < 0:
                continue
            due = int(elapsed / interval) + 1
            i = self.p_idx[j]
            if due - i > 40:  # stalled for long: re-base the clock, keep the indices continuous
                self.pacer_rebase += 1
                self.p_t0[j] = now_ns - int(i * interval)
                due = i + 1
            if i >= due:
                continue
            peer = self.p_peer[j]
            srtp, remote = peer.srtp, peer.remote
            tmpl = self.p_tmpl[j]
            abs_off, twcc_off, pic_off = self.p_offs[j]
            ssrc, seq0, ts0 = self.p_ssrc[j], self.p_seq0[j], self.p_ts0[j]
            video = self.p_video[j]
            while i < due:
                if video:
                    f = i * fps_bits // VIDEO_BITRATE_BPS
                    first = i == 0 or (i - 1) * fps_bits // VIDEO_BITRATE_BPS != f
                    marker = (i + 1) * fps_bits // VIDEO_BITRATE_BPS != f
                    if first:
                        if self.p_key_pending[j] or f % key_every == 0:
                            self.p_key_pending[j] = False
                            self.keyframes_sent += 1
                            buf = bytearray(tmpl[0])
                        else:
                            buf = bytearray(tmpl[1])
                    else:
                        buf = bytearray(tmpl[2])
                    pack_hdr(buf, 1, (0x80 if marker else 0) | VP8_PT, (seq0 + i) & 0xFFFF, (ts0 + f * ts_step) & 0xFFFFFFFF, ssrc)
                    pack_u16(buf, pic_off, 0x8000 | (f & 0x7FFF))
                else:
                    buf = bytearray(tmpl[0])
                    pack_hdr(buf, 1, (0x80 if i == 0 else 0) | OPUS_PT, (seq0 + i) & 0xFFFF, (ts0 + i * 960) & 0xFFFFFFFF, ssrc)
                pack_u32(buf, abs_off, (ABS_SEND_TIME_ID << 28) | (2 << 24) | abs24)
                peer.twcc_seq = (peer.twcc_seq + 1) & 0xFFFF
                pack_u16(buf, twcc_off, peer.twcc_seq)
                pack_stamp(buf, len(buf) - STAMP_BYTES, time.time_ns(), i)
                tx.add(srtp.protect_rtp(buf), remote)
                i += 1
                self.tx_pkts += 1
            self.p_idx[j] = i
        if tx.pending:
            tx.flush()

    # ------------------------------------------------------------------ main loop
    def _stdin_reader(self) -> None:
        """Thread: read command lines from stdin into ``self._commands`` (end of input: quit)."""
        for line in sys.stdin.buffer:
            if line.strip():
                self._commands.append(line)
        self._commands.append(b'{"cmd":"quit"}')

    def run(self) -> None:
        """Loop every ``poll_ns``: commands, pacing, ICE/DTLS timers, then drain the socket
        (non-blocking ``recvmmsg`` until empty) and sleep until the next period."""
        threading.Thread(target=self._stdin_reader, name="stdin", daemon=True).start()
        self.reply({"ev": "ready", "pid": os.getpid(), "port": self.port,
                    "dtls": {"role": "client", "fingerprints": self.cert.fingerprints}})
        next_timers_ns = 0
        poll_ns = self.poll_ns
        commands = self._commands
        while self.running:
            while commands:
                self.handle_command(json.loads(commands.popleft()))
            now_ns = time.monotonic_ns()
            if self.p_active and now_ns >= self.next_tick_ns:
                self.next_tick_ns = now_ns + PACER_TICK_NS
                self.send_due(now_ns)
            if now_ns >= next_timers_ns:
                next_timers_ns = now_ns + (5_000_000 if self.pending_add or self.handshaking else 20_000_000)
                self.run_timers(now_ns)
            self.drain_socket()
            delay_ns = poll_ns - (time.monotonic_ns() - now_ns)
            if delay_ns > 0:
                time.sleep(delay_ns / 1e9)
        self.sock.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="raysfu load-generator peer process (JSON lines on stdin/stdout)")
    ap.add_argument("--sample-every", type=int, default=16, help="unprotect 1 received packet in K (1: all)")
    ap.add_argument("--batch", type=int, default=64, help="datagrams per recvmmsg/sendmmsg")
    ap.add_argument("--srtp-suite", action="append", default=None, help="offer only these SRTP suites (repeatable)")
    ap.add_argument("--poll-us", type=int, default=1000, help="loop period (µs): socket drained, timers run")
    args = ap.parse_args(argv)
    LoadGen(sample_every=args.sample_every, batch=args.batch, srtp_crypto_suites=args.srtp_suite,
            poll_us=args.poll_us).run()


if __name__ == "__main__":
    main()
