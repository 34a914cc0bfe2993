"""Epoch metrics: sums weighted by samples, the epoch row and line, the monitor, early stopping."""

from __future__ import annotations

import logging

import pytest
import torch

from repro import ConfigValueError
from repro.base.config import RunConfig
from repro.core.distributed import DistInfo
from repro.run.epoch_metrics import EpochMetrics


def metrics(**kw):
    rows: list[dict] = []
    return EpochMetrics(RunConfig(epochs=5, **kw), DistInfo(), log_row=rows.append), rows


def test_epoch_row_holds_sample_weighted_means_then_logged_values_then_timing(caplog):
    m, rows = metrics()
    m.start_epoch()
    m.add(2, {"loss": 1.0, "acc": 0.5})
    m.add(6, {"loss": 3.0, "acc": 1.0})
    m.log(val_acc=torch.tensor(0.75), note="x")
    with caplog.at_level(logging.INFO, logger="repro.run"):
        row = m.end_epoch(epoch=1, step=8, elapsed=2.0, seen=8)
    assert rows == [row]
    assert list(row) == [
        "split",
        "epoch",
        "step",
        "train_loss",
        "train_acc",
        "val_acc",
        "note",
        "time_s",
        "samples_per_s",
    ]
    assert row["train_loss"] == 2.5 and row["train_acc"] == 0.875 and row["val_acc"] == 0.75
    assert row["samples_per_s"] == 4.0
    assert (
        "epoch 2/5  step 8  train_loss 2.5000  train_acc 0.8750  val_acc 0.7500  note x  4 samples/s"
        in caplog.text
    )
    assert m.result() == {"train_loss": 2.5, "train_acc": 0.875, "val_acc": 0.75, "note": "x"}


def test_a_new_epoch_starts_new_sums_unless_a_resume_continues_inside_one():
    m, _ = metrics()
    m.start_epoch()
    m.add(4, {"loss": 1.0})
    m.start_epoch()
    assert m.sums == {"n": 0.0}
    m.restore({"n": 4.0, "loss": 8.0}, {"value": 0.1, "epoch": 2}, mid_epoch=True)
    m.start_epoch()
    assert m.sums == {"n": 4.0, "loss": 8.0}
    assert m.best["value"] == 0.1 and m.best["epoch"] == 2 and m.best["bad_epochs"] == 0
    # Only the first epoch after the resume.
    m.start_epoch()
    assert m.sums == {"n": 0.0}


def watch_sequence(values, mode, patience):
    m, _ = metrics(monitor="val", monitor_mode=mode, early_stopping_patience=patience)
    saved = []
    for epoch, value in enumerate(values):
        if m.stopped:
            break
        m.watch(epoch, {"val": value}, lambda e=epoch: saved.append(e) or True)
    return m, saved


def test_best_weights_are_saved_when_the_monitor_improves_strictly():
    m, saved = watch_sequence([3.0, 2.0, 2.0, 1.0, float("nan")], "min", None)
    assert saved == [0, 1, 3]
    assert m.best == {"value": 1.0, "epoch": 3, "bad_epochs": 1, "stopped": False}
    m, saved = watch_sequence([1.0, 2.0, 1.5], "max", None)
    assert saved == [0, 1] and m.best["value"] == 2.0


def test_early_stopping_after_patience_epochs_without_improvement(caplog):
    with caplog.at_level(logging.INFO, logger="repro.run"):
        m, saved = watch_sequence([1.0, 0.5, 0.6, 0.7, 0.4], "min", 2)
    assert saved == [0, 1] and m.stopped
    assert m.best == {"value": 0.5, "epoch": 1, "bad_epochs": 2, "stopped": True}
    assert (
        "early stopping after epoch 4: val has not improved on 0.5000 (epoch 2) for 2 epoch(s)"
        in caplog.text
    )
    assert m.best_summary() == {
        "monitor": "val",
        "mode": "min",
        "value": 0.5,
        "epoch": 1,
        "stopped_early": True,
        "file": "checkpoints/best.pt",
    }


def test_the_best_line_is_logged_only_when_weights_were_written(caplog):
    m, _ = metrics(monitor="val")
    with caplog.at_level(logging.INFO, logger="repro.run"):
        m.watch(0, {"val": 1.0}, lambda: False)
        assert "best val" not in caplog.text
        m.watch(1, {"val": 0.5}, lambda: True)
    assert "best val 0.5000 at epoch 2: checkpoints/best.pt" in caplog.text


def test_a_monitor_the_rows_do_not_have_names_the_metrics():
    m, _ = metrics(monitor="nope")
    row = {"split": "epoch", "epoch": 0, "step": 3, "train_loss": 1.0, "time_s": 1.0}
    with pytest.raises(
        ConfigValueError, match=r"train.monitor.*a metric of the epoch rows \(train_loss\)"
    ):
        m.watch(0, row, lambda: True)
