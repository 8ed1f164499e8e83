"""notebooks/bwe.ipynb runs top to bottom (nbclient, a real ipykernel) in its fast mode and
draws its plots."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "bwe.ipynb"

pytestmark = pytest.mark.timeout(300)


def test_bwe_notebook_runs_and_plots(monkeypatch):
    monkeypatch.setenv("RAYSFU_NB_FAST", "1")  # the kernel inherits this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pngs = [o for o in outputs if o.get("output_type") == "display_data"
            and "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # S1 and S9 in fast mode
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "S9: fixed thresholds failed: ours []" in text
    assert "U_layer2_share" in text
    assert os.environ.get("RAYSFU_NB_FAST") == "1"
