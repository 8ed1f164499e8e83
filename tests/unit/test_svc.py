"""SVC engine (SvcSelector with VP9 full SVC / K-SVC, DDLayerFilter with the AV1 dependency
descriptor), PacketLayerReader / DependencyDescriptorTracker, and SvcConsumer.

VP9 packets are built (one packet per layer frame, temporal pattern T0 T2 T1 T2); AV1 uses the
template structure of a captured Chrome L3T3 keyframe (its 15 templates replayed in Chrome's
order) and a hand-built L2T1_KEY structure for K-SVC.
"""

from __future__ import annotations

import pytest
from raysfu.actors.simulcast_consumer import SvcConsumer
from raysfu.transport.codecs.av1_dd import (
    DTI_NOT_PRESENT,
    DTI_REQUIRED,
    DTI_SWITCH,
    DependencyStructure,
    parse_dependency_descriptor,
)
from raysfu.transport.codecs.vp9 import SID, TID, parse_vp9_descriptor
from raysfu.transport.layers import (
    DDLayerFilter,
    DependencyDescriptorTracker,
    LayerMonitor,
    PacketLayerReader,
)
from raysfu.transport.rtp import build_rtp, parse_rtp_header
from raysfu.transport.seq import SeqUnwrapper
from raysfu.transport.simulcast import SvcSelector

from tests.unit.test_codec_av1_dd import L1T3_KEY
from tests.unit.test_codec_vp8 import vp8
from tests.unit.test_codec_vp9 import vp9
from tests.unit.test_simulcast import (
    FRAME_MS,
    FakeProducer,
    FakeTransport,
    Tmpl,
    consumer_params,
)

TID_PATTERN = (0, 2, 1, 2)
U_PATTERN = (0, 1, 1, 0)

L3T3_KEY = bytes.fromhex(
    "c1017280081485214eafffaaaa863cf0430c10c302afc0aaa0063c00430010c002a000a80006000040001d9549"
    "26e082b04a0941b820ac1282503157f974000ca864330e222222eca8655304224230eca877530077004200ef00"
    "8601df010d"
)
# Chrome L3T3: templates per spatial layer for the key TU and the four TU phases.
L3T3_TEMPLATES = {"key": (1, 6, 11), 0: (0, 5, 10), 1: (3, 8, 13), 2: (2, 7, 12), 3: (4, 9, 14)}


def dd(structure, k, fn, sof=True, eof=True, active=None, new=False):
    """A dependency descriptor tuple for template index ``k`` (what the parser returns)."""
    s = structure
    return (sof, eof, (k + s.template_id_offset) % 64, fn & 0xFFFF, s.template_spatial_ids[k],
            s.template_temporal_ids[k], s.template_dtis[k], s.template_fdiffs[k],
            s.template_chain_fdiffs[k], active, s, new)


# --- VP9 source ------------------------------------------------------------------------------------


class Vp9Source:
    """One VP9 SVC stream: ``spatial`` layers, one packet per layer frame, keyframe on request."""

    def __init__(self, spatial=3, ksvc=False, seq0=65000, pid0=0x7FFA):
        self.spatial, self.ksvc = spatial, ksvc
        self.seq, self.pid, self.tl0 = seq0, pid0, 0
        self.unwrap = SeqUnwrapper()
        self.u = 0
        self.want_kf = True
        self.live = spatial  # spatial layers sent

    def tu(self, now_ms):
        key = self.want_kf
        self.want_kf = False
        if key:
            self.u = 0
        phase = self.u % 4
        tid, up = TID_PATTERN[phase], U_PATTERN[phase]
        if tid == 0 and (self.u or not key):
            self.tl0 = (self.tl0 + 1) & 0xFF
        ts = (5000 + now_ms * 90) & 0xFFFFFFFF
        out = []
        for sid in range(self.live):
            inter_layer = sid > 0 and (key or not self.ksvc)
            ss = (tuple((320 << i, 180 << i) for i in range(self.spatial)), None) if key and sid == 0 else None
            payload = vp9(picture_id=self.pid, p=0 if key else 1, b=1, e=1, tid=tid, u=up, sid=sid,
                          d=int(inter_layer), tl0=self.tl0, ss=ss)
            last = sid == self.live - 1
            data = build_rtp(98, self.seq & 0xFFFF, ts, 0x3000, payload, marker=last)
            ext = self.unwrap.unwrap(self.seq & 0xFFFF)
            self.seq += 1
            desc = parse_vp9_descriptor(data, 12, len(data))
            out.append((ext, Tmpl(data, ts, 12, last), key and sid == 0, desc))
        self.pid = (self.pid + 1) & 0x7FFF
        self.u += 1
        return out


class SvcRig:
    def __init__(self, codec="vp9", spatial=3, temporal=3, ksvc=False, preferred=None):
        self.mon = LayerMonitor(spatial, temporal)
        self.sel = SvcSelector(self.mon, codec=codec, spatial_layers=spatial, temporal_layers=temporal,
                               ksvc=ksvc, preferred_layers=preferred, initial_seq=65534)
        for sid in range(spatial):  # the producer was already sending when this consumer came
            self.mon.on_packet(sid, 0, 0, 0)
        self.out = []  # (out_seq, sid, tid, marker_out, now)
        self.events, self.requests = [], []
        self.buf = bytearray(4096)
        self.now = 0

    def feed(self, ext, t, kf, desc, sid, tid, now):
        self.mon.on_packet(sid, tid, len(t.data), now)
        n = self.sel.process(t, ext, kf, now, desc, self.buf)
        self.pull(now)
        if not n:
            return None
        self.out.append((self.sel.out_seq, sid, tid, bool(self.buf[1] & 0x80), now))
        return bytes(self.buf[:n])

    def pull(self, now):
        self.requests += [(now, layer) for layer in self.sel.take_key_frame_requests()]
        if self.sel.layers_changed:
            self.sel.layers_changed = False
            self.events.append((now, self.sel.current_layers))


def run_vp9(rig, src, until):
    while rig.now < until:
        now = rig.now
        for ext, t, kf, desc in src.tu(now):
            rig.feed(ext, t, kf, desc, max(desc[SID], 0), max(desc[TID], 0), now)
        rig.sel.update(now)
        rig.pull(now)
        if rig.requests and rig.requests[-1][0] == now:
            src.want_kf = True
        rig.now += FRAME_MS


def seq_continuous(out):
    return all(((b[0] - a[0]) & 0xFFFF) == 1 for a, b in zip(out, out[1:]))


# --- VP9 -----------------------------------------------------------------------------------------


def test_vp9_full_svc_forwards_target_layers_sets_marker_and_keeps_seq_continuous():
    rig, src = SvcRig(preferred={"spatialLayer": 1, "temporalLayer": 1}), Vp9Source()
    src.want_kf = False
    run_vp9(rig, src, FRAME_MS)
    assert rig.out == [] and set(rig.requests) == {(0, 0)}  # nothing before a keyframe; asked
    run_vp9(rig, src, 40 * FRAME_MS)
    assert {o[1] for o in rig.out} == {0, 1} and {o[2] for o in rig.out} == {0, 1}
    assert all(o[3] == (o[1] == 1) for o in rig.out)  # marker on the top forwarded layer only
    assert seq_continuous(rig.out) and rig.out[0][0] == 65534
    assert rig.sel.current_layers == {"spatialLayer": 1, "temporalLayer": 1}
    assert rig.events[0][1] == {"spatialLayer": 1, "temporalLayer": 0}
    assert rig.sel.drops["layer"] > 0


def test_vp9_spatial_up_needs_keyframe_down_is_immediate_in_full_svc():
    rig, src = SvcRig(preferred={"spatialLayer": 0}), Vp9Source()
    run_vp9(rig, src, 10 * FRAME_MS)
    assert {o[1] for o in rig.out} == {0}
    rig.sel.set_preferred_layers({"spatialLayer": 2}, rig.now)
    rig.pull(rig.now)
    assert rig.requests[-1] == (rig.now, 0)
    t_up = rig.now
    src.want_kf = True
    run_vp9(rig, src, 20 * FRAME_MS)
    assert {o[1] for o in rig.out if o[4] >= t_up} == {0, 1, 2}
    n_req = len(rig.requests)
    rig.sel.set_preferred_layers({"spatialLayer": 1, "temporalLayer": 2}, rig.now)
    t_down = rig.now
    run_vp9(rig, src, 32 * FRAME_MS)
    assert len(rig.requests) == n_req  # no keyframe needed to go down in full SVC
    # applied at the next TL0 picture (<= 3 TUs later): S1 complete, S2 no longer sent
    assert {o[1] for o in rig.out if o[4] > t_down + 3 * FRAME_MS} == {0, 1}
    down_tus = {}
    for o in rig.out:
        if o[4] >= t_down:
            down_tus.setdefault(o[4], []).append(o[1])
    assert all(tu in ([0, 1, 2], [0, 1]) for tu in down_tus.values()), down_tus
    assert seq_continuous(rig.out)


def test_vp9_ksvc_forwards_only_the_target_layer_between_keyframes_and_down_needs_keyframe():
    rig, src = SvcRig(ksvc=True, preferred={"spatialLayer": 1}), Vp9Source(ksvc=True)
    run_vp9(rig, src, 12 * FRAME_MS)
    key_tu = [o for o in rig.out if o[4] == 0]
    assert [o[1] for o in key_tu] == [0, 1]  # the keyframe TU: base and target layer
    assert {o[1] for o in rig.out if o[4] > FRAME_MS} == {1}  # (the start asked one more keyframe)
    rig.sel.set_preferred_layers({"spatialLayer": 0}, rig.now)
    rig.pull(rig.now)
    assert rig.requests[-1] == (rig.now, 0)  # K-SVC: a spatial change waits for a keyframe
    assert seq_continuous(rig.out)


def test_vp9_spatial_layer_that_stops_is_left():
    rig, src = SvcRig(), Vp9Source()
    run_vp9(rig, src, 500)
    assert rig.sel.current_spatial_layer == 2
    src.live = 2  # the encoder drops its top layer (e.g. CPU adaptation)
    run_vp9(rig, src, 2600)
    assert rig.sel.target_spatial_layer == 1 and rig.sel.current_spatial_layer == 1
    assert rig.events[-1][1]["spatialLayer"] == 1
    marked = [o for o in rig.out if o[3]]
    assert marked[-1][1] == 1  # the marker moved down with it
    assert seq_continuous(rig.out)


def test_svc_pause_resume_restarts_on_keyframe():
    rig, src = SvcRig(), Vp9Source()
    run_vp9(rig, src, 300)
    n = len(rig.out)
    rig.sel.pause()
    rig.pull(rig.now)
    assert rig.events[-1][1] is None and rig.sel.current_layers is None
    run_vp9(rig, src, 600)
    assert len(rig.out) == n
    rig.sel.resume(rig.now)
    rig.pull(rig.now)
    assert rig.requests[-1] == (rig.now, 0)
    src.want_kf = True
    run_vp9(rig, src, 900)
    assert len(rig.out) > n and seq_continuous(rig.out)


def test_svc_selector_rejects_bad_arguments():
    with pytest.raises(ValueError):
        SvcSelector(LayerMonitor(2), spatial_layers=3)
    with pytest.raises(TypeError):
        SvcSelector(None)


# --- AV1 dependency descriptor ------------------------------------------------------------------


def av1_stream(structure, n_tu, fn0=370, key_at=(0,)):
    """Chrome's L3T3 frame sequence: [(tu, sid, desc)], keyframes at the given TUs."""
    fn = fn0
    phase = 0
    out = []
    for u in range(n_tu):
        key = u in key_at
        if key:
            phase = 0
            templates = L3T3_TEMPLATES["key"]
        else:
            phase += 1
            templates = L3T3_TEMPLATES[phase % 4]
        for sid, k in enumerate(templates):
            out.append((u, sid, dd(structure, k, fn, new=key and sid == 0, active=(0x1FF if key and sid == 0 else None))))
            fn += 1
    return out


def l3t3_structure():
    return parse_dependency_descriptor(L3T3_KEY)[10]


def forwarded(filt, stream):
    out = []
    for u, sid, desc in stream:
        fwd, marker = filt.process(desc)
        if fwd:
            out.append((u, sid, desc[5], marker))
    return out


def test_dd_filter_l3t3_forwards_the_decode_target_frames_only():
    s = l3t3_structure()
    f = DDLayerFilter(1, 1)  # S1T1: decode target 4
    out = forwarded(f, av1_stream(s, 12))
    assert {(o[1], o[2]) for o in out} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(o[3] == (o[1] == 1) for o in out)  # marker at the end of the S1 frame
    assert (f.current_spatial_layer, f.current_temporal_layer) == (1, 1)
    # TU phases: T0 (0), T2 (1), T1 (2), T2 (3): every TU but the T2 ones has two frames
    assert [u for u, *_ in out].count(1) == 0 and [u for u, *_ in out].count(2) == 2


def test_dd_filter_waits_for_a_switch_frame_and_temporal_up_at_switch_point():
    s = l3t3_structure()
    stream = av1_stream(s, 12)
    f = DDLayerFilter(1, 0)
    assert forwarded(f, stream[3:]) == []  # joined after the keyframe: nothing decodable
    f = DDLayerFilter(1, 0)
    out = forwarded(f, stream[:15])  # key TU + 4 TUs at S1T0
    assert {(o[1], o[2]) for o in out} == {(0, 0), (1, 0)}
    f.target_temporal_layer = 2
    out = forwarded(f, stream[15:])
    # the next T0 frames carry the switch indication: up to T2 from there on
    assert {o[2] for o in out} == {0, 1, 2} and out[0][2] == 0
    assert (f.current_spatial_layer, f.current_temporal_layer) == (1, 2)


def test_dd_filter_spatial_up_needs_keyframe_down_switches_at_next_frame():
    s = l3t3_structure()
    stream = av1_stream(s, 20, key_at=(0, 10))
    f = DDLayerFilter(0, 2)
    out = forwarded(f, stream[:15])
    f.target_spatial_layer = 2
    out += forwarded(f, stream[15:30])  # S2 frames reference earlier S2 frames: no switch
    assert {o[1] for o in out} == {0}
    out = forwarded(f, stream[30:45])  # TU 10 is a keyframe
    assert {o[1] for o in out} == {0, 1, 2} and f.current_spatial_layer == 2
    f.target_spatial_layer = 0
    out = forwarded(f, stream[45:])
    assert {o[1] for o in out[3:]} == {0}


def test_dd_filter_ksvc_down_switch_waits_for_keyframe():
    # L2T1_KEY: decode target 0 = S0, 1 = S1; S1 depends on S0 only in the keyframe.
    S, N = DTI_SWITCH, DTI_NOT_PRESENT
    s = DependencyStructure(
        0, 2, (0, 1, 0, 1), (0, 0, 0, 0), ((S, S), (N, S), (S, N), (N, S)), ((), (1,), (2,), (2,)),
        num_chains=2, decode_target_protected_by_chain=(0, 1),
        template_chain_fdiffs=((0, 0), (1, 1), (2, 1), (1, 2)),
    )
    frames = []
    fn = 10
    for u in range(8):
        key = u in (0, 5)
        for k in ((0, 1) if key else (2, 3)):
            frames.append((u, s.template_spatial_ids[k], dd(s, k, fn)))
            fn += 1
    f = DDLayerFilter(1, 0)
    out = forwarded(f, frames[:6])
    assert [(o[0], o[1]) for o in out] == [(0, 0), (0, 1), (1, 1), (2, 1)]
    f.target_spatial_layer = 0
    out = forwarded(f, frames[6:])
    # S0 delta frames reference S0 frames this consumer never got: wait for the keyframe (TU 5)
    assert [(o[0], o[1]) for o in out] == [(3, 1), (4, 1), (5, 0), (6, 0), (7, 0)]


def test_dd_filter_inactive_decode_targets_and_non_first_packets():
    s = l3t3_structure()
    f = DDLayerFilter(2, 2)
    key = dd(s, 1, 100, active=0b000111111, new=True)  # top spatial layer inactive
    assert f.process(key)[0] and f.current_spatial_layer == 1
    mid = dd(s, 6, 101, sof=False, eof=False)  # S1 key frame, first packet lost
    assert f.process(mid) == (True, False)
    first = dd(s, 6, 101, eof=False)
    last = dd(s, 6, 101, sof=False)
    assert f.process(first) == (True, False) and f.process(last) == (True, True)
    assert f.process(dd(s, 11, 102)) == (False, False)  # S2: not in the decode target
    assert f.chain_breaks == 0


def test_tracker_and_layer_reader():
    t = DependencyDescriptorTracker()
    assert t.parse(bytes([0x80, 0, 1])) is None and t.errors == 1  # no structure yet
    d = t.parse(L1T3_KEY)
    assert d is not None and t.structure is d[10] and t.active_decode_targets == 0b111
    assert t.parse(bytes([0x03, 0x00, 0x02]))[5] == 2
    r = PacketLayerReader("video/AV1")
    assert r.kind == "dd" and r.read(b"\x00", 0, 1) is None
    assert r.read(b"\x00", 0, 1, L3T3_KEY)[4] == 0 and r.spatial_layer == 0
    r.read(b"\x00", 0, 1, bytes([0xC0 | 11, 0x01, 0x74]))  # template 11: S2 T0
    assert (r.spatial_layer, r.temporal_layer) == (2, 0)
    r8 = PacketLayerReader("vp8")
    p = vp8(picture_id=5, tl0=1, tid=2, y=1)
    assert r8.read(p, 0, len(p))[4] == 5 and r8.temporal_layer == 2
    assert r8.read(b"\x80", 0, 1) is None and r8.errors == 1
    r9 = PacketLayerReader("VP9")
    p = vp9(picture_id=9, tid=1, sid=2, tl0=3)
    assert r9.read(p, 0, len(p))[8] == 9 and (r9.spatial_layer, r9.temporal_layer) == (2, 1)
    with pytest.raises(ValueError):
        PacketLayerReader("")


def test_av1_svc_selector_with_dependency_descriptor():
    s = l3t3_structure()
    rig = SvcRig(codec="av1", preferred={"spatialLayer": 1, "temporalLayer": 2})
    unwrap = SeqUnwrapper()
    seq = 100
    for u, sid, desc in av1_stream(s, 16):
        data = build_rtp(45, seq, 90 * 33 * u, 0x4000, b"\x08\x00" if desc[11] else b"\x00\x00", marker=sid == 2)
        rig.feed(unwrap.unwrap(seq), Tmpl(data, 90 * 33 * u, 12, sid == 2), bool(desc[11]), desc, sid, desc[5], 33 * u)
        seq += 1
    assert {(o[1], o[2]) for o in rig.out} == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}
    assert all(o[3] == (o[1] == 1) for o in rig.out) and seq_continuous(rig.out)
    # a packet without a dependency descriptor cannot be placed: dropped, counted
    assert rig.sel.process(Tmpl(data, 0, 12, False), unwrap.unwrap(seq), False, 600, None, rig.buf) == 0
    assert rig.sel.drops["no_dependency_descriptor"] == 1


# --- SvcConsumer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_monitor", [True, False])
def test_svc_consumer_vp9(shared_monitor):
    mon = LayerMonitor(3, 3) if shared_monitor else None
    producer = FakeProducer(mon, n=1)
    transport = FakeTransport()
    c = SvcConsumer(consumer_id="s1", transport=transport, producer=producer,
                    rtp_parameters=consumer_params("L3T3", "video/VP9"), paused=False, app_data=None,
                    preferred_layers={"spatialLayer": 1, "temporalLayer": 2})
    src = Vp9Source()
    src.want_kf = False
    for now in range(0, 1000, FRAME_MS):
        for ext, t, kf, desc in src.tu(now):
            tmpl = producer.builder.build(t.data, parse_rtp_header(t.data), 101, 0x9000)
            if shared_monitor:
                mon.on_packet(max(desc[SID], 0), max(desc[TID], 0), len(t.data), now)
            c.send_rtp(tmpl, ext, kf, now, 0, desc if shared_monitor else None)
        if producer.key_frame_requests:
            producer.key_frame_requests.clear()
            src.want_kf = True
        c.on_timer(now)
    seqs, markers = [], []
    for data, _ in transport.sent:
        hdr = parse_rtp_header(data)
        assert hdr[4] == 5555
        seqs.append(hdr[2])
        d = parse_vp9_descriptor(data, hdr[5], hdr[9])
        assert d[SID] <= 1
        markers.append((d[SID], hdr[1]))
    assert seqs and all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    assert all(m == (sid == 1) for sid, m in markers)
    assert c.current_layers == {"spatialLayer": 1, "temporalLayer": 2}
    assert c.score_dict() == {"score": 10, "producerScore": 10, "producerScores": [10]}
    names = [e[1] for e in transport.worker.events]
    assert "layerschange" in names and "score" in names
    assert c.get_stats(1000)[1]["ssrc"] == 0x1000
    assert c.dump()["currentSpatialLayer"] == 1
    assert DTI_REQUIRED == 3  # (imported for readers of the DTI tables above)


# -- the dependency descriptor forwarded whole (two-byte template for long values) ------------

URI_DD = "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
URI_ORIENT = "urn:3gpp:video-orientation"


def _dd_builder():
    from raysfu.transport.layers import LongExtTemplateBuilder
    from tests.unit.test_simulcast import URI_MID, URI_TWCC

    # producer ids: mid 4, dd 12, orientation 13; router ids: mid 1, twcc 3, dd 8, orientation 11
    return LongExtTemplateBuilder(
        producer_ext_uris={4: URI_MID, 12: URI_DD, 13: URI_ORIENT},
        router_ext_ids={URI_MID: 1, URI_TWCC: 3, URI_DD: 8, URI_ORIENT: 11},
        mid_uri=URI_MID, twcc_uri=URI_TWCC, drop_uris=(URI_MID, URI_TWCC),
    )


def test_long_extension_template_two_byte_form_and_short_values_one_byte():
    from raysfu.transport.layers import is_two_byte_template
    from raysfu.transport.rtp import find_extension

    assert len(L1T3_KEY) > 16
    builder = _dd_builder()
    payload = b"\x10" + bytes(40)
    raw = build_rtp(96, 7, 9000, 0x1234, payload, marker=True, two_byte=True, padding=4,
                    extensions=[(4, b"1"), (12, L1T3_KEY), (13, b"\x01")])
    t = builder.build(raw, parse_rtp_header(raw), 101, 0x9000)
    assert is_two_byte_template(t.data)
    hdr = parse_rtp_header(t.data)
    assert hdr[0] == 101 and hdr[1] and hdr[2] == 7 and hdr[3] == 9000 and hdr[4] == 0x9000
    assert hdr[6] == 0x1000
    assert bytes(t.data[hdr[5]:hdr[9]]) == payload and t.payload_off == hdr[5]
    off, length = find_extension(t.data, hdr[6], hdr[7], hdr[8], 8)
    assert bytes(t.data[off:off + length]) == L1T3_KEY
    assert find_extension(t.data, hdr[6], hdr[7], hdr[8], 11) is not None
    assert find_extension(t.data, hdr[6], hdr[7], hdr[8], 4) is None  # the producer's mid is dropped
    assert t.data[t.mid_off:t.mid_off + 10] == bytes(10) and t.data[t.twcc_off - 1:t.twcc_off + 3] == bytes(4)
    assert sorted(e[0] for e in t.exts) == [8, 11]
    # a short descriptor (or one-byte input) keeps the usual one-byte template
    short = L1T3_KEY[:3]
    for two in (True, False):
        raw = build_rtp(96, 8, 9000, 0x1234, payload, two_byte=two, extensions=[(12, short)])
        t = builder.build(raw, parse_rtp_header(raw), 101, 0x9000)
        assert not is_two_byte_template(t.data)
        hdr = parse_rtp_header(t.data)
        assert hdr[6] == 0xBEDE
        off, length = find_extension(t.data, hdr[6], hdr[7], hdr[8], 8)
        assert bytes(t.data[off:off + length]) == short


def test_svc_consumer_forwards_long_dependency_descriptor_with_mid_and_twcc():
    from raysfu.transport.rtp import find_extension

    from tests.unit.test_simulcast import URI_MID, URI_TWCC

    producer = FakeProducer(LayerMonitor(1, 3), n=1)
    producer.builder = producer.template = _dd_builder()
    transport = FakeTransport()
    params = consumer_params("L1T3", "video/AV1")
    params["headerExtensions"] = [{"uri": URI_MID, "id": 1}, {"uri": URI_TWCC, "id": 3}, {"uri": URI_DD, "id": 8}]
    c = SvcConsumer(consumer_id="a1", transport=transport, producer=producer, rtp_parameters=params,
                    paused=False, app_data=None, preferred_layers={"spatialLayer": 0, "temporalLayer": 0})
    tracker = DependencyDescriptorTracker()
    structure = parse_dependency_descriptor(L1T3_KEY, None)[10]
    sent_dd = []
    # keyframe (template 0, long descriptor), then T2 (template 3), T1 (2), T2 (4), T0 (1)
    assert structure.template_id_offset == 0
    frames = [(L1T3_KEY, True)] + [(bytes((0xC0 | k, 0, fn)), False) for fn, k in ((2, 3), (3, 2), (4, 4), (5, 1))]
    for i, (value, key) in enumerate(frames):
        raw = build_rtp(96, 100 + i, 3000 * i, 0x1234, b"\x10" + bytes(20), marker=True, two_byte=True,
                        extensions=[(12, value), (13, b"\x02")])
        hdr = parse_rtp_header(raw)
        desc = tracker.parse(value)
        producer.layer_monitor.on_packet(desc[4], desc[5], len(raw), i * 33)
        c.send_rtp(producer.template.build(raw, hdr, 101, 0x9000), 100 + i, key, i * 33, 0, desc)
    assert len(transport.sent) == 2  # the keyframe and the T0 frame: temporal layer 0 only
    seqs = []
    for data, twcc_off in transport.sent:
        hdr = parse_rtp_header(data)
        seqs.append(hdr[2])
        off, length = find_extension(data, hdr[6], hdr[7], hdr[8], 1)
        assert bytes(data[off:off + length]) == b"7"  # the consumer's mid, in either form
        off, length = find_extension(data, hdr[6], hdr[7], hdr[8], 3)
        assert length == 2 and off == twcc_off + 1  # twcc element in place for the transport
        assert find_extension(data, hdr[6], hdr[7], hdr[8], 11) is None  # not negotiated: padding
        off, length = find_extension(data, hdr[6], hdr[7], hdr[8], 8)
        sent_dd.append(bytes(data[off:off + length]))
    assert sent_dd == [L1T3_KEY, frames[-1][0]]
    assert parse_rtp_header(transport.sent[0][0])[6] == 0x1000
    assert ((seqs[1] - seqs[0]) & 0xFFFF) == 1
    assert c.current_layers == {"spatialLayer": 0, "temporalLayer": 0}
