"""Probe-cluster pacing (libwebrtc m77 ``modules/pacing/bitrate_prober.cc`` with mediasoup's
change that probing starts without media; research/bwe.md §1.9, §1.11). Sans-I/O, times in ms.

A cluster of ``bitrate_bps`` must send at least 5 probes and ``bitrate × 15 ms`` bytes; probe
``i`` is due at ``start + round(8000 · bytes_sent_so_far / bitrate)`` ms, so the cluster goes out
at its rate. Each probe is one padding packet (mediasoup ``RtpProbationGenerator``: SSRC 1234,
payload type 127) of ``bitrate × 2 ms`` bytes, clamped to [``MIN_PROBE_BYTES``,
``MAX_PROBE_BYTES``]. Clusters not started within 5 s are dropped.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PROBATION_PAYLOAD_TYPE", "PROBATION_SSRC", "BitrateProber"]

PROBATION_SSRC = 1234
PROBATION_PAYLOAD_TYPE = 127
MIN_PROBES = 5
MIN_PROBE_DURATION_MS = 15
MIN_PROBE_DELTA_MS = 1
CLUSTER_TIMEOUT_MS = 5_000
MIN_PROBE_BYTES = 50
MAX_PROBE_BYTES = 1_200


class BitrateProber:
    """``create_cluster(cluster_id, bitrate_bps, now_ms)``; ``next_probe_time_ms()`` → when the
    next probe is due (None when idle); ``pop_probe(now_ms)`` → ``(cluster_id, size_bytes,
    min_probes, min_bytes)`` when a probe is due (it is then accounted as sent), else None."""

    __slots__ = ("_clusters", "_next_ms", "bytes_sent", "probes_sent")

    def __init__(self) -> None:
        # cluster: [id, bitrate_bps, created_ms, min_bytes, sent_probes, sent_bytes, started_ms]
        self._clusters: deque[list] = deque()
        self._next_ms: int | None = None
        self.probes_sent = 0
        self.bytes_sent = 0

    def create_cluster(self, cluster_id: int, bitrate_bps: float, now_ms: int) -> None:
        if bitrate_bps <= 0:
            raise ValueError(f"bitrate_bps must be > 0, got {bitrate_bps!r}")
        cl = self._clusters
        while cl and now_ms - cl[0][2] > CLUSTER_TIMEOUT_MS:
            cl.popleft()
        min_bytes = int(bitrate_bps * MIN_PROBE_DURATION_MS / 8000)
        cl.append([cluster_id, bitrate_bps, now_ms, min_bytes, 0, 0, -1])
        if self._next_ms is None:
            self._next_ms = now_ms

    def is_probing(self) -> bool:
        return bool(self._clusters)

    def next_probe_time_ms(self) -> int | None:
        return self._next_ms if self._clusters else None

    def pop_probe(self, now_ms: int):
        cl = self._clusters
        if not cl or self._next_ms is None or now_ms < self._next_ms:
            return None
        c = cl[0]
        size = min(max(int(c[1] * 2 * MIN_PROBE_DELTA_MS / 8000), MIN_PROBE_BYTES),
                   MAX_PROBE_BYTES)
        if c[4] == 0:
            c[6] = now_ms
        c[4] += 1
        c[5] += size
        self.probes_sent += 1
        self.bytes_sent += size
        out = (c[0], size, MIN_PROBES, c[3])
        if c[5] >= c[3] and c[4] >= MIN_PROBES:
            cl.popleft()
            self._next_ms = now_ms if cl else None
        else:
            self._next_ms = c[6] + int((8000 * c[5] + c[1] / 2) // c[1])
        return out
