"""Progress of a ``-m`` sweep: one plain line when each job starts and when it ends.

Hydra's basic launcher runs a sweep's jobs one after another, each with its own epoch lines (and
its own bar on a terminal); these lines say where the sweep stands: ``sweep job 2/6 started:
model.dropout=0.2`` ... ``sweep job 2/6 completed in 41.2 s``. The job number is Hydra's
(``hydra.job.num``); the count is the product of the swept values, from the command line and
``hydra.sweeper.params``, when the basic sweeper enumerates them (a sampling sweeper plugin has no
count known up front: then the lines say ``job 3``). The lines go through ``logging`` (the
console and the job's log file); they read counters only and never touch a run's bits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

from repro.base.search_record import SEARCH_SWEEPER

#: The sweep's own command-line overrides (JSON list), set by the entry point for its jobs (a launcher
#: plugin may run them in other processes).
SWEEP_ENV = "REPRO_SWEEP_OVERRIDES"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"

log = logging.getLogger("repro.sweep")


def sweep_size(overrides: list[str], params: dict[str, Any] | None = None) -> int | None:
    """How many jobs the basic sweeper makes of ``overrides`` and ``hydra.sweeper.params``.

    None when a sweep cannot be enumerated (``interval(...)`` for a sampling sweeper) or the
    overrides do not parse. The command line wins over ``params`` for the same key, as in Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
        sizes = {
            o.get_key_element(): len(list(o.sweep_string_iterator()))
            if o.is_sweep_override()
            else 1
            for o in parsed
        }
    except Exception:  # not something the basic sweeper enumerates
        return None
    return math.prod(sizes.values())


def remember_sweep(overrides: list[str] | None) -> None:
    """Called by the entry point: the sweep's overrides for its jobs, or none for a single run."""
    if overrides is None:
        os.environ.pop(SWEEP_ENV, None)
    else:
        os.environ[SWEEP_ENV] = json.dumps(list(overrides))


def _this_job() -> tuple[int, int | None, str, str] | None:
    """(job number from 1, job count or None, the job's overrides, what a job is called) inside a
    sweep; None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from repro.base.secrets import redact_args

    try:
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        number = int(hc.job.num) + 1
        task = " ".join(redact_args([str(o) for o in hc.overrides.task]))  # the job's log file too
        sweeper = OmegaConf.to_container(hc.sweeper, resolve=False)
    except Exception:  # no Hydra config here: not a sweep job
        return None
    total = None
    try:
        overrides = json.loads(os.environ.get(SWEEP_ENV) or "null")
    except ValueError:
        overrides = None
    basic = isinstance(sweeper, dict) and sweeper.get("_target_") == BASIC_SWEEPER
    # A hyperparameter search: its trials count from 0 (the run directory's name), n_trials in all.
    if isinstance(sweeper, dict) and sweeper.get("_target_") == SEARCH_SWEEPER:
        trials = sweeper.get("n_trials")
        return number - 1, trials if isinstance(trials, int) else None, task, "search trial"
    if basic and isinstance(overrides, list):
        params = sweeper.get("params")  # type: ignore[union-attr]
        total = sweep_size(
            [str(o) for o in overrides], params if isinstance(params, dict) else None
        )
    return number, total, task, "sweep job"


@contextlib.contextmanager
def job_lines() -> Iterator[None]:
    """Around one job of a sweep: ``sweep job i/N started: ...`` and ``... completed|failed in T s``."""
    job = _this_job()
    if job is None:
        yield
        return
    number, total, task, kind = job
    name = f"{kind} {number}/{total}" if total else f"{kind} {number}"
    log.info("%s started%s", name, f": {task}" if task else "")
    t0 = time.perf_counter()
    outcome = "failed after"
    try:
        yield
        outcome = "completed in"
    finally:
        log.info("%s %s %.1f s", name, outcome, time.perf_counter() - t0)
