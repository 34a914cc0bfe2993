"""``repro report SWEEP_DIR`` on a hyperparameter search: the best trial, the trials sorted by their
objective, and a figure of the objective against each searched parameter.

Read from the sweep's ``search.json`` (validated as untrusted data; nothing in it is executed):
the settings, each trial's parameters, state, objective and run directory. Written to
``SWEEP_DIR/report/``: ``trials.csv``/``.md``/``.tex`` and ``search.png``/``.pdf``/``.svg`` (with
matplotlib; the PDF and SVG carry no date, so the same search gives the same bytes).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.base.errors import RunDirectoryError
from repro.base.files import atomic_write
from repro.base.records import parse_json_object, read_record_file
from repro.base.search_record import SEARCH_FILE, check_record
from repro.tools.report_figure import FIGURE_FORMATS, readable
from repro.tools.report_tables import fmt, to_csv, to_latex, to_markdown


@dataclass
class SearchReport:
    """A search as read: its record, trials sorted by objective (best first, unfinished last)."""

    sweep_dir: Path
    record: dict[str, Any]
    trials: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    plot: Path | None = None
    plot_note: str | None = None

    @property
    def keys(self) -> list[str]:
        return list(self.record["settings"]["params"])

    @property
    def objective(self) -> str:
        return str(self.record["settings"]["objective"])

    @property
    def best(self) -> dict[str, Any] | None:
        done = [t for t in self.trials if t["state"] == "complete"]
        return done[0] if done else None

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] != "complete"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep_dir": str(self.sweep_dir),
            "settings": self.record["settings"],
            "best": self.best,
            "trials": self.trials,
            "files": [str(f) for f in self.files],
        }


def is_search(sweep_dir: str | Path) -> bool:
    """Whether ``sweep_dir`` holds a search's record."""
    path = Path(sweep_dir) / SEARCH_FILE
    return path.exists() or path.is_symlink()


def collect_search(sweep_dir: str | Path) -> SearchReport:
    """Read and check ``SWEEP_DIR/search.json``; RunDirectoryError (one line) when it is bad."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SEARCH_FILE
    record = check_record(parse_json_object(read_record_file(path), path), path)
    keys = set(record["settings"]["params"])
    for t in record["trials"]:
        if t["state"] == "complete" and t["value"] is None:
            raise RunDirectoryError(f"{path}: trial {t['number']} is complete with no value")
        if set(t["params"]) - keys:
            raise RunDirectoryError(
                f"{path}: trial {t['number']} has parameters the search does not name"
            )
    sign = -1.0 if record["settings"]["direction"] == "maximize" else 1.0
    trials = sorted(
        record["trials"],
        key=lambda t: (t["state"] != "complete", sign * (t["value"] or 0.0), t["number"]),
    )
    return SearchReport(sweep_dir, record, trials)


def _value(value: Any) -> str:
    return fmt(value) if isinstance(value, float) else str(value)


def trial_table(report: SearchReport, raw: bool = False) -> tuple[list[str], list[list[Any]]]:
    """A row per trial, best first: rank, trial, state, objective, each parameter, resumed, run."""
    headers = ["rank", "trial", "state", report.objective, *report.keys, "resumed", "run_dir"]
    rows = []
    for rank, t in enumerate(report.trials, 1):
        shown = (lambda v: v) if raw else _value
        rows.append(
            [
                rank if t["state"] == "complete" else "-",
                t["number"],
                t["state"],
                "-" if t["value"] is None else shown(t["value"]),
                *("-" if k not in t["params"] else shown(t["params"][k]) for k in report.keys),
                "yes" if t.get("resumed") else "",
                t["run_dir"],
            ]
        )
    return headers, rows


def write_search_tables(report: SearchReport, out_dir: Path) -> None:
    """Write trials.{csv,md,tex} (atomically, each)."""
    for ext, render in (("csv", to_csv), ("md", to_markdown), ("tex", to_latex)):
        path = out_dir / f"trials.{ext}"
        atomic_write(path, render(*trial_table(report, raw=ext == "csv")))
        report.files.append(path)


def plot_search(report: SearchReport, out_dir: Path) -> None:
    """search.png/.pdf/.svg: a panel per searched key, the objective of every completed trial
    against its value (log axis for a log range), the best trial marked."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        report.plot_note = "matplotlib is not installed (pip install -e '.[plots]'): no plot"
        return
    done = [t for t in report.trials if t["state"] == "complete"]
    if not done:
        report.plot_note = "no completed trial to plot"
        return
    keys, best = report.keys, report.best
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    style = {"svg.hashsalt": "repro-report", "pdf.fonttype": 42, "font.size": 9}
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(3.2 * cols, 2.6 * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, key in zip(axes.flat, keys, strict=False):
            spec = report.record["settings"]["params"][key]
            points = [(t["params"].get(key), t["value"]) for t in done]
            # Choices at evenly spaced positions, in the config's order, each labelled.
            labels = [str(c) for c in spec.get("choices") or []]
            labels += sorted({str(x) for x, _ in points} - set(labels))
            categorical = "choices" in spec or any(not _real(x) for x, _ in points)

            def at(x: Any, categorical: bool = categorical, labels: list[str] = labels) -> Any:
                return labels.index(str(x)) if categorical else x

            ax.scatter([at(x) for x, _ in points], [v for _, v in points], s=14, zorder=2)
            if categorical:
                ax.set_xticks(range(len(labels)), labels)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            if best is not None:
                bx = best["params"].get(key)
                ax.scatter(
                    [at(bx)],
                    [best["value"]],
                    s=60,
                    facecolors="none",
                    edgecolors="tab:red",
                    zorder=3,
                    label=f"best (trial {best['number']})",
                )
            if spec.get("log"):
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(readable(report.objective))
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys) :]:
            ax.set_visible(False)
        if best is not None:
            axes.flat[0].legend(frameon=False, fontsize=8)
        fig.suptitle(
            f"{readable(report.objective)} of {len(done)} trials "
            f"({report.record['settings']['direction']})"
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        for ext in FIGURE_FORMATS:
            buffer = io.BytesIO()
            meta = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(ext)
            fig.savefig(buffer, format=ext, dpi=200, bbox_inches="tight", metadata=meta)
            atomic_write(out_dir / f"search.{ext}", buffer.getvalue())
            report.files.append(out_dir / f"search.{ext}")
    report.plot = out_dir / "search.png"


def _real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def print_search(report: SearchReport, out_dir: Path, as_json: bool) -> int:
    """Print the search's report; 0 when every trial completed, 1 when any did not."""
    from repro.tools.table import paint, render, short

    code = 0 if not report.unfinished else 1
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return code
    s, n = report.record["settings"], len(report.trials)
    print(
        f"search: {report.sweep_dir}  ({n} trial{'s' if n != 1 else ''}, "
        f"{n - len(report.unfinished)} completed; objective {s['objective']}, {s['direction']}; "
        f"TPE seed {s['sampler_seed']})"
    )
    best = report.best
    if best is not None:
        params = " ".join(f"{k}={_value(v)}" for k, v in best["params"].items())
        print(
            paint(
                f"best: trial {best['number']}  {s['objective']}={_value(best['value'])}  {params}  "
                f"run {report.sweep_dir / best['run_dir']}",
                "green",
            )
        )
    print(render(*trial_table(report)))
    for t in report.unfinished:
        print(
            paint(f"  trial {t['number']} {t['state']}: {short(t.get('error') or '', 200)}", "red")
        )
    print(f"tables: {out_dir}/trials.{{csv,md,tex}}")
    if report.plot:
        print(f"figure: {report.plot} (and .pdf, .svg)")
    elif report.plot_note:
        print(f"figure: {report.plot_note}")
    return code
