"""Derived epoch metrics and the unit of throughput in real runs of the fixture experiment
(``train.derived_metrics=true``: ``run.derive`` of train_ppl and val_err, ``run.set_unit("values")``):
the rows and lines carry them, a derived metric is the monitor, and a SIGKILL in the middle of an
epoch followed by a resume gives the same rows, decisions and weights (derived values are not state:
the resume recomputes them from the checkpointed sums)."""

from __future__ import annotations

import json
import math
import re

import pytest

from conftest import FIXTURE_PATH, run_fixture, run_python
from repro.run.epoch_metrics import is_time_field

KILL = "REPRO_FAULT_KILL_AT_STEP"
DERIVED = ["train.derived_metrics=true", "train.monitor=train_ppl"]


def rows_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def rows(run, split: str = "epoch") -> list[dict]:
    """The run's metrics rows of ``split``, without their timing."""
    out = rows_of(run.dir)
    return [
        {k: v for k, v in r.items() if not is_time_field(k)} for r in out if r["split"] == split
    ]


@pytest.fixture(scope="module")
def derived_run(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("derived") / "run", *DERIVED)


@pytest.mark.slow
def test_derived_metrics_and_the_unit_reach_rows_lines_and_the_monitor(derived_run):
    epochs = [r for r in rows_of(derived_run.dir) if r["split"] == "epoch"]
    assert len(epochs) == 3
    for row in epochs:
        assert list(row) == [
            "split",
            "epoch",
            "step",
            "train_loss",
            "train_acc",
            "val_acc",
            "train_ppl",
            "val_err",
            "time_s",
            "values_per_s",
        ]
        assert row["train_ppl"] == math.exp(row["train_loss"])
        assert row["val_err"] == 1 - row["val_acc"]
    out = derived_run.proc.stdout + derived_run.proc.stderr
    assert re.search(
        r"epoch 3/3  step 36  .*val_acc \S+  train_ppl \S+  val_err \S+  \d+ values/s", out
    )
    best = derived_run.manifest["best"]
    ppl = [r["train_ppl"] for r in epochs]
    assert best["monitor"] == "train_ppl" and best["value"] == min(ppl)
    assert best["epoch"] == ppl.index(min(ppl))
    assert derived_run.manifest["result"]["train_ppl"] == ppl[-1]


@pytest.mark.slow
def test_a_sigkill_inside_an_epoch_then_resume_gives_the_same_derived_rows(derived_run, tmp_path):
    """Killed at step 18, in epoch 2 (steps 13 to 24) after its mid-epoch checkpoint of step 15."""
    killed = run_fixture(tmp_path / "run", *DERIVED, env={KILL: "18"}, check=False)
    assert killed.proc.returncode == -9
    resumed = run_fixture(tmp_path / "run", *DERIVED, "train.resume=auto")
    assert resumed.proc.returncode == 0
    assert rows(killed) == rows(derived_run)
    assert rows(killed, "train") == rows(derived_run, "train")
    assert killed.weights == derived_run.weights
    manifest = killed.manifest
    assert manifest["resumes"][-1]["from_step"] == 15
    assert manifest["resume_exact"] is True
    assert manifest["best"] == derived_run.manifest["best"]


PROGRAM = """
import sys
from repro import StateError, start_run
from repro_fixture.loop import train
from repro_fixture.train import register

with start_run(sys.argv[1], overrides=["train.epochs=1"], run_dir=sys.argv[2], register=register) as run:
    run.derive(val_pct=lambda m: 100 * m["val_acc"], bad=lambda m: m["val_loss"])
    try:
        train(run)
    except Exception as exc:
        print(f"FAILED {type(exc).__name__}: {exc}")
    for late in (lambda: run.derive(other=len), lambda: run.set_unit("tokens")):
        try:
            late()
        except StateError as exc:
            print(f"LATE {exc}")
"""


@pytest.mark.slow
def test_a_derived_metric_that_raises_is_one_error_naming_it_and_declaring_late_is_refused(
    tmp_path,
):
    conf = FIXTURE_PATH / "repro_fixture" / "conf"
    done = run_python(tmp_path, PROGRAM, str(conf), str(tmp_path / "run"))
    out = done.stdout.splitlines()
    assert out[0] == (
        "FAILED DerivedMetricError: run.derive(bad=...) at the end of epoch 1 raised KeyError: "
        "'val_loss' (the epoch's metrics: train_loss, train_acc, val_acc, val_pct)"
    ), done.stdout + done.stderr
    assert out[1] == (
        "LATE run.derive(other) after training started: declare them before the first run.epochs()"
    )
    assert out[2] == (
        "LATE run.set_unit('tokens') after training started: set it before the first run.epochs()"
    )
    # The row of the epoch whose derived metric failed is not written.
    assert not [r for r in rows_of(tmp_path / "run") if r["split"] == "epoch"]
