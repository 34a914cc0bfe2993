"""`repro report` shows metrics only, and shows a value the seeds share as that value.

A metric is a finite number (not a bool) logged in a metrics row or returned in the run's result,
under a name that is not bookkeeping (split, step and epoch counters, seed, ids, times and rates in
seconds). A metric whose value is the same for every seed of a group at every step (a schedule, a
constant) is one line in the figure and one value in the tables, with no std. The sweeps are
written by hand with the helpers of test_report.py; the last test reads a real sweep (slow).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys

import pytest
from test_report import classifier_rows, write_job

from conftest import FIXTURE, run_module
from repro.tools.cli import main as repro_main
from repro.tools.report_figure import panel_labels, plot
from repro.tools.report_sweep import collect, is_metric
from repro.tools.report_tables import job_table, summary_table

OVERRIDES = ["experiment=quick", "model.dropout=0.1"]
#: A result's bookkeeping, one of each kind a run can hold: none of it is a metric.
NOT_METRICS = {
    "note": "loss fell",
    "checkpoint": "/runs/0/checkpoints/best.pt",
    "stopped_early": True,
    "per_class_acc": [0.5, 0.7],
    "per_split": {"val": 0.5},
    "missing": None,
    "steps": 12,
    "best_epoch": 2,
    "run_id": 7,
    "tokens_per_s": 1234.5,
    "params_digest": "b0db3b661c506f9e",
}


def lr_per_epoch(epoch: int) -> float:
    """A step schedule logged in the epoch rows: 20, then 5 from the third epoch on."""
    return 20.0 if epoch < 2 else 5.0


def schedule_sweep(root, seeds=(0, 1, 2)):
    """One group of seeds; the epoch rows carry an lr schedule the same for every seed, and the
    result the final lr, the final val_acc (different per seed) and bookkeeping of every kind."""
    for i, seed in enumerate(seeds):
        rows = classifier_rows(0.1, seed)
        for row in rows:
            if row["split"] == "epoch":
                row["lr"] = lr_per_epoch(row["epoch"])
                row["saved_to"] = f"/runs/{i}/checkpoints/last.pt"
                row["improved"] = seed % 2 == 0
                row["tokens_per_s"] = 1000.0 + seed
        val_acc = [r for r in rows if r["split"] == "epoch"][-1]["val_acc"]
        result = {"val_acc": val_acc, "lr": 5.0, **NOT_METRICS}
        write_job(root / str(i), seed=seed, overrides=OVERRIDES, rows=rows, result=result)
    return root


def drawn(report, out_dir):
    """Per panel, in order: (title, lines drawn, bands drawn), read from the figure as saved."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    panels = []
    real = Figure.savefig

    def spy(fig, *args, **kwargs):
        panels[:] = [
            (ax.get_title(), len(ax.lines), len(ax.collections))
            for ax in fig.axes
            if ax.get_visible()
        ]
        return real(fig, *args, **kwargs)

    Figure.savefig = spy
    try:
        plot(report, out_dir)
    finally:
        Figure.savefig = real
    return panels


def test_a_schedule_the_same_for_every_seed_is_one_line_not_a_band(tmp_path):
    panels = drawn(collect(schedule_sweep(tmp_path / "sw")), tmp_path / "out")
    # The lr schedule of the epoch rows (20, then 5) and the per-step cosine lr of the train rows:
    # the same for every seed, so one line each and no band.
    assert [p for p in panels if p[0] == "learning rate"] == [("learning rate", 1, 0)] * 2
    # The seeds' losses and accuracies differ: the mean and its band of one std.
    assert ("training loss", 1, 1) in panels
    assert ("validation accuracy, per epoch", 1, 1) in panels


def test_a_value_the_same_for_every_seed_has_no_std_in_any_table(tmp_path, capsys):
    sweep = schedule_sweep(tmp_path / "sw")
    rep = collect(sweep)
    lr, acc = rep.stats["all jobs"]["lr"], rep.stats["all jobs"]["val_acc"]
    assert (lr.n, lr.mean, lr.std, lr.low, lr.high) == (3, 5.0, None, None, None)
    assert lr.constant
    # The final val_acc differs per seed: mean, std and the interval, as before.
    accs = [
        json.loads((sweep / str(i) / "run.json").read_text())["result"]["val_acc"] for i in range(3)
    ]
    assert not acc.constant and acc.std == pytest.approx(statistics.stdev(accs))
    assert acc.low < acc.mean < acc.high
    assert repro_main(["report", str(sweep), "--no-plot"]) == 0
    text = capsys.readouterr().out
    (row,) = [line.split() for line in text.splitlines() if line.split()[:1] == ["lr"]]
    assert (
        row[:4] == ["lr", "3", "5", "-"]
        and " ".join(row[4:]) == "none: does not vary with the seed"
    )
    assert any(line.split()[:1] == ["val_acc"] and "[" in line for line in text.splitlines())
    out = sweep / "report"
    (summary,) = csv.DictReader(io.StringIO((out / "summary.csv").read_text()))
    assert summary["lr_mean"] == "5.0" and summary["lr_std"] == summary["lr_ci95_low"] == ""
    assert float(summary["val_acc_std"]) == pytest.approx(statistics.stdev(accs))
    md = (out / "summary.md").read_text().splitlines()
    assert md[0] == "| n | lr | val_acc |" and md[1] == "| ---: | ---: | ---: |"
    assert md[2].startswith("| 3 | 5 (same for all seeds) | ") and "±" in md[2].split("|")[3]
    assert "5 (same for all seeds)" in (out / "summary.tex").read_text()


def test_one_seed_is_not_called_the_same_for_every_seed(tmp_path):
    rep = collect(schedule_sweep(tmp_path / "sw", seeds=(0,)))
    lr = rep.stats["all jobs"]["lr"]
    assert (lr.n, lr.std) == (1, None) and not getattr(lr, "constant", False)
    assert summary_table(rep)[1] == [[1, "5", f"{rep.jobs[0].result['val_acc']:.4g}"]]


def test_a_result_key_that_is_not_a_metric_is_neither_tabled_nor_plotted(tmp_path, capsys):
    sweep = schedule_sweep(tmp_path / "sw")
    rep = collect(sweep)
    assert rep.metrics == ["lr", "val_acc"]
    assert list(rep.stats["all jobs"]) == ["lr", "val_acc"]
    assert job_table(rep)[0] == ["job", "seed", "status", "lr", "val_acc"]
    assert summary_table(rep, raw=True)[0] == [
        "n",
        *[f"{k}_{p}" for k in ("lr", "val_acc") for p in ("mean", "std", "ci95_low", "ci95_high")],
    ]
    assert repro_main(["report", str(sweep), "--no-plot"]) == 0
    text = capsys.readouterr().out
    for key in [*NOT_METRICS, "saved_to", "improved"]:
        assert key not in text
        for name in ("jobs.csv", "jobs.md", "summary.csv", "summary.md"):
            assert key not in (sweep / "report" / name).read_text()
    titles = [title for title, _, _ in drawn(collect(sweep), tmp_path / "out")]
    assert sorted(titles) == [
        "learning rate",
        "learning rate",
        "training accuracy, per epoch",
        "training loss",
        "training loss, per epoch",
        "validation accuracy, per epoch",
        "validation loss, per epoch",
    ]


@pytest.mark.parametrize(
    ("key", "value", "metric"),
    [
        ("val_acc", 0.9, True),
        ("lr", 5, True),
        ("train_loss", 0.25, True),
        ("grad_norm", 1.5, True),
        ("val_loss", float("nan"), False),
        ("flag", True, False),
        ("checkpoint", "/runs/0/last.pt", False),
        ("per_class", [0.1, 0.2], False),
        ("nested", {"a": 1.0}, False),
        ("none", None, False),
        ("step", 12, False),
        ("steps", 12, False),
        ("epoch", 2, False),
        ("best_epoch", 2, False),
        ("seed", 3, False),
        ("run_id", 7, False),
        ("time_s", 0.3, False),
        ("samples_per_s", 900.0, False),
        ("tokens_per_s", 9000.0, False),
    ],
)
def test_what_counts_as_a_metric(key, value, metric):
    assert is_metric(key, value) is metric


@pytest.mark.slow
def test_a_real_sweep_reports_the_runs_metrics_and_not_their_bookkeeping(tmp_path):
    args = ["-m", "repro.seed=0,1", "train.max_steps=6", "repro.threads=1"]
    done = run_module(
        [sys.executable, "-m", FIXTURE, *args, f"hydra.sweep.dir={tmp_path / 'sw'}"], cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rep = collect(tmp_path / "sw")
    result = json.loads((tmp_path / "sw" / "0" / "run.json").read_text())["result"]
    # What the kit adds to every result and row to say where and when, never a metric.
    bookkeeping = {"steps", "params_digest", "split", "epoch", "step", "time_s"}
    assert "steps" in result and "params_digest" in result
    assert rep.metrics == sorted(k for k in result if k not in bookkeeping)
    text = (tmp_path / "sw" / "0" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    logged = {
        panel_labels(f"{r['split']}/{k}")[0]
        for r in rows
        for k in r
        if k not in bookkeeping and not k.endswith("_per_s")
    }
    assert {title for title, _, _ in drawn(rep, tmp_path / "out")} == logged
