"""Fast multi-flow network for the BWE scenarios (research/bwe.md §4.2): media flows driven by
:class:`raysfu.bwe.estimator.SendSideBwe`, NewReno TCP flows, transport-cc feedback over a
return link that may itself be congested.

Same conventions as :mod:`raysfu.bwe.emulator` (integer-µs simulated clock, per-component
seeded ``random.Random``, ties broken in scheduling order), with a faster link model:

- :class:`FastLink` computes each packet's fate when it is offered: random loss (Bernoulli,
  before the queue), then FIFO service ``start = max(now, link_free_at)``; drop-tail in time
  (dropped when ``start − now > queue_delay_limit_us``, the RFC 8867 "queue in ms" rule; None
  = unbounded); serialization at the capacity in force at ``start``
  (``capacity_schedule`` ``[(t_us, bps)]``); then propagation. No per-packet events are needed
  unless the far end must react (TCP, feedback): media receivers read their arrivals lazily at
  each feedback tick, which is exact because a flow's arrivals are in order.
- Link size = RTP size + ``overhead_bytes`` (40: SRTP tag 12, UDP 8, IPv4 20); the estimator
  sees RTP sizes, metrics use link sizes.

A :class:`MediaFlow` runs one ``SendSideBwe``: a 5 ms tick paces media (``pacing_factor`` ×
target, libwebrtc's 2.5, or × the source's ``pacing_rate_bps(now_us)`` when it has one; 0 sends
frames as unpaced bursts), drives
``on_timer`` every 25 ms and asks its source for frames; probe padding is sent at the prober's
exact times. The receiver sends transport-cc feedback every 100 ms.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Sequence

from raysfu.bwe.emulator import Simulator, jain_fairness, percentile
from raysfu.bwe.twcc import TwccRecorder

__all__ = [
    "ConstantSource",
    "FastLink",
    "ForwarderSource",
    "MediaFlow",
    "Network",
    "PerfectCodec",
    "ShortTcpPool",
    "TcpFlow",
    "jain_fairness",
    "percentile",
]

DROP_NONE, DROP_RANDOM, DROP_QUEUE = 0, 1, 2


class FastLink:
    """One direction of a bottleneck, analytic FIFO (see module docstring).

    ``send(size_bytes)`` → ``(enqueue_us, tx_start_us, arrival_us, drop)`` with ``drop`` one of
    ``DROP_NONE`` / ``DROP_RANDOM`` / ``DROP_QUEUE`` (``tx_start_us``/``arrival_us`` are −1 for
    a dropped packet). ``capacity_schedule`` None means infinite capacity (propagation only).
    """

    __slots__ = (
        "_cap",
        "_free_at",
        "_rng",
        "_si",
        "bytes_sent",
        "dropped_queue",
        "dropped_random",
        "loss_rate",
        "prop_delay_us",
        "queue_delay_limit_us",
        "schedule",
        "sim",
    )

    def __init__(self, sim: Simulator, name: str, capacity_schedule: Sequence | None,
                 prop_delay_us: int, queue_delay_limit_us: int | None = None,
                 loss_rate: float = 0.0) -> None:
        if prop_delay_us < 0:
            raise ValueError(f"prop_delay_us must be >= 0, got {prop_delay_us!r}")
        if not 0.0 <= loss_rate <= 1.0:
            raise ValueError(f"loss_rate must be in [0, 1], got {loss_rate!r}")
        self.sim = sim
        self.schedule = None if capacity_schedule is None else sorted(capacity_schedule)
        if self.schedule is not None:
            if self.schedule[0][0] > 0 or any(b <= 0 for _, b in self.schedule):
                raise ValueError("capacity_schedule must start at 0 with capacities > 0")
        self._si = 0
        self._cap = None if self.schedule is None else self.schedule[0][1]
        self.prop_delay_us = prop_delay_us
        self.queue_delay_limit_us = queue_delay_limit_us
        self.loss_rate = loss_rate
        self._rng = sim.rng(f"loss:{name}")
        self._free_at = 0.0
        self.dropped_random = 0
        self.dropped_queue = 0
        self.bytes_sent = 0

    def capacity_at(self, t_us: int) -> int | None:
        """Capacity (bps) in force at ``t_us`` (None = infinite)."""
        if self.schedule is None:
            return None
        c = self.schedule[0][1]
        for t, bps in self.schedule:
            if t <= t_us:
                c = bps
        return c

    def queue_delay_us(self, now_us: int) -> float:
        """Time a packet offered now would wait before its serialization starts."""
        return max(0.0, self._free_at - now_us)

    def send(self, size: int) -> tuple[int, int, int, int]:
        now = self.sim.now_us
        if self.loss_rate and self._rng.random() < self.loss_rate:
            self.dropped_random += 1
            return now, -1, -1, DROP_RANDOM
        sched = self.schedule
        if sched is None:
            return now, now, now + self.prop_delay_us, DROP_NONE
        start = self._free_at if self._free_at > now else float(now)
        lim = self.queue_delay_limit_us
        if lim is not None and start - now > lim:
            self.dropped_queue += 1
            return now, -1, -1, DROP_QUEUE
        si = self._si
        while si + 1 < len(sched) and sched[si + 1][0] <= start:
            si += 1
        self._si = si
        end = start + size * 8_000_000 / sched[si][1]
        self._free_at = end
        self.bytes_sent += size
        return now, int(start), int(end) + self.prop_delay_us, DROP_NONE


class PerfectCodec:
    """RFC 8867 "perfect" codec: ``fps`` frames per second of ``target/fps`` bits, split into
    packets of at most ``max_packet_bytes`` (equal sizes), following the target at each frame;
    ``max_bps`` caps the encoder rate (0 = none)."""

    def __init__(self, fps: int = 30, max_packet_bytes: int = 1200, max_bps: int = 0) -> None:
        if fps <= 0 or max_packet_bytes <= 0:
            raise ValueError("fps and max_packet_bytes must be > 0")
        self.frame_interval_us = 1_000_000 // fps
        self.fps = fps
        self.max_packet_bytes = max_packet_bytes
        self.max_bps = max_bps

    def frame(self, now_us: int, target_bps: int, flow: MediaFlow) -> list[int]:
        if self.max_bps:
            target_bps = min(target_bps, self.max_bps)
        frame_bytes = target_bps // (8 * self.fps)
        if frame_bytes <= 0:
            return []
        n = -(-frame_bytes // self.max_packet_bytes)
        size = -(-frame_bytes // n)
        return [size] * n


class ConstantSource:
    """Application-limited source: ``rate_bps`` (or ``schedule`` ``[(t_us, bps)]``) regardless of
    the target, never above the target when ``cap_at_target``."""

    def __init__(self, rate_bps: int = 0, schedule: Sequence | None = None, fps: int = 30,
                 max_packet_bytes: int = 1200, cap_at_target: bool = False) -> None:
        self.schedule = sorted(schedule) if schedule else [(0, rate_bps)]
        self.frame_interval_us = 1_000_000 // fps
        self.fps = fps
        self.max_packet_bytes = max_packet_bytes
        self.cap_at_target = cap_at_target
        self._carry = 0.0

    def rate_at(self, t_us: int) -> int:
        r = self.schedule[0][1]
        for t, bps in self.schedule:
            if t <= t_us:
                r = bps
        return r

    def frame(self, now_us: int, target_bps: int, flow: MediaFlow) -> list[int]:
        rate = self.rate_at(now_us)
        if self.cap_at_target:
            rate = min(rate, target_bps)
        b = rate / (8 * self.fps) + self._carry
        frame_bytes = int(b)
        self._carry = b - frame_bytes
        if frame_bytes <= 0:
            return []
        n = -(-frame_bytes // self.max_packet_bytes)
        size = -(-frame_bytes // n)
        return [size] * n


class MediaFlow:
    """One media sender (a transport with its ``SendSideBwe``), its receiver and feedback path.

    ``link`` carries media, ``feedback_link`` carries the transport-cc RTCP back. Active between
    ``start_us`` and ``stop_us`` except inside ``pauses`` ``[(t0_us, t1_us)]`` (no media then;
    probes and feedback continue). ``pacing_factor`` 0 sends frames as unpaced bursts.

    Records (for metrics): ``bins`` per ``bin_us`` ``[sent_bytes, recv_bytes, target_bps,
    probe_bytes]`` (link sizes, media only except ``probe_bytes``), ``targets`` (sampled at each
    feedback tick), per media packet ``rec_send_us``, ``rec_qdelay_us`` (−1 if dropped),
    ``rec_drop``; with ``keep_trace`` also the controller's internal state per feedback tick.
    """

    def __init__(self, net: Network, name: str, bwe, source, *, link: FastLink,
                 feedback_link: FastLink, start_us: int = 0, stop_us: int | None = None,
                 pauses: Sequence = (), pacing_factor: float = 2.5,
                 feedback_interval_us: int = 100_000, overhead_bytes: int = 40,
                 tick_us: int = 5_000, keep_trace: bool = False) -> None:
        self.net = net
        self.sim = net.sim
        self.name = name
        self.bwe = bwe
        self.source = source
        self.link = link
        self.feedback_link = feedback_link
        self.start_us = start_us
        self.stop_us = stop_us
        self.pauses = list(pauses)
        self.pacing_factor = pacing_factor
        self.overhead = overhead_bytes
        self.tick_us = tick_us
        self.bin_us = net.bin_us
        self.recorder = TwccRecorder(interval_us=feedback_interval_us)
        self.feedback_interval_us = feedback_interval_us
        self._tseq = 0
        self._queue: deque[int] = deque()
        self._budget = 0.0
        self._last_tick: int | None = None
        self._next_frame = start_us
        self._in_flight: deque[tuple[int, int]] = deque()  # (arrival_us, seq16)
        self._probe_event_at: int | None = None
        self.bins: list[list[int]] = []
        self.rec_send_us: list[int] = []
        self.rec_qdelay_us: list[int] = []
        self.rec_drop: list[int] = []
        self.targets: list[tuple[int, int]] = []  # (t_us, target_bps) at each feedback tick
        self.keep_trace = keep_trace
        self.trace: list[tuple] = []  # (t_us, target, controller state dict) if keep_trace
        self.feedback_sent = 0
        self.feedback_bytes = 0
        self.feedback_lost = 0
        self.on_tick_hooks: list = []
        self.sim.at(start_us, self._tick)
        self.sim.at(start_us + feedback_interval_us, self._feedback_tick)

    # --- helpers ------------------------------------------------------------------------------

    def active(self, t_us: int) -> bool:
        if t_us < self.start_us or (self.stop_us is not None and t_us >= self.stop_us):
            return False
        return not any(a <= t_us < b for a, b in self.pauses)

    def _bin(self, t_us: int) -> list[int]:
        i = t_us // self.bin_us
        bins = self.bins
        while len(bins) <= i:
            bins.append([0, 0, 0, 0])
        return bins[i]

    # --- sending ------------------------------------------------------------------------------

    def _send(self, size: int, now: int, probe_cluster: int | None) -> None:
        seq = self._tseq & 0xFFFF
        self._tseq += 1
        self.bwe.on_packet_sent(seq, size, now // 1000, probe_cluster)
        lsize = size + self.overhead
        enq, start, arrival, drop = self.link.send(lsize)
        b = self._bin(now)
        if probe_cluster is None:
            b[0] += lsize
            self.rec_send_us.append(now)
            self.rec_qdelay_us.append(start - enq if drop == DROP_NONE else -1)
            self.rec_drop.append(drop)
            if drop == DROP_NONE:
                self._bin(arrival)[1] += lsize
        else:
            b[3] += lsize
        if drop == DROP_NONE:
            self._in_flight.append((arrival, seq))

    def _tick(self) -> None:
        sim = self.sim
        now = sim.now_us
        if self.stop_us is not None and now >= self.stop_us + 2_000_000:
            return
        bwe = self.bwe
        now_ms = now // 1000
        nt = bwe.next_timer_ms()
        if nt is None or now_ms >= nt:
            bwe.on_timer(now_ms)
        for hook in self.on_tick_hooks:
            hook(self, now)
        target = bwe.target_bitrate_bps
        if now >= self._next_frame:
            self._next_frame += self.source.frame_interval_us
            if self.active(now):
                self._queue.extend(self.source.frame(now, target, self))
        q = self._queue
        if q:
            if self.pacing_factor <= 0:
                while q:
                    self._send(q.popleft(), now, None)
            else:
                dt = 0 if self._last_tick is None else now - self._last_tick
                rate = getattr(self.source, "pacing_rate_bps", None)
                rate = target if rate is None else rate(now)
                inc = self.pacing_factor * rate * dt / 8_000_000
                self._budget = min(self._budget + inc, inc) if self._budget >= 0 else \
                    self._budget + inc
                while q and self._budget > 0:
                    s = q.popleft()
                    self._send(s, now, None)
                    self._budget -= s
        else:
            self._budget = 0.0
        self._last_tick = now
        self._schedule_probe()
        sim.after(self.tick_us, self._tick)

    def _schedule_probe(self) -> None:
        t = self.bwe.next_probe_time_ms()
        if t is None:
            return
        t_us = max(t * 1000, self.sim.now_us)
        if self._probe_event_at is not None and self._probe_event_at <= t_us:
            return
        self._probe_event_at = t_us
        self.sim.at(t_us, self._probe_event, t_us)

    def _probe_event(self, t_us: int) -> None:
        if self._probe_event_at != t_us:
            return
        self._probe_event_at = None
        now = self.sim.now_us
        if self.stop_us is not None and now >= self.stop_us:
            return
        while True:
            p = self.bwe.pop_probe(now // 1000)
            if p is None:
                break
            self._send(p[0], now, p[1])
        self._schedule_probe()

    # --- receiving and feedback -----------------------------------------------------------------

    def _feedback_tick(self) -> None:
        sim = self.sim
        now = sim.now_us
        if self.stop_us is not None and now >= self.stop_us + 2_000_000:
            return
        inf = self._in_flight
        rec = self.recorder
        while inf and inf[0][0] <= now:
            a, seq = inf.popleft()
            rec.on_packet(seq, a)
        for data in rec.on_timer(now):
            self.feedback_sent += 1
            self.feedback_bytes += len(data) + self.overhead
            _enq, _start, arrival, drop = self.feedback_link.send(len(data) + self.overhead)
            if drop == DROP_NONE:
                sim.at(arrival, self._on_feedback, data)
            else:
                self.feedback_lost += 1
        b = self._bin(now)
        b[2] = tgt = self.bwe.target_bitrate_bps
        self.targets.append((now, tgt))
        if self.keep_trace:
            self.trace.append((now, tgt, self.bwe.controller.state()))
        sim.after(self.feedback_interval_us, self._feedback_tick)

    def _on_feedback(self, data: bytes) -> None:
        # RTCP header (4) + sender SSRC + media SSRC, then the FCI (RTCP padding is tolerated)
        self.bwe.on_feedback(data[12:], self.sim.now_us // 1000)
        self._schedule_probe()

    # --- metrics ------------------------------------------------------------------------------

    def sent_bps(self, t0_us: int, t1_us: int) -> float:
        """Mean media send rate (link bytes) over [t0, t1) at bin resolution."""
        i0, i1 = t0_us // self.bin_us, t1_us // self.bin_us
        s = sum(b[0] for b in self.bins[i0:i1])
        return s * 8 * 1_000_000 / max(1, (i1 - i0) * self.bin_us)

    def recv_bps(self, t0_us: int, t1_us: int) -> float:
        i0, i1 = t0_us // self.bin_us, t1_us // self.bin_us
        s = sum(b[1] for b in self.bins[i0:i1])
        return s * 8 * 1_000_000 / max(1, (i1 - i0) * self.bin_us)

    def _window(self, t0_us: int, t1_us: int) -> tuple[int, int]:
        r = self.rec_send_us
        return bisect.bisect_left(r, t0_us), bisect.bisect_left(r, t1_us)

    def queue_delays_us(self, t0_us: int, t1_us: int) -> list[int]:
        i0, i1 = self._window(t0_us, t1_us)
        return [q for q in self.rec_qdelay_us[i0:i1] if q >= 0]

    def loss(self, t0_us: int, t1_us: int) -> tuple[float, float, float]:
        """``(total, queue, random)`` drop fractions of media packets sent in [t0, t1)."""
        i0, i1 = self._window(t0_us, t1_us)
        d = self.rec_drop[i0:i1]
        if not d:
            return (0.0, 0.0, 0.0)
        q = d.count(DROP_QUEUE)
        r = d.count(DROP_RANDOM)
        return ((q + r) / len(d), q / len(d), r / len(d))

    def target_series(self) -> list[tuple[int, int]]:
        """``[(t_us, target_bps)]`` sampled at each feedback tick (every 100 ms)."""
        return self.targets

    def target_at(self, t_us: int) -> int:
        """The last target sampled at or before ``t_us`` (0 before the first sample)."""
        i = bisect.bisect_right(self.targets, (t_us, 1 << 62)) - 1
        return self.targets[i][1] if i >= 0 else 0

    def rate_series(self, window_us: int = 1_000_000) -> list[tuple[int, float]]:
        """``[(bin_end_us, bps)]``: moving average of the media send rate over ``window_us``."""
        k = max(1, window_us // self.bin_us)
        out = []
        acc = 0
        bins = self.bins
        for i, b in enumerate(bins):
            acc += b[0]
            if i >= k:
                acc -= bins[i - k][0]
            out.append(((i + 1) * self.bin_us, acc * 8 * 1_000_000 / (min(i + 1, k) * self.bin_us)))
        return out


class TcpFlow:
    """NewReno TCP bulk or finite transfer (research/bwe.md §4.2): MSS ``mss_bytes`` payload
    (+ ``header_bytes`` on the link), IW 10, slow start, fast retransmit on 3 duplicate ACKs with
    NewReno partial-ACK recovery, RTO ≥ 200 ms with exponential backoff (Karn's rule for RTT
    samples), one ACK per data packet on ``ack_link``. ``total_bytes`` None = unlimited;
    ``on_done(flow)`` is called when a finite transfer is fully acknowledged."""

    def __init__(self, net: Network, name: str, *, link: FastLink, ack_link: FastLink,
                 start_us: int = 0, stop_us: int | None = None, total_bytes: int | None = None,
                 mss_bytes: int = 1000, header_bytes: int = 40, on_done=None) -> None:
        self.net = net
        self.sim = net.sim
        self.name = name
        self.link = link
        self.ack_link = ack_link
        self.stop_us = stop_us
        self.mss = mss_bytes
        self.hdr = header_bytes
        self.total_pkts = None if total_bytes is None else max(1, -(-total_bytes // mss_bytes))
        self.on_done = on_done
        self.cwnd = 10.0
        self.ssthresh = 1e9
        self.snd_una = 0
        self.snd_nxt = 0
        self.high_sent = 0
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_us = 1_000_000
        self._rto_deadline: int | None = None
        self._rto_event = False
        self._send_time: dict[int, int] = {}
        self._retx: set[int] = set()
        # receiver
        self._rcv_next = 0
        self._ooo: set[int] = set()
        self.bins: list[int] = []  # delivered link bytes per bin
        self.done = False
        self.bytes_acked = 0
        self.sim.at(start_us, self._send_more)

    def _bin_add(self, t_us: int, n: int) -> None:
        i = t_us // self.net.bin_us
        while len(self.bins) <= i:
            self.bins.append(0)
        self.bins[i] += n

    def _xmit(self, seq: int) -> None:
        now = self.sim.now_us
        if seq in self._send_time:
            self._retx.add(seq)
        self._send_time[seq] = now
        _enq, _start, arrival, drop = self.link.send(self.mss + self.hdr)
        if drop == DROP_NONE:
            self.sim.at(arrival, self._on_data, seq)
        if self._rto_deadline is None:
            self._arm_rto()

    def _arm_rto(self) -> None:
        self._rto_deadline = self.sim.now_us + self.rto_us
        if not self._rto_event:
            self._rto_event = True
            self.sim.at(self._rto_deadline, self._on_rto_timer)

    def _send_more(self) -> None:
        if self.done or (self.stop_us is not None and self.sim.now_us >= self.stop_us):
            return
        while self.snd_nxt - self.snd_una < int(self.cwnd):
            if self.total_pkts is not None and self.snd_nxt >= self.total_pkts:
                break
            self._xmit(self.snd_nxt)
            self.snd_nxt += 1
            self.high_sent = max(self.high_sent, self.snd_nxt)

    def _on_data(self, seq: int) -> None:
        now = self.sim.now_us
        self._bin_add(now, self.mss + self.hdr)
        if seq == self._rcv_next:
            self._rcv_next += 1
            while self._rcv_next in self._ooo:
                self._ooo.discard(self._rcv_next)
                self._rcv_next += 1
        elif seq > self._rcv_next:
            self._ooo.add(seq)
        _enq, _start, arrival, drop = self.ack_link.send(self.hdr)
        if drop == DROP_NONE:
            self.sim.at(arrival, self._on_ack, self._rcv_next)

    def _on_ack(self, ack: int) -> None:
        if self.done:
            return
        now = self.sim.now_us
        if ack > self.snd_una:
            newly = ack - self.snd_una
            last = ack - 1
            if last not in self._retx and last in self._send_time:
                self._rtt_sample(now - self._send_time[last])
            for s in range(self.snd_una, ack):
                self._send_time.pop(s, None)
                self._retx.discard(s)
            self.snd_una = ack
            self.bytes_acked = ack * self.mss
            self.snd_nxt = max(self.snd_nxt, ack)
            if self.in_recovery:
                if ack >= self.recover:
                    self.in_recovery = False
                    self.cwnd = self.ssthresh
                else:  # partial ACK: retransmit the next hole, deflate
                    self._xmit(ack)
                    self.cwnd = max(self.cwnd - newly + 1, 1.0)
            elif self.cwnd < self.ssthresh:
                self.cwnd += newly
            else:
                self.cwnd += newly / self.cwnd
            self.dupacks = 0
            if self.snd_una == self.snd_nxt:
                self._rto_deadline = None
            else:
                self._arm_rto()
            if self.total_pkts is not None and self.snd_una >= self.total_pkts:
                self.done = True
                self._rto_deadline = None
                if self.on_done is not None:
                    self.on_done(self)
                return
        elif ack == self.snd_una and self.snd_nxt > self.snd_una:
            self.dupacks += 1
            if self.dupacks == 3 and not self.in_recovery:
                flight = self.snd_nxt - self.snd_una
                self.ssthresh = max(flight / 2, 2.0)
                self.recover = self.snd_nxt
                self.in_recovery = True
                self._xmit(self.snd_una)
                self.cwnd = self.ssthresh + 3
            elif self.in_recovery:
                self.cwnd += 1
        self._send_more()

    def _rtt_sample(self, r: int) -> None:
        if self.srtt is None:
            self.srtt = float(r)
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto_us = int(min(max(200_000, self.srtt + 4 * self.rttvar), 60_000_000))

    def _on_rto_timer(self) -> None:
        self._rto_event = False
        d = self._rto_deadline
        if d is None or self.done:
            return
        now = self.sim.now_us
        if now < d:
            self._rto_event = True
            self.sim.at(d, self._on_rto_timer)
            return
        if self.stop_us is not None and now >= self.stop_us:
            return
        flight = self.snd_nxt - self.snd_una
        self.ssthresh = max(flight / 2, 2.0)
        self.cwnd = 1.0
        self.in_recovery = False
        self.dupacks = 0
        self.snd_nxt = self.snd_una
        self.rto_us = min(self.rto_us * 2, 60_000_000)
        self._rto_deadline = None
        self._xmit(self.snd_una)
        self.snd_nxt = self.snd_una + 1

    def delivered_bps(self, t0_us: int, t1_us: int) -> float:
        b = self.net.bin_us
        i0, i1 = t0_us // b, t1_us // b
        return sum(self.bins[i0:i1]) * 8 * 1_000_000 / max(1, (i1 - i0) * b)


class ShortTcpPool:
    """RFC 8867 §5.7 short TCP (as NS3 encodes it): ``n`` flows, the first ``initially_on`` ON
    at ``start_us``; each repeats downloads of U(30 kB, 50 kB) separated by Exp(mean
    ``off_mean_us``) OFF periods until ``stop_us``. Each download is a new :class:`TcpFlow`."""

    def __init__(self, net: Network, *, link: FastLink, ack_link: FastLink, start_us: int,
                 stop_us: int, n: int = 10, initially_on: int = 2,
                 size_range: tuple[int, int] = (30_000, 50_000),
                 off_mean_us: int = 10_000_000) -> None:
        self.net = net
        self.link = link
        self.ack_link = ack_link
        self.stop_us = stop_us
        self.size_range = size_range
        self.off_mean_us = off_mean_us
        self.flows: list[TcpFlow] = []
        self.downloads = 0
        for i in range(n):
            rng = net.sim.rng(f"short_tcp:{i}")
            t = start_us if i < initially_on else start_us + int(rng.expovariate(1 / off_mean_us))
            net.sim.at(t, self._start, i, rng)

    def _start(self, i: int, rng: random.Random) -> None:
        now = self.net.sim.now_us
        if now >= self.stop_us:
            return
        size = rng.randint(*self.size_range)
        self.downloads += 1

        def done(flow: TcpFlow) -> None:
            gap = int(rng.expovariate(1 / self.off_mean_us))
            self.net.sim.after(max(1, gap), self._start, i, rng)

        self.flows.append(TcpFlow(self.net, f"short{i}", link=self.link, ack_link=self.ack_link,
                                  start_us=now, stop_us=self.stop_us, total_bytes=size,
                                  on_done=done))


class Network:
    """A forward and a backward :class:`FastLink` over one :class:`Simulator`.

    ``forward`` / ``backward``: keyword dicts for :class:`FastLink` (``capacity_schedule``,
    ``prop_delay_us``, ``queue_delay_limit_us``, ``loss_rate``). Flows are added with
    :meth:`add_media` / :meth:`add_tcp`; :meth:`run` advances the clock.
    """

    def __init__(self, seed: int = 0, *, forward: dict, backward: dict,
                 bin_us: int = 100_000) -> None:
        self.sim = Simulator(seed)
        self.bin_us = bin_us
        self.forward = FastLink(self.sim, "forward", **forward)
        self.backward = FastLink(self.sim, "backward", **backward)
        self.media: list[MediaFlow] = []
        self.tcp: list[TcpFlow] = []

    def add_media(self, name: str, bwe, source, *, reverse: bool = False, **kw) -> MediaFlow:
        link, fb = (self.backward, self.forward) if reverse else (self.forward, self.backward)
        f = MediaFlow(self, name, bwe, source, link=link, feedback_link=fb, **kw)
        self.media.append(f)
        return f

    def add_tcp(self, name: str, **kw) -> TcpFlow:
        f = TcpFlow(self, name, link=self.forward, ack_link=self.backward, **kw)
        self.tcp.append(f)
        return f

    def run(self, until_us: int) -> Network:
        self.sim.run(until_us)
        return self

    def capacity_bits(self, t0_us: int, t1_us: int, backward: bool = False) -> float:
        """∫ capacity dt over [t0, t1) in bits for the forward (or backward) link."""
        link = self.backward if backward else self.forward
        sched = link.schedule
        total = 0.0
        for i, (t, bps) in enumerate(sched):
            end = sched[i + 1][0] if i + 1 < len(sched) else max(t1_us, t)
            lo, hi = max(t, t0_us), min(end, t1_us)
            if hi > lo:
                total += bps * (hi - lo) / 1_000_000
        return total

    def mean_capacity_bps(self, t0_us: int, t1_us: int, backward: bool = False) -> float:
        return self.capacity_bits(t0_us, t1_us, backward) * 1_000_000 / max(1, t1_us - t0_us)


def isfinite(x) -> bool:
    return x is not None and math.isfinite(x)


class ForwarderSource:
    """SFU forwarder (research/bwe.md §4.2 source c): sends, for each consumer, the layer the
    :class:`raysfu.bwe.allocator.BitrateAllocator` picked, as 30 fps frames (mediasoup does not
    pace: with ``pacing_factor`` 2.5 the flow reproduces the producer's pacing, 0 = bursts).

    ``producer_schedule``: ``{consumer_id: [(t_us, layer_bitrates_bps), ...]}`` — what the
    producer's streams carry over time (a stream becoming nonzero is "active since" then). The
    allocation re-runs on every available-bitrate event of the flow's ``SendSideBwe`` and on
    producer changes; the desired bitrate is reported every ``desired_interval_us``.
    ``layer_log``: ``[(t_us, consumer_id, (spatial, temporal) | None)]`` on each change.
    """

    def __init__(self, allocator, producer_schedule: dict, *, priorities: dict | None = None,
                 fps: int = 30, max_packet_bytes: int = 1200,
                 desired_interval_us: int = 1_000_000) -> None:
        self.allocator = allocator
        self.schedule = {cid: sorted(s, key=lambda x: x[0]) for cid, s in producer_schedule.items()}
        self.fps = fps
        self.frame_interval_us = 1_000_000 // fps
        self.max_packet_bytes = max_packet_bytes
        self.desired_interval_us = desired_interval_us
        self._applied: dict = {}
        self._active_since: dict = {}
        self._next_desired = 0
        self.layer_log: list[tuple] = []
        for cid, sched in self.schedule.items():
            allocator.add_consumer(cid, layer_bitrates_bps=sched[0][1],
                                   priority=(priorities or {}).get(cid, 1), active_since_ms=0)

    def _producer_update(self, now_us: int) -> bool:
        changed = False
        for cid, sched in self.schedule.items():
            cur = None
            for t, br in sched:
                if t <= now_us:
                    cur = br
            if self._applied.get(cid) is not cur:
                prev = self._applied.get(cid)
                self._applied[cid] = cur
                since = self._active_since.setdefault(cid, [None] * len(cur))
                for s, row in enumerate(cur):
                    was = prev is not None and max(prev[s]) > 0
                    if max(row) > 0 and not was:
                        since[s] = now_us // 1000 if prev is not None else None
                self.allocator.update_consumer(cid, layer_bitrates_bps=cur,
                                               stream_active_since_ms=list(since))
                changed = True
        return changed

    def hook(self, flow: MediaFlow, now_us: int) -> None:
        bwe = flow.bwe
        now_ms = now_us // 1000
        changed = self._producer_update(now_us)
        if changed or now_us >= self._next_desired:
            self._next_desired = now_us + self.desired_interval_us
            bwe.set_desired_bitrate(self.allocator.desired_bitrate_bps(), now_ms)
        ev = bwe.poll_available_bitrate()
        if ev is not None or changed or not self.layer_log:
            alloc = self.allocator.allocate(bwe.available_bitrate_bps, now_ms,
                                            bwe_triggered=ev is not None)
            for cid in (alloc.changed if self.layer_log else alloc.layers):
                self.layer_log.append((now_us, cid, alloc.layers[cid]))

    def forwarded_bps(self) -> int:
        """Sum of the bitrates of the layers being forwarded."""
        return sum(c.layer_bitrates_bps[c.layers[0]][c.layers[1]]
                   for c in self.allocator.consumers.values() if c.layers is not None)

    def pacing_rate_bps(self, now_us: int) -> int:
        """Forwarded packets leave as they came from the producer, whose own pacer spread each
        frame at 2.5x its rate: the flow paces at ``pacing_factor`` × the forwarded rate."""
        return max(self.forwarded_bps(), 1)

    def frame(self, now_us: int, target_bps: int, flow: MediaFlow) -> list[int]:
        out: list[int] = []
        for c in self.allocator.consumers.values():
            if c.layers is None:
                continue
            rate = c.layer_bitrates_bps[c.layers[0]][c.layers[1]]
            frame_bytes = rate // (8 * self.fps)
            if frame_bytes <= 0:
                continue
            n = -(-frame_bytes // self.max_packet_bytes)
            out += [-(-frame_bytes // n)] * n
        return out

    def layers_at(self, consumer_id, t_us: int):
        cur = None
        for t, cid, lay in self.layer_log:
            if cid == consumer_id and t <= t_us:
                cur = lay
        return cur
