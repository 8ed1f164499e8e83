"""The notebooks run top to bottom (nbclient, a real ipykernel) against the test session's Ray.

``cluster.ipynb`` spreads one room over two workers and plots their load: the run checks that
every subscriber got every packet and that both workers forwarded. (Its own module: the notebook
starts two workers, both CPUs of the session's Ray.)"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = pytest.mark.timeout(300)


def run_notebook(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_cluster_notebook_spreads_a_room_over_two_workers(ray_session):
    import ray

    nb = run_notebook(NOTEBOOKS / "cluster.ipynb", {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAYSFU_NB_SECONDS": "4",
    })
    text = outputs_text(nb)
    placement = next(line for line in text.splitlines() if line.startswith("transport -> worker pid:"))
    pids = set(eval(placement.split(":", 1)[1]).values())  # noqa: S307 - our own printed dict
    assert len(pids) == 2, placement
    received = next(line for line in text.splitlines() if line.startswith("packets received per subscriber:"))
    counts = eval(received.split(":", 1)[1].split("sent")[0])  # noqa: S307
    sent = int(received.rsplit(":", 1)[1])
    assert counts and all(c == 2 * sent for c in counts), received  # two publishers each
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for cell in nb.cells for o in cell.get("outputs", [])), "no plot"
