"""ORTC negotiation, following mediasoup's test-ortc / test-Producer / test-Consumer cases."""

import copy
import itertools

import pytest

from raysfu.transport import ortc
from raysfu.transport.errors import UnsupportedError
from raysfu.transport.supported_rtp_capabilities import (
    SUPPORTED_RTP_CAPABILITIES,
    URI_ABS_SEND_TIME,
    URI_DEPENDENCY_DESCRIPTOR,
    URI_MID,
    URI_TRANSPORT_WIDE_CC_01,
)

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

VIDEO_FB = [
    {"type": "nack", "parameter": ""},
    {"type": "nack", "parameter": "pli"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "goog-remb", "parameter": ""},
    {"type": "transport-cc", "parameter": ""},
]


def counter(start):
    """A fake ``random_ssrc``: start, start+1000, start+2000, ..."""
    it = itertools.count(start, 1000)
    return lambda: next(it)


def ext(kind, uri, preferred_id, direction="sendrecv"):
    return {"kind": kind, "uri": uri, "preferredId": preferred_id, "preferredEncrypt": False,
            "direction": direction}


# ---------------------------------------------------------------------------------------------
# Router capabilities
# ---------------------------------------------------------------------------------------------


def test_router_caps_merge_parameters_honour_preferred_pt_and_add_rtx():
    media_codecs = [
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
         "parameters": {"useinbandfec": 1, "foo": "bar"}},
        {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 125, "clockRate": 90000},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"level-asymmetry-allowed": 1, "profile-level-id": "42e01f", "foo": "bar"},
         "rtcpFeedback": []},  # ignored: feedback comes from the supported table
    ]
    before = copy.deepcopy(media_codecs)
    caps = ortc.generate_router_rtp_capabilities(media_codecs)
    assert media_codecs == before
    assert caps["codecs"] == [
        {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000,
         "channels": 2, "parameters": {"useinbandfec": 1, "foo": "bar"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "transport-cc", "parameter": ""}]},
        {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 125, "clockRate": 90000,
         "parameters": {}, "rtcpFeedback": VIDEO_FB},
        {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 101, "clockRate": 90000,
         "parameters": {"apt": 125}, "rtcpFeedback": []},
        {"kind": "video", "mimeType": "video/H264", "preferredPayloadType": 102, "clockRate": 90000,
         "parameters": {"level-asymmetry-allowed": 1, "profile-level-id": "42e01f", "foo": "bar"},
         "rtcpFeedback": VIDEO_FB},
        {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 103, "clockRate": 90000,
         "parameters": {"apt": 102}, "rtcpFeedback": []},
    ]


def test_router_caps_design_example_payload_types():
    caps = ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}},
    ])
    assert [(c["mimeType"], c["preferredPayloadType"], c["parameters"].get("apt")) for c in caps["codecs"]] == [
        ("audio/opus", 100, None), ("video/VP8", 101, None), ("video/rtx", 102, 101),
        ("video/H264", 103, None), ("video/rtx", 104, 103)]
    assert caps["codecs"][3]["parameters"] == {
        "level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f"}


def test_router_caps_static_payload_types_and_case_insensitive_mime_type():
    caps = ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/pcmu", "clockRate": 8000},
        {"kind": "audio", "mimeType": "audio/PCMA", "clockRate": 8000},
        {"kind": "audio", "mimeType": "audio/G722", "clockRate": 8000},
        {"kind": "video", "mimeType": "video/vp9", "clockRate": 90000, "parameters": {"profile-id": 2}},
        {"kind": "video", "mimeType": "video/AV1", "clockRate": 90000},
    ])
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in caps["codecs"]] == [
        ("audio/PCMU", 0), ("audio/PCMA", 8), ("audio/G722", 9), ("video/VP9", 100),
        ("video/rtx", 101), ("video/AV1", 102), ("video/rtx", 103)]
    assert caps["codecs"][0]["channels"] == 1
    assert caps["codecs"][0]["rtcpFeedback"] == [{"type": "transport-cc", "parameter": ""}]


def test_router_caps_preferred_pt_is_removed_from_the_dynamic_pool():
    caps = ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
         "preferredPayloadType": 100},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
    ])
    assert [c["preferredPayloadType"] for c in caps["codecs"]] == [100, 101, 102]


def test_router_caps_header_extensions_are_the_supported_list():
    caps = ortc.generate_router_rtp_capabilities([])
    assert caps["codecs"] == []
    exts = {(e["kind"], e["uri"]): (e["preferredId"], e["direction"]) for e in caps["headerExtensions"]}
    assert exts == {
        ("audio", MID): (1, "sendrecv"), ("video", MID): (1, "sendrecv"),
        ("video", RID): (2, "recvonly"), ("video", RRID): (3, "recvonly"),
        ("audio", ABS_SEND_TIME): (4, "sendrecv"), ("video", ABS_SEND_TIME): (4, "sendrecv"),
        ("audio", TWCC): (5, "recvonly"), ("video", TWCC): (5, "sendrecv"),
        ("video", URI_DEPENDENCY_DESCRIPTOR): (8, "sendrecv"),
        ("audio", AUDIO_LEVEL): (10, "sendrecv"),
        ("video", VIDEO_ORIENTATION): (11, "sendrecv"), ("video", TOFFSET): (12, "sendrecv"),
        ("audio", ABS_CAPTURE_TIME): (13, "sendrecv"), ("video", ABS_CAPTURE_TIME): (13, "sendrecv"),
        ("audio", PLAYOUT_DELAY): (14, "sendrecv"), ("video", PLAYOUT_DELAY): (14, "sendrecv"),
    }
    assert not any("framemarking" in e["uri"] for e in caps["headerExtensions"])
    assert all(e["preferredEncrypt"] is False for e in caps["headerExtensions"])


@pytest.mark.parametrize("codec", [
    {"kind": "audio", "mimeType": "audio/chicken", "clockRate": 8000, "channels": 4},
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 1},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 48000},
    {"kind": "video", "mimeType": "video/H265", "clockRate": 90000},
])
def test_router_caps_unsupported_codec_raises_unsupported_error(codec):
    with pytest.raises(UnsupportedError):
        ortc.generate_router_rtp_capabilities([codec])


def test_router_caps_too_many_codecs_exhaust_the_pt_pool():
    codecs = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}] * 100
    with pytest.raises(ValueError, match="cannot allocate"):
        ortc.generate_router_rtp_capabilities(codecs)
    # 32 dynamic PTs: 16 video codecs (+16 RTX) fit, the 17th does not.
    vp8 = {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    assert len(ortc.generate_router_rtp_capabilities([vp8] * 16)["codecs"]) == 32
    with pytest.raises(ValueError, match="media_codecs"):
        ortc.generate_router_rtp_capabilities([vp8] * 17)


def test_router_caps_duplicated_preferred_payload_type_raises_type_error():
    with pytest.raises(TypeError, match="preferredPayloadType"):
        ortc.generate_router_rtp_capabilities([
            {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
            {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "preferredPayloadType": 100},
        ])
    with pytest.raises(TypeError, match="duplicated"):  # collides with VP8's RTX (101)
        ortc.generate_router_rtp_capabilities([
            {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
            {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
             "preferredPayloadType": 101},
        ])


@pytest.mark.parametrize("codec, field, exc", [
    ({"mimeType": "audio/opus", "clockRate": "48000", "channels": 2}, "media_codecs[0].clockRate", TypeError),
    ({"mimeType": "opus", "clockRate": 48000}, "media_codecs[0].mimeType", ValueError),
    ({"clockRate": 48000}, "media_codecs[0].mimeType", TypeError),
    ({"mimeType": "audio/opus", "clockRate": 48000, "channels": 2, "preferredPayloadType": "100"},
     "media_codecs[0].preferredPayloadType", TypeError),
    ({"mimeType": "audio/opus", "clockRate": 48000, "channels": 2, "preferredPayloadType": 200},
     "media_codecs[0].preferredPayloadType", ValueError),
    ({"mimeType": "audio/opus", "clockRate": 48000, "channels": 2, "parameters": {"x": [1]}},
     "media_codecs[0].parameters", TypeError),
])
def test_router_caps_bad_entries_name_the_field(codec, field, exc):
    with pytest.raises(exc, match=field.replace("[", r"\[").replace("]", r"\]")):
        ortc.generate_router_rtp_capabilities([codec])


def test_supported_capabilities_are_a_normalised_deep_copy():
    caps = ortc.get_supported_rtp_capabilities()
    mimes = [c["mimeType"] for c in caps["codecs"]]
    assert mimes == ["audio/opus", "audio/PCMU", "audio/PCMA", "audio/G722", "video/VP8", "video/VP9",
                     "video/H264", "video/AV1"]
    assert all(c["kind"] == ("audio" if c["mimeType"].startswith("audio") else "video") for c in caps["codecs"])
    assert all("channels" not in c for c in caps["codecs"] if c["kind"] == "video")
    caps["codecs"].clear()
    assert len(ortc.get_supported_rtp_capabilities()["codecs"]) == 8
    assert "parameters" not in SUPPORTED_RTP_CAPABILITIES["codecs"][0]  # source left untouched


# ---------------------------------------------------------------------------------------------
# The full chain: mapping → consumable → consumer → pipe consumer (mediasoup test-ortc)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def h264_router_caps():
    return ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1,
                        "profile-level-id": "4d0032", "bar": "lalala"}},
    ])


H264_PRODUCER = {
    "codecs": [
        {"mimeType": "video/H264", "payloadType": 111, "clockRate": 90000,
         "parameters": {"foo": 1234, "packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "goog-remb", "parameter": ""}]},
        {"mimeType": "video/rtx", "payloadType": 112, "clockRate": 90000, "parameters": {"apt": 111},
         "rtcpFeedback": []},
    ],
    "headerExtensions": [{"uri": MID, "id": 1}, {"uri": VIDEO_ORIENTATION, "id": 2}],
    "encodings": [
        {"ssrc": 11111111, "rtx": {"ssrc": 11111112}, "maxBitrate": 111111, "scalabilityMode": "L1T3"},
        {"ssrc": 21111111, "rtx": {"ssrc": 21111112}, "maxBitrate": 222222, "scalabilityMode": "L1T3"},
        {"rid": "high", "maxBitrate": 333333, "scalabilityMode": "L1T3"},
    ],
    "rtcp": {"cname": "qwerty1234"},
}

H264_REMOTE_CAPS = {
    "codecs": [
        {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000,
         "channels": 2, "parameters": {}, "rtcpFeedback": []},
        {"kind": "video", "mimeType": "video/H264", "preferredPayloadType": 101, "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "4d0032", "baz": "LOLOLO"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "foo", "parameter": "FOO"}]},
        {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102, "clockRate": 90000,
         "parameters": {"apt": 101}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        ext("audio", MID, 1), ext("video", MID, 1), ext("video", RID, 2), ext("audio", AUDIO_LEVEL, 8),
        ext("video", VIDEO_ORIENTATION, 11), ext("video", TOFFSET, 12),
    ],
}


def test_mapping_consumable_consumer_and_pipe_chain(h264_router_caps):
    producer = copy.deepcopy(H264_PRODUCER)
    mapping = ortc.get_producer_rtp_parameters_mapping(producer, h264_router_caps, random_ssrc=counter(500000000))
    assert producer == H264_PRODUCER  # not mutated
    assert mapping["codecs"] == [{"payloadType": 111, "mappedPayloadType": 101},
                                 {"payloadType": 112, "mappedPayloadType": 102}]
    assert mapping["encodings"] == [
        {"mappedSsrc": 500000000, "ssrc": 11111111, "scalabilityMode": "L1T3"},
        {"mappedSsrc": 500000001, "ssrc": 21111111, "scalabilityMode": "L1T3"},
        {"mappedSsrc": 500000002, "rid": "high", "scalabilityMode": "L1T3"},
    ]

    consumable = ortc.get_consumable_rtp_parameters("video", producer, h264_router_caps, mapping)
    assert consumable["codecs"] == [
        {"mimeType": "video/H264", "payloadType": 101, "clockRate": 90000,
         "parameters": {"foo": 1234, "packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": VIDEO_FB},
        {"mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000, "parameters": {"apt": 101},
         "rtcpFeedback": []},
    ]
    assert consumable["encodings"] == [
        {"ssrc": 500000000, "maxBitrate": 111111, "scalabilityMode": "L1T3"},
        {"ssrc": 500000001, "maxBitrate": 222222, "scalabilityMode": "L1T3"},
        {"ssrc": 500000002, "maxBitrate": 333333, "scalabilityMode": "L1T3"},
    ]
    assert consumable["rtcp"] == {"cname": "qwerty1234", "reducedSize": True}
    # Router video extensions usable by consumers (sendrecv/sendonly only).
    assert [(e["uri"], e["id"]) for e in consumable["headerExtensions"]] == [
        (MID, 1), (ABS_SEND_TIME, 4), (TWCC, 5), (URI_DEPENDENCY_DESCRIPTOR, 8), (VIDEO_ORIENTATION, 11),
        (TOFFSET, 12), (ABS_CAPTURE_TIME, 13), (PLAYOUT_DELAY, 14)]
    assert consumable["headerExtensions"][0] == {"uri": MID, "id": 1, "encrypt": False, "parameters": {}}

    consumer = ortc.get_consumer_rtp_parameters(consumable, H264_REMOTE_CAPS, pipe=False, enable_rtx=True,
                                                random_ssrc=counter(700000000))
    assert consumer["codecs"] == [
        {"mimeType": "video/H264", "payloadType": 101, "clockRate": 90000,
         "parameters": {"foo": 1234, "packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "foo", "parameter": "FOO"}]},
        {"mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000, "parameters": {"apt": 101},
         "rtcpFeedback": []},
    ]
    assert consumer["encodings"] == [{"ssrc": 700000000, "rtx": {"ssrc": 700000001},
                                      "scalabilityMode": "L3T3", "maxBitrate": 333333}]
    assert consumer["headerExtensions"] == [
        {"uri": MID, "id": 1, "encrypt": False, "parameters": {}},
        {"uri": VIDEO_ORIENTATION, "id": 11, "encrypt": False, "parameters": {}},
        {"uri": TOFFSET, "id": 12, "encrypt": False, "parameters": {}},
    ]
    assert consumer["rtcp"] == {"cname": "qwerty1234", "reducedSize": True}
    assert "mid" not in consumer

    pipe = ortc.get_pipe_consumer_rtp_parameters(consumable, enable_rtx=False, random_ssrc=counter(800000000))
    assert pipe["codecs"] == [
        {"mimeType": "video/H264", "payloadType": 101, "clockRate": 90000,
         "parameters": {"foo": 1234, "packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": [{"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"}]},
    ]
    assert pipe["encodings"] == [
        {"ssrc": 800000000, "maxBitrate": 111111, "scalabilityMode": "L1T3"},
        {"ssrc": 800000001, "maxBitrate": 222222, "scalabilityMode": "L1T3"},
        {"ssrc": 800000002, "maxBitrate": 333333, "scalabilityMode": "L1T3"},
    ]
    assert [e["uri"] for e in pipe["headerExtensions"]] == [
        URI_DEPENDENCY_DESCRIPTOR, VIDEO_ORIENTATION, TOFFSET, ABS_CAPTURE_TIME, PLAYOUT_DELAY]
    assert pipe["rtcp"] == {"cname": "qwerty1234", "reducedSize": True}
    assert "mid" not in pipe


def test_pipe_consumer_with_rtx_keeps_rtx_codec_and_plain_nack(h264_router_caps):
    mapping = ortc.get_producer_rtp_parameters_mapping(H264_PRODUCER, h264_router_caps)
    consumable = ortc.get_consumable_rtp_parameters("video", H264_PRODUCER, h264_router_caps, mapping)
    pipe = ortc.get_pipe_consumer_rtp_parameters(consumable, enable_rtx=True, random_ssrc=counter(100000000))
    assert [c["mimeType"] for c in pipe["codecs"]] == ["video/H264", "video/rtx"]
    assert pipe["codecs"][0]["rtcpFeedback"] == [
        {"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
        {"type": "ccm", "parameter": "fir"}]
    # rtx base is a second random draw.
    assert [(e["ssrc"], e["rtx"]["ssrc"]) for e in pipe["encodings"]] == [
        (100000000, 100001000), (100000001, 100001001), (100000002, 100001002)]


def test_consume_in_pipe_mode_copies_every_encoding(h264_router_caps):
    mapping = ortc.get_producer_rtp_parameters_mapping(H264_PRODUCER, h264_router_caps)
    consumable = ortc.get_consumable_rtp_parameters("video", H264_PRODUCER, h264_router_caps, mapping)
    consumer = ortc.get_consumer_rtp_parameters(consumable, H264_REMOTE_CAPS, pipe=True,
                                                random_ssrc=counter(300000000))
    assert [(e["ssrc"], e["rtx"]["ssrc"], e["maxBitrate"]) for e in consumer["encodings"]] == [
        (300000000, 300001000, 111111), (300000001, 300001001, 222222), (300000002, 300001002, 333333)]


def test_mapping_incompatible_producer_codec_raises_unsupported_error():
    caps = ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "640032"}},
    ])
    vp8 = {"codecs": [{"mimeType": "video/VP8", "payloadType": 120, "clockRate": 90000,
                       "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "fir"}]}],
           "headerExtensions": [], "encodings": [{"ssrc": 11111111}], "rtcp": {"cname": "qwerty1234"}}
    with pytest.raises(UnsupportedError):
        ortc.get_producer_rtp_parameters_mapping(vp8, caps)
    # Same mimeType but another H264 profile (Constrained Baseline vs High) or packetization-mode.
    for params in ({"packetization-mode": 1, "profile-level-id": "42e01f"},
                   {"packetization-mode": 0, "profile-level-id": "640032"}):
        h264 = {"codecs": [{"mimeType": "video/H264", "payloadType": 96, "clockRate": 90000,
                            "parameters": params}], "encodings": [{"ssrc": 1}]}
        with pytest.raises(UnsupportedError):
            ortc.get_producer_rtp_parameters_mapping(h264, caps)


def test_mapping_rtx_without_router_rtx_or_media_codec():
    caps = ortc.generate_router_rtp_capabilities(
        [{"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}])
    caps["codecs"] = [c for c in caps["codecs"] if c["mimeType"] != "video/rtx"]
    params = {"codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                         {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                          "parameters": {"apt": 96}}], "encodings": [{"ssrc": 1}]}
    with pytest.raises(UnsupportedError, match="RTX"):
        ortc.get_producer_rtp_parameters_mapping(params, caps)
    params["codecs"][1]["parameters"]["apt"] = 95
    with pytest.raises(TypeError, match=r"codecs\[1\].parameters.apt"):
        ortc.get_producer_rtp_parameters_mapping(params, caps)


# ---------------------------------------------------------------------------------------------
# H264 level negotiation in produce (matchCodecs modify)
# ---------------------------------------------------------------------------------------------


def test_h264_producer_level_is_capped_to_the_router_level_without_asymmetry():
    caps = ortc.generate_router_rtp_capabilities([
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}},
    ])
    offered = {"mid": "0", "codecs": [{"mimeType": "video/H264", "payloadType": 102, "clockRate": 90000,
                                       "parameters": {"packetization-mode": 1, "profile-level-id": "42e034"}}],
               "encodings": [{"ssrc": 1234}], "rtcp": {"cname": "c"}}
    params, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters("video", offered, caps)
    assert offered["codecs"][0]["parameters"]["profile-level-id"] == "42e034"  # input untouched
    assert params["codecs"][0]["parameters"]["profile-level-id"] == "42e01f"
    assert consumable["codecs"][0]["parameters"]["profile-level-id"] == "42e01f"
    # Also when the consumable is computed from the raw (un-rewritten) producer parameters.
    assert ortc.get_consumable_rtp_parameters("video", offered, caps, mapping)["codecs"][0]["parameters"][
        "profile-level-id"] == "42e01f"
    assert ptype == "simple"

    # With level-asymmetry-allowed on both sides the producer keeps its own level.
    offered["codecs"][0]["parameters"]["level-asymmetry-allowed"] = 1
    _, _, consumable, _ = ortc.prepare_producer_rtp_parameters("video", offered, caps)
    assert consumable["codecs"][0]["parameters"]["profile-level-id"] == "42e034"


def test_match_codecs_rules():
    opus = {"mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
    assert ortc.match_codecs(opus, {"mimeType": "AUDIO/OPUS", "clockRate": 48000, "channels": 2})
    assert not ortc.match_codecs(opus, {"mimeType": "audio/opus", "clockRate": 48000, "channels": 1})
    assert not ortc.match_codecs(opus, {"mimeType": "audio/opus", "clockRate": 16000, "channels": 2})
    assert ortc.match_codecs({"mimeType": "audio/PCMU", "clockRate": 8000},
                             {"mimeType": "audio/PCMU", "clockRate": 8000, "channels": 1})
    vp9_0 = {"mimeType": "video/VP9", "clockRate": 90000, "parameters": {}}
    vp9_2 = {"mimeType": "video/VP9", "clockRate": 90000, "parameters": {"profile-id": 2}}
    assert ortc.match_codecs(vp9_0, vp9_2)
    assert not ortc.match_codecs(vp9_0, vp9_2, strict=True)
    assert ortc.match_codecs(vp9_0, {"mimeType": "video/VP9", "clockRate": 90000,
                                     "parameters": {"profile-id": "0"}}, strict=True)
    h264_a = {"mimeType": "video/H264", "clockRate": 90000,
              "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}}
    h264_b = {"mimeType": "video/H264", "clockRate": 90000,
              "parameters": {"packetization-mode": "1", "profile-level-id": "42e015"}}
    assert ortc.match_codecs(h264_a, h264_b, strict=True)
    assert h264_a["parameters"]["profile-level-id"] == "42e01f"  # no modify, untouched
    assert ortc.match_codecs(h264_a, h264_b, strict=True, modify=True)
    assert h264_a["parameters"]["profile-level-id"] == "42e015"
    assert not ortc.match_codecs(
        h264_a, {"mimeType": "video/H264", "clockRate": 90000, "parameters": {"packetization-mode": 1,
                                                                            "profile-level-id": "CHICKEN"}},
        strict=True)
    assert ortc.match_codecs(
        h264_a, {"mimeType": "video/H264", "clockRate": 90000, "parameters": {"profile-level-id": "CHICKEN"}})


# ---------------------------------------------------------------------------------------------
# Validation (test-Producer's wrong-argument cases)
# ---------------------------------------------------------------------------------------------


def test_validate_rtp_parameters_fills_mediasoup_defaults():
    raw = {"codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000},
                      {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "channels": 2,
                       "rtcpFeedback": [{"type": "nack"}]}],
           "headerExtensions": [{"uri": MID, "id": 4}],
           "encodings": [{"ssrc": 5, "maxFramerate": 30}]}
    before = copy.deepcopy(raw)
    out = ortc.validate_rtp_parameters(raw)
    assert raw == before
    assert out == {
        "codecs": [
            {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 1,
             "parameters": {}, "rtcpFeedback": []},
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "nack", "parameter": ""}]},
        ],
        "headerExtensions": [{"uri": MID, "id": 4, "encrypt": False, "parameters": {}}],
        "encodings": [{"ssrc": 5, "maxFramerate": 30, "dtx": False}],
        "rtcp": {"reducedSize": True},
    }


@pytest.mark.parametrize("mutate, field, exc", [
    (lambda p: p["codecs"][0].update(payloadType="111"), r"rtpParameters\.codecs\[0\]\.payloadType must be an int", TypeError),
    (lambda p: p["codecs"][0].update(payloadType=True), r"rtpParameters\.codecs\[0\]\.payloadType", TypeError),
    (lambda p: p["codecs"][0].update(payloadType=128), r"rtpParameters\.codecs\[0\]\.payloadType", ValueError),
    (lambda p: p["codecs"][0].pop("clockRate"), r"rtpParameters\.codecs\[0\]\.clockRate", TypeError),
    (lambda p: p["codecs"][0].update(parameters={"apt": "96"}), r"rtpParameters\.codecs\[0\]\.parameters\.apt", TypeError),
    (lambda p: p["codecs"][0].update(rtcpFeedback=[{"parameter": "pli"}]), r"rtcpFeedback\[0\]\.type", TypeError),
    (lambda p: p.pop("codecs"), r"rtpParameters\.codecs", TypeError),
    (lambda p: p.update(codecs={}), r"rtpParameters\.codecs", TypeError),
    (lambda p: p.update(mid=7), r"rtpParameters\.mid", TypeError),
    (lambda p: p.update(mid=""), r"rtpParameters\.mid", TypeError),
    (lambda p: p.update(encodings=[{"ssrc": "1111"}]), r"rtpParameters\.encodings\[0\]\.ssrc", TypeError),
    (lambda p: p.update(encodings=[{"ssrc": 2**32}]), r"rtpParameters\.encodings\[0\]\.ssrc", ValueError),
    (lambda p: p.update(encodings=[{"ssrc": 1, "rtx": {}}]), r"encodings\[0\]\.rtx\.ssrc", TypeError),
    (lambda p: p.update(encodings=[{"rid": 3}]), r"encodings\[0\]\.rid", TypeError),
    (lambda p: p.update(encodings=[{"ssrc": 1, "scalabilityMode": 3}]), r"encodings\[0\]\.scalabilityMode", TypeError),
    (lambda p: p.update(headerExtensions=[{"uri": MID, "id": 0}]), r"headerExtensions\[0\]\.id", ValueError),
    (lambda p: p.update(headerExtensions=[{"uri": MID, "id": "1"}]), r"headerExtensions\[0\]\.id", TypeError),
    (lambda p: p.update(headerExtensions=[{"id": 1}]), r"headerExtensions\[0\]\.uri", TypeError),
    (lambda p: p.update(rtcp={"cname": 5}), r"rtpParameters\.rtcp\.cname", TypeError),
    (lambda p: p.update(rtcp="x"), r"rtpParameters\.rtcp", TypeError),
])
def test_validate_rtp_parameters_bad_fields_raise_naming_the_field(mutate, field, exc):
    params = {"mid": "0", "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                                      "channels": 2}], "encodings": [{"ssrc": 1}]}
    mutate(params)
    with pytest.raises(exc, match=field):
        ortc.validate_rtp_parameters(params)


def test_validate_rtp_parameters_rejects_non_dict():
    with pytest.raises(TypeError, match="rtpParameters"):
        ortc.validate_rtp_parameters([])


def test_validate_rtp_capabilities_defaults_and_errors():
    caps = ortc.validate_rtp_capabilities({
        "codecs": [{"kind": "video", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000}],
        "headerExtensions": [{"kind": "audio", "uri": MID, "preferredId": 1}],
    })
    assert caps["codecs"][0]["kind"] == "audio"  # taken from the mimeType, as mediasoup
    assert caps["codecs"][0]["channels"] == 1
    assert caps["headerExtensions"][0] == ext("audio", MID, 1)
    assert ortc.validate_rtp_capabilities({}) == {"codecs": [], "headerExtensions": []}
    with pytest.raises(TypeError, match=r"rtpCapabilities\.codecs\[0\]\.preferredPayloadType"):
        ortc.validate_rtp_capabilities({"codecs": [{"mimeType": "audio/opus", "clockRate": 48000,
                                                    "preferredPayloadType": "100"}]})
    with pytest.raises(TypeError, match=r"rtpCapabilities\.headerExtensions\[0\]\.kind"):
        ortc.validate_rtp_capabilities({"headerExtensions": [{"kind": "data", "uri": MID, "preferredId": 1}]})
    with pytest.raises(TypeError, match=r"rtpCapabilities\.headerExtensions\[0\]\.preferredId"):
        ortc.validate_rtp_capabilities({"headerExtensions": [{"kind": "audio", "uri": MID}]})
    with pytest.raises(ValueError, match=r"direction"):
        ortc.validate_rtp_capabilities({"headerExtensions": [{"kind": "audio", "uri": MID, "preferredId": 1,
                                                              "direction": "both"}]})
    with pytest.raises(TypeError, match=r"rtpCapabilities\.codecs"):
        ortc.validate_rtp_capabilities({"codecs": "opus"})


# ---------------------------------------------------------------------------------------------
# Producing (test-Producer)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def router_caps():
    return ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
         "parameters": {"foo": "111"}},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "4d0032",
                        "foo": "bar"}},
    ])  # opus 100, VP8 101 + rtx 102, H264 103 + rtx 104


def h264_video(**overrides):
    params = {
        "mid": "VIDEO",
        "codecs": [
            {"mimeType": "video/h264", "payloadType": 112, "clockRate": 90000,
             "parameters": {"packetization-mode": 1, "profile-level-id": "4d0032"},
             "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}, {"type": "goog-remb"}]},
            {"mimeType": "video/rtx", "payloadType": 113, "clockRate": 90000, "parameters": {"apt": 112}},
        ],
        "headerExtensions": [{"uri": MID, "id": 10}, {"uri": VIDEO_ORIENTATION, "id": 13}],
        "encodings": [{"ssrc": 22222222, "rtx": {"ssrc": 22222223}, "scalabilityMode": "L1T5"},
                      {"ssrc": 22222224, "rtx": {"ssrc": 22222225}, "scalabilityMode": "L1T5"},
                      {"ssrc": 22222226, "rtx": {"ssrc": 22222227}, "scalabilityMode": "L1T5"},
                      {"ssrc": 22222228, "rtx": {"ssrc": 22222229}, "scalabilityMode": "L1T5"}],
        "rtcp": {"cname": "FOOBAR"},
    }
    params.update(overrides)
    return params


def opus_audio(**overrides):
    params = {
        "mid": "AUDIO",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                    "parameters": {"useinbandfec": 1, "usedtx": 1, "foo": 222.222, "bar": "333"}}],
        "headerExtensions": [{"uri": MID, "id": 10}, {"uri": AUDIO_LEVEL, "id": 12}],
        "encodings": [{"ssrc": 11111111}],
        "rtcp": {"cname": "FOOBAR"},
    }
    params.update(overrides)
    return params


def test_prepare_producer_audio_and_video(router_caps):
    audio, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "audio", opus_audio(encodings=None), router_caps, cname="transport-cname", random_ssrc=counter(400000000))
    assert ptype == "simple"
    assert audio["encodings"] == [{}]  # missing encodings become one empty encoding (mid is given)
    assert audio["rtcp"] == {"cname": "transport-cname", "reducedSize": True}
    assert mapping == {"codecs": [{"payloadType": 111, "mappedPayloadType": 100}],
                       "encodings": [{"mappedSsrc": 400000000}]}
    assert consumable["codecs"] == [{
        "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
        "parameters": {"useinbandfec": 1, "usedtx": 1, "foo": 222.222, "bar": "333"},
        "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "transport-cc", "parameter": ""}]}]
    assert [(e["uri"], e["id"]) for e in consumable["headerExtensions"]] == [
        (MID, 1), (ABS_SEND_TIME, 4), (AUDIO_LEVEL, 10), (ABS_CAPTURE_TIME, 13), (PLAYOUT_DELAY, 14)]
    assert consumable["rtcp"] == {"cname": "transport-cname", "reducedSize": True}

    video, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters("video", h264_video(), router_caps)
    assert ptype == "simulcast"
    assert video["codecs"][0]["mimeType"] == "video/h264"  # producer's own spelling kept
    assert video["rtcp"]["cname"] == "FOOBAR"  # no cname override (PipeTransport)
    assert mapping["codecs"] == [{"payloadType": 112, "mappedPayloadType": 103},
                                 {"payloadType": 113, "mappedPayloadType": 104}]
    assert [c["mimeType"] for c in consumable["codecs"]] == ["video/H264", "video/rtx"]
    assert len(consumable["encodings"]) == 4
    assert all(set(e) == {"ssrc", "scalabilityMode", "dtx"} for e in consumable["encodings"])


def test_produce_without_header_extensions_and_rtcp(router_caps):
    params, _, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "audio", {"mid": "AUDIO2", "codecs": [{"mimeType": "audio/opus", "payloadType": 0, "clockRate": 48000,
                                               "channels": 2}]}, router_caps)
    assert params["headerExtensions"] == [] and params["rtcp"] == {"reducedSize": True}
    assert consumable["rtcp"] == {"reducedSize": True}
    assert ptype == "simple"


def test_produce_no_mid_and_single_encoding_without_rid_or_ssrc_is_rejected(router_caps):
    no_mid = {"codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}]}
    for encodings in ([{}], [], None):
        with pytest.raises(TypeError, match=r"rtpParameters\.mid is required"):
            ortc.prepare_producer_rtp_parameters("audio", {**no_mid, "encodings": encodings}, router_caps)
    # Any of mid, ssrc or rid makes it acceptable.
    ortc.validate_producer_rtp_parameters("audio", {**no_mid, "encodings": [{"ssrc": 1}]})
    ortc.validate_producer_rtp_parameters("audio", {**no_mid, "encodings": [{"rid": "r0"}]})
    ortc.validate_producer_rtp_parameters("audio", {**no_mid, "mid": "0"})


@pytest.mark.parametrize("kind, params, match", [
    ("chicken", {"codecs": []}, "kind"),
    ("audio", {}, r"rtpParameters\.codecs"),
    ("audio", {"codecs": [], "encodings": [{"ssrc": "1111"}], "rtcp": {"cname": "qwerty"}},
     r"encodings\[0\]\.ssrc"),
    ("audio", {"codecs": [], "mid": "0"}, r"codecs must not be empty"),
    ("video", h264_video(encodings=[]), None),  # valid: mid given, so [] → [{}] is fine
    # Wrong apt in the RTX codec.
    ("video", h264_video(codecs=[h264_video()["codecs"][0],
                                 {"mimeType": "video/rtx", "payloadType": 113, "clockRate": 90000,
                                  "parameters": {"apt": 111}}]), r"codecs\[1\]\.parameters\.apt"),
    # RTX pointing at an RTX codec.
    ("video", h264_video(codecs=[h264_video()["codecs"][0],
                                 {"mimeType": "video/rtx", "payloadType": 113, "clockRate": 90000,
                                  "parameters": {"apt": 114}},
                                 {"mimeType": "video/rtx", "payloadType": 114, "clockRate": 90000,
                                  "parameters": {"apt": 112}}]), r"names an RTX codec"),
    # Video codecs in an audio producer.
    ("audio", h264_video(), r"codecs\[0\]\.mimeType"),
    ("video", h264_video(codecs=h264_video()["codecs"] * 2), r"payloadType 112 is duplicated"),
    ("video", h264_video(codecs=h264_video()["codecs"][1:]), r"names no codec"),
    ("video", h264_video(encodings=[{"ssrc": 1}, {"scalabilityMode": "L1T3"}]), r"encodings\[1\] needs ssrc or rid"),
    ("video", h264_video(encodings=[{"ssrc": 1, "scalabilityMode": "L3T3"}, {"ssrc": 2}]),
     "simulcast and encodings with multiple SVC spatial layers"),
    ("video", h264_video(encodings=[{"ssrc": 1, "codecPayloadType": 113}]), r"codecPayloadType 113"),
])
def test_produce_wrong_arguments_raise_type_error(router_caps, kind, params, match):
    if match is None:
        ortc.prepare_producer_rtp_parameters(kind, params, router_caps)
        return
    with pytest.raises(TypeError, match=match):
        ortc.prepare_producer_rtp_parameters(kind, params, router_caps)


def test_produce_unsupported_codecs_raise_unsupported_error(router_caps):
    isac = {"codecs": [{"mimeType": "audio/ISAC", "payloadType": 108, "clockRate": 32000}],
            "encodings": [{"ssrc": 1111}], "rtcp": {"cname": "audio"}}
    with pytest.raises(UnsupportedError):
        ortc.prepare_producer_rtp_parameters("audio", isac, router_caps)
    chicken = h264_video(encodings=[{"ssrc": 6666, "rtx": {"ssrc": 6667}}])
    chicken["codecs"][0]["parameters"]["profile-level-id"] = "CHICKEN"
    with pytest.raises(UnsupportedError):
        ortc.prepare_producer_rtp_parameters("video", chicken, router_caps)


def test_producer_type_rules():
    def params(mime, encodings):
        return {"codecs": [{"mimeType": mime, "payloadType": 96, "clockRate": 90000}], "encodings": encodings}

    assert ortc.get_producer_type(params("video/VP8", [{"ssrc": 1}])) == "simple"
    assert ortc.get_producer_type(params("video/VP8", [{"ssrc": 1, "scalabilityMode": "L1T3"}])) == "simulcast"
    assert ortc.get_producer_type(params("video/VP8", [{"rid": "a"}, {"rid": "b"}])) == "simulcast"
    assert ortc.get_producer_type(params("video/VP9", [{"ssrc": 1, "scalabilityMode": "L3T3_KEY"}])) == "svc"
    assert ortc.get_producer_type(params("video/AV1", [{"ssrc": 1, "scalabilityMode": "L1T3"}])) == "svc"
    assert ortc.get_producer_type(params("video/VP9", [{"ssrc": 1, "scalabilityMode": "bogus"}])) == "simple"
    with pytest.raises(UnsupportedError):
        ortc.get_producer_type(params("video/VP9", [{"rid": "a"}, {"rid": "b"}]))
    with pytest.raises(UnsupportedError):
        ortc.get_producer_type({"codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000}],
                                "encodings": [{"ssrc": 1, "scalabilityMode": "L1T3"}]})


# ---------------------------------------------------------------------------------------------
# Consuming (test-Consumer)
# ---------------------------------------------------------------------------------------------

CONSUMER_DEVICE_CAPS = {
    "codecs": [
        {"mimeType": "audio/opus", "kind": "audio", "preferredPayloadType": 100, "clockRate": 48000,
         "channels": 2, "rtcpFeedback": [{"type": "nack", "parameter": ""}]},
        {"mimeType": "video/H264", "kind": "video", "preferredPayloadType": 101, "clockRate": 90000,
         "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "ccm", "parameter": "fir"}, {"type": "goog-remb", "parameter": ""}]},
        {"mimeType": "video/rtx", "kind": "video", "preferredPayloadType": 102, "clockRate": 90000,
         "parameters": {"apt": 101}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"kind": "audio", "uri": MID, "preferredId": 1, "preferredEncrypt": False},
        {"kind": "video", "uri": MID, "preferredId": 1, "preferredEncrypt": False},
        {"kind": "video", "uri": RID, "preferredId": 2, "preferredEncrypt": False},
        {"kind": "audio", "uri": ABS_SEND_TIME, "preferredId": 4, "preferredEncrypt": False},
        {"kind": "video", "uri": ABS_SEND_TIME, "preferredId": 4, "preferredEncrypt": False},
        {"kind": "audio", "uri": AUDIO_LEVEL, "preferredId": 10, "preferredEncrypt": False},
        {"kind": "video", "uri": VIDEO_ORIENTATION, "preferredId": 11, "preferredEncrypt": False},
        {"kind": "video", "uri": TOFFSET, "preferredId": 12, "preferredEncrypt": False},
    ],
}


@pytest.fixture
def consumables(router_caps):
    _, _, audio, _ = ortc.prepare_producer_rtp_parameters("audio", opus_audio(), router_caps)
    _, _, video, _ = ortc.prepare_producer_rtp_parameters("video", h264_video(), router_caps)
    return audio, video


def test_consume_audio_and_video(consumables):
    audio, video = consumables
    assert ortc.can_consume(audio, CONSUMER_DEVICE_CAPS)
    assert ortc.can_consume(video, CONSUMER_DEVICE_CAPS)
    caps_before = copy.deepcopy(CONSUMER_DEVICE_CAPS)
    consumer = ortc.get_consumer_rtp_parameters(audio, CONSUMER_DEVICE_CAPS, enable_rtx=False)
    assert CONSUMER_DEVICE_CAPS == caps_before
    assert consumer["codecs"] == [{
        "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
        "parameters": {"useinbandfec": 1, "usedtx": 1, "foo": 222.222, "bar": "333"}, "rtcpFeedback": []}]
    assert "rtx" not in consumer["encodings"][0]
    assert 100000000 <= consumer["encodings"][0]["ssrc"] < 999999999
    assert consumer["rtcp"] == {"cname": "FOOBAR", "reducedSize": True}

    # enable_rtx on audio keeps the remote's plain nack (there is no audio RTX codec).
    with_rtx = ortc.get_consumer_rtp_parameters(audio, CONSUMER_DEVICE_CAPS, enable_rtx=True)
    assert with_rtx["codecs"][0]["rtcpFeedback"] == [{"type": "nack", "parameter": ""}]

    consumer = ortc.get_consumer_rtp_parameters(video, CONSUMER_DEVICE_CAPS, random_ssrc=counter(600000000))
    assert consumer["codecs"] == [
        {"mimeType": "video/H264", "payloadType": 103, "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "4d0032"},
         "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "ccm", "parameter": "fir"}, {"type": "goog-remb", "parameter": ""}]},
        {"mimeType": "video/rtx", "payloadType": 104, "clockRate": 90000, "parameters": {"apt": 103},
         "rtcpFeedback": []},
    ]
    assert consumer["encodings"] == [{"ssrc": 600000000, "rtx": {"ssrc": 600000001}, "scalabilityMode": "L4T5"}]
    assert [e["uri"] for e in consumer["headerExtensions"]] == [MID, ABS_SEND_TIME, VIDEO_ORIENTATION, TOFFSET]


def test_consume_without_rtx_drops_rtx_codec_and_plain_nack(consumables):
    _, video = consumables
    consumer = ortc.get_consumer_rtp_parameters(video, CONSUMER_DEVICE_CAPS, enable_rtx=False)
    assert [c["mimeType"] for c in consumer["codecs"]] == ["video/H264"]
    assert consumer["codecs"][0]["rtcpFeedback"] == [
        {"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"},
        {"type": "goog-remb", "parameter": ""}]
    assert "rtx" not in consumer["encodings"][0]


def test_consume_drops_rtx_when_remote_lacks_it(consumables):
    _, video = consumables
    caps = copy.deepcopy(CONSUMER_DEVICE_CAPS)
    caps["codecs"] = caps["codecs"][:2]
    consumer = ortc.get_consumer_rtp_parameters(video, caps, enable_rtx=True)
    assert [c["mimeType"] for c in consumer["codecs"]] == ["video/H264"]
    assert "rtx" not in consumer["encodings"][0]


def test_consume_incompatible_capabilities(consumables):
    audio, _ = consumables
    for caps in ({"codecs": [{"kind": "audio", "mimeType": "audio/ISAC", "preferredPayloadType": 100,
                              "clockRate": 32000, "channels": 1}], "headerExtensions": []},
                 {"codecs": [], "headerExtensions": []},
                 {}):
        assert ortc.can_consume(audio, caps) is False
        with pytest.raises(UnsupportedError, match="no compatible media codecs"):
            ortc.get_consumer_rtp_parameters(audio, caps)


def test_can_consume_is_false_when_the_first_match_is_rtx(consumables):
    _, video = consumables
    only_rtx_first = {"codecs": [
        {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 104, "clockRate": 90000,
         "parameters": {"apt": 103}}]}
    assert ortc.can_consume(video, only_rtx_first) is False


def test_can_consume_raises_on_invalid_capabilities(consumables):
    audio, _ = consumables
    with pytest.raises(TypeError, match=r"rtpCapabilities\.codecs\[0\]\.clockRate"):
        ortc.can_consume(audio, {"codecs": [{"mimeType": "audio/opus", "clockRate": "x"}]})


def test_consume_filters_header_extensions_by_uri_and_preferred_id(consumables):
    _, video = consumables
    caps = copy.deepcopy(CONSUMER_DEVICE_CAPS)
    caps["headerExtensions"] = [
        ext("video", MID, 3),  # same uri, other id → dropped
        ext("video", TOFFSET, 12),  # same uri and id → kept
        ext("video", "urn:example:unknown", 11),  # same id, other uri → dropped
    ]
    consumer = ortc.get_consumer_rtp_parameters(video, caps)
    assert consumer["headerExtensions"] == [{"uri": TOFFSET, "id": 12, "encrypt": False, "parameters": {}}]


@pytest.mark.parametrize("remote_exts, expected_types", [
    ([ext("video", TWCC, 5), ext("video", ABS_SEND_TIME, 4)],
     ["nack", "nack", "ccm", "transport-cc"]),  # transport-cc wins, REMB removed
    ([ext("video", ABS_SEND_TIME, 4)], ["nack", "nack", "ccm", "goog-remb"]),  # REMB only
    ([], ["nack", "nack", "ccm"]),  # neither
])
def test_consume_feedback_reduction_transport_cc_vs_remb(router_caps, remote_exts, expected_types):
    _, _, consumable, _ = ortc.prepare_producer_rtp_parameters(
        "video", {"mid": "v", "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}]},
        router_caps)
    caps = {"codecs": [{"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101,
                        "clockRate": 90000, "rtcpFeedback": VIDEO_FB}], "headerExtensions": remote_exts}
    consumer = ortc.get_consumer_rtp_parameters(consumable, caps)
    assert [fb["type"] for fb in consumer["codecs"][0]["rtcpFeedback"]] == expected_types


def test_consume_svc_keeps_producer_scalability_mode(router_caps):
    caps = ortc.generate_router_rtp_capabilities([{"kind": "video", "mimeType": "video/VP9", "clockRate": 90000}])
    _, _, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "video", {"mid": "v", "codecs": [{"mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                                          "parameters": {"profile-id": 0}}],
                  "encodings": [{"ssrc": 5, "scalabilityMode": "L3T3_KEY", "maxBitrate": 900000}]}, caps)
    assert ptype == "svc"
    remote = {"codecs": [{"kind": "video", "mimeType": "video/VP9", "preferredPayloadType": 100,
                          "clockRate": 90000, "parameters": {"profile-id": 0}}]}
    consumer = ortc.get_consumer_rtp_parameters(consumable, remote)
    assert consumer["encodings"][0]["scalabilityMode"] == "L3T3_KEY"
    assert consumer["encodings"][0]["maxBitrate"] == 900000
    # A VP9 profile-2 receiver cannot take it.
    remote["codecs"][0]["parameters"]["profile-id"] = 2
    assert not ortc.can_consume(consumable, remote)


# ---------------------------------------------------------------------------------------------
# What mediasoup-client 3.x on Chrome really sends
# ---------------------------------------------------------------------------------------------

CHROME_OPUS_PRODUCE = {
    "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                "parameters": {"minptime": 10, "useinbandfec": 1},
                "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}, {"type": "nack", "parameter": ""}]}],
    "headerExtensions": [
        {"uri": AUDIO_LEVEL, "id": 1, "encrypt": False, "parameters": {}},
        {"uri": ABS_SEND_TIME, "id": 2, "encrypt": False, "parameters": {}},
        {"uri": TWCC, "id": 3, "encrypt": False, "parameters": {}},
        {"uri": MID, "id": 4, "encrypt": False, "parameters": {}},
    ],
    "encodings": [{"ssrc": 3441283291, "dtx": False}],
    "rtcp": {"cname": "xyz", "reducedSize": True},
    "mid": "0",
}

CHROME_VP8_PRODUCE = {
    "codecs": [
        {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
         "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                          {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""},
                          {"type": "nack", "parameter": "pli"}]},
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96},
         "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"uri": MID, "id": 4, "encrypt": False, "parameters": {}},
        {"uri": ABS_SEND_TIME, "id": 2, "encrypt": False, "parameters": {}},
        {"uri": TWCC, "id": 3, "encrypt": False, "parameters": {}},
        {"uri": TOFFSET, "id": 14, "encrypt": False, "parameters": {}},
        {"uri": VIDEO_ORIENTATION, "id": 13, "encrypt": False, "parameters": {}},
        {"uri": PLAYOUT_DELAY, "id": 12, "encrypt": False, "parameters": {}},
        {"uri": RID, "id": 10, "encrypt": False, "parameters": {}},
        {"uri": RRID, "id": 11, "encrypt": False, "parameters": {}},
    ],
    "encodings": [{"ssrc": 1379466371, "rtx": {"ssrc": 2903093232}, "dtx": False}],
    "rtcp": {"cname": "xyz", "reducedSize": True},
    "mid": "1",
}

CHROME_VP8_SIMULCAST_ENCODINGS = [
    {"active": True, "rid": "r0", "scaleResolutionDownBy": 4, "maxBitrate": 150000, "scalabilityMode": "L1T3",
     "dtx": False},
    {"active": True, "rid": "r1", "scaleResolutionDownBy": 2, "maxBitrate": 500000, "scalabilityMode": "L1T3",
     "dtx": False},
    {"active": True, "rid": "r2", "scaleResolutionDownBy": 1, "maxBitrate": 1500000, "scalabilityMode": "L1T3",
     "dtx": False},
]


@pytest.fixture
def room_caps():
    return ortc.generate_router_rtp_capabilities([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
    ])  # opus 100, VP8 101, rtx 102


def chrome_device_caps():
    """device.rtpCapabilities of mediasoup-client on Chrome loaded with ``room_caps``."""
    return {
        "codecs": [
            {"mimeType": "audio/opus", "kind": "audio", "preferredPayloadType": 100, "clockRate": 48000,
             "channels": 2, "parameters": {"minptime": 10, "useinbandfec": 1},
             "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "transport-cc", "parameter": ""}]},
            {"mimeType": "video/VP8", "kind": "video", "preferredPayloadType": 101, "clockRate": 90000,
             "parameters": {}, "rtcpFeedback": VIDEO_FB},
            {"mimeType": "video/rtx", "kind": "video", "preferredPayloadType": 102, "clockRate": 90000,
             "parameters": {"apt": 101}, "rtcpFeedback": []},
        ],
        "headerExtensions": [
            ext("audio", MID, 1), ext("video", MID, 1), ext("video", RID, 2, "recvonly"),
            ext("video", RRID, 3, "recvonly"), ext("audio", ABS_SEND_TIME, 4), ext("video", ABS_SEND_TIME, 4),
            ext("video", TWCC, 5), ext("audio", AUDIO_LEVEL, 10), ext("video", VIDEO_ORIENTATION, 11),
            ext("video", TOFFSET, 12), ext("audio", ABS_CAPTURE_TIME, 13), ext("video", ABS_CAPTURE_TIME, 13),
            ext("audio", PLAYOUT_DELAY, 14), ext("video", PLAYOUT_DELAY, 14),
        ],
    }


def test_chrome_opus_produce_and_consume(room_caps):
    params, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "audio", CHROME_OPUS_PRODUCE, room_caps, cname="xyz", random_ssrc=counter(123456789))
    assert ptype == "simple"
    assert params["mid"] == "0" and params["encodings"] == [{"ssrc": 3441283291, "dtx": False}]
    assert mapping == {"codecs": [{"payloadType": 111, "mappedPayloadType": 100}],
                       "encodings": [{"mappedSsrc": 123456789, "ssrc": 3441283291}]}
    assert consumable["codecs"][0]["parameters"] == {"minptime": 10, "useinbandfec": 1}
    assert consumable["encodings"] == [{"ssrc": 123456789, "dtx": False}]

    consumer = ortc.get_consumer_rtp_parameters(consumable, chrome_device_caps(), enable_rtx=False)
    assert consumer["codecs"] == [{
        "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
        "parameters": {"minptime": 10, "useinbandfec": 1},
        # no audio twcc extension towards consumers → REMB side wins → transport-cc dropped;
        # plain nack dropped because enable_rtx is False (the audio default in consume()).
        "rtcpFeedback": []}]
    assert [(e["uri"], e["id"]) for e in consumer["headerExtensions"]] == [
        (MID, 1), (ABS_SEND_TIME, 4), (AUDIO_LEVEL, 10), (ABS_CAPTURE_TIME, 13), (PLAYOUT_DELAY, 14)]
    assert consumer["rtcp"]["cname"] == "xyz"
    assert isinstance(consumer["encodings"][0]["ssrc"], int)
    assert "mid" not in consumer


def test_chrome_vp8_produce_and_consume(room_caps):
    params, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "video", CHROME_VP8_PRODUCE, room_caps, cname="xyz", random_ssrc=counter(222222222))
    assert ptype == "simple"
    assert mapping == {"codecs": [{"payloadType": 96, "mappedPayloadType": 101},
                                  {"payloadType": 97, "mappedPayloadType": 102}],
                       "encodings": [{"mappedSsrc": 222222222, "ssrc": 1379466371}]}
    assert consumable["codecs"] == [
        {"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "parameters": {}, "rtcpFeedback": VIDEO_FB},
        {"mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000, "parameters": {"apt": 101},
         "rtcpFeedback": []},
    ]
    assert consumable["encodings"] == [{"ssrc": 222222222, "dtx": False}]

    consumer = ortc.get_consumer_rtp_parameters(consumable, chrome_device_caps(), enable_rtx=True,
                                                random_ssrc=counter(333333333))
    assert consumer["codecs"][0]["rtcpFeedback"] == [
        {"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
        {"type": "ccm", "parameter": "fir"}, {"type": "transport-cc", "parameter": ""}]
    assert consumer["codecs"][1] == {"mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000,
                                     "parameters": {"apt": 101}, "rtcpFeedback": []}
    assert consumer["encodings"] == [{"ssrc": 333333333, "rtx": {"ssrc": 333333334}}]
    assert [(e["uri"], e["id"]) for e in consumer["headerExtensions"]] == [
        (MID, 1), (ABS_SEND_TIME, 4), (TWCC, 5), (VIDEO_ORIENTATION, 11), (TOFFSET, 12),
        (ABS_CAPTURE_TIME, 13), (PLAYOUT_DELAY, 14)]
    assert consumer["rtcp"] == {"cname": "xyz", "reducedSize": True}


def test_chrome_vp8_simulcast_produce_and_consume(room_caps):
    produce = {**CHROME_VP8_PRODUCE, "encodings": CHROME_VP8_SIMULCAST_ENCODINGS}
    params, mapping, consumable, ptype = ortc.prepare_producer_rtp_parameters(
        "video", produce, room_caps, random_ssrc=counter(444444444))
    assert ptype == "simulcast"
    assert mapping["encodings"] == [
        {"mappedSsrc": 444444444 + i, "rid": f"r{i}", "scalabilityMode": "L1T3"} for i in range(3)]
    assert [e["ssrc"] for e in consumable["encodings"]] == [444444444, 444444445, 444444446]
    assert all("rid" not in e for e in consumable["encodings"])
    assert consumable["encodings"][0]["scaleResolutionDownBy"] == 4  # other fields kept
    consumer = ortc.get_consumer_rtp_parameters(consumable, chrome_device_caps())
    assert consumer["encodings"][0]["scalabilityMode"] == "L3T3"
    assert consumer["encodings"][0]["maxBitrate"] == 1500000
    pipe = ortc.get_pipe_consumer_rtp_parameters(consumable)
    assert len(pipe["encodings"]) == 3 and all("rtx" not in e for e in pipe["encodings"])


# ---------------------------------------------------------------------------------------------
# SCTP stream parameters, scalability modes, helpers
# ---------------------------------------------------------------------------------------------


def test_validate_sctp_stream_parameters():
    assert ortc.validate_sctp_stream_parameters({"streamId": 0}) == {"streamId": 0, "ordered": True}
    assert ortc.validate_sctp_stream_parameters({"streamId": 1, "maxRetransmits": 0}) == {
        "streamId": 1, "maxRetransmits": 0, "ordered": False}
    assert ortc.validate_sctp_stream_parameters({"streamId": 2, "ordered": False, "maxPacketLifeTime": 500}) == {
        "streamId": 2, "ordered": False, "maxPacketLifeTime": 500}
    assert ortc.validate_sctp_stream_parameters({"streamId": 65534, "ordered": False})["ordered"] is False
    with pytest.raises(TypeError, match=r"sctpStreamParameters\.streamId"):
        ortc.validate_sctp_stream_parameters({})
    with pytest.raises(ValueError, match=r"sctpStreamParameters\.streamId"):
        ortc.validate_sctp_stream_parameters({"streamId": 65535})
    with pytest.raises(TypeError, match="both maxPacketLifeTime and maxRetransmits"):
        ortc.validate_sctp_stream_parameters({"streamId": 1, "maxPacketLifeTime": 1, "maxRetransmits": 1})
    with pytest.raises(TypeError, match="cannot be ordered"):
        ortc.validate_sctp_stream_parameters({"streamId": 1, "ordered": True, "maxRetransmits": 3})
    with pytest.raises(TypeError, match=r"sctpStreamParameters\.ordered"):
        ortc.validate_sctp_stream_parameters({"streamId": 1, "ordered": "yes"})
    with pytest.raises(TypeError, match=r"sctpStreamParameters\.maxRetransmits"):
        ortc.validate_sctp_stream_parameters({"streamId": 1, "maxRetransmits": "3"})


@pytest.mark.parametrize("mode, expected", [
    ("L1T3", (1, 3, False)), ("L3T3_KEY", (3, 3, True)), ("S3T3", (3, 3, False)), ("L2T2_KEY_SHIFT", (2, 2, True)),
    ("L10T12", (10, 12, False)), (None, (1, 1, False)), ("", (1, 1, False)), ("L0T1", (1, 1, False)),
    ("X1T3", (1, 1, False)), ("L1", (1, 1, False)),
])
def test_parse_scalability_mode(mode, expected):
    r = ortc.parse_scalability_mode(mode)
    assert (r["spatialLayers"], r["temporalLayers"], r["ksvc"]) == expected


def test_helpers():
    assert ortc.is_rtx_codec({"mimeType": "video/RTX"}) and ortc.is_rtx_codec({"mimeType": "audio/rtx"})
    assert not ortc.is_rtx_codec({"mimeType": "video/VP8"}) and not ortc.is_rtx_codec({"mimeType": "rtx"})
    assert ortc.get_kind("Video/VP8") == "video" and ortc.get_kind("audio/opus") == "audio"
    with pytest.raises(ValueError):
        ortc.get_kind("application/data")
    with pytest.raises(TypeError):
        ortc.get_kind(None)
    ssrcs = {ortc.generate_random_ssrc() for _ in range(200)}
    assert all(100000000 <= s < 999999999 for s in ssrcs) and len(ssrcs) > 190
    cname = ortc.generate_random_cname()
    assert isinstance(cname, str) and len(cname) == 8 and cname != ortc.generate_random_cname()
    assert URI_MID == MID and URI_ABS_SEND_TIME == ABS_SEND_TIME and URI_TRANSPORT_WIDE_CC_01 == TWCC
    assert ortc.DYNAMIC_PAYLOAD_TYPES[:2] == (100, 101) and ortc.DYNAMIC_PAYLOAD_TYPES[-4:] == (96, 97, 98, 99)
