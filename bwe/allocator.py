"""Layer distribution of a transport's available outgoing bitrate across its consumers,
sans-I/O (mediasoup ``Transport::DistributeAvailableOutgoingBitrate`` and
``SimulcastConsumer::IncreaseLayer`` / ``ApplyLayers`` semantics; research/bwe.md §2.2, §5).

Consumers are plain data: a priority (≥ 1; 0 = excluded), measured bitrates per layer, the
preferred (maximum) layers and when each spatial stream became active.

``layer_bitrates_bps[s][t]`` is the bitrate a subscriber receives at spatial layer ``s`` up to
temporal layer ``t`` (the stream's cumulative rate; 0 = that layer is not being received from the
producer). The rule, per :meth:`BitrateAllocator.allocate`:

- every allocation starts from nothing (all consumers paused) and walks layers up;
- base round: one layer step per consumer, highest priority first; later rounds: up to
  ``priority`` steps per consumer; stop when a whole round moves no consumer (the remainder
  stays unused: no partial layers; a step may cost nothing, e.g. a spatial switch from a full
  lower stream to the base temporal layer of the next, which is cheaper);
- a step goes to the next layer with a nonzero bitrate within the preferred layers (temporal
  first, then the next spatial stream from its lowest temporal layer); its cost is the new
  layer's bitrate minus the current one's (a spatial switch stops the old stream, so a switch to
  a cheaper stream gives the difference back: a consumer costs exactly its final layer's rate);
- **tie-break among equal priorities: the oldest consumer first** (insertion order), where
  mediasoup's order is hash order;
- a spatial stream other than the current one must have been active ≥ 2 s
  (``STREAM_MIN_ACTIVE_MS``);
- hysteresis: a bandwidth-caused spatial downgrade (not a preference change) of a consumer that
  has been active > 8 s (``BWE_DOWNGRADE_MIN_ACTIVE_MS``) blocks spatial upgrades above the new
  layer for 10 s (``BWE_DOWNGRADE_CONSERVATIVE_MS``), as mediasoup does; ours doubles that
  block for each further such downgrade within ``BWE_DOWNGRADE_MEMORY_MS`` of the previous one
  (up to ``BWE_DOWNGRADE_MAX_BLOCK_MS``), so an estimate oscillating around a layer boundary
  causes at most a few switches per minute (research/bwe.md §5 H3);
- REMB mode (``remb_loss_fraction`` given): a layer fits when its cost is ≤ a *virtual*
  remainder, ``1.08 ×`` below 2 % loss, ``(1 − 0.5·loss) ×`` above 10 %, and only
  ``min(cost, remainder)`` is charged (mediasoup ``IncreaseLayer``).

Switching at a keyframe is the consumer's business: the allocator only picks target layers.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "BWE_DOWNGRADE_CONSERVATIVE_MS",
    "BWE_DOWNGRADE_MIN_ACTIVE_MS",
    "STREAM_MIN_ACTIVE_MS",
    "Allocation",
    "BitrateAllocator",
    "ConsumerLayers",
    "RateMeter",
]

STREAM_MIN_ACTIVE_MS = 2_000
BWE_DOWNGRADE_MIN_ACTIVE_MS = 8_000
BWE_DOWNGRADE_CONSERVATIVE_MS = 10_000
BWE_DOWNGRADE_MEMORY_MS = 60_000
BWE_DOWNGRADE_MAX_BLOCK_MS = 60_000


class ConsumerLayers:
    """One consumer as the allocator sees it (plain data; see module docstring).

    ``layers``: the current target ``(spatial, temporal)`` or None when paused;
    ``active_since_ms``: when the consumer started sending (None = long ago);
    ``bwe_downgrade_at_ms`` / ``block_ms``: the last bandwidth-caused downgrade and how long
    it blocks spatial upgrades.
    """

    __slots__ = (
        "active_since_ms",
        "block_ms",
        "bwe_downgrade_at_ms",
        "consumer_id",
        "layer_bitrates_bps",
        "layers",
        "preferred_spatial_layer",
        "preferred_temporal_layer",
        "priority",
        "stream_active_since_ms",
    )

    def __init__(self, consumer_id, priority: int, layer_bitrates_bps, preferred_spatial_layer,
                 preferred_temporal_layer, stream_active_since_ms) -> None:
        self.consumer_id = consumer_id
        self.priority = priority
        self.layer_bitrates_bps = layer_bitrates_bps
        self.preferred_spatial_layer = preferred_spatial_layer
        self.preferred_temporal_layer = preferred_temporal_layer
        self.stream_active_since_ms = stream_active_since_ms
        self.layers: tuple[int, int] | None = None
        self.active_since_ms: int | None = None
        self.bwe_downgrade_at_ms: int | None = None
        self.block_ms = BWE_DOWNGRADE_CONSERVATIVE_MS

    def desired_bitrate_bps(self) -> int:
        """mediasoup ``GetDesiredBitrate``: the highest stream bitrate (0 when excluded)."""
        if self.priority <= 0:
            return 0
        return max((max(s) for s in self.layer_bitrates_bps if s), default=0)


class Allocation:
    """Result of :meth:`BitrateAllocator.allocate`: ``layers`` ``{consumer_id: (spatial,
    temporal) | None}`` (None = paused), ``used_bps``, ``unused_bps``, ``changed`` (ids whose
    target changed)."""

    __slots__ = ("changed", "layers", "unused_bps", "used_bps")

    def __init__(self, layers: dict, used_bps: int, unused_bps: int, changed: list) -> None:
        self.layers = layers
        self.used_bps = used_bps
        self.unused_bps = unused_bps
        self.changed = changed

    def __repr__(self) -> str:
        return f"Allocation({self.layers}, used={self.used_bps}, unused={self.unused_bps})"


def _check_bitrates(layer_bitrates_bps) -> list[list[int]]:
    if not isinstance(layer_bitrates_bps, (list, tuple)) or not layer_bitrates_bps:
        raise ValueError("layer_bitrates_bps must be a non-empty list of per-spatial lists")
    out = []
    for s in layer_bitrates_bps:
        if not isinstance(s, (list, tuple)) or not s:
            raise ValueError("layer_bitrates_bps[s] must be a non-empty list of bps")
        row = []
        for b in s:
            if not isinstance(b, int) or b < 0:
                raise ValueError(f"layer_bitrates_bps values must be ints >= 0, got {b!r}")
            row.append(b)
        out.append(row)
    return out


class BitrateAllocator:
    """Layer distribution for one transport (see module docstring).

    ``add_consumer(consumer_id, *, layer_bitrates_bps, priority=1, preferred_layers=None,
    stream_active_since_ms=None, active_since_ms=None)``; ``update_consumer(...)`` with the same keywords;
    ``remove_consumer(consumer_id)``; ``allocate(available_bps, now_ms, *, bwe_triggered=True,
    remb_loss_fraction=None) -> Allocation``; ``desired_bitrate_bps()``.

    ``preferred_layers``: ``(spatial, temporal)`` maximum (None = highest). Streams whose
    ``stream_active_since_ms[s]`` is None are treated as long active. Raises ValueError on bad
    arguments, KeyError on an unknown consumer id.
    """

    def __init__(self) -> None:
        self.consumers: dict = {}
        self.switches = 0

    def add_consumer(self, consumer_id, *, layer_bitrates_bps, priority: int = 1,
                     preferred_layers: tuple[int, int] | None = None,
                     stream_active_since_ms=None,
                     active_since_ms: int | None = None) -> ConsumerLayers:
        if consumer_id in self.consumers:
            raise ValueError(f"consumer_id {consumer_id!r} already added")
        c = ConsumerLayers(consumer_id, 1, [[0]], None, None, None)
        c.active_since_ms = active_since_ms
        self.consumers[consumer_id] = c
        try:
            self.update_consumer(consumer_id, layer_bitrates_bps=layer_bitrates_bps,
                                 priority=priority, preferred_layers=preferred_layers,
                                 stream_active_since_ms=stream_active_since_ms)
        except ValueError:
            del self.consumers[consumer_id]
            raise
        return c

    def update_consumer(self, consumer_id, *, layer_bitrates_bps=None, priority=None,
                        preferred_layers=..., stream_active_since_ms=...) -> None:
        c = self.consumers[consumer_id]
        if priority is not None:
            if not isinstance(priority, int) or priority < 0:
                raise ValueError(f"priority must be an int >= 0, got {priority!r}")
            c.priority = priority
        if layer_bitrates_bps is not None:
            c.layer_bitrates_bps = _check_bitrates(layer_bitrates_bps)
        if preferred_layers is not ...:
            if preferred_layers is None:
                c.preferred_spatial_layer = c.preferred_temporal_layer = None
            else:
                s, t = preferred_layers
                if s < 0 or t < 0:
                    raise ValueError(f"preferred_layers must be >= 0, got {preferred_layers!r}")
                c.preferred_spatial_layer, c.preferred_temporal_layer = s, t
        if stream_active_since_ms is not ...:
            if stream_active_since_ms is not None and \
                    len(stream_active_since_ms) != len(c.layer_bitrates_bps):
                raise ValueError("stream_active_since_ms needs one entry per spatial layer")
            c.stream_active_since_ms = None if stream_active_since_ms is None else \
                list(stream_active_since_ms)

    def remove_consumer(self, consumer_id) -> None:
        del self.consumers[consumer_id]

    def desired_bitrate_bps(self) -> int:
        """Σ consumers' desired bitrates (what :meth:`SendSideBwe.set_desired_bitrate` takes)."""
        return sum(c.desired_bitrate_bps() for c in self.consumers.values())

    def layers(self) -> dict:
        return {cid: c.layers for cid, c in self.consumers.items()}

    # --- the distribution ---------------------------------------------------------------------

    def _next_layer(self, c: ConsumerLayers, cur, now_ms: int):
        """Next (s, t, bitrate) above ``cur`` allowed for ``c``, or None."""
        br = c.layer_bitrates_bps
        ps = len(br) - 1 if c.preferred_spatial_layer is None else \
            min(c.preferred_spatial_layer, len(br) - 1)
        s0 = 0 if cur is None else cur[0]
        blocked_above = None
        if c.bwe_downgrade_at_ms is not None and now_ms - c.bwe_downgrade_at_ms < c.block_ms:
            blocked_above = -1 if c.layers is None else c.layers[0]
        for s in range(s0, ps + 1):
            if blocked_above is not None and s > max(blocked_above, 0 if cur is None else cur[0]):
                return None
            row = br[s]
            pt = len(row) - 1
            if s == ps and c.preferred_temporal_layer is not None:
                pt = min(c.preferred_temporal_layer, pt)
            t0 = cur[1] + 1 if cur is not None and s == cur[0] else 0
            for t in range(t0, pt + 1):
                if row[t] <= 0:
                    continue
                if (cur is None or s != cur[0]) and (c.layers is None or s != c.layers[0]):
                    act = c.stream_active_since_ms
                    since = None if act is None else act[s]
                    if since is not None and now_ms - since < STREAM_MIN_ACTIVE_MS:
                        break  # this stream is too new: try no higher one either
                return s, t, row[t]
        return None

    def allocate(self, available_bps: int, now_ms: int, *, bwe_triggered: bool = True,
                 remb_loss_fraction: float | None = None) -> Allocation:
        """Distribute ``available_bps`` (see module docstring); updates each consumer's
        ``layers`` and returns the :class:`Allocation`."""
        if available_bps < 0:
            raise ValueError(f"available_bps must be >= 0, got {available_bps!r}")
        order = sorted((c for c in self.consumers.values() if c.priority > 0),
                       key=lambda c: -c.priority)  # stable: insertion order breaks ties
        prov: dict = {c.consumer_id: None for c in order}
        cur_bps: dict = {c.consumer_id: 0 for c in order}
        avail = available_bps
        base = True
        while avail > 0:
            moved = False  # a step may cost nothing (a spatial switch to a cheaper stream)
            for c in order:
                for _ in range(1 if base else c.priority):
                    nxt = self._next_layer(c, prov[c.consumer_id], now_ms)
                    if nxt is None:
                        break
                    # the old stream stops: a switch to a cheaper stream gives back the
                    # difference, so a consumer costs exactly its final layer's bitrate
                    cost = nxt[2] - cur_bps[c.consumer_id]
                    if remb_loss_fraction is None:
                        if cost > avail:
                            break
                        charge = cost
                    else:
                        if remb_loss_fraction < 0.02:
                            virtual = 1.08 * avail
                        elif remb_loss_fraction > 0.10:
                            virtual = (1 - 0.5 * remb_loss_fraction) * avail
                        else:
                            virtual = avail
                        if cost > virtual:
                            break
                        charge = min(cost, avail) if cost > 0 else cost
                    prov[c.consumer_id] = (nxt[0], nxt[1])
                    cur_bps[c.consumer_id] = nxt[2]
                    moved = True
                    avail -= charge
                    if avail <= 0:
                        break
                if avail <= 0:
                    break
            if not moved:
                break
            base = False
        changed = []
        for c in order:
            new = prov[c.consumer_id]
            old = c.layers
            if new == old:
                continue
            changed.append(c.consumer_id)
            self.switches += 1
            old_s = -1 if old is None else old[0]
            new_s = -1 if new is None else new[0]
            pref = c.preferred_spatial_layer
            if (new_s < old_s and bwe_triggered and (pref is None or old_s <= pref)
                    and (c.active_since_ms is None
                         or now_ms - c.active_since_ms > BWE_DOWNGRADE_MIN_ACTIVE_MS)):
                last = c.bwe_downgrade_at_ms
                if last is not None and now_ms - last < BWE_DOWNGRADE_MEMORY_MS:
                    c.block_ms = min(2 * c.block_ms, BWE_DOWNGRADE_MAX_BLOCK_MS)
                else:
                    c.block_ms = BWE_DOWNGRADE_CONSERVATIVE_MS
                c.bwe_downgrade_at_ms = now_ms
            c.layers = new
        for c in self.consumers.values():
            if c.priority <= 0 and c.layers is not None:
                c.layers = None
                changed.append(c.consumer_id)
        return Allocation({cid: c.layers for cid, c in self.consumers.items()},
                          available_bps - max(avail, 0), max(avail, 0), changed)


class RateMeter:
    """Bitrate over a sliding window (mediasoup measures layers over 2.5 s):
    ``add(now_ms, size_bytes)``; ``rate_bps(now_ms)``."""

    __slots__ = ("_bytes", "_items", "window_ms")

    def __init__(self, window_ms: int = 2_500) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {window_ms!r}")
        self.window_ms = window_ms
        self._items: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, now_ms: int, size_bytes: int) -> None:
        self._items.append((now_ms, size_bytes))
        self._bytes += size_bytes
        self._expire(now_ms)

    def _expire(self, now_ms: int) -> None:
        it = self._items
        cutoff = now_ms - self.window_ms
        while it and it[0][0] <= cutoff:
            self._bytes -= it.popleft()[1]

    def rate_bps(self, now_ms: int) -> int:
        self._expire(now_ms)
        return self._bytes * 8000 // self.window_ms
