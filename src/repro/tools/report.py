"""``repro report SWEEP_DIR``: a sweep's jobs, statistics across seeds, and a figure and tables for a paper.

A hyperparameter search's sweep directory (its ``search.json``) gets the search's report instead
(:mod:`repro.tools.report_search`): the best trial, the trials by objective, the objective against
each searched parameter.

Jobs are the sub-directories holding a ``run.json``. A *swept key* is an override whose value
differs between jobs (the resolved value from the job's ``config.yaml``, else the override text),
so settings shared by every job never clutter a label; the seed comes from ``run.json``. Jobs
with the same swept values form a group; its statistics are over its completed jobs. Failed or
unfinished jobs are listed with their status and error and counted, never silently dropped.

Written to ``SWEEP_DIR/report/`` (``--out`` to change): ``curves.png``/``.pdf``/``.svg`` (with
matplotlib: a panel per logged metric, the mean over each group's seeds, a band of one standard
deviation only where the seeds differ), ``jobs.csv``/``.md``/``.tex`` (a row per job, a column
per swept key and the seed) and ``summary.csv``/``.md``/``.tex`` (per group: n, mean, std, 95%
interval; a metric every seed gives the same value shows that value and no std). Only metrics are
plotted and tabled (``report_sweep.is_metric``). The PDF and SVG carry no date, so the same runs
give the same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repro.base.errors import ReproError
from repro.tools.report_figure import plot
from repro.tools.report_search import (
    collect_search,
    is_search,
    plot_search,
    print_search,
    write_search_tables,
)
from repro.tools.report_sweep import OUT_DIR, Stat, collect
from repro.tools.report_tables import fmt, job_table, write_tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``repro report`` arguments."""
    parser.add_argument("sweep_dir")
    parser.add_argument(
        "--out", help=f"directory for the figure and tables (default SWEEP_DIR/{OUT_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only, no figure")


def _interval(stat: Stat) -> str:
    """The 95% interval column: the interval, or why there is none."""
    if stat.constant:
        return "none: does not vary with the seed"
    if stat.low is None:
        return "needs 2 seeds"
    return f"[{fmt(stat.low)}, {fmt(stat.high)}]"


def _out_dir(args: argparse.Namespace, sweep_dir: Path) -> Path:
    """The folder the report writes into (made here): ``--out``, else ``SWEEP_DIR/report``."""
    out_dir = Path(args.out) if args.out else sweep_dir / OUT_DIR
    # A link in the sweep directory could point anywhere: the report writes only into a real folder.
    if out_dir.is_symlink():
        raise ReproError(
            f"--out {out_dir}: is a symbolic link; the report never writes through a link. Give the "
            "folder it should write into with --out"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ReproError(f"--out {out_dir}: exists and is not a directory; give a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def run(args: argparse.Namespace) -> int:
    """Report a sweep; 0 when every job completed, 1 when any did not."""
    from repro.tools.table import paint, render, short

    # A hyperparameter search (its search.json): the best trial, the trials by objective, a figure.
    if is_search(args.sweep_dir):
        search = collect_search(args.sweep_dir)
        out_dir = _out_dir(args, search.sweep_dir)
        write_search_tables(search, out_dir)
        if not args.no_plot:
            plot_search(search, out_dir)
        return print_search(search, out_dir, args.json)
    report = collect(args.sweep_dir)
    out_dir = _out_dir(args, report.sweep_dir)
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
                    [(k, s.n, fmt(s.mean), fmt(s.std), _interval(s)) for k, s in stats.items()],
                )
            )
    print(f"tables: {out_dir}/{{jobs,summary}}.{{csv,md,tex}}")
    if report.plot:
        print(f"curves: {report.plot} (and .pdf, .svg)")
    elif report.plot_note:
        print(f"curves: {report.plot_note}")
    return exit_code
