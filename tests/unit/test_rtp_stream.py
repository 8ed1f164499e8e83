"""Per-stream stats: loss, jitter, report blocks, SR NTP/RTP mapping, RTT, stats dicts."""

import pytest

from raysfu.transport.rtcp import build_rr, build_sr, ntp_from_ms, ntp_middle32, parse_rtcp
from raysfu.transport.rtp_stream import RateCalculator, RecvStreamStats, SendStreamStats
from raysfu.transport.seq import SeqUnwrapper

BASE = 65536


def recv(clock_rate=90000):
    return RecvStreamStats(0x1234, clock_rate, "video", "video/VP8")


def test_loss_and_fraction_lost_by_hand():
    st = recv()
    for s in range(10):
        if s not in (3, 7):
            assert st.on_packet(BASE + s, s * 3000, 1000, s * 33)
    ssrc, fraction, lost, highest, jitter, lsr, dlsr = st.build_report_block(400)
    assert ssrc == 0x1234
    assert lost == 2
    assert fraction == 2 * 256 // 10  # 51
    assert highest == 9
    assert (lsr, dlsr) == (0, 0)
    # Next interval: no loss, fraction back to 0, cumulative stays.
    for s in range(10, 20):
        st.on_packet(BASE + s, s * 3000, 1000, s * 33)
    block = st.build_report_block(800)
    assert block[1] == 0 and block[2] == 2 and block[3] == 19
    # The late packet 3 arrives: cumulative loss goes down, fraction can't go below 0.
    st.on_packet(BASE + 3, 9000, 1000, 900)
    block = st.build_report_block(900)
    assert block[1] == 0 and block[2] == 1
    assert st.packets_lost == 1


def test_duplicates_make_lost_negative_per_rfc():
    st = recv()
    for s in (0, 1, 1, 2):
        st.on_packet(BASE + s, 0, 100, 0)
    assert st.build_report_block(0)[2] == -1


def test_ext_highest_seq_across_wrap():
    st = recv()
    u = SeqUnwrapper()
    for s in (65534, 65535, 0, 1, 2):
        st.on_packet(u.unwrap(s), 0, 100, 0)
    assert st.build_report_block(0)[3] == (1 << 16) | 2
    assert st.packets_lost == 0


def test_jitter_by_hand():
    st = recv(90000)
    # 20 ms frames: RTP +1800, arrival +20 ms -> constant transit, jitter 0.
    for i in range(5):
        st.on_packet(BASE + i, 1800 * i, 500, 1000 + 20 * i)
    assert st.jitter == 0
    # Packet 5 arrives 10 ms late (900 RTP units).
    st.on_packet(BASE + 5, 1800 * 5, 500, 1000 + 20 * 5 + 10)
    assert st.jitter == pytest.approx(900 / 16)
    # Packet 6 on time: |D| = 900 again.
    st.on_packet(BASE + 6, 1800 * 6, 500, 1000 + 20 * 6)
    j = 900 / 16
    j += (900 - j) / 16
    assert st.jitter == pytest.approx(j)
    st.on_packet(BASE + 7, 1800 * 7, 500, 1000 + 20 * 7)
    j -= j / 16
    assert st.jitter == pytest.approx(j)
    assert st.build_report_block(2000)[4] == int(j)


def test_jitter_with_rtp_timestamp_wrap():
    st = recv(48000)
    ts0 = 0xFFFFFFFF - 959
    for i in range(4):  # 20 ms Opus frames crossing 2**32
        st.on_packet(BASE + i, (ts0 + 960 * i) & 0xFFFFFFFF, 100, 20 * i)
    assert st.jitter == 0


def test_big_seq_jump_discarded_then_resynced():
    st = recv()
    for s in range(5):
        st.on_packet(BASE + s, 0, 100, 0)
    assert st.on_packet(BASE + 10000, 0, 100, 0) is False
    assert st.packets_discarded == 1
    assert st.on_packet(BASE + 10001, 0, 100, 0) is True  # sequential: sender restarted
    assert st.resync_count == 1
    assert st.on_packet(BASE + 10002, 0, 100, 0) is True
    assert st.build_report_block(0)[2] == 0
    # Too old (beyond misorder) is discarded too.
    assert st.on_packet(BASE + 10002 - 2000, 0, 100, 0) is False


def test_sr_gives_lsr_and_dlsr():
    st = recv()
    st.on_packet(BASE, 0, 100, 0)
    sec, frac = ntp_from_ms(1_700_000_000_123)
    st.on_sr(sec, frac, 555, now_ms=1000)
    block = st.build_report_block(1500)
    assert block[5] == ntp_middle32(sec, frac)
    assert block[6] == 32768  # 0.5 s in 1/65536 s
    assert st.last_sr_rtp_ts == 555


def test_rtx_and_counters_in_stats():
    st = RecvStreamStats(1, 90000, "video", "video/VP8", rid="h", rtx_ssrc=2)
    st.on_packet(BASE + 0, 0, 1200, 0)
    st.on_packet(BASE + 2, 0, 1200, 10)
    assert st.on_rtx_packet(BASE + 1, 1200, 50, repaired=True)
    st.on_nack_sent(1)
    st.pli_count += 1
    st.on_packet(BASE + 3, 0, 40, 60, padding_only=True)
    stats = st.to_stats(100)
    assert stats["type"] == "inbound-rtp"
    assert stats["packetCount"] == 3 and stats["byteCount"] == 3600
    assert stats["packetsRetransmitted"] == 1 and stats["packetsRepaired"] == 1
    assert stats["nackCount"] == 1 and stats["nackPacketCount"] == 1 and stats["pliCount"] == 1
    assert stats["bitrate"] == 3600 * 8
    assert stats["rid"] == "h" and stats["rtxSsrc"] == 2
    assert stats["bitrateByLayer"] == {}
    assert "roundTripTime" not in stats
    for key in ("timestamp", "ssrc", "kind", "mimeType", "packetsLost", "fractionLost",
                "packetsDiscarded", "firCount", "score", "jitter"):
        assert key in stats
    # The repaired packet is not "received" for loss: 1 of 4 expected was lost on the wire.
    assert stats["packetsLost"] == 1


def test_recv_score_from_interval_loss():
    st = recv()
    for s in range(100):
        st.on_packet(BASE + s, 0, 100, 0)
    st.on_sr(1, 2, 3, 0)
    assert st.score == 10
    for s in range(100, 200):
        if s % 2:
            st.on_packet(BASE + s, 0, 100, 0)
    st.on_sr(1, 2, 3, 0)
    # Interval delivered 50%: 0.5**4 * 10 -> 1; weighted with the earlier 10: (10 + 2*1)/3 = 4.
    assert st.score == 4
    st.reset_score(0)
    assert st.score == 0


def test_send_sr_ntp_rtp_mapping():
    st = SendStreamStats(0x99, 90000, "video", "video/VP8")
    assert st.build_sr(0, 1_700_000_000_000) is None  # nothing sent yet
    st.on_packet(1000, 1200, now_ms=0)
    st.on_packet(2800, 1200, now_ms=20)
    st.on_packet(1000, 1200, now_ms=25)  # an older timestamp does not move the reference
    unix = 1_700_000_000_000
    ssrc, sec, frac, rtp_ts, packets, octets = st.build_sr(now_ms=520, unix_ms=unix)
    assert (ssrc, packets, octets) == (0x99, 3, 3600)
    assert (sec, frac) == ntp_from_ms(unix)
    assert rtp_ts == 2800 + 500 * 90
    # Round trip through the wire format.
    assert parse_rtcp(build_sr(*st.build_sr(520, unix)))[0][4] == 47800


def test_send_sr_rtp_timestamp_wraps():
    st = SendStreamStats(1, 48000, "audio", "audio/opus")
    st.on_packet(0xFFFFFF00, 100, now_ms=0)
    assert st.build_sr(now_ms=1000, unix_ms=5_000_000)[3] == (0xFFFFFF00 + 48000) & 0xFFFFFFFF


def test_rtt_from_lsr_dlsr_end_to_end():
    # Sender (our consumer side) and receiver have unrelated monotonic clocks.
    sender = SendStreamStats(0x99, 90000, "video", "video/VP8")
    receiver = RecvStreamStats(0x99, 90000, "video", "video/VP8")
    for i in range(10):
        sender.on_packet(1800 * i, 1000, now_ms=10_000 + 20 * i)
        receiver.on_packet(BASE + i, 1800 * i, 1000, now_ms=500 + 20 * i)
    one_way = 40  # ms each way
    sr_sent = 10_300
    item = parse_rtcp(build_sr(*sender.build_sr(sr_sent, 1_700_000_000_000 + sr_sent)))[0]
    receiver.on_sr(item[2], item[3], item[4], now_ms=800 + one_way)
    held = 250
    block = receiver.build_report_block(800 + one_way + held)
    (rr,) = parse_rtcp(build_rr(1, [block]))
    rtt = sender.on_rr_block(rr[2][0], now_ms=sr_sent + one_way + held + one_way)
    assert rtt == pytest.approx(2 * one_way, abs=0.1)
    assert sender.round_trip_time_ms == rtt
    assert sender.to_stats(11_000)["roundTripTime"] == rtt


def test_rr_without_lsr_gives_no_rtt_and_negative_clamps_to_zero():
    st = SendStreamStats(1, 90000)
    st.on_packet(0, 100, 0)
    assert st.on_rr_block((1, 0, 0, 0, 0, 0, 0), 100) is None
    sr = st.build_sr(1000, 2_000_000)
    lsr = ntp_middle32(sr[1], sr[2])
    # A DLSR longer than the elapsed time would give a negative RTT.
    assert st.on_rr_block((1, 0, 0, 0, 0, lsr, 65536), 1100) == 0


def test_send_loss_score_and_stats():
    st = SendStreamStats(5, 90000, "video", "video/H264", rtx_ssrc=6)
    for i in range(50):
        st.on_packet(i * 3000, 1000, now_ms=i * 10)
    st.on_nack_received(3)
    st.on_retransmitted(1000, 500)
    st.on_retransmitted(1000, 600, first_time=False)
    st.on_rr_block((5, 0, 0, 0, 0, 0, 0), 500)
    assert st.score == 10
    st.on_rr_block((5, 128, 25, 0, 0, 0, 0), 1500)  # 50% loss
    assert st.score == 4
    stats = st.to_stats(600)
    assert stats["type"] == "outbound-rtp"
    assert stats["packetCount"] == 50 and stats["byteCount"] == 50000
    assert stats["packetsLost"] == 25 and stats["fractionLost"] == 128
    assert stats["nackCount"] == 1 and stats["nackPacketCount"] == 3
    assert stats["packetsRetransmitted"] == 2 and stats["packetsRepaired"] == 1
    assert stats["rtxSsrc"] == 6
    assert stats["bitrate"] == 50000 * 8  # all 50 packets within the last second


def test_rate_calculator_window():
    rc = RateCalculator(window_ms=1000, slot_ms=10)
    for t in range(0, 1000, 10):
        rc.update(125, t)  # 100 x 125 bytes per second = 100 kbps
    assert rc.rate_bps(999) == 100_000
    assert rc.rate_bps(1499) == 50_000  # half the window has slid out
    assert rc.rate_bps(5000) == 0


def test_constructor_validation():
    with pytest.raises(ValueError, match="clock_rate"):
        RecvStreamStats(1, 0)
    with pytest.raises(ValueError, match="clock_rate"):
        SendStreamStats(1, -1)


def test_send_bitrate_follows_the_rate_from_sampled_counters():
    """The send side's bitrate comes from byte_count samples (SRs, stats calls): steady 800 kbps
    reads 800 kbps; a rate change shows within the 1-2 s window; silence reads 0."""
    from raysfu.transport.rtp_stream import CounterRate

    st = SendStreamStats(1, 90000, kind="video")
    now = 0
    for i in range(400):  # 1,000 B every 10 ms: 800 kbps for 4 s, an SR every second
        now = i * 10
        st.on_packet(i * 900, 1000, now)
        if now % 1000 == 0 and now:
            st.build_sr(now, 1_700_000_000_000 + now)
    assert st.bitrate_bps(now) == pytest.approx(800_000, rel=0.03)
    for i in range(400, 700):  # then 500 B every 10 ms (400 kbps) for 3 s
        now = i * 10
        st.on_packet(i * 900, 500, now)
        if now % 1000 == 0:
            st.build_sr(now, 1_700_000_000_000 + now)
    assert st.bitrate_bps(now) == pytest.approx(400_000, rel=0.05)
    assert st.bitrate_bps(now + 2500) == 0  # nothing sent for 2.5 s
    with pytest.raises(ValueError):
        CounterRate(window_ms=0)
