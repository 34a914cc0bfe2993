"""``repro report SWEEP_DIR``: final metrics per job, and mean, spread and a 95% interval across seeds.

Jobs are the sub-directories holding a ``run.json``. Jobs whose overrides
differ only in ``repro.seed`` form one group; the statistics are per group,
over its completed jobs. Failed or unfinished jobs are listed with their
status and error, and counted, never silently dropped. With matplotlib
installed, ``report.png`` in the sweep directory shows each logged metric's
mean across seeds, with a band of one standard deviation.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import RunDirectoryError
from repro.record import atomic_write

# Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_NOT_CURVES = {"step", "epoch", "time_s", "samples_per_s"}


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


@dataclass
class Job:
    name: str
    dir: Path
    status: str
    seed: int | None
    group: str
    result: dict[str, float]
    error: str | None


@dataclass
class Stat:
    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[Job]
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)  # group -> metric -> Stat
    plot: Path | None = None
    plot_note: str = ""

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "completed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep_dir": str(self.sweep_dir),
            "jobs": [{"name": j.name, "status": j.status, "seed": j.seed, "group": j.group, "result": j.result,
                      "error": j.error} for j in self.jobs],
            "failed": [j.name for j in self.failed],
            "stats": {g: {m: s.__dict__ for m, s in metrics.items()} for g, metrics in self.stats.items()},
            "plot": str(self.plot) if self.plot else None,
            "plot_note": self.plot_note,
        }


def _numbers(tree: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(tree, dict):
        return out
    for key, value in tree.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        out[key] = float(value)
    return out


def _group(overrides: list[str]) -> str:
    kept = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(("repro.seed", "hydra."))]
    return " ".join(sorted(kept)) or "(defaults)"


def summarize(values: list[float]) -> Stat:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Stat(n, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Stat(n, mean, std, mean - half, mean + half)


def collect(sweep_dir: str | Path) -> SweepReport:
    """Read every job of a sweep; raise RunDirectoryError when there is none."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise RunDirectoryError(f"{sweep_dir}: no such directory")
    dirs = sorted((p.parent for p in root.glob("*/run.json")), key=lambda p: (len(p.name), p.name))
    if not dirs:
        raise RunDirectoryError(f"{sweep_dir}: not a sweep directory (no job sub-directory holds a run.json)")
    jobs = []
    for d in dirs:
        try:
            m = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            m = None
        if not isinstance(m, dict):
            jobs.append(Job(d.name, d, "unreadable", None, "?", {}, "run.json could not be read as a run record"))
            continue
        status = m.get("status", "?")
        if status == "running":
            status = "running or killed"
        overrides = m.get("overrides") if isinstance(m.get("overrides"), list) else []
        seed = m.get("seed") if isinstance(m.get("seed"), int) else None
        jobs.append(Job(d.name, d, str(status), seed, _group([str(o) for o in overrides]),
                        _numbers(m.get("result")), m.get("error")))
    report = SweepReport(root, jobs)
    for group in dict.fromkeys(j.group for j in jobs):
        done = [j for j in jobs if j.group == group and j.status == "completed"]
        metrics = sorted({k for j in done for k in j.result})
        report.stats[group] = {k: summarize([j.result[k] for j in done if k in j.result]) for k in metrics}
    return report


def _curves(job: Job) -> dict[str, dict[int, float]]:
    """(split/metric) -> {step: value} from a job's metrics.jsonl."""
    out: dict[str, dict[int, float]] = {}
    path = job.dir / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue  # not a metrics row this report understands
        split = str(row.get("split", ""))
        for key, value in _numbers(row).items():
            if key not in _NOT_CURVES:
                out.setdefault(f"{split}/{key}" if split else key, {})[row["step"]] = value
    return out


def plot(report: SweepReport) -> None:
    """Write report.png: per metric, the mean across a group's completed seeds with a +-1 std band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.plot_note = "matplotlib is not installed (pip install -e '.[plots]'): no plot"
        return
    curves_by_group: dict[str, list[dict[str, dict[int, float]]]] = {}
    for job in report.jobs:
        if job.status == "completed":
            curves_by_group.setdefault(job.group, []).append(_curves(job))
    names = sorted({name for runs in curves_by_group.values() for c in runs for name in c})
    if not names:
        report.plot_note = "no metrics.jsonl rows to plot"
        return
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for group, runs in curves_by_group.items():
            series = [c[name] for c in runs if name in c]
            steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not steps:
                continue
            means = [sum(s[x] for s in series) / len(series) for x in steps]
            stds = [math.sqrt(sum((s[x] - mu) ** 2 for s in series) / max(len(series) - 1, 1))
                    for x, mu in zip(steps, means, strict=True)]
            label = f"{group} (n={len(series)})"
            line, = ax.plot(steps, means, label=label, marker="o" if len(steps) < 20 else None, markersize=3)
            ax.fill_between(steps, [m - s for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)], alpha=0.2, color=line.get_color())
        ax.set_title(name)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(f"{report.sweep_dir.name}: mean across seeds, band = 1 std")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    report.plot = report.sweep_dir / "report.png"
    atomic_write(report.plot, buffer.getvalue())
