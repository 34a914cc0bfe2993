"""The run's checkpoints: what is tracked, what a checkpoint holds, saving it, restoring it, best weights.

One :class:`CheckpointManager` per run owns the registry of tracked objects and loaders, builds the
content of a checkpoint (every tracked object, and per rank every RNG state, the epoch's running sums
and every loader's position), hands it to its own writer thread, and restores all of it on a resume.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.base.errors import ConfigValueError, ReproError
from repro.base.files import atomic_write, sha256_file
from repro.base.layout import CHECKPOINT_DIR, WEIGHTS_FILE, checkpoint_path, shards_path
from repro.core.distributed import gather_objects
from repro.core.loader import ReproDataLoader
from repro.core.setup import Repro
from repro.core.sharding import (
    full,
    full_model_state,
    load_shards,
    module_is_sharded,
    optimizer_is_sharded,
    save_shards,
    shard_hashes,
)
from repro.run.checkpoint import CheckpointWriter

log = logging.getLogger("repro.run")

# Checkpoint keys, in one place.
KIT, OBJECTS, RANKS = "kit", "objects", "ranks"
STEP, EPOCH, BEST = "step", "epoch", "best"
RNG, SUMS, LOADERS = "rng", "sums", "loaders"
#: The tracked objects a sharded checkpoint keeps in its shards, not in its file.
SHARDED = "sharded"
#: The best weights by ``train.monitor``, next to the rolling checkpoints.
BEST_FILE = "best.pt"


class StateError(ReproError):
    """What the run tracks does not match what its checkpoint holds."""


def state_of(obj: Any) -> Any:
    """A tracked object's state: its ``state_dict()``, or a copy of a dict of plain values."""
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in obj.items()}


def load_into(obj: Any, state: Any) -> None:
    """Put ``state`` back into a tracked object (``load_state_dict``, or the dict's contents)."""
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        obj.clear()
        obj.update(state)


@dataclass
class Restored:
    """The kit's own counters, as a checkpoint left them."""

    step: int
    epoch: int
    best: dict[str, Any]
    sums: dict[str, float]
    #: True when a loader continues inside an epoch (its running sums carry on).
    mid_epoch: bool


class CheckpointManager:
    """Tracked objects and loaders, checkpoint content, save and restore, best and final weights.

    Every rank calls :meth:`save` and :meth:`restore`; rank 0 alone writes files, on this manager's
    writer thread. :meth:`wait` blocks until the write in flight is on disk.
    """

    def __init__(
        self, run_dir: Path, repro: Repro, *, config_sha256: str, keep: int | None
    ) -> None:
        self.dir = run_dir
        self.repro = repro
        self.dist = repro.dist
        self.config_sha256 = config_sha256
        self.keep = keep
        #: Name -> object with ``state_dict``/``load_state_dict``, or a dict of plain values.
        self.tracked: dict[str, Any] = {}
        #: Stream name -> loader, whose position each rank saves.
        self.loaders: dict[str, ReproDataLoader] = {}
        self.writer = CheckpointWriter()

    # -- the registry ------------------------------------------------------------------------------

    def track(self, **objects: Any) -> None:
        """Register what has state; a name is tracked once."""
        for name, obj in objects.items():
            if name in self.tracked:
                raise StateError(f"run.track({name}=...): already tracked")
            if not (
                hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")
            ) and not isinstance(obj, dict):
                raise TypeError(
                    f"run.track({name}=...): a {type(obj).__name__} has no state_dict/load_state_dict; "
                    "track an object that has them, or a dict of plain values"
                )
            self.tracked[name] = obj

    def add_loader(self, stream: str, loader: ReproDataLoader) -> None:
        """Save and restore ``loader``'s position under ``stream``."""
        if stream in self.loaders:
            raise ValueError(
                f"dataloader(stream={stream!r}): this run already has a loader on that stream"
            )
        self.loaders[stream] = loader

    def modules(self) -> dict[str, torch.nn.Module]:
        """The tracked models, by name."""
        return {k: v for k, v in self.tracked.items() if isinstance(v, torch.nn.Module)}

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """The tracked models' parameters, whole (a sharded one gathered from every rank: collective);
        prefixed by the model's name when there are several."""
        mods = self.modules()
        if len(mods) == 1:
            return [(n, full(p)) for n, p in next(iter(mods.values())).named_parameters()]
        return [(f"{m}.{n}", full(p)) for m, mod in mods.items() for n, p in mod.named_parameters()]

    def sharded(self) -> tuple[torch.nn.Module, dict[str, Any]] | None:
        """The sharded model (``train.strategy=fsdp``) and the tracked optimizers over its shards."""
        models = [m for m in self.modules().values() if module_is_sharded(m)]
        if not models:
            return None
        if len(models) > 1:
            raise StateError(
                "train.strategy=fsdp shards one tracked model; this run tracks several"
            )
        optimizers = {n: o for n, o in self.tracked.items() if optimizer_is_sharded(o)}
        for name, optimizer in optimizers.items():
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise StateError(
                    f"run.track({name}=...): a {type(optimizer).__name__} over sharded parameters; "
                    "under train.strategy=fsdp track a torch.optim optimizer (its state is saved in shards)"
                )
        return models[0], optimizers

    def learning_rate(self) -> float | None:
        """The first parameter group's ``lr`` of the first tracked optimizer, if any."""
        for obj in self.tracked.values():
            groups = getattr(obj, "param_groups", None)
            if groups and "lr" in groups[0]:
                lr = groups[0]["lr"]
                return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)
        return None

    # -- weights -----------------------------------------------------------------------------------

    def weights_bytes(self) -> bytes | None:
        """The tracked model's whole state dict (a dict of them when several are tracked), serialized
        on rank 0 (None on the others). Every rank calls it: a sharded model is gathered."""
        mods = self.modules()
        sharded = self.sharded()
        if sharded is not None:
            state = full_model_state(sharded[0], self.dist.is_main)
        elif not self.dist.is_main:
            return None
        elif len(mods) == 1:
            state = next(iter(mods.values())).state_dict()
        else:
            state = {k: m.state_dict() for k, m in mods.items()}
        if not self.dist.is_main:
            return None
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def save_best(self) -> bool:
        """Write the weights to ``checkpoints/best.pt`` atomically (rank 0, when a model is tracked;
        every rank calls it). Returns whether this rank wrote them."""
        data = self.weights_bytes() if self.modules() else None
        if data is None:
            return False
        (self.dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
        atomic_write(self.dir / CHECKPOINT_DIR / BEST_FILE, data)
        return True

    def save_final(self) -> Path | None:
        """Write the final weights to ``weights.pt`` atomically and log their sha256 (rank 0; None
        elsewhere; every rank calls it)."""
        data = self.weights_bytes()
        if data is None:
            return None
        weights = self.dir / WEIGHTS_FILE
        atomic_write(weights, data)
        log.info("final weights: %s", sha256_file(weights))
        return weights

    # -- checkpoints -------------------------------------------------------------------------------

    def save(self, step: int, epoch: int, best: dict[str, Any], sums: dict[str, float]) -> None:
        """Everything needed to continue from here with the same bits; every rank takes part."""
        mine = {
            RNG: self.repro.state_dict(),
            SUMS: dict(sums),
            LOADERS: {name: loader.state_dict() for name, loader in self.loaders.items()},
        }
        sharded = self.sharded()
        in_shards: list[str] = []
        if sharded is not None:
            # every rank writes its shards first; the file below makes the checkpoint count
            model, optimizers = sharded
            shards = shards_path(checkpoint_path(self.dir, step))
            self.writer.wait()
            save_shards(shards, model, optimizers, self.dist)
            in_shards = [n for n, o in self.tracked.items() if o is model or n in optimizers]
        ranks = gather_objects(mine, self.dist)
        if not self.dist.is_main:
            return
        state = {
            KIT: {STEP: step, EPOCH: epoch, BEST: dict(best), SHARDED: in_shards},
            OBJECTS: {n: state_of(o) for n, o in self.tracked.items() if n not in in_shards},
            RANKS: ranks,
        }
        # Serialised here (a snapshot); hashed, written, fsynced and renamed on the writer thread while
        # training goes on. The next save and the end of the run wait for it.
        self.writer.save(
            self.dir,
            step,
            state,
            config_sha256=self.config_sha256,
            keep=self.keep,
            meta={
                "epoch": epoch,
                "world_size": self.dist.world_size,
                "tracked": sorted(self.tracked),
                "sharded": bool(in_shards),
                **({"shards_sha256": shard_hashes(shards)} if in_shards else {}),
            },
        )

    def wait(self) -> None:
        """Block until the checkpoint in flight is on disk; raise a :class:`CheckpointError` if it failed."""
        self.writer.wait()

    def restore(self, state: dict[str, Any]) -> Restored:
        """Load a checkpoint's state into the tracked objects, the RNGs and the loaders (in that order);
        a sharded checkpoint's model and optimizers from the shards next to its file (collective)."""
        ranks = state.get(RANKS) or []
        if len(ranks) != self.dist.world_size:
            raise ConfigValueError(
                "world size",
                self.dist.world_size,
                f"{len(ranks)} ranks, as the checkpoint was written with",
            )
        in_shards = [str(n) for n in (state.get(KIT) or {}).get(SHARDED) or []]
        saved, tracked = set(state.get(OBJECTS) or {}) | set(in_shards), set(self.tracked)
        if saved != tracked:
            raise StateError(
                f"the checkpoint holds state for {sorted(saved)}, this run tracks {sorted(tracked)}: resume "
                "with the same run.track(...) calls as the run that wrote it"
            )
        sharded = self.sharded()
        if in_shards and sharded is None:
            raise StateError(
                "the checkpoint is sharded (train.strategy=fsdp): resume with the strategy and the "
                "model the run was started with"
            )
        if sharded is not None and in_shards:
            folder = shards_path(checkpoint_path(self.dir, int(state[KIT][STEP])))
            try:
                load_shards(folder, *sharded)
            # DCP's errors are many lines; the files are data: one line, and what to do
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StateError(
                    f"the shards in {folder} do not load into this run's model and optimizer "
                    f"({type(exc).__name__}: {first[:200]}); resume with the model and config the "
                    "run was started with, or from a copy of the run"
                ) from None
        # In the order they were tracked.
        for name, obj in self.tracked.items():
            if name in in_shards:
                continue
            try:
                load_into(obj, state[OBJECTS][name])
            # A checkpoint of another model (other shapes or names): one line, not torch's report.
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StateError(
                    f"the checkpoint's state for {name!r} does not fit what this run tracks "
                    f"({first[:200]}); resume with the model and config the run was started with"
                ) from None
        mine = ranks[self.dist.rank]
        self.repro.load_state_dict(mine[RNG])
        for name, loader_state in (mine.get(LOADERS) or {}).items():
            if name not in self.loaders:
                raise StateError(
                    f"the checkpoint holds the position of loader stream {name!r}, which this run "
                    f"did not create (it has {sorted(self.loaders)}); create it before run.epochs()"
                )
            self.loaders[name].load_state_dict(loader_state)
        return Restored(
            step=int(state[KIT][STEP]),
            epoch=int(state[KIT][EPOCH]),
            best=dict(state[KIT].get(BEST) or {}),
            sums=dict(mine.get(SUMS) or {"n": 0.0}),
            mid_epoch=any(ld.state_dict()["batch"] > 0 for ld in self.loaders.values()),
        )
