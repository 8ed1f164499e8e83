"""DCEP (transport/dcep.py): DATA_CHANNEL_OPEN/ACK codec, PPID rules, DataChannelEndpoint over
two of our associations, and in-band / negotiated channels against aiortc."""

from __future__ import annotations

import asyncio

import pytest
from raysfu.transport.dcep import (
    PPID_BINARY,
    PPID_BINARY_EMPTY,
    PPID_DCEP,
    PPID_STRING,
    PPID_STRING_EMPTY,
    DataChannelEndpoint,
    DataChannelOpen,
    decode_message,
    encode_ack,
    encode_message,
    parse_dcep,
)
from raysfu.transport.errors import InvalidStateError, PacketParseError

from benchmarks.sctp_throughput import (
    close_aiortc,
    connect_ours_pair,
    ours_with_aiortc,
    pump,
)

# ------------------------------------------------------------------------------------------
# codec
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, channel_type, reliability", [
    ({}, 0x00, 0),
    ({"ordered": False}, 0x80, 0),
    ({"max_retransmits": 3}, 0x01, 3),
    ({"max_retransmits": 0, "ordered": False}, 0x81, 0),
    ({"max_packet_life_time": 1500}, 0x02, 1500),
    ({"max_packet_life_time": 20, "ordered": False}, 0x82, 20),
])
def test_open_round_trip(kwargs, channel_type, reliability):
    msg = DataChannelOpen(label="chat ✓", protocol="json", priority=512, **kwargs)
    raw = msg.to_bytes()
    assert raw[0] == 0x03 and raw[1] == channel_type
    assert int.from_bytes(raw[4:8], "big") == reliability
    assert int.from_bytes(raw[2:4], "big") == 512
    assert DataChannelOpen.parse(raw) == msg
    assert parse_dcep(raw) == msg


def test_open_wire_format_matches_rfc8832():
    raw = DataChannelOpen(label="ab", protocol="x").to_bytes()
    # type, channel type, priority (256), reliability, label length, protocol length, label, protocol
    assert raw == bytes([3, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0, 1]) + b"abx"


def test_ack_and_malformed():
    assert encode_ack() == b"\x02"
    assert parse_dcep(b"\x02") is None
    for bad in (b"", b"\x03\x00", b"\x07" + bytes(11),
                DataChannelOpen(label="abc").to_bytes()[:-1],           # label past the end
                bytes([3, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),          # unknown channel type
                bytes([3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]) + b"\xff"):  # bad UTF-8
        with pytest.raises(PacketParseError):
            parse_dcep(bad)


def test_open_validation_and_sctp_stream_parameters():
    with pytest.raises(ValueError, match="max_retransmits"):
        DataChannelOpen(max_retransmits=1, max_packet_life_time=1)
    with pytest.raises(ValueError, match="priority"):
        DataChannelOpen(priority=70000)
    o = DataChannelOpen(label="l", protocol="p", ordered=False, max_retransmits=2)
    assert o.to_sctp_stream_parameters(7) == {"streamId": 7, "ordered": False, "maxRetransmits": 2}
    back = DataChannelOpen.from_sctp_stream_parameters({"streamId": 7, "ordered": False, "maxPacketLifeTime": 9},
                                                       label="l")
    assert back == DataChannelOpen(label="l", ordered=False, max_packet_life_time=9)


def test_message_ppids_like_mediasoup():
    assert encode_message("hi") == (PPID_STRING, b"hi")
    assert encode_message(b"\x00\x01") == (PPID_BINARY, b"\x00\x01")
    assert encode_message("") == (PPID_STRING_EMPTY, b" ")
    assert encode_message(b"") == (PPID_BINARY_EMPTY, b"\x00")
    assert encode_message("x", PPID_BINARY) == (PPID_BINARY, b"x")
    with pytest.raises(TypeError, match="message"):
        encode_message(3)
    with pytest.raises(ValueError, match="message"):
        encode_message(b"", PPID_BINARY)
    assert decode_message(PPID_STRING, "é".encode()) == "é"
    assert decode_message(PPID_STRING_EMPTY, b" ") == ""
    assert decode_message(PPID_BINARY_EMPTY, b"\x00") == b""
    assert decode_message(PPID_BINARY, b"ab") == b"ab"
    assert decode_message(PPID_STRING, b"\xff") == "\ufffd"


# ------------------------------------------------------------------------------------------
# DataChannelEndpoint, ours <-> ours
# ------------------------------------------------------------------------------------------

def _run(ea: DataChannelEndpoint, eb: DataChannelEndpoint, now: int = 0) -> tuple[list, list]:
    out_a, out_b = [], []
    for _ in range(20):
        pump(ea.association, eb.association, now)
        ga = ea.process_events(ea.association.drain_events(), now)
        gb = eb.process_events(eb.association.drain_events(), now)
        out_a += ga
        out_b += gb
        if not ga and not gb and not ea.association.datagrams_to_send() and not eb.association.datagrams_to_send():
            # nothing new: one more pump to be sure
            pump(ea.association, eb.association, now)
            if not ea.association.drain_events() and not eb.association.drain_events():
                break
    return out_a, out_b


def test_dcep_open_ack_and_messages_between_our_endpoints():
    a, b = connect_ours_pair()
    ea, eb = DataChannelEndpoint(a), DataChannelEndpoint(b)
    sid = ea.create_channel("chat", protocol="v1", ordered=False, max_retransmits=2, now_ms=0)
    assert sid == 0  # DTLS client: even ids (RFC 8832 §6)
    sid2 = ea.create_channel("second", now_ms=0)
    assert sid2 == 2
    sid_b = eb.create_channel("from b", now_ms=0)
    assert sid_b == 1  # DTLS server: odd ids
    assert not ea.channels[sid].acked
    ea.send(sid, "early", now_ms=0)  # before the ACK: sent ordered and reliable
    out_a, out_b = _run(ea, eb)
    opened = [e for e in out_b if e[0] == "datachannel"]
    assert opened[0][1] == 0 and opened[0][2] == DataChannelOpen(label="chat", protocol="v1", ordered=False, max_retransmits=2)
    assert {e[1] for e in opened} == {0, 2}
    assert [e for e in out_a if e[0] == "datachannel"][0][1] == 1
    assert ("message", 0, PPID_STRING, b"early") in out_b
    assert ea.channels[sid].acked
    assert eb.channel_info(0)["label"] == "chat" and eb.channel_info(0)["negotiated"] is False
    eb.send(0, b"reply", now_ms=0)
    out_a, _ = _run(ea, eb)
    assert ("message", 0, PPID_BINARY, b"reply") in out_a
    # close from a: both sides end with ("closed", 0)
    ea.close_channel(0, 0)
    with pytest.raises(InvalidStateError):
        ea.send(0, "no", now_ms=0)
    out_a, out_b = _run(ea, eb)
    assert ("closing", 0) in out_b
    assert ("closed", 0) in out_a and ("closed", 0) in out_b
    assert 0 not in ea.channels and 0 not in eb.channels
    # the id can be used again
    assert ea.create_channel("again", now_ms=0) == 0


def test_negotiated_channels_need_no_dcep():
    a, b = connect_ours_pair()
    ea, eb = DataChannelEndpoint(a), DataChannelEndpoint(b)
    ea.create_channel("x", negotiated=True, stream_id=5, now_ms=0)
    eb.create_channel("x", negotiated=True, stream_id=5, now_ms=0)
    with pytest.raises(ValueError, match="in use"):
        ea.create_channel("y", negotiated=True, stream_id=5, now_ms=0)
    with pytest.raises(ValueError, match="stream_id"):
        ea.create_channel("y", negotiated=True, now_ms=0)
    ea.send(5, "hello", now_ms=0)
    out_a, out_b = _run(ea, eb)
    assert ("open", 5) in out_a and ("open", 5) in out_b
    assert ("message", 5, PPID_STRING, b"hello") in out_b
    assert a.stats["messages_sent"] == 1  # no DATA_CHANNEL_OPEN went out
    assert not [e for e in out_b if e[0] == "datachannel"]


def test_channel_opened_before_association_is_up():
    a = __import__("raysfu.transport.sctp", fromlist=["SctpAssociation"]).SctpAssociation(is_client=True)
    b = type(a)(is_client=False)
    ea, eb = DataChannelEndpoint(a), DataChannelEndpoint(b)
    sid = ea.create_channel("early bird", now_ms=0)
    ea.send(sid, "queued", now_ms=0)
    a.start(0)
    b.start(0)
    out_a, out_b = _run(ea, eb)
    assert ("open", sid) in out_a
    assert [e[0] for e in out_b if e[0] in ("datachannel", "message")] == ["datachannel", "message"]


# ------------------------------------------------------------------------------------------
# against aiortc
# ------------------------------------------------------------------------------------------

async def test_dcep_interop_with_aiortc():
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters

    channel_events: list = []
    holder = {}

    def on_event(ev):
        for out in holder["endpoint"].process_events([ev], holder["driver"].now_ms()):
            channel_events.append(out)

    driver, theirs, fake = await ours_with_aiortc(ours_is_client=False)
    holder["driver"] = driver
    holder["endpoint"] = endpoint = DataChannelEndpoint(driver.association)
    driver.on_event = on_event
    endpoint.process_events([("state", "connected")], driver.now_ms())
    try:
        # aiortc opens in band (DTLS client: even id 0)
        theirs_dc = RTCDataChannel(theirs, RTCDataChannelParameters(label="from-aiortc", protocol="proto", ordered=False,
                                                                     maxRetransmits=4))
        got: list = []
        theirs_dc.on("message", got.append)
        await driver.wait_for(lambda: any(e[0] == "datachannel" for e in channel_events))
        ev = next(e for e in channel_events if e[0] == "datachannel")
        sid = ev[1]
        assert sid % 2 == 0
        assert ev[2] == DataChannelOpen(label="from-aiortc", protocol="proto", ordered=False, max_retransmits=4,
                                        priority=0)  # aiortc sends priority 0
        for _ in range(50):
            if theirs_dc.readyState == "open":
                break
            await asyncio.sleep(0.01)
        assert theirs_dc.readyState == "open"  # our DATA_CHANNEL_ACK arrived
        endpoint.send(sid, "hi aiortc", now_ms=driver.now_ms())
        endpoint.send(sid, bytes(50_000), now_ms=driver.now_ms())
        endpoint.send(sid, "", now_ms=driver.now_ms())
        driver.flush()
        for _ in range(200):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(got, key=repr) == sorted(["hi aiortc", bytes(50_000), ""], key=repr)
        theirs_dc.send("hi raysfu")
        await driver.wait_for(lambda: ("message", sid, PPID_STRING, b"hi raysfu") in channel_events)

        # we open in band (DTLS server: odd id); aiortc announces it with "datachannel"
        announced: list = []
        theirs.on("datachannel", announced.append)
        ours_sid = endpoint.create_channel("from-raysfu", protocol="p2", now_ms=driver.now_ms())
        endpoint.send(ours_sid, "first", now_ms=driver.now_ms())
        driver.flush()
        for _ in range(200):
            if announced:
                break
            await asyncio.sleep(0.01)
        assert announced and announced[0].id == ours_sid == 1
        assert announced[0].label == "from-raysfu" and announced[0].protocol == "p2"
        await driver.wait_for(lambda: endpoint.channels[ours_sid].acked)

        # we close it: aiortc resets its side too and both report closed
        endpoint.close_channel(ours_sid, driver.now_ms())
        driver.flush()
        await driver.wait_for(lambda: ("closed", ours_sid) in channel_events, timeout=10)
        for _ in range(100):
            if announced[0].readyState == "closed":
                break
            await asyncio.sleep(0.01)
        assert announced[0].readyState == "closed"
    finally:
        await close_aiortc(driver, theirs, fake)


async def test_negotiated_interop_with_aiortc_like_mediasoup_client():
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters

    driver, theirs, fake = await ours_with_aiortc(ours_is_client=True)
    try:
        endpoint = DataChannelEndpoint(driver.association)
        endpoint.process_events([("state", "connected")], driver.now_ms())
        endpoint.create_channel("neg", negotiated=True, stream_id=3, now_ms=driver.now_ms())
        theirs_dc = RTCDataChannel(theirs, RTCDataChannelParameters(label="neg", negotiated=True, id=3))
        got: list = []
        theirs_dc.on("message", got.append)
        endpoint.send(3, "no DCEP needed", now_ms=driver.now_ms())
        driver.flush()
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == ["no DCEP needed"]
        assert not [e for e in driver.events if e[0] == "message" and e[2] == PPID_DCEP]
    finally:
        await close_aiortc(driver, theirs, fake)
