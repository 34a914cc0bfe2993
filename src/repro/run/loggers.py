"""Metric loggers: copies of the run's metrics rows in CSV, TensorBoard, MLflow or W&B.

``metrics.jsonl`` is the record, always written; a logger (``logger=csv``,
``logger=[csv,tensorboard]``, ...) gets the same rows, on rank 0 only. Three
promises, whatever the backend:

* a logger never changes the bits: its library is imported and called with
  Python's, NumPy's and torch's global RNG states saved and put back, and it
  never sees the run's named streams;
* its run id (MLflow's, W&B's) is recorded in ``run.json`` under ``loggers``,
  and a resume continues that logger run;
* a resume leaves no step twice in a logger's store: the CSV file is cut back
  to the checkpoint's step as ``metrics.jsonl`` is, TensorBoard event files are
  purged from the next step (``purge_step``), and an MLflow run skips the
  (metric, step) pairs the interrupted process had already logged.

Each backend imports its library when it opens, never at import time, so a
project without it runs as before. Metric names are ``<split>/<key>``
(``train/loss``, ``epoch/val_acc``); the CSV file has metrics.jsonl's columns.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from repro.base.config import (
    CsvLoggerConfig,
    MLflowLoggerConfig,
    TensorBoardLoggerConfig,
    WandbLoggerConfig,
)
from repro.base.errors import ReproError, RunDirectoryError
from repro.base.files import atomic_write
from repro.base.secrets import redact_text

log = logging.getLogger("repro.run")

#: Where the default MLflow file store lives, under the run directory.
MLFLOW_DIR = "logs/mlflow"
#: Keys of a metrics row that say where it belongs rather than what was measured.
ROW_KEYS = ("split", "epoch", "step")


class LoggerError(ReproError):
    """A logger cannot continue the logger run recorded in run.json."""


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Run a block (a logger's import or call) with the global RNGs of Python, NumPy and torch saved and
    restored, so a library that draws from them (or seeds them) cannot shift the run's randomness."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The row's numbers as ``<split>/<key>`` -> float (bools, strings and the row keys left out)."""
    split = row.get("split", "metrics")
    return {
        f"{split}/{k}": float(v)
        for k, v in row.items()
        if k not in ROW_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _under(run_dir: Path, path: str) -> Path:
    """``path`` under the run directory; the schema refuses one that leaves it (``InsideRun``)."""
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise LoggerError(f"{path!r}: a logger's path must be relative, inside the run directory")
    return run_dir / path


def handed(cfg: Any) -> Any:
    """A logger's settings as handed to its library (which writes them into its own files): every string
    with its secrets hidden, except the tracking URI the client connects with (recorded redacted)."""
    import dataclasses

    hidden = {
        f.name: redact_text(value)
        for f in dataclasses.fields(cfg)
        if f.name != "tracking_uri" and isinstance(value := getattr(cfg, f.name), str)
    }
    return dataclasses.replace(cfg, **hidden)


class MetricLogger(Protocol):
    """One backend. ``open`` starts a logger run, or continues ``recorded`` (what run.json holds for it)
    after ``from_step``; it returns what run.json records. Every call runs under :func:`rng_untouched`."""

    name: str

    def open(
        self, run_dir: Path, from_step: int | None, recorded: dict[str, Any]
    ) -> dict[str, Any]: ...

    def log(self, row: dict[str, Any], step: int) -> None: ...

    def close(self, status: str) -> None: ...


class CsvLogger:
    """metrics.jsonl's rows as CSV lines (one column per key seen so far; the file is rewritten when a
    row brings a new key), flushed row by row; cut back to the checkpoint's step on resume."""

    name = "csv"

    def __init__(self, cfg: CsvLoggerConfig) -> None:
        self.cfg = cfg
        self.path = Path()
        self.columns: list[str] = []
        self._file: Any = None

    def open(
        self, run_dir: Path, from_step: int | None, recorded: dict[str, Any]
    ) -> dict[str, Any]:
        self.path = _under(run_dir, self.cfg.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if from_step is None and self.path.exists():
            raise RunDirectoryError(
                f"logger.csv.path={self.cfg.path}: {self.path} already exists and is never "
                "overwritten; choose another path"
            )
        if from_step is not None and self.path.exists():
            columns, rows = self._read()
            kept = [r for r in rows if _int(r.get("step")) <= from_step]
            self._rewrite(columns, kept)
        self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        return {"path": self.cfg.path}

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        with open(self.path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = [
                r for r in reader if None not in r
            ]  # a line cut short by a kill has too few cells
            return list(reader.fieldnames or []), rows

    def _rewrite(self, columns: list[str], rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        if self._file is not None:
            self._file.close()
            self._file = None
        atomic_write(self.path, buffer.getvalue())
        self.columns = columns

    def log(self, row: dict[str, Any], step: int) -> None:
        new = [k for k in row if k not in self.columns]
        if new:  # a new key: the header grows, so the file is written again
            _, rows = self._read() if self.columns else ([], [])
            self._rewrite([*self.columns, *new], [*rows, row])
            self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            return
        writer = csv.DictWriter(self._file, self.columns, restval="", lineterminator="\n")
        writer.writerow(row)
        self._file.flush()

    def close(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _int(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 1 << 62  # no readable step: not kept on resume


class TensorBoardLogger:
    """Scalars in TensorBoard event files (``torch.utils.tensorboard``), flushed row by row. A resume
    writes with ``purge_step`` = the checkpoint's step + 1: TensorBoard drops what the interrupted
    process wrote from there on."""

    name = "tensorboard"

    def __init__(self, cfg: TensorBoardLoggerConfig) -> None:
        self.cfg = cfg
        self.writer: Any = None

    def open(
        self, run_dir: Path, from_step: int | None, recorded: dict[str, Any]
    ) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = _under(run_dir, self.cfg.log_dir)
        purge = None if from_step is None else from_step + 1
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)
        return {"log_dir": self.cfg.log_dir}

    def log(self, row: dict[str, Any], step: int) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowLogger:
    """An MLflow run: in a file store under the run directory unless ``tracking_uri`` names another. A
    resume reopens the recorded run id and skips every (metric, step) the interrupted process logged
    after the checkpoint (MLflow keeps every value logged, so logging them again would duplicate them)."""

    name = "mlflow"

    def __init__(self, cfg: MLflowLoggerConfig) -> None:
        self.cfg = cfg
        self.client: Any = None
        self.run_id = ""
        self.skip: set[tuple[str, int]] = set()

    def open(
        self, run_dir: Path, from_step: int | None, recorded: dict[str, Any]
    ) -> dict[str, Any]:
        uri = self.cfg.tracking_uri
        if uri is None:
            # MLflow keeps its file store in maintenance mode behind this switch; it is what a local,
            # dependency-free store under the run directory needs.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            store = run_dir / MLFLOW_DIR
            store.mkdir(parents=True, exist_ok=True)
            uri = store.resolve().as_uri()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if from_step is not None and recorded.get("run_id"):
            self.run_id = str(recorded["run_id"])
            try:
                run = self.client.get_run(self.run_id)
            except Exception as exc:  # the store's own error types: the message is what matters
                raise LoggerError(
                    f"logger=mlflow: cannot continue MLflow run {self.run_id} recorded in run.json "
                    f"({str(exc).splitlines()[0][:160]}); resume with logger=none, or restore the store"
                ) from None
            for key in run.data.metrics:
                for metric in self.client.get_metric_history(self.run_id, key):
                    if metric.step > from_step:
                        self.skip.add((key, metric.step))
            self.client.update_run(self.run_id, status="RUNNING")
            experiment_id = run.info.experiment_id
        else:
            found = self.client.get_experiment_by_name(self.cfg.experiment_name)
            experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(self.cfg.experiment_name)
            )
            run = self.client.create_run(experiment_id, run_name=self.cfg.run_name or run_dir.name)
            self.run_id = run.info.run_id
        return {
            "run_id": self.run_id,
            "experiment_id": experiment_id,
            "tracking_uri": redact_text(self.cfg.tracking_uri) if self.cfg.tracking_uri else None,
        }

    def log(self, row: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, step)
            for key, value in scalars(row).items()
            if (key, step) not in self.skip
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str) -> None:
        if self.client is not None:
            self.client.set_terminated(
                self.run_id, "FINISHED" if status == "completed" else "FAILED"
            )
            self.client = None


class WandbLogger:
    """A W&B run, offline by default (files under the run directory; ``wandb sync`` uploads them). A
    resume passes the recorded id with ``resume="allow"``; steps before the checkpoint's are never sent
    again, and W&B itself ignores a step lower than one it has."""

    name = "wandb"

    def __init__(self, cfg: WandbLoggerConfig) -> None:
        self.cfg = cfg
        self.run: Any = None

    def open(
        self, run_dir: Path, from_step: int | None, recorded: dict[str, Any]
    ) -> dict[str, Any]:
        import wandb

        folder = _under(run_dir, self.cfg.dir)
        folder.mkdir(parents=True, exist_ok=True)
        resume_id = recorded.get("run_id") if from_step is not None else None
        self.run = wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            name=self.cfg.name or run_dir.name,
            dir=str(folder),
            mode=self.cfg.mode,
            id=resume_id,
            resume="allow" if resume_id else None,
        )
        return {"run_id": self.run.id, "project": self.cfg.project, "mode": self.cfg.mode}

    def log(self, row: dict[str, Any], step: int) -> None:
        self.run.log(scalars(row), step=step)

    def close(self, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "completed" else 1)
            self.run = None


BACKENDS: dict[str, type] = {
    "csv": CsvLogger,
    "tensorboard": TensorBoardLogger,
    "mlflow": MLflowLogger,
    "wandb": WandbLogger,
}
