"""benchmarks/bwe_table.py: its ablation switch (``--set``) reaches the controller, and refuses
what is not a controller constant."""

import argparse

import pytest
from benchmarks import bwe_table
from raysfu.bwe import controller, scenarios


def test_set_overrides_a_controller_constant_and_changes_the_result(monkeypatch):
    monkeypatch.setattr(controller, "QUEUE_OVERUSE_MS", controller.QUEUE_OVERUSE_MS)
    on = scenarios.run_many(["S4"], ["raysfu"], seeds=(2,), processes=1)
    bwe_table.apply_settings({"QUEUE_OVERUSE_MS": 1e9})  # change 6 off
    assert controller.QUEUE_OVERUSE_MS == 1e9
    off = scenarios.run_many(["S4"], ["raysfu"], seeds=(2,), processes=1)
    q_on, q_off = (r[("S4", "raysfu")]["median"]["qdelay_p95_ms"] for r in (on, off))
    assert q_on < q_off  # seed 2's slow queue build-up is what change 6 catches


def test_set_refuses_names_that_are_not_constants():
    with pytest.raises(ValueError, match="not a numeric constant"):
        bwe_table.apply_settings({"RaysfuController": 1.0})
    with pytest.raises(ValueError, match="NO_SUCH_CONSTANT"):
        bwe_table.apply_settings({"NO_SUCH_CONSTANT": 1.0})
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        bwe_table._setting("QUEUE_OVERUSE_MS")
    assert bwe_table._setting("QUEUE_OVERUSE_MS=20") == ("QUEUE_OVERUSE_MS", 20.0)
