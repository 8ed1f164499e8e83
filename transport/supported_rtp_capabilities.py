"""What raysfu can route: codecs and RTP header extensions (mediasoup ``supportedRtpCapabilities``).

``SUPPORTED_RTP_CAPABILITIES`` is an ``RtpCapabilities`` dict in mediasoup's camelCase JSON,
written in the short form mediasoup uses (no ``parameters``/``channels`` defaults filled in);
``raysfu.transport.ortc.get_supported_rtp_capabilities()`` returns a normalised deep copy.
Do not mutate it.

Codecs: the subset of mediasoup's list that our forwarding path handles, plus AV1:

- audio: opus 48000/2 (nack, transport-cc), PCMU (static PT 0), PCMA (PT 8), G722 (PT 9),
  all 8000 Hz with transport-cc;
- video, all 90000 Hz with nack, nack pli, ccm fir, goog-remb, transport-cc: VP8, VP9, H264
  (one entry with ``level-asymmetry-allowed: 1``, as mediasoup lists it: the router matches
  user codecs non-strictly, so ``packetization-mode`` 0/1 and profiles come from the
  application's ``media_codecs``), AV1.

Header extensions: mediasoup's ids and directions, without the framemarking drafts (removed
upstream), plus the AV1 dependency descriptor (video, id 8, ``sendrecv`` as mediasoup has it
since its consumers forward it, versatica/mediasoup#1610; mediasoup-client keeps it in the SDP
of AV1/H264 m-sections only).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SUPPORTED_RTP_CAPABILITIES",
    "URI_MID",
    "URI_RTP_STREAM_ID",
    "URI_REPAIRED_RTP_STREAM_ID",
    "URI_ABS_SEND_TIME",
    "URI_TRANSPORT_WIDE_CC_01",
    "URI_DEPENDENCY_DESCRIPTOR",
    "URI_SSRC_AUDIO_LEVEL",
    "URI_VIDEO_ORIENTATION",
    "URI_TOFFSET",
    "URI_ABS_CAPTURE_TIME",
    "URI_PLAYOUT_DELAY",
]

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"  # RFC 9143 §15
URI_RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852 §3.1 (rid)
URI_REPAIRED_RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"  # RFC 8852 §3.2
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TRANSPORT_WIDE_CC_01 = (
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
)
URI_DEPENDENCY_DESCRIPTOR = (
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
)
URI_SSRC_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"  # 3GPP TS 26.114 §7.4.5
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"  # RFC 5450
URI_ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
URI_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

_AUDIO_FB: list[dict[str, Any]] = [{"type": "nack"}, {"type": "transport-cc"}]
_TCC_FB: list[dict[str, Any]] = [{"type": "transport-cc"}]
_VIDEO_FB: list[dict[str, Any]] = [
    {"type": "nack"},
    {"type": "nack", "parameter": "pli"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "goog-remb"},
    {"type": "transport-cc"},
]


def _video(mime_type: str, **extra: Any) -> dict[str, Any]:
    codec = {"kind": "video", "mimeType": mime_type, "clockRate": 90000}
    codec.update(extra)
    codec["rtcpFeedback"] = [dict(fb) for fb in _VIDEO_FB]
    return codec


def _ext(kind: str, uri: str, preferred_id: int, direction: str = "sendrecv") -> dict[str, Any]:
    return {
        "kind": kind,
        "uri": uri,
        "preferredId": preferred_id,
        "preferredEncrypt": False,
        "direction": direction,
    }


SUPPORTED_RTP_CAPABILITIES: dict[str, Any] = {
    "codecs": [
        {
            "kind": "audio",
            "mimeType": "audio/opus",
            "clockRate": 48000,
            "channels": 2,
            "rtcpFeedback": [dict(fb) for fb in _AUDIO_FB],
        },
        {
            "kind": "audio",
            "mimeType": "audio/PCMU",
            "preferredPayloadType": 0,
            "clockRate": 8000,
            "rtcpFeedback": [dict(fb) for fb in _TCC_FB],
        },
        {
            "kind": "audio",
            "mimeType": "audio/PCMA",
            "preferredPayloadType": 8,
            "clockRate": 8000,
            "rtcpFeedback": [dict(fb) for fb in _TCC_FB],
        },
        {
            "kind": "audio",
            "mimeType": "audio/G722",
            "preferredPayloadType": 9,
            "clockRate": 8000,
            "rtcpFeedback": [dict(fb) for fb in _TCC_FB],
        },
        _video("video/VP8"),
        _video("video/VP9"),
        _video("video/H264", parameters={"level-asymmetry-allowed": 1}),
        _video("video/AV1"),
    ],
    "headerExtensions": [
        _ext("audio", URI_MID, 1),
        _ext("video", URI_MID, 1),
        _ext("video", URI_RTP_STREAM_ID, 2, "recvonly"),
        _ext("video", URI_REPAIRED_RTP_STREAM_ID, 3, "recvonly"),
        _ext("audio", URI_ABS_SEND_TIME, 4),
        _ext("video", URI_ABS_SEND_TIME, 4),
        # For audio, transport-wide-cc-01 is only enabled when receiving (as mediasoup).
        _ext("audio", URI_TRANSPORT_WIDE_CC_01, 5, "recvonly"),
        _ext("video", URI_TRANSPORT_WIDE_CC_01, 5),
        _ext("video", URI_DEPENDENCY_DESCRIPTOR, 8),
        _ext("audio", URI_SSRC_AUDIO_LEVEL, 10),
        _ext("video", URI_VIDEO_ORIENTATION, 11),
        _ext("video", URI_TOFFSET, 12),
        _ext("audio", URI_ABS_CAPTURE_TIME, 13),
        _ext("video", URI_ABS_CAPTURE_TIME, 13),
        _ext("audio", URI_PLAYOUT_DELAY, 14),
        _ext("video", URI_PLAYOUT_DELAY, 14),
    ],
}
