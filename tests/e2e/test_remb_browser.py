"""Receive-side estimation with REMB against a real Chromium (issue 6 item 1).

The page's Device is loaded with the router's capabilities minus transport-wide-cc (its header
extension and every ``transport-cc`` feedback), so mediasoup-client negotiates abs-send-time +
``goog-remb`` for its camera, as an endpoint without transport-cc would. The send transport then
estimates the incoming path itself and sends REMB (bwe/remb.py): the browser's rate must climb
past 400 kbps under those REMBs (they do not throttle a path that has room), and once
``set_max_incoming_bitrate(250_000)`` caps them, the producer's outbound bitrate (``bytesSent``
deltas of the page's getStats) must fall to ≤ 300 kbps within 15 s. A timeline (every second:
outbound kbps, the server's ``availableIncomingBitrate``) is printed.
"""

from __future__ import annotations

import asyncio
import copy

import pytest

URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]
CAP_BPS = 250_000

BYTES_SENT_JS = """async (id) => {
  const p = lab.producers.get(id);
  let bytes = 0;
  if (!p) return 0;
  for (const s of (await p.getStats()).values())
    if (s.type === 'outbound-rtp') bytes += s.bytesSent || 0;
  return bytes;
}"""


def _caps_without_transport_cc(caps: dict) -> dict:
    caps = copy.deepcopy(caps)
    caps["headerExtensions"] = [e for e in caps["headerExtensions"] if e["uri"] != URI_TWCC]
    for codec in caps["codecs"]:
        codec["rtcpFeedback"] = [f for f in codec.get("rtcpFeedback", []) if f["type"] != "transport-cc"]
    return caps


async def test_remb_from_the_receive_side_estimate_caps_a_browser_sender(worker, lab_peer):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    peer = await lab_peer("pub")
    loaded = await peer.evaluate("c => lab.load(c)", _caps_without_transport_cc(router.rtp_capabilities))
    peer.rtp_capabilities, peer.sctp_capabilities = loaded["rtpCapabilities"], loaded["sctpCapabilities"]
    send = await peer.create_send_transport(router)
    producer = await peer.produce("video")
    uris = {e["uri"] for e in producer.rtp_parameters["headerExtensions"]}
    assert URI_TWCC not in uris and any(u.endswith("abs-send-time") for u in uris), uris
    feedback = {f["type"] for f in producer.rtp_parameters["codecs"][0]["rtcpFeedback"]}
    assert "goog-remb" in feedback and "transport-cc" not in feedback, feedback

    loop = asyncio.get_running_loop()
    timeline: list[str] = []
    last = {"t": loop.time(), "bytes": await peer.evaluate(BYTES_SENT_JS, producer.id)}

    async def sample() -> tuple[float, int | None]:
        await asyncio.sleep(1.0)
        now = loop.time()
        sent = await peer.evaluate(BYTES_SENT_JS, producer.id)
        kbps = (sent - last["bytes"]) * 8 / (now - last["t"]) / 1000
        last.update(t=now, bytes=sent)
        estimate = (await send.get_stats())[0].get("availableIncomingBitrate")
        timeline.append(f"{len(timeline):3d}s out {kbps:7.1f} kbps  estimate {estimate}")
        return kbps, estimate

    def report() -> str:
        return "\n".join(timeline) + "\n" + peer.console_tail(10)

    # 1. the estimate exists and lets the browser climb past 400 kbps
    estimates = []
    for _ in range(30):
        kbps, estimate = await sample()
        estimates.append(estimate)
        if kbps > 400 and estimate:
            break
    else:
        pytest.fail("the sender never exceeded 400 kbps with a receive-side estimate:\n" + report())
    # 2. the cap goes out in the REMB, and the browser follows it
    await send.set_max_incoming_bitrate(CAP_BPS)
    timeline.append(f"--- set_max_incoming_bitrate({CAP_BPS})")
    below = 0
    for _ in range(15):
        kbps, _ = await sample()
        below = below + 1 if kbps <= CAP_BPS * 1.2 / 1000 else 0
        if below >= 3:
            break
    else:
        pytest.fail("the sender did not come down to the REMB cap within 15 s:\n" + report())
    stats = (await send.get_stats())[0]
    assert stats["maxIncomingBitrate"] == CAP_BPS and stats["availableIncomingBitrate"], stats
    print("\n" + report())
