"""Epoch metrics: the running sums, the epoch's row and log line, ``train.monitor`` and early stopping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from repro.base.config import RunConfig
from repro.base.errors import ConfigValueError
from repro.base.layout import CHECKPOINT_DIR
from repro.core.distributed import DistInfo, all_reduce_sum
from repro.run.checkpointing import BEST_FILE

log = logging.getLogger("repro.run")

#: Timing fields of metric rows: they differ run to run and are never compared.
TIME_FIELDS = ("time_s", "samples_per_s")
#: Fields of an epoch row that are not metrics.
ROW_FIELDS = ("split", "epoch", "step", *TIME_FIELDS)


def fmt(key: str, value: Any) -> str:
    """``key value`` for the epoch's log line (floats to four decimals)."""
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    return f"{key} {value}"


class EpochMetrics:
    """Sums of the epoch's per-batch metrics (weighted by samples), what :meth:`log` received, the
    epoch's row and line, and the best value by ``train.monitor`` with its patience counter.

    ``sums`` and ``best`` are checkpointed, so a resumed run writes the same rows and makes the same
    decisions. Rank 0's monitored value decides on every rank.
    """

    def __init__(
        self,
        settings: RunConfig,
        dist: DistInfo,
        *,
        node: str = "train",
        log_row: Callable[[dict[str, Any]], None],
    ) -> None:
        self.settings = settings
        self.dist = dist
        self.node = node
        self.log_row = log_row
        self.sums: dict[str, float] = {"n": 0.0}
        self.logged: dict[str, Any] = {}
        self.last_row: dict[str, Any] = {}
        #: train.monitor's best value, its epoch, epochs since, and whether early stopping ended the run.
        self.best: dict[str, Any] = {
            "value": None,
            "epoch": None,
            "bad_epochs": 0,
            "stopped": False,
        }
        self._mid_epoch = False

    def restore(self, sums: dict[str, float], best: dict[str, Any], *, mid_epoch: bool) -> None:
        """A checkpoint's sums and best value; ``mid_epoch``: the next epoch goes on with these sums."""
        self.sums = sums
        self.best.update(best)
        self._mid_epoch = mid_epoch

    def start_epoch(self) -> None:
        """A new epoch's sums (kept when a resume continues inside the epoch) and logged values."""
        if not self._mid_epoch:
            self.sums = {"n": 0.0}
        self._mid_epoch = False
        self.logged = {}

    def add(self, n: int, values: dict[str, float]) -> None:
        """One batch of ``n`` samples and its mean values."""
        self.sums["n"] += n
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * n

    def log(self, **metrics: Any) -> None:
        """Metrics of the current epoch: written in the epoch's row and line."""
        for key, value in metrics.items():
            self.logged[key] = float(value.item()) if isinstance(value, torch.Tensor) else value

    def end_epoch(self, epoch: int, step: int, elapsed: float, seen: float) -> dict[str, Any]:
        """The epoch's row (means over every rank's samples, then what was logged, then timing); rank 0
        writes it and its line. Every rank calls it."""
        # Insertion order: the same on every rank.
        keys = [k for k in self.sums if k != "n"]
        totals = all_reduce_sum([self.sums["n"], *(self.sums[k] for k in keys), seen], self.dist)
        count = max(totals[0], 1.0)
        row: dict[str, Any] = {"split": "epoch", "epoch": epoch, "step": step}
        row.update({f"train_{k}": totals[i + 1] / count for i, k in enumerate(keys)})
        row.update(self.logged)
        row.update(
            time_s=round(elapsed, 4), samples_per_s=round(totals[-1] / max(elapsed, 1e-9), 1)
        )
        self.last_row = row
        if self.dist.is_main:
            self.log_row(row)
            shown = "  ".join(fmt(k, v) for k, v in row.items() if k not in ROW_FIELDS)
            log.info(
                "epoch %d/%d  step %d  %s  %.0f samples/s",
                epoch + 1,
                self.settings.epochs,
                step,
                shown,
                row["samples_per_s"],
            )
        return row

    def watch(self, epoch: int, row: dict[str, Any], save_best: Callable[[], bool]) -> None:
        """Best weights and early stopping by ``train.monitor``. ``save_best()`` writes the weights when
        the value improves and says whether this rank wrote them."""
        name, mode = self.settings.monitor, self.settings.monitor_mode
        value = row.get(name) if self.dist.is_main else None
        present = isinstance(value, int | float) and not isinstance(value, bool)
        shared = all_reduce_sum(
            [1.0 if present else 0.0, float(value) if present else 0.0], self.dist
        )
        if not shared[0]:
            keys = sorted(k for k in row if k not in ROW_FIELDS)
            raise ConfigValueError(
                f"{self.node}.monitor", name, f"a metric of the epoch rows ({', '.join(keys)})"
            )
        value, best = shared[1], self.best["value"]
        # NaN never improves.
        better = value == value and (
            best is None or (value < best if mode == "min" else value > best)
        )
        if better:
            self.best.update(value=value, epoch=epoch, bad_epochs=0)
            if save_best():
                log.info(
                    "best %s %.4f at epoch %d: %s/%s",
                    name,
                    value,
                    epoch + 1,
                    CHECKPOINT_DIR,
                    BEST_FILE,
                )
            return
        self.best["bad_epochs"] += 1
        patience = self.settings.early_stopping_patience
        if patience is not None and self.best["bad_epochs"] >= patience:
            self.best["stopped"] = True
            if self.dist.is_main:
                log.info(
                    "early stopping after epoch %d: %s has not improved on %.4f (epoch %d) for %d epoch(s)",
                    epoch + 1,
                    name,
                    self.best["value"],
                    self.best["epoch"] + 1,
                    patience,
                )

    @property
    def stopped(self) -> bool:
        """True once early stopping ended the run."""
        return bool(self.best["stopped"])

    def result(self) -> dict[str, Any]:
        """The last epoch row's metrics, for the run's result."""
        return {k: v for k, v in self.last_row.items() if k not in ROW_FIELDS}

    def best_summary(self) -> dict[str, Any]:
        """``best`` in run.json: the monitor, its mode, the best value and epoch, whether it stopped."""
        return {
            "monitor": self.settings.monitor,
            "mode": self.settings.monitor_mode,
            "value": self.best["value"],
            "epoch": self.best["epoch"],
            "stopped_early": self.best["stopped"],
            "file": f"{CHECKPOINT_DIR}/{BEST_FILE}",
        }
