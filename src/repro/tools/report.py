"""``repro report SWEEP_DIR``: a sweep's jobs, statistics across seeds, and a figure and tables for a paper.

Jobs are the sub-directories holding a ``run.json``. A *swept key* is an override whose value
differs between jobs (the resolved value from the job's ``config.yaml``, else the override text),
so settings shared by every job never clutter a label; the seed comes from ``run.json``. Jobs
with the same swept values form a group; its statistics are over its completed jobs. Failed or
unfinished jobs are listed with their status and error and counted, never silently dropped.

Written to ``SWEEP_DIR/report/`` (``--out`` to change): ``curves.png``/``.pdf``/``.svg`` (with
matplotlib: a panel per logged metric, the mean over each group's seeds, a band of one standard
deviation only where the seeds differ), ``jobs.csv``/``.md``/``.tex`` (a row per job, a column
per swept key and the seed) and ``summary.csv``/``.md``/``.tex`` (per group: n, mean, std, 95%
interval). The PDF and SVG carry no date, so the same runs give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repro.base.config import flatten
from repro.base.errors import ReproError, RunDirectoryError
from repro.base.layout import CONFIG_FILE, METRICS_FILE, RUN_FILE

# fmt: off
# Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
SEED_KEY = "repro.seed"
OUT_DIR = "report"
FIGURE_FORMATS = ("png", "pdf", "svg")
_NOT_CURVES = {"step", "epoch", "time_s", "samples_per_s"}
# Words for metric names: a first word that names a split, the rest, and a last word naming a unit.
_SPLITS = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
           "validation": "validation", "test": "test", "eval": "evaluation", "dev": "dev"}
_WORDS = {"acc": "accuracy", "lr": "learning rate", "mse": "MSE", "rmse": "RMSE", "mae": "MAE",
          "r2": "R²", "nll": "NLL", "ppl": "perplexity", "f1": "F1", "auc": "AUC", "iou": "IoU",
          "kl": "KL", "ce": "cross-entropy", "wd": "weight decay", "grad": "gradient",
          "err": "error", "top1": "top-1", "top5": "top-5", "bleu": "BLEU"}
_UNITS = {"s": "s", "sec": "s", "ms": "ms", "pct": "%", "percent": "%", "mb": "MB", "gb": "GB"}
_CADENCES = {"epoch", "step", "iter", "iteration", "batch"}  # a split named for when rows are logged
_SCHEDULES = {"lr", "learning_rate", "momentum", "wd", "weight_decay"}  # panels placed last
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$"}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")
# fmt: on


def t975(df: int) -> float:
    """The two-sided 95% Student t quantile for ``df`` degrees of freedom (1.96 past 30)."""
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


@dataclass
class Job:
    """One job directory of the sweep, as read (nothing in it is trusted or executed)."""

    name: str
    dir: Path
    status: str
    seed: int | None
    group: str
    result: dict[str, float]
    error: str | None
    settings: dict[str, str] = field(default_factory=dict)  # every override key -> its value here
    swept: dict[str, str] = field(default_factory=dict)  # the keys that vary across the sweep
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # config.yaml, flattened

    def value(self, key: str) -> str:
        """The job's value for an override key: its override, else its config's, else 'default'."""
        if key in self.settings:
            return self.settings[key]
        return _text(self.config[key]) if key in self.config else "default"


@dataclass
class Stat:
    """A metric over a group's completed jobs; std and the 95% interval need two of them."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


@dataclass
class SweepReport:
    """Everything ``repro report`` shows; ``to_dict`` is its JSON form."""

    sweep_dir: Path
    jobs: list[Job]
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)  # group -> metric -> Stat
    swept: list[str] = field(default_factory=list)  # keys that vary across jobs, seed excluded
    fixed: dict[str, str] = field(default_factory=dict)  # overrides every job shares
    plot: Path | None = None
    plot_note: str = ""
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "completed"]

    @property
    def metrics(self) -> list[str]:
        return sorted({k for j in self.jobs for k in j.result})

    def to_dict(self) -> dict[str, Any]:
        keys = ("name", "status", "seed", "group", "swept", "result", "error")
        return {
            "sweep_dir": str(self.sweep_dir),
            "swept": self.swept,
            "fixed": self.fixed,
            "jobs": [{k: getattr(j, k) for k in keys} for j in self.jobs],
            "failed": [j.name for j in self.failed],
            "stats": {g: {m: s.__dict__ for m, s in ms.items()} for g, ms in self.stats.items()},
            "plot": str(self.plot) if self.plot else None,
            "plot_note": self.plot_note,
            "files": [str(p) for p in self.files],
        }


def summarize(values: list[float]) -> Stat:
    """Mean, sample std and a Student-t 95% interval for the mean (std and interval need n >= 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Stat(n, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Stat(n, mean, std, mean - half, mean + half)


def _numbers(tree: Any) -> dict[str, float]:
    if not isinstance(tree, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in tree.items()
        if not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _read_text(path: Path) -> str:
    """A record file's text, read as data (regular files of bounded size only); RunDirectoryError else."""
    from repro.tools.runs import read_record_file

    return read_record_file(path)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(_read_text(path))
    except (OSError, yaml.YAMLError, RunDirectoryError):
        return None


def _settings(job_dir: Path, manifest: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(override key -> value, flattened config.yaml); a value as the config resolved it if it can."""
    overrides = manifest.get("overrides")
    if not isinstance(overrides, list):
        overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
    config = _read_yaml(job_dir / CONFIG_FILE)
    config = flatten(config) if isinstance(config, dict) else {}
    out = {}
    for item in overrides if isinstance(overrides, list) else []:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if sep and key != SEED_KEY and not key.startswith("hydra."):
            out[key] = _text(config[key]) if key in config else value
    return out, config


def varying(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between ``jobs`` (see ``Job.value``)."""
    keys = dict.fromkeys(k for j in jobs for k in j.settings)
    return [k for k in keys if len({j.value(k) for j in jobs}) > 1]


def collect(sweep_dir: str | Path) -> SweepReport:
    """Read every job of a sweep; raise RunDirectoryError when there is none."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise RunDirectoryError(f"{sweep_dir}: no such directory")
    dirs = sorted((p.parent for p in root.glob("*/run.json")), key=lambda p: (len(p.name), p.name))
    if not dirs:
        raise RunDirectoryError(
            f"{sweep_dir}: not a sweep directory (no job sub-directory holds a run.json)"
        )
    jobs, readable = [], []
    for d in dirs:
        try:
            m = json.loads(_read_text(d / RUN_FILE))
        except (OSError, ValueError, RunDirectoryError):
            m = None
        if not isinstance(m, dict):
            why = "run.json could not be read as a run record"
            jobs.append(Job(d.name, d, "unreadable", None, "?", {}, why))
            continue
        status = str(m.get("status", "?"))
        seed = m.get("seed") if isinstance(m.get("seed"), int) else None
        status = "running or killed" if status == "running" else status
        job = Job(d.name, d, status, seed, "", _numbers(m.get("result")), m.get("error"))
        job.settings, job.config = _settings(d, m)
        jobs.append(job)
        readable.append(job)
    report = SweepReport(root, jobs, swept=varying(readable))
    shared = dict.fromkeys(k for j in readable for k in j.settings if k not in report.swept)
    report.fixed = {k: readable[0].value(k) for k in shared}
    for job in readable:
        job.swept = {k: job.value(k) for k in report.swept}
        job.group = ", ".join(f"{k}={v}" for k, v in job.swept.items()) or "all jobs"
    for group in dict.fromkeys(j.group for j in jobs):
        done = [j for j in jobs if j.group == group and j.status == "completed"]
        metrics = sorted({k for j in done for k in j.result})
        report.stats[group] = {
            k: summarize([j.result[k] for j in done if k in j.result]) for k in metrics
        }
    return report


# --- tables -----------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    """A cell as people read it: floats to 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def mean_std(stat: Stat) -> str:
    """'0.6699 ± 0.0086': the std to two significant digits, the mean to the same decimal place."""
    if stat.std is None:
        return fmt(stat.mean)
    if stat.std == 0 or not math.isfinite(stat.std):
        return f"{fmt(stat.mean)} ± 0"
    places = min(max(1 - math.floor(math.log10(stat.std)), 0), 12)
    return f"{stat.mean:.{places}f} ± {stat.std:.{places}f}"


def job_table(report: SweepReport, raw: bool = False) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows: a row per job; columns job, each swept key, seed, status, final metrics."""
    metrics = report.metrics
    rows = [
        [
            j.name,
            *[j.swept.get(k, "?") for k in report.swept],
            j.seed,
            j.status,
            *[j.result.get(k) if raw else fmt(j.result.get(k)) for k in metrics],
        ]
        for j in report.jobs
    ]
    return ["job", *report.swept, "seed", "status", *metrics], rows


def summary_table(report: SweepReport, raw: bool = False) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows: a row per group; columns each swept key, n, then per metric mean ± std
    (``raw``: separate mean, std, ci95_low, ci95_high columns)."""
    metrics = report.metrics
    rows = []
    for group, stats in report.stats.items():
        member = next(j for j in report.jobs if j.group == group)
        cells: list[Any] = [member.swept.get(k, "?") for k in report.swept]
        cells.append(max((s.n for s in stats.values()), default=0))
        for k in metrics:
            s = stats.get(k)
            if raw:
                cells += [s.mean, s.std, s.low, s.high] if s else [None] * 4
            else:
                cells.append(mean_std(s) if s else "-")
        rows.append(cells)
    if raw:
        heads = [f"{k}_{p}" for k in metrics for p in ("mean", "std", "ci95_low", "ci95_high")]
    else:
        heads = metrics
    return [*report.swept, "n", *heads], rows


def to_csv(headers: list[str], rows: list[list[Any]]) -> str:
    """RFC 4180 CSV; numbers at full precision, None as an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(
        [["" if c is None else repr(c) if isinstance(c, float) else c for c in r] for r in rows]
    )
    return out.getvalue()


def _numeric(rows: list[list[Any]], column: int) -> bool:
    """Whether a column holds numbers only ('-' for none, 'a ± b' counts): it is right-aligned."""
    cells = [str(r[column]) for r in rows]
    numbers = [all(_NUMBER.fullmatch(p) for p in c.split(" ± ")) for c in cells if c != "-"]
    return bool(numbers) and all(numbers)


def to_markdown(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned ('|' in a cell escaped)."""

    def line(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = ["---:" if _numeric(rows, i) else "---" for i in range(len(headers))]
    return "\n".join([line(headers), "| " + " | ".join(rule) + " |", *map(line, rows)]) + "\n"


def to_latex(headers: list[str], rows: list[list[Any]]) -> str:
    """A booktabs tabular, numbers right-aligned (needs \\usepackage{booktabs})."""

    def line(cells: list[Any]) -> str:
        return " & ".join("".join(_TEX.get(ch, ch) for ch in str(c)) for c in cells) + r" \\"

    spec = "".join("r" if _numeric(rows, i) else "l" for i in range(len(headers)))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", line(headers), r"\midrule"]
    return "\n".join([*lines, *map(line, rows), r"\bottomrule", r"\end{tabular}"]) + "\n"


def write_tables(report: SweepReport, out_dir: Path) -> None:
    """Write jobs.{csv,md,tex} and summary.{csv,md,tex} to ``out_dir`` (atomically, each)."""
    for name, build in (("jobs", job_table), ("summary", summary_table)):
        for ext, render in (("csv", to_csv), ("md", to_markdown), ("tex", to_latex)):
            path = out_dir / f"{name}.{ext}"
            _write(path, render(*build(report, raw=ext == "csv")))
            report.files.append(path)


# --- figure -----------------------------------------------------------------------------------


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


def _write(path: Path, data: str | bytes) -> None:
    """Write atomically, with the permissions the user's umask gives (0644 by default)."""
    from repro.base.files import atomic_write

    atomic_write(path, data)


def _curves(job: Job) -> dict[str, dict[int, float]]:
    """(split/metric) -> {step: value} from a job's metrics.jsonl; rows it cannot read are skipped."""
    out: dict[str, dict[int, float]] = {}
    path = job.dir / METRICS_FILE
    if not path.exists():
        return out
    try:
        text = _read_text(path)
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
        for key, value in _numbers(row).items():
            if key not in _NOT_CURVES:
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
        varies = any(len(set(v)) > 1 for v in per_step)  # identical bits: no band (schedules)
        std = [(summarize(v).std or 0.0) if varies else 0.0 for v in per_step]
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        shown += low + high
        colour = colours[i % len(colours)]
        if len(steps) == 1:  # one point: a marker with an error bar, nudged so groups don't hide
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
    ax.margins(y=0.1)  # a marker at the highest or lowest value is not cut by the frame
    ax.ticklabel_format(axis="y", useOffset=False)
    if shown and max(shown) - min(shown) <= 1e-9 * max(abs(max(shown)), abs(min(shown))):
        pad = abs(shown[0]) * 0.1 or 1.0  # constant: centre it instead of a 1e-16-wide axis
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
            _write(out_dir / f"curves.{ext}", buffer.getvalue())
            report.files.append(out_dir / f"curves.{ext}")
    report.plot = out_dir / "curves.png"


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``repro report`` arguments."""
    parser.add_argument("sweep_dir")
    parser.add_argument(
        "--out", help=f"directory for the figure and tables (default SWEEP_DIR/{OUT_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only, no figure")


def run(args: argparse.Namespace) -> int:
    """Report a sweep; 0 when every job completed, 1 when any did not."""
    from repro.tools.table import paint, render, short

    report = collect(args.sweep_dir)
    out_dir = Path(args.out) if args.out else report.sweep_dir / OUT_DIR
    if out_dir.exists() and not out_dir.is_dir():
        raise ReproError(f"--out {out_dir}: exists and is not a directory; give a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(report, out_dir)
    if not args.no_plot:
        plot(report, out_dir)
    exit_code = 0 if not report.failed else 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return exit_code
    n, bad = len(report.jobs), len(report.failed)
    print(
        f"sweep: {report.sweep_dir}  ({n} job{'s' if n != 1 else ''}, {n - bad} completed, {bad} not)"
    )
    if report.swept:
        print(f"swept: {', '.join(report.swept)}")
    if report.fixed:
        print(f"fixed: {' '.join(f'{k}={v}' for k, v in report.fixed.items())}")
    print(render(*job_table(report)))
    for job in report.failed:
        print(paint(f"  job {job.name} {job.status}: {short(job.error, 200)}", "red"))
    for group, stats in report.stats.items():
        done = max((s.n for s in stats.values()), default=0)
        print(f"group {group}: {done} completed seed{'s' if done != 1 else ''}")
        if stats:
            print(
                render(
                    ["metric", "n", "mean", "std", "95% interval"],
                    [
                        (
                            k,
                            s.n,
                            fmt(s.mean),
                            fmt(s.std),
                            f"[{fmt(s.low)}, {fmt(s.high)}]"
                            if s.low is not None
                            else "needs 2 seeds",
                        )
                        for k, s in stats.items()
                    ],
                )
            )
    print(f"tables: {out_dir}/{{jobs,summary}}.{{csv,md,tex}}")
    if report.plot:
        print(f"curves: {report.plot} (and .pdf, .svg)")
    elif report.plot_note:
        print(f"curves: {report.plot_note}")
    return exit_code
