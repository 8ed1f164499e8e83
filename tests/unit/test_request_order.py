"""WorkerCore starts a channel's requests in the order the channel numbered them, whatever order
Ray runs the async actor's tasks in (it does not promise submission order for async actors); a
predecessor that never comes is given up on after REQUEST_ORDER_WAIT_S and counted."""

from __future__ import annotations

import asyncio

from raysfu.actors import worker as worker_module
from raysfu.actors.worker import WorkerCore


async def _run(core: WorkerCore, arrivals: list[tuple[str, int]], gap_s: float = 0.0) -> list[tuple[str, int]]:
    started: list[tuple[str, int]] = []

    async def one(channel: str, seq: int) -> None:
        await core._in_order(channel, seq)
        started.append((channel, seq))

    tasks = []
    for channel, seq in arrivals:  # each task is created (and runs) in arrival order
        tasks.append(asyncio.ensure_future(one(channel, seq)))
        await asyncio.sleep(gap_s)
    await asyncio.gather(*tasks)
    return started


async def test_requests_start_in_seq_order_per_channel():
    core = WorkerCore({})
    started = await _run(core, [("a", 2), ("b", 0), ("a", 0), ("b", 2), ("a", 1), ("b", 1), ("a", 3)])
    assert [s for c, s in started if c == "a"] == [0, 1, 2, 3]
    assert [s for c, s in started if c == "b"] == [0, 1, 2]
    assert core.request_order_timeouts == 0 and not core._seq_waiters


async def test_a_missing_predecessor_is_given_up_on_and_counted(monkeypatch):
    monkeypatch.setattr(worker_module, "REQUEST_ORDER_WAIT_S", 0.05)
    core = WorkerCore({})
    started = await _run(core, [("a", 1), ("a", 2)], gap_s=0.02)  # seq 0 never arrives
    assert started == [("a", 1), ("a", 2)]
    assert core.request_order_timeouts == 1  # seq 2 was released by seq 1, not by its own timeout
    late = await _run(core, [("a", 0)])  # arrives after all: starts at once
    assert late == [("a", 0)]
