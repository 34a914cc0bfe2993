"""The job count behind a sweep's "sweep job i/N" lines (``repro.launch.sweep``); the lines themselves
are checked on real sweeps (tests/e2e/test_multirun.py, tests/tools/test_report.py)."""

from __future__ import annotations

from repro.launch.sweep import sweep_size


def test_the_count_is_the_product_of_the_swept_values():
    assert sweep_size(["repro.seed=0,1,2", "model.dropout=0.1,0.2", "train.epochs=2"]) == 6
    assert sweep_size(["repro.seed=range(4)"]) == 4
    assert sweep_size([]) == 1


def test_the_command_line_wins_over_sweeper_params_for_the_same_key():
    params = {"repro.seed": "0,1,2", "model.dropout": "0.1,0.2"}
    assert sweep_size(["repro.seed=5"], params) == 2
    assert sweep_size([], params) == 6


def test_no_count_for_a_sweep_a_sampler_draws_or_a_line_that_does_not_parse():
    assert sweep_size(["optimizer.lr=interval(0.001,0.1)"]) is None
    assert sweep_size(["repro.seed=[0,1"]) is None
