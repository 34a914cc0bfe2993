"""The run object: what the entry point hands to an experiment (see docs/run.md).

One :class:`Run` per process owns everything a guarantee depends on, so an experiment's loop holds
only its own logic. It is a façade over parts with one job each: :class:`CheckpointManager` (tracked
objects, checkpoint content, save and restore, best weights, the writer thread), :class:`Stepping`
(backward, accumulation windows, clipping, scaler, autocast), :class:`StepRecorder` (each optimizer
step's fingerprint and metrics rows), :class:`EpochMetrics` (epoch rows, derived metrics, the unit of
throughput, monitor, early stopping), :class:`ResumeSelfCheck` (a resume against the steps the
interrupted process recorded), the record, and :func:`close_run` (how the record ends).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from repro.base.config import RunConfig
from repro.core.loader import ReproDataLoader
from repro.core.setup import Repro
from repro.run.checkpointing import CheckpointManager, StateError
from repro.run.closing import close_run
from repro.run.data_record import fingerprint_data
from repro.run.epoch_metrics import EpochMetrics
from repro.run.faults import Faults
from repro.run.logger_group import Loggers
from repro.run.passes import ActivePasses
from repro.run.prepare import compile_model, place, prepare_strategy, resolve_device
from repro.run.progress import EpochProgress, wants_bar
from repro.run.record import RunRecord, raise_pending_signal
from repro.run.self_check import ResumeSelfCheck
from repro.run.stepping import SCALER, TRAINING_KEYS, Stepping
from repro.run.steps import StepRecorder, Window, measure

__all__ = ["Run", "StateError", "resolve_device"]

log = logging.getLogger("repro.run")


class Run:
    """One run of an experiment, in one process (one rank of a torchrun job).

    Attributes: ``cfg`` (the run's config: its own on a resume), ``dir``, ``settings`` (typed
    :class:`RunConfig`), ``repro`` (seed, streams, report), ``dist``, ``device``, ``global_step``
    (optimizer steps done), ``epoch``. Its parts: ``checkpoints`` (:class:`CheckpointManager`),
    ``stepping`` (:class:`Stepping`), ``metrics`` (:class:`EpochMetrics`), ``self_check``
    (:class:`ResumeSelfCheck`), ``record``, ``loggers``, ``progress``.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        settings: RunConfig,
        repro: Repro,
        record: RunRecord,
        *,
        config_hash: str,
        resume_state: dict[str, Any] | None = None,
        pending_check: list[dict[str, Any]] | None = None,
        node: str = "train",
        device: torch.device | None = None,
        loggers: Loggers | None = None,
    ) -> None:
        self.cfg = cfg
        self.dir = run_dir
        self.settings = settings
        self.repro = repro
        self.dist = repro.dist
        self.record = record
        self.node = node
        self.device = device or resolve_device(
            settings.device, self.dist.local_rank, key=f"{node}.device"
        )
        #: Optimizer steps done, and the epoch being run (the next one, between epochs).
        self.global_step, self.epoch = 0, 0
        self.faults = Faults.from_environment()
        #: Copies of the metrics rows (logger=csv, tensorboard, ...); none on ranks other than 0.
        self.loggers = loggers or Loggers()
        self._resume_state = resume_state
        self.checkpoints = CheckpointManager(
            run_dir, repro, config_sha256=config_hash, keep=settings.keep_checkpoints
        )
        self.stepping = Stepping(settings, self.device.type)
        self.metrics = EpochMetrics(settings, self.dist, node=node, log_row=self._log_row)
        self.self_check = ResumeSelfCheck(
            record, pending_check, resumed=bool(resume_state), is_main=self.dist.is_main
        )
        self.steps = StepRecorder(
            record,
            self.self_check,
            self.metrics,
            log_every=settings.log_every,
            learning_rate=self.checkpoints.learning_rate,
            progress=self._show_progress,
        )
        #: Follows the loaders' passes (ReproDataLoader.bind): a pass ends once the run is finished.
        self.passes = ActivePasses(lambda: self.global_step, lambda: self.finished)
        self._begun, self._closed = False, False
        #: The run directory's lock (rank 0), released by close().
        self.lock: Any = None
        #: A live bar per epoch when rank 0's stderr is a terminal (reads counters, draws no random number).
        self.progress = EpochProgress(wants_bar(is_main=self.dist.is_main))
        #: The 16-mixed gradient scaler: its loss scale is state, checkpointed like the rest.
        self.scaler = self.stepping.scaler
        if self.scaler is not None:
            self.track(**{SCALER: self.scaler})
        if self.dist.is_main:
            log.info(
                "seed %d (%s), determinism %s, device %s, %d rank(s)",
                repro.seed,
                repro.seed_source,
                repro.report.mode,
                self.device,
                self.dist.world_size,
            )

    # -- randomness and data -------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self.repro.seed

    def numpy_rng(self, name: str) -> np.random.Generator:
        """A numpy Generator for the named stream (saved in checkpoints)."""
        return self.repro.numpy_rng(name)

    def generator(self, name: str, device: str | torch.device = "cpu") -> torch.Generator:
        """A torch Generator for the named stream (saved in checkpoints)."""
        return self.repro.generator(name, device)

    def scope(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Run a block with the global RNGs seeded from the named stream (``with run.scope("model"):``)."""
        return self.repro.scope(name)

    def dataloader(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        stream: str,
        shard: bool = True,
        **kwargs: Any,
    ) -> ReproDataLoader:
        """A loader whose batches depend on (seed, stream, epoch, sample index) only; its position is
        saved in checkpoints under ``stream``, so a resumed run continues mid-epoch without replay.

        A pass over it ends early once the run reaches ``max_steps``. Under torchrun each rank takes
        its share of every epoch (``shard=False``: every sample, e.g. for evaluation)."""
        if stream in self.checkpoints.loaders:
            raise ValueError(
                f"dataloader(stream={stream!r}): this run already has a loader on that stream"
            )
        kwargs.setdefault("pin_memory", self.device.type == "cuda")
        loader = self.repro.dataloader(
            dataset, batch_size, shuffle, stream=f"loader.{stream}", shard=shard, **kwargs
        )
        loader.bind(self.passes)
        self.checkpoints.add_loader(stream, loader)
        return loader

    # -- what has state ------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, name: str = "model") -> torch.nn.Module:
        """Move ``model`` to the run's device, swap in deterministic CUDA layers where needed, let
        ``repro diff`` watch it, track it as ``name``, and return what to call (DDP under torchrun;
        ``torch.compile``d under ``train.compile``)."""
        mode = self.repro.report.mode
        place(model, self.device, mode)
        self.faults.check_model(model)
        self.record.watch(model)
        self.track(**{name: model})
        net = prepare_strategy(model, self.settings, self.dist, self.device, self.node)
        if not self.settings.compile:
            return net
        return compile_model(
            net, self.device, deterministic=mode != "off", key=f"{self.node}.compile"
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's precision (``train.precision``): autocast to bfloat16 or float16 on the run's
        device type for the mixed precisions, nothing for 32-true. Wrap the forward and the loss."""
        return self.stepping.autocast()

    def track(self, **objects: Any) -> None:
        """Register what has state (anything with ``state_dict``/``load_state_dict``, or a dict of plain
        values such as counters and running sums). Checkpoints save it; a resume restores it before the
        first step. Call before :meth:`epochs`."""
        self._before_training(f"run.track({', '.join(objects)})", "track everything")
        self.checkpoints.track(**objects)

    def derive(self, **functions: Callable[[dict[str, Any]], float]) -> None:
        """Metrics computed at each epoch's end from the epoch's metrics (a dict of its means,
        ``train_<name>``, and what :meth:`log` received): ``run.derive(train_ppl=lambda m:
        math.exp(m["train_loss"]))``. Each number is added to the row after them (in the epoch line,
        the metrics files, usable as ``train.monitor``), on rank 0. A resume recomputes them from the
        checkpointed sums. Declare each once, before :meth:`epochs`."""
        self._before_training(f"run.derive({', '.join(functions)})", "declare them")
        self.metrics.derive(**functions)

    def set_unit(self, unit: str) -> None:
        """What :meth:`step`'s ``n`` counts: ``"samples"`` (the default) or, say, ``"tokens"``. The epoch
        line says ``<unit>/s``, the rows carry ``<unit>_per_s``, the bar shows it. Call before
        :meth:`epochs`."""
        self._before_training(f"run.set_unit({unit!r})", "set it")
        self.metrics.set_unit(unit)
        self.progress.unit = unit

    fingerprint_data = fingerprint_data

    def modules(self) -> dict[str, torch.nn.Module]:
        return self.checkpoints.modules()

    # -- the loop --------------------------------------------------------------------------------

    @property
    def sharded(self) -> bool:
        """True when the model is sharded across ranks (``train.strategy=fsdp`` under torchrun): its
        forward needs every rank, so evaluate on every rank (and log on rank 0)."""
        return self.settings.strategy == "fsdp" and self.dist.enabled

    @property
    def finished(self) -> bool:
        """True once ``max_steps`` optimizer steps are done."""
        return self.settings.max_steps is not None and self.global_step >= self.settings.max_steps

    def total_steps(self, loader: Any) -> int:
        """Optimizer steps this run will take over ``loader`` (for schedules): one per window of
        ``accumulate_grad_batches`` batches, an epoch's last window possibly shorter."""
        per_epoch = -(-len(loader) // self.settings.accumulate_grad_batches)
        total = per_epoch * self.settings.epochs
        return max(
            1, total if self.settings.max_steps is None else min(total, self.settings.max_steps)
        )

    def epochs(self) -> Iterator[int]:
        """The epochs still to run: all of them, or from where a resumed run stopped.

        The first call restores a resume's state. After each epoch's body the epoch's metrics row is
        written and a checkpoint is taken.
        """
        self._begin()
        for epoch in range(self.epoch, self.settings.epochs):
            if self.finished or self.metrics.stopped:
                break
            self.epoch = epoch
            self.metrics.start_epoch()
            self.stepping.start_epoch()
            self.steps.start_epoch()
            t0, seen_before = time.perf_counter(), self.metrics.sums["n"]
            yield epoch
            elapsed, seen = time.perf_counter() - t0, self.metrics.sums["n"] - seen_before
            self.progress.close()
            row = self.metrics.end_epoch(epoch, self.global_step, elapsed, seen)
            if self.settings.monitor:
                self.metrics.watch(epoch, row, self.checkpoints.save_best)
            self.epoch = epoch + 1
            self._checkpoint()

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate one micro-batch's ``loss``, divided by the size of its accumulation window
        (``train.accumulate_grad_batches``; the epoch's last window may be shorter), so a window's
        gradients are the mean over its micro-batches. Windows start at every epoch's first batch, and
        checkpoints are taken only at a window's end, so a resume starts a window at its first batch."""
        self.stepping.backward(loss, self.passes.batches_left())

    def should_step(self) -> bool:
        """True once the current accumulation window has all its micro-batches (after run.backward)."""
        return self.stepping.should_step()

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """At a window's last micro-batch: clip the gradient norm (``train.gradient_clip_val``), step
        ``optimizer`` (through the gradient scaler under 16-mixed, which skips a step whose gradients
        are not finite) and zero its gradients; return True. Otherwise do nothing and return False."""
        return self.stepping.optimizer_step(optimizer)

    def step(
        self,
        loss: torch.Tensor,
        *,
        batch: tuple[Any, ...] | None = None,
        n: int | None = None,
        **metrics: Any,
    ) -> None:
        """Record one batch; at the end of an accumulation window (every batch when
        ``accumulate_grad_batches`` is 1) record the optimizer step: fingerprint (the window's mean loss
        bits, parameter digest, digest of all its batches), the step's metrics (averaged over the epoch,
        a row every ``log_every`` steps), a checkpoint every ``checkpoint_every`` steps. Every rank calls
        it once per batch, after :meth:`optimizer_step`. ``batch``: the batch's input tensors
        (sample-major); ``n``: units in the batch (:meth:`set_unit`; default: the batch's first
        dimension, its samples), the weight of its metrics in the epoch means and what the throughput
        counts."""
        if not self._begun:
            raise StateError(
                "run.step() outside run.epochs(): iterate `for epoch in run.epochs():` first"
            )
        # A Ctrl-C or SIGTERM that something on the way swallowed.
        raise_pending_signal()
        window_ends = self.stepping.window_ends()
        model = next(iter(self.modules().values()), None)
        if window_ends:
            self.global_step += 1
            self.faults.after_update(self.global_step, model)
        # Everything the step needs crosses to the host in one transfer per device.
        params = self.checkpoints.named_parameters() if window_ends and model is not None else None
        self.steps.add(measure(loss, metrics, batch, params, n))
        if not window_ends:
            return
        self.stepping.end_window()
        self.steps.close_window(self.global_step, self.epoch)
        self.faults.after_record(self.global_step, self.checkpoints.wait)
        every = self.settings.checkpoint_every
        due = bool(every) and self.global_step % every == 0 and not self.finished
        # At the epoch's end the epoch's own checkpoint follows.
        if due and not self.passes.at_epoch_end():
            self._checkpoint()

    def log(self, **metrics: Any) -> None:
        """Metrics of the current epoch (evaluation results, ...): written in the epoch's row and line."""
        self.metrics.log(**metrics)

    # -- internals ---------------------------------------------------------------------------------

    def _log_row(self, row: dict[str, Any]) -> None:
        """One metrics row: metrics.jsonl first (the record), then a copy to each logger."""
        self.record.log_metrics(row)
        if self.record.writer:
            self.loggers.log(row)

    def _show_progress(self, window: Window) -> None:
        """Move the epoch's bar (terminals only) to the windows done in the training loader's epoch."""
        counts = self.passes.windows(self.settings.accumulate_grad_batches)
        if self.progress.enabled and counts is not None:
            epochs, loss = self.settings.epochs, float(window.loss())
            self.progress.update(self.epoch, epochs, *counts, loss, window.n)

    def _before_training(self, call: str, fix: str) -> None:
        if self._begun:
            raise StateError(f"{call} after training started: {fix} before the first run.epochs()")

    def _checkpoint(self) -> None:
        metrics = self.metrics
        self.checkpoints.save(self.global_step, self.epoch, metrics.best, metrics.sums)

    def _begin(self) -> None:
        if self._begun:
            return
        self._begun = True
        # How the steps are taken: part of what the bits depend on.
        if self.dist.is_main:
            self.record.update(training={k: getattr(self.settings, k) for k in TRAINING_KEYS})
        state, self._resume_state = self._resume_state, None
        if state is None:
            return
        restored = self.checkpoints.restore(state)
        self.global_step, self.epoch = restored.step, restored.epoch
        self.metrics.restore(restored.sums, restored.best, mid_epoch=restored.mid_epoch)

    # -- the end -----------------------------------------------------------------------------------

    def close(
        self, result: dict[str, Any] | None = None, error: BaseException | None = None
    ) -> dict[str, Any]:
        """Finish the record: ``completed`` with the final weights and result, or ``failed``."""
        if self._closed:
            return {}
        self._closed = True
        self.progress.close()
        try:
            return close_run(self, result, error)
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(error=exc)
