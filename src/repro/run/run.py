"""The run object: what the entry point hands to an experiment.

One :class:`Run` per process owns everything a guarantee depends on, so an
experiment's loop holds only its own logic::

    def train(run: Run) -> dict:
        train_loader = run.dataloader(train_set, batch_size=64, shuffle=True, stream="train")
        with run.scope("model"):
            model = Net()
        net = run.prepare(model)                   # device, deterministic layers, DDP; tracked
        optimizer = torch.optim.AdamW(model.parameters())
        run.track(optimizer=optimizer)             # everything else that has state
        for epoch in run.epochs():                 # resumes at the right epoch
            for x, y in train_loader:              # ... and the right batch, with no replay
                loss = ...
                run.backward(loss)                 # scaled for gradient accumulation
                if run.optimizer_step(optimizer):  # a window's last micro-batch: clip, step, zero
                    scheduler.step()
                run.step(loss, batch=(x, y), acc=...)  # fingerprint, metrics, checkpoint, max_steps
            run.log(val_loss=...)                  # epoch metrics

What the run does for you: ``setup_reproducibility`` (RNGs, flags, pins,
loader factory), the record (``config.yaml``, ``run.json`` before the first
step; completed or failed, whatever ends it), the process group under
torchrun, checkpoints of every tracked object with every RNG state (per rank)
and every loader's position, restored before the first step of a resume,
and a self-check of a resume against the steps the interrupted process had
already recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from repro.base.config import RunConfig, validate_run_config
from repro.base.errors import ConfigValueError, ReproError
from repro.base.files import atomic_write, sha256_file
from repro.base.layout import CHECKPOINT_DIR, WEIGHTS_FILE
from repro.core.distributed import all_reduce_sum, gather_objects, shutdown_distributed, wrap_model
from repro.core.fingerprint import (
    float_bits,
    sample_digests_device,
    tensors_digest,
    tensors_digest_from,
    tensors_digest_parts,
)
from repro.core.loader import ReproDataLoader
from repro.core.setup import Repro
from repro.run.checkpoint import CheckpointError, save_checkpoint, wait_for_checkpoints
from repro.run.faults import Faults
from repro.run.loggers import Loggers
from repro.run.progress import EpochProgress, wants_bar
from repro.run.record import RunRecord, raise_pending_signal

log = logging.getLogger("repro.run")

# Checkpoint keys, in one place.
KIT, OBJECTS, RANKS = "kit", "objects", "ranks"
STEP, EPOCH, BEST = "step", "epoch", "best"
#: The best weights by ``train.monitor``, next to the rolling checkpoints.
BEST_FILE = "best.pt"
RNG, SUMS, LOADERS = "rng", "sums", "loaders"
#: Timing fields of metric rows: they differ run to run and are never compared.
TIME_FIELDS = ("time_s", "samples_per_s")
#: RunConfig fields that say how an optimizer step is taken, written to run.json as ``training``.
TRAINING_KEYS = (
    "accumulate_grad_batches",
    "gradient_clip_val",
    "precision",
    "compile",
    "monitor",
    "monitor_mode",
    "early_stopping_patience",
)
#: The autocast dtype of each mixed precision.
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
#: The name under which the 16-mixed gradient scaler is tracked.
SCALER = "grad_scaler"


class StateError(ReproError):
    """What the run tracks does not match what its checkpoint holds."""


def resolve_device(name: str, local_rank: int = 0, *, key: str = "train.device") -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` as a device; under torchrun ``cuda`` means this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigValueError(
            key, name, f"auto, cpu, or a CUDA device of the {torch.cuda.device_count()} present"
        )
    return device


def _state_of(obj: Any) -> Any:
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in obj.items()}


def _load_into(name: str, obj: Any, state: Any) -> None:
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        obj.clear()
        obj.update(state)


def _to_host(pieces: list[torch.Tensor]) -> list[torch.Tensor]:
    """1-D int64 ``pieces`` on the host, with one transfer per device (a piece on the host stays)."""
    out = list(pieces)
    by_device: dict[torch.device, list[int]] = {}
    for i, piece in enumerate(pieces):
        if piece.device.type != "cpu":
            by_device.setdefault(piece.device, []).append(i)
    for idx in by_device.values():
        host = torch.cat([pieces[i] for i in idx]).cpu()
        for i, part in zip(idx, host.split([pieces[i].numel() for i in idx]), strict=True):
            out[i] = part
    return out


class Run:
    """One run of an experiment, in one process (one rank of a torchrun job).

    Attributes: ``cfg`` (the run's config: its own on a resume), ``dir``,
    ``settings`` (typed :class:`RunConfig`), ``repro`` (seed, streams, report),
    ``dist``, ``device``, ``global_step`` (optimizer steps done), ``epoch``.
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
        self.global_step = 0
        self.epoch = 0
        self.faults = Faults.from_environment()
        #: Copies of the metrics rows (logger=csv, tensorboard, ...); none on ranks other than 0.
        self.loggers = loggers or Loggers()
        self._config_hash = config_hash
        self._resume_state = resume_state
        self._pending = {
            int(r["step"]): r for r in (pending_check or []) if isinstance(r.get("step"), int)
        }
        self._self_check: dict[str, Any] | None = (
            {"exact": True, "steps_checked": 0, "steps_pending": len(self._pending)}
            if resume_state
            else None
        )
        self._tracked: dict[str, Any] = {}
        self._loaders: dict[str, ReproDataLoader] = {}
        self._active: list[ReproDataLoader] = []
        self._sums: dict[str, float] = {"n": 0.0}
        self._logged: dict[str, Any] = {}
        self._last_epoch_row: dict[str, Any] = {}
        self._begun = False
        self._closed = False
        #: The run directory's lock (rank 0), released by close().
        self.lock: Any = None
        self._resumed_mid_epoch = False
        # The accumulation window: micro-batches backpropagated so far, its size, and what run.step
        # received for them (loss and metric values, batches, sample count).
        self._micro = 0
        self._window = 1
        self._pending_step: dict[str, Any] = {}
        #: train.monitor's best value, its epoch, epochs since, and whether early stopping ended the run.
        self._best: dict[str, Any] = {
            "value": None,
            "epoch": None,
            "bad_epochs": 0,
            "stopped": False,
        }
        #: A live bar per epoch when rank 0's stderr is a terminal (reads counters, draws no random number).
        self.progress = EpochProgress(wants_bar(is_main=self.dist.is_main))
        self.scaler: torch.amp.GradScaler | None = None
        if settings.precision == "16-mixed":  # its loss scale is state: checkpointed like the rest
            self.scaler = torch.amp.GradScaler(self.device.type)
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
        if stream in self._loaders:
            raise ValueError(
                f"dataloader(stream={stream!r}): this run already has a loader on that stream"
            )
        kwargs.setdefault("pin_memory", self.device.type == "cuda")
        loader = self.repro.dataloader(
            dataset, batch_size, shuffle, stream=f"loader.{stream}", shard=shard, **kwargs
        )
        loader.bind(self)
        self._loaders[stream] = loader
        return loader

    # -- what has state ------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, name: str = "model") -> torch.nn.Module:
        """Move ``model`` to the run's device, swap in deterministic CUDA layers where needed, let
        ``repro diff`` watch it, track it as ``name``, and return what to call (DDP under torchrun)."""
        model.to(self.device)
        if self.device.type == "cuda" and self.repro.report.mode != "off":
            from repro.ops import make_deterministic

            make_deterministic(model)
        self.faults.check_model(model)
        self.record.watch(model)
        self.track(**{name: model})
        net = wrap_model(model, self.dist)
        return self._compile(net) if self.settings.compile else net

    def _compile(self, net: torch.nn.Module) -> torch.nn.Module:
        """``torch.compile`` (``train.compile``) with random ops left to eager kernels, so dropout draws
        from the checkpointed global RNG, and inductor's deterministic mode under strict/warn. The
        tracked model keeps its own parameter names; a compiler that does not work here is one line."""
        import torch._inductor.config as inductor

        inductor.fallback_random = True
        inductor.deterministic = self.repro.report.mode != "off"
        try:  # compilation is lazy: try a tiny function now rather than fail at the first batch
            torch.compile(lambda t: t * 2 + 1)(torch.zeros(2, device=self.device))
        except Exception as exc:  # noqa: BLE001  (any failure of the compiler stack)
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigValueError(
                f"{self.node}.compile",
                True,
                f"false: torch.compile does not work here ({why[:200]})",
            ) from None
        return torch.compile(net)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's precision (``train.precision``): autocast to bfloat16 or float16 on the run's
        device type for the mixed precisions, nothing for 32-true. Wrap the forward and the loss."""
        dtype = AUTOCAST_DTYPES.get(self.settings.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def track(self, **objects: Any) -> None:
        """Register what has state (anything with ``state_dict``/``load_state_dict``, or a dict of plain
        values such as counters and running sums). Checkpoints save it; a resume restores it before the
        first step. Call before :meth:`epochs`."""
        if self._begun:
            raise StateError(
                f"run.track({', '.join(objects)}) after training started: track everything "
                "before the first run.epochs()"
            )
        for name, obj in objects.items():
            if name in self._tracked:
                raise StateError(f"run.track({name}=...): already tracked")
            if not (
                hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")
            ) and not isinstance(obj, dict):
                raise TypeError(
                    f"run.track({name}=...): a {type(obj).__name__} has no state_dict/load_state_dict; "
                    "track an object that has them, or a dict of plain values"
                )
            self._tracked[name] = obj

    def modules(self) -> dict[str, torch.nn.Module]:
        return {k: v for k, v in self._tracked.items() if isinstance(v, torch.nn.Module)}

    def _named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        mods = self.modules()
        if len(mods) == 1:
            return list(next(iter(mods.values())).named_parameters())
        return [(f"{m}.{n}", p) for m, mod in mods.items() for n, p in mod.named_parameters()]

    # -- the loop --------------------------------------------------------------------------------

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
            if self.finished or self._best["stopped"]:
                break
            self.epoch = epoch
            if not self._resumed_mid_epoch:
                self._sums = {"n": 0.0}
            self._resumed_mid_epoch = False
            self._logged = {}
            self._micro, self._pending_step = 0, {}
            t0, seen_before = time.perf_counter(), self._sums["n"]
            yield epoch
            self._end_epoch(epoch, time.perf_counter() - t0, self._sums["n"] - seen_before)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate one micro-batch's ``loss``, divided by the size of its accumulation window
        (``train.accumulate_grad_batches``; the epoch's last window may be shorter), so a window's
        gradients are the mean over its micro-batches. Windows start at every epoch's first batch, and
        checkpoints are taken only at a window's end, so a resume starts a window at its first batch."""
        if self._micro == 0:
            self._window = self._window_size()
        self._micro += 1
        loss = loss / self._window if self._window > 1 else loss
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def should_step(self) -> bool:
        """True once the current accumulation window has all its micro-batches (after run.backward)."""
        return self._micro >= self._window

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """At a window's last micro-batch: clip the gradient norm (``train.gradient_clip_val``), step
        ``optimizer`` (through the gradient scaler under 16-mixed, which skips a step whose gradients
        are not finite) and zero its gradients; return True. Otherwise do nothing and return False."""
        if self._micro == 0:
            raise StateError(
                "run.optimizer_step() before run.backward(loss): backpropagate through the run"
            )
        if not self.should_step():
            return False
        clip = self.settings.gradient_clip_val
        if clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)  # clip the true gradients
            params = [
                p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            torch.nn.utils.clip_grad_norm_(params, clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return True

    def _window_size(self) -> int:
        """Micro-batches in the window that starts now: ``accumulate_grad_batches``, or what is left of
        the epoch in the training loader being iterated."""
        size = self.settings.accumulate_grad_batches
        loader = self._active[-1] if self._active else None
        position = loader.position if loader is not None else None
        if size == 1 or position is None:
            return size
        return max(1, min(size, len(loader) - position[1] + 1))  # position counts this batch

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
        (sample-major); ``n``: samples in the batch (default: the batch's first dimension)."""
        if not self._begun:
            raise StateError(
                "run.step() outside run.epochs(): iterate `for epoch in run.epochs():` first"
            )
        raise_pending_signal()  # a Ctrl-C or SIGTERM that something on the way swallowed
        if self._micro == 0 and self.settings.accumulate_grad_batches > 1:
            raise StateError(
                f"train.accumulate_grad_batches={self.settings.accumulate_grad_batches} needs "
                "run.backward(loss) and run.optimizer_step(optimizer) in the loop, before run.step"
            )
        names = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
        values = [loss.detach().reshape(()).to(torch.float64)]
        values += [
            metrics[k].detach().reshape(()).to(device=values[0].device, dtype=torch.float64)
            for k in names
        ]
        tensors = tuple(t for t in (batch or ()) if isinstance(t, torch.Tensor))
        window_ends = not self._micro or self.should_step()
        model = next(iter(self.modules().values()), None)
        # Everything the step needs on the host crosses in one transfer per device: the loss and metric
        # bits, the batch's per-sample digests and, at a window's end, the parameter digest.
        pieces = [torch.stack(values).view(torch.int64)]
        if tensors:
            pieces.append(sample_digests_device(*tensors))
        params_meta = None
        if window_ends:
            self.global_step += 1
            self.faults.after_update(self.global_step, model)
            if model is not None:
                params_meta, parts = tensors_digest_parts(self._named_parameters())
                pieces += [v.reshape(1) for v in parts]
        host_pieces = _to_host(pieces)
        host = host_pieces[0].view(torch.float64)
        scalars = {k: float(v) for k, v in metrics.items() if k not in names}
        scalars.update({k: float(host[i + 1]) for i, k in enumerate(names)})
        if n is None:
            n = int(tensors[0].shape[0]) if tensors else 1
        self._sums["n"] += n
        for key, value in {"loss": float(host[0]), **scalars}.items():
            self._sums[key] = self._sums.get(key, 0.0) + value * n
        window = self._pending_step
        window["n"] = window.get("n", 0) + n
        window.setdefault("losses", []).append(host[0])
        if tensors:
            window.setdefault("digests", []).extend(host_pieces[1].tolist())
        for key, value in scalars.items():
            window.setdefault("scalars", {}).setdefault(key, []).append(value)
        if not window_ends:
            return
        self._micro, self._pending_step = 0, {}
        params = None
        if params_meta is not None:
            params = tensors_digest_from(params_meta, (int(v) for v in host_pieces[-len(parts) :]))
        self._optimizer_step_done(window, params)

    def _optimizer_step_done(self, window: dict[str, Any], params: str | None) -> None:
        """Fingerprint, metrics row and checkpoint of the optimizer step that closed ``window``
        (``global_step`` already counts it; ``params``: the parameter digest after it)."""
        losses = window["losses"]
        loss64 = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        loss_value = float(loss64)
        scalars = {
            k: v[0] if len(v) == 1 else sum(v) / len(v)
            for k, v in window.get("scalars", {}).items()
        }
        row: dict[str, Any] = {
            "step": self.global_step,
            "epoch": self.epoch,
            "loss": float_bits(loss64),
        }
        if params is not None:
            row["params"] = params
        self.record.log_fingerprint(row, batch_digests=window.get("digests"))
        self._check_against_interrupted(self.record.last_row or row)
        self._show_progress(loss_value, window["n"])
        if self.global_step % self.settings.log_every == 0:
            lr = self._learning_rate()
            self._log_row(
                {
                    "split": "train",
                    "epoch": self.epoch,
                    "step": self.global_step,
                    "loss": loss_value,
                    **scalars,
                    **({"lr": lr} if lr is not None else {}),
                }
            )
        self.faults.after_record(self.global_step)
        every = self.settings.checkpoint_every
        if (
            every
            and self.global_step % every == 0
            and not self.finished
            and not self._end_of_epoch()
        ):
            self._checkpoint()

    def log(self, **metrics: Any) -> None:
        """Metrics of the current epoch (evaluation results, ...): written in the epoch's row and line."""
        for key, value in metrics.items():
            self._logged[key] = float(value.item()) if isinstance(value, torch.Tensor) else value

    # -- loader hooks (see ReproDataLoader.bind) ---------------------------------------------------

    def loader_started(self, loader: ReproDataLoader) -> int:
        self._active.append(loader)
        return self.global_step

    def loader_stopped(self, loader: ReproDataLoader) -> None:
        if loader in self._active:
            self._active.remove(loader)

    def should_stop(self, steps_at_start: int) -> bool:
        return self.finished and self.global_step > steps_at_start

    # -- internals ---------------------------------------------------------------------------------

    def _log_row(self, row: dict[str, Any]) -> None:
        """One metrics row: metrics.jsonl first (the record), then a copy to each logger."""
        self.record.log_metrics(row)
        if self.record.writer:
            self.loggers.log(row)

    def _learning_rate(self) -> float | None:
        for obj in self._tracked.values():
            groups = getattr(obj, "param_groups", None)
            if groups and "lr" in groups[0]:
                lr = groups[0]["lr"]
                return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)
        return None

    def _show_progress(self, loss: float, samples: float) -> None:
        """Move the epoch's bar (terminals only) to the optimizer steps done in the training loader's epoch."""
        if not self.progress.enabled or not self._active or self._active[-1].position is None:
            return
        loader, size = self._active[-1], self.settings.accumulate_grad_batches
        done, total = -(-loader.position[1] // size), -(-len(loader) // size)
        self.progress.update(self.epoch, self.settings.epochs, done, total, loss, samples)

    def _end_of_epoch(self) -> bool:
        if not self._active:
            return False
        position = self._active[-1].position
        return position is not None and position[1] >= len(self._active[-1])

    def _end_epoch(self, epoch: int, elapsed: float, seen: float) -> None:
        keys = [k for k in self._sums if k != "n"]  # insertion order: the same on every rank
        totals = all_reduce_sum([self._sums["n"], *(self._sums[k] for k in keys), seen], self.dist)
        count = max(totals[0], 1.0)
        row: dict[str, Any] = {"split": "epoch", "epoch": epoch, "step": self.global_step}
        row.update({f"train_{k}": totals[i + 1] / count for i, k in enumerate(keys)})
        row.update(self._logged)
        row.update(
            time_s=round(elapsed, 4), samples_per_s=round(totals[-1] / max(elapsed, 1e-9), 1)
        )
        self._last_epoch_row = row
        self.progress.close()
        if self.dist.is_main:
            self._log_row(row)
            shown = "  ".join(
                _fmt(k, v)
                for k, v in row.items()
                if k not in ("split", "epoch", "step", *TIME_FIELDS)
            )
            log.info(
                "epoch %d/%d  step %d  %s  %.0f samples/s",
                epoch + 1,
                self.settings.epochs,
                self.global_step,
                shown,
                row["samples_per_s"],
            )
        if self.settings.monitor:
            self._watch_monitor(epoch, row)
        self.epoch = epoch + 1
        self._checkpoint()

    def _watch_monitor(self, epoch: int, row: dict[str, Any]) -> None:
        """Best weights and early stopping by ``train.monitor``: rank 0's value decides on every rank; the
        best value and the patience counter are checkpointed with the rest, so a resume decides the same."""
        name, mode = self.settings.monitor, self.settings.monitor_mode
        value = row.get(name) if self.dist.is_main else None
        present = isinstance(value, int | float) and not isinstance(value, bool)
        shared = all_reduce_sum(
            [1.0 if present else 0.0, float(value) if present else 0.0], self.dist
        )
        if not shared[0]:
            keys = sorted(k for k in row if k not in ("split", "epoch", "step", *TIME_FIELDS))
            raise ConfigValueError(
                f"{self.node}.monitor", name, f"a metric of the epoch rows ({', '.join(keys)})"
            )
        value, best = shared[1], self._best["value"]
        better = value == value and (
            best is None or (value < best if mode == "min" else value > best)
        )
        if better:
            self._best.update(value=value, epoch=epoch, bad_epochs=0)
            if self.dist.is_main and self.modules():
                (self.dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
                atomic_write(self.dir / CHECKPOINT_DIR / BEST_FILE, self._weights_bytes())
                log.info(
                    "best %s %.4f at epoch %d: %s/%s",
                    name,
                    value,
                    epoch + 1,
                    CHECKPOINT_DIR,
                    BEST_FILE,
                )
            return
        self._best["bad_epochs"] += 1
        patience = self.settings.early_stopping_patience
        if patience is not None and self._best["bad_epochs"] >= patience:
            self._best["stopped"] = True
            if self.dist.is_main:
                log.info(
                    "early stopping after epoch %d: %s has not improved on %.4f (epoch %d) for %d epoch(s)",
                    epoch + 1,
                    name,
                    self._best["value"],
                    self._best["epoch"] + 1,
                    patience,
                )

    def _weights_bytes(self) -> bytes:
        """The tracked model's state dict (a dict of them when several are tracked), serialized."""
        mods = self.modules()
        state = (
            next(iter(mods.values())).state_dict()
            if len(mods) == 1
            else {k: m.state_dict() for k, m in mods.items()}
        )
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def _checkpoint(self) -> None:
        """Everything needed to continue from here with the same bits; every rank takes part."""
        mine = {
            RNG: self.repro.state_dict(),
            SUMS: dict(self._sums),
            LOADERS: {name: loader.state_dict() for name, loader in self._loaders.items()},
        }
        ranks = gather_objects(mine, self.dist)
        if not self.dist.is_main:
            return
        state = {
            KIT: {STEP: self.global_step, EPOCH: self.epoch, BEST: dict(self._best)},
            OBJECTS: {name: _state_of(obj) for name, obj in self._tracked.items()},
            RANKS: ranks,
        }
        # Serialised here (a snapshot); hashed, written, fsynced and renamed on the writer thread while
        # training goes on. The next save, every load and the end of the run wait for it.
        save_checkpoint(
            self.dir,
            self.global_step,
            state,
            config_sha256=self._config_hash,
            keep=self.settings.keep_checkpoints,
            background=True,
            meta={
                "epoch": self.epoch,
                "world_size": self.dist.world_size,
                "tracked": sorted(self._tracked),
            },
        )

    def _begin(self) -> None:
        if self._begun:
            return
        self._begun = True
        if self.dist.is_main:  # how the steps are taken: part of what the bits depend on
            self.record.update(training={k: getattr(self.settings, k) for k in TRAINING_KEYS})
        state = self._resume_state
        if state is None:
            return
        self._resume_state = None
        ranks = state.get(RANKS) or []
        if len(ranks) != self.dist.world_size:
            raise ConfigValueError(
                "world size",
                self.dist.world_size,
                f"{len(ranks)} ranks, as the checkpoint was written with",
            )
        saved, tracked = set(state.get(OBJECTS) or {}), set(self._tracked)
        if saved != tracked:
            raise StateError(
                f"the checkpoint holds state for {sorted(saved)}, this run tracks {sorted(tracked)}: resume "
                "with the same run.track(...) calls as the run that wrote it"
            )
        for name, obj in self._tracked.items():  # in the order they were tracked
            _load_into(name, obj, state[OBJECTS][name])
        mine = ranks[self.dist.rank]
        self.repro.load_state_dict(mine[RNG])
        for name, loader_state in (mine.get(LOADERS) or {}).items():
            if name not in self._loaders:
                raise StateError(
                    f"the checkpoint holds the position of loader stream {name!r}, which this run "
                    f"did not create (it has {sorted(self._loaders)}); create it before run.epochs()"
                )
            self._loaders[name].load_state_dict(loader_state)
        self._sums = dict(mine.get(SUMS) or {"n": 0.0})
        self.global_step, self.epoch = int(state[KIT][STEP]), int(state[KIT][EPOCH])
        self._best.update(state[KIT].get(BEST) or {})
        self._resumed_mid_epoch = any(ld.repro_sampler._start > 0 for ld in self._loaders.values())

    def _check_against_interrupted(self, row: dict[str, Any]) -> None:
        """Compare a step with what the interrupted process recorded for it before it died."""
        expected = self._pending.pop(row["step"], None)
        if expected is None or self._self_check is None:
            return
        self._self_check["steps_checked"] += 1
        if not self._self_check["exact"]:
            return
        for key in ("loss", "params", "batch"):
            if key in expected and expected.get(key) != row.get(key):
                self._self_check.update(
                    exact=False,
                    step=row["step"],
                    quantity=key,
                    recorded=expected[key],
                    now=row.get(key),
                )
                log.error(
                    "RESUME IS NOT EXACT: at step %d the %s fingerprint differs from what the interrupted run "
                    "recorded (%s, now %s). Some state was probably not registered with run.track(...) or not "
                    "restored; results after this resume differ from an uninterrupted run.",
                    row["step"],
                    key,
                    expected[key],
                    row.get(key),
                )
                self._record_self_check()
                return
        if not self._pending:
            self._record_self_check()

    def _record_self_check(self) -> None:
        if self._self_check is None or not self.dist.is_main:
            return
        resumes = self.record.manifest.get("resumes") or []
        if resumes:
            resumes[-1]["self_check"] = dict(self._self_check)
            self.record.update(resumes=resumes)

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
            return self._close(result, error)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _close(self, result: dict[str, Any] | None, error: BaseException | None) -> dict[str, Any]:
        try:
            wait_for_checkpoints()  # the last checkpoint is on disk before the record says how the run ended
        except CheckpointError as exc:
            if error is None:
                error = exc  # a checkpoint that could not be written fails the run
        self.loggers.close("failed" if error is not None else "completed")
        if error is not None:
            self._record_self_check()
            self.record.finish("failed", error=f"{type(error).__name__}: {error}")
            return {}
        out: dict[str, Any] = {"steps": self.global_step}
        out.update(
            {
                k: v
                for k, v in self._last_epoch_row.items()
                if k not in ("split", "epoch", "step", *TIME_FIELDS)
            }
        )
        weights = None
        if self.modules():
            out["params_digest"] = tensors_digest(self._named_parameters())
            if self.dist.is_main:
                weights = self.dir / WEIGHTS_FILE
                atomic_write(weights, self._weights_bytes())
                log.info("final weights: %s", sha256_file(weights))
        out.update(result or {})
        self._record_self_check()
        extra = {"resume_exact": self._self_check["exact"]} if self._self_check is not None else {}
        if self.settings.monitor:
            extra["best"] = {
                "monitor": self.settings.monitor,
                "mode": self.settings.monitor_mode,
                "value": self._best["value"],
                "epoch": self._best["epoch"],
                "stopped_early": self._best["stopped"],
                "file": f"{CHECKPOINT_DIR}/{BEST_FILE}",
            }
        self.record.finish("completed", weights_path=weights, result=out, **extra)
        shutdown_distributed(self.dist)  # every rank done: leave the process group together
        if self.dist.is_main:
            print(f"run directory:  {self.dir}")
            if self.record.manifest.get("weights_sha256"):
                print(f"weights sha256: {self.record.manifest['weights_sha256']}")
        return out

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(error=exc)


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    return f"{key} {value}"


def settings_of(cfg: DictConfig, node: str) -> RunConfig:
    """The typed run settings at ``cfg[node]`` (ranges checked)."""
    return validate_run_config(OmegaConf.select(cfg, node, default=None) or {}, prefix=node)
