"""Epoch metrics: sums weighted by samples, the epoch row and line, the monitor, early stopping."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch

from repro import ConfigValueError
from repro.base.config import RunConfig
from repro.core.distributed import DistInfo
from repro.run.epoch_metrics import DerivedMetricError, EpochMetrics, is_time_field
from repro.run.progress import EpochProgress


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


# Derived metrics: declared once, computed at each epoch's end from the row's metrics.


def one_epoch(m, logged=None, epoch=0):
    m.start_epoch()
    m.add(2, {"loss": 1.0})
    m.add(2, {"loss": 3.0})
    m.log(**(logged or {"val_loss": 0.5}))
    return m.end_epoch(epoch=epoch, step=4, elapsed=2.0, seen=4)


def test_derived_metrics_follow_the_means_and_logged_values_in_the_row_and_line(caplog):
    m, rows = metrics()
    m.derive(
        train_ppl=lambda means: math.exp(means["train_loss"]),
        val_ppl=lambda means: torch.tensor(means["val_loss"]).exp(),
        # A later one sees the earlier ones.
        ppl_gap=lambda means: means["train_ppl"] - means["val_ppl"],
    )
    with caplog.at_level(logging.INFO, logger="repro.run"):
        row = one_epoch(m)
    assert list(row) == [
        "split",
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "train_ppl",
        "val_ppl",
        "ppl_gap",
        "time_s",
        "samples_per_s",
    ]
    assert row["train_ppl"] == math.exp(2.0) and type(row["val_ppl"]) is float
    assert row["ppl_gap"] == row["train_ppl"] - row["val_ppl"]
    assert rows == [row] and "train_ppl" in m.result()
    assert f"val_loss 0.5000  train_ppl {math.exp(2.0):.4f}  val_ppl" in caplog.text


def test_a_derived_metric_can_be_the_monitor():
    m, _ = metrics(monitor="train_ppl", early_stopping_patience=1)
    m.derive(train_ppl=lambda means: math.exp(means["train_loss"]))
    saved = []
    for epoch in range(2):
        m.watch(epoch, one_epoch(m, epoch=epoch), lambda e=epoch: saved.append(e) or True)
    assert saved == [0] and m.best["value"] == math.exp(2.0) and m.stopped


def test_a_resume_inside_an_epoch_derives_the_values_of_an_uninterrupted_one():
    whole, _ = metrics()
    whole.derive(train_ppl=lambda means: math.exp(means["train_loss"]))
    expected = one_epoch(whole)
    # The checkpoint after the first batch holds the sums; derived values are not state.
    resumed, _ = metrics()
    resumed.derive(train_ppl=lambda means: math.exp(means["train_loss"]))
    resumed.restore({"n": 2.0, "loss": 2.0}, {}, mid_epoch=True)
    resumed.start_epoch()
    resumed.add(2, {"loss": 3.0})
    resumed.log(val_loss=0.5)
    row = resumed.end_epoch(epoch=0, step=4, elapsed=1.0, seen=2)
    assert {k: v for k, v in row.items() if not is_time_field(k)} == {
        k: v for k, v in expected.items() if not is_time_field(k)
    }


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            lambda means: means["val_acc"],
            r"run.derive\(bad=...\) at the end of epoch 1 raised KeyError: 'val_acc' "
            r"\(the epoch's metrics: train_loss, val_loss\)",
        ),
        (
            lambda means: math.exp(1e6),
            r"run.derive\(bad=...\) at the end of epoch 1 raised OverflowError",
        ),
        (
            lambda means: "high",
            r"run.derive\(bad=...\) at the end of epoch 1 returned 'high' \(str\): expected a number",
        ),
        (lambda means: None, r"run.derive\(bad=...\) .* returned None \(NoneType\)"),
        (lambda means: True, r"run.derive\(bad=...\) .* returned True \(bool\)"),
    ],
)
def test_a_derived_metric_that_raises_or_is_no_number_is_one_error_naming_it(function, message):
    m, rows = metrics()
    m.derive(bad=function)
    with pytest.raises(DerivedMetricError, match=message):
        one_epoch(m)
    # No row half-written.
    assert rows == []


def test_derived_names_are_declared_once_and_never_a_row_field():
    m, _ = metrics()
    m.derive(train_ppl=math.exp)
    for name in ("train_ppl", "step", "time_s", "samples_per_s", "tokens_per_s"):
        with pytest.raises(DerivedMetricError, match=rf"run.derive\({name}=...\): {name} "):
            m.derive(**{name: math.exp})
    with pytest.raises(DerivedMetricError, match=r"expected a function .* got float"):
        m.derive(other=1.0)
    # A name the row already has from run.step or run.log is found when the row is made.
    m, _ = metrics()
    m.derive(val_loss=lambda means: 0.0)
    with pytest.raises(DerivedMetricError, match="the epoch row has val_loss already"):
        one_epoch(m)


def test_derived_metrics_are_computed_on_rank_0_only():
    """Evaluation runs on rank 0 (other ranks have no logged values), which writes and monitors rows."""
    m = EpochMetrics(RunConfig(epochs=5), DistInfo(rank=1, world_size=1), log_row=print)
    m.derive(val_ppl=lambda means: math.exp(means["val_loss"]))
    row = one_epoch(m, logged={})
    assert "val_ppl" not in row


# The unit of throughput.


def test_the_unit_names_the_lines_rate_and_the_rows_key(caplog):
    m, rows = metrics()
    m.set_unit("tokens")
    m.start_epoch()
    m.add(512, {"loss": 1.0})
    with caplog.at_level(logging.INFO, logger="repro.run"):
        row = m.end_epoch(epoch=0, step=1, elapsed=2.0, seen=512)
    assert list(row) == ["split", "epoch", "step", "train_loss", "time_s", "tokens_per_s"]
    assert row["tokens_per_s"] == 256.0 and rows == [row]
    assert "train_loss 1.0000  256 tokens/s" in caplog.text
    assert m.result() == {"train_loss": 1.0}
    assert is_time_field("tokens_per_s") and is_time_field("time_s")
    assert not is_time_field("train_loss")


@pytest.mark.parametrize("unit", ["Tokens", "tokens/s", "", "2x", 3])
def test_a_unit_that_cannot_name_a_key_is_refused(unit):
    m, _ = metrics()
    with pytest.raises(ValueError, match=r"run.set_unit\(.*\): expected one lowercase word"):
        m.set_unit(unit)


def test_the_progress_bar_shows_the_unit():
    stream = io.StringIO()
    bar = EpochProgress(True, stream, unit="tokens")
    bar.update(0, 2, 1, 2, 1.5, 512)
    bar.update(0, 2, 2, 2, 1.25, 512)
    bar.close()
    assert "tokens/s" in stream.getvalue() and "samples/s" not in stream.getvalue()
