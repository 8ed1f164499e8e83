"""KeyFrameRequestManager: at most one PLI/FIR per second per SSRC, on a fake clock."""

import pytest

from raysfu.transport.keyframe import KEYFRAME_RETRANSMISSION_WAIT_MS, KeyFrameRequestManager


def run(mgr, ssrc, events, until_ms, step_ms=10):
    """Drive the manager: ``events`` maps time -> list of actions ("req", "kf", "force").
    Returns the times at which a PLI/FIR went out for ``ssrc``."""
    sent = []
    for now in range(0, until_ms + 1, step_ms):
        due = mgr.next_timer_ms()
        if due is not None and due <= now:
            if ssrc in mgr.on_timer(now):
                sent.append(now)
        for action in events.get(now, ()):
            if action == "req" and mgr.request(ssrc, now):
                sent.append(now)
            elif action == "force" and mgr.force_request(ssrc, now):
                sent.append(now)
            elif action == "kf":
                mgr.on_keyframe(ssrc, now)
    return sent


def test_first_request_goes_out_at_once():
    mgr = KeyFrameRequestManager()
    assert mgr.request(1, 0) is True
    assert mgr.request(2, 0) is True  # independent per SSRC
    assert mgr.requests_sent == 2


def test_throttled_to_one_per_second_under_constant_requests():
    mgr = KeyFrameRequestManager()
    events = {t: ["req"] for t in range(0, 5001, 20)}  # a request every 20 ms, no keyframe
    sent = run(mgr, 7, events, 5000)
    assert sent[0] == 0
    assert all(b - a >= KEYFRAME_RETRANSMISSION_WAIT_MS for a, b in zip(sent, sent[1:]))
    assert len(sent) == 6  # 0, 1000, ..., 5000


def test_single_request_is_not_retried_when_no_one_asks_again():
    mgr = KeyFrameRequestManager()
    sent = run(mgr, 7, {0: ["req"]}, 3000)
    assert sent == [0]
    assert mgr.next_timer_ms() is None


def test_request_during_wait_retries_once_at_timeout():
    mgr = KeyFrameRequestManager()
    sent = run(mgr, 7, {0: ["req"], 300: ["req"], 600: ["req"]}, 3000)
    assert sent == [0, 1000]


def test_keyframe_clears_pending_so_next_request_goes_out():
    mgr = KeyFrameRequestManager()
    sent = run(mgr, 7, {0: ["req"], 200: ["req", "kf"], 400: ["req"]}, 2000)
    # The keyframe at 200 ended the wait; the request at 400 goes out at once.
    assert sent == [0, 400]


def test_keyframe_after_rerequest_cancels_retry():
    mgr = KeyFrameRequestManager()
    sent = run(mgr, 7, {0: ["req"], 100: ["req"], 500: ["kf"]}, 3000)
    assert sent == [0]


def test_delay_coalesces_requests():
    mgr = KeyFrameRequestManager(key_frame_request_delay_ms=500)
    sent = run(mgr, 7, {0: ["req"], 100: ["req"], 200: ["req"], 300: ["kf"]}, 3000)
    # First request out at 0; the ones at 100 and 200 are coalesced into the delay window, whose
    # end (500) asks again since the keyframe at 300 already cleared the wait.
    assert sent == [0, 500]


def test_delay_without_further_requests_sends_nothing_more():
    mgr = KeyFrameRequestManager(key_frame_request_delay_ms=500)
    assert run(mgr, 7, {0: ["req"], 50: ["kf"]}, 3000) == [0]


def test_force_request_always_sends():
    mgr = KeyFrameRequestManager()
    assert run(mgr, 7, {0: ["req"], 100: ["force"]}, 900) == [0, 100]


def test_forget_and_validation():
    mgr = KeyFrameRequestManager()
    mgr.request(7, 0)
    mgr.forget(7)
    assert mgr.next_timer_ms() is None
    assert mgr.request(7, 10) is True
    with pytest.raises(ValueError, match="key_frame_request_delay_ms"):
        KeyFrameRequestManager(-1)
