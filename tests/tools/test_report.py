"""`repro report`: statistics, swept keys, tables and the figure, on sweeps written by hand.

The synthetic sweeps have the layout a Hydra multirun of the kit leaves: one sub-directory per
job with run.json, config.yaml, metrics.jsonl and .hydra/overrides.yaml. The end-to-end tests
at the bottom (marked slow) run the example experiment.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURE, run_module, run_tool
from repro.tools.cli import main as repro_main
from repro.tools.report_figure import figure_title, panel_labels, plot, readable
from repro.tools.report_sweep import collect, summarize, t975
from repro.tools.report_tables import job_table, to_latex, to_markdown

BASE = {"model": {"dropout": 0.1, "width": 16}, "train": {"lr": 0.02, "steps": 12}}


def write_job(
    job_dir: Path,
    *,
    seed: int,
    overrides: list[str],
    rows: list[dict],
    status: str = "completed",
    result: dict | None = None,
    error: str | None = None,
    config: dict | None = None,
) -> None:
    """One job directory as the kit's run record leaves it."""
    (job_dir / ".hydra").mkdir(parents=True)
    config = json.loads(json.dumps(config or BASE))
    for item in overrides:  # the resolved config, as Hydra would write it
        key, value = item.split("=", 1)
        node = config
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    config.setdefault("repro", {})["seed"] = seed
    every = [f"repro.seed={seed}", *overrides]
    (job_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(every))
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = {
        "status": status,
        "seed": seed,
        "overrides": every,
        "error": error,
        "result": result if result is not None else {"val_acc": rows[-1].get("val_acc")},
    }
    (job_dir / "run.json").write_text(json.dumps(record))


def classifier_rows(dropout: float, seed: int, steps: int = 12, per_epoch: int = 4) -> list[dict]:
    """Per-step train loss and a cosine lr (the same for every seed), and per-epoch evaluations."""
    rows = []
    for step in range(1, steps + 1):
        loss = 1.4 * math.exp(-step / (8 + 20 * dropout)) + 0.03 * math.sin(seed * 7 + step)
        lr = 0.01 * (1 + math.cos(math.pi * step / steps)) / 2
        rows.append(
            {
                "split": "train",
                "epoch": (step - 1) // per_epoch,
                "step": step,
                "loss": loss,
                "lr": lr,
            }
        )
        if step % per_epoch == 0:
            acc = (
                0.25 + 0.5 * (1 - math.exp(-step / 6)) - dropout / 4 + 0.02 * math.cos(seed + step)
            )
            rows.append(
                {
                    "split": "epoch",
                    "epoch": step // per_epoch - 1,
                    "step": step,
                    "train_loss": loss,
                    "train_acc": acc + 0.05,
                    "val_loss": loss + 0.1,
                    "val_acc": acc,
                    "time_s": 0.3,
                    "samples_per_s": 900.0,
                }
            )
    return rows


def make_sweep(root: Path, dropouts=(0.1, 0.3), seeds=(0, 1, 2), **rows_kwargs) -> Path:
    """A dropout x seed sweep; every job also shares two overrides that do not vary."""
    i = 0
    for d in dropouts:
        for s in seeds:
            overrides = ["experiment=quick", "train.steps=12", f"model.dropout={d}"]
            write_job(
                root / str(i),
                seed=s,
                overrides=overrides,
                rows=classifier_rows(d, s, **rows_kwargs),
            )
            i += 1
    return root


def report(*args, cwd):
    return run_tool("report", *args, cwd=cwd, timeout=300)


def test_summary_statistics_match_the_textbook():
    values = [0.31, 0.35, 0.29, 0.40]
    s = summarize(values)
    assert s.n == 4 and s.mean == pytest.approx(statistics.mean(values))
    assert s.std == pytest.approx(statistics.stdev(values))
    half = 3.182 * statistics.stdev(values) / 2  # t(0.975, 3) * s / sqrt(4)
    assert (s.low, s.high) == pytest.approx((s.mean - half, s.mean + half))
    assert summarize([1.0]).std is None and t975(100) == 1.96


def test_groups_and_columns_are_the_swept_keys_only(tmp_path):
    rep = collect(make_sweep(tmp_path / "sw"))
    assert rep.swept == ["model.dropout"]  # experiment=quick and train.steps=12 do not vary
    assert rep.fixed == {"experiment": "quick", "train.steps": "12"}
    assert list(rep.stats) == ["model.dropout=0.1", "model.dropout=0.3"]
    assert all(rep.stats[g]["val_acc"].n == 3 for g in rep.stats)
    headers, rows = job_table(rep)
    assert headers == ["job", "model.dropout", "seed", "status", "val_acc"]
    assert [r[1:3] for r in rows] == [
        ["0.1", 0],
        ["0.1", 1],
        ["0.1", 2],
        ["0.3", 0],
        ["0.3", 1],
        ["0.3", 2],
    ]


def test_a_key_is_swept_by_its_resolved_value_not_its_spelling(tmp_path):
    root = tmp_path / "sw"
    write_job(
        root / "0",
        seed=0,
        overrides=["model.dropout=0.1", "train.lr=0.02"],
        rows=classifier_rows(0.1, 0),
    )
    write_job(
        root / "1",
        seed=1,
        overrides=["model.dropout=0.10", "train.lr=0.020"],
        rows=classifier_rows(0.1, 1),
    )
    write_job(
        root / "2",
        seed=0,
        overrides=["model.dropout=0.1"],
        rows=classifier_rows(0.1, 0),
        config={**BASE, "train": {"lr": 0.05, "steps": 12}},
    )
    rep = collect(root)
    assert rep.swept == ["train.lr"]  # 0.1 and 0.10 are one value; job 2's lr comes from its config
    assert [j.swept["train.lr"] for j in rep.jobs] == ["0.02", "0.02", "0.05"]


def test_tables_export_to_csv_markdown_and_latex(tmp_path):
    sweep = make_sweep(tmp_path / "sw")
    assert repro_main(["report", str(sweep), "--no-plot", "--json"]) == 0
    out = sweep / "report"
    jobs = list(csv.DictReader(io.StringIO((out / "jobs.csv").read_text())))
    assert [(r["model.dropout"], r["seed"]) for r in jobs][:2] == [("0.1", "0"), ("0.1", "1")]
    first = json.loads((sweep / "0" / "run.json").read_text())["result"]["val_acc"]
    assert float(jobs[0]["val_acc"]) == first  # CSV keeps full precision
    summary = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    accs = [
        json.loads((sweep / str(i) / "run.json").read_text())["result"]["val_acc"] for i in range(3)
    ]
    assert float(summary[0]["val_acc_mean"]) == pytest.approx(statistics.mean(accs))
    assert float(summary[0]["val_acc_std"]) == pytest.approx(statistics.stdev(accs))
    assert summary[0]["n"] == "3" and "val_acc_ci95_low" in summary[0]
    md = (out / "summary.md").read_text().splitlines()
    assert md[0] == "| model.dropout | n | val_acc |" and md[1] == "| ---: | ---: | ---: |"
    acc = summarize(accs)
    assert md[2] == f"| 0.1 | 3 | {acc.mean:.4f} ± {acc.std:.4f} |"  # std ~0.0086: 2 digits
    tex = (out / "summary.tex").read_text()
    assert (
        tex.startswith("\\begin{tabular}{rrr}\n\\toprule\n")
        and "\\bottomrule\n\\end{tabular}" in tex
    )
    assert "model.dropout & n & val\\_acc \\\\" in tex and "$\\pm$" in tex
    assert not any(ch in "±_" for ch in tex.replace("\\_", ""))  # nothing LaTeX cannot typeset


def test_mean_and_std_are_rounded_to_the_precision_of_the_std():
    from repro.tools.report_sweep import Stat
    from repro.tools.report_tables import mean_std

    assert mean_std(Stat(3, 0.66991, 0.008556, None, None)) == "0.6699 ± 0.0086"
    assert mean_std(Stat(3, 1234.5, 123.4, None, None)) == "1234 ± 123"
    assert mean_std(Stat(3, 12.0, 0.0, None, None)) == "12 ± 0"
    assert mean_std(Stat(1, 0.5, None, None, None)) == "0.5"


def test_only_number_columns_are_right_aligned():
    assert (
        to_markdown(["k", "v"], [["relu", "1.5 ± 0.2"], ["gelu", "-"]]).splitlines()[1]
        == "| --- | ---: |"
    )
    assert to_latex(["k", "v"], [["a", 1e-05]]).startswith("\\begin{tabular}{lr}")


def test_cells_with_table_syntax_are_escaped():
    assert to_markdown(["a|b"], [["x|y"]]).splitlines()[2] == "| x\\|y |"
    assert "50\\% \\& \\#1 \\textasciitilde{}" in to_latex(["k"], [["50% & #1 ~"]])


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("val_acc", "validation accuracy"),
        ("train_loss", "training loss"),
        ("lr", "learning rate"),
        ("val_mse", "validation MSE"),
        ("val_r2", "validation R²"),
        ("time_s", "time (s)"),
        ("grad_norm", "gradient norm"),
        ("custom_thing", "custom thing"),
    ],
)
def test_metric_names_become_words(name, words):
    assert readable(name) == words


def test_panel_titles_and_axis_labels_come_from_the_logged_names():
    assert panel_labels("epoch/val_acc") == ("validation accuracy, per epoch", "accuracy")
    assert panel_labels("train/loss") == ("training loss", "loss")
    assert panel_labels("train/lr") == ("learning rate", "learning rate")
    assert panel_labels("val_r2") == ("validation R²", "R²")


def test_figure_title_says_what_was_swept():
    assert figure_title(["model.dropout"], [3, 3]) == "model.dropout sweep, 3 seeds each"
    assert (
        figure_title(["model.dropout", "train.lr"], [2, 3])
        == "model.dropout × train.lr sweep, 2-3 seeds per group"
    )
    assert figure_title([], [5]) == "5 seeds"


class Recorder:
    """Stands in for a matplotlib Axes and records what the report draws on it."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a, k))


def draw(groups, curve):
    from repro.tools.report_figure import _draw_panel

    ax = Recorder()
    _draw_panel(ax, curve, groups, ["C0", "C1"], (0, 12))
    return ax.calls


def test_bands_only_where_seeds_differ_and_never_for_identical_schedules(tmp_path):
    from repro.tools.report_figure import _curves

    rep = collect(make_sweep(tmp_path / "sw"))
    groups = {}
    for job in rep.jobs:
        groups.setdefault(job.swept["model.dropout"], []).append(_curves(job))
    assert [c[0] for c in draw(groups, "train/loss")].count("fill_between") == 2  # seeds differ
    assert [c[0] for c in draw(groups, "train/lr")].count("fill_between") == 0  # identical
    one = {"0.1": groups["0.1"][:1], "0.3": groups["0.3"][:1]}
    assert "fill_between" not in [c[0] for c in draw(one, "train/loss")]  # one seed: no std


def test_a_constant_or_single_point_panel_gets_a_readable_y_range():
    groups = {"a": [{"val_acc": {10: 0.5}}, {"val_acc": {10: 0.5}}]}
    calls = draw(groups, "val_acc")
    (ylim,) = [a for name, a, _ in calls if name == "set_ylim"]
    assert ylim == pytest.approx((0.45, 0.55))
    (bar,) = [(a, k) for name, a, k in calls if name == "errorbar"]
    assert bar[1]["yerr"] is None  # the two seeds agree: no error bar


def test_figure_is_written_as_png_pdf_and_svg_with_the_same_bytes_each_time(tmp_path):
    pytest.importorskip("matplotlib")
    sweep = make_sweep(tmp_path / "sw")
    rep = collect(sweep)
    plot(rep, tmp_path / "a")
    plot(collect(sweep), tmp_path / "b")
    assert rep.plot == tmp_path / "a" / "curves.png"
    assert (tmp_path / "a" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "a" / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (tmp_path / "a" / "curves.svg").read_text()
    assert (
        "model.dropout sweep, 3 seeds each" in svg
        and "(n=3)" in svg
        and "validation accuracy" in svg
    )
    assert "experiment" not in svg  # an override shared by all jobs is not in any label
    for ext in ("pdf", "svg"):
        assert (tmp_path / "a" / f"curves.{ext}").read_bytes() == (
            tmp_path / "b" / f"curves.{ext}"
        ).read_bytes()


def test_figure_legend_is_outside_the_panels_and_inside_the_image(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    captured = {}
    real = Figure.savefig

    def spy(fig, *args, **kwargs):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        captured["overlap"] = any(legend.overlaps(p) for p in panels)
        box = fig.bbox
        captured["inside"] = box.x0 <= legend.x0 and legend.x1 <= box.x1 and box.y0 <= legend.y0
        captured["labels"] = [t.get_text() for t in fig.legends[0].get_texts()]
        return real(fig, *args, **kwargs)

    Figure.savefig = spy
    try:
        plot(collect(make_sweep(tmp_path / "sw")), tmp_path / "out")
    finally:
        Figure.savefig = real
    assert captured["overlap"] is False and captured["inside"]
    assert captured["labels"] == ["0.1 (n=3)", "0.3 (n=3)", "± 1 std over seeds"]


def test_regression_metrics_are_plotted_like_any_other(tmp_path):
    pytest.importorskip("matplotlib")
    root = tmp_path / "sw"
    for i, s in enumerate((0, 1)):
        rows = [
            {"split": "val", "step": k, "val_mse": 1 / k + 0.01 * s, "val_r2": 1 - 1 / k}
            for k in (5, 10)
        ]
        write_job(
            root / str(i), seed=s, overrides=["train.lr=0.1"], rows=rows, result={"val_r2": 0.9}
        )
    rep = collect(root)
    plot(rep)
    assert rep.plot == root / "report" / "curves.png" and rep.swept == []
    svg = (root / "report" / "curves.svg").read_text()
    assert "2 seeds" in svg and "validation MSE" in svg and "validation R²" in svg


def test_failed_jobs_are_listed_and_left_out_of_the_statistics(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sw", dropouts=(0.1,))
    write_job(
        sweep / "3",
        seed=3,
        overrides=["experiment=quick", "train.steps=12", "model.dropout=0.1"],
        rows=classifier_rows(0.1, 3)[:2],
        status="failed",
        result={},
        error="ValueError: boom",
    )
    assert repro_main(["report", str(sweep), "--no-plot"]) == 1
    text = capsys.readouterr().out
    assert "4 jobs, 3 completed, 1 not" in text and "job 3 failed: ValueError: boom" in text
    assert "95% interval" in text
    rep = collect(sweep)
    assert (
        rep.stats["all jobs"]["val_acc"].n == 3
    )  # the failed job is in the group, not in its stats


def test_an_out_path_that_is_a_file_is_refused_with_one_line(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sw", dropouts=(0.1,), seeds=(0,))
    (tmp_path / "taken").write_text("")
    assert repro_main(["report", str(sweep), "--out", str(tmp_path / "taken")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --out {tmp_path / 'taken'}: exists and is not a directory; give a directory\n"
    )


def test_report_of_something_that_is_not_a_sweep(tmp_path):
    out = report(tmp_path, cwd=tmp_path)
    assert (
        out.returncode == 2
        and out.stderr.startswith("error: ")
        and "not a sweep directory" in out.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_report_survives_odd_sweep_content(tmp_path, capsys):
    sweep = tmp_path / "sw"
    (sweep / "junk").mkdir(parents=True)
    (sweep / "junk" / "run.json").write_text("[]")
    (sweep / "odd").mkdir()
    (sweep / "odd" / "run.json").write_text(
        json.dumps({"status": "completed", "seed": 1, "result": 5, "overrides": 7})
    )
    (sweep / "odd" / "config.yaml").write_text("- [unbalanced")
    (sweep / "odd" / "metrics.jsonl").write_text(
        '7\n{"step": "x", "loss": 1}\n{"step": 2, "loss": 0.5}\n'
    )
    assert (
        repro_main(["report", str(sweep), "--json"]) == 1
    )  # an unreadable job counts as not completed
    data = json.loads(capsys.readouterr().out)
    assert {j["name"]: j["status"] for j in data["jobs"]} == {
        "junk": "unreadable",
        "odd": "completed",
    }


# --- end to end: a real sweep of the kit's fixture experiment (slow) ----------------------------

# Threads pinned: a joblib worker gets cpu_count / n_jobs threads, and the default profile follows
# the thread count it is given (see the README), so both sweeps pin the same count.
SHORT = ["train.max_steps=6", "repro.threads=1"]


def train(*args, cwd, env=None):
    return run_module([sys.executable, "-m", FIXTURE, *args], cwd=cwd, env=env)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real 3-seed sweep, plus a fourth job in the same directory that fails mid-run."""
    root = tmp_path_factory.mktemp("sweep")
    out = train("-m", "repro.seed=0,1,2", *SHORT, f"hydra.sweep.dir={root / 'sw'}", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "sweep job 3/3 completed in" in out.stdout + out.stderr  # the sweep's own progress
    bad = train(
        f"hydra.run.dir={root / 'sw' / '3'}",
        "repro.seed=3",
        *SHORT,
        cwd=root,
        env={
            "REPRO_FAULT_PERTURB": "nope@3"
        },  # refused once the run has started: recorded as failed
    )
    assert bad.returncode != 0
    return root / "sw"


@pytest.mark.slow
def test_report_of_a_sweep_with_a_failed_job(sweep):
    out = report(sweep, "--json", cwd=sweep.parent)
    assert out.returncode == 1  # a job failed: the report says so in its exit status too
    data = json.loads(out.stdout)
    assert [j["name"] for j in data["jobs"]] == ["0", "1", "2", "3"]
    assert data["failed"] == ["3"]
    failed = data["jobs"][3]
    assert failed["status"] == "failed" and "REPRO_FAULT_PERTURB" in failed["error"]
    group = data["jobs"][0]["group"]
    assert (
        len({j["group"] for j in data["jobs"]}) == 1
    )  # the failed job shares the group, not its stats
    accs = [
        json.loads((sweep / str(i) / "run.json").read_text())["result"]["val_acc"] for i in range(3)
    ]
    stat = data["stats"][group]["val_acc"]
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(statistics.mean(accs))
    assert stat["low"] <= stat["mean"] <= stat["high"]
    assert (sweep / "report" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report(sweep, "--no-plot", cwd=sweep.parent).stdout
    assert (
        "4 jobs, 3 completed, 1 not" in text and "job 3 failed" in text and "95% interval" in text
    )


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_with_the_same_bits(sweep, tmp_path):
    out = train(
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "repro.seed=0,1",
        *SHORT,
        f"hydra.sweep.dir={tmp_path / 'par'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    runs = [json.loads((tmp_path / "par" / str(i) / "run.json").read_text()) for i in (0, 1)]
    assert all(r["status"] == "completed" for r in runs)
    assert runs[0]["process"]["pid"] != runs[1]["process"]["pid"]  # two worker processes
    assert all(r["entry"]["module"] == FIXTURE for r in runs)  # replayable by `repro verify`
    for i, run in enumerate(runs):  # the same bits as the same seed run one after the other
        basic = json.loads((sweep / str(i) / "run.json").read_text())
        assert run["weights_sha256"] == basic["weights_sha256"]
