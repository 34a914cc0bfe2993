"""The report's figure: a panel per logged metric, named in words, the mean over each group's seeds
and a band of one standard deviation only where the seeds differ; written as PNG, and as PDF and SVG
that carry no date (the same runs give the same bytes). Needs matplotlib (the ``plots`` extra)."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

from repro.base.errors import RunDirectoryError
from repro.base.files import atomic_write
from repro.base.layout import METRICS_FILE
from repro.tools.report_sweep import (
    OUT_DIR,
    Job,
    SweepReport,
    metrics_in,
    read_text,
    summarize,
    varying,
)

FIGURE_FORMATS = ("png", "pdf", "svg")
# fmt: off
# Words for metric names: a first word that names a split, the rest, and a last word naming a unit.
_SPLITS = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
           "validation": "validation", "test": "test", "eval": "evaluation", "dev": "dev"}
_WORDS = {"acc": "accuracy", "lr": "learning rate", "mse": "MSE", "rmse": "RMSE", "mae": "MAE",
          "r2": "R²", "nll": "NLL", "ppl": "perplexity", "f1": "F1", "auc": "AUC", "iou": "IoU",
          "kl": "KL", "ce": "cross-entropy", "wd": "weight decay", "grad": "gradient",
          "err": "error", "top1": "top-1", "top5": "top-5", "bleu": "BLEU"}
_UNITS = {"s": "s", "sec": "s", "ms": "ms", "pct": "%", "percent": "%", "mb": "MB", "gb": "GB"}
# A split named for when rows are logged.
_CADENCES = {"epoch", "step", "iter", "iteration", "batch"}
# Panels placed last.
_SCHEDULES = {"lr", "learning_rate", "momentum", "wd", "weight_decay"}
# fmt: on


def readable(name: str) -> str:
    """A metric key as words: 'val_acc' -> 'validation accuracy', 'time_s' -> 'time (s)'."""
    words = [w for w in re.split(r"[_/.\s-]+", name) if w]
    unit = _UNITS.get(words[-1].lower()) if len(words) > 1 else None
    if unit:
        words = words[:-1]
    text = " ".join(
        _SPLITS.get(w.lower(), _WORDS.get(w.lower(), w)) if i == 0 else _WORDS.get(w.lower(), w)
        for i, w in enumerate(words)
    )
    return f"{text} ({unit})" if unit else text


def panel_labels(curve: str) -> tuple[str, str]:
    """(panel title, y-axis label) for a curve named 'split/key' or 'key'."""
    split, _, key = curve.rpartition("/")
    first, _, rest = key.partition("_")
    quantity = rest if first.lower() in _SPLITS and rest else key
    if key.lower() in _SCHEDULES:
        return readable(key), readable(key)
    if split.lower() in _CADENCES:
        return f"{readable(key)}, per {split}", readable(quantity)
    title = readable(f"{split}_{key}") if split and quantity == key else readable(key)
    return title, readable(quantity)


def _panel_order(curve: str) -> tuple[bool, str, str]:
    """Schedules (lr, ...) last; panels of one quantity side by side; training before validation."""
    title, ylabel = panel_labels(curve)
    return curve.rpartition("/")[2].lower() in _SCHEDULES, ylabel, title


def _curves(job: Job) -> dict[str, dict[int, float]]:
    """(split/metric) -> {step: value} from a job's metrics.jsonl, metrics only (``is_metric``); rows
    it cannot read are skipped."""
    out: dict[str, dict[int, float]] = {}
    path = job.dir / METRICS_FILE
    if not path.exists():
        return out
    try:
        text = read_text(path)
    except RunDirectoryError:
        return out
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        split = str(row.get("split", ""))
        for key, value in metrics_in(row).items():
            out.setdefault(f"{split}/{key}" if split else key, {})[row["step"]] = value
    return out


def figure_title(keys: list[str], seeds: list[int]) -> str:
    """'model.dropout sweep, 3 seeds each'; '3 seeds' when only the seed varies."""
    lo, hi = min(seeds), max(seeds)
    count = f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"
    if not keys:
        return count if lo == hi else f"{count} per run"
    return f"{' × '.join(keys)} sweep, {count} {'each' if lo == hi else 'per group'}"


def _draw_panel(
    ax: Any, curve: str, groups: dict[str, list[dict]], colours: list, xlim: tuple
) -> bool:
    """Means per group; a band (or error bar) of one std where a group's seeds differ."""
    shown, banded, dodge = [], False, (xlim[1] - xlim[0]) * 0.012
    for i, runs in enumerate(groups.values()):
        series = [c[curve] for c in runs if curve in c]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
            continue
        per_step = [[s[x] for s in series] for x in steps]
        mean = [sum(v) / len(v) for v in per_step]
        # The same bits from every seed at every step (a schedule, a constant): one line, no band.
        varies = any(len(set(v)) > 1 for v in per_step)
        std = [(summarize(v).std or 0.0) if varies else 0.0 for v in per_step]
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        shown += low + high
        colour = colours[i % len(colours)]
        # One point: a marker with an error bar, nudged so groups don't hide.
        if len(steps) == 1:
            x = steps[0] + (i - (len(groups) - 1) / 2) * dodge
            ax.errorbar([x], mean, yerr=std if varies else None, fmt="o", color=colour, capsize=3)
        else:
            ax.plot(steps, mean, color=colour, marker="o" if len(steps) <= 20 else None, ms=3)
            if varies:
                ax.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        banded |= varies
    title, ylabel = panel_labels(curve)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_xlim(*xlim)
    ax.grid(alpha=0.3)
    # A marker at the highest or lowest value is not cut by the frame.
    ax.margins(y=0.1)
    ax.ticklabel_format(axis="y", useOffset=False)
    if shown and max(shown) - min(shown) <= 1e-9 * max(abs(max(shown)), abs(min(shown))):
        # Constant: centre it instead of a 1e-16-wide axis.
        pad = abs(shown[0]) * 0.1 or 1.0
        ax.set_ylim(shown[0] - pad, shown[0] + pad)
    return banded


def plot(report: SweepReport, out_dir: Path | None = None) -> None:
    """Write curves.png/.pdf/.svg (see the module doc); ``report.plot_note`` says why not."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        report.plot_note = "matplotlib is not installed (pip install -e '.[plots]'): no plot"
        return
    done = [j for j in report.jobs if j.status == "completed"]
    keys = [k for k in varying(done) if k in report.swept]
    groups: dict[str, list[dict[str, dict[int, float]]]] = {}
    for job in done:
        groups.setdefault(", ".join(job.swept[k] for k in keys), []).append(_curves(job))
    names = sorted({c for runs in groups.values() for r in runs for c in r}, key=_panel_order)
    if not names:
        report.plot_note = "no metrics.jsonl rows to plot"
        return
    steps = [x for runs in groups.values() for r in runs for c in r.values() for x in c]
    span = max(steps) - min(steps)
    xlim = (
        (min(steps) - 0.04 * span, max(steps) + 0.04 * span)
        if span
        else (steps[0] - 1, steps[0] + 1)
    )
    cols = 2 if len(names) == 4 else min(3, len(names))
    rows = math.ceil(len(names) / cols)
    out_dir = out_dir or report.sweep_dir / OUT_DIR
    style = {"svg.hashsalt": "repro-report", "pdf.fonttype": 42, "font.size": 9}
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(3.6 * cols, 2.7 * rows + 0.9), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        colours = matplotlib.colormaps["tab10"].colors
        banded = False
        for ax, name in zip(axes.flat, names, strict=False):
            banded |= _draw_panel(ax, name, groups, colours, xlim)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        handles: list[Any] = [
            Line2D(
                [],
                [],
                color=colours[i % len(colours)],
                marker="o",
                ms=3,
                label=f"{label or 'all runs'} (n={len(runs)})",
            )
            for i, (label, runs) in enumerate(groups.items())
        ]
        if banded:
            handles.append(Patch(color="0.5", alpha=0.3, linewidth=0, label="± 1 std over seeds"))
        fig.legend(
            handles=handles,
            title=", ".join(keys) or None,
            loc="outside lower center",
            ncols=min(len(handles), 4),
            frameon=False,
        )
        fig.suptitle(figure_title(keys, [len(r) for r in groups.values()]))
        out_dir.mkdir(parents=True, exist_ok=True)
        for ext in FIGURE_FORMATS:
            buffer = io.BytesIO()
            meta = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(ext)
            fig.savefig(buffer, format=ext, dpi=200, bbox_inches="tight", metadata=meta)
            atomic_write(out_dir / f"curves.{ext}", buffer.getvalue())
            report.files.append(out_dir / f"curves.{ext}")
    report.plot = out_dir / "curves.png"
