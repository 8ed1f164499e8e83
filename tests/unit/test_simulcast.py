"""Simulcast engine (transport/simulcast.py, transport/layers.py) and SimulcastConsumer: switching
on keyframes with a fake clock, seq/ts continuity across switches (sender-report alignment and
the elapsed-time fallback), VP8 picture id / TL0PICIDX continuity, layers that stop and come
back, pause/resume, preferred layers, bandwidth limit, scores and events.

Packets are built: a simulated sender with three VP8 encodings (own SSRC, seq and timestamp
bases, picture ids) of the same capture clock, temporal pattern T0 T2 T1 T2, two packets a frame.
"""

from __future__ import annotations

import pytest
from raysfu.actors.consumer import Consumer
from raysfu.actors.simulcast_consumer import (
    SimulcastConsumer,
    SvcConsumer,
    create_consumer,
)
from raysfu.transport.codecs.vp8 import PICTURE_ID, TID, TL0PICIDX, parse_vp8_descriptor
from raysfu.transport.layers import (
    INACTIVE,
    MATURE,
    YOUNG,
    LayerMonitor,
    ntp_diff_ticks,
)
from raysfu.transport.rtcp import ntp_from_ms
from raysfu.transport.rtp import build_rtp, parse_rtp_header
from raysfu.transport.rtp_template import TemplateBuilder
from raysfu.transport.seq import SeqUnwrapper
from raysfu.transport.simulcast import (
    SWITCH_OK,
    SWITCH_RETRY,
    SimulcastSelector,
    StreamJoiner,
    clamp_preferred_layers,
)

from tests.unit.test_codec_vp8 import vp8

CLOCK = 90000
FRAME_MS = 33
TICKS = FRAME_MS * CLOCK // 1000  # 2970
UNIX0 = 1_700_000_000_000  # wall clock at now_ms = 0
TID_PATTERN = (0, 2, 1, 2)
SYNC_PATTERN = (0, 1, 1, 0)  # layer sync (Y) on the first TL2 and TL1 frames after a TL0


class Tmpl:
    """The producer template's duck type (what the engine and the consumer read)."""

    __slots__ = ("data", "timestamp", "payload_off", "marker", "mid_off", "twcc_off", "exts")

    def __init__(self, data, timestamp, payload_off, marker):
        self.data = data
        self.timestamp = timestamp
        self.payload_off = payload_off
        self.marker = marker
        self.mid_off = self.twcc_off = -1
        self.exts = ()


class Encoding:
    def __init__(self, idx, ssrc, seq0, ts0, pid0, tl0):
        self.idx, self.ssrc, self.seq, self.ts0, self.pid, self.tl0 = idx, ssrc, seq0, ts0, pid0, tl0
        self.unwrap = SeqUnwrapper()
        self.frame = 0
        self.started = False
        self.want_kf = True

    def ts_at(self, now_ms):
        return (self.ts0 + now_ms * CLOCK // 1000) & 0xFFFFFFFF


class Source:
    """Three VP8 simulcast encodings of one capture clock; keyframe on request."""

    def __init__(self, n=3, pid0=(100, 30000, 0x7FF0), ts0=(1000, 4_000_000_000, 77777), seq0=(10, 65530, 30000)):
        self.encs = [Encoding(i, 0x1000 + i, seq0[i], ts0[i], pid0[i], 250 - i) for i in range(n)]

    def request_kf(self, layer):
        self.encs[layer].want_kf = True

    def frame(self, now_ms, layers=None, packets=2):
        """One frame per live encoding at capture time ``now_ms``: [(layer, ext_seq, tmpl,
        keyframe, desc)]."""
        out = []
        for e in self.encs:
            if layers is not None and e.idx not in layers:
                continue
            kf = e.want_kf
            e.want_kf = False
            if kf:
                e.frame = 0
            k = e.frame % 4
            tid, y = TID_PATTERN[k], SYNC_PATTERN[k]
            if tid == 0 and e.started:
                e.tl0 = (e.tl0 + 1) & 0xFF
            e.started = True
            ts = e.ts_at(now_ms)
            for p in range(packets):
                first, last = p == 0, p == packets - 1
                payload = vp8(picture_id=e.pid, tl0=e.tl0, tid=tid, y=y, s=int(first), keyframe=kf and first)
                seq16 = e.seq & 0xFFFF
                e.seq += 1
                data = build_rtp(101, seq16, ts, e.ssrc, payload, marker=last)
                t = Tmpl(data, ts, 12, last)
                desc = parse_vp8_descriptor(data, 12, len(data))
                out.append((e.idx, e.unwrap.unwrap(seq16), t, kf and first, desc))
            e.pid = (e.pid + 1) & 0x7FFF
            e.frame += 1
        return out

    def send_srs(self, mon, now_ms):
        for e in self.encs:  # each encoding's SR describes a different instant
            at = now_ms - 170 * e.idx
            sec, frac = ntp_from_ms(UNIX0 + at)
            mon.on_sr(e.idx, sec, frac, e.ts_at(at))


class Rig:
    """Runs a selector against the source with a fake clock and records what it forwards."""

    def __init__(self, preferred=None, temporal=3, srs=True, **kw):
        self.src = Source()
        self.mon = LayerMonitor(3, temporal)
        self.sel = SimulcastSelector(self.mon, clock_rate=CLOCK, codec="video/VP8", temporal_layers=temporal,
                                     preferred_layers=preferred, initial_seq=65530, **kw)
        for layer in range(3):  # the producer was already sending when this consumer came
            self.mon.on_packet(layer, 0, 0, 0)
        self.srs = srs
        self.buf = bytearray(4096)
        self.out = []  # (out_seq, out_ts, layer, pid, tl0, tid, marker, now)
        self.events = []
        self.requests = []
        self.now = 0

    def run(self, until_ms, layers=None, packets=2, hook=None):
        while self.now < until_ms:
            now = self.now
            if self.srs and now % 990 == 0:
                self.src.send_srs(self.mon, now)
            for layer, ext, t, kf, desc in self.src.frame(now, layers, packets):
                if hook is not None:
                    layer, ext, t, kf, desc = hook(layer, ext, t, kf, desc)
                    if t is None:
                        continue
                self.feed(layer, ext, t, kf, desc, now)
            self.sel.update(now)
            self.pull(now)
            self.now += FRAME_MS

    def feed(self, layer, ext, t, kf, desc, now):
        self.mon.on_packet(layer, max(desc[TID], 0), len(t.data), now)
        n = self.sel.process(t, layer, ext, kf, now, desc, self.buf)
        self.pull(now)
        if not n:
            return None
        d = parse_vp8_descriptor(self.buf, 12, n)
        self.out.append((self.sel.out_seq, self.sel.out_ts, layer, d[PICTURE_ID], d[TL0PICIDX], d[TID], t.marker, now))
        return bytes(self.buf[:n])

    def pull(self, now):
        for layer in self.sel.take_key_frame_requests():
            self.requests.append((now, layer))
            self.src.request_kf(layer)
        if self.sel.layers_changed:
            self.sel.layers_changed = False
            self.events.append((now, self.sel.current_layers))

    def layers_sent(self):
        return [o[2] for o in self.out]


def assert_continuous(out, allow_seq_skip_at=()):
    """Output seq +1 per packet (+2 where a switch follows an incomplete frame), timestamps
    never going back and a multiple of one frame apart, picture id +1 per frame, TL0PICIDX +1
    per TL0 frame."""
    for a, b in zip(out, out[1:]):
        step = (b[0] - a[0]) & 0xFFFF
        assert step == (2 if b[7] in allow_seq_skip_at and b[2] != a[2] else 1), (a, b)
        dts = (b[1] - a[1]) & 0xFFFFFFFF
        assert dts < 0x80000000
        if b[3] != a[3]:  # new frame
            assert dts > 0 and dts % TICKS == 0, (a, b, dts)
            assert b[3] == (a[3] + 1) & 0x7FFF, (a, b)
            # TL0PICIDX: +1 at each TL0 frame, else the index of the latest TL0 frame
            assert b[4] == ((a[4] + 1) & 0xFF if b[5] == 0 else a[4]), (a, b)
        else:
            assert dts == 0 and b[4] == a[4]


# --- LayerMonitor --------------------------------------------------------------------------------


def test_monitor_activity_states_versions_and_scores():
    m = LayerMonitor(2, 2, inactive_after_ms=1500, min_active_ms=2000, check_interval_ms=100)
    assert m.state == [INACTIVE, INACTIVE] and m.scores() == [0, 0]
    m.on_packet(0, 0, 1000, 0)
    m.on_packet(1, 1, 500, 0)
    assert m.state == [MATURE, MATURE] and m.version == 2  # first arrival: usable at once
    for now in range(0, 1400, 20):
        m.on_packet(0, 0, 1000, now)
    m.update(1400)
    assert m.state[1] == MATURE
    m.on_packet(0, 0, 1000, 1600)  # layer 1 silent for 1600 ms
    assert m.state == [MATURE, INACTIVE] and m.score(1) == 0 and not m.is_usable(1)
    v = m.version
    m.on_packet(1, 0, 500, 3000)  # comes back: YOUNG for 2 s
    assert m.state[1] == YOUNG and m.version == v + 1 and m.is_usable(1)
    m.on_packet(0, 0, 1000, 3000)
    m.on_packet(1, 0, 500, 4500)
    m.on_packet(0, 0, 1000, 4500)
    assert m.state[1] == YOUNG
    m.on_packet(1, 0, 500, 5000)
    assert m.state[1] == MATURE and m.active_ms(1, 5000) == 2000
    v = m.version
    m.set_score(0, 4)
    assert m.version == v and m.score(0) == 4
    m.set_score(0, 0)
    assert m.version == v + 1 and not m.is_usable(0)
    m.on_packet(7, 0, 1, 5000)  # out of range: ignored
    with pytest.raises(ValueError):
        LayerMonitor(0)


def test_monitor_bitrates_by_layer_and_sender_reports():
    m = LayerMonitor(2, 3)
    for now in range(0, 1000, 10):
        m.on_packet(0, 0, 100, now)  # 80 kbps
        m.on_packet(0, 2, 50, now)  # 40 kbps
        m.on_packet(1, 9, 25, now)  # beyond the top temporal layer: counted in it
    assert m.layer_bitrate_bps(0, 0, 999) == 80_000
    assert m.bitrate_bps(0, 999, max_temporal=1) == 80_000
    assert m.bitrate_bps(0, 999) == 120_000
    assert m.bitrates_by_layer(999) == {"0.0": 80_000, "0.1": 80_000, "0.2": 120_000, "1.2": 20_000}
    assert m.sender_report(0) is None
    m.on_sr(0, 5, 1 << 31, 1234)
    assert m.sender_report(0) == ((5 << 32) | (1 << 31), 1234)


def test_ntp_diff_ticks_signed_and_wrapping():
    a = (10 << 32) | (1 << 31)  # 10.5 s
    b = 10 << 32
    assert ntp_diff_ticks(a, b, 90000) == 45000
    assert ntp_diff_ticks(b, a, 90000) == -45000
    assert ntp_diff_ticks(5 << 32, ((1 << 32) - 1) << 32, 1000) == 6000  # NTP seconds wrap


# --- StreamJoiner ----------------------------------------------------------------------------------


def test_joiner_seq_continuous_across_inputs_and_16_bit_wrap():
    j = StreamJoiner(CLOCK, initial_seq=65534)
    assert j.switch(0, 70000, 1000, 0) == SWITCH_OK
    assert [j.map(70000 + i, 1000, i == 1, 0) for i in range(2)] == [65534, 65535]
    # Another input stream, unrelated seq space; last packet had the marker: no skip.
    assert j.switch(1, 200, 5000, 33) == SWITCH_OK
    assert j.map(200, 5000, False, 33) == 0
    assert j.map(199, 5000, False, 33) == -1  # older than the switch point
    j.drop(201)  # a packet not forwarded: its number is reused
    assert j.map(202, 5000, True, 33) == 1


def test_joiner_skips_one_seq_after_incomplete_frame():
    j = StreamJoiner(CLOCK, initial_seq=100)
    j.switch(0, 1000, 0, 0)
    j.map(1000, 0, False, 0)  # frame start, the rest of the frame never sent
    j.switch(1, 50, 0, 33)
    assert j.map(50, 0, True, 33) == 102


def test_joiner_timestamps_aligned_with_sender_reports():
    j = StreamJoiner(CLOCK, initial_seq=0)
    ts_a, ts_b = 1_000_000, 4_294_000_000  # bases of two streams of one capture clock
    ntp = lambda ms: (ntp_from_ms(UNIX0 + ms)[0] << 32) | ntp_from_ms(UNIX0 + ms)[1]
    j.switch(0, 10, ts_a + 90 * 1000, 1000)
    j.map(10, ts_a + 90 * 1000, True, 1000)
    # SRs taken at different instants; the B frame captured at 1033 ms must land 33 ms after.
    sr_a = (ntp(500), (ts_a + 90 * 500) & 0xFFFFFFFF)
    sr_b = (ntp(800), (ts_b + 90 * 800) & 0xFFFFFFFF)
    ts_frame_b = (ts_b + 90 * 1033) & 0xFFFFFFFF
    assert j.switch(1, 5, ts_frame_b, 1033, sr_a, sr_b) == SWITCH_OK
    j.map(5, ts_frame_b, True, 1033)
    assert j.out_ts == (ts_a + 90 * 1033) & 0xFFFFFFFF


def test_joiner_fallback_without_sender_reports_uses_elapsed_time_at_least_a_frame():
    j = StreamJoiner(CLOCK, initial_seq=0)
    j.switch(0, 10, 5000, 0)
    j.map(10, 5000, True, 0)
    j.switch(1, 3, 123, 500)  # 500 ms later, no SRs
    j.map(3, 123, True, 500)
    assert j.out_ts == 5000 + 45000
    j.switch(0, 11, 999, 501)  # 1 ms later: at least one frame
    j.map(11, 999, True, 501)
    assert j.out_ts == 5000 + 45000 + TICKS


def test_joiner_too_large_backward_shift_retries_once_then_moves_forward():
    j = StreamJoiner(CLOCK, initial_seq=0)
    sr0 = (100 << 32, 0)
    sr1 = (100 << 32, 0)  # same base: stream 1's ts map 1:1
    j.switch(0, 10, 90_000, 1000)
    j.map(10, 90_000, True, 1000)
    # A stream-1 keyframe captured 500 ms earlier (a late keyframe): would go back 500 ms.
    assert j.switch(1, 5, 45_000, 1033, sr0, sr1) == SWITCH_RETRY
    assert j.layer == 0
    assert j.switch(1, 9, 45_000 + 2970, 1066, sr0, sr1) == SWITCH_OK  # second time: moved
    j.map(9, 45_000 + 2970, True, 1066)
    assert j.out_ts == 90_000 + TICKS
    # A small backward shift (< 75 ms) is applied without retry: one frame after the last.
    j = StreamJoiner(CLOCK, initial_seq=0)
    j.switch(0, 10, 90_000, 1000)
    j.map(10, 90_000, True, 1000)
    assert j.switch(1, 5, 90_000 - 40 * 90, 1033, sr0, sr1) == SWITCH_OK
    j.map(5, 90_000 - 40 * 90, True, 1033)
    assert j.out_ts == 90_000 + TICKS


def test_clamp_preferred_layers():
    assert clamp_preferred_layers(None, 3, 3) == (2, 2)
    assert clamp_preferred_layers({"spatialLayer": 9}, 3, 2) == (2, 1)
    assert clamp_preferred_layers({"spatialLayer": 0, "temporalLayer": 0}, 3, 3) == (0, 0)
    for bad in ({"spatialLayer": -1}, {"spatialLayer": "1"}, {"spatialLayer": 1, "temporalLayer": True}, [1]):
        with pytest.raises(TypeError):
            clamp_preferred_layers(bad, 3, 3)


# --- SimulcastSelector: switching state machine -------------------------------------------------------


def test_new_producer_layers_are_taken_as_they_appear():
    mon = LayerMonitor(3, 3)
    sel = SimulcastSelector(mon, clock_rate=CLOCK, temporal_layers=3, initial_seq=0)
    src = Source()
    for layer, ext, t, kf, desc in src.frame(0):
        mon.on_packet(layer, 0, len(t.data), 0)
        sel.process(t, layer, ext, kf, 0, desc, bytearray(2000))
    # the first packet (layer 0's keyframe) started the stream; each new layer moved the target
    # and, all encodings starting with a keyframe, the stream followed within the same frame
    assert sel.take_key_frame_requests() == [0, 1, 2]
    assert sel.current_spatial_layer == 2 and sel.joiner.switches == 3


def test_starts_only_on_keyframe_of_target_layer_and_requests_it():
    rig = Rig()
    rig.src.encs[2].want_kf = False  # top layer has no keyframe yet; the lower ones do
    rig.run(FRAME_MS)
    assert rig.out == [] and rig.sel.target_spatial_layer == 2
    assert rig.requests == [(0, 2)] and rig.sel.drops["waiting_keyframe"] == 2
    rig.run(6 * FRAME_MS)  # the requested keyframe came with the next frame
    assert set(rig.layers_sent()) == {2} and rig.out[0][7] == FRAME_MS
    assert rig.events[0] == (FRAME_MS, {"spatialLayer": 2, "temporalLayer": 0})
    assert rig.sel.skipped > 0


def test_temporal_layers_climb_on_layer_sync_and_stream_stays_continuous():
    rig = Rig()
    rig.run(40 * FRAME_MS)
    assert rig.sel.current_layers == {"spatialLayer": 2, "temporalLayer": 2}
    assert [e[1] for e in rig.events] == [{"spatialLayer": 2, "temporalLayer": t} for t in (0, 2)]
    assert_continuous(rig.out)
    assert rig.out[0][0] == 65530  # initial_seq, then wraps through 0
    assert any(o[0] == 0 for o in rig.out)


def test_lost_key_frame_request_is_repeated_every_second_while_the_switch_waits():
    rig = Rig()
    rig.run(10 * FRAME_MS)
    rig.sel.set_preferred_layers({"spatialLayer": 0}, rig.now)
    t0 = rig.now
    rig.sel.take_key_frame_requests()  # the PLI is lost: the source never hears of it
    rig.run(t0 + 2500)
    again = [now for now, layer in rig.requests if layer == 0]
    assert again and 1000 <= again[0] - t0 <= 1100  # asked again, and the switch then happened
    assert rig.sel.current_spatial_layer == 0 and len(again) == 1
    assert_continuous(rig.out)


def test_switch_down_and_up_with_sender_reports_keeps_seq_ts_picture_id_continuous():
    rig = Rig(srs=True)
    rig.run(30 * FRAME_MS)
    rig.sel.set_preferred_layers({"spatialLayer": 0}, rig.now)
    rig.pull(rig.now)
    assert rig.requests[-1][1] == 0
    rig.run(60 * FRAME_MS)
    rig.sel.set_preferred_layers({"spatialLayer": 1, "temporalLayer": 1}, rig.now)
    rig.run(100 * FRAME_MS)
    sent = rig.layers_sent()
    assert sent[0] == 2 and 0 in sent and sent[-1] == 1
    assert_continuous(rig.out)
    # at layer 1 with temporal target 1: no TL2 frames
    assert {o[5] for o in rig.out if o[7] > 90 * FRAME_MS} == {0, 1}
    assert rig.sel.current_layers == {"spatialLayer": 1, "temporalLayer": 1}
    assert rig.sel.joiner.switches == 3
    # picture id of layer 2 started at 0x7FF0: the output wrapped 15 bits cleanly
    assert any(o[3] < 10 for o in rig.out) and any(o[3] > 0x7FF0 for o in rig.out)


def test_switch_without_sender_reports_uses_elapsed_time():
    rig = Rig(srs=False)
    rig.run(20 * FRAME_MS)
    rig.sel.set_preferred_layers({"spatialLayer": 0}, rig.now)
    rig.run(40 * FRAME_MS)
    assert set(rig.layers_sent()) == {0, 2}
    assert_continuous(rig.out)


def test_switch_mid_frame_skips_one_seq_and_drops_older_packets_of_new_layer():
    rig = Rig(srs=True)
    rig.run(10 * FRAME_MS)
    # Only the first packet of layer 2's next frame gets through, then the switch is decided.
    now = rig.now
    packets = rig.src.frame(now)
    first_of_2 = next(p for p in packets if p[0] == 2)
    assert rig.feed(*first_of_2, now) is not None and not first_of_2[2].marker
    rig.sel.set_preferred_layers({"spatialLayer": 1}, now)
    rig.pull(now)
    rig.now += FRAME_MS
    switch_at = rig.now
    packets = rig.src.frame(switch_at)
    key = next(p for p in packets if p[0] == 1 and p[3])
    for p in packets:
        rig.feed(*p, switch_at)
    assert rig.sel.current_spatial_layer == 1
    # A packet of layer 1 older than its keyframe (reordered) is refused.
    n = len(rig.out)
    assert rig.feed(1, key[1] - 1, key[2], False, key[4], switch_at) is None
    assert rig.sel.drops["before_switch"] == 1 and len(rig.out) == n
    rig.now += FRAME_MS
    rig.run(switch_at + 10 * FRAME_MS)
    assert_continuous(rig.out, allow_seq_skip_at=(switch_at,))
    i = next(k for k, o in enumerate(rig.out) if o[2] == 1)
    assert (rig.out[i][0] - rig.out[i - 1][0]) & 0xFFFF == 2


def test_late_keyframe_needing_large_timestamp_shift_is_dropped_and_rerequested():
    rig = Rig(srs=True)
    rig.run(20 * FRAME_MS)
    rig.sel.set_preferred_layers({"spatialLayer": 0}, rig.now)

    def hook(layer, ext, t, kf, desc):
        if layer == 0 and kf and not rig.sel.drops.get("switch_timestamp_retry"):
            ts = (t.timestamp - 90 * 300) & 0xFFFFFFFF  # captured 300 ms "earlier"
            data = bytearray(t.data)
            data[4:8] = ts.to_bytes(4, "big")
            return layer, ext, Tmpl(bytes(data), ts, 12, t.marker), kf, desc
        return layer, ext, t, kf, desc

    rig.run(40 * FRAME_MS, hook=hook)
    assert rig.sel.drops["switch_timestamp_retry"] == 1
    assert [r[1] for r in rig.requests].count(0) >= 2
    assert rig.layers_sent()[-1] == 0
    assert_continuous(rig.out)


def test_layer_that_stops_is_left_and_taken_again_after_min_active_time():
    rig = Rig(srs=True)
    rig.run(1000)
    assert rig.sel.current_spatial_layer == 2
    stop = rig.now
    rig.run(stop + 3000, layers=(0, 1))  # layer 2 stops
    assert rig.sel.target_spatial_layer == 1 and rig.sel.current_spatial_layer == 1
    moved = next(now for now, layer in rig.requests if layer == 1 and now >= stop)
    assert 1500 <= moved - (stop - FRAME_MS) <= 1700  # silent for 1.5 s (+ one check)
    back = rig.now
    rig.run(back + 1900)  # layer 2 is back but young: stays at 1
    assert rig.sel.current_spatial_layer == 1 and rig.sel.target_spatial_layer == 1
    rig.run(back + 2300)
    assert rig.sel.current_spatial_layer == 2
    assert_continuous(rig.out)
    spatial_events = [e[1]["spatialLayer"] for e in rig.events if e[1] is not None]
    assert spatial_events[0] == 2 and 1 in spatial_events and spatial_events[-1] == 2


def test_all_layers_stop_target_none_then_restart():
    rig = Rig(srs=False)
    rig.run(500)
    rig.run(2500, layers=())
    assert rig.sel.target_spatial_layer == -1 and rig.sel.current_layers is None
    assert rig.events[-1][1] is None
    back = rig.now
    rig.run(back + 1000)
    # All came back at once: the lowest is taken, the others are young for 2 s.
    assert rig.sel.current_spatial_layer == 0
    rig.run(back + 2500)
    assert rig.sel.current_spatial_layer == 2
    assert_continuous(rig.out)


def test_pause_resume_restarts_on_keyframe_with_continuous_output():
    rig = Rig(srs=True)
    rig.run(500)
    n = len(rig.out)
    rig.sel.pause()
    rig.pull(rig.now)
    assert rig.events[-1][1] is None
    rig.run(1000)
    assert len(rig.out) == n
    rig.sel.resume(rig.now)
    rig.pull(rig.now)
    assert rig.requests[-1][1] == 2
    rig.run(1500)
    assert len(rig.out) > n
    assert_continuous(rig.out)


def test_bandwidth_limit_caps_layers_but_keeps_the_lowest():
    rig = Rig()
    rig.run(300)
    rig.sel.set_layer_limit(1, 0, rig.now)
    rig.run(800)
    assert rig.sel.current_layers == {"spatialLayer": 1, "temporalLayer": 0}
    rig.sel.set_layer_limit(-1, None, rig.now)  # below everything: the lowest layer stays
    rig.run(1300)
    assert rig.sel.current_spatial_layer == 0
    rig.sel.set_layer_limit(None, None, rig.now)
    rig.run(2000)
    assert rig.sel.current_layers == {"spatialLayer": 2, "temporalLayer": 2}
    assert_continuous(rig.out)


def test_preferred_temporal_layer_zero_forwards_only_tl0_with_continuous_ids():
    rig = Rig(preferred={"spatialLayer": 1, "temporalLayer": 0})
    rig.run(1000)
    assert {o[5] for o in rig.out} == {0} and set(rig.layers_sent()) == {1}
    assert_continuous(rig.out)
    assert rig.sel.drops["temporal_layer"] > 0


def test_preferred_below_target_gets_top_temporal_and_above_gets_zero():
    rig = Rig(preferred={"spatialLayer": 2, "temporalLayer": 1})
    rig.run(1800, layers=(0, 1))  # the preferred layer is not sent: take the highest below
    assert rig.sel.target_spatial_layer == 1 and rig.sel.target_temporal_layer == 2
    rig.mon.set_score(0, 0)
    rig.sel.set_preferred_layers({"spatialLayer": 0, "temporalLayer": 2}, rig.now)
    assert (rig.sel.target_spatial_layer, rig.sel.target_temporal_layer) == (1, 0)


def test_selector_rejects_bad_arguments():
    mon = LayerMonitor(2)
    with pytest.raises(TypeError):
        SimulcastSelector(object(), clock_rate=CLOCK)
    with pytest.raises(ValueError):
        SimulcastSelector(mon, clock_rate=CLOCK, spatial_layers=3)
    with pytest.raises(ValueError):
        SimulcastSelector(mon, clock_rate=0)


# --- H264 simulcast with the dependency descriptor ---------------------------------------------------


def test_h264_simulcast_temporal_filter_from_dependency_descriptor():
    from raysfu.transport.codecs.av1_dd import parse_dependency_descriptor

    from tests.unit.test_codec_av1_dd import L1T3_KEY

    key = parse_dependency_descriptor(L1T3_KEY)
    s = key[10]
    mon = LayerMonitor(1, 3)
    sel = SimulcastSelector(mon, clock_rate=CLOCK, codec="h264", temporal_layers=3,
                            preferred_layers={"spatialLayer": 0, "temporalLayer": 1}, initial_seq=0)
    # frames: key(T0), T2, T1, T2, T0, T2 with templates 0, 3, 2, 4, 1, 3
    templates = (0, 3, 2, 4, 1, 3)
    sent = []
    buf = memoryview(bytearray(2000))  # like the transports' preallocated send buffer
    for i, tpl in enumerate(templates):
        desc = key if i == 0 else parse_dependency_descriptor(bytes([0xC0 | tpl, 0, 1 + i]), s)
        data = build_rtp(102, 100 + i, 3000 * i, 0x2000, b"\x65\x00" if i == 0 else b"\x41\x00", marker=True)
        mon.on_packet(0, desc[5], len(data), 33 * i)
        n = sel.process(Tmpl(data, 3000 * i, 12, True), 0, 70000 + i, i == 0, 33 * i, desc, buf)
        if n:
            assert buf[:n] == data  # no payload rewrite for H264
            sent.append((sel.out_seq, desc[5]))
    assert sent == [(0, 0), (1, 1), (2, 0)]
    assert sel.current_layers == {"spatialLayer": 0, "temporalLayer": 1}


# --- SimulcastConsumer (actor side, fakes for producer / transport / worker) ---------------------------

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


class FakeWorker:
    def __init__(self):
        self.events = []

    def emit(self, target_id, event, data):
        self.events.append((target_id, event, data))


class FakeTransport:
    """The transport's send interface: consumers write into ``scratch`` (a preallocated buffer)
    and call ``send_scratch_rtp``."""

    def __init__(self):
        self.worker = FakeWorker()
        self.sent = []
        self.scratch = memoryview(bytearray(4096))

    def send_scratch_rtp(self, n, twcc_off):
        self.sent.append((bytes(self.scratch[:n]), twcc_off))

    def send_rtcp(self, packet):
        pass


class FakeProducer:
    def __init__(self, monitor=None, n=3):
        self.id = "p1"
        self.kind = "video"
        self.paused = False
        self.builder = TemplateBuilder(producer_ext_uris={}, router_ext_ids={URI_MID: 1, URI_TWCC: 3},
                                       mid_uri=URI_MID, twcc_uri=URI_TWCC, drop_uris=(URI_MID, URI_TWCC))
        self.template = self.builder
        if monitor is not None:
            self.layer_monitor = monitor
        self.key_frame_requests = []
        self.n = n
        self.consumable_rtp_parameters = {"encodings": [{"ssrc": 0x9000 + i} for i in range(n)]}

    def request_key_frame(self, now_ms, layer):
        self.key_frame_requests.append((now_ms, layer))

    def get_stats(self, now_ms):
        return [{"type": "inbound-rtp", "ssrc": 0x1000 + i} for i in range(self.n)]


def consumer_params(mode="L3T3", mime="video/VP8"):
    return {
        "mid": "7",
        "codecs": [
            {"mimeType": mime, "payloadType": 101, "clockRate": CLOCK,
             "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": 102, "clockRate": CLOCK, "parameters": {"apt": 101}},
        ],
        "headerExtensions": [{"uri": URI_MID, "id": 1}, {"uri": URI_TWCC, "id": 3}],
        "encodings": [{"ssrc": 5555, "rtx": {"ssrc": 5556}, "scalabilityMode": mode}],
        "rtcp": {"cname": "c"},
    }


def drive_consumer(c, producer, src, t0, t1, layers=None):
    for now in range(t0, t1, FRAME_MS):
        for layer, ext, t, kf, desc in src.frame(now, layers):
            data = t.data
            tmpl = producer.builder.build(data, parse_rtp_header(data), 101, 0x9000 + layer)
            if getattr(producer, "layer_monitor", None) is not None:
                producer.layer_monitor.on_packet(layer, max(desc[TID], 0), len(data), now)
            c.send_rtp(tmpl, ext, kf, now, layer, desc)
        for _, layer in producer.key_frame_requests:
            src.request_kf(layer)
        producer.key_frame_requests.clear()
        c.on_timer(now)


@pytest.mark.parametrize("shared_monitor", [True, False])
def test_simulcast_consumer_forwards_one_continuous_stream_with_events(shared_monitor):
    mon = LayerMonitor(3, 3) if shared_monitor else None
    producer = FakeProducer(mon)
    transport = FakeTransport()
    c = create_consumer("simulcast", consumer_id="c1", transport=transport, producer=producer,
                        rtp_parameters=consumer_params(), paused=False, app_data=None,
                        preferred_layers={"spatialLayer": 1})
    assert isinstance(c, SimulcastConsumer) and c.type == "simulcast"
    assert c.preferred_layers == {"spatialLayer": 1, "temporalLayer": 2}
    src = Source()
    for e in src.encs:
        e.want_kf = False
    drive_consumer(c, producer, src, 0, 1000)
    assert transport.sent
    seqs = []
    for data, twcc_off in transport.sent:
        hdr = parse_rtp_header(data)
        assert hdr[4] == 5555 and hdr[0] == 101
        assert data[twcc_off] >> 4 == 3
        seqs.append(hdr[2])
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    assert c.current_layers == {"spatialLayer": 1, "temporalLayer": 2}
    names = [e[1] for e in transport.worker.events]
    assert "layerschange" in names and "score" in names
    assert transport.worker.events[names.index("layerschange")][2] == {"spatialLayer": 1, "temporalLayer": 0}
    assert c.score_dict() == {"score": 10, "producerScore": 10, "producerScores": [10, 10, 10]}
    stats = c.get_stats(1000)
    assert stats[0]["type"] == "outbound-rtp" and stats[0]["ssrc"] == 5555 and stats[1]["ssrc"] == 0x1001
    d = c.dump()
    assert (d["preferredSpatialLayer"], d["targetSpatialLayer"], d["currentSpatialLayer"]) == (1, 1, 1)
    assert d["type"] == "simulcast" and d["priority"] == 1
    # NACK: the packet is resent as sent (rewritten seq / picture id), wrapped in RTX
    n = len(transport.sent)
    c.receive_nack([seqs[-1]], 1000)
    assert len(transport.sent) == n + 1
    rtx, _ = transport.sent[-1]
    hdr = parse_rtp_header(rtx)
    assert hdr[4] == 5556 and rtx[hdr[5] : hdr[5] + 2] == seqs[-1].to_bytes(2, "big")
    assert rtx[hdr[5] + 2 :] == transport.sent[-2][0][parse_rtp_header(transport.sent[-2][0])[5] :]
    assert c.next_timer_ms() == 990 + 100  # last on_timer at 990


def test_simulcast_consumer_preferred_layers_pause_priority_and_keyframe_requests():
    mon = LayerMonitor(3, 3)
    producer = FakeProducer(mon)
    transport = FakeTransport()
    c = SimulcastConsumer(consumer_id="c2", transport=transport, producer=producer,
                          rtp_parameters=consumer_params(), paused=True, app_data=None, layer_monitor=mon)
    src = Source()
    drive_consumer(c, producer, src, 0, 300)
    assert transport.sent == [] and c.current_layers is None
    c.set_paused(False, 300)
    drive_consumer(c, producer, src, 300, 800)
    assert c.current_layers["spatialLayer"] == 2
    assert c.set_preferred_layers({"spatialLayer": 0, "temporalLayer": 0}, 800) == {"spatialLayer": 0, "temporalLayer": 0}
    assert producer.key_frame_requests[-1] == (800, 0)
    drive_consumer(c, producer, src, 800, 1400)
    assert c.current_layers == {"spatialLayer": 0, "temporalLayer": 0}
    c.receive_key_frame_request("pli", 1400)
    assert producer.key_frame_requests[-1] == (1400, 0) and c.stats.pli_count == 1
    assert c.set_priority(5) == 5 and c.priority == 5 and c.dump()["priority"] == 5
    assert c.unset_priority() == 1 and c.priority == 1
    with pytest.raises(TypeError):
        c.set_priority(0)
    with pytest.raises(TypeError):
        c.set_preferred_layers({"spatialLayer": "x"}, 1400)
    c.set_producer_paused(True, 1400)
    assert transport.worker.events[-1][1:] in (("layerschange", None), ("score", c.score_dict()))
    n = len(transport.sent)
    drive_consumer(c, producer, src, 1400, 1600)
    assert len(transport.sent) == n


def test_simulcast_consumer_scores_follow_layer_inactivity():
    mon = LayerMonitor(3, 3)
    producer = FakeProducer(mon)
    transport = FakeTransport()
    c = SimulcastConsumer(consumer_id="c3", transport=transport, producer=producer,
                          rtp_parameters=consumer_params(), paused=False, app_data=None)
    src = Source()
    drive_consumer(c, producer, src, 0, 500)
    drive_consumer(c, producer, src, 500, 2500, layers=(0, 1))
    assert c.score_dict()["producerScores"] == [10, 10, 0]
    assert c.current_layers["spatialLayer"] == 1
    scores = [e[2] for e in transport.worker.events if e[1] == "score"]
    assert scores[-1]["producerScores"] == [10, 10, 0]


def test_create_consumer_picks_the_class():
    mon = LayerMonitor(2, 3)
    producer = FakeProducer(mon, n=1)
    kw = dict(consumer_id="x", transport=FakeTransport(), producer=producer, paused=False, app_data=None)
    assert type(create_consumer("simple", rtp_parameters=consumer_params("L1T1"), preferred_layers=None, **kw)) is Consumer
    svc = create_consumer("svc", rtp_parameters=consumer_params("L2T3", "video/VP9"), **kw)
    assert isinstance(svc, SvcConsumer) and svc.type == "svc"
    with pytest.raises(ValueError):
        create_consumer("pipe", rtp_parameters=consumer_params(), **kw)
