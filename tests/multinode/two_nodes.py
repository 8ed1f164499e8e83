"""Run as a script (the test starts it in its own process, since it needs its own Ray):
a ray.cluster_utils.Cluster with a CPU-less head and two 1-CPU nodes labelled as media nodes;
create_workers() places one WorkerActor per node; a producer on node A is consumed on node B
through pipe_to_router (plain, then SRTP); every sequence number must arrive with the consumer's
SSRC. Prints "OK ..." and exits 0 on success."""

from __future__ import annotations

import asyncio
import os
import sys

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from raysfu.actors import create_workers  # noqa: E402
from raysfu.transport.rtp import parse_rtp_header  # noqa: E402
from tests.integration.conftest import wait_for  # noqa: E402
from tests.integration.test_forwarding import vp8  # noqa: E402
from tests.integration.test_pipe import piped_room  # noqa: E402

async def check(workers, enable_srtp: bool, start_seq: int) -> None:
    _, wb = workers
    ra, rb, pub, sub, producer, consumer, _ = await piped_room(workers, enable_srtp=enable_srtp)
    n = 200
    for i in range(n):
        pub.send_rtp(vp8(start_seq + i, 3000 * i, key=(i == 0)))
        if i % 20 == 19:
            await asyncio.sleep(0.01)
    assert await wait_for(lambda: len(sub.received_rtp) == n, 10.0), f"{len(sub.received_rtp)} of {n} arrived"
    ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
    seqs = [parse_rtp_header(p)[2] for p in sub.received_rtp]
    assert all(parse_rtp_header(p)[4] == ssrc for p in sub.received_rtp)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:])), "gap in the sequence"
    load = await wb.get_load()
    assert load["consumers"] >= 1 and load["packetsOutPerSecond"] > 0, load
    for p in (pub, sub):
        p.close()
    ra.close()
    rb.close()


async def main() -> None:
    workers = await create_workers(node_labels={"sfu-role": "media"})
    assert len(workers) == 2, workers
    assert workers[0].node_id != workers[1].node_id
    await check(workers, False, 65400)
    await check(workers, True, 100)
    for w in workers:
        w.close()
    await asyncio.sleep(0.5)
    print(f"OK two nodes {workers[0].node_id[:8]} {workers[1].node_id[:8]}")


if __name__ == "__main__":
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    cluster.add_node(num_cpus=1, labels={"sfu-role": "media"})
    cluster.add_node(num_cpus=1, labels={"sfu-role": "media"})
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        asyncio.run(main())
    finally:
        ray.shutdown()
        cluster.shutdown()
    sys.exit(0)
