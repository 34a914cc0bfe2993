"""Reading a sweep for ``repro report``: its jobs (as data, nothing executed), the keys that vary
between them, the groups they form, and each group's statistics across seeds (n, mean, std, a
Student-t 95% interval).

Jobs are the sub-directories holding a ``run.json``. A *swept key* is an override whose value
differs between jobs (the resolved value from the job's ``config.yaml``, else the override text);
the seed comes from ``run.json``. Jobs with the same swept values form a group; its statistics are
over its completed jobs. Failed or unfinished jobs are kept with their status and error. Only
metrics (``is_metric``: numbers under names that are not counters, ids or times) are kept from a
result or a metrics row; a metric every seed gives the same value is that value (``constant``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repro.base.errors import RunDirectoryError
from repro.base.layout import CONFIG_FILE, RUN_FILE
from repro.base.overrides import flatten

# fmt: off
# Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
# fmt: on
SEED_KEY = "repro.seed"
#: Names that say where a run or row is (split, step and epoch counters, seed, id) or when:
#: bookkeeping, never a metric, whatever the value (``steps`` is the count the kit adds to every
#: result).
# fmt: off
BOOKKEEPING = frozenset({"split", "step", "steps", "global_step", "epoch", "epochs", "seed", "id",
                         "time"})
# fmt: on
#: Name endings of the same kinds: counters (``best_epoch``), ids (``run_id``), and times and rates
#: in seconds (the rows' ``time_s`` and ``samples_per_s``, ``tokens_per_s``, ``eval_time``), which
#: differ run to run.
BOOKKEEPING_ENDINGS = ("_step", "_steps", "_epoch", "_epochs", "_id", "_s", "_ms", "_sec", "_time")
#: The report's folder inside the sweep directory (``--out`` to change).
OUT_DIR = "report"


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
    # Every override key -> its value here.
    settings: dict[str, str] = field(default_factory=dict)
    # The keys that vary across the sweep.
    swept: dict[str, str] = field(default_factory=dict)
    # config.yaml, flattened.
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def value(self, key: str) -> str:
        """The job's value for an override key: its override, else its config's, else 'default'."""
        if key in self.settings:
            return self.settings[key]
        return _text(self.config[key]) if key in self.config else "default"


@dataclass
class Stat:
    """A metric over a group's completed jobs; std and the 95% interval need two of them, and are
    None when every job has the same value (``constant``: it does not vary with the seed)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    constant: bool = False


@dataclass
class SweepReport:
    """Everything ``repro report`` shows; ``to_dict`` is its JSON form."""

    sweep_dir: Path
    jobs: list[Job]
    # Group -> metric -> Stat.
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)
    # Keys that vary across jobs, seed excluded.
    swept: list[str] = field(default_factory=list)
    # Overrides every job shares.
    fixed: dict[str, str] = field(default_factory=dict)
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
    """Mean, sample std and a Student-t 95% interval for the mean (std and interval need n >= 2 and
    values that differ; equal values give that value, ``constant``, no std)."""
    n = len(values)
    # The same value from every seed (a schedule, a constant): that value, and no std to show.
    if n >= 2 and all(v == values[0] for v in values):
        return Stat(n, values[0], None, None, None, constant=True)
    mean = sum(values) / n
    if n < 2:
        return Stat(n, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Stat(n, mean, std, mean - half, mean + half)


def is_metric(key: str, value: Any) -> bool:
    """Whether a result or metrics-row entry is a metric: a finite number (not a bool) under a name
    that is not bookkeeping (see ``BOOKKEEPING``). Strings (paths, digests), bools, lists, mappings
    and None never are."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    name = key.lower()
    return name not in BOOKKEEPING and not name.endswith(BOOKKEEPING_ENDINGS)


def metrics_in(tree: Any) -> dict[str, float]:
    """The metrics (see ``is_metric``) among the entries of a mapping; empty for anything else."""
    if not isinstance(tree, dict):
        return {}
    return {str(k): float(v) for k, v in tree.items() if is_metric(str(k), v)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def read_text(path: Path) -> str:
    """A record file's text, read as data (regular files of bounded size only); RunDirectoryError else."""
    from repro.tools.runs import read_record_file

    return read_record_file(path)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(read_text(path))
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
            m = json.loads(read_text(d / RUN_FILE))
        except (OSError, ValueError, RunDirectoryError):
            m = None
        if not isinstance(m, dict):
            why = "run.json could not be read as a run record"
            jobs.append(Job(d.name, d, "unreadable", None, "?", {}, why))
            continue
        status = str(m.get("status", "?"))
        seed = m.get("seed") if isinstance(m.get("seed"), int) else None
        status = "running or killed" if status == "running" else status
        job = Job(d.name, d, status, seed, "", metrics_in(m.get("result")), m.get("error"))
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
