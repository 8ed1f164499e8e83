"""Two Ray nodes (ray.cluster_utils.Cluster) in a separate process: placement by label and a
producer on node A consumed on node B through pipe_to_router, plain and with SRTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_producer_on_node_a_consumed_on_node_b():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multinode" / "two_nodes.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK two nodes" in proc.stdout
