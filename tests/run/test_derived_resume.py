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

from conftest import run_fixture
from repro.run.epoch_metrics import is_time_field

KILL = "REPRO_FAULT_KILL_AT_STEP"
DERIVED = ["train.derived_metrics=true", "train.monitor=train_ppl"]


def rows(run, split: str = "epoch") -> list[dict]:
    """The run's metrics rows of ``split``, without their timing."""
    out = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if not is_time_field(k)} for r in out if r["split"] == split
    ]


@pytest.fixture(scope="module")
def derived_run(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("derived") / "run", *DERIVED)


@pytest.mark.slow
def test_derived_metrics_and_the_unit_reach_rows_lines_and_the_monitor(derived_run):
    lines = [
        json.loads(line) for line in (derived_run.dir / "metrics.jsonl").read_text().splitlines()
    ]
    epochs = [r for r in lines if r["split"] == "epoch"]
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
