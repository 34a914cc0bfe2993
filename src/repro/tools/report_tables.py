"""The report's tables: a row per job and a row per group, as CSV (full precision), GitHub Markdown
and a LaTeX booktabs tabular, numbers right-aligned; written atomically."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from repro.base.files import atomic_write
from repro.tools.report_sweep import Stat, SweepReport

# fmt: off
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$"}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")
# fmt: on


def fmt(value: Any) -> str:
    """A cell as people read it: floats to 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


#: A summary cell's note for a metric every seed of the group gave the same value.
SAME_FOR_ALL_SEEDS = "(same for all seeds)"


def mean_std(stat: Stat) -> str:
    """'0.6699 ± 0.0086': the std to two significant digits, the mean to the same decimal place;
    '0.02 (same for all seeds)' for a value that does not vary with the seed (no std to show)."""
    if stat.constant:
        return f"{fmt(stat.mean)} {SAME_FOR_ALL_SEEDS}"
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
    (``raw``: separate mean, std, ci95_low, ci95_high columns). A metric every seed gave the same
    value shows that value and says so (``raw``: the value as its mean, no std or interval)."""
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
    """Whether a column holds numbers only ('-' for none, 'a ± b' and 'a (same for all seeds)'
    count): it is right-aligned."""
    cells = [str(r[column]).removesuffix(f" {SAME_FOR_ALL_SEEDS}") for r in rows]
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
            # Atomically, with the permissions the user's umask gives (0644 by default).
            atomic_write(path, render(*build(report, raw=ext == "csv")))
            report.files.append(path)
