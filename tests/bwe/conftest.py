"""Session fixture for the BWE scenario suite: every scenario S0-S9 (research/bwe.md §4.6) x
both controllers (ours and the goog_cc m77 reference port) x 3 seeds, run once per session in
two spawned processes (CI has 2 cores; about 60 s of CPU in all)."""

from __future__ import annotations

import pytest
from raysfu.bwe import scenarios


@pytest.fixture(scope="session")
def bwe_results() -> dict:
    """``{(scenario, controller): {"runs": [...], "median": {...}, "cpu_s": float}}``."""
    return scenarios.run_many(processes=2)
