"""Audio-level and active-speaker observer algorithms (sans-I/O, time injected).

These are the decision cores of mediasoup's two RtpObservers; the Router feeds them the RFC 6464
``ssrc-audio-level`` header extension of every audio packet of the producers that were added, and
the WorkerActor drives their periodic timer and turns the returned events into notifications:

- :class:`AudioLevelObserverLogic`: mediasoup ``AudioLevelObserver``; events ``("volumes",
  [(producer_id, volume_dbov), ...])`` (loudest first) and ``("silence", None)``.
- :class:`ActiveSpeakerObserverLogic`: mediasoup ``ActiveSpeakerObserver``, i.e. "Dominant Speaker
  Identification for Multipoint Videoconferencing" (I. Volfin, I. Cohen, 2012) as ported by Jitsi
  (``DominantSpeakerIdentification.java``) and mediasoup (``worker/src/RTC/ActiveSpeakerObserver.cpp``);
  event ``("dominantspeaker", producer_id)``.

:class:`RtpObserver` is the in-actor object the Router holds for each observer (producers feed
its logic from ``Producer._feed_rtp_observers``; the WorkerActor's tick runs its timer and it emits
the events); the driver-side handles are ``raysfu.actors.api.AudioLevelObserver`` and
``ActiveSpeakerObserver``.

No clock is read and nothing is scheduled here: every method that depends on time takes
``now_ms`` (monotonic milliseconds), the timer is pulled with :meth:`next_timer_ms` and run with
``on_timer(now_ms)``, which returns the list of events due (usually empty). Methods that mediasoup
lets emit an event outside the timer (``pause()`` of the audio-level observer, removing the dominant
producer from the active-speaker observer) return their events the same way.

Audio levels are RFC 6464 §3 values: ``level`` 0..127 means ``-level`` dBov (0 is the loudest, 127
is silence). The ``voice`` (V) bit is accepted and, as in mediasoup, ignored. ``on_audio_level`` is
on the per-packet path: it trusts its arguments (the RTP extension parser yields 0..127) and does no
validation, allocation or logging.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "AudioLevelObserverLogic",
    "ActiveSpeakerObserverLogic",
    "EVENT_VOLUMES",
    "EVENT_SILENCE",
    "EVENT_DOMINANT_SPEAKER",
    "RtpObserver",
    "create_rtp_observer",
]

EVENT_VOLUMES = "volumes"
EVENT_SILENCE = "silence"
EVENT_DOMINANT_SPEAKER = "dominantspeaker"


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _check_now(now_ms: object) -> int:
    return _check_int("now_ms", now_ms)


def _check_producer_id(producer_id: object) -> str:
    if not isinstance(producer_id, str) or not producer_id:
        raise TypeError("producer_id must be a non-empty str")
    return producer_id


class _PeriodicTimer:
    """A repeating timer as libuv runs mediasoup's ``TimerHandle``: first due ``interval_ms`` after
    start; after it fires at ``now_ms`` it is due again at ``now_ms + interval_ms``."""

    __slots__ = ("interval_ms", "due_ms")

    def __init__(self, interval_ms: int, now_ms: int) -> None:
        self.interval_ms = interval_ms
        self.due_ms: int | None = now_ms + interval_ms

    def stop(self) -> None:
        self.due_ms = None

    def restart(self, now_ms: int) -> None:
        self.due_ms = now_ms + self.interval_ms

    def fire(self, now_ms: int) -> bool:
        """True (and re-armed) when the timer is due at ``now_ms``."""
        due = self.due_ms
        if due is None or now_ms < due:
            return False
        self.due_ms = now_ms + self.interval_ms
        return True


# ---------------------------------------------------------------------------------------------------
# AudioLevelObserver
# ---------------------------------------------------------------------------------------------------


class AudioLevelObserverLogic:
    """mediasoup ``AudioLevelObserver``: every ``interval_ms`` reports the loudest producers.

    Options (mediasoup ``AudioLevelObserverOptions``, checked as ``router.createAudioLevelObserver``
    does, then clamped as the worker does):

    - ``max_entries``: int 1..65535, how many producers a ``volumes`` event lists at most (default 1);
    - ``threshold``: int -127..0 dBov, producers whose average is below it are left out (default -80);
    - ``interval_ms``: int, the reporting period; clamped to 250..5000 ms (default 1000);
    - ``now_ms``: when the observer is created, i.e. when its timer starts (first tick at
      ``now_ms + interval_ms``).

    Raises ``TypeError`` for a non-int option and ``ValueError`` for an out-of-range one, naming it.

    Algorithm (mediasoup ``AudioLevelObserver::Update``), at each tick: for every producer that is
    added and not paused and sent **at least 10** audio levels during the interval, the volume is
    ``-(sum_of_levels // count)`` dBov (integer division of the RFC 6464 levels, as the worker's
    integer arithmetic does); producers with ``volume >= threshold`` are sorted loudest first (a stable
    sort: ties keep the order producers were added or last resumed) and the first ``max_entries`` are emitted as
    ``("volumes", [(producer_id, volume_dbov), ...])``. When no producer qualifies, ``("silence",
    None)`` is emitted, once, until a ``volumes`` event occurs again. The observer starts silent, so
    nothing is emitted until someone speaks. Sums are reset at every tick.

    ``pause()`` stops the timer, drops the partial sums and emits ``silence`` (if not silent already);
    ``resume()`` restarts the timer from the resume time. While paused, levels are ignored.
    """

    __slots__ = ("max_entries", "threshold", "interval_ms", "_timer", "_producers", "_sums",
                 "_paused", "_silence", "_now_ms")

    MIN_INTERVAL_MS = 250
    MAX_INTERVAL_MS = 5000
    MIN_LEVELS_PER_INTERVAL = 10

    def __init__(self, max_entries: int = 1, threshold: int = -80, interval_ms: int = 1000, *,
                 now_ms: int = 0) -> None:
        _check_int("max_entries", max_entries)
        if not 1 <= max_entries <= 0xFFFF:
            raise ValueError(f"max_entries must be in 1..65535, got {max_entries}")
        _check_int("threshold", threshold)
        if not -127 <= threshold <= 0:
            raise ValueError(f"threshold must be in -127..0 dBov, got {threshold}")
        _check_int("interval_ms", interval_ms)
        _check_now(now_ms)
        self.max_entries = max_entries
        self.threshold = threshold
        self.interval_ms = min(max(interval_ms, self.MIN_INTERVAL_MS), self.MAX_INTERVAL_MS)
        self._timer = _PeriodicTimer(self.interval_ms, now_ms)
        self._producers: dict[str, None] = {}      # added producers (paused or not), in add order
        self._sums: dict[str, list[int]] = {}      # not-paused added producers -> [level_sum, count]
        self._paused = False
        self._silence = True
        self._now_ms = now_ms

    # -- state ------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    @property
    def producer_ids(self) -> list[str]:
        """Ids of the added producers, in the order they were added."""
        return list(self._producers)

    def next_timer_ms(self) -> int | None:
        """When :meth:`on_timer` is next due (monotonic ms), or None while paused."""
        return self._timer.due_ms

    # -- producers --------------------------------------------------------------------------------

    def add_producer(self, producer_id: str, *, paused: bool = False) -> None:
        """Observe an (audio) producer. Adding it again is a no-op (as mediasoup's map insert).

        ``paused``: the producer is paused now (its levels are ignored until
        :meth:`producer_resumed`). Raises TypeError for a bad ``producer_id``.
        """
        _check_producer_id(producer_id)
        if producer_id in self._producers:
            return
        self._producers[producer_id] = None
        if not paused:
            self._sums[producer_id] = [0, 0]

    def remove_producer(self, producer_id: str) -> list[tuple]:
        """Stop observing a producer (unknown ids are ignored). Returns no events (``[]``)."""
        self._producers.pop(producer_id, None)
        self._sums.pop(producer_id, None)
        return []

    def producer_paused(self, producer_id: str) -> None:
        """The producer was paused: forget its partial sum and ignore its levels (mediasoup
        ``ProducerPaused``)."""
        self._sums.pop(producer_id, None)

    def producer_resumed(self, producer_id: str) -> None:
        """The producer was resumed: count its levels again from now (mediasoup ``ProducerResumed``)."""
        if producer_id in self._producers and producer_id not in self._sums:
            self._sums[producer_id] = [0, 0]

    # -- observer pause/resume --------------------------------------------------------------------

    def pause(self, now_ms: int | None = None) -> list[tuple]:
        """Pause: stop the timer, drop partial sums; returns ``[("silence", None)]`` unless already
        silent (mediasoup ``AudioLevelObserver::Paused``), ``[]`` when already paused."""
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if self._paused:
            return []
        self._paused = True
        self._timer.stop()
        self._reset_sums()
        if not self._silence:
            self._silence = True
            return [(EVENT_SILENCE, None)]
        return []

    def resume(self, now_ms: int | None = None) -> list[tuple]:
        """Resume: the timer restarts, first tick at ``now_ms + interval_ms`` (``now_ms`` defaults to
        the latest time this object was given). Returns ``[]``."""
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if not self._paused:
            return []
        self._paused = False
        self._timer.restart(self._now_ms)
        return []

    # -- per packet -------------------------------------------------------------------------------

    def on_audio_level(self, producer_id: str, level_dbov: int, voice: bool, now_ms: int) -> None:
        """One RFC 6464 audio level of a packet of ``producer_id`` (``level_dbov`` 0..127 meaning
        ``-level_dbov`` dBov; ``voice`` ignored as in mediasoup). Per-packet path: O(1), trusted input;
        levels of unknown or paused producers, or while the observer is paused, are ignored."""
        acc = self._sums.get(producer_id)
        if acc is None or self._paused:
            return
        acc[0] += level_dbov
        acc[1] += 1

    # -- timer ------------------------------------------------------------------------------------

    def on_timer(self, now_ms: int) -> list[tuple]:
        """Run the periodic update if due at ``now_ms``; returns the events (see the class doc):
        ``[("volumes", [(producer_id, volume_dbov), ...])]``, ``[("silence", None)]`` or ``[]``."""
        self._now_ms = now_ms
        if not self._timer.fire(now_ms):
            return []
        return self._update()

    def _update(self) -> list[tuple]:
        threshold = self.threshold
        candidates = []
        for producer_id, acc in self._sums.items():
            count = acc[1]
            if count >= self.MIN_LEVELS_PER_INTERVAL:
                volume = -(acc[0] // count)
                if volume >= threshold:
                    candidates.append((producer_id, volume))
            acc[0] = 0
            acc[1] = 0
        if candidates:
            self._silence = False
            candidates.sort(key=lambda item: item[1], reverse=True)   # stable: ties keep add order
            return [(EVENT_VOLUMES, candidates[: self.max_entries])]
        if not self._silence:
            self._silence = True
            return [(EVENT_SILENCE, None)]
        return []

    def _reset_sums(self) -> None:
        for acc in self._sums.values():
            acc[0] = 0
            acc[1] = 0


# ---------------------------------------------------------------------------------------------------
# ActiveSpeakerObserver (dominant speaker identification)
# ---------------------------------------------------------------------------------------------------

# Constants of the algorithm, as in mediasoup's ActiveSpeakerObserver.cpp / Jitsi's
# DominantSpeakerIdentification.java.
_C1 = 3.0                   # log-ratio thresholds a challenger must beat: immediate, medium, long
_C2 = 2.0
_C3 = 0.0
_N1 = 13                    # sub-bands of the immediate time scale (levels quantised to 0..N1-1)
_N2 = 5                     # immediates per medium
_N3 = 10                    # mediums per long
_LEVEL_IDLE_TIMEOUT_MS = 40
_SPEAKER_IDLE_TIMEOUT_MS = 60 * 60 * 1000
_MEDIUM_THRESHOLD = 7       # an immediate above this counts as "active" in a medium
_LONG_THRESHOLD = 4         # a medium above this counts as "active" in a long
_MAX_LEVEL = 127
_MIN_LEVEL = 0
_LEVEL_PERIOD_MS = 20       # the algorithm expects one level every 20 ms
_MIN_LEVEL_WINDOW_LEN = 15 * 1000 // _LEVEL_PERIOD_MS   # 750 levels = 15 s
_SUBUNIT_LENGTH_N1 = (_MAX_LEVEL - _MIN_LEVEL + _N1 - 1) // _N1   # 10
_LEVELS_LEN = _N3 * _N2     # 50 levels = 1 s of history = number of immediates
_MIN_ACTIVITY_SCORE = 1e-10


def _activity_score(v_l: int, n_r: int, p: float, lam: float) -> float:
    """Volfin & Cohen eq. for the speech-activity score of ``v_l`` active sub-units out of ``n_r``:
    ``log C(n_r, v_l) + v_l log p + (n_r - v_l) log(1 - p) - log(lam) + lam * v_l``, floored at 1e-10."""
    score = (math.log(math.comb(n_r, v_l)) + v_l * math.log(p) + (n_r - v_l) * math.log(1 - p)
             - math.log(lam) + lam * v_l)
    return max(score, _MIN_ACTIVITY_SCORE)


# The inputs are small integers, so the scores are tabulated once.
_IMMEDIATE_SCORES = tuple(_activity_score(v, _N1, 0.5, 0.78) for v in range(_N1 + 1))
_MEDIUM_SCORES = tuple(_activity_score(v, _N2, 0.5, 24.0) for v in range(_N2 + 1))
_LONG_SCORES = tuple(_activity_score(v, _N3, 0.5, 47.0) for v in range(_N3 + 1))


class _Speaker:
    """Per-producer state: a 1 s ring of 20 ms levels (volume 0..127, 127 loudest) and the three
    time scales derived from it (mediasoup ``ActiveSpeakerObserver::Speaker``)."""

    __slots__ = ("paused", "idle", "immediate_score", "medium_score", "long_score", "last_level_change_ms",
                 "min_level", "next_min_level", "next_min_level_window_len", "immediates", "mediums",
                 "longs", "levels", "next_level_index")

    def __init__(self, now_ms: int, paused: bool) -> None:
        self.paused = paused
        self.idle = False           # no level for over an hour (cleared by the next level)
        self.immediate_score = _MIN_ACTIVITY_SCORE
        self.medium_score = _MIN_ACTIVITY_SCORE
        self.long_score = _MIN_ACTIVITY_SCORE
        self.last_level_change_ms = now_ms
        self.min_level = _MIN_LEVEL
        self.next_min_level = _MIN_LEVEL
        self.next_min_level_window_len = 0
        self.immediates = bytearray(_LEVELS_LEN)   # index 0 = most recent
        self.mediums = bytearray(_N3)
        self.longs = bytearray(1)
        self.levels = bytearray(_LEVELS_LEN)       # circular, next write at next_level_index
        self.next_level_index = 0

    def level_changed(self, volume: int, now_ms: int) -> None:
        """Record ``volume`` (0..127) received at ``now_ms``; a gap of k*20 ms repeats it k times
        (up to 50), which covers paused producers, longer packetisation and DTX."""
        last = self.last_level_change_ms
        if now_ms < last:
            return
        self.last_level_change_ms = now_ms
        self.idle = False
        if volume > _MAX_LEVEL:
            volume = _MAX_LEVEL
        elif volume < _MIN_LEVEL:
            volume = _MIN_LEVEL
        n = (now_ms - last) // _LEVEL_PERIOD_MS
        if n < 1:
            n = 1
        elif n > _LEVELS_LEN:
            n = _LEVELS_LEN
        levels = self.levels
        i = self.next_level_index
        for _ in range(n):
            levels[i] = volume
            i += 1
            if i == _LEVELS_LEN:
                i = 0
        self.next_level_index = i
        if volume != _MIN_LEVEL:
            self._update_min_level(volume)

    def _update_min_level(self, volume: int) -> None:
        # The noise floor: the lowest non-zero volume, raised slowly (geometric mean with the
        # lowest volume of each following 15 s window).
        if self.min_level == _MIN_LEVEL or self.min_level > volume:
            self.min_level = volume
            self.next_min_level = _MIN_LEVEL
            self.next_min_level_window_len = 0
        elif self.next_min_level == _MIN_LEVEL:
            self.next_min_level = volume
            self.next_min_level_window_len = 1
        else:
            if self.next_min_level > volume:
                self.next_min_level = volume
            self.next_min_level_window_len += 1
            if self.next_min_level_window_len >= _MIN_LEVEL_WINDOW_LEN:
                new_min = int(math.sqrt(self.min_level * self.next_min_level))
                self.min_level = min(max(new_min, _MIN_LEVEL), _MAX_LEVEL)
                self.next_min_level = _MIN_LEVEL
                self.next_min_level_window_len = 0

    def eval_activity_scores(self) -> None:
        """Recompute the immediates, and the mediums and longs when their inputs changed, and the
        three activity scores from the newest sub-unit of each time scale."""
        if not self._compute_immediates():
            return
        self.immediate_score = _IMMEDIATE_SCORES[self.immediates[0]]
        if not _compute_bigs(self.immediates, self.mediums, _MEDIUM_THRESHOLD):
            return
        self.medium_score = _MEDIUM_SCORES[self.mediums[0]]
        if not _compute_bigs(self.mediums, self.longs, _LONG_THRESHOLD):
            return
        self.long_score = _LONG_SCORES[self.longs[0]]

    def _compute_immediates(self) -> bool:
        # Levels less than one sub-unit above the noise floor count as silence; the rest are
        # quantised into N1 sub-bands. immediates[0] is the newest level.
        floor = self.min_level + _SUBUNIT_LENGTH_N1
        levels = self.levels
        immediates = self.immediates
        idx = self.next_level_index
        changed = False
        for i in range(_LEVELS_LEN):
            idx -= 1
            if idx < 0:
                idx = _LEVELS_LEN - 1
            level = levels[idx]
            immediate = 0 if level < floor else level // _SUBUNIT_LENGTH_N1
            if immediates[i] != immediate:
                immediates[i] = immediate
                changed = True
        return changed

    def level_timed_out(self, now_ms: int) -> None:
        """No level for more than 40 ms: record silence for the gap."""
        self.level_changed(_MIN_LEVEL, now_ms)


def _compute_bigs(littles: bytearray, bigs: bytearray, threshold: int) -> bool:
    """Each big sub-unit counts the little ones of its group that are above ``threshold``."""
    per_big = len(littles) // len(bigs)
    changed = False
    for b in range(len(bigs)):
        start = b * per_big
        total = 0
        for v in littles[start:start + per_big]:
            if v > threshold:
                total += 1
        if bigs[b] != total:
            bigs[b] = total
            changed = True
    return changed


class ActiveSpeakerObserverLogic:
    """mediasoup ``ActiveSpeakerObserver``: emits ``("dominantspeaker", producer_id)`` when the
    dominant speaker changes.

    ``interval_ms`` (int, default 300) is clamped to 100..5000 ms as the worker does; ``now_ms`` is
    the creation time (first tick at ``now_ms + interval_ms``). Raises TypeError for a non-int.

    Each producer keeps the last second of 20 ms audio levels (volume = ``127 - level_dbov``). At each
    tick (mediasoup ``Update``): producers silent for more than 40 ms get silence written for the gap
    (non-dominant producers without a level for over an hour are set aside until their next level,
    as Jitsi does; mediasoup marks them paused for good, see :meth:`_timeout_idle_levels`); then
    the levels above the speaker's noise floor are quantised into 13 sub-bands ("immediates", 50 of
    them), grouped by 5 into "mediums" (count of immediates > 7) and by 10 into a "long" (count of
    mediums > 4), and each scale's newest value gives an activity score (Volfin & Cohen, with
    ``p=0.5`` and ``lambda`` 0.78 / 24 / 47). A challenger replaces the dominant speaker when the log
    ratios of its scores to the dominant's exceed ``C1=3`` (immediate), ``C2=2`` (medium) and ``C3=0``
    (long); among several, the one with the largest medium ratio wins. With one producer it is the
    dominant speaker; with several and none dominant yet, the first added becomes dominant unless a
    challenger beats it. Paused producers never challenge.

    Removing the dominant producer re-runs the update at once (its event is returned by
    :meth:`remove_producer`). While the observer is paused its timer is stopped and levels are ignored.
    """

    __slots__ = ("interval_ms", "_timer", "_speakers", "_dominant_id", "_paused",
                 "_last_level_idle_ms", "_now_ms")

    MIN_INTERVAL_MS = 100
    MAX_INTERVAL_MS = 5000

    def __init__(self, interval_ms: int = 300, *, now_ms: int = 0) -> None:
        _check_int("interval_ms", interval_ms)
        _check_now(now_ms)
        self.interval_ms = min(max(interval_ms, self.MIN_INTERVAL_MS), self.MAX_INTERVAL_MS)
        self._timer = _PeriodicTimer(self.interval_ms, now_ms)
        self._speakers: dict[str, _Speaker] = {}
        self._dominant_id: str | None = None
        self._paused = False
        self._last_level_idle_ms: int | None = None
        self._now_ms = now_ms

    # -- state ------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    @property
    def dominant_speaker_id(self) -> str | None:
        """The producer id last announced as dominant speaker, or None."""
        return self._dominant_id

    @property
    def producer_ids(self) -> list[str]:
        """Ids of the added producers, in the order they were added."""
        return list(self._speakers)

    def activity_scores(self, producer_id: str) -> tuple[float, float, float]:
        """``(immediate, medium, long)`` activity scores of a producer as of the last evaluation
        (for inspection and notebooks). Raises KeyError for an unknown producer."""
        s = self._speakers[producer_id]
        return (s.immediate_score, s.medium_score, s.long_score)

    def next_timer_ms(self) -> int | None:
        """When :meth:`on_timer` is next due (monotonic ms), or None while paused."""
        return self._timer.due_ms

    # -- producers --------------------------------------------------------------------------------

    def add_producer(self, producer_id: str, *, paused: bool = False,
                     now_ms: int | None = None) -> None:
        """Observe an (audio) producer; ``paused`` is its current paused state; ``now_ms`` (default:
        the latest time this object was given) starts its level clock.

        Raises TypeError for a bad ``producer_id``, ValueError if it was already added (mediasoup
        "Producer already in map").
        """
        _check_producer_id(producer_id)
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if producer_id in self._speakers:
            raise ValueError(f"producer_id {producer_id!r} already added")
        self._speakers[producer_id] = _Speaker(self._now_ms, bool(paused))

    def remove_producer(self, producer_id: str, now_ms: int | None = None) -> list[tuple]:
        """Forget a producer (unknown ids are ignored). If it was the dominant speaker the update runs
        at once and its events are returned (e.g. ``[("dominantspeaker", other_id)]``)."""
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if self._speakers.pop(producer_id, None) is None:
            return []
        if producer_id == self._dominant_id:
            self._dominant_id = None
            return self._update(self._now_ms)
        return []

    def producer_paused(self, producer_id: str) -> None:
        """The producer was paused: it can no longer become dominant (mediasoup ``ProducerPaused``)."""
        s = self._speakers.get(producer_id)
        if s is not None:
            s.paused = True

    def producer_resumed(self, producer_id: str) -> None:
        """The producer was resumed (mediasoup ``ProducerResumed``)."""
        s = self._speakers.get(producer_id)
        if s is not None:
            s.paused = False

    # -- observer pause/resume --------------------------------------------------------------------

    def pause(self, now_ms: int | None = None) -> list[tuple]:
        """Pause: stop the timer and ignore levels. Returns ``[]``."""
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if not self._paused:
            self._paused = True
            self._timer.stop()
        return []

    def resume(self, now_ms: int | None = None) -> list[tuple]:
        """Resume: the timer restarts, first tick at ``now_ms + interval_ms`` (``now_ms`` defaults to
        the latest time this object was given). Returns ``[]``."""
        if now_ms is not None:
            self._now_ms = _check_now(now_ms)
        if self._paused:
            self._paused = False
            self._timer.restart(self._now_ms)
        return []

    # -- per packet -------------------------------------------------------------------------------

    def on_audio_level(self, producer_id: str, level_dbov: int, voice: bool, now_ms: int) -> None:
        """One RFC 6464 audio level (0..127, ``-level_dbov`` dBov) of a packet of ``producer_id``
        received at ``now_ms``; ``voice`` is ignored as in mediasoup. Per-packet path, trusted input;
        unknown producers and levels while paused are ignored."""
        if self._paused:
            return
        s = self._speakers.get(producer_id)
        if s is not None:
            self._now_ms = now_ms
            s.level_changed(_MAX_LEVEL - level_dbov, now_ms)

    # -- timer ------------------------------------------------------------------------------------

    def on_timer(self, now_ms: int) -> list[tuple]:
        """Run the periodic update if due at ``now_ms``; returns ``[("dominantspeaker", producer_id)]``
        when the dominant speaker changed, else ``[]``."""
        self._now_ms = now_ms
        if not self._timer.fire(now_ms):
            return []
        return self._update(now_ms)

    def _update(self, now_ms: int) -> list[tuple]:
        last_idle = self._last_level_idle_ms
        if last_idle is None or now_ms - last_idle >= _LEVEL_IDLE_TIMEOUT_MS:
            if last_idle is not None:
                self._timeout_idle_levels(now_ms)
            self._last_level_idle_ms = now_ms
        if self._speakers and self._calculate_active_speaker():
            return [(EVENT_DOMINANT_SPEAKER, self._dominant_id)]
        return []

    def _timeout_idle_levels(self, now_ms: int) -> None:
        # A speaker's level clock advances at every tick (silence is written for the gap), so the
        # one-hour idle case only arises when the observer itself was paused for over an hour.
        # mediasoup then sets ``paused`` on every non-dominant speaker, which nothing but a
        # producer pause/resume clears; Jitsi drops the speaker and re-creates it on its next level.
        # We follow Jitsi's intent: the speaker sits out until it sends a level again.
        dominant_id = self._dominant_id
        for producer_id, s in self._speakers.items():
            idle = now_ms - s.last_level_change_ms
            if idle > _SPEAKER_IDLE_TIMEOUT_MS and producer_id != dominant_id:
                s.idle = True
            elif idle > _LEVEL_IDLE_TIMEOUT_MS:
                s.level_timed_out(now_ms)

    def _calculate_active_speaker(self) -> bool:
        speakers = self._speakers
        dominant_id = self._dominant_id
        if len(speakers) == 1:
            new_id: str | None = next(iter(speakers))
        else:
            if dominant_id is None:
                new_id = next(iter(speakers))
                dominant = speakers[new_id]
            else:
                new_id = None
                dominant = speakers[dominant_id]
            dominant.eval_activity_scores()
            best_c2 = _C2
            log = math.log
            for producer_id, s in speakers.items():
                if producer_id == dominant_id or s.paused or s.idle:
                    continue
                s.eval_activity_scores()
                c1 = log(s.immediate_score / dominant.immediate_score)
                c2 = log(s.medium_score / dominant.medium_score)
                c3 = log(s.long_score / dominant.long_score)
                if c1 > _C1 and c2 > _C2 and c3 > _C3 and c2 > best_c2:
                    best_c2 = c2
                    new_id = producer_id
        if new_id is not None and new_id != dominant_id:
            self._dominant_id = new_id
            return True
        return False


# ---------------------------------------------------------------------------------------------------
# In-actor RtpObserver (the Router's object that wraps one of the logics above)
# ---------------------------------------------------------------------------------------------------

OBSERVER_TYPE_AUDIO_LEVEL = "audiolevel"
OBSERVER_TYPE_ACTIVE_SPEAKER = "activespeaker"


class RtpObserver:
    """mediasoup ``RTC::RtpObserver`` inside the WorkerActor: one observer of a Router.

    ``type`` is ``"audiolevel"`` (``logic`` an :class:`AudioLevelObserverLogic`) or
    ``"activespeaker"`` (an :class:`ActiveSpeakerObserverLogic`). The Router keeps it in
    ``router.rtp_observers`` (id -> RtpObserver); each held (in-actor) Producer lists it in
    ``producer.rtp_observers`` and feeds ``logic.on_audio_level`` with the RFC 6464 level of
    every packet it receives while not paused (see ``Producer._feed_rtp_observers``).

    The WorkerActor's tick runs :meth:`on_timer` once ``now_ms >= timer_due_ms``; events go to
    the driver through ``worker.emit(observer_id, event, data)``:

    - ``("volumes", [{"producerId": str, "volume": int dBov}, ...])`` loudest first;
    - ``("silence", None)``;
    - ``("dominantspeaker", {"producerId": str})``.

    A producer's pause/resume is picked up at the next tick (mediasoup ``ProducerPaused`` /
    ``ProducerResumed``: the audio-level observer drops the partial sum, a paused producer cannot
    become the dominant speaker); a closed producer is removed at once
    (:meth:`producer_closed`, mediasoup ``Router::OnTransportProducerClosed``).
    """

    __slots__ = ("id", "type", "router", "logic", "producers", "_producer_paused", "closed")

    def __init__(self, router: Any, observer_id: str, type_: str, logic: Any) -> None:
        self.id = observer_id
        self.type = type_
        self.router = router
        self.logic = logic
        self.producers: dict[str, Any] = {}          # producer id -> in-actor Producer, add order
        self._producer_paused: dict[str, bool] = {}  # paused state last given to the logic
        self.closed = False

    @property
    def paused(self) -> bool:
        """True between ``pause`` and ``resume`` of the observer."""
        return self.logic.paused

    @property
    def timer_due_ms(self) -> int | None:
        """When :meth:`on_timer` next has work (monotonic ms), None while paused."""
        return self.logic.next_timer_ms()

    def _emit(self, events: list) -> None:
        emit = self.router.worker.emit
        for event, data in events:
            if event == EVENT_VOLUMES:
                emit(self.id, event, [{"producerId": pid, "volume": vol} for pid, vol in data])
            elif event == EVENT_DOMINANT_SPEAKER:
                emit(self.id, event, {"producerId": data})
            else:
                emit(self.id, event, None)

    def add_producer(self, producer: Any, now_ms: int) -> None:
        """Hold ``producer`` (an in-actor audio Producer of the same router).

        Raises TypeError "producer_id: not an audio producer" for video (mediasoup
        ``RtpObserver::AddProducer``); adding a held producer again is a no-op for the audio-level
        observer and ValueError for the active-speaker one (as mediasoup)."""
        if producer.kind != "audio":
            raise TypeError("producer_id: not an audio producer")
        if producer.id in self.producers:
            if self.type == OBSERVER_TYPE_ACTIVE_SPEAKER:
                raise ValueError(f"producer_id {producer.id!r} already added")
            return
        if self.type == OBSERVER_TYPE_ACTIVE_SPEAKER:
            self.logic.add_producer(producer.id, paused=producer.paused, now_ms=now_ms)
        else:
            self.logic.add_producer(producer.id, paused=producer.paused)
        self.producers[producer.id] = producer
        self._producer_paused[producer.id] = producer.paused
        producer.rtp_observers.append(self)

    def remove_producer(self, producer: Any, now_ms: int) -> None:
        """Release ``producer`` (no-op when not held); may emit ``dominantspeaker`` at once when it
        was the dominant speaker (mediasoup ``ActiveSpeakerObserver::RemoveProducer``)."""
        if self.producers.pop(producer.id, None) is None:
            return
        self._producer_paused.pop(producer.id, None)
        try:
            producer.rtp_observers.remove(self)
        except ValueError:
            pass
        if self.type == OBSERVER_TYPE_ACTIVE_SPEAKER:
            self._sync_paused()
            self._emit(self.logic.remove_producer(producer.id, now_ms))
        else:
            self._emit(self.logic.remove_producer(producer.id))

    def producer_closed(self, producer: Any, now_ms: int) -> None:
        """The producer was closed: release it (no event to the driver but a possible
        ``dominantspeaker`` for the next speaker)."""
        self.remove_producer(producer, now_ms)

    def pause(self, now_ms: int) -> None:
        """Pause the observer (the audio-level observer emits ``silence`` unless silent already)."""
        self._emit(self.logic.pause(now_ms))

    def resume(self, now_ms: int) -> None:
        """Resume the observer; the next tick is ``interval`` after ``now_ms``."""
        self._emit(self.logic.resume(now_ms))

    def _sync_paused(self) -> None:
        # Producer pause/resume reach the logic here (cheap: one bool compare per held producer).
        known = self._producer_paused
        for pid, producer in self.producers.items():
            paused = producer.paused
            if known[pid] != paused:
                known[pid] = paused
                if paused:
                    self.logic.producer_paused(pid)
                else:
                    self.logic.producer_resumed(pid)

    def on_timer(self, now_ms: int) -> None:
        """Tick: run the logic's periodic update if due and emit its events."""
        self._sync_paused()
        events = self.logic.on_timer(now_ms)
        if events:
            self._emit(events)

    def close(self) -> None:
        """Release every producer; the Router forgets this observer (``Router.close_rtp_observer``)."""
        if self.closed:
            return
        self.closed = True
        for producer in self.producers.values():
            try:
                producer.rtp_observers.remove(self)
            except ValueError:
                pass
        self.producers.clear()
        self._producer_paused.clear()

    def dump(self) -> dict:
        """``{"id", "type", "paused", "producerIds", "interval"}`` plus ``maxEntries``/``threshold``
        (audio level) or ``dominantProducerId`` (active speaker)."""
        out = {"id": self.id, "type": self.type, "paused": self.paused, "producerIds": list(self.producers),
               "interval": self.logic.interval_ms}
        if self.type == OBSERVER_TYPE_AUDIO_LEVEL:
            out["maxEntries"] = self.logic.max_entries
            out["threshold"] = self.logic.threshold
        else:
            out["dominantProducerId"] = self.logic.dominant_speaker_id
        return out


def create_rtp_observer(router: Any, type_: str, options: dict, now_ms: int) -> RtpObserver:
    """Build an :class:`RtpObserver` from channel options (mediasoup's JSON names):
    ``"audiolevel"``: ``{"maxEntries": int 1..65535 = 1, "threshold": int -127..0 dBov = -80,
    "interval": int ms = 1000 (clamped 250..5000)}``; ``"activespeaker"``: ``{"interval": int ms =
    300 (clamped 100..5000)}``. Raises TypeError/ValueError naming the field (snake_case),
    TypeError for an unknown ``type_``."""
    import uuid

    if not isinstance(options, dict):
        raise TypeError("options must be a dict")
    observer_id = str(uuid.uuid4())
    if type_ == OBSERVER_TYPE_AUDIO_LEVEL:
        logic: Any = AudioLevelObserverLogic(max_entries=options.get("maxEntries", 1),
                                             threshold=options.get("threshold", -80),
                                             interval_ms=_interval(options, 1000), now_ms=now_ms)
    elif type_ == OBSERVER_TYPE_ACTIVE_SPEAKER:
        logic = ActiveSpeakerObserverLogic(interval_ms=_interval(options, 300), now_ms=now_ms)
    else:
        raise TypeError(f"type must be 'audiolevel' or 'activespeaker', got {type_!r}")
    return RtpObserver(router, observer_id, type_, logic)


def _interval(options: dict, default: int) -> int:
    value = options.get("interval", default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"interval must be an int (ms), got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"interval must be >= 0 ms, got {value}")
    return value
