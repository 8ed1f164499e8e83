"""Deterministic discrete-event network emulator for send-side BWE tests (research/bwe.md §4.2).

Time is integer microseconds of simulated time; nothing reads a clock. Every stochastic
component draws from its own ``random.Random`` seeded from ``(seed, component name)`` as a
string (stable across processes, unlike ``hash``), so adding a component never shifts another's
stream. Events live in a heap of ``(time_us, seq, callback, args)``; ``seq`` breaks ties in
scheduling order.

Topology of :class:`Emulator`::

    sender.on_tick ─► [random loss] ─► bottleneck queue (drop-tail, bytes) ─► serialization at
    capacity (schedule of (t_us, bps)) ─► propagation ─► receiver (TwccRecorder)
    receiver ─► transport-cc RTCP every 100 ms ─► return link ─► SendHistory ─► sender.on_feedback

- Link model: FIFO; a packet is dropped when ``queued bytes + size > queue_bytes`` (the bytes
  waiting, not counting the one being serialized), or, if ``queue_delay_limit_us`` is set, when
  its expected wait exceeds that limit (RFC 8867 "queue in ms" convention). Serialization takes
  ``size·8/C`` µs exactly on average: the sub-µs remainder is carried to the next packet. A
  capacity change applies from the next packet; capacity 0 holds the queue.
- Link size = RTP size + ``overhead_bytes`` (default 40: SRTP tag 12 + UDP 8 + IPv4 20); the
  sender and the estimator see the RTP size, metrics use the link size.
- Random loss is i.i.d. Bernoulli before the queue. Cross traffic is CBR or Poisson UDP into the
  same bottleneck.

Metrics (bwe.md §4.4): :meth:`Emulator.utilization`, :meth:`Emulator.queue_delay_percentile_us`,
:meth:`Emulator.loss_rate`, :meth:`Emulator.convergence_time_us`, :func:`jain_fairness`;
:meth:`Emulator.trace_csv` gives a byte-comparable trace for determinism checks.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from raysfu.bwe.twcc import PacketResult, SendHistory, TwccRecorder, parse_feedback_packet
from raysfu.transport.errors import PacketParseError

__all__ = [
    "Simulator",
    "SimPacket",
    "Link",
    "Sender",
    "ConstantRateSender",
    "StepRateSender",
    "CrossTraffic",
    "Emulator",
    "jain_fairness",
    "percentile",
]

DROP_RANDOM = "random"
DROP_QUEUE = "queue"


class Simulator:
    """Event loop over simulated integer-µs time.

    ``at(t_us, fn, *args)`` / ``after(delay_us, fn, *args)`` schedule ``fn(*args)``;
    ``run(until_us)`` runs every event with ``time <= until_us`` in (time, scheduling) order and
    leaves ``now_us == until_us``. ``rng(name)`` is the component's own seeded generator.
    """

    __slots__ = ("seed", "now_us", "_heap", "_seq", "events_run")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.now_us = 0
        self._heap: list[tuple] = []
        self._seq = 0
        self.events_run = 0

    def rng(self, name: str) -> random.Random:
        """A ``random.Random`` seeded from the string ``f"{seed}/{name}"``."""
        return random.Random(f"{self.seed}/{name}")

    def at(self, t_us: int, fn: Callable, *args) -> None:
        if t_us < self.now_us:
            raise ValueError(f"t_us {t_us} is in the past (now {self.now_us})")
        self._seq += 1
        heapq.heappush(self._heap, (t_us, self._seq, fn, args))

    def after(self, delay_us: int, fn: Callable, *args) -> None:
        self.at(self.now_us + delay_us, fn, *args)

    def run(self, until_us: int) -> None:
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= until_us:
            t, _, fn, args = pop(heap)
            self.now_us = t
            fn(*args)
            n += 1
        self.events_run += n
        if until_us > self.now_us:
            self.now_us = until_us


class SimPacket:
    """One packet on a link, also its per-packet record.

    ``flow`` ("media", "cross", "feedback"), ``seq`` (media: transport seq ext, else a counter),
    ``size_bytes`` (link size), ``send_us``, ``enqueue_us``, ``tx_start_us``, ``arrival_us``
    (at the far end, None until then), ``drop`` (None, "random", "queue"), ``payload``.
    """

    __slots__ = ("flow", "seq", "size_bytes", "send_us", "enqueue_us", "tx_start_us",
                 "arrival_us", "drop", "payload")

    def __init__(self, flow: str, seq: int, size_bytes: int, send_us: int, payload=None) -> None:
        self.flow = flow
        self.seq = seq
        self.size_bytes = size_bytes
        self.send_us = send_us
        self.enqueue_us = -1
        self.tx_start_us = -1
        self.arrival_us: int | None = None
        self.drop: str | None = None
        self.payload = payload


class Link:
    """One direction of a bottleneck: random loss, drop-tail FIFO, serialization, propagation.

    ``capacity_bps`` 0 holds the queue; ``None`` means infinite (no serialization, no queue).
    ``deliver(pkt)`` is called at arrival time. Counters: ``dropped_random``, ``dropped_queue``,
    ``queued_bytes`` (waiting, excluding the packet in service).
    """

    __slots__ = ("sim", "capacity_bps", "prop_delay_us", "queue_bytes", "queue_delay_limit_us",
                 "loss_rate", "deliver", "_rng", "_queue", "queued_bytes", "_busy_until",
                 "_rem", "dropped_random", "dropped_queue")

    def __init__(self, sim: Simulator, name: str, *, capacity_bps: int | None,
                 prop_delay_us: int, queue_bytes: int = 1 << 62,
                 queue_delay_limit_us: int | None = None, loss_rate: float = 0.0,
                 deliver: Callable[[SimPacket], None] | None = None) -> None:
        if capacity_bps is not None and capacity_bps < 0:
            raise ValueError(f"capacity_bps must be >= 0, got {capacity_bps!r}")
        if prop_delay_us < 0:
            raise ValueError(f"prop_delay_us must be >= 0, got {prop_delay_us!r}")
        if not 0.0 <= loss_rate <= 1.0:
            raise ValueError(f"loss_rate must be in [0, 1], got {loss_rate!r}")
        self.sim = sim
        self.capacity_bps = capacity_bps
        self.prop_delay_us = prop_delay_us
        self.queue_bytes = queue_bytes
        self.queue_delay_limit_us = queue_delay_limit_us
        self.loss_rate = loss_rate
        self.deliver = deliver
        self._rng = sim.rng(f"loss:{name}")
        self._queue: deque[SimPacket] = deque()
        self.queued_bytes = 0
        self._busy_until: int | None = None  # end of the current serialization, None if idle
        self._rem = 0  # carried remainder of size*8*1e6 / capacity
        self.dropped_random = 0
        self.dropped_queue = 0

    def set_capacity(self, capacity_bps: int | None) -> None:
        """Change the capacity; applies from the next packet to start serialization."""
        self.capacity_bps = capacity_bps
        self._rem = 0
        if self._busy_until is None and self._queue:
            self._start_next()

    def send(self, pkt: SimPacket) -> None:
        """Offer ``pkt`` to the link at ``sim.now_us``."""
        now = self.sim.now_us
        pkt.enqueue_us = now
        if self.loss_rate and self._rng.random() < self.loss_rate:
            pkt.drop = DROP_RANDOM
            self.dropped_random += 1
            return
        cap = self.capacity_bps
        if cap is None:
            pkt.tx_start_us = now
            self.sim.after(self.prop_delay_us, self._arrive, pkt)
            return
        size = pkt.size_bytes
        if self.queued_bytes + size > self.queue_bytes or (
            self.queue_delay_limit_us is not None and self._wait_us(now) > self.queue_delay_limit_us
        ):
            pkt.drop = DROP_QUEUE
            self.dropped_queue += 1
            return
        self._queue.append(pkt)
        self.queued_bytes += size
        if self._busy_until is None:
            self._start_next()

    def _wait_us(self, now: int) -> int:
        cap = self.capacity_bps
        if not cap:
            return 0 if self._busy_until is None and not self._queue else 1 << 62
        busy = 0 if self._busy_until is None else self._busy_until - now
        return busy + self.queued_bytes * 8_000_000 // cap

    def _start_next(self) -> None:
        cap = self.capacity_bps
        if cap is not None and cap <= 0:
            return
        pkt = self._queue.popleft()
        self.queued_bytes -= pkt.size_bytes
        now = self.sim.now_us
        pkt.tx_start_us = now
        if cap is None:
            tx_us = 0
        else:
            total = self._rem + pkt.size_bytes * 8_000_000
            tx_us, self._rem = divmod(total, cap)
        self._busy_until = now + tx_us
        self.sim.at(now + tx_us, self._tx_done, pkt)

    def _tx_done(self, pkt: SimPacket) -> None:
        self.sim.after(self.prop_delay_us, self._arrive, pkt)
        self._busy_until = None
        if self._queue:
            self._start_next()

    def _arrive(self, pkt: SimPacket) -> None:
        pkt.arrival_us = self.sim.now_us
        if self.deliver is not None:
            self.deliver(pkt)


class Sender(Protocol):
    """What the emulator drives (an estimator plus a source, later).

    ``tick_us`` is read once; ``on_tick(now_us)`` returns the RTP sizes (bytes) of the packets to
    send now (sent back to back); ``on_feedback(results, now_us)`` gets the transport-cc results
    of one feedback packet. An optional ``target_bps`` attribute is sampled per metrics bin.
    """

    tick_us: int

    def on_tick(self, now_us: int) -> Sequence[int]: ...

    def on_feedback(self, results: list[PacketResult], now_us: int) -> None: ...


class ConstantRateSender:
    """Paced constant bit rate source that ignores feedback (keeps it in ``feedbacks``).

    Each tick it sends as many ``packet_bytes`` packets as its byte credit allows
    (``rate_bps`` accrues continuously; leftover credit carries over).
    """

    def __init__(self, rate_bps: int, packet_bytes: int = 1200, tick_us: int = 5_000) -> None:
        if rate_bps < 0 or packet_bytes <= 0 or tick_us <= 0:
            raise ValueError("rate_bps must be >= 0, packet_bytes and tick_us > 0")
        self.target_bps = rate_bps
        self.packet_bytes = packet_bytes
        self.tick_us = tick_us
        self._credit_bits_x1e6 = 0  # bits * 1e6, kept integral
        self._last_us: int | None = None
        self.feedbacks: list[list[PacketResult]] = []

    def on_tick(self, now_us: int) -> list[int]:
        if self._last_us is not None:
            self._credit_bits_x1e6 += self.target_bps * (now_us - self._last_us)
        self._last_us = now_us
        cost = self.packet_bytes * 8 * 1_000_000
        n = self._credit_bits_x1e6 // cost
        self._credit_bits_x1e6 -= n * cost
        return [self.packet_bytes] * n

    def on_feedback(self, results: list[PacketResult], now_us: int) -> None:
        self.feedbacks.append(results)


class StepRateSender(ConstantRateSender):
    """:class:`ConstantRateSender` whose rate follows ``schedule`` ``[(t_us, bps), ...]``."""

    def __init__(self, schedule: Sequence[tuple[int, int]], packet_bytes: int = 1200,
                 tick_us: int = 5_000) -> None:
        schedule = sorted(schedule)
        super().__init__(schedule[0][1], packet_bytes, tick_us)
        self._schedule = schedule

    def on_tick(self, now_us: int) -> list[int]:
        for t, bps in self._schedule:
            if t <= now_us:
                self.target_bps = bps
        return super().on_tick(now_us)


class CrossTraffic:
    """UDP cross traffic of ``rate_bps`` into the bottleneck from ``start_us`` to ``stop_us``:
    CBR, or Poisson arrivals (exponential gaps, own seeded rng) when ``poisson``."""

    def __init__(self, rate_bps: int, packet_bytes: int = 1000, start_us: int = 0,
                 stop_us: int | None = None, poisson: bool = False) -> None:
        if rate_bps <= 0 or packet_bytes <= 0:
            raise ValueError("rate_bps and packet_bytes must be > 0")
        self.rate_bps = rate_bps
        self.packet_bytes = packet_bytes
        self.start_us = start_us
        self.stop_us = stop_us
        self.poisson = poisson


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def jain_fairness(rates: Sequence[float]) -> float:
    """Jain's index ``(Σx)² / (n·Σx²)`` of per-flow mean rates (1.0 = equal shares)."""
    sq = sum(x * x for x in rates)
    return 1.0 if sq == 0 else sum(rates) ** 2 / (len(rates) * sq)


class Emulator:
    """One sender over one bottleneck with a transport-cc feedback path (see module docstring).

    Arguments (all times µs, rates bps, sizes bytes): ``sender``, ``seed``, ``capacity_bps`` or
    ``capacity_schedule`` ``[(t_us, bps), ...]`` (the first entry should be at 0),
    ``prop_delay_us`` (forward), ``queue_bytes`` / ``queue_delay_limit_us`` (drop-tail),
    ``loss_rate`` (forward, random), ``return_capacity_bps`` (None = infinite),
    ``return_prop_delay_us`` (default: forward), ``return_loss_rate``, ``cross_traffic``
    (list of :class:`CrossTraffic`), ``overhead_bytes``, ``feedback_interval_us``, ``bin_us``.

    After ``run(duration_us)``: ``packets`` (every :class:`SimPacket`, all flows, in send order),
    ``bins`` (per bin: ``[start_us, capacity_bps, sent_bytes, recv_bytes, target_bps]``, media
    link bytes), ``feedback_sent``, ``feedback_lost``, and the metric methods.
    """

    def __init__(self, sender: Sender, *, seed: int = 0, capacity_bps: int = 1_000_000,
                 capacity_schedule: Sequence[tuple[int, int]] | None = None,
                 prop_delay_us: int = 25_000, queue_bytes: int = 1 << 62,
                 queue_delay_limit_us: int | None = None, loss_rate: float = 0.0,
                 return_capacity_bps: int | None = None, return_prop_delay_us: int | None = None,
                 return_loss_rate: float = 0.0, cross_traffic: Sequence[CrossTraffic] = (),
                 overhead_bytes: int = 40, feedback_interval_us: int = 100_000,
                 bin_us: int = 100_000) -> None:
        self.sim = sim = Simulator(seed)
        self.sender = sender
        self.overhead_bytes = overhead_bytes
        self.bin_us = bin_us
        sched = sorted(capacity_schedule) if capacity_schedule else [(0, capacity_bps)]
        if sched[0][0] > 0:
            sched.insert(0, (0, capacity_bps))
        self.capacity_schedule = sched
        self.forward = Link(sim, "forward", capacity_bps=sched[0][1], prop_delay_us=prop_delay_us,
                            queue_bytes=queue_bytes, queue_delay_limit_us=queue_delay_limit_us,
                            loss_rate=loss_rate, deliver=self._on_forward_arrival)
        self.backward = Link(sim, "return", capacity_bps=return_capacity_bps,
                             prop_delay_us=prop_delay_us if return_prop_delay_us is None
                             else return_prop_delay_us,
                             loss_rate=return_loss_rate, deliver=self._on_feedback_arrival)
        for t, bps in sched[1:]:
            sim.at(t, self.forward.set_capacity, bps)
        self.recorder = TwccRecorder(interval_us=feedback_interval_us)
        self.history = SendHistory()
        self.packets: list[SimPacket] = []
        self.bins: list[list[int]] = []
        self.feedback_sent = 0
        self.feedback_lost = 0
        self._tseq = 0
        self._other_seq = 0
        self._tick_us = sender.tick_us
        sim.at(0, self._tick)
        sim.at(feedback_interval_us, self._feedback_tick, feedback_interval_us)
        sim.at(0, self._bin)
        for i, ct in enumerate(cross_traffic):
            sim.at(ct.start_us, self._cross, ct, sim.rng(f"cross:{i}"))

    # --- event handlers ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.sim.now_us
        send = self.forward.send
        hist = self.history
        for size in self.sender.on_tick(now):
            seq = self._tseq
            self._tseq += 1
            ext = hist.on_packet_sent(seq & 0xFFFF, now, size)
            pkt = SimPacket("media", ext, size + self.overhead_bytes, now)
            self.packets.append(pkt)
            self._bin_add(2, now, pkt.size_bytes)
            send(pkt)
        self.sim.after(self._tick_us, self._tick)

    def _on_forward_arrival(self, pkt: SimPacket) -> None:
        if pkt.flow == "media":
            self.recorder.on_packet(pkt.seq & 0xFFFF, pkt.arrival_us)
            self._bin_add(3, pkt.arrival_us, pkt.size_bytes)

    def _feedback_tick(self, interval_us: int) -> None:
        now = self.sim.now_us
        for data in self.recorder.on_timer(now):
            self._other_seq += 1
            pkt = SimPacket("feedback", self._other_seq, len(data) + self.overhead_bytes, now,
                            data)
            self.feedback_sent += 1
            self.backward.send(pkt)
            if pkt.drop is not None:
                self.feedback_lost += 1
        self.sim.after(interval_us, self._feedback_tick, interval_us)

    def _on_feedback_arrival(self, pkt: SimPacket) -> None:
        try:
            _, _, parsed = parse_feedback_packet(pkt.payload)
        except PacketParseError:  # cannot happen with our own builder; keep the receive rule
            return
        now = self.sim.now_us
        results = self.history.on_feedback(parsed, now)
        self.sender.on_feedback(results, now)

    def _cross(self, ct: CrossTraffic, rng: random.Random) -> None:
        now = self.sim.now_us
        if ct.stop_us is not None and now >= ct.stop_us:
            return
        self._other_seq += 1
        pkt = SimPacket("cross", self._other_seq, ct.packet_bytes, now)
        self.packets.append(pkt)
        self.forward.send(pkt)
        mean_us = ct.packet_bytes * 8_000_000 / ct.rate_bps
        gap = rng.expovariate(1.0 / mean_us) if ct.poisson else mean_us
        self.sim.after(max(1, round(gap)), self._cross, ct, rng)

    def _bin(self) -> None:
        self._row(self.sim.now_us // self.bin_us)
        self.sim.after(self.bin_us, self._bin)

    def _row(self, i: int) -> list[int]:
        """Bin row ``i``, creating it and any missing earlier rows (target sampled now)."""
        bins = self.bins
        while len(bins) <= i:
            start = len(bins) * self.bin_us
            bins.append([start, self.capacity_at(start), 0, 0,
                         int(getattr(self.sender, "target_bps", 0) or 0)])
        return bins[i]

    def _bin_add(self, col: int, t_us: int, size: int) -> None:
        self._row(t_us // self.bin_us)[col] += size

    # --- driving and metrics -----------------------------------------------------------------

    def run(self, duration_us: int) -> Emulator:
        """Advance the simulation to ``duration_us`` (absolute); returns self."""
        self.sim.run(duration_us)
        return self

    def capacity_at(self, t_us: int) -> int:
        """Forward capacity (bps) in force at ``t_us`` per the schedule."""
        c = self.capacity_schedule[0][1]
        for t, bps in self.capacity_schedule:
            if t <= t_us:
                c = bps
        return c

    def capacity_bits(self, t0_us: int, t1_us: int) -> int:
        """∫ capacity dt over [t0, t1) in bits (exact over the schedule)."""
        total = 0
        sched = self.capacity_schedule
        for i, (t, bps) in enumerate(sched):
            end = sched[i + 1][0] if i + 1 < len(sched) else t1_us
            lo, hi = max(t, t0_us), min(end, t1_us)
            if hi > lo:
                total += bps * (hi - lo)
        return total // 1_000_000

    def _media(self, t0_us: int, t1_us: int | None) -> list[SimPacket]:
        t1 = self.sim.now_us if t1_us is None else t1_us
        return [p for p in self.packets if p.flow == "media" and t0_us <= p.send_us < t1]

    def utilization(self, t0_us: int = 0, t1_us: int | None = None, *,
                    received: bool = False) -> float:
        """Media link bits sent (or, with ``received``, delivered) in [t0, t1) over the capacity
        integral of that window (bwe.md §4.4 ``U`` / ``U_recv``)."""
        t1 = self.sim.now_us if t1_us is None else t1_us
        if received:
            bits = 8 * sum(p.size_bytes for p in self.packets if p.flow == "media"
                           and p.arrival_us is not None and t0_us <= p.arrival_us < t1)
        else:
            bits = 8 * sum(p.size_bytes for p in self._media(t0_us, t1))
        cap = self.capacity_bits(t0_us, t1)
        return bits / cap if cap else 0.0

    def queue_delays_us(self, t0_us: int = 0, t1_us: int | None = None) -> list[int]:
        """``tx_start − enqueue`` of media packets sent in [t0, t1) that entered the queue."""
        return [p.tx_start_us - p.enqueue_us for p in self._media(t0_us, t1_us)
                if p.tx_start_us >= 0]

    def queue_delay_percentile_us(self, p: float = 95, t0_us: int = 0,
                                  t1_us: int | None = None) -> float | None:
        """Percentile ``p`` of :meth:`queue_delays_us` (None without packets)."""
        return percentile(self.queue_delays_us(t0_us, t1_us), p)

    def one_way_delays_us(self, t0_us: int = 0, t1_us: int | None = None) -> list[int]:
        """``arrival − send`` of delivered media packets sent in [t0, t1)."""
        return [p.arrival_us - p.send_us for p in self._media(t0_us, t1_us)
                if p.arrival_us is not None]

    def loss_rate(self, t0_us: int = 0, t1_us: int | None = None) -> tuple[float, float, float]:
        """``(total, queue, random)`` drop fractions of media packets sent in [t0, t1)."""
        pk = self._media(t0_us, t1_us)
        if not pk:
            return (0.0, 0.0, 0.0)
        q = sum(p.drop == DROP_QUEUE for p in pk)
        r = sum(p.drop == DROP_RANDOM for p in pk)
        n = len(pk)
        return ((q + r) / n, q / n, r / n)

    def sent_rate_bps(self, window_us: int = 1_000_000) -> list[tuple[int, float]]:
        """``[(bin_end_us, bps)]``: moving average of the media send rate over the last
        ``window_us`` (whole bins), one value per completed bin."""
        k = max(1, window_us // self.bin_us)
        out = []
        acc = 0
        bins = self.bins
        for i, b in enumerate(bins):
            end = b[0] + self.bin_us
            if end > self.sim.now_us:
                break
            acc += b[2]
            if i >= k:
                acc -= bins[i - k][2]
            n = min(i + 1, k)
            out.append((end, acc * 8 * 1_000_000 / (n * self.bin_us)))
        return out

    def convergence_time_us(self, step_us: int, new_capacity_bps: int, *,
                            until_us: int | None = None) -> int | None:
        """Time after ``step_us`` until the 1 s moving average of the media send rate reaches
        ≥ 0.9·C′ (up-step, C′ above the rate before the step) or ≤ 1.1·C′ (down-step), at bin
        resolution; None if never. With ``until_us``, also require mean rate over
        [t_conv, until) ≥ 0.8·C′ (bwe.md §4.4), else None."""
        series = self.sent_rate_bps()
        before = [r for t, r in series if t <= step_us]
        up = not before or new_capacity_bps >= before[-1]
        for t, r in series:
            if t <= step_us:
                continue
            if (up and r >= 0.9 * new_capacity_bps) or (not up and r <= 1.1 * new_capacity_bps):
                if until_us is not None:
                    bits = 8 * sum(p.size_bytes for p in self._media(t, until_us))
                    if bits * 1_000_000 / max(1, until_us - t) < 0.8 * new_capacity_bps:
                        return None
                return t - step_us
        return None

    def trace_rows(self) -> list[tuple]:
        """Per-packet records ``(flow, seq, size_bytes, send_us, enqueue_us, tx_start_us,
        arrival_us, drop)`` in send order."""
        return [(p.flow, p.seq, p.size_bytes, p.send_us, p.enqueue_us, p.tx_start_us,
                 p.arrival_us, p.drop) for p in self.packets]

    def trace_csv(self) -> str:
        """:meth:`trace_rows` and the bins as CSV text (byte-identical for equal seeds)."""
        lines = ["flow,seq,size_bytes,send_us,enqueue_us,tx_start_us,arrival_us,drop"]
        lines += [",".join("" if v is None else str(v) for v in row) for row in self.trace_rows()]
        lines.append("bin_start_us,capacity_bps,sent_bytes,recv_bytes,target_bps")
        lines += [",".join(map(str, b)) for b in self.bins]
        return "\n".join(lines) + "\n"
