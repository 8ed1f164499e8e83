"""Small runs of the load scenarios (benchmarks/scenarios.py): correctness only, no timing.

Each run starts a fresh WorkerActor and separate generator processes (publishers, subscribers)
that complete ICE + DTLS against real WebRtcTransports, publish Chrome-like RTP and check, for
every consumer, every packet: its SSRC is the consumer's (from its rtpParameters) on the right
transport, sequence numbers are continuous and in order, and — with ``sample_every=1`` every
packet is unprotected — the publisher's own packet index embedded in the payload advances one by
one from the first packet (a keyframe for video) to the last packet the publisher sent.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.scenarios import build_spec, failures, run_scenario, summarize

pytestmark = pytest.mark.ray

SECONDS = 3.0


def assert_every_packet_delivered(result: dict, consumers: int) -> None:
    check = result["check"]
    assert check["streams"] == consumers == result["consumers"]
    assert check["streams_without_packets"] == 0
    assert check["bad_ssrc"] == 0, "a packet with an SSRC that is not its consumer's"
    assert check["gaps"] == 0 and check["late"] == 0, "sequence numbers not continuous / in order"
    assert check["idx_errors"] == 0, "publisher packet index does not follow the sequence number"
    assert check["first_not_keyframe"] == 0
    assert check["srtp_errors"] == 0
    assert check["tail_missing"] == 0
    assert check["expected"] > 0
    assert check["received"] == check["expected"], "a packet the publisher sent did not arrive"
    assert result["loss"] == 0 and result["loss_total"] == 0
    assert result["lat_samples"] > 0
    # the CPU figure is produced (getrusage of the WorkerActor over the window)
    assert result["cpu_us_per_pkt"] > 0 and math.isfinite(result["cpu_us_per_pkt"])
    assert result["worker_cpu_share"] > 0
    assert result["out_pps"] > 0


async def run(scenario: str, n: int, **kwargs) -> dict:
    return await run_scenario(scenario, n, SECONDS, sample_every=1, pin=False, settle_s=0.2, timeout_s=120, **kwargs)


async def test_scenario_a_broadcast_every_subscriber_gets_every_packet(ray_session):
    result = await run("A", 20)
    assert result["subscribers"] == 20
    assert_every_packet_delivered(result, 40)
    assert result["keyframes_sent"] >= 1
    assert result["rss_per_consumer_kb"] == result["rss_per_consumer_kb"]  # a number, not NaN
    row = summarize([result])[0]
    assert row["n"] == 20 and row["runs"] == 1


async def test_scenario_b_meeting_every_participant_gets_every_other(ray_session):
    result = await run("B", 10)
    assert result["publishers"] == 10 and result["subscribers"] == 10
    assert_every_packet_delivered(result, 10 * 9 * 2)


async def test_scenario_c_audio_room_listeners_get_every_speaker(ray_session):
    result = await run("C", 20, speakers=10)
    assert result["publishers"] == 10
    assert_every_packet_delivered(result, 20 * 10)
    assert "nostart" not in failures(result)


def test_build_spec_shapes():
    pubs, subs = build_spec("B", 4)
    assert len(pubs) == 4 and all(len(s) == 6 for s in subs)
    assert all(p != i for i, s in enumerate(subs) for p, _ in s)
    pubs, subs = build_spec("c", 3, speakers=5)
    assert pubs == [("audio",)] * 5 and subs[0] == [(p, "audio") for p in range(5)]
    with pytest.raises(ValueError, match="scenario"):
        build_spec("D", 3)
    with pytest.raises(ValueError, match="n must be"):
        build_spec("A", 0)
