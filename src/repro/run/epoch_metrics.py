"""Epoch metrics: the running sums, the epoch's row and log line, the metrics derived from its means,
the unit of throughput, ``train.monitor`` and early stopping."""

from __future__ import annotations

import logging
import numbers
import re
import reprlib
from collections.abc import Callable
from typing import Any

import torch

from repro.base.config import RunConfig
from repro.base.errors import ConfigValueError, ReproError
from repro.base.layout import CHECKPOINT_DIR
from repro.core.distributed import DistInfo, all_reduce_sum
from repro.run.checkpointing import BEST_FILE

log = logging.getLogger("repro.run")

#: What ``run.step``'s ``n`` counts unless the task sets another unit (run.set_unit).
DEFAULT_UNIT = "samples"
#: Fields of an epoch row that say which row it is.
POSITION_FIELDS = ("split", "epoch", "step")
#: A unit names the rows' throughput key (``<unit>_per_s``): one lowercase word.
_UNIT = re.compile(r"[a-z][a-z0-9_]*")


def is_time_field(key: str) -> bool:
    """True for a row's timing fields, which differ run to run and are never compared: ``time_s`` and
    the throughput in any unit (``samples_per_s``, ``tokens_per_s``, ...)."""
    return key == "time_s" or key.endswith("_per_s")


class DerivedMetricError(ReproError, ValueError):
    """A metric given to ``run.derive`` is declared twice or under a name the rows reserve, or its
    function raised or returned something other than a number."""


def as_number(value: Any) -> int | float | None:
    """``value`` as a plain int or float (a one-element tensor too), or None when it is not a number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def fmt(key: str, value: Any) -> str:
    """``key value`` for the epoch's log line (floats to four decimals)."""
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    return f"{key} {value}"


class EpochMetrics:
    """Sums of the epoch's per-batch metrics (weighted by each batch's count of the unit: samples unless
    :meth:`set_unit` says otherwise), what :meth:`log` received, the metrics :meth:`derive` declares,
    the epoch's row and line, and the best value by ``train.monitor`` with its patience counter.

    ``sums`` and ``best`` are checkpointed, so a resumed run writes the same rows and makes the same
    decisions; derived metrics are recomputed from the sums, so they need no state. Rank 0's
    monitored value decides on every rank.
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
        #: What run.step's counts are (``samples``, ``tokens``, ...): the throughput's unit.
        self.unit = DEFAULT_UNIT
        #: Name -> function of the epoch's metrics, in the order declared.
        self.derived: dict[str, Callable[[dict[str, Any]], Any]] = {}

    @property
    def rate_key(self) -> str:
        """The rows' throughput key: ``samples_per_s`` by default, ``<unit>_per_s``."""
        return f"{self.unit}_per_s"

    def is_metric(self, key: str) -> bool:
        """True for an epoch row's metrics (means, logged and derived values), not its position or timing."""
        return key not in POSITION_FIELDS and key not in ("time_s", self.rate_key)

    def set_unit(self, unit: str) -> None:
        """What the counts given to :meth:`add` are: the line's ``<unit>/s`` and the rows' ``<unit>_per_s``."""
        if not isinstance(unit, str) or not _UNIT.fullmatch(unit):
            raise ValueError(
                f"run.set_unit({unit!r}): expected one lowercase word such as 'tokens' (the rows "
                "carry the throughput as <unit>_per_s)"
            )
        self.unit = unit

    def derive(self, **functions: Callable[[dict[str, Any]], Any]) -> None:
        """Declare metrics computed at each epoch's end from its metrics (see :meth:`end_epoch`)."""
        for name, function in functions.items():
            if not callable(function):
                raise DerivedMetricError(
                    f"run.derive({name}=...): expected a function of the epoch's metrics (a dict), "
                    f"got {type(function).__name__}"
                )
            if name in self.derived or not self.is_metric(name) or is_time_field(name):
                why = (
                    "is derived already"
                    if name in self.derived
                    else "names a row's position or timing (split, epoch, step, time_s, *_per_s)"
                )
                raise DerivedMetricError(
                    f"run.derive({name}=...): {name} {why}; declare each derived metric once, "
                    "under a name of its own"
                )
        self.derived.update(functions)

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
        """One batch of ``n`` units (samples unless :meth:`set_unit` says otherwise) and its mean values."""
        self.sums["n"] += n
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * n

    def log(self, **metrics: Any) -> None:
        """Metrics of the current epoch: written in the epoch's row and line."""
        for key, value in metrics.items():
            self.logged[key] = float(value.item()) if isinstance(value, torch.Tensor) else value

    def end_epoch(self, epoch: int, step: int, elapsed: float, seen: float) -> dict[str, Any]:
        """The epoch's row (means over every rank's samples, then what was logged, then the derived
        metrics, then timing: ``time_s`` and ``<unit>_per_s``); rank 0 derives, writes the row and
        logs its line. Every rank calls it."""
        # Insertion order: the same on every rank.
        keys = [k for k in self.sums if k != "n"]
        totals = all_reduce_sum([self.sums["n"], *(self.sums[k] for k in keys), seen], self.dist)
        count = max(totals[0], 1.0)
        row: dict[str, Any] = {"split": "epoch", "epoch": epoch, "step": step}
        row.update({f"train_{k}": totals[i + 1] / count for i, k in enumerate(keys)})
        row.update(self.logged)
        # Only rank 0 has what run.log received (evaluation runs there), and writes and monitors rows.
        if self.dist.is_main:
            self._derive(row, epoch)
        row["time_s"] = round(elapsed, 4)
        row[self.rate_key] = round(totals[-1] / max(elapsed, 1e-9), 1)
        self.last_row = row
        if self.dist.is_main:
            self.log_row(row)
            shown = "  ".join(fmt(k, v) for k, v in row.items() if self.is_metric(k))
            log.info(
                "epoch %d/%d  step %d  %s  %.0f %s/s",
                epoch + 1,
                self.settings.epochs,
                step,
                shown,
                row[self.rate_key],
                self.unit,
            )
        return row

    def _derive(self, row: dict[str, Any], epoch: int) -> None:
        """Each derived metric, in the order declared, from the row's metrics so far (a later one sees
        the earlier ones)."""
        for name, function in self.derived.items():
            where = f"run.derive({name}=...) at the end of epoch {epoch + 1}"
            if name in row:
                raise DerivedMetricError(
                    f"{where}: the epoch row has {name} already (from run.step or run.log); "
                    "derive it under another name"
                )
            metrics = {k: v for k, v in row.items() if self.is_metric(k)}
            try:
                value = function(metrics)
            except Exception as exc:
                raise DerivedMetricError(
                    f"{where} raised {type(exc).__name__}: {exc} (the epoch's metrics: "
                    f"{', '.join(metrics) or 'none'})"
                ) from exc
            number = as_number(value)
            if number is None:
                raise DerivedMetricError(
                    f"{where} returned {reprlib.repr(value)} ({type(value).__name__}): "
                    "expected a number"
                )
            row[name] = number

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
            keys = sorted(k for k in row if self.is_metric(k))
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
        return {k: v for k, v in self.last_row.items() if self.is_metric(k)}

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
