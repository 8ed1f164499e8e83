"""AudioLevelObserverLogic and ActiveSpeakerObserverLogic with a fake clock (plain integer ms)."""

from __future__ import annotations

import pytest

from raysfu.actors.observers import ActiveSpeakerObserverLogic, AudioLevelObserverLogic

QUIET = 100     # RFC 6464 level: -100 dBov, background noise
LOUD = 20       # -20 dBov, speech
SILENT = 127


def drive(obs, start_ms, end_ms, levels, step_ms=20):
    """Feed one audio level per producer every ``step_ms`` in [start_ms, end_ms) and fire the
    timer whenever it is due. ``levels(producer_id, t)`` gives the level or None (no packet).
    Returns [(t, event), ...]."""
    events = []
    t = start_ms
    while t < end_ms:
        for pid in obs.producer_ids:
            level = levels(pid, t)
            if level is not None:
                obs.on_audio_level(pid, level, True, t)
        t += step_ms
        due = obs.next_timer_ms()
        while due is not None and due <= t:
            events.extend((due, e) for e in obs.on_timer(due))
            due = obs.next_timer_ms()
    return events


def feed(obs, pid, levels, now_ms=0):
    for lv in levels:
        obs.on_audio_level(pid, lv, True, now_ms)


# ------------------------------------------------------------------------------------------------
# AudioLevelObserver
# ------------------------------------------------------------------------------------------------


def test_audio_level_defaults_and_clamping():
    o = AudioLevelObserverLogic()
    assert (o.max_entries, o.threshold, o.interval_ms) == (1, -80, 1000)
    assert o.next_timer_ms() == 1000
    assert AudioLevelObserverLogic(interval_ms=10).interval_ms == 250
    assert AudioLevelObserverLogic(interval_ms=60000).interval_ms == 5000
    assert AudioLevelObserverLogic(interval_ms=500, now_ms=7000).next_timer_ms() == 7500


@pytest.mark.parametrize("kwargs, exc, field", [
    ({"max_entries": 0}, ValueError, "max_entries"),
    ({"max_entries": 1.5}, TypeError, "max_entries"),
    ({"max_entries": True}, TypeError, "max_entries"),
    ({"threshold": 1}, ValueError, "threshold"),
    ({"threshold": -128}, ValueError, "threshold"),
    ({"threshold": "-80"}, TypeError, "threshold"),
    ({"interval_ms": None}, TypeError, "interval_ms"),
])
def test_audio_level_validation_names_field(kwargs, exc, field):
    with pytest.raises(exc, match=field):
        AudioLevelObserverLogic(**kwargs)


def test_audio_level_bad_producer_id():
    with pytest.raises(TypeError, match="producer_id"):
        AudioLevelObserverLogic().add_producer(42)


def test_volumes_averaged_and_sorted_loudest_first():
    o = AudioLevelObserverLogic(max_entries=3)
    for pid in ("a", "b", "c"):
        o.add_producer(pid)
    feed(o, "a", [50] * 10)
    feed(o, "b", [30] * 5 + [31] * 5)      # sum 305 / 10 -> integer average 30
    feed(o, "c", [70, 72] * 6)              # 71
    assert o.on_timer(999) == []            # not due yet
    assert o.on_timer(1000) == [("volumes", [("b", -30), ("a", -50), ("c", -71)])]
    assert o.next_timer_ms() == 2000
    # sums reset each interval
    feed(o, "c", [10] * 10, 1500)
    assert o.on_timer(2000) == [("volumes", [("c", -10)])]


def test_needs_ten_levels_per_interval():
    o = AudioLevelObserverLogic()
    o.add_producer("a")
    feed(o, "a", [10] * 9)
    assert o.on_timer(1000) == []           # starts silent: no volumes, no silence event


def test_threshold_and_max_entries():
    o = AudioLevelObserverLogic(max_entries=2, threshold=-60)
    for pid in ("a", "b", "c", "d"):
        o.add_producer(pid)
    feed(o, "a", [61] * 10)                 # -61 < -60: left out
    feed(o, "b", [60] * 10)                 # -60 >= -60: kept
    feed(o, "c", [20] * 10)
    feed(o, "d", [40] * 10)
    assert o.on_timer(1000) == [("volumes", [("c", -20), ("d", -40)])]


def test_silence_emitted_once_until_volumes_again():
    o = AudioLevelObserverLogic(interval_ms=500)
    o.add_producer("a")
    feed(o, "a", [20] * 10)
    assert o.on_timer(500) == [("volumes", [("a", -20)])]
    assert o.on_timer(1000) == [("silence", None)]
    feed(o, "a", [SILENT] * 20)             # below threshold is silence too
    assert o.on_timer(1500) == []
    assert o.on_timer(2000) == []
    feed(o, "a", [20] * 10)
    assert o.on_timer(2500) == [("volumes", [("a", -20)])]
    assert o.on_timer(3000) == [("silence", None)]


def test_pause_emits_silence_once_and_nothing_while_paused():
    o = AudioLevelObserverLogic()
    o.add_producer("a")
    feed(o, "a", [20] * 10)
    assert o.on_timer(1000) == [("volumes", [("a", -20)])]
    feed(o, "a", [20] * 10)
    assert o.pause(1200) == [("silence", None)]
    assert o.pause(1300) == []
    assert o.paused and o.next_timer_ms() is None
    feed(o, "a", [20] * 50, 1400)
    assert o.on_timer(2000) == [] and o.on_timer(5000) == []
    o.resume(5100)
    assert o.next_timer_ms() == 6100
    assert o.on_timer(6100) == []           # levels given while paused were dropped
    feed(o, "a", [25] * 10, 6200)
    assert o.on_timer(7100) == [("volumes", [("a", -25)])]


def test_pause_when_silent_emits_nothing():
    o = AudioLevelObserverLogic()
    assert o.pause(10) == []


def test_removed_or_paused_producer_is_ignored():
    o = AudioLevelObserverLogic(max_entries=5)
    o.add_producer("a")
    o.add_producer("b")
    o.add_producer("c", paused=True)
    feed(o, "unknown", [0] * 10)
    feed(o, "c", [0] * 10)
    o.remove_producer("a")
    feed(o, "a", [0] * 10)
    feed(o, "b", [40] * 10)
    assert o.on_timer(1000) == [("volumes", [("b", -40)])]
    o.producer_resumed("c")
    o.producer_paused("b")
    feed(o, "b", [0] * 10)
    feed(o, "c", [50] * 10)
    assert o.on_timer(2000) == [("volumes", [("c", -50)])]
    assert o.producer_ids == ["b", "c"]


def test_late_timer_rearms_from_firing_time():
    o = AudioLevelObserverLogic(interval_ms=1000)
    o.add_producer("a")
    feed(o, "a", [20] * 10)
    assert o.on_timer(1700) == [("volumes", [("a", -20)])]
    assert o.next_timer_ms() == 2700


def test_audio_level_with_driver_every_20ms():
    o = AudioLevelObserverLogic(max_entries=2)
    o.add_producer("a")
    o.add_producer("b")
    ev = drive(o, 0, 3000, lambda pid, t: 30 if pid == "a" else (60 if t < 2000 else SILENT))
    assert ev == [(1000, ("volumes", [("a", -30), ("b", -60)])),
                  (2000, ("volumes", [("a", -30), ("b", -60)])),
                  (3000, ("volumes", [("a", -30)]))]


# ------------------------------------------------------------------------------------------------
# ActiveSpeakerObserver
# ------------------------------------------------------------------------------------------------


def speaking(schedule):
    """levels(pid, t) for a schedule {pid: [(start_ms, end_ms), ...]} of speech; background otherwise.

    Speech should start after some background so that the speaker's noise floor is learnt (see
    test_noise_floor_is_learnt_from_the_quietest_level)."""
    def levels(pid, t):
        for start, end in schedule.get(pid, ()):
            if start <= t < end:
                return LOUD
        return QUIET
    return levels


def dominant_changes(events):
    return [(t, pid) for t, (name, pid) in events if name == "dominantspeaker"]


def test_active_speaker_interval_validation_and_clamping():
    assert ActiveSpeakerObserverLogic().interval_ms == 300
    assert ActiveSpeakerObserverLogic(interval_ms=1).interval_ms == 100
    assert ActiveSpeakerObserverLogic(interval_ms=9999).interval_ms == 5000
    with pytest.raises(TypeError, match="interval_ms"):
        ActiveSpeakerObserverLogic(interval_ms="300")
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    with pytest.raises(ValueError, match="producer_id"):
        o.add_producer("a")


def test_single_producer_is_dominant_at_first_tick():
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    ev = drive(o, 0, 1000, speaking({}))
    assert dominant_changes(ev) == [(300, "a")]


def test_speaking_producer_becomes_dominant():
    o = ActiveSpeakerObserverLogic()
    for pid in ("a", "b", "c"):
        o.add_producer(pid)
    # Nobody speaks for 2 s: the first added is dominant by default, once.
    ev = drive(o, 0, 2000, speaking({}))
    assert dominant_changes(ev) == [(300, "a")]
    # c starts speaking at 2000 and wins within two intervals.
    ev = drive(o, 2000, 4000, speaking({"c": [(2000, 4000)]}))
    changes = dominant_changes(ev)
    assert len(changes) == 1 and changes[0][1] == "c"
    assert changes[0][0] <= 2000 + 2 * 300
    assert o.dominant_speaker_id == "c"
    imm, med, long_ = o.activity_scores("c")
    assert imm > 1 and med > 1 and long_ > 1
    assert o.activity_scores("b") == (1e-10, 1e-10, 1e-10)


def test_switching_speaker_moves_dominant_speaker():
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")
    sched = {"b": [(200, 3000)], "a": [(3000, 6000)]}
    ev = drive(o, 0, 6000, speaking(sched))
    changes = dominant_changes(ev)
    # b beats the default (first added) candidate at the very first tick.
    assert [pid for _, pid in changes] == ["b", "a"]
    t_b, t_a = changes[0][0], changes[1][0]
    assert t_b <= 200 + 2 * 300
    # a must first out-talk b's last second on the long time scale: a few intervals, < 1 s.
    assert 3000 < t_a <= 3000 + 1000


def test_short_cough_does_not_steal_dominant_speaker():
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")
    # b talks with 300 ms pauses between phrases; a coughs loudly for 200 ms inside two of them.
    sched = {"b": [(200, 2000), (2300, 4000), (4300, 6000)], "a": [(2040, 2240), (4040, 4240)]}
    ev = drive(o, 0, 6000, speaking(sched))
    assert dominant_changes(ev) == [(300, "b")]


def test_cough_loses_on_the_long_time_scale_only():
    # In the talker's pause the cougher wins the immediate and medium scales but not the long one
    # (log ratio C3 must exceed 0): the last second of the talker holds more active mediums.
    o = ActiveSpeakerObserverLogic()
    o.add_producer("talker")
    o.add_producer("cougher")
    drive(o, 0, 2100, speaking({"talker": [(200, 1900)], "cougher": [(1900, 2100)]}))
    assert o.on_timer(2100) == [] and o.dominant_speaker_id == "talker"
    imm_t, med_t, long_t = o.activity_scores("talker")
    imm_c, med_c, long_c = o.activity_scores("cougher")
    assert imm_c > imm_t and med_c > med_t and long_c < long_t


def test_removed_producer_is_forgotten():
    o = ActiveSpeakerObserverLogic()
    for pid in ("a", "b", "c"):
        o.add_producer(pid)
    drive(o, 0, 2000, speaking({"b": [(200, 2000)]}))
    assert o.dominant_speaker_id == "b"
    # Removing a non-dominant producer changes nothing.
    assert o.remove_producer("a", 2000) == []
    # Removing the dominant one re-runs the decision immediately: c remains.
    assert o.remove_producer("b", 2010) == [("dominantspeaker", "c")]
    assert o.producer_ids == ["c"]
    o.on_audio_level("b", LOUD, True, 2020)          # ignored
    assert o.remove_producer("b") == []
    assert o.remove_producer("c", 2030) == []         # nobody left: no event
    assert o.dominant_speaker_id is None
    assert drive(o, 2040, 3000, speaking({})) == []


def test_paused_producer_does_not_challenge():
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b", paused=True)
    ev = drive(o, 0, 2000, speaking({"b": [(200, 2000)]}))
    assert dominant_changes(ev) == [(300, "a")]
    o.producer_resumed("b")
    ev = drive(o, 2000, 3000, speaking({"b": [(200, 3000)]}))
    assert [pid for _, pid in dominant_changes(ev)] == ["b"]
    o.producer_paused("a")
    o.producer_paused("b")                  # the dominant one stays dominant even if paused
    assert drive(o, 3000, 4000, speaking({"a": [(3000, 4000)]})) == []


def test_observer_pause_stops_timer_and_ignores_levels():
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")
    drive(o, 0, 1000, speaking({}))
    assert o.dominant_speaker_id == "a"
    assert o.pause(1000) == []
    assert o.next_timer_ms() is None
    assert drive(o, 1000, 3000, speaking({"b": [(1000, 3000)]})) == []
    assert o.on_timer(5000) == []
    o.resume(3000)
    assert o.next_timer_ms() == 3300
    ev = drive(o, 3000, 5000, speaking({"b": [(3000, 5000)]}))
    assert [pid for _, pid in dominant_changes(ev)] == ["b"]


def test_speaker_without_packets_times_out_to_silence():
    # a talks then stops sending packets at all (DTX / muted mic): b takes over.
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")

    def levels(pid, t):
        if pid == "a":
            return None if t >= 2000 else (LOUD if t >= 200 else QUIET)
        return LOUD if t >= 2000 else QUIET

    ev = drive(o, 0, 4000, levels)
    assert [pid for _, pid in dominant_changes(ev)] == ["a", "b"]


def test_add_producer_uses_latest_time_by_default():
    # A producer's level clock starts when it is added (here the creation time, not 0): b sends
    # nothing for a second, its gap is filled with silence, then it speaks and takes over.
    o = ActiveSpeakerObserverLogic(now_ms=10_000_000)
    o.add_producer("a")
    o.add_producer("b")

    def levels(pid, t):
        if pid == "a" or t < 10_001_000:
            return QUIET if pid == "a" else None
        return QUIET if t < 10_001_100 else LOUD

    ev = drive(o, 10_000_000, 10_003_000, levels)
    assert [pid for _, pid in dominant_changes(ev)] == ["a", "b"]


def test_after_observer_paused_for_an_hour_speakers_compete_again():
    # Paused for over an hour, every non-dominant producer looks idle for over an hour at the first
    # tick after resume. mediasoup would mark them paused for good; here they sit out only until
    # their next level (Jitsi's behaviour), so b can still take over.
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")
    drive(o, 0, 1000, speaking({}))
    assert o.dominant_speaker_id == "a"
    hour = 60 * 60 * 1000
    o.pause(1000)
    o.resume(hour + 2000)
    assert o.on_timer(hour + 2300) == []         # both idle; b set aside, nothing changes
    ev = drive(o, hour + 2300, hour + 5000, speaking({"b": [(hour + 2500, hour + 5000)]}))
    assert [pid for _, pid in dominant_changes(ev)] == ["b"]


def test_noise_floor_is_learnt_from_the_quietest_level():
    # Levels less than one sub-band (10 volume units) above the quietest level seen count as
    # silence: a producer heard only at one constant level never looks active...
    o = ActiveSpeakerObserverLogic()
    o.add_producer("a")
    o.add_producer("b")
    ev = drive(o, 0, 2000, speaking({"b": [(0, 2000)]}))
    assert dominant_changes(ev) == [(300, "a")]
    assert o.activity_scores("b") == (1e-10, 1e-10, 1e-10)
    # ...until a quieter level lowers its floor.
    ev = drive(o, 2000, 4000, speaking({"b": [(2040, 4000)]}))
    assert [pid for _, pid in dominant_changes(ev)] == ["b"]


# ------------------------------------------------------------------------------------------------
# In-actor RtpObserver (what the Router holds), with fake router/producer objects
# ------------------------------------------------------------------------------------------------


class _FakeWorker:
    def __init__(self):
        self.events = []

    def emit(self, target_id, event, data):
        self.events.append((target_id, event, data))


class _FakeProducer:
    def __init__(self, pid, kind="audio"):
        self.id, self.kind, self.paused, self.rtp_observers = pid, kind, False, []


def _fake_router():
    from types import SimpleNamespace
    return SimpleNamespace(worker=_FakeWorker())


def test_rtp_observer_volumes_events_and_producer_pause_sync():
    from raysfu.actors.observers import create_rtp_observer

    router = _fake_router()
    obs = create_rtp_observer(router, "audiolevel", {"maxEntries": 2, "interval": 250}, 0)
    a, b, v = _FakeProducer("a"), _FakeProducer("b"), _FakeProducer("v", "video")
    obs.add_producer(a, 0)
    obs.add_producer(b, 0)
    obs.add_producer(a, 0)  # no-op
    assert a.rtp_observers == [obs] and list(obs.producers) == ["a", "b"]
    with pytest.raises(TypeError, match="audio"):
        obs.add_producer(v, 0)
    feed(obs.logic, "a", [10] * 12)
    feed(obs.logic, "b", [40] * 12)
    obs.on_timer(250)
    assert router.worker.events == [(obs.id, "volumes", [{"producerId": "a", "volume": -10}, {"producerId": "b", "volume": -40}])]
    # a paused producer's partial sum is dropped at the next tick (mediasoup ProducerPaused)
    feed(obs.logic, "a", [10] * 12)
    a.paused = True
    obs.on_timer(500)
    assert router.worker.events[-1] == (obs.id, "silence", None)
    obs.pause(600)
    obs.resume(700)
    assert obs.timer_due_ms == 950
    obs.remove_producer(a, 700)
    assert a.rtp_observers == [] and list(obs.producers) == ["b"]
    obs.close()
    assert b.rtp_observers == [] and obs.producers == {}
    with pytest.raises(ValueError, match="interval"):
        create_rtp_observer(router, "audiolevel", {"interval": -5}, 0)
    with pytest.raises(TypeError, match="type"):
        create_rtp_observer(router, "video", {}, 0)


def test_rtp_observer_closing_the_dominant_producer_names_the_next():
    from raysfu.actors.observers import create_rtp_observer

    router = _fake_router()
    obs = create_rtp_observer(router, "activespeaker", {}, 0)
    a, b = _FakeProducer("a"), _FakeProducer("b")
    obs.add_producer(a, 0)
    obs.add_producer(b, 0)
    with pytest.raises(ValueError, match="already"):
        obs.add_producer(a, 0)
    obs.on_timer(300)
    assert router.worker.events == [(obs.id, "dominantspeaker", {"producerId": "a"})]
    assert obs.dump()["dominantProducerId"] == "a"
    obs.producer_closed(a, 400)
    assert router.worker.events[-1] == (obs.id, "dominantspeaker", {"producerId": "b"})
