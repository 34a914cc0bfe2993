"""``setup_reproducibility``: the one call that configures a run.

It reads the ``repro`` config once, turns it into a typed :class:`ReproConfig`,
and configures every RNG, backend flag, environment pin and the DataLoader
factory. The returned :class:`Repro` is passed down; nothing else reads the
``repro`` node.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import Dataset

from repro.base.config import ReproConfig, to_repro_config, validate
from repro.core import determinism, distributed
from repro.core.determinism import DeterminismReport
from repro.core.distributed import DistInfo
from repro.core.loader import ReproDataLoader, make_dataloader
from repro.core.seeding import (
    Streams,
    capture_global_state,
    derive_seed,
    restore_global_state,
    seed_globals,
    seed_globals_fast,
)


class Repro:
    """The configured reproducibility state of one process.

    Attributes: ``seed`` (the master seed actually used), ``seed_source``
    (``"config"`` or ``"entropy"``), ``config`` (typed), ``report`` (what was
    applied, flag by flag).
    """

    def __init__(
        self,
        config: ReproConfig,
        seed: int,
        seed_source: str,
        report: DeterminismReport,
        dist: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.dist = dist or DistInfo()
        self.seed = seed
        self.seed_source = seed_source
        self.report = report
        self.streams = Streams(seed)
        self._handed_out: dict[str, torch.Generator | np.random.Generator] = {}

    def generator(self, name: str, device: str | torch.device = "cpu") -> torch.Generator:
        """A torch Generator for the named stream; adding a stream never shifts another.

        Its state is part of :meth:`state_dict`, so a resume continues it.
        """
        gen = self.streams.generator(name, device)
        self._handed_out[f"torch:{name}:{torch.device(device)}"] = gen
        return gen

    def numpy_rng(self, name: str) -> np.random.Generator:
        """A numpy Generator for the named stream (its state is part of :meth:`state_dict`)."""
        rng = self.streams.numpy_rng(name)
        self._handed_out[f"numpy:{name}"] = rng
        return rng

    def state_dict(self) -> dict[str, Any]:
        """Every RNG state: python, numpy global, torch CPU, each CUDA device, and the streams handed out.

        Plain types and tensors only, so it loads with ``torch.load(weights_only=True)``.
        """
        g = capture_global_state()
        version, mt, gauss = g["python"]
        name, keys, pos, has_gauss, cached = g["numpy"]
        streams: dict[str, Any] = {}
        for key, gen in self._handed_out.items():
            if isinstance(gen, torch.Generator):
                streams[key] = gen.get_state()
            else:
                streams[key] = json.dumps(gen.bit_generator.state)
        return {
            "seed": self.seed,
            "python": [version, list(mt), gauss],
            "numpy": [
                name,
                torch.from_numpy(keys.astype(np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "torch": g["torch"],
            "cuda": g.get("cuda", []),
            "streams": streams,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Streams are matched by name: create them before loading."""
        if state["seed"] != self.seed:
            raise ValueError(
                f"RNG state of seed {state['seed']} cannot be loaded into a run with seed {self.seed}"
            )
        version, mt, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        restored = {
            "python": (version, tuple(mt), gauss),
            "numpy": (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached),
            "torch": state["torch"],
        }
        if state.get("cuda") and torch.cuda.is_available():
            restored["cuda"] = state["cuda"]
        restore_global_state(restored)
        for key, value in state.get("streams", {}).items():
            gen = self._handed_out.get(key)
            if gen is None:
                continue
            if isinstance(gen, torch.Generator):
                gen.set_state(value)
            else:
                gen.bit_generator.state = json.loads(value)

    def seed_for(self, name: str) -> int:
        """The 64-bit seed of the named stream."""
        return self.streams.seed_for(name)

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Run a block with every global RNG seeded from the named stream, then restore them.

        For code that draws from the global RNGs and cannot take a generator,
        such as ``nn.Module`` constructors: ``with repro.scope("model"): model = Net()``.
        The block's draws depend only on (seed, name), and the code after the
        block sees the global RNGs as they were before it.
        """
        # Every CUDA device, so a model built directly on the GPU draws from the stream too.
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        saved = capture_global_state()
        with torch.random.fork_rng(devices=devices):
            seed = self.seed_for(name) & ((1 << 63) - 1)
            seed_globals_fast(seed)
            if devices:
                torch.cuda.manual_seed_all(seed)
            try:
                yield
            finally:
                restore_global_state(saved)

    def dataloader(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        stream: str = "data",
        num_workers: int | None = None,
        persistent_workers: bool | None = None,
        shard: bool = True,
        **kwargs: Any,
    ) -> ReproDataLoader:
        """A DataLoader whose batches depend on (seed, stream, epoch, sample index) only.

        ``num_workers`` and ``persistent_workers`` default to the repro
        config's; they change speed, never the bits. Call
        ``loader.set_epoch(epoch)`` before each epoch (a bare loop moves to
        the next epoch by itself). Dataset code may use ``random``,
        ``numpy.random`` and ``torch.rand*`` freely.

        Under torchrun each rank gets its share of every epoch, by global
        sample index (``shard=False``: every sample, e.g. for evaluation on one rank).
        """
        if shard:
            kwargs.setdefault("rank", self.dist.rank)
            kwargs.setdefault("world_size", self.dist.world_size)
        _check_streams(dataset, batch_size, shuffle, kwargs.get("world_size", 1))
        return make_dataloader(
            dataset,
            seed=self.seed_for(stream),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.config.num_workers if num_workers is None else num_workers,
            persistent_workers=(
                self.config.persistent_workers if persistent_workers is None else persistent_workers
            ),
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as applied, the seed and the report, for the run record."""
        config = asdict(self.config)
        config["deterministic"] = self.config.deterministic.value
        config["seed"] = self.seed
        return {
            "seed": self.seed,
            "seed_source": self.seed_source,
            "config": config,
            "distributed": {"world_size": self.dist.world_size, "backend": self.dist.backend},
            **self.report.to_dict(),
        }


def setup_reproducibility(cfg: Any, *, in_process: bool = False) -> Repro:
    """Configure every RNG, backend flag, environment pin and the DataLoader factory.

    ``cfg`` is the whole config, its ``repro`` node, a mapping or a
    :class:`ReproConfig`. With ``seed: null`` a seed is drawn from OS entropy
    and written back into ``cfg`` (when it is a DictConfig), so the resolved
    config and the record hold the seed actually used.

    Raises :class:`repro.base.errors.ConfigValueError` for a bad value and, under
    ``strict``, :class:`repro.base.errors.EnvironmentPinError` for a pin that can
    no longer take effect in this process. ``in_process=True`` (a run started
    from a notebook or script, with no relaunch) records such a pin as not in
    effect, with the reason, instead of raising.
    """
    rc = validate(to_repro_config(cfg))
    dist = distributed.init(rc.dist_backend)  # under torchrun: join the process group first
    if rc.seed is None:
        seed, source = (
            distributed.broadcast_int(secrets.randbits(32), dist),
            "entropy",
        )  # rank 0's draw
        _write_back_seed(cfg, seed)
    else:
        seed, source = rc.seed, "config"
    rc.seed = seed
    report = determinism.apply(rc, in_process=in_process)
    # One process: the master seed. Several ranks: one global stream per rank (dropout masks differ
    # across ranks), while model init and data come from named streams that are the same on all.
    seed_globals(seed if not dist.enabled else derive_seed(seed, f"globals.rank{dist.rank}"))
    return Repro(rc, seed, source, report, dist)


def _write_back_seed(cfg: Any, seed: int) -> None:
    if not isinstance(cfg, DictConfig):
        return
    node = cfg.repro if "repro" in cfg else cfg
    readonly = OmegaConf.is_readonly(node)
    OmegaConf.set_readonly(node, False)
    with open_dict(node):
        node.seed = seed
    OmegaConf.set_readonly(node, readonly)


def _check_streams(dataset: Any, batch_size: int, shuffle: bool, world: int) -> None:
    """An ordered loader over BPTT streams (``TokenWindows(..., streams=B)``) must hand each rank the
    same streams every batch: ``batch_size * world_size == B``; otherwise a carried state would
    silently move from one stream to another."""
    from repro.core.windows import TokenWindows

    streams = getattr(dataset, "streams", None) if isinstance(dataset, TokenWindows) else None
    if streams is None or shuffle or batch_size * world == streams:
        return
    from repro.base.errors import ConfigValueError

    raise ConfigValueError(
        "batch_size",
        batch_size,
        f"{streams} // {world} (the TokenWindows' streams over the ranks), with streams a multiple "
        f"of the world size ({world}): each rank must read the same streams in every batch",
    )
