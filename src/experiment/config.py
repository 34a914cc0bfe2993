"""Schemas of the example's typed groups (``optimizer``, ``train``) and its one cross-group check.

A model, a dataset or a task needs no schema: it is a class and a YAML file naming it with
``_target_`` (``conf/model/cnn.yaml``); the entry point checks the YAML's values against the class's
``__init__`` (types, and ranges declared with ``Annotated[..., Range(...)]``) before anything is written.

A schema is still possible where a group wants typing at compose time, or where its target is not
yours to annotate: ``optimizer`` names ``torch.optim.AdamW``, so :class:`AdamWConfig` declares the ranges
of its arguments. A YAML that lists a schema stored here first in its defaults (``adamw_schema``) is
typed by it and checked against the ranges on its fields. ``train`` extends the kit's
:class:`repro.RunConfig` (epochs, max_steps, checkpoints, resume, ...) with the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from repro import Range, RunConfig

#: Upper bound for counts of samples: far above anything the example needs, low enough to fail fast.
MAX_ITEMS = 10_000_000
#: A beta of Adam: in [0, 1).
Beta = Annotated[float, Range(0, lt=1)]


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    #: Peak learning rate; a cosine schedule takes it to zero over the run.
    lr: Annotated[float, Range(gt=0)] = 0.02
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    weight_decay: Annotated[float, Range(0)] = 0.01


@dataclass
class TrainConfig(RunConfig):
    #: Samples per batch (the global batch under torchrun); an optimizer step takes
    #: ``accumulate_grad_batches`` batches.
    batch_size: Annotated[int, Range(1, MAX_ITEMS)] = 64
    #: Optimizer steps of linear warmup before the cosine decay (0: cosine from the first step).
    warmup_steps: Annotated[int, Range(0, MAX_ITEMS)] = 0


def check_config(cfg: Any) -> None:
    """What joins two groups, checked before any run directory exists (no torch here): a batch must
    fit in the training set."""
    from omegaconf import OmegaConf

    from repro import ConfigValueError

    batch, size = cfg.train.batch_size, OmegaConf.select(cfg, "data.train_size", default=None)
    if isinstance(size, int) and batch > size:
        raise ConfigValueError("train.batch_size", batch, f"at most data.train_size={size}")


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore. Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="optimizer", name="adamw_schema", node=AdamWConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
