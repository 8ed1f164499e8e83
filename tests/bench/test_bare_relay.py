"""The bare Python relay (benchmarks/bare_relay.py): a short real run on 127.0.0.1.

Checks what the benchmark's figures rest on: every subscriber gets every packet of both streams
in order, under its own rewritten SSRC, protected with its own SRTP context (the sinks decrypt
every packet with that subscriber's key and check it carries the source packet the sequence
number says), and the relay reports a positive CPU cost. No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.bare_relay import run_bare_relay


def test_every_subscriber_gets_every_packet_in_order_with_its_own_ssrc():
    n = 10
    r = run_bare_relay(n, 3.0, warmup_s=0.5, n_sinks=2, verify=True)
    assert r["sent_video"] > 250 and r["sent_audio"] > 120  # ~104 and 50 pkt/s for 3.5 s
    per_subscriber = r["sent_video"] + r["sent_audio"]
    assert r["subscribers_complete"] == n
    assert r["received"] == per_subscriber * n
    assert r["gaps"] == 0 and r["backwards"] == 0
    assert r["unknown_ssrc"] == 0  # each packet came with an SSRC of a subscriber of that socket
    assert r["decrypted"] == r["received"]
    assert r["auth_fail"] == 0 and r["wrong_payload"] == 0
    assert r["unprotect_fail"] == 0 and r["protect_fail"] == 0 and r["send_errors"] == 0
    assert r["loss"] == 0.0
    assert r["cpu_us_per_pkt"] > 0 and r["out_per_cpu_s"] > 0
    assert r["out_pps"] > 0 and r["lat_p50_ms"] is not None and r["lat_p99_ms"] >= r["lat_p50_ms"]


@pytest.mark.parametrize("kwargs", [{"n_subscribers": 0, "seconds": 1.0},
                                    {"n_subscribers": 2, "seconds": 0},
                                    {"n_subscribers": 2, "seconds": 1.0, "srtp_profile": "NULL"}])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        run_bare_relay(**kwargs)
