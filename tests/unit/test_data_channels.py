"""DataProducer / DataConsumer cores and TransportDataChannels (actors/data_channels.py), against
a "browser" made of our own association + DataChannelEndpoint with negotiated channels, as
mediasoup-client opens them."""

from __future__ import annotations

import pytest
from raysfu.actors.data_channels import (
    DataConsumerCore,
    DataProducerCore,
    SctpStreamIdAllocator,
    TransportDataChannels,
    consumer_sctp_stream_parameters,
    normalize_message,
    validate_num_sctp_streams,
)
from raysfu.transport.dcep import PPID_BINARY, PPID_STRING, DataChannelEndpoint
from raysfu.transport.errors import InvalidStateError
from raysfu.transport.sctp import SctpAssociation


def producer(sid=0, **kwargs) -> DataProducerCore:
    params = {"streamId": sid, **kwargs.pop("params", {})}
    return DataProducerCore(data_producer_id=f"dp{sid}", type="sctp", sctp_stream_parameters=params,
                            label=kwargs.pop("label", "chat"), protocol=kwargs.pop("protocol", "json"), **kwargs)


# ------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------

def test_stream_id_allocator_like_mediasoup():
    alloc = SctpStreamIdAllocator(4)
    assert [alloc.allocate() for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="no sctpStreamId available"):
        alloc.allocate()
    alloc.release(1)
    assert alloc.allocate() == 1
    alloc.release(2)
    alloc.release(0)
    assert alloc.allocate() == 2  # searches on from the last id given
    assert alloc.allocate() == 0
    alloc2 = SctpStreamIdAllocator(10)
    assert [alloc2.allocate(parity=1) for _ in range(3)] == [1, 3, 5]


def test_num_sctp_streams_validation():
    assert validate_num_sctp_streams(None) == {"OS": 1024, "MIS": 1024}
    assert validate_num_sctp_streams({"OS": 10, "MIS": 20}) == {"OS": 10, "MIS": 20}
    with pytest.raises(TypeError, match="numSctpStreams.MIS"):
        validate_num_sctp_streams({"OS": 10, "MIS": 0})
    with pytest.raises(TypeError, match="numSctpStreams"):
        validate_num_sctp_streams([1, 2])


def test_data_producer_core():
    with pytest.raises(TypeError, match="sctpStreamParameters"):
        DataProducerCore(data_producer_id="x", type="sctp", sctp_stream_parameters=None)
    with pytest.raises(TypeError, match="ordered"):
        producer(params={"ordered": True, "maxRetransmits": 1})
    with pytest.raises(TypeError, match="label"):
        producer(label=3)
    dp = producer(3, params={"maxPacketLifeTime": 100})
    assert dp.sctp_stream_parameters == {"streamId": 3, "ordered": False, "maxPacketLifeTime": 100}
    assert dp.receive_message(51, b"hello")
    assert dp.pause() and not dp.pause()
    assert not dp.receive_message(51, b"dropped but counted")
    assert dp.resume()
    assert dp.get_stats(1234) == [{"type": "data-producer", "timestamp": 1234, "label": "chat", "protocol": "json",
                                   "messagesReceived": 2, "bytesReceived": 24}]
    assert dp.dump() == {"id": "dp3", "type": "sctp", "label": "chat", "protocol": "json", "paused": False,
                         "sctpStreamParameters": {"streamId": 3, "ordered": False, "maxPacketLifeTime": 100}}
    direct = DataProducerCore(data_producer_id="d", type="direct", sctp_stream_parameters={"streamId": 1})
    assert direct.sctp_stream_parameters is None and "sctpStreamParameters" not in direct.dump()


def test_consumer_sctp_stream_parameters_override_like_mediasoup():
    base = {"streamId": 7, "ordered": False, "maxRetransmits": 3}
    assert consumer_sctp_stream_parameters(base, 2) == {"streamId": 2, "ordered": False, "maxRetransmits": 3}
    assert consumer_sctp_stream_parameters(base, 2, ordered=True, max_packet_life_time=50) == \
        {"streamId": 2, "ordered": True, "maxRetransmits": 3, "maxPacketLifeTime": 50}
    assert consumer_sctp_stream_parameters(None, 4) == {"streamId": 4, "ordered": True}
    assert base == {"streamId": 7, "ordered": False, "maxRetransmits": 3}  # not mutated
    with pytest.raises(TypeError, match="maxRetransmits"):
        consumer_sctp_stream_parameters(base, 2, max_retransmits=-1)


def test_data_consumer_core_rules():
    dp = producer(0)
    dc = DataConsumerCore(data_consumer_id="dc", data_producer=dp, type="sctp",
                          sctp_stream_parameters={"streamId": 1, "ordered": True}, subchannels=[5, 1, 5],
                          max_message_size=10)
    assert dc.subchannels == [1, 5]
    assert dc.accept(51, b"plain")                                  # no subchannels given: goes
    assert dc.accept(51, b"x", subchannels=[2, 5])                  # one matches
    assert not dc.accept(51, b"x", subchannels=[2, 3])
    assert dc.accept(51, b"x", required_subchannel=1)
    assert not dc.accept(51, b"x", required_subchannel=9)
    assert not dc.accept(51, bytes(11))                              # > max_message_size
    assert dc.set_subchannels([9]) == [9]
    assert dc.add_subchannel(3) == [3, 9]
    assert dc.remove_subchannel(9) == [3]
    with pytest.raises(TypeError, match="subchannel"):
        dc.add_subchannel(70000)
    assert dc.pause()
    assert not dc.accept(51, b"x")
    assert dc.resume()
    assert dc.set_data_producer_paused(True) and not dc.set_data_producer_paused(True)
    assert not dc.accept(51, b"x")
    dc.set_data_producer_paused(False)
    assert dc.drops == {"subchannels": 1, "required_subchannel": 1, "too_big": 1, "inactive": 2}
    assert dc.get_stats(5) == [{"type": "data-consumer", "timestamp": 5, "label": "chat", "protocol": "json",
                                "messagesSent": 3, "bytesSent": 7, "bufferedAmount": 0}]
    dump = dc.dump()
    assert dump["dataProducerId"] == "dp0" and dump["subchannels"] == [3] and dump["bufferedAmountLowThreshold"] == 0
    assert dc.send_options() == {"ordered": True, "max_retransmits": None, "max_packet_life_time_ms": None}
    # buffered amount low threshold crossing
    assert dc.set_buffered_amount_low_threshold(100)  # 0 <= 100: fires at once
    assert not dc.update_buffered_amount(500)
    assert not dc.update_buffered_amount(200)
    assert dc.update_buffered_amount(100)
    assert not dc.update_buffered_amount(50)


def test_normalize_message_rules():
    assert normalize_message("") == (56, b" ")
    assert normalize_message(b"") == (57, b"\x00")


# ------------------------------------------------------------------------------------------
# a transport's data channels against a "browser"
# ------------------------------------------------------------------------------------------

class Session:
    """Server TransportDataChannels (DTLS server) ↔ browser (our association + endpoint)."""

    def __init__(self, **kwargs):
        self.server = TransportDataChannels(**kwargs)
        self.browser = SctpAssociation(is_client=True)
        self.endpoint = DataChannelEndpoint(self.browser)
        self.routed: list = []
        self.server_events: list = []
        self.browser_events: list = []
        self.now = 0
        self.browser.start(0)
        self.server.start(is_dtls_client=False, now_ms=0)
        self.run()

    def run(self):
        for _ in range(50):
            moved = 0
            for p in self.browser.datagrams_to_send():
                self.routed += self.server.receive(p, self.now)
                moved += 1
            for p in self.server.datagrams_to_send():
                self.browser.receive(p, self.now)
                moved += 1
            self.server_events += self.server.drain_events()
            self.browser_events += self.endpoint.process_events(self.browser.drain_events(), self.now)
            if not moved:
                break

    def browser_messages(self, sid=None):
        return [e for e in self.browser_events if e[0] == "message" and (sid is None or e[1] == sid)]


def test_produce_route_consume_with_negotiated_channels():
    s = Session()
    assert s.server.sctp_state == "connected"
    assert ("sctpstatechange", "connected") in s.server_events
    assert s.server.sctp_parameters == {"port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144}
    dp = producer(6, params={"ordered": True})
    s.server.add_data_producer(dp)
    with pytest.raises(ValueError, match="already exists"):
        s.server.add_data_producer(producer(6))
    with pytest.raises(ValueError, match="MIS"):
        s.server.add_data_producer(producer(2000))
    dc1 = s.server.add_data_consumer(data_consumer_id="c1", data_producer=dp)
    dc2 = s.server.add_data_consumer(data_consumer_id="c2", data_producer=dp, ordered=False, max_retransmits=0,
                                     subchannels=[7])
    assert dc1.sctp_stream_parameters == {"streamId": 0, "ordered": True}
    assert dc2.sctp_stream_parameters == {"streamId": 1, "ordered": False, "maxRetransmits": 0}
    # the browser opens the producer's channel and both consumer channels, negotiated
    s.endpoint.create_channel("chat", negotiated=True, stream_id=6, now_ms=0)
    s.endpoint.create_channel("chat", negotiated=True, stream_id=0, now_ms=0)
    s.endpoint.create_channel("chat", negotiated=True, stream_id=1, ordered=False, max_retransmits=0, now_ms=0)
    for i in range(5):
        s.endpoint.send(6, f"msg {i}", now_ms=0)
    s.endpoint.send(6, b"\x01\x02", now_ms=0)
    s.run()
    assert [(p.id, ppid, data) for p, ppid, data in s.routed] == \
        [("dp6", PPID_STRING, f"msg {i}".encode()) for i in range(5)] + [("dp6", PPID_BINARY, b"\x01\x02")]
    # the router would now hand each message to every consumer of dp6
    for _, ppid, data in s.routed:
        for dc in (dc1, dc2):
            s.server.send(dc, ppid, data, subchannels=[7] if data == b"\x01\x02" else None, now_ms=0)
    s.run()
    assert [e[3] for e in s.browser_messages(0)] == [f"msg {i}".encode() for i in range(5)]
    assert sorted(e[3] for e in s.browser_messages(1)) == sorted([f"msg {i}".encode() for i in range(5)] + [b"\x01\x02"])
    assert dp.get_stats(0)[0]["messagesReceived"] == 6
    assert dc1.messages_sent == 5 and dc1.drops == {"subchannels": 1}
    assert dc2.messages_sent == 6
    assert s.server.data_consumer_stats(dc1, 9)[0]["bufferedAmount"] == 0
    dump = s.server.dump()
    assert dump["sctpListener"] == {"streamIdTable": [{"key": 6, "value": "dp6"}]}
    assert dump["dataConsumerIds"] == ["c1", "c2"] and dump["sctpState"] == "connected"


def test_paused_producer_counts_but_does_not_route():
    s = Session()
    dp = producer(2)
    s.server.add_data_producer(dp)
    s.endpoint.create_channel("x", negotiated=True, stream_id=2, now_ms=0)
    dp.pause()
    s.endpoint.send(2, "while paused", now_ms=0)
    s.run()
    assert s.routed == [] and dp.messages_received == 1
    assert s.server.drops == {"data_producer_paused": 1}


def test_closing_consumer_resets_stream_and_frees_id_after_reset():
    s = Session()
    dp = producer(4)
    s.server.add_data_producer(dp)
    dc = s.server.add_data_consumer(data_consumer_id="c", data_producer=dp)
    sid = dc.stream_id
    s.endpoint.create_channel("chat", negotiated=True, stream_id=sid, now_ms=0)
    s.run()
    s.server.remove_data_consumer(dc, 0)
    assert dc.closed and s.server.stream_ids.in_use(sid)  # until the reset completes
    s.run()
    assert ("closing", sid) in s.browser_events and ("closed", sid) in s.browser_events
    assert not s.server.stream_ids.in_use(sid)
    # a producer closed by the server resets its stream too
    s.endpoint.create_channel("p", negotiated=True, stream_id=4, now_ms=0)
    s.run()
    s.server.remove_data_producer(dp, 0)
    s.run()
    assert ("closed", 4) in s.browser_events


def test_browser_closing_its_channel_is_reported():
    s = Session()
    dp = producer(8)
    s.server.add_data_producer(dp)
    s.endpoint.create_channel("x", negotiated=True, stream_id=8, now_ms=0)
    s.run()
    s.endpoint.close_channel(8, 0)
    s.run()
    assert ("streamreset", 8) in s.server_events
    assert ("closed", 8) in s.browser_events  # the server reset its side in turn


def test_send_buffer_full_and_buffered_amount_low_events():
    s = Session(sctp_send_buffer_size=5000)
    dp = producer(0)
    s.server.add_data_producer(dp)
    dc = s.server.add_data_consumer(data_consumer_id="c", data_producer=dp)
    s.endpoint.create_channel("chat", negotiated=True, stream_id=dc.stream_id, now_ms=0)
    s.server.set_buffered_amount_low_threshold(dc, 1000)
    assert ("bufferedamountlow", "c", 0) in s.server.drain_events()  # already below: fires at once
    assert s.server.send(dc, PPID_BINARY, bytes(4000), now_ms=0)
    assert dc.buffered_amount == 4000  # queued, not yet transmitted
    assert not s.server.send(dc, PPID_BINARY, bytes(4000), now_ms=0)
    for p in s.server.datagrams_to_send():  # the association transmits what the window allows
        s.browser.receive(p, 0)
    events = s.server.drain_events()
    assert ("sctpsendbufferfull", "c") in events
    low = [e for e in events if e[0] == "bufferedamountlow"]
    assert low and low[-1][1] == "c" and low[-1][2] <= 1000 and dc.buffered_amount == low[-1][2]
    s.run()
    assert s.server.data_consumer_stats(dc, 0)[0]["bufferedAmount"] == 0
    assert len(s.browser_messages(dc.stream_id)) == 1


def test_in_band_channels_both_ways():
    s = Session()
    # the browser opens a channel with DCEP: the server ACKs and reports it
    sid = s.endpoint.create_channel("in-band", protocol="p", ordered=False, max_packet_life_time=300, now_ms=0)
    s.run()
    assert s.endpoint.channels[sid].acked
    ev = [e for e in s.server_events if e[0] == "dcepopen"]
    assert ev == [("dcepopen", sid, {"label": "in-band", "protocol": "p",
                                     "sctpStreamParameters": {"streamId": sid, "ordered": False,
                                                              "maxPacketLifeTime": 300}})]
    # the application creates the DataProducer from it; messages are routed
    dp = DataProducerCore(data_producer_id="ib", type="sctp", sctp_stream_parameters=ev[0][2]["sctpStreamParameters"],
                          label="in-band", protocol="p")
    s.server.add_data_producer(dp)
    s.endpoint.send(sid, "routed", now_ms=0)
    s.run()
    assert [(p.id, d) for p, _, d in s.routed] == [("ib", b"routed")]
    # a DataConsumer opened in band: DATA_CHANNEL_OPEN on an odd id (server), then messages
    dc = s.server.add_data_consumer(data_consumer_id="c", data_producer=dp, negotiated=False)
    assert dc.stream_id % 2 == 1 and not dc.acked
    assert dc.send_options()["ordered"] is True  # until the ACK
    s.server.send(dc, PPID_STRING, b"hello in band", now_ms=0)
    s.run()
    opened = [e for e in s.browser_events if e[0] == "datachannel"]
    assert opened and opened[0][1] == dc.stream_id and opened[0][2].label == "in-band"
    assert dc.acked
    assert s.browser_messages(dc.stream_id)[0][3] == b"hello in band"


def test_before_start_and_after_close():
    t = TransportDataChannels(num_sctp_streams={"OS": 16, "MIS": 16})
    assert t.sctp_state == "new" and t.datagrams_to_send() == [] and t.next_timer_ms() is None
    assert t.receive(b"\x00" * 20, 0) == []
    assert t.drops == {"sctp_before_start": 1}
    dp = producer(1)
    t.add_data_producer(dp)
    dc = t.add_data_consumer(data_consumer_id="c", data_producer=dp)
    assert not t.send(dc, PPID_STRING, b"x", now_ms=0)  # SCTP not connected: inactive
    assert dc.drops == {"inactive": 1}
    t.close()
    with pytest.raises(InvalidStateError):
        t.add_data_consumer(data_consumer_id="c2", data_producer=dp)
    with pytest.raises(TypeError, match="maxSctpMessageSize"):
        TransportDataChannels(max_sctp_message_size=0)
