"""Fixtures for integration tests: one WorkerActor per module on the session's local Ray, and
helpers that connect raysfu's own ClientPeer (ICE + DTLS + SRTP on a real UDP socket)."""

from __future__ import annotations

import asyncio
import time

import pytest

from raysfu.actors import create_worker
from raysfu.actors.client_peer import ClientPeer

MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]

# What Chrome's mediasoup-client sends for a VP8 camera track (single encoding, no simulcast).
VP8_PRODUCER_PARAMS = {
    "mid": "0",
    "codecs": [
        {
            "mimeType": "video/VP8",
            "payloadType": 96,
            "clockRate": 90000,
            "parameters": {},
            "rtcpFeedback": [
                {"type": "goog-remb", "parameter": ""},
                {"type": "transport-cc", "parameter": ""},
                {"type": "ccm", "parameter": "fir"},
                {"type": "nack", "parameter": ""},
                {"type": "nack", "parameter": "pli"},
            ],
        },
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": False, "parameters": {}},
        {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": False, "parameters": {}},
        {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": False, "parameters": {}},
        {"uri": "urn:3gpp:video-orientation", "id": 13, "encrypt": False, "parameters": {}},
        {"uri": "urn:ietf:params:rtp-hdrext:toffset", "id": 14, "encrypt": False, "parameters": {}},
    ],
    "encodings": [{"ssrc": 11111111, "rtx": {"ssrc": 11111112}, "dtx": False}],
    "rtcp": {"cname": "publisher-cname", "reducedSize": True},
}

OPUS_PRODUCER_PARAMS = {
    "mid": "1",
    "codecs": [
        {
            "mimeType": "audio/opus",
            "payloadType": 111,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
            "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}],
        }
    ],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": False, "parameters": {}},
        {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": False, "parameters": {}},
    ],
    "encodings": [{"ssrc": 22222222, "dtx": False}],
    "rtcp": {"cname": "publisher-cname", "reducedSize": True},
}


def client_caps(router_caps: dict) -> dict:
    """The rtpCapabilities a mediasoup-client Device derives from the router's (same ids/PTs)."""
    return {
        "codecs": [dict(c) for c in router_caps["codecs"]],
        "headerExtensions": [dict(e) for e in router_caps["headerExtensions"] if e.get("direction", "sendrecv") in ("sendrecv", "recvonly", "sendonly")],
    }


async def connect_peer(transport, **kwargs) -> ClientPeer:
    peer = ClientPeer(**kwargs)
    await peer.open()
    await transport.connect(dtls_parameters=peer.dtls_parameters)
    await peer.connect(transport.ice_parameters, transport.ice_candidates, transport.dtls_parameters)
    return peer


async def wait_for(predicate, timeout_s: float = 5.0, interval_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(interval_s)
    return predicate()


@pytest.fixture(scope="module")
async def worker(ray_session):
    w = await create_worker()
    yield w
    w.close()
    await asyncio.sleep(0.5)


@pytest.fixture
async def router(worker):
    r = await worker.create_router(media_codecs=MEDIA_CODECS)
    yield r
    r.close()
