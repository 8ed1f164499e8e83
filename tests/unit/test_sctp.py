"""SctpAssociation (transport/sctp.py): two associations back to back on a fake clock, with
seeded loss, reordering and duplication; partial reliability; stream resets; shutdown/abort;
timers; malformed packets; and interop with aiortc's independent RTCSctpTransport."""

from __future__ import annotations

import asyncio
import heapq
import random
import struct

import pytest
from raysfu.transport.errors import InvalidStateError
from raysfu.transport.sctp import (
    SctpAssociation,
    crc32c,
    crc32c_py,
    looks_like_sctp,
)

from benchmarks.sctp_throughput import (
    close_aiortc,
    connect_ours_pair,
    ours_with_aiortc,
    pump,
)


class Net:
    """Discrete-event link between two associations: per-packet delay + jitter (reordering),
    seeded loss and duplication, optional filter ``drop(direction, packet) -> bool``."""

    def __init__(self, a: SctpAssociation, b: SctpAssociation, *, seed: int = 1, loss: float = 0.0,
                 dup: float = 0.0, delay_ms: int = 20, jitter_ms: int = 0, drop=None) -> None:
        self.a, self.b = a, b
        self.rng = random.Random(seed)
        self.loss, self.dup = loss, dup
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self.drop = drop
        self.now = 0
        self.queue: list = []
        self.seq = 0
        self.events = {id(a): [], id(b): []}
        self.sent = {id(a): 0, id(b): 0}

    def _collect(self) -> None:
        for src, dst, name in ((self.a, self.b, "ab"), (self.b, self.a, "ba")):
            for p in src.datagrams_to_send():
                self.sent[id(src)] += 1
                if self.drop is not None and self.drop(name, p):
                    continue
                if self.rng.random() < self.loss:
                    continue
                copies = 2 if self.rng.random() < self.dup else 1
                for _ in range(copies):
                    at = self.now + self.delay_ms + (self.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0)
                    self.seq += 1
                    heapq.heappush(self.queue, (at, self.seq, dst, p))
            self.events[id(src)].extend(src.drain_events())

    def run(self, until_ms: int, stop=None) -> None:
        """Advance simulated time to ``until_ms`` or until ``stop()`` is true."""
        while True:
            self._collect()
            if stop is not None and stop():
                return
            times = [t for t in (self.a.next_timer_ms(), self.b.next_timer_ms()) if t is not None]
            if self.queue:
                times.append(self.queue[0][0])
            if not times:
                return
            t = max(min(times), self.now)
            if t > until_ms:
                self.now = until_ms
                return
            self.now = t
            while self.queue and self.queue[0][0] <= t:
                _, _, dst, p = heapq.heappop(self.queue)
                dst.receive(p, t)
                self._collect()  # answers go out per packet, as a socket loop does
            for x in (self.a, self.b):
                nt = x.next_timer_ms()
                if nt is not None and nt <= t:
                    x.handle_timer(t)

    def messages(self, assoc: SctpAssociation) -> list[tuple]:
        return [e for e in self.events[id(assoc)] if e[0] == "message"]

    def of_kind(self, assoc: SctpAssociation, kind: str) -> list[tuple]:
        return [e for e in self.events[id(assoc)] if e[0] == kind]


def make_pair(seed: int = 7, **kwargs):
    rng = random.Random(seed)
    a = SctpAssociation(is_client=True, rng=rng, **kwargs)
    b = SctpAssociation(is_client=False, rng=rng, **kwargs)
    return a, b


def connected_net(seed=7, assoc_kwargs=None, **net_kwargs):
    a, b = make_pair(seed, **(assoc_kwargs or {}))
    net = Net(a, b, seed=seed, **net_kwargs)
    a.start(0)
    b.start(0)
    net.run(60_000, stop=lambda: a.state == "connected" and b.state == "connected")
    assert a.state == b.state == "connected"
    return a, b, net


def random_payload(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


# ------------------------------------------------------------------------------------------
# CRC32c
# ------------------------------------------------------------------------------------------

def test_crc32c_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c_py(b"123456789") == 0xE3069283
    assert crc32c_py(b"") == crc32c(b"") == 0
    rng = random.Random(3)
    for n in (1, 3, 64, 1188):
        d = rng.randbytes(n)
        assert crc32c_py(d) == crc32c(d)
        assert crc32c_py(d[n // 2:], crc32c_py(d[: n // 2])) == crc32c(d)


def test_looks_like_sctp():
    a = SctpAssociation(is_client=True)
    a.start(0)
    init = a.datagrams_to_send()[0]
    assert looks_like_sctp(init)
    assert not looks_like_sctp(bytes([0x80, 96]) + bytes(20))  # RTP
    assert not looks_like_sctp(init[:12])


# ------------------------------------------------------------------------------------------
# Association set-up
# ------------------------------------------------------------------------------------------

def test_handshake_client_initiates_server_answers():
    a, b, net = connected_net()
    assert net.of_kind(a, "state") == [("state", "connecting"), ("state", "connected")]
    assert net.of_kind(b, "state") == [("state", "connecting"), ("state", "connected")]
    assert a.association_state == "ESTABLISHED"
    assert a.outbound_streams == b.inbound_streams == 1024
    assert a.peer_supports_partial_reliability and b.peer_supports_partial_reliability


def test_handshake_init_collision_both_initiate():
    a, b = make_pair(11)
    net = Net(a, b, seed=11, delay_ms=30)
    a.start(0, initiate=True)
    b.start(0, initiate=True)
    net.run(10_000, stop=lambda: a.state == b.state == "connected")
    assert a.state == b.state == "connected"
    a.send(3, 51, b"after collision", now_ms=net.now)
    b.send(4, 51, b"and back", now_ms=net.now)
    net.run(net.now + 2000)
    assert [m[3] for m in net.messages(b)] == [b"after collision"]
    assert [m[3] for m in net.messages(a)] == [b"and back"]


def test_stream_counts_negotiated_to_minimum():
    a = SctpAssociation(is_client=True, os=300, mis=20)
    b = SctpAssociation(is_client=False, os=10, mis=100)
    a.start(0)
    b.start(0)
    pump(a, b, 0)
    assert a.outbound_streams == 100 and a.inbound_streams == 10
    assert b.outbound_streams == 10 and b.inbound_streams == 100
    with pytest.raises(ValueError, match="stream_id"):
        a.send(100, 53, b"x", now_ms=0)


def test_lost_init_is_retransmitted_by_t1():
    lost = {"n": 0}

    def drop(direction, p):
        if direction == "ab" and p[12] == 1 and lost["n"] < 2:  # the first two INITs
            lost["n"] += 1
            return True
        return False

    a, b = make_pair()
    net = Net(a, b, drop=drop)
    a.start(0)
    b.start(0)
    net.run(30_000, stop=lambda: a.state == "connected")
    assert a.state == b.state == "connected"
    assert a.stats["t1_expirations"] == 2
    assert net.now >= 3000  # 1 s then 2 s (T1 backs off)


def test_init_never_answered_fails():
    a = SctpAssociation(is_client=True, max_init_retransmits=3)
    a.start(0)
    now = 0
    while a.state == "connecting":
        a.datagrams_to_send()
        now = a.next_timer_ms()
        a.handle_timer(now)
    assert a.state == "failed"
    assert ("state", "failed") in a.drain_events()
    assert a.stats["t1_expirations"] == 4


def test_forged_cookie_is_dropped():
    a, b = make_pair()
    a.start(0)
    b.start(0)
    init = a.datagrams_to_send()[0]
    b.receive(init, 0)
    init_ack = b.datagrams_to_send()[0]
    a.receive(init_ack, 0)
    echo = bytearray(a.datagrams_to_send()[0])
    echo[40] ^= 0xFF  # inside the cookie: the MAC no longer matches
    struct.pack_into("<I", echo, 8, 0)
    struct.pack_into("<I", echo, 8, crc32c(bytes(echo)))
    b.receive(bytes(echo), 0)
    assert b.stats["dropped_bad_cookie"] == 1
    assert b.state == "connecting"


def test_stale_cookie_gets_error():
    a, b = make_pair()
    a.start(0)
    b.start(0)
    b.receive(a.datagrams_to_send()[0], 0)
    a.receive(b.datagrams_to_send()[0], 0)
    echo = a.datagrams_to_send()[0]
    b.receive(echo, 61_000)  # cookie lifetime is 60 s
    assert b.stats["dropped_bad_cookie"] == 1
    error = b.datagrams_to_send()
    assert len(error) == 1 and error[0][12] == 9  # ERROR chunk
    a.receive(error[0], 61_000)
    assert ("error", 3) in a.drain_events()  # stale cookie: a starts over with a new INIT
    again = a.datagrams_to_send()
    assert again and again[0][12] == 1
    b.receive(again[0], 61_000)
    pump(a, b, 61_000)
    assert a.state == b.state == "connected"


# ------------------------------------------------------------------------------------------
# Data transfer
# ------------------------------------------------------------------------------------------

def test_small_and_fragmented_messages_lossless():
    a, b = connect_ours_pair()
    rng = random.Random(5)
    sent = [random_payload(rng, n) for n in (1, 2, 3, 100, 1159, 1160, 1161, 5000, 65536, 262144)]
    for p in sent:
        assert a.send(0, 53, p, now_ms=0)
    pump(a, b, 0)
    got = [e[3] for e in b.drain_events() if e[0] == "message"]
    assert got == sent
    assert b.stats["messages_received"] == len(sent)
    assert all(len(p) <= 1188 for p in a.datagrams_to_send())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reliable_ordered_delivery_with_loss_reordering_duplication(seed):
    a, b, net = connected_net(seed=seed, loss=0.1, dup=0.05, delay_ms=20, jitter_ms=30)
    rng = random.Random(seed)
    sent = {sid: [] for sid in (0, 1, 2)}
    for i in range(150):
        sid = rng.choice((0, 1, 2))
        p = random_payload(rng, rng.choice((10, 200, 1500, 4000, 12000)))
        sent[sid].append(p)
        assert a.send(sid, 53, p, now_ms=net.now)
        if i % 10 == 0:
            net.run(net.now + 50)
    total = sum(len(v) for v in sent.values())
    net.run(net.now + 120_000, stop=lambda: len(net.messages(b)) >= total and not a.info()["outstandingChunks"])
    got = {sid: [m[3] for m in net.messages(b) if m[1] == sid] for sid in sent}
    assert got == sent  # every message, in order per stream, intact
    assert a.stats["retransmitted_chunks"] > 0
    assert b.stats["duplicate_tsns"] > 0
    assert a.state == b.state == "connected"


def test_unordered_reliable_delivery_with_loss():
    a, b, net = connected_net(seed=4, loss=0.15, dup=0.05, jitter_ms=40)
    rng = random.Random(4)
    sent = [random_payload(rng, rng.randint(1, 6000)) for _ in range(80)]
    for p in sent:
        a.send(7, 51, p, ordered=False, now_ms=net.now)
    net.run(net.now + 120_000, stop=lambda: len(net.messages(b)) >= len(sent) and not a.info()["outstandingChunks"])
    got = [m[3] for m in net.messages(b)]
    assert sorted(got) == sorted(sent)
    assert len(got) == len(sent)


def test_both_directions_at_once():
    a, b, net = connected_net(seed=9, loss=0.05, jitter_ms=10)
    rng = random.Random(9)
    ab = [random_payload(rng, rng.randint(1, 3000)) for _ in range(40)]
    ba = [random_payload(rng, rng.randint(1, 3000)) for _ in range(40)]
    for x, y in zip(ab, ba):
        a.send(1, 53, x, now_ms=net.now)
        b.send(1, 53, y, now_ms=net.now)
    net.run(net.now + 60_000, stop=lambda: len(net.messages(b)) == 40 and len(net.messages(a)) == 40)
    assert [m[3] for m in net.messages(b)] == ab
    assert [m[3] for m in net.messages(a)] == ba


def test_congestion_window_slow_start_and_fast_retransmit():
    a, b, net = connected_net(seed=2, delay_ms=25)
    cwnd0 = a.info()["cwnd"]
    payload = bytes(1160)
    for _ in range(200):
        a.send(0, 53, payload, now_ms=net.now)
    net.run(net.now + 400)
    grown = a.info()["cwnd"]
    assert grown > 4 * cwnd0  # slow start: about one MTU per acknowledged packet
    # now lose a single data packet in the middle of a flight: three SACKs with gaps trigger
    # fast retransmit, not T3
    state = {"count": 0}

    def drop(direction, p):
        if direction == "ab" and p[12] == 0:
            state["count"] += 1
            return state["count"] == 5
        return False

    net.drop = drop
    for _ in range(200):
        a.send(0, 53, payload, now_ms=net.now)
    net.run(net.now + 30_000, stop=lambda: len(net.messages(b)) == 400)
    assert len(net.messages(b)) == 400
    assert a.stats["fast_retransmits"] >= 1
    assert a.stats["t3_expirations"] == 0
    info = a.info()
    assert info["ssthresh"] < 1 << 20  # cut on the loss


def test_rto_follows_rtt():
    a, b, net = connected_net(seed=3, delay_ms=150)
    for _ in range(20):
        a.send(0, 53, b"x" * 500, now_ms=net.now)
        net.run(net.now + 400)
    info = a.info()
    assert 250 <= info["srttMs"] <= 700  # 300 ms round trip, plus the delayed SACK at times
    assert info["rtoMs"] >= info["srttMs"]


def test_t3_retransmission_after_total_loss_then_recovery():
    a, b, net = connected_net(seed=6)
    blackout = {"on": True}
    net.drop = lambda d, p: blackout["on"]
    a.send(0, 53, b"through the blackout", now_ms=net.now)
    net.run(net.now + 3000)
    assert a.stats["t3_expirations"] >= 2
    assert a.info()["cwnd"] == 1188
    blackout["on"] = False
    net.run(net.now + 60_000, stop=lambda: net.messages(b))
    assert [m[3] for m in net.messages(b)] == [b"through the blackout"]


def test_peer_unreachable_fails_after_max_retransmissions():
    a, b, net = connected_net(seed=6, assoc_kwargs={"max_retransmissions": 3, "rto_max_ms": 2000})
    net.drop = lambda d, p: True
    a.send(0, 53, b"lost", now_ms=net.now)
    net.run(net.now + 120_000, stop=lambda: a.state == "failed")
    assert a.state == "failed"
    assert ("state", "failed") in net.events[id(a)]
    with pytest.raises(InvalidStateError):
        a.send(0, 53, b"x", now_ms=net.now)


def test_heartbeat_when_idle_and_failure_when_silent():
    a, b, net = connected_net(seed=8, assoc_kwargs={"heartbeat_interval_ms": 1000, "max_retransmissions": 2})
    net.run(net.now + 5000)
    assert a.stats["heartbeats_sent"] >= 3 and b.stats["heartbeats_sent"] >= 3
    assert a.state == "connected"
    assert a.info()["srttMs"] is not None
    net.drop = lambda d, p: d == "ba"  # b goes silent
    net.run(net.now + 30_000, stop=lambda: a.state == "failed")
    assert a.state == "failed"


def test_receive_window_is_respected():
    a, b, net = connected_net(seed=10, assoc_kwargs={"receive_window_bytes": 8000})
    rng = random.Random(10)
    sent = [random_payload(rng, 20_000) for _ in range(3)] + [random_payload(rng, 900) for _ in range(20)]
    for p in sent:
        a.send(0, 53, p, now_ms=net.now)
    net.run(net.now + 120_000, stop=lambda: len(net.messages(b)) == len(sent))
    assert [m[3] for m in net.messages(b)] == sent
    assert b.stats["dropped_no_buffer"] == 0


def test_send_buffer_full_and_buffered_amount_low():
    a, b = connect_ours_pair(send_buffer_size=10_000)
    a.set_buffered_amount_low_threshold(2, 3000)
    assert a.send(2, 53, bytes(6000), now_ms=0)
    assert a.send(2, 53, bytes(4000), now_ms=0)
    assert a.buffered_amount(2) == 10_000 and a.buffered_amount_total == 10_000
    assert not a.send(2, 53, bytes(1), now_ms=0)
    assert a.stats["send_buffer_full"] == 1
    pump(a, b, 0)
    events = a.drain_events()
    low = [e for e in events if e[0] == "buffered_amount_low"]
    assert len(low) == 1 and low[0][1] == 2 and low[0][2] <= 3000
    assert a.buffered_amount(2) == 0
    assert a.send(2, 53, bytes(1), now_ms=0)


def test_bad_arguments():
    a, b = connect_ours_pair(max_message_size=1000)
    with pytest.raises(ValueError, match="data"):
        a.send(0, 53, b"", now_ms=0)
    with pytest.raises(ValueError, match="max_message_size"):
        a.send(0, 53, bytes(1001), now_ms=0)
    with pytest.raises(ValueError, match="ppid"):
        a.send(0, -1, b"x", now_ms=0)
    with pytest.raises(ValueError, match="max_retransmits"):
        a.send(0, 53, b"x", max_retransmits=1, max_packet_life_time_ms=5, now_ms=0)
    with pytest.raises(TypeError, match="data"):
        a.send(0, 53, "text", now_ms=0)
    with pytest.raises(TypeError, match="is_client"):
        SctpAssociation(is_client=None)
    with pytest.raises(ValueError, match="max_packet_size"):
        SctpAssociation(is_client=True, max_packet_size=10)


def test_invalid_stream_is_reported_with_error():
    a = SctpAssociation(is_client=True, os=100, mis=100)
    b = SctpAssociation(is_client=False, os=100, mis=5)
    a.start(0)
    b.start(0)
    pump(a, b, 0)
    assert a.outbound_streams == 5
    # forge: let a believe it may send on stream 50
    a._out_streams = 100
    a.send(50, 53, b"nowhere", now_ms=0)
    a.send(1, 53, b"fine", now_ms=0)
    pump(a, b, 0)
    assert [e[3] for e in b.drain_events() if e[0] == "message"] == [b"fine"]
    assert b.stats["dropped_invalid_stream"] == 1
    assert ("error", 1) in a.drain_events()


# ------------------------------------------------------------------------------------------
# Partial reliability (RFC 3758)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ordered", [True, False])
def test_max_retransmits_zero_abandons_lost_messages(ordered):
    a, b, net = connected_net(seed=12, loss=0.3, jitter_ms=5)
    sent = [f"m{i}".encode() * 50 for i in range(100)]
    for p in sent:
        a.send(5, 53, p, ordered=ordered, max_retransmits=0, now_ms=net.now)
    net.run(net.now + 60_000, stop=lambda: not a.info()["outstandingChunks"] and not a.buffered_amount_total)
    got = [m[3] for m in net.messages(b)]
    assert a.stats["messages_abandoned"] > 0
    assert 0 < len(got) < len(sent)
    assert len(set(got)) == len(got)  # no duplicates
    assert set(got) <= set(sent)
    if ordered:
        assert got == [p for p in sent if p in set(got)]
    assert a.stats["forward_tsns_sent"] > 0 and b.stats["forward_tsns_received"] > 0
    # each message went out once: no retransmission of user data
    assert a.stats["retransmitted_chunks"] == 0
    # the stream is not stuck: a reliable message afterwards still arrives
    net.loss = 0.0
    a.send(5, 53, b"reliable tail", now_ms=net.now)
    net.run(net.now + 10_000, stop=lambda: net.messages(b) and net.messages(b)[-1][3] == b"reliable tail")
    assert net.messages(b)[-1][3] == b"reliable tail"


def test_max_retransmits_fragmented_message_abandoned_whole():
    lost = {"n": 0}

    def drop(direction, p):
        # lose the third DATA packet every time: the second message's middle fragment
        if direction == "ab" and p[12] == 0:
            tsn = struct.unpack_from("!I", p, 16)[0]
            return tsn == lost.setdefault("tsn", tsn + 7)
        return False

    a, b, net = connected_net(seed=13)
    net.drop = drop
    first, second, third = bytes([1]) * 5000, bytes([2]) * 5000, bytes([3]) * 5000
    for p in (first, second, third):
        a.send(1, 53, p, max_retransmits=1, now_ms=net.now)
    net.run(net.now + 60_000, stop=lambda: not a.info()["outstandingChunks"])
    got = [m[3] for m in net.messages(b)]
    assert first in got and third in got and second not in got
    assert a.stats["messages_abandoned"] == 1


def test_forward_tsn_keeps_fragments_of_later_reliable_message():
    # a partially reliable message P is lost for good; the reliable fragmented message M after
    # it is missing its last fragment when the FORWARD TSN for P arrives: M's first fragments,
    # now below the receiver's cumulative TSN, must be kept until the last one arrives
    seen = {"p_tsn": None, "last_drops": 0}

    def drop(direction, p):
        if direction != "ab" or p[12] != 0:
            return False
        tsn, sid = struct.unpack_from("!IH", p, 16)
        if sid == 5:
            seen["p_tsn"] = tsn
            return True
        if sid == 1 and p[13] & 1 and seen["last_drops"] < 2:  # M's E fragment, twice
            seen["last_drops"] += 1
            return True
        return False

    a, b, net = connected_net(seed=19)
    net.drop = drop
    a.send(5, 53, b"P" * 100, max_retransmits=0, now_ms=net.now)
    m = bytes(range(256)) * 12  # 3 fragments
    a.send(1, 53, m, now_ms=net.now)
    net.run(net.now + 30_000, stop=lambda: net.messages(b))
    assert [x[3] for x in net.messages(b)] == [m]
    assert b.stats["forward_tsns_received"] >= 1 and a.stats["messages_abandoned"] == 1


def test_max_packet_life_time_expires_queued_and_outstanding():
    a, b, net = connected_net(seed=14, delay_ms=100)
    net.drop = lambda d, p: d == "ab" and p[12] == 0  # no data gets through for now
    for i in range(10):
        a.send(2, 53, bytes([i]) * 3000, max_packet_life_time_ms=500, now_ms=net.now)
    net.run(net.now + 3000)
    assert a.stats["messages_abandoned"] == 10
    assert a.buffered_amount(2) == 0
    net.drop = None
    a.send(2, 53, b"fresh", max_packet_life_time_ms=500, now_ms=net.now)
    net.run(net.now + 5000, stop=lambda: net.messages(b))
    assert [m[3] for m in net.messages(b)] == [b"fresh"]


def test_partial_reliability_ignored_without_peer_support():
    a, b = make_pair()
    b._extension_params = lambda: b""  # b announces no extensions
    net = Net(a, b, loss=0.3, seed=15)
    a.start(0)
    b.start(0)
    net.run(60_000, stop=lambda: a.state == b.state == "connected")
    assert not a.peer_supports_partial_reliability
    sent = [bytes([i]) * 100 for i in range(30)]
    for p in sent:
        a.send(0, 53, p, max_retransmits=0, now_ms=net.now)
    net.run(net.now + 120_000, stop=lambda: len(net.messages(b)) == 30)
    assert [m[3] for m in net.messages(b)] == sent
    assert a.stats["messages_abandoned"] == 0


# ------------------------------------------------------------------------------------------
# Stream reset (RFC 6525), shutdown, abort
# ------------------------------------------------------------------------------------------

def test_stream_reset_sends_queued_first_and_restarts_ssn():
    a, b, net = connected_net(seed=16, loss=0.1, jitter_ms=20)
    for i in range(20):
        a.send(3, 51, b"before %d" % i, now_ms=net.now)
    a.reset_streams([3], net.now)
    with pytest.raises(InvalidStateError, match="being reset"):
        a.send(3, 51, b"too soon", now_ms=net.now)
    net.run(net.now + 60_000, stop=lambda: net.of_kind(a, "outgoing_streams_reset"))
    assert net.of_kind(a, "outgoing_streams_reset") == [("outgoing_streams_reset", (3,))]
    assert net.of_kind(b, "incoming_streams_reset") == [("incoming_streams_reset", (3,))]
    before = [m[3] for m in net.messages(b)]
    assert before == [b"before %d" % i for i in range(20)]
    # the stream is usable again, SSN from 0
    a.send(3, 51, b"after", now_ms=net.now)
    net.run(net.now + 60_000, stop=lambda: len(net.messages(b)) == 21)
    assert net.messages(b)[-1][3] == b"after"


def test_deferred_reset_waits_for_missing_data():
    # the RE-CONFIG overtakes lost DATA: b must defer (In Progress) until the data arrives
    state = {"dropped": 0}

    def drop(direction, p):
        if direction == "ab" and p[12] == 0 and state["dropped"] < 1:
            state["dropped"] += 1
            return True
        return False

    a, b, net = connected_net(seed=17)
    net.drop = drop
    a.send(9, 51, b"last words", now_ms=net.now)
    a.reset_streams([9], net.now)
    net.run(net.now + 30_000, stop=lambda: net.of_kind(a, "outgoing_streams_reset"))
    assert [m[3] for m in net.messages(b)] == [b"last words"]
    kinds = [e[0] for e in net.events[id(b)] if e[0] in ("message", "incoming_streams_reset")]
    assert kinds == ["message", "incoming_streams_reset"]
    assert net.of_kind(a, "outgoing_streams_reset") == [("outgoing_streams_reset", (9,))]


def test_graceful_shutdown_delivers_everything_first():
    a, b, net = connected_net(seed=18, loss=0.1, jitter_ms=10)
    rng = random.Random(18)
    sent = [random_payload(rng, rng.randint(1, 5000)) for _ in range(30)]
    for p in sent:
        a.send(0, 53, p, now_ms=net.now)
    a.close(net.now)
    with pytest.raises(InvalidStateError):
        a.send(0, 53, b"late", now_ms=net.now)
    net.run(net.now + 120_000, stop=lambda: a.state == b.state == "closed")
    assert [m[3] for m in net.messages(b)] == sent
    assert a.state == b.state == "closed"
    assert a.next_timer_ms() is None and b.next_timer_ms() is None


def test_abort_closes_peer():
    a, b = connect_ours_pair()
    a.abort(0)
    assert a.state == "closed"
    for p in a.datagrams_to_send():
        b.receive(p, 0)
    assert b.state == "closed"
    assert ("state", "closed") in b.drain_events()
    assert b.next_timer_ms() is None


# ------------------------------------------------------------------------------------------
# Malformed input
# ------------------------------------------------------------------------------------------

def _refresh_crc(p: bytearray) -> bytes:
    struct.pack_into("<I", p, 8, 0)
    struct.pack_into("<I", p, 8, crc32c(bytes(p)))
    return bytes(p)


def test_bad_checksum_tag_port_are_dropped_and_counted():
    a, b = connect_ours_pair()
    a.send(0, 53, b"hello", now_ms=0)
    good = a.datagrams_to_send()[0]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    b.receive(bytes(bad_crc), 0)
    bad_tag = bytearray(good)
    bad_tag[4] ^= 1
    b.receive(_refresh_crc(bad_tag), 0)
    bad_port = bytearray(good)
    bad_port[0] ^= 1
    b.receive(_refresh_crc(bad_port), 0)
    b.receive(b"\x00" * 5, 0)
    assert b.stats["dropped_bad_checksum"] == 1
    assert b.stats["dropped_bad_verification_tag"] == 1
    assert b.stats["dropped_bad_port"] == 1
    assert b.stats["dropped_malformed"] == 1
    assert not [e for e in b.drain_events() if e[0] == "message"]
    b.receive(good, 0)
    assert [e[3] for e in b.drain_events() if e[0] == "message"] == [b"hello"]


def test_fuzzed_packets_never_raise():
    rng = random.Random(99)
    a, b = connect_ours_pair()
    corpus = []
    for n in (10, 3000):
        a.send(1, 53, bytes(n), now_ms=0)
        a.send(2, 51, bytes(n), ordered=False, max_retransmits=0, now_ms=0)
    a.reset_streams([4], 0)
    for _ in range(3):
        for p in a.datagrams_to_send():
            corpus.append(p)
            b.receive(p, 0)
        for p in b.datagrams_to_send():
            corpus.append(p)
            a.receive(p, 0)
    assert corpus
    for i in range(4000):
        p = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            if op < 0.5 and len(p) > 12:
                p[rng.randrange(12, len(p))] = rng.randrange(256)
            elif op < 0.7:
                del p[rng.randrange(12, max(13, len(p))):]
            elif op < 0.85:
                p += rng.randbytes(rng.randint(1, 40))
            else:
                pos = rng.randrange(12, max(13, len(p) - 1))
                p[pos:pos + 2] = rng.randbytes(2)  # lengths, counts, stream ids
        target = a if i % 2 else b
        target.receive(_refresh_crc(p) if len(p) >= 12 else bytes(p), i)
        target.datagrams_to_send()
        target.drain_events()
        nt = target.next_timer_ms()
        if nt is not None and nt <= i:
            target.handle_timer(i)
    assert a.stats["dropped_malformed"] + b.stats["dropped_malformed"] > 0
    # random bytes too
    for _ in range(500):
        b.receive(rng.randbytes(rng.randint(0, 200)), 5000)


# ------------------------------------------------------------------------------------------
# Interop with aiortc's RTCSctpTransport (an independent implementation)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ours_is_client", [True, False])
async def test_interop_with_aiortc(ours_is_client):
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters

    driver, theirs, fake = await ours_with_aiortc(ours_is_client=ours_is_client)
    try:
        assoc = driver.association
        assert assoc.peer_supports_partial_reliability
        received: list = []
        ordered = RTCDataChannel(theirs, RTCDataChannelParameters(label="o", negotiated=True, id=2))
        unordered = RTCDataChannel(theirs, RTCDataChannelParameters(label="u", negotiated=True, id=4, ordered=False))
        ordered.on("message", lambda m: received.append(("o", m)))
        unordered.on("message", lambda m: received.append(("u", m)))
        rng = random.Random(1)
        big = [rng.randbytes(n) for n in (70_000, 200_000)]
        now = driver.now_ms()
        assoc.send(2, 51, "héllo".encode(), now_ms=now)
        for p in big:
            assoc.send(2, 53, p, now_ms=now)
        assoc.send(4, 53, b"u1", ordered=False, now_ms=now)
        assoc.send(2, 56, b" ", now_ms=now)  # empty string
        driver.flush()
        await driver.wait_for(lambda: len(received) == 5, timeout=10)
        got_o = [m for k, m in received if k == "o"]
        assert got_o == ["héllo", big[0], big[1], ""]
        assert ("u", b"u1") in received
        # aiortc -> ours
        ordered.send("from aiortc")
        ordered.send(big[1])
        unordered.send(b"un")
        await driver.wait_for(lambda: len([e for e in driver.events if e[0] == "message"]) == 3, timeout=10)
        msgs = [e for e in driver.events if e[0] == "message"]
        assert (2, 51, b"from aiortc") == msgs[0][1:]
        assert (2, 53, big[1]) in [m[1:] for m in msgs]
        assert (4, 53, b"un") in [m[1:] for m in msgs]
        # aiortc closes its channel: it resets its outgoing stream, we see the incoming reset
        unordered.close()
        await driver.wait_for(lambda: any(e[0] == "incoming_streams_reset" for e in driver.events), timeout=10)
        assoc.reset_streams([4], driver.now_ms())
        driver.flush()
        await driver.wait_for(lambda: any(e[0] == "outgoing_streams_reset" for e in driver.events), timeout=10)
        await asyncio.sleep(0.05)
        assert unordered.readyState == "closed"
        assert assoc.stats["dropped_malformed"] == 0 and assoc.stats["dropped_bad_checksum"] == 0
    finally:
        await close_aiortc(driver, theirs, fake)


async def test_interop_with_aiortc_graceful_abort():
    driver, theirs, fake = await ours_with_aiortc(ours_is_client=True)
    try:
        driver.association.abort(driver.now_ms())
        driver.flush()
        for _ in range(50):
            if theirs.state == "closed":
                break
            await asyncio.sleep(0.01)
        assert theirs.state == "closed"
    finally:
        await close_aiortc(driver, theirs, fake)
