"""RFC 4571 deframer, framing and the STUN USERNAME peek (transport/ice_tcp.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raysfu.transport.errors import PacketParseError
from raysfu.transport.ice_tcp import (
    MAX_FRAME_BYTES,
    Rfc4571Deframer,
    frame,
    stun_local_ufrag,
)
from raysfu.transport.stun import build_binding_request

RTP = bytes([0x80, 96]) + bytes(range(40))
STUN = build_binding_request("srvufrag:cli", "p" * 24, priority=1, use_candidate=True)
DTLS = bytes([22, 0xFE, 0xFD]) + b"\x00" * 30


def test_frame_prefix():
    assert frame(RTP) == struct.pack("!H", len(RTP)) + RTP
    assert frame(memoryview(RTP)) == frame(RTP)
    with pytest.raises(ValueError):
        frame(b"\x80" * 70000)


def test_one_frame_per_read():
    d = Rfc4571Deframer()
    assert d.feed(frame(STUN)) == [STUN]
    assert d.feed(frame(RTP)) == [RTP]
    assert d.frames == 2 and d.pending_bytes == 0


def test_merged_frames_in_one_read():
    d = Rfc4571Deframer()
    assert d.feed(frame(STUN) + frame(DTLS) + frame(RTP)) == [STUN, DTLS, RTP]


def test_split_frames_byte_by_byte():
    d = Rfc4571Deframer()
    stream = frame(STUN) + frame(RTP)
    out = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == [STUN, RTP]
    assert d.pending_bytes == 0


def test_split_header_and_partial_tail():
    d = Rfc4571Deframer()
    stream = frame(RTP) + frame(STUN)
    assert d.feed(stream[:1]) == []
    assert d.feed(stream[1 : len(RTP) + 3]) == [RTP]
    assert d.pending_bytes == 1
    assert d.feed(stream[len(RTP) + 3 :]) == [STUN]


def test_oversize_is_fatal():
    d = Rfc4571Deframer(max_frame_bytes=100)
    with pytest.raises(PacketParseError) as e:
        d.feed(struct.pack("!H", 101) + b"\x80" * 10)
    assert e.value.reason == "oversize"
    with pytest.raises(PacketParseError):  # stays failed
        d.feed(frame(RTP))


def test_oversize_default_limit():
    d = Rfc4571Deframer()
    with pytest.raises(PacketParseError):
        d.feed(struct.pack("!H", MAX_FRAME_BYTES + 1))


def test_garbage_first_byte_is_fatal():
    d = Rfc4571Deframer()
    with pytest.raises(PacketParseError) as e:
        d.feed(b"GET / HTTP/1.1\r\n\r\n")  # 'GE' = length 18245 > limit: oversize
    d = Rfc4571Deframer()
    with pytest.raises(PacketParseError) as e:
        d.feed(struct.pack("!H", 10) + b"\xff" * 10)
    assert e.value.reason == "garbage"
    assert d.failed == "garbage"


def test_garbage_detected_before_frame_completes():
    d = Rfc4571Deframer()
    with pytest.raises(PacketParseError):
        d.feed(struct.pack("!H", 1000) + b"\x70")


def test_empty_frames_skipped():
    d = Rfc4571Deframer()
    assert d.feed(b"\x00\x00" + frame(RTP) + b"\x00\x00") == [RTP]
    assert d.empty_frames == 2


def test_bad_limit():
    with pytest.raises(ValueError, match="max_frame_bytes"):
        Rfc4571Deframer(max_frame_bytes=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8), st.data())
def test_any_split_roundtrips(payloads, data):
    payloads = [bytes([0x80]) + p for p in payloads]
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    d = Rfc4571Deframer()
    out, prev = [], 0
    for c in cuts + [len(stream)]:
        out += d.feed(stream[prev:c])
        prev = c
    assert out == payloads


def test_stun_local_ufrag():
    assert stun_local_ufrag(STUN) == "srvufrag"
    assert stun_local_ufrag(memoryview(STUN)) == "srvufrag"
    assert stun_local_ufrag(RTP) is None
    assert stun_local_ufrag(STUN[:19]) is None
    assert stun_local_ufrag(STUN[:30]) is None  # truncated: length field says more
    no_colon = build_binding_request("nocolon", "p" * 24, priority=1)
    assert stun_local_ufrag(no_colon) is None
    bad_cookie = STUN[:4] + b"\x00\x00\x00\x00" + STUN[8:]
    assert stun_local_ufrag(bad_cookie) is None
    response_type = b"\x01\x01" + STUN[2:]
    assert stun_local_ufrag(response_type) is None
